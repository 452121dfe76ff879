//! HTTP for ACME: `/acme/v2.0/cert/{certId}/...` on the API listener (no client certificate
//! needed), handed to `crate::acme`; and the EAB token routes of the v2.0 API.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Response, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::route::Route;
use super::{views, Api, Authed, Reply};
use crate::ca::{EabToken, Page};
use crate::config::Role;

/// The prefix of every ACME URL.
pub const PREFIX: &str = "/acme/v2.0/cert/";

/// Answers an ACME request (the path starts with `PREFIX`).
pub(super) async fn serve(
    api: &Api,
    parts: &hyper::http::request::Parts,
    body: Result<Bytes, ApiError>,
) -> Response<Full<Bytes>> {
    let path = parts.uri.path();
    let rest = path.strip_prefix(PREFIX).unwrap_or("");
    let (id, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let host = parts
        .headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let cert_id = id
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0 && id.bytes().all(|b| b.is_ascii_digit()));
    let (Some(host), Some(cert_id)) = (host, cert_id) else {
        let p = crate::acme::Problem::not_found(format!("no ACME directory at {path}"));
        return response(api.acme.refuse(&p));
    };
    let bad_host = |b: u8| b.is_ascii_whitespace() || b"/\"<>".contains(&b);
    if host.is_empty() || host.bytes().any(bad_host) {
        let p = crate::acme::Problem::malformed("Host: not a host name");
        return response(api.acme.refuse(&p));
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let p = crate::acme::Problem::new("malformed", e.status.as_u16(), e.message);
            return response(api.acme.refuse(&p));
        }
    };
    let req = crate::acme::Request {
        method: parts.method.as_str(),
        base: format!("https://{host}{PREFIX}{cert_id}"),
        cert_id,
        rest,
        content_type: parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body: &body,
    };
    response(api.acme.serve(req).await)
}

fn response(r: crate::acme::Response) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(Bytes::from(r.body)));
    *out.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(r.content_type));
    for (k, v) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            out.headers_mut().append(k, v);
        }
    }
    out
}

fn token_view(t: &EabToken, host: Option<&str>) -> Value {
    json!({
        "tokenId": t.id.to_string(),
        "name": t.name,
        "createdAt": super::timestamp(t.created_at),
        "accountUrl": t.account_id.map(|a| match host {
            Some(h) => format!("https://{h}{PREFIX}{}/acct/{a}", t.base_cert_id),
            None => format!("{PREFIX}{}/acct/{a}", t.base_cert_id),
        }),
    })
}

/// The EAB token routes: POST/GET `.../certs/{certId}/acme-tokens`, DELETE `.../{tokenId}`.
pub(super) async fn tokens(
    api: &Api,
    method: &Method,
    route: Route,
    who: Authed,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Reply, ApiError> {
    let result = tokens_inner(api, method, route.clone(), &who, query, headers, body).await;
    if let Err(e) = &result {
        let (action, s, c) = match (method.clone(), &route) {
            (Method::POST, Route::AcmeTokens(s, c)) => ("ACME_TOKEN_CREATE", *s, *c),
            (Method::DELETE, Route::AcmeToken(s, c, _)) => ("ACME_TOKEN_DELETE", *s, *c),
            _ => return result,
        };
        let ca = api.ca.clone();
        let actor = who.actor();
        let why = format!("{} {}", e.code, e.message);
        let target = crate::ca::Target {
            store: Some(s),
            cert: Some(c),
            template: None,
            serial: None,
        };
        tokio::task::spawn_blocking(move || ca.audit_refusal(&actor, action, target, &why));
    }
    result
}

async fn tokens_inner(
    api: &Api,
    method: &Method,
    route: Route,
    who: &Authed,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Reply, ApiError> {
    let appkey = who.appkey.clone();
    let actor = who.actor();
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    match (method.clone(), route) {
        (Method::POST, Route::AcmeTokens(s, c)) => {
            who.require(Role::Admin)?;
            let name = if body.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                let v: Value = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::malformed(format!("body: not JSON ({e})")))?;
                match v.get("name") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(n)) => Some(n.clone()),
                    Some(_) => return Err(ApiError::invalid("name: must be a string")),
                }
            };
            let (t, key) = api
                .blocking(move |ca| crate::acme::create_token(ca, &actor, s, c, name))
                .await?;
            Ok(Reply::Json(json!({
                "tokenId": t.id.to_string(),
                "hmacKey": key,
                "name": t.name,
                "createdAt": super::timestamp(t.created_at),
            })))
        }
        (Method::GET, Route::AcmeTokens(s, c)) => {
            let q = super::query::Query::parse(query)?;
            let (page, size) = q.paging()?;
            let all = api
                .blocking(move |ca| crate::acme::list_tokens(ca, &appkey, s, c))
                .await?;
            let all = all.into_iter().map(EabToken::from).collect();
            let p = Page::of(all, page, size);
            Ok(Reply::Json(views::page(&p, |t| {
                token_view(t, host.as_deref())
            })))
        }
        (Method::DELETE, Route::AcmeToken(s, c, t)) => {
            who.require(Role::Admin)?;
            api.blocking(move |ca| crate::acme::delete_token(ca, &actor, s, c, t))
                .await?;
            Ok(Reply::Json(json!(true)))
        }
        (_, route) => Err(ApiError::method_not_allowed(route.allow())),
    }
}
