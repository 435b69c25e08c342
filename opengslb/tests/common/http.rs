//! Plain HTTP/1.0 from inside a test's network namespace: enough for `/health` and `/metrics`.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use super::netns::Netns;

/// A GET of `path` from `addr`, from inside `ns`; the whole response (status line, headers, body), or
/// an empty string when nothing answered within 3 s.
pub fn get(ns: &Netns, addr: SocketAddr, path: &str) -> String {
    get_within(Some(ns), addr, path, Duration::from_secs(3))
}

/// [`get`] from inside `ns` or, with `None`, from here, waiting at most `timeout` to connect and as
/// long for each read.
pub fn get_within(ns: Option<&Netns>, addr: SocketAddr, path: &str, timeout: Duration) -> String {
    let get = || {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(timeout));
        let _ = write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    };
    match ns {
        Some(ns) => ns.enter(get),
        None => get(),
    }
}

/// The value of one metric sample (`name{labels}`) served at `addr`, 0 when absent.
pub fn metric(ns: &Netns, addr: SocketAddr, sample: &str) -> u64 {
    get(ns, addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

/// One HTTP/1.1 request to `addr` from this namespace, with `headers` and an optional JSON `body`;
/// the status and the body, or status 0 when nothing answered within 3 s.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    call_from(None, addr, method, path, headers, body)
}

/// [`call`] from the local address `from` (e.g. 127.0.0.2, to be another client on loopback).
pub fn call_from(
    from: Option<SocketAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let connected = match from {
        None => TcpStream::connect_timeout(&addr, Duration::from_secs(3)),
        Some(from) => (|| {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )?;
            s.bind(&from.into())?;
            s.connect_timeout(&addr.into(), Duration::from_secs(3))?;
            Ok(s.into())
        })(),
    };
    let Ok(mut s) = connected else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    let _ = s.write_all(req.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `promtool check metrics` (Debian's prometheus package) on a scrape (an HTTP response or its body): the
/// exposition parses, and every metric has help text and a name its type allows.
pub fn promtool_check(scrape: &str) {
    use std::io::Write as _;
    let body = scrape.split_once("\r\n\r\n").map_or(scrape, |(_, b)| b);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; `cargo xtask setup` installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("promtool reads the scrape");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
