//! Bounds-checked access to the frame: the only place in the program that turns packet offsets into
//! pointers. The verifier accepts a packet access only after a comparison against `data_end` on the same
//! pointer, so every accessor checks the full extent of what it returns.

use core::mem::size_of;

use aya_ebpf::{
    helpers::{bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    programs::XdpContext,
};

/// A pointer to a `T` at `offset` in the frame, if the frame holds all of it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Copies `N` bytes at `offset` out of the frame.
#[inline(always)]
pub fn read<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let p = ptr_at::<[u8; N]>(ctx, offset)?;
    // SAFETY: `ptr_at` checked that all N bytes lie inside the frame; [u8; N] has alignment 1.
    Some(unsafe { p.read() })
}

/// Copies `N` bytes into the frame at `offset`; false if the frame is too short.
#[inline(always)]
pub fn write<const N: usize>(ctx: &XdpContext, offset: usize, bytes: [u8; N]) -> bool {
    let Some(p) = ptr_at::<[u8; N]>(ctx, offset) else {
        return false;
    };
    // SAFETY: as in `read`; XDP frames are writable.
    unsafe { p.write(bytes) };
    true
}

/// A big-endian u16 at `offset`.
#[inline(always)]
pub fn be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    read::<2>(ctx, offset).map(u16::from_be_bytes)
}

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
