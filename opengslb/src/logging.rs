//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG` or the `--log-level` flag.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once. `RUST_LOG` wins over `level`; the default is `info`.
pub fn init(level: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
