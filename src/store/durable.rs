//! Group commit: sled's `flush()` writes with `sync_file_range`, which does not survive a power
//! loss, so every acknowledged write is followed by an fsync of the database files. Concurrent
//! writers share one flush+fsync: each waits for a sync that started after its own write.
//!
//! sled appends to one log file (`db`); that file is fdatasynced on every commit. Its other files
//! (`conf`, snapshots, blobs) are written as new files, so they and their folders are fsynced
//! only when a new name appears.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use super::StoreError;

pub(super) struct Syncer {
    db: sled::Db,
    dir: PathBuf,
    /// sled's log, kept open.
    log: Option<File>,
    /// The files already made durable (their names, and so their folders' entries).
    known: Mutex<BTreeSet<PathBuf>>,
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
            log: File::open(dir.join("db")).ok(),
            known: Mutex::new(BTreeSet::new()),
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
        match &self.log {
            Some(log) => log.sync_data()?,
            None => File::open(self.dir.join("db"))?.sync_data()?,
        }
        let mut files = BTreeSet::new();
        list_files(&self.dir, &mut files)?;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if files != *known {
            for new in files.difference(&known) {
                File::open(new)?.sync_all()?;
            }
            fsync_dirs(&self.dir)?;
            *known = files;
        }
        Ok(())
    }
}

/// Every regular file below `dir`.
fn list_files(dir: &Path, out: &mut BTreeSet<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_file() {
            out.insert(entry.path());
        } else if kind.is_dir() {
            list_files(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// fsyncs `dir` and every folder below it, so that new names in them are durable.
fn fsync_dirs(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fsync_dirs(&entry.path())?;
        }
    }
    File::open(dir)?.sync_all()
}
