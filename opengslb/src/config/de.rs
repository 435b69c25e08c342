//! Deserialization helpers: Go-style durations, IP literals, CIDRs, listen addresses, RFC 3339 timestamps,
//! and enums read from strings.
//!
//! Every conversion runs inside a serde visitor, while serde_norway is still positioned on the value: an error
//! raised there carries the value's own key path (`regions[0].servers[1].address`), whereas one raised after
//! the value was read would be reported against the parent mapping.

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// Parses a duration in the syntax of Go's `time.ParseDuration`, which the original's config files use:
/// a sequence of decimal numbers, each with an optional fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`,
/// `m`, `h`), e.g. `"5s"`, `"500ms"`, `"1m30s"`, `"1.5h"`; `"0"` alone needs no unit. Negative durations
/// are refused: no setting of ours means anything with them. Written here because the crates that parse
/// durations (humantime and the like) read another syntax: `1h30m` but not `1.5h` or `µs` as Go does.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let err = |why: &str| {
        format!("invalid duration {text:?}: {why} (expected e.g. \"5s\", \"500ms\", \"1m30s\")")
    };
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err(err("must not be negative"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let (int, after) = split_digits(rest);
        let (frac, after) = after.strip_prefix('.').map_or(("", after), split_digits);
        if int.is_empty() && frac.is_empty() {
            return Err(err("expected a number"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(err("missing unit")),
            other => {
                return Err(err(&format!(
                    "unknown unit {other:?} (use ns, us, ms, s, m or h)"
                )));
            }
        };
        // Digits past nanosecond precision cannot change the result; 18 keeps the arithmetic in range.
        let frac = frac.get(..18).unwrap_or(frac);
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| err("too large"))?
        };
        let frac_value: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| err("too large"))?
        };
        let frac_nanos = frac_value * scale / 10u128.pow(frac.len() as u32);
        nanos = whole
            .checked_mul(scale)
            .and_then(|n| n.checked_add(frac_nanos))
            .and_then(|n| n.checked_add(nanos))
            .ok_or_else(|| err("too large"))?;
        rest = after;
    }
    // Go's limit (about 292 years): a file the original accepts means the same here.
    match u64::try_from(nanos) {
        Ok(n) if n <= i64::MAX as u64 => Ok(Duration::from_nanos(n)),
        _ => Err(err("too large")),
    }
}

fn split_digits(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()))
}

/// Parses a listen address `IP:port`; `:port` means `0.0.0.0:port`, as in Go, and IPv6 is bracketed.
pub(super) fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_owned()
    };
    let addr: SocketAddr = full.parse().map_err(|_| {
        format!("invalid listen address {text:?} (expected IP:port, e.g. \"0.0.0.0:53\", \":53\" or \"[::]:53\")")
    })?;
    if addr.port() == 0 {
        return Err(format!(
            "invalid listen address {text:?}: the port must be between 1 and 65535"
        ));
    }
    Ok(addr)
}

/// A visitor that reads a scalar as text and converts it with `parse`.
struct ParseVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

/// Deserializes a scalar through a text parser; the error names the value's key.
pub(super) fn parse_with<'de, D: Deserializer<'de>, T>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    d.deserialize_str(ParseVisitor { expecting, parse })
}

/// Implements `Deserialize` for a type through its `FromStr<Err = String>`, keeping the key in errors.
macro_rules! deserialize_from_str {
    ($ty:ty, $expecting:literal) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::config::de::parse_with(d, $expecting, |s| s.parse())
            }
        }
    };
}
pub(super) use deserialize_from_str;

/// Reads a duration in Go syntax (see [`parse_duration`]).
pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_with(d, "a duration such as \"5s\"", parse_duration)
}

/// Reads an IPv4 or IPv6 address literal.
pub(super) fn ip<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    parse_with(d, "an IP address", |s| {
        s.parse().map_err(|_| format!("invalid IP address {s:?}"))
    })
}

/// Reads a listen address (see [`parse_listen_address`]).
pub(super) fn listen_address<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    parse_with(d, "an address such as \"0.0.0.0:53\"", parse_listen_address)
}

/// Reads a value that may be written as an empty key (`zones:` with nothing after it, as Go accepts),
/// giving the type's default then.
pub(super) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads an optional duration in Go syntax; an empty key means none.
pub(super) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<Duration>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"5s\"")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            duration(d).map(Some)
        }
    }
    d.deserialize_option(Opt)
}

/// Parses a CIDR such as `10.0.0.0/8` or `2001:db8::/32`. A bare address is refused, as Go's
/// `net.ParseCIDR` refuses it: write `/32` or `/128` for a single host. Host bits are cleared.
pub(super) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| {
        format!(
            "invalid CIDR {text:?} (expected an address and a prefix length, e.g. \"10.0.0.0/8\")"
        )
    })
}

/// Reads a CIDR (see [`parse_cidr`]).
pub(super) fn cidr<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    parse_with(d, "a CIDR such as \"10.0.0.0/8\"", parse_cidr)
}

/// A CIDR as a list element, so that an error names the element's index.
struct CidrItem(IpNet);

impl<'de> Deserialize<'de> for CidrItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        cidr(d).map(Self)
    }
}

/// Reads a list of CIDRs; an empty key means an empty list.
pub(super) fn cidr_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let items: Option<Vec<CidrItem>> = Option::deserialize(d)?;
    Ok(items.unwrap_or_default().into_iter().map(|c| c.0).collect())
}

/// Parses an `http://` or `https://` URL with a host, e.g. `http://127.0.0.1:9100/metrics`.
pub(super) fn parse_http_url(text: &str) -> Result<url::Url, String> {
    let err = |why: &dyn fmt::Display| {
        format!(
            "invalid URL {text:?}: {why} (expected http:// or https:// and a host, e.g. \"http://127.0.0.1/metrics\")"
        )
    };
    // The URL standard reads `http:///metrics` as host `metrics` and drops whitespace here and there;
    // either is more likely a slip than what was meant.
    if text.contains(char::is_whitespace) {
        return Err(err(&"contains whitespace"));
    }
    let url = url::Url::parse(text).map_err(|e| err(&e))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err(&format!("scheme {:?}", url.scheme())));
    }
    match text
        .get(url.scheme().len()..)
        .and_then(|rest| rest.strip_prefix("://"))
    {
        Some(authority) if !authority.is_empty() && !authority.starts_with('/') => Ok(url),
        _ => Err(err(&"no host after \"://\"")),
    }
}

/// Reads an HTTP URL (see [`parse_http_url`]).
pub(super) fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<url::Url, D::Error> {
    parse_with(
        d,
        "a URL such as \"http://127.0.0.1/metrics\"",
        parse_http_url,
    )
}

/// Reads one value or a list of them (`token` or `[token1, token2]`) as a list.
pub(super) fn one_or_many<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    struct OneOrMany<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a value or a list of values")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
            T::deserialize(de::value::StrDeserializer::new(v)).map(|t| vec![t])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_any(OneOrMany(PhantomData))
}

/// Parses an RFC 3339 timestamp, e.g. `2026-03-01T02:00:00Z` or `2026-03-01T04:00:00+02:00` (seconds
/// required, fraction optional, `Z` or an offset required; `t`, `z` and a space for `T` are accepted as
/// RFC 3339 §5.6 allows).
pub fn parse_timestamp(text: &str) -> Result<SystemTime, String> {
    let err = |why: &str| {
        format!(
            "invalid timestamp {text:?}: {why} (expected RFC 3339, e.g. \"2026-03-01T02:00:00Z\")"
        )
    };
    let b = text.as_bytes();
    let num = |range| num_in(text, range);
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if b.len() < 19
        || !at(4, b'-')
        || !at(7, b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || !at(13, b':')
        || !at(16, b':')
    {
        return Err(err("malformed"));
    }
    let fields = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    );
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = fields
    else {
        return Err(err("malformed"));
    };
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let len = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if len == 0 {
            return Err(err("empty fraction of a second"));
        }
        let digits = &frac[..len.min(9)];
        nanos = digits.parse::<u32>().map_err(|_| err("malformed"))?
            * 10u32.pow(9 - digits.len() as u32);
        rest = &frac[len..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(err("missing time zone (Z or an offset such as +02:00)")),
            };
            let (Some(h), true, Some(m), 6) = (
                num_in(rest, 1..3),
                rest.as_bytes().get(3) == Some(&b':'),
                num_in(rest, 4..6),
                rest.len(),
            ) else {
                return Err(err("malformed time zone offset"));
            };
            if h > 23 || m > 59 {
                return Err(err("time zone offset out of range"));
            }
            sign * i64::from(h * 3600 + m * 60)
        }
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return Err(err("month out of range")),
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return Err(err("date or time out of range"));
    }
    // A leap second is read as the second after it, since SystemTime has no leap seconds.
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset_secs;
    let secs = u64::try_from(secs).map_err(|_| err("before 1970"))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

fn num_in(text: &str, range: std::ops::Range<usize>) -> Option<u32> {
    let digits = text.get(range)?;
    if digits.bytes().all(|c| c.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Reads an optional RFC 3339 timestamp (see [`parse_timestamp`]).
pub(super) fn opt_timestamp<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SystemTime>, D::Error> {
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<SystemTime>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 timestamp")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            parse_with(d, "an RFC 3339 timestamp", parse_timestamp).map(Some)
        }
    }
    d.deserialize_option(Opt)
}
