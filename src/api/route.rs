//! Routing for both path editions: `/v2.0/appkeys/{appkey}/ca-stores/{caStoreId}/...` and
//! `/v2.0/appkeys/{appkey}/cas/{caId}/...`.

use hyper::Method;

use super::error::ApiError;

/// A matched route, with its path parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Stores,
    Store(u64),
    Certs(u64),
    Cert(u64, u64),
    CertDownload(u64, u64),
    CertRevoke(u64, u64),
    Crl(u64, u64),
    CrlDer(u64, u64),
    CrlPem(u64, u64),
    Templates(u64),
    Template(u64, u64),
    TemplateIssue(u64, u64),
    /// POST `.../ocsp`.
    Ocsp(u64),
    /// GET `.../ocsp/{request}`: the raw (still percent-encoded) rest of the path.
    OcspGet(u64, String),
    AuditEvents,
    /// GET `/openapi.json`: the API reference (API listener only).
    OpenApi,
    /// `.../certs/{certId}/acme-tokens`.
    AcmeTokens(u64, u64),
    /// `.../certs/{certId}/acme-tokens/{tokenId}`.
    AcmeToken(u64, u64, u64),
}

impl Route {
    /// A stable label for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Stores => "stores",
            Route::Store(_) => "store",
            Route::Certs(_) => "certs",
            Route::Cert(..) => "cert",
            Route::CertDownload(..) => "cert_download",
            Route::CertRevoke(..) => "cert_revoke",
            Route::Crl(..) => "crl",
            Route::CrlDer(..) => "crl_der",
            Route::CrlPem(..) => "crl_pem",
            Route::Templates(_) => "templates",
            Route::Template(..) => "template",
            Route::TemplateIssue(..) => "template_issue",
            Route::Ocsp(_) => "ocsp_post",
            Route::OcspGet(..) => "ocsp_get",
            Route::AuditEvents => "audit_events",
            Route::OpenApi => "openapi",
            Route::AcmeTokens(..) => "acme_tokens",
            Route::AcmeToken(..) => "acme_token",
        }
    }

    /// The methods the route answers, as the `Allow` header of a 405 lists them.
    pub fn allow(&self) -> &'static str {
        match self {
            Route::Stores
            | Route::Certs(_)
            | Route::Templates(_)
            | Route::Crl(..)
            | Route::AcmeTokens(..) => "GET, HEAD, POST",
            Route::AcmeToken(..) => "DELETE",
            Route::Store(_) | Route::Template(..) => "GET, HEAD, PUT, DELETE",
            Route::CertRevoke(..) | Route::TemplateIssue(..) | Route::Ocsp(_) => "POST",
            Route::Healthz
            | Route::Cert(..)
            | Route::CertDownload(..)
            | Route::CrlDer(..)
            | Route::CrlPem(..)
            | Route::OcspGet(..)
            | Route::AuditEvents
            | Route::OpenApi => "GET, HEAD",
        }
    }

    /// The store a route is under, if any.
    pub fn store_id(&self) -> Option<u64> {
        match self {
            Route::Healthz | Route::OpenApi | Route::Stores | Route::AuditEvents => None,
            Route::Store(s)
            | Route::Certs(s)
            | Route::Cert(s, _)
            | Route::CertDownload(s, _)
            | Route::CertRevoke(s, _)
            | Route::Crl(s, _)
            | Route::CrlDer(s, _)
            | Route::CrlPem(s, _)
            | Route::Templates(s)
            | Route::Template(s, _)
            | Route::TemplateIssue(s, _)
            | Route::Ocsp(s)
            | Route::OcspGet(s, _)
            | Route::AcmeTokens(s, _)
            | Route::AcmeToken(s, _, _) => Some(*s),
        }
    }

    /// Public routes need no identity (RFC 5019: relying parties must not need TLS).
    pub fn is_public(&self, method: &Method) -> bool {
        match self {
            Route::Healthz | Route::CrlDer(..) | Route::CrlPem(..) | Route::OcspGet(..) => true,
            Route::Ocsp(_) => method == Method::POST,
            Route::OpenApi => true,
            _ => false,
        }
    }

    /// Served on the public listener (every other route is 404 there): the public routes
    /// except the API reference, which belongs to the API listener.
    pub fn on_public_listener(&self, method: &Method) -> bool {
        self.is_public(method) && *self != Route::OpenApi
    }
}

/// A route with the appkey it was asked under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matched {
    pub appkey: String,
    pub route: Route,
}

/// Matches a request path (without query). `None` means no such route (404).
pub fn parse(path: &str) -> Result<Option<Matched>, ApiError> {
    if path == "/healthz" {
        return Ok(Some(Matched {
            appkey: String::new(),
            route: Route::Healthz,
        }));
    }
    if path == "/openapi.json" {
        return Ok(Some(Matched {
            appkey: String::new(),
            route: Route::OpenApi,
        }));
    }
    let Some(rest) = path.strip_prefix("/v2.0/appkeys/") else {
        return Ok(None);
    };
    let (appkey, rest) = match rest.split_once('/') {
        Some((a, r)) => (a, r),
        None => return Ok(None),
    };
    let appkey = percent_decode(appkey)
        .ok_or_else(|| ApiError::malformed("appkey: bad percent-encoding"))?;
    if appkey.is_empty() {
        return Ok(None);
    }
    if let Some(c) = appkey.chars().find(|c| c.is_control()) {
        return Err(ApiError::malformed(format!(
            "appkey: control character U+{:04X} is not allowed",
            c as u32
        )));
    }
    if rest == "audit-events" {
        return Ok(Some(Matched {
            appkey,
            route: Route::AuditEvents,
        }));
    }
    let (edition, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let id_name = match edition {
        "ca-stores" => "caStoreId",
        "cas" => "caId",
        _ => return Ok(None),
    };
    if rest.is_empty() {
        return Ok(Some(Matched {
            appkey,
            route: Route::Stores,
        }));
    }
    let (store, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let store = id(id_name, store)?;
    // The OCSP GET request may itself contain '/', so match it before splitting further.
    if let Some(req) = rest.strip_prefix("ocsp/") {
        return Ok(Some(Matched {
            appkey,
            route: Route::OcspGet(store, req.to_owned()),
        }));
    }
    let parts: Vec<&str> = if rest.is_empty() {
        vec![]
    } else {
        rest.split('/').collect()
    };
    let route = match parts.as_slice() {
        [] => Route::Store(store),
        ["certs"] => Route::Certs(store),
        ["certs", c] => Route::Cert(store, id("certId", c)?),
        ["certs", c, "download"] => Route::CertDownload(store, id("certId", c)?),
        ["certs", c, "revoke"] => Route::CertRevoke(store, id("certId", c)?),
        ["certs", c, "crl"] => Route::Crl(store, id("issuerCertId", c)?),
        ["certs", c, "crl", "der"] => Route::CrlDer(store, id("issuerCertId", c)?),
        ["certs", c, "crl", "pem"] => Route::CrlPem(store, id("issuerCertId", c)?),
        ["certs", c, "acme-tokens"] => Route::AcmeTokens(store, id("certId", c)?),
        ["certs", c, "acme-tokens", t] => {
            Route::AcmeToken(store, id("certId", c)?, id("tokenId", t)?)
        }
        ["templates"] => Route::Templates(store),
        ["templates", t] => Route::Template(store, id("templateId", t)?),
        ["templates", t, "certificates"] => Route::TemplateIssue(store, id("templateId", t)?),
        ["ocsp"] => Route::Ocsp(store),
        _ => return Ok(None),
    };
    Ok(Some(Matched { appkey, route }))
}

/// An OCSP route, matched without allocating: the serving fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OcspPath<'a> {
    pub appkey: &'a str,
    pub store_id: u64,
    /// `Some` for GET `.../ocsp/{request}`: the raw (still percent-encoded) rest of the path.
    pub get_path: Option<&'a str>,
}

/// Matches `.../ocsp` and `.../ocsp/{request}` as `parse` does. `None` for every other path,
/// and for OCSP paths that `parse` would refuse or must decode (a bad store id, a
/// percent-encoded appkey): those take `parse`.
pub fn ocsp(path: &str) -> Option<OcspPath<'_>> {
    let rest = path.strip_prefix("/v2.0/appkeys/")?;
    let (appkey, rest) = rest.split_once('/')?;
    if appkey.is_empty() || appkey.contains('%') {
        return None;
    }
    let rest = rest
        .strip_prefix("ca-stores/")
        .or_else(|| rest.strip_prefix("cas/"))?;
    let (store, rest) = rest.split_once('/')?;
    if !store.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let store_id = store.parse::<u64>().ok().filter(|v| is_id(*v))?;
    let get_path = match rest.strip_prefix("ocsp")? {
        "" => None,
        tail => Some(tail.strip_prefix('/')?),
    };
    Some(OcspPath {
        appkey,
        store_id,
        get_path,
    })
}

/// The seed's ids are `Long`: 1 to 2^63-1.
fn id(name: &str, s: &str) -> Result<u64, ApiError> {
    match s.parse::<u64>() {
        Ok(v) if is_id(v) && s.bytes().all(|b| b.is_ascii_digit()) => Ok(v),
        _ => Err(ApiError::malformed(format!(
            "{name}: must be a positive integer up to 9223372036854775807, got {:?}",
            s.chars().take(32).collect::<String>()
        ))),
    }
}

fn is_id(v: u64) -> bool {
    v > 0 && i64::try_from(v).is_ok()
}

/// Decodes `%XX` escapes; `None` for bad escapes or non-UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: &str) -> Option<Route> {
        parse(p).unwrap().map(|m| m.route)
    }

    #[test]
    fn both_editions() {
        assert_eq!(r("/v2.0/appkeys/k/ca-stores"), Some(Route::Stores));
        assert_eq!(r("/v2.0/appkeys/k/ca-stores/7"), Some(Route::Store(7)));
        assert_eq!(r("/v2.0/appkeys/k/cas/7/certs/3"), Some(Route::Cert(7, 3)));
        assert_eq!(
            r("/v2.0/appkeys/k/cas/7/certs/3/crl/der"),
            Some(Route::CrlDer(7, 3))
        );
        assert_eq!(
            r("/v2.0/appkeys/k/ca-stores/7/ocsp/MEow/SD+x%3D"),
            Some(Route::OcspGet(7, "MEow/SD+x%3D".into()))
        );
        assert_eq!(
            r("/v2.0/appkeys/k/ca-stores/7/templates/2/certificates"),
            Some(Route::TemplateIssue(7, 2))
        );
        assert_eq!(
            r("/v2.0/appkeys/k/cas/7/certs/3/acme-tokens/9"),
            Some(Route::AcmeToken(7, 3, 9))
        );
        assert_eq!(
            r("/v2.0/appkeys/k/ca-stores/7/certs/3/acme-tokens"),
            Some(Route::AcmeTokens(7, 3))
        );
        assert_eq!(r("/v2.0/appkeys/k/other"), None);
        assert_eq!(r("/nope"), None);
        assert!(parse("/v2.0/appkeys/k/ca-stores/abc").is_err());
        assert!(parse("/v2.0/appkeys/k/ca-stores/0").is_err());
        assert!(parse("/v2.0/appkeys/k/ca-stores/+5").is_err());
        assert!(parse("/v2.0/appkeys/k/ca-stores/9223372036854775807").is_ok());
        for big in [
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
        ] {
            let e = parse(&format!("/v2.0/appkeys/k/ca-stores/{big}")).unwrap_err();
            assert!(e.message.starts_with("caStoreId:"), "{}", e.message);
            assert!(parse(&format!("/v2.0/appkeys/k/ca-stores/7/certs/{big}")).is_err());
            assert!(ocsp(&format!("/v2.0/appkeys/k/ca-stores/{big}/ocsp")).is_none());
        }
        for bad in ["x%0A2026", "x%00", "x%7F", "x%C2%85", "%1B"] {
            let e = parse(&format!("/v2.0/appkeys/{bad}/ca-stores")).unwrap_err();
            assert!(e.message.starts_with("appkey: control character"), "{bad}");
        }
        assert!(parse("/v2.0/appkeys/caf%C3%A9/ca-stores")
            .unwrap()
            .is_some());
    }

    #[test]
    fn ocsp_fast_match_agrees_with_parse() {
        for p in [
            "/v2.0/appkeys/k/ca-stores/7/ocsp",
            "/v2.0/appkeys/k/cas/7/ocsp",
            "/v2.0/appkeys/k/ca-stores/7/ocsp/",
            "/v2.0/appkeys/k/ca-stores/7/ocsp/MEow/SD+x%3D",
            "/v2.0/appkeys/k/cas/18446744073709551615/ocsp/abc",
            "/v2.0/appkeys/k/ca-stores/7/ocspx",
            "/v2.0/appkeys/k/ca-stores/7/ocsp2/x",
            "/v2.0/appkeys/k/ca-stores/7/certs/ocsp",
            "/v2.0/appkeys/k/ca-stores/0/ocsp",
            "/v2.0/appkeys/k/ca-stores/+7/ocsp",
            "/v2.0/appkeys/k/ca-stores//ocsp",
            "/v2.0/appkeys/k/ca-stores/18446744073709551616/ocsp",
            "/v2.0/appkeys/k%2F/ca-stores/7/ocsp",
            "/v2.0/appkeys//ca-stores/7/ocsp",
            "/v2.0/appkeys/k/stores/7/ocsp",
            "/v2.0/appkeys/k/ca-stores/7",
            "/v2.0/appkeys/k/ca-stores/7/",
            "/healthz",
        ] {
            let Some(fast) = ocsp(p) else {
                // Left to `parse`: anything not OCSP, and a percent-encoded appkey.
                let is_ocsp = matches!(
                    parse(p),
                    Ok(Some(Matched {
                        route: Route::Ocsp(_) | Route::OcspGet(..),
                        ..
                    }))
                );
                assert!(!is_ocsp || p.contains("/k%2F/"), "{p}");
                continue;
            };
            let want = match fast.get_path {
                None => Route::Ocsp(fast.store_id),
                Some(t) => Route::OcspGet(fast.store_id, t.to_owned()),
            };
            assert_eq!(
                parse(p).unwrap(),
                Some(Matched {
                    appkey: fast.appkey.to_owned(),
                    route: want
                }),
                "{p}"
            );
        }
    }
}
