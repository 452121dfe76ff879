//! HTTP: routing for both path editions, the envelope, request parsing, authentication and
//! roles, and the handlers. Handlers return `Result<Reply, ApiError>`; only an `Authed` caller
//! reaches a management handler.

mod acme;
mod auth;
mod body;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod handlers;
mod leaf_body;
pub mod ncp;
pub mod public;
mod query;
mod reference;
mod revocation;
pub mod route;
pub mod source;
mod views;

pub use auth::{authenticate as auth_v2, Authed, Peer};
pub use error::ApiError;

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::ca::{Ca, CaError};
use crate::clock::{date_form, timestamp};
use crate::config::Config;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 1 << 20;

/// Request paths longer than this are refused with 414 (in the envelope, on both protocols).
pub const PATH_LIMIT: usize = 8 << 10;

/// Which listener a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The mutual-TLS API listener: every route.
    Api,
    /// The plain-HTTP public listener: CRL downloads, OCSP and health only.
    Public,
}

/// The HTTP application: shared by every connection of both listeners.
#[derive(Clone)]
pub struct Api {
    pub ca: Ca,
    /// Roles and tokens; replaced on SIGHUP.
    pub access: Arc<RwLock<Arc<Config>>>,
    /// The answers behind the public routes: the pre-signed cache, database and HSM.
    pub source: Arc<dyn source::StatusSource>,
    /// How long a request body may take to arrive (`limits.body_timeout_secs`).
    pub(crate) body_timeout: std::time::Duration,
    /// The ACME server (`/acme/v2.0/cert/{certId}/...` on the API listener).
    pub(crate) acme: crate::acme::Acme,
}

/// A successful answer before it becomes a response.
pub enum Reply {
    /// `{"header": ..., "body": value}` with 200.
    Json(Value),
    /// Raw bytes with a content type and extra headers (downloads, CRLs, OCSP).
    Raw {
        status: StatusCode,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    },
    /// A response the handler built itself (OCSP: from the cache's ready-made parts).
    Ready(Response<Full<Bytes>>),
}

impl Api {
    pub fn new(ca: Ca, config: Arc<Config>) -> Api {
        let source = Arc::new(source::ApplianceSource {
            ca: ca.clone(),
            slow_ocsp: Arc::new(tokio::sync::Semaphore::new(4)),
        });
        Api {
            body_timeout: std::time::Duration::from_secs(config.limits.body_timeout_secs),
            acme: crate::acme::Acme::new(ca.clone(), config.acme.clone()),
            ca,
            access: Arc::new(RwLock::new(config)),
            source,
        }
    }

    /// Answers one request. Never panics on client input; every error keeps the envelope.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: Arc<Peer>,
        listener: Listener,
    ) -> Response<Full<Bytes>> {
        // The NAVER edition's public URLs (`/ext/{caTag}/...`) need the appliance's database.
        if listener == Listener::Public && !req.uri().path().starts_with("/ext/") {
            return public::handle(&*self.source, req, self.body_timeout).await;
        }
        let (parts, body) = req.into_parts();
        if parts.uri.path().len() > PATH_LIMIT {
            let _ = self.read_body(body, &parts.headers).await;
            return error_response(ApiError::uri_too_long(PATH_LIMIT));
        }
        if ncp::owns(parts.uri.path()) {
            return ncp::handle(self, parts, body, &peer, listener).await;
        }
        let body = match public::ocsp_fast(&*self.source, &parts, body, self.body_timeout).await {
            Ok(response) => return response,
            Err(body) => body,
        };
        // Every answer, errors included, is given after the body was read: an answer sent while
        // the client still uploads makes HTTP/2 reset the stream and HTTP/1.1 close the
        // connection, so whether the client sees it would depend on timing.
        let body = self.read_body(body, &parts.headers).await;
        if parts.uri.path().starts_with(acme::PREFIX) {
            let response = acme::serve(self, &parts, body).await;
            crate::metrics::METRICS.request("acme", response.status().as_u16());
            return response;
        }
        let mut route = "none";
        let result = match body {
            Ok(body) => self.dispatch(parts, body, &peer, &mut route).await,
            Err(e) => Err(e),
        };
        answer(route, result)
    }

    async fn dispatch(
        &self,
        parts: hyper::http::request::Parts,
        body: Bytes,
        peer: &Peer,
        route_name: &mut &'static str,
    ) -> Result<Reply, ApiError> {
        let path = parts.uri.path();
        let matched =
            route::parse(path)?.ok_or_else(|| ApiError::not_found(format!("no route {path}")))?;
        *route_name = matched.route.name();
        let query = parts.uri.query().unwrap_or("").to_owned();
        let caller = if matched.route.is_public(&parts.method) {
            None
        } else {
            let config = self
                .access
                .read()
                .map(|c| Arc::clone(&c))
                .map_err(|_| ApiError::internal("access lock poisoned"))?;
            Some(auth::authenticate(
                &config,
                &parts.headers,
                peer,
                &matched.appkey,
            )?)
        };
        let appkey = matched.appkey.clone();
        let store_id = matched.route.store_id();
        let result = handlers::route(
            self,
            &parts.method,
            matched,
            caller,
            &query,
            &parts.headers,
            body,
        )
        .await;
        match (result, store_id) {
            // SoftHSM answers a signature whose key is destroyed meanwhile with
            // CKR_GENERAL_ERROR, which reads as the HSM being away (503).
            (Err(e), Some(id))
                if e.status == StatusCode::INTERNAL_SERVER_ERROR
                    || e.status == StatusCode::SERVICE_UNAVAILABLE =>
            {
                Err(self.unless_store_gone(e, appkey, id).await)
            }
            (result, _) => result,
        }
    }

    /// A failure of a request under a store that was deleted while it ran (its keys destroyed
    /// under a signature, its records gone under a write) is the 404 that asking a moment
    /// later gives, not a server fault.
    async fn unless_store_gone(&self, e: ApiError, appkey: String, store_id: u64) -> ApiError {
        let gone = self
            .blocking(move |ca| Ok(!ca.store_exists(&appkey, store_id)?))
            .await;
        if matches!(gone, Ok(true)) {
            log::info!(
                "request on store {store_id} failed because the store was deleted meanwhile ({})",
                e.message
            );
            ApiError::not_found(format!(
                "caStoreId: store {store_id} was deleted while the request ran"
            ))
        } else {
            e
        }
    }

    /// Reads the whole body within the body timeout (408 after it).
    async fn read_body(
        &self,
        body: Incoming,
        headers: &hyper::HeaderMap,
    ) -> Result<Bytes, ApiError> {
        read_body_within(body, headers, self.body_timeout).await
    }

    /// Runs blocking CA work (HSM, durable writes) off the async executor.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Ca) -> Result<T, CaError> + Send + 'static,
    {
        let ca = self.ca.clone();
        tokio::task::spawn_blocking(move || f(&ca))
            .await
            .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
            .map_err(ApiError::from)
    }
}

/// Reads the whole body within `timeout` (408 after it).
pub(super) async fn read_body_within(
    body: Incoming,
    headers: &hyper::HeaderMap,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    tokio::time::timeout(timeout, read_body(body, headers))
        .await
        .unwrap_or_else(|_| Err(ApiError::body_timeout(timeout.as_secs())))
}

async fn read_body(body: Incoming, headers: &hyper::HeaderMap) -> Result<Bytes, ApiError> {
    if let Some(len) = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > BODY_LIMIT as u64 {
            drain(body).await;
            return Err(ApiError::too_large());
        }
    }
    // A small body (an OCSP request) arrives as one frame: kept as it is, without copying.
    let mut body = body;
    let mut first = Bytes::new();
    let mut more: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::malformed(format!("body: could not be read ({e})")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if first.len() + more.len() + data.len() > BODY_LIMIT {
            drain(body).await;
            return Err(ApiError::too_large());
        }
        if first.is_empty() && more.is_empty() {
            first = data;
        } else {
            if more.is_empty() {
                // From the second frame on, everything is in `more` (and counted once).
                more.extend_from_slice(&std::mem::take(&mut first));
            }
            more.extend_from_slice(&data);
        }
    }
    Ok(if more.is_empty() {
        first
    } else {
        Bytes::from(more)
    })
}

/// Reads and discards an oversized body (up to 16 MiB, for at most 5 s), so that the client,
/// still uploading, gets to read the 413 instead of a reset connection.
async fn drain(mut body: Incoming) {
    use hyper::body::Body;
    let mut seen = 0usize;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while seen < 16 << 20 {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx));
        match tokio::time::timeout_at(deadline, frame).await {
            Ok(Some(Ok(f))) => seen += f.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

/// The response to a request of `route` (its metrics name), counted.
fn answer(route: &'static str, result: Result<Reply, ApiError>) -> Response<Full<Bytes>> {
    let response = match result {
        Ok(reply) => into_response(reply),
        Err(e) => error_response(e),
    };
    crate::metrics::METRICS.request(route, response.status().as_u16());
    response
}

fn into_response(reply: Reply) -> Response<Full<Bytes>> {
    match reply {
        Reply::Ready(r) => r,
        Reply::Json(body) => envelope(StatusCode::OK, 0, "SUCCESS", body),
        Reply::Raw {
            status,
            content_type,
            headers,
            body,
        } => {
            let mut r = Response::new(Full::new(body));
            *r.status_mut() = status;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            for (k, v) in headers {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    r.headers_mut().insert(k, v);
                }
            }
            r
        }
    }
}

/// The error envelope; never cacheable.
pub fn error_response(e: ApiError) -> Response<Full<Bytes>> {
    let mut r = envelope(e.status, e.code, &e.message, Value::Null);
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    if let Some(allow) = e.allow {
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    }
    r
}

fn envelope(status: StatusCode, code: u32, message: &str, body: Value) -> Response<Full<Bytes>> {
    let v = json!({
        "header": {"resultCode": code, "resultMessage": message, "isSuccessful": code == 0},
        "body": body,
    });
    let bytes = serde_json::to_vec(&v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

/// Whether a method is one the route table knows at all.
pub(crate) fn known_method(m: &Method) -> bool {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
    ]
    .contains(m)
}
