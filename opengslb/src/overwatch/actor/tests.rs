//! The overwatch's control loop driven by inputs alone: no sockets, no timers; time is an argument.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use super::*;
use crate::{
    config::Secret,
    gossip::wire::{Ack, BackendReport, REPORT_VERSION, Report, Served, Signals, Status as Says},
    metrics::Metrics,
    overwatch::agents::Life,
    registry::{Override, Reason, Status, StatusMetrics},
};

const TOKEN: &str = "app-token-0123456789";
/// The wall clock the tests run at, in ms since the epoch.
const WALL: u64 = 1_700_000_000_000;

fn config(extra_server: &str) -> Config {
    config_with(extra_server, "")
}

/// [`config`], with `domain` (`, key: value` pairs) added to the domain's keys.
fn config_with(extra_server: &str, domain: &str) -> Config {
    Config::from_yaml_str(&format!(
        "dns: {{ zones: [example.com] }}
overwatch:
  gossip: {{ encryption_key: \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\" }}
  agent_tokens: {{ app.example.com: \"{TOKEN}\" }}
regions:
  - name: eu
    servers:
      - {{ address: 192.0.2.1, service: app.example.com }}
{extra_server}
domains:
  - {{ name: app.example.com, regions: [eu]{domain} }}
"
    ))
    .expect("test config")
}

/// Agent `a1`'s report number `seq`, sent at [`WALL`], about 192.0.2.7.
fn report(seq: u64, status: Says) -> Event {
    let r = Report {
        version: REPORT_VERSION,
        agent_id: "a1".into(),
        started_ms: WALL - 1000,
        sent_ms: WALL,
        seq,
        interval_ms: 300,
        missed_threshold: 3,
        token: Secret::new(TOKEN),
        region: None,
        leaving: false,
        backends: vec![BackendReport {
            service: "app.example.com".into(),
            address: agent_backend(),
            port: 80,
            weight: 100,
            status,
            reason: String::new(),
        }],
        signals: Signals::default(),
    };
    Event::Report {
        payload: r.encode(),
        sender_epoch: 7,
        from: "127.0.0.1:40000".parse().expect("address"),
    }
}

fn agent_backend() -> IpAddr {
    "192.0.2.7".parse().expect("address")
}

/// The A records a publish answers `app.example.com` with, if the effects publish.
fn published(effects: &[Effect]) -> Option<Vec<IpAddr>> {
    effects.iter().find_map(|e| match e {
        Effect::Publish(p) => Some(
            p.table
                .get(&"app.example.com".parse().expect("name"), 1)
                .map(|e| e.records.clone())
                .unwrap_or_default(),
        ),
        _ => None,
    })
}

/// The agent's backend as the effects show it at `/metrics`.
fn shown(effects: &[Effect]) -> Option<(Status, Reason)> {
    effects.iter().find_map(|e| match e {
        Effect::Status { backends, .. } => backends
            .iter()
            .find(|b| b.key.address == agent_backend())
            .map(|b| (b.status, b.reason)),
        _ => None,
    })
}

fn life(ow: &Overwatch) -> Option<Life> {
    let reports = ow.reports.as_ref()?;
    reports.book().agents().next().map(|(_, a)| a.life)
}

fn started(cfg: &Config, t0: Instant) -> Overwatch {
    let mut ow = Overwatch::new(cfg);
    let first = ow.handle(Input::Start, t0, WALL);
    let answers = published(&first).expect("the first publish");
    assert!(
        answers.contains(&"192.0.2.1".parse().expect("a")),
        "{answers:?}"
    );
    assert!(first.iter().any(|e| matches!(e, Effect::Book(_))));
    ow
}

#[test]
fn a_report_brings_its_backend_in_and_asks_for_a_publish() {
    let t0 = Instant::now();
    let mut ow = started(&config(""), t0);
    let out = ow.handle(Input::Gossip(vec![report(1, Says::Healthy)]), t0, WALL);
    let answers = published(&out).expect("a publish");
    assert!(answers.contains(&agent_backend()), "{answers:?}");
    assert_eq!(shown(&out), Some((Status::Healthy, Reason::Healthy)));

    // The same report again is stale: nothing to publish.
    let out = ow.handle(Input::Gossip(vec![report(1, Says::Healthy)]), t0, WALL);
    assert!(out.is_empty());

    let out = ow.handle(Input::Gossip(vec![report(2, Says::Draining)]), t0, WALL);
    let answers = published(&out).expect("a publish");
    assert!(!answers.contains(&agent_backend()), "{answers:?}");
    assert_eq!(shown(&out), Some((Status::Out, Reason::AgentDraining)));
}

#[test]
fn a_passed_deadline_makes_a_silent_agent_dead() {
    let t0 = Instant::now();
    let mut ow = started(&config(""), t0);
    ow.handle(Input::Gossip(vec![report(1, Says::Healthy)]), t0, WALL);
    let deadline = ow.deadline().expect("an agent deadline");
    assert_eq!(deadline, t0 + Duration::from_millis(900), "3 × 300 ms");

    let early = ow.handle(
        Input::Deadline { queued: Vec::new() },
        deadline - Duration::from_millis(1),
        WALL,
    );
    assert!(early.is_empty());
    let out = ow.handle(Input::Deadline { queued: Vec::new() }, deadline, WALL);
    assert!(
        !published(&out)
            .expect("a publish")
            .contains(&agent_backend())
    );
    assert_eq!(shown(&out), Some((Status::Out, Reason::AgentDead)));
    assert_eq!(life(&ow), Some(Life::Dead));
}

/// The loop can fall behind (a slow publish, a loaded machine): a report that arrived before the
/// agent's deadline, but still waited in the queue when the deadline is judged, keeps the agent alive.
#[test]
fn reports_queued_when_a_deadline_passes_are_applied_before_it_is_judged() {
    let t0 = Instant::now();
    let mut ow = started(&config(""), t0);
    ow.handle(Input::Gossip(vec![report(1, Says::Healthy)]), t0, WALL);
    let behind = t0 + Duration::from_secs(2);
    let queued = vec![report(2, Says::Healthy)];
    let out = ow.handle(Input::Deadline { queued }, behind, WALL + 2000);
    assert!(published(&out).is_none(), "nothing changes");
    assert_eq!(life(&ow), Some(Life::Alive), "the queued report counts");

    // Silent after that: dead at its deadline (3 × 300 ms).
    let out = ow.handle(
        Input::Deadline { queued: Vec::new() },
        behind + Duration::from_secs(1),
        WALL + 3000,
    );
    assert!(published(&out).is_some());
    assert_eq!(life(&ow), Some(Life::Dead));
}

#[test]
fn a_reload_keeps_agent_backends_and_reschedules_probes() {
    let t0 = Instant::now();
    let mut ow = started(&config(""), t0);
    ow.handle(Input::Gossip(vec![report(1, Says::Healthy)]), t0, WALL);
    let new = config("      - { address: 192.0.2.2, service: app.example.com }");
    let out = ow.handle(Input::Reload(Box::new(new)), t0, WALL);
    let Some(Effect::Probes(probes)) = out.first() else {
        panic!("probes are rescheduled before the publish");
    };
    assert_eq!(probes.len(), 2, "both static backends");
    let answers = published(&out).expect("a reload publishes");
    for a in ["192.0.2.1", "192.0.2.2", "192.0.2.7"] {
        assert!(
            answers.contains(&a.parse().expect("a")),
            "{a} in {answers:?}"
        );
    }
    assert_eq!(shown(&out), Some((Status::Healthy, Reason::Healthy)));
    assert_eq!(life(&ow), Some(Life::Alive), "the book keeps the agent");
}

#[test]
fn a_probe_publishes_only_when_it_changes_a_status() {
    let t0 = Instant::now();
    let mut ow = started(
        &config("      - { address: 192.0.2.2, service: app.example.com }"),
        t0,
    );
    let key = BackendKey::new(
        "app.example.com".parse().expect("name"),
        "192.0.2.1".parse().expect("a"),
        80,
    );
    let refused = ProbeResult {
        ok: false,
        latency: Duration::ZERO,
        error: Some("connection refused".into()),
        definitive: true,
    };
    let out = ow.handle(Input::Probe(key.clone(), refused.clone()), t0, WALL);
    assert_eq!(published(&out), Some(vec!["192.0.2.2".parse().expect("a")]));
    let out = ow.handle(Input::Probe(key, refused), t0, WALL);
    assert!(out.is_empty(), "already out");
}

#[test]
fn a_tick_republishes_only_a_changed_table_but_always_shows_the_status() {
    let t0 = Instant::now();
    let mut ow = started(&config(""), t0);
    let out = ow.handle(
        Input::Tick { queued: Vec::new() },
        t0 + Duration::from_secs(1),
        WALL,
    );
    assert!(published(&out).is_none());
    assert!(out.iter().any(|e| matches!(e, Effect::Status { .. })));
    assert!(out.iter().any(|e| matches!(e, Effect::Book(_))));

    // A report queued at the tick is applied by it.
    let queued = vec![report(1, Says::Healthy)];
    let out = ow.handle(Input::Tick { queued }, t0 + Duration::from_secs(1), WALL);
    assert!(
        published(&out)
            .expect("a changed table")
            .contains(&agent_backend())
    );
}

#[test]
fn shutdown_stops() {
    let mut ow = Overwatch::new(&config(""));
    let out = ow.handle(Input::Shutdown, Instant::now(), WALL);
    assert!(matches!(out.as_slice(), [Effect::Stop]));
}

const ALL_DOWN: &str = "\
dns: { zones: [example.com] }
regions:
  - name: eu
    servers:
      - { address: 192.0.2.1, service: app.example.com }
      - { address: 192.0.2.2, service: app.example.com }
      - { address: 192.0.2.9, service: other.example.com }
domains:
  - { name: app.example.com, regions: [eu] }
  - { name: other.example.com, regions: [eu], all_down: empty }
";

/// Under policy `all` the table is the same with every backend in or out, so the gauge cannot wait
/// for a changed table.
#[test]
fn name_all_down_shows_while_the_policy_answers() {
    let cfg = Config::from_yaml_str(ALL_DOWN).expect("test config");
    let mut ow = Overwatch::new(&cfg);
    assert!(ow.reports.is_none(), "no gossip key: gossip is off");
    let status = Arc::new(StatusMetrics::default());
    let mut metrics = Metrics::new();
    metrics.collect(status.clone());
    let run = |ow: &mut Overwatch, input| {
        let out = ow.handle(input, Instant::now(), WALL);
        for e in &out {
            if let Effect::Status { backends, names } = e {
                status.set(backends.clone(), names.clone());
            }
        }
        (published(&out).is_some(), metrics.render())
    };
    let app =
        |v: u8| format!("opengslb_name_all_down{{name=\"app.example.com\",policy=\"all\"}} {v}\n");
    let other = "opengslb_name_all_down{name=\"other.example.com\",policy=\"empty\"} 0\n";

    let (_, text) = run(&mut ow, Input::Start);
    assert!(text.contains(&app(0)) && text.contains(other), "{text}");
    assert!(
        text.contains("# HELP opengslb_backend_up 1 while the backend's own status is healthy")
            && text.contains("see opengslb_name_all_down"),
        "{text}"
    );

    let key = |a: &str| {
        BackendKey::new(
            "app.example.com".parse().expect("name"),
            a.parse().expect("address"),
            80,
        )
    };
    for a in ["192.0.2.1", "192.0.2.2"] {
        ow.control
            .registry
            .set_override(
                &key(a),
                Override {
                    healthy: false,
                    reason: "test".into(),
                    by: "test".into(),
                    at_ms: 0,
                },
            )
            .expect("a backend");
    }
    let (publish, text) = run(&mut ow, Input::Tick { queued: Vec::new() });
    assert!(!publish, "policy `all`: the same table");
    assert!(text.contains(&app(1)) && text.contains(other), "{text}");

    ow.control
        .registry
        .clear_override(&key("192.0.2.1"))
        .expect("a backend");
    let (_, text) = run(&mut ow, Input::Tick { queued: Vec::new() });
    assert!(text.contains(&app(0)) && text.contains(other), "{text}");
}

#[test]
fn an_api_server_is_answered_kept_across_a_reload_and_shown_as_the_api_s() {
    use crate::store::{
        BackendId, ServerRecord,
        objects::{ApiObject, ObjectChange},
    };
    let t0 = Instant::now();
    let mut ow = started(&config(""), t0);
    // An agent's backend, to see it survive the reload the change makes.
    ow.handle(Input::Gossip(vec![report(1, Says::Healthy)]), t0, WALL);
    let id = BackendId::new(
        "app.example.com".parse().expect("name"),
        "192.0.2.9".parse().expect("a"),
        80,
    );
    let put = Change::Object(ObjectChange::Put {
        object: ApiObject::Server(ServerRecord {
            backend: id.clone(),
            weight: 100,
            region: "eu".into(),
        }),
        create: true,
    });
    ow.check(&put).expect("a valid server");
    let out = ow.handle(Input::Api(vec![put.clone()]), t0, WALL);
    let answers = published(&out).expect("published at once");
    for a in ["192.0.2.1", "192.0.2.7", "192.0.2.9"] {
        assert!(
            answers.contains(&a.parse().expect("a")),
            "{a} in {answers:?}"
        );
    }
    let source_of = |out: &[Effect]| {
        out.iter().find_map(|e| match e {
            Effect::Status { backends, .. } => backends
                .iter()
                .find(|b| b.key.address == id.address)
                .map(|b| b.source),
            _ => None,
        })
    };
    assert_eq!(source_of(&out), Some(Source::Api));
    assert_eq!(
        ow.check(&put).map_err(|e| e.status.as_u16()),
        Err(409),
        "it exists now"
    );

    // The file changes; the server stays, as does the agent's backend.
    let new = config("      - { address: 192.0.2.2, service: app.example.com }");
    let out = ow.handle(Input::Reload(Box::new(new)), t0, WALL);
    let answers = published(&out).expect("a reload publishes");
    for a in ["192.0.2.1", "192.0.2.2", "192.0.2.7", "192.0.2.9"] {
        assert!(
            answers.contains(&a.parse().expect("a")),
            "{a} in {answers:?}"
        );
    }
    assert_eq!(source_of(&out), Some(Source::Api));
}

#[test]
fn validation_requests_name_static_backends_only() {
    use crate::api::Targets;
    let t0 = Instant::now();
    let mut ow = Overwatch::new(&config(
        "      - { address: 192.0.2.2, port: 8080, service: app.example.com }",
    ));
    ow.handle(Input::Start, t0, WALL);
    ow.handle(Input::Gossip(vec![report(1, Says::Healthy)]), t0, WALL);
    let service: DnsName = "app.example.com".parse().expect("name");
    let key = |a: &str, port| BackendKey::new(service.clone(), a.parse().expect("address"), port);
    let code = |t: &Targets| ow.validation_targets(t).map_err(|e| e.code);

    assert_eq!(
        code(&Targets::All),
        Ok(vec![key("192.0.2.1", 80), key("192.0.2.2", 8080)])
    );
    assert_eq!(
        code(&Targets::Address(
            service.clone(),
            "192.0.2.2".parse().expect("address")
        )),
        Ok(vec![key("192.0.2.2", 8080)])
    );
    assert_eq!(
        code(&Targets::One(key("192.0.2.1", 80))),
        Ok(vec![key("192.0.2.1", 80)])
    );
    // The agent's backend is known but not probed here; another is not known at all.
    assert_eq!(code(&Targets::One(key("192.0.2.7", 80))), Err("conflict"));
    assert_eq!(code(&Targets::One(key("192.0.2.1", 81))), Err("not_found"));
    let other = Targets::Service("other.example.com".parse().expect("name"));
    assert_eq!(code(&other), Err("not_found"));

    let mut off = config("");
    off.overwatch.validation.enabled = false;
    let ow = Overwatch::new(&off);
    assert_eq!(
        ow.validation_targets(&Targets::All).map_err(|e| e.code),
        Err("conflict")
    );
}

/// The acks the effects send, each with whether a publish came before it.
fn acks(effects: &[Effect]) -> Vec<(SocketAddr, Ack, bool)> {
    let mut published = false;
    let mut out = Vec::new();
    for e in effects {
        match e {
            Effect::Publish(_) => published = true,
            Effect::Ack { to, payload } => {
                out.push((*to, Ack::decode(payload).expect("an ack"), published));
            }
            _ => {}
        }
    }
    out
}

#[test]
fn an_applied_report_is_acked_after_the_publish_that_reflects_it() {
    let t0 = Instant::now();
    let mut ow = started(&config(""), t0);
    let served = |a: &Ack| a.backends.iter().map(|b| b.served).collect::<Vec<_>>();

    let out = ow.handle(Input::Gossip(vec![report(1, Says::Healthy)]), t0, WALL);
    let sent = acks(&out);
    assert_eq!(sent.len(), 1);
    let (to, ack, after_publish) = &sent[0];
    assert_eq!(
        *to,
        "127.0.0.1:40000".parse::<SocketAddr>().expect("address")
    );
    assert!(after_publish, "the ack follows the publish");
    assert_eq!((ack.started_ms, ack.seq), (WALL - 1000, 1));
    assert_eq!(ack.backends[0].address, agent_backend());
    assert_eq!(served(ack), [Served::Yes]);

    // Nothing changed: no publish, but the table as it stands reflects the report.
    let out = ow.handle(Input::Gossip(vec![report(2, Says::Healthy)]), t0, WALL);
    let sent = acks(&out);
    assert_eq!((sent[0].1.seq, served(&sent[0].1)), (2, vec![Served::Yes]));
    // A stale report is not acknowledged.
    let out = ow.handle(Input::Gossip(vec![report(2, Says::Healthy)]), t0, WALL);
    assert!(acks(&out).is_empty());

    let out = ow.handle(Input::Gossip(vec![report(3, Says::Draining)]), t0, WALL);
    let sent = acks(&out);
    assert!(sent[0].2);
    assert_eq!((sent[0].1.seq, served(&sent[0].1)), (3, vec![Served::No]));

    // Every backend of the name out: policy `all` answers with the drained one too, and says why.
    let static_one = BackendKey::new(
        "app.example.com".parse().expect("name"),
        "192.0.2.1".parse().expect("address"),
        80,
    );
    let o = Override {
        healthy: false,
        reason: "test".into(),
        by: "test".into(),
        at_ms: 0,
    };
    ow.handle(
        Input::Api(vec![Change::SetOverride(static_one, o)]),
        t0,
        WALL,
    );
    let out = ow.handle(Input::Gossip(vec![report(4, Says::Draining)]), t0, WALL);
    let sent = acks(&out);
    assert_eq!(
        (sent[0].1.seq, served(&sent[0].1)),
        (4, vec![Served::AllDown])
    );
}

/// [`config`] with `gossip` as its `overwatch.gossip` block.
fn config_with_gossip(gossip: &str) -> Config {
    let text = format!(
        "dns: {{ zones: [example.com] }}
overwatch:
  gossip: {gossip}
  agent_tokens: {{ app.example.com: \"{TOKEN}\" }}
regions:
  - name: eu
    servers:
      - {{ address: 192.0.2.1, service: app.example.com }}
domains:
  - {{ name: app.example.com, regions: [eu] }}
"
    );
    Config::from_yaml_str(&text).expect("test config")
}

fn rings(out: &[Effect]) -> Vec<Vec<GossipKey>> {
    out.iter()
        .filter_map(|e| match e {
            Effect::GossipKeys(k) => Some(k.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reload_hands_a_changed_key_ring_to_the_node_and_keeps_the_rest_of_gossip_as_it_runs() {
    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "HxgZGhscHR4fEBESExQVFhcICQoLDA0ODwABAgMEBQY=";
    let key = |k: &str| GossipKey::from_base64(k).expect("key");
    let t0 = Instant::now();
    let mut ow = started(
        &config_with_gossip(&format!("{{ encryption_key: \"{K1}\" }}")),
        t0,
    );
    let mut reload = |gossip: String| {
        ow.handle(
            Input::Reload(Box::new(config_with_gossip(&gossip))),
            t0,
            WALL,
        )
    };
    // Step a: the new key second. The same ring again changes nothing.
    let step_a = format!("{{ encryption_keys: [\"{K1}\", \"{K2}\"] }}");
    assert_eq!(rings(&reload(step_a.clone())), [vec![key(K1), key(K2)]]);
    assert!(rings(&reload(step_a)).is_empty());
    // A one-key ring written either way is the same ring.
    let out = reload(format!("{{ encryption_key: \"{K2}\" }}"));
    assert_eq!(rings(&out), [vec![key(K2)]]);
    assert!(rings(&reload(format!("{{ encryption_keys: [\"{K2}\"] }}"))).is_empty());
    // The ring goes live with another gossip change; that change waits for a restart, and the running
    // config keeps the address the node is bound to.
    let out = reload(format!(
        "{{ bind_address: \"127.0.0.1:7000\", encryption_keys: [\"{K1}\", \"{K2}\"] }}"
    ));
    assert_eq!(rings(&out), [vec![key(K1), key(K2)]]);
    assert!(
        published(&out).is_some(),
        "the rest of the reload still publishes"
    );
    // Turning gossip off needs a restart: the ring stays as it runs.
    assert!(rings(&reload("{}".to_owned())).is_empty());
    let out = reload(format!("{{ encryption_keys: [\"{K1}\", \"{K2}\"] }}"));
    assert!(rings(&out).is_empty(), "the ring that runs");
    let Some(Effect::Objects { effective, .. }) =
        out.iter().find(|e| matches!(e, Effect::Objects { .. }))
    else {
        panic!("a reload shows the effective config");
    };
    assert_eq!(
        effective.overwatch.gossip.bind_address,
        "0.0.0.0:7946".parse::<SocketAddr>().unwrap(),
        "the bound address, not the file's"
    );
}

/// [`config`] with `extra` lines in its `overwatch` section.
fn config_with_overwatch(extra: &str) -> Config {
    let text = format!(
        "dns: {{ zones: [example.com] }}
overwatch:
{extra}regions:
  - name: eu
    servers:
      - {{ address: 192.0.2.1, service: app.example.com }}
    health_check: {{ interval: 20s, timeout: 4s }}
domains:
  - {{ name: app.example.com, regions: [eu] }}
"
    );
    Config::from_yaml_str(&text).expect("test config")
}

#[test]
fn a_reload_applies_the_validation_cycle_and_keeps_the_identity_as_it_runs() {
    let t0 = Instant::now();
    let mut ow = Overwatch::new(&config_with_overwatch("  identity: { region: eu }\n"));
    ow.handle(Input::Start, t0, WALL);
    let period = |p: &[Scheduled<BackendKey>]| -> Vec<(Duration, Duration)> {
        p.iter()
            .map(|s| (s.interval, s.target.check.timeout))
            .collect()
    };
    let periods = |out: &[Effect]| {
        out.iter()
            .find_map(|e| match e {
                Effect::Probes(p) => Some(period(p)),
                _ => None,
            })
            .expect("a reload replaces the probe set")
    };
    let secs = Duration::from_secs;
    // The region's own 20 s / 4 s are shorter than the 30 s / 5 s defaults.
    assert_eq!(period(&ow.probes()), [(secs(20), secs(4))]);
    let out = ow.handle(
        Input::Reload(Box::new(config_with_overwatch(
            "  identity: { region: us }\n  validation: { check_interval: 5s, check_timeout: 2s }\n",
        ))),
        t0,
        WALL,
    );
    assert_eq!(periods(&out), [(secs(5), secs(2))]);
    let Some(Effect::Objects { effective, .. }) =
        out.iter().find(|e| matches!(e, Effect::Objects { .. }))
    else {
        panic!("a reload shows the effective config");
    };
    assert_eq!(
        effective.overwatch.identity.region.as_deref(),
        Some("eu"),
        "the region shown until a restart"
    );
}

/// Two weighted and two round-robin backends, with a 10 s slow start.
fn config_slow_start() -> Config {
    Config::from_yaml_str(
        "dns: { zones: [example.com] }
regions:
  - name: eu
    servers:
      - { address: 192.0.2.1, service: w.example.com }
      - { address: 192.0.2.2, service: w.example.com }
      - { address: 192.0.2.3, service: rr.example.com }
      - { address: 192.0.2.4, service: rr.example.com }
domains:
  - { name: w.example.com, regions: [eu], routing_algorithm: weighted, slow_start: 10s }
  - { name: rr.example.com, regions: [eu], slow_start: 10s }
",
    )
    .expect("test config")
}

/// The share of first answers `name` gives `addr` over 640 rotations (every slot table 10 times over), if the
/// effects publish.
fn share(effects: &[Effect], name: &str, addr: &str) -> Option<f64> {
    let (name, addr): (DnsName, IpAddr) = (name.parse().expect("name"), addr.parse().expect("a"));
    effects.iter().find_map(|e| match e {
        Effect::Publish(p) => {
            let entry = p.table.get(&name, 1)?;
            let hits = (0..640)
                .filter(|&r| entry.answer(r, 0).first() == Some(&addr))
                .count();
            Some(hits as f64 / 640.0)
        }
        _ => None,
    })
}

#[test]
fn a_backend_that_comes_back_ramps_up_in_steps_on_the_tick_then_answers_as_before() {
    let t0 = Instant::now();
    let cfg = config_slow_start();
    let mut ow = Overwatch::new(&cfg);
    let out = ow.handle(Input::Start, t0, WALL);
    // Nothing came back at start: full shares at once.
    assert_eq!(share(&out, "w.example.com", "192.0.2.2"), Some(0.5));
    assert_eq!(share(&out, "rr.example.com", "192.0.2.4"), Some(0.5));
    let before = match out.iter().find(|e| matches!(e, Effect::Publish(_))) {
        Some(Effect::Publish(p)) => p.table.clone(),
        _ => unreachable!("a first publish"),
    };

    let key = |name: &str, last: u8| {
        BackendKey::new(
            name.parse().expect("name"),
            IpAddr::from([192, 0, 2, last]),
            80,
        )
    };
    let o = Override {
        healthy: false,
        reason: "maintenance".into(),
        by: "test".into(),
        at_ms: WALL,
    };
    let down = vec![
        Change::SetOverride(key("w.example.com", 2), o.clone()),
        Change::SetOverride(key("rr.example.com", 4), o),
    ];
    let out = ow.handle(Input::Api(down), t0 + Duration::from_secs(1), WALL);
    assert_eq!(share(&out, "w.example.com", "192.0.2.2"), Some(0.0));

    let back = t0 + Duration::from_secs(2);
    let up = vec![
        Change::ClearOverride(key("w.example.com", 2)),
        Change::ClearOverride(key("rr.example.com", 4)),
    ];
    let out = ow.handle(Input::Api(up), back, WALL);
    // Step 1 of 10: an eleventh of its weight, 1 slot in 12.
    let mut w = vec![share(&out, "w.example.com", "192.0.2.2").expect("a publish")];
    let mut rr = vec![share(&out, "rr.example.com", "192.0.2.4").expect("a publish")];
    assert!(w[0] > 0.0 && w[0] < 0.1, "{w:?}");
    assert!(rr[0] > 0.0 && rr[0] < 0.1, "{rr:?}");

    // Half a second on, the same step: nothing to publish.
    let tick = |ow: &mut Overwatch, at| ow.handle(Input::Tick { queued: Vec::new() }, at, WALL);
    let out = tick(&mut ow, back + Duration::from_millis(500));
    assert!(!out.iter().any(|e| matches!(e, Effect::Publish(_))));

    // One tick a second: a new step each, full shares at the window's end, then no more publishes.
    let mut last = None;
    for s in 1..=13 {
        let out = tick(&mut ow, back + Duration::from_secs(s));
        if let Some(Effect::Publish(p)) = out.iter().find(|e| matches!(e, Effect::Publish(_))) {
            assert!(s <= 10, "a publish {s} s after the return");
            last = Some(p.table.clone());
            w.push(share(&out, "w.example.com", "192.0.2.2").expect("a share"));
            rr.push(share(&out, "rr.example.com", "192.0.2.4").expect("a share"));
        }
    }
    println!("weighted shares by step: {w:?}\nround-robin shares by step: {rr:?}");
    assert_eq!(w.len(), 11, "ten steps, then the full share: {w:?}");
    assert!(w.windows(2).all(|p| p[0] < p[1]), "rising: {w:?}");
    assert!(rr.windows(2).all(|p| p[0] < p[1]), "rising: {rr:?}");
    assert_eq!((w[10], rr[10]), (0.5, 0.5));
    assert_eq!(
        last.as_deref(),
        Some(before.as_ref()),
        "after the ramp, the very table of before"
    );
}

#[test]
fn an_agent_backend_ramps_when_its_drain_ends_but_not_when_it_first_appears() {
    let t0 = Instant::now();
    let cfg = config_with("", ", routing_algorithm: weighted, slow_start: 2s");
    let mut ow = started(&cfg, t0);
    let agent = "192.0.2.7";
    let out = ow.handle(Input::Gossip(vec![report(1, Says::Healthy)]), t0, WALL);
    assert_eq!(
        share(&out, "app.example.com", agent),
        Some(0.5),
        "new: no ramp"
    );
    let out = ow.handle(Input::Gossip(vec![report(2, Says::Draining)]), t0, WALL);
    assert_eq!(share(&out, "app.example.com", agent), Some(0.0));
    let back = t0 + Duration::from_secs(1);
    let out = ow.handle(Input::Gossip(vec![report(3, Says::Healthy)]), back, WALL);
    let first = share(&out, "app.example.com", agent).expect("a publish");
    assert!(first > 0.0 && first < 0.1, "drain off: ramps from {first}");
    // Half the window on, with the agent's next report.
    let queued = vec![report(4, Says::Healthy)];
    let out = ow.handle(Input::Tick { queued }, back + Duration::from_secs(1), WALL);
    let half = share(&out, "app.example.com", agent).expect("a publish");
    assert!(first < half && half < 0.5, "half way: {half}");
}

#[test]
fn another_overwatchs_stored_changes_are_applied_once_and_a_resync_drops_what_is_gone() {
    use crate::store::{
        BackendId, Event as Stored, Key, OverrideRecord, Record, ServerRecord, objects::ApiObjects,
    };
    let t0 = Instant::now();
    let mut ow = started(&config(""), t0);
    let id = |a: &str| {
        BackendId::new(
            "app.example.com".parse().expect("name"),
            a.parse().expect("a"),
            80,
        )
    };
    let server = ServerRecord {
        backend: id("192.0.2.9"),
        weight: 100,
        region: "eu".into(),
    };
    let out_1 = OverrideRecord {
        backend: id("192.0.2.1"),
        healthy: false,
        reason: "elsewhere".into(),
        by: "bob".into(),
        at_ms: 1,
    };
    let remote = vec![
        Stored::Put(Record::Servers(server.clone())),
        Stored::Put(Record::Overrides(out_1.clone())),
    ];
    let out = ow.handle(Input::Stored(remote.clone()), t0, WALL);
    let answers = published(&out).expect("another overwatch's changes are published");
    assert!(
        answers.contains(&"192.0.2.9".parse().expect("a")),
        "{answers:?}"
    );
    assert!(
        !answers.contains(&"192.0.2.1".parse().expect("a")),
        "{answers:?}"
    );
    // The same changes again (this overwatch's own, coming back): nothing to do.
    assert!(ow.handle(Input::Stored(remote), t0, WALL).is_empty());

    // Deleted elsewhere.
    let out = ow.handle(
        Input::Stored(vec![Stored::Delete(Key::Overrides(id("192.0.2.1")))]),
        t0,
        WALL,
    );
    let answers = published(&out).expect("the override's removal is published");
    assert!(
        answers.contains(&"192.0.2.1".parse().expect("a")),
        "{answers:?}"
    );

    // Everything read again after missed changes: the server is gone from the store, the override back.
    let all = StoredAll {
        objects: ApiObjects::default(),
        overrides: vec![out_1],
        pins: Vec::new(),
    };
    let out = ow.handle(Input::StoredAll(Box::new(all)), t0, WALL);
    let answers = published(&out).expect("a resync publishes");
    // 192.0.2.1 alone, overridden out: the all-down policy (`all`) answers with it.
    assert_eq!(answers, vec!["192.0.2.1".parse::<IpAddr>().expect("a")]);
    let key = BackendKey::new(id("192.0.2.1").service, id("192.0.2.1").address, 80);
    let held = ow
        .control
        .registry
        .get(&key)
        .and_then(|b| b.override_.clone());
    assert_eq!(held.map(|o| o.reason), Some("elsewhere".to_owned()));
}
