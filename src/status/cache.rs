//! The OCSP response cache: per store, keyed by the CertID DER a request carries, so that a
//! lookup is one hash-map read. Entries carry a generation so a refresh that started before a
//! revoke never overwrites the revoke's fresher response.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::pki::ocsp::OcspErrorStatus;

/// One signed response, ready to serve.
#[derive(Debug)]
pub struct OcspEntry {
    pub der: Bytes,
    /// Unix seconds; also producedAt.
    pub this_update: i64,
    pub next_update: i64,
    /// When the scheduler will replace it (for `Cache-Control: max-age`).
    pub refresh_at: i64,
    /// Quoted strong validator.
    pub etag: String,
    pub(super) issuer_id: u64,
    /// The serials it speaks of (several for a multi-CertID response).
    pub(super) serials: Vec<Vec<u8>>,
    pub(super) generation: u64,
}

/// What an OCSP query gets.
#[derive(Debug)]
pub enum OcspAnswer {
    Signed(Arc<OcspEntry>),
    /// An unsigned error status (RFC 6960 §2.3).
    Error(OcspErrorStatus),
}

#[derive(Default)]
pub(super) struct Cache {
    stores: RwLock<HashMap<u64, Arc<StoreCache>>>,
    generation: AtomicU64,
    /// Stores whose OCSP was turned off or that were deleted, with the generation of that
    /// moment: work that began before it (a refresh, an on-demand signature) must not bring
    /// their responses back.
    dropped: std::sync::Mutex<HashMap<u64, u64>>,
}

#[derive(Default)]
pub(super) struct StoreCache {
    /// The store's tenant: a request under another appkey finds nothing.
    appkey: String,
    maps: RwLock<Maps>,
}

#[derive(Default)]
struct Maps {
    by_cert_id: HashMap<Vec<u8>, Arc<OcspEntry>>,
    /// (issuer, serial) → every CertID form cached for it.
    variants: HashMap<(u64, Vec<u8>), Vec<Vec<u8>>>,
}

impl Maps {
    fn insert(&mut self, cert_id: Vec<u8>, e: Arc<OcspEntry>) {
        for serial in &e.serials {
            let forms = self
                .variants
                .entry((e.issuer_id, serial.clone()))
                .or_default();
            if !forms.contains(&cert_id) {
                forms.push(cert_id.clone());
            }
        }
        self.by_cert_id.insert(cert_id, e);
    }
}

impl Cache {
    /// A new generation number: taken before reading the statuses an entry will carry.
    pub(super) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The cached response for a CertID of a store: the hot path.
    pub(super) fn get(
        &self,
        appkey: &str,
        store_id: u64,
        cert_id_der: &[u8],
    ) -> Option<Arc<OcspEntry>> {
        let stores = self.stores.read().ok()?;
        let store = stores.get(&store_id).filter(|s| s.appkey == appkey)?;
        let maps = store.maps.read().ok()?;
        maps.by_cert_id.get(cert_id_der).cloned()
    }

    /// The store's cache, created if needed, unless the store was dropped after `generation`
    /// began.
    fn store(&self, appkey: &str, store_id: u64, generation: u64) -> Option<Arc<StoreCache>> {
        let stale = || {
            self.dropped
                .lock()
                .map(|d| d.get(&store_id).is_some_and(|at| *at > generation))
                .unwrap_or(true)
        };
        if let Some(s) = self
            .stores
            .read()
            .ok()
            .and_then(|m| m.get(&store_id).cloned())
        {
            return (!stale()).then_some(s);
        }
        let mut stores = self.stores.write().unwrap_or_else(|p| p.into_inner());
        if stale() {
            return None;
        }
        Some(Arc::clone(stores.entry(store_id).or_insert_with(|| {
            Arc::new(StoreCache {
                appkey: appkey.to_owned(),
                maps: RwLock::default(),
            })
        })))
    }

    /// Inserts one response unless a fresher one (later generation) is already there.
    pub(super) fn put(&self, appkey: &str, store_id: u64, cert_id_der: Vec<u8>, e: OcspEntry) {
        let Some(store) = self.store(appkey, store_id, e.generation) else {
            return;
        };
        let mut maps = store.maps.write().unwrap_or_else(|p| p.into_inner());
        if maps
            .by_cert_id
            .get(&cert_id_der)
            .is_some_and(|old| old.generation > e.generation)
        {
            return;
        }
        maps.insert(cert_id_der, Arc::new(e));
    }

    /// Swaps in a refresh of `issuers` signed at generation `generation`: their old entries go,
    /// except those re-signed after the refresh began (a revoke, an issuance) and, when the
    /// refresh is not `complete` (some signatures failed), those it has no replacement for.
    /// Returns false, changing nothing, when the store was dropped after the refresh began.
    pub(super) fn swap_in(
        &self,
        appkey: &str,
        store_id: u64,
        issuers: &[u64],
        generation: u64,
        fresh: Vec<(Vec<u8>, OcspEntry)>,
        complete: bool,
    ) -> bool {
        let Some(store) = self.store(appkey, store_id, generation) else {
            return false;
        };
        let mut next = Maps::default();
        for (k, e) in fresh {
            next.insert(k, Arc::new(e));
        }
        let mut maps = store.maps.write().unwrap_or_else(|p| p.into_inner());
        for (k, e) in maps.by_cert_id.iter() {
            let keep = !issuers.contains(&e.issuer_id)
                || e.generation > generation
                || (!complete && !next.by_cert_id.contains_key(k));
            if keep {
                next.insert(k.clone(), Arc::clone(e));
            }
        }
        *maps = next;
        true
    }

    /// Removes every cached form of one certificate's response (before re-signing on revoke).
    pub(super) fn forget_variants(&self, store_id: u64, issuer_id: u64, serial: &[u8]) {
        let Some(store) = self
            .stores
            .read()
            .ok()
            .and_then(|m| m.get(&store_id).cloned())
        else {
            return;
        };
        let mut maps = store.maps.write().unwrap_or_else(|p| p.into_inner());
        if let Some(forms) = maps.variants.remove(&(issuer_id, serial.to_vec())) {
            for f in forms {
                maps.by_cert_id.remove(&f);
            }
        }
    }

    /// Forgets a store's responses; nothing begun before this call can bring them back.
    pub(super) fn drop_store(&self, store_id: u64) {
        let mut stores = self.stores.write().unwrap_or_else(|p| p.into_inner());
        let at = self.next_generation();
        if let Ok(mut d) = self.dropped.lock() {
            d.insert(store_id, at);
        }
        stores.remove(&store_id);
    }

    /// How many responses are cached in all (for metrics).
    pub(super) fn len(&self) -> usize {
        self.stores
            .read()
            .map(|s| {
                s.values()
                    .map(|st| st.maps.read().map(|m| m.by_cert_id.len()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// A strong ETag of a response.
pub(super) fn etag(der: &[u8]) -> String {
    let h = crate::pki::HashAlg::Sha256.digest(der);
    format!("\"{}\"", crate::ca::hex(&h[..16]))
}
