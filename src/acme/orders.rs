//! Orders (RFC 8555 §7.4): newOrder over the names the base certificate allows, and an
//! order's status brought up to date from its authorizations and its expiry.

use serde::Deserialize;
use serde_json::{json, Value};

use super::authz::refresh_authz;
use super::jws::b64;
use super::{
    names, rfc3339, Acme, Post, Problem, Response, FINALIZING, MAX_PENDING_ORDERS, PENDING_LIFETIME,
};
use crate::clock::now;
use crate::store::{AcmeAccount, AcmeAuthz, AcmeChallenge, AcmeIdentifier, AcmeOrder, CertRecord};

impl Acme {
    pub(super) async fn new_order(
        &self,
        b: &str,
        base: &CertRecord,
        post: Post,
    ) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct NewOrder {
            identifiers: Vec<AcmeIdentifier>,
            not_before: Option<String>,
            not_after: Option<String>,
        }
        let a = post.account()?.clone();
        let p: NewOrder = post.json()?;
        if p.not_before.is_some() || p.not_after.is_some() {
            return Err(Problem::malformed(
                "notBefore/notAfter: not supported; the base certificate and template decide the validity",
            ));
        }
        let t = now();
        if base.revocation.is_some() || base.not_after <= t {
            return Err(Problem::unauthorized(format!(
                "base certificate {} is revoked or expired: its directory takes no orders",
                base.id
            )));
        }
        let template = self.template_of(base)?;
        if p.identifiers.is_empty() || p.identifiers.len() > names::MAX_IDENTIFIERS {
            return Err(Problem::malformed(format!(
                "identifiers: 1 to {} required",
                names::MAX_IDENTIFIERS
            )));
        }
        let mut allowed: Vec<names::Allowed> = Vec::new();
        for id in &p.identifiers {
            let ok = names::check(base, template.spec.allow_ip_sans, id)?;
            if !allowed.iter().any(|x| x.identifier == ok.identifier) {
                allowed.push(ok);
            }
        }
        let pending = self.pending_orders(a.id)?;
        if pending >= MAX_PENDING_ORDERS {
            return Err(Problem::new(
                "rateLimited",
                429,
                format!("account {} already has {pending} pending orders (at most {MAX_PENDING_ORDERS})", a.id),
            ));
        }
        let db = &self.ca().db;
        let order_id = db.next_id()?;
        let mut authz_ids = Vec::with_capacity(allowed.len());
        for x in &allowed {
            let kinds: &[&str] = match (x.identifier.kind.as_str(), x.wildcard) {
                (_, true) => &["dns-01"],
                ("ip", _) => &["http-01", "tls-alpn-01"],
                _ => &["http-01", "dns-01", "tls-alpn-01"],
            };
            let value = x
                .identifier
                .value
                .strip_prefix("*.")
                .unwrap_or(&x.identifier.value)
                .to_owned();
            let authz = AcmeAuthz {
                id: db.next_id()?,
                account_id: a.id,
                base_cert_id: base.id,
                order_id,
                identifier: AcmeIdentifier {
                    kind: x.identifier.kind.clone(),
                    value,
                },
                wildcard: x.wildcard,
                status: "pending".into(),
                expires: t + PENDING_LIFETIME,
                challenges: kinds
                    .iter()
                    .map(|k| AcmeChallenge {
                        kind: (*k).into(),
                        token: b64(&rand::random::<[u8; 32]>()),
                        status: "pending".into(),
                        validated: None,
                        error: None,
                    })
                    .collect(),
            };
            db.put_acme_authz(&authz)?;
            authz_ids.push(authz.id);
        }
        let order = AcmeOrder {
            id: order_id,
            account_id: a.id,
            base_cert_id: base.id,
            status: "pending".into(),
            expires: t + PENDING_LIFETIME,
            identifiers: allowed.into_iter().map(|x| x.identifier).collect(),
            authz_ids,
            cert_id: None,
            error: None,
            created_at: t,
        };
        db.put_acme_order(&order)?;
        self.durable().await?;
        Ok(Response::json(201, &order_json(b, &order))
            .with("location", format!("{b}/order/{}", order.id)))
    }

    pub(super) fn template_of(
        &self,
        base: &CertRecord,
    ) -> Result<crate::store::TemplateRecord, Problem> {
        let tid = base.template_id.unwrap_or(0);
        self.ca()
            .db
            .template(&base.appkey, base.store_id, tid)?
            .ok_or_else(|| {
                Problem::unauthorized(format!(
                    "template {tid} of base certificate {} no longer exists",
                    base.id
                ))
            })
    }

    /// The account's orders still open, each brought up to date (expired or failed ones leave
    /// the count, and the index, here).
    fn pending_orders(&self, account_id: u64) -> Result<usize, Problem> {
        let _g = self.locked();
        let db = &self.ca().db;
        let mut n = 0;
        for id in db.acme_pending_orders_of(account_id)? {
            if let Some(mut o) = db.acme_order(id)? {
                self.refresh_order(&mut o)?;
                if matches!(o.status.as_str(), "pending" | "ready" | "processing") {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// The order, its status brought up to date, if the account owns it.
    pub(super) fn order_of(&self, a: &AcmeAccount, id: Option<u64>) -> Result<AcmeOrder, Problem> {
        let _g = self.locked();
        self.order_of_locked(a, id)
    }

    /// Expiry and the pending → ready / invalid transitions. Call with the lock held.
    pub(super) fn refresh_order(&self, o: &mut AcmeOrder) -> Result<(), Problem> {
        let db = &self.ca().db;
        let before = o.status.clone();
        let t = now();
        if o.status == "processing" && !self.running().contains(&(o.id, FINALIZING)) {
            // A finalize that a restart cut short: nothing was answered, so it may run again.
            o.status = "ready".into();
        }
        if matches!(o.status.as_str(), "pending" | "ready") && t > o.expires {
            o.status = "invalid".into();
            o.error = Some(Problem::malformed("the order expired").to_json());
        } else if o.status == "pending" {
            let mut all_valid = true;
            for id in &o.authz_ids {
                let Some(mut a) = db.acme_authz(*id)? else {
                    continue;
                };
                refresh_authz(db, &mut a)?;
                match a.status.as_str() {
                    "valid" => {}
                    "pending" => all_valid = false,
                    other => {
                        o.status = "invalid".into();
                        o.error = Some(
                            a.challenges
                                .iter()
                                .find_map(|c| c.error.clone())
                                .unwrap_or_else(|| {
                                    Problem::unauthorized(format!(
                                        "authorization for {} is {other}",
                                        a.identifier.value
                                    ))
                                    .to_json()
                                }),
                        );
                        all_valid = false;
                        break;
                    }
                }
            }
            if all_valid {
                o.status = "ready".into();
            }
        }
        if o.status != before {
            db.put_acme_order(o)?;
        }
        Ok(())
    }

    /// `order_of`, with the lock already held.
    pub(super) fn order_of_locked(
        &self,
        a: &AcmeAccount,
        id: Option<u64>,
    ) -> Result<AcmeOrder, Problem> {
        let mut o = id
            .map(|id| self.ca().db.acme_order(id))
            .transpose()?
            .flatten()
            .ok_or_else(|| Problem::not_found("no such order"))?;
        if o.account_id != a.id {
            return Err(Problem::unauthorized(
                "the order belongs to another account",
            ));
        }
        self.refresh_order(&mut o)?;
        Ok(o)
    }
}

pub(super) fn order_json(b: &str, o: &AcmeOrder) -> Value {
    let mut v = json!({
        "status": o.status,
        "expires": rfc3339(o.expires),
        "identifiers": o.identifiers,
        "authorizations": o.authz_ids.iter().map(|i| format!("{b}/authz/{i}")).collect::<Vec<_>>(),
        "finalize": format!("{b}/order/{}/finalize", o.id),
    });
    if o.cert_id.is_some() {
        v["certificate"] = json!(format!("{b}/certificate/{}", o.id));
    }
    if let Some(e) = &o.error {
        v["error"] = e.clone();
    }
    v
}
