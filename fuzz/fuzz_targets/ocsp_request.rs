//! `pki::ocsp::parse_request` on raw bytes (the POST /ocsp body), and the serving fast path
//! `single_cert_id` against it: whenever the CertID it slices out could be a cache key (it is
//! one DER CertID), the full parse must name exactly that CertID and nothing else.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pcad::pki::ocsp::{parse_request, single_cert_id};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_request(data);
    let Some(id) = single_cert_id(data) else {
        return;
    };
    let alone = seq(&seq(&seq(&seq(id))));
    if parse_request(&alone).is_ok_and(|ids| ids.len() == 1 && ids[0].der == id) {
        let ids = parsed.expect("single_cert_id answered for a request parse_request refuses");
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].der, id);
    }
});

/// A DER SEQUENCE around `content`.
fn seq(content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![0x30];
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xffff => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        _ => out.extend_from_slice(&[0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(content);
    out
}
