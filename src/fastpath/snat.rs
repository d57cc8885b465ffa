//! The SNAT way: a frame from another host, routed here out to the outside
//! through the router's SNAT, decided on its bytes and the memory of its
//! tunnel ([`SnatMemo`]), then finished ([`snat_apply`]) as the whole
//! pipeline would; and the SNAT's prefetch of a burst ([`prefetch_nat`]).

use super::tunnel::{arrival, plain_ipv4, Arrival, Remembered, TunnelMemo};
use crate::mac::MacAddr;
use crate::model::NetworkType;
use crate::nat::{self, Nat};
use crate::pipeline::classify::Ingress;
use crate::pipeline::decap::gateway_source;
use crate::pipeline::nat::{external_mtu, upstream_mac};
use crate::pipeline::route::{forwardable4, write_macs};
use crate::pipeline::{Disposition, Env};
use crate::pkt::Frame;
use crate::tables::{Adj, Dest, Home, Snapshot};
use crate::wire::{self, be16, be32, ethernet, gre, ipv4, ipv4_at, mac_at, proto, vxlan};

/// Prefetches what the SNAT of `frame` will read, a burst ahead of the
/// pipeline, in two stages: this is stage one, the index bucket of the
/// frame's lookup; [`prefetch_nat_next`] is stage two, once the bucket is in:
/// the session slot, or for a new flow what creating its session reads. With
/// a session table larger than the caches, the misses of a burst's packets
/// then overlap instead of following each other. From the external port, the
/// reply's session; from the underlay, the session of a frame another host
/// sent to a router interface here (the router's SNAT). A hint only: a frame
/// it does not recognise prefetches nothing.
#[inline]
pub fn prefetch_nat(snap: &Snapshot, env: &Env, ing: Ingress<'_>, frame: &[u8]) {
    match ing {
        Ingress::External
            if frame.len() > ethernet::HEADER_LEN + ipv4::HEADER_LEN
                && be16(frame, ethernet::field::ETHERTYPE.start) == ethernet::ETHERTYPE_IPV4 =>
        {
            env.nat.prefetch_in(&frame[ethernet::HEADER_LEN..]);
        }
        Ingress::Underlay => {
            if let Some((router, ip)) = tunnelled_to_router(snap, frame) {
                env.nat.prefetch_out(router, ip);
            }
        }
        _ => {}
    }
}

/// Stage two of [`prefetch_nat`]: called once per frame of the burst after
/// stage one ran on all of them, it takes what stage one found, in the same
/// order (it does not read the frame again).
#[inline]
pub fn prefetch_nat_next(env: &Env) {
    env.nat.prefetch_next();
}

/// For [`prefetch_nat`]: the router and inner IPv4 packet of a VXLAN or GRE
/// frame whose inner destination is a router interface (no checks beyond
/// what finding them needs: the pipeline checks the frame). Not
/// [`wire::tunnel::underlay`]: its checks (the outer checksum above all)
/// would cost each frame a second time, for a hint; this reads the fields
/// at their places behind a 20-byte outer header.
fn tunnelled_to_router<'a>(snap: &Snapshot, frame: &'a [u8]) -> Option<(u32, &'a [u8])> {
    let node = &*snap.node;
    if be16(
        frame.get(..ethernet::HEADER_LEN)?,
        ethernet::field::ETHERTYPE.start,
    ) != ethernet::ETHERTYPE_IPV4
    {
        return None;
    }
    let ip = frame.get(ethernet::HEADER_LEN..ethernet::HEADER_LEN + ipv4::HEADER_LEN)?;
    let (net, inner) = match ip[ipv4::field::PROTOCOL] {
        proto::UDP => {
            let at =
                wire::tunnel::VXLAN_OVERHEAD - vxlan::HEADER_LEN + vxlan::field::VNI_WORD.start;
            let vni = be32(frame.get(..wire::tunnel::VXLAN_OVERHEAD)?, at) >> 8;
            (
                *node.by_vni.get(&vni)?,
                &frame[wire::tunnel::VXLAN_OVERHEAD..],
            )
        }
        proto::GRE => {
            let at = wire::tunnel::GRE_OVERHEAD - gre::HEADER_LEN + gre::field::KEY.start;
            let key = be32(frame.get(..wire::tunnel::GRE_OVERHEAD)?, at);
            (
                *node.by_gre_key.get(&key)?,
                &frame[wire::tunnel::GRE_OVERHEAD..],
            )
        }
        _ => return None,
    };
    if inner.len() <= ethernet::HEADER_LEN + ipv4::HEADER_LEN
        || be16(inner, ethernet::field::ETHERTYPE.start) != ethernet::ETHERTYPE_IPV4
    {
        return None;
    }
    match snap
        .net(net)?
        .fdb
        .get(MacAddr(mac_at(inner, ethernet::field::DST.start)).key())?
    {
        Dest::Router { router, .. } => Some((router, &inner[ethernet::HEADER_LEN..])),
        _ => None,
    }
}

/// The common case of a `dvr_snat` node, worked out on a frame's bytes alone
/// ([`snat_way`]): a VXLAN frame from a known host to this VTEP whose inner
/// frame goes to a router interface here, routed by the router out to the
/// outside through its SNAT here. What [`snat_apply`] needs to finish it.
#[derive(Debug, Clone, Copy)]
pub struct SnatWay {
    /// The external port, and the MACs the frame leaves with.
    ext: u16,
    up: MacAddr,
    from: MacAddr,
    /// The inner IPv4 packet's total length (behind its Ethernet header).
    ip: u16,
    look: nat::OutLookup,
}

impl SnatWay {
    /// The NAT's lookup of the frame, to prefetch ([`Nat::prefetch_lookup`]).
    #[inline(always)]
    pub fn look(&self) -> nat::OutLookup {
        self.look
    }
}

/// Whether the whole pipeline ([`crate::pipeline::process_from`]) takes `b`, in from the
/// underlay, the way [`SnatWay`] describes: every check it makes of such a
/// frame made here, read-only (outer Ethernet and IPv4 header, checksum,
/// VTEPs, VXLAN header and VNI; the inner frame's MACs and the router
/// interface it is for; the inner IPv4 header and checksum, martians, the
/// route, TTL; the floating IPs; the router's SNAT here, the external port and
/// its MTU, the upstream router resolved; what the NAT looks the packet up by).
/// `None` for any other frame (the pipeline decides it), including frames it
/// would take this way but with IPv4 options.
#[inline(always)]
pub fn snat_way(snap: &Snapshot, memo: &mut SnatMemo, b: &[u8]) -> Option<SnatWay> {
    // process_from, from_underlay: the outer headers.
    let a = arrival(snap, b)?;
    if a.carrier != NetworkType::Vxlan {
        return None;
    }
    // The tunnel: source VTEP, VNI, inner MACs; what they decide (a router
    // interface here, the router's SNAT here and its way out) depends on
    // the snapshot only, kept for the next frames of the same tunnel.
    // A tunnel that does not lead here is remembered too: the frames of an
    // east-west tunnel on this node then pay no lookups before the whole
    // pipeline makes them.
    let t = memo.recall(snap.epoch, a.key, move || snat_tunnel(snap, a))?;
    let r = snap.routers.get(t.router as usize)?;
    // route4's checks, the stage's own: the IPv4 header (its common case),
    // the addresses and TTL; then the route.
    let ip = a.l3;
    let (h, total) = plain_ipv4(ip)?;
    if !forwardable4(h) {
        return None;
    }
    let (src, dst) = (
        ipv4_at(h, ipv4::field::SRC_ADDR.start),
        ipv4_at(h, ipv4::field::DST_ADDR.start),
    );
    // north_south4: what the external network takes.
    if total > t.mtu as usize {
        return None;
    }
    let Some((_, Adj::External)) = r.fwd4.lookup(u32::from(dst)) else {
        return None;
    };
    // north_south4: no floating IP either way.
    if (!r.floating.is_empty() && r.floating.contains_key(&dst))
        || (!r.fips.is_empty() && r.fips.contains_key(&src))
    {
        return None;
    }
    let look = Nat::out_lookup(t.router, &ip[..total])?;
    Some(SnatWay {
        ext: t.ext,
        up: t.up,
        from: t.from,
        ip: total as u16,
        look,
    })
}

/// What a tunnel's frames that reach the SNAT have in common ([`snat_way`]).
#[derive(Debug, Clone, Copy)]
pub struct SnatTunnel {
    router: u32,
    ext: u16,
    up: MacAddr,
    from: MacAddr,
    /// The external network's MTU ([`external_mtu`]).
    mtu: u16,
}

/// The part of [`snat_way`] that depends on a frame's tunnel only
/// ([`Arrival`]'s key): a known source VTEP, the VNI's network, to a router
/// interface there from a DVR MAC (or to a router centralized here), the
/// router's SNAT enabled and here, the external port, the upstream router
/// resolved.
fn snat_tunnel(snap: &Snapshot, a: Arrival) -> Option<SnatTunnel> {
    let node = &*snap.node;
    if !a.sent_by_known_vtep(node) {
        return None;
    }
    let net = a.network(node)?;
    // deliver_decapped: to a router interface.
    let n = snap.net(net)?;
    let Some(Dest::Router { router, iface }) = n.fdb.get(a.dst().key()) else {
        return None;
    };
    // deliver_decapped drops it: left to the whole pipeline.
    if gateway_source(node, n, a.src()) {
        return None;
    }
    let from_router = node.dvr_macs.get(a.src().key()).is_some();
    // routed_from_overlay, route.
    let r = snap.routers.get(router as usize)?;
    let sn = r.snat.as_ref()?;
    if !(sn.here && sn.enable_snat && (from_router || r.home == Home::Here)) {
        return None;
    }
    r.interfaces.get(iface as usize)?;
    if a.ethertype != ethernet::ETHERTYPE_IPV4 {
        return None;
    }
    Some(SnatTunnel {
        router,
        ext: node.external?,
        up: upstream_mac(node, r).ok()?,
        from: sn.mac,
        mtu: external_mtu(snap, r),
    })
}

const _: () = assert!(std::mem::size_of::<Remembered<SnatTunnel>>() <= 64);

/// [`snat_way`]'s memory.
pub type SnatMemo = TunnelMemo<SnatTunnel>;
/// Finishes a frame [`snat_way`] found `w` for (its bytes unchanged since,
/// the same snapshot) as the whole pipeline does: decapsulated, translated
/// by this worker's SNAT, its TTL decremented, out of the external port from
/// the router's gateway MAC to the upstream router. Nothing in it but the
/// SNAT can fail on the frame the way read: the one check of its length
/// first finds that frame; any other (it cannot be: the worker hands over
/// the bytes the way read) is left unchanged for the whole pipeline
/// (`None`).
#[inline(always)]
pub fn snat_apply(env: &mut Env, w: &SnatWay, f: &mut Frame) -> Option<Disposition> {
    let over = wire::tunnel::VXLAN_OVERHEAD;
    let inner = ethernet::HEADER_LEN + w.ip as usize;
    if f.len() < over + inner {
        return None;
    }
    f.trim(over + inner);
    // Within the length checked: cannot fail.
    f.adj(over);
    let now = env.clock();
    let (eth, ip) = f.data_mut().split_at_mut(ethernet::HEADER_LEN);
    if let Err(r) = env.nat.snat_out_looked(ip, &w.look, now) {
        return Some(Disposition::Drop(r));
    }
    ipv4::dec_ttl(ip);
    write_macs(eth, &w.up.0, &w.from.0);
    Some(Disposition::Forward(w.ext))
}
