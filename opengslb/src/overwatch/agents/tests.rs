use std::path::{Path, PathBuf};

use super::*;
use crate::gossip::wire::{BackendReport, REPORT_VERSION, Signals};
use crate::name::DnsName;

const FROM: &str = "127.0.0.1:40000";
const WALL: u64 = 1_790_000_000_000;
const EPOCH: u64 = 42;

fn report(agent: &str, seq: u64, token: &str, service: &str) -> Report {
    Report {
        version: REPORT_VERSION,
        agent_id: agent.into(),
        started_ms: WALL - 60_000,
        sent_ms: WALL,
        seq,
        interval_ms: 300,
        missed_threshold: 3,
        token: Secret::new(token),
        region: None,
        leaving: false,
        backends: vec![BackendReport {
            service: service.into(),
            address: "10.0.0.1".parse().unwrap(),
            port: 80,
            weight: 100,
            status: Status::Healthy,
            reason: String::new(),
        }],
        signals: Signals::default(),
    }
}

/// `report` arriving from the process with `epoch` at `now`.
fn arrive(book: &mut AgentBook, r: &Report, epoch: u64, now: Instant) -> Result<Accepted, Refusal> {
    let payload = r.encode();
    book.on_report(Arrival {
        payload: &payload,
        sender_epoch: epoch,
        from: FROM.parse().unwrap(),
        now,
        wall_ms: WALL,
    })
}

/// A directory removed when the test ends, passed or failed.
struct TempDir(PathBuf);

impl From<&TempDir> for Location {
    fn from(dir: &TempDir) -> Self {
        Self::Embedded(dir.0.clone())
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("opengslb-book-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    TempDir(d)
}

fn tokens(pairs: &[(&str, &[&str])]) -> BTreeMap<DnsName, Vec<Secret>> {
    pairs
        .iter()
        .map(|(s, t)| {
            (
                s.parse().unwrap(),
                t.iter().map(|t| Secret::new(*t)).collect(),
            )
        })
        .collect()
}

fn services() -> Vec<DnsName> {
    ["app.demo.local", "other.demo.local", "s.example"]
        .map(|s| s.parse().unwrap())
        .to_vec()
}

/// A trust-on-first-use book, and its data directory.
fn tofu(tag: &str) -> (AgentBook, TempDir) {
    let dir = temp_dir(tag);
    (AgentBook::new(&BTreeMap::new(), &dir, services()), dir)
}

/// The registry id of agent `a` with `token`.
fn id_of(book: &mut AgentBook, r: &Report) -> String {
    match arrive(book, r, EPOCH, Instant::now()) {
        Ok(Accepted::Reports(v)) => v[0].agent_id.clone(),
        other => panic!("{other:?}"),
    }
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
        services(),
    );
    let now = Instant::now();
    let ok = report("a", 1, "token-two-0123456", "App.Demo.Local.");
    assert!(matches!(
        arrive(&mut book, &ok, EPOCH, now),
        Ok(Accepted::Reports(r)) if r.len() == 1 && r[0].key == BackendKey::new("app.demo.local".parse().unwrap(), "10.0.0.1".parse().unwrap(), 80)
    ));
    let bad = report("b", 1, "token-three-012345", "app.demo.local");
    assert_eq!(
        arrive(&mut book, &bad, EPOCH, now),
        Err(Refusal::BadToken {
            service: "app.demo.local".into()
        })
    );
    // Configured as a domain, but no token for it.
    let unknown = report("c", 1, "token-one-0123456", "other.demo.local");
    assert_eq!(
        arrive(&mut book, &unknown, EPOCH, now),
        Err(Refusal::UnknownService {
            service: "other.demo.local".into()
        })
    );
    // A report with no backends yet still needs a token good for some service.
    let mut empty = report("d", 1, "token-three-012345", "app.demo.local");
    empty.backends.clear();
    assert!(matches!(
        arrive(&mut book, &empty, EPOCH, now),
        Err(Refusal::BadToken { .. })
    ));
    let mut empty = report("e", 1, "token-one-0123456", "app.demo.local");
    empty.backends.clear();
    assert!(arrive(&mut book, &empty, EPOCH, now).is_ok());
    // A refused agent is not in the book at all.
    assert_eq!(book.agents().count(), 2);
    assert_eq!(book.counts.get("bad_token"), Some(&2));
    assert_eq!(book.counts.get("unknown_service"), Some(&1));
    // Nothing is pinned when tokens are configured.
    assert!(!dir.join(PIN_FILE).exists());
}

#[test]
fn only_configured_services_and_a_bounded_book() {
    let (mut book, _dir) = tofu("svc");
    let now = Instant::now();
    // Not a configured domain (and not pinnable: a newline would forge a pin line).
    for service in ["nope.example", "zzz 00\napp.demo.local"] {
        assert!(matches!(
            arrive(
                &mut book,
                &report("a", 1, "token-0123456789ab", service),
                EPOCH,
                now
            ),
            Err(Refusal::UnknownService { .. }) | Err(Refusal::Malformed(_))
        ));
    }
    assert_eq!(book.agents().count(), 0);
    for i in 0..MAX_AGENTS {
        let r = report(&format!("a{i}"), 1, "token-0123456789ab", "s.example");
        assert!(arrive(&mut book, &r, EPOCH, now).is_ok());
    }
    let one_more = report("late", 1, "token-0123456789ab", "s.example");
    assert_eq!(
        arrive(&mut book, &one_more, EPOCH, now),
        Err(Refusal::Capacity),
        "every known agent is alive: the newcomer waits"
    );
    // Once some have died, the longest silent of them make room.
    let later = now + Duration::from_secs(1);
    let mut keep = report("a0", 2, "token-0123456789ab", "s.example");
    keep.sent_ms += 1;
    assert!(arrive(&mut book, &keep, EPOCH, later).is_ok());
    assert_eq!(book.expire(later).len(), MAX_AGENTS - 1);
    assert!(arrive(&mut book, &one_more, EPOCH, later).is_ok());
    assert_eq!(book.agents().count(), MAX_AGENTS);
    assert!(
        book.agents()
            .any(|(id, a)| id.starts_with("a0@") && a.life == Life::Alive)
    );
}

#[test]
fn trust_on_first_use_pins_to_an_owner_only_store_without_the_token() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir("tofu");
    let now = Instant::now();
    {
        let mut book = AgentBook::new(&BTreeMap::new(), &dir, services());
        let first = report("a", 1, "first-token-0123456", "app.demo.local");
        assert!(arrive(&mut book, &first, EPOCH, now).is_ok());
        let other = report("b", 1, "other-token-0123456", "app.demo.local");
        assert!(matches!(
            arrive(&mut book, &other, EPOCH, now),
            Err(Refusal::BadToken { .. })
        ));
        // A report refused for one service pins none of its others.
        let mut two = report("c", 1, "other-token-0123456", "app.demo.local");
        two.backends.push(BackendReport {
            service: "s.example".into(),
            ..two.backends[0].clone()
        });
        assert!(arrive(&mut book, &two, EPOCH, now).is_err());
        let s = report("d", 1, "third-token-0123456", "s.example");
        assert!(
            arrive(&mut book, &s, EPOCH, now).is_ok(),
            "s.example was not pinned by c"
        );
    }
    {
        let store = Store::shared(&dir).unwrap();
        let pins = store.list::<crate::store::Pins>().unwrap();
        let services: Vec<String> = pins.iter().map(|p| p.service.to_string()).collect();
        assert_eq!(services, ["app.demo.local", "s.example"]);
        assert_eq!(pins[0].digest, digest("first-token-0123456"));
    }
    let file = dir.join(crate::store::FILE_NAME);
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        !bytes.windows(11).any(|w| w == b"first-token"),
        "the token itself is never stored"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A restarted overwatch keeps the pin.
    let mut book = AgentBook::new(&BTreeMap::new(), &dir, services());
    let other = report("b", 1, "other-token-0123456", "app.demo.local");
    assert!(arrive(&mut book, &other, EPOCH, now).is_err());
    let first = report("a", 1, "first-token-0123456", "app.demo.local");
    assert!(arrive(&mut book, &first, EPOCH, now).is_ok());
    drop(book);
    // An unreadable store fails closed: nothing is pinned anew.
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let mut book = AgentBook::new(&BTreeMap::new(), &dir, services());
    assert!(arrive(&mut book, &first, EPOCH, now).is_err());
    // And a corrupt one too.
    std::fs::remove_dir(&file).unwrap();
    std::fs::write(&file, vec![0x5a; 8192]).unwrap();
    let mut book = AgentBook::new(&BTreeMap::new(), &dir, services());
    let fresh = report("e", 1, "fresh-token-0123456", "other.demo.local");
    assert!(arrive(&mut book, &fresh, EPOCH, now).is_err());
    assert_eq!(
        std::fs::read(&file).unwrap(),
        vec![0x5a; 8192],
        "left untouched"
    );
}

#[test]
fn pins_of_the_earlier_pin_file_are_imported_once() {
    let dir = temp_dir("legacy");
    std::fs::create_dir_all(&*dir).unwrap();
    let line = |service: &str, token: &str| format!("{service} {}\n", to_hex(&digest(token)));
    std::fs::write(
        dir.join(PIN_FILE),
        line("app.demo.local", "first-token-0123456") + "malformed\n",
    )
    .unwrap();
    let now = Instant::now();
    {
        let mut book = AgentBook::new(&BTreeMap::new(), &dir, services());
        let other = report("b", 1, "other-token-0123456", "app.demo.local");
        assert!(arrive(&mut book, &other, EPOCH, now).is_err());
        let first = report("a", 1, "first-token-0123456", "app.demo.local");
        assert!(arrive(&mut book, &first, EPOCH, now).is_ok());
    }
    assert!(!dir.join(PIN_FILE).exists());
    assert!(dir.join(legacy::IMPORTED_PIN_FILE).exists());
    // A pin file that appears again does not override the store's pins.
    std::fs::write(
        dir.join(PIN_FILE),
        line("app.demo.local", "other-token-0123456"),
    )
    .unwrap();
    {
        let mut book = AgentBook::new(&BTreeMap::new(), &dir, services());
        let first = report("a", 2, "first-token-0123456", "app.demo.local");
        assert!(arrive(&mut book, &first, EPOCH + 1, now).is_ok());
    }
    assert!(!dir.join(PIN_FILE).exists());
    // A pin file that cannot be read fails closed.
    std::fs::create_dir(dir.join(PIN_FILE)).unwrap();
    let mut book = AgentBook::new(&BTreeMap::new(), &dir, services());
    let fresh = report("e", 1, "fresh-token-0123456", "other.demo.local");
    assert!(arrive(&mut book, &fresh, EPOCH, now).is_err());
}

#[test]
fn an_agent_is_its_id_and_its_token() {
    let mut book = AgentBook::new(
        &tokens(&[
            ("app.demo.local", &["victim-token-01234"]),
            ("s.example", &["other-token-012345"]),
        ]),
        &temp_dir("ident"),
        services(),
    );
    let now = Instant::now();
    let victim = report("web-1", 1, "victim-token-01234", "app.demo.local");
    let victim_id = id_of(&mut book, &victim);
    // A key holder with another service's token, under the victim's id, far in the future, leaving:
    // it is a different agent, and the victim is untouched.
    let mut forged = report("web-1", 99, "other-token-012345", "s.example");
    forged.backends.clear();
    forged.leaving = true;
    forged.started_ms = WALL;
    match arrive(&mut book, &forged, 7, now) {
        Ok(Accepted::Left(id)) => assert_ne!(id, victim_id),
        other => panic!("{other:?}"),
    }
    let next = report("web-1", 2, "victim-token-01234", "app.demo.local");
    assert!(matches!(
        arrive(&mut book, &next, EPOCH, now),
        Ok(Accepted::Reports(r)) if r[0].agent_id == victim_id
    ));
}

#[test]
fn reports_must_be_fresh_and_rise_within_a_process() {
    let (mut book, _dir) = tofu("order");
    let now = Instant::now();
    let t = "token-0123456789ab";
    assert!(arrive(&mut book, &report("a", 5, t, "s.example"), EPOCH, now).is_ok());
    for seq in [5, 4] {
        assert_eq!(
            arrive(&mut book, &report("a", seq, t, "s.example"), EPOCH, now),
            Err(Refusal::Stale)
        );
    }
    // A process not seen before, out of the clock window either way (a replay after a restart).
    for sent in [WALL - 31_000, WALL + 31_000] {
        let mut r = report("a", 6, t, "s.example");
        r.sent_ms = sent;
        r.started_ms = WALL - 40_000;
        assert_eq!(arrive(&mut book, &r, EPOCH + 9, now), Err(Refusal::Clock));
    }
    // A restart (another process, a later start) begins again at 1.
    let mut restarted = report("a", 1, t, "s.example");
    restarted.started_ms += 1;
    assert!(arrive(&mut book, &restarted, EPOCH + 1, now).is_ok());
    // The earlier process, still sending, is refused while the new one lives.
    assert_eq!(
        arrive(&mut book, &report("a", 9, t, "s.example"), EPOCH, now),
        Err(Refusal::Stale)
    );
}

#[test]
fn a_restart_with_the_clock_stepped_back_is_accepted_once_the_old_life_is_over() {
    let (mut book, _dir) = tofu("clock");
    let t0 = Instant::now();
    let t = "token-0123456789ab";
    assert!(arrive(&mut book, &report("a", 5, t, "s.example"), EPOCH, t0).is_ok());
    let mut earlier = report("a", 1, t, "s.example");
    earlier.started_ms -= 3_600_000;
    // While the first life is alive, the earlier start is refused...
    assert_eq!(
        arrive(&mut book, &earlier, EPOCH + 1, t0),
        Err(Refusal::Stale)
    );
    // ...and once it is dead, accepted.
    assert_eq!(book.expire(t0 + Duration::from_secs(1)).len(), 1);
    assert!(arrive(&mut book, &earlier, EPOCH + 1, t0 + Duration::from_secs(1)).is_ok());
}

#[test]
fn silence_kills_leave_is_at_once_and_a_report_revives() {
    let (mut book, _dir) = tofu("life");
    let t0 = Instant::now();
    let t = "token-0123456789ab";
    arrive(&mut book, &report("a", 1, t, "s.example"), EPOCH, t0).unwrap();
    arrive(&mut book, &report("b", 1, t, "s.example"), EPOCH, t0).unwrap();
    assert_eq!(book.next_deadline(), Some(t0 + Duration::from_millis(900)));
    assert!(book.expire(t0 + Duration::from_millis(899)).is_empty());
    arrive(
        &mut book,
        &report("b", 2, t, "s.example"),
        EPOCH,
        t0 + Duration::from_millis(500),
    )
    .unwrap();
    let dead = book.expire(t0 + Duration::from_millis(900));
    assert_eq!(dead.len(), 1);
    assert!(dead[0].starts_with("a@"), "{dead:?}");
    // Dead once only.
    assert!(book.expire(t0 + Duration::from_millis(1000)).is_empty());
    let mut leaving = report("b", 3, t, "s.example");
    leaving.leaving = true;
    assert!(matches!(
        arrive(&mut book, &leaving, EPOCH, t0 + Duration::from_millis(600)),
        Ok(Accepted::Left(id)) if id.starts_with("b@")
    ));
    assert_eq!(book.next_deadline(), None);
    let lives: Vec<Life> = ["a@", "b@"]
        .iter()
        .map(|p| {
            book.agents()
                .find(|(id, _)| id.starts_with(p))
                .unwrap()
                .1
                .life
        })
        .collect();
    assert_eq!(lives, [Life::Dead, Life::Left]);
    assert!(matches!(
        arrive(
            &mut book,
            &report("a", 2, t, "s.example"),
            EPOCH,
            t0 + Duration::from_secs(2)
        ),
        Ok(Accepted::Reports(_))
    ));
    // SWIM's word counts only for the address the agent reports from.
    let from: SocketAddr = FROM.parse().unwrap();
    assert!(
        book.member_down("b", from).is_empty(),
        "left, not killed again"
    );
    assert!(
        book.member_down("a", "127.0.0.1:1".parse().unwrap())
            .is_empty(),
        "another address (an impostor, or an earlier life) kills nothing"
    );
    assert_eq!(book.member_down("a", from).len(), 1);
    // Forgotten after long silence.
    book.expire(t0 + Duration::from_secs(3600));
    assert_eq!(book.agents().count(), 0);
}

#[test]
fn a_known_process_survives_a_clock_step_and_a_start_after_the_send_is_refused() {
    let (mut book, _dir) = tofu("step");
    let now = Instant::now();
    let t = "token-0123456789ab";
    assert!(arrive(&mut book, &report("a", 1, t, "s.example"), EPOCH, now).is_ok());
    // The overwatch's clock (or the agent's) stepped by a minute: the known process carries on.
    let mut stepped = report("a", 2, t, "s.example");
    stepped.sent_ms += 60_000;
    assert!(arrive(&mut book, &stepped, EPOCH, now).is_ok());
    // A new process of it is held to the window.
    let mut new_life = report("a", 1, t, "s.example");
    new_life.sent_ms += 60_000;
    new_life.started_ms += 1;
    assert_eq!(
        arrive(&mut book, &new_life, EPOCH + 1, now),
        Err(Refusal::Clock)
    );
    let mut future_start = report("b", 1, t, "s.example");
    future_start.started_ms = future_start.sent_ms + 1;
    assert_eq!(
        arrive(&mut book, &future_start, EPOCH, now),
        Err(Refusal::Clock)
    );
}

#[test]
fn backends_of_services_no_longer_configured_are_dropped_not_the_report() {
    let (mut book, _dir) = tofu("partial");
    let mut r = report("a", 1, "token-0123456789ab", "s.example");
    r.backends.push(BackendReport {
        service: "gone.example".into(),
        ..r.backends[0].clone()
    });
    match arrive(&mut book, &r, EPOCH, Instant::now()) {
        Ok(Accepted::Reports(v)) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].key.service, "s.example");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn swim_addresses_match_their_ipv6_mapped_form() {
    let (mut book, _dir) = tofu("mapped");
    let t0 = Instant::now();
    arrive(
        &mut book,
        &report("a", 1, "token-0123456789ab", "s.example"),
        EPOCH,
        t0,
    )
    .unwrap();
    assert_eq!(
        book.member_down("a", "[::ffff:127.0.0.1]:40000".parse().unwrap())
            .len(),
        1
    );
}

#[test]
fn malformed_payloads_are_refused_and_counted() {
    let (mut book, _dir) = tofu("junk");
    assert!(matches!(
        book.on_report(Arrival {
            payload: b"\x01\x00junk",
            sender_epoch: EPOCH,
            from: FROM.parse().unwrap(),
            now: Instant::now(),
            wall_ms: WALL,
        }),
        Err(Refusal::Malformed(_))
    ));
    assert_eq!(book.counts.get("malformed"), Some(&1));
    assert_eq!(book.agents().count(), 0);
}

#[test]
fn a_store_that_cannot_be_created_keeps_pins_in_memory() {
    // Nothing can be created under /proc, even by root (an unwritable /var/lib for anyone else).
    let data_dir = Path::new("/proc/opengslb-test-absent/data");
    let mut book = AgentBook::new(&BTreeMap::new(), data_dir, services());
    let now = Instant::now();
    let first = report("a", 1, "first-token-0123456", "app.demo.local");
    assert!(arrive(&mut book, &first, EPOCH, now).is_ok());
    let other = report("b", 1, "other-token-0123456", "app.demo.local");
    assert!(matches!(
        arrive(&mut book, &other, EPOCH, now),
        Err(Refusal::BadToken { .. })
    ));
}

fn latency(agent: &str, token: &str, service: &str, sent_ms: u64) -> Vec<u8> {
    use crate::gossip::wire::{LATENCY_VERSION, LatencyReport, SubnetLatency};
    LatencyReport {
        version: LATENCY_VERSION,
        agent_id: agent.into(),
        sent_ms,
        token: Secret::new(token),
        service: service.into(),
        address: "10.0.0.1".parse().unwrap(),
        port: 80,
        subnets: vec![SubnetLatency {
            network: "198.51.100.0".parse().unwrap(),
            prefix_len: 24,
            rtt_us: 12_000,
            samples: 7,
        }],
    }
    .encode()
}

#[test]
fn learned_latency_comes_only_from_an_alive_agent_with_the_services_token() {
    let dir = temp_dir("latency");
    let mut book = AgentBook::new(
        &tokens(&[
            ("app.demo.local", &["token-one-0123456"]),
            ("other.demo.local", &["token-two-0123456"]),
        ]),
        &dir,
        services(),
    );
    let good = latency("a", "token-one-0123456", "app.demo.local", WALL);
    // Before its first health report, the agent is not in the book.
    assert_eq!(book.on_latency(&good, WALL), Err(Refusal::NotAlive));
    arrive(
        &mut book,
        &report("a", 1, "token-one-0123456", "app.demo.local"),
        EPOCH,
        Instant::now(),
    )
    .unwrap();
    let accepted = book.on_latency(&good, WALL).unwrap();
    assert_eq!((accepted.subnets.len(), accepted.port), (1, 80));
    // The same agent id with another token is another agent: not alive.
    let other_token = latency("a", "token-two-0123456", "app.demo.local", WALL);
    assert_eq!(book.on_latency(&other_token, WALL), Err(Refusal::NotAlive));
    // An alive agent's token is not good for another service.
    let other_service = latency("a", "token-one-0123456", "other.demo.local", WALL);
    assert!(matches!(
        book.on_latency(&other_service, WALL),
        Err(Refusal::BadToken { .. })
    ));
    let unknown = latency("a", "token-one-0123456", "nope.demo.local", WALL);
    assert!(matches!(
        book.on_latency(&unknown, WALL),
        Err(Refusal::UnknownService { .. })
    ));
    let stale = latency("a", "token-one-0123456", "app.demo.local", WALL - 31_000);
    assert_eq!(book.on_latency(&stale, WALL), Err(Refusal::Clock));
    assert!(matches!(
        book.on_latency(&good[..good.len() - 2], WALL),
        Err(Refusal::Malformed(_))
    ));
    // Once it left, its latency is refused again.
    let mut leaving = report("a", 2, "token-one-0123456", "app.demo.local");
    leaving.leaving = true;
    arrive(&mut book, &leaving, EPOCH, Instant::now()).unwrap();
    assert_eq!(book.on_latency(&good, WALL), Err(Refusal::NotAlive));
    assert_eq!(book.latency_counts.get("applied"), Some(&1));
    assert_eq!(book.latency_counts.get("not_alive"), Some(&3));
    // Health report counts are their own.
    assert_eq!(book.counts.get("applied"), Some(&1));
}
