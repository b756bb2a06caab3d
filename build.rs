//! Decides which optional test suites can run here, so that those that cannot are reported as
//! `ignored` with the reason (visibly) instead of silently passing:
//! - PostgreSQL store tests need `TEST_DATABASE_URL`;
//! - browser tests need Chromium and `npm ci --prefix tests/browser`;
//! - the interoperability test needs Node and `npm ci --prefix tests/oidc-provider`.
use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(guichet_pg_tests)");
    println!("cargo::rustc-check-cfg=cfg(guichet_browser_tests)");
    println!("cargo::rustc-check-cfg=cfg(guichet_oidc_provider_tests)");
    println!("cargo::rerun-if-env-changed=TEST_DATABASE_URL");
    if std::env::var_os("TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=guichet_pg_tests");
    }

    let chromium = Path::new("/usr/bin/chromium");
    let node = Path::new("/usr/bin/node");
    let browser_deps = Path::new("tests/browser/node_modules/playwright-core");
    // Directories, so that installing either later triggers a rebuild.
    println!("cargo::rerun-if-changed=/usr/bin");
    println!("cargo::rerun-if-changed=tests/browser/node_modules");
    if chromium.exists() && node.exists() && browser_deps.exists() {
        println!("cargo::rustc-cfg=guichet_browser_tests");
    }

    let provider_deps = Path::new("tests/oidc-provider/node_modules/oidc-provider");
    println!("cargo::rerun-if-changed=tests/oidc-provider/node_modules");
    if node.exists() && provider_deps.exists() {
        println!("cargo::rustc-cfg=guichet_oidc_provider_tests");
    }
}
