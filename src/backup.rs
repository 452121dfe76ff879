//! `pcad backup`, `pcad restore` and `pcad backup-check`: snapshots of the database, and the
//! HSM keys a snapshot needs.
//!
//! While pcad serves, `backup` asks it for the snapshot over its backup socket (the daemon holds
//! the database's lock); otherwise it opens the database itself. Either way the file is written
//! beside its final name, read back and verified (SHA-256, row counts, summary) before it is
//! renamed into place. Issuer private keys are never in a snapshot: they live in the HSM, whose
//! own backup must hold every key id a snapshot lists (`backup-check` says which are missing).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::hsm::Hsm;
use crate::server::backup::REQUEST;
use crate::store::{read_snapshot, restore_snapshot, socket_path, Db, SnapshotInfo};

fn load(config_path: &Path) -> Result<(Config, PathBuf), String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let db_path = config.resolve(&config.storage.path);
    Ok((config, db_path))
}

/// Verifies the snapshot file at `path` completely.
pub fn verify(path: &Path) -> Result<SnapshotInfo, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read_snapshot(file, |_, _, _| Ok(())).map_err(|e| format!("{}: {e}", path.display()))
}

/// `pcad backup --config FILE --out FILE`.
pub fn backup(config_path: &Path, out: &Path) -> Result<String, String> {
    let (_, db_path) = load(config_path)?;
    if out.exists() {
        return Err(format!(
            "{} already exists: refusing to overwrite it",
            out.display()
        ));
    }
    let file_name = out
        .file_name()
        .ok_or_else(|| format!("--out {}: not a file name", out.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(".partial");
    let tmp = out.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let result = take(&db_path, &file).and_then(|(info, how)| {
        file.sync_all()
            .map_err(|e| format!("cannot sync {}: {e}", tmp.display()))?;
        let back = verify(&tmp)?;
        if back != info {
            return Err("the written file reads back differently from what was sent".into());
        }
        std::fs::rename(&tmp, out)
            .map_err(|e| format!("cannot rename to {}: {e}", out.display()))?;
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())?;
        Ok((info, how))
    });
    let (info, how) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    Ok(format!(
        "pcad backup: wrote {out} ({how}), verified: {} rows in {} trees, {} certificates, \
         schema {}\n{}\
         Issuer keys are not in this file: keep an HSM backup holding every key id above \
         (pcad backup-check --in {out} lists them against the token).",
        info.entries,
        info.trees,
        info.certificates,
        info.schema_version,
        key_list(&info, None),
        out = out.display(),
    ))
}

/// The snapshot, from the serving daemon or from the database itself.
fn take(db_path: &Path, file: &File) -> Result<(SnapshotInfo, &'static str), String> {
    let socket = socket_path(db_path);
    match UnixStream::connect(&socket) {
        Ok(mut stream) => {
            stream
                .write_all(REQUEST)
                .map_err(|e| format!("backup socket {}: {e}", socket.display()))?;
            let mut writer = BufWriter::with_capacity(1 << 20, file);
            std::io::copy(&mut stream, &mut writer)
                .and_then(|_| writer.flush())
                .map_err(|e| format!("backup socket {}: {e}", socket.display()))?;
            drop(writer);
            let info = verify_open(file)?;
            Ok((info, "from the running pcad"))
        }
        Err(_) => {
            if !db_path.join("conf").exists() && !db_path.join("db").exists() {
                return Err(format!(
                    "no database at {} (storage.path) and no running pcad on {}",
                    db_path.display(),
                    socket.display()
                ));
            }
            let db = Db::open(db_path).map_err(|e| {
                format!(
                    "cannot open {} ({e}); if pcad is running, its backup socket {} does not answer",
                    db_path.display(),
                    socket.display()
                )
            })?;
            let mut writer = BufWriter::with_capacity(1 << 20, file);
            let info = db.write_snapshot(&mut writer).map_err(|e| e.to_string())?;
            writer.flush().map_err(|e| e.to_string())?;
            Ok((info, "pcad not running: read from the database"))
        }
    }
}

/// The summary of what was streamed into `file` (read through a second handle).
fn verify_open(file: &File) -> Result<SnapshotInfo, String> {
    use std::io::{Seek, SeekFrom};
    let mut f = file.try_clone().map_err(|e| e.to_string())?;
    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    read_snapshot(f, |_, _, _| Ok(())).map_err(|e| {
        format!("the snapshot pcad sent is incomplete or damaged ({e}); see pcad's log")
    })
}

/// `pcad restore --config FILE --in FILE`.
pub fn restore(config_path: &Path, input: &Path) -> Result<String, String> {
    let (config, db_path) = load(config_path)?;
    if UnixStream::connect(socket_path(&db_path)).is_ok() {
        return Err(format!(
            "a pcad is serving {}: stop it before restoring into its storage path",
            db_path.display()
        ));
    }
    let info =
        restore_snapshot(input, &db_path).map_err(|e| format!("{}: {e}", input.display()))?;
    let keys = match token_keys(&config) {
        Ok(present) => key_list(&info, Some(&present)),
        Err(e) => format!(
            "{}(could not check the token: {e}; run pcad backup-check once the HSM is reachable)\n",
            key_list(&info, None)
        ),
    };
    Ok(format!(
        "pcad restore: {} restored into {}: {} rows in {} trees, {} certificates (snapshot of {})\n{keys}\
         Start pcad on it once the token holds every key above.",
        input.display(),
        db_path.display(),
        info.entries,
        info.trees,
        info.certificates,
        utc(info.created_at)
    ))
}

/// `pcad backup-check --config FILE --in FILE`: the listing, and whether every key is there.
pub fn check(config_path: &Path, input: &Path) -> Result<(String, bool), String> {
    let (config, _) = load(config_path)?;
    let info = verify(input)?;
    let present = token_keys(&config)?;
    let complete = info.key_ids.iter().all(|k| present.contains(k));
    Ok((
        format!(
            "pcad backup-check: {} is intact (taken {}, {} rows, {} certificates, schema {}); token {:?}:\n{}",
            input.display(),
            utc(info.created_at),
            info.entries,
            info.certificates,
            info.schema_version,
            config.hsm.token_label,
            key_list(&info, Some(&present))
        ),
        complete,
    ))
}

/// CKA_IDs (hex) of the private keys in the config's token.
fn token_keys(config: &Config) -> Result<BTreeSet<String>, String> {
    let pin = config.pin().map_err(|e| e.to_string())?;
    let hsm = Hsm::open(&config.hsm, pin).map_err(|e| format!("HSM: {e}"))?;
    let keys = hsm.list_keys().map_err(|e| format!("HSM: {e}"))?;
    Ok(keys.into_iter().map(|k| k.id.to_hex()).collect())
}

fn utc(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(
        || unix.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn key_list(info: &SnapshotInfo, present: Option<&BTreeSet<String>>) -> String {
    let mut text = format!(
        "HSM key ids (CKA_ID) the snapshot expects: {}\n",
        info.key_ids.len()
    );
    for id in &info.key_ids {
        let state = match present {
            None => "",
            Some(p) if p.contains(id) => "  present in the token",
            Some(_) => "  MISSING from the token",
        };
        text.push_str(&format!("  {id}{state}\n"));
    }
    text
}
