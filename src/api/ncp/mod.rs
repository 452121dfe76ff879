//! The NAVER Cloud edition: NCP Private CA API v1 (`/api/v1/ca...`) on the API listener and the
//! public `/ext/{caTag}/{ocsp,crl,ca}` URLs on both listeners. A thin layer: every operation is
//! a `ca` domain call (`src/ca/ncp.rs`) over the same stores, issuers, leaves, revocation, CRLs
//! and pre-signed OCSP as `/v2.0`.
//!
//! Who may do what: an `ADMIN` key everything of its appkey; a `VIEWER` key reads (every GET);
//! a `VIEWER` key granted a CA (Add CA User) also operates that CA: issue, sign, revoke, CRL and
//! OCSP settings, trim. Creating, updating, deleting CAs and managing grants stay `ADMIN`.

mod auth;
mod body;
mod envelope;
mod views;

pub use auth::sign;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use self::auth::NcpCaller;
use self::body::Obj;
use self::envelope::{success, NcpError};
use super::source::StatusSource;
use super::{Api, Listener};
use crate::ca::{Ca, CaError, LeafMode, NcpCa, NcpCaParams, NcpCaType, NcpStatus};
use crate::config::Role;
use crate::pki::cert;
use crate::pki::KeyAlgorithm;

/// Whether a path belongs to this edition.
pub fn owns(path: &str) -> bool {
    path == "/api/v1" || path.starts_with("/api/v1/") || path.starts_with("/ext/")
}

/// Answers a request of this edition.
pub async fn handle(
    api: &Api,
    parts: hyper::http::request::Parts,
    body: Incoming,
    peer: &super::Peer,
    listener: Listener,
) -> Response<Full<Bytes>> {
    let path = parts.uri.path().to_owned();
    // Every answer, errors included, is given after the body was read (see `Api::handle`).
    let body = api
        .read_body(body, &parts.headers)
        .await
        .map_err(body_error);
    let result = if let Err(e) = body {
        Err(e)
    } else if let Some(rest) = path.strip_prefix("/ext/") {
        ext(api, &parts, body.unwrap_or_default(), rest).await
    } else if listener == Listener::Public {
        Err(NcpError::no_route())
    } else {
        v1(api, &parts, body.unwrap_or_default(), peer, &path).await
    };
    let response = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let route = if path.starts_with("/ext/") {
        "ncp_ext"
    } else {
        "ncp_v1"
    };
    crate::metrics::METRICS.request(route, response.status().as_u16());
    response
}

/// A body that could not be read, in this edition's envelope.
fn body_error(e: super::ApiError) -> NcpError {
    if e.status == StatusCode::PAYLOAD_TOO_LARGE {
        NcpError::Gateway {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            error_code: "430",
            message: "Request Entity Too Large",
        }
    } else {
        NcpError::bad(
            "INVALID_REQUEST",
            "Invalid request. (body could not be read)",
        )
    }
}

/// What a route needs of its caller.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// VIEWER.
    Read,
    /// ADMIN, or a grant on the CA.
    Operate,
    /// ADMIN.
    Admin,
}

fn allow(who: &NcpCaller, need: Need, ca: Option<&NcpCa>) -> Result<(), NcpError> {
    let ok = match need {
        Need::Read => true,
        Need::Admin => who.role == Role::Admin,
        Need::Operate => who.role == Role::Admin || ca.is_some_and(|c| who.granted(&c.grants)),
    };
    if ok {
        Ok(())
    } else {
        Err(NcpError::permission_denied())
    }
}

async fn blocking<T, F>(api: &Api, f: F) -> Result<T, NcpError>
where
    T: Send + 'static,
    F: FnOnce(&Ca) -> Result<T, CaError> + Send + 'static,
{
    let ca = api.ca.clone();
    tokio::task::spawn_blocking(move || f(&ca))
        .await
        .map_err(|e| NcpError::internal(format!("task failed: {e}")))?
        .map_err(NcpError::from)
}

async fn v1(
    api: &Api,
    parts: &hyper::http::request::Parts,
    body: Bytes,
    peer: &super::Peer,
    path: &str,
) -> Result<Response<Full<Bytes>>, NcpError> {
    let config = api
        .access
        .read()
        .map(|c| Arc::clone(&c))
        .map_err(|_| NcpError::internal("access lock poisoned"))?;
    // Authentication first: an unsigned request learns nothing, not even which routes exist.
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(path);
    let who = if parts.headers.contains_key("x-ncp-iam-access-key") {
        auth::authenticate(
            &config,
            &parts.method,
            target,
            &parts.headers,
            crate::ca::ncp_now_ms(),
        )?
    } else {
        auth::authenticate_v2(&config, &parts.headers, peer)?
    };

    let query = parts.uri.query().unwrap_or("").to_owned();
    let segs: Vec<&str> = path
        .trim_start_matches("/api/v1")
        .trim_start_matches('/')
        .split('/')
        .collect();
    let m = &parts.method;
    let delay = config.ncp_destroy_delay();
    let known_ids: Vec<String> = config
        .ncp_keys
        .iter()
        .flat_map(|k| [k.access_key.clone(), k.identity.clone()])
        .chain(config.access.iter().map(|a| a.identity.clone()))
        .collect();
    drop(config);
    match (m, segs.as_slice()) {
        (&Method::GET, ["ca"]) => list_cas(api, &who, &query).await,
        (&Method::POST, ["ca"]) => create_ca(api, &who, &query, &body).await,
        (_, ["ca", tag, rest @ ..]) => {
            let tag = (*tag).to_owned();
            let ca = {
                let appkey = who.appkey.clone();
                let t = tag.clone();
                blocking(api, move |ca| ca.ncp_ca(&appkey, &t)).await?
            };
            let need = match (m, rest) {
                (&Method::GET, _) => Need::Read,
                (&Method::PUT | &Method::DELETE, []) => Need::Admin,
                (_, ["users", ..]) | (_, ["activate"]) => Need::Admin,
                _ => Need::Operate,
            };
            allow(&who, need, Some(&ca))?;
            ca_route(api, &who, m, ca, rest, &query, &body, delay, &known_ids).await
        }
        _ => Err(NcpError::no_route()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn ca_route(
    api: &Api,
    who: &NcpCaller,
    m: &Method,
    ca: NcpCa,
    rest: &[&str],
    query: &str,
    body: &[u8],
    delay: u64,
    known_ids: &[String],
) -> Result<Response<Full<Bytes>>, NcpError> {
    let actor = who.actor();
    let tag = ca.ca_tag.clone();
    match (m, rest) {
        (&Method::GET, []) => {
            let v = blocking(api, move |c| ca_view(c, &ca)).await?;
            Ok(success(v))
        }
        (&Method::PUT, []) => {
            let o = body::object(body, false)?;
            let status = body::string(&o, &["status"])?;
            let memo = body::memo(body::string(&o, &["memo"])?)?;
            if status.is_none() && memo.is_none() {
                return Err(NcpError::bad("EMPTY_STATUS", "status is missing."));
            }
            if let Some(s) = &status {
                if ![
                    NcpStatus::ACTIVE,
                    NcpStatus::DEACTIVATED,
                    NcpStatus::DESTROYING,
                ]
                .contains(&s.as_str())
                {
                    return Err(NcpError::bad(
                        "INVALID_INPUT_STATUS",
                        "status: Invalid status value. (ACTIVE, DEACTIVATED or DESTROYING)",
                    ));
                }
            }
            let v = blocking(api, move |c| {
                let ca = c.ncp_update(&actor, &tag, status.as_deref(), memo, delay)?;
                let info = ca_view(c, &ca)?;
                Ok(info)
            })
            .await?;
            // Both documented shapes: the flat caInfo (SDK) and `data.caInfo` (current docs).
            let mut data = v["caInfo"].clone();
            if let Value::Object(o) = &mut data {
                o.insert("caInfo".into(), v["caInfo"].clone());
            }
            Ok(success(data))
        }
        (&Method::DELETE, []) => {
            blocking(api, move |c| c.ncp_delete(&actor, &tag)).await?;
            Ok(success(Value::Null))
        }
        (&Method::GET, ["chain"]) => {
            let pem = blocking(api, move |c| {
                let chain = c.ncp_chain(&ca)?;
                Ok(chain.iter().map(|d| cert::to_pem(d)).collect::<String>())
            })
            .await?;
            Ok(success(json!(pem)))
        }
        (&Method::GET, ["crl"]) => {
            let der = blocking(api, move |c| c.ncp_crl(&ca)).await?;
            Ok(success(json!(crate::pki::crl::to_pem(&der))))
        }
        (&Method::GET, ["crl", "config"]) => {
            let days = match ca.crl_expiry_days {
                Some(d) => d,
                None => {
                    let (appkey, sid) = (ca.appkey.clone(), ca.store_id);
                    let s = blocking(api, move |c| c.store_info(&appkey, sid)).await?;
                    s.crl_refresh_period
                }
            };
            Ok(success(json!({"expiry": days.to_string()})))
        }
        (&Method::PUT, ["crl", "config"]) => {
            let o = body::object(body, false)?;
            let e = body::string(&o, &["expiry"])?
                .ok_or_else(|| NcpError::bad("INVALID_INPUT", "expiry is missing."))?;
            let days = match e.parse::<u32>() {
                Ok(d) if d >= 3 && e.bytes().all(|b| b.is_ascii_digit()) => d,
                _ => {
                    return Err(NcpError::bad(
                        "INVALID_INPUT",
                        "expiry: Invalid input. (days, at least 3)",
                    ))
                }
            };
            blocking(api, move |c| c.ncp_set_crl_days(&actor, &tag, days)).await?;
            Ok(success(json!({"expiry": days.to_string()})))
        }
        (&Method::POST, ["crl", "rotate"]) => {
            blocking(api, move |c| c.ncp_rotate_crl(&ca)).await?;
            Ok(success(Value::Null))
        }
        (&Method::POST, ["trim"]) => {
            blocking(api, move |c| c.ncp_trim(&actor, &tag)).await?;
            Ok(success(Value::Null))
        }
        (&Method::PUT, ["urls"]) => {
            let o = body::object(body, false)?;
            let url = body::string(&o, &["ocsp_servers", "ocspServers"])?
                .ok_or_else(|| NcpError::bad("INVALID_INPUT", "ocsp_servers are missing."))?;
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.len() > 2048
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(NcpError::bad(
                    "INVALID_INPUT",
                    "ocsp_servers: Invalid input. (an http:// or https:// URL)",
                ));
            }
            blocking(api, move |c| c.ncp_set_ocsp(&actor, &tag, Some(url))).await?;
            Ok(success(Value::Null))
        }
        (&Method::DELETE, ["urls"]) => {
            blocking(api, move |c| c.ncp_set_ocsp(&actor, &tag, None)).await?;
            Ok(success(Value::Null))
        }
        (&Method::GET, ["cert"]) => {
            let page = body::page_no(query)?;
            let list = blocking(api, move |c| c.ncp_end_certs(&ca)).await?;
            const SIZE: u64 = 100;
            let total = list.len() as u64;
            let serials: Vec<String> = list
                .iter()
                .skip(((page - 1).saturating_mul(SIZE)) as usize)
                .take(SIZE as usize)
                .map(|c| body::serial_text(&c.serial))
                .collect();
            Ok(success(json!({
                "totalCnt": total,
                "listCerts": serials,
                "totalPageNo": total.div_ceil(SIZE).max(1),
                "currentPageNo": page,
            })))
        }
        (&Method::POST, ["cert"]) => issue_end_cert(api, who, &tag, body).await,
        (&Method::POST, ["cert", "sign"]) => sign_end_csr(api, who, &tag, query, body).await,
        (&Method::GET, ["cert", serial]) => {
            let serial = body::serial(serial)?;
            let (leaf, chain) = blocking(api, move |c| c.ncp_end_cert(&ca, &serial)).await?;
            let v = views::end_cert(&leaf, &chain, leaf.ocsp_url.as_deref());
            Ok(success(v))
        }
        (&Method::POST, ["cert", serial, "revoke"]) => {
            let serial = body::serial(serial)?;
            blocking(api, move |c| c.ncp_revoke(&actor, &tag, &serial)).await?;
            Ok(success(Value::Null))
        }
        (&Method::GET, ["users"]) => {
            let v: Vec<Value> = ca
                .grants
                .iter()
                .map(|g| json!({"loginId": g, "mbrNo": "", "idNo": g}))
                .collect();
            Ok(success(json!(v)))
        }
        (&Method::POST, ["users"]) => {
            let o = body::object(body, false)?;
            let id = body::string(&o, &["idNo"])?
                .ok_or_else(|| NcpError::bad("EMPTY_ID_NO", "idNo is missing."))?;
            if !known_ids.contains(&id) {
                return Err(NcpError::bad(
                    "INVAILD_ID_NO",
                    "Invalid id no. (idNo: an access key or identity of pcad's config)",
                ));
            }
            blocking(api, move |c| c.ncp_grant(&actor, &tag, &id, true)).await?;
            Ok(success(Value::Null))
        }
        (&Method::DELETE, ["users", id]) => {
            let id = super::route::percent_decode(id)
                .ok_or_else(|| NcpError::bad("INVAILD_ID_NO", "Invalid id no."))?;
            blocking(api, move |c| c.ncp_grant(&actor, &tag, &id, false)).await?;
            Ok(success(Value::Null))
        }
        (&Method::GET, ["sub", "csr"]) => {
            let pem = blocking(api, move |c| c.ncp_sub_csr(&ca)).await?;
            Ok(success(json!({ "csrPem": pem })))
        }
        (&Method::POST, ["sub", "sign"]) => {
            let o = body::object(body, false)?;
            let period = body::period(
                &body::string(&o, &["period"])?
                    .ok_or_else(|| NcpError::bad("INVALID_INPUT_PERIOD", "period is missing."))?,
            )?
            .ok_or_else(|| {
                NcpError::bad(
                    "INVALID_INPUT_PERIOD",
                    "period: Invalid period value. (days 1 to 3650)",
                )
            })?;
            let csr_pem = body::string(&o, &["csrPem"])?
                .ok_or_else(|| NcpError::bad("EMPTY_CSR", "csr is missing."))?;
            let csr = crate::pki::csr::parse(&csr_pem)
                .map_err(|e| NcpError::bad("INVALID_INPUT", format!("Invalid csr. ({e})")))?;
            let v = blocking(api, move |c| {
                let (ca, cert) = c.ncp_sign_sub_csr(&actor, &tag, csr, period)?;
                let chain = c.ncp_chain(&ca)?;
                Ok(json!({
                    "certificate": cert::to_pem(&cert.der),
                    "caChain": chain.iter().map(|d| cert::to_pem(d)).collect::<Vec<_>>(),
                    "ocspResponder": cert.ocsp_url.clone().unwrap_or_default(),
                    "issuer": chain.first().map(|d| cert::to_pem(d)).unwrap_or_default(),
                    "serialNo": body::serial_text(&cert.serial),
                }))
            })
            .await?;
            Ok(success(v))
        }
        (&Method::POST, ["activate"]) => {
            let o = body::object(body, false)?;
            let cert_pem = body::string(&o, &["certPem"])?
                .ok_or_else(|| NcpError::bad("EMPTY_CERT", "cert is missing."))?;
            let chain_pem = body::string(&o, &["caChainPem", "caChain"])?
                .ok_or_else(|| NcpError::bad("INVALID_INPUT_CA_CHAIN", "chain is missing."))?;
            let cert_der = cert::from_pem(&cert_pem).map_err(|_| {
                NcpError::bad("INVALID_INPUT_CERT", "certPem: Invalid certificate value.")
            })?;
            let chain = pem_certs(&chain_pem).ok_or_else(|| {
                NcpError::bad(
                    "INVALID_INPUT_CA_CHAIN",
                    "caChainPem: Certificate validation failed: The CA chain is invalid. (not PEM certificates)",
                )
            })?;
            let v = blocking(api, move |c| {
                let ca = c.ncp_activate(&actor, &tag, cert_der, chain)?;
                ca_view(c, &ca)
            })
            .await?;
            Ok(success(v))
        }
        _ => Err(NcpError::no_route()),
    }
}

/// The `json_bodies` fuzz target's way in: every NCP body check on arbitrary bytes.
#[doc(hidden)]
pub fn fuzz_bodies(bytes: &[u8]) {
    if let Ok(o) = body::object(bytes, true) {
        let _ = body::x509(&o);
        let _ = body::string(&o, &["alias"]).map(body::alias);
        let _ = body::string(&o, &["keyType"]).map(body::key_type);
        let _ = check_csr_key(&o, KeyAlgorithm::P256);
        if let Ok(Some(p)) = body::string(&o, &["period"]) {
            let _ = body::period(&p);
        }
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        let _ = body::serial(s);
        let _ = body::page_no(s);
        let _ = pem_certs(s);
    }
}

/// Every `CERTIFICATE` block of a PEM text; `None` when there is none or one is bad.
fn pem_certs(text: &str) -> Option<Vec<Vec<u8>>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let end = rest[start..].find(END)? + start + END.len();
        out.push(cert::from_pem(&rest[start..end]).ok()?);
        rest = &rest[end..];
    }
    (!out.is_empty()).then_some(out)
}

/// `{caInfo, caCertInfo}` of a CA.
fn ca_view(c: &Ca, ca: &NcpCa) -> Result<Value, CaError> {
    let cert = c.ncp_ca_cert(ca)?;
    let count = cert.as_ref().map_or(0, |x| x.signing_count);
    Ok(json!({
        "caInfo": views::ca_info(ca, &c.base_url, count),
        "caCertInfo": views::ca_cert_info(cert.as_ref()),
    }))
}

async fn list_cas(
    api: &Api,
    who: &NcpCaller,
    query: &str,
) -> Result<Response<Full<Bytes>>, NcpError> {
    const SIZE: u64 = 20;
    let page = body::page_no(query)?;
    let appkey = who.appkey.clone();
    let (total, items) = blocking(api, move |c| {
        let all = c.ncp_cas(&appkey)?;
        let total = all.len() as u64;
        let items = all
            .iter()
            .skip(((page - 1).saturating_mul(SIZE)) as usize)
            .take(SIZE as usize)
            .map(|ca| ca_view(c, ca))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((total, items))
    })
    .await?;
    Ok(success(json!({
        "totalCnt": total,
        "caInfoList": items,
        "totalPageNo": total.div_ceil(SIZE).max(1),
        "currentPageNo": page,
    })))
}

async fn create_ca(
    api: &Api,
    who: &NcpCaller,
    query: &str,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, NcpError> {
    allow(who, Need::Admin, None)?;
    let ca_type = match body::query(query, "caType") {
        None | Some("") => return Err(NcpError::bad("EMPTY_CA_TYPE", "ca type is missing.")),
        Some("PRIVATE_ROOT") => NcpCaType::Root,
        Some("PRIVATE_SUB") => NcpCaType::Sub,
        Some(_) => {
            return Err(NcpError::bad(
                "INVALID_INPUT",
                "Invalid ca type. (caType: PRIVATE_ROOT or PRIVATE_SUB)",
            ))
        }
    };
    let issuer_tag = body::query(query, "issuerTag")
        .filter(|s| !s.is_empty())
        .map(|s| super::route::percent_decode(s).unwrap_or_default());
    let o = body::object(body, false)?;
    let alias = body::alias(body::string(&o, &["alias"])?)?;
    let memo = body::memo(body::string(&o, &["memo"])?)?;
    let key = body::key_type(body::string(&o, &["keyType"])?)?
        .ok_or_else(|| NcpError::bad("EMPTY_KEY_TYPE", "key type is missing. (keyType)"))?;
    let period = body::period(
        &body::string(&o, &["period"])?
            .ok_or_else(|| NcpError::bad("EMPTY_CA_TTL", "period is missing."))?,
    )?;
    let (subject, sans) = body::x509(&o)?;
    let actor = who.actor();
    let p = NcpCaParams {
        ca_type,
        issuer_tag,
        alias,
        memo,
        key,
        period_days: period,
        subject,
        sans,
    };
    let v = blocking(api, move |c| {
        let ca = c.ncp_create_ca(&actor, p)?;
        ca_view(c, &ca)
    })
    .await?;
    Ok(success(v))
}

async fn issue_end_cert(
    api: &Api,
    who: &NcpCaller,
    tag: &str,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, NcpError> {
    let o = body::object(body, false)?;
    let key = body::key_type(body::string(&o, &["keyType"])?)?.unwrap_or(KeyAlgorithm::Rsa2048);
    let period = match body::string(&o, &["period"])? {
        Some(p) => body::period(&p)?,
        None => None,
    };
    let (subject, sans) = body::x509(&o)?;
    let actor = who.actor();
    let tag = tag.to_owned();
    let v = blocking(api, move |c| {
        let leaf = c.ncp_issue(&actor, &tag, LeafMode::Generate, key, subject, sans, period)?;
        let chain = c.ncp_chain(&leaf.ca)?;
        let private_key = match &leaf.issued.key {
            Some(k) => k.0.pkcs8_pem()?,
            None => String::new(),
        };
        Ok(json!({
            "privateKey": private_key,
            "certificate": cert::to_pem(&leaf.issued.der),
            "caChain": chain.iter().map(|d| cert::to_pem(d)).collect::<String>(),
            "ocspResponder": leaf.ca.ocsp_url.clone().unwrap_or_default(),
            "issuer": chain.first().map(|d| cert::to_pem(d)).unwrap_or_default(),
            "serialNo": body::serial_text(&leaf.issued.serial),
        }))
    })
    .await?;
    Ok(success(v))
}

async fn sign_end_csr(
    api: &Api,
    who: &NcpCaller,
    tag: &str,
    query: &str,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, NcpError> {
    let o = body::object(body, false)?;
    let csr_pem = body::string(&o, &["csrPem"])?
        .ok_or_else(|| NcpError::bad("EMPTY_CSR", "csr is missing."))?;
    let csr = crate::pki::csr::parse(&csr_pem)
        .map_err(|e| NcpError::bad("INVALID_INPUT", format!("Invalid csr. ({e})")))?;
    let period = match body::string(&o, &["period"])?.or_else(|| {
        body::query(query, "period")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }) {
        Some(p) => body::period(&p)?,
        None => None,
    };
    check_csr_key(&o, csr.key_algorithm)?;
    let actor = who.actor();
    let tag = tag.to_owned();
    let v = blocking(api, move |c| {
        let key = csr.key_algorithm;
        let leaf = c.ncp_issue(
            &actor,
            &tag,
            LeafMode::Sign(Box::new(csr)),
            key,
            Default::default(),
            Default::default(),
            period,
        )?;
        let chain = c.ncp_chain(&leaf.ca)?;
        Ok(json!({
            "certificate": cert::to_pem(&leaf.issued.der),
            "caChain": chain.iter().map(|d| cert::to_pem(d)).collect::<Vec<_>>(),
            "ocspResponder": leaf.ca.ocsp_url.clone().unwrap_or_default(),
            "issuer": chain.first().map(|d| cert::to_pem(d)).unwrap_or_default(),
            "serialNo": body::serial_text(&leaf.issued.serial),
        }))
    })
    .await?;
    Ok(success(v))
}

/// The cert-manager issuer's `keyType` (`RSA`/`ECDSA`, or NCP's `RSA2048`-style) and `keyBits`
/// must describe the CSR's key when they are sent.
fn check_csr_key(o: &Obj, key: KeyAlgorithm) -> Result<(), NcpError> {
    if let Some(kt) = body::string(o, &["keyType"])? {
        let family_ok = match kt.to_ascii_uppercase().as_str() {
            "RSA" | "RSA2048" | "RSA3072" | "RSA4096" => key.family() == crate::pki::KeyFamily::Rsa,
            "EC" | "ECDSA" | "EC256" | "EC384" | "EC521" => {
                key.family() == crate::pki::KeyFamily::Ec
            }
            _ => {
                return Err(NcpError::bad(
                    "INVALID_X509_KEY_TYPE",
                    "keyType: Invalid keyType. (RSA or ECDSA)",
                ))
            }
        };
        if !family_ok {
            return Err(NcpError::bad(
                "INVALID_X509_KEY_TYPE",
                "CSR's keyType and the request body's keyType don't match.",
            ));
        }
    }
    if let Some(bits) = body::string(o, &["keyBits"])? {
        let n: u32 = bits.parse().map_err(|_| {
            NcpError::bad("INVALID_INPUT", "Unsupported keyBits. (keyBits: a number)")
        })?;
        if n != key.key_size() {
            return Err(NcpError::bad(
                "INVALID_INPUT",
                "CSR's keyBits and the request body's keyBits don't match.",
            ));
        }
    }
    Ok(())
}

/// `/ext/{caTag}/ocsp` (POST, and GET `/ext/{caTag}/ocsp/{request}`), `/ext/{caTag}/crl` (DER)
/// and `/ext/{caTag}/ca` (the CA certificate, DER): public, no authentication. OCSP and CRL are
/// answered by `ext_public`, the code the responders run too; the CA certificate needs the
/// appliance's database.
async fn ext(
    api: &Api,
    parts: &hyper::http::request::Parts,
    body: Bytes,
    rest: &str,
) -> Result<Response<Full<Bytes>>, NcpError> {
    if let Some(r) = ext_public(&*api.source, parts, &body, rest).await {
        return r;
    }
    let (tag, what) = rest.split_once('/').ok_or_else(NcpError::no_route)?;
    let m = &parts.method;
    if what != "ca" || (m != Method::GET && m != Method::HEAD) {
        return Err(NcpError::no_route());
    }
    let tag = tag.to_owned();
    let der = blocking(api, move |c| {
        c.ncp_ca_der(&tag)?
            .ok_or_else(|| CaError::NotFound(UNKNOWN_CA.into()))
    })
    .await?;
    Ok(der_response(der, "application/pkix-cert"))
}

const UNKNOWN_CA: &str = "NOT_FOUND: The CA doesn't exist.";

/// `/ext/{caTag}/ocsp` and `/ext/{caTag}/crl` from any `StatusSource` (the appliance and the
/// responders run this same code, so both answer byte-for-byte alike). An unknown tag is
/// NOT_FOUND whatever follows it; `None` for a known tag's other routes.
pub(in crate::api) async fn ext_public(
    source: &dyn StatusSource,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    rest: &str,
) -> Option<Result<Response<Full<Bytes>>, NcpError>> {
    let Some((tag, what)) = rest.split_once('/') else {
        return Some(Err(NcpError::no_route()));
    };
    let target = match source.ca_tag(tag).await {
        Ok(Some(t)) => t,
        Ok(None) => return Some(Err(CaError::NotFound(UNKNOWN_CA.into()).into())),
        Err(e) => return Some(Err(from_api(e))),
    };
    let m = &parts.method;
    let get = m == Method::GET || m == Method::HEAD;
    let (store_id, appkey) = (target.store_id, &*target.appkey);
    if what == "ocsp" && m == Method::POST {
        let r = super::revocation::ocsp(source, appkey, store_id, None, &parts.headers, body);
        return Some(Ok(r.await));
    }
    if let Some(req) = what.strip_prefix("ocsp/").filter(|_| get) {
        let r = super::revocation::ocsp(source, appkey, store_id, Some(req), &parts.headers, &[]);
        return Some(Ok(r.await));
    }
    if what == "crl" && get {
        return Some(
            match source
                .crl(appkey.to_owned(), store_id, target.issuer_id)
                .await
            {
                Ok(crl) => Ok(der_response(crl.der, "application/pkix-crl")),
                Err(e) => Err(from_api(e)),
            },
        );
    }
    None
}

/// A responder's `/ext/` request: the body read as the appliance reads it, then `ext_public`.
pub(in crate::api) async fn serve_ext(
    source: &dyn StatusSource,
    parts: hyper::http::request::Parts,
    body: Incoming,
    body_timeout: std::time::Duration,
) -> Response<Full<Bytes>> {
    let body = super::read_body_within(body, &parts.headers, body_timeout).await;
    let result = match body {
        Err(e) => Err(body_error(e)),
        Ok(body) => {
            let rest = parts.uri.path().strip_prefix("/ext/").unwrap_or_default();
            ext_public(source, &parts, &body, rest)
                .await
                .unwrap_or_else(|| Err(NcpError::no_route()))
        }
    };
    let response = result.unwrap_or_else(NcpError::into_response);
    crate::metrics::METRICS.request("ncp_ext", response.status().as_u16());
    response
}

/// An error of the shared public code, in this edition's envelope.
fn from_api(e: super::ApiError) -> NcpError {
    match e.status {
        StatusCode::NOT_FOUND => CaError::NotFound(e.message).into(),
        StatusCode::SERVICE_UNAVAILABLE => NcpError::Service {
            status: e.status,
            code: "FAIL_CORE".into(),
            msg: e.message,
        },
        _ => NcpError::internal(e.message),
    }
}

fn der_response(der: Vec<u8>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(der)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn bodies_never_panic() {
        for b in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"x509Parameters\":{\"commonName\":\"\xc3\xa9\",\"ip\":\"1.2.3.4,::1,\"}}",
            b"{\"X509CaParameters\":7,\"alias\":5,\"period\":\"MAX\",\"keyBits\":\"x\"}",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            b"-----BEGIN CERTIFICATE-----",
            "0a:\u{e9}\u{e9}".as_bytes(),
            b"\xff\xfe",
        ] {
            super::fuzz_bodies(b);
        }
    }
}
