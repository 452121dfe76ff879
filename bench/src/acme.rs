//! `acme-bench`'s run: ACME orders with http-01 on loopback against a real `pcad serve`, beside
//! the v2.0 SIGN-mode issuance rate of the same daemon and template.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemon::Daemon;
use crate::issue::client::{Conn, Endpoint};
use crate::issue::csr;

const APPKEY: &str = "acme-bench";
/// The command line of `acme-bench`.
pub struct Options {
    pub pcad: PathBuf,
    pub window: Duration,
    pub clients: usize,
    pub accounts: usize,
}

fn b64(d: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(d)
}

/// Starts the daemon with ACME on, sets up a store, template and accounts, and prints the
/// order rate beside the SIGN issuance rate.
pub fn run(o: &Options) -> Result<(), String> {
    let tmp = tempfile::Builder::new()
        .prefix("pcad-acme-bench-")
        .tempdir()
        .map_err(|e| format!("temporary folder: {e}"))?;
    let responder = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let http_port = responder.local_addr().map_err(|e| e.to_string())?.port();
    responder.set_nonblocking(true).map_err(|e| e.to_string())?;
    let daemon = Daemon::start_with(
        &o.pcad,
        tmp.path(),
        &format!("\n[acme]\nhttp_port = {http_port}\n"),
        None,
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = rt.block_on(bench(o, &daemon, responder));
    if result.is_err() {
        eprintln!("daemon log:\n{}", daemon.log_tail());
    }
    result
}

/// Key authorizations by token, served at `/.well-known/acme-challenge/{token}`.
type Answers = Arc<Mutex<HashMap<String, String>>>;

async fn serve_http01(listener: std::net::TcpListener, answers: Answers) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    while let Ok((mut s, _)) = listener.accept().await {
        let answers = answers.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while n < buf.len() {
                match s.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let token = head
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.rsplit('/').next())
                .unwrap_or("")
                .to_owned();
            let body = answers.lock().ok().and_then(|a| a.get(&token).cloned());
            let reply = match body {
                Some(b) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .into(),
            };
            let _ = s.write_all(reply.as_bytes()).await;
        });
    }
}

/// One ACME account: its key, JWK thumbprint and account URL.
struct Account {
    key: EcdsaKeyPair,
    thumbprint: String,
    kid: String,
}

fn new_key() -> Result<(EcdsaKeyPair, Value, String), String> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| e.to_string())?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|e| e.to_string())?;
    let pk = key.public_key().as_ref();
    let (x, y) = (b64(&pk[1..33]), b64(&pk[33..65]));
    let canon = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let thumb = b64(ring::digest::digest(&ring::digest::SHA256, canon.as_bytes()).as_ref());
    Ok((
        key,
        json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}),
        thumb,
    ))
}

/// An ACME session over one keep-alive connection.
struct Session<'a> {
    conn: Conn,
    origin: &'static str,
    nonce: Option<String>,
    acct: &'a Account,
}

impl Session<'_> {
    async fn post(
        &mut self,
        path: &str,
        payload: Option<&Value>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
        if self.nonce.is_none() {
            let (_, h, _) = self
                .conn
                .request(Method::HEAD, &nonce_path(path), "text/plain", Bytes::new())
                .await?;
            self.nonce = nonce_of(&h);
        }
        let protected = json!({
            "alg": "ES256",
            "kid": self.acct.kid,
            "nonce": self.nonce.take().ok_or("no nonce")?,
            "url": format!("{}{path}", self.origin),
        });
        let body = sign(&self.acct.key, &protected, payload)?;
        let (status, headers, body) = self
            .conn
            .request(
                Method::POST,
                path,
                "application/jose+json",
                Bytes::from(body),
            )
            .await?;
        self.nonce = nonce_of(&headers);
        if !status.is_success() {
            return Err(format!(
                "POST {path}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok((status, headers, body))
    }
}

fn nonce_path(path: &str) -> String {
    // `/acme/v2.0/cert/{id}/...` -> `/acme/v2.0/cert/{id}/new-nonce`
    let parts: Vec<&str> = path.splitn(6, '/').collect();
    format!(
        "/{}/{}/{}/{}/new-nonce",
        parts[1], parts[2], parts[3], parts[4]
    )
}

fn nonce_of(h: &hyper::HeaderMap) -> Option<String> {
    h.get("replay-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn sign(key: &EcdsaKeyPair, protected: &Value, payload: Option<&Value>) -> Result<String, String> {
    let p = b64(protected.to_string().as_bytes());
    let pl = payload
        .map(|v| b64(v.to_string().as_bytes()))
        .unwrap_or_default();
    let sig = key
        .sign(&SystemRandom::new(), format!("{p}.{pl}").as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(json!({"protected": p, "payload": pl, "signature": b64(sig.as_ref())}).to_string())
}

fn path_of(url: &str) -> String {
    url.strip_prefix("https://localhost")
        .unwrap_or(url)
        .to_owned()
}

fn json_of(b: &Bytes) -> Result<Value, String> {
    serde_json::from_slice(b).map_err(|e| format!("not JSON: {e}"))
}

/// A P-256 CSR for `localhost` (SAN), DER.
fn acme_csr() -> Result<Vec<u8>, String> {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::stack::Stack;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::X509ReqBuilder;
    let e = |e: openssl::error::ErrorStack| e.to_string();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(e)?;
    let key = PKey::from_ec_key(EcKey::generate(&group).map_err(e)?).map_err(e)?;
    let mut b = X509ReqBuilder::new().map_err(e)?;
    b.set_pubkey(&key).map_err(e)?;
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .build(&b.x509v3_context(None))
        .map_err(e)?;
    let mut exts = Stack::new().map_err(e)?;
    exts.push(san).map_err(e)?;
    b.add_extensions(&exts).map_err(e)?;
    b.sign(&key, openssl::hash::MessageDigest::sha256())
        .map_err(e)?;
    b.build().to_der().map_err(e)
}

/// One order, start to certificate.
async fn one_order(s: &mut Session<'_>, dir: &str, answers: &Answers) -> Result<(), String> {
    let (_, h, body) = s
        .post(
            &format!("{dir}/new-order"),
            Some(&json!({"identifiers": [{"type": "dns", "value": "localhost"}]})),
        )
        .await?;
    h.get("location").ok_or("newOrder: no Location")?;
    let order = json_of(&body)?;
    let authz_path = path_of(
        order["authorizations"][0]
            .as_str()
            .ok_or("no authorization")?,
    );
    let authz = json_of(&s.post(&authz_path, None).await?.2)?;
    let ch = authz["challenges"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "http-01"))
        .ok_or("no http-01 challenge")?;
    let token = ch["token"].as_str().ok_or("no token")?;
    answers
        .lock()
        .map_err(|_| "poisoned")?
        .insert(token.to_owned(), format!("{token}.{}", s.acct.thumbprint));
    s.post(
        &path_of(ch["url"].as_str().ok_or("no url")?),
        Some(&json!({})),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let z = json_of(&s.post(&authz_path, None).await?.2)?;
        match z["status"].as_str() {
            Some("valid") => break,
            Some("pending") if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            other => return Err(format!("authorization {other:?}: {z}")),
        }
    }
    answers.lock().map_err(|_| "poisoned")?.remove(token);
    let csr = acme_csr()?;
    let fin = json_of(
        &s.post(
            &path_of(order["finalize"].as_str().ok_or("no finalize")?),
            Some(&json!({"csr": b64(&csr)})),
        )
        .await?
        .2,
    )?;
    let cert = fin["certificate"]
        .as_str()
        .ok_or(format!("no certificate: {fin}"))?;
    let (_, _, pem) = s.post(&path_of(cert), None).await?;
    if !pem.starts_with(b"-----BEGIN CERTIFICATE-----") {
        return Err("the certificate is not PEM".into());
    }
    Ok(())
}

/// What the clients of one run did.
#[derive(Default)]
struct Stats {
    done: usize,
    errors: usize,
    latencies_ms: Vec<f64>,
    first_error: Option<String>,
}

impl Stats {
    /// Counts one request started at `t`; true when it failed.
    fn record<T>(&mut self, r: Result<T, String>, t: Instant) -> bool {
        match r {
            Ok(_) => {
                self.done += 1;
                self.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                false
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
                true
            }
        }
    }

    /// The sum of the clients' stats.
    async fn gather(tasks: Vec<tokio::task::JoinHandle<Stats>>) -> Result<Stats, String> {
        let mut all = Stats::default();
        for t in tasks {
            let st = t.await.map_err(|e| e.to_string())?;
            all.done += st.done;
            all.errors += st.errors;
            all.latencies_ms.extend(st.latencies_ms);
            if all.first_error.is_none() {
                all.first_error = st.first_error;
            }
        }
        Ok(all)
    }
}

fn report(label: &str, s: &Stats, window: Duration) -> f64 {
    let mut l = s.latencies_ms.clone();
    l.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        if l.is_empty() {
            0.0
        } else {
            l[((l.len() - 1) as f64 * q).round() as usize]
        }
    };
    let mean = if l.is_empty() {
        0.0
    } else {
        l.iter().sum::<f64>() / l.len() as f64
    };
    let rate = s.done as f64 / window.as_secs_f64();
    println!(
        "{label:<28} {rate:>8.1}/s  mean {mean:>7.1} ms  p50 {:>7.1} ms  p99 {:>7.1} ms  errors {}",
        pct(0.5),
        pct(0.99),
        s.errors
    );
    if let Some(e) = &s.first_error {
        println!("  first error: {e}");
    }
    rate
}

async fn bench(
    o: &Options,
    daemon: &Daemon,
    responder: std::net::TcpListener,
) -> Result<(), String> {
    let endpoint = Arc::new(Endpoint::new(&daemon.dir, daemon.api_port)?);
    let mut admin = Conn::open(&endpoint).await?;
    let stores = format!("/v2.0/appkeys/{APPKEY}/ca-stores");
    let store = json!({"name": "acme-bench", "ocspActive": true});
    let sid = admin.post_id(&stores, &store, "caStoreId").await?;
    let base = format!("{stores}/{sid}");
    let root = json!({
        "name": "acme bench root", "certificateType": "ROOT",
        "keyInfo": {"algorithm": "EC", "keySize": 256},
        "signatureAlgorithm": "SHA256_WITH_ECDSA",
        "subjectInfo": {"commonName": "ACME Bench Root CA"}, "ttlValue": 315_360_000});
    let root = admin
        .post_id(&format!("{base}/certs"), &root, "certId")
        .await?;
    let template_body = json!({
        "name": "acme bench leaves", "parentCertId": root, "maxTTL": 86_400,
        "keyInfo": {"algorithm": "EC", "keySize": 256}, "storeInServer": true,
        "keyUsage": ["DIGITAL_SIGNATURE"], "extendedKeyUsage": ["SERVER_AUTHENTICATION"]});
    let template = format!("{base}/templates");
    let template = admin
        .post_id(&template, &template_body, "templateId")
        .await?;
    let issue_path = format!("{base}/templates/{template}/certificates");
    let leaf = json!({"mode": "GENERATE", "commonName": "localhost", "ttlValue": 86_400});
    let base_cert = admin.post_id(&issue_path, &leaf, "certId").await?;
    let dir: &'static str = Box::leak(format!("/acme/v2.0/cert/{base_cert}").into_boxed_str());

    // Accounts, each bound by its own EAB token.
    let mut accounts = Vec::new();
    for i in 0..o.accounts {
        let tok = admin
            .api(
                Method::POST,
                &format!("{base}/certs/{base_cert}/acme-tokens"),
                &json!({"name": format!("bench {i}")}),
            )
            .await?;
        let (key, jwk, thumbprint) = new_key()?;
        let kid = tok["tokenId"].as_str().ok_or("no tokenId")?;
        let hmac_key = URL_SAFE_NO_PAD
            .decode(tok["hmacKey"].as_str().ok_or("no hmacKey")?)
            .map_err(|e| e.to_string())?;
        let url = format!("https://localhost{dir}/new-account");
        let eab_p = b64(json!({"alg": "HS256", "kid": kid, "url": url})
            .to_string()
            .as_bytes());
        let eab_pl = b64(jwk.to_string().as_bytes());
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &hmac_key),
            format!("{eab_p}.{eab_pl}").as_bytes(),
        );
        let (_, h, _) = admin
            .request(
                Method::HEAD,
                &format!("{dir}/new-nonce"),
                "text/plain",
                Bytes::new(),
            )
            .await?;
        let protected = json!({"alg": "ES256", "jwk": jwk, "nonce": nonce_of(&h), "url": url});
        let payload = json!({"termsOfServiceAgreed": true, "contact": ["mailto:bench@example.com"],
            "externalAccountBinding": {"protected": eab_p, "payload": eab_pl, "signature": b64(mac.as_ref())}});
        let (status, h, body) = admin
            .request(
                Method::POST,
                &format!("{dir}/new-account"),
                "application/jose+json",
                Bytes::from(sign(&key, &protected, Some(&payload))?),
            )
            .await?;
        if status != StatusCode::CREATED {
            return Err(format!(
                "newAccount: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let kid = h
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or("no account URL")?
            .to_owned();
        accounts.push(Arc::new(Account {
            key,
            thumbprint,
            kid,
        }));
    }

    let answers: Answers = Arc::new(Mutex::new(HashMap::new()));
    tokio::spawn(serve_http01(responder, answers.clone()));

    println!(
        "pcad acme-bench: {} clients, {} accounts, {} s per run, one daemon on loopback",
        o.clients,
        o.accounts,
        o.window.as_secs()
    );

    // ACME orders.
    let deadline = Instant::now() + o.window;
    let mut tasks = Vec::new();
    for c in 0..o.clients {
        let acct = accounts[c % accounts.len()].clone();
        let endpoint = endpoint.clone();
        let answers = answers.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = Stats::default();
            let conn = match Conn::open(&endpoint).await {
                Ok(c) => c,
                Err(e) => {
                    st.record(Err::<(), _>(e), Instant::now());
                    return st;
                }
            };
            let mut s = Session {
                conn,
                origin: "https://localhost",
                nonce: None,
                acct: &acct,
            };
            while Instant::now() < deadline {
                let t = Instant::now();
                if st.record(one_order(&mut s, dir, &answers).await, t) {
                    s.nonce = None;
                }
            }
            st
        }));
    }
    let acme = Stats::gather(tasks).await?;
    let acme_rate = report("ACME orders (http-01)", &acme, o.window);

    // The v2.0 SIGN reference: the same template, same clients, same window.
    let csrs = Arc::new(csr::p256_csrs(256)?);
    let deadline = Instant::now() + o.window;
    let mut tasks = Vec::new();
    for c in 0..o.clients {
        let endpoint = endpoint.clone();
        let csrs = csrs.clone();
        let path = issue_path.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = Stats::default();
            let mut conn = match Conn::open(&endpoint).await {
                Ok(c) => c,
                Err(e) => {
                    st.record(Err::<(), _>(e), Instant::now());
                    return st;
                }
            };
            let mut i = c;
            while Instant::now() < deadline {
                let (cn, pem) = &csrs[i % csrs.len()];
                i += 1;
                let body = json!({"mode": "SIGN", "csr": pem, "commonName": cn, "ttlValue": 3600});
                let t = Instant::now();
                st.record(conn.api(Method::POST, &path, &body).await, t);
            }
            st
        }));
    }
    let sign = Stats::gather(tasks).await?;
    let sign_rate = report("v2.0 SIGN issuance", &sign, o.window);
    if sign_rate > 0.0 {
        println!("ACME orders / SIGN issuances: {:.2}", acme_rate / sign_rate);
    }
    Ok(())
}
