//! The directory and newNonce, and what every POST goes through: the base certificate a
//! directory belongs to, the checks of RFC 8555 §6.2-6.5 (Content-Type, JWS, nonce, URL, jwk
//! or kid), and the dispatch of a verified request to its resource.

use serde_json::json;

use super::jws::{self, unb64, Jwk, RawJws};
use super::orders::order_json;
use super::{id_of, Acme, Post, Problem, Request, Response, Signer};
use crate::clock::now;
use crate::store::{CertRecord, CertType};

impl Acme {
    /// The base certificate of a directory: a stored leaf issued with a template.
    fn base_cert(&self, cert_id: u64) -> Result<CertRecord, Problem> {
        match self.ca().db.cert_by_id(cert_id)? {
            Some(c) if c.cert_type == CertType::Leaf && c.template_id.is_some() => Ok(c),
            _ => Err(Problem::not_found(format!(
                "certificate {cert_id} has no ACME directory (not a stored leaf issued with a template)"
            ))),
        }
    }

    pub(super) async fn route(&self, req: &Request<'_>) -> Result<Response, Problem> {
        let base = self.base_cert(req.cert_id)?;
        let b = &req.base;
        match (req.method, req.rest) {
            ("GET" | "HEAD", "directory") => Ok(Response::json(
                200,
                &json!({
                    "newNonce": format!("{b}/new-nonce"),
                    "newAccount": format!("{b}/new-account"),
                    "newOrder": format!("{b}/new-order"),
                    "revokeCert": format!("{b}/revoke-cert"),
                    "keyChange": format!("{b}/key-change"),
                    "meta": {"externalAccountRequired": true},
                }),
            )),
            ("HEAD", "new-nonce") => Ok(Response::empty(200)),
            ("GET", "new-nonce") => Ok(Response::empty(204)),
            ("POST", _) => {
                if req.rest == "new-account" {
                    self.account_attempt(base.id)?;
                }
                let post = self.verify(req, &base)?;
                self.post(req, &base, post).await
            }
            (_, "directory" | "new-nonce") => Err(Problem::new(
                "malformed",
                405,
                format!("{} is not allowed on {}", req.method, req.rest),
            )),
            _ => Err(Problem::new(
                "malformed",
                405,
                "ACME resources other than the directory and newNonce take POST",
            )),
        }
    }

    /// Every check of RFC 8555 §6.2-6.5 on a POST.
    fn verify(&self, req: &Request<'_>, base: &CertRecord) -> Result<Post, Problem> {
        let ct = req.content_type.unwrap_or("");
        if ct.split(';').next().map(str::trim) != Some("application/jose+json") {
            return Err(Problem::new(
                "malformed",
                415,
                format!("Content-Type: must be application/jose+json, got {ct:?}"),
            ));
        }
        let jws = RawJws::parse(req.body)?;
        let h = jws.header()?;
        if !jws::supported_alg(&h.alg) {
            return Err(Problem::new(
                "badSignatureAlgorithm",
                400,
                format!(
                    "protected.alg: {:?} is not one of ES256, ES384, RS256, EdDSA",
                    h.alg
                ),
            ));
        }
        let nonce = h
            .nonce
            .as_deref()
            .ok_or_else(|| Problem::new("badNonce", 400, "protected.nonce: required"))?;
        let raw = unb64("protected.nonce", nonce)
            .map_err(|_| Problem::new("badNonce", 400, "protected.nonce: not base64url"))?;
        if !self.ca().db.take_acme_nonce(&raw, now())? {
            return Err(Problem::new(
                "badNonce",
                400,
                "protected.nonce: unknown, already used or expired; use the Replay-Nonce of this answer",
            ));
        }
        let url = format!("{}/{}", req.base, req.rest);
        match h.url.as_deref() {
            None => return Err(Problem::malformed("protected.url: required")),
            Some(u) if u != url => {
                return Err(Problem::unauthorized(format!(
                    "protected.url: {u:?} is not the request URL {url:?}"
                )))
            }
            Some(_) => {}
        }
        let signer = match (&h.jwk, &h.kid) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(Problem::malformed(
                    "protected: exactly one of jwk and kid is required",
                ))
            }
            (Some(jwk), None) => {
                if !matches!(req.rest, "new-account" | "revoke-cert") {
                    return Err(Problem::malformed(format!(
                        "protected.jwk: {} needs kid (an account URL)",
                        req.rest
                    )));
                }
                let key = Jwk::parse(jwk)?;
                jws.verify(&h.alg, &key)?;
                Signer::Key(key)
            }
            (None, Some(kid)) => {
                if req.rest == "new-account" {
                    return Err(Problem::malformed(
                        "protected.kid: newAccount needs jwk (the new account's key)",
                    ));
                }
                let acct = kid
                    .strip_prefix(&format!("{}/acct/", req.base))
                    .and_then(id_of)
                    .map(|id| self.ca().db.acme_account(id))
                    .transpose()?
                    .flatten()
                    .filter(|a| a.base_cert_id == base.id)
                    .ok_or_else(|| {
                        Problem::new(
                            "accountDoesNotExist",
                            400,
                            format!("protected.kid: {kid:?} is no account of this directory"),
                        )
                    })?;
                let key = Jwk::parse(&acct.jwk)?;
                jws.verify(&h.alg, &key)?;
                if acct.status != "valid" {
                    return Err(Problem::unauthorized(format!(
                        "account {} is {}",
                        acct.id, acct.status
                    )));
                }
                Signer::Account(acct)
            }
        };
        Ok(Post {
            signer,
            url,
            payload: jws.payload()?,
        })
    }

    async fn post(
        &self,
        req: &Request<'_>,
        base: &CertRecord,
        post: Post,
    ) -> Result<Response, Problem> {
        let b = &req.base;
        let parts: Vec<&str> = req.rest.split('/').collect();
        match parts.as_slice() {
            ["new-account"] => self.new_account(b, base, post).await,
            ["new-order"] => self.new_order(b, base, post).await,
            ["key-change"] => self.key_change(b, base, post).await,
            ["revoke-cert"] => self.revoke(base, post).await,
            ["acct", id] => self.account(b, id_of(id), post).await,
            ["acct", _, "orders"] | ["order", _] | ["certificate", _] if !post.is_get() => Err(
                Problem::malformed("payload: must be empty (POST-as-GET) for this resource"),
            ),
            ["acct", id, "orders"] => {
                let a = post.account()?;
                if id_of(id) != Some(a.id) {
                    return Err(Problem::unauthorized("kid: not this account"));
                }
                let ids = self.ca().db.acme_orders_of(a.id)?;
                let urls: Vec<String> = ids.iter().map(|i| format!("{b}/order/{i}")).collect();
                Ok(Response::json(200, &json!({ "orders": urls })))
            }
            ["order", id] => {
                let a = post.account()?;
                let o = self.order_of(a, id_of(id))?;
                Ok(Response::json(200, &order_json(b, &o)))
            }
            ["order", id, "finalize"] => self.finalize(b, base, id_of(id), post).await,
            ["authz", id] => self.authz(b, id_of(id), post).await,
            ["chall", authz, idx] => {
                let idx = idx.parse::<usize>().ok();
                self.challenge(b, id_of(authz), idx, post).await
            }
            ["certificate", id] => self.certificate(id_of(id), post),
            _ => Err(Problem::not_found(format!("no ACME resource {}", req.rest))),
        }
    }
}
