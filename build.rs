//! Lets the PostgreSQL variants of store tests be reported as `ignored` (visibly) when
//! `TEST_DATABASE_URL` is not set at build time, instead of silently passing.
fn main() {
    println!("cargo::rerun-if-env-changed=TEST_DATABASE_URL");
    if std::env::var_os("TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=guichet_pg_tests");
    }
}
