//! CRL and OCSP routes. OCSP and CRL downloads are public (no identity); the OCSP hot path is a
//! cache read.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, EXPIRES, IF_NONE_MATCH, LAST_MODIFIED,
};
use hyper::{HeaderMap, Response, StatusCode};
use serde_json::json;

use super::error::ApiError;
use super::source::StatusSource;
use super::{timestamp, Api, Reply};
use crate::clock::now;
use crate::pki::ocsp::{self, OcspErrorStatus};
use crate::status::{CachedResponse, Crl, OcspAnswer};

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
    source: &dyn StatusSource,
    appkey: String,
    store_id: u64,
    issuer_id: u64,
    form: CrlForm,
) -> Result<Reply, ApiError> {
    let crl = source.crl(appkey, store_id, issuer_id).await?;
    Ok(crl_reply(store_id, issuer_id, crl, form))
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
    api.blocking(move |ca| ca.renew_crl(&actor, store_id, issuer_id))
        .await?;
    Ok(Reply::Json(json!(true)))
}

fn crl_reply(store_id: u64, issuer_id: u64, crl: Crl, form: CrlForm) -> Reply {
    let pem = || crate::pki::crl::to_pem(&crl.der);
    let headers = |ext: &str| {
        vec![
            (
                "content-disposition",
                format!("attachment; filename=crl_{store_id}_{issuer_id}.{ext}"),
            ),
            ("last-modified", http_date(crl.this_update)),
            ("expires", http_date(crl.next_update)),
            (
                "cache-control",
                "public, no-transform, max-age=60".to_owned(),
            ),
        ]
    };
    match form {
        CrlForm::Info => Reply::Json(json!({
            "crlPem": pem(),
            "thisUpdate": timestamp(crl.this_update),
            "nextUpdate": timestamp(crl.next_update),
        })),
        CrlForm::Der => Reply::Raw {
            status: StatusCode::OK,
            content_type: "application/pkix-crl",
            headers: headers("crl"),
            body: Bytes::from(crl.der),
        },
        CrlForm::Pem => Reply::Raw {
            status: StatusCode::OK,
            content_type: "application/pkix-crl",
            headers: headers("pem"),
            body: Bytes::from(pem()),
        },
    }
}

/// POST `.../ocsp` (DER body) and GET `.../ocsp/{request}`: the serving hot path, which
/// builds its response directly from the cached response's ready-made parts.
pub async fn ocsp(
    source: &dyn StatusSource,
    appkey: &str,
    store_id: u64,
    get_path: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Full<Bytes>> {
    // Decode the request (GET path or POST body) and look it up in the cache; `Err` hands back
    // the parsed CertIDs for the slow path. The decoding buffer ends with this block, so that
    // it is not kept across the slow path's wait.
    let looked_up = {
        let mut decoded;
        let request = match get_path {
            Some(path) => {
                decoded = [0; ocsp::MAX_GET_REQUEST];
                ocsp::decode_get_path_into(path, &mut decoded).map_err(|e| e.status())
            }
            None => post_request(headers, body),
        };
        match request {
            Ok(request) => source.ocsp(appkey, store_id, request),
            Err(status) => Ok(OcspAnswer::Error(status)),
        }
    };
    let answer = match looked_up {
        Ok(a) => a,
        Err(reqs) => source.ocsp_slow(appkey, store_id, reqs).await,
    };
    match answer {
        OcspAnswer::Signed(e) => {
            crate::metrics::METRICS.ocsp("successful");
            // RFC 9110 §13.1.2: If-None-Match answers 304 only to GET and HEAD; a POST (always
            // a fresh question) ignores it and gets the response.
            signed(&e, get_path.map(|_| headers))
        }
        OcspAnswer::Error(s) => ocsp_error(s),
    }
}

/// The DER request of a POST, whose content type must be `application/ocsp-request` (or none).
fn post_request<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<&'a [u8], OcspErrorStatus> {
    let ct = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/ocsp-request");
    if ct.trim().eq_ignore_ascii_case("application/ocsp-request") {
        Ok(body)
    } else {
        Err(OcspErrorStatus::MalformedRequest)
    }
}

/// A signed response with RFC 5019 §6 caching headers; 304 for a matching `If-None-Match`
/// among `conditional` (the headers of a GET; `None` for a POST).
fn signed(e: &CachedResponse, conditional: Option<&HeaderMap>) -> Response<Full<Bytes>> {
    let max_age = (e.refresh_at.min(e.next_update) - now()).max(0);
    let etag = e.etag();
    // RFC 9110 §13.1.2: a list, or `*`, compared weakly (a `W/` prefix does not matter).
    let matches = conditional
        .and_then(|h| h.get(IF_NONE_MATCH))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t).as_bytes() == &etag[..])
        });
    let (status, body) = if matches {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        (StatusCode::OK, e.der())
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.reserve(5);
    h.insert(CONTENT_TYPE, HeaderValue::from_static(OCSP_RESPONSE));
    h.insert(CACHE_CONTROL, cache_control(max_age));
    for (name, value) in [
        (LAST_MODIFIED, e.last_modified()),
        (EXPIRES, e.expires()),
        (ETAG, etag),
    ] {
        // Always valid: the cache wrote them from digits, letters and quotes.
        if let Ok(v) = HeaderValue::from_maybe_shared(value) {
            h.insert(name, v);
        }
    }
    r
}

/// `Cache-Control` for a response replaced in `max_age` seconds. Every response of a refresh
/// shares the value, so the last one made is kept (per thread) and reused.
fn cache_control(max_age: i64) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(i64, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((age, v)) if *age == max_age => v.clone(),
            _ => {
                let v = HeaderValue::try_from(format!(
                    "max-age={max_age}, public, no-transform, must-revalidate"
                ))
                .unwrap_or_else(|_| HeaderValue::from_static("no-cache"));
                *last = Some((max_age, v.clone()));
                v
            }
        }
    })
}

/// An unsigned error status; never cacheable.
fn ocsp_error(status: OcspErrorStatus) -> Response<Full<Bytes>> {
    crate::metrics::METRICS.ocsp(match status {
        OcspErrorStatus::MalformedRequest => "malformedRequest",
        OcspErrorStatus::InternalError => "internalError",
        OcspErrorStatus::TryLater => "tryLater",
        OcspErrorStatus::Unauthorized => "unauthorized",
    });
    let mut r = Response::new(Full::new(Bytes::from_static(ocsp::error_response(status))));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(OCSP_RESPONSE));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

const OCSP_RESPONSE: &str = "application/ocsp-response";

/// RFC 9110 IMF-fixdate.
fn http_date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}
