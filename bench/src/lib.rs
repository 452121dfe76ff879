//! The harness of pcad's benchmark programs: each program in `src/bin/` parses its command line
//! (`cli`) and calls its module here (`ocsp`, `serving`, `crl`, `issue::bench`, `acme`,
//! `scaleout`), which start processes through `daemon`.
//!
//! A `Lab` is pcad in-process against a real SoftHSM token in a temporary folder (made by
//! `pcad::quickstart::run`); the rest are request builders, fast database population (setup,
//! not what is measured), memory readings from `/proc/self/status`, and small statistics.

pub mod acme;
pub mod cli;
pub mod crl;
pub mod daemon;
pub mod issue;
pub mod ocsp;
pub mod scaleout;
pub mod serving;
pub mod sys;

pub use sys::{context_switches, cpu_time, load_average, mem, reset_peak, trim_heap, Mem};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pcad::ca::{
    Actor, Ca, CertKind, IssuerParams, LeafMode, LeafParams, StoreParams, TemplateSpec, Validity,
};
use pcad::config::Config;
use pcad::hsm::{Hsm, KeyId};
use pcad::pki::cert::{ExtendedKeyUsage, KeyUsage, Sans, SubjectInfo};
use pcad::pki::crl::RevocationReason;
use pcad::pki::{KeyAlgorithm, SignError, SignatureAlgorithm, Signer};
use pcad::status::Publisher;
use pcad::store::{CertRecord, CertType, Db, Revocation, SerialRecord, StoreRecord};

/// The PKCS#11 module every benchmark uses.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The appkey (tenant) of everything the benchmarks create.
pub const APPKEY: &str = "bench";

/// pcad in-process: config, HSM, database, publisher and CA over one fresh SoftHSM token.
pub struct Lab {
    /// The lab's folder: token, config, database. Removed when the lab is dropped (unless
    /// `PCAD_BENCH_KEEP` is set) when this lab made it.
    pub dir: Option<tempfile::TempDir>,
    pub path: PathBuf,
    pub config: Config,
    pub hsm: Hsm,
    pub db: Db,
    pub publisher: Publisher,
    pub ca: Ca,
    /// `[hsm] sessions` of the config (the signing parallelism).
    pub sessions: usize,
    /// Who the benchmark's state changes are recorded as (audit).
    pub who: Actor,
}

impl Lab {
    /// Makes a token and config with `pcad quickstart`'s code and opens everything like
    /// `pcad serve` does, without the refresh scheduler (nothing runs in the background).
    pub fn new() -> Result<Lab, String> {
        let dir = tempdir("pcad-bench-")?;
        quickstart(dir.path(), 18443, 18080)?;
        let mut lab = Lab::open(dir.path())?;
        lab.dir = Some(dir);
        Ok(lab)
    }

    /// Opens the lab another process made in `path` (kept by that process), like a restarted
    /// `pcad serve`.
    pub fn open(path: &Path) -> Result<Lab, String> {
        let config = Config::load(&path.join("pcad.toml")).map_err(|e| e.to_string())?;
        let pin = config.pin().map_err(|e| e.to_string())?;
        let hsm = Hsm::open(&config.hsm, pin).map_err(|e| format!("HSM: {e}"))?;
        let db = Db::open(&config.resolve(&config.storage.path)).map_err(|e| e.to_string())?;
        let sessions = config.hsm.sessions;
        let publisher = Publisher::new(db.clone(), hsm.clone(), sessions);
        let ca = Ca::new(
            db.clone(),
            hsm.clone(),
            &config.public.base_url,
            publisher.clone(),
        );
        Ok(Lab {
            dir: None,
            path: path.to_owned(),
            config,
            hsm,
            db,
            publisher,
            ca,
            sessions,
            who: actor(),
        })
    }

    /// Makes everything durable and closes it, keeping the folder: hands it back for
    /// `Lab::open` in another process.
    pub fn close(self) -> Result<Option<tempfile::TempDir>, String> {
        self.db.durable().map_err(|e| e.to_string())?;
        Ok(self.dir)
    }

    /// A store with the given publishing switches (refresh periods at their longest).
    pub fn store(&self, name: &str, crl: bool, ocsp: bool) -> Result<StoreRecord, String> {
        let s = self
            .ca
            .create_store(&self.who, store_params(name, crl, ocsp))
            .map_err(|e| format!("create store: {e}"))?;
        self.db
            .store(APPKEY, s.id)
            .map_err(|e| format!("read store: {e}"))?
            .ok_or_else(|| "the new store is missing".into())
    }

    /// A ROOT (`parent` None) or INTERMEDIATE with its key generated in the HSM.
    pub fn issuer(
        &self,
        store: &StoreRecord,
        parent: Option<u64>,
        key: KeyAlgorithm,
    ) -> Result<CertRecord, String> {
        let c = self
            .ca
            .create_issuer(&self.who, store.id, issuer_params(parent, key))
            .map_err(|e| format!("create issuer ({key:?}): {e}"))?;
        self.db
            .cert(APPKEY, store.id, c.id)
            .map_err(|e| format!("read issuer: {e}"))?
            .ok_or_else(|| "the new issuer is missing".into())
    }
}

/// The benchmark's identity in the audit log, on appkey `APPKEY`.
pub fn actor() -> Actor {
    Actor {
        identity: "pcad-bench".into(),
        appkey: APPKEY.into(),
    }
}

/// A temporary folder that `PCAD_BENCH_KEEP=1` keeps for inspection.
pub fn tempdir(prefix: &str) -> Result<tempfile::TempDir, String> {
    let mut d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    if std::env::var_os("PCAD_BENCH_KEEP").is_some() {
        d.disable_cleanup(true);
    }
    Ok(d)
}

/// `pcad quickstart --dir DIR --api-port A --public-port P` through the library.
pub fn quickstart(dir: &Path, api_port: u16, public_port: u16) -> Result<(), String> {
    pcad::quickstart::run(&pcad::quickstart::QuickstartOptions {
        dir: dir.to_owned(),
        api_port,
        public_port,
        module: PathBuf::from(SOFTHSM_MODULE),
    })
    .map(|_| ())
}

/// A Create Store body, checked.
pub fn store_params(name: &str, crl: bool, ocsp: bool) -> StoreParams {
    StoreParams {
        name: name.to_owned(),
        description: Some("pcad-bench".into()),
        crl_active: crl,
        crl_refresh_period: 7,
        ocsp_active: ocsp,
        ocsp_refresh_period: 12,
    }
}

/// An Issue Certificate (Issuer) body: ROOT without a parent, INTERMEDIATE below `parent`.
pub fn issuer_params(parent: Option<u64>, key: KeyAlgorithm) -> IssuerParams {
    let (cert_type, kind, max_depth, years) = match parent {
        None => (CertKind::Root, "Root", 2, 10),
        Some(_) => (CertKind::Intermediate, "Intermediate", 0, 5),
    };
    IssuerParams {
        cert_type,
        parent_cert_id: parent,
        name: format!("bench-{}-{kind}", key.api_name()).to_lowercase(),
        description: None,
        subject: SubjectInfo {
            common_name: Some(format!("pcad Bench {kind} {key:?}")),
            organization: Some("pcad bench".into()),
            country: Some("KR".into()),
            ..SubjectInfo::default()
        },
        validity: Validity::Ttl(years * 365 * 86_400 - 86_400),
        back_date: 0,
        max_depth,
        key,
        signature_algorithm: key.signature_algorithm(256),
        exclude_cn_from_sans: false,
        sans: Sans::default(),
    }
}

/// A template for P-256 server leaves below `parent`, stored in the server.
pub fn template_params(parent: u64) -> TemplateSpec {
    TemplateSpec {
        name: "bench-leaves".into(),
        description: None,
        parent_cert_id: parent,
        max_ttl: Some(90 * 86_400),
        max_specific_date: None,
        back_date_validation: 30,
        allow_ip_sans: false,
        url_sans_whitelist: vec![],
        other_sans_whitelist: vec![],
        store_in_server: true,
        basic_constraints_valid_for_non_ca: false,
        use_csr_common_name: false,
        use_csr_sans: false,
        key_algorithm: KeyAlgorithm::P256,
        key_algorithm_name: "EC".into(),
        signature_bits: 256,
        key_usage: vec![KeyUsage::DigitalSignature],
        extended_key_usage: vec![ExtendedKeyUsage::ServerAuth],
        extended_key_usage_oids: vec![],
        policies: vec![],
        subject_info: SubjectInfo {
            organization: Some("pcad bench".into()),
            country: Some("KR".into()),
            ..SubjectInfo::default()
        },
        use_csr_other_fields: false,
        other_fields: vec![],
    }
}

/// A GENERATE-mode leaf request.
pub fn leaf_params(common_name: &str) -> LeafParams {
    LeafParams {
        mode: LeafMode::Generate,
        common_name: Some(common_name.to_owned()),
        validity: None,
        exclude_cn_from_sans: false,
        serial_number: None,
        sans: Sans::default(),
        cn_optional: false,
    }
}

/// The HSM key id and signature algorithm of an issuer.
pub fn issuer_key(issuer: &CertRecord) -> Result<(KeyId, SignatureAlgorithm), String> {
    let k = issuer.issuer_key.as_ref().ok_or("not an issuer")?;
    let id = KeyId::from_hex(&k.key_id).ok_or("bad key id")?;
    Ok((id, k.signature_algorithm))
}

/// A random positive 16-octet serial, as pcad draws them.
pub fn random_serial() -> Vec<u8> {
    let mut s: [u8; 16] = rand::random();
    s[0] &= 0x7f;
    if s[0] == 0 {
        s[0] = 1;
    }
    s.to_vec()
}

/// Key types by the names the command lines use.
pub fn key_by_name(name: &str) -> Option<KeyAlgorithm> {
    match name {
        "p256" => Some(KeyAlgorithm::P256),
        "rsa2048" => Some(KeyAlgorithm::Rsa2048),
        "ed25519" => Some(KeyAlgorithm::Ed25519),
        _ => None,
    }
}

/// The command-line name of a key type.
pub fn key_name(key: KeyAlgorithm) -> &'static str {
    match key {
        KeyAlgorithm::P256 => "P-256",
        KeyAlgorithm::Rsa2048 => "RSA-2048",
        KeyAlgorithm::Ed25519 => "Ed25519",
        _ => "other",
    }
}

/// Inserts `n` serial records of `issuer` (`storeInServer: false` leaves: no certificate
/// record) through `Db::insert_cert`, on `threads` threads. Setup, not a measurement.
pub fn populate_serials(
    db: &Db,
    store: &StoreRecord,
    issuer: &CertRecord,
    n: usize,
    threads: usize,
) -> Result<(), String> {
    let not_after = issuer.not_after.min(pcad::clock::now() + 365 * 86_400);
    parallel(n, threads, |_| {
        let rec = serial_record(store, issuer, random_serial(), None, not_after);
        db.insert_cert(None, &rec).map_err(|e| e.to_string())
    })?;
    db.durable().map_err(|e| e.to_string())
}

/// The serial record of a leaf of `issuer` (not revoked).
fn serial_record(
    store: &StoreRecord,
    issuer: &CertRecord,
    serial: Vec<u8>,
    cert_id: Option<u64>,
    not_after: i64,
) -> SerialRecord {
    SerialRecord {
        store_id: store.id,
        issuer_id: issuer.id,
        serial,
        cert_id,
        not_after,
        revocation: None,
    }
}

/// Inserts `n` revoked leaves of `issuer`: a minimal certificate record (no DER) and its serial
/// record through `Db::insert_cert`, then `Db::revoke` (the only writer of the revoked index).
/// Reasons alternate unspecified / keyCompromise. Setup, not a measurement.
pub fn populate_revoked(
    db: &Db,
    store: &StoreRecord,
    issuer: &CertRecord,
    n: usize,
    threads: usize,
) -> Result<(), String> {
    let t = pcad::clock::now();
    let not_after = issuer.not_after.min(t + 365 * 86_400);
    // Ids far above sled's generated ids, so they never meet the ids of real certificates.
    const BASE_ID: u64 = 1 << 40;
    parallel(n, threads, |i| {
        let serial = random_serial();
        let rec = CertRecord {
            id: BASE_ID + i as u64,
            appkey: APPKEY.into(),
            store_id: store.id,
            name: "bulk".into(),
            description: None,
            cert_type: CertType::Leaf,
            parent_cert_id: Some(issuer.id),
            template_id: None,
            serial: serial.clone(),
            der: Vec::new(),
            common_name: None,
            subject: "CN=bulk".into(),
            issuer: issuer.subject.clone(),
            not_before: t - 86_400,
            not_after,
            key_algorithm: KeyAlgorithm::P256,
            signature_algorithm: issuer
                .issuer_key
                .as_ref()
                .map(|k| k.signature_algorithm)
                .unwrap_or(SignatureAlgorithm::Sha256WithEcdsa),
            issuer_key: None,
            sans: Sans::default(),
            crl_url: None,
            ocsp_url: None,
            revocation: None,
            created_at: t,
        };
        let sr = serial_record(store, issuer, serial, Some(rec.id), not_after);
        db.insert_cert(Some(&rec), &sr).map_err(|e| e.to_string())?;
        let reason = if i % 2 == 0 {
            RevocationReason::Unspecified
        } else {
            RevocationReason::KeyCompromise
        };
        db.revoke(&rec, Revocation { at: t - 60, reason })
            .map_err(|e| e.to_string())?;
        Ok(())
    })?;
    db.durable().map_err(|e| e.to_string())
}

/// Runs `f(i)` for every i in 0..n on `threads` threads; the first error stops everything.
pub fn parallel(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> Result<(), String> + Sync,
) -> Result<(), String> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if let Err(e) = f(i) {
                    stop.store(true, Ordering::Relaxed);
                    if let Ok(mut slot) = first_error.lock() {
                        slot.get_or_insert(e);
                    }
                    break;
                }
            });
        }
    });
    match first_error.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A signer that signs nothing: returns a fixed value of the right size, so that encoding can
/// be timed without the HSM.
pub struct FakeSigner(pub SignatureAlgorithm);

impl Signer for FakeSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.0
    }

    fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(match self.0 {
            SignatureAlgorithm::Ed25519 => vec![0x55; 64],
            SignatureAlgorithm::Sha256WithEcdsa
            | SignatureAlgorithm::Sha384WithEcdsa
            | SignatureAlgorithm::Sha512WithEcdsa => {
                let mut v = vec![0x30, 0x44, 0x02, 0x20];
                v.extend([0x11; 32]);
                v.extend([0x02, 0x20]);
                v.extend([0x22; 32]);
                v
            }
            _ => vec![0x33; 256],
        })
    }
}

/// Bytes as MB (10^6), for tables.
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median of some values (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// A percentile by linear interpolation between closest ranks; 0 when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = (p / 100.0) * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

/// Times a closure.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

/// The machine facts every benchmark prints first.
pub fn machine_header(program: &str) -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let softhsm = command_line("softhsm2-util", &["--version"]);
    let kernel = command_line("uname", &["-r"]);
    format!(
        "# {program}  ({})\n# machine: nproc={cpus} ({model}), kernel {kernel}, SoftHSM {softhsm} ({SOFTHSM_MODULE})\n# load average at start: {}\n",
        utc_now(),
        load_average()
    )
}

/// The first line a command prints, or `?`.
pub fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// Now as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    format!("{} UTC", pcad::clock::timestamp(pcad::clock::now()))
}

/// Waits for a child process up to `limit`; kills it when the limit passes.
pub fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Reads all a child (spawned with its stdout piped) prints and waits for it, up to `limit`.
pub fn stdout_bounded(
    mut child: std::process::Child,
    limit: Duration,
) -> Result<(std::process::ExitStatus, Vec<u8>), String> {
    use std::io::Read;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let status = wait_bounded(&mut child, limit)?;
    Ok((status, reader.join().unwrap_or_default()))
}

/// Runs this program again with `args` (a fresh process, so per-run memory peaks are its own),
/// echoes its stderr, and returns its stdout; killed after `limit`.
pub fn run_self(args: &[String], limit: Duration) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot re-run myself: {e}"))?;
    let (status, out) = stdout_bounded(child, limit)?;
    let out = String::from_utf8_lossy(&out).into_owned();
    if !status.success() {
        return Err(format!("child {args:?} failed ({status}): {out}"));
    }
    Ok(out)
}

/// Runs this program again with `args` (`run_self`) and returns the `key=value` fields of the
/// line it prints starting with `tag` and a space.
pub fn child_row(
    args: &[&dyn std::fmt::Display],
    limit: Duration,
    tag: &str,
) -> Result<std::collections::HashMap<String, String>, String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = run_self(&args, limit)?;
    tagged_fields(&out, &format!("{tag} ")).ok_or(format!("no {tag} in child output: {out}"))
}

/// A number among `tagged_fields`; NaN when absent.
pub fn field(f: &std::collections::HashMap<String, String>, k: &str) -> f64 {
    f.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// `key=value` fields of the line of `out` that starts with `tag`.
pub fn tagged_fields(out: &str, tag: &str) -> Option<std::collections::HashMap<String, String>> {
    let line = out.lines().find(|l| l.starts_with(tag))?;
    Some(
        line[tag.len()..]
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}
