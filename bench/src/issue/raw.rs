//! The reference: how fast the token signs when nothing else happens. The same token as the
//! daemon's, opened in this process with `pcad::hsm::Hsm` (SoftHSM lets several processes use
//! a token), with as many threads as the daemon has sessions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pcad::hsm::{Hsm, KeyId};
use pcad::pki::SignatureAlgorithm;

use crate::sys;

/// The CKA_ID of the private key labelled `label` (pcad labels issuer keys
/// `pcad/<appkey>/<store>/<certId>`).
pub fn key_by_label(hsm: &Hsm, label: &str) -> Result<KeyId, String> {
    hsm.list_keys()
        .map_err(|e| format!("listing HSM keys: {e}"))?
        .into_iter()
        .find(|k| k.label == label)
        .map(|k| k.id)
        .ok_or_else(|| format!("no key labelled {label} in the token"))
}

/// A measured signing rate.
pub struct RawRate {
    pub per_sec: f64,
    /// CPU milliseconds this process spent per signature (SoftHSM signs in the caller's thread).
    pub cpu_ms: f64,
    /// Cores used meanwhile by every other process of the machine.
    pub other_cores: f64,
}

/// About the size of a leaf's TBSCertificate.
pub const TBS_BYTES: u32 = 600;

/// Signs a message of `bytes` with `threads` threads, each pinned to `cpus` (none: not
/// pinned), for `length`. Stops at the first error.
pub fn sign_rate(
    hsm: &Hsm,
    key: &KeyId,
    alg: SignatureAlgorithm,
    (threads, cpus): (usize, &[usize]),
    length: Duration,
    bytes: u32,
) -> Result<RawRate, String> {
    let message: Vec<u8> = (0..bytes).map(|i| (i * 31 % 251) as u8).collect();
    // Untimed warm-up: the key handle lookup and its cache.
    hsm.sign(key, alg, &message).map_err(|e| e.to_string())?;
    let failed = AtomicBool::new(false);
    let cpu0 = sys::cpu_seconds("self");
    let machine0 = sys::machine_busy_seconds();
    let start = Instant::now();
    let deadline = start + length;
    let counts: Vec<Result<u64, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let (message, failed) = (&message, &failed);
                scope.spawn(move || -> Result<u64, String> {
                    if !cpus.is_empty() {
                        sys::pin_current_thread(cpus)?;
                    }
                    let mut n = 0u64;
                    while Instant::now() < deadline && !failed.load(Ordering::Relaxed) {
                        if let Err(e) = hsm.sign(key, alg, message) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e.to_string());
                        }
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("signing thread died".into()))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, sys::cpu_seconds("self")) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let machine = match (machine0, sys::machine_busy_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let mut total = 0;
    for count in counts {
        total += count?;
    }
    let total = total.max(1) as f64;
    Ok(RawRate {
        per_sec: total / elapsed,
        cpu_ms: cpu * 1000.0 / total,
        other_cores: (machine - cpu) / elapsed,
    })
}
