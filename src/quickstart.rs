//! `pcad quickstart`: a SoftHSM token, TLS material and a config that `pcad serve` runs as is.
//!
//! The layout is API.md's "Quickstart layout"; scripts and the end-to-end tests rely on it, so
//! file names and config keys here are part of the contract.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509};
use rand::distributions::{Alphanumeric, DistString};

mod add_client;
pub use add_client::add_client;

/// What `pcad quickstart` was asked for.
#[derive(Clone, Debug)]
pub struct QuickstartOptions {
    pub dir: PathBuf,
    pub api_port: u16,
    pub public_port: u16,
    /// PKCS#11 module; SoftHSM by default.
    pub module: PathBuf,
}

/// Label of the token quickstart creates (and the config names).
const TOKEN_LABEL: &str = "pcad";
/// Validity of the quickstart TLS certificates: about two years, backdated one hour.
const TLS_VALID_DAYS: i64 = 730;
const TLS_BACKDATE_SECS: i64 = 3600;
const INSTALL: &str = "Debian: apt install softhsm2 opensc";

/// Creates the layout of API.md's "Quickstart layout" and returns the text to print.
pub fn run(options: &QuickstartOptions) -> Result<String, String> {
    if options.api_port == 0 || options.public_port == 0 || options.api_port == options.public_port
    {
        return Err("--api-port and --public-port must be two different, non-zero ports".into());
    }
    fs::create_dir_all(&options.dir)
        .map_err(|e| format!("cannot create {}: {e}", options.dir.display()))?;
    let dir = fs::canonicalize(&options.dir)
        .map_err(|e| format!("cannot resolve {}: {e}", options.dir.display()))?;
    refuse_existing(&dir)?;
    if !options.module.exists() {
        return Err(format!(
            "PKCS#11 module {} not found ({INSTALL})",
            options.module.display()
        ));
    }

    let softhsm_conf = dir.join("softhsm2.conf");
    let tokens = dir.join("tokens");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tokens)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .map_err(|e| format!("cannot create {}: {e}", tokens.display()))?;
    write_new(
        &softhsm_conf,
        format!(
            "# SoftHSM2 configuration written by `pcad quickstart`.\n\
             directories.tokendir = {}\n\
             objectstore.backend = file\n\
             log.level = ERROR\n",
            tokens.display()
        )
        .as_bytes(),
        0o644,
    )?;

    let so_pin = random_pin();
    let user_pin = random_pin();
    // Created 0600 in one step: the PIN is never world-readable, not even briefly.
    write_new(
        &dir.join("hsm-pin"),
        format!("{user_pin}\n").as_bytes(),
        0o600,
    )?;
    init_token(&options.module, &softhsm_conf, &so_pin, &user_pin)?;

    write_tls(&dir.join("tls"))?;

    let metrics_port = metrics_port(options);
    let mut config = config_text(&dir, options, metrics_port);
    config.push_str(&write_ncp_keys(&dir.join("ncp"))?);
    write_new(&dir.join("pcad.toml"), config.as_bytes(), 0o640)?;

    let d = dir.display();
    let q = |name: &str| sh_quote(&dir.join(name).display().to_string());
    let api = options.api_port;
    Ok(format!(
        "pcad quickstart: wrote {d}\n\
         \n  SoftHSM token \"{TOKEN_LABEL}\" in {d}/tokens (user PIN in {d}/hsm-pin)\
         \n  API (mutual TLS):     https://localhost:{api}\
         \n  public (CRL, OCSP):   http://127.0.0.1:{public}\
         \n  metrics:              http://127.0.0.1:{metrics_port}/metrics\
         \n\nRun it:\n  {pcad} serve --config {config}\n\
         \nThen, from another shell:\n  \
         curl --cacert {ca} --cert {cert} --key {key} \
         https://localhost:{api}/v2.0/appkeys/demo/ca-stores\n\
         \nAdd an API user (a client certificate from this demo's CA and its [[access]] entry):\n  \
         {pcad} quickstart add-client NAME --role VIEWER --appkey demo --dir {qdir}\n",
        pcad = pcad_command(),
        qdir = sh_quote(&dir.display().to_string()),
        public = options.public_port,
        config = q("pcad.toml"),
        ca = q("tls/ca.pem"),
        cert = q("tls/admin.pem"),
        key = q("tls/admin.key"),
    ))
}

/// How to run this pcad from a shell: `pcad` when that is what PATH finds, else the full path.
pub fn pcad_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(fs::canonicalize) else {
        return "pcad".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("pcad"))
            .find(|p| p.is_file())
            .and_then(|p| fs::canonicalize(p).ok())
            .is_some_and(|p| p == me)
    });
    if on_path {
        "pcad".into()
    } else {
        sh_quote(&me.display().to_string())
    }
}

/// A path as a POSIX shell word (quoted only when it needs to be).
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@,".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Refuses to overwrite an earlier quickstart (or a half-finished one).
fn refuse_existing(dir: &Path) -> Result<(), String> {
    let config = dir.join("pcad.toml");
    if config.exists() {
        return Err(format!(
            "{} already exists: refusing to overwrite it (pick another --dir or remove it)",
            config.display()
        ));
    }
    for name in ["hsm-pin", "softhsm2.conf", "tls"] {
        let path = dir.join(name);
        if path.exists() {
            return Err(format!(
                "{} already exists (left by an earlier quickstart?): pick another --dir or remove it",
                path.display()
            ));
        }
    }
    let tokens = dir.join("tokens");
    if let Ok(mut entries) = fs::read_dir(&tokens) {
        if entries.next().is_some() {
            return Err(format!(
                "{} is not empty: pick another --dir or remove it",
                tokens.display()
            ));
        }
    }
    Ok(())
}

fn random_pin() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 16)
}

/// Initializes the token in the (empty) token folder, with `SOFTHSM2_CONF` given to the child only.
///
/// The PINs never go on a command line: `pkcs11-tool` (OpenSC) reads them from its environment
/// (`env:NAME`), which only this user can read. Without OpenSC, `softhsm2-util` is used instead; it
/// takes PINs only from argv or an interactive terminal (not a pipe), so there they are on the
/// command line of that short-lived child (acceptable for a demo token).
fn init_token(
    module: &Path,
    softhsm_conf: &Path,
    so_pin: &str,
    user_pin: &str,
) -> Result<(), String> {
    const SO: &str = "PCAD_QUICKSTART_SO_PIN";
    const USER: &str = "PCAD_QUICKSTART_PIN";
    let pkcs11_tool = |args: &[&str]| {
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", softhsm_conf)
            .env(SO, so_pin)
            .env(USER, user_pin)
            .arg("--module")
            .arg(module)
            .args(args)
            .output()
    };
    let (so_arg, user_arg) = (format!("env:{SO}"), format!("env:{USER}"));
    // A fresh SoftHSM token folder has exactly one slot: the free one.
    let init = ["--slot-index", "0", "--init-token", "--label", TOKEN_LABEL];
    let output = match pkcs11_tool(&[&init[..], &["--so-pin", &so_arg]].concat()) {
        Ok(output) => {
            check("pkcs11-tool --init-token", &output)?;
            let login = [
                "--token-label",
                TOKEN_LABEL,
                "--login",
                "--login-type",
                "so",
            ];
            let pins = ["--so-pin", &so_arg, "--init-pin", "--new-pin", &user_arg];
            pkcs11_tool(&[&login[..], &pins[..]].concat())
                .map_err(|e| format!("cannot run pkcs11-tool: {e}"))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", softhsm_conf)
            .args(["--init-token", "--free", "--label", TOKEN_LABEL])
            .args(["--so-pin", so_pin, "--pin", user_pin])
            .output()
            .map_err(|e| format!("cannot run pkcs11-tool or softhsm2-util: {e} ({INSTALL})"))?,
        Err(e) => return Err(format!("cannot run pkcs11-tool: {e}")),
    };
    check("token initialization", &output)
}

fn check(what: &str, output: &std::process::Output) -> Result<(), String> {
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {} {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

/// What a quickstart TLS certificate is for.
enum Kind {
    Server,
    Client,
}

/// Writes the quickstart CA, the server certificate and the admin/viewer client certificates.
fn write_tls(tls: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(tls)
        .map_err(|e| format!("cannot create {}: {e}", tls.display()))?;
    let (ca, ca_key) = make_ca().map_err(|e| format!("cannot make the quickstart CA: {e}"))?;
    write_pair(tls, "ca", &ca, &ca_key)?;
    for (name, cn, kind) in [
        ("server", "localhost", Kind::Server),
        ("admin", "pcad-admin", Kind::Client),
        ("viewer", "pcad-viewer", Kind::Client),
    ] {
        let (cert, key) = make_leaf(cn, kind, &ca, &ca_key)
            .map_err(|e| format!("cannot make the {name} certificate: {e}"))?;
        write_pair(tls, name, &cert, &key)?;
    }
    Ok(())
}

fn write_pair(tls: &Path, name: &str, cert: &X509, key: &PKey<Private>) -> Result<(), String> {
    let pem = cert.to_pem().map_err(|e| e.to_string())?;
    let key_pem = key.private_key_to_pem_pkcs8().map_err(|e| e.to_string())?;
    write_new(&tls.join(format!("{name}.key")), &key_pem, 0o600)?;
    write_new(&tls.join(format!("{name}.pem")), &pem, 0o644)
}

type TlsResult<T> = Result<T, openssl::error::ErrorStack>;

fn p256_key() -> TlsResult<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

/// A builder with version 3, a random positive serial, subject CN, validity and public key.
fn builder(cn: &str, key: &PKey<Private>) -> TlsResult<X509Builder> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::ONE, false)?;
    b.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
    let name = cn_name(cn)?;
    b.set_subject_name(&name)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    b.set_not_before(Asn1Time::from_unix((now - TLS_BACKDATE_SECS) as _)?.as_ref())?;
    b.set_not_after(Asn1Time::from_unix((now + TLS_VALID_DAYS * 86_400) as _)?.as_ref())?;
    b.set_pubkey(key)?;
    Ok(b)
}

fn cn_name(cn: &str) -> TlsResult<X509Name> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    Ok(name.build())
}

fn make_ca() -> TlsResult<(X509, PKey<Private>)> {
    let key = p256_key()?;
    let mut b = builder("pcad quickstart CA", &key)?;
    let issuer = cn_name("pcad quickstart CA")?;
    b.set_issuer_name(&issuer)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

fn make_leaf(
    cn: &str,
    kind: Kind,
    ca: &X509,
    ca_key: &PKey<Private>,
) -> TlsResult<(X509, PKey<Private>)> {
    let key = p256_key()?;
    let mut b = builder(cn, &key)?;
    b.set_issuer_name(ca.subject_name())?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    match kind {
        Kind::Server => {
            b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
            let san = SubjectAlternativeName::new()
                .dns("localhost")
                .ip("127.0.0.1")
                .build(&b.x509v3_context(Some(ca), None))?;
            b.append_extension(san)?;
        }
        Kind::Client => {
            b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
        }
    }
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(aki)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

/// The metrics port: 9464 for the default ports, otherwise beside the public port.
fn metrics_port(options: &QuickstartOptions) -> u16 {
    let port = options
        .public_port
        .checked_add(1384)
        .unwrap_or(options.public_port.saturating_sub(1384).max(1));
    if port == options.api_port {
        port.wrapping_add(1).max(1)
    } else {
        port
    }
}

fn config_text(dir: &Path, options: &QuickstartOptions, metrics_port: u16) -> String {
    let softhsm_conf = toml_string(&dir.join("softhsm2.conf").display().to_string());
    let module = toml_string(&options.module.display().to_string());
    let api = options.api_port;
    let public = options.public_port;
    format!(
        r#"# pcad config written by `pcad quickstart` (a demo: every file lives in this folder).
# Relative paths are relative to this file. See packaging/pcad.toml.example for every key.

[hsm]
# PKCS#11 library and the token that holds the issuer keys.
module = {module}
token_label = "{TOKEN_LABEL}"
# The user PIN, in a file of mode 0600.
pin_file = "hsm-pin"
# Set for the module before it is loaded: SoftHSM finds its token folder through it.
env = {{ SOFTHSM2_CONF = {softhsm_conf} }}

[storage]
# Folder of the metadata database (created on first start).
path = "data"

[api]
# Management API over mutual TLS; clients need a certificate from tls/ca.pem.
listen = "127.0.0.1:{api}"
cert = "tls/server.pem"
key = "tls/server.key"
client_ca = "tls/ca.pem"

[public]
# CRL and OCSP over plain HTTP; base_url is written into issued certificates.
listen = "127.0.0.1:{public}"
base_url = "http://127.0.0.1:{public}"

[metrics]
# Prometheus endpoint.
listen = "127.0.0.1:{metrics_port}"

[log]
level = "info"

# Roles by client certificate common name; appkey "*" means every appkey.
[[access]]
identity = "pcad-admin"
appkey = "*"
role = "ADMIN"

[[access]]
identity = "pcad-viewer"
appkey = "*"
role = "VIEWER"
"#
    )
}

/// The NAVER Cloud edition's demo credentials for appkey `demo`: `ncp/{admin,viewer}.access-key`
/// and `.secret-key` (0600); returns their `[[ncp_keys]]` config entries.
fn write_ncp_keys(dir: &Path) -> Result<String, String> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let random = |n: usize, alphabet: &[u8]| -> String {
        (0..n)
            .map(|_| alphabet[rand::random::<usize>() % alphabet.len()] as char)
            .collect()
    };
    let mut text = String::from(
        "\n# NAVER Cloud edition (/api/v1): request-signing keys, each bound to an appkey and a role.\n",
    );
    for (name, role) in [("admin", "ADMIN"), ("viewer", "VIEWER")] {
        let access = random(20, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
        let secret = random(
            40,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        );
        write_new(
            &dir.join(format!("{name}.access-key")),
            format!("{access}\n").as_bytes(),
            0o644,
        )?;
        write_new(
            &dir.join(format!("{name}.secret-key")),
            format!("{secret}\n").as_bytes(),
            0o600,
        )?;
        text.push_str(&format!(
            "[[ncp_keys]]\naccess_key = \"{access}\"\nsecret_file = \"ncp/{name}.secret-key\"\n\
             appkey = \"demo\"\nrole = \"{role}\"\nidentity = \"ncp-{name}\"\n\n"
        ));
    }
    Ok(text)
}

/// A TOML basic string, quoted and escaped.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Creates `path` (which must not exist) with `mode` from the start, and writes `data`.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::{Config, Role};

    const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn quickstart_layout_runs_as_is() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("qs");
        let options = QuickstartOptions {
            dir: dir.clone(),
            api_port: 8443,
            public_port: 8080,
            module: PathBuf::from(SOFTHSM),
        };
        let text = run(&options).unwrap();
        let dir = fs::canonicalize(&dir).unwrap();
        let d = dir.display();
        assert!(
            text.contains(&format!(" serve --config {d}/pcad.toml")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "curl --cacert {d}/tls/ca.pem --cert {d}/tls/admin.pem --key {d}/tls/admin.key \
             https://localhost:8443/v2.0/appkeys/demo/ca-stores"
        )));

        // The config loads, names the token, and its PIN source works.
        let config = Config::load(&dir.join("pcad.toml")).unwrap();
        assert_eq!(config.hsm.token_label, "pcad");
        // The NAVER Cloud edition's demo keys: named by the config, secrets private.
        assert_eq!(config.ncp_keys.len(), 2);
        for (name, role) in [("admin", Role::Admin), ("viewer", Role::Viewer)] {
            let k = config
                .ncp_keys
                .iter()
                .find(|k| k.identity == format!("ncp-{name}"))
                .unwrap();
            assert_eq!((k.appkey.as_str(), k.role), ("demo", role));
            let access = fs::read_to_string(dir.join(format!("ncp/{name}.access-key"))).unwrap();
            assert_eq!(access.trim(), k.access_key);
            assert_eq!(mode(&dir.join(format!("ncp/{name}.secret-key"))), 0o600);
            assert!(config.ncp_secrets.contains_key(&k.access_key));
        }
        assert_eq!(config.hsm.module, Path::new(SOFTHSM));
        assert_eq!(
            config.hsm.env.get("SOFTHSM2_CONF").map(String::as_str),
            Some(dir.join("softhsm2.conf").to_str().unwrap())
        );
        assert_eq!(config.api.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(config.public.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public.base_url, "http://127.0.0.1:8080");
        assert_eq!(config.metrics.listen.unwrap().port(), 9464);
        assert_eq!(config.resolve(&config.storage.path), dir.join("data"));
        assert_eq!(config.resolve(&config.api.cert), dir.join("tls/server.pem"));
        assert_eq!(
            config.role_for_identity("pcad-admin", "x"),
            Some(Role::Admin)
        );
        assert_eq!(
            config.role_for_identity("pcad-viewer", "x"),
            Some(Role::Viewer)
        );
        let pin = config.pin().unwrap();
        assert_eq!(pin.expose().len(), 16);
        assert!(pin.expose().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(!text.contains(pin.expose()));

        // Private files are 0600 and nothing else is writable by others.
        for private in [
            "hsm-pin",
            "tls/ca.key",
            "tls/server.key",
            "tls/admin.key",
            "tls/viewer.key",
        ] {
            assert_eq!(mode(&dir.join(private)), 0o600, "{private}");
        }
        for public in [
            "tls/ca.pem",
            "tls/server.pem",
            "tls/admin.pem",
            "tls/viewer.pem",
        ] {
            assert_eq!(mode(&dir.join(public)) & 0o022, 0, "{public}");
        }
        let conf = fs::read_to_string(dir.join("softhsm2.conf")).unwrap();
        assert!(conf.contains(&format!("directories.tokendir = {d}/tokens")));

        // The token exists and the PIN logs in (through the module the config names).
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
            .args([
                "--module",
                SOFTHSM,
                "--token-label",
                "pcad",
                "--login",
                "--pin",
            ])
            .arg(pin.expose())
            .arg("--list-objects")
            .output()
            .expect("pkcs11-tool (opensc) is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // The TLS material chains and has the usages rustls/webpki need.
        let tls = dir.join("tls");
        let out = Command::new("openssl")
            .current_dir(&tls)
            .args([
                "verify",
                "-CAfile",
                "ca.pem",
                "server.pem",
                "admin.pem",
                "viewer.pem",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("server.pem: OK") && stdout.contains("admin.pem: OK"));
        for (file, purpose) in [
            ("server.pem", "sslserver"),
            ("admin.pem", "sslclient"),
            ("viewer.pem", "sslclient"),
        ] {
            let out = Command::new("openssl")
                .current_dir(&tls)
                .args(["verify", "-CAfile", "ca.pem", "-purpose", purpose, file])
                .output()
                .unwrap();
            assert!(out.status.success(), "{file} for {purpose}");
        }
        let out = Command::new("openssl")
            .current_dir(&tls)
            .args([
                "verify",
                "-CAfile",
                "ca.pem",
                "-verify_hostname",
                "localhost",
            ])
            .args(["-verify_ip", "127.0.0.1", "server.pem"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "server.pem names localhost and 127.0.0.1"
        );
        let admin = X509::from_pem(&fs::read(tls.join("admin.pem")).unwrap()).unwrap();
        let cn = admin
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .unwrap();
        assert_eq!(cn.data().to_string().unwrap(), "pcad-admin");
        let ca = X509::from_pem(&fs::read(tls.join("ca.pem")).unwrap()).unwrap();
        let ca_text = String::from_utf8(ca.to_text().unwrap()).unwrap();
        assert!(ca_text.contains("CA:TRUE"), "{ca_text}");
        assert!(ca_text.contains("Certificate Sign, CRL Sign"), "{ca_text}");
        assert!(ca_text.contains("Subject Key Identifier"), "{ca_text}");

        for server_name in ["localhost", "127.0.0.1"] {
            assert_eq!(
                rustls_handshake(&tls, server_name, "admin").unwrap(),
                "pcad-admin"
            );
            assert_eq!(
                rustls_handshake(&tls, server_name, "viewer").unwrap(),
                "pcad-viewer"
            );
        }

        let err = rustls_handshake(&tls, "example.com", "admin").unwrap_err();
        assert!(err.contains("client:"), "{err}");

        // A second run refuses to overwrite.
        let err = run(&options).unwrap_err();
        assert!(err.contains("pcad.toml already exists"), "{err}");
    }

    /// The quickstart certificates pass rustls/webpki: a mutual-TLS handshake in memory, for
    /// both server names (`localhost`, `127.0.0.1`) and both client certificates.
    fn rustls_handshake(tls: &Path, server_name: &str, client: &str) -> Result<String, String> {
        use std::sync::Arc;

        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use rustls::server::WebPkiClientVerifier;
        use rustls::{
            ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
        };

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = |name: &str| {
            CertificateDer::pem_file_iter(tls.join(name))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        };
        let key = |name: &str| PrivateKeyDer::from_pem_file(tls.join(name)).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(certs("ca.pem").remove(0)).unwrap();
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs("server.pem"), key("server.key"))
            .map_err(|e| e.to_string())?;
        let client_config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                certs(&format!("{client}.pem")),
                key(&format!("{client}.key")),
            )
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let mut c = ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut s = ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()
                .map_err(|e| format!("server: {e}"))?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()
                .map_err(|e| format!("client: {e}"))?;
            if !c.is_handshaking() && !s.is_handshaking() {
                let peer = &s.peer_certificates().ok_or("no client certificate")?[0];
                let peer = X509::from_der(peer).unwrap();
                let cn = peer
                    .subject_name()
                    .entries_by_nid(Nid::COMMONNAME)
                    .next()
                    .unwrap();
                return Ok(cn.data().to_string().unwrap());
            }
        }
        Err("handshake did not finish".into())
    }

    /// packaging/pcad.toml.example parses, also with every commented-out key turned on (so it
    /// names only keys that exist).
    #[test]
    fn example_config_names_real_keys() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/pcad.toml.example");
        let text = fs::read_to_string(path).unwrap();
        let config = Config::parse(&text, Path::new("/etc/pcad")).unwrap();
        assert_eq!(config.storage.path, Path::new("/var/lib/pcad/db"));
        assert!(config.hsm.pin_file.is_none());
        let all_on: String = text
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if rest.starts_with("[[") || is_key_line(rest) => rest,
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let config = Config::parse(&all_on, Path::new("/etc/pcad")).unwrap();
        assert_eq!(config.hsm.pin_env.as_deref(), Some("PCAD_HSM_PIN"));
        assert_eq!(config.hsm.sessions, 8);
        assert_eq!(config.tokens.len(), 1);
        assert_eq!(config.access.len(), 3);
        assert_eq!(config.ncp_keys.len(), 1);
        assert_eq!(config.ncp_destroy_delay(), 72 * 3600);
    }

    fn is_key_line(line: &str) -> bool {
        line.split_once(" = ").is_some_and(|(key, _)| {
            !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("/tmp/a-b_c.d/pcad.toml"), "/tmp/a-b_c.d/pcad.toml");
        assert_eq!(sh_quote("/tmp/my dir/x"), "'/tmp/my dir/x'");
        assert_eq!(sh_quote("/tmp/it's"), "'/tmp/it'\\''s'");
    }

    #[test]
    fn ports_must_differ() {
        let options = QuickstartOptions {
            dir: PathBuf::from("/nonexistent-pcad-quickstart"),
            api_port: 8080,
            public_port: 8080,
            module: PathBuf::from(SOFTHSM),
        };
        assert!(run(&options).unwrap_err().contains("different"));
    }

    #[test]
    fn metrics_port_follows_public_port() {
        let mut options = QuickstartOptions {
            dir: PathBuf::new(),
            api_port: 8443,
            public_port: 8080,
            module: PathBuf::from(SOFTHSM),
        };
        assert_eq!(metrics_port(&options), 9464);
        options.public_port = 65000;
        assert_eq!(metrics_port(&options), 65000 - 1384);
    }
}
