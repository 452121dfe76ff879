//! Redis: everything pcad does with it. The appliance's publisher (`publisher`) writes every
//! OCSP response and CRL the status engine signs; the stateless responders (`responder`) read
//! them through an in-memory cache that learns of changes on a pub/sub channel.
//!
//! Key layout (documented in the README; `{store}` and `{issuer}` are decimal ids, `{certid}`
//! the lowercase hex of the CertID DER a request carries, or of several concatenated):
//!
//! - `pcad:ocsp:{store}:{certid}`: hash `der` (the OCSPResponse DER), `this`, `next` (Unix
//!   seconds), `refresh` (when the appliance re-signs it, for `Cache-Control: max-age`);
//!   expires at `next`.
//! - `pcad:crl:{store}:{issuer}`: hash `der` (the CRL DER), `this`, `next`; expires at `next`.
//! - `pcad:store:{store}`: hash `appkey` (the tenant; requests under another appkey find
//!   nothing), `ocsp` (`0` while the store's OCSP is off). No expiry; deleted with the store.
//! - `pcad:ncp:{caTag}`: hash `appkey`, `store`, `issuer` (decimal ids): where a NAVER Cloud
//!   CA's `/ext/{caTag}` answers are (the `pcad:ocsp:{store}:…` and `pcad:crl:{store}:{issuer}`
//!   keys). No expiry; deleted with the CA.
//! - `pcad:marker`: set after a full republish. Its absence means Redis lost its data: the
//!   appliance republishes everything, responders keep to their caches meanwhile.
//! - channel `pcad:changes`: the name of each key written or deleted.

mod publisher;
mod responder;

pub use crate::config::{PublishConfig, RedisUrls};
pub use publisher::start;
pub use responder::{follow, RedisSource, ResponderOptions};

use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

/// Where and how to reach Redis.
#[derive(Clone, Debug)]
pub struct Target {
    pub urls: RedisUrls,
    pub password: Option<String>,
}

impl Target {
    /// Reads the password file, when given. Checks the URLs parse.
    pub fn new(urls: RedisUrls, password_file: Option<&Path>) -> Result<Target, String> {
        let password = match password_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("publish.password_file {}: {e}", p.display()))?;
                let pw = text.trim_end_matches(['\r', '\n']).to_owned();
                if pw.is_empty() {
                    return Err(format!("publish.password_file {}: empty", p.display()));
                }
                Some(pw)
            }
            None => None,
        };
        let t = Target { urls, password };
        for u in t.urls.list() {
            t.info(u)?;
        }
        if t.urls.list().is_empty() {
            return Err("publish.redis: no URL".into());
        }
        Ok(t)
    }

    fn info(&self, url: &str) -> Result<redis::ConnectionInfo, String> {
        let info = url
            .into_connection_info()
            .map_err(|e| format!("redis URL {}: {e}", RedisUrls::One(url.into()).redacted()))?;
        Ok(match &self.password {
            Some(pw) => {
                let settings = info.redis_settings().clone().set_password(pw);
                info.set_redis_settings(settings)
            }
            None => info,
        })
    }

    /// A connection for commands: reconnects by itself after a loss.
    async fn connect(&self) -> Result<Conn, String> {
        match &self.urls {
            RedisUrls::One(u) => {
                let client = redis::Client::open(self.info(u)?).map_err(|e| e.to_string())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let c = tokio::time::timeout(
                    TIMEOUT * 2,
                    client.get_connection_manager_with_config(config),
                )
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
                Ok(Conn::Single(c))
            }
            RedisUrls::Cluster(urls) => {
                let infos = urls
                    .iter()
                    .map(|u| self.info(u))
                    .collect::<Result<Vec<_>, _>>()?;
                let client = redis::cluster::ClusterClient::builder(infos)
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT)
                    .retries(2)
                    .build()
                    .map_err(|e| e.to_string())?;
                let c = tokio::time::timeout(TIMEOUT * 2, client.get_async_connection())
                    .await
                    .map_err(|_| "connect timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
                Ok(Conn::Cluster(c))
            }
        }
    }

    /// A pub/sub connection: to the one Redis, or to the first cluster node that answers
    /// (Redis Cluster forwards PUBLISH to every node).
    async fn pubsub(&self) -> Result<redis::aio::PubSub, String> {
        let mut last = String::from("no URL");
        for u in self.urls.list() {
            let client = redis::Client::open(self.info(u)?).map_err(|e| e.to_string())?;
            match tokio::time::timeout(TIMEOUT * 2, client.get_async_pubsub()).await {
                Ok(Ok(p)) => return Ok(p),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "connect timed out".into(),
            }
        }
        Err(last)
    }
}

/// How long one Redis command or connection attempt may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A command connection to a standalone Redis or to a Redis Cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

const CHANNEL: &str = "pcad:changes";
const MARKER: &str = "pcad:marker";

fn ocsp_key(store_id: u64, cert_id_key: &[u8]) -> String {
    format!(
        "pcad:ocsp:{store_id}:{}",
        crate::pki::der_util::hex(cert_id_key)
    )
}

fn crl_key(store_id: u64, issuer_id: u64) -> String {
    format!("pcad:crl:{store_id}:{issuer_id}")
}

fn store_key(store_id: u64) -> String {
    format!("pcad:store:{store_id}")
}

fn tag_key(tag: &str) -> String {
    format!("pcad:ncp:{tag}")
}

/// What a key names.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    Ocsp(u64, Vec<u8>),
    Crl(u64, u64),
    Store(u64),
    Tag(String),
    Marker,
}

fn parse_key(key: &str) -> Option<Key> {
    if key == MARKER {
        return Some(Key::Marker);
    }
    let rest = key.strip_prefix("pcad:")?;
    let (kind, rest) = rest.split_once(':')?;
    match kind {
        "ocsp" => {
            let (store, hex) = rest.split_once(':')?;
            Some(Key::Ocsp(store.parse().ok()?, unhex(hex)?))
        }
        "crl" => {
            let (store, issuer) = rest.split_once(':')?;
            Some(Key::Crl(store.parse().ok()?, issuer.parse().ok()?))
        }
        "store" => Some(Key::Store(rest.parse().ok()?)),
        "ncp" if !rest.is_empty() => Some(Key::Tag(rest.to_owned())),
        _ => None,
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes a response or CRL unless Redis holds a newer one (by `this`), expires it at `next`,
/// and announces the key. Returns 1 when written, 0 when a newer one was kept.
const PUT_SCRIPT: &str = r"
local cur = redis.call('HGET', KEYS[1], 'this')
if cur and tonumber(cur) and tonumber(cur) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'der', ARGV[1], 'this', ARGV[2], 'next', ARGV[3], 'refresh', ARGV[4])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[5], KEYS[1])
return 1
";

/// Deletes a key and announces it.
const DEL_SCRIPT: &str = r"
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], KEYS[1])
return 1
";

/// Sets a store's tenant and its OCSP switch (each unless empty; the switch only on a store
/// whose tenant is known) and announces it.
const STORE_SCRIPT: &str = r"
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'appkey', ARGV[1]) end
if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'ocsp', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], KEYS[1])
return 1
";

/// Sets where a `caTag`'s answers are (replacing what was there) and announces it.
const TAG_SCRIPT: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'appkey', ARGV[1], 'store', ARGV[2], 'issuer', ARGV[3])
redis.call('PUBLISH', ARGV[4], KEYS[1])
return 1
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = ocsp_key(7, &[0x30, 0x41, 0xff]);
        assert_eq!(k, "pcad:ocsp:7:3041ff");
        assert_eq!(parse_key(&k), Some(Key::Ocsp(7, vec![0x30, 0x41, 0xff])));
        assert_eq!(parse_key(&crl_key(7, 9)), Some(Key::Crl(7, 9)));
        assert_eq!(parse_key(&store_key(7)), Some(Key::Store(7)));
        assert_eq!(parse_key(MARKER), Some(Key::Marker));
        assert_eq!(parse_key(&tag_key("a1b2")), Some(Key::Tag("a1b2".into())));
        for bad in [
            "pcad:ocsp:x:00",
            "pcad:ocsp:7:0",
            "pcad:ocsp:7:zz",
            "other",
            "pcad:crl:1",
            "pcad:ncp:",
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        let u = RedisUrls::Cluster(vec![
            "redis://:secret@10.0.0.1:6379".into(),
            "rediss://10.0.0.2:6380/0".into(),
        ]);
        assert_eq!(
            u.redacted(),
            "redis://***@10.0.0.1:6379,rediss://10.0.0.2:6380/0"
        );
    }
}
