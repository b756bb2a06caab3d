//! What the operator asked for: the TOML file, environment overrides and secrets from files.
//!
//! Loading order: embedded defaults → the TOML file (`--config` / `GUICHET_CONFIG`) →
//! `GUICHET_*` environment variables (`__` separates nesting levels) → `*_file` secrets.
//! Every problem found is reported with the key and, when it comes from the file, its line.

mod commune;
mod dpo;
mod every;
mod notify;
mod problems;
mod retention;
mod source;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

pub use commune::{AccessibilitySettings, CommuneSettings};
pub use dpo::DpoSettings;
pub use notify::NotifySettings;
pub use problems::{ConfigError, Problem};
pub use retention::{OwnDataDurations, RetentionSettings};
pub use source::SourceMap;
pub(crate) use source::{line_col, walk_table};

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
    pub audit: AuditSettings,
    #[serde(default)]
    pub routes: Vec<RouteSettings>,
    /// Field encryption keys. Absent: no field is encrypted and `serve` opens no keyring.
    #[serde(default)]
    pub keys: Option<KeysSettings>,
    /// Sign-in of citizens and agents, sessions, identity sent to upstreams.
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub policy: PolicySettings,
    /// Consent ledger and its assisted channel (docs/consent.md).
    #[serde(default)]
    pub consent: ConsentSettings,
    /// Data-subject rights requests (docs/rights.md).
    #[serde(default)]
    pub rights: RightsSettings,
    /// Notices to citizens by e-mail and letter (docs/notify.md).
    #[serde(default)]
    pub notify: NotifySettings,
    /// The town hall's name and logo on every page, and its accessibility statement.
    #[serde(default)]
    pub commune: CommuneSettings,
    /// The DPO's console and the supervision view (docs/dpo.md).
    #[serde(default)]
    pub dpo: DpoSettings,
    /// When the retention engine runs (docs/retention.md).
    #[serde(default)]
    pub retention: RetentionSettings,
    /// The durable job runner (docs/jobs.md).
    #[serde(default)]
    pub jobs: JobsSettings,
}

/// The durable job runner's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSettings {
    /// How long a claimed job stays an instance's: a job whose instance was killed is taken
    /// over by another (or the restarted one) once this ran out. Longer than the slowest job.
    #[serde(default = "default_job_lease", with = "humantime_serde")]
    pub lease: std::time::Duration,
}

impl Default for JobsSettings {
    fn default() -> Self {
        Self { lease: default_job_lease() }
    }
}

fn default_job_lease() -> std::time::Duration {
    crate::jobs::DEFAULT_LEASE
}

/// Who may act on data-subject rights requests besides the citizen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RightsSettings {
    /// Agent roles allowed to file a request on a citizen's behalf (counter, phone, post,
    /// e-mail). Default: the consent ledger's default assisted role.
    #[serde(default = "default_consent_assisted_roles")]
    pub assisted_roles: Vec<String>,
    /// Agent roles that handle the queue (extend, pause, refuse, complete). `auth.dpo_role`
    /// always may; these are added to it.
    #[serde(default)]
    pub handler_roles: Vec<String>,
}

/// The consent ledger's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentSettings {
    /// Agent roles (from `[[auth.agent_roles]]`) allowed to record a consent or a withdrawal
    /// for a citizen at the counter, on the phone or by post.
    #[serde(default = "default_consent_assisted_roles")]
    pub assisted_roles: Vec<String>,
}

fn default_consent_assisted_roles() -> Vec<String> {
    vec!["accueil".to_owned()]
}

/// Where the processing-activity files are, and whether to follow their changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Directory of policy files (`*.toml`, one activity each), relative to the working
    /// directory unless absolute.
    #[serde(default = "default_policy_dir")]
    pub dir: PathBuf,
    /// Reload the policies when a file in `dir` changes (SIGHUP always reloads).
    #[serde(default = "default_true")]
    pub watch: bool,
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
    /// Largest request body the field-protection phase buffers to rewrite declared fields
    /// (bodies of routes that declare no field stream and are not limited by this). A larger
    /// body on a route with declared fields is refused (413), never forwarded unprotected.
    #[serde(default = "default_transform_max_bytes")]
    pub transform_max_bytes: u64,
    /// Back-office batch jobs allowed to get clear values from `POST /.guichet/api/v1/reveal`.
    #[serde(default)]
    pub reveal_clients: Vec<RevealClient>,
}

/// One batch job (printing letters, sending mail) allowed to reveal fields of one activity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevealClient {
    /// Journal identifier of the job (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Hex SHA-256 of the bearer token the job sends: the configuration never holds the token.
    pub token_sha256: String,
    /// The processing activity whose fields it may reveal.
    pub activity: String,
    /// The purposes it may declare; each must be a purpose of the activity.
    pub purposes: Vec<String>,
    /// The fields it may reveal (names of the activity's encrypted fields).
    pub fields: Vec<String>,
    /// Calls allowed per minute.
    #[serde(default = "default_reveal_per_minute")]
    pub per_minute: u32,
}

fn default_reveal_per_minute() -> u32 {
    60
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
            transform_max_bytes: default_transform_max_bytes(),
            reveal_clients: Vec::new(),
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
    /// How long an HTTP/1 client connection may wait for the complete head of its next
    /// request (idle keep-alive, and the first request after the connection opens) before it
    /// is closed. 30 s: what the gateway allowed a slow head before it was configurable.
    #[serde(default = "default_keepalive_timeout", with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// The address citizens type, e.g. `https://demarches.mairie.example.fr` (no path). Sign-in
    /// redirect URIs are built from it; required when a sign-in provider is configured.
    #[serde(default)]
    pub public_url: Option<String>,
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
    /// A plain-HTTP listener that only redirects to `https://` (usually `0.0.0.0:80`).
    #[serde(default)]
    pub redirect_listen: Option<SocketAddr>,
    /// `max-age` of `Strict-Transport-Security` (two years by default, as the CNIL advises).
    #[serde(default = "default_hsts_max_age", with = "humantime_serde")]
    pub hsts_max_age: Duration,
}

impl TlsSettings {
    /// TLS with these files and every optional key at its default.
    pub fn new(cert: PathBuf, key: PathBuf, min_version: &str) -> Self {
        Self {
            cert,
            key,
            min_version: min_version.to_owned(),
            redirect_listen: None,
            hsts_max_age: default_hsts_max_age(),
        }
    }
}

fn default_hsts_max_age() -> Duration {
    Duration::from_secs(2 * 365 * 24 * 3600)
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

/// The audit journal (docs/audit.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Most entries the writer puts in one transaction.
    #[serde(default = "default_audit_batch_entries")]
    pub batch_max_entries: usize,
    /// Longest a queued (not acknowledged) entry waits for its batch to fill.
    #[serde(default = "default_audit_batch_delay", with = "humantime_serde")]
    pub batch_max_delay: Duration,
    /// A signed checkpoint every this many entries…
    #[serde(default = "default_audit_checkpoint_entries")]
    pub checkpoint_every_entries: u32,
    /// …and at least this often while entries arrive.
    #[serde(default = "default_audit_checkpoint_every", with = "humantime_serde")]
    pub checkpoint_every: Duration,
    /// Ed25519 PKCS#8 key (DER or PEM) signing checkpoints. Default:
    /// `<data_dir>/audit-signing-key.p8`, generated on first start when missing.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Directory of the checkpoint witness (`audit::witness`): a copy of every checkpoint
    /// outside the store. Default: `<data_dir>/audit-witness`.
    #[serde(default)]
    pub witness_dir: Option<PathBuf>,
    #[serde(default)]
    pub retention: AuditRetentionSettings,
}

/// How long the journal is kept (R46).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRetentionSettings {
    /// Between 6 and 12 months; longer needs `justification`.
    #[serde(default = "default_audit_keep", with = "humantime_serde")]
    pub keep: Duration,
    /// Why the journal is kept longer than 12 months (legal obligation, threat level…).
    #[serde(default)]
    pub justification: Option<String>,
    /// How often `serve` prunes.
    #[serde(default = "default_audit_prune_every", with = "humantime_serde")]
    pub prune_every: Duration,
}

impl AuditSettings {
    /// The signing key file, defaulting beside (never inside) the store.
    pub fn signing_key_path(&self, data_dir: &Path) -> PathBuf {
        self.signing_key_file.clone().unwrap_or_else(|| data_dir.join("audit-signing-key.p8"))
    }

    /// The checkpoint witness file, in its own directory beside the store.
    pub fn witness_path(&self, data_dir: &Path) -> PathBuf {
        crate::audit::witness::file_in(&self.witness_dir.clone().unwrap_or_else(|| data_dir.join("audit-witness")))
    }
}

/// Six months as humantime counts them (30.44 days each), the bottom of the CNIL window.
pub const AUDIT_KEEP_MIN: Duration = Duration::from_secs(6 * 2_630_016);
/// Twelve months, the top of the window without a justification.
pub const AUDIT_KEEP_MAX: Duration = Duration::from_secs(12 * 2_630_016);

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
    /// Explicitly declared public-without-personal-data: requests no activity claims are
    /// forwarded instead of denied (see docs/policies.md).
    #[serde(default)]
    pub no_personal_data: bool,
    /// A file holding the secret the application sends (`Authorization: Bearer …`) on its
    /// rights status callbacks (docs/rights.md). Absent: callbacks for this route are refused;
    /// the application must answer rights requests at once.
    #[serde(default)]
    pub rights_callback_secret_file: Option<PathBuf>,
    // --- Sign-in (issue 3): who may use this route and what it learns about them. ---
    /// `public` (default), `citizen` (signed-in citizen) or `agent` (signed-in agent with a role).
    #[serde(default)]
    pub access: RouteAccess,
    /// Lowest eIDAS level accepted on a `citizen` route (`eidas1` < `eidas2` < `eidas3`).
    #[serde(default)]
    pub min_acr: Option<String>,
    /// Agent roles allowed on an `agent` route (any one suffices; empty: any agent role).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Identity claims passed to this upstream as `X-Guichet-Claim-*` and in the assertion.
    #[serde(default)]
    pub claims: Vec<String>,
    /// An API: unauthenticated requests get 401 problem+json instead of a sign-in redirect.
    #[serde(default)]
    pub api: bool,
    /// What the application learns of the client's address (`Forwarded: for=`,
    /// `X-Forwarded-For`): `none` (default), `truncated` (/24, /48) or `full`. Anything but
    /// `none` needs a `client_address` category in the route's activity (docs/proxy.md).
    #[serde(default)]
    pub client_address: ClientAddress,
    /// With TLS on, `Strict-Transport-Security` on this route's responses too.
    #[serde(default)]
    pub hsts: bool,
    /// Insert the gateway's small bar ("Mes données · Se déconnecter") at the top of the
    /// application's HTML pages (docs/privacy-centre.md). Off by default.
    #[serde(default)]
    pub privacy_bar: bool,
}

/// How much of the client's address a route passes to its application (Art. 5(1)(c)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAddress {
    #[default]
    None,
    /// The network only: IPv4 /24, IPv6 /48.
    Truncated,
    Full,
}

impl ClientAddress {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Truncated => "truncated",
            Self::Full => "full",
        }
    }
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAccess {
    #[default]
    Public,
    Citizen,
    Agent,
}

/// `[auth]`: sessions, pseudonyms, assertions and the two sign-in providers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// A session ends after this long without a request.
    #[serde(default = "default_session_idle", with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    /// A session ends this long after sign-in, whatever the activity.
    #[serde(default = "default_session_absolute", with = "humantime_serde")]
    pub session_absolute_timeout: Duration,
    /// Name of the session cookie; must start with `__Host-`.
    #[serde(default = "default_cookie_name")]
    pub cookie_name: String,
    /// Secret key of the per-upstream pseudonyms (at least 32 characters). Changing it changes
    /// every pseudonym. Default: generated once and kept in the store.
    #[serde(default)]
    pub pseudonym_key: Option<SecretString>,
    /// File holding `pseudonym_key` instead.
    #[serde(default)]
    pub pseudonym_key_file: Option<PathBuf>,
    /// PEM file (PKCS#8, EC P-256) of the key signing `X-Guichet-Assertion`. Default: a key
    /// generated at start (fine for one instance; give a file when running several).
    #[serde(default)]
    pub assertion_key_file: Option<PathBuf>,
    /// Lifetime of an assertion.
    #[serde(default = "default_assertion_lifetime", with = "humantime_serde")]
    pub assertion_lifetime: Duration,
    /// PEM file (PKCS#8, EC P-256) of the key providers encrypt ID tokens and userinfo to
    /// (FranceConnect+, `encrypted_tokens = true`); its public half is in `/.guichet/jwks.json`.
    /// Default: `<data_dir>/oidc-encryption-key.pem`, created on first start when a provider
    /// encrypts. Every instance must use the same key.
    #[serde(default)]
    pub encryption_key_file: Option<PathBuf>,
    /// Clock difference tolerated with the providers on `exp`/`iat`.
    #[serde(default = "default_clock_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
    /// ID tokens issued longer ago than this are refused.
    #[serde(default = "default_max_token_age", with = "humantime_serde")]
    pub max_token_age: Duration,
    /// Citizens' provider (FranceConnect v2 style). The short form of one
    /// `[[auth.citizen_providers]]` entry; both may be given (this one comes first).
    #[serde(default)]
    pub citizen: Option<ProviderSettings>,
    /// Citizens' providers, each with the eIDAS levels it serves (`acr_values`): FranceConnect
    /// (`eidas1`) and FranceConnect+ (`eidas2`, `eidas3`) are separate providers with separate
    /// registrations. A route's `min_acr` picks the lowest provider serving that level.
    #[serde(default)]
    pub citizen_providers: Vec<ProviderSettings>,
    /// Agents' provider (ProConnect style).
    #[serde(default)]
    pub agent: Option<ProviderSettings>,
    /// How agents get roles: every matching rule grants its role.
    #[serde(default)]
    pub agent_roles: Vec<RoleRule>,
    /// The agent role that opens the DPO's register page (`/.guichet/dpo/registre`).
    #[serde(default = "default_dpo_role")]
    pub dpo_role: String,
    /// Let one agent hold the DPO role together with a role that reveals personal data or
    /// records for citizens (assisted channels). Off: the DPO role is dropped at sign-in
    /// (separation of duties, `auth::duties`).
    #[serde(default)]
    pub allow_dpo_role_combination: bool,
    /// PEM file (PKCS#8, EC P-256) of the key signing consent receipts, a key of its own (one
    /// key, one use). Default: a key generated once and kept in the store, so receipts verify
    /// on every instance and after restarts (docs/cryptography.md).
    #[serde(default)]
    pub receipt_key_file: Option<PathBuf>,
    /// PEM files of earlier receipt keys given as `receipt_key_file`: never used to sign, their
    /// public halves stay published so that receipts signed before a rotation still verify.
    #[serde(default)]
    pub retired_receipt_key_files: Vec<PathBuf>,
}

/// One OpenID Connect provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// Name of the provider in logs and pending sign-ins (letters, digits, `-`, `_`); needed
    /// in `[[auth.citizen_providers]]`, `citizen` by default in `[auth.citizen]`.
    #[serde(default)]
    pub name: Option<String>,
    /// Issuer URL, exactly as the provider writes it (discovery at `/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// `client_secret_post` (FranceConnect's) or `client_secret_basic`.
    #[serde(default = "default_auth_method")]
    pub auth_method: String,
    /// Scopes asked; `openid` is always sent.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// `acr_values` sent when the route asks for nothing higher.
    #[serde(default = "default_acr")]
    pub acr: String,
    /// The eIDAS levels this provider serves (citizens): `["eidas1"]` for FranceConnect,
    /// `["eidas2", "eidas3"]` for FranceConnect+. Empty (the default): every level.
    #[serde(default)]
    pub acr_values: Vec<String>,
    /// Send `prompt=login`.
    #[serde(default)]
    pub prompt_login: bool,
    /// Userinfo must be a signed JWT (FranceConnect v2, ProConnect); plain JSON is refused.
    #[serde(default = "default_true")]
    pub userinfo_signed: bool,
    /// The provider encrypts its ID tokens and userinfo to the gateway's key (FranceConnect+:
    /// JWE, ECDH-ES with A256GCM); unencrypted ones are then refused.
    #[serde(default)]
    pub encrypted_tokens: bool,
}

/// Grants `role` to agents whose claims match every non-empty condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    pub role: String,
    /// `siret` claim is one of these.
    #[serde(default)]
    pub siret: Vec<String>,
    /// `email` ends with `@` + one of these domains.
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// `uid` claim is one of these.
    #[serde(default)]
    pub uids: Vec<String>,
}

impl ProviderSettings {
    /// A provider with every optional key at its default and this client secret.
    pub fn new(issuer: &str, client_id: &str, client_secret: SecretString) -> Self {
        // The same default functions as the serde attributes above.
        Self {
            name: None,
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: Some(client_secret),
            client_secret_file: None,
            auth_method: default_auth_method(),
            scopes: default_scopes(),
            acr: default_acr(),
            acr_values: Vec::new(),
            prompt_login: false,
            userinfo_signed: default_true(),
            encrypted_tokens: false,
        }
    }
}

impl RouteSettings {
    /// A route with every optional key at its default (public, no limits beyond the server's).
    pub fn new(name: &str, path_prefix: &str, upstream: &str) -> Self {
        let mut t = toml::Table::new();
        t.insert("name".into(), name.into());
        t.insert("path_prefix".into(), path_prefix.into());
        t.insert("upstream".into(), upstream.into());
        // Defaults live in the serde attributes; deserialising keeps them in one place.
        t.try_into().unwrap_or_else(|_| unreachable!("name, prefix and upstream are all a route needs"))
    }
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
default_from_serde!(
    Settings,
    ServerSettings,
    AdminSettings,
    StoreSettings,
    LogSettings,
    AuditSettings,
    AuditRetentionSettings,
    AuthSettings,
    PolicySettings,
    ConsentSettings,
    RightsSettings,
    NotifySettings
);

fn default_transform_max_bytes() -> u64 {
    crate::proxy::fields::DEFAULT_TRANSFORM_MAX_BYTES
}

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
fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(30)
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
fn default_session_idle() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_session_absolute() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_dpo_role() -> String {
    "dpo".to_owned()
}

fn default_cookie_name() -> String {
    "__Host-guichet-session".to_owned()
}
fn default_assertion_lifetime() -> Duration {
    Duration::from_secs(300)
}
fn default_clock_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_max_token_age() -> Duration {
    Duration::from_secs(600)
}
fn default_auth_method() -> String {
    "client_secret_post".to_owned()
}
fn default_scopes() -> Vec<String> {
    vec!["openid".to_owned()]
}
fn default_acr() -> String {
    "eidas1".to_owned()
}
fn default_policy_dir() -> PathBuf {
    PathBuf::from("policies")
}
fn default_audit_batch_entries() -> usize {
    256
}
fn default_audit_batch_delay() -> Duration {
    Duration::from_millis(20)
}
fn default_audit_checkpoint_entries() -> u32 {
    1000
}
fn default_audit_checkpoint_every() -> Duration {
    Duration::from_secs(300)
}
fn default_audit_keep() -> Duration {
    AUDIT_KEEP_MIN
}
fn default_audit_prune_every() -> Duration {
    Duration::from_secs(3600)
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

    /// Like [`Loaded::load`], but past the file's unknown keys and wrong types: the
    /// configuration without them, and them as problems (for `guichet check`).
    pub fn load_lenient<I>(path: Option<&Path>, env: I) -> Result<(Self, Vec<Problem>), ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        source::load_lenient(path, env)
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
    pub auth_secrets: AuthSecrets,
    /// `notify.smtp_password`, from the settings or `notify.smtp_password_file`.
    pub smtp_password: Option<SecretString>,
    /// Where each key came from, for checks that run after validation (`policy::bindings`).
    pub source: SourceMap,
}

/// Sign-in secrets, read from the settings or their `*_file` variants.
#[derive(Debug, Clone, Default)]
pub struct AuthSecrets {
    pub pseudonym_key: Option<SecretString>,
    pub citizen_client_secret: Option<SecretString>,
    pub agent_client_secret: Option<SecretString>,
    /// The client secrets of `auth.citizen_providers`, in the same order.
    pub citizen_providers_client_secrets: Vec<Option<SecretString>>,
}

/// The name `[auth.citizen]` takes among the citizen providers when it has none.
pub const DEFAULT_CITIZEN_PROVIDER: &str = "citizen";

impl AuthSettings {
    /// Whether any provider encrypts its tokens to the gateway (FranceConnect+).
    pub fn needs_decryption_key(&self) -> bool {
        self.citizen_providers().iter().any(|(_, _, p)| p.encrypted_tokens)
            || self.agent.as_ref().is_some_and(|p| p.encrypted_tokens)
    }

    /// Where the key providers encrypt to is read (or created).
    pub fn encryption_key_path(&self, data_dir: &Path) -> PathBuf {
        self.encryption_key_file.clone().unwrap_or_else(|| data_dir.join("oidc-encryption-key.pem"))
    }

    /// Every citizen provider with its name and its place in the configuration: `[auth.citizen]`
    /// first, then `[[auth.citizen_providers]]`.
    pub fn citizen_providers(&self) -> Vec<(String, String, &ProviderSettings)> {
        let single = self.citizen.iter().map(|p| {
            let name = p.name.clone().unwrap_or_else(|| DEFAULT_CITIZEN_PROVIDER.to_owned());
            (name, "auth.citizen".to_owned(), p)
        });
        let listed = self
            .citizen_providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone().unwrap_or_default(), format!("auth.citizen_providers[{i}]"), p));
        single.chain(listed).collect()
    }

    pub fn has_citizen_provider(&self) -> bool {
        self.citizen.is_some() || !self.citizen_providers.is_empty()
    }
}
