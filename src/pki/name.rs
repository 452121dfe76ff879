//! X.501 names: a `SubjectInfo` to a DER `Name` and back, attribute values by string kind, and
//! the RFC 4514 string the API shows.

use std::fmt::Write;
use std::net::IpAddr;

use const_oid::ObjectIdentifier;

use super::der_util::{self, tag, Tlv};
use super::fields::{OidValue, StringKind, SubjectInfo};
use super::PkiError;

pub const COUNTRY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
pub const STATE_OR_PROVINCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.8");
pub const LOCALITY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.7");
pub const STREET_ADDRESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.9");
pub const POSTAL_CODE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.17");
pub const ORGANIZATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
pub const ORGANIZATIONAL_UNIT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");
pub const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
pub const SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");

/// Descriptors written in RFC 4514 strings (RFC 4514 section 3, RFC 4519, PKCS #9 email).
const SHORT_NAMES: [(&str, &str); 16] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.4", "sn"),
    ("2.5.4.42", "givenName"),
    ("2.5.4.12", "title"),
    ("2.5.4.97", "organizationIdentifier"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
];

/// The DER `Name` of a subject: C, ST, L, street, postalCode, O, OU, CN, serialNumber, then the
/// extra attributes, one attribute per RDN. countryName and serialNumber are PrintableString,
/// the other standard attributes UTF8String; empty values are left out.
pub fn encode(subject: &SubjectInfo) -> Result<Vec<u8>, PkiError> {
    let mut rdns = Vec::new();
    for (oid, label, kind, value) in standard_fields(subject) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            let value = encode_value(kind, v, &format!("subject {label}"))?;
            rdns.push(rdn(&oid, value));
        }
    }
    for extra in &subject.other {
        let value = encode_value(extra.kind, &extra.value, &format!("subject {}", extra.oid))?;
        rdns.push(rdn(&extra.oid, value));
    }
    Ok(der_util::seq(&rdns))
}

/// Whether a DER `Name` has no RDNs.
pub fn is_empty(name_der: &[u8]) -> bool {
    der_util::parse_one(name_der, tag::SEQUENCE).is_ok_and(|t| t.value.is_empty())
}

/// A string value as the element of its kind; `what` names the field in the error.
pub fn encode_value(kind: StringKind, value: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    let bad = |rule: &str| PkiError::Invalid(format!("{what}: {value:?} is not {rule}"));
    Ok(match kind {
        StringKind::Utf8 => der_util::tlv(tag::UTF8_STRING, value.as_bytes()),
        StringKind::Ia5 if value.is_ascii() => der_util::tlv(tag::IA5_STRING, value.as_bytes()),
        StringKind::Ia5 => return Err(bad("an IA5String (ASCII)")),
        StringKind::Printable if is_printable(value) => {
            der_util::tlv(tag::PRINTABLE_STRING, value.as_bytes())
        }
        StringKind::Printable => {
            return Err(bad(
                "a PrintableString (letters, digits, space and '()+,-./:=?)",
            ))
        }
        StringKind::Bmp => {
            if value.chars().any(|c| u32::from(c) > 0xFFFF) {
                return Err(bad("a BMPString (characters up to U+FFFF)"));
            }
            let bytes: Vec<u8> = value.encode_utf16().flat_map(u16::to_be_bytes).collect();
            der_util::tlv(tag::BMP_STRING, &bytes)
        }
        StringKind::Universal => {
            let bytes: Vec<u8> = value
                .chars()
                .flat_map(|c| u32::from(c).to_be_bytes())
                .collect();
            der_util::tlv(tag::UNIVERSAL_STRING, &bytes)
        }
    })
}

/// A string-valued element as its kind and text. NumericString reads as PrintableString,
/// VisibleString as IA5String and TeletexString (as Latin-1) as UTF8String; other types are
/// not strings.
pub fn decode_value(t: &Tlv<'_>) -> Option<(StringKind, String)> {
    let ascii = || {
        t.value
            .is_ascii()
            .then(|| String::from_utf8_lossy(t.value).into_owned())
    };
    match t.tag {
        tag::UTF8_STRING => Some((StringKind::Utf8, String::from_utf8(t.value.to_vec()).ok()?)),
        tag::PRINTABLE_STRING | tag::NUMERIC_STRING => Some((StringKind::Printable, ascii()?)),
        tag::IA5_STRING | tag::VISIBLE_STRING => Some((StringKind::Ia5, ascii()?)),
        tag::TELETEX_STRING => Some((
            StringKind::Utf8,
            t.value.iter().map(|b| char::from(*b)).collect(),
        )),
        tag::BMP_STRING => {
            let chunks = t.value.chunks_exact(2);
            if !chunks.remainder().is_empty() {
                return None;
            }
            let units: Vec<u16> = chunks.map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            Some((StringKind::Bmp, String::from_utf16(&units).ok()?))
        }
        tag::UNIVERSAL_STRING => {
            let chunks = t.value.chunks_exact(4);
            if !chunks.remainder().is_empty() {
                return None;
            }
            let text = chunks
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()?;
            Some((StringKind::Universal, text))
        }
        _ => None,
    }
}

/// A DER `Name` back into a `SubjectInfo`: the first occurrence of each standard attribute
/// fills its field, everything else (repeats, other types) lands in `other`. Values that are not
/// strings are skipped.
pub fn subject_info(name_der: &[u8]) -> Result<SubjectInfo, PkiError> {
    let mut info = SubjectInfo::default();
    for (oid, value) in rdns(name_der)?.into_iter().flatten() {
        let Some((kind, text)) = decode_value(&value) else {
            continue;
        };
        let slot = match ObjectIdentifier::from_bytes(oid.as_bytes()).ok() {
            None => {
                info.other.push(OidValue {
                    oid,
                    kind,
                    value: text,
                });
                continue;
            }
            Some(known) => known,
        };
        let slot = match slot {
            COUNTRY => &mut info.country,
            STATE_OR_PROVINCE => &mut info.state_or_province,
            LOCALITY => &mut info.locality,
            STREET_ADDRESS => &mut info.street_address,
            POSTAL_CODE => &mut info.postal_code,
            ORGANIZATION => &mut info.organization,
            ORGANIZATIONAL_UNIT => &mut info.organizational_unit,
            COMMON_NAME => &mut info.common_name,
            SERIAL_NUMBER => &mut info.serial_number,
            _ => {
                info.other.push(OidValue {
                    oid,
                    kind,
                    value: text,
                });
                continue;
            }
        };
        if slot.is_none() {
            *slot = Some(text);
        } else {
            info.other.push(OidValue {
                oid,
                kind,
                value: text,
            });
        }
    }
    Ok(info)
}

/// The RFC 4514 string of a DER `Name`, most specific RDN first: `CN=Example Root CA,O=Example,C=KR`.
/// Attribute types without a descriptor are dotted OIDs with `#`-hex values (section 2.4).
pub fn to_rfc4514(name_der: &[u8]) -> Result<String, PkiError> {
    let mut out = String::new();
    for (i, rdn) in rdns(name_der)?.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, (oid, value)) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let dotted = oid.to_string();
            let short = SHORT_NAMES.iter().find(|(o, _)| *o == dotted);
            match (short, decode_value(value)) {
                (Some((_, name)), Some((_, text))) => {
                    out.push_str(name);
                    out.push('=');
                    escape_into(&mut out, &text);
                }
                _ => {
                    out.push_str(&dotted);
                    out.push_str("=#");
                    for b in value.raw {
                        let _ = write!(out, "{b:02x}");
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The value of the first attribute of type `oid`, when it is a string.
pub fn attribute(name_der: &[u8], oid: &ObjectIdentifier) -> Result<Option<String>, PkiError> {
    Ok(rdns(name_der)?
        .into_iter()
        .flatten()
        .find(|(o, _)| o.as_bytes() == oid.as_bytes())
        .and_then(|(_, v)| decode_value(&v).map(|(_, text)| text)))
}

/// Whether every character is in the PrintableString set (X.680 section 41.4).
pub fn is_printable(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c))
}

/// Whether `s` is a DNS hostname fit for a dNSName SAN: LDH labels of 1..=63 octets, at most
/// 253 octets in all, a leftmost `*` label allowed when two or more labels follow; IP address
/// literals are not hostnames.
pub fn is_valid_hostname(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 || s.parse::<IpAddr>().is_ok() {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    let checked = match labels.split_first() {
        Some((&"*", rest)) if rest.len() >= 2 => rest,
        Some((&"*", _)) | None => return false,
        Some(_) => &labels[..],
    };
    checked.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// Whether `s` looks like an email address fit for an rfc822Name SAN: an ASCII local part
/// without spaces, `@`, and a hostname (no wildcard).
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"@\"(),:;<>[\\]".contains(&b))
        && !domain.starts_with('*')
        && domain.contains('.')
        && is_valid_hostname(domain)
}

type Rdn<'a> = Vec<(super::oid::Oid, Tlv<'a>)>;

fn rdns(name_der: &[u8]) -> Result<Vec<Rdn<'_>>, PkiError> {
    let name = der_util::parse_one(name_der, tag::SEQUENCE)?;
    let mut out = Vec::new();
    let mut r = name.reader();
    while !r.is_empty() {
        let set = r.take(tag::SET)?;
        let mut atvs = Vec::new();
        let mut sr = set.reader();
        while !sr.is_empty() {
            let mut atv = sr.take(tag::SEQUENCE)?.reader();
            let oid = atv.read()?.any_oid()?;
            let value = atv.read()?;
            atv.finish()?;
            atvs.push((oid, value));
        }
        out.push(atvs);
    }
    Ok(out)
}

fn rdn<O: AsRef<[u8]> + ?Sized>(oid: &O, value: Vec<u8>) -> Vec<u8> {
    der_util::set_of(&[der_util::seq(&[der_util::oid(oid), value])])
}

fn standard_fields(
    s: &SubjectInfo,
) -> [(ObjectIdentifier, &'static str, StringKind, Option<&String>); 9] {
    use StringKind::{Printable, Utf8};
    [
        (COUNTRY, "countryName", Printable, s.country.as_ref()),
        (
            STATE_OR_PROVINCE,
            "stateOrProvinceName",
            Utf8,
            s.state_or_province.as_ref(),
        ),
        (LOCALITY, "localityName", Utf8, s.locality.as_ref()),
        (
            STREET_ADDRESS,
            "streetAddress",
            Utf8,
            s.street_address.as_ref(),
        ),
        (POSTAL_CODE, "postalCode", Utf8, s.postal_code.as_ref()),
        (
            ORGANIZATION,
            "organizationName",
            Utf8,
            s.organization.as_ref(),
        ),
        (
            ORGANIZATIONAL_UNIT,
            "organizationalUnitName",
            Utf8,
            s.organizational_unit.as_ref(),
        ),
        (COMMON_NAME, "commonName", Utf8, s.common_name.as_ref()),
        (
            SERIAL_NUMBER,
            "serialNumber",
            Printable,
            s.serial_number.as_ref(),
        ),
    ]
}

/// RFC 4514 section 2.4 escaping.
fn escape_into(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SubjectInfo {
        SubjectInfo {
            common_name: Some("Example Root CA".into()),
            country: Some("KR".into()),
            organization: Some("Example, Inc.".into()),
            serial_number: Some("1234".into()),
            other: vec![
                OidValue {
                    oid: ObjectIdentifier::new_unwrap("2.5.4.12").into(),
                    kind: StringKind::Bmp,
                    value: "Dé".into(),
                },
                OidValue {
                    oid: ObjectIdentifier::new_unwrap("1.2.3.4").into(),
                    kind: StringKind::Universal,
                    value: "ü".into(),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn round_trip() {
        let der = encode(&sample()).unwrap();
        assert_eq!(subject_info(&der).unwrap(), sample());
        assert_eq!(
            to_rfc4514(&der).unwrap(),
            "1.2.3.4=#1c04000000fc,title=Dé,serialNumber=1234,CN=Example Root CA,\
             O=Example\\, Inc.,C=KR"
        );
        assert_eq!(
            attribute(&der, &COMMON_NAME).unwrap().as_deref(),
            Some("Example Root CA")
        );
        assert!(!is_empty(&der));
        assert!(is_empty(&encode(&SubjectInfo::default()).unwrap()));
    }

    #[test]
    fn hostnames_and_emails() {
        for ok in ["www.example.com", "*.example.com", "localhost", "a-b.c0.io"] {
            assert!(is_valid_hostname(ok), "{ok}");
        }
        for bad in [
            "Example Root CA",
            "*.com",
            "a.*.com",
            "-a.com",
            "a..com",
            "10.0.0.1",
            "",
            "a_b.com",
        ] {
            assert!(!is_valid_hostname(bad), "{bad}");
        }
        assert!(is_email("admin@example.com") && is_email("a.b+c@mail.example.co.kr"));
        assert!(
            !is_email("Example Root CA")
                && !is_email("@example.com")
                && !is_email("a@*.example.com")
        );
        assert!(!is_email("a b@example.com") && !is_email("a@localhost"));
    }

    #[test]
    fn printable_rules() {
        let mut s = sample();
        s.country = Some("K_".into());
        assert!(encode(&s).unwrap_err().to_string().contains("countryName"));
        let mut s = sample();
        s.other[0].value = "😀".into();
        assert!(encode(&s).is_err());
        let mut out = String::new();
        escape_into(&mut out, "#a b ");
        assert_eq!(out, "\\#a b\\ ");
    }
}
