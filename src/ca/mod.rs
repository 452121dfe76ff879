//! The CA domain: stores, issuer certificates, templates, leaf issuance and revocation, with
//! every rule of the seed that needs the database. Functions block (HSM and durable writes):
//! the API calls them on blocking threads.

mod audit;
mod crl;
mod issuer;
mod leaf;
mod ncp;
mod ncp_view;
mod store;
mod template;
mod view;

pub use crate::pki::profile::TemplateSpec;
pub use audit::{Actor, Target};
pub use issuer::{IssuerParams, Validity};
pub use leaf::{IssuedLeaf, LeafKey, LeafMode, LeafParams};
pub use ncp::{
    now_ms as ncp_now_ms, start_destroy_scheduler as start_ncp_destroy_scheduler, NcpCaParams,
    NcpCaType, NcpLeaf, NcpStatus, NCP_STORE_NAME,
};
pub use ncp_view::{NcpCa, NcpCaCert};
pub use store::StoreParams;
pub use view::{
    AuditEvent, AuditQuery, CertKind, CertScope, Certificate, EabToken, Page, Revoked, Signing,
    Store, Template,
};

use std::sync::Arc;

use crate::clock::now;
use crate::hsm::{Hsm, HsmError, KeyId};
use crate::pki::{PkiError, SignError};
use crate::status::Publisher;
use crate::store::{CertRecord, Db, StoreError, StoreRecord};

/// Why a CA operation was refused or failed. The API maps each kind to one HTTP status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// No such object under this appkey (404).
    #[error("{0}")]
    NotFound(String),
    /// A field breaks a rule (400); the message names the field and the rule.
    #[error("{0}")]
    Invalid(String),
    /// A CSR that doesn't parse or verify, or that the template forbids (400).
    #[error("{0}")]
    Csr(String),
    /// The state forbids it (409).
    #[error("{0}")]
    Conflict(String),
    /// The HSM cannot be reached now; nothing was done (503).
    #[error("HSM unavailable: {0}")]
    HsmUnavailable(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for CaError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => CaError::Conflict(m),
            StoreError::NotFound => CaError::NotFound("not found".into()),
            other => CaError::Internal(other.to_string()),
        }
    }
}

impl From<HsmError> for CaError {
    fn from(e: HsmError) -> Self {
        match e {
            HsmError::Unavailable(m) => CaError::HsmUnavailable(m),
            HsmError::PinRejected => CaError::HsmUnavailable(
                "the token refused the PIN; fix hsm.pin_file (or the hsm-pin credential) and restart pcad".into(),
            ),
            other => CaError::Internal(other.to_string()),
        }
    }
}

impl From<crate::status::StatusError> for CaError {
    fn from(e: crate::status::StatusError) -> Self {
        match e {
            crate::status::StatusError::Unavailable(m) => CaError::HsmUnavailable(m),
            other => CaError::Internal(other.to_string()),
        }
    }
}

impl From<PkiError> for CaError {
    fn from(e: PkiError) -> Self {
        match e {
            PkiError::Sign(SignError::Unavailable(m)) => CaError::HsmUnavailable(m),
            PkiError::Invalid(m) => CaError::Invalid(m),
            other => CaError::Internal(other.to_string()),
        }
    }
}

/// The CA: database, HSM, and the revocation publisher it tells about issuance and revocation.
#[derive(Clone)]
pub struct Ca {
    pub db: Db,
    pub hsm: Hsm,
    /// Base of the CRL and OCSP URLs written into certificates.
    pub base_url: Arc<str>,
    pub publisher: Publisher,
}

impl Ca {
    pub fn new(db: Db, hsm: Hsm, base_url: &str, publisher: Publisher) -> Ca {
        Ca {
            db,
            hsm,
            base_url: base_url.into(),
            publisher,
        }
    }

    /// The stored record of store `id` of `appkey`, or 404.
    pub(crate) fn store(&self, appkey: &str, id: u64) -> Result<StoreRecord, CaError> {
        self.db
            .store(appkey, id)?
            .ok_or_else(|| CaError::NotFound(format!("caStoreId: no store {id}")))
    }

    /// The stored record of certificate `id` of a store, or 404.
    pub(crate) fn cert(&self, appkey: &str, store_id: u64, id: u64) -> Result<CertRecord, CaError> {
        self.store(appkey, store_id)?;
        self.db.cert(appkey, store_id, id)?.ok_or_else(|| {
            CaError::NotFound(format!("certId: no certificate {id} in store {store_id}"))
        })
    }

    /// The issuers above `cert`: its issuer first, up to and including the root.
    pub(crate) fn chain(&self, cert: &CertRecord) -> Result<Vec<CertRecord>, CaError> {
        let mut chain = Vec::new();
        let mut next = cert.parent_cert_id;
        while let Some(id) = next {
            if chain.len() > 8 {
                return Err(CaError::Internal("certificate chain loops".into()));
            }
            let parent = self
                .db
                .cert(&cert.appkey, cert.store_id, id)?
                .ok_or_else(|| {
                    CaError::Internal(format!("issuer {id} of {} is missing", cert.id))
                })?;
            next = parent.parent_cert_id;
            chain.push(parent);
        }
        Ok(chain)
    }

    pub(crate) fn crl_url(&self, store: &StoreRecord, issuer_id: u64) -> Option<String> {
        if let Some(urls) = self.ncp_urls(issuer_id) {
            return urls.0;
        }
        store.crl_active.then(|| {
            format!(
                "{}/v2.0/appkeys/{}/ca-stores/{}/certs/{}/crl/der",
                self.base_url,
                url_segment(&store.appkey),
                store.id,
                issuer_id
            )
        })
    }

    pub(crate) fn ocsp_url(&self, store: &StoreRecord, issuer_id: u64) -> Option<String> {
        if let Some(urls) = self.ncp_urls(issuer_id) {
            return urls.1;
        }
        store.ocsp_active.then(|| {
            format!(
                "{}/v2.0/appkeys/{}/ca-stores/{}/ocsp",
                self.base_url,
                url_segment(&store.appkey),
                store.id
            )
        })
    }

    /// The HSM key of an issuer certificate.
    pub(crate) fn issuer_signer(
        &self,
        issuer: &CertRecord,
    ) -> Result<crate::hsm::HsmSigner, CaError> {
        let key = issuer.issuer_key.as_ref().ok_or_else(|| {
            CaError::Invalid(format!("certificate {} is not an issuer", issuer.id))
        })?;
        let id = KeyId::from_hex(&key.key_id)
            .ok_or_else(|| CaError::Internal(format!("issuer {} has a bad key id", issuer.id)))?;
        Ok(self.hsm.signer(id, key.signature_algorithm))
    }
}

/// A random positive serial of 16 octets (≥ 64 bits of entropy, CA/Browser Forum practice).
pub(crate) fn random_serial() -> Vec<u8> {
    let mut s: [u8; 16] = rand::random();
    s[0] &= 0x7f;
    if s[0] == 0 {
        s[0] = 0x01;
    }
    s.to_vec()
}

/// Appkeys are path segments; keep them URL-safe in the URLs we write.
fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
