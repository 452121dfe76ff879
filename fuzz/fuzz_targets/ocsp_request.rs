//! `pki::ocsp::parse_request` on raw bytes (the POST /ocsp body).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pcad::pki::ocsp::parse_request(data);
});
