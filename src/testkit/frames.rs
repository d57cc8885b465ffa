//! Frames the tests, benches and fuzz seeds send, built once here (with
//! etherparse, an independent writer, except where a test needs the exact
//! bytes of a hand-made minimum frame).

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::PacketBuilder;

use super::{gre_frame, vxlan_frame, CN2_UL_MAC, UL_MAC, VTEP1, VTEP2};
use crate::wire::{ethernet, ipv4, proto, UdpHeader};

/// The octets of an IPv4 address written as text.
pub fn ip4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().expect("an IPv4 address").octets()
}

/// The octets of an IPv6 address written as text.
pub fn ip6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().expect("an IPv6 address").octets()
}

/// An Ethernet / IPv4 / UDP frame from `src` to `dst` (ports `(source,
/// destination)`), checksums valid.
pub fn udp4_packet(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    ports: (u16, u16),
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(ip4(src), ip4(dst), ttl)
        .udp(ports.0, ports.1)
        .write(&mut v, payload)
        .expect("a UDP frame");
    v
}

/// An Ethernet / IPv6 / UDP frame from `src` to `dst`, checksums valid.
pub fn udp6_packet(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    ports: (u16, u16),
    hop: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(ip6(src), ip6(dst), hop)
        .udp(ports.0, ports.1)
        .write(&mut v, payload)
        .expect("a UDP frame");
    v
}

/// An ICMPv4 echo request (or reply) with identifier 7, sequence 1.
pub fn echo4_packet(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    (src, dst): ([u8; 4], [u8; 4]),
    ttl: u8,
    reply: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(src, dst, ttl);
    let b = if reply {
        b.icmpv4_echo_reply(7, 1)
    } else {
        b.icmpv4_echo_request(7, 1)
    };
    b.write(&mut v, payload).expect("an echo frame");
    v
}

/// The smallest IPv4 / UDP frame (60 bytes: 18 zero bytes of payload), IPv4
/// checksum valid, UDP checksum zero (none), written by hand: the frames of
/// the routed benchmarks and pcap tests.
pub fn udp4_min(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    (src, dst): (Ipv4Addr, Ipv4Addr),
    (sport, dport): (u16, u16),
    ttl: u8,
) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    ethernet::write(&mut f, &dst_mac, &src_mac, ethernet::ETHERTYPE_IPV4);
    let l4 = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    ipv4::write(
        &mut f[ethernet::HEADER_LEN..],
        46,
        ttl,
        proto::UDP,
        src.octets(),
        dst.octets(),
    );
    let mut u = UdpHeader::new_checked(&mut f[l4..]).expect("60 bytes hold UDP");
    u.set_src_port(sport);
    u.set_dst_port(dport);
    u.set_len(26);
    f
}

/// `inner` as cn2 sends it to cn1 in VXLAN `vni` ([`vxlan_frame`]).
pub fn vxlan_from_cn2(inner: &[u8], vni: u32) -> Vec<u8> {
    vxlan_frame(inner, vni, (CN2_UL_MAC, VTEP2), (UL_MAC, VTEP1))
}

/// `inner` as cn2 sends it to cn1 in GRE with key `key` ([`gre_frame`]).
pub fn gre_from_cn2(inner: &[u8], key: u32) -> Vec<u8> {
    gre_frame(inner, key, (CN2_UL_MAC, VTEP2), (UL_MAC, VTEP1))
}

/// A small deterministic generator (xorshift64*): the same sequence on every
/// run, for the seeded random tests and the benches' shuffles.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// An index below `n` (0 when `n` is 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `xs` (which must not be empty).
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}
