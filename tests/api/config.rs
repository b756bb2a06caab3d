//! Configuration loading and validation, as `guichet check` reports it.

use std::io::Write as _;
use std::process::Command;

use guichet::config::Loaded;

fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("guichet.toml");
    std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
    path
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn an_unknown_key_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "version = 1\n\n[server]\nlisten = \"127.0.0.1:8080\"\nlistne = \"typo\"\n");
    let err = Loaded::load(Some(&path), no_env()).unwrap_err().to_string();
    assert!(err.contains(&format!("{}:5:", path.display())), "{err}");
    assert!(err.contains("listne"), "{err}");
}

#[test]
fn a_wrong_type_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "version = 1\n[store]\nmax_connections = \"ten\"\n");
    let err = Loaded::load(Some(&path), no_env()).unwrap_err().to_string();
    assert!(err.contains(":3:"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"version = 1

[server.tls]
cert = "/nonexistent/cert.pem"
key = "/nonexistent/key.pem"

[[routes]]
name = "a"
path_prefix = "/a"
upstream = "ftp://files.example"

[[routes]]
name = "b"
path_prefix = "/b"
upstream = "http://127.0.0.1:3000"

[[routes]]
name = "c"
path_prefix = "/b/"
upstream = "http://127.0.0.1:3001"
"#;
    let path = write(&dir, text);
    let loaded = Loaded::load(Some(&path), no_env()).unwrap();
    let err = loaded.validate().unwrap_err();
    let shown = err.to_string();
    let file = path.display().to_string();
    assert!(shown.contains(&format!("{file}:4:1: key `server.tls.cert`")), "{shown}");
    assert!(shown.contains(&format!("{file}:5:1: key `server.tls.key`")), "{shown}");
    assert!(shown.contains(&format!("{file}:10:1: key `routes[0].upstream`")), "{shown}");
    assert!(shown.contains("duplicate route"), "{shown}");
    assert!(shown.contains(&format!("{file}:19:1: key `routes[2].path_prefix`")), "{shown}");
    assert_eq!(err.problems.len(), 4, "{shown}");
}

#[test]
fn environment_overrides_win_and_are_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "version = 1\n[server]\nlisten = \"127.0.0.1:8080\"\n[[routes]]\nname = \"a\"\nupstream = \"http://a\"\n",
    );
    let env = vec![
        ("GUICHET_SERVER__LISTEN".to_owned(), "127.0.0.1:9999".to_owned()),
        ("GUICHET_ROUTES__0__UPSTREAM".to_owned(), "gopher://x".to_owned()),
        ("GUICHET_CONFIG".to_owned(), "ignored".to_owned()),
    ];
    let loaded = Loaded::load(Some(&path), env).unwrap();
    assert_eq!(loaded.settings.server.listen.port(), 9999);
    let err = loaded.validate().unwrap_err().to_string();
    assert!(err.contains("environment variable GUICHET_ROUTES__0__UPSTREAM"), "{err}");
}

#[test]
fn secrets_come_from_files_and_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("db-url");
    std::fs::write(&secret_file, "postgres://guichet:hunter2@db.internal/guichet\n").unwrap();
    let path = write(&dir, &format!("version = 1\n[store]\nurl_file = \"{}\"\n", secret_file.display()));
    let loaded = Loaded::load(Some(&path), no_env()).unwrap();
    let validated = loaded.validate().unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(validated.store_url.expose_secret(), "postgres://guichet:hunter2@db.internal/guichet");
    assert!(!format!("{validated:?}").contains("hunter2"));

    let inline = write(&dir, "version = 1\n[store]\nurl = \"postgres://u:hunter2@h/db\"\n");
    let loaded = Loaded::load(Some(&inline), no_env()).unwrap();
    assert!(!format!("{loaded:?}").contains("hunter2"));
}

#[test]
fn guichet_check_exits_non_zero_and_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "version = 2\n[[routes]]\nname = \"a\"\nupstream = \"not a url\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_guichet")).args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(stderr.contains("key `version`"), "{stderr}");
    assert!(stderr.contains("key `routes[0].upstream`"), "{stderr}");
}

#[test]
fn the_shipped_example_configuration_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guichet.example.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["check", "--config"])
        .arg(&example)
        .env_remove("GUICHET_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_auth_problem_is_reported_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"version = 1

[auth]
cookie_name = "session"
session_idle_timeout = "13h"
pseudonym_key = "short"
dpo_role = " "

[auth.citizen]
issuer = "http://idp.example.fr/api/v2"
client_id = "guichet"
auth_method = "client_secret_jwt"
acr = "eidas9"

[[auth.agent_roles]]
role = "etat-civil"

[[routes]]
name = "agents"
path_prefix = "/agents"
upstream = "http://127.0.0.1:3000"
access = "agent"
roles = ["dpo"]
"#;
    let path = write(&dir, text);
    let err = Loaded::load(Some(&path), no_env()).unwrap().validate().unwrap_err();
    let shown = err.to_string();
    let file = path.display().to_string();
    for (line, key) in [
        (4, "auth.cookie_name"),
        (5, "auth.session_idle_timeout"),
        (6, "auth.pseudonym_key"),
        (7, "auth.dpo_role"),
        (10, "auth.citizen.issuer"),
        (12, "auth.citizen.auth_method"),
        (13, "auth.citizen.acr"),
        (22, "routes[0].access"),
        (23, "routes[0].roles"),
    ] {
        assert!(shown.contains(&format!("{file}:{line}:1: key `{key}`")), "{key} at line {line}:\n{shown}");
    }
    for key in ["server.public_url", "auth.citizen.client_secret", "auth.agent_roles[0]"] {
        assert!(shown.contains(&format!("key `{key}`")), "{key}:\n{shown}");
    }
    assert!(!shown.contains("short"), "secrets are never shown: {shown}");
}

#[test]
fn keys_problems_are_reported_with_key_and_line_and_the_section_stays_optional() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"version = 1

[keys]
keyring = "/etc/guichet/keyring.age"
identity_file = "/etc/guichet/identity.txt"
passphrase = "do-not-print-me"
cache_size = 0
"#;
    let path = write(&dir, text);
    let err = Loaded::load(Some(&path), no_env()).unwrap().validate().unwrap_err();
    let shown = err.to_string();
    let file = path.display().to_string();
    assert!(shown.contains(&format!("{file}:5:1: key `keys.identity_file`: give only one")), "{shown}");
    assert!(shown.contains(&format!("{file}:7:1: key `keys.cache_size`")), "{shown}");
    assert!(!shown.contains("do-not-print-me"));
    assert!(!format!("{:?}", Loaded::load(Some(&path), no_env()).unwrap()).contains("do-not-print-me"));

    let none = write(&dir, "version = 1\n[keys]\nkeyring = \"k.age\"\n");
    let err = Loaded::load(Some(&none), no_env()).unwrap().validate().unwrap_err().to_string();
    assert!(err.contains("key `keys`: give how to open the keyring"), "{err}");

    let env = vec![("GUICHET_KEYS__IDENTITY_FILE".to_owned(), "/run/secrets/identity".to_owned())];
    let ok = Loaded::load(Some(&none), env).unwrap().validate().unwrap();
    let keys = ok.settings.keys.unwrap();
    assert_eq!(keys.identity_file.as_deref(), Some(std::path::Path::new("/run/secrets/identity")));
    assert_eq!(keys.tombstones_path(), std::path::PathBuf::from("k.age.tombstones"));
    assert!(Loaded::defaults().validate().unwrap().settings.keys.is_none());
}
