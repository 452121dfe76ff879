//! One measured run: N client tasks, each on its own keep-alive connection, sending requests
//! back to back for a warm-up and then a measured window; the daemon's and this process's CPU
//! time and the daemon's fsync-family system calls are sampled over the same window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use tokio::sync::Barrier;

use super::client::{envelope_body, Conn, Endpoint};
use crate::sys;

/// What to send.
pub struct Spec {
    pub clients: usize,
    pub warmup: Duration,
    pub window: Duration,
    pub method: Method,
    pub path: String,
    /// Request bodies, used round-robin (client `i` starts at body `i`).
    pub bodies: Arc<Vec<Bytes>>,
}

/// What a run measured.
pub struct Outcome {
    /// Answers inside the window with HTTP 200 and `isSuccessful: true`.
    pub ok: u64,
    /// Other answers and transport failures inside the window.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latency of every successful request in the window, microseconds, sorted.
    pub latencies_us: Vec<u32>,
    pub window_secs: f64,
    /// CPU cores in use on average over the window (1.0 = one core busy).
    pub daemon_cores: f64,
    pub client_cores: f64,
    /// Cores used by every other process of the machine (other people's builds and tests).
    pub other_cores: f64,
    /// The daemon's fsync-family calls and context switches, when `perf` could count them.
    pub counters: Option<Counters>,
}

/// Events per second in the daemon over a part of the window.
pub struct Counters {
    /// fsync + fdatasync calls.
    pub fsync: f64,
    pub context_switches: f64,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window_secs
    }

    /// Daemon CPU milliseconds per successful request.
    pub fn daemon_ms_per_request(&self) -> f64 {
        self.daemon_cores * 1000.0 / self.rate()
    }

    /// The `q` quantile of the latency, in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return f64::NAN;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.latencies_us[rank - 1] as f64 / 1000.0
    }
}

/// Runs `spec` against the daemon `daemon_pid`. Bounded: warm-up + window + 10 s at most per
/// request in flight.
pub async fn run(endpoint: Arc<Endpoint>, spec: Spec, daemon_pid: u32) -> Result<Outcome, String> {
    let barrier = Arc::new(Barrier::new(spec.clients + 1));
    let path: Arc<str> = Arc::from(spec.path.as_str());
    // Every connection is opened before the clock starts.
    let mut conns = Vec::with_capacity(spec.clients);
    for _ in 0..spec.clients {
        conns.push(Conn::open(&endpoint).await?);
    }
    let t0 = Instant::now();
    let start = t0 + spec.warmup;
    let end = start + spec.window;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let client = Client {
                endpoint: Arc::clone(&endpoint),
                barrier: Arc::clone(&barrier),
                method: spec.method.clone(),
                path: Arc::clone(&path),
                bodies: Arc::clone(&spec.bodies),
                first_body: i,
                step: spec.clients,
            };
            tokio::spawn(client.run(conn, start, end))
        })
        .collect();
    barrier.wait().await;

    // CPU seconds of the daemon, of this process and of the machine, and the wall clock.
    let sample = || {
        (
            sys::cpu_seconds(&daemon_pid.to_string()),
            sys::cpu_seconds("self"),
            sys::machine_busy_seconds(),
            Instant::now(),
        )
    };
    tokio::time::sleep_until(start.into()).await;
    let (d0, c0, m0, w0) = sample();
    let trace_length = spec.window.mul_f64(0.6).max(Duration::from_secs(1));
    let counters = tokio::spawn(count_events(daemon_pid, trace_length));
    tokio::time::sleep_until(end.into()).await;
    let (d1, c1, m1, w1) = sample();
    let cpu_secs = (w1 - w0).as_secs_f64();
    let cores = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (b - a) / cpu_secs,
        _ => f64::NAN,
    };

    let mut outcome = Outcome {
        ok: 0,
        errors: 0,
        first_error: None,
        latencies_us: Vec::new(),
        window_secs: spec.window.as_secs_f64(),
        daemon_cores: cores(d0, d1),
        client_cores: cores(c0, c1),
        other_cores: cores(m0, m1) - cores(d0, d1) - cores(c0, c1),
        counters: counters.await.ok().flatten(),
    };
    for task in tasks {
        let tally = task.await.map_err(|e| format!("client task: {e}"))?;
        outcome.ok += tally.ok;
        outcome.errors += tally.errors;
        outcome.latencies_us.extend(tally.latencies_us);
        if outcome.first_error.is_none() {
            outcome.first_error = tally.first_error;
        }
    }
    outcome.latencies_us.sort_unstable();
    Ok(outcome)
}

/// One client task's state.
struct Client {
    endpoint: Arc<Endpoint>,
    barrier: Arc<Barrier>,
    method: Method,
    path: Arc<str>,
    bodies: Arc<Vec<Bytes>>,
    first_body: usize,
    step: usize,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
}

impl Client {
    /// Sends requests back to back until `end`; counts only answers that arrive in
    /// `[start, end]`. A broken connection is reopened.
    async fn run(self, conn: Conn, start: Instant, end: Instant) -> Tally {
        const REQUEST_LIMIT: Duration = Duration::from_secs(10);
        let mut tally = Tally::default();
        let mut conn = Some(conn);
        let mut next = self.first_body;
        self.barrier.wait().await;
        while Instant::now() < end {
            let body = self.bodies[next % self.bodies.len()].clone();
            next += self.step;
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match Conn::open(&self.endpoint).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        tally.fail(Instant::now() >= start, e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let sent = Instant::now();
            let answer =
                tokio::time::timeout(REQUEST_LIMIT, c.call(self.method.clone(), &self.path, body))
                    .await;
            let done = Instant::now();
            let counted = done >= start && done <= end;
            match answer {
                Ok(Ok((status, bytes))) => match envelope_body(status, &bytes) {
                    Ok(_) if counted => {
                        tally.ok += 1;
                        let us = (done - sent).as_micros().min(u32::MAX as u128) as u32;
                        tally.latencies_us.push(us);
                    }
                    Ok(_) => {}
                    Err(e) => tally.fail(counted, e),
                },
                Ok(Err(e)) => {
                    conn = None;
                    tally.fail(counted, e);
                }
                Err(_) => {
                    conn = None;
                    tally.fail(counted, format!("no answer within {REQUEST_LIMIT:?}"));
                }
            }
        }
        tally
    }
}

impl Tally {
    fn fail(&mut self, counted: bool, error: String) {
        if counted {
            self.errors += 1;
            self.first_error.get_or_insert(error);
        }
    }
}

/// Counts the daemon's fsync/fdatasync calls and its context switches for
/// `length` with `perf stat` (syscall tracepoints need root or perf_event_paranoid <= -1);
/// `None` when perf is missing or refused.
async fn count_events(pid: u32, length: Duration) -> Option<Counters> {
    let events = [
        "syscalls:sys_enter_fsync",
        "syscalls:sys_enter_fdatasync",
        "context-switches",
    ];
    let run = tokio::process::Command::new("perf")
        .args([
            "stat",
            "-x",
            ",",
            "-e",
            &events.join(","),
            "-p",
            &pid.to_string(),
        ])
        .args(["--", "sleep", &format!("{:.3}", length.as_secs_f64())])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(length + Duration::from_secs(5), run)
        .await
        .ok()?
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let secs = length.as_secs_f64();
    let rate = |event: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.split(',').nth(2) == Some(event))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map(|n| n / secs)
    };
    Some(Counters {
        fsync: rate(events[0])? + rate(events[1])?,
        context_switches: rate(events[2])?,
    })
}
