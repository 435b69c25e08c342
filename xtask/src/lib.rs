//! What every xtask command shares: running a command visibly, the workspace's cargo, who we are.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
pub use ebpf_builder::command_line;

/// Runs `cmd` with the terminal as its stdout and stderr, after showing it; fails naming it.
pub fn exec(cmd: &mut Command) -> Result<()> {
    let line = command_line(cmd);
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Test totals summed from cargo test's `test result:` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
    /// Tests ignored in that run.
    pub ignored: u64,
}

impl Totals {
    /// Adds the counts of one `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line, if it is one.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Like [`exec`], but also reads the command's stdout (still shown as it comes) for `test result:`
/// lines and returns their totals.
pub fn exec_counting(cmd: &mut Command) -> Result<Totals> {
    use std::io::{BufRead as _, BufReader, Write as _};
    let line = command_line(cmd);
    eprintln!("$ {line}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let mut totals = Totals::default();
    if let Some(out) = child.stdout.take() {
        let mut stdout = std::io::stdout();
        for l in BufReader::new(out).lines() {
            let l = l.context("reading test output")?;
            totals.add_line(&l);
            let _ = writeln!(stdout, "{l}");
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(totals)
}

/// The workspace root: xtask lives one level below it.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo that runs xtask (`$CARGO`, rustup's stable under `cargo xtask`), in `root`.
pub fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    // `cargo run` describes xtask to it in these (CARGO_PKG_NAME=xtask, ...). Build scripts that declare
    // them `rerun-if-env-changed` (ring's does) would then see a change against a plain `cargo build` and
    // rebuild, with everything above them: minutes for opengslb in release.
    for (key, _) in env::vars_os() {
        let k = key.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
            || k == "CARGO_PRIMARY_PACKAGE"
        {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// The userspace target dir: `$CARGO_TARGET_DIR` if the user set one (relative to `root`), else `root/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d))
}

/// Whether we run as root, which attaching XDP, bpffs and network namespaces need.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Finds an executable on `PATH` or in the sbin dirs, where knotd, tcpdump and bpftool live but which a
/// non-root `PATH` often lacks.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_cargo_test_lines() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 7 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 2.62s");
        t.add_line(
            "test result: FAILED. 1 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        t.add_line("running 3 tests");
        assert_eq!(
            t,
            Totals {
                passed: 8,
                failed: 3,
                ignored: 2
            }
        );
    }
}
