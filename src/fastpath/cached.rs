//! The flow cache's way ([`super::flow`]): a frame from a VM port of a flow
//! the whole pipeline routed or switched on this snapshot takes the cached
//! outcome, its per-frame checks made again; what the pipeline offers the
//! cache when it decides a frame (`switched`, `offer_routed`).

use super::flow::{self, Action, Out};
use crate::pipeline::encap::{overlay, Segment};
use crate::pipeline::port_security::dhcp_server4;
use crate::pipeline::route::{expires4, ipv4_valid, Egress};
use crate::pipeline::{Disposition, Env, NoTrace, Verdict};
use crate::pkt::{Frame, InPlace};
use crate::tables::{Dest, NetTables, Snapshot};
use crate::wire::checksum::ipv4_header_sum_ok;
use crate::wire::{be16, ethernet, ipv4};

/// A frame of a cached flow; routed: the per-frame checks of [`route4`] (IPv4
/// header, TTL, MTU), then the cached rewrite; then the cached way out (an
/// overlay checks its MTU). `None` when a check fails: the full pipeline then
/// decides.
#[inline(always)]
pub(crate) fn cached(snap: &Snapshot, a: Action, f: &mut Frame) -> Option<Verdict> {
    if f.data()
        .get(ethernet::HEADER_LEN..)
        .is_some_and(dhcp_server4)
    {
        return None;
    }
    if a.routed {
        ipv4_valid(f).ok()?;
        let b = f.data_mut();
        let ip = &mut b[ethernet::HEADER_LEN..];
        if expires4(ip[ipv4::field::TTL]) || be16(ip, ipv4::field::LENGTH.start) > a.mtu {
            return None;
        }
        ipv4::dec_ttl(ip);
        b[ethernet::field::MACS].copy_from_slice(&a.macs);
    }
    Some(cached_out(snap, a, f))
}

/// The common case of a routed frame of a cached flow ([`fast`]; [`cached`]
/// takes any frame), checked and rewritten in place in its bytes `b`: a
/// 20-byte IPv4 header with a valid checksum,
/// exactly as long as the frame (no padding to trim), TTL above 1, within the
/// MTU; then the TTL and checksum, and the cached MACs. `false`, with nothing
/// written, for any other frame.
#[inline(always)]
fn routed_in_place(a: &Action, b: &mut [u8]) -> bool {
    let Some((eth, ip)) = b.split_at_mut_checked(ethernet::HEADER_LEN) else {
        return false;
    };
    // The common case of ipv4::validate read straight from the fixed
    // header (one byte for version and header length): measured, the view's
    // checks cost this way 3 to 4% per frame.
    let ip_len = ip.len();
    let Some(h) = ip.first_chunk_mut::<{ ipv4::HEADER_LEN }>() else {
        return false;
    };
    let total = usize::from(be16(h, ipv4::field::LENGTH.start));
    if h[ipv4::field::VER_IHL] != 0x45
        || total != ip_len
        || expires4(h[ipv4::field::TTL])
        || total > a.mtu as usize
        || !ipv4_header_sum_ok(h)
    {
        return false;
    }
    ipv4::dec_ttl(h);
    eth[ethernet::field::MACS].copy_from_slice(&a.macs);
    true
}

/// The cached way out of a frame already checked and rewritten.
#[inline(always)]
fn cached_out<P: InPlace>(snap: &Snapshot, a: Action, f: &mut P) -> Verdict {
    match a.out {
        Out::Port(p) => Ok(p),
        Out::Host {
            host,
            kind,
            segment,
        } => {
            let seg = Segment {
                kind,
                segment,
                mtu: a.mtu,
            };
            overlay(snap, seg, "", host, f, &mut NoTrace)
        }
    }
}

/// A frame from a VM port whose flow key `k` and set `set` the worker
/// computed ahead ([`FlowCache::key`](super::flow::FlowCache::key), [`FlowCache::set_of`](super::flow::FlowCache::set_of)): a flow
/// cached on this snapshot, and a frame needing nothing but its rewrite (see
/// `routed_in_place`), is decided here where it lies, without a
/// [`Frame`]: rewritten, and encapsulated if it leaves over the overlay.
/// `None`, with nothing written, for any other frame: the whole pipeline
/// ([`crate::pipeline::process_from`]) then decides, and it decides the same for the frames
/// decided here. The caller counts the hits (`env.flows.hits`), a burst at
/// a time.
#[inline(always)]
pub fn fast<P: InPlace>(
    snap: &Snapshot,
    env: &Env,
    k: &flow::Key,
    set: usize,
    p: &mut P,
) -> Option<Disposition> {
    let &a = env.flows.peek(snap.epoch, k, set)?;
    let b = p.bytes()?;
    // Port security's checks the key cannot hold: the whole pipeline judges.
    if b.get(ethernet::HEADER_LEN..).is_some_and(dhcp_server4) {
        return None;
    }
    if a.routed && !routed_in_place(&a, b) {
        return None;
    }
    Some(Disposition::plain(cached_out(snap, a, p)))
}

/// Where the flow cache sends a frame for host `h` over `net`'s overlay.
#[inline(always)]
pub(crate) fn host_out(h: u16, net: &NetTables) -> Out {
    Out::Host {
        host: h,
        kind: net.kind,
        segment: net.segment,
    }
}

/// The flow cache's action for an IPv4 frame switched on `net` to `out`
/// (its key holds all that port security and the FDB read of it, but the
/// DHCP server check, which [`fast`] and [`cached`] make on each frame).
#[inline(always)]
pub(crate) fn switched(net: &NetTables, out: Out) -> Action {
    Action {
        routed: false,
        macs: [0; 12],
        mtu: net.mtu,
        out,
    }
}

/// Offers the flow cache what [`deliver_routed`] does with `eg` (kept if the
/// frame is forwarded and came from a VM port: see [`FlowCache::offer`]).
#[inline(always)]
pub(crate) fn offer_routed(snap: &Snapshot, env: &mut Env, net: &NetTables, eg: &Egress<'_>) {
    let (src, out) = match eg.dest {
        Dest::Local(p) => (eg.iface.mac, Out::Port(p)),
        Dest::Remote(h) => match snap.node.dvr_mac {
            Some(dvr) => (dvr, host_out(h, net)),
            None => return,
        },
        Dest::Nowhere | Dest::Router { .. } => return,
    };
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&eg.mac.0);
    macs[6..].copy_from_slice(&src.0);
    env.flows.offer(Action {
        routed: true,
        macs,
        mtu: net.mtu,
        out,
    });
}
