//! Whole-configuration checks: everything `guichet check` can find without binding sockets.

use secrecy::{ExposeSecret, SecretString};

use super::problems::{ConfigError, Problem};
use super::{
    AUDIT_KEEP_MAX, AUDIT_KEEP_MIN, AuthSecrets, CONFIG_VERSION, KeysSettings, Loaded, ProviderSettings, RouteAccess,
    Validated,
};
use crate::routing::RouteTable;
use crate::tls;

pub(super) fn validate(loaded: &Loaded) -> Result<Validated, ConfigError> {
    let s = &loaded.settings;
    let src = &loaded.source;
    let mut problems: Vec<Problem> = Vec::new();

    if s.version != CONFIG_VERSION {
        problems.push(src.problem(
            "version",
            format!("version {} is not supported; this binary reads version {CONFIG_VERSION}", s.version),
        ));
    }
    if let Some(t) = &s.server.tls {
        if let Err(e) = tls::load_cert_chain(&t.cert) {
            problems.push(src.problem("server.tls.cert", e.to_string()));
        }
        if let Err(e) = tls::load_private_key(&t.key) {
            problems.push(src.problem("server.tls.key", e.to_string()));
        }
        if tls::parse_min_version(&t.min_version).is_none() {
            problems.push(src.problem(
                "server.tls.min_version",
                format!("`{}` is not accepted: use \"1.2\" or \"1.3\"", t.min_version),
            ));
        }
    }
    if s.server.max_header_bytes < 1024 {
        problems.push(src.problem("server.max_header_bytes", "must be at least 1024"));
    }
    if s.server.max_body_bytes == 0 {
        problems.push(src.problem("server.max_body_bytes", "must be at least 1"));
    }
    if s.server.keepalive_timeout.is_zero() {
        problems.push(src.problem("server.keepalive_timeout", "must be longer than zero"));
    }
    if s.admin.enabled && s.admin.listen.port() != 0 && s.admin.listen == s.server.listen {
        problems.push(src.problem("admin.listen", "must differ from server.listen"));
    }
    if s.store.max_connections == 0 {
        problems.push(src.problem("store.max_connections", "must be at least 1"));
    }
    audit(loaded, &mut problems);
    if let Some(m) = s.dpo.min_acr.as_deref().filter(|m| crate::routing::acr_level(m).is_none()) {
        problems.push(src.problem("dpo.min_acr", format!("`{m}` is not a level: use eidas1, eidas2 or eidas3")));
    }
    if let Some(k) = &s.keys {
        problems.extend(keys_problems(k, src));
    }
    let store_url = store_url(loaded).map_err(|p| problems.push(p)).ok();
    let routes = match RouteTable::compile(&s.routes, s.server.max_body_bytes) {
        Ok(t) => Some(t),
        Err(errs) => {
            problems.extend(errs.into_iter().map(|(k, m)| src.problem(&k, m)));
            None
        }
    };
    for (i, r) in s.routes.iter().enumerate() {
        if let Some(ca) = &r.upstream_ca_file
            && let Err(e) = tls::load_cert_chain(ca)
        {
            problems.push(src.problem(&format!("routes[{i}].upstream_ca_file"), e.to_string()));
        }
    }
    let auth_secrets = validate_auth(loaded, &mut problems);
    let smtp_password = super::notify::validate(loaded, &mut problems);
    super::retention::validate(loaded, &mut problems);
    if loaded.settings.jobs.lease < std::time::Duration::from_secs(1) {
        problems.push(loaded.source.problem("jobs.lease", "must be at least 1s"));
    }
    match (store_url, routes) {
        (Some(store_url), Some(routes)) if problems.is_empty() => {
            Ok(Validated { settings: s.clone(), store_url, routes, auth_secrets, smtp_password, source: src.clone() })
        }
        _ => Err(ConfigError { problems }),
    }
}

/// The keyring and identity files may not exist yet (`guichet keys init` creates them), so
/// only their declaration is checked here; `serve` refuses to start if they cannot be opened.
fn keys_problems(k: &KeysSettings, src: &super::SourceMap) -> Vec<Problem> {
    let mut problems = Vec::new();
    if k.keyring.as_os_str().is_empty() {
        problems.push(src.problem("keys.keyring", "must name the keyring file"));
    }
    let ways = [k.identity_file.is_some(), k.passphrase.is_some(), k.passphrase_file.is_some()];
    match ways.iter().filter(|w| **w).count() {
        0 => problems.push(src.problem(
            "keys",
            "give how to open the keyring: `identity_file` (age X25519 identity) or `passphrase` / `passphrase_file`",
        )),
        1 => {}
        _ => problems.push(
            src.problem("keys.identity_file", "give only one of `identity_file`, `passphrase` and `passphrase_file`"),
        ),
    }
    if k.cache_size == 0 {
        problems.push(src.problem("keys.cache_size", "must be at least 1"));
    }
    if k.cache_ttl.is_zero() {
        problems.push(src.problem("keys.cache_ttl", "must be longer than 0s"));
    }
    if k.tombstones_path() == k.keyring {
        problems.push(src.problem("keys.tombstones_file", "must differ from keys.keyring"));
    }
    if k.transform_max_bytes == 0 {
        problems.push(src.problem("keys.transform_max_bytes", "must be at least 1"));
    }
    for (i, c) in k.reveal_clients.iter().enumerate() {
        let key = |field: &str| format!("keys.reveal_clients[{i}].{field}");
        if crate::audit::Ident::new(c.name.clone()).is_err() {
            problems.push(src.problem(&key("name"), "must be 1 to 128 letters, digits, `.`, `-`, `_` or `:`"));
        }
        let hex = c.token_sha256.len() == 64 && c.token_sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex {
            problems.push(src.problem(&key("token_sha256"), "must be the 64 hex digits of the token's SHA-256"));
        }
        if c.purposes.is_empty() || c.fields.is_empty() {
            problems.push(src.problem(&key("purposes"), "name at least one purpose and one field"));
        }
        if c.per_minute == 0 {
            problems.push(src.problem(&key("per_minute"), "must be at least 1"));
        }
    }
    problems
}

fn store_url(loaded: &Loaded) -> Result<SecretString, Problem> {
    let s = &loaded.settings;
    let src = &loaded.source;
    let url = match (&s.store.url, &s.store.url_file) {
        (Some(_), Some(_)) => {
            return Err(src.problem("store.url_file", "give either store.url or store.url_file, not both"));
        }
        (Some(u), None) => u.expose_secret().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| src.problem("store.url_file", format!("cannot read {}: {e}", path.display())))?
            .trim_end()
            .to_owned(),
        (None, None) => format!("sqlite://{}", s.data_dir.join("guichet.db").display()),
    };
    let key = if s.store.url_file.is_some() { "store.url_file" } else { "store.url" };
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        // The URL may hold a password: name the scheme only.
        let scheme = url.split(':').next().unwrap_or_default();
        return Err(src.problem(key, format!("unsupported store `{scheme}:`; use sqlite://PATH or postgres://…")));
    }
    Ok(SecretString::from(url))
}

/// `[auth]`, `server.public_url` and the routes' access settings, which only make sense
/// together (a citizen route needs a citizen provider, a provider needs a public URL).
fn validate_auth(loaded: &Loaded, problems: &mut Vec<Problem>) -> AuthSecrets {
    let s = &loaded.settings;
    let src = &loaded.source;
    let a = &s.auth;
    if !a.cookie_name.starts_with("__Host-") || a.cookie_name.len() <= "__Host-".len() {
        problems.push(src.problem("auth.cookie_name", "must start with `__Host-` (a cookie bound to this exact host)"));
    }
    if !a.cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        problems.push(src.problem("auth.cookie_name", "may only hold letters, digits, `-` and `_`"));
    }
    for (key, d) in [
        ("auth.session_idle_timeout", a.session_idle_timeout),
        ("auth.session_absolute_timeout", a.session_absolute_timeout),
        ("auth.assertion_lifetime", a.assertion_lifetime),
        ("auth.max_token_age", a.max_token_age),
    ] {
        if d.is_zero() {
            problems.push(src.problem(key, "must be longer than zero"));
        }
    }
    if a.session_idle_timeout > a.session_absolute_timeout {
        problems.push(src.problem("auth.session_idle_timeout", "must not exceed auth.session_absolute_timeout"));
    }
    if let Some(path) = &a.assertion_key_file
        && let Err(e) = crate::auth::assertion::AssertionKey::from_pem_file(path)
    {
        problems.push(src.problem("auth.assertion_key_file", e.to_string()));
    }
    let pseudonym_key =
        secret_or_file(loaded, "auth.pseudonym_key", a.pseudonym_key.as_ref(), a.pseudonym_key_file.as_ref())
            .map_err(|p| problems.push(p))
            .ok()
            .flatten();
    if pseudonym_key.as_ref().is_some_and(|k| k.expose_secret().len() < 32) {
        problems.push(src.problem("auth.pseudonym_key", "must be at least 32 characters long"));
    }
    if a.dpo_role.trim().is_empty() {
        problems.push(src.problem("auth.dpo_role", "must not be empty (the DPO's register page would admit no one)"));
    }
    let any_provider = a.has_citizen_provider() || a.agent.is_some();
    match &s.server.public_url {
        Some(u) => {
            if let Err(m) = check_public_url(u) {
                problems.push(src.problem("server.public_url", m));
            }
        }
        None if any_provider => {
            problems.push(src.problem("server.public_url", "is required when a sign-in provider is configured"));
        }
        None => {}
    }
    let citizen_client_secret = a.citizen.as_ref().and_then(|p| validate_provider(loaded, "auth.citizen", p, problems));
    let citizen_providers_client_secrets = a
        .citizen_providers
        .iter()
        .enumerate()
        .map(|(i, p)| validate_provider(loaded, &format!("auth.citizen_providers[{i}]"), p, problems))
        .collect();
    citizen_providers_problems(loaded, problems);
    let agent_client_secret = a.agent.as_ref().and_then(|p| validate_provider(loaded, "auth.agent", p, problems));
    for (i, rule) in a.agent_roles.iter().enumerate() {
        if rule.role.trim().is_empty() {
            problems.push(src.problem(&format!("auth.agent_roles[{i}].role"), "must not be empty"));
        }
        if rule.siret.is_empty() && rule.email_domains.is_empty() && rule.uids.is_empty() {
            problems.push(src.problem(
                &format!("auth.agent_roles[{i}]"),
                "needs at least one condition (siret, email_domains or uids), or it would grant the role to every agent",
            ));
        }
    }
    for (i, r) in s.routes.iter().enumerate() {
        let missing = match r.access {
            RouteAccess::Citizen if !a.has_citizen_provider() => Some("auth.citizen"),
            RouteAccess::Agent if a.agent.is_none() => Some("auth.agent"),
            _ => None,
        };
        if let Some(section) = missing {
            problems.push(src.problem(&format!("routes[{i}].access"), format!("needs a [{section}] provider")));
        }
        for role in &r.roles {
            if !a.agent_roles.iter().any(|rule| &rule.role == role) {
                problems.push(src.problem(
                    &format!("routes[{i}].roles"),
                    format!("no rule in auth.agent_roles grants the role `{role}`"),
                ));
            }
        }
    }
    AuthSecrets { pseudonym_key, citizen_client_secret, agent_client_secret, citizen_providers_client_secrets }
}

/// Several citizen providers: each named, once; each level listed a real eIDAS level; and
/// every citizen route's level served by one of them.
fn citizen_providers_problems(loaded: &Loaded, problems: &mut Vec<Problem>) {
    let s = &loaded.settings;
    let src = &loaded.source;
    let providers = s.auth.citizen_providers();
    let mut seen = std::collections::HashSet::new();
    for (name, key, p) in &providers {
        let well_formed = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            problems.push(src.problem(
                &format!("{key}.name"),
                "needs a name of 1 to 64 letters, digits, `-` or `_` (e.g. \"franceconnect\")",
            ));
        } else if !seen.insert(name.clone()) {
            problems.push(src.problem(&format!("{key}.name"), format!("`{name}` names two citizen providers")));
        }
        for v in &p.acr_values {
            if crate::routing::acr_level(v).is_none() {
                problems.push(src.problem(
                    &format!("{key}.acr_values"),
                    format!("`{v}` is not an eIDAS level (eidas1, eidas2, eidas3)"),
                ));
            }
        }
    }
    if providers.is_empty() {
        return;
    }
    let served = |level: u8| {
        providers.iter().any(|(_, _, p)| {
            p.acr_values.is_empty()
                || p.acr_values.iter().any(|v| crate::routing::acr_level(v).is_some_and(|l| l >= level))
        })
    };
    for (i, r) in s.routes.iter().enumerate() {
        let level = r.min_acr.as_deref().and_then(crate::routing::acr_level).unwrap_or(1);
        if r.access == RouteAccess::Citizen && !served(level) {
            problems.push(src.problem(
                &format!("routes[{i}].min_acr"),
                format!("no citizen provider serves eidas{level} or higher (see `acr_values`)"),
            ));
        }
    }
}

fn validate_provider(
    loaded: &Loaded,
    key: &str,
    p: &ProviderSettings,
    problems: &mut Vec<Problem>,
) -> Option<SecretString> {
    let src = &loaded.source;
    if let Err(m) = crate::auth::oidc::check_issuer(&p.issuer) {
        problems.push(src.problem(&format!("{key}.issuer"), m));
    }
    if p.client_id.trim().is_empty() {
        problems.push(src.problem(&format!("{key}.client_id"), "must not be empty"));
    }
    if !matches!(p.auth_method.as_str(), "client_secret_post" | "client_secret_basic") {
        problems.push(src.problem(
            &format!("{key}.auth_method"),
            format!("`{}` is not supported: use client_secret_post or client_secret_basic", p.auth_method),
        ));
    }
    if crate::routing::acr_level(&p.acr).is_none() {
        problems.push(
            src.problem(&format!("{key}.acr"), format!("`{}` is not an eIDAS level (eidas1, eidas2, eidas3)", p.acr)),
        );
    }
    let secret = secret_or_file(
        loaded,
        &format!("{key}.client_secret"),
        p.client_secret.as_ref(),
        p.client_secret_file.as_ref(),
    )
    .map_err(|e| problems.push(e))
    .ok()
    .flatten();
    if secret.is_none() {
        problems.push(src.problem(&format!("{key}.client_secret"), "is required (or client_secret_file)"));
    }
    secret
}

/// A secret given inline or in a file (never both); the file's trailing newline is ignored.
pub(super) fn secret_or_file(
    loaded: &Loaded,
    key: &str,
    inline: Option<&SecretString>,
    file: Option<&std::path::PathBuf>,
) -> Result<Option<SecretString>, Problem> {
    let src = &loaded.source;
    match (inline, file) {
        (Some(_), Some(_)) => {
            Err(src.problem(&format!("{key}_file"), format!("give either {key} or {key}_file, not both")))
        }
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|v| Some(SecretString::from(v.trim_end().to_owned())))
            .map_err(|e| src.problem(&format!("{key}_file"), format!("cannot read {}: {e}", path.display()))),
        (None, None) => Ok(None),
    }
}

fn check_public_url(u: &str) -> Result<(), String> {
    let url = url::Url::parse(u).map_err(|e| format!("`{u}` is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{u}` must start with https:// (or http:// on loopback)"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!("`{u}` must be an origin only, without path, query or credentials"));
    }
    if url.scheme() == "http" && !url.host_str().is_some_and(crate::auth::is_loopback_host) {
        return Err(format!("`{u}`: plain http is only allowed on loopback; use https://"));
    }
    Ok(())
}
fn audit(loaded: &Loaded, problems: &mut Vec<Problem>) {
    let a = &loaded.settings.audit;
    let src = &loaded.source;
    if !(1..=10_000).contains(&a.batch_max_entries) {
        problems.push(src.problem("audit.batch_max_entries", "must be between 1 and 10000"));
    }
    if a.batch_max_delay > std::time::Duration::from_secs(5) {
        // Queued entries wait this long at most: it bounds what a crash can lose.
        problems.push(src.problem("audit.batch_max_delay", "must be at most 5s"));
    }
    if a.checkpoint_every_entries == 0 {
        problems.push(src.problem("audit.checkpoint_every_entries", "must be at least 1"));
    }
    if a.checkpoint_every < std::time::Duration::from_secs(1) {
        problems.push(src.problem("audit.checkpoint_every", "must be at least 1s"));
    }
    if a.retention.prune_every < std::time::Duration::from_secs(60) {
        problems.push(src.problem("audit.retention.prune_every", "must be at least 1m"));
    }
    let keep = a.retention.keep;
    if keep < AUDIT_KEEP_MIN {
        problems.push(src.problem(
            "audit.retention.keep",
            "must be at least 6 months (CNIL recommendation for access logs: 6 to 12 months)",
        ));
    }
    let justified = a.retention.justification.as_deref().is_some_and(|j| !j.trim().is_empty());
    if keep > AUDIT_KEEP_MAX && !justified {
        problems.push(src.problem(
            "audit.retention.keep",
            "more than 12 months needs audit.retention.justification (a legal obligation or the threat level)",
        ));
    }
    if let Some(path) = &a.signing_key_file {
        // A missing file is generated by `serve`; one that exists must be a usable key.
        if path.exists()
            && let Err(e) = crate::audit::Signer::load(path)
        {
            problems.push(src.problem("audit.signing_key_file", e.to_string()));
        }
    }
}
