//! Key and signature algorithms of the seed's KeyInfo and SignatureAlgorithm tables, with their
//! X.509 object identifiers.

use const_oid::ObjectIdentifier;
use der::asn1::AnyRef;
use serde::{Deserialize, Serialize};
use spki::AlgorithmIdentifierOwned;

/// `rsaEncryption` (RFC 8017).
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-ecPublicKey` (RFC 5480).
pub const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `id-Ed25519` (RFC 8410).
pub const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
pub const SECP224R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.33");
pub const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
pub const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
pub const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
pub const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
pub const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
pub const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
pub const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");

/// The family of a key: what decides which signature algorithms and key usages fit it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyFamily {
    Rsa,
    Ec,
    Ed25519,
}

/// One row of the seed's KeyInfo table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    P224,
    P256,
    P384,
    P521,
    Ed25519,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 8] = [
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::P224,
        Self::P256,
        Self::P384,
        Self::P521,
        Self::Ed25519,
    ];

    /// Parses the seed's `keyInfo` pair; `EC` and `ECDSA` are the same, Ed25519 ignores the size.
    pub fn from_api(algorithm: &str, key_size: Option<u32>) -> Result<Self, String> {
        match algorithm {
            "RSA" => match key_size {
                Some(2048) => Ok(Self::Rsa2048),
                Some(3072) => Ok(Self::Rsa3072),
                Some(4096) => Ok(Self::Rsa4096),
                _ => Err("keySize for RSA must be 2048, 3072 or 4096".into()),
            },
            "EC" | "ECDSA" => match key_size {
                Some(224) => Ok(Self::P224),
                Some(256) => Ok(Self::P256),
                Some(384) => Ok(Self::P384),
                Some(521) => Ok(Self::P521),
                _ => Err("keySize for EC must be 224, 256, 384 or 521".into()),
            },
            "ED25519" => Ok(Self::Ed25519),
            _ => Err("algorithm must be one of RSA, EC, ECDSA, ED25519".into()),
        }
    }

    pub fn family(self) -> KeyFamily {
        match self {
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => KeyFamily::Rsa,
            Self::P224 | Self::P256 | Self::P384 | Self::P521 => KeyFamily::Ec,
            Self::Ed25519 => KeyFamily::Ed25519,
        }
    }

    /// The `algorithm` name the API answers with.
    pub fn api_name(self) -> &'static str {
        match self.family() {
            KeyFamily::Rsa => "RSA",
            KeyFamily::Ec => "EC",
            KeyFamily::Ed25519 => "ED25519",
        }
    }

    pub fn key_size(self) -> u32 {
        match self {
            Self::Rsa2048 => 2048,
            Self::Rsa3072 => 3072,
            Self::Rsa4096 => 4096,
            Self::P224 => 224,
            Self::P256 => 256,
            Self::P384 => 384,
            Self::P521 => 521,
            Self::Ed25519 => 256,
        }
    }

    /// The named curve of an EC key.
    pub fn curve(self) -> Option<ObjectIdentifier> {
        match self {
            Self::P224 => Some(SECP224R1),
            Self::P256 => Some(SECP256R1),
            Self::P384 => Some(SECP384R1),
            Self::P521 => Some(SECP521R1),
            _ => None,
        }
    }

    /// The EC key of a named curve.
    pub fn from_curve(curve: &ObjectIdentifier) -> Option<Self> {
        [Self::P224, Self::P256, Self::P384, Self::P521]
            .into_iter()
            .find(|k| k.curve().as_ref() == Some(curve))
    }

    /// The signature algorithm that fits this key for a given hash size (256, 384 or 512 bits);
    /// Ed25519 ignores the size, as the seed says of `signatureBits`.
    pub fn signature_algorithm(self, bits: u32) -> SignatureAlgorithm {
        use SignatureAlgorithm::*;
        match (self.family(), bits) {
            (KeyFamily::Ed25519, _) => Ed25519,
            (KeyFamily::Rsa, 384) => Sha384WithRsa,
            (KeyFamily::Rsa, 512) => Sha512WithRsa,
            (KeyFamily::Rsa, _) => Sha256WithRsa,
            (KeyFamily::Ec, 384) => Sha384WithEcdsa,
            (KeyFamily::Ec, 512) => Sha512WithEcdsa,
            (KeyFamily::Ec, _) => Sha256WithEcdsa,
        }
    }
}

/// Hash functions used in signatures and OCSP CertIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Self::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha1 => ObjectIdentifier::new_unwrap("1.3.14.3.2.26"),
            Self::Sha256 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1"),
            Self::Sha384 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2"),
            Self::Sha512 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3"),
        }
    }

    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|h| h.oid() == *oid)
    }
}

/// One row of the seed's SignatureAlgorithm table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignatureAlgorithm {
    Sha256WithRsa,
    Sha384WithRsa,
    Sha512WithRsa,
    Sha256WithEcdsa,
    Sha384WithEcdsa,
    Sha512WithEcdsa,
    Ed25519,
}

impl SignatureAlgorithm {
    pub const ALL: [SignatureAlgorithm; 7] = [
        Self::Sha256WithRsa,
        Self::Sha384WithRsa,
        Self::Sha512WithRsa,
        Self::Sha256WithEcdsa,
        Self::Sha384WithEcdsa,
        Self::Sha512WithEcdsa,
        Self::Ed25519,
    ];

    pub fn from_api(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.api_name() == name)
    }

    pub fn api_name(self) -> &'static str {
        match self {
            Self::Sha256WithRsa => "SHA256_WITH_RSA",
            Self::Sha384WithRsa => "SHA384_WITH_RSA",
            Self::Sha512WithRsa => "SHA512_WITH_RSA",
            Self::Sha256WithEcdsa => "SHA256_WITH_ECDSA",
            Self::Sha384WithEcdsa => "SHA384_WITH_ECDSA",
            Self::Sha512WithEcdsa => "SHA512_WITH_ECDSA",
            Self::Ed25519 => "ED25519",
        }
    }

    pub fn key_family(self) -> KeyFamily {
        match self {
            Self::Sha256WithRsa | Self::Sha384WithRsa | Self::Sha512WithRsa => KeyFamily::Rsa,
            Self::Sha256WithEcdsa | Self::Sha384WithEcdsa | Self::Sha512WithEcdsa => KeyFamily::Ec,
            Self::Ed25519 => KeyFamily::Ed25519,
        }
    }

    /// Whether a key of this algorithm can make this signature.
    pub fn fits(self, key: KeyAlgorithm) -> bool {
        self.key_family() == key.family()
    }

    /// The hash the signature is made over; Ed25519 signs the message itself.
    pub fn hash(self) -> Option<HashAlg> {
        match self {
            Self::Sha256WithRsa | Self::Sha256WithEcdsa => Some(HashAlg::Sha256),
            Self::Sha384WithRsa | Self::Sha384WithEcdsa => Some(HashAlg::Sha384),
            Self::Sha512WithRsa | Self::Sha512WithEcdsa => Some(HashAlg::Sha512),
            Self::Ed25519 => None,
        }
    }

    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha256WithRsa => SHA256_WITH_RSA,
            Self::Sha384WithRsa => SHA384_WITH_RSA,
            Self::Sha512WithRsa => SHA512_WITH_RSA,
            Self::Sha256WithEcdsa => ECDSA_WITH_SHA256,
            Self::Sha384WithEcdsa => ECDSA_WITH_SHA384,
            Self::Sha512WithEcdsa => ECDSA_WITH_SHA512,
            Self::Ed25519 => ED25519,
        }
    }

    /// The AlgorithmIdentifier written into certificates, CRLs and OCSP responses: RSA carries
    /// an explicit NULL parameter (RFC 4055), ECDSA and Ed25519 carry none (RFC 5758, RFC 8410).
    pub fn algorithm_identifier(self) -> AlgorithmIdentifierOwned {
        let parameters = match self.key_family() {
            KeyFamily::Rsa => Some(AnyRef::NULL.into()),
            _ => None,
        };
        AlgorithmIdentifierOwned {
            oid: self.oid(),
            parameters,
        }
    }

    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.oid() == *oid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_info_table() {
        assert_eq!(
            KeyAlgorithm::from_api("ECDSA", Some(384)),
            Ok(KeyAlgorithm::P384)
        );
        assert_eq!(
            KeyAlgorithm::from_api("EC", Some(224)),
            Ok(KeyAlgorithm::P224)
        );
        assert_eq!(
            KeyAlgorithm::from_api("ED25519", Some(1)),
            Ok(KeyAlgorithm::Ed25519)
        );
        assert!(KeyAlgorithm::from_api("RSA", Some(1024)).is_err());
        assert!(KeyAlgorithm::from_api("DSA", Some(2048)).is_err());
    }

    #[test]
    fn signature_fits_key() {
        assert!(SignatureAlgorithm::Sha384WithRsa.fits(KeyAlgorithm::Rsa4096));
        assert!(!SignatureAlgorithm::Sha256WithEcdsa.fits(KeyAlgorithm::Rsa2048));
        assert!(SignatureAlgorithm::Ed25519.fits(KeyAlgorithm::Ed25519));
        for a in SignatureAlgorithm::ALL {
            assert_eq!(SignatureAlgorithm::from_api(a.api_name()), Some(a));
            assert_eq!(SignatureAlgorithm::from_oid(&a.oid()), Some(a));
        }
    }
}
