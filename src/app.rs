//! Application assembly: every service built once from the validated configuration, then the
//! listeners bound. Tests take exactly this path (with port 0 and an injected clock).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::clock::{Clock, Random, SystemClock, SystemRandom};
use crate::config::{KeysSettings, Settings, Validated};
use crate::crypto::{Keyring, Vault};
use crate::metrics::Metrics;
use crate::proxy::{Proxy, Upstreams};
use crate::server::{self, ConnLimits};
use crate::store::{Store, StoreOptions};
use crate::tls;

/// All services, shared by every request.
#[derive(Debug)]
pub struct App {
    pub settings: Settings,
    pub store: Store,
    /// Field encryption, pseudonyms and crypto-shredding; `None` without a `[keys]` section.
    pub crypto: Option<Arc<Vault>>,
    pub proxy: Proxy,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
}

pub type AppState = Arc<App>;

/// What the application gets from outside, so tests can substitute time and randomness.
#[derive(Debug, Clone)]
pub struct Deps {
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
}

impl Default for Deps {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock), random: Arc::new(SystemRandom::new()) }
    }
}

/// A built application: listeners bound, not yet serving.
pub struct Application {
    app: AppState,
    public: TcpListener,
    admin: Option<TcpListener>,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Sender<bool>,
}

impl Application {
    /// Opens the store (migrating it when configured), builds the services and binds the
    /// listeners. Port 0 is allowed; read the real ports with `public_addr`/`admin_addr`.
    pub async fn build(config: Validated, deps: Deps) -> anyhow::Result<Self> {
        let s = &config.settings;
        let store_opts =
            StoreOptions { max_connections: s.store.max_connections, acquire_timeout: s.store.acquire_timeout };
        let store = Store::connect(&config.store_url, &store_opts).await.context("cannot open the store")?;
        if s.store.migrate_on_start {
            let n = store.migrate().await.context("cannot migrate the store")?;
            if n > 0 {
                tracing::info!(applied = n, engine = store.engine().name(), "store migrated");
            }
        }
        let crypto = match &s.keys {
            Some(k) => Some(Arc::new(open_vault(k, &store, &deps).await?)),
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        let upstreams = Upstreams::build(&config.routes).context("cannot prepare upstream TLS")?;
        let proxy = Proxy::new(
            config.routes.clone(),
            upstreams,
            s.server.trusted_proxies.clone(),
            s.server.max_header_bytes,
            metrics.clone(),
        );
        let tls = match &s.server.tls {
            Some(t) => Some(TlsAcceptor::from(Arc::new(
                tls::server_config(&t.cert, &t.key, &t.min_version).context("cannot set up TLS")?,
            ))),
            None => None,
        };
        let public = bind(s.server.listen, "server.listen").await?;
        let admin = match s.admin.enabled {
            true => Some(bind(s.admin.listen, "admin.listen").await?),
            false => None,
        };
        let app = Arc::new(App {
            settings: config.settings,
            store,
            crypto,
            proxy,
            metrics,
            clock: deps.clock,
            random: deps.random,
        });
        let (shutdown, _) = watch::channel(false);
        Ok(Self { app, public, admin, tls, shutdown })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public.local_addr().unwrap_or_else(|_| self.app.settings.server.listen)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> AppState {
        self.app.clone()
    }

    /// A handle that stops the server gracefully when sent `true`.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Serves until the shutdown handle fires.
    pub async fn run_until_stopped(self) {
        let s = &self.app.settings.server;
        let limits = ConnLimits {
            max_header_bytes: s.max_header_bytes,
            header_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
        };
        let grace = s.shutdown_grace;
        let public_router = server::router::public(self.app.clone());
        let public = server::serve(self.public, self.tls, public_router, limits, self.shutdown.subscribe(), grace);
        match self.admin {
            Some(admin) => {
                let admin_router = server::router::admin(self.app.clone());
                let admin = server::serve(admin, None, admin_router, limits, self.shutdown.subscribe(), grace);
                tokio::join!(public, admin);
            }
            None => public.await,
        }
    }
}

/// Opens the keyring (refusing to start when it cannot) and re-destroys the keys listed in
/// tombstones, in case the store was restored from a backup older than a shred.
async fn open_vault(k: &KeysSettings, store: &Store, deps: &Deps) -> anyhow::Result<Vault> {
    let keyring = Keyring::open(k).context("cannot open the keyring (`keys` section)")?;
    let vault = Vault::new(keyring, store.clone(), k, deps.clock.clone(), deps.random.clone());
    vault.reconcile().await.context("cannot reconcile destroyed data keys with the store")?;
    Ok(vault)
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (`{key}`)"))
}
