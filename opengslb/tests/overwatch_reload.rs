//! The overwatch process with the userspace server only (no XDP, no root needed): it answers from its
//! config, SIGHUP publishes a changed table (new answers, new SOA serial, one more table-sync
//! observation in the metrics), and a broken config is refused with the running one kept. The original's
//! bare command line, `opengslb --config FILE`, runs the file's mode; a file with secrets that others can
//! read is refused, at start and on SIGHUP.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::Path,
    process::Command,
    time::Duration,
};

use common::netns::{Proc, TempDir, wait_for};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType},
};

fn config(dns_port: u16, metrics_port: u16, last_octets: &[u8]) -> String {
    let servers: String = last_octets
        .iter()
        .map(|o| format!("      - {{ address: 192.0.2.{o}, service: app.demo.local }}\n"))
        .collect();
    format!(
        r#"mode: overwatch
overwatch: {{ validation: {{ enabled: false }} }}
dns:
  listen_address: "127.0.0.1:{dns_port}"
  zones: [demo.local]
  default_ttl: 5
regions:
  - name: local
    servers:
{servers}domains:
  - {{ name: app.demo.local, routing_algorithm: round-robin, regions: [local], ttl: 5, max_answers: 16 }}
metrics: {{ enabled: true, address: "127.0.0.1:{metrics_port}" }}
"#
    )
}

fn ask(port: u16, name: &str, t: RecordType) -> Option<Message> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut m = Message::query();
    m.metadata.id = 7;
    m.add_query(Query::query(Name::from_ascii(name).ok()?, t));
    sock.send_to(
        &m.to_vec().ok()?,
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
    )
    .ok()?;
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).ok()?;
    Message::from_vec(&buf[..n]).ok()
}

fn a_records(port: u16) -> Vec<Ipv4Addr> {
    ask(port, "app.demo.local.", RecordType::A)
        .map(|m| addresses(&m))
        .unwrap_or_default()
}

/// The A records of a reply, sorted.
fn addresses(m: &Message) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// The first `Some` from `f` within 10 s: a UDP query whose reply is lost or late (each try waits
/// 500 ms) is asked again. Generous: waiting costs time only on failure.
fn answered<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let mut out = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            out = f();
            out.is_some()
        }),
        "no answer to {what} within 10 s"
    );
    out.expect("checked above")
}

/// Scrapes until the metrics contain `want`, up to 5 s (the metrics listener and the publish are not
/// ordered with the DNS answers); returns the last scrape.
fn scrape_until(port: u16, want: &str) -> (bool, String) {
    let mut text = String::new();
    let found = wait_for(Duration::from_secs(5), || {
        text = scrape(port);
        text.contains(want)
    });
    (found, text)
}

fn serial(port: u16) -> Option<u32> {
    let m = ask(port, "demo.local.", RecordType::SOA)?;
    match &m.answers.first()?.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

fn scrape(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn hup(p: &Proc) {
    let pid = p.child.as_ref().expect("running").id();
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
}

#[test]
fn sighup_publishes_a_new_table_and_refuses_a_broken_config() {
    let dir = TempDir::new("reload");
    let (dns, met) = (common::free_port(), common::free_port());
    let cfg = dir.0.join("overwatch.yaml");
    std::fs::write(&cfg, config(dns, met, &[1, 2])).unwrap();
    let mut cmd = Command::new(Path::new(env!("CARGO_BIN_EXE_opengslb")));
    cmd.args(["overwatch", "--config"]).arg(&cfg);
    let log = dir.0.join("log");
    let server = Proc::spawn(cmd, &log);
    let v1 = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)];
    assert!(
        wait_for(Duration::from_secs(20), || a_records(dns) == v1),
        "first answers: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let serial1 = answered("the SOA query", || serial(dns));
    // The start-up publish is timed and shown like every later one: one observation before any
    // reload, and each name's all-down gauge.
    let (found, text) = scrape_until(met, "opengslb_table_sync_seconds_count 1");
    assert!(found, "{text}");
    assert!(
        text.contains("opengslb_name_all_down{name=\"app.demo.local\",policy=\"all\"} 0\n"),
        "{text}"
    );

    std::fs::write(&cfg, config(dns, met, &[3])).unwrap();
    hup(&server);
    assert!(
        wait_for(Duration::from_secs(10), || a_records(dns)
            == [Ipv4Addr::new(192, 0, 2, 3)]),
        "answers after SIGHUP: {:?}",
        a_records(dns)
    );
    assert!(
        answered("the SOA query", || serial(dns)) > serial1,
        "the SOA serial changes with the table"
    );
    let (found, text) = scrape_until(met, "opengslb_table_sync_seconds_count 2");
    assert!(found, "{text}");
    assert!(
        text.contains("opengslb_dns_replies_total{kind=\"fast\"}"),
        "{text}"
    );

    std::fs::write(&cfg, "dns: { zones: [demo.local], listen_adress: oops }\n").unwrap();
    hup(&server);
    // The refusal is logged once the reload was tried; generous: waiting costs time only on failure.
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(10), || logged()
            .contains("listen_adress")),
        "the error names the key: {}",
        logged()
    );
    let m = answered("app.demo.local A", || {
        ask(dns, "app.demo.local.", RecordType::A)
    });
    assert_eq!(
        addresses(&m),
        [Ipv4Addr::new(192, 0, 2, 3)],
        "the running config is kept"
    );
    let (found, text) = scrape_until(met, "opengslb_config_reloads_total{result=\"failure\"} 1\n");
    assert!(found, "{text}");
    for line in [
        "opengslb_config_reloads_total{result=\"success\"} 1\n",
        "opengslb_overwatch_backends 1\n",
        "opengslb_overwatch_overrides_active 0\n",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    common::http::promtool_check(&text);

    // A file that now holds a secret, but that others can read, is refused too, and named.
    use std::os::unix::fs::PermissionsExt as _;
    let secret = format!(
        "{}api: {{ token: \"api-token-0123456789\" }}\n",
        config(dns, met, &[4])
    );
    std::fs::write(&cfg, secret).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    hup(&server);
    let want = format!("run `chmod 600 {}`", cfg.display());
    assert!(
        wait_for(Duration::from_secs(10), || logged().contains(&want)),
        "the refusal says how to fix it: {}",
        logged()
    );
    let (found, text) = scrape_until(met, "opengslb_config_reloads_total{result=\"failure\"} 2\n");
    assert!(found, "{text}");
    assert_eq!(
        a_records(dns),
        [Ipv4Addr::new(192, 0, 2, 3)],
        "the running config is kept"
    );
}

/// `opengslb --config FILE [--mode M]`, as the original's images run it; a file that holds a secret and
/// that others can read is refused by every command that runs from it, and named with its mode and the
/// fix; `config validate` warns.
#[test]
fn bare_opengslb_runs_the_files_mode_and_refuses_a_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("bare");
    let (dns, met) = (common::free_port(), common::free_port());
    let cfg = dir.0.join("config.yaml");
    let with_token = format!(
        "{}api: {{ token: \"api-token-0123456789\" }}\n",
        config(dns, met, &[7])
    );
    std::fs::write(&cfg, &with_token).unwrap();
    let opengslb = |args: &[&str]| {
        let mut cmd = Command::new(Path::new(env!("CARGO_BIN_EXE_opengslb")));
        for arg in args {
            if *arg == "FILE" {
                cmd.arg(&cfg);
            } else {
                cmd.arg(arg);
            }
        }
        cmd
    };
    let bare = |extra: &[&str]| {
        let mut cmd = opengslb(&["--config", "FILE"]);
        cmd.args(extra);
        cmd
    };
    let refused = |mut cmd: Command| {
        let out = cmd.output().expect("runs");
        assert!(!out.status.success(), "{cmd:?} must be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    for (mode, who) in [
        (0o644, "its group and others read"),
        (0o620, "its group write"),
    ] {
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(mode)).unwrap();
        let want = format!(
            "config {path} holds secrets (api.token) but its mode {mode:04o} lets {who} it: run \
             `chmod 600 {path}`",
            path = cfg.display()
        );
        for cmd in [bare(&[]), opengslb(&["overwatch", "--config", "FILE"])] {
            let err = refused(cmd);
            assert!(err.contains(&want), "{want}\n{err}");
        }
        let out = opengslb(&["config", "validate", "FILE"]).output().unwrap();
        let warning = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && warning.contains(&want), "{warning}");
    }
    // Without a secret, the mode is the owner's business.
    std::fs::write(&cfg, config(dns, met, &[7])).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = refused(bare(&["--mode", "agent"]));
    assert!(!err.contains("chmod"), "{err}");

    std::fs::write(&cfg, &with_token).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The file is an overwatch's: as an agent it lacks what an agent needs, and says so.
    let err = refused(bare(&["--mode", "agent"]));
    assert!(
        err.contains("--mode agent") && err.contains("required in agent mode"),
        "{err}"
    );
    let mut wrong_place = bare(&["overwatch"]);
    let out = wrong_place.output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("opengslb overwatch --config FILE"),
        "{err}"
    );

    let log = dir.0.join("log");
    let _server = Proc::spawn(bare(&[]), &log);
    assert!(
        wait_for(Duration::from_secs(20), || a_records(dns)
            == [Ipv4Addr::new(192, 0, 2, 7)]),
        "the bare command runs the overwatch the file names: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// `logging.format` and `logging.level` are acted on, and `--log-level` wins over the file's level.
#[test]
fn logs_follow_the_configs_logging_section_and_the_flag_wins() {
    let dir = TempDir::new("logging");
    let run = |logging: &str, flag: &[&str]| -> String {
        let (dns, met) = (common::free_port(), common::free_port());
        let cfg = dir.0.join("config.yaml");
        std::fs::write(&cfg, format!("{}{logging}", config(dns, met, &[9]))).unwrap();
        let mut cmd = Command::new(Path::new(env!("CARGO_BIN_EXE_opengslb")));
        cmd.args(flag).args(["overwatch", "--config"]).arg(&cfg);
        let log = dir.0.join("log");
        let server = Proc::spawn(cmd, &log);
        let logged = || std::fs::read_to_string(&log).unwrap_or_default();
        // The metrics listener logs its address once it serves: by then start-up has been logged.
        assert!(
            wait_for(Duration::from_secs(20), || !scrape(met).is_empty()),
            "metrics served: {}",
            logged()
        );
        drop(server);
        logged()
    };

    let json = run("logging: { format: json }\n", &[]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    assert!(
        lines.iter().any(|o| o["level"] == "INFO"
            && o["message"] == "metrics at /metrics"
            && o["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:"))),
        "an info event with its fields at the top level: {json}"
    );

    let quiet = run("logging: { level: error, format: text }\n", &[]);
    assert!(!quiet.contains("metrics at /metrics"), "{quiet}");
    let flag = run(
        "logging: { level: error, format: text }\n",
        &["--log-level", "info"],
    );
    assert!(
        flag.contains("INFO") && flag.contains("metrics at /metrics") && !flag.starts_with('{'),
        "--log-level wins over logging.level, in text: {flag}"
    );
}
