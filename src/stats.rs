//! Counters: per worker, written only by their worker (plain load + store of
//! relaxed atomics, no read-modify-write, no shared cache lines between workers),
//! read and summed by the control thread.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a packet was dropped. Every drop is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    RuntFrame,
    /// Chained mbufs: the L2 stage only handles single-segment frames.
    MultiSegment,
    /// Source MAC is a group address, which no station may send from.
    MulticastSrcMac,
    /// Broadcast or multicast destination: flooding is not configured yet.
    FloodNotConfigured,
    /// Destination MAC is not in the FDB.
    UnknownDstMac,
    /// The FDB sends the frame back out of the port it came in on.
    SameIngressPort,
    /// The destination port has no transmit queue for this worker.
    NoTxQueue,
    /// The destination port's transmit queue was full.
    TxQueueFull,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::RuntFrame,
        DropReason::MultiSegment,
        DropReason::MulticastSrcMac,
        DropReason::FloodNotConfigured,
        DropReason::UnknownDstMac,
        DropReason::SameIngressPort,
        DropReason::NoTxQueue,
        DropReason::TxQueueFull,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The counter's name, as shown by the daemon and `dvr-ctl show errors`.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::RuntFrame => "runt_frame",
            DropReason::MultiSegment => "multi_segment",
            DropReason::MulticastSrcMac => "multicast_src_mac",
            DropReason::FloodNotConfigured => "flood_not_configured",
            DropReason::UnknownDstMac => "unknown_dst_mac",
            DropReason::SameIngressPort => "same_ingress_port",
            DropReason::NoTxQueue => "no_tx_queue",
            DropReason::TxQueueFull => "tx_queue_full",
        }
    }
}

/// A counter written by one thread only.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this: a load and a store, no locked
    /// instruction.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One port's traffic as seen by one worker.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
}

/// Everything one worker counts.
#[derive(Debug)]
#[repr(align(64))]
pub struct WorkerCounters {
    pub ports: Box<[PortCounters]>,
    pub drops: [Counter; DropReason::COUNT],
    /// Polls of all the worker's queues, and how many of them found packets.
    pub polls: Counter,
    pub busy_polls: Counter,
    /// TSC cycles spent polling (processing and TX included; sleeps of the
    /// adaptive mode excluded). Per packet, it is the cost of forwarding when the
    /// worker is saturated.
    pub poll_cycles: Counter,
    /// Packets processed (received) by this worker.
    pub packets: Counter,
}

impl WorkerCounters {
    pub fn new(ports: usize) -> Self {
        WorkerCounters {
            ports: (0..ports).map(|_| PortCounters::default()).collect(),
            drops: Default::default(),
            polls: Counter::default(),
            busy_polls: Counter::default(),
            poll_cycles: Counter::default(),
            packets: Counter::default(),
        }
    }

    #[inline(always)]
    pub fn drop(&self, r: DropReason, n: u64) {
        self.drops[r as usize].add(n);
    }

    pub fn snapshot(&self) -> WorkerSnapshot {
        WorkerSnapshot {
            ports: self
                .ports
                .iter()
                .map(|p| PortSnapshot {
                    rx_packets: p.rx_packets.get(),
                    rx_bytes: p.rx_bytes.get(),
                    tx_packets: p.tx_packets.get(),
                    tx_bytes: p.tx_bytes.get(),
                })
                .collect(),
            drops: std::array::from_fn(|i| self.drops[i].get()),
            polls: self.polls.get(),
            busy_polls: self.busy_polls.get(),
            poll_cycles: self.poll_cycles.get(),
            packets: self.packets.get(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortSnapshot {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl std::ops::AddAssign for PortSnapshot {
    fn add_assign(&mut self, o: Self) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
    }
}

/// A copy of one worker's counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct WorkerSnapshot {
    pub ports: Vec<PortSnapshot>,
    pub drops: [u64; DropReason::COUNT],
    pub polls: u64,
    pub busy_polls: u64,
    pub poll_cycles: u64,
    pub packets: u64,
}

impl WorkerSnapshot {
    /// Polling cycles per packet: exact when the worker is saturated, an upper
    /// bound when it also polls empty queues.
    pub fn cycles_per_packet(&self) -> f64 {
        if self.packets == 0 {
            0.0
        } else {
            self.poll_cycles as f64 / self.packets as f64
        }
    }
}

/// Sums of several workers' snapshots.
pub fn total(ws: &[WorkerSnapshot], ports: usize) -> WorkerSnapshot {
    let mut t = WorkerSnapshot {
        ports: vec![PortSnapshot::default(); ports],
        ..Default::default()
    };
    for w in ws {
        for (a, b) in t.ports.iter_mut().zip(&w.ports) {
            *a += *b;
        }
        for (a, b) in t.drops.iter_mut().zip(&w.drops) {
            *a += b;
        }
        t.polls += w.polls;
        t.busy_polls += w.busy_polls;
        t.poll_cycles += w.poll_cycles;
        t.packets += w.packets;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexed() {
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn counts_and_sums() {
        let a = WorkerCounters::new(2);
        let b = WorkerCounters::new(2);
        a.ports[1].rx_packets.add(3);
        b.ports[1].rx_packets.add(4);
        a.drop(DropReason::UnknownDstMac, 2);
        b.poll_cycles.add(100);
        b.packets.add(4);
        let t = total(&[a.snapshot(), b.snapshot()], 2);
        assert_eq!(t.ports[1].rx_packets, 7);
        assert_eq!(t.ports[0], PortSnapshot::default());
        assert_eq!(t.drops[DropReason::UnknownDstMac as usize], 2);
        assert_eq!(t.cycles_per_packet(), 25.0);
    }
}
