//! The operator's commands (`opengslb status`, `backends`, `override`, ...), run as a person or a
//! script runs them against an overwatch with an agent: what they print, that an override set with them
//! takes a backend out of DNS and clearing it puts it back, that `--json` prints the API's JSON, and
//! the exit codes scripts rely on (docs/cli.md). Userspace DNS only, on loopback: no root needed.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::Path,
    process::Command,
    time::Duration,
};

use common::{
    dnsq::Asker,
    labs::{self, TOKEN},
    netns::{Proc, TempDir, wait_for},
};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_opengslb"))
}

/// What a run printed, and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("--json prints JSON: {e}\n{}", self.stdout))
    }

    /// The cells of the table row that starts with `key` (columns are two spaces or more apart; a
    /// cell holds single spaces at most).
    fn row(&self, key: &[&str]) -> Vec<String> {
        self.stdout
            .lines()
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .find(|cells| cells.len() >= key.len() && cells[..key.len()] == *key)
            .unwrap_or_else(|| panic!("no row {key:?} in\n{}", self.stdout))
    }
}

/// `opengslb ARGS` with `env`, and nothing of the caller's environment that the commands read.
fn opengslb(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .env_remove("OPENGSLB_API")
        .env_remove("OPENGSLB_TOKEN")
        .env_remove("USER")
        .envs(env.iter().copied())
        .output()
        .expect("run opengslb");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

struct Lab {
    dir: TempDir,
    dns: u16,
    api: String,
    _overwatch: Proc,
    _agent: Proc,
}

impl Lab {
    /// An overwatch with an API token, four static backends of `app.demo.local`, and an agent that
    /// reports a fifth (the API's own port: a TCP check that passes).
    fn new() -> Self {
        let dir = TempDir::new("cli");
        let api = SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port()));
        let (dns, gossip) = (common::free_port(), common::free_port());
        let overwatch = labs::overwatch(&dir.0, dns, api, gossip, "");
        let agent = labs::agent(&dir.0, gossip, api.port());
        let mut procs = Vec::new();
        for (mode, config) in [("overwatch", overwatch), ("agent", agent)] {
            common::write_private(&dir.0.join(format!("{mode}.yaml")), &config);
            procs.push(labs::spawn(bin(), &dir.0, mode));
        }
        let agent = procs.pop().unwrap();
        let lab = Self {
            dir,
            dns,
            api: format!("http://{api}"),
            _overwatch: procs.pop().unwrap(),
            _agent: agent,
        };
        assert!(
            wait_for(Duration::from_secs(10), || lab.ctl(&["status"]).code == 0),
            "`opengslb status` says ready within 10 s\n{}",
            lab.log("overwatch")
        );
        lab
    }

    fn log(&self, which: &str) -> String {
        std::fs::read_to_string(self.dir.0.join(format!("{which}.log"))).unwrap_or_default()
    }

    /// `opengslb ARGS --api <this overwatch>`.
    fn ctl(&self, args: &[&str]) -> Run {
        self.ctl_with(args, &[])
    }

    fn ctl_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--api", &self.api]);
        opengslb(&all, env)
    }

    /// The same, which must succeed.
    fn ok(&self, args: &[&str]) -> Run {
        let r = self.ctl(args);
        assert_eq!(r.code, 0, "opengslb {args:?}: {}{}", r.stdout, r.stderr);
        r
    }

    /// The A records of app.demo.local, asked again if a reply is lost.
    fn answers(&self) -> Vec<Ipv4Addr> {
        let mut asker = Asker::new(SocketAddr::from((Ipv4Addr::LOCALHOST, self.dns)));
        (0..20)
            .find_map(|_| asker.a("app.demo.local.", false))
            .expect("a DNS answer within 20 tries")
    }
}

const ONE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

#[test]
fn the_commands_show_the_state_and_take_a_backend_out_of_dns_and_back() {
    let lab = Lab::new();

    let status = lab.ok(&["status"]);
    for line in [
        "ready       yes (xdp off)",
        "overrides   0",
        "validation  off",
    ] {
        assert!(
            status.stdout.contains(line),
            "{line:?} in\n{}",
            status.stdout
        );
    }
    let s = lab.ok(&["status", "--json"]).json();
    assert_eq!(s["ready"]["ready"], true);
    assert!(s["version"]["version"].is_string());
    assert_eq!(s["stats"]["active_overrides"], 0);

    // The agent's backend joins the static ones; the book of agents shows it (a second later at most).
    assert!(
        wait_for(Duration::from_secs(15), || {
            let v = lab.ok(&["backends", "--json"]).json();
            let a = lab.ok(&["agents", "--json"]).json();
            // The book's view is refreshed once a second: its first may hold the report sent before
            // the agent's first check, without the backend.
            a["agents"][0]["state"] == "alive"
                && a["agents"][0]["backends"] == 1
                && v["backends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["source"] == "agent" && b["effective_status"] == "healthy")
        }),
        "the agent's backend is healthy within 15 s\n{}",
        lab.log("agent")
    );
    let port = lab.api.rsplit(':').next().unwrap().to_owned();
    let backends = lab.ok(&["backends"]);
    assert_eq!(
        backends.stdout.lines().count(),
        6,
        "a header and five backends:\n{}",
        backends.stdout
    );
    assert!(
        backends.stdout.starts_with("SERVICE "),
        "{}",
        backends.stdout
    );
    for (address, port) in [
        ("192.0.2.1", "80"),
        ("192.0.2.2", "80"),
        ("192.0.2.2", "8080"),
        ("2001:db8::1", "80"),
    ] {
        let row = backends.row(&["app.demo.local", address, port]);
        assert_eq!(
            row[3..],
            ["eu", "static", "healthy", "healthy", "-", "-", "-"]
        );
    }
    let agent = lab.ok(&["agents", "--json"]).json()["agents"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = backends.row(&["app.demo.local", "127.0.0.1", &port]);
    assert_eq!(row[3..7], ["eu", "agent", "healthy", "healthy"]);
    assert!(
        row[7] == agent && row[8].ends_with("s ago") && row[9] == "-",
        "the agent and how long ago it reported: {row:?}"
    );
    let only = lab.ok(&[
        "backends",
        "--service",
        "APP.demo.local.",
        "--region",
        "eu",
        "--status",
        "healthy",
    ]);
    assert_eq!(only.stdout.lines().count(), 6, "{}", only.stdout);
    assert_eq!(
        lab.ok(&["backends", "--status", "draining"]).stdout,
        "no backend matches\n"
    );
    // The API's JSON as it is, its keys in the order it sent them.
    let raw = lab.ok(&["backends", "--json"]);
    assert_eq!(raw.json()["count"], 5);
    let first = |k: &str| raw.stdout.find(&format!("\"{k}\"")).unwrap();
    assert!(first("service") < first("address"), "{}", raw.stdout);
    assert!(
        raw.stdout.contains("\n  \"backends\": ["),
        "pretty: {}",
        raw.stdout
    );

    let servers = lab.ok(&["servers"]);
    assert_eq!(
        servers.stdout.lines().count(),
        5,
        "the four configured:\n{}",
        servers.stdout
    );
    assert_eq!(
        servers.row(&["app.demo.local", "2001:db8::1", "80"])[3..],
        ["100", "eu", "config"]
    );
    assert_eq!(lab.ok(&["servers", "--json"]).json()["count"], 4);

    let domains = lab.ok(&["domains"]);
    assert!(domains.stdout.starts_with("NAME "), "{}", domains.stdout);
    let d = domains.row(&["app.demo.local"]);
    assert_eq!(
        d[1..],
        ["round-robin", "eu", "5", "16", "default", "config"]
    );
    assert_eq!(
        lab.ok(&["domains", "--json"]).json()["domains"][0]["name"],
        "app.demo.local"
    );

    let agents = lab.ok(&["agents"]);
    assert_eq!(agents.stdout.lines().count(), 2, "{}", agents.stdout);
    let a = agents.row(&[&agent]);
    assert_eq!((a[2].as_str(), a[4].as_str()), ("alive", "1"), "{a:?}");
    assert!(
        a[3].starts_with("127.0.0.1:") && a[5].ends_with("s ago"),
        "{a:?}"
    );

    let explained = lab.ok(&["explain", "app.demo.local", "--client", "192.0.2.7"]);
    assert!(
        explained
            .stdout
            .starts_with("app.demo.local A from 192.0.2.7\n"),
        "{}",
        explained.stdout
    );
    assert!(explained.row(&["records"])[1].contains("192.0.2.1"));
    assert_eq!(
        explained.row(&["192.0.2.1", "80"])[2..],
        ["A", "eu", "static", "healthy", "healthy", "100", "yes"]
    );
    let six = lab.ok(&["explain", "app.demo.local", "--type", "aaaa"]);
    assert_eq!(six.row(&["records"]), ["records", "2001:db8::1"]);
    let six = lab
        .ok(&["explain", "app.demo.local", "--type", "AAAA", "--json"])
        .json();
    assert_eq!(six["type"], "AAAA");
    assert_eq!(six["records"][0], "2001:db8::1");

    // Out: the table says why, and DNS stops answering it.
    assert!(lab.answers().contains(&ONE));
    let set = lab.ok(&[
        "override",
        "set",
        "app.demo.local",
        "192.0.2.1",
        "80",
        "--healthy=false",
        "--reason",
        "maintenance",
        "--by",
        "alice",
        "--token",
        TOKEN,
    ]);
    assert!(set.stdout.contains("out of DNS"), "{}", set.stdout);
    assert!(
        !lab.answers().contains(&ONE),
        "the override reached DNS before the reply"
    );
    let row = lab.ok(&["backends"]);
    assert_eq!(
        row.row(&["app.demo.local", "192.0.2.1", "80"])[5..],
        [
            "unhealthy",
            "override",
            "-",
            "-",
            "out: maintenance (alice)"
        ]
    );
    let why = lab.ok(&["explain", "app.demo.local"]);
    assert_eq!(
        why.row(&["192.0.2.1", "80"])[5..],
        ["unhealthy", "override", "100", "no"]
    );
    assert!(
        !why.row(&["records"])[1]
            .split(' ')
            .any(|r| r == "192.0.2.1")
    );
    let list = lab.ok(&["override", "list"]);
    let o = list.row(&["app.demo.local", "192.0.2.1", "80"]);
    assert_eq!(o[3], "out: maintenance (alice)");
    assert!(o[4].ends_with("s ago"), "{o:?}");
    assert_eq!(lab.ok(&["override", "list", "--json"]).json()["count"], 1);
    assert!(lab.ok(&["status"]).stdout.contains("overrides   1"));

    // Without --by, $USER; the token and the API from the environment; IPv6 bracketed.
    let env = [("USER", "carol"), ("OPENGSLB_TOKEN", TOKEN)];
    let r = lab.ctl_with(
        &[
            "override",
            "set",
            "app.demo.local",
            "[2001:db8::1]",
            "80",
            "--reason",
            "rack swap",
        ],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = opengslb(&["override", "list"], &[("OPENGSLB_API", &lab.api)]);
    assert_eq!(
        r.row(&["app.demo.local", "2001:db8::1", "80"])[3],
        "out: rack swap (carol)"
    );

    // Back.
    for address in ["192.0.2.1", "2001:db8::1"] {
        let clear = lab.ctl_with(
            &["override", "clear", "app.demo.local", address, "80"],
            &env,
        );
        assert_eq!(clear.code, 0, "{}", clear.stderr);
        assert!(
            clear.stdout.contains("its checks decide again"),
            "{}",
            clear.stdout
        );
    }
    assert!(lab.answers().contains(&ONE));
    let back = lab.ok(&["backends"]);
    assert_eq!(
        back.row(&["app.demo.local", "192.0.2.1", "80"])[4..],
        ["static", "healthy", "healthy", "-", "-", "-"]
    );
    assert_eq!(lab.ok(&["override", "list"]).stdout, "no overrides\n");

    // Refusals: exit 1 with the API's status, code and message.
    let no_token = lab.ctl(&["override", "set", "app.demo.local", "192.0.2.1", "80"]);
    assert_eq!(no_token.code, 1, "{}", no_token.stderr);
    assert!(
        no_token
            .stderr
            .contains("HTTP 401 unauthorized: changes need the api.token")
            && no_token.stderr.contains("--token or OPENGSLB_TOKEN"),
        "{}",
        no_token.stderr
    );
    let wrong = lab.ctl(&[
        "override",
        "clear",
        "app.demo.local",
        "192.0.2.1",
        "80",
        "--token",
        "nope",
    ]);
    assert_eq!(wrong.code, 1);
    assert!(
        wrong.stderr.contains("the token given is not"),
        "{}",
        wrong.stderr
    );
    assert!(
        lab.answers().contains(&ONE),
        "refused changes change nothing"
    );
    let unknown = lab.ctl(&[
        "override",
        "set",
        "app.demo.local",
        "10.9.9.9",
        "80",
        "--token",
        TOKEN,
    ]);
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains(
            "/api/v1/overwatch/backends/app.demo.local/10.9.9.9/80/override: HTTP 404 not_found: "
        ),
        "{}",
        unknown.stderr
    );
    let nope = lab.ctl(&["explain", "nope.demo.local"]);
    assert_eq!(nope.code, 1);
    assert!(nope.stderr.contains("HTTP 404"), "{}", nope.stderr);
    assert!(nope.stdout.is_empty());
}

/// A one-connection HTTP server that answers `reply` (or nothing, and holds the connection, when
/// `reply` is empty); its base URL.
fn fake_api(reply: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        if reply.is_empty() {
            std::thread::sleep(Duration::from_secs(30));
        } else {
            let _ = s.write_all(reply.as_bytes());
        }
    });
    url
}

#[test]
fn exit_codes_tell_an_unreachable_api_from_a_bad_reply_from_a_bad_command_line() {
    // 3: nothing listens there; the message names the URL.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let r = opengslb(&["status", "--api", &closed], &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("cannot reach the API at {closed}/api/v1/ready")),
        "{}",
        r.stderr
    );
    let r = opengslb(&["backends"], &[("OPENGSLB_API", &closed)]);
    assert_eq!(r.code, 3, "OPENGSLB_API is read: {}", r.stderr);
    let r = opengslb(
        &["domains", "--api", "http://no-such-host.invalid:8080"],
        &[],
    );
    assert_eq!(r.code, 3, "a name that does not resolve: {}", r.stderr);
    assert!(r.stderr.contains("no-such-host.invalid"), "{}", r.stderr);
    // 3: something accepts but never answers.
    let silent = fake_api("");
    let r = opengslb(&["agents", "--api", &silent, "--timeout", "300ms"], &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("no reply within 300ms"), "{}", r.stderr);

    // 1: something answers, but not with the API's JSON.
    let html = fake_api(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 15\r\nConnection: close\r\n\r\n<html>hi</html>",
    );
    let r = opengslb(&["domains", "--api", &html], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("the reply is not JSON (text/html)")
            && r.stderr.contains("<html>hi</html>"),
        "{}",
        r.stderr
    );
    let proxy = fake_api(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad gateway",
    );
    let r = opengslb(&["domains", "--api", &proxy, "--json"], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("HTTP 502 Bad Gateway") && r.stderr.contains("bad gateway"),
        "{}",
        r.stderr
    );

    // 2: the command line is wrong; nothing is sent.
    for args in [
        &["status", "--api", "ftp://127.0.0.1"][..],
        &["backends", "--status", "sick"],
        &["override", "set", "app.demo.local", "10.0.0.300", "80"],
        &["override", "set", "app.demo.local", "10.0.0.1", "0"],
        &[
            "override",
            "set",
            "app.demo.local",
            "10.0.0.1",
            "80",
            "--healthy=maybe",
        ],
        &["explain"],
        &["explain", "app.demo.local", "--type", "MX"],
        &["explain", "app.demo.local", "--client", "somewhere"],
        &["status", "--timeout", "0"],
    ] {
        let r = opengslb(args, &[("OPENGSLB_API", &closed)]);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("error: "), "{args:?}: {}", r.stderr);
    }
}
