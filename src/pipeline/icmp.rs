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

/// Whether an ICMP error may be sent about this IPv4 packet (RFC 1812 4.3.2.7:
/// never about an ICMP error or a non-first fragment).
fn may_answer4(ip: &[u8], ihl: usize) -> bool {
    if be16(ip, ipv4::field::FLAGS_OFFSET.start) & ipv4::OFFSET_MASK != 0 {
        return false;
    }
    if ip[ipv4::field::PROTOCOL] == proto::ICMP {
        return ip.get(ihl).is_some_and(|&t| icmp4::is_query(t));
    }
    true
}

/// Turns the packet in `f` (from `in_port`, to the router interface `ingress`)
/// into an ICMP error to its source, in place: a new IPv4 + ICMP header in
/// front of the quoted original, at most [`ICMP_ERROR_MAX`] bytes of IP.
#[allow(clippy::too_many_arguments)]
pub(super) fn icmp4_error<T: Trace>(
    env: &mut Env,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    ty: u8,
    code: u8,
    mtu: u32,
    why: DropReason,
    t: &mut T,
) -> D {
    // A frame another host sent here for SNAT gets no answer (no ICMP goes
    // back over the overlay) but for a path MTU ([`too_big4`]): that host
    // already answered for its TTL and route before sending it.
    if in_port == FROM_OVERLAY {
        return D::Drop(why);
    }
    let IpAddr::V4(from) = ingress.ip else {
        return D::Drop(why);
    };
    ok_or_drop!(icmp4_build(
        env,
        from,
        ingress.mac,
        f,
        Icmp4 { ty, code, mtu },
        t
    ));
    D::Answered { port: in_port, why }
}

/// An ICMP error's type, code and (fragmentation needed) next-hop MTU.
#[derive(Clone, Copy)]
struct Icmp4 {
    ty: u8,
    code: u8,
    mtu: u32,
}

/// ICMP destination unreachable, fragmentation needed (RFC 1191).
const fn frag_needed(mtu: u16) -> Icmp4 {
    Icmp4 {
        ty: icmp4::types::DEST_UNREACHABLE,
        code: icmp4::unreachable::FRAG_NEEDED,
        mtu: mtu as u32,
    }
}

/// The IPv4 packet in `f` turned, in place, into ICMP error `e` from `from`
/// (`mac`) to its source, back to the MAC it came from. Never about an ICMP
/// error or a non-first fragment; rate limited.
fn icmp4_build<T: Trace>(
    env: &mut Env,
    from: Ipv4Addr,
    mac: MacAddr,
    f: &mut Frame,
    e: Icmp4,
    t: &mut T,
) -> Result<(), DropReason> {
    let b = f.data();
    let ip = &b[ethernet::HEADER_LEN..];
    let ihl = usize::from(ip[ipv4::field::VER_IHL] & 0x0f) * 4;
    if !may_answer4(ip, ihl) {
        return Err(R::IcmpErrorNotSent);
    }
    if !env.icmp_token() {
        return Err(R::IcmpRateLimited);
    }
    let to: [u8; 4] = ip[ipv4::field::SRC_ADDR].try_into().expect("4 bytes");
    let src_mac = mac_at(b, ethernet::field::SRC.start);
    let quote = ip
        .len()
        .min(ICMP_ERROR_MAX - ipv4::HEADER_LEN - icmp4::HEADER_LEN);
    if !f.prepend(ipv4::HEADER_LEN + icmp4::HEADER_LEN) {
        return Err(R::NoHeadroom);
    }
    f.trim(ethernet::HEADER_LEN + ipv4::HEADER_LEN + icmp4::HEADER_LEN + quote);
    let b = f.data_mut();
    ethernet::write(b, &src_mac, &mac.0, ethernet::ETHERTYPE_IPV4);
    let total = (ipv4::HEADER_LEN + icmp4::HEADER_LEN + quote) as u16;
    ipv4::write(
        &mut b[ethernet::HEADER_LEN..],
        total,
        64,
        proto::ICMP,
        from.octets(),
        to,
    );
    let icmp = &mut b[ethernet::HEADER_LEN + ipv4::HEADER_LEN..];
    icmp[icmp4::field::TYPE] = e.ty;
    icmp[icmp4::field::CODE] = e.code;
    put16(icmp, icmp4::field::CHECKSUM.start, 0);
    put32(icmp, icmp4::field::REST.start, e.mtu & 0xffff);
    let c = checksum(icmp);
    put16(icmp, icmp4::field::CHECKSUM.start, c);
    tr!(
        t,
        "icmp",
        "ICMP type {} code {} from {from} to {}",
        e.ty,
        e.code,
        Ipv4Addr::from(to)
    );
    Ok(())
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
        return icmp4_error(
            env,
            ingress,
            in_port,
            f,
            icmp4::types::DEST_UNREACHABLE,
            icmp4::unreachable::FRAG_NEEDED,
            mtu as u32,
            R::FragmentationNeeded,
            t,
        );
    }
    let IpAddr::V4(from) = ingress.ip else {
        return D::Drop(R::FragmentationNeeded);
    };
    ok_or_drop!(icmp4_build(env, from, ingress.mac, f, frag_needed(mtu), t));
    // Back to the sender where it lives, as the router routes to it.
    let dst = ipv4_at(f.data(), ethernet::HEADER_LEN + ipv4::field::DST_ADDR.start);
    let (eg, net) = ok_or_drop!(egress_to(snap, r, dst, t));
    answered_if_sent(deliver_routed(snap, net, &eg, f, t), R::FragmentationNeeded)
}

/// `d`, the disposition of an ICMP error [`icmp4_build`] or [`icmp6_build`]
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
    ok_or_drop!(icmp4_build(env, from, mac, f, frag_needed(mtu), t));
    D::Answered {
        port: in_port,
        why: R::FragmentationNeeded,
    }
}

/// The IPv6 counterpart of [`icmp4_error`] (RFC 4443).
#[allow(clippy::too_many_arguments)]
pub(super) fn icmp6_error<T: Trace>(
    env: &mut Env,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    ty: u8,
    code: u8,
    param: u32,
    why: DropReason,
    t: &mut T,
) -> D {
    // As in icmp4_error: no answer over the overlay but for a path MTU.
    if in_port == FROM_OVERLAY {
        return D::Drop(why);
    }
    let IpAddr::V6(from) = ingress.ip else {
        return D::Drop(why);
    };
    ok_or_drop!(icmp6_build(env, from, ingress.mac, f, (ty, code, param), t));
    D::Answered { port: in_port, why }
}

/// The IPv6 packet in `f` turned, in place, into ICMPv6 error `(type, code,
/// parameter)` from `from` (`mac`) to its source, back to the MAC it came
/// from. Never about an ICMPv6 error; rate limited.
fn icmp6_build<T: Trace>(
    env: &mut Env,
    from: Ipv6Addr,
    mac: MacAddr,
    f: &mut Frame,
    (ty, code, param): (u8, u8, u32),
    t: &mut T,
) -> Result<(), DropReason> {
    let b = f.data();
    let ip = &b[ethernet::HEADER_LEN..];
    // Never about an ICMPv6 error (types below 128).
    if ip[ipv6::field::NEXT_HEADER] == proto::ICMPV6
        && ip
            .get(ipv6::HEADER_LEN)
            .is_none_or(|&ty| icmp6::is_error(ty))
    {
        return Err(R::IcmpErrorNotSent);
    }
    if !env.icmp_token() {
        return Err(R::IcmpRateLimited);
    }
    let mut to = [0u8; 16];
    to.copy_from_slice(&ip[ipv6::field::SRC_ADDR]);
    let src_mac = mac_at(b, ethernet::field::SRC.start);
    let quote = ip
        .len()
        .min(ICMP_ERROR_MAX - ipv6::HEADER_LEN - icmp6::HEADER_LEN);
    if !f.prepend(ipv6::HEADER_LEN + icmp6::HEADER_LEN) {
        return Err(R::NoHeadroom);
    }
    f.trim(ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmp6::HEADER_LEN + quote);
    let b = f.data_mut();
    ethernet::write(b, &src_mac, &mac.0, ethernet::ETHERTYPE_IPV6);
    let plen = (icmp6::HEADER_LEN + quote) as u16;
    ipv6::write(
        &mut b[ethernet::HEADER_LEN..],
        plen,
        proto::ICMPV6,
        64,
        &from.octets(),
        &to,
    );
    let icmp = &mut b[ethernet::HEADER_LEN + ipv6::HEADER_LEN..];
    icmp[icmp6::field::TYPE] = ty;
    icmp[icmp6::field::CODE] = code;
    put16(icmp, icmp6::field::CHECKSUM.start, 0);
    put32(icmp, icmp6::field::PARAM.start, param);
    let sum = pseudo6(&from.octets(), &to, plen as u32, proto::ICMPV6);
    let c = csum_fold(csum_add(sum, icmp));
    put16(icmp, icmp6::field::CHECKSUM.start, c);
    tr!(
        t,
        "icmp",
        "ICMPv6 type {ty} code {code} from {from} to {}",
        Ipv6Addr::from(to)
    );
    Ok(())
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
        return icmp6_error(
            env,
            ingress,
            in_port,
            f,
            icmp6::types::PACKET_TOO_BIG,
            0,
            mtu as u32,
            why,
            t,
        );
    }
    let IpAddr::V6(from) = ingress.ip else {
        return D::Drop(why);
    };
    ok_or_drop!(icmp6_build(
        env,
        from,
        ingress.mac,
        f,
        (icmp6::types::PACKET_TOO_BIG, 0, mtu as u32),
        t
    ));
    // Back to the sender where it lives, as the router routes to it.
    let dst = ipv6_at(f.data(), ethernet::HEADER_LEN + ipv6::field::DST_ADDR.start);
    let eg = ok_or_drop!(next_hop(r, IpAddr::V6(dst), t));
    let Some(net) = snap.net(eg.iface.net) else {
        return D::Drop(R::TableGone);
    };
    answered_if_sent(deliver_routed(snap, net, &eg, f, t), why)
}
