//! One probe of one target: an HTTP(S) `GET` or a TCP connect, bounded by the check's timeout.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::header::{CONNECTION, HOST, HeaderValue};
use reqwest::{Client, Url};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use super::{ProbeResult, StatusMatch, Target};
use crate::{config::HealthCheckType, name::DnsName};

/// The User-Agent of HTTP(S) probes, so backends can tell them from client traffic in their logs.
pub const USER_AGENT: &str = concat!("OpenGSLB-HealthCheck/", env!("CARGO_PKG_VERSION"));

/// Longest failure reason kept, in bytes: reasons end up in logs, API answers and metrics labels.
const MAX_ERROR_LEN: usize = 160;

/// Probes `target` once. Builds a fresh HTTP client each call; to probe the same target repeatedly, build a
/// [`Probe`] once and [`Probe::run`] it.
pub async fn probe(target: &Target) -> ProbeResult {
    Probe::new(target.clone()).run().await
}

/// A target prepared for probing: for HTTP(S), its client, URL and Host header are built once, so repeated
/// probes do not reload TLS roots or re-parse anything.
#[derive(Debug, Clone)]
pub struct Probe {
    timeout: Duration,
    how: How,
}

#[derive(Debug, Clone)]
enum How {
    Tcp(SocketAddr),
    Http(HttpProbe),
    /// The target cannot be probed as configured (e.g. no TLS roots on this system, or a Host value that is
    /// not a valid header): every run fails with this reason, so the problem shows where statuses are shown.
    Unusable(String),
}

#[derive(Debug, Clone)]
struct HttpProbe {
    client: Client,
    url: Url,
    host: Option<HeaderValue>,
    expected: StatusMatch,
}

impl Probe {
    /// Prepares `target`. Never fails: a target that cannot be probed yields failing results whose reason
    /// says why.
    pub fn new(target: Target) -> Self {
        let how = match target.check.kind {
            HealthCheckType::Tcp => How::Tcp(SocketAddr::new(target.address, target.port)),
            HealthCheckType::Http | HealthCheckType::Https => {
                http_probe(&target).map_or_else(How::Unusable, How::Http)
            }
        };
        Self {
            timeout: target.check.timeout,
            how,
        }
    }

    /// Runs one probe, taking at most the check's timeout (plus scheduling slack).
    pub async fn run(&self) -> ProbeResult {
        let start = Instant::now();
        match &self.how {
            How::Tcp(addr) => match timeout(self.timeout, TcpStream::connect(addr)).await {
                Err(_) => ProbeResult::fail(start.elapsed(), "timeout", false),
                Ok(Err(e)) => {
                    let (reason, definitive) = io_failure(&e);
                    ProbeResult::fail(start.elapsed(), reason, definitive)
                }
                // Dropping the stream closes it at once: a TCP check only asks whether something accepts.
                Ok(Ok(_stream)) => ProbeResult::pass(start.elapsed()),
            },
            How::Http(http) => http.run(self.timeout, start).await,
            How::Unusable(reason) => ProbeResult::fail(start.elapsed(), reason.clone(), false),
        }
    }
}

impl HttpProbe {
    async fn run(&self, limit: Duration, start: Instant) -> ProbeResult {
        // `Connection: close` on top of the client having no pool: a probe must not hold a backend's worker.
        let mut request = self
            .client
            .get(self.url.clone())
            .header(CONNECTION, "close");
        if let Some(host) = &self.host {
            request = request.header(HOST, host.clone());
        }
        // One deadline for connect, TLS handshake and response head, as the check's `timeout` promises; the
        // body is never read (the status decides), and dropping the response closes the connection.
        match timeout(limit, request.send()).await {
            Err(_) => ProbeResult::fail(start.elapsed(), "timeout", false),
            Ok(Err(e)) => {
                let (reason, definitive) = reqwest_failure(&e);
                ProbeResult::fail(start.elapsed(), reason, definitive)
            }
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                if self.expected.matches(status) {
                    ProbeResult::pass(start.elapsed())
                } else {
                    ProbeResult::fail(start.elapsed(), format!("status {status}"), false)
                }
            }
        }
    }
}

/// Builds the client, URL and Host header of an HTTP(S) target, or says why it cannot be probed.
fn http_probe(target: &Target) -> Result<HttpProbe, String> {
    let check = &target.check;
    let https = check.kind == HealthCheckType::Https;
    let scheme = if https { "https" } else { "http" };
    let socket = SocketAddr::new(target.address, target.port);
    let path = if check.path.starts_with('/') {
        check.path.clone()
    } else {
        format!("/{}", check.path)
    };

    let mut builder = crate::http_client::builder()
        // A health check must reach the backend itself, never a proxy named in the environment.
        .no_proxy()
        // A redirect is the backend's answer, judged by `expected_status`, not a place to go.
        .redirect(reqwest::redirect::Policy::none())
        // One probe is one request: re-probing is the scheduler's decision, not the client's.
        .retry(reqwest::retry::never())
        .pool_max_idle_per_host(0)
        .http1_only()
        .user_agent(USER_AGENT);

    // With a DNS-name host, an HTTPS URL carries the name, so that it is the TLS server name and the name the
    // certificate is verified against, and resolution is pinned to the target's address: no DNS lookup
    // happens, and the probe reaches this backend, not whatever the name resolves to. Otherwise the URL
    // carries the address (`SocketAddr`'s display brackets IPv6 literals).
    let mut url = None;
    if let Some(name) = check.host.as_deref().filter(|_| https).and_then(tls_name) {
        let name = name.as_str();
        let candidate = Url::parse(&format!("{scheme}://{name}:{}{path}", target.port)).ok();
        // The URL parser may rewrite a host (e.g. numeric labels read as IPv4); only use it when it did not.
        if let Some(candidate) = candidate.filter(|u| u.host_str() == Some(name)) {
            builder = builder.resolve(name, socket);
            url = Some(candidate);
        }
    }
    let url = match url {
        Some(url) => url,
        None => Url::parse(&format!("{scheme}://{socket}{path}"))
            .map_err(|e| format!("invalid URL for path {path:?}: {e}"))?,
    };

    builder = if !https {
        // Plain HTTP never uses TLS; an empty root set keeps the client from loading the system's roots (and
        // from failing on a system that has none).
        builder.tls_certs_only(std::iter::empty())
    } else if check.tls_verify {
        // reqwest's `rustls` feature: the platform verifier, over the system's root certificates.
        builder
    } else {
        builder.tls_danger_accept_invalid_certs(true)
    };
    let client = builder
        .build()
        .map_err(|e| shorten(format!("client setup: {}", innermost(&e))))?;

    // Sent verbatim whenever configured, so virtual hosts on the backend match exactly what the operator wrote.
    let host = match check.host.as_deref() {
        Some(h) => Some(HeaderValue::from_str(h).map_err(|_| format!("invalid host {h:?}"))?),
        None => None,
    };
    Ok(HttpProbe {
        client,
        url,
        host,
        expected: check.expected_status.clone(),
    })
}

/// `host` as a TLS server name, if it can be one: a DNS name, not an IP literal and without a port.
fn tls_name(host: &str) -> Option<DnsName> {
    host.parse::<IpAddr>()
        .is_err()
        .then(|| DnsName::new(host).ok())?
}

/// A short reason for an I/O failure, and whether it is definitive.
fn io_failure(e: &io::Error) -> (String, bool) {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ("connection refused".to_owned(), true),
        io::ErrorKind::ConnectionReset => ("connection reset".to_owned(), true),
        io::ErrorKind::TimedOut => ("timeout".to_owned(), false),
        _ => (shorten(e.to_string()), false),
    }
}

/// A short reason for a failed request, and whether it is definitive. reqwest's own message names the URL
/// and little else; the cause is at the bottom of the error chain (an I/O, TLS or HTTP parse error).
fn reqwest_failure(e: &reqwest::Error) -> (String, bool) {
    if e.is_timeout() {
        return ("timeout".to_owned(), false);
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::TimedOut
            )
        {
            return io_failure(io);
        }
        cause = err.source();
    }
    (shorten(innermost(e)), false)
}

/// The message of the deepest error in `e`'s chain.
fn innermost(e: &reqwest::Error) -> String {
    let mut err: &dyn std::error::Error = e;
    while let Some(next) = err.source() {
        err = next;
    }
    err.to_string()
}

/// `reason` cut to [`MAX_ERROR_LEN`] bytes at a character boundary.
fn shorten(mut reason: String) -> String {
    if reason.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}
