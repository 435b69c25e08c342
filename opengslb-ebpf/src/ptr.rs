//! Access to the frame: its leading headers in place, and copies of any part of it between the frame
//! and scratch memory through two helper calls (`bpf_xdp_load_bytes`, `bpf_xdp_store_bytes`), which
//! check the frame's bounds themselves.

use aya_ebpf::{
    helpers::{bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    programs::XdpContext,
};

pub use opengslb_common::{bounds::clamp as verifier_clamp, frame::MAX_HEADERS};

/// The frame's first [`MAX_HEADERS`] bytes in place, if it has that many. The reference is valid until
/// the next helper call that grows or shrinks the frame: callers take it afresh after one.
#[inline(always)]
#[allow(clippy::mut_from_ref)] // the frame is ours alone while the program runs; see above for how long
pub fn headers(ctx: &XdpContext) -> Option<&mut [u8; MAX_HEADERS]> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + MAX_HEADERS > end {
        return None;
    }
    // SAFETY: the bytes lie within [data, data_end), as checked above and proven again by the verifier;
    // a byte array needs no alignment.
    Some(unsafe { &mut *(start as *mut [u8; MAX_HEADERS]) })
}

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
