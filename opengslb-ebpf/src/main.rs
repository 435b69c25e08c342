//! The OpenGSLB XDP program: answers A/AAAA queries for names in the records map with `XDP_TX`, and passes
//! everything else to the userspace server, counting why. With rate limiting on, answers over a client
//! prefix's rate are dropped, or sent truncated.
#![no_std]
#![no_main]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod dns;
mod floor;
mod maps;
mod ptr;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use opengslb_common::counters::Counter;

/// The entry point.
#[xdp]
pub fn opengslb_xdp(ctx: XdpContext) -> u32 {
    #[cfg(feature = "variant-program")]
    maps::bump_variant();
    match dns::answer(&ctx) {
        Ok(c) => {
            maps::bump(c);
            xdp_action::XDP_TX
        }
        Err(c) => {
            maps::bump(c);
            if c == Counter::RateLimited {
                xdp_action::XDP_DROP
            } else {
                xdp_action::XDP_PASS
            }
        }
    }
}

/// The floor the bench measures our program against (see `floor.rs`); never attached by the overwatch.
#[xdp]
pub fn opengslb_floor(ctx: XdpContext) -> u32 {
    if floor::answer(&ctx) {
        xdp_action::XDP_TX
    } else {
        xdp_action::XDP_PASS
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
