//! Classification of every PKCS#11 failure: what the pool, the key cache and recovery should do
//! about it, and which `HsmError` the caller sees.

use cryptoki::error::{Error as CkError, RvError};

use super::HsmError;

/// What a failure means for the machinery around the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// This session is unusable (closed, invalid, stuck in an operation): drop it, open another.
    Session,
    /// A cached object handle went stale: find the key again by CKA_ID.
    Handle,
    /// The device, token or library is gone: mark the HSM down and recover.
    Device,
    /// The token refused the PIN: stay down, never retry by ourselves.
    Pin,
    /// The request itself is wrong or not supported: report it, change nothing.
    Permanent,
}

/// An internal failure: a raw cryptoki error (still classifiable) or a decided `HsmError`.
#[derive(Debug)]
pub(crate) enum Fail {
    Ck(CkError),
    Hsm(HsmError),
}

impl Fail {
    /// How the failure should be handled.
    pub(crate) fn fault(&self) -> Fault {
        match self {
            Fail::Ck(e) => fault(e),
            Fail::Hsm(HsmError::Unavailable(_)) => Fault::Device,
            Fail::Hsm(HsmError::PinRejected) => Fault::Pin,
            Fail::Hsm(_) => Fault::Permanent,
        }
    }

    /// Whether recovery (or a fresh session) may make the failure go away.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self.fault(), Fault::Session | Fault::Device)
    }

    /// A session-level failure seen again on a fresh session: the device is at fault.
    pub(crate) fn escalate(self) -> Fail {
        match self.fault() {
            Fault::Session => Fail::Hsm(HsmError::Unavailable(self.message())),
            _ => self,
        }
    }

    /// The error the caller of `Hsm` sees.
    pub(crate) fn into_error(self) -> HsmError {
        match self {
            Fail::Hsm(e) => e,
            Fail::Ck(e) => match fault(&e) {
                Fault::Session | Fault::Device => HsmError::Unavailable(describe(&e)),
                Fault::Pin => HsmError::PinRejected,
                Fault::Handle | Fault::Permanent => HsmError::Pkcs11(describe(&e)),
            },
        }
    }

    /// A short description for logs and health reports (never contains the PIN).
    pub(crate) fn message(&self) -> String {
        match self {
            Fail::Ck(e) => describe(e),
            Fail::Hsm(e) => e.to_string(),
        }
    }
}

impl From<CkError> for Fail {
    fn from(e: CkError) -> Fail {
        Fail::Ck(e)
    }
}

impl From<HsmError> for Fail {
    fn from(e: HsmError) -> Fail {
        Fail::Hsm(e)
    }
}

/// Classifies one cryptoki error.
pub(crate) fn fault(e: &CkError) -> Fault {
    match e {
        CkError::Pkcs11(rv, _) => rv_fault(*rv),
        // The module cannot be loaded or lacks its entry points: nothing works until it can.
        CkError::LibraryLoading(_) | CkError::MissingSymbol(_) | CkError::NullFunctionPointer => {
            Fault::Device
        }
        _ => Fault::Permanent,
    }
}

/// Classifies one `CKR_*` value.
pub(crate) fn rv_fault(rv: RvError) -> Fault {
    use RvError::*;
    match rv {
        SessionClosed | SessionHandleInvalid | OperationActive | OperationNotInitialized => {
            Fault::Session
        }
        ObjectHandleInvalid | KeyHandleInvalid => Fault::Handle,
        DeviceRemoved
        | DeviceError
        | DeviceMemory
        | TokenNotPresent
        | TokenNotRecognized
        | CryptokiNotInitialized
        | FunctionFailed
        | GeneralError
        | UserNotLoggedIn
        | LibraryLoadFailed => Fault::Device,
        PinIncorrect | PinLocked | PinExpired => Fault::Pin,
        _ => Fault::Permanent,
    }
}

/// `C_Sign: DeviceRemoved` rather than the library's paragraph-long texts.
fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => {
            let function = format!("{function:?}");
            format!("C_{function}: {rv:?}")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use cryptoki::context::Function;

    use super::*;

    fn ck(rv: RvError) -> Fail {
        Fail::Ck(CkError::Pkcs11(rv, Function::Sign))
    }

    #[test]
    fn classification() {
        assert_eq!(ck(RvError::DeviceRemoved).fault(), Fault::Device);
        assert_eq!(ck(RvError::CryptokiNotInitialized).fault(), Fault::Device);
        assert_eq!(ck(RvError::SessionHandleInvalid).fault(), Fault::Session);
        assert_eq!(ck(RvError::KeyHandleInvalid).fault(), Fault::Handle);
        assert_eq!(ck(RvError::MechanismInvalid).fault(), Fault::Permanent);
        assert!(matches!(
            ck(RvError::PinLocked).into_error(),
            HsmError::PinRejected
        ));
        let e = ck(RvError::TokenNotPresent).into_error();
        assert!(e.is_transient());
        assert_eq!(e.to_string(), "HSM unavailable: C_Sign: TokenNotPresent");
        assert!(ck(RvError::SessionClosed)
            .escalate()
            .into_error()
            .is_transient());
        assert!(!ck(RvError::DataLenRange).into_error().is_transient());
    }
}
