//! `cargo xtask fuzz`: the fuzz targets in `fuzz/`, built with cargo-fuzz (libFuzzer, AddressSanitizer) and
//! run one after another on their committed corpora.
//!
//! cargo-fuzz passes unstable flags (`-Zsanitizer`, the coverage passes) that only a nightly rustc takes,
//! and this machine's toolchain is stable with no way to fetch another: `RUSTC_BOOTSTRAP=1` lets the
//! stable rustc take them, as rustc's own build does. cargo-afl would need the same, and bolero drives
//! libFuzzer through the same flags; cargo-fuzz is the best kept of the three.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use xtask::{cargo, command_line, exec};

/// Every target, in `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 7] = [
    "dns_gate",
    "dns_name",
    "query",
    "gossip",
    "config",
    "exposition",
    "api_request",
];

/// The cargo-fuzz verified here with Rust 1.95.
const CARGO_FUZZ: &str = "cargo-fuzz@0.13.2";

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct Options {
    /// Seconds to run each target.
    #[arg(long, default_value_t = 600)]
    pub seconds: u64,
    /// Run only this target (default: every one).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub target: Option<String>,
    /// Add the inputs that reach new code to the committed corpora (`fuzz/corpus/<target>`), to commit.
    /// Without it they go to a scratch corpus and the committed one is only read.
    #[arg(long)]
    pub grow: bool,
    /// A debug build without AddressSanitizer (overflow checks and debug assertions on), which builds in
    /// about half the time: for the short run of `cargo xtask test`.
    #[arg(long)]
    pub quick: bool,
}

impl Options {
    /// The build's flags, the same for `cargo fuzz build` and `cargo fuzz run`.
    fn build_flags(&self) -> &'static [&'static str] {
        if self.quick {
            &["--dev", "--sanitizer", "none"]
        } else {
            &["-O"]
        }
    }
}

/// Installs cargo-fuzz if it is missing, showing cargo's progress.
pub fn ensure_cargo_fuzz(root: &Path) -> Result<()> {
    let present = cargo(root)
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("fuzz: installing {CARGO_FUZZ} (about 2 min)");
    exec(cargo(root).args(["install", "--locked", CARGO_FUZZ]))
}

/// `cargo fuzz <args>` in `fuzz/`, with the stable rustc taking the unstable flags.
fn cargo_fuzz(root: &Path) -> Command {
    let mut cmd = cargo(root);
    cmd.current_dir(root.join("fuzz"))
        .arg("fuzz")
        .env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// What one target's run did.
struct Ran {
    target: &'static str,
    runs: u64,
    seconds: f64,
    corpus: usize,
}

/// Runs `cargo xtask fuzz`.
pub fn fuzz(root: &Path, opts: &Options) -> Result<()> {
    ensure_cargo_fuzz(root)?;
    eprintln!("fuzz: building the targets (several minutes the first time)");
    exec(cargo_fuzz(root).arg("build").args(opts.build_flags()))?;
    let targets: Vec<&'static str> = TARGETS
        .into_iter()
        .filter(|t| opts.target.as_deref().is_none_or(|only| only == *t))
        .collect();
    let mut ran = Vec::new();
    for target in targets {
        ran.push(run(root, target, opts)?);
    }
    println!(
        "{:<12} {:>12} {:>8} {:>8}",
        "target", "runs", "seconds", "corpus"
    );
    for r in &ran {
        println!(
            "{:<12} {:>12} {:>8.0} {:>8}",
            r.target, r.runs, r.seconds, r.corpus
        );
    }
    Ok(())
}

fn run(root: &Path, target: &'static str, opts: &Options) -> Result<Ran> {
    let committed = root.join("fuzz/corpus").join(target);
    let scratch = xtask::target_dir(root).join("fuzz-scratch").join(target);
    let artifacts = xtask::target_dir(root).join("fuzz-artifacts").join(target);
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)?;
    fs::create_dir_all(&artifacts)?;
    fs::create_dir_all(&committed)?;
    let mut cmd = cargo_fuzz(root);
    cmd.arg("run").args(opts.build_flags()).arg(target);
    // libFuzzer adds what it finds to the first corpus directory and reads the others.
    if opts.grow {
        cmd.arg(&committed);
    } else {
        cmd.arg(&scratch).arg(&committed);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={}", opts.seconds))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=4096")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    let line = command_line(&cmd);
    eprintln!("fuzz: {target} for {} s\n$ {line}", opts.seconds);
    let started = Instant::now();
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    // libFuzzer reports on stderr: keep its last lines (the crash, if any) and the final stats.
    let mut tail: Vec<String> = Vec::new();
    let mut runs = 0;
    if let Some(err) = child.stderr.take() {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(n) = l.strip_prefix("stat::number_of_executed_units:") {
                runs = n.trim().parse().unwrap_or(0);
            }
            tail.push(l);
            if tail.len() > 60 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        for l in &tail {
            eprintln!("{l}");
        }
        bail!(
            "fuzz target {target} failed ({status}); the input is in {} (replay: cd fuzz && \
             RUSTC_BOOTSTRAP=1 cargo fuzz run {} {target} <that file>)",
            artifacts.display(),
            opts.build_flags().join(" ")
        );
    }
    let corpus = fs::read_dir(&committed).map_or(0, Iterator::count)
        + if opts.grow {
            0
        } else {
            fs::read_dir(&scratch).map_or(0, Iterator::count)
        };
    Ok(Ran {
        target,
        runs,
        seconds: started.elapsed().as_secs_f64(),
        corpus,
    })
}
