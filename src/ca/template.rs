//! Templates: the seed's Template API (Vault PKI roles under other names).

use super::{now, Actor, Ca, CaError, Page, Target, Template};
use crate::pki::cert;
use crate::pki::profile::TemplateSpec;
use crate::store::{IdKind, TemplateRecord};

impl Ca {
    pub fn create_template(
        &self,
        who: &Actor,
        store_id: u64,
        p: TemplateSpec,
    ) -> Result<Template, CaError> {
        let appkey = who.appkey.as_str();
        self.check_template(appkey, store_id, &p)?;
        let t = now();
        let rec = record(
            self.db.next_id_of(IdKind::Template)?,
            appkey,
            store_id,
            p,
            t,
            t,
        );
        if let Err(e) = self.db.insert_template(&rec) {
            // Nothing was written under the id (e.g. the name is taken): no gap in the ids.
            self.db.give_back_id(IdKind::Template, rec.id)?;
            return Err(e.into());
        }
        self.audit(
            who,
            "TEMPLATE_CREATE",
            template_target(store_id, rec.id),
            "SUCCESS",
        )?;
        self.db.durable()?;
        Ok(rec.into())
    }

    /// Template `id` of a store, or 404.
    pub fn template_info(&self, appkey: &str, store_id: u64, id: u64) -> Result<Template, CaError> {
        self.template(appkey, store_id, id).map(Template::from)
    }

    /// The stored record of template `id` of a store, or 404.
    pub(crate) fn template(
        &self,
        appkey: &str,
        store_id: u64,
        id: u64,
    ) -> Result<TemplateRecord, CaError> {
        self.store(appkey, store_id)?;
        self.db.template(appkey, store_id, id)?.ok_or_else(|| {
            CaError::NotFound(format!("templateId: no template {id} in store {store_id}"))
        })
    }

    pub fn list_templates(
        &self,
        appkey: &str,
        store_id: u64,
        search: Option<&str>,
        page: u64,
        size: u64,
    ) -> Result<Page<Template>, CaError> {
        self.store(appkey, store_id)?;
        let p = self.db.list_templates(store_id, search, page, size)?;
        Ok(Page::from_store(p, Template::from))
    }

    /// Replaces a template ("Same as Create Template").
    pub fn update_template(
        &self,
        who: &Actor,
        store_id: u64,
        id: u64,
        p: TemplateSpec,
    ) -> Result<Template, CaError> {
        let appkey = who.appkey.as_str();
        let old = self.template(appkey, store_id, id)?;
        self.check_template(appkey, store_id, &p)?;
        let new = record(id, appkey, store_id, p, old.created_at, now());
        self.db.update_template(&old, &new)?;
        self.audit(
            who,
            "TEMPLATE_UPDATE",
            template_target(store_id, id),
            "SUCCESS",
        )?;
        self.db.durable()?;
        Ok(new.into())
    }

    pub fn delete_template(&self, who: &Actor, store_id: u64, id: u64) -> Result<(), CaError> {
        let old = self.template(&who.appkey, store_id, id)?;
        self.db.delete_template(&old)?;
        self.audit(
            who,
            "TEMPLATE_DELETE",
            template_target(store_id, id),
            "SUCCESS",
        )?;
        self.db.durable()?;
        Ok(())
    }

    /// Rules that need the database: the parent is a usable issuer of this store; the key usages
    /// fit the key type.
    fn check_template(&self, appkey: &str, store_id: u64, p: &TemplateSpec) -> Result<(), CaError> {
        self.store(appkey, store_id)?;
        let parent = self
            .db
            .cert(appkey, store_id, p.parent_cert_id)?
            .ok_or_else(|| {
                CaError::NotFound(format!(
                    "parentCertId: no certificate {} in store {store_id}",
                    p.parent_cert_id
                ))
            })?;
        self.check_issuer_usable(&parent, "parentCertId")?;
        if let Some(max) = p.max_specific_date {
            if max > parent.not_after {
                return Err(CaError::Invalid(format!(
                    "maxSpecificDate: must not be after the issuer's notAfter ({})",
                    crate::clock::timestamp(parent.not_after)
                )));
            }
        }
        for ku in &p.key_usage {
            cert::key_usage_allowed(p.key_algorithm.family(), *ku)
                .map_err(|rule| CaError::Invalid(format!("keyUsage: {ku:?} {rule}")))?;
        }
        Ok(())
    }
}

fn record(
    id: u64,
    appkey: &str,
    store_id: u64,
    spec: TemplateSpec,
    created_at: i64,
    updated_at: i64,
) -> TemplateRecord {
    TemplateRecord {
        id,
        appkey: appkey.to_owned(),
        store_id,
        spec,
        created_at,
        updated_at,
    }
}

fn template_target(store: u64, template: u64) -> Target {
    Target {
        store: Some(store),
        template: Some(template),
        ..Target::default()
    }
}
