//! X.509 v2 CRLs (RFC 5280 §5), signed through `Signer`.
//!
//! x509-cert has the CRL types but no builder, and one allocation per entry is too slow for a
//! million-entry list that is re-signed on every revoke call, so the TBSCertList is laid out by
//! hand: every length is computed first, then the bytes are written once into a buffer of exactly
//! the right size. The small DER writing helpers and the issuer-certificate reader here are shared
//! with `ocsp`.

use base64::Engine;
use der::Encode;
use serde::{Deserialize, Serialize};

use super::{HashAlg, PkiError, Signer};

/// RFC 5280 CRLReason values the API accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// Every reason the API accepts.
    pub const ALL: [RevocationReason; 8] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::CertificateHold,
        Self::PrivilegeWithdrawn,
    ];

    /// The CRLReason enumeration value.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::PrivilegeWithdrawn => 9,
        }
    }

    /// The reason of a CRLReason value; `None` for values the API does not use (7, 8, 10).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// One revoked certificate on a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Positive big-endian serial (leading zero octets are allowed and dropped).
    pub serial: Vec<u8>,
    /// Unix seconds.
    pub revoked_at: i64,
    pub reason: RevocationReason,
}

/// Everything one CRL says.
pub struct CrlParams<'a> {
    /// DER of the issuing CA's certificate (issuer name and AKI come from it).
    pub issuer_cert: &'a [u8],
    /// The cRLNumber; the caller persists it and makes it strictly increase.
    pub number: u64,
    /// Unix seconds.
    pub this_update: i64,
    /// Unix seconds; not before `this_update`.
    pub next_update: i64,
    /// Listed in this order; may be empty.
    pub entries: &'a [RevokedEntry],
}

/// What the status layer needs to know about a CRL it stored earlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrlInfo {
    /// The cRLNumber extension; `None` when absent.
    pub number: Option<u64>,
    /// Unix seconds.
    pub this_update: i64,
    /// Unix seconds; `None` when the CRL has no nextUpdate.
    pub next_update: Option<i64>,
}

/// Builds and signs a CRL with `signer` (the issuer's key); returns its DER.
pub fn build(params: &CrlParams<'_>, signer: &dyn Signer) -> Result<Vec<u8>, PkiError> {
    let mut b = CrlBuilder::new(params, signer, 0)?;
    for e in params.entries {
        b.push(&e.serial, e.revoked_at, e.reason)?;
    }
    b.sign(signer)
}

/// A CRL being built entry by entry, for lists too long to hold as `RevokedEntry` values: each
/// entry is DER-encoded into the final buffer as it arrives (no allocation per entry), and the
/// fields in front of the list are written into room reserved for them once the list's length
/// is known, so the CRL's bytes exist once, signed in place.
pub struct CrlBuilder {
    /// `reserve` octets of room, then the encoded entries.
    out: Vec<u8>,
    reserve: usize,
    /// version, signature, issuer, thisUpdate, nextUpdate: the TBS fields before the list.
    fields: Vec<u8>,
    /// crlExtensions, `[0]` included.
    extensions: Vec<u8>,
    /// The signature AlgorithmIdentifier.
    alg: Vec<u8>,
}

/// Room for the longest SEQUENCE header (tag, 0x84, four length octets).
const HEADER_MAX: usize = 6;

impl CrlBuilder {
    /// Starts a CRL with the header of `params` (its `entries` are not read) signed by
    /// `signer`'s algorithm; `capacity` is a guess of the encoded list's size (e.g. the
    /// previous CRL's), 0 if unknown.
    pub fn new(
        params: &CrlParams<'_>,
        signer: &dyn Signer,
        capacity: usize,
    ) -> Result<CrlBuilder, PkiError> {
        if params.next_update < params.this_update {
            return Err(PkiError::Invalid(
                "CRL nextUpdate is before thisUpdate".into(),
            ));
        }
        let issuer = IssuerParts::from_der(params.issuer_cert)?;
        let alg = signer.algorithm().algorithm_identifier().to_der()?;
        let mut fields = Vec::with_capacity(3 + alg.len() + issuer.subject.len() + 34);
        fields.extend_from_slice(VERSION_V2);
        fields.extend_from_slice(&alg);
        fields.extend_from_slice(&issuer.subject);
        push_time(&mut fields, params.this_update, true)?;
        push_time(&mut fields, params.next_update, true)?;
        // Outer, TBS and list headers go in front of the fields.
        let reserve = 3 * HEADER_MAX + fields.len();
        let mut out = Vec::with_capacity(reserve + capacity);
        out.resize(reserve, 0);
        Ok(CrlBuilder {
            out,
            reserve,
            fields,
            extensions: crl_extensions(&issuer.key_identifier(), params.number),
            alg,
        })
    }

    /// Appends one revokedCertificates entry; `serial` is a positive big-endian magnitude.
    pub fn push(
        &mut self,
        serial: &[u8],
        revoked_at: i64,
        reason: RevocationReason,
    ) -> Result<(), PkiError> {
        if serial_digits(serial).is_empty() {
            return Err(PkiError::Invalid("CRL entry serial is not positive".into()));
        }
        let has_reason = reason != RevocationReason::Unspecified;
        let content = tlv_len(positive_int_len(serial))
            + time_tlv_len(revoked_at, true)?
            + if has_reason {
                REASON_EXTENSIONS.len()
            } else {
                0
            };
        let out = &mut self.out;
        push_header(out, TAG_SEQUENCE, content);
        push_positive_int(out, serial);
        push_time(out, revoked_at, true)?;
        if has_reason {
            out.extend_from_slice(&REASON_EXTENSIONS[..REASON_EXTENSIONS.len() - 1]);
            out.push(reason.code());
        }
        Ok(())
    }

    /// Signs with `signer` (the issuer's key, of the algorithm given to `new`); returns the DER.
    pub fn sign(self, signer: &dyn Signer) -> Result<Vec<u8>, PkiError> {
        let CrlBuilder {
            mut out,
            reserve,
            fields,
            extensions,
            alg,
        } = self;
        let list_len = out.len() - reserve;
        // An empty revokedCertificates is left out, not encoded empty (RFC 5280 §5.1.2.6).
        let list = if list_len == 0 { 0 } else { tlv_len(list_len) };
        let tbs_content = fields.len() + list + extensions.len();
        let mut front = Vec::with_capacity(reserve);
        push_header(&mut front, TAG_SEQUENCE, tbs_content);
        front.extend_from_slice(&fields);
        if list_len > 0 {
            push_header(&mut front, TAG_SEQUENCE, list_len);
        }
        let tbs_start = reserve - front.len();
        out[tbs_start..reserve].copy_from_slice(&front);
        out.extend_from_slice(&extensions);
        let tbs_len = out.len() - tbs_start;

        let signature = signer.sign(&out[tbs_start..])?;
        let content = tbs_len + alg.len() + tlv_len(signature.len() + 1);
        out.reserve_exact(alg.len() + HEADER_MAX + 1 + signature.len());
        out.extend_from_slice(&alg);
        push_header(&mut out, TAG_BIT_STRING, signature.len() + 1);
        out.push(0);
        out.extend_from_slice(&signature);
        let mut header = Vec::with_capacity(HEADER_MAX);
        push_header(&mut header, TAG_SEQUENCE, content);
        let start = tbs_start - header.len();
        out[start..tbs_start].copy_from_slice(&header);
        out.drain(..start);
        Ok(out)
    }
}

/// The PEM (`X509 CRL`) of a CRL's DER.
pub fn to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN X509 CRL-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END X509 CRL-----\n");
    pem
}

/// Reads the number and update times of a CRL without decoding its entries (fast at any size).
pub fn parse_info(der: &[u8]) -> Result<CrlInfo, PkiError> {
    let bad = |what: &str| PkiError::Invalid(format!("CRL: {what}"));
    let (tag, list, rest) = read_tlv(der)?;
    if tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err(bad("not a CertificateList"));
    }
    let (tag, mut tbs, _) = read_tlv(list)?;
    if tag != TAG_SEQUENCE {
        return Err(bad("not a TBSCertList"));
    }
    if next_tlv(&mut tbs)?.0 == TAG_INTEGER {
        next_tlv(&mut tbs)?; // the version came first; this is the signature algorithm
    }
    next_tlv(&mut tbs)?; // issuer
    let this_update = parse_time(next_tlv(&mut tbs)?)?;
    let mut info = CrlInfo {
        number: None,
        this_update,
        next_update: None,
    };
    while !tbs.is_empty() {
        let (tag, value) = next_tlv(&mut tbs)?;
        match tag {
            TAG_UTC_TIME | TAG_GENERALIZED_TIME => {
                info.next_update = Some(parse_time((tag, value))?)
            }
            TAG_CONTEXT_0 => info.number = crl_number(value)?,
            _ => {} // revokedCertificates
        }
    }
    Ok(info)
}

/// Takes the next TLV off `input`: (tag, value).
fn next_tlv<'a>(input: &mut &'a [u8]) -> Result<(u8, &'a [u8]), PkiError> {
    let (tag, value, rest) = read_tlv(input)?;
    *input = rest;
    Ok((tag, value))
}

/// What CRLs and OCSP need from the issuer's certificate.
pub(super) struct IssuerParts {
    /// DER of the subject Name, as encoded in the certificate.
    pub subject: Vec<u8>,
    /// The subjectPublicKey BIT STRING value (without its unused-bits octet).
    pub public_key: Vec<u8>,
    /// The subjectKeyIdentifier extension's value, when present.
    pub ski: Option<Vec<u8>>,
}

impl IssuerParts {
    /// Reads the parts from the certificate's DER with a plain TLV walk: x509-cert (der 0.8)
    /// cannot decode a Name holding a UniversalString, which the seed allows in subjects.
    pub fn from_der(cert_der: &[u8]) -> Result<Self, PkiError> {
        let bad = |what: &str| PkiError::Invalid(format!("issuer certificate: bad {what}"));
        let (tag, cert, rest) = read_tlv(cert_der)?;
        let (tbs_tag, mut tbs, _) = read_tlv(cert)?;
        if tag != TAG_SEQUENCE || tbs_tag != TAG_SEQUENCE || !rest.is_empty() {
            return Err(bad("Certificate"));
        }
        if tbs.first() == Some(&TAG_CONTEXT_0) {
            next_tlv(&mut tbs)?; // version
        }
        for _ in 0..4 {
            next_tlv(&mut tbs)?; // serialNumber, signature, issuer, validity
        }
        let at_subject = tbs;
        if next_tlv(&mut tbs)?.0 != TAG_SEQUENCE {
            return Err(bad("subject"));
        }
        let subject = at_subject[..at_subject.len() - tbs.len()].to_vec();
        let (_, spki) = next_tlv(&mut tbs)?;
        let (_, _, key) = read_tlv(spki)?; // skips the algorithm
        let public_key = match read_tlv(key)? {
            (TAG_BIT_STRING, [0, bits @ ..], _) => bits.to_vec(),
            _ => return Err(bad("subjectPublicKey")),
        };
        let mut ski = None;
        while !tbs.is_empty() {
            let (tag, value) = next_tlv(&mut tbs)?;
            if tag == TAG_CONTEXT_3 {
                let (_, mut exts, _) = read_tlv(value)?;
                while !exts.is_empty() {
                    let (_, mut ext) = next_tlv(&mut exts)?;
                    if next_tlv(&mut ext)?.1 != &OID_SKI[2..] {
                        continue;
                    }
                    let (mut tag, mut value) = next_tlv(&mut ext)?;
                    if tag == TAG_BOOLEAN {
                        (tag, value) = next_tlv(&mut ext)?;
                    }
                    match (tag, read_tlv(value)?) {
                        (TAG_OCTET_STRING, (TAG_OCTET_STRING, key_id, [])) => {
                            ski = Some(key_id.to_vec())
                        }
                        _ => return Err(bad("subjectKeyIdentifier")),
                    }
                }
            }
        }
        Ok(Self {
            subject,
            public_key,
            ski,
        })
    }

    /// The AKI keyIdentifier of what this issuer signs: its SKI, else the SHA-1 of its key
    /// (RFC 5280 §4.2.1.2 method 1, what the SKI would have been).
    pub fn key_identifier(&self) -> Vec<u8> {
        self.ski
            .clone()
            .unwrap_or_else(|| HashAlg::Sha1.digest(&self.public_key))
    }
}

pub(super) const TAG_BOOLEAN: u8 = 0x01;
pub(super) const TAG_INTEGER: u8 = 0x02;
pub(super) const TAG_BIT_STRING: u8 = 0x03;
pub(super) const TAG_OCTET_STRING: u8 = 0x04;
pub(super) const TAG_UTC_TIME: u8 = 0x17;
pub(super) const TAG_GENERALIZED_TIME: u8 = 0x18;
pub(super) const TAG_SEQUENCE: u8 = 0x30;
pub(super) const TAG_CONTEXT_0: u8 = 0xa0;
pub(super) const TAG_CONTEXT_3: u8 = 0xa3;
pub(super) const TAG_CONTEXT_PRIM_0: u8 = 0x80;

/// `INTEGER 1` (v2).
const VERSION_V2: &[u8] = &[0x02, 0x01, 0x01];
/// `id-ce-authorityKeyIdentifier` as a full TLV.
const OID_AKI: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x23];
/// `id-ce-subjectKeyIdentifier` as a full TLV.
const OID_SKI: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x0e];
/// `id-ce-cRLNumber` as a full TLV.
const OID_CRL_NUMBER: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x14];
/// crlEntryExtensions holding one non-critical reasonCode; the last octet is the code.
const REASON_EXTENSIONS: [u8; 14] = [
    0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, 0x00,
];
/// crlExtensions (`[0]` included): authorityKeyIdentifier and cRLNumber, both non-critical.
fn crl_extensions(key_id: &[u8], number: u64) -> Vec<u8> {
    let aki = tlv(TAG_SEQUENCE, &tlv(TAG_CONTEXT_PRIM_0, key_id));
    let mut number_int = Vec::with_capacity(11);
    push_positive_int(&mut number_int, &number.to_be_bytes());
    let list = [
        extension(OID_AKI, &aki),
        extension(OID_CRL_NUMBER, &number_int),
    ]
    .concat();
    tlv(TAG_CONTEXT_0, &tlv(TAG_SEQUENCE, &list))
}

/// A non-critical Extension.
fn extension(oid_tlv: &[u8], value: &[u8]) -> Vec<u8> {
    tlv(
        TAG_SEQUENCE,
        &[oid_tlv, &tlv(TAG_OCTET_STRING, value)].concat(),
    )
}

/// The cRLNumber in a crlExtensions `[0]` value, if present.
fn crl_number(exts: &[u8]) -> Result<Option<u64>, PkiError> {
    let bad = || PkiError::Invalid("CRL: cRLNumber is not a u64".into());
    let (_, mut list, _) = read_tlv(exts)?;
    while !list.is_empty() {
        let (_, ext, rest) = read_tlv(list)?;
        list = rest;
        let (_, oid, fields) = read_tlv(ext)?;
        if oid != &OID_CRL_NUMBER[2..] {
            continue;
        }
        let (mut tag, mut value, rest) = read_tlv(fields)?;
        if tag == TAG_BOOLEAN {
            (tag, value, _) = read_tlv(rest)?;
        }
        if tag != TAG_OCTET_STRING {
            return Err(bad());
        }
        let (tag, int, _) = read_tlv(value)?;
        let digits = serial_digits(int);
        if tag != TAG_INTEGER || int.first().is_none_or(|b| b & 0x80 != 0) || digits.len() > 8 {
            return Err(bad());
        }
        return Ok(Some(
            digits.iter().fold(0u64, |n, b| n << 8 | u64::from(*b)),
        ));
    }
    Ok(None)
}

// ---- DER writing and reading helpers (shared with `ocsp`) ----

/// The length of a TLV whose value is `len` octets long.
pub(super) fn tlv_len(len: usize) -> usize {
    header_len(len) + len
}

/// The length of the tag and length octets for a value of `len` octets.
pub(super) fn header_len(len: usize) -> usize {
    if len < 0x80 {
        2
    } else {
        2 + (usize::BITS - len.leading_zeros()).div_ceil(8) as usize
    }
}

/// Writes a tag (one octet: every tag used here is low-numbered) and a DER length.
pub(super) fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = (len.leading_zeros() / 8) as usize;
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A whole TLV.
pub(super) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tlv_len(value.len()));
    push_header(&mut out, tag, value.len());
    out.extend_from_slice(value);
    out
}

/// A big-endian magnitude without its leading zero octets (empty for zero).
pub(super) fn serial_digits(magnitude: &[u8]) -> &[u8] {
    let start = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len());
    &magnitude[start..]
}

/// The value length of a non-negative INTEGER of this big-endian magnitude.
pub(super) fn positive_int_len(magnitude: &[u8]) -> usize {
    let digits = serial_digits(magnitude);
    match digits.first() {
        None => 1,
        Some(b) => digits.len() + usize::from(*b >= 0x80),
    }
}

/// Writes a non-negative INTEGER of this big-endian magnitude.
pub(super) fn push_positive_int(out: &mut Vec<u8>, magnitude: &[u8]) {
    let digits = serial_digits(magnitude);
    push_header(out, TAG_INTEGER, positive_int_len(magnitude));
    if digits.first().is_none_or(|b| *b >= 0x80) {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

/// The TLV length of a time: UTCTime (13 octets) for 1950..=2049 when `rfc5280`, else
/// GeneralizedTime (15 octets); errors outside years 0..=9999.
pub(super) fn time_tlv_len(secs: i64, rfc5280: bool) -> Result<usize, PkiError> {
    let year = civil(secs).0;
    if !(0..=9999).contains(&year) {
        return Err(PkiError::Invalid(format!(
            "time {secs} is outside years 0..9999"
        )));
    }
    Ok(if rfc5280 && (1950..2050).contains(&year) {
        15
    } else {
        17
    })
}

/// Writes a time as `time_tlv_len` describes it, always in UTC (`Z`), without fractions.
pub(super) fn push_time(out: &mut Vec<u8>, secs: i64, rfc5280: bool) -> Result<(), PkiError> {
    let len = time_tlv_len(secs, rfc5280)?;
    let (year, month, day, hms) = civil(secs);
    let digits2 = |out: &mut Vec<u8>, v: u32| {
        out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8])
    };
    if len == 15 {
        out.extend_from_slice(&[TAG_UTC_TIME, 13]);
    } else {
        out.extend_from_slice(&[TAG_GENERALIZED_TIME, 15]);
        digits2(out, (year / 100) as u32);
    }
    digits2(out, (year % 100) as u32);
    for v in [month, day, hms / 3600, hms / 60 % 60, hms % 60] {
        digits2(out, v);
    }
    out.push(b'Z');
    Ok(())
}

/// Splits one TLV off the front of `input`: (tag, value, rest). Definite DER lengths only.
pub(super) fn read_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), PkiError> {
    let truncated = || PkiError::Invalid("DER: truncated or malformed TLV".into());
    let (&tag, rest) = input.split_first().ok_or_else(truncated)?;
    let (&first, mut rest) = rest.split_first().ok_or_else(truncated)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(truncated());
        }
        let (octets, tail) = rest.split_at(n);
        rest = tail;
        octets.iter().fold(0usize, |l, b| l << 8 | usize::from(*b))
    };
    if tag & 0x1f == 0x1f || rest.len() < len {
        return Err(truncated());
    }
    let (value, rest) = rest.split_at(len);
    Ok((tag, value, rest))
}

/// (year, month, day, seconds of the day) of Unix seconds (proleptic Gregorian, UTC).
fn civil(secs: i64) -> (i64, u32, u32, u32) {
    // Howard Hinnant's civil_from_days.
    let days = secs.div_euclid(86_400);
    let hms = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day, hms)
}

/// Unix seconds of a UTCTime or GeneralizedTime TLV in the `YY[YY]MMDDHHMMSSZ` form.
fn parse_time((tag, value): (u8, &[u8])) -> Result<i64, PkiError> {
    let bad = || PkiError::Invalid("DER: time is not YYMMDDHHMMSSZ".into());
    let (year_digits, rest) = match (tag, value.len()) {
        (TAG_UTC_TIME, 13) => value.split_at(2),
        (TAG_GENERALIZED_TIME, 15) => value.split_at(4),
        _ => return Err(bad()),
    };
    if rest.last() != Some(&b'Z') || !value[..value.len() - 1].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let num = |d: &[u8]| d.iter().fold(0i64, |n, b| n * 10 + i64::from(b - b'0'));
    let mut year = num(year_digits);
    if tag == TAG_UTC_TIME {
        year += if year < 50 { 2000 } else { 1900 };
    }
    let (m, d) = (num(&rest[0..2]), num(&rest[2..4]));
    let (h, mi, s) = (num(&rest[4..6]), num(&rest[6..8]), num(&rest[8..10]));
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return Err(bad());
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Ok(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// Test CAs made with the openssl crate, a software `Signer`, and a runner for the openssl CLI;
/// shared with `ocsp`'s tests.
#[cfg(test)]
pub(super) mod test_support;

#[cfg(test)]
mod tests;
