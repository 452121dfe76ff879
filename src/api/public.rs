//! The public listener's routes (OCSP GET/POST under both path editions, CRL DER/PEM,
//! `/healthz`, the NAVER edition's `/ext/{caTag}/{ocsp,crl}`), answered from any `StatusSource`: the appliance's public listener and the
//! stateless responders (`pcad responder`) run this same code.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response};

use super::error::ApiError;
use super::revocation::{self, CrlForm};
use super::route::{self, Route};
use super::source::StatusSource;
use super::{error_response, known_method, read_body_within, Reply, PATH_LIMIT};

/// Answers one request of the public listener. `body_timeout` bounds how long a request body
/// may take to arrive (408 after it).
pub async fn handle(
    source: &dyn StatusSource,
    req: Request<Incoming>,
    body_timeout: Duration,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if parts.uri.path().len() > PATH_LIMIT {
        let _ = read_body_within(body, &parts.headers, body_timeout).await;
        return error_response(ApiError::uri_too_long(PATH_LIMIT));
    }
    // The NAVER edition's `/ext/{caTag}/...`: on the appliance, `Api::handle` sends these to
    // the edition (the CA certificate needs the database); here, its shared OCSP and CRL code.
    if parts.uri.path().starts_with("/ext/") {
        return super::ncp::serve_ext(source, parts, body, body_timeout).await;
    }
    let body = match ocsp_fast(source, &parts, body, body_timeout).await {
        Ok(response) => return response,
        Err(body) => body,
    };
    // Every answer, errors included, is given after the body was read (see `Api::handle`).
    let body = read_body_within(body, &parts.headers, body_timeout).await;
    let mut route = "none";
    let result = match body {
        Ok(body) => dispatch(source, &parts, body, &mut route).await,
        Err(e) => Err(e),
    };
    super::answer(route, result)
}

async fn dispatch(
    source: &dyn StatusSource,
    parts: &hyper::http::request::Parts,
    body: Bytes,
    route_name: &mut &'static str,
) -> Result<Reply, ApiError> {
    let path = parts.uri.path();
    let matched =
        route::parse(path)?.ok_or_else(|| ApiError::not_found(format!("no route {path}")))?;
    *route_name = matched.route.name();
    if !matched.route.on_public_listener(&parts.method) {
        return Err(ApiError::not_found(format!(
            "no route {path} on the public listener"
        )));
    }
    if !known_method(&parts.method) {
        return Err(ApiError::method_not_allowed(matched.route.allow()));
    }
    public_reply(
        source,
        &parts.method,
        &matched.route,
        &matched.appkey,
        &parts.headers,
        &body,
    )
    .await
    .unwrap_or_else(|| Err(ApiError::method_not_allowed(matched.route.allow())))
}

/// The answer of a public route (any listener), or `None` when (method, route) is not one.
/// `method` is already GET for a HEAD.
pub(super) async fn public_reply(
    source: &dyn StatusSource,
    method: &Method,
    route: &Route,
    appkey: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Result<Reply, ApiError>> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let appkey = appkey.to_owned();
    Some(match (method, route) {
        (&Method::GET, Route::Healthz) => Ok(source.health()),
        (&Method::GET, Route::CrlDer(s, c)) => {
            revocation::crl(source, appkey, *s, *c, CrlForm::Der).await
        }
        (&Method::GET, Route::CrlPem(s, c)) => {
            revocation::crl(source, appkey, *s, *c, CrlForm::Pem).await
        }
        (&Method::POST, Route::Ocsp(s)) => Ok(Reply::Ready(
            revocation::ocsp(source, &appkey, *s, None, headers, body).await,
        )),
        (&Method::GET, Route::OcspGet(s, path)) => Ok(Reply::Ready(
            revocation::ocsp(source, &appkey, *s, Some(path), headers, body).await,
        )),
        _ => return None,
    })
}

/// OCSP, the public hot path, without the general routing: the same answers as the routing
/// gives these routes (they are public on every listener), with nothing parsed or allocated
/// that the answer does not need. Hands the body back for any other request.
pub(super) async fn ocsp_fast(
    source: &dyn StatusSource,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    body_timeout: Duration,
) -> Result<Response<Full<Bytes>>, Incoming> {
    use hyper::body::Body;
    let Some(target) = route::ocsp(parts.uri.path()) else {
        return Err(body);
    };
    let (route, body) = match (&parts.method, target.get_path) {
        (&Method::POST, None) => (
            "ocsp_post",
            read_body_within(body, &parts.headers, body_timeout).await,
        ),
        // A GET with a body takes the general routing, which reads (and may refuse) it.
        (&Method::GET | &Method::HEAD, Some(_)) if body.is_end_stream() => {
            ("ocsp_get", Ok(Bytes::new()))
        }
        _ => return Err(body),
    };
    let response = match body {
        Ok(body) => {
            revocation::ocsp(
                source,
                target.appkey,
                target.store_id,
                target.get_path,
                &parts.headers,
                &body,
            )
            .await
        }
        Err(e) => error_response(e),
    };
    crate::metrics::METRICS.request(route, response.status().as_u16());
    Ok(response)
}
