//! `cargo xtask bench`: throughput, cost per query under load, CPU per answered query and latency of
//! our XDP and userspace paths next to Knot DNS, on a veth pair between two namespaces it creates;
//! then the opengslb bench targets' sections; then docs/benchmarks.md with its plots. See
//! docs/benchmarks.md for what is measured and how.

mod goals;
mod lab;
mod load;
mod machine;
mod plot;
mod report;
mod servers;
mod targets;
mod traffic;
mod xdp;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use xtask::{cargo, exec, is_root, target_dir, which};

use crate::demo::netns::stop;
use report::{Run, Timings};
use servers::Programs;

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Options {
    /// Print one JSON object with every figure on stdout.
    #[arg(long)]
    pub json: bool,
    /// Seconds and tiny rates, to check the bench works: its figures mean nothing. Writes no report
    /// unless `--out` is given.
    #[arg(long)]
    pub smoke: bool,
    /// Where the report goes, its plots in `bench/` beside it [default: docs/benchmarks.md].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Use this opengslb binary instead of building the release one (the smoke test passes its own).
    #[arg(long)]
    pub opengslb: Option<PathBuf>,
    /// Run only these parts (comma-separated): `traffic` (the servers' runs) and bench target names
    /// (`control`, `xdp_cost`, `soak`, `shared_store`). Writes no report unless `--out` is given: a partial run would
    /// overwrite the other sections' figures.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// The soak's length in minutes, after its minute of warm-up (a smoke run soaks 10 s).
    #[arg(long, default_value_t = 10.0)]
    pub soak_minutes: f64,
}

/// The tools the runs drive, each from a package `cargo xtask setup` installs.
const TOOLS: [(&str, &str); 8] = [
    ("kxdpgun", "knot-dnsutils"),
    ("kdig", "knot-dnsutils"),
    ("knotd", "knot"),
    ("dnsperf", "dnsperf"),
    ("bpftool", "bpftool"),
    ("taskset", "util-linux"),
    // The shared_store bench target's cluster.
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
];

/// How long a bench target may run: the soak its length, its warm-up and 10 minutes more (fifty
/// agents to start and settle, every change to return); the others a fixed bound.
fn target_limit(name: &str, opts: &Options) -> Duration {
    match (name, opts.smoke) {
        (_, true) => Duration::from_secs(180),
        ("soak", false) => Duration::from_secs_f64((opts.soak_minutes + 1.0 + 10.0) * 60.0),
        _ => Duration::from_secs(420),
    }
}

/// The arguments a bench target gets besides `--json-out` and `--smoke`.
fn target_args(name: &str, opts: &Options) -> Vec<String> {
    match name {
        "soak" => vec!["--minutes".into(), opts.soak_minutes.to_string()],
        _ => Vec::new(),
    }
}

pub fn bench(root: &Path, opts: &Options) -> Result<()> {
    let machine = machine::Machine::read();
    if !is_root() {
        bail!(
            "xtask bench must run as root: it creates network namespaces, attaches XDP and turns on \
             kernel.bpf_stats_enabled (try `sudo -E cargo xtask bench`)"
        );
    }
    stop::install()?;
    if !(opts.soak_minutes.is_finite() && opts.soak_minutes > 0.0) {
        bail!("--soak-minutes must be a positive number of minutes");
    }
    let out = match (&opts.out, opts.smoke || !opts.only.is_empty()) {
        (Some(p), _) => Some(root.join(p)),
        (None, false) => Some(root.join("docs/benchmarks.md")),
        (None, true) => None,
    };
    let runs = |part: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == part);

    let started = Instant::now();
    crate::setup::ensure()?;
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(bin, _)| which(bin).is_none())
        .map(|(bin, pkg)| format!("{bin} (Debian package {pkg})"))
        .collect();
    if !missing.is_empty() {
        bail!("bench: missing: {}", missing.join(", "));
    }
    let install = started.elapsed();

    let started = Instant::now();
    let programs = build(root, opts)?;
    let build = started.elapsed();
    eprintln!(
        "bench: install/check {:.0} s, build {:.0} s",
        install.as_secs_f64(),
        build.as_secs_f64()
    );

    let started = Instant::now();
    let plan = traffic::Plan::new(opts.smoke);
    if runs("traffic") {
        eprintln!(
            "bench: traffic runs, at least {:.0} s",
            traffic::min_duration(&plan, servers::SERVERS.len()).as_secs_f64()
        );
    }
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("{}-{pid}", lab::PREFIX));
    let bpffs = Path::new("/sys/fs/bpf").join(format!("{}-{pid}", lab::PREFIX));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _cleanup = RemoveOnDrop(vec![dir.clone(), bpffs.clone()]);
    let measured = if runs("traffic") {
        traffic::run(&plan, &programs.servers, &dir, &bpffs)?
    } else {
        Vec::new()
    };
    let mut sections = Vec::new();
    for (name, exe) in &programs.targets {
        eprintln!("bench: bench target {name}");
        let section = targets::run(
            exe,
            &dir,
            opts.smoke,
            &target_args(name, opts),
            target_limit(name, opts),
        )?;
        if !opts.only.is_empty() {
            // No report is written: the section goes to the terminal.
            eprintln!("{}", section["markdown"].as_str().unwrap_or(""));
        }
        sections.push((name.clone(), section));
    }
    let measure = started.elapsed();

    let mut run = Run {
        machine,
        timings: Timings {
            install,
            build,
            measure,
        },
        traffic_goals: if runs("traffic") {
            goals::traffic(&measured)
        } else {
            Vec::new()
        },
        plan,
        smoke: opts.smoke,
        measured,
        sections,
        plots: Vec::new(),
    };
    if let Some(out) = &out {
        write_report(&mut run, out)?;
        eprintln!("bench: wrote {}", out.display());
    }
    eprintln!(
        "bench: measured for {:.0} s (install {:.0} s, build {:.0} s apart); goals:\n{}",
        measure.as_secs_f64(),
        install.as_secs_f64(),
        build.as_secs_f64(),
        report::summary(&run.goals())
    );
    if opts.json {
        println!("{}", run.json());
    }
    Ok(())
}

/// What the build gives the runs.
struct Built {
    servers: Programs,
    /// Bench targets and their executables.
    targets: Vec<(String, PathBuf)>,
}

/// Builds opengslb (release; debug for a smoke run) unless given, and the bench targets.
fn build(root: &Path, opts: &Options) -> Result<Built> {
    let opengslb = match &opts.opengslb {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("--opengslb {}", p.display()))?,
        None if opts.smoke => {
            exec(cargo(root).args(["build", "--package", "opengslb"]))?;
            target_dir(root).join("debug/opengslb")
        }
        None => {
            exec(cargo(root).args(["build", "--release", "--package", "opengslb"]))?;
            target_dir(root).join("release/opengslb")
        }
    };
    let all = targets::names(root)?;
    for part in &opts.only {
        if part != "traffic" && !all.contains(part) {
            bail!(
                "--only {part}: not `traffic` nor a bench target ({})",
                all.join(", ")
            );
        }
    }
    let names: Vec<String> = all
        .into_iter()
        .filter(|n| opts.only.is_empty() || opts.only.contains(n))
        .collect();
    eprintln!(
        "bench: bench targets: {}",
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    );
    let targets = targets::build(root, &names, opts.smoke)?;
    let xdp_cost = targets
        .iter()
        .find(|(n, _)| n == "xdp_cost")
        .map(|(_, p)| p.clone());
    Ok(Built {
        servers: Programs { opengslb, xdp_cost },
        targets,
    })
}

/// Draws the plots into `bench/` beside `out`, then writes the report.
fn write_report(run: &mut Run, out: &Path) -> Result<()> {
    let plots = out.parent().unwrap_or(Path::new(".")).join("bench");
    fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;
    let series: Vec<(String, Vec<(f64, f64)>)> = run
        .measured
        .iter()
        .filter(|m| m.skipped.is_none())
        .map(|m| {
            let points = m
                .steps
                .iter()
                .map(|s| (s.offered as f64, s.answered_fraction()))
                .collect();
            (m.server.label.to_owned(), points)
        })
        .collect();
    if !series.is_empty() {
        plot::answered(&plots.join("answered.svg"), &series)?;
        run.plots
            .push(("answered", "bench/answered.svg".to_owned()));
    }
    if let Some((cases, floor)) = xdp_cost_figures(&run.sections) {
        plot::cost(&plots.join("cost.svg"), &cases, floor)?;
        run.plots.push(("cost", "bench/cost.svg".to_owned()));
    }
    fs::write(out, run.markdown()).with_context(|| format!("writing {}", out.display()))
}

/// The `xdp_cost` section's `figures.cases` (name, median, min) and `figures.floor`, when present.
#[allow(clippy::type_complexity, reason = "a local shape, used once")]
fn xdp_cost_figures(
    sections: &[(String, serde_json::Value)],
) -> Option<(Vec<(String, f64, f64)>, Option<(f64, f64)>)> {
    let figures = &sections.iter().find(|(n, _)| n == "xdp_cost")?.1["figures"];
    let cases: Vec<(String, f64, f64)> = figures["cases"]
        .as_array()?
        .iter()
        .filter_map(|c| {
            Some((
                c["name"].as_str()?.to_owned(),
                c["median_ns"].as_f64()?,
                c["min_ns"].as_f64()?,
            ))
        })
        .collect();
    let floor = &figures["floor"];
    let floor = floor["median_ns"].as_f64().zip(floor["min_ns"].as_f64());
    (!cases.is_empty()).then_some((cases, floor))
}

/// Directories removed on drop (the run's temp dir, its bpffs dir).
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = fs::remove_dir_all(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdp_cost_figures_are_read_when_present() {
        let s: serde_json::Value = serde_json::from_str(
            r#"{"figures":{"cases":[{"name":"A hit","median_ns":300,"min_ns":250.5}],
                "floor":{"median_ns":120,"min_ns":100}}}"#,
        )
        .unwrap();
        let (cases, floor) = xdp_cost_figures(&[("xdp_cost".into(), s)]).unwrap();
        assert_eq!(cases, [("A hit".to_owned(), 300.0, 250.5)]);
        assert_eq!(floor, Some((120.0, 100.0)));
        assert!(xdp_cost_figures(&[]).is_none());
    }
}
