//! `guichet demo`: the whole product on one machine with no set-up — an embedded SQLite
//! store in a data directory it creates, and a demonstration town-hall application behind the
//! gateway, all on loopback.

pub mod townhall;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::{Application, Deps};
use crate::clock::{Clock as _, SystemClock, SystemRandom};
use crate::config::{KeysSettings, Loaded, RouteSettings, TimeoutSettings};
use crate::crypto::admin;
use crate::telemetry;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Address of the gateway. The demo only listens on loopback.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the metrics listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Where the demo keeps its store; created when missing.
    #[arg(long, default_value = "guichet-demo-data")]
    pub data_dir: PathBuf,
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    for (addr, flag) in [(opts.listen, "--listen"), (opts.admin_listen, "--admin-listen")] {
        if !is_loopback(addr.ip()) {
            anyhow::bail!("{flag} {addr}: the demo only listens on loopback (127.0.0.1 or ::1)");
        }
    }
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("cannot create the data directory {}", opts.data_dir.display()))?;
    let townhall = start_townhall().await?;

    let mut loaded = Loaded::defaults();
    let s = &mut loaded.settings;
    s.data_dir = opts.data_dir.clone();
    s.server.listen = opts.listen;
    s.admin.listen = opts.admin_listen;
    s.routes.push(RouteSettings {
        name: "mairie".into(),
        host: None,
        path_prefix: "/".into(),
        upstream: format!("http://{townhall}"),
        strip_prefix: false,
        upstream_ca_file: None,
        timeouts: TimeoutSettings::default(),
        max_body_bytes: None,
    });
    s.keys = Some(demo_keys(&opts.data_dir)?);
    let config = loaded.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    telemetry::init(&config.settings.log);
    let app = Application::build(config, Deps::default()).await?;
    let url = format!("http://{}/", app.public_addr());
    let mut out = std::io::stdout();
    let _ = writeln!(out, "\nGuichet demo is running.\n");
    let _ = writeln!(out, "  Open {url} in your browser.");
    let _ = writeln!(out, "  Demo town-hall application (behind the gateway): http://{townhall}/");
    if let Some(admin) = app.admin_addr() {
        let _ = writeln!(out, "  Metrics: http://{admin}/metrics");
    }
    let _ = writeln!(out, "  Data directory: {}\n\nPress Ctrl-C to stop.\n", opts.data_dir.display());
    let stop = app.shutdown_handle();
    tokio::spawn(async move {
        crate::cli::shutdown_signal().await;
        let _ = stop.send(true);
    });
    app.run_until_stopped().await;
    Ok(())
}

/// The demo's keyring, in its data directory, created on first run. A real installation
/// keeps the keyring and its identity apart from the store (docs/cryptography.md).
fn demo_keys(dir: &Path) -> anyhow::Result<KeysSettings> {
    let mut k = KeysSettings::at(dir.join("keyring.age"));
    k.identity_file = Some(dir.join("keyring-identity.txt"));
    if !k.keyring.exists() {
        admin::init(&k, &SystemRandom::new(), SystemClock.now(), &mut std::io::sink())
            .context("cannot create the demo keyring")?;
    }
    Ok(k)
}

/// Starts the demonstration application on a free loopback port.
pub async fn start_townhall() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.context("cannot start the demo application")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, townhall::router()).await {
            tracing::error!(error = %e, "demo application stopped");
        }
    });
    Ok(addr)
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}
