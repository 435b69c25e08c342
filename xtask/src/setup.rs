//! `cargo xtask setup`: find what the project needs and is missing; as root on Debian, install it.
//!
//! Needs: the eBPF build route (../shared/TOOLCHAIN.md: Debian's rustc/cargo, the prebuilt BPF `core`,
//! LLVM 22, clippy, `bpf-linker`), the tools the tests and benchmarks drive (dig, knot, kdig, kxdpgun,
//! dnsperf, ip, bpftool, tcpdump, python3-venv for schemathesis; docker, docker-compose and debootstrap
//! for the docker demo; etcd and etcdctl for the shared store's tests, protoc to build its client) and,
//! as root, bpffs at /sys/fs/bpf where the overwatch pins its maps.
//! Every check is a file test or one `dpkg-query`, so running setup before each command costs little.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result, bail};
use ebpf_builder::{BPF_LINKER_INSTALL, DEBIAN_PACKAGES, Missing, Route, bpf_linker_path};
use xtask::{exec, is_root, which};

/// Debian packages of the test and run tools, with a binary each provides (checked off Debian).
const TOOL_PACKAGES: [(&str, &str); 22] = [
    ("dnsutils", "dig"),
    ("knot", "knotd"),
    ("knot-dnsutils", "kdig"),
    ("dnsperf", "dnsperf"),
    ("iproute2", "ip"),
    ("bpftool", "bpftool"),
    ("tcpdump", "tcpdump"),
    ("nginx-light", "nginx"),
    ("openssl", "openssl"),
    ("ca-certificates", "update-ca-certificates"),
    // `python3 -m venv`, for schemathesis (the API's OpenAPI test) under target/.
    ("python3-venv", "python3"),
    // The docker demo (`cargo xtask demo docker`, tests/demo_docker.rs): the daemon, compose, and the
    // base image's rootfs where no image registry answers.
    ("docker.io", "dockerd"),
    ("docker-compose", "docker-compose"),
    ("debootstrap", "debootstrap"),
    // `promtool check metrics` on the live /metrics output; the package's server is not wanted.
    ("prometheus", "promtool"),
    // The status page's browser test (tests/status_page.rs): headless Chromium over WebDriver.
    ("chromium", "chromium"),
    ("chromium-driver", "chromedriver"),
    // The service tests (tests/service.rs): `systemd-analyze verify` on the units, and `setpriv` to run
    // the overwatch as a user with the unit's capabilities.
    ("systemd", "systemd-analyze"),
    ("util-linux", "setpriv"),
    // protoc builds the etcd client's gRPC code (the overwatch's shared store).
    ("protobuf-compiler", "protoc"),
    // The shared-store tests and bench run a real etcd cluster. The package may start a system etcd
    // on 127.0.0.1:2379/2380, which the tests therefore never use on loopback.
    ("etcd-server", "etcd"),
    ("etcd-client", "etcdctl"),
];
const BPFFS: &str = "/sys/fs/bpf";
const MOUNT_BPFFS: &str = "mount -t bpf bpf /sys/fs/bpf";

/// Options of `cargo xtask setup`.
#[derive(clap::Args)]
pub struct Options {
    /// Only report what is missing, install nothing; fails if anything is missing.
    #[arg(long)]
    pub check: bool,
}

/// What the machine lacks.
struct State {
    /// Whether apt and dpkg manage this machine.
    debian: bool,
    /// Packages not installed (on Debian), or tool packages whose binary is absent (elsewhere).
    packages: Vec<&'static str>,
    /// Whether `bpf-linker` is absent.
    bpf_linker: bool,
    /// Whether bpffs needs mounting (only asked of root: nobody else can mount or use it).
    bpffs: bool,
    /// The eBPF route, which off Debian may be a rustup nightly with `rust-src`.
    route: Result<Route, Missing>,
}

impl State {
    fn probe() -> Result<Self> {
        let debian = Path::new("/etc/debian_version").exists() && which("dpkg-query").is_some();
        let packages = if debian {
            let all: Vec<_> = DEBIAN_PACKAGES
                .into_iter()
                .chain(TOOL_PACKAGES.map(|(p, _)| p))
                .collect();
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Package}\t${Status}\n"])
                .args(&all)
                .output()
                .context("cannot run dpkg-query")?;
            // dpkg-query exits 1 when it knows some package not at all; its stdout is still right.
            not_installed(&all, &String::from_utf8_lossy(&out.stdout))
        } else {
            TOOL_PACKAGES
                .into_iter()
                .filter(|(_, bin)| which(bin).is_none())
                .map(|(p, _)| p)
                .collect()
        };
        Ok(Self {
            debian,
            packages,
            bpf_linker: bpf_linker_path().is_none(),
            bpffs: is_root() && !bpffs_mounted(),
            route: ebpf_builder::detect_route(),
        })
    }

    fn complete(&self) -> bool {
        self.packages.is_empty() && !self.bpf_linker && !self.bpffs && self.route.is_ok()
    }

    /// What is missing and the commands that install it, one line each.
    fn report(&self) -> Vec<String> {
        let mut lines = vec!["setup: missing:".to_owned()];
        if !self.packages.is_empty() {
            let kind = if self.debian {
                "Debian packages"
            } else {
                "tools from the Debian packages"
            };
            lines.push(format!("  - {kind}: {}", self.packages.join(" ")));
        }
        if self.bpf_linker {
            lines.push("  - bpf-linker".to_owned());
        }
        if self.bpffs {
            lines.push(format!("  - bpffs at {BPFFS} (not mounted)"));
        }
        // Off Debian the route explains itself; on Debian only if the packages do not explain it.
        let unexplained = !self.debian || (self.packages.is_empty() && !self.bpf_linker);
        if unexplained && let Err(missing) = &self.route {
            lines.extend(missing.to_string().lines().map(|l| format!("  {l}")));
        }
        if !self.debian {
            lines.push(
                "setup: this is not Debian: install these with your package manager; the eBPF \
                 route verified for this project is Debian's (../shared/TOOLCHAIN.md)"
                    .to_owned(),
            );
            return lines;
        }
        lines.push("setup: to install (or run `cargo xtask setup` as root):".to_owned());
        let sudo = if is_root() { "" } else { "sudo " };
        if !self.packages.is_empty() {
            lines.push(format!("  {sudo}apt-get update"));
            lines.push(format!(
                "  {sudo}apt-get install -y {}",
                self.packages.join(" ")
            ));
        }
        if self.bpf_linker {
            lines.push(format!("  {BPF_LINKER_INSTALL}"));
        }
        if self.bpffs {
            lines.push(format!("  {MOUNT_BPFFS}"));
        }
        lines
    }
}

/// The packages of `wanted` that dpkg-query's `${Package}\t${Status}` lines do not show installed.
fn not_installed(wanted: &[&'static str], dpkg: &str) -> Vec<&'static str> {
    let installed: Vec<&str> = dpkg
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        // Multi-arch packages may print as `name:arch`.
        .map(|(pkg, _)| pkg.split(':').next().unwrap_or(pkg))
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect()
}

fn bpffs_mounted() -> bool {
    fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let mut f = l.split_whitespace().skip(1);
            f.next() == Some(BPFFS) && f.next() == Some("bpf")
        })
    })
}

/// `setup` as other commands run it first: install what is missing if we may, else fail saying what.
pub fn ensure() -> Result<()> {
    setup(&Options { check: false })
}

/// Runs `cargo xtask setup [--check]`.
pub fn setup(opts: &Options) -> Result<()> {
    let state = State::probe()?;
    if state.complete() {
        eprintln!("setup: all present");
        return Ok(());
    }
    for line in state.report() {
        eprintln!("{line}");
    }
    if opts.check {
        bail!("setup --check: something is missing (see above)");
    }
    if !state.debian || !is_root() {
        bail!(
            "setup: cannot install: {}",
            if state.debian {
                "not root"
            } else {
                "not Debian"
            }
        );
    }
    install(&state)?;
    let after = State::probe()?;
    if !after.complete() {
        for line in after.report() {
            eprintln!("{line}");
        }
        bail!("setup: still missing after installing (see above)");
    }
    eprintln!("setup: done, all present");
    Ok(())
}

/// Packages whose install starts a server where systemd runs, with its unit: only their tools are
/// wanted, and the servers would hold ports (Prometheus 9090, the metrics port of the demo and the
/// tests; etcd 2379/2380 on loopback).
const UNWANTED_SERVICES: [(&str, &str); 2] =
    [("prometheus", "prometheus"), ("etcd-server", "etcd")];

/// Stops and disables the service a package just installed started, if it runs.
fn stop_service(unit: &str) {
    let active = Command::new("systemctl")
        .args(["is-active", "--quiet", unit])
        .status()
        .is_ok_and(|s| s.success());
    if active {
        eprintln!(
            "setup: stopping and disabling the {unit} service its package started (only its tools are used)"
        );
        let _ = exec(Command::new("systemctl").args(["disable", "--now", unit]));
    }
}

/// Installs what `state` lacks, with each tool's own progress on the terminal.
fn install(state: &State) -> Result<()> {
    if !state.packages.is_empty() {
        // Another apt (unattended-upgrades, a second setup) may hold dpkg's lock: wait for it.
        const LOCK_WAIT: [&str; 2] = ["-o", "DPkg::Lock::Timeout=300"];
        exec(Command::new("apt-get").args(LOCK_WAIT).arg("update"))?;
        exec(
            Command::new("apt-get")
                .args(LOCK_WAIT)
                .args(["install", "-y"])
                .args(&state.packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        for (package, unit) in UNWANTED_SERVICES {
            if state.packages.contains(&package) {
                stop_service(unit);
            }
        }
    }
    if state.bpf_linker {
        // bpf-linker links against LLVM 22 from llvm-22-dev, whose llvm-config is only in this dir.
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once("/usr/lib/llvm-22/bin".into()).chain(std::env::split_paths(&path)),
        )?;
        eprintln!("setup: installing bpf-linker (about 70 s)");
        exec(
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args([
                    "install",
                    // The version verified with LLVM 22 and Rust 1.95 here.
                    "bpf-linker@0.13.0",
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                .env("PATH", path),
        )?;
    }
    if state.bpffs {
        fs::create_dir_all(BPFFS).with_context(|| format!("cannot create {BPFFS}"))?;
        exec(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_output_is_parsed() {
        let dpkg = "knot\tinstall ok installed\ndnsperf\tdeinstall ok config-files\n\
                    libstd-rust-web-dev-bpf:amd64\tinstall ok installed\n";
        assert_eq!(
            not_installed(
                &["knot", "dnsperf", "libstd-rust-web-dev-bpf", "tcpdump"],
                dpkg
            ),
            ["dnsperf", "tcpdump"]
        );
    }

    #[test]
    fn report_gives_the_commands_for_what_is_missing() {
        let state = State {
            debian: true,
            packages: vec!["dnsperf"],
            bpf_linker: true,
            bpffs: false,
            route: Err(Missing {
                lacks: vec![ebpf_builder::Lack::BpfLinker],
            }),
        };
        let report = state.report().join("\n");
        assert!(report.contains("apt-get install -y dnsperf"), "{report}");
        assert!(report.contains(BPF_LINKER_INSTALL), "{report}");
        assert!(!report.contains("mount"), "{report}");
    }
}
