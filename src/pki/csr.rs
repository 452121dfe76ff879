//! Certificate signing requests: parse PEM/DER PKCS#10, verify the proof of possession.
//! INTERFACE SKELETON — the pki helper replaces the bodies.

use super::cert::{Sans, SubjectInfo};
use super::{KeyAlgorithm, PkiError};

/// A parsed CSR whose signature verified.
#[derive(Clone, Debug)]
pub struct Csr {
    /// The subject, attribute by attribute (attributes outside SubjectInfo land in `other`).
    pub subject: SubjectInfo,
    pub spki_der: Vec<u8>,
    pub key_algorithm: KeyAlgorithm,
    /// SANs from the extensionRequest attribute.
    pub sans: Sans,
}

/// Parses a PEM (or base64 DER) PKCS#10 request and verifies its self-signature.
pub fn parse(_pem: &str) -> Result<Csr, PkiError> {
    todo!()
}
