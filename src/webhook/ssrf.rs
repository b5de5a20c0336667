//! Which addresses a webhook may reach (DESIGN section 8): by default none that is
//! loopback, private, link-local, unique-local, multicast, unspecified, reserved or a
//! cloud metadata address, unless a configured network allows it.
//!
//! The check is applied to every address a name resolves to, at registration and again at
//! every attempt by the connector, on the address actually connected to, so a name that
//! resolves to a public address at registration and to 127.0.0.1 later (DNS rebinding)
//! still cannot reach inside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The networks webhooks may reach despite being internal.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed: Vec<IpNet>,
}

impl Policy {
    /// A policy with these exceptions.
    pub fn new(allowed: Vec<IpNet>) -> Policy {
        Policy { allowed }
    }

    /// Whether a call may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allowed.iter().any(|net| net.contains(&ip)) || is_public(ip)
    }
}

/// Unwraps IPv4 addresses carried inside IPv6 (mapped `::ffff:a.b.c.d`), so they are
/// judged as the IPv4 address they reach.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let internal = ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // includes 169.254.169.254, the cloud metadata address
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240; // reserved
    !internal
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let internal = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xfe00) == 0xfc00 // unique local, includes fd00:ec2::254 (metadata)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64: judged unreachable
        || first == 0x2001 && ip.segments()[1] == 0x0db8; // documentation
    !internal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        let p = Policy::default();
        for blocked in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
        ] {
            assert!(!p.permits(ip(blocked)), "{blocked} must be refused");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(p.permits(ip(public)), "{public} must be allowed");
        }
    }

    #[test]
    fn configured_networks_open_exceptions() {
        let p = Policy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        assert!(p.permits(ip("127.0.0.1")));
        assert!(p.permits(ip("::1")));
        assert!(!p.permits(ip("10.0.0.1")));
    }
}
