//! The packet side of NAT: reading the fields a translation needs and
//! rewriting addresses, ports and ICMP query ids with incremental checksum
//! updates (RFC 1624), in the outer packet and in the packet an ICMP error
//! quotes (RFC 5508). Every access is checked first: a short packet is a
//! [`DropReason::NatTruncated`], never a panic.
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
//! TCP: ports at 0 and 2, checksum at 16 (pseudo-header).
//! UDP: ports at 0 and 2, checksum at 6 (pseudo-header; 0 = none).
//! ICMP: type 0, code 1, checksum at 2 (no pseudo-header); echo id at 4;
//!       errors (3, 11, 12) quote the offending IP header + 8 bytes from 8.
//! ```

use std::net::Ipv4Addr;

use crate::pkt::*;
use crate::stats::DropReason;

type R = DropReason;

/// More fragments.
pub(super) const MF: u16 = 0x2000;
const OFFSET: u16 = 0x1fff;
pub(super) const ICMP_ECHO_REPLY: u8 = 0;
pub(super) const ICMP_ECHO_REQUEST: u8 = 8;

/// Destination unreachable, time exceeded, parameter problem: the ICMP
/// errors that quote a packet.
#[inline(always)]
pub(super) fn is_icmp_error(t: u8) -> bool {
    matches!(t, 3 | 11 | 12)
}

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
    if b.len() < IPV4_LEN || b[0] >> 4 != 4 {
        return Err(R::NatTruncated);
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    if ihl < IPV4_LEN || ihl > b.len() {
        return Err(R::NatTruncated);
    }
    let f = be16(b, 6);
    Ok(Hdr {
        ihl,
        proto: b[9],
        frag_off: f & OFFSET,
        mf: f & MF != 0,
        id: be16(b, 4),
        src: be32(b, 12),
        dst: be32(b, 16),
    })
}

/// Which address (and port) of a packet a translation changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Src,
    Dst,
}

impl Side {
    fn addr_at(self) -> usize {
        match self {
            Side::Src => 12,
            Side::Dst => 16,
        }
    }

    /// The port's offset in a TCP or UDP header; an ICMP query id is at 4
    /// whichever side.
    fn port_at(self, proto: u8) -> usize {
        match (proto, self) {
            (PROTO_ICMP, _) => 4,
            (_, Side::Src) => 0,
            (_, Side::Dst) => 2,
        }
    }
}

/// Writes `new` at `h + at` (an address of the IPv4 header at `h`) and
/// updates that header's checksum; returns the old address. `b` holds the
/// whole header (checked by [`parse`]).
#[inline(always)]
fn set_addr(b: &mut [u8], h: usize, at: usize, new: u32) -> u32 {
    let old = be32(b, h + at);
    put32(b, h + at, new);
    let c = csum_update32(be16(b, h + 10), old, new);
    put16(b, h + 10, c);
    old
}

/// Updates the transport header at `l4` for an address of its pseudo-header
/// changed from `old` to `new`, and writes `port` (offset in the header, new
/// value) when given. A real packet (`quote` false) must hold its whole
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
        PROTO_TCP | PROTO_UDP => {
            let (ck, hdr) = if proto == PROTO_TCP {
                (16, 20)
            } else {
                (6, UDP_LEN)
            };
            let need = match (quote, port) {
                (false, _) => hdr,
                (true, Some(_)) => 4,
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
                if proto == PROTO_UDP && c == 0 {
                    // No checksum: stays none (RFC 768).
                    return Ok(());
                }
                let mut c = csum_update32(c, old, new);
                if let Some((o, p)) = moved {
                    c = csum_update16(c, o, p);
                }
                if proto == PROTO_UDP && c == 0 {
                    c = 0xffff;
                }
                put16(b, l4 + ck, c);
            }
            Ok(())
        }
        PROTO_ICMP => {
            if let Some((at, p)) = port {
                if l4 + ICMP_LEN > len {
                    return Err(R::NatTruncated);
                }
                let o = be16(b, l4 + at);
                put16(b, l4 + at, p);
                let c = csum_update16(be16(b, l4 + 2), o, p);
                put16(b, l4 + 2, c);
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
    set_addr(ip, 0, side.addr_at(), addr);
    Ok(())
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
    let e = l4 + ICMP_LEN;
    let eh = parse(ip.get(e..).ok_or(R::NatTruncated)?)?;
    if eh.frag_off != 0 {
        return Err(R::NatFragmentUnknown);
    }
    let el4 = e + eh.ihl;
    if el4 + 8 > ip.len() {
        return Err(R::NatTruncated);
    }
    let (sport, dport) = match eh.proto {
        PROTO_TCP | PROTO_UDP => (be16(ip, el4), be16(ip, el4 + 2)),
        PROTO_ICMP if matches!(ip[el4], ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) => {
            let id = be16(ip, el4 + 4);
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
    let e = l4 + ICMP_LEN;
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
    let end = (el4 + 20).min(ip.len());
    let before = !csum_fold(csum_add(0, &ip[e..end]));
    if eh.frag_off == 0 {
        let port = port.map(|p| (side.port_at(eh.proto), p));
        set_l4(ip, el4, eh.proto, old, addr, port, true)?;
    }
    set_addr(ip, e, side.addr_at(), addr);
    let after = !csum_fold(csum_add(0, &ip[e..end]));
    let c = csum_update16(be16(ip, l4 + 2), before, after);
    put16(ip, l4 + 2, c);
    Ok(())
}

/// Whether `ip` (header `h`) is an ICMP error with its header in this
/// fragment.
#[inline(always)]
pub(super) fn icmp_error(ip: &[u8], h: &Hdr) -> bool {
    h.proto == PROTO_ICMP
        && h.frag_off == 0
        && ip.len() >= h.ihl + ICMP_LEN
        && is_icmp_error(ip[h.ihl])
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
    let at = h.ihl + Side::Dst.port_at(h.proto);
    match h.proto {
        PROTO_TCP | PROTO_UDP => Some(be16(ip.get(..at + 2)?, at)),
        PROTO_ICMP if ip.get(h.ihl) == Some(&ICMP_ECHO_REPLY) => Some(be16(ip.get(..at + 2)?, at)),
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
