//! The JSON shapes of NCP's answers: `caInfo`, `caCertInfo`, end certificates.

use serde_json::{json, Value};

use super::body::serial_text;
use crate::ca::{Certificate, NcpCa, NcpCaCert};
use crate::pki::cert;

/// The value of one attribute (`C`, `ST`, `L`, `O`, `OU`) of an RFC 4514 string.
fn rdn(dn: &str, key: &str) -> String {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' || c == '+' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
        .iter()
        .find_map(|p| {
            p.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.to_owned())
        })
        .unwrap_or_default()
}

pub fn key_algorithm_name(c: &Certificate) -> &'static str {
    match c.key_algorithm.family() {
        crate::pki::KeyFamily::Rsa => "RSA",
        crate::pki::KeyFamily::Ec => "EC",
        crate::pki::KeyFamily::Ed25519 => "ED25519",
    }
}

/// `caInfo`.
pub fn ca_info(ca: &NcpCa, base_url: &str, signing_count: usize) -> Value {
    json!({
        "caId": ca.ca_id,
        "caTag": ca.ca_tag,
        "caType": ca.ca_type,
        "alias": ca.alias,
        "memo": ca.memo.clone().unwrap_or_default(),
        "status": ca.status,
        "statusUpdateDate": ca.status_updated_ms,
        "destroyDate": ca.destroy_at_ms,
        "rgstDate": ca.created_ms,
        "signingCount": signing_count,
        "issuerTag": ca.issuer_tag,
        "nrn": "",
        "urlInfo": {
            "ocsp": ca.ocsp_url.iter().collect::<Vec<_>>(),
            "crl": [format!("{base_url}/ext/{}/crl", ca.ca_tag)],
            "ca": [format!("{base_url}/ext/{}/ca", ca.ca_tag)],
        },
    })
}

/// `caCertInfo` (null while PENDING).
pub fn ca_cert_info(cert: Option<&NcpCaCert>) -> Value {
    let Some(NcpCaCert { cert: c, chain, .. }) = cert else {
        return Value::Null;
    };
    let chain_pem: String = std::iter::once(&c.der)
        .chain(chain.iter())
        .map(|d| cert::to_pem(d))
        .collect();
    json!({
        "caCertId": c.id,
        "commonName": c.common_name.clone().unwrap_or_default(),
        "country": rdn(&c.subject, "C"),
        "stateProvince": rdn(&c.subject, "ST"),
        "locality": rdn(&c.subject, "L"),
        "organization": rdn(&c.subject, "O"),
        "organizationUnit": rdn(&c.subject, "OU"),
        "issuerName": c.issuer,
        "notAfterDate": c.not_after * 1000,
        "notBeforeDate": c.not_before * 1000,
        "publicKeyAlgorithm": key_algorithm_name(c),
        "signatureAlgorithm": c.signature_algorithm.api_name(),
        "certPem": cert::to_pem(&c.der),
        "chainPem": chain_pem,
        "serialNo": serial_text(&c.serial),
    })
}

/// Get End Cert's `data`.
pub fn end_cert(c: &Certificate, chain: &[Vec<u8>], ocsp: Option<&str>) -> Value {
    json!({
        "commonName": c.common_name.clone().unwrap_or_default(),
        "notAfterDate": c.not_after * 1000,
        "notBeforeDate": c.not_before * 1000,
        "publicKeyAlgorithm": key_algorithm_name(c),
        "signatureAlgorithm": c.signature_algorithm.api_name(),
        "certPem": cert::to_pem(&c.der),
        "caChain": chain.iter().map(|d| cert::to_pem(d)).collect::<String>(),
        "ocspResponder": ocsp.unwrap_or(""),
        "serialNo": serial_text(&c.serial),
        "status": if c.revocation.is_some() { "REVOKED" } else if c.not_after * 1000 <= crate::ca::ncp_now_ms() { "EXPIRED" } else { "VALID" },
        "revokedDate": c.revocation.map(|r| r.at * 1000),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn rdn_values() {
        let dn = r"CN=a\,b,O=Org,C=KR";
        assert_eq!(super::rdn(dn, "O"), "Org");
        assert_eq!(super::rdn(dn, "C"), "KR");
        assert_eq!(super::rdn(dn, "CN"), "a,b");
        assert_eq!(super::rdn(dn, "L"), "");
    }
}
