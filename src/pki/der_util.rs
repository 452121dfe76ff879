//! The DER tag-length-value layer under names, extensions, certificates and requests.
//!
//! Hand-rolled rather than built on `der`/`x509-cert` types because der 0.8 cannot represent a
//! `UniversalString` (tag 28), which the seed allows in subject attributes and otherName SANs,
//! and because an issuer name must be copied byte for byte.

use std::time::Duration;

use const_oid::ObjectIdentifier;
use der::asn1::{GeneralizedTime, UtcTime};
use der::{DateTime, Decode, Encode};

use super::PkiError;

/// Universal tags (with the constructed bit for SEQUENCE and SET).
pub mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0C;
    pub const NUMERIC_STRING: u8 = 0x12;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const TELETEX_STRING: u8 = 0x14;
    pub const IA5_STRING: u8 = 0x16;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const VISIBLE_STRING: u8 = 0x1A;
    pub const UNIVERSAL_STRING: u8 = 0x1C;
    pub const BMP_STRING: u8 = 0x1E;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
}

/// A context-specific tag `[n]` (n < 31).
pub const fn context(n: u8, constructed: bool) -> u8 {
    0x80 | if constructed { 0x20 } else { 0 } | (n & 0x1F)
}

/// One encoded element.
pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// A SEQUENCE of already encoded elements.
pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(tag::SEQUENCE, &parts.concat())
}

/// A SET of already encoded elements, sorted as DER requires for SET OF.
pub fn set_of(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut sorted: Vec<&Vec<u8>> = parts.iter().collect();
    sorted.sort();
    let body: Vec<u8> = sorted.into_iter().flatten().copied().collect();
    tlv(tag::SET, &body)
}

/// An OBJECT IDENTIFIER element: `const_oid`'s for the fixed ones, `pki::oid::Oid` for the
/// ones clients give.
pub fn oid<O: AsRef<[u8]> + ?Sized>(oid: &O) -> Vec<u8> {
    tlv(tag::OID, oid.as_ref())
}

pub fn boolean(value: bool) -> Vec<u8> {
    tlv(tag::BOOLEAN, &[if value { 0xFF } else { 0x00 }])
}

pub fn octet_string(value: &[u8]) -> Vec<u8> {
    tlv(tag::OCTET_STRING, value)
}

/// A BIT STRING of whole octets (no unused bits).
pub fn bit_string(value: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(value.len() + 1);
    body.push(0);
    body.extend_from_slice(value);
    tlv(tag::BIT_STRING, &body)
}

/// A non-negative INTEGER from its big-endian magnitude, minimally encoded.
pub fn unsigned(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude.iter().take_while(|b| **b == 0).count();
    let digits = &magnitude[start..];
    let mut body = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(digits);
    tlv(tag::INTEGER, &body)
}

/// An RFC 5280 `Time`: UTCTime through 2049, GeneralizedTime from 2050 (section 4.1.2.5).
pub fn time(unix_seconds: i64) -> Result<Vec<u8>, PkiError> {
    let secs = u64::try_from(unix_seconds)
        .map_err(|_| PkiError::Invalid(format!("time {unix_seconds} is before 1970")))?;
    let dt = DateTime::from_unix_duration(Duration::from_secs(secs))?;
    if dt.year() < 2050 {
        Ok(UtcTime::from_date_time(dt)?.to_der()?)
    } else {
        Ok(GeneralizedTime::from_date_time(dt).to_der()?)
    }
}

/// Lowercase hex without separators.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// A decoded element borrowing from its input.
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    pub tag: u8,
    /// The contents octets.
    pub value: &'a [u8],
    /// Tag, length and contents, as they appeared in the input.
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// A reader over the contents of this (constructed) element.
    pub fn reader(&self) -> Reader<'a> {
        Reader::new(self.value)
    }

    pub fn oid(&self) -> Result<ObjectIdentifier, PkiError> {
        self.check(tag::OID)?;
        ObjectIdentifier::from_bytes(self.value)
            .map_err(|e| PkiError::Invalid(format!("DER: bad OBJECT IDENTIFIER: {e}")))
    }

    /// An OBJECT IDENTIFIER of any X.660 shape (arcs up to 128 bits): attribute types and
    /// otherName types, which clients choose.
    pub fn any_oid(&self) -> Result<super::oid::Oid, PkiError> {
        self.check(tag::OID)?;
        super::oid::Oid::from_der_content(self.value)
            .ok_or_else(|| PkiError::Invalid("DER: bad OBJECT IDENTIFIER".into()))
    }

    /// The octets of a BIT STRING that has no unused bits.
    pub fn bit_string(&self) -> Result<&'a [u8], PkiError> {
        self.check(tag::BIT_STRING)?;
        match self.value.split_first() {
            Some((0, bits)) => Ok(bits),
            _ => Err(invalid("BIT STRING with unused bits")),
        }
    }

    /// A UTCTime or GeneralizedTime as Unix seconds.
    pub fn time(&self) -> Result<i64, PkiError> {
        let duration = match self.tag {
            tag::UTC_TIME => UtcTime::from_der(self.raw)?.to_unix_duration(),
            tag::GENERALIZED_TIME => GeneralizedTime::from_der(self.raw)?.to_unix_duration(),
            t => return Err(invalid(&format!("expected a time, found tag 0x{t:02x}"))),
        };
        i64::try_from(duration.as_secs()).map_err(|_| invalid("time out of range"))
    }

    pub fn check(&self, expected: u8) -> Result<(), PkiError> {
        if self.tag == expected {
            Ok(())
        } else {
            Err(invalid(&format!(
                "expected tag 0x{expected:02x}, found 0x{:02x}",
                self.tag
            )))
        }
    }
}

/// Reads consecutive elements from a byte slice.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next element, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element, whatever its tag.
    pub fn read(&mut self) -> Result<Tlv<'a>, PkiError> {
        let input = self.rest;
        let (&tag, after_tag) = input.split_first().ok_or_else(|| invalid("truncated"))?;
        if tag & 0x1F == 0x1F {
            return Err(invalid("high tag numbers are not supported"));
        }
        let (&first, mut after_len) = after_tag
            .split_first()
            .ok_or_else(|| invalid("truncated"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7F);
            if n == 0 || n > 4 || after_len.len() < n {
                return Err(invalid("bad length"));
            }
            let len = after_len[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            after_len = &after_len[n..];
            len
        };
        if after_len.len() < len {
            return Err(invalid("truncated"));
        }
        let header_len = input.len() - after_len.len();
        let raw = &input[..header_len + len];
        self.rest = &input[header_len + len..];
        Ok(Tlv {
            tag,
            value: &after_len[..len],
            raw,
        })
    }

    /// The next element, which must carry `expected`.
    pub fn take(&mut self, expected: u8) -> Result<Tlv<'a>, PkiError> {
        let t = self.read()?;
        t.check(expected)?;
        Ok(t)
    }

    /// The next element when it carries `expected`; nothing (and nothing consumed) otherwise.
    pub fn optional(&mut self, expected: u8) -> Result<Option<Tlv<'a>>, PkiError> {
        if self.peek_tag() == Some(expected) {
            self.read().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Fails if anything is left.
    pub fn finish(&self) -> Result<(), PkiError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(invalid("trailing data"))
        }
    }
}

/// Exactly one element of tag `expected` spanning all of `bytes`.
pub fn parse_one(bytes: &[u8], expected: u8) -> Result<Tlv<'_>, PkiError> {
    let mut r = Reader::new(bytes);
    let t = r.take(expected)?;
    r.finish()?;
    Ok(t)
}

fn invalid(what: &str) -> PkiError {
    PkiError::Invalid(format!("DER: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn lengths_and_integers() {
        assert_eq!(tlv(0x04, &[]), vec![0x04, 0x00]);
        let long = tlv(0x04, &[7u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2C]);
        let t = parse_one(&long, 0x04).unwrap();
        assert_eq!(t.value.len(), 300);
        assert_eq!(unsigned(&[0x00, 0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(unsigned(&[0x00, 0x00, 0x7F]), vec![0x02, 0x01, 0x7F]);
        assert!(parse_one(&[0x04, 0x05, 1], 0x04).is_err());
    }

    #[test]
    fn time_switches_at_2050() {
        assert_eq!(time(0).unwrap()[0], tag::UTC_TIME);
        let y2049 = 2_524_607_999; // 2049-12-31T23:59:59Z
        assert_eq!(time(y2049).unwrap()[0], tag::UTC_TIME);
        let g = time(y2049 + 1).unwrap();
        assert_eq!(g[0], tag::GENERALIZED_TIME);
        assert_eq!(
            parse_one(&g, tag::GENERALIZED_TIME)
                .unwrap()
                .time()
                .unwrap(),
            y2049 + 1
        );
    }
}
