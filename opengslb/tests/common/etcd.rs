//! A real etcd cluster (Debian's `etcd`, 3.4) for the shared-store tests and bench: one process per
//! member, on loopback or inside a test's namespace, with raft timings short enough for tests. Members
//! can be killed and restarted on their data; every member is killed and its data removed on drop, so a
//! failing test leaves nothing running.
//!
//! Debian's etcd-server package may run a system etcd on 127.0.0.1:2379/2380: on loopback the cluster
//! refuses those ports (free ports from [`free_port`](super::free_port) never are); inside a namespace
//! they are the namespace's own.

use std::{
    fs::{self, OpenOptions},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use super::{
    http::get_within,
    netns::{Netns, Proc, TempDir, wait_for},
};

/// Raft's heartbeat and election timeout in ms: a tenth of etcd's defaults is plenty on loopback or a
/// namespace's `lo` and makes a lost leader replaced in about half a second.
pub const HEARTBEAT_MS: u32 = 50;
pub const ELECTION_MS: u32 = 500;

/// Clusters started by this process, for distinct cluster tokens.
static STARTED: AtomicU32 = AtomicU32::new(0);

/// A scratch directory in memory (`/dev/shm`, else the temp dir), removed on drop: for a cluster's
/// data where durability does not matter. On disk, each member's first start spends about 2 s here
/// creating and syncing its write-ahead log; in memory a three-member cluster is healthy in about half
/// a second.
pub fn memory_dir(tag: &str) -> TempDir {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return TempDir::new(tag);
    }
    let p = shm.join(format!("ogs-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
    TempDir(p)
}

/// Where one member listens.
#[derive(Clone, Debug)]
pub struct MemberAddr {
    pub ip: String,
    pub client_port: u16,
    pub peer_port: u16,
}

/// One member: its address and its process while it runs.
struct Member {
    name: String,
    addr: MemberAddr,
    proc: Option<Proc>,
}

/// An etcd cluster, its members `m0`, `m1`, ... under `dir` (data in `dir/mN`, log in `dir/mN.log`).
pub struct EtcdCluster<'a> {
    ns: Option<&'a Netns>,
    dir: PathBuf,
    token: String,
    members: Vec<Member>,
}

impl<'a> EtcdCluster<'a> {
    /// Starts a new cluster of one member per entry of `members` (IP, client port, peer port), inside
    /// `ns` or, with `None`, here. Does not wait for it: see [`wait_healthy`](Self::wait_healthy).
    pub fn start(ns: Option<&'a Netns>, members: &[MemberAddr], dir: &Path) -> Self {
        assert!(!members.is_empty(), "an etcd cluster needs a member");
        if ns.is_none() {
            for m in members {
                assert!(
                    !matches!(m.client_port, 2379 | 2380) && !matches!(m.peer_port, 2379 | 2380),
                    "etcd on loopback must not use 2379/2380 (a system etcd may hold them): {m:?}"
                );
            }
        }
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let mut cluster = Self {
            ns,
            dir: dir.to_owned(),
            token: format!(
                "ogs-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            ),
            members: members
                .iter()
                .enumerate()
                .map(|(i, addr)| Member {
                    name: format!("m{i}"),
                    addr: addr.clone(),
                    proc: None,
                })
                .collect(),
        };
        for i in 0..cluster.members.len() {
            let _ = fs::remove_dir_all(cluster.data_dir(i));
            cluster.spawn(i, "new");
        }
        cluster
    }

    /// [`start`](Self::start) with `n` members on 127.0.0.1, each on two free ports.
    pub fn loopback(n: usize, dir: &Path) -> Self {
        let members: Vec<MemberAddr> = (0..n)
            .map(|_| MemberAddr {
                ip: "127.0.0.1".into(),
                client_port: super::free_port(),
                peer_port: super::free_port(),
            })
            .collect();
        Self::start(None, &members, dir)
    }

    /// [`start`](Self::start) with one member per IP of `ips`, all on the same two ports (e.g. inside
    /// a namespace, each on its own address of `lo`).
    pub fn on_ips(
        ns: Option<&'a Netns>,
        ips: &[&str],
        client_port: u16,
        peer_port: u16,
        dir: &Path,
    ) -> Self {
        let members: Vec<MemberAddr> = ips
            .iter()
            .map(|ip| MemberAddr {
                ip: (*ip).to_owned(),
                client_port,
                peer_port,
            })
            .collect();
        Self::start(ns, &members, dir)
    }

    /// How many members the cluster has (running or not).
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Member `i`'s client URL, `http://IP:PORT`.
    pub fn endpoint(&self, i: usize) -> String {
        let a = &self.members[i].addr;
        format!("http://{}:{}", a.ip, a.client_port)
    }

    /// Every member's client URL, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.size()).map(|i| self.endpoint(i)).collect()
    }

    /// The endpoints as a YAML flow list, `["http://...", ...]`.
    pub fn endpoints_yaml(&self) -> String {
        let quoted: Vec<String> = self
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(&self.members[i].name)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", self.members[i].name))
    }

    /// Member `i`'s log, every start of it.
    pub fn member_log(&self, i: usize) -> String {
        fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Every member's log, each under a heading: for a failing assertion's message.
    pub fn logs(&self) -> String {
        (0..self.size())
            .map(|i| {
                format!(
                    "--- etcd {} ---\n{}",
                    self.members[i].name,
                    self.member_log(i)
                )
            })
            .collect()
    }

    /// Starts member `i`'s process, as a member of a `new` cluster or of an `existing` one.
    fn spawn(&mut self, i: usize, state: &str) {
        let peer_url = |m: &Member| format!("http://{}:{}", m.addr.ip, m.addr.peer_port);
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, peer_url(m)))
            .collect();
        let m = &self.members[i];
        let client = self.endpoint(i);
        let mut cmd = match self.ns {
            Some(ns) => ns.command(Path::new("etcd")),
            None => Command::new("etcd"),
        };
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer_url(m)])
            .args(["--initial-advertise-peer-urls", &peer_url(m)])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string()])
            .args(["--election-timeout", &ELECTION_MS.to_string()])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        // Appended, so a restart keeps what the member logged before.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("etcd log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start etcd (Debian package etcd-server; `cargo xtask setup`): {e}")
            });
        self.members[i].proc = Some(Proc { child: Some(child) });
    }

    /// Whether member `i` is running (not killed, and has not exited).
    pub fn running(&mut self, i: usize) -> bool {
        self.members[i]
            .proc
            .as_mut()
            .and_then(|p| p.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether member `i` answers `GET /health` with `"health":"true"`: it is running, a leader is
    /// known and a linearizable read went through.
    pub fn healthy(&self, i: usize) -> bool {
        let a = &self.members[i].addr;
        let addr: SocketAddr = format!("{}:{}", a.ip, a.client_port)
            .parse()
            .expect("member address");
        // A healthy member answers in milliseconds; one whose leader just died holds the request
        // until etcd's own request timeout (seconds): asking again soon sees the new leader sooner.
        let body = get_within(self.ns, addr, "/health", Duration::from_millis(500));
        body.replace(' ', "").contains("\"health\":\"true\"")
    }

    /// Waits until every running member is healthy, up to `timeout`; how long that took. Panics with
    /// the members' logs if they were not.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        let running: Vec<usize> = (0..self.size()).filter(|&i| self.running(i)).collect();
        assert!(
            !running.is_empty(),
            "no etcd member is running\n{}",
            self.logs()
        );
        let ok = wait_for(timeout, || running.iter().all(|&i| self.healthy(i)));
        assert!(
            ok,
            "etcd members {running:?} not healthy within {timeout:?}\n{}",
            self.logs()
        );
        started.elapsed()
    }

    /// The member that leads, as the running members see it (`etcdctl endpoint status`): `None` when
    /// none answers or they disagree (an election under way).
    pub fn leader(&mut self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for i in 0..self.size() {
            if !self.running(i) {
                ids.push(None);
                continue;
            }
            let out = self.etcdctl(i, &["endpoint", "status", "-w", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let status = &v[0]["Status"];
            ids.push(status["header"]["member_id"].as_u64());
            leaders.push(status["leader"].as_u64());
        }
        let first = *leaders.first()?;
        if leaders.iter().any(|l| *l != first) {
            return None;
        }
        ids.iter().position(|id| id.is_some() && *id == first)
    }

    /// SIGKILLs member `i` and reaps it; its data stays for [`restart`](Self::restart).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].proc.take().and_then(|mut p| p.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data dir, rejoining the cluster (`--initial-cluster-state
    /// existing`); kills it first if it runs.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, "existing");
    }

    /// `etcdctl` (API v3) against member `i`, run where the cluster runs: its output, whether or not it
    /// succeeded.
    pub fn etcdctl(&self, i: usize, args: &[&str]) -> Output {
        let mut cmd = match self.ns {
            Some(ns) => ns.command(Path::new("etcdctl")),
            None => Command::new("etcdctl"),
        };
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint(i)])
            .args(["--dial-timeout", "2s", "--command-timeout", "5s"])
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run etcdctl (Debian package etcd-client; `cargo xtask setup`): {e}")
            })
    }

    /// Puts `key` = `value` through member `i`; panics with etcdctl's words if that fails.
    pub fn put(&self, i: usize, key: &str, value: &str) {
        self.etcdctl_ok(i, &["put", key, value]);
    }

    /// The value of `key` read through member `i` (linearizable), `None` when absent; panics with
    /// etcdctl's words if the read fails.
    pub fn get(&self, i: usize, key: &str) -> Option<String> {
        let out = self.etcdctl_ok(i, &["get", "--print-value-only", key]);
        let text = String::from_utf8_lossy(&out.stdout);
        let value = text.strip_suffix('\n').unwrap_or(&text);
        (!out.stdout.is_empty()).then(|| value.to_owned())
    }

    /// [`etcdctl`](Self::etcdctl), which must succeed: panics with its words and the members' logs.
    fn etcdctl_ok(&self, i: usize, args: &[&str]) -> Output {
        let out = self.etcdctl(i, args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} through m{i}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        out
    }
}

impl Drop for EtcdCluster<'_> {
    fn drop(&mut self) {
        // SIGKILL, not a graceful stop: the data goes anyway, and a stopping leader would first try to
        // hand its leadership over.
        for i in 0..self.size() {
            self.kill(i);
            let _ = fs::remove_dir_all(self.data_dir(i));
        }
    }
}
