//! The agent's loop driven by inputs alone: no sockets, no timers; time is an argument.

use std::time::Duration;

use super::*;
use crate::{
    config::{Config, Secret},
    gossip::wire::REPORT_VERSION,
};

fn tracked(state: ValidationState, error: Option<&str>) -> Tracked {
    Tracked {
        report_as: ("app.demo.local".into(), "10.20.0.21".parse().unwrap(), 80),
        weight: 100,
        policy: CheckPolicy::default(),
        validation: Validation {
            state,
            ..Validation::default()
        },
        last_error: error.map(str::to_owned),
    }
}

#[test]
fn a_drain_wins_over_checks_and_unchecked_backends_are_left_out_unless_drained() {
    let t = [
        tracked(ValidationState::Passing, None),
        tracked(ValidationState::Failing, Some("status 503")),
        tracked(ValidationState::Unknown, None),
    ];
    let said = |inputs: &DrainInputs| -> Vec<(Status, String)> {
        statuses(&t, inputs.reason().as_deref(), MAX_REASON)
            .into_iter()
            .map(|b| (b.status, b.reason))
            .collect()
    };
    assert_eq!(
        said(&DrainInputs::default()),
        [
            (Status::Healthy, String::new()),
            (Status::Unhealthy, "status 503".into())
        ]
    );
    // Each drain source, and the first one that holds names the reason.
    let cases = [
        (
            DrainInputs {
                file: true,
                manual: true,
                ..DrainInputs::default()
            },
            "drain file present",
        ),
        (
            DrainInputs {
                manual: true,
                maintenance: true,
                ..DrainInputs::default()
            },
            "drained by operator",
        ),
        (
            DrainInputs {
                maintenance: true,
                ..DrainInputs::default()
            },
            "maintenance window",
        ),
        (
            DrainInputs {
                predictive: Some("cpu 97% >= 90%".into()),
                ..DrainInputs::default()
            },
            "cpu 97% >= 90%",
        ),
    ];
    // A drain covers every backend, checked or not: each is going away.
    for (inputs, reason) in cases {
        assert_eq!(
            said(&inputs),
            vec![(Status::Draining, reason.to_owned()); 3]
        );
    }
}

#[test]
fn a_report_with_every_reason_at_its_longest_fits_one_datagram() {
    let base = Report {
        version: REPORT_VERSION,
        agent_id: "x".repeat(256),
        started_ms: u64::MAX,
        sent_ms: 0,
        seq: 0,
        interval_ms: 300,
        missed_threshold: 3,
        token: Secret::new("t".repeat(256)),
        region: Some("r".repeat(256)),
        leaving: false,
        backends: Vec::new(),
        signals: Signals::default(),
    };
    for (n, service_len) in [(1, 20), (64, 20), (64, 60)] {
        let reported: Vec<(String, IpAddr, u16)> = (0..n)
            .map(|i| {
                (
                    "s".repeat(service_len),
                    "2001:db8::1".parse().unwrap(),
                    1000 + i,
                )
            })
            .collect();
        let room = reason_room(&base, &reported).unwrap();
        let mut full = base.clone();
        full.seq = u64::MAX;
        full.sent_ms = u64::MAX;
        full.backends = reported
            .iter()
            .map(|(s, a, p)| BackendReport {
                service: s.clone(),
                address: *a,
                port: *p,
                weight: 1000,
                status: Status::Unhealthy,
                reason: bounded_reason(&"é".repeat(500), room),
            })
            .collect();
        let len = full.encode().len();
        assert!(
            len <= crate::gossip::seal::MAX_PAYLOAD,
            "{n} backends: {len} bytes"
        );
        assert!(
            room <= MAX_REASON && (n > 1 || room == MAX_REASON),
            "{n}: {room}"
        );
    }
    // 64 backends with names of 200 bytes cannot fit even without reasons: a clear error at start.
    let reported: Vec<(String, IpAddr, u16)> = (0..64)
        .map(|i| ("s".repeat(200), "2001:db8::1".parse().unwrap(), 1000 + i))
        .collect();
    let err = reason_room(&base, &reported).unwrap_err().to_string();
    assert!(err.contains("more than one datagram holds"), "{err}");
}

/// 2026-03-01T03:00:00Z, inside the config's maintenance window.
const IN_WINDOW: u64 = 1_772_334_000_000;

fn agent_config() -> Config {
    Config::from_yaml_str(
        "mode: agent
agent:
  identity: { service_token: \"demo-token-0123456789\" }
  backends:
    - { service: app.demo.local, address: 10.20.0.21, port: 80, health_check: { success_threshold: 1 } }
  gossip:
    encryption_key: \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"
    overwatch_nodes: [\"10.20.0.10:7946\"]
  maintenance:
    windows: [{ start: \"2026-03-01T02:00:00Z\", end: \"2026-03-01T04:00:00Z\" }]
",
    )
    .expect("agent config")
}

fn agent() -> Agent {
    let cfg = agent_config();
    let base = Report {
        version: REPORT_VERSION,
        agent_id: "a1".into(),
        started_ms: 1,
        sent_ms: 1,
        seq: 0,
        interval_ms: 300,
        missed_threshold: 3,
        token: Secret::new("demo-token-0123456789"),
        region: None,
        leaving: false,
        backends: Vec::new(),
        signals: Signals::default(),
    };
    let t = Tracked {
        policy: CheckPolicy::from_health_check(&cfg.agent.backends[0].health_check, 0.3),
        ..tracked(ValidationState::Unknown, None)
    };
    Agent::new(&cfg.agent, base, vec![t], MAX_REASON, false)
}

/// The reports the effects send, decoded.
fn sent(effects: &[Effect]) -> Vec<Report> {
    effects
        .iter()
        .flat_map(|e| match e {
            Effect::Send(p) => vec![p.clone()],
            Effect::Leave(ps) => ps.clone(),
            _ => Vec::new(),
        })
        .map(|p| Report::decode(&p).expect("a report"))
        .collect()
}

fn said(r: &Report) -> Vec<(Status, String)> {
    r.backends
        .iter()
        .map(|b| (b.status, b.reason.clone()))
        .collect()
}

fn pass() -> ProbeResult {
    ProbeResult {
        ok: true,
        latency: Duration::from_millis(2),
        error: None,
        definitive: false,
    }
}

const WALL: u64 = 1_700_000_000_000;

#[test]
fn a_report_goes_out_at_once_on_a_change_and_when_due_otherwise() {
    let mut a = agent();
    let now = Instant::now();
    // Not checked yet: the first report names no backend, and goes out because it is due.
    let out = a.handle(Input::ReportDue, now, WALL);
    let r = sent(&out);
    assert_eq!(r.len(), 1);
    assert!(r[0].backends.is_empty() && r[0].seq == 1 && r[0].sent_ms == WALL);

    let out = a.handle(Input::Probe(0, pass()), now, WALL + 5);
    assert!(
        out.contains(&Effect::Sample { at: now, ok: true }),
        "the predictor hears of it"
    );
    let r = sent(&out);
    assert_eq!(r.len(), 1, "a change goes out at once");
    assert_eq!(said(&r[0]), [(Status::Healthy, String::new())]);
    assert_eq!(r[0].seq, 2);

    // Nothing changed: nothing sent until the report is due.
    assert!(sent(&a.handle(Input::Probe(0, pass()), now, WALL)).is_empty());
    assert_eq!(sent(&a.handle(Input::ReportDue, now, WALL)).len(), 1);
    // A result for a backend the agent does not have changes nothing.
    let out = a.handle(Input::Probe(7, pass()), now, WALL);
    assert!(sent(&out).is_empty() && !out.iter().any(|e| matches!(e, Effect::Sample { .. })));
}

#[test]
fn a_drain_is_reported_at_once_and_shown_with_its_reason() {
    let mut a = agent();
    let now = Instant::now();
    a.handle(Input::Probe(0, pass()), now, WALL);
    let out = a.handle(Input::DrainFile(true), now, WALL);
    let r = sent(&out);
    assert_eq!(
        said(&r[0]),
        [(Status::Draining, "drain file present".into())]
    );
    assert!(out.contains(&Effect::Show(AgentView {
        draining: Some("drain file present".into()),
        predictive: false,
        signals: Signals::default(),
    })));

    // The file wins over the operator; once it goes, the operator's drain shows.
    let out = a.handle(Input::Manual(true), now, WALL);
    assert!(sent(&out).is_empty(), "still draining, for the same reason");
    let out = a.handle(Input::DrainFile(false), now, WALL);
    assert_eq!(
        said(&sent(&out)[0]),
        [(Status::Draining, "drained by operator".into())]
    );
    let out = a.handle(Input::Manual(false), now, WALL);
    assert_eq!(said(&sent(&out)[0]), [(Status::Healthy, String::new())]);

    let signals = Signals {
        cpu: Some(97.0),
        ..Signals::default()
    };
    let out = a.handle(
        Input::Predicted((Some("cpu 97% >= 90%".into()), signals)),
        now,
        WALL,
    );
    let r = sent(&out);
    assert_eq!(said(&r[0]), [(Status::Draining, "cpu 97% >= 90%".into())]);
    assert_eq!(r[0].signals, signals, "reports carry the signals");
    assert!(out.contains(&Effect::Show(AgentView {
        draining: Some("cpu 97% >= 90%".into()),
        predictive: true,
        signals,
    })));
}

#[test]
fn a_maintenance_window_drains_by_the_wall_clock() {
    let mut a = agent();
    let now = Instant::now();
    a.handle(Input::Probe(0, pass()), now, WALL);
    assert!(
        sent(&a.handle(Input::Schedule, now, WALL)).is_empty(),
        "outside the window"
    );
    let out = a.handle(Input::Schedule, now, IN_WINDOW);
    assert_eq!(
        said(&sent(&out)[0]),
        [(Status::Draining, "maintenance window".into())]
    );
}

#[test]
fn shutdown_sends_numbered_leaving_reports_of_the_last_backends() {
    let mut a = agent();
    let now = Instant::now();
    a.handle(Input::Probe(0, pass()), now, WALL);
    let out = a.handle(Input::Shutdown, now, WALL + 9);
    let [Effect::Leave(_)] = out.as_slice() else {
        panic!("one leave, nothing else");
    };
    let r = sent(&out);
    assert_eq!(r.len() as u32, LEAVE_REPEATS);
    for (i, report) in r.iter().enumerate() {
        assert!(report.leaving);
        assert_eq!(
            report.seq,
            2 + i as u64,
            "each numbered, so none is dropped as stale"
        );
        assert_eq!(said(report), [(Status::Healthy, String::new())]);
    }
}
