//! Revocation publishing: a CRL per issuer and OCSP responses signed ahead of time, kept fresh
//! by a scheduler and re-signed at once when a certificate is revoked.
//!
//! The OCSP hot path (`Publisher::ocsp`) reads an in-memory cache only: no HSM, no database.

mod cache;
mod crl;
mod presign;
mod response;
mod scheduler;
mod sink;

pub use cache::OcspAnswer;
pub use crl::Crl;
pub use presign::RefreshStats;
pub use response::{CachedResponse, OcspEntry};
pub use sink::{CaTagTarget, Signed, Sink};

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use crate::hsm::Hsm;
use crate::pki::ocsp::{self, OcspErrorStatus, RequestedCertId};
use crate::pki::HashAlg;
use crate::store::{CertRecord, Db, SerialRecord, StoreRecord};

/// Why publishing (signing a CRL or an OCSP response) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The HSM cannot sign now; retried when it is back.
    #[error("HSM unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

impl From<crate::pki::PkiError> for StatusError {
    fn from(e: crate::pki::PkiError) -> Self {
        match e {
            crate::pki::PkiError::Sign(crate::pki::SignError::Unavailable(m)) => {
                StatusError::Unavailable(m)
            }
            other => StatusError::Failed(other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for StatusError {
    fn from(e: crate::store::StoreError) -> Self {
        StatusError::Failed(e.to_string())
    }
}

impl From<crate::pki::SignError> for StatusError {
    fn from(e: crate::pki::SignError) -> Self {
        crate::pki::PkiError::Sign(e).into()
    }
}

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
    /// Revocations (appkey, store, certificate) whose publishing failed, to retry.
    pending: Mutex<std::collections::HashSet<(String, u64, u64)>>,
    /// (when counted, (valid, revoked, expired)).
    cert_counts: Mutex<(i64, (u64, u64, u64))>,
    /// Signing threads during a refresh: one per HSM session. More only wait for a session
    /// (SoftHSM P-256: 14.3k/s with 6 threads on 4 sessions, 15.5k/s with 4).
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
                pending: Mutex::new(std::collections::HashSet::new()),
                workers: hsm_sessions.max(1),
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
                    crate::pki::der_util::hex(&serial.serial),
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
    pub fn revoked(&self, store: &StoreRecord, cert: &CertRecord) -> Result<(), StatusError> {
        let issuer_id = cert.parent_cert_id.unwrap_or(cert.id);
        let issuer = self.inner.db.cert(&store.appkey, store.id, issuer_id);
        // The pre-signed CertID of the certificate; none can be cached when the issuer is
        // missing or its certificate unreadable (nothing could have been signed).
        let presigned = match &issuer {
            Ok(Some(i)) => ocsp::issuer_hashes(&i.der, HashAlg::Sha1)
                .map(|(name, key)| {
                    let start = cert.serial.iter().position(|b| *b != 0);
                    let digits = &cert.serial[start.unwrap_or(cert.serial.len())..];
                    ocsp::cert_id_der(HashAlg::Sha1, &name, &key, digits)
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        self.inner
            .cache
            .forget(store.id, issuer_id, &cert.serial, &presigned);
        let issuer = issuer?.ok_or_else(|| StatusError::Failed("issuer missing".into()))?;
        self.forget_persisted(store, &issuer, &cert.serial)?;
        if store.ocsp_active {
            self.sign_one(store, issuer_id, &cert.serial)?;
        }
        if store.crl_active {
            self.renew_crl(store, &issuer)?;
        }
        // The revoke answers once its responses and CRL are published, or after the bound
        // (the publisher keeps retrying: the revocation itself is durable here).
        if let Some(sink) = self.inner.cache.sink.get() {
            if !sink.flush(REVOKE_PUBLISH_BOUND) {
                log::warn!(
                    "revocation of certificate {} not yet published; queued for retry",
                    cert.id
                );
            }
        }
        Ok(())
    }

    /// The OCSP tombstone to write with the revocation of `serial` (issued by `issuer`) at `t`,
    /// in the same durable step (`Db::revoke_with_tombstone`), so that a crash before
    /// `revoked` cannot leave a persisted `good` to be served after the restart.
    pub fn revocation_tombstone(
        &self,
        issuer: &CertRecord,
        serial: &[u8],
        t: i64,
    ) -> Result<crate::store::OcspRow, StatusError> {
        presign::tombstone(issuer, serial, t)
    }

    /// Attaches the sink every signed response and CRL is handed to (once).
    pub fn set_sink(&self, sink: Arc<dyn Sink>) {
        if !self.inner.cache.sink.set(sink) {
            log::warn!("a publish sink was already attached");
        }
    }

    /// Everything current: every cached OCSP response and every stored CRL (for a full
    /// republish). Blocking (database).
    pub fn current_signed(&self) -> Vec<Signed> {
        let mut out: Vec<Signed> = self
            .inner
            .cache
            .all()
            .into_iter()
            .map(|(store_id, appkey, response)| Signed::Ocsp {
                store_id,
                appkey,
                response,
            })
            .collect();
        let db = &self.inner.db;
        for ca in db.all_ncp_cas().unwrap_or_default() {
            if let Some(issuer_id) = ca.cert_id {
                out.push(Signed::CaTag {
                    tag: ca.ca_tag.as_str().into(),
                    target: Some(CaTagTarget {
                        appkey: ca.appkey.as_str().into(),
                        store_id: ca.store_id,
                        issuer_id,
                    }),
                });
            }
        }
        for store in db.all_stores().unwrap_or_default() {
            if !store.ocsp_active {
                // Responses published before OCSP was turned off are not to be served.
                out.push(Signed::OcspOff { store_id: store.id });
            }
            if !store.crl_active {
                continue;
            }
            let appkey: Arc<str> = store.appkey.as_str().into();
            for issuer in db.issuers_of_store(store.id).unwrap_or_default() {
                if let Ok(Some(crl)) = self.crl(store.id, issuer.id) {
                    out.push(Signed::Crl {
                        store_id: store.id,
                        appkey: Arc::clone(&appkey),
                        issuer_id: issuer.id,
                        der: crl.der.into(),
                        this_update: crl.this_update,
                        next_update: crl.next_update,
                    });
                }
            }
        }
        out
    }

    /// Remembers a revocation whose CRL/OCSP could not be signed; the scheduler retries it.
    pub fn retry_revoked(&self, store: &StoreRecord, cert: &CertRecord) {
        if let Ok(mut p) = self.inner.pending.lock() {
            p.insert((store.appkey.clone(), store.id, cert.id));
        }
    }

    /// Publishes the revocations that failed earlier; false while some still fail.
    pub(super) fn publish_pending(&self) {
        let pending: Vec<_> = match self.inner.pending.lock() {
            Ok(p) => p.iter().cloned().collect(),
            Err(_) => return,
        };
        for (appkey, store_id, cert_id) in pending {
            let done = match (
                self.inner.db.store(&appkey, store_id),
                self.inner.db.cert(&appkey, store_id, cert_id),
            ) {
                (Ok(Some(store)), Ok(Some(cert))) => match self.revoked(&store, &cert) {
                    Ok(()) => {
                        log::info!("revocation of certificate {cert_id} published");
                        true
                    }
                    Err(e) => {
                        log::warn!("revocation of certificate {cert_id} still not published: {e}");
                        false
                    }
                },
                // The store or certificate is gone: nothing left to publish.
                (Ok(_), Ok(_)) => true,
                _ => false,
            };
            if done {
                if let Ok(mut p) = self.inner.pending.lock() {
                    p.remove(&(appkey, store_id, cert_id));
                }
            }
        }
    }

    /// Destroys the keys of deleted stores that the HSM could not destroy at the time.
    pub(super) fn destroy_pending_keys(&self) {
        let Ok(pending) = self.inner.db.pending_destroys() else {
            return;
        };
        for p in pending {
            let Some(id) = crate::hsm::KeyId::from_hex(&p.key_id) else {
                continue;
            };
            match self.inner.hsm.destroy_key(&id) {
                Ok(()) => {
                    log::info!("key {} of deleted store {} destroyed", p.key_id, p.store_id);
                    let event = crate::store::AuditEvent {
                        event_id: 0,
                        time: crate::clock::now(),
                        identity: "pcad".into(),
                        appkey: p.appkey.clone(),
                        action: "KEY_DESTROY".into(),
                        ca_store_id: Some(p.store_id),
                        cert_id: Some(p.cert_id),
                        template_id: None,
                        serial_number: None,
                        result: "SUCCESS".into(),
                    };
                    let _ = self.inner.db.append_audit(event);
                    let _ = self.inner.db.remove_pending_destroy(&p.key_id);
                    let _ = self.inner.db.durable();
                }
                Err(e) => log::warn!("key {} still not destroyed: {e}", p.key_id),
            }
        }
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
        self.inner
            .cache
            .sink
            .send(|| Signed::StoreGone { store_id: store.id });
    }

    /// A NAVER Cloud CA was created or activated (`Some` target) or destroyed (`None`): the
    /// responders learn where its `/ext/{caTag}` answers are.
    pub fn ca_tag(&self, tag: &str, target: Option<CaTagTarget>) {
        self.inner.cache.sink.send(|| Signed::CaTag {
            tag: tag.into(),
            target,
        });
    }

    /// Answers an OCSP request from the cache when it can (the hot path: no HSM, no database).
    /// `Err` hands back the parsed CertIDs for `ocsp_slow`.
    pub fn ocsp(
        &self,
        appkey: &str,
        store_id: u64,
        request: &[u8],
    ) -> Result<OcspAnswer, Vec<RequestedCertId>> {
        answer_from(request, |key| self.inner.cache.get(appkey, store_id, key))
    }

    /// The slow path of `ocsp` (blocking: database, maybe the HSM).
    pub fn ocsp_slow(&self, appkey: &str, store_id: u64, reqs: &[RequestedCertId]) -> OcspAnswer {
        self.sign_on_demand(appkey, store_id, reqs)
    }

    /// Re-signs every OCSP response of a store now (the benchmark and operators use it).
    pub fn refresh_now(&self, store: &StoreRecord) -> Result<RefreshStats, StatusError> {
        let stats = self.refresh_store(store)?;
        crate::metrics::METRICS.presign(stats.signed, stats.seconds);
        if let Ok(mut m) = self.inner.next_refresh.lock() {
            m.insert(
                store.id,
                crate::clock::now() + i64::from(store.ocsp_refresh_period) * 3600,
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
        let t = crate::clock::now();
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
        if let Some(sink) = self.inner.cache.sink.get() {
            out.push_str(&sink.gauges());
        }
        out
    }

    /// `/healthz`'s `"publish"` object, when a publisher is attached.
    pub fn publish_health(&self) -> Option<serde_json::Value> {
        self.inner.cache.sink.get().map(|s| s.health())
    }

    /// Responses cached in all.
    pub fn cached_responses(&self) -> usize {
        self.inner.cache.len()
    }
}

/// Most CertIDs one request may name.
pub const MAX_CERT_IDS: usize = 16;

/// How long a revoke waits for its publication before answering (then it is retried).
const REVOKE_PUBLISH_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// Answers an OCSP request from a cache read by `get` (CertID DER, or several concatenated →
/// response), as the appliance and the responders do. `Err` hands back the parsed CertIDs of a
/// request the cache cannot answer.
pub fn answer_from(
    request: &[u8],
    get: impl Fn(&[u8]) -> Option<Arc<CachedResponse>>,
) -> Result<OcspAnswer, Vec<RequestedCertId>> {
    // The common request (one CertID, as pre-signed) needs no decoding: its CertID bytes
    // are the cache key. Anything else, or a miss, takes the full parse below.
    if let Some(cert_id) = ocsp::single_cert_id(request) {
        if let Some(e) = get(cert_id) {
            return Ok(OcspAnswer::Signed(e));
        }
    }
    let reqs = match ocsp::parse_request(request) {
        Ok(r) => r,
        Err(e) => return Ok(OcspAnswer::Error(e.status())),
    };
    if reqs.len() > MAX_CERT_IDS {
        return Ok(OcspAnswer::Error(OcspErrorStatus::MalformedRequest));
    }
    if let Some(e) = get(&cache_key(&reqs)) {
        return Ok(OcspAnswer::Signed(e));
    }
    Err(reqs)
}

/// The cache key of parsed CertIDs: the one CertID's DER, or their concatenation.
pub fn cache_key(reqs: &[RequestedCertId]) -> Vec<u8> {
    reqs.iter().flat_map(|r| r.der.iter().copied()).collect()
}
