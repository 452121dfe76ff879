//! API errors: one stable code and HTTP status per kind, in one place (API.md's table).

use hyper::StatusCode;

use crate::ca::CaError;

/// An error answer: HTTP status, the envelope's resultCode, and a message naming field and rule.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
    /// The methods of the route, for the `Allow` header of a 405 (RFC 9110 §15.5.6).
    pub allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    /// Body not JSON, wrong type, unknown field or enum value.
    pub fn malformed(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, 40000, message)
    }

    /// A field breaks a constraint of the seed.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, 40001, message)
    }

    /// A CSR that doesn't parse or verify, or that the template forbids.
    pub fn csr(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, 40002, message)
    }

    pub fn unauthenticated() -> ApiError {
        Self::new(
            StatusCode::UNAUTHORIZED,
            40100,
            "a client certificate (or bearer token) is required on this route",
        )
    }

    /// A bearer token was sent but matches no configured token.
    pub fn token_rejected() -> ApiError {
        Self::new(
            StatusCode::UNAUTHORIZED,
            40100,
            "the bearer token was not accepted (unknown or revoked); send a valid token or a client certificate",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, 40300, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, 40400, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, 40900, message)
    }

    /// `allow`: the route's methods, sent in the `Allow` header.
    pub fn method_not_allowed(allow: &'static str) -> ApiError {
        ApiError {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                40500,
                format!("method not allowed on this route; allowed: {allow}"),
            )
        }
    }

    pub fn too_large() -> ApiError {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            41300,
            "request body is over the limit of 1 MiB",
        )
    }

    pub fn uri_too_long(limit: usize) -> ApiError {
        Self::new(
            StatusCode::URI_TOO_LONG,
            41400,
            format!("path: longer than the limit of {limit} bytes"),
        )
    }

    pub fn body_timeout(secs: u64) -> ApiError {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            40800,
            format!("body: did not arrive within {secs} s"),
        )
    }

    pub fn unsupported_media(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, 41500, message)
    }

    pub fn unavailable(message: impl std::fmt::Display) -> ApiError {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            50300,
            format!("{message}; the request did nothing, retry later"),
        )
    }

    /// An internal failure: logged with a request id that the message repeats.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        let id: u64 = rand::random();
        log::error!("request {id:016x}: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            50000,
            format!("internal error (request id {id:016x})"),
        )
    }
}

impl From<CaError> for ApiError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::NotFound(m) => ApiError::not_found(m),
            CaError::Invalid(m) => ApiError::invalid(m),
            CaError::Csr(m) => ApiError::csr(m),
            CaError::Conflict(m) => ApiError::conflict(m),
            CaError::HsmUnavailable(m) => ApiError::unavailable(format!("HSM unavailable: {m}")),
            CaError::Internal(m) => ApiError::internal(m),
        }
    }
}
