//! Parts (a) and (c) of `ocsp-bench`: OCSP pre-signing against the raw SoftHSM rate, and
//! memory per cached response; each measured in a child process (`--child-a`, `--child-c`).

use std::collections::HashMap;
use std::fmt::Display;
use std::io::Write;
use std::time::{Duration, Instant};

use pcad::hsm::{Hsm, KeyId};
use pcad::pki::ocsp::{self, CertStatus, SingleStatus};
use pcad::pki::{HashAlg, KeyAlgorithm, SignatureAlgorithm, Signer};
use pcad::store::{OcspRow, OcspSetChunks};

use crate::issue::raw::sign_rate;
use crate::serving::ServingOptions;
use crate::{
    child_row, context_switches, cpu_time, field, issuer_key, key_by_name, key_name, mb, mem,
    populate_serials, sys, timed, trim_heap, FakeSigner, Lab,
};

/// The command line of `ocsp-bench`.
pub struct Options {
    pub parts: String,
    pub count: usize,
    pub keys: Vec<String>,
    pub raw_secs: f64,
    pub c_count: usize,
    pub serving: ServingOptions,
    pub populate_threads: usize,
}

// ---------------------------------------------------------------------------------------------
// (a) pre-signing rate vs raw HSM rate

pub fn part_a(o: &Options) -> Result<(), String> {
    println!(
        "\n## (a) OCSP pre-signing vs raw SoftHSM signing ({} serials per issuer)",
        o.count
    );
    println!("# per key type: a fresh process and token; store (ocspActive) > ROOT of that key type; {} serial records inserted with Db::insert_cert ({} threads)", o.count, o.populate_threads);
    println!("# raw: S threads (S = [hsm] sessions of the config) calling Hsm::sign on 250-byte messages for {} s; also 1 thread (does the token scale?) and S+2 threads (do more threads than sessions help?)", o.raw_secs);
    println!("# pre-sign: signed / seconds of Publisher::refresh_now(store) (scan serials, sign on S threads, swap into cache, persist as one set)");
    println!(
        "{:>9} {:>3} {:>10} {:>10} {:>10} {:>11} {:>11} {:>7} {:>9} {:>10}",
        "key",
        "S",
        "raw/s",
        "raw/s 1",
        "raw/s S+2",
        "pre-sign/s",
        "refresh s",
        "ratio",
        "goal .85",
        "populate s"
    );
    let mut rows = Vec::new();
    for key in &o.keys {
        let args: [&dyn Display; 5] = [
            &"--child-a",
            key,
            &o.count,
            &o.raw_secs,
            &o.populate_threads,
        ];
        let f = child_row(&args, Duration::from_secs(40 * 60), "ROWA")?;
        let ratio = field(&f, "presign_rate") / field(&f, "raw_rate");
        println!(
            "{:>9} {:>3} {:>10.0} {:>10.0} {:>10.0} {:>11.0} {:>11.2} {:>7.3} {:>9} {:>10.1}",
            key_name(key_by_name(key).ok_or("bad key")?),
            field(&f, "sessions"),
            field(&f, "raw_rate"),
            field(&f, "raw_rate_one"),
            field(&f, "raw_rate_more"),
            field(&f, "presign_rate"),
            field(&f, "refresh_s"),
            ratio,
            if ratio >= 0.85 { "met" } else { "MISSED" },
            field(&f, "populate_s"),
        );
        let _ = std::io::stdout().flush();
        rows.push((key.clone(), f));
    }
    println!("\n# where a refresh's time goes (pieces measured apart, one thread, same process)");
    println!(
        "{:>9} {:>11} {:>12} {:>12} {:>11} {:>10} {:>12} {:>12} {:>10}",
        "key",
        "refresh s",
        "sign s (raw)",
        "scan ms",
        "encode us",
        "etag us",
        "persist ms",
        "cache-in ms",
        "resp bytes"
    );
    for (key, f) in &rows {
        println!(
            "{:>9} {:>11.2} {:>12.2} {:>12.1} {:>11.2} {:>10.2} {:>12.1} {:>12.1} {:>10.0}",
            key_name(key_by_name(key).ok_or("bad key")?),
            field(f, "refresh_s"),
            field(f, "signed") / field(f, "raw_rate"),
            field(f, "scan_ms"),
            field(f, "encode_us"),
            field(f, "etag_us"),
            field(f, "put_ms"),
            field(f, "cachein_ms"),
            field(f, "resp_bytes"),
        );
    }
    println!("\n# CPU time (user+sys, whole process) per signature: raw loop vs refresh; util = CPU seconds per wall second (2 = both cores busy)");
    println!(
        "{:>9} {:>14} {:>9} {:>16} {:>13} {:>14} {:>14} {:>16}",
        "key",
        "raw CPU us/sig",
        "raw util",
        "refresh CPU us/r",
        "refresh util",
        "extra CPU us/r",
        "raw vol cs/sig",
        "raw invol cs/sig"
    );
    for (key, f) in &rows {
        println!(
            "{:>9} {:>14.1} {:>9.2} {:>16.1} {:>13.2} {:>14.1} {:>14.2} {:>16.2}",
            key_name(key_by_name(key).ok_or("bad key")?),
            field(f, "raw_cpu_us"),
            field(f, "raw_util"),
            field(f, "refresh_cpu_us"),
            field(f, "refresh_util"),
            field(f, "refresh_cpu_us") - field(f, "raw_cpu_us"),
            field(f, "raw_vcsw"),
            field(f, "raw_ivcsw"),
        );
    }
    println!("# sign s (raw) = signed / raw rate: the refresh's floor if nothing else took time; scan = serials_of_issuer decode; encode = CertID + ResponseData + assemble per response; etag = SHA-256 + hex per response; persist = packing and storing all responses as one set (Db::put_ocsp_set); cache-in = building the cache maps (estimate: HashMap inserts of the same keys)");
    Ok(())
}

pub fn child_a(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).cloned().ok_or("child-a: missing argument");
    let key = key_by_name(&arg(0)?).ok_or("child-a: key")?;
    let count: usize = arg(1)?.parse().map_err(|_| "child-a: count")?;
    let raw_secs: f64 = arg(2)?.parse().map_err(|_| "child-a: raw secs")?;
    let threads: usize = arg(3)?.parse().map_err(|_| "child-a: threads")?;

    let lab = Lab::new()?;
    let store = lab.store("ocsp-a", false, true)?;
    let root = lab.issuer(&store, None, key)?;
    let (populated, populate) = timed(|| populate_serials(&lab.db, &store, &root, count, threads));
    populated?;
    let (key_id, alg) = issuer_key(&root)?;

    let cpu0 = cpu_time();
    let cs0 = context_switches();
    let raw_mark = sys::monotonic();
    let raw = raw_rate(&lab.hsm, &key_id, alg, lab.sessions, raw_secs)?;
    let raw_cpu = cpu_time() - cpu0;
    let cs1 = context_switches();
    if std::env::var_os("PCAD_BENCH_MARKS").is_some() {
        eprintln!(
            "raw window (CLOCK_MONOTONIC): {raw_mark:.6},{:.6}",
            sys::monotonic()
        );
    }
    let raw_more = raw_rate(&lab.hsm, &key_id, alg, lab.sessions + 2, raw_secs)?;
    let raw_one = raw_rate(&lab.hsm, &key_id, alg, 1, raw_secs)?;

    let cpu0 = cpu_time();
    let mark = sys::monotonic();
    let stats = lab
        .publisher
        .refresh_now(&store)
        .map_err(|e| e.to_string())?;
    let refresh_cpu = cpu_time() - cpu0;
    if std::env::var_os("PCAD_BENCH_MARKS").is_some() {
        // For `perf record -k CLOCK_MONOTONIC` + `perf report --time START,END`.
        eprintln!(
            "refresh window (CLOCK_MONOTONIC): {mark:.6},{:.6}",
            sys::monotonic()
        );
    }
    if stats.failed > 0 {
        return Err(format!("{} responses failed to sign", stats.failed));
    }
    let presign = stats.signed as f64 / stats.seconds;

    // The pieces, apart.
    let (serials, scan) = timed(|| -> Result<Vec<_>, String> {
        lab.db
            .serials_of_issuer(root.id)
            .map(|s| s.map_err(|e| e.to_string()))
            .collect()
    });
    let serials = serials?;
    let (name_hash, key_hash) =
        ocsp::issuer_hashes(&root.der, HashAlg::Sha1).map_err(|e| e.to_string())?;
    let fake = FakeSigner(alg);
    let sample = serials.len().min(20_000);
    let t = pcad::clock::now();
    let mut ders = Vec::with_capacity(sample);
    let (encoded, encode) = timed(|| -> Result<(), String> {
        for s in &serials[..sample] {
            let cert_id = ocsp::cert_id_der(HashAlg::Sha1, &name_hash, &key_hash, &s.serial);
            let single = SingleStatus {
                cert_id_der: cert_id.clone(),
                status: CertStatus::Good,
                this_update: t,
                next_update: t + 86_400,
            };
            let data =
                ocsp::response_data_der(&key_hash, t, &[single]).map_err(|e| e.to_string())?;
            let sig = fake.sign(&data).map_err(|e| e.to_string())?;
            let der = ocsp::assemble(&data, fake.algorithm(), &sig).map_err(|e| e.to_string())?;
            ders.push((cert_id, der));
        }
        Ok(())
    });
    encoded?;
    let (tags, etag) = timed(|| {
        ders.iter()
            .map(|(_, d)| {
                let h = HashAlg::Sha256.digest(d);
                pcad::pki::der_util::hex(&h[..16])
            })
            .collect::<Vec<_>>()
    });
    let resp_bytes = lab
        .db
        .ocsp_of_store(store.id)
        .take(1000)
        .filter_map(Result::ok)
        .map(|r| r.der.len())
        .sum::<usize>() as f64
        / 1000f64.min(stats.signed as f64);
    // Persisting `count` rows like the refresh does, under a store id nobody uses.
    let rows: Vec<OcspRow> = (0..count)
        .map(|i| {
            let (cert_id, der) = &ders[i % ders.len().max(1)];
            let mut cert_id = cert_id.clone();
            cert_id.extend_from_slice(&(i as u64).to_be_bytes());
            OcspRow {
                issuer_id: root.id,
                serial: serials[i % serials.len()].serial.clone(),
                cert_id_der: cert_id,
                this_update: t,
                next_update: t + 86_400,
                der: der.clone(),
            }
        })
        .collect();
    let scratch_store = u64::MAX - 1;
    let (put, put_time) = timed(|| {
        let mut chunks = OcspSetChunks::default();
        for r in &rows {
            chunks.push(r.as_row_ref());
        }
        lab.db.put_ocsp_set(scratch_store, 1, chunks, t, true)
    });
    put.map_err(|e| e.to_string())?;
    let (_, cache_in) = timed(|| {
        let mut by_id: HashMap<Vec<u8>, std::sync::Arc<Vec<u8>>> = HashMap::new();
        let mut variants: HashMap<(u64, Vec<u8>), Vec<Vec<u8>>> = HashMap::new();
        for r in &rows {
            variants
                .entry((r.issuer_id, r.serial.clone()))
                .or_default()
                .push(r.cert_id_der.clone());
            by_id.insert(r.cert_id_der.clone(), std::sync::Arc::new(r.der.clone()));
        }
        (by_id.len(), variants.len())
    });
    let _ = lab.db.clear_ocsp(scratch_store);
    drop(tags);

    println!(
        "ROWA key={:?} count={count} sessions={} populate_s={:.2} raw_rate={:.1} raw_rate_more={:.1} raw_rate_one={:.1} presign_rate={:.1} refresh_s={:.3} signed={} failed={} scan_ms={:.1} encode_us={:.3} etag_us={:.3} put_ms={:.1} cachein_ms={:.1} resp_bytes={:.0} raw_cpu_us={:.1} raw_util={:.2} refresh_cpu_us={:.1} refresh_util={:.2} raw_vcsw={:.2} raw_ivcsw={:.2}",
        key,
        lab.sessions,
        populate.as_secs_f64(),
        raw,
        raw_more,
        raw_one,
        presign,
        stats.seconds,
        stats.signed,
        stats.failed,
        scan.as_secs_f64() * 1e3,
        encode.as_secs_f64() * 1e6 / sample.max(1) as f64,
        etag.as_secs_f64() * 1e6 / sample.max(1) as f64,
        put_time.as_secs_f64() * 1e3,
        cache_in.as_secs_f64() * 1e3,
        resp_bytes,
        raw_cpu.as_secs_f64() * 1e6 / (raw * raw_secs),
        raw_cpu.as_secs_f64() / raw_secs,
        refresh_cpu.as_secs_f64() * 1e6 / stats.signed.max(1) as f64,
        refresh_cpu.as_secs_f64() / stats.seconds,
        (cs1.0 - cs0.0) as f64 / (raw * raw_secs),
        (cs1.1 - cs0.1) as f64 / (raw * raw_secs),
    );
    Ok(())
}

/// Signatures per second of `threads` threads calling `Hsm::sign` on 250-byte messages.
fn raw_rate(
    hsm: &Hsm,
    key: &KeyId,
    alg: SignatureAlgorithm,
    threads: usize,
    secs: f64,
) -> Result<f64, String> {
    let length = Duration::from_secs_f64(secs);
    Ok(sign_rate(hsm, key, alg, (threads, &[]), length, 250)?.per_sec)
}

// ---------------------------------------------------------------------------------------------
// (c) memory per cached response

pub fn part_c(o: &Options) -> Result<(), String> {
    println!(
        "\n## (c) memory per cached OCSP response ({} certificates, P-256 issuer)",
        o.c_count
    );
    let started = Instant::now();
    let args: [&dyn Display; 3] = [&"--child-c", &o.c_count, &o.populate_threads];
    let f = child_row(&args, Duration::from_secs(60 * 60), "ROWC")?;
    let n = field(&f, "cached");
    println!("# a fresh process and token; {} serial records (Db::insert_cert), then Publisher::refresh_now; RSS read after malloc_trim(0)", o.c_count);
    println!(
        "populate: {:.1} s; refresh_now: {:.1} s ({:.0} responses/s); whole part: {:.1} s",
        field(&f, "populate_s"),
        field(&f, "refresh_s"),
        n / field(&f, "refresh_s"),
        started.elapsed().as_secs_f64()
    );
    println!(
        "RSS: before refresh {:.1} MB, after {:.1} MB, after dropping the Publisher (its cache) {:.1} MB; responses cached: {n:.0}",
        field(&f, "rss0_mb"),
        field(&f, "rss1_mb"),
        field(&f, "rss2_mb"),
    );
    let naive = (field(&f, "rss1_mb") - field(&f, "rss0_mb")) * 1e6 / n;
    let cache = (field(&f, "rss1_mb") - field(&f, "rss2_mb")) * 1e6 / n;
    let der = field(&f, "der_bytes");
    let key = field(&f, "key_bytes");
    println!(
        "{:>34} {:>10} {:>10}",
        "bytes per cached response", "bytes", "x DER"
    );
    println!(
        "{:>34} {:>10.0} {:>10.2}",
        "RSS after - before refresh",
        naive,
        naive / der
    );
    println!(
        "{:>34} {:>10.0} {:>10.2}",
        "RSS freed by dropping the cache",
        cache,
        cache / der
    );
    let sled = (field(&f, "rss3_mb") - field(&f, "rss2_mb")) * 1e6 / n;
    println!(
        "{:>34} {:>10.0} {:>10.2}",
        "RSS added by persisting alone (sled)",
        sled,
        sled / der
    );
    println!(
        "{:>34} {:>10.0} {:>10.2}",
        "response DER (payload)", der, 1.0
    );
    println!("{:>34} {:>10.0} {:>10.2}", "CertID key DER", key, key / der);
    println!("# 'after - before' also holds sled's cache of the persisted responses; 'freed by dropping' is the in-memory cache alone; 'persisting alone' = the same number of rows persisted again after the cache was dropped ({:.1} s)", field(&f, "put_s"));
    Ok(())
}

pub fn child_c(args: &[String]) -> Result<(), String> {
    let count: usize = args
        .first()
        .and_then(|v| v.parse().ok())
        .ok_or("child-c: count")?;
    let threads: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(2);
    let lab = Lab::new()?;
    let store = lab.store("ocsp-c", false, true)?;
    let root = lab.issuer(&store, None, KeyAlgorithm::P256)?;
    let (populated, populate) = timed(|| populate_serials(&lab.db, &store, &root, count, threads));
    populated?;
    trim_heap();
    let rss0 = mem().rss;
    let stats = lab
        .publisher
        .refresh_now(&store)
        .map_err(|e| e.to_string())?;
    trim_heap();
    let rss1 = mem().rss;
    let cached = lab.publisher.cached_responses();
    let (mut der, mut key, mut k) = (0usize, 0usize, 0usize);
    for r in lab.db.ocsp_of_store(store.id).take(1000).flatten() {
        der += r.der.len();
        key += r.cert_id_der.len();
        k += 1;
    }
    let Lab {
        publisher, ca, db, ..
    } = lab;
    drop(ca);
    drop(publisher);
    trim_heap();
    let rss2 = mem().rss;
    // What persisting alone costs in RSS: the same number of rows again, under a store id
    // nobody uses (sled keeps written pages in its cache).
    let t = pcad::clock::now();
    let rows: Vec<OcspRow> = (0..count as u64)
        .map(|i| OcspRow {
            issuer_id: root.id,
            serial: i.to_be_bytes().to_vec(),
            cert_id_der: [vec![0x30; 67], i.to_be_bytes().to_vec()].concat(),
            this_update: t,
            next_update: t + 86_400,
            der: vec![0x42; der / k.max(1)],
        })
        .collect();
    let (put, put_time) = timed(|| {
        let mut chunks = OcspSetChunks::default();
        for r in &rows {
            chunks.push(r.as_row_ref());
        }
        db.put_ocsp_set(u64::MAX - 1, 1, chunks, t, true)
    });
    put.map_err(|e| e.to_string())?;
    drop(rows);
    trim_heap();
    let rss3 = mem().rss;
    let _ = db.clear_ocsp(u64::MAX - 1);
    drop(db);
    println!(
        "ROWC count={count} cached={cached} populate_s={:.2} refresh_s={:.2} failed={} rss0_mb={:.2} rss1_mb={:.2} rss2_mb={:.2} rss3_mb={:.2} put_s={:.2} der_bytes={:.1} key_bytes={:.1}",
        populate.as_secs_f64(),
        stats.seconds,
        stats.failed,
        mb(rss0),
        mb(rss1),
        mb(rss2),
        mb(rss3),
        put_time.as_secs_f64(),
        der as f64 / k.max(1) as f64,
        key as f64 / k.max(1) as f64,
    );
    Ok(())
}
