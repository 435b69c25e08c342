//! Tests of the registry: every effective-status rule and its precedence, the inputs (agent reports,
//! validation with hysteresis, overrides, API backends, expiry), SIGHUP reloads keeping runtime state,
//! and the answer table with its three all-down policies.

use std::net::{IpAddr, Ipv4Addr};

use super::*;

const S: Duration = Duration::from_secs(1);

/// Two domains in two regions, with a server in a region its domain does not list (`ap`) and the same key
/// declared twice.
const CONFIG: &str = "\
dns: { zones: [example.com] }
overwatch: { stale: { threshold: 10s, remove_after: 60s } }
regions:
  - name: eu
    servers:
      - { address: 192.0.2.1, service: app.example.com }
      - { address: 192.0.2.2, port: 8080, weight: 300, service: app.example.com }
      - { address: \"2001:db8::1\", service: app.example.com }
  - name: us
    servers:
      - { address: 198.51.100.1, service: app.example.com }
      - { address: 198.51.100.9, service: other.example.com }
      - { address: 192.0.2.1, service: app.example.com }
  - name: ap
    servers:
      - { address: 203.0.113.1, service: app.example.com }
domains:
  - { name: app.example.com, regions: [us, eu], ttl: 30, max_answers: 2 }
  - { name: other.example.com, regions: [us], routing_algorithm: failover, all_down: empty }
";

fn config(yaml: &str) -> Config {
    match Config::from_yaml_str(yaml) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

fn stale() -> StaleConfig {
    StaleConfig {
        threshold: 10 * S,
        remove_after: 60 * S,
    }
}

fn key(service: &str, addr: &str, port: u16) -> BackendKey {
    BackendKey::new(
        service.parse().expect("service"),
        addr.parse().expect("address"),
        port,
    )
}

fn app(addr: &str) -> BackendKey {
    key("app.example.com", addr, 80)
}

fn report(agent: &str, key: &BackendKey, says: AgentSays) -> AgentReport {
    AgentReport {
        agent_id: agent.to_owned(),
        key: key.clone(),
        weight: 100,
        region: Some("agent-region".to_owned()),
        says,
        reason: String::new(),
    }
}

fn pass() -> CheckOutcome {
    CheckOutcome {
        ok: true,
        definitive: false,
        latency: Some(Duration::from_millis(10)),
    }
}

fn fail() -> CheckOutcome {
    CheckOutcome {
        ok: false,
        definitive: false,
        latency: None,
    }
}

fn status(r: &Registry, k: &BackendKey, now: Instant) -> (Status, Reason) {
    let b = r.get(k).expect("backend");
    effective_status(b, now, r.stale())
}

// ---- effective status --------------------------------------------------------------------------------

/// What a test backend is made of, for the rule table.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    override_: Option<bool>,
    /// What the claiming agent said, and how long ago (seconds); `None`: unclaimed.
    claim: Option<(AgentSays, u64)>,
    left: bool,
    dead: bool,
    validation: ValidationState,
    want: (Status, Reason),
}

const fn case(name: &'static str, want: (Status, Reason)) -> Case {
    Case {
        name,
        override_: None,
        claim: None,
        left: false,
        dead: false,
        validation: ValidationState::Unknown,
        want,
    }
}

#[test]
fn every_status_rule_and_its_precedence() {
    use AgentSays::{Draining, Healthy as Says, Unhealthy};
    use Reason as R;
    use Status::{Healthy as In, Out};
    use ValidationState::{Failing, Passing, Unknown};
    let healthy_agent = Some((Says, 1));
    let cases = [
        // Rule 5: nothing says otherwise.
        case("unclaimed, never validated", (In, R::Healthy)),
        Case {
            validation: Passing,
            ..case("unclaimed, validation passing", (In, R::Healthy))
        },
        Case {
            claim: healthy_agent,
            validation: Passing,
            ..case("agent healthy, validation passing", (In, R::Healthy))
        },
        Case {
            claim: healthy_agent,
            validation: Unknown,
            ..case("agent healthy, validation unknown", (In, R::Healthy))
        },
        // Rule 1: an override, either way, beats everything.
        Case {
            override_: Some(false),
            validation: Passing,
            claim: healthy_agent,
            ..case("override out beats healthy", (Out, R::Override))
        },
        Case {
            override_: Some(true),
            claim: Some((Draining, 1)),
            ..case("override in beats draining", (In, R::Override))
        },
        Case {
            override_: Some(true),
            claim: Some((Says, 100)),
            dead: true,
            validation: Failing,
            ..case(
                "override in beats dead, stale and failing",
                (In, R::Override),
            )
        },
        // Rule 2: the agent's inside knowledge beats a passing validation.
        Case {
            claim: Some((Draining, 1)),
            validation: Passing,
            ..case("draining beats passing validation", (Out, R::AgentDraining))
        },
        Case {
            claim: Some((Unhealthy, 1)),
            validation: Passing,
            ..case(
                "unhealthy beats passing validation",
                (Out, R::AgentUnhealthy),
            )
        },
        Case {
            claim: Some((Draining, 100)),
            dead: true,
            ..case("rule 2 comes before rule 3", (Out, R::AgentDraining))
        },
        // Rule 3: an agent gone is out, whatever validation says.
        Case {
            claim: healthy_agent,
            left: true,
            validation: Passing,
            ..case("agent left beats passing validation", (Out, R::AgentLeft))
        },
        Case {
            claim: healthy_agent,
            dead: true,
            validation: Passing,
            ..case("agent dead beats passing validation", (Out, R::AgentDead))
        },
        Case {
            claim: Some((Says, 10)),
            validation: Passing,
            ..case("silent for the threshold: stale", (Out, R::Stale))
        },
        Case {
            claim: Some((Says, 9)),
            ..case("silent for less than the threshold", (In, R::Healthy))
        },
        Case {
            claim: Some((Says, 20)),
            validation: Failing,
            ..case("stale comes before validation", (Out, R::Stale))
        },
        // Rule 4: validation, alone for unclaimed backends, the safety net for claimed ones.
        Case {
            validation: Failing,
            ..case("unclaimed, validation failing", (Out, R::ValidationFailed))
        },
        Case {
            claim: healthy_agent,
            validation: Failing,
            ..case(
                "agent healthy, validation failing",
                (Out, R::ValidationFailed),
            )
        },
    ];
    let t0 = Instant::now();
    let now = t0 + 100 * S;
    for c in cases {
        let mut b = Backend::new(app("192.0.2.1"), 100, "eu".into(), Source::Static);
        b.override_ = c.override_.map(|healthy| Override {
            healthy,
            reason: "test".into(),
            by: "tester".into(),
            at_ms: 0,
        });
        b.claim = c.claim.map(|(said, ago)| Claim {
            agent_id: "a1".into(),
            last_report: now - Duration::from_secs(ago),
            said,
            reason: String::new(),
            weight: 100,
            region: None,
            left: c.left,
            dead: c.dead,
        });
        b.validation.state = c.validation;
        assert_eq!(effective_status(&b, now, &stale()), c.want, "{}", c.name);
        assert_eq!(b.status(now, &stale()), c.want, "{}", c.name);
    }
}

#[test]
fn reasons_have_distinct_snake_case_names() {
    let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "override",
            "agent_draining",
            "agent_unhealthy",
            "agent_left",
            "agent_dead",
            "stale",
            "validation_failed",
            "healthy"
        ]
    );
    assert_eq!(Reason::AgentDead.to_string(), "agent_dead");
    assert_eq!(Status::Out.as_str(), "out");
    assert_eq!(Source::Api.to_string(), "api");
}

// ---- building from the config --------------------------------------------------------------------------

#[test]
fn from_config_registers_the_served_static_servers_in_config_order() {
    let cfg = config(CONFIG);
    let r = Registry::from_config(&cfg);
    assert_eq!(r.stale(), &stale());
    let order: Vec<(String, u16, &str, u32)> = r
        .backends_of(&"APP.example.com.".parse().unwrap())
        .iter()
        .map(|b| {
            (
                b.key.address.to_string(),
                b.key.port,
                b.region.as_str(),
                b.weight,
            )
        })
        .collect();
    // `us` first, as the domain lists it; 192.0.2.1:80 in `us` (its first place) and not again in `eu`;
    // nothing from `ap`, which the domain does not list.
    assert_eq!(
        order,
        [
            ("198.51.100.1".into(), 80, "us", 100),
            ("192.0.2.1".into(), 80, "us", 100),
            ("192.0.2.2".into(), 8080, "eu", 300),
            ("2001:db8::1".into(), 80, "eu", 100),
        ]
    );
    assert_eq!(r.len(), 5);
    assert!(r.iter().all(|b| b.source == Source::Static));
    assert!(r.get(&app("203.0.113.1")).is_none());
    // Keys are canonical: any case, a trailing dot, an IPv4-mapped address find the same backend.
    let mapped = key("App.Example.Com.", "::ffff:192.0.2.1", 80);
    assert_eq!(mapped, app("192.0.2.1"));
    assert!(r.get(&mapped).is_some());
}

#[test]
fn a_fresh_registry_answers_what_the_config_serves() {
    let cfg = config(CONFIG);
    let r = Registry::from_config(&cfg);
    let domains = DomainInfo::from_config(&cfg);
    for (d, records) in domains.iter().zip(cfg.domain_records()) {
        let set = r.answer_set(d, Instant::now());
        let addrs: Vec<IpAddr> = set.keys.iter().map(|k| k.address).collect();
        let mut want: Vec<IpAddr> = records.v4.iter().map(|&a| IpAddr::V4(a)).collect();
        want.extend(records.v6.iter().map(|&a| IpAddr::V6(a)));
        addrs
            .iter()
            .for_each(|a| assert!(want.contains(a), "{a} not configured"));
        want.iter()
            .for_each(|a| assert!(addrs.contains(a), "{a} not answered"));
        assert_eq!(d.name, records.name);
        assert_eq!(d.ttl, records.ttl);
        assert_eq!(d.max_answers, records.max_answers);
    }
    assert_eq!(domains[0].all_down, AllDown::All);
    assert_eq!(domains[1].all_down, AllDown::Empty);
}

// ---- agent reports -------------------------------------------------------------------------------------

#[test]
fn an_agent_claims_a_static_backend_or_creates_its_own() {
    let mut r = Registry::from_config(&config(CONFIG));
    let t0 = Instant::now();
    let mut rep = report("a1", &app("192.0.2.1"), AgentSays::Healthy);
    rep.weight = 7;
    assert!(r.apply_agent_report(rep.clone(), t0), "a new claim");
    let b = r.get(&app("192.0.2.1")).expect("claimed");
    assert_eq!(
        b.source,
        Source::Static,
        "a claim does not change the source"
    );
    assert_eq!(
        (b.weight, b.region.as_str()),
        (100, "us"),
        "config wins for static"
    );
    assert_eq!(b.claim.as_ref().map(|c| c.agent_id.as_str()), Some("a1"));
    assert_eq!(r.len(), 5, "no second backend");

    // The same report again changes nothing visible: no republish.
    assert!(!r.apply_agent_report(rep.clone(), t0 + S));
    // A new verdict does.
    rep.says = AgentSays::Draining;
    assert!(r.apply_agent_report(rep.clone(), t0 + 2 * S));
    assert_eq!(
        status(&r, &app("192.0.2.1"), t0 + 2 * S),
        (Status::Out, Reason::AgentDraining)
    );
    // A report bringing a stale backend back is a change, even though it says the same.
    assert_eq!(
        status(&r, &app("192.0.2.1"), t0 + 20 * S),
        (Status::Out, Reason::AgentDraining)
    );
    rep.says = AgentSays::Healthy;
    assert!(r.apply_agent_report(rep.clone(), t0 + 3 * S));
    assert_eq!(
        status(&r, &app("192.0.2.1"), t0 + 13 * S),
        (Status::Out, Reason::Stale)
    );
    assert!(r.apply_agent_report(rep, t0 + 13 * S), "back from stale");
    assert_eq!(
        status(&r, &app("192.0.2.1"), t0 + 13 * S),
        (Status::Healthy, Reason::Healthy)
    );

    // A key nobody declared: the agent's own backend, with its weight and region.
    let own = app("10.0.0.5");
    let mut rep = report("a2", &own, AgentSays::Healthy);
    rep.weight = 42;
    assert!(r.apply_agent_report(rep.clone(), t0));
    let b = r.get(&own).expect("created");
    assert_eq!(b.source, Source::Agent);
    assert_eq!((b.weight, b.region.as_str()), (42, "agent-region"));
    rep.weight = 43;
    assert!(
        r.apply_agent_report(rep, t0 + S),
        "a new weight is a change"
    );
    assert_eq!(r.get(&own).map(|b| b.weight), Some(43));
}

#[test]
fn left_and_dead_mark_only_that_agents_claims_until_it_reports_again() {
    let mut r = Registry::from_config(&config(CONFIG));
    let t0 = Instant::now();
    for k in [app("192.0.2.1"), app("10.0.0.5")] {
        r.apply_agent_report(report("a1", &k, AgentSays::Healthy), t0);
    }
    r.apply_agent_report(report("a2", &app("198.51.100.1"), AgentSays::Healthy), t0);

    assert!(r.agent_left("a1"));
    assert!(!r.agent_left("a1"), "already marked");
    assert!(!r.agent_left("nobody"));
    for k in [app("192.0.2.1"), app("10.0.0.5")] {
        assert_eq!(status(&r, &k, t0), (Status::Out, Reason::AgentLeft));
    }
    assert_eq!(
        status(&r, &app("198.51.100.1"), t0),
        (Status::Healthy, Reason::Healthy)
    );

    assert!(r.agent_dead("a2"));
    assert_eq!(
        status(&r, &app("198.51.100.1"), t0),
        (Status::Out, Reason::AgentDead)
    );
    // The agent is back: its next report clears the mark.
    assert!(r.apply_agent_report(
        report("a2", &app("198.51.100.1"), AgentSays::Healthy),
        t0 + S
    ));
    assert_eq!(
        status(&r, &app("198.51.100.1"), t0 + S),
        (Status::Healthy, Reason::Healthy)
    );
    // Another agent reporting the same key takes the claim over, once its holder left.
    assert!(r.apply_agent_report(report("a3", &app("192.0.2.1"), AgentSays::Healthy), t0 + S));
    let claim = r.get(&app("192.0.2.1")).and_then(|b| b.claim.clone());
    assert_eq!(
        claim.map(|c| (c.agent_id, c.left)),
        Some(("a3".into(), false))
    );
    // While a3 lives, a4 cannot take it (or make it flap).
    assert!(!r.apply_agent_report(report("a4", &app("192.0.2.1"), AgentSays::Draining), t0 + S));
    assert_eq!(
        status(&r, &app("192.0.2.1"), t0 + S),
        (Status::Healthy, Reason::Healthy)
    );
    assert!(r.agent_dead("a3"));
    assert!(r.apply_agent_report(report("a4", &app("192.0.2.1"), AgentSays::Draining), t0 + S));
    assert_eq!(
        status(&r, &app("192.0.2.1"), t0 + S),
        (Status::Out, Reason::AgentDraining)
    ); // A holder silent for the stale threshold gives way too, dead-marked or not.
    let stale = r.stale().threshold;
    assert!(!r.apply_agent_report(report("a5", &app("192.0.2.1"), AgentSays::Healthy), t0 + S));
    assert!(r.apply_agent_report(
        report("a5", &app("192.0.2.1"), AgentSays::Healthy),
        t0 + S + stale
    ));
}

// ---- validation ----------------------------------------------------------------------------------------

#[test]
fn validation_has_hysteresis_and_definitive_failures_count_at_once() {
    let mut r = Registry::from_config(&config(CONFIG));
    let k = app("192.0.2.1");
    let now = Instant::now();
    let policy = CheckPolicy {
        success_threshold: 2,
        failure_threshold: 3,
        smoothing: 0.5,
    };
    let state = |r: &Registry| r.get(&k).map(|b| b.validation.state);

    // Unknown → two failures are not enough; the third makes it failing.
    assert!(!r.apply_validation(&k, fail(), policy));
    assert!(!r.apply_validation(&k, fail(), policy));
    assert_eq!(state(&r), Some(ValidationState::Unknown));
    assert_eq!(status(&r, &k, now), (Status::Healthy, Reason::Healthy));
    assert!(r.apply_validation(&k, fail(), policy));
    assert_eq!(state(&r), Some(ValidationState::Failing));
    assert_eq!(status(&r, &k, now), (Status::Out, Reason::ValidationFailed));
    assert!(!r.apply_validation(&k, fail(), policy), "still failing");

    // One pass is not enough to come back; two are.
    assert!(!r.apply_validation(&k, pass(), policy));
    assert_eq!(state(&r), Some(ValidationState::Failing));
    assert!(r.apply_validation(&k, pass(), policy));
    assert_eq!(state(&r), Some(ValidationState::Passing));

    // A failure in between resets the count.
    assert!(!r.apply_validation(&k, fail(), policy));
    assert!(!r.apply_validation(&k, pass(), policy));
    assert!(!r.apply_validation(&k, fail(), policy));
    assert!(!r.apply_validation(&k, fail(), policy));
    assert_eq!(state(&r), Some(ValidationState::Passing));

    // A refused connection needs no confirmation.
    let refused = CheckOutcome {
        definitive: true,
        ..fail()
    };
    let other = app("198.51.100.1");
    assert!(r.apply_validation(&other, refused, policy));
    assert_eq!(
        r.get(&other).map(|b| b.validation.state),
        Some(ValidationState::Failing)
    );

    // Thresholds of 0 count as 1.
    let third = app("2001:db8::1");
    let zero = CheckPolicy {
        success_threshold: 0,
        failure_threshold: 0,
        smoothing: 0.5,
    };
    assert!(r.apply_validation(&third, fail(), zero));
    assert!(r.apply_validation(&third, pass(), zero));

    // A result for a backend that is gone is dropped.
    assert!(!r.apply_validation(&app("203.0.113.99"), fail(), policy));
}

#[test]
fn passing_probes_feed_the_latency_average() {
    let mut r = Registry::from_config(&config(CONFIG));
    let k = app("192.0.2.1");
    let policy = CheckPolicy {
        smoothing: 0.5,
        ..CheckPolicy::default()
    };
    let ms = Duration::from_millis;
    let probe = |ok, latency| CheckOutcome {
        ok,
        definitive: false,
        latency: Some(latency),
    };
    r.apply_validation(&k, probe(true, ms(10)), policy);
    r.apply_validation(&k, probe(true, ms(30)), policy);
    r.apply_validation(&k, probe(false, ms(5000)), policy);
    let v = r.get(&k).map(|b| b.validation.clone()).expect("backend");
    assert_eq!(v.ewma_latency, Some(ms(20)), "failures do not feed it");
    assert_eq!(v.latency_samples, 2);
    assert_eq!(v.last_latency, Some(ms(5000)));
    assert_eq!((v.consecutive_successes, v.consecutive_failures), (0, 1));
}

// ---- overrides and API backends ------------------------------------------------------------------------

#[test]
fn overrides_are_set_replaced_and_cleared() {
    let mut r = Registry::from_config(&config(CONFIG));
    let k = app("192.0.2.1");
    let now = Instant::now();
    assert_eq!(
        r.set_override(&k, ov(false, "maintenance", "ops")),
        Ok(true)
    );
    assert_eq!(
        r.set_override(&k, ov(false, "maintenance", "ops")),
        Ok(false)
    );
    assert_eq!(status(&r, &k, now), (Status::Out, Reason::Override));
    assert_eq!(r.set_override(&k, ov(true, "force", "ops")), Ok(true));
    assert_eq!(status(&r, &k, now), (Status::Healthy, Reason::Override));
    assert_eq!(r.clear_override(&k), Ok(true));
    assert_eq!(r.clear_override(&k), Ok(false));
    assert_eq!(status(&r, &k, now), (Status::Healthy, Reason::Healthy));

    let missing = app("203.0.113.99");
    assert_eq!(
        r.set_override(&missing, ov(true, "", "api")),
        Err(RegistryError::UnknownBackend(missing.clone()))
    );
    assert_eq!(
        r.clear_override(&missing),
        Err(RegistryError::UnknownBackend(missing))
    );
}

#[test]
fn api_backends_are_added_updated_and_removed() {
    let mut r = Registry::from_config(&config(CONFIG));
    let k = app("10.1.0.1");
    assert_eq!(r.add_api_backend(&k, 50, "eu"), Ok(true));
    assert_eq!(r.add_api_backend(&k, 50, "eu"), Ok(false));
    assert_eq!(r.add_api_backend(&k, 60, "eu"), Ok(true));
    assert_eq!(
        r.get(&k).map(|b| (b.source, b.weight)),
        Some((Source::Api, 60))
    );

    let st = app("192.0.2.1");
    assert_eq!(
        r.add_api_backend(&st, 1, "x"),
        Err(RegistryError::AlreadyExists {
            key: st.clone(),
            existing: Source::Static
        })
    );
    assert_eq!(
        r.remove_api_backend(&st),
        Err(RegistryError::NotApi {
            key: st,
            existing: Source::Static
        })
    );
    assert_eq!(r.remove_api_backend(&k), Ok(true));
    assert!(r.get(&k).is_none());

    // An API backend an agent claims stays, as the agent's, when the API removes it.
    assert_eq!(r.add_api_backend(&k, 60, "eu"), Ok(true));
    let mut rep = report("a1", &k, AgentSays::Healthy);
    rep.weight = 9;
    r.apply_agent_report(rep, Instant::now());
    assert_eq!(r.get(&k).map(|b| b.weight), Some(60), "the API's weight");
    assert_eq!(r.remove_api_backend(&k), Ok(true));
    assert_eq!(
        r.get(&k).map(|b| (b.source, b.weight, b.region.as_str())),
        Some((Source::Agent, 9, "agent-region"))
    );
}

// ---- reload and expiry ---------------------------------------------------------------------------------

#[test]
fn reload_replaces_static_servers_and_keeps_everything_else() {
    let cfg = config(CONFIG);
    let mut r = Registry::from_config(&cfg);
    let t0 = Instant::now();
    // Runtime state on a static backend that stays.
    r.apply_agent_report(report("a1", &app("192.0.2.1"), AgentSays::Draining), t0);
    r.set_override(&app("198.51.100.1"), ov(false, "broken", "ops"))
        .expect("override");
    r.apply_validation(
        &app("2001:db8::1"),
        CheckOutcome {
            definitive: true,
            ..fail()
        },
        CheckPolicy::default(),
    );
    // A static backend about to leave the config, claimed by an agent; an unclaimed one about to leave.
    let claimed_leaving = key("app.example.com", "192.0.2.2", 8080);
    r.apply_agent_report(report("a2", &claimed_leaving, AgentSays::Healthy), t0);
    // An agent backend, and an API backend that the new config declares.
    r.apply_agent_report(report("a3", &app("10.0.0.5"), AgentSays::Healthy), t0);
    r.add_api_backend(&app("192.0.2.50"), 5, "api")
        .expect("api");
    r.add_api_backend(&app("10.9.9.9"), 5, "api").expect("api");

    assert!(!r.reload(&cfg), "the same config changes nothing");

    let new = CONFIG
        .replace(
            "      - { address: 192.0.2.2, port: 8080, weight: 300, service: app.example.com }\n",
            "      - { address: 192.0.2.50, weight: 200, service: app.example.com }\n",
        )
        .replace(
            "      - { address: 198.51.100.9, service: other.example.com }\n",
            "",
        )
        .replace("threshold: 10s", "threshold: 20s");
    assert_ne!(new, CONFIG);
    assert!(r.reload(&config(&new)));

    assert_eq!(r.stale().threshold, 20 * S);
    let get = |k: &BackendKey| r.get(k).expect("kept");
    // Runtime state survived.
    assert_eq!(
        status(&r, &app("192.0.2.1"), t0),
        (Status::Out, Reason::AgentDraining)
    );
    assert_eq!(
        status(&r, &app("198.51.100.1"), t0),
        (Status::Out, Reason::Override)
    );
    assert_eq!(
        get(&app("2001:db8::1")).validation.state,
        ValidationState::Failing
    );
    // The claimed static server the config dropped is now the agent's.
    let b = get(&claimed_leaving);
    assert_eq!(
        (b.source, b.static_order, b.weight),
        (Source::Agent, None, 100)
    );
    // The unclaimed one is gone.
    assert!(
        r.get(&key("other.example.com", "198.51.100.9", 80))
            .is_none()
    );
    // Agent and API backends stayed; the API one the config now declares became static, with its weight.
    assert_eq!(get(&app("10.0.0.5")).source, Source::Agent);
    assert_eq!(get(&app("10.9.9.9")).source, Source::Api);
    let b = get(&app("192.0.2.50"));
    assert_eq!(
        (b.source, b.weight, b.region.as_str()),
        (Source::Static, 200, "eu")
    );
    // Answer order: static in the new config order, then the others by key.
    let order: Vec<String> = r
        .backends_of(&"app.example.com".parse().unwrap())
        .iter()
        .map(|b| b.key.to_string())
        .collect();
    assert_eq!(
        order,
        [
            "app.example.com/198.51.100.1:80",
            "app.example.com/192.0.2.1:80",
            "app.example.com/192.0.2.50:80",
            "app.example.com/[2001:db8::1]:80",
            "app.example.com/10.0.0.5:80",
            "app.example.com/10.9.9.9:80",
            "app.example.com/192.0.2.2:8080",
        ]
    );
}

#[test]
fn expire_removes_only_silent_agent_backends() {
    let mut r = Registry::from_config(&config(CONFIG));
    let t0 = Instant::now();
    r.apply_agent_report(report("a1", &app("10.0.0.5"), AgentSays::Healthy), t0);
    r.apply_agent_report(
        report("a2", &app("10.0.0.6"), AgentSays::Healthy),
        t0 + 30 * S,
    );
    r.apply_agent_report(report("a1", &app("192.0.2.1"), AgentSays::Healthy), t0);
    r.add_api_backend(&app("10.9.9.9"), 5, "api").expect("api");
    let n = r.len();

    assert!(!r.expire(t0 + 59 * S));
    assert_eq!(r.len(), n);
    assert!(r.expire(t0 + 60 * S));
    assert_eq!(r.len(), n - 1);
    assert!(r.get(&app("10.0.0.5")).is_none());
    assert!(r.get(&app("10.0.0.6")).is_some(), "reported later");
    // The static backend it claimed stays, out: no report = unhealthy.
    assert_eq!(
        status(&r, &app("192.0.2.1"), t0 + 60 * S),
        (Status::Out, Reason::Stale)
    );
    assert!(r.get(&app("10.9.9.9")).is_some());
    assert!(!r.expire(t0 + 60 * S));
}

#[test]
fn next_deadline_is_the_next_stale_or_expiry() {
    let mut r = Registry::from_config(&config(CONFIG));
    let t0 = Instant::now();
    assert_eq!(r.next_deadline(t0), None, "no claims, nothing timed");
    r.apply_agent_report(report("a1", &app("192.0.2.1"), AgentSays::Healthy), t0);
    r.apply_agent_report(
        report("a2", &app("10.0.0.5"), AgentSays::Healthy),
        t0 + 5 * S,
    );
    assert_eq!(
        r.next_deadline(t0),
        Some(t0 + 10 * S),
        "a1's claim turns stale"
    );
    assert_eq!(r.next_deadline(t0 + 10 * S), Some(t0 + 15 * S), "then a2's");
    assert_eq!(
        r.next_deadline(t0 + 15 * S),
        Some(t0 + 65 * S),
        "then a2's backend expires"
    );
    assert_eq!(r.next_deadline(t0 + 65 * S), None);
}

#[test]
fn status_view_shows_what_each_status_was_decided_from() {
    let mut r = Registry::from_config(&config(CONFIG));
    let t0 = Instant::now();
    let mut rep = report("a1", &app("192.0.2.1"), AgentSays::Draining);
    rep.reason = "drain file present".into();
    r.apply_agent_report(rep, t0);
    r.apply_validation(&app("192.0.2.1"), pass(), CheckPolicy::default());
    let view = r.status_view(t0 + 3 * S);
    assert_eq!(view.len(), r.len());
    let row = view
        .iter()
        .find(|s| s.key == app("192.0.2.1"))
        .expect("row");
    assert_eq!(
        (row.source, row.status, row.reason),
        (Source::Static, Status::Out, Reason::AgentDraining)
    );
    assert_eq!(row.agent_id.as_deref(), Some("a1"));
    assert_eq!(
        row.agent_says,
        Some((AgentSays::Draining, "drain file present".into()))
    );
    assert_eq!(row.last_report_age, Some(3 * S));
    assert_eq!(row.validation, ValidationState::Unknown);
    assert_eq!(row.latency, Some(Duration::from_millis(10)));
    assert_eq!((row.weight, row.region.as_str()), (100, "us"));
    let other = view
        .iter()
        .find(|s| s.key == app("198.51.100.1"))
        .expect("row");
    assert_eq!(
        (other.status, other.reason),
        (Status::Healthy, Reason::Healthy)
    );
    assert_eq!(other.agent_id, None);
}

// ---- answers and all-down ------------------------------------------------------------------------------

fn v4(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

fn domain(name: &str, all_down: AllDown) -> DomainInfo {
    DomainInfo {
        name: name.parse().expect("name"),
        ttl: 30,
        max_answers: 2,
        all_down,
        slow_start: None,
    }
}

/// Takes every static backend of `app.example.com` out by validation.
fn fail_all(r: &mut Registry) {
    let keys: Vec<BackendKey> = r
        .backends_of(&"app.example.com".parse().unwrap())
        .iter()
        .map(|b| b.key.clone())
        .collect();
    for k in keys {
        r.apply_validation(
            &k,
            CheckOutcome {
                definitive: true,
                ..fail()
            },
            CheckPolicy::default(),
        );
    }
}

#[test]
fn answers_carry_the_healthy_backends_in_order_without_duplicate_addresses() {
    let mut r = Registry::from_config(&config(CONFIG));
    let now = Instant::now();
    // The same address on another port, an agent backend, and a draining one.
    r.add_api_backend(&key("app.example.com", "192.0.2.1", 9000), 1, "eu")
        .expect("api");
    r.apply_agent_report(report("a1", &app("10.0.0.5"), AgentSays::Healthy), now);
    r.apply_agent_report(report("a1", &app("198.51.100.1"), AgentSays::Draining), now);
    let d = domain("app.example.com", AllDown::All);
    let set = r.answer_set(&d, now);
    assert!(!set.all_down);
    // Static backends in config order (both ports of 192.0.2.1), then the others by key.
    assert_eq!(
        set.keys,
        [
            app("192.0.2.1"),
            key("app.example.com", "192.0.2.2", 8080),
            app("2001:db8::1"),
            app("10.0.0.5"),
            key("app.example.com", "192.0.2.1", 9000),
        ]
    );
}

#[test]
fn all_down_all_answers_with_every_backend() {
    let mut r = Registry::from_config(&config(CONFIG));
    let now = Instant::now();
    fail_all(&mut r);
    let d = domain("app.example.com", AllDown::All);
    let set = r.answer_set(&d, now);
    assert!(set.all_down);
    let addrs: Vec<IpAddr> = set.keys.iter().map(|k| k.address).collect();
    assert_eq!(
        addrs,
        [
            IpAddr::V4(v4([198, 51, 100, 1])),
            IpAddr::V4(v4([192, 0, 2, 1])),
            IpAddr::V4(v4([192, 0, 2, 2])),
            "2001:db8::1".parse::<IpAddr>().unwrap(),
        ]
    );
}

#[test]
fn all_down_empty_answers_nothing() {
    let mut r = Registry::from_config(&config(CONFIG));
    let now = Instant::now();
    fail_all(&mut r);
    let d = domain("app.example.com", AllDown::Empty);
    assert_eq!(
        r.answer_set(&d, now),
        AnswerSet {
            keys: vec![],
            all_down: true
        }
    );
}

#[test]
fn all_down_last_healthy_remembers_the_last_healthy_set() {
    let mut r = Registry::from_config(&config(CONFIG));
    let t0 = Instant::now();
    let d = domain("app.example.com", AllDown::LastHealthy);

    // Never healthy since start: every backend, as `all`.
    let mut never = r.clone();
    fail_all(&mut never);
    assert_eq!(never.answer_set(&d, t0).keys.len(), 4);

    // Two backends out, then the last two: the answer stays with the last two.
    let pol = CheckPolicy::default();
    let refused = CheckOutcome {
        definitive: true,
        ..fail()
    };
    r.apply_validation(&app("198.51.100.1"), refused, pol);
    r.apply_validation(&app("2001:db8::1"), refused, pol);
    let healthy = r.answer_set(&d, t0);
    assert_eq!(
        healthy.keys,
        [app("192.0.2.1"), key("app.example.com", "192.0.2.2", 8080)]
    );
    // The caller remembers each set it publishes.
    r.remember_healthy(std::slice::from_ref(&d), std::slice::from_ref(&healthy));
    r.apply_agent_report(report("a1", &app("192.0.2.1"), AgentSays::Draining), t0);
    r.apply_validation(&key("app.example.com", "192.0.2.2", 8080), refused, pol);
    let down = r.answer_set(&d, t0);
    assert!(down.all_down);
    assert_eq!(down.keys, healthy.keys);

    // Recovery replaces the memory.
    r.clear_override(&app("198.51.100.1")).expect("known");
    r.apply_validation(&app("198.51.100.1"), pass(), pol);
    r.apply_validation(&app("198.51.100.1"), pass(), pol);
    let recovered = r.answer_set(&d, t0);
    assert_eq!(recovered.keys, [app("198.51.100.1")]);
    r.remember_healthy(std::slice::from_ref(&d), std::slice::from_ref(&recovered));
    r.set_override(&app("198.51.100.1"), ov(false, "", "ops"))
        .expect("known");
    assert_eq!(r.answer_set(&d, t0).keys, [app("198.51.100.1")]);

    // A remembered backend that is removed is not answered any more; none left: every backend.
    let own = app("10.0.0.5");
    let mut r2 = Registry::from_config(&config(CONFIG));
    fail_all(&mut r2);
    r2.apply_agent_report(report("a9", &own, AgentSays::Healthy), t0);
    let own_set = r2.answer_set(&d, t0);
    assert_eq!(own_set.keys, std::slice::from_ref(&own));
    r2.remember_healthy(std::slice::from_ref(&d), std::slice::from_ref(&own_set));
    assert!(r2.expire(t0 + 60 * S));
    let after = r2.answer_set(&d, t0 + 60 * S);
    assert!(after.all_down);
    assert_eq!(after.keys.len(), 4, "falls back to every backend");

    // A domain no longer configured forgets its set.
    assert!(!r.last_healthy.is_empty());
    r.remember_healthy(&[], &[]);
    assert!(r.last_healthy.is_empty());
}

#[test]
fn a_name_with_no_backend_gets_an_empty_set() {
    let r = Registry::new(stale());
    let set = r.answer_set(&domain("new.example.com", AllDown::All), Instant::now());
    assert!(set.all_down && set.keys.is_empty());
}

fn ov(healthy: bool, reason: &str, by: &str) -> Override {
    Override {
        healthy,
        reason: reason.into(),
        by: by.into(),
        at_ms: 0,
    }
}

#[test]
fn an_override_restored_for_an_unknown_backend_waits_for_it() {
    let mut r = Registry::from_config(&config(CONFIG));
    let now = Instant::now();
    let agents = app("10.0.0.5");
    assert!(!r.restore_override(&agents, ov(false, "kept", "ops")));
    assert!(r.get(&agents).is_none());
    r.apply_agent_report(report("a1", &agents, AgentSays::Healthy), now);
    let b = r.get(&agents).expect("reported");
    assert_eq!(
        b.override_.as_ref().map(|o| o.reason.as_str()),
        Some("kept")
    );
    assert_eq!(effective_status(b, now, &stale()).1, Reason::Override);
    // A known backend takes it at once.
    assert!(r.restore_override(&app("192.0.2.1"), ov(false, "now", "ops")));
}
