//! The appliance's publisher: a task that writes what the status engine signs to Redis, keeps
//! what it could not write (the backlog) and retries it, and republishes everything when Redis
//! comes back empty.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use redis::Script;
use serde_json::json;
use tokio::sync::mpsc;

use super::{crl_key, ocsp_key, store_key, tag_key, Conn, Target, CHANNEL, MARKER};
use crate::status::{Signed, Sink};

/// Starts the publisher task on the current runtime and attaches it to `status`.
pub fn start(target: Target, status: crate::status::Publisher) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        tx: Mutex::new((0, tx)),
        done: Mutex::new(0),
        done_cv: Condvar::new(),
        backlog: AtomicUsize::new(0),
        received: AtomicU64::new(0),
        lag_ms: AtomicU64::new(0),
        redis_up: AtomicBool::new(false),
        published: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        republishes: AtomicU64::new(0),
        last_error: Mutex::new(None),
    });
    status.set_sink(Arc::new(RedisSink(Arc::clone(&shared))));
    log::info!("publishing to Redis at {}", target.urls.redacted());
    tokio::spawn(Worker::new(target, status, shared, rx).run());
}

struct Shared {
    /// The last sequence number handed out, and the channel (sent under the same lock, so
    /// the worker sees them in order).
    tx: Mutex<(u64, mpsc::UnboundedSender<(u64, Signed)>)>,
    /// Every change up to this sequence number is in Redis.
    done: Mutex<u64>,
    done_cv: Condvar,
    /// Writes pending in the worker (not counting what it has not received yet).
    backlog: AtomicUsize,
    /// The highest sequence number the worker received.
    received: AtomicU64,
    lag_ms: AtomicU64,
    redis_up: AtomicBool,
    published: AtomicU64,
    failures: AtomicU64,
    republishes: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct RedisSink(Arc<Shared>);

impl Shared {
    /// Changes not yet in Redis: pending in the worker, and still in the channel.
    fn backlog(&self) -> u64 {
        let sent = self.tx.lock().map(|t| t.0).unwrap_or(0);
        let queued = sent.saturating_sub(self.received.load(Ordering::SeqCst));
        self.backlog.load(Ordering::SeqCst) as u64 + queued
    }
}

impl Sink for RedisSink {
    fn signed(&self, item: Signed) {
        let mut tx = self.0.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.0 += 1;
        let seq = tx.0;
        let _ = tx.1.send((seq, item));
    }

    fn flush(&self, bound: Duration) -> bool {
        let target = self.0.tx.lock().map(|t| t.0).unwrap_or(u64::MAX);
        let deadline = Instant::now() + bound;
        let mut done = self.0.done.lock().unwrap_or_else(|p| p.into_inner());
        while *done < target {
            // With Redis known to be away, waiting only delays the revoke: it is queued.
            if !self.0.redis_up.load(Ordering::SeqCst) {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .0
                .done_cv
                .wait_timeout(done, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    fn health(&self) -> serde_json::Value {
        let s = &self.0;
        json!({
            "redis": if s.redis_up.load(Ordering::Relaxed) { "up" } else { "down" },
            "backlog": s.backlog(),
            "lagSeconds": s.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            "published": s.published.load(Ordering::Relaxed),
            "failures": s.failures.load(Ordering::Relaxed),
            "republishes": s.republishes.load(Ordering::Relaxed),
            "lastError": s.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }

    fn gauges(&self) -> String {
        let s = &self.0;
        format!(
            "# HELP pcad_publish_backlog Changes signed but not yet written to Redis.\n# TYPE pcad_publish_backlog gauge\npcad_publish_backlog {}\n\
             # HELP pcad_publish_lag_seconds Age of the oldest change not yet written to Redis.\n# TYPE pcad_publish_lag_seconds gauge\npcad_publish_lag_seconds {}\n\
             # HELP pcad_publish_redis_up Whether the last write to Redis succeeded (1) or not (0).\n# TYPE pcad_publish_redis_up gauge\npcad_publish_redis_up {}\n\
             # HELP pcad_publish_published_total Changes written to Redis.\n# TYPE pcad_publish_published_total counter\npcad_publish_published_total {}\n\
             # HELP pcad_publish_failures_total Writes to Redis that failed (and were retried).\n# TYPE pcad_publish_failures_total counter\npcad_publish_failures_total {}\n\
             # HELP pcad_publish_republish_total Full republications (start, Redis found empty).\n# TYPE pcad_publish_republish_total counter\npcad_publish_republish_total {}\n",
            s.backlog(),
            s.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            u8::from(s.redis_up.load(Ordering::Relaxed)),
            s.published.load(Ordering::Relaxed),
            s.failures.load(Ordering::Relaxed),
            s.republishes.load(Ordering::Relaxed),
        )
    }
}

/// One write, as kept in the backlog (the newest per key).
#[derive(Clone, Debug)]
enum Op {
    Put {
        der: bytes::Bytes,
        this: i64,
        next: i64,
        refresh: i64,
    },
    Del,
    Store {
        /// `None` leaves the tenant as it is.
        appkey: Option<Arc<str>>,
        /// `None` leaves the OCSP switch as it is.
        ocsp: Option<bool>,
    },
    /// Where a `caTag`'s answers are.
    Tag(crate::status::CaTagTarget),
}

struct Pending {
    seq: u64,
    since: Instant,
    op: Op,
}

struct Worker {
    target: Target,
    status: crate::status::Publisher,
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<(u64, Signed)>,
    conn: Option<Conn>,
    /// Newest pending write per key.
    pending: HashMap<String, Pending>,
    /// Highest sequence number received.
    received: u64,
    /// Stores whose tenant was written this run.
    stores: HashMap<u64, Arc<str>>,
    /// A full republish is due (at start, and when the marker is gone).
    republish: bool,
    /// The republish was queued; the marker is set once the backlog drains.
    marker_due: bool,
    retry_at: Instant,
    backoff: Duration,
    last_check: Instant,
    put: Script,
    del: Script,
    store: Script,
    tag: Script,
}

/// Writes in flight at once.
const CONCURRENCY: usize = 256;

impl Worker {
    fn new(
        target: Target,
        status: crate::status::Publisher,
        shared: Arc<Shared>,
        rx: mpsc::UnboundedReceiver<(u64, Signed)>,
    ) -> Worker {
        Worker {
            target,
            status,
            shared,
            rx,
            conn: None,
            pending: HashMap::new(),
            received: 0,
            stores: HashMap::new(),
            republish: true,
            marker_due: false,
            retry_at: Instant::now(),
            backoff: Duration::from_millis(200),
            last_check: Instant::now() - Duration::from_secs(60),
            put: Script::new(super::PUT_SCRIPT),
            del: Script::new(super::DEL_SCRIPT),
            store: Script::new(super::STORE_SCRIPT),
            tag: Script::new(super::TAG_SCRIPT),
        }
    }

    async fn run(mut self) {
        loop {
            let wait = if self.pending.is_empty() {
                Duration::from_millis(500)
            } else {
                self.retry_at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1))
            };
            tokio::select! {
                got = self.rx.recv() => match got {
                    Some((seq, item)) => self.take(seq, item),
                    None => return,
                },
                _ = tokio::time::sleep(wait) => {}
            }
            while let Ok((seq, item)) = self.rx.try_recv() {
                self.take(seq, item);
            }
            if self.conn.is_none() && Instant::now() >= self.retry_at {
                match self.target.connect().await {
                    Ok(c) => {
                        log::info!("connected to Redis at {}", self.target.urls.redacted());
                        self.conn = Some(c);
                    }
                    Err(e) => self.failed(format!("cannot connect to Redis: {e}")),
                }
            }
            if self.conn.is_some() && self.last_check.elapsed() >= Duration::from_secs(1) {
                self.check_marker().await;
            }
            if self.republish && self.conn.is_some() {
                self.queue_republish().await;
            }
            if self.conn.is_some() && !self.pending.is_empty() && Instant::now() >= self.retry_at {
                self.write_some().await;
            }
            if self.marker_due && self.pending.is_empty() {
                self.set_marker().await;
            }
            self.report();
        }
    }

    fn take(&mut self, seq: u64, item: Signed) {
        self.received = self.received.max(seq);
        let mut add = |key: String, op: Op| {
            let since = self
                .pending
                .get(&key)
                .map_or_else(Instant::now, |p| p.since);
            let op = match (self.pending.get(&key), op) {
                // A store's settings merge: what the newer change leaves open, the older says.
                (
                    Some(Pending {
                        op:
                            Op::Store {
                                appkey: old_appkey,
                                ocsp: old_ocsp,
                            },
                        ..
                    }),
                    Op::Store { appkey, ocsp },
                ) => Op::Store {
                    appkey: appkey.or_else(|| old_appkey.clone()),
                    ocsp: ocsp.or(*old_ocsp),
                },
                (_, op) => op,
            };
            self.pending.insert(key, Pending { seq, since, op });
        };
        match item {
            Signed::Ocsp {
                store_id,
                appkey,
                response,
            } => {
                if self.stores.get(&store_id) != Some(&appkey) {
                    self.stores.insert(store_id, Arc::clone(&appkey));
                    add(
                        store_key(store_id),
                        Op::Store {
                            appkey: Some(appkey),
                            ocsp: Some(true),
                        },
                    );
                }
                add(
                    ocsp_key(store_id, response.cert_id_key()),
                    Op::Put {
                        der: response.der(),
                        this: response.this_update,
                        next: response.next_update,
                        refresh: response.refresh_at,
                    },
                );
            }
            Signed::Forget { store_id, keys } => {
                for k in keys {
                    add(ocsp_key(store_id, &k), Op::Del);
                }
            }
            Signed::Crl {
                store_id,
                appkey,
                issuer_id,
                der,
                this_update,
                next_update,
            } => {
                if self.stores.get(&store_id) != Some(&appkey) {
                    self.stores.insert(store_id, Arc::clone(&appkey));
                    add(
                        store_key(store_id),
                        Op::Store {
                            appkey: Some(appkey),
                            ocsp: None,
                        },
                    );
                }
                add(
                    crl_key(store_id, issuer_id),
                    Op::Put {
                        der,
                        this: this_update,
                        next: next_update,
                        refresh: next_update,
                    },
                );
            }
            Signed::OcspOff { store_id } => {
                // The next OCSP response of the store turns it on again.
                self.stores.remove(&store_id);
                add(
                    store_key(store_id),
                    Op::Store {
                        appkey: None,
                        ocsp: Some(false),
                    },
                );
            }
            Signed::StoreGone { store_id } => {
                self.stores.remove(&store_id);
                add(store_key(store_id), Op::Del);
            }
            Signed::CaTag { tag, target } => {
                add(tag_key(&tag), target.map_or(Op::Del, Op::Tag));
            }
        }
    }

    /// Writes up to a batch of pending writes, `CONCURRENCY` at a time.
    async fn write_some(&mut self) {
        let Some(conn) = self.conn.clone() else {
            return;
        };
        // Oldest first; store tenants before the responses that need them.
        let mut batch: Vec<(String, u64, Op)> = self
            .pending
            .iter()
            .map(|(k, p)| (k.clone(), p.seq, p.op.clone()))
            .collect();
        batch.sort_by_key(|(k, seq, _)| (!k.starts_with("pcad:store:"), *seq));
        batch.truncate(CONCURRENCY * 64);
        let mut ok = 0u64;
        let mut first_error = None;
        for chunk in batch.chunks(CONCURRENCY) {
            let mut set = tokio::task::JoinSet::new();
            for (key, seq, op) in chunk.iter().cloned() {
                let mut conn = conn.clone();
                let (put, del, store) = (self.put.clone(), self.del.clone(), self.store.clone());
                let tag = self.tag.clone();
                set.spawn(async move {
                    let r: redis::RedisResult<i64> = match &op {
                        Op::Put {
                            der,
                            this,
                            next,
                            refresh,
                        } => {
                            put.key(&key)
                                .arg(&der[..])
                                .arg(*this)
                                .arg(*next)
                                .arg(*refresh)
                                .arg(CHANNEL)
                                .invoke_async(&mut conn)
                                .await
                        }
                        Op::Del => del.key(&key).arg(CHANNEL).invoke_async(&mut conn).await,
                        Op::Store { appkey, ocsp } => {
                            let o = match ocsp {
                                Some(true) => "1",
                                Some(false) => "0",
                                None => "",
                            };
                            store
                                .key(&key)
                                .arg(appkey.as_deref().unwrap_or(""))
                                .arg(o)
                                .arg(CHANNEL)
                                .invoke_async(&mut conn)
                                .await
                        }
                        Op::Tag(t) => {
                            tag.key(&key)
                                .arg(&*t.appkey)
                                .arg(t.store_id)
                                .arg(t.issuer_id)
                                .arg(CHANNEL)
                                .invoke_async(&mut conn)
                                .await
                        }
                    };
                    (key, seq, r)
                });
            }
            while let Some(joined) = set.join_next().await {
                let Ok((key, seq, r)) = joined else { continue };
                match r {
                    Ok(_) => {
                        ok += 1;
                        if self.pending.get(&key).is_some_and(|p| p.seq == seq) {
                            self.pending.remove(&key);
                        }
                    }
                    Err(e) => {
                        if first_error.is_none() {
                            first_error = Some(format!("writing {key}: {e}"));
                        }
                    }
                }
            }
            if first_error.is_some() {
                break;
            }
        }
        self.shared.published.fetch_add(ok, Ordering::Relaxed);
        match first_error {
            Some(e) => self.failed(e),
            None => self.succeeded(),
        }
    }

    /// Whether Redis still holds what was published: the marker's absence means it lost its
    /// data (a restart without persistence, FLUSHALL, a failover to an empty replica).
    async fn check_marker(&mut self) {
        self.last_check = Instant::now();
        let Some(mut conn) = self.conn.clone() else {
            return;
        };
        let r: redis::RedisResult<Option<String>> =
            redis::cmd("GET").arg(MARKER).query_async(&mut conn).await;
        match r {
            Ok(Some(_)) => self.succeeded_quietly(),
            Ok(None) if !self.marker_due => {
                log::warn!("Redis holds no pcad marker: republishing everything current");
                self.republish = true;
            }
            Ok(None) => {}
            Err(e) => self.failed(format!("reading {MARKER}: {e}")),
        }
    }

    async fn queue_republish(&mut self) {
        self.republish = false;
        let status = self.status.clone();
        let Ok(all) = tokio::task::spawn_blocking(move || status.current_signed()).await else {
            self.republish = true;
            return;
        };
        let n = all.len();
        self.stores.clear();
        // Changes signed from here on have later sequence numbers and replace these.
        let seq = self.received;
        for item in all {
            self.take(seq, item);
        }
        self.shared.republishes.fetch_add(1, Ordering::Relaxed);
        self.marker_due = true;
        log::info!("republishing {n} responses and CRLs to Redis");
    }

    async fn set_marker(&mut self) {
        let Some(mut conn) = self.conn.clone() else {
            return;
        };
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(MARKER)
            .arg(crate::clock::now())
            .query_async(&mut conn)
            .await;
        match r {
            Ok(()) => {
                self.marker_due = false;
                log::info!("Redis holds everything current");
            }
            Err(e) => self.failed(format!("writing {MARKER}: {e}")),
        }
    }

    fn failed(&mut self, e: String) {
        self.shared.failures.fetch_add(1, Ordering::Relaxed);
        if self.shared.redis_up.swap(false, Ordering::SeqCst) || self.backoff.as_millis() <= 200 {
            log::warn!("Redis publication failed, retrying: {e}");
        }
        if let Ok(mut l) = self.shared.last_error.lock() {
            *l = Some(e);
        }
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
        // Wake revokes waiting in `flush`: Redis is away, they need not wait.
        self.shared.done_cv.notify_all();
    }

    fn succeeded(&mut self) {
        if !self.shared.redis_up.swap(true, Ordering::SeqCst) {
            log::info!("Redis publication works");
        }
        self.backoff = Duration::from_millis(200);
        self.retry_at = Instant::now();
    }

    fn succeeded_quietly(&mut self) {
        if self.pending.is_empty() {
            self.succeeded();
        }
    }

    /// Updates the backlog gauges and wakes the revokes whose changes are in.
    fn report(&mut self) {
        let oldest = self.pending.values().map(|p| (p.seq, p.since)).min();
        self.shared
            .backlog
            .store(self.pending.len(), Ordering::SeqCst);
        self.shared.received.store(self.received, Ordering::SeqCst);
        self.shared.lag_ms.store(
            oldest.map_or(0, |(_, since)| since.elapsed().as_millis() as u64),
            Ordering::Relaxed,
        );
        let done = match oldest {
            Some((seq, _)) => seq.saturating_sub(1),
            None => self.received,
        };
        if let Ok(mut d) = self.shared.done.lock() {
            if *d != done {
                *d = done;
                self.shared.done_cv.notify_all();
            }
        }
    }
}
