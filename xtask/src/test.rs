//! `cargo xtask test`: every check CI runs, in order, stopping at the first failure.
//!
//! The privileged tests (XDP attach, network namespaces) are `#[ignore = "needs root: run by cargo xtask
//! test"]` so that plain `cargo test` stays unprivileged; here they run whenever we are root, and when we
//! are not, that is said loudly and fails the run unless `--unprivileged` accepts it: never a silent skip.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use ebpf_builder::{detect_route, ebpf_cargo};
use xtask::{Totals, cargo, exec, exec_counting, is_root, target_dir};

/// What `opengslb/tests/api_schema.rs` runs; kept within the major version whose flags it passes.
const SCHEMATHESIS: &str = "schemathesis>=4.32,<5";
/// Seconds each fuzz target runs in `cargo xtask test`: about a minute for all of them.
const SHORT_FUZZ_SECONDS: u64 = 8;

/// Installs schemathesis into `target/schemathesis-venv` if it is not there, showing pip's progress, so
/// that the API schema test runs it rather than installing it inside a test.
fn schemathesis_venv(root: &Path) -> Result<()> {
    let venv: PathBuf = target_dir(root).join("schemathesis-venv");
    if venv.join("bin/schemathesis").is_file() {
        eprintln!("xtask test: schemathesis present in {}", venv.display());
        return Ok(());
    }
    eprintln!(
        "xtask test: installing {SCHEMATHESIS} from PyPI into {} (about 40 s)",
        venv.display()
    );
    exec(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    exec(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--progress-bar", "on"])
            .arg(SCHEMATHESIS),
    )
}

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct Options {
    /// Succeed without root, running only the unprivileged tests.
    #[arg(long)]
    pub unprivileged: bool,
}

/// Runs the steps; the last line printed says whether all passed.
pub fn test(root: &Path, opts: &Options) -> Result<()> {
    crate::setup::ensure()?;
    schemathesis_venv(root)?;
    let root_user = is_root();
    // (name, command, whether its output holds test results)
    let mut steps: Vec<(&str, Command, bool)> = Vec::new();
    let mut fmt = cargo(root);
    fmt.args(["fmt", "--all", "--", "--check"]);
    steps.push(("rustfmt", fmt, false));
    let mut clippy = cargo(root);
    clippy.args(["clippy", "--workspace", "--exclude", ebpf_builder::PACKAGE]);
    clippy.args(["--all-targets", "--", "-D", "warnings"]);
    steps.push(("clippy (userspace)", clippy, false));
    // The eBPF crate needs the BPF target's sysroot, which only the eBPF route's clippy has.
    let mut ebpf_clippy = ebpf_cargo(detect_route()?, "clippy", root, true);
    ebpf_clippy.args(["--", "-D", "warnings"]);
    steps.push(("clippy (eBPF)", ebpf_clippy, false));
    let mut tests = cargo(root);
    tests.args(["test", "--workspace", "--exclude", ebpf_builder::PACKAGE]);
    steps.push(("tests", tests, true));
    if root_user {
        let mut privileged = cargo(root);
        privileged.args(["test", "--workspace", "--exclude", ebpf_builder::PACKAGE]);
        // `--show-output`: these tests print what they measured (drain latency percentiles, times to
        // leave and return DNS), which belongs in the CI log.
        privileged.args(["--", "--ignored", "--show-output"]);
        steps.push(("privileged tests", privileged, true));
    }
    // A short run of every fuzz target on its committed corpus: what it finds again, it still finds.
    let mut fuzz = Command::new(std::env::current_exe().context("the xtask binary")?);
    fuzz.current_dir(root).args([
        "fuzz",
        "--quick",
        "--seconds",
        &SHORT_FUZZ_SECONDS.to_string(),
    ]);
    steps.push(("fuzz (short)", fuzz, false));

    let total = steps.len();
    let mut unprivileged = Totals::default();
    let mut privileged = Totals::default();
    for (i, (name, mut cmd, counts)) in steps.into_iter().enumerate() {
        let n = i + 1;
        eprintln!("==> xtask test [{n}/{total}]: {name}");
        let result = if counts {
            exec_counting(&mut cmd).map(|t| {
                if name == "tests" {
                    unprivileged = t;
                } else {
                    privileged = t;
                }
            })
        } else {
            exec(&mut cmd)
        };
        if let Err(err) = result {
            eprintln!("xtask test: FAILED at step {n}/{total} ({name}); later steps were not run");
            return Err(err);
        }
    }
    // The privileged run lists the unprivileged tests as filtered out and runs the ignored ones: what the
    // first run ignored and the second did not run is what was skipped.
    let passed = unprivileged.passed + privileged.passed;
    let failed = unprivileged.failed + privileged.failed;
    let ran_privileged = privileged.passed + privileged.failed;
    let skipped = unprivileged.ignored.saturating_sub(ran_privileged);
    let summary = format!("tests: {passed} passed, {failed} failed, {skipped} skipped");

    if !root_user {
        let bar = "!".repeat(78);
        eprintln!("{bar}");
        eprintln!("!! xtask test: the PRIVILEGED TESTS WERE NOT RUN: they need root (XDP attach,");
        eprintln!(
            "!! bpffs, network namespaces) and this run is not root. Run as root to run them:"
        );
        eprintln!("!!     sudo -E cargo xtask test");
        eprintln!("{bar}");
        if !opts.unprivileged {
            bail!(
                "xtask test: privileged tests not run (not root); pass --unprivileged to accept that"
            );
        }
        eprintln!("xtask test: all unprivileged steps passed (privileged tests NOT run)");
        println!("{summary}");
        return Ok(());
    }
    eprintln!("xtask test: all steps passed");
    println!("{summary}");
    Ok(())
}
