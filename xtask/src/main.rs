//! `cargo xtask`: the one place that knows how to set up, build, run and test OpenGSLB.

mod bench;
mod build_ebpf;
mod demo;
mod fuzz;
mod run;
mod setup;
mod test;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Set up, build, run and test OpenGSLB"
)]
struct Cli {
    #[command(subcommand)]
    command: Subcommand,
}

#[derive(clap::Subcommand)]
enum Subcommand {
    /// Check the eBPF toolchain, the test tools and bpffs; as root on Debian, install what is missing.
    Setup(setup::Options),
    /// Build the eBPF object (release) and print its path.
    BuildEbpf,
    /// Build opengslb (embedding the eBPF object) and run `opengslb overwatch` as root.
    Run(run::Options),
    /// Demo 2 in network namespaces (default) or with docker compose (`demo docker`).
    Demo(demo::Options),
    /// Benchmarks next to Knot DNS in network namespaces, and the bench targets; writes docs/benchmarks.md.
    Bench(bench::Options),
    /// What CI runs: fmt, clippy (userspace and eBPF), the tests, as root the privileged tests, and a
    /// short fuzz run.
    Test(test::Options),
    /// Build the fuzz targets (cargo-fuzz) and run each on its corpus, 10 minutes each by default.
    Fuzz(fuzz::Options),
}

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    let root = xtask::workspace_root();
    let result = match command {
        Subcommand::Setup(opts) => setup::setup(&opts),
        Subcommand::BuildEbpf => build_ebpf::build_ebpf(&root),
        Subcommand::Run(opts) => run::run(&root, opts),
        Subcommand::Test(opts) => test::test(&root, &opts),
        Subcommand::Demo(opts) => demo::demo(&root, opts),
        Subcommand::Bench(opts) => bench::bench(&root, &opts),
        Subcommand::Fuzz(opts) => fuzz::fuzz(&root, &opts),
    };
    // Not `main() -> Result`: that prints a backtrace whenever RUST_BACKTRACE is set, burying the message.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
