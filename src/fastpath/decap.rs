//! The decap way: a frame from another host for a port here, decided on its
//! bytes and the memory of its tunnel ([`DecapMemo`]), then finished
//! ([`decap_apply`]) as the whole pipeline would.

use ipnet::IpNet;

use super::tunnel::{arrival, Arrival, Remembered, TunnelMemo};
use crate::fib::Key as _;
use crate::mac::MacAddr;
use crate::model::NetworkType;
use crate::pipeline::decap::{covering_gateway, gateway_source, untag};
use crate::pipeline::Disposition;
use crate::pkt::Frame;
use crate::tables::{Dest, NetTables, Snapshot};
use crate::wire::{self, ethernet, ipv4, ipv4_at, vlan};

// What the size of TUNNEL_MEMO's memory assumes.
const _: () = assert!(std::mem::size_of::<Remembered<DecapTunnel>>() <= 64);
/// [`decap_way`]'s memory.
pub type DecapMemo = TunnelMemo<DecapTunnel>;

/// The common case of a frame from another host to a port here, worked out
/// on its bytes alone ([`decap_way`]): a VXLAN or GRE frame from a known
/// host to this VTEP, or a frame tagged with a VLAN network's ID, whose
/// inner frame goes to a local port, switched, or routed by the sending host
/// (its DVR MAC rewritten to the router interface's). What [`decap_apply`]
/// needs to finish it.
#[derive(Debug, Clone, Copy)]
pub struct DecapWay {
    port: u16,
    /// How its network came: the outer headers to remove, or the tag.
    carrier: NetworkType,
    /// The length of the inner frame's payload (behind its Ethernet header).
    l3: u16,
    /// The source MAC the inner frame leaves with, if it is rewritten.
    src: Option<MacAddr>,
}

/// What a tunnel's frames that go to a local port have in common
/// ([`decap_way`]).
#[derive(Debug, Clone, Copy)]
pub struct DecapTunnel {
    port: u16,
    net: u32,
    /// The inner source MAC is a host's DVR MAC.
    dvr_src: bool,
    /// With a DVR MAC source, the network's router interface when it is
    /// its only IPv4 one: an IPv4 frame's gateway found without the
    /// network's tables (see [`covering_gateway`]).
    gw4: Option<Gw4>,
}

/// An IPv4 router interface's prefix, as words, and its MAC.
#[derive(Debug, Clone, Copy)]
pub struct Gw4 {
    net: u32,
    mask: u32,
    mac: MacAddr,
}

/// The router interface of network `n` when it is its only IPv4 one: its
/// prefix as words (masked as the LPM masks, [`fib::Key::mask`]) and MAC.
///
/// [`fib::Key::mask`]: crate::fib::Key::mask
fn sole_gw4(n: &NetTables) -> Option<Gw4> {
    let mut v4 = n.gateways.iter().filter_map(|g| match g.cidr {
        IpNet::V4(c) => Some((c, g.mac)),
        IpNet::V6(_) => None,
    });
    let (c, mac) = v4.next()?;
    if v4.next().is_some() {
        return None;
    }
    let len = c.prefix_len();
    Some(Gw4 {
        net: u32::from(c.addr()).mask(len),
        mask: u32::MAX.mask(len),
        mac,
    })
}

/// Whether the whole pipeline ([`crate::pipeline::process_from`]) takes `b`, in from the
/// underlay, the way [`DecapWay`] describes: every check it makes of such a
/// frame made here, read-only (outer Ethernet and IPv4 header, checksum,
/// VTEPs, VXLAN or GRE header and VNI or key, or the VLAN tag; the inner
/// MACs and the local port; for a DVR MAC source, the router interface
/// covering the destination). `None` for any other frame (the pipeline
/// decides it), including frames it would take this way but with outer IPv4
/// options.
#[inline(always)]
pub fn decap_way(snap: &Snapshot, memo: &mut DecapMemo, b: &[u8]) -> Option<DecapWay> {
    let a = arrival(snap, b)?;
    let t = memo.recall(snap.epoch, a.key, move || decap_tunnel(snap, a))?;
    // deliver_decapped: the DVR MAC of the host that routed it becomes the
    // interface's of the subnet of the destination.
    let src = match (t.dvr_src, t.gw4) {
        (false, _) => None,
        (true, Some(g)) if a.ethertype == ethernet::ETHERTYPE_IPV4 => {
            if a.l3.len() < ipv4::HEADER_LEN
                || u32::from(ipv4_at(a.l3, ipv4::field::DST_ADDR.start)) & g.mask != g.net
            {
                return None;
            }
            Some(g.mac)
        }
        (true, _) => Some(covering_gateway(snap.net(t.net)?, a.ethertype, a.l3)?.mac),
    };
    Some(DecapWay {
        port: t.port,
        carrier: a.carrier,
        l3: a.l3.len() as u16,
        src,
    })
}

/// The part of [`decap_way`] that depends on a frame's tunnel only
/// ([`Arrival`]'s key): a known source VTEP, the segment's network, a local
/// port there for the inner destination MAC, whether the inner source is a
/// DVR MAC.
fn decap_tunnel(snap: &Snapshot, a: Arrival) -> Option<DecapTunnel> {
    let node = &*snap.node;
    if !a.sent_by_known_vtep(node) {
        return None;
    }
    let net = a.network(node)?;
    let n = snap.net(net)?;
    let Some(Dest::Local(port)) = n.fdb.get(a.dst().key()) else {
        return None;
    };
    // deliver_decapped drops it: left to the whole pipeline.
    if gateway_source(node, n, a.src()) {
        return None;
    }
    let dvr_src = node.dvr_macs.get(a.src().key()).is_some();
    let gw4 = if dvr_src { sole_gw4(n) } else { None };
    Some(DecapTunnel {
        port,
        net,
        dvr_src,
        gw4,
    })
}

/// Finishes a frame [`decap_way`] found `w` for (its bytes unchanged since,
/// the same snapshot) as the whole pipeline does: decapsulated (or its tag
/// taken out), its source MAC rewritten if it was a DVR MAC, to the local
/// port. Nothing in it can fail on the frame the way read: the one check of
/// its length first finds that frame; any other (it cannot be: the worker
/// hands over the bytes the way read) is left unchanged for the whole
/// pipeline (`None`).
#[inline(always)]
pub fn decap_apply(w: &DecapWay, f: &mut Frame) -> Option<Disposition> {
    let inner = ethernet::HEADER_LEN + w.l3 as usize;
    // The outer headers, or the tag (which follows the inner MACs).
    let over = match w.carrier {
        NetworkType::Vxlan => wire::tunnel::VXLAN_OVERHEAD,
        NetworkType::Gre => wire::tunnel::GRE_OVERHEAD,
        NetworkType::Vlan => vlan::HEADER_LEN,
        NetworkType::Flat => return None,
    };
    if f.len() < over + inner {
        return None;
    }
    f.trim(over + inner);
    // Within the length checked: these cannot fail.
    if w.carrier == NetworkType::Vlan {
        untag(f);
    } else {
        f.adj(over);
    }
    // The source MAC last, in the inner frame as it leaves (as the whole
    // pipeline's `deliver_decapped` writes it).
    if let Some(src) = w.src {
        f.data_mut()[ethernet::field::SRC].copy_from_slice(&src.0);
    }
    Some(Disposition::Forward(w.port))
}
