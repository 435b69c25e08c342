//! The HTTP API against a running overwatch with an agent: every endpoint, overrides that reach DNS
//! before the response and survive a kill -9, access control by network and token, and bad input
//! answered with a JSON error. Userspace DNS only, on loopback: no root needed.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    path::Path,
    time::Duration,
};

use common::{
    http::call,
    labs::{self, TOKEN},
    netns::{Proc, TempDir, wait_for},
};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType},
};
use serde_json::Value;

struct Lab {
    dir: TempDir,
    dns: u16,
    api: SocketAddr,
    gossip: u16,
    overwatch: Option<Proc>,
    agent: Option<Proc>,
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_opengslb"))
}

impl Lab {
    fn new() -> Self {
        Self::with_overwatch("api", "")
    }

    /// A lab in its own directory (`tag`: tests run in parallel, in one process) whose overwatch
    /// section also holds `extra` (YAML lines indented by two spaces).
    fn with_overwatch(tag: &str, extra: &str) -> Self {
        let dir = TempDir::new(tag);
        let api = SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port()));
        let (dns, gossip) = (common::free_port(), common::free_port());
        let config = labs::overwatch(&dir.0, dns, api, gossip, extra);
        common::write_private(&dir.0.join("overwatch.yaml"), &config);
        let mut lab = Self {
            dir,
            dns,
            api,
            gossip,
            overwatch: None,
            agent: None,
        };
        lab.start_overwatch();
        lab
    }

    fn start_overwatch(&mut self) {
        self.overwatch = Some(labs::spawn(bin(), &self.dir.0, "overwatch"));
        labs::wait_ready(self.api, || self.log());
    }

    /// An agent reporting the API's own port as its backend (a TCP check that always passes).
    fn start_agent(&mut self) {
        let config = labs::agent(&self.dir.0, self.gossip, self.api.port());
        common::write_private(&self.dir.0.join("agent.yaml"), &config);
        self.agent = Some(labs::spawn(bin(), &self.dir.0, "agent"));
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.dir.0.join("overwatch.yaml")
    }

    /// SIGHUP: the overwatch re-reads its config file; back once its log says it has.
    fn hup(&self) {
        const DONE: &str = "SIGHUP: config reloaded";
        let before = self.log().matches(DONE).count();
        let pid = self
            .overwatch
            .as_ref()
            .and_then(|p| p.child.as_ref())
            .map(|c| c.id());
        let pid = i32::try_from(pid.expect("a running overwatch")).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
        assert!(
            wait_for(Duration::from_secs(5), || self.log().matches(DONE).count()
                > before),
            "reloaded within 5 s\n{}",
            self.log()
        );
    }

    fn kill9_and_restart(&mut self) {
        if let Some(mut p) = self.overwatch.take()
            && let Some(child) = p.child.as_mut()
        {
            child.kill().unwrap();
            let _ = child.wait();
        }
        self.start_overwatch();
    }

    /// The addresses `name` answers for `t`, sorted; asked again if a reply is lost.
    fn answers_for(&self, name: &str, t: RecordType) -> Vec<IpAddr> {
        for _ in 0..20 {
            if let Some(v) = ask_name(self.dns, name, t) {
                return v;
            }
        }
        panic!("no DNS answer within 20 tries");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("overwatch.log")).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, String) {
        call(self.api, "GET", path, &[], None)
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// A change with the token and an X-User.
    fn change(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        let headers = [("Authorization", auth.as_str()), ("X-User", "alice")];
        let (status, text) = call(self.api, method, path, &headers, body);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The addresses `app.demo.local` answers for `t`, sorted; asked again if a reply is lost.
    fn answers(&self, t: RecordType) -> Vec<IpAddr> {
        for _ in 0..20 {
            if let Some(v) = ask(self.dns, t) {
                return v;
            }
        }
        panic!("no DNS answer within 20 tries");
    }
}

fn ask(port: u16, t: RecordType) -> Option<Vec<IpAddr>> {
    ask_name(port, "app.demo.local.", t)
}

fn ask_name(port: u16, name: &str, t: RecordType) -> Option<Vec<IpAddr>> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).ok()?, t));
    sock.send_to(&m.to_vec().ok()?, ("127.0.0.1", port)).ok()?;
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    let reply = Message::from_vec(&buf[..n]).ok()?;
    let mut v: Vec<IpAddr> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    Some(v)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(v["message"].is_string(), "{body}");
    v["error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_api_reads_state_and_sets_overrides_that_reach_dns_and_persist() {
    let mut lab = Lab::new();

    // Open endpoints and health.
    assert_eq!(lab.json("/api/v1/live")["alive"], true);
    let ready = lab.json("/api/v1/ready");
    assert_eq!(
        (ready["ready"].clone(), ready["xdp"].clone()),
        (true.into(), "off".into())
    );
    assert!(lab.json("/api/v1/version")["version"].is_string());
    let servers = lab.json("/api/v1/health/servers");
    let rows = servers["servers"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{servers}");
    assert!(
        rows.iter().any(|r| r["address"] == "2001:db8::1"),
        "IPv6 included"
    );
    let regions = lab.json("/api/v1/health/regions");
    assert_eq!(regions["regions"][0]["name"], "eu");
    assert_eq!(regions["regions"][0]["healthy_count"], 4);

    // Backends with filters.
    let all = lab.json("/api/v1/overwatch/backends?service=App.Demo.Local.");
    assert_eq!(all["count"], 4, "{all}");
    assert_eq!(
        lab.json("/api/v1/overwatch/backends?status=draining")["count"],
        0
    );
    assert_eq!(
        lab.json("/api/v1/overwatch/backends?region=eu&status=healthy")["count"],
        4
    );
    let (status, body) = lab.get("/api/v1/overwatch/backends?status=sleeping");
    assert_eq!(
        (status, error_of(&body).as_str()),
        (400, "bad_request"),
        "{body}"
    );
    let (status, body) = lab.get("/api/v1/overwatch/backends?service=bad%20name");
    assert_eq!(status, 400, "{body}");
    let (status, body) = lab.get("/api/v1/nope");
    assert_eq!((status, error_of(&body).as_str()), (404, "not_found"));

    // Validation is off here: asking for probes says so.
    let (status, reply) = lab.change("POST", "/api/v1/overwatch/validate", None);
    assert_eq!(
        (status, reply["error"].as_str()),
        (409, Some("conflict")),
        "{reply}"
    );

    // An override reaches DNS before the response.
    let v4 = [ip("192.0.2.1"), ip("192.0.2.2")];
    assert_eq!(lab.answers(RecordType::A), v4);
    let path = "/api/v1/overwatch/backends/app.demo.local/192.0.2.1/80/override";
    let body = r#"{"healthy": false, "reason": "maintenance"}"#;
    let (status, _) = call(lab.api, "POST", path, &[], Some(body));
    assert_eq!(status, 401, "no token, no change");
    let (status, _) = call(
        lab.api,
        "POST",
        path,
        &[("Authorization", "Bearer wrong-token-0000000")],
        Some(body),
    );
    assert_eq!(status, 401, "a wrong token, no change");
    let (status, reply) = lab.change("POST", path, Some(body));
    assert_eq!(
        (status, reply["success"].clone()),
        (200, true.into()),
        "{reply}"
    );
    assert_eq!(lab.answers(RecordType::A), [ip("192.0.2.2")], "out at once");
    let row = &lab.json("/api/v1/overwatch/backends?status=unhealthy")["backends"][0];
    assert_eq!(
        (
            row["address"].as_str(),
            row["override_by"].as_str(),
            row["reason"].as_str()
        ),
        (Some("192.0.2.1"), Some("alice"), Some("override")),
        "{row}"
    );
    // IPv6 in a path, bracketed or not.
    let (status, reply) = lab.change(
        "POST",
        "/api/v1/overwatch/backends/app.demo.local/[2001:db8::1]/80/override",
        Some(r#"{"healthy": false}"#),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(lab.answers(RecordType::AAAA), Vec::<IpAddr>::new());
    let (status, _) = lab.change(
        "DELETE",
        "/api/v1/overwatch/backends/app.demo.local/2001:db8::1/80/override",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(lab.answers(RecordType::AAAA), [ip("2001:db8::1")]);

    // Bad changes.
    let unknown = "/api/v1/overwatch/backends/app.demo.local/192.0.2.9/80/override";
    let (status, reply) = lab.change("POST", unknown, Some(body));
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("not_found")),
        "{reply}"
    );
    let bad_port = "/api/v1/overwatch/backends/app.demo.local/192.0.2.1/99999/override";
    assert_eq!(lab.change("POST", bad_port, Some(body)).0, 400);
    assert_eq!(
        lab.change("POST", path, Some(r#"{"healthy": "no"}"#)).0,
        422
    );
    assert_eq!(lab.change("POST", path, Some("{not json")).0, 400);
    let huge = format!(
        r#"{{"healthy": false, "reason": "{}"}}"#,
        "x".repeat(100_000)
    );
    assert_eq!(lab.change("POST", path, Some(&huge)).0, 413);

    // The original's path acts on every port of an address.
    let external = "/api/v1/overrides/app.demo.local/192.0.2.2";
    assert_eq!(lab.change("GET", external, None).0, 404, "none yet");
    let (status, reply) = lab.change(
        "PUT",
        external,
        Some(r#"{"reason": "rack", "source": "tool"}"#),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["overrides"].as_array().map(Vec::len),
        Some(2),
        "{reply}"
    );
    // Every IPv4 backend is out; the IPv6 one keeps the name up, so A is NODATA, not all-down.
    assert_eq!(lab.answers(RecordType::A), Vec::<IpAddr>::new());
    assert_eq!(lab.answers(RecordType::AAAA), [ip("2001:db8::1")]);
    assert_eq!(lab.json("/api/v1/overrides")["count"], 3);
    assert_eq!(lab.change("DELETE", external, None).0, 204);
    assert_eq!(
        lab.change("DELETE", external, None).0,
        404,
        "nothing left to clear"
    );
    assert_eq!(lab.answers(RecordType::A), [ip("192.0.2.2")]);

    // Access control: the proxy's word for the client, IPv4-mapped counted as IPv4.
    for (client, want) in [
        ("203.0.113.9", 403),
        ("::1", 200),
        ("::ffff:127.0.0.1", 200),
    ] {
        let (status, body) = call(
            lab.api,
            "GET",
            "/api/v1/overwatch/backends",
            &[("X-Forwarded-For", client)],
            None,
        );
        assert_eq!(status, want, "from {client}: {body}");
    }
    let (status, _) = call(
        lab.api,
        "GET",
        "/api/v1/ready",
        &[("X-Forwarded-For", "203.0.113.9")],
        None,
    );
    assert_eq!(status, 200, "readiness is open to all");

    // An agent: its state, its backend, the gossip members.
    lab.start_agent();
    let agent_backend = format!("127.0.0.1:{}", lab.api.port());
    assert!(
        wait_for(Duration::from_secs(15), || {
            let v = lab.json("/api/v1/overwatch/agents");
            v["agents"][0]["state"] == "alive" && v["agents"][0]["backends"] == 1
        }),
        "the agent is alive in the book\n{}",
        lab.log()
    );
    let agents = lab.json("/api/v1/overwatch/agents");
    let id = agents["agents"][0]["id"].as_str().unwrap().to_owned();
    let one = lab.json(&format!("/api/v1/overwatch/agents/{id}"));
    let b = &one["backends"][0];
    assert_eq!(
        (
            b["address"].as_str(),
            b["source"].as_str(),
            b["agent_healthy"].as_bool()
        ),
        (Some("127.0.0.1"), Some("agent"), Some(true)),
        "{one} ({agent_backend})"
    );
    assert!(b["agent_last_seen"].is_string(), "{b}");
    assert_eq!(lab.get("/api/v1/overwatch/agents/nobody").0, 404);
    assert!(
        wait_for(Duration::from_secs(10), || lab
            .json("/api/v1/cluster/status")["gossip_members"]
            .as_u64()
            >= Some(1)),
        "SWIM members show\n{}",
        lab.log()
    );
    let cluster = lab.json("/api/v1/cluster/status?expected_agents=1");
    assert_eq!(cluster["cluster_healthy"], true, "{cluster}");
    // The overwatch's own region (`overwatch.identity.region`).
    assert_eq!(cluster["overwatch"]["region"], "eu", "{cluster}");
    assert_eq!(
        lab.json("/api/v1/cluster/status?expected_agents=2")["cluster_healthy"],
        false
    );
    let stats = lab.json("/api/v1/overwatch/stats");
    assert_eq!(
        (
            stats["total_backends"].clone(),
            stats["active_agents"].clone()
        ),
        (5.into(), 1.into()),
        "{stats}"
    );

    // An override survives kill -9 and a restart.
    if let Some(mut p) = lab.overwatch.take()
        && let Some(child) = p.child.as_mut()
    {
        child.kill().unwrap();
        let _ = child.wait();
    }
    lab.start_overwatch();
    assert!(
        !lab.answers(RecordType::A).contains(&ip("192.0.2.1")),
        "the override is kept\n{}",
        lab.log()
    );
    let kept = lab.json("/api/v1/overrides");
    assert_eq!(kept["count"], 1, "{kept}");
    assert_eq!(kept["overrides"][0]["by"], "alice");
    assert_eq!(kept["overrides"][0]["reason"], "maintenance");
}

/// The status and `message` of a refused change, the message checked to name `needle`.
fn refused(reply: &(u16, Value), status: u16, code: &str, needle: &str) {
    let (got, body) = reply;
    assert_eq!(
        (*got, body["error"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

#[test]
fn domains_regions_servers_and_mappings_made_through_the_api_reach_dns_and_persist() {
    let geo = "  geolocation: { default_region: eu }\n";
    let mut lab = Lab::with_overwatch("crud", geo);
    let shop = "shop.demo.local.";
    let v6 = ip("2001:db8::50");
    let v4 = ip("198.51.100.5");

    // A region, a domain in it, and servers: each in DNS as soon as its response is back.
    let (status, reply) = lab.change(
        "POST",
        "/api/v1/regions",
        Some(r#"{"name": "us", "countries": ["us"], "health_check": {"type": "tcp", "interval": "10s"}}"#),
    );
    assert_eq!(status, 201, "{reply}");
    assert_eq!(
        (reply["source"].as_str(), reply["countries"][0].as_str()),
        (Some("api"), Some("US"))
    );
    let (status, reply) = lab.change(
        "POST",
        "/api/v1/domains",
        Some(
            r#"{"name": "Shop.Demo.Local.", "regions": ["us"], "ttl": 30, "max_answers": 4, "slow_start": "30s"}"#,
        ),
    );
    assert_eq!(
        (status, reply["name"].as_str(), reply["slow_start"].as_str()),
        (201, Some("shop.demo.local"), Some("30s")),
        "{reply}"
    );
    assert_eq!(
        lab.answers_for(shop, RecordType::AAAA),
        Vec::<IpAddr>::new()
    );
    let (status, reply) = lab.change(
        "POST",
        "/api/v1/servers",
        Some(r#"{"service": "shop.demo.local", "address": "2001:db8::50", "region": "us"}"#),
    );
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["id"], "shop.demo.local/2001:db8::50/80");
    assert_eq!(lab.answers_for(shop, RecordType::AAAA), [v6], "at once");
    let (status, reply) = lab.change(
        "POST",
        "/api/v1/servers",
        Some(r#"{"name": "shop.demo.local", "address": "198.51.100.5", "port": 8080, "weight": 10, "region": "us"}"#),
    );
    assert_eq!(status, 201, "{reply}");
    assert_eq!(lab.answers_for(shop, RecordType::A), [v4]);

    // Reads: both kinds listed with their source; an IPv6 server by its id, encoded or in parts.
    let domains = lab.json("/api/v1/domains");
    let sources: Vec<(&str, &str)> = domains["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        sources,
        [("app.demo.local", "config"), ("shop.demo.local", "api")]
    );
    let one = lab.json("/api/v1/servers/shop.demo.local%2F2001:db8::50%2F80");
    assert_eq!(
        (one["region"].as_str(), one["source"].as_str()),
        (Some("us"), Some("api"))
    );
    assert_eq!(
        lab.json("/api/v1/servers/shop.demo.local/[2001:db8::50]/80"),
        one
    );
    assert_eq!(lab.json("/api/v1/servers")["count"], 6);
    let backends = lab.json("/api/v1/overwatch/backends?service=shop.demo.local");
    assert_eq!(backends["count"], 2, "{backends}");
    assert_eq!(backends["backends"][0]["source"], "api", "{backends}");
    assert_eq!(
        lab.json("/api/v1/regions/us")["servers"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Update.
    let (status, reply) = lab.change(
        "PUT",
        "/api/v1/domains/shop.demo.local",
        Some(r#"{"regions": ["us"], "ttl": 60}"#),
    );
    assert_eq!((status, reply["ttl"].as_u64()), (200, Some(60)), "{reply}");
    assert_eq!(lab.json("/api/v1/domains/shop.demo.local")["ttl"], 60);
    let (status, reply) = lab.change(
        "PUT",
        "/api/v1/servers/shop.demo.local/198.51.100.5/8080",
        Some(r#"{"weight": 20, "region": "us"}"#),
    );
    assert_eq!(
        (status, reply["weight"].as_u64()),
        (200, Some(20)),
        "{reply}"
    );

    // Invalid objects: 400 naming the field.
    let bad_ttl = r#"{"name": "bad.demo.local", "regions": ["us"], "ttl": 4294967295}"#;
    refused(
        &lab.change("POST", "/api/v1/domains", Some(bad_ttl)),
        400,
        "bad_request",
        "domains[bad.demo.local].ttl: must be at most",
    );
    let bad_window = r#"{"name": "bad.demo.local", "regions": ["us"], "slow_start": "2h"}"#;
    refused(
        &lab.change("POST", "/api/v1/domains", Some(bad_window)),
        400,
        "bad_request",
        "domains[bad.demo.local].slow_start: 7200s is outside 1s..=1h",
    );
    refused(
        &lab.change(
            "POST",
            "/api/v1/domains",
            Some(r#"{"name": "bad.demo.local", "ttl": -1}"#),
        ),
        400,
        "bad_request",
        "ttl: ",
    );
    refused(
        &lab.change(
            "POST",
            "/api/v1/domains",
            Some(r#"{"name": "bad.demo.local", "regions": ["mars"]}"#),
        ),
        400,
        "bad_request",
        r#"domains[bad.demo.local].regions[0]: no region named "mars""#,
    );
    refused(
        &lab.change(
            "POST",
            "/api/v1/servers",
            Some(r#"{"service": "shop.demo.local", "address": "192.0.2.77", "region": "mars"}"#),
        ),
        400,
        "bad_request",
        "servers[shop.demo.local/192.0.2.77/80].region",
    );
    refused(
        &lab.change(
            "POST",
            "/api/v1/geo/mappings",
            Some(r#"{"cidr": "10.0.0.0/33", "region": "us"}"#),
        ),
        400,
        "bad_request",
        "cidr",
    );
    assert_eq!(
        lab.json("/api/v1/domains")["count"],
        2,
        "nothing invalid was kept"
    );

    // The config file's objects are read-only; unknown ones are 404; a used one cannot go.
    let file = lab.config_path().display().to_string();
    refused(
        &lab.change(
            "PUT",
            "/api/v1/domains/app.demo.local",
            Some(r#"{"ttl": 9}"#),
        ),
        409,
        "conflict",
        &file,
    );
    refused(
        &lab.change("DELETE", "/api/v1/regions/eu", None),
        409,
        "conflict",
        &file,
    );
    refused(
        &lab.change(
            "POST",
            "/api/v1/servers",
            Some(r#"{"service": "app.demo.local", "address": "192.0.2.1", "region": "eu"}"#),
        ),
        409,
        "conflict",
        &file,
    );
    refused(
        &lab.change(
            "POST",
            "/api/v1/domains",
            Some(r#"{"name": "shop.demo.local", "regions": ["us"]}"#),
        ),
        409,
        "conflict",
        "already exists",
    );
    refused(
        &lab.change("DELETE", "/api/v1/regions/us", None),
        409,
        "conflict",
        "still in use",
    );
    assert_eq!(lab.get("/api/v1/domains/nope.demo.local").0, 404);
    refused(
        &lab.change("DELETE", "/api/v1/regions/nope", None),
        404,
        "not_found",
        "nope",
    );
    refused(
        &lab.change(
            "PUT",
            "/api/v1/servers/shop.demo.local%2F2001:db8::99%2F80",
            Some(r#"{"region": "us"}"#),
        ),
        404,
        "not_found",
        "2001:db8::99",
    );
    assert_eq!(
        lab.answers_for(shop, RecordType::AAAA),
        [v6],
        "refusals change nothing"
    );

    // Geolocation: a mapping decides which region an address gets, with the ECS scope.
    let (status, reply) = lab.change(
        "POST",
        "/api/v1/geo/mappings",
        Some(r#"{"cidr": "10.9.8.7/8", "region": "us", "comment": "lab"}"#),
    );
    assert_eq!(
        (status, reply["cidr"].as_str()),
        (201, Some("10.0.0.0/8")),
        "{reply}"
    );
    let test = lab.json("/api/v1/geo/test?ip=10.1.2.3");
    assert_eq!(
        (
            test["region"].as_str(),
            test["source"].as_str(),
            test["ecs_scope"].as_str()
        ),
        (Some("us"), Some("custom"), Some("10.0.0.0/8")),
        "{test}"
    );
    let test = lab.json("/api/v1/geo/test?ip=192.0.2.9");
    assert_eq!(
        (test["region"].as_str(), test["source"].as_str()),
        (Some("eu"), Some("default"))
    );
    assert_eq!(
        lab.json("/api/v1/geo/mappings/10.0.0.0%2F8")["comment"],
        "lab"
    );
    assert_eq!(lab.get("/api/v1/geo/test?ip=nope").0, 400);
    // A query the extractor rejects, and a method the path does not have, answer JSON errors too.
    let (status, body) = lab.get("/api/v1/geo/test?ip=10.1.2.3&ip=10.1.2.4");
    assert_eq!(
        (status, error_of(&body).as_str()),
        (400, "bad_request"),
        "{body}"
    );
    refused(
        &lab.change("PATCH", "/api/v1/domains", None),
        405,
        "method_not_allowed",
        "PATCH",
    );

    // Delete: out of DNS at once.
    let (status, _) = lab.change(
        "DELETE",
        "/api/v1/servers/shop.demo.local/198.51.100.5/8080",
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(lab.answers_for(shop, RecordType::A), Vec::<IpAddr>::new());

    // SIGHUP keeps them. A file that no longer allows one (no geolocation: the mapping) leaves that
    // one out, loudly, and the rest answer; the file fixed, it is back.
    lab.hup();
    assert_eq!(
        lab.answers_for(shop, RecordType::AAAA),
        [v6],
        "{}",
        lab.log()
    );
    let text = std::fs::read_to_string(lab.config_path()).unwrap();
    common::write_private(&lab.config_path(), &text.replace(geo, ""));
    lab.hup();
    assert!(
        wait_for(Duration::from_secs(5), || lab.json("/api/v1/geo/mappings")
            ["count"]
            == 0),
        "the mapping is left out\n{}",
        lab.log()
    );
    assert!(lab.log().contains("no longer validates"), "{}", lab.log());
    assert_eq!(lab.answers_for(shop, RecordType::AAAA), [v6]);
    common::write_private(&lab.config_path(), &text);
    lab.hup();
    assert!(
        wait_for(Duration::from_secs(5), || lab.json("/api/v1/geo/mappings")
            ["count"]
            == 1),
        "the mapping is back\n{}",
        lab.log()
    );

    // kill -9 and a restart keep them.
    lab.kill9_and_restart();
    assert_eq!(
        lab.answers_for(shop, RecordType::AAAA),
        [v6],
        "{}",
        lab.log()
    );
    assert_eq!(lab.json("/api/v1/domains/shop.demo.local")["ttl"], 60);
    assert_eq!(lab.json("/api/v1/geo/test?ip=10.1.2.3")["region"], "us");
    assert_eq!(lab.json("/api/v1/regions/us")["source"], "api");

    // Taken down in order: the server, then its domain.
    assert_eq!(
        lab.change(
            "DELETE",
            "/api/v1/servers/shop.demo.local%2F2001:db8::50%2F80",
            None
        )
        .0,
        204
    );
    assert_eq!(
        lab.answers_for(shop, RecordType::AAAA),
        Vec::<IpAddr>::new()
    );
    assert_eq!(
        lab.change("DELETE", "/api/v1/domains/shop.demo.local", None)
            .0,
        204
    );
    assert_eq!(lab.get("/api/v1/domains/shop.demo.local").0, 404);
    assert_eq!(lab.json("/api/v1/domains")["count"], 1);
}

/// An overwatch that validates its static backends, with a failover name and a geolocation one.
fn validating_overwatch(dir: &TempDir, api: SocketAddr, dns: u16, up: u16, down: u16) -> Proc {
    let config = format!(
        r#"mode: overwatch
overwatch:
  validation: {{ enabled: true }}
  data_dir: {data}
  geolocation:
    default_region: eu
    custom_mappings: [{{ cidr: 10.1.0.0/16, region: us }}]
dns:
  listen_address: "127.0.0.1:{dns}"
  zones: [demo.local]
regions:
  - name: eu
    health_check: {{ type: tcp, interval: 10m, timeout: 500ms, failure_threshold: 1, success_threshold: 1 }}
    servers:
      - {{ address: 127.0.0.3, port: {up}, service: app.demo.local }}
      - {{ address: 127.0.0.2, port: {down}, service: app.demo.local }}
      - {{ address: 127.0.0.3, port: {up}, service: geo.demo.local }}
  - name: us
    health_check: {{ type: tcp, interval: 10m, timeout: 500ms, failure_threshold: 1, success_threshold: 1 }}
    servers:
      - {{ address: 127.0.0.4, port: {up}, service: geo.demo.local }}
domains:
  - {{ name: app.demo.local, regions: [eu], routing_algorithm: failover, ttl: 5 }}
  - {{ name: geo.demo.local, regions: [eu, us], routing_algorithm: geolocation, ttl: 5 }}
api:
  enabled: true
  address: "{api}"
  allowed_networks: [127.0.0.0/8]
  token: "{TOKEN}"
"#,
        data = dir.0.join("data").display(),
    );
    common::write_private(&dir.0.join("overwatch.yaml"), &config);
    labs::spawn(bin(), &dir.0, "overwatch")
}

#[test]
fn explain_shows_the_published_answer_and_validate_probes_now() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let dir = TempDir::new("api-explain");
    let api = SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port()));
    let dns = common::free_port();
    // The healthy backend: a listener that counts the probes' connections, on 127.0.0.3 and .4.
    let up = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let port = up.local_addr().unwrap().port();
    let up4 = std::net::TcpListener::bind(("127.0.0.4", port)).unwrap();
    let probes = Arc::new(AtomicUsize::new(0));
    for l in [up, up4] {
        let probes = probes.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if conn.is_ok() && l.local_addr().unwrap().ip() == ip("127.0.0.3") {
                    probes.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    let down = common::free_port();
    let _overwatch = validating_overwatch(&dir, api, dns, port, down);
    let log = || std::fs::read_to_string(dir.0.join("overwatch.log")).unwrap_or_default();
    let get = |path: &str| call(api, "GET", path, &[], None);
    let json = |path: &str| -> Value {
        let (status, body) = get(path);
        assert_eq!(status, 200, "GET {path}: {body}\n{}", log());
        serde_json::from_str(&body).unwrap()
    };
    let auth = format!("Bearer {TOKEN}");
    let post = |path: &str, token: bool| -> (u16, Value) {
        let headers: &[(&str, &str)] = if token {
            &[("Authorization", auth.as_str())]
        } else {
            &[]
        };
        let (status, text) = call(api, "POST", path, headers, None);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    };
    labs::wait_ready(api, log);
    // The first probes: the refused backend goes out, the listening one stays in.
    let explain = "/api/v1/dns/explain?name=App.Demo.Local.";
    assert!(
        wait_for(Duration::from_secs(10), || {
            let e = json(explain);
            e["backends"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["reason"] == "validation_failed")
        }),
        "the refused backend out within 10 s: {}",
        json(explain)
    );
    let e = json(explain);
    assert_eq!(e["name"], "app.demo.local");
    assert_eq!(e["type"], "A");
    assert_eq!(e["algorithm"], "failover");
    assert_eq!(e["all_down"], false);
    assert_eq!(e["policy"]["kind"], "fixed_order", "{e}");
    assert_eq!(e["policy"]["order"], serde_json::json!(["127.0.0.3"]));
    assert_eq!(e["records"], serde_json::json!(["127.0.0.3"]));
    assert_eq!(e["rotation"], 0);
    let why = |e: &Value, addr: &str| -> Value {
        e["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["address"] == addr)
            .cloned()
            .unwrap_or_else(|| panic!("{addr} in {e}"))
    };
    let out = why(&e, "127.0.0.2");
    assert_eq!(
        (&out["effective_status"], &out["reason"], &out["in_table"]),
        (
            &"unhealthy".into(),
            &"validation_failed".into(),
            &false.into()
        )
    );
    let inn = why(&e, "127.0.0.3");
    assert_eq!(
        (&inn["reason"], &inn["in_table"]),
        (&"healthy".into(), &true.into())
    );
    // What DNS answers is what explain says.
    let answer = (0..20)
        .find_map(|_| ask_name(dns, "app.demo.local.", RecordType::A))
        .expect("a DNS answer within 20 tries");
    assert_eq!(answer, [ip("127.0.0.3")]);

    // An override takes the last one out: the all-down policy (`all`) answers with every backend,
    // first in failover order.
    let o = "/api/v1/overwatch/backends/app.demo.local/127.0.0.3/".to_owned()
        + &port.to_string()
        + "/override";
    let (status, _) = call(
        api,
        "POST",
        &o,
        &[("Authorization", auth.as_str())],
        Some(r#"{"healthy": false}"#),
    );
    assert_eq!(status, 200);
    let e = json(explain);
    assert_eq!(e["all_down"], true, "{e}");
    assert_eq!(
        e["candidates"],
        serde_json::json!(["127.0.0.3", "127.0.0.2"])
    );
    assert_eq!(why(&e, "127.0.0.3")["reason"], "override");
    assert_eq!(e["records"], serde_json::json!(["127.0.0.3"]));
    let aaaa = json("/api/v1/dns/explain?name=app.demo.local&type=aaaa");
    assert_eq!(
        (&aaaa["answer"], &aaaa["records"]),
        (&"nodata".into(), &serde_json::json!([]))
    );

    // Geolocation: the client's region by its source address, and by Client Subnet with its scope.
    let g = json("/api/v1/dns/explain?name=geo.demo.local&client=10.1.2.3");
    let geo = &g["policy"]["geo"];
    assert_eq!(g["policy"]["kind"], "geolocation", "{g}");
    assert_eq!(
        (&geo["client_region"], &geo["default_region"]),
        (&"us".into(), &"eu".into()),
        "{g}"
    );
    assert_eq!(g["records"], serde_json::json!(["127.0.0.4"]), "{g}");
    assert_eq!(geo["ecs"]["region"], "us");
    assert_eq!(geo["ecs"]["scope_prefix"], 16, "{g}");
    let g = json("/api/v1/dns/explain?name=geo.demo.local&client=192.0.2.9");
    // Placed nowhere (region 0): the default region's records answer.
    assert_eq!(g["policy"]["geo"]["client_region_id"], 0, "{g}");
    assert_eq!(g["records"], serde_json::json!(["127.0.0.3"]), "{g}");

    // Bad input is a 400, an unknown name a 404.
    for bad in [
        "/api/v1/dns/explain",
        "/api/v1/dns/explain?name=a..b",
        "/api/v1/dns/explain?name=app.demo.local&type=MX",
        "/api/v1/dns/explain?name=app.demo.local&client=not-an-ip",
        "/api/v1/dns/explain?name=app.demo.local&color=blue",
    ] {
        let (status, body) = get(bad);
        assert_eq!(
            (status, error_of(&body).as_str()),
            (400, "bad_request"),
            "{bad}: {body}"
        );
    }
    let (status, body) = get("/api/v1/dns/explain?name=nope.demo.local");
    assert_eq!(
        (status, error_of(&body).as_str()),
        (404, "not_found"),
        "{body}"
    );

    // Validate: the listener sees a probe now, not in ten minutes.
    // First the scheduled probes of 127.0.0.3 (one per service, each within a second of start);
    // none follows for ten minutes.
    assert!(
        wait_for(Duration::from_secs(5), || probes.load(Ordering::SeqCst)
            >= 2),
        "the first probes reached the listener"
    );
    let before = probes.load(Ordering::SeqCst);
    assert_eq!(post("/api/v1/overwatch/validate", false).0, 401);
    let one =
        format!("/api/v1/overwatch/validate?service=app.demo.local&address=127.0.0.3&port={port}");
    let (status, reply) = post(&one, true);
    assert_eq!((status, &reply["count"]), (202, &1.into()), "{reply}");
    assert!(
        wait_for(Duration::from_secs(5), || probes.load(Ordering::SeqCst)
            > before),
        "a probe within 5 s of the request"
    );
    let (status, reply) = post("/api/v1/overwatch/validate", true);
    assert_eq!((status, &reply["count"]), (202, &4.into()), "{reply}");
    let (status, reply) = post("/api/v1/overwatch/validate?service=geo.demo.local", true);
    assert_eq!((status, &reply["count"]), (202, &2.into()), "{reply}");
    let (status, reply) = post(
        "/api/v1/overwatch/validate?service=app.demo.local&address=127.0.0.9",
        true,
    );
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("not_found")),
        "{reply}"
    );
    let (status, reply) = post("/api/v1/overwatch/validate?port=80", true);
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("bad_request")),
        "{reply}"
    );
}
