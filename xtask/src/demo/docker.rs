//! The docker compose demo: images from the host's binaries, then `docker-compose up -d --build`.

use std::path::Path;

use anyhow::{Result, bail};

/// Options of `cargo xtask demo docker`.
#[derive(clap::Args)]
pub struct Options {}

/// Builds what the demo needs and brings it up.
pub fn run(_root: &Path, _opengslb: Option<&Path>, _opts: Options) -> Result<()> {
    bail!("the docker demo is not built yet")
}
