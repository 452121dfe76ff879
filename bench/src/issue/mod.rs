//! The pieces of `issue-bench`: the daemon under test, its mutual-TLS client, the CSRs, the
//! raw HSM reference, measured runs, and in-process diagnostics.

pub mod bench;
pub mod client;
pub mod csr;
pub mod diag;
pub mod load;
pub mod raw;
