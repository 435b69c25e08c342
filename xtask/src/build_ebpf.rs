//! `cargo xtask build-ebpf`: build the XDP object on its own, e.g. to inspect it with `bpftool` or `llvm-objdump`.

use std::path::Path;

use anyhow::{Context as _, Result};

/// Ensures the toolchain, builds the release object and prints its path on stdout.
pub fn build_ebpf(root: &Path) -> Result<()> {
    crate::setup::ensure()?;
    let path = ebpf_builder::build(root, true).context("building the eBPF object")?;
    println!("{}", path.display());
    Ok(())
}
