//! `guichet demo`: the whole product on one machine with no set-up — an embedded SQLite
//! store in a data directory it creates, and a demonstration town-hall application behind the
//! gateway, all on loopback.

pub mod idp;
pub mod townhall;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::{Application, Deps};
use crate::config::{Loaded, ProviderSettings, RoleRule, RouteAccess, RouteSettings, TimeoutSettings};
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

    let public_url = format!("http://{}", opts.listen);
    let deps = Deps::default();
    let idp = idp::start(opts.listen.ip(), &public_url, deps.clock.clone()).await?;

    let mut loaded = Loaded::defaults();
    let s = &mut loaded.settings;
    s.data_dir = opts.data_dir.clone();
    s.server.listen = opts.listen;
    s.server.public_url = Some(public_url);
    s.admin.listen = opts.admin_listen;
    configure_sign_in(s, &idp);
    let upstream = format!("http://{townhall}");
    let claims = |c: &[&str]| c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    s.routes.push(demo_route("mairie", "/", &upstream, RouteAccess::Public, Vec::new()));
    s.routes.push(demo_route(
        "cantine",
        "/cantine",
        &upstream,
        RouteAccess::Citizen,
        claims(&["given_name", "family_name"]),
    ));
    s.routes.push(demo_route(
        "etat-civil",
        "/etat-civil",
        &upstream,
        RouteAccess::Citizen,
        claims(&["given_name", "family_name", "birthdate", "birthplace", "birthcountry"]),
    ));
    let mut back_office =
        demo_route("back-office", "/recu", &upstream, RouteAccess::Agent, claims(&["usual_name", "email"]));
    back_office.roles = vec!["etat-civil".into()];
    s.routes.push(back_office);
    let config = loaded.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    telemetry::init(&config.settings.log);
    let app = Application::build(config, deps).await?;
    let url = format!("http://{}/", app.public_addr());
    let mut out = std::io::stdout();
    let _ = writeln!(out, "\nGuichet demo is running.\n");
    let _ = writeln!(out, "  Open {url} in your browser.");
    let _ = writeln!(out, "  Citizen pages: {url}cantine, {url}etat-civil (sign in with a test citizen)");
    let _ = writeln!(out, "  Agent back-office: {url}recu (sign in with a test agent)");
    let _ = writeln!(out, "  Demonstration identity provider: {}", idp.citizen_issuer);
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

/// The demo provider's two issuers, and a role rule for the demo town hall's agents.
fn configure_sign_in(s: &mut crate::config::Settings, idp: &idp::DemoIdp) {
    let provider = |issuer: &str| ProviderSettings {
        issuer: issuer.to_owned(),
        client_id: idp::CLIENT_ID.into(),
        client_secret: Some(secrecy::SecretString::from(idp::CLIENT_SECRET)),
        client_secret_file: None,
        auth_method: "client_secret_post".into(),
        scopes: vec!["openid".into(), "identite_pivot".into(), "email".into()],
        acr: "eidas1".into(),
        prompt_login: false,
        userinfo_signed: true,
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
        role: "agent".into(),
        siret: vec![idp::DEMO_SIRET.into()],
        email_domains: vec![idp::DEMO_DOMAIN.into()],
        uids: Vec::new(),
    });
}

fn demo_route(name: &str, prefix: &str, upstream: &str, access: RouteAccess, claims: Vec<String>) -> RouteSettings {
    RouteSettings {
        name: name.into(),
        host: None,
        path_prefix: prefix.into(),
        upstream: upstream.into(),
        strip_prefix: false,
        upstream_ca_file: None,
        timeouts: TimeoutSettings::default(),
        max_body_bytes: None,
        access,
        min_acr: None,
        roles: Vec::new(),
        claims,
        api: false,
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}
