//! Everything PKCS#11: loading the module, logging in, a bounded session pool, generating issuer
//! keys inside the token, signing, destroying keys, and recovering when the device goes away.
//!
//! Every function here blocks: callers run them on blocking threads (`spawn_blocking`).
//! INTERFACE SKELETON — the hsm helper replaces the bodies.

use crate::config::{HsmConfig, Pin};
use crate::pki::{KeyAlgorithm, SignError, SignatureAlgorithm, Signer};

/// Why an HSM operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The device or token is not reachable now (transient: retry after recovery).
    #[error("HSM unavailable: {0}")]
    Unavailable(String),
    /// The PIN was refused; never retried automatically (tokens lock after a few failures).
    #[error("HSM login refused: wrong PIN or locked token")]
    PinRejected,
    /// No token with the configured label.
    #[error("no token labelled {0:?}")]
    TokenNotFound(String),
    /// No key with this CKA_ID in the token.
    #[error("key {0} not found in the HSM")]
    KeyNotFound(String),
    /// Any other (permanent) PKCS#11 failure.
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
}

impl HsmError {
    /// Whether the failure may go away by itself (device back, sessions reopened).
    pub fn is_transient(&self) -> bool {
        matches!(self, HsmError::Unavailable(_))
    }
}

/// The random `CKA_ID` that names an issuer key pair in the token (stored with its certificate).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(pub Vec<u8>);

impl KeyId {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<KeyId> {
        if s.len() % 2 != 0 {
            return None;
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()
            .map(KeyId)
    }
}

/// A key pair just generated in the token.
#[derive(Clone, Debug)]
pub struct GeneratedKey {
    pub id: KeyId,
    /// DER SubjectPublicKeyInfo of the public key.
    pub spki_der: Vec<u8>,
}

/// A handle on the HSM: cheap to clone, shared by every task.
#[derive(Clone)]
pub struct Hsm {
    _inner: std::sync::Arc<()>,
}

impl Hsm {
    /// Loads the module, finds the token by label, logs in and opens the session pool.
    pub fn open(_config: &HsmConfig, _pin: Pin) -> Result<Hsm, HsmError> {
        todo!()
    }

    /// Generates a key pair inside the token: private key token object, private, sensitive,
    /// never extractable, sign only; labelled `label`, named by a fresh random CKA_ID.
    pub fn generate_key(&self, _alg: KeyAlgorithm, _label: &str) -> Result<GeneratedKey, HsmError> {
        todo!()
    }

    /// Signs `message` with the private key `id` (see `pki::Signer::sign` for the output form).
    pub fn sign(
        &self,
        _id: &KeyId,
        _alg: SignatureAlgorithm,
        _message: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        todo!()
    }

    /// Destroys both halves of the key pair `id`; a key already gone is not an error.
    pub fn destroy_key(&self, _id: &KeyId) -> Result<(), HsmError> {
        todo!()
    }

    /// Whether the HSM answered its last call (for `/healthz` and the 503 fast path).
    pub fn is_up(&self) -> bool {
        todo!()
    }

    /// A `pki::Signer` for key `id` with signature algorithm `alg`.
    pub fn signer(&self, id: KeyId, alg: SignatureAlgorithm) -> HsmSigner {
        HsmSigner {
            hsm: self.clone(),
            id,
            alg,
        }
    }
}

/// An issuer key in the HSM, seen as a `pki::Signer`.
pub struct HsmSigner {
    hsm: Hsm,
    id: KeyId,
    alg: SignatureAlgorithm,
}

impl Signer for HsmSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.hsm.sign(&self.id, self.alg, message).map_err(|e| {
            if e.is_transient() {
                SignError::Unavailable(e.to_string())
            } else {
                SignError::Failed(e.to_string())
            }
        })
    }
}
