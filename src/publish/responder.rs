//! `pcad responder`: serves the public routes from Redis, through an in-memory cache that
//! learns of changes on `pcad:changes` and is revalidated whenever the subscription is
//! re-established (announcements made meanwhile were missed). No HSM, no database.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt;

use serde_json::json;

use super::{crl_key, ocsp_key, parse_key, store_key, tag_key, Conn, Key, Target, CHANNEL, MARKER};
use crate::api::source::{health_reply, BoxFuture, StatusSource};
use crate::api::{ApiError, Reply};
use crate::clock::now;
use crate::pki::ocsp::{OcspErrorStatus, RequestedCertId};
use crate::status::{CaTagTarget, CachedResponse, Crl, OcspAnswer};

/// What `pcad responder` is given (flags, or `[responder]` of a config file).
#[derive(Clone, Debug)]
pub struct ResponderOptions {
    pub target: Target,
    pub listen: SocketAddr,
}

/// A responder's config file: `[responder]` with `redis`, `listen`, `password_file`, and an
/// optional `[log] level`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponderFile {
    responder: ResponderSection,
    #[serde(default)]
    log: crate::config::LogConfig,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponderSection {
    redis: Option<super::RedisUrls>,
    listen: Option<SocketAddr>,
    password_file: Option<std::path::PathBuf>,
}

impl ResponderOptions {
    /// From the flags, over the config file's keys when one is given. Returns the log level.
    pub fn load(
        config: Option<&std::path::Path>,
        redis: Vec<String>,
        listen: Option<SocketAddr>,
        password_file: Option<std::path::PathBuf>,
    ) -> Result<(ResponderOptions, Option<String>), String> {
        let (mut urls, mut addr, mut pw, mut level) = (None, None, None, None);
        if let Some(path) = config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
            let f: ResponderFile =
                toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
            let base = path.parent().unwrap_or(std::path::Path::new("."));
            urls = f.responder.redis;
            addr = f.responder.listen;
            pw = f.responder.password_file.map(|p| base.join(p));
            level = f.log.level;
        }
        let urls = super::RedisUrls::from_args(redis)
            .or(urls)
            .ok_or("responder: --redis URL (or redis in [responder]) is required")?;
        let listen = listen
            .or(addr)
            .ok_or("responder: --listen ADDR (or listen in [responder]) is required")?;
        let target = Target::new(urls, password_file.or(pw).as_deref())?;
        Ok((ResponderOptions { target, listen }, level))
    }
}

/// A store's published settings.
#[derive(Clone, Debug)]
struct StoreMeta {
    appkey: Arc<str>,
    ocsp: bool,
}

/// Per store, CertID key → response.
type OcspCache = HashMap<u64, HashMap<Box<[u8]>, Arc<CachedResponse>>>;

/// The responders' `StatusSource`: Redis behind a cache.
pub struct RedisSource {
    pub(crate) target: Target,
    conn: Mutex<Option<Conn>>,
    ocsp: RwLock<OcspCache>,
    crls: RwLock<HashMap<(u64, u64), Arc<Crl>>>,
    stores: RwLock<HashMap<u64, StoreMeta>>,
    /// NAVER Cloud `caTag` → where its answers are (known tags only).
    tags: RwLock<HashMap<String, CaTagTarget>>,
    /// Bumped by every announcement and revalidation: a read begun before must not cache.
    epoch: AtomicU64,
    /// Subscribed and answering.
    up: AtomicBool,
    /// Redis holds the marker (it was not emptied since the appliance last published all).
    ready: AtomicBool,
    reason: Mutex<String>,
    marker: Mutex<Option<String>>,
    corrupt: AtomicU64,
    redis_reads: AtomicU64,
}

impl RedisSource {
    pub fn new(target: Target) -> RedisSource {
        RedisSource {
            target,
            conn: Mutex::new(None),
            ocsp: RwLock::default(),
            crls: RwLock::default(),
            stores: RwLock::default(),
            tags: RwLock::default(),
            epoch: AtomicU64::new(0),
            up: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            reason: Mutex::new("not connected to Redis yet".into()),
            marker: Mutex::new(None),
            corrupt: AtomicU64::new(0),
            redis_reads: AtomicU64::new(0),
        }
    }

    fn conn(&self) -> Option<Conn> {
        self.conn.lock().ok().and_then(|c| c.clone())
    }

    /// Serving from Redis is possible: subscribed, and Redis holds the published data.
    fn confirmed(&self) -> bool {
        self.up.load(Ordering::SeqCst) && self.ready.load(Ordering::SeqCst)
    }

    fn set_down(&self, reason: String) {
        if self.up.swap(false, Ordering::SeqCst) {
            log::warn!("Redis unreachable, answering from the cache: {reason}");
        }
        if let Ok(mut r) = self.reason.lock() {
            *r = reason;
        }
    }

    fn cached_meta(&self, store_id: u64) -> Option<StoreMeta> {
        self.stores.read().ok()?.get(&store_id).cloned()
    }

    /// The store's settings: from the cache, else Redis (`Err` when Redis cannot be asked).
    async fn meta(&self, store_id: u64) -> Result<Option<StoreMeta>, String> {
        if let Some(m) = self.cached_meta(store_id) {
            return Ok(Some(m));
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let fields = self.hgetall(&store_key(store_id)).await?;
        let meta = parse_meta(&fields);
        if fields.is_some() && meta.is_none() {
            self.corrupt(&store_key(store_id), "no appkey");
        }
        if let Some(m) = &meta {
            if self.epoch.load(Ordering::SeqCst) == epoch {
                if let Ok(mut s) = self.stores.write() {
                    s.insert(store_id, m.clone());
                }
            }
        }
        Ok(meta)
    }

    async fn hgetall(&self, key: &str) -> Result<Option<HashMap<String, Vec<u8>>>, String> {
        let mut conn = self.conn().ok_or("not connected to Redis")?;
        self.redis_reads.fetch_add(1, Ordering::Relaxed);
        let r: redis::RedisResult<HashMap<String, Vec<u8>>> =
            redis::cmd("HGETALL").arg(key).query_async(&mut conn).await;
        match r {
            Ok(m) if m.is_empty() => Ok(None),
            Ok(m) => Ok(Some(m)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn corrupt(&self, key: &str, why: &str) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        log::error!("ignoring corrupt Redis value {key}: {why}");
    }

    fn put_ocsp(&self, store_id: u64, e: Arc<CachedResponse>) {
        if let Ok(mut m) = self.ocsp.write() {
            let store = m.entry(store_id).or_default();
            let newer = store
                .get(e.cert_id_key())
                .is_some_and(|old| old.this_update > e.this_update);
            if !newer {
                store.insert(e.cert_id_key().into(), e);
            }
        }
    }

    /// An announcement: forget what the key names (the next request reads it again).
    fn invalidate(&self, key: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        match parse_key(key) {
            Some(Key::Ocsp(store, id)) => {
                if let Ok(mut m) = self.ocsp.write() {
                    if let Some(s) = m.get_mut(&store) {
                        s.remove(&id[..]);
                    }
                }
            }
            Some(Key::Crl(store, issuer)) => {
                if let Ok(mut m) = self.crls.write() {
                    m.remove(&(store, issuer));
                }
            }
            Some(Key::Store(store)) => {
                if let Ok(mut m) = self.stores.write() {
                    m.remove(&store);
                }
            }
            Some(Key::Tag(tag)) => {
                if let Ok(mut m) = self.tags.write() {
                    m.remove(&tag);
                }
            }
            Some(Key::Marker) | None => {}
        }
    }

    /// Re-reads every cached entry (after a reconnection, or a republish): replaced when Redis
    /// has another, dropped when Redis has none. Entries stay served meanwhile.
    async fn revalidate(&self) -> Result<(), String> {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let stores: Vec<u64> = self
            .stores
            .read()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        for id in stores {
            match self.hgetall(&store_key(id)).await? {
                Some(f) => match parse_meta(&Some(f)) {
                    Some(m) => {
                        if let Ok(mut s) = self.stores.write() {
                            s.insert(id, m);
                        }
                    }
                    None => self.corrupt(&store_key(id), "no appkey"),
                },
                None => {
                    if let Ok(mut s) = self.stores.write() {
                        s.remove(&id);
                    }
                }
            }
        }
        let keys: Vec<(u64, Box<[u8]>)> = self
            .ocsp
            .read()
            .map(|m| {
                m.iter()
                    .flat_map(|(s, e)| e.keys().map(move |k| (*s, k.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let n = keys.len();
        // Several reads in flight: a large cache is re-read in seconds, not minutes.
        let mut reads = futures_util::stream::iter(keys)
            .map(|(store, id)| async move {
                let key = ocsp_key(store, &id);
                let got = self.hgetall(&key).await;
                (store, id, key, got)
            })
            .buffer_unordered(64);
        while let Some((store, id, key, got)) = reads.next().await {
            match got? {
                Some(f) => match parse_ocsp(&id, &f) {
                    Ok(e) => self.put_ocsp(store, Arc::new(e)),
                    Err(why) => self.corrupt(&key, &why),
                },
                None => {
                    if let Ok(mut m) = self.ocsp.write() {
                        if let Some(s) = m.get_mut(&store) {
                            s.remove(&id);
                        }
                    }
                }
            }
        }
        // CRLs and caTags are few: re-read on the next request.
        if let Ok(mut m) = self.crls.write() {
            m.clear();
        }
        if let Ok(mut m) = self.tags.write() {
            m.clear();
        }
        log::info!("revalidated {n} cached OCSP responses against Redis");
        Ok(())
    }

    pub fn gauges(&self) -> String {
        let cached: usize = self
            .ocsp
            .read()
            .map(|m| m.values().map(HashMap::len).sum())
            .unwrap_or(0);
        format!(
            "# HELP pcad_responder_redis_up Whether the responder is subscribed to Redis and Redis holds the published data.\n# TYPE pcad_responder_redis_up gauge\npcad_responder_redis_up {}\n\
             # HELP pcad_responder_cached_responses OCSP responses held in memory.\n# TYPE pcad_responder_cached_responses gauge\npcad_responder_cached_responses {cached}\n\
             # HELP pcad_responder_redis_reads_total Reads from Redis (cache misses and revalidation).\n# TYPE pcad_responder_redis_reads_total counter\npcad_responder_redis_reads_total {}\n\
             # HELP pcad_responder_corrupt_values_total Values in Redis ignored as corrupt.\n# TYPE pcad_responder_corrupt_values_total counter\npcad_responder_corrupt_values_total {}\n",
            u8::from(self.confirmed()),
            self.redis_reads.load(Ordering::Relaxed),
            self.corrupt.load(Ordering::Relaxed),
        )
    }
}

fn parse_meta(fields: &Option<HashMap<String, Vec<u8>>>) -> Option<StoreMeta> {
    let f = fields.as_ref()?;
    let appkey = std::str::from_utf8(f.get("appkey")?).ok()?;
    if appkey.is_empty() {
        return None;
    }
    Some(StoreMeta {
        appkey: appkey.into(),
        ocsp: f.get("ocsp").is_none_or(|v| v.as_slice() != b"0"),
    })
}

fn parse_tag(f: &HashMap<String, Vec<u8>>) -> Result<CaTagTarget, String> {
    let appkey = f
        .get("appkey")
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|a| !a.is_empty())
        .ok_or("no appkey")?;
    let id = |name| u64::try_from(int(f, name)?).map_err(|_| format!("field {name}: negative"));
    Ok(CaTagTarget {
        appkey: appkey.into(),
        store_id: id("store")?,
        issuer_id: id("issuer")?,
    })
}

fn int(f: &HashMap<String, Vec<u8>>, name: &str) -> Result<i64, String> {
    std::str::from_utf8(f.get(name).ok_or(format!("no field {name}"))?)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(format!("field {name}: not an integer"))
}

/// The fields of a published response or CRL, checked: one DER SEQUENCE, sane times.
fn parse_fields(f: &HashMap<String, Vec<u8>>) -> Result<(Vec<u8>, i64, i64, i64), String> {
    let der = f.get("der").ok_or("no field der")?;
    crate::pki::der_util::parse_one(der, 0x30).map_err(|e| format!("field der: {e}"))?;
    let this = int(f, "this")?;
    let next = int(f, "next")?;
    let refresh = f.get("refresh").map_or(Ok(next), |_| int(f, "refresh"))?;
    if next < this {
        return Err("next before this".into());
    }
    Ok((der.clone(), this, next, refresh))
}

fn parse_ocsp(key: &[u8], f: &HashMap<String, Vec<u8>>) -> Result<CachedResponse, String> {
    let (der, this, next, refresh) = parse_fields(f)?;
    Ok(CachedResponse::published(key, der, this, next, refresh))
}

impl StatusSource for RedisSource {
    fn ocsp(
        &self,
        appkey: &str,
        store_id: u64,
        request: &[u8],
    ) -> Result<OcspAnswer, Vec<RequestedCertId>> {
        let t = now();
        let allowed = self
            .stores
            .read()
            .ok()
            .and_then(|s| s.get(&store_id).map(|m| m.ocsp && &*m.appkey == appkey))
            .unwrap_or(false);
        let ocsp = self.ocsp.read().unwrap_or_else(|p| p.into_inner());
        let store = ocsp.get(&store_id).filter(|_| allowed);
        crate::status::answer_from(request, |key| {
            store?.get(key).filter(|e| e.next_update > t).cloned()
        })
    }

    fn ocsp_slow<'a>(
        &'a self,
        appkey: &'a str,
        store_id: u64,
        reqs: Vec<RequestedCertId>,
    ) -> BoxFuture<'a, OcspAnswer> {
        Box::pin(async move {
            // Nothing to confirm with: never `unauthorized` because Redis is away.
            if !self.confirmed() {
                return OcspAnswer::Error(OcspErrorStatus::TryLater);
            }
            let epoch = self.epoch.load(Ordering::SeqCst);
            match self.meta(store_id).await {
                Ok(Some(m)) if m.ocsp && &*m.appkey == appkey => {}
                Ok(_) => return OcspAnswer::Error(OcspErrorStatus::Unauthorized),
                Err(_) => return OcspAnswer::Error(OcspErrorStatus::TryLater),
            }
            let id = crate::status::cache_key(&reqs);
            let key = ocsp_key(store_id, &id);
            let fields = match self.hgetall(&key).await {
                Ok(Some(f)) => f,
                Ok(None) => return OcspAnswer::Error(OcspErrorStatus::Unauthorized),
                Err(_) => return OcspAnswer::Error(OcspErrorStatus::TryLater),
            };
            let e = match parse_ocsp(&id, &fields) {
                Ok(e) if e.next_update > now() => Arc::new(e),
                Ok(_) => return OcspAnswer::Error(OcspErrorStatus::Unauthorized),
                Err(why) => {
                    self.corrupt(&key, &why);
                    return OcspAnswer::Error(OcspErrorStatus::Unauthorized);
                }
            };
            if self.epoch.load(Ordering::SeqCst) == epoch {
                self.put_ocsp(store_id, Arc::clone(&e));
            }
            OcspAnswer::Signed(e)
        })
    }

    fn crl<'a>(
        &'a self,
        appkey: String,
        store_id: u64,
        issuer_id: u64,
    ) -> BoxFuture<'a, Result<Crl, ApiError>> {
        Box::pin(async move {
            let not_found = || {
                ApiError::not_found(format!(
                    "no CRL published for issuerCertId {issuer_id} of store {store_id}"
                ))
            };
            let t = now();
            let mine = |m: &StoreMeta| *m.appkey == *appkey;
            if let Some(m) = self.cached_meta(store_id) {
                let hit = self
                    .crls
                    .read()
                    .ok()
                    .and_then(|c| c.get(&(store_id, issuer_id)).cloned())
                    .filter(|c| c.next_update > t);
                if let Some(c) = hit {
                    return if mine(&m) {
                        Ok(Crl::clone(&c))
                    } else {
                        Err(not_found())
                    };
                }
            }
            if !self.confirmed() {
                return Err(ApiError::unavailable("Redis unreachable and no CRL cached"));
            }
            let epoch = self.epoch.load(Ordering::SeqCst);
            match self.meta(store_id).await {
                Ok(Some(m)) if mine(&m) => {}
                Ok(_) => return Err(not_found()),
                Err(e) => return Err(ApiError::unavailable(format!("Redis: {e}"))),
            }
            let key = crl_key(store_id, issuer_id);
            let fields = match self.hgetall(&key).await {
                Ok(Some(f)) => f,
                Ok(None) => return Err(not_found()),
                Err(e) => return Err(ApiError::unavailable(format!("Redis: {e}"))),
            };
            let (der, this, next, _) = parse_fields(&fields).map_err(|why| {
                self.corrupt(&key, &why);
                not_found()
            })?;
            if next <= t {
                return Err(not_found());
            }
            let crl = Crl {
                der,
                this_update: this,
                next_update: next,
            };
            if self.epoch.load(Ordering::SeqCst) == epoch {
                if let Ok(mut c) = self.crls.write() {
                    c.insert((store_id, issuer_id), Arc::new(crl.clone()));
                }
            }
            Ok(crl)
        })
    }

    fn ca_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<Option<CaTagTarget>, ApiError>> {
        Box::pin(async move {
            let cached = self.tags.read().ok().and_then(|m| m.get(tag).cloned());
            if let Some(t) = cached {
                return Ok(Some(t));
            }
            if !self.confirmed() {
                return Err(ApiError::unavailable(
                    "Redis unreachable and caTag not cached",
                ));
            }
            let epoch = self.epoch.load(Ordering::SeqCst);
            let key = tag_key(tag);
            let fields = match self.hgetall(&key).await {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(None),
                Err(e) => return Err(ApiError::unavailable(format!("Redis: {e}"))),
            };
            let target = match parse_tag(&fields) {
                Ok(t) => t,
                Err(why) => {
                    self.corrupt(&key, &why);
                    return Ok(None);
                }
            };
            if self.epoch.load(Ordering::SeqCst) == epoch {
                if let Ok(mut m) = self.tags.write() {
                    m.insert(tag.to_owned(), target.clone());
                }
            }
            Ok(Some(target))
        })
    }

    fn health(&self) -> Reply {
        let ok = self.confirmed();
        let cached: usize = self
            .ocsp
            .read()
            .map(|m| m.values().map(HashMap::len).sum())
            .unwrap_or(0);
        let reason = if ok {
            None
        } else if !self.up.load(Ordering::SeqCst) {
            self.reason.lock().ok().map(|r| r.clone())
        } else {
            Some("Redis holds no published data (waiting for the appliance to republish)".into())
        };
        let body = json!({
            "status": if ok { "ok" } else { "degraded" },
            "redis": if self.up.load(Ordering::SeqCst) { "up" } else { "down" },
            "reason": reason,
            "ocspCachedResponses": cached,
            "corruptValues": self.corrupt.load(Ordering::Relaxed),
        });
        health_reply(ok, &body)
    }
}

/// Keeps the subscription, the command connection and the marker check going.
/// Keeps the cache in step with Redis: the change channel, reconnects, revalidation.
pub async fn follow(source: Arc<RedisSource>) {
    loop {
        if let Err(e) = follow_once(&source).await {
            source.set_down(e);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn follow_once(source: &Arc<RedisSource>) -> Result<(), String> {
    if source.conn().is_none() {
        let c = source.target.connect().await?;
        if let Ok(mut slot) = source.conn.lock() {
            *slot = Some(c);
        }
    }
    let mut pubsub = source.target.pubsub().await?;
    pubsub
        .subscribe(CHANNEL)
        .await
        .map_err(|e| format!("SUBSCRIBE: {e}"))?;
    let mut messages = pubsub.into_on_message();
    // Announcements made while unsubscribed were missed: check the marker, then revalidate.
    check_marker(source, true).await?;
    source.up.store(true, Ordering::SeqCst);
    log::info!(
        "subscribed to {CHANNEL} at {}",
        source.target.urls.redacted()
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            msg = messages.next() => match msg {
                Some(m) => {
                    if let Ok(key) = m.get_payload::<String>() {
                        source.invalidate(&key);
                    }
                }
                None => return Err("subscription lost".into()),
            },
            _ = tick.tick() => check_marker(source, false).await?,
        }
    }
}

/// Reads the marker; revalidates the cache when it appeared or changed (a republish), or
/// when `reconnected`.
async fn check_marker(source: &RedisSource, reconnected: bool) -> Result<(), String> {
    let mut conn = source.conn().ok_or("not connected")?;
    let marker: Option<String> = tokio::time::timeout(
        super::TIMEOUT,
        redis::cmd("GET").arg(MARKER).query_async(&mut conn),
    )
    .await
    .map_err(|_| "Redis did not answer in time".to_owned())?
    .map_err(|e| format!("GET {MARKER}: {e}"))?;
    let changed = source
        .marker
        .lock()
        .map(|mut m| {
            let changed = *m != marker;
            m.clone_from(&marker);
            changed
        })
        .unwrap_or(true);
    if marker.is_none() {
        if source.ready.swap(false, Ordering::SeqCst) {
            log::warn!("Redis holds no published data: answering from the cache until the appliance republishes");
        }
        return Ok(());
    }
    if changed || reconnected || !source.ready.load(Ordering::SeqCst) {
        source.revalidate().await?;
    }
    source.ready.store(true, Ordering::SeqCst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &[u8])]) -> HashMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect()
    }

    #[test]
    fn tags_parse() {
        let t = parse_tag(&fields(&[
            ("appkey", b"k"),
            ("store", b"3"),
            ("issuer", b"9"),
        ]));
        assert_eq!(
            t,
            Ok(CaTagTarget {
                appkey: "k".into(),
                store_id: 3,
                issuer_id: 9
            })
        );
        for bad in [
            fields(&[("store", b"3"), ("issuer", b"9")]),
            fields(&[("appkey", b"k"), ("store", b"-3"), ("issuer", b"9")]),
            fields(&[("appkey", b"k"), ("store", b"3")]),
        ] {
            assert!(parse_tag(&bad).is_err());
        }
    }

    #[test]
    fn corrupt_values_are_refused() {
        let good: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x00];
        assert!(parse_fields(&fields(&[("der", good), ("this", b"10"), ("next", b"20")])).is_ok());
        for bad in [
            fields(&[("der", b"hello"), ("this", b"10"), ("next", b"20")]),
            fields(&[
                ("der", &[0x30, 0x05, 0x0a]),
                ("this", b"10"),
                ("next", b"20"),
            ]),
            fields(&[("der", good), ("this", b"x"), ("next", b"20")]),
            fields(&[("der", good), ("this", b"30"), ("next", b"20")]),
            fields(&[("this", b"10"), ("next", b"20")]),
        ] {
            assert!(parse_fields(&bad).is_err(), "{bad:?}");
        }
        assert!(parse_meta(&Some(fields(&[("ocsp", b"1")]))).is_none());
        let m = parse_meta(&Some(fields(&[("appkey", b"k"), ("ocsp", b"0")]))).unwrap();
        assert!(!m.ocsp);
    }
}
