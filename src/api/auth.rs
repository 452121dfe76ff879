//! Who is calling, and may they: identity from the verified client certificate (subject CN) or a
//! bearer token, role per appkey from the config.

use hyper::HeaderMap;
use sha2::Digest;

use super::error::ApiError;
use crate::config::{Config, Role};
use crate::pki::der_util::hex;

/// What the TLS layer established about a connection.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// Subject CN of a client certificate that chained to the configured client CA.
    pub identity: Option<String>,
}

/// A caller that holds a role for the request's appkey. Only this reaches management handlers.
#[derive(Clone, Debug)]
pub struct Authed {
    pub identity: String,
    pub appkey: String,
    pub role: Role,
}

impl Authed {
    /// The caller as the CA's audit trail names it.
    pub fn actor(&self) -> crate::ca::Actor {
        crate::ca::Actor {
            identity: self.identity.clone(),
            appkey: self.appkey.clone(),
        }
    }

    /// Demands ADMIN (VIEWER is enough for reads).
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} has role VIEWER for appkey {}; this route needs ADMIN",
                self.identity, self.appkey
            )))
        }
    }
}

/// Establishes the caller of a management route: 401 without credentials, 403 without a role.
pub fn authenticate(
    config: &Config,
    headers: &HeaderMap,
    peer: &Peer,
    appkey: &str,
) -> Result<Authed, ApiError> {
    if let Some(token) = bearer(headers) {
        let digest = hex(&sha2::Sha256::digest(token.as_bytes()));
        let rule = config
            .tokens
            .iter()
            .filter(|t| constant_time_eq(t.sha256.as_bytes(), digest.as_bytes()))
            .find(|t| t.appkey == "*" || t.appkey == appkey);
        return match rule {
            Some(t) => Ok(Authed {
                identity: t.identity.clone(),
                appkey: appkey.to_owned(),
                role: t.role,
            }),
            None if config.tokens.iter().any(|t| t.sha256 == digest) => Err(ApiError::forbidden(
                format!("this token has no role for appkey {appkey}"),
            )),
            None => Err(ApiError::token_rejected()),
        };
    }
    let identity = peer
        .identity
        .as_ref()
        .ok_or_else(ApiError::unauthenticated)?;
    match config.role_for_identity(identity, appkey) {
        Some(role) => Ok(Authed {
            identity: identity.clone(),
            appkey: appkey.to_owned(),
            role,
        }),
        None => Err(ApiError::forbidden(format!(
            "{identity} has no role for appkey {appkey}"
        ))),
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    ["authorization", "x-nhn-authorization"]
        .iter()
        .filter_map(|h| headers.get(*h))
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .map(|t| t.trim().to_owned())
        })
        .filter(|t| !t.is_empty())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
