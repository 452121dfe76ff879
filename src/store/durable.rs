//! Group commit: sled's `flush()` writes with `sync_file_range`, which does not survive a power
//! loss, so every acknowledged write is followed by an fsync of the database files. Concurrent
//! writers share one flush+fsync: each waits for a sync that started after its own write.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use super::StoreError;

pub(super) struct Syncer {
    db: sled::Db,
    dir: PathBuf,
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// Tickets are drawn after a write; a sync covers every ticket drawn before it started.
    next_ticket: u64,
    /// Every ticket below this is durable.
    synced_below: u64,
    running: bool,
}

impl Syncer {
    pub(super) fn new(db: sled::Db, dir: &Path) -> Syncer {
        Syncer {
            db,
            dir: dir.to_owned(),
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        }
    }

    pub(super) fn sync(&self) -> Result<(), StoreError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        loop {
            if st.synced_below > ticket {
                return Ok(());
            }
            if !st.running {
                st.running = true;
                let covers = st.next_ticket;
                drop(st);
                let result = self.flush_and_fsync();
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.running = false;
                self.done.notify_all();
                result?;
                st.synced_below = st.synced_below.max(covers);
            } else {
                // If the sync we wait on fails, the loop makes one of the waiters try again.
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    fn flush_and_fsync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        fsync_tree(&self.dir)?;
        Ok(())
    }
}

/// fsyncs every regular file of sled's folder (the log `db`, `conf`, snapshots, blobs) and the
/// folders themselves, so that new files are durable too.
fn fsync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_file() {
            File::open(entry.path())?.sync_all()?;
        } else if kind.is_dir() {
            fsync_tree(&entry.path())?;
        }
    }
    File::open(dir)?.sync_all()
}
