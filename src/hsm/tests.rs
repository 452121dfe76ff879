//! Tests against a real SoftHSM token (no mocks), one token directory per test binary.
//!
//! PKCS#11 initialisation is process-global and tests run in parallel, so every test shares one
//! fixture; tests that break the device on purpose take `GATE` exclusively, the others share it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::types::AuthPin;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};
use openssl::sign::Verifier;

use super::*;
use crate::pki::HashAlg;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const LABEL: &str = "pcad-hsm-tests";
const PIN: &str = "314159";
/// A second token: wrong-PIN and PIN-changed-while-down cases, so the first stays logged in.
const OTHER_LABEL: &str = "pcad-hsm-tests-2";
const OTHER_PIN: &str = "271828";
const MESSAGE: &[u8] = b"tbsCertificate stand-in";

struct Fixture {
    conf: PathBuf,
    hsm: Hsm,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static GATE: RwLock<()> = RwLock::new(());

/// Records warnings and above from `hsm`, to check that state changes are logged once.
struct Recorder(Mutex<Vec<String>>);

static RECORDER: Recorder = Recorder(Mutex::new(Vec::new()));
/// Whether `RECORDER` is the process's logger (another test module may have installed one).
static RECORDING: OnceLock<bool> = OnceLock::new();

impl log::Log for Recorder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info && metadata.target().starts_with("pcad")
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }

    fn flush(&self) {}
}

fn recording() -> bool {
    *RECORDING.get_or_init(|| {
        let installed = log::set_logger(&RECORDER).is_ok();
        if installed {
            log::set_max_level(log::LevelFilter::Info);
        }
        installed
    })
}

fn logged(needle: &str) -> usize {
    let lines = RECORDER.0.lock().unwrap_or_else(|e| e.into_inner());
    lines.iter().filter(|l| l.contains(needle)).count()
}

/// The shared token and its `Hsm` (both tokens are made before the module is first loaded).
fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let dir = token_dir();
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        init_token(&conf, LABEL, PIN);
        init_token(&conf, OTHER_LABEL, OTHER_PIN);
        let hsm = Hsm::open(&config(&conf, LABEL), Pin::new(PIN.into())).unwrap();
        Fixture { conf, hsm }
    })
}

/// `$TMPDIR/pcad-hsm-tests/<pid>`, removing those of test processes that have ended (a static
/// fixture is never dropped, so each run cleans up after the previous ones).
fn token_dir() -> PathBuf {
    let base = std::env::temp_dir().join("pcad-hsm-tests");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !Path::new("/proc").join(&pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn init_token(conf: &Path, label: &str, pin: &str) {
    let status = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            "1234",
            "--pin",
            pin,
        ])
        .env("SOFTHSM2_CONF", conf)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "softhsm2-util --init-token {label}");
}

fn config(conf: &Path, label: &str) -> HsmConfig {
    HsmConfig {
        module: MODULE.into(),
        token_label: label.into(),
        pin_file: None,
        pin_env: None,
        sessions: 4,
        env: BTreeMap::from([("SOFTHSM2_CONF".into(), conf.display().to_string())]),
    }
}

fn shared() -> (&'static Hsm, RwLockReadGuard<'static, ()>) {
    let gate = GATE.read().unwrap_or_else(|e| e.into_inner());
    (&fixture().hsm, gate)
}

fn exclusive() -> (&'static Fixture, RwLockWriteGuard<'static, ()>) {
    let gate = GATE.write().unwrap_or_else(|e| e.into_inner());
    (fixture(), gate)
}

/// Verifies `signature` over `MESSAGE` with OpenSSL, from the SPKI alone.
fn verify(spki: &PKey<Public>, alg: SignatureAlgorithm, signature: &[u8]) -> bool {
    let digest = |h: HashAlg| match h {
        HashAlg::Sha256 => MessageDigest::sha256(),
        HashAlg::Sha384 => MessageDigest::sha384(),
        _ => MessageDigest::sha512(),
    };
    match alg.hash() {
        Some(h) => {
            let mut verifier = Verifier::new(digest(h), spki).unwrap();
            verifier.update(MESSAGE).unwrap();
            verifier.verify(signature).unwrap()
        }
        None => Verifier::new_without_digest(spki)
            .unwrap()
            .verify_oneshot(signature, MESSAGE)
            .unwrap(),
    }
}

/// Generates `alg`, checks the SPKI, signs with every fitting algorithm, refuses the others.
fn check_algorithm(hsm: &Hsm, alg: KeyAlgorithm) {
    let key = hsm.generate_key(alg, &format!("test {alg:?}")).unwrap();
    assert_eq!(key.id.0.len(), keys::ID_LEN);
    let spki = PKey::public_key_from_der(&key.spki_der).unwrap();
    // OpenSSL re-encodes the same SubjectPublicKeyInfo byte for byte.
    assert_eq!(spki.public_key_to_der().unwrap(), key.spki_der, "{alg:?}");
    match alg.family() {
        KeyFamily::Rsa => {
            assert_eq!(spki.id(), Id::RSA);
            assert_eq!(spki.bits(), alg.key_size());
            assert_eq!(spki.rsa().unwrap().e().to_vec(), vec![1, 0, 1]);
        }
        KeyFamily::Ec => {
            assert_eq!(spki.id(), Id::EC);
            assert_eq!(spki.bits(), alg.key_size());
        }
        KeyFamily::Ed25519 => assert_eq!(spki.id(), Id::ED25519),
    }
    for sig_alg in SignatureAlgorithm::ALL {
        let result = hsm.sign(&key.id, sig_alg, MESSAGE);
        if sig_alg.fits(alg) {
            let signature = result.unwrap();
            assert!(verify(&spki, sig_alg, &signature), "{alg:?} {sig_alg:?}");
            if sig_alg == SignatureAlgorithm::Ed25519 {
                assert_eq!(signature.len(), 64);
            }
        } else {
            assert!(
                matches!(result, Err(HsmError::WrongAlgorithm { .. })),
                "{alg:?} {sig_alg:?} {result:?}"
            );
        }
    }
    hsm.destroy_key(&key.id).unwrap();
}

#[test]
fn rsa_2048_and_3072() {
    let (hsm, _gate) = shared();
    check_algorithm(hsm, KeyAlgorithm::Rsa2048);
    check_algorithm(hsm, KeyAlgorithm::Rsa3072);
}

#[test]
fn rsa_4096() {
    let (hsm, _gate) = shared();
    check_algorithm(hsm, KeyAlgorithm::Rsa4096);
}

#[test]
fn ec_curves() {
    let (hsm, _gate) = shared();
    for alg in [
        KeyAlgorithm::P224,
        KeyAlgorithm::P256,
        KeyAlgorithm::P384,
        KeyAlgorithm::P521,
    ] {
        check_algorithm(hsm, alg);
    }
}

#[test]
fn ed25519() {
    let (hsm, _gate) = shared();
    check_algorithm(hsm, KeyAlgorithm::Ed25519);
}

#[test]
fn signer_trait_and_health() {
    let (hsm, _gate) = shared();
    let key = hsm.generate_key(KeyAlgorithm::P384, "signer").unwrap();
    let signer = hsm.signer(key.id.clone(), SignatureAlgorithm::Sha384WithEcdsa);
    assert_eq!(signer.algorithm(), SignatureAlgorithm::Sha384WithEcdsa);
    let signature = Signer::sign(&signer, MESSAGE).unwrap();
    let spki = PKey::public_key_from_der(&key.spki_der).unwrap();
    assert!(verify(
        &spki,
        SignatureAlgorithm::Sha384WithEcdsa,
        &signature
    ));
    hsm.destroy_key(&key.id).unwrap();
    assert!(matches!(
        Signer::sign(&signer, MESSAGE),
        Err(SignError::Failed(_))
    ));

    assert!(hsm.is_up());
    let health = hsm.health();
    assert!(health.up && health.reason.is_none());
    assert_eq!(health.token_label, LABEL);
    assert_eq!(health.sessions, 4);
}

#[test]
fn private_key_stays_in_the_token() {
    let (hsm, _gate) = shared();
    let key = hsm.generate_key(KeyAlgorithm::P256, "attributes").unwrap();
    let device = hsm.inner.current().unwrap();
    let (private, public) = device
        .run(|s| {
            let find = |class| {
                let template = [Attribute::Class(class), Attribute::Id(key.id.0.clone())];
                s.find_objects(&template).map(|h| h[0])
            };
            let (private, public) = (
                find(ObjectClass::PRIVATE_KEY)?,
                find(ObjectClass::PUBLIC_KEY)?,
            );
            let private = s.get_attributes(
                private,
                &[
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::Sign,
                    AttributeType::Decrypt,
                    AttributeType::Unwrap,
                    AttributeType::Derive,
                    AttributeType::Label,
                    AttributeType::Value,
                ],
            )?;
            let public = s.get_attributes(
                public,
                &[
                    AttributeType::Token,
                    AttributeType::Verify,
                    AttributeType::Encrypt,
                    AttributeType::Wrap,
                ],
            )?;
            Ok((private, public))
        })
        .unwrap();
    for expected in [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::NeverExtractable(true),
        Attribute::AlwaysSensitive(true),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(b"attributes".to_vec()),
    ] {
        assert!(private.contains(&expected), "{expected:?} in {private:?}");
    }
    // The private value is sensitive: it does not come back (or comes back empty).
    for attribute in &private {
        if let Attribute::Value(value) = attribute {
            assert!(value.is_empty());
        }
    }
    for expected in [
        Attribute::Token(true),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
    ] {
        assert!(public.contains(&expected), "{expected:?} in {public:?}");
    }
    hsm.destroy_key(&key.id).unwrap();
}

#[test]
fn destroy_removes_both_halves() {
    let (hsm, _gate) = shared();
    let key = hsm.generate_key(KeyAlgorithm::Ed25519, "doomed").unwrap();
    hsm.sign(&key.id, SignatureAlgorithm::Ed25519, MESSAGE)
        .unwrap(); // caches the handle
    assert!(hsm
        .list_keys()
        .unwrap()
        .iter()
        .any(|k| k.id == key.id && k.label == "doomed" && k.family == Some(KeyFamily::Ed25519)));

    hsm.destroy_key(&key.id).unwrap();
    let device = hsm.inner.current().unwrap();
    let left = device
        .run(|s| Ok(s.find_objects(&[Attribute::Id(key.id.0.clone())])?))
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(!hsm.list_keys().unwrap().iter().any(|k| k.id == key.id));
    hsm.destroy_key(&key.id).unwrap(); // already gone: fine
    let err = hsm
        .sign(&key.id, SignatureAlgorithm::Ed25519, MESSAGE)
        .unwrap_err();
    assert!(matches!(err, HsmError::KeyNotFound(_)), "{err:?}");
    assert!(!err.is_transient());
}

/// A cached handle whose object went away behind pcad's back is dropped and the key looked up
/// again by CKA_ID (here: not found) instead of failing with a handle error.
#[test]
fn stale_handle_is_looked_up_again() {
    let (hsm, _gate) = shared();
    let key = hsm.generate_key(KeyAlgorithm::Ed25519, "stale").unwrap();
    hsm.sign(&key.id, SignatureAlgorithm::Ed25519, MESSAGE)
        .unwrap();
    let device = hsm.inner.current().unwrap();
    device
        .run(|s| {
            let template = [
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(key.id.0.clone()),
            ];
            let _serial = pool::lock(&keys::KEY_MANAGEMENT);
            for handle in s.find_objects(&template)? {
                s.destroy_object(handle)?;
            }
            Ok(())
        })
        .unwrap();
    let err = hsm
        .sign(&key.id, SignatureAlgorithm::Ed25519, MESSAGE)
        .unwrap_err();
    assert!(matches!(err, HsmError::KeyNotFound(_)), "{err:?}");
    assert!(hsm.is_up());
    hsm.destroy_key(&key.id).unwrap();
}

#[test]
fn key_id_hex_and_handle_traits() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Hsm>();
    let id = KeyId(vec![0x00, 0xab, 0x7f, 0xff]);
    assert_eq!(id.to_hex(), "00ab7fff");
    assert_eq!(KeyId::from_hex("00AB7fff"), Some(id));
    assert_eq!(KeyId::from_hex("abc"), None);
    assert_eq!(KeyId::from_hex("zz"), None);
}

#[test]
fn wrong_pin_and_unknown_token() {
    let (_hsm, _gate) = shared();
    let conf = &fixture().conf;
    let err = Hsm::open(&config(conf, OTHER_LABEL), Pin::new("000000".into())).err();
    assert!(matches!(err, Some(HsmError::PinRejected)), "{err:?}");
    let err = Hsm::open(&config(conf, "no such token"), Pin::new(PIN.into())).err();
    assert!(matches!(err, Some(HsmError::TokenNotFound(_))), "{err:?}");
    let mut bad_module = config(conf, LABEL);
    bad_module.module = "/nonexistent/libpkcs11.so".into();
    let err = Hsm::open(&bad_module, Pin::new(PIN.into())).err();
    assert!(err.as_ref().is_some_and(HsmError::is_transient), "{err:?}");
}

/// The library is finalised behind pcad's back (as when the device vanishes): calls fail fast
/// with `Unavailable`, recovery brings the token back and keys are found again by CKA_ID. A
/// second `Hsm` whose PIN was changed meanwhile stops recovering instead of retrying the PIN.
#[test]
fn recovery_after_device_loss() {
    let (fixture, _gate) = exclusive();
    recording();
    let hsm = &fixture.hsm;
    let key = hsm.generate_key(KeyAlgorithm::P256, "survivor").unwrap();
    let spki = PKey::public_key_from_der(&key.spki_der).unwrap();
    let alg = SignatureAlgorithm::Sha256WithEcdsa;
    hsm.sign(&key.id, alg, MESSAGE).unwrap();

    let other = Hsm::open(
        &config(&fixture.conf, OTHER_LABEL),
        Pin::new(OTHER_PIN.into()),
    )
    .unwrap();
    let (old, new) = (
        AuthPin::new(OTHER_PIN.into()),
        AuthPin::new("161803".into()),
    );
    let other_device = other.inner.current().unwrap();
    other_device.run(|s| Ok(s.set_pin(&old, &new)?)).unwrap();
    drop(other_device);

    // Device loss.
    let device = hsm.inner.current().unwrap();
    device.lease().ctx().clone().finalize().unwrap();
    drop(device);

    let err = hsm.sign(&key.id, alg, MESSAGE).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(!hsm.is_up());
    let health = hsm.health();
    assert!(!health.up && health.recovering && health.reason.is_some());
    let started = Instant::now();
    let err = hsm.sign(&key.id, alg, MESSAGE).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(other.list_keys().unwrap_err().is_transient());

    let deadline = Instant::now() + Duration::from_secs(30);
    while !hsm.is_up() || other.health().recovering {
        assert!(Instant::now() < deadline, "no recovery: {:?}", hsm.health());
        std::thread::sleep(Duration::from_millis(50));
    }
    let signature = hsm.sign(&key.id, alg, MESSAGE).unwrap();
    assert!(verify(&spki, alg, &signature));
    hsm.destroy_key(&key.id).unwrap();

    let health = other.health();
    assert!(!health.up && !health.recovering, "{health:?}");
    let err = other.list_keys().unwrap_err();
    assert!(matches!(err, HsmError::PinRejected), "{err:?}");

    if recording() {
        // One line per state change, however many calls failed meanwhile; never the PIN.
        let token = format!("{LABEL:?}");
        assert_eq!(logged(&format!("WARN HSM token {token} is down")), 1);
        assert_eq!(logged(&format!("INFO HSM token {token} is back")), 1);
        assert_eq!(
            logged(&format!("ERROR HSM token {OTHER_LABEL:?} refused the PIN")),
            1
        );
        for secret in [PIN, OTHER_PIN, "161803"] {
            assert_eq!(logged(secret), 0);
        }
    }
}

/// Prints signing rates through `Hsm::sign`, one thread and one per session (no assertions):
/// `cargo test --lib hsm::tests::sign_rate -- --ignored --nocapture`.
#[test]
#[ignore]
fn sign_rate() {
    let (hsm, _gate) = shared();
    let sessions = hsm.health().sessions;
    for (alg, sig_alg) in [
        (KeyAlgorithm::Rsa2048, SignatureAlgorithm::Sha256WithRsa),
        (KeyAlgorithm::P256, SignatureAlgorithm::Sha256WithEcdsa),
        (KeyAlgorithm::Ed25519, SignatureAlgorithm::Ed25519),
    ] {
        let key = hsm.generate_key(alg, "bench").unwrap();
        for threads in [1, sessions] {
            let window = Duration::from_secs(2);
            let started = Instant::now();
            let total: u32 = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut n = 0u32;
                            while started.elapsed() < window {
                                hsm.sign(&key.id, sig_alg, MESSAGE).unwrap();
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap()).sum()
            });
            let rate = f64::from(total) / started.elapsed().as_secs_f64();
            println!("{alg:?} {threads} thread(s): {rate:.0} signatures/s");
        }
        hsm.destroy_key(&key.id).unwrap();
    }
}

#[test]
fn long_rsa_messages_are_prehashed_and_still_verify() {
    let (hsm, _gate) = shared();
    let key = hsm.generate_key(KeyAlgorithm::Rsa2048, "long").unwrap();
    let spki = PKey::public_key_from_der(&key.spki_der).unwrap();
    // Either side of the prehash threshold: the token hashes the first, pcad the others.
    let long: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for alg in [
        SignatureAlgorithm::Sha256WithRsa,
        SignatureAlgorithm::Sha384WithRsa,
        SignatureAlgorithm::Sha512WithRsa,
    ] {
        let signer = hsm.signer(key.id.clone(), alg);
        for message in [&long[..64 * 1024], &long[..64 * 1024 + 1], &long[..]] {
            let signature = Signer::sign(&signer, message).unwrap();
            let md = match alg.hash() {
                Some(HashAlg::Sha256) => MessageDigest::sha256(),
                Some(HashAlg::Sha384) => MessageDigest::sha384(),
                _ => MessageDigest::sha512(),
            };
            let mut verifier = Verifier::new(md, &spki).unwrap();
            verifier.update(message).unwrap();
            assert!(
                verifier.verify(&signature).unwrap(),
                "{alg:?} {}",
                message.len()
            );
        }
    }
    hsm.destroy_key(&key.id).unwrap();
}
