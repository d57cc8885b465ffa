//! Encapsulate: a frame toward another host over its network's overlay
//! (VXLAN, GRE, VLAN tag, or untagged on a flat network), the outer headers
//! completed from those prepared for the host.

use std::net::Ipv4Addr;

use super::{Disposition, Trace, Verdict};
use crate::model::NetworkType;
use crate::pkt::{Frame, InPlace};
use crate::stats::{DropReason, DropReason as R};
use crate::tables::{HostEntry, NetTables, NodeTables, Snapshot};
use crate::wire::checksum::csum_fold;
use crate::wire::{be32, ethernet, gre, ipv4, proto, put16, tunnel, udp, vlan, vxlan};

/// The outer Ethernet and IPv4 headers of a tunnel (prepared per host).
const OUTER_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN;

/// What the overlay of a network needs to know of it.
#[derive(Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) kind: NetworkType,
    pub(crate) segment: u32,
    pub(crate) mtu: u16,
}

impl Segment {
    /// The overlay of network `net`.
    #[inline(always)]
    pub(crate) fn of(net: &NetTables) -> Segment {
        Segment {
            kind: net.kind,
            segment: net.segment,
            mtu: net.mtu,
        }
    }
}

/// Sends the frame in `f` to host `h` over the overlay of network `net`.
#[inline(always)]
pub(super) fn encap<T: Trace>(
    snap: &Snapshot,
    net: &NetTables,
    h: u16,
    f: &mut Frame,
    t: &mut T,
) -> Disposition {
    Disposition::plain(overlay(snap, Segment::of(net), &net.name, h, f, t))
}

/// Sends the frame in `f` to host `h` over the overlay of `net` (named `name`).
pub(crate) fn overlay<P: InPlace, T: Trace>(
    snap: &Snapshot,
    net: Segment,
    name: &str,
    h: u16,
    f: &mut P,
    t: &mut T,
) -> Verdict {
    let node = &*snap.node;
    let (Some((ul_port, _)), Some(host)) = (node.underlay, node.hosts.get(h as usize)) else {
        return Err(R::NoUnderlay);
    };
    let Some(b) = f.bytes() else {
        return Err(R::MultiSegment);
    };
    let inner = b.len();
    // Only what leaves through the overlay must fit its MTU (the underlay
    // must never fragment); frames between local ports may be larger.
    if inner > net.mtu as usize + ethernet::HEADER_LEN {
        tr!(
            t,
            "encap",
            "frame of {inner} bytes exceeds MTU {} of {name}",
            net.mtu,
        );
        return Err(R::MtuExceeded);
    }
    match net.kind {
        NetworkType::Vxlan | NetworkType::Gre => {
            let Some(Some(outer)) = node.outer.get(h as usize) else {
                return Err(unresolved(node, host, t));
            };
            let vxlan = net.kind == NetworkType::Vxlan;
            let hash = if vxlan { vxlan::flow_hash(b) } else { 0 };
            let over = if vxlan {
                tunnel::VXLAN_OVERHEAD
            } else {
                tunnel::GRE_OVERHEAD
            };
            let Some(b) = f.prepend(over) else {
                return Err(R::NoHeadroom);
            };
            let Some((hdr, l4)) = b.split_first_chunk_mut::<OUTER_LEN>() else {
                return Err(R::NoHeadroom); // unreachable: over > OUTER_LEN
            };
            // The prepared headers; then the length, the protocol and the
            // checksum completed from the prepared sum.
            *hdr = outer.hdr;
            let total = (over - ethernet::HEADER_LEN + inner) as u16;
            let proto = if vxlan { proto::UDP } else { proto::GRE };
            let ip = ethernet::HEADER_LEN;
            put16(hdr, ip + ipv4::field::LENGTH.start, total);
            hdr[ip + ipv4::field::PROTOCOL] = proto;
            let c = csum_fold(outer.sum + total as u32 + proto as u32);
            put16(hdr, ip + ipv4::field::CHECKSUM.start, c);
            if vxlan {
                let Some(v) = l4.first_chunk_mut::<{ udp::HEADER_LEN + vxlan::HEADER_LEN }>()
                else {
                    return Err(R::NoHeadroom); // unreachable: prepended
                };
                let sport = 0xc000 | (hash as u16 & 0x3fff);
                put16(v, udp::field::SRC_PORT.start, sport);
                put16(v, udp::field::DST_PORT.start, udp::VXLAN_PORT);
                let len = (udp::HEADER_LEN + vxlan::HEADER_LEN + inner) as u16;
                put16(v, udp::field::LENGTH.start, len);
                put16(v, udp::field::CHECKSUM.start, 0);
                vxlan::write(&mut v[udp::HEADER_LEN..], net.segment);
                tr!(
                    t,
                    "encap",
                    "VXLAN VNI {} {} → {} ({})",
                    net.segment,
                    Ipv4Addr::from(be32(hdr, ip + ipv4::field::SRC_ADDR.start)),
                    host.vtep,
                    host.name
                );
            } else {
                let Some(g) = l4.first_chunk_mut::<{ gre::HEADER_LEN }>() else {
                    return Err(R::NoHeadroom); // unreachable: prepended
                };
                gre::write(g, net.segment);
                tr!(
                    t,
                    "encap",
                    "GRE key {} {} → {} ({})",
                    net.segment,
                    Ipv4Addr::from(be32(hdr, ip + ipv4::field::SRC_ADDR.start)),
                    host.vtep,
                    host.name
                );
            }
            Ok(ul_port)
        }
        NetworkType::Vlan => {
            let Some(b) = f.prepend(vlan::HEADER_LEN) else {
                return Err(R::NoHeadroom);
            };
            b.copy_within(
                vlan::HEADER_LEN..vlan::HEADER_LEN + ethernet::field::MACS.end,
                0,
            );
            put16(b, 12, ethernet::ETHERTYPE_VLAN);
            put16(b, 14, (net.segment & 0x0fff) as u16);
            tr!(t, "encap", "VLAN {} toward host {}", net.segment, host.name);
            Ok(ul_port)
        }
        NetworkType::Flat => {
            tr!(
                t,
                "encap",
                "flat network: untagged on the underlay toward host {}",
                host.name
            );
            Ok(ul_port)
        }
    }
}

/// Why there is no outer header toward `host`: no VTEP of this node, or the
/// host's VTEP not resolved yet.
#[cold]
fn unresolved<T: Trace>(node: &NodeTables, host: &HostEntry, t: &mut T) -> DropReason {
    if node.vtep.is_none() {
        return R::NoUnderlay;
    }
    tr!(
        t,
        "encap",
        "VTEP {} of host {} is not resolved yet",
        host.vtep,
        host.name
    );
    R::VtepUnresolved
}
