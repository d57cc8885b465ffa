//! Route (distributed, per router, IPv4 and IPv6 LPM): the IPv4 header
//! checks, martians, router-addressed echo, TTL / hop limit, MTU, the next
//! hop (a neighbour, a VIP's holder, or north-south), the MAC rewrite and the
//! way out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::encap::encap;
use super::icmp::{icmp_error, too_big4, too_big6, IcmpIp, V4, V6};
use super::nat::{north_south4, north_south6};
use super::responder::nd_respond;
use super::switch::flood_vip;
use super::{host_name, Disposition as D, Env, Trace};
use crate::fastpath::cached::offer_routed;
use crate::fib::NextHop;
use crate::mac::MacAddr;
use crate::pkt::Frame;
use crate::stats::{DropReason, DropReason as R};
use crate::tables::{Adj, Dest, Iface, NetTables, RouterTables, Snapshot};
use crate::wire::checksum::{checksum, csum_add, csum_fold, csum_update16, pseudo6};
use crate::wire::{
    arp, be16, be32, ethernet, icmp4, icmp6, ipv4, ipv4_at, ipv6, ipv6_at, mac_at, nd, proto,
    put16, put32, Ipv6Packet,
};

/// 0/8 (unspecified included), 127/8, 224/4 and 255.255.255.255.
#[inline(always)]
pub(crate) fn martian4(a: Ipv4Addr) -> bool {
    let a = u32::from(a);
    let first = a >> 24;
    first == 0 || first == 127 || (first & 0xf0) == 0xe0 || a == u32::MAX
}

fn martian6(a: Ipv6Addr) -> bool {
    a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.segments()[0] & 0xffc0 == 0xfe80
}

/// Routes a frame addressed to interface `iface` of router `router`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn route<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    router: u32,
    iface: u16,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let Some(r) = snap.routers.get(router as usize) else {
        return D::Drop(R::Dangling);
    };
    let Some(ingress) = r.interfaces.get(iface as usize) else {
        return D::Drop(R::Dangling);
    };
    match be16(f.data(), ethernet::field::ETHERTYPE.start) {
        ethernet::ETHERTYPE_IPV4 => route4(snap, env, r, router, ingress, in_port, f, t),
        ethernet::ETHERTYPE_IPV6 => route6(snap, env, r, ingress, in_port, f, t),
        et => {
            tr!(t, "route", "ethertype {et:#06x} is not routed");
            D::Drop(R::UnsupportedEthertype)
        }
    }
}

/// The egress of a routed packet: the neighbour's MAC, where it is, the egress
/// interface.
pub(crate) struct Egress<'a> {
    pub(crate) iface: &'a Iface,
    pub(crate) mac: MacAddr,
    pub(crate) dest: Dest,
}

/// Resolves the next hop of `dst` in router `r`.
pub(super) fn next_hop<'a, T: Trace>(
    r: &'a RouterTables,
    dst: IpAddr,
    t: &mut T,
) -> Result<Egress<'a>, DropReason> {
    let Some((plen, nh)) = r.fib.lookup_fast(dst) else {
        return Err(R::NoRoute);
    };
    let (iface, via) = match nh {
        NextHop::Connected { iface } => (iface, dst),
        NextHop::Via { via } => match r.fib.lookup_fast(via) {
            Some((_, NextHop::Connected { iface })) => (iface, via),
            _ => {
                tr!(t, "route", "{dst} matches a /{plen} via {via}, which is not on a connected subnet: north-south");
                return Err(R::NoExternalPath);
            }
        },
    };
    let iface = &r.interfaces[iface as usize];
    let Some(n) = r.neighbors.get(&via) else {
        tr!(
            t,
            "route",
            "{dst} matches a /{plen} via {via} on {}: no such neighbour",
            iface.subnet
        );
        return Err(R::NeighborUnknown);
    };
    tr!(
        t,
        "route",
        "{dst} matches a /{plen}: neighbour {via} ({}, port {}) on subnet {}",
        n.mac,
        n.port,
        iface.subnet
    );
    Ok(Egress {
        iface,
        mac: n.mac,
        dest: n.dest,
    })
}

/// The interface and next hop (`dst` itself on a connected subnet) of `dst`
/// in router `r`, when the next hop is on a connected subnet.
fn connected_via(r: &RouterTables, dst: IpAddr) -> Option<(&Iface, IpAddr)> {
    let (iface, via) = match r.fib.lookup_fast(dst)? {
        (_, NextHop::Connected { iface }) => (iface, dst),
        (_, NextHop::Via { via }) => match r.fib.lookup_fast(via)? {
            (_, NextHop::Connected { iface }) => (iface, via),
            _ => return None,
        },
    };
    Some((r.interfaces.get(iface as usize)?, via))
}

/// The egress toward `dst` when router `r` has no neighbour for its next
/// hop: the next hop may be inside the allowed address pairs of ports of its
/// subnet (a VIP), held by a port that announced it or by the only port
/// that may hold it. Several may and none has announced it: the ports are
/// asked ([`vip_probe`]).
#[inline(never)]
fn vip_egress<'a, T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &'a RouterTables,
    dst: IpAddr,
    f: &mut Frame,
    t: &mut T,
) -> Result<Egress<'a>, D> {
    let Some((iface, via)) = connected_via(r, dst) else {
        return Err(D::Drop(R::NeighborUnknown));
    };
    let net = snap.net(iface.net).ok_or(D::Drop(R::Dangling))?;
    if net.vips_of(via).next().is_none() {
        return Err(D::Drop(R::NeighborUnknown));
    }
    match net.vip_holder(via) {
        Some((mac, dest)) => {
            tr!(
                t,
                "route",
                "{via} is inside allowed address pairs: held by {mac}"
            );
            Ok(Egress { iface, mac, dest })
        }
        None => {
            tr!(
                t,
                "route",
                "{via} is inside allowed address pairs of several ports: none has announced it"
            );
            Err(vip_probe(env, snap.node.dvr_mac, iface, via, f, t))
        }
    }
}

/// Turns a frame routed to `via`, an address inside the allowed pairs of
/// several ports none of which has announced it, into an ARP request (a
/// neighbour solicitation) from interface `iface` for it, to those ports
/// (the holder's answer is learned like a gratuitous ARP). The frame is
/// counted as `vip_holder_unknown`; requests share the ICMP errors' rate
/// limit. Their Ethernet source is this host's DVR MAC if it has one (as
/// for every routed frame, a router's MAC is never seen from several
/// hosts), the sender (source link-layer address) the interface's.
fn vip_probe<T: Trace>(
    env: &mut Env,
    dvr_mac: Option<MacAddr>,
    iface: &Iface,
    via: IpAddr,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let want = match (iface.ip, via) {
        (IpAddr::V4(_), IpAddr::V4(_)) => ethernet::HEADER_LEN + arp::HEADER_LEN,
        (IpAddr::V6(_), IpAddr::V6(_)) => ethernet::HEADER_LEN + ipv6::HEADER_LEN + nd::ADVERT_LEN,
        _ => return D::Drop(R::VipHolderUnknown),
    };
    if !env.icmp_token() || (f.len() < want && !f.extend(want - f.len())) {
        return D::Drop(R::VipHolderUnknown);
    }
    f.trim(want);
    let b = f.data_mut();
    match (iface.ip, via) {
        (IpAddr::V4(from), IpAddr::V4(target)) => {
            arp::write_request(b, &iface.mac.0, from, target);
            tr!(
                t,
                "route",
                "who-has {target} tell {from}: to the ports that may hold it"
            );
        }
        (IpAddr::V6(from), IpAddr::V6(target)) => {
            let to = target.octets();
            let mut dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0).octets();
            dst[13..].copy_from_slice(&to[13..]);
            ethernet::write(
                b,
                &[0x33, 0x33, dst[12], dst[13], dst[14], dst[15]],
                &iface.mac.0,
                ethernet::ETHERTYPE_IPV6,
            );
            ipv6::write(
                &mut b[ethernet::HEADER_LEN..],
                nd::ADVERT_LEN as u16,
                proto::ICMPV6,
                255,
                &from.octets(),
                &dst,
            );
            let n = &mut b[ethernet::HEADER_LEN + ipv6::HEADER_LEN..];
            // A solicitation: the advertisement's layout, its flags word 0
            // and its option the source's link-layer address.
            nd::write_advert(n, 0, &to, &iface.mac.0);
            n[nd::field::TYPE] = icmp6::types::NEIGHBOR_SOLICIT;
            n[nd::HEADER_LEN] = nd::OPT_SOURCE_LL;
            let sum = pseudo6(&from.octets(), &dst, nd::ADVERT_LEN as u32, proto::ICMPV6);
            let c = csum_fold(csum_add(sum, &n[..nd::ADVERT_LEN]));
            put16(n, nd::field::CHECKSUM.start, c);
            tr!(
                t,
                "route",
                "solicitation for {target} from {from}: to the ports that may hold it"
            );
        }
        _ => return D::Drop(R::VipHolderUnknown),
    }
    if let Some(m) = dvr_mac {
        b[ethernet::field::SRC].copy_from_slice(&m.0);
    }
    flood_vip(env, iface.net, true, via, Some(R::VipHolderUnknown), t)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn route4<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    rid: u32,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let ihl = ok_or_drop!(ipv4_valid(f));
    let b = f.data();
    let ip = &b[ethernet::HEADER_LEN..];
    let total = usize::from(be16(ip, ipv4::field::LENGTH.start));
    let src = ipv4_at(ip, ipv4::field::SRC_ADDR.start);
    let dst = ipv4_at(ip, ipv4::field::DST_ADDR.start);
    if martian4(src) {
        tr!(t, "route", "martian source {src}");
        return D::Drop(R::MartianSource);
    }
    if unrouted4(dst) {
        tr!(t, "route", "destination {dst} is not routed");
        return D::Drop(R::MartianDestination);
    }
    // One lookup: routes, neighbours and the router's own addresses were
    // resolved together when the tables were compiled.
    let Some((plen, adj)) = r.fwd4.lookup(u32::from(dst)) else {
        tr!(t, "route", "no route to {dst}: net unreachable");
        return icmp_error::<V4, T>(env, ingress, in_port, f, V4::NO_ROUTE, 0, R::NoRoute, t);
    };
    let ttl = ip[ipv4::field::TTL];
    let eg = match adj {
        Adj::Local { .. } => return to_router4(ingress, in_port, ihl, f, t),
        _ if expires4(ttl) => {
            tr!(t, "route", "TTL {ttl}: time exceeded");
            return icmp_error::<V4, T>(
                env,
                ingress,
                in_port,
                f,
                V4::TIME_EXCEEDED,
                0,
                R::TtlExpired,
                t,
            );
        }
        Adj::Neighbor { iface, mac, dest } => {
            let iface = &r.interfaces[iface as usize];
            tr!(
                t,
                "route",
                "{dst} matches a /{plen}: neighbour {mac} on subnet {}",
                iface.subnet
            );
            Egress { iface, mac, dest }
        }
        Adj::Unknown { iface } => {
            tr!(
                t,
                "route",
                "{dst} matches a /{plen} on {}: no such neighbour",
                r.interfaces[iface as usize].subnet
            );
            match vip_egress(snap, env, r, IpAddr::V4(dst), f, t) {
                Ok(eg) => eg,
                Err(d) => return d,
            }
        }
        Adj::External => {
            tr!(
                t,
                "route",
                "{dst} matches a /{plen} via a next hop not on a connected subnet: north-south"
            );
            return north_south4(snap, env, r, rid, ingress, in_port, f, t);
        }
    };
    let Some(net) = snap.net(eg.iface.net) else {
        return D::Drop(R::Dangling);
    };
    if total > net.mtu as usize {
        tr!(t, "route", "egress network {}", net.name);
        return too_big4(snap, env, r, ingress, in_port, f, net.mtu, t);
    }
    if !T::ON {
        offer_routed(snap, env, net, &eg);
    }
    ipv4::dec_ttl(&mut f.data_mut()[ethernet::HEADER_LEN..]);
    tr!(t, "rewrite", "TTL {} → {}", ttl, ttl - 1);
    deliver_routed(snap, net, &eg, f, t)
}

#[allow(clippy::too_many_arguments)]
fn route6<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let Some(h) = f
        .data()
        .get(ethernet::HEADER_LEN..)
        .and_then(Ipv6Packet::new_checked)
    else {
        return D::Drop(R::MalformedIpv6);
    };
    let plen = usize::from(h.payload_len());
    f.trim(ethernet::HEADER_LEN + ipv6::HEADER_LEN + plen);
    let b = f.data();
    let ip = &b[ethernet::HEADER_LEN..];
    let src = ipv6_at(ip, ipv6::field::SRC_ADDR.start);
    let dst = ipv6_at(ip, ipv6::field::DST_ADDR.start);
    // Neighbour discovery stays on the link: a link-local source is its own
    // (a guest's unicast solicitation of its router's link-local address).
    if ip[ipv6::field::NEXT_HEADER] == proto::ICMPV6
        && plen >= 4
        && icmp6::is_ndp(ip[ipv6::HEADER_LEN])
    {
        // Neighbour discovery to the router's MAC (unicast NS, RS): answered
        // for the router's own addresses.
        if ip[ipv6::HEADER_LEN] == icmp6::types::NEIGHBOR_SOLICIT {
            let Some(net) = snap.net(ingress.net) else {
                return D::Drop(R::Dangling);
            };
            return match nd_respond(net, f, t) {
                Ok(()) => D::Forward(in_port),
                Err(e) => D::Drop(e.unwrap_or(R::ToRouterUnsupported)),
            };
        }
        return D::Drop(R::ToRouterUnsupported);
    }
    if martian6(src) {
        tr!(t, "route", "source {src} is not routed");
        return D::Drop(R::MartianSource);
    }
    if martian6(dst) {
        tr!(t, "route", "destination {dst} is not routed");
        return D::Drop(R::MartianDestination);
    }
    if r.interfaces.iter().any(|i| i.ip == IpAddr::V6(dst)) {
        return to_router6(ingress.mac, in_port, f, t);
    }
    let hop = ip[ipv6::field::HOP_LIMIT];
    if hop <= 1 {
        tr!(t, "route", "hop limit {hop}: time exceeded");
        return icmp_error::<V6, T>(
            env,
            ingress,
            in_port,
            f,
            V6::TIME_EXCEEDED,
            0,
            R::TtlExpired,
            t,
        );
    }
    let eg = match next_hop(r, IpAddr::V6(dst), t) {
        Ok(e) => e,
        Err(R::NoRoute) => {
            tr!(t, "route", "no route to {dst}: unreachable");
            return icmp_error::<V6, T>(env, ingress, in_port, f, V6::NO_ROUTE, 0, R::NoRoute, t);
        }
        Err(R::NeighborUnknown) => match vip_egress(snap, env, r, IpAddr::V6(dst), f, t) {
            Ok(eg) => eg,
            Err(d) => return d,
        },
        Err(R::NoExternalPath) => return north_south6(snap, env, r, ingress, in_port, f, t),
        Err(e) => return D::Drop(e),
    };
    let Some(net) = snap.net(eg.iface.net) else {
        return D::Drop(R::Dangling);
    };
    if ipv6::HEADER_LEN + plen > net.mtu as usize {
        tr!(
            t,
            "route",
            "{} bytes exceed MTU {} of {}: packet too big",
            ipv6::HEADER_LEN + plen,
            net.mtu,
            net.name
        );
        return too_big6(snap, env, r, ingress, in_port, f, net.mtu, t);
    }
    f.data_mut()[ethernet::HEADER_LEN + ipv6::field::HOP_LIMIT] = hop - 1;
    tr!(t, "rewrite", "hop limit {} → {}", hop, hop - 1);
    deliver_routed(snap, net, &eg, f, t)
}

/// The MAC rewrite of a routed frame and its way out: to a local port with the
/// egress interface's MAC as source, or to another host with this host's DVR
/// MAC as source, encapsulated.
#[inline(always)]
pub(super) fn deliver_routed<T: Trace>(
    snap: &Snapshot,
    net: &NetTables,
    eg: &Egress<'_>,
    f: &mut Frame,
    t: &mut T,
) -> D {
    match eg.dest {
        Dest::Local(p) => {
            write_macs(f.data_mut(), &eg.mac.0, &eg.iface.mac.0);
            tr!(
                t,
                "rewrite",
                "{} → {} ({})",
                eg.iface.mac,
                eg.mac,
                super::port_label(snap, p)
            );
            D::Forward(p)
        }
        Dest::Remote(h) => {
            let Some(dvr) = snap.node.dvr_mac else {
                return D::Drop(R::NoDvrMac);
            };
            write_macs(f.data_mut(), &eg.mac.0, &dvr.0);
            tr!(
                t,
                "rewrite",
                "{dvr} (this host's DVR MAC) → {} on host {}",
                eg.mac,
                host_name(snap, h)
            );
            encap(snap, net, h, f, t)
        }
        Dest::Nowhere | Dest::Router { .. } => D::Drop(R::NeighborUnbound),
    }
}

#[inline(always)]
pub(crate) fn write_macs(b: &mut [u8], dst: &[u8; 6], src: &[u8; 6]) {
    b[ethernet::field::DST].copy_from_slice(dst);
    b[ethernet::field::SRC].copy_from_slice(src);
}

/// A packet to one of the router's own IPv4 addresses: echo requests are
/// answered, anything else is dropped.
fn to_router4<T: Trace>(ingress: &Iface, in_port: u16, ihl: usize, f: &mut Frame, t: &mut T) -> D {
    let b = f.data_mut();
    let l4 = ethernet::HEADER_LEN + ihl;
    if b[ethernet::HEADER_LEN + ipv4::field::PROTOCOL] != proto::ICMP
        || b.len() < l4 + icmp4::HEADER_LEN
        || b[l4 + icmp4::field::TYPE] != icmp4::types::ECHO_REQUEST
        || b[l4 + icmp4::field::CODE] != 0
    {
        tr!(t, "router", "to the router's address, not an echo request");
        return D::Drop(R::ToRouterUnsupported);
    }
    if checksum(&b[l4..]) != 0 {
        return D::Drop(R::ToRouterUnsupported);
    }
    let src_mac = mac_at(b, ethernet::field::SRC.start);
    write_macs(b, &src_mac, &ingress.mac.0);
    let ip = &mut b[ethernet::HEADER_LEN..];
    let (sa, da) = (ipv4::field::SRC_ADDR.start, ipv4::field::DST_ADDR.start);
    let (s, d) = (be32(ip, sa), be32(ip, da));
    put32(ip, sa, d);
    put32(ip, da, s);
    let ttl_proto = ipv4::field::TTL_PROTOCOL.start;
    let old = be16(ip, ttl_proto);
    ip[ipv4::field::TTL] = 64;
    let c = csum_update16(
        be16(ip, ipv4::field::CHECKSUM.start),
        old,
        be16(ip, ttl_proto),
    );
    put16(ip, ipv4::field::CHECKSUM.start, c);
    echo_reply(
        &mut b[l4..],
        icmp4::types::ECHO_REQUEST,
        icmp4::types::ECHO_REPLY,
    );
    tr!(
        t,
        "router",
        "echo request to {}: echo reply",
        Ipv4Addr::from(d)
    );
    D::Forward(in_port)
}

/// An IPv6 packet to an address of the router (whose port has `mac`): an
/// echo request is answered, in place, out of `in_port`.
pub(super) fn to_router6<T: Trace>(mac: MacAddr, in_port: u16, f: &mut Frame, t: &mut T) -> D {
    let b = f.data_mut();
    let l4 = ethernet::HEADER_LEN + ipv6::HEADER_LEN;
    if b[ethernet::HEADER_LEN + ipv6::field::NEXT_HEADER] != proto::ICMPV6
        || b.len() < l4 + icmp6::HEADER_LEN
        || b[l4 + icmp6::field::TYPE] != icmp6::types::ECHO_REQUEST
        || b[l4 + icmp6::field::CODE] != 0
    {
        tr!(t, "router", "to the router's address, not an echo request");
        return D::Drop(R::ToRouterUnsupported);
    }
    let plen = (b.len() - l4) as u32;
    let sum = pseudo6(
        &b[ethernet::HEADER_LEN..][ipv6::field::SRC_ADDR],
        &b[ethernet::HEADER_LEN..][ipv6::field::DST_ADDR],
        plen,
        proto::ICMPV6,
    );
    if csum_fold(csum_add(sum, &b[l4..])) != 0 {
        return D::Drop(R::ToRouterUnsupported);
    }
    let src_mac = mac_at(b, ethernet::field::SRC.start);
    write_macs(b, &src_mac, &mac.0);
    let ip = &mut b[ethernet::HEADER_LEN..];
    tr!(
        t,
        "router",
        "echo request to {}: echo reply",
        ipv6_at(ip, ipv6::field::DST_ADDR.start)
    );
    let mut s = [0u8; 16];
    s.copy_from_slice(&ip[ipv6::field::SRC_ADDR]);
    ip.copy_within(ipv6::field::DST_ADDR, ipv6::field::SRC_ADDR.start);
    ip[ipv6::field::DST_ADDR].copy_from_slice(&s);
    ip[ipv6::field::HOP_LIMIT] = 64;
    // The pseudo-header is the same with the addresses swapped.
    echo_reply(
        &mut b[l4..],
        icmp6::types::ECHO_REQUEST,
        icmp6::types::ECHO_REPLY,
    );
    D::Forward(in_port)
}

/// Turns the echo request `icmp` (ICMP or ICMPv6: type and checksum at the
/// same places) into its reply: type `request` becomes `reply`, the
/// checksum updated for it.
fn echo_reply(icmp: &mut [u8], request: u8, reply: u8) {
    icmp[icmp4::field::TYPE] = reply;
    let at = icmp4::field::CHECKSUM.start;
    let c = csum_update16(
        be16(icmp, at),
        u16::from(request) << 8,
        u16::from(reply) << 8,
    );
    put16(icmp, at, c);
}

/// Where router `r` routes a translated destination `dst`: a neighbour on a
/// connected subnet, and that subnet's network.
pub(super) fn egress_to<'a, T: Trace>(
    snap: &'a Snapshot,
    r: &'a RouterTables,
    dst: Ipv4Addr,
    t: &mut T,
) -> Result<(Egress<'a>, &'a NetTables), DropReason> {
    let Some((_, Adj::Neighbor { iface, mac, dest })) = r.fwd4.lookup(u32::from(dst)) else {
        tr!(t, "route", "{dst} is not a known neighbour of the router");
        return Err(R::NeighborUnknown);
    };
    let Some(iface) = r.interfaces.get(iface as usize) else {
        return Err(R::Dangling);
    };
    let Some(net) = snap.net(iface.net) else {
        return Err(R::Dangling);
    };
    tr!(
        t,
        "route",
        "{dst}: neighbour {mac} on subnet {}",
        iface.subnet
    );
    Ok((Egress { iface, mac, dest }, net))
}

/// Routes an IPv4 packet (header valid, TTL not yet decremented, translated)
/// to `eg` on `net` ([`egress_to`]).
pub(super) fn routed_on<T: Trace>(
    snap: &Snapshot,
    net: &NetTables,
    eg: &Egress<'_>,
    f: &mut Frame,
    t: &mut T,
) -> D {
    if f.data()[ethernet::HEADER_LEN + ipv4::field::TTL] <= 1 {
        return D::Drop(R::TtlExpired);
    }
    ipv4::dec_ttl(&mut f.data_mut()[ethernet::HEADER_LEN..]);
    deliver_routed(snap, net, eg, f, t)
}

/// Checks the IPv4 header after the Ethernet header (version, lengths,
/// checksum) and trims the Ethernet padding beyond the IP length; gives the
/// header length.
#[inline(always)]
pub(crate) fn ipv4_valid(f: &mut Frame) -> Result<usize, DropReason> {
    let p = ipv4::validate(f.data().get(ethernet::HEADER_LEN..).unwrap_or_default())?;
    let (ihl, total) = (p.header_len(), p.as_bytes().len());
    f.trim(ethernet::HEADER_LEN + total);
    Ok(ihl)
}

/// Whether [`route4`] refuses to route to `dst`: a martian or a link-local
/// address.
#[inline(always)]
pub(crate) fn unrouted4(dst: Ipv4Addr) -> bool {
    martian4(dst) || dst.is_link_local()
}

/// Whether a packet with TTL `ttl` expires here instead of being routed on
/// ([`route4`]: time exceeded).
#[inline(always)]
pub(crate) fn expires4(ttl: u8) -> bool {
    ttl <= 1
}

/// Whether [`route4`] routes on the IPv4 packet with header `h` (checked)
/// once it has a route out: neither address a martian ([`martian4`],
/// [`unrouted4`]), and its TTL not expiring ([`expires4`]). For the fast
/// paths, which hand any other packet to the whole pipeline.
#[inline(always)]
pub(crate) fn forwardable4(h: &[u8; ipv4::HEADER_LEN]) -> bool {
    !martian4(ipv4_at(h, ipv4::field::SRC_ADDR.start))
        && !unrouted4(ipv4_at(h, ipv4::field::DST_ADDR.start))
        && !expires4(h[ipv4::field::TTL])
}
