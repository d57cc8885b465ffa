//! Longest-prefix-match tables, one per router and address family.
//!
//! A table keeps one hash map per prefix length, longest first; a lookup masks the
//! address for each length present and probes that map. Routers' tables are small
//! (connected subnets, a default, a few extra routes: two to four lengths), so a
//! lookup is a few probes; insert and remove are O(1), so one route change never
//! rebuilds a table. The dataplane's IPv4 lookups go through a [`Trie4`] built
//! per router when its tables are compiled (`tables::RouterTables::fwd4`).

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

impl IntHasher {
    #[inline(always)]
    fn mix(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(26) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl Hasher for IntHasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        // The high bits are the best mixed; hashbrown takes its control byte
        // from the top 7 and the bucket from the low ones.
        self.0 ^ (self.0 >> 29)
    }
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        let mut c = bytes.chunks_exact(8);
        for w in &mut c {
            self.mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let r = c.remainder();
        if !r.is_empty() {
            let mut w = [0u8; 8];
            w[..r.len()].copy_from_slice(r);
            self.mix(u64::from_le_bytes(w) ^ (r.len() as u64) << 59);
        }
    }
    #[inline(always)]
    fn write_u8(&mut self, n: u8) {
        self.mix(n as u64);
    }
    #[inline(always)]
    fn write_u16(&mut self, n: u16) {
        self.mix(n as u64);
    }
    #[inline(always)]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }
    #[inline(always)]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
    #[inline(always)]
    fn write_isize(&mut self, n: isize) {
        self.mix(n as u64);
    }
    #[inline(always)]
    fn write_u32(&mut self, n: u32) {
        self.mix(n as u64);
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

/// An IPv4 multibit trie (four levels of 8 bits, controlled prefix expansion),
/// built whole from a table: a lookup is at most four dependent loads whatever
/// the number of routes and prefix lengths. Entry: 0 none, [`CHILD`] | node, or
/// the 1-based index of a next hop.
#[derive(Debug, Clone)]
pub struct Trie4<V: Copy = NextHop> {
    nodes: Vec<[u32; 256]>,
    hops: Vec<(u8, V)>,
}

const CHILD: u32 = 1 << 31;

impl<V: Copy> Trie4<V> {
    /// Builds the trie of `routes` (prefix, length, value).
    pub fn build(routes: impl Iterator<Item = (u32, u8, V)>) -> Trie4<V> {
        let mut rs: Vec<(u32, u8, V)> = routes.collect();
        // Shorter prefixes first: a longer one then overwrites what it covers,
        // and a node made for it inherits the shorter prefix in all its slots.
        rs.sort_by_key(|r| r.1);
        let mut t = Trie4 {
            nodes: vec![[0; 256]],
            hops: Vec::with_capacity(rs.len()),
        };
        for (p, len, nh) in rs {
            t.hops.push((len, nh));
            let v = t.hops.len() as u32;
            let mut node = 0usize;
            let mut depth = 0u32;
            while len as u32 > 8 * (depth + 1) {
                let byte = ((p >> (24 - 8 * depth)) & 0xff) as usize;
                let e = t.nodes[node][byte];
                node = if e & CHILD != 0 {
                    (e & !CHILD) as usize
                } else {
                    t.nodes.push([e; 256]);
                    let child = t.nodes.len() - 1;
                    t.nodes[node][byte] = CHILD | child as u32;
                    child
                };
                depth += 1;
            }
            let rem = len as u32 - 8 * depth;
            let byte = ((p >> (24 - 8 * depth)) & 0xff) as usize;
            let span = 1usize << (8 - rem);
            let start = byte & !(span - 1);
            for slot in &mut t.nodes[node][start..start + span] {
                // Never a child here: children come from longer prefixes, and
                // those are inserted after this one.
                debug_assert_eq!(*slot & CHILD, 0);
                *slot = v;
            }
        }
        t
    }

    /// The longest prefix containing `a`: its length and value.
    #[inline(always)]
    pub fn lookup(&self, a: u32) -> Option<(u8, V)> {
        let mut node = &self.nodes[0];
        let mut shift = 24;
        loop {
            let e = node[((a >> shift) & 0xff) as usize];
            if e & CHILD == 0 {
                return (e != 0).then(|| self.hops[e as usize - 1]);
            }
            node = &self.nodes[(e & !CHILD) as usize];
            if shift == 0 {
                return None; // unreachable: /32 is the deepest a prefix goes
            }
            shift -= 8;
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.nodes.len() * 1024 + self.hops.len() * std::mem::size_of::<(u8, V)>()
    }
}

/// One router's IPv4 and IPv6 tables.
#[derive(Debug, Clone, Default)]
pub struct Fib {
    pub v4: Lpm<u32>,
    pub v6: Lpm<u128>,
}

impl Fib {
    /// The next hop of IPv4 address `a` (the prefix length with it).
    #[inline(always)]
    pub fn lookup4(&self, a: u32) -> Option<(u8, NextHop)> {
        self.v4.lookup(a)
    }

    /// The next hop of IPv6 address `a` (the prefix length with it).
    #[inline(always)]
    pub fn lookup6(&self, a: u128) -> Option<(u8, NextHop)> {
        self.v6.lookup(a)
    }

    /// The next hop of `a` (the prefix length with it).
    #[inline(always)]
    pub fn lookup_fast(&self, a: IpAddr) -> Option<(u8, NextHop)> {
        match a {
            IpAddr::V4(a) => self.lookup4(u32::from(a)),
            IpAddr::V6(a) => self.lookup6(u128::from(a)),
        }
    }

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
            IpAddr::V4(a) => self.lookup4(u32::from(a)).map(|(len, nh)| {
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

    /// The trie answers as the per-length tables do, over random tables and
    /// addresses.
    #[test]
    fn trie_equals_the_hash_tables() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut f = Fib::default();
            let n = 1 + rnd() % 60;
            // Few distinct high bytes so that prefixes nest.
            for _ in 0..n {
                let len = (rnd() % 33) as u8;
                let a = (rnd() as u32 & 0x0303_ffff) | 0x0a00_0000;
                let net = ipnet::Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc();
                f.insert(
                    IpNet::V4(net),
                    NextHop::Connected {
                        iface: (rnd() % 7) as u16,
                    },
                );
            }
            let trie = Trie4::build(f.v4.routes());
            for _ in 0..2000 {
                let a = (rnd() as u32 & 0x0303_ffff) | 0x0a00_0000;
                let a = if rnd() % 8 == 0 { rnd() as u32 } else { a };
                assert_eq!(
                    trie.lookup(a),
                    f.v4.lookup(a),
                    "round {round}: {}",
                    Ipv4Addr::from(a)
                );
            }
        }
    }

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
