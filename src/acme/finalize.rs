//! Finalizing a ready order (RFC 8555 §7.4): the CSR checked against the order's names and the
//! leaf issued through the template path (`Ca::issue_leaf`); and the certificate chain download.

use serde::Deserialize;

use super::accounts::actor;
use super::jws::unb64;
use super::orders::order_json;
use super::{names, Acme, Post, Problem, Response, FINALIZING};
use crate::ca::{LeafMode, LeafParams, Validity};
use crate::clock::now;
use crate::pki::cert::Sans;
use crate::store::{CertRecord, CertType};

impl Acme {
    pub(super) async fn finalize(
        &self,
        b: &str,
        base: &CertRecord,
        id: Option<u64>,
        post: Post,
    ) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        struct Finalize {
            csr: String,
        }
        let a = post.account()?.clone();
        let f: Finalize = post.json()?;
        let der = unb64("csr", &f.csr)?;
        let csr = crate::pki::csr::parse_der(&der)
            .map_err(|e| Problem::new("badCSR", 400, e.to_string()))?;
        let template = self.template_of(base)?;
        if !template.spec.store_in_server {
            return Err(Problem::unauthorized(format!(
                "template {} does not store certificates (storeInServer false)",
                template.id
            )));
        }
        let t = now();
        if base.revocation.is_some() || base.not_after <= t {
            return Err(Problem::unauthorized(format!(
                "base certificate {} is revoked or expired",
                base.id
            )));
        }
        let mut order = {
            let _g = self.locked();
            let mut o = self.order_of_locked(&a, id)?;
            if o.status != "ready" {
                return Err(Problem::new(
                    "orderNotReady",
                    403,
                    format!("the order is {}, not ready", o.status),
                ));
            }
            let want: std::collections::BTreeSet<(String, String)> = o
                .identifiers
                .iter()
                .map(|i| (i.kind.clone(), i.value.clone()))
                .collect();
            let got = names::of_csr(&csr)?;
            if got != want {
                return Err(Problem::new(
                    "badCSR",
                    400,
                    format!(
                        "csr: names {:?} are not exactly the order's identifiers {:?}",
                        got.iter().map(|x| &x.1).collect::<Vec<_>>(),
                        want.iter().map(|x| &x.1).collect::<Vec<_>>()
                    ),
                ));
            }
            o.status = "processing".into();
            self.ca().db.put_acme_order(&o)?;
            self.running().insert((o.id, FINALIZING));
            o
        };
        let issuer_end = self
            .ca()
            .db
            .cert(&base.appkey, base.store_id, template.spec.parent_cert_id)?
            .map(|c| c.not_after)
            .unwrap_or(0);
        let mut ttl = base.not_after - base.not_before;
        match (template.spec.max_ttl, template.spec.max_specific_date) {
            (Some(m), _) if m > 0 => ttl = ttl.min(m as i64),
            (None, Some(d)) => ttl = ttl.min(d - t - 60),
            _ => {}
        }
        ttl = ttl.min(issuer_end - t - 60);
        let sans = Sans {
            dns: order
                .identifiers
                .iter()
                .filter(|i| i.kind == "dns")
                .map(|i| i.value.clone())
                .collect(),
            ip: order
                .identifiers
                .iter()
                .filter_map(|i| (i.kind == "ip").then(|| i.value.parse().ok()).flatten())
                .collect(),
            ..Sans::default()
        };
        let common_name = sans.dns.iter().find(|d| d.len() <= 64).cloned();
        let params = LeafParams {
            mode: LeafMode::Sign(Box::new(csr)),
            common_name,
            cn_optional: true,
            validity: Some(Validity::Ttl(ttl.max(1) as u64)),
            exclude_cn_from_sans: false,
            serial_number: None,
            sans,
        };
        let result = if ttl <= 0 {
            Err(Problem::unauthorized(
                "the issuer or the template leaves no validity",
            ))
        } else {
            let ca = self.ca().clone();
            let who = actor(&a);
            let (store_id, template_id) = (base.store_id, template.id);
            tokio::task::spawn_blocking(move || ca.issue_leaf(&who, store_id, template_id, params))
                .await
                .map_err(|e| Problem::server(format!("task failed: {e}")))
                .and_then(|r| r.map_err(Problem::from))
        };
        {
            let _g = self.locked();
            self.running().remove(&(order.id, FINALIZING));
            match result.map(|leaf| leaf.cert_id) {
                Ok(Some(cert_id)) => {
                    order.status = "valid".into();
                    order.cert_id = Some(cert_id);
                    self.ca().db.put_acme_order(&order)?;
                    self.ca().db.put_acme_issued(cert_id, a.id)?;
                }
                Ok(None) => {
                    order.status = "invalid".into();
                    self.ca().db.put_acme_order(&order)?;
                    return Err(Problem::server(
                        "the template did not store the certificate",
                    ));
                }
                Err(p) => {
                    // Nothing was issued: the order may be finalized again with a better CSR.
                    order.status = "ready".into();
                    self.ca().db.put_acme_order(&order)?;
                    return Err(p);
                }
            }
        }
        self.durable().await?;
        Ok(Response::json(200, &order_json(b, &order))
            .with("location", format!("{b}/order/{}", order.id)))
    }

    pub(super) fn certificate(&self, id: Option<u64>, post: Post) -> Result<Response, Problem> {
        let a = post.account()?;
        let o = self.order_of(a, id)?;
        let cert_id = o
            .cert_id
            .ok_or_else(|| Problem::not_found("the order has no certificate yet"))?;
        let rec =
            self.ca().db.cert_by_id(cert_id)?.ok_or_else(|| {
                Problem::not_found("the certificate is gone (its store was deleted)")
            })?;
        let mut pem = crate::pki::cert::to_pem(&rec.der);
        for c in self.ca().chain(&rec)? {
            if c.cert_type != CertType::Root {
                pem.push_str(&crate::pki::cert::to_pem(&c.der));
            }
        }
        Ok(Response {
            status: 200,
            content_type: "application/pem-certificate-chain",
            headers: vec![],
            body: pem.into_bytes(),
        })
    }
}
