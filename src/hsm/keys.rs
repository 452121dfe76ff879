//! Key pairs in the token: generation templates, the public key as a SubjectPublicKeyInfo,
//! finding a private key by CKA_ID, the signing mechanisms, and destruction.

use std::sync::Mutex;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use der::asn1::{Any, BitString, OctetString, UintRef};
use der::{Decode, Encode, Sequence};
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};

use super::error::{fault, Fail, Fault};
use super::pool::lock;
use super::{GeneratedKey, HsmError, KeyId, StoredKey};
use crate::pki::alg::{EC_PUBLIC_KEY, ED25519, RSA_ENCRYPTION};
use crate::pki::{HashAlg, KeyAlgorithm, KeyFamily, SignatureAlgorithm};

/// Length of the random CKA_ID given to each new key pair.
pub(crate) const ID_LEN: usize = 20;

/// The RSA public exponent of every generated key, 65537.
const RSA_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

/// Serialises the calls that create or destroy token objects, process-wide. Key management is
/// rare, and SoftHSM 2.6's file object store races when objects are created concurrently
/// (`C_GenerateKeyPair` fails with `CKR_GENERAL_ERROR`, softhsm/SoftHSMv2#573), which would
/// otherwise mark the whole HSM down.
pub(crate) static KEY_MANAGEMENT: Mutex<()> = Mutex::new(());

/// How often a key generation that failed with CKR_GENERAL_ERROR is tried again.
const GENERATE_RETRIES: u32 = 2;

/// A private key found in the token: its handle (valid for one initialisation) and family.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyEntry {
    pub(crate) handle: ObjectHandle,
    pub(crate) family: KeyFamily,
}

/// Generates a key pair of `alg` inside the token and returns its id and public key.
///
/// The private half is a private, sensitive, never-extractable token object that can only sign;
/// the public half can only verify. Both carry a fresh random CKA_ID and `label`.
pub(crate) fn generate(
    session: &Session,
    alg: KeyAlgorithm,
    label: &str,
) -> Result<GeneratedKey, Fail> {
    let id: [u8; ID_LEN] = rand::random();
    let (mechanism, mut public) = match alg.family() {
        KeyFamily::Rsa => (
            Mechanism::RsaPkcsKeyPairGen,
            vec![
                Attribute::ModulusBits(Ulong::try_from(alg.key_size() as usize)?),
                Attribute::PublicExponent(RSA_EXPONENT.to_vec()),
            ],
        ),
        KeyFamily::Ec => (
            Mechanism::EccKeyPairGen,
            vec![Attribute::EcParams(der(curve(alg)?.to_der())?)],
        ),
        // SoftHSM 2.6 names the curve by OID (RFC 8410), not by the PKCS#11 3.0 printable name.
        KeyFamily::Ed25519 => (
            Mechanism::EccEdwardsKeyPairGen,
            vec![Attribute::EcParams(der(ED25519.to_der())?)],
        ),
    };
    public.extend([
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ]);
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let _serial = lock(&KEY_MANAGEMENT);
    let mut retries = GENERATE_RETRIES;
    let (public_key, private_key) = loop {
        match session.generate_key_pair(&mechanism, &public, &private) {
            // Serialising creations is not enough for SoftHSM 2.6: a creation can still fail
            // with CKR_GENERAL_ERROR while another session reads the object store. A device
            // that is really gone fails the retries too (a few ms), and is then marked down.
            Err(CkError::Pkcs11(RvError::GeneralError, _)) if retries > 0 => {
                retries -= 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            result => break result?,
        }
    };
    match public_key_info(session, public_key, alg) {
        Ok(spki_der) => Ok(GeneratedKey {
            id: KeyId(id.to_vec()),
            spki_der,
        }),
        Err(e) => {
            // A key nobody can name is useless: do not leave it behind.
            let _ = session.destroy_object(private_key);
            let _ = session.destroy_object(public_key);
            Err(e)
        }
    }
}

/// Finds the private key `id`; `None` when the token has none.
pub(crate) fn find_private(session: &Session, id: &KeyId) -> Result<Option<KeyEntry>, Fail> {
    let template = [
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Id(id.0.clone()),
    ];
    let Some(&handle) = session.find_objects(&template)?.first() else {
        return Ok(None);
    };
    let attributes = session.get_attributes(handle, &[AttributeType::KeyType])?;
    let family = attributes.iter().find_map(|a| match a {
        Attribute::KeyType(t) => family_of(*t),
        _ => None,
    });
    match family {
        Some(family) => Ok(Some(KeyEntry { handle, family })),
        None => Err(HsmError::Pkcs11(format!(
            "key {} is of a type pcad does not sign with",
            id.to_hex()
        ))
        .into()),
    }
}

/// Signs `message` with `key` as X.509 wants the signature value (see `pki::Signer::sign`).
pub(crate) fn sign(
    session: &Session,
    key: &KeyEntry,
    id: &KeyId,
    alg: SignatureAlgorithm,
    message: &[u8],
) -> Result<Vec<u8>, Fail> {
    if alg.key_family() != key.family {
        return Err(HsmError::WrongAlgorithm {
            key: id.to_hex(),
            family: key.family,
            alg: alg.api_name(),
        }
        .into());
    }
    use SignatureAlgorithm::*;
    let signature = match alg {
        Sha256WithRsa | Sha384WithRsa | Sha512WithRsa if message.len() > RSA_PREHASH_ABOVE => {
            rsa_prehashed(session, key.handle, alg, message)?
        }
        Sha256WithRsa => session.sign(&Mechanism::Sha256RsaPkcs, key.handle, message)?,
        Sha384WithRsa => session.sign(&Mechanism::Sha384RsaPkcs, key.handle, message)?,
        Sha512WithRsa => session.sign(&Mechanism::Sha512RsaPkcs, key.handle, message)?,
        // SoftHSM has no CKM_ECDSA_SHA*: hash here, sign the digest.
        Sha256WithEcdsa => ecdsa(session, key.handle, HashAlg::Sha256, message)?,
        Sha384WithEcdsa => ecdsa(session, key.handle, HashAlg::Sha384, message)?,
        Sha512WithEcdsa => ecdsa(session, key.handle, HashAlg::Sha512, message)?,
        Ed25519 => {
            let pure = EddsaParams::new(EddsaSignatureScheme::Pure);
            session.sign(&Mechanism::Eddsa(pure), key.handle, message)?
        }
    };
    Ok(signature)
}

/// Destroys every private and public key object named `id`; none left is success.
pub(crate) fn destroy(session: &Session, id: &KeyId) -> Result<(), Fail> {
    let _serial = lock(&KEY_MANAGEMENT);
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        let template = [Attribute::Class(class), Attribute::Id(id.0.clone())];
        for handle in session.find_objects(&template)? {
            match session.destroy_object(handle) {
                Ok(()) => {}
                // Destroyed meanwhile by someone else: the outcome we want.
                Err(e) if fault(&e) == Fault::Handle => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Every private key in the token.
pub(crate) fn list(session: &Session) -> Result<Vec<StoredKey>, Fail> {
    let _serial = lock(&KEY_MANAGEMENT);
    let handles = session.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])?;
    let mut keys = Vec::with_capacity(handles.len());
    for handle in handles {
        let wanted = [
            AttributeType::Id,
            AttributeType::Label,
            AttributeType::KeyType,
        ];
        let mut key = StoredKey {
            id: KeyId(Vec::new()),
            label: String::new(),
            family: None,
        };
        let attributes = match session.get_attributes(handle, &wanted) {
            Ok(attributes) => attributes,
            // Destroyed since `find_objects` (SoftHSM may say VALUE_INVALID then): not listed.
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        for attribute in attributes {
            match attribute {
                Attribute::Id(id) => key.id = KeyId(id),
                Attribute::Label(label) => key.label = String::from_utf8_lossy(&label).into(),
                Attribute::KeyType(t) => key.family = family_of(t),
                _ => {}
            }
        }
        keys.push(key);
    }
    Ok(keys)
}

/// RSA messages longer than this (a CRL of many entries) are hashed here: the token copies what
/// it is given, and a million-entry CRL is 42 MB.
const RSA_PREHASH_ABOVE: usize = 64 * 1024;

/// PKCS#1 v1.5 over a software digest: `CKM_RSA_PKCS` of the DigestInfo (RFC 8017 §9.2) is
/// the very signature `CKM_SHA*_RSA_PKCS` makes of the whole message.
fn rsa_prehashed(
    session: &Session,
    key: ObjectHandle,
    alg: SignatureAlgorithm,
    message: &[u8],
) -> Result<Vec<u8>, Fail> {
    // DigestInfo prefixes of RFC 8017 §9.2, note 1: SEQUENCE { AlgorithmIdentifier, OCTET STRING }.
    const SHA256: &[u8] = &[
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    const SHA384: &[u8] = &[
        0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
        0x05, 0x00, 0x04, 0x30,
    ];
    const SHA512: &[u8] = &[
        0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
        0x05, 0x00, 0x04, 0x40,
    ];
    let (prefix, hash) = match alg {
        SignatureAlgorithm::Sha384WithRsa => (SHA384, HashAlg::Sha384),
        SignatureAlgorithm::Sha512WithRsa => (SHA512, HashAlg::Sha512),
        _ => (SHA256, HashAlg::Sha256),
    };
    let digest_info = [prefix, &hash.digest(message)].concat();
    Ok(session.sign(&Mechanism::RsaPkcs, key, &digest_info)?)
}

/// ECDSA over a software digest; PKCS#11 returns r‖s, X.509 wants `Ecdsa-Sig-Value`.
fn ecdsa(
    session: &Session,
    key: ObjectHandle,
    hash: HashAlg,
    message: &[u8],
) -> Result<Vec<u8>, Fail> {
    let raw = session.sign(&Mechanism::Ecdsa, key, &hash.digest(message))?;
    ecdsa_sig_value(&raw)
}

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279).
#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// Converts PKCS#11's fixed-width r‖s into a DER `Ecdsa-Sig-Value` (positive, minimal INTEGERs).
pub(crate) fn ecdsa_sig_value(raw: &[u8]) -> Result<Vec<u8>, Fail> {
    if raw.is_empty() || raw.len() % 2 != 0 {
        return Err(
            HsmError::Pkcs11(format!("CKM_ECDSA gave {} bytes, not r‖s", raw.len())).into(),
        );
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    der(EcdsaSigValue {
        r: der(UintRef::new(r))?,
        s: der(UintRef::new(s))?,
    }
    .to_der())
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017).
#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

/// Reads the public key object back and encodes it as a DER SubjectPublicKeyInfo.
fn public_key_info(
    session: &Session,
    public_key: ObjectHandle,
    alg: KeyAlgorithm,
) -> Result<Vec<u8>, Fail> {
    match alg.family() {
        KeyFamily::Rsa => {
            let wanted = [AttributeType::Modulus, AttributeType::PublicExponent];
            let (mut modulus, mut exponent) = (Vec::new(), Vec::new());
            for attribute in session.get_attributes(public_key, &wanted)? {
                match attribute {
                    Attribute::Modulus(n) => modulus = n,
                    Attribute::PublicExponent(e) => exponent = e,
                    _ => {}
                }
            }
            if modulus.is_empty() || exponent.is_empty() {
                return Err(HsmError::Pkcs11("RSA public key without modulus".into()).into());
            }
            let key = der(RsaPublicKey {
                modulus: der(UintRef::new(&modulus))?,
                public_exponent: der(UintRef::new(&exponent))?,
            }
            .to_der())?;
            encode_spki(RSA_ENCRYPTION, Some(Any::null()), &key)
        }
        KeyFamily::Ec => {
            let curve = curve(alg)?;
            let field = (alg.key_size() as usize).div_ceil(8);
            let point = ec_point(session, public_key, 1 + 2 * field)?;
            if point.first() != Some(&0x04) {
                return Err(HsmError::Pkcs11("EC point is not uncompressed".into()).into());
            }
            encode_spki(EC_PUBLIC_KEY, Some(der(Any::encode_from(&curve))?), &point)
        }
        KeyFamily::Ed25519 => {
            let point = ec_point(session, public_key, 32)?;
            encode_spki(ED25519, None, &point)
        }
    }
}

/// CKA_EC_POINT of `len` bytes, unwrapped from the DER OCTET STRING SoftHSM (and PKCS#11 2.40)
/// puts around it; some modules return it bare.
fn ec_point(session: &Session, public_key: ObjectHandle, len: usize) -> Result<Vec<u8>, Fail> {
    let attributes = session.get_attributes(public_key, &[AttributeType::EcPoint])?;
    let raw = attributes
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .unwrap_or_default();
    unwrap_point(raw, len)
}

/// The point itself, whether given bare or wrapped in an OCTET STRING.
pub(crate) fn unwrap_point(raw: Vec<u8>, len: usize) -> Result<Vec<u8>, Fail> {
    if raw.len() == len {
        return Ok(raw);
    }
    match OctetString::from_der(&raw) {
        Ok(octets) if octets.as_bytes().len() == len => Ok(octets.into_bytes().into()),
        _ => Err(HsmError::Pkcs11(format!(
            "CKA_EC_POINT of {} bytes, expected a {len}-byte point",
            raw.len()
        ))
        .into()),
    }
}

fn encode_spki(
    oid: ObjectIdentifier,
    parameters: Option<Any>,
    key: &[u8],
) -> Result<Vec<u8>, Fail> {
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned { oid, parameters },
        subject_public_key: der(BitString::from_bytes(key))?,
    };
    der(spki.to_der())
}

/// Whether reading an object failed because it was destroyed meanwhile.
fn vanished(e: &CkError) -> bool {
    fault(e) == Fault::Handle || matches!(e, CkError::Pkcs11(RvError::AttributeValueInvalid, _))
}

fn curve(alg: KeyAlgorithm) -> Result<ObjectIdentifier, Fail> {
    alg.curve()
        .ok_or_else(|| HsmError::Pkcs11(format!("{alg:?} is not an EC key")).into())
}

fn family_of(key_type: KeyType) -> Option<KeyFamily> {
    if key_type == KeyType::RSA {
        Some(KeyFamily::Rsa)
    } else if key_type == KeyType::EC {
        Some(KeyFamily::Ec)
    } else if key_type == KeyType::EC_EDWARDS {
        Some(KeyFamily::Ed25519)
    } else {
        None
    }
}

/// DER encoding failures are bugs or garbage from the token: a permanent error.
fn der<T>(result: der::Result<T>) -> Result<T, Fail> {
    result.map_err(|e| HsmError::Pkcs11(format!("DER: {e}")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_integers_are_minimal_and_positive() {
        // r has a leading zero byte to strip, s has its top bit set and needs a 0x00.
        let mut raw = vec![0u8; 64];
        raw[1] = 0x01;
        raw[32] = 0x80;
        let der = ecdsa_sig_value(&raw).unwrap();
        assert_eq!(&der[..2], &[0x30, 2 + 31 + 2 + 33]);
        assert_eq!(&der[2..5], &[0x02, 31, 0x01]);
        assert_eq!(&der[35..39], &[0x02, 33, 0x00, 0x80]);
        assert!(ecdsa_sig_value(&[1, 2, 3]).is_err());
    }

    #[test]
    fn points_bare_or_wrapped() {
        let point = vec![7u8; 32];
        let mut wrapped = vec![0x04, 32];
        wrapped.extend(&point);
        assert_eq!(unwrap_point(point.clone(), 32).unwrap(), point);
        assert_eq!(unwrap_point(wrapped, 32).unwrap(), point);
        assert!(unwrap_point(vec![0x04, 2, 1, 1], 32).is_err());
    }
}
