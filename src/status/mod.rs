//! Revocation publishing: CRLs per issuer and pre-signed OCSP responses, kept fresh by a
//! scheduler and re-signed at once when a certificate is revoked.

use crate::store::{CertRecord, SerialRecord, StoreRecord};

/// What the CA tells the publisher; the publisher signs what changed before the CA answers.
#[derive(Clone, Default)]
pub struct Publisher {}

impl Publisher {
    /// A certificate was issued (and stored, when `cert` is set).
    pub fn issued(&self, _store: &StoreRecord, _serial: &SerialRecord, _cert: Option<&CertRecord>) {}

    /// A certificate was revoked: re-sign its OCSP responses and its issuer's CRL.
    pub fn revoked(&self, _store: &StoreRecord, _cert: &CertRecord) {}

    /// A store's settings changed.
    pub fn store_changed(&self, _store: &StoreRecord) {}

    /// A store was deleted: forget everything signed for it.
    pub fn store_deleted(&self, _store: &StoreRecord) {}
}
