//! Active health checks: what one probe of a backend is ([`Target`], [`CheckSpec`]), how it runs ([`Probe`]),
//! a scheduler that probes a set of targets on their intervals ([`Prober`]), and how results become a
//! verdict ([`Validation`], with the success and failure thresholds of [`CheckPolicy`]).
//!
//! Probes are plain observations: every result is reported, pass or fail, and whoever owns the verdict
//! (the registry for the overwatch's validation, the agent for its own checks) records it. The prober
//! only makes sure a fresh failure is confirmed quickly, by re-probing at once after the first failure
//! that follows a success.
//!
//! Unlike the Go original, an HTTP(S) probe sends the configured path and Host header (and the host as the TLS
//! server name), brackets IPv6 literals, and checks the configured statuses; TLS certificates are verified
//! unless the check opts out explicitly.

mod probe;
mod prober;
#[cfg(test)]
mod tests;
mod verdict;

use std::net::IpAddr;
use std::time::Duration;

use crate::config::{ExpectedStatus, HealthCheck, HealthCheckType};

pub use probe::{Probe, USER_AGENT, probe};
pub use prober::{Prober, Scheduled};
pub use verdict::{CheckOutcome, CheckPolicy, Validation, ValidationState, ewma};

/// One endpoint to probe: where, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The backend's address; IPv6 literals are bracketed in URLs.
    pub address: IpAddr,
    /// The port to probe.
    pub port: u16,
    /// What a probe sends and what passes.
    pub check: CheckSpec,
}

/// How to probe a target, and what counts as a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// `Http` or `Https`: one `GET` of `path`; `Tcp`: a connect, closed at once.
    pub kind: HealthCheckType,
    /// The request path (and query) of `Http`/`Https` probes; a missing leading `/` is added.
    pub path: String,
    /// The Host header of `Http`/`Https` probes, sent verbatim; for `Https`, when it is a DNS name, also the
    /// TLS server name (SNI) and the name the certificate is verified against. `None`: the Host header is the
    /// target's `address:port` and the certificate is verified against the address.
    pub host: Option<String>,
    /// The statuses that pass. Redirects are never followed, so a 3xx fails unless listed here.
    pub expected_status: StatusMatch,
    /// The most one probe may take, from the start of the connect to the response's status line.
    pub timeout: Duration,
    /// Verify the server's certificate in `Https` probes. `false` is an explicit opt-out, for self-signed
    /// backends; the default is `true`.
    pub tls_verify: bool,
}

impl CheckSpec {
    /// The check a config `health_check` block describes; `host` (a server's own `host` key) overrides the
    /// block's `host`. The block's `interval` is the scheduler's business: see [`Scheduled`].
    pub fn from_config(check: &HealthCheck, host: Option<&str>) -> Self {
        Self {
            kind: check.kind,
            path: check.path.clone(),
            host: host.map(str::to_owned).or_else(|| check.host.clone()),
            expected_status: StatusMatch::from(&check.expected_status),
            timeout: check.timeout,
            tls_verify: check.tls_verify,
        }
    }
}

/// The config's defaults: `http`, `/health`, no host, any 2xx, 5 s, TLS verified.
impl Default for CheckSpec {
    fn default() -> Self {
        Self::from_config(&HealthCheck::default(), None)
    }
}

/// The HTTP statuses that pass a probe: a union of inclusive ranges of codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMatch {
    ranges: Vec<(u16, u16)>,
}

impl StatusMatch {
    /// Any 2xx, the default (and all the original accepts).
    pub fn success() -> Self {
        Self {
            ranges: vec![(200, 299)],
        }
    }

    /// Exactly `code`.
    pub fn code(code: u16) -> Self {
        Self {
            ranges: vec![(code, code)],
        }
    }

    /// Any code in one of the inclusive `ranges`. An empty list matches nothing, so every probe fails.
    pub fn ranges(ranges: impl IntoIterator<Item = (u16, u16)>) -> Self {
        Self {
            ranges: ranges.into_iter().collect(),
        }
    }

    /// Whether `status` passes.
    pub fn matches(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// Any 2xx.
impl Default for StatusMatch {
    fn default() -> Self {
        Self::success()
    }
}

impl From<&ExpectedStatus> for StatusMatch {
    fn from(expected: &ExpectedStatus) -> Self {
        Self::ranges(expected.ranges().iter().copied())
    }
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Whether the probe passed.
    pub ok: bool,
    /// From the start of the connect to the verdict (response status line, connect, or failure).
    pub latency: Duration,
    /// Why the probe failed, short (`"connection refused"`, `"status 503"`, `"timeout"`); `None` on a pass.
    pub error: Option<String>,
    /// The failure needs no confirmation: the host answered that nothing listens (connection refused) or
    /// tore the connection down (reset). A timeout or a bad status is not definitive. Always `false` on a pass.
    pub definitive: bool,
}

impl ProbeResult {
    fn pass(latency: Duration) -> Self {
        Self {
            ok: true,
            latency,
            error: None,
            definitive: false,
        }
    }

    fn fail(latency: Duration, error: impl Into<String>, definitive: bool) -> Self {
        Self {
            ok: false,
            latency,
            error: Some(error.into()),
            definitive,
        }
    }
}
