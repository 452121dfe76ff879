//! Certificates: names, extensions, the issuer and leaf profiles, and reading a certificate back.

use const_oid::ObjectIdentifier;
use der::Encode;

use super::alg::{EC_PUBLIC_KEY, ED25519, RSA_ENCRYPTION};
use super::der_util::{self, context, tag, Tlv};
use super::{ext, name, pem, HashAlg, KeyAlgorithm, PkiError, Signer};

pub use super::ext::key_usage_allowed;
pub use super::fields::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, OidValue, Sans, StringKind, SubjectInfo,
};
pub use super::name::{is_email, is_valid_hostname};

/// Everything that goes into one certificate; `issue` turns it into signed DER.
#[derive(Clone, Debug)]
pub struct CertParams {
    /// Positive big-endian serial, at most 20 octets.
    pub serial: Vec<u8>,
    pub subject: SubjectInfo,
    /// DER of the issuer's certificate; `None` for a self-signed certificate.
    pub issuer_cert: Option<Vec<u8>>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// DER SubjectPublicKeyInfo of the subject's key.
    pub spki_der: Vec<u8>,
    pub basic_constraints: BasicConstraints,
    pub key_usage: Vec<KeyUsage>,
    pub extended_key_usage: Vec<super::oid::Oid>,
    pub policies: Vec<super::oid::Oid>,
    pub sans: Sans,
    pub crl_url: Option<String>,
    pub ocsp_url: Option<String>,
}

/// Builds the TBSCertificate, has `signer` sign it, and returns the certificate DER.
///
/// The issuer name is the issuer certificate's subject, copied byte for byte; the
/// authorityKeyIdentifier is the issuer's subjectKeyIdentifier (a self-signed certificate
/// carries its own). The signer's algorithm must fit the issuer's key.
pub fn issue(params: &CertParams, signer: &dyn Signer) -> Result<Vec<u8>, PkiError> {
    build(params, signer).map(|built| built.der)
}

/// `issue`, with what `parse_info` would read back from the certificate, taken from the parts
/// it was built of rather than by parsing it again.
pub fn issue_with_info(
    params: &CertParams,
    signer: &dyn Signer,
) -> Result<(Vec<u8>, CertInfo), PkiError> {
    let built = build(params, signer)?;
    let digits = match params.serial.iter().position(|b| *b != 0) {
        Some(i) => &params.serial[i..],
        None => &[0u8][..],
    };
    let info = CertInfo {
        subject: name::to_rfc4514(&built.subject)?,
        issuer: name::to_rfc4514(&built.issuer)?,
        // What the encoded name holds (an empty value is left out of it).
        common_name: name::attribute(&built.subject, &name::COMMON_NAME)?,
        serial_hex: der_util::hex(digits),
        not_before: params.not_before,
        not_after: params.not_after,
        spki_der: params.spki_der.clone(),
        key_algorithm: key_algorithm_of_spki(&params.spki_der).ok(),
        subject_key_id: Some(built.subject_key_id),
        sans: params.sans.clone(),
    };
    Ok((built.der, info))
}

/// A signed certificate and the parts of it that `issue_with_info` reports.
struct Built {
    der: Vec<u8>,
    /// DER Names.
    subject: Vec<u8>,
    issuer: Vec<u8>,
    subject_key_id: Vec<u8>,
}

fn build(params: &CertParams, signer: &dyn Signer) -> Result<Built, PkiError> {
    let alg = signer.algorithm();
    let subject = name::encode(&params.subject)?;
    spki_parts(&params.spki_der)?;
    let own_key_id = subject_key_id(&params.spki_der);
    let (issuer_name, issuer_spki, issuer_key_id) = match &params.issuer_cert {
        Some(der) => {
            let issuer = RawCert::parse(der)?;
            let key_id = match ext::find(issuer.extensions, &ext::SUBJECT_KEY_IDENTIFIER)? {
                Some((_, v)) => der_util::parse_one(v, tag::OCTET_STRING)?.value.to_vec(),
                None => subject_key_id(issuer.spki.raw),
            };
            (issuer.subject.raw.to_vec(), issuer.spki.raw, key_id)
        }
        None => (
            subject.clone(),
            params.spki_der.as_slice(),
            own_key_id.clone(),
        ),
    };
    let issuer_key = key_algorithm_of_spki(issuer_spki)?;
    if !alg.fits(issuer_key) {
        return Err(PkiError::Invalid(format!(
            "signature algorithm {} does not fit the issuer's {} key",
            alg.api_name(),
            issuer_key.api_name()
        )));
    }
    if params.not_after < params.not_before {
        return Err(PkiError::Invalid("notAfter is before notBefore".into()));
    }
    if params.serial.iter().all(|b| *b == 0) {
        return Err(PkiError::Invalid("serial number must be positive".into()));
    }
    let serial = der_util::unsigned(&params.serial);
    if serial.len() - 2 > 20 {
        return Err(PkiError::Invalid(
            "serial number is longer than 20 octets".into(),
        ));
    }

    let mut exts = Vec::new();
    match params.basic_constraints {
        BasicConstraints::Ca { path_len } => {
            let value = ext::basic_constraints(true, path_len);
            exts.push(ext::extension(&ext::BASIC_CONSTRAINTS, true, &value));
        }
        BasicConstraints::NotCa => {
            let value = ext::basic_constraints(false, None);
            exts.push(ext::extension(&ext::BASIC_CONSTRAINTS, true, &value));
        }
        BasicConstraints::Absent => {}
    }
    if !params.key_usage.is_empty() {
        let value = ext::key_usage(&params.key_usage);
        exts.push(ext::extension(&ext::KEY_USAGE, true, &value));
    }
    if !params.extended_key_usage.is_empty() {
        let value = ext::oid_sequence(&params.extended_key_usage);
        exts.push(ext::extension(&ext::EXT_KEY_USAGE, false, &value));
    }
    let ski = ext::subject_key_identifier(&own_key_id);
    exts.push(ext::extension(&ext::SUBJECT_KEY_IDENTIFIER, false, &ski));
    let aki = ext::authority_key_identifier(&issuer_key_id);
    exts.push(ext::extension(&ext::AUTHORITY_KEY_IDENTIFIER, false, &aki));
    if !params.sans.is_empty() {
        let value = ext::subject_alt_name(&params.sans)?;
        let critical = name::is_empty(&subject);
        exts.push(ext::extension(&ext::SUBJECT_ALT_NAME, critical, &value));
    }
    if !params.policies.is_empty() {
        let value = ext::certificate_policies(&params.policies);
        exts.push(ext::extension(&ext::CERTIFICATE_POLICIES, false, &value));
    }
    if let Some(url) = &params.crl_url {
        let value = ext::crl_distribution_points(url)?;
        exts.push(ext::extension(&ext::CRL_DISTRIBUTION_POINTS, false, &value));
    }
    if let Some(url) = &params.ocsp_url {
        let value = ext::authority_info_access_ocsp(url)?;
        exts.push(ext::extension(&ext::AUTHORITY_INFO_ACCESS, false, &value));
    }

    let sig_alg = alg.algorithm_identifier().to_der()?;
    let tbs = der_util::seq(&[
        der_util::tlv(context(0, true), &der_util::unsigned(&[2])),
        serial,
        sig_alg.clone(),
        issuer_name.clone(),
        der_util::seq(&[
            der_util::time(params.not_before)?,
            der_util::time(params.not_after)?,
        ]),
        subject.clone(),
        params.spki_der.clone(),
        der_util::tlv(context(3, true), &der_util::seq(&exts)),
    ]);
    let signature = signer.sign(&tbs)?;
    Ok(Built {
        der: der_util::seq(&[tbs, sig_alg, der_util::bit_string(&signature)]),
        subject,
        issuer: issuer_name,
        subject_key_id: own_key_id,
    })
}

/// What the API shows of a certificate.
#[derive(Clone, Debug)]
pub struct CertInfo {
    /// RFC 4514 string, e.g. `CN=Example Root CA,O=Example,C=KR`.
    pub subject: String,
    pub issuer: String,
    pub common_name: Option<String>,
    /// Lowercase hex without separators.
    pub serial_hex: String,
    pub not_before: i64,
    pub not_after: i64,
    pub spki_der: Vec<u8>,
    pub key_algorithm: Option<KeyAlgorithm>,
    pub subject_key_id: Option<Vec<u8>>,
    pub sans: Sans,
}

/// Reads back a certificate DER.
pub fn parse_info(der: &[u8]) -> Result<CertInfo, PkiError> {
    let c = RawCert::parse(der)?;
    let digits = match c.serial.iter().position(|b| *b != 0) {
        Some(i) => &c.serial[i..],
        None => &[0u8][..],
    };
    let subject_key_id = match ext::find(c.extensions, &ext::SUBJECT_KEY_IDENTIFIER)? {
        Some((_, v)) => Some(der_util::parse_one(v, tag::OCTET_STRING)?.value.to_vec()),
        None => None,
    };
    let sans = match ext::find(c.extensions, &ext::SUBJECT_ALT_NAME)? {
        Some((_, v)) => ext::decode_sans(v)?,
        None => Sans::default(),
    };
    Ok(CertInfo {
        subject: name::to_rfc4514(c.subject.raw)?,
        issuer: name::to_rfc4514(c.issuer.raw)?,
        common_name: name::attribute(c.subject.raw, &name::COMMON_NAME)?,
        serial_hex: der_util::hex(digits),
        not_before: c.not_before,
        not_after: c.not_after,
        spki_der: c.spki.raw.to_vec(),
        key_algorithm: key_algorithm_of_spki(c.spki.raw).ok(),
        subject_key_id,
        sans,
    })
}

/// `-----BEGIN CERTIFICATE-----` PEM of a DER certificate.
pub fn to_pem(der: &[u8]) -> String {
    pem::encode("CERTIFICATE", der)
}

/// The DER of the first `CERTIFICATE` block in `pem`.
pub fn from_pem(pem: &str) -> Result<Vec<u8>, PkiError> {
    pem::decode_first(pem, &["CERTIFICATE"]).map(|(_, der)| der)
}

/// The DER subject `Name` of a certificate, exactly as encoded in it (the issuer name of what it
/// signs; OCSP's issuerNameHash is over these bytes).
pub fn subject_name_der(cert_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    Ok(RawCert::parse(cert_der)?.subject.raw.to_vec())
}

/// The key algorithm of a SubjectPublicKeyInfo, if it is one of the seed's table.
pub fn key_algorithm_of_spki(spki_der: &[u8]) -> Result<KeyAlgorithm, PkiError> {
    let not_in_table =
        |what: String| PkiError::Invalid(format!("key {what} is not in the KeyInfo table"));
    let (alg, params, bits) = spki_parts(spki_der)?;
    match alg {
        RSA_ENCRYPTION => {
            let mut r = der_util::parse_one(bits, tag::SEQUENCE)?.reader();
            let n = r.take(tag::INTEGER)?.value;
            let n = &n[n.iter().take_while(|b| **b == 0).count()..];
            let size = n
                .first()
                .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
            match size {
                2048 => Ok(KeyAlgorithm::Rsa2048),
                3072 => Ok(KeyAlgorithm::Rsa3072),
                4096 => Ok(KeyAlgorithm::Rsa4096),
                _ => Err(not_in_table(format!("RSA-{size}"))),
            }
        }
        EC_PUBLIC_KEY => {
            let curve = params
                .filter(|p| p.tag == tag::OID)
                .ok_or_else(|| not_in_table("EC without a named curve".into()))?
                .oid()?;
            KeyAlgorithm::from_curve(&curve)
                .ok_or_else(|| not_in_table(format!("EC on curve {curve}")))
        }
        ED25519 => Ok(KeyAlgorithm::Ed25519),
        other => Err(not_in_table(format!("of algorithm {other}"))),
    }
}

/// The subjectPublicKey BIT STRING's octets (what OCSP's issuerKeyHash hashes); empty when
/// `spki_der` is not a SubjectPublicKeyInfo.
pub fn subject_public_key_bits(spki_der: &[u8]) -> Vec<u8> {
    spki_parts(spki_der)
        .map(|(_, _, bits)| bits.to_vec())
        .unwrap_or_default()
}

/// The key identifier pcad writes for a key: SHA-1 of the subjectPublicKey bits (RFC 5280
/// section 4.2.1.2, method 1).
pub fn subject_key_id(spki_der: &[u8]) -> Vec<u8> {
    HashAlg::Sha1.digest(&subject_public_key_bits(spki_der))
}

/// The parts of a certificate `issue` and `parse_info` look at, borrowed from its DER.
struct RawCert<'a> {
    serial: &'a [u8],
    issuer: Tlv<'a>,
    subject: Tlv<'a>,
    not_before: i64,
    not_after: i64,
    spki: Tlv<'a>,
    /// The contents of the Extensions SEQUENCE (empty when there are none).
    extensions: &'a [u8],
}

impl<'a> RawCert<'a> {
    fn parse(der: &'a [u8]) -> Result<Self, PkiError> {
        let mut cert = der_util::parse_one(der, tag::SEQUENCE)?.reader();
        let tbs = cert.take(tag::SEQUENCE)?;
        cert.take(tag::SEQUENCE)?;
        cert.take(tag::BIT_STRING)?;
        cert.finish()?;
        let mut t = tbs.reader();
        t.optional(context(0, true))?;
        let serial = t.take(tag::INTEGER)?.value;
        t.take(tag::SEQUENCE)?;
        let issuer = t.take(tag::SEQUENCE)?;
        let mut validity = t.take(tag::SEQUENCE)?.reader();
        let not_before = validity.read()?.time()?;
        let not_after = validity.read()?.time()?;
        validity.finish()?;
        let subject = t.take(tag::SEQUENCE)?;
        let spki = t.take(tag::SEQUENCE)?;
        t.optional(context(1, false))?;
        t.optional(context(2, false))?;
        let extensions = match t.optional(context(3, true))? {
            Some(e) => der_util::parse_one(e.value, tag::SEQUENCE)?.value,
            None => &[],
        };
        t.finish()?;
        Ok(RawCert {
            serial,
            issuer,
            subject,
            not_before,
            not_after,
            spki,
            extensions,
        })
    }
}

/// (algorithm OID, parameters, subjectPublicKey octets) of a SubjectPublicKeyInfo.
fn spki_parts(spki_der: &[u8]) -> Result<(ObjectIdentifier, Option<Tlv<'_>>, &[u8]), PkiError> {
    let mut spki = der_util::parse_one(spki_der, tag::SEQUENCE)?.reader();
    let mut alg = spki.take(tag::SEQUENCE)?.reader();
    let oid = alg.read()?.oid()?;
    let params = if alg.is_empty() {
        None
    } else {
        Some(alg.read()?)
    };
    alg.finish()?;
    let bits = spki.read()?.bit_string()?;
    spki.finish()?;
    Ok((oid, params, bits))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use openssl::x509::X509;

    use super::*;
    use crate::pki::keygen::SoftKey;
    use crate::pki::{KeyFamily, SignatureAlgorithm};

    const DAY: i64 = 86_400;

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn subject(cn: &str) -> SubjectInfo {
        SubjectInfo {
            common_name: Some(cn.into()),
            organization: Some("Example".into()),
            country: Some("KR".into()),
            ..Default::default()
        }
    }

    fn ca_params(cn: &str, key: &SoftKey, issuer: Option<&[u8]>, path_len: u8) -> CertParams {
        CertParams {
            serial: vec![0x80, 1, 2, 3, 4, 5, 6, 7, 8],
            subject: subject(cn),
            issuer_cert: issuer.map(<[u8]>::to_vec),
            not_before: now() - 60,
            not_after: now() + 30 * DAY,
            spki_der: key.spki_der(),
            basic_constraints: BasicConstraints::Ca {
                path_len: Some(path_len),
            },
            key_usage: vec![
                KeyUsage::DigitalSignature,
                KeyUsage::KeyCertSign,
                KeyUsage::CrlSign,
            ],
            extended_key_usage: vec![],
            policies: vec![],
            sans: Sans::default(),
            crl_url: issuer.map(|_| "http://ca.example.com/crl/1.crl".into()),
            ocsp_url: issuer.map(|_| "http://ca.example.com/ocsp".into()),
        }
    }

    fn leaf_params(key: &SoftKey, issuer: &[u8]) -> CertParams {
        CertParams {
            serial: vec![0x01, 0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67, 0x89],
            subject: subject("www.example.com"),
            basic_constraints: BasicConstraints::NotCa,
            key_usage: match key.algorithm.family() {
                KeyFamily::Rsa => vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
                _ => vec![KeyUsage::DigitalSignature],
            },
            extended_key_usage: vec![
                ExtendedKeyUsage::ServerAuth.oid().into(),
                ExtendedKeyUsage::ClientAuth.oid().into(),
            ],
            policies: vec![ObjectIdentifier::new_unwrap("2.23.140.1.2.2").into()],
            sans: Sans {
                dns: vec!["www.example.com".into(), "*.example.com".into()],
                ip: vec!["10.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
                uri: vec!["https://example.com/id".into()],
                email: vec!["admin@example.com".into()],
                other: vec![OidValue {
                    oid: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.20.2.3").into(),
                    kind: StringKind::Utf8,
                    value: "upn@example.com".into(),
                }],
            },
            ..ca_params("leaf", key, Some(issuer), 0)
        }
    }

    fn openssl(args: &[&str], dir: &Path) -> String {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "openssl {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    fn verifies(cert: &[u8], issuer: &[u8]) -> bool {
        let key = X509::from_der(issuer).unwrap().public_key().unwrap();
        X509::from_der(cert).unwrap().verify(&key).unwrap()
    }

    /// What `issue_with_info` reports is what `parse_info` reads back, for a self-signed root
    /// and for a leaf with every kind of name (and an empty common name, left out of the DER).
    #[test]
    fn issue_with_info_matches_parse_info() {
        let ca_key = SoftKey::generate(KeyAlgorithm::P256).unwrap();
        let leaf_key = SoftKey::generate(KeyAlgorithm::Rsa2048).unwrap();
        let signer = ca_key.signer(SignatureAlgorithm::Sha256WithEcdsa);
        let (root, info) =
            issue_with_info(&ca_params("Example Root CA", &ca_key, None, 1), &signer).unwrap();
        assert_eq!(
            format!("{info:?}"),
            format!("{:?}", parse_info(&root).unwrap())
        );
        let mut leaf = leaf_params(&leaf_key, &root);
        leaf.subject.other.push(OidValue {
            oid: ObjectIdentifier::new_unwrap("2.5.4.12").into(),
            kind: StringKind::Bmp,
            value: "Boss, \"the\" + one".into(),
        });
        leaf.subject.organizational_unit = Some("Dev#1".into());
        leaf.sans.other.push(OidValue {
            oid: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1").into(),
            kind: StringKind::Universal,
            value: "\u{1F600}".into(),
        });
        for cn in [Some("www.example.com"), Some(""), None] {
            leaf.subject.common_name = cn.map(str::to_owned);
            leaf.serial = vec![0, 0, 0x7f, 1];
            let (der, info) = issue_with_info(&leaf, &signer).unwrap();
            assert_eq!(
                format!("{info:?}"),
                format!("{:?}", parse_info(&der).unwrap())
            );
        }
    }

    /// Root, intermediate and leaf for every key algorithm and every signature algorithm that
    /// fits it, checked by the openssl crate and by `openssl verify -x509_strict`.
    #[test]
    fn chains_verify_for_every_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<(SoftKey, SoftKey)> = KeyAlgorithm::ALL
            .iter()
            .map(|a| {
                (
                    SoftKey::generate(*a).unwrap(),
                    SoftKey::generate(*a).unwrap(),
                )
            })
            .collect();
        for (i, (root_key, int_key)) in keys.iter().enumerate() {
            // The leaf key comes from the next family along, so chains also cross families.
            let leaf_key = &keys[(i + 3) % keys.len()].1;
            for alg in SignatureAlgorithm::ALL
                .into_iter()
                .filter(|s| s.fits(root_key.algorithm))
            {
                let root = issue(
                    &ca_params("Example Root CA", root_key, None, 1),
                    &root_key.signer(alg),
                )
                .unwrap();
                let int = issue(
                    &ca_params("Example Int CA", int_key, Some(&root), 0),
                    &root_key.signer(alg),
                )
                .unwrap();
                let leaf = issue(&leaf_params(leaf_key, &int), &int_key.signer(alg)).unwrap();
                assert!(verifies(&root, &root) && verifies(&int, &root) && verifies(&leaf, &int));
                for (name, der) in [("root.pem", &root), ("int.pem", &int), ("leaf.pem", &leaf)] {
                    std::fs::write(dir.path().join(name), to_pem(der)).unwrap();
                }
                let out = openssl(
                    &[
                        "verify",
                        "-x509_strict",
                        "-purpose",
                        "sslserver",
                        "-CAfile",
                        "root.pem",
                        "-untrusted",
                        "int.pem",
                        "leaf.pem",
                    ],
                    dir.path(),
                );
                assert_eq!(
                    out.trim(),
                    "leaf.pem: OK",
                    "{:?} {alg:?}",
                    root_key.algorithm
                );
                let info = parse_info(&int).unwrap();
                assert_eq!(info.key_algorithm, Some(int_key.algorithm));
                assert_eq!(info.issuer, "CN=Example Root CA,O=Example,C=KR");
            }
        }
    }

    #[test]
    fn leaf_extensions_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = SoftKey::generate(KeyAlgorithm::P256).unwrap();
        let leaf_key = SoftKey::generate(KeyAlgorithm::Rsa2048).unwrap();
        let signer = ca_key.signer(SignatureAlgorithm::Sha256WithEcdsa);
        let root = issue(&ca_params("Example Root CA", &ca_key, None, 1), &signer).unwrap();
        let mut params = leaf_params(&leaf_key, &root);
        params.not_after = 2_556_143_999; // 2050-12-31T23:59:59Z: GeneralizedTime
        let leaf = issue(&params, &signer).unwrap();
        std::fs::write(dir.path().join("leaf.pem"), to_pem(&leaf)).unwrap();
        let text = openssl(&["x509", "-in", "leaf.pem", "-noout", "-text"], dir.path());
        for needle in [
            "Serial Number:\n            01:ab:cd:ef:01:23:45:67:89",
            "Not After : Dec 31 23:59:59 2050 GMT",
            "Subject: C = KR, O = Example, CN = www.example.com",
            "X509v3 Basic Constraints: critical\n                CA:FALSE",
            "X509v3 Key Usage: critical\n                Digital Signature, Key Encipherment",
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "DNS:www.example.com, DNS:*.example.com, IP Address:10.0.0.1, \
             IP Address:2001:DB8:0:0:0:0:0:1, URI:https://example.com/id, \
             email:admin@example.com, othername: UPN::upn@example.com",
            "Policy: 2.23.140.1.2.2",
            "Full Name:\n                  URI:http://ca.example.com/crl/1.crl",
            "OCSP - URI:http://ca.example.com/ocsp",
            "X509v3 Subject Key Identifier",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        let info = parse_info(&leaf).unwrap();
        assert_eq!(info.subject, "CN=www.example.com,O=Example,C=KR");
        assert_eq!(info.common_name.as_deref(), Some("www.example.com"));
        assert_eq!(info.serial_hex, "01abcdef0123456789");
        assert_eq!(
            (info.not_before, info.not_after),
            (params.not_before, params.not_after)
        );
        assert_eq!(info.sans, params.sans);
        assert_eq!(info.spki_der, leaf_key.spki_der());
        assert_eq!(info.key_algorithm, Some(KeyAlgorithm::Rsa2048));
        assert_eq!(
            info.subject_key_id,
            Some(subject_key_id(&leaf_key.spki_der()))
        );
        let ext_of = |der: &[u8], id| {
            let raw = RawCert::parse(der).unwrap();
            ext::find(raw.extensions, &id)
                .unwrap()
                .map(|(c, v)| (c, v.to_vec()))
        };
        // The leaf's AKI is the root's SKI; the root's own AKI repeats its SKI.
        let root_ski = parse_info(&root).unwrap().subject_key_id.unwrap();
        let aki = ext::authority_key_identifier(&root_ski);
        assert_eq!(
            ext_of(&leaf, ext::AUTHORITY_KEY_IDENTIFIER),
            Some((false, aki.clone()))
        );
        assert_eq!(
            ext_of(&root, ext::AUTHORITY_KEY_IDENTIFIER),
            Some((false, aki))
        );
        assert_eq!(
            subject_name_der(&root).unwrap(),
            name::encode(&subject("Example Root CA")).unwrap()
        );
        // Root serial 0x80...: a leading 00 in DER, none in the hex.
        assert_eq!(parse_info(&root).unwrap().serial_hex, "800102030405060708");

        // An empty subject makes the SAN critical.
        params.subject = SubjectInfo::default();
        let bare = issue(&params, &signer).unwrap();
        assert!(ext_of(&bare, ext::SUBJECT_ALT_NAME).unwrap().0);
        assert_eq!(parse_info(&bare).unwrap().subject, "");
    }

    #[test]
    fn every_string_kind_round_trips() {
        let key = SoftKey::generate(KeyAlgorithm::P256).unwrap();
        let kinds = [
            (StringKind::Utf8, "한국어"),
            (StringKind::Ia5, "ia5@x"),
            (StringKind::Printable, "Print 1"),
            (StringKind::Bmp, "Bmp é"),
            (StringKind::Universal, "Univ 😀"),
        ];
        let values = |base: &str| -> Vec<OidValue> {
            kinds
                .iter()
                .enumerate()
                .map(|(i, (kind, value))| OidValue {
                    oid: format!("{base}.{i}").parse().unwrap(),
                    kind: *kind,
                    value: (*value).into(),
                })
                .collect()
        };
        let mut params = ca_params("Root", &key, None, 0);
        params.subject.other = values("1.2.3");
        params.sans.other = values("1.3.6.1.4.1.99999");
        let der = issue(&params, &key.signer(SignatureAlgorithm::Sha256WithEcdsa)).unwrap();
        assert!(verifies(&der, &der));
        let info = parse_info(&der).unwrap();
        assert_eq!(info.sans, params.sans);
        assert_eq!(
            name::subject_info(&subject_name_der(&der).unwrap()).unwrap(),
            params.subject
        );
        assert!(
            info.subject.ends_with(",CN=Root,O=Example,C=KR"),
            "{}",
            info.subject
        );
    }

    #[test]
    fn bad_params_are_refused() {
        let key = SoftKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let good = ca_params("Root", &key, None, 0);
        let err = |p: &CertParams, s: SignatureAlgorithm| {
            issue(p, &key.signer(s)).unwrap_err().to_string()
        };
        assert!(err(&good, SignatureAlgorithm::Sha256WithRsa).contains("does not fit"));
        let mut p = good.clone();
        p.subject.serial_number = Some("no_underscores".into());
        assert!(err(&p, SignatureAlgorithm::Ed25519).contains("serialNumber"));
        let mut p = good.clone();
        p.serial = vec![0; 4];
        assert!(err(&p, SignatureAlgorithm::Ed25519).contains("positive"));
        p.serial = vec![0x80; 20];
        assert!(err(&p, SignatureAlgorithm::Ed25519).contains("20 octets"));
        let mut p = good;
        p.sans.dns = vec!["bücher.example".into()];
        assert!(err(&p, SignatureAlgorithm::Ed25519).contains("IA5"));
    }

    #[test]
    fn helpers() {
        let key = SoftKey::generate(KeyAlgorithm::P384).unwrap();
        let root = issue(
            &ca_params("R", &key, None, 0),
            &key.signer(SignatureAlgorithm::Sha384WithEcdsa),
        )
        .unwrap();
        let pem = format!("junk\n{}", to_pem(&root));
        assert_eq!(from_pem(&pem).unwrap(), root);
        let bits = subject_public_key_bits(&key.spki_der());
        assert_eq!(bits.len(), 97); // uncompressed P-384 point
        assert_eq!(subject_key_id(&key.spki_der()), HashAlg::Sha1.digest(&bits));
        assert!(subject_public_key_bits(b"junk").is_empty());
        assert!(key_algorithm_of_spki(b"\x30\x00").is_err());
    }

    /// Writes a root, an intermediate and a leaf to `$PKI_SAMPLE_DIR` for pkilint
    /// (`cargo test --lib pki::cert::tests::write_samples -- --ignored`).
    #[test]
    #[ignore]
    fn write_samples() {
        let dir = std::env::var("PKI_SAMPLE_DIR").unwrap();
        for (tag, alg, sig) in [
            (
                "rsa",
                KeyAlgorithm::Rsa2048,
                SignatureAlgorithm::Sha256WithRsa,
            ),
            (
                "ec",
                KeyAlgorithm::P384,
                SignatureAlgorithm::Sha384WithEcdsa,
            ),
            ("ed", KeyAlgorithm::Ed25519, SignatureAlgorithm::Ed25519),
        ] {
            let (rk, ik, lk) = (
                SoftKey::generate(alg).unwrap(),
                SoftKey::generate(alg).unwrap(),
                SoftKey::generate(alg).unwrap(),
            );
            let root = issue(&ca_params("Example Root CA", &rk, None, 1), &rk.signer(sig)).unwrap();
            let int = issue(
                &ca_params("Example Int CA", &ik, Some(&root), 0),
                &rk.signer(sig),
            )
            .unwrap();
            let leaf = issue(&leaf_params(&lk, &int), &ik.signer(sig)).unwrap();
            let mut plain = leaf_params(&lk, &int);
            plain.sans.dns.retain(|d| !d.starts_with('*'));
            let plain = issue(&plain, &ik.signer(sig)).unwrap();
            for (name, der) in [
                ("root", root),
                ("int", int),
                ("leaf", leaf),
                ("leaf-nowild", plain),
            ] {
                std::fs::write(format!("{dir}/{tag}-{name}.pem"), to_pem(&der)).unwrap();
            }
        }
    }
}
