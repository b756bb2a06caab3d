//! The command line: `serve`, `check`, `migrate`, `demo`, `keys`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::app::{Application, Deps};
use crate::config::{ConfigError, Loaded, Validated};
use crate::crypto::{Keyring, Vault, admin};
use crate::store::{Store, StoreOptions};
use crate::{demo, telemetry};

const CONFIG_HELP: &str = "Configuration file (TOML). Without it, the embedded defaults are used. \
Any setting can also be given as GUICHET_<SECTION>__<KEY>, e.g. GUICHET_SERVER__LISTEN.";

const EXAMPLES: &str = "Examples:
  guichet demo                                       try everything locally, no set-up
  guichet check --config /etc/guichet/guichet.toml   list every configuration problem
  guichet migrate --config /etc/guichet/guichet.toml create or upgrade the store
  guichet serve --config /etc/guichet/guichet.toml   run the gateway
  guichet keys init --config /etc/guichet/guichet.toml   create the field-encryption keyring

Documentation: README.md and docs/configuration.md";

/// Guichet — a privacy and consent gateway for the online services of French local
/// authorities. It sits in front of the town hall's web applications.
#[derive(Debug, Parser)]
#[command(name = "guichet", version, propagate_version = true, after_help = EXAMPLES)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, global = true, env = "GUICHET_CONFIG", value_name = "FILE", help = CONFIG_HELP)]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway with the configuration given by --config.
    Serve,
    /// Check the configuration and report every problem found, with its key and line.
    /// Exits 0 when the configuration is valid, 1 otherwise.
    Check,
    /// Create or upgrade the store's tables, then exit.
    Migrate,
    /// Try Guichet on this machine with no set-up: an embedded store, a demonstration
    /// town-hall application behind the gateway, everything on 127.0.0.1.
    Demo(demo::DemoOptions),
    /// Manage the field-encryption keys given by the `[keys]` section.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the keyring (and the age identity file, if missing). Refuses to overwrite.
    Init,
    /// Show KEK versions and how many data keys each one wraps.
    Status,
    /// Add a KEK version and re-wrap every data key under it, in batches.
    Rotate {
        /// Do not add a version: finish re-wrapping under the current one (after an interruption).
        #[arg(long)]
        resume: bool,
        /// Data keys re-wrapped per transaction.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Remove an old KEK version from the keyring; refused while a data key still uses it.
    Retire {
        /// The KEK version to retire.
        #[arg(value_name = "VERSION", id = "kek_version")]
        kek_version: u32,
    },
    /// Destroy again every data key listed in a tombstone (run after restoring a store
    /// backup; `serve` does it at start).
    Reconcile,
}

/// Runs the command and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check => return check(cli.config),
        Command::Serve => serve(cli.config).await,
        Command::Migrate => migrate(cli.config).await,
        Command::Demo(opts) => demo::run(opts).await,
        Command::Keys { action } => keys(cli.config, action).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "guichet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<PathBuf>) -> Result<Validated, ConfigError> {
    let loaded = match &path {
        Some(p) => Loaded::load(Some(p), std::env::vars())?,
        None => Loaded::load(None, std::env::vars())?,
    };
    loaded.validate()
}

fn check(path: Option<PathBuf>) -> ExitCode {
    match load(path.clone()) {
        Ok(v) => {
            let n = v.routes.iter().count();
            let file = path.map_or_else(|| "embedded defaults".to_owned(), |p| p.display().to_string());
            let _ = writeln!(
                std::io::stdout(),
                "{file}: configuration is valid ({n} route{}).",
                if n == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = write!(std::io::stderr(), "{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    telemetry::init(&config.settings.log);
    let app = Application::build(config, Deps::default()).await?;
    tracing::info!(listen = %app.public_addr(), admin = ?app.admin_addr(), "guichet is serving");
    let stop = app.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop.send(true);
    });
    app.run_until_stopped().await;
    Ok(())
}

async fn migrate(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let s = &config.settings.store;
    let opts = StoreOptions { max_connections: 1, acquire_timeout: s.acquire_timeout };
    let store = Store::connect(&config.store_url, &opts).await.context("cannot open the store")?;
    let n = store.migrate().await?;
    let _ =
        writeln!(std::io::stdout(), "{} store: {n} migration(s) applied; schema is up to date.", store.engine().name());
    Ok(())
}

async fn keys(path: Option<PathBuf>, action: KeysCommand) -> anyhow::Result<()> {
    let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let k = config.settings.keys.clone().context("the configuration has no `[keys]` section")?;
    let deps = Deps::default();
    let mut out = std::io::stdout();
    if let KeysCommand::Init = action {
        return Ok(admin::init(&k, deps.random.as_ref(), deps.clock.now(), &mut out)?);
    }
    let s = &config.settings.store;
    let opts = StoreOptions { max_connections: 2, acquire_timeout: s.acquire_timeout };
    let store = Store::connect(&config.store_url, &opts).await.context("cannot open the store")?;
    if s.migrate_on_start {
        store.migrate().await.context("cannot migrate the store")?;
    }
    match action {
        KeysCommand::Init => Ok(()),
        KeysCommand::Rotate { resume, batch } => {
            admin::rotate(&k, store, deps.clock, deps.random, resume, batch, &mut out).await.map(drop)?;
            Ok(())
        }
        KeysCommand::Retire { kek_version } => Ok(admin::retire(&k, &store, kek_version, &mut out).await?),
        KeysCommand::Status | KeysCommand::Reconcile => {
            let keyring = Keyring::open(&k).context("cannot open the keyring")?;
            let vault = Vault::new(keyring, store, &k, deps.clock, deps.random);
            match action {
                KeysCommand::Status => admin::status(&vault, &mut out).await?,
                _ => admin::reconcile(&vault, &mut out).await?,
            }
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
