//! What travels inside sealed datagrams: the kinds, and the agent's health report.
//!
//! A report is encoded with postcard (compact, not self-describing), so its first field is a version: a
//! receiver refuses versions it does not speak instead of misreading them. Every variable-length field is
//! bounded on decode, so a report that opened under the shared key still cannot make the overwatch
//! allocate or store without limit.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::{MAX_BACKENDS, MAX_MISSED, Secret};

/// Sealed kind of a SWIM (foca) datagram.
pub const KIND_SWIM: u8 = 1;

/// Sealed kind of an agent's health report.
pub const KIND_REPORT: u8 = 2;

/// Sealed kind of an overwatch's acknowledgement of an agent's report ([`Ack`]). An agent built before
/// acks existed counts it as an unknown kind and drops it, so mixed versions keep working.
pub const KIND_ACK: u8 = 3;

/// Sealed kind of an agent's learned client latencies ([`LatencyReport`]). An overwatch built before
/// learned latency counts it as an unknown kind and drops it, so mixed versions keep working.
pub const KIND_LATENCY: u8 = 4;

/// Version of [`LatencyReport`]; bumped on any incompatible change.
pub const LATENCY_VERSION: u16 = 1;

/// The most client subnets one [`LatencyReport`] carries: an agent with more sends several, so each fits
/// one datagram (an entry is at most about 30 bytes).
pub const MAX_LATENCY_SUBNETS: usize = 128;

/// Version of [`Report`]; bumped on any incompatible change.
pub const REPORT_VERSION: u16 = 1;

/// Version of [`Ack`]; bumped on any incompatible change.
pub const ACK_VERSION: u16 = 1;

/// Longest service name (a DNS name).
pub const MAX_SERVICE: usize = 253;

/// Longest free-text field (agent id, region, reason, token).
pub const MAX_TEXT: usize = 256;

/// Longest overwatch node id an ack carries: short enough that an ack is never larger than a report
/// (which fits one datagram), as each backend of an ack is smaller than in the report it acknowledges.
pub const MAX_NODE_ID: usize = 64;

/// Shortest and longest report interval an agent may announce: the overwatch's dead-agent deadline is
/// derived from it, so it must be neither a hair trigger nor forever.
pub const INTERVAL_MS: std::ops::RangeInclusive<u32> = 50..=10_000;

/// An agent's report on all its backends. Sent to every overwatch at once on every change and every
/// report interval otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub version: u16,
    /// The agent's identity, stable across restarts.
    pub agent_id: String,
    /// When this agent process started, in ms since the Unix epoch: with `seq`, orders reports across
    /// restarts, so a report replayed from an earlier life is refused.
    pub started_ms: u64,
    /// When this report was sent, in ms since the Unix epoch: a receiver refuses reports outside a short
    /// window around its own clock, so a report captured earlier cannot be replayed later (after the
    /// receiver restarted and forgot which datagrams it had seen).
    pub sent_ms: u64,
    /// Rises by one per report within one agent process; a receiver ignores a report not newer than the
    /// last it applied from the same process (duplicates and reordering).
    pub seq: u64,
    /// How often this agent reports, in ms, within [`INTERVAL_MS`].
    pub interval_ms: u32,
    /// Missed intervals after which the overwatch may declare this agent dead, 1..=[`MAX_MISSED`].
    pub missed_threshold: u32,
    /// The agent's service token (the datagram is sealed, so it never travels in clear; `Debug` never
    /// shows it).
    pub token: Secret,
    /// The agent's region, if configured.
    pub region: Option<String>,
    /// The agent is shutting down: its backends are out at once.
    pub leaving: bool,
    /// One entry per backend.
    pub backends: Vec<BackendReport>,
    /// The predictive signals behind a drain, as measured.
    pub signals: Signals,
}

/// What an agent says about one backend. The wire has its own type: it is a contract with agents of
/// other versions, which the registry's vocabulary must stay free to outgrow. postcard encodes the
/// variant's index: the order is part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Its checks pass and nothing predicts trouble.
    Healthy,
    /// Its checks fail.
    Unhealthy,
    /// Going away on purpose: drain file, maintenance, or a predictive signal.
    Draining,
}

impl Status {
    /// The name logs show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Draining => "draining",
        }
    }
}

/// An agent's word on one backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendReport {
    /// The service (a configured domain name).
    pub service: String,
    /// The address clients reach it at (the agent's advertised address).
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its weight under `weighted` routing.
    pub weight: u32,
    /// Healthy, unhealthy or draining.
    pub status: Status,
    /// Why, in a few words (`"drain file present"`, `"status 503"`); may be empty.
    pub reason: String,
}

/// The predictive signals, in percent; `None` when not measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    /// CPU use of the agent's cgroup against its limit.
    pub cpu: Option<f32>,
    /// Memory use of the agent's cgroup against its limit.
    pub memory: Option<f32>,
    /// Share of failed requests (or of failed checks).
    pub error_rate: Option<f32>,
}

/// Why a report or ack payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not a postcard-encoded report or ack (truncated, trailing bytes, bad enum tag).
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// A version this build does not speak.
    #[error("payload version {0} is not supported (this build speaks {REPORT_VERSION})")]
    Version(u16),
    /// A field out of bounds.
    #[error("payload field {field} out of bounds")]
    Bounds {
        /// Which field.
        field: &'static str,
    },
}

/// Decodes a payload whose first field is a `u16` version, refusing other versions and trailing bytes.
fn decode_versioned<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    expected: u16,
) -> Result<T, WireError> {
    // The version leads, so an unknown one is reported as such rather than as garbage.
    if let Ok((version, _)) = postcard::take_from_bytes::<u16>(bytes)
        && version != expected
    {
        return Err(WireError::Version(version));
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

/// `Ok` if `ok`, else the out-of-bounds error naming `field`.
fn bounded(field: &'static str, ok: bool) -> Result<(), WireError> {
    if ok {
        Ok(())
    } else {
        Err(WireError::Bounds { field })
    }
}

impl Report {
    /// Encodes the report.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain owned data into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes and bounds-checks a report.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let report: Self = decode_versioned(bytes, REPORT_VERSION)?;
        report.check()?;
        Ok(report)
    }

    fn check(&self) -> Result<(), WireError> {
        // Identifiers end up in logs and metrics: printable ASCII without spaces, so a report cannot
        // forge log lines. Free text (reasons) may hold spaces, not control characters.
        let ident = |s: &str| {
            !s.is_empty() && s.len() <= MAX_TEXT && s.bytes().all(|b| b.is_ascii_graphic())
        };
        let free = |s: &str| s.len() <= MAX_TEXT && !s.chars().any(char::is_control);
        bounded("agent_id", ident(&self.agent_id))?;
        bounded("token", self.token.expose().len() <= MAX_TEXT)?;
        bounded("region", self.region.as_deref().is_none_or(ident))?;
        bounded("interval_ms", INTERVAL_MS.contains(&self.interval_ms))?;
        bounded(
            "missed_threshold",
            (1..=MAX_MISSED).contains(&self.missed_threshold),
        )?;
        bounded("backends", self.backends.len() <= MAX_BACKENDS)?;
        for b in &self.backends {
            bounded(
                "backends.service",
                ident(&b.service) && b.service.len() <= MAX_SERVICE,
            )?;
            bounded("backends.port", b.port != 0)?;
            bounded("backends.reason", free(&b.reason))?;
            bounded("backends.weight", b.weight <= 1000)?;
        }
        Ok(())
    }

    /// How long this agent may stay silent before it is dead: its interval times its missed threshold.
    pub fn dead_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.interval_ms)) * self.missed_threshold.max(1)
    }
}

/// How an overwatch's published table serves one backend, as an [`Ack`] tells its agent. postcard
/// encodes the variant's index: the order is part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Served {
    /// Not in the answers.
    No,
    /// In the answers on its own merit.
    Yes,
    /// In the answers only because every backend of its name is out and the name's all-down policy
    /// answers with them all.
    AllDown,
}

/// One backend of an [`Ack`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckBackend {
    /// The service (a configured domain name).
    pub service: String,
    /// The address, as the agent reported it.
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// How the table published after the acknowledged report serves it.
    pub served: Served,
}

/// An overwatch's word to an agent: "the table I publish now reflects your report `seq`, and serves your
/// backends so". Sent after the publish that follows an applied report, so an agent waiting for a drain
/// knows when every overwatch answers without its backends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// [`ACK_VERSION`].
    pub version: u16,
    /// The overwatch's node id, for the operator's messages.
    pub node_id: String,
    /// The acknowledged report's `started_ms`: acks for an earlier life of the agent are not its own.
    pub started_ms: u64,
    /// The acknowledged report's `seq`.
    pub seq: u64,
    /// The backends of that report the overwatch kept (those of configured names).
    pub backends: Vec<AckBackend>,
}

impl Ack {
    /// Encodes the ack.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain owned data into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes and bounds-checks an ack.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let ack: Self = decode_versioned(bytes, ACK_VERSION)?;
        ack.check()?;
        Ok(ack)
    }

    fn check(&self) -> Result<(), WireError> {
        // The node id and services reach the operator's terminal: printable ASCII only.
        let ident = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
        };
        bounded("node_id", ident(&self.node_id, MAX_NODE_ID))?;
        bounded("backends", self.backends.len() <= MAX_BACKENDS)?;
        for b in &self.backends {
            bounded("backends.service", ident(&b.service, MAX_SERVICE))?;
            bounded("backends.port", b.port != 0)?;
        }
        Ok(())
    }
}

/// One client subnet's round-trip time to a backend, as the backend's kernel measured its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetLatency {
    /// The subnet's first address.
    pub network: IpAddr,
    /// Its prefix length (at most 32 for IPv4, 128 for IPv6).
    pub prefix_len: u8,
    /// The moving average of the connections' smoothed RTTs, in µs.
    pub rtt_us: u32,
    /// How many connection samples the average is made of.
    pub samples: u32,
}

/// What an agent learned of its clients' latency to one of its backends, sent every
/// `agent.latency_learning.report_interval` on its own datagrams (kind [`KIND_LATENCY`]), beside the
/// health reports, so the health path never grows or waits for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// [`LATENCY_VERSION`].
    pub version: u16,
    /// The agent's identity, as in its health reports.
    pub agent_id: String,
    /// When this report was sent, in ms since the Unix epoch (refused outside a short window, as reports).
    pub sent_ms: u64,
    /// The agent's service token, checked as in its health reports.
    pub token: Secret,
    /// The backend's service.
    pub service: String,
    /// The backend's address, as in the health reports.
    pub address: IpAddr,
    /// The backend's port.
    pub port: u16,
    /// Up to [`MAX_LATENCY_SUBNETS`] subnets.
    pub subnets: Vec<SubnetLatency>,
}

impl LatencyReport {
    /// Encodes the report.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain owned data into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes and bounds-checks a latency report.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let report: Self = decode_versioned(bytes, LATENCY_VERSION)?;
        report.check()?;
        Ok(report)
    }

    fn check(&self) -> Result<(), WireError> {
        let ident = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
        };
        bounded("agent_id", ident(&self.agent_id, MAX_TEXT))?;
        bounded("token", self.token.expose().len() <= MAX_TEXT)?;
        bounded("service", ident(&self.service, MAX_SERVICE))?;
        bounded("port", self.port != 0)?;
        bounded("subnets", self.subnets.len() <= MAX_LATENCY_SUBNETS)?;
        for s in &self.subnets {
            let max_len = if s.network.is_ipv4() { 32 } else { 128 };
            bounded("subnets.prefix_len", s.prefix_len <= max_len)?;
            bounded("subnets.samples", s.samples > 0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn statuses_keep_their_wire_codes() {
        for (status, code) in [
            (Status::Healthy, 0),
            (Status::Unhealthy, 1),
            (Status::Draining, 2),
        ] {
            assert_eq!(postcard::to_allocvec(&status).unwrap(), [code]);
        }
    }

    fn latency_report(subnets: usize) -> LatencyReport {
        LatencyReport {
            version: LATENCY_VERSION,
            agent_id: "web-1-0a1b2c3d".into(),
            sent_ms: 1_790_000_000_500,
            token: Secret::new("a-service-token-1234"),
            service: "app.demo.local".into(),
            address: "2001:db8::21".parse().unwrap(),
            port: 443,
            subnets: (0..subnets)
                .map(|i| SubnetLatency {
                    network: std::net::Ipv6Addr::from(u128::MAX - ((i as u128) << 80)).into(),
                    prefix_len: 48,
                    rtt_us: u32::MAX,
                    samples: u32::MAX,
                })
                .collect(),
        }
    }

    #[test]
    fn latency_reports_round_trip_fit_a_datagram_and_refuse_what_is_out_of_bounds() {
        let full = latency_report(MAX_LATENCY_SUBNETS);
        let bytes = full.encode();
        assert_eq!(LatencyReport::decode(&bytes), Ok(full.clone()));
        // The largest report (longest fields, widest numbers) still fits one sealed datagram.
        let mut widest = full.clone();
        widest.agent_id = "a".repeat(MAX_TEXT);
        widest.token = Secret::new("t".repeat(MAX_TEXT));
        widest.service = "s".repeat(MAX_SERVICE);
        assert!(
            widest.encode().len() <= crate::gossip::seal::MAX_PAYLOAD,
            "{} bytes",
            widest.encode().len()
        );
        let refused = |r: LatencyReport| LatencyReport::decode(&r.encode());
        let mut r = latency_report(MAX_LATENCY_SUBNETS + 1);
        assert!(matches!(
            refused(r.clone()),
            Err(WireError::Bounds { field: "subnets" })
        ));
        r = latency_report(1);
        r.subnets[0].prefix_len = 129;
        assert!(matches!(refused(r.clone()), Err(WireError::Bounds { .. })));
        r = latency_report(1);
        r.subnets[0].network = "10.0.0.0".parse().unwrap();
        r.subnets[0].prefix_len = 33;
        assert!(matches!(refused(r.clone()), Err(WireError::Bounds { .. })));
        r = latency_report(1);
        r.subnets[0].samples = 0;
        assert!(matches!(refused(r.clone()), Err(WireError::Bounds { .. })));
        r = latency_report(1);
        r.service = "bad name".into();
        assert!(matches!(refused(r.clone()), Err(WireError::Bounds { .. })));
        r = latency_report(1);
        r.version = LATENCY_VERSION + 1;
        assert_eq!(refused(r), Err(WireError::Version(LATENCY_VERSION + 1)));
        // Garbage and truncation are refused, never a panic.
        assert!(LatencyReport::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(LatencyReport::decode(&longer).is_err());
    }

    fn report() -> Report {
        Report {
            version: REPORT_VERSION,
            agent_id: "web-1-0a1b2c3d".into(),
            started_ms: 1_790_000_000_000,
            sent_ms: 1_790_000_000_500,
            seq: 7,
            interval_ms: 300,
            missed_threshold: 3,
            token: Secret::new("a-service-token-1234"),
            region: Some("eu".into()),
            leaving: false,
            backends: vec![BackendReport {
                service: "app.demo.local".into(),
                address: "10.20.0.21".parse().unwrap(),
                port: 80,
                weight: 100,
                status: Status::Draining,
                reason: "drain file present".into(),
            }],
            signals: Signals {
                cpu: Some(12.5),
                memory: None,
                error_rate: Some(0.0),
            },
        }
    }

    #[test]
    fn round_trips_and_never_shows_the_token() {
        let r = report();
        assert_eq!(Report::decode(&r.encode()).unwrap(), r);
        let shown = format!("{r:?}");
        assert!(
            !shown.contains(r.token.expose()) && shown.contains("Secret(<"),
            "{shown}"
        );
        assert_eq!(r.dead_after(), std::time::Duration::from_millis(900));
    }

    #[test]
    fn refuses_other_versions_trailing_bytes_and_truncation() {
        let mut r = report();
        r.version = 2;
        assert_eq!(Report::decode(&r.encode()), Err(WireError::Version(2)));
        let mut bytes = report().encode();
        bytes.push(0);
        assert!(matches!(
            Report::decode(&bytes),
            Err(WireError::Malformed(_))
        ));
        let bytes = report().encode();
        for len in 0..bytes.len() {
            assert!(Report::decode(&bytes[..len]).is_err(), "prefix {len}");
        }
    }

    #[test]
    fn refuses_out_of_bounds_fields() {
        type Mutation = Box<dyn Fn(&mut Report)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("agent_id", Box::new(|r| r.agent_id.clear())),
            ("agent_id", Box::new(|r| r.agent_id = "x".repeat(257))),
            ("agent_id", Box::new(|r| r.agent_id = "a b".into())),
            (
                "agent_id",
                Box::new(|r| r.agent_id = "a\nINFO forged".into()),
            ),
            ("region", Box::new(|r| r.region = Some("e\u{1b}[2J".into()))),
            (
                "token",
                Box::new(|r| r.token = Secret::new("x".repeat(257))),
            ),
            ("region", Box::new(|r| r.region = Some("x".repeat(257)))),
            ("interval_ms", Box::new(|r| r.interval_ms = 10)),
            ("interval_ms", Box::new(|r| r.interval_ms = 10_001)),
            ("missed_threshold", Box::new(|r| r.missed_threshold = 0)),
            ("missed_threshold", Box::new(|r| r.missed_threshold = 11)),
            (
                "backends",
                Box::new(|r| r.backends = vec![r.backends[0].clone(); 65]),
            ),
            (
                "backends.service",
                Box::new(|r| r.backends[0].service.clear()),
            ),
            ("backends.port", Box::new(|r| r.backends[0].port = 0)),
            (
                "backends.reason",
                Box::new(|r| r.backends[0].reason = "x".repeat(257)),
            ),
            (
                "backends.reason",
                Box::new(|r| r.backends[0].reason = "a\nb".into()),
            ),
            ("backends.weight", Box::new(|r| r.backends[0].weight = 1001)),
        ];
        for (field, mutate) in cases {
            let mut r = report();
            mutate(&mut r);
            assert_eq!(
                Report::decode(&r.encode()),
                Err(WireError::Bounds { field }),
                "{field}"
            );
        }
    }

    fn ack() -> Ack {
        Ack {
            version: ACK_VERSION,
            node_id: "overwatch-1".into(),
            started_ms: 1_790_000_000_000,
            seq: 42,
            backends: vec![
                AckBackend {
                    service: "app.demo.local".into(),
                    address: "10.20.0.21".parse().unwrap(),
                    port: 80,
                    served: Served::No,
                },
                AckBackend {
                    service: "api.demo.local".into(),
                    address: "2001:db8::1".parse().unwrap(),
                    port: 8080,
                    served: Served::AllDown,
                },
            ],
        }
    }

    #[test]
    fn served_keeps_its_wire_codes() {
        for (served, code) in [(Served::No, 0), (Served::Yes, 1), (Served::AllDown, 2)] {
            assert_eq!(postcard::to_allocvec(&served).unwrap(), [code]);
        }
    }

    #[test]
    fn acks_round_trip_and_refuse_versions_trailing_bytes_and_truncation() {
        let a = ack();
        assert_eq!(Ack::decode(&a.encode()).unwrap(), a);
        let mut other = ack();
        other.version = 2;
        assert_eq!(Ack::decode(&other.encode()), Err(WireError::Version(2)));
        let mut bytes = a.encode();
        bytes.push(0);
        assert!(matches!(Ack::decode(&bytes), Err(WireError::Malformed(_))));
        let bytes = a.encode();
        for len in 0..bytes.len() {
            assert!(Ack::decode(&bytes[..len]).is_err(), "prefix {len}");
        }
        // A report is not an ack, nor an ack a report.
        assert!(Ack::decode(&report().encode()).is_err());
        assert!(Report::decode(&a.encode()).is_err());
    }

    #[test]
    fn acks_refuse_out_of_bounds_fields() {
        type Mutation = Box<dyn Fn(&mut Ack)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("node_id", Box::new(|a| a.node_id.clear())),
            ("node_id", Box::new(|a| a.node_id = "x".repeat(65))),
            ("node_id", Box::new(|a| a.node_id = "a\nforged".into())),
            (
                "backends",
                Box::new(|a| a.backends = vec![a.backends[0].clone(); 65]),
            ),
            (
                "backends.service",
                Box::new(|a| a.backends[0].service = "x".repeat(254)),
            ),
            (
                "backends.service",
                Box::new(|a| a.backends[0].service = "a b".into()),
            ),
            ("backends.port", Box::new(|a| a.backends[1].port = 0)),
        ];
        for (field, mutate) in cases {
            let mut a = ack();
            mutate(&mut a);
            assert_eq!(
                Ack::decode(&a.encode()),
                Err(WireError::Bounds { field }),
                "{field}"
            );
        }
        // The ack of the largest report that fits one datagram fits one too.
        let mut widest = report();
        widest.agent_id = "x".repeat(MAX_TEXT);
        widest.backends = vec![widest.backends[0].clone(); MAX_BACKENDS];
        for b in &mut widest.backends {
            b.reason.clear();
            b.address = "2001:db8::1".parse().unwrap();
        }
        let mut service_len = 1;
        while service_len < MAX_SERVICE {
            for b in &mut widest.backends {
                b.service = "s".repeat(service_len + 1);
            }
            if widest.encode().len() > crate::gossip::seal::MAX_PAYLOAD {
                break;
            }
            service_len += 1;
        }
        let ack = Ack {
            version: ACK_VERSION,
            node_id: "x".repeat(MAX_NODE_ID),
            started_ms: u64::MAX,
            seq: u64::MAX,
            backends: vec![
                AckBackend {
                    service: "s".repeat(service_len),
                    address: "2001:db8::1".parse().unwrap(),
                    port: u16::MAX,
                    served: Served::AllDown,
                };
                MAX_BACKENDS
            ],
        };
        assert!(ack.encode().len() <= crate::gossip::seal::MAX_PAYLOAD);
        assert_eq!(Ack::decode(&ack.encode()).unwrap(), ack);
    }

    #[test]
    fn an_ack_under_another_key_never_opens() {
        use crate::gossip::seal::{Opener, SealError, Sealer};
        let sealer = Sealer::new(&[[1; 32]]).unwrap();
        let datagram = sealer.seal(KIND_ACK, &ack().encode());
        let mut stranger = Opener::new(&[[2; 32]]).unwrap();
        assert_eq!(stranger.open(&datagram), Err(SealError::NoKeyOpens));
        let mut agent = Opener::new(&[[2; 32], [1; 32]]).unwrap();
        let opened = agent.open(&datagram).unwrap();
        assert_eq!(opened.kind, KIND_ACK);
        assert_eq!(Ack::decode(&opened.payload).unwrap(), ack());
        // Replayed: dropped by the seal, before anything reads it.
        assert_eq!(agent.open(&datagram), Err(SealError::Replayed));
    }

    proptest! {
        #[test]
        fn arbitrary_ack_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Ack::decode(&bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Report::decode(&bytes);
        }

        #[test]
        fn flipped_bytes_never_panic(pos in 0usize..200, bit in 0u8..8) {
            let mut bytes = report().encode();
            let i = pos % bytes.len();
            bytes[i] ^= 1 << bit;
            if let Ok(r) = Report::decode(&bytes) {
                prop_assert!(r.check().is_ok());
            }
        }
    }
}
