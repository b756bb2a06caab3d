//! The command line tells the truth: every problem at once, no "valid" about nothing, valid
//! names in place of serde jargon, no store created by a command that only reads one, and
//! each cause said once. Each test runs the built binary as an operator would.

use std::path::Path;
use std::process::Output;

const CANTINE: &str = include_str!("../../policies/cantine.toml");

fn guichet(args: &[&str]) -> Output {
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
