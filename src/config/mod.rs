//! What the operator asked for: the TOML file, environment overrides and secrets from files.
//!
//! Loading order: embedded defaults → the TOML file (`--config` / `GUICHET_CONFIG`) →
//! `GUICHET_*` environment variables (`__` separates nesting levels) → `*_file` secrets.
//! Every problem found is reported with the key and, when it comes from the file, its line.

mod problems;
mod source;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

pub use problems::{ConfigError, Problem};
pub use source::SourceMap;

/// The only configuration format version this binary understands.
pub const CONFIG_VERSION: u32 = 1;

/// The whole configuration, as deserialised (before secrets and files are resolved).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Format version of the file; must be 1.
    #[serde(default = "default_version")]
    pub version: u32,
    /// Directory for the embedded store and other local state.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub routes: Vec<RouteSettings>,
    /// Field encryption keys. Absent: no field is encrypted and `serve` opens no keyring.
    #[serde(default)]
    pub keys: Option<KeysSettings>,
}

/// Where the keyring is and how to open it (see `docs/cryptography.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSettings {
    /// The age-encrypted keyring file holding the KEKs (created by `guichet keys init`).
    pub keyring: PathBuf,
    /// age X25519 identity file (`AGE-SECRET-KEY-1…`) that opens the keyring.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// Passphrase that opens the keyring instead of an identity. Secret.
    #[serde(default)]
    pub passphrase: Option<SecretString>,
    /// File holding the passphrase instead.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    /// Append-only list of destroyed data keys, kept outside the store so that a restored
    /// store backup learns them again. Default: the keyring path with `.tombstones` added.
    #[serde(default)]
    pub tombstones_file: Option<PathBuf>,
    /// How many unwrapped data keys stay in memory.
    #[serde(default = "default_key_cache_size")]
    pub cache_size: usize,
    /// How long an unwrapped data key may be used before the store is asked again (bounds how
    /// long another instance keeps a key that was shredded elsewhere).
    #[serde(default = "default_key_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl KeysSettings {
    /// Settings for the keyring at `keyring` with every other key at its default (no way to
    /// open it yet: set `identity_file` or a passphrase).
    pub fn at(keyring: PathBuf) -> Self {
        Self {
            keyring,
            identity_file: None,
            passphrase: None,
            passphrase_file: None,
            tombstones_file: None,
            cache_size: default_key_cache_size(),
            cache_ttl: default_key_cache_ttl(),
        }
    }

    /// The tombstone file actually used.
    pub fn tombstones_path(&self) -> PathBuf {
        self.tombstones_file.clone().unwrap_or_else(|| {
            let mut p = self.keyring.as_os_str().to_owned();
            p.push(".tombstones");
            PathBuf::from(p)
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address of the public listener.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Terminate TLS on the public listener. Without it, the listener speaks plain HTTP
    /// (loopback, or behind a trusted TLS terminator).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Peers whose `Forwarded` / `X-Forwarded-*` headers are kept and extended.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Largest request head (request line plus headers) accepted, in bytes.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Largest request body accepted by default, in bytes (routes may override).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// How long in-flight requests may take to finish on shutdown.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file holding the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file holding the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Lowest TLS version accepted: "1.2" (default) or "1.3".
    #[serde(default = "default_tls_min")]
    pub min_version: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Serve Prometheus metrics on a separate listener.
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://path` or `postgres://…`. Secret: may hold a password. Default: a SQLite file
    /// in `data_dir`.
    #[serde(default)]
    pub url: Option<SecretString>,
    /// File holding the URL instead (read at start, trailing newline ignored).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Apply pending migrations when `serve` starts.
    #[serde(default = "default_true")]
    pub migrate_on_start: bool,
    /// How long to wait for a free connection before failing the request.
    #[serde(default = "default_acquire_timeout", with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `guichet=debug,info`. `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// Name used in metrics, logs and (later) policies. Unique.
    pub name: String,
    /// Match only this `Host` (case-insensitive, port ignored). Absent: any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Match paths under this prefix, on segment boundaries.
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    /// Base URL of the application, `http://` or `https://`, optionally with a base path.
    pub upstream: String,
    /// Remove `path_prefix` before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Extra CA certificates (PEM) trusted for this https upstream, beside the system roots.
    #[serde(default)]
    pub upstream_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub timeouts: TimeoutSettings,
    /// Overrides `server.max_body_bytes` for this route.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSettings {
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect: Duration,
    /// From the end of the request to the upstream's response head.
    #[serde(default = "default_response_timeout", with = "humantime_serde")]
    pub response_headers: Duration,
    /// Longest silence allowed while a body streams, either way.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_body: Duration,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        Self {
            connect: default_connect_timeout(),
            response_headers: default_response_timeout(),
            idle_body: default_idle_timeout(),
        }
    }
}

macro_rules! default_from_serde {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                // An empty table gets every field's serde default, so defaults live in one place.
                toml::Table::new()
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("every field has a default"))
            }
        }
    )*};
}
default_from_serde!(Settings, ServerSettings, AdminSettings, StoreSettings, LogSettings);

fn default_key_cache_size() -> usize {
    10_000
}
fn default_key_cache_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_version() -> u32 {
    CONFIG_VERSION
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_max_header_bytes() -> usize {
    32 * 1024
}
fn default_max_body_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_tls_min() -> String {
    "1.2".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_max_connections() -> u32 {
    10
}
fn default_acquire_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_log_format() -> LogFormat {
    LogFormat::Pretty
}
fn default_log_level() -> String {
    "info".to_owned()
}
fn default_prefix() -> String {
    "/".to_owned()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

/// A loaded configuration with where each key came from, for error messages.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub source: SourceMap,
}

impl Loaded {
    /// Embedded defaults only (no file, no environment).
    pub fn defaults() -> Self {
        Self { settings: Settings::default(), source: SourceMap::empty() }
    }

    /// Reads `path` (if any) and applies `env` overrides (pairs of name and value).
    pub fn load<I>(path: Option<&Path>, env: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        source::load(path, env)
    }

    /// Checks everything that can be checked without binding sockets, and returns every
    /// problem at once.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        validate::validate(self)
    }
}

/// A configuration that passed every check, with secrets and files resolved.
#[derive(Debug, Clone)]
pub struct Validated {
    pub settings: Settings,
    pub store_url: SecretString,
    pub routes: crate::routing::RouteTable,
}
