//! The pages in a real headless Chromium with axe-core accessibility checks. The suite itself
//! is JavaScript (playwright-core drives Debian's Chromium) under `tests/browser/`; this test
//! runs it against the binary cargo just built, so `cargo test` covers it.

use std::process::Command;

#[test]
#[cfg_attr(
    not(guichet_browser_tests),
    ignore = "browser tests: install chromium and run `npm ci --prefix tests/browser`"
)]
fn pages_pass_in_headless_chromium_with_axe() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec", "--test-concurrency=1"])
        .current_dir(&dir)
        .env("GUICHET_BIN", env!("CARGO_BIN_EXE_guichet"))
        .output()
        .expect("node must be installed to run the browser tests");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser suite failed:\n{report}");
    assert!(report.contains("ℹ fail 0"), "{report}");
}
