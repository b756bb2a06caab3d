//! Application assembly: every service built once from the validated configuration, then the
//! listeners bound. Tests take exactly this path (with port 0 and an injected clock).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::audit::{Audit, AuditEvent, Operation, Signer, SinkSettings};
use crate::auth::Auth;
use crate::clock::{Clock, Random, SystemClock, SystemRandom};
use crate::config::{AuditSettings, KeysSettings, Settings, Validated};
use crate::consent::ConsentService;
use crate::crypto::{Keyring, Vault};
use crate::metrics::{ChangeLabels, Metrics, ReloadLabels};
use crate::policy::{self, PolicyError, PolicySet, PolicySource};
use crate::proxy::fields::{DEFAULT_TRANSFORM_MAX_BYTES, FieldSettings};
use crate::proxy::{Proxy, Upstreams};
use crate::server::{self, ConnLimits};
use crate::store::{Change, Heard, Store, StoreOptions};
use crate::tls;

/// All services, shared by every request.
#[derive(Debug)]
pub struct App {
    pub settings: Settings,
    pub store: Store,
    pub auth: Arc<Auth>,
    pub audit: Arc<Audit>,
    /// Field encryption, pseudonyms and crypto-shredding; `None` without a `[keys]` section.
    pub crypto: Option<Arc<Vault>>,
    /// The consent ledger (recorded through `audit`), shared with the proxy's consent phase.
    pub consent: Arc<ConsentService>,
    pub proxy: Proxy,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub request_ids: crate::server::middleware::RequestIds,
    /// Calls per minute of each batch-reveal client (`POST /.guichet/api/v1/reveal`).
    pub reveal_limiter: crate::crypto::batch::RateLimiter,
    /// The active processing activities, shared with the proxy; replaced whole on reload.
    pub policies: Arc<ArcSwap<PolicySet>>,
    /// Where the policies are read from, again on each reload.
    pub policy_source: PolicySource,
    /// Data-subject rights requests (GDPR Art. 15–21).
    pub rights: Arc<crate::rights::service::RightsService>,
    /// Access and portability exports (built at once, kept sealed until their link expires).
    pub exports: Arc<crate::rights::export::Exports>,
    /// The one durable job runner (propagation, notices, retention runs, alerts); handlers are
    /// registered by `register_job_handlers` once the services exist.
    pub jobs: Arc<crate::jobs::Jobs>,
    /// The client that delivers rights requests to the applications' rights endpoints.
    pub rights_http: crate::auth::http::HttpClient,
    /// The one notification channel (e-mail through SMTP, the demo outbox, printable letters).
    pub notify: Arc<crate::notify::NotifyService>,
    /// Retention clocks, phases and holds (docs/retention.md).
    pub retention: Arc<crate::retention::RetentionService>,
    /// Citizens' last requests per activity, written off the hot path.
    pub retention_recorder: Arc<crate::retention::record::Recorder>,
}

impl App {
    /// Deletes sign-ins and logouts that were never finished and sessions long past their
    /// absolute timeout, as of the injected clock (run periodically by `serve`).
    pub async fn purge_expired_sign_ins(&self) -> Result<(), crate::store::StoreError> {
        self.store.sessions().purge(self.clock.now()).await
    }

    /// Reads, validates and applies the policy set again. An invalid set is refused and the
    /// active one stays; either way the outcome is logged and counted. Requests already in
    /// flight keep the set they started with.
    pub fn reload_policies(&self) -> Result<(), PolicyError> {
        let outcome = policy::load(&self.policy_source, self.proxy.routes(), &self.settings.routes);
        let label = if outcome.is_ok() { "applied" } else { "refused" };
        self.metrics.policy_reloads.get_or_create(&ReloadLabels { outcome: label }).inc();
        match outcome {
            Ok(set) => {
                tracing::info!(activities = set.activities.len(), "policies reloaded");
                self.journal_policy_reload(&set);
                self.policies.store(Arc::new(set));
                Ok(())
            }
            Err(e) => {
                // Problems name files, lines and keys of the policies, never request data.
                tracing::warn!(problems = %e, "new policies refused; the previous ones stay active");
                Err(e)
            }
        }
    }
}

impl App {
    /// Journals an applied policy reload with the new set's version (queued, not awaited).
    fn journal_policy_reload(&self, set: &PolicySet) {
        let Ok(version) = crate::audit::Ident::new(policy_set_version(set)) else { return };
        let event = AuditEvent::system(Operation::PolicyReload { policy_version: version }, self.clock.now());
        if let Err(e) = self.audit.try_record(event) {
            tracing::warn!(error = %e, "cannot journal the policy reload");
        }
    }
}

/// The version of a whole policy set: the first 16 hex digits of the SHA-256 over its
/// activities' versions (`consent::policy_version`), in id order.
pub fn policy_set_version(set: &PolicySet) -> String {
    let joined: Vec<String> = set.activities.iter().map(|a| crate::consent::policy_version(a)).collect();
    crate::consent::sha256_hex(&joined.join(",")).chars().take(16).collect()
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
    /// The plain-HTTP listener that only redirects to HTTPS (`server.tls.redirect_listen`).
    redirect: Option<TcpListener>,
}

impl Application {
    /// Opens the store (migrating it when configured), builds the services and binds the
    /// listeners. Port 0 is allowed; read the real ports with `public_addr`/`admin_addr`.
    pub async fn build(config: Validated, deps: Deps) -> anyhow::Result<Self> {
        let source = PolicySource::Dir(config.settings.policy.dir.clone());
        Self::build_with_policies(config, deps, source).await
    }

    /// Like [`build`](Self::build), reading the policies from `policy_source` (the demo
    /// falls back to the embedded examples). Refuses to build on an invalid policy set.
    pub async fn build_with_policies(
        config: Validated,
        deps: Deps,
        policy_source: PolicySource,
    ) -> anyhow::Result<Self> {
        let s = &config.settings;
        crate::pages::install_commune(&s.commune);
        let policies = policy::load(&policy_source, &config.routes, &s.routes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let policies = Arc::new(ArcSwap::from_pointee(policies));
        let store_opts =
            StoreOptions { max_connections: s.store.max_connections, acquire_timeout: s.store.acquire_timeout };
        let store = Store::connect(&config.store_url, &store_opts).await.context("cannot open the store")?;
        if s.store.migrate_on_start {
            let n = store.migrate().await.context("cannot migrate the store")?;
            if n > 0 {
                tracing::info!(applied = n, engine = store.engine().name(), "store migrated");
            }
        }
        let auth = Arc::new(
            Auth::build(&config, store.clone(), deps.clock.clone(), deps.random.clone())
                .await
                .context("cannot prepare sign-in")?,
        );
        let audit = Arc::new(start_audit(&store, s, deps.clock.clone()).await?);
        let crypto = match &s.keys {
            Some(k) => Some(Arc::new(open_vault(k, &store, &deps).await?)),
            None => None,
        };
        let rights = Arc::new(crate::rights::service::RightsService::new(
            store.clone(),
            audit.clone(),
            deps.clock.clone(),
            deps.random.clone(),
        ));
        let exports =
            Arc::new(crate::rights::export::Exports::new(store.clone(), deps.clock.clone(), deps.random.clone()));
        exports.set_source(rights.clone());
        let jobs = Arc::new(
            crate::jobs::Jobs::new(store.clone(), deps.clock.clone(), deps.random.clone())
                .context("cannot start the job runner")?
                .with_lease(s.jobs.lease),
        );
        let notify = Arc::new(crate::notify::NotifyService::new(
            store.clone(),
            jobs.clone(),
            deps.clock.clone(),
            s.notify.clone(),
            s.server.public_url.as_deref(),
            config.smtp_password.clone(),
            crypto.clone(),
        )?);
        let metrics = Arc::new(Metrics::new());
        let consent = Arc::new(ConsentService::new(
            store.clone(),
            deps.clock.clone(),
            audit.verifier().clone(),
            metrics.consent_ledger_rejected.clone(),
        ));
        let retention = Arc::new(crate::retention::RetentionService::new(store.clone(), deps.clock.clone()));
        let retention_recorder = Arc::new(crate::retention::record::Recorder::new());
        let upstreams = Upstreams::build(&config.routes).context("cannot prepare upstream TLS")?;
        let proxy = Proxy::new(
            config.routes.clone(),
            upstreams,
            s.server.trusted_proxies.clone(),
            s.server.max_header_bytes,
            metrics.clone(),
            policies.clone(),
        )
        .with_auth(auth.clone())
        .with_consent(consent.clone())
        .with_rights(rights.clone())
        .with_retention(retention_recorder.clone(), retention.clone(), deps.clock.clone())
        .with_fields(FieldSettings {
            vault: crypto.clone(),
            transform_max_bytes: s.keys.as_ref().map_or(DEFAULT_TRANSFORM_MAX_BYTES, |k| k.transform_max_bytes),
            audit: Some(audit.clone()),
            clock: deps.clock.clone(),
            random: deps.random.clone(),
        })
        .with_hsts(s.server.tls.as_ref().map(|t| server::redirect::hsts_value(t.hsts_max_age)));
        let tls = match &s.server.tls {
            Some(t) => Some(TlsAcceptor::from(Arc::new(
                tls::server_config(&t.cert, &t.key, &t.min_version).context("cannot set up TLS")?,
            ))),
            None => None,
        };
        let public = bind(s.server.listen, "server.listen").await?;
        let redirect = match s.server.tls.as_ref().and_then(|t| t.redirect_listen) {
            Some(addr) => Some(bind(addr, "server.tls.redirect_listen").await?),
            None => None,
        };
        let admin = match s.admin.enabled {
            true => Some(bind(s.admin.listen, "admin.listen").await?),
            false => None,
        };
        let app = Arc::new(App {
            settings: config.settings,
            store,
            auth,
            audit,
            crypto,
            consent,
            proxy,
            metrics,
            request_ids: crate::server::middleware::RequestIds::new(deps.random.as_ref())
                .context("cannot seed request ids")?,
            reveal_limiter: crate::crypto::batch::RateLimiter::default(),
            clock: deps.clock,
            random: deps.random,
            policies,
            policy_source,
            rights,
            exports,
            jobs,
            rights_http: crate::auth::http::HttpClient::new().context("cannot prepare the rights client")?,
            notify,
            retention,
            retention_recorder,
        });
        register_job_handlers(&app);
        let (shutdown, _) = watch::channel(false);
        Ok(Self { app, public, admin, tls, shutdown, redirect })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public.local_addr().unwrap_or_else(|_| self.app.settings.server.listen)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The plain-HTTP redirect listener's address, when configured.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().and_then(|l| l.local_addr().ok())
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
            header_read_timeout: s.keepalive_timeout,
            tls_handshake_timeout: Duration::from_secs(10),
        };
        let grace = s.shutdown_grace;
        let pruning = tokio::spawn(prune_periodically(self.app.clone(), self.shutdown.subscribe()));
        // Keys destroyed on other instances leave this one's cache within a second or two.
        let shreds = self.app.crypto.clone().map(|v| tokio::spawn(v.watch_shreds(self.shutdown.subscribe())));
        // On PostgreSQL, other instances' withdrawals, revocations and shreds arrive at once.
        let changes = tokio::spawn(follow_changes(self.app.clone(), self.shutdown.subscribe()));
        let jobs = tokio::spawn(crate::jobs::run_loop(
            self.app.jobs.clone(),
            crate::jobs::POLL_EVERY,
            self.shutdown.subscribe(),
        ));
        let retention_writer = tokio::spawn(crate::retention::record::Recorder::write_until_stopped(
            self.app.clone(),
            self.shutdown.subscribe(),
        ));
        let retention_runs = tokio::spawn(crate::retention::schedule(self.app.clone(), self.shutdown.subscribe()));
        let redirect = self.redirect.map(|l| {
            let router = server::redirect::router(self.app.settings.server.public_url.clone());
            tokio::spawn(server::serve(l, None, router, limits, self.shutdown.subscribe(), grace))
        });
        let public_front = server::router::Public::new(self.app.clone());
        let public = server::serve(self.public, self.tls, public_front, limits, self.shutdown.subscribe(), grace);
        match self.admin {
            Some(admin) => {
                let admin_router = server::router::admin(self.app.clone());
                let admin = server::serve(admin, None, admin_router, limits, self.shutdown.subscribe(), grace);
                tokio::join!(public, admin);
            }
            None => public.await,
        }
        pruning.abort();
        retention_runs.abort();
        retention_writer.abort();
        changes.abort();
        if let Some(r) = redirect {
            r.abort();
        }
        // A job cut short here is claimed again once its lease runs out (handlers are idempotent).
        jobs.abort();
        if let Some(shreds) = shreds {
            shreds.abort();
        }
        // Requests are finished: commit what they queued before the process ends.
        self.app.audit.shutdown().await;
    }
}

/// Registers every job kind's handler: the one place where background work is wired. Handlers
/// hold a weak reference to the application, so the runner never keeps it alive.
fn register_job_handlers(app: &AppState) {
    let weak = Arc::downgrade(app);
    app.jobs.register(Arc::new(crate::rights::propagation::Propagate { app: weak.clone() }));
    app.jobs.register(Arc::new(crate::rights::erasure::EraseOnWithdrawal { app: weak }));
    app.jobs.register(crate::notify::send_handler(app));
    app.jobs.register(crate::alerts::check_handler(app));
    app.jobs.register(Arc::new(crate::retention::tell::TellApplication { app: Arc::downgrade(app) }));
    app.jobs.register(Arc::new(crate::retention::RunJob { app: Arc::downgrade(app) }));
    app.jobs.register(Arc::new(crate::housekeeping::OwnDataJob { app: Arc::downgrade(app) }));
}

/// Applies the changes other instances announce (PostgreSQL `LISTEN`) to this one's caches
/// until shutdown; reconnects after a lost connection, emptying the caches since changes may
/// have been missed meanwhile. Polling keeps the caches right (within about a second) while
/// the feed is down. Returns at once on SQLite.
async fn follow_changes(app: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        match app.store.change_feed().await {
            Ok(None) => return,
            Ok(Some(mut feed)) => {
                apply_change(&app, &Heard::MayHaveMissed).await;
                loop {
                    tokio::select! {
                        heard = feed.next() => match heard {
                            Ok(heard) => apply_change(&app, &heard).await,
                            Err(e) => {
                                tracing::warn!(error = %e, "lost the change notifications; polling until they are back");
                                break;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for changes; polling until it can"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn apply_change(app: &App, heard: &Heard) {
    let kind = match heard {
        Heard::Change(Change::Consent(subject)) => {
            app.consent.forget(subject);
            "consent"
        }
        Heard::Change(Change::SessionEnded(id_hash)) => {
            app.auth.sessions.forget_ended(id_hash);
            "session"
        }
        Heard::Change(Change::AllSessionsEnded) => {
            app.auth.sessions.forget_all();
            "all_sessions"
        }
        Heard::Change(Change::Shred) | Heard::MayHaveMissed => {
            if let Some(vault) = &app.crypto
                && let Err(e) = vault.check_shreds().await
            {
                tracing::warn!(error = %e, "cannot read the shred generation after a notification");
            }
            if *heard == Heard::MayHaveMissed {
                app.consent.forget_all();
                app.auth.sessions.forget_all();
                "resync"
            } else {
                "shred"
            }
        }
    };
    app.metrics.changes_heard.get_or_create(&ChangeLabels { kind }).inc();
}

/// The writer's settings from `[audit]`.
pub fn sink_settings(a: &AuditSettings, data_dir: &std::path::Path) -> SinkSettings {
    SinkSettings {
        witness: Some(a.witness_path(data_dir)),
        batch_max_entries: a.batch_max_entries,
        batch_max_delay: a.batch_max_delay,
        checkpoint_every_entries: i64::from(a.checkpoint_every_entries),
        checkpoint_every: a.checkpoint_every,
    }
}

/// Loads (or creates) the checkpoint key, starts the journal writer and journals the start.
async fn start_audit(store: &Store, s: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Audit> {
    let key_path = s.audit.signing_key_path(&s.data_dir);
    let (signer, generated) = Signer::load_or_generate(&key_path)?;
    if generated {
        tracing::warn!(path = %key_path.display(), key_id = signer.key_id(),
            "generated the audit signing key; back it up and share it with every instance");
    }
    let now = clock.now();
    let audit = Audit::start(store.clone(), signer, clock, sink_settings(&s.audit, &s.data_dir));
    audit
        .append_sync(AuditEvent::system(Operation::ConfigLoaded, now))
        .await
        .context("cannot write the audit journal")?;
    Ok(audit)
}

/// Applies the journal's retention and forgets expired sign-ins every `prune_every` until
/// shutdown.
async fn prune_periodically(app: AppState, mut stop: watch::Receiver<bool>) {
    let r = &app.settings.audit.retention;
    let mut tick = tokio::time::interval(r.prune_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = crate::audit::retention::prune(&app.store, &app.audit, app.clock.as_ref(), r.keep).await {
                    tracing::warn!(error = %e, "audit journal pruning failed; will retry");
                }
                if let Err(e) = app.purge_expired_sign_ins().await {
                    tracing::warn!(error = %e, "purging expired sign-ins failed; will retry");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Opens the keyring (refusing to start when it cannot) and re-destroys the keys listed in
/// tombstones, in case the store was restored from a backup older than a shred.
async fn open_vault(k: &KeysSettings, store: &Store, deps: &Deps) -> anyhow::Result<Vault> {
    let keyring = Keyring::open(k).context("cannot open the keyring (`keys` section)")?;
    let vault = Vault::new(keyring, store.clone(), k, deps.clock.clone(), deps.random.clone());
    vault.startup_check().await.context("cannot reconcile destroyed data keys with the store")?;
    Ok(vault)
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (`{key}`)"))
}

/// How long file events are gathered before one reload: an editor's save is several events.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(200);

/// Reloads the policies on SIGHUP and, when `policy.watch` is on, when a file in the policy
/// directory changes; stops when `shutdown` turns true. `serve` and `demo` start it; tests
/// call [`App::reload_policies`] directly, or this function when they test the watching.
pub fn spawn_policy_reloader(app: AppState, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = match (app.settings.policy.watch, app.policy_source.dir()) {
        (true, Some(dir)) if dir.is_dir() => watch_dir(dir, tx.clone()),
        _ => None,
    };
    spawn_sighup_forwarder(tx, shutdown.clone());
    tokio::spawn(async move {
        // Dropped when the task ends, which stops the watcher's thread.
        let _watcher = watcher;
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                got = rx.recv() => {
                    if got.is_none() {
                        break;
                    }
                    tokio::time::sleep(RELOAD_DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    // Refusals are logged and counted by reload_policies itself.
                    let _ = app.reload_policies();
                }
            }
        }
    })
}

fn watch_dir(dir: &std::path::Path, tx: tokio::sync::mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the policy directory; reload with SIGHUP");
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(error = %e, "cannot watch the policy directory; reload with SIGHUP");
        return None;
    }
    Some(watcher)
}

#[cfg(unix)]
fn spawn_sighup_forwarder(tx: tokio::sync::mpsc::UnboundedSender<()>, mut shutdown: watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; policies reload on file change only");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                got = hup.recv() => {
                    if got.is_none() || tx.send(()).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_sighup_forwarder(_tx: tokio::sync::mpsc::UnboundedSender<()>, _shutdown: watch::Receiver<bool>) {}
