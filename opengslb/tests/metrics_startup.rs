//! The overwatch's metrics right after start (userspace server only, no root needed): the start-up
//! publish is timed and shown like every later one, so the table-sync histogram has an observation and
//! each name its all-down gauge before any reload or health change.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::Command,
    time::Duration,
};

use common::netns::{Proc, TempDir, wait_for};

fn config(dns_port: u16, metrics_port: u16) -> String {
    format!(
        r#"mode: overwatch
overwatch: {{ validation: {{ enabled: false }} }}
dns:
  listen_address: "127.0.0.1:{dns_port}"
  zones: [demo.local]
  xdp: {{ interfaces: [] }}
regions:
  - name: local
    servers:
      - {{ address: 192.0.2.1, service: app.demo.local }}
      - {{ address: 192.0.2.2, service: app.demo.local }}
domains:
  - {{ name: app.demo.local, regions: [local], all_down: all }}
metrics: {{ enabled: true, address: "127.0.0.1:{metrics_port}" }}
"#
    )
}

/// The body of `/metrics`, or `None` while nothing answers.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// The value of an unlabelled sample.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn the_startup_publish_is_timed_and_shown() {
    let dir = TempDir::new("metrics-startup");
    let (dns, met) = (common::free_port(), common::free_port());
    let cfg = dir.0.join("overwatch.yaml");
    std::fs::write(&cfg, config(dns, met)).unwrap();
    let mut cmd = Command::new(Path::new(env!("CARGO_BIN_EXE_opengslb")));
    cmd.args(["overwatch", "--config"]).arg(&cfg);
    let log = dir.0.join("log");
    let _server = Proc::spawn(cmd, &log);

    // The first scrape that answers: no reload, probe or report has happened, since validation is off
    // and there are no agents.
    let mut text = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            text = scrape(met);
            text.is_some()
        }),
        "no metrics: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = text.expect("checked above");
    let count = sample(&text, "opengslb_table_sync_seconds_count");
    assert!(
        count.is_some_and(|n| n >= 1.0),
        "the start-up publish is observed: {text}"
    );
    assert!(
        text.contains("opengslb_name_all_down{name=\"app.demo.local\",policy=\"all\"} 0\n"),
        "{text}"
    );
}
