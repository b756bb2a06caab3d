//! Logging set-up. Nothing personal is ever logged: no query strings, cookies,
//! `Authorization`, bodies or raw paths — only route names, methods, statuses and ids.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogFormat, LogSettings};

/// Set once this process installed its global subscriber (`serve`, `demo`).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether the process logs through the subscriber `init` installed. When it does not (the
/// gateway embedded in a test, each with its own scoped subscriber), the serving lanes carry
/// each connection's subscriber over from the thread that accepted it
/// (`server::lanes`), so that what a request logs reaches the embedding code's subscriber.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

fn note_installed<E>(result: Result<(), E>) {
    if result.is_ok() {
        INSTALLED.store(true, Ordering::Relaxed);
    }
}

/// Installs the global subscriber. `RUST_LOG` (or `GUICHET_LOG`) wins over the configured
/// level. Safe to call twice: the second call does nothing.
pub fn init(settings: &LogSettings) {
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter(settings)).with_span_events(FmtSpan::NONE).with_target(false);
    note_installed(match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    });
}

fn filter(settings: &LogSettings) -> EnvFilter {
    std::env::var("GUICHET_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(&settings.level))
}

/// Like [`init`], appending to `file` instead of standard output: `guichet demo` keeps the
/// terminal for its banner.
pub fn init_to_file(settings: &LogSettings, file: std::fs::File) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(settings))
        .with_span_events(FmtSpan::NONE)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file));
    note_installed(match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    });
}
