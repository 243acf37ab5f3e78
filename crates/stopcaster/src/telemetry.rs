//! Logging setup: `RUST_LOG` filters (else the command's default), `STOPCASTER_LOG_FORMAT`
//! picks text or JSON lines; colour only on a terminal.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines are written (`STOPCASTER_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: one line per event, coloured on a terminal.
    #[default]
    Text,
    /// For collectors: one JSON object per line.
    Json,
}

/// Installs the global subscriber, writing to stderr. `default_filter` applies when `RUST_LOG`
/// is unset or empty.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    // Escape codes belong on a terminal only: redirected logs are read with tools that show
    // them as noise. NO_COLOR (https://no-color.org) turns them off on a terminal too.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        // An attempt's lines happen in its own span inside the job's: "span" is the innermost
        // (the attempt), "spans" every one from the job down, so a line keeps its job_id.
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        builder.init();
    }
}
