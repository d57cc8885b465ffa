//! Live trace, as VPP's `trace add dpdk-input 50` / `show trace`: the
//! control thread arms the tap ([`TraceTap::arm`]) for the next N frames
//! received on one interface; the worker that receives one takes it through
//! the whole pipeline with a [`Recorder`], which writes each stage's
//! decision into a fixed-size [`TraceEntry`] (nothing allocated per frame),
//! and hands the entry to the control thread through a bounded lock-free
//! queue. Unarmed, a burst pays one relaxed load ([`TraceTap::armed_for`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crossbeam_queue::ArrayQueue;

use crate::pipeline::{Disposition, Trace};

/// The most frames one `trace add` marks, and entries kept waiting.
pub const TRACE_MAX: u32 = 256;
/// Notes (stage decisions) kept per frame, and bytes of each.
pub const TRACE_NOTES: usize = 24;
pub const NOTE_LEN: usize = 160;
/// Bytes of the received frame kept (its headers).
pub const TRACE_HEAD: usize = 256;

/// One stage's decision.
#[derive(Clone, Copy)]
pub struct TraceNote {
    pub stage: &'static str,
    len: u8,
    text: [u8; NOTE_LEN],
}

impl TraceNote {
    const EMPTY: TraceNote = TraceNote {
        stage: "",
        len: 0,
        text: [0; NOTE_LEN],
    };

    /// The decision (cut at [`NOTE_LEN`] bytes, on a character boundary).
    pub fn text(&self) -> &str {
        let b = &self.text[..self.len as usize];
        match std::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

/// One traced frame: where it came in, its first bytes, each stage's
/// decision and the outcome.
#[derive(Clone, Copy)]
pub struct TraceEntry {
    /// Its number among the frames traced since the daemon started.
    pub seq: u64,
    pub worker: u16,
    pub port: u16,
    /// The frame's length, and how much of it `head` holds.
    pub len: u32,
    pub head_len: u16,
    pub head: [u8; TRACE_HEAD],
    pub notes: [TraceNote; TRACE_NOTES],
    pub n_notes: u8,
    /// Notes that did not fit.
    pub lost_notes: u8,
    pub disposition: Disposition,
}

impl TraceEntry {
    pub fn new() -> TraceEntry {
        TraceEntry {
            seq: 0,
            worker: 0,
            port: 0,
            len: 0,
            head_len: 0,
            head: [0; TRACE_HEAD],
            notes: [TraceNote::EMPTY; TRACE_NOTES],
            n_notes: 0,
            lost_notes: 0,
            disposition: Disposition::Drop(crate::stats::DropReason::TableGone),
        }
    }

    /// The frame's first bytes, as received.
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len as usize]
    }

    /// The decisions, in order.
    pub fn notes(&self) -> &[TraceNote] {
        &self.notes[..self.n_notes as usize]
    }
}

impl Default for TraceEntry {
    fn default() -> Self {
        TraceEntry::new()
    }
}

/// Writes the stages' decisions into a [`TraceEntry`].
pub struct Recorder<'a>(pub &'a mut TraceEntry);

/// A `fmt::Write` into a fixed buffer that keeps what fits.
struct Fixed<'a> {
    buf: &'a mut [u8; NOTE_LEN],
    len: usize,
}

impl std::fmt::Write for Fixed<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = NOTE_LEN - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl Trace for Recorder<'_> {
    const ON: bool = true;

    fn note(&mut self, stage: &'static str, what: std::fmt::Arguments<'_>) {
        let e = &mut *self.0;
        let Some(n) = e.notes.get_mut(e.n_notes as usize) else {
            e.lost_notes = e.lost_notes.saturating_add(1);
            return;
        };
        n.stage = stage;
        let mut w = Fixed {
            buf: &mut n.text,
            len: 0,
        };
        let _ = w.write_fmt(what);
        n.len = w.len as u8;
        e.n_notes += 1;
    }
}

/// The tap between the control thread and the workers.
pub struct TraceTap {
    /// The interface armed (`u32::MAX`: none) and the frames still to mark.
    port: AtomicU32,
    remaining: AtomicU32,
    seq: AtomicU64,
    /// Traced frames for the control thread.
    pub entries: ArrayQueue<TraceEntry>,
}

impl Default for TraceTap {
    fn default() -> Self {
        TraceTap {
            port: AtomicU32::new(u32::MAX),
            remaining: AtomicU32::new(0),
            seq: AtomicU64::new(0),
            entries: ArrayQueue::new(TRACE_MAX as usize),
        }
    }
}

impl TraceTap {
    /// Marks the next `n` frames received on `port` (at most
    /// [`TRACE_MAX`]); replaces what was armed.
    pub fn arm(&self, port: u16, n: u32) {
        self.remaining.store(0, Relaxed);
        self.port.store(port as u32, Relaxed);
        self.remaining.store(n.min(TRACE_MAX), Relaxed);
    }

    /// Stops marking frames.
    pub fn disarm(&self) {
        self.remaining.store(0, Relaxed);
        self.port.store(u32::MAX, Relaxed);
    }

    /// The port armed, if any.
    pub fn armed_port(&self) -> Option<u16> {
        u16::try_from(self.port.load(Relaxed)).ok()
    }

    /// Frames still to mark.
    pub fn remaining(&self) -> u32 {
        self.remaining.load(Relaxed)
    }

    /// Whether frames from `port` are to be marked: the one load a burst
    /// pays.
    #[inline(always)]
    pub fn armed_for(&self, port: u16) -> bool {
        self.port.load(Relaxed) == port as u32
    }

    /// Takes one mark for a frame from `port`: its sequence number, or
    /// `None` when none is left.
    pub fn take(&self, port: u16) -> Option<u64> {
        if !self.armed_for(port) {
            return None;
        }
        self.remaining
            .fetch_update(Relaxed, Relaxed, |r| r.checked_sub(1))
            .ok()
            .map(|_| self.seq.fetch_add(1, Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_run_out_and_notes_are_bounded() {
        let tap = TraceTap::default();
        assert!(!tap.armed_for(3) && tap.take(3).is_none());
        tap.arm(3, 2);
        assert!(tap.take(4).is_none());
        assert_eq!(
            (tap.take(3), tap.take(3), tap.take(3)),
            (Some(0), Some(1), None)
        );
        let mut e = TraceEntry::new();
        let mut r = Recorder(&mut e);
        for i in 0..TRACE_NOTES + 3 {
            r.note("switch", format_args!("note {i} {}", "é".repeat(200)));
        }
        assert_eq!(e.notes().len(), TRACE_NOTES);
        assert_eq!(e.lost_notes, 3);
        assert!(e.notes()[0].text().starts_with("note 0 é"));
        assert!(e.notes()[0].text().len() <= NOTE_LEN);
        tap.disarm();
        assert!(!tap.armed_for(3));
    }
}
