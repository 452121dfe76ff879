//! Stores: create, replace, delete (with their HSM keys).

use super::{now, Actor, Ca, CaError, Target};
use crate::hsm::KeyId;
use crate::store::{Page, StoreRecord};

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
    pub fn create_store(&self, who: &Actor, p: StoreParams) -> Result<StoreRecord, CaError> {
        let appkey = who.appkey.as_str();
        let t = now();
        let rec = StoreRecord {
            id: self.db.next_id()?,
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
        self.db.insert_store(&rec)?;
        self.audit(who, "STORE_CREATE", store_target(rec.id), "SUCCESS")?;
        self.db.durable()?;
        Ok(rec)
    }

    pub fn list_stores(
        &self,
        appkey: &str,
        search: Option<&str>,
        page: u64,
        size: u64,
    ) -> Result<Page<StoreRecord>, CaError> {
        Ok(self.db.list_stores(appkey, search, page, size)?)
    }

    /// Replaces the store's settings ("Same as Create Store"); CRL/OCSP toggles affect only
    /// certificates issued from now on.
    pub fn update_store(
        &self,
        who: &Actor,
        id: u64,
        p: StoreParams,
    ) -> Result<StoreRecord, CaError> {
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
        Ok(new)
    }

    /// Deletes the store with everything in it, then destroys its issuer keys in the HSM.
    pub fn delete_store(&self, who: &Actor, id: u64) -> Result<(), CaError> {
        let rec = self.store(&who.appkey, id)?;
        if !self.hsm.is_up() {
            return Err(CaError::HsmUnavailable(
                "the store's keys cannot be destroyed now; nothing was deleted".into(),
            ));
        }
        let issuers = self.db.delete_store(&rec)?;
        self.audit(who, "STORE_DELETE", store_target(id), "SUCCESS")?;
        self.db.durable()?;
        self.publisher.store_deleted(&rec);
        for issuer in issuers {
            if let Some(id) = issuer
                .issuer_key
                .as_ref()
                .and_then(|k| KeyId::from_hex(&k.key_id))
            {
                let result = self.hsm.destroy_key(&id);
                let target = Target {
                    store: Some(rec.id),
                    cert: Some(issuer.id),
                    ..Target::default()
                };
                let outcome = match &result {
                    Ok(()) => "SUCCESS".to_owned(),
                    Err(e) => format!("FAILED: {e}"),
                };
                self.audit_refusal(who, "KEY_DESTROY", target, &outcome);
                if let Err(e) = result {
                    log::error!(
                        "store {} deleted but key {} of certificate {} could not be destroyed: {e}",
                        rec.id,
                        id.to_hex(),
                        issuer.id
                    );
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
