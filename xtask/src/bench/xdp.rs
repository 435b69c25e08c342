//! The XDP pieces the bench handles itself: a do-nothing `XDP_PASS` program for the client's veth, the
//! programs attached to an interface, their `bpf_stats` counts, and `kernel.bpf_stats_enabled`.

use std::{
    fs,
    os::fd::{FromRawFd as _, OwnedFd},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::lab::Lab;

/// `bpf(2)` commands and constants (include/uapi/linux/bpf.h, if_link.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `r0 = XDP_PASS (2); exit`, as two `struct bpf_insn`.
const PASS_PROGRAM: [u64; 2] = [0xb7 | (2 << 32), 0x95];

/// A native `XDP_PASS` program attached to the client's veth through a BPF link. `XDP_TX` into a veth
/// is delivered only when the peer has a native program (the veth driver wakes the peer's NAPI only
/// then), so socket clients (kdig, dnsperf) need one to see XDP replies. The link goes with its fd: on
/// drop, or when the bench dies, nothing stays attached.
pub struct PassProgram {
    _link: OwnedFd,
}

impl PassProgram {
    /// Loads the program and attaches it in driver mode to `iface` in the client's namespace.
    pub fn attach(lab: &Lab, iface: &str) -> Result<Self> {
        let iface = iface.to_owned();
        let link = lab.in_client(move || -> Result<OwnedFd> {
            let name = std::ffi::CString::new(iface.clone())?;
            // SAFETY: a valid NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if ifindex == 0 {
                bail!("no interface {iface} in the client namespace");
            }
            let prog = load_pass()?;
            let mut attr = [0u8; 64];
            attr[0..4].copy_from_slice(&fd_u32(&prog).to_ne_bytes());
            attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
            attr[8..12].copy_from_slice(&BPF_XDP.to_ne_bytes());
            attr[12..16].copy_from_slice(&XDP_FLAGS_DRV_MODE.to_ne_bytes());
            let link = bpf(BPF_LINK_CREATE, &mut attr)
                .with_context(|| format!("attaching an XDP_PASS program to {iface}"))?;
            Ok(link)
        })??;
        Ok(Self { _link: link })
    }
}

fn fd_u32(fd: &OwnedFd) -> u32 {
    use std::os::fd::AsRawFd as _;
    fd.as_raw_fd() as u32
}

/// Loads [`PASS_PROGRAM`] as an XDP program; its fd.
fn load_pass() -> Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_XDP.to_ne_bytes());
    attr[4..8].copy_from_slice(&(PASS_PROGRAM.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(PASS_PROGRAM.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..58].copy_from_slice(b"bench_pass");
    attr[68..72].copy_from_slice(&BPF_XDP.to_ne_bytes());
    bpf(BPF_PROG_LOAD, &mut attr).context("loading an XDP_PASS program")
}

/// `bpf(cmd, attr)` returning a new fd.
fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> Result<OwnedFd> {
    // SAFETY: `attr` is a zero-filled `union bpf_attr` prefix of the given size, whose pointers (program,
    // license) outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        bail!("bpf({cmd}): {}", std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Runs `cmd`, which prints JSON (`ip -j`, `bpftool -j`); the JSON, or an error with its stderr.
pub fn json_of(cmd: &mut Command) -> Result<Value> {
    let line = xtask::command_line(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        bail!("`{line}`: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("`{line}`: not JSON"))
}

/// `ip -j -n <ns> link show dev <iface>`.
pub fn link_json(ns: &str, iface: &str) -> Result<Value> {
    json_of(Command::new("ip").args(["-j", "-n", ns, "link", "show", "dev", iface]))
}

/// The ids of the XDP programs attached to `iface` in namespace `ns` (any mode).
pub fn attached(ns: &str, iface: &str) -> Result<Vec<u32>> {
    Ok(prog_ids(&link_json(ns, iface)?))
}

/// The program ids in `ip -j link show` output: `xdp.prog.id`, or `xdp.attached[].prog.id` when several
/// modes are attached.
fn prog_ids(v: &Value) -> Vec<u32> {
    let mut ids = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        let xdp = &link["xdp"];
        let progs = xdp["attached"]
            .as_array()
            .map(|a| a.iter().map(|p| &p["prog"]).collect::<Vec<_>>())
            .unwrap_or_else(|| vec![&xdp["prog"]]);
        ids.extend(
            progs
                .iter()
                .filter_map(|p| p["id"].as_u64())
                .filter_map(|id| u32::try_from(id).ok()),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Detaches whatever XDP program `iface` in `ns` has (knotd and kxdpgun leave theirs behind).
pub fn detach(ns: &str, iface: &str) {
    let _ = Command::new("ip")
        .args(["-n", ns, "link", "set", "dev", iface, "xdp", "off"])
        .output();
}

/// A program's `bpf_stats` counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Nanoseconds it ran in all.
    pub run_time_ns: u64,
    /// Times it ran.
    pub run_cnt: u64,
}

impl RunStats {
    /// What ran between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            run_time_ns: self.run_time_ns.saturating_sub(earlier.run_time_ns),
            run_cnt: self.run_cnt.saturating_sub(earlier.run_cnt),
        }
    }
}

/// `bpftool prog show id N -j`: its run time and count (zero while stats are off).
pub fn run_stats(id: u32) -> Result<RunStats> {
    let bpftool = xtask::which("bpftool").context("bpftool not found")?;
    let v = json_of(Command::new(bpftool).args(["prog", "show", "id", &id.to_string(), "-j"]))?;
    Ok(parse_run_stats(&v))
}

fn parse_run_stats(v: &Value) -> RunStats {
    RunStats {
        run_time_ns: v["run_time_ns"].as_u64().unwrap_or(0),
        run_cnt: v["run_cnt"].as_u64().unwrap_or(0),
    }
}

/// The summed stats of programs `ids`.
pub fn total_stats(ids: &[u32]) -> Result<RunStats> {
    let mut t = RunStats::default();
    for &id in ids {
        let s = run_stats(id)?;
        t.run_time_ns += s.run_time_ns;
        t.run_cnt += s.run_cnt;
    }
    Ok(t)
}

const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
const RMEM_DEFAULT_SYSCTL: &str = "/proc/sys/net/core/rmem_default";
/// The socket receive buffer every server gets by default while the bench runs, as a DNS server's
/// operator sets it: the kernel's 208 KiB overflows during a pause of a few ms at tens of thousands of
/// queries a second, whichever server it is (ours asks for this much itself).
pub const RMEM_DEFAULT: u32 = 4 << 20;

/// A sysctl set while it lives; the old value is written back on drop, failure or not.
pub struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    pub fn set(path: &'static str, value: &str) -> Result<Self> {
        let old = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        fs::write(path, value).with_context(|| format!("writing {path}"))?;
        Ok(Self {
            path,
            old: old.trim().to_owned(),
        })
    }

    /// `kernel.bpf_stats_enabled=1`.
    pub fn bpf_stats() -> Result<Self> {
        Self::set(BPF_STATS_SYSCTL, "1")
    }

    /// `net.core.rmem_default` = [`RMEM_DEFAULT`].
    pub fn rmem_default() -> Result<Self> {
        Self::set(RMEM_DEFAULT_SYSCTL, &RMEM_DEFAULT.to_string())
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = fs::write(self.path, &self.old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_ids_are_read_from_ip_link_json() {
        let one: Value = serde_json::from_str(
            r#"[{"ifname":"v","xdp":{"mode":1,"prog":{"id":42,"name":"x"}}}]"#,
        )
        .unwrap();
        assert_eq!(prog_ids(&one), [42]);
        let multi: Value = serde_json::from_str(
            r#"[{"xdp":{"mode":4,"attached":[{"mode":1,"prog":{"id":7}},{"mode":2,"prog":{"id":9}}]}}]"#,
        )
        .unwrap();
        assert_eq!(prog_ids(&multi), [7, 9]);
        let none: Value = serde_json::from_str(r#"[{"ifname":"v"}]"#).unwrap();
        assert!(prog_ids(&none).is_empty());
    }

    #[test]
    fn run_stats_are_read_from_bpftool_json() {
        let json = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        let s = parse_run_stats(&json(
            r#"{"id":3,"type":"xdp","run_time_ns":1500,"run_cnt":10}"#,
        ));
        assert_eq!(
            s.since(RunStats {
                run_time_ns: 500,
                run_cnt: 5
            }),
            RunStats {
                run_time_ns: 1000,
                run_cnt: 5
            }
        );
        assert_eq!(parse_run_stats(&json(r#"{"id":3}"#)), RunStats::default());
    }
}
