//! SIGHUP in the agent: the config file is read again; a changed gossip key ring is applied to the
//! running node (so keys can be rotated without the agent leaving), every other change is named and
//! waits for a restart, and a file that does not load is refused with the running config kept.

use std::path::Path;

use anyhow::Context as _;
use tracing::{error, info, warn};

use crate::{
    config::{self, Config, GossipKey, Mode},
    gossip::node::Node,
};

/// What a new config changes for a running agent.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Plan {
    /// The new key ring, when it changed.
    pub ring: Option<Vec<GossipKey>>,
    /// The keys that changed but take effect only after a restart.
    pub restart: Vec<&'static str>,
}

/// Compares `new` with the config the agent runs. Only what the agent reads is compared: an agent's
/// file may carry an overwatch's sections too, which it ignores.
pub(super) fn plan(running: &Config, new: &Config) -> Plan {
    let (old, now) = (&running.agent, &new.agent);
    let ring =
        (old.gossip.key_ring() != now.gossip.key_ring()).then(|| now.gossip.key_ring().to_vec());
    let restart = [
        ("agent.identity", old.identity != now.identity),
        ("agent.backends", old.backends != now.backends),
        (
            "agent.gossip.overwatch_nodes",
            old.gossip.overwatch_nodes != now.gossip.overwatch_nodes,
        ),
        ("agent.heartbeat", old.heartbeat != now.heartbeat),
        ("agent.predictive", old.predictive != now.predictive),
        ("agent.drain_file", old.drain_file != now.drain_file),
        ("agent.maintenance", old.maintenance != now.maintenance),
        (
            "agent.control_socket",
            old.control_socket != now.control_socket,
        ),
        ("metrics", running.metrics != new.metrics),
        ("logging", running.logging != new.logging),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect();
    Plan { ring, restart }
}

/// Reads the config at `path` as the agent runs it: validated in agent mode, private to its owner.
fn load(path: &Path) -> anyhow::Result<Config> {
    let mut cfg = Config::load(path).with_context(|| format!("config {}", path.display()))?;
    if cfg.mode != Mode::Agent {
        // `opengslb --config FILE --mode agent` runs a file of another mode as an agent; this process
        // is an agent whatever the file says, so the file must hold as an agent's.
        cfg.mode = Mode::Agent;
        cfg.validate()
            .with_context(|| format!("config {} read as an agent's", path.display()))?;
    }
    config::check_file_mode(path, &cfg)?;
    Ok(cfg)
}

/// SIGHUP: re-reads `path` (none: the process runs no file) and applies what can be applied to the
/// running agent. `running` follows what runs: the new ring once applied, nothing else, so that a
/// later SIGHUP names a change that still waits for a restart again.
pub(super) fn on_sighup(path: Option<&Path>, running: &mut Config, node: &Node) {
    let Some(path) = path else {
        warn!("SIGHUP: no config file to re-read");
        return;
    };
    let new = match load(path) {
        Ok(new) => new,
        Err(e) => {
            error!(
                error = format!("{e:#}"),
                "SIGHUP: the new config is refused; keeping the running one"
            );
            return;
        }
    };
    let plan = plan(running, &new);
    if !plan.restart.is_empty() {
        warn!(
            keys = %plan.restart.join(", "),
            "SIGHUP: changes to these keys need a restart of the agent (it leaves and rejoins); applying the gossip key ring only"
        );
    }
    match plan.ring {
        Some(ring) => match node.set_keys(&ring) {
            Ok(()) => {
                running.agent.gossip.encryption_key = new.agent.gossip.encryption_key;
                running.agent.gossip.encryption_keys = new.agent.gossip.encryption_keys;
                info!(
                    keys = ring.len(),
                    "SIGHUP: gossip key ring applied: the first key seals, every key opens"
                );
            }
            Err(e) => error!(error = %e, "SIGHUP: the gossip key ring could not be applied"),
        },
        None if plan.restart.is_empty() => info!("SIGHUP: config unchanged"),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "HxgZGhscHR4fEBESExQVFhcICQoLDA0ODwABAgMEBQY=";

    fn agent(gossip_keys: &str, port: u16, extra: &str) -> Config {
        Config::from_yaml_str(&format!(
            "mode: agent
agent:
  identity: {{ service_token: \"app-token-0123456789\" }}
  backends: [{{ service: app.example.com, address: 127.0.0.1, port: {port} }}]
  gossip: {{ {gossip_keys}, overwatch_nodes: [\"127.0.0.1:7946\"] }}
{extra}"
        ))
        .expect("agent config")
    }

    fn key(k: &str) -> GossipKey {
        GossipKey::from_base64(k).expect("key")
    }

    #[test]
    fn only_the_key_ring_is_live_and_every_other_change_is_named() {
        let one = agent(&format!("encryption_key: \"{K1}\""), 80, "");
        assert_eq!(plan(&one, &one), Plan::default());
        // The same ring, written as a list.
        let listed = agent(&format!("encryption_keys: [\"{K1}\"]"), 80, "");
        assert_eq!(plan(&one, &listed), Plan::default());
        let two = agent(&format!("encryption_keys: [\"{K1}\", \"{K2}\"]"), 80, "");
        assert_eq!(
            plan(&one, &two),
            Plan {
                ring: Some(vec![key(K1), key(K2)]),
                restart: vec![]
            }
        );
        let other = agent(
            &format!("encryption_keys: [\"{K2}\", \"{K1}\"]"),
            81,
            "  drain_file: /tmp/other-drain\nmetrics: { enabled: true }\n",
        );
        assert_eq!(
            plan(&two, &other),
            Plan {
                ring: Some(vec![key(K2), key(K1)]),
                restart: vec!["agent.backends", "agent.drain_file", "metrics"]
            }
        );
        // An overwatch's sections in the file are not the agent's business.
        let with_dns = agent(
            &format!("encryption_key: \"{K1}\""),
            80,
            "dns: { zones: [example.com] }\n",
        );
        assert_eq!(plan(&one, &with_dns), Plan::default());
    }
}
