//! The commands: each asks the API, then prints its JSON (`--json`) or a table made from it.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    ApiArgs, BackendArgs,
    client::{Client, Failure},
    reply,
    table::{Table, age},
};

/// Writes to stdout. Errors are dropped: the usual one is a closed pipe (`opengslb backends | head`),
/// where `println!` would panic.
pub fn print(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The API's JSON, pretty.
pub fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print(&format!("{text}\n"));
}

/// GETs `path` and prints it: as it came with `--json`, else as `render` shows it.
pub fn show<T: DeserializeOwned>(
    args: &ApiArgs,
    path: &[&str],
    query: &[(&str, &str)],
    render: impl FnOnce(&T) -> String,
) -> Result<(), Failure> {
    let reply = Client::new(args)?.get(path, query)?;
    if args.json {
        print_json(&reply.body);
    } else {
        print(&render(&reply.typed()?));
    }
    Ok(())
}

pub fn status(args: &ApiArgs) -> Result<(), Failure> {
    let client = Client::new(args)?;
    // 503 is how /ready says "not yet": an answer to show, not an error.
    let ready = client.call(
        Method::GET,
        &["ready"],
        &[],
        None,
        None,
        &[StatusCode::SERVICE_UNAVAILABLE],
    )?;
    let version = client.get(&["version"], &[])?;
    let stats = client.get(&["overwatch", "stats"], &[])?;
    let not_ready = (!ready.status.is_success()).then(|| Failure::Api {
        method: Method::GET,
        url: ready.url.clone(),
        status: ready.status,
        code: "not_ready".to_owned(),
        message: ready.body["message"]
            .as_str()
            .unwrap_or("not ready")
            .to_owned(),
        hint: String::new(),
    });
    if args.json {
        print_json(&json!({"ready": ready.body, "version": version.body, "stats": stats.body}));
    } else {
        let text = render_status(
            &client.base(),
            &ready.typed()?,
            &version.typed()?,
            &stats.typed()?,
        );
        print(&text);
    }
    not_ready.map_or(Ok(()), Err)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn render_status(
    api: &str,
    ready: &reply::Ready,
    version: &reply::Version,
    s: &reply::Stats,
) -> String {
    let mut t = Table::new(&[]);
    t.row(["api", api]);
    let readiness = match &ready.message {
        Some(m) if !ready.ready => format!("no: {m} (xdp {})", ready.xdp),
        _ => format!("{} (xdp {})", yes_no(ready.ready), ready.xdp),
    };
    t.row(["ready", &readiness]);
    t.row([
        "version",
        &format!("{} ({})", version.version, version.platform),
    ]);
    t.row([
        "backends",
        &format!(
            "{} in {} services: {} healthy, {} unhealthy, {} stale, {} draining",
            s.total_backends,
            s.unique_services,
            s.healthy_backends,
            s.unhealthy_backends,
            s.stale_backends,
            s.draining_backends
        ),
    ]);
    t.row(["overrides", &s.active_overrides.to_string()]);
    t.row(["agents", &format!("{} alive", s.active_agents)]);
    let validation = if s.validation_enabled {
        format!(
            "on: {} backends probed, {} disagree with their agent",
            s.validated_backends, s.disagreement_count
        )
    } else {
        "off".to_owned()
    };
    t.row(["validation", &validation]);
    let all_down = if s.names_all_down.is_empty() {
        "none".to_owned()
    } else {
        s.names_all_down.join(", ")
    };
    t.row(["all down", &all_down]);
    t.render()
}

pub fn servers(args: &ApiArgs) -> Result<(), Failure> {
    show(args, &["servers"], &[], render_servers)
}

fn render_servers(r: &reply::Servers) -> String {
    if r.servers.is_empty() {
        return "no servers configured\n".to_owned();
    }
    let mut t = Table::new(&["SERVICE", "ADDRESS", "PORT", "WEIGHT", "REGION", "SOURCE"]);
    for s in &r.servers {
        t.row([
            s.service.as_str(),
            &s.address,
            &s.port.to_string(),
            &s.weight.to_string(),
            &s.region,
            &s.source,
        ]);
    }
    t.render()
}

pub fn backends(
    args: &ApiArgs,
    service: Option<String>,
    region: Option<String>,
    status: Option<String>,
) -> Result<(), Failure> {
    let query: Vec<(&str, &str)> = [
        ("service", service.as_deref()),
        ("region", region.as_deref()),
        ("status", status.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
    .collect();
    let filtered = !query.is_empty();
    show(args, &["overwatch", "backends"], &query, |r| {
        render_backends(r, filtered)
    })
}

/// An override as one cell: `out: maintenance (alice)`.
fn override_cell(healthy: bool, reason: &str, by: &str) -> String {
    let state = if healthy { "in" } else { "out" };
    match (reason.is_empty(), by.is_empty()) {
        (true, true) => state.to_owned(),
        (true, false) => format!("{state} ({by})"),
        (false, true) => format!("{state}: {reason}"),
        (false, false) => format!("{state}: {reason} ({by})"),
    }
}

fn render_backends(r: &reply::Backends, filtered: bool) -> String {
    if r.backends.is_empty() {
        let what = if filtered {
            "no backend matches"
        } else {
            "no backends"
        };
        return format!("{what}\n");
    }
    let mut t = Table::new(&[
        "SERVICE",
        "ADDRESS",
        "PORT",
        "REGION",
        "SOURCE",
        "STATUS",
        "REASON",
        "AGENT",
        "LAST SEEN",
        "OVERRIDE",
    ]);
    for b in &r.backends {
        let seen = b
            .agent_last_seen
            .as_deref()
            .map(|at| age(at, &r.generated_at))
            .unwrap_or_default();
        let over = b
            .override_status
            .as_deref()
            .map(|s| {
                override_cell(
                    s == "healthy",
                    b.override_reason.as_deref().unwrap_or_default(),
                    b.override_by.as_deref().unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        t.row([
            b.service.as_str(),
            &b.address,
            &b.port.to_string(),
            &b.region,
            &b.source,
            &b.effective_status,
            &b.reason,
            // The id's tail is a digest of the agent's token: `agents` shows it, here it only widens
            // the table.
            b.agent_id
                .as_deref()
                .map_or("", |id| id.split_once('@').map_or(id, |(name, _)| name)),
            &seen,
            &over,
        ]);
    }
    t.render()
}

fn override_path(b: &BackendArgs) -> [String; 6] {
    [
        "overwatch".to_owned(),
        "backends".to_owned(),
        b.service.clone(),
        b.address.to_string(),
        b.port.to_string(),
        "override".to_owned(),
    ]
}

/// Sends a change and prints what the API says of it.
fn change(
    args: &ApiArgs,
    method: Method,
    path: &[String],
    body: Option<&Value>,
    user: Option<&str>,
    note: &str,
) -> Result<(), Failure> {
    let client = Client::new(args)?;
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let r = client.call(method, &path, &[], body, user, &[])?;
    if args.json {
        print_json(&r.body);
    } else {
        let done: reply::Done = r.typed()?;
        print(&format!("{}{note}\n", done.message));
    }
    Ok(())
}

pub fn override_set(
    args: &ApiArgs,
    backend: &BackendArgs,
    healthy: bool,
    reason: &str,
    by: Option<&str>,
) -> Result<(), Failure> {
    let note = if healthy {
        ": in DNS whatever its checks say, until cleared"
    } else {
        ": out of DNS until cleared"
    };
    let body = json!({"healthy": healthy, "reason": reason});
    change(
        args,
        Method::POST,
        &override_path(backend),
        Some(&body),
        by,
        note,
    )
}

pub fn override_clear(args: &ApiArgs, backend: &BackendArgs) -> Result<(), Failure> {
    let note = ": its checks decide again";
    change(
        args,
        Method::DELETE,
        &override_path(backend),
        None,
        None,
        note,
    )
}

pub fn override_list(args: &ApiArgs) -> Result<(), Failure> {
    show(args, &["overrides"], &[], render_overrides)
}

fn render_overrides(r: &reply::Overrides) -> String {
    if r.overrides.is_empty() {
        return "no overrides\n".to_owned();
    }
    let mut t = Table::new(&["SERVICE", "ADDRESS", "PORT", "OVERRIDE", "SET"]);
    for o in &r.overrides {
        t.row([
            o.service.as_str(),
            &o.address,
            &o.port.to_string(),
            &override_cell(o.healthy, &o.reason, &o.by),
            &age(&o.at, &r.generated_at),
        ]);
    }
    t.render()
}

pub fn domains(args: &ApiArgs) -> Result<(), Failure> {
    show(args, &["domains"], &[], render_domains)
}

fn render_domains(r: &reply::Domains) -> String {
    if r.domains.is_empty() {
        return "no domains\n".to_owned();
    }
    let mut t = Table::new(&[
        "NAME",
        "ALGORITHM",
        "REGIONS",
        "TTL",
        "MAX ANSWERS",
        "ALL DOWN",
        "SOURCE",
    ]);
    for d in &r.domains {
        t.row([
            d.name.as_str(),
            &d.routing_algorithm,
            &d.regions.join(","),
            &d.ttl.map_or("default".to_owned(), |t| t.to_string()),
            &d.max_answers.to_string(),
            d.all_down.as_deref().unwrap_or("default"),
            &d.source,
        ]);
    }
    t.render()
}

pub fn agents(args: &ApiArgs) -> Result<(), Failure> {
    show(args, &["overwatch", "agents"], &[], render_agents)
}

fn render_agents(r: &reply::Agents) -> String {
    if r.agents.is_empty() {
        return if r.gossip_enabled {
            "no agent has reported\n".to_owned()
        } else {
            "no agents: gossip is off on this overwatch (overwatch.gossip)\n".to_owned()
        };
    }
    let mut t = Table::new(&[
        "NAME",
        "ID",
        "STATE",
        "ADDRESS",
        "BACKENDS",
        "LAST REPORT",
        "SIGNALS",
    ]);
    for a in &r.agents {
        let s = &a.signals;
        let signals: Vec<String> = [
            ("cpu", s.cpu_percent, "%"),
            ("mem", s.memory_percent, "%"),
            ("errors", s.error_rate, ""),
        ]
        .into_iter()
        .filter_map(|(k, v, unit)| v.map(|v| format!("{k} {v:.1}{unit}")))
        .collect();
        t.row([
            a.name.as_str(),
            &a.id,
            &a.state,
            &a.address,
            &a.backends.to_string(),
            &age(&a.last_report, &r.generated_at),
            &signals.join(", "),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn backends_show_the_agent_its_age_and_the_override() {
        let r: reply::Backends = parse(json!({
            "generated_at": "2026-01-01T10:00:10.000Z",
            "count": 2,
            "backends": [
                {"service": "app.demo.local", "address": "192.0.2.1", "port": 80, "weight": 100,
                 "region": "eu", "source": "static", "effective_status": "unhealthy",
                 "reason": "override", "override_status": "unhealthy",
                 "override_reason": "maintenance", "override_by": "alice",
                 "override_at": "2026-01-01T10:00:00.000Z"},
                {"service": "app.demo.local", "address": "2001:db8::1", "port": 8080, "weight": 100,
                 "region": "eu", "source": "agent", "effective_status": "healthy",
                 "reason": "healthy", "agent_id": "web1@0a1b", "agent_healthy": true,
                 "agent_last_seen": "2026-01-01T10:00:07.000Z"}
            ]
        }));
        assert_eq!(
            render_backends(&r, false),
            "\
SERVICE         ADDRESS      PORT  REGION  SOURCE  STATUS     REASON    AGENT  LAST SEEN  OVERRIDE
app.demo.local  192.0.2.1    80    eu      static  unhealthy  override  -      -          out: maintenance (alice)
app.demo.local  2001:db8::1  8080  eu      agent   healthy    healthy   web1   3s ago     -
"
        );
        let none: reply::Backends =
            parse(json!({"generated_at": "2026-01-01T10:00:10.000Z", "backends": []}));
        assert_eq!(render_backends(&none, true), "no backend matches\n");
    }

    #[test]
    fn status_sums_up_readiness_version_and_counts() {
        let ready: reply::Ready = parse(json!({"ready": false, "message": "XDP is being attached",
            "dns_ready": true, "health_ready": true, "xdp": "pending"}));
        let version: reply::Version =
            parse(json!({"version": "0.1.0", "platform": "linux/x86_64", "generated_at": "x"}));
        let stats: reply::Stats = parse(json!({
            "total_backends": 4, "healthy_backends": 3, "unhealthy_backends": 1,
            "stale_backends": 0, "draining_backends": 0, "active_overrides": 1,
            "validation_enabled": false, "validated_backends": 0, "disagreement_count": 0,
            "active_agents": 2, "unique_services": 1, "backends_by_service": {},
            "backends_by_region": {}, "names_all_down": ["down.demo.local"]
        }));
        let text = render_status("http://127.0.0.1:8080/", &ready, &version, &stats);
        assert_eq!(
            text,
            "\
api         http://127.0.0.1:8080/
ready       no: XDP is being attached (xdp pending)
version     0.1.0 (linux/x86_64)
backends    4 in 1 services: 3 healthy, 1 unhealthy, 0 stale, 0 draining
overrides   1
agents      2 alive
validation  off
all down    down.demo.local
"
        );
    }

    #[test]
    fn domains_say_default_where_the_config_leaves_it() {
        let r: reply::Domains = parse(json!({"count": 1, "domains": [{
            "name": "app.demo.local", "routing_algorithm": "round-robin", "regions": ["eu", "us"],
            "ttl": null, "max_answers": 8, "all_down": null, "source": "config",
            "latency_config": {}
        }]}));
        assert_eq!(
            render_domains(&r),
            "\
NAME            ALGORITHM    REGIONS  TTL      MAX ANSWERS  ALL DOWN  SOURCE
app.demo.local  round-robin  eu,us    default  8            default   config
"
        );
    }

    #[test]
    fn agents_without_gossip_say_so() {
        let r: reply::Agents = parse(json!({"agents": [], "count": 0, "gossip_enabled": false,
            "generated_at": "2026-01-01T10:00:10.000Z"}));
        assert!(render_agents(&r).contains("gossip is off"));
    }
}
