//! The `logging` section: how verbose the logs are and how they are written.

use std::fmt;

use serde::Deserialize;

use super::de;

/// The `logging` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// The least severe level logged: `error`, `warn`, `info`, `debug` or `trace` (`trace` is ours); any
    /// case. `RUST_LOG`, when set, wins. Default `info`.
    #[serde(default)]
    pub level: LogLevel,
    /// `json` (one object per line) or `text` (for people); any case. Default `json`, as in the original's
    /// code and docs.
    #[serde(default)]
    pub format: LogFormat,
}

/// A log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational messages and above.
    #[default]
    Info,
    /// Debug messages and above.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The name, as written in config files and understood by `tracing`'s filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Self::Error),
            "warn" | "warning" => Ok(Self::Warn),
            "" | "info" => Ok(Self::Info),
            "debug" => Ok(Self::Debug),
            "trace" => Ok(Self::Trace),
            _ => Err(format!(
                "unknown log level {s:?} (expected one of error, warn, info, debug, trace)"
            )),
        }
    }
}

de::deserialize_from_str!(LogLevel, "a log level: error, warn, info, debug or trace");

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable text.
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "" | "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err(format!("unknown log format {s:?} (expected json or text)")),
        }
    }
}

de::deserialize_from_str!(LogFormat, "a log format: json or text");
