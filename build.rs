//! Decides which optional test suites can run here, so that those that cannot are reported as
//! `ignored` with the reason (visibly) instead of silently passing:
//! - PostgreSQL store tests need `TEST_DATABASE_URL`;
//! - browser tests need Chromium and `npm ci --prefix tests/browser`;
//! - the interoperability test needs Node and `npm ci --prefix tests/oidc-provider`;
//! - the real-stack tests need PHP's CLI and Debian's python3 with waitress and gunicorn;
//! - the e-mail tests need Debian's python3 with aiosmtpd (a real SMTP server on loopback).
use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(guichet_pg_tests)");
    println!("cargo::rustc-check-cfg=cfg(guichet_browser_tests)");
    println!("cargo::rustc-check-cfg=cfg(guichet_oidc_provider_tests)");
    for stack in ["php", "waitress", "gunicorn", "wsgiref", "smtp"] {
        println!("cargo::rustc-check-cfg=cfg(guichet_{stack}_tests)");
    }
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

    real_stacks();
}

/// One cfg per application server the real-stack tests run (tests/api/stacks.rs). Debian's
/// python3, where Debian's Python packages are installed.
fn real_stacks() {
    let python = Path::new("/usr/bin/python3");
    let packages = Path::new("/usr/lib/python3/dist-packages");
    println!("cargo::rerun-if-changed=/usr/lib/python3/dist-packages");
    let stacks = [
        ("php", Path::new("/usr/bin/php").exists()),
        ("waitress", python.exists() && packages.join("waitress").exists()),
        ("gunicorn", python.exists() && packages.join("gunicorn").exists()),
        ("wsgiref", python.exists()),
        ("smtp", python.exists() && packages.join("aiosmtpd").exists()),
    ];
    for (stack, here) in stacks {
        if here {
            println!("cargo::rustc-cfg=guichet_{stack}_tests");
        }
    }
}
