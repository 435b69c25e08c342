//! Builds the OpenGSLB XDP program (`opengslb-ebpf`) into a BPF object.
//!
//! Used by `opengslb/build.rs` (to embed the object) and by xtask. It replaces `aya-build`, which
//! always runs `rustup run nightly cargo -Z build-std=core` and so needs `rust-src`, absent here
//! (../shared/TOOLCHAIN.md). It passes the same flags as aya-build 0.2.0 and, like it, runs a nested
//! cargo in a target dir of its own: cargo locks its target dir, so a nested build into the outer one
//! from a build script would wait forever (rust-lang/cargo#6412).

mod route;

use std::{
    env,
    ffi::{OsStr, OsString},
    io,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
};

pub use route::{
    BPF_LINKER_INSTALL, DEBIAN_BPF_CORE_DIR, DEBIAN_CARGO, DEBIAN_PACKAGES, DEBIAN_RUSTC, Lack,
    Missing, NIGHTLY_INSTALL, Route, bpf_linker_path, cargo_bin_dir, detect_route,
};

/// The eBPF package.
pub const PACKAGE: &str = "opengslb-ebpf";
/// The eBPF package's bin target, and so the object's file name (`[[bin]]` in opengslb-ebpf/Cargo.toml).
pub const BIN_NAME: &str = "opengslb";
/// The BPF target; the kernel and every host we support are little-endian.
pub const TARGET: &str = "bpfel-unknown-none";

/// Why building the eBPF object failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No toolchain route is installed.
    #[error(transparent)]
    Missing(#[from] Missing),
    /// The nested cargo could not be started.
    #[error("cannot start `{cmd}`")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The nested cargo ran and failed; its errors went to stderr.
    #[error("`{cmd}` failed ({status}); its errors are above")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: ExitStatus,
    },
    /// The build succeeded but did not produce the object where expected.
    #[error("the eBPF build succeeded but left no {}: is {PACKAGE}'s bin target still `{BIN_NAME}`?", path.display())]
    NoObject {
        /// Where the object was expected.
        path: PathBuf,
    },
}

/// Builds [`PACKAGE`] for [`TARGET`] and returns the path of the object.
///
/// The nested cargo's output goes to stderr, where a build script's caller shows it on failure and
/// xtask shows it live. Release builds are the ones to load: unoptimised BPF code seldom passes the
/// verifier.
pub fn build(workspace_root: &Path, release: bool) -> Result<PathBuf, Error> {
    build_in(workspace_root, release, &[], &target_dir(workspace_root))
}

/// A release build of [`PACKAGE`] with `features` (e.g. the `variant-*` builds the restart test loads),
/// into `target` so that it never replaces [`build`]'s object; returns the object's path.
pub fn build_variant(
    workspace_root: &Path,
    features: &[&str],
    target: &Path,
) -> Result<PathBuf, Error> {
    build_in(workspace_root, true, features, target)
}

fn build_in(
    workspace_root: &Path,
    release: bool,
    features: &[&str],
    target: &Path,
) -> Result<PathBuf, Error> {
    let route = detect_route()?;
    let inherited = env::vars_os().map(|(name, _)| name);
    let mut cmd = ebpf_cargo_from(route, "build", workspace_root, release, inherited, target);
    cmd.args(["--bin", BIN_NAME]);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    let line = command_line(&cmd);
    eprintln!("ebpf-builder: $ {line}");
    // Our stdout may be a build script's, which cargo parses for `cargo:` lines: send the child's to stderr.
    let stdout = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| Error::Spawn {
            cmd: line.clone(),
            source,
        })?;
    let status = cmd
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::inherit())
        .status()
        .map_err(|source| Error::Spawn {
            cmd: line.clone(),
            source,
        })?;
    if !status.success() {
        return Err(Error::Failed { cmd: line, status });
    }
    let path = object_in(target, release);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::NoObject { path })
    }
}

/// The nested build's target dir, apart from the workspace's own (see the crate docs).
pub fn target_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("target").join("bpf")
}

/// Where [`build`] leaves the object.
pub fn object_path(workspace_root: &Path, release: bool) -> PathBuf {
    object_in(&target_dir(workspace_root), release)
}

fn object_in(target: &Path, release: bool) -> PathBuf {
    let profile = if release { "release" } else { "debug" };
    target.join(TARGET).join(profile).join(BIN_NAME)
}

/// A `cargo <subcommand>` for [`PACKAGE`] on [`TARGET`] through `route`, with a clean environment.
///
/// `subcommand` is `build`, `clippy`, `check`…; append its own arguments (e.g. `-- -D warnings`).
/// The command runs in `workspace_root` and uses [`target_dir`].
pub fn ebpf_cargo(route: Route, subcommand: &str, workspace_root: &Path, release: bool) -> Command {
    let inherited = env::vars_os().map(|(name, _)| name);
    let target = target_dir(workspace_root);
    ebpf_cargo_from(
        route,
        subcommand,
        workspace_root,
        release,
        inherited,
        &target,
    )
}

/// [`ebpf_cargo`] given the names of the inherited variables.
fn ebpf_cargo_from(
    route: Route,
    subcommand: &str,
    workspace_root: &Path,
    release: bool,
    inherited: impl IntoIterator<Item = OsString>,
    target: &Path,
) -> Command {
    let program = match route {
        Route::Debian => DEBIAN_CARGO,
        Route::RustupNightly => "rustup",
    };
    let mut cmd = Command::new(program);
    // Clear first: the route then sets some of these (RUSTC, RUSTC_BOOTSTRAP) to its own values.
    for name in inherited {
        if name.to_str().is_some_and(is_outer_build_var) {
            cmd.env_remove(name);
        }
    }
    match route {
        Route::Debian => {
            cmd.arg(subcommand)
                .env("RUSTC", DEBIAN_RUSTC)
                // The BPF targets are tier 3: cargo needs unstable flags to build for them.
                .env("RUSTC_BOOTSTRAP", "1");
        }
        Route::RustupNightly => {
            cmd.args(["run", "nightly", "cargo", subcommand])
                .args(["-Z", "build-std=core"]);
        }
    }
    cmd.current_dir(workspace_root)
        .args(["--package", PACKAGE, "--target", TARGET, "--target-dir"])
        .arg(target);
    if release {
        cmd.arg("--release");
    }
    cmd.env(
        "PATH",
        nested_path(route, env::var_os("PATH"), cargo_bin_dir()),
    )
    .env(
        "CARGO_ENCODED_RUSTFLAGS",
        encoded_rustflags(&bpf_target_arch()),
    );
    cmd
}

/// Whether an inherited variable describes the outer build and would steer the nested one wrong.
///
/// Cargo gives build scripts `CARGO`, `RUSTC`, `CARGO_CFG_*`, `CARGO_FEATURE_*`, `CARGO_PKG_*`,
/// `CARGO_MAKEFLAGS` (the outer jobserver), `CARGO_ENCODED_RUSTFLAGS`; rustup adds `RUSTUP_TOOLCHAIN`,
/// which would pin the nested cargo to stable. Kept: `CARGO_HOME` and the settings of the terminal and
/// of the network (`CARGO_TERM_*`, `CARGO_NET_*`, `CARGO_HTTP_*`, `CARGO_REGISTRIES_*`, `CARGO_REGISTRY_*`),
/// which say how to reach crates.io, not what to build.
pub fn is_outer_build_var(name: &str) -> bool {
    const KEEP: [&str; 5] = [
        "CARGO_TERM_",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
    ];
    match name {
        "CARGO_HOME" => false,
        "CARGO"
        | "RUSTFLAGS"
        | "RUSTDOC"
        | "RUSTDOCFLAGS"
        | "RUSTUP_TOOLCHAIN"
        | "RUSTUP_TOOLCHAIN_SOURCE" => true,
        _ if name.starts_with("CARGO_") => !KEEP.iter().any(|k| name.starts_with(k)),
        // RUSTC, RUSTC_WRAPPER, RUSTC_WORKSPACE_WRAPPER, RUSTC_BOOTSTRAP, RUSTC_LINKER; cargo's private
        // `__CARGO_*` switches.
        _ => name.starts_with("RUSTC") || name.starts_with("__CARGO"),
    }
}

/// The nested cargo's `PATH`.
///
/// Debian route: `/usr/bin` first, because cargo looks up `cargo-clippy` along `PATH` and rustup's proxy in
/// `~/.cargo/bin` would run rustup's clippy, whose sysroot has no BPF `core`. Both routes: the cargo bin
/// dir last, for `bpf-linker`.
fn nested_path(route: Route, path: Option<OsString>, cargo_bin: Option<PathBuf>) -> OsString {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if route == Route::Debian {
        dirs.push("/usr/bin".into());
    }
    dirs.extend(env::split_paths(&path.unwrap_or_default()));
    dirs.extend(cargo_bin);
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let new = !seen.contains(d);
        seen.push(d.clone());
        new
    });
    env::join_paths(dirs).unwrap_or_default()
}

/// The arch that `aya-ebpf`'s `bpf_target_arch` cfg names: the userspace target's (a build script's
/// `CARGO_CFG_TARGET_ARCH`), else this host's. It selects the pt_regs layout of kprobes; XDP ignores it.
fn bpf_target_arch() -> String {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| env::consts::ARCH.to_owned());
    // As aya-build's `target_arch_fixup`: `riscv64gc` and friends are all `riscv64` to aya.
    if arch.starts_with("riscv64") {
        "riscv64".to_owned()
    } else {
        arch
    }
}

/// The flags aya-build 0.2.0 passes: the arch cfg, full debug info, and BTF from bpf-linker (aya uses it
/// for map and program metadata).
fn encoded_rustflags(arch: &str) -> String {
    [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
    ]
    .join("\x1f")
}

/// A command as one shell-like line, with the variables it sets, to show and to quote in errors.
pub fn command_line(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k, v?)))
        // PATH and the encoded flags are long and say little; the rest is what one needs to rerun it.
        .filter(|(k, _)| !matches!(k.to_str(), Some("PATH" | "CARGO_ENCODED_RUSTFLAGS")))
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    parts.extend(
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(quote),
    );
    parts.join(" ")
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The files whose change must rebuild the object; `opengslb/build.rs` prints them as `rerun-if-changed`.
pub fn rerun_if_changed_paths(workspace_root: &Path) -> Vec<PathBuf> {
    [
        "opengslb-ebpf/src",
        "opengslb-ebpf/Cargo.toml",
        "opengslb-common/src",
        "opengslb-common/Cargo.toml",
        // The eBPF release profile and the pinned aya-ebpf version live here.
        "Cargo.toml",
        "Cargo.lock",
    ]
    .into_iter()
    .map(|p| workspace_root.join(p))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_build_vars_are_cleared() {
        for var in [
            "RUSTC",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTC_BOOTSTRAP",
            "RUSTFLAGS",
            "CARGO",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "CARGO_MAKEFLAGS",
            "CARGO_FEATURE_USER",
            "CARGO_CFG_TARGET_ARCH",
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_DIR",
            "RUSTUP_TOOLCHAIN",
            "__CARGO_FIX_PLZ",
        ] {
            assert!(is_outer_build_var(var), "{var} should be cleared");
        }
    }

    #[test]
    fn user_settings_are_kept() {
        for var in [
            "CARGO_HOME",
            "CARGO_TERM_COLOR",
            "CARGO_NET_OFFLINE",
            "CARGO_HTTP_PROXY",
            "CARGO_REGISTRIES_CRATES_IO_PROTOCOL",
            "RUSTUP_HOME",
            "PATH",
            "HOME",
            "RUST_BACKTRACE",
        ] {
            assert!(!is_outer_build_var(var), "{var} should be kept");
        }
    }

    #[test]
    fn rustflags_match_aya_build() {
        assert_eq!(
            encoded_rustflags("x86_64"),
            "--cfg=bpf_target_arch=\"x86_64\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"
        );
    }

    #[test]
    fn debian_path_puts_usr_bin_first_and_has_cargo_bin() {
        let path = nested_path(
            Route::Debian,
            Some("/root/.cargo/bin:/usr/bin:/bin".into()),
            Some("/root/.cargo/bin".into()),
        );
        assert_eq!(path, "/usr/bin:/root/.cargo/bin:/bin");
        let path = nested_path(
            Route::RustupNightly,
            Some("/bin".into()),
            Some("/h/bin".into()),
        );
        assert_eq!(path, "/bin:/h/bin");
    }

    #[test]
    fn debian_command_is_the_verified_one() {
        // As in a build script, where cargo has set RUSTC to rustup's compiler.
        let inherited =
            ["RUSTC", "RUSTC_BOOTSTRAP", "CARGO_TARGET_DIR", "HOME"].map(OsString::from);
        let cmd = ebpf_cargo_from(
            Route::Debian,
            "build",
            Path::new("/ws"),
            true,
            inherited,
            &target_dir(Path::new("/ws")),
        );
        let removed: Vec<_> = cmd.get_envs().filter(|(_, v)| v.is_none()).collect();
        assert_eq!(removed, [(OsStr::new("CARGO_TARGET_DIR"), None)]);
        assert_eq!(
            command_line(&cmd),
            "RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --package opengslb-ebpf \
             --target bpfel-unknown-none --target-dir /ws/target/bpf --release"
        );
        assert_eq!(
            object_path(Path::new("/ws"), true),
            Path::new("/ws/target/bpf/bpfel-unknown-none/release/opengslb")
        );
    }
}
