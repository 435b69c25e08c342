//! `cargo xtask run`: build opengslb and run an overwatch with the embedded default config.

use std::{ffi::OsString, os::unix::process::CommandExt as _, path::Path, process::Command};

use anyhow::{Result, bail};
use xtask::{cargo, command_line, exec, is_root, target_dir};

/// Options of `cargo xtask run`.
#[derive(clap::Args)]
pub struct Options {
    /// Arguments for `opengslb overwatch`, after `--` (e.g. `-- --config demo.yaml`).
    #[arg(last = true)]
    pub args: Vec<OsString>,
}

/// Checks for root, ensures the toolchain, builds, then becomes `opengslb overwatch`.
pub fn run(root: &Path, opts: Options) -> Result<()> {
    if !is_root() {
        bail!(
            "xtask run must run as root: loading and attaching XDP needs CAP_BPF, CAP_NET_ADMIN \
             and CAP_PERFMON (try `sudo -E cargo xtask run`)"
        );
    }
    crate::setup::ensure()?;
    exec(cargo(root).args(["build", "--release", "--package", "opengslb"]))?;
    let mut cmd = Command::new(target_dir(root).join("release").join("opengslb"));
    // Ctrl-C then leaves nothing answering on lo; a service stays attached across restarts instead.
    cmd.args(["overwatch", "--detach-on-exit"])
        .args(opts.args)
        .current_dir(root);
    eprintln!("$ {}", command_line(&cmd));
    // exec, not spawn: Ctrl-C from the terminal then reaches the overwatch alone (which detaches XDP
    // on its way out), no xtask dies before it, and its exit code is the one the shell sees.
    let err = cmd.exec();
    bail!("cannot start `{}`: {err}", command_line(&cmd))
}
