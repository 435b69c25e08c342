//! What the loopback labs (an overwatch and an agent on 127.0.0.1, no root) share.

use std::{path::Path, process::Command};

use super::netns::Proc;

/// The gossip key of the loopback labs.
pub const GOSSIP_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The service token of `app.demo.local`.
pub const AGENT_TOKEN: &str = "app-token-0123456789";

/// Starts `opengslb <mode> --config <dir>/<mode>.yaml`, logging to `<dir>/<mode>.log`.
pub fn spawn(bin: &Path, dir: &Path, mode: &str) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.args([mode, "--config"])
        .arg(dir.join(format!("{mode}.yaml")));
    Proc::spawn(cmd, &dir.join(format!("{mode}.log")))
}

/// Writes `<dir>/agent.yaml`: an agent in region `eu` whose one backend, `app.demo.local` at
/// 127.0.0.1:`port`, has a TCP check every second (pointed at a port that listens, it always passes),
/// reporting to the overwatch's gossip at 127.0.0.1:`gossip`; its drain file is `<dir>/drain`.
pub fn write_agent_config(dir: &Path, port: u16, gossip: u16) {
    let config = format!(
        r#"mode: agent
agent:
  identity: {{ region: eu, service_token: "{AGENT_TOKEN}" }}
  backends:
    - {{ service: app.demo.local, address: 127.0.0.1, port: {port}, health_check: {{ type: tcp, interval: 1s, timeout: 500ms, failure_threshold: 2, success_threshold: 1 }} }}
  gossip: {{ encryption_key: "{GOSSIP_KEY}", overwatch_nodes: ["127.0.0.1:{gossip}"] }}
  drain_file: {drain}
  control_socket: {socket}
"#,
        drain = dir.join("drain").display(),
        socket = dir.join("agent.sock").display(),
    );
    std::fs::write(dir.join("agent.yaml"), config).unwrap();
}
