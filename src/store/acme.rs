//! ACME state: EAB tokens, accounts (and their key index), orders, authorizations, the
//! certificates each account obtained, and replay nonces. Records are JSON; ids come from
//! `Db::next_id`, so they never repeat.

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::records::two;
use super::{decode, encode, Db, StoreError};

/// Nonces older than this are refused (`badNonce`) and pruned.
pub const NONCE_TTL_SECS: i64 = 3600;
/// At most this many live nonces; the oldest go first beyond it.
const NONCE_CAP: usize = 200_000;

/// The trees ACME owns.
#[derive(Clone)]
pub(super) struct AcmeTrees {
    tokens: sled::Tree,
    cert_tokens: sled::Tree,
    accounts: sled::Tree,
    account_keys: sled::Tree,
    orders: sled::Tree,
    account_orders: sled::Tree,
    /// (account, order) of the orders still `pending` or `ready`.
    pending_orders: sled::Tree,
    authzs: sled::Tree,
    issued: sled::Tree,
    nonces: sled::Tree,
}

impl AcmeTrees {
    pub(super) fn open(db: &sled::Db) -> Result<AcmeTrees, StoreError> {
        Ok(AcmeTrees {
            tokens: db.open_tree("acme_tokens")?,
            cert_tokens: db.open_tree("acme_cert_tokens")?,
            accounts: db.open_tree("acme_accounts")?,
            account_keys: db.open_tree("acme_account_keys")?,
            orders: db.open_tree("acme_orders")?,
            account_orders: db.open_tree("acme_account_orders")?,
            pending_orders: db.open_tree("acme_pending_orders")?,
            authzs: db.open_tree("acme_authzs")?,
            issued: db.open_tree("acme_issued")?,
            nonces: db.open_tree("acme_nonces")?,
        })
    }
}

/// An external account binding token of one base certificate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AcmeToken {
    pub id: u64,
    pub appkey: String,
    pub store_id: u64,
    pub base_cert_id: u64,
    pub name: Option<String>,
    /// The HMAC key (raw bytes); kept so that the binding can be verified.
    pub hmac_key: Vec<u8>,
    pub created_at: i64,
    /// The account it bound, once used.
    pub account_id: Option<u64>,
}

/// An ACME account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AcmeAccount {
    pub id: u64,
    pub base_cert_id: u64,
    pub appkey: String,
    /// The account key as a JWK (only the members RFC 7638 names).
    pub jwk: serde_json::Value,
    /// RFC 7638 thumbprint, base64url.
    pub thumbprint: String,
    pub contact: Vec<String>,
    /// `valid`, `deactivated` or `revoked`.
    pub status: String,
    pub token_id: u64,
    pub created_at: i64,
}

/// An order or authorization identifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeIdentifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AcmeOrder {
    pub id: u64,
    pub account_id: u64,
    pub base_cert_id: u64,
    /// `pending`, `ready`, `processing`, `valid` or `invalid`.
    pub status: String,
    pub expires: i64,
    pub identifiers: Vec<AcmeIdentifier>,
    pub authz_ids: Vec<u64>,
    pub cert_id: Option<u64>,
    pub error: Option<serde_json::Value>,
    pub created_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AcmeChallenge {
    /// `http-01`, `dns-01` or `tls-alpn-01`.
    pub kind: String,
    pub token: String,
    /// `pending`, `processing`, `valid` or `invalid`.
    pub status: String,
    pub validated: Option<i64>,
    pub error: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AcmeAuthz {
    pub id: u64,
    pub account_id: u64,
    pub base_cert_id: u64,
    pub order_id: u64,
    /// For a wildcard, the name without `*.`.
    pub identifier: AcmeIdentifier,
    pub wildcard: bool,
    /// `pending`, `valid`, `invalid`, `deactivated`, `expired` or `revoked`.
    pub status: String,
    pub expires: i64,
    pub challenges: Vec<AcmeChallenge>,
}

/// The key index: one account per key within a directory.
fn key_index(base_cert_id: u64, thumbprint: &str) -> Vec<u8> {
    let mut k = base_cert_id.to_be_bytes().to_vec();
    k.extend_from_slice(thumbprint.as_bytes());
    k
}

/// The order ids an index keyed (account id, order id) holds for one account, in key order.
fn order_ids(index: &sled::Tree, account_id: u64) -> Result<Vec<u64>, StoreError> {
    index
        .scan_prefix(account_id.to_be_bytes())
        .keys()
        .map(|k| {
            let k = k?;
            Ok(u64::from_be_bytes(k[8..16].try_into().unwrap_or_default()))
        })
        .collect()
}

fn get<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    what: &str,
    id: u64,
) -> Result<Option<T>, StoreError> {
    tree.get(id.to_be_bytes())?
        .map(|v| decode(what, &v))
        .transpose()
}

impl Db {
    // ---- EAB tokens ----

    pub fn insert_acme_token(&self, t: &AcmeToken) -> Result<(), StoreError> {
        let _writing = self.writing();
        let a = &self.acme;
        a.tokens.insert(t.id.to_be_bytes(), encode(t))?;
        a.cert_tokens.insert(two(t.base_cert_id, t.id), &[])?;
        Ok(())
    }

    pub fn acme_token(&self, id: u64) -> Result<Option<AcmeToken>, StoreError> {
        get(&self.acme.tokens, "acme token", id)
    }

    /// The tokens of a base certificate, oldest first.
    pub fn acme_tokens_of(&self, base_cert_id: u64) -> Result<Vec<AcmeToken>, StoreError> {
        let mut out = Vec::new();
        for k in self
            .acme
            .cert_tokens
            .scan_prefix(base_cert_id.to_be_bytes())
            .keys()
        {
            let k = k?;
            let id = u64::from_be_bytes(k[8..16].try_into().unwrap_or_default());
            if let Some(t) = self.acme_token(id)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Removes a token; returns it (with the account it bound) if it existed.
    pub fn delete_acme_token(&self, id: u64) -> Result<Option<AcmeToken>, StoreError> {
        let _writing = self.writing();
        let Some(t) = self.acme_token(id)? else {
            return Ok(None);
        };
        self.acme.cert_tokens.remove(two(t.base_cert_id, t.id))?;
        self.acme.tokens.remove(id.to_be_bytes())?;
        Ok(Some(t))
    }

    // ---- accounts ----

    /// Creates an account bound to its (still unused) token, atomically: a token binds one
    /// account, and a key belongs to one account.
    pub fn create_acme_account(&self, acct: &AcmeAccount) -> Result<(), StoreError> {
        let _writing = self.writing();
        let a = &self.acme;
        (&a.tokens, &a.accounts, &a.account_keys)
            .transaction(|(tokens, accounts, keys)| {
                let abort = |m: &str| {
                    Err(sled::transaction::ConflictableTransactionError::Abort(
                        StoreError::Conflict(m.to_owned()),
                    ))
                };
                let Some(raw) = tokens.get(acct.token_id.to_be_bytes())? else {
                    return abort("the external account binding token does not exist");
                };
                let mut token: AcmeToken = decode("acme token", &raw)
                    .map_err(sled::transaction::ConflictableTransactionError::Abort)?;
                if token.account_id.is_some() {
                    return abort("the external account binding token is already used");
                }
                if keys
                    .get(key_index(acct.base_cert_id, &acct.thumbprint))?
                    .is_some()
                {
                    return abort("this key already belongs to an account");
                }
                token.account_id = Some(acct.id);
                tokens.insert(&token.id.to_be_bytes(), encode(&token))?;
                accounts.insert(&acct.id.to_be_bytes(), encode(acct))?;
                keys.insert(
                    key_index(acct.base_cert_id, &acct.thumbprint),
                    &acct.id.to_be_bytes(),
                )?;
                Ok(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
            })
    }

    pub fn acme_account(&self, id: u64) -> Result<Option<AcmeAccount>, StoreError> {
        get(&self.acme.accounts, "acme account", id)
    }

    pub fn acme_account_by_key(
        &self,
        base_cert_id: u64,
        thumbprint: &str,
    ) -> Result<Option<AcmeAccount>, StoreError> {
        match self
            .acme
            .account_keys
            .get(key_index(base_cert_id, thumbprint))?
        {
            None => Ok(None),
            Some(id) => {
                let id = u64::from_be_bytes(id.as_ref().try_into().unwrap_or_default());
                self.acme_account(id)
            }
        }
    }

    /// Replaces an account record; when its key changed, moves the key index (refused if the
    /// new key already belongs to an account).
    pub fn update_acme_account(
        &self,
        old_thumbprint: &str,
        acct: &AcmeAccount,
    ) -> Result<(), StoreError> {
        let _writing = self.writing();
        let a = &self.acme;
        (&a.accounts, &a.account_keys)
            .transaction(|(accounts, keys)| {
                if old_thumbprint != acct.thumbprint {
                    let new = key_index(acct.base_cert_id, &acct.thumbprint);
                    if keys.get(&new)?.is_some() {
                        return Err(sled::transaction::ConflictableTransactionError::Abort(
                            StoreError::Conflict(
                                "the new key already belongs to an account".into(),
                            ),
                        ));
                    }
                    keys.remove(key_index(acct.base_cert_id, old_thumbprint))?;
                    keys.insert(new, &acct.id.to_be_bytes())?;
                }
                accounts.insert(&acct.id.to_be_bytes(), encode(acct))?;
                Ok(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
            })
    }

    // ---- orders and authorizations ----

    pub fn put_acme_order(&self, o: &AcmeOrder) -> Result<(), StoreError> {
        let _writing = self.writing();
        let k = two(o.account_id, o.id);
        self.acme.account_orders.insert(k, &[])?;
        if matches!(o.status.as_str(), "pending" | "ready" | "processing") {
            self.acme.pending_orders.insert(k, &[])?;
        } else {
            self.acme.pending_orders.remove(k)?;
        }
        self.acme.orders.insert(o.id.to_be_bytes(), encode(o))?;
        Ok(())
    }

    pub fn acme_order(&self, id: u64) -> Result<Option<AcmeOrder>, StoreError> {
        get(&self.acme.orders, "acme order", id)
    }

    /// The order ids of an account, oldest first.
    pub fn acme_orders_of(&self, account_id: u64) -> Result<Vec<u64>, StoreError> {
        order_ids(&self.acme.account_orders, account_id)
    }

    /// The ids of an account's orders that are pending, ready or processing.
    pub fn acme_pending_orders_of(&self, account_id: u64) -> Result<Vec<u64>, StoreError> {
        order_ids(&self.acme.pending_orders, account_id)
    }

    pub fn put_acme_authz(&self, a: &AcmeAuthz) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.acme.authzs.insert(a.id.to_be_bytes(), encode(a))?;
        Ok(())
    }

    pub fn acme_authz(&self, id: u64) -> Result<Option<AcmeAuthz>, StoreError> {
        get(&self.acme.authzs, "acme authorization", id)
    }

    // ---- issued certificates ----

    /// Remembers which account obtained certificate `cert_id` (revokeCert by the account).
    pub fn put_acme_issued(&self, cert_id: u64, account_id: u64) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.acme
            .issued
            .insert(cert_id.to_be_bytes(), &account_id.to_be_bytes())?;
        Ok(())
    }

    pub fn acme_issued_to(&self, cert_id: u64) -> Result<Option<u64>, StoreError> {
        Ok(self
            .acme
            .issued
            .get(cert_id.to_be_bytes())?
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or_default())))
    }

    /// A certificate by id alone (ACME URLs carry no appkey or store).
    pub fn cert_by_id(&self, id: u64) -> Result<Option<super::CertRecord>, StoreError> {
        get(&self.trees.certs, "cert", id)
    }

    // ---- nonces ----

    /// A fresh nonce: its creation time and 16 random octets. Written without a sync: a nonce
    /// lost in a crash only makes its client retry with a new one.
    pub fn new_acme_nonce(&self, now: i64) -> Result<Vec<u8>, StoreError> {
        let _writing = self.writing();
        let mut k = now.to_be_bytes().to_vec();
        k.extend_from_slice(&rand::random::<[u8; 16]>());
        self.acme.nonces.insert(&k, &[])?;
        // Pruning, now and then: expired ones, and the oldest beyond the cap.
        if k[15] == 0 {
            let cut = (now - NONCE_TTL_SECS).to_be_bytes();
            let excess = self.acme.nonces.len().saturating_sub(NONCE_CAP);
            for (i, old) in self.acme.nonces.iter().keys().enumerate() {
                let old = old?;
                if old[..8] >= cut[..] && i >= excess {
                    break;
                }
                self.acme.nonces.remove(old)?;
            }
        }
        Ok(k)
    }

    /// Uses up a nonce: true if it was issued, unused and not expired.
    pub fn take_acme_nonce(&self, nonce: &[u8], now: i64) -> Result<bool, StoreError> {
        let _writing = self.writing();
        if nonce.len() != 24 {
            return Ok(false);
        }
        let born = i64::from_be_bytes(nonce[..8].try_into().unwrap_or_default());
        let existed = self.acme.nonces.remove(nonce)?.is_some();
        Ok(existed && now - born <= NONCE_TTL_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(db: &Db, cert: u64) -> AcmeToken {
        let t = AcmeToken {
            id: db.next_id().unwrap(),
            appkey: "k".into(),
            store_id: 1,
            base_cert_id: cert,
            name: None,
            hmac_key: vec![7; 32],
            created_at: 0,
            account_id: None,
        };
        db.insert_acme_token(&t).unwrap();
        t
    }

    fn account(db: &Db, token_id: u64, thumb: &str) -> AcmeAccount {
        AcmeAccount {
            id: db.next_id().unwrap(),
            base_cert_id: 5,
            appkey: "k".into(),
            jwk: serde_json::json!({}),
            thumbprint: thumb.into(),
            contact: vec![],
            status: "valid".into(),
            token_id,
            created_at: 0,
        }
    }

    #[test]
    fn a_token_binds_one_account_and_a_key_one_account() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let t = token(&db, 5);
        let a = account(&db, t.id, "K1");
        db.create_acme_account(&a).unwrap();
        assert_eq!(db.acme_token(t.id).unwrap().unwrap().account_id, Some(a.id));
        assert!(matches!(
            db.create_acme_account(&account(&db, t.id, "K2")),
            Err(StoreError::Conflict(_))
        ));
        let t2 = token(&db, 5);
        assert!(matches!(
            db.create_acme_account(&account(&db, t2.id, "K1")),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(db.acme_account_by_key(5, "K1").unwrap().unwrap().id, a.id);
        assert_eq!(db.acme_tokens_of(5).unwrap().len(), 2);
        db.delete_acme_token(t2.id).unwrap();
        assert_eq!(db.acme_tokens_of(5).unwrap().len(), 1);
        let mut moved = a.clone();
        moved.thumbprint = "K3".into();
        db.update_acme_account("K1", &moved).unwrap();
        assert!(db.acme_account_by_key(5, "K1").unwrap().is_none());
        assert_eq!(db.acme_account_by_key(5, "K3").unwrap().unwrap().id, a.id);
    }

    #[test]
    fn nonces_are_used_once_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let n = db.new_acme_nonce(1000).unwrap();
        assert!(db.take_acme_nonce(&n, 1001).unwrap());
        assert!(!db.take_acme_nonce(&n, 1001).unwrap());
        let old = db.new_acme_nonce(1000).unwrap();
        assert!(!db.take_acme_nonce(&old, 1000 + NONCE_TTL_SECS + 1).unwrap());
        assert!(!db.take_acme_nonce(b"short", 1000).unwrap());
    }
}
