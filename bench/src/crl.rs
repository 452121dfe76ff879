//! `crl-bench`'s measurements: per (key type, N) a child process populates a lab (`child`) and
//! another measures it (`measure`); `run` prints their rows and the goals.

use std::collections::HashMap;
use std::fmt::Display;
use std::io::Write;
use std::time::Duration;

use pcad::pki::crl::{self, CrlParams, RevocationReason, RevokedEntry};
use pcad::pki::Signer;
use pcad::store::{CertRecord, CrlRecord, SerialRecord, StoreRecord};

use crate::{
    child_row, field, issuer_key, key_by_name, key_name, leaf_params, machine_header, mb, median,
    mem, ms, populate_revoked, reset_peak, run_self, template_params, timed, FakeSigner, Lab,
};

/// Longest a child may take (1M RSA-2048 included).
const CHILD_LIMIT: Duration = Duration::from_secs(45 * 60);

/// The command line of `crl-bench`.
pub struct Options {
    pub ns: Vec<usize>,
    pub keys: Vec<String>,
    pub revokes: usize,
    pub reps: usize,
    pub threads: usize,
}

/// All rows, then where the CRL time goes, then the goals.
pub fn run(o: &Options) -> Result<(), String> {
    print!("{}", machine_header("crl-bench"));
    println!(
        "# per row: a fresh process and SoftHSM token; store (crlActive, ocspActive) > ROOT > INTERMEDIATE (the CRL issuer)"
    );
    println!(
        "# populate: N minimal leaf records + serial records via Db::insert_cert, then Db::revoke each ({} threads; reasons 50% unspecified / 50% keyCompromise; 16-octet random serials)",
        o.threads
    );
    println!(
        "# CRL ms: Publisher::renew_crl (scan revoked index + build + HSM sign + put_crl + 2 durable syncs), median of {} runs",
        o.reps
    );
    println!(
        "# revoke ms: Ca::revoke of a real leaf (issued by Ca::issue_leaf) at that N (records, fsyncs, re-signs OCSP + CRL), median of {}",
        o.revokes
    );
    println!("# RSS: after populate a fresh process opens the folder (a restarted daemon) and measures; 'base' = its resident set once open; 'CRL pk' = VmHWM over the CRL runs (reset at base); 'rev pk' = VmHWM over the revokes (reset before them); 'setup' = VmHWM while populating (sled, not the CRL)");
    let mut rows = Vec::new();
    for key in &o.keys {
        let alg = key_by_name(key).ok_or("bad key")?;
        println!(
            "\n## issuer key {} (HSM sessions: see column S)",
            key_name(alg)
        );
        println!(
            "{:>9} {:>10} {:>10} {:>9} {:>11} {:>7} {:>10} {:>8} {:>8} {:>8} {:>9} {:>3}",
            "N",
            "populate s",
            "CRL ms",
            "ns/entry",
            "CRL bytes",
            "B/entry",
            "revoke ms",
            "base MB",
            "CRL pk",
            "rev pk",
            "setup MB",
            "S"
        );
        for &n in &o.ns {
            let args: [&dyn Display; 6] = [&"--child", &n, key, &o.revokes, &o.reps, &o.threads];
            let f = child_row(&args, CHILD_LIMIT, "ROW")?;
            let g = |k: &str| field(&f, k);
            println!(
                "{:>9} {:>10.1} {:>10.1} {:>9.0} {:>11.0} {:>7.1} {:>10.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>3}",
                n,
                g("populate_s"),
                g("build_ms"),
                g("build_ms") * 1e6 / n as f64,
                g("crl_bytes"),
                g("crl_bytes") / n as f64,
                g("revoke_ms"),
                g("base_mb"),
                g("peak_mb"),
                g("revoke_peak_mb"),
                g("setup_mb"),
                g("sessions"),
            );
            let _ = std::io::stdout().flush();
            rows.push((key.clone(), n, f));
        }
    }
    println!("\n## where the CRL time goes (pieces measured apart after the runs; renew_crl = scan + encode + sign + put_crl/durable + one more durable (the CRL number) + rest)");
    println!(
        "{:>9} {:>9} {:>9} {:>9} {:>10} {:>12} {:>11} {:>9} {:>11} {:>11}",
        "key",
        "N",
        "CRL ms",
        "scan ms",
        "encode ms",
        "HSM sign ms",
        "put+sync ms",
        "sync ms",
        "rest ms",
        "revoke max"
    );
    for (key, n, f) in &rows {
        let g = |k: &str| field(f, k);
        println!(
            "{:>9} {:>9} {:>9.1} {:>9.1} {:>10.1} {:>12.1} {:>11.1} {:>9.1} {:>11.1} {:>11.1}",
            key,
            n,
            g("build_ms"),
            g("scan_ms"),
            g("encode_ms"),
            g("sign_ms"),
            g("store_ms"),
            g("sync_ms"),
            g("build_ms")
                - g("scan_ms")
                - g("encode_ms")
                - g("sign_ms")
                - g("store_ms")
                - g("sync_ms"),
            g("revoke_max_ms"),
        );
    }
    println!(
        "\n## goals (issue): 1M entries < 5000 ms and < 500 MB RSS; growth linear (ns/entry flat)"
    );
    for key in &o.keys {
        let mine: Vec<_> = rows.iter().filter(|(k, _, _)| k == key).collect();
        if let Some((_, n, f)) = mine.iter().max_by_key(|(_, n, _)| *n) {
            let build = field(f, "build_ms");
            let peak = field(f, "peak_mb");
            println!(
                "{}: N={n}: CRL {build:.0} ms ({:.2}x of the budget 5000 ms x N/1M, {}), peak RSS {peak:.0} MB ({:.2}x of 500 MB, {})",
                key_name(key_by_name(key).ok_or("bad key")?),
                build / (5000.0 * *n as f64 / 1e6),
                if build * 1e6 / (*n as f64) < 5000.0 { "met" } else { "MISSED" },
                peak / 500.0,
                if peak < 500.0 { "met" } else { "MISSED" },
            );
        }
        if let (Some(lo), Some(hi)) = (
            mine.iter()
                .filter(|(_, n, _)| *n >= 10_000)
                .min_by_key(|(_, n, _)| *n),
            mine.iter().max_by_key(|(_, n, _)| *n),
        ) {
            let per = |(_, n, f): &&(String, usize, HashMap<String, String>)| {
                field(f, "build_ms") / *n as f64
            };
            println!(
                "  linearity: ns/entry at N={} is {:.2}x that at N={}",
                hi.1,
                per(hi) / per(lo),
                lo.1
            );
        }
    }
    println!("# load average at end: {}", crate::load_average());
    Ok(())
}

/// One (N, key type) in a fresh process: prints one `ROW key=value ...` line.
pub fn child(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).cloned().ok_or("child: missing argument");
    let n: usize = arg(0)?.parse().map_err(|_| "child: N")?;
    let key = key_by_name(&arg(1)?).ok_or("child: key")?;
    let revokes: usize = arg(2)?.parse().map_err(|_| "child: revokes")?;
    let reps: usize = arg(3)?.parse().map_err(|_| "child: reps")?;
    let threads: usize = arg(4)?.parse().map_err(|_| "child: threads")?;

    let lab = Lab::new()?;
    let store = lab.store("crl-bench", true, true)?;
    let root = lab.issuer(&store, None, key)?;
    let inter = lab.issuer(&store, Some(root.id), key)?;
    let tpl = lab
        .ca
        .create_template(&lab.who, store.id, template_params(inter.id))
        .map_err(|e| format!("template: {e}"))?;
    let mut leaves = Vec::new();
    for i in 0..revokes {
        let leaf = lab
            .ca
            .issue_leaf(
                &lab.who,
                store.id,
                tpl.id,
                leaf_params(&format!("leaf{i}.bench.example")),
            )
            .map_err(|e| format!("issue leaf: {e}"))?;
        leaves.push(leaf.cert_id.ok_or("leaf not stored")?);
    }

    let (populated, populate) = timed(|| populate_revoked(&lab.db, &store, &inter, n, threads));
    populated?;
    let setup_peak = mem().hwm;
    let populated_rss = mem().rss;
    // Measure as a restarted daemon: a fresh process opens the populated folder, so nothing
    // setup left in sled's cache or this process's heap counts.
    let sessions = lab.sessions;
    let dir = lab.close()?.ok_or("the lab has no folder")?;
    let leaves: Vec<String> = leaves.iter().map(u64::to_string).collect();
    let measure_args: Vec<String> = vec![
        "--measure".into(),
        dir.path().display().to_string(),
        store.id.to_string(),
        root.id.to_string(),
        inter.id.to_string(),
        reps.to_string(),
        leaves.join(","),
    ];
    let out = run_self(&measure_args, CHILD_LIMIT)?;
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("MEASURE "))
        .ok_or(format!("no MEASURE line in: {out}"))?;
    println!(
        "ROW n={n} key={key:?} populate_s={:.2} setup_mb={:.1} populated_mb={:.1} sessions={sessions} {line}",
        populate.as_secs_f64(),
        mb(setup_peak),
        mb(populated_rss),
    );
    Ok(())
}

/// The measured part of one row, in a fresh process over the folder `child` populated: prints
/// one `MEASURE key=value ...` line.
pub fn measure(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).cloned().ok_or("measure: missing argument");
    let num = |i: usize| -> Result<u64, String> {
        arg(i)?
            .parse()
            .map_err(|_| format!("measure: argument {i}"))
    };
    let path = std::path::PathBuf::from(arg(0)?);
    let (store_id, root_id, inter_id) = (num(1)?, num(2)?, num(3)?);
    let reps = num(4)? as usize;
    let leaves: Vec<u64> = arg(5)?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| "measure: leaf id".to_string()))
        .collect::<Result<_, _>>()?;
    let lab = Lab::open(&path)?;
    let found = |r: Result<Option<CertRecord>, pcad::store::StoreError>| {
        r.map_err(|e| e.to_string())?
            .ok_or("measure: no such certificate".to_string())
    };
    let store = lab
        .db
        .store(&lab.who.appkey, store_id)
        .map_err(|e| e.to_string())?
        .ok_or("measure: no such store")?;
    let root = found(lab.db.cert(&lab.who.appkey, store_id, root_id))?;
    let inter = found(lab.db.cert(&lab.who.appkey, store_id, inter_id))?;
    reset_peak();
    let base = mem().rss;

    let mut builds = Vec::new();
    for _ in 0..reps.max(1) {
        let (r, d) = timed(|| renew(&lab, &store, &inter));
        r?;
        builds.push(ms(d));
    }
    let crl_peak = mem().hwm;

    reset_peak();
    let mut revoke_ms = Vec::new();
    for &id in &leaves {
        let (r, d) = timed(|| {
            lab.ca
                .revoke(&lab.who, store.id, id, RevocationReason::KeyCompromise)
        });
        r.map_err(|e| format!("revoke: {e}"))?;
        revoke_ms.push(ms(d));
    }
    let revoke_peak = mem().hwm;

    let der = lab
        .publisher
        .crl(store.id, inter.id)
        .map_err(|e| e.to_string())?
        .ok_or("no CRL stored")?
        .der;
    if let Some(out) = std::env::var_os("PCAD_BENCH_CRL_OUT") {
        // For checking with `openssl crl -inform DER -CAfile ...`: the CRL and its issuer chain.
        let out = std::path::PathBuf::from(out);
        let pem = |d: &[u8]| pcad::pki::cert::to_pem(d);
        std::fs::write(out.with_extension("crl"), &der).map_err(|e| e.to_string())?;
        std::fs::write(
            out.with_extension("chain.pem"),
            pem(&inter.der) + &pem(&root.der),
        )
        .map_err(|e| e.to_string())?;
    }

    // The pieces of renew_crl, apart (after the measured runs, so they touch no reported
    // figure): scan of the revoked index, encoding (fake signature), HSM signature of a message
    // as long as the TBSCertList, storing the DER (put_crl + durable, under an issuer id nobody
    // uses), and a durable sync with nothing to write.
    let (entries, scan) = timed(|| -> Result<Vec<RevokedEntry>, String> {
        lab.db
            .revoked_of_issuer(inter.id)
            .map(|r| {
                r.map(|r| RevokedEntry {
                    serial: r.serial,
                    revoked_at: r.revocation.at,
                    reason: r.revocation.reason,
                })
                .map_err(|e| e.to_string())
            })
            .collect()
    });
    let entries = entries?;
    let (key_id, alg) = issuer_key(&inter)?;
    let t = pcad::clock::now();
    let (fake, encode) = timed(|| {
        crl::build(
            &CrlParams {
                issuer_cert: &inter.der,
                number: 1,
                this_update: t,
                next_update: t + 7 * 86_400,
                entries: &entries,
            },
            &FakeSigner(alg),
        )
    });
    let fake = fake.map_err(|e| e.to_string())?;
    let signer = lab.hsm.signer(key_id, alg);
    let (signed, sign) = timed(|| signer.sign(&fake));
    signed.map_err(|e| e.to_string())?;
    let scratch = CrlRecord {
        issuer_id: u64::MAX - 3,
        number: 1,
        this_update: t,
        next_update: t + 7 * 86_400,
    };
    let (stored, store_time) = timed(|| -> Result<(), String> {
        lab.db
            .put_crl(store.id, &scratch, &der)
            .map_err(|e| e.to_string())?;
        lab.db.durable().map_err(|e| e.to_string())
    });
    stored?;
    let (synced, sync) = timed(|| lab.db.durable());
    synced.map_err(|e| e.to_string())?;
    drop(entries);

    println!(
        "MEASURE build_ms={:.1} build_min_ms={:.1} build_first_ms={:.1} crl_bytes={} entries={} revoke_ms={:.2} revoke_max_ms={:.2} base_mb={:.1} peak_mb={:.1} revoke_peak_mb={:.1} scan_ms={:.1} encode_ms={:.1} sign_ms={:.1} store_ms={:.1} sync_ms={:.1}",
        median(&builds),
        builds.iter().cloned().fold(f64::INFINITY, f64::min),
        builds[0],
        der.len(),
        fake_entries(&lab, &inter),
        median(&revoke_ms),
        revoke_ms.iter().cloned().fold(0.0, f64::max),
        mb(base),
        mb(crl_peak),
        mb(revoke_peak),
        ms(scan),
        ms(encode),
        ms(sign),
        ms(store_time),
        ms(sync),
    );
    Ok(())
}

/// How many entries the issuer's revoked index holds (what the CRL lists).
fn fake_entries(lab: &Lab, issuer: &CertRecord) -> usize {
    lab.db.revoked_of_issuer(issuer.id).count()
}

/// Renews the issuer's CRL through the public API: `Publisher::issued` for an issuer record
/// calls `renew_crl` (which is `pub(crate)`), with a serial record that names the issuer itself
/// so that no OCSP response is signed. Checks that the CRL number went up.
fn renew(lab: &Lab, store: &StoreRecord, issuer: &CertRecord) -> Result<(), String> {
    let number = |lab: &Lab| -> Result<u64, String> {
        Ok(lab
            .db
            .crl(issuer.id)
            .map_err(|e| e.to_string())?
            .map(|r| r.number)
            .unwrap_or(0))
    };
    let before = number(lab)?;
    let itself = SerialRecord {
        store_id: store.id,
        issuer_id: issuer.id,
        serial: issuer.serial.clone(),
        cert_id: Some(issuer.id),
        not_after: issuer.not_after,
        revocation: None,
    };
    lab.publisher.issued(store, &itself, Some(issuer));
    if number(lab)? <= before {
        return Err("the CRL was not renewed (renew_crl failed; its error is only logged)".into());
    }
    Ok(())
}
