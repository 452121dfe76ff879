//! NCP's answers: `{"code","msg","data"}` for the service, `{"error":{"errorCode","message"}}`
//! for the gateway (authentication), with the HTTP status of each.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use crate::ca::CaError;

/// An NCP error answer.
#[derive(Debug)]
pub enum NcpError {
    /// The service envelope with a code of NCP's enum and a message naming the field.
    Service {
        status: StatusCode,
        code: String,
        msg: String,
    },
    /// The gateway's shape: `errorCode` 200 (authentication failed), 210 (permission denied),
    /// 300 (no such route).
    Gateway {
        status: StatusCode,
        error_code: &'static str,
        message: &'static str,
    },
}

impl NcpError {
    /// 400 with a code and message.
    pub fn bad(code: &str, msg: impl Into<String>) -> NcpError {
        NcpError::Service {
            status: StatusCode::BAD_REQUEST,
            code: code.into(),
            msg: msg.into(),
        }
    }

    pub fn auth_failed() -> NcpError {
        NcpError::Gateway {
            status: StatusCode::UNAUTHORIZED,
            error_code: "200",
            message: "Authentication Failed",
        }
    }

    pub fn permission_denied() -> NcpError {
        NcpError::Gateway {
            status: StatusCode::UNAUTHORIZED,
            error_code: "210",
            message: "Permission Denied",
        }
    }

    pub fn no_route() -> NcpError {
        NcpError::Gateway {
            status: StatusCode::NOT_FOUND,
            error_code: "300",
            message: "Not Found Exception",
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> NcpError {
        let id: u64 = rand::random();
        log::error!("request {id:016x}: {detail}");
        NcpError::Service {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_SERVER_ERROR".into(),
            msg: format!(
                "We apologize for the inconvenience. This is temporarily not available. (request id {id:016x})"
            ),
        }
    }

    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        match self {
            NcpError::Service { status, .. } | NcpError::Gateway { status, .. } => *status,
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let (status, body) = match self {
            NcpError::Service { status, code, msg } => {
                (status, json!({"code": code, "msg": msg, "data": null}))
            }
            NcpError::Gateway {
                status,
                error_code,
                message,
            } => (
                status,
                json!({"error": {"errorCode": error_code, "message": message}}),
            ),
        };
        let mut r = json_response(status, &body);
        r.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        r
    }
}

/// Splits the domain's `"CODE: message"` form; the kind of error decides the rest.
impl From<CaError> for NcpError {
    fn from(e: CaError) -> Self {
        let (status, default_code, text) = match e {
            CaError::NotFound(m) => (StatusCode::NOT_FOUND, "NOT_FOUND", m),
            CaError::Invalid(m) => (StatusCode::BAD_REQUEST, "INVALID_INPUT", m),
            CaError::Csr(m) => (
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                format!("Invalid csr. ({m})"),
            ),
            CaError::Conflict(m) => (StatusCode::BAD_REQUEST, "INVALID_STATUS", m),
            CaError::HsmUnavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "FAIL_CORE",
                format!("HSM unavailable: {m}; the request did nothing, retry later"),
            ),
            CaError::Internal(m) => return NcpError::internal(m),
        };
        let (code, msg) = match text.split_once(": ") {
            Some((c, m))
                if !c.is_empty() && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
            {
                (c.to_owned(), m.to_owned())
            }
            _ => (default_code.to_owned(), text),
        };
        NcpError::Service { status, code, msg }
    }
}

/// `{"code":"SUCCESS","msg":"Success","data":data}`.
pub fn success(data: Value) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::OK,
        &json!({"code": "SUCCESS", "msg": "Success", "data": data}),
    )
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_codes_are_split_off() {
        let e: NcpError = CaError::Invalid("INVALID_INPUT_PERIOD: period: too long".into()).into();
        match e {
            NcpError::Service { status, code, msg } => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert_eq!(code, "INVALID_INPUT_PERIOD");
                assert_eq!(msg, "period: too long");
            }
            _ => panic!("service error expected"),
        }
        let e: NcpError =
            CaError::Invalid("commonName: must be at most 64 characters".into()).into();
        assert!(matches!(e, NcpError::Service { ref code, .. } if code == "INVALID_INPUT"));
        let e: NcpError = CaError::HsmUnavailable("down".into()).into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
