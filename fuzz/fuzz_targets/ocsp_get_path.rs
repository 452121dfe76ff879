//! `pki::ocsp::decode_get_path` on arbitrary UTF-8 (the GET /ocsp/{request} tail), then
//! `parse_request` on whatever it decodes, as the handler does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|tail: &str| {
    if let Ok(der) = pcad::pki::ocsp::decode_get_path(tail) {
        let _ = pcad::pki::ocsp::parse_request(&der);
    }
});
