//! The one parser of what arrives from the underlay: VXLAN over UDP/IPv4,
//! GRE with a key carrying Ethernet over IPv4, 802.1Q-tagged frames, and
//! ARP (left to the caller). The whole pipeline and the fast ways read the
//! outer headers through it alike.
//!
//! ```text
//! VXLAN: | Ethernet | IPv4 to this VTEP | UDP to 4789 | VXLAN (I, VNI) | inner frame |
//! GRE:   | Ethernet | IPv4 to this VTEP | GRE (K, TEB, key)            | inner frame |
//! VLAN:  | MACs | 0x8100 | tag (VID) | ethertype | layer 3 ...                       |
//! ```

use std::net::Ipv4Addr;

use super::ethernet::{
    EthernetFrame, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_VLAN, HEADER_LEN as ETH_LEN,
};
use super::gre::{self, GreHeader};
use super::ipv4::{self, Ipv4Packet};
use super::proto;
use super::udp::{self, UdpHeader, VXLAN_PORT};
use super::vlan::{self, VlanTag};
use super::vxlan::{self, VxlanHeader};
use crate::stats::DropReason;

type R = DropReason;

/// Outer Ethernet + IPv4 (no options) + UDP + VXLAN: what the overlay puts in
/// front of a frame it sends by VXLAN.
pub const VXLAN_OVERHEAD: usize = ETH_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN;
/// Outer Ethernet + IPv4 (no options) + GRE with key.
pub const GRE_OVERHEAD: usize = ETH_LEN + ipv4::HEADER_LEN + gre::HEADER_LEN;

/// How a tunnel carries its inner frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    Vxlan,
    Gre,
}

/// A VXLAN or GRE frame to this VTEP, its outer headers checked.
#[derive(Debug, Clone, Copy)]
pub struct Tunnel<'a> {
    pub encap: Encap,
    /// The outer IPv4 packet, to its total length.
    pub outer: Ipv4Packet<&'a [u8]>,
    /// The segment's word as sent: the VNI and the reserved byte after it,
    /// or the GRE key.
    pub segment_word: [u8; 4],
    /// The bytes in front of the inner frame: Ethernet, IPv4 with its
    /// options, and UDP + VXLAN or GRE. The inner frame is
    /// `frame[strip..strip + inner.len()]`.
    pub strip: usize,
    /// The inner frame (at least an Ethernet header), to the end of the
    /// outer packet (the outer frame's padding left out).
    pub inner: &'a [u8],
    /// The inner frame's Ethernet header (the start of `inner`).
    pub inner_header: &'a [u8; ETH_LEN],
}

impl Tunnel<'_> {
    /// The VNI or the GRE key: what names the network.
    #[inline(always)]
    pub fn segment(&self) -> u32 {
        let w = u32::from_be_bytes(self.segment_word);
        match self.encap {
            Encap::Vxlan => w >> 8,
            Encap::Gre => w,
        }
    }
}

/// A VLAN-tagged frame.
#[derive(Debug, Clone, Copy)]
pub struct Tagged<'a> {
    pub vid: u16,
    /// The frame's MACs (the untagged frame starts with them).
    pub macs: &'a [u8; 12],
    /// The ethertype after the tag.
    pub ethertype: u16,
    /// What follows the tag's ethertype.
    pub l3: &'a [u8],
}

/// A frame from the underlay, by what it carries.
#[derive(Debug, Clone, Copy)]
pub enum Underlay<'a> {
    /// ARP: for the caller to answer or learn from.
    Arp,
    Tagged(Tagged<'a>),
    Tunnel(Tunnel<'a>),
    /// Another ethertype (not for the underlay).
    Other(u16),
}

/// Reads the frame `frame` from the underlay. A tunnel must be to `vtep`
/// (this node's; none: no tunnel is) from a source that `known_source`
/// accepts (a known host's VTEP). The checks, in order, and what a frame
/// that fails one is dropped as:
///
/// - shorter than an Ethernet header, or a tag: [`DropReason::RuntFrame`];
/// - an outer IPv4 header [`ipv4::validate_lengths`] refuses:
///   [`DropReason::MalformedIpv4`]; to another address than `vtep`:
///   [`DropReason::NotForThisVtep`]; a wrong header checksum:
///   [`DropReason::BadIpv4Checksum`]; from a source `known_source` refuses:
///   [`DropReason::UnknownVtepSource`];
/// - UDP to the VXLAN port without room for VXLAN and an Ethernet header,
///   or without the I flag: [`DropReason::BadVxlan`];
/// - GRE without room for its header and an Ethernet header, other flags
///   than the key, or not carrying Ethernet: [`DropReason::BadGre`];
/// - any other IPv4 payload: [`DropReason::NotATunnel`].
#[inline(always)]
pub fn underlay(
    frame: &[u8],
    vtep: Option<Ipv4Addr>,
    known_source: impl FnOnce(Ipv4Addr) -> bool,
) -> Result<Underlay<'_>, DropReason> {
    read::<true>(frame, &vtep, known_source)
}

/// [`underlay`] for the fast ways, which take only the common case of a
/// tunnel, an outer IPv4 header without options: `None` for a tunnel with
/// them too. The same code as [`underlay`] without its case of options
/// (compiled out: every offset behind the outer header is a constant).
#[inline(always)]
pub fn underlay_plain<'a>(
    frame: &'a [u8],
    vtep: &Option<Ipv4Addr>,
    known_source: impl FnOnce(Ipv4Addr) -> bool,
) -> Option<Underlay<'a>> {
    read::<false>(frame, vtep, known_source).ok()
}

/// [`underlay`]; a tunnel with outer IPv4 options only if `OPTIONS` (else
/// refused, as malformed).
#[inline(always)]
fn read<'a, const OPTIONS: bool>(
    frame: &'a [u8],
    vtep: &Option<Ipv4Addr>,
    known_source: impl FnOnce(Ipv4Addr) -> bool,
) -> Result<Underlay<'a>, DropReason> {
    let eth = EthernetFrame::new_checked(frame).ok_or(R::RuntFrame)?;
    match eth.ethertype() {
        ETHERTYPE_ARP => Ok(Underlay::Arp),
        ETHERTYPE_VLAN => tagged(frame).map(Underlay::Tagged),
        ETHERTYPE_IPV4 => tunnel::<OPTIONS>(frame, vtep, known_source).map(Underlay::Tunnel),
        et => Ok(Underlay::Other(et)),
    }
}

/// The tag of a VLAN-tagged frame (see [`underlay`]).
#[inline(always)]
fn tagged(frame: &[u8]) -> Result<Tagged<'_>, DropReason> {
    let (macs, rest) = frame.split_first_chunk::<12>().ok_or(R::RuntFrame)?;
    let tag = VlanTag::new_checked(rest.get(2..).ok_or(R::RuntFrame)?).ok_or(R::RuntFrame)?;
    Ok(Tagged {
        vid: tag.vid(),
        macs,
        ethertype: tag.ethertype(),
        l3: &rest[2 + vlan::HEADER_LEN..],
    })
}

/// The tunnel of an IPv4 frame (see [`underlay`]).
#[inline(always)]
fn tunnel<'a, const OPTIONS: bool>(
    frame: &'a [u8],
    vtep: &Option<Ipv4Addr>,
    known_source: impl FnOnce(Ipv4Addr) -> bool,
) -> Result<Tunnel<'a>, DropReason> {
    let ip = &frame[ETH_LEN..];
    // The common case first, an outer header without options: its length
    // a constant in `outer_tunnel` (inlined twice), every offset after it
    // is one too, and the checks of the version and header length fold
    // into this one (as cheap as reading the fields at their places).
    if ip
        .first_chunk::<{ ipv4::HEADER_LEN }>()
        .is_some_and(|h| h[ipv4::field::VER_IHL] == 0x45)
    {
        let outer = ipv4::validate_lengths(ip)?;
        outer_tunnel(outer, ipv4::HEADER_LEN, vtep, known_source)
    } else if OPTIONS {
        let outer = ipv4::validate_lengths(ip)?;
        let ihl = outer.header_len();
        outer_tunnel(outer, ihl, vtep, known_source)
    } else {
        Err(R::MalformedIpv4)
    }
}

/// [`tunnel`] once its outer IPv4 packet `outer` (header `ihl` bytes long)
/// passed [`ipv4::validate_lengths`].
#[inline(always)]
fn outer_tunnel<'a>(
    outer: Ipv4Packet<&'a [u8]>,
    ihl: usize,
    vtep: &Option<Ipv4Addr>,
    known_source: impl FnOnce(Ipv4Addr) -> bool,
) -> Result<Tunnel<'a>, DropReason> {
    if Some(outer.dst_addr()) != *vtep {
        return Err(R::NotForThisVtep);
    }
    if !outer.checksum_ok() {
        return Err(R::BadIpv4Checksum);
    }
    if !known_source(outer.src_addr()) {
        return Err(R::UnknownVtepSource);
    }
    let l4 = outer.into_inner().get(ihl..).unwrap_or_default();
    // One length check for each encapsulation's headers and the inner
    // Ethernet header (the views' own checks fold into it); a shorter one is
    // refused by `short_tunnel`.
    let (encap, segment_word, head) = match outer.protocol() {
        proto::UDP if l4.len() >= udp::HEADER_LEN + vxlan::HEADER_LEN + ETH_LEN => {
            let u = UdpHeader::new_checked(l4).ok_or(R::NotATunnel)?;
            if u.dst_port() != VXLAN_PORT {
                return Err(R::NotATunnel);
            }
            let v = VxlanHeader::new_checked(u.payload()).ok_or(R::BadVxlan)?;
            if !v.vni_valid() {
                return Err(R::BadVxlan);
            }
            (
                Encap::Vxlan,
                v.vni_word(),
                udp::HEADER_LEN + vxlan::HEADER_LEN,
            )
        }
        proto::GRE if l4.len() >= gre::HEADER_LEN + ETH_LEN => {
            let g = GreHeader::new_checked(l4).ok_or(R::BadGre)?;
            if !g.is_keyed_teb() {
                return Err(R::BadGre);
            }
            (Encap::Gre, g.key_word(), gre::HEADER_LEN)
        }
        p => return Err(short_tunnel(p, l4)),
    };
    let inner = l4.get(head..).unwrap_or_default();
    let (inner_header, _) = inner.split_first_chunk::<ETH_LEN>().ok_or(R::RuntFrame)?;
    Ok(Tunnel {
        encap,
        outer,
        segment_word,
        strip: ETH_LEN + ihl + head,
        inner,
        inner_header,
    })
}

/// Why [`tunnel`] refuses an IPv4 payload `l4` of protocol `p` too short
/// for its encapsulation and an inner Ethernet header (or of another
/// protocol): UDP not to the VXLAN port is not a tunnel.
#[cold]
#[inline(never)]
fn short_tunnel(p: u8, l4: &[u8]) -> DropReason {
    match p {
        proto::UDP => match UdpHeader::new_checked(l4) {
            Some(u) if u.dst_port() == VXLAN_PORT => R::BadVxlan,
            _ => R::NotATunnel,
        },
        proto::GRE => R::BadGre,
        _ => R::NotATunnel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{checksum::checksum, ethernet, put16};

    const VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
    const INNER: [u8; 20] = [
        0xfa, 0x16, 0x3e, 0, 0, 1, 0xfa, 0x16, 0x3e, 0, 0, 2, 0x08, 0x00, 1, 2, 3, 4, 5, 6,
    ];

    /// A VXLAN (or GRE) frame from PEER to VTEP with segment 0x123456 and
    /// 4 bytes of Ethernet padding.
    fn frame(encap: Encap) -> Vec<u8> {
        let mut f = vec![0u8; ETH_LEN];
        ethernet::write(&mut f, &[2; 6], &[4; 6], ETHERTYPE_IPV4);
        let mut l4 = vec![];
        match encap {
            Encap::Vxlan => {
                l4.resize(16, 0);
                put16(&mut l4, 0, 49152);
                put16(&mut l4, 2, VXLAN_PORT);
                put16(&mut l4, 4, (16 + INNER.len()) as u16);
                vxlan::write(&mut l4[8..], 0x12_3456);
            }
            Encap::Gre => {
                l4.resize(8, 0);
                gre::write(&mut l4, 0x12_3456);
            }
        }
        l4.extend_from_slice(&INNER);
        let p = if encap == Encap::Vxlan {
            proto::UDP
        } else {
            proto::GRE
        };
        let mut ip = [0u8; 20];
        ipv4::write(
            &mut ip,
            (20 + l4.len()) as u16,
            64,
            p,
            PEER.octets(),
            VTEP.octets(),
        );
        f.extend_from_slice(&ip);
        f.extend_from_slice(&l4);
        f.extend_from_slice(&[0xee; 4]);
        f
    }

    fn fix(f: &mut [u8]) {
        let ihl = usize::from(f[ETH_LEN] & 0x0f) * 4;
        f[ETH_LEN + 10..ETH_LEN + 12].fill(0);
        let c = checksum(&f[ETH_LEN..ETH_LEN + ihl]);
        f[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&c.to_be_bytes());
    }

    fn parse(f: &[u8]) -> Result<Underlay<'_>, DropReason> {
        underlay(f, Some(VTEP), |s| s == PEER)
    }

    fn tunnel_of(f: &[u8]) -> Result<Tunnel<'_>, DropReason> {
        match parse(f)? {
            Underlay::Tunnel(t) => Ok(t),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_a_vxlan_and_a_gre_frame() {
        for (encap, strip) in [(Encap::Vxlan, 50), (Encap::Gre, 42)] {
            let f = frame(encap);
            let t = tunnel_of(&f).unwrap();
            assert_eq!((t.encap, t.segment(), t.strip), (encap, 0x12_3456, strip));
            assert_eq!(t.inner, &INNER, "{encap:?}: padding left out");
            assert_eq!(&f[t.strip..t.strip + t.inner.len()], &INNER);
            assert_eq!(t.outer.src_addr(), PEER);
        }
        assert_eq!(
            tunnel_of(&frame(Encap::Vxlan)).unwrap().segment_word,
            [0x12, 0x34, 0x56, 0]
        );
    }

    #[test]
    fn reads_a_tagged_frame_and_passes_arp_and_others_on() {
        let mut f = vec![0u8; 22];
        f[..12].copy_from_slice(&INNER[..12]);
        f[12..18].copy_from_slice(&[0x81, 0, 0x20, 0x64, 0x86, 0xdd]);
        let Ok(Underlay::Tagged(t)) = parse(&f) else {
            panic!()
        };
        assert_eq!((t.vid, t.ethertype, t.l3.len()), (100, 0x86dd, 4));
        assert_eq!(&t.macs[..], &INNER[..12]);
        assert_eq!(parse(&f[..17]).err(), Some(R::RuntFrame));
        assert!(matches!(parse(&f[..18]), Ok(Underlay::Tagged(_))));
        put16(&mut f, 12, ETHERTYPE_ARP);
        assert!(matches!(parse(&f), Ok(Underlay::Arp)));
        put16(&mut f, 12, 0x88cc);
        assert!(matches!(parse(&f), Ok(Underlay::Other(0x88cc))));
        assert_eq!(parse(&f[..13]).err(), Some(R::RuntFrame));
    }

    #[test]
    fn refuses_a_malformed_outer_header() {
        let f = frame(Encap::Vxlan);
        assert_eq!(parse(&f[..ETH_LEN + 19]).err(), Some(R::MalformedIpv4));
        let mut g = f.clone();
        put16(&mut g, ETH_LEN + 2, 200);
        fix(&mut g);
        assert_eq!(parse(&g).err(), Some(R::MalformedIpv4));
    }

    #[test]
    fn refuses_another_vtep_before_the_checksum() {
        let mut f = frame(Encap::Gre);
        f[ETH_LEN + 19] = 9;
        assert_eq!(
            parse(&f).err(),
            Some(R::NotForThisVtep),
            "checksum wrong too"
        );
        fix(&mut f);
        assert_eq!(parse(&f).err(), Some(R::NotForThisVtep));
        assert_eq!(underlay(&f, None, |_| true).err(), Some(R::NotForThisVtep));
    }

    #[test]
    fn refuses_a_wrong_checksum_before_the_source() {
        let mut f = frame(Encap::Vxlan);
        f[ETH_LEN + 15] = 9;
        assert_eq!(parse(&f).err(), Some(R::BadIpv4Checksum));
        fix(&mut f);
        assert_eq!(parse(&f).err(), Some(R::UnknownVtepSource));
        assert!(underlay(&f, Some(VTEP), |_| true).is_ok());
    }

    #[test]
    fn refuses_an_unknown_source_before_the_tunnel_header() {
        let mut f = frame(Encap::Vxlan);
        f[ETH_LEN + 28] = 0;
        assert_eq!(parse(&f).err(), Some(R::BadVxlan));
        assert_eq!(
            underlay(&f, Some(VTEP), |_| false).err(),
            Some(R::UnknownVtepSource)
        );
    }

    #[test]
    fn refuses_bad_vxlan() {
        let f = frame(Encap::Vxlan);
        let mut g = f.clone();
        g[ETH_LEN + 28] = 0;
        assert_eq!(parse(&g).err(), Some(R::BadVxlan), "no I flag");
        // Room for VXLAN but not for an inner Ethernet header.
        let mut g = f[..ETH_LEN + 20 + 16 + 13].to_vec();
        put16(&mut g, ETH_LEN + 2, 20 + 16 + 13);
        fix(&mut g);
        assert_eq!(parse(&g).err(), Some(R::BadVxlan));
        let mut g = f[..ETH_LEN + 20 + 15].to_vec();
        put16(&mut g, ETH_LEN + 2, 20 + 15);
        fix(&mut g);
        assert_eq!(parse(&g).err(), Some(R::BadVxlan));
    }

    #[test]
    fn refuses_bad_gre() {
        let f = frame(Encap::Gre);
        for (at, v) in [(0, 0x30), (1, 1), (2, 0x08)] {
            let mut g = f.clone();
            g[ETH_LEN + 20 + at] = v;
            assert_eq!(parse(&g).err(), Some(R::BadGre), "byte {at}");
        }
        let mut g = f[..ETH_LEN + 20 + 8 + 13].to_vec();
        put16(&mut g, ETH_LEN + 2, 20 + 8 + 13);
        fix(&mut g);
        assert_eq!(parse(&g).err(), Some(R::BadGre));
        let mut g = f[..ETH_LEN + 20 + 7].to_vec();
        put16(&mut g, ETH_LEN + 2, 20 + 7);
        fix(&mut g);
        assert_eq!(parse(&g).err(), Some(R::BadGre));
    }

    #[test]
    fn refuses_what_is_not_a_tunnel() {
        let f = frame(Encap::Vxlan);
        let mut g = f.clone();
        put16(&mut g, ETH_LEN + 22, 4790);
        assert_eq!(parse(&g).err(), Some(R::NotATunnel), "another UDP port");
        let mut g = f.clone();
        g[ETH_LEN + 9] = proto::TCP;
        fix(&mut g);
        assert_eq!(parse(&g).err(), Some(R::NotATunnel));
        let mut g = f[..ETH_LEN + 20 + 7].to_vec();
        put16(&mut g, ETH_LEN + 2, 27);
        fix(&mut g);
        assert_eq!(parse(&g).err(), Some(R::NotATunnel), "short UDP");
    }

    #[test]
    fn takes_outer_options() {
        let f = frame(Encap::Gre);
        let mut g = f[..ETH_LEN + 20].to_vec();
        g.extend_from_slice(&[1, 1, 1, 0]);
        g.extend_from_slice(&f[ETH_LEN + 20..]);
        g[ETH_LEN] = 0x46;
        let total = u16::from_be_bytes([g[ETH_LEN + 2], g[ETH_LEN + 3]]) + 4;
        put16(&mut g, ETH_LEN + 2, total);
        fix(&mut g);
        let t = tunnel_of(&g).unwrap();
        assert_eq!((t.strip, t.inner), (46, &INNER[..]));
        assert_eq!(t.outer.header_len(), 24);
        assert!(
            underlay_plain(&g, &Some(VTEP), |_| true).is_none(),
            "the fast ways' parser leaves options"
        );
    }

    #[test]
    fn the_plain_parser_reads_what_underlay_reads_without_options() {
        for encap in [Encap::Vxlan, Encap::Gre] {
            let f = frame(encap);
            let Some(Underlay::Tunnel(t)) = underlay_plain(&f, &Some(VTEP), |_| true) else {
                panic!("{encap:?}")
            };
            let u = tunnel_of(&f).unwrap();
            assert_eq!(
                (t.encap, t.segment_word, t.strip),
                (u.encap, u.segment_word, u.strip)
            );
            assert_eq!((t.inner, &t.inner_header[..]), (u.inner, &INNER[..ETH_LEN]));
            // What underlay refuses, it refuses too.
            let mut g = f.clone();
            g[ETH_LEN + 15] = 9;
            assert!(underlay_plain(&g, &Some(VTEP), |_| true).is_none());
            assert!(underlay_plain(&f[..ETH_LEN + 19], &Some(VTEP), |_| true).is_none());
            assert!(underlay_plain(&f, &None, |_| true).is_none());
        }
    }
}
