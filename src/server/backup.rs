//! The backup socket: `pcad backup` asks the serving daemon for a consistent snapshot of its
//! database over a Unix socket beside it (`<storage.path>.backup.sock`, mode 0600: the pcad
//! user and root only). One request at a time; the snapshot streams back on the connection.

use std::io::{BufWriter, Read};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::store::{socket_path, Db};

/// The request `pcad backup` sends.
pub const REQUEST: &[u8] = b"SNAPSHOT\n";
/// A client that stops reading for this long loses its snapshot (and writers resume).
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Removes the socket when the daemon exits.
pub struct SocketGuard(PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds the backup socket of the database at `db_path` and serves it on a thread of its own.
pub fn listen(db_path: &Path, db: Db) -> Result<SocketGuard, String> {
    let path = socket_path(db_path);
    // Left by a pcad that was killed: this process holds the database's lock, so no other
    // pcad serves it.
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(&path);
        }
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(&path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(|e| format!("backup socket {}: {e}", path.display()))?;
    std::thread::Builder::new()
        .name("pcad-backup".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => serve(stream, &db),
                    Err(e) => log::warn!("backup socket: {e}"),
                }
            }
        })
        .map_err(|e| format!("backup socket thread: {e}"))?;
    Ok(SocketGuard(path))
}

fn serve(mut stream: UnixStream, db: &Db) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut request = [0u8; REQUEST.len()];
    if stream.read_exact(&mut request).is_err() || request != REQUEST {
        log::warn!("backup socket: not a snapshot request; closed");
        return;
    }
    let started = std::time::Instant::now();
    match db.write_snapshot(BufWriter::with_capacity(1 << 20, &stream)) {
        Ok(info) => log::info!(
            "backup snapshot sent: {} rows of {} trees, {} certificates, in {:.2} s",
            info.entries,
            info.trees,
            info.certificates,
            started.elapsed().as_secs_f64()
        ),
        Err(e) => log::warn!("backup snapshot not sent: {e}"),
    }
}
