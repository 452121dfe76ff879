//! OCSP requests from `openssl ocsp`, responses verified by it, and hostile input.

use std::time::{SystemTime, UNIX_EPOCH};

use super::super::crl::test_support::{Kind, TestCa, ALL_KINDS};
use super::*;

const HOUR: i64 = 3600;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A request from `openssl ocsp -reqout` for `certs` (file names in the CA's directory).
fn openssl_request(ca: &TestCa, extra: &[&str], certs: &[&str]) -> Vec<u8> {
    let mut args = vec!["ocsp", "-issuer", "ca.pem"];
    args.extend_from_slice(extra);
    for c in certs {
        args.extend_from_slice(&["-cert", c]);
    }
    args.extend_from_slice(&["-reqout", "req.der"]);
    let (ok, out) = ca.openssl(&args);
    assert!(ok, "{out}");
    std::fs::read(ca.dir.join("req.der")).unwrap()
}

/// `openssl ocsp` verifying a saved response for `certs`: its output.
/// `extra` carries the CertID hash option (`-sha256`), which must come before `-cert`.
fn openssl_check(ca: &TestCa, file: &str, resp: &[u8], extra: &[&str], certs: &[&str]) -> String {
    ca.write(file, resp);
    let mut args = vec![
        "ocsp", "-respin", file, "-issuer", "ca.pem", "-CAfile", "ca.pem",
    ];
    // No -VAfile or trust flags: the issuer signs directly, which plain clients accept.
    args.extend_from_slice(&["-no_nonce", "-resp_text"]);
    args.extend(extra.iter().filter(|a| a.starts_with("-sha")));
    for c in certs {
        args.extend_from_slice(&["-cert", c]);
    }
    let (ok, out) = ca.openssl(&args);
    assert!(ok && out.contains("Response verify OK"), "{out}");
    out
}

fn single(id: &RequestedCertId, status: CertStatus, t: i64) -> SingleStatus {
    SingleStatus {
        cert_id_der: id.der.clone(),
        status,
        this_update: t,
        next_update: t + 2 * HOUR,
    }
}

#[test]
fn openssl_requests_parse() {
    let ca = TestCa::new(Kind::P256, true);
    let serial = [0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01];
    ca.leaf("leaf", &serial);
    let cert = ca.der();
    for (extra, hash) in [
        (&["-no_nonce"][..], HashAlg::Sha1),
        (&[], HashAlg::Sha1),
        (&["-sha256"], HashAlg::Sha256),
        (&["-sha384", "-no_nonce"], HashAlg::Sha384),
        (&["-sha512"], HashAlg::Sha512),
    ] {
        let ids = parse_request(&openssl_request(&ca, extra, &["leaf.pem"])).unwrap();
        assert_eq!(ids.len(), 1);
        let (name_hash, key_hash) = issuer_hashes(&cert, hash).unwrap();
        let key = CertIdKey {
            hash,
            issuer_name_hash: name_hash,
            issuer_key_hash: key_hash,
            serial: serial.to_vec(),
        };
        assert_eq!(ids[0].key, key, "{extra:?}");
        // openssl sends the canonical form (NULL parameters).
        assert_eq!(ids[0].der, key.to_der(), "{extra:?}");
    }
    // A signed request: the signature (and the certificates it carries) are ignored.
    ca.write("ca.key", &ca.key.private_key_to_pem_pkcs8().unwrap());
    let signed = openssl_request(
        &ca,
        &["-signer", "ca.pem", "-signkey", "ca.key"],
        &["leaf.pem"],
    );
    let ids = parse_request(&signed).unwrap();
    assert_eq!(ids[0].key.serial, serial);
    assert!(signed.len() > 300, "not signed: {} bytes", signed.len());

    assert_eq!(
        responder_key_hash(&cert).unwrap(),
        issuer_hashes(&cert, HashAlg::Sha1).unwrap().1
    );
}

#[test]
fn responses_verify_with_openssl() {
    for kind in ALL_KINDS {
        let ca = TestCa::new(kind, true);
        ca.leaf("leaf", &[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]);
        ca.leaf("other", &[0xff, 0x00, 0x01]);
        let responder = responder_key_hash(&ca.der()).unwrap();
        let t = now();
        for extra in [&["-no_nonce"][..], &[], &["-sha256"]] {
            let ids = parse_request(&openssl_request(&ca, extra, &["leaf.pem"])).unwrap();
            let good = sign_response(
                &responder,
                t,
                &[single(&ids[0], CertStatus::Good, t)],
                &ca.signer(),
            )
            .unwrap();
            let out = openssl_check(&ca, "good.der", &good, extra, &["leaf.pem"]);
            assert!(out.contains("leaf.pem: good"), "{kind:?} {extra:?}: {out}");
            assert!(
                out.contains(&format!("Responder Id: {}", hex_upper(&responder)))
                    && !out.contains("Response Extensions"),
                "{out}"
            );

            let revoked = CertStatus::Revoked {
                at: t - HOUR,
                reason: RevocationReason::KeyCompromise,
            };
            let resp =
                sign_response(&responder, t, &[single(&ids[0], revoked, t)], &ca.signer()).unwrap();
            let out = openssl_check(&ca, "revoked.der", &resp, extra, &["leaf.pem"]);
            assert!(
                out.contains("leaf.pem: revoked") && out.contains("Reason: keyCompromise"),
                "{kind:?}: {out}"
            );
        }
        // Several CertIDs in one request, one response for all; Unspecified has no reason.
        let ids = parse_request(&openssl_request(
            &ca,
            &["-no_nonce"],
            &["leaf.pem", "other.pem"],
        ))
        .unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1].key.serial, [0xff, 0x00, 0x01]);
        let singles = [
            single(
                &ids[0],
                CertStatus::Revoked {
                    at: t - 60,
                    reason: RevocationReason::Unspecified,
                },
                t,
            ),
            single(&ids[1], CertStatus::Unknown, t),
        ];
        let resp = sign_response(&responder, t, &singles, &ca.signer()).unwrap();
        let out = openssl_check(&ca, "multi.der", &resp, &[], &["leaf.pem", "other.pem"]);
        assert!(
            out.contains("leaf.pem: revoked") && out.contains("other.pem: unknown"),
            "{kind:?}: {out}"
        );
        assert!(!out.contains("Reason:"), "{out}");
        // The split API gives the same bytes for deterministic signatures.
        if !matches!(kind, Kind::P256) {
            let data = response_data_der(&responder, t, &singles).unwrap();
            let sig = ca.signer().sign(&data).unwrap();
            assert_eq!(assemble(&data, ca.alg, &sig).unwrap(), resp);
        }
    }
}

#[test]
fn response_layout() {
    let key = CertIdKey {
        hash: HashAlg::Sha1,
        issuer_name_hash: vec![1; 20],
        issuer_key_hash: vec![2; 20],
        serial: vec![0x80],
    };
    let t = 2_524_607_999; // 2049-12-31T23:59:59Z: GeneralizedTime even before 2050
    let singles = [SingleStatus {
        cert_id_der: key.to_der(),
        status: CertStatus::Good,
        this_update: t,
        next_update: t + 1,
    }];
    let data = response_data_der(&[3; 20], t, &singles).unwrap();
    let decoded: rasn_ocsp::ResponseData = rasn::der::decode(&data).unwrap();
    assert_eq!(
        decoded.responder_id,
        rasn_ocsp::ResponderId::ByKey(vec![3u8; 20].into())
    );
    assert!(decoded.response_extensions.is_none());
    assert_eq!(
        decoded.responses[0].cert_status,
        rasn_ocsp::CertStatus::Good
    );
    assert_eq!(
        rasn::der::encode(&decoded.responses[0].cert_id).unwrap(),
        key.to_der()
    );
    let text = String::from_utf8_lossy(&data);
    assert!(
        text.contains("20491231235959Z") && text.contains("20500101000000Z"),
        "{text}"
    );

    let resp = assemble(&data, SignatureAlgorithm::Sha256WithEcdsa, &[0x30, 0x00]).unwrap();
    let decoded: rasn_ocsp::OcspResponse = rasn::der::decode(&resp).unwrap();
    assert_eq!(decoded.status, rasn_ocsp::OcspResponseStatus::Successful);
    let bytes = decoded.bytes.unwrap();
    assert_eq!(bytes.r#type.to_string(), "1.3.6.1.5.5.7.48.1.1");
    let basic: rasn_ocsp::BasicOcspResponse = rasn::der::decode(&bytes.response).unwrap();
    assert!(basic.certs.is_none());
    assert_eq!(rasn::der::encode(&basic.tbs_response_data).unwrap(), data);

    assert!(response_data_der(&[3; 20], t, &[]).is_err());
    let bad = SingleStatus {
        cert_id_der: vec![0x30, 0x01],
        ..singles[0].clone()
    };
    assert!(response_data_der(&[3; 20], t, &[bad]).is_err());
    assert!(response_data_der(&[3; 32], t, &singles).is_err());
}

#[test]
fn certid_params_are_echoed_as_sent() {
    // A CertID whose hashAlgorithm has no parameters (as some clients send it).
    let canonical = cert_id_der(HashAlg::Sha256, &[1; 32], &[2; 32], &[0x05]);
    let (_, content, _) = read_tlv(&canonical).unwrap();
    let (_, alg, rest) = read_tlv(content).unwrap();
    let alg_no_params = tlv(TAG_SEQUENCE, &alg[..alg.len() - 2]);
    let absent = tlv(TAG_SEQUENCE, &[&alg_no_params[..], rest].concat());
    for cert_id in [canonical.clone(), absent.clone()] {
        let request = request_der(&[&cert_id]);
        let ids = parse_request(&request).unwrap();
        assert_eq!(ids[0].der, cert_id);
        assert_eq!(ids[0].key.hash, HashAlg::Sha256);
        assert_eq!(ids[0].key.serial, [0x05]);
    }
    assert_ne!(canonical, absent);
}

#[test]
fn bad_requests_are_refused() {
    let good = cert_id_der(HashAlg::Sha1, &[1; 20], &[2; 20], &[0x05]);
    assert!(parse_request(&request_der(&[&good])).is_ok());
    assert_eq!(
        parse_request(&request_der(&[])),
        Err(OcspRequestError::Empty)
    );
    let mut trailing = request_der(&[&good]);
    trailing.push(0);
    assert!(matches!(
        parse_request(&trailing),
        Err(OcspRequestError::Malformed(_))
    ));
    // MD5 is no CertID hash of ours.
    let md5 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05];
    let md5_id = swap_alg(&good, &md5);
    let err = parse_request(&request_der(&[&md5_id])).unwrap_err();
    assert!(matches!(err, OcspRequestError::UnknownHash(_)), "{err:?}");
    assert_eq!(err.status(), OcspErrorStatus::MalformedRequest);
    for serial in [&[0x00][..], &[0xff]] {
        let id = [&good[..good.len() - 1], serial].concat();
        let err = parse_request(&request_der(&[&id])).unwrap_err();
        assert_eq!(err, OcspRequestError::NonPositiveSerial);
        assert_eq!(err.status(), OcspErrorStatus::Unauthorized);
    }
    assert!(parse_request(b"").is_err());
    assert!(parse_request(b"GET / HTTP/1.1\r\n").is_err());
}

#[test]
fn mangled_requests_never_panic() {
    let ca = TestCa::new(Kind::P256, true);
    ca.leaf("leaf", &[0x42; 16]);
    for request in [
        openssl_request(&ca, &[], &["leaf.pem"]),
        openssl_request(&ca, &["-sha256"], &["leaf.pem"]),
    ] {
        for cut in 0..request.len() {
            assert!(parse_request(&request[..cut]).is_err());
        }
        for bit in 0..request.len() * 8 {
            let mut flipped = request.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let _ = parse_request(&flipped);
        }
        for (i, byte) in [0x00, 0x7f, 0x80, 0x81, 0x84, 0xff].into_iter().enumerate() {
            for at in 0..request.len() {
                let mut mangled = request.clone();
                mangled[at] = byte;
                mangled.truncate(request.len() - i);
                let _ = parse_request(&mangled);
            }
        }
    }
}

#[test]
fn error_responses() {
    for (status, code) in [
        (
            OcspErrorStatus::MalformedRequest,
            rasn_ocsp::OcspResponseStatus::MalformedRequest,
        ),
        (
            OcspErrorStatus::InternalError,
            rasn_ocsp::OcspResponseStatus::InternalError,
        ),
        (
            OcspErrorStatus::TryLater,
            rasn_ocsp::OcspResponseStatus::TryLater,
        ),
        (
            OcspErrorStatus::Unauthorized,
            rasn_ocsp::OcspResponseStatus::Unauthorized,
        ),
    ] {
        let decoded: rasn_ocsp::OcspResponse = rasn::der::decode(error_response(status)).unwrap();
        assert_eq!((decoded.status, decoded.bytes), (code, None));
    }
}

#[test]
fn get_path_variants() {
    let ca = TestCa::new(Kind::P256, true);
    ca.leaf("leaf", &[0x42; 16]);
    // Nonces make requests random: find one whose standard base64 has '+', '/' and padding.
    let std_b64 = base64::engine::general_purpose::STANDARD;
    let hashes = [&[][..], &["-sha256"], &["-sha384"], &["-sha512"]];
    let (request, b64) = (0..400)
        .map(|i| openssl_request(&ca, hashes[i % 4], &["leaf.pem"]))
        .map(|r| {
            let b64 = std_b64.encode(&r);
            (r, b64)
        })
        .find(|(_, b)| b.contains('+') && b.contains('/') && b.ends_with('='))
        .unwrap();
    assert_eq!(parse_request(&request).unwrap().len(), 1);
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&request);
    let unpadded = b64.trim_end_matches('=');
    let variants = [
        url.clone(),                                // the seed's form
        format!("{url}{}", &b64[unpadded.len()..]), // base64url, padded
        b64.clone(),                                // raw standard, '/' inside
        unpadded.to_string(),
        b64.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D"), // RFC 6960 App. A
        b64.replace('+', "%2b")
            .replace('/', "%2f")
            .replace('=', "%3d"),
        b64.replace('+', "%2B").replace('=', "%3D"),
        b64.replace('+', " "),
        b64.replace('+', "%20"),
        unpadded.replace('+', " "),
        format!("/{b64}"),
        b64.replace('M', "%4D"),
    ];
    for v in &variants {
        assert_eq!(decode_get_path(v).as_ref(), Ok(&request), "{v}");
    }
    for bad in ["", "/", "==", "%", "%2", "%zz", "MEow*", "MEowQ", "%C3%A9"] {
        let err = decode_get_path(bad).unwrap_err();
        assert_eq!(err.status(), OcspErrorStatus::MalformedRequest, "{bad}");
    }
    assert_eq!(
        decode_get_path(&"A".repeat(MAX_GET_PATH + 1)),
        Err(OcspRequestError::PathTooLong)
    );
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// An unsigned OCSPRequest holding these CertIDs.
fn request_der(cert_ids: &[&[u8]]) -> Vec<u8> {
    let list: Vec<u8> = cert_ids
        .iter()
        .flat_map(|id| tlv(TAG_SEQUENCE, id))
        .collect();
    tlv(TAG_SEQUENCE, &tlv(TAG_SEQUENCE, &tlv(TAG_SEQUENCE, &list)))
}

/// A CertID with another hashAlgorithm OID (parameters dropped).
fn swap_alg(cert_id: &[u8], oid_tlv: &[u8]) -> Vec<u8> {
    let (_, content, _) = read_tlv(cert_id).unwrap();
    let (_, _, rest) = read_tlv(content).unwrap();
    tlv(
        TAG_SEQUENCE,
        &[&tlv(TAG_SEQUENCE, oid_tlv)[..], rest].concat(),
    )
}

/// `single_cert_id` may only answer for requests that `parse_request` reads as that one CertID:
/// checked on real requests and on every mutation of them that still slices out a DER CertID.
#[test]
fn single_cert_id_agrees_with_the_full_parse() {
    let ca = TestCa::new(Kind::P256, true);
    ca.leaf("leaf", &[0x42; 16]);
    ca.leaf("leaf2", &[0x43; 16]);
    ca.write("ca.key", &ca.key.private_key_to_pem_pkcs8().unwrap());
    let plain = openssl_request(&ca, &["-no_nonce"], &["leaf.pem"]);
    let nonce = openssl_request(&ca, &[], &["leaf.pem"]);
    let sha256 = openssl_request(&ca, &["-sha256"], &["leaf.pem"]);
    let two = openssl_request(&ca, &["-no_nonce"], &["leaf.pem", "leaf2.pem"]);
    let signed = openssl_request(
        &ca,
        &["-signer", "ca.pem", "-signkey", "ca.key"],
        &["leaf.pem"],
    );
    for request in [&plain, &nonce, &sha256] {
        let ids = parse_request(request).unwrap();
        assert_eq!(single_cert_id(request), Some(&ids[0].der[..]));
    }
    assert_eq!(single_cert_id(&two), None);
    assert_eq!(single_cert_id(&signed), None);
    assert!(is_presigned_form(&parse_request(&plain).unwrap()[0].der));
    assert!(!is_presigned_form(&parse_request(&sha256).unwrap()[0].der));
    let two_ids: Vec<u8> = parse_request(&two)
        .unwrap()
        .iter()
        .flat_map(|r| r.der.clone())
        .collect();
    let serials: Vec<&[u8]> = cert_id_serials(&two_ids).collect();
    assert_eq!(serials, [&[0x42; 16][..], &[0x43; 16][..]]);

    let agrees = |request: &[u8]| {
        let Some(id) = single_cert_id(request) else {
            return;
        };
        // Only a DER CertID can be a cache key.
        let is_key = parse_request(&request_der(&[id])).is_ok_and(|ids| ids[0].der == id);
        if is_key {
            let ids = parse_request(request).unwrap_or_else(|e| panic!("{e}: {request:02x?}"));
            assert_eq!(ids.len(), 1, "{request:02x?}");
            assert_eq!(ids[0].der, id, "{request:02x?}");
        }
    };
    for request in [&plain, &nonce, &sha256, &two, &signed] {
        for cut in 0..request.len() {
            agrees(&request[..cut]);
        }
        for bit in 0..request.len() * 8 {
            let mut flipped = request.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            agrees(&flipped);
        }
        for byte in [
            0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x30, 0x7f, 0x80, 0x81, 0xa0, 0xa1, 0xa2, 0xff,
        ] {
            for at in 0..request.len() {
                let mut mangled = request.clone();
                mangled[at] = byte;
                agrees(&mangled);
            }
        }
    }
    // Hand-made shapes: a version, a requestorName, extensions that are not DER.
    let id = parse_request(&plain).unwrap()[0].der.clone();
    let req = |tbs: Vec<u8>| tlv(TAG_SEQUENCE, &tlv(TAG_SEQUENCE, &tbs));
    let list = tlv(TAG_SEQUENCE, &tlv(TAG_SEQUENCE, &id));
    let nonce_ext = tlv(
        TAG_SEQUENCE,
        &[
            &[
                0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02,
            ][..],
            &tlv(TAG_OCTET_STRING, &tlv(TAG_OCTET_STRING, &[7; 16])),
        ]
        .concat(),
    );
    let exts = |e: &[u8]| tlv(0xa2, &tlv(TAG_SEQUENCE, e));
    let version = [0xa0, 0x03, 0x02, 0x01, 0x00];
    assert_eq!(single_cert_id(&req([&version[..], &list].concat())), None);
    assert_eq!(
        single_cert_id(&req([&list[..], &exts(&nonce_ext)].concat())),
        Some(&id[..])
    );
    assert_eq!(single_cert_id(&req([&list[..], &exts(&[])].concat())), None);
    // critical FALSE written out: BER, not DER.
    let with_false = tlv(
        TAG_SEQUENCE,
        &[
            &[0x06, 0x01, 0x2b, 0x01, 0x01, 0x00][..],
            &tlv(TAG_OCTET_STRING, &[]),
        ]
        .concat(),
    );
    assert_eq!(
        single_cert_id(&req([&list[..], &exts(&with_false)].concat())),
        None
    );
    for request in [
        req([&version[..], &list].concat()),
        req([&list[..], &exts(&nonce_ext)].concat()),
    ] {
        agrees(&request);
    }
}

/// The unescaped fast route of `decode_get_path_into` decodes as the general one does.
#[test]
fn get_path_fast_route_agrees() {
    let chars = b"AMQZaqz09+/-_=% 2Bf";
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut tails: Vec<String> = [
        "", "/", "=", "MEow", "MEow==", "MEo", "_MEow", "/MEow", "ME-w", "ME+w", "ME-+",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..20_000 {
        let len = (next() % 24) as usize;
        tails.push(
            (0..len)
                .map(|_| char::from(chars[(next() % chars.len() as u64) as usize]))
                .collect(),
        );
    }
    let request: Vec<u8> = (0..83).map(|i| (i * 37 + 11) as u8).collect();
    for engine in [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        tails.push(engine.encode(&request));
    }
    for tail in &tails {
        let (mut a, mut b) = ([0; MAX_GET_REQUEST], [0; MAX_GET_REQUEST]);
        assert_eq!(
            decode_get_path_into(tail, &mut a).map(<[u8]>::to_vec),
            decode_escaped(tail, &mut b).map(<[u8]>::to_vec),
            "{tail:?}"
        );
    }
}
