//! `scaleout-bench`: (b) one `pcad responder` serving OCSP from Redis under `wrk`, beside nginx
//! serving one static response file, both pinned to CPU 0 with the load generator on CPU 1
//! (the harness of `ocsp-bench` part (b), `serving.rs`); (m) Redis memory per published
//! response: an in-process appliance (`Lab`) signs N responses and its real publisher writes
//! them to a `redis-server` started here.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pcad::pki::KeyAlgorithm;

use crate::daemon::{free_port, log_to, Daemon, Proc};
use crate::serving::{
    check_until_ready, compare, output_bounded, request_lines, setup_daemon, wait_http, Api,
    Contender, ServingOptions,
};
use crate::{mb, populate_serials, tempdir, timed, Lab};

/// A `redis-server` on 127.0.0.1 without persistence, pinned to `cpu`.
fn redis_server(dir: &Path, cpu: &str) -> Result<(Proc, u16), String> {
    let port = loop {
        let p = free_port()?;
        if p < 55_000 {
            break p;
        }
    };
    let mut c = Command::new("taskset");
    c.args(["-c", cpu, "redis-server", "--port"])
        .arg(port.to_string())
        .args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let proc = Proc::spawn("redis-server", c)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if redis_cli(port, &["PING"]).is_ok_and(|o| o.trim() == "PONG") {
            return Ok((proc, port));
        }
        if Instant::now() > deadline {
            return Err("redis-server did not answer PING in 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn redis_cli(port: u16, args: &[&str]) -> Result<String, String> {
    let mut c = Command::new("redis-cli");
    c.arg("-p")
        .arg(port.to_string())
        .args(args)
        .stderr(Stdio::null());
    let out = output_bounded(c, Duration::from_secs(30))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn used_memory(port: u16) -> Result<u64, String> {
    let text = redis_cli(port, &["INFO", "memory"])?;
    text.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no used_memory in INFO".into())
}

/// Part (b): one responder vs nginx on CPU 0.
pub fn serving(o: &ServingOptions) -> Result<(), String> {
    println!(
        "\n## (b) OCSP serving: pcad responder (from Redis) vs nginx (one static response file)"
    );
    let tmp = tempdir("pcad-scaleout-b-")?;
    let dir = tmp.path().to_owned();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let (_redis, redis_port) = redis_server(&dir, "1")?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}/0");

    // The appliance (not measured: on CPU 1, stopped before the runs).
    let publish = format!("\n[publish]\nredis = \"{redis_url}\"\n");
    let mut appliance = Daemon::start_with(&o.pcad, &dir.join("pcad"), &publish, Some("1"))?;
    let api = Api::of(&appliance, &dir);
    let (setup, setup_time) = timed(|| setup_daemon(o, &api, &dir));
    let (post, get) = request_lines(&setup?)?;
    println!(
        "# setup: appliance publishing to {redis_url} > store > ROOT > INTERMEDIATE (P-256) > {} leaves: {:.1} s",
        post.len(),
        setup_time.as_secs_f64()
    );

    // The responder, on CPU 0; every request answered from Redis (and so cached) before
    // anything is measured.
    let responder_port = free_port()?;
    let url = format!("http://127.0.0.1:{responder_port}");
    let mut c = Command::new("taskset");
    c.args(["-c", "0"])
        .arg(&o.pcad)
        .args(["responder", "--redis", &redis_url, "--listen"])
        .arg(format!("127.0.0.1:{responder_port}"));
    log_to(&mut c, &dir.join("responder.log"))?;
    let mut responder = Proc::spawn("pcad responder", c)?;
    wait_http(
        &format!("{url}/healthz"),
        &mut responder,
        Duration::from_secs(30),
    )?;
    let (one, ok_count) = check_until_ready(&url, &get, &post, &dir)?;
    // The appliance is not needed to serve: stopped, so CPU 1 is wrk's.
    appliance.proc.stop();
    println!(
        "# {} distinct OCSP requests; all {ok_count} GET answers 200 + successful from the responder before the runs (appliance then stopped); one response = {} bytes",
        post.len(),
        one.len()
    );
    let contender = Contender {
        label: "resp",
        name: "responder",
        url,
        post: &post,
        get: &get,
        load_note: "; responder and nginx pinned with taskset -c 0 (redis-server on CPU 1, idle once the cache is warm); 3 s warm-up first",
    };
    compare(o, &dir, &contender, &mut responder, &one, |round| {
        let n = &round.results[2].2;
        for (_, method, r) in &round.results[..2] {
            println!(
                "responder {method:<4}/ nginx GET: {:.2}x requests/s (goal >= 0.9: {}), p99 {:.3} ms vs nginx {:.3} ms; CPU per request {:.2}x nginx's",
                r.rps / n.rps,
                if r.rps >= 0.9 * n.rps { "met" } else { "MISSED" },
                r.p99_ms,
                n.p99_ms,
                r.cpu_us_per_req / n.cpu_us_per_req,
            );
        }
    })
}

/// Part (m): Redis memory per published response, N responses signed in-process (SoftHSM,
/// P-256) and written by the appliance's real publisher.
pub fn memory(count: usize, threads: usize) -> Result<(), String> {
    println!("\n## (m) Redis memory per published OCSP response ({count} responses, P-256)");
    // Redis' default hash encoding, then hashes kept as listpacks (the DER is ~280 bytes,
    // above the default hash-max-listpack-value of 64).
    for listpack in [None, Some(1024)] {
        memory_run(count, threads, listpack)?;
    }
    Ok(())
}

fn memory_run(count: usize, threads: usize, listpack: Option<u32>) -> Result<(), String> {
    let tmp = tempdir("pcad-scaleout-m-")?;
    let (mut redis, port) = redis_server(tmp.path(), "0,1")?;
    let config = match listpack {
        Some(v) => {
            redis_cli(
                port,
                &["CONFIG", "SET", "hash-max-listpack-value", &v.to_string()],
            )?;
            format!("hash-max-listpack-value {v}")
        }
        None => "Redis defaults".to_owned(),
    };
    println!("# {config}:");
    let url = format!("redis://127.0.0.1:{port}/0");
    let lab = Lab::new()?;
    let store = lab.store("scaleout-m", false, true)?;
    let root = lab.issuer(&store, None, KeyAlgorithm::P256)?;
    populate_serials(&lab.db, &store, &root, count, threads)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let target = pcad::publish::Target::new(pcad::publish::RedisUrls::One(url), None)?;
    {
        let _guard = runtime.enter();
        pcad::publish::start(target, lab.publisher.clone());
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = used_memory(port)?;
    let started = Instant::now();
    let stats = lab
        .publisher
        .refresh_now(&store)
        .map_err(|e| e.to_string())?;
    let signed_s = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let backlog = lab
            .publisher
            .publish_health()
            .and_then(|h| h["backlog"].as_u64())
            .unwrap_or(u64::MAX);
        if backlog == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("backlog {backlog} after 600 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let published_s = started.elapsed().as_secs_f64();
    let keys: u64 = redis_cli(port, &["DBSIZE"])?
        .trim()
        .parse()
        .map_err(|_| "DBSIZE")?;
    let after = used_memory(port)?;
    let per = (after - before) as f64 / stats.signed.max(1) as f64;
    println!(
        "# {} responses signed in {signed_s:.1} s, all in Redis after {published_s:.1} s ({:.0}/s end to end); DBSIZE {keys}",
        stats.signed,
        stats.signed as f64 / published_s
    );
    println!(
        "redis used_memory: {:.1} MB before, {:.1} MB after: {per:.0} bytes per published response (hash: der, this, next, refresh; key pcad:ocsp:<store>:<CertID hex>)",
        mb(before),
        mb(after)
    );
    println!(
        "# at 1M responses: {:.0} MB{}",
        per * 1e6 / (1 << 20) as f64,
        if count < 1_000_000 {
            format!(" (extrapolated linearly from {count})")
        } else {
            String::new()
        }
    );
    drop(runtime);
    redis.stop();
    Ok(())
}
