//! Response rate limiting: one bucket per client prefix, kept as a GCRA "theoretical arrival time"
//! (the generic cell rate algorithm, the token bucket written as one timestamp), so that a bucket is a
//! single `u64` to compare and advance, and an idle one needs no refilling.
//!
//! The XDP program keeps the buckets in an LRU hash map, the userspace server in LRU maps of its own; both
//! decide with [`RateState::check`], so the two paths limit alike.

/// Most client prefixes the XDP program tracks at once (an LRU map: the least recent make room).
pub const MAX_RATE_ENTRIES: u32 = 1 << 17;

/// What to do with a response the client's prefix wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: answer.
    Answer,
    /// Over the rate: send nothing.
    Drop,
    /// Over the rate, but this one is sent truncated (TC=1, no answers), so that a real client behind
    /// the prefix retries over TCP, which a spoofed one cannot.
    Slip,
}

/// The limits, as both paths read them (part of the XDP program's config).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// Nanoseconds per response at the allowed rate (`1e9 / responses_per_second`); 0: no limit.
    pub interval_ns: u64,
    /// How far ahead of now a bucket may run before responses are limited: `(burst - 1) *
    /// interval_ns`, so `burst` responses may go back to back.
    pub tolerance_ns: u64,
    /// Every `slip`-th limited response is sent truncated; 0: none is, all are dropped.
    pub slip: u32,
    /// Zero.
    pub _pad: u32,
    /// The mask that makes an IPv4 client's bucket key (applied to the `::ffff:a.b.c.d` form).
    pub mask4: [u8; 16],
    /// The mask that makes an IPv6 client's bucket key.
    pub mask6: [u8; 16],
}

impl RateLimit {
    /// `rate` responses per second and prefix, `burst` of them back to back, every `slip`-th limited
    /// one truncated, prefixes of `v4_bits` and `v6_bits`. A `rate` of 0 limits nothing.
    pub fn new(rate: u32, burst: u32, slip: u32, v4_bits: u8, v6_bits: u8) -> Self {
        if rate == 0 {
            return Self::default();
        }
        let interval_ns = (1_000_000_000 / u64::from(rate)).max(1);
        Self {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst.max(1) - 1)),
            slip,
            _pad: 0,
            mask4: prefix_mask(96 + u32::from(v4_bits.min(32))),
            mask6: prefix_mask(u32::from(v6_bits.min(128))),
        }
    }

    /// Whether responses are limited at all.
    #[inline(always)]
    pub const fn enabled(&self) -> bool {
        self.interval_ns != 0
    }

    /// The bucket key of a client address in the 16-byte form (IPv4 as `::ffff:a.b.c.d`, `v6` false).
    #[inline(always)]
    pub fn key(&self, addr: [u8; 16], v6: bool) -> [u8; 16] {
        let mask = if v6 { &self.mask6 } else { &self.mask4 };
        let (a, b) = halves(&addr);
        let (m, n) = halves(mask);
        let mut out = [0; 16];
        let (hi, lo) = out.split_at_mut(8);
        hi.copy_from_slice(&(a & m).to_ne_bytes());
        lo.copy_from_slice(&(b & n).to_ne_bytes());
        out
    }
}

/// One prefix's bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RateState {
    /// The time at which the bucket is full again (`CLOCK_MONOTONIC_COARSE` ns in the kernel).
    pub tat_ns: u64,
    /// Responses limited so far, for slip.
    pub limited: u32,
    /// Zero.
    pub _pad: u32,
}

impl RateState {
    /// The bucket of a prefix seen for the first time at `now_ns`, with that first response taken.
    #[inline(always)]
    pub const fn first(now_ns: u64, limit: &RateLimit) -> Self {
        Self {
            tat_ns: now_ns.saturating_add(limit.interval_ns),
            limited: 0,
            _pad: 0,
        }
    }

    /// Takes one response from the bucket at `now_ns`, or says what to do instead.
    #[inline(always)]
    pub fn check(&mut self, now_ns: u64, limit: &RateLimit) -> Verdict {
        let tat = if self.tat_ns > now_ns {
            self.tat_ns
        } else {
            now_ns
        };
        if tat - now_ns <= limit.tolerance_ns {
            self.tat_ns = tat.saturating_add(limit.interval_ns);
            return Verdict::Answer;
        }
        self.limited = self.limited.wrapping_add(1);
        if limit.slip != 0 && self.limited.is_multiple_of(limit.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

/// The 16-byte mask of the first `bits` bits.
fn prefix_mask(bits: u32) -> [u8; 16] {
    let mut mask = [0u8; 16];
    for (i, byte) in mask.iter_mut().enumerate() {
        let start = i as u32 * 8;
        *byte = match bits.saturating_sub(start) {
            0 => 0,
            n if n >= 8 => 0xff,
            n => 0xffu8 << (8 - n),
        };
    }
    mask
}

#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    let (h, l) = a.split_at(8);
    hi.copy_from_slice(h);
    lo.copy_from_slice(l);
    (u64::from_ne_bytes(hi), u64::from_ne_bytes(lo))
}

const _: () = assert!(size_of::<RateState>() == 16);
const _: () = assert!(size_of::<RateLimit>() == 56);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::geo_key_v4;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_burst_goes_back_to_back_then_the_rate_holds() {
        use Verdict::*;
        // 100 per second (one per 10 ms), bursts of 5, every 2nd limited one truncated.
        let limit = RateLimit::new(100, 5, 2, 24, 56);
        let now = 1_000 * MS;
        let mut b = RateState::first(now, &limit);
        let verdicts: std::vec::Vec<_> = (0..8).map(|_| b.check(now, &limit)).collect();
        assert_eq!(
            verdicts,
            [Answer, Answer, Answer, Answer, Drop, Slip, Drop, Slip],
            "the first response and 4 more make the burst of 5"
        );
        assert_eq!(b.check(now + 9 * MS, &limit), Drop, "no token yet");
        assert_eq!(
            b.check(now + 10 * MS, &limit),
            Answer,
            "one token per 10 ms"
        );
        assert_eq!(b.check(now + 10 * MS, &limit), Slip);
        // Idle for a second: the bucket is full again, whatever it held.
        let later = now + 1_000 * MS;
        let answered = (0..10).filter(|_| b.check(later, &limit) == Answer).count();
        assert_eq!(answered, 5);
    }

    #[test]
    fn over_a_second_the_answers_are_the_rate_plus_the_burst() {
        let limit = RateLimit::new(1_000, 50, 0, 24, 56);
        let mut b = RateState::first(0, &limit);
        let mut answered = 1;
        // 20 000 queries a second, one every 50 µs.
        for i in 1..20_000u64 {
            let v = b.check(i * 50_000, &limit);
            assert_ne!(v, Verdict::Slip, "slip 0 never truncates");
            answered += u32::from(v == Verdict::Answer);
        }
        assert!((1_049..=1_051).contains(&answered), "{answered}");
    }

    #[test]
    fn a_rate_of_zero_is_off_and_a_burst_of_zero_is_one() {
        assert!(!RateLimit::new(0, 10, 2, 24, 56).enabled());
        let limit = RateLimit::new(10, 0, 1, 24, 56);
        assert!(limit.enabled());
        let mut b = RateState::first(0, &limit);
        assert_eq!(
            b.check(0, &limit),
            Verdict::Slip,
            "slip 1: every limited one"
        );
        assert_eq!(RateLimit::new(u32::MAX, 1, 1, 24, 56).interval_ns, 1);
    }

    #[test]
    fn keys_are_the_client_prefix() {
        let limit = RateLimit::new(10, 1, 2, 24, 56);
        let k = |a| limit.key(geo_key_v4(a), false);
        assert_eq!(k([192, 0, 2, 1]), k([192, 0, 2, 254]));
        assert_ne!(k([192, 0, 2, 1]), k([192, 0, 3, 1]));
        assert_eq!(k([192, 0, 2, 1]), geo_key_v4([192, 0, 2, 0]));
        let v6 = |last: u8, seventh: u8| {
            let mut a = [
                0x20, 0x01, 0x0d, 0xb8, 0, 0, seventh, 0, 0, 0, 0, 0, 0, 0, 0, last,
            ];
            a[7] = last;
            limit.key(a, true)
        };
        assert_eq!(v6(1, 0), v6(2, 0), "the same /56");
        assert_ne!(v6(1, 0), v6(1, 1), "the 7th byte is inside the /56");
        let whole = RateLimit::new(10, 1, 2, 32, 128);
        assert_eq!(
            whole.key(geo_key_v4([1, 2, 3, 4]), false),
            geo_key_v4([1, 2, 3, 4])
        );
        let odd = RateLimit::new(10, 1, 2, 20, 0);
        assert_eq!(
            odd.key(geo_key_v4([10, 1, 0x1f, 9]), false),
            geo_key_v4([10, 1, 0x10, 0])
        );
        assert_eq!(odd.key([0xff; 16], true), [0; 16], "/0: one bucket for all");
    }
}
