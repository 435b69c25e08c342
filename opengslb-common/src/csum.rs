//! Internet checksums (RFC 1071) for the reply the XDP program builds: the IPv4 header checksum, and the
//! full UDP checksum over IPv6. The query's checksum is never updated incrementally: on veth it is only a
//! partial sum (CHECKSUM_PARTIAL), so an incremental update would be wrong. Ours, not a crate's: it
//! runs in the XDP program, over fixed-size buffers in loops the verifier can bound.

/// Adds `len` bytes of `buf` (big-endian 16-bit words, an odd last byte padded with zero) to `sum`.
/// Bytes past the end of `buf` are not read.
#[inline(always)]
pub fn add_bytes<const N: usize>(mut sum: u64, buf: &[u8; N], len: usize) -> u64 {
    for w in 0..N.div_ceil(2) {
        let i = w * 2;
        if i >= len {
            break;
        }
        let hi = buf.get(i).copied().unwrap_or(0);
        let lo = if i + 1 < len {
            buf.get(i + 1).copied().unwrap_or(0)
        } else {
            0
        };
        sum += u64::from(u16::from_be_bytes([hi, lo]));
    }
    sum
}

/// Folds a running sum to 16 bits and complements it.
#[inline(always)]
pub fn finish(mut sum: u64) -> u16 {
    // Four folds reduce any u64 to 16 bits; written out so the loop is obviously bounded.
    for _ in 0..4 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv4 header checksum of a 20-byte header whose checksum field is zero.
#[inline(always)]
pub fn ipv4_header(hdr: &[u8; 20]) -> u16 {
    finish(add_bytes(0, hdr, 20))
}

/// The UDP checksum over IPv6 (RFC 8200 §8.1): pseudo-header, UDP header (checksum field zero) and a
/// payload of `payload_len` bytes whose [`add_bytes`] sum is `payload_sum` (summed apart, so the
/// kernel can pass it through memory after its loop; see `bounds::opaque`). A computed 0 is sent as
/// 0xffff, since 0 means "no checksum", which IPv6 forbids.
#[inline(always)]
pub fn udp6(
    src: &[u8; 16],
    dst: &[u8; 16],
    udp_header: &[u8; 8],
    payload_len: usize,
    payload_sum: u64,
) -> u16 {
    let udp_len = (payload_len + 8) as u64;
    let mut sum = add_bytes(0, src, 16);
    sum = add_bytes(sum, dst, 16);
    sum += udp_len + 17;
    sum = add_bytes(sum, udp_header, 8);
    match finish(sum + (payload_sum & 0xffff_ffff)) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_matches_known_value() {
        // The example header from RFC 1071's common reference (Wikipedia "IPv4 header checksum").
        let hdr: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header(&hdr), 0xb861);
    }

    #[test]
    fn a_header_with_its_checksum_sums_to_zero() {
        let mut hdr: [u8; 20] = [
            0x45, 0, 0, 60, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        let c = ipv4_header(&hdr);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(ipv4_header(&hdr), 0);
    }

    #[test]
    fn odd_lengths_pad_with_zero_and_ignore_bytes_past_len() {
        let a = add_bytes(0, &[1u8, 2, 3, 0xff], 3);
        assert_eq!(a, 0x0102 + 0x0300);
    }
}
