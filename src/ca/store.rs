//! Stores: create, replace, delete (with their HSM keys).

use super::{now, Actor, Ca, CaError, Page, Store, Target};
use crate::hsm::KeyId;
use crate::store::{IdKind, PendingDestroy, StoreRecord};

/// A checked Create/Modify Store body.
#[derive(Clone, Debug)]
pub struct StoreParams {
    pub name: String,
    pub description: Option<String>,
    pub crl_active: bool,
    pub crl_refresh_period: u32,
    pub ocsp_active: bool,
    pub ocsp_refresh_period: u32,
}

impl Ca {
    pub fn create_store(&self, who: &Actor, p: StoreParams) -> Result<Store, CaError> {
        let appkey = who.appkey.as_str();
        let t = now();
        let rec = StoreRecord {
            id: self.db.next_id_of(IdKind::Store)?,
            appkey: appkey.to_owned(),
            name: p.name,
            description: p.description,
            crl_active: p.crl_active,
            crl_refresh_period: p.crl_refresh_period,
            ocsp_active: p.ocsp_active,
            ocsp_refresh_period: p.ocsp_refresh_period,
            created_at: t,
            updated_at: t,
        };
        if let Err(e) = self.db.insert_store(&rec) {
            // Nothing was written under the id (e.g. the name is taken): no gap in the ids.
            self.db.give_back_id(IdKind::Store, rec.id)?;
            return Err(e.into());
        }
        self.audit(who, "STORE_CREATE", store_target(rec.id), "SUCCESS")?;
        self.db.durable()?;
        Ok(rec.into())
    }

    pub fn list_stores(
        &self,
        appkey: &str,
        search: Option<&str>,
        page: u64,
        size: u64,
    ) -> Result<Page<Store>, CaError> {
        let p = self.db.list_stores(appkey, search, page, size)?;
        Ok(Page::from_store(p, Store::from))
    }

    /// Replaces the store's settings ("Same as Create Store"); CRL/OCSP toggles affect only
    /// certificates issued from now on.
    pub fn update_store(&self, who: &Actor, id: u64, p: StoreParams) -> Result<Store, CaError> {
        let old = self.store(&who.appkey, id)?;
        let new = StoreRecord {
            name: p.name,
            description: p.description,
            crl_active: p.crl_active,
            crl_refresh_period: p.crl_refresh_period,
            ocsp_active: p.ocsp_active,
            ocsp_refresh_period: p.ocsp_refresh_period,
            updated_at: now(),
            ..old.clone()
        };
        self.db.update_store(&old, &new)?;
        self.audit(who, "STORE_UPDATE", store_target(id), "SUCCESS")?;
        self.db.durable()?;
        self.publisher.store_changed(&new);
        Ok(new.into())
    }

    /// Deletes the store with everything in it, then destroys its issuer keys in the HSM. A key
    /// the HSM cannot destroy now is remembered and destroyed when it is back.
    pub fn delete_store(&self, who: &Actor, id: u64) -> Result<(), CaError> {
        let rec = self.store(&who.appkey, id)?;
        // The keys must be destroyable: ask the device now (a dead one answers 503 and nothing
        // is deleted).
        self.hsm.list_keys()?;
        let issuers = self.db.delete_store(&rec)?;
        self.audit(who, "STORE_DELETE", store_target(id), "SUCCESS")?;
        self.db.durable()?;
        self.publisher.store_deleted(&rec);
        for issuer in issuers {
            let Some(key_id) = issuer.issuer_key.as_ref().map(|k| k.key_id.clone()) else {
                continue;
            };
            let target = Target {
                store: Some(rec.id),
                cert: Some(issuer.id),
                ..Target::default()
            };
            let result = KeyId::from_hex(&key_id)
                .ok_or_else(|| format!("bad key id {key_id}"))
                .and_then(|k| self.hsm.destroy_key(&k).map_err(|e| e.to_string()));
            match result {
                Ok(()) => self.audit_refusal(who, "KEY_DESTROY", target, "SUCCESS"),
                Err(e) => {
                    log::error!(
                        "store {} deleted; key {key_id} of certificate {} will be destroyed when the HSM is back: {e}",
                        rec.id,
                        issuer.id
                    );
                    let pending = PendingDestroy {
                        key_id,
                        appkey: rec.appkey.clone(),
                        store_id: rec.id,
                        cert_id: issuer.id,
                    };
                    self.db.add_pending_destroy(&pending)?;
                    self.audit_refusal(who, "KEY_DESTROY", target, &format!("DEFERRED: {e}"));
                    self.db.durable()?;
                }
            }
        }
        Ok(())
    }
}

fn store_target(id: u64) -> Target {
    Target {
        store: Some(id),
        ..Target::default()
    }
}
