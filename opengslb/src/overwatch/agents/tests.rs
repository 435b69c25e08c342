use super::*;
use crate::{
    gossip::wire::{BackendReport, REPORT_VERSION, Signals},
    registry::AgentSays,
};

const FROM: &str = "127.0.0.1:40000";

fn report(agent: &str, seq: u64, token: &str, service: &str) -> Report {
    Report {
        version: REPORT_VERSION,
        agent_id: agent.into(),
        started_ms: 1_000,
        seq,
        interval_ms: 300,
        missed_threshold: 3,
        token: token.into(),
        region: None,
        leaving: false,
        backends: vec![BackendReport {
            service: service.into(),
            address: "10.0.0.1".parse().unwrap(),
            port: 80,
            weight: 100,
            status: AgentSays::Healthy,
            reason: String::new(),
        }],
        signals: Signals::default(),
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("opengslb-book-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn tokens(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<Secret>> {
    pairs
        .iter()
        .map(|(s, t)| (s.to_string(), t.iter().map(|t| Secret::new(*t)).collect()))
        .collect()
}

#[test]
fn configured_tokens_decide() {
    let dir = temp_dir("cfg");
    let mut book = AgentBook::new(
        &tokens(&[(
            "app.demo.local",
            &["token-one-0123456", "token-two-0123456"],
        )]),
        &dir,
    );
    let now = Instant::now();
    let from = FROM.parse().unwrap();
    let ok = report("a", 1, "token-two-0123456", "App.Demo.Local.");
    assert!(matches!(
        book.on_report(&ok.encode(), from, now),
        Ok(Accepted::Reports(r)) if r.len() == 1 && r[0].key == BackendKey::new("app.demo.local", "10.0.0.1".parse().unwrap(), 80)
    ));
    let bad = report("b", 1, "token-three-012345", "app.demo.local");
    assert_eq!(
        book.on_report(&bad.encode(), from, now),
        Err(Refusal::BadToken {
            service: "app.demo.local".into()
        })
    );
    let unknown = report("c", 1, "token-one-0123456", "other.demo.local");
    assert_eq!(
        book.on_report(&unknown.encode(), from, now),
        Err(Refusal::UnknownService {
            service: "other.demo.local".into()
        })
    );
    // A report with no backends yet still needs a token good for some service.
    let mut empty = report("d", 1, "token-three-012345", "app.demo.local");
    empty.backends.clear();
    assert!(matches!(
        book.on_report(&empty.encode(), from, now),
        Err(Refusal::BadToken { .. })
    ));
    let mut empty = report("e", 1, "token-one-0123456", "app.demo.local");
    empty.backends.clear();
    assert!(book.on_report(&empty.encode(), from, now).is_ok());
    // A refused agent is not in the book at all.
    assert_eq!(book.agents().count(), 2);
    assert_eq!(book.counts.get("bad_token"), Some(&2));
    assert_eq!(book.counts.get("unknown_service"), Some(&1));
    // Nothing is pinned when tokens are configured.
    assert!(!dir.join(PIN_FILE).exists());
}

#[test]
fn trust_on_first_use_pins_to_a_file_without_the_token() {
    let dir = temp_dir("tofu");
    let from = FROM.parse().unwrap();
    let now = Instant::now();
    {
        let mut book = AgentBook::new(&BTreeMap::new(), &dir);
        let first = report("a", 1, "first-token-0123456", "app.demo.local");
        assert!(book.on_report(&first.encode(), from, now).is_ok());
        let other = report("b", 1, "other-token-0123456", "app.demo.local");
        assert!(matches!(
            book.on_report(&other.encode(), from, now),
            Err(Refusal::BadToken { .. })
        ));
    }
    let text = std::fs::read_to_string(dir.join(PIN_FILE)).unwrap();
    assert!(text.starts_with("app.demo.local "), "{text}");
    assert!(
        !text.contains("first-token"),
        "the token itself is never stored"
    );
    // A restarted overwatch keeps the pin.
    let mut book = AgentBook::new(&BTreeMap::new(), &dir);
    let other = report("b", 1, "other-token-0123456", "app.demo.local");
    assert!(book.on_report(&other.encode(), from, now).is_err());
    let first = report("a", 1, "first-token-0123456", "app.demo.local");
    assert!(book.on_report(&first.encode(), from, now).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reports_must_rise_across_restarts() {
    let mut book = AgentBook::new(&BTreeMap::new(), &temp_dir("order"));
    let from = FROM.parse().unwrap();
    let now = Instant::now();
    let t = "token-0123456789ab";
    assert!(
        book.on_report(&report("a", 5, t, "s.example").encode(), from, now)
            .is_ok()
    );
    for seq in [5, 4] {
        assert_eq!(
            book.on_report(&report("a", seq, t, "s.example").encode(), from, now),
            Err(Refusal::Stale)
        );
    }
    // A restart (later start) begins again at 1.
    let mut restarted = report("a", 1, t, "s.example");
    restarted.started_ms = 2_000;
    assert!(book.on_report(&restarted.encode(), from, now).is_ok());
    // A report from the earlier life, replayed, is refused.
    assert_eq!(
        book.on_report(&report("a", 9, t, "s.example").encode(), from, now),
        Err(Refusal::Stale)
    );
}

#[test]
fn silence_kills_leave_is_at_once_and_a_report_revives() {
    let mut book = AgentBook::new(&BTreeMap::new(), &temp_dir("life"));
    let from = FROM.parse().unwrap();
    let t0 = Instant::now();
    let t = "token-0123456789ab";
    book.on_report(&report("a", 1, t, "s.example").encode(), from, t0)
        .unwrap();
    book.on_report(&report("b", 1, t, "s.example").encode(), from, t0)
        .unwrap();
    assert_eq!(book.next_deadline(), Some(t0 + Duration::from_millis(900)));
    assert!(book.expire(t0 + Duration::from_millis(899)).is_empty());
    book.on_report(
        &report("b", 2, t, "s.example").encode(),
        from,
        t0 + Duration::from_millis(500),
    )
    .unwrap();
    assert_eq!(book.expire(t0 + Duration::from_millis(900)), vec!["a"]);
    // Dead once only.
    assert!(book.expire(t0 + Duration::from_millis(1000)).is_empty());
    let mut leaving = report("b", 3, t, "s.example");
    leaving.leaving = true;
    assert_eq!(
        book.on_report(&leaving.encode(), from, t0 + Duration::from_millis(600)),
        Ok(Accepted::Left("b".into()))
    );
    assert_eq!(book.next_deadline(), None);
    assert_eq!(
        book.by_life(),
        [(Life::Alive, 0), (Life::Left, 1), (Life::Dead, 1)]
    );
    assert!(matches!(
        book.on_report(
            &report("a", 2, t, "s.example").encode(),
            from,
            t0 + Duration::from_secs(2)
        ),
        Ok(Accepted::Reports(_))
    ));
    assert!(
        !book.member_down("b"),
        "a member that left is not killed again"
    );
    assert!(book.member_down("a"));
    // Forgotten after long silence.
    book.expire(t0 + Duration::from_secs(3600));
    assert_eq!(book.agents().count(), 0);
}

#[test]
fn malformed_payloads_are_refused_and_counted() {
    let mut book = AgentBook::new(&BTreeMap::new(), &temp_dir("junk"));
    let from = FROM.parse().unwrap();
    assert!(matches!(
        book.on_report(b"\x01\x00junk", from, Instant::now()),
        Err(Refusal::Malformed(_))
    ));
    assert_eq!(book.counts.get("malformed"), Some(&1));
    assert_eq!(book.agents().count(), 0);
}
