//! The refresh scheduler: one thread that re-signs each store's OCSP responses once per
//! ocspRefreshPeriod and each issuer's CRL at half its validity (or when missing).

use std::time::Duration;

use super::Publisher;
use crate::clock::now;

/// How often the scheduler looks, at most; `wake` makes it look at once.
const TICK: Duration = Duration::from_secs(5);

pub(super) fn start(p: Publisher) {
    let spawned = std::thread::Builder::new()
        .name("pcad-refresh".into())
        .spawn(move || loop {
            p.tick();
            p.sleep(TICK);
        });
    if let Err(e) = spawned {
        log::error!("could not start the refresh scheduler: {e}");
    }
}

impl Publisher {
    /// Makes the scheduler look now (a store's settings changed).
    pub(super) fn wake(&self) {
        let (lock, cv) = &self.inner.wake;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }

    fn sleep(&self, d: Duration) {
        let (lock, cv) = &self.inner.wake;
        let mut woken = lock.lock().unwrap_or_else(|p| p.into_inner());
        if !*woken {
            woken = cv
                .wait_timeout(woken, d)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        *woken = false;
    }

    /// When a store's responses are next due, if they were signed at all.
    pub(super) fn next_refresh(&self, store_id: u64) -> Option<i64> {
        self.inner
            .next_refresh
            .lock()
            .ok()
            .and_then(|m| m.get(&store_id).copied())
    }

    pub(super) fn note_refreshed(&self, store_id: u64, due: i64) {
        if let Ok(mut m) = self.inner.next_refresh.lock() {
            let e = m.entry(store_id).or_insert(due);
            *e = (*e).min(due);
        }
    }

    fn tick(&self) {
        if !self.inner.hsm.is_up() {
            return;
        }
        self.publish_pending();
        self.destroy_pending_keys();
        let stores = match self.inner.db.all_stores() {
            Ok(s) => s,
            Err(e) => {
                log::error!("scheduler: {e}");
                return;
            }
        };
        let t = now();
        for store in stores {
            if store.ocsp_active && self.next_refresh(store.id).is_none_or(|due| due <= t) {
                match self.refresh_store(&store) {
                    Ok(stats) => {
                        crate::metrics::METRICS.presign(stats.signed, stats.seconds);
                        // A refresh that could not sign everything (the HSM went away) is tried
                        // again soon; what it could not replace keeps being served meanwhile.
                        let due = if stats.failed > 0 {
                            t + 30
                        } else {
                            t + i64::from(store.ocsp_refresh_period) * 3600
                        };
                        if let Ok(mut m) = self.inner.next_refresh.lock() {
                            m.insert(store.id, due);
                        }
                        log::info!(
                            "store {}: {} OCSP responses signed in {:.2} s ({} failed)",
                            store.id,
                            stats.signed,
                            stats.seconds,
                            stats.failed
                        );
                    }
                    Err(e) => log::warn!("store {}: OCSP refresh failed: {e}", store.id),
                }
            }
            if store.crl_active {
                let Ok(issuers) = self.inner.db.issuers_of_store(store.id) else {
                    continue;
                };
                for issuer in issuers.iter().filter(|i| i.not_after > t) {
                    let due = match self.inner.db.crl(issuer.id) {
                        Ok(Some(c)) => c.this_update + (c.next_update - c.this_update) / 2 <= t,
                        Ok(None) => true,
                        Err(_) => false,
                    };
                    if due {
                        if let Err(e) = self.renew_crl(&store, issuer) {
                            log::warn!("issuer {}: CRL renewal failed: {e}", issuer.id);
                        }
                    }
                }
            }
        }
    }
}
