//! What a template says: the profile a leaf is issued from. A domain value that the CA checks
//! and the store keeps, so it lives below both.

use serde::{Deserialize, Serialize};

use super::fields::{ExtendedKeyUsage, KeyUsage, OidValue, SubjectInfo};
use super::KeyAlgorithm;

/// What a template says: the seed's Create Template body, checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TemplateSpec {
    pub name: String,
    pub description: Option<String>,
    pub parent_cert_id: u64,
    pub max_ttl: Option<u64>,
    /// Unix seconds.
    pub max_specific_date: Option<i64>,
    pub back_date_validation: u64,
    pub allow_ip_sans: bool,
    pub url_sans_whitelist: Vec<String>,
    pub other_sans_whitelist: Vec<OidValue>,
    pub store_in_server: bool,
    pub basic_constraints_valid_for_non_ca: bool,
    pub use_csr_common_name: bool,
    pub use_csr_sans: bool,
    pub key_algorithm: KeyAlgorithm,
    /// The keyInfo as given (`EC` or `ECDSA`), echoed back.
    pub key_algorithm_name: String,
    pub signature_bits: u32,
    pub key_usage: Vec<KeyUsage>,
    pub extended_key_usage: Vec<ExtendedKeyUsage>,
    pub extended_key_usage_oids: Vec<String>,
    pub policies: Vec<String>,
    pub subject_info: SubjectInfo,
    pub use_csr_other_fields: bool,
    pub other_fields: Vec<OidValue>,
}
