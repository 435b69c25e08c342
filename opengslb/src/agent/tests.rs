use std::time::Duration;

use super::*;
use crate::config::HealthCheck;
use crate::gossip::wire::{ACK_VERSION, AckBackend, Served};

fn backend(address: &str, advertise: Option<&str>) -> AgentBackend {
    AgentBackend {
        service: "app.demo.local".parse().unwrap(),
        address: address.parse().unwrap(),
        port: 80,
        weight: 100,
        advertise_address: advertise.map(|a| a.parse().unwrap()),
        health_check: HealthCheck::default(),
    }
}

#[test]
fn loopback_backends_are_reported_at_the_gossip_source_unless_that_is_loopback_too() {
    let lan: IpAddr = "10.20.0.22".parse().unwrap();
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(advertised_address(&backend("127.0.0.1", None), lan), lan);
    assert_eq!(advertised_address(&backend("127.0.0.1", None), lo), lo);
    assert_eq!(
        advertised_address(&backend("192.0.2.7", None), lan),
        "192.0.2.7".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        advertised_address(&backend("127.0.0.1", Some("198.51.100.9")), lan),
        "198.51.100.9".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn ids_are_stable_and_tell_webapps_apart() {
    let r = |a: &str| vec![("app.demo.local".to_owned(), a.parse().unwrap(), 80)];
    assert_eq!(agent_id(&r("10.20.0.21")), agent_id(&r("10.20.0.21")));
    assert_ne!(agent_id(&r("10.20.0.21")), agent_id(&r("10.20.0.22")));
    assert!(agent_id(&r("10.20.0.21")).starts_with(&crate::gossip::member::hostname()));
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("opengslb-agent-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Whether the value becomes `want` within 10 s (generous: waiting costs time only on failure).
async fn becomes(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| *v == want))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test]
async fn the_drain_file_is_seen_by_inotify_through_create_remove_and_rename() {
    let dir = scratch("watch");
    let file = dir.join("drain");
    let (mut rx, _watcher) = drain::watch_file(&file).unwrap();
    assert!(!*rx.borrow());
    std::fs::write(&file, b"").unwrap();
    assert!(becomes(&mut rx, true).await);
    std::fs::remove_file(&file).unwrap();
    assert!(becomes(&mut rx, false).await);
    // Another file coming and going is not the drain file.
    std::fs::write(dir.join("other"), b"").unwrap();
    // A rename into place, as `mv` or an editor does.
    std::fs::rename(dir.join("other"), &file).unwrap();
    assert!(becomes(&mut rx, true).await);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_control_socket_drains_undrains_and_refuses_junk() {
    let dir = scratch("ctl");
    let path = dir.join("agent.sock");
    let tracker = TaskTracker::new();
    let token = CancellationToken::new();
    let (tx, mut rx) = watch::channel(false);
    drain::serve(&path, tx, no_acks(), &tracker, token.clone()).unwrap();
    let mode = std::fs::metadata(&path).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    assert_eq!(
        drain::send(&path, drain::Command::Drain, None)
            .await
            .unwrap(),
        "ok draining=true"
    );
    assert!(becomes(&mut rx, true).await);
    assert_eq!(
        drain::send(&path, drain::Command::Status, None)
            .await
            .unwrap(),
        "ok draining=true"
    );
    assert_eq!(
        drain::send(&path, drain::Command::Undrain, None)
            .await
            .unwrap(),
        "ok draining=false"
    );
    assert!(becomes(&mut rx, false).await);
    // A path that is not a socket is never deleted.
    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let (tx3, _rx3) = watch::channel(false);
    let err = drain::serve(&file, tx3, no_acks(), &tracker, token.clone()).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    // A second agent on the same socket is refused.
    let (tx2, _rx2) = watch::channel(false);
    let err = drain::serve(&path, tx2, no_acks(), &tracker, token.clone()).unwrap_err();
    assert!(err.to_string().contains("another agent"), "{err}");
    // Junk gets an error line and the agent carries on.
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"rm -rf /\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut s, &mut reply)
        .await
        .unwrap();
    assert!(reply.starts_with("error: unknown command"), "{reply}");
    assert_eq!(
        drain::send(&path, drain::Command::Status, None)
            .await
            .unwrap(),
        "ok draining=false"
    );
    token.cancel();
    tracker.close();
    tracker.wait().await;
    assert!(!path.exists(), "the socket is removed on shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

fn no_acks() -> watch::Receiver<drain::Confirm> {
    watch::channel(drain::Confirm::default()).1
}

fn ack(node: &str, seq: u64, served: &[Served]) -> Ack {
    Ack {
        version: ACK_VERSION,
        node_id: node.into(),
        started_ms: 1,
        seq,
        backends: served
            .iter()
            .enumerate()
            .map(|(i, s)| AckBackend {
                service: format!("app{i}.example.com"),
                address: "10.0.0.1".parse().unwrap(),
                port: 80,
                served: *s,
            })
            .collect(),
    }
}

const OW1: &str = "127.0.0.11:7946";
const OW2: &str = "127.0.0.12:7946";

fn confirm(manual: bool, since_seq: u64, acks: &[(&str, Ack)]) -> drain::Confirm {
    drain::Confirm {
        manual,
        since_seq,
        overwatches: vec![OW1.parse().unwrap(), OW2.parse().unwrap()],
        acks: acks
            .iter()
            .map(|(a, ack)| (a.parse().unwrap(), ack.clone()))
            .collect(),
    }
}

#[test]
fn a_drain_is_confirmed_only_by_acks_of_its_report_or_later_from_every_overwatch() {
    use Served::{AllDown, No, Yes};
    use drain::Verdict;
    let named = |n: &str, a: &str| format!("{n} ({a})");
    let waiting = |missing: Vec<String>| Verdict::Waiting {
        missing,
        all_down: vec![],
    };
    // (drain on?, acks from ow1 and ow2 as (seq, served), the verdict); the drain is in report 5.
    type Case<'a> = (
        bool,
        Option<(u64, &'a [Served])>,
        (u64, &'a [Served]),
        Verdict,
    );
    let cases: Vec<Case> = vec![
        // One overwatch silent: it is named by address.
        (true, None, (5, &[No, No]), waiting(vec![OW1.to_owned()])),
        // An ack of an earlier report says nothing of the drain.
        (
            true,
            Some((5, &[No, No])),
            (4, &[No, No]),
            waiting(vec![OW2.to_owned()]),
        ),
        // Still answered with one backend: not yet.
        (
            true,
            Some((6, &[No, No])),
            (5, &[No, Yes]),
            waiting(vec![named("ow2", OW2)]),
        ),
        (
            true,
            Some((6, &[No, No])),
            (5, &[No, No]),
            Verdict::Confirmed(vec![named("ow1", OW1), named("ow2", OW2)]),
        ),
        // Undrain: every backend answered again, by all-down or not.
        (
            false,
            Some((5, &[Yes, AllDown])),
            (7, &[Yes, Yes]),
            Verdict::Confirmed(vec![named("ow1", OW1), named("ow2", OW2)]),
        ),
        (
            false,
            Some((5, &[Yes, Yes])),
            (7, &[Yes, No]),
            waiting(vec![named("ow2", OW2)]),
        ),
    ];
    for (on, first, (seq, served), expected) in cases {
        let mut acks = vec![(OW2, ack("ow2", seq, served))];
        if let Some((seq, served)) = first {
            acks.push((OW1, ack("ow1", seq, served)));
        }
        let c = confirm(on, 5, &acks);
        assert_eq!(c.verdict(on), expected, "{acks:?}");
    }
    // Served by an all-down policy: said, with the overwatch and the name.
    let c = confirm(
        true,
        5,
        &[
            (OW1, ack("ow1", 6, &[No, No])),
            (OW2, ack("ow2", 5, &[No, AllDown])),
        ],
    );
    match c.verdict(true) {
        Verdict::AllDown(m) => {
            assert_eq!(m.len(), 1);
            assert!(
                m[0].contains("ow2 (127.0.0.12:7946)") && m[0].contains("app1.example.com"),
                "{m:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_waiting_drain_answers_when_confirmed_on_all_down_and_at_the_timeout() {
    let dir = scratch("wait");
    let path = dir.join("agent.sock");
    let tracker = TaskTracker::new();
    let token = CancellationToken::new();
    let (tx, mut rx) = watch::channel(false);
    let (confirm_tx, confirm_rx) = watch::channel(confirm(false, 0, &[]));
    drain::serve(&path, tx, confirm_rx, &tracker, token.clone()).unwrap();
    let out = [Served::No];

    // Confirmed: the agent's loop applies the drain at report 3, then both overwatches ack it.
    let waiting = tokio::spawn({
        let path = path.clone();
        async move { drain::send(&path, drain::Command::Drain, Some(Duration::from_secs(10))).await }
    });
    assert!(becomes(&mut rx, true).await, "the drain applies at once");
    confirm_tx.send_replace(confirm(true, 3, &[(OW1, ack("ow1", 3, &out))]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "one overwatch has not confirmed");
    confirm_tx.send_replace(confirm(
        true,
        3,
        &[(OW1, ack("ow1", 3, &out)), (OW2, ack("ow2", 4, &out))],
    ));
    let reply = waiting.await.unwrap().unwrap();
    assert!(
        reply.starts_with("ok draining=true confirmed by ow1"),
        "{reply}"
    );

    // Timeout: exit status 1, naming the overwatch that did not confirm.
    confirm_tx.send_replace(confirm(true, 3, &[(OW1, ack("ow1", 3, &out))]));
    let err = drain::send(
        &path,
        drain::Command::Drain,
        Some(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    let failure = err
        .downcast_ref::<drain::WaitFailure>()
        .expect("a wait failure");
    assert_eq!(failure.code, drain::EXIT_TIMEOUT);
    assert!(
        failure.message.contains(OW2) && !failure.message.contains("ow1"),
        "{}",
        failure.message
    );
    assert_eq!(crate::cli::exit_code(&err), 1);

    // All-down: exit status 2, naming the overwatch and the name.
    confirm_tx.send_replace(confirm(
        true,
        3,
        &[
            (OW1, ack("ow1", 3, &out)),
            (OW2, ack("ow2", 3, &[Served::AllDown])),
        ],
    ));
    let err = drain::send(&path, drain::Command::Drain, Some(Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(crate::cli::exit_code(&err), 2);
    assert!(
        err.to_string().contains("ow2") && err.to_string().contains("app0.example.com"),
        "{err}"
    );

    // Without --wait, the answer is at once, as before.
    assert_eq!(
        drain::send(&path, drain::Command::Undrain, None)
            .await
            .unwrap(),
        "ok draining=false"
    );
    token.cancel();
    tracker.close();
    tracker.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}
