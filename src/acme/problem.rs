//! RFC 8555 §6.7 problem documents (RFC 7807).

use serde_json::{json, Value};

/// An ACME error: its type (without the `urn:ietf:params:acme:error:` prefix), HTTP status and
/// a detail that names what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: &'static str,
    pub status: u16,
    pub detail: String,
    /// For `conflict` answers of key rollover: the existing account's URL.
    pub location: Option<String>,
}

impl Problem {
    pub fn new(kind: &'static str, status: u16, detail: impl Into<String>) -> Problem {
        Problem {
            kind,
            status,
            detail: detail.into(),
            location: None,
        }
    }

    pub fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new("malformed", 400, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new("unauthorized", 403, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new("malformed", 404, detail)
    }

    pub fn server(detail: impl Into<String>) -> Problem {
        Problem::new("serverInternal", 500, detail)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "type": format!("urn:ietf:params:acme:error:{}", self.kind),
            "detail": self.detail,
            "status": self.status,
        })
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Self {
        Problem::server(e.to_string())
    }
}

impl From<crate::ca::CaError> for Problem {
    fn from(e: crate::ca::CaError) -> Self {
        use crate::ca::CaError;
        match e {
            CaError::Csr(m) => Problem::new("badCSR", 400, m),
            CaError::Invalid(m) => Problem::new("badCSR", 400, m),
            CaError::NotFound(m) => Problem::not_found(m),
            CaError::Conflict(m) => Problem::unauthorized(m),
            CaError::HsmUnavailable(m) => Problem::new("serverInternal", 503, m),
            other => Problem::server(other.to_string()),
        }
    }
}
