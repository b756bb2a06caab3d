//! `guichet`: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    guichet::cli::run(guichet::cli::Cli::parse()).await
}
