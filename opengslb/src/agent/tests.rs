use std::time::Duration;

use super::*;
use crate::config::HealthCheck;

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
    drain::serve(&path, tx, &tracker, token.clone()).unwrap();
    let mode = std::fs::metadata(&path).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    assert_eq!(
        drain::send(&path, drain::Command::Drain).await.unwrap(),
        "ok draining=true"
    );
    assert!(becomes(&mut rx, true).await);
    assert_eq!(
        drain::send(&path, drain::Command::Status).await.unwrap(),
        "ok draining=true"
    );
    assert_eq!(
        drain::send(&path, drain::Command::Undrain).await.unwrap(),
        "ok draining=false"
    );
    assert!(becomes(&mut rx, false).await);
    // A path that is not a socket is never deleted.
    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let (tx3, _rx3) = watch::channel(false);
    let err = drain::serve(&file, tx3, &tracker, token.clone()).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    // A second agent on the same socket is refused.
    let (tx2, _rx2) = watch::channel(false);
    let err = drain::serve(&path, tx2, &tracker, token.clone()).unwrap_err();
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
        drain::send(&path, drain::Command::Status).await.unwrap(),
        "ok draining=false"
    );
    token.cancel();
    tracker.close();
    tracker.wait().await;
    assert!(!path.exists(), "the socket is removed on shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
