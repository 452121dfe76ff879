//! Certificate extensions (RFC 5280 section 4.2): encoders for the ones pcad writes, and readers
//! for the ones it looks at again.

use std::net::IpAddr;

use const_oid::ObjectIdentifier;

use super::der_util::{self, context, tag, Reader};
use super::fields::{KeyUsage, OidValue, Sans};
use super::oid::Oid;
use super::{name, KeyFamily, PkiError};

pub const SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
pub const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
pub const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
pub const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
pub const CRL_DISTRIBUTION_POINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.31");
pub const CERTIFICATE_POLICIES: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.32");
pub const AUTHORITY_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
pub const EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
pub const AUTHORITY_INFO_ACCESS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
pub const ID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");

/// One `Extension` element: extnID, critical (only when true, DER omits the default), extnValue.
pub fn extension(id: &ObjectIdentifier, critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![der_util::oid(id)];
    if critical {
        parts.push(der_util::boolean(true));
    }
    parts.push(der_util::octet_string(value));
    der_util::seq(&parts)
}

/// basicConstraints value: `cA` TRUE with an optional pathLenConstraint, or the empty sequence
/// (cA FALSE by default).
pub fn basic_constraints(ca: bool, path_len: Option<u8>) -> Vec<u8> {
    let mut parts = Vec::new();
    if ca {
        parts.push(der_util::boolean(true));
        if let Some(n) = path_len {
            parts.push(der_util::unsigned(&[n]));
        }
    }
    der_util::seq(&parts)
}

/// keyUsage value: a named BIT STRING without trailing zero bits (X.690 section 11.2.2).
pub fn key_usage(usages: &[KeyUsage]) -> Vec<u8> {
    let mut bits: u16 = 0;
    for u in usages {
        bits |= 0x8000 >> key_usage_bit(*u);
    }
    let [hi, lo] = bits.to_be_bytes();
    let octets: &[u8] = if lo != 0 { &[hi, lo] } else { &[hi] };
    let last = octets.last().copied().unwrap_or(0);
    let unused = if last == 0 {
        0
    } else {
        last.trailing_zeros() as u8
    };
    let mut body = vec![unused];
    if bits != 0 {
        body.extend_from_slice(octets);
    }
    der_util::tlv(tag::BIT_STRING, &body)
}

/// A SEQUENCE OF OBJECT IDENTIFIER (extKeyUsage), duplicates dropped.
pub fn oid_sequence(oids: &[Oid]) -> Vec<u8> {
    let mut seen: Vec<&Oid> = Vec::new();
    let mut parts = Vec::new();
    for o in oids {
        if !seen.contains(&o) {
            seen.push(o);
            parts.push(der_util::oid(o));
        }
    }
    der_util::seq(&parts)
}

/// certificatePolicies value: one PolicyInformation per OID, without qualifiers.
pub fn certificate_policies(policies: &[Oid]) -> Vec<u8> {
    let mut seen: Vec<&Oid> = Vec::new();
    let mut parts = Vec::new();
    for p in policies {
        if !seen.contains(&p) {
            seen.push(p);
            parts.push(der_util::seq(&[der_util::oid(p)]));
        }
    }
    der_util::seq(&parts)
}

/// subjectKeyIdentifier value.
pub fn subject_key_identifier(key_id: &[u8]) -> Vec<u8> {
    der_util::octet_string(key_id)
}

/// authorityKeyIdentifier value with only the keyIdentifier `[0]`.
pub fn authority_key_identifier(key_id: &[u8]) -> Vec<u8> {
    der_util::seq(&[der_util::tlv(context(0, false), key_id)])
}

/// cRLDistributionPoints value: one DistributionPoint whose fullName is `url`.
pub fn crl_distribution_points(url: &str) -> Result<Vec<u8>, PkiError> {
    let uri = ia5(context(6, false), url, "cRLDistributionPoints URL")?;
    let full_name = der_util::tlv(context(0, true), &uri);
    let dp_name = der_util::tlv(context(0, true), &full_name);
    Ok(der_util::seq(&[der_util::seq(&[dp_name])]))
}

/// authorityInfoAccess value with one id-ad-ocsp URI.
pub fn authority_info_access_ocsp(url: &str) -> Result<Vec<u8>, PkiError> {
    let uri = ia5(context(6, false), url, "authorityInfoAccess OCSP URL")?;
    Ok(der_util::seq(&[der_util::seq(&[
        der_util::oid(&ID_AD_OCSP),
        uri,
    ])]))
}

/// subjectAltName value (GeneralNames): DNS, IP, URI, rfc822 email, then otherNames whose
/// value is `[0] EXPLICIT` of its string kind.
pub fn subject_alt_name(sans: &Sans) -> Result<Vec<u8>, PkiError> {
    let mut parts = Vec::new();
    for d in &sans.dns {
        parts.push(ia5(context(2, false), d, "subjectAltName DNS")?);
    }
    for ip in &sans.ip {
        let octets = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        parts.push(der_util::tlv(context(7, false), &octets));
    }
    for u in &sans.uri {
        parts.push(ia5(context(6, false), u, "subjectAltName URI")?);
    }
    for e in &sans.email {
        parts.push(ia5(context(1, false), e, "subjectAltName email")?);
    }
    for o in &sans.other {
        let what = format!("subjectAltName otherName {}", o.oid);
        let value = name::encode_value(o.kind, &o.value, &what)?;
        let body = [
            der_util::oid(&o.oid),
            der_util::tlv(context(0, true), &value),
        ]
        .concat();
        parts.push(der_util::tlv(context(0, true), &body));
    }
    Ok(der_util::seq(&parts))
}

/// Reads a GeneralNames (a subjectAltName value). Name forms `Sans` has no place for
/// (directoryName, registeredID, ...) and otherNames whose value is not a string are skipped.
pub fn decode_sans(value: &[u8]) -> Result<Sans, PkiError> {
    let mut sans = Sans::default();
    let names = der_util::parse_one(value, tag::SEQUENCE)?;
    let mut r = names.reader();
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .ok()
            .filter(|s| s.is_ascii())
            .map(str::to_owned)
            .ok_or_else(|| PkiError::Invalid("subjectAltName: name is not IA5".into()))
    };
    while !r.is_empty() {
        let gn = r.read()?;
        match gn.tag {
            t if t == context(1, false) => sans.email.push(text(gn.value)?),
            t if t == context(2, false) => sans.dns.push(text(gn.value)?),
            t if t == context(6, false) => sans.uri.push(text(gn.value)?),
            t if t == context(7, false) => {
                let ip = if let Ok(v4) = <[u8; 4]>::try_from(gn.value) {
                    IpAddr::from(v4)
                } else if let Ok(v6) = <[u8; 16]>::try_from(gn.value) {
                    IpAddr::from(v6)
                } else {
                    return Err(PkiError::Invalid("subjectAltName: bad IP address".into()));
                };
                sans.ip.push(ip);
            }
            t if t == context(0, true) => {
                let mut on = gn.reader();
                let oid = on.read()?.any_oid()?;
                let wrapped = on.take(context(0, true))?;
                on.finish()?;
                let mut wr = wrapped.reader();
                let inner = wr.read()?;
                wr.finish()?;
                if let Some((kind, value)) = name::decode_value(&inner) {
                    sans.other.push(OidValue { oid, kind, value });
                }
            }
            _ => {}
        }
    }
    Ok(sans)
}

/// The (critical, extnValue) of extension `id` in an `Extensions` SEQUENCE's contents.
pub fn find<'a>(
    extensions: &'a [u8],
    id: &ObjectIdentifier,
) -> Result<Option<(bool, &'a [u8])>, PkiError> {
    let mut r = Reader::new(extensions);
    while !r.is_empty() {
        let mut e = r.take(tag::SEQUENCE)?.reader();
        let oid = e.read()?.oid()?;
        let critical = match e.optional(tag::BOOLEAN)? {
            Some(b) => b.value != [0],
            None => false,
        };
        let value = e.take(tag::OCTET_STRING)?;
        e.finish()?;
        if oid == *id {
            return Ok(Some((critical, value.value)));
        }
    }
    Ok(None)
}

/// Whether a key of `family` may carry `usage` (API.md "Template key usage"): no
/// keyEncipherment/dataEncipherment on EC or Ed25519 keys (RFC 8813, RFC 8410), no
/// keyAgreement/encipherOnly/decipherOnly on RSA keys (RFC 4055), and nothing but
/// digitalSignature, nonRepudiation, keyCertSign and cRLSign on Ed25519 keys. The error is the
/// rule, for the API to show.
pub fn key_usage_allowed(family: KeyFamily, usage: KeyUsage) -> Result<(), &'static str> {
    use KeyUsage::*;
    match (family, usage) {
        (KeyFamily::Ec, KeyEncipherment | DataEncipherment) => {
            Err("keyEncipherment and dataEncipherment are not allowed on EC keys (RFC 8813)")
        }
        (KeyFamily::Ed25519, DigitalSignature | NonRepudiation | KeyCertSign | CrlSign) => Ok(()),
        (KeyFamily::Ed25519, _) => Err(
            "Ed25519 keys allow only digitalSignature, nonRepudiation, keyCertSign and cRLSign (RFC 8410)",
        ),
        (KeyFamily::Rsa, KeyAgreement | EncipherOnly | DecipherOnly) => {
            Err("keyAgreement, encipherOnly and decipherOnly are not allowed on RSA keys (RFC 4055)")
        }
        _ => Ok(()),
    }
}

fn key_usage_bit(u: KeyUsage) -> u32 {
    match u {
        KeyUsage::DigitalSignature => 0,
        KeyUsage::NonRepudiation => 1,
        KeyUsage::KeyEncipherment => 2,
        KeyUsage::DataEncipherment => 3,
        KeyUsage::KeyAgreement => 4,
        KeyUsage::KeyCertSign => 5,
        KeyUsage::CrlSign => 6,
        KeyUsage::EncipherOnly => 7,
        KeyUsage::DecipherOnly => 8,
    }
}

fn ia5(tag: u8, value: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    if value.is_ascii() && !value.is_empty() {
        Ok(der_util::tlv(tag, value.as_bytes()))
    } else {
        Err(PkiError::Invalid(format!(
            "{what}: {value:?} must be non-empty ASCII (IA5String)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::fields::StringKind;

    #[test]
    fn key_usage_bits() {
        use KeyUsage::*;
        // digitalSignature only: 03 02 07 80
        assert_eq!(key_usage(&[DigitalSignature]), vec![0x03, 0x02, 0x07, 0x80]);
        // keyCertSign + cRLSign: 03 02 01 06
        assert_eq!(
            key_usage(&[KeyCertSign, CrlSign]),
            vec![0x03, 0x02, 0x01, 0x06]
        );
        // decipherOnly: 03 03 07 00 80
        assert_eq!(
            key_usage(&[DecipherOnly]),
            vec![0x03, 0x03, 0x07, 0x00, 0x80]
        );
    }

    #[test]
    fn key_usage_rules() {
        use KeyUsage::*;
        assert!(key_usage_allowed(KeyFamily::Ec, KeyEncipherment).is_err());
        assert!(key_usage_allowed(KeyFamily::Ec, KeyAgreement).is_ok());
        assert!(key_usage_allowed(KeyFamily::Rsa, KeyAgreement).is_err());
        assert!(key_usage_allowed(KeyFamily::Rsa, DataEncipherment).is_ok());
        assert!(key_usage_allowed(KeyFamily::Ed25519, KeyCertSign).is_ok());
        assert!(key_usage_allowed(KeyFamily::Ed25519, KeyAgreement).is_err());
    }

    #[test]
    fn sans_round_trip() {
        let sans = Sans {
            dns: vec!["a.example.com".into()],
            ip: vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            uri: vec!["https://example.com/x".into()],
            email: vec!["a@example.com".into()],
            other: vec![OidValue {
                oid: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.20.2.3").into(),
                kind: StringKind::Utf8,
                value: "upn@example.com".into(),
            }],
        };
        let der = subject_alt_name(&sans).unwrap();
        assert_eq!(decode_sans(&der).unwrap(), sans);
        let exts = [
            extension(&BASIC_CONSTRAINTS, true, &basic_constraints(true, Some(0))),
            extension(&SUBJECT_ALT_NAME, false, &der),
        ]
        .concat();
        assert_eq!(
            find(&exts, &SUBJECT_ALT_NAME).unwrap(),
            Some((false, &der[..]))
        );
        let (critical, bc) = find(&exts, &BASIC_CONSTRAINTS).unwrap().unwrap();
        assert!(critical);
        assert_eq!(bc, [0x30, 0x06, 0x01, 0x01, 0xFF, 0x02, 0x01, 0x00]);
        assert_eq!(find(&exts, &KEY_USAGE).unwrap(), None);
    }
}
