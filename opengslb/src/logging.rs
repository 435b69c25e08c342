//! Logging setup: `tracing` to stderr, as the config's `logging` section says (level, and `json` or
//! `text`), with `--log-level` and then `RUST_LOG` winning over the file's level.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

/// Installs the subscriber once. The level is `RUST_LOG`'s if set, else `cli_level`, else the config's,
/// else `info`. The format is the config's (the original's default, `json`, when the file has no
/// `logging` section); commands that read no config log text.
pub fn init(cli_level: Option<&str>, config: Option<&LoggingConfig>) {
    let level = cli_level.unwrap_or_else(|| config.map_or("info", |c| c.level.as_str()));
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.is_some_and(|c| c.format == LogFormat::Json) {
        // One object per line with the event's fields at the top level, as log shippers expect.
        builder.json().flatten_event(true).try_init()
    } else {
        // Colour codes only for a terminal: a log file or journal gets plain text.
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}
