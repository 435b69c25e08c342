//! Network namespaces, veth pairs and processes for the privileged tests, each removed on drop, so a
//! failing test cleans up too. Names carry the test process's pid, so parallel runs do not collide.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A named network namespace (`ip netns`), deleted on drop with everything in it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("ogs-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec <ns> args...`, which must succeed.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// A command to run inside the namespace. Unlike `ip netns exec`, it keeps our mount namespace, so
    /// the process sees the same bpffs (and pins) as the test.
    pub fn command(&self, program: &Path) -> Command {
        use std::os::unix::process::CommandExt as _;
        let ns = File::open(format!("/run/netns/{}", self.name)).expect("netns file");
        let mut c = Command::new(program);
        // SAFETY: setns is async-signal-safe; `ns` stays open until the closure is dropped with `c`.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }

    /// Runs `f` with the calling thread inside the namespace (e.g. to attach XDP to an interface there).
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let here = File::open("/proc/thread-self/ns/net").expect("own netns");
        let there = File::open(format!("/run/netns/{}", self.name)).expect("netns file");
        // SAFETY: setns on the calling thread with valid namespace fds.
        assert_eq!(
            unsafe { libc::setns(there.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let r = f();
        // SAFETY: as above, back to where we were.
        assert_eq!(
            unsafe { libc::setns(here.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        r
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair between two namespaces, with addresses; it goes when the namespaces go.
pub struct Veth {
    pub a: String,
    pub b: String,
}

impl Veth {
    /// `a` in `na` with `addrs_a`, `b` in `nb` with `addrs_b` (CIDR strings; IPv6 without DAD).
    pub fn new(na: &Netns, nb: &Netns, addrs_a: &[&str], addrs_b: &[&str]) -> Self {
        let pid = std::process::id() % 100_000;
        let (a, b) = (format!("ogs{pid}a"), format!("ogs{pid}b"));
        sh(&[
            "ip", "link", "add", &a, "netns", &na.name, "type", "veth", "peer", "name", &b,
            "netns", &nb.name,
        ]);
        for (ns, dev, addrs) in [(na, &a, addrs_a), (nb, &b, addrs_b)] {
            for addr in addrs {
                if addr.contains(':') {
                    ns.exec(&["ip", "addr", "add", addr, "dev", dev, "nodad"]);
                } else {
                    ns.exec(&["ip", "addr", "add", addr, "dev", dev]);
                }
            }
            ns.exec(&["ip", "link", "set", dev, "up"]);
        }
        Self { a, b }
    }
}

/// A child process killed (SIGINT first, so it can clean up) and reaped on drop.
pub struct Proc {
    pub child: Option<Child>,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: &Path) -> Self {
        let f = File::create(log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log fd"))
            .stderr(f)
            .spawn()
            .expect("spawn");
        Self { child: Some(child) }
    }

    /// Sends SIGINT and waits up to 10 s; returns whether it exited successfully.
    pub fn interrupt(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        // SAFETY: kill on a pid we own and have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// `opengslb overwatch --xdp-only` in `ns` from the config file `cfg`, pinning under `bpffs_root`, its
/// output in `log`. With no userspace listener, whatever is answered, XDP answered.
pub fn xdp_only_overwatch(ns: &Netns, cfg: &Path, bpffs_root: &Path, log: &Path) -> Proc {
    let mut cmd = ns.command(Path::new(env!("CARGO_BIN_EXE_opengslb")));
    cmd.args(["overwatch", "--xdp-only", "--detach-on-exit", "--config"])
        .arg(cfg)
        .arg("--bpffs-root")
        .arg(bpffs_root);
    Proc::spawn(cmd, log)
}

/// Waits until `f` returns true, up to `timeout`, asking every 50 ms.
pub fn wait_for(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    wait_every(Duration::from_millis(50), timeout, f)
}

/// Waits until `f` returns true, up to `timeout`, asking every `step` (for measuring, not just waiting).
/// `f` is asked at least once, and once more at the deadline (a zero timeout is a single check).
pub fn wait_every(step: Duration, timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        thread::sleep(step.min(left));
    }
}

/// A scratch directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("ogs-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
