//! `issue-bench`'s runs: a real `pcad serve`, its issuers set up over the API, issuance under
//! load per layout beside the raw HSM rate, and the no-HTTP diagnostics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use serde_json::json;

use pcad::hsm::Hsm;
use pcad::pki::SignatureAlgorithm;

use super::client::{Conn, Endpoint};
use super::load::{self, Outcome, Spec};
use super::{csr, diag, raw};
use crate::daemon::Daemon;
use crate::{sys, APPKEY};

/// The command line of `issue-bench`.
pub struct Options {
    pub pcad: PathBuf,
    pub window: Duration,
    pub warmup: Duration,
    pub raw_window: Duration,
    pub layouts: Vec<&'static str>,
    pub csrs: usize,
    pub ocsp_run: bool,
    pub floor_runs: bool,
    pub keep: bool,
}

/// An issuer under test: a ROOT in its store with a leaf template below it.
struct Issuer {
    label: &'static str,
    alg: SignatureAlgorithm,
    store: u64,
    cert_id: u64,
    template: u64,
}

impl Issuer {
    fn issue_path(&self) -> String {
        format!(
            "/v2.0/appkeys/{APPKEY}/ca-stores/{}/templates/{}/certificates",
            self.store, self.template
        )
    }
}

/// Where the daemon and the load generator run.
struct Layout {
    name: &'static str,
    daemon_cpus: Vec<usize>,
    client_cpus: Vec<usize>,
}

/// Sets the daemon up, runs every layout and prints the table and the diagnostics.
pub fn run(o: &Options) -> Result<(), String> {
    let cpus = sys::cpu_count();
    println!("pcad issue-bench: SIGN-mode leaf issuance over mutual TLS (HTTP/1.1 keep-alive), durable writes");
    println!(
        "host: {cpus} CPUs, load average {} before the runs; window {} s after {} s warm-up per run",
        sys::load_average(),
        o.window.as_secs(),
        o.warmup.as_secs()
    );
    print!("making {} P-256 CSRs (inputs, not measured) ... ", o.csrs);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let csrs = csr::p256_csrs(o.csrs)?;
    println!("done");
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        csrs.iter()
            .map(|(cn, pem)| {
                Bytes::from(
                    json!({"mode": "SIGN", "csr": pem, "commonName": cn, "ttlValue": 3600})
                        .to_string(),
                )
            })
            .collect(),
    );

    let tmp = tempfile::Builder::new()
        .prefix("pcad-issue-bench-")
        .tempdir()
        .map_err(|e| format!("temporary folder: {e}"))?;
    // Declared after `tmp`, so dropped (stopped) before the folder is removed.
    let daemon = Daemon::start(&o.pcad, tmp.path())?;
    let result = bench(o, &daemon, &csrs, bodies, cpus);
    if result.is_err() {
        eprintln!(
            "daemon log ({}):\n{}",
            daemon.dir.join("pcad.log").display(),
            daemon.log_tail()
        );
    }
    drop(daemon);
    if o.keep {
        println!("kept {}", tmp.keep().display());
    }
    result
}

fn bench(
    o: &Options,
    daemon: &Daemon,
    csrs: &[(String, String)],
    bodies: Arc<Vec<Bytes>>,
    cpus: usize,
) -> Result<(), String> {
    let sessions = daemon.config.hsm.sessions;
    println!(
        "daemon: {} serve, pid {}, hsm.sessions = {sessions}, token {:?} (SoftHSM2), db {}",
        o.pcad.display(),
        daemon.pid,
        daemon.config.hsm.token_label,
        daemon.config.resolve(&daemon.config.storage.path).display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let endpoint = Arc::new(Endpoint::new(&daemon.dir, daemon.api_port)?);
    let setup = rt.block_on(set_up(&endpoint))?;

    // The reference opens the same token in this process, after the issuer keys exist.
    let pin = daemon.config.pin().map_err(|e| e.to_string())?;
    let hsm = Hsm::open(&daemon.config.hsm, pin).map_err(|e| format!("HSM: {e}"))?;
    let key_of =
        |i: &Issuer| raw::key_by_label(&hsm, &format!("pcad/{APPKEY}/{}/{}", i.store, i.cert_id));
    let keys = [key_of(&setup.p256)?, key_of(&setup.rsa)?];

    let all: Vec<usize> = (0..cpus).collect();
    let mut layouts = Vec::new();
    for name in &o.layouts {
        match *name {
            "split" if cpus < 2 => println!("layout split skipped: only one CPU"),
            "split" => layouts.push(Layout {
                name,
                daemon_cpus: vec![0],
                client_cpus: (1..cpus).collect(),
            }),
            _ => layouts.push(Layout {
                name,
                daemon_cpus: all.clone(),
                client_cpus: all.clone(),
            }),
        }
    }

    if o.floor_runs {
        diagnostics(&daemon.dir, csrs)?;
    }

    let mut summary = Vec::new();
    for layout in &layouts {
        sys::pin_process(daemon.pid, &layout.daemon_cpus)?;
        sys::pin_process(std::process::id(), &layout.client_cpus)?;
        println!();
        match layout.name {
            "split" => println!(
                "== layout split: daemon pinned to CPU {}, load generator to CPU {} (sched_setaffinity, \
                 as `taskset -a -p`); raw reference on the daemon's CPU only",
                sys::cpu_list(&layout.daemon_cpus),
                sys::cpu_list(&layout.client_cpus)
            ),
            _ => println!(
                "== layout shared: daemon and load generator share the same {cpus} CPUs ({}): \
                 the client's TLS and JSON work competes with the daemon",
                sys::cpu_list(&all)
            ),
        }
        println!(
            "raw SoftHSM signing: in-process Hsm::sign on the same token, {sessions} threads \
             (= hsm.sessions), {} s, CPUs {}, daemon idle:",
            o.raw_window.as_secs(),
            sys::cpu_list(&layout.daemon_cpus)
        );
        let mut raw_rates = [0.0; 2];
        let mut raw_cpu_ms = [0.0; 2];
        for (k, issuer) in [&setup.p256, &setup.rsa].into_iter().enumerate() {
            let threads = (sessions, &layout.daemon_cpus[..]);
            let rate = raw::sign_rate(
                &hsm,
                &keys[k],
                issuer.alg,
                threads,
                o.raw_window,
                raw::TBS_BYTES,
            )?;
            raw_rates[k] = rate.per_sec;
            raw_cpu_ms[k] = rate.cpu_ms;
            println!(
                "  {:<9} {:<18} {:>8.0} signs/s  ({:.3} ms CPU per signature; other processes used {:.2} cores meanwhile)",
                issuer.label,
                issuer.alg.api_name(),
                rate.per_sec,
                rate.cpu_ms,
                rate.other_cores
            );
        }
        println!("{}", Row::HEADER);
        let run = |label: String,
                   clients: usize,
                   method: Method,
                   path: String,
                   bodies: Arc<Vec<Bytes>>,
                   window: Duration| {
            let spec = Spec {
                clients,
                warmup: o.warmup,
                window,
                method,
                path,
                bodies,
            };
            let outcome = rt.block_on(load::run(Arc::clone(&endpoint), spec, daemon.pid))?;
            Ok::<_, String>((label, clients, outcome))
        };
        // An issuance run, printed with its ratio to issuer `k`'s raw signing rate.
        let issue_run = |label: &str, clients: usize, path: String, k: usize| {
            let (label, clients, outcome) = run(
                label.to_owned(),
                clients,
                Method::POST,
                path,
                Arc::clone(&bodies),
                o.window,
            )?;
            let ratio = outcome.rate() / raw_rates[k];
            let model = cpu_model(&outcome, raw_cpu_ms[k], layout);
            Row {
                label: &label,
                clients,
                outcome: &outcome,
                ratio: Some((ratio, model)),
            }
            .print();
            Ok::<_, String>((outcome, ratio, model))
        };
        for (k, issuer) in [&setup.p256, &setup.rsa].into_iter().enumerate() {
            for clients in [8, 32] {
                let (outcome, ratio, model) =
                    issue_run(issuer.label, clients, issuer.issue_path(), k)?;
                summary.push(format!(
                    "{:<6} {:<9} {clients:>2} clients: {:>6.0} issued/s = {ratio:.2} x raw {:.0}/s ({}); CPU model {model:.2}",
                    layout.name,
                    issuer.label,
                    outcome.rate(),
                    raw_rates[k],
                    if ratio >= 0.5 { "meets the 0.5 goal" } else { "below the 0.5 goal" }
                ));
            }
        }
        if o.ocsp_run {
            issue_run("P-256 +OCSP", 32, setup.p256_ocsp.issue_path(), 0)?;
        }
        if o.floor_runs {
            let store = format!("/v2.0/appkeys/{APPKEY}/ca-stores/{}", setup.floor_store);
            let put = Arc::new(vec![Bytes::from(
                json!({"name": "bench-floor", "crlActive": false, "ocspActive": false}).to_string(),
            )]);
            let short = o.window.min(Duration::from_secs(5));
            for (label, method, bodies) in [
                ("GET store", Method::GET, Arc::new(vec![Bytes::new()])),
                ("PUT store", Method::PUT, put),
            ] {
                let (label, clients, outcome) =
                    run(label.into(), 32, method, store.clone(), bodies, short)?;
                Row {
                    label: &label,
                    clients,
                    outcome: &outcome,
                    ratio: None,
                }
                .print();
            }
        }
        println!(
            "  (+OCSP: the store has ocspActive, so each issuance also signs its first OCSP response: \
             2 HSM signatures per leaf. GET store = TLS + HTTP + a sled read; PUT store = that + a \
             durable write (flush + fsync), no HSM.)"
        );
    }
    sys::pin_process(daemon.pid, &all)?;
    println!("\nsummary (goal: issuance >= 0.5 x raw signing rate, durable writes; load average now {}):", sys::load_average());
    for line in summary {
        println!("  {line}");
    }
    Ok(())
}

/// The no-HTTP, no-HSM references: what the storage layer acknowledges per second and what a
/// CSR check costs, in this process on the daemon's filesystem (daemon idle, CPUs unpinned).
fn diagnostics(dir: &std::path::Path, csrs: &[(String, String)]) -> Result<(), String> {
    let (rows, fdatasync_ms) = diag::storage(&dir.join("scratch"), Duration::from_millis(1500))?;
    let writers: Vec<String> = diag::WRITERS.iter().map(|w| format!("{w:>6}")).collect();
    println!(
        "\nstorage alone (in-process, daemon's filesystem, no HTTP, no HSM):\n  {:<46} {}  | CPU us/write at the same",
        "acknowledged writes/s at writers:",
        writers.join(" ")
    );
    for row in rows {
        let rates: Vec<String> = row.per_sec.iter().map(|r| format!("{r:>6.0}")).collect();
        let cpu: Vec<String> = row.cpu_us.iter().map(|r| format!("{r:>5.0}")).collect();
        println!(
            "  {:<46} {}  | {}",
            row.what,
            rates.join(" "),
            cpu.join(" ")
        );
    }
    println!("  device floor: 4 KiB append + fdatasync of a plain file = {fdatasync_ms:.2} ms");
    let c = diag::csr_check(csrs)?;
    println!(
        "CSR check (P-256), CPU us per CSR: pcad::pki::csr::parse {:.0} (OpenSSL X509_REQ decode + verify); \
         signature only, OpenSSL key from the raw point {:.0}; ring {:.0}",
        c.pcad, c.openssl_point, c.ring
    );
    Ok(())
}

/// The issuance/raw ratio the CPU alone allows, from CPU time rather than rates (so other
/// processes' load does not skew it): CPU per raw signature / CPU per issuance, counting the
/// load generator's CPU too when it shares the daemon's CPUs.
fn cpu_model(outcome: &Outcome, raw_cpu_ms: f64, layout: &Layout) -> f64 {
    let client = if layout.client_cpus == layout.daemon_cpus {
        outcome.client_cores
    } else {
        0.0
    };
    raw_cpu_ms * outcome.rate() / ((outcome.daemon_cores + client) * 1000.0)
}

/// One line of the results table.
struct Row<'a> {
    label: &'a str,
    clients: usize,
    outcome: &'a Outcome,
    /// Issuance / raw signing rate, measured and from the CPU model.
    ratio: Option<(f64, f64)>,
}

impl Row<'_> {
    const HEADER: &'static str = "  run           clients    req/s  p50 ms  p99 ms errors  x raw  (CPU model) | cores: daemon client others | daemon per req: CPU ms  ctx sw  fsync";

    fn print(&self) {
        let o = self.outcome;
        let (ratio, model) = match self.ratio {
            Some((r, m)) => (format!("{r:.2}"), format!("({m:.2})")),
            None => ("-".into(), String::new()),
        };
        let per_request =
            |per_sec: f64| format!("{:.2}", per_sec / o.rate().max(f64::MIN_POSITIVE));
        let (switches, fsync) = match &o.counters {
            Some(c) => (per_request(c.context_switches), per_request(c.fsync)),
            None => ("n/a".into(), "n/a".into()),
        };
        println!(
            "  {:<13} {:>7} {:>8.0} {:>7.1} {:>7.1} {:>6} {:>6} {:>12} | {:>13.2} {:>6.2} {:>6.2} | {:>22.3} {:>7} {:>6}",
            self.label,
            self.clients,
            o.rate(),
            o.percentile_ms(0.50),
            o.percentile_ms(0.99),
            o.errors,
            ratio,
            model,
            o.daemon_cores,
            o.client_cores,
            o.other_cores,
            o.daemon_ms_per_request(),
            switches,
            fsync
        );
        if let Some(e) = &o.first_error {
            println!("      first error: {e}");
        }
    }
}

/// What the runs need: two issuers in a store without OCSP, a P-256 issuer in a store with
/// OCSP, and a store for the no-HSM floor runs.
struct Setup {
    p256: Issuer,
    rsa: Issuer,
    p256_ocsp: Issuer,
    floor_store: u64,
}

async fn set_up(endpoint: &Endpoint) -> Result<Setup, String> {
    let mut conn = Conn::open(endpoint).await?;
    let plain = create_store(&mut conn, "bench-durable", false).await?;
    let with_ocsp = create_store(&mut conn, "bench-ocsp", true).await?;
    let floor_store = create_store(&mut conn, "bench-floor", false).await?;
    let p256 = create_issuer(&mut conn, plain, P256).await?;
    let rsa = create_issuer(&mut conn, plain, RSA2048).await?;
    let p256_ocsp = create_issuer(&mut conn, with_ocsp, P256).await?;
    Ok(Setup {
        p256,
        rsa,
        p256_ocsp,
        floor_store,
    })
}

async fn create_store(conn: &mut Conn, name: &str, ocsp: bool) -> Result<u64, String> {
    let path = format!("/v2.0/appkeys/{APPKEY}/ca-stores");
    let body = json!({"name": name, "crlActive": false, "ocspActive": ocsp});
    conn.post_id(&path, &body, "caStoreId").await
}

/// An issuer's key: label, `keyInfo` algorithm and size, signature algorithm.
type IssuerKey = (&'static str, &'static str, u32, SignatureAlgorithm);
const P256: IssuerKey = ("P-256", "EC", 256, SignatureAlgorithm::Sha256WithEcdsa);
const RSA2048: IssuerKey = ("RSA-2048", "RSA", 2048, SignatureAlgorithm::Sha256WithRsa);

/// A ROOT with `key`, and a leaf template (EC P-256 leaves, stored in the server, maxTTL one
/// day) below it.
async fn create_issuer(conn: &mut Conn, store: u64, key: IssuerKey) -> Result<Issuer, String> {
    let (label, key, size, alg) = key;
    let base = format!("/v2.0/appkeys/{APPKEY}/ca-stores/{store}");
    let root = json!({
        "name": format!("bench {label} root"),
        "certificateType": "ROOT",
        "keyInfo": {"algorithm": key, "keySize": size},
        "signatureAlgorithm": alg.api_name(),
        "subjectInfo": {"commonName": format!("Bench {label} Root CA")},
        "ttlValue": 315_360_000,
    });
    let cert_id = conn
        .post_id(&format!("{base}/certs"), &root, "certId")
        .await?;
    let body = json!({
        "name": format!("bench {label} leaves"),
        "parentCertId": cert_id,
        "maxTTL": 86_400,
        "keyInfo": {"algorithm": "EC", "keySize": 256},
        "storeInServer": true,
        "keyUsage": ["DIGITAL_SIGNATURE"],
        "extendedKeyUsage": ["SERVER_AUTHENTICATION"],
    });
    let template = format!("{base}/templates");
    let template = conn.post_id(&template, &body, "templateId").await?;
    Ok(Issuer {
        label,
        alg,
        store,
        cert_id,
        template,
    })
}
