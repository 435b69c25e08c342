//! Names: the one-pass lowercasing and hashing that makes the records-map key, the comparison of a
//! query's name with an entry's, and the text-to-wire encoding the loader fills entries with.

use crate::maps::{MAX_NAME, RecordValue};

/// FNV-1a 64-bit offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One step of FNV-1a.
#[inline(always)]
pub const fn fnv1a_step(hash: u64, byte: u8) -> u64 {
    (hash ^ byte as u64).wrapping_mul(FNV_PRIME)
}

/// The records-map hash of a lowercased wire-format name (root label included).
pub fn name_hash(wire: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in wire {
        h = fnv1a_step(h, b);
    }
    h
}

/// ASCII lowercasing (RFC 4343 §3: only A–Z fold).
#[inline(always)]
pub const fn lower(b: u8) -> u8 {
    if b.is_ascii_uppercase() { b | 0x20 } else { b }
}

/// Whether the first `len` bytes of two name buffers are equal (word-wise: this runs on every answer).
#[inline(always)]
pub fn names_equal(a: &[u8; MAX_NAME], b: &[u8; MAX_NAME], len: usize) -> bool {
    for w in 0..MAX_NAME / 8 {
        let off = w * 8;
        if off >= len {
            break;
        }
        let (Some(x), Some(y)) = (word(a, off), word(b, off)) else {
            return false;
        };
        let left = len - off;
        let mask = if left >= 8 {
            u64::MAX
        } else {
            (1u64 << (left * 8)) - 1
        };
        if (x ^ y) & mask != 0 {
            return false;
        }
    }
    true
}

#[inline(always)]
fn word(buf: &[u8; MAX_NAME], off: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(off..off + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Why a text name cannot be put in the records map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// An empty label (two dots in a row, or a leading dot).
    EmptyLabel,
    /// A label over 63 bytes.
    LabelTooLong,
    /// A name over 255 bytes in wire format.
    NameTooLong,
}

/// Encodes a dotted name (a trailing dot is optional) as lowercased wire format into `out`; returns the
/// wire length, root label included. `out` past that length is zeroed, as the records map expects.
pub fn encode_name(text: &str, out: &mut [u8; MAX_NAME]) -> Result<usize, NameError> {
    *out = [0; MAX_NAME];
    let text = text.strip_suffix('.').unwrap_or(text);
    let mut pos = 0;
    if !text.is_empty() {
        for label in text.split('.') {
            let bytes = label.as_bytes();
            if bytes.is_empty() {
                return Err(NameError::EmptyLabel);
            }
            if bytes.len() > 63 {
                return Err(NameError::LabelTooLong);
            }
            if pos + 1 + bytes.len() + 1 > 255 {
                return Err(NameError::NameTooLong);
            }
            let slot = out.get_mut(pos).ok_or(NameError::NameTooLong)?;
            *slot = bytes.len() as u8;
            pos += 1;
            for &b in bytes {
                let slot = out.get_mut(pos).ok_or(NameError::NameTooLong)?;
                *slot = lower(b);
                pos += 1;
            }
        }
    }
    // The root label: `out` is already zero there.
    Ok(pos + 1)
}

impl RecordValue {
    /// An entry for `name` (dotted text) with no records yet, and the hash that keys it.
    pub fn new(name: &str, ttl: u32, max_answers: u8, slot: u32) -> Result<(Self, u64), NameError> {
        let mut v = Self {
            ttl,
            slot,
            max_answers,
            ..Self::default()
        };
        let len = encode_name(name, &mut v.name)?;
        v.name_len = len as u16;
        let hash = name_hash(v.name.get(..len).unwrap_or(&[]));
        Ok((v, hash))
    }
}
