//! X.509 v2 CRLs: assembled from a TbsCertList (x509-cert has the types, no builder) and signed
//! through `Signer`.
//! INTERFACE SKELETON — the status helper replaces the bodies.

use serde::{Deserialize, Serialize};

use super::{PkiError, Signer};

/// RFC 5280 CRLReason values the API accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// The CRLReason enumeration value.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::PrivilegeWithdrawn => 9,
        }
    }
}

/// One revoked certificate on a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Positive big-endian serial.
    pub serial: Vec<u8>,
    /// Unix seconds.
    pub revoked_at: i64,
    pub reason: RevocationReason,
}

/// Everything one CRL says.
pub struct CrlParams<'a> {
    /// DER of the issuing CA's certificate (issuer name and AKI come from it).
    pub issuer_cert: &'a [u8],
    pub number: u64,
    pub this_update: i64,
    pub next_update: i64,
    pub entries: &'a [RevokedEntry],
}

/// Builds and signs a CRL; returns its DER.
pub fn build(_params: &CrlParams<'_>, _signer: &dyn Signer) -> Result<Vec<u8>, PkiError> {
    todo!()
}
