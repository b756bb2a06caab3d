//! Whole-configuration checks: everything `guichet check` can find without binding sockets.

use secrecy::{ExposeSecret, SecretString};

use super::problems::{ConfigError, Problem};
use super::{CONFIG_VERSION, KeysSettings, Loaded, Validated};
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
    if s.admin.enabled && s.admin.listen.port() != 0 && s.admin.listen == s.server.listen {
        problems.push(src.problem("admin.listen", "must differ from server.listen"));
    }
    if s.store.max_connections == 0 {
        problems.push(src.problem("store.max_connections", "must be at least 1"));
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
        if let Some(ca) = &r.upstream_ca_file {
            if let Err(e) = tls::load_cert_chain(ca) {
                problems.push(src.problem(&format!("routes[{i}].upstream_ca_file"), e.to_string()));
            }
        }
    }
    match (store_url, routes) {
        (Some(store_url), Some(routes)) if problems.is_empty() => {
            Ok(Validated { settings: s.clone(), store_url, routes })
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
