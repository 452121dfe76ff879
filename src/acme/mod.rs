//! The ACME server (RFC 8555): one directory per base certificate (ACME.md). A thin protocol
//! layer: JWS checks, nonces, accounts with external account binding, orders, authorizations,
//! challenge validation, and finalize through `Ca::issue_leaf` (the template issuance path),
//! revocation through `Ca::revoke`. The HTTP side (`api::acme`) hands requests in as
//! `Request` and writes `Response` out; state lives in the store's ACME trees.

pub mod jws;
mod names;
mod problem;
mod tokens;
mod validate;

pub use problem::Problem;
pub use tokens::{create_token, delete_token, list_tokens};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::ca::{Actor, Ca, LeafMode, LeafParams, Validity};
use crate::clock::now;
use crate::config::AcmeConfig;
use crate::pki::cert::Sans;
use crate::store::{
    AcmeAccount, AcmeAuthz, AcmeChallenge, AcmeIdentifier, AcmeOrder, CertRecord, CertType,
};
use jws::{b64, unb64, Jwk, RawJws};

/// Lifetime of a pending authorization and of an order.
pub const PENDING_LIFETIME: i64 = 7 * 86400;
/// Pending (or ready) orders one account may hold; beyond: `rateLimited`.
pub const MAX_PENDING_ORDERS: usize = 100;
/// newAccount requests per second per directory, and the burst allowed.
pub const NEW_ACCOUNT_RATE: f64 = 10.0;
pub const NEW_ACCOUNT_BURST: f64 = 50.0;
/// The `running` entry of an order being finalized (challenges use their index).
const FINALIZING: usize = usize::MAX;
/// Validations running at once.
const MAX_VALIDATIONS: usize = 64;

/// One ACME request as the HTTP layer received it.
pub struct Request<'a> {
    /// `GET`, `HEAD`, `POST`, ...
    pub method: &'a str,
    /// `https://{host}/acme/v2.0/cert/{certId}`: the prefix of every URL of the directory.
    pub base: String,
    pub cert_id: u64,
    /// The path after the base and its `/`, e.g. `new-order`.
    pub rest: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// The answer, before it becomes an HTTP response.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn json(status: u16, v: &Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: vec![],
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: "text/plain",
            headers: vec![],
            body: vec![],
        }
    }

    fn with(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }

    fn problem(p: &Problem) -> Response {
        let mut r = Response::json(p.status, &p.to_json());
        r.content_type = "application/problem+json";
        if let Some(l) = &p.location {
            r.headers.push(("location", l.clone()));
        }
        if p.kind == "rateLimited" {
            r.headers.push(("retry-after", "60".into()));
        }
        r
    }
}

/// The ACME server, shared by every connection.
#[derive(Clone)]
pub struct Acme {
    inner: Arc<Inner>,
}

struct Inner {
    ca: Ca,
    cfg: AcmeConfig,
    /// Serializes read-modify-write of orders and authorizations (never held across I/O).
    lock: Mutex<()>,
    validations: tokio::sync::Semaphore,
    /// Challenges being validated, and orders being finalized, by this process: a challenge
    /// or order left `processing` by a restart is taken up again when its client asks.
    running: Mutex<std::collections::HashSet<(u64, usize)>>,
    /// newAccount token buckets by directory: (tokens, last refill).
    account_buckets: Mutex<HashMap<u64, (f64, std::time::Instant)>>,
}

/// Who signed a request.
enum Signer {
    Account(AcmeAccount),
    Key(Jwk),
}

/// A verified POST.
struct Post {
    signer: Signer,
    /// The request URL (`base/rest`).
    url: String,
    /// Empty for POST-as-GET.
    payload: Vec<u8>,
}

impl Post {
    fn account(&self) -> Result<&AcmeAccount, Problem> {
        match &self.signer {
            Signer::Account(a) => Ok(a),
            Signer::Key(_) => Err(Problem::malformed(
                "protected: this resource needs kid (an account URL), not jwk",
            )),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Problem> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| Problem::malformed(format!("payload: {e}")))
    }

    fn is_get(&self) -> bool {
        self.payload.is_empty()
    }
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn id_of(s: &str) -> Option<u64> {
    s.parse::<u64>()
        .ok()
        .filter(|v| *v > 0 && s.bytes().all(|b| b.is_ascii_digit()))
}

impl Acme {
    pub fn new(ca: Ca, cfg: AcmeConfig) -> Acme {
        Acme {
            inner: Arc::new(Inner {
                ca,
                cfg,
                lock: Mutex::new(()),
                validations: tokio::sync::Semaphore::new(MAX_VALIDATIONS),
                running: Mutex::new(std::collections::HashSet::new()),
                account_buckets: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn ca(&self) -> &Ca {
        &self.inner.ca
    }

    fn running(&self, key: (u64, usize)) -> bool {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every write so far durable, off the executor.
    async fn durable(&self) -> Result<(), Problem> {
        let ca = self.ca().clone();
        tokio::task::spawn_blocking(move || ca.db.durable())
            .await
            .map_err(|e| Problem::server(format!("task failed: {e}")))?
            .map_err(Problem::from)
    }

    /// Answers one request: every answer, errors included, carries a fresh nonce.
    pub async fn serve(&self, req: Request<'_>) -> Response {
        let mut resp = match self.route(&req).await {
            Ok(r) => r,
            Err(p) => Response::problem(&p),
        };
        resp.headers
            .push(("link", format!("<{}/directory>;rel=\"index\"", req.base)));
        self.finish(resp)
    }

    /// A problem found before a request could be routed (a bad path or Host), with its nonce.
    pub fn refuse(&self, p: &Problem) -> Response {
        self.finish(Response::problem(p))
    }

    fn finish(&self, mut resp: Response) -> Response {
        match self.ca().db.new_acme_nonce(now()) {
            Ok(n) => resp.headers.push(("replay-nonce", b64(&n))),
            Err(e) => log::error!("acme: could not store a nonce: {e}"),
        }
        resp.headers.push(("cache-control", "no-store".into()));
        resp
    }

    /// newAccount attempts per directory: a token bucket (NEW_ACCOUNT_RATE per second, bursts
    /// of NEW_ACCOUNT_BURST). Beyond it: `rateLimited`, before any work.
    fn account_attempt(&self, base_cert_id: u64) -> Result<(), Problem> {
        let mut buckets = self
            .inner
            .account_buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let t = std::time::Instant::now();
        if buckets.len() > 10_000 {
            buckets.retain(|_, (_, at)| t.duration_since(*at).as_secs() < 60);
        }
        let (tokens, at) = buckets
            .entry(base_cert_id)
            .or_insert((NEW_ACCOUNT_BURST, t));
        *tokens = (*tokens + t.duration_since(*at).as_secs_f64() * NEW_ACCOUNT_RATE)
            .min(NEW_ACCOUNT_BURST);
        *at = t;
        if *tokens < 1.0 {
            return Err(Problem::new(
                "rateLimited",
                429,
                format!(
                    "too many newAccount requests for this directory (at most {NEW_ACCOUNT_RATE}/s, bursts of {NEW_ACCOUNT_BURST})"
                ),
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }

    /// The base certificate of a directory: a stored leaf issued with a template.
    fn base_cert(&self, cert_id: u64) -> Result<CertRecord, Problem> {
        match self.ca().db.cert_by_id(cert_id)? {
            Some(c) if c.cert_type == CertType::Leaf && c.template_id.is_some() => Ok(c),
            _ => Err(Problem::not_found(format!(
                "certificate {cert_id} has no ACME directory (not a stored leaf issued with a template)"
            ))),
        }
    }

    async fn route(&self, req: &Request<'_>) -> Result<Response, Problem> {
        let base = self.base_cert(req.cert_id)?;
        let b = &req.base;
        match (req.method, req.rest) {
            ("GET" | "HEAD", "directory") => Ok(Response::json(
                200,
                &json!({
                    "newNonce": format!("{b}/new-nonce"),
                    "newAccount": format!("{b}/new-account"),
                    "newOrder": format!("{b}/new-order"),
                    "revokeCert": format!("{b}/revoke-cert"),
                    "keyChange": format!("{b}/key-change"),
                    "meta": {"externalAccountRequired": true},
                }),
            )),
            ("HEAD", "new-nonce") => Ok(Response::empty(200)),
            ("GET", "new-nonce") => Ok(Response::empty(204)),
            ("POST", _) => {
                if req.rest == "new-account" {
                    self.account_attempt(base.id)?;
                }
                let post = self.verify(req, &base)?;
                self.post(req, &base, post).await
            }
            (_, "directory" | "new-nonce") => Err(Problem::new(
                "malformed",
                405,
                format!("{} is not allowed on {}", req.method, req.rest),
            )),
            _ => Err(Problem::new(
                "malformed",
                405,
                "ACME resources other than the directory and newNonce take POST",
            )),
        }
    }

    /// Every check of RFC 8555 §6.2-6.5 on a POST.
    fn verify(&self, req: &Request<'_>, base: &CertRecord) -> Result<Post, Problem> {
        let ct = req.content_type.unwrap_or("");
        if ct.split(';').next().map(str::trim) != Some("application/jose+json") {
            return Err(Problem::new(
                "malformed",
                415,
                format!("Content-Type: must be application/jose+json, got {ct:?}"),
            ));
        }
        let jws = RawJws::parse(req.body)?;
        let h = jws.header()?;
        if !jws::supported_alg(&h.alg) {
            return Err(Problem::new(
                "badSignatureAlgorithm",
                400,
                format!(
                    "protected.alg: {:?} is not one of ES256, ES384, RS256, EdDSA",
                    h.alg
                ),
            ));
        }
        let nonce = h
            .nonce
            .as_deref()
            .ok_or_else(|| Problem::new("badNonce", 400, "protected.nonce: required"))?;
        let raw = unb64("protected.nonce", nonce)
            .map_err(|_| Problem::new("badNonce", 400, "protected.nonce: not base64url"))?;
        if !self.ca().db.take_acme_nonce(&raw, now())? {
            return Err(Problem::new(
                "badNonce",
                400,
                "protected.nonce: unknown, already used or expired; use the Replay-Nonce of this answer",
            ));
        }
        let url = format!("{}/{}", req.base, req.rest);
        match h.url.as_deref() {
            None => return Err(Problem::malformed("protected.url: required")),
            Some(u) if u != url => {
                return Err(Problem::unauthorized(format!(
                    "protected.url: {u:?} is not the request URL {url:?}"
                )))
            }
            Some(_) => {}
        }
        let signer = match (&h.jwk, &h.kid) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(Problem::malformed(
                    "protected: exactly one of jwk and kid is required",
                ))
            }
            (Some(jwk), None) => {
                if !matches!(req.rest, "new-account" | "revoke-cert") {
                    return Err(Problem::malformed(format!(
                        "protected.jwk: {} needs kid (an account URL)",
                        req.rest
                    )));
                }
                let key = Jwk::parse(jwk)?;
                jws.verify(&h.alg, &key)?;
                Signer::Key(key)
            }
            (None, Some(kid)) => {
                if req.rest == "new-account" {
                    return Err(Problem::malformed(
                        "protected.kid: newAccount needs jwk (the new account's key)",
                    ));
                }
                let acct = kid
                    .strip_prefix(&format!("{}/acct/", req.base))
                    .and_then(id_of)
                    .map(|id| self.ca().db.acme_account(id))
                    .transpose()?
                    .flatten()
                    .filter(|a| a.base_cert_id == base.id)
                    .ok_or_else(|| {
                        Problem::new(
                            "accountDoesNotExist",
                            400,
                            format!("protected.kid: {kid:?} is no account of this directory"),
                        )
                    })?;
                let key = Jwk::parse(&acct.jwk)?;
                jws.verify(&h.alg, &key)?;
                if acct.status != "valid" {
                    return Err(Problem::unauthorized(format!(
                        "account {} is {}",
                        acct.id, acct.status
                    )));
                }
                Signer::Account(acct)
            }
        };
        Ok(Post {
            signer,
            url,
            payload: jws.payload()?,
        })
    }

    async fn post(
        &self,
        req: &Request<'_>,
        base: &CertRecord,
        post: Post,
    ) -> Result<Response, Problem> {
        let b = &req.base;
        let parts: Vec<&str> = req.rest.split('/').collect();
        match parts.as_slice() {
            ["new-account"] => self.new_account(b, base, post).await,
            ["new-order"] => self.new_order(b, base, post).await,
            ["key-change"] => self.key_change(b, base, post).await,
            ["revoke-cert"] => self.revoke(base, post).await,
            ["acct", id] => self.account(b, id_of(id), post).await,
            ["acct", _, "orders"] | ["order", _] | ["certificate", _] if !post.is_get() => Err(
                Problem::malformed("payload: must be empty (POST-as-GET) for this resource"),
            ),
            ["acct", id, "orders"] => {
                let a = post.account()?;
                if id_of(id) != Some(a.id) {
                    return Err(Problem::unauthorized("kid: not this account"));
                }
                let ids = self.ca().db.acme_orders_of(a.id)?;
                let urls: Vec<String> = ids.iter().map(|i| format!("{b}/order/{i}")).collect();
                Ok(Response::json(200, &json!({ "orders": urls })))
            }
            ["order", id] => {
                let a = post.account()?;
                let o = self.order_of(a, id_of(id))?;
                Ok(Response::json(200, &order_json(b, &o)))
            }
            ["order", id, "finalize"] => self.finalize(b, base, id_of(id), post).await,
            ["authz", id] => self.authz(b, id_of(id), post).await,
            ["chall", authz, idx] => {
                let idx = idx.parse::<usize>().ok();
                self.challenge(b, id_of(authz), idx, post).await
            }
            ["certificate", id] => self.certificate(id_of(id), post),
            _ => Err(Problem::not_found(format!("no ACME resource {}", req.rest))),
        }
    }

    // ---- accounts ----

    async fn new_account(
        &self,
        b: &str,
        base: &CertRecord,
        post: Post,
    ) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct NewAccount {
            #[serde(default)]
            contact: Vec<String>,
            #[serde(default)]
            only_return_existing: bool,
            external_account_binding: Option<Value>,
        }
        let Signer::Key(key) = &post.signer else {
            return Err(Problem::malformed("protected: newAccount needs jwk"));
        };
        let p: NewAccount = post.json()?;
        let thumb = key.thumbprint();
        if let Some(a) = self.ca().db.acme_account_by_key(base.id, &thumb)? {
            if a.status != "valid" {
                return Err(Problem::unauthorized(format!(
                    "account {} is {}",
                    a.id, a.status
                )));
            }
            return Ok(Response::json(200, &account_json(b, &a))
                .with("location", format!("{b}/acct/{}", a.id)));
        }
        if p.only_return_existing {
            return Err(Problem::new(
                "accountDoesNotExist",
                400,
                "no account has this key",
            ));
        }
        check_contacts(&p.contact)?;
        let eab = p.external_account_binding.ok_or_else(|| {
            Problem::new(
                "externalAccountRequired",
                400,
                "externalAccountBinding: required (an ACME token of this base certificate)",
            )
        })?;
        let token_id = self.check_eab(&eab, &post.url, base, key)?;
        let acct = AcmeAccount {
            id: self.ca().db.next_id()?,
            base_cert_id: base.id,
            appkey: base.appkey.clone(),
            jwk: key.to_value(),
            thumbprint: thumb,
            contact: p.contact,
            status: "valid".into(),
            token_id,
            created_at: now(),
        };
        self.ca()
            .db
            .create_acme_account(&acct)
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(m) => {
                    Problem::unauthorized(format!("externalAccountBinding: {m}"))
                }
                other => other.into(),
            })?;
        self.audit(&acct, "ACME_ACCOUNT_CREATE", base);
        self.durable().await?;
        Ok(Response::json(201, &account_json(b, &acct))
            .with("location", format!("{b}/acct/{}", acct.id)))
    }

    /// Records an audit event with the actor `acme:<account id>` (made durable with the change).
    fn audit(&self, acct: &AcmeAccount, action: &str, base: &CertRecord) {
        let who = actor(acct);
        let target = crate::ca::Target {
            store: Some(base.store_id),
            cert: Some(base.id),
            template: None,
            serial: None,
        };
        if let Err(e) = self.ca().audit(&who, action, target, "SUCCESS") {
            log::error!("acme: audit of {action} failed: {e}");
        }
    }

    /// RFC 8555 §7.3.4: the binding is an HS256 JWS over the account key, by a token of this
    /// base certificate that bound no account yet. Returns the token id.
    fn check_eab(
        &self,
        eab: &Value,
        url: &str,
        base: &CertRecord,
        key: &Jwk,
    ) -> Result<u64, Problem> {
        #[derive(Deserialize)]
        struct EabHeader {
            alg: String,
            kid: String,
            url: String,
            nonce: Option<Value>,
        }
        let inner = RawJws::parse(&serde_json::to_vec(eab).unwrap_or_default())
            .map_err(|p| Problem::malformed(format!("externalAccountBinding: {}", p.detail)))?;
        let raw = unb64("externalAccountBinding.protected", &inner.protected)?;
        let h: EabHeader = serde_json::from_slice(&raw)
            .map_err(|e| Problem::malformed(format!("externalAccountBinding.protected: {e}")))?;
        if h.nonce.is_some() {
            return Err(Problem::malformed(
                "externalAccountBinding.protected.nonce: must be absent",
            ));
        }
        if h.url != url {
            return Err(Problem::unauthorized(
                "externalAccountBinding.protected.url: must be the newAccount URL",
            ));
        }
        let token = id_of(&h.kid)
            .map(|id| self.ca().db.acme_token(id))
            .transpose()?
            .flatten()
            .filter(|t| t.base_cert_id == base.id)
            .ok_or_else(|| {
                Problem::unauthorized(format!(
                    "externalAccountBinding.kid: {:?} is no ACME token of this base certificate (unknown or deleted)",
                    h.kid
                ))
            })?;
        if token.account_id.is_some() {
            return Err(Problem::unauthorized(format!(
                "externalAccountBinding.kid: token {} already bound an account",
                token.id
            )));
        }
        inner.verify_hmac(&h.alg, &token.hmac_key)?;
        let bound: Value = serde_json::from_slice(&inner.payload()?).map_err(|e| {
            Problem::malformed(format!("externalAccountBinding.payload: not a JWK ({e})"))
        })?;
        if Jwk::parse(&bound)?.thumbprint() != key.thumbprint() {
            return Err(Problem::unauthorized(
                "externalAccountBinding.payload: not the account key of this request",
            ));
        }
        Ok(token.id)
    }

    async fn account(&self, b: &str, id: Option<u64>, post: Post) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        struct Update {
            contact: Option<Vec<String>>,
            status: Option<String>,
        }
        let a = post.account()?;
        if id != Some(a.id) {
            return Err(Problem::unauthorized(
                "kid: the account URL is not the signer's",
            ));
        }
        let mut a = a.clone();
        if !post.is_get() {
            let u: Update = post.json()?;
            if let Some(c) = u.contact {
                check_contacts(&c)?;
                a.contact = c;
            }
            match u.status.as_deref() {
                None | Some("valid") => {}
                Some("deactivated") => a.status = "deactivated".into(),
                Some(other) => {
                    return Err(Problem::malformed(format!(
                        "status: {other:?} (only \"deactivated\" may be asked for)"
                    )))
                }
            }
            self.ca().db.update_acme_account(&a.thumbprint, &a)?;
            if a.status == "deactivated" {
                if let Some(base) = self.ca().db.cert_by_id(a.base_cert_id)? {
                    self.audit(&a, "ACME_ACCOUNT_DEACTIVATE", &base);
                }
            }
            self.durable().await?;
        }
        Ok(
            Response::json(200, &account_json(b, &a))
                .with("location", format!("{b}/acct/{}", a.id)),
        )
    }

    async fn key_change(
        &self,
        b: &str,
        base: &CertRecord,
        post: Post,
    ) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Inner {
            account: String,
            old_key: Value,
        }
        let a = post.account()?.clone();
        let inner = RawJws::parse(&post.payload)?;
        let h = inner.header()?;
        let (Some(jwk), None) = (&h.jwk, &h.kid) else {
            return Err(Problem::malformed(
                "keyChange: the inner JWS must carry jwk (the new key) and no kid",
            ));
        };
        if h.nonce.is_some() {
            return Err(Problem::malformed(
                "keyChange: the inner JWS must not carry a nonce",
            ));
        }
        if h.url.as_deref() != Some(post.url.as_str()) {
            return Err(Problem::malformed(
                "keyChange: the inner url must be the keyChange URL",
            ));
        }
        if !jws::supported_alg(&h.alg) {
            return Err(Problem::new(
                "badSignatureAlgorithm",
                400,
                format!("keyChange: alg {:?}", h.alg),
            ));
        }
        let new_key = Jwk::parse(jwk)?;
        inner.verify(&h.alg, &new_key)?;
        let p: Inner = serde_json::from_slice(&inner.payload()?)
            .map_err(|e| Problem::malformed(format!("keyChange payload: {e}")))?;
        if p.account != format!("{b}/acct/{}", a.id) {
            return Err(Problem::unauthorized(
                "keyChange: account is not the signer's account URL",
            ));
        }
        if Jwk::parse(&p.old_key)?.thumbprint() != a.thumbprint {
            return Err(Problem::unauthorized(
                "keyChange: oldKey is not the account's key",
            ));
        }
        let thumb = new_key.thumbprint();
        if let Some(other) = self.ca().db.acme_account_by_key(base.id, &thumb)? {
            let mut p = Problem::new(
                "conflict",
                409,
                "keyChange: the new key belongs to another account",
            );
            p.location = Some(format!("{b}/acct/{}", other.id));
            return Err(p);
        }
        let old = a.thumbprint.clone();
        let mut a = a;
        a.jwk = new_key.to_value();
        a.thumbprint = thumb;
        self.ca()
            .db
            .update_acme_account(&old, &a)
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(m) => Problem::new("conflict", 409, m),
                other => other.into(),
            })?;
        self.audit(&a, "ACME_KEY_CHANGE", base);
        self.durable().await?;
        Ok(Response::json(200, &account_json(b, &a)))
    }

    // ---- orders ----

    async fn new_order(&self, b: &str, base: &CertRecord, post: Post) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct NewOrder {
            identifiers: Vec<AcmeIdentifier>,
            not_before: Option<String>,
            not_after: Option<String>,
        }
        let a = post.account()?.clone();
        let p: NewOrder = post.json()?;
        if p.not_before.is_some() || p.not_after.is_some() {
            return Err(Problem::malformed(
                "notBefore/notAfter: not supported; the base certificate and template decide the validity",
            ));
        }
        let t = now();
        if base.revocation.is_some() || base.not_after <= t {
            return Err(Problem::unauthorized(format!(
                "base certificate {} is revoked or expired: its directory takes no orders",
                base.id
            )));
        }
        let template = self.template_of(base)?;
        if p.identifiers.is_empty() || p.identifiers.len() > names::MAX_IDENTIFIERS {
            return Err(Problem::malformed(format!(
                "identifiers: 1 to {} required",
                names::MAX_IDENTIFIERS
            )));
        }
        let mut allowed: Vec<names::Allowed> = Vec::new();
        for id in &p.identifiers {
            let ok = names::check(base, template.spec.allow_ip_sans, id)?;
            if !allowed.iter().any(|x| x.identifier == ok.identifier) {
                allowed.push(ok);
            }
        }
        let pending = self.pending_orders(a.id)?;
        if pending >= MAX_PENDING_ORDERS {
            return Err(Problem::new(
                "rateLimited",
                429,
                format!("account {} already has {pending} pending orders (at most {MAX_PENDING_ORDERS})", a.id),
            ));
        }
        let db = &self.ca().db;
        let order_id = db.next_id()?;
        let mut authz_ids = Vec::with_capacity(allowed.len());
        for x in &allowed {
            let kinds: &[&str] = match (x.identifier.kind.as_str(), x.wildcard) {
                (_, true) => &["dns-01"],
                ("ip", _) => &["http-01", "tls-alpn-01"],
                _ => &["http-01", "dns-01", "tls-alpn-01"],
            };
            let value = x
                .identifier
                .value
                .strip_prefix("*.")
                .unwrap_or(&x.identifier.value)
                .to_owned();
            let authz = AcmeAuthz {
                id: db.next_id()?,
                account_id: a.id,
                base_cert_id: base.id,
                order_id,
                identifier: AcmeIdentifier {
                    kind: x.identifier.kind.clone(),
                    value,
                },
                wildcard: x.wildcard,
                status: "pending".into(),
                expires: t + PENDING_LIFETIME,
                challenges: kinds
                    .iter()
                    .map(|k| AcmeChallenge {
                        kind: (*k).into(),
                        token: b64(&rand::random::<[u8; 32]>()),
                        status: "pending".into(),
                        validated: None,
                        error: None,
                    })
                    .collect(),
            };
            db.put_acme_authz(&authz)?;
            authz_ids.push(authz.id);
        }
        let order = AcmeOrder {
            id: order_id,
            account_id: a.id,
            base_cert_id: base.id,
            status: "pending".into(),
            expires: t + PENDING_LIFETIME,
            identifiers: allowed.into_iter().map(|x| x.identifier).collect(),
            authz_ids,
            cert_id: None,
            error: None,
            created_at: t,
        };
        db.put_acme_order(&order)?;
        self.durable().await?;
        Ok(Response::json(201, &order_json(b, &order))
            .with("location", format!("{b}/order/{}", order.id)))
    }

    fn template_of(&self, base: &CertRecord) -> Result<crate::store::TemplateRecord, Problem> {
        let tid = base.template_id.unwrap_or(0);
        self.ca()
            .db
            .template(&base.appkey, base.store_id, tid)?
            .ok_or_else(|| {
                Problem::unauthorized(format!(
                    "template {tid} of base certificate {} no longer exists",
                    base.id
                ))
            })
    }

    /// The account's orders still open, each brought up to date (expired or failed ones leave
    /// the count, and the index, here).
    fn pending_orders(&self, account_id: u64) -> Result<usize, Problem> {
        let _g = self.locked();
        let db = &self.ca().db;
        let mut n = 0;
        for id in db.acme_pending_orders_of(account_id)? {
            if let Some(mut o) = db.acme_order(id)? {
                self.refresh_order(&mut o)?;
                if matches!(o.status.as_str(), "pending" | "ready" | "processing") {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// The order, its status brought up to date, if the account owns it.
    fn order_of(&self, a: &AcmeAccount, id: Option<u64>) -> Result<AcmeOrder, Problem> {
        let _g = self.locked();
        let mut o = id
            .map(|id| self.ca().db.acme_order(id))
            .transpose()?
            .flatten()
            .ok_or_else(|| Problem::not_found("no such order"))?;
        if o.account_id != a.id {
            return Err(Problem::unauthorized(
                "the order belongs to another account",
            ));
        }
        self.refresh_order(&mut o)?;
        Ok(o)
    }

    /// Expiry and the pending → ready / invalid transitions. Call with the lock held.
    fn refresh_order(&self, o: &mut AcmeOrder) -> Result<(), Problem> {
        let db = &self.ca().db;
        let before = o.status.clone();
        let t = now();
        if o.status == "processing" && !self.running((o.id, FINALIZING)) {
            // A finalize that a restart cut short: nothing was answered, so it may run again.
            o.status = "ready".into();
        }
        if matches!(o.status.as_str(), "pending" | "ready") && t > o.expires {
            o.status = "invalid".into();
            o.error = Some(Problem::malformed("the order expired").to_json());
        } else if o.status == "pending" {
            let mut all_valid = true;
            for id in &o.authz_ids {
                let Some(mut a) = db.acme_authz(*id)? else {
                    continue;
                };
                refresh_authz(db, &mut a)?;
                match a.status.as_str() {
                    "valid" => {}
                    "pending" => all_valid = false,
                    other => {
                        o.status = "invalid".into();
                        o.error = Some(
                            a.challenges
                                .iter()
                                .find_map(|c| c.error.clone())
                                .unwrap_or_else(|| {
                                    Problem::unauthorized(format!(
                                        "authorization for {} is {other}",
                                        a.identifier.value
                                    ))
                                    .to_json()
                                }),
                        );
                        all_valid = false;
                        break;
                    }
                }
            }
            if all_valid {
                o.status = "ready".into();
            }
        }
        if o.status != before {
            db.put_acme_order(o)?;
        }
        Ok(())
    }

    async fn finalize(
        &self,
        b: &str,
        base: &CertRecord,
        id: Option<u64>,
        post: Post,
    ) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        struct Finalize {
            csr: String,
        }
        let a = post.account()?.clone();
        let f: Finalize = post.json()?;
        let der = unb64("csr", &f.csr)?;
        let csr = crate::pki::csr::parse_der(&der)
            .map_err(|e| Problem::new("badCSR", 400, e.to_string()))?;
        let template = self.template_of(base)?;
        if !template.spec.store_in_server {
            return Err(Problem::unauthorized(format!(
                "template {} does not store certificates (storeInServer false)",
                template.id
            )));
        }
        let t = now();
        if base.revocation.is_some() || base.not_after <= t {
            return Err(Problem::unauthorized(format!(
                "base certificate {} is revoked or expired",
                base.id
            )));
        }
        let mut order = {
            let _g = self.locked();
            let mut o = self.order_of_locked(&a, id)?;
            if o.status != "ready" {
                return Err(Problem::new(
                    "orderNotReady",
                    403,
                    format!("the order is {}, not ready", o.status),
                ));
            }
            let want: std::collections::BTreeSet<(String, String)> = o
                .identifiers
                .iter()
                .map(|i| (i.kind.clone(), i.value.clone()))
                .collect();
            let got = names::of_csr(&csr)?;
            if got != want {
                return Err(Problem::new(
                    "badCSR",
                    400,
                    format!(
                        "csr: names {:?} are not exactly the order's identifiers {:?}",
                        got.iter().map(|x| &x.1).collect::<Vec<_>>(),
                        want.iter().map(|x| &x.1).collect::<Vec<_>>()
                    ),
                ));
            }
            o.status = "processing".into();
            self.ca().db.put_acme_order(&o)?;
            self.inner
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((o.id, FINALIZING));
            o
        };
        let issuer_end = self
            .ca()
            .db
            .cert(&base.appkey, base.store_id, template.spec.parent_cert_id)?
            .map(|c| c.not_after)
            .unwrap_or(0);
        let mut ttl = base.not_after - base.not_before;
        match (template.spec.max_ttl, template.spec.max_specific_date) {
            (Some(m), _) if m > 0 => ttl = ttl.min(m as i64),
            (None, Some(d)) => ttl = ttl.min(d - t - 60),
            _ => {}
        }
        ttl = ttl.min(issuer_end - t - 60);
        let sans = Sans {
            dns: order
                .identifiers
                .iter()
                .filter(|i| i.kind == "dns")
                .map(|i| i.value.clone())
                .collect(),
            ip: order
                .identifiers
                .iter()
                .filter_map(|i| (i.kind == "ip").then(|| i.value.parse().ok()).flatten())
                .collect(),
            ..Sans::default()
        };
        let common_name = sans.dns.iter().find(|d| d.len() <= 64).cloned();
        let params = LeafParams {
            mode: LeafMode::Sign(Box::new(csr)),
            common_name,
            cn_optional: true,
            validity: Some(Validity::Ttl(ttl.max(1) as u64)),
            exclude_cn_from_sans: false,
            serial_number: None,
            sans,
        };
        let result = if ttl <= 0 {
            Err(Problem::unauthorized(
                "the issuer or the template leaves no validity",
            ))
        } else {
            let ca = self.ca().clone();
            let who = actor(&a);
            let (store_id, template_id) = (base.store_id, template.id);
            tokio::task::spawn_blocking(move || ca.issue_leaf(&who, store_id, template_id, params))
                .await
                .map_err(|e| Problem::server(format!("task failed: {e}")))
                .and_then(|r| r.map_err(Problem::from))
        };
        {
            let _g = self.locked();
            self.inner
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(order.id, FINALIZING));
            match result.map(|leaf| leaf.cert_id) {
                Ok(Some(cert_id)) => {
                    order.status = "valid".into();
                    order.cert_id = Some(cert_id);
                    self.ca().db.put_acme_order(&order)?;
                    self.ca().db.put_acme_issued(cert_id, a.id)?;
                }
                Ok(None) => {
                    order.status = "invalid".into();
                    self.ca().db.put_acme_order(&order)?;
                    return Err(Problem::server(
                        "the template did not store the certificate",
                    ));
                }
                Err(p) => {
                    // Nothing was issued: the order may be finalized again with a better CSR.
                    order.status = "ready".into();
                    self.ca().db.put_acme_order(&order)?;
                    return Err(p);
                }
            }
        }
        self.durable().await?;
        Ok(Response::json(200, &order_json(b, &order))
            .with("location", format!("{b}/order/{}", order.id)))
    }

    fn order_of_locked(&self, a: &AcmeAccount, id: Option<u64>) -> Result<AcmeOrder, Problem> {
        let mut o = id
            .map(|id| self.ca().db.acme_order(id))
            .transpose()?
            .flatten()
            .ok_or_else(|| Problem::not_found("no such order"))?;
        if o.account_id != a.id {
            return Err(Problem::unauthorized(
                "the order belongs to another account",
            ));
        }
        self.refresh_order(&mut o)?;
        Ok(o)
    }

    fn certificate(&self, id: Option<u64>, post: Post) -> Result<Response, Problem> {
        let a = post.account()?;
        let o = self.order_of(a, id)?;
        let cert_id = o
            .cert_id
            .ok_or_else(|| Problem::not_found("the order has no certificate yet"))?;
        let rec =
            self.ca().db.cert_by_id(cert_id)?.ok_or_else(|| {
                Problem::not_found("the certificate is gone (its store was deleted)")
            })?;
        let mut pem = crate::pki::cert::to_pem(&rec.der);
        for c in self.ca().chain(&rec)? {
            if c.cert_type != CertType::Root {
                pem.push_str(&crate::pki::cert::to_pem(&c.der));
            }
        }
        Ok(Response {
            status: 200,
            content_type: "application/pem-certificate-chain",
            headers: vec![],
            body: pem.into_bytes(),
        })
    }

    // ---- authorizations and challenges ----

    async fn authz(&self, b: &str, id: Option<u64>, post: Post) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        struct Update {
            status: String,
        }
        let a = post.account()?;
        let authz = {
            let _g = self.locked();
            let mut z = self.authz_of(a, id)?;
            if !post.is_get() {
                let u: Update = post.json()?;
                if u.status != "deactivated" {
                    return Err(Problem::malformed(
                        "status: only \"deactivated\" may be asked for",
                    ));
                }
                if !matches!(z.status.as_str(), "pending" | "valid") {
                    return Err(Problem::malformed(format!(
                        "the authorization is {}",
                        z.status
                    )));
                }
                z.status = "deactivated".into();
                self.ca().db.put_acme_authz(&z)?;
            }
            z
        };
        if !post.is_get() {
            self.durable().await?;
        }
        let mut r = Response::json(200, &authz_json(b, &authz));
        if authz.challenges.iter().any(|c| c.status == "processing") {
            r = r.with("retry-after", "1".into());
        }
        Ok(r)
    }

    fn authz_of(&self, a: &AcmeAccount, id: Option<u64>) -> Result<AcmeAuthz, Problem> {
        let db = &self.ca().db;
        let mut z = id
            .map(|id| db.acme_authz(id))
            .transpose()?
            .flatten()
            .ok_or_else(|| Problem::not_found("no such authorization"))?;
        if z.account_id != a.id {
            return Err(Problem::unauthorized(
                "the authorization belongs to another account",
            ));
        }
        refresh_authz(db, &mut z)?;
        Ok(z)
    }

    async fn challenge(
        &self,
        b: &str,
        authz_id: Option<u64>,
        idx: Option<usize>,
        post: Post,
    ) -> Result<Response, Problem> {
        let a = post.account()?.clone();
        let (z, idx, start) = {
            let _g = self.locked();
            let mut z = self.authz_of(&a, authz_id)?;
            let idx = idx
                .filter(|i| *i < z.challenges.len())
                .ok_or_else(|| Problem::not_found("no such challenge"))?;
            let mut start = false;
            if !post.is_get() {
                let _: Value = post.json()?;
                let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
                let status = z.challenges[idx].status.as_str();
                let orphan = status == "processing" && !running.contains(&(z.id, idx));
                if z.status == "pending" && (status == "pending" || orphan) {
                    z.challenges[idx].status = "processing".into();
                    self.ca().db.put_acme_authz(&z)?;
                    running.insert((z.id, idx));
                    start = true;
                }
            }
            (z, idx, start)
        };
        if start {
            let acme = self.clone();
            let c = &z.challenges[idx];
            let (kind, token) = (c.kind.clone(), c.token.clone());
            let name = z.identifier.value.clone();
            let key_auth = format!("{token}.{}", a.thumbprint);
            let zid = z.id;
            tokio::spawn(async move {
                let result = match acme.inner.validations.acquire().await {
                    Ok(_permit) => {
                        let target = validate::Target {
                            kind: &kind,
                            name: &name,
                            token: &token,
                            key_authorization: &key_auth,
                        };
                        validate::validate(&acme.inner.cfg, &target).await
                    }
                    Err(_) => Err(Problem::server("validation is shutting down")),
                };
                let finished = acme.finish_challenge(zid, idx, result).await;
                acme.inner
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&(zid, idx));
                if let Err(e) = finished {
                    log::error!(
                        "acme: recording the validation of authorization {zid}: {}",
                        e.detail
                    );
                }
            });
        }
        let c = &z.challenges[idx];
        Ok(Response::json(200, &challenge_json(b, z.id, idx, c))
            .with("link", format!("<{b}/authz/{}>;rel=\"up\"", z.id)))
    }

    async fn finish_challenge(
        &self,
        authz_id: u64,
        idx: usize,
        result: Result<(), Problem>,
    ) -> Result<(), Problem> {
        {
            let _g = self.locked();
            let db = &self.ca().db;
            let Some(mut z) = db.acme_authz(authz_id)? else {
                return Ok(());
            };
            if z.status != "pending" {
                return Ok(()); // deactivated or expired meanwhile
            }
            let c = &mut z.challenges[idx];
            match &result {
                Ok(()) => {
                    c.status = "valid".into();
                    c.validated = Some(now());
                    z.status = "valid".into();
                }
                Err(p) => {
                    log::info!(
                        "acme: {} of {} failed: {}",
                        c.kind,
                        z.identifier.value,
                        p.detail
                    );
                    c.status = "invalid".into();
                    c.error = Some(p.to_json());
                    z.status = "invalid".into();
                }
            }
            db.put_acme_authz(&z)?;
            if let Some(mut o) = db.acme_order(z.order_id)? {
                self.refresh_order(&mut o)?;
            }
        }
        self.durable().await
    }

    // ---- revocation ----

    async fn revoke(&self, base: &CertRecord, post: Post) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        struct Revoke {
            certificate: String,
            reason: Option<u8>,
        }
        let p: Revoke = post.json()?;
        let der = unb64("certificate", &p.certificate)?;
        let info = crate::pki::cert::parse_info(&der)
            .map_err(|e| Problem::malformed(format!("certificate: {e}")))?;
        let reason = crate::pki::crl::RevocationReason::from_code(p.reason.unwrap_or(0))
            .ok_or_else(|| {
                Problem::new(
                    "badRevocationReason",
                    400,
                    format!(
                        "reason: {} is not one pcad accepts (0-6, 9)",
                        p.reason.unwrap_or(0)
                    ),
                )
            })?;
        let mut hex = info.serial_hex.clone();
        if hex.len() % 2 == 1 {
            hex.insert(0, '0');
        }
        let serial: Vec<u8> = (0..hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect();
        let db = &self.ca().db;
        let unknown = || {
            Problem::new(
                "malformed",
                404,
                "certificate: not issued in this directory",
            )
        };
        let issuer_id = base.parent_cert_id.ok_or_else(unknown)?;
        let rec = db
            .serial(issuer_id, &serial)?
            .and_then(|s| s.cert_id)
            .map(|id| db.cert_by_id(id))
            .transpose()?
            .flatten()
            .filter(|c| c.der == der && c.appkey == base.appkey && c.store_id == base.store_id)
            .ok_or_else(unknown)?;
        let who = match &post.signer {
            Signer::Account(a) => {
                if db.acme_issued_to(rec.id)? != Some(a.id) {
                    return Err(Problem::unauthorized(
                        "the account did not obtain this certificate",
                    ));
                }
                actor(a)
            }
            Signer::Key(k) => {
                if k.spki_bits() != crate::pki::cert::subject_public_key_bits(&info.spki_der) {
                    return Err(Problem::unauthorized(
                        "the JWS key is not the certificate's key",
                    ));
                }
                Actor {
                    identity: format!("acme:certificate-key:{}", k.thumbprint()),
                    appkey: base.appkey.clone(),
                }
            }
        };
        if rec.revocation.is_some() {
            return Err(Problem::new(
                "alreadyRevoked",
                400,
                "the certificate is already revoked",
            ));
        }
        let ca = self.ca().clone();
        let (store_id, cert_id) = (rec.store_id, rec.id);
        tokio::task::spawn_blocking(move || ca.revoke(&who, store_id, cert_id, reason))
            .await
            .map_err(|e| Problem::server(format!("task failed: {e}")))?
            .map_err(|e| match e {
                crate::ca::CaError::Conflict(m) => Problem::new("alreadyRevoked", 400, m),
                other => other.into(),
            })?;
        Ok(Response::empty(200))
    }
}

fn actor(a: &AcmeAccount) -> Actor {
    Actor {
        identity: format!("acme:{}", a.id),
        appkey: a.appkey.clone(),
    }
}

fn refresh_authz(db: &crate::store::Db, z: &mut AcmeAuthz) -> Result<(), Problem> {
    if z.status == "pending" && now() > z.expires {
        z.status = "expired".into();
        db.put_acme_authz(z)?;
    }
    Ok(())
}

fn check_contacts(c: &[String]) -> Result<(), Problem> {
    if c.len() > 4 {
        return Err(Problem::new("invalidContact", 400, "contact: at most 4"));
    }
    for x in c {
        let Some(addr) = x.strip_prefix("mailto:") else {
            return Err(Problem::new(
                "unsupportedContact",
                400,
                format!("contact {x:?}: only mailto: contacts"),
            ));
        };
        if !crate::pki::cert::is_email(addr) || addr.contains('?') || addr.contains(',') {
            return Err(Problem::new(
                "invalidContact",
                400,
                format!("contact {x:?}: not one email address"),
            ));
        }
    }
    Ok(())
}

fn account_json(b: &str, a: &AcmeAccount) -> Value {
    json!({
        "status": a.status,
        "contact": a.contact,
        "orders": format!("{b}/acct/{}/orders", a.id),
    })
}

fn order_json(b: &str, o: &AcmeOrder) -> Value {
    let mut v = json!({
        "status": o.status,
        "expires": rfc3339(o.expires),
        "identifiers": o.identifiers,
        "authorizations": o.authz_ids.iter().map(|i| format!("{b}/authz/{i}")).collect::<Vec<_>>(),
        "finalize": format!("{b}/order/{}/finalize", o.id),
    });
    if o.cert_id.is_some() {
        v["certificate"] = json!(format!("{b}/certificate/{}", o.id));
    }
    if let Some(e) = &o.error {
        v["error"] = e.clone();
    }
    v
}

fn challenge_json(b: &str, authz_id: u64, idx: usize, c: &AcmeChallenge) -> Value {
    let mut v = json!({
        "type": c.kind,
        "url": format!("{b}/chall/{authz_id}/{idx}"),
        "token": c.token,
        "status": c.status,
    });
    if let Some(t) = c.validated {
        v["validated"] = json!(rfc3339(t));
    }
    if let Some(e) = &c.error {
        v["error"] = e.clone();
    }
    v
}

fn authz_json(b: &str, z: &AcmeAuthz) -> Value {
    let mut v = json!({
        "identifier": z.identifier,
        "status": z.status,
        "expires": rfc3339(z.expires),
        "challenges": z.challenges.iter().enumerate().map(|(i, c)| challenge_json(b, z.id, i, c)).collect::<Vec<_>>(),
    });
    if z.wildcard {
        v["wildcard"] = json!(true);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_authorization_expires_and_a_valid_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::Db::open(dir.path()).unwrap();
        let mut z = AcmeAuthz {
            id: 1,
            account_id: 2,
            base_cert_id: 3,
            order_id: 4,
            identifier: AcmeIdentifier {
                kind: "dns".into(),
                value: "a.example".into(),
            },
            wildcard: false,
            status: "pending".into(),
            expires: now() - 1,
            challenges: vec![],
        };
        let mut valid = z.clone();
        valid.status = "valid".into();
        refresh_authz(&db, &mut z).unwrap();
        assert_eq!(z.status, "expired");
        assert_eq!(db.acme_authz(1).unwrap().unwrap().status, "expired");
        refresh_authz(&db, &mut valid).unwrap();
        assert_eq!(valid.status, "valid");
    }

    #[test]
    fn contacts_are_mailto_addresses() {
        assert!(check_contacts(&["mailto:a@example.com".into()]).is_ok());
        assert_eq!(
            check_contacts(&["tel:+1".into()]).unwrap_err().kind,
            "unsupportedContact"
        );
        assert_eq!(
            check_contacts(&["mailto:a@example.com?subject=x".into()])
                .unwrap_err()
                .kind,
            "invalidContact"
        );
        assert!(check_contacts(&vec!["mailto:a@example.com".to_string(); 5]).is_err());
    }
}
