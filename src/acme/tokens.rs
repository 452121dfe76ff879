//! External account binding tokens, managed through the v2.0 API (ACME.md "EAB tokens").

use super::jws::b64;
use crate::ca::{Actor, Ca, CaError, Target};
use crate::clock::now;
use crate::store::{AcmeToken, CertRecord, CertType};

/// The base certificate `cert_id` of a store: a stored leaf issued with a template.
fn base(ca: &Ca, appkey: &str, store_id: u64, cert_id: u64) -> Result<CertRecord, CaError> {
    let c = ca.cert(appkey, store_id, cert_id)?;
    if c.cert_type != CertType::Leaf || c.template_id.is_none() {
        return Err(CaError::NotFound(format!(
            "certId: {cert_id} is not a leaf issued with a template, so it has no ACME directory"
        )));
    }
    Ok(c)
}

fn target(store_id: u64, cert_id: u64) -> Target {
    Target {
        store: Some(store_id),
        cert: Some(cert_id),
        template: None,
        serial: None,
    }
}

/// A new token with 32 random key octets; durable and audited before it is returned.
pub fn create_token(
    ca: &Ca,
    who: &Actor,
    store_id: u64,
    cert_id: u64,
    name: Option<String>,
) -> Result<(AcmeToken, String), CaError> {
    let b = base(ca, &who.appkey, store_id, cert_id)?;
    if let Some(n) = &name {
        if n.chars().count() > 100 {
            return Err(CaError::Invalid(
                "name: must be at most 100 characters".into(),
            ));
        }
    }
    let key: [u8; 32] = rand::random();
    let token = AcmeToken {
        id: ca.db.next_id()?,
        appkey: b.appkey.clone(),
        store_id,
        base_cert_id: b.id,
        name,
        hmac_key: key.to_vec(),
        created_at: now(),
        account_id: None,
    };
    ca.db.insert_acme_token(&token)?;
    ca.audit(
        who,
        "ACME_TOKEN_CREATE",
        target(store_id, cert_id),
        "SUCCESS",
    )?;
    ca.db.durable()?;
    Ok((token, b64(&key)))
}

pub fn list_tokens(
    ca: &Ca,
    appkey: &str,
    store_id: u64,
    cert_id: u64,
) -> Result<Vec<AcmeToken>, CaError> {
    let b = base(ca, appkey, store_id, cert_id)?;
    Ok(ca.db.acme_tokens_of(b.id)?)
}

/// Deletes a token and deactivates the account it bound.
pub fn delete_token(
    ca: &Ca,
    who: &Actor,
    store_id: u64,
    cert_id: u64,
    token_id: u64,
) -> Result<(), CaError> {
    let b = base(ca, &who.appkey, store_id, cert_id)?;
    let token = ca
        .db
        .acme_token(token_id)?
        .filter(|t| t.base_cert_id == b.id)
        .ok_or_else(|| {
            CaError::NotFound(format!(
                "tokenId: no ACME token {token_id} of certificate {cert_id}"
            ))
        })?;
    if let Some(account_id) = token.account_id {
        if let Some(mut a) = ca.db.acme_account(account_id)? {
            a.status = "deactivated".into();
            ca.db.update_acme_account(&a.thumbprint.clone(), &a)?;
        }
    }
    ca.db.delete_acme_token(token.id)?;
    ca.audit(
        who,
        "ACME_TOKEN_DELETE",
        target(store_id, cert_id),
        "SUCCESS",
    )?;
    ca.db.durable()?;
    Ok(())
}
