//! Request bodies: JSON in, checked plain-data parameters out ("parse, don't validate"). Every
//! rule of the seed is checked here; messages name the field and the rule.

use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use crate::ca::{CertKind, IssuerParams, StoreParams, Validity};
use crate::pki::cert::{self, OidValue, Sans, StringKind, SubjectInfo};
use crate::pki::{KeyAlgorithm, SignatureAlgorithm};

/// Parses a JSON body into `T`, naming the field of any type error or unknown field. The body
/// must be a JSON object (serde would also take an array of the fields' values).
pub fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: Obj<T> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::malformed(format!("body: not valid JSON ({inner})"))
        } else if path == "." {
            ApiError::malformed(format!("body: {inner}"))
        } else {
            ApiError::malformed(format!("{path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::malformed(format!("body: not valid JSON ({e})")))?;
    Ok(value.0)
}

/// A struct that must arrive as a JSON object: serde's derived structs also accept an array of
/// the fields' values, which would make `["name", ...]` a valid store.
#[derive(Debug)]
pub struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Only<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(Only(std::marker::PhantomData))
    }
}

/// Create Store / Modify Store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoreBody {
    name: Option<String>,
    description: Option<String>,
    crl_active: Option<bool>,
    crl_refresh_period: Option<i64>,
    ocsp_active: Option<bool>,
    ocsp_refresh_period: Option<i64>,
}

impl StoreBody {
    pub fn check(self) -> Result<StoreParams, ApiError> {
        Ok(StoreParams {
            name: name("name", self.name)?,
            description: description(self.description)?,
            crl_active: self.crl_active.unwrap_or(false),
            crl_refresh_period: range("crlRefreshPeriod", self.crl_refresh_period, 1, 30, 7)?
                as u32,
            ocsp_active: self.ocsp_active.unwrap_or(false),
            ocsp_refresh_period: range("ocspRefreshPeriod", self.ocsp_refresh_period, 1, 12, 1)?
                as u32,
        })
    }
}

/// The seed's KeyInfo.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyInfoBody {
    algorithm: Option<String>,
    key_size: Option<i64>,
}

impl KeyInfoBody {
    /// The key algorithm, and the `algorithm` name as given (`EC` or `ECDSA`).
    pub fn check(this: Option<Obj<Self>>) -> Result<(KeyAlgorithm, String), ApiError> {
        let this = this
            .ok_or_else(|| ApiError::invalid("keyInfo: required"))?
            .0;
        let alg = this
            .algorithm
            .ok_or_else(|| ApiError::invalid("keyInfo.algorithm: required"))?;
        if !["RSA", "EC", "ECDSA", "ED25519"].contains(&alg.as_str()) {
            return Err(ApiError::malformed(format!(
                "keyInfo.algorithm: unknown value {alg:?}; must be RSA, EC, ECDSA or ED25519"
            )));
        }
        let size = this.key_size.map(|s| u32::try_from(s).unwrap_or(0));
        let key = KeyAlgorithm::from_api(&alg, size)
            .map_err(|rule| ApiError::invalid(format!("keyInfo.keySize: {rule}")))?;
        Ok((key, alg))
    }
}

/// The seed's OidInfo.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidInfoBody {
    oid: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<String>,
}

impl OidInfoBody {
    pub fn check_all(field: &str, list: Option<Vec<Obj<Self>>>) -> Result<Vec<OidValue>, ApiError> {
        list.unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.0.check(&format!("{field}[{i}]")))
            .collect()
    }

    fn check(self, field: &str) -> Result<OidValue, ApiError> {
        let oid_s = self
            .oid
            .ok_or_else(|| ApiError::invalid(format!("{field}.oid: required")))?;
        let oid = oid(&format!("{field}.oid"), &oid_s)?;
        let kind_s = self
            .kind
            .ok_or_else(|| ApiError::invalid(format!("{field}.type: required")))?;
        let kind: StringKind = serde_json::from_value(serde_json::Value::String(kind_s.clone()))
            .map_err(|_| {
                ApiError::malformed(format!(
                    "{field}.type: unknown value {kind_s:?}; must be UTF8String, IA5String, PrintableString, BMPString or UniversalString"
                ))
            })?;
        let value = self
            .value
            .ok_or_else(|| ApiError::invalid(format!("{field}.value: required")))?;
        if value.is_empty() || value.chars().count() > 255 {
            return Err(ApiError::invalid(format!(
                "{field}.value: must be 1 to 255 characters"
            )));
        }
        no_controls(&format!("{field}.value"), &value)?;
        let fits = match kind {
            StringKind::Printable => value.chars().all(is_printable_char),
            StringKind::Ia5 => value.is_ascii(),
            StringKind::Bmp => value.chars().all(|c| (c as u32) < 0x10000),
            StringKind::Utf8 | StringKind::Universal => true,
        };
        if !fits {
            return Err(ApiError::invalid(format!(
                "{field}.value: characters not allowed in a {kind_s}"
            )));
        }
        Ok(OidValue { oid, kind, value })
    }
}

/// The seed's SubjectInfo.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubjectInfoBody {
    common_name: Option<String>,
    serial_number: Option<String>,
    country: Option<String>,
    state_or_province: Option<String>,
    locality: Option<String>,
    street_address: Option<String>,
    postal_code: Option<String>,
    organization: Option<String>,
    organizational_unit: Option<String>,
}

impl SubjectInfoBody {
    /// Checks every attribute's limits. A template's subjectInfo has no commonName.
    pub fn check(self, field: &str, common_name_allowed: bool) -> Result<SubjectInfo, ApiError> {
        let f = |n: &str| format!("{field}.{n}");
        for (name, v) in [
            ("commonName", &self.common_name),
            ("serialNumber", &self.serial_number),
            ("country", &self.country),
            ("stateOrProvince", &self.state_or_province),
            ("locality", &self.locality),
            ("streetAddress", &self.street_address),
            ("postalCode", &self.postal_code),
            ("organization", &self.organization),
            ("organizationalUnit", &self.organizational_unit),
        ] {
            if let Some(v) = v {
                no_controls(&f(name), v)?;
            }
        }
        if !common_name_allowed && self.common_name.is_some() {
            return Err(ApiError::malformed(format!(
                "{}: not a field of a template's subjectInfo (the common name comes with each request)",
                f("commonName")
            )));
        }
        let country = opt_len(&f("country"), self.country, 2)?;
        if let Some(c) = &country {
            if c.chars().count() != 2 || !c.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(ApiError::invalid(format!(
                    "{}: must be 2 letters (ISO 3166)",
                    f("country")
                )));
            }
        }
        let serial_number = opt_len(&f("serialNumber"), self.serial_number, 64)?;
        if let Some(s) = &serial_number {
            if !s.chars().all(is_printable_char) {
                return Err(ApiError::invalid(format!(
                    "{}: only letters, digits, space and '()+,-./:=? are allowed (PrintableString)",
                    f("serialNumber")
                )));
            }
        }
        Ok(SubjectInfo {
            common_name: opt_len(&f("commonName"), self.common_name, 64)?,
            serial_number,
            country: country.map(|c| c.to_ascii_uppercase()),
            state_or_province: opt_len(&f("stateOrProvince"), self.state_or_province, 128)?,
            locality: opt_len(&f("locality"), self.locality, 128)?,
            street_address: opt_len(&f("streetAddress"), self.street_address, 128)?,
            postal_code: opt_len(&f("postalCode"), self.postal_code, 40)?,
            organization: opt_len(&f("organization"), self.organization, 64)?,
            organizational_unit: opt_len(&f("organizationalUnit"), self.organizational_unit, 64)?,
            other: vec![],
        })
    }
}

/// Issue Certificate (Issuer).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssuerBody {
    certificate_type: Option<String>,
    parent_cert_id: Option<i64>,
    name: Option<String>,
    description: Option<String>,
    subject_info: Option<Obj<SubjectInfoBody>>,
    ttl_value: Option<i64>,
    specific_date: Option<String>,
    back_date_validation: Option<i64>,
    max_depth: Option<i64>,
    key_info: Option<Obj<KeyInfoBody>>,
    signature_algorithm: Option<String>,
    exclude_common_name_from_sans: Option<bool>,
    sans: Option<Vec<String>>,
    ip_sans: Option<Vec<String>>,
    url_sans: Option<Vec<String>>,
    other_sans: Option<Vec<Obj<OidInfoBody>>>,
}

impl IssuerBody {
    pub fn check(self) -> Result<IssuerParams, ApiError> {
        let cert_type = match self.certificate_type.as_deref() {
            None => {
                return Err(ApiError::invalid(
                    "certificateType: required (ROOT or INTERMEDIATE)",
                ))
            }
            Some("ROOT") => CertKind::Root,
            Some("INTERMEDIATE") => CertKind::Intermediate,
            Some("LEAF") => {
                return Err(ApiError::invalid(
                    "certificateType: LEAF certificates are issued through a template",
                ))
            }
            Some(other) => {
                return Err(ApiError::malformed(format!(
                    "certificateType: unknown value {other:?}; must be ROOT or INTERMEDIATE"
                )))
            }
        };
        let parent_cert_id = match self.parent_cert_id {
            None => None,
            Some(id) if id > 0 => Some(id as u64),
            Some(_) => {
                return Err(ApiError::invalid(
                    "parentCertId: must be a positive integer",
                ))
            }
        };
        if cert_type == CertKind::Intermediate && parent_cert_id.is_none() {
            return Err(ApiError::invalid(
                "parentCertId: required when certificateType is INTERMEDIATE",
            ));
        }
        if cert_type == CertKind::Root && parent_cert_id.is_some() {
            return Err(ApiError::invalid(
                "parentCertId: must be absent when certificateType is ROOT",
            ));
        }
        let name = name("name", self.name)?;
        let description = description(self.description)?;
        let subject = self
            .subject_info
            .ok_or_else(|| ApiError::invalid("subjectInfo: required"))?
            .0
            .check("subjectInfo", true)?;
        if subject.common_name.as_deref().unwrap_or("").is_empty() {
            return Err(ApiError::invalid("subjectInfo.commonName: required"));
        }
        let validity = validity(
            ("ttlValue", self.ttl_value),
            ("specificDate", self.specific_date),
            true,
        )?
        .ok_or_else(|| {
            ApiError::invalid("ttlValue: either ttlValue or specificDate is required")
        })?;
        let back_date = range(
            "backDateValidation",
            self.back_date_validation,
            0,
            2_592_000,
            30,
        )? as u64;
        let max_depth = range("maxDepth", self.max_depth, -1, 3, 0)? as i32;
        let (key, _) = KeyInfoBody::check(self.key_info)?;
        let signature_algorithm = signature_algorithm(self.signature_algorithm, key)?;
        let sans = sans(
            self.sans,
            self.ip_sans,
            self.url_sans,
            OidInfoBody::check_all("otherSans", self.other_sans)?,
        )?;
        Ok(IssuerParams {
            cert_type,
            parent_cert_id,
            name,
            description,
            subject,
            validity,
            back_date,
            max_depth,
            key,
            signature_algorithm,
            exclude_cn_from_sans: self.exclude_common_name_from_sans.unwrap_or(false),
            sans,
        })
    }
}

/// `signatureAlgorithm`: one of the seed's table, fitting the key.
fn signature_algorithm(
    value: Option<String>,
    key: KeyAlgorithm,
) -> Result<SignatureAlgorithm, ApiError> {
    let value = value.ok_or_else(|| ApiError::invalid("signatureAlgorithm: required"))?;
    let alg = SignatureAlgorithm::from_api(&value).ok_or_else(|| {
        ApiError::malformed(format!(
            "signatureAlgorithm: unknown value {value:?}; must be one of SHA256_WITH_RSA, SHA384_WITH_RSA, SHA512_WITH_RSA, SHA256_WITH_ECDSA, SHA384_WITH_ECDSA, SHA512_WITH_ECDSA, ED25519"
        ))
    })?;
    if !alg.fits(key) {
        return Err(ApiError::invalid(format!(
            "signatureAlgorithm: {value} does not fit a {} key",
            key.api_name()
        )));
    }
    Ok(alg)
}

/// A required name of at most 64 characters.
pub fn name(field: &str, v: Option<String>) -> Result<String, ApiError> {
    let v = v.ok_or_else(|| ApiError::invalid(format!("{field}: required")))?;
    if v.trim().is_empty() {
        return Err(ApiError::invalid(format!("{field}: must not be empty")));
    }
    if v.chars().count() > 64 {
        return Err(ApiError::invalid(format!(
            "{field}: must be at most 64 characters"
        )));
    }
    Ok(v)
}

/// An optional description of at most 256 characters.
pub fn description(v: Option<String>) -> Result<Option<String>, ApiError> {
    opt_len("description", v, 256)
}

fn opt_len(field: &str, v: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if s.chars().count() > max => Err(ApiError::invalid(format!(
            "{field}: must be at most {max} characters"
        ))),
        Some(s) if s.is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// An integer within `min..=max`, or `default` when absent.
pub fn range(
    field: &str,
    v: Option<i64>,
    min: i64,
    max: i64,
    default: i64,
) -> Result<i64, ApiError> {
    match v {
        None => Ok(default),
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(format!(
            "{field}: must be {min} to {max}"
        ))),
    }
}

/// The seed's either/or pair of a TTL in seconds and a date; `None` when neither is given and
/// neither is required.
pub fn validity(
    ttl: (&str, Option<i64>),
    date: (&str, Option<String>),
    required: bool,
) -> Result<Option<Validity>, ApiError> {
    match (ttl.1, date.1) {
        (Some(_), Some(_)) => Err(ApiError::invalid(format!(
            "{}: give either {} or {}, not both",
            ttl.0, ttl.0, date.0
        ))),
        (Some(t), None) => Ok(Some(Validity::Ttl(
            range(ttl.0, Some(t), 0, 315_360_000, 0)? as u64,
        ))),
        (None, Some(d)) => Ok(Some(Validity::Until(specific_date(date.0, &d)?))),
        (None, None) if required => Err(ApiError::invalid(format!(
            "{}: either {} or {} is required",
            ttl.0, ttl.0, date.0
        ))),
        (None, None) => Ok(None),
    }
}

/// The seed's date form `2025-12-31T23:59:59` (UTC), within 1970-01-01T00:00:00 ..
/// 2999-12-31T23:59:59.
pub fn specific_date(field: &str, s: &str) -> Result<i64, ApiError> {
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .map_err(|_| ApiError::invalid(format!("{field}: must look like 2025-12-31T23:59:59")))?;
    let secs = t.and_utc().timestamp();
    if !(0..=32_503_679_999).contains(&secs) {
        return Err(ApiError::invalid(format!(
            "{field}: must be within 1970-01-01T00:00:00 and 2999-12-31T23:59:59"
        )));
    }
    Ok(secs)
}

/// DNS, IP, URL and other SANs, each checked for syntax.
pub fn sans(
    dns: Option<Vec<String>>,
    ip: Option<Vec<String>>,
    url: Option<Vec<String>>,
    other: Vec<OidValue>,
) -> Result<Sans, ApiError> {
    let dns = dns.unwrap_or_default();
    for (i, d) in dns.iter().enumerate() {
        if !cert::is_valid_hostname(d) {
            return Err(ApiError::invalid(format!(
                "sans[{i}]: {d:?} is not a valid DNS name"
            )));
        }
    }
    let ip = ip
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<IpAddr>()
                .map_err(|_| ApiError::invalid(format!("ipSans[{i}]: {s:?} is not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let uri = url.unwrap_or_default();
    for (i, u) in uri.iter().enumerate() {
        if !is_uri(u) {
            return Err(ApiError::invalid(format!(
                "urlSans[{i}]: {u:?} is not a URI (scheme:rest, no spaces)"
            )));
        }
    }
    Ok(Sans {
        dns,
        ip,
        uri,
        email: vec![],
        other,
    })
}

/// RFC 3986 shape: a scheme, a colon, and a non-empty rest of visible ASCII.
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut sc = scheme.chars();
    sc.next().is_some_and(|c| c.is_ascii_alphabetic())
        && sc.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && rest.chars().all(|c| c.is_ascii_graphic())
        && s.len() <= 2048
}

/// Refuses C0 and C1 control characters (and DEL) in a value that is signed into a
/// certificate: `www.bank.com\0.evil.com` reads differently to different verifiers.
pub fn no_controls(field: &str, s: &str) -> Result<(), ApiError> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(ApiError::invalid(format!(
            "{field}: control character U+{:04X} is not allowed",
            c as u32
        ))),
        None => Ok(()),
    }
}

/// Dotted-decimal OID syntax.
pub fn oid(field: &str, s: &str) -> Result<crate::pki::oid::Oid, ApiError> {
    s.parse().map_err(|e| {
        ApiError::invalid(format!(
            "{field}: {:?} is not a dotted-decimal OID ({e})",
            s.chars().take(64).collect::<String>()
        ))
    })
}

fn is_printable_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_in_signed_values() {
        let subject = SubjectInfoBody {
            common_name: Some("www.bank.com\u{0}.evil.com".into()),
            ..SubjectInfoBody::default()
        };
        let e = subject.check("subjectInfo", true).unwrap_err();
        assert_eq!(e.code, 40001);
        assert!(e
            .message
            .starts_with("subjectInfo.commonName: control character U+0000"));
        for bad in ["a\u{1b}b", "a\u{7f}", "a\u{85}b", "a\u{9f}", "line\nbreak"] {
            let s = SubjectInfoBody {
                organization: Some(bad.into()),
                ..SubjectInfoBody::default()
            };
            let e = s.check("subjectInfo", true).unwrap_err();
            assert!(
                e.message.starts_with("subjectInfo.organization: control"),
                "{bad:?}"
            );
        }
        let other = OidInfoBody {
            oid: Some("1.2.3.4".into()),
            kind: Some("UTF8String".into()),
            value: Some("x\u{0}y".into()),
        };
        let e = other.check("otherSans[0]").unwrap_err();
        assert!(
            e.message.starts_with("otherSans[0].value: control"),
            "{}",
            e.message
        );
        // Non-ASCII text that is not a control stays allowed.
        let fine = SubjectInfoBody {
            organization: Some("Caf\u{e9} \u{d55c}\u{ae00}".into()),
            ..SubjectInfoBody::default()
        };
        assert!(fine.check("subjectInfo", true).is_ok());
    }

    #[test]
    fn bodies_must_be_objects() {
        let ok = json::<StoreBody>(br#"{"name":"s"}"#)
            .unwrap()
            .check()
            .unwrap();
        assert_eq!(ok.crl_refresh_period, 7);
        let e = json::<StoreBody>(br#"["s","d",false,7,false,1]"#).unwrap_err();
        assert_eq!(e.code, 40000);
        assert!(e.message.starts_with("body:"), "{}", e.message);
        let nested = br#"{"certificateType":"ROOT","name":"r","keyInfo":["EC",256]}"#;
        let e = json::<IssuerBody>(nested).unwrap_err();
        assert_eq!(e.code, 40000);
        assert!(e.message.starts_with("keyInfo"), "{}", e.message);
    }

    #[test]
    fn trailing_bytes_and_unknown_fields_are_named() {
        assert!(json::<StoreBody>(br#"{"name":"x"} {"name":"y"}"#).is_err());
        let e = json::<StoreBody>(br#"{"name":"x","crlActiv":true}"#).unwrap_err();
        assert!(e.message.contains("crlActiv"), "{}", e.message);
        let e = json::<StoreBody>(br#"{"name":"x","crlRefreshPeriod":"7"}"#).unwrap_err();
        assert!(e.message.starts_with("crlRefreshPeriod"), "{}", e.message);
    }
}
