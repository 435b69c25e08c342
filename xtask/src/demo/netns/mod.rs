//! The docker-free twin of Demo 2: the same five hosts and addresses in network namespaces this command
//! creates, joined by a bridge in a namespace of its own; real nginx and an agent in each webapp, the
//! overwatch with XDP on its eth0, and a client resolving and fetching all along while three scenarios
//! take webapp2 out of DNS and back. See docs/demo.md.

mod client;
mod hosts;
pub(crate) mod net;
pub(crate) mod node;
pub(crate) mod process;
mod report;
mod scenarios;
pub(crate) mod stop;

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use xtask::{cargo, exec, is_root, target_dir, which};

use client::{Client, Records as _};
use net::Network;
use node::Node;
use process::Proc;
use report::{Figures, Timeline};

/// The hosts, as in the docker demo.
const OVERWATCH: &str = "overwatch";
const WEBAPPS: [&str; 3] = ["webapp1", "webapp2", "webapp3"];
const CLIENT: &str = "client";
const HOSTS: [(&str, Ipv4Addr); 5] = [
    (OVERWATCH, Ipv4Addr::new(10, 20, 0, 10)),
    (WEBAPPS[0], Ipv4Addr::new(10, 20, 0, 21)),
    (WEBAPPS[1], Ipv4Addr::new(10, 20, 0, 22)),
    (WEBAPPS[2], Ipv4Addr::new(10, 20, 0, 23)),
    (CLIENT, Ipv4Addr::new(10, 20, 0, 100)),
];
/// The name Demo 2 serves.
const APP: &str = "app.demo.local";
/// Where bpffs is mounted; the overwatch pins under a directory of the run's there.
const BPFFS: &str = "/sys/fs/bpf";
/// The bound of every wait for something the demo expects.
const STEP: Duration = Duration::from_secs(30);

/// Builds (or takes) opengslb, runs the demo, prints the timeline and the table, and with `json` the
/// figures as one JSON object on stdout.
pub fn run(root: &Path, opengslb: Option<&Path>, json: bool) -> Result<()> {
    if !is_root() {
        bail!(
            "xtask demo must run as root: it creates network namespaces and mounts, and attaches XDP \
             (try `sudo -E cargo xtask demo`)"
        );
    }
    let bin = match opengslb {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("--opengslb {}", p.display()))?,
        None => {
            crate::setup::ensure()?;
            exec(cargo(root).args(["build", "--release", "--package", "opengslb"]))?;
            target_dir(root).join("release").join("opengslb")
        }
    };
    let nginx =
        which("nginx").context("nginx not found: `cargo xtask setup` installs nginx-light")?;
    which("ip").context("ip not found: install iproute2")?;
    let config = root.join(super::DEMO_DIR).join("config");
    let read = |name: &str| {
        fs::read_to_string(config.join(name))
            .with_context(|| format!("reading {}", config.join(name).display()))
    };
    let (overwatch_yaml, agent_yaml) = (read("overwatch.yaml")?, read("agent.yaml")?);

    stop::install()?;
    let temp = std::env::temp_dir();
    for gone in net::remove_leftovers(net::PREFIX, &temp, Path::new(BPFFS)) {
        eprintln!("removed what a crashed run left: {gone}");
    }
    // The overwatch's data_dir is a mount point in each host; an empty directory here is all it needs.
    fs::create_dir_all("/var/lib/opengslb").context("creating /var/lib/opengslb")?;

    let pid = std::process::id();
    let mut demo = Demo {
        pid,
        timeline: Timeline::new(Instant::now()),
        bin,
        nginx,
        bpffs: Path::new(BPFFS).join(net::run_name(pid)),
        run_dir: temp.join(net::run_name(pid)),
        client: None,
        procs: Vec::new(),
        nodes: Vec::new(),
        net: None,
    };
    let played = demo.play(&overwatch_yaml, &agent_yaml);
    let played = played.map_err(|e| {
        if stop::requested() {
            return e;
        }
        let tails: String = demo
            .procs
            .iter()
            .map(|p| {
                format!(
                    "\n--- {} ({}), last lines:\n{}",
                    p.label,
                    p.log.display(),
                    p.tail(15)
                )
            })
            .collect();
        anyhow::anyhow!("{e:#}{tails}")
    });
    drop(demo);
    let figures = played?;
    figures.print();
    if json {
        println!("{}", figures.json());
    }
    Ok(())
}

/// A run: what it created, each piece removed on drop, in order.
struct Demo {
    pid: u32,
    timeline: Timeline,
    bin: PathBuf,
    nginx: PathBuf,
    bpffs: PathBuf,
    run_dir: PathBuf,
    client: Option<Client>,
    procs: Vec<Proc>,
    nodes: Vec<Node>,
    net: Option<Network>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut c) = self.client.take() {
            let _ = c.stop();
        }
        process::stop_all(&mut self.procs);
        self.nodes.clear();
        // Deleting the bridge's namespace removes every veth with it.
        self.net = None;
        let _ = fs::remove_dir_all(&self.bpffs);
        let _ = fs::remove_dir_all(&self.run_dir);
        if self.procs.is_empty() {
            return;
        }
        let mut left = net::namespaces_of(self.pid);
        left.extend(
            [&self.bpffs, &self.run_dir]
                .into_iter()
                .filter(|p| p.exists())
                .map(|p| p.display().to_string()),
        );
        if left.is_empty() {
            self.timeline
                .note("stopped; namespaces, bpffs pins and the temp dir removed");
        } else {
            self.timeline.note(&format!(
                "stopped, but could not remove: {}",
                left.join(", ")
            ));
        }
    }
}

impl Demo {
    /// Builds the hosts, starts everything, runs the scenarios; the figures.
    fn play(&mut self, overwatch_yaml: &str, agent_yaml: &str) -> Result<Figures> {
        let xdp = self.start(overwatch_yaml, agent_yaml)?;
        let scenarios = self.scenarios()?;

        let mut client = self.client.take().expect("started above");
        client.stop()?;
        // After the client's last query, so the count covers every one it made.
        let xdp_answered = self.xdp_answered();
        let r = client.records();
        let webapps: Vec<Ipv4Addr> = WEBAPPS.iter().map(|w| self.node(w).addr).collect();
        Ok(Figures {
            scenarios,
            requests: r.len(),
            failed: r.iter().filter(|r| !r.ok).count(),
            unanswered: r.iter().filter(|r| r.answer.is_empty()).count(),
            foreign: r
                .iter()
                .filter(|r| r.answer.iter().any(|a| !webapps.contains(a)))
                .count(),
            xdp,
            xdp_answered,
            duration: self.timeline.now(),
        })
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("a host of the demo")
    }

    fn proc(&mut self, label: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.label == label)
            .expect("a process of the demo")
    }

    /// Runs `f` on a thread in the client's namespace.
    fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        self.node(CLIENT).enter(f)
    }

    /// `GET path` from the overwatch's API, from the client, as JSON.
    fn api(&self, path: &'static str) -> Result<Value> {
        let api = SocketAddr::from((self.node(OVERWATCH).addr, 8080));
        let (status, body) = self
            .in_client(move || client::get(api, &api.ip().to_string(), path))?
            .with_context(|| format!("no answer from http://{api}{path}"))?;
        if status != 200 {
            bail!("http://{api}{path}: {status} {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("http://{api}{path}: {body}"))
    }

    /// Waits until `done`, every 50 ms, for at most [`STEP`]; fails at once on Ctrl-C, when a process
    /// exits on its own, or when the client loop has ended.
    fn wait(&mut self, what: &str, mut done: impl FnMut(&Self) -> Result<bool>) -> Result<()> {
        let deadline = Instant::now() + STEP;
        loop {
            stop::check()?;
            for p in &mut self.procs {
                p.check()?;
            }
            if let Some(c) = &mut self.client
                && !c.running()
            {
                c.stop()?;
                bail!("the client loop reached its bounds before the demo ended");
            }
            if done(self)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{what}: not within {STEP:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client's records (it runs from its start until the figures are taken).
    fn records(&self) -> std::sync::MutexGuard<'_, Vec<client::Record>> {
        self.client.as_ref().expect("the client runs").records()
    }

    /// Whether every webapp was answered within the last second.
    fn all_answered(&self) -> bool {
        let now = self.timeline.now();
        let seen = self
            .records()
            .answered(now.saturating_sub(Duration::from_secs(1)));
        WEBAPPS.iter().all(|w| seen.contains(&self.node(w).addr))
    }
}
