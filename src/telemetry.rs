//! Logging set-up. Nothing personal is ever logged: no query strings, cookies,
//! `Authorization`, bodies or raw paths — only route names, methods, statuses and ids.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG` (or `GUICHET_LOG`) wins over the configured
/// level. Safe to call twice: the second call does nothing.
pub fn init(settings: &LogSettings) {
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter(settings)).with_span_events(FmtSpan::NONE).with_target(false);
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
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
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
