//! CRLs: renewed per issuer at revocation, on request, and before nextUpdate. Renewals of one
//! issuer are coalesced: a caller waits for a build that began after its revocation was written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Publisher, StatusError};
use crate::clock::now;
use crate::pki::crl::{CrlBuilder, CrlParams};
use crate::store::{CertRecord, CrlRecord, StoreRecord};

/// An issuer's current CRL, as served.
#[derive(Clone, Debug)]
pub struct Crl {
    pub der: Vec<u8>,
    /// Unix seconds.
    pub this_update: i64,
    pub next_update: i64,
}

/// Per-issuer gate: tickets drawn after a change; a build covers every ticket drawn before it
/// started.
#[derive(Default)]
pub(super) struct Gates {
    gates: Mutex<HashMap<u64, Arc<Gate>>>,
}

#[derive(Default)]
struct Gate {
    next_ticket: AtomicU64,
    /// Every ticket up to this one is covered by a stored CRL.
    covered: Mutex<u64>,
}

impl Gates {
    fn gate(&self, issuer_id: u64) -> Arc<Gate> {
        let mut g = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(g.entry(issuer_id).or_default())
    }
}

impl Publisher {
    /// Signs a new CRL for `issuer` (unless one that covers this call is being or was just
    /// built) and stores it durably. Returns the issuer's current CRL record.
    pub fn renew_crl(
        &self,
        store: &StoreRecord,
        issuer: &CertRecord,
    ) -> Result<CrlRecord, StatusError> {
        let db = &self.inner.db;
        let gate = self.inner.crl_gates.gate(issuer.id);
        let ticket = gate.next_ticket.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = gate.covered.lock().unwrap_or_else(|p| p.into_inner());
        if *covered >= ticket {
            if let Some(rec) = db.crl(issuer.id)? {
                return Ok(rec);
            }
        }
        let covers = gate.next_ticket.load(Ordering::SeqCst);
        let previous = db.crl(issuer.id)?;
        // A revoked certificate stays listed on at least one CRL issued after it expired.
        let keep_after = previous.as_ref().map(|p| p.this_update).unwrap_or(i64::MIN);
        let number = db.next_crl_number(issuer.id)?;
        let this_update = now();
        // An NCP CA may set its own cycle (Update CRL Config); otherwise the store's.
        let days = db
            .ncp_crl_days(issuer.id)?
            .unwrap_or(store.crl_refresh_period);
        let next_update = this_update + i64::from(days) * 86_400;
        let signer = self.signer_of(issuer)?;
        // Entries are encoded straight from the index into the CRL's buffer: a million-entry
        // list never exists as a list of values besides its DER.
        let mut builder = CrlBuilder::new(
            &CrlParams {
                issuer_cert: &issuer.der,
                number,
                this_update,
                next_update,
                entries: &[],
            },
            &signer,
            0,
        )?;
        for row in db.revoked_of_issuer(issuer.id) {
            let row = row?;
            if row.not_after >= keep_after {
                builder.push(&row.serial, row.revocation.at, row.revocation.reason)?;
            }
        }
        let der = builder.sign(&signer)?;
        let rec = CrlRecord {
            issuer_id: issuer.id,
            number,
            this_update,
            next_update,
        };
        db.put_crl(store.id, &rec, &der)?;
        db.durable()?;
        *covered = covers;
        self.inner.cache.sink.send(|| super::Signed::Crl {
            store_id: store.id,
            appkey: store.appkey.as_str().into(),
            issuer_id: issuer.id,
            der: der.into(),
            this_update,
            next_update,
        });
        Ok(rec)
    }

    /// The current CRL of an issuer.
    pub fn crl(&self, store_id: u64, issuer_id: u64) -> Result<Option<Crl>, StatusError> {
        let db = &self.inner.db;
        let Some(rec) = db.crl(issuer_id)? else {
            return Ok(None);
        };
        Ok(db.crl_der(store_id, issuer_id)?.map(|der| Crl {
            der,
            this_update: rec.this_update,
            next_update: rec.next_update,
        }))
    }
}
