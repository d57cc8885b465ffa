//! Typed views of the headers the router reads and writes, one file per
//! header, in the manner of smoltcp's `wire` module: a view wraps a buffer
//! (`T: AsRef<[u8]>`, setters where `T: AsMut<[u8]>`), names its fields as
//! byte ranges (`field::SRC_ADDR`), checks the buffer's length once in
//! `new_checked` (which returns `None` when the header does not fit), and
//! then reads and writes its fields without panicking. No allocation, no
//! `unsafe`: the same code runs on mbufs and on plain buffers.
//!
//! Besides the views: the Internet checksums ([`checksum`]), the one IPv4
//! header check ([`ipv4::validate`]) and the one parser of what arrives from
//! the underlay ([`tunnel::underlay`]: VXLAN over UDP/IPv4, GRE carrying
//! Ethernet, 802.1Q tags).

pub mod arp;
pub mod checksum;
pub mod dhcp;
pub mod dhcp6;
pub mod ethernet;
pub mod gre;
pub mod icmp4;
pub mod icmp6;
pub mod ipv4;
pub mod ipv6;
pub mod nd;
pub mod tcp;
pub mod tunnel;
pub mod udp;
pub mod vlan;
pub mod vxlan;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

pub use arp::ArpPacket;
pub use ethernet::EthernetFrame;
pub use gre::GreHeader;
pub use icmp4::Icmp4Packet;
pub use icmp6::Icmp6Packet;
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use nd::NdMessage;
pub use tcp::TcpHeader;
pub use udp::UdpHeader;
pub use vlan::VlanTag;
pub use vxlan::VxlanHeader;

/// A header field: its bytes, from the start of the header.
pub type Field = Range<usize>;

/// IP protocol numbers (IPv4 protocol, IPv6 next header).
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const GRE: u8 = 47;
    pub const ICMPV6: u8 = 58;
}

/// The big-endian 16-bit word at `at` of `b`. Panics if `b` is too short:
/// for code that checked the length before; a view's accessors cannot.
#[inline(always)]
pub fn be16(b: &[u8], at: usize) -> u16 {
    // One bounds check for the range, not one per byte.
    u16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// The big-endian 32-bit word at `at` of `b` (see [`be16`]).
#[inline(always)]
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Writes `v` big-endian at `at` of `b` (see [`be16`]).
#[inline(always)]
pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes `v` big-endian at `at` of `b` (see [`be16`]).
#[inline(always)]
pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// The IPv4 address at `at` of `b` (see [`be16`]).
#[inline(always)]
pub fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(be32(b, at))
}

/// The IPv6 address at `at` of `b` (see [`be16`]).
#[inline(always)]
pub fn ipv6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let a: [u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
    Ipv6Addr::from(a)
}

/// The MAC address at `at` of `b` (see [`be16`]).
#[inline(always)]
pub fn mac_at(b: &[u8], at: usize) -> [u8; 6] {
    b[at..at + 6].try_into().expect("6 bytes")
}

// The views' field accessors: a field is a constant range inside the
// length `new_checked` checked, so once inlined the range's bounds check
// folds into that one check.

#[inline(always)]
pub(crate) fn get16(b: &[u8], f: Field) -> u16 {
    u16::from_be_bytes(b[f].try_into().expect("2-byte field"))
}

#[inline(always)]
pub(crate) fn get32(b: &[u8], f: Field) -> u32 {
    u32::from_be_bytes(b[f].try_into().expect("4-byte field"))
}

#[inline(always)]
pub(crate) fn set16(b: &mut [u8], f: Field, v: u16) {
    b[f].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set32(b: &mut [u8], f: Field, v: u32) {
    b[f].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
fn get_mac(b: &[u8], f: Field) -> [u8; 6] {
    b[f].try_into().expect("6-byte field")
}

#[inline(always)]
fn get_ipv6(b: &[u8], f: Field) -> Ipv6Addr {
    let a: [u8; 16] = b[f].try_into().expect("16-byte field");
    Ipv6Addr::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every view, parser and check on arbitrary bytes: `None` or `Err`, or a
    /// view whose every accessor answers; never a panic.
    #[test]
    fn no_input_makes_a_view_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let vtep = Some(Ipv4Addr::new(10, 0, 0, 1));
        for _ in 0..100_000 {
            let len = (rnd() % 120) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            // Plausible headers often enough to reach past the first checks.
            let r = rnd();
            if len > 34 && r & 1 == 0 {
                b[12..14].copy_from_slice(&[0x08, 0x00]);
                b[14] = 0x45 + (r >> 8 & 1) as u8;
                b[23] = [proto::UDP, proto::GRE, proto::TCP][(r >> 16) as usize % 3];
                b[30..34].copy_from_slice(&[10, 0, 0, 1]);
                let total = (len - 14 - (r >> 24) as usize % 4) as u16;
                b[16..18].copy_from_slice(&total.to_be_bytes());
                if len > 38 && r & 2 == 0 {
                    b[36..38].copy_from_slice(&udp::VXLAN_PORT.to_be_bytes());
                }
            }
            let _ = tunnel::underlay(&b, vtep, |_| rnd() & 1 == 0).map(|u| match u {
                tunnel::Underlay::Tunnel(t) => (t.segment(), t.inner.len(), t.outer.ttl()),
                tunnel::Underlay::Tagged(t) => (u32::from(t.vid), t.l3.len(), 0),
                _ => (0, 0, 0),
            });
            let l3 = b.get(14..).unwrap_or(&[]);
            if let Ok(p) = ipv4::validate(l3) {
                assert!(p.checksum_ok() && p.payload().len() <= p.as_bytes().len());
            }
            let _ = ipv4::validate_lengths(l3).map(|p| p.checksum_ok());
            let _ = ipv6::upper_layer(&b);
            let mut m = b.clone();
            if let Ok(mut p) = ipv4::validate_mut(&mut m) {
                p.dec_ttl();
                p.set_src_updating(1);
                p.fill_checksum();
            }
            if let Some(p) = Ipv4Packet::new_checked(&b[..]) {
                let _ = (p.version(), p.total_len(), p.ident(), p.frag_offset());
                let _ = (p.more_frags(), p.dont_frag(), p.protocol(), p.checksum());
                let _ = (
                    p.src_addr(),
                    p.dst_addr(),
                    p.header().len(),
                    p.payload().len(),
                );
                let _ = (p.checksum_ok(), p.fixed().len());
            }
            if let Some(p) = Ipv6Packet::new_checked(&b[..]) {
                let _ = (p.next_header(), p.hop_limit(), p.src_addr(), p.dst_addr());
                let _ = (p.payload().len(), p.src_bytes().len(), p.dst_bytes().len());
            }
            if let Some(e) = EthernetFrame::new_checked(&b[..]) {
                let _ = (e.dst(), e.src(), e.ethertype(), e.macs(), e.payload().len());
            }
            let _ = arp::of_frame(&b).map(|a| (a.operation(), a.sender_ip(), a.target_mac()));
            let _ = arp::reply_sender(&b);
            let mut a = b.clone();
            let _ = arp::answer(&mut a, &[2; 6], Ipv4Addr::LOCALHOST);
            if let Some(m) = NdMessage::new_checked(&b[..]) {
                let _ = (m.target(), m.flags(), m.is_advert());
                for o in m.options() {
                    let _ = o.map(|o| (o.kind, o.mac()));
                }
            }
            let _ = Icmp4Packet::new_checked(&b[..]).map(|m| (m.echo_id(), m.quote().len()));
            let _ = Icmp6Packet::new_checked(&b[..]).map(|m| (m.param(), m.code()));
            let _ = UdpHeader::new_checked(&b[..]).map(|u| (u.len(), u.payload().len()));
            let _ = TcpHeader::new_checked(&b[..]).map(|t| (t.seq(), t.ack(), t.flags()));
            let _ = VxlanHeader::new_checked(&b[..]).map(|v| (v.vni(), v.vni_valid()));
            let _ = GreHeader::new_checked(&b[..]).map(|g| (g.key(), g.is_keyed_teb()));
            let _ = VlanTag::new_checked(&b[..]).map(|t| (t.vid(), t.payload().len()));
            let _ = vxlan::flow_hash(&b);
        }
    }
}
