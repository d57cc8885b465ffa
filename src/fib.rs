//! Longest-prefix-match tables, one per router and address family.
//!
//! A table keeps one hash map per prefix length, longest first; a lookup masks the
//! address for each length present and probes that map. Routers' tables are small
//! (connected subnets, a default, a few extra routes: two to four lengths), so a
//! lookup is a few probes; insert and remove are O(1), so one route change never
//! rebuilds a table. (A DIR-24-8 layout for the few very large tables belongs with
//! the routed fast path of issue 4.)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Serialize;

/// Where a routed packet goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum NextHop {
    /// The destination is on the subnet of the router's interface `iface`.
    Connected { iface: u16 },
    /// Forward to `via`, a neighbour on a connected subnet.
    Via { via: IpAddr },
}

/// A multiplicative hash for integer keys: prefixes are not attacker-chosen in a
/// way that matters here (they come from the operator), and SipHash would cost
/// more than the lookup.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (n as u64 ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u128(&mut self, n: u128) {
        let x = (n as u64) ^ ((n >> 64) as u64).rotate_left(29) ^ self.0;
        self.0 = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// An LPM table over keys of `bits` bits (u32 for IPv4, u128 for IPv6).
#[derive(Debug, Clone)]
pub struct Lpm<K: Key> {
    /// (prefix length, prefixes of that length), longest first.
    levels: Vec<(u8, Map<K, NextHop>)>,
    len: usize,
}

/// An address type usable as an LPM key.
pub trait Key: Copy + Eq + std::hash::Hash + std::fmt::Debug {
    const BITS: u8;
    fn mask(self, len: u8) -> Self;
}

impl Key for u32 {
    const BITS: u8 = 32;
    #[inline(always)]
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - len as u32))
        }
    }
}

impl Key for u128 {
    const BITS: u8 = 128;
    #[inline(always)]
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - len as u32))
        }
    }
}

impl<K: Key> Default for Lpm<K> {
    fn default() -> Self {
        Lpm {
            levels: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Key> Lpm<K> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces a route. Host bits of `prefix` are ignored.
    pub fn insert(&mut self, prefix: K, len: u8, nh: NextHop) {
        let len = len.min(K::BITS);
        let key = prefix.mask(len);
        let i = match self.levels.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(i, (len, Map::default()));
                i
            }
        };
        if self.levels[i].1.insert(key, nh).is_none() {
            self.len += 1;
        }
    }

    /// Removes a route; returns what it pointed to.
    pub fn remove(&mut self, prefix: K, len: u8) -> Option<NextHop> {
        let len = len.min(K::BITS);
        let i = self.levels.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        let old = self.levels[i].1.remove(&prefix.mask(len))?;
        self.len -= 1;
        if self.levels[i].1.is_empty() {
            self.levels.remove(i);
        }
        Some(old)
    }

    /// The longest prefix containing `addr`, with its length.
    #[inline]
    pub fn lookup(&self, addr: K) -> Option<(u8, NextHop)> {
        for (len, map) in &self.levels {
            if let Some(nh) = map.get(&addr.mask(*len)) {
                return Some((*len, *nh));
            }
        }
        None
    }

    /// Every route, longest prefixes first.
    pub fn routes(&self) -> impl Iterator<Item = (K, u8, NextHop)> + '_ {
        self.levels
            .iter()
            .flat_map(|(len, m)| m.iter().map(move |(k, nh)| (*k, *len, *nh)))
    }
}

/// One router's IPv4 and IPv6 tables.
#[derive(Debug, Clone, Default)]
pub struct Fib {
    pub v4: Lpm<u32>,
    pub v6: Lpm<u128>,
}

impl Fib {
    pub fn insert(&mut self, net: IpNet, nh: NextHop) {
        match net {
            IpNet::V4(n) => self.v4.insert(u32::from(n.network()), n.prefix_len(), nh),
            IpNet::V6(n) => self.v6.insert(u128::from(n.network()), n.prefix_len(), nh),
        }
    }

    pub fn remove(&mut self, net: IpNet) -> Option<NextHop> {
        match net {
            IpNet::V4(n) => self.v4.remove(u32::from(n.network()), n.prefix_len()),
            IpNet::V6(n) => self.v6.remove(u128::from(n.network()), n.prefix_len()),
        }
    }

    pub fn lookup(&self, addr: IpAddr) -> Option<(IpNet, NextHop)> {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)).map(|(len, nh)| {
                let n = ipnet::Ipv4Net::new(Ipv4Addr::from(u32::from(a).mask(len)), len)
                    .expect("valid length");
                (IpNet::V4(n), nh)
            }),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)).map(|(len, nh)| {
                let n = ipnet::Ipv6Net::new(Ipv6Addr::from(u128::from(a).mask(len)), len)
                    .expect("valid length");
                (IpNet::V6(n), nh)
            }),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every route as (prefix, next hop), IPv4 first, longest prefixes first.
    pub fn routes(&self) -> Vec<(IpNet, NextHop)> {
        let mut out: Vec<(IpNet, NextHop)> = self
            .v4
            .routes()
            .map(|(k, l, nh)| {
                (
                    IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(k), l).expect("len")),
                    nh,
                )
            })
            .chain(self.v6.routes().map(|(k, l, nh)| {
                (
                    IpNet::V6(ipnet::Ipv6Net::new(Ipv6Addr::from(k), l).expect("len")),
                    nh,
                )
            }))
            .collect();
        out.sort_by(|a, b| {
            (
                matches!(a.0, IpNet::V6(_)),
                std::cmp::Reverse(a.0.prefix_len()),
                a.0.network(),
            )
                .cmp(&(
                    matches!(b.0, IpNet::V6(_)),
                    std::cmp::Reverse(b.0.prefix_len()),
                    b.0.network(),
                ))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut f = Fib::default();
        f.insert(
            net("0.0.0.0/0"),
            NextHop::Via {
                via: ip("203.0.113.1"),
            },
        );
        f.insert(
            net("10.0.0.0/8"),
            NextHop::Via {
                via: ip("10.0.1.9"),
            },
        );
        f.insert(net("10.0.1.0/24"), NextHop::Connected { iface: 0 });
        f.insert(net("10.0.1.128/25"), NextHop::Connected { iface: 1 });
        assert_eq!(
            f.lookup(ip("10.0.1.200")).unwrap().1,
            NextHop::Connected { iface: 1 }
        );
        assert_eq!(
            f.lookup(ip("10.0.1.5")),
            Some((net("10.0.1.0/24"), NextHop::Connected { iface: 0 }))
        );
        assert_eq!(f.lookup(ip("10.9.9.9")).unwrap().0, net("10.0.0.0/8"));
        assert_eq!(f.lookup(ip("8.8.8.8")).unwrap().0, net("0.0.0.0/0"));
        assert_eq!(f.len(), 4);
        assert_eq!(
            f.remove(net("10.0.1.128/25")),
            Some(NextHop::Connected { iface: 1 })
        );
        assert_eq!(
            f.lookup(ip("10.0.1.200")).unwrap().1,
            NextHop::Connected { iface: 0 }
        );
        assert_eq!(f.remove(net("10.0.1.128/25")), None);
        assert_eq!(f.len(), 3);
        assert_eq!(f.v4.levels.len(), 3, "empty levels are removed");
    }

    #[test]
    fn ipv6_and_no_route() {
        let mut f = Fib::default();
        f.insert(net("2001:db8:1::/64"), NextHop::Connected { iface: 2 });
        f.insert(
            net("2001:db8::/32"),
            NextHop::Via {
                via: ip("2001:db8:1::9"),
            },
        );
        assert_eq!(
            f.lookup(ip("2001:db8:1::5")).unwrap().1,
            NextHop::Connected { iface: 2 }
        );
        assert_eq!(
            f.lookup(ip("2001:db8:ffff::1")).unwrap().0,
            net("2001:db8::/32")
        );
        assert_eq!(f.lookup(ip("2001:db9::1")), None);
        assert_eq!(f.lookup(ip("10.0.0.1")), None, "families are separate");
    }

    #[test]
    fn matches_a_linear_scan_on_random_tables() {
        // A deterministic pseudo-random table, checked against the obvious answer.
        let mut x: u64 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut lpm = Lpm::<u32>::default();
        let mut all: Vec<(u32, u8, u16)> = Vec::new();
        for i in 0..2000u16 {
            let len = (next() % 33) as u8;
            let p = (next() as u32).mask(len);
            lpm.insert(p, len, NextHop::Connected { iface: i });
            all.retain(|(q, l, _)| !(*q == p && *l == len));
            all.push((p, len, i));
        }
        for _ in 0..5000 {
            let a = next() as u32;
            let want = all
                .iter()
                .filter(|(p, l, _)| a.mask(*l) == *p)
                .max_by_key(|(_, l, _)| *l)
                .map(|(_, l, i)| (*l, NextHop::Connected { iface: *i }));
            assert_eq!(lpm.lookup(a), want, "{a:#x}");
        }
        assert_eq!(lpm.len(), all.len());
    }
}
