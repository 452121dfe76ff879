//! Revocation publishing: a CRL per issuer and OCSP responses signed ahead of time, kept fresh
//! by a scheduler and re-signed at once when a certificate is revoked.
//!
//! The OCSP hot path (`Publisher::ocsp`) reads an in-memory cache only: no HSM, no database.

mod cache;
mod crl;
mod presign;
mod scheduler;

pub use cache::{OcspAnswer, OcspEntry};
pub use presign::RefreshStats;

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use crate::hsm::Hsm;
use crate::pki::ocsp::{self, OcspErrorStatus, RequestedCertId};
use crate::store::{CertRecord, Db, SerialRecord, StoreRecord};

/// What the CA tells about issuance and revocation, and what the API asks about status.
/// Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    hsm: Hsm,
    cache: cache::Cache,
    crl_gates: crl::Gates,
    /// When each store's OCSP responses are next due.
    next_refresh: Mutex<HashMap<u64, i64>>,
    wake: (Mutex<bool>, Condvar),
    /// (when counted, (valid, revoked, expired)).
    cert_counts: Mutex<(i64, (u64, u64, u64))>,
    /// Signing threads during a refresh: a few more than HSM sessions, so that encoding never
    /// leaves a session idle.
    workers: usize,
}

impl Publisher {
    /// Loads the persisted OCSP responses (so a restart serves at once) and returns the
    /// publisher; `start` runs its scheduler.
    pub fn new(db: Db, hsm: Hsm, hsm_sessions: usize) -> Publisher {
        let p = Publisher {
            inner: Arc::new(Inner {
                db,
                hsm,
                cache: cache::Cache::default(),
                crl_gates: crl::Gates::default(),
                next_refresh: Mutex::new(HashMap::new()),
                wake: (Mutex::new(false), Condvar::new()),
                cert_counts: Mutex::new((i64::MIN / 2, (0, 0, 0))),
                workers: hsm_sessions + 2,
            }),
        };
        if let Err(e) = p.load_persisted() {
            log::error!("could not load the persisted OCSP responses: {e}");
        }
        p
    }

    /// Starts the refresh scheduler thread (OCSP per ocspRefreshPeriod, CRL before nextUpdate).
    pub fn start(&self) {
        scheduler::start(self.clone());
    }

    /// A certificate was issued (and stored, when `cert` is set): sign its first OCSP response,
    /// and a first CRL when it is a new issuer.
    pub fn issued(&self, store: &StoreRecord, serial: &SerialRecord, cert: Option<&CertRecord>) {
        if store.ocsp_active && serial.cert_id != Some(serial.issuer_id) {
            if let Err(e) = self.sign_one(store, serial.issuer_id, &serial.serial) {
                log::warn!(
                    "OCSP response for new certificate {} of issuer {} not signed yet: {e}",
                    crate::ca::hex(&serial.serial),
                    serial.issuer_id
                );
            }
        }
        if let Some(c) = cert.filter(|c| c.is_issuer() && store.crl_active) {
            if let Err(e) = self.renew_crl(store, c) {
                log::warn!("first CRL of issuer {} not signed yet: {e}", c.id);
            }
        }
    }

    /// A certificate was revoked: re-sign its OCSP responses and its issuer's CRL before the
    /// revoke call answers.
    pub fn revoked(&self, store: &StoreRecord, cert: &CertRecord) -> Result<(), String> {
        let issuer_id = cert.parent_cert_id.unwrap_or(cert.id);
        self.inner
            .cache
            .forget_variants(store.id, issuer_id, &cert.serial);
        let issuer = self
            .inner
            .db
            .cert(&store.appkey, store.id, issuer_id)
            .map_err(|e| e.to_string())?
            .ok_or("issuer missing")?;
        self.forget_persisted(store, &issuer, &cert.serial)?;
        if store.ocsp_active {
            self.sign_one(store, issuer_id, &cert.serial)
                .map_err(|e| format!("OCSP: {e}"))?;
        }
        if store.crl_active {
            self.renew_crl(store, &issuer)
                .map_err(|e| format!("CRL: {e}"))?;
        }
        Ok(())
    }

    /// A store's settings changed: OCSP turned off forgets its responses; turned on, or a new
    /// period, is picked up by the scheduler at once.
    pub fn store_changed(&self, store: &StoreRecord) {
        if !store.ocsp_active {
            self.inner.cache.drop_store(store.id);
            let _ = self.inner.db.clear_ocsp(store.id);
        }
        self.wake();
    }

    /// A store was deleted: forget everything signed for it.
    pub fn store_deleted(&self, store: &StoreRecord) {
        self.inner.cache.drop_store(store.id);
    }

    /// Answers an OCSP request from the cache when it can (the hot path: no HSM, no database).
    /// `Err` hands back the parsed CertIDs for `ocsp_slow`.
    pub fn ocsp(
        &self,
        appkey: &str,
        store_id: u64,
        request: &[u8],
    ) -> Result<OcspAnswer, Vec<RequestedCertId>> {
        let reqs = match ocsp::parse_request(request) {
            Ok(r) => r,
            Err(e) => return Ok(OcspAnswer::Error(e.status())),
        };
        if reqs.len() == 1 {
            if let Some(e) = self.inner.cache.get(appkey, store_id, &reqs[0].der) {
                return Ok(OcspAnswer::Signed(e));
            }
        } else if reqs.len() <= MAX_CERT_IDS {
            let key: Vec<u8> = reqs.iter().flat_map(|r| r.der.iter().copied()).collect();
            if let Some(e) = self.inner.cache.get(appkey, store_id, &key) {
                return Ok(OcspAnswer::Signed(e));
            }
        } else {
            return Ok(OcspAnswer::Error(OcspErrorStatus::MalformedRequest));
        }
        Err(reqs)
    }

    /// The slow path of `ocsp` (blocking: database, maybe the HSM).
    pub fn ocsp_slow(&self, appkey: &str, store_id: u64, reqs: &[RequestedCertId]) -> OcspAnswer {
        self.sign_on_demand(appkey, store_id, reqs)
    }

    /// Re-signs every OCSP response of a store now (the benchmark and operators use it).
    pub fn refresh_now(&self, store: &StoreRecord) -> Result<RefreshStats, String> {
        let stats = self.refresh_store(store)?;
        crate::metrics::METRICS.presign(stats.signed, stats.seconds);
        if let Ok(mut m) = self.inner.next_refresh.lock() {
            m.insert(
                store.id,
                crate::ca::now() + i64::from(store.ocsp_refresh_period) * 3600,
            );
        }
        Ok(stats)
    }

    /// Gauges computed at scrape time: HSM state, cached responses, certificates by status
    /// (recounted at most once a minute), CRL age per issuer.
    pub fn gauges(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = write!(
            out,
            "# HELP pcad_hsm_up Whether the HSM answers (1) or not (0).\n# TYPE pcad_hsm_up gauge\npcad_hsm_up {}\n\
             # HELP pcad_ocsp_cached_responses Signed OCSP responses held in memory.\n# TYPE pcad_ocsp_cached_responses gauge\npcad_ocsp_cached_responses {}\n",
            u8::from(self.inner.hsm.is_up()),
            self.inner.cache.len()
        );
        let t = crate::ca::now();
        let counts = {
            let mut cached = self
                .inner
                .cert_counts
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if cached.0 + 60 <= t {
                if let Ok(c) = self.inner.db.cert_status_counts(t) {
                    *cached = (t, c);
                }
            }
            cached.1
        };
        let _ = write!(
            out,
            "# HELP pcad_certificates Stored certificates by status.\n# TYPE pcad_certificates gauge\n\
             pcad_certificates{{status=\"VALID\"}} {}\npcad_certificates{{status=\"REVOKED\"}} {}\npcad_certificates{{status=\"EXPIRED\"}} {}\n",
            counts.0, counts.1, counts.2
        );
        out.push_str("# HELP pcad_crl_age_seconds Seconds since the issuer's current CRL was signed.\n# TYPE pcad_crl_age_seconds gauge\n");
        if let Ok(crls) = self.inner.db.all_crls() {
            for c in crls {
                let _ = writeln!(
                    out,
                    "pcad_crl_age_seconds{{issuer=\"{}\"}} {}",
                    c.issuer_id,
                    t - c.this_update
                );
            }
        }
        out
    }

    /// Responses cached in all.
    pub fn cached_responses(&self) -> usize {
        self.inner.cache.len()
    }
}

/// Most CertIDs one request may name.
pub const MAX_CERT_IDS: usize = 16;
