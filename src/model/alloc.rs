//! Address arithmetic, address allocation and MAC generation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::Model;
use crate::mac::MacAddr;

/// The OUI of generated MACs (OpenStack's `base_mac`).
pub(super) const MAC_PREFIX: [u8; 3] = [0xfa, 0x16, 0x3e];

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    }
}

/// The prefix has no host bits set (`10.0.0.0/24`, not `10.0.0.1/24`).
pub(super) fn is_network_address(net: &IpNet) -> bool {
    net.addr() == net.network()
}

pub(super) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Why `ip` cannot be given to anything in `net`: the network address, or the
/// broadcast address of an IPv4 subnet.
pub(super) fn reserved(net: &IpNet, ip: IpAddr) -> Option<&'static str> {
    if ip == net.network() {
        Some("the network address")
    } else if matches!(net, IpNet::V4(_)) && ip == net.broadcast() {
        Some("the broadcast address")
    } else {
        None
    }
}

/// The first host address: network + 1 (the default gateway of a subnet).
pub(super) fn first_host(net: &IpNet) -> IpAddr {
    from_u128(to_u128(net.network()) + 1, matches!(net, IpNet::V6(_)))
}

/// The lowest host address of `net` for which `taken` is false: from network + 1
/// up to the broadcast address excluded (IPv4) or the last address (IPv6). It
/// looks at one more address than `taken` refuses, so it stays cheap on a /64.
pub(super) fn lowest_free(net: &IpNet, taken: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
    let v6 = matches!(net, IpNet::V6(_));
    let first = to_u128(net.network()) + 1;
    let mut last = to_u128(net.broadcast());
    if !v6 {
        last -= 1;
    }
    (first..=last)
        .map(|v| from_u128(v, v6))
        .find(|&ip| !taken(ip))
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separates the parts: ("ab", "c") and ("a", "bc") hash differently.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The `attempt`-th candidate MAC for `seed`: fa:16:3e and 24 bits of a hash.
pub(super) fn candidate_mac(seed: &str, attempt: u32) -> MacAddr {
    let h = fnv1a(&[seed.as_bytes(), &attempt.to_le_bytes()]);
    let [_, _, _, _, _, a, b, c] = h.to_be_bytes();
    MacAddr([MAC_PREFIX[0], MAC_PREFIX[1], MAC_PREFIX[2], a, b, c])
}

impl Model {
    /// Any object of the model uses this MAC (ports, router interfaces and
    /// gateways, hosts' DVR MACs and FIP gateway ports).
    pub(super) fn mac_in_use(&self, mac: MacAddr) -> bool {
        if let Some(idx) = self.idx() {
            return idx.mac_used(mac);
        }
        self.ports.values().any(|p| p.mac == mac)
            || self.routers.values().any(|r| {
                r.interfaces.iter().any(|i| i.mac == mac)
                    || r.gateway.as_ref().is_some_and(|g| g.mac == mac)
            })
            || self.hosts.values().any(|h| {
                h.dvr_mac == Some(mac) || h.fip_gateway.as_ref().is_some_and(|g| g.mac == mac)
            })
    }

    /// A MAC for a new port, router interface or gateway: deterministic (derived
    /// from `seed`, which names the object) and unused anywhere in the model.
    pub(super) fn generate_mac(&self, seed: &str) -> MacAddr {
        (0u32..)
            .map(|attempt| candidate_mac(seed, attempt))
            .find(|&m| !self.mac_in_use(m))
            .expect("2^24 candidates cannot all be taken")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn arithmetic() {
        assert!(is_network_address(&net("10.0.0.0/24")));
        assert!(!is_network_address(&net("10.0.0.1/24")));
        assert!(overlaps(&net("10.0.0.0/16"), &net("10.0.1.0/24")));
        assert!(overlaps(&net("10.0.1.0/24"), &net("10.0.0.0/16")));
        assert!(!overlaps(&net("10.0.0.0/24"), &net("10.0.1.0/24")));
        assert!(!overlaps(&net("10.0.0.0/24"), &net("fd00::/64")));
        let n = net("10.0.0.0/30");
        assert_eq!(first_host(&n), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            reserved(&n, "10.0.0.0".parse().unwrap()),
            Some("the network address")
        );
        assert_eq!(
            reserved(&n, "10.0.0.3".parse().unwrap()),
            Some("the broadcast address")
        );
        assert_eq!(reserved(&n, "10.0.0.2".parse().unwrap()), None);
        assert_eq!(
            reserved(
                &net("fd00::/64"),
                "fd00::ffff:ffff:ffff:ffff".parse().unwrap()
            ),
            None
        );
        assert_eq!(
            first_host(&net("fd00::/64")),
            "fd00::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn lowest_free_skips_taken_and_stops_at_broadcast() {
        let n = net("10.0.0.0/30");
        let a1: IpAddr = "10.0.0.1".parse().unwrap();
        let a2: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(lowest_free(&n, |_| false), Some(a1));
        assert_eq!(lowest_free(&n, |ip| ip == a1), Some(a2));
        assert_eq!(lowest_free(&n, |ip| ip == a1 || ip == a2), None);
        let v6 = net("fd00::/64");
        assert_eq!(
            lowest_free(&v6, |ip| ip == first_host(&v6)),
            Some("fd00::2".parse().unwrap())
        );
    }

    #[test]
    fn generated_macs_are_deterministic_unicast_and_local_prefix() {
        let a = candidate_mac("port/p1", 0);
        assert_eq!(a, candidate_mac("port/p1", 0));
        assert_ne!(a, candidate_mac("port/p1", 1));
        assert_ne!(a, candidate_mac("port/p2", 0));
        assert_eq!(a.0[..3], MAC_PREFIX);
        assert!(!a.is_multicast());
    }
}
