//! CRL layout checked by openssl and x509-cert; release timings of large CRLs.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use der::Decode;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlReason};

use super::test_support::{Kind, TestCa, TestSigner, ALL_KINDS};
use super::*;

const DAY: i64 = 86_400;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn entry(serial: &[u8], revoked_at: i64, reason: RevocationReason) -> RevokedEntry {
    RevokedEntry {
        serial: serial.to_vec(),
        revoked_at,
        reason,
    }
}

fn crl(ca: &TestCa, number: u64, entries: &[RevokedEntry]) -> Vec<u8> {
    let issuer_cert = ca.der();
    let t = now();
    let params = CrlParams {
        issuer_cert: &issuer_cert,
        number,
        this_update: t,
        next_update: t + 7 * DAY,
        entries,
    };
    build(&params, &ca.signer()).unwrap()
}

/// The extension values of a decoded CRL, by OID.
fn crl_ext(list: &CertificateList, oid: const_oid::ObjectIdentifier) -> Vec<u8> {
    let exts = list.tbs_cert_list.crl_extensions.as_ref().unwrap();
    let ext = exts.iter().find(|e| e.extn_id == oid).unwrap();
    assert!(!ext.critical);
    ext.extn_value.as_bytes().to_vec()
}

#[test]
fn empty_crl_verifies() {
    for kind in ALL_KINDS {
        let ca = TestCa::new(kind, true);
        let der = crl(&ca, 7, &[]);
        ca.write("empty.crl", &der);
        let (ok, out) = ca.openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            "empty.crl",
            "-CAfile",
            "ca.pem",
            "-noout",
        ]);
        assert!(ok && out.contains("verify OK"), "{kind:?}: {out}");
        let (ok, text) = ca.openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            "empty.crl",
            "-noout",
            "-text",
        ]);
        assert!(ok && text.contains("No Revoked Certificates"), "{text}");
        assert!(text.contains("Version 2"), "{text}");

        let list: CertificateList = CertificateList::from_der(&der).unwrap();
        assert!(list.tbs_cert_list.revoked_certificates.is_none());
        assert_eq!(
            list.tbs_cert_list.issuer,
            *x509_cert::Certificate::from_der(&ca.der())
                .unwrap()
                .tbs_certificate()
                .subject()
        );
        let aki = AuthorityKeyIdentifier::from_der(&crl_ext(
            &list,
            const_oid::db::rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER,
        ))
        .unwrap();
        assert_eq!(
            aki.key_identifier.unwrap().as_bytes(),
            ca.cert.subject_key_id().unwrap().as_slice()
        );
        assert_eq!(
            crl_ext(&list, const_oid::db::rfc5280::ID_CE_CRL_NUMBER),
            [0x02, 0x01, 0x07]
        );
        let info = parse_info(&der).unwrap();
        assert_eq!(info.number, Some(7));
        assert_eq!(info.next_update.unwrap() - info.this_update, 7 * DAY);
        assert_eq!(
            list.tbs_cert_list.this_update.to_unix_duration().as_secs() as i64,
            info.this_update
        );
    }
}

#[test]
fn revoked_leaf_is_flagged() {
    for kind in ALL_KINDS {
        let ca = TestCa::new(kind, true);
        let serial = [0x9a, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
        ca.leaf("leaf", &serial);
        ca.leaf("other", &[0x42]);
        let t = now() - 60;
        let entries = [
            entry(&serial, t, RevocationReason::KeyCompromise),
            entry(&[0x00, 0x00, 0x05], t - DAY, RevocationReason::Unspecified),
            entry(&[0x80, 0x01], t - 2 * DAY, RevocationReason::Superseded),
        ];
        let der = crl(&ca, 1 << 40, &entries);
        ca.write("crl.der", &der);
        ca.write("crl.pem", to_pem(&der).as_bytes());
        let (ok, out) = ca.openssl(&["crl", "-in", "crl.pem", "-CAfile", "ca.pem", "-noout"]);
        assert!(ok && out.contains("verify OK"), "{kind:?}: {out}");
        let (_, text) = ca.openssl(&["crl", "-in", "crl.pem", "-noout", "-text"]);
        assert!(
            text.contains("Key Compromise") && text.contains("Superseded"),
            "{text}"
        );
        assert_eq!(text.matches("CRL Reason Code").count(), 2, "{text}");
        assert!(text.contains("Serial Number: 9A0102030405060708"), "{text}");
        assert!(text.contains("Serial Number: 05"), "{text}");
        assert!(text.contains("Serial Number: 8001"), "{text}");
        let verify = [
            "verify",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "ca.pem",
        ];
        let (ok, out) = ca.openssl(&[&verify[..], &["leaf.pem"]].concat());
        assert!(
            !ok && out.contains("certificate revoked"),
            "{kind:?}: {out}"
        );
        let (ok, out) = ca.openssl(&[&verify[..], &["other.pem"]].concat());
        assert!(ok && out.contains("OK"), "{kind:?}: {out}");

        // An independent decoder sees the same entries.
        let list: CertificateList = CertificateList::from_der(&der).unwrap();
        let revoked = list.tbs_cert_list.revoked_certificates.unwrap();
        assert_eq!(revoked.len(), 3);
        assert_eq!(
            revoked[0].serial_number.as_bytes(),
            [&[0][..], &serial].concat()
        );
        assert_eq!(revoked[1].serial_number.as_bytes(), [0x05]);
        assert_eq!(revoked[2].serial_number.as_bytes(), [0x00, 0x80, 0x01]);
        assert_eq!(
            revoked[0].revocation_date.to_unix_duration().as_secs() as i64,
            t
        );
        assert!(revoked[1].crl_entry_extensions.is_none());
        let ext = &revoked[2].crl_entry_extensions.as_ref().unwrap()[0];
        assert!(!ext.critical);
        assert_eq!(
            CrlReason::from_der(ext.extn_value.as_bytes()).unwrap(),
            CrlReason::Superseded
        );
        assert_eq!(parse_info(&der).unwrap().number, Some(1 << 40));
    }
}

#[test]
fn every_reason_is_printed() {
    let ca = TestCa::new(Kind::P256, true);
    let t = now();
    let entries: Vec<_> = RevocationReason::ALL
        .iter()
        .enumerate()
        .map(|(i, r)| entry(&[i as u8 + 1], t, *r))
        .collect();
    ca.write("all.crl", &crl(&ca, 2, &entries));
    let (ok, text) = ca.openssl(&[
        "crl", "-inform", "DER", "-in", "all.crl", "-CAfile", "ca.pem", "-text",
    ]);
    assert!(ok && text.contains("verify OK"), "{text}");
    for name in [
        "Key Compromise",
        "CA Compromise",
        "Affiliation Changed",
        "Superseded",
        "Cessation Of Operation",
        "Certificate Hold",
        "Privilege Withdrawn",
    ] {
        assert!(text.contains(name), "{name}: {text}");
    }
    assert!(!text.contains("Unspecified"), "{text}");
    for r in RevocationReason::ALL {
        assert_eq!(RevocationReason::from_code(r.code()), Some(r));
    }
    assert_eq!(RevocationReason::from_code(8), None);
}

#[test]
fn aki_without_ski_hashes_the_key() {
    let ca = TestCa::new(Kind::Rsa2048, false);
    assert!(ca.cert.subject_key_id().is_none());
    let der = crl(&ca, 1, &[]);
    let list: CertificateList = CertificateList::from_der(&der).unwrap();
    let aki = AuthorityKeyIdentifier::from_der(&crl_ext(
        &list,
        const_oid::db::rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER,
    ))
    .unwrap();
    // What openssl's SubjectKeyIdentifier "hash" method would have put in the certificate.
    let with_ski = {
        let mut b = openssl::x509::X509::builder().unwrap();
        b.set_pubkey(&ca.key).unwrap();
        let ski = openssl::x509::extension::SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(ski).unwrap();
        b.sign(&ca.key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        b.build().subject_key_id().unwrap().as_slice().to_vec()
    };
    assert_eq!(aki.key_identifier.unwrap().as_bytes(), with_ski);
    ca.write("noski.crl", &der);
    let (ok, out) = ca.openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        "noski.crl",
        "-CAfile",
        "ca.pem",
        "-noout",
    ]);
    assert!(ok && out.contains("verify OK"), "{out}");
}

#[test]
fn times_switch_to_generalized_in_2050() {
    let end_2049 = 2_524_607_999; // 2049-12-31T23:59:59Z
    let mut out = Vec::new();
    push_time(&mut out, end_2049, true).unwrap();
    push_time(&mut out, end_2049 + 1, true).unwrap();
    push_time(&mut out, end_2049, false).unwrap();
    push_time(&mut out, 0, true).unwrap();
    push_time(&mut out, -631_152_001, true).unwrap(); // 1949-12-31T23:59:59Z
    let expect = [
        &b"\x17\x0d491231235959Z"[..],
        b"\x18\x0f20500101000000Z",
        b"\x18\x0f20491231235959Z",
        b"\x17\x0d700101000000Z",
        b"\x18\x0f19491231235959Z",
    ]
    .concat();
    assert_eq!(out, expect);
    for t in [
        0,
        951_782_400,
        1_709_251_199,
        end_2049,
        end_2049 + 1,
        253_402_300_799,
        -62_167_219_200,
    ] {
        let mut enc = Vec::new();
        push_time(&mut enc, t, t % 2 == 0).unwrap();
        let (tag, value, _) = read_tlv(&enc).unwrap();
        assert_eq!(parse_time((tag, value)).unwrap(), t, "{t}");
    }
    assert!(push_time(&mut out, 253_402_300_800, false).is_err()); // year 10000
    assert!(push_time(&mut out, -62_167_219_201, false).is_err()); // year -1

    let ca = TestCa::new(Kind::P256, true);
    let cert = ca.der();
    let params = CrlParams {
        issuer_cert: &cert,
        number: 0,
        this_update: end_2049,
        next_update: end_2049 + 1,
        entries: &[],
    };
    let info = parse_info(&build(&params, &ca.signer()).unwrap()).unwrap();
    assert_eq!(
        info,
        CrlInfo {
            number: Some(0),
            this_update: end_2049,
            next_update: Some(end_2049 + 1)
        }
    );
}

#[test]
fn bad_input_is_refused() {
    let ca = TestCa::new(Kind::P256, true);
    let cert = ca.der();
    let t = now();
    let mut params = CrlParams {
        issuer_cert: &cert,
        number: 1,
        this_update: t,
        next_update: t - 1,
        entries: &[],
    };
    assert!(build(&params, &ca.signer()).is_err());
    params.next_update = t;
    let zero = [entry(&[0, 0], t, RevocationReason::Unspecified)];
    assert!(build(
        &CrlParams {
            entries: &zero,
            ..params
        },
        &ca.signer()
    )
    .is_err());
    let empty = [entry(&[], t, RevocationReason::Unspecified)];
    assert!(build(
        &CrlParams {
            entries: &empty,
            ..params
        },
        &ca.signer()
    )
    .is_err());
    assert!(build(
        &CrlParams {
            issuer_cert: b"\x30\x00",
            ..params
        },
        &ca.signer()
    )
    .is_err());
    let der = build(&params, &ca.signer()).unwrap();
    for cut in 0..der.len() {
        assert!(parse_info(&der[..cut]).is_err());
    }
    for cut in 0..cert.len() {
        assert!(IssuerParts::from_der(&cert[..cut]).is_err());
    }
    for bit in 0..cert.len() * 8 {
        let mut flipped = cert.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let _ = IssuerParts::from_der(&flipped);
        flipped.truncate(bit / 8);
        let _ = parse_info(&[&der[..der.len() / 2], &flipped].concat());
    }
}

#[test]
fn der_lengths() {
    for len in [
        0,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        16_777_215,
        16_777_216,
        100_000_000,
    ] {
        let mut out = Vec::new();
        push_header(&mut out, TAG_SEQUENCE, len);
        assert_eq!(out.len(), header_len(len), "{len}");
        out.resize(out.len() + len, 0);
        let (tag, value, rest) = read_tlv(&out).unwrap();
        assert_eq!((tag, value.len(), rest.len()), (TAG_SEQUENCE, len, 0));
    }
    for (magnitude, der) in [
        (&[][..], &[2, 1, 0][..]),
        (&[0, 0], &[2, 1, 0]),
        (&[0x7f], &[2, 1, 0x7f]),
        (&[0, 0x80], &[2, 2, 0, 0x80]),
        (&[0xff, 0xff], &[2, 3, 0, 0xff, 0xff]),
    ] {
        let mut out = Vec::new();
        push_positive_int(&mut out, magnitude);
        assert_eq!(out, der);
    }
}

/// Release timings: `cargo test --release --lib pki::crl -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_large_crls() {
    for kind in [Kind::Rsa2048, Kind::P256] {
        let ca = TestCa::new(kind, true);
        let cert = ca.der();
        let signer = TestSigner {
            key: &ca.key,
            alg: ca.alg,
        };
        for n in [10_000usize, 100_000, 1_000_000] {
            let t = now();
            let _ = std::fs::write("/proc/self/clear_refs", "5"); // resets VmHWM
            let rss_before = rss_kib("VmRSS");
            let entries: Vec<_> = (0..n as u64)
                .map(|i| {
                    let mut serial = [0u8; 16];
                    serial[..8].copy_from_slice(
                        &(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 << 63).to_be_bytes(),
                    );
                    serial[8..].copy_from_slice(&i.to_be_bytes());
                    entry(
                        &serial,
                        t - i as i64,
                        RevocationReason::ALL[(i % 8) as usize],
                    )
                })
                .collect();
            let params = CrlParams {
                issuer_cert: &cert,
                number: n as u64,
                this_update: t,
                next_update: t + DAY,
                entries: &entries,
            };
            let start = Instant::now();
            let der = build(&params, &signer).unwrap();
            let built = start.elapsed();
            let peak = rss_kib("VmHWM");
            let start = Instant::now();
            let reference = x509_cert_list_der(&entries).len();
            let reference_time = start.elapsed();
            let start = Instant::now();
            let info = parse_info(&der).unwrap();
            let parsed = start.elapsed();
            assert_eq!(info.number, Some(n as u64));
            println!(
                "{kind:?} {n:>9} entries: build+sign {:>8.1} ms (x509-cert encoding alone {:>8.1} ms, {reference} B), {:>6.1} MB DER, parse_info {:>6.2} ms, RSS {} -> peak {} MiB",
                built.as_secs_f64() * 1e3,
                reference_time.as_secs_f64() * 1e3,
                der.len() as f64 / 1e6,
                parsed.as_secs_f64() * 1e3,
                rss_before / 1024,
                peak / 1024,
            );
            if n == 1_000_000 && matches!(kind, Kind::Rsa2048) {
                ca.write("big.crl", &der);
                let start = Instant::now();
                let (ok, out) = ca.openssl(&[
                    "crl", "-inform", "DER", "-in", "big.crl", "-CAfile", "ca.pem", "-noout",
                ]);
                assert!(ok && out.contains("verify OK"), "{out}");
                println!(
                    "openssl crl verify of 1M entries: {:.1} ms",
                    start.elapsed().as_secs_f64() * 1e3
                );
            }
        }
    }
}

/// The reference: the revokedCertificates list through x509-cert's types.
fn x509_cert_list_der(entries: &[RevokedEntry]) -> Vec<u8> {
    use x509_cert::crl::RevokedCert;
    use x509_cert::ext::Extension;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::time::Time;
    let list: Vec<RevokedCert> = entries
        .iter()
        .map(|e| RevokedCert {
            serial_number: SerialNumber::new(&e.serial).unwrap(),
            revocation_date: Time::UtcTime(
                der::asn1::UtcTime::from_unix_duration(std::time::Duration::from_secs(
                    e.revoked_at as u64,
                ))
                .unwrap(),
            ),
            crl_entry_extensions: (e.reason != RevocationReason::Unspecified).then(|| {
                vec![Extension {
                    extn_id: const_oid::db::rfc5280::ID_CE_CRL_REASONS,
                    critical: false,
                    extn_value: der::asn1::OctetString::new(vec![0x0a, 0x01, e.reason.code()])
                        .unwrap(),
                }]
            }),
        })
        .collect();
    list.to_der().unwrap()
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn issuer_with_universal_string_subject() {
    use openssl::x509::{X509Name, X509};
    let ca = TestCa::new(Kind::P256, true);
    // CN as a UniversalString (tag 28), which der 0.8 (so x509-cert) cannot decode.
    let ucs4: Vec<u8> = "Universal CA"
        .chars()
        .flat_map(|c| (c as u32).to_be_bytes())
        .collect();
    let cn = [&[0x06, 0x03, 0x55, 0x04, 0x03][..], &tlv(0x1c, &ucs4)].concat();
    let name_der = tlv(TAG_SEQUENCE, &tlv(0x31, &tlv(TAG_SEQUENCE, &cn)));
    let name = X509Name::from_der(&name_der).unwrap();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&ca.key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.sign(&ca.key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    let cert = b.build();
    let parts = IssuerParts::from_der(&cert.to_der().unwrap()).unwrap();
    assert_eq!(parts.subject, name_der);
    assert!(parts.subject.windows(2).any(|w| w == [0x1c, 48]));
    assert_eq!(parts.ski, None);

    ca.write("uca.pem", &cert.to_pem().unwrap());
    let t = now();
    let cert_der = cert.to_der().unwrap();
    let entries = [entry(&[7], t, RevocationReason::CaCompromise)];
    let params = CrlParams {
        issuer_cert: &cert_der,
        number: 3,
        this_update: t,
        next_update: t + DAY,
        entries: &entries,
    };
    ca.write("u.crl", &build(&params, &ca.signer()).unwrap());
    let (ok, out) = ca.openssl(&[
        "crl", "-inform", "DER", "-in", "u.crl", "-CAfile", "uca.pem", "-noout",
    ]);
    assert!(ok && out.contains("verify OK"), "{out}");
}
