//! Where the public routes get their answers from. The appliance answers from its pre-signed
//! cache and its database (`ApplianceSource`); a stateless responder answers from Redis
//! (`crate::publish::RedisSource`). The public-route code (`revocation`, `public`) is the same
//! for both, so both serve byte-for-byte the same answers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::error::ApiError;
use super::Reply;
use crate::ca::Ca;
use crate::pki::ocsp::{OcspErrorStatus, RequestedCertId};
use crate::status::{CaTagTarget, Crl, OcspAnswer};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The answers behind the public routes.
pub trait StatusSource: Send + Sync {
    /// The OCSP hot path: a memory read. `Err` hands back the parsed CertIDs for `ocsp_slow`.
    fn ocsp(
        &self,
        appkey: &str,
        store_id: u64,
        request: &[u8],
    ) -> Result<OcspAnswer, Vec<RequestedCertId>>;

    /// What the memory read could not answer.
    fn ocsp_slow<'a>(
        &'a self,
        appkey: &'a str,
        store_id: u64,
        reqs: Vec<RequestedCertId>,
    ) -> BoxFuture<'a, OcspAnswer>;

    /// The current CRL of an issuer.
    fn crl<'a>(
        &'a self,
        appkey: String,
        store_id: u64,
        issuer_id: u64,
    ) -> BoxFuture<'a, Result<Crl, ApiError>>;

    /// Where a NAVER Cloud CA's `/ext/{caTag}` answers are; `None` for an unknown tag.
    fn ca_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Option<CaTagTarget>, ApiError>>;

    /// `GET /healthz`.
    fn health(&self) -> Reply;
}

/// The appliance: the pre-signed cache, the database and the HSM.
pub struct ApplianceSource {
    pub ca: Ca,
    /// Bounds the OCSP requests that need signing on demand.
    pub slow_ocsp: Arc<tokio::sync::Semaphore>,
}

impl StatusSource for ApplianceSource {
    fn ocsp(
        &self,
        appkey: &str,
        store_id: u64,
        request: &[u8],
    ) -> Result<OcspAnswer, Vec<RequestedCertId>> {
        self.ca.publisher.ocsp(appkey, store_id, request)
    }

    fn ocsp_slow<'a>(
        &'a self,
        appkey: &'a str,
        store_id: u64,
        reqs: Vec<RequestedCertId>,
    ) -> BoxFuture<'a, OcspAnswer> {
        Box::pin(async move {
            // The slow path signs a few responses at a time; a request waits up to 3 s for its
            // turn, then gets tryLater (never unbounded HSM work).
            let permit = tokio::time::timeout(
                std::time::Duration::from_secs(3),
                Arc::clone(&self.slow_ocsp).acquire_owned(),
            )
            .await;
            let Ok(Ok(permit)) = permit else {
                return OcspAnswer::Error(OcspErrorStatus::TryLater);
            };
            let p = self.ca.publisher.clone();
            let appkey = appkey.to_owned();
            let answer = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                p.ocsp_slow(&appkey, store_id, &reqs)
            })
            .await;
            answer.unwrap_or(OcspAnswer::Error(OcspErrorStatus::InternalError))
        })
    }

    fn crl<'a>(
        &'a self,
        appkey: String,
        store_id: u64,
        issuer_id: u64,
    ) -> BoxFuture<'a, Result<Crl, ApiError>> {
        let ca = self.ca.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || ca.current_crl(&appkey, store_id, issuer_id))
                .await
                .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
                .map_err(ApiError::from)
        })
    }

    fn ca_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Option<CaTagTarget>, ApiError>> {
        let ca = self.ca.clone();
        let tag = tag.to_owned();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || ca.ncp_tag_target(&tag))
                .await
                .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
                .map_err(ApiError::from)
        })
    }

    fn health(&self) -> Reply {
        let h = self.ca.hsm.health();
        let up = h.up;
        let mut body = json!({
            "hsm": if up { "up" } else { "down" },
            "status": if up { "ok" } else { "degraded" },
            "reason": h.reason,
            "recovering": h.recovering,
            "sinceSeconds": h.since.as_secs(),
            "token": h.token_label,
            "sessions": h.sessions,
            "ocspCachedResponses": self.ca.publisher.cached_responses(),
        });
        if let Some(p) = self.ca.publisher.publish_health() {
            body["publish"] = p;
        }
        health_reply(up, &body)
    }
}

/// `GET /healthz`'s answer, the same from every source: 200 when `ok`, else 503; never cached.
pub fn health_reply(ok: bool, body: &Value) -> Reply {
    Reply::Raw {
        status: if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        content_type: "application/json",
        headers: vec![("cache-control", "no-store".into())],
        body: Bytes::from(body.to_string()),
    }
}
