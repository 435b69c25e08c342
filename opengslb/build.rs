//! Builds the XDP program (through `ebpf-builder`, by the route this machine has) and leaves the object
//! in OUT_DIR for `src/xdp/object.rs` to embed. Without a BPF toolchain the binary still builds, with an
//! empty object and a warning: it then says at start-up what to install.

use std::{env, fs, path::PathBuf};

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let root = manifest
        .parent()
        .context("the crate sits in the workspace")?;
    for p in ebpf_builder::rerun_if_changed_paths(root) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-env-changed=OPENGSLB_EBPF_OBJECT");
    let out = PathBuf::from(env::var("OUT_DIR").context("OUT_DIR")?).join("opengslb.bpf.o");

    // A prebuilt object (e.g. from `cargo xtask build-ebpf`) wins over building one here.
    if let Ok(obj) = env::var("OPENGSLB_EBPF_OBJECT") {
        fs::copy(&obj, &out).with_context(|| format!("copying {obj}"))?;
        return Ok(());
    }
    match ebpf_builder::build(root, true) {
        Ok(obj) => {
            fs::copy(&obj, &out).with_context(|| format!("copying {}", obj.display()))?;
        }
        // A missing toolchain still gives a binary (it says what to install when started); a build that
        // ran and failed is a real error.
        Err(e @ ebpf_builder::Error::Missing(_)) => {
            let first = e.to_string().lines().next().unwrap_or("unknown").to_owned();
            println!("cargo:warning=the XDP program was not built: {first}");
            println!("cargo:rustc-env=OPENGSLB_EBPF_MISSING={first}");
            fs::write(&out, []).context("writing the empty object")?;
        }
        Err(e) => return Err(e).context("building the XDP program"),
    }
    Ok(())
}
