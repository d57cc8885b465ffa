//! Packet bytes: a mutable frame view with headroom (what a single-segment mbuf
//! is), header offsets and constants, Internet checksums (full and incremental),
//! and the few header writers the pipeline needs. No allocation, no `unsafe`:
//! the same code runs on mbufs in the workers and on plain buffers in `trace`,
//! the tests and the fuzz targets.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_LEN: usize = 14;
pub const VLAN_LEN: usize = 4;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
pub const UDP_LEN: usize = 8;
pub const ICMP_LEN: usize = 8;
pub const VXLAN_LEN: usize = 8;
/// GRE with the key bit: flags/version, protocol, key.
pub const GRE_LEN: usize = 8;
/// Outer Ethernet + IPv4 + UDP + VXLAN.
pub const VXLAN_OVERHEAD: usize = ETH_LEN + IPV4_LEN + UDP_LEN + VXLAN_LEN;
/// Outer Ethernet + IPv4 + GRE with key.
pub const GRE_OVERHEAD: usize = ETH_LEN + IPV4_LEN + GRE_LEN;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// GRE protocol of a transported Ethernet frame (transparent Ethernet bridging).
pub const ETHERTYPE_TEB: u16 = 0x6558;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_GRE: u8 = 47;
pub const PROTO_ICMPV6: u8 = 58;

pub const VXLAN_PORT: u16 = 4789;

/// A frame in a buffer with room in front (headroom) and behind (tailroom):
/// `buf[off..off + len]` is the frame. Headers can be pushed in front
/// ([`Frame::prepend`]), stripped ([`Frame::adj`]) and the tail cut
/// ([`Frame::trim`]) without copying the payload.
#[derive(Debug)]
pub struct Frame<'a> {
    buf: &'a mut [u8],
    off: usize,
    len: usize,
}

impl<'a> Frame<'a> {
    /// The frame `buf[off..off + len]`; `None` if that is outside `buf`.
    pub fn new(buf: &'a mut [u8], off: usize, len: usize) -> Option<Frame<'a>> {
        (off.checked_add(len)? <= buf.len()).then_some(Frame { buf, off, len })
    }

    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }

    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the frame starts in the buffer.
    #[inline(always)]
    pub fn offset(&self) -> usize {
        self.off
    }

    /// Grows the frame by `n` bytes in front (contents unspecified); false if
    /// the headroom is too small.
    #[inline(always)]
    pub fn prepend(&mut self, n: usize) -> bool {
        if n > self.off {
            return false;
        }
        self.off -= n;
        self.len += n;
        true
    }

    /// Removes `n` bytes from the front; false if the frame is shorter.
    #[inline(always)]
    pub fn adj(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.off += n;
        self.len -= n;
        true
    }

    /// Cuts the frame to `len` bytes (never grows it).
    #[inline(always)]
    pub fn trim(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Grows the frame by `n` bytes at the end (contents unspecified); false if
    /// the tailroom is too small.
    pub fn extend(&mut self, n: usize) -> bool {
        // `off + len <= buf.len()` always: no sum that could overflow.
        if n > self.buf.len() - self.off - self.len {
            return false;
        }
        self.len += n;
        true
    }
}

/// A frame that a worker's flow cache way rewrites where it lies
/// ([`crate::pipeline::fast`]): an mbuf of a burst ([`crate::sys::Pkt`]), or
/// a [`Frame`].
pub trait InPlace {
    /// Its bytes; `None` when they are not one contiguous run.
    fn bytes(&mut self) -> Option<&mut [u8]>;
    /// Grows it by `n` bytes in front (contents unspecified) and returns its
    /// bytes then; `None`, with nothing changed, when the headroom is too
    /// small or the bytes are not one run.
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]>;
}

impl InPlace for Frame<'_> {
    #[inline(always)]
    fn bytes(&mut self) -> Option<&mut [u8]> {
        Some(self.data_mut())
    }

    #[inline(always)]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        Frame::prepend(self, n).then(|| self.data_mut())
    }
}

#[inline(always)]
pub fn be16(b: &[u8], at: usize) -> u16 {
    // One bounds check for the range, not one per byte.
    u16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

#[inline(always)]
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[inline(always)]
pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(be32(b, at))
}

#[inline(always)]
pub fn ipv6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let a: [u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
    Ipv6Addr::from(a)
}

/// The one's complement sum of `b` (16-bit big-endian words, odd byte padded),
/// added to `sum`, not folded.
pub fn csum_add(mut sum: u32, b: &[u8]) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u16::from_be_bytes([c[0], c[1]]) as u32);
        // Fold early enough that the sum never wraps (a frame is < 64 KiB).
        if sum >= 0xffff_0000 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add((*last as u32) << 8);
    }
    sum
}

/// Folds a sum to 16 bits and complements it: the checksum field's value.
#[inline]
pub fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum of `b`. The one's complement sum does not depend on
/// byte order (RFC 1071, 2.(B)): 32-bit words are summed into 64 bits and
/// folded once.
#[inline]
pub fn checksum(b: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut c = b.chunks_exact(4);
    for w in &mut c {
        sum += u32::from_be_bytes(w.try_into().expect("4 bytes")) as u64;
    }
    let r = c.remainder();
    let mut tail = [0u8; 4];
    tail[..r.len()].copy_from_slice(r);
    sum += u32::from_be_bytes(tail) as u64;
    // Fold 64 → 32 → 16 bits with end-around carries.
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Whether a 20-byte IPv4 header (no options) sums to all ones: its checksum
/// is right. Three little-endian loads (8, 8 and 4 bytes) added with
/// end-around carries: a ones' complement sum taken in the other byte order
/// is the byte-swapped sum, and all ones swapped is all ones.
#[inline(always)]
pub fn ipv4_header_sum_ok(h: &[u8; 20]) -> bool {
    let (a, rest) = h.split_first_chunk::<8>().expect("20 bytes");
    let (b, c) = rest.split_first_chunk::<8>().expect("12 bytes");
    let c: &[u8; 4] = c.try_into().expect("4 bytes");
    let (s, o) = u64::from_le_bytes(*a).overflowing_add(u64::from_le_bytes(*b));
    // A carry out leaves at most 2^64 - 2: adding it back cannot overflow.
    let s = s + o as u64;
    let (s, o) = s.overflowing_add(u32::from_le_bytes(*c) as u64);
    let s = s + o as u64;
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16 == 0xffff
}

/// The checksum field after a 16-bit word of the covered data changed from
/// `old` to `new` (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline(always)]
pub fn csum_update16(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!check as u32) + (!old as u32) + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Decrements the TTL of the IPv4 header `ip` (the caller checked it is > 1)
/// and updates its checksum. The new TTL/protocol word is computed in a
/// register and stored once: storing the TTL byte and then reading the word
/// back would stall on store forwarding (a byte store cannot feed a 16-bit load).
#[inline(always)]
pub fn dec_ttl4(ip: &mut [u8]) {
    let old = be16(ip, 8);
    let new = old.wrapping_sub(0x100);
    let c = csum_update16(be16(ip, 10), old, new);
    put16(ip, 8, new);
    put16(ip, 10, c);
}

/// [`csum_update16`] for a 32-bit field (two words).
#[inline(always)]
pub fn csum_update32(check: u16, old: u32, new: u32) -> u16 {
    let c = csum_update16(check, (old >> 16) as u16, (new >> 16) as u16);
    csum_update16(c, old as u16, new as u16)
}

/// The sum of the IPv6 pseudo-header (RFC 8200, 8.1) for an upper-layer packet
/// of `len` bytes and protocol `next`.
pub fn pseudo6(src: &[u8], dst: &[u8], len: u32, next: u8) -> u32 {
    let mut s = csum_add(0, src);
    s = csum_add(s, dst);
    s = s.wrapping_add(len >> 16).wrapping_add(len & 0xffff);
    s.wrapping_add(next as u32)
}

/// The sum of the IPv4 pseudo-header for an upper-layer packet of `len` bytes.
pub fn pseudo4(src: &[u8], dst: &[u8], len: u16, proto: u8) -> u32 {
    let mut s = csum_add(0, src);
    s = csum_add(s, dst);
    s.wrapping_add(len as u32).wrapping_add(proto as u32)
}

/// Writes an Ethernet header at the start of `b`.
#[inline(always)]
pub fn write_eth(b: &mut [u8], dst: &[u8; 6], src: &[u8; 6], ethertype: u16) {
    b[0..6].copy_from_slice(dst);
    b[6..12].copy_from_slice(src);
    put16(b, 12, ethertype);
}

/// Writes a 20-byte IPv4 header (no options, DF set, id 0) with its checksum at
/// the start of `b`.
pub fn write_ipv4(b: &mut [u8], total_len: u16, ttl: u8, proto: u8, src: [u8; 4], dst: [u8; 4]) {
    b[0] = 0x45;
    b[1] = 0;
    put16(b, 2, total_len);
    put16(b, 4, 0);
    put16(b, 6, 0x4000);
    b[8] = ttl;
    b[9] = proto;
    put16(b, 10, 0);
    b[12..16].copy_from_slice(&src);
    b[16..20].copy_from_slice(&dst);
    let c = checksum(&b[..IPV4_LEN]);
    put16(b, 10, c);
}

/// Writes a 40-byte IPv6 header at the start of `b`.
pub fn write_ipv6(b: &mut [u8], payload_len: u16, next: u8, hop: u8, src: &[u8], dst: &[u8]) {
    put32(b, 0, 6 << 28);
    put16(b, 4, payload_len);
    b[6] = next;
    b[7] = hop;
    b[8..24].copy_from_slice(src);
    b[24..40].copy_from_slice(dst);
}

/// A hash of an inner frame's flow (addresses, protocol, ports when present),
/// for the outer UDP source port of VXLAN (ECMP entropy): the same flow always
/// gets the same port.
#[inline(always)]
pub fn flow_hash(inner: &[u8]) -> u32 {
    if inner.len() < ETH_LEN {
        return 0;
    }
    let et = be16(inner, 12);
    if et == ETHERTYPE_IPV4 {
        if let Some(ip) = inner[ETH_LEN..].first_chunk::<IPV4_LEN>() {
            // The common case, with a short dependency chain: both addresses
            // in one word, the ports and protocol in another, one final mix.
            let addrs = u64::from_le_bytes(ip[12..20].try_into().expect("8 bytes"));
            let proto = ip[9];
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            let b = &inner[ETH_LEN..];
            let ports = match b.get(ihl..ihl + 4) {
                Some(p) if matches!(proto, PROTO_TCP | PROTO_UDP) => {
                    u32::from_le_bytes(p.try_into().expect("4 bytes"))
                }
                _ => 0,
            };
            return final_mix(addrs ^ ((ports as u64) << 8 | proto as u64).rotate_left(40));
        }
    }
    flow_hash_other(inner, et)
}

/// The last step of [`flow_hash`]: every input bit reaches the low bits.
#[inline(always)]
fn final_mix(x: u64) -> u32 {
    let h = (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (h ^ (h >> 32)) as u32
}

/// [`flow_hash`] of anything but an IPv4 packet.
fn flow_hash_other(inner: &[u8], et: u16) -> u32 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut mix = |v: u64| h = (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    match et {
        ETHERTYPE_IPV6 if inner.len() >= ETH_LEN + IPV6_LEN => {
            let ip = &inner[ETH_LEN..];
            for w in (8..40).step_by(8) {
                mix(u64::from_be_bytes(
                    ip[w..w + 8].try_into().expect("8 bytes"),
                ));
            }
            let next = ip[6];
            mix(next as u64);
            if matches!(next, PROTO_TCP | PROTO_UDP) && ip.len() >= IPV6_LEN + 4 {
                mix(be32(ip, IPV6_LEN) as u64);
            }
        }
        _ => {
            mix(u64::from_le_bytes(inner[0..8].try_into().expect("8 bytes")));
            mix(u64::from_le_bytes(
                inner[6..14].try_into().expect("8 bytes"),
            ));
        }
    }
    final_mix(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_sum_ok_agrees_with_checksum() {
        // Pseudo-random headers, and each with its checksum set right.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if x & 3 == 0 {
                // Words of all ones: the end-around carries.
                h[..8].fill(0xff);
            }
            assert_eq!(ipv4_header_sum_ok(&h), checksum(&h) == 0, "{h:?}");
            h[10..12].fill(0);
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            assert!(ipv4_header_sum_ok(&h), "{h:?}");
            h[(x % 20) as usize] ^= 1 << (x >> 8 & 7);
            assert!(!ipv4_header_sum_ok(&h), "{h:?}");
        }
        assert!(!ipv4_header_sum_ok(&[0; 20]));
        assert!(ipv4_header_sum_ok(&[0xff; 20]));
    }

    #[test]
    fn flow_hash_spreads_flows_over_the_vxlan_port_bits() {
        let frame = |src: [u8; 4], dst: [u8; 4], sport: u16, proto: u8| {
            let mut b = vec![0u8; 60];
            put16(&mut b, 12, ETHERTYPE_IPV4);
            write_ipv4(&mut b[ETH_LEN..], 46, 64, proto, src, dst);
            put16(&mut b, ETH_LEN + IPV4_LEN, sport);
            put16(&mut b, ETH_LEN + IPV4_LEN + 2, 9);
            b
        };
        let bits = |f: &[u8]| flow_hash(f) & 0x3fff;
        let by_port: std::collections::HashSet<u32> = (0..4096u16)
            .map(|p| bits(&frame([10, 0, 0, 1], [10, 0, 1, 1], 1024 + p, PROTO_UDP)))
            .collect();
        let by_dst: std::collections::HashSet<u32> = (0..4096u16)
            .map(|i| {
                let [a, b] = i.to_be_bytes();
                bits(&frame([10, 0, 0, 1], [10, 9, a, b], 1024, PROTO_TCP))
            })
            .collect();
        let by_src: std::collections::HashSet<u32> = (0..4096u16)
            .map(|i| {
                let [a, b] = i.to_be_bytes();
                bits(&frame([a, b, 0, 1], [10, 0, 1, 1], 1024, PROTO_UDP))
            })
            .collect();
        // 4096 flows in 16384 values: about 3,600 distinct if uniform.
        for (what, n) in [("port", by_port), ("dst", by_dst), ("src", by_src)] {
            assert!(n.len() > 3400, "{what}: {} distinct", n.len());
        }
        // The protocol and the ports count; other protocols hash no ports.
        let f = frame([10, 0, 0, 1], [10, 0, 1, 1], 1024, PROTO_UDP);
        assert_ne!(
            flow_hash(&f),
            flow_hash(&frame([10, 0, 0, 1], [10, 0, 1, 1], 1024, PROTO_TCP))
        );
        let icmp = |p| frame([10, 0, 0, 1], [10, 0, 1, 1], p, 1);
        assert_eq!(flow_hash(&icmp(1)), flow_hash(&icmp(2)));
    }

    #[test]
    fn frame_moves_its_edges_within_the_buffer() {
        let mut buf = [0u8; 64];
        let mut f = Frame::new(&mut buf, 16, 32).unwrap();
        assert!(f.prepend(16));
        assert!(!f.prepend(1));
        assert_eq!((f.offset(), f.len()), (0, 48));
        assert!(f.adj(8));
        f.trim(10);
        assert_eq!((f.offset(), f.len()), (8, 10));
        assert!(f.extend(46));
        assert!(!f.extend(1));
        assert!(!f.adj(57));
        assert!(Frame::new(&mut buf, 60, 5).is_none());
    }

    /// Found by the `headers` fuzz target: `off + len + n` overflowed (a
    /// panic with overflow checks, a frame past its buffer without).
    #[test]
    fn extend_refuses_a_huge_count() {
        let mut buf = [0u8; 80];
        let mut f = Frame::new(&mut buf, 32, 24).unwrap();
        assert!(!f.extend(usize::MAX));
        assert!(!f.extend(usize::MAX - 55));
        assert!(f.extend(24));
        assert_eq!((f.offset(), f.len()), (32, 48));
    }

    #[test]
    fn checksum_of_a_known_ipv4_header() {
        // RFC 1071 style example: a real header whose checksum is 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        put16(&mut h, 10, 0xb861);
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn incremental_update_equals_recomputing() {
        let mut h = [0u8; 20];
        write_ipv4(&mut h, 84, 64, 1, [10, 0, 0, 1], [10, 0, 1, 2]);
        for ttl in (2..=64u8).rev() {
            dec_ttl4(&mut h);
            assert_eq!((h[8], h[9]), (ttl - 1, 1), "ttl {ttl}");
            assert_eq!(checksum(&h), 0, "ttl {ttl}");
        }
        let old = be32(&h, 12);
        put32(&mut h, 12, 0xcb00_7101);
        let c = csum_update32(be16(&h, 10), old, 0xcb00_7101);
        put16(&mut h, 10, c);
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn word_checksum_equals_the_16_bit_sum() {
        let mut x: u32 = 12345;
        for len in 0..200 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            assert_eq!(checksum(&b), csum_fold(csum_add(0, &b)), "len {len}");
        }
        assert_eq!(checksum(&[0xff; 64]), csum_fold(csum_add(0, &[0xff; 64])));
    }

    #[test]
    fn odd_length_sums_pad_with_zero() {
        assert_eq!(csum_add(0, &[1, 2, 3]), 0x0102 + 0x0300);
    }
}
