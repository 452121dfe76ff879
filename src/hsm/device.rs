//! One logged-in generation of the token: the module lease, the slot found by label, the session
//! pool and the key-handle cache. Recovery throws a whole `Device` away and connects a new one,
//! so nothing of an old initialisation (sessions, handles) is ever used again.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::error::{Fail, Fault};
use super::keys::{self, KeyEntry};
use super::library::{self, Lease, Reset};
use super::pool::{lock, Discard, Pool};
use super::{GeneratedKey, HsmError, KeyId};
use crate::config::{HsmConfig, Pin};
use crate::pki::{KeyAlgorithm, SignatureAlgorithm};

/// What connecting needs from the config (the PIN travels separately).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) module: PathBuf,
    pub(crate) token_label: String,
    pub(crate) sessions: usize,
}

impl Settings {
    pub(crate) fn new(config: &HsmConfig) -> Settings {
        Settings {
            module: config.module.clone(),
            token_label: config.token_label.clone(),
            sessions: config.sessions.max(1),
        }
    }
}

/// A token found, logged in, with its sessions open.
pub(crate) struct Device {
    lease: Lease,
    slot: Slot,
    pool: Pool,
    /// Private key handles by CKA_ID; valid for this initialisation only, dropped with it.
    keys: Mutex<HashMap<Vec<u8>, KeyEntry>>,
    torn_down: AtomicBool,
}

impl Device {
    /// Initialises the module (see `library::acquire`), finds the token by label, logs in as
    /// user and opens the pool. On failure everything opened so far is closed again.
    pub(crate) fn connect(
        settings: &Settings,
        pin: &Pin,
        reset: Reset,
        env: &BTreeMap<String, String>,
    ) -> Result<Device, HsmError> {
        let lease = library::acquire(&settings.module, env, reset).map_err(Fail::into_error)?;
        let slot = find_token(&lease, &settings.token_label)?;
        let device = Device {
            lease,
            slot,
            pool: Pool::new(settings.sessions),
            keys: Mutex::new(HashMap::new()),
            torn_down: AtomicBool::new(false),
        };
        device
            .pool
            .fill(device.lease.ctx(), slot)
            .map_err(Fail::into_error)?;
        device.login(pin).map_err(Fail::into_error)?;
        Ok(device)
    }

    /// Which library initialisation this device lives in.
    pub(crate) fn generation(&self) -> u64 {
        self.lease.generation()
    }

    /// The number of sessions in the pool.
    pub(crate) fn sessions(&self) -> usize {
        self.pool.capacity()
    }

    /// Runs `op` on a pooled session. A session error discards that session and retries once on
    /// a fresh one; a second session error means the device is at fault.
    pub(crate) fn run<T>(
        &self,
        mut op: impl FnMut(&Session) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        let mut retried = false;
        loop {
            let mut session = self.pool.checkout(self.lease.ctx(), self.slot)?;
            match op(&session) {
                Err(fail) if fail.fault() == Fault::Session => {
                    session.discard(discard_for(&fail));
                    if retried {
                        return Err(fail.escalate());
                    }
                    retried = true;
                }
                result => return result,
            }
        }
    }

    /// See `Hsm::generate_key`.
    pub(crate) fn generate(
        &self,
        session: &Session,
        alg: KeyAlgorithm,
        label: &str,
    ) -> Result<GeneratedKey, Fail> {
        keys::generate(session, alg, label)
    }

    /// See `Hsm::sign`. A stale cached handle is forgotten and the key found again by CKA_ID.
    pub(crate) fn sign(
        &self,
        session: &Session,
        id: &KeyId,
        alg: SignatureAlgorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, Fail> {
        let key = self.key(session, id)?;
        match keys::sign(session, &key, id, alg, message) {
            Err(fail) if fail.fault() == Fault::Handle => {
                lock(&self.keys).remove(&id.0);
                let key = self.key(session, id)?;
                keys::sign(session, &key, id, alg, message)
            }
            result => result,
        }
    }

    /// See `Hsm::destroy_key`.
    pub(crate) fn destroy(&self, session: &Session, id: &KeyId) -> Result<(), Fail> {
        lock(&self.keys).remove(&id.0);
        keys::destroy(session, id)
    }

    /// Stops the pool, waits up to `wait` for busy sessions, and closes the sessions while this
    /// initialisation is still current. Idempotent; the lease (and maybe `C_Finalize`) goes with
    /// the last reference to the device.
    pub(crate) fn teardown(&self, wait: Duration) {
        if self.torn_down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.pool.close();
        if !self.pool.wait_drained(wait) {
            log::warn!("HSM: sessions still busy after {wait:?}; closing the others anyway");
        }
        let sessions = self.pool.take_idle();
        let closed = self.lease.if_current(|| {
            for session in sessions {
                // Errors are expected here: the device is usually gone.
                let _ = session.close();
            }
        });
        if closed.is_none() {
            log::debug!("HSM: sessions of a finalised initialisation dropped unclosed");
        }
        lock(&self.keys).clear();
    }

    /// Refuses new checkouts at once and wakes waiters (the device was reported down).
    pub(crate) fn close_pool(&self) {
        self.pool.close();
    }

    /// The private key `id`, from the cache or found in the token.
    fn key(&self, session: &Session, id: &KeyId) -> Result<KeyEntry, Fail> {
        if let Some(key) = lock(&self.keys).get(&id.0) {
            return Ok(*key);
        }
        let Some(key) = keys::find_private(session, id)? else {
            // A key the database knows is missing. When the token itself is gone (SoftHSM with
            // its token directory moved away answers C_FindObjects with nothing), that is an
            // outage, not a lost key: asking for the token's info tells them apart.
            self.lease
                .ctx()
                .get_token_info(self.slot)
                .map_err(Fail::from)?;
            return Err(HsmError::KeyNotFound(id.to_hex()).into());
        };
        lock(&self.keys).insert(id.0.clone(), key);
        Ok(key)
    }

    /// `C_Login` as user; already logged in (login is per application, not per session) is fine.
    fn login(&self, pin: &Pin) -> Result<(), Fail> {
        let session = self.pool.checkout(self.lease.ctx(), self.slot)?;
        let secret = AuthPin::new(pin.expose().into());
        match session.login(UserType::User, Some(&secret)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    #[cfg(test)]
    pub(crate) fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.teardown(Duration::ZERO);
    }
}

/// The slot holding the token labelled `label` (slot ids may change between initialisations).
fn find_token(lease: &Lease, label: &str) -> Result<Slot, HsmError> {
    let ctx = lease.ctx();
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| Fail::from(e).into_error())?;
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| Fail::from(e).into_error())?;
        if info.label() == label {
            return Ok(slot);
        }
    }
    Err(HsmError::TokenNotFound(label.to_string()))
}

/// A session stuck in an operation is still open and must be closed; an invalid one must not be
/// (its handle number may be reused).
fn discard_for(fail: &Fail) -> Discard {
    match fail {
        Fail::Ck(CkError::Pkcs11(
            RvError::OperationActive | RvError::OperationNotInitialized,
            _,
        )) => Discard::Close,
        _ => Discard::Forget,
    }
}
