//! `pki::csr::parse` (PEM or bare base64 PKCS#10, self-signature verified).
//!
//! Each input is used three ways:
//! - as text (when it is UTF-8): the PEM / bare-base64 layer;
//! - as raw DER wrapped in a `CERTIFICATE REQUEST` PEM block, so mutations reach the DER parser
//!   and the signature check instead of dying in base64;
//! - as the DER a request carries past its signature check (the subject Name, and the
//!   subjectAltName extnValue and Extensions list of the extensionRequest attribute): the
//!   fuzzer cannot forge a self-signature, so `csr::parse` only reaches those parsers with the
//!   seeds' exact bytes; they are called directly here.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use pcad::pki::{csr, ext, name};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = csr::parse(text);
    }
    let b64 = STANDARD.encode(data);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 80);
    pem.push_str("-----BEGIN CERTIFICATE REQUEST-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE REQUEST-----\n");
    let _ = csr::parse(&pem);

    let _ = name::subject_info(data);
    let _ = ext::decode_sans(data);
    let _ = ext::find(data, &ext::SUBJECT_ALT_NAME);
});
