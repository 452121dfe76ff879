//! One function per route. Each parses its input into checked parameters, runs the CA operation
//! on a blocking thread, and shapes the answer.

use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::body::{self, IssuerBody, StoreBody};
use super::error::ApiError;
use super::leaf_body::{Format, KeyFormat, LeafBody, LeafRequest, RevokeBody, TemplateBody};
use super::revocation::{self, CrlForm};
use super::route::{percent_decode, Matched, Route};
use super::{views, Api, Authed, Reply};
use crate::ca::Target;
use crate::config::Role;
use crate::store::{AuditFilter, CertFilter};

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
    if !super::known_method(method) {
        return Err(ApiError::method_not_allowed());
    }
    // HEAD is GET without the body (hyper leaves the body out).
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let appkey = m.appkey.clone();
    match (method.clone(), m.route, caller) {
        (Method::GET, Route::Healthz, _) => Ok(health(api)),
        (Method::GET, Route::CrlDer(s, c), _) => {
            revocation::crl(api, appkey, s, c, CrlForm::Der).await
        }
        (Method::GET, Route::CrlPem(s, c), _) => {
            revocation::crl(api, appkey, s, c, CrlForm::Pem).await
        }
        (Method::POST, Route::Ocsp(s), _) => Ok(Reply::Ready(
            revocation::ocsp(api, &appkey, s, None, headers, &body).await,
        )),
        (Method::GET, Route::OcspGet(s, path), _) => Ok(Reply::Ready(
            revocation::ocsp(api, &appkey, s, Some(&path), headers, &body).await,
        )),
        (_, route @ (Route::AcmeTokens(..) | Route::AcmeToken(..)), Some(who)) => {
            super::acme::tokens(api, method, route, who, query, headers, body).await
        }
        (_, route, Some(who)) => management(api, method, route, who, query, body).await,
        (_, _, None) => Err(ApiError::method_not_allowed()),
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
            let search = q.get("search");
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
            let s = api.blocking(move |ca| ca.store(&appkey, id)).await?;
            Ok(Reply::Json(views::store(&s)))
        }
        (Method::PUT, Route::Store(id)) => {
            admin_and(api, &who, move |ca, k| ca.store(k, id)).await?;
            let params = body::json::<StoreBody>(&body)?.check()?;
            let s = api
                .blocking(move |ca| ca.update_store(&actor, id, params))
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
            let search = q.get("search");
            let filter = match q.get("type").as_deref() {
                None | Some("all") => CertFilter::All,
                Some("issuer") => CertFilter::Issuer,
                Some("leaf") => CertFilter::Leaf,
                Some(other) => {
                    return Err(ApiError::malformed(format!(
                        "type: unknown value {other:?}; must be all, issuer or leaf"
                    )))
                }
            };
            let p = api
                .blocking(move |ca| {
                    ca.store(&appkey, store)?;
                    Ok(ca
                        .db
                        .list_certs(store, filter, search.as_deref(), page, size)?)
                })
                .await?;
            Ok(Reply::Json(views::page(&p, views::cert)))
        }
        (Method::POST, Route::Certs(store)) => {
            admin_and(api, &who, move |ca, k| ca.store(k, store)).await?;
            let params = body::json::<IssuerBody>(&body)?.check()?;
            let c = api
                .blocking(move |ca| ca.create_issuer(&actor, store, params))
                .await?;
            let chain = {
                let c = c.clone();
                api.blocking(move |ca| ca.chain(&c)).await?
            };
            Ok(Reply::Json(views::cert_detail(&c, &chain)))
        }
        (Method::GET, Route::Cert(store, id)) => {
            let (c, chain) = api
                .blocking(move |ca| {
                    let c = ca.cert(&appkey, store, id)?;
                    let chain = ca.chain(&c)?;
                    Ok((c, chain))
                })
                .await?;
            Ok(Reply::Json(views::cert_detail(&c, &chain)))
        }
        (Method::GET, Route::CertDownload(store, id)) => {
            let c = api.blocking(move |ca| ca.cert(&appkey, store, id)).await?;
            Ok(Reply::Raw {
                status: StatusCode::OK,
                content_type: "application/x-pem-file",
                headers: vec![(
                    "content-disposition",
                    format!("attachment; filename={}.pem", download_name(&c.name)),
                )],
                body: Bytes::from(crate::pki::cert::to_pem(&c.der)),
            })
        }
        (Method::GET, Route::Crl(s, c)) => revocation::crl(api, appkey, s, c, CrlForm::Info).await,
        (Method::POST, Route::Crl(s, c)) => {
            who.require(Role::Admin)?;
            revocation::renew_crl(api, actor, s, c, &body).await
        }
        (Method::GET, Route::AuditEvents) => {
            who.require(Role::Admin)?;
            let (page, size) = q.paging()?;
            let filter = AuditFilter {
                action: q.get("action"),
                from: q.time("from")?,
                to: q.time("to")?,
            };
            let p = api
                .blocking(move |ca| Ok(ca.db.list_audit(&appkey, &filter, page, size)?))
                .await?;
            Ok(Reply::Json(views::page(&p, |e| {
                let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
                v["time"] = json!(super::timestamp(e.time));
                v
            })))
        }
        (Method::POST, Route::CertRevoke(store, id)) => {
            admin_and(api, &who, move |ca, k| ca.cert(k, store, id)).await?;
            let reason = RevokeBody::reason(&body)?;
            let c = api
                .blocking(move |ca| ca.revoke(&actor, store, id, reason))
                .await?;
            Ok(Reply::Json(views::cert(&c)))
        }
        (Method::GET, Route::Templates(store)) => {
            let (page, size) = q.paging()?;
            let search = q.get("search");
            let p = api
                .blocking(move |ca| {
                    ca.list_templates(&appkey, store, search.as_deref(), page, size)
                })
                .await?;
            Ok(Reply::Json(views::page(&p, views::template)))
        }
        (Method::POST, Route::Templates(store)) => {
            admin_and(api, &who, move |ca, k| ca.store(k, store)).await?;
            let params = body::json::<TemplateBody>(&body)?.check()?;
            let t = api
                .blocking(move |ca| ca.create_template(&actor, store, params))
                .await?;
            Ok(Reply::Json(views::template(&t)))
        }
        (Method::GET, Route::Template(store, id)) => {
            let t = api
                .blocking(move |ca| ca.template(&appkey, store, id))
                .await?;
            Ok(Reply::Json(views::template(&t)))
        }
        (Method::PUT, Route::Template(store, id)) => {
            admin_and(api, &who, move |ca, k| ca.template(k, store, id)).await?;
            let params = body::json::<TemplateBody>(&body)?.check()?;
            let t = api
                .blocking(move |ca| ca.update_template(&actor, store, id, params))
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
                    admin_and(api, &who, move |ca, k| ca.template(k, store, id)).await?;
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
        (_, _) => Err(ApiError::method_not_allowed()),
    }
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
    let chain: Vec<&crate::store::CertRecord> = leaf
        .chain
        .iter()
        .filter(|c| !(remove_roots && c.cert_type == crate::store::CertType::Root))
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
        "serialNumber": crate::ca::hex(&leaf.serial),
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

fn health(api: &Api) -> Reply {
    let h = api.ca.hsm.health();
    let up = h.up;
    let body = json!({
        "hsm": if up { "up" } else { "down" },
        "status": if up { "ok" } else { "degraded" },
        "reason": h.reason,
        "recovering": h.recovering,
        "sinceSeconds": h.since.as_secs(),
        "token": h.token_label,
        "sessions": h.sessions,
        "ocspCachedResponses": api.ca.publisher.cached_responses(),
    });
    Reply::Raw {
        status: if up {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        content_type: "application/json",
        headers: vec![("cache-control", "no-store".into())],
        body: Bytes::from(body.to_string()),
    }
}

/// A certificate name as a file name: path separators, quotes and control characters replaced.
fn download_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_control() || "/\\\";".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.is_ascii() {
        s
    } else {
        s.chars()
            .map(|c| if c.is_ascii() { c } else { '_' })
            .collect()
    }
}

/// A parsed query string.
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(q: &str) -> Result<Query, ApiError> {
        let mut out = Vec::new();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                percent_decode(&s.replace('+', " ")).ok_or_else(|| {
                    ApiError::malformed(format!("query: bad percent-encoding in {k}"))
                })
            };
            out.push((dec(k)?, dec(v)?));
        }
        Ok(Query(out))
    }

    fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    }

    /// A time filter: the seed's `2024-01-01 00:00:00`, or `2024-01-01T00:00:00` (UTC).
    fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let v = v.replace('T', " ");
        chrono::NaiveDateTime::parse_from_str(&v, "%Y-%m-%d %H:%M:%S")
            .map(|t| Some(t.and_utc().timestamp()))
            .map_err(|_| ApiError::invalid(format!("{key}: must look like 2024-01-01 00:00:00")))
    }

    /// `page` (from 0, default 0) and `size` (1 to 1000, default 10).
    pub(super) fn paging(&self) -> Result<(u64, u64), ApiError> {
        let num = |key: &str, default: u64| -> Result<u64, ApiError> {
            match self.get(key) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .map_err(|_| ApiError::malformed(format!("{key}: must be a whole number"))),
            }
        };
        let page = num("page", 0)?;
        let size = num("size", 10)?;
        if !(1..=1000).contains(&size) {
            return Err(ApiError::invalid("size: must be 1 to 1000"));
        }
        if page > 1_000_000_000 {
            return Err(ApiError::invalid("page: must be 0 to 1000000000"));
        }
        Ok((page, size))
    }
}
