//! The status page at `/`, in a real browser: headless Chromium driven over WebDriver (chromedriver).
//! An overwatch with an agent on loopback (no root); the page shows the agent's backend healthy, then,
//! once the agent drains, draining (`agent_draining`) and out of DNS; and a banner once the overwatch
//! is gone. With `OPENGSLB_SCREENSHOT=<path>` it saves a screenshot of the drained page there (that is
//! how docs/status-page.png is made); without, it writes nothing outside its temp dirs.
//!
//! WebDriver is spoken directly (a few JSON requests over HTTP/1.1) rather than through a client crate:
//! the test needs five commands, and this keeps the dependency tree as it is.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use common::{
    http::call,
    labs,
    netns::{Proc, TempDir, wait_every, wait_for},
};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_opengslb"))
}

/// `name` on PATH, or a failure that says how to get it: a browser test that skips quietly would
/// pass on every machine that cannot run it.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not on PATH: `cargo xtask setup` installs it \
                 (Debian packages chromium and chromium-driver)"
            )
        })
}

/// One HTTP/1.1 request to chromedriver; the status and the JSON body. Starting a session launches
/// Chromium, which takes seconds on a loaded machine, hence the long timeout.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("chromedriver at {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    // Read by Content-Length rather than to EOF: the answer is complete without waiting for a close.
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let (head_len, want) = loop {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "{method} {path}: chromedriver closed early");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            break (i + 4, len);
        }
    };
    while want.is_none_or(|w| raw.len() < head_len + w) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let value = serde_json::from_slice(&raw[head_len..]).unwrap_or(Value::Null);
    (status, value)
}

/// Chromium under chromedriver, both gone on drop (also when the test fails).
struct Browser {
    driver: Child,
    port: u16,
    session: Option<String>,
    profile: TempDir,
}

impl Browser {
    fn start(log: &Path) -> Self {
        let (chromium, chromedriver) = (tool("chromium"), tool("chromedriver"));
        let port = common::free_port();
        let profile = TempDir::new("status-page-profile");
        let mut cmd = Command::new(chromedriver);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            // Its own process group, so that drop can end chromedriver and whatever it started.
            .process_group(0);
        let driver = cmd.spawn().expect("start chromedriver");
        let mut browser = Self {
            driver,
            port,
            session: None,
            profile,
        };
        assert!(
            wait_for(Duration::from_secs(20), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && http(port, "GET", "/status", None).1["value"]["ready"] == true
            }),
            "chromedriver ready on port {port} within 20 s"
        );
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                // Without these Chromium tries to reach Google, and fails, at every start.
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-proxy-server", "--window-size=1100,520",
                format!("--user-data-dir={}", browser.profile.0.display()),
            ],
        }}}});
        let (status, v) = http(port, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "new session: {v}");
        browser.session = Some(v["value"]["sessionId"].as_str().unwrap().to_owned());
        browser
    }

    /// A command of the session; its `value`.
    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}/{what}", self.session.as_ref().unwrap());
        let (status, v) = http(self.port, method, &path, body.as_ref());
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "url", Some(json!({ "url": url })));
    }

    fn eval(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    fn screenshot_png(&self) -> Vec<u8> {
        let b64 = self.cmd("GET", "screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 PNG"))
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            // Chromium quits with its session; chromedriver may already be gone, so the answer is moot.
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    http(self.port, "DELETE", &format!("/session/{id}"), None)
                }));
            }
        }
        let pgid = i32::try_from(self.driver.id()).unwrap();
        // SAFETY: killpg on the process group of our own child, made by process_group(0).
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
        let _ = self.driver.wait();
        // A Chromium left behind (if its session never ended) is found by its profile dir, ours alone.
        let mark = self.profile.0.display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&mark) {
                // SAFETY: kill on a pid whose command line names our own profile dir.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// An overwatch (API with a token, which reading the page must not need) and an agent whose one
/// backend is the API's own port (a TCP check that always passes).
struct Lab {
    dir: TempDir,
    api: SocketAddr,
    overwatch: Option<Proc>,
    _agent: Proc,
}

impl Lab {
    fn start() -> Self {
        let dir = TempDir::new("status-page");
        let api = SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port()));
        let (dns, gossip) = (common::free_port(), common::free_port());
        let overwatch = labs::overwatch(&dir.0, dns, api, gossip, "");
        common::write_private(&dir.0.join("overwatch.yaml"), &overwatch);
        let overwatch = labs::spawn(bin(), &dir.0, "overwatch");
        common::write_private(
            &dir.0.join("agent.yaml"),
            &labs::agent(&dir.0, gossip, api.port()),
        );
        let agent = labs::spawn(bin(), &dir.0, "agent");
        let lab = Self {
            dir,
            api,
            overwatch: Some(overwatch),
            _agent: agent,
        };
        labs::wait_ready(api, || lab.log());
        lab
    }

    fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.0.join(f)).unwrap_or_default();
        format!(
            "--- overwatch.log\n{}\n--- agent.log\n{}",
            read("overwatch.log"),
            read("agent.log")
        )
    }
}

/// The row of `backend` (`service/address/port`) as the page shows it: status, reason, class, in DNS;
/// null while there is none.
const ROW: &str = r#"
const r = document.querySelector(`tr[data-backend="${arguments[0]}"]`);
return r ? {status: r.dataset.status, reason: r.dataset.reason, class: r.className,
            in_dns: r.querySelector(".in-dns").textContent} : null;"#;

#[test]
fn the_status_page_shows_a_drain_within_seconds_and_a_banner_when_the_overwatch_is_gone() {
    let mut lab = Lab::start();
    let page = format!("http://{}/", lab.api);

    // The page follows the API's access rules: no token to read, but only from allowed networks.
    let (status, body) = call(lab.api, "GET", "/", &[], None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/status.js"), "{body}");
    let outside = [("X-Forwarded-For", "203.0.113.9")];
    for path in ["/", "/status.js", "/status.css"] {
        assert_eq!(call(lab.api, "GET", path, &outside, None).0, 403, "{path}");
    }

    let browser = Browser::start(&lab.dir.0.join("chromedriver.log"));
    browser.goto(&page);
    let backend = format!("app.demo.local/127.0.0.1/{}", lab.api.port());
    let row = || browser.eval(ROW, json!([backend]));
    assert!(
        wait_every(Duration::from_millis(100), Duration::from_secs(10), || {
            row()["status"] == "healthy"
        }),
        "the agent's backend shows healthy within 10 s: {}\n{}",
        row(),
        lab.log()
    );
    let healthy = row();
    assert_eq!(
        (healthy["class"].as_str(), healthy["in_dns"].as_str()),
        (Some("status-healthy"), Some("yes")),
        "{healthy}"
    );
    let header = browser.eval(
        "return [document.getElementById('ready').textContent, \
                 document.getElementById('xdp').textContent, \
                 document.getElementById('store').textContent, \
                 document.getElementById('banner').hidden];",
        json!([]),
    );
    assert_eq!(header, json!(["ready", "XDP off", "store embedded", true]));

    // Drain: the agent reports at once, and the page polls every second.
    std::fs::write(lab.dir.0.join("drain"), "").unwrap();
    let drained_at = Instant::now();
    let mut api_saw = None;
    let shown = wait_every(Duration::from_millis(50), Duration::from_secs(10), || {
        if api_saw.is_none() {
            let (_, body) = call(
                lab.api,
                "GET",
                "/api/v1/overwatch/backends?status=draining",
                &[],
                None,
            );
            if body.contains("\"count\":1") {
                api_saw = Some(drained_at.elapsed());
            }
        }
        row()["status"] == "draining"
    });
    let page_saw = drained_at.elapsed();
    assert!(
        shown,
        "the row shows draining within 10 s: {}\n{}",
        row(),
        lab.log()
    );
    let drained = row();
    assert_eq!(
        (
            drained["reason"].as_str(),
            drained["class"].as_str(),
            drained["in_dns"].as_str()
        ),
        (Some("agent_draining"), Some("status-draining"), Some("no")),
        "{drained}"
    );
    println!(
        "drain file written → API shows draining after {:?}, the page after {page_saw:?}",
        api_saw.unwrap_or(page_saw)
    );
    if let Some(path) = std::env::var_os("OPENGSLB_SCREENSHOT") {
        std::fs::write(&path, browser.screenshot_png()).unwrap();
        println!("screenshot saved to {}", Path::new(&path).display());
    }

    // The overwatch gone: the page keeps its last rows and says they are stale.
    drop(lab.overwatch.take());
    let gone_at = Instant::now();
    let banner = || {
        browser.eval(
            "const b = document.getElementById('banner'); return b.hidden ? null : b.textContent;",
            json!([]),
        )
    };
    assert!(
        wait_every(Duration::from_millis(100), Duration::from_secs(10), || {
            banner().is_string()
        }),
        "a banner within 10 s of the overwatch stopping"
    );
    let text = banner();
    assert!(
        text.as_str().unwrap().contains("Stale / disconnected"),
        "{text}"
    );
    assert_eq!(row()["status"], "draining", "the last rows stay");
    println!("overwatch stopped → banner after {:?}", gone_at.elapsed());
}
