//! JWS (RFC 7515, flattened JSON form) as RFC 8555 §6.2 uses it: ES256, ES384, RS256 and
//! EdDSA account keys given as a JWK, RFC 7638 thumbprints, and HS256 for external account
//! binding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

use super::problem::Problem;

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn unb64(field: &str, s: &str) -> Result<Vec<u8>, Problem> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| Problem::malformed(format!("{field}: not base64url without padding")))
}

/// A flattened JWS as it arrived.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJws {
    pub protected: String,
    pub payload: String,
    pub signature: String,
}

impl RawJws {
    pub fn parse(body: &[u8]) -> Result<RawJws, Problem> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Problem::malformed(format!("body: not JSON ({e})")))?;
        if v.get("signatures").is_some() {
            return Err(Problem::malformed(
                "body: a JWS must have exactly one signature (flattened form)",
            ));
        }
        if v.get("header").is_some() {
            return Err(Problem::malformed(
                "header: unprotected headers are not allowed",
            ));
        }
        serde_json::from_value(v).map_err(|e| {
            Problem::malformed(format!(
                "body: not a flattened JWS with protected, payload and signature ({e})"
            ))
        })
    }

    pub fn header(&self) -> Result<Header, Problem> {
        let raw = unb64("protected", &self.protected)?;
        let h: Header = serde_json::from_slice(&raw)
            .map_err(|e| Problem::malformed(format!("protected: not a JWS header ({e})")))?;
        // RFC 8555 §6.2: no unencoded payloads; no extensions pcad would have to understand.
        if h.b64.is_some() || h.crit.is_some() {
            return Err(Problem::malformed(
                "protected: b64 and crit are not allowed in ACME requests",
            ));
        }
        Ok(h)
    }

    pub fn payload(&self) -> Result<Vec<u8>, Problem> {
        unb64("payload", &self.payload)
    }

    fn signing_input(&self) -> Vec<u8> {
        format!("{}.{}", self.protected, self.payload).into_bytes()
    }

    /// Verifies the signature with `key` under `alg`.
    pub fn verify(&self, alg: &str, key: &Jwk) -> Result<(), Problem> {
        let sig = unb64("signature", &self.signature)?;
        key.verify(alg, &self.signing_input(), &sig)
    }

    /// Verifies an HS256 MAC (external account binding).
    pub fn verify_hmac(&self, alg: &str, key: &[u8]) -> Result<(), Problem> {
        let algorithm = match alg {
            "HS256" => ring::hmac::HMAC_SHA256,
            "HS384" => ring::hmac::HMAC_SHA384,
            "HS512" => ring::hmac::HMAC_SHA512,
            other => {
                return Err(Problem::malformed(format!(
                    "externalAccountBinding: alg {other:?} is not HS256, HS384 or HS512"
                )))
            }
        };
        let sig = unb64("externalAccountBinding.signature", &self.signature)?;
        let k = ring::hmac::Key::new(algorithm, key);
        ring::hmac::verify(&k, &self.signing_input(), &sig).map_err(|_| {
            Problem::unauthorized(
                "externalAccountBinding: the MAC does not verify with the token's key",
            )
        })
    }
}

/// The protected header members RFC 8555 uses.
#[derive(Deserialize)]
pub struct Header {
    pub alg: String,
    pub nonce: Option<String>,
    pub url: Option<String>,
    pub jwk: Option<Value>,
    pub kid: Option<String>,
    pub b64: Option<Value>,
    pub crit: Option<Value>,
}

/// An account public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Jwk {
    /// P-256 or P-384: the curve's coordinate size (32 or 48) and the coordinates.
    Ec {
        crv: &'static str,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
}

impl Jwk {
    pub fn parse(v: &Value) -> Result<Jwk, Problem> {
        let field = |name: &str| -> Result<Vec<u8>, Problem> {
            let s = v.get(name).and_then(Value::as_str).ok_or_else(|| {
                Problem::malformed(format!("jwk.{name}: required string member is missing"))
            })?;
            unb64(&format!("jwk.{name}"), s)
        };
        let kty = v.get("kty").and_then(Value::as_str).unwrap_or("");
        let crv = v.get("crv").and_then(Value::as_str).unwrap_or("");
        let bad = |m: String| Problem::new("badPublicKey", 400, m);
        match (kty, crv) {
            ("EC", "P-256" | "P-384") => {
                let (crv, len) = if crv == "P-256" {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != len || y.len() != len {
                    return Err(bad(format!(
                        "jwk: {crv} coordinates must be {len} octets each"
                    )));
                }
                Ok(Jwk::Ec { crv, x, y })
            }
            ("RSA", _) => {
                let (n, e) = (field("n")?, field("e")?);
                let n = strip_zeros(n);
                if n.len() < 256 || n.len() > 1024 {
                    return Err(bad("jwk: RSA modulus must be 2048 to 8192 bits".into()));
                }
                Ok(Jwk::Rsa {
                    n,
                    e: strip_zeros(e),
                })
            }
            ("OKP", "Ed25519") => {
                let x = field("x")?;
                if x.len() != 32 {
                    return Err(bad("jwk: an Ed25519 key is 32 octets".into()));
                }
                Ok(Jwk::Ed25519 { x })
            }
            _ => Err(bad(format!(
                "jwk: key type {kty:?} {crv:?} is not supported (EC P-256/P-384, RSA, OKP Ed25519)"
            ))),
        }
    }

    /// The JWK with the RFC 7638 members only, in their order.
    pub fn canonical(&self) -> String {
        match self {
            Jwk::Ec { crv, x, y } => format!(
                r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                b64(x),
                b64(y)
            ),
            Jwk::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n)),
            Jwk::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x)),
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.canonical()).unwrap_or(Value::Null)
    }

    /// RFC 7638 thumbprint (SHA-256), base64url.
    pub fn thumbprint(&self) -> String {
        b64(ring::digest::digest(&ring::digest::SHA256, self.canonical().as_bytes()).as_ref())
    }

    /// The octets of the subjectPublicKey BIT STRING a certificate for this key carries.
    pub fn spki_bits(&self) -> Vec<u8> {
        match self {
            Jwk::Ec { x, y, .. } => [&[4u8][..], x, y].concat(),
            Jwk::Ed25519 { x } => x.clone(),
            Jwk::Rsa { n, e } => der_seq(&[der_uint(n), der_uint(e)].concat()),
        }
    }

    fn verify(&self, alg: &str, msg: &[u8], sig: &[u8]) -> Result<(), Problem> {
        let mismatch = || {
            Problem::new(
                "badSignatureAlgorithm",
                400,
                format!(
                    "alg {alg:?} does not fit the key or is not one of ES256, ES384, RS256, EdDSA"
                ),
            )
        };
        let ok = match (self, alg) {
            (Jwk::Ec { crv: "P-256", x, y }, "ES256") => {
                let pk = [&[4u8][..], x, y].concat();
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, pk)
                    .verify(msg, sig)
                    .is_ok()
            }
            (Jwk::Ec { crv: "P-384", x, y }, "ES384") => {
                let pk = [&[4u8][..], x, y].concat();
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, pk)
                    .verify(msg, sig)
                    .is_ok()
            }
            (Jwk::Rsa { n, e }, "RS256") => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
                .is_ok(),
            (Jwk::Ed25519 { x }, "EdDSA") => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(msg, sig)
                .is_ok(),
            _ => return Err(mismatch()),
        };
        if ok {
            Ok(())
        } else {
            Err(Problem::malformed(
                "signature: does not verify with the key",
            ))
        }
    }
}

/// Whether `alg` is one pcad accepts for account keys.
pub fn supported_alg(alg: &str) -> bool {
    matches!(alg, "ES256" | "ES384" | "RS256" | "EdDSA")
}

fn strip_zeros(v: Vec<u8>) -> Vec<u8> {
    let i = v.iter().take_while(|b| **b == 0).count();
    v[i..].to_vec()
}

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        [vec![0x80 | bytes.len() as u8], bytes].concat()
    }
}

fn der_uint(v: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(v.len() + 1);
    if v.first().is_none_or(|b| *b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(v);
    [vec![0x02], der_len(body.len()), body].concat()
}

fn der_seq(content: &[u8]) -> Vec<u8> {
    [vec![0x30], der_len(content.len()), content.to_vec()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn signed(alg: &str, jwk: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> RawJws {
        let protected = b64(
            serde_json::json!({"alg": alg, "jwk": jwk, "nonce": "n", "url": "u"})
                .to_string()
                .as_bytes(),
        );
        let payload = b64(b"{}");
        let sig = sign(format!("{protected}.{payload}").as_bytes());
        RawJws {
            protected,
            payload,
            signature: b64(&sig),
        }
    }

    #[test]
    fn es256_and_eddsa_verify_and_tampering_fails() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let pk = kp.public_key().as_ref();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&pk[1..33]), "y": b64(&pk[33..])});
        let jws = signed("ES256", &jwk, |m| {
            kp.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        let key = Jwk::parse(&jws.header().unwrap().jwk.unwrap()).unwrap();
        assert_eq!(key.spki_bits(), pk);
        jws.verify("ES256", &key).unwrap();
        assert!(jws.verify("RS256", &key).is_err());
        let mut bad = jws;
        bad.payload = b64(b"{\"x\":1}");
        assert!(bad.verify("ES256", &key).is_err());

        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk =
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(kp.public_key().as_ref())});
        let jws = signed("EdDSA", &jwk, |m| kp.sign(m).as_ref().to_vec());
        let key = Jwk::parse(&jwk).unwrap();
        jws.verify("EdDSA", &key).unwrap();
    }

    #[test]
    fn rs256_and_es384_verify() {
        use openssl::{ec, hash::MessageDigest, nid::Nid, pkey::PKey, rsa::Rsa, sign::Signer};
        let rsa = Rsa::generate(2048).unwrap();
        let jwk = serde_json::json!({"kty": "RSA", "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())});
        let pkey = PKey::from_rsa(rsa).unwrap();
        let jws = signed("RS256", &jwk, |m| {
            let mut s = Signer::new(MessageDigest::sha256(), &pkey).unwrap();
            s.update(m).unwrap();
            s.sign_to_vec().unwrap()
        });
        let key = Jwk::parse(&jwk).unwrap();
        jws.verify("RS256", &key).unwrap();
        assert!(jws.verify("ES256", &key).is_err());

        let group = ec::EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
        let eck = ec::EcKey::generate(&group).unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let (mut x, mut y) = (
            openssl::bn::BigNum::new().unwrap(),
            openssl::bn::BigNum::new().unwrap(),
        );
        eck.public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .unwrap();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-384",
            "x": b64(&x.to_vec_padded(48).unwrap()), "y": b64(&y.to_vec_padded(48).unwrap())});
        let jws = signed("ES384", &jwk, |m| {
            let digest = openssl::hash::hash(MessageDigest::sha384(), m).unwrap();
            let sig = openssl::ecdsa::EcdsaSig::sign(&digest, &eck).unwrap();
            [
                sig.r().to_vec_padded(48).unwrap(),
                sig.s().to_vec_padded(48).unwrap(),
            ]
            .concat()
        });
        jws.verify("ES384", &Jwk::parse(&jwk).unwrap()).unwrap();
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let key = Jwk::parse(&jwk).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert!(Jwk::parse(&serde_json::json!({"kty": "oct", "k": "AA"})).is_err());
    }
}
