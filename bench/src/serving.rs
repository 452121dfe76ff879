//! The serving comparison (part (b) of `ocsp-bench` and of `scaleout-bench`): a server under
//! test answering OCSP under `wrk`, beside nginx serving one static response file, both pinned
//! to CPU 0 with the load generator on CPU 1, `--runs` times, with the medians. Management
//! calls go over the mutual-TLS API with `curl`; every process started here is stopped when its
//! guard drops (also on errors), and every wait is bounded.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use pcad::pki::ocsp;
use pcad::pki::HashAlg;

use crate::daemon::{free_port, Daemon, Proc};
use crate::{
    field, load_average, mb, median, stdout_bounded, tagged_fields, tempdir, timed, APPKEY,
};

/// What part (b) is asked for.
pub struct ServingOptions {
    /// Distinct OCSP requests (one leaf each).
    pub requests: usize,
    /// wrk connections and threads, and the length of each measured run.
    pub conns: usize,
    pub wrk_threads: usize,
    pub wrk_secs: u64,
    /// The `pcad` binary.
    pub pcad: PathBuf,
    /// How many times the whole comparison runs (the medians are printed after more than one).
    pub runs: usize,
}

/// Where the daemon's API is and the client certificate to call it with.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) tls: PathBuf,
    pub(crate) scratch: PathBuf,
}

impl Api {
    /// The API of `daemon`, with `scratch` for request bodies.
    pub(crate) fn of(daemon: &Daemon, scratch: &Path) -> Api {
        Api {
            base: format!(
                "https://127.0.0.1:{}/v2.0/appkeys/{APPKEY}/ca-stores",
                daemon.api_port
            ),
            tls: daemon.dir.join("tls"),
            scratch: scratch.to_owned(),
        }
    }

    fn curl(&self) -> Command {
        let mut c = Command::new("curl");
        c.arg("-sS")
            .arg("--max-time")
            .arg("60")
            .arg("--cacert")
            .arg(self.tls.join("ca.pem"))
            .arg("--cert")
            .arg(self.tls.join("admin.pem"))
            .arg("--key")
            .arg(self.tls.join("admin.key"));
        c
    }

    /// One management call; the envelope's body, or an error naming the call.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut c = self.curl();
        c.arg("-X").arg(method);
        if let Some(b) = body {
            let f = self.scratch.join("body.json");
            std::fs::write(&f, b.to_string()).map_err(|e| e.to_string())?;
            c.arg("-H")
                .arg("Content-Type: application/json")
                .arg("--data-binary")
                .arg(format!("@{}", f.display()));
        }
        c.arg(format!("{}{path}", self.base));
        let out = output_bounded(c, Duration::from_secs(90))?;
        let v: Value = serde_json::from_slice(&out).map_err(|e| {
            format!(
                "{method} {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out)
            )
        })?;
        envelope_body(v).map_err(|e| format!("{method} {path}: {e}"))
    }
}

fn envelope_body(v: Value) -> Result<Value, String> {
    if v["header"]["isSuccessful"].as_bool() != Some(true) {
        return Err(format!("refused: {}", v["header"]));
    }
    Ok(v["body"].clone())
}

/// Runs a command with stdout captured (stderr to ours), killed after `limit`.
pub(crate) fn output_bounded(mut c: Command, limit: Duration) -> Result<Vec<u8>, String> {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{c:?}: {e}"))?;
    let (status, v) = stdout_bounded(child, limit)?;
    if !status.success() {
        return Err(format!(
            "{:?} failed ({status}): {}",
            c.get_program(),
            String::from_utf8_lossy(&v)
        ));
    }
    Ok(v)
}

/// Waits until `url` answers 200 (bounded), while `proc` stays alive.
pub(crate) fn wait_http(url: &str, proc: &mut Proc, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !proc.alive() {
            return Err(format!("{} exited during start-up", proc.name));
        }
        let code = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                url,
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if code == "200" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{} did not answer {url} within {} s",
        proc.name,
        limit.as_secs()
    ))
}

/// The DER OCSPRequest for one CertID: OCSPRequest { tbsRequest { requestList { Request { reqCert } } } }.
pub(crate) fn ocsp_request(cert_id: &[u8]) -> Vec<u8> {
    seq(&seq(&seq(&seq(cert_id))))
}

fn seq(content: &[u8]) -> Vec<u8> {
    let mut v = vec![0x30];
    let n = content.len();
    if n < 0x80 {
        v.push(n as u8);
    } else if n < 0x100 {
        v.extend([0x81, n as u8]);
    } else {
        v.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    v.extend_from_slice(content);
    v
}

/// Whether `der` is an OCSPResponse with responseStatus successful (0).
fn successful(der: &[u8]) -> bool {
    if der.len() < 6 || der[0] != 0x30 {
        return false;
    }
    let skip = match der[1] {
        l if l < 0x80 => 2,
        0x81 => 3,
        0x82 => 4,
        _ => return false,
    };
    der.get(skip..skip + 3) == Some(&[0x0a, 0x01, 0x00][..])
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    pcad::pki::der_util::hex(bytes)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The wrk script: each thread loads the request list (`METHOD PATH [HEX BODY]` per line),
/// sends a random one each time, and prints a `WRKRESULT` line at the end.
const WRK_LUA: &str = r#"
local reqs = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  for line in io.lines("@LIST@") do
    local method, path, hex = line:match("^(%u+) (%S+) ?(%x*)$")
    if method then
      local headers = {}
      local body = nil
      if hex ~= "" then
        body = (hex:gsub("%x%x", function(c) return string.char(tonumber(c, 16)) end))
        headers["Content-Type"] = "application/ocsp-request"
      end
      reqs[#reqs + 1] = wrk.format(method, path, headers, body)
    end
  end
  math.randomseed(7919 * (tid or 1) + 17)
end
function request()
  return reqs[math.random(#reqs)]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKRESULT requests=%.0f duration_us=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f mean_us=%.1f max_us=%.0f connect=%.0f read=%.0f write=%.0f status=%.0f timeout=%.0f bytes=%.0f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.status,
    e.timeout, summary.bytes))
end
"#;

pub(crate) struct WrkResult {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) mean_ms: f64,
    pub(crate) errors: f64,
    pub(crate) requests: f64,
    /// Server CPU (user + system, all threads and child processes) per request.
    pub(crate) cpu_us_per_req: f64,
    /// Server CPU seconds per wall second (1.0 = its pinned core fully used).
    pub(crate) server_util: f64,
}

/// `taskset -c 1 wrk -tT -cC -dDs --latency -s script URL`, bounded.
#[allow(clippy::too_many_arguments)]
pub(crate) fn wrk(
    o: &ServingOptions,
    dir: &Path,
    url: &str,
    lines: &[String],
    secs: u64,
    tag: &str,
    server_pid: i32,
) -> Result<WrkResult, String> {
    let list = dir.join(format!("wrk-{tag}.txt"));
    std::fs::write(&list, lines.join("\n") + "\n").map_err(|e| e.to_string())?;
    let script = dir.join(format!("wrk-{tag}.lua"));
    std::fs::write(
        &script,
        WRK_LUA.replace("@LIST@", &list.display().to_string()),
    )
    .map_err(|e| e.to_string())?;
    let mut c = Command::new("taskset");
    c.args(["-c", "1", "wrk"])
        .arg(format!("-t{}", o.wrk_threads))
        .arg(format!("-c{}", o.conns))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(url);
    let cpu0 = server_cpu(server_pid);
    let started = Instant::now();
    let out = output_bounded(c, Duration::from_secs(secs + 60))?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = server_cpu(server_pid) - cpu0;
    let text = String::from_utf8_lossy(&out);
    std::fs::write(dir.join(format!("wrk-{tag}.out")), text.as_bytes())
        .map_err(|e| e.to_string())?;
    let f = tagged_fields(&text, "WRKRESULT ").ok_or(format!("wrk printed no result: {text}"))?;
    let g = |k: &str| field(&f, k);
    Ok(WrkResult {
        rps: g("requests") / (g("duration_us") / 1e6),
        p50_ms: g("p50_us") / 1e3,
        p99_ms: g("p99_us") / 1e3,
        mean_ms: g("mean_us") / 1e3,
        errors: g("connect") + g("read") + g("write") + g("status") + g("timeout"),
        requests: g("requests"),
        cpu_us_per_req: cpu * 1e6 / g("requests"),
        server_util: cpu / wall,
    })
}

/// CPU seconds (user + system) used so far by process `pid` and its child processes (nginx's
/// worker), from `/proc/*/stat`.
fn server_cpu(pid: i32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let read = |p: &str| -> Option<(i32, f64)> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start at state (field 3).
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some((ppid, ticks / tick))
    };
    let mut total = read(&pid.to_string()).map(|(_, c)| c).unwrap_or(0.0);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.bytes().all(|b| b.is_ascii_digit()) {
                if let Some((ppid, c)) = read(&name) {
                    if ppid == pid {
                        total += c;
                    }
                }
            }
        }
    }
    total
}

/// The wrk request lists of part (b): one POST and one GET line per leaf of `setup`.
pub(crate) fn request_lines(setup: &Setup) -> Result<(Vec<String>, Vec<String>), String> {
    let (name_hash, key_hash) =
        ocsp::issuer_hashes(&setup.issuer_der, HashAlg::Sha1).map_err(|e| e.to_string())?;
    let ocsp_path = format!("/v2.0/appkeys/{APPKEY}/ca-stores/{}/ocsp", setup.store_id);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Ok(setup
        .serials
        .iter()
        .map(|s| ocsp_request(&ocsp::cert_id_der(HashAlg::Sha1, &name_hash, &key_hash, s)))
        .map(|r| {
            (
                format!("POST {ocsp_path} {}", hex(&r)),
                format!("GET {ocsp_path}/{}", b64.encode(&r)),
            )
        })
        .unzip())
}

/// `check_answers`, tried again for up to 30 s while the server fills its cache.
pub(crate) fn check_until_ready(
    url: &str,
    get_lines: &[String],
    post_lines: &[String],
    dir: &Path,
) -> Result<(Vec<u8>, usize), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check_answers(url, get_lines, post_lines, dir) {
            Ok(r) => return Ok(r),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// The server measured against nginx: its names, where it answers and what it is asked.
pub(crate) struct Contender<'a> {
    /// In the table and the wrk files (`pcad`, `resp`).
    pub(crate) label: &'static str,
    /// In sentences (`pcad`, `responder`).
    pub(crate) name: &'static str,
    pub(crate) url: String,
    pub(crate) post: &'a [String],
    pub(crate) get: &'a [String],
    /// The end of the `# load:` line (after the wrk command).
    pub(crate) load_note: &'static str,
}

/// One run of the comparison: the contender's POST and GET, then nginx's GET; the contender's
/// RSS after its runs.
pub(crate) struct Round {
    pub(crate) results: Vec<(&'static str, &'static str, WrkResult)>,
    pub(crate) rss: Option<u64>,
}

/// `o.runs` rounds of: the contender (`server`, running and answering; restarted for the
/// later rounds) under wrk for POST and GET, then nginx serving `one` for GET. Prints each
/// round's table, `report`'s lines and the contender's RSS; after more than one round, the
/// median of every figure and of the ratios.
pub(crate) fn compare(
    o: &ServingOptions,
    dir: &Path,
    c: &Contender,
    server: &mut Proc,
    one: &[u8],
    report: impl Fn(&Round),
) -> Result<(), String> {
    println!(
        "# load: taskset -c 1 wrk -t{} -c{} -d{}s --latency{}",
        o.wrk_threads, o.conns, o.wrk_secs, c.load_note
    );
    let mut rounds = Vec::new();
    for run in 1..=o.runs {
        let suffix = match run {
            1 => String::new(),
            _ => {
                println!("\n# run {run} of {}", o.runs);
                // Started again, every request answered (its cache warm) before the runs.
                server.restart()?;
                let health = format!("{}/healthz", c.url);
                wait_http(&health, server, Duration::from_secs(30))?;
                check_until_ready(&c.url, c.get, c.post, dir)?;
                format!("-{run}")
            }
        };
        let pid = server.pid() as i32;
        let tag = |what: &str| format!("{what}{suffix}");
        wrk(o, dir, &c.url, c.post, 3, &tag("warm"), pid)?;
        println!("# load average before {} runs: {}", c.name, load_average());
        let post_tag = tag(&format!("{}-post", c.label));
        let post = wrk(o, dir, &c.url, c.post, o.wrk_secs, &post_tag, pid)?;
        let get_tag = tag(&format!("{}-get", c.label));
        let get = wrk(o, dir, &c.url, c.get, o.wrk_secs, &get_tag, pid)?;
        let rss = proc_rss(pid);
        server.stop();
        let nginx = nginx_run(o, dir, one, &suffix)?;
        let round = Round {
            results: vec![
                (c.label, "POST", post),
                (c.label, "GET", get),
                ("nginx", "GET", nginx),
            ],
            rss,
        };
        print_table(&round.results);
        report(&round);
        if let Some(rss) = round.rss {
            println!("# {} RSS after its runs: {:.1} MB", c.name, mb(rss));
        }
        rounds.push(round);
    }
    if rounds.len() > 1 {
        print_medians(c.name, &rounds);
    }
    Ok(())
}

fn print_table(results: &[(&str, &str, WrkResult)]) {
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
    for (server, method, r) in results {
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
}

/// The median over the rounds of each figure, and of the contender/nginx ratios of each round.
fn print_medians(name: &str, rounds: &[Round]) {
    let over = |f: &dyn Fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    println!(
        "\n# median of {} runs (each figure apart; a ratio is the median of the runs' ratios)",
        rounds.len()
    );
    println!(
        "median {:>7} {:>6} {:>11} {:>9} {:>9}",
        "server", "method", "requests/s", "p50 ms", "p99 ms"
    );
    for (i, (server, method, _)) in rounds[0].results.iter().enumerate() {
        println!(
            "median {:>7} {:>6} {:>11.0} {:>9.3} {:>9.3}",
            server,
            method,
            over(&|r| r.results[i].2.rps),
            over(&|r| r.results[i].2.p50_ms),
            over(&|r| r.results[i].2.p99_ms),
        );
    }
    for (i, (_, method, _)) in rounds[0].results[..2].iter().enumerate() {
        println!(
            "median {name} {method:<4}/ nginx GET: {:.2}x requests/s, p99 {:.2}x nginx's",
            over(&|r| r.results[i].2.rps / r.results[2].2.rps),
            over(&|r| r.results[i].2.p99_ms / r.results[2].2.p99_ms),
        );
    }
}

/// nginx (one worker, CPU 0) serving `one` as a static file: a 3 s warm-up, then one wrk run.
fn nginx_run(
    o: &ServingOptions,
    dir: &Path,
    one: &[u8],
    suffix: &str,
) -> Result<WrkResult, String> {
    let www = dir.join("www");
    std::fs::create_dir_all(dir.join("nginx-tmp")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).map_err(|e| e.to_string())
    };
    mode(&www, 0o755)?;
    std::fs::write(www.join("ocsp.der"), one).map_err(|e| e.to_string())?;
    mode(&www.join("ocsp.der"), 0o644)?;
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir, port)).map_err(|e| e.to_string())?;
    let mut c = Command::new("taskset");
    c.args(["-c", "0", "/usr/sbin/nginx", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut nginx = Proc::spawn("nginx", c)?;
    let url = format!("http://127.0.0.1:{port}");
    wait_http(
        &format!("{url}/ocsp.der"),
        &mut nginx,
        Duration::from_secs(15),
    )?;
    let lines = vec!["GET /ocsp.der".to_owned()];
    let pid = nginx.pid() as i32;
    wrk(o, dir, &url, &lines, 3, &format!("nginx-warm{suffix}"), pid)?;
    println!("# load average before nginx run: {}", load_average());
    let r = wrk(
        o,
        dir,
        &url,
        &lines,
        o.wrk_secs,
        &format!("nginx-get{suffix}"),
        pid,
    )?;
    nginx.stop();
    Ok(r)
}

/// Part (b) of `ocsp-bench`: the appliance itself on CPU 0 against nginx.
pub fn run(o: &ServingOptions) -> Result<(), String> {
    println!("\n## (b) OCSP serving: pcad (real daemon) vs nginx (one static response file)");
    let tmp = tempdir("pcad-ocsp-b-")?;
    let dir = tmp.path().to_owned();
    // nginx's worker (user nobody) must read the response file.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let mut daemon = Daemon::start_with(&o.pcad, &dir.join("pcad"), "", Some("0"))?;
    let api = Api::of(&daemon, &dir);
    let public = format!("http://127.0.0.1:{}", daemon.public_port);
    let (setup, setup_time) = timed(|| setup_daemon(o, &api, &dir));
    let (post, get) = request_lines(&setup?)?;
    // Every request answers 200 with a successful response before anything is measured.
    let (one, ok_count) = check_answers(&public, &get, &post, &dir)?;
    println!(
        "# setup over the mTLS API (curl): store (ocspActive, refresh 12 h) > ROOT > INTERMEDIATE (P-256) > template (storeInServer false) > {} GENERATE leaves: {:.1} s",
        post.len(),
        setup_time.as_secs_f64()
    );
    println!(
        "# {} distinct OCSP requests (SHA-1 CertIDs); all {} GET answers 200 + successful before the runs; one response = {} bytes",
        post.len(),
        ok_count,
        one.len()
    );
    let contender = Contender {
        label: "pcad",
        name: "pcad",
        url: public,
        post: &post,
        get: &get,
        load_note: " (Lua: a random request of the list each time); servers pinned with taskset -c 0; 3 s warm-up run first",
    };
    compare(o, &dir, &contender, &mut daemon.proc, &one, |round| {
        let r = &round.results;
        let nginx_r = &r[2].2;
        println!("# CPU us/req = server CPU (all threads; nginx master + worker) / requests; srv util = server CPU s per wall s (1.0 = its core fully used): below 1.0 the server waited for the network or lost its core to other processes");
        for (_, method, r) in &r[..2] {
            println!(
                "pcad {method:<4}/ nginx GET: {:.2}x requests/s (goal >= 1.0: {}), p99 {:.3} ms (goal <= 2 ms: {})",
                r.rps / nginx_r.rps,
                if r.rps >= nginx_r.rps { "met" } else { "MISSED" },
                r.p99_ms,
                if r.p99_ms <= 2.0 { "met" } else { "MISSED" },
            );
        }
        for (_, method, r) in &r[..2] {
            println!(
                "pcad {method:<4} CPU per request: {:.2}x nginx's (what the requests/s ratio would be, inverted, with each server alone on its core)",
                r.cpu_us_per_req / nginx_r.cpu_us_per_req
            );
        }
    })
}

/// What `setup_daemon` made.
pub(crate) struct Setup {
    pub(crate) store_id: u64,
    /// DER of the leaves' issuer (the INTERMEDIATE).
    pub(crate) issuer_der: Vec<u8>,
    pub(crate) serials: Vec<Vec<u8>>,
}

/// Store, issuers, template and leaves over the API; returns the store id, the issuing CA's
/// DER and the leaves' serials.
pub(crate) fn setup_daemon(o: &ServingOptions, api: &Api, dir: &Path) -> Result<Setup, String> {
    let store = api.call(
        "POST",
        "",
        Some(&json!({"name": "ocsp-bench", "ocspActive": true, "ocspRefreshPeriod": 12, "crlActive": false})),
    )?;
    let sid = store["caStoreId"].as_u64().ok_or("no caStoreId")?;
    let issuer = |kind: &str, parent: Option<u64>| {
        let mut b = json!({
            "certificateType": kind,
            "name": format!("bench-{}", kind.to_lowercase()),
            "subjectInfo": {"commonName": format!("pcad Bench {kind}"), "organization": "pcad bench", "country": "KR"},
            "ttlValue": if parent.is_some() { 4 * 365 * 86_400 } else { 5 * 365 * 86_400 },
            "keyInfo": {"algorithm": "EC", "keySize": 256},
            "signatureAlgorithm": "SHA256_WITH_ECDSA",
            "maxDepth": if parent.is_some() { 0 } else { 1 },
        });
        if let Some(p) = parent {
            b["parentCertId"] = json!(p);
        }
        api.call("POST", &format!("/{sid}/certs"), Some(&b))
    };
    let root = issuer("ROOT", None)?;
    let root_id = root["certId"].as_u64().ok_or("no root certId")?;
    let inter = issuer("INTERMEDIATE", Some(root_id))?;
    let iid = inter["certId"].as_u64().ok_or("no intermediate certId")?;
    let detail = api.call("GET", &format!("/{sid}/certs/{iid}"), None)?;
    let pem = detail["certificatePem"]
        .as_str()
        .ok_or("no certificatePem")?;
    let issuer_der = pcad::pki::cert::from_pem(pem).map_err(|e| e.to_string())?;
    let tpl = api.call(
        "POST",
        &format!("/{sid}/templates"),
        Some(&json!({
            "name": "bench-leaves", "parentCertId": iid, "maxTTL": 90 * 86_400,
            "keyInfo": {"algorithm": "EC", "keySize": 256},
            "keyUsage": ["DIGITAL_SIGNATURE"], "extendedKeyUsage": ["SERVER_AUTHENTICATION"],
            "storeInServer": false,
            "subjectInfo": {"organization": "pcad bench", "country": "KR"},
        })),
    )?;
    let tid = tpl["templateId"].as_u64().ok_or("no templateId")?;

    // The leaves: one curl, one kept-alive connection, the same body posted `requests` times.
    let body = dir.join("leaf.json");
    std::fs::write(
        &body,
        json!({"mode": "GENERATE", "commonName": "leaf.bench.example", "format": "DER"})
            .to_string(),
    )
    .map_err(|e| e.to_string())?;
    let url = format!("{}/{sid}/templates/{tid}/certificates", api.base);
    let config = dir.join("leaves.curl");
    std::fs::write(&config, format!("url = \"{url}\"\n").repeat(o.requests))
        .map_err(|e| e.to_string())?;
    let mut c = api.curl();
    c.arg("-H")
        .arg("Content-Type: application/json")
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg("-K")
        .arg(&config);
    let out = output_bounded(c, Duration::from_secs(600))?;
    let mut serials = Vec::new();
    for v in serde_json::Deserializer::from_slice(&out).into_iter::<Value>() {
        let v = envelope_body(v.map_err(|e| format!("leaf answers: {e}"))?)?;
        let s = v["serialNumber"]
            .as_str()
            .ok_or("leaf without serialNumber")?;
        serials.push(unhex(s).ok_or("bad serialNumber")?);
    }
    if serials.len() != o.requests {
        return Err(format!("{} leaves issued of {}", serials.len(), o.requests));
    }
    Ok(Setup {
        store_id: sid,
        issuer_der,
        serials,
    })
}

/// Checks every GET (status and size through one curl) and one POST/GET answer's bytes;
/// returns one response (for nginx) and how many GETs answered well.
pub(crate) fn check_answers(
    public: &str,
    get_lines: &[String],
    post_lines: &[String],
    dir: &Path,
) -> Result<(Vec<u8>, usize), String> {
    let config = dir.join("check.curl");
    let mut text = String::new();
    for l in get_lines {
        let path = l.strip_prefix("GET ").unwrap_or(l);
        text.push_str(&format!(
            "url = \"{public}{path}\"\noutput = \"/dev/null\"\n"
        ));
    }
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--max-time",
        "10",
        "-w",
        "%{http_code} %{content_type} %{size_download}\n",
        "-K",
    ])
    .arg(&config);
    let out = output_bounded(c, Duration::from_secs(300))?;
    let out = String::from_utf8_lossy(&out);
    let good = out
        .lines()
        .filter(|l| l.starts_with("200 application/ocsp-response "))
        .count();
    if good != get_lines.len() {
        return Err(format!(
            "only {good} of {} OCSP GETs answered 200 application/ocsp-response; first answers: {}",
            get_lines.len(),
            out.lines().take(3).collect::<Vec<_>>().join(" | ")
        ));
    }
    let first = post_lines.first().ok_or("no requests")?;
    let mut parts = first.splitn(3, ' ');
    let (_, path, body_hex) = (
        parts.next(),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let req = dir.join("req0.der");
    std::fs::write(&req, unhex(body_hex).ok_or("bad hex")?).map_err(|e| e.to_string())?;
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--max-time",
        "10",
        "-H",
        "Content-Type: application/ocsp-request",
        "--data-binary",
    ])
    .arg(format!("@{}", req.display()))
    .arg(format!("{public}{path}"));
    let posted = output_bounded(c, Duration::from_secs(20))?;
    let get_path = get_lines[0].strip_prefix("GET ").unwrap_or(&get_lines[0]);
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10"])
        .arg(format!("{public}{get_path}"));
    let got = output_bounded(c, Duration::from_secs(20))?;
    if !successful(&posted) || !successful(&got) {
        return Err(format!(
            "OCSP answers are not 'successful': POST {} / GET {}",
            hex(&posted[..posted.len().min(8)]),
            hex(&got[..got.len().min(8)])
        ));
    }
    Ok((got, good))
}

pub(crate) fn nginx_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {d}/nginx-tmp/body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    types {{ }}
    default_type application/ocsp-response;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        location / {{ }}
    }}
}}
"#
    )
}

/// Resident memory of another process.
pub(crate) fn proc_rss(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}
