//! Entry point for the `json_bodies` fuzz target (`fuzz/fuzz_targets/json_bodies.rs`): the
//! request body types are private to `api`, so this runs each of them exactly as the handlers
//! do. Not part of the API; results are discarded, only panics matter.

use super::body::{self, IssuerBody, StoreBody};
use super::leaf_body::{LeafBody, RevokeBody, TemplateBody};

/// Parses and checks `bytes` as every JSON request body: `StoreBody`, `IssuerBody`,
/// `TemplateBody`, `LeafBody` (SIGN mode reaches the CSR parser) and `RevokeBody::reason`.
#[doc(hidden)]
pub fn check_bodies(bytes: &[u8]) {
    let _ = body::json::<StoreBody>(bytes).and_then(|b| b.check());
    let _ = body::json::<IssuerBody>(bytes).and_then(|b| b.check());
    let _ = body::json::<TemplateBody>(bytes).and_then(|b| b.check());
    let _ = body::json::<LeafBody>(bytes).and_then(|b| b.check());
    let _ = RevokeBody::reason(bytes);
    super::ncp::fuzz_bodies(bytes);
}
