//! The command line tells the truth: every problem at once, no "valid" about nothing, valid
//! names in place of serde jargon, no store created by a command that only reads one, and
//! each cause said once. Each test runs the built binary as an operator would.

use std::path::Path;
use std::process::Output;

const CANTINE: &str = include_str!("../../policies/cantine.toml");

pub(crate) fn guichet(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(args)
        .env_remove("GUICHET_CONFIG")
        .env_remove("GUICHET_LOG")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A valid configuration whose data directory is `data_dir`.
fn config(dir: &Path, data_dir: &Path) -> String {
    let file = dir.join("guichet.toml");
    let toml = format!(
        "version = 1\ndata_dir = {:?}\n\n[[routes]]\nname = \"app\"\npath_prefix = \"/\"\n\
         upstream = \"http://127.0.0.1:9\"\nno_personal_data = true\n",
        data_dir.display().to_string()
    );
    std::fs::write(&file, toml).unwrap();
    file.display().to_string()
}

#[test]
fn check_reports_every_problem_of_the_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let text = "version = 1\nbogus = 1\n[server]\nlisten = \"x\"\nalso_wrong = true\n\
                [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"ftp://x\"\n";
    std::fs::write(&file, text).unwrap();
    let out = guichet(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("the configuration has 4 problems"), "{err}");
    for (line, what) in [("2:1", "unknown field `bogus`"), ("4:10", "socket address"), ("5:1", "`also_wrong`")] {
        assert!(err.contains(&format!("bad.toml:{line}: ")) && err.contains(what), "{line} {what}: {err}");
    }
    assert!(err.contains("bad.toml:9:") && err.contains("must start with http:// or https://"), "{err}");
}

#[test]
fn policy_commands_refuse_a_missing_or_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), dir.path());
    let missing = dir.path().join("missing");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (d, why) in [(&missing, "does not exist"), (&empty, "holds no processing activity")] {
        let d = d.to_str().unwrap();
        for args in [&["policy", "check"][..], &["policy", "register", "--format", "json"]] {
            let out = guichet(&[args, &["--config", &conf, "--dir", d]].concat());
            assert_eq!(out.status.code(), Some(1), "{args:?} {d}");
            let err = stderr(&out);
            assert!(err.contains(d) && err.contains(why), "{args:?}: {err}");
            assert!(!String::from_utf8_lossy(&out.stdout).contains("valid"), "{args:?} says valid");
            assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("registre"));
        }
    }
}

#[test]
fn a_wrong_legal_basis_names_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), dir.path());
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let wrong = CANTINE.replacen("legal_basis = \"public_task\"", "legal_basis = \"mission_publique\"", 1);
    assert_ne!(wrong, CANTINE);
    std::fs::write(policies.join("cantine.toml"), wrong).unwrap();
    let out = guichet(&["policy", "check", "--config", &conf, "--dir", policies.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("`mission_publique`") && err.contains("`public_task`") && err.contains("`consent`"), "{err}");
    assert!(!err.contains("untagged"), "{err}");
}

/// One application, one sector: `guichet policy check` refuses a configured route that sends
/// pseudonyms and is reached by two sectors' activities (the canteen's and the civil
/// registry's APIs under one `/api`), naming the route, both sectors and where; the same
/// policies pass once each API has its own route.
#[test]
fn check_refuses_a_route_serving_two_sectors() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("cantine.toml"), CANTINE).unwrap();
    std::fs::write(policies.join("etat-civil.toml"), include_str!("../../policies/etat-civil.toml")).unwrap();
    let route = |name: &str, prefix: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"http://127.0.0.1:9\"\n\
             access = \"citizen\"\napi = true\n"
        )
    };
    let check = |routes: &str| {
        let file = dir.path().join("guichet.toml");
        let toml = format!(
            "version = 1\ndata_dir = {:?}\n\n[server]\npublic_url = \"https://mairie.example\"\n\n\
             [auth.citizen]\nissuer = \"https://idp.example.fr/api/v2\"\nclient_id = \"guichet\"\n\
             client_secret = \"secret-de-test\"\n\n[[routes]]\nname = \"portail\"\npath_prefix = \"/\"\n\
             upstream = \"http://127.0.0.1:9\"\nno_personal_data = true\n\n{routes}",
            dir.path().display().to_string()
        );
        std::fs::write(&file, toml).unwrap();
        guichet(&["policy", "check", "--config", file.to_str().unwrap(), "--dir", policies.to_str().unwrap()])
    };
    let out = check(&route("api", "/api"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("etat-civil.toml:")
            && err.contains("the route `api` would serve the sectors `scolaire` (activity `cantine`, ")
            && err.contains("cantine.toml:135) and `etat_civil` (activity `etat-civil`)"),
        "{err}"
    );
    let apart = format!("{}\n{}", route("api", "/api"), route("api-demandes", "/api/demandes"));
    let out = check(&apart);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn audit_verify_on_a_wrong_data_directory_creates_nothing_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    // A signing key is there (copied from elsewhere), the store is not.
    guichet::audit::Signer::load_or_generate(&wrong.join("audit-signing-key.p8")).unwrap();
    let conf = config(dir.path(), &wrong);
    let out = guichet(&["audit", "verify", "--config", &conf]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let db = wrong.join("guichet.db");
    assert!(err.contains(&format!("no Guichet store at {}", db.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "said once: {err}");
    assert!(!db.exists(), "no store may be created");
}

#[test]
fn a_cause_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), &dir.path().join("nowhere"));
    let out = guichet(&["audit", "verify", "--config", &conf]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot read the audit signing key"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

pub(crate) mod rights {
    //! `guichet rights …` through the real binary, on the store a running gateway uses:
    //! requests filed through the service, then read and answered from the command line,
    //! with the rules of the API and the operator journaled as actor.

    use guichet::audit::{Actor, ActorKind, Ident};
    use guichet::clock::Clock as _;
    use guichet::rights::request::{Channel, IdentityProof, Right};
    use guichet::rights::service::{By, NewRequest};
    use secrecy::ExposeSecret;
    use serde_json::Value;

    use super::stderr;
    use crate::helpers::{Backend, TestApp, fresh_store_url, spawn_app};
    use crate::on_both_stores;

    /// A gateway whose clock is now (the command line reads the system clock), and a
    /// configuration file for the command line on its store.
    async fn gateway(backend: Backend, dir: &std::path::Path) -> (TestApp, String) {
        // The store lives in `dir`, so that it outlives the gateway.
        let url = fresh_store_url(backend, dir).await;
        let app = spawn_app().backend(backend).with_store_url(url).start().await;
        let now = guichet::clock::SystemClock.now();
        app.clock.advance(now - app.clock.now());
        let file = config_for(&app, dir);
        (app, file)
    }

    /// A configuration file in `dir` for the command line on `app`'s store (and `dir` as its
    /// data directory).
    pub(crate) fn config_for(app: &TestApp, dir: &std::path::Path) -> String {
        let file = dir.join("guichet.toml");
        let toml = format!(
            "version = 1\ndata_dir = {:?}\n\n[store]\nurl = {:?}\n\n[[routes]]\nname = \"app\"\npath_prefix = \"/\"\n\
             upstream = \"http://127.0.0.1:9\"\nno_personal_data = true\n",
            dir.display().to_string(),
            app.store_url.expose_secret(),
        );
        std::fs::write(&file, toml).unwrap();
        file.display().to_string()
    }

    pub(crate) async fn file(app: &TestApp, subject: &str, right: Right) -> String {
        let by = By {
            actor: Actor { kind: ActorKind::Citizen, id: Ident::new(subject).unwrap() },
            role: Ident::new("citizen").unwrap(),
        };
        let new = NewRequest {
            subject: subject.into(),
            activity: None,
            right,
            channel: Channel::Online,
            agent: None,
            identity: IdentityProof::SignIn { acr: "eidas1".into() },
        };
        app.state.rights.create(&app.state.policies.load(), new, &by).await.unwrap().id
    }

    /// Runs the binary without blocking the test's runtime (a gateway on it keeps running),
    /// and fails as a hang when it has not ended within a minute.
    pub(crate) async fn guichet_within_a_minute(args: &[&str]) -> std::process::Output {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
            .args(args)
            .env_remove("GUICHET_CONFIG")
            .env_remove("GUICHET_LOG")
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(std::time::Duration::from_secs(60), child)
            .await
            .unwrap_or_else(|_| panic!("`guichet {args:?}` hung"))
            .unwrap()
    }

    async fn ok(args: &[&str], conf: &str) -> String {
        let out = guichet_within_a_minute(&[args, &["--config", conf]].concat()).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    async fn refused(args: &[&str], conf: &str, why: &str) {
        let out = guichet_within_a_minute(&[args, &["--config", conf]].concat()).await;
        assert_eq!(out.status.code(), Some(1), "{args:?} must fail");
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }

    async fn operators_read_and_answer_the_queue(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let (app, conf) = gateway(backend, dir.path()).await;
        let first = file(&app, "sub_angela", Right::Access).await;
        app.clock.advance(time::Duration::minutes(1));
        let earlier = file(&app, "sub_bruno", Right::Access).await;
        app.clock.advance(time::Duration::minutes(1));
        let second = file(&app, "sub_bruno", Right::Rectification).await;
        // The gateway stops, and the test waits until it has: dropping it and sleeping a
        // moment could leave it in the middle of its last journal write when this thread then
        // blocked on a command (the gateway runs on this test's runtime), the write's lock on
        // the journal's head never released, and `rights extend`, the first command to
        // journal, waiting for it for ever (the likely "extend hang", docs/rights.md).
        let url = app.store_url.clone();
        app.stop().await;

        let table = ok(&["rights", "list"], &conf).await;
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("REFERENCE") && lines[0].contains("DUE"), "{table}");
        assert!(lines[1].starts_with(&first) && lines[3].starts_with(&second), "oldest first: {table}");
        let list: Value = serde_json::from_str(&ok(&["rights", "list", "--json"], &conf).await).unwrap();
        assert_eq!(list["requests"].as_array().unwrap().len(), 3);
        let mine: Value =
            serde_json::from_str(&ok(&["rights", "list", "--subject", "sub_angela", "--json"], &conf).await).unwrap();
        assert_eq!(mine["requests"][0]["id"], first.as_str());

        let shown: Value = serde_json::from_str(&ok(&["rights", "show", &first, "--json"], &conf).await).unwrap();
        assert_eq!((shown["status"].as_str(), shown["overdue"].as_bool()), (Some("received"), Some(false)));
        assert!(ok(&["rights", "show", &first], &conf).await.contains("identity: sign-in (eidas1)"));

        let extended: Value = serde_json::from_str(
            &ok(&["rights", "extend", &first, "--months", "2", "--reason", "Cinq services concernés", "--json"], &conf)
                .await,
        )
        .unwrap();
        assert_eq!(extended["extensions"][0]["months"], 2);
        let three = guichet_within_a_minute(&[
            "rights", "extend", &second, "--months", "3", "--reason", "x", "--config", &conf,
        ])
        .await;
        assert_eq!(three.status.code(), Some(2), "more than two months is a usage error");
        refused(&["rights", "extend", &first, "--months", "1", "--reason", "Encore"], &conf, "at most two in all")
            .await;

        refused(&["rights", "refuse", &second, "--reason", " "], &conf, "a refusal needs its reason").await;
        refused(
            &["rights", "refuse", &second, "--ground", "unfounded-or-excessive", "--reason", "Répétée"],
            &conf,
            "must link the earlier requests",
        )
        .await;
        let r = ok(
            &[
                "rights",
                "refuse",
                &second,
                "--ground",
                "unfounded-or-excessive",
                "--earlier",
                &earlier,
                "--reason",
                "Répétée",
            ],
            &conf,
        )
        .await;
        assert!(r.contains("refused: Répétée"), "{r}");

        refused(&["rights", "complete", &first, "--summary", " "], &conf, "summary").await;
        let done: Value = serde_json::from_str(
            &ok(&["rights", "complete", &first, "--summary", "Vos données sont jointes.", "--partly", "--json"], &conf)
                .await,
        )
        .unwrap();
        assert_eq!(
            (done["status"].as_str(), done["answer"]["summary"].as_str()),
            (Some("partly_completed"), Some("Vos données sont jointes."))
        );
        refused(&["rights", "show", "DR-0000-0000"], &conf, "no such request").await;
        assert_eq!(ok(&["rights", "list"], &conf).await.lines().count(), 2, "one open request left");

        // Journaled with the operator as actor.
        let store = guichet::store::Store::connect(&url, &guichet::store::StoreOptions::default()).await.unwrap();
        let entries = store.audit().entries_after(0, 10_000).await.unwrap();
        let by_operator: Vec<Value> = entries
            .iter()
            .map(|e| serde_json::from_str::<Value>(&e.body).unwrap())
            .filter(|b| b["actor"]["id"] == "operator")
            .collect();
        let stages: Vec<&str> = by_operator.iter().map(|b| b["operation"]["stage"].as_str().unwrap()).collect();
        assert_eq!(stages, ["extended", "refused", "in_progress", "partly_completed"]);
        assert!(by_operator.iter().all(|b| b["actor"]["kind"] == "system" && b["role"] == "operator"));
    }

    /// `guichet rights link`: the DPO's join of a citizen's sectors needs a reason from the
    /// closed list (the refusal names the allowed ones), shows each sector's pseudonyms
    /// recorded with the request, and journals `sectors_linked:<reason>` with the operator.
    async fn the_sector_join_from_the_command_line_needs_a_listed_reason(backend: Backend) {
        use guichet::rights::propagation::{SectorSubjects, Subjects};
        let dir = tempfile::tempdir().unwrap();
        let (app, conf) = gateway(backend, dir.path()).await;
        let recorded = Subjects {
            field: "champ-general".into(),
            routes: Default::default(),
            sectors: [(
                "scolaire".to_owned(),
                SectorSubjects { field: "champ-ecole".into(), consent: "accord-ecole".into() },
            )]
            .into(),
        };
        app.state.rights.remember_subjects("sub_angela", &recorded).await.unwrap();
        let id = file(&app, "sub_angela", Right::Access).await;
        let without = file(&app, "sub_bruno", Right::Access).await;
        let url = app.store_url.clone();
        app.stop().await;

        // No reason, or one outside the list: a usage error naming the allowed values.
        let out = guichet_within_a_minute(&["rights", "link", &id, "--config", &conf]).await;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("--reason"), "{}", stderr(&out));
        let out = guichet_within_a_minute(&["rights", "link", &id, "--reason", "curiosite", "--config", &conf]).await;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("one of: litigation, inspection, subject_request, legal_obligation"), "{err}");
        // A citizen who recorded no pseudonyms: said as such, not "no such request".
        refused(&["rights", "link", &without, "--reason", "inspection"], &conf, "recorded no pseudonyms").await;

        let store = guichet::store::Store::connect(&url, &guichet::store::StoreOptions::default()).await.unwrap();
        let linked = || async {
            let entries = store.audit().entries_after(0, 10_000).await.unwrap();
            entries
                .iter()
                .map(|e| serde_json::from_str::<Value>(&e.body).unwrap())
                .filter(|b| b["operation"]["stage"].as_str().is_some_and(|s| s.starts_with("sectors_linked:")))
                .collect::<Vec<_>>()
        };
        assert!(linked().await.is_empty(), "a refused join journals nothing");

        // With a listed reason: every sector's pseudonyms, the step journaled on the request.
        let shown: Value =
            serde_json::from_str(&ok(&["rights", "link", &id, "--reason", "litigation", "--json"], &conf).await)
                .unwrap();
        let sectors = shown["sectors"].as_array().unwrap();
        let school = sectors.iter().find(|s| s["sector"] == "scolaire").expect("the school sector");
        assert_eq!((school["field"].as_str(), school["consent"].as_str()), (Some("champ-ecole"), Some("accord-ecole")));
        let general = sectors.iter().find(|s| s["sector"] == "general").expect("the general sector");
        assert_eq!(
            (general["field"].as_str(), general["consent"].as_str()),
            (Some("champ-general"), Some("sub_angela"))
        );
        let table = ok(&["rights", "link", &id, "--reason", "inspection"], &conf).await;
        assert!(table.lines().any(|l| l.starts_with("scolaire") && l.contains("champ-ecole")), "{table}");
        let steps = linked().await;
        let stages: Vec<&str> = steps.iter().map(|b| b["operation"]["stage"].as_str().unwrap()).collect();
        assert_eq!(stages, ["sectors_linked:litigation", "sectors_linked:inspection"]);
        assert!(steps.iter().all(|b| b["request_id"] == id.as_str() && b["actor"]["id"] == "operator"), "{steps:?}");
    }

    on_both_stores!(operators_read_and_answer_the_queue, the_sector_join_from_the_command_line_needs_a_listed_reason);
}

/// `guichet demo` keeps its terminal for the banner: the request log lines go to the file the
/// banner names, in the data directory, not between the banner's lines.
#[tokio::test]
async fn the_demo_banner_stays_readable_and_says_where_the_logs_go() {
    crate::helpers::init();
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let listen = format!("127.0.0.1:{}", ports[0]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["demo", "--listen", &listen, "--admin-listen", &format!("127.0.0.1:{}", ports[1])])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("GUICHET_CONFIG")
        .env_remove("GUICHET_LOG")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    // Requests through the gateway: each one is logged.
    let client = reqwest::Client::new();
    for path in ["/.guichet/health/live", "/", "/.guichet/informations"] {
        let status = client.get(format!("http://{listen}{path}")).send().await.map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(200), "{path}");
    }
    // The months of activity are seeded beside serving: wait for them (at most 5 minutes).
    let log_file = dir.path().join("guichet.log");
    for _ in 0..3000 {
        if std::fs::read_to_string(&log_file).is_ok_and(|l| l.contains("activity seeded")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    let rest: String = lines.map_while(Result::ok).collect::<Vec<_>>().join("\n");
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    child.wait().unwrap();
    assert!(banner.contains(&format!("Request logs: {}", log_file.display())), "{banner}");
    assert!(banner.contains("/.guichet/guichet-agent/"), "the counter is in the banner: {banner}");
    for out in [&banner, &rest, &stderr] {
        assert!(!out.contains("request") || !out.contains("status="), "a request log line on the terminal: {out}");
        assert!(!out.contains("INFO"), "log lines on the terminal: {out}");
    }
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.lines().filter(|l| l.contains("request") && l.contains("status=200")).count() >= 3, "{log}");
    // The banner's retention plan command, run as written: the plan on the simulated day
    // shows the demo's records ended, and nothing changes.
    let command = banner.lines().find(|l| l.contains("retention plan --date")).expect("the banner's plan command");
    let args: Vec<&str> = command.split_once("guichet demo ").unwrap().1.split_whitespace().collect();
    let plan = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
            .arg("demo")
            .args(&args)
            .env_remove("GUICHET_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let out = plan();
    let has = |activity: &str, action: &str| out.lines().any(|l| l.starts_with(activity) && l.contains(action));
    assert!(has("voirie", "destroy") && has("voirie", "anonymise") && has("cantine", "archive_review"), "{out}");
    assert!(out.contains("would act on"), "{out}");
    assert_eq!(plan(), out, "a plan changes nothing");
}
