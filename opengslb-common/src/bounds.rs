//! A clamp the verifier can see. LLVM drops a bounds check it can prove redundant from facts the verifier
//! does not track (e.g. the range of `x % n` for a variable `n`), and the verifier then rejects the access.
//! On the BPF target an opaque asm move hides the value's origin from LLVM, so the comparison stays, on
//! the register that is then used.

/// `v` clamped to `0..=max`.
#[inline(always)]
pub fn clamp(v: usize, max: usize) -> usize {
    #[cfg(target_arch = "bpf")]
    let v = {
        let mut r = v as u64;
        // SAFETY: a register move onto itself; it only tells the compiler `r` may have changed. (An empty
        // block would leave two BTF line infos at one offset, which the kernel refuses.)
        unsafe { core::arch::asm!("{0} = {0}", inout(reg) r) };
        r as usize
    };
    if v > max { max } else { v }
}

/// Passes `v` through `slot` with volatile accesses. In the kernel `slot` lives in a map value, whose
/// contents the verifier does not track, so what comes back is an unknown scalar. That matters after a
/// bounded loop: a value computed from the iteration it left on (a constant on each path) would make the
/// verifier walk the rest of the program once per iteration; an unknown value lets those paths merge.
#[inline(always)]
pub fn opaque(slot: &mut u64, v: u64) -> u64 {
    // SAFETY: `slot` is a valid, aligned, exclusive reference.
    unsafe {
        core::ptr::write_volatile(slot, v);
        core::ptr::read_volatile(slot)
    }
}
