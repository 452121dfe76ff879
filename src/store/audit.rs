//! The append-only audit tree: one event per state change, per appkey, newest first on read.

use serde::{Deserialize, Serialize};

use super::{decode, encode, Db, Page, StoreError};

/// One audit event.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub event_id: u64,
    /// Unix seconds.
    pub time: i64,
    /// Who: the client certificate CN or the token's identity.
    pub identity: String,
    pub appkey: String,
    /// e.g. `STORE_CREATE`, `LEAF_ISSUE`, `CERT_REVOKE`, `KEY_DESTROY`.
    pub action: String,
    pub ca_store_id: Option<u64>,
    pub cert_id: Option<u64>,
    pub template_id: Option<u64>,
    /// Lowercase hex.
    pub serial_number: Option<String>,
    /// `SUCCESS`, or the error code and message of a refused request.
    pub result: String,
}

/// Which events to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    /// Unix seconds, inclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

fn prefix(appkey: &str) -> Vec<u8> {
    let mut k = appkey.as_bytes().to_vec();
    k.push(0);
    k
}

impl Db {
    /// Appends an event (made durable by the caller's next `durable()`).
    pub fn append_audit(&self, mut event: AuditEvent) -> Result<AuditEvent, StoreError> {
        event.event_id = self.next_id_of(super::IdKind::Audit)?;
        let _writing = self.writing();
        let mut k = prefix(&event.appkey);
        k.extend_from_slice(&event.event_id.to_be_bytes());
        self.trees.audit.insert(k, encode(&event))?;
        Ok(event)
    }

    /// The events of an appkey, newest first.
    pub fn list_audit(
        &self,
        appkey: &str,
        filter: &AuditFilter,
        page: u64,
        size: u64,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let mut items = Vec::new();
        for v in self.trees.audit.scan_prefix(prefix(appkey)).values().rev() {
            let e: AuditEvent = decode("audit", &v?)?;
            if filter.action.as_ref().is_some_and(|a| *a != e.action)
                || filter.from.is_some_and(|f| e.time < f)
                || filter.to.is_some_and(|t| e.time > t)
            {
                continue;
            }
            items.push(e);
        }
        Ok(super::trees::paginate(items, page, size))
    }
}

/// An issuer key whose store was deleted while the HSM could not destroy it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingDestroy {
    /// CKA_ID hex.
    pub key_id: String,
    pub appkey: String,
    pub store_id: u64,
    pub cert_id: u64,
}

impl Db {
    /// Remembers (durably, with the caller's next `durable()`) a key still to destroy.
    pub fn add_pending_destroy(&self, p: &PendingDestroy) -> Result<(), StoreError> {
        let _writing = self.writing();
        let key = format!("destroy/{}", p.key_id);
        self.trees.meta.insert(key, encode(p))?;
        Ok(())
    }

    /// Keys still to destroy.
    pub fn pending_destroys(&self) -> Result<Vec<PendingDestroy>, StoreError> {
        self.trees
            .meta
            .scan_prefix(b"destroy/")
            .values()
            .map(|v| decode("pending destroy", &v?))
            .collect()
    }

    pub fn remove_pending_destroy(&self, key_id: &str) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.trees.meta.remove(format!("destroy/{key_id}"))?;
        Ok(())
    }
}
