//! Real application stacks behind the gateway: PHP's built-in server and Python WSGI servers
//! (waitress, gunicorn, the standard library's wsgiref) run the small applications under
//! `tests/stacks/`, which report what they bound — `$_GET`/`$_POST`/`$_SERVER['HTTP_*']`/
//! `json_decode`, or the WSGI environ, `parse_qs` and `json.loads` — in their answer and, one
//! JSON line per request, in a log the test reads. The spelling tests (`spellings`) check
//! with them that no spelling of a declared or reserved name reaches an application in clear.
//!
//! A stack that is not installed here is reported as `ignored` with the reason (build.rs sets
//! one cfg per stack), as the browser tests are.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::{TestApp, free_port, route, spawn_app, test_keys};

/// The application servers the tests know how to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `php -S` (Debian `php-cli`): maps `_`, `-` and `.` in header names to `_`, mangles
    /// request-variable names.
    Php,
    /// waitress (Debian `python3-waitress`): drops header names holding `_`.
    Waitress,
    /// gunicorn (Debian `gunicorn`): before 22.0 maps `_` and `-` to the same variable.
    Gunicorn,
    /// wsgiref, in every Python: maps `_` and `-` to the same variable.
    Wsgiref,
}

impl Kind {
    fn command(self, port: u16, dir: &Path) -> Command {
        let stacks = dir.join("tests/stacks");
        let listen = format!("127.0.0.1:{port}");
        let mut c = match self {
            Kind::Php => {
                let mut c = Command::new("php");
                c.args(["-d", "display_errors=stderr", "-S", &listen]).arg(stacks.join("php/bind.php"));
                c
            }
            // Debian's python3, where the Debian packages are (not a python3 first on PATH).
            Kind::Waitress => {
                let mut c = Command::new("/usr/bin/python3");
                c.args(["-m", "waitress", &format!("--listen={listen}"), "bind:app"]);
                c
            }
            Kind::Gunicorn => {
                let mut c = Command::new("/usr/bin/python3");
                c.args(["-m", "gunicorn", "--workers", "1", "--bind", &listen, "bind:app"]);
                c
            }
            Kind::Wsgiref => {
                let mut c = Command::new("/usr/bin/python3");
                c.args(["bind.py", &port.to_string()]);
                c
            }
        };
        c.current_dir(stacks.join(if self == Kind::Php { "php" } else { "wsgi" }));
        c
    }
}

/// One running application server; stopped (its whole process group) when dropped.
pub struct Stack {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        // gunicorn forks a worker: the group goes, not only the process we started.
        let _ = Command::new("kill").arg("--").arg(format!("-{}", self.child.id())).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Stack {
    /// Starts `kind` on a free loopback port and waits until it accepts connections.
    pub async fn start(kind: Kind) -> Stack {
        use std::os::unix::process::CommandExt as _;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("bound.jsonl");
        let addr = free_port();
        let out = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = kind
            .command(addr.port(), Path::new(env!("CARGO_MANIFEST_DIR")))
            .env("STACK_LOG", &log)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {kind:?}: {e}"));
        let mut stack = Stack { kind, addr, child, log, _dir: dir };
        stack.wait_until_listening().await;
        stack
    }

    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{:?} exited before listening ({status}): {}", self.kind, self.server_log());
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "{:?} did not listen within 15 s: {}", self.kind, self.server_log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the application bound, one value per request it received: `get`, `post`,
    /// `json` and `server` (the `HTTP_*` variables).
    pub fn bound(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{:?} logged {l:?}: {e}", self.kind)))
            .collect()
    }
}

/// The policy the stack tests put in front of the applications (`/dossier/*`).
pub const DOSSIER: &str = include_str!("../stacks/dossier.toml");

/// A gateway whose only route sends everything to `stack`, with the `dossier` activity and a
/// keyring (its fields are pseudonymised, so anonymous requests reach the application).
pub struct Behind {
    pub app: TestApp,
    pub stack: Stack,
    _keys: TempDir,
}

pub async fn behind_gateway(kind: Kind) -> Behind {
    behind_gateway_with(kind, DOSSIER).await
}

/// The same, with `policy` in place of the `dossier` activity.
pub async fn behind_gateway_with(kind: Kind, policy: &str) -> Behind {
    let stack = Stack::start(kind).await;
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = test_keys(keys_dir.path());
    let up = format!("http://{}", stack.addr);
    let app = spawn_app()
        .without_default_route()
        .with_policies(&[("dossier.toml", policy)])
        .with(move |s, _| {
            let mut r = route("stack", "/", &up);
            r.no_personal_data = false;
            s.routes.push(r);
            s.keys = Some(keys);
        })
        .start()
        .await;
    Behind { app, stack, _keys: keys_dir }
}

/// Every string in `v`, member names included: where a value or a name could show.
pub fn strings(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => stack.extend(a),
            Value::Object(m) => {
                for (k, v) in m {
                    out.push(k.clone());
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    out
}

/// The `HTTP_*` variable `name` as the application bound it, for each request.
pub fn server_var(bound: &[Value], name: &str) -> Vec<String> {
    bound.iter().filter_map(|b| b["server"][name].as_str().map(str::to_owned)).collect()
}

const FORM: &str = "application/x-www-form-urlencoded";

/// The declared spelling reaches the application as a pseudonym, an undeclared field in
/// clear: the stack binds what the gateway forwards, so a canary found nowhere means
/// something.
async fn declared_fields_reach_the_application_pseudonymised(kind: Kind) {
    let b = behind_gateway(kind).await;
    let r = b
        .app
        .client
        .post(b.app.url("/dossier/depot?nom=CANARI-Q&ville=Demoville"))
        .header("content-type", FORM)
        .header("x-numero-allocataire", "CANARI-H")
        .body("nom=CANARI-F&inscription%5Bcourriel%5D=CANARI-B&commentaire=en+clair")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let bound = b.stack.bound();
    assert_eq!(bound.len(), 1, "{bound:?}");
    let seen = &bound[0];
    assert!(seen["get"]["nom"].to_string().contains("gchp1."), "{seen}");
    assert!(seen["post"]["nom"].to_string().contains("gchp1."), "{seen}");
    assert!(seen["post"]["inscription"].to_string().contains("gchp1.") || kind != Kind::Php, "{seen}");
    assert!(server_var(&bound, "HTTP_X_NUMERO_ALLOCATAIRE")[0].starts_with("gchp1."), "{seen}");
    assert!(seen["get"]["ville"].to_string().contains("Demoville"), "undeclared, in clear: {seen}");
    assert!(seen["post"]["commentaire"].to_string().contains("en clair"), "{seen}");
    assert!(strings(seen).iter().all(|s| !s.contains("CANARI")), "{seen}");
}

/// Without the gateway, the stacks do bind look-alikes of reserved names to the reserved
/// variables: the classes the spelling tests send are real, not hypothetical.
#[tokio::test]
#[cfg_attr(not(guichet_php_tests), ignore = "real-stack test: install php-cli (Debian) to run it")]
async fn without_the_gateway_php_binds_look_alikes_of_reserved_headers() {
    crate::helpers::init();
    let stack = Stack::start(Kind::Php).await;
    let client = reqwest::Client::new();
    let r = client.get(stack.url("/")).header("X_Guichet_Subject", "forged").header("X.Guichet.Purpose", "p").send();
    assert_eq!(r.await.unwrap().status(), 200);
    let bound = stack.bound();
    assert_eq!(server_var(&bound, "HTTP_X_GUICHET_SUBJECT"), ["forged"]);
    assert_eq!(server_var(&bound, "HTTP_X_GUICHET_PURPOSE"), ["p"], "`.` too, by PHP's variable-name mangling");
}

#[tokio::test]
#[cfg_attr(not(guichet_php_tests), ignore = "real-stack test: install php-cli (Debian) to run it")]
async fn php_binds_declared_fields_as_pseudonyms() {
    declared_fields_reach_the_application_pseudonymised(Kind::Php).await;
}

#[tokio::test]
#[cfg_attr(not(guichet_waitress_tests), ignore = "real-stack test: install python3-waitress (Debian) to run it")]
async fn waitress_binds_declared_fields_as_pseudonyms() {
    declared_fields_reach_the_application_pseudonymised(Kind::Waitress).await;
}

#[tokio::test]
#[cfg_attr(not(guichet_gunicorn_tests), ignore = "real-stack test: install gunicorn (Debian) to run it")]
async fn gunicorn_binds_declared_fields_as_pseudonyms() {
    declared_fields_reach_the_application_pseudonymised(Kind::Gunicorn).await;
}

#[tokio::test]
#[cfg_attr(not(guichet_wsgiref_tests), ignore = "real-stack test: needs /usr/bin/python3 (Debian python3)")]
async fn wsgiref_binds_declared_fields_as_pseudonyms() {
    declared_fields_reach_the_application_pseudonymised(Kind::Wsgiref).await;
}

/// An empty value of a declared field reaches the application empty, in every place, so its
/// own "required field" check still sees it; a non-empty one beside it is pseudonymised.
#[tokio::test]
#[cfg_attr(not(guichet_php_tests), ignore = "real-stack test: install php-cli (Debian) to run it")]
async fn empty_declared_values_reach_php_empty() {
    let b = behind_gateway(Kind::Php).await;
    let send = |ct: &'static str, body: &'static str| {
        b.app
            .client
            .post(b.app.url("/dossier/depot?nom=&date_naissance=CANARI"))
            .header("content-type", ct)
            .header("x-numero-allocataire", "")
            .body(body)
            .send()
    };
    assert_eq!(send(FORM, "nom=&inscription%5Bcourriel%5D=").await.unwrap().status(), 200);
    assert_eq!(send("application/json", r#"{"nom": "", "enfants": [{"prenom": ""}]}"#).await.unwrap().status(), 200);
    let bound = b.stack.bound();
    assert_eq!(bound.len(), 2);
    for seen in &bound {
        assert_eq!(seen["get"]["nom"], "", "{seen}");
        assert!(seen["get"]["date_naissance"].as_str().unwrap().starts_with("gchp1."), "{seen}");
        assert_eq!(seen["server"]["HTTP_X_NUMERO_ALLOCATAIRE"], "", "{seen}");
    }
    assert_eq!(bound[0]["post"]["nom"], "");
    assert_eq!(bound[0]["post"]["inscription"]["courriel"], "");
    assert_eq!(bound[1]["json"]["nom"], "");
    assert_eq!(bound[1]["json"]["enfants"]["0"]["prenom"], "");
}
