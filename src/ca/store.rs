//! Stores: create, replace, delete (with their HSM keys).

use super::{now, Ca, CaError};
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
    pub fn create_store(&self, appkey: &str, p: StoreParams) -> Result<StoreRecord, CaError> {
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
        appkey: &str,
        id: u64,
        p: StoreParams,
    ) -> Result<StoreRecord, CaError> {
        let old = self.store(appkey, id)?;
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
        self.db.durable()?;
        self.publisher.store_changed(&new);
        Ok(new)
    }

    /// Deletes the store with everything in it, then destroys its issuer keys in the HSM.
    pub fn delete_store(&self, appkey: &str, id: u64) -> Result<(), CaError> {
        let rec = self.store(appkey, id)?;
        if !self.hsm.is_up() {
            return Err(CaError::HsmUnavailable(
                "the store's keys cannot be destroyed now; nothing was deleted".into(),
            ));
        }
        let issuers = self.db.delete_store(&rec)?;
        self.db.durable()?;
        self.publisher.store_deleted(&rec);
        for issuer in issuers {
            if let Some(id) = issuer
                .issuer_key
                .as_ref()
                .and_then(|k| KeyId::from_hex(&k.key_id))
            {
                if let Err(e) = self.hsm.destroy_key(&id) {
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
