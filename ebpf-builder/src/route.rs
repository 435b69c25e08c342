//! Which toolchain route can build the eBPF crate on this machine, and what to install when none can.
//!
//! Two routes exist (../shared/TOOLCHAIN.md): Debian's rustc/cargo with the prebuilt BPF `core`
//! (`libstd-rust-web-dev-bpf`), the one verified here, and the usual aya route, a rustup nightly with
//! `rust-src` and `-Z build-std=core`. Both link with `bpf-linker`. Probing is cheap file checks, plus
//! one `rustup` call only when the Debian route is not there.

use std::{
    env, fmt,
    path::{Path, PathBuf},
    process::Command,
};

/// Debian's compiler: its sysroot, `/usr/lib/rustlib`, is the one that holds the BPF `core`.
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
/// Debian's cargo (1.96 here): newer than rustup's stable, and paired with [`DEBIAN_RUSTC`].
pub const DEBIAN_CARGO: &str = "/usr/bin/cargo";
/// Where `libstd-rust-web-dev-bpf` puts the prebuilt `core` for the little-endian BPF target.
pub const DEBIAN_BPF_CORE_DIR: &str = "/usr/lib/rustlib/bpfel-unknown-none/lib";
/// The Debian packages of the eBPF build route, clippy for the eBPF crate included.
pub const DEBIAN_PACKAGES: [&str; 5] = [
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "rust-web-clippy",
];
/// How to install `bpf-linker` against Debian's LLVM 22 (the build takes about 70 s).
pub const BPF_LINKER_INSTALL: &str = "PATH=/usr/lib/llvm-22/bin:$PATH cargo install bpf-linker@0.13.0 --no-default-features --features llvm-22";
/// The other route, for machines where rustup can download components.
pub const NIGHTLY_INSTALL: &str =
    "rustup toolchain install nightly --component rust-src && cargo install bpf-linker";

/// A way to build the eBPF crate that this machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Debian's `/usr/bin/cargo` and `/usr/bin/rustc` with the prebuilt BPF `core`, `RUSTC_BOOTSTRAP=1`.
    Debian,
    /// `rustup run nightly cargo -Z build-std=core`, which needs the `rust-src` component.
    RustupNightly,
}

/// One thing the Debian route lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lack {
    /// `/usr/bin/rustc` or `/usr/bin/cargo` (packages `rustc-web`, `cargo-web`).
    DebianRustc,
    /// The prebuilt BPF `core` rlib (package `libstd-rust-web-dev-bpf`).
    DebianBpfCore,
    /// `bpf-linker`, neither on `PATH` nor in `~/.cargo/bin`.
    BpfLinker,
}

impl fmt::Display for Lack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DebianRustc => {
                "Debian's rustc and cargo (/usr/bin/rustc, /usr/bin/cargo; packages rustc-web, cargo-web)"
            }
            Self::DebianBpfCore => {
                "the prebuilt BPF core (a libcore rlib in /usr/lib/rustlib/bpfel-unknown-none/lib, \
                 package libstd-rust-web-dev-bpf)"
            }
            Self::BpfLinker => "bpf-linker (not on PATH nor in ~/.cargo/bin)",
        })
    }
}

/// No route can build the eBPF crate; [`fmt::Display`] says what to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What the Debian route lacks (never empty). The nightly route lacked `rust-src` or `bpf-linker` too.
    pub lacks: Vec<Lack>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cannot build the eBPF program: no toolchain for bpfel-unknown-none."
        )?;
        for lack in &self.lacks {
            writeln!(f, "  missing: {lack}")?;
        }
        writeln!(
            f,
            "Install it (as root on Debian; `cargo xtask setup` does this):"
        )?;
        if self.lacks.iter().any(|l| *l != Lack::BpfLinker) {
            writeln!(f, "  apt-get update")?;
            writeln!(f, "  apt-get install -y {}", DEBIAN_PACKAGES.join(" "))?;
        }
        if self.lacks.contains(&Lack::BpfLinker) {
            writeln!(f, "  {BPF_LINKER_INSTALL}")?;
        }
        write!(
            f,
            "or, where rustup can download toolchains: {NIGHTLY_INSTALL}"
        )
    }
}

impl std::error::Error for Missing {}

/// Finds the route this machine has, preferring the verified Debian one.
pub fn detect_route() -> Result<Route, Missing> {
    let rustc = Path::new(DEBIAN_RUSTC).is_file() && Path::new(DEBIAN_CARGO).is_file();
    let core = has_debian_bpf_core();
    let linker = bpf_linker_path().is_some();
    // Only ask rustup when needed: it costs a process and a few ms.
    let nightly = !(rustc && core) && nightly_has_rust_src();
    choose(rustc, core, linker, nightly)
}

/// The decision of [`detect_route`], apart from probing the machine.
fn choose(rustc: bool, core: bool, linker: bool, nightly_src: bool) -> Result<Route, Missing> {
    match (rustc && core, nightly_src, linker) {
        (true, _, true) => Ok(Route::Debian),
        (false, true, true) => Ok(Route::RustupNightly),
        _ => {
            let lacks = [
                (!rustc, Lack::DebianRustc),
                (!core, Lack::DebianBpfCore),
                (!linker, Lack::BpfLinker),
            ];
            Err(Missing {
                lacks: lacks
                    .into_iter()
                    .filter(|(l, _)| *l)
                    .map(|(_, x)| x)
                    .collect(),
            })
        }
    }
}

fn has_debian_bpf_core() -> bool {
    std::fs::read_dir(DEBIAN_BPF_CORE_DIR).is_ok_and(|dir| {
        dir.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libcore-") && name.ends_with(".rlib")
        })
    })
}

fn nightly_has_rust_src() -> bool {
    Command::new("rustup")
        .args(["+nightly", "component", "list", "--installed"])
        // Never let a probe start a toolchain download.
        .env("RUSTUP_AUTO_INSTALL", "0")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .is_ok_and(|o| o.status.success() && lists_rust_src(&String::from_utf8_lossy(&o.stdout)))
}

/// Whether `rustup component list --installed` output has `rust-src` (listed without a target suffix).
fn lists_rust_src(installed: &str) -> bool {
    installed.lines().any(|l| l.trim() == "rust-src")
}

/// `~/.cargo/bin` (or `$CARGO_HOME/bin`), where `cargo install` puts `bpf-linker`.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|home| home.join("bin"))
}

/// Where `bpf-linker` is: on `PATH`, or in [`cargo_bin_dir`], which a root shell or CI often lacks on `PATH`.
pub fn bpf_linker_path() -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(cargo_bin_dir())
        .map(|dir| dir.join("bpf-linker"))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_route_preferred_when_complete() {
        assert_eq!(choose(true, true, true, true), Ok(Route::Debian));
        assert_eq!(choose(true, true, true, false), Ok(Route::Debian));
        assert_eq!(choose(false, true, true, true), Ok(Route::RustupNightly));
    }

    #[test]
    fn missing_linker_only_asks_for_linker() {
        let err = choose(true, true, false, false).unwrap_err();
        assert_eq!(err.lacks, [Lack::BpfLinker]);
        let msg = err.to_string();
        assert!(msg.contains(BPF_LINKER_INSTALL), "{msg}");
        assert!(!msg.contains("apt-get"), "{msg}");
    }

    #[test]
    fn nothing_installed_gives_every_command() {
        let err = choose(false, false, false, true).unwrap_err();
        assert_eq!(
            err.lacks,
            [Lack::DebianRustc, Lack::DebianBpfCore, Lack::BpfLinker]
        );
        let msg = err.to_string();
        assert!(msg.contains("apt-get install -y rustc-web cargo-web libstd-rust-web-dev-bpf llvm-22-dev rust-web-clippy"), "{msg}");
        assert!(msg.contains(BPF_LINKER_INSTALL), "{msg}");
        assert!(msg.contains(NIGHTLY_INSTALL), "{msg}");
    }

    #[test]
    fn rust_src_is_recognised() {
        assert!(lists_rust_src("cargo-x86_64-unknown-linux-gnu\nrust-src\n"));
        assert!(!lists_rust_src(
            "rust-std-x86_64-unknown-linux-gnu\nrustc-x86_64-unknown-linux-gnu\n"
        ));
    }
}
