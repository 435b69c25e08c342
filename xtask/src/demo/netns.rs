//! The docker-free twin of Demo 2: the same five hosts and addresses in network namespaces.

use std::path::Path;

use anyhow::{Result, bail};

/// Runs the three scenarios and prints the timeline and table (and JSON when asked).
pub fn run(_root: &Path, _opengslb: Option<&Path>, _json: bool) -> Result<()> {
    bail!(
        "the namespace demo is not built yet (its configs: {})",
        _root.join(super::DEMO_DIR).join("config").display()
    )
}
