//! CRLs on request: the current CRL of an issuer (signed now if it has none yet) and a renewal
//! ordered through the API.

use super::{Actor, Ca, CaError, Target};
use crate::pki::Signer;
use crate::status::Crl;
use crate::store::{CertRecord, StoreRecord};

impl Ca {
    /// The current CRL of issuer `issuer_id` of a store; the first request before the
    /// scheduler's first pass signs it now.
    pub fn current_crl(&self, appkey: &str, store_id: u64, issuer_id: u64) -> Result<Crl, CaError> {
        let (store, issuer) = self.crl_issuer(appkey, store_id, issuer_id)?;
        if let Some(found) = self.publisher.crl(store.id, issuer.id)? {
            return Ok(found);
        }
        if !self.hsm.is_up() {
            return Err(CaError::HsmUnavailable("no CRL has been signed yet".into()));
        }
        self.publisher.renew_crl(&store, &issuer)?;
        self.publisher
            .crl(store.id, issuer.id)?
            .ok_or_else(|| CaError::Internal("CRL vanished".into()))
    }

    /// Signs a fresh CRL of issuer `issuer_id` now.
    pub fn renew_crl(&self, who: &Actor, store_id: u64, issuer_id: u64) -> Result<(), CaError> {
        let (store, issuer) = self.crl_issuer(&who.appkey, store_id, issuer_id)?;
        // CRL numbers are reserved before signing; prove the key signs first, so that a dead
        // HSM answers 503 without using a number up.
        self.issuer_signer(&issuer)?
            .sign(b"pcad CRL renewal probe")
            .map_err(|e| CaError::from(crate::pki::PkiError::Sign(e)))?;
        self.publisher.renew_crl(&store, &issuer)?;
        let target = Target {
            store: Some(store.id),
            cert: Some(issuer.id),
            ..Default::default()
        };
        self.audit(who, "CRL_RENEW", target, "SUCCESS")?;
        self.db.durable()?;
        Ok(())
    }

    /// The store and issuer of a CRL route, when its CRL may be served.
    fn crl_issuer(
        &self,
        appkey: &str,
        store_id: u64,
        issuer_id: u64,
    ) -> Result<(StoreRecord, CertRecord), CaError> {
        let store = self.store(appkey, store_id)?;
        if !store.crl_active {
            return Err(CaError::NotFound(format!(
                "CRL is disabled for store {store_id} (crlActive is false)"
            )));
        }
        let issuer = self.cert(appkey, store_id, issuer_id)?;
        if !issuer.is_issuer() {
            return Err(CaError::NotFound(format!(
                "issuerCertId: certificate {issuer_id} is a LEAF and has no CRL"
            )));
        }
        Ok((store, issuer))
    }
}
