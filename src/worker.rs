//! A worker: one pinned thread that polls its (port, queue) pairs in bursts, runs
//! the pipeline over each burst, and transmits, grouped by output port.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::PollMode;
use crate::dpdk::{self, Burst, RxQueue, TxQueue, MAX_BURST};
use crate::l2::{Dest, L2Switch, DROP};
use crate::stats::{DropReason, WorkerCounters};

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
    pub switch: Arc<L2Switch>,
    pub counters: Arc<WorkerCounters>,
    pub burst: usize,
    pub poll_mode: PollMode,
    pub stop: Arc<AtomicBool>,
}

/// Per-worker scratch space, allocated once before the loop.
struct Scratch {
    rx: Burst,
    dest: [Dest; MAX_BURST],
    outs: Vec<Burst>,
    drops: Burst,
}

impl Worker {
    /// Runs until `stop` is set, then drains its RX queues (bounded) and returns.
    pub fn run(mut self) {
        let mut s = Scratch {
            rx: Burst::new(),
            dest: [DROP; MAX_BURST],
            outs: (0..self.tx.len()).map(|_| Burst::new()).collect(),
            drops: Burst::new(),
        };
        let mut idle: u32 = 0;
        let mut sleep = Duration::from_micros(1);
        while !self.stop.load(Ordering::Relaxed) {
            let got = self.poll_once(&mut s);
            if got > 0 || self.poll_mode == PollMode::Busy {
                idle = 0;
                sleep = Duration::from_micros(1);
                continue;
            }
            idle = idle.saturating_add(1);
            if idle >= IDLE_POLLS_BEFORE_SLEEP {
                std::thread::sleep(sleep);
                sleep = (sleep * 2).min(MAX_SLEEP);
            } else if idle >= IDLE_POLLS_BEFORE_PAUSE {
                std::hint::spin_loop();
            }
        }
        for _ in 0..DRAIN_BURSTS {
            if self.poll_once(&mut s) == 0 {
                break;
            }
        }
    }

    /// Polls every RX queue once. Returns the packets received.
    #[inline]
    fn poll_once(&mut self, s: &mut Scratch) -> usize {
        let c = &*self.counters;
        let start = dpdk::rdtsc();
        let mut got = 0;
        for (in_port, q) in self.rx.iter_mut() {
            let n = q.rx(&mut s.rx, self.burst);
            if n == 0 {
                continue;
            }
            got += n;
            let pc = &c.ports[*in_port as usize];
            pc.rx_packets.add(n as u64);
            pc.rx_bytes.add(s.rx.bytes());
            let mut touched: u64 = 0;
            for i in 0..n {
                let d = if s.rx.nb_segs(i) != 1 {
                    Err(DropReason::MultiSegment)
                } else {
                    self.switch.classify(*in_port, s.rx.data(i))
                };
                s.dest[i] = match d {
                    Ok(p) if self.tx.get(p as usize).is_some_and(Option::is_some) => {
                        touched |= 1 << (p & 63);
                        p
                    }
                    Ok(_) => {
                        c.drop(DropReason::NoTxQueue, 1);
                        DROP
                    }
                    Err(r) => {
                        c.drop(r, 1);
                        DROP
                    }
                };
            }
            s.rx.distribute(&s.dest[..n], &mut s.outs, &mut s.drops);
            s.drops.clear();
            for (p, out) in s.outs.iter_mut().enumerate() {
                if touched & (1 << (p & 63)) == 0 || out.is_empty() {
                    continue;
                }
                if let Some(txq) = self.tx[p].as_mut() {
                    let r = txq.tx(out);
                    let pc = &c.ports[p];
                    pc.tx_packets.add(r.sent);
                    pc.tx_bytes.add(r.bytes);
                    if r.dropped > 0 {
                        c.drop(DropReason::TxQueueFull, r.dropped);
                    }
                }
            }
        }
        c.polls.add(1);
        if got > 0 {
            c.busy_polls.add(1);
            c.busy_cycles.add(dpdk::rdtsc().wrapping_sub(start));
            c.packets.add(got as u64);
        }
        got
    }
}
