//! `guichet demo`: the whole product on one machine with no set-up — an embedded SQLite
//! store in a data directory it creates, and a demonstration town-hall application behind the
//! gateway, all on loopback.

pub mod activity;
pub mod idp;
pub mod townhall;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::{Application, Deps, spawn_policy_reloader};
use crate::clock::{Clock as _, SystemClock, SystemRandom};
use crate::config::{KeysSettings, Loaded, ProviderSettings, RoleRule, RouteAccess, RouteSettings};
use crate::crypto::admin;
use crate::policy::PolicySource;
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
    /// Instead of serving: a command on the demo's data, e.g. `guichet demo retention plan
    /// --date 2027-09-01` (the retention plan on a simulated day).
    #[command(subcommand)]
    pub command: Option<DemoCommand>,
}

/// What `guichet demo` can do on its data besides serving it.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DemoCommand {
    /// `guichet retention …` on the demo's store and policies (plan with `--date`, run,
    /// elimination lists…); the demo's months of activity are seeded first if missing.
    #[command(subcommand)]
    Retention(crate::retention::cli::RetentionCommand),
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    for (addr, flag) in [(opts.listen, "--listen"), (opts.admin_listen, "--admin-listen")] {
        if !is_loopback(addr.ip()) {
            anyhow::bail!("{flag} {addr}: the demo only listens on loopback (127.0.0.1 or ::1)");
        }
    }
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("cannot create the data directory {}", opts.data_dir.display()))?;
    let public_url = format!("http://{}", opts.listen);
    let townhall = start_townhall(&public_url).await?;

    let deps = Deps::default();
    let idp = idp::start(opts.listen.ip(), &public_url, deps.clock.clone()).await?;

    let mut loaded = Loaded::defaults();
    let s = &mut loaded.settings;
    s.data_dir = opts.data_dir.clone();
    s.server.listen = opts.listen;
    s.server.public_url = Some(public_url);
    s.admin.listen = opts.admin_listen;
    configure_sign_in(s, &idp);
    // The demo's agents may record consents at the counter (assisted channel).
    s.consent.assisted_roles = vec!["agent".into(), "etat-civil".into(), "accueil".into()];
    // The counter files rights requests with citizens (assisted mode).
    s.rights.assisted_roles = vec!["accueil".into()];
    s.routes.extend(demo_routes(&format!("http://{townhall}")));
    s.keys = Some(demo_keys(&opts.data_dir)?);
    // Notices go to a local outbox read at /.guichet/demo/boite-mail (docs/notify.md).
    s.notify = demo_notify(&opts.data_dir);
    // The seeded months are dated in the past: sign checkpoints often so that "verify now"
    // finds them covered a few seconds after the first start.
    s.audit.checkpoint_every = std::time::Duration::from_secs(10);
    let config = loaded.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    // `./policies` when it exists (edit it and see the reload), else the embedded examples.
    let source = PolicySource::DirOrEmbedded(config.settings.policy.dir.clone());
    if let Some(DemoCommand::Retention(command)) = opts.command.clone() {
        let application = crate::retention::cli::build(config, deps, source).await?;
        activity::seed_if_empty(&application.state()).await?;
        return crate::retention::cli::execute(&application.state(), command).await;
    }
    // Request logs go to a file, so the banner stays readable (it says where).
    let log_path = opts.data_dir.join(LOG_FILE);
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open the log file {}", log_path.display()))?;
    telemetry::init_to_file(&config.settings.log, log_file);
    let app = Application::build_with_policies(config, deps, source).await?;
    // Seeded beside serving, so the demo answers at once; the console fills in within seconds.
    let seeded = app.state();
    tokio::spawn(async move {
        match activity::seed_if_empty(&seeded).await {
            Ok(true) => tracing::info!("demo: a few months of activity seeded for the DPO's console"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "demo: the activity could not be seeded"),
        }
    });
    let url = format!("http://{}/", app.public_addr());
    let mut out = std::io::stdout();
    let _ = writeln!(out, "\nGuichet demo is running.\n");
    let _ = writeln!(out, "  Open {url} in your browser.");
    let _ = writeln!(out, "  Citizen pages: {url}cantine, {url}etat-civil (sign in with a test citizen)");
    let _ = writeln!(
        out,
        "  Without signing in: {url}voirie/signalements/ (name and e-mail sealed under the report's own key)"
    );
    let _ = writeln!(
        out,
        "  Newsletter (asks for consent): {url}lettre-information/ — your consents: {url}.guichet/consentement/"
    );
    let _ =
        writeln!(out, "  Agent back-office: {url}recu (the tokens the application stored; sign in with a test agent)");
    let _ = writeln!(
        out,
        "  Canteen registrations: {url}recu/cantine (Sophie LEROY sees the values, Lucie MARTIN the placeholder)"
    );
    let _ = writeln!(out, "  E-mails sent to citizens (demo outbox): {url}.guichet/demo/boite-mail");
    let _ = writeln!(out, "  DPO register: {url}.guichet/dpo/registre (sign in as Nadia BERGER, role dpo)");
    let _ = writeln!(out, "  DPO console: {url}.guichet/dpo/ (Nadia BERGER; a few months of activity are seeded)");
    let _ = writeln!(
        out,
        "  Elimination lists: {url}.guichet/archives/ (sign in as Anne DUBOIS, archivist; one list waits for a visa)"
    );
    let _ = writeln!(
        out,
        "  Retention plan on a simulated day (another terminal): guichet demo --data-dir {} retention plan --date {}",
        opts.data_dir.display(),
        activity::plan_day(crate::clock::paris_date(app.state().clock.now()))
    );
    let _ = writeln!(out, "  Supervision: {url}.guichet/pilotage/ (sign in as Élise MOREAU, elected official)");
    let _ = writeln!(out, "  Demonstration identity provider: {}", idp.citizen_issuer);
    let _ = writeln!(out, "  Demo town-hall application (behind the gateway): http://{townhall}/");
    if let Some(admin) = app.admin_addr() {
        let _ = writeln!(out, "  Metrics: http://{admin}/metrics");
    }
    let _ = writeln!(
        out,
        "  Counter (assisted mode): {url}.guichet/guichet-agent/ (sign in as Claire MOREAU, role accueil)"
    );
    let _ = writeln!(out, "  Request logs: {}", log_path.display());
    let _ = writeln!(out, "  Data directory: {}\n\nPress Ctrl-C to stop.\n", opts.data_dir.display());
    let stop = app.shutdown_handle();
    let _reloader = spawn_policy_reloader(app.state(), stop.subscribe());
    tokio::spawn(async move {
        crate::cli::shutdown_signal().await;
        let _ = stop.send(true);
    });
    app.run_until_stopped().await;
    Ok(())
}

/// The demo's routes, all to the town-hall application. Deny by default stays meaningful:
/// `/cantine`, `/etat-civil` and `/api` carry personal data and only what an activity claims
/// passes (`/api/echo` is refused); `accueil` (`/`: the home page and the `/recu` diagnostic
/// page of the demo) is declared without personal data. A real `/recu`-like back-office
/// listing records would be an activity route reserved to agents.
pub fn demo_routes(upstream: &str) -> Vec<RouteSettings> {
    let claims = |c: &[&str]| c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut accueil = demo_route("accueil", "/", upstream, RouteAccess::Public, Vec::new());
    accueil.no_personal_data = true;
    let cantine =
        demo_route("cantine", "/cantine", upstream, RouteAccess::Citizen, claims(&["given_name", "family_name"]));
    let etat_civil = demo_route(
        "etat-civil",
        "/etat-civil",
        upstream,
        RouteAccess::Citizen,
        claims(&["given_name", "family_name", "birthdate", "birthplace", "birthcountry"]),
    );
    let mut api = demo_route("api", "/api", upstream, RouteAccess::Citizen, claims(&["given_name", "family_name"]));
    api.api = true;
    // The civil registry's API is in another sector than the canteen's (`/api/inscriptions`):
    // its own route, so that no application receives one pseudonym for both (docs/policies.md).
    let mut api_etat_civil = demo_route(
        "api-etat-civil",
        "/api/demandes",
        upstream,
        RouteAccess::Citizen,
        claims(&["given_name", "family_name"]),
    );
    api_etat_civil.api = true;
    // The demo's "what the application received" page, for agents. It lists stored records, so
    // calling it "no personal data" is a demo compromise (docs/policies.md).
    let mut back_office =
        demo_route("back-office", "/recu", upstream, RouteAccess::Agent, claims(&["usual_name", "email"]));
    back_office.roles = vec!["etat-civil".into(), "agent-scolaire".into()];
    back_office.no_personal_data = true;
    // The newsletter rests on consent (policies/lettre-information.toml): the consent phase
    // sends citizens to `/.guichet/consentement/` until they agree.
    let mut lettre =
        demo_route("lettre-information", "/lettre-information", upstream, RouteAccess::Citizen, Vec::new());
    // Its bare page shows the gateway's bar (docs/privacy-centre.md).
    lettre.privacy_bar = true;
    // Street-issue reports (policies/voirie.toml, `anonymous = "sealed"`): no sign-in needed;
    // the reporter's name and e-mail are sealed under the report's own record.
    let voirie = demo_route("voirie", "/voirie", upstream, RouteAccess::Public, Vec::new());
    vec![accueil, cantine, etat_civil, api, api_etat_civil, back_office, lettre, voirie]
}

/// The demo's keyring, in its data directory, created on first run. A real installation
/// keeps the keyring and its identity apart from the store (docs/cryptography.md).
fn demo_notify(dir: &Path) -> crate::config::NotifySettings {
    crate::config::NotifySettings {
        outbox_dir: Some(dir.join("boite-mail")),
        // The console's alerts (docs/alerts.md) land in the same outbox.
        dpo_address: Some("dpo@demoville.invalid".into()),
        commune_name: "Mairie de Démoville".into(),
        from: "Mairie de Démoville <ne-pas-repondre@demoville.invalid>".into(),
        letter_return_address: vec!["1 place de la Mairie".into(), "00000 Démoville".into()],
        ..Default::default()
    }
}

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
pub async fn start_townhall(gateway_url: &str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.context("cannot start the demo application")?;
    let addr = listener.local_addr()?;
    let router = townhall::router_with_rights(gateway_url)?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "demo application stopped");
        }
    });
    Ok(addr)
}

/// The demo provider's two issuers, and a role rule for the demo town hall's agents.
fn configure_sign_in(s: &mut crate::config::Settings, idp: &idp::DemoIdp) {
    let provider = |issuer: &str| ProviderSettings {
        scopes: vec!["openid".into(), "identite_pivot".into(), "email".into()],
        ..ProviderSettings::new(issuer, idp::CLIENT_ID, secrecy::SecretString::from(idp::CLIENT_SECRET))
    };
    s.auth.citizen = Some(provider(&idp.citizen_issuer));
    s.auth.agent = Some(provider(&idp.agent_issuer));
    s.auth.agent_roles.push(RoleRule {
        role: "etat-civil".into(),
        siret: vec![idp::DEMO_SIRET.into()],
        email_domains: vec![idp::DEMO_DOMAIN.into()],
        uids: vec!["lucie".into()],
    });
    s.auth.agent_roles.push(RoleRule {
        role: "agent-scolaire".into(),
        siret: vec![idp::DEMO_SIRET.into()],
        email_domains: vec![idp::DEMO_DOMAIN.into()],
        uids: vec!["sophie".into()],
    });
    s.auth.agent_roles.push(RoleRule {
        role: "dpo".into(),
        siret: vec![idp::DEMO_SIRET.into()],
        email_domains: vec![idp::DEMO_DOMAIN.into()],
        uids: vec!["nadia".into()],
    });
    s.auth.agent_roles.push(RoleRule {
        role: "agent".into(),
        siret: vec![idp::DEMO_SIRET.into()],
        email_domains: vec![idp::DEMO_DOMAIN.into()],
        // Every service agent, not the DPO nor the elected official: "agent" records consents
        // at the counter, which the DPO may not do (separation of duties, auth::duties).
        uids: OPERATIONAL_AGENTS.iter().map(|u| (*u).to_owned()).collect(),
    });
    s.auth.agent_roles.push(RoleRule {
        role: s.retention.archivist_role.clone(),
        siret: vec![idp::DEMO_SIRET.into()],
        email_domains: vec![idp::DEMO_DOMAIN.into()],
        uids: vec!["anne".into()],
    });
    s.auth.agent_roles.push(RoleRule {
        role: "supervision".into(),
        siret: vec![idp::DEMO_SIRET.into()],
        email_domains: vec![idp::DEMO_DOMAIN.into()],
        uids: vec!["elise".into()],
    });
    for (role, uids) in SERVICE_ROLES {
        s.auth.agent_roles.push(RoleRule {
            role: (*role).into(),
            siret: vec![idp::DEMO_SIRET.into()],
            email_domains: vec![idp::DEMO_DOMAIN.into()],
            uids: uids.iter().map(|u| (*u).to_owned()).collect(),
        });
    }
}

/// The demo agents who serve the public (the DPO `nadia` and the elected official `elise` do not).
const OPERATIONAL_AGENTS: &[&str] = &["lucie", "hugo", "sophie", "marc", "samir", "julie", "emma", "claire"];

/// Where `guichet demo` writes its logs, in its data directory.
pub const LOG_FILE: &str = "guichet.log";

/// The roles the example policies name in `visible_to` (and the counter's `accueil`), each
/// with the demo agents (`uid` at the demo provider) holding it: one agent per service.
pub const SERVICE_ROLES: &[(&str, &[&str])] = &[
    ("officier-etat-civil", &["lucie"]),
    ("courrier", &["claire"]),
    ("accueil", &["claire"]),
    ("cuisine-centrale", &["marc"]),
    ("travailleur-social", &["samir"]),
    ("accueil-ccas", &["samir"]),
    ("service-communication", &["emma"]),
    ("agent-elections", &["julie"]),
    ("agent-voirie", &["hugo"]),
    ("equipe-intervention", &["hugo"]),
];

fn demo_route(name: &str, prefix: &str, upstream: &str, access: RouteAccess, claims: Vec<String>) -> RouteSettings {
    RouteSettings { access, claims, ..RouteSettings::new(name, prefix, upstream) }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{self, Decision, RequestFacts};
    use crate::routing::RouteTable;

    #[test]
    fn the_embedded_examples_cover_the_demo_routes_and_deny_the_rest() {
        let routes = demo_routes("http://127.0.0.1:1");
        let table = RouteTable::compile(&routes, 1024).unwrap();
        let source = PolicySource::Memory(policy::load::embedded_examples());
        let set = policy::load(&source, &table, &routes).unwrap();
        let decide = |route: &str, path: &str| {
            policy::decide(&set, &RequestFacts { route, host: None, path, method: &http::Method::POST })
        };
        assert!(matches!(decide("cantine", "/cantine"), Decision::Processing(p) if &*p.activity == "cantine"));
        assert!(matches!(decide("api", "/api/inscriptions"), Decision::Processing(p) if &*p.activity == "cantine"));
        assert!(
            matches!(decide("api-etat-civil", "/api/demandes"), Decision::Processing(p) if &*p.activity == "etat-civil")
        );
        assert_eq!(decide("api", "/api/echo"), Decision::Deny);
        assert_eq!(decide("accueil", "/"), Decision::Public);
        assert_eq!(decide("back-office", "/recu"), Decision::Public);
        // The canteen's back-office list is claimed by its activity: the gateway reveals there.
        assert!(matches!(decide("back-office", "/recu/cantine"), Decision::Processing(p) if &*p.activity == "cantine"));
        assert!(matches!(decide("lettre-information", "/lettre-information/"),
            Decision::Processing(p) if p.consent_required));
        // Street-issue reports: anonymous senders' fields sealed under their record.
        assert!(matches!(decide("voirie", "/voirie/signalements/"),
            Decision::Processing(p) if p.anonymous_sealed && &*p.activity == "voirie"));
        assert_eq!(decide("api", "/api/signalements"), Decision::Deny);
    }
}
