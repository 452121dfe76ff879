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

    /// Every path of the document is a route of `route::parse`, its public operations are
    /// exactly the public routes, and every route is in the document: the reference and the
    /// router cannot drift apart silently.
    #[test]
    fn document_and_router_agree() {
        let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("docs/openapi.json parses");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut seen = BTreeSet::new();
        for (template, item) in doc["paths"].as_object().unwrap() {
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
        ];
        for r in every {
            assert!(seen.contains(r.name()), "{} is not documented", r.name());
        }
    }
}
