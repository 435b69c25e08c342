//! The `agent` section: the agent's identity, the backends it checks, how it reaches the overwatches, its
//! heartbeat, predictive signals, passive latency learning, and ours: the drain file and maintenance windows.
//!
//! Defaults are the original's code defaults (`pkg/config/config.go`) unless `docs/config.md` says otherwise; where
//! the original's docs and code disagree, each field says which one we took.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::name::DnsName;
use serde::Deserialize;

use super::de;
use super::region::HealthCheck;
use super::secret::{GossipKey, Secret};
use super::selector::MetricSelector;

/// Most backends one agent may report: what one report (one datagram) carries.
pub const MAX_BACKENDS: usize = 64;

/// Most report intervals an agent may miss before it is dead (`agent.heartbeat.missed_threshold`). With
/// the longest interval a report may announce, a silent agent is dead within 100 s at most, so the
/// overwatch's book can always make room.
pub const MAX_MISSED: u32 = 10;

/// The longest time between two reports of an agent: with the default `missed_threshold` of 3, an
/// overwatch declares a silent agent dead within about a second, whatever `agent.heartbeat.interval`
/// says above it.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(300);

/// The shortest `agent.heartbeat.interval`.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// The `agent` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Who this agent is. Default: see [`AgentIdentity`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub identity: AgentIdentity,
    /// The backends this agent checks and reports; at least one in agent mode. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub backends: Vec<AgentBackend>,
    /// How to reach the overwatches. Default: see [`AgentGossip`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub gossip: AgentGossip,
    /// The keep-alive. Default: see [`HeartbeatConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub heartbeat: HeartbeatConfig,
    /// Draining ahead of trouble (CPU, memory, error rate). Default: see [`PredictiveConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub predictive: PredictiveConfig,
    /// Passive client latency learning from TCP RTTs. Default: see [`LatencyLearningConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub latency_learning: LatencyLearningConfig,
    /// While this file exists, the agent reports its backends `draining` (ours; the original's Demo 2 only
    /// made nginx fail its health check). Must be an absolute path. Default `/tmp/drain`.
    #[serde(default = "default_drain_file")]
    pub drain_file: PathBuf,
    /// Scheduled maintenance, during which the backends are reported `draining` (ours). Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub maintenance: MaintenanceConfig,
    /// The Unix socket `opengslb agent drain on|off` talks to (ours); an absolute path. Its directory is
    /// created if missing. Default `/run/opengslb-agent/agent.sock` (the systemd unit's
    /// `RuntimeDirectory`, which belongs to the user the agent runs as).
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            identity: AgentIdentity::default(),
            backends: Vec::new(),
            gossip: AgentGossip::default(),
            heartbeat: HeartbeatConfig::default(),
            predictive: PredictiveConfig::default(),
            latency_learning: LatencyLearningConfig::default(),
            drain_file: default_drain_file(),
            maintenance: MaintenanceConfig::default(),
            control_socket: default_control_socket(),
        }
    }
}

fn default_control_socket() -> PathBuf {
    PathBuf::from("/run/opengslb-agent/agent.sock")
}

fn default_drain_file() -> PathBuf {
    PathBuf::from("/tmp/drain")
}

/// The `agent.identity` block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentIdentity {
    /// The token this agent presents for its services (see `overwatch.agent_tokens`); at least 16
    /// characters, required in agent mode. Default: none.
    #[serde(default)]
    pub service_token: Option<Secret>,
    /// The region this agent's backends are in, reported with them (the original's docs call it required;
    /// its code defaults to empty). Default: none.
    #[serde(default)]
    pub region: Option<String>,
    /// The original's self-signed agent certificate. Refused when set: our agents have no certificate
    /// (they are authenticated by the gossip key that seals their reports and by `service_token`), and
    /// accepting the path would suggest a certificate is in use. Default: none.
    #[serde(default)]
    pub cert_path: Option<PathBuf>,
    /// The original's agent private key. Refused when set, as `cert_path`. Default: none.
    #[serde(default)]
    pub key_path: Option<PathBuf>,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for AgentIdentity {
    fn default() -> Self {
        Self {
            service_token: None,
            region: None,
            cert_path: None,
            key_path: None,
        }
    }
}

/// One entry of `agent.backends`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentBackend {
    /// The domain this backend serves. Required.
    pub service: DnsName,
    /// The address the agent checks, an IP literal (the original also took host names). Required.
    #[serde(deserialize_with = "de::ip")]
    pub address: IpAddr,
    /// The port the agent checks, 1..=65535. Required.
    pub port: u16,
    /// Relative share of answers under `weighted` routing, 0..=1000. Default 100.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The address clients reach this backend at, reported instead of `address` (ours). Must not be
    /// loopback, unspecified or multicast. Default: `address`, or, when `address` is a loopback one, the
    /// address the agent's traffic to the overwatch leaves from (the original reported `127.0.0.1`, which
    /// leaked into DNS).
    #[serde(default, deserialize_with = "opt_ip")]
    pub advertise_address: Option<IpAddr>,
    /// How the agent checks it. Default: see [`HealthCheck`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub health_check: HealthCheck,
}

fn default_weight() -> u32 {
    100
}

fn opt_ip<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    #[derive(Deserialize)]
    struct Ip(#[serde(deserialize_with = "de::ip")] IpAddr);
    Ok(Option::<Ip>::deserialize(d)?.map(|ip| ip.0))
}

/// The `agent.gossip` block.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentGossip {
    /// The shared key that seals every datagram, the overwatches' key: base64 of exactly 32 bytes. This or
    /// `encryption_keys` is required in agent mode. Default: none.
    #[serde(default)]
    pub encryption_key: Option<GossipKey>,
    /// A key ring for rotation (ours): the first key seals, every key opens. Set this or
    /// `encryption_key`, not both. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub encryption_keys: Vec<GossipKey>,
    /// The overwatches' gossip addresses, `host:port` (`[v6]:port` for IPv6 literals); at least one in
    /// agent mode. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub overwatch_nodes: Vec<NodeAddress>,
}

impl AgentGossip {
    /// The keys in use: the first seals, all open.
    pub fn key_ring(&self) -> &[GossipKey] {
        super::overwatch::key_ring(self.encryption_key.as_ref(), &self.encryption_keys)
    }
}

/// A `host:port` address of a node: an IP literal or a DNS name, resolved when used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddress {
    /// The host: an IP literal (without brackets) or a name.
    pub host: String,
    /// The port, 1..=65535.
    pub port: u16,
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for NodeAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "invalid node address {s:?}: {why} (expected host:port, e.g. \"10.20.0.10:7946\", \"overwatch-1:7946\" or \"[2001:db8::1]:7946\")"
            )
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .filter(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
                .ok_or_else(|| bad("malformed [IPv6] literal"))?,
            None if host.contains(':') => return Err(bad("an IPv6 address must be in brackets")),
            None => host,
        };
        let name_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
        if !name_ok {
            return Err(bad("the host must be an IP address or a DNS name"));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad("the port must be between 1 and 65535")),
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

de::deserialize_from_str!(
    NodeAddress,
    "a host:port address such as \"10.20.0.10:7946\""
);

/// The `agent.heartbeat` block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// The longest time between two reports, at least 100ms. The original sent an empty keep-alive this
    /// often (and ignored it on the overwatch); ours sends its full report every
    /// [`Self::report_interval`]: this value when shorter than [`REPORT_INTERVAL`], else that. Default
    /// 10s (so 300 ms).
    #[serde(
        default = "default_heartbeat_interval",
        deserialize_with = "de::duration"
    )]
    pub interval: Duration,
    /// Report intervals an overwatch may miss before it declares the agent dead, 1..=[`MAX_MISSED`] (the
    /// original's docs say "missed heartbeats before deregistration"; its code only changed a log
    /// level). Default 3.
    #[serde(default = "default_missed_threshold")]
    pub missed_threshold: u32,
}

impl HeartbeatConfig {
    /// How often the agent reports when nothing changes: `interval`, at most [`REPORT_INTERVAL`].
    pub fn report_interval(&self) -> Duration {
        self.interval.min(REPORT_INTERVAL)
    }
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval: default_heartbeat_interval(),
            missed_threshold: default_missed_threshold(),
        }
    }
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_missed_threshold() -> u32 {
    3
}

/// The `agent.predictive` block: signals that drain the backends before they fail.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictiveConfig {
    /// Watch the signals. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// CPU use. Default: see [`CpuThreshold`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub cpu: CpuThreshold,
    /// Memory use. Default: see [`MemoryThreshold`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub memory: MemoryThreshold,
    /// The error rate. Default: see [`ErrorRateConfig`].
    #[serde(default, deserialize_with = "de::nullable")]
    pub error_rate: ErrorRateConfig,
    /// Time between samples of the signals, at least 1s (the original never used it). Default 10s.
    #[serde(
        default = "default_predictive_interval",
        deserialize_with = "de::duration"
    )]
    pub check_interval: Duration,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for PredictiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cpu: CpuThreshold::default(),
            memory: MemoryThreshold::default(),
            error_rate: ErrorRateConfig::default(),
            check_interval: default_predictive_interval(),
        }
    }
}

fn default_bleed_duration() -> Duration {
    Duration::from_secs(30)
}

fn default_predictive_interval() -> Duration {
    Duration::from_secs(10)
}

/// The `agent.predictive.cpu` block: CPU use, in percent of what this agent's cgroup may use (a container
/// sees its own limit; the original read the host's `/proc/stat`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuThreshold {
    /// Whether this signal is sampled at all (ours: the original always sampled it, so a service could not
    /// drain on its error rate alone). Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Use at or above which the backends drain, in (0, 100]. Default 90 (the original's code; its docs say
    /// 80).
    #[serde(default = "default_cpu_threshold")]
    pub threshold: f64,
    /// Drain time, more than 0 (the original documents a gradual drain over it but never used it: a drain
    /// is all or nothing). Default 30s.
    #[serde(default = "default_bleed_duration", deserialize_with = "de::duration")]
    pub bleed_duration: Duration,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for CpuThreshold {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: default_cpu_threshold(),
            bleed_duration: default_bleed_duration(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_cpu_threshold() -> f64 {
    90.0
}

/// The `agent.predictive.memory` block: memory use, in percent of what this agent's cgroup may use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryThreshold {
    /// As [`CpuThreshold::enabled`]. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Use at or above which the backends drain, in (0, 100]. Default 85.
    #[serde(default = "default_memory_threshold")]
    pub threshold: f64,
    /// As [`CpuThreshold::bleed_duration`]. Default 30s.
    #[serde(default = "default_bleed_duration", deserialize_with = "de::duration")]
    pub bleed_duration: Duration,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for MemoryThreshold {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: default_memory_threshold(),
            bleed_duration: default_bleed_duration(),
        }
    }
}

fn default_memory_threshold() -> f64 {
    85.0
}

/// The `agent.predictive.error_rate` block. The rate is the share of failed requests in percent, read from
/// the app's Prometheus endpoint when `source` is set, else the share of failed health checks over `window`
/// (`docs/agents.md`; the original counted health transitions per minute).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateConfig {
    /// Error rate, in percent, at or above which the backends drain; in (0, 100]. Default 10 (the
    /// original's code value, there in errors per minute; its docs say 5 %).
    #[serde(default = "default_error_threshold")]
    pub threshold: f64,
    /// The window the rate is computed over, at least 1s. Default 60s.
    #[serde(default = "default_error_window", deserialize_with = "de::duration")]
    pub window: Duration,
    /// As [`CpuThreshold::bleed_duration`]. Default 30s.
    #[serde(default = "default_bleed_duration", deserialize_with = "de::duration")]
    pub bleed_duration: Duration,
    /// Where to read the app's request counts (ours). Default: none (failed health checks count).
    #[serde(default)]
    pub source: Option<ErrorRateSource>,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for ErrorRateConfig {
    fn default() -> Self {
        Self {
            threshold: default_error_threshold(),
            window: default_error_window(),
            bleed_duration: default_bleed_duration(),
            source: None,
        }
    }
}

fn default_error_threshold() -> f64 {
    10.0
}

fn default_error_window() -> Duration {
    Duration::from_secs(60)
}

/// The `agent.predictive.error_rate.source` block: the app's Prometheus endpoint and its request counters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateSource {
    /// The endpoint, an `http://` or `https://` URL, e.g. `http://127.0.0.1:80/metrics`. Required.
    #[serde(deserialize_with = "de::http_url")]
    pub url: url::Url,
    /// The counter of all requests: a metric name, optionally with label matchers
    /// (`http_requests_total{job="app"}`); matching series are summed. Required.
    pub total_metric: MetricSelector,
    /// The counter of failed requests, in the same form (`http_requests_total{code=~"5.."}`). Required.
    pub failed_metric: MetricSelector,
}

/// The `agent.latency_learning` block: client RTTs read from the kernel's TCP state, per client subnet.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyLearningConfig {
    /// Learn latencies. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Time between reads of the kernel's connections, at least 1s. Default 10s.
    #[serde(default = "default_ll_poll", deserialize_with = "de::duration")]
    pub poll_interval: Duration,
    /// Connections younger than this are skipped (their RTT is not settled yet). Default 5s.
    #[serde(default = "default_ll_min_age", deserialize_with = "de::duration")]
    pub min_connection_age: Duration,
    /// Prefix length IPv4 clients are grouped by, 1..=32. Default 24.
    #[serde(default = "default_ll_v4_prefix")]
    pub ipv4_prefix: u8,
    /// Prefix length IPv6 clients are grouped by, 1..=128. Default 48.
    #[serde(default = "default_ll_v6_prefix")]
    pub ipv6_prefix: u8,
    /// Weight of a new sample in a subnet's moving average, in (0, 1]. Default 0.3.
    #[serde(default = "default_ll_alpha")]
    pub ewma_alpha: f64,
    /// Most subnets tracked (the oldest are dropped), at least 1. Default 100000.
    #[serde(default = "default_ll_max_subnets")]
    pub max_subnets: u32,
    /// Time after which a subnet with no new sample is forgotten, at least 1s. Default 168h (7 days).
    #[serde(default = "default_ll_subnet_ttl", deserialize_with = "de::duration")]
    pub subnet_ttl: Duration,
    /// Samples a subnet needs before it is reported, at least 1. Default 5.
    #[serde(default = "default_ll_min_samples")]
    pub min_samples: u32,
    /// Time between latency reports to the overwatches, at least 1s. Default 30s.
    #[serde(default = "default_ll_report", deserialize_with = "de::duration")]
    pub report_interval: Duration,
}

/// Documented defaults, the same ones serde applies to missing keys.
impl Default for LatencyLearningConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            poll_interval: default_ll_poll(),
            min_connection_age: default_ll_min_age(),
            ipv4_prefix: default_ll_v4_prefix(),
            ipv6_prefix: default_ll_v6_prefix(),
            ewma_alpha: default_ll_alpha(),
            max_subnets: default_ll_max_subnets(),
            subnet_ttl: default_ll_subnet_ttl(),
            min_samples: default_ll_min_samples(),
            report_interval: default_ll_report(),
        }
    }
}

fn default_ll_poll() -> Duration {
    Duration::from_secs(10)
}

fn default_ll_min_age() -> Duration {
    Duration::from_secs(5)
}

fn default_ll_v4_prefix() -> u8 {
    24
}

fn default_ll_v6_prefix() -> u8 {
    48
}

fn default_ll_alpha() -> f64 {
    0.3
}

fn default_ll_max_subnets() -> u32 {
    100_000
}

fn default_ll_subnet_ttl() -> Duration {
    Duration::from_secs(168 * 3600)
}

fn default_ll_min_samples() -> u32 {
    5
}

fn default_ll_report() -> Duration {
    Duration::from_secs(30)
}

/// The `agent.maintenance` block (ours).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Windows during which the backends are reported `draining`. Default: none.
    #[serde(default, deserialize_with = "de::nullable")]
    pub windows: Vec<MaintenanceWindow>,
}

impl MaintenanceConfig {
    /// Whether `now` falls inside any window.
    pub fn active_at(&self, now: SystemTime) -> bool {
        self.windows.iter().any(|w| w.contains(now))
    }
}

/// One maintenance window: one-off (`start` a timestamp, with `end` or `duration`) or recurring (`start`
/// a UTC time of day, with `duration` and optionally `days`):
///
/// ```yaml
/// windows:
///   - { start: "2026-03-01T02:00:00Z", end: "2026-03-01T04:00:00Z" }
///   - { start: "02:00", duration: 2h, days: [sat, sun] }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// When it opens: an RFC 3339 timestamp (one-off) or `HH:MM` in UTC (recurring). Required.
    pub start: WindowStart,
    /// When a one-off window closes, an RFC 3339 timestamp after `start`; give this or `duration`.
    /// Default: none.
    #[serde(default, deserialize_with = "de::opt_timestamp")]
    pub end: Option<SystemTime>,
    /// How long it stays open, more than 0 and at most 7 days for a recurring window. Required for a
    /// recurring window; for a one-off one, give this or `end`. Default: none.
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub duration: Option<Duration>,
    /// The UTC weekdays a recurring window opens on (`mon` .. `sun`, or full names). Default: every day.
    #[serde(default, deserialize_with = "de::nullable")]
    pub days: Vec<Weekday>,
}

impl MaintenanceWindow {
    /// Whether `now` is inside the window. Assumes a validated window.
    pub fn contains(&self, now: SystemTime) -> bool {
        match self.start {
            WindowStart::At(start) => {
                let end = self
                    .end
                    .or_else(|| self.duration.map(|d| start + d))
                    .unwrap_or(start);
                start <= now && now < end
            }
            WindowStart::Daily { minute } => {
                const DAY: u64 = 86_400;
                const WEEK: u64 = 7 * DAY;
                let Ok(since_epoch) = now.duration_since(SystemTime::UNIX_EPOCH) else {
                    return false;
                };
                let secs = since_epoch.as_secs();
                // 1970-01-01 was a Thursday: shift so that 0 is Monday 00:00 UTC.
                let in_week = (secs + 3 * DAY) % WEEK;
                let open = self.duration.unwrap_or_default();
                let days: Vec<u64> = if self.days.is_empty() {
                    (0..7).collect()
                } else {
                    self.days.iter().map(|d| *d as u64).collect()
                };
                days.into_iter().any(|day| {
                    let start = day * DAY + u64::from(minute) * 60;
                    let since_start = (in_week + WEEK - start) % WEEK;
                    Duration::new(since_start, since_epoch.subsec_nanos()) < open
                })
            }
        }
    }
}

/// When a maintenance window opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowStart {
    /// At this instant, once.
    At(SystemTime),
    /// At this minute of the UTC day (0..1440), on the window's `days`.
    Daily {
        /// Minutes after midnight UTC.
        minute: u16,
    },
}

impl std::str::FromStr for WindowStart {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let time_of_day = s
            .split_once(':')
            .filter(|(h, m)| (1..=2).contains(&h.len()) && m.len() == 2);
        if let Some((h, m)) = time_of_day {
            let digits = h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit());
            return match (h.parse::<u16>(), m.parse::<u16>()) {
                (Ok(h @ 0..24), Ok(m @ 0..60)) if digits => Ok(Self::Daily { minute: h * 60 + m }),
                _ => Err(format!(
                    "invalid time of day {s:?} (expected HH:MM in UTC, from 00:00 to 23:59)"
                )),
            };
        }
        de::parse_timestamp(s).map(Self::At)
    }
}

de::deserialize_from_str!(
    WindowStart,
    "an RFC 3339 timestamp or a UTC time of day such as \"02:00\""
);

/// A day of the week, Monday first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Weekday {
    /// `mon`, `monday`.
    Mon,
    /// `tue`, `tuesday`.
    Tue,
    /// `wed`, `wednesday`.
    Wed,
    /// `thu`, `thursday`.
    Thu,
    /// `fri`, `friday`.
    Fri,
    /// `sat`, `saturday`.
    Sat,
    /// `sun`, `sunday`.
    Sun,
}

impl std::str::FromStr for Weekday {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let all = [
            (Self::Mon, "monday"),
            (Self::Tue, "tuesday"),
            (Self::Wed, "wednesday"),
            (Self::Thu, "thursday"),
            (Self::Fri, "friday"),
            (Self::Sat, "saturday"),
            (Self::Sun, "sunday"),
        ];
        let lower = s.to_ascii_lowercase();
        all.into_iter()
            .find(|(_, name)| lower == *name || lower == name[..3])
            .map(|(day, _)| day)
            .ok_or_else(|| {
                format!("unknown weekday {s:?} (expected mon, tue, wed, thu, fri, sat or sun)")
            })
    }
}

de::deserialize_from_str!(Weekday, "a weekday such as mon");
