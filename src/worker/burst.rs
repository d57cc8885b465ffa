//! Deciding a burst: one loop ([`decide_burst`]) over the frames of a burst
//! from one port, and a [`Way`] for each kind of ingress that says what is
//! worked out ahead of each frame and how a frame is decided (the fast
//! paths of [`crate::fastpath`], else the whole pipeline).

use crate::fastpath::{self, flow};
use crate::l2::DROP;
use crate::pipeline::{self, Disposition, Env, NoTrace};
use crate::punt::Exchange;
use crate::stats::{DropReason, WorkerCounters};
use crate::sys::{FramePkt, Frames, MAX_BURST};
use crate::tables::Snapshot;

/// How many frames ahead of the one being decided a VM port's burst works
/// out flow keys and fetches their cache sets.
pub(super) const FLOW_AHEAD: usize = 8;

/// The output burst index of a frame to send out of `port`, or [`DROP`]
/// (counted) when this worker has no queue there.
#[inline(always)]
fn out_to(c: &WorkerCounters, tx_mask: u64, port: u16) -> u16 {
    if port < 64 && tx_mask & (1u64 << port) != 0 {
        port
    } else {
        c.drop(DropReason::NoTxQueue, 1);
        DROP
    }
}

/// The output burst index of a disposition other than a flood ([`BurstCtx::whole`]
/// takes those), or [`DROP`] with the reason counted; an answer is counted
/// under its reason too.
#[inline(always)]
fn output(c: &WorkerCounters, tx_mask: u64, d: Disposition) -> u16 {
    match d {
        Disposition::Forward(p) => out_to(c, tx_mask, p),
        Disposition::Answered { port, why } => {
            c.drop(why, 1);
            out_to(c, tx_mask, port)
        }
        Disposition::Drop(r) => {
            c.drop(r, 1);
            DROP
        }
        Disposition::Punt(k) => {
            c.drop(k.counter(), 1);
            DROP
        }
        // Only the whole pipeline floods.
        Disposition::Flood { .. } => {
            c.drop(DropReason::NoTxQueue, 1);
            DROP
        }
    }
}

/// What deciding the frames of one burst takes.
pub struct BurstCtx<'a> {
    pub(super) snap: &'a Snapshot,
    pub(super) env: &'a mut Env,
    pub(super) c: &'a WorkerCounters,
    pub(super) tx_mask: u64,
    pub(super) exchange: &'a Exchange,
    /// The index of the flood burst (after the ports').
    pub(super) flood_out: u16,
    pub(super) floods: &'a mut Vec<pipeline::Flood>,
    pub(super) ing: pipeline::Ingress<'a>,
    pub(super) in_port: u16,
    pub(super) rx_bytes: u64,
    /// Frames the flow cache decided ([`BurstCtx::fast`]).
    pub(super) hits: u64,
    /// Frames the decap way and the SNAT way decided ([`BurstCtx::decap`],
    /// [`BurstCtx::snat`]).
    pub(super) decaps: u64,
    pub(super) snats: u64,
    /// The worker deciding (for a live trace's entries).
    pub(super) worker: u16,
}

/// What the ways of a burst work out ahead of deciding its frames: a VM
/// port's flow keys and cache sets, an underlay port's SNAT ways. Kept from
/// burst to burst (allocated once).
pub struct Ahead {
    keys: [Option<(flow::Key, usize)>; MAX_BURST],
    ways: [Option<fastpath::SnatWay>; MAX_BURST],
}

impl Default for Ahead {
    fn default() -> Self {
        Ahead {
            keys: [None; MAX_BURST],
            ways: [None; MAX_BURST],
        }
    }
}

impl<'a> BurstCtx<'a> {
    /// What deciding a burst from `in_port` takes: the snapshot, the
    /// worker's environment and counters, the exchange with the control
    /// thread; the ports it has a queue on (`tx_mask`, bit p for port p), the
    /// index of its flood burst and the floods' list.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        snap: &'a Snapshot,
        env: &'a mut Env,
        c: &'a WorkerCounters,
        exchange: &'a Exchange,
        in_port: u16,
        tx_mask: u64,
        flood_out: u16,
        floods: &'a mut Vec<pipeline::Flood>,
    ) -> Self {
        BurstCtx {
            snap,
            env,
            c,
            tx_mask,
            exchange,
            flood_out,
            floods,
            ing: pipeline::ingress(snap, in_port),
            in_port,
            rx_bytes: 0,
            hits: 0,
            decaps: 0,
            snats: 0,
            worker: 0,
        }
    }

    /// Decides the frames of burst `rx` (as many as `to` and `lens` are
    /// long) the way of their ingress ([`Way`]): frame `i` goes to `to[i]`
    /// (an output burst index, or [`DROP`]), `lens[i]` bytes long then.
    #[inline(always)]
    pub fn decide(
        &mut self,
        ahead: &mut Ahead,
        rx: &mut impl Frames,
        to: &mut [u16],
        lens: &mut [u32],
    ) {
        let n = to.len().min(lens.len());
        let (to, lens) = (&mut to[..n], &mut lens[..n]);
        // A live trace armed for this port (one load a burst): the burst
        // takes the whole pipeline, its marked frames with a recorder.
        if self.exchange.trace.armed_for(self.in_port) {
            decide_burst(Traced, self, rx, to, lens);
            return;
        }
        let snap = self.snap;
        match self.ing {
            pipeline::Ingress::Static => {
                decide_burst(Static(snap.static_fdb()), self, rx, to, lens);
            }
            pipeline::Ingress::Vm(vm, _) => {
                let way = FromVm {
                    port: vm.index,
                    keys: &mut ahead.keys[..n],
                };
                decide_burst(way, self, rx, to, lens);
            }
            pipeline::Ingress::Underlay if self.env.snat_here() => {
                let way = SnatUnderlay {
                    ways: &mut ahead.ways[..n],
                };
                decide_burst(way, self, rx, to, lens);
            }
            pipeline::Ingress::Underlay => decide_burst(Underlay, self, rx, to, lens),
            _ => {
                let way = Whole {
                    prefetch: self.env.snat_here(),
                };
                decide_burst(way, self, rx, to, lens);
            }
        }
    }
}

impl BurstCtx<'_> {
    /// A frame from a VM port with its flow key and cache set: the flow
    /// cache's way ([`fastpath::fast`]) when it has one, else the whole
    /// pipeline. Where it goes, and its length then.
    #[inline(always)]
    fn fast(&mut self, k: &flow::Key, set: usize, mut pkt: impl FramePkt) -> (u16, u32) {
        self.rx_bytes += pkt.len() as u64;
        let Some(d) = fastpath::fast(self.snap, self.env, k, set, &mut pkt) else {
            return self.whole(pkt);
        };
        self.hits += 1;
        (output(self.c, self.tx_mask, d), pkt.len())
    }

    /// A frame from the underlay that [`fastpath::snat_way`] found `w` for:
    /// finished that way ([`fastpath::snat_apply`]). Where it goes, and its
    /// length then.
    #[inline(always)]
    fn snat(&mut self, w: &fastpath::SnatWay, pkt: impl FramePkt) -> (u16, u32) {
        let (to, took) = self.finish(pkt, |env, f| fastpath::snat_apply(env, w, f));
        self.snats += took as u64;
        to
    }

    /// A frame from the underlay that [`fastpath::decap_way`] found `w` for:
    /// finished that way ([`fastpath::decap_apply`]). Where it goes, and its
    /// length then.
    #[inline(always)]
    fn decap(&mut self, w: &fastpath::DecapWay, pkt: impl FramePkt) -> (u16, u32) {
        let (to, took) = self.finish(pkt, |_, f| fastpath::decap_apply(w, f));
        self.decaps += took as u64;
        to
    }

    /// A frame a way found out about, finished by `apply` (counted as
    /// received), or by the whole pipeline when `apply` leaves it: where it
    /// goes, and its length then; and whether `apply` took it.
    #[inline(always)]
    fn finish(
        &mut self,
        mut pkt: impl FramePkt,
        apply: impl FnOnce(&mut Env, &mut crate::pkt::Frame) -> Option<Disposition>,
    ) -> ((u16, u32), bool) {
        self.rx_bytes += pkt.len() as u64;
        let env = &mut *self.env;
        let d = pkt.frame(|f| match f {
            Some(f) => apply(env, f),
            None => Some(Disposition::Drop(DropReason::MultiSegment)),
        });
        match d {
            Some(d) => ((output(self.c, self.tx_mask, d), pkt.len()), true),
            None => (self.whole(pkt), false),
        }
    }

    /// Frame `i` of an underlay port's burst (and not for the SNAT here): a
    /// frame from another host for a port here, switched or routed there,
    /// takes its decap way ([`fastpath::decap_way`]); any other one the whole
    /// pipeline.
    #[inline(always)]
    fn underlay(&mut self, rx: &mut impl Frames, i: usize) -> (u16, u32) {
        let w = if rx.nb_segs(i) == 1 {
            fastpath::decap_way(self.snap, &mut self.env.decap_memo, rx.data(i))
        } else {
            None
        };
        match &w {
            Some(w) => self.decap(w, rx.pkt(i)),
            None => self.slow(rx.pkt(i)),
        }
    }

    /// A frame through the whole pipeline (counted as received).
    #[inline(always)]
    fn slow(&mut self, pkt: impl FramePkt) -> (u16, u32) {
        self.rx_bytes += pkt.len() as u64;
        self.whole(pkt)
    }

    /// A frame through the whole pipeline: where it goes, and its length
    /// then.
    #[inline(always)]
    fn whole(&mut self, pkt: impl FramePkt) -> (u16, u32) {
        let (to, len, _) = self.whole_with(pkt, &mut NoTrace);
        (to, len)
    }

    /// A frame a live trace marked, through the whole pipeline with a
    /// recorder; its entry goes to the control thread (lost if the queue is
    /// full: `trace add` marks no more than it holds).
    #[cold]
    fn traced(&mut self, mut pkt: impl FramePkt, seq: u64) -> (u16, u32) {
        use super::trace::{Recorder, TraceEntry, TRACE_HEAD};
        self.rx_bytes += pkt.len() as u64;
        let mut e = TraceEntry::new();
        e.seq = seq;
        e.worker = self.worker;
        e.port = self.in_port;
        e.len = pkt.len();
        pkt.frame(|f| {
            if let Some(f) = f {
                let n = f.len().min(TRACE_HEAD);
                e.head[..n].copy_from_slice(&f.data()[..n]);
                e.head_len = n as u16;
            }
        });
        let (to, len, d) = self.whole_with(pkt, &mut Recorder(&mut e));
        e.disposition = d;
        let _ = self.exchange.trace.entries.push(e);
        (to, len)
    }

    /// [`BurstCtx::whole`] with tracer `t`; also the disposition.
    #[inline(always)]
    fn whole_with<T: pipeline::Trace>(
        &mut self,
        mut pkt: impl FramePkt,
        t: &mut T,
    ) -> (u16, u32, Disposition) {
        let d = pkt.frame(|frame| match frame {
            None => Disposition::Drop(DropReason::MultiSegment),
            Some(f) => {
                let d = pipeline::process_from(self.snap, self.env, self.ing, self.in_port, f, t);
                if let Some(n) = self.env.vip.take() {
                    // Full: the holder announces itself again (keepalived
                    // repeats its gratuitous ARPs).
                    let _ = self.exchange.vips.push(n);
                }
                if d == Disposition::Punt(pipeline::PuntKind::Metadata) {
                    // Copied into the proxy's queue; full: the VM's TCP
                    // sends it again.
                    return self
                        .exchange
                        .punt_metadata(self.env.metadata_note.take(), f.data());
                }
                d
            }
        });
        let to = match d {
            Disposition::Flood { why, .. } => {
                if let Some(r) = why {
                    self.c.drop(r, 1);
                }
                // A flood's replication: always `Some` here.
                self.floods.extend(self.env.flood_of(d));
                self.flood_out
            }
            Disposition::Punt(pipeline::PuntKind::ArpReply) => {
                if let Some(x) = self.env.learned.take() {
                    let _ = self.exchange.learned.push(x);
                }
                output(self.c, self.tx_mask, d)
            }
            d => output(self.c, self.tx_mask, d),
        };
        (to, pkt.len(), d)
    }
}

/// What differs between the bursts of the kinds of ingress: what is worked
/// out for a frame ahead of deciding it, and how far ahead; then how a frame
/// is decided. One loop runs them all ([`decide_burst`]), compiled once for
/// each.
pub(super) trait Way {
    /// How many frames ahead of the one being decided [`Way::ahead`] runs:
    /// 0, nothing is worked out ahead; the burst's length or more, all of
    /// it before the first frame is decided.
    #[inline(always)]
    fn lead(&self) -> usize {
        0
    }

    /// Works out what deciding frame `i` will take (its flow key and cache
    /// set, its SNAT way), prefetching it.
    #[inline(always)]
    fn ahead(&mut self, _b: &mut BurstCtx<'_>, _rx: &impl Frames, _i: usize) {}

    /// Once [`Way::ahead`] ran on the first `lead` frames: called once per
    /// frame of the burst (`n`), for what they prefetched in two stages.
    #[inline(always)]
    fn led(&mut self, _b: &mut BurstCtx<'_>, _n: usize) {}

    /// Decides frame `i`: where it goes (an output burst index, or
    /// [`DROP`]), and its length then.
    fn decide(&mut self, b: &mut BurstCtx<'_>, rx: &mut impl Frames, i: usize) -> (u16, u32);
}

/// Decides the `n` frames of burst `rx` (`n`: the length of `to` and `lens`)
/// the way `w` does: frame `i` goes to `to[i]`, `lens[i]` bytes long.
#[inline(always)]
pub(super) fn decide_burst<W: Way>(
    mut w: W,
    b: &mut BurstCtx<'_>,
    rx: &mut impl Frames,
    to: &mut [u16],
    lens: &mut [u32],
) {
    let n = to.len().min(lens.len());
    let lead = w.lead().min(n);
    for i in 0..lead {
        w.ahead(b, rx, i);
    }
    if lead != 0 {
        w.led(b, n);
    }
    for i in 0..n {
        if lead != 0 && i + lead < n {
            w.ahead(b, rx, i + lead);
        }
        (to[i], lens[i]) = w.decide(b, rx, i);
    }
}

/// A VM port no model port is bound to: the configuration's static table,
/// which only reads the frame.
pub(super) struct Static<'s>(pub(super) &'s crate::l2::MacTable);

impl Way for Static<'_> {
    #[inline(always)]
    fn decide(&mut self, b: &mut BurstCtx<'_>, rx: &mut impl Frames, i: usize) -> (u16, u32) {
        let len = rx.pkt_len(i);
        b.rx_bytes += len as u64;
        let d = if rx.nb_segs(i) != 1 {
            Disposition::Drop(DropReason::MultiSegment)
        } else {
            Disposition::plain(crate::l2::classify(self.0, b.in_port, rx.data(i)))
        };
        (output(b.c, b.tx_mask, d), len)
    }
}

/// A VM port's burst: each frame's flow key and cache set are worked out
/// [`FLOW_AHEAD`] frames before it is decided (its set is fetched
/// meanwhile); a frame of a cached flow takes the flow cache's way.
pub(super) struct FromVm<'k> {
    /// The VM port (its index: what the flow keys hold).
    pub(super) port: u16,
    pub(super) keys: &'k mut [Option<(flow::Key, usize)>],
}

impl Way for FromVm<'_> {
    #[inline(always)]
    fn lead(&self) -> usize {
        FLOW_AHEAD
    }

    #[inline(always)]
    fn ahead(&mut self, b: &mut BurstCtx<'_>, rx: &impl Frames, i: usize) {
        let flows = &b.env.flows;
        let k = flow::FlowCache::key(self.port, rx.data(i)).map(|k| {
            let set = flows.set_of(&k);
            flows.prefetch_set(set);
            (k, set)
        });
        if let Some(slot) = self.keys.get_mut(i) {
            *slot = k;
        }
    }

    #[inline(always)]
    fn decide(&mut self, b: &mut BurstCtx<'_>, rx: &mut impl Frames, i: usize) -> (u16, u32) {
        let pkt = rx.pkt(i);
        match self.keys.get(i) {
            Some(Some((k, set))) => b.fast(k, *set, pkt),
            _ => b.slow(pkt),
        }
    }
}

/// An underlay port's burst on a node with a router's SNAT here: each
/// frame's SNAT way worked out (read-only) and its session's lookup
/// prefetched, for the whole burst; then the frames finished in order, a
/// frame with no SNAT way as on any other node ([`Underlay`]).
pub(super) struct SnatUnderlay<'w> {
    pub(super) ways: &'w mut [Option<fastpath::SnatWay>],
}

impl Way for SnatUnderlay<'_> {
    #[inline(always)]
    fn lead(&self) -> usize {
        usize::MAX
    }

    #[inline(always)]
    fn ahead(&mut self, b: &mut BurstCtx<'_>, rx: &impl Frames, i: usize) {
        let Some(w) = self.ways.get_mut(i) else {
            return;
        };
        let data = rx.data(i);
        *w = if rx.nb_segs(i) == 1 {
            fastpath::snat_way(b.snap, &mut b.env.snat_memo, data)
        } else {
            None
        };
        match w {
            Some(w) => b.env.nat.prefetch_lookup(&w.look()),
            None => fastpath::prefetch_nat(b.snap, b.env, b.ing, data),
        }
    }

    #[inline(always)]
    fn led(&mut self, b: &mut BurstCtx<'_>, n: usize) {
        for _ in 0..n {
            fastpath::prefetch_nat_next(b.env);
        }
    }

    #[inline(always)]
    fn decide(&mut self, b: &mut BurstCtx<'_>, rx: &mut impl Frames, i: usize) -> (u16, u32) {
        match self.ways.get(i) {
            Some(Some(w)) => b.snat(w, rx.pkt(i)),
            _ => b.underlay(rx, i),
        }
    }
}

/// An underlay port's burst on a node with no SNAT here: each frame takes
/// its decap way, or the whole pipeline.
pub(super) struct Underlay;

impl Way for Underlay {
    #[inline(always)]
    fn decide(&mut self, b: &mut BurstCtx<'_>, rx: &mut impl Frames, i: usize) -> (u16, u32) {
        b.underlay(rx, i)
    }
}

/// A burst from a port a live trace is armed for: every frame through the
/// whole pipeline, the marked ones with a recorder ([`BurstCtx::traced`]).
pub(super) struct Traced;

impl Way for Traced {
    fn decide(&mut self, b: &mut BurstCtx<'_>, rx: &mut impl Frames, i: usize) -> (u16, u32) {
        match b.exchange.trace.take(b.in_port) {
            Some(seq) => b.traced(rx.pkt(i), seq),
            None => b.slow(rx.pkt(i)),
        }
    }
}

/// Any other burst (the external port, a bound VM port whose network is
/// gone): the whole pipeline; with `prefetch` (a router's SNAT here), the
/// SNAT's lookups of the whole burst prefetched ahead of it, in two stages.
pub(super) struct Whole {
    pub(super) prefetch: bool,
}

impl Way for Whole {
    #[inline(always)]
    fn lead(&self) -> usize {
        if self.prefetch {
            usize::MAX
        } else {
            0
        }
    }

    #[inline(always)]
    fn ahead(&mut self, b: &mut BurstCtx<'_>, rx: &impl Frames, i: usize) {
        fastpath::prefetch_nat(b.snap, b.env, b.ing, rx.data(i));
    }

    #[inline(always)]
    fn led(&mut self, b: &mut BurstCtx<'_>, n: usize) {
        for _ in 0..n {
            fastpath::prefetch_nat_next(b.env);
        }
    }

    #[inline(always)]
    fn decide(&mut self, b: &mut BurstCtx<'_>, rx: &mut impl Frames, i: usize) -> (u16, u32) {
        b.slow(rx.pkt(i))
    }
}
