//! `guichet`: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: a proxied request makes dozens of small
/// allocations (headers, bodies, futures), and glibc malloc cost about a seventh of the
/// gateway's CPU under load (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    without_huge_pages();
    let cli = guichet::cli::Cli::parse();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(guichet::cli::run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Transparent huge pages off for the whole process, before the runtime allocates: mimalloc
/// asks for them on its arenas, and with them every idle keep-alive connection held 28.7 KiB
/// instead of 16.8 and the idle process 45 MiB instead of 23, for no measurable gain in CPU
/// per request (docs/performance.md, "What changed the numbers (session 19)"). An operator
/// who sets mimalloc's own `MIMALLOC_ALLOW_THP` decides instead. Best effort: a kernel
/// without the setting keeps its default.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}
