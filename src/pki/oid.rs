//! OBJECT IDENTIFIERs as clients give them (policies, extended key usages, other SANs, other
//! subject fields): any X.660 shape, including arcs that do not fit 32 bits (`2.25.<UUID>`)
//! and a second arc of 40 and more under joint-iso-itu-t (`2.999.1`), which `const-oid`
//! refuses. Arcs up to 2^128-1 (the UUID arcs are 128 bits); stored as the DER content bytes.

use std::fmt;
use std::str::FromStr;

/// An OBJECT IDENTIFIER: the content octets of its DER encoding.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oid(Vec<u8>);

impl Oid {
    /// The DER content octets (without tag and length).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Takes DER content octets; `None` unless they are a well-formed OID whose arcs fit 128 bits.
    pub fn from_der_content(bytes: &[u8]) -> Option<Oid> {
        decode(bytes).map(|_| Oid(bytes.to_vec()))
    }
}

impl AsRef<[u8]> for Oid {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<const_oid::ObjectIdentifier> for Oid {
    fn from(o: const_oid::ObjectIdentifier) -> Oid {
        Oid(o.as_bytes().to_vec())
    }
}

/// Why a dotted-decimal string is not an OID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OidSyntax(pub &'static str);

impl fmt::Display for OidSyntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for Oid {
    type Err = OidSyntax;

    fn from_str(s: &str) -> Result<Oid, OidSyntax> {
        let mut arcs = Vec::new();
        for part in s.split('.') {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(OidSyntax("arcs must be decimal numbers separated by dots"));
            }
            if part.len() > 1 && part.starts_with('0') {
                return Err(OidSyntax("an arc must not have a leading zero"));
            }
            arcs.push(
                part.parse::<u128>()
                    .map_err(|_| OidSyntax("an arc is larger than 2^128-1"))?,
            );
        }
        if arcs.len() < 2 {
            return Err(OidSyntax("at least two arcs are needed"));
        }
        let (first, second) = (arcs[0], arcs[1]);
        if first > 2 {
            return Err(OidSyntax("the first arc must be 0, 1 or 2"));
        }
        if first < 2 && second > 39 {
            return Err(OidSyntax(
                "the second arc must be 0 to 39 under 0 and 1 (X.660)",
            ));
        }
        let head = (first * 40)
            .checked_add(second)
            .ok_or(OidSyntax("an arc is larger than 2^128-1"))?;
        let mut out = Vec::new();
        push_base128(&mut out, head);
        for arc in &arcs[2..] {
            push_base128(&mut out, *arc);
        }
        Ok(Oid(out))
    }
}

fn push_base128(out: &mut Vec<u8>, mut v: u128) {
    let mut groups = [0u8; 19];
    let mut n = 0;
    loop {
        groups[n] = (v & 0x7f) as u8;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(groups[i] | if i > 0 { 0x80 } else { 0 });
    }
}

/// The arcs of DER content octets (the first two joined as X.690 encodes them).
fn decode(bytes: &[u8]) -> Option<Vec<u128>> {
    if bytes.is_empty() || bytes.last()? & 0x80 != 0 {
        return None;
    }
    let mut values = Vec::new();
    let mut v: u128 = 0;
    let mut start = true;
    for &b in bytes {
        if start && b == 0x80 {
            return None; // non-minimal
        }
        if v >> 121 != 0 {
            return None; // would overflow 128 bits
        }
        v = (v << 7) | u128::from(b & 0x7f);
        start = b & 0x80 == 0;
        if start {
            values.push(v);
            v = 0;
        }
    }
    Some(values)
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = decode(&self.0).ok_or(fmt::Error)?;
        let head = values[0];
        let (first, second) = match head {
            0..=39 => (0, head),
            40..=79 => (1, head - 40),
            _ => (2, head - 80),
        };
        write!(f, "{first}.{second}")?;
        for v in &values[1..] {
            write!(f, ".{v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

impl serde::Serialize for Oid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Oid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Oid, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der_hex(s: &str) -> String {
        s.parse::<Oid>()
            .unwrap()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn encodes_what_openssl_encodes() {
        // `openssl asn1parse -genstr OID:<oid> -dump` gives these content octets.
        assert_eq!(der_hex("1.2.840.113549.1.1.11"), "2a864886f70d01010b");
        assert_eq!(der_hex("2.5.29.37.0"), "551d2500");
        assert_eq!(der_hex("2.999.1"), "883701");
        assert_eq!(der_hex("2.999"), "8837");
        assert_eq!(
            der_hex("1.3.6.1.4.1.99999.4294967296"),
            "2b06010401868d1f9080808000"
        );
        assert_eq!(
            der_hex("2.25.329800735698586629295641978511506172918"),
            "6983f09da7ebcfdee0c7a1a7b2c0948cc8f9d776"
        );
    }

    #[test]
    fn round_trips_and_agrees_with_const_oid() {
        for s in [
            "0.0",
            "1.39.5",
            "2.999.1",
            "2.25.340282366920938463463374607431768211455",
            "1.3.6.1.4.1.311.20.2.3",
            "2.23.140.1.2.2",
        ] {
            let o: Oid = s.parse().unwrap();
            assert_eq!(o.to_string(), s);
            assert_eq!(Oid::from_der_content(o.as_bytes()), Some(o.clone()));
            if let Ok(c) = s.parse::<const_oid::ObjectIdentifier>() {
                assert_eq!(Oid::from(c), o);
            }
        }
    }

    #[test]
    fn refuses_what_x660_refuses() {
        for bad in [
            "",
            "1",
            "3.1",
            "1.40",
            "0.40.1",
            "1..2",
            "1.2.",
            ".1.2",
            "1.02",
            "a.b",
            "1.2.-3",
            "2.25.340282366920938463463374607431768211456",
        ] {
            assert!(bad.parse::<Oid>().is_err(), "{bad:?}");
        }
        assert!(Oid::from_der_content(&[0x80, 0x01]).is_none());
        assert!(Oid::from_der_content(&[0x2a, 0x86]).is_none());
        assert!(Oid::from_der_content(&[]).is_none());
    }
}
