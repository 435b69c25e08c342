//! This network namespace's interface addresses, read through `getifaddrs` (sysfs may show another
//! namespace's). For a wildcard listen address XDP answers on exactly the attached interfaces' own
//! addresses and nothing else (a resolver on 127.0.0.53 stays untouched); an agent advertises the first
//! non-loopback one.

use std::{io, net::IpAddr};

/// Every IPv4 and IPv6 address of `iface`.
pub fn addresses(iface: &str) -> io::Result<Vec<IpAddr>> {
    Ok(all()?
        .into_iter()
        .filter(|(name, _)| name == iface)
        .map(|(_, a)| a)
        .collect())
}

/// Every IPv4 and IPv6 address of every interface of this network namespace, with its interface name.
pub fn all() -> io::Result<Vec<(String, IpAddr)>> {
    Ok(nix::ifaddrs::getifaddrs()?
        .filter_map(|ifa| {
            let addr = ifa.address?;
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(addr.as_sockaddr_in6()?.ip())
            };
            Some((ifa.interface_name, ip))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn loopback_has_127_0_0_1() {
        let addrs = addresses("lo").unwrap();
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
    }
}
