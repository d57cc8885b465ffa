//! A worker: one pinned thread that polls its (port, queue) pairs in bursts, runs
//! the pipeline over each burst, and transmits, grouped by output port.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::PollMode;
use crate::l2::DROP;
use crate::nat::NatConfig;
use crate::pipeline::{self, Env};
use crate::punt::{Exchange, Question, SessionAnswer, SESSIONS_MAX};
use crate::stats::{DropReason, WorkerCounters};
use crate::sys::{self, Burst, Mbuf, Mempool, RxQueue, TxQueue};
use crate::tables::{Slot, Tables};

pub mod burst;
pub mod capture;
pub mod desk;
pub mod handoff;
pub mod trace;

use burst::{Ahead, BurstCtx};
use desk::{Desk, PortChange, Released};
use handoff::{Handoff, Owner, Side};

/// Empty polls before an adaptive worker starts to back off, and the longest sleep.
const IDLE_POLLS_BEFORE_PAUSE: u32 = 64;
const IDLE_POLLS_BEFORE_SLEEP: u32 = 1024;
const MAX_SLEEP: Duration = Duration::from_micros(500);
/// Bursts a worker still polls per queue after the stop signal (drain).
const DRAIN_BURSTS: usize = 64;

/// What a worker owns.
pub struct Worker {
    pub index: usize,
    /// RX queues with the index of their port.
    pub rx: Vec<(u16, RxQueue)>,
    /// One TX queue per port index (None: the port has no queue for this worker).
    pub tx: Vec<Option<TxQueue>>,
    /// The published tables; loaded once per burst.
    pub tables: Arc<Tables>,
    pub counters: Arc<WorkerCounters>,
    pub burst: usize,
    pub poll_mode: PollMode,
    pub stop: Arc<AtomicBool>,
    /// What the workers hand to the control thread and take from it.
    pub exchange: Arc<Exchange>,
    /// For the frames the control thread injects.
    pub pool: Arc<Mempool>,
    /// This worker's SNAT table and its share of the translated ports.
    pub nat: NatConfig,
    pub nat_ports: RangeInclusive<u16>,
    /// Where the control thread hands this worker ports to poll and takes
    /// them back (`desk`): taken between two polls.
    pub desk: Arc<Desk>,
    /// With several workers: the rings to hand a frame to the worker that
    /// owns its SNAT session ([`handoff`]).
    pub handoff: Option<Arc<Handoff>>,
}

/// Share `i` of `n` of a port range (the workers' SNAT tables never hand out
/// the same port): consecutive slices, the last one takes the remainder.
pub fn port_share(range: &RangeInclusive<u16>, i: usize, n: usize) -> RangeInclusive<u16> {
    let (lo, hi) = (*range.start() as usize, *range.end() as usize);
    let n = n.clamp(1, hi - lo + 1);
    let i = i.min(n - 1);
    let size = (hi - lo + 1) / n;
    let start = lo + i * size;
    let end = if i == n - 1 { hi } else { start + size - 1 };
    start as u16..=end as u16
}

/// SNAT table slots an expiry sweep looks at per burst.
const EXPIRE_PER_BURST: usize = 64;
/// With no traffic, idle SNAT sessions still go: every `IDLE_EXPIRE_POLLS`
/// empty polls, a sweep of `EXPIRE_WHEN_IDLE` slots: a default table of 64k
/// in 16 sweeps, about half a second when the worker sleeps its longest
/// (`MAX_SLEEP` between polls), a 1M table in about eight seconds.
const IDLE_EXPIRE_POLLS: u32 = 64;
const EXPIRE_WHEN_IDLE: usize = 4096;

/// SNAT table slots a worker scans per poll to answer `dvr-ctl show
/// sessions` (512 KiB of slots: tens of microseconds between two bursts).
const SESSION_SCAN_SLOTS: usize = 16384;

/// A question about the SNAT sessions being answered, a part of the table
/// per poll.
struct Scan {
    q: Question,
    /// The next slot to look at.
    next: usize,
    total: u64,
    found: Vec<crate::nat::SessionView>,
}

/// Polls between two reads of the TSC.
const CLOCK_POLLS: u32 = 1024;

/// One poll in this many is timed in parts (receive calls, transmit calls,
/// the whole; `WorkerCounters::sampled_cycles`): a few TSC reads a burst,
/// for one burst in 16.
pub const SAMPLE_POLLS: u32 = 16;
const _: () = assert!(CLOCK_POLLS.is_multiple_of(SAMPLE_POLLS));

/// The TSC if this poll is sampled ([`SAMPLE_POLLS`]), else 0.
#[inline(always)]
fn lap(sampled: bool) -> u64 {
    if sampled {
        sys::rdtsc()
    } else {
        0
    }
}

/// Accounts the TSC cycles a worker spends polling, reading the TSC rarely.
struct Clock {
    since: u64,
    polls: u32,
}

impl Clock {
    fn start() -> Self {
        Clock {
            since: sys::rdtsc(),
            polls: 0,
        }
    }

    #[inline(always)]
    fn tick(&mut self, c: &WorkerCounters) {
        self.polls += 1;
        if self.polls == CLOCK_POLLS {
            self.flush(c);
        }
    }

    fn flush(&mut self, c: &WorkerCounters) {
        let now = sys::rdtsc();
        c.poll_cycles.add(now.wrapping_sub(self.since));
        c.polls.add(self.polls as u64);
        self.since = now;
        self.polls = 0;
    }
}

/// Why a TX queue did not take frames: its port's link is down (a
/// vhost-user guest still booting, or gone), else the queue was full.
#[inline]
fn unsent(txq: &TxQueue) -> DropReason {
    if txq.port().link_known_down() {
        DropReason::TxLinkDown
    } else {
        DropReason::TxQueueFull
    }
}

/// Per-worker scratch space, allocated once before the loop.
struct Scratch {
    rx: Burst,
    /// One output burst per port, and one more (last) for frames to flood.
    outs: Vec<Burst>,
    /// Where each frame of the flood burst is to be replicated, in order.
    floods: Vec<pipeline::Flood>,
    /// Bytes queued in each of `outs`.
    out_bytes: Vec<u64>,
    drops: Burst,
    /// Where each frame of the burst goes (an index into `outs`, or [`DROP`]).
    to: [u16; sys::MAX_BURST],
    /// The length of each frame of the burst once decided.
    lens: [u32; sys::MAX_BURST],
    /// What the ways of a burst work out ahead.
    ahead: Ahead,
    /// Bit p set: port p has a TX queue for this worker.
    tx_mask: u64,
    env: Env,
    /// The number of the last session question answered, and the one being
    /// answered.
    answered: u32,
    scan: Option<Scan>,
    /// Works out which worker owns a frame (with a hand-off), and the
    /// frames of a burst going to each worker.
    owner: Option<Owner>,
    handing: Vec<Burst>,
}

impl Worker {
    /// Bit p set: port p has a TX queue for this worker (a node has at most
    /// `config::MAX_PORTS` = 64 ports).
    fn tx_mask(tx: &[Option<TxQueue>]) -> u64 {
        tx.iter()
            .take(64)
            .enumerate()
            .filter(|(_, q)| q.is_some())
            .fold(0, |m, (p, _)| m | 1 << p)
    }

    /// Runs until `stop` is set, then drains its RX queues (bounded) and returns.
    pub fn run(mut self) {
        let mut s = Scratch {
            rx: Burst::new(),
            outs: (0..=self.tx.len()).map(|_| Burst::new()).collect(),
            floods: Vec::with_capacity(sys::MAX_BURST),
            out_bytes: vec![0; self.tx.len()],
            tx_mask: Self::tx_mask(&self.tx),
            drops: Burst::new(),
            to: [DROP; sys::MAX_BURST],
            lens: [0; sys::MAX_BURST],
            ahead: Ahead::default(),
            env: Env::with_nat(sys::rdtsc, sys::tsc_hz(), self.nat, self.nat_ports.clone()),
            answered: 0,
            scan: None,
            owner: self
                .handoff
                .as_ref()
                .map(|h| Owner::new(self.index, h.workers(), h.ports())),
            handing: (0..self.handoff.as_ref().map_or(0, |h| h.workers()))
                .map(|_| Burst::new())
                .collect(),
        };
        // The metadata proxy's frames are intercepted only when it runs.
        s.env.metadata = self.exchange.metadata.is_some();
        let mut idle: u32 = 0;
        let mut empty_polls: u32 = 0;
        let mut sleep = Duration::from_micros(1);
        // The TSC is read once per CLOCK_POLLS polls, not per poll: on virtual
        // machines a TSC read can cost as much as a burst of packets.
        let mut clock = Clock::start();
        while !self.stop.load(Ordering::Relaxed) {
            let got = self.poll_once(&mut s, clock.polls.is_multiple_of(SAMPLE_POLLS));
            clock.tick(&self.counters);
            if got == 0 {
                empty_polls = empty_polls.wrapping_add(1);
                if empty_polls.is_multiple_of(IDLE_EXPIRE_POLLS) {
                    self.expire_idle(&mut s);
                }
            }
            if got > 0 || self.poll_mode == PollMode::Busy {
                idle = 0;
                sleep = Duration::from_micros(1);
                continue;
            }
            idle = idle.saturating_add(1);
            // Not while answering a question about the sessions: the scan
            // goes on at polling speed.
            if idle >= IDLE_POLLS_BEFORE_SLEEP && s.scan.is_none() {
                // Time asleep is not polling time.
                clock.flush(&self.counters);
                std::thread::sleep(sleep);
                clock = Clock::start();
                sleep = (sleep * 2).min(MAX_SLEEP);
            } else if idle >= IDLE_POLLS_BEFORE_PAUSE {
                std::hint::spin_loop();
            }
        }
        for _ in 0..DRAIN_BURSTS {
            let got = self.poll_once(&mut s, false);
            clock.tick(&self.counters);
            if got == 0 {
                break;
            }
        }
        clock.flush(&self.counters);
    }

    /// No packet for a while: a sweep of the SNAT table at the time now
    /// (bursts sweep it too, but only when packets come).
    #[cold]
    fn expire_idle(&self, s: &mut Scratch) {
        if !s.env.nat.is_empty() {
            s.env.expire_now(EXPIRE_WHEN_IDLE);
            self.counters.nat_sessions.set(s.env.nat.len() as u64);
        }
    }

    /// Sends what the control thread asked to be sent (rare: ARP requests).
    #[cold]
    fn inject(&mut self, s: &mut Scratch) {
        while let Some(x) = self.exchange.inject.pop() {
            self.send_one(s, x.port, x.frame());
        }
    }

    /// Sends the metadata proxy's segments to the VMs, each out of its VM's
    /// port.
    #[cold]
    fn inject_metadata(&mut self, s: &mut Scratch) {
        let ex = self.exchange.clone();
        let Some(m) = &ex.metadata else {
            return;
        };
        while let Some(x) = m.to_vms.pop() {
            self.send_one(s, x.port, x.frame());
        }
    }

    /// Sends one frame the control plane made out of `port` (a copy in a
    /// new mbuf), counting what cannot go.
    fn send_one(&mut self, s: &mut Scratch, port: u16, frame: &[u8]) {
        let c = &*self.counters;
        let Some(Some(txq)) = self.tx.get_mut(port as usize) else {
            c.drop(DropReason::NoTxQueue, 1);
            return;
        };
        let Ok(m) = Mbuf::from_frame(&self.pool, frame) else {
            c.drop(DropReason::NoMbuf, 1);
            return;
        };
        let out = &mut s.outs[port as usize];
        if m.push_to(out).is_err() {
            c.drop(DropReason::TxQueueFull, 1);
            return;
        }
        let r = txq.tx(out);
        let pc = &c.ports[port as usize];
        pc.tx_packets.add(r.sent);
        pc.tx_bytes.add(r.bytes);
        if r.dropped > 0 {
            c.drop(unsent(txq), r.dropped);
        }
    }

    /// Answers the control thread's question about the SNAT sessions, a part
    /// of the table per call (bounded work between bursts; the answer is
    /// allocated here, off the packet path).
    #[cold]
    fn sessions_step(&mut self, s: &mut Scratch, q: Question) {
        let scan = match &mut s.scan {
            Some(sc) if sc.q == q => sc,
            other => other.insert(Scan {
                q,
                next: 0,
                total: 0,
                found: Vec::new(),
            }),
        };
        let nat = &s.env.nat;
        let now = (s.env.now)();
        let end = (scan.next + SESSION_SCAN_SLOTS).min(nat.capacity());
        for v in nat.live_sessions(scan.next..end, now) {
            if q.router.is_some_and(|r| r != v.router) {
                continue;
            }
            scan.total += 1;
            if scan.found.len() < SESSIONS_MAX {
                scan.found.push(v);
            }
        }
        scan.next = end;
        if end < nat.capacity() {
            return;
        }
        let Some(sc) = s.scan.take() else { return };
        let answer = SessionAnswer {
            worker: self.index,
            number: q.number,
            total: sc.total,
            sessions: sc.found,
        };
        if !self.exchange.sessions.answer(answer) {
            tracing::warn!(
                worker = self.index,
                "session answer queue full: answer dropped"
            );
        }
        s.answered = q.number;
    }

    /// Copies each frame of the flood burst to its network's other local ports
    /// and, encapsulated, to its other hosts; the originals are freed.
    #[cold]
    fn replicate(
        c: &WorkerCounters,
        pool: &Mempool,
        nports: usize,
        snap: &crate::tables::Snapshot,
        in_port: u16,
        s: &mut Scratch,
    ) {
        let mut flood = std::mem::take(&mut s.outs[nports]);
        for (i, fl) in s.floods.drain(..).enumerate() {
            let data = flood.data(i);
            let mut copies = 0;
            for t in pipeline::flood_targets(snap, fl, in_port) {
                let Ok(mut m) = Mbuf::from_frame(pool, data) else {
                    c.drop(DropReason::NoMbuf, 1);
                    continue;
                };
                let out = match t {
                    pipeline::Target::Port(p) => Ok(p),
                    pipeline::Target::Host(h) => {
                        m.with_frame(|f| pipeline::encap_copy(snap, fl.net, h, f))
                    }
                };
                match out {
                    Ok(p) if s.tx_mask & (1u64 << (p & 63)) != 0 => {
                        let len = m.data().len() as u64;
                        if m.push_to(&mut s.outs[p as usize]).is_ok() {
                            s.out_bytes[p as usize] += len;
                            copies += 1;
                        } else {
                            c.drop(DropReason::TxQueueFull, 1);
                        }
                    }
                    Ok(_) => c.drop(DropReason::NoTxQueue, 1),
                    Err(r) => c.drop(r, 1),
                }
            }
            if copies == 0 {
                c.drop(DropReason::FloodNoMember, 1);
            }
        }
        flood.clear();
        s.outs[nports] = flood;
    }

    /// Takes the port changes waiting on the desk: queues of an added port
    /// to poll and transmit on, or a removed port's queues given back. Runs
    /// between two polls: no burst holds a frame for a port it lets go of
    /// (every output burst is sent at the end of its poll).
    #[cold]
    fn take_changes(&mut self, s: &mut Scratch) {
        while let Some(change) = self.desk.next() {
            match change {
                PortChange::Attach { port, rx, tx } => {
                    let p = port as usize;
                    if self.tx.len() <= p {
                        self.tx.resize_with(p + 1, || None);
                        // The flood burst stays the last one.
                        let flood = s.outs.pop().unwrap_or_default();
                        s.outs.resize_with(p + 1, Burst::new);
                        s.outs.push(flood);
                        s.out_bytes.resize(p + 1, 0);
                    }
                    self.tx[p] = tx;
                    self.rx.extend(rx.into_iter().map(|q| (port, q)));
                }
                PortChange::Detach { port } => {
                    let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.rx)
                        .into_iter()
                        .partition(|(p, _)| *p == port);
                    self.rx = kept;
                    let tx = self.tx.get_mut(port as usize).and_then(Option::take);
                    self.desk.give_back(Released {
                        port,
                        rx: gone.into_iter().map(|(_, q)| q).collect(),
                        tx,
                    });
                }
            }
            s.tx_mask = Self::tx_mask(&self.tx);
            self.desk.taken();
        }
    }

    /// Polls every RX queue once, then takes what other workers handed this
    /// one. Returns the packets received and taken. A `sampled` poll also
    /// counts its cycles: all of them, and those of its receive and transmit
    /// calls.
    #[inline]
    fn poll_once(&mut self, s: &mut Scratch, sampled: bool) -> usize {
        let start = lap(sampled);
        let (mut rx_cycles, mut tx_cycles) = (0u64, 0u64);
        if self.desk.pending() {
            self.take_changes(s);
        }
        if !self.exchange.inject.is_empty() {
            self.inject(s);
        }
        if let Some(q) = &self.exchange.metadata {
            if !q.to_vms.is_empty() {
                self.inject_metadata(s);
            }
        }
        if let Some(q) = self.exchange.sessions.pending(s.answered) {
            self.sessions_step(s, q);
        }
        let mut got = 0;
        let mut decided = 0;
        for qi in 0..self.rx.len() {
            let (in_port, q) = &mut self.rx[qi];
            let in_port = *in_port;
            let t = lap(sampled);
            let n = q.rx(&mut s.rx, self.burst);
            rx_cycles = rx_cycles.wrapping_add(lap(sampled).wrapping_sub(t));
            if n == 0 {
                continue;
            }
            got += n;
            // RCU read side: this burst uses this snapshot; dropping the guard
            // at the end of the burst lets a replaced snapshot be freed.
            let snap = self.tables.load();
            let c = &*self.counters;
            let pc = &c.ports[in_port as usize];
            pc.rx_packets.add(n as u64);
            if let Some(h) = &self.handoff {
                if !snap.snat_here.is_empty() {
                    pc.rx_bytes
                        .add(Self::hand_off(h, self.index, c, &snap, in_port, s));
                    if s.rx.is_empty() {
                        continue;
                    }
                }
            }
            decided += s.rx.len();
            self.forward(s, &snap, in_port, true, sampled, &mut tx_cycles);
        }
        if let Some(h) = self.handoff.clone() {
            if h.waiting(self.index) {
                let taken = self.take_handed(&h, s, sampled, &mut tx_cycles);
                got += taken;
                decided += taken;
            }
        }
        if got > 0 {
            let c = &*self.counters;
            c.busy_polls.add(1);
            c.packets.add(decided as u64);
            if sampled {
                c.sampled_packets.add(decided as u64);
                c.sampled_cycles.add(lap(true).wrapping_sub(start));
                c.sampled_rx_cycles.add(rx_cycles);
                c.sampled_tx_cycles.add(tx_cycles);
            }
        }
        got
    }

    /// Hands each frame of the burst in `s.rx` (from `in_port`) whose SNAT
    /// session another worker owns to that worker ([`handoff`]), a burst per
    /// worker; the others stay. Returns the bytes handed on (received here,
    /// decided there). Out of line, not cold: on a SNAT node with several
    /// workers every burst takes it.
    #[inline(never)]
    fn hand_off(
        h: &Handoff,
        me: usize,
        c: &WorkerCounters,
        snap: &crate::tables::Snapshot,
        in_port: u16,
        s: &mut Scratch,
    ) -> u64 {
        let side = match snap.ports.get(in_port as usize) {
            Some(Slot::Vm(_)) => Side::Vm,
            Some(Slot::Underlay) => Side::Underlay,
            Some(Slot::External) => Side::External,
            None => return 0,
        };
        let Some(owner) = s.owner.as_mut() else {
            return 0;
        };
        let mut bytes = 0u64;
        s.rx.split_off(
            |f| {
                let w = owner.of(snap, side, f)?;
                bytes += f.len() as u64;
                Some(w)
            },
            &mut s.handing,
        );
        for (w, b) in s.handing.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            let n = b.len() as u64;
            if h.send(me, w, in_port, std::mem::take(b)) {
                c.handoff_out.add(n);
            } else {
                c.drop(DropReason::HandoffFull, n);
            }
        }
        bytes
    }

    /// Decides and sends what the other workers handed this one: from each
    /// worker, bursts until four bursts' worth of frames or its ring is
    /// empty, per poll. Returns the frames taken.
    #[inline(never)]
    fn take_handed(
        &mut self,
        h: &Handoff,
        s: &mut Scratch,
        sampled: bool,
        tx_cycles: &mut u64,
    ) -> usize {
        let me = self.index;
        let mut taken = 0;
        for from in (0..h.workers()).filter(|&f| f != me) {
            let mut budget = 4 * self.burst;
            while budget > 0 {
                let Some((port, mut b)) = h.recv(from, me) else {
                    break;
                };
                budget = budget.saturating_sub(b.len().max(1));
                taken += b.len();
                // `s.rx` is empty between bursts: the handed burst takes its
                // place, the empty one goes.
                std::mem::swap(&mut s.rx, &mut b);
                s.rx.prefetch();
                let snap = self.tables.load();
                self.forward(s, &snap, port, false, sampled, tx_cycles);
            }
        }
        self.counters.handoff_in.add(taken as u64);
        taken
    }

    /// Decides the burst in `s.rx`, from `in_port`, on `snap`, and sends
    /// its frames, grouped by output port. `received`: the frames were
    /// received here (their bytes are counted for `in_port`), not handed
    /// over by another worker (which counted them).
    #[inline]
    fn forward(
        &mut self,
        s: &mut Scratch,
        snap: &crate::tables::Snapshot,
        in_port: u16,
        received: bool,
        sampled: bool,
        tx_cycles: &mut u64,
    ) {
        let c = &*self.counters;
        let n = s.rx.len();
        s.env.burst(snap);
        // Capture of what this port received (before it is decided).
        if received && self.exchange.capture.armed_for(in_port, capture::RX) {
            self.exchange
                .capture
                .take_burst(capture::RX, &s.rx, n, sys::rdtsc());
        }
        let mut b = BurstCtx::new(
            snap,
            &mut s.env,
            c,
            &self.exchange,
            in_port,
            s.tx_mask,
            self.tx.len() as u16,
            &mut s.floods,
        );
        b.worker = self.index as u16;
        let (to, lens) = (&mut s.to[..n], &mut s.lens[..n]);
        b.decide(&mut s.ahead, &mut s.rx, to, lens);
        b.env.flows.hits += b.hits;
        let (rx_bytes, decaps, snats) = (b.rx_bytes, b.decaps, b.snats);
        s.rx.distribute(to, lens, &mut s.outs, &mut s.out_bytes, &mut s.drops);
        if received {
            c.ports[in_port as usize].rx_bytes.add(rx_bytes);
        }
        s.drops.clear();
        // Idle SNAT sessions go, a few per burst.
        s.env.expire(EXPIRE_PER_BURST);
        c.nat_sessions.set(s.env.nat.len() as u64);
        c.nat_sessions_created.set(s.env.nat.counters().created);
        c.flow_hits.set(s.env.flows.hits);
        c.flow_inserts.set(s.env.flows.inserts);
        c.decap_way.add(decaps);
        c.snat_way.add(snats);
        if !s.floods.is_empty() {
            Self::replicate(c, &self.pool, self.tx.len(), snap, in_port, s);
        }
        for (p, out) in s.outs.iter_mut().take(self.tx.len()).enumerate() {
            if out.is_empty() {
                continue;
            }
            let bytes = std::mem::take(&mut s.out_bytes[p]);
            // Capture of what leaves by this port.
            if self.exchange.capture.armed_for(p as u16, capture::TX) {
                self.exchange
                    .capture
                    .take_burst(capture::TX, out, out.len(), sys::rdtsc());
            }
            if let Some(txq) = self.tx[p].as_mut() {
                let t = lap(sampled);
                let r = txq.tx_with_bytes(out, bytes);
                *tx_cycles = tx_cycles.wrapping_add(lap(sampled).wrapping_sub(t));
                let pc = &c.ports[p];
                pc.tx_packets.add(r.sent);
                pc.tx_bytes.add(r.bytes);
                if r.dropped > 0 {
                    c.drop(unsent(txq), r.dropped);
                }
            }
        }
    }
}
