//! One PKCS#11 initialisation per module per process.
//!
//! `C_Initialize`/`C_Finalize` act on the whole process, not on a handle, so every user of a
//! module (normally one `Hsm`; several in tests) shares one bookkeeping entry: the module is
//! loaded and initialised by the first user, finalised when the last one goes, and reset
//! (finalise, reload, initialise) at most once per broken generation when recovery asks for it.
//! Sessions of an old generation are closed only while that generation is still current, so a
//! stale close can never hit a session handle of a newer initialisation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

use super::error::Fail;
use super::pool::lock;

/// Every module this process uses, by path.
static LIBRARIES: Mutex<BTreeMap<PathBuf, Library>> = Mutex::new(BTreeMap::new());

/// The state of one module in this process.
struct Library {
    /// The initialised module; `None` once finalised.
    ctx: Option<Pkcs11>,
    /// Incremented at every initialisation.
    generation: u64,
    /// Live leases.
    users: usize,
}

/// Whether `acquire` should throw away the current initialisation first.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reset {
    /// Use the module as it is (first open).
    No,
    /// This generation failed: finalise it (unless someone already did) and start afresh.
    Broken(u64),
}

/// A share of an initialised module; the last lease to go finalises it.
pub(crate) struct Lease {
    module: PathBuf,
    ctx: Pkcs11,
    generation: u64,
}

impl Lease {
    /// The module's function table.
    pub(crate) fn ctx(&self) -> &Pkcs11 {
        &self.ctx
    }

    /// Which initialisation this lease belongs to.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Runs `f` only while this lease's initialisation is still the current one (so handles it
    /// refers to cannot belong to a newer one); `None` otherwise.
    pub(crate) fn if_current<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let libraries = lock(&LIBRARIES);
        let current = libraries
            .get(&self.module)
            .is_some_and(|lib| lib.ctx.is_some() && lib.generation == self.generation);
        // The lock is held while `f` runs: no reset can slip in between the check and `f`.
        let result = current.then(f);
        drop(libraries);
        result
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut libraries = lock(&LIBRARIES);
        if let Some(lib) = libraries.get_mut(&self.module) {
            lib.users = lib.users.saturating_sub(1);
            if lib.users == 0 {
                if let Some(ctx) = lib.ctx.take() {
                    finalize(ctx);
                }
            }
        }
    }
}

/// Loads and initialises `module` if this process has not yet (setting `env` first, since the
/// module reads it at initialisation), and returns a lease on it.
///
/// `C_Initialize` uses OS locking; `CKR_CRYPTOKI_ALREADY_INITIALIZED` counts as success (another
/// part of the process initialised it).
pub(crate) fn acquire(
    module: &Path,
    env: &BTreeMap<String, String>,
    reset: Reset,
) -> Result<Lease, Fail> {
    let mut libraries = lock(&LIBRARIES);
    let lib = libraries.entry(module.to_path_buf()).or_insert(Library {
        ctx: None,
        generation: 0,
        users: 0,
    });
    if let Reset::Broken(generation) = reset {
        if lib.generation == generation {
            if let Some(ctx) = lib.ctx.take() {
                finalize(ctx);
            }
        }
    }
    let ctx = match &lib.ctx {
        Some(ctx) => ctx.clone(),
        None => {
            for (name, value) in env {
                // Edition 2021: safe. Done under the library lock, before the module is loaded.
                std::env::set_var(name, value);
            }
            let ctx = Pkcs11::new(module)?;
            match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
                Err(e) => return Err(e.into()),
            }
            lib.generation += 1;
            lib.ctx = Some(ctx.clone());
            ctx
        }
    };
    lib.users += 1;
    Ok(Lease {
        module: module.to_path_buf(),
        ctx,
        generation: lib.generation,
    })
}

/// `C_Finalize`; a module that is already finalised (device lost, or finalised behind our back)
/// is not worth more than a debug line.
fn finalize(ctx: Pkcs11) {
    if let Err(e) = ctx.finalize() {
        log::debug!("PKCS#11 C_Finalize: {e}");
    }
}
