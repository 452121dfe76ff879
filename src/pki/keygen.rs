//! Software keys: leaf keys in GENERATE mode (handed to the caller, never stored), the quickstart's
//! TLS material, and test signers. Never used for issuer keys, which live in the HSM.

use openssl::ec::{Asn1Flag, EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;

use super::cert::key_algorithm_of_spki;
use super::{pem, HashAlg, KeyAlgorithm, PkiError, SignError, SignatureAlgorithm, Signer};

/// A private key made in software.
pub struct SoftKey {
    /// Which row of the KeyInfo table this key is.
    pub algorithm: KeyAlgorithm,
    pkey: PKey<Private>,
    /// DER SubjectPublicKeyInfo, computed once.
    spki: Vec<u8>,
}

impl SoftKey {
    /// Generates a fresh key; EC keys name their curve (RFC 5480 namedCurve).
    pub fn generate(alg: KeyAlgorithm) -> Result<SoftKey, PkiError> {
        let pkey = match alg {
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                PKey::from_rsa(Rsa::generate(alg.key_size()).map_err(ossl)?).map_err(ossl)?
            }
            KeyAlgorithm::P224 | KeyAlgorithm::P256 | KeyAlgorithm::P384 | KeyAlgorithm::P521 => {
                let nid = match alg {
                    KeyAlgorithm::P224 => Nid::SECP224R1,
                    KeyAlgorithm::P256 => Nid::X9_62_PRIME256V1,
                    KeyAlgorithm::P384 => Nid::SECP384R1,
                    _ => Nid::SECP521R1,
                };
                let mut group = EcGroup::from_curve_name(nid).map_err(ossl)?;
                group.set_asn1_flag(Asn1Flag::NAMED_CURVE);
                PKey::from_ec_key(EcKey::generate(&group).map_err(ossl)?).map_err(ossl)?
            }
            KeyAlgorithm::Ed25519 => PKey::generate_ed25519().map_err(ossl)?,
        };
        Self::from_pkey(pkey)
    }

    /// Reads a PEM private key (PKCS#1, SEC1 or PKCS#8); it must be one of the KeyInfo table.
    pub fn from_pem(pem: &[u8]) -> Result<SoftKey, PkiError> {
        Self::from_pkey(PKey::private_key_from_pem(pem).map_err(ossl)?)
    }

    /// DER SubjectPublicKeyInfo of the public half.
    pub fn spki_der(&self) -> Vec<u8> {
        self.spki.clone()
    }

    /// The traditional DER: PKCS#1 for RSA, SEC1 for EC, PKCS#8 for Ed25519 (which has no other).
    pub fn traditional_der(&self) -> Result<Vec<u8>, PkiError> {
        match self.algorithm.family() {
            super::KeyFamily::Rsa => self.pkey.rsa().and_then(|k| k.private_key_to_der()),
            super::KeyFamily::Ec => self.pkey.ec_key().and_then(|k| k.private_key_to_der()),
            super::KeyFamily::Ed25519 => self.pkey.private_key_to_pkcs8(),
        }
        .map_err(ossl)
    }

    /// PEM of `traditional_der` (`RSA PRIVATE KEY`, `EC PRIVATE KEY`, `PRIVATE KEY`).
    pub fn traditional_pem(&self) -> Result<String, PkiError> {
        let label = match self.algorithm.family() {
            super::KeyFamily::Rsa => "RSA PRIVATE KEY",
            super::KeyFamily::Ec => "EC PRIVATE KEY",
            super::KeyFamily::Ed25519 => "PRIVATE KEY",
        };
        Ok(pem::encode(label, &self.traditional_der()?))
    }

    /// `PRIVATE KEY` PKCS#8 PEM.
    pub fn pkcs8_pem(&self) -> Result<String, PkiError> {
        Ok(pem::encode(
            "PRIVATE KEY",
            &self.pkey.private_key_to_pkcs8().map_err(ossl)?,
        ))
    }

    /// A signer over this key.
    pub fn signer(&self, alg: SignatureAlgorithm) -> SoftSigner<'_> {
        SoftSigner { key: self, alg }
    }

    fn from_pkey(pkey: PKey<Private>) -> Result<SoftKey, PkiError> {
        let spki = pkey.public_key_to_der().map_err(ossl)?;
        let algorithm = key_algorithm_of_spki(&spki)?;
        Ok(SoftKey {
            algorithm,
            pkey,
            spki,
        })
    }
}

/// A software key seen as a `Signer`.
pub struct SoftSigner<'a> {
    key: &'a SoftKey,
    alg: SignatureAlgorithm,
}

impl Signer for SoftSigner<'_> {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        if !self.alg.fits(self.key.algorithm) {
            return Err(SignError::Failed(format!(
                "{} does not fit a {:?} key",
                self.alg.api_name(),
                self.key.algorithm
            )));
        }
        let failed = |e: openssl::error::ErrorStack| SignError::Failed(e.to_string());
        match self.alg.hash() {
            Some(hash) => {
                let md = match hash {
                    HashAlg::Sha1 => MessageDigest::sha1(),
                    HashAlg::Sha256 => MessageDigest::sha256(),
                    HashAlg::Sha384 => MessageDigest::sha384(),
                    HashAlg::Sha512 => MessageDigest::sha512(),
                };
                // RSA keys default to PKCS#1 v1.5 padding; ECDSA output is a DER Ecdsa-Sig-Value.
                let mut s = openssl::sign::Signer::new(md, &self.key.pkey).map_err(failed)?;
                s.update(message).map_err(failed)?;
                s.sign_to_vec().map_err(failed)
            }
            None => openssl::sign::Signer::new_without_digest(&self.key.pkey)
                .and_then(|mut s| s.sign_oneshot_to_vec(message))
                .map_err(failed),
        }
    }
}

fn ossl(e: openssl::error::ErrorStack) -> PkiError {
    PkiError::Invalid(format!("key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn every_format_reads_back_with_openssl() {
        let dir = tempfile::tempdir().unwrap();
        for alg in KeyAlgorithm::ALL {
            let key = SoftKey::generate(alg).unwrap();
            assert_eq!(key.algorithm, alg);
            let spki_path = dir.path().join("spki.der");
            std::fs::write(&spki_path, key.spki_der()).unwrap();
            let trad = dir.path().join("trad.pem");
            std::fs::write(&trad, key.traditional_pem().unwrap()).unwrap();
            let trad_der = dir.path().join("trad.der");
            std::fs::write(&trad_der, key.traditional_der().unwrap()).unwrap();
            let pkcs8 = dir.path().join("pkcs8.pem");
            std::fs::write(&pkcs8, key.pkcs8_pem().unwrap()).unwrap();
            let tool = match alg.family() {
                super::super::KeyFamily::Rsa => "rsa",
                super::super::KeyFamily::Ec => "ec",
                super::super::KeyFamily::Ed25519 => "pkey",
            };
            let pem_label = key.traditional_pem().unwrap();
            assert!(pem_label.starts_with(match tool {
                "rsa" => "-----BEGIN RSA PRIVATE KEY-----",
                "ec" => "-----BEGIN EC PRIVATE KEY-----",
                _ => "-----BEGIN PRIVATE KEY-----",
            }));
            for (path, form) in [(&trad, "PEM"), (&trad_der, "DER"), (&pkcs8, "PEM")] {
                let tool = if path == &pkcs8 { "pkey" } else { tool };
                let out = Command::new("openssl")
                    .args([tool, "-inform", form, "-in"])
                    .arg(path)
                    .args(["-pubout", "-outform", "DER"])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{alg:?} {tool} {form}: {out:?}");
                assert_eq!(out.stdout, key.spki_der(), "{alg:?} {tool} {form}");
            }
            let again = SoftKey::from_pem(key.traditional_pem().unwrap().as_bytes()).unwrap();
            assert_eq!(again.spki_der(), key.spki_der());
            let again = SoftKey::from_pem(key.pkcs8_pem().unwrap().as_bytes()).unwrap();
            assert_eq!(again.algorithm, alg);
        }
    }

    #[test]
    fn signatures_verify_and_misfits_are_refused() {
        for alg in KeyAlgorithm::ALL {
            let key = SoftKey::generate(alg).unwrap();
            let public = PKey::public_key_from_der(&key.spki_der()).unwrap();
            for sig_alg in SignatureAlgorithm::ALL {
                let signer = key.signer(sig_alg);
                if !sig_alg.fits(alg) {
                    assert!(matches!(signer.sign(b"m"), Err(SignError::Failed(_))));
                    continue;
                }
                let sig = signer.sign(b"message").unwrap();
                let mut v = match sig_alg.hash() {
                    Some(HashAlg::Sha256) => {
                        openssl::sign::Verifier::new(MessageDigest::sha256(), &public)
                    }
                    Some(HashAlg::Sha384) => {
                        openssl::sign::Verifier::new(MessageDigest::sha384(), &public)
                    }
                    Some(_) => openssl::sign::Verifier::new(MessageDigest::sha512(), &public),
                    None => openssl::sign::Verifier::new_without_digest(&public),
                }
                .unwrap();
                assert!(
                    v.verify_oneshot(&sig, b"message").unwrap(),
                    "{alg:?} {sig_alg:?}"
                );
            }
        }
    }

    #[test]
    fn keys_outside_the_table_are_refused() {
        let rsa1024 = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        let pem = rsa1024.private_key_to_pem_pkcs8().unwrap();
        let err = SoftKey::from_pem(&pem).err().unwrap().to_string();
        assert!(err.contains("RSA-1024"), "{err}");
        let k1 = EcKey::generate(&EcGroup::from_curve_name(Nid::SECP256K1).unwrap()).unwrap();
        let pem = PKey::from_ec_key(k1)
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap();
        assert!(SoftKey::from_pem(&pem).is_err());
    }
}
