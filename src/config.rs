//! The TOML config file: defaults, validation, and where the HSM PIN comes from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
    #[error("HSM PIN: {0}")]
    Pin(String),
}

/// The whole config file. Relative paths are resolved against the config file's folder.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub hsm: HsmConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    pub api: ApiConfig,
    pub public: PublicConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// `[publish]`: Redis for the stateless responders (off when absent).
    #[serde(default)]
    pub publish: PublishConfig,
    /// Connection timeouts and per-listener caps (see `server::conn`).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Where ACME validation connects and which DNS server it asks.
    #[serde(default)]
    pub acme: AcmeConfig,
    /// Client certificate identities (subject CN) and their roles.
    #[serde(default)]
    pub access: Vec<AccessRule>,
    /// Bearer tokens, stored as SHA-256 hex of the token, and their roles.
    #[serde(default)]
    pub tokens: Vec<TokenRule>,
    /// NAVER Cloud edition (`/api/v1`) access keys, each bound to an appkey and a role.
    #[serde(default)]
    pub ncp_keys: Vec<NcpKey>,
    /// NAVER Cloud edition settings.
    #[serde(default)]
    pub ncp: NcpConfig,
    /// The secrets of `ncp_keys`, read by `load` (access key -> secret); never printed.
    #[serde(skip)]
    pub ncp_secrets: BTreeMap<String, Secret>,
    /// Where the config was read from; relative paths are resolved against its folder.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// An NCP access key: `x-ncp-iam-access-key` and the file holding its secret key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NcpKey {
    pub access_key: String,
    /// File of the secret key (mode 0600/0640), relative to the config, or the name of a
    /// systemd credential (`$CREDENTIALS_DIRECTORY/NAME`).
    pub secret_file: PathBuf,
    pub appkey: String,
    pub role: Role,
    /// The name written in audit events.
    pub identity: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NcpConfig {
    /// How long a DESTROYING CA waits before it is destroyed: `72h`, `30m`, `10s`, `3d`.
    #[serde(default = "default_destroy_delay")]
    pub destroy_delay: String,
}

impl Default for NcpConfig {
    fn default() -> Self {
        NcpConfig {
            destroy_delay: default_destroy_delay(),
        }
    }
}

fn default_destroy_delay() -> String {
    "72h".into()
}

/// A duration of the config (`72h`, `30m`, `10s`, `3d`) in seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A secret key. Never printed: `Debug` redacts it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// Path of the PKCS#11 library.
    pub module: PathBuf,
    /// Label of the token that holds the issuer keys.
    pub token_label: String,
    /// File holding the user PIN (mode 0600 or 0640).
    pub pin_file: Option<PathBuf>,
    /// Name of an environment variable holding the PIN: for development only.
    pub pin_env: Option<String>,
    /// Number of PKCS#11 sessions kept open (the signing parallelism).
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// Extra environment for the module, set before it is loaded (e.g. `SOFTHSM2_CONF`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_sessions() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(2, 64)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Folder of the sled database.
    #[serde(default = "default_db_path")]
    pub path: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: default_db_path(),
        }
    }
}

fn default_db_path() -> PathBuf {
    PathBuf::from("/var/lib/pcad/db")
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain of the API server.
    pub cert: PathBuf,
    /// PEM private key of the API server (must not be group/world readable).
    pub key: PathBuf,
    /// PEM trust anchors for client certificates.
    pub client_ca: PathBuf,
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicConfig {
    #[serde(default = "default_public_listen")]
    pub listen: SocketAddr,
    /// Base URL written into certificates for CRL and OCSP, e.g. `http://pki.example.net`.
    pub base_url: String,
}

fn default_public_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint; `"off"` turns it off.
    #[serde(default = "default_metrics_listen", deserialize_with = "listen_or_off")]
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
}

fn listen_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s == "off" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{s:?} is not host:port or \"off\"")))
}

/// `[acme]`: the ports ACME validation connects to and the resolver it asks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// Port of http-01 validation requests.
    #[serde(default = "default_acme_http_port")]
    pub http_port: u16,
    /// Port of tls-alpn-01 validation connections.
    #[serde(default = "default_acme_tls_port")]
    pub tls_port: u16,
    /// `host:port` of the DNS server for dns-01 TXT records and the addresses of http-01 and
    /// tls-alpn-01 targets; absent: the first nameserver of /etc/resolv.conf.
    #[serde(default, deserialize_with = "optional_addr")]
    pub resolver: Option<SocketAddr>,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            http_port: default_acme_http_port(),
            tls_port: default_acme_tls_port(),
            resolver: None,
        }
    }
}

fn default_acme_http_port() -> u16 {
    80
}

fn default_acme_tls_port() -> u16 {
    443
}

fn optional_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{s:?} is not ip:port")))
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` wins when set.
    pub level: Option<String>,
}

/// `[limits]`: how long a connection may take to say something, and how many each listener
/// holds. A cap of 0 means "from the file limit": the public listener gets 60% and the API 30%
/// of what is left after 256 descriptors kept for the HSM, the database and logs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Seconds a new connection has to finish its TLS handshake and send a complete request
    /// head; also the HTTP/1 header read timeout for every later request.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a connection may sit with no request in flight and no bytes moving.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Seconds a request body may take to arrive (408 after that).
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Open connections on the API listener; 0: from the file limit.
    #[serde(default)]
    pub api_max_connections: usize,
    /// Open connections on the public listener; 0: from the file limit.
    #[serde(default)]
    pub public_max_connections: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_timeout_secs: default_header_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            body_timeout_secs: default_body_timeout(),
            api_max_connections: 0,
            public_max_connections: 0,
        }
    }
}

fn default_header_timeout() -> u64 {
    10
}

fn default_idle_timeout() -> u64 {
    60
}

fn default_body_timeout() -> u64 {
    30
}

/// A role of the seed: VIEWER reads, ADMIN does everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Role {
    #[serde(rename = "VIEWER")]
    Viewer,
    #[serde(rename = "ADMIN")]
    Admin,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Subject common name of the client certificate.
    pub identity: String,
    /// The appkey this role holds for, or `*` for every appkey.
    pub appkey: String,
    pub role: Role,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRule {
    /// Identity recorded for requests made with this token.
    pub identity: String,
    /// Lowercase hex SHA-256 of the bearer token.
    pub sha256: String,
    pub appkey: String,
    pub role: Role,
}

/// The HSM user PIN. Never printed: `Debug` and `Display` redact it.
#[derive(Clone)]
pub struct Pin(String);

impl Pin {
    pub fn new(pin: String) -> Pin {
        Pin(pin)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl Config {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = Config::parse(&text, &base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        config.load_ncp_secrets()?;
        Ok(config)
    }

    /// Parses config text whose relative paths are relative to `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.base_dir = base_dir.to_owned();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.hsm.token_label.is_empty() || self.hsm.token_label.len() > 32 {
            return Err(ConfigError::Invalid(
                "hsm.token_label must be 1 to 32 characters".into(),
            ));
        }
        if self.hsm.sessions == 0 || self.hsm.sessions > 256 {
            return Err(ConfigError::Invalid("hsm.sessions must be 1 to 256".into()));
        }
        let url = &self.public.base_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.ends_with('/') {
            return Err(ConfigError::Invalid(
                "public.base_url must start with http:// or https:// and not end with /".into(),
            ));
        }
        let l = &self.limits;
        for (name, v) in [
            ("header_timeout_secs", l.header_timeout_secs),
            ("idle_timeout_secs", l.idle_timeout_secs),
            ("body_timeout_secs", l.body_timeout_secs),
        ] {
            if v == 0 || v > 3600 {
                return Err(ConfigError::Invalid(format!(
                    "limits.{name} must be 1 to 3600 seconds"
                )));
            }
        }
        if parse_duration(&self.ncp.destroy_delay).is_none() {
            return Err(ConfigError::Invalid(format!(
                "ncp.destroy_delay: {:?} is not a duration like 72h, 30m, 10s or 3d",
                self.ncp.destroy_delay
            )));
        }
        for t in &self.tokens {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "tokens: sha256 of {} must be 64 hex digits",
                    t.identity
                )));
            }
        }
        Ok(())
    }

    /// Reads the secret of every `[[ncp_keys]]` entry: the file (0600/0640), else the systemd
    /// credential of that name.
    pub fn load_ncp_secrets(&mut self) -> Result<(), ConfigError> {
        let mut secrets = BTreeMap::new();
        for k in &self.ncp_keys {
            if k.access_key.is_empty() || secrets.contains_key(&k.access_key) {
                return Err(ConfigError::Invalid(format!(
                    "ncp_keys: access_key of {} is empty or repeated",
                    k.identity
                )));
            }
            let mut path = self.resolve(&k.secret_file);
            if !path.exists() {
                if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
                    path = Path::new(&dir).join(&k.secret_file);
                }
            }
            let secret = read_pin_file(&path).map_err(|e| {
                ConfigError::Invalid(format!(
                    "ncp_keys: secret of {}: {}",
                    k.identity,
                    e.to_string().trim_start_matches("HSM PIN: ")
                ))
            })?;
            secrets.insert(k.access_key.clone(), Secret(secret.0));
        }
        self.ncp_secrets = secrets;
        Ok(())
    }

    /// The destroy delay of the NCP edition, in seconds.
    pub fn ncp_destroy_delay(&self) -> u64 {
        parse_duration(&self.ncp.destroy_delay).unwrap_or(72 * 3600)
    }

    /// A path from the config, resolved against the config file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The HSM PIN, from (in order) `hsm.pin_file`, `$CREDENTIALS_DIRECTORY/hsm-pin` (systemd
    /// `LoadCredential=`), or the environment variable named by `hsm.pin_env`.
    pub fn pin(&self) -> Result<Pin, ConfigError> {
        if let Some(file) = &self.hsm.pin_file {
            return read_pin_file(&self.resolve(file));
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let file = Path::new(&dir).join("hsm-pin");
            if file.exists() {
                return read_pin_file(&file);
            }
        }
        if let Some(var) = &self.hsm.pin_env {
            return match std::env::var(var) {
                Ok(pin) if !pin.is_empty() => Ok(Pin(pin)),
                _ => Err(ConfigError::Pin(format!(
                    "environment variable {var} is not set"
                ))),
            };
        }
        Err(ConfigError::Pin(
            "no PIN source: set hsm.pin_file, or provide the systemd credential hsm-pin".into(),
        ))
    }

    /// The role `identity` holds for `appkey` through a client certificate, if any.
    pub fn role_for_identity(&self, identity: &str, appkey: &str) -> Option<Role> {
        self.access
            .iter()
            .filter(|r| r.identity == identity && (r.appkey == "*" || r.appkey == appkey))
            .map(|r| r.role)
            .max()
    }
}

fn read_pin_file(path: &Path) -> Result<Pin, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::Pin(format!("cannot read {}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o007 != 0 {
        return Err(ConfigError::Pin(format!(
            "{} is readable by others: chmod 0600 (or 0640) it",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Pin(format!("cannot read {}: {e}", path.display())))?;
    let pin = text.trim_end_matches(['\n', '\r']).to_owned();
    if pin.is_empty() {
        return Err(ConfigError::Pin(format!("{} is empty", path.display())));
    }
    Ok(Pin(pin))
}

/// `[publish]` of the appliance's config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// `redis://host:port/db` or `rediss://...` (TLS); a list of node URLs for Redis Cluster.
    pub redis: Option<RedisUrls>,
    /// File holding the Redis password (the AUTH secret), never inline.
    pub password_file: Option<PathBuf>,
}

/// One URL (a standalone Redis) or a list (Redis Cluster nodes).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RedisUrls {
    One(String),
    Cluster(Vec<String>),
}

impl RedisUrls {
    /// From the command line: one `--redis` is a standalone Redis, several are cluster nodes.
    pub fn from_args(mut urls: Vec<String>) -> Option<RedisUrls> {
        match urls.len() {
            0 => None,
            1 => urls.pop().map(RedisUrls::One),
            _ => Some(RedisUrls::Cluster(urls)),
        }
    }

    pub(crate) fn list(&self) -> Vec<&str> {
        match self {
            RedisUrls::One(u) => vec![u.as_str()],
            RedisUrls::Cluster(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// The URLs without any password, for logs.
    pub fn redacted(&self) -> String {
        self.list()
            .iter()
            .map(|u| match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}://***@{}", &u[..s], &u[at + 1..]),
                _ => (*u).to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "pcad"
pin_file = "hsm-pin"
[api]
cert = "tls/server.pem"
key = "tls/server.key"
client_ca = "tls/ca.pem"
[public]
base_url = "http://127.0.0.1:8080"
[[access]]
identity = "ops-admin"
appkey = "*"
role = "ADMIN"
[[access]]
identity = "auditor"
appkey = "k1"
role = "VIEWER"
"#;

    #[test]
    fn minimal_config_and_roles() {
        let c = Config::parse(MINIMAL, Path::new("/etc/pcad")).unwrap();
        assert_eq!(c.api.listen.port(), 8443);
        assert_eq!(
            c.resolve(Path::new("hsm-pin")),
            Path::new("/etc/pcad/hsm-pin")
        );
        assert_eq!(c.role_for_identity("ops-admin", "x"), Some(Role::Admin));
        assert_eq!(c.role_for_identity("auditor", "k1"), Some(Role::Viewer));
        assert_eq!(c.role_for_identity("auditor", "k2"), None);
    }

    #[test]
    fn metrics_can_be_turned_off() {
        let on = Config::parse(MINIMAL, Path::new("/")).unwrap();
        assert_eq!(on.metrics.listen.map(|a| a.port()), Some(9464));
        let off = format!("{MINIMAL}\n[metrics]\nlisten = \"off\"\n");
        assert_eq!(
            Config::parse(&off, Path::new("/")).unwrap().metrics.listen,
            None
        );
        let bad = format!("{MINIMAL}\n[metrics]\nlisten = \"nope\"\n");
        assert!(Config::parse(&bad, Path::new("/")).is_err());
    }

    #[test]
    fn limits_have_defaults_and_bounds() {
        let c = Config::parse(MINIMAL, Path::new("/")).unwrap();
        assert_eq!(c.limits.header_timeout_secs, 10);
        assert_eq!(c.limits.idle_timeout_secs, 60);
        assert_eq!(c.limits.public_max_connections, 0);
        let set =
            format!("{MINIMAL}\n[limits]\nheader_timeout_secs = 3\npublic_max_connections = 500\n");
        let c = Config::parse(&set, Path::new("/")).unwrap();
        assert_eq!(c.limits.header_timeout_secs, 3);
        assert_eq!(c.limits.public_max_connections, 500);
        let zero = format!("{MINIMAL}\n[limits]\nidle_timeout_secs = 0\n");
        let err = Config::parse(&zero, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.idle_timeout_secs"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = MINIMAL.replace("[public]", "[public]\nbase_ur = 1");
        assert!(Config::parse(&text, Path::new("/")).is_err());
    }

    #[test]
    fn pin_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("hsm-pin");
        std::fs::write(&pin, "1234\n").unwrap();
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::parse(MINIMAL, dir.path()).unwrap();
        let err = c.pin().unwrap_err().to_string();
        assert!(err.contains("readable by others"), "{err}");
        assert!(!err.contains("1234"));
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(c.pin().unwrap().expose(), "1234");
        assert_eq!(format!("{:?}", c.pin().unwrap()), "Pin(<redacted>)");
    }
}
