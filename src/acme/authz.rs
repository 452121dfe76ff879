//! Authorizations and challenges (RFC 8555 §7.5): deactivation, starting a validation (run in
//! the background, at most `MAX_VALIDATIONS` at once) and recording its outcome.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{rfc3339, validate, Acme, Post, Problem, Response};
use crate::clock::now;
use crate::store::{AcmeAccount, AcmeAuthz, AcmeChallenge};

impl Acme {
    pub(super) async fn authz(
        &self,
        b: &str,
        id: Option<u64>,
        post: Post,
    ) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        struct Update {
            status: String,
        }
        let a = post.account()?;
        let authz = {
            let _g = self.locked();
            let mut z = self.authz_of(a, id)?;
            if !post.is_get() {
                let u: Update = post.json()?;
                if u.status != "deactivated" {
                    return Err(Problem::malformed(
                        "status: only \"deactivated\" may be asked for",
                    ));
                }
                if !matches!(z.status.as_str(), "pending" | "valid") {
                    return Err(Problem::malformed(format!(
                        "the authorization is {}",
                        z.status
                    )));
                }
                z.status = "deactivated".into();
                self.ca().db.put_acme_authz(&z)?;
            }
            z
        };
        if !post.is_get() {
            self.durable().await?;
        }
        let mut r = Response::json(200, &authz_json(b, &authz));
        if authz.challenges.iter().any(|c| c.status == "processing") {
            r = r.with("retry-after", "1".into());
        }
        Ok(r)
    }

    fn authz_of(&self, a: &AcmeAccount, id: Option<u64>) -> Result<AcmeAuthz, Problem> {
        let db = &self.ca().db;
        let mut z = id
            .map(|id| db.acme_authz(id))
            .transpose()?
            .flatten()
            .ok_or_else(|| Problem::not_found("no such authorization"))?;
        if z.account_id != a.id {
            return Err(Problem::unauthorized(
                "the authorization belongs to another account",
            ));
        }
        refresh_authz(db, &mut z)?;
        Ok(z)
    }

    pub(super) async fn challenge(
        &self,
        b: &str,
        authz_id: Option<u64>,
        idx: Option<usize>,
        post: Post,
    ) -> Result<Response, Problem> {
        let a = post.account()?.clone();
        let (z, idx, start) = {
            let _g = self.locked();
            let mut z = self.authz_of(&a, authz_id)?;
            let idx = idx
                .filter(|i| *i < z.challenges.len())
                .ok_or_else(|| Problem::not_found("no such challenge"))?;
            let mut start = false;
            if !post.is_get() {
                let _: Value = post.json()?;
                let mut running = self.running();
                let status = z.challenges[idx].status.as_str();
                let orphan = status == "processing" && !running.contains(&(z.id, idx));
                if z.status == "pending" && (status == "pending" || orphan) {
                    z.challenges[idx].status = "processing".into();
                    self.ca().db.put_acme_authz(&z)?;
                    running.insert((z.id, idx));
                    start = true;
                }
            }
            (z, idx, start)
        };
        if start {
            let acme = self.clone();
            let c = &z.challenges[idx];
            let (kind, token) = (c.kind.clone(), c.token.clone());
            let name = z.identifier.value.clone();
            let key_auth = format!("{token}.{}", a.thumbprint);
            let zid = z.id;
            tokio::spawn(async move {
                let result = match acme.inner.validations.acquire().await {
                    Ok(_permit) => {
                        let target = validate::Target {
                            kind: &kind,
                            name: &name,
                            token: &token,
                            key_authorization: &key_auth,
                        };
                        validate::validate(&acme.inner.cfg, &target).await
                    }
                    Err(_) => Err(Problem::server("validation is shutting down")),
                };
                let finished = acme.finish_challenge(zid, idx, result).await;
                acme.running().remove(&(zid, idx));
                if let Err(e) = finished {
                    log::error!(
                        "acme: recording the validation of authorization {zid}: {}",
                        e.detail
                    );
                }
            });
        }
        let c = &z.challenges[idx];
        Ok(Response::json(200, &challenge_json(b, z.id, idx, c))
            .with("link", format!("<{b}/authz/{}>;rel=\"up\"", z.id)))
    }

    async fn finish_challenge(
        &self,
        authz_id: u64,
        idx: usize,
        result: Result<(), Problem>,
    ) -> Result<(), Problem> {
        {
            let _g = self.locked();
            let db = &self.ca().db;
            let Some(mut z) = db.acme_authz(authz_id)? else {
                return Ok(());
            };
            if z.status != "pending" {
                return Ok(()); // deactivated or expired meanwhile
            }
            let c = &mut z.challenges[idx];
            match &result {
                Ok(()) => {
                    c.status = "valid".into();
                    c.validated = Some(now());
                    z.status = "valid".into();
                }
                Err(p) => {
                    log::info!(
                        "acme: {} of {} failed: {}",
                        c.kind,
                        z.identifier.value,
                        p.detail
                    );
                    c.status = "invalid".into();
                    c.error = Some(p.to_json());
                    z.status = "invalid".into();
                }
            }
            db.put_acme_authz(&z)?;
            if let Some(mut o) = db.acme_order(z.order_id)? {
                self.refresh_order(&mut o)?;
            }
        }
        self.durable().await
    }
}

pub(super) fn refresh_authz(db: &crate::store::Db, z: &mut AcmeAuthz) -> Result<(), Problem> {
    if z.status == "pending" && now() > z.expires {
        z.status = "expired".into();
        db.put_acme_authz(z)?;
    }
    Ok(())
}

fn challenge_json(b: &str, authz_id: u64, idx: usize, c: &AcmeChallenge) -> Value {
    let mut v = json!({
        "type": c.kind,
        "url": format!("{b}/chall/{authz_id}/{idx}"),
        "token": c.token,
        "status": c.status,
    });
    if let Some(t) = c.validated {
        v["validated"] = json!(rfc3339(t));
    }
    if let Some(e) = &c.error {
        v["error"] = e.clone();
    }
    v
}

fn authz_json(b: &str, z: &AcmeAuthz) -> Value {
    let mut v = json!({
        "identifier": z.identifier,
        "status": z.status,
        "expires": rfc3339(z.expires),
        "challenges": z.challenges.iter().enumerate().map(|(i, c)| challenge_json(b, z.id, i, c)).collect::<Vec<_>>(),
    });
    if z.wildcard {
        v["wildcard"] = json!(true);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AcmeIdentifier;

    #[test]
    fn a_pending_authorization_expires_and_a_valid_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::Db::open(dir.path()).unwrap();
        let mut z = AcmeAuthz {
            id: 1,
            account_id: 2,
            base_cert_id: 3,
            order_id: 4,
            identifier: AcmeIdentifier {
                kind: "dns".into(),
                value: "a.example".into(),
            },
            wildcard: false,
            status: "pending".into(),
            expires: now() - 1,
            challenges: vec![],
        };
        let mut valid = z.clone();
        valid.status = "valid".into();
        refresh_authz(&db, &mut z).unwrap();
        assert_eq!(z.status, "expired");
        assert_eq!(db.acme_authz(1).unwrap().unwrap().status, "expired");
        refresh_authz(&db, &mut valid).unwrap();
        assert_eq!(valid.status, "valid");
    }
}
