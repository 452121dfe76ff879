//! Signing OCSP responses: a whole store per refresh period (in parallel across the HSM
//! sessions), one certificate at issuance or revocation, and uncommon CertID forms on demand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::cache::OcspAnswer;
use super::response::OcspEntry;
use super::{Publisher, StatusError};
use crate::clock::now;
use crate::pki::ocsp::{self, CertStatus, OcspErrorStatus, RequestedCertId, SingleStatus};
use crate::pki::{HashAlg, Signer};
use crate::store::{CertRecord, OcspRow, OcspRowRef, OcspSetChunks, SerialRecord, StoreRecord};

/// What a refresh did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RefreshStats {
    pub signed: usize,
    pub failed: usize,
    pub seconds: f64,
}

/// An issuer as a responder: its key and the hashes requests name it by.
struct Responder {
    cert: CertRecord,
    key_hash: Vec<u8>,
    name_hash_sha1: Vec<u8>,
}

impl Responder {
    fn new(cert: CertRecord) -> Result<Responder, StatusError> {
        let (name_hash_sha1, key_hash) = ocsp::issuer_hashes(&cert.der, HashAlg::Sha1)?;
        Ok(Responder {
            cert,
            key_hash,
            name_hash_sha1,
        })
    }

    fn canonical_cert_id(&self, serial: &[u8]) -> Vec<u8> {
        ocsp::cert_id_der(
            HashAlg::Sha1,
            &self.name_hash_sha1,
            &self.key_hash,
            minimal(serial),
        )
    }
}

/// Signs with the issuer's HSM key and wraps the response into a cache entry.
fn sign_entry(
    responder: &Responder,
    signer: &dyn Signer,
    singles: &[SingleStatus],
    refresh_at: i64,
    generation: u64,
) -> Result<OcspEntry, StatusError> {
    let this_update = singles.first().map(|s| s.this_update).unwrap_or_else(now);
    let data = ocsp::response_data_der(&responder.key_hash, this_update, singles)?;
    let sig = signer.sign(&data)?;
    let der = ocsp::assemble(&data, signer.algorithm(), &sig)?;
    let next_update = singles
        .first()
        .map(|s| s.next_update)
        .unwrap_or(this_update);
    Ok(OcspEntry::new(
        der,
        this_update,
        next_update,
        refresh_at,
        responder.cert.id,
        generation,
    ))
}

fn status_of(s: &SerialRecord) -> CertStatus {
    match s.revocation {
        Some(r) => CertStatus::Revoked {
            at: r.at,
            reason: r.reason,
        },
        None => CertStatus::Good,
    }
}

fn minimal(serial: &[u8]) -> &[u8] {
    let start = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    &serial[start..]
}

fn period(store: &StoreRecord) -> i64 {
    i64::from(store.ocsp_refresh_period) * 3600
}

impl Publisher {
    /// Signs a fresh response for every unexpired certificate of every issuer of `store`, in
    /// parallel, and swaps the set in at once; then persists it so a restart serves at once.
    pub(crate) fn refresh_store(&self, store: &StoreRecord) -> Result<RefreshStats, StatusError> {
        let started = std::time::Instant::now();
        let db = &self.inner.db;
        let generation = self.inner.cache.next_generation();
        // The caller read `store` earlier; OCSP may have been turned off (or the store deleted)
        // since. Read after the generation is drawn, a switch-off either shows here or drops
        // the store at a later generation, which `swap_in` respects.
        match db.store(&store.appkey, store.id)? {
            Some(s) if s.ocsp_active => {}
            _ => return Ok(RefreshStats::default()),
        }
        let t = now();
        let next_update = t + 2 * period(store);
        let refresh_at = t + period(store);
        let issuers: Vec<CertRecord> = db
            .issuers_of_store(store.id)?
            .into_iter()
            .filter(|c| c.not_after > t)
            .collect();
        let mut jobs: Vec<(usize, SerialRecord)> = Vec::new();
        let mut responders = Vec::new();
        for (i, issuer) in issuers.into_iter().enumerate() {
            for s in db.serials_of_issuer(issuer.id) {
                let s = s?;
                if s.not_after > t && s.cert_id != Some(issuer.id) {
                    jobs.push((i, s));
                }
            }
            responders.push(Responder::new(issuer)?);
        }
        let signers: Vec<_> = responders
            .iter()
            .map(|r| self.signer_of(&r.cert))
            .collect::<Result<_, _>>()?;

        let next = AtomicUsize::new(0);
        let failed = AtomicUsize::new(0);
        let out: Mutex<Vec<(Vec<u8>, OcspEntry)>> = Mutex::new(Vec::with_capacity(jobs.len()));
        let packed = Mutex::new(OcspSetChunks::default());
        let workers = self.inner.workers.min(jobs.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    let mut local = Vec::new();
                    let mut chunks = OcspSetChunks::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((ri, s)) = jobs.get(i) else { break };
                        let r = &responders[*ri];
                        let cert_id = r.canonical_cert_id(&s.serial);
                        let single = SingleStatus {
                            cert_id_der: cert_id.clone(),
                            status: status_of(s),
                            this_update: t,
                            next_update,
                        };
                        match sign_entry(r, &signers[*ri], &[single], refresh_at, generation) {
                            Ok(e) => {
                                chunks.push(OcspRowRef {
                                    issuer_id: e.issuer_id,
                                    serial: &s.serial,
                                    cert_id_der: &cert_id,
                                    this_update: e.this_update,
                                    next_update: e.next_update,
                                    der: &e.der,
                                });
                                local.push((cert_id, e));
                            }
                            Err(e) => {
                                if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                    log::warn!("OCSP pre-signing for store {}: {e}", store.id);
                                }
                            }
                        }
                    }
                    out.lock().unwrap_or_else(|p| p.into_inner()).extend(local);
                    packed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .append(chunks);
                });
            }
        });
        let fresh = out.into_inner().unwrap_or_else(|p| p.into_inner());
        let packed = packed.into_inner().unwrap_or_else(|p| p.into_inner());
        let signed = fresh.len();
        let complete = failed.load(Ordering::Relaxed) == 0;
        let ids: Vec<u64> = responders.iter().map(|r| r.cert.id).collect();
        if self
            .inner
            .cache
            .swap_in(&store.appkey, store.id, &ids, generation, fresh, complete)
        {
            db.put_ocsp_set(store.id, db.next_id()?, packed, t, complete)?;
        }
        Ok(RefreshStats {
            signed,
            failed: failed.into_inner(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Signs (again) the canonical response of one certificate: at issuance and on revoke.
    pub(crate) fn sign_one(
        &self,
        store: &StoreRecord,
        issuer_id: u64,
        serial: &[u8],
    ) -> Result<(), StatusError> {
        let db = &self.inner.db;
        let generation = self.inner.cache.next_generation();
        let s = db
            .serial(issuer_id, serial)?
            .ok_or_else(|| StatusError::Failed("unknown serial".into()))?;
        let issuer = db
            .cert(&store.appkey, store.id, issuer_id)?
            .ok_or_else(|| StatusError::Failed("unknown issuer".into()))?;
        let r = Responder::new(issuer)?;
        let signer = self.signer_of(&r.cert)?;
        let t = now();
        let cert_id = r.canonical_cert_id(serial);
        let single = SingleStatus {
            cert_id_der: cert_id.clone(),
            status: status_of(&s),
            this_update: t,
            next_update: t + 2 * period(store),
        };
        let e = sign_entry(
            &r,
            &signer,
            &[single],
            self.refresh_at(store, t),
            generation,
        )?;
        let row = OcspRow {
            issuer_id,
            serial: serial.to_vec(),
            cert_id_der: cert_id.clone(),
            this_update: e.this_update,
            next_update: e.next_update,
            der: e.der.to_vec(),
        };
        self.inner.cache.put(&store.appkey, store.id, cert_id, e);
        Ok(db.put_ocsp(store.id, &row)?)
    }

    /// Marks every persisted response of a certificate as outdated (a tombstone dated now), so
    /// that a restart never serves one signed before its revocation.
    pub(crate) fn forget_persisted(
        &self,
        store: &StoreRecord,
        issuer: &CertRecord,
        serial: &[u8],
    ) -> Result<(), StatusError> {
        let row = tombstone(issuer, serial, now())?;
        Ok(self.inner.db.put_ocsp(store.id, &row)?)
    }

    /// The slow path: a CertID form not pre-signed (SHA-256/384/512, absent NULL parameters) or
    /// several CertIDs in one request. Signs only for certificates this store issued.
    pub(crate) fn sign_on_demand(
        &self,
        appkey: &str,
        store_id: u64,
        reqs: &[RequestedCertId],
    ) -> OcspAnswer {
        let unauthorized = OcspAnswer::Error(OcspErrorStatus::Unauthorized);
        let db = &self.inner.db;
        let store = match db.store(appkey, store_id) {
            Ok(Some(s)) if s.ocsp_active => s,
            Ok(_) => return unauthorized,
            Err(_) => return OcspAnswer::Error(OcspErrorStatus::InternalError),
        };
        let Ok(issuers) = db.issuers_of_store(store.id) else {
            return OcspAnswer::Error(OcspErrorStatus::InternalError);
        };
        let generation = self.inner.cache.next_generation();
        let mut responder: Option<&CertRecord> = None;
        let mut singles = Vec::with_capacity(reqs.len());
        let t = now();
        for req in reqs {
            let Some(issuer) = issuers.iter().find(|i| {
                ocsp::issuer_hashes(&i.der, req.key.hash)
                    .map(|(n, k)| n == req.key.issuer_name_hash && k == req.key.issuer_key_hash)
                    .unwrap_or(false)
            }) else {
                return unauthorized;
            };
            if responder.is_some_and(|r| r.id != issuer.id) {
                // One response has one signer: CertIDs of different issuers cannot share it.
                return unauthorized;
            }
            responder = Some(issuer);
            let s = match db.serial(issuer.id, &req.key.serial) {
                Ok(Some(s)) if s.cert_id != Some(issuer.id) => s,
                Ok(_) => return unauthorized,
                Err(_) => return OcspAnswer::Error(OcspErrorStatus::InternalError),
            };
            singles.push(SingleStatus {
                cert_id_der: req.der.clone(),
                status: status_of(&s),
                this_update: t,
                next_update: t + 2 * period(&store),
            });
        }
        let Some(issuer) = responder else {
            return unauthorized;
        };
        if !self.inner.hsm.is_up() {
            return OcspAnswer::Error(OcspErrorStatus::TryLater);
        }
        let Ok(r) = Responder::new(issuer.clone()) else {
            return OcspAnswer::Error(OcspErrorStatus::InternalError);
        };
        let Ok(signer) = self.signer_of(&r.cert) else {
            return OcspAnswer::Error(OcspErrorStatus::InternalError);
        };
        match sign_entry(
            &r,
            &signer,
            &singles,
            self.refresh_at(&store, t),
            generation,
        ) {
            Ok(e) => {
                let key: Vec<u8> = reqs.iter().flat_map(|r| r.der.iter().copied()).collect();
                self.inner
                    .cache
                    .put(&store.appkey, store.id, key.clone(), e);
                match self.inner.cache.get(&store.appkey, store.id, &key) {
                    Some(e) => OcspAnswer::Signed(e),
                    None => OcspAnswer::Error(OcspErrorStatus::InternalError),
                }
            }
            Err(e) => {
                log::warn!("OCSP on-demand signing for store {}: {e}", store.id);
                OcspAnswer::Error(OcspErrorStatus::TryLater)
            }
        }
    }

    /// The next scheduled refresh of a store's responses.
    fn refresh_at(&self, store: &StoreRecord, t: i64) -> i64 {
        self.next_refresh(store.id).unwrap_or(t + period(store))
    }

    pub(super) fn signer_of(
        &self,
        issuer: &CertRecord,
    ) -> Result<crate::hsm::HsmSigner, StatusError> {
        let key = issuer
            .issuer_key
            .as_ref()
            .ok_or_else(|| StatusError::Failed("not an issuer".into()))?;
        let id = crate::hsm::KeyId::from_hex(&key.key_id)
            .ok_or_else(|| StatusError::Failed("bad key id".into()))?;
        Ok(self.inner.hsm.signer(id, key.signature_algorithm))
    }

    /// Loads every persisted response whose nextUpdate is still ahead.
    pub(super) fn load_persisted(&self) -> Result<(), StatusError> {
        let t = now();
        let db = &self.inner.db;
        for store in db.all_stores()? {
            if !store.ocsp_active {
                continue;
            }
            // Sets (oldest first), then rows: per CertID the newest wins, a row wins a tie.
            for row in db.ocsp_of_store(store.id) {
                let row = row?;
                let cache = &self.inner.cache;
                let newer = cache
                    .get(&store.appkey, store.id, &row.cert_id_der)
                    .is_some_and(|e| e.this_update > row.this_update);
                if newer {
                    continue;
                }
                if row.der.is_empty() || row.next_update <= t {
                    // A tombstone (or an expired answer): nothing older may be served.
                    cache.forget(store.id, row.issuer_id, &row.serial, &row.cert_id_der);
                    continue;
                }
                let e = OcspEntry::new(
                    row.der,
                    row.this_update,
                    row.next_update,
                    row.this_update + period(&store),
                    row.issuer_id,
                    0,
                );
                self.note_refreshed(store.id, row.this_update + period(&store));
                cache.put(&store.appkey, store.id, row.cert_id_der, e);
            }
        }
        Ok(())
    }
}

/// The persisted-OCSP tombstone of an issuer's serial written at `t`: no persisted response
/// older than it is served after a restart.
pub(super) fn tombstone(
    issuer: &CertRecord,
    serial: &[u8],
    t: i64,
) -> Result<OcspRow, StatusError> {
    let r = Responder::new(issuer.clone())?;
    Ok(OcspRow {
        issuer_id: issuer.id,
        serial: serial.to_vec(),
        cert_id_der: r.canonical_cert_id(serial),
        this_update: t,
        next_update: t,
        der: Vec::new(),
    })
}
