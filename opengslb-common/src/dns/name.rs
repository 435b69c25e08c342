//! Names: the one-pass lowercasing and hashing that makes the records-map key, the comparison of a
//! query's name with an entry's, and the text-to-wire encoding the loader fills entries with.

use crate::maps::{MAX_NAME, RecordValue};

/// The hash's starting value (the FNV-1a 64-bit offset basis).
pub const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;
/// The multiplier of each step (the FNV 64-bit prime).
const HASH_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One step of the name hash: one 8-byte word of the lowercased name (little-endian, bytes past the name
/// zero). Word-wise, so a name costs a handful of steps in the kernel rather than one per byte.
#[inline(always)]
pub const fn hash_step(hash: u64, word: u64) -> u64 {
    (hash ^ word).wrapping_mul(HASH_PRIME)
}

/// Ends the hash of a name of `len` wire bytes: mixes in the length (names differing only in trailing
/// zero bytes differ in length) and folds the high bits, which the multiplications mixed best, down.
#[inline(always)]
pub const fn hash_finish(hash: u64, len: usize) -> u64 {
    let h = hash_step(hash, len as u64);
    h ^ (h >> 29)
}

/// The records-map hash of a lowercased wire-format name (root label included).
pub fn name_hash(wire: &[u8]) -> u64 {
    let mut h = HASH_SEED;
    for chunk in wire.chunks(8) {
        let mut w = [0u8; 8];
        for (d, b) in w.iter_mut().zip(chunk) {
            *d = *b;
        }
        h = hash_step(h, u64::from_le_bytes(w));
    }
    hash_finish(h, wire.len())
}

/// ASCII lowercasing (RFC 4343 §3: only A–Z fold).
#[inline(always)]
pub const fn lower(b: u8) -> u8 {
    if b.is_ascii_uppercase() { b | 0x20 } else { b }
}

/// [`lower`] applied to each byte of a word at once. A wire name's length bytes (0..=63) are never
/// letters, so a whole name can be lowercased word by word.
#[inline(always)]
pub const fn lower_word(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte, with the high bit cleared so no sum carries into the next byte: the high bit of
    // `ge_a` is set where the byte is at least 'A', that of `gt_z` where it is above 'Z'.
    let low7 = w & !HIGH;
    let ge_a = low7 + ONES * (0x80 - b'A' as u64);
    let gt_z = low7 + ONES * (0x80 - b'Z' as u64 - 1);
    // Bytes with their own high bit set are not ASCII: never folded.
    let upper = ge_a & !gt_z & !w & HIGH;
    w | (upper >> 2)
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
