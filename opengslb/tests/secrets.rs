//! Secrets never leave the process: an overwatch and an agent run at debug level with a gossip key, an API
//! token and an agent token; the agent joins and reports, API changes are made with the token and refused
//! with a wrong one, the overwatch reloads its config; then neither log, nor the overwatch's metrics, nor
//! any API answer or the status page holds a secret, in any of the forms it takes (as written, decoded,
//! as hex). Userspace only, on loopback: no root needed.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    time::Duration,
};

use base64::Engine as _;
use common::{
    http::call,
    labs::{self, AGENT_TOKEN, KEY, TOKEN},
    netns::{Proc, TempDir, wait_for},
};

/// A token a client wrongly sends: it must not be echoed either.
const WRONG_TOKEN: &str = "wrong-token-9876543210";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_opengslb"))
}

fn spawn(dir: &Path, mode: &str) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.args(["--log-level", "debug", mode, "--config"])
        .arg(dir.join(format!("{mode}.yaml")));
    Proc::spawn(cmd, &dir.join(format!("{mode}.log")))
}

/// Every form a secret could leak in.
fn forms() -> Vec<(String, String)> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .expect("the key is base64");
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![
        ("the gossip key".to_owned(), KEY.to_owned()),
        ("the gossip key in hex".to_owned(), hex.clone()),
        ("the gossip key in HEX".to_owned(), hex.to_uppercase()),
        (
            "the gossip key's bytes as a list".to_owned(),
            format!("{:?}", &key[..8]).trim_end_matches(']').to_owned(),
        ),
        ("the API token".to_owned(), TOKEN.to_owned()),
        ("the agent token".to_owned(), AGENT_TOKEN.to_owned()),
        ("a wrong token".to_owned(), WRONG_TOKEN.to_owned()),
    ];
    // Base64 of the tokens, as a Basic or re-encoded header would carry them.
    for t in [TOKEN, AGENT_TOKEN] {
        out.push((
            format!("{t} in base64"),
            base64::engine::general_purpose::STANDARD.encode(t),
        ));
    }
    out
}

#[test]
fn secrets_never_appear_in_logs_metrics_or_api_output() {
    let dir = TempDir::new("secrets");
    let api = SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port()));
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port()));
    let (dns, gossip) = (common::free_port(), common::free_port());
    let overwatch = format!(
        "{}metrics: {{ enabled: true, address: \"{metrics}\" }}\n",
        labs::overwatch(&dir.0, dns, api, gossip, "")
    );
    common::write_private(&dir.0.join("overwatch.yaml"), &overwatch);
    let _ow = spawn(&dir.0, "overwatch");
    let log = |name: &str| std::fs::read_to_string(dir.0.join(name)).unwrap_or_default();
    labs::wait_ready(api, || log("overwatch.log"));
    common::write_private(
        &dir.0.join("agent.yaml"),
        &labs::agent(&dir.0, gossip, api.port()),
    );
    let _agent = spawn(&dir.0, "agent");
    let get = |path: &str| call(api, "GET", path, &[], None);
    assert!(
        wait_for(Duration::from_secs(15), || {
            get("/api/v1/overwatch/agents").1.contains("\"alive\"")
        }),
        "the agent joined\n{}\n{}",
        log("overwatch.log"),
        log("agent.log")
    );

    // Changes with the token, and refused without it or with a wrong one.
    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {WRONG_TOKEN}");
    let path = "/api/v1/overwatch/backends/app.demo.local/192.0.2.1/80/override";
    let body = r#"{"healthy": false, "reason": "maintenance"}"#;
    assert_eq!(
        call(api, "POST", path, &[("Authorization", &bearer)], Some(body)).0,
        200
    );
    for auth in [&wrong[..], WRONG_TOKEN, ""] {
        let (status, answer) = call(api, "POST", path, &[("Authorization", auth)], Some(body));
        assert_eq!(status, 401, "{auth:?}: {answer}");
    }
    assert_eq!(
        call(api, "DELETE", path, &[("Authorization", &bearer)], None).0,
        200
    );
    // A reload re-reads the file with the secrets.
    let pid = _ow.child.as_ref().expect("running").id();
    // SAFETY: kill on a child we have not reaped.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    assert!(
        wait_for(Duration::from_secs(10), || log("overwatch.log")
            .contains("SIGHUP: config reloaded")),
        "{}",
        log("overwatch.log")
    );

    // Everything the processes said.
    let mut seen: Vec<(String, String)> = vec![
        ("the overwatch's log".into(), log("overwatch.log")),
        ("the agent's log".into(), log("agent.log")),
        (
            "the overwatch's metrics".into(),
            call(metrics, "GET", "/metrics", &[], None).1,
        ),
    ];
    let openapi = get("/api/v1/openapi.json").1;
    let doc: serde_json::Value = serde_json::from_str(&openapi).expect("the OpenAPI document");
    let agents: serde_json::Value =
        serde_json::from_str(&get("/api/v1/overwatch/agents").1).expect("agents");
    let agent_id = agents["agents"][0]["id"]
        .as_str()
        .unwrap_or("none")
        .to_owned();
    let mut paths = vec!["/".to_owned(), "/status.js".to_owned()];
    for p in doc["paths"].as_object().expect("paths").keys() {
        let p = p
            .replace("{service}", "app.demo.local")
            .replace("{address}", "192.0.2.1")
            .replace("{port}", "80")
            .replace("{name}", "app.demo.local")
            .replace("{id}", &agent_id)
            .replace("{cidr}", "10.0.0.0%2F8");
        paths.push(format!("/api/v1{p}"));
    }
    for p in &paths {
        for auth in [&bearer[..], ""] {
            let (status, body) = call(api, "GET", p, &[("Authorization", auth)], None);
            assert_ne!(status, 0, "GET {p} answered");
            seen.push((format!("GET {p}"), body));
        }
    }
    println!(
        "checked {} outputs ({} API paths), {} bytes",
        seen.len(),
        paths.len(),
        seen.iter().map(|(_, t)| t.len()).sum::<usize>()
    );
    assert!(
        log("overwatch.log").contains("DEBUG"),
        "the overwatch logged at debug level"
    );
    for (what, text) in &seen {
        for (name, form) in forms() {
            assert!(!text.contains(&form), "{what} holds {name}:\n{text}");
        }
    }
}
