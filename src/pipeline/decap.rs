//! Decapsulate: the underlay's way in. ARP for this VTEP; VXLAN and GRE
//! frames to this VTEP from a known host's, VLAN-tagged frames; their inner
//! frame delivered to a local port (a DVR MAC source rewritten to the router
//! interface's), flooded, or routed here.

use ipnet::IpNet;

use super::nat::routed_from_overlay;
use super::responder::{arp_reply_consumed, vip_asked, vip_learn_overlay};
use super::switch::{flood, flood_vip};
use super::{host_name, Disposition as D, Env, Trace};
use crate::mac::MacAddr;
use crate::pkt::Frame;
use crate::stats::{DropReason, DropReason as R};
use crate::tables::{Dest, Gw, NetTables, NodeTables, Snapshot};
use crate::wire::{arp, be16, ethernet, ipv4, ipv4_at, ipv6, ipv6_at, mac_at, tunnel, vlan};

/// Takes the 802.1Q tag after the MACs out of `f` (the MACs move over it).
/// False, `f` unchanged, if `f` is too short to hold one.
pub(crate) fn untag(f: &mut Frame) -> bool {
    let Some(b) = f
        .data_mut()
        .get_mut(..ethernet::HEADER_LEN + vlan::HEADER_LEN)
    else {
        return false;
    };
    b.copy_within(ethernet::field::MACS, vlan::HEADER_LEN);
    f.adj(vlan::HEADER_LEN)
}

/// A frame from the underlay: ARP for this VTEP, tunnels, VLAN-tagged frames.
pub(super) fn from_underlay<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let node = &*snap.node;
    let b = f.data();
    let known = |src| node.by_vtep.contains_key(&src);
    let u = match tunnel::underlay(b, node.vtep, known) {
        Ok(u) => u,
        Err(r) => {
            if T::ON {
                refused(b, r, t);
            }
            return D::Drop(r);
        }
    };
    let net = match u {
        tunnel::Underlay::Arp => return underlay_arp(snap, env, in_port, f, t),
        tunnel::Underlay::Tagged(tag) => {
            let vid = u32::from(tag.vid);
            let Some(&net) = node.by_vlan.get(&vid) else {
                tr!(t, "decap", "VLAN {vid}: no such network");
                return D::Drop(R::UnknownVlan);
            };
            untag(f); // its length checked by the parser
            tr!(t, "decap", "VLAN {vid}");
            net
        }
        tunnel::Underlay::Tunnel(tun) => {
            let src = tun.outer.src_addr();
            let seg = tun.segment();
            let net = match tun.encap {
                tunnel::Encap::Vxlan => {
                    let Some(&net) = node.by_vni.get(&seg) else {
                        tr!(t, "decap", "VXLAN VNI {seg}: no such network");
                        return D::Drop(R::UnknownVni);
                    };
                    tr!(t, "decap", "VXLAN VNI {seg} from {src}");
                    net
                }
                tunnel::Encap::Gre => {
                    let Some(&net) = node.by_gre_key.get(&seg) else {
                        tr!(t, "decap", "GRE key {seg}: no such network");
                        return D::Drop(R::UnknownGreKey);
                    };
                    tr!(t, "decap", "GRE key {seg} from {src}");
                    net
                }
            };
            let (total, strip) = (tun.outer.as_bytes().len(), tun.strip);
            f.trim(ethernet::HEADER_LEN + total);
            f.adj(strip);
            net
        }
        tunnel::Underlay::Other(et) => {
            tr!(t, "decap", "ethertype {et:#06x} on the underlay");
            return D::Drop(R::UnderlayEthertype);
        }
    };
    // One way on for every tunnel kind, inlined: the disposition is put
    // together once, here.
    deliver_decapped(snap, env, net, f, t)
}

/// Traces why the underlay's parser refused frame `b` (the addresses of a
/// tunnel not to this VTEP or from an unknown one).
#[cold]
fn refused<T: Trace>(b: &[u8], r: DropReason, t: &mut T) {
    let outer = b.get(ethernet::HEADER_LEN..).map(ipv4::validate_lengths);
    match (r, outer) {
        (R::NotForThisVtep, Some(Ok(p))) => {
            tr!(t, "decap", "to {}, not this VTEP", p.dst_addr());
        }
        (R::UnknownVtepSource, Some(Ok(p))) => {
            tr!(t, "decap", "from {}: not a known host's VTEP", p.src_addr());
        }
        _ => {}
    }
}

/// ARP on the underlay: requests for this VTEP are answered; replies go to
/// the control thread (VTEP resolution).
fn underlay_arp<T: Trace>(
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
            let (Some(vtep), Some((_, mac))) = (node.vtep, node.underlay) else {
                return D::Drop(R::NoUnderlay);
            };
            if target != vtep {
                tr!(t, "underlay-arp", "who-has {target}: not this VTEP");
                return D::Drop(R::ArpUnknownTarget);
            }
            tr!(t, "underlay-arp", "who-has {target}: this VTEP, {mac}");
            arp::answer(f.data_mut(), &mac.0, vtep);
            D::Forward(in_port)
        }
        arp::OP_REPLY => arp_reply_consumed(env, &a, "underlay-arp", t),
        _ => D::Drop(R::MalformedArp),
    }
}

/// Whether `dst` lies in prefix `net`/`len` (IPv4 or IPv6 as words).
#[inline(always)]
fn in_prefix<K: crate::fib::Key>(dst: K, net: K, len: u8) -> bool {
    dst.mask(len) == net.mask(len)
}

/// The router interface of network `n` whose subnet holds the destination
/// of a decapsulated frame (of `ethertype`, IPv4 or IPv6, its header at the
/// start of `l3`): the source MAC a frame routed by another host (from its
/// DVR MAC) is delivered with.
///
/// Word arithmetic on the interfaces' prefixes: `IpNet::contains` on an
/// `IpAddr` is an out-of-line call that rebuilds both ends of the range; it
/// took a fifth of the pipeline bench's samples on the receive path.
#[inline(always)]
pub(crate) fn covering_gateway<'a>(n: &'a NetTables, ethertype: u16, l3: &[u8]) -> Option<&'a Gw> {
    match ethertype {
        ethernet::ETHERTYPE_IPV4 if l3.len() >= ipv4::HEADER_LEN => {
            let dst = u32::from(ipv4_at(l3, ipv4::field::DST_ADDR.start));
            n.gateways.iter().find(|g| match g.cidr {
                IpNet::V4(c) => in_prefix(dst, u32::from(c.addr()), c.prefix_len()),
                IpNet::V6(_) => false,
            })
        }
        ethernet::ETHERTYPE_IPV6 if l3.len() >= ipv6::HEADER_LEN => {
            let dst = u128::from(ipv6_at(l3, ipv6::field::DST_ADDR.start));
            n.gateways.iter().find(|g| match g.cidr {
                IpNet::V6(c) => in_prefix(dst, u128::from(c.addr()), c.prefix_len()),
                IpNet::V4(_) => false,
            })
        }
        _ => None,
    }
}

/// Whether `src`, the inner source MAC of a frame from the overlay on
/// network `n`, is one only this node sends from: a router interface MAC of
/// a router here (the gateway MAC never appears as a source on the fabric:
/// other hosts route from their DVR MAC), or this node's own DVR MAC.
#[inline(always)]
pub(crate) fn gateway_source(node: &NodeTables, n: &NetTables, src: MacAddr) -> bool {
    node.dvr_mac == Some(src) || matches!(n.fdb.get(src.key()), Some(Dest::Router { .. }))
}

/// A decapsulated frame on network `net`: delivered to a local port only, with
/// a DVR MAC source (a frame routed on its source host) rewritten to the
/// destination subnet's router interface MAC.
#[inline(always)]
fn deliver_decapped<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    net: u32,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let Some(n) = snap.net(net) else {
        return D::Drop(R::Dangling);
    };
    let b = f.data();
    if b.len() < ethernet::HEADER_LEN {
        return D::Drop(R::RuntFrame);
    }
    if b[ethernet::field::SRC.start] & 1 != 0 {
        return D::Drop(R::MulticastSrcMac);
    }
    let src = MacAddr(mac_at(b, ethernet::field::SRC.start));
    if gateway_source(&snap.node, n, src) {
        tr!(
            t,
            "decap",
            "source {src} is a router interface or DVR MAC of this node"
        );
        return D::Drop(R::OverlayGatewayMac);
    }
    if b[ethernet::field::DST.start] & 1 != 0 {
        vip_learn_overlay(env, net, n, b, t);
        if let Some(ip) = vip_asked(n, b) {
            return flood_vip(env, net, false, ip, None, t);
        }
        return flood(net, false, t);
    }
    let dst = MacAddr(mac_at(b, ethernet::field::DST.start));
    let p = match n.fdb.get(dst.key()) {
        Some(Dest::Local(p)) => p,
        Some(Dest::Router { router, iface }) => {
            let from_router = snap.node.dvr_macs.get(src.key()).is_some();
            return routed_from_overlay(snap, env, router, iface, from_router, f, t);
        }
        _ => {
            tr!(
                t,
                "switch",
                "{dst} is not a local port of network {}",
                n.name
            );
            return D::Drop(R::NotLocalAfterDecap);
        }
    };
    if let Some(h) = snap.node.dvr_macs.get(src.key()) {
        if let Some(gw) = covering_gateway(
            n,
            be16(b, ethernet::field::ETHERTYPE.start),
            &b[ethernet::HEADER_LEN..],
        ) {
            f.data_mut()[ethernet::field::SRC].copy_from_slice(&gw.mac.0);
            tr!(
                t,
                "rewrite",
                "source {src} (DVR MAC of host {}) → {} (router interface)",
                host_name(snap, h),
                gw.mac
            );
        } else {
            tr!(
                t,
                "rewrite",
                "source {src} is a DVR MAC but no router interface here covers the destination"
            );
            return D::Drop(R::DvrMacNoInterface);
        }
    }
    tr!(t, "switch", "{dst} is {}", super::port_label(snap, p));
    D::Forward(p)
}
