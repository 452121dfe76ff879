//! Everything PKCS#11: loading the module, logging in, a bounded session pool, generating issuer
//! keys inside the token, signing, destroying keys, and recovering when the device goes away.
//!
//! Every function here blocks: callers run them on blocking threads (`spawn_blocking`).
//!
//! Layout: `library` initialises each module once per process, `device` is one logged-in
//! generation of a token (its session `pool` and key-handle cache), `keys` holds the PKCS#11
//! templates, mechanisms and DER encodings, `recovery` marks the HSM down on transient errors
//! and brings it back in a background thread, `error` classifies every `CKR_*`.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{HsmConfig, Pin};
use crate::pki::{KeyAlgorithm, KeyFamily, SignError, SignatureAlgorithm, Signer};

mod device;
mod error;
mod keys;
mod library;
mod pool;
mod recovery;

use device::Device;
use error::Fail;
use recovery::Shared;

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
    /// The signature algorithm does not fit the key (e.g. ECDSA asked of an RSA key); a caller
    /// bug, refused before the token is asked.
    #[error("signature algorithm {alg} does not fit key {key} ({family:?})")]
    WrongAlgorithm {
        /// Hex CKA_ID of the key.
        key: String,
        /// What the key is.
        family: KeyFamily,
        /// The API name of the refused signature algorithm.
        alg: &'static str,
    },
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
    /// Lowercase hex, the form stored in the database and shown in logs.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses `to_hex` output (either case); `None` for odd length or a non-hex digit.
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
    /// The fresh random CKA_ID of both halves.
    pub id: KeyId,
    /// DER SubjectPublicKeyInfo of the public key.
    pub spki_der: Vec<u8>,
}

/// A private key found in the token, as `Hsm::list_keys` reports it (for operators and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredKey {
    /// Its CKA_ID.
    pub id: KeyId,
    /// Its CKA_LABEL (lossy UTF-8).
    pub label: String,
    /// Its key type, `None` for a type pcad does not use.
    pub family: Option<KeyFamily>,
}

/// What `/healthz` and the logs need to know about the HSM.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HsmHealth {
    /// Whether calls are being served.
    pub up: bool,
    /// Why the HSM is down; `None` while up.
    pub reason: Option<String>,
    /// Whether recovery is still being attempted (false after the token refused the PIN).
    pub recovering: bool,
    /// How long the HSM has been in its current state.
    pub since: Duration,
    /// Label of the token in use.
    pub token_label: String,
    /// Size of the session pool (the signing parallelism).
    pub sessions: usize,
}

/// A handle on the HSM: cheap to clone, shared by every task.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Shared>,
}

impl Hsm {
    /// Loads the module, finds the token by label, logs in and opens the session pool.
    ///
    /// `config.env` is put into the process environment first (the module reads it when it is
    /// initialised, e.g. `SOFTHSM2_CONF`). A refused PIN is `PinRejected` and is not retried.
    pub fn open(config: &HsmConfig, pin: Pin) -> Result<Hsm, HsmError> {
        let settings = device::Settings::new(config);
        let device = Device::connect(&settings, &pin, library::Reset::No, &config.env)?;
        log::info!(
            "HSM token {:?} logged in, {} sessions open",
            settings.token_label,
            settings.sessions
        );
        Ok(Hsm {
            inner: Shared::new(settings, pin, device),
        })
    }

    /// Generates a key pair inside the token: private key token object, private, sensitive,
    /// never extractable, sign only; labelled `label`, named by a fresh random CKA_ID.
    pub fn generate_key(&self, alg: KeyAlgorithm, label: &str) -> Result<GeneratedKey, HsmError> {
        self.call(|device, session| device.generate(session, alg, label))
    }

    /// Signs `message` with the private key `id` (see `pki::Signer::sign` for the output form).
    pub fn sign(
        &self,
        id: &KeyId,
        alg: SignatureAlgorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let started = std::time::Instant::now();
        let result = self.call(|device, session| device.sign(session, id, alg, message));
        crate::metrics::METRICS.hsm_sign(started.elapsed().as_secs_f64(), result.is_ok());
        result
    }

    /// Destroys both halves of the key pair `id`; a key already gone is not an error.
    pub fn destroy_key(&self, id: &KeyId) -> Result<(), HsmError> {
        self.call(|device, session| device.destroy(session, id))
    }

    /// Every private key in the token with its CKA_ID and label (operators' inventory, tests).
    pub fn list_keys(&self) -> Result<Vec<StoredKey>, HsmError> {
        self.call(|_, session| keys::list(session))
    }

    /// Whether the HSM answered its last call (for `/healthz` and the 503 fast path).
    pub fn is_up(&self) -> bool {
        self.inner.is_up()
    }

    /// The HSM's state in more detail than `is_up`, for `/healthz` and metrics.
    pub fn health(&self) -> HsmHealth {
        self.inner.health()
    }

    /// A `pki::Signer` for key `id` with signature algorithm `alg`.
    pub fn signer(&self, id: KeyId, alg: SignatureAlgorithm) -> HsmSigner {
        HsmSigner {
            hsm: self.clone(),
            id,
            alg,
        }
    }

    /// Runs `op` on a pooled session of the current device; fails fast while the HSM is down,
    /// and marks it down (starting recovery) when `op` meets a transient error.
    fn call<T>(
        &self,
        mut op: impl FnMut(&Device, &cryptoki::session::Session) -> Result<T, Fail>,
    ) -> Result<T, HsmError> {
        let device = self.inner.device()?;
        match device.run(|session| op(&device, session)) {
            Ok(value) => Ok(value),
            Err(fail) => {
                if fail.is_transient() {
                    self.inner.report_down(&device, &fail);
                }
                Err(fail.into_error())
            }
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
        self.hsm
            .sign(&self.id, self.alg, message)
            .map_err(|e| match e {
                HsmError::Unavailable(m) => SignError::Unavailable(m),
                HsmError::PinRejected => SignError::Unavailable(e.to_string()),
                other => SignError::Failed(other.to_string()),
            })
    }
}

#[cfg(test)]
mod tests;
