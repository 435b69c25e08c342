//! `cargo xtask demo`: Demo 2 (an overwatch, three nginx webapps each with an agent, a client) either in
//! network namespaces this command creates (`netns`, the default, no docker) or with docker compose
//! (`docker`).

mod docker;
pub(crate) mod netns;

use std::path::{Path, PathBuf};

use anyhow::Result;

/// The demo's directory, relative to the workspace root.
pub const DEMO_DIR: &str = "demos/demo-2-agent-overwatch";

/// Options of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct Options {
    /// Print one JSON object with every figure (after the table).
    #[arg(long)]
    pub json: bool,
    /// Use this opengslb binary instead of building the release one (tests pass the one they built).
    #[arg(long, global = true)]
    pub opengslb: Option<PathBuf>,
    /// `docker`: the docker compose demo instead of the namespace one.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The demo's variants other than the default (network namespaces).
#[derive(clap::Subcommand)]
pub enum Command {
    /// Build the images from the host's binaries and run `docker-compose up -d --build`.
    Docker(docker::Options),
}

/// Runs the chosen demo.
pub fn demo(root: &Path, opts: Options) -> Result<()> {
    match opts.command {
        None => netns::run(root, opts.opengslb.as_deref(), opts.json),
        Some(Command::Docker(d)) => docker::run(root, opts.opengslb.as_deref(), d),
    }
}
