//! Tests against real servers on 127.0.0.1 and ::1 only: tokio listeners for TCP behaviour and request
//! capture, and nginx (Debian `nginx-light`) for HTTP(S): paths, statuses, redirects, virtual hosts, TLS.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::config::{HealthCheck, HealthCheckType};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Upper bound for any single wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

fn spec(kind: HealthCheckType, path: &str) -> CheckSpec {
    CheckSpec {
        kind,
        path: path.to_owned(),
        host: None,
        expected_status: StatusMatch::default(),
        timeout: Duration::from_secs(2),
        tls_verify: true,
    }
}

fn target(address: IpAddr, port: u16, check: CheckSpec) -> Target {
    Target {
        address,
        port,
        check,
    }
}

fn tcp(address: IpAddr, port: u16) -> Target {
    target(address, port, spec(HealthCheckType::Tcp, "/"))
}

fn http(address: IpAddr, port: u16, path: &str) -> Target {
    target(address, port, spec(HealthCheckType::Http, path))
}

fn https(address: IpAddr, port: u16, path: &str) -> Target {
    target(address, port, spec(HealthCheckType::Https, path))
}

fn with_host(mut t: Target, host: &str) -> Target {
    t.check.host = Some(host.to_owned());
    t
}

fn expecting(mut t: Target, status: StatusMatch) -> Target {
    t.check.expected_status = status;
    t
}

async fn within<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: nothing within {limit:?}"),
    }
}

/// One probe, bounded.
async fn check(t: &Target) -> ProbeResult {
    within(WAIT, "probe", probe(t)).await
}

fn assert_pass(r: &ProbeResult, what: &str) {
    assert!(r.ok, "{what}: expected a pass, got {r:?}");
    assert_eq!(r.error, None, "{what}");
    assert!(!r.definitive, "{what}");
}

fn assert_fail(r: &ProbeResult, what: &str, error: &str, definitive: bool) {
    assert!(!r.ok, "{what}: expected a failure, got {r:?}");
    let reason = r.error.as_deref().unwrap_or_default();
    assert!(
        reason.contains(error),
        "{what}: reason {reason:?} should contain {error:?}"
    );
    assert_eq!(r.definitive, definitive, "{what}: {r:?}");
}

/// A port on `ip` where nothing listens (bound, then released).
fn closed_port(ip: IpAddr) -> u16 {
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind");
    listener.local_addr().expect("local addr").port()
}

/// A port free on both 127.0.0.1 and ::1 at the time of the call.
fn free_port() -> u16 {
    loop {
        let v4 = std::net::TcpListener::bind((V4, 0)).expect("bind 127.0.0.1");
        let port = v4.local_addr().expect("local addr").port();
        if std::net::TcpListener::bind((V6, port)).is_ok() {
            return port;
        }
    }
}

/// A spawned server task, aborted when the test lets go of it (also on a panic).
struct Server {
    port: u16,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections and closes them: TCP probes pass.
async fn accepting(ip: IpAddr) -> Server {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    Server { port, task }
}

/// Accepts connections and holds them without ever answering.
async fn silent(ip: IpAddr) -> Server {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    Server { port, task }
}

/// Reads a request head (through the blank line), bounded in time and size.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(WAIT, read).await;
    String::from_utf8_lossy(&head).into_owned()
}

const OK_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Answers one request with 200 and hands back its head.
async fn capture_one(ip: IpAddr) -> (Server, oneshot::Receiver<String>) {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        if let Ok((mut stream, _)) = listener.accept().await {
            let head = read_head(&mut stream).await;
            let _ = stream.write_all(OK_RESPONSE).await;
            let _ = stream.shutdown().await;
            let _ = tx.send(head);
        }
    });
    (Server { port, task }, rx)
}

/// The next result of a prober, bounded.
async fn next<K>(rx: &mut mpsc::Receiver<(K, ProbeResult)>) -> (K, ProbeResult) {
    next_within(WAIT, rx).await
}

/// The next result of a prober, bounded by `limit`.
async fn next_within<K>(
    limit: Duration,
    rx: &mut mpsc::Receiver<(K, ProbeResult)>,
) -> (K, ProbeResult) {
    within(limit, "next probe result", rx.recv())
        .await
        .expect("results channel closed")
}

/// Cancels a prober and checks that all its tasks end.
async fn shut_down(token: &CancellationToken, tracker: &TaskTracker) {
    token.cancel();
    tracker.close();
    within(WAIT, "prober shutdown", tracker.wait()).await;
}

// ---------------------------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------------------------

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "opengslb-health-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An nginx serving, on 127.0.0.1 and ::1:
/// - `port` (HTTP), default server: `/health` 200, `/bad` 503, `/redir` 302 to `/health`, `/created` 201,
///   anything else 404; virtual host `vhost.test`: `/vhost` 204, anything else 404;
/// - `tls_port` (HTTPS, self-signed certificate for `localhost`): `/health` 200, `/sni` 200 when the TLS
///   server name was `vhost.test`, else 421.
///
/// Killed on drop, so also when a test fails; single-process (`master_process off`) so the kill leaves no
/// worker behind.
struct Nginx {
    child: Child,
    port: u16,
    tls_port: u16,
    _dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.exists() {
        return sbin;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nginx"))
            .find(|p| p.exists())
    });
    on_path.unwrap_or_else(|| {
        panic!("nginx not found (these tests need it): apt-get install -y nginx-light")
    })
}

fn nginx_config(dir: &Path, port: u16, tls_port: u16) -> String {
    let d = dir.display();
    format!(
        r#"master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} default_server;
        listen [::1]:{port} default_server;
        server_name _;
        location = /health {{ return 200; }}
        location = /bad {{ return 503; }}
        location = /redir {{ return 302 /health; }}
        location = /created {{ return 201; }}
        location / {{ return 404; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        listen [::1]:{port};
        server_name vhost.test;
        location = /vhost {{ return 204; }}
        location / {{ return 404; }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl default_server;
        listen [::1]:{tls_port} ssl default_server;
        server_name _;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location = /health {{ return 200; }}
        location = /sni {{
            if ($ssl_server_name = "vhost.test") {{ return 200; }}
            return 421;
        }}
    }}
}}
"#
    )
}

impl Nginx {
    async fn start() -> Self {
        let binary = nginx_binary();
        let dir = TempDir::new("nginx");
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            // A server certificate (not a CA, as `req -x509` makes by default) valid for `localhost`, so it
            // fails verification for what matters here: its untrusted issuer. The subject is unique because
            // a system store may hold a `CN=localhost` anchor (Debian's snakeoil) that would be tried as issuer.
            .args(["-subj", "/CN=opengslb-health-test", "-days", "1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "subjectAltName=DNS:localhost"])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .stdin(Stdio::null())
            .output()
            .expect("run openssl (apt-get install -y openssl)");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // The ports are picked free but could be taken before nginx binds them: retry on that.
        for _ in 0..5 {
            let (port, tls_port) = (free_port(), free_port());
            if port == tls_port {
                continue;
            }
            let conf = dir.path().join("nginx.conf");
            std::fs::write(&conf, nginx_config(dir.path(), port, tls_port)).expect("write conf");
            let error_log = dir.path().join("error.log");
            let mut command = Command::new(&binary);
            command
                .arg("-e")
                .arg(&error_log)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: `prctl` is async-signal-safe and touches no memory of the parent. It makes nginx die
            // with the test process even if that is killed before `Drop` runs (e.g. a harness timeout).
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = command.spawn().expect("spawn nginx");
            let mut nginx = Self {
                child,
                port,
                tls_port,
                _dir: TempDir(PathBuf::new()),
            };
            let deadline = Instant::now() + WAIT;
            loop {
                if let Ok(Some(status)) = nginx.child.try_wait() {
                    let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                    if log.contains("Address already in use") {
                        break;
                    }
                    panic!("nginx exited ({status}): {log}");
                }
                let ready = [(V4, port), (V6, port), (V4, tls_port), (V6, tls_port)];
                let mut all = true;
                for addr in ready {
                    all &= TcpStream::connect(SocketAddr::from(addr)).await.is_ok();
                }
                if all {
                    nginx._dir = dir;
                    return nginx;
                }
                assert!(Instant::now() < deadline, "nginx not ready within {WAIT:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("nginx could not bind free ports in 5 attempts");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------------------

#[test]
fn status_match() {
    let any2xx = StatusMatch::default();
    assert!(any2xx.matches(200) && any2xx.matches(204) && any2xx.matches(299));
    assert!(!any2xx.matches(199) && !any2xx.matches(302) && !any2xx.matches(503));
    let exact = StatusMatch::code(302);
    assert!(exact.matches(302) && !exact.matches(200));
    let union = StatusMatch::ranges([(200, 204), (301, 302)]);
    assert!(union.matches(204) && union.matches(301) && !union.matches(205));
    assert!(!StatusMatch::ranges([]).matches(200));
}

#[test]
fn check_spec_from_config() {
    let defaults = CheckSpec::default();
    assert_eq!(defaults.kind, HealthCheckType::Http);
    assert_eq!(defaults.path, "/health");
    assert_eq!(defaults.host, None);
    assert_eq!(defaults.expected_status, StatusMatch::success());
    assert_eq!(defaults.timeout, Duration::from_secs(5));
    assert!(defaults.tls_verify);

    let block = HealthCheck {
        kind: HealthCheckType::Https,
        path: "/ready".to_owned(),
        host: Some("region.example".to_owned()),
        tls_verify: false,
        ..HealthCheck::default()
    };
    let from_block = CheckSpec::from_config(&block, None);
    assert_eq!(from_block.kind, HealthCheckType::Https);
    assert_eq!(from_block.path, "/ready");
    assert_eq!(from_block.host.as_deref(), Some("region.example"));
    assert!(!from_block.tls_verify);
    // A server's own host overrides the block's.
    let from_server = CheckSpec::from_config(&block, Some("server.example"));
    assert_eq!(from_server.host.as_deref(), Some("server.example"));
}

// ---------------------------------------------------------------------------------------------------------
// Single probes
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn tcp_passes_on_a_listener_and_fails_definitively_on_a_closed_port() {
    for ip in [V4, V6] {
        let server = accepting(ip).await;
        assert_pass(&check(&tcp(ip, server.port)).await, &format!("tcp {ip}"));
        let r = check(&tcp(ip, closed_port(ip))).await;
        assert_fail(&r, &format!("tcp {ip} closed"), "connection refused", true);
    }
}

#[tokio::test]
async fn http_sends_path_host_user_agent_and_connection_close() {
    let (server, head) = capture_one(V4).await;
    let t = http(V4, server.port, "/some/path?x=1");
    assert_pass(&check(&t).await, "capture");
    let head = within(WAIT, "request head", head).await.expect("head");
    let lower = head.to_ascii_lowercase();
    assert!(
        head.starts_with("GET /some/path?x=1 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        lower.contains(&format!("\r\nhost: 127.0.0.1:{}\r\n", server.port)),
        "{head}"
    );
    let ua = format!("\r\nuser-agent: {}\r\n", USER_AGENT.to_ascii_lowercase());
    assert!(lower.contains(&ua), "{head}");
    assert!(USER_AGENT.starts_with("OpenGSLB-HealthCheck/"));
    assert!(lower.contains("\r\nconnection: close\r\n"), "{head}");

    // A configured host is the Host header, verbatim; a path without its slash gets one.
    let (server, head) = capture_one(V6).await;
    let t = with_host(http(V6, server.port, "ready"), "App.Example:8080");
    assert_pass(&check(&t).await, "capture host");
    let head = within(WAIT, "request head", head).await.expect("head");
    assert!(head.starts_with("GET /ready HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: App.Example:8080\r\n"), "{head}");
    assert_eq!(head.to_ascii_lowercase().matches("\r\nhost:").count(), 1);

    // No host: the bracketed IPv6 literal.
    let (server, head) = capture_one(V6).await;
    assert_pass(&check(&http(V6, server.port, "/")).await, "capture v6");
    let head = within(WAIT, "request head", head).await.expect("head");
    let host = format!("\r\nhost: [::1]:{}\r\n", server.port);
    assert!(head.to_ascii_lowercase().contains(&host), "{head}");
}

#[tokio::test]
async fn http_uses_the_path_and_checks_the_status() {
    let nginx = Nginx::start().await;
    for ip in [V4, V6] {
        let at = |path: &str| http(ip, nginx.port, path);
        assert_pass(&check(&at("/health")).await, &format!("{ip} /health"));
        let bad = check(&at("/bad")).await;
        assert_fail(&bad, &format!("{ip} /bad"), "status 503", false);
        let missing = check(&at("/missing")).await;
        assert_fail(&missing, &format!("{ip} /missing"), "status 404", false);
        // Any 2xx passes by default.
        assert_pass(&check(&at("/created")).await, &format!("{ip} /created"));
    }
    // An explicit code: only that one passes.
    let t = expecting(http(V4, nginx.port, "/health"), StatusMatch::code(204));
    assert_fail(&check(&t).await, "200 vs 204", "status 200", false);
    let t = expecting(http(V4, nginx.port, "/bad"), StatusMatch::code(503));
    assert_pass(&check(&t).await, "503 expected");
}

#[tokio::test]
async fn http_does_not_follow_redirects() {
    let nginx = Nginx::start().await;
    // `/redir` points at `/health`, which would pass if followed.
    let t = http(V4, nginx.port, "/redir");
    assert_fail(&check(&t).await, "302", "status 302", false);
    let t = expecting(t, StatusMatch::code(302));
    assert_pass(&check(&t).await, "302 expected");
}

#[tokio::test]
async fn http_host_header_selects_the_virtual_host() {
    let nginx = Nginx::start().await;
    for ip in [V4, V6] {
        let plain = http(ip, nginx.port, "/vhost");
        let r = check(&plain).await;
        assert_fail(&r, &format!("{ip} default server"), "status 404", false);
        let vhost = with_host(plain, "vhost.test");
        assert_pass(&check(&vhost).await, &format!("{ip} vhost"));
        let exact = expecting(vhost, StatusMatch::code(204));
        assert_pass(&check(&exact).await, &format!("{ip} vhost 204"));
    }
}

#[tokio::test]
async fn http_refused_is_definitive() {
    for ip in [V4, V6] {
        let r = check(&http(ip, closed_port(ip), "/health")).await;
        assert_fail(&r, &format!("http {ip} closed"), "connection refused", true);
        let r = check(&https(ip, closed_port(ip), "/health")).await;
        assert_fail(
            &r,
            &format!("https {ip} closed"),
            "connection refused",
            true,
        );
    }
}

#[tokio::test]
async fn a_backend_that_never_answers_times_out() {
    let server = silent(V4).await;
    let limit = Duration::from_millis(300);
    for mut t in [
        http(V4, server.port, "/health"),
        https(V4, server.port, "/health"),
    ] {
        t.check.timeout = limit;
        let started = Instant::now();
        let r = check(&t).await;
        let took = started.elapsed();
        assert_fail(&r, &format!("{:?} silent", t.check.kind), "timeout", false);
        assert!(r.latency >= limit, "{r:?}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
}

#[tokio::test]
async fn https_verifies_certificates_unless_told_not_to() {
    let nginx = Nginx::start().await;
    for ip in [V4, V6] {
        // Self-signed: verification on (the default) must fail, by address or by name.
        for t in [
            https(ip, nginx.tls_port, "/health"),
            with_host(https(ip, nginx.tls_port, "/health"), "localhost"),
        ] {
            let r = check(&t).await;
            assert!(!r.ok && !r.definitive, "{ip} verified: {r:?}");
            // The exact reason depends on the system's roots (an unknown issuer, usually).
            let reason = r.error.as_deref().unwrap_or_default().to_ascii_lowercase();
            assert!(reason.contains("certificate"), "{ip} reason: {reason}");
        }
        // The explicit opt-out.
        let mut t = https(ip, nginx.tls_port, "/health");
        t.check.tls_verify = false;
        assert_pass(&check(&t).await, &format!("{ip} unverified"));
    }
}

#[tokio::test]
async fn https_sends_the_host_as_server_name() {
    let nginx = Nginx::start().await;
    for ip in [V4, V6] {
        let mut t = https(ip, nginx.tls_port, "/sni");
        t.check.tls_verify = false;
        // Without a host there is no SNI (an IP literal is never one).
        assert_fail(
            &check(&t).await,
            &format!("{ip} no sni"),
            "status 421",
            false,
        );
        let t = with_host(t, "vhost.test");
        assert_pass(&check(&t).await, &format!("{ip} sni"));
    }
}

#[tokio::test]
async fn a_prepared_probe_runs_repeatedly() {
    let nginx = Nginx::start().await;
    let prepared = Probe::new(http(V6, nginx.port, "/health"));
    for i in 0..3 {
        let r = within(WAIT, "probe", prepared.run()).await;
        assert_pass(&r, &format!("run {i}"));
    }
}

// ---------------------------------------------------------------------------------------------------------
// Prober
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn prober_reprobes_at_once_after_a_first_failure() {
    let server = accepting(V4).await;
    // Long enough that "at once" (under 2 s) and "on schedule" (at least 4 s after the failure was seen)
    // stay apart on a slow, loaded machine.
    let interval = Duration::from_secs(6);
    // A scheduled probe is an interval away: its wait is bounded at three intervals (generous: waiting
    // costs time only on failure).
    let scheduled_wait = interval * 3;
    let (tx, mut rx) = mpsc::channel(16);
    let (tracker, token) = (TaskTracker::new(), CancellationToken::new());
    let scheduled = Scheduled {
        key: "a",
        target: tcp(V4, server.port),
        interval,
    };
    let _prober = Prober::spawn(vec![scheduled], 4, tx, &tracker, token.clone());

    let (key, first) = next(&mut rx).await;
    assert_eq!(key, "a");
    assert_pass(&first, "first");
    // The backend dies: its port now refuses (the listener goes once the aborted task is dropped).
    let port = server.port;
    drop(server);
    within(WAIT, "the port refusing connections", async {
        loop {
            match TcpStream::connect((V4, port)).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;

    let (_, failure) = next_within(scheduled_wait, &mut rx).await;
    let failed_at = Instant::now();
    assert_fail(&failure, "scheduled", "connection refused", true);
    // The re-probe comes right away, not an interval later.
    let (_, reprobe) = next(&mut rx).await;
    assert_fail(&reprobe, "re-probe", "connection refused", true);
    let gap = failed_at.elapsed();
    assert!(gap < Duration::from_secs(2), "re-probe after {gap:?}");
    // A failure after a failure is not re-probed: the next one is on schedule.
    let (_, scheduled) = next_within(scheduled_wait, &mut rx).await;
    assert!(!scheduled.ok);
    let gap = failed_at.elapsed();
    assert!(gap >= Duration::from_secs(4), "next probe after {gap:?}");

    shut_down(&token, &tracker).await;
}

#[tokio::test]
async fn prober_bounds_probes_in_flight() {
    const CONCURRENCY: usize = 3;
    const TARGETS: usize = 20;
    let listener = TcpListener::bind((V4, 0)).await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let (current, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (cur, top) = (Arc::clone(&current), Arc::clone(&max));
    // Holds each request 300 ms. The count drops before the answer is written, so it never includes a probe
    // that already let go of its permit: it is a lower bound of the probes in flight.
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (cur, top) = (Arc::clone(&cur), Arc::clone(&top));
            tokio::spawn(async move {
                let now = cur.fetch_add(1, Ordering::SeqCst) + 1;
                top.fetch_max(now, Ordering::SeqCst);
                read_head(&mut stream).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                cur.fetch_sub(1, Ordering::SeqCst);
                let _ = stream.write_all(OK_RESPONSE).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let _server = Server { port, task };

    let targets = (0..TARGETS)
        .map(|key| Scheduled {
            key,
            target: http(V4, port, "/health"),
            interval: Duration::from_secs(30),
        })
        .collect();
    let (tx, mut rx) = mpsc::channel(TARGETS);
    let (tracker, token) = (TaskTracker::new(), CancellationToken::new());
    let _prober = Prober::spawn(targets, CONCURRENCY, tx, &tracker, token.clone());

    let mut seen = std::collections::HashSet::new();
    while seen.len() < TARGETS {
        let (key, r) = next(&mut rx).await;
        assert_pass(&r, &format!("target {key}"));
        seen.insert(key);
    }
    let top = max.load(Ordering::SeqCst);
    assert!(top <= CONCURRENCY, "{top} probes in flight");
    // 20 probes of 300 ms started within a second must have saturated the bound.
    assert_eq!(top, CONCURRENCY, "the bound was never reached");
    shut_down(&token, &tracker).await;
}

#[tokio::test]
async fn prober_update_replaces_the_target_set() {
    let (one, two) = (accepting(V4).await, accepting(V6).await);
    let interval = Duration::from_millis(200);
    let sched = |key, target| Scheduled {
        key,
        target,
        interval,
    };
    let (tx, mut rx) = mpsc::channel(64);
    let (tracker, token) = (TaskTracker::new(), CancellationToken::new());
    let prober = Prober::spawn(
        vec![sched("a", tcp(V4, one.port))],
        4,
        tx,
        &tracker,
        token.clone(),
    );
    let (key, r) = next(&mut rx).await;
    assert_eq!(key, "a");
    assert_pass(&r, "a");

    // "a" goes; "b" (passing) and "c" (refused) come.
    prober.update(vec![
        sched("b", tcp(V6, two.port)),
        sched("c", tcp(V4, closed_port(V4))),
    ]);
    let mut key = "a";
    while key == "a" {
        key = next(&mut rx).await.0;
    }
    // Until both new targets have been probed twice (generous bound: waiting costs time only on
    // failure); any result for "a" meanwhile fails the test.
    let (mut b, mut c) = (0, 0);
    let until = Instant::now() + WAIT;
    while b < 2 || c < 2 {
        let Ok(Some((key, r))) = tokio::time::timeout_at(until, rx.recv()).await else {
            break;
        };
        match key {
            "b" => {
                assert_pass(&r, "b");
                b += 1;
            }
            "c" => {
                assert!(!r.ok && r.definitive, "c: {r:?}");
                c += 1;
            }
            other => panic!("result for {other:?} after the update"),
        }
    }
    assert!(b >= 2 && c >= 2, "b: {b}, c: {c}");

    // Same key, new target: "b" now points at a closed port.
    prober.update(vec![sched("b", tcp(V6, closed_port(V6)))]);
    within(WAIT, "b failing", async {
        loop {
            let (key, r) = next(&mut rx).await;
            if key == "b" && !r.ok {
                break;
            }
        }
    })
    .await;
    shut_down(&token, &tracker).await;
}

#[tokio::test]
async fn prober_stops_when_results_are_no_longer_read() {
    let server = accepting(V4).await;
    let (tx, mut rx) = mpsc::channel(4);
    let tracker = TaskTracker::new();
    let scheduled = Scheduled {
        key: 1u8,
        target: tcp(V4, server.port),
        interval: Duration::from_millis(100),
    };
    let prober = Prober::spawn(vec![scheduled], 1, tx, &tracker, CancellationToken::new());
    assert_pass(&next(&mut rx).await.1, "first");
    drop(rx);
    drop(prober);
    tracker.close();
    within(WAIT, "prober tasks ending", tracker.wait()).await;
}

#[tokio::test]
async fn prober_probes_now_when_asked() {
    let server = accepting(V4).await;
    let (tx, mut rx) = mpsc::channel(16);
    let (tracker, token) = (TaskTracker::new(), CancellationToken::new());
    // An hour's interval: after the first probe, only a request to probe now makes another.
    let scheduled = Scheduled {
        key: "a",
        target: tcp(V4, server.port),
        interval: Duration::from_secs(3600),
    };
    let prober = Prober::spawn(vec![scheduled], 1, tx, &tracker, token.clone());
    assert_pass(&next(&mut rx).await.1, "first");
    assert!(prober.probe_now(vec!["unknown"]));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "a key not in the set is not probed"
    );
    for round in 0..2 {
        assert!(prober.probe_now(vec!["a"]));
        let (key, r) = next(&mut rx).await;
        assert_eq!(key, "a", "round {round}");
        assert_pass(&r, "probe now");
    }
    shut_down(&token, &tracker).await;
}
