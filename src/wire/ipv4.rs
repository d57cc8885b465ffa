//! IPv4 (RFC 791): the header view, the one header check the pipeline
//! applies ([`validate`]), and the writers of a header and of a TTL
//! decrement.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |Type of Service|          Total Length         |
//! |         Identification        |Flags|      Fragment Offset    |
//! |  Time to Live |    Protocol   |         Header Checksum       |  10
//! |                       Source Address                          |  12
//! |                    Destination Address                        |  16
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv4Addr;

use super::checksum::{checksum, csum_update16, csum_update32, ipv4_header_sum_ok};
use super::{get16, get32, set16, set32, Field};
use crate::stats::DropReason;

/// The header without options.
pub const HEADER_LEN: usize = 20;
/// Don't fragment.
pub const DF: u16 = 0x4000;
/// More fragments.
pub const MF: u16 = 0x2000;
/// The fragment offset bits of the flags/offset word (8-byte units).
pub const OFFSET_MASK: u16 = 0x1fff;

pub mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLAGS_OFFSET: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    /// TTL and protocol: the word a TTL decrement changes.
    pub const TTL_PROTOCOL: Field = 8..10;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
    /// Both addresses.
    pub const ADDRS: Field = 12..20;
}

/// An IPv4 header at the start of a buffer, with what follows it.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view of the IPv4 header at the start of `buffer`: version 4, a
    /// header length of at least 20 bytes, all of it in `buffer`. The total
    /// length is not checked (the header an ICMP error quotes is longer than
    /// the quote): [`validate`] checks a packet. `None` for anything else.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        // Two tests, as the code before the views had them: the compiler
        // keeps them two well-predicted branches.
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN || b[field::VER_IHL] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if ihl < HEADER_LEN || ihl > b.len() {
            return None;
        }
        Some(Ipv4Packet { buffer })
    }

    #[inline(always)]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole buffer.
    #[inline(always)]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The first 20 bytes of the header (without options).
    #[inline(always)]
    pub fn fixed(&self) -> &[u8; HEADER_LEN] {
        self.buffer
            .as_ref()
            .first_chunk()
            .expect("checked in new_checked")
    }

    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (where the payload starts).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        get16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline(always)]
    pub fn ident(&self) -> u16 {
        get16(self.buffer.as_ref(), field::IDENT)
    }

    /// The flags and fragment offset word.
    #[inline(always)]
    pub fn flags_offset(&self) -> u16 {
        get16(self.buffer.as_ref(), field::FLAGS_OFFSET)
    }

    #[inline(always)]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & DF != 0
    }

    #[inline(always)]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & MF != 0
    }

    /// The fragment offset in 8-byte units; 0 for a first (or only) fragment.
    #[inline(always)]
    pub fn frag_offset(&self) -> u16 {
        self.flags_offset() & OFFSET_MASK
    }

    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline(always)]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline(always)]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_u32())
    }

    #[inline(always)]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_u32())
    }

    /// The source address as a word.
    #[inline(always)]
    pub fn src_u32(&self) -> u32 {
        get32(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// The destination address as a word.
    #[inline(always)]
    pub fn dst_u32(&self) -> u32 {
        get32(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// Whether the header checksum is right: the three-load sum of a
    /// 20-byte header, the general sum of one with options.
    #[inline(always)]
    pub fn checksum_ok(&self) -> bool {
        let ihl = self.header_len();
        if ihl == HEADER_LEN {
            ipv4_header_sum_ok(self.fixed())
        } else {
            checksum(self.header()) == 0
        }
    }

    /// The header, options included.
    #[inline(always)]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// What follows the header, to the end of the buffer.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<'a> Ipv4Packet<&'a [u8]> {
    /// [`Ipv4Packet::payload`], for as long as the buffer lives.
    #[inline(always)]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline(always)]
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    #[inline(always)]
    pub fn set_total_len(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::LENGTH, v);
    }

    #[inline(always)]
    pub fn set_checksum(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    #[inline(always)]
    pub fn set_ident(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::IDENT, v);
    }

    /// Computes the header checksum afresh and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum(self.header());
        self.set_checksum(c);
    }

    /// Sets the source address and updates the header checksum; returns
    /// the old address.
    #[inline(always)]
    pub fn set_src_updating(&mut self, new: u32) -> u32 {
        self.set_addr_updating(field::SRC_ADDR, new)
    }

    /// Sets the destination address and updates the header checksum;
    /// returns the old address.
    #[inline(always)]
    pub fn set_dst_updating(&mut self, new: u32) -> u32 {
        self.set_addr_updating(field::DST_ADDR, new)
    }

    #[inline(always)]
    fn set_addr_updating(&mut self, f: Field, new: u32) -> u32 {
        let h = self
            .buffer
            .as_mut()
            .first_chunk_mut()
            .expect("checked in new_checked");
        update_addr(h, f, new)
    }

    /// Decrements the TTL (the caller checked it is above 1) and updates
    /// the checksum: see [`dec_ttl`].
    #[inline(always)]
    pub fn dec_ttl(&mut self) {
        let h: &mut [u8; HEADER_LEN] = self
            .buffer
            .as_mut()
            .first_chunk_mut()
            .expect("checked in new_checked");
        dec_ttl(h);
    }

    /// What follows the header, to the end of the buffer.
    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let ihl = self.header_len();
        &mut self.buffer.as_mut()[ihl..]
    }
}

/// Why [`validate`] refuses a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Shorter than 20 bytes.
    Short,
    /// Not version 4.
    Version,
    /// A header length below 20 bytes or beyond the total length.
    HeaderLen,
    /// A total length beyond the bytes there are.
    TotalLen,
    /// The header checksum is wrong.
    Checksum,
}

impl Refused {
    /// The drop reason the pipeline counts: a wrong checksum is
    /// [`DropReason::BadIpv4Checksum`], anything else
    /// [`DropReason::MalformedIpv4`].
    #[inline(always)]
    pub fn reason(self) -> DropReason {
        match self {
            Refused::Checksum => DropReason::BadIpv4Checksum,
            _ => DropReason::MalformedIpv4,
        }
    }
}

impl From<Refused> for DropReason {
    #[inline(always)]
    fn from(r: Refused) -> DropReason {
        r.reason()
    }
}

/// The IPv4 packet at the start of `ip` checked as the pipeline checks
/// every IPv4 packet it routes, decapsulates or translates: version 4, a
/// header length of at least 20 bytes and at most the total length, a total
/// length that `ip` holds, and a right header checksum. The view covers the
/// packet only (`ip` up to its total length: what is beyond is Ethernet
/// padding, for the caller to trim).
///
/// The checksum is checked last: [`validate_lengths`] then
/// [`Ipv4Packet::checksum_ok`] is the same check for a caller with a test
/// of its own in between.
#[inline(always)]
pub fn validate(ip: &[u8]) -> Result<Ipv4Packet<&[u8]>, Refused> {
    let p = validate_lengths(ip)?;
    if !p.checksum_ok() {
        return Err(Refused::Checksum);
    }
    Ok(p)
}

/// [`validate`] without the checksum.
#[inline(always)]
pub fn validate_lengths(ip: &[u8]) -> Result<Ipv4Packet<&[u8]>, Refused> {
    let total = lengths(ip)?;
    Ok(Ipv4Packet {
        buffer: &ip[..total],
    })
}

/// [`validate`] of a packet to rewrite: the view is mutable.
#[inline(always)]
pub fn validate_mut(ip: &mut [u8]) -> Result<Ipv4Packet<&mut [u8]>, Refused> {
    let total = validate(ip)?.as_bytes().len();
    Ok(Ipv4Packet {
        buffer: &mut ip[..total],
    })
}

/// The checks of [`validate_lengths`]; the total length.
#[inline(always)]
fn lengths(ip: &[u8]) -> Result<usize, Refused> {
    let Some(h) = ip.first_chunk::<HEADER_LEN>() else {
        return Err(Refused::Short);
    };
    if h[field::VER_IHL] >> 4 != 4 {
        return Err(Refused::Version);
    }
    let ihl = usize::from(h[field::VER_IHL] & 0x0f) * 4;
    let total = usize::from(get16(h, field::LENGTH));
    if ihl < HEADER_LEN || total < ihl {
        return Err(Refused::HeaderLen);
    }
    if total > ip.len() {
        return Err(Refused::TotalLen);
    }
    Ok(total)
}

/// Sets the address `f` ([`field::SRC_ADDR`] or [`field::DST_ADDR`]) of the
/// IPv4 header `h` to `new` and updates the header checksum (RFC 1624);
/// returns the old address.
#[inline(always)]
pub fn update_addr(h: &mut [u8; HEADER_LEN], f: Field, new: u32) -> u32 {
    let old = get32(h, f.clone());
    set32(h, f, new);
    let c = csum_update32(get16(h, field::CHECKSUM), old, new);
    set16(h, field::CHECKSUM, c);
    old
}

/// Decrements the TTL of the IPv4 header `ip` (the caller checked it is > 1)
/// and updates its checksum. The new TTL/protocol word is computed in a
/// register and stored once: storing the TTL byte and then reading the word
/// back would stall on store forwarding (a byte store cannot feed a 16-bit load).
#[inline(always)]
pub fn dec_ttl(ip: &mut [u8]) {
    let old = get16(ip, field::TTL_PROTOCOL);
    let new = old.wrapping_sub(0x100);
    let c = csum_update16(get16(ip, field::CHECKSUM), old, new);
    set16(ip, field::TTL_PROTOCOL, new);
    set16(ip, field::CHECKSUM, c);
}

/// Writes a 20-byte IPv4 header (no options, DF set, id 0) with its checksum at
/// the start of `b`.
pub fn write(b: &mut [u8], total_len: u16, ttl: u8, proto: u8, src: [u8; 4], dst: [u8; 4]) {
    b[field::VER_IHL] = 0x45;
    b[field::TOS] = 0;
    set16(b, field::LENGTH, total_len);
    set16(b, field::IDENT, 0);
    set16(b, field::FLAGS_OFFSET, DF);
    b[field::TTL] = ttl;
    b[field::PROTOCOL] = proto;
    set16(b, field::CHECKSUM, 0);
    b[field::SRC_ADDR].copy_from_slice(&src);
    b[field::DST_ADDR].copy_from_slice(&dst);
    let c = checksum(&b[..HEADER_LEN]);
    set16(b, field::CHECKSUM, c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto;

    /// A UDP packet of `total` bytes in a buffer of `len`.
    fn packet(total: u16, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        write(&mut b, total, 64, proto::UDP, [10, 0, 0, 1], [10, 0, 1, 2]);
        b
    }

    fn fix(b: &mut [u8]) {
        let ihl = usize::from(b[0] & 0x0f) * 4;
        b[10..12].fill(0);
        let c = checksum(&b[..ihl]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn validate_takes_a_packet_and_leaves_out_the_padding() {
        let b = packet(28, 46);
        let p = validate(&b).unwrap();
        assert_eq!(p.as_bytes().len(), 28);
        assert_eq!((p.header_len(), p.payload().len()), (20, 8));
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 1, 2));
        assert_eq!((p.ttl(), p.protocol(), p.total_len()), (64, 17, 28));
        assert!(p.dont_frag() && !p.more_frags() && p.frag_offset() == 0);
    }

    #[test]
    fn validate_mut_gives_a_view_to_rewrite() {
        let mut b = packet(28, 46);
        let mut p = validate_mut(&mut b).unwrap();
        p.dec_ttl();
        assert_eq!(p.as_bytes().len(), 28);
        assert_eq!(b[8], 63);
        assert!(validate(&b).is_ok());
        b[10] ^= 1;
        assert_eq!(validate_mut(&mut b).err(), Some(Refused::Checksum));
    }

    #[test]
    fn validate_refuses_a_short_header() {
        let b = packet(20, 20);
        assert_eq!(validate(&b[..19]).err(), Some(Refused::Short));
        assert_eq!(validate(&[]).err(), Some(Refused::Short));
        assert_eq!(Refused::Short.reason(), DropReason::MalformedIpv4);
    }

    #[test]
    fn validate_refuses_another_version() {
        let mut b = packet(28, 28);
        b[0] = 0x65;
        fix(&mut b);
        assert_eq!(validate(&b).err(), Some(Refused::Version));
    }

    #[test]
    fn validate_refuses_a_header_length_below_20_or_past_the_total() {
        let mut b = packet(28, 28);
        b[0] = 0x44;
        assert_eq!(validate(&b).err(), Some(Refused::HeaderLen));
        // 32 bytes of header in a 28-byte packet.
        let mut b = packet(28, 40);
        b[0] = 0x48;
        fix(&mut b);
        assert_eq!(validate(&b).err(), Some(Refused::HeaderLen));
        assert_eq!(Refused::HeaderLen.reason(), DropReason::MalformedIpv4);
    }

    #[test]
    fn validate_refuses_a_total_length_past_the_bytes() {
        let b = packet(29, 28);
        assert_eq!(validate(&b).err(), Some(Refused::TotalLen));
        assert_eq!(Refused::TotalLen.reason(), DropReason::MalformedIpv4);
    }

    #[test]
    fn validate_refuses_a_wrong_checksum_with_and_without_options() {
        let mut b = packet(28, 28);
        b[10] ^= 1;
        assert_eq!(validate(&b).err(), Some(Refused::Checksum));
        assert_eq!(validate_lengths(&b).map(|p| p.total_len()), Ok(28));
        assert_eq!(Refused::Checksum.reason(), DropReason::BadIpv4Checksum);
        // With 4 bytes of options: the general sum.
        let mut b = packet(32, 32);
        b[0] = 0x46;
        fix(&mut b);
        let p = validate(&b).unwrap();
        assert_eq!((p.header_len(), p.payload().len()), (24, 8));
        b[21] ^= 0x80;
        assert_eq!(validate(&b).err(), Some(Refused::Checksum));
    }

    #[test]
    fn new_checked_needs_the_header_only() {
        // A quoted header: total length beyond the quote.
        let b = packet(1500, 28);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 8);
        assert!(Ipv4Packet::new_checked(&b[..19]).is_none());
        let mut o = packet(1500, 23);
        o[0] = 0x46;
        assert!(Ipv4Packet::new_checked(&o[..]).is_none());
        o[0] = 0x44;
        assert!(Ipv4Packet::new_checked(&o[..]).is_none());
        o[0] = 0x65;
        assert!(Ipv4Packet::new_checked(&o[..]).is_none());
    }

    #[test]
    fn setters_keep_the_checksum_right() {
        let mut b = packet(84, 84);
        b[9] = proto::ICMP;
        fix(&mut b);
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        for ttl in (2..=64u8).rev() {
            p.dec_ttl();
            assert_eq!((p.ttl(), p.protocol()), (ttl - 1, 1), "ttl {ttl}");
            assert!(p.checksum_ok(), "ttl {ttl}");
        }
        assert_eq!(p.set_src_updating(0xcb00_7101), 0x0a00_0001);
        assert_eq!(p.set_dst_updating(0x0808_0808), 0x0a00_0102);
        assert!(p.checksum_ok());
        assert_eq!(checksum(p.header()), 0);
        assert_eq!(p.dst_addr(), Ipv4Addr::new(8, 8, 8, 8));
    }

    #[test]
    fn incremental_update_equals_recomputing() {
        use crate::wire::checksum::csum_update32;
        use crate::wire::{be16, be32, put16, put32};
        let mut h = [0u8; 20];
        write(&mut h, 84, 64, 1, [10, 0, 0, 1], [10, 0, 1, 2]);
        for ttl in (2..=64u8).rev() {
            dec_ttl(&mut h);
            assert_eq!((h[8], h[9]), (ttl - 1, 1), "ttl {ttl}");
            assert_eq!(checksum(&h), 0, "ttl {ttl}");
        }
        let old = be32(&h, 12);
        put32(&mut h, 12, 0xcb00_7101);
        let c = csum_update32(be16(&h, 10), old, 0xcb00_7101);
        put16(&mut h, 10, c);
        assert_eq!(checksum(&h), 0);
    }

    /// The checks the pipeline made in its own words before they were this
    /// one function: a header it took, validate takes, with the same length
    /// and header length; one it refused for a reason, validate refuses for
    /// the same reason.
    #[test]
    fn validate_agrees_with_the_checks_it_replaced() {
        fn before(ip: &[u8]) -> Result<(usize, usize), DropReason> {
            if ip.len() < HEADER_LEN {
                return Err(DropReason::MalformedIpv4);
            }
            let ihl = (ip[0] & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            if ip[0] >> 4 != 4 || ihl < HEADER_LEN || total < ihl || total > ip.len() {
                return Err(DropReason::MalformedIpv4);
            }
            if checksum(&ip[..ihl]) != 0 {
                return Err(DropReason::BadIpv4Checksum);
            }
            Ok((ihl, total))
        }
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50_000 {
            let len = (rnd() % 72) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            if len >= HEADER_LEN {
                let r = rnd();
                if r & 1 == 0 {
                    b[0] = 0x45 + (r >> 8 & 3) as u8;
                }
                if r & 2 == 0 {
                    let total = (HEADER_LEN + (r >> 16) as usize % 60) as u16;
                    b[2..4].copy_from_slice(&total.to_be_bytes());
                }
                if r & 4 == 0 {
                    let ihl = usize::from(b[0] & 0x0f) * 4;
                    if (HEADER_LEN..=len).contains(&ihl) {
                        b[10..12].fill(0);
                        let c = checksum(&b[..ihl]);
                        b[10..12].copy_from_slice(&c.to_be_bytes());
                    }
                }
            }
            let new = validate(&b)
                .map(|p| (p.header_len(), p.as_bytes().len()))
                .map_err(|r| r.reason());
            assert_eq!(new, before(&b), "{b:?}");
            seen.insert(
                format!("{new:?}")
                    .chars()
                    .take(6)
                    .collect::<String>()
                    .replace(|c: char| c.is_ascii_digit(), ""),
            );
        }
        // Taken (`Ok((`), malformed and bad checksums all came up.
        assert_eq!(seen.len(), 3, "{seen:?}");
    }
}
