//! Types and pure functions shared by the OpenGSLB XDP program and userspace.
//!
//! Everything here is `no_std`, allocation-free and panic-free, because the kernel program calls the same
//! functions that the host tests call: a panic path would make the verifier reject the program.
#![no_std]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod bounds;
pub mod counters;
pub mod csum;
pub mod dns;
pub mod frame;
pub mod maps;
pub mod ratelimit;

#[cfg(test)]
extern crate std;
