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
