//! Every JSON request body (`StoreBody`, `IssuerBody`, `TemplateBody`, `LeafBody`,
//! `RevokeBody::reason`): `body::json::<T>()` then `.check()`, through `api::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pcad::api::fuzzing::check_bodies(data);
});
