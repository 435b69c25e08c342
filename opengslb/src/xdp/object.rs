//! The XDP object, built by `build.rs` (through `ebpf-builder`) and embedded in the binary, so the
//! binary runs anywhere without a separate file.

/// Aligned for the ELF parser, which reads the object in place.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/opengslb.bpf.o"));

/// Why the binary holds no XDP object, if it holds none (set by `build.rs`).
pub const MISSING_REASON: Option<&str> = option_env!("OPENGSLB_EBPF_MISSING");

/// The embedded object, or `None` when the build had no BPF toolchain.
pub fn bytes() -> Option<&'static [u8]> {
    (!OBJECT.is_empty()).then_some(OBJECT)
}
