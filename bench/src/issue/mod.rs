//! The pieces of `issue-bench` (the client, CSRs and raw HSM reference also serve
//! `acme-bench` and `ocsp-bench`): its runs, the mutual-TLS client, the CSRs, the raw HSM
//! reference, measured load, and in-process diagnostics.

pub mod bench;
pub mod client;
pub mod csr;
pub mod diag;
pub mod load;
pub mod raw;
