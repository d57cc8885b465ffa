//! A burst of owned packets, and a packet of it being decided.

use super::mbuf::{segment, with_frame, write_frame};
use super::{ffi, Result};
use crate::pkt::Frame;

/// The largest burst a [`Burst`] holds.
pub const MAX_BURST: usize = 64;

/// Up to [`MAX_BURST`] owned packets. Dropping a burst frees what it still holds.
pub struct Burst {
    pub(super) len: usize,
    pub(super) pkts: [*mut ffi::rte_mbuf; MAX_BURST],
}

// SAFETY: a Burst owns its mbufs exclusively; mbufs may be freed from any lcore.
unsafe impl Send for Burst {}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    pub const fn new() -> Self {
        Burst {
            len: 0,
            pkts: [std::ptr::null_mut(); MAX_BURST],
        }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    fn mbuf(&self, i: usize) -> &ffi::rte_mbuf {
        assert!(i < self.len);
        // SAFETY: slots below len hold valid mbufs owned by this burst.
        unsafe { &*self.pkts[i] }
    }

    /// The bytes of packet `i`'s first segment.
    #[inline(always)]
    pub fn data(&self, i: usize) -> &[u8] {
        assert!(i < self.len);
        // SAFETY: slots below len hold valid mbufs owned by this burst, borrowed
        // for &self.
        unsafe { segment(self.pkts[i]) }
    }

    /// Total length of packet `i` (all segments).
    #[inline(always)]
    pub fn pkt_len(&self, i: usize) -> u32 {
        self.mbuf(i).pkt_len
    }

    /// Number of segments of packet `i`.
    #[inline(always)]
    pub fn nb_segs(&self, i: usize) -> u16 {
        self.mbuf(i).nb_segs
    }

    /// Replaces packet `i`'s data with `frame` (single segment). Fails when the
    /// frame does not fit the buffer.
    pub fn set_frame(&mut self, i: usize, frame: &[u8]) -> Result<()> {
        assert!(i < self.len);
        // SAFETY: slot i holds a valid mbuf owned by this burst.
        unsafe { write_frame(self.pkts[i], frame, "set_frame") }
    }

    /// Removes `n` bytes from the front of packet `i` (like `rte_pktmbuf_adj`), or
    /// `None` when the segment is shorter.
    #[inline]
    pub fn adj(&mut self, i: usize, n: u16) -> Option<()> {
        assert!(i < self.len);
        // SAFETY: valid owned mbuf; the wrapper checks the length itself.
        let r = unsafe { ffi::rte_pktmbuf_adj(self.pkts[i], n) };
        (!r.is_null()).then_some(())
    }

    /// Adds `n` bytes in front of packet `i` (like `rte_pktmbuf_prepend`), or `None`
    /// when the headroom is too small.
    #[inline]
    pub fn prepend(&mut self, i: usize, n: u16) -> Option<()> {
        assert!(i < self.len);
        // SAFETY: valid owned mbuf; the wrapper checks the headroom itself.
        let r = unsafe { ffi::rte_pktmbuf_prepend(self.pkts[i], n) };
        (!r.is_null()).then_some(())
    }

    /// Appends an mbuf pointer this burst now owns.
    #[inline(always)]
    pub(super) fn push_raw(&mut self, m: *mut ffi::rte_mbuf) {
        debug_assert!(self.len < MAX_BURST);
        self.pkts[self.len] = m;
        self.len += 1;
    }

    /// Moves every frame for which `dest` names a destination `d` to the end
    /// of `outs[d]`, in order; the others stay, in their order. (A worker
    /// handing frames to the worker that owns their SNAT session.) A frame
    /// whose destination is not in `outs`, or full, stays.
    #[inline]
    pub fn split_off(&mut self, mut dest: impl FnMut(&[u8]) -> Option<usize>, outs: &mut [Burst]) {
        let mut kept = 0;
        for i in 0..self.len {
            let p = self.pkts[i];
            // SAFETY: slots below len hold valid mbufs owned by this burst;
            // the bytes are borrowed only for the call of `dest`.
            let to = dest(unsafe { segment(p) });
            match to
                .and_then(|d| outs.get_mut(d))
                .filter(|o| o.len < MAX_BURST)
            {
                // The mbuf moves to the other burst, which owns it now.
                Some(o) => o.push_raw(p),
                None => {
                    self.pkts[kept] = p;
                    kept += 1;
                }
            }
        }
        // The kept mbufs are below `kept`; the others belong to `outs`.
        self.len = kept;
    }

    /// Brings every packet's mbuf and first bytes into this core's caches,
    /// all at once (the misses overlap): for a burst another core received
    /// and wrote last (a hand-off), whose frames would otherwise miss one
    /// after the other as they are decided.
    #[inline]
    pub fn prefetch(&self) {
        for &p in &self.pkts[..self.len] {
            // SAFETY: slots below len hold valid mbufs owned by this burst;
            // the reference only names the address a prefetch hints at.
            let m = unsafe { &*p };
            super::prefetch(m);
        }
        for &p in &self.pkts[..self.len] {
            // SAFETY: as above; the data is borrowed for the hint only.
            let d = unsafe { segment(p) };
            if let Some(b) = d.first() {
                super::prefetch(b);
            }
            if let Some(b) = d.get(64) {
                super::prefetch(b);
            }
        }
    }

    /// Takes `m` to be freed: appended, once the burst (full) is freed.
    #[inline(always)]
    fn discard(&mut self, m: *mut ffi::rte_mbuf) {
        if self.len == MAX_BURST {
            self.clear();
        }
        self.push_raw(m);
    }

    /// Packet `i`, to decide on ([`Pkt`]).
    #[inline(always)]
    pub fn pkt(&mut self, i: usize) -> Pkt<'_> {
        assert!(i < self.len);
        Pkt {
            m: self.pkts[i],
            _burst: std::marker::PhantomData,
        }
    }

    /// Moves each packet `i` to output `to[i]`, an index into `outs`, or to
    /// `drops` for anything out of range (by convention `u16::MAX`, or no
    /// `to[i]`) or when that output is full; `drops` is freed whenever it
    /// fills. Each packet's length `lens[i]` (as the caller knows it: the
    /// mbufs are not read again) is added to `out_bytes` of its output, if
    /// there is such an entry. Consecutive packets to the same output move
    /// together. `self` is empty afterwards.
    #[inline]
    pub fn distribute(
        &mut self,
        to: &[u16],
        lens: &[u32],
        outs: &mut [Burst],
        out_bytes: &mut [u64],
        drops: &mut Burst,
    ) {
        let to = &to[..to.len().min(self.len)];
        let mut i = 0;
        while i < to.len() {
            let d = to[i];
            let run = 1 + to[i + 1..].iter().take_while(|&&x| x == d).count();
            let moved = match outs.get_mut(d as usize) {
                Some(o) => {
                    let n = run.min(MAX_BURST - o.len);
                    let pkts = &self.pkts[i..i + n];
                    o.pkts[o.len..o.len + n].copy_from_slice(pkts);
                    o.len += n;
                    let bytes: u64 = lens.iter().skip(i).take(n).map(|&l| l as u64).sum();
                    if let Some(b) = out_bytes.get_mut(d as usize) {
                        *b += bytes;
                    }
                    n
                }
                None => 0,
            };
            for &m in &self.pkts[i + moved..i + run] {
                drops.discard(m);
            }
            i += run;
        }
        for &m in &self.pkts[to.len()..self.len] {
            drops.discard(m);
        }
        // Every mbuf now belongs to an output or to `drops`.
        self.len = 0;
    }

    /// Frees every packet, in one bulk call.
    #[inline]
    pub fn clear(&mut self) {
        if self.len > 0 {
            // SAFETY: slots below len are valid mbufs owned by us; after the call
            // they are forgotten (len = 0).
            unsafe { ffi::rte_pktmbuf_free_bulk(self.pkts.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }

    /// Sum of the packets' total lengths.
    #[inline]
    pub fn bytes(&self) -> u64 {
        (0..self.len).map(|i| self.pkt_len(i) as u64).sum()
    }
}

/// A packet of a burst being decided ([`Burst::pkt`]), borrowed from it.
pub struct Pkt<'a> {
    m: *mut ffi::rte_mbuf,
    _burst: std::marker::PhantomData<&'a mut Burst>,
}

impl Pkt<'_> {
    /// The packet's total length (all segments).
    #[inline(always)]
    pub fn len(&self) -> u32 {
        // SAFETY: `m` is a valid mbuf of the burst, borrowed for 'a.
        unsafe { (*self.m).pkt_len }
    }

    /// Whether the packet has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on the single-segment packet as a mutable [`Frame`] over its
    /// whole buffer (headroom and tailroom included; `None` when chained):
    /// `f` may rewrite, grow or cut it, and the mbuf takes the frame's new
    /// start and length.
    #[inline(always)]
    pub fn frame<R>(&mut self, f: impl FnOnce(Option<&mut Frame>) -> R) -> R {
        // SAFETY: `m` is a valid mbuf owned by the burst and borrowed mutably
        // for 'a; nothing else references it during the call.
        unsafe { with_frame(self.m, f) }
    }
}

/// The frames of a burst as a worker's loop reads and decides them
/// (`worker::burst`): the mbufs of a [`Burst`], or frames in memory
/// (`testkit::MemBurst`, which the benches run the worker's loop on).
pub trait Frames {
    /// A frame of the burst being decided.
    type Pkt<'a>: FramePkt
    where
        Self: 'a;
    /// The bytes of frame `i` (of its first segment).
    fn data(&self, i: usize) -> &[u8];
    /// Total length of frame `i` (all segments).
    fn pkt_len(&self, i: usize) -> u32;
    /// Number of segments of frame `i`.
    fn nb_segs(&self, i: usize) -> u16;
    /// Frame `i`, to decide on.
    fn pkt(&mut self, i: usize) -> Self::Pkt<'_>;
}

/// A frame of a burst being decided ([`Frames::pkt`]).
pub trait FramePkt: crate::pkt::InPlace {
    /// Its total length (all segments).
    fn len(&self) -> u32;
    /// Whether it has no bytes.
    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Runs `f` on it as a mutable [`Frame`] (`None` when chained); the
    /// frame keeps the start and length `f` leaves.
    fn frame<R>(&mut self, f: impl FnOnce(Option<&mut Frame>) -> R) -> R;
}

impl Frames for Burst {
    type Pkt<'a> = Pkt<'a>;

    #[inline(always)]
    fn data(&self, i: usize) -> &[u8] {
        Burst::data(self, i)
    }

    #[inline(always)]
    fn pkt_len(&self, i: usize) -> u32 {
        Burst::pkt_len(self, i)
    }

    #[inline(always)]
    fn nb_segs(&self, i: usize) -> u16 {
        Burst::nb_segs(self, i)
    }

    #[inline(always)]
    fn pkt(&mut self, i: usize) -> Pkt<'_> {
        Burst::pkt(self, i)
    }
}

impl FramePkt for Pkt<'_> {
    #[inline(always)]
    fn len(&self) -> u32 {
        Pkt::len(self)
    }

    #[inline(always)]
    fn frame<R>(&mut self, f: impl FnOnce(Option<&mut Frame>) -> R) -> R {
        Pkt::frame(self, f)
    }
}

impl crate::pkt::InPlace for Pkt<'_> {
    /// The bytes of a single-segment packet, to rewrite in place (its start
    /// and length stay); `None` for a chained packet.
    #[inline(always)]
    fn bytes(&mut self) -> Option<&mut [u8]> {
        // SAFETY: `m` is a valid mbuf owned by the burst and borrowed
        // mutably for 'a; the slice is checked to lie inside its buffer.
        unsafe {
            let m = &*self.m;
            let (off, len) = (m.data_off as usize, m.data_len as usize);
            if m.nb_segs != 1 || off + len > m.buf_len as usize {
                return None;
            }
            Some(std::slice::from_raw_parts_mut(
                (m.buf_addr as *mut u8).add(off),
                len,
            ))
        }
    }

    /// Moves a single-segment packet's start `n` bytes into its headroom.
    #[inline(always)]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        // SAFETY: as in `bytes`; the new start is checked to stay inside the
        // buffer (n <= data_off) and the length to fit the mbuf's fields.
        unsafe {
            let m = &mut *self.m;
            let (off, len) = (m.data_off as usize, m.data_len as usize + n);
            if m.nb_segs != 1 || n > off || off - n + len > m.buf_len as usize {
                return None;
            }
            let off = off - n;
            m.data_off = off as u16;
            m.data_len = len as u16;
            m.pkt_len = len as u32;
            Some(std::slice::from_raw_parts_mut(
                (m.buf_addr as *mut u8).add(off),
                len,
            ))
        }
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.clear();
    }
}
