//! The demo's network: one namespace per host, each with an `eth0` on 10.20.0.0/24, and a Linux bridge
//! joining them in a namespace of its own, so nothing is added to the root namespace. Everything is named
//! `ogsdemo-<pid>-…`, which lets a later run find and remove what a crashed one left.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// What every name (namespaces, the run's temp dir, its bpffs dir) starts with, then `-<pid>`.
pub const PREFIX: &str = "ogsdemo";

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";

/// The bridge's namespace, among the hosts' ones.
const BRIDGE: &str = "bridge";

/// `ogsdemo-<pid>`: the run's own name.
pub fn run_name(pid: u32) -> String {
    format!("{PREFIX}-{pid}")
}

/// The namespaces of one run, deleted on drop (the bridge's last: deleting it removes every veth).
pub struct Network {
    run: String,
    created: Vec<String>,
}

impl Network {
    /// Creates the bridge namespace and one namespace per `(host, address)`, each host's `eth0` a veth
    /// whose other end is a port of the bridge.
    pub fn create(pid: u32, hosts: &[(&str, Ipv4Addr)]) -> Result<Self> {
        let mut net = Self {
            run: run_name(pid),
            created: Vec::new(),
        };
        let br = net.add(BRIDGE)?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for &(host, addr) in hosts {
            let ns = net.add(host)?;
            // The bridge's end carries the host's name: the namespace is ours, so it collides with nothing.
            ip(&[
                "-n", &br, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", host, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn add(&mut self, host: &str) -> Result<String> {
        let ns = format!("{}-{host}", self.run);
        ip(&["netns", "add", &ns])?;
        self.created.push(ns.clone());
        Ok(ns)
    }

    /// The `/run/netns` file of a host's namespace, for setns().
    pub fn path(&self, host: &str) -> PathBuf {
        Path::new(NETNS_DIR).join(format!("{}-{host}", self.run))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Hosts first, the bridge (created first) last.
        for ns in self.created.iter().rev() {
            delete(ns);
        }
    }
}

/// Runs `ip args...`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Kills whatever still runs in the namespace (a crashed run's processes outlive it there), then
/// deletes it.
pub fn delete(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        let me = std::process::id();
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .filter(|&p| p != me)
        {
            // SAFETY: kill has no memory-safety preconditions; the pid runs in our namespace.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
}

/// The namespaces of the run `pid` that exist.
pub fn namespaces_of(pid: u32) -> Vec<String> {
    let ours = format!("{}-", run_name(pid));
    names(Path::new(NETNS_DIR))
        .into_iter()
        .filter(|n| n.starts_with(&ours))
        .collect()
}

/// The names in `dir` (none if it cannot be read).
fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the run `pid` still goes on: its process exists and is an xtask (a pid reused by something
/// else does not keep a dead run's leftovers).
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "xtask")
}

/// The pid in `<prefix>-<pid>[-…]` (`ogsdemo-…`), if `name` is one of a run's.
fn owner(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    rest.split('-').next()?.parse().ok()
}

/// Removes the namespaces, temp dirs and bpffs dirs named `<prefix>-<pid>…` of runs that are no longer
/// running; returns what it removed.
pub fn remove_leftovers(prefix: &str, temp: &Path, bpffs: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let dead = |name: &str| owner(prefix, name).is_some_and(|pid| !running(pid));
    for ns in names(Path::new(NETNS_DIR)) {
        if dead(&ns) {
            delete(&ns);
            removed.push(format!("namespace {ns}"));
        }
    }
    for dir in [temp, bpffs] {
        for name in names(dir) {
            if dead(&name) && fs::remove_dir_all(dir.join(&name)).is_ok() {
                removed.push(dir.join(&name).display().to_string());
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_have_an_owner() {
        assert_eq!(owner(PREFIX, "ogsdemo-123-webapp2"), Some(123));
        assert_eq!(owner(PREFIX, "ogsdemo-123"), Some(123));
        assert_eq!(owner(PREFIX, "ogsdemo-x-webapp2"), None);
        assert_eq!(owner(PREFIX, "ogsdemox-1"), None);
        assert_eq!(owner(PREFIX, "ogs-123-d2o"), None);
        assert_eq!(owner("ogsbench", "ogsbench-77-srv"), Some(77));
    }
}
