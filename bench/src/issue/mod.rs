//! The pieces of `issue-bench`: the daemon under test, its mutual-TLS client, the CSRs, the
//! raw HSM reference, measured runs, in-process diagnostics and the process facts around them.

pub mod client;
pub mod csr;
pub mod daemon;
pub mod diag;
pub mod load;
pub mod raw;
pub mod sys;
