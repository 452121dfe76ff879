//! Consistent snapshots of the whole database (`pcad backup` / `pcad restore`), taken while
//! pcad serves.
//!
//! Every write method of `Db` holds the read side of a gate for the duration of its writes, and
//! domain operations of several writes (issue, revoke: `Db::operation`) the read side of a
//! second one; a snapshot holds both write sides while it reads every tree, so it sees each
//! write method and each operation whole or not at all, as at one instant. Writers wait meanwhile (reads, OCSP and CRL
//! serving go on). The trees are copied generically, so trees added later travel too.
//!
//! The file: `MAGIC`, then records (a tag byte and length-prefixed fields): a tree's name, its
//! entries, a JSON summary ([`SnapshotInfo`]), an end mark; then the SHA-256 of every byte
//! before it. A snapshot is read twice on restore: once to verify it, once to load it.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{decode, Db, StoreError, SCHEMA_VERSION};

const MAGIC: &[u8] = b"PCAD-SNAPSHOT-1\n";
const TAG_TREE: u8 = 1;
const TAG_ENTRY: u8 = 2;
const TAG_INFO: u8 = 3;
const TAG_END: u8 = 0;
/// Longest key or value a snapshot may hold (sled values here are ≤ a few hundred KiB).
const MAX_FIELD: u32 = 1 << 30;

/// The part of a `CertRecord` a snapshot's summary needs.
#[derive(Deserialize)]
struct KeyOf {
    issuer_key: Option<KeyIdOf>,
}

#[derive(Deserialize)]
struct KeyIdOf {
    key_id: String,
}

/// The gates between writers (shared) and snapshots (exclusive): `rw` for each write method,
/// `ops` for domain operations of several writes (see [`Db::operation`]).
#[derive(Default)]
pub(super) struct Gate {
    rw: RwLock<()>,
    ops: RwLock<()>,
}

/// What a snapshot holds, besides its rows.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub schema_version: u32,
    /// Unix seconds.
    pub created_at: i64,
    pub pcad_version: String,
    pub trees: u64,
    pub entries: u64,
    pub certificates: u64,
    /// CKA_ID (hex) of every issuer key the snapshot's certificates use: the HSM must hold
    /// these for a restore to sign.
    pub key_ids: Vec<String>,
}

/// The path of the control socket of a database at `db_path`: `<db_path>.backup.sock`.
pub fn socket_path(db_path: &Path) -> PathBuf {
    let mut s = db_path.as_os_str().to_owned();
    s.push(".backup.sock");
    PathBuf::from(s)
}

/// Writes and hashes.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn field(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|l| *l <= MAX_FIELD)
        .ok_or_else(|| std::io::Error::other("field too long for a snapshot"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

impl Db {
    /// The read side of the snapshot gate: held by every write method while it writes.
    pub(super) fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.rw.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Held by a domain operation made of several writes that a snapshot must see whole or
    /// not at all: an issuance and its first OCSP response, a revocation and its OCSP
    /// tombstone, new response and CRL. Otherwise a restore could serve `good` for a
    /// certificate it lists as revoked. Not re-entrant: an operation must not start another.
    pub fn operation(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.ops.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a consistent snapshot of every tree to `out` (see the module's text) and
    /// returns its summary. Writers wait until the last row is written to `out`.
    pub fn write_snapshot(&self, out: impl Write) -> Result<SnapshotInfo, StoreError> {
        let mut out = Hashing {
            inner: out,
            hash: Sha256::new(),
        };
        out.write_all(MAGIC)?;
        let mut info = SnapshotInfo {
            schema_version: SCHEMA_VERSION,
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            pcad_version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        };
        let mut key_ids = std::collections::BTreeSet::new();
        {
            // Operations in flight finish first and new ones wait; then single writes.
            let _ops = self.gate.ops.write().unwrap_or_else(|p| p.into_inner());
            let _all = self.gate.rw.write().unwrap_or_else(|p| p.into_inner());
            let mut names = self.db.tree_names();
            names.sort();
            for name in names {
                let tree = self.db.open_tree(&name)?;
                out.write_all(&[TAG_TREE])?;
                field(&mut out, &name)?;
                info.trees += 1;
                let is_certs = name.as_ref() == b"certs";
                for kv in tree.iter() {
                    let (k, v) = kv?;
                    out.write_all(&[TAG_ENTRY])?;
                    field(&mut out, &k)?;
                    field(&mut out, &v)?;
                    info.entries += 1;
                    if is_certs {
                        // Only the key id: cheaper than a whole record (writers are waiting).
                        let cert: KeyOf = decode("cert", &v)?;
                        info.certificates += 1;
                        if let Some(key) = cert.issuer_key {
                            key_ids.insert(key.key_id);
                        }
                    }
                }
            }
        }
        info.key_ids = key_ids.into_iter().collect();
        out.write_all(&[TAG_INFO])?;
        field(&mut out, &serde_json::to_vec(&info).unwrap_or_default())?;
        out.write_all(&[TAG_END])?;
        let digest = out.hash.finalize_reset();
        out.inner.write_all(&digest)?;
        out.inner.flush()?;
        Ok(info)
    }
}

/// A reader that hashes what it reads.
struct Reader<R: Read> {
    inner: BufReader<R>,
    hash: Sha256,
}

fn bad(why: &str) -> StoreError {
    StoreError::Corrupt("snapshot".into(), why.into())
}

impl<R: Read> Reader<R> {
    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0; n];
        self.inner
            .read_exact(&mut buf)
            .map_err(|_| bad("truncated (the file ends early)"))?;
        self.hash.update(&buf);
        Ok(buf)
    }

    fn tag(&mut self) -> Result<u8, StoreError> {
        Ok(self.bytes(1)?[0])
    }

    fn field(&mut self) -> Result<Vec<u8>, StoreError> {
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.bytes(4)?);
        let len = u32::from_be_bytes(len);
        if len > MAX_FIELD {
            return Err(bad("field length out of range"));
        }
        self.bytes(len as usize)
    }
}

/// Reads a snapshot: calls `on_row(tree, key, value)` for every row, in order, and returns
/// the summary once the end mark, the summary's counts and the SHA-256 all check out. Any
/// damage is an error (rows already passed to `on_row` must then be discarded).
pub fn read_snapshot(
    input: impl Read,
    mut on_row: impl FnMut(&[u8], &[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<SnapshotInfo, StoreError> {
    let mut r = Reader {
        inner: BufReader::with_capacity(1 << 20, input),
        hash: Sha256::new(),
    };
    if r.bytes(MAGIC.len())? != MAGIC {
        return Err(bad("not a pcad snapshot (wrong magic)"));
    }
    let (mut tree, mut trees, mut entries) = (None::<Vec<u8>>, 0u64, 0u64);
    let mut info: Option<SnapshotInfo> = None;
    loop {
        match r.tag()? {
            TAG_TREE if info.is_none() => {
                tree = Some(r.field()?);
                trees += 1;
            }
            TAG_ENTRY if info.is_none() => {
                let name = tree
                    .as_deref()
                    .ok_or_else(|| bad("a row before any tree"))?;
                let (k, v) = (r.field()?, r.field()?);
                entries += 1;
                on_row(name, &k, &v)?;
            }
            TAG_INFO if info.is_none() => {
                info = Some(decode("snapshot summary", &r.field()?)?);
            }
            TAG_END => break,
            _ => return Err(bad("unexpected record")),
        }
    }
    let digest = r.hash.finalize();
    let mut stored = [0u8; 32];
    r.inner
        .read_exact(&mut stored)
        .map_err(|_| bad("truncated (no checksum)"))?;
    if stored[..] != digest[..] {
        return Err(bad("SHA-256 mismatch: the file is damaged"));
    }
    if r.inner.read(&mut [0u8; 1])? != 0 {
        return Err(bad("bytes after the checksum"));
    }
    let info = info.ok_or_else(|| bad("no summary"))?;
    if info.trees != trees || info.entries != entries {
        return Err(bad("row counts differ from the summary"));
    }
    if info.schema_version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: info.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(info)
}

/// Loads a snapshot file into a new database at `db_path` (missing, or an empty folder), and
/// opens it once as pcad would (schema check, id counters) before returning its summary. The
/// file is verified completely before anything is written.
pub fn restore_snapshot(file: &Path, db_path: &Path) -> Result<SnapshotInfo, StoreError> {
    let open = || std::fs::File::open(file);
    let info = read_snapshot(open()?, |_, _, _| Ok(()))?;
    if let Ok(mut entries) = std::fs::read_dir(db_path) {
        if entries.next().is_some() {
            return Err(StoreError::Conflict(format!(
                "{} is not empty: restore goes into a missing or empty storage path",
                db_path.display()
            )));
        }
    }
    let existed = db_path.exists();
    let loaded = load_rows(file, db_path);
    if loaded.is_err() {
        // Verified above, so this is an I/O failure: leave the path as it was (missing or empty).
        if existed {
            if let Ok(entries) = std::fs::read_dir(db_path) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(db_path);
        }
    }
    loaded?;
    Db::open(db_path)?.durable()?;
    Ok(info)
}

/// The rows of the (verified) snapshot `file` into a new database at `db_path`.
fn load_rows(file: &Path, db_path: &Path) -> Result<(), StoreError> {
    let open = || std::fs::File::open(file);
    {
        let db = Db::open(db_path)?;
        // What Db::open just wrote (schema version, counters) is replaced by the snapshot's.
        for name in db.db.tree_names() {
            db.db.open_tree(name)?.clear()?;
        }
        let mut current: Option<(Vec<u8>, sled::Tree)> = None;
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        read_snapshot(open()?, |name, k, v| {
            if current.as_ref().is_none_or(|(n, _)| n.as_slice() != name) {
                if let Some((_, tree)) = &current {
                    tree.apply_batch(std::mem::take(&mut batch))?;
                    pending = 0;
                }
                current = Some((name.to_vec(), db.db.open_tree(name)?));
            }
            batch.insert(k, v);
            pending += 1;
            if pending == 10_000 {
                if let Some((_, tree)) = &current {
                    tree.apply_batch(std::mem::take(&mut batch))?;
                }
                pending = 0;
            }
            Ok(())
        })?;
        if let Some((_, tree)) = &current {
            tree.apply_batch(batch)?;
        }
        db.durable()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CertRecord, CertType, IdKind, IssuerKey, SerialRecord, StoreRecord};

    fn issuer(id: u64, key_id: &str) -> (CertRecord, SerialRecord) {
        let rec = CertRecord {
            name: format!("issuer {id}"),
            serial: vec![id as u8; 8],
            issuer_key: Some(IssuerKey {
                key_id: key_id.into(),
                key_algorithm: crate::pki::KeyAlgorithm::P256,
                signature_algorithm: crate::pki::SignatureAlgorithm::Sha256WithEcdsa,
                max_depth: 1,
            }),
            ..CertRecord::sample(id, 1, CertType::Root)
        };
        let serial = SerialRecord {
            store_id: 1,
            issuer_id: id,
            serial: rec.serial.clone(),
            cert_id: Some(id),
            not_after: 1,
            revocation: None,
        };
        (rec, serial)
    }

    fn populated() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let store = StoreRecord {
            id: db.next_id_of(IdKind::Store).unwrap(),
            appkey: "k".into(),
            name: "s".into(),
            description: None,
            crl_active: true,
            crl_refresh_period: 7,
            ocsp_active: true,
            ocsp_refresh_period: 1,
            created_at: 0,
            updated_at: 0,
        };
        db.insert_store(&store).unwrap();
        for key in ["aa01", "bb02"] {
            let (c, s) = issuer(db.next_id_of(IdKind::Cert).unwrap(), key);
            db.insert_cert(Some(&c), &s).unwrap();
        }
        db.durable().unwrap();
        (dir, db)
    }

    #[test]
    fn a_snapshot_restores_every_row_and_the_counters() {
        let (dir, db) = populated();
        let mut file = Vec::new();
        let info = db.write_snapshot(&mut file).unwrap();
        assert_eq!(info.certificates, 2);
        assert_eq!(info.key_ids, ["aa01", "bb02"]);
        let path = dir.path().join("snap");
        std::fs::write(&path, &file).unwrap();

        let restored = dir.path().join("restored");
        assert_eq!(restore_snapshot(&path, &restored).unwrap(), info);
        let back = Db::open(&restored).unwrap();
        for name in db.db.tree_names() {
            let a: Vec<_> = db
                .db
                .open_tree(&name)
                .unwrap()
                .iter()
                .map(|r| r.unwrap())
                .collect();
            let b: Vec<_> = back
                .db
                .open_tree(&name)
                .unwrap()
                .iter()
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(a, b, "tree {}", String::from_utf8_lossy(&name));
        }
        assert_eq!(back.store("k", 1).unwrap().unwrap().name, "s");
        assert_eq!(back.next_id_of(IdKind::Cert).unwrap(), 3);

        // Not into a folder that holds something.
        assert!(matches!(
            restore_snapshot(&path, &restored),
            Err(StoreError::Conflict(_))
        ));
    }

    #[test]
    fn any_damage_is_refused_before_anything_is_written() {
        let (dir, db) = populated();
        let mut file = Vec::new();
        db.write_snapshot(&mut file).unwrap();
        let path = dir.path().join("snap");
        let mut cases = vec![file[..file.len() - 1].to_vec(), file[..40].to_vec()];
        let mut flipped = file.clone();
        flipped[file.len() / 2] ^= 1;
        cases.push(flipped);
        let mut extra = file.clone();
        extra.push(0);
        cases.push(extra);
        cases.push(b"hello".to_vec());
        for (i, bytes) in cases.into_iter().enumerate() {
            std::fs::write(&path, &bytes).unwrap();
            let target = dir.path().join(format!("r{i}"));
            let err = restore_snapshot(&path, &target).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(..)), "case {i}: {err}");
            assert!(!target.exists(), "case {i}: nothing written");
        }
    }

    #[test]
    fn writers_wait_for_a_snapshot_and_it_sees_their_writes_whole() {
        let (_dir, db) = populated();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut n = 10u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (c, sr) = issuer(n, "cc03");
                    db.insert_cert(Some(&c), &sr).unwrap();
                    n += 1;
                }
            });
            for _ in 0..20 {
                let mut rows: std::collections::BTreeMap<Vec<u8>, usize> = Default::default();
                let mut file = Vec::new();
                db.write_snapshot(&mut file).unwrap();
                read_snapshot(file.as_slice(), |tree, _, _| {
                    *rows.entry(tree.to_vec()).or_default() += 1;
                    Ok(())
                })
                .unwrap();
                // insert_cert writes a serial, an index entry and a record: all or none.
                let count = |t: &str| rows.get(t.as_bytes()).copied().unwrap_or(0);
                assert_eq!(count("certs"), count("serials"));
                assert_eq!(count("certs"), count("store_certs"));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

/// Every `Db` method in `src/store/` that writes must hold the snapshot gate, or a snapshot
/// could see half of it. A source check, so that methods added later (new records) cannot
/// forget it: a method whose body calls a sled write must call `self.writing()`.
#[cfg(test)]
mod gate_tests {
    /// Methods that write without the gate on purpose: open-time set-up (nothing else runs
    /// yet) and the snapshot itself.
    // delete_cert writes only under delete_certs' gate (the gate is not re-entrant).
    const EXEMPT: [&str; 4] = [
        "check_schema",
        "init_id_counters",
        "write_snapshot",
        "delete_cert",
    ];
    const WRITES: [&str; 8] = [
        ".insert(",
        ".remove(",
        ".transaction(",
        ".apply_batch(",
        ".update_and_fetch(",
        ".fetch_and_update(",
        ".compare_and_swap(",
        ".clear()",
    ];

    #[test]
    fn every_write_method_holds_the_gate() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Production code only: what precedes the first test module.
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            let mut in_db = false;
            let mut current: Option<(String, String)> = None;
            let mut check = |f: Option<(String, String)>| {
                if let Some((name, body)) = f {
                    let writes = WRITES.iter().any(|w| body.contains(w));
                    if writes
                        && !body.contains("self.writing()")
                        && !EXEMPT.contains(&name.as_str())
                    {
                        missing.push(format!("{}: {name}", path.display()));
                    }
                }
            };
            for line in text.lines() {
                if line.starts_with("impl Db") {
                    in_db = true;
                    continue;
                }
                if line == "}" {
                    check(current.take());
                    in_db = false;
                    continue;
                }
                if !in_db {
                    continue;
                }
                let head = line.trim_start();
                let is_fn = line.starts_with("    ") && !line.starts_with("     ") && {
                    let h = head
                        .trim_start_matches("pub(super) ")
                        .trim_start_matches("pub(crate) ")
                        .trim_start_matches("pub ");
                    h.starts_with("fn ")
                };
                if is_fn {
                    check(current.take());
                    let name = head.split("fn ").nth(1).unwrap_or_default();
                    let name = name.split(['(', '<']).next().unwrap_or_default().to_owned();
                    current = Some((name, String::new()));
                } else if let Some((_, body)) = current.as_mut() {
                    body.push_str(line);
                    body.push('\n');
                }
            }
            check(current.take());
        }
        assert!(
            missing.is_empty(),
            "write methods without `let _writing = self.writing();`: {missing:?}"
        );
    }
}
