//! `pcad quickstart add-client`: a client certificate from the quickstart's client CA
//! (`tls/ca.pem`/`tls/ca.key`) and its `[[access]]` entry in the quickstart's `pcad.toml`.
//!
//! The demo CA is a demo: in production the client CA (`api.client_ca`) is the organisation's
//! own, and certificates for API users come from it (see pcad(8), "CERTIFICATES").

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use openssl::pkey::PKey;
use openssl::x509::X509;

use super::{make_leaf, sh_quote, toml_string, write_pair, Kind};
use crate::config::{Config, Role};

/// Names used by the quickstart itself.
const RESERVED: [&str; 2] = ["ca", "server"];

fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with('.') {
        return Err(format!(
            "NAME {name:?}: 1 to 64 characters from A-Z a-z 0-9 . _ - (not starting with a dot)"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "NAME {name:?} is the quickstart's own tls/{name}.pem: pick another name"
        ));
    }
    Ok(())
}

fn parse_role(role: &str) -> Result<(&'static str, Role), String> {
    match role.to_ascii_uppercase().as_str() {
        "ADMIN" => Ok(("ADMIN", Role::Admin)),
        "VIEWER" => Ok(("VIEWER", Role::Viewer)),
        _ => Err(format!("--role {role:?}: must be VIEWER or ADMIN")),
    }
}

fn check_appkey(appkey: &str) -> Result<(), String> {
    if appkey.is_empty() || appkey.len() > 128 || appkey.chars().any(|c| c.is_control() || c == '/')
    {
        return Err(format!(
            "--appkey {appkey:?}: 1 to 128 characters, no '/' or control characters (\"*\" means every appkey)"
        ));
    }
    Ok(())
}

/// Mints `dir/tls/NAME.pem|.key` for the identity `name` and adds its `[[access]]` entry.
/// Returns the text to print.
pub fn add_client(dir: &Path, name: &str, role: &str, appkey: &str) -> Result<String, String> {
    check_name(name)?;
    let (role_text, role) = parse_role(role)?;
    check_appkey(appkey)?;
    let dir = fs::canonicalize(dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
    let config_path = dir.join("pcad.toml");
    let tls = dir.join("tls");
    let old = fs::read_to_string(&config_path).map_err(|e| {
        format!(
            "cannot read {}: {e} (is --dir a folder `pcad quickstart` wrote?)",
            config_path.display()
        )
    })?;
    let current =
        Config::parse(&old, &dir).map_err(|e| format!("{}: {e}", config_path.display()))?;
    if current
        .access
        .iter()
        .any(|r| r.identity == name && (r.appkey == appkey || r.appkey == "*" || appkey == "*"))
    {
        return Err(format!(
            "{} already has an [[access]] entry for {name:?} covering appkey {appkey:?}",
            config_path.display()
        ));
    }
    for file in [format!("{name}.pem"), format!("{name}.key")] {
        if tls.join(&file).exists() {
            return Err(format!(
                "{} already exists: pick another NAME",
                tls.join(file).display()
            ));
        }
    }

    let entry = format!(
        "\n# Added by `pcad quickstart add-client`: tls/{name}.pem\n[[access]]\nidentity = {}\nappkey = {}\nrole = \"{role_text}\"\n",
        toml_string(name),
        toml_string(appkey)
    );
    let mut new = old.clone();
    if !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&entry);
    let parsed = Config::parse(&new, &dir).map_err(|e| format!("the new entry: {e}"))?;
    if parsed.role_for_identity(name, if appkey == "*" { "any" } else { appkey }) != Some(role) {
        return Err(format!(
            "the new entry would not grant {role_text} to {name:?}"
        ));
    }

    let read = |file: &str| {
        fs::read(tls.join(file))
            .map_err(|e| format!("cannot read {}: {e}", tls.join(file).display()))
    };
    let ca = X509::from_pem(&read("ca.pem")?).map_err(|e| format!("tls/ca.pem: {e}"))?;
    let ca_key =
        PKey::private_key_from_pem(&read("ca.key")?).map_err(|e| format!("tls/ca.key: {e}"))?;
    let (cert, key) = make_leaf(name, Kind::Client, &ca, &ca_key)
        .map_err(|e| format!("cannot make the client certificate: {e}"))?;
    write_pair(&tls, name, &cert, &key)?;
    replace_file(&config_path, new.as_bytes())?;

    let q = |file: &str| sh_quote(&tls.join(file).display().to_string());
    let api = current.api.listen.port();
    let example_appkey = if appkey == "*" { "demo" } else { appkey };
    Ok(format!(
        "pcad quickstart add-client: wrote {cert} and {key} (CN {name}, from the quickstart CA)\n\
         and added to {config}:\n  [[access]] identity = \"{name}\", appkey = \"{appkey}\", role = \"{role_text}\"\n\
         \nA running pcad reads [[access]] again on SIGHUP (systemctl reload pcad, or kill -HUP its pid).\n\
         Then:\n  curl --cacert {ca} --cert {cert} --key {key} \
         https://localhost:{api}/v2.0/appkeys/{example_appkey}/ca-stores\n",
        cert = q(&format!("{name}.pem")),
        key = q(&format!("{name}.key")),
        config = config_path.display(),
        ca = q("ca.pem"),
    ))
}

/// Replaces `path` with `data` through a new file and a rename, keeping its mode.
fn replace_file(path: &Path, data: &[u8]) -> Result<(), String> {
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o640);
    let tmp = path.with_extension("toml.new");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", parent.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::Command;

    use super::*;
    use crate::quickstart::{run, QuickstartOptions};

    #[test]
    fn mints_a_client_and_grants_its_role() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("qs");
        run(&QuickstartOptions {
            dir: dir.clone(),
            api_port: 18443,
            public_port: 18080,
            module: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
        })
        .unwrap();
        let text = add_client(&dir, "alice", "viewer", "team-a").unwrap();
        assert!(
            text.contains("https://localhost:18443/v2.0/appkeys/team-a/ca-stores"),
            "{text}"
        );
        let config = Config::load(&dir.join("pcad.toml")).unwrap();
        assert_eq!(
            config.role_for_identity("alice", "team-a"),
            Some(Role::Viewer)
        );
        assert_eq!(config.role_for_identity("alice", "team-b"), None);
        let tls = dir.join("tls");
        let out = Command::new("openssl")
            .current_dir(&tls)
            .args([
                "verify",
                "-CAfile",
                "ca.pem",
                "-purpose",
                "sslclient",
                "alice.pem",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mode = |f: &str| fs::metadata(tls.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("alice.key"), 0o600);
        assert_eq!(
            fs::metadata(dir.join("pcad.toml"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );

        // Refusals name what is wrong and change nothing.
        let before = fs::read_to_string(dir.join("pcad.toml")).unwrap();
        for (name, role, appkey, says) in [
            (
                "alice",
                "ADMIN",
                "team-a",
                "already has an [[access]] entry",
            ),
            ("bob", "OWNER", "*", "VIEWER or ADMIN"),
            ("b\"ob", "ADMIN", "*", "NAME"),
            ("server", "ADMIN", "*", "quickstart's own"),
            ("bob", "ADMIN", "a/b", "--appkey"),
        ] {
            let err = add_client(&dir, name, role, appkey).unwrap_err();
            assert!(err.contains(says), "{name}: {err}");
        }
        assert_eq!(fs::read_to_string(dir.join("pcad.toml")).unwrap(), before);
        assert!(!tls.join("bob.pem").exists());
        add_client(&dir, "bob", "ADMIN", "*").unwrap();
        let config = Config::load(&dir.join("pcad.toml")).unwrap();
        assert_eq!(config.role_for_identity("bob", "x"), Some(Role::Admin));
    }
}
