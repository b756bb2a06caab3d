//! The test harness: `spawn_app` starts the real gateway (same build path as `serve`) on port
//! 0 with a fresh store, in front of a real in-process HTTP upstream that records what it
//! receives.

use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::StreamExt;
use guichet::app::{AppState, Application, Deps};
use guichet::clock::{FixedClock, SystemRandom};
use guichet::config::{Loaded, RouteAccess, RouteSettings, Settings};
use secrecy::SecretString;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Which store engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod NAME { sqlite(), postgres() }` running `NAME(Backend)` on both engines.
/// The PostgreSQL variant is reported as ignored, with the reason, when TEST_DATABASE_URL
/// was not set at build time.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await;
            }
            #[tokio::test]
            #[cfg_attr(not(guichet_pg_tests), ignore = "PostgreSQL store test: set TEST_DATABASE_URL to run it")]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await;
            }
        }
    )*};
}

pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if std::env::var_os("TEST_LOG").is_some() {
            guichet::telemetry::init(&guichet::config::LogSettings {
                format: guichet::config::LogFormat::Pretty,
                level: "debug".into(),
            });
        }
    });
}

/// A store URL for a fresh, empty store on `backend`: a new SQLite file, or a new schema in
/// the TEST_DATABASE_URL database.
pub async fn fresh_store_url(backend: Backend, dir: &std::path::Path) -> SecretString {
    match backend {
        Backend::Sqlite => SecretString::from(format!("sqlite://{}", dir.join("guichet.db").display())),
        Backend::Postgres => {
            let base = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL must be set for PostgreSQL tests");
            let schema = format!("t_{}", guichet::clock::random_hex::<8>(&SystemRandom::new()).unwrap());
            let admin = sqlx::PgPool::connect(&base).await.expect("cannot reach TEST_DATABASE_URL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await.unwrap();
            admin.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            SecretString::from(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
        }
    }
}

pub struct TestApp {
    /// The injected clock: tests move time with `advance`.
    pub clock: FixedClock,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub state: AppState,
    pub upstream: TestUpstream,
    pub client: reqwest::Client,
    /// The policy directory the app reads (empty unless `with_policies` wrote files).
    pub policies_dir: PathBuf,
    /// The store this instance uses (to start another instance on it).
    pub store_url: SecretString,
    shutdown: watch::Sender<bool>,
    /// The serving task (`run_until_stopped`), to wait for a complete stop.
    serving: Option<tokio::task::JoinHandle<()>>,
    _dir: TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Builds a test application; by default one route `app` at `/` to the test upstream.
type Tweak = Box<dyn FnOnce(&mut Settings, SocketAddr)>;

pub struct TestAppBuilder {
    backend: Backend,
    tweak: Vec<Tweak>,
    default_route: bool,
    policies: Vec<(String, String)>,
    policy_watch: bool,
    store_url: Option<SecretString>,
}

pub fn spawn_app() -> TestAppBuilder {
    TestAppBuilder {
        backend: Backend::Sqlite,
        tweak: Vec::new(),
        default_route: true,
        policies: Vec::new(),
        policy_watch: false,
        store_url: None,
    }
}

impl TestAppBuilder {
    pub fn backend(mut self, b: Backend) -> Self {
        self.backend = b;
        self
    }

    /// Changes the settings before start; gets the test upstream's address.
    pub fn with(mut self, f: impl FnOnce(&mut Settings, SocketAddr) + 'static) -> Self {
        self.tweak.push(Box::new(f));
        self
    }

    pub fn without_default_route(mut self) -> Self {
        self.default_route = false;
        self
    }

    /// Writes these policy files (name, TOML text) into the app's policy directory.
    pub fn with_policies(mut self, files: &[(&str, &str)]) -> Self {
        self.policies.extend(files.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())));
        self
    }

    /// Uses this store instead of a fresh one (several instances on one store).
    pub fn with_store_url(mut self, url: SecretString) -> Self {
        self.store_url = Some(url);
        self
    }

    /// Starts the policy reloader (SIGHUP and file watching), as `serve` does.
    pub fn with_policy_watch(mut self) -> Self {
        self.policy_watch = true;
        self
    }

    pub async fn start(self) -> TestApp {
        init();
        let upstream = TestUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut loaded = Loaded::defaults();
        let s = &mut loaded.settings;
        s.data_dir = dir.path().to_owned();
        s.server.listen = "127.0.0.1:0".parse().unwrap();
        s.admin.listen = "127.0.0.1:0".parse().unwrap();
        s.server.shutdown_grace = Duration::from_secs(1);
        let policies_dir = dir.path().join("policies");
        std::fs::create_dir_all(&policies_dir).unwrap();
        for (name, text) in &self.policies {
            std::fs::write(policies_dir.join(name), text).unwrap();
        }
        s.policy.dir = policies_dir.clone();
        if self.default_route {
            // Declared without personal data, so tests that are not about policies forward
            // everything; activities still claim what they cover.
            s.routes.push(route("app", "/", &format!("http://{}", upstream.addr)));
        }
        for f in self.tweak {
            f(s, upstream.addr);
        }
        let mut config = loaded.validate().expect("test configuration must be valid");
        config.store_url = match self.store_url {
            Some(url) => url,
            None => fresh_store_url(self.backend, dir.path()).await,
        };
        let store_url = config.store_url.clone();
        let clock = FixedClock::at(time::macros::datetime!(2026-11-28 12:00 UTC));
        let deps = Deps { clock: Arc::new(clock.clone()), random: Arc::new(SystemRandom::new()) };
        let app = Application::build(config, deps).await.expect("the gateway must start");
        let addr = app.public_addr();
        let admin = app.admin_addr();
        let state = app.state();
        let shutdown = app.shutdown_handle();
        if self.policy_watch {
            guichet::app::spawn_policy_reloader(state.clone(), shutdown.subscribe());
        }
        let serving = Some(tokio::spawn(app.run_until_stopped()));
        // Idle connections are dropped well before the gateway's keep-alive timeout (30 s): a
        // connection reused just as the server closes it would fail a test for nothing.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        TestApp { clock, addr, admin, state, upstream, client, policies_dir, store_url, shutdown, serving, _dir: dir }
    }
}

impl TestAppBuilder {
    /// Signs citizens in through the provider at `issuer` (see `oidc_mock`), and adds the
    /// citizen routes `/prive` and `/autre` (two upstream names), `/fort` (eidas2) and the
    /// API route `/api`.
    pub fn with_citizen_provider(self, issuer: String) -> Self {
        self.with(move |s, up| {
            s.server.public_url = Some("http://127.0.0.1".into());
            s.auth.citizen = Some(provider(&issuer));
            let up = format!("http://{up}");
            let claims = vec!["given_name".to_owned(), "family_name".to_owned(), "birthdate".to_owned()];
            let mut prive = route("prive", "/prive", &up);
            prive.access = RouteAccess::Citizen;
            prive.claims = claims;
            let mut autre = route("autre", "/autre", &up);
            autre.access = RouteAccess::Citizen;
            let mut fort = route("fort", "/fort", &up);
            fort.access = RouteAccess::Citizen;
            fort.min_acr = Some("eidas2".into());
            let mut api = route("api", "/api", &up);
            api.access = RouteAccess::Citizen;
            api.api = true;
            s.routes.extend([prive, autre, fort, api]);
        })
    }

    /// Signs agents in through the provider at `issuer`; `/agents` needs the role
    /// `etat-civil` (SIRET 21750001600019 and an `@mairie.example.fr` email).
    pub fn with_agent_provider(self, issuer: String) -> Self {
        self.with(move |s, up| {
            s.server.public_url = Some("http://127.0.0.1".into());
            s.auth.agent = Some(provider(&issuer));
            s.auth.agent_roles.push(guichet::config::RoleRule {
                role: "etat-civil".into(),
                siret: vec!["21750001600019".into()],
                email_domains: vec!["mairie.example.fr".into()],
                uids: vec![],
            });
            let mut agents = route("agents", "/agents", &format!("http://{up}"));
            agents.access = RouteAccess::Agent;
            agents.roles = vec!["etat-civil".into()];
            agents.claims = vec!["usual_name".into(), "email".into()];
            s.routes.push(agents);
        })
    }
}

fn provider(issuer: &str) -> guichet::config::ProviderSettings {
    guichet::config::ProviderSettings {
        scopes: vec!["openid".into(), "identite_pivot".into()],
        ..guichet::config::ProviderSettings::new(
            issuer,
            crate::oidc_mock::CLIENT_ID,
            SecretString::from(crate::oidc_mock::CLIENT_SECRET),
        )
    }
}

/// An app whose only route sends everything to `upstream` (tests with a special upstream).
pub async fn spawn_app_before(upstream: SocketAddr) -> TestApp {
    let base = format!("http://{upstream}");
    spawn_app().without_default_route().with(move |s, _| s.routes.push(route("special", "/", &base))).start().await
}

/// A route to `upstream`, declared without personal data so that tests not about policies
/// forward everything; policy tests set `no_personal_data = false`.
pub fn route(name: &str, prefix: &str, upstream: &str) -> RouteSettings {
    RouteSettings { no_personal_data: true, ..RouteSettings::new(name, prefix, upstream) }
}

impl TestApp {
    /// Stops the gateway and waits until it has (its journal committed and its writer
    /// stopped, its jobs ended): nothing of it holds a lock on the store afterwards. Dropping
    /// it only asks it to stop; a test that then blocks its thread freezes the stopping
    /// gateway, on the test's own runtime, in the middle of whatever it was writing.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(serving) = self.serving.take() {
            tokio::time::timeout(Duration::from_secs(30), serving)
                .await
                .expect("the gateway did not stop within 30 s")
                .unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// The admin listener's /metrics text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.admin.unwrap());
        self.client.get(url).send().await.unwrap().text().await.unwrap()
    }

    /// Sends raw bytes on a new connection and returns everything the gateway answers.
    pub async fn raw(&self, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
}

/// A real HTTP server standing for the application behind the gateway.
#[derive(Clone)]
pub struct TestUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl TestUpstream {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/count", any(count_body))
            .route("/download/{bytes}", get(download))
            .route("/slow", any(slow))
            .route("/stall-body", get(stall_body))
            .route("/hop", get(hop_headers))
            .route("/ws", get(ws_echo))
            .fallback(echo)
            .layer(axum::middleware::from_fn_with_state(received.clone(), record))
            .with_state(received.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, received }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn hits(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn last(&self) -> Received {
        self.received().last().cloned().expect("the upstream received nothing")
    }
}

type Log = Arc<Mutex<Vec<Received>>>;

async fn record(State(log): State<Log>, req: Request, next: axum::middleware::Next) -> Response {
    let r = Received {
        method: req.method().to_string(),
        path_and_query: req.uri().path_and_query().map(ToString::to_string).unwrap_or_default(),
        headers: req.headers().clone(),
    };
    log.lock().unwrap().push(r);
    next.run(req).await
}

/// Answers with the request's method, path and headers as JSON.
async fn echo(req: Request) -> Response {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .keys()
        .map(|k| {
            let vals: Vec<String> =
                req.headers().get_all(k).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
            (k.as_str().to_owned(), serde_json::json!(vals))
        })
        .collect();
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(ToString::to_string),
        "headers": headers,
    });
    axum::Json(body).into_response()
}

/// Reads the body as a stream and answers how many bytes arrived.
async fn count_body(req: Request) -> Response {
    let mut stream = req.into_body().into_data_stream();
    let mut n: u64 = 0;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => n += c.len() as u64,
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    }
    axum::Json(serde_json::json!({ "bytes": n })).into_response()
}

/// Streams `bytes` zero bytes in 64 KiB chunks.
async fn download(Path(bytes): Path<u64>) -> Response {
    const CHUNK: usize = 64 * 1024;
    let chunk = bytes::Bytes::from(vec![0u8; CHUNK]);
    let full = bytes / CHUNK as u64;
    let rest = usize::try_from(bytes % CHUNK as u64).unwrap();
    let stream = futures_util::stream::iter((0..full).map(move |_| Ok::<_, std::io::Error>(chunk.clone())))
        .chain(futures_util::stream::iter((rest > 0).then(|| Ok(bytes::Bytes::from(vec![0u8; rest])))));
    Response::builder().header("content-length", bytes).body(Body::from_stream(stream)).unwrap()
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(10)).await;
    "too late"
}

/// Sends a first chunk, then nothing.
async fn stall_body() -> Response {
    let stream = futures_util::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"first")) })
        .chain(futures_util::stream::pending());
    Response::new(Body::from_stream(stream))
}

/// A response carrying hop-by-hop headers the gateway must not pass on.
async fn hop_headers() -> Response {
    Response::builder()
        .header("connection", "x-private-hop")
        .header("x-private-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authenticate", "Basic")
        .header("trailer", "x-checksum")
        .header("x-end-to-end", "kept")
        .body(Body::from("hop"))
        .unwrap()
}

async fn ws_echo(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            let reply = match msg {
                Message::Text(t) => Message::Text(format!("echo: {}", t.as_str()).into()),
                Message::Binary(b) => Message::Binary(b),
                // The next recv() answers the close frame and ends the stream.
                Message::Close(_) => continue,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

/// An address where nothing listens.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// The gateway binary running as a child process; killed when dropped, even if the test fails.
pub struct GatewayProcess {
    child: Child,
    pub addr: SocketAddr,
    log_path: PathBuf,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GatewayProcess {
    /// Starts `guichet serve` with a configuration routing `/` to `upstream`, JSON logs at
    /// `log_level` captured in a file, and waits until it answers its liveness probe.
    pub async fn start(dir: &FsPath, upstream: SocketAddr, log_level: &str) -> Self {
        Self::start_with(dir, upstream, log_level, "").await
    }

    /// Like [`start`](Self::start), with `extra` TOML (sections and routes) appended. A port
    /// chosen free can be taken by another test's socket before the gateway binds it: the
    /// gateway then exits saying so, and starts again on another port.
    pub async fn start_with(dir: &FsPath, upstream: SocketAddr, log_level: &str, extra: &str) -> Self {
        let mut attempt = 1;
        loop {
            let mut gw = Self::spawn(dir, upstream, log_level, extra);
            match gw.until_live().await {
                Ok(()) => return gw,
                Err(log) if attempt < 5 && log.contains("Address already in use") => attempt += 1,
                Err(log) => panic!("the gateway exited before answering:\n{log}"),
            }
        }
    }

    fn spawn(dir: &FsPath, upstream: SocketAddr, log_level: &str, extra: &str) -> Self {
        let addr = free_port();
        let config = dir.join("guichet.toml");
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let toml = format!(
            r#"version = 1
data_dir = {data_dir:?}

[server]
listen = "{addr}"
public_url = "http://127.0.0.1"
max_body_bytes = 2147483648

[admin]
enabled = false

[log]
format = "json"
level = "{log_level}"

[policy]
dir = {policy_dir:?}

[[routes]]
name = "app"
path_prefix = "/"
upstream = "http://{upstream}"
no_personal_data = true

{extra}
"#,
            data_dir = data_dir.display().to_string(),
            policy_dir = dir.join("policies").display().to_string(),
        );
        std::fs::write(&config, toml).unwrap();
        let log_path = dir.join("gateway.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_guichet"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env_remove("GUICHET_CONFIG")
            .stdin(Stdio::null())
            .env_remove("GUICHET_LOG")
            .env_remove("RUST_LOG")
            .env_remove("MIMALLOC_ALLOW_THP")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child, addr, log_path }
    }

    pub async fn wait_until_live(&mut self) {
        if let Err(log) = self.until_live().await {
            panic!("the gateway exited before answering:\n{log}");
        }
    }

    /// Waits for the liveness probe; `Err` with the process's log when it exited first.
    async fn until_live(&mut self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let url = format!("http://{}/.guichet/health/live", self.addr);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.child.try_wait().unwrap().is_some() {
                return Err(self.log());
            }
            if let Ok(r) = client.get(&url).timeout(Duration::from_secs(1)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "the gateway did not answer {url} within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Peak resident memory of the gateway process so far, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_kib("VmHWM") * 1024
    }

    /// Resident memory of the gateway process now, in bytes.
    pub fn rss(&self) -> u64 {
        self.status_kib("VmRSS") * 1024
    }

    /// Resident memory once it has stopped moving (three equal readings 100 ms apart, or the
    /// last reading after 3 s): the gateway's own start-up work, slower while other tests run,
    /// must not count as the cost of what a test measures.
    pub async fn settled_rss(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut last = self.rss();
        let mut same = 0;
        while same < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.rss();
            same = if now == last { same + 1 } else { 0 };
            last = now;
        }
        last
    }

    /// A line of `/proc/<pid>/status`, the text after `key:`.
    pub fn status(&self, key: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let prefix = format!("{key}:");
        let line = status.lines().find(|l| l.starts_with(&prefix));
        line.unwrap_or_else(|| panic!("no {key} in /proc/<pid>/status")).trim_start_matches(&prefix).trim().to_owned()
    }

    fn status_kib(&self, key: &str) -> u64 {
        self.status(key).trim_end_matches("kB").trim().parse().unwrap()
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A fresh, migrated store on `backend`, its URL (to open a second connection to the same
/// store) and the directory holding it.
pub async fn open_migrated_store(backend: Backend) -> (guichet::store::Store, SecretString, TempDir) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_store_url(backend, dir.path()).await;
    let store = guichet::store::Store::connect(&url, &guichet::store::StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    (store, url, dir)
}

/// Runs one SQL statement directly against the store at `url`, bypassing the gateway: what an
/// intruder with database access could do.
pub async fn raw_sql(url: &SecretString, sql: &str) {
    use secrecy::ExposeSecret;
    let url = url.expose_secret();
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

/// Every row `sql` returns, as (column name, text value) pairs: the text columns only
/// (NULLs and other types are left out), as someone reading a copy of the store would see them.
pub async fn text_rows(url: &SecretString, sql: &str) -> Vec<Vec<(String, String)>> {
    use secrecy::ExposeSecret;
    let url = url.expose_secret();
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.iter().map(texts).collect()
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.iter().map(texts).collect()
    }
}

fn texts<R>(r: &R) -> Vec<(String, String)>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    use sqlx::Column as _;
    r.columns()
        .iter()
        .filter_map(|c| r.try_get::<Option<String>, _>(c.ordinal()).ok().flatten().map(|v| (c.name().to_owned(), v)))
        .collect()
}

/// Runs `sql` as an intruder with SQL access to the store would: through the bypass the
/// retention path uses, which the append-only triggers let pass (anyone who can write SQL can
/// open it; what catches such edits is `audit verify` and the signatures).
pub async fn intruder_sql(url: &SecretString, sql: &str) {
    use secrecy::ExposeSecret;
    let url = url.expose_secret();
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT set_config('guichet.retention', 'on', true)").execute(&mut *tx).await.unwrap();
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO retention_gate (id) VALUES (1)").execute(&mut *tx).await.unwrap();
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
        sqlx::query("DELETE FROM retention_gate").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        pool.close().await;
    }
}

/// Runs `sql` as plain SQL and returns the database's error, if it refused it.
pub async fn try_sql(url: &SecretString, sql: &str) -> Option<String> {
    use secrecy::ExposeSecret;
    let url = url.expose_secret();
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    let r = if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let r = sqlx::query(sql).execute(&pool).await.map(drop);
        pool.close().await;
        r
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let r = sqlx::query(sql).execute(&pool).await.map(drop);
        pool.close().await;
        r
    };
    r.err().map(|e| e.to_string())
}

/// A keyring and its age identity in `dir`, made through the same public functions as
/// `guichet keys init` (test keys live only in the test's temporary directory).
pub fn test_keys(dir: &FsPath) -> guichet::config::KeysSettings {
    let mut k = guichet::config::KeysSettings::at(dir.join("keyring.age"));
    let identity = dir.join("keyring-identity.txt");
    let at = time::macros::datetime!(2026-11-28 12:00 UTC);
    guichet::crypto::keyring::write_new_identity(&identity, at).unwrap();
    k.identity_file = Some(identity);
    guichet::crypto::Keyring::generate(&SystemRandom::new(), at).unwrap().create(&k).unwrap();
    k
}

/// Reads from `io` into `buf` until `buf` holds a whole request head; the head's length, or
/// `None` when the peer closed first (the bare upstreams of the proxy and TLS tests).
pub async fn read_head(io: &mut (impl tokio::io::AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(chunk.get(..k)?),
        }
    }
}

/// The shipped policy with strict mode off: tests of field protection and parser limits send
/// undeclared members on purpose, to show what reaches the application when a deployment has
/// not turned strict mode on yet (strict mode itself is tested in `minimise`).
pub fn lenient(policy: &str) -> String {
    let lenient = policy.replacen("\nstrict = true\n", "\nstrict = false\n", 1);
    assert_ne!(lenient, policy, "the policy declares strict mode");
    lenient
}

/// Runs `guichet ARGS` as an operator would, on `app`'s store, and returns what it printed.
/// Awaited, not blocking: the instance under test shares this test's runtime, and a blocked
/// runtime would freeze one of its SQLite transactions mid-way, holding the write lock the
/// command needs.
pub async fn admin_command(app: &TestApp, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("guichet.toml");
    let toml = format!(
        "version = 1\ndata_dir = {data:?}\n\n[store]\nurl = {url:?}\n\n[[routes]]\nname = \"app\"\n\
         path_prefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nno_personal_data = true\n",
        data = dir.path().display().to_string(),
        url = secrecy::ExposeSecret::expose_secret(&app.store_url),
    );
    std::fs::write(&config, toml).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .env_remove("GUICHET_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
