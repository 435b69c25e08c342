//! `GET /dns/explain`: what a query gets now and why, read from the table the loop last published to both
//! DNS paths (not recomputed), with each backend's status and the rule that decided it.

use std::net::IpAddr;

use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
};
use opengslb_common::maps::{QTYPE_A, QTYPE_AAAA};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Api, ApiError, View,
    handlers::{effective_status, rfc3339},
};
use crate::{
    name::DnsName,
    table::{Entry, Policy},
};

/// The rotation position the answer is drawn at. Each DNS path keeps its own position per name (the
/// userspace server one per name, XDP one per CPU) and advances it per answer; neither is visible
/// here, so the explanation shows the answer at the first position, and `candidates` every record
/// a rotation draws from.
pub const ROTATION: u32 = 0;

/// The query of `/dns/explain`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ExplainQuery {
    /// The name asked for.
    name: Option<String>,
    /// `A` (default) or `AAAA`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    qtype: Option<String>,
    /// The client's IP address, for geolocation (default: none).
    client: Option<String>,
}

/// What a query gets now, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Explanation {
    /// The name, normalised.
    pub name: String,
    /// `A` or `AAAA`.
    #[serde(rename = "type")]
    pub qtype: &'static str,
    /// The client the answer is drawn for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The routing algorithm the table was built by (`round-robin`, `weighted`, `failover`,
    /// `geolocation`, `latency`, `learned-latency`).
    pub algorithm: &'static str,
    /// The name's all-down policy (`all`, `last_healthy`, `empty`).
    pub all_down_policy: &'static str,
    /// Every backend is out, so the all-down policy chose the answer set.
    pub all_down: bool,
    /// `records` (the answer carries `records`) or `nodata` (no record of this type).
    pub answer: &'static str,
    /// The table entry's policy; absent with `nodata`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyOut>,
    /// TTL of the records; absent with `nodata`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// How many records one answer carries; absent with `nodata`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_answers: Option<u8>,
    /// The rotation position `records` is drawn at (always 0: the DNS paths' positions are not seen
    /// here).
    pub rotation: u32,
    /// The records the answer carries at `rotation` for this client.
    pub records: Vec<String>,
    /// Every record an answer draws from, in table order.
    pub candidates: Vec<String>,
    /// Every backend of the name, of both families.
    pub backends: Vec<BackendWhy>,
    /// When the view explained was made.
    pub generated_at: String,
}

/// How an answer draws from the entry's records.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyOut {
    /// `round_robin`, `fixed_order`, `weighted`, `geolocation` or `learned_latency`.
    pub kind: &'static str,
    /// `fixed_order`: the records in the order answers take them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<String>>,
    /// `weighted`: each record's share of the weight slot table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<WeightOut>>,
    /// `geolocation`, and `learned_latency`'s fallback: the client's region and each record's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<GeoOut>,
    /// `learned_latency` with a client: what agents measured from its subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned: Option<LearnedOut>,
}

/// Learned latency from the client's subnet.
#[derive(Debug, Serialize, ToSchema)]
pub struct LearnedOut {
    /// The subnet whose figures decided (the longest holding the client with a choice), else the longest
    /// holding it, else the /24 or /48 it would be grouped in.
    pub subnet: String,
    /// The record measured fastest from it, which goes first; absent when nothing that counts was
    /// learned there (the answer is then geolocation's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fastest: Option<String>,
    /// Each record's learned round-trip time from the subnet, in ms, and its sample count.
    pub records: Vec<LearnedRecord>,
}

/// One record's learned latency from a subnet.
#[derive(Debug, Serialize, ToSchema)]
pub struct LearnedRecord {
    /// The record.
    pub address: String,
    /// The moving average of the round-trip time, in ms.
    pub rtt_ms: f64,
    /// The samples it is made of.
    pub samples: u64,
}

/// One record's share under `weighted`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WeightOut {
    /// The record.
    pub address: String,
    /// Its slots in the weight slot table.
    pub slots: usize,
    /// All slots of the table.
    pub of: usize,
}

/// Geolocation: where the client is, and where each record is.
#[derive(Debug, Serialize, ToSchema)]
pub struct GeoOut {
    /// The region id clients placed nowhere get (0: none).
    pub default_region_id: u8,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_region: Option<String>,
    /// The client's region by its source address, as both DNS paths place it (0: none; absent without
    /// a client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_region_id: Option<u8>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_region: Option<String>,
    /// What a query with the client's address as its EDNS Client Subnet would get instead (absent when
    /// `geolocation.ecs_enabled` is false: such a query is placed by its source address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecs: Option<EcsOut>,
    /// Each record's region.
    pub records: Vec<RecordRegion>,
}

/// Placement by EDNS Client Subnet.
#[derive(Debug, Serialize, ToSchema)]
pub struct EcsOut {
    /// The region id (0: none).
    pub region_id: u8,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The scope prefix length the answer echoes: every client within it gets the same region.
    pub scope_prefix: u8,
    /// The records that answer carries at `rotation`.
    pub records: Vec<String>,
}

/// One record and its region.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordRegion {
    /// The record.
    pub address: String,
    /// Its region id (0: none).
    pub region_id: u8,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// One backend of the name, and why it is in or out.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackendWhy {
    /// Its address.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// `A` or `AAAA`: the type of query it answers.
    pub family: &'static str,
    /// Its region.
    pub region: String,
    /// `static`, `agent` or `api`.
    pub source: &'static str,
    /// `healthy`, `unhealthy`, `stale` or `draining`.
    pub effective_status: &'static str,
    /// The rule that decided: `override`, `agent_draining`, `agent_unhealthy`, `agent_left`,
    /// `agent_dead`, `stale`, `validation_failed` or `healthy`.
    pub reason: &'static str,
    /// Its weight.
    pub weight: u32,
    /// Its address is among the records of its family's published entry.
    pub in_table: bool,
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "A" } else { "AAAA" }
}

fn policy_kind(p: Policy) -> &'static str {
    match p {
        Policy::RoundRobin => "round_robin",
        Policy::FixedOrder => "fixed_order",
        Policy::Weighted => "weighted",
        Policy::Geo { .. } => "geolocation",
        Policy::Learned { .. } => "learned_latency",
    }
}

fn strings(ips: &[IpAddr]) -> Vec<String> {
    ips.iter().map(ToString::to_string).collect()
}

/// The parsed query, or why it is refused.
fn parse(q: ExplainQuery) -> Result<(DnsName, u16, Option<IpAddr>), ApiError> {
    let name = q
        .name
        .ok_or_else(|| ApiError::bad_request("name: missing"))?;
    let name = DnsName::new(&name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
    let qtype = match q.qtype.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("A") => QTYPE_A,
        Some("AAAA") => QTYPE_AAAA,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "type: {other:?} is not A or AAAA"
            )));
        }
    };
    let client = q
        .client
        .map(|c| {
            c.parse::<IpAddr>()
                .map(|ip| ip.to_canonical())
                .map_err(|_| ApiError::bad_request(format!("client: {c:?} is not an IP address")))
        })
        .transpose()?;
    Ok((name, qtype, client))
}

fn policy_out(view: &View, entry: &Entry, client: Option<IpAddr>) -> PolicyOut {
    let mut out = PolicyOut {
        kind: policy_kind(entry.policy),
        order: None,
        weights: None,
        geo: None,
        learned: None,
    };
    let region_name = |id: u8| {
        view.placement
            .as_ref()
            .and_then(|p| p.name(id))
            .map(str::to_owned)
    };
    match entry.policy {
        Policy::RoundRobin => {}
        Policy::FixedOrder => out.order = Some(strings(&entry.records)),
        Policy::Weighted => {
            let of = entry.slots.len();
            out.weights = Some(
                entry
                    .records
                    .iter()
                    .enumerate()
                    .map(|(i, ip)| WeightOut {
                        address: ip.to_string(),
                        slots: entry.slots.iter().filter(|s| usize::from(**s) == i).count(),
                        of,
                    })
                    .collect(),
            );
        }
        Policy::Geo { default_region } | Policy::Learned { default_region, .. } => {
            if let Policy::Learned { min_samples, .. } = entry.policy {
                out.learned = client.map(|c| learned_out(view, entry, c, min_samples));
            }
            let placement = view.placement.as_ref();
            let ecs = client
                .zip(placement.filter(|p| p.honours_ecs()))
                .map(|(c, p)| {
                    let (region_id, scope_prefix) = p.by_subnet(c);
                    EcsOut {
                        region_id,
                        region: region_name(region_id),
                        scope_prefix,
                        records: strings(&entry.answer(ROTATION, region_id)),
                    }
                });
            let client_region_id = client.map(|c| placement.map_or(0, |p| p.by_source(c)));
            out.geo = Some(GeoOut {
                default_region_id: default_region,
                default_region: region_name(default_region),
                client_region_id,
                client_region: client_region_id.and_then(region_name),
                ecs,
                records: entry
                    .records
                    .iter()
                    .zip(&entry.regions)
                    .map(|(ip, id)| RecordRegion {
                        address: ip.to_string(),
                        region_id: *id,
                        region: region_name(*id),
                    })
                    .collect(),
            });
        }
    }
    out
}

fn learned_out(view: &View, entry: &Entry, client: IpAddr, min_samples: u32) -> LearnedOut {
    view.learned.read(|t| {
        let now = std::time::Instant::now();
        let fastest = t.fastest(client, &entry.records, u64::from(min_samples), now);
        // The subnet that decided, else the longest holding the client, else how an address is grouped.
        let subnet = t
            .subnets_of(client)
            .find(|net| {
                t.subnet(*net)
                    .any(|(addr, _)| Some(addr) == fastest || fastest.is_none())
            })
            .unwrap_or_else(|| t.subnet_of(client));
        LearnedOut {
            subnet: subnet.to_string(),
            fastest: fastest.map(ToString::to_string),
            records: t
                .subnet(subnet)
                .filter(|(addr, _)| entry.records.contains(addr))
                .map(|(addr, l)| LearnedRecord {
                    address: addr.to_string(),
                    rtt_ms: l.rtt.as_secs_f64() * 1000.0,
                    samples: l.samples,
                })
                .collect(),
        }
    })
}

/// What a query for `name` and `qtype` from `client` gets in `view`; `None` if the name is not
/// configured.
pub fn explain(
    view: &View,
    name: &DnsName,
    qtype: u16,
    client: Option<IpAddr>,
) -> Option<Explanation> {
    let status = view.names.iter().find(|n| n.name == *name)?;
    let entry = view.table.get(name, qtype);
    // Both DNS paths place a query without Client Subnet by its source address.
    let region = match entry.map(|e| e.policy) {
        Some(Policy::Geo { .. } | Policy::Learned { .. }) => client
            .zip(view.placement.as_ref())
            .map_or(0, |(c, p)| p.by_source(c)),
        _ => 0,
    };
    let backends = view
        .backends
        .iter()
        .filter(|b| b.key.service == *name)
        .map(|b| BackendWhy {
            address: b.key.address.to_string(),
            port: b.key.port,
            family: family(b.key.address),
            region: b.region.clone(),
            source: b.source.as_str(),
            effective_status: effective_status(b),
            reason: b.reason.as_str(),
            weight: b.weight,
            in_table: view.in_table(name, b.key.address),
        })
        .collect();
    Some(Explanation {
        name: name.to_string(),
        qtype: if qtype == QTYPE_A { "A" } else { "AAAA" },
        client: client.map(|c| c.to_string()),
        algorithm: status.algorithm.as_str(),
        all_down_policy: status.policy.as_str(),
        all_down: status.all_down,
        answer: if entry.is_some() { "records" } else { "nodata" },
        policy: entry.map(|e| policy_out(view, e, client)),
        ttl: entry.map(|e| e.ttl),
        max_answers: entry.map(|e| e.max_answers),
        rotation: ROTATION,
        records: entry.map_or_else(Vec::new, |e| strings(&answer(view, e, client, region))),
        candidates: entry.map_or_else(Vec::new, |e| strings(&e.records)),
        backends,
        generated_at: rfc3339(view.wall_ms),
    })
}

/// The records an answer carries at [`ROTATION`] for `client` in `region`, as the DNS paths draw them.
fn answer(view: &View, entry: &Entry, client: Option<IpAddr>, region: u8) -> Vec<IpAddr> {
    let drawn = entry.answer(ROTATION, region);
    match client {
        Some(client) => entry.learned_first(drawn, &view.learned, client),
        None => drawn,
    }
}

/// What a query gets now, and why each backend of the name is in or out.
#[utoipa::path(
    get,
    path = "/api/v1/dns/explain",
    tag = "dns",
    params(ExplainQuery),
    responses(
        (status = 200, description = "The answer and why", body = Explanation),
        (status = 400, description = "A bad name, type or client", body = super::error::ErrorBody),
        (status = 403, description = "Client not allowed", body = super::error::ErrorBody),
        (status = 404, description = "The name is not configured", body = super::error::ErrorBody),
    )
)]
pub(super) async fn get(
    State(api): State<Api>,
    query: Result<Query<ExplainQuery>, QueryRejection>,
) -> Result<Json<Explanation>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (name, qtype, client) = parse(q)?;
    let view = api.view();
    explain(&view, &name, qtype, client)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("{name} is not a configured name")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{registry::NameStatus, table::AllDown};

    fn q(name: Option<&str>, qtype: Option<&str>, client: Option<&str>) -> ExplainQuery {
        ExplainQuery {
            name: name.map(str::to_owned),
            qtype: qtype.map(str::to_owned),
            client: client.map(str::to_owned),
        }
    }

    #[test]
    fn bad_queries_are_refused_with_400() {
        for bad in [
            q(None, None, None),
            q(Some("a..b"), None, None),
            q(Some("app.test"), Some("MX"), None),
            q(Some("app.test"), None, Some("10.0.0")),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{e}");
        }
        let (_, qtype, client) =
            parse(q(Some("App.Test."), Some("aaaa"), Some("::ffff:10.0.0.1"))).unwrap();
        assert_eq!(qtype, QTYPE_AAAA);
        assert_eq!(
            client,
            Some(IpAddr::from([10, 0, 0, 1])),
            "mapped clients are IPv4"
        );
    }

    #[test]
    fn explains_the_published_entry_not_the_backends() {
        use crate::table::{AnswerTable, NameSpec};
        let name: DnsName = "app.test".parse().unwrap();
        let ip = |l| IpAddr::from([192, 0, 2, l]);
        // The table is what was published: one record only, although no backend is listed.
        let spec = NameSpec::new(name.clone(), 30, Policy::FixedOrder, 1, [ip(2), ip(1)]);
        let view = View {
            table: std::sync::Arc::new(AnswerTable::from_specs([&spec])),
            names: vec![NameStatus {
                name: name.clone(),
                policy: AllDown::All,
                all_down: true,
                algorithm: crate::config::RoutingAlgorithm::Failover,
            }],
            ..View::default()
        };
        let e = explain(&view, &name, QTYPE_A, None).unwrap();
        assert_eq!(e.records, ["192.0.2.2"]);
        assert_eq!(e.candidates, ["192.0.2.2", "192.0.2.1"]);
        assert!(e.all_down);
        assert_eq!(e.algorithm, "failover");
        let p = e.policy.unwrap();
        assert_eq!(p.kind, "fixed_order");
        assert_eq!(p.order.unwrap(), ["192.0.2.2", "192.0.2.1"]);
        let none = explain(&view, &name, QTYPE_AAAA, None).unwrap();
        assert_eq!(none.answer, "nodata");
        assert!(none.records.is_empty());
        let other: DnsName = "other.test".parse().unwrap();
        assert!(explain(&view, &other, QTYPE_A, None).is_none());
    }

    #[test]
    fn weighted_shares_and_geolocation_regions_come_from_the_entry() {
        use std::{collections::HashMap, sync::Arc};

        use crate::{
            routing::{GeoResolver, Placement},
            table::{AnswerTable, Family, NameSpec, SpecRecord},
        };
        let rec = |l, weight, region| SpecRecord {
            addr: IpAddr::from([192, 0, 2, l]),
            weight,
            region,
        };
        let spec = |name: &DnsName, policy, records| NameSpec {
            name: name.clone(),
            ttl: 5,
            max_answers: 1,
            all_down: AllDown::All,
            v4: Family { policy, records },
            v6: Family::default(),
        };
        let status = |name: &DnsName, algorithm| NameStatus {
            name: name.clone(),
            policy: AllDown::All,
            all_down: false,
            algorithm,
        };
        let (w, g): (DnsName, DnsName) = ("w.test".parse().unwrap(), "g.test".parse().unwrap());
        let resolver = GeoResolver::new(Some("eu".into()))
            .with_mappings([("10.1.0.0/16".parse().unwrap(), "us".to_owned())]);
        let ids = HashMap::from([("eu".to_owned(), 1), ("us".to_owned(), 2)]);
        let view = View {
            table: Arc::new(AnswerTable::from_specs([
                &spec(&w, Policy::Weighted, vec![rec(1, 3, 0), rec(2, 1, 0)]),
                &spec(
                    &g,
                    Policy::Geo { default_region: 1 },
                    vec![rec(1, 1, 1), rec(2, 1, 2)],
                ),
            ])),
            placement: Some(Arc::new(Placement::new(Arc::new(resolver), ids))),
            names: vec![
                status(&w, crate::config::RoutingAlgorithm::Weighted),
                status(&g, crate::config::RoutingAlgorithm::Geolocation),
            ],
            ..View::default()
        };
        let e = explain(&view, &w, QTYPE_A, None).unwrap();
        let weights = e.policy.unwrap().weights.unwrap();
        let shares: Vec<(usize, usize)> = weights.iter().map(|x| (x.slots, x.of)).collect();
        assert_eq!(shares.len(), 2);
        assert_eq!(shares[0].0, 3 * shares[1].0, "3:1 slots: {shares:?}");
        assert_eq!(shares[0].0 + shares[1].0, shares[0].1);

        let client = Some(IpAddr::from([10, 1, 2, 3]));
        let e = explain(&view, &g, QTYPE_A, client).unwrap();
        assert_eq!(e.records, ["192.0.2.2"], "the client's region, us");
        let geo = e.policy.unwrap().geo.unwrap();
        assert_eq!(
            (geo.client_region_id, geo.client_region.as_deref()),
            (Some(2), Some("us"))
        );
        let ecs = geo.ecs.unwrap();
        assert_eq!((ecs.region_id, ecs.scope_prefix), (2, 16));
        assert_eq!(geo.default_region.as_deref(), Some("eu"));
        let e = explain(&view, &g, QTYPE_A, Some(IpAddr::from([192, 0, 2, 99]))).unwrap();
        assert_eq!(
            e.records,
            ["192.0.2.1"],
            "placed nowhere: the default region, eu"
        );
        let e = explain(&view, &g, QTYPE_A, None).unwrap();
        assert_eq!(e.records, ["192.0.2.1"], "no client: the default region");
    }
}
