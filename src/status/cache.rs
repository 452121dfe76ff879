//! The OCSP response cache: per store, keyed by the CertID DER a request carries, so that a
//! lookup is one hash-set read. Entries carry a generation so a refresh that started before a
//! revoke never overwrites the revoke's fresher response.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::response::{CachedResponse, OcspEntry};
use super::sink::Signed;
use crate::pki::ocsp::{self, OcspErrorStatus};

/// What an OCSP query gets.
#[derive(Debug)]
pub enum OcspAnswer {
    Signed(Arc<CachedResponse>),
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
    /// Where accepted responses are announced (the Redis publisher), when attached.
    pub(super) sink: super::sink::SinkSlot,
}

#[derive(Default)]
pub(super) struct StoreCache {
    /// The store's tenant: a request under another appkey finds nothing.
    appkey: Arc<str>,
    maps: RwLock<Maps>,
}

#[derive(Default)]
struct Maps {
    by_key: HashSet<Keyed>,
    /// (issuer, serial) → the cached CertID forms of that certificate other than the
    /// pre-signed one (which `Cache::forget` is given): SHA-2 CertIDs, absent NULL parameters,
    /// multi-CertID requests.
    variants: HashMap<IssuerSerial, Vec<Box<[u8]>>>,
}

/// A certificate: its issuer's id and its serial digits.
type IssuerSerial = (u64, Box<[u8]>);

/// A cached response in the set, hashed and compared by its key.
struct Keyed(Arc<CachedResponse>);

impl Borrow<[u8]> for Keyed {
    fn borrow(&self) -> &[u8] {
        self.0.key()
    }
}

impl Hash for Keyed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The same as `[u8]`'s, as `Borrow` requires.
        self.0.key().hash(state)
    }
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Keyed) -> bool {
        self.0.key() == other.0.key()
    }
}

impl Eq for Keyed {}

impl Maps {
    fn insert(&mut self, e: Arc<CachedResponse>) {
        let key = e.key();
        if !ocsp::is_presigned_form(key) {
            for serial in ocsp::cert_id_serials(key) {
                let forms = self
                    .variants
                    .entry((e.issuer_id, serial.into()))
                    .or_default();
                if !forms.iter().any(|f| **f == *key) {
                    forms.push(key.into());
                }
            }
        }
        self.by_key.replace(Keyed(e));
    }

    fn get(&self, key: &[u8]) -> Option<&Arc<CachedResponse>> {
        self.by_key.get(key).map(|k| &k.0)
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
    ) -> Option<Arc<CachedResponse>> {
        let stores = self.stores.read().ok()?;
        let store = stores.get(&store_id).filter(|s| &*s.appkey == appkey)?;
        let maps = store.maps.read().ok()?;
        maps.get(cert_id_der).cloned()
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
                appkey: appkey.into(),
                maps: RwLock::default(),
            })
        })))
    }

    /// Inserts one response unless a fresher one (later generation) is already there.
    pub(super) fn put(&self, appkey: &str, store_id: u64, cert_id_der: Vec<u8>, e: OcspEntry) {
        let Some(store) = self.store(appkey, store_id, e.generation) else {
            return;
        };
        let e = Arc::new(CachedResponse::new(&cert_id_der, &e));
        let mut maps = store.maps.write().unwrap_or_else(|p| p.into_inner());
        if maps
            .get(&cert_id_der)
            .is_some_and(|old| old.generation > e.generation)
        {
            return;
        }
        maps.insert(Arc::clone(&e));
        drop(maps);
        self.sink.send(|| Signed::Ocsp {
            store_id,
            appkey: Arc::clone(&store.appkey),
            response: e,
        });
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
        next.by_key.reserve(fresh.len());
        for (k, e) in fresh {
            next.insert(Arc::new(CachedResponse::new(&k, &e)));
        }
        let mut maps = store.maps.write().unwrap_or_else(|p| p.into_inner());
        // Forms the refresh does not re-sign (SHA-2 CertIDs, multi-CertID requests) leave the
        // cache here; the sink is told, so that they stop being served elsewhere too.
        let mut dropped = Vec::new();
        for Keyed(e) in maps.by_key.iter() {
            let keep = !issuers.contains(&e.issuer_id)
                || e.generation > generation
                || (!complete && next.get(e.key()).is_none());
            if keep {
                next.insert(Arc::clone(e));
            } else if next.get(e.key()).is_none() {
                dropped.push(e.key().to_vec());
            }
        }
        let published: Vec<Arc<CachedResponse>> = match self.sink.get() {
            Some(_) => next
                .by_key
                .iter()
                .filter(|k| k.0.generation == generation)
                .map(|k| Arc::clone(&k.0))
                .collect(),
            None => Vec::new(),
        };
        *maps = next;
        drop(maps);
        if !dropped.is_empty() {
            self.sink.send(|| Signed::Forget {
                store_id,
                keys: dropped,
            });
        }
        for response in published {
            self.sink.send(|| Signed::Ocsp {
                store_id,
                appkey: Arc::clone(&store.appkey),
                response,
            });
        }
        true
    }

    /// Removes every cached form of one certificate's response (before re-signing on revoke):
    /// `presigned`, its pre-signed CertID, and the other forms recorded for it.
    pub(super) fn forget(&self, store_id: u64, issuer_id: u64, serial: &[u8], presigned: &[u8]) {
        let Some(store) = self
            .stores
            .read()
            .ok()
            .and_then(|m| m.get(&store_id).cloned())
        else {
            return;
        };
        let digits = &serial[serial.iter().position(|b| *b != 0).unwrap_or(serial.len())..];
        let mut maps = store.maps.write().unwrap_or_else(|p| p.into_inner());
        let mut keys = Vec::new();
        if maps.by_key.remove(presigned) {
            keys.push(presigned.to_vec());
        }
        if let Some(forms) = maps.variants.remove(&(issuer_id, digits.into())) {
            for f in forms {
                if maps.by_key.remove(&f[..]) {
                    keys.push(f.into_vec());
                }
            }
        }
        drop(maps);
        if !keys.is_empty() {
            self.sink.send(|| Signed::Forget { store_id, keys });
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
        drop(stores);
        self.sink.send(|| Signed::OcspOff { store_id });
    }

    /// Every cached response, with its store and tenant (a full republish).
    pub(super) fn all(&self) -> Vec<(u64, Arc<str>, Arc<CachedResponse>)> {
        let stores: Vec<(u64, Arc<StoreCache>)> = self
            .stores
            .read()
            .map(|s| s.iter().map(|(k, v)| (*k, Arc::clone(v))).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for (id, st) in stores {
            if let Ok(m) = st.maps.read() {
                out.extend(
                    m.by_key
                        .iter()
                        .map(|k| (id, Arc::clone(&st.appkey), Arc::clone(&k.0))),
                );
            }
        }
        out
    }

    /// How many responses are cached in all (for metrics).
    pub(super) fn len(&self) -> usize {
        self.stores
            .read()
            .map(|s| {
                s.values()
                    .map(|st| st.maps.read().map(|m| m.by_key.len()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }
}
