//! OCSP (RFC 6960, RFC 5019 profile): reading requests, laying out and signing responses, and
//! decoding the GET form of a request.
//!
//! Built for a pre-signing engine: `response_data_der` lays out the ResponseData off the HSM's
//! critical path, the HSM only signs those bytes, and `assemble` wraps the signature. Requests
//! are decoded with rasn-ocsp; responses are laid out by hand so that each SingleResponse echoes
//! the requested CertID byte for byte.

use base64::Engine;
use der::Encode;
use rasn_ocsp::OcspRequest;

use super::crl::RevocationReason;
use super::crl::{
    push_header, push_positive_int, push_time, read_tlv, serial_digits, time_tlv_len, tlv, tlv_len,
    IssuerParts, TAG_OCTET_STRING, TAG_SEQUENCE,
};
use super::{HashAlg, PkiError, SignatureAlgorithm, Signer};

/// What the response cache is keyed by: one certificate as one request names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertIdKey {
    pub hash: HashAlg,
    pub issuer_name_hash: Vec<u8>,
    pub issuer_key_hash: Vec<u8>,
    /// Minimal positive big-endian serial: no leading zero octets.
    pub serial: Vec<u8>,
}

impl CertIdKey {
    /// The canonical CertID DER of this key (see `cert_id_der`).
    pub fn to_der(&self) -> Vec<u8> {
        cert_id_der(
            self.hash,
            &self.issuer_name_hash,
            &self.issuer_key_hash,
            &self.serial,
        )
    }
}

/// One CertID of a request: its key, and its DER as sent, which the response must echo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedCertId {
    pub key: CertIdKey,
    /// The CertID re-encoded as DER, hashAlgorithm parameters (NULL or absent) kept as sent.
    pub der: Vec<u8>,
}

/// Why a request (or its GET path) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OcspRequestError {
    /// Not a DER OCSPRequest, or bytes after it.
    #[error("not an OCSP request: {0}")]
    Malformed(String),
    /// The requestList holds no CertID.
    #[error("OCSP request names no certificate")]
    Empty,
    /// A CertID hash algorithm other than SHA-1/256/384/512.
    #[error("unsupported CertID hash algorithm {0}")]
    UnknownHash(String),
    /// A zero or negative serial, which no certificate of ours carries.
    #[error("CertID serial is not positive")]
    NonPositiveSerial,
    /// The GET path is not base64 of anything.
    #[error("OCSP GET path is not base64: {0}")]
    BadPath(&'static str),
    /// The GET path is longer than any single request needs.
    #[error("OCSP GET path is longer than {MAX_GET_PATH} characters")]
    PathTooLong,
}

impl OcspRequestError {
    /// The unsigned status to answer with.
    pub fn status(&self) -> OcspErrorStatus {
        match self {
            Self::NonPositiveSerial => OcspErrorStatus::Unauthorized,
            _ => OcspErrorStatus::MalformedRequest,
        }
    }
}

/// The unsigned OCSPResponseStatus values pcad answers with (RFC 6960 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OcspErrorStatus {
    MalformedRequest,
    InternalError,
    TryLater,
    Unauthorized,
}

/// The status of one certificate in a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertStatus {
    Good,
    /// `at` in Unix seconds; revocationReason is omitted for `Unspecified`, as on the CRL.
    Revoked {
        at: i64,
        reason: RevocationReason,
    },
    Unknown,
}

/// One SingleResponse to lay out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SingleStatus {
    /// The CertID DER to echo: `RequestedCertId::der`, or `cert_id_der` when pre-signing.
    pub cert_id_der: Vec<u8>,
    pub status: CertStatus,
    /// Unix seconds.
    pub this_update: i64,
    /// Unix seconds; always written.
    pub next_update: i64,
}

/// Longest GET path tail accepted: a single-CertID request is under 300 characters even with a
/// SHA-512 CertID, a nonce and every character percent-encoded.
pub const MAX_GET_PATH: usize = 2048;

/// Longest request a GET path of `MAX_GET_PATH` characters can carry.
pub const MAX_GET_REQUEST: usize = MAX_GET_PATH / 4 * 3;

/// Reads an OCSPRequest: one `RequestedCertId` per CertID, in order. Nonces and other
/// extensions are ignored; a signature, if any, is not checked.
pub fn parse_request(der: &[u8]) -> Result<Vec<RequestedCertId>, OcspRequestError> {
    let request: OcspRequest = rasn::der::decode(der)
        .or_else(|_| match rasn::ber::decode_with_remainder(der) {
            Ok((request, [])) => Ok(request),
            Ok(_) => Err("bytes after the request".to_string()),
            Err(e) => Err(e.to_string()),
        })
        .map_err(OcspRequestError::Malformed)?;
    let list = request.tbs_request.request_list;
    if list.is_empty() {
        return Err(OcspRequestError::Empty);
    }
    list.into_iter()
        .map(|r| requested_cert_id(r.req_cert))
        .collect()
}

/// The CertID of a plain single-certificate request, sliced out of the request as sent: the
/// serving fast path's cache key, with no decoding or re-encoding.
///
/// `Some` only for the common shape, in strict DER: one Request, no version, requestorName or
/// signature, and request/single extensions (a nonce) that are well-formed. Anything else is
/// `None`, and the caller falls back to `parse_request`. Whenever this returns `Some(id)` and `id`
/// is a DER CertID, `parse_request` accepts the request and names exactly that one CertID (the
/// tests check it), so a cache hit on `id` answers what the full parse would have answered.
pub fn single_cert_id(request: &[u8]) -> Option<&[u8]> {
    // OCSPRequest ::= SEQUENCE { tbsRequest, optionalSignature [0] EXPLICIT OPTIONAL }
    let (TAG_SEQUENCE, ocsp_request, []) = strict_tlv(request)? else {
        return None;
    };
    let (TAG_SEQUENCE, tbs, []) = strict_tlv(ocsp_request)? else {
        return None;
    };
    // TBSRequest ::= SEQUENCE { version [0], requestorName [1], requestList, requestExtensions [2] }
    let (TAG_SEQUENCE, list, rest) = strict_tlv(tbs)? else {
        return None;
    };
    if !rest.is_empty() {
        let (0xa2, exts, []) = strict_tlv(rest)? else {
            return None;
        };
        valid_extensions(exts)?;
    }
    // requestList ::= SEQUENCE OF Request, here exactly one.
    let (TAG_SEQUENCE, request, []) = strict_tlv(list)? else {
        return None;
    };
    // Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT OPTIONAL }
    let (TAG_SEQUENCE, _, single_exts) = strict_tlv(request)? else {
        return None;
    };
    if !single_exts.is_empty() {
        let (0xa0, exts, []) = strict_tlv(single_exts)? else {
            return None;
        };
        valid_extensions(exts)?;
    }
    Some(&request[..request.len() - single_exts.len()])
}

/// Whether a CertID is in the form the pre-signer signs (`cert_id_der` with SHA-1): the one
/// cached form that can be rebuilt from (issuer, serial) alone.
pub fn is_presigned_form(cert_id_der: &[u8]) -> bool {
    const SHA1_NULL: &[u8] = &[
        0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00,
    ];
    matches!(strict_tlv(cert_id_der), Some((TAG_SEQUENCE, id, [])) if id.starts_with(SHA1_NULL))
}

/// The serial digits (no leading zero octets) of each CertID in a concatenation of CertID DERs
/// (a cache key); stops at the first thing that is not a CertID.
pub fn cert_id_serials(mut cert_ids: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (TAG_SEQUENCE, id, rest) = strict_tlv(cert_ids)? else {
            return None;
        };
        cert_ids = rest;
        let mut fields = id;
        for _ in 0..3 {
            fields = strict_tlv(fields)?.2;
        }
        match strict_tlv(fields)? {
            (0x02, serial, []) => Some(serial_digits(serial)),
            _ => None,
        }
    })
}

/// One TLV in strict DER (minimal definite length, low tag number): (tag, value, rest).
fn strict_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => match rest.split_first()? {
            (&l, rest) if l >= 0x80 => (usize::from(l), rest),
            _ => return None,
        },
        0x82 => match rest {
            [hi, lo, rest @ ..] if *hi != 0 => (usize::from(*hi) << 8 | usize::from(*lo), rest),
            _ => return None,
        },
        _ => return None,
    };
    if tag & 0x1f == 0x1f || rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

/// Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension, each
/// `SEQUENCE { extnID OBJECT IDENTIFIER, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }`
/// in DER (critical present only when TRUE).
fn valid_extensions(explicit: &[u8]) -> Option<()> {
    let (TAG_SEQUENCE, mut list, []) = strict_tlv(explicit)? else {
        return None;
    };
    if list.is_empty() {
        return None;
    }
    while !list.is_empty() {
        let (TAG_SEQUENCE, ext, rest) = strict_tlv(list)? else {
            return None;
        };
        list = rest;
        let (0x06, oid, mut ext) = strict_tlv(ext)? else {
            return None;
        };
        if !valid_oid(oid) {
            return None;
        }
        if let Some((0x01, critical, rest)) = strict_tlv(ext) {
            if critical != [0xff] {
                return None;
            }
            ext = rest;
        }
        let (TAG_OCTET_STRING, _, []) = strict_tlv(ext)? else {
            return None;
        };
    }
    Some(())
}

/// An OBJECT IDENTIFIER value in DER whose arcs each fit in 28 bits.
fn valid_oid(oid: &[u8]) -> bool {
    let mut arc_len = 0;
    for (i, b) in oid.iter().enumerate() {
        if arc_len == 0 && *b == 0x80 {
            return false;
        }
        arc_len += 1;
        if arc_len > 4 {
            return false;
        }
        if b & 0x80 == 0 {
            arc_len = 0;
        } else if i + 1 == oid.len() {
            return false;
        }
    }
    !oid.is_empty()
}

/// Decodes the GET form of a request from the raw (still percent-encoded) path after `/ocsp/`.
///
/// Accepts base64url and standard base64, padded or not, URL-encoded or not (`%2B`, `%2F`,
/// `%3D` in any case), a `+` turned into a space (literal or `%20`), and `/` inside the request.
pub fn decode_get_path(tail: &str) -> Result<Vec<u8>, OcspRequestError> {
    let mut out = [0; MAX_GET_REQUEST];
    decode_get_path_into(tail, &mut out).map(<[u8]>::to_vec)
}

/// `decode_get_path` into a caller's buffer, without allocating (the serving hot path).
pub fn decode_get_path_into<'a>(
    tail: &str,
    out: &'a mut [u8; MAX_GET_REQUEST],
) -> Result<&'a [u8], OcspRequestError> {
    if tail.len() > MAX_GET_PATH {
        return Err(OcspRequestError::PathTooLong);
    }
    // What clients send nearly always: one alphabet, nothing escaped. Whatever either
    // alphabet decodes as it stands, the general route decodes the same (no escape, space or
    // leading slash there to treat); anything else fails here and takes the general route.
    let unpadded = tail.trim_end_matches('=').as_bytes();
    if unpadded.first().is_some_and(|c| *c != b'/' && *c != b'_') {
        for engine in [&BASE64URL_LENIENT, &BASE64_LENIENT] {
            if let Ok(n) = engine.decode_slice(unpadded, &mut out[..]) {
                return Ok(&out[..n]);
            }
        }
    }
    decode_escaped(tail, out)
}

/// `decode_get_path_into` for a path with escapes, spaces or mixed alphabets.
fn decode_escaped<'a>(
    tail: &str,
    out: &'a mut [u8; MAX_GET_REQUEST],
) -> Result<&'a [u8], OcspRequestError> {
    let mut b64 = [0; MAX_GET_PATH];
    let mut len = 0;
    let mut bytes = tail.bytes();
    while let Some(b) = bytes.next() {
        let c = if b == b'%' {
            let hex = |c: Option<u8>| c.and_then(|c| char::from(c).to_digit(16));
            match (hex(bytes.next()), hex(bytes.next())) {
                (Some(hi), Some(lo)) => (hi * 16 + lo) as u8,
                _ => return Err(OcspRequestError::BadPath("bad percent-encoding")),
            }
        } else {
            b
        };
        // Never more characters out than in: `len` stays below `tail.len()`.
        b64[len] = match c {
            b' ' => b'+',
            b'-' => b'+',
            b'_' => b'/',
            c => c,
        };
        len += 1;
    }
    let b64 = &b64[..len];
    // A DER request starts with 0x30, base64 'M': leading slashes come from a base URL that
    // already ended in '/', never from the request.
    let start = b64.iter().position(|c| *c != b'/').unwrap_or(b64.len());
    let end = b64.iter().rposition(|c| *c != b'=').map_or(0, |i| i + 1);
    if start >= end {
        return Err(OcspRequestError::BadPath("empty"));
    }
    let n = BASE64_LENIENT
        .decode_slice(&b64[start..end], &mut out[..])
        .map_err(|_| OcspRequestError::BadPath("invalid base64"))?;
    Ok(&out[..n])
}

/// (issuerNameHash, issuerKeyHash) of an issuer: the hashes of its DER subject Name and of its
/// subjectPublicKey BIT STRING value (not its SKI).
pub fn issuer_hashes(
    issuer_cert_der: &[u8],
    hash: HashAlg,
) -> Result<(Vec<u8>, Vec<u8>), PkiError> {
    let issuer = IssuerParts::from_der(issuer_cert_der)?;
    Ok((
        hash.digest(&issuer.subject),
        hash.digest(&issuer.public_key),
    ))
}

/// The ResponderID byKey of an issuer that signs its own responses: SHA-1 of its key bits.
pub fn responder_key_hash(issuer_cert_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    Ok(issuer_hashes(issuer_cert_der, HashAlg::Sha1)?.1)
}

/// The canonical CertID, as openssl sends it: hashAlgorithm with NULL parameters.
pub fn cert_id_der(hash: HashAlg, name_hash: &[u8], key_hash: &[u8], serial: &[u8]) -> Vec<u8> {
    let oid = hash.oid();
    let alg = tlv(
        TAG_SEQUENCE,
        &[&tlv(0x06, oid.as_bytes())[..], &[0x05, 0x00]].concat(),
    );
    let mut content = alg;
    content.extend_from_slice(&tlv(TAG_OCTET_STRING, name_hash));
    content.extend_from_slice(&tlv(TAG_OCTET_STRING, key_hash));
    push_positive_int(&mut content, serial);
    tlv(TAG_SEQUENCE, &content)
}

/// Lays out the ResponseData to sign: version v1 (default, omitted), ResponderID byKey,
/// producedAt, one SingleResponse per status, no nonce, no responseExtensions. GeneralizedTime
/// throughout, without fractions.
pub fn response_data_der(
    responder_key_hash: &[u8],
    produced_at: i64,
    singles: &[SingleStatus],
) -> Result<Vec<u8>, PkiError> {
    if responder_key_hash.len() != 20 {
        return Err(PkiError::Invalid(
            "OCSP responder key hash is not a SHA-1 hash".into(),
        ));
    }
    if singles.is_empty() {
        return Err(PkiError::Invalid(
            "OCSP response needs at least one status".into(),
        ));
    }
    let mut responses = Vec::with_capacity(singles.len() * 128);
    for single in singles {
        push_single(&mut responses, single)?;
    }
    let mut content = tlv(0xa2, &tlv(TAG_OCTET_STRING, responder_key_hash));
    push_time(&mut content, produced_at, false)?;
    push_header(&mut content, TAG_SEQUENCE, responses.len());
    content.extend_from_slice(&responses);
    Ok(tlv(TAG_SEQUENCE, &content))
}

/// Wraps a signed ResponseData into a successful OCSPResponse (id-pkix-ocsp-basic) whose
/// BasicOCSPResponse carries no certificates: the issuer signs its own responses.
pub fn assemble(
    response_data_der: &[u8],
    alg: SignatureAlgorithm,
    signature: &[u8],
) -> Result<Vec<u8>, PkiError> {
    let mut basic = response_data_der.to_vec();
    basic.extend_from_slice(&alg.algorithm_identifier().to_der()?);
    push_header(&mut basic, 0x03, signature.len() + 1);
    basic.push(0);
    basic.extend_from_slice(signature);
    let basic = tlv(TAG_SEQUENCE, &basic);
    let response_bytes = tlv(
        TAG_SEQUENCE,
        &[ID_PKIX_OCSP_BASIC, &tlv(TAG_OCTET_STRING, &basic)].concat(),
    );
    let content = [&[0x0a, 0x01, 0x00][..], &tlv(0xa0, &response_bytes)].concat();
    Ok(tlv(TAG_SEQUENCE, &content))
}

/// `response_data_der`, signed by `signer` (the issuer's key), then `assemble`d.
pub fn sign_response(
    responder_key_hash: &[u8],
    produced_at: i64,
    singles: &[SingleStatus],
    signer: &dyn Signer,
) -> Result<Vec<u8>, PkiError> {
    let data = response_data_der(responder_key_hash, produced_at, singles)?;
    let signature = signer.sign(&data)?;
    assemble(&data, signer.algorithm(), &signature)
}

/// The unsigned OCSPResponse that carries only an error status.
pub fn error_response(status: OcspErrorStatus) -> &'static [u8] {
    match status {
        OcspErrorStatus::MalformedRequest => &[0x30, 0x03, 0x0a, 0x01, 0x01],
        OcspErrorStatus::InternalError => &[0x30, 0x03, 0x0a, 0x01, 0x02],
        OcspErrorStatus::TryLater => &[0x30, 0x03, 0x0a, 0x01, 0x03],
        OcspErrorStatus::Unauthorized => &[0x30, 0x03, 0x0a, 0x01, 0x06],
    }
}

/// `id-pkix-ocsp-basic` (1.3.6.1.5.5.7.48.1.1) as a full TLV.
const ID_PKIX_OCSP_BASIC: &[u8] = &[
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01,
];

/// Standard alphabet, padding optional (stripped before decoding), trailing bits rejected.
const BASE64_LENIENT: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);

/// `BASE64_LENIENT` with the URL-safe alphabet.
const BASE64URL_LENIENT: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

const LENIENT: base64::engine::GeneralPurposeConfig = base64::engine::GeneralPurposeConfig::new()
    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);

fn requested_cert_id(id: rasn_ocsp::CertId) -> Result<RequestedCertId, OcspRequestError> {
    let oid = der_of(&id.hash_algorithm.algorithm)?;
    let hash = read_tlv(&oid)
        .ok()
        .and_then(|(_, arcs, _)| {
            [
                HashAlg::Sha1,
                HashAlg::Sha256,
                HashAlg::Sha384,
                HashAlg::Sha512,
            ]
            .into_iter()
            .find(|h| h.oid().as_bytes() == arcs)
        })
        .ok_or_else(|| OcspRequestError::UnknownHash(id.hash_algorithm.algorithm.to_string()))?;
    let serial = der_of(&id.serial_number)?;
    let (_, serial, _) =
        read_tlv(&serial).map_err(|e| OcspRequestError::Malformed(e.to_string()))?;
    let digits = serial_digits(serial);
    if serial.first().is_none_or(|b| b & 0x80 != 0) || digits.is_empty() {
        return Err(OcspRequestError::NonPositiveSerial);
    }
    Ok(RequestedCertId {
        key: CertIdKey {
            hash,
            issuer_name_hash: id.issuer_name_hash.to_vec(),
            issuer_key_hash: id.issuer_key_hash.to_vec(),
            serial: digits.to_vec(),
        },
        der: der_of(&id)?,
    })
}

/// The DER of a decoded rasn value.
fn der_of<T: rasn::Encode>(value: &T) -> Result<Vec<u8>, OcspRequestError> {
    rasn::der::encode(value).map_err(|e| OcspRequestError::Malformed(e.to_string()))
}

/// Appends one SingleResponse.
fn push_single(out: &mut Vec<u8>, single: &SingleStatus) -> Result<(), PkiError> {
    match read_tlv(&single.cert_id_der) {
        Ok((TAG_SEQUENCE, _, [])) => {}
        _ => return Err(PkiError::Invalid("CertID is not one DER SEQUENCE".into())),
    }
    let status = match single.status {
        CertStatus::Good => vec![0x80, 0x00],
        CertStatus::Unknown => vec![0x82, 0x00],
        CertStatus::Revoked { at, reason } => {
            let mut info = Vec::with_capacity(24);
            push_time(&mut info, at, false)?;
            if reason != RevocationReason::Unspecified {
                info.extend_from_slice(&[0xa0, 0x03, 0x0a, 0x01, reason.code()]);
            }
            tlv(0xa1, &info)
        }
    };
    let next_update = time_tlv_len(single.next_update, false)?;
    let content = single.cert_id_der.len()
        + status.len()
        + time_tlv_len(single.this_update, false)?
        + tlv_len(next_update);
    push_header(out, TAG_SEQUENCE, content);
    out.extend_from_slice(&single.cert_id_der);
    out.extend_from_slice(&status);
    push_time(out, single.this_update, false)?;
    push_header(out, 0xa0, next_update);
    push_time(out, single.next_update, false)
}

#[cfg(test)]
mod tests;
