//! The command line: `serve`, `check`, `migrate`, `demo`, `policy check|register`, `audit`,
//! `sessions revoke`, `keys`, `rights`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::app::{Application, Deps, sink_settings, spawn_policy_reloader};
use crate::audit::{self, Audit, AuditEvent, Ident, KeyAction, Operation, Signer};
use crate::auth::Auth;
use crate::auth::session::RevokeTarget;
use crate::clock::{Clock as _, SystemClock, SystemRandom};
use crate::config::{ConfigError, Loaded, Validated};
use crate::crypto::{Keyring, Vault, admin};
use crate::policy::{self, PolicySet, PolicySource, register};
use crate::store::{Store, StoreOptions};
use crate::{demo, telemetry};

const CONFIG_HELP: &str = "Configuration file (TOML). Without it, the embedded defaults are used. \
Any setting can also be given as GUICHET_<SECTION>__<KEY>, e.g. GUICHET_SERVER__LISTEN.";

const EXAMPLES: &str = "Examples:
  guichet demo                                       try everything locally, no set-up
  guichet check --config /etc/guichet/guichet.toml   list every configuration problem
  guichet migrate --config /etc/guichet/guichet.toml create or upgrade the store
  guichet serve --config /etc/guichet/guichet.toml   run the gateway
  guichet policy check --dir policies                check the processing-activity files
  guichet policy register --format ods --output registre.ods
  guichet audit verify --config /etc/guichet/guichet.toml  check the audit journal
  guichet sessions revoke --subject 3f2a…            end one person's sessions everywhere
  guichet keys init --config /etc/guichet/guichet.toml   create the field-encryption keyring
  guichet rights list --config /etc/guichet/guichet.toml  the open rights requests, oldest first
  guichet rights export DR-7K3M-Q9XP --out dossier.zip   one request's export, for the counter

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
    /// The tamper-evident audit journal.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Processing activities (policies/): check them, or produce the Art. 30 register.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Sign-in sessions kept in the store.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Data-subject rights requests (for operators and the DPO): read the queue, extend,
    /// refuse, complete. Every change is journaled with the operator as actor.
    #[command(subcommand)]
    Rights(crate::rights::cli::RightsCommand),
    /// The breach register (Art. 33(5)): list, show, export on the CNIL form's fields, or
    /// record an incident from a TOML or JSON file. Every change is journaled.
    #[command(subcommand)]
    Incident(crate::incidents::cli::IncidentCommand),
    /// Retention: plan (dry run), run, and the DPO's holds (docs/retention.md).
    #[command(subcommand)]
    Retention(crate::retention::cli::RetentionCommand),
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// End sessions: one person's, or all. Running gateways sharing the store stop
    /// honouring them within 2 seconds.
    Revoke(RevokeArgs),
}

#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct RevokeArgs {
    /// The person: the identity provider's `sub` (internal account id), or the pseudonym an
    /// application received in X-Guichet-Subject on any configured route.
    #[arg(long, value_name = "ID")]
    pub subject: Option<String>,
    /// Every session, citizens' and agents'.
    #[arg(long)]
    pub all: bool,
}

impl RevokeArgs {
    fn target(&self) -> RevokeTarget {
        match &self.subject {
            Some(id) if !self.all => RevokeTarget::Subject(id.clone()),
            _ => RevokeTarget::All,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check the policy files against the rules and the configured routes; lists every
    /// problem with file and line. Exits 0 when valid, 1 otherwise.
    Check(PolicyArgs),
    /// Write the register of processing activities (Art. 30) or a CNIL PIA export.
    Register {
        #[command(flatten)]
        args: PolicyArgs,
        #[arg(long, value_enum, default_value = "html")]
        format: RegisterFormat,
        /// Write to this file instead of standard output (required for ods).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Policy directory; default: `policy.dir` of the configuration.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RegisterFormat {
    Json,
    Csv,
    Html,
    Ods,
    /// JSON for the CNIL PIA software, one pre-filled PIA per activity.
    Pia,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Re-check every entry's hash and every checkpoint's signature; name the first broken
    /// entry. Exits 0 when the journal is intact, 1 otherwise.
    Verify,
    /// Remove the entries older than `audit.retention.keep` now (`serve` also does it every
    /// `audit.retention.prune_every`).
    Prune,
    /// Replace the checkpoint signing key with a new one. The old public key is appended to
    /// `<key file>.retired`, so checkpoints it signed still verify; the rotation is journaled.
    /// Then copy both files to every instance and restart them.
    RotateCheckpointKey,
    /// Diagnostic: append N acknowledged entries, COUNT at a time, printing each
    /// acknowledged sequence number as soon as it is committed. Used by the crash test.
    #[command(hide = true)]
    SelftestBurst {
        n: u32,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
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
    /// Give consent receipts a new signing key in the store; the old one stays published so
    /// its receipts still verify. Restart the instances afterwards.
    RotateReceipt,
    /// Give CSRF tokens a new key in the store; tokens of the old one are accepted until the
    /// next rotation. Restart the instances afterwards.
    RotateCsrf,
}

/// Runs the command and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check => return check(cli.config),
        Command::Serve => serve(cli.config).await,
        Command::Migrate => migrate(cli.config).await,
        Command::Demo(opts) => demo::run(opts).await,
        Command::Policy(PolicyCommand::Check(args)) => return policy_check(cli.config, &args),
        Command::Policy(PolicyCommand::Register { args, format, output }) => {
            policy_register(cli.config, &args, format, output)
        }
        Command::Audit { command: AuditCommand::Verify } => return audit_verify(cli.config).await,
        Command::Audit { command: AuditCommand::Prune } => audit_prune(cli.config).await,
        Command::Audit { command: AuditCommand::RotateCheckpointKey } => audit_rotate_checkpoint_key(cli.config).await,
        Command::Audit { command: AuditCommand::SelftestBurst { n, concurrency } } => {
            audit_selftest_burst(cli.config, n, concurrency).await
        }
        Command::Sessions(SessionsCommand::Revoke(args)) => sessions_revoke(cli.config, &args).await,
        Command::Keys { action } => keys(cli.config, action).await,
        Command::Rights(crate::rights::cli::RightsCommand::Export(args)) => rights_export(cli.config, &args).await,
        Command::Rights(command) => rights(cli.config, command).await,
        Command::Incident(command) => incident(cli.config, command).await,
        Command::Retention(command) => retention(cli.config, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = report(&e);
            if !line.is_empty() {
                let _ = writeln!(std::io::stderr(), "guichet: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each said once: many errors already end with their
/// cause's text (`cannot read …: No such file`), which `{:#}` would then repeat.
pub fn report(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.trim_end();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line
}

fn load(path: Option<PathBuf>) -> Result<Validated, ConfigError> {
    let loaded = match &path {
        Some(p) => Loaded::load(Some(p), std::env::vars())?,
        None => Loaded::load(None, std::env::vars())?,
    };
    loaded.validate()
}

/// Reports every problem: the file's unknown keys and wrong types, then the whole
/// configuration's checks on the rest, then the policies (when the routes they refer to can
/// be read).
fn check(path: Option<PathBuf>) -> ExitCode {
    let (loaded, mut problems) = match Loaded::load_lenient(path.as_deref(), std::env::vars()) {
        Ok(found) => found,
        Err(e) => {
            let _ = write!(std::io::stderr(), "{e}");
            return ExitCode::FAILURE;
        }
    };
    let validated = loaded.validate().map_err(|e| problems.extend(e.problems)).ok();
    if !problems.is_empty() || validated.is_none() {
        let _ = write!(std::io::stderr(), "{}", ConfigError { problems });
        let s = &loaded.settings;
        match crate::routing::RouteTable::compile(&s.routes, s.server.max_body_bytes) {
            Ok(routes) => {
                if let Err(e) = policy::load(&PolicySource::Dir(s.policy.dir.clone()), &routes, &s.routes) {
                    let _ = write!(std::io::stderr(), "{e}");
                }
            }
            Err(_) => {
                let _ = writeln!(std::io::stderr(), "the policies are checked once the routes are valid.");
            }
        }
        return ExitCode::FAILURE;
    }
    let Some(v) = validated else { return ExitCode::FAILURE };
    let Some(set) = load_policies(&v, None).and_then(|set| checked_bindings(&v, set)) else {
        return ExitCode::FAILURE;
    };
    let n = v.routes.iter().count();
    let file = path.map_or_else(|| "embedded defaults".to_owned(), |p| p.display().to_string());
    let _ = writeln!(
        std::io::stdout(),
        "{file}: configuration is valid ({n} route{}, {} processing activit{}).",
        if n == 1 { "" } else { "s" },
        set.activities.len(),
        if set.activities.len() == 1 { "y" } else { "ies" }
    );
    let duties = crate::auth::duties::Duties::of(&v.settings, &set);
    for w in duties.warnings(&v.settings.auth.agent_roles) {
        let _ = writeln!(std::io::stdout(), "warning: {w}");
    }
    if let Some(k) = &v.settings.keys {
        let (ok, line) = crate::crypto::vault::tombstone_file_report(&k.tombstones_path());
        let _ = writeln!(std::io::stdout(), "{line}");
        if !ok {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// `set` when it declares at least one processing activity; else says why and where nothing
/// was found: "valid" about an empty or missing directory would be a lie.
fn some_activities(config: &Validated, dir: Option<&PathBuf>, set: PolicySet) -> Option<PolicySet> {
    if !set.activities.is_empty() {
        return Some(set);
    }
    let dir = dir.unwrap_or(&config.settings.policy.dir);
    let why = if dir.is_dir() { "holds no processing activity (*.toml file)" } else { "does not exist" };
    let _ = writeln!(
        std::io::stderr(),
        "guichet: the policy directory {} {why}; give the right one with --dir or `policy.dir`.",
        dir.display()
    );
    None
}

/// Loads and validates the policies for a valid configuration, printing every problem.
fn load_policies(config: &Validated, dir: Option<&PathBuf>) -> Option<PolicySet> {
    let dir = dir.cloned().unwrap_or_else(|| config.settings.policy.dir.clone());
    match policy::load(&PolicySource::Dir(dir), &config.routes, &config.settings.routes) {
        Ok(set) => Some(set),
        Err(e) => {
            let _ = write!(std::io::stderr(), "{e}");
            None
        }
    }
}

/// The checks that need both the configuration and the policies (`policy::bindings`): claims
/// and client addresses a route sends are declared data categories; activities with fields
/// say whether they are strict.
fn checked_bindings(config: &Validated, set: PolicySet) -> Option<PolicySet> {
    let s = &config.settings;
    let mut problems: Vec<String> = policy::bindings::check(&set, &config.routes, &s.routes, &config.source)
        .iter()
        .map(ToString::to_string)
        .collect();
    problems.extend(policy::bindings::undecided_strict(&set));
    if problems.is_empty() {
        return Some(set);
    }
    for p in &problems {
        let _ = writeln!(std::io::stderr(), "{p}");
    }
    None
}

fn policy_check(path: Option<PathBuf>, args: &PolicyArgs) -> ExitCode {
    let v = match load(path) {
        Ok(v) => v,
        Err(e) => {
            let _ = write!(std::io::stderr(), "{e}");
            return ExitCode::FAILURE;
        }
    };
    let set = load_policies(&v, args.dir.as_ref()).and_then(|set| some_activities(&v, args.dir.as_ref(), set));
    match set.and_then(|set| checked_bindings(&v, set)) {
        Some(set) => {
            let _ = writeln!(std::io::stdout(), "policies are valid ({} processing activities).", set.activities.len());
            for w in policy::bindings::warnings(&set) {
                let _ = writeln!(std::io::stdout(), "warning: {w}");
            }
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

fn policy_register(
    path: Option<PathBuf>,
    args: &PolicyArgs,
    format: RegisterFormat,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(set) = load_policies(&config, args.dir.as_ref()) else { anyhow::bail!("the policies are not valid") };
    // The reason was printed: exit non-zero without a second message.
    let Some(set) = some_activities(&config, args.dir.as_ref(), set) else { return Err(AlreadyReported.into()) };
    // The gateway's own processing completes the register.
    let set = policy::gateway::register_set(&set, &config.settings);
    let bytes = match format {
        RegisterFormat::Json => register::to_json(&set)?.into_bytes(),
        RegisterFormat::Csv => register::to_csv(&set)?.into_bytes(),
        RegisterFormat::Html => register::to_html(&set)?.into_bytes(),
        RegisterFormat::Pia => register::to_pia(&set)?.into_bytes(),
        RegisterFormat::Ods => register::to_ods(&set)?,
    };
    match output {
        Some(file) => std::fs::write(&file, bytes).with_context(|| format!("cannot write {}", file.display()))?,
        None if matches!(format, RegisterFormat::Ods) => anyhow::bail!("--format ods needs --output FILE"),
        None => std::io::stdout().write_all(&bytes)?,
    }
    Ok(())
}

async fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    telemetry::init(&config.settings.log);
    let (routes, route_settings, source) =
        (config.routes.clone(), config.settings.routes.clone(), config.source.clone());
    let app = Application::build(config, Deps::default()).await?;
    // `guichet check` refuses these; a running deployment keeps serving, and says why it should not.
    let set = app.state().policies.load_full();
    for p in policy::bindings::check(&set, &routes, &route_settings, &source) {
        tracing::warn!(problem = %p, "a route sends what its activities do not declare; run `guichet check`");
    }
    for p in policy::bindings::undecided_strict(&set) {
        tracing::warn!(problem = %p, "strict mode not chosen; run `guichet policy check`");
    }
    tracing::info!(listen = %app.public_addr(), admin = ?app.admin_addr(), "guichet is serving");
    let stop = app.shutdown_handle();
    let _reloader = spawn_policy_reloader(app.state(), stop.subscribe());
    // The DPO's alerts: a check now, then every `alerts::CHECK_EVERY` (each check schedules
    // the next).
    if let Err(e) = crate::alerts::schedule(&app.state(), true).await {
        tracing::warn!(error = %e, "cannot schedule the alert checks");
    }
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop.send(true);
    });
    app.run_until_stopped().await;
    Ok(())
}

/// An error whose explanation was already printed.
#[derive(Debug, thiserror::Error)]
#[error("")]
struct AlreadyReported;

/// Opens the configured store for a one-off command.
async fn open_store(config: &Validated, max_connections: u32) -> anyhow::Result<Store> {
    let opts = StoreOptions { max_connections, acquire_timeout: config.settings.store.acquire_timeout };
    Store::connect(&config.store_url, &opts).await.context("cannot open the store")
}

/// Opens the configured store for a command that only reads it: it must exist (nothing is
/// created where a wrong `data_dir` or URL points).
async fn open_existing_store(config: &Validated, max_connections: u32) -> anyhow::Result<Store> {
    let opts = StoreOptions { max_connections, acquire_timeout: config.settings.store.acquire_timeout };
    Ok(Store::connect_existing(&config.store_url, &opts).await?)
}

async fn migrate(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = open_store(&config, 1).await?;
    let n = store.migrate().await?;
    let _ =
        writeln!(std::io::stdout(), "{} store: {n} migration(s) applied; schema is up to date.", store.engine().name());
    Ok(())
}

async fn audit_verify(path: Option<PathBuf>) -> ExitCode {
    let result = async {
        let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let s = &config.settings;
        let key = s.audit.signing_key_path(&s.data_dir);
        let verifier = Signer::load(&key)?.verifier();
        let store = open_existing_store(&config, 2).await?;
        let checks = audit::verify::Checks {
            coverage: Some((audit::event::to_micros(SystemClock.now()), s.audit.checkpoint_every)),
            witness: Some(s.audit.witness_path(&s.data_dir)),
        };
        Ok::<_, anyhow::Error>(audit::verify::verify_with(&store, &verifier, &checks).await?)
    };
    match result.await {
        Ok(report) => {
            let _ = writeln!(std::io::stdout(), "{}", report.summary());
            if report.is_intact() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "guichet: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// Opens the store and starts a journal writer, as `serve` would, for a one-off command.
async fn start_audit(path: Option<PathBuf>) -> anyhow::Result<(Validated, Store, Audit)> {
    let (config, store) = open_journal_store(path).await?;
    let s = &config.settings;
    let (signer, _) = Signer::load_or_generate(&s.audit.signing_key_path(&s.data_dir))?;
    let audit = Audit::start(store.clone(), signer, Arc::new(SystemClock), sink_settings(&s.audit, &s.data_dir));
    Ok((config, store, audit))
}

async fn open_journal_store(path: Option<PathBuf>) -> anyhow::Result<(Validated, Store)> {
    let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = open_store(&config, config.settings.store.max_connections).await?;
    if config.settings.store.migrate_on_start {
        store.migrate().await?;
    }
    Ok((config, store))
}

/// Rotates the checkpoint key (see `audit::checkpoint::rotate`) and journals it, signed
/// from then on with the new key. The store is opened first: a rotation that could not be
/// journaled is not started.
async fn audit_rotate_checkpoint_key(path: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, store) = open_journal_store(path).await?;
    let s = &config.settings;
    let key = s.audit.signing_key_path(&s.data_dir);
    let rotation = audit::checkpoint::rotate(&key, SystemClock.now())?;
    let audit = Audit::start(store, Signer::load(&key)?, Arc::new(SystemClock), sink_settings(&s.audit, &s.data_dir));
    let key_id = Ident::new(format!("audit-checkpoint:{}", rotation.new_key_id))?;
    let event = AuditEvent::system(Operation::KeyOperation { action: KeyAction::Rotate, key_id }, SystemClock.now());
    let seq = audit.append_sync(event).await;
    audit.shutdown().await;
    let seq = seq.context("the key was rotated but the rotation could not be journaled")?;
    let _ = writeln!(
        std::io::stdout(),
        "checkpoint key rotated: {old} retired (public key kept in {retired}), {new} signs from now on \
         (journal entry {seq}).\nCopy {key} and {retired} to every instance and restart them; until then \
         they sign with {old}, which still verifies.",
        old = rotation.retired_key_id,
        new = rotation.new_key_id,
        retired = rotation.retired_file.display(),
        key = key.display(),
    );
    Ok(())
}

async fn audit_prune(path: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, store, audit) = start_audit(path).await?;
    let keep = config.settings.audit.retention.keep;
    let pruned = audit::retention::prune(&store, &audit, &SystemClock, keep).await;
    audit.shutdown().await;
    let line = match pruned? {
        Some(p) => format!("pruned {} entries; the journal now starts after entry {}.", p.entries, p.anchor_seq),
        None => "nothing to prune: no signed checkpoint is older than the retention window.".to_owned(),
    };
    let _ = writeln!(std::io::stdout(), "{line}");
    Ok(())
}

/// Appends `n` acknowledged diagnostic entries, `concurrency` at a time, and prints
/// `acked SEQ` for each once its commit returned: a crash test kills the process mid-way and
/// checks that every printed number survived.
async fn audit_selftest_burst(path: Option<PathBuf>, n: u32, concurrency: usize) -> anyhow::Result<()> {
    let (_, _, audit) = start_audit(path).await?;
    let audit = Arc::new(audit);
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await?;
        let audit = audit.clone();
        tasks.spawn(async move {
            let mut e = AuditEvent::system(Operation::Diagnostic, SystemClock.now());
            e.request_id = Ident::new(format!("selftest-{i}")).ok();
            let seq = audit.append_sync(e).await;
            drop(permit);
            seq
        });
        while let Some(done) = tasks.try_join_next() {
            print_acked(done??)?;
        }
    }
    while let Some(done) = tasks.join_next().await {
        print_acked(done??)?;
    }
    audit.shutdown().await;
    Ok(())
}

fn print_acked(seq: i64) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "acked {seq}")?;
    out.flush()
}

/// Ends sessions in the store. The pseudonym key comes from the same place as for `serve`
/// (configuration or store), so a pseudonym an application reports matches.
async fn sessions_revoke(path: Option<PathBuf>, args: &RevokeArgs) -> anyhow::Result<()> {
    let (config, store, audit) = start_audit(path).await?;
    let auth = Auth::build(&config, store, Arc::new(SystemClock), Arc::new(SystemRandom::new())).await?;
    let routes: Vec<Arc<str>> = config.routes.iter().map(|r| r.name.clone()).collect();
    let target = args.target();
    let revoked = auth.revoke_sessions(&target, &routes).await;
    // The person's id may be a provider `sub`: the journal says only whose kind of sessions.
    let record = if matches!(target, RevokeTarget::All) { "sessions:all" } else { "sessions:one_person" };
    let mut event = admin_event("sessions_revoke", record)?;
    event.outcome = if revoked.is_ok() { audit::Outcome::Success } else { audit::Outcome::Failure };
    let journaled = audit.append_sync(event).await;
    audit.shutdown().await;
    let n = revoked.context("cannot revoke the sessions")?;
    journaled.context("the sessions were revoked but this could not be journaled")?;
    let _ = writeln!(std::io::stdout(), "{n} session{} revoked.", if n == 1 { "" } else { "s" });
    Ok(())
}

/// `guichet keys rotate-receipt|rotate-csrf`: the keys kept in the store (not in the keyring),
/// journaled as admin actions.
async fn rotate_store_key(path: Option<PathBuf>, action: &KeysCommand) -> anyhow::Result<()> {
    let (config, store, audit) = start_audit(path).await?;
    let receipt = matches!(action, KeysCommand::RotateReceipt);
    if receipt && config.settings.auth.receipt_key_file.is_some() {
        audit.shutdown().await;
        anyhow::bail!(
            "the receipt key is `auth.receipt_key_file`: give that key a new file and list the old one in \
             `auth.retired_receipt_key_files` (docs/cryptography.md, \"Rotation\")"
        );
    }
    let (rotated, event) = if receipt {
        (
            crate::auth::rotate_receipt_key(&store, &SystemClock).await.map(|kid| format!("New receipt key: {kid}.")),
            admin_event("rotate_receipt_key", "key:consent_receipt")?,
        )
    } else {
        let done = crate::auth::rotate_csrf_key(&store, &SystemClock, &SystemRandom::new()).await;
        (done.map(|()| "New CSRF key.".to_owned()), admin_event("rotate_csrf_key", "key:csrf")?)
    };
    let mut event = event;
    event.outcome = if rotated.is_ok() { audit::Outcome::Success } else { audit::Outcome::Failure };
    let journaled = audit.append_sync(event).await;
    audit.shutdown().await;
    let message = rotated.context("cannot rotate the key")?;
    journaled.context("the key was rotated but this could not be journaled")?;
    let _ = writeln!(std::io::stdout(), "{message} Restart every instance to use it.");
    Ok(())
}

/// An admin command's journal entry: the operator at the terminal (`system`, role
/// `operator`), the action, and the record concerned.
fn admin_event(action: &str, record_ref: &str) -> anyhow::Result<AuditEvent> {
    let mut event = AuditEvent::system(Operation::AdminAction { action: Ident::new(action)? }, SystemClock.now());
    event.role = Ident::new("operator")?;
    event.record_ref = Some(Ident::new(record_ref)?);
    Ok(event)
}

async fn rights_export(path: Option<PathBuf>, args: &crate::rights::export::cli::ExportArgs) -> anyhow::Result<()> {
    let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::rights::export::cli::run(config, args).await
}

async fn keys(path: Option<PathBuf>, action: KeysCommand) -> anyhow::Result<()> {
    if matches!(action, KeysCommand::RotateReceipt | KeysCommand::RotateCsrf) {
        return rotate_store_key(path, &action).await;
    }
    let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let k = config.settings.keys.clone().context("the configuration has no `[keys]` section")?;
    let deps = Deps::default();
    let mut out = std::io::stdout();
    if let KeysCommand::Init = action {
        return Ok(admin::init(&k, deps.random.as_ref(), deps.clock.now(), &mut out)?);
    }
    let s = &config.settings.store;
    let store = open_store(&config, 2).await?;
    if s.migrate_on_start {
        store.migrate().await.context("cannot migrate the store")?;
    }
    match action {
        KeysCommand::Init | KeysCommand::RotateReceipt | KeysCommand::RotateCsrf => Ok(()),
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

/// Runs a `rights` command on the configured store, journaled like `serve` would, with the
/// gateway's services (notices are queued for the serving gateway's job runner to send).
async fn rights(path: Option<PathBuf>, command: crate::rights::cli::RightsCommand) -> anyhow::Result<()> {
    let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = crate::rights::cli::services(config).await?;
    let result = crate::rights::cli::run(&app, command, &mut std::io::stdout()).await;
    app.audit.shutdown().await;
    result
}

/// Runs an `incident` command on the configured store, journaled like the DPO's pages.
async fn incident(path: Option<PathBuf>, command: crate::incidents::cli::IncidentCommand) -> anyhow::Result<()> {
    let (config, store, audit) = start_audit(path).await?;
    let deps = Deps::default();
    let register = crate::incidents::IncidentRegister::new(store, Arc::new(audit), deps.clock, deps.random);
    let org = incident_organisation(&config);
    let result = crate::incidents::cli::run(&register, &org, command, &mut std::io::stdout()).await;
    register.shutdown().await;
    result
}

/// The controller and DPO the CNIL form names, from the policies when they load.
fn incident_organisation(config: &Validated) -> crate::incidents::cnil::Organisation {
    let commune = &config.settings.commune.name;
    match load_policies(config, None) {
        Some(set) => crate::incidents::cnil::Organisation::of(&set, commune),
        None => crate::incidents::cnil::Organisation { name: commune.clone(), ..Default::default() },
    }
}

/// Runs a `retention` command (plan, run, holds) on the configured store.
async fn retention(path: Option<PathBuf>, command: crate::retention::cli::RetentionCommand) -> anyhow::Result<()> {
    let config = load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::retention::cli::run(config, command).await
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
