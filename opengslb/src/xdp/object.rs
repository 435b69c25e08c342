//! The XDP object, built by `build.rs` (through `ebpf-builder`) and embedded in the binary, so the
//! binary runs anywhere without a separate file.

/// Aligns the embedded bytes for the ELF parser, which reads the object in place.
#[repr(C, align(32))]
struct Aligned<B: ?Sized>(B);

static OBJECT: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/opengslb.bpf.o")));

/// Why the binary holds no XDP object, if it holds none (set by `build.rs`).
pub const MISSING_REASON: Option<&str> = option_env!("OPENGSLB_EBPF_MISSING");

/// The embedded object, or `None` when the build had no BPF toolchain.
pub fn bytes() -> Option<&'static [u8]> {
    if OBJECT.0.is_empty() {
        None
    } else {
        Some(&OBJECT.0)
    }
}
