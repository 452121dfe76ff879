//! `scaleout-bench`: (b) one `pcad responder` serving OCSP from Redis under `wrk`, beside nginx
//! serving one static response file, both pinned to CPU 0 with the load generator on CPU 1
//! (the harness of `ocsp-bench` part (b), `serving.rs`); (m) Redis memory per published
//! response: an in-process appliance (`Lab`) signs N responses and its real publisher writes
//! them to a `redis-server` started here.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use pcad::pki::ocsp;
use pcad::pki::{HashAlg, KeyAlgorithm};

use crate::serving::{
    check_answers, free_port, hex, nginx_conf, ocsp_request, output_bounded, proc_rss,
    setup_daemon, wait_http, wrk, Api, Proc, ServingOptions, Setup, WrkResult,
};
use crate::{load_average, mb, populate_serials, tempdir, timed, Lab, APPKEY};

/// A `redis-server` on 127.0.0.1 without persistence, pinned to `cpu`.
fn redis_server(dir: &Path, cpu: &str) -> Result<(Proc, u16), String> {
    let port = loop {
        let p = free_port()?;
        if p < 55_000 {
            break p;
        }
    };
    let child = Command::new("taskset")
        .args(["-c", cpu, "redis-server", "--port"])
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
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e}"))?;
    let proc = Proc {
        name: "redis-server",
        child,
    };
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
    let (mut redis, redis_port) = redis_server(&dir, "1")?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}/0");

    // The appliance (not measured: on CPU 1, stopped before the runs).
    let qs = dir.join("pcad");
    let (api_port, public_port) = (free_port()?, free_port()?);
    let mut c = Command::new(&o.pcad);
    c.arg("quickstart")
        .arg("--dir")
        .arg(&qs)
        .arg("--api-port")
        .arg(api_port.to_string())
        .arg("--public-port")
        .arg(public_port.to_string());
    output_bounded(c, Duration::from_secs(120))?;
    let config = qs.join("pcad.toml");
    let mut text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
    text.push_str(&format!("\n[publish]\nredis = \"{redis_url}\"\n"));
    // Only `[metrics] listen` of quickstart could collide with another run: turn it off.
    text = text.replace(
        "[metrics]\nlisten = \"127.0.0.1:9464\"",
        "[metrics]\nlisten = \"off\"",
    );
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("pcad.log")).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut appliance = Proc {
        name: "pcad serve",
        child: Command::new("taskset")
            .args(["-c", "1"])
            .arg(&o.pcad)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("pcad serve: {e}"))?,
    };
    wait_http(
        &format!("http://127.0.0.1:{public_port}/healthz"),
        &mut appliance,
        Duration::from_secs(30),
    )?;
    let api = Api {
        base: format!("https://127.0.0.1:{api_port}/v2.0/appkeys/{APPKEY}/ca-stores"),
        tls: qs.join("tls"),
        scratch: dir.clone(),
    };
    let (setup, setup_time) = timed(|| setup_daemon(o, &api, &dir));
    let Setup {
        store_id,
        issuer_der,
        serials,
    } = setup?;
    let (name_hash, key_hash) =
        ocsp::issuer_hashes(&issuer_der, HashAlg::Sha1).map_err(|e| e.to_string())?;
    let ocsp_path = format!("/v2.0/appkeys/{APPKEY}/ca-stores/{store_id}/ocsp");
    let requests: Vec<Vec<u8>> = serials
        .iter()
        .map(|s| ocsp_request(&ocsp::cert_id_der(HashAlg::Sha1, &name_hash, &key_hash, s)))
        .collect();
    let post_lines: Vec<String> = requests
        .iter()
        .map(|r| format!("POST {ocsp_path} {}", hex(r)))
        .collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let get_lines: Vec<String> = requests
        .iter()
        .map(|r| format!("GET {ocsp_path}/{}", b64.encode(r)))
        .collect();
    println!(
        "# setup: appliance publishing to {redis_url} > store > ROOT > INTERMEDIATE (P-256) > {} leaves: {:.1} s",
        serials.len(),
        setup_time.as_secs_f64()
    );

    // The responder, on CPU 0.
    let responder_port = free_port()?;
    let rlog = std::fs::File::create(dir.join("responder.log")).map_err(|e| e.to_string())?;
    let rlog2 = rlog.try_clone().map_err(|e| e.to_string())?;
    let mut responder = Proc {
        name: "pcad responder",
        child: Command::new("taskset")
            .args(["-c", "0"])
            .arg(&o.pcad)
            .args(["responder", "--redis", &redis_url, "--listen"])
            .arg(format!("127.0.0.1:{responder_port}"))
            .stdout(rlog)
            .stderr(rlog2)
            .spawn()
            .map_err(|e| format!("pcad responder: {e}"))?,
    };
    let url = format!("http://127.0.0.1:{responder_port}");
    wait_http(
        &format!("{url}/healthz"),
        &mut responder,
        Duration::from_secs(30),
    )?;
    // Every request answered from Redis (and so cached) before anything is measured.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (one, ok_count) = loop {
        match check_answers(&url, &get_lines, &post_lines, &dir) {
            Ok(r) => break r,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    // The appliance is not needed to serve: stopped, so CPU 1 is wrk's.
    appliance.stop();
    println!(
        "# {} distinct OCSP requests; all {ok_count} GET answers 200 + successful from the responder before the runs (appliance then stopped); one response = {} bytes",
        requests.len(),
        one.len()
    );
    println!(
        "# load: taskset -c 1 wrk -t{} -c{} -d{}s --latency; responder and nginx pinned with taskset -c 0 (redis-server on CPU 1, idle once the cache is warm); 3 s warm-up first",
        o.wrk_threads, o.conns, o.wrk_secs
    );
    let mut results: Vec<(&str, &str, WrkResult)> = Vec::new();
    wrk(o, &dir, &url, &post_lines, 3, "warm", responder.pid())?;
    println!("# load average before responder runs: {}", load_average());
    let pid = responder.pid();
    results.push((
        "resp",
        "POST",
        wrk(o, &dir, &url, &post_lines, o.wrk_secs, "resp-post", pid)?,
    ));
    results.push((
        "resp",
        "GET",
        wrk(o, &dir, &url, &get_lines, o.wrk_secs, "resp-get", pid)?,
    ));
    let rss = proc_rss(pid);
    responder.stop();
    redis.stop();

    let nginx = nginx_run(o, &dir, &one)?;
    results.push(("nginx", "GET", nginx));
    println!(
        "{:>7} {:>6} {:>11} {:>9} {:>9} {:>9} {:>10} {:>8} {:>12} {:>9}",
        "server",
        "method",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "mean ms",
        "requests",
        "errors",
        "CPU us/req",
        "srv util"
    );
    for (server, method, r) in &results {
        println!(
            "{:>7} {:>6} {:>11.0} {:>9.3} {:>9.3} {:>9.3} {:>10.0} {:>8.0} {:>12.1} {:>9.2}",
            server,
            method,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.mean_ms,
            r.requests,
            r.errors,
            r.cpu_us_per_req,
            r.server_util
        );
    }
    let n = &results[2].2;
    for (_, method, r) in &results[..2] {
        println!(
            "responder {method:<4}/ nginx GET: {:.2}x requests/s (goal >= 0.9: {}), p99 {:.3} ms vs nginx {:.3} ms; CPU per request {:.2}x nginx's",
            r.rps / n.rps,
            if r.rps >= 0.9 * n.rps { "met" } else { "MISSED" },
            r.p99_ms,
            n.p99_ms,
            r.cpu_us_per_req / n.cpu_us_per_req,
        );
    }
    if let Some(rss) = rss {
        println!("# responder RSS after its runs: {:.1} MB", mb(rss));
    }
    Ok(())
}

fn nginx_run(o: &ServingOptions, dir: &Path, one: &[u8]) -> Result<WrkResult, String> {
    let www = dir.join("www");
    std::fs::create_dir_all(dir.join("nginx-tmp")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    std::fs::write(www.join("ocsp.der"), one).map_err(|e| e.to_string())?;
    std::fs::set_permissions(www.join("ocsp.der"), std::fs::Permissions::from_mode(0o644))
        .map_err(|e| e.to_string())?;
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir, port)).map_err(|e| e.to_string())?;
    let mut nginx = Proc {
        name: "nginx",
        child: Command::new("taskset")
            .args(["-c", "0", "/usr/sbin/nginx", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("nginx: {e}"))?,
    };
    let url = format!("http://127.0.0.1:{port}");
    wait_http(
        &format!("{url}/ocsp.der"),
        &mut nginx,
        Duration::from_secs(15),
    )?;
    let lines = vec!["GET /ocsp.der".to_owned()];
    wrk(o, dir, &url, &lines, 3, "nginx-warm", nginx.pid())?;
    println!("# load average before nginx run: {}", load_average());
    let r = wrk(o, dir, &url, &lines, o.wrk_secs, "nginx-get", nginx.pid())?;
    nginx.stop();
    Ok(r)
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
