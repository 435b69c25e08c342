//! The `opengslb` binary: a thin shell over the library's commands.

use clap::Parser as _;
use opengslb::cli::{Cli, run};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
