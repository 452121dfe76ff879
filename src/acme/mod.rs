//! The ACME server (RFC 8555): one directory per base certificate (ACME.md). A thin protocol
//! layer: JWS checks, nonces, accounts with external account binding, orders, authorizations,
//! challenge validation, and finalize through `Ca::issue_leaf` (the template issuance path),
//! revocation through `Ca::revoke`. The HTTP side (`api::acme`) hands requests in as
//! `Request` and writes `Response` out; state lives in the store's ACME trees.
//!
//! This module holds what every resource shares (the request and answer, the server and a
//! verified POST); each resource has its own: `directory` (the directory, nonces, the checks
//! and dispatch of a POST), `accounts`, `orders`, `authz` (authorizations and challenges),
//! `finalize` (and the certificate download) and `revoke`.

mod accounts;
mod authz;
mod directory;
mod finalize;
pub mod jws;
mod names;
mod orders;
mod problem;
mod revoke;
mod tokens;
mod validate;

pub use problem::Problem;
pub use tokens::{create_token, delete_token, list_tokens};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::ca::Ca;
use crate::clock::now;
use crate::config::AcmeConfig;
use crate::store::AcmeAccount;
use jws::{b64, Jwk};

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

    /// The challenges being validated and orders being finalized by this process.
    fn running(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<(u64, usize)>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
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
}
