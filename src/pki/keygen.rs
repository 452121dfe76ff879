//! Software keys: leaf keys in GENERATE mode (handed to the caller, never stored), the quickstart's
//! TLS material, and test signers. Never used for issuer keys, which live in the HSM.
//! INTERFACE SKELETON — the pki helper replaces the bodies.

use super::{KeyAlgorithm, PkiError, SignError, SignatureAlgorithm, Signer};

/// A private key made in software.
pub struct SoftKey {
    pub algorithm: KeyAlgorithm,
    pkey: openssl::pkey::PKey<openssl::pkey::Private>,
}

impl SoftKey {
    pub fn generate(_alg: KeyAlgorithm) -> Result<SoftKey, PkiError> {
        todo!()
    }

    /// Reads a PEM private key (PKCS#1, SEC1 or PKCS#8).
    pub fn from_pem(_pem: &[u8]) -> Result<SoftKey, PkiError> {
        todo!()
    }

    pub fn spki_der(&self) -> Vec<u8> {
        todo!()
    }

    /// The traditional DER: PKCS#1 for RSA, SEC1 for EC, PKCS#8 for Ed25519 (which has no other).
    pub fn traditional_der(&self) -> Result<Vec<u8>, PkiError> {
        todo!()
    }

    /// PEM of `traditional_der` (`RSA PRIVATE KEY`, `EC PRIVATE KEY`, `PRIVATE KEY`).
    pub fn traditional_pem(&self) -> Result<String, PkiError> {
        todo!()
    }

    /// `PRIVATE KEY` PKCS#8 PEM.
    pub fn pkcs8_pem(&self) -> Result<String, PkiError> {
        todo!()
    }

    /// A signer over this key.
    pub fn signer(&self, alg: SignatureAlgorithm) -> SoftSigner<'_> {
        SoftSigner { key: self, alg }
    }
}

/// A software key seen as a `Signer`.
pub struct SoftSigner<'a> {
    key: &'a SoftKey,
    alg: SignatureAlgorithm,
}

impl Signer for SoftSigner<'_> {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, SignError> {
        let _ = &self.key.pkey;
        todo!()
    }
}
