//! Encapsulate: a frame toward another host over its network's overlay
//! (VXLAN, GRE, VLAN tag, or untagged on a flat network), the outer headers
//! completed from those prepared for the host.

use std::net::Ipv4Addr;

use super::{Trace, Verdict};
use crate::model::NetworkType;
use crate::pkt::{Frame, InPlace};
use crate::stats::{DropReason, DropReason as R};
use crate::tables::{HostEntry, NetTables, NodeTables, Snapshot};
use crate::wire::checksum::csum_fold;
use crate::wire::{be32, ethernet, proto, put16, tunnel, udp, vlan, vxlan};

/// What the overlay of a network needs to know of it.
#[derive(Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) kind: NetworkType,
    pub(crate) segment: u32,
    pub(crate) mtu: u16,
}

/// Sends the frame in `f` to host `h` over the overlay of network `net`.
#[inline(always)]
pub(super) fn encap<T: Trace>(
    snap: &Snapshot,
    net: &NetTables,
    h: u16,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let seg = Segment {
        kind: net.kind,
        segment: net.segment,
        mtu: net.mtu,
    };
    overlay(snap, seg, &net.name, h, f, t)
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
            let Some((hdr, l4)) = b.split_first_chunk_mut::<34>() else {
                return Err(R::NoHeadroom); // unreachable: over > 34
            };
            // The prepared headers; then the length, the protocol and the
            // checksum completed from the prepared sum.
            *hdr = outer.hdr;
            let total = (over - ethernet::HEADER_LEN + inner) as u16;
            let proto = if vxlan { proto::UDP } else { proto::GRE };
            hdr[16..18].copy_from_slice(&total.to_be_bytes());
            hdr[23] = proto;
            let c = csum_fold(outer.sum + total as u32 + proto as u32);
            hdr[24..26].copy_from_slice(&c.to_be_bytes());
            if vxlan {
                let Some(v) = l4.first_chunk_mut::<16>() else {
                    return Err(R::NoHeadroom); // unreachable: prepended
                };
                v[0..2].copy_from_slice(&(0xc000 | (hash as u16 & 0x3fff)).to_be_bytes());
                v[2..4].copy_from_slice(&udp::VXLAN_PORT.to_be_bytes());
                v[4..6].copy_from_slice(
                    &((udp::HEADER_LEN + vxlan::HEADER_LEN + inner) as u16).to_be_bytes(),
                );
                v[6..8].copy_from_slice(&[0, 0]);
                v[8..12].copy_from_slice(&0x0800_0000u32.to_be_bytes());
                v[12..16].copy_from_slice(&(net.segment << 8).to_be_bytes());
                tr!(
                    t,
                    "encap",
                    "VXLAN VNI {} {} → {} ({})",
                    net.segment,
                    Ipv4Addr::from(be32(hdr, 26)),
                    host.vtep,
                    host.name
                );
            } else {
                let Some(g) = l4.first_chunk_mut::<8>() else {
                    return Err(R::NoHeadroom); // unreachable: prepended
                };
                g[0..2].copy_from_slice(&0x2000u16.to_be_bytes());
                g[2..4].copy_from_slice(&ethernet::ETHERTYPE_TEB.to_be_bytes());
                g[4..8].copy_from_slice(&net.segment.to_be_bytes());
                tr!(
                    t,
                    "encap",
                    "GRE key {} {} → {} ({})",
                    net.segment,
                    Ipv4Addr::from(be32(hdr, 26)),
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
            b.copy_within(vlan::HEADER_LEN..vlan::HEADER_LEN + 12, 0);
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
