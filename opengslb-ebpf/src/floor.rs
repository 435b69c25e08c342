//! The floor: the least an XDP DNS responder can do, measured beside our program so its cost has a
//! reference on the same machine in the same run. It answers any UDP query to port 53 over IPv4 with one
//! fixed A record appended at the end of the frame (a question followed by EDNS gets a malformed reply:
//! correctness is not its job), turns the headers around with direct packet access, recomputes the IPv4
//! header checksum, and bumps one per-CPU counter. It is never attached by the overwatch; the bench
//! attaches it and runs it by `BPF_PROG_TEST_RUN`.

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};

use crate::maps::bump_floor;

/// The record appended: owner a pointer to the question name, A, IN, TTL 30, 192.0.2.1.
const RR: [u8; 16] = [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1];
/// Ethernet, IPv4 without options, UDP.
const DNS: usize = 42;
/// The longest frame answered.
const MAX_FRAME: usize = 1024;

/// Turns the frame into the reply (`true`: send it with `XDP_TX`).
#[inline(always)]
pub fn answer(ctx: &XdpContext) -> bool {
    let ok = reply(ctx).is_some();
    bump_floor(ok);
    ok
}

#[inline(always)]
fn reply(ctx: &XdpContext) -> Option<()> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + DNS + 12 > end {
        return None;
    }
    // SAFETY (every access below): each pointer is checked to lie within [data, data_end) first, as the
    // verifier also proves; unaligned reads and writes, since frames have no alignment.
    unsafe {
        let b = start as *mut u8;
        if (b.add(12) as *const u16).read_unaligned() != 0x0008u16
            || *b.add(14) != 0x45
            || *b.add(23) != 17
            || (b.add(36) as *const u16).read_unaligned() != 53u16.to_be()
            || *b.add(DNS + 2) & 0x80 != 0
        {
            return None;
        }
    }
    let old_len = end - start;
    if old_len > MAX_FRAME {
        return None;
    }
    // SAFETY: a helper call on our own context; no packet pointer is kept across it.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, RR.len() as i32) } != 0 {
        return None;
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    let at = crate::ptr::verifier_clamp(old_len, MAX_FRAME);
    if start + DNS + 12 > end || start + at + RR.len() > end {
        return None;
    }
    // SAFETY: as above, for the grown frame.
    unsafe {
        let b = start as *mut u8;
        (b.add(at) as *mut [u8; 16]).write_unaligned(RR);
        *b.add(DNS + 2) |= 0x84;
        (b.add(DNS + 6) as *mut u16).write_unaligned(1u16.to_be());
        let dst_mac = (b as *const [u8; 6]).read_unaligned();
        let src_mac = (b.add(6) as *const [u8; 6]).read_unaligned();
        (b as *mut [u8; 6]).write_unaligned(src_mac);
        (b.add(6) as *mut [u8; 6]).write_unaligned(dst_mac);
        let ip = b.add(14);
        let src = (ip.add(12) as *const u32).read_unaligned();
        let dst = (ip.add(16) as *const u32).read_unaligned();
        (ip.add(12) as *mut u32).write_unaligned(dst);
        (ip.add(16) as *mut u32).write_unaligned(src);
        let tot = u16::from_be((ip.add(2) as *const u16).read_unaligned()) + RR.len() as u16;
        (ip.add(2) as *mut u16).write_unaligned(tot.to_be());
        (ip.add(10) as *mut u16).write_unaligned(0);
        let mut sum: u32 = 0;
        for i in 0..10 {
            sum += u32::from((ip.add(2 * i) as *const u16).read_unaligned());
        }
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        (ip.add(10) as *mut u16).write_unaligned(!(sum as u16));
        let udp = b.add(34);
        let ports = (udp as *const u32).read_unaligned();
        (udp as *mut u32).write_unaligned(ports.rotate_left(16));
        let len = u16::from_be((udp.add(4) as *const u16).read_unaligned()) + RR.len() as u16;
        (udp.add(4) as *mut u16).write_unaligned(len.to_be());
        (udp.add(6) as *mut u16).write_unaligned(0);
    }
    Some(())
}
