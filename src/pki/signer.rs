//! The one thing `pki` needs from a key: a signature. The HSM implements it for issuer keys;
//! software keys implement it for tests and for the quickstart's TLS material.

use super::alg::SignatureAlgorithm;

/// Why a signature could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key's device is not reachable now; the caller may retry later.
    #[error("HSM unavailable: {0}")]
    Unavailable(String),
    /// The device refused or failed for another reason.
    #[error("signing failed: {0}")]
    Failed(String),
}

/// A private key that signs, wherever it lives.
pub trait Signer: Send + Sync {
    /// The algorithm every signature of this signer is made with.
    fn algorithm(&self) -> SignatureAlgorithm;

    /// Signs `message` (the DER of a TBSCertificate, TBSCertList or ResponseData) and returns the
    /// signature value as X.509 carries it in its BIT STRING: PKCS#1 v1.5 bytes for RSA, a DER
    /// `Ecdsa-Sig-Value` for ECDSA, the 64 raw bytes for Ed25519.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}
