//! Copying bytes between the frame and scratch memory: the program reads and writes the frame only
//! through these two helper calls (`bpf_xdp_load_bytes`, `bpf_xdp_store_bytes`), which check the frame's
//! bounds themselves, so no packet pointer is ever formed and nothing needs re-deriving after the frame
//! is grown or shrunk.

use aya_ebpf::{
    helpers::{bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    programs::XdpContext,
};

pub use opengslb_common::bounds::clamp as verifier_clamp;

/// Copies `len` bytes of the frame at `offset` into `buf` (`bpf_xdp_load_bytes`, which also reaches
/// past the linear part of a frame); false if `len` is 0 or the frame is too short.
#[inline(always)]
pub fn load_bytes<const N: usize>(
    ctx: &XdpContext,
    offset: usize,
    buf: &mut [u8; N],
    len: usize,
) -> bool {
    // verifier: the size argument must be provably within `buf` and non-zero.
    let len = verifier_clamp(len, N);
    // SAFETY: `len` ≤ N, the size of `buf`; the helper checks the frame's bounds itself.
    len != 0
        && unsafe {
            bpf_xdp_load_bytes(ctx.ctx, offset as u32, buf.as_mut_ptr().cast(), len as u32)
        } == 0
}

/// Copies the first `len` bytes of `buf` into the frame at `offset`; false if `len` is 0 or the frame is
/// too short.
#[inline(always)]
pub fn store_bytes<const N: usize>(
    ctx: &XdpContext,
    offset: usize,
    buf: &mut [u8; N],
    len: usize,
) -> bool {
    let len = verifier_clamp(len, N);
    // SAFETY: as in `load_bytes`; the helper only reads `buf`.
    len != 0
        && unsafe {
            bpf_xdp_store_bytes(ctx.ctx, offset as u32, buf.as_mut_ptr().cast(), len as u32)
        } == 0
}
