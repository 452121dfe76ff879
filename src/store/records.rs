//! The records kept in the trees. Every record carries its appkey; lookups check it.

use serde::{Deserialize, Serialize};

use crate::pki::cert::{ExtendedKeyUsage, KeyUsage, OidValue, Sans, SubjectInfo};
use crate::pki::crl::RevocationReason;
use crate::pki::profile::TemplateSpec;
use crate::pki::{KeyAlgorithm, SignatureAlgorithm};

/// A CA store (the seed's "store"; `caId` in seed 004's edition).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoreRecord {
    pub id: u64,
    pub appkey: String,
    pub name: String,
    pub description: Option<String>,
    pub crl_active: bool,
    /// Days.
    pub crl_refresh_period: u32,
    pub ocsp_active: bool,
    /// Hours.
    pub ocsp_refresh_period: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertType {
    Root,
    Intermediate,
    Leaf,
}

/// The HSM key of an issuer certificate and how it signs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssuerKey {
    /// CKA_ID of the key pair in the token, hex.
    pub key_id: String,
    pub key_algorithm: KeyAlgorithm,
    /// The algorithm this issuer signs its certificates, CRLs and OCSP responses with.
    pub signature_algorithm: SignatureAlgorithm,
    /// -1 = unlimited.
    pub max_depth: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Unix seconds.
    pub at: i64,
    pub reason: RevocationReason,
}

/// A certificate the store keeps (issuers always; leaves when the template stores them).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CertRecord {
    pub id: u64,
    pub appkey: String,
    pub store_id: u64,
    pub name: String,
    pub description: Option<String>,
    pub cert_type: CertType,
    pub parent_cert_id: Option<u64>,
    pub template_id: Option<u64>,
    #[serde(with = "b64")]
    pub serial: Vec<u8>,
    #[serde(with = "b64")]
    pub der: Vec<u8>,
    pub common_name: Option<String>,
    pub subject: String,
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    pub key_algorithm: KeyAlgorithm,
    /// The algorithm this certificate was signed with (for issuers: see `IssuerKey`).
    pub signature_algorithm: SignatureAlgorithm,
    pub issuer_key: Option<IssuerKey>,
    pub sans: Sans,
    pub crl_url: Option<String>,
    pub ocsp_url: Option<String>,
    pub revocation: Option<Revocation>,
    pub created_at: i64,
}

impl CertRecord {
    pub fn is_issuer(&self) -> bool {
        self.issuer_key.is_some()
    }
}

/// What revocation status needs of every certificate an issuer signed, stored or not.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SerialRecord {
    pub store_id: u64,
    pub issuer_id: u64,
    #[serde(with = "b64")]
    pub serial: Vec<u8>,
    /// The certificate record, when the template stored it.
    pub cert_id: Option<u64>,
    pub not_after: i64,
    pub revocation: Option<Revocation>,
}

/// First octet of a binary `serials` row (schema 2); schema 1 rows are JSON and start with `{`.
const SERIAL_ROW_V2: u8 = 2;

impl SerialRecord {
    /// The `serials` tree row: fixed-width binary, because an OCSP refresh reads one per
    /// certificate (JSON cost 5 µs each).
    pub(crate) fn to_row(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(43 + self.serial.len());
        v.push(SERIAL_ROW_V2);
        v.extend_from_slice(&self.store_id.to_be_bytes());
        v.extend_from_slice(&self.issuer_id.to_be_bytes());
        v.push(u8::from(self.cert_id.is_some()) | u8::from(self.revocation.is_some()) << 1);
        v.extend_from_slice(&self.cert_id.unwrap_or(0).to_be_bytes());
        v.extend_from_slice(&self.not_after.to_be_bytes());
        let (at, reason) = self.revocation.map_or((0, 0), |r| (r.at, r.reason.code()));
        v.extend_from_slice(&at.to_be_bytes());
        v.push(reason);
        v.extend_from_slice(&self.serial);
        v
    }

    /// Reads a row of either schema.
    pub(crate) fn from_row(row: &[u8]) -> Result<SerialRecord, super::StoreError> {
        if row.first() != Some(&SERIAL_ROW_V2) {
            return super::decode("serial", row);
        }
        let bad = || super::StoreError::Corrupt("serial".into(), "bad row".into());
        if row.len() < 43 {
            return Err(bad());
        }
        let u = |at: usize| u64::from_be_bytes(row[at..at + 8].try_into().unwrap_or([0; 8]));
        let flags = row[17];
        let revocation = if flags & 2 != 0 {
            Some(Revocation {
                at: u(34) as i64,
                reason: RevocationReason::from_code(row[42]).ok_or_else(bad)?,
            })
        } else {
            None
        };
        Ok(SerialRecord {
            store_id: u(1),
            issuer_id: u(9),
            cert_id: (flags & 1 != 0).then(|| u(18)),
            not_after: u(26) as i64,
            revocation,
            serial: row[43..].to_vec(),
        })
    }
}

/// A stored template. Its spec's fields sit beside its own in the stored JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "TemplateRow")]
pub struct TemplateRecord {
    pub id: u64,
    pub appkey: String,
    pub store_id: u64,
    #[serde(flatten)]
    pub spec: TemplateSpec,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The stored JSON of a template, read in one pass: serde reads a `flatten`ed field through a
/// buffer of every value, which made decoding a template (read on every issuance) several
/// times dearer than decoding a certificate with its DER.
#[derive(Deserialize)]
struct TemplateRow {
    id: u64,
    appkey: String,
    store_id: u64,
    created_at: i64,
    updated_at: i64,
    name: String,
    description: Option<String>,
    parent_cert_id: u64,
    max_ttl: Option<u64>,
    max_specific_date: Option<i64>,
    back_date_validation: u64,
    allow_ip_sans: bool,
    url_sans_whitelist: Vec<String>,
    other_sans_whitelist: Vec<OidValue>,
    store_in_server: bool,
    basic_constraints_valid_for_non_ca: bool,
    use_csr_common_name: bool,
    use_csr_sans: bool,
    key_algorithm: KeyAlgorithm,
    key_algorithm_name: String,
    signature_bits: u32,
    key_usage: Vec<KeyUsage>,
    extended_key_usage: Vec<ExtendedKeyUsage>,
    extended_key_usage_oids: Vec<String>,
    policies: Vec<String>,
    subject_info: SubjectInfo,
    use_csr_other_fields: bool,
    other_fields: Vec<OidValue>,
}

impl From<TemplateRow> for TemplateRecord {
    fn from(r: TemplateRow) -> TemplateRecord {
        TemplateRecord {
            id: r.id,
            appkey: r.appkey,
            store_id: r.store_id,
            spec: TemplateSpec {
                name: r.name,
                description: r.description,
                parent_cert_id: r.parent_cert_id,
                max_ttl: r.max_ttl,
                max_specific_date: r.max_specific_date,
                back_date_validation: r.back_date_validation,
                allow_ip_sans: r.allow_ip_sans,
                url_sans_whitelist: r.url_sans_whitelist,
                other_sans_whitelist: r.other_sans_whitelist,
                store_in_server: r.store_in_server,
                basic_constraints_valid_for_non_ca: r.basic_constraints_valid_for_non_ca,
                use_csr_common_name: r.use_csr_common_name,
                use_csr_sans: r.use_csr_sans,
                key_algorithm: r.key_algorithm,
                key_algorithm_name: r.key_algorithm_name,
                signature_bits: r.signature_bits,
                key_usage: r.key_usage,
                extended_key_usage: r.extended_key_usage,
                extended_key_usage_oids: r.extended_key_usage_oids,
                policies: r.policies,
                subject_info: r.subject_info,
                use_csr_other_fields: r.use_csr_other_fields,
                other_fields: r.other_fields,
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The current CRL of an issuer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrlRecord {
    pub issuer_id: u64,
    pub number: u64,
    pub this_update: i64,
    pub next_update: i64,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

pub(super) fn two(a: u64, b: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}

#[cfg(test)]
impl CertRecord {
    /// A record for unit tests: certificate `id` of type `cert_type` in store `store_id` of the
    /// tenant "k", valid from 0 to 1, P-256, with no names, issuer or key of its own; a test sets
    /// what it looks at.
    pub(crate) fn sample(id: u64, store_id: u64, cert_type: CertType) -> CertRecord {
        CertRecord {
            id,
            appkey: "k".into(),
            store_id,
            name: String::new(),
            description: None,
            cert_type,
            parent_cert_id: None,
            template_id: None,
            serial: vec![],
            der: vec![0x30, 0x00],
            common_name: None,
            subject: String::new(),
            issuer: String::new(),
            not_before: 0,
            not_after: 1,
            key_algorithm: crate::pki::KeyAlgorithm::P256,
            signature_algorithm: crate::pki::SignatureAlgorithm::Sha256WithEcdsa,
            issuer_key: None,
            sans: Default::default(),
            crl_url: None,
            ocsp_url: None,
            revocation: None,
            created_at: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_rows_round_trip_and_schema_1_json_still_reads() {
        let mut s = SerialRecord {
            store_id: 7,
            issuer_id: 9,
            serial: vec![0x00, 0x8f, 1, 2, 3],
            cert_id: None,
            not_after: -5,
            revocation: None,
        };
        let back = SerialRecord::from_row(&s.to_row()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{s:?}"));
        s.cert_id = Some(u64::MAX);
        s.revocation = Some(Revocation {
            at: 1_700_000_000,
            reason: RevocationReason::PrivilegeWithdrawn,
        });
        let back = SerialRecord::from_row(&s.to_row()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{s:?}"));
        let json = serde_json::to_vec(&s).unwrap();
        let old = SerialRecord::from_row(&json).unwrap();
        assert_eq!(format!("{old:?}"), format!("{s:?}"));
        for cut in 0..43 {
            assert!(
                SerialRecord::from_row(&s.to_row()[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut bad_reason = s.to_row();
        bad_reason[42] = 7;
        assert!(SerialRecord::from_row(&bad_reason).is_err());
    }
}
