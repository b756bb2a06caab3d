//! Release builds' profile-guided optimisation (docs/performance.md): cargo runs rustc through
//! `pgo/rustc-wrapper`, which adds the committed profile to optimised builds and to nothing else,
//! and the toolchain that builds the project can read that profile.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn profile() -> PathBuf {
    repo().join("pgo/guichet.profdata")
}

/// The arguments the wrapper hands to rustc for `args` (`echo` stands in for rustc).
fn passed(args: &[&str], pgo: Option<&str>) -> String {
    let mut cmd = Command::new(repo().join("pgo/rustc-wrapper"));
    cmd.arg("echo").args(args).env_remove("GUICHET_PGO");
    if let Some(v) = pgo {
        cmd.env("GUICHET_PGO", v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn cargo_builds_through_the_wrapper() {
    let config = std::fs::read_to_string(repo().join(".cargo/config.toml")).unwrap();
    let table: toml::Table = config.parse().unwrap();
    assert_eq!(table["build"]["rustc-wrapper"].as_str(), Some("pgo/rustc-wrapper"));
    assert!(profile().is_file(), "the profile is committed");
}

#[test]
fn optimised_builds_get_the_profile_and_no_other_build_does() {
    let used = format!("-C profile-use={}", profile().canonicalize().unwrap().display());
    let release = ["--crate-name", "guichet", "-C", "opt-level=3", "src/lib.rs"];
    assert_eq!(passed(&release, None), format!("{} {used}", release.join(" ")));
    assert_eq!(
        passed(&["--crate-name", "ring", "-Copt-level=3"], None),
        format!("--crate-name ring -Copt-level=3 {used}")
    );
    let unchanged: [&[&str]; 6] = [
        &["--crate-name", "guichet", "-C", "opt-level=0", "src/lib.rs"],
        &["-vV"],
        &["-C", "opt-level=3", "-C", "profile-generate=/tmp/counts"],
        &["-C", "opt-level=3", "-C", "passes=sancov-module", "-Zsanitizer=address"],
        &["-C", "opt-level=3", "-C", "instrument-coverage"],
        &["-C", "opt-level=3", "-C", "profile-use=/elsewhere.profdata"],
    ];
    for args in unchanged {
        assert_eq!(passed(args, None), args.join(" "), "{args:?}");
    }
    assert_eq!(passed(&release, Some("0")), release.join(" "), "GUICHET_PGO=0 turns it off");
}

/// What rustc says on its standard error when it builds `source` with opt-level 3 and the
/// profile `profile` (it must build either way: an unreadable profile is only a warning).
fn warnings_with(profile: &Path, source: &Path, out: &Path) -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut use_profile = std::ffi::OsString::from("profile-use=");
    use_profile.push(profile);
    let done = Command::new(rustc)
        .args(["-C", "opt-level=3", "-C"])
        .arg(&use_profile)
        .arg("-o")
        .arg(out)
        .arg(source)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&done.stderr).into_owned();
    assert!(done.status.success(), "{said}");
    said
}

#[test]
fn this_toolchain_reads_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("main.rs");
    std::fs::write(&source, "fn main() { println!(\"ok\"); }\n").unwrap();
    let said = warnings_with(&profile(), &source, &dir.path().join("main"));
    assert!(!said.contains("warning"), "rustc cannot use the profile, and would build without it: {said}");
    // A profile rustc cannot read is named in a warning, so that silence above means something.
    let broken = dir.path().join("broken.profdata");
    std::fs::write(&broken, b"not a profile").unwrap();
    let said = warnings_with(&broken, &source, &dir.path().join("b"));
    assert!(said.contains("invalid instrumentation profile data"), "{said}");
}
