//! Deserialization helpers: Go-style durations, IP literals, listen addresses, and enums read from strings.
//!
//! Every conversion runs inside a serde visitor, while serde_norway is still positioned on the value: an error
//! raised there carries the value's own key path (`regions[0].servers[1].address`), whereas one raised after
//! the value was read would be reported against the parent mapping.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Parses a duration in the syntax of Go's `time.ParseDuration`, which the original's config files use:
/// a sequence of decimal numbers, each with an optional fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`,
/// `m`, `h`), e.g. `"5s"`, `"500ms"`, `"1m30s"`, `"1.5h"`; `"0"` alone needs no unit. Negative durations
/// are refused: no setting of ours means anything with them.
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
