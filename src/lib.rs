//! pcad: a hardware-backed private certificate authority serving the NHN Cloud Private CA API v2.0.
//!
//! Issuer keys live in an HSM reached through PKCS#11 (`hsm`); certificates, CRLs and OCSP
//! responses are laid out by `pki` and signed through the `pki::Signer` trait; metadata lives in
//! sled (`store`); the CA domain is `ca`, revocation publishing `status`, HTTP `api` and `server`.

pub mod acme;
pub mod api;
pub mod backup;
pub mod ca;
pub mod clock;
pub mod config;
pub mod hsm;
pub mod metrics;
pub mod pki;
pub mod publish;
pub mod quickstart;
pub mod server;
pub mod status;
pub mod store;
