//! DNS names as everything from the config to the answer table keys them: one checked, lowercase form.

use std::{fmt, str::FromStr};

use hickory_proto::rr::Name;
use opengslb_common::{dns::encode_name, maps::MAX_NAME};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, Visitor},
};

/// A DNS name in presentation form: lowercase, without the trailing dot, its lengths within RFC 1035
/// §2.3.4 and its labels of letters, digits, '-' and '_' only (an IDN is written in its A-label form).
/// DNS names compare case-insensitively (RFC 4343): with one lowercase form, every comparison is plain
/// equality, and the wire form ([`DnsName::wire`]) is what the XDP program hashes and compares.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DnsName(String);

/// Why a text is not a [`DnsName`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// No label at all.
    #[error("must not be empty")]
    Empty,
    /// Over 253 characters without the trailing dot (255 bytes in wire form).
    #[error("{0:?} is longer than 253 characters")]
    TooLong(String),
    /// A label that breaks a rule.
    #[error("{name:?}: label {label:?} {why}")]
    Label {
        /// The name.
        name: String,
        /// The label.
        label: String,
        /// The rule it breaks.
        why: &'static str,
    },
}

impl DnsName {
    /// The name `text` spells, in any case, with or without the trailing dot.
    pub fn new(text: &str) -> Result<Self, NameError> {
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > 253 {
            return Err(NameError::TooLong(name));
        }
        for label in name.split('.') {
            let why = if label.is_empty() {
                "is empty"
            } else if label.len() > 63 {
                "is longer than 63 characters"
            } else if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                "may hold only letters, digits, '-' and '_'"
            } else if label.starts_with('-') || label.ends_with('-') {
                "must not start or end with '-'"
            } else {
                continue;
            };
            let label = label.to_owned();
            return Err(NameError::Label { name, label, why });
        }
        Ok(Self(name))
    }

    /// The name of a DNS message (a question's, say), if it is one a config could hold.
    pub fn from_hickory(name: &Name) -> Option<Self> {
        Self::new(&name.to_ascii()).ok()
    }

    /// The text: lowercase, no trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The wire form, root label included, and its length (the rest of the array is zero, as the records
    /// map holds it).
    pub fn wire(&self) -> ([u8; MAX_NAME], usize) {
        let mut out = [0; MAX_NAME];
        // `new` checked every length the encoding checks.
        let len = encode_name(&self.0, &mut out).unwrap_or(0);
        (out, len)
    }

    /// The name as hickory-proto holds it: fully qualified, lowercase.
    pub fn fqdn(&self) -> Name {
        let mut n = Name::from_ascii(&self.0).unwrap_or_default();
        n.set_fqdn(true);
        n
    }

    /// Whether this name is `zone` or lies under it.
    pub fn is_within(&self, zone: &Self) -> bool {
        self.0 == zone.0
            || self
                .0
                .strip_suffix(zone.as_str())
                .is_some_and(|head| head.ends_with('.'))
    }

    /// `label.self`, e.g. the default name server `ns1.<zone>`.
    pub fn child(&self, label: &str) -> Result<Self, NameError> {
        Self::new(&format!("{label}.{}", self.0))
    }
}

impl FromStr for DnsName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// As the text, quoted: messages say `"app.example.com"`, not a type name.
impl fmt::Debug for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for DnsName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for DnsName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for DnsName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Checked inside the visitor, while the deserializer is still on the value, so that a config error
/// names the value's own key (`domains[0].name`).
impl<'de> Deserialize<'de> for DnsName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = DnsName;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a DNS name")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<DnsName, E> {
                DnsName::new(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_without_the_trailing_dot() {
        let n = DnsName::new("App.Demo.Local.").unwrap();
        assert_eq!(n.as_str(), "app.demo.local");
        assert_eq!(n, DnsName::new("app.demo.local").unwrap());
        assert_eq!(n.fqdn().to_ascii(), "app.demo.local.");
        let (wire, len) = n.wire();
        assert_eq!(&wire[..len], b"\x03app\x04demo\x05local\x00");
        assert_eq!(DnsName::from_hickory(&n.fqdn()), Some(n));
    }

    #[test]
    fn bad_names_say_why() {
        for (text, why) in [
            ("", "must not be empty"),
            (".", "must not be empty"),
            ("www..example.com", "label \"\" is empty"),
            ("w w.example.com", "only letters, digits"),
            ("-www.example.com", "start or end with '-'"),
            (&"a".repeat(64), "longer than 63"),
            (&"abcdefghi.".repeat(26), "longer than 253"),
            ("*.example.com", "only letters, digits"),
        ] {
            let err = DnsName::new(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn within_a_zone_means_on_a_label_boundary() {
        let zone = DnsName::new("example.com").unwrap();
        let name = |s| DnsName::new(s).unwrap();
        assert!(name("example.com").is_within(&zone));
        assert!(name("a.b.Example.com").is_within(&zone));
        assert!(!name("badexample.com").is_within(&zone));
        assert!(!name("com").is_within(&zone));
        assert_eq!(zone.child("ns1").unwrap(), name("ns1.example.com"));
    }
}
