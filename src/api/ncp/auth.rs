//! NCP's request signature: `x-ncp-apigw-timestamp` (ms), `x-ncp-iam-access-key`, and
//! `x-ncp-apigw-signature-v2` or `-v1` = Base64(HMAC-SHA256(secret, METHOD SP request-target LF
//! timestamp LF accessKey)). The request-target is verified exactly as received.

use base64::Engine;
use hyper::{HeaderMap, Method};

use super::envelope::NcpError;
use crate::config::{Config, Role};

/// How far the caller's clock may be off.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// An authenticated NCP caller.
#[derive(Clone, Debug)]
pub struct NcpCaller {
    pub access_key: String,
    pub identity: String,
    pub appkey: String,
    pub role: Role,
}

impl NcpCaller {
    pub fn actor(&self) -> crate::ca::Actor {
        crate::ca::Actor {
            identity: self.identity.clone(),
            appkey: self.appkey.clone(),
        }
    }

    /// Whether `grants` names this caller (by access key or identity).
    pub fn granted(&self, grants: &[String]) -> bool {
        grants
            .iter()
            .any(|g| g == &self.access_key || g == &self.identity)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies the signature; every failure is the gateway's 401 "Authentication Failed" and
/// nothing else is told (which header, which key).
pub fn authenticate(
    config: &Config,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<NcpCaller, NcpError> {
    let fail = NcpError::auth_failed;
    let ts = header(headers, "x-ncp-apigw-timestamp").ok_or_else(fail)?;
    let access_key = header(headers, "x-ncp-iam-access-key").ok_or_else(fail)?;
    let sig = header(headers, "x-ncp-apigw-signature-v2")
        .or_else(|| header(headers, "x-ncp-apigw-signature-v1"))
        .ok_or_else(fail)?;
    if ts.is_empty() || ts.len() > 15 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail());
    }
    let t: i64 = ts.parse().map_err(|_| fail())?;
    if (now_ms - t).abs() > MAX_SKEW_MS {
        return Err(fail());
    }
    let key = config
        .ncp_keys
        .iter()
        .find(|k| k.access_key == access_key)
        .ok_or_else(fail)?;
    let secret = config.ncp_secrets.get(access_key).ok_or_else(fail)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig.trim())
        .map_err(|_| fail())?;
    let message = format!("{} {}\n{}\n{}", method.as_str(), target, ts, access_key);
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes());
    // ring compares in constant time.
    ring::hmac::verify(&k, message.as_bytes(), &sig).map_err(|_| fail())?;
    Ok(NcpCaller {
        access_key: key.access_key.clone(),
        identity: key.identity.clone(),
        appkey: key.appkey.clone(),
        role: key.role,
    })
}

/// A `/v2.0`-style caller on `/api/v1`: a client certificate or bearer token with a role for
/// the appkey named by the `x-pcad-appkey` header. 401 "Authentication Failed" without
/// credentials or that header; 401 "Permission Denied" without a role for that appkey.
pub fn authenticate_v2(
    config: &Config,
    headers: &HeaderMap,
    peer: &crate::api::Peer,
) -> Result<NcpCaller, NcpError> {
    let appkey = header(headers, "x-pcad-appkey")
        .filter(|a| !a.is_empty())
        .ok_or_else(NcpError::auth_failed)?;
    match crate::api::auth_v2(config, headers, peer, appkey) {
        Ok(a) => Ok(NcpCaller {
            access_key: a.identity.clone(),
            identity: a.identity,
            appkey: a.appkey,
            role: a.role,
        }),
        Err(e) if e.status == hyper::StatusCode::FORBIDDEN => Err(NcpError::permission_denied()),
        Err(_) => Err(NcpError::auth_failed()),
    }
}

/// The signature a client sends (tests, the README example).
pub fn sign(secret: &str, method: &str, target: &str, ts: &str, access_key: &str) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(
        &k,
        format!("{method} {target}\n{ts}\n{access_key}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(dir: &std::path::Path) -> Config {
        std::fs::write(dir.join("s"), "sekrit\n").unwrap();
        std::fs::set_permissions(dir.join("s"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = r#"
[hsm]
module = "/x.so"
token_label = "t"
pin_env = "X"
[api]
cert = "c"
key = "k"
client_ca = "ca"
[public]
base_url = "http://127.0.0.1:8080"
[[ncp_keys]]
access_key = "AK1"
secret_file = "s"
appkey = "demo"
role = "VIEWER"
identity = "viewer1"
"#;
        let mut c = Config::parse(text, dir).unwrap();
        c.load_ncp_secrets().unwrap();
        c
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn signature_both_header_names_and_skew() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        assert_eq!(format!("{:?}", c.ncp_secrets["AK1"]), "Secret(<redacted>)");
        let now = 1_700_000_000_000i64;
        let ts = now.to_string();
        let target = "/api/v1/ca?pageNo=1";
        let sig = sign("sekrit", "GET", target, &ts, "AK1");
        for name in ["x-ncp-apigw-signature-v2", "x-ncp-apigw-signature-v1"] {
            let h = headers(&[
                ("x-ncp-apigw-timestamp", ts.clone()),
                ("x-ncp-iam-access-key", "AK1".into()),
                (name, sig.clone()),
            ]);
            let who = authenticate(&c, &Method::GET, target, &h, now).unwrap();
            assert_eq!(who.appkey, "demo");
            assert_eq!(who.role, Role::Viewer);
            // Another method, target, a stale clock: refused.
            assert!(authenticate(&c, &Method::POST, target, &h, now).is_err());
            assert!(authenticate(&c, &Method::GET, "/api/v1/ca", &h, now).is_err());
            assert!(authenticate(&c, &Method::GET, target, &h, now + MAX_SKEW_MS + 1).is_err());
            assert!(authenticate(&c, &Method::GET, target, &h, now - MAX_SKEW_MS).is_ok());
        }
        let h = headers(&[
            ("x-ncp-apigw-timestamp", ts.clone()),
            ("x-ncp-iam-access-key", "AK2".into()),
            ("x-ncp-apigw-signature-v2", sig),
        ]);
        assert!(authenticate(&c, &Method::GET, target, &h, now).is_err());
    }
}
