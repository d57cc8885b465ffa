//! The packet side of NAT: reading the fields a translation needs and
//! rewriting addresses, ports and ICMP query ids with incremental checksum
//! updates (RFC 1624), in the outer packet and in the packet an ICMP error
//! quotes (RFC 5508). Every access is checked first: a short packet is a
//! [`DropReason::NatTruncated`], never a panic.
//!
//! The headers are read through the views of [`crate::wire`]; a quoted
//! transport header may be cut short (RFC 792 quotes 8 bytes), so its ports
//! and checksums are reached by their named fields where the quote holds
//! them. TCP and UDP: ports at the same offsets, checksum (over the
//! pseudo-header) at 16 and 6 (UDP: 0 is none); ICMP: checksum at 2 (no
//! pseudo-header), echo id at 4; errors quote the offending IP header and
//! 8 bytes of its data from 8.

use std::net::Ipv4Addr;

use crate::stats::DropReason;
use crate::wire::checksum::{csum_add, csum_fold, csum_update16, csum_update32};
use crate::wire::icmp4::{self, types as icmp_types};
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::{be16, get16, proto, put16, set16, tcp, udp, Field};

type R = DropReason;

/// The IPv4 header fields NAT reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hdr {
    /// Header length in bytes: where the transport header starts.
    pub ihl: usize,
    pub proto: u8,
    /// Fragment offset, in 8-byte units; 0 for a first (or only) fragment.
    pub frag_off: u16,
    pub mf: bool,
    pub id: u16,
    pub src: u32,
    pub dst: u32,
}

/// Reads the IPv4 header at the start of `b` (the caller validated the outer
/// one; a quoted one is checked here, and its total length is not the
/// quote's).
#[inline(always)]
pub(super) fn parse(b: &[u8]) -> Result<Hdr, R> {
    let p = Ipv4Packet::new_checked(b).ok_or(R::NatTruncated)?;
    Ok(Hdr {
        ihl: p.header_len(),
        proto: p.protocol(),
        frag_off: p.frag_offset(),
        mf: p.more_frags(),
        id: p.ident(),
        src: p.src_u32(),
        dst: p.dst_u32(),
    })
}

/// Which address (and port) of a packet a translation changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Src,
    Dst,
}

impl Side {
    fn addr_field(self) -> Field {
        match self {
            Side::Src => ipv4::field::SRC_ADDR,
            Side::Dst => ipv4::field::DST_ADDR,
        }
    }

    /// Where the port's field starts in a TCP or UDP header (the same in
    /// both); an ICMP query id's whichever side. An offset, not a range: a
    /// 2-byte read at an offset the compiler knows the length of.
    fn port_at(self, proto: u8) -> usize {
        match (proto, self) {
            (proto::ICMP, _) => icmp4::field::ECHO_ID.start,
            (_, Side::Src) => udp::field::SRC_PORT.start,
            (_, Side::Dst) => udp::field::DST_PORT.start,
        }
    }
}

/// Sets `side`'s address of the IPv4 header at the start of `b` (whole:
/// checked by [`parse`]) to `new` and updates its checksum.
#[inline(always)]
fn set_addr(b: &mut [u8], side: Side, new: u32) -> Result<(), R> {
    let h = b.first_chunk_mut().ok_or(R::NatTruncated)?;
    ipv4::update_addr(h, side.addr_field(), new);
    Ok(())
}

/// Updates the transport header at `l4` for an address of its pseudo-header
/// changed from `old` to `new`, and writes `port` (where its field starts,
/// new value) when given. A real packet (`quote` false) must hold its whole
/// header; a quote (`quote` true) needs only the port, and its checksum is
/// updated only when the quote reaches it. Other protocols: the address needs
/// nothing, a port is [`DropReason::NatUnsupportedProto`]. Nothing is written
/// on error.
#[inline(always)]
fn set_l4(
    b: &mut [u8],
    l4: usize,
    proto: u8,
    old: u32,
    new: u32,
    port: Option<(usize, u16)>,
    quote: bool,
) -> Result<(), R> {
    let len = b.len();
    match proto {
        proto::TCP | proto::UDP => {
            let (ck, hdr) = if proto == proto::TCP {
                (tcp::field::CHECKSUM.start, tcp::HEADER_LEN)
            } else {
                (udp::field::CHECKSUM.start, udp::HEADER_LEN)
            };
            let need = match (quote, port) {
                (false, _) => hdr,
                // The ports.
                (true, Some(_)) => udp::field::DST_PORT.end,
                (true, None) => 0,
            };
            if l4 + need > len {
                return Err(R::NatTruncated);
            }
            let moved = port.map(|(at, p)| {
                let o = be16(b, l4 + at);
                put16(b, l4 + at, p);
                (o, p)
            });
            if l4 + ck + 2 <= len {
                let c = be16(b, l4 + ck);
                if proto == proto::UDP && c == 0 {
                    // No checksum: stays none (RFC 768).
                    return Ok(());
                }
                let mut c = csum_update32(c, old, new);
                if let Some((o, p)) = moved {
                    c = csum_update16(c, o, p);
                }
                if proto == proto::UDP && c == 0 {
                    c = 0xffff;
                }
                put16(b, l4 + ck, c);
            }
            Ok(())
        }
        proto::ICMP => {
            if let Some((at, p)) = port {
                let m = b
                    .get_mut(l4..)
                    .and_then(|m| m.first_chunk_mut::<{ icmp4::HEADER_LEN }>())
                    .ok_or(R::NatTruncated)?;
                let o = be16(m, at);
                put16(m, at, p);
                let c = csum_update16(get16(m, icmp4::field::CHECKSUM), o, p);
                set16(m, icmp4::field::CHECKSUM, c);
            }
            Ok(())
        }
        _ if port.is_some() => Err(R::NatUnsupportedProto),
        _ => Ok(()),
    }
}

/// Translates `side` of the packet `ip` (header `h`) to `addr` and, for a
/// first fragment, its port on that side (TCP/UDP) or its ICMP query id to
/// `port`. Checksums: IPv4 header always; transport only in a first fragment
/// (later ones carry no transport header). ICMP errors are handled by
/// [`xlate_error`], not here.
#[inline(always)]
pub(super) fn xlate(
    ip: &mut [u8],
    h: &Hdr,
    side: Side,
    addr: u32,
    port: Option<u16>,
) -> Result<(), R> {
    let old = match side {
        Side::Src => h.src,
        Side::Dst => h.dst,
    };
    if h.frag_off == 0 {
        let port = port.map(|p| (side.port_at(h.proto), p));
        set_l4(ip, h.ihl, h.proto, old, addr, port, false)?;
    }
    set_addr(ip, side, addr)
}

/// The flow of the packet an ICMP error quotes (from its offset 8).
#[derive(Debug, Clone, Copy)]
pub(super) struct Quoted {
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
    /// TCP/UDP ports; for an ICMP echo (request or reply) both are its id.
    pub sport: u16,
    pub dport: u16,
}

/// Reads the quoted packet of the ICMP error at `l4` for a session lookup:
/// a whole IP header, then the ports or the echo id (RFC 792 quotes 8 bytes).
/// A quoted non-first fragment has no ports: [`DropReason::NatFragmentUnknown`].
pub(super) fn quoted(ip: &[u8], l4: usize) -> Result<Quoted, R> {
    let e = l4 + icmp4::field::QUOTE;
    let eh = parse(ip.get(e..).ok_or(R::NatTruncated)?)?;
    if eh.frag_off != 0 {
        return Err(R::NatFragmentUnknown);
    }
    // The 8 bytes RFC 792 quotes: ports, or ICMP type, code, checksum, id.
    let q: &[u8; 8] = ip
        .get(e + eh.ihl..)
        .and_then(|q| q.first_chunk())
        .ok_or(R::NatTruncated)?;
    let (sport, dport) = match eh.proto {
        proto::TCP | proto::UDP => (
            get16(q, udp::field::SRC_PORT),
            get16(q, udp::field::DST_PORT),
        ),
        proto::ICMP
            if matches!(
                q[icmp4::field::TYPE],
                icmp_types::ECHO_REQUEST | icmp_types::ECHO_REPLY
            ) =>
        {
            let id = get16(q, icmp4::field::ECHO_ID);
            (id, id)
        }
        _ => return Err(R::NatUnsupportedProto),
    };
    Ok(Quoted {
        proto: eh.proto,
        src: eh.src,
        dst: eh.dst,
        sport,
        dport,
    })
}

/// In the ICMP error at `l4` of `ip`, translates `side` of the quoted packet:
/// its address to `addr` (only if it is `expect`, when given) and, in a
/// quoted first fragment, its port or echo id to `port`. Updates the quoted
/// IP header's checksum, the quoted transport checksum where the quote
/// reaches it, and the error's own ICMP checksum for all of it (RFC 5508,
/// REQ-3 and -4). The outer header is not touched.
pub(super) fn xlate_quoted(
    ip: &mut [u8],
    l4: usize,
    side: Side,
    expect: Option<u32>,
    addr: u32,
    port: Option<u16>,
) -> Result<(), R> {
    let e = l4 + icmp4::field::QUOTE;
    let eh = parse(ip.get(e..).ok_or(R::NatTruncated)?)?;
    let old = match side {
        Side::Src => eh.src,
        Side::Dst => eh.dst,
    };
    if expect.is_some_and(|x| x != old) {
        return Ok(());
    }
    if eh.frag_off != 0 && port.is_some() {
        return Err(R::NatFragmentUnknown);
    }
    let el4 = e + eh.ihl;
    // The words that can change: quoted IP header and transport header up
    // to the TCP checksum. Their sum before and after updates the ICMP
    // checksum in one step (their offset from the ICMP header is even).
    let end = (el4 + tcp::HEADER_LEN).min(ip.len());
    let before = !csum_fold(csum_add(0, &ip[e..end]));
    if eh.frag_off == 0 {
        let port = port.map(|p| (side.port_at(eh.proto), p));
        set_l4(ip, el4, eh.proto, old, addr, port, true)?;
    }
    set_addr(&mut ip[e..], side, addr)?;
    let after = !csum_fold(csum_add(0, &ip[e..end]));
    let ck = l4 + icmp4::field::CHECKSUM.start..l4 + icmp4::field::CHECKSUM.end;
    let c = csum_update16(get16(ip, ck.clone()), before, after);
    set16(ip, ck, c);
    Ok(())
}

/// Whether `ip` (header `h`) is an ICMP error with its header in this
/// fragment.
#[inline(always)]
pub(super) fn icmp_error(ip: &[u8], h: &Hdr) -> bool {
    h.proto == proto::ICMP
        && h.frag_off == 0
        && ip
            .get(h.ihl..)
            .and_then(icmp4::Icmp4Packet::new_checked)
            .is_some_and(|m| icmp4::is_error(m.msg_type()))
}

/// Stateless 1:1 NAT (a floating IP) on the way out: the source becomes
/// `new`. TCP and UDP checksums follow (first fragments only: later ones carry
/// no transport header; a zero UDP checksum stays zero); ICMP has no
/// pseudo-header. An ICMP error sent by the inside host quotes a packet it
/// received, addressed to the fixed IP: the quoted destination, if it is the
/// old source, becomes `new` too, with the quoted checksums and the ICMP
/// checksum right (RFC 5508). Any other protocol gets the address only.
pub fn rewrite_src(ip: &mut [u8], new: Ipv4Addr) -> Result<(), DropReason> {
    let h = parse(ip)?;
    let new = u32::from(new);
    if icmp_error(ip, &h) {
        xlate_quoted(ip, h.ihl, Side::Dst, Some(h.src), new, None)?;
    }
    xlate(ip, &h, Side::Src, new, None)
}

/// Stateless 1:1 NAT (a floating IP) on the way in: the destination becomes
/// `new`, as [`rewrite_src`] does for the source. An ICMP error from outside
/// quotes the packet the inside host sent, from the floating IP: the quoted
/// source, if it is the old destination, becomes `new` too.
pub fn rewrite_dst(ip: &mut [u8], new: Ipv4Addr) -> Result<(), DropReason> {
    let h = parse(ip)?;
    let new = u32::from(new);
    if icmp_error(ip, &h) {
        xlate_quoted(ip, h.ihl, Side::Src, Some(h.dst), new, None)?;
    }
    xlate(ip, &h, Side::Dst, new, None)
}

/// What [`crate::nat::Nat::snat_in`] translates in the IPv4 packet `ip`
/// from outside besides its destination address: its destination port
/// (TCP, UDP) or echo id (ICMP); `None` for anything else (a fragment, an
/// ICMP error, a short packet), whose port is not translated.
pub fn in_port(ip: &[u8]) -> Option<u16> {
    let h = parse(ip).ok()?;
    if h.frag_off != 0 {
        return None;
    }
    let at = Side::Dst.port_at(h.proto);
    let port = |l4: &[u8]| Some(be16(l4.get(..at + 2)?, at));
    let l4 = ip.get(h.ihl..)?;
    match h.proto {
        proto::TCP | proto::UDP => port(l4),
        proto::ICMP if l4.first() == Some(&icmp_types::ECHO_REPLY) => port(l4),
        _ => None,
    }
}

/// Puts back the destination of a packet from outside that
/// [`crate::nat::Nat::snat_in`] translated: address `addr` and, if `port`,
/// the port or echo id ([`in_port`] read before), checksums updated. So an
/// ICMP error about it quotes what its sender sent.
pub fn untranslate_in(ip: &mut [u8], addr: Ipv4Addr, port: Option<u16>) -> Result<(), DropReason> {
    let h = parse(ip)?;
    xlate(ip, &h, Side::Dst, u32::from(addr), port)
}
