//! The config files of the API and operator-command tests: an overwatch serving `app.demo.local` from
//! four static backends (one IPv6), with gossip for agents and an API token, and an agent that reports
//! one more backend to it.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use super::{
    http::call,
    netns::{Proc, wait_for},
};

/// The gossip key.
pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The overwatch's `api.token`.
pub const TOKEN: &str = "api-token-0123456789";
/// The token agents of `app.demo.local` present.
pub const AGENT_TOKEN: &str = "app-token-0123456789";

/// The overwatch's config (in region `eu`): its store under `dir`, DNS on 127.0.0.1:`dns`, the API on `api`, gossip on
/// 127.0.0.1:`gossip`; `extra` goes into its `overwatch` section (YAML lines indented by two spaces).
pub fn overwatch(dir: &Path, dns: u16, api: SocketAddr, gossip: u16, extra: &str) -> String {
    format!(
        r#"mode: overwatch
logging: {{ format: text }}
overwatch:
  identity: {{ region: eu }}
  validation: {{ enabled: false }}
  gossip: {{ bind_address: "127.0.0.1:{gossip}", encryption_key: "{KEY}" }}
  agent_tokens: {{ app.demo.local: "{AGENT_TOKEN}" }}
  data_dir: {data}
{extra}dns:
  listen_address: "127.0.0.1:{dns}"
  zones: [demo.local]
  default_ttl: 5
regions:
  - name: eu
    servers:
      - {{ address: 192.0.2.1, service: app.demo.local }}
      - {{ address: 192.0.2.2, service: app.demo.local }}
      - {{ address: 192.0.2.2, port: 8080, service: app.demo.local }}
      - {{ address: "2001:db8::1", service: app.demo.local }}
domains:
  - {{ name: app.demo.local, regions: [eu], ttl: 5, max_answers: 16 }}
api:
  enabled: true
  address: "{api}"
  allowed_networks: [127.0.0.0/8, "::1/128"]
  trust_proxy_headers: true
  token: "{TOKEN}"
"#,
        data = dir.join("data").display(),
    )
}

/// An agent's config: it reports 127.0.0.1:`port` of `app.demo.local` (a TCP check every second) to
/// the overwatch gossiping on 127.0.0.1:`gossip`; its drain file and control socket under `dir`.
pub fn agent(dir: &Path, gossip: u16, port: u16) -> String {
    agent_at(dir, "127.0.0.1", port, &[format!("127.0.0.1:{gossip}")])
}

/// [`agent`] checking and reporting `address`:`port`, to every overwatch of `overwatches` (`host:port`).
pub fn agent_at(dir: &Path, address: &str, port: u16, overwatches: &[String]) -> String {
    let nodes: Vec<String> = overwatches.iter().map(|o| format!("\"{o}\"")).collect();
    format!(
        r#"mode: agent
logging: {{ format: text }}
agent:
  identity: {{ region: eu, service_token: "{AGENT_TOKEN}" }}
  backends:
    - {{ service: app.demo.local, address: {address}, port: {port}, health_check: {{ type: tcp, interval: 1s, timeout: 500ms, failure_threshold: 2, success_threshold: 1 }} }}
  gossip: {{ encryption_key: "{KEY}", overwatch_nodes: [{nodes}] }}
  drain_file: {drain}
  control_socket: {socket}
"#,
        nodes = nodes.join(", "),
        drain = dir.join("drain").display(),
        socket = dir.join("agent.sock").display(),
    )
}

/// Starts `opengslb <mode> --config <dir>/<mode>.yaml`, logging to `<dir>/<mode>.log`.
pub fn spawn(bin: &Path, dir: &Path, mode: &str) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.args([mode, "--config"])
        .arg(dir.join(format!("{mode}.yaml")));
    Proc::spawn(cmd, &dir.join(format!("{mode}.log")))
}

/// Waits up to 10 s for the overwatch's API at `api` to say it is ready; fails with `log()` if not.
pub fn wait_ready(api: SocketAddr, log: impl Fn() -> String) {
    assert!(
        wait_for(Duration::from_secs(10), || call(
            api,
            "GET",
            "/api/v1/ready",
            &[],
            None
        )
        .0 == 200),
        "ready within 10 s\n{}",
        log()
    );
}
