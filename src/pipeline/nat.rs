//! North-south (sections 3 and 4 of docs/BEHAVIOUR.md).
//!
//! Out: a routed IPv4 packet whose destination is outside (the default route via
//! the upstream router) leaves with a floating IP if its source has one served
//! on this node (SNAT to the floating IP, out of this node's external port from
//! its FIP gateway MAC), else through the router's SNAT: on the `dvr_snat` node
//! that holds it, port address translation to the gateway IP (out of the
//! external port from the gateway port's MAC); on any other node the frame goes
//! unrouted over the overlay of its own network to that node, from this
//! node's DVR MAC to the router's interface MAC (the router's SNAT port,
//! Neutron's `sg-` port, is that interface on the SNAT node).
//! In: the external port answers ARP for the addresses this node serves
//! (floating IPs of its ports, its FIP gateway IP, the gateway IPs of the
//! routers whose SNAT runs here); traffic to them is translated back (DNAT to
//! the fixed IP, or the SNAT session) and routed by the router.

use std::net::{IpAddr, Ipv4Addr};

use super::encap::encap;
use super::icmp::{error_in6, too_big4, too_big6, too_big_in, IcmpIp, V6};
use super::responder::{arp_reply_consumed, arp_sender_learned, nd_advert_learned, nd_answer};
use super::route::{
    deliver_routed, egress_to, ipv4_valid, next_hop, route, routed_on, to_router6, write_macs,
};
use super::{host_name, Disposition as D, Env, Trace, FROM_OVERLAY};
use crate::mac::MacAddr;
use crate::nat;
use crate::pkt::Frame;
use crate::stats::{DropReason, DropReason as R};
use crate::tables::{
    global6, Dest, ExtAddr, ExtAddr6, Home, Iface, NodeTables, RouterTables, Snapshot, SnatSettings,
};
use crate::wire::{
    arp, be16, ethernet, icmp6, ipv4, ipv4_at, ipv6, ipv6_at, mac_at, proto, Ipv6Packet,
};

/// The MTU of router `r`'s external network: what may leave through the
/// external port (`u16::MAX` when unknown: no bound).
#[inline(always)]
pub(crate) fn external_mtu(snap: &Snapshot, r: &RouterTables) -> u16 {
    r.snat
        .as_ref()
        .and_then(|s| s.net)
        .and_then(|n| snap.net(n))
        .map_or(u16::MAX, |n| n.mtu)
}

/// The MAC a floating IP of router `r` is served with: this host's FIP
/// gateway port's, or (`central`) the router's gateway port's.
pub fn fip_mac(node: &NodeTables, r: &RouterTables, central: bool) -> Option<MacAddr> {
    if central {
        r.snat.as_ref().map(|s| s.mac)
    } else {
        node.fip_gw.map(|g| g.1)
    }
}

/// The upstream router's MAC for router `r` (resolved on the external port).
#[inline]
pub(crate) fn upstream_mac(node: &NodeTables, r: &RouterTables) -> Result<MacAddr, DropReason> {
    r.upstream
        .and_then(|u| node.vtep_macs.get(&u).copied())
        .ok_or(R::UpstreamUnresolved)
}

/// A routed IPv4 packet of router `r` (index `rid`), in from `ingress`
/// (port `in_port`), whose destination is outside. What is too big for its
/// way out (the external network, or the overlay toward the SNAT node) is
/// answered before it is translated ([`too_big4`]).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(super) fn north_south4<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    rid: u32,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let node = &*snap.node;
    let b = f.data();
    let src = ipv4_at(b, ethernet::HEADER_LEN + ipv4::field::SRC_ADDR.start);
    let dst = ipv4_at(b, ethernet::HEADER_LEN + ipv4::field::DST_ADDR.start);
    let total = be16(b, ethernet::HEADER_LEN + ipv4::field::LENGTH.start);
    if let Some(&fixed) = r.floating.get(&dst) {
        return hairpin4(snap, env, r, ingress, in_port, (src, dst, fixed), f, t);
    }
    let sn = r.snat.as_ref();
    if let Some(fe) = r.fips.get(&src) {
        // Served here from this host's FIP gateway port, or (central) by the
        // router's SNAT node from its gateway port.
        let (ext, from) = if fe.central {
            let Some(sn) = sn else {
                return D::Drop(R::NoSnat);
            };
            if !sn.here {
                return to_snat_node::<T, false>(snap, env, r, sn, ingress, in_port, f, t);
            }
            let Some(ext) = node.external else {
                return D::Drop(R::NoExternalPath);
            };
            (ext, sn.mac)
        } else {
            let (Dest::Local(_), Some(ext), Some((_, gw_mac))) =
                (fe.dest, node.external, node.fip_gw)
            else {
                tr!(
                    t,
                    "nat",
                    "{src} has floating IP {}, not served by this node",
                    fe.floating
                );
                return D::Drop(R::FipNotServedHere);
            };
            (ext, gw_mac)
        };
        let mtu = external_mtu(snap, r);
        if total > mtu {
            return too_big4(snap, env, r, ingress, in_port, f, mtu, t);
        }
        let up = ok_or_drop!(upstream_mac(node, r));
        let b = f.data_mut();
        ok_or_drop!(nat::rewrite_src(
            &mut b[ethernet::HEADER_LEN..],
            fe.floating
        ));
        ipv4::dec_ttl(&mut b[ethernet::HEADER_LEN..]);
        write_macs(b, &up.0, &from.0);
        tr!(
            t,
            "nat",
            "source {src} → floating IP {} from {from}; out of the external port to {up}",
            fe.floating
        );
        return D::Forward(ext);
    }
    let Some(sn) = sn.filter(|s| s.enable_snat) else {
        tr!(t, "nat", "{src} has no floating IP and the router no SNAT");
        return D::Drop(R::NoSnat);
    };
    if sn.here {
        let Some(ext) = node.external else {
            return D::Drop(R::NoExternalPath);
        };
        let mtu = external_mtu(snap, r);
        if total > mtu {
            return too_big4(snap, env, r, ingress, in_port, f, mtu, t);
        }
        let up = ok_or_drop!(upstream_mac(node, r));
        let now = env.clock();
        let b = f.data_mut();
        ok_or_drop!(env.nat.snat_out(rid, &mut b[ethernet::HEADER_LEN..], now));
        ipv4::dec_ttl(&mut b[ethernet::HEADER_LEN..]);
        write_macs(b, &up.0, &sn.mac.0);
        tr!(
            t,
            "nat",
            "SNAT {src} → {}; out of the external port to {up}",
            ipv4_at(b, ethernet::HEADER_LEN + ipv4::field::SRC_ADDR.start)
        );
        return D::Forward(ext);
    }
    to_snat_node::<T, false>(snap, env, r, sn, ingress, in_port, f, t)
}

/// The upstream router's IPv6 MAC for router `r` (resolved by neighbour
/// discovery on the external port).
#[inline]
fn upstream6_mac(node: &NodeTables, r: &RouterTables) -> Result<MacAddr, DropReason> {
    r.upstream6
        .and_then(|u| node.nd_macs.get(&u).copied())
        .ok_or(R::UpstreamUnresolved)
}

/// A routed IPv6 packet of router `r`, in from `ingress` (port `in_port`),
/// hop limit checked, whose next hop is the upstream router on the external
/// network: routed, never translated. Distributed: out of this node's
/// external port from its FIP gateway MAC; `central`: on the router's SNAT
/// node out of its external port from the gateway port's MAC, from any
/// other node to that node over the overlay, unrouted (as SNAT traffic).
/// What is too big for its way out is answered with packet too big.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(super) fn north_south6<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let node = &*snap.node;
    let from = if r.v6_central {
        let Some(sn) = r.snat.as_ref() else {
            tr!(
                t,
                "north-south",
                "IPv6 out: the router has no external gateway"
            );
            return D::Drop(R::NoExternalPath);
        };
        if !sn.here {
            return to_snat_node::<T, true>(snap, env, r, sn, ingress, in_port, f, t);
        }
        sn.mac
    } else {
        let Some((_, gw_mac)) = node.fip_gw.filter(|_| in_port != FROM_OVERLAY) else {
            tr!(
                t,
                "north-south",
                "IPv6 out: this node has no FIP gateway port"
            );
            return D::Drop(R::NoExternalPath);
        };
        gw_mac
    };
    let Some(ext) = node.external else {
        return D::Drop(R::NoExternalPath);
    };
    let len = ipv6::HEADER_LEN
        + usize::from(be16(
            f.data(),
            ethernet::HEADER_LEN + ipv6::field::PAYLOAD_LEN.start,
        ));
    let mtu = external_mtu(snap, r);
    if len > usize::from(mtu) {
        return too_big6(snap, env, r, ingress, in_port, f, mtu, t);
    }
    let up = ok_or_drop!(upstream6_mac(node, r));
    let b = f.data_mut();
    let hop = &mut b[ethernet::HEADER_LEN + ipv6::field::HOP_LIMIT];
    // Above 1: checked by the router.
    *hop = hop.saturating_sub(1);
    write_macs(b, &up.0, &from.0);
    tr!(
        t,
        "north-south",
        "IPv6 out of the external port from {from} to the upstream router {up}"
    );
    D::Forward(ext)
}

/// Sends a frame that entered router interface `ingress` to the router's SNAT
/// node, unrouted (that node routes it), from this host's DVR MAC, over the
/// overlay of the ingress network; one too big for that overlay is answered
/// here ([`too_big4`], [`too_big6`] for `V6`, an IPv6 frame: known when
/// compiled, no check of IPv4 frames' ethertype).
#[allow(clippy::too_many_arguments)]
fn to_snat_node<T: Trace, const V6: bool>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    sn: &SnatSettings,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> D {
    if in_port == FROM_OVERLAY {
        return D::Drop(R::SnatNotHere);
    }
    let node = &*snap.node;
    let (Some(h), Some(dvr)) = (sn.host_idx, node.dvr_mac) else {
        return D::Drop(R::SnatHostUnknown);
    };
    let Some(net) = snap.net(ingress.net) else {
        return D::Drop(R::Dangling);
    };
    if V6 {
        let len = ipv6::HEADER_LEN
            + usize::from(be16(
                f.data(),
                ethernet::HEADER_LEN + ipv6::field::PAYLOAD_LEN.start,
            ));
        if len > usize::from(net.mtu) {
            return too_big6(snap, env, r, ingress, in_port, f, net.mtu, t);
        }
    } else if be16(f.data(), ethernet::HEADER_LEN + ipv4::field::LENGTH.start) > net.mtu {
        return too_big4(snap, env, r, ingress, in_port, f, net.mtu, t);
    }
    write_macs(f.data_mut(), &ingress.mac.0, &dvr.0);
    tr!(t, "nat", "to the router's SNAT node {}", host_name(snap, h));
    encap(snap, net, h, f, t)
}

/// A VM reaching another VM's floating IP through their router: the
/// destination back to the fixed IP, the source to its own floating IP (so
/// that the answer, to that floating IP, comes back the same way), routed.
/// `(src, dst, fixed)`: the packet's addresses and the fixed IP behind `dst`.
#[allow(clippy::too_many_arguments)]
fn hairpin4<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    ingress: &Iface,
    in_port: u16,
    (src, dst, fixed): (Ipv4Addr, Ipv4Addr, Ipv4Addr),
    f: &mut Frame,
    t: &mut T,
) -> D {
    let Some(own) = r.fips.get(&src).map(|fe| fe.floating) else {
        tr!(
            t,
            "nat",
            "hairpin to {dst} from {src}, which has no floating IP"
        );
        return D::Drop(R::HairpinNoFip);
    };
    let (eg, net) = ok_or_drop!(egress_to(snap, r, fixed, t));
    if be16(f.data(), ethernet::HEADER_LEN + ipv4::field::LENGTH.start) > net.mtu {
        return too_big4(snap, env, r, ingress, in_port, f, net.mtu, t);
    }
    let b = f.data_mut();
    ok_or_drop!(nat::rewrite_dst(&mut b[ethernet::HEADER_LEN..], fixed));
    ok_or_drop!(nat::rewrite_src(&mut b[ethernet::HEADER_LEN..], own));
    tr!(t, "nat", "hairpin: {src} → {dst} becomes {own} → {fixed}");
    routed_on(snap, net, &eg, f, t)
}

/// A frame from the overlay to this node's interface of router `router`:
/// another host's router sent it here unrouted (`from_router`: from its DVR
/// MAC) for the router's SNAT, or a VM on another host sent it to its
/// centralized (`legacy`) router, whose node this is. Routed here.
pub(super) fn routed_from_overlay<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    router: u32,
    iface: u16,
    from_router: bool,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let Some(r) = snap.routers.get(router as usize) else {
        return D::Drop(R::Dangling);
    };
    let snat_here = r.snat.as_ref().is_some_and(|s| s.here);
    if from_router && !snat_here {
        tr!(
            t,
            "nat",
            "sent here for SNAT, but the router's SNAT is not here"
        );
        return D::Drop(R::SnatNotHere);
    }
    if !from_router && r.home != Home::Here {
        tr!(
            t,
            "switch",
            "to a router interface from the overlay: not a router centralized here"
        );
        return D::Drop(R::NotLocalAfterDecap);
    }
    tr!(t, "route", "from the overlay, routed here");
    route(snap, env, router, iface, FROM_OVERLAY, f, t)
}

/// A frame from the external network.
pub(super) fn from_external<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let b = f.data();
    match be16(b, ethernet::field::ETHERTYPE.start) {
        ethernet::ETHERTYPE_ARP => external_arp(snap, env, in_port, f, t),
        ethernet::ETHERTYPE_IPV4 => {
            let ihl = ok_or_drop!(ipv4_valid(f));
            let b = f.data();
            let dst = ipv4_at(b, ethernet::HEADER_LEN + ipv4::field::DST_ADDR.start);
            let to = MacAddr(mac_at(b, ethernet::field::DST.start));
            let node = &*snap.node;
            match snap.ext.get(dst) {
                Some(ExtAddr::Fip {
                    router,
                    fixed,
                    here: true,
                    central,
                }) => {
                    let Some(r) = snap.routers.get(router as usize) else {
                        return D::Drop(R::Dangling);
                    };
                    if fip_mac(node, r, central) != Some(to) {
                        return D::Drop(R::ExternalWrongMac);
                    }
                    if b[ethernet::HEADER_LEN + ipv4::field::TTL] <= 1 {
                        return D::Drop(R::TtlExpired);
                    }
                    let (eg, net) = ok_or_drop!(egress_to(snap, r, fixed, t));
                    if be16(b, ethernet::HEADER_LEN + ipv4::field::LENGTH.start) > net.mtu {
                        return too_big_in(env, (dst, to), in_port, f, net.mtu, t);
                    }
                    ok_or_drop!(nat::rewrite_dst(
                        &mut f.data_mut()[ethernet::HEADER_LEN..],
                        fixed
                    ));
                    tr!(t, "nat", "floating IP {dst} → {fixed}");
                    routed_on(snap, net, &eg, f, t)
                }
                Some(ExtAddr::Gateway {
                    mac, here: true, ..
                }) => {
                    if mac != to {
                        return D::Drop(R::ExternalWrongMac);
                    }
                    let now = env.clock();
                    // What the session translates besides the address, to put
                    // back in a packet answered as too big.
                    let port = nat::in_port(&b[ethernet::HEADER_LEN..]);
                    let router = ok_or_drop!(env
                        .nat
                        .snat_in(&mut f.data_mut()[ethernet::HEADER_LEN..], now));
                    let Some(r) = snap.routers.get(router as usize) else {
                        return D::Drop(R::TableGone);
                    };
                    let b = f.data();
                    let inside = ipv4_at(b, ethernet::HEADER_LEN + ipv4::field::DST_ADDR.start);
                    tr!(
                        t,
                        "nat",
                        "SNAT session: {dst} → {inside}:{}",
                        be16(b, ethernet::HEADER_LEN + ihl + 2)
                    );
                    if b[ethernet::HEADER_LEN + ipv4::field::TTL] <= 1 {
                        return D::Drop(R::TtlExpired);
                    }
                    let (eg, net) = ok_or_drop!(egress_to(snap, r, inside, t));
                    if be16(b, ethernet::HEADER_LEN + ipv4::field::LENGTH.start) > net.mtu {
                        ok_or_drop!(nat::untranslate_in(
                            &mut f.data_mut()[ethernet::HEADER_LEN..],
                            dst,
                            port
                        ));
                        return too_big_in(env, (dst, mac), in_port, f, net.mtu, t);
                    }
                    routed_on(snap, net, &eg, f, t)
                }
                _ => {
                    tr!(t, "external", "{dst} is not served by this node");
                    D::Drop(R::ExternalNotServed)
                }
            }
        }
        ethernet::ETHERTYPE_IPV6 => external6(snap, env, in_port, f, t),
        _ => D::Drop(R::ExternalEthertype),
    }
}

/// An IPv6 frame from the external network: neighbour discovery
/// ([`external_nd`]), or a packet for an address served here
/// ([`ExtAddr6`]), routed by its router to the VM (never translated).
#[inline(never)]
fn external6<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
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
    if ip[ipv6::field::NEXT_HEADER] == proto::ICMPV6
        && plen >= 4
        && icmp6::is_ndp(ip[ipv6::HEADER_LEN])
    {
        return external_nd(snap, env, in_port, f, t);
    }
    let src = ipv6_at(ip, ipv6::field::SRC_ADDR.start);
    let dst = ipv6_at(ip, ipv6::field::DST_ADDR.start);
    let to = MacAddr(mac_at(b, ethernet::field::DST.start));
    let node = &*snap.node;
    let (router, mac) = match snap.ext.get6(dst) {
        Some(ExtAddr6::Vm { router }) => (router, node.fip_gw.map(|g| g.1)),
        Some(ExtAddr6::Tenant { router, mac }) => (router, Some(mac)),
        // The router's own gateway address (central, its SNAT node):
        // echo answered.
        Some(ExtAddr6::Gateway { mac, .. }) if mac == to => {
            return to_router6(mac, in_port, f, t);
        }
        _ => {
            tr!(t, "external", "{dst} is not served by this node");
            return D::Drop(R::ExternalNotServed);
        }
    };
    if mac != Some(to) {
        return D::Drop(R::ExternalWrongMac);
    }
    if !global6(src) {
        tr!(t, "route", "source {src} is not routed");
        return D::Drop(R::MartianSource);
    }
    let Some(r) = snap.routers.get(router as usize) else {
        return D::Drop(R::Dangling);
    };
    let eg = ok_or_drop!(next_hop(r, IpAddr::V6(dst), t));
    let IpAddr::V6(from) = eg.iface.ip else {
        return D::Drop(R::Dangling);
    };
    let Some(net) = snap.net(eg.iface.net) else {
        return D::Drop(R::Dangling);
    };
    let hop = ip[ipv6::field::HOP_LIMIT];
    if hop <= 1 {
        tr!(t, "route", "hop limit {hop}: time exceeded");
        return error_in6(
            env,
            (from, to),
            in_port,
            f,
            V6::TIME_EXCEEDED,
            0,
            R::TtlExpired,
            t,
        );
    }
    if ipv6::HEADER_LEN + plen > usize::from(net.mtu) {
        tr!(
            t,
            "mtu",
            "{} bytes exceed MTU {} of {}: packet too big",
            ipv6::HEADER_LEN + plen,
            net.mtu,
            net.name
        );
        return error_in6(
            env,
            (from, to),
            in_port,
            f,
            V6::TOO_BIG,
            u32::from(net.mtu),
            R::FragmentationNeeded,
            t,
        );
    }
    f.data_mut()[ethernet::HEADER_LEN + ipv6::field::HOP_LIMIT] = hop - 1;
    tr!(t, "north-south", "IPv6 in for {dst}, routed by {}", r.name);
    deliver_routed(snap, net, &eg, f, t)
}

/// Neighbour discovery on the external port: solicitations for the
/// addresses served here are answered (ND proxy for the VMs of this node,
/// with its FIP gateway MAC; a router's gateway address on its SNAT node);
/// advertisements go to the control thread (the upstream routers' MACs).
fn external_nd<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> D {
    match f.data()[ethernet::HEADER_LEN + ipv6::HEADER_LEN] {
        icmp6::types::NEIGHBOR_SOLICIT => {
            let node = &*snap.node;
            let answered = nd_answer(f, t, |target, t| {
                let mac = match snap.ext.get6(target) {
                    Some(ExtAddr6::Vm { .. }) => node.fip_gw.map(|g| (g.1, false)),
                    Some(ExtAddr6::Gateway { mac, .. }) => Some((mac, true)),
                    _ => None,
                };
                let Some(m) = mac else {
                    tr!(
                        t,
                        "external-nd",
                        "solicitation for {target}: not served here"
                    );
                    return Err(R::NdUnknownTarget);
                };
                tr!(t, "external-nd", "solicitation for {target}: {}", m.0);
                Ok(m)
            });
            match answered {
                Ok(()) => D::Forward(in_port),
                Err(e) => D::Drop(e.unwrap_or(R::MalformedNd)),
            }
        }
        icmp6::types::NEIGHBOR_ADVERT => nd_advert_learned(env, f, t),
        ty => {
            tr!(t, "external-nd", "ICMPv6 type {ty}: not taken");
            D::Drop(R::ExternalNdIgnored)
        }
    }
}

/// ARP on the external port: requests for the addresses this node serves are
/// answered (proxy ARP for floating IPs); replies go to the control thread
/// (the upstream routers' MACs).
fn external_arp<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let node = &*snap.node;
    let Some(a) = arp::of_frame(f.data()) else {
        return D::Drop(R::MalformedArp);
    };
    match a.operation() {
        arp::OP_REQUEST => {
            let target = a.target_ip();
            if a.is_gratuitous() {
                // Gratuitous: somebody else announcing; nothing to answer.
                return arp_sender_learned(env, &a);
            }
            let fip_gw = node.fip_gw;
            let mac = match snap.ext.get(target) {
                Some(ExtAddr::Fip {
                    here: true,
                    router,
                    central,
                    ..
                }) => snap
                    .routers
                    .get(router as usize)
                    .and_then(|r| fip_mac(node, r, central)),
                Some(ExtAddr::Gateway {
                    mac, here: true, ..
                }) => Some(mac),
                _ => fip_gw.filter(|g| g.0 == target).map(|g| g.1),
            };
            let Some(mac) = mac else {
                tr!(t, "external-arp", "who-has {target}: not served here");
                return D::Drop(R::ArpUnknownTarget);
            };
            tr!(t, "external-arp", "who-has {target}: {mac}");
            arp::answer(f.data_mut(), &mac.0, target);
            D::Forward(in_port)
        }
        arp::OP_REPLY => arp_reply_consumed(env, &a, "external-arp", t),
        _ => D::Drop(R::MalformedArp),
    }
}
