//! Test CAs made with the openssl crate, a software `Signer`, and a runner for the openssl CLI;
//! shared with `ocsp`'s tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Name, X509};

use crate::pki::{SignError, SignatureAlgorithm, Signer};

/// The key types the tests cover.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Rsa2048,
    P256,
    Ed25519,
}

pub const ALL_KINDS: [Kind; 3] = [Kind::Rsa2048, Kind::P256, Kind::Ed25519];

/// A self-signed CA in a scratch directory (kept when `PCAD_KEEP_TEST_FILES` is set).
pub struct TestCa {
    pub key: PKey<Private>,
    pub cert: X509,
    pub alg: SignatureAlgorithm,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl TestCa {
    pub fn new(kind: Kind, with_ski: bool) -> TestCa {
        let (key, alg) = match kind {
            Kind::Rsa2048 => (
                PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
                SignatureAlgorithm::Sha256WithRsa,
            ),
            Kind::P256 => (p256_key(), SignatureAlgorithm::Sha256WithEcdsa),
            Kind::Ed25519 => (
                PKey::generate_ed25519().unwrap(),
                SignatureAlgorithm::Ed25519,
            ),
        };
        let mut name = X509Name::builder().unwrap();
        name.append_entry_by_nid(Nid::COUNTRYNAME, "KR").unwrap();
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "pcad tests")
            .unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, &format!("Test CA {kind:?}"))
            .unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&Asn1Integer::from_bn(&BigNum::from_u32(1).unwrap()).unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(3650).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        let ku = KeyUsage::new()
            .critical()
            .digital_signature()
            .key_cert_sign()
            .crl_sign()
            .build();
        b.append_extension(ku.unwrap()).unwrap();
        if with_ski {
            let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None));
            b.append_extension(ski.unwrap()).unwrap();
        }
        b.sign(&key, digest(alg)).unwrap();
        let cert = b.build();
        let (dir, tmp) = scratch_dir();
        std::fs::write(dir.join("ca.pem"), cert.to_pem().unwrap()).unwrap();
        TestCa {
            key,
            cert,
            alg,
            dir,
            _tmp: tmp,
        }
    }

    pub fn der(&self) -> Vec<u8> {
        self.cert.to_der().unwrap()
    }

    pub fn signer(&self) -> TestSigner<'_> {
        TestSigner {
            key: &self.key,
            alg: self.alg,
        }
    }

    /// A P-256 leaf with this serial (big-endian, positive), written to `{name}.pem`.
    pub fn leaf(&self, name: &str, serial: &[u8]) -> X509 {
        let key = p256_key();
        let mut subject = X509Name::builder().unwrap();
        subject.append_entry_by_nid(Nid::COMMONNAME, name).unwrap();
        let subject = subject.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let serial = Asn1Integer::from_bn(&BigNum::from_slice(serial).unwrap()).unwrap();
        b.set_serial_number(&serial).unwrap();
        b.set_subject_name(&subject).unwrap();
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        if self.cert.subject_key_id().is_some() {
            let ctx = b.x509v3_context(Some(&self.cert), None);
            let aki = AuthorityKeyIdentifier::new()
                .keyid(true)
                .build(&ctx)
                .unwrap();
            b.append_extension(aki).unwrap();
        }
        b.sign(&self.key, digest(self.alg)).unwrap();
        let leaf = b.build();
        self.write(&format!("{name}.pem"), &leaf.to_pem().unwrap());
        leaf
    }

    pub fn write(&self, file: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Runs `openssl args...` in the CA's directory: (success, stdout + stderr).
    pub fn openssl(&self, args: &[&str]) -> (bool, String) {
        openssl_in(&self.dir, args)
    }
}

pub fn openssl_in(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A software key seen as a `Signer`, as the HSM signs: X.509-ready signature bytes.
pub struct TestSigner<'a> {
    pub key: &'a PKey<Private>,
    pub alg: SignatureAlgorithm,
}

impl Signer for TestSigner<'_> {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut signer = match self.alg {
            SignatureAlgorithm::Ed25519 => openssl::sign::Signer::new_without_digest(self.key),
            alg => openssl::sign::Signer::new(digest(alg), self.key),
        }
        .map_err(|e| SignError::Failed(e.to_string()))?;
        signer
            .sign_oneshot_to_vec(message)
            .map_err(|e| SignError::Failed(e.to_string()))
    }
}

fn digest(alg: SignatureAlgorithm) -> MessageDigest {
    match alg.hash() {
        Some(crate::pki::HashAlg::Sha384) => MessageDigest::sha384(),
        Some(crate::pki::HashAlg::Sha512) => MessageDigest::sha512(),
        Some(_) => MessageDigest::sha256(),
        None => MessageDigest::null(),
    }
}

fn p256_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn scratch_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    let tmp = tempfile::Builder::new()
        .prefix("pcad-pki-")
        .tempdir()
        .unwrap();
    if std::env::var_os("PCAD_KEEP_TEST_FILES").is_some() {
        let dir = tmp.keep();
        eprintln!("test files kept in {}", dir.display());
        (dir, None)
    } else {
        (tmp.path().to_path_buf(), Some(tmp))
    }
}
