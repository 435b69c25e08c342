//! Open TCP connections per client, so that one client cannot hold every connection the server allows.
//! A client is an IPv4 address or an IPv6 /64 (one host usually holds a whole /64).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::{Arc, Mutex, PoisonError},
};

/// The counts, shared by the accept loop and the connections' slots.
#[derive(Debug, Default)]
pub struct PerClient(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in its client's count, given back on drop.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<PerClient>,
    key: IpAddr,
}

impl PerClient {
    /// The client `ip` belongs to.
    fn key(ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
            v4 => v4,
        }
    }

    /// A slot for a connection from `ip`, unless its client already has `max` open.
    pub fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let key = Self::key(ip);
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: Arc::clone(self),
            key,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_at_most_max_and_its_slots_come_back() {
        let pc = Arc::new(PerClient::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<Slot> = (0..3).map(|_| pc.take(a, 3).expect("a slot")).collect();
        assert!(pc.take(a, 3).is_none(), "the fourth is refused");
        assert!(
            pc.take("192.0.2.2".parse().unwrap(), 3).is_some(),
            "another client is not"
        );
        drop(held);
        assert!(pc.take(a, 3).is_some(), "slots come back");
        assert!(
            pc.0.lock().unwrap().is_empty(),
            "no count is kept for no connection"
        );
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_address_is_the_address() {
        let pc = Arc::new(PerClient::default());
        let _a = pc
            .take("2001:db8:1:2::1".parse().unwrap(), 1)
            .expect("a slot");
        assert!(
            pc.take("2001:db8:1:2:ffff::9".parse().unwrap(), 1)
                .is_none(),
            "same /64"
        );
        assert!(
            pc.take("2001:db8:1:3::1".parse().unwrap(), 1).is_some(),
            "another /64"
        );
        let _b = pc.take("198.51.100.7".parse().unwrap(), 1).expect("a slot");
        assert!(
            pc.take("::ffff:198.51.100.7".parse().unwrap(), 1).is_none(),
            "the same client"
        );
    }
}
