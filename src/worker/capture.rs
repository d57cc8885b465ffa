//! Packet capture of one interface, as VPP's `pcap trace` or `dpdk-pdump`:
//! the control thread arms the tap ([`CaptureTap::arm`]) for an interface,
//! a direction and a number of frames; the workers copy each frame received
//! there (before it is decided) and each frame sent there (as it leaves)
//! into a bounded lock-free queue of fixed-size slots (nothing allocated;
//! a full queue counts the frame as lost), with the TSC as its time; the
//! main thread writes them to a pcapng file ([`crate::pcapng`]). Unarmed, a
//! burst pays one relaxed load per direction.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use crossbeam_queue::ArrayQueue;

/// The most bytes kept of a frame (the snap length's ceiling).
pub const CAPTURE_SLOT: usize = 2048;
/// Frames waiting for the writer, at most.
pub const CAPTURE_QUEUE: usize = 1024;

/// Which way a captured frame went.
pub const RX: u8 = 1;
pub const TX: u8 = 2;

/// One captured frame.
#[derive(Clone, Copy)]
pub struct Captured {
    pub tsc: u64,
    pub dir: u8,
    /// The frame's length on the wire, and the bytes kept.
    pub len: u32,
    pub cap_len: u16,
    pub data: [u8; CAPTURE_SLOT],
}

impl Captured {
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.cap_len as usize]
    }
}

/// The tap between the control thread and the workers.
pub struct CaptureTap {
    /// The interface captured (`u32::MAX`: none), the directions (bits
    /// [`RX`], [`TX`]), the frames still to take and the snap length.
    port: AtomicU32,
    dirs: AtomicU8,
    remaining: AtomicU32,
    snaplen: AtomicU32,
    /// Frames taken, and lost on a full queue.
    pub taken: AtomicU64,
    pub lost: AtomicU64,
    pub frames: ArrayQueue<Captured>,
}

impl Default for CaptureTap {
    fn default() -> Self {
        CaptureTap {
            port: AtomicU32::new(u32::MAX),
            dirs: AtomicU8::new(0),
            remaining: AtomicU32::new(0),
            snaplen: AtomicU32::new(CAPTURE_SLOT as u32),
            taken: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            frames: ArrayQueue::new(CAPTURE_QUEUE),
        }
    }
}

impl CaptureTap {
    /// Captures `count` frames of `port` in directions `dirs`, at most
    /// `snaplen` bytes of each.
    pub fn arm(&self, port: u16, dirs: u8, count: u32, snaplen: u32) {
        self.remaining.store(0, Relaxed);
        self.taken.store(0, Relaxed);
        self.lost.store(0, Relaxed);
        self.snaplen
            .store(snaplen.clamp(1, CAPTURE_SLOT as u32), Relaxed);
        self.dirs.store(dirs, Relaxed);
        self.port.store(port as u32, Relaxed);
        self.remaining.store(count, Relaxed);
    }

    pub fn disarm(&self) {
        self.remaining.store(0, Relaxed);
        self.port.store(u32::MAX, Relaxed);
    }

    pub fn remaining(&self) -> u32 {
        self.remaining.load(Relaxed)
    }

    /// Whether frames going `dir` on `port` are captured: the one load a
    /// burst pays (and a second when it is the port).
    #[inline(always)]
    pub fn armed_for(&self, port: u16, dir: u8) -> bool {
        self.port.load(Relaxed) == port as u32 && self.dirs.load(Relaxed) & dir != 0
    }

    /// Copies `frame` (going `dir`, `len` bytes on the wire) into the queue
    /// if a frame is still to be taken; a full queue loses it (counted).
    /// False when none is left (the rest of the burst need not ask).
    #[cold]
    pub fn take(&self, dir: u8, frame: &[u8], len: u32, tsc: u64) -> bool {
        if self
            .remaining
            .fetch_update(Relaxed, Relaxed, |r| r.checked_sub(1))
            .is_err()
        {
            return false;
        }
        let n = frame.len().min(self.snaplen.load(Relaxed) as usize);
        let mut c = Captured {
            tsc,
            dir,
            len,
            cap_len: n as u16,
            data: [0; CAPTURE_SLOT],
        };
        c.data[..n].copy_from_slice(&frame[..n]);
        match self.frames.push(c) {
            Ok(()) => self.taken.fetch_add(1, Relaxed),
            Err(_) => self.lost.fetch_add(1, Relaxed),
        };
        true
    }

    /// [`CaptureTap::take`] for each frame of `frames` in turn while marks
    /// last.
    #[cold]
    pub fn take_burst(&self, dir: u8, frames: &impl crate::sys::Frames, n: usize, tsc: u64) {
        for i in 0..n {
            if !self.take(dir, frames.data(i), frames.pkt_len(i), tsc) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_is_armed_counts_what_is_lost() {
        let tap = CaptureTap::default();
        assert!(!tap.armed_for(1, RX));
        tap.arm(1, RX, 3, 10);
        assert!(tap.armed_for(1, RX) && !tap.armed_for(1, TX) && !tap.armed_for(2, RX));
        for i in 0..5u8 {
            tap.take(RX, &[i; 20], 20, i as u64);
        }
        assert_eq!(tap.frames.len(), 3);
        let f = tap.frames.pop().unwrap();
        assert_eq!((f.cap_len, f.len, f.bytes()), (10, 20, &[0u8; 10][..]));
        tap.arm(1, RX | TX, (CAPTURE_QUEUE + 2) as u32, 64);
        for _ in 0..CAPTURE_QUEUE + 2 {
            tap.take(TX, &[1; 64], 64, 0);
        }
        assert_eq!(
            tap.lost.load(Relaxed),
            2 + 2,
            "the queue held {CAPTURE_QUEUE} and 2 left"
        );
    }
}
