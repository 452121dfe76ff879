//! CRL and OCSP routes. OCSP and CRL downloads are public (no identity); the OCSP hot path is a
//! cache read.

use std::sync::Arc;

use bytes::Bytes;
use hyper::{HeaderMap, StatusCode};
use serde_json::json;

use super::error::ApiError;
use super::{timestamp, Api, Reply};
use crate::ca::{now, CaError};
use crate::pki::ocsp::{self, OcspErrorStatus};
use crate::status::{OcspAnswer, OcspEntry};
use crate::store::{CertRecord, CrlRecord, StoreRecord};

/// The CRL forms of the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlForm {
    /// `{"crlPem","thisUpdate","nextUpdate"}`.
    Info,
    Der,
    Pem,
}

/// GET `.../certs/{issuerCertId}/crl[/der|/pem]`.
pub async fn crl(
    api: &Api,
    appkey: String,
    store_id: u64,
    issuer_id: u64,
    form: CrlForm,
) -> Result<Reply, ApiError> {
    let (rec, der) = api
        .blocking(move |ca| {
            let (store, issuer) = crl_issuer(ca, &appkey, store_id, issuer_id)?;
            match ca
                .publisher
                .crl(store.id, issuer.id)
                .map_err(CaError::from)?
            {
                Some(found) => Ok(found),
                None => {
                    // First request before the scheduler's first pass: sign it now.
                    if !ca.hsm.is_up() {
                        return Err(CaError::HsmUnavailable("no CRL has been signed yet".into()));
                    }
                    ca.publisher
                        .renew_crl(&store, &issuer)
                        .map_err(CaError::from)?;
                    ca.publisher
                        .crl(store.id, issuer.id)
                        .map_err(CaError::from)?
                        .ok_or_else(|| CaError::Internal("CRL vanished".into()))
                }
            }
        })
        .await?;
    Ok(crl_reply(store_id, issuer_id, &rec, der, form))
}

/// POST `.../certs/{issuerCertId}/crl`: renew now; answers `true`.
pub async fn renew_crl(
    api: &Api,
    actor: crate::ca::Actor,
    store_id: u64,
    issuer_id: u64,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::malformed("body: not valid UTF-8 JSON"))?
        .trim();
    if !(text.is_empty() || text == "true") {
        return Err(ApiError::malformed("body: must be true (or empty)"));
    }
    api.blocking(move |ca| {
        let (store, issuer) = crl_issuer(ca, &actor.appkey, store_id, issuer_id)?;
        // CRL numbers are reserved before signing; prove the key signs first, so that a dead
        // HSM answers 503 without using a number up.
        use crate::pki::Signer;
        ca.issuer_signer(&issuer)?
            .sign(b"pcad CRL renewal probe")
            .map_err(|e| CaError::from(crate::pki::PkiError::Sign(e)))?;
        ca.publisher
            .renew_crl(&store, &issuer)
            .map_err(CaError::from)?;
        let target = crate::ca::Target {
            store: Some(store.id),
            cert: Some(issuer.id),
            ..Default::default()
        };
        ca.audit(&actor, "CRL_RENEW", target, "SUCCESS")?;
        ca.db.durable()?;
        Ok(())
    })
    .await?;
    Ok(Reply::Json(json!(true)))
}

fn crl_issuer(
    ca: &crate::ca::Ca,
    appkey: &str,
    store_id: u64,
    issuer_id: u64,
) -> Result<(StoreRecord, CertRecord), CaError> {
    let store = ca.store(appkey, store_id)?;
    if !store.crl_active {
        return Err(CaError::NotFound(format!(
            "CRL is disabled for store {store_id} (crlActive is false)"
        )));
    }
    let issuer = ca.cert(appkey, store_id, issuer_id)?;
    if !issuer.is_issuer() {
        return Err(CaError::NotFound(format!(
            "issuerCertId: certificate {issuer_id} is a LEAF and has no CRL"
        )));
    }
    Ok((store, issuer))
}

fn crl_reply(store_id: u64, issuer_id: u64, rec: &CrlRecord, der: Vec<u8>, form: CrlForm) -> Reply {
    let pem = || crate::pki::crl::to_pem(&der);
    let headers = |ext: &str| {
        vec![
            (
                "content-disposition",
                format!("attachment; filename=crl_{store_id}_{issuer_id}.{ext}"),
            ),
            ("last-modified", http_date(rec.this_update)),
            ("expires", http_date(rec.next_update)),
            (
                "cache-control",
                "public, no-transform, max-age=60".to_owned(),
            ),
        ]
    };
    match form {
        CrlForm::Info => Reply::Json(json!({
            "crlPem": pem(),
            "thisUpdate": timestamp(rec.this_update),
            "nextUpdate": timestamp(rec.next_update),
        })),
        CrlForm::Der => Reply::Raw {
            status: StatusCode::OK,
            content_type: "application/pkix-crl",
            headers: headers("crl"),
            body: Bytes::from(der),
        },
        CrlForm::Pem => Reply::Raw {
            status: StatusCode::OK,
            content_type: "application/pkix-crl",
            headers: headers("pem"),
            body: Bytes::from(pem()),
        },
    }
}

/// POST `.../ocsp` (DER body) and GET `.../ocsp/{request}`.
pub async fn ocsp(
    api: &Api,
    appkey: String,
    store_id: u64,
    get_path: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let request: Vec<u8> = match get_path {
        Some(path) => match ocsp::decode_get_path(path) {
            Ok(r) => r,
            Err(e) => return ocsp_error(e.status()),
        },
        None => {
            let ct = headers
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/ocsp-request");
            if !ct.trim().eq_ignore_ascii_case("application/ocsp-request") {
                return ocsp_error(OcspErrorStatus::MalformedRequest);
            }
            body.to_vec()
        }
    };
    let publisher = &api.ca.publisher;
    let answer = match publisher.ocsp(&appkey, store_id, &request) {
        Ok(a) => a,
        Err(reqs) => {
            // The slow path signs a few responses at a time; a request waits up to 3 s for its
            // turn, then gets tryLater (never unbounded HSM work).
            let permit = tokio::time::timeout(
                std::time::Duration::from_secs(3),
                Arc::clone(&api.slow_ocsp).acquire_owned(),
            )
            .await;
            let Ok(Ok(permit)) = permit else {
                return ocsp_error(OcspErrorStatus::TryLater);
            };
            let p = publisher.clone();
            let answer = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                p.ocsp_slow(&appkey, store_id, &reqs)
            })
            .await;
            match answer {
                Ok(a) => a,
                Err(_) => OcspAnswer::Error(OcspErrorStatus::InternalError),
            }
        }
    };
    match answer {
        OcspAnswer::Signed(e) => {
            crate::metrics::METRICS.ocsp("successful");
            signed(&e, headers)
        }
        OcspAnswer::Error(s) => ocsp_error(s),
    }
}

/// A signed response with RFC 5019 §6 caching headers; 304 for a matching `If-None-Match`.
fn signed(e: &OcspEntry, headers: &HeaderMap) -> Reply {
    let max_age = (e.refresh_at.min(e.next_update) - now()).max(0);
    let mut h = vec![
        (
            "cache-control",
            format!("max-age={max_age}, public, no-transform, must-revalidate"),
        ),
        ("last-modified", http_date(e.this_update)),
        ("expires", http_date(e.next_update)),
        ("etag", e.etag.clone()),
    ];
    // RFC 9110 §13.1.2: a list, or `*`, compared weakly (a `W/` prefix does not matter).
    let matches = headers
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == e.etag)
        });
    if matches {
        return Reply::Raw {
            status: StatusCode::NOT_MODIFIED,
            content_type: "application/ocsp-response",
            headers: h,
            body: Bytes::new(),
        };
    }
    h.shrink_to_fit();
    Reply::Raw {
        status: StatusCode::OK,
        content_type: "application/ocsp-response",
        headers: h,
        body: e.der.clone(),
    }
}

/// An unsigned error status; never cacheable.
fn ocsp_error(status: OcspErrorStatus) -> Reply {
    crate::metrics::METRICS.ocsp(match status {
        OcspErrorStatus::MalformedRequest => "malformedRequest",
        OcspErrorStatus::InternalError => "internalError",
        OcspErrorStatus::TryLater => "tryLater",
        OcspErrorStatus::Unauthorized => "unauthorized",
    });
    Reply::Raw {
        status: StatusCode::OK,
        content_type: "application/ocsp-response",
        headers: vec![("cache-control", "no-store".into())],
        body: Bytes::from_static(ocsp::error_response(status)),
    }
}

/// RFC 9110 IMF-fixdate.
fn http_date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}
