//! Switch: a unicast frame's destination MAC in its network's FDB (a local
//! port, a port on another host, a router interface); a broadcast or
//! multicast frame flooded ([`Flood`]), which the worker replicates to the
//! targets [`flood_targets`] lists.

use std::net::IpAddr;

use super::encap::{encap, overlay, Segment};
use super::route::route;
use super::{host_name, Disposition as D, Env, NoTrace, Trace, Verdict};
use crate::fastpath::cached::{host_out, switched};
use crate::fastpath::flow::Out;
use crate::mac::MacAddr;
use crate::pkt::Frame;
use crate::stats::{DropReason, DropReason as R};
use crate::tables::{Dest, NetTables, Snapshot};
use crate::wire::{ethernet, mac_at};

/// A broadcast or multicast frame of network `net` (index), to copy to the
/// network's other local ports and, when `tunnels`, to every other host with
/// ports on it (head-end replication). With `only`, an address inside allowed
/// address pairs: only to the ports whose pairs cover it (and the hosts of
/// such ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood {
    pub net: u32,
    pub tunnels: bool,
    pub only: Option<IpAddr>,
}

/// Where one copy of a flooded frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Port(u16),
    Host(u16),
}

/// The copies of a flooded frame that came in on `in_port`.
pub fn flood_targets(
    snap: &Snapshot,
    fl: Flood,
    in_port: u16,
) -> impl Iterator<Item = Target> + '_ {
    let net = snap.net(fl.net);
    let all = net.filter(|_| fl.only.is_none());
    let local = all
        .into_iter()
        .flat_map(|n| n.local_ports.iter())
        .filter(move |&&p| p != in_port)
        .map(|&p| Target::Port(p));
    let remote = all
        .filter(|_| fl.tunnels)
        .into_iter()
        .flat_map(|n| n.remote_hosts.iter())
        .map(|&h| Target::Host(h));
    // The VIP entries are sorted by where their port is: a port (or host)
    // with several covering pairs gets one copy.
    let vips = net
        .zip(fl.only)
        .into_iter()
        .flat_map(|(n, ip)| n.vips_of(ip))
        .filter_map(move |v| match v.dest {
            Dest::Local(p) if p != in_port => Some(Target::Port(p)),
            Dest::Remote(h) if fl.tunnels => Some(Target::Host(h)),
            _ => None,
        })
        .scan(None, |prev, t| {
            let first = *prev != Some(t);
            *prev = Some(t);
            Some(first.then_some(t))
        })
        .flatten();
    local.chain(remote).chain(vips)
}

/// Encapsulates a copy of a flooded frame of network `net` toward host `h`.
pub fn encap_copy(snap: &Snapshot, net: u32, h: u16, f: &mut Frame) -> Verdict {
    let n = snap.net(net).ok_or(R::Dangling)?;
    overlay(snap, Segment::of(n), &n.name, h, f, &mut NoTrace)
}

pub(super) fn flood<T: Trace>(net: u32, tunnels: bool, t: &mut T) -> D {
    tr!(
        t,
        "switch",
        "broadcast / multicast: flooded to the network's local ports{}",
        if tunnels {
            " and, head-end replicated, to its other hosts"
        } else {
            ""
        }
    );
    D::Flood {
        net,
        tunnels,
        vip: false,
        why: None,
    }
}

/// Floods a request for `ip`, an address inside allowed address pairs, to
/// the ports whose pairs cover it (and, when `tunnels`, to their hosts); a
/// frame routed to `ip` turned into that request is counted under `why`.
pub(super) fn flood_vip<T: Trace>(
    env: &mut Env,
    net: u32,
    tunnels: bool,
    ip: IpAddr,
    why: Option<DropReason>,
    t: &mut T,
) -> D {
    tr!(
        t,
        "switch",
        "{ip} is inside allowed address pairs: to the ports whose pairs cover it"
    );
    env.flood_vip = Some(ip);
    D::Flood {
        net,
        tunnels,
        vip: true,
        why,
    }
}

/// A unicast frame from VM port `in_port` on network `net` (ethertype
/// `et`), past port security and the responder: its destination MAC in the
/// network's FDB. To a local port or another host as it is (an IPv4 flow
/// offered to the flow cache), to a router interface routed.
#[inline(always)]
pub(super) fn switch<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    net: &NetTables,
    in_port: u16,
    et: u16,
    f: &mut Frame,
    t: &mut T,
) -> D {
    let b = f.data();
    let dst = MacAddr(mac_at(b, ethernet::field::DST.start));
    match net.fdb.get(dst.key()) {
        Some(Dest::Local(p)) if p == in_port => D::Drop(R::SameIngressPort),
        Some(Dest::Local(p)) => {
            tr!(t, "switch", "{dst} is {}", super::port_label(snap, p));
            if !T::ON && et == ethernet::ETHERTYPE_IPV4 {
                env.flows.offer(switched(net, Out::Port(p)));
            }
            D::Forward(p)
        }
        Some(Dest::Remote(h)) => {
            tr!(t, "switch", "{dst} is on host {}", host_name(snap, h));
            if !T::ON && et == ethernet::ETHERTYPE_IPV4 {
                env.flows.offer(switched(net, host_out(h, net)));
            }
            encap(snap, net, h, f, t)
        }
        Some(Dest::Router { router, iface }) => {
            tr!(
                t,
                "switch",
                "{dst} is {}",
                super::router_label(snap, router, iface)
            );
            route(snap, env, router, iface, in_port, f, t)
        }
        Some(Dest::Nowhere) | None => {
            tr!(t, "switch", "{dst} is not in network {}", net.name);
            D::Drop(R::UnknownDstMac)
        }
    }
}
