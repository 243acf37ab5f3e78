//! Logging setup: `RUST_LOG` filters, `STOPCASTER_LOG_FORMAT` picks text or JSON lines.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to stderr.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format.eq_ignore_ascii_case("json") {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}
