//! The outcomes the XDP program counts: one answer kind per record type, and one reason for every query it
//! leaves to userspace (`XDP_PASS`), and the two of response rate limiting. The program never guesses, and
//! drops only what rate limiting says to, so every packet it sees lands in exactly one of these.

/// One per-CPU counter slot. The discriminant is the index into the `COUNTERS` map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Answered an A query with `XDP_TX`.
    AnsweredA = 0,
    /// Answered an AAAA query with `XDP_TX`.
    AnsweredAaaa,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NotIp,
    /// A VLAN stack we do not parse (802.1ad or a second tag).
    Vlan,
    /// IPv4 header with options (IHL > 5).
    Ipv4Options,
    /// IPv4 fragment (MF set or a fragment offset).
    Fragment,
    /// IPv6 with extension headers before UDP.
    Ipv6Ext,
    /// Not UDP.
    NotUdp,
    /// UDP to another port than the DNS port.
    WrongPort,
    /// UDP to the DNS port on an address that is not one we listen on.
    WrongAddr,
    /// IP or UDP lengths that do not agree with the frame.
    Malformed,
    /// DNS message longer than the XDP path reads.
    TooLong,
    /// DNS message that ends before its header, question or OPT record does.
    Truncated,
    /// QR=1: a response, never answered (no reflection loops).
    Qr,
    /// Opcode other than QUERY.
    Opcode,
    /// TC set in a query.
    Tc,
    /// QDCOUNT other than 1.
    Qdcount,
    /// ANCOUNT or NSCOUNT other than 0.
    AnNs,
    /// ARCOUNT above 1.
    Arcount,
    /// A label length byte over 63 that is not a pointer (RFC 6891 §5 extended label types).
    BadLabel,
    /// A compression pointer in the question name.
    Compression,
    /// A question name longer than 255 bytes.
    NameTooLong,
    /// A class other than IN.
    Class,
    /// A type other than A or AAAA.
    Type,
    /// The additional record is not an EDNS OPT at the root.
    NotOpt,
    /// EDNS version above 0: userspace answers BADVERS.
    EdnsVersion,
    /// An EDNS Client Subnet option: userspace echoes it with a scope.
    Ecs,
    /// An OPT record whose options do not add up, or bytes after the last record.
    OptMalformed,
    /// A name that is not in the records map.
    UnknownName,
    /// The key matched but the stored name differs (a hash collision).
    Collision,
    /// A routing policy the XDP program does not implement.
    Policy,
    /// A map entry with no records.
    NoRecords,
    /// The reply would not fit the client's UDP size: userspace sets TC.
    TooBig,
    /// `bpf_xdp_adjust_tail` refused to grow the frame (no tailroom).
    AdjustTail,
    /// Copying the message in or out of the frame failed.
    LoadStore,
    /// A map lookup that cannot fail failed.
    Internal,
    /// Not an outcome but an event, counted besides one: an answer that grew the frame at its head
    /// because the tail had no room.
    GrewHead,
    /// The table is older than the overwatch's heartbeat allows and the policy is to pass: userspace
    /// answers (or, with the overwatch gone, nobody does).
    Stale,
    /// Not an outcome but an event, counted besides an answer: answered from a table older than the
    /// heartbeat allows, as the default policy says.
    ServedStale,
    /// Over the client prefix's response rate: dropped (`XDP_DROP`).
    RateLimited,
    /// Over the client prefix's response rate, and sent truncated (TC=1, no answers) as the slip
    /// setting says, so that a real client retries over TCP.
    RateSlipped,
}

/// How many counter slots there are.
pub const COUNTER_COUNT: u32 = Counter::RateSlipped as u32 + 1;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Self; COUNTER_COUNT as usize] = [
        Self::AnsweredA,
        Self::AnsweredAaaa,
        Self::NotIp,
        Self::Vlan,
        Self::Ipv4Options,
        Self::Fragment,
        Self::Ipv6Ext,
        Self::NotUdp,
        Self::WrongPort,
        Self::WrongAddr,
        Self::Malformed,
        Self::TooLong,
        Self::Truncated,
        Self::Qr,
        Self::Opcode,
        Self::Tc,
        Self::Qdcount,
        Self::AnNs,
        Self::Arcount,
        Self::BadLabel,
        Self::Compression,
        Self::NameTooLong,
        Self::Class,
        Self::Type,
        Self::NotOpt,
        Self::EdnsVersion,
        Self::Ecs,
        Self::OptMalformed,
        Self::UnknownName,
        Self::Collision,
        Self::Policy,
        Self::NoRecords,
        Self::TooBig,
        Self::AdjustTail,
        Self::LoadStore,
        Self::Internal,
        Self::GrewHead,
        Self::Stale,
        Self::ServedStale,
        Self::RateLimited,
        Self::RateSlipped,
    ];

    /// The index into the counters map.
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// Whether this is an event counted besides an outcome (every packet has exactly one outcome).
    pub const fn is_event(self) -> bool {
        matches!(self, Self::GrewHead | Self::ServedStale)
    }

    /// Whether this outcome is an answer sent from XDP (the rest are passes to userspace, and the rate
    /// limiter's drops and truncated replies).
    pub const fn is_answer(self) -> bool {
        matches!(self, Self::AnsweredA | Self::AnsweredAaaa)
    }

    /// A stable snake_case name, used in logs and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::AnsweredA => "answered_a",
            Self::AnsweredAaaa => "answered_aaaa",
            Self::NotIp => "not_ip",
            Self::Vlan => "vlan",
            Self::Ipv4Options => "ipv4_options",
            Self::Fragment => "fragment",
            Self::Ipv6Ext => "ipv6_ext",
            Self::NotUdp => "not_udp",
            Self::WrongPort => "wrong_port",
            Self::WrongAddr => "wrong_addr",
            Self::Malformed => "malformed",
            Self::TooLong => "too_long",
            Self::Truncated => "truncated",
            Self::Qr => "qr",
            Self::Opcode => "opcode",
            Self::Tc => "tc",
            Self::Qdcount => "qdcount",
            Self::AnNs => "an_ns",
            Self::Arcount => "arcount",
            Self::BadLabel => "bad_label",
            Self::Compression => "compression",
            Self::NameTooLong => "name_too_long",
            Self::Class => "class",
            Self::Type => "type",
            Self::NotOpt => "not_opt",
            Self::EdnsVersion => "edns_version",
            Self::Ecs => "ecs",
            Self::OptMalformed => "opt_malformed",
            Self::UnknownName => "unknown_name",
            Self::Collision => "collision",
            Self::Policy => "policy",
            Self::NoRecords => "no_records",
            Self::TooBig => "too_big",
            Self::AdjustTail => "adjust_tail",
            Self::LoadStore => "load_store",
            Self::Internal => "internal",
            Self::GrewHead => "grew_head",
            Self::Stale => "stale",
            Self::ServedStale => "served_stale",
            Self::RateLimited => "rate_limited",
            Self::RateSlipped => "rate_slipped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_names_are_unique() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i, "{c:?}");
        }
        let mut names: std::vec::Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
    }
}
