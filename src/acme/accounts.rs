//! Accounts (RFC 8555 §7.3): newAccount with its rate limit and external account binding,
//! account updates and deactivation, key rollover, and the audit actor an account acts as.

use serde::Deserialize;
use serde_json::{json, Value};

use super::jws::{self, unb64, Jwk, RawJws};
use super::{id_of, Acme, Post, Problem, Response, Signer, NEW_ACCOUNT_BURST, NEW_ACCOUNT_RATE};
use crate::ca::Actor;
use crate::clock::now;
use crate::store::{AcmeAccount, CertRecord};

impl Acme {
    /// newAccount attempts per directory: a token bucket (NEW_ACCOUNT_RATE per second, bursts
    /// of NEW_ACCOUNT_BURST). Beyond it: `rateLimited`, before any work.
    pub(super) fn account_attempt(&self, base_cert_id: u64) -> Result<(), Problem> {
        let mut buckets = self
            .inner
            .account_buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let t = std::time::Instant::now();
        if buckets.len() > 10_000 {
            buckets.retain(|_, (_, at)| t.duration_since(*at).as_secs() < 60);
        }
        let (tokens, at) = buckets
            .entry(base_cert_id)
            .or_insert((NEW_ACCOUNT_BURST, t));
        *tokens = (*tokens + t.duration_since(*at).as_secs_f64() * NEW_ACCOUNT_RATE)
            .min(NEW_ACCOUNT_BURST);
        *at = t;
        if *tokens < 1.0 {
            return Err(Problem::new(
                "rateLimited",
                429,
                format!(
                    "too many newAccount requests for this directory (at most {NEW_ACCOUNT_RATE}/s, bursts of {NEW_ACCOUNT_BURST})"
                ),
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }

    pub(super) async fn new_account(
        &self,
        b: &str,
        base: &CertRecord,
        post: Post,
    ) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct NewAccount {
            #[serde(default)]
            contact: Vec<String>,
            #[serde(default)]
            only_return_existing: bool,
            external_account_binding: Option<Value>,
        }
        let Signer::Key(key) = &post.signer else {
            return Err(Problem::malformed("protected: newAccount needs jwk"));
        };
        let p: NewAccount = post.json()?;
        let thumb = key.thumbprint();
        if let Some(a) = self.ca().db.acme_account_by_key(base.id, &thumb)? {
            if a.status != "valid" {
                return Err(Problem::unauthorized(format!(
                    "account {} is {}",
                    a.id, a.status
                )));
            }
            return Ok(Response::json(200, &account_json(b, &a))
                .with("location", format!("{b}/acct/{}", a.id)));
        }
        if p.only_return_existing {
            return Err(Problem::new(
                "accountDoesNotExist",
                400,
                "no account has this key",
            ));
        }
        check_contacts(&p.contact)?;
        let eab = p.external_account_binding.ok_or_else(|| {
            Problem::new(
                "externalAccountRequired",
                400,
                "externalAccountBinding: required (an ACME token of this base certificate)",
            )
        })?;
        let token_id = self.check_eab(&eab, &post.url, base, key)?;
        let acct = AcmeAccount {
            id: self.ca().db.next_id()?,
            base_cert_id: base.id,
            appkey: base.appkey.clone(),
            jwk: key.to_value(),
            thumbprint: thumb,
            contact: p.contact,
            status: "valid".into(),
            token_id,
            created_at: now(),
        };
        self.ca()
            .db
            .create_acme_account(&acct)
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(m) => {
                    Problem::unauthorized(format!("externalAccountBinding: {m}"))
                }
                other => other.into(),
            })?;
        self.audit(&acct, "ACME_ACCOUNT_CREATE", base);
        self.durable().await?;
        Ok(Response::json(201, &account_json(b, &acct))
            .with("location", format!("{b}/acct/{}", acct.id)))
    }

    /// Records an audit event with the actor `acme:<account id>` (made durable with the change).
    fn audit(&self, acct: &AcmeAccount, action: &str, base: &CertRecord) {
        let who = actor(acct);
        let target = crate::ca::Target {
            store: Some(base.store_id),
            cert: Some(base.id),
            template: None,
            serial: None,
        };
        if let Err(e) = self.ca().audit(&who, action, target, "SUCCESS") {
            log::error!("acme: audit of {action} failed: {e}");
        }
    }

    /// RFC 8555 §7.3.4: the binding is an HS256 JWS over the account key, by a token of this
    /// base certificate that bound no account yet. Returns the token id.
    fn check_eab(
        &self,
        eab: &Value,
        url: &str,
        base: &CertRecord,
        key: &Jwk,
    ) -> Result<u64, Problem> {
        #[derive(Deserialize)]
        struct EabHeader {
            alg: String,
            kid: String,
            url: String,
            nonce: Option<Value>,
        }
        let inner = RawJws::parse(&serde_json::to_vec(eab).unwrap_or_default())
            .map_err(|p| Problem::malformed(format!("externalAccountBinding: {}", p.detail)))?;
        let raw = unb64("externalAccountBinding.protected", &inner.protected)?;
        let h: EabHeader = serde_json::from_slice(&raw)
            .map_err(|e| Problem::malformed(format!("externalAccountBinding.protected: {e}")))?;
        if h.nonce.is_some() {
            return Err(Problem::malformed(
                "externalAccountBinding.protected.nonce: must be absent",
            ));
        }
        if h.url != url {
            return Err(Problem::unauthorized(
                "externalAccountBinding.protected.url: must be the newAccount URL",
            ));
        }
        let token = id_of(&h.kid)
            .map(|id| self.ca().db.acme_token(id))
            .transpose()?
            .flatten()
            .filter(|t| t.base_cert_id == base.id)
            .ok_or_else(|| {
                Problem::unauthorized(format!(
                    "externalAccountBinding.kid: {:?} is no ACME token of this base certificate (unknown or deleted)",
                    h.kid
                ))
            })?;
        if token.account_id.is_some() {
            return Err(Problem::unauthorized(format!(
                "externalAccountBinding.kid: token {} already bound an account",
                token.id
            )));
        }
        inner.verify_hmac(&h.alg, &token.hmac_key)?;
        let bound: Value = serde_json::from_slice(&inner.payload()?).map_err(|e| {
            Problem::malformed(format!("externalAccountBinding.payload: not a JWK ({e})"))
        })?;
        if Jwk::parse(&bound)?.thumbprint() != key.thumbprint() {
            return Err(Problem::unauthorized(
                "externalAccountBinding.payload: not the account key of this request",
            ));
        }
        Ok(token.id)
    }

    pub(super) async fn account(
        &self,
        b: &str,
        id: Option<u64>,
        post: Post,
    ) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        struct Update {
            contact: Option<Vec<String>>,
            status: Option<String>,
        }
        let a = post.account()?;
        if id != Some(a.id) {
            return Err(Problem::unauthorized(
                "kid: the account URL is not the signer's",
            ));
        }
        let mut a = a.clone();
        if !post.is_get() {
            let u: Update = post.json()?;
            if let Some(c) = u.contact {
                check_contacts(&c)?;
                a.contact = c;
            }
            match u.status.as_deref() {
                None | Some("valid") => {}
                Some("deactivated") => a.status = "deactivated".into(),
                Some(other) => {
                    return Err(Problem::malformed(format!(
                        "status: {other:?} (only \"deactivated\" may be asked for)"
                    )))
                }
            }
            self.ca().db.update_acme_account(&a.thumbprint, &a)?;
            if a.status == "deactivated" {
                if let Some(base) = self.ca().db.cert_by_id(a.base_cert_id)? {
                    self.audit(&a, "ACME_ACCOUNT_DEACTIVATE", &base);
                }
            }
            self.durable().await?;
        }
        Ok(
            Response::json(200, &account_json(b, &a))
                .with("location", format!("{b}/acct/{}", a.id)),
        )
    }

    pub(super) async fn key_change(
        &self,
        b: &str,
        base: &CertRecord,
        post: Post,
    ) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Inner {
            account: String,
            old_key: Value,
        }
        let a = post.account()?.clone();
        let inner = RawJws::parse(&post.payload)?;
        let h = inner.header()?;
        let (Some(jwk), None) = (&h.jwk, &h.kid) else {
            return Err(Problem::malformed(
                "keyChange: the inner JWS must carry jwk (the new key) and no kid",
            ));
        };
        if h.nonce.is_some() {
            return Err(Problem::malformed(
                "keyChange: the inner JWS must not carry a nonce",
            ));
        }
        if h.url.as_deref() != Some(post.url.as_str()) {
            return Err(Problem::malformed(
                "keyChange: the inner url must be the keyChange URL",
            ));
        }
        if !jws::supported_alg(&h.alg) {
            return Err(Problem::new(
                "badSignatureAlgorithm",
                400,
                format!("keyChange: alg {:?}", h.alg),
            ));
        }
        let new_key = Jwk::parse(jwk)?;
        inner.verify(&h.alg, &new_key)?;
        let p: Inner = serde_json::from_slice(&inner.payload()?)
            .map_err(|e| Problem::malformed(format!("keyChange payload: {e}")))?;
        if p.account != format!("{b}/acct/{}", a.id) {
            return Err(Problem::unauthorized(
                "keyChange: account is not the signer's account URL",
            ));
        }
        if Jwk::parse(&p.old_key)?.thumbprint() != a.thumbprint {
            return Err(Problem::unauthorized(
                "keyChange: oldKey is not the account's key",
            ));
        }
        let thumb = new_key.thumbprint();
        if let Some(other) = self.ca().db.acme_account_by_key(base.id, &thumb)? {
            let mut p = Problem::new(
                "conflict",
                409,
                "keyChange: the new key belongs to another account",
            );
            p.location = Some(format!("{b}/acct/{}", other.id));
            return Err(p);
        }
        let old = a.thumbprint.clone();
        let mut a = a;
        a.jwk = new_key.to_value();
        a.thumbprint = thumb;
        self.ca()
            .db
            .update_acme_account(&old, &a)
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(m) => Problem::new("conflict", 409, m),
                other => other.into(),
            })?;
        self.audit(&a, "ACME_KEY_CHANGE", base);
        self.durable().await?;
        Ok(Response::json(200, &account_json(b, &a)))
    }
}

pub(super) fn actor(a: &AcmeAccount) -> Actor {
    Actor {
        identity: format!("acme:{}", a.id),
        appkey: a.appkey.clone(),
    }
}

fn check_contacts(c: &[String]) -> Result<(), Problem> {
    if c.len() > 4 {
        return Err(Problem::new("invalidContact", 400, "contact: at most 4"));
    }
    for x in c {
        let Some(addr) = x.strip_prefix("mailto:") else {
            return Err(Problem::new(
                "unsupportedContact",
                400,
                format!("contact {x:?}: only mailto: contacts"),
            ));
        };
        if !crate::pki::cert::is_email(addr) || addr.contains('?') || addr.contains(',') {
            return Err(Problem::new(
                "invalidContact",
                400,
                format!("contact {x:?}: not one email address"),
            ));
        }
    }
    Ok(())
}

fn account_json(b: &str, a: &AcmeAccount) -> Value {
    json!({
        "status": a.status,
        "contact": a.contact,
        "orders": format!("{b}/acct/{}/orders", a.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_are_mailto_addresses() {
        assert!(check_contacts(&["mailto:a@example.com".into()]).is_ok());
        assert_eq!(
            check_contacts(&["tel:+1".into()]).unwrap_err().kind,
            "unsupportedContact"
        );
        assert_eq!(
            check_contacts(&["mailto:a@example.com?subject=x".into()])
                .unwrap_err()
                .kind,
            "invalidContact"
        );
        assert!(check_contacts(&vec!["mailto:a@example.com".to_string(); 5]).is_err());
    }
}
