//! The `opengslb` binary: a thin shell over the library's commands.

use clap::Parser as _;
use opengslb::cli::{Cli, exit_code, run};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}
