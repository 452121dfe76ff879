//! The API reference: `docs/openapi.json`, built into the binary and served at
//! `GET /openapi.json` on the API listener. It holds no tenant data, so it needs no identity.

use bytes::Bytes;
use hyper::StatusCode;

use super::Reply;

/// The OpenAPI 3.1 document of every route this build serves.
pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

/// `GET /openapi.json`.
pub fn openapi() -> Reply {
    Reply::Raw {
        status: StatusCode::OK,
        content_type: "application/json",
        headers: vec![("cache-control", "public, max-age=3600".into())],
        body: Bytes::from_static(OPENAPI_JSON.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use hyper::Method;
    use serde_json::Value;

    use super::super::route::{parse, Route};
    use super::super::{acme, ncp};
    use super::OPENAPI_JSON;

    /// A path template with sample values for its parameters.
    fn concrete(template: &str) -> String {
        template
            .split('/')
            .map(|seg| match seg {
                "{appkey}" => "k",
                "{ocspRequest}" => "MEow",
                s if s.starts_with('{') => "7",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// A path of the editions with routers of their own (ACME, NCP): `None` for a `/v2.0` path.
    /// Their operations are public exactly when they need no header identity: ACME (a JWS in
    /// the body) and NCP's `/ext/` URLs (also on the public listener); `/api/v1` needs one.
    fn own_router(template: &str, item: &Value) -> Option<&'static str> {
        let path = concrete(template);
        let (name, public, listed) = if path.starts_with(acme::PREFIX) {
            ("acme", true, false)
        } else if ncp::owns(&path) {
            let ext = path.starts_with("/ext/");
            (if ext { "ncp_ext" } else { "ncp_v1" }, ext, ext)
        } else {
            return None;
        };
        assert_eq!(item.get("servers").is_some(), listed, "{template}: servers");
        for (method, op) in item.as_object().unwrap() {
            if method == "servers" || method == "parameters" {
                continue;
            }
            let security = op["security"].as_array();
            let none = security.is_some_and(|s| s.is_empty());
            assert_eq!(none, public, "{method} {template}: security");
            if name == "ncp_v1" {
                let schemes = security.expect("NCP operations name their security");
                assert!(
                    schemes[0].get("ncpSignature").is_some(),
                    "{method} {template}: NCP's signature first"
                );
            }
        }
        Some(name)
    }

    /// Every path of the document is a route of `route::parse` (or of the ACME and NCP
    /// routers, which own their prefixes), its public operations are exactly the public
    /// routes, and every route is in the document: the reference and the router cannot drift
    /// apart silently.
    #[test]
    fn document_and_router_agree() {
        let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("docs/openapi.json parses");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut seen = BTreeSet::new();
        let mut others = BTreeSet::new();
        for (template, item) in doc["paths"].as_object().unwrap() {
            if let Some(router) = own_router(template, item) {
                others.insert(router);
                continue;
            }
            let path = concrete(template);
            let route = parse(&path)
                .unwrap_or_else(|e| panic!("{template}: {}", e.message))
                .unwrap_or_else(|| panic!("{template} is in the document but not routed"))
                .route;
            // The document's methods are the ones a 405 names in `Allow` (HEAD comes with GET).
            let mut methods: Vec<String> = ["get", "head", "post", "put", "delete"]
                .iter()
                .filter(|m| item.get(**m).is_some() || (**m == "head" && item.get("get").is_some()))
                .map(|m| m.to_uppercase())
                .collect();
            let mut allow: Vec<String> = route.allow().split(", ").map(str::to_owned).collect();
            methods.sort();
            allow.sort();
            assert_eq!(methods, allow, "{template}: methods");
            for (method, op) in item.as_object().unwrap() {
                let Ok(m) = method.to_uppercase().parse::<Method>() else {
                    continue; // `servers`, `parameters`
                };
                if !op.is_object() || method == "servers" {
                    continue;
                }
                let public = op["security"].as_array().is_some_and(|s| s.is_empty());
                assert_eq!(public, route.is_public(&m), "{method} {template}: security");
                let listed = item.get("servers").is_some();
                assert_eq!(
                    listed,
                    route.on_public_listener(&m),
                    "{template}: public listener"
                );
                seen.insert(route.name());
            }
        }
        let every = [
            Route::Healthz,
            Route::Stores,
            Route::Store(1),
            Route::Certs(1),
            Route::Cert(1, 1),
            Route::CertDownload(1, 1),
            Route::CertRevoke(1, 1),
            Route::Crl(1, 1),
            Route::CrlDer(1, 1),
            Route::CrlPem(1, 1),
            Route::Templates(1),
            Route::Template(1, 1),
            Route::TemplateIssue(1, 1),
            Route::Ocsp(1),
            Route::OcspGet(1, String::new()),
            Route::AuditEvents,
            Route::OpenApi,
            Route::AcmeTokens(1, 1),
            Route::AcmeToken(1, 1, 1),
        ];
        for r in every {
            assert!(seen.contains(r.name()), "{} is not documented", r.name());
        }
        assert_eq!(
            others.into_iter().collect::<Vec<_>>(),
            ["acme", "ncp_ext", "ncp_v1"],
            "the ACME and NCP editions are documented"
        );
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "directory",
            "new-nonce",
            "new-account",
            "new-order",
            "revoke-cert",
        ] {
            let template = format!("{}{{certId}}/{p}", acme::PREFIX);
            assert!(
                paths.contains_key(&template),
                "{template} is not documented"
            );
        }
    }
}
