//! One function per route. Each parses its input into checked parameters, runs the CA operation
//! on a blocking thread, and shapes the answer.

use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::body::{self, IssuerBody, StoreBody};
use super::error::ApiError;
use super::leaf_body::{Format, KeyFormat, LeafBody, LeafRequest, RevokeBody, TemplateBody};
use super::query::Query;
use super::revocation::{self, CrlForm};
use super::route::{Matched, Route};
use super::{views, Api, Authed, Reply};
use crate::ca::{AuditQuery, CertKind, CertScope, Target};
use crate::config::Role;

/// Dispatches a matched route. `caller` is `Some` for every management route.
pub(super) async fn route(
    api: &Api,
    method: &Method,
    m: Matched,
    caller: Option<Authed>,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Reply, ApiError> {
    let allow = m.route.allow();
    if !super::known_method(method) {
        return Err(ApiError::method_not_allowed(allow));
    }
    // HEAD is GET without the body (hyper leaves the body out).
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    if let Some(reply) =
        super::public::public_reply(&*api.source, method, &m.route, &m.appkey, headers, &body).await
    {
        return reply;
    }
    match (m.route, caller) {
        (Route::OpenApi, _) if method == Method::GET => Ok(super::reference::openapi()),
        (route @ (Route::AcmeTokens(..) | Route::AcmeToken(..)), Some(who)) => {
            super::acme::tokens(api, method, route, who, query, headers, body).await
        }
        (route, Some(who)) => management(api, method, route, who, query, body).await,
        (_, None) => Err(ApiError::method_not_allowed(allow)),
    }
}

async fn management(
    api: &Api,
    method: &Method,
    route: Route,
    who: Authed,
    query: &str,
    body: Bytes,
) -> Result<Reply, ApiError> {
    let action = mutation(method, &route);
    let result = management_inner(api, method, route, who.clone(), query, body).await;
    if let (Err(e), Some((action, target))) = (&result, action) {
        let ca = api.ca.clone();
        let actor = who.actor();
        let why = format!("{} {}", e.code, e.message);
        // Best effort, off the executor: a refused request changed nothing.
        tokio::task::spawn_blocking(move || ca.audit_refusal(&actor, action, target, &why));
    }
    result
}

/// The audit action of a state-changing route, and what it is about.
fn mutation(method: &Method, route: &Route) -> Option<(&'static str, Target)> {
    let t = |store: u64, cert: Option<u64>, template: Option<u64>| Target {
        store: Some(store),
        cert,
        template,
        serial: None,
    };
    Some(match (method.clone(), route) {
        (Method::POST, Route::Stores) => ("STORE_CREATE", Target::default()),
        (Method::PUT, Route::Store(s)) => ("STORE_UPDATE", t(*s, None, None)),
        (Method::DELETE, Route::Store(s)) => ("STORE_DELETE", t(*s, None, None)),
        (Method::POST, Route::Certs(s)) => ("ISSUER_CREATE", t(*s, None, None)),
        (Method::POST, Route::CertRevoke(s, c)) => ("CERT_REVOKE", t(*s, Some(*c), None)),
        (Method::POST, Route::Templates(s)) => ("TEMPLATE_CREATE", t(*s, None, None)),
        (Method::PUT, Route::Template(s, id)) => ("TEMPLATE_UPDATE", t(*s, None, Some(*id))),
        (Method::DELETE, Route::Template(s, id)) => ("TEMPLATE_DELETE", t(*s, None, Some(*id))),
        (Method::POST, Route::TemplateIssue(s, id)) => ("LEAF_ISSUE", t(*s, None, Some(*id))),
        (Method::POST, Route::Crl(s, c)) => ("CRL_RENEW", t(*s, Some(*c), None)),
        _ => return None,
    })
}

async fn management_inner(
    api: &Api,
    method: &Method,
    route: Route,
    who: Authed,
    query: &str,
    body: Bytes,
) -> Result<Reply, ApiError> {
    let appkey = who.appkey.clone();
    let actor = who.actor();
    let q = Query::parse(query)?;
    match (method.clone(), route) {
        (Method::GET, Route::Stores) => {
            let (page, size) = q.paging()?;
            let search = q.get("search")?;
            let p = api
                .blocking(move |ca| ca.list_stores(&appkey, search.as_deref(), page, size))
                .await?;
            Ok(Reply::Json(views::page(&p, views::store)))
        }
        (Method::POST, Route::Stores) => {
            who.require(Role::Admin)?;
            let params = body::json::<StoreBody>(&body)?.check()?;
            let s = api
                .blocking(move |ca| ca.create_store(&actor, params))
                .await?;
            Ok(Reply::Json(views::store(&s)))
        }
        (Method::GET, Route::Store(id)) => {
            let s = api.blocking(move |ca| ca.store_info(&appkey, id)).await?;
            Ok(Reply::Json(views::store(&s)))
        }
        (Method::PUT, Route::Store(id)) => {
            let s = admin_write(
                api,
                &who,
                move |ca, k| ca.store_info(k, id),
                || body::json::<StoreBody>(&body).and_then(StoreBody::check),
                move |ca, params| ca.update_store(&actor, id, params),
            )
            .await?;
            Ok(Reply::Json(views::store(&s)))
        }
        (Method::DELETE, Route::Store(id)) => {
            who.require(Role::Admin)?;
            api.blocking(move |ca| ca.delete_store(&actor, id)).await?;
            Ok(Reply::Json(Value::Null))
        }
        (Method::GET, Route::Certs(store)) => {
            let (page, size) = q.paging()?;
            let search = q.get("search")?;
            let scope = match q.get("type")?.as_deref() {
                None | Some("all") => CertScope::All,
                Some("issuer") => CertScope::Issuer,
                Some("leaf") => CertScope::Leaf,
                Some(other) => {
                    return Err(ApiError::malformed(format!(
                        "type: unknown value {other:?}; must be all, issuer or leaf"
                    )))
                }
            };
            let p = api
                .blocking(move |ca| {
                    ca.list_certs(&appkey, store, scope, search.as_deref(), page, size)
                })
                .await?;
            Ok(Reply::Json(views::page(&p, views::cert)))
        }
        (Method::POST, Route::Certs(store)) => {
            let (c, chain) = admin_write(
                api,
                &who,
                move |ca, k| ca.store_info(k, store),
                || body::json::<IssuerBody>(&body).and_then(IssuerBody::check),
                move |ca, params| {
                    let c = ca.create_issuer(&actor, store, params)?;
                    ca.cert_with_chain(&appkey, store, c.id)
                },
            )
            .await?;
            Ok(Reply::Json(views::cert_detail(&c, &chain)))
        }
        (Method::GET, Route::Cert(store, id)) => {
            let (c, chain) = api
                .blocking(move |ca| ca.cert_with_chain(&appkey, store, id))
                .await?;
            Ok(Reply::Json(views::cert_detail(&c, &chain)))
        }
        (Method::GET, Route::CertDownload(store, id)) => {
            let c = api
                .blocking(move |ca| ca.cert_info(&appkey, store, id))
                .await?;
            Ok(Reply::Raw {
                status: StatusCode::OK,
                content_type: "application/x-pem-file",
                headers: vec![("content-disposition", content_disposition(&c.name, "pem"))],
                body: Bytes::from(crate::pki::cert::to_pem(&c.der)),
            })
        }
        (Method::GET, Route::Crl(s, c)) => {
            revocation::crl(&*api.source, appkey, s, c, CrlForm::Info).await
        }
        (Method::POST, Route::Crl(s, c)) => {
            who.require(Role::Admin)?;
            revocation::renew_crl(api, actor, s, c, &body).await
        }
        (Method::GET, Route::AuditEvents) => {
            who.require(Role::Admin)?;
            let (page, size) = q.paging()?;
            let query = AuditQuery {
                action: q.get("action")?,
                from: q.time("from")?,
                to: q.time("to")?,
            };
            let p = api
                .blocking(move |ca| ca.list_audit(&appkey, query, page, size))
                .await?;
            Ok(Reply::Json(views::page(&p, |e| {
                let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
                v["time"] = json!(super::timestamp(e.time));
                v
            })))
        }
        (Method::POST, Route::CertRevoke(store, id)) => {
            let c = admin_write(
                api,
                &who,
                move |ca, k| ca.cert_info(k, store, id),
                || RevokeBody::reason(&body),
                move |ca, reason| ca.revoke(&actor, store, id, reason),
            )
            .await?;
            Ok(Reply::Json(views::cert(&c)))
        }
        (Method::GET, Route::Templates(store)) => {
            let (page, size) = q.paging()?;
            let search = q.get("search")?;
            let p = api
                .blocking(move |ca| {
                    ca.list_templates(&appkey, store, search.as_deref(), page, size)
                })
                .await?;
            Ok(Reply::Json(views::page(&p, views::template)))
        }
        (Method::POST, Route::Templates(store)) => {
            let t = admin_write(
                api,
                &who,
                move |ca, k| ca.store_info(k, store),
                || body::json::<TemplateBody>(&body).and_then(TemplateBody::check),
                move |ca, spec| ca.create_template(&actor, store, spec),
            )
            .await?;
            Ok(Reply::Json(views::template(&t)))
        }
        (Method::GET, Route::Template(store, id)) => {
            let t = api
                .blocking(move |ca| ca.template_info(&appkey, store, id))
                .await?;
            Ok(Reply::Json(views::template(&t)))
        }
        (Method::PUT, Route::Template(store, id)) => {
            let t = admin_write(
                api,
                &who,
                move |ca, k| ca.template_info(k, store, id),
                || body::json::<TemplateBody>(&body).and_then(TemplateBody::check),
                move |ca, spec| ca.update_template(&actor, store, id, spec),
            )
            .await?;
            Ok(Reply::Json(views::template(&t)))
        }
        (Method::DELETE, Route::Template(store, id)) => {
            who.require(Role::Admin)?;
            api.blocking(move |ca| ca.delete_template(&actor, store, id))
                .await?;
            Ok(Reply::Json(Value::Null))
        }
        (Method::POST, Route::TemplateIssue(store, id)) => {
            // The hot path: one trip to a blocking thread (issue_leaf answers 404 for an unknown
            // template itself); a bad body is judged only after the template is known to exist.
            who.require(Role::Admin)?;
            let req = match body::json::<LeafBody>(&body).and_then(LeafBody::check) {
                Ok(req) => req,
                Err(e) => {
                    admin_and(api, &who, move |ca, k| ca.template_info(k, store, id)).await?;
                    return Err(e);
                }
            };
            let LeafRequest {
                params,
                format,
                key_format,
                remove_roots_from_chain,
            } = req;
            let leaf = api
                .blocking(move |ca| ca.issue_leaf(&actor, store, id, params))
                .await?;
            Ok(Reply::Json(issued_leaf(
                &leaf,
                format,
                key_format,
                remove_roots_from_chain,
            )?))
        }
        (_, route) => Err(ApiError::method_not_allowed(route.allow())),
    }
}

/// A write by an ADMIN to an object that `check` finds (an unknown id answers 404 before the
/// body is judged): then `parse` judges the body and `op` runs with what it made.
async fn admin_write<P: Send + 'static, T: Send + 'static, C: Send + 'static>(
    api: &Api,
    who: &Authed,
    check: impl FnOnce(&crate::ca::Ca, &str) -> Result<C, crate::ca::CaError> + Send + 'static,
    parse: impl FnOnce() -> Result<P, ApiError>,
    op: impl FnOnce(&crate::ca::Ca, P) -> Result<T, crate::ca::CaError> + Send + 'static,
) -> Result<T, ApiError> {
    admin_and(api, who, check).await?;
    let params = parse()?;
    api.blocking(move |ca| op(ca, params)).await
}

/// ADMIN, then `check` that the addressed object exists before the body is judged, so that an
/// unknown id answers 404 rather than a complaint about the body.
async fn admin_and<T: Send + 'static>(
    api: &Api,
    who: &Authed,
    check: impl FnOnce(&crate::ca::Ca, &str) -> Result<T, crate::ca::CaError> + Send + 'static,
) -> Result<(), ApiError> {
    who.require(Role::Admin)?;
    let appkey = who.appkey.clone();
    api.blocking(move |ca| check(ca, &appkey).map(|_| ())).await
}

/// API.md's "Issued leaf" answer.
fn issued_leaf(
    leaf: &crate::ca::IssuedLeaf,
    format: Format,
    key_format: KeyFormat,
    remove_roots: bool,
) -> Result<Value, ApiError> {
    use crate::pki::cert::to_pem;
    use base64::Engine;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let chain: Vec<&crate::ca::Certificate> = leaf
        .chain
        .iter()
        .filter(|c| !(remove_roots && c.kind == CertKind::Root))
        .collect();
    let enc = |der: &[u8]| match format {
        Format::Der => b64(der),
        Format::Pem | Format::PemBundle => to_pem(der),
    };
    let (private_key, private_key_type, key_pem) = match &leaf.key {
        None => (None, None, None),
        Some(crate::ca::LeafKey(k)) => {
            let ty = match k.algorithm.family() {
                crate::pki::KeyFamily::Rsa => "rsa",
                crate::pki::KeyFamily::Ec => "ec",
                crate::pki::KeyFamily::Ed25519 => "ed25519",
            };
            let text = match key_format {
                KeyFormat::Pem => k.traditional_pem(),
                KeyFormat::Der => k.traditional_der().map(|d| b64(&d)),
                KeyFormat::Pkcs8 => k.pkcs8_pem(),
            }
            .map_err(|e| ApiError::internal(format!("encoding the leaf key: {e}")))?;
            let pem = match key_format {
                KeyFormat::Pkcs8 => text.clone(),
                _ => k
                    .traditional_pem()
                    .map_err(|e| ApiError::internal(format!("encoding the leaf key: {e}")))?,
            };
            (Some(text), Some(ty), Some(pem))
        }
    };
    let certificate = match format {
        Format::PemBundle => {
            let mut s = key_pem.unwrap_or_default();
            s.push_str(&to_pem(&leaf.der));
            for c in &chain {
                s.push_str(&to_pem(&c.der));
            }
            s
        }
        _ => enc(&leaf.der),
    };
    let mut v = json!({
        "certId": leaf.cert_id,
        "serialNumber": crate::pki::der_util::hex(&leaf.serial),
        "certificate": certificate,
        "issuingCa": enc(&leaf.chain[0].der),
        "caChain": chain.iter().map(|c| enc(&c.der)).collect::<Vec<_>>(),
        "expiration": super::timestamp(leaf.not_after),
    });
    if let Some(k) = private_key {
        v["privateKey"] = json!(k);
        v["privateKeyType"] = json!(private_key_type);
    }
    Ok(v)
}

/// `Content-Disposition` for a download named after a certificate (RFC 6266): `filename` as a
/// token when the name is one, else quoted (ASCII, with a fallback for other characters), plus
/// `filename*` in UTF-8 when the name is not plain ASCII.
pub(crate) fn content_disposition(name: &str, ext: &str) -> String {
    let full = format!("{name}.{ext}");
    // Path separators and control characters never make it into a file name.
    let safe: String = full
        .chars()
        .map(|c| {
            if c.is_control() || "/\\".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let fallback: String = safe
        .chars()
        .map(|c| match c {
            '"' => '\'',
            c if c.is_ascii() => c,
            _ => '_',
        })
        .collect();
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if safe.chars().all(tchar) {
        return format!("attachment; filename={safe}");
    }
    let mut value = format!("attachment; filename=\"{fallback}\"");
    if !safe.is_ascii() || safe.contains('"') {
        value.push_str("; filename*=UTF-8''");
        for b in safe.bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                value.push(b as char);
            } else {
                value.push_str(&format!("%{b:02X}"));
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_follows_rfc_6266() {
        assert_eq!(
            content_disposition("root-EC_256", "pem"),
            "attachment; filename=root-EC_256.pem"
        );
        assert_eq!(
            content_disposition("web server", "pem"),
            "attachment; filename=\"web server.pem\""
        );
        assert_eq!(
            content_disposition("a=b;c", "pem"),
            "attachment; filename=\"a=b;c.pem\""
        );
        assert_eq!(
            content_disposition("서버 1", "pem"),
            "attachment; filename=\"__ 1.pem\"; filename*=UTF-8''%EC%84%9C%EB%B2%84%201.pem"
        );
        assert_eq!(
            content_disposition("say \"hi\"/x\n", "pem"),
            "attachment; filename=\"say 'hi'_x_.pem\"; filename*=UTF-8''say%20%22hi%22_x_.pem"
        );
    }

    #[test]
    fn empty_or_repeated_query_parameters_are_named() {
        let q = Query::parse("type=&page=1").unwrap();
        let e = q.get("type").unwrap_err();
        assert!(e.message.starts_with("type: empty"), "{}", e.message);
        let e = Query::parse("page=0&page=abc")
            .unwrap()
            .paging()
            .unwrap_err();
        assert!(
            e.message.starts_with("page: given more than once"),
            "{}",
            e.message
        );
        let e = Query::parse("size=").unwrap().paging().unwrap_err();
        assert!(e.message.starts_with("size: empty"), "{}", e.message);
        assert_eq!(Query::parse("").unwrap().paging().unwrap(), (0, 10));
        assert_eq!(
            Query::parse("page=2&size=5").unwrap().paging().unwrap(),
            (2, 5)
        );
    }
}
