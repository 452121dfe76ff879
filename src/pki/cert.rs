//! Certificates: names, extensions, the issuer and leaf profiles, and reading a certificate back.
//! INTERFACE SKELETON — the pki helper replaces the bodies.

use std::net::IpAddr;

use const_oid::ObjectIdentifier;
use serde::{Deserialize, Serialize};

use super::{KeyAlgorithm, PkiError, Signer};

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
    #[serde(with = "oid_string")]
    pub oid: ObjectIdentifier,
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
    pub fn oid(self) -> ObjectIdentifier {
        todo!()
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

/// Everything that goes into one certificate; `issue` turns it into signed DER.
#[derive(Clone, Debug)]
pub struct CertParams {
    /// Positive big-endian serial, at most 20 octets.
    pub serial: Vec<u8>,
    pub subject: SubjectInfo,
    /// DER of the issuer's certificate; `None` for a self-signed certificate.
    pub issuer_cert: Option<Vec<u8>>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// DER SubjectPublicKeyInfo of the subject's key.
    pub spki_der: Vec<u8>,
    pub basic_constraints: BasicConstraints,
    pub key_usage: Vec<KeyUsage>,
    pub extended_key_usage: Vec<ObjectIdentifier>,
    pub policies: Vec<ObjectIdentifier>,
    pub sans: Sans,
    pub crl_url: Option<String>,
    pub ocsp_url: Option<String>,
}

/// Builds the TBSCertificate, has `signer` sign it, and returns the certificate DER.
pub fn issue(_params: &CertParams, _signer: &dyn Signer) -> Result<Vec<u8>, PkiError> {
    todo!()
}

/// What the API shows of a certificate.
#[derive(Clone, Debug)]
pub struct CertInfo {
    /// RFC 4514 string, e.g. `CN=Example Root CA,O=Example,C=KR`.
    pub subject: String,
    pub issuer: String,
    pub common_name: Option<String>,
    /// Lowercase hex without separators.
    pub serial_hex: String,
    pub not_before: i64,
    pub not_after: i64,
    pub spki_der: Vec<u8>,
    pub key_algorithm: Option<KeyAlgorithm>,
    pub subject_key_id: Option<Vec<u8>>,
    pub sans: Sans,
}

/// Reads back a certificate DER.
pub fn parse_info(_der: &[u8]) -> Result<CertInfo, PkiError> {
    todo!()
}

/// `-----BEGIN CERTIFICATE-----` PEM of a DER certificate.
pub fn to_pem(_der: &[u8]) -> String {
    todo!()
}

/// The key algorithm of a SubjectPublicKeyInfo, if it is one of the seed's table.
pub fn key_algorithm_of_spki(_spki_der: &[u8]) -> Result<KeyAlgorithm, PkiError> {
    todo!()
}

mod oid_string {
    use const_oid::ObjectIdentifier;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(oid: &ObjectIdentifier, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(oid)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectIdentifier, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
