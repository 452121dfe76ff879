//! Template, leaf-issuance and revoke bodies.

use serde::Deserialize;

use super::body::{self, description, name, range, KeyInfoBody, Obj, OidInfoBody, SubjectInfoBody};
use super::error::ApiError;
use crate::ca::{LeafMode, LeafParams, TemplateSpec};
use crate::pki::cert::{ExtendedKeyUsage, KeyUsage};
use crate::pki::crl::RevocationReason;

/// Create Template / Modify Template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateBody {
    name: Option<String>,
    description: Option<String>,
    parent_cert_id: Option<i64>,
    #[serde(rename = "maxTTL")]
    max_ttl: Option<i64>,
    max_specific_date: Option<String>,
    back_date_validation: Option<i64>,
    allow_ip_sans: Option<bool>,
    url_sans_whitelist: Option<Vec<String>>,
    other_sans_whitelist: Option<Vec<Obj<OidInfoBody>>>,
    store_in_server: Option<bool>,
    basic_constraints_valid_for_non_ca: Option<bool>,
    use_csr_common_name: Option<bool>,
    use_csr_sans: Option<bool>,
    key_info: Option<Obj<KeyInfoBody>>,
    signature_bits: Option<i64>,
    key_usage: Option<Vec<String>>,
    extended_key_usage: Option<Vec<String>>,
    extended_key_usage_oids: Option<Vec<String>>,
    policies: Option<Vec<String>>,
    subject_info: Option<Obj<SubjectInfoBody>>,
    use_csr_other_fields: Option<bool>,
    other_fields: Option<Vec<Obj<OidInfoBody>>>,
}

impl TemplateBody {
    pub fn check(self) -> Result<TemplateSpec, ApiError> {
        let name = name("name", self.name)?;
        let description = description(self.description)?;
        let parent_cert_id = match self.parent_cert_id {
            None => return Err(ApiError::invalid("parentCertId: required")),
            Some(id) if id > 0 => id as u64,
            Some(_) => {
                return Err(ApiError::invalid(
                    "parentCertId: must be a positive integer",
                ))
            }
        };
        let (max_ttl, max_specific_date) = match body::validity(
            ("maxTTL", self.max_ttl),
            ("maxSpecificDate", self.max_specific_date),
            true,
        )? {
            Some(crate::ca::Validity::Ttl(t)) => (Some(t), None),
            Some(crate::ca::Validity::Until(d)) => (None, Some(d)),
            None => (None, None),
        };
        let back_date_validation = range(
            "backDateValidation",
            self.back_date_validation,
            0,
            2_592_000,
            30,
        )? as u64;
        let url_sans_whitelist = self.url_sans_whitelist.unwrap_or_default();
        for (i, g) in url_sans_whitelist.iter().enumerate() {
            if g.is_empty()
                || g.len() > 2048
                || g.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ApiError::invalid(format!(
                    "urlSansWhitelist[{i}]: must be a non-empty glob without spaces"
                )));
            }
        }
        let other_sans_whitelist =
            OidInfoBody::check_all("otherSansWhitelist", self.other_sans_whitelist)?;
        let (key_algorithm, key_algorithm_name) = KeyInfoBody::check(self.key_info)?;
        let signature_bits = match self.signature_bits {
            None => 256,
            Some(b @ (256 | 384 | 512)) => b as u32,
            Some(_) => return Err(ApiError::invalid("signatureBits: must be 256, 384 or 512")),
        };
        let key_usage = enums::<KeyUsage>("keyUsage", self.key_usage, "DIGITAL_SIGNATURE, NON_REPUDIATION, KEY_ENCIPHERMENT, DATA_ENCIPHERMENT, KEY_AGREEMENT, KEY_CERT_SIGN, CRL_SIGN, ENCIPHER_ONLY, DECIPHER_ONLY")?;
        let extended_key_usage = enums::<ExtendedKeyUsage>("extendedKeyUsage", self.extended_key_usage, "SERVER_AUTHENTICATION, CLIENT_AUTHENTICATION, CODE_SIGNING, EMAIL_PROTECTION, TIME_STAMPING, OCSP_SIGNING, ANY_EXTENDED_KEY_USAGE")?;
        let extended_key_usage_oids = oids("extendedKeyUsageOids", self.extended_key_usage_oids)?;
        let policies = oids("policies", self.policies)?;
        let subject_info = self
            .subject_info
            .map(|o| o.0)
            .unwrap_or_default()
            .check("subjectInfo", false)?;
        let other_fields = OidInfoBody::check_all("otherFields", self.other_fields)?;
        Ok(TemplateSpec {
            name,
            description,
            parent_cert_id,
            max_ttl,
            max_specific_date,
            back_date_validation,
            allow_ip_sans: self.allow_ip_sans.unwrap_or(false),
            url_sans_whitelist,
            other_sans_whitelist,
            store_in_server: self.store_in_server.unwrap_or(true),
            basic_constraints_valid_for_non_ca: self
                .basic_constraints_valid_for_non_ca
                .unwrap_or(false),
            use_csr_common_name: self.use_csr_common_name.unwrap_or(false),
            use_csr_sans: self.use_csr_sans.unwrap_or(false),
            key_algorithm,
            key_algorithm_name,
            signature_bits,
            key_usage,
            extended_key_usage,
            extended_key_usage_oids,
            policies,
            subject_info,
            use_csr_other_fields: self.use_csr_other_fields.unwrap_or(false),
            other_fields,
        })
    }
}

fn enums<T: serde::de::DeserializeOwned + PartialEq>(
    field: &str,
    list: Option<Vec<String>>,
    allowed: &str,
) -> Result<Vec<T>, ApiError> {
    let mut out: Vec<T> = Vec::new();
    for (i, s) in list.unwrap_or_default().into_iter().enumerate() {
        let v: T = serde_json::from_value(serde_json::Value::String(s.clone())).map_err(|_| {
            ApiError::malformed(format!(
                "{field}[{i}]: unknown value {s:?}; must be one of {allowed}"
            ))
        })?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn oids(field: &str, list: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let list = list.unwrap_or_default();
    for (i, s) in list.iter().enumerate() {
        body::oid(&format!("{field}[{i}]"), s)?;
    }
    Ok(list)
}

/// The certificate encodings of the answer; invalid values fall back to PEM (the seed says so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pem,
    Der,
    PemBundle,
}

/// The private key encodings of a GENERATE answer; invalid values fall back to PEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    Pem,
    Der,
    Pkcs8,
}

/// Issue Certificate Using Template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeafBody {
    mode: Option<String>,
    common_name: Option<String>,
    ttl_value: Option<i64>,
    specific_date: Option<String>,
    csr: Option<String>,
    format: Option<String>,
    private_key_format: Option<String>,
    remove_roots_from_chain: Option<bool>,
    exclude_common_name_from_sans: Option<bool>,
    serial_number: Option<String>,
    sans: Option<Vec<String>>,
    ip_sans: Option<Vec<String>>,
    url_sans: Option<Vec<String>>,
    other_sans: Option<Vec<Obj<OidInfoBody>>>,
}

/// A checked leaf request with its answer options.
pub struct LeafRequest {
    pub params: LeafParams,
    pub format: Format,
    pub key_format: KeyFormat,
    pub remove_roots_from_chain: bool,
}

impl LeafBody {
    pub fn check(self) -> Result<LeafRequest, ApiError> {
        let generate = match self.mode.as_deref() {
            None => return Err(ApiError::invalid("mode: required (GENERATE or SIGN)")),
            Some("GENERATE") => true,
            Some("SIGN") => false,
            Some(other) => {
                return Err(ApiError::malformed(format!(
                    "mode: unknown value {other:?}; must be GENERATE or SIGN"
                )))
            }
        };
        if let Some(cn) = &self.common_name {
            body::no_controls("commonName", cn)?;
        }
        let common_name = match self.common_name {
            Some(cn) if cn.chars().count() > 64 => {
                return Err(ApiError::invalid(
                    "commonName: must be at most 64 characters",
                ))
            }
            Some(cn) if cn.is_empty() => None,
            other => other,
        };
        if generate && common_name.is_none() {
            return Err(ApiError::invalid("commonName: required in GENERATE mode"));
        }
        let mode = if generate {
            if self.csr.is_some() {
                return Err(ApiError::invalid("csr: only in SIGN mode"));
            }
            LeafMode::Generate
        } else {
            let csr = self
                .csr
                .ok_or_else(|| ApiError::invalid("csr: required in SIGN mode"))?;
            let csr = crate::pki::csr::parse(&csr).map_err(|e| {
                let m = e.to_string();
                ApiError::csr(if m.starts_with("csr") {
                    m
                } else {
                    format!("csr: {m}")
                })
            })?;
            LeafMode::Sign(Box::new(csr))
        };
        if generate && self.remove_roots_from_chain.is_some() {
            return Err(ApiError::invalid("removeRootsFromChain: only in SIGN mode"));
        }
        let validity = body::validity(
            ("ttlValue", self.ttl_value),
            ("specificDate", self.specific_date),
            false,
        )?;
        let serial_number = match self.serial_number {
            Some(s) if s.chars().count() > 64 => {
                return Err(ApiError::invalid("serialNumber: must be at most 64 characters"))
            }
            Some(s) if !s.chars().all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)) => {
                return Err(ApiError::invalid(
                    "serialNumber: only letters, digits, space and '()+,-./:=? are allowed (PrintableString)",
                ))
            }
            Some(s) if s.is_empty() => None,
            other => other,
        };
        let sans = body::sans(
            self.sans,
            self.ip_sans,
            self.url_sans,
            OidInfoBody::check_all("otherSans", self.other_sans)?,
        )?;
        let format = match self.format.as_deref() {
            Some("DER") => Format::Der,
            Some("PEM_BUNDLE") => Format::PemBundle,
            _ => Format::Pem,
        };
        let key_format = match self.private_key_format.as_deref() {
            Some("DER") => KeyFormat::Der,
            Some("PKCS8") => KeyFormat::Pkcs8,
            _ => KeyFormat::Pem,
        };
        Ok(LeafRequest {
            params: LeafParams {
                mode,
                common_name,
                cn_optional: false,
                validity,
                exclude_cn_from_sans: self.exclude_common_name_from_sans.unwrap_or(false),
                serial_number,
                sans,
            },
            format,
            key_format,
            remove_roots_from_chain: self.remove_roots_from_chain.unwrap_or(false),
        })
    }
}

/// Revoke: optional body with a reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    reason: Option<String>,
}

impl RevokeBody {
    pub fn reason(bytes: &[u8]) -> Result<RevocationReason, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(RevocationReason::Unspecified);
        }
        let b: RevokeBody = body::json(bytes)?;
        match b.reason {
            None => Ok(RevocationReason::Unspecified),
            Some(r) => serde_json::from_value(serde_json::Value::String(r.clone())).map_err(|_| {
                ApiError::malformed(format!(
                    "reason: unknown value {r:?}; must be one of UNSPECIFIED, KEY_COMPROMISE, CA_COMPROMISE, AFFILIATION_CHANGED, SUPERSEDED, CESSATION_OF_OPERATION, CERTIFICATE_HOLD, PRIVILEGE_WITHDRAWN"
                ))
            }),
        }
    }
}
