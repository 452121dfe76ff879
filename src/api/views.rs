//! The JSON shapes of API.md's resources.

use serde_json::{json, Value};

use super::timestamp;
use crate::ca::{CertKind, Certificate, Page, Store, Template};
use crate::clock::now;
use crate::pki::cert;
use crate::pki::der_util::hex;

pub fn page<T>(p: &Page<T>, item: impl Fn(&T) -> Value) -> Value {
    json!({
        "totalCount": p.total_count,
        "page": p.page,
        "size": p.size,
        "items": p.items.iter().map(item).collect::<Vec<_>>(),
    })
}

pub fn store(s: &Store) -> Value {
    json!({
        "caStoreId": s.id,
        "name": s.name,
        "description": s.description,
        "crlActive": s.crl_active,
        "crlRefreshPeriod": s.crl_refresh_period,
        "ocspActive": s.ocsp_active,
        "ocspRefreshPeriod": s.ocsp_refresh_period,
        "createdAt": timestamp(s.created_at),
        "updatedAt": timestamp(s.updated_at),
    })
}

/// VALID, REVOKED, or EXPIRED (derived from notAfter).
pub fn status(c: &Certificate) -> &'static str {
    if c.revocation.is_some() {
        "REVOKED"
    } else if c.not_after <= now() {
        "EXPIRED"
    } else {
        "VALID"
    }
}

pub fn cert(c: &Certificate) -> Value {
    let ty = match c.kind {
        CertKind::Root => "ROOT",
        CertKind::Intermediate => "INTERMEDIATE",
        CertKind::Leaf => "LEAF",
    };
    let signature_algorithm = c
        .signing
        .map(|k| k.signature_algorithm)
        .unwrap_or(c.signature_algorithm);
    json!({
        "certId": c.id,
        "caStoreId": c.store_id,
        "name": c.name,
        "description": c.description,
        "certificateType": ty,
        "parentCertId": c.parent_cert_id,
        "templateId": c.template_id,
        "commonName": c.common_name,
        "subject": c.subject,
        "issuer": c.issuer,
        "serialNumber": hex(&c.serial),
        "notBefore": timestamp(c.not_before),
        "notAfter": timestamp(c.not_after),
        "status": status(c),
        "revokedAt": c.revocation.map(|r| timestamp(r.at)),
        "revocationReason": c.revocation.map(|r| r.reason),
        "keyInfo": {"algorithm": c.key_algorithm.api_name(), "keySize": c.key_algorithm.key_size()},
        "signatureAlgorithm": signature_algorithm.api_name(),
        "maxDepth": c.signing.map(|k| k.max_depth),
        "sans": c.sans.dns,
        "ipSans": c.sans.ip.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        "urlSans": c.sans.uri,
        "crlUrl": c.crl_url,
        "ocspUrl": c.ocsp_url,
        "createdAt": timestamp(c.created_at),
    })
}

pub fn cert_detail(c: &Certificate, chain: &[Certificate]) -> Value {
    let mut v = cert(c);
    v["certificatePem"] = json!(cert::to_pem(&c.der));
    v["caChainPem"] = json!(chain
        .iter()
        .map(|c| cert::to_pem(&c.der))
        .collect::<String>());
    v
}

pub fn template(t: &Template) -> Value {
    json!({
        "templateId": t.id,
        "caStoreId": t.store_id,
        "name": t.spec.name,
        "description": t.spec.description,
        "parentCertId": t.spec.parent_cert_id,
        "maxTTL": t.spec.max_ttl,
        "maxSpecificDate": t.spec.max_specific_date.map(super::date_form),
        "backDateValidation": t.spec.back_date_validation,
        "allowIpSans": t.spec.allow_ip_sans,
        "urlSansWhitelist": t.spec.url_sans_whitelist,
        "otherSansWhitelist": t.spec.other_sans_whitelist.iter().map(oid_info).collect::<Vec<_>>(),
        "storeInServer": t.spec.store_in_server,
        "basicConstraintsValidForNonCa": t.spec.basic_constraints_valid_for_non_ca,
        "useCsrCommonName": t.spec.use_csr_common_name,
        "useCsrSans": t.spec.use_csr_sans,
        "keyInfo": {"algorithm": t.spec.key_algorithm_name, "keySize": t.spec.key_algorithm.key_size()},
        "signatureBits": t.spec.signature_bits,
        "keyUsage": t.spec.key_usage,
        "extendedKeyUsage": t.spec.extended_key_usage,
        "extendedKeyUsageOids": t.spec.extended_key_usage_oids,
        "policies": t.spec.policies,
        "subjectInfo": subject_info(&t.spec.subject_info),
        "useCsrOtherFields": t.spec.use_csr_other_fields,
        "otherFields": t.spec.other_fields.iter().map(oid_info).collect::<Vec<_>>(),
        "createdAt": timestamp(t.created_at),
        "updatedAt": timestamp(t.updated_at),
    })
}

fn oid_info(o: &cert::OidValue) -> Value {
    json!({"oid": o.oid.to_string(), "type": o.kind, "value": o.value})
}

fn subject_info(s: &cert::SubjectInfo) -> Value {
    json!({
        "serialNumber": s.serial_number,
        "country": s.country,
        "stateOrProvince": s.state_or_province,
        "locality": s.locality,
        "streetAddress": s.street_address,
        "postalCode": s.postal_code,
        "organization": s.organization,
        "organizationalUnit": s.organizational_unit,
    })
}
