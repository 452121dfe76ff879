//! X.509 and ASN.1 layouts: certificates, CSRs, CRLs, OCSP, names, extensions, software keys and
//! their encodings. Pure: no I/O; signs through the `Signer` trait.

pub mod alg;
pub mod cert;
pub mod crl;
pub mod csr;
pub mod der_util;
pub mod ext;
pub mod fields;
pub mod keygen;
pub mod name;
pub mod ocsp;
pub mod oid;
pub mod pem;
pub mod profile;
pub mod signer;
pub mod subca;

pub use alg::{HashAlg, KeyAlgorithm, KeyFamily, SignatureAlgorithm};
pub use signer::{SignError, Signer};

/// Why a PKI structure could not be built or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("DER: {0}")]
    Der(#[from] der::Error),
    #[error("{0}")]
    Invalid(String),
}
