//! DNS wire code for the XDP fast path: the gate that decides whether a query can be answered from the
//! records map, the one-pass name lowercasing and hashing that makes the map key, and the reply builder.
//!
//! Every function works on fixed-size buffers with explicit lengths, so the same code runs in the kernel
//! (on per-CPU scratch buffers) and in host tests. Anything this code is not sure of is a [`Counter`](crate::counters::Counter) pass
//! reason: userspace then answers it.

mod name;
mod parse;
mod reply;
mod select;

#[cfg(test)]
mod tests;

pub use name::{
    HASH_SEED, NameError, encode_name, hash_finish, hash_step, lower, lower_word, name_hash,
    names_equal,
};
pub use parse::{Query, parse_query};
pub use reply::{build_reply, build_reply_for, build_truncated};
pub use select::{
    Draw, answer_count, answer_indices, draw_region, draws, first_index, first_index_of, in_region,
    rotated_index, select,
};

use crate::{
    frame::MAX_HEADERS,
    maps::{GeoKey, MAX_NAME, MAX_RECORDS},
};

/// The longest DNS message the XDP path reads; longer ones go to userspace.
pub const QBUF: usize = 512;
/// The longest reply the XDP path builds.
pub const RBUF: usize = 768;
/// The DNS header length (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// The UDP payload size a client without EDNS may receive (RFC 1035 §2.3.4).
pub const CLASSIC_UDP_SIZE: u16 = 512;
/// Class IN (RFC 1035 §3.2.4).
pub const CLASS_IN: u16 = 1;
/// Type OPT (RFC 6891 §6.1.1).
pub const TYPE_OPT: u16 = 41;
/// EDNS option code of Client Subnet (RFC 7871 §6).
pub const OPTION_ECS: u16 = 8;

const FLAG_QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_CD: u16 = 0x0010;
const EDNS_DO: u16 = 0x8000;
/// The longest question section: a 255-byte name plus type and class.
const MAX_QUESTION: usize = 255 + 4;

/// Per-CPU working memory of the XDP program: the query copied out of the frame and the reply built over
/// it, and the lowercased question name.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Scratch {
    /// The DNS message as received (at most [`QBUF`] bytes), then the reply built over it in place.
    pub msg: [u8; RBUF],
    /// The lowercased wire-format question name.
    pub name: [u8; MAX_NAME],
    /// Slots for [`crate::bounds::opaque`].
    pub opaque: [u64; 4],
    /// The parsed query, passed through memory for the same reason (see [`launder_query`]).
    pub parsed: Query,
    /// The frame's headers (Ethernet to UDP), copied out to be parsed and turned around
    /// ([`crate::frame`]), then written back.
    pub headers: [u8; MAX_HEADERS],
    /// The indices of the records an answer draws from (see [`select`]).
    pub sel: [u8; MAX_RECORDS],
    /// Slots for [`crate::bounds::opaque`] used by [`select`].
    pub sel_opaque: [u64; 4],
    /// The geolocation trie key being looked up (the layout of an LPM trie key: prefix length, then
    /// the 16 address bytes).
    pub geo_key: GeoKey,
}

/// Passes `q` through `s.parsed` with volatile accesses, so the verifier forgets how earlier loops
/// narrowed its fields (see [`crate::bounds::opaque`]); the fields are re-bounded here.
#[inline(always)]
pub fn launder_query(s: &mut Scratch, q: Query) -> Query {
    // SAFETY: a valid, aligned, exclusive reference; we read back exactly what we wrote.
    let mut q = unsafe {
        core::ptr::write_volatile(&mut s.parsed, q);
        core::ptr::read_volatile(&s.parsed)
    };
    q.name_len = crate::bounds::clamp(q.name_len, 255);
    q.question_end = crate::bounds::clamp(q.question_end, HEADER_LEN + MAX_QUESTION);
    q
}

impl Scratch {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            msg: [0; RBUF],
            name: [0; MAX_NAME],
            opaque: [0; 4],
            headers: [0; MAX_HEADERS],
            sel: [0; MAX_RECORDS],
            sel_opaque: [0; 4],
            geo_key: GeoKey {
                prefix_len: 0,
                data: [0; 16],
            },
            parsed: Query {
                id: 0,
                flags: 0,
                qtype: 0,
                name_len: 0,
                question_end: 0,
                hash: 0,
                edns: false,
                udp_size: 0,
                dnssec_ok: false,
            },
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

const _: () = assert!(
    size_of::<Scratch>() <= RBUF + MAX_NAME + 32 + 64 + MAX_HEADERS + 8 + MAX_RECORDS + 32 + 24
);
