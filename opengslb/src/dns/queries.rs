//! Replies by name, type and status, the userspace server's and (added by the overwatch) the XDP
//! program's: the original's `opengslb_dns_queries_total`.
//! The name is a configured domain or `other`, and the type one of a fixed list or `other`, so a flood of
//! random names or types cannot grow the label set.

use std::{collections::HashMap, sync::Arc, sync::Mutex};

use super::{ReplyKind, Snapshot};

/// The `domain` label of a name no domain is configured for.
pub const OTHER: &str = "other";

/// A row's labels: domain, type, status.
type Labels = (Arc<str>, &'static str, &'static str);

/// Counts per `(domain, type, status)`.
#[derive(Debug, Default)]
pub struct QueryCounts {
    counts: Mutex<HashMap<Labels, u64>>,
}

impl QueryCounts {
    /// Counts one reply: its question (echoed from the query), named against `snap`'s domains.
    pub fn count(&self, snap: &Snapshot, reply: &[u8], kind: ReplyKind) {
        let (domain, qtype) = match question(reply) {
            Some((wire, len, qtype)) => (
                wire.get(..len)
                    .and_then(|w| snap.domain_of_wire(w))
                    .cloned(),
                qtype_label(qtype),
            ),
            None => (None, OTHER),
        };
        let domain = domain.unwrap_or_else(|| Arc::from(OTHER));
        if let Ok(mut counts) = self.counts.lock() {
            *counts
                .entry((domain, qtype, status_label(kind)))
                .or_default() += 1;
        }
    }

    /// Adds `n` NOERROR answers of type `qtype` for `domain`: what the XDP program answered, which
    /// userspace never sees.
    pub fn add_answers(&self, domain: Arc<str>, qtype: u16, n: u64) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts
                .entry((domain, qtype_label(qtype), status_label(ReplyKind::Answer)))
                .or_default() += n;
        }
    }

    /// Every `(domain, type, status, count)`, sorted.
    pub fn rows(&self) -> Vec<(Arc<str>, &'static str, &'static str, u64)> {
        let mut rows: Vec<_> = self
            .counts
            .lock()
            .map(|c| {
                c.iter()
                    .map(|((d, t, s), n)| (d.clone(), *t, *s, *n))
                    .collect()
            })
            .unwrap_or_default();
        rows.sort();
        rows
    }
}

/// The question of a reply: its name's wire form, lowercased (clients randomize case), and its type. Our
/// replies write the question first and uncompressed; anything else (a bare FORMERR header) has none.
fn question(reply: &[u8]) -> Option<([u8; 255], usize, u16)> {
    if reply.get(4..6)? == [0, 0] {
        return None;
    }
    let mut wire = [0u8; 255];
    let mut at = 12;
    let mut len = 0;
    loop {
        let label = usize::from(*reply.get(at)?);
        if label & 0xc0 != 0 {
            return None;
        }
        let part = reply.get(at..=at + label)?;
        wire.get_mut(len..len + part.len())?.copy_from_slice(part);
        len += part.len();
        at += label + 1;
        if label == 0 {
            break;
        }
    }
    wire[..len].make_ascii_lowercase();
    let qtype = reply.get(at..at + 2)?;
    Some((wire, len, u16::from_be_bytes([qtype[0], qtype[1]])))
}

fn qtype_label(qtype: u16) -> &'static str {
    match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        43 => "DS",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => OTHER,
    }
}

/// The reply's RCODE, as the original names it.
fn status_label(kind: ReplyKind) -> &'static str {
    match kind {
        ReplyKind::Fast | ReplyKind::Answer | ReplyKind::NoData | ReplyKind::Truncated => "NOERROR",
        ReplyKind::NxDomain => "NXDOMAIN",
        ReplyKind::Refused => "REFUSED",
        ReplyKind::FormErr => "FORMERR",
        ReplyKind::NotImp => "NOTIMP",
        ReplyKind::BadVers => "BADVERS",
    }
}
