//! Revocation (RFC 8555 §7.6): by the account that obtained the certificate or by the
//! certificate's own key, through `Ca::revoke`.

use serde::Deserialize;

use super::accounts::actor;
use super::jws::unb64;
use super::{Acme, Post, Problem, Response, Signer};
use crate::ca::Actor;
use crate::store::CertRecord;

impl Acme {
    pub(super) async fn revoke(&self, base: &CertRecord, post: Post) -> Result<Response, Problem> {
        #[derive(Deserialize)]
        struct Revoke {
            certificate: String,
            reason: Option<u8>,
        }
        let p: Revoke = post.json()?;
        let der = unb64("certificate", &p.certificate)?;
        let info = crate::pki::cert::parse_info(&der)
            .map_err(|e| Problem::malformed(format!("certificate: {e}")))?;
        let reason = crate::pki::crl::RevocationReason::from_code(p.reason.unwrap_or(0))
            .ok_or_else(|| {
                Problem::new(
                    "badRevocationReason",
                    400,
                    format!(
                        "reason: {} is not one pcad accepts (0-6, 9)",
                        p.reason.unwrap_or(0)
                    ),
                )
            })?;
        let mut hex = info.serial_hex.clone();
        if hex.len() % 2 == 1 {
            hex.insert(0, '0');
        }
        let serial: Vec<u8> = (0..hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect();
        let db = &self.ca().db;
        let unknown = || {
            Problem::new(
                "malformed",
                404,
                "certificate: not issued in this directory",
            )
        };
        let issuer_id = base.parent_cert_id.ok_or_else(unknown)?;
        let rec = db
            .serial(issuer_id, &serial)?
            .and_then(|s| s.cert_id)
            .map(|id| db.cert_by_id(id))
            .transpose()?
            .flatten()
            .filter(|c| c.der == der && c.appkey == base.appkey && c.store_id == base.store_id)
            .ok_or_else(unknown)?;
        let who = match &post.signer {
            Signer::Account(a) => {
                if db.acme_issued_to(rec.id)? != Some(a.id) {
                    return Err(Problem::unauthorized(
                        "the account did not obtain this certificate",
                    ));
                }
                actor(a)
            }
            Signer::Key(k) => {
                if k.spki_bits() != crate::pki::cert::subject_public_key_bits(&info.spki_der) {
                    return Err(Problem::unauthorized(
                        "the JWS key is not the certificate's key",
                    ));
                }
                Actor {
                    identity: format!("acme:certificate-key:{}", k.thumbprint()),
                    appkey: base.appkey.clone(),
                }
            }
        };
        if rec.revocation.is_some() {
            return Err(Problem::new(
                "alreadyRevoked",
                400,
                "the certificate is already revoked",
            ));
        }
        let ca = self.ca().clone();
        let (store_id, cert_id) = (rec.store_id, rec.id);
        tokio::task::spawn_blocking(move || ca.revoke(&who, store_id, cert_id, reason))
            .await
            .map_err(|e| Problem::server(format!("task failed: {e}")))?
            .map_err(|e| match e {
                crate::ca::CaError::Conflict(m) => Problem::new("alreadyRevoked", 400, m),
                other => other.into(),
            })?;
        Ok(Response::empty(200))
    }
}
