//! The `opengslb` binary: a thin shell over the library's commands.

use clap::Parser as _;
use opengslb::cli::{Cli, run};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    opengslb::logging::init(cli.log_level.as_deref());
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
