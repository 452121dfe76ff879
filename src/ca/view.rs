//! What the CA hands out: its stores, certificates, templates and audit events as values of
//! their own, built here from the stored records, so that how the database lays a record out
//! is no concern of the API; and the `Ca` reads that answer them.

use serde::Serialize;

use super::{Ca, CaError};

use crate::pki::cert::Sans;
use crate::pki::crl::RevocationReason;
use crate::pki::profile::TemplateSpec;
use crate::pki::{KeyAlgorithm, SignatureAlgorithm};
use crate::store::{
    self, AcmeToken, AuditFilter, CertFilter, CertRecord, CertType, StoreRecord, TemplateRecord,
};

/// One page of a list, with the size of the whole list.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub total_count: u64,
    pub page: u64,
    pub size: u64,
    pub items: Vec<T>,
}

impl<T> Page<T> {
    /// Page `page` (from 0) of `size` items of a list already in memory.
    pub fn of(all: Vec<T>, page: u64, size: u64) -> Page<T> {
        Page {
            total_count: all.len() as u64,
            page,
            size,
            items: all
                .into_iter()
                .skip(page.saturating_mul(size) as usize)
                .take(size as usize)
                .collect(),
        }
    }

    pub(super) fn from_store<R>(p: store::Page<R>, item: impl FnMut(R) -> T) -> Page<T> {
        Page {
            total_count: p.total_count,
            page: p.page,
            size: p.size,
            items: p.items.into_iter().map(item).collect(),
        }
    }
}

/// A CA store and its publishing settings.
#[derive(Clone, Debug)]
pub struct Store {
    pub id: u64,
    pub name: String,
    pub description: Option<String>,
    pub crl_active: bool,
    pub crl_refresh_period: u32,
    pub ocsp_active: bool,
    pub ocsp_refresh_period: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<StoreRecord> for Store {
    fn from(r: StoreRecord) -> Store {
        Store {
            id: r.id,
            name: r.name,
            description: r.description,
            crl_active: r.crl_active,
            crl_refresh_period: r.crl_refresh_period,
            ocsp_active: r.ocsp_active,
            ocsp_refresh_period: r.ocsp_refresh_period,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Where a certificate sits in its store's hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    Root,
    Intermediate,
    Leaf,
}

impl From<CertType> for CertKind {
    fn from(t: CertType) -> CertKind {
        match t {
            CertType::Root => CertKind::Root,
            CertType::Intermediate => CertKind::Intermediate,
            CertType::Leaf => CertKind::Leaf,
        }
    }
}

impl From<CertKind> for CertType {
    fn from(k: CertKind) -> CertType {
        match k {
            CertKind::Root => CertType::Root,
            CertKind::Intermediate => CertType::Intermediate,
            CertKind::Leaf => CertType::Leaf,
        }
    }
}

/// When and why a certificate was revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// Unix seconds.
    pub at: i64,
    pub reason: RevocationReason,
}

/// A certificate the CA keeps (issuers always; leaves when their template stores them).
#[derive(Clone, Debug)]
pub struct Certificate {
    pub id: u64,
    pub store_id: u64,
    pub name: String,
    pub description: Option<String>,
    pub kind: CertKind,
    pub parent_cert_id: Option<u64>,
    pub template_id: Option<u64>,
    pub serial: Vec<u8>,
    pub der: Vec<u8>,
    pub common_name: Option<String>,
    /// RFC 4514.
    pub subject: String,
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    pub key_algorithm: KeyAlgorithm,
    /// The algorithm this certificate was signed with.
    pub signature_algorithm: SignatureAlgorithm,
    /// For an issuer: how it signs, and how many intermediates may follow it (-1: no limit).
    pub signing: Option<Signing>,
    pub sans: Sans,
    pub crl_url: Option<String>,
    pub ocsp_url: Option<String>,
    pub revocation: Option<Revoked>,
    pub created_at: i64,
}

/// How an issuer signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signing {
    pub signature_algorithm: SignatureAlgorithm,
    pub max_depth: i32,
}

impl From<CertRecord> for Certificate {
    fn from(r: CertRecord) -> Certificate {
        Certificate {
            id: r.id,
            store_id: r.store_id,
            name: r.name,
            description: r.description,
            kind: r.cert_type.into(),
            parent_cert_id: r.parent_cert_id,
            template_id: r.template_id,
            serial: r.serial,
            der: r.der,
            common_name: r.common_name,
            subject: r.subject,
            issuer: r.issuer,
            not_before: r.not_before,
            not_after: r.not_after,
            key_algorithm: r.key_algorithm,
            signature_algorithm: r.signature_algorithm,
            signing: r.issuer_key.map(|k| Signing {
                signature_algorithm: k.signature_algorithm,
                max_depth: k.max_depth,
            }),
            sans: r.sans,
            crl_url: r.crl_url,
            ocsp_url: r.ocsp_url,
            revocation: r.revocation.map(|v| Revoked {
                at: v.at,
                reason: v.reason,
            }),
            created_at: r.created_at,
        }
    }
}

/// A template: the profile leaves are issued from.
#[derive(Clone, Debug)]
pub struct Template {
    pub id: u64,
    pub store_id: u64,
    pub spec: TemplateSpec,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<TemplateRecord> for Template {
    fn from(r: TemplateRecord) -> Template {
        Template {
            id: r.id,
            store_id: r.store_id,
            spec: r.spec,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Which certificates of a store to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertScope {
    All,
    /// ROOT and INTERMEDIATE.
    Issuer,
    Leaf,
}

impl From<CertScope> for CertFilter {
    fn from(s: CertScope) -> CertFilter {
        match s {
            CertScope::All => CertFilter::All,
            CertScope::Issuer => CertFilter::Issuer,
            CertScope::Leaf => CertFilter::Leaf,
        }
    }
}

/// Which audit events to list.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub action: Option<String>,
    /// Unix seconds, inclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl From<AuditQuery> for AuditFilter {
    fn from(q: AuditQuery) -> AuditFilter {
        AuditFilter {
            action: q.action,
            from: q.from,
            to: q.to,
        }
    }
}

/// One audit event; serialises as API.md's audit event (before its time is formatted).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub event_id: u64,
    /// Unix seconds.
    pub time: i64,
    pub identity: String,
    pub appkey: String,
    pub action: String,
    pub ca_store_id: Option<u64>,
    pub cert_id: Option<u64>,
    pub template_id: Option<u64>,
    /// Lowercase hex.
    pub serial_number: Option<String>,
    pub result: String,
}

impl From<store::AuditEvent> for AuditEvent {
    fn from(e: store::AuditEvent) -> AuditEvent {
        AuditEvent {
            event_id: e.event_id,
            time: e.time,
            identity: e.identity,
            appkey: e.appkey,
            action: e.action,
            ca_store_id: e.ca_store_id,
            cert_id: e.cert_id,
            template_id: e.template_id,
            serial_number: e.serial_number,
            result: e.result,
        }
    }
}

/// An ACME External Account Binding token, without its key.
#[derive(Clone, Debug)]
pub struct EabToken {
    pub id: u64,
    pub name: Option<String>,
    pub created_at: i64,
    /// The certificate whose ACME directory it opens.
    pub base_cert_id: u64,
    /// The account it bound, once used.
    pub account_id: Option<u64>,
}

impl From<AcmeToken> for EabToken {
    fn from(t: AcmeToken) -> EabToken {
        EabToken {
            id: t.id,
            name: t.name,
            created_at: t.created_at,
            base_cert_id: t.base_cert_id,
            account_id: t.account_id,
        }
    }
}

impl Ca {
    /// The store `id` of `appkey`, or 404.
    pub fn store_info(&self, appkey: &str, id: u64) -> Result<Store, CaError> {
        self.store(appkey, id).map(Store::from)
    }

    /// Whether store `id` of `appkey` exists.
    pub fn store_exists(&self, appkey: &str, id: u64) -> Result<bool, CaError> {
        Ok(self.db.store(appkey, id)?.is_some())
    }

    /// The certificate `id` of a store, or 404.
    pub fn cert_info(&self, appkey: &str, store_id: u64, id: u64) -> Result<Certificate, CaError> {
        self.cert(appkey, store_id, id).map(Certificate::from)
    }

    /// The certificate `id` of a store with the issuers above it (its issuer first), or 404.
    pub fn cert_with_chain(
        &self,
        appkey: &str,
        store_id: u64,
        id: u64,
    ) -> Result<(Certificate, Vec<Certificate>), CaError> {
        let c = self.cert(appkey, store_id, id)?;
        let chain = self.chain(&c)?;
        Ok((c.into(), chain.into_iter().map(Certificate::from).collect()))
    }

    /// A page of a store's certificates, oldest first.
    pub fn list_certs(
        &self,
        appkey: &str,
        store_id: u64,
        scope: CertScope,
        search: Option<&str>,
        page: u64,
        size: u64,
    ) -> Result<Page<Certificate>, CaError> {
        self.store(appkey, store_id)?;
        let p = self
            .db
            .list_certs(store_id, scope.into(), search, page, size)?;
        Ok(Page::from_store(p, Certificate::from))
    }

    /// A page of an appkey's audit events, newest first.
    pub fn list_audit(
        &self,
        appkey: &str,
        query: AuditQuery,
        page: u64,
        size: u64,
    ) -> Result<Page<AuditEvent>, CaError> {
        let p = self.db.list_audit(appkey, &query.into(), page, size)?;
        Ok(Page::from_store(p, AuditEvent::from))
    }
}
