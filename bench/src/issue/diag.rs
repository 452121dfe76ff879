//! Where an issuance's time goes, measured in this process on pcad's own code paths: the
//! storage layer's acknowledged writes per second and CPU per write (pcad's `store::Db`, a raw
//! sled replica of it, and cheaper variants as what-ifs), and the CPU cost of checking a CSR.

use std::fs::File;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::sign::Verifier;
use pcad::pki::der_util::{self, tag};
use pcad::store::{Db, StoreRecord};
use sled::Transactional;

use crate::sys;

/// Writer thread counts of the storage measurements.
pub const WRITERS: [usize; 3] = [1, 8, 32];

/// One way to make writes durable: acknowledged writes per second per `WRITERS` entry, and
/// the CPU microseconds (all threads of this process) per write at each.
pub struct StorageRow {
    pub what: &'static str,
    pub per_sec: Vec<f64>,
    pub cpu_us: Vec<f64>,
}

/// Storage measurements in a scratch folder `dir` (removed afterwards) on the daemon's
/// filesystem, each point lasting `length`: pcad's `Db` (a 2-tree transaction, then
/// `durable()`), the same over raw sled with pcad's group commit and sync (flush + fsync of
/// every file and folder), and what-ifs: fdatasync of sled's log file only, and no
/// transaction. Also the device floor: milliseconds per 4 KiB append + fdatasync of a plain
/// file.
pub fn storage(dir: &Path, length: Duration) -> Result<(Vec<StorageRow>, f64), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = storage_in(dir, length);
    let _ = std::fs::remove_dir_all(dir);
    result
}

fn storage_in(dir: &Path, length: Duration) -> Result<(Vec<StorageRow>, f64), String> {
    let mut rows = Vec::new();

    let db = Db::open(&dir.join("pcad-db")).map_err(|e| format!("scratch db: {e}"))?;
    let write = || -> Result<(), String> {
        let id = db.next_id().map_err(|e| e.to_string())?;
        let record = StoreRecord {
            id,
            appkey: "scratch".into(),
            name: format!("store {id}"),
            description: None,
            crl_active: false,
            crl_refresh_period: 7,
            ocsp_active: false,
            ocsp_refresh_period: 1,
            created_at: 0,
            updated_at: 0,
        };
        db.insert_store(&record).map_err(|e| e.to_string())?;
        db.durable().map_err(|e| e.to_string())
    };
    rows.push(row(
        "pcad store::Db: 2-tree txn + durable()",
        &write,
        length,
    )?);

    let sled_dir = dir.join("sled");
    let sled = sled::Config::new()
        .path(&sled_dir)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| format!("scratch sled: {e}"))?;
    let tree = sled.open_tree("t").map_err(|e| e.to_string())?;
    let log = File::open(sled_dir.join("db")).map_err(|e| format!("sled log: {e}"))?;
    let index = sled.open_tree("i").map_err(|e| e.to_string())?;
    let value = vec![0x42u8; 1500];
    for (what, transaction, every_file) in [
        ("raw sled: 2-tree txn + flush + fsync all", true, true),
        ("what-if: 2-tree txn + flush + fdatasync log", true, false),
        ("what-if: 1 insert + flush + fdatasync log", false, false),
    ] {
        let group = GroupCommit::default();
        let sync = || -> std::io::Result<()> {
            sled.flush()?;
            if every_file {
                fsync_tree(&sled_dir)
            } else {
                log.sync_data()
            }
        };
        let write = || -> Result<(), String> {
            let key = sled.generate_id().map_err(|e| e.to_string())?.to_be_bytes();
            if transaction {
                (&tree, &index)
                    .transaction(|(t, i)| {
                        t.insert(&key, value.as_slice())?;
                        i.insert(&key, &[1u8])?;
                        Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                    })
                    .map_err(|e| format!("{e:?}"))?;
            } else {
                tree.insert(key, value.as_slice())
                    .map_err(|e| e.to_string())?;
            }
            group.commit(&sync).map_err(|e| e.to_string())
        };
        rows.push(row(what, &write, length)?);
    }

    let plain = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join("plain"))
        .map_err(|e| format!("scratch file: {e}"))?;
    let block = [0x5au8; 4096];
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < length {
        use std::os::unix::fs::FileExt;
        plain
            .write_all_at(&block, syncs * 4096)
            .and_then(|()| plain.sync_data())
            .map_err(|e| format!("scratch file: {e}"))?;
        syncs += 1;
    }
    let fdatasync_ms = start.elapsed().as_secs_f64() * 1000.0 / syncs.max(1) as f64;
    Ok((rows, fdatasync_ms))
}

/// Writes per second and CPU microseconds per write of `write` at each `WRITERS` count, each
/// for `length`.
fn row(
    what: &'static str,
    write: &(dyn Fn() -> Result<(), String> + Sync),
    length: Duration,
) -> Result<StorageRow, String> {
    let mut row = StorageRow {
        what,
        per_sec: Vec::new(),
        cpu_us: Vec::new(),
    };
    for threads in WRITERS {
        let cpu0 = sys::cpu_seconds("self").unwrap_or(f64::NAN);
        let (n, secs) = writes(write, threads, length)?;
        let cpu = sys::cpu_seconds("self").unwrap_or(f64::NAN) - cpu0;
        row.per_sec.push(n as f64 / secs);
        row.cpu_us.push(cpu * 1e6 / n.max(1) as f64);
    }
    Ok(row)
}

/// `threads` threads calling `write` back to back for `length`: (writes, seconds).
fn writes(
    write: &(dyn Fn() -> Result<(), String> + Sync),
    threads: usize,
    length: Duration,
) -> Result<(u64, f64), String> {
    let start = Instant::now();
    let deadline = start + length;
    let counts: Vec<Result<u64, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || -> Result<u64, String> {
                    let mut n = 0;
                    while Instant::now() < deadline {
                        write()?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("writer died".into())))
            .collect()
    });
    let mut total = 0;
    for count in counts {
        total += count?;
    }
    Ok((total, start.elapsed().as_secs_f64()))
}

/// pcad's group commit (`store::durable::Syncer`): a writer draws a ticket after its write
/// and waits for a sync that started after it; one sync runs at a time.
#[derive(Default)]
struct GroupCommit {
    state: Mutex<Tickets>,
    done: Condvar,
}

#[derive(Default)]
struct Tickets {
    next: u64,
    synced_below: u64,
    running: bool,
}

impl GroupCommit {
    fn commit(&self, sync: &dyn Fn() -> std::io::Result<()>) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = st.next;
        st.next += 1;
        loop {
            if st.synced_below > ticket {
                return Ok(());
            }
            if st.running {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.running = true;
            let covers = st.next;
            drop(st);
            let result = sync();
            st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.running = false;
            self.done.notify_all();
            result?;
            st.synced_below = st.synced_below.max(covers);
        }
    }
}

/// pcad's `fsync_tree`: every regular file, recursively, then the folder.
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

/// CPU microseconds per CSR check, one thread.
pub struct CsrCost {
    /// pcad's `pki::csr::parse`: structure, then the signature through OpenSSL's `X509_REQ`
    /// decoding (OpenSSL 3 builds a decoder context for the public key).
    pub pcad: f64,
    /// The signature alone, with an OpenSSL EC key built from the SPKI's point.
    pub openssl_point: f64,
    /// The signature alone, with ring (already linked into pcad through rustls).
    pub ring: f64,
}

/// Measures `CsrCost` over `csrs` (P-256, SHA-256).
pub fn csr_check(csrs: &[(String, String)]) -> Result<CsrCost, String> {
    // CPU microseconds per item of `f` over `items`, this thread.
    fn cpu_per<T>(items: &[T], mut f: impl FnMut(&T) -> Result<(), String>) -> Result<f64, String> {
        let t = sys::thread_cpu_seconds();
        for i in items {
            f(i)?;
        }
        Ok((sys::thread_cpu_seconds() - t) * 1e6 / items.len().max(1) as f64)
    }
    let pcad = cpu_per(csrs, |(_, pem)| {
        pcad::pki::csr::parse(pem)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    let parts: Vec<Signed> = csrs
        .iter()
        .map(|(_, pem)| Signed::from_pem(pem))
        .collect::<Result<_, _>>()?;
    let ossl = |e: openssl::error::ErrorStack| e.to_string();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(ossl)?;
    let mut ctx = BigNumContext::new().map_err(ossl)?;
    let openssl_point = cpu_per(&parts, |s| {
        let point = EcPoint::from_bytes(&group, &s.point, &mut ctx).map_err(ossl)?;
        let key = PKey::from_ec_key(EcKey::from_public_key(&group, &point).map_err(ossl)?)
            .map_err(ossl)?;
        let mut verifier = Verifier::new(MessageDigest::sha256(), &key).map_err(ossl)?;
        match verifier
            .verify_oneshot(&s.signature, &s.info)
            .map_err(ossl)?
        {
            true => Ok(()),
            false => Err("CSR signature does not verify".into()),
        }
    })?;
    let ring = cpu_per(&parts, |s| {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &s.point)
            .verify(&s.info, &s.signature)
            .map_err(|_| "CSR signature does not verify (ring)".into())
    })?;
    Ok(CsrCost {
        pcad,
        openssl_point,
        ring,
    })
}

/// What a CSR's signature check needs.
struct Signed {
    /// The DER of the CertificationRequestInfo (the signed bytes).
    info: Vec<u8>,
    /// The subjectPublicKey bits (the uncompressed EC point).
    point: Vec<u8>,
    /// The DER Ecdsa-Sig-Value.
    signature: Vec<u8>,
}

impl Signed {
    fn from_pem(pem: &str) -> Result<Signed, String> {
        let (_, der) = pcad::pki::pem::decode_first(pem, &["CERTIFICATE REQUEST"])
            .map_err(|e| e.to_string())?;
        let e = |e: pcad::pki::PkiError| e.to_string();
        let mut req = der_util::parse_one(&der, tag::SEQUENCE)
            .map_err(e)?
            .reader();
        let info = req.take(tag::SEQUENCE).map_err(e)?;
        req.take(tag::SEQUENCE).map_err(e)?;
        let signature = req
            .take(tag::BIT_STRING)
            .map_err(e)?
            .bit_string()
            .map_err(e)?;
        let mut fields = info.reader();
        fields.take(tag::INTEGER).map_err(e)?;
        fields.take(tag::SEQUENCE).map_err(e)?;
        let spki = fields.take(tag::SEQUENCE).map_err(e)?.raw;
        Ok(Signed {
            info: info.raw.to_vec(),
            point: pcad::pki::cert::subject_public_key_bits(spki),
            signature: signature.to_vec(),
        })
    }
}
