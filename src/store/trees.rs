//! The trees and the typed operations on them. Keys are big-endian so ranges iterate in order.

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::records::{
    two, CertRecord, CertType, CrlRecord, Revocation, SerialRecord, StoreRecord, TemplateRecord,
};
use super::{decode, encode, Db, StoreError};

#[derive(Clone)]
pub(super) struct Trees {
    pub(super) meta: sled::Tree,
    pub(super) audit: sled::Tree,
    /// Per-kind id counters (`ids.rs`).
    pub(super) ids: sled::Tree,
    pub(super) stores: sled::Tree,
    store_names: sled::Tree,
    pub(super) certs: sled::Tree,
    store_certs: sled::Tree,
    pub(super) serials: sled::Tree,
    pub(super) templates: sled::Tree,
    store_templates: sled::Tree,
    template_names: sled::Tree,
    crls: sled::Tree,
    blobs: sled::Tree,
    revoked: sled::Tree,
    pub(super) ocsp: sled::Tree,
    pub(super) ocsp_sets: sled::Tree,
}

impl Trees {
    pub(super) fn open(db: &sled::Db) -> Result<Trees, StoreError> {
        Ok(Trees {
            meta: db.open_tree("meta")?,
            audit: db.open_tree("audit")?,
            ids: db.open_tree("ids")?,
            stores: db.open_tree("stores")?,
            store_names: db.open_tree("store_names")?,
            certs: db.open_tree("certs")?,
            store_certs: db.open_tree("store_certs")?,
            serials: db.open_tree("serials")?,
            templates: db.open_tree("templates")?,
            store_templates: db.open_tree("store_templates")?,
            template_names: db.open_tree("template_names")?,
            crls: db.open_tree("crls")?,
            blobs: db.open_tree("blobs")?,
            revoked: db.open_tree("revoked")?,
            ocsp: db.open_tree("ocsp")?,
            ocsp_sets: db.open_tree("ocsp_sets")?,
        })
    }
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub total_count: u64,
    pub page: u64,
    pub size: u64,
    pub items: Vec<T>,
}

/// The seed's certificate list filter (`type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertFilter {
    All,
    Issuer,
    Leaf,
}

fn with_prefix(a: u64, rest: &[u8]) -> Vec<u8> {
    let mut k = a.to_be_bytes().to_vec();
    k.extend_from_slice(rest);
    k
}

fn store_name_key(appkey: &str, name: &str) -> Vec<u8> {
    let mut k = appkey.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

pub(super) fn paginate<T>(items: Vec<T>, page: u64, size: u64) -> Page<T> {
    let total_count = items.len() as u64;
    let start = page.saturating_mul(size);
    let items = items
        .into_iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(usize::try_from(size).unwrap_or(usize::MAX))
        .collect();
    Page {
        total_count,
        page,
        size,
        items,
    }
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

fn abort<T>(e: StoreError) -> Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(e))
}

impl Db {
    // ---- stores ----

    /// Inserts a new store; its name must be unique within the appkey.
    pub fn insert_store(&self, rec: &StoreRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        let t = &self.trees;
        (&t.stores, &t.store_names)
            .transaction(|(stores, names)| {
                let nk = store_name_key(&rec.appkey, &rec.name);
                if names.get(&nk)?.is_some() {
                    return abort(StoreError::Conflict(format!(
                        "name: a store named {:?} already exists",
                        rec.name
                    )));
                }
                names.insert(nk, &rec.id.to_be_bytes())?;
                stores.insert(&rec.id.to_be_bytes(), encode(rec))?;
                Ok(())
            })
            .map_err(tx_err)
    }

    /// Replaces a store record (PUT), keeping the name index right.
    pub fn update_store(&self, old: &StoreRecord, new: &StoreRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        let t = &self.trees;
        (&t.stores, &t.store_names)
            .transaction(|(stores, names)| {
                if old.name != new.name {
                    let nk = store_name_key(&new.appkey, &new.name);
                    if names.get(&nk)?.is_some() {
                        return abort(StoreError::Conflict(format!(
                            "name: a store named {:?} already exists",
                            new.name
                        )));
                    }
                    names.remove(store_name_key(&old.appkey, &old.name))?;
                    names.insert(nk, &new.id.to_be_bytes())?;
                }
                stores.insert(&new.id.to_be_bytes(), encode(new))?;
                Ok(())
            })
            .map_err(tx_err)
    }

    /// The store `id` of `appkey`.
    pub fn store(&self, appkey: &str, id: u64) -> Result<Option<StoreRecord>, StoreError> {
        match self.trees.stores.get(id.to_be_bytes())? {
            None => Ok(None),
            Some(v) => {
                let rec: StoreRecord = decode("store", &v)?;
                Ok((rec.appkey == appkey).then_some(rec))
            }
        }
    }

    /// Every store of every appkey (for the schedulers).
    pub fn all_stores(&self) -> Result<Vec<StoreRecord>, StoreError> {
        self.trees
            .stores
            .iter()
            .values()
            .map(|v| decode("store", &v?))
            .collect()
    }

    pub fn list_stores(
        &self,
        appkey: &str,
        search: Option<&str>,
        page: u64,
        size: u64,
    ) -> Result<Page<StoreRecord>, StoreError> {
        let mut items = Vec::new();
        for v in self.trees.stores.iter().values() {
            let rec: StoreRecord = decode("store", &v?)?;
            if rec.appkey != appkey {
                continue;
            }
            if let Some(s) = search {
                let desc = rec.description.as_deref().unwrap_or("");
                if !contains_ci(&rec.name, s) && !contains_ci(desc, s) {
                    continue;
                }
            }
            items.push(rec);
        }
        Ok(paginate(items, page, size))
    }

    /// Removes a store and everything in it; returns its issuer certificates so that their HSM
    /// keys can be destroyed. The store disappears atomically first; children follow.
    pub fn delete_store(&self, rec: &StoreRecord) -> Result<Vec<CertRecord>, StoreError> {
        let writing = self.writing();
        let t = &self.trees;
        (&t.stores, &t.store_names)
            .transaction(|(stores, names)| {
                stores.remove(&rec.id.to_be_bytes())?;
                names.remove(store_name_key(&rec.appkey, &rec.name))?;
                Ok(())
            })
            .map_err(tx_err)?;
        let mut issuers = Vec::new();
        for kv in t.store_certs.scan_prefix(rec.id.to_be_bytes()) {
            let (k, _) = kv?;
            let id = &k[8..16];
            if let Some(v) = t.certs.remove(id)? {
                let cert: CertRecord = decode("cert", &v)?;
                if cert.is_issuer() {
                    for s in t.serials.scan_prefix(cert.id.to_be_bytes()).keys() {
                        t.serials.remove(s?)?;
                    }
                    for s in t.revoked.scan_prefix(cert.id.to_be_bytes()).keys() {
                        t.revoked.remove(s?)?;
                    }
                    t.crls.remove(cert.id.to_be_bytes())?;
                    issuers.push(cert);
                }
            }
            t.store_certs.remove(k)?;
        }
        for kv in t.store_templates.scan_prefix(rec.id.to_be_bytes()) {
            let (k, _) = kv?;
            t.templates.remove(&k[8..16])?;
            t.store_templates.remove(k)?;
        }
        for k in t.template_names.scan_prefix(rec.id.to_be_bytes()).keys() {
            t.template_names.remove(k?)?;
        }
        for k in t
            .blobs
            .scan_prefix(blob_store_prefix("crl/", rec.id))
            .keys()
        {
            t.blobs.remove(k?)?;
        }
        // clear_ocsp takes the gate itself (it is not re-entrant).
        drop(writing);
        self.clear_ocsp(rec.id)?;
        Ok(issuers)
    }

    // ---- certificates ----

    /// Removes one certificate record with its index entry, serial and revocation rows; for an
    /// issuer also every serial, revocation row and CRL it signed (the NCP edition's Delete CA
    /// and Trim CA). The caller deletes children before their issuer.
    pub(super) fn delete_cert(&self, rec: &CertRecord) -> Result<(), StoreError> {
        let t = &self.trees;
        let issuer_id = rec.parent_cert_id.unwrap_or(rec.id);
        t.certs.remove(rec.id.to_be_bytes())?;
        t.store_certs.remove(two(rec.store_id, rec.id))?;
        let sk = with_prefix(issuer_id, &rec.serial);
        t.serials.remove(&sk)?;
        t.revoked.remove(&sk)?;
        if rec.is_issuer() {
            for s in t.serials.scan_prefix(rec.id.to_be_bytes()).keys() {
                t.serials.remove(s?)?;
            }
            for s in t.revoked.scan_prefix(rec.id.to_be_bytes()).keys() {
                t.revoked.remove(s?)?;
            }
            t.crls.remove(rec.id.to_be_bytes())?;
            t.blobs.remove(blob_key("crl/", rec.store_id, rec.id))?;
        }
        Ok(())
    }

    /// Records an issued certificate: its serial (unique per issuer) and, unless the template
    /// keeps nothing, its record. Self-signed roots are their own issuer (`serial.issuer_id`).
    /// A serial the issuer already used is a conflict, and then nothing is written.
    ///
    /// Three single-key writes in this order rather than a transaction over three trees (which
    /// cost as much as the rest of the storage work of an issuance):
    ///
    /// 1. the serial record, by compare-and-swap from absent: the commit point of uniqueness
    ///    (two issuances racing for one serial: exactly one wins);
    /// 2. the store's index entry;
    /// 3. the certificate record, which makes the certificate visible.
    ///
    /// The caller makes the whole call durable before it answers, so a crash or an error in the
    /// middle leaves an unanswered prefix of these writes (they are made one after the other on
    /// one thread, and sled recovers its log, shared by all trees, in order):
    /// - a serial without index or record: that serial stays used, so it is never issued again,
    ///   and is what an issuance with `storeInServer` false leaves anyway (OCSP answers for a
    ///   certificate nobody received);
    /// - an index entry without its record: every reader of the index (lists, issuers of a
    ///   store) skips entries whose record is missing, and deleting the store removes it;
    /// - never a record without its serial or index, so a visible certificate is always listed,
    ///   revocable (revoke updates the serial record) and removed with its store.
    ///
    /// A concurrent reader may likewise see the serial or index entry before the record, and
    /// treats it the same way.
    pub fn insert_cert(
        &self,
        rec: Option<&CertRecord>,
        serial: &SerialRecord,
    ) -> Result<(), StoreError> {
        let _writing = self.writing();
        let t = &self.trees;
        let sk = with_prefix(serial.issuer_id, &serial.serial);
        if t.serials
            .compare_and_swap(sk, None as Option<&[u8]>, Some(serial.to_row()))?
            .is_err()
        {
            return Err(StoreError::Conflict("serial already used".into()));
        }
        if let Some(rec) = rec {
            let kind: &[u8] = match rec.cert_type {
                CertType::Leaf => b"L",
                _ => b"I",
            };
            t.store_certs.insert(two(rec.store_id, rec.id), kind)?;
            t.certs.insert(rec.id.to_be_bytes(), encode(rec))?;
        }
        Ok(())
    }

    /// Whether `serial` was already used by `issuer_id`.
    pub fn serial_used(&self, issuer_id: u64, serial: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .trees
            .serials
            .contains_key(with_prefix(issuer_id, serial))?)
    }

    /// The certificate `id` in store `store_id` of `appkey`.
    pub fn cert(
        &self,
        appkey: &str,
        store_id: u64,
        id: u64,
    ) -> Result<Option<CertRecord>, StoreError> {
        match self.trees.certs.get(id.to_be_bytes())? {
            None => Ok(None),
            Some(v) => {
                let rec: CertRecord = decode("cert", &v)?;
                Ok((rec.appkey == appkey && rec.store_id == store_id).then_some(rec))
            }
        }
    }

    /// The certificates of a store, filtered and searched by common name.
    pub fn list_certs(
        &self,
        store_id: u64,
        filter: CertFilter,
        search: Option<&str>,
        page: u64,
        size: u64,
    ) -> Result<Page<CertRecord>, StoreError> {
        let mut items = Vec::new();
        for kv in self.trees.store_certs.scan_prefix(store_id.to_be_bytes()) {
            let (k, kind) = kv?;
            let wanted = match filter {
                CertFilter::All => true,
                CertFilter::Issuer => kind.as_ref() == b"I",
                CertFilter::Leaf => kind.as_ref() == b"L",
            };
            if !wanted {
                continue;
            }
            let Some(v) = self.trees.certs.get(&k[8..16])? else {
                continue;
            };
            let rec: CertRecord = decode("cert", &v)?;
            if let Some(s) = search {
                if !contains_ci(rec.common_name.as_deref().unwrap_or(""), s) {
                    continue;
                }
            }
            items.push(rec);
        }
        Ok(paginate(items, page, size))
    }

    /// Stored certificates by (valid, revoked, expired) at time `now`.
    pub fn cert_status_counts(&self, now: i64) -> Result<(u64, u64, u64), StoreError> {
        let mut c = (0, 0, 0);
        for v in self.trees.certs.iter().values() {
            let rec: CertRecord = decode("cert", &v?)?;
            if rec.revocation.is_some() {
                c.1 += 1;
            } else if rec.not_after <= now {
                c.2 += 1;
            } else {
                c.0 += 1;
            }
        }
        Ok(c)
    }

    /// Every issuer's current CRL record.
    pub fn all_crls(&self) -> Result<Vec<CrlRecord>, StoreError> {
        self.trees
            .crls
            .iter()
            .values()
            .map(|v| decode("crl", &v?))
            .collect()
    }

    /// Every issuer certificate of a store.
    pub fn issuers_of_store(&self, store_id: u64) -> Result<Vec<CertRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.trees.store_certs.scan_prefix(store_id.to_be_bytes()) {
            let (k, kind) = kv?;
            if kind.as_ref() != b"I" {
                continue;
            }
            if let Some(v) = self.trees.certs.get(&k[8..16])? {
                out.push(decode("cert", &v)?);
            }
        }
        Ok(out)
    }

    /// Records a revocation on the certificate and its serial record, atomically; a second
    /// revocation is a conflict.
    pub fn revoke(
        &self,
        cert: &CertRecord,
        revocation: Revocation,
    ) -> Result<CertRecord, StoreError> {
        self.revoke_with_tombstone(cert, revocation, None)
    }

    /// `revoke`, writing in the same transaction the OCSP tombstone (store id, row) that keeps
    /// a restarted daemon from serving a persisted `good` for the certificate: the revocation
    /// and the tombstone reach the disk together, or neither does.
    pub fn revoke_with_tombstone(
        &self,
        cert: &CertRecord,
        revocation: Revocation,
        tombstone: Option<(u64, &super::OcspRow)>,
    ) -> Result<CertRecord, StoreError> {
        let _writing = self.writing();
        let issuer_id = cert.parent_cert_id.unwrap_or(cert.id);
        let t = &self.trees;
        let tombstone = tombstone.map(|(store_id, r)| super::ocsp::row_entry(store_id, r));
        (&t.certs, &t.serials, &t.revoked, &t.ocsp)
            .transaction(|(certs, serials, revoked, ocsp)| {
                let Some(v) = certs.get(cert.id.to_be_bytes())? else {
                    return abort(StoreError::NotFound);
                };
                let mut rec: CertRecord =
                    decode("cert", &v).map_err(ConflictableTransactionError::Abort)?;
                if rec.revocation.is_some() {
                    return abort(StoreError::Conflict(
                        "certificate is already revoked".into(),
                    ));
                }
                rec.revocation = Some(revocation);
                certs.insert(&rec.id.to_be_bytes(), encode(&rec))?;
                let sk = with_prefix(issuer_id, &rec.serial);
                if let Some(v) = serials.get(&sk)? {
                    let mut s =
                        SerialRecord::from_row(&v).map_err(ConflictableTransactionError::Abort)?;
                    s.revocation = Some(revocation);
                    serials.insert(sk.clone(), s.to_row())?;
                }
                revoked.insert(sk, RevokedRow::encode(rec.not_after, &revocation))?;
                if let Some((k, v)) = &tombstone {
                    ocsp.insert(k.as_slice(), v.as_slice())?;
                }
                Ok(rec)
            })
            .map_err(tx_err)
    }

    /// Every serial an issuer signed, in serial order.
    pub fn serials_of_issuer(
        &self,
        issuer_id: u64,
    ) -> impl Iterator<Item = Result<SerialRecord, StoreError>> {
        self.trees
            .serials
            .scan_prefix(issuer_id.to_be_bytes())
            .values()
            .map(|v| SerialRecord::from_row(&v?))
    }

    /// The serial record of one certificate of an issuer.
    pub fn serial(
        &self,
        issuer_id: u64,
        serial: &[u8],
    ) -> Result<Option<SerialRecord>, StoreError> {
        self.trees
            .serials
            .get(with_prefix(issuer_id, serial))?
            .map(|v| SerialRecord::from_row(&v))
            .transpose()
    }

    // ---- templates ----

    /// Inserts a template; its name must be unique within the store.
    pub fn insert_template(&self, rec: &TemplateRecord) -> Result<(), StoreError> {
        self.put_template(None, rec)
    }

    /// Replaces a template (PUT), keeping the name index right.
    pub fn update_template(
        &self,
        old: &TemplateRecord,
        new: &TemplateRecord,
    ) -> Result<(), StoreError> {
        self.put_template(Some(old), new)
    }

    fn put_template(
        &self,
        old: Option<&TemplateRecord>,
        rec: &TemplateRecord,
    ) -> Result<(), StoreError> {
        let _writing = self.writing();
        let t = &self.trees;
        (&t.templates, &t.store_templates, &t.template_names)
            .transaction(|(templates, store_templates, names)| {
                if old.map(|o| o.spec.name != rec.spec.name).unwrap_or(true) {
                    let nk = with_prefix(rec.store_id, rec.spec.name.as_bytes());
                    if names.get(&nk)?.is_some() {
                        return abort(StoreError::Conflict(format!(
                            "name: a template named {:?} already exists in this store",
                            rec.spec.name
                        )));
                    }
                    if let Some(o) = old {
                        names.remove(with_prefix(o.store_id, o.spec.name.as_bytes()))?;
                    }
                    names.insert(nk, &rec.id.to_be_bytes())?;
                }
                templates.insert(&rec.id.to_be_bytes(), encode(rec))?;
                store_templates.insert(&two(rec.store_id, rec.id), &[])?;
                Ok(())
            })
            .map_err(tx_err)
    }

    pub fn template(
        &self,
        appkey: &str,
        store_id: u64,
        id: u64,
    ) -> Result<Option<TemplateRecord>, StoreError> {
        match self.trees.templates.get(id.to_be_bytes())? {
            None => Ok(None),
            Some(v) => {
                let rec: TemplateRecord = decode("template", &v)?;
                Ok((rec.appkey == appkey && rec.store_id == store_id).then_some(rec))
            }
        }
    }

    pub fn list_templates(
        &self,
        store_id: u64,
        search: Option<&str>,
        page: u64,
        size: u64,
    ) -> Result<Page<TemplateRecord>, StoreError> {
        let mut items = Vec::new();
        for k in self
            .trees
            .store_templates
            .scan_prefix(store_id.to_be_bytes())
            .keys()
        {
            let k = k?;
            let Some(v) = self.trees.templates.get(&k[8..16])? else {
                continue;
            };
            let rec: TemplateRecord = decode("template", &v)?;
            if search.is_some_and(|s| !contains_ci(&rec.spec.name, s)) {
                continue;
            }
            items.push(rec);
        }
        Ok(paginate(items, page, size))
    }

    pub fn delete_template(&self, rec: &TemplateRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        let t = &self.trees;
        (&t.templates, &t.store_templates, &t.template_names)
            .transaction(|(templates, store_templates, names)| {
                templates.remove(&rec.id.to_be_bytes())?;
                store_templates.remove(&two(rec.store_id, rec.id))?;
                names.remove(with_prefix(rec.store_id, rec.spec.name.as_bytes()))?;
                Ok(())
            })
            .map_err(tx_err)
    }

    // ---- CRLs and signed blobs ----

    /// The current CRL record of an issuer.
    pub fn crl(&self, issuer_id: u64) -> Result<Option<CrlRecord>, StoreError> {
        self.trees
            .crls
            .get(issuer_id.to_be_bytes())?
            .map(|v| decode("crl", &v))
            .transpose()
    }

    /// Reserves the next CRL number of an issuer (persisted before the CRL is signed, so a
    /// number is never reused even if signing or the process fails).
    pub fn next_crl_number(&self, issuer_id: u64) -> Result<u64, StoreError> {
        let _writing = self.writing();
        let key = [b"crlnum/".as_slice(), &issuer_id.to_be_bytes()].concat();
        let v = self.trees.meta.update_and_fetch(key, |old| {
            let n = old
                .and_then(|o| o.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        let n = v
            .and_then(|v| v.as_ref().try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(1);
        self.durable()?;
        Ok(n)
    }

    /// Stores the current CRL of an issuer with its DER.
    pub fn put_crl(&self, store_id: u64, rec: &CrlRecord, der: &[u8]) -> Result<(), StoreError> {
        let _writing = self.writing();
        let t = &self.trees;
        (&t.crls, &t.blobs)
            .transaction(|(crls, blobs)| {
                crls.insert(&rec.issuer_id.to_be_bytes(), encode(rec))?;
                blobs.insert(blob_key("crl/", store_id, rec.issuer_id), der)?;
                Ok(())
            })
            .map_err(tx_err)
    }

    /// The DER of an issuer's current CRL.
    pub fn crl_der(&self, store_id: u64, issuer_id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .trees
            .blobs
            .get(blob_key("crl/", store_id, issuer_id))?
            .map(|v| v.to_vec()))
    }
}

fn blob_store_prefix(kind: &str, store_id: u64) -> Vec<u8> {
    let mut k = kind.as_bytes().to_vec();
    k.extend_from_slice(&store_id.to_be_bytes());
    k
}

fn blob_key(kind: &str, store_id: u64, issuer_id: u64) -> Vec<u8> {
    let mut k = blob_store_prefix(kind, store_id);
    k.extend_from_slice(&issuer_id.to_be_bytes());
    k
}

/// A revoked serial of an issuer, as the CRL needs it: fixed-width binary, so that building a
/// CRL of a million entries reads the index quickly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedRow {
    pub serial: Vec<u8>,
    pub not_after: i64,
    pub revocation: Revocation,
}

impl RevokedRow {
    fn encode(not_after: i64, r: &Revocation) -> Vec<u8> {
        let mut v = Vec::with_capacity(17);
        v.extend_from_slice(&not_after.to_be_bytes());
        v.extend_from_slice(&r.at.to_be_bytes());
        v.push(r.reason.code());
        v
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<RevokedRow, StoreError> {
        let bad = || StoreError::Corrupt("revoked".into(), "bad row".into());
        if value.len() != 17 || key.len() < 9 {
            return Err(bad());
        }
        let num = |b: &[u8]| i64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
        let reason = crate::pki::crl::RevocationReason::from_code(value[16]).ok_or_else(bad)?;
        Ok(RevokedRow {
            serial: key[8..].to_vec(),
            not_after: num(&value[..8]),
            revocation: Revocation {
                at: num(&value[8..16]),
                reason,
            },
        })
    }
}

impl Db {
    /// Every revoked serial of an issuer.
    pub fn revoked_of_issuer(
        &self,
        issuer_id: u64,
    ) -> impl Iterator<Item = Result<RevokedRow, StoreError>> {
        self.trees
            .revoked
            .scan_prefix(issuer_id.to_be_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                RevokedRow::decode(&k, &v)
            })
    }
}
