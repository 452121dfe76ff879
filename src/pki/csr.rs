//! Certificate signing requests: parse PEM/DER PKCS#10, verify the proof of possession.
//!
//! The fields are read with pcad's own DER reader (the one `cert` uses) rather than
//! `x509_cert::request::CertReq`, because der 0.8 cannot decode a UniversalString value, which
//! the seed allows in names. The signature is checked over the request info as received: by
//! ring for the common algorithms (a quarter of the CPU of OpenSSL's `X509_REQ_verify`, which
//! parses the whole request again), by OpenSSL for everything else and for whatever ring
//! refuses, so that the set of accepted requests is OpenSSL's.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use const_oid::ObjectIdentifier;

use super::alg::{
    ECDSA_WITH_SHA256, ECDSA_WITH_SHA384, ED25519, SHA256_WITH_RSA, SHA384_WITH_RSA,
    SHA512_WITH_RSA,
};
use super::cert::{key_algorithm_of_spki, subject_public_key_bits, Sans, SubjectInfo};
use super::der_util::{self, context, tag};
use super::{ext, name, pem, HashAlg, KeyAlgorithm, KeyFamily, PkiError};

/// `id-RSASSA-PSS` (RFC 4055).
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// `id-mgf1` (RFC 4055).
const MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");

/// PKCS#9 `extensionRequest` attribute.
pub const EXTENSION_REQUEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");

/// A parsed CSR whose signature verified.
#[derive(Clone, Debug)]
pub struct Csr {
    /// The subject, attribute by attribute (attributes outside SubjectInfo land in `other`).
    pub subject: SubjectInfo,
    pub spki_der: Vec<u8>,
    pub key_algorithm: KeyAlgorithm,
    /// SANs from the extensionRequest attribute.
    pub sans: Sans,
}

/// Parses a PEM (`CERTIFICATE REQUEST` or `NEW CERTIFICATE REQUEST`) or bare base64 DER PKCS#10
/// request and verifies its self-signature. Errors start with `csr: `.
pub fn parse(pem_text: &str) -> Result<Csr, PkiError> {
    let der = if pem_text.contains("-----BEGIN") {
        pem::decode_first(
            pem_text,
            &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"],
        )
        .map_err(prefixed)?
        .1
    } else {
        let b64: String = pem_text
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        STANDARD
            .decode(b64)
            .map_err(|_| invalid("not a PEM or base64 certificate request"))?
    };
    parse_der(&der)
}

/// Parses a DER PKCS#10 request and verifies its self-signature.
pub fn parse_der(der: &[u8]) -> Result<Csr, PkiError> {
    let mut req = der_util::parse_one(der, tag::SEQUENCE)
        .map_err(prefixed)?
        .reader();
    let info_tlv = req.take(tag::SEQUENCE).map_err(prefixed)?;
    let mut info = info_tlv.reader();
    let version = info.take(tag::INTEGER).map_err(prefixed)?;
    if version.value != [0] {
        return Err(invalid("only version 1 requests are supported"));
    }
    let subject_der = info.take(tag::SEQUENCE).map_err(prefixed)?.raw;
    let spki_der = info.take(tag::SEQUENCE).map_err(prefixed)?.raw;
    let attributes = info.take(context(0, true)).map_err(prefixed)?;
    info.finish().map_err(prefixed)?;

    let key_algorithm = key_algorithm_of_spki(spki_der).map_err(prefixed)?;
    if ring_verify(key_algorithm, spki_der, info_tlv.raw, req) != Some(true) {
        openssl_verify(der)?;
    }

    let subject = name::subject_info(subject_der).map_err(prefixed)?;
    let sans = requested_sans(attributes.value).map_err(prefixed)?;
    Ok(Csr {
        subject,
        spki_der: spki_der.to_vec(),
        key_algorithm,
        sans,
    })
}

/// Checks the request's signature with its own public key (proof of possession) with ring:
/// `Some(true)` when it verifies, `Some(false)` when ring says it does not, `None` when ring
/// cannot judge (an algorithm or encoding it lacks: P-224, P-521, ECDSA with SHA-512, SHA-1,
/// PSS parameters other than the usual ones). `rest` reads the request after its info.
///
/// ring is stricter than OpenSSL about keys (e.g. compressed EC points, huge RSA exponents), so
/// anything but `Some(true)` is left to OpenSSL.
fn ring_verify(
    key: KeyAlgorithm,
    spki_der: &[u8],
    info: &[u8],
    mut rest: der_util::Reader<'_>,
) -> Option<bool> {
    use ring::signature as rs;
    let mut alg = rest.take(tag::SEQUENCE).ok()?.reader();
    let signature = rest.take(tag::BIT_STRING).ok()?.bit_string().ok()?;
    rest.finish().ok()?;
    let oid = alg.read().ok()?.oid().ok()?;
    let params = if alg.is_empty() {
        None
    } else {
        Some(alg.read().ok()?)
    };
    alg.finish().ok()?;
    // PKCS#1 v1.5 takes NULL or absent parameters; ECDSA and Ed25519 none.
    let null_or_absent = params.is_none_or(|p| p.tag == tag::NULL && p.value.is_empty());
    let verifier: &dyn rs::VerificationAlgorithm = match (key.family(), oid) {
        (KeyFamily::Rsa, SHA256_WITH_RSA) if null_or_absent => &rs::RSA_PKCS1_2048_8192_SHA256,
        (KeyFamily::Rsa, SHA384_WITH_RSA) if null_or_absent => &rs::RSA_PKCS1_2048_8192_SHA384,
        (KeyFamily::Rsa, SHA512_WITH_RSA) if null_or_absent => &rs::RSA_PKCS1_2048_8192_SHA512,
        (KeyFamily::Rsa, RSASSA_PSS) => match pss_hash(params?)? {
            HashAlg::Sha256 => &rs::RSA_PSS_2048_8192_SHA256,
            HashAlg::Sha384 => &rs::RSA_PSS_2048_8192_SHA384,
            HashAlg::Sha512 => &rs::RSA_PSS_2048_8192_SHA512,
            HashAlg::Sha1 => return None,
        },
        (KeyFamily::Ec, _) if params.is_some() => return None,
        (KeyFamily::Ec, ECDSA_WITH_SHA256) => match key {
            KeyAlgorithm::P256 => &rs::ECDSA_P256_SHA256_ASN1,
            KeyAlgorithm::P384 => &rs::ECDSA_P384_SHA256_ASN1,
            _ => return None,
        },
        (KeyFamily::Ec, ECDSA_WITH_SHA384) => match key {
            KeyAlgorithm::P256 => &rs::ECDSA_P256_SHA384_ASN1,
            KeyAlgorithm::P384 => &rs::ECDSA_P384_SHA384_ASN1,
            _ => return None,
        },
        (KeyFamily::Ed25519, ED25519) if params.is_none() => &rs::ED25519,
        _ => return None,
    };
    let key_bits = subject_public_key_bits(spki_der);
    Some(
        rs::UnparsedPublicKey::new(verifier, key_bits)
            .verify(info, signature)
            .is_ok(),
    )
}

/// The hash of RSASSA-PSS parameters that ring verifies: SHA-2 hash, MGF1 with the same hash,
/// salt as long as the hash, the usual trailer. `None` for anything else.
fn pss_hash(params: der_util::Tlv<'_>) -> Option<HashAlg> {
    if params.tag != tag::SEQUENCE {
        return None;
    }
    let mut p = params.reader();
    let hash = hash_of(explicit(&mut p, 0)?)?;
    let mut mgf = der_util::parse_one(explicit(&mut p, 1)?.raw, tag::SEQUENCE)
        .ok()?
        .reader();
    if mgf.read().ok()?.oid().ok()? != MGF1 || hash_of(mgf.read().ok()?)? != hash {
        return None;
    }
    mgf.finish().ok()?;
    let salt = explicit(&mut p, 2)?;
    let hash_len = hash.digest(b"").len();
    if salt.tag != tag::INTEGER || salt.value != [hash_len as u8] {
        return None;
    }
    if !p.is_empty() {
        let trailer = explicit(&mut p, 3)?;
        if trailer.tag != tag::INTEGER || trailer.value != [1] {
            return None;
        }
    }
    p.finish().ok()?;
    (hash != HashAlg::Sha1).then_some(hash)
}

/// The AlgorithmIdentifier of a hash, whose parameters are NULL or absent.
fn hash_of(t: der_util::Tlv<'_>) -> Option<HashAlg> {
    let mut a = der_util::parse_one(t.raw, tag::SEQUENCE).ok()?.reader();
    let h = HashAlg::from_oid(&a.read().ok()?.oid().ok()?)?;
    if let Some(n) = a.optional(tag::NULL).ok()? {
        if !n.value.is_empty() {
            return None;
        }
    }
    a.finish().ok()?;
    Some(h)
}

/// The element inside the next `[n] EXPLICIT` field.
fn explicit<'a>(p: &mut der_util::Reader<'a>, n: u8) -> Option<der_util::Tlv<'a>> {
    let outer = p.take(context(n, true)).ok()?;
    der_util::parse_one(outer.value, outer.value.first().copied()?).ok()
}

/// Checks the request's signature with OpenSSL (the algorithms ring lacks).
fn openssl_verify(der: &[u8]) -> Result<(), PkiError> {
    let bad = || invalid("signature does not verify");
    let req = openssl::x509::X509Req::from_der(der).map_err(|_| bad())?;
    let key = req.public_key().map_err(|_| bad())?;
    match req.verify(&key) {
        Ok(true) => Ok(()),
        _ => Err(bad()),
    }
}

/// The subjectAltName of the extensionRequest attribute, if any.
fn requested_sans(attributes: &[u8]) -> Result<Sans, PkiError> {
    let mut attrs = der_util::Reader::new(attributes);
    while !attrs.is_empty() {
        let mut attr = attrs.take(tag::SEQUENCE)?.reader();
        if attr.read()?.oid()? != EXTENSION_REQUEST {
            continue;
        }
        let values = attr.take(tag::SET)?;
        let mut values = values.reader();
        let extensions = values.take(tag::SEQUENCE)?;
        if let Some((_, value)) = ext::find(extensions.value, &ext::SUBJECT_ALT_NAME)? {
            return ext::decode_sans(value);
        }
    }
    Ok(Sans::default())
}

fn invalid(what: &str) -> PkiError {
    PkiError::Invalid(format!("csr: {what}"))
}

fn prefixed(e: PkiError) -> PkiError {
    PkiError::Invalid(format!("csr: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::keygen::SoftKey;
    use std::process::Command;

    fn openssl_csr(keygen: &[&str], extra: &[&str]) -> (String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let out = Command::new("openssl")
            .args(["genpkey", "-out"])
            .arg(&key)
            .args(keygen)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let out = Command::new("openssl")
            .args(["req", "-new", "-key"])
            .arg(&key)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let pem = String::from_utf8(out.stdout).unwrap();
        let spki = Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&key)
            .output()
            .unwrap()
            .stdout;
        (pem, spki)
    }

    #[test]
    fn openssl_requests_parse() {
        let cases: [(&[&str], KeyAlgorithm); 3] = [
            (
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                KeyAlgorithm::Rsa2048,
            ),
            (
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                KeyAlgorithm::P256,
            ),
            (&["-algorithm", "ED25519"], KeyAlgorithm::Ed25519),
        ];
        for (keygen, alg) in cases {
            let (pem, spki) = openssl_csr(
                keygen,
                &[
                    "-subj",
                    "/C=KR/ST=Seoul/O=Example/OU=Dev/CN=www.example.com/2.5.4.12=Boss",
                    "-addext",
                    "subjectAltName=DNS:www.example.com,IP:10.1.2.3,URI:https://example.com,\
                     email:a@example.com,otherName:1.3.6.1.4.1.311.20.2.3;UTF8:upn@example.com",
                ],
            );
            let csr = parse(&pem).unwrap();
            assert_eq!(csr.key_algorithm, alg);
            assert_eq!(csr.spki_der, spki);
            assert_eq!(csr.subject.common_name.as_deref(), Some("www.example.com"));
            assert_eq!(csr.subject.country.as_deref(), Some("KR"));
            assert_eq!(csr.subject.organizational_unit.as_deref(), Some("Dev"));
            assert_eq!(csr.subject.other.len(), 1);
            assert_eq!(csr.subject.other[0].value, "Boss");
            assert_eq!(csr.sans.dns, ["www.example.com"]);
            assert_eq!(
                csr.sans.ip,
                ["10.1.2.3".parse::<std::net::IpAddr>().unwrap()]
            );
            assert_eq!(csr.sans.uri, ["https://example.com"]);
            assert_eq!(csr.sans.email, ["a@example.com"]);
            assert_eq!(csr.sans.other[0].value, "upn@example.com");
            // The same request as bare base64 DER, and under the legacy label.
            let der = pem::decode_first(&pem, &["CERTIFICATE REQUEST"]).unwrap().1;
            assert_eq!(parse(&STANDARD.encode(&der)).unwrap().spki_der, spki);
            let legacy = pem::encode("NEW CERTIFICATE REQUEST", &der);
            assert_eq!(parse(&legacy).unwrap().key_algorithm, alg);
        }
    }

    #[test]
    fn flipped_signature_and_foreign_keys_are_rejected() {
        let (pem, _) = openssl_csr(
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            &["-subj", "/CN=x"],
        );
        let mut der = pem::decode_first(&pem, &["CERTIFICATE REQUEST"]).unwrap().1;
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let err = parse_der(&der).unwrap_err().to_string();
        assert_eq!(err, "csr: signature does not verify");

        let (pem, _) = openssl_csr(
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            &["-subj", "/CN=x"],
        );
        let err = parse(&pem).unwrap_err().to_string();
        assert!(
            err.starts_with("csr: key RSA-1024 is not in the KeyInfo table"),
            "{err}"
        );
        let (pem, _) = openssl_csr(
            &[
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:secp256k1",
            ],
            &["-subj", "/CN=x"],
        );
        let err = parse(&pem).unwrap_err().to_string();
        assert!(
            err.starts_with("csr: key EC on curve 1.3.132.0.10"),
            "{err}"
        );
        assert!(parse("hello").unwrap_err().to_string().starts_with("csr: "));
    }

    /// What ring alone says of a DER request (`None`: left to OpenSSL).
    fn ring_verdict(der: &[u8]) -> Option<bool> {
        let mut req = der_util::parse_one(der, tag::SEQUENCE).unwrap().reader();
        let info = req.take(tag::SEQUENCE).unwrap();
        let mut i = info.reader();
        i.take(tag::INTEGER).unwrap();
        i.take(tag::SEQUENCE).unwrap();
        let spki = i.take(tag::SEQUENCE).unwrap().raw;
        let key = key_algorithm_of_spki(spki).unwrap();
        ring_verify(key, spki, info.raw, req)
    }

    /// The request with one bit of its signature flipped, and with one bit of its subject
    /// flipped (both must fail).
    fn tampered(der: &[u8]) -> [Vec<u8>; 2] {
        let mut sig = der.to_vec();
        let last = sig.len() - 1;
        sig[last] ^= 0x01;
        let mut info = der.to_vec();
        let at = der.windows(4).position(|w| w == b"ring").unwrap();
        info[at] ^= 0x01;
        [sig, info]
    }

    #[test]
    fn ring_verifies_the_common_algorithms_and_openssl_the_rest() {
        let rsa: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
        let p256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
        let p384: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"];
        let p224: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-224"];
        let p521: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"];
        let ed: &[&str] = &["-algorithm", "ED25519"];
        let pss: &[&str] = &["-sigopt", "rsa_padding_mode:pss"];
        let salt_digest: &[&str] = &["-sigopt", "rsa_pss_saltlen:digest"];
        let salt_20: &[&str] = &["-sigopt", "rsa_pss_saltlen:20"];
        // (key, signing options, whether ring judges it)
        type Case<'a> = (&'a [&'a str], Vec<&'a [&'a str]>, bool);
        let cases: Vec<Case> = vec![
            (rsa, vec![&["-sha256"]], true),
            (rsa, vec![&["-sha384"]], true),
            (rsa, vec![&["-sha512"]], true),
            (rsa, vec![&["-sha256"], pss, salt_digest], true),
            (rsa, vec![&["-sha384"], pss, salt_digest], true),
            (rsa, vec![&["-sha512"], pss, salt_digest], true),
            (p256, vec![&["-sha256"]], true),
            (p256, vec![&["-sha384"]], true),
            (p384, vec![&["-sha256"]], true),
            (p384, vec![&["-sha384"]], true),
            (ed, vec![], true),
            // Left to OpenSSL: curves, hashes and PSS parameters ring lacks.
            (rsa, vec![&["-sha1"]], false),
            (rsa, vec![&["-sha256"], pss, salt_20], false),
            (p256, vec![&["-sha512"]], false),
            (p224, vec![&["-sha256"]], false),
            (p521, vec![&["-sha512"]], false),
        ];
        for (keygen, opts, by_ring) in cases {
            let mut extra = vec!["-subj", "/CN=ring"];
            extra.extend(opts.concat());
            let what = format!("{keygen:?} {extra:?}");
            let (pem, _) = openssl_csr(keygen, &extra);
            let der = pem::decode_first(&pem, &["CERTIFICATE REQUEST"]).unwrap().1;
            assert_eq!(ring_verdict(&der), by_ring.then_some(true), "{what}");
            assert!(parse_der(&der).is_ok(), "{what}");
            for bad in tampered(&der) {
                if by_ring {
                    assert_eq!(ring_verdict(&bad), Some(false), "{what}");
                }
                let err = parse_der(&bad).unwrap_err().to_string();
                assert_eq!(err, "csr: signature does not verify", "{what}");
            }
        }
    }

    #[test]
    fn software_key_requests_parse() {
        use openssl::x509::X509ReqBuilder;
        for alg in KeyAlgorithm::ALL {
            let key = SoftKey::generate(alg).unwrap();
            let pkey =
                openssl::pkey::PKey::private_key_from_pem(key.pkcs8_pem().unwrap().as_bytes())
                    .unwrap();
            let mut b = X509ReqBuilder::new().unwrap();
            b.set_pubkey(&pkey).unwrap();
            let mut subject = openssl::x509::X509NameBuilder::new().unwrap();
            subject.append_entry_by_text("CN", "soft").unwrap();
            b.set_subject_name(&subject.build()).unwrap();
            let md = match alg.family() {
                crate::pki::KeyFamily::Ed25519 => openssl::hash::MessageDigest::null(),
                _ => openssl::hash::MessageDigest::sha384(),
            };
            b.sign(&pkey, md).unwrap();
            let csr = parse_der(&b.build().to_der().unwrap()).unwrap();
            assert_eq!(csr.key_algorithm, alg);
            assert_eq!(csr.spki_der, key.spki_der());
            assert_eq!(csr.subject.common_name.as_deref(), Some("soft"));
            assert!(csr.sans.is_empty());
        }
    }
}
