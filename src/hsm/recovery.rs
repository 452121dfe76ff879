//! Up/down state and recovery.
//!
//! A transient error on the current device marks the HSM down (once), closes the device's pool
//! so nobody waits on it, and starts one background thread that tears the device down and
//! reconnects with backoff: finalise, re-initialise, find the token by label, log in, reopen the
//! pool (the key-handle cache starts empty with the new device). Calls made while down fail at
//! once with `Unavailable`. A refused PIN stops recovery for good: tokens lock after a few tries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::device::{Device, Settings};
use super::error::Fail;
use super::library::Reset;
use super::pool::lock;
use super::{HsmError, HsmHealth};
use crate::config::Pin;

/// Wait before the first reconnection attempt.
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// Longest wait between attempts.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// How long teardown waits for calls still running on the lost device.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// What every clone of an `Hsm` shares.
pub(crate) struct Shared {
    settings: Settings,
    pin: Pin,
    state: Mutex<State>,
    /// Mirror of `state` readable without the lock (`Hsm::is_up`).
    up: AtomicBool,
}

enum State {
    Up {
        device: Arc<Device>,
        since: Instant,
    },
    /// Recovery is running.
    Down {
        reason: String,
        since: Instant,
    },
    /// The PIN was refused while recovering: no more attempts.
    Stopped {
        since: Instant,
    },
}

impl Shared {
    pub(crate) fn new(settings: Settings, pin: Pin, device: Device) -> Arc<Shared> {
        Arc::new(Shared {
            settings,
            pin,
            state: Mutex::new(State::Up {
                device: Arc::new(device),
                since: Instant::now(),
            }),
            up: AtomicBool::new(true),
        })
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The current device; at once `Unavailable` while recovering, `PinRejected` once recovery
    /// stopped because the token refused the PIN.
    pub(crate) fn device(&self) -> Result<Arc<Device>, HsmError> {
        match &*lock(&self.state) {
            State::Up { device, .. } => Ok(device.clone()),
            State::Down { reason, .. } => {
                Err(HsmError::Unavailable(format!("recovering from: {reason}")))
            }
            // Recovery gave up: the PIN must be fixed and pcad restarted.
            State::Stopped { .. } => Err(HsmError::PinRejected),
        }
    }

    pub(crate) fn health(&self) -> HsmHealth {
        let (up, reason, recovering, since, sessions) = match &*lock(&self.state) {
            State::Up { device, since } => (true, None, false, *since, device.sessions()),
            State::Down { reason, since } => (false, Some(reason.clone()), true, *since, 0),
            State::Stopped { since } => (
                false,
                Some(HsmError::PinRejected.to_string()),
                false,
                *since,
                0,
            ),
        };
        HsmHealth {
            up,
            reason,
            recovering,
            since: since.elapsed(),
            token_label: self.settings.token_label.clone(),
            sessions,
        }
    }

    /// Marks the HSM down because `device` failed with `fail`, unless that was already done (or
    /// `device` is no longer current), and starts recovery.
    pub(crate) fn report_down(self: &Arc<Self>, device: &Arc<Device>, fail: &Fail) {
        let mut state = lock(&self.state);
        match &*state {
            State::Up {
                device: current, ..
            } if Arc::ptr_eq(current, device) => {}
            _ => return,
        }
        let reason = fail.message();
        log::warn!(
            "HSM token {:?} is down ({reason}); recovering in the background",
            self.settings.token_label
        );
        *state = State::Down {
            reason,
            since: Instant::now(),
        };
        self.up.store(false, Ordering::Release);
        drop(state);
        device.close_pool();

        let shared = Arc::downgrade(self);
        let old = device.clone();
        let spawned = std::thread::Builder::new()
            .name("hsm-recovery".into())
            .spawn(move || recover(shared, old));
        if let Err(e) = spawned {
            log::error!("HSM: cannot start the recovery thread ({e}); the HSM stays down");
        }
    }

    #[cfg(test)]
    pub(crate) fn current(&self) -> Option<Arc<Device>> {
        match &*lock(&self.state) {
            State::Up { device, .. } => Some(device.clone()),
            _ => None,
        }
    }
}

/// The recovery thread: tear the lost device down, then reconnect with backoff until it works,
/// the PIN is refused, or every `Hsm` handle is gone.
fn recover(shared: Weak<Shared>, old: Arc<Device>) {
    let broken = old.generation();
    old.teardown(DRAIN_WAIT);
    drop(old);

    let mut reset = Reset::Broken(broken);
    let mut delay = FIRST_DELAY;
    let mut attempts = 0u32;
    loop {
        std::thread::sleep(delay);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        attempts += 1;
        match Device::connect(&shared.settings, &shared.pin, reset, &BTreeMap::new()) {
            Ok(device) => {
                let mut state = lock(&shared.state);
                let down_for = match &*state {
                    State::Down { since, .. } => since.elapsed(),
                    _ => Duration::ZERO,
                };
                *state = State::Up {
                    device: Arc::new(device),
                    since: Instant::now(),
                };
                shared.up.store(true, Ordering::Release);
                drop(state);
                log::info!(
                    "HSM token {:?} is back after {:.1} s (attempt {attempts})",
                    shared.settings.token_label,
                    down_for.as_secs_f64()
                );
                return;
            }
            Err(HsmError::PinRejected) => {
                *lock(&shared.state) = State::Stopped {
                    since: Instant::now(),
                };
                log::error!(
                    "HSM token {:?} refused the PIN while recovering; not retrying (the token \
                     would lock). Fix the PIN and restart.",
                    shared.settings.token_label
                );
                return;
            }
            Err(e) => {
                log::debug!("HSM recovery attempt {attempts} failed: {e}");
                if let State::Down { reason, .. } = &mut *lock(&shared.state) {
                    *reason = e.to_string();
                }
            }
        }
        // A failed attempt released its own initialisation; the next one starts afresh.
        reset = Reset::No;
        delay = (delay * 2).min(MAX_DELAY);
    }
}
