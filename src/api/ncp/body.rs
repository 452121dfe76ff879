//! NCP request bodies and parameters, checked: each refusal carries a code of NCP's enum and
//! a message in seed 002's wording that names the field.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::envelope::NcpError;
use crate::pki::cert::{Sans, SubjectInfo};
use crate::pki::KeyAlgorithm;

pub type Obj = Map<String, Value>;

/// The body as a JSON object (an absent body is an empty object when `optional`).
pub fn object(body: &[u8], optional: bool) -> Result<Obj, NcpError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return if optional {
            Ok(Obj::new())
        } else {
            Err(NcpError::bad(
                "INVALID_REQUEST",
                "The request body is missing.",
            ))
        };
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(NcpError::bad(
            "INVALID_REQUEST",
            "Invalid request. (the body must be a JSON object)",
        )),
        Err(e) => Err(NcpError::bad(
            "INVALID_REQUEST",
            format!("Invalid request. (body is not JSON: {e})"),
        )),
    }
}

/// A string field under any of `names`; numbers are taken as their decimal text. `None` when
/// absent, null or empty.
pub fn string(o: &Obj, names: &[&str]) -> Result<Option<String>, NcpError> {
    for n in names {
        match o.get(*n) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.is_empty() => return Ok(None),
            Some(Value::String(s)) => return Ok(Some(s.clone())),
            Some(Value::Number(x)) => return Ok(Some(x.to_string())),
            Some(_) => {
                return Err(NcpError::bad(
                    "INVALID_INPUT",
                    format!("{}: Invalid input. (must be a string)", names[0]),
                ))
            }
        }
    }
    Ok(None)
}

/// `keyType`: `RSA2048 | RSA4096 | EC256 | EC521`.
pub fn key_type(v: Option<String>) -> Result<Option<KeyAlgorithm>, NcpError> {
    Ok(match v.as_deref() {
        None => None,
        Some("RSA2048") => Some(KeyAlgorithm::Rsa2048),
        Some("RSA4096") => Some(KeyAlgorithm::Rsa4096),
        Some("EC256") => Some(KeyAlgorithm::P256),
        Some("EC521") => Some(KeyAlgorithm::P521),
        Some(_) => {
            return Err(NcpError::bad(
                "INVALID_X509_KEY_TYPE",
                "keyType: Invalid keyType. (RSA2048, RSA4096, EC256 or EC521)",
            ))
        }
    })
}

/// `period`: days `1`..`3650`, or `MAX` (`None`).
pub fn period(v: &str) -> Result<Option<u32>, NcpError> {
    if v.eq_ignore_ascii_case("max") {
        return Ok(None);
    }
    match v.parse::<u32>() {
        Ok(d) if (1..=3650).contains(&d) && v.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(d)),
        _ => Err(NcpError::bad(
            "INVALID_INPUT_PERIOD",
            "period: Invalid period value. (days 1 to 3650, or MAX)",
        )),
    }
}

/// `alias`: 3–15 letters, digits, `-` or `_`, starting with a letter.
pub fn alias(v: Option<String>) -> Result<String, NcpError> {
    let a = v.ok_or_else(|| NcpError::bad("EMPTY_CA_ALIAS", "alias is missing."))?;
    if a.chars().count() > 15 {
        return Err(NcpError::bad(
            "EXCEED_CA_ALIAS",
            "ca alias exceeded the allowed length. (alias: at most 15 characters)",
        ));
    }
    let ok = a.len() >= 3
        && a.starts_with(|c: char| c.is_ascii_alphabetic())
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(NcpError::bad(
            "INVALID_INPUT",
            "alias: Invalid input. (3 to 15 letters, digits, - or _, starting with a letter)",
        ));
    }
    Ok(a)
}

/// `memo`: at most 300 characters.
pub fn memo(v: Option<String>) -> Result<Option<String>, NcpError> {
    match v {
        Some(m) if m.chars().count() > 300 => Err(NcpError::bad(
            "INVALID_INPUT",
            "memo exceeded the allowed length. (memo: at most 300 characters)",
        )),
        other => Ok(other),
    }
}

/// The `x509Parameters` object (also `X509CaParameters`, `X509EndCertParameters`, and the
/// documented misspellings `contry`, `organicationUnit`): subject and SANs.
pub fn x509(o: &Obj) -> Result<(SubjectInfo, Sans), NcpError> {
    let x = [
        "x509Parameters",
        "X509CaParameters",
        "X509EndCertParameters",
        "x509parameters",
    ]
    .iter()
    .find_map(|n| o.get(*n).filter(|v| !v.is_null()))
    .ok_or_else(|| NcpError::bad("EMPTY_X509_PARAMETERS", "x509Parameters are missing."))?;
    let x = x.as_object().ok_or_else(|| {
        NcpError::bad(
            "INVALID_INPUT",
            "x509Parameters: Invalid input. (must be an object)",
        )
    })?;
    let cn = string(x, &["commonName"])?
        .ok_or_else(|| NcpError::bad("EMPTY_COMMON_NAME", "common name is missing."))?;
    if cn.chars().count() > 64 {
        return Err(NcpError::bad(
            "EXCEED_COMMON_NAME",
            "common name exceeded the allowed length. (x509Parameters.commonName: at most 64)",
        ));
    }
    let limited = |names: &[&str], max: usize, what: &str| -> Result<Option<String>, NcpError> {
        let v = string(x, names)?;
        if v.as_ref().is_some_and(|s| s.chars().count() > max) {
            return Err(NcpError::bad(
                "INVALID_INPUT",
                format!(
                    "{what} exceeded the allowed length. (x509Parameters.{}: at most {max})",
                    names[0]
                ),
            ));
        }
        Ok(v)
    };
    let country = string(x, &["country", "contry"])?;
    if let Some(c) = &country {
        if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(NcpError::bad(
                "INVALID_INPUT",
                "x509Parameters.country: Invalid input. (ISO 3166-1 alpha-2, e.g. KR)",
            ));
        }
    }
    let subject = SubjectInfo {
        common_name: Some(cn),
        country,
        organization: limited(&["organization"], 64, "organization")?,
        organizational_unit: limited(
            &["organizationUnit", "organicationUnit", "organizationalUnit"],
            128,
            "organization unit",
        )?,
        locality: limited(&["locality"], 128, "locality")?,
        state_or_province: limited(&["stateProvince"], 128, "state province")?,
        street_address: limited(&["streetAddress"], 128, "street address")?,
        postal_code: limited(&["postalCode"], 40, "postal code")?,
        ..SubjectInfo::default()
    };
    let mut sans = Sans::default();
    if let Some(alt) = string(x, &["altName"])? {
        for name in alt.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name.contains('@') {
                sans.email.push(name.to_owned());
            } else if crate::pki::cert::is_valid_hostname(name) {
                sans.dns.push(name.to_owned());
            } else {
                return Err(NcpError::bad(
                    "INVALID_INPUT",
                    format!("x509Parameters.altName: Invalid input. ({name:?} is not a host name or email)"),
                ));
            }
        }
    }
    if let Some(ips) = string(x, &["ip"])? {
        for ip in ips.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let ip: IpAddr = ip.parse().map_err(|_| {
                NcpError::bad(
                    "INVALID_X509_IP",
                    format!("Invalid ip. (x509Parameters.ip: {ip:?})"),
                )
            })?;
            sans.ip.push(ip);
        }
    }
    Ok((subject, sans))
}

/// A path's serial: colon-separated hex octets (either case), or plain hex.
pub fn serial(s: &str) -> Result<Vec<u8>, NcpError> {
    let bad = || NcpError::bad("INVALID_INPUT_SERIAL_NO", "Invalid serial no value.");
    let s = super::super::route::percent_decode(s).ok_or_else(bad)?;
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.is_empty()
        || hex.len() % 2 != 0
        || hex.len() > 64
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(bad());
    }
    if s.contains(':') && s.split(':').any(|g| g.len() != 2) {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

/// `AB:CD:...`
pub fn serial_text(serial: &[u8]) -> String {
    serial
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A query parameter (not decoded beyond `%XX`).
pub fn query<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `pageNo`: a positive integer, 1 when absent.
pub fn page_no(q: &str) -> Result<u64, NcpError> {
    match query(q, "pageNo") {
        None | Some("") => Ok(1),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n >= 1 && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(NcpError::bad(
                "INVALID_INPUT_PAGENUMBBER",
                "Invalid page no value. (pageNo: a positive integer)",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_either_case_and_form() {
        assert_eq!(serial("0A:ff").unwrap(), vec![0x0a, 0xff]);
        assert_eq!(serial("0aff").unwrap(), vec![0x0a, 0xff]);
        assert!(serial("0A:f").is_err());
        assert!(serial("zz").is_err());
        assert!(serial("").is_err());
        assert_eq!(serial_text(&[0x0a, 0xff]), "0A:FF");
    }

    #[test]
    fn fields() {
        assert!(alias(Some("ab".into())).is_err());
        assert!(alias(Some("1abc".into())).is_err());
        assert!(alias(Some("abcdefghijklmnop".into())).is_err());
        assert_eq!(alias(Some("my-root_1".into())).unwrap(), "my-root_1");
        assert_eq!(period("MAX").unwrap(), None);
        assert_eq!(period("365").unwrap(), Some(365));
        assert!(period("0").is_err());
        assert!(period("3651").is_err());
        assert!(period("+5").is_err());
        assert_eq!(page_no("pageNo=2&x=1").unwrap(), 2);
        assert!(page_no("pageNo=0").is_err());
        let o = object(
            br#"{"X509CaParameters":{"commonName":"a","contry":"KR","organicationUnit":"u"}}"#,
            false,
        )
        .unwrap();
        let (s, _) = x509(&o).unwrap();
        assert_eq!(s.country.as_deref(), Some("KR"));
        assert_eq!(s.organizational_unit.as_deref(), Some("u"));
    }
}
