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
    ns.enter(|| {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    })
}

/// The value of one metric sample (`name{labels}`) served at `addr`, 0 when absent.
pub fn metric(ns: &Netns, addr: SocketAddr, sample: &str) -> u64 {
    get(ns, addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}
