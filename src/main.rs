//! `guichet`: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: a proxied request makes dozens of small
/// allocations (headers, bodies, futures), and glibc malloc cost about a seventh of the
/// gateway's CPU under load (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    guichet::cli::run(guichet::cli::Cli::parse()).await
}
