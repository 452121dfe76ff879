//! Prometheus metrics: counters and histograms kept in atomics, rendered as text on the
//! metrics listener. The OCSP hot path's counters are atomics; other requests take a lock.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

/// The process-wide registry.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// Upper bounds (seconds) of the HSM sign latency histogram.
const SIGN_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// (route, status) pairs counted without a lock: what nearly every OCSP request ends as.
const HOT_REQUESTS: [(&str, u16); 4] = [
    ("ocsp_get", 200),
    ("ocsp_post", 200),
    ("ocsp_get", 304),
    ("ocsp_post", 304),
];

/// OCSP answer kinds counted without a lock.
const OCSP_KINDS: [&str; 5] = [
    "successful",
    "malformedRequest",
    "unauthorized",
    "tryLater",
    "internalError",
];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    hot_requests: [AtomicU64; HOT_REQUESTS.len()],
    ocsp: Mutex<BTreeMap<&'static str, u64>>,
    ocsp_kinds: [AtomicU64; OCSP_KINDS.len()],
    presign_runs: AtomicU64,
    presign_responses: AtomicU64,
    presign_micros: AtomicU64,
    last_presign_micros: AtomicU64,
    sign_buckets: [AtomicU64; SIGN_BUCKETS.len()],
    sign_count: AtomicU64,
    sign_micros: AtomicU64,
    sign_errors: AtomicU64,
}

impl Metrics {
    /// One answered HTTP request.
    pub fn request(&self, route: &'static str, status: u16) {
        if let Some(i) = HOT_REQUESTS.iter().position(|h| *h == (route, status)) {
            self.hot_requests[i].fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route, status)).or_default() += 1;
        }
    }

    /// One OCSP answer, by kind (`successful`, `malformedRequest`, `unauthorized`, ...).
    pub fn ocsp(&self, kind: &'static str) {
        if let Some(i) = OCSP_KINDS.iter().position(|k| *k == kind) {
            self.ocsp_kinds[i].fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Ok(mut m) = self.ocsp.lock() {
            *m.entry(kind).or_default() += 1;
        }
    }

    /// One pre-signing refresh of a store.
    pub fn presign(&self, responses: usize, seconds: f64) {
        let micros = (seconds * 1e6) as u64;
        self.presign_runs.fetch_add(1, Ordering::Relaxed);
        self.presign_responses
            .fetch_add(responses as u64, Ordering::Relaxed);
        self.presign_micros.fetch_add(micros, Ordering::Relaxed);
        self.last_presign_micros.store(micros, Ordering::Relaxed);
    }

    /// One HSM signature and how long it took.
    pub fn hsm_sign(&self, seconds: f64, ok: bool) {
        if !ok {
            self.sign_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        for (i, bound) in SIGN_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.sign_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sign_count.fetch_add(1, Ordering::Relaxed);
        self.sign_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The text exposition; `extra` is appended (gauges computed at scrape time).
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        out.push_str("# HELP pcad_http_requests_total HTTP requests answered, by route and status.\n# TYPE pcad_http_requests_total counter\n");
        let mut requests = self.requests.lock().map(|m| m.clone()).unwrap_or_default();
        for (key, n) in HOT_REQUESTS.iter().zip(&self.hot_requests) {
            match n.load(Ordering::Relaxed) {
                0 => {}
                n => *requests.entry(*key).or_default() += n,
            }
        }
        for ((route, status), n) in requests.iter() {
            let _ = writeln!(
                out,
                "pcad_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP pcad_ocsp_responses_total OCSP answers, by response status.\n# TYPE pcad_ocsp_responses_total counter\n");
        let mut kinds = self.ocsp.lock().map(|m| m.clone()).unwrap_or_default();
        for (kind, n) in OCSP_KINDS.iter().zip(&self.ocsp_kinds) {
            match n.load(Ordering::Relaxed) {
                0 => {}
                n => *kinds.entry(*kind).or_default() += n,
            }
        }
        for (kind, n) in kinds.iter() {
            let _ = writeln!(out, "pcad_ocsp_responses_total{{status=\"{kind}\"}} {n}");
        }
        let micros = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = write!(
            out,
            "# HELP pcad_ocsp_presign_runs_total Store refreshes of pre-signed OCSP responses.\n# TYPE pcad_ocsp_presign_runs_total counter\npcad_ocsp_presign_runs_total {}\n\
             # HELP pcad_ocsp_presigned_responses_total OCSP responses pre-signed.\n# TYPE pcad_ocsp_presigned_responses_total counter\npcad_ocsp_presigned_responses_total {}\n\
             # HELP pcad_ocsp_presign_seconds_total Time spent pre-signing.\n# TYPE pcad_ocsp_presign_seconds_total counter\npcad_ocsp_presign_seconds_total {}\n\
             # HELP pcad_ocsp_presign_last_seconds Duration of the last store refresh.\n# TYPE pcad_ocsp_presign_last_seconds gauge\npcad_ocsp_presign_last_seconds {}\n",
            self.presign_runs.load(Ordering::Relaxed),
            self.presign_responses.load(Ordering::Relaxed),
            micros(&self.presign_micros),
            micros(&self.last_presign_micros),
        );
        out.push_str("# HELP pcad_hsm_sign_seconds Latency of HSM signatures.\n# TYPE pcad_hsm_sign_seconds histogram\n");
        for (i, bound) in SIGN_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "pcad_hsm_sign_seconds_bucket{{le=\"{bound}\"}} {}",
                self.sign_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.sign_count.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "pcad_hsm_sign_seconds_bucket{{le=\"+Inf\"}} {count}\npcad_hsm_sign_seconds_sum {}\npcad_hsm_sign_seconds_count {count}\n\
             # HELP pcad_hsm_sign_errors_total HSM signatures that failed.\n# TYPE pcad_hsm_sign_errors_total counter\npcad_hsm_sign_errors_total {}\n",
            micros(&self.sign_micros),
            self.sign_errors.load(Ordering::Relaxed),
        );
        out.push_str(extra);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_counted() {
        let m = Metrics::default();
        m.request("ocsp", 200);
        m.request("ocsp", 200);
        m.request("ocsp_get", 200);
        m.request("ocsp_get", 304);
        m.request("ocsp_get", 304);
        m.ocsp("successful");
        m.ocsp("unauthorized");
        m.ocsp("unauthorized");
        m.hsm_sign(0.0003, true);
        m.presign(10, 0.5);
        let text = m.render("");
        assert!(text.contains("pcad_http_requests_total{route=\"ocsp\",status=\"200\"} 2"));
        assert!(text.contains("pcad_http_requests_total{route=\"ocsp_get\",status=\"200\"} 1"));
        assert!(text.contains("pcad_http_requests_total{route=\"ocsp_get\",status=\"304\"} 2"));
        assert!(!text.contains("route=\"ocsp_post\""));
        assert!(text.contains("pcad_ocsp_responses_total{status=\"successful\"} 1"));
        assert!(text.contains("pcad_ocsp_responses_total{status=\"unauthorized\"} 2"));
        assert!(text.contains("pcad_hsm_sign_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("pcad_hsm_sign_seconds_bucket{le=\"0.00025\"} 0"));
        assert!(text.contains("pcad_ocsp_presigned_responses_total 10"));
    }
}
