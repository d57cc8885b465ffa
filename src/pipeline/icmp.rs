//! The ICMP and ICMPv6 errors routing answers with (unreachable, time
//! exceeded, fragmentation needed / packet too big), built in place in the
//! packet's buffer, never about an ICMP error or a non-first fragment, rate
//! limited per worker.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::route::{deliver_routed, egress_to, next_hop};
use super::{Disposition as D, Env, Trace, FROM_OVERLAY, ICMP_ERROR_MAX};
use crate::mac::MacAddr;
use crate::pkt::Frame;
use crate::stats::{DropReason, DropReason as R};
use crate::tables::{Iface, RouterTables, Snapshot};
use crate::wire::checksum::{checksum, csum_add, csum_fold, pseudo6};
use crate::wire::{
    be16, ethernet, icmp4, icmp6, ipv4, ipv4_at, ipv6, ipv6_at, mac_at, proto, put16, put32,
};

/// What an ICMP error depends on the IP version for (ICMP, RFC 792 and
/// 1812; ICMPv6, RFC 4443): the one error builder ([`build`]) and
/// [`icmp_error`] are written once, over [`V4`] and [`V6`].
pub(super) trait IcmpIp {
    /// An address of this version.
    type Addr: Copy + std::fmt::Display;
    /// What traces call the error ("ICMP", "ICMPv6").
    const NAME: &'static str;
    const ETHERTYPE: u16;
    /// The error's IP header (no option, no extension header).
    const HEADER_LEN: usize;
    /// The ICMP header before the quote.
    const ICMP_HEADER_LEN: usize;
    /// The error (type, code) of a packet with no route.
    const NO_ROUTE: (u8, u8);
    /// The error (type, code) of a packet whose TTL (hop limit) runs out.
    const TIME_EXCEEDED: (u8, u8);
    /// The error (type, code) of a packet too big for its way out (with
    /// the MTU in the header's last word).
    const TOO_BIG: (u8, u8);
    /// `a`, if it is of this version.
    fn of(a: IpAddr) -> Option<Self::Addr>;
    /// Whether an error may be sent about the packet `ip` (header valid).
    fn may_answer(ip: &[u8]) -> bool;
    /// The source of the packet `ip`, the error's destination.
    fn source(ip: &[u8]) -> Self::Addr;
    /// Writes the error's IP header at the start of `ip`, for `icmp_len`
    /// bytes of ICMP from `from` to `to`.
    fn write_header(ip: &mut [u8], icmp_len: usize, from: Self::Addr, to: Self::Addr);
    /// The checksum of the ICMP message `icmp` (its checksum field zero)
    /// from `from` to `to`.
    fn checksum(from: Self::Addr, to: Self::Addr, icmp: &[u8]) -> u16;
}

/// ICMP errors about IPv4 packets.
pub(super) struct V4;

/// ICMPv6 errors about IPv6 packets.
pub(super) struct V6;

impl IcmpIp for V4 {
    type Addr = Ipv4Addr;
    const NAME: &'static str = "ICMP";
    const ETHERTYPE: u16 = ethernet::ETHERTYPE_IPV4;
    const HEADER_LEN: usize = ipv4::HEADER_LEN;
    const ICMP_HEADER_LEN: usize = icmp4::HEADER_LEN;
    const NO_ROUTE: (u8, u8) = (icmp4::types::DEST_UNREACHABLE, icmp4::unreachable::NET);
    const TIME_EXCEEDED: (u8, u8) = (icmp4::types::TIME_EXCEEDED, icmp4::time_exceeded::TTL);
    const TOO_BIG: (u8, u8) = (
        icmp4::types::DEST_UNREACHABLE,
        icmp4::unreachable::FRAG_NEEDED,
    );

    #[inline(always)]
    fn of(a: IpAddr) -> Option<Ipv4Addr> {
        match a {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    /// RFC 1812 4.3.2.7: never about an ICMP error or a non-first fragment.
    fn may_answer(ip: &[u8]) -> bool {
        if be16(ip, ipv4::field::FLAGS_OFFSET.start) & ipv4::OFFSET_MASK != 0 {
            return false;
        }
        if ip[ipv4::field::PROTOCOL] == proto::ICMP {
            let ihl = usize::from(ip[ipv4::field::VER_IHL] & 0x0f) * 4;
            return ip.get(ihl).is_some_and(|&t| icmp4::is_query(t));
        }
        true
    }

    #[inline(always)]
    fn source(ip: &[u8]) -> Ipv4Addr {
        ipv4_at(ip, ipv4::field::SRC_ADDR.start)
    }

    #[inline(always)]
    fn write_header(ip: &mut [u8], icmp_len: usize, from: Ipv4Addr, to: Ipv4Addr) {
        let total = (ipv4::HEADER_LEN + icmp_len) as u16;
        ipv4::write(ip, total, 64, proto::ICMP, from.octets(), to.octets());
    }

    #[inline(always)]
    fn checksum(_: Ipv4Addr, _: Ipv4Addr, icmp: &[u8]) -> u16 {
        checksum(icmp)
    }
}

impl IcmpIp for V6 {
    type Addr = Ipv6Addr;
    const NAME: &'static str = "ICMPv6";
    const ETHERTYPE: u16 = ethernet::ETHERTYPE_IPV6;
    const HEADER_LEN: usize = ipv6::HEADER_LEN;
    const ICMP_HEADER_LEN: usize = icmp6::HEADER_LEN;
    const NO_ROUTE: (u8, u8) = (icmp6::types::DEST_UNREACHABLE, icmp6::unreachable::NO_ROUTE);
    const TIME_EXCEEDED: (u8, u8) = (icmp6::types::TIME_EXCEEDED, icmp6::time_exceeded::HOP_LIMIT);
    const TOO_BIG: (u8, u8) = (icmp6::types::PACKET_TOO_BIG, 0);

    #[inline(always)]
    fn of(a: IpAddr) -> Option<Ipv6Addr> {
        match a {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }

    /// Never about an ICMPv6 error (types below 128).
    fn may_answer(ip: &[u8]) -> bool {
        ip[ipv6::field::NEXT_HEADER] != proto::ICMPV6
            || ip
                .get(ipv6::HEADER_LEN)
                .is_some_and(|&ty| !icmp6::is_error(ty))
    }

    #[inline(always)]
    fn source(ip: &[u8]) -> Ipv6Addr {
        ipv6_at(ip, ipv6::field::SRC_ADDR.start)
    }

    #[inline(always)]
    fn write_header(ip: &mut [u8], icmp_len: usize, from: Ipv6Addr, to: Ipv6Addr) {
        let plen = icmp_len as u16;
        ipv6::write(ip, plen, proto::ICMPV6, 64, &from.octets(), &to.octets());
    }

    #[inline(always)]
    fn checksum(from: Ipv6Addr, to: Ipv6Addr, icmp: &[u8]) -> u16 {
        let sum = pseudo6(
            &from.octets(),
            &to.octets(),
            icmp.len() as u32,
            proto::ICMPV6,
        );
        csum_fold(csum_add(sum, icmp))
    }
}

/// Turns the packet in `f` (from `in_port`, to the router interface `ingress`)
/// into ICMP error `(type, code)` to its source, in place ([`build`]), with
/// `rest` in the ICMP header's last word (the MTU of a [`IcmpIp::TOO_BIG`]):
/// answered out of `in_port`, counted under `why`.
#[allow(clippy::too_many_arguments)]
pub(super) fn icmp_error<V: IcmpIp, T: Trace>(
    env: &mut Env,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    (ty, code): (u8, u8),
    rest: u32,
    why: DropReason,
    t: &mut T,
) -> D {
    // A frame another host sent here for SNAT gets no answer (no ICMP goes
    // back over the overlay) but for a path MTU ([`too_big4`], [`too_big6`]):
    // that host already answered for its TTL and route before sending it.
    if in_port == FROM_OVERLAY {
        return D::Drop(why);
    }
    let Some(from) = V::of(ingress.ip) else {
        return D::Drop(why);
    };
    ok_or_drop!(build::<V, T>(
        env,
        from,
        ingress.mac,
        f,
        (ty, code, rest),
        t
    ));
    D::Answered { port: in_port, why }
}

/// The packet in `f` turned, in place, into ICMP error `(type, code, rest)`
/// from `from` (`mac`) to its source, back to the MAC it came from: a new IP
/// and ICMP header in front of the quoted original, at most
/// [`ICMP_ERROR_MAX`] bytes of IP. Never about an ICMP error (nor, IPv4, a
/// non-first fragment); rate limited.
fn build<V: IcmpIp, T: Trace>(
    env: &mut Env,
    from: V::Addr,
    mac: MacAddr,
    f: &mut Frame,
    (ty, code, rest): (u8, u8, u32),
    t: &mut T,
) -> Result<(), DropReason> {
    let b = f.data();
    let ip = &b[ethernet::HEADER_LEN..];
    if !V::may_answer(ip) {
        return Err(R::IcmpErrorNotSent);
    }
    if !env.icmp_token() {
        return Err(R::IcmpRateLimited);
    }
    let to = V::source(ip);
    let src_mac = mac_at(b, ethernet::field::SRC.start);
    let quote = ip
        .len()
        .min(ICMP_ERROR_MAX - V::HEADER_LEN - V::ICMP_HEADER_LEN);
    if !f.prepend(V::HEADER_LEN + V::ICMP_HEADER_LEN) {
        return Err(R::NoHeadroom);
    }
    f.trim(ethernet::HEADER_LEN + V::HEADER_LEN + V::ICMP_HEADER_LEN + quote);
    let b = f.data_mut();
    ethernet::write(b, &src_mac, &mac.0, V::ETHERTYPE);
    V::write_header(
        &mut b[ethernet::HEADER_LEN..],
        V::ICMP_HEADER_LEN + quote,
        from,
        to,
    );
    // The ICMP and ICMPv6 headers share their layout: type, code, checksum,
    // one word.
    let icmp = &mut b[ethernet::HEADER_LEN + V::HEADER_LEN..];
    icmp[icmp4::field::TYPE] = ty;
    icmp[icmp4::field::CODE] = code;
    put16(icmp, icmp4::field::CHECKSUM.start, 0);
    put32(icmp, icmp4::field::REST.start, rest);
    let c = V::checksum(from, to, icmp);
    put16(icmp, icmp4::field::CHECKSUM.start, c);
    tr!(
        t,
        "icmp",
        "{} type {ty} code {code} from {from} to {to}",
        V::NAME
    );
    Ok(())
}

/// Error [`IcmpIp::TOO_BIG`] with the way's MTU: `(type, code, rest)` for
/// [`build`].
#[inline(always)]
fn too_big<V: IcmpIp>(mtu: u16) -> (u8, u8, u32) {
    (V::TOO_BIG.0, V::TOO_BIG.1, u32::from(mtu))
}

/// The IPv4 packet in `f` (header valid), routed by router `r` from
/// interface `ingress` (port `in_port`), is `total` bytes and its way out
/// takes at most `mtu`: with DF, answered with fragmentation needed and the
/// way's MTU (RFC 1191) from the interface it came in by (a frame another
/// host sent here for SNAT: routed back to its sender over the overlay),
/// else dropped (dvr does not fragment). Before any translation of the
/// packet, so the quote is what its sender sent.
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
pub(super) fn too_big4<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    mtu: u16,
    t: &mut T,
) -> D {
    let total = be16(f.data(), ethernet::HEADER_LEN + ipv4::field::LENGTH.start);
    if be16(
        f.data(),
        ethernet::HEADER_LEN + ipv4::field::FLAGS_OFFSET.start,
    ) & ipv4::DF
        == 0
    {
        tr!(
            t,
            "mtu",
            "{total} bytes exceed the way's MTU {mtu}; fragmenting is not supported"
        );
        return D::Drop(R::MtuExceeded);
    }
    tr!(
        t,
        "mtu",
        "{total} bytes exceed the way's MTU {mtu} with DF: fragmentation needed"
    );
    if in_port != FROM_OVERLAY {
        return icmp_error::<V4, T>(
            env,
            ingress,
            in_port,
            f,
            V4::TOO_BIG,
            u32::from(mtu),
            R::FragmentationNeeded,
            t,
        );
    }
    let IpAddr::V4(from) = ingress.ip else {
        return D::Drop(R::FragmentationNeeded);
    };
    ok_or_drop!(build::<V4, T>(
        env,
        from,
        ingress.mac,
        f,
        too_big::<V4>(mtu),
        t
    ));
    // Back to the sender where it lives, as the router routes to it.
    let dst = ipv4_at(f.data(), ethernet::HEADER_LEN + ipv4::field::DST_ADDR.start);
    let (eg, net) = ok_or_drop!(egress_to(snap, r, dst, t));
    answered_if_sent(deliver_routed(snap, net, &eg, f, t), R::FragmentationNeeded)
}

/// `d`, the disposition of an ICMP error [`build`]
/// made, then routed: sent, it is answered (counted under `why`); dropped on
/// its way, the frame counts once, under that drop's reason, not also as
/// answered.
#[inline(always)]
fn answered_if_sent(d: D, why: DropReason) -> D {
    match d {
        D::Forward(port) => D::Answered { port, why },
        d => d,
    }
}

/// The IPv4 packet in `f`, in from the external port `in_port` to `from`
/// (address, MAC: a floating IP or a router's gateway), untranslated, is too
/// big for the network its translated destination is on (`mtu`): with DF,
/// answered from `from` with fragmentation needed, else dropped.
#[cold]
#[inline(never)]
pub(super) fn too_big_in<T: Trace>(
    env: &mut Env,
    (from, mac): (Ipv4Addr, MacAddr),
    in_port: u16,
    f: &mut Frame,
    mtu: u16,
    t: &mut T,
) -> D {
    if be16(
        f.data(),
        ethernet::HEADER_LEN + ipv4::field::FLAGS_OFFSET.start,
    ) & ipv4::DF
        == 0
    {
        tr!(
            t,
            "mtu",
            "exceeds the MTU {mtu} of the way in; fragmenting is not supported"
        );
        return D::Drop(R::MtuExceeded);
    }
    tr!(
        t,
        "mtu",
        "exceeds the MTU {mtu} of the way in, with DF: fragmentation needed"
    );
    ok_or_drop!(build::<V4, T>(env, from, mac, f, too_big::<V4>(mtu), t));
    D::Answered {
        port: in_port,
        why: R::FragmentationNeeded,
    }
}

/// The IPv6 packet in `f`, in from the external port `in_port` to `mac`
/// (routed, never translated), answered with ICMPv6 error `(type, code)`
/// and `rest` from `from` (the router's address on the way in to the
/// destination) out of the external port, counted under `why`.
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
pub(super) fn error_in6<T: Trace>(
    env: &mut Env,
    (from, mac): (Ipv6Addr, MacAddr),
    in_port: u16,
    f: &mut Frame,
    (ty, code): (u8, u8),
    rest: u32,
    why: DropReason,
    t: &mut T,
) -> D {
    ok_or_drop!(build::<V6, T>(env, from, mac, f, (ty, code, rest), t));
    D::Answered { port: in_port, why }
}

/// The IPv6 counterpart of [`too_big4`] (packet too big, RFC 8201; IPv6
/// routers never fragment).
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
pub(super) fn too_big6<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    mtu: u16,
    t: &mut T,
) -> D {
    let why = R::FragmentationNeeded;
    if in_port != FROM_OVERLAY {
        return icmp_error::<V6, T>(
            env,
            ingress,
            in_port,
            f,
            V6::TOO_BIG,
            u32::from(mtu),
            why,
            t,
        );
    }
    let IpAddr::V6(from) = ingress.ip else {
        return D::Drop(why);
    };
    ok_or_drop!(build::<V6, T>(
        env,
        from,
        ingress.mac,
        f,
        too_big::<V6>(mtu),
        t
    ));
    // Back to the sender where it lives, as the router routes to it.
    let dst = ipv6_at(f.data(), ethernet::HEADER_LEN + ipv6::field::DST_ADDR.start);
    let eg = ok_or_drop!(next_hop(r, IpAddr::V6(dst), t));
    let Some(net) = snap.net(eg.iface.net) else {
        return D::Drop(R::Dangling);
    };
    answered_if_sent(deliver_routed(snap, net, &eg, f, t), why)
}
