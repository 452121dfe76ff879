//! The values that fill a certificate's fields (subject, alternative names, key usages, basic
//! constraints): shared by `cert`, `name`, `ext` and `csr`, which lay them out in DER.

use std::net::IpAddr;

use const_oid::ObjectIdentifier;
use serde::{Deserialize, Serialize};

/// The ASN.1 string type of an `OidInfo` value (seed: UTF8String, IA5String, PrintableString,
/// BMPString, UniversalString).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StringKind {
    #[serde(rename = "UTF8String")]
    Utf8,
    #[serde(rename = "IA5String")]
    Ia5,
    #[serde(rename = "PrintableString")]
    Printable,
    #[serde(rename = "BMPString")]
    Bmp,
    #[serde(rename = "UniversalString")]
    Universal,
}

/// An OID with a typed string value: an otherName SAN, or an extra subject attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidValue {
    pub oid: super::oid::Oid,
    pub kind: StringKind,
    pub value: String,
}

/// The seed's SubjectInfo, plus extra attributes (a template's `otherFields`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectInfo {
    pub common_name: Option<String>,
    pub serial_number: Option<String>,
    pub country: Option<String>,
    pub state_or_province: Option<String>,
    pub locality: Option<String>,
    pub street_address: Option<String>,
    pub postal_code: Option<String>,
    pub organization: Option<String>,
    pub organizational_unit: Option<String>,
    #[serde(default)]
    pub other: Vec<OidValue>,
}

/// Subject alternative names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sans {
    pub dns: Vec<String>,
    pub ip: Vec<IpAddr>,
    pub uri: Vec<String>,
    pub email: Vec<String>,
    pub other: Vec<OidValue>,
}

impl Sans {
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty()
            && self.ip.is_empty()
            && self.uri.is_empty()
            && self.email.is_empty()
            && self.other.is_empty()
    }
}

/// The seed's key usage values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyUsage {
    DigitalSignature,
    NonRepudiation,
    KeyEncipherment,
    DataEncipherment,
    KeyAgreement,
    KeyCertSign,
    CrlSign,
    EncipherOnly,
    DecipherOnly,
}

/// The seed's extended key usage values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExtendedKeyUsage {
    #[serde(rename = "SERVER_AUTHENTICATION")]
    ServerAuth,
    #[serde(rename = "CLIENT_AUTHENTICATION")]
    ClientAuth,
    #[serde(rename = "CODE_SIGNING")]
    CodeSigning,
    #[serde(rename = "EMAIL_PROTECTION")]
    EmailProtection,
    #[serde(rename = "TIME_STAMPING")]
    TimeStamping,
    #[serde(rename = "OCSP_SIGNING")]
    OcspSigning,
    #[serde(rename = "ANY_EXTENDED_KEY_USAGE")]
    Any,
}

impl ExtendedKeyUsage {
    /// The KeyPurposeId (RFC 5280 section 4.2.1.12).
    pub fn oid(self) -> ObjectIdentifier {
        // Inline consts: every OID is checked at compile time.
        match self {
            Self::ServerAuth => const { ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1") },
            Self::ClientAuth => const { ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2") },
            Self::CodeSigning => const { ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3") },
            Self::EmailProtection => const { ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4") },
            Self::TimeStamping => const { ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8") },
            Self::OcspSigning => const { ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9") },
            Self::Any => const { ObjectIdentifier::new_unwrap("2.5.29.37.0") },
        }
    }
}

/// The basicConstraints extension to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BasicConstraints {
    /// critical CA:TRUE, with a pathLenConstraint when `path_len` is set.
    Ca { path_len: Option<u8> },
    /// CA:FALSE, written (critical) for leaves whose template asks for it.
    NotCa,
    /// No basicConstraints extension.
    Absent,
}
