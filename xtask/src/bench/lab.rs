//! The bench's network: two namespaces (server, client) joined by one veth pair with one queue, named
//! `ogsbench-<pid>-…` so a later run removes what a crashed one left; both go on drop, with every veth,
//! XDP program and process left in them.

use std::{
    fs::File, net::Ipv4Addr, os::unix::process::CommandExt as _, path::Path, process::Command,
};

use anyhow::{Context as _, Result};

use crate::demo::netns::{
    net::{self, delete, ip},
    node::enter_netns,
};

/// What every name of a run starts with, then `-<pid>`.
pub const PREFIX: &str = "ogsbench";
/// The server's and the client's addresses on the veth.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

/// The server and client namespaces and the veth between them.
pub struct Lab {
    /// Namespace names.
    pub server_ns: String,
    pub client_ns: String,
    /// The veth's ends: in the server's and in the client's namespace.
    pub server_if: String,
    pub client_if: String,
    /// Their MAC addresses, which kxdpgun is given rather than left to find.
    pub server_mac: String,
    pub client_mac: String,
}

impl Lab {
    /// Removes what crashed runs left, then creates the namespaces and the veth.
    pub fn create(temp: &Path, bpffs: &Path) -> Result<Self> {
        for gone in net::remove_leftovers(PREFIX, temp, bpffs) {
            eprintln!("bench: removed what a crashed run left: {gone}");
        }
        let pid = std::process::id();
        let mut lab = Self {
            server_ns: format!("{PREFIX}-{pid}-srv"),
            client_ns: format!("{PREFIX}-{pid}-cli"),
            server_if: format!("obs{}", pid % 100_000),
            client_if: format!("obc{}", pid % 100_000),
            server_mac: String::new(),
            client_mac: String::new(),
        };
        // `lab` exists from here on: a failure below drops it, which removes what was made.
        ip(&["netns", "add", &lab.server_ns])?;
        ip(&["netns", "add", &lab.client_ns])?;
        // One queue each way (the veth default, said explicitly): kxdpgun runs one thread per queue, and
        // native XDP needs the peer's tx queues ≤ its rx queues.
        ip(&[
            "link",
            "add",
            &lab.server_if,
            "netns",
            &lab.server_ns,
            "numtxqueues",
            "1",
            "numrxqueues",
            "1",
            "type",
            "veth",
            "peer",
            "name",
            &lab.client_if,
            "netns",
            &lab.client_ns,
            "numtxqueues",
            "1",
            "numrxqueues",
            "1",
        ])?;
        for (ns, dev, addr) in [
            (&lab.server_ns, &lab.server_if, SERVER_IP),
            (&lab.client_ns, &lab.client_if, CLIENT_IP),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        lab.server_mac = mac(&lab.server_ns, &lab.server_if)?;
        lab.client_mac = mac(&lab.client_ns, &lab.client_if)?;
        // Static neighbours: no ARP exchange can fall between a server's start and the load.
        ip(&[
            "-n",
            &lab.client_ns,
            "neigh",
            "replace",
            &SERVER_IP.to_string(),
            "lladdr",
            &lab.server_mac,
            "dev",
            &lab.client_if,
        ])?;
        ip(&[
            "-n",
            &lab.server_ns,
            "neigh",
            "replace",
            &CLIENT_IP.to_string(),
            "lladdr",
            &lab.client_mac,
            "dev",
            &lab.server_if,
        ])?;
        Ok(lab)
    }

    /// Runs `f` on a thread inside the client's namespace.
    pub fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let ns = ns_file(&self.client_ns)?;
        std::thread::scope(|s| {
            s.spawn(move || {
                enter_netns(&ns)?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("a thread in the client namespace panicked"))?
        })
    }

    /// `program` run in the server's network namespace by setns alone (its mounts stay ours, so the
    /// overwatch pins in the bpffs we read), pinned to CPU 0.
    pub fn server_command(&self, program: &Path) -> Result<Command> {
        use std::os::fd::AsRawFd as _;
        let ns = ns_file(&self.server_ns)?;
        let mut cmd = Command::new(program);
        // SAFETY: only async-signal-safe calls (setns, sched_setaffinity, setpriority, prctl) between fork and exec,
        // on values prepared before; nothing allocates.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                pin_cpu0()?;
                lab_process()
            });
        }
        Ok(cmd)
    }

    /// `ip netns exec <ns> args…` (which gives the program a sysfs of the namespace, as knotd and
    /// kxdpgun need to find their interface's queues), as [`lab_process`] says.
    pub fn exec_in(ns: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).args(args);
        // SAFETY: lab_process makes only async-signal-safe calls.
        unsafe { cmd.pre_exec(lab_process) };
        cmd
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace kills what runs in it and removes its end of the veth (and the pair).
        delete(&self.client_ns);
        delete(&self.server_ns);
    }
}

fn ns_file(ns: &str) -> Result<File> {
    File::open(format!("/run/netns/{ns}")).with_context(|| format!("opening namespace {ns}"))
}

/// The MAC address of `dev` in `ns`.
fn mac(ns: &str, dev: &str) -> Result<String> {
    let v = super::xdp::link_json(ns, dev)?;
    v[0]["address"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no MAC address for {dev} in {ns}"))
}

/// Pins the calling process to CPU 0 (called between fork and exec: threads it starts inherit it).
fn pin_cpu0() -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity act on it and this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The priority everything the bench starts in the namespaces runs at.
pub const NICE: i32 = -10;

/// Between fork and exec of every process the bench starts in the namespaces: [`NICE`], so that other
/// work on a shared machine (builds at nice 0) takes less of the servers' and generators' cores; and
/// death with the bench, so nothing it started lives on should it be killed (the next run removes the
/// namespaces).
fn lab_process() -> std::io::Result<()> {
    // SAFETY: setpriority and prctl are async-signal-safe system calls on this process.
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS, 0, NICE) != 0
            || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
