//! The servers the bench measures, one entry each: how to start one in the server's namespace, pinned
//! to CPU 0, how to know it is ready, and which runs it takes part in. Every server serves the same
//! zone and answer: `www.bench.test`, three A records, TTL 60, no EDNS in the queries.

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::lab::{Lab, SERVER_IP};
use super::{load, xdp};
use crate::demo::netns::{process::Proc, stop};

/// The three addresses every server answers with.
pub const RECORDS: [&str; 3] = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
/// How long a server may take to be ready.
const READY: Duration = Duration::from_secs(30);

/// What a server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The `opengslb` overwatch; with XDP attached in this `dns.xdp.mode`, or userspace only.
    Ours(Option<&'static str>),
    /// knotd with UDP sockets (1 worker), or in XDP mode.
    Knot { xdp: bool },
    /// The minimal XDP_TX responder of the `xdp_cost` bench target (`--attach-floor IFACE`): what an
    /// XDP answer costs at the least. It prints `attached [mode]` when ready; it builds no answer of ours
    /// (one fixed record), so its reply is not checked.
    Floor,
}

/// One server of the bench.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    /// Its key in the JSON and the file names.
    pub key: &'static str,
    /// Its name in the report.
    pub label: &'static str,
    pub kind: Kind,
    /// Whether dnsperf measures its latency (the four servers the goals compare).
    pub latency: bool,
}

/// Every server, in the order they run and are reported.
pub const SERVERS: [Server; 6] = [
    Server {
        key: "ours_xdp_driver",
        label: "ours, XDP (driver mode)",
        kind: Kind::Ours(Some("driver")),
        latency: true,
    },
    Server {
        key: "ours_xdp_skb",
        label: "ours, XDP (skb mode)",
        kind: Kind::Ours(Some("skb")),
        latency: false,
    },
    Server {
        key: "ours_userspace",
        label: "ours, userspace (no XDP)",
        kind: Kind::Ours(None),
        latency: true,
    },
    Server {
        key: "knot_xdp",
        label: "Knot DNS, XDP mode",
        kind: Kind::Knot { xdp: true },
        latency: true,
    },
    Server {
        key: "knot_udp",
        label: "Knot DNS, UDP (1 worker)",
        kind: Kind::Knot { xdp: false },
        latency: true,
    },
    Server {
        key: "floor",
        label: "minimal XDP_TX responder (floor)",
        kind: Kind::Floor,
        latency: false,
    },
];

impl Server {
    /// Whether it answers from an XDP program on the server's veth.
    pub fn xdp(&self) -> bool {
        matches!(
            self.kind,
            Kind::Ours(Some(_)) | Kind::Knot { xdp: true } | Kind::Floor
        )
    }

    /// The command line it runs with, for the report (`{dir}`: the run's temp directory).
    pub fn command_line(&self) -> String {
        match self.kind {
            Kind::Ours(_) => format!(
                "opengslb overwatch --config {{dir}}/{}.yaml --bpffs-root /sys/fs/bpf/ogsbench-<pid>",
                self.key
            ),
            Kind::Knot { .. } => format!(
                "ip netns exec <server ns> taskset -c 0 knotd -c {{dir}}/{}.conf",
                self.key
            ),
            Kind::Floor => "xdp_cost --attach-floor <server veth>".to_owned(),
        }
    }
}

/// What a server needs from the build.
pub struct Programs {
    /// The release `opengslb`.
    pub opengslb: PathBuf,
    /// The `xdp_cost` bench executable, when that target exists.
    pub xdp_cost: Option<PathBuf>,
}

/// Our config: the one name, three A records, all always healthy (no validation: nothing to probe).
pub fn ours_config(xdp_mode: Option<&str>, iface: &str, data_dir: &Path) -> String {
    let xdp = xdp_mode.map_or(String::new(), |m| {
        format!("  xdp: {{ interfaces: [{iface}], mode: {m} }}\n")
    });
    let servers: String = RECORDS
        .iter()
        .map(|a| format!("      - {{ address: {a}, service: {} }}\n", load::NAME))
        .collect();
    format!(
        "mode: overwatch\n\
         overwatch:\n  validation: {{ enabled: false }}\n  data_dir: {data}\n\
         dns:\n  listen_address: \"{SERVER_IP}:53\"\n  zones: [bench.test]\n  default_ttl: 60\n{xdp}\
         regions:\n  - name: bench\n    servers:\n{servers}\
         domains:\n  - {{ name: {name}, routing_algorithm: round-robin, regions: [bench], ttl: 60, max_answers: 3 }}\n\
         logging: {{ level: warn, format: text }}\n",
        data = data_dir.display(),
        name = load::NAME,
    )
}

/// Knot's zone: the same answer, plus what a zone needs (SOA, NS and its address).
pub fn knot_zone() -> String {
    let www: String = RECORDS.iter().map(|a| format!("www 60 A {a}\n")).collect();
    format!(
        "$ORIGIN bench.test.\n$TTL 60\n\
         @ SOA ns1 hostmaster 1 3600 600 86400 5\n@ NS ns1\nns1 A {SERVER_IP}\n{www}"
    )
}

/// Knot's config: one UDP worker (which also serves the one XDP queue in XDP mode).
pub fn knot_config(xdp: bool, iface: &str, dir: &Path, key: &str) -> String {
    let d = dir.join(key);
    let xdp = if xdp {
        format!("xdp:\n  listen: {iface}@53\n  udp: on\n  route-check: off\n")
    } else {
        String::new()
    };
    format!(
        "server:\n  rundir: {run}\n  user: root:root\n  listen: {SERVER_IP}@53\n  udp-workers: 1\n  \
         tcp-workers: 1\n  background-workers: 1\n\
         {xdp}\
         database:\n  storage: {db}\n\
         zone:\n  - domain: bench.test\n    storage: {dir}\n    file: bench.test.zone\n    \
         semantic-checks: off\n    zonefile-load: whole\n    journal-content: none\n",
        run = d.join("run").display(),
        db = d.join("db").display(),
        dir = dir.display(),
    )
}

/// A started server, stopped on drop (and any XDP program left on the server's veth detached).
pub struct Running<'a> {
    pub proc: Proc,
    lab: &'a Lab,
}

impl Running<'_> {
    /// Its process id, for its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        crate::demo::netns::process::stop_all(std::slice::from_mut(&mut self.proc));
        // knotd does not detach its program; the overwatch does, this is for when it was killed.
        xdp::detach(&self.lab.server_ns, &self.lab.server_if);
    }
}

/// Starts `server`, waits until it is ready, and checks its answer with one kdig: the three records
/// exactly, or an error saying what it answered.
pub fn start<'a>(
    server: &Server,
    lab: &'a Lab,
    programs: &Programs,
    dir: &Path,
    bpffs: &Path,
) -> Result<Running<'a>> {
    let log = dir.join(format!("{}.log", server.key));
    let mut cmd = match server.kind {
        Kind::Ours(mode) => {
            let data = dir.join(format!("{}-data", server.key));
            fs::create_dir_all(&data)?;
            let cfg = dir.join(format!("{}.yaml", server.key));
            fs::write(&cfg, ours_config(mode, &lab.server_if, &data))?;
            let mut c = lab.server_command(&programs.opengslb)?;
            c.args(["overwatch", "--detach-on-exit", "--config"])
                .arg(&cfg);
            c.arg("--bpffs-root").arg(bpffs);
            c
        }
        Kind::Knot { xdp } => {
            fs::write(dir.join("bench.test.zone"), knot_zone())?;
            for sub in ["run", "db"] {
                fs::create_dir_all(dir.join(server.key).join(sub))?;
            }
            let cfg = dir.join(format!("{}.conf", server.key));
            fs::write(&cfg, knot_config(xdp, &lab.server_if, dir, server.key))?;
            let cfg = cfg.display().to_string();
            Lab::exec_in(&lab.server_ns, &["taskset", "-c", "0", "knotd", "-c", &cfg])
        }
        Kind::Floor => {
            let exe = programs
                .xdp_cost
                .as_deref()
                .context("no xdp_cost bench executable")?;
            let mut c = lab.server_command(exe)?;
            c.arg("--attach-floor").arg(&lab.server_if);
            c
        }
    };
    // Whatever an earlier server left on either end goes first.
    xdp::detach(&lab.server_ns, &lab.server_if);
    xdp::detach(&lab.client_ns, &lab.client_if);
    let proc = Proc::spawn(server.label.to_owned(), &mut cmd, log)?;
    let mut running = Running { proc, lab };
    wait_ready(server, &mut running).with_context(|| {
        format!(
            "{}: last lines of its log:\n{}",
            server.label,
            running.proc.tail(15)
        )
    })?;
    Ok(running)
}

/// Waits until `server` runs, has its XDP program attached if it should, and (unless it is the
/// floor) answers kdig with the three records.
fn wait_ready(server: &Server, running: &mut Running<'_>) -> Result<()> {
    let lab = running.lab;
    let deadline = Instant::now() + READY;
    let mut last = String::from("no answer yet");
    loop {
        stop::check()?;
        running.proc.check()?;
        let attached = !server.xdp() || !xdp::attached(&lab.server_ns, &lab.server_if)?.is_empty();
        let ready = match server.kind {
            Kind::Floor => {
                attached
                    && fs::read_to_string(&running.proc.log)?
                        .lines()
                        .any(|l| l.starts_with("attached"))
            }
            _ if attached => {
                // kdig's reply from XDP_TX reaches the client's socket only with a native program there.
                let _pass = xdp::PassProgram::attach(lab, &lab.client_if)?;
                let (got, text) = load::kdig(lab)?;
                if got == RECORDS {
                    true
                } else {
                    last = text;
                    // A server that answers, but wrongly, is a failure, not a wait.
                    if last.contains("ANSWER SECTION") {
                        bail!(
                            "{} answered {} A with {got:?}, not {RECORDS:?}:\n{last}",
                            server.label,
                            load::NAME
                        );
                    }
                    false
                }
            }
            _ => false,
        };
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} not ready within {READY:?}; last kdig:\n{last}",
                server.label
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_key_is_unique_and_the_goals_servers_measure_latency() {
        let mut keys: Vec<_> = SERVERS.iter().map(|s| s.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), SERVERS.len());
        let latency: Vec<_> = SERVERS
            .iter()
            .filter(|s| s.latency)
            .map(|s| s.key)
            .collect();
        assert_eq!(
            latency,
            ["ours_xdp_driver", "ours_userspace", "knot_xdp", "knot_udp"]
        );
    }

    #[test]
    fn our_config_serves_three_records_and_xdp_only_when_asked() {
        let with = ours_config(Some("driver"), "obs1", Path::new("/tmp/d"));
        assert!(
            with.contains("xdp: { interfaces: [obs1], mode: driver }"),
            "{with}"
        );
        assert_eq!(with.matches("service: www.bench.test").count(), 3);
        assert!(with.contains("max_answers: 3"));
        assert!(!ours_config(None, "obs1", Path::new("/tmp/d")).contains("xdp"));
    }

    #[test]
    fn knot_serves_the_same_three_records() {
        let zone = knot_zone();
        for a in RECORDS {
            assert!(zone.contains(&format!("www 60 A {a}")));
        }
        assert!(knot_config(true, "obs1", Path::new("/d"), "k").contains("listen: obs1@53"));
        assert!(!knot_config(false, "obs1", Path::new("/d"), "k").contains("xdp"));
    }
}
