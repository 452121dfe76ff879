//! The hook through which everything the status engine signs leaves the appliance: a `Sink`
//! (the Redis publisher, `crate::publish`) is handed each accepted OCSP response and CRL, and
//! each response that stopped being valid. Handing over is a channel send: the OCSP hot path
//! never waits for it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::response::CachedResponse;

/// One change to publish.
#[derive(Clone, Debug)]
pub enum Signed {
    /// An OCSP response now served for `key` (a CertID DER, or several concatenated).
    Ocsp {
        store_id: u64,
        appkey: Arc<str>,
        response: Arc<CachedResponse>,
    },
    /// Responses no longer to be served (a revoke forgot them before re-signing).
    Forget { store_id: u64, keys: Vec<Vec<u8>> },
    /// An issuer's current CRL.
    Crl {
        store_id: u64,
        appkey: Arc<str>,
        issuer_id: u64,
        der: Bytes,
        this_update: i64,
        next_update: i64,
    },
    /// OCSP was turned off for the store: its responses are not to be served.
    OcspOff { store_id: u64 },
    /// The store was deleted: nothing of it is to be served.
    StoreGone { store_id: u64 },
    /// A NAVER Cloud CA's `caTag` and where its `/ext/{caTag}` answers live; `None` when the
    /// CA is gone.
    CaTag {
        tag: Arc<str>,
        target: Option<CaTagTarget>,
    },
}

/// Where a `caTag`'s OCSP responses and CRL are: its tenant, store and CA certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaTagTarget {
    pub appkey: Arc<str>,
    pub store_id: u64,
    pub issuer_id: u64,
}

/// Where signed things go.
pub trait Sink: Send + Sync {
    /// Takes one change; never blocks.
    fn signed(&self, item: Signed);
    /// Waits until everything handed in before this call is published, at most `bound`.
    /// True when it is.
    fn flush(&self, bound: Duration) -> bool;
    /// `/healthz`'s `"publish"` object.
    fn health(&self) -> serde_json::Value;
    /// Prometheus lines (`pcad_publish_*`).
    fn gauges(&self) -> String;
}

/// The sink of a publisher, once one is attached.
#[derive(Default)]
pub(super) struct SinkSlot(std::sync::OnceLock<Arc<dyn Sink>>);

impl SinkSlot {
    pub(super) fn set(&self, sink: Arc<dyn Sink>) -> bool {
        self.0.set(sink).is_ok()
    }

    pub(super) fn get(&self) -> Option<&Arc<dyn Sink>> {
        self.0.get()
    }

    pub(super) fn send(&self, item: impl FnOnce() -> Signed) {
        if let Some(s) = self.0.get() {
            s.signed(item());
        }
    }
}
