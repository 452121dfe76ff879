//! Certificate signing requests: parse PEM/DER PKCS#10, verify the proof of possession.
//!
//! The fields are read with pcad's own DER reader (the one `cert` uses) rather than
//! `x509_cert::request::CertReq`, because der 0.8 cannot decode a UniversalString value, which
//! the seed allows in names; the signature is checked by OpenSSL over the request as received.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use const_oid::ObjectIdentifier;

use super::cert::{key_algorithm_of_spki, Sans, SubjectInfo};
use super::der_util::{self, context, tag};
use super::{ext, name, pem, KeyAlgorithm, PkiError};

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
    let info = req.take(tag::SEQUENCE).map_err(prefixed)?;
    let mut info = info.reader();
    let version = info.take(tag::INTEGER).map_err(prefixed)?;
    if version.value != [0] {
        return Err(invalid("only version 1 requests are supported"));
    }
    let subject_der = info.take(tag::SEQUENCE).map_err(prefixed)?.raw;
    let spki_der = info.take(tag::SEQUENCE).map_err(prefixed)?.raw;
    let attributes = info.take(context(0, true)).map_err(prefixed)?;
    info.finish().map_err(prefixed)?;

    let key_algorithm = key_algorithm_of_spki(spki_der).map_err(prefixed)?;
    verify(der)?;

    let subject = name::subject_info(subject_der).map_err(prefixed)?;
    let sans = requested_sans(attributes.value).map_err(prefixed)?;
    Ok(Csr {
        subject,
        spki_der: spki_der.to_vec(),
        key_algorithm,
        sans,
    })
}

/// Checks the request's signature with its own public key (proof of possession).
fn verify(der: &[u8]) -> Result<(), PkiError> {
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
