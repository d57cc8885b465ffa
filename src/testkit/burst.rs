//! A burst of frames in memory that the worker's own loop decides
//! ([`crate::worker::burst::BurstCtx::decide`]), as it decides a burst of
//! mbufs: for the benches that measure the daemon's code in process.

use crate::pkt::{Frame, InPlace};
use crate::sys::{FramePkt, Frames};

/// Up to `n` frames, each in a buffer of its own laid out as in an mbuf
/// (headroom, frame, tailroom).
pub struct MemBurst {
    bufs: Vec<Vec<u8>>,
    /// Where each frame starts in its buffer, and its length.
    at: Vec<(usize, usize)>,
    headroom: usize,
}

impl MemBurst {
    /// Room for `n` frames of up to `size - headroom` bytes each.
    pub fn new(n: usize, size: usize, headroom: usize) -> Self {
        MemBurst {
            bufs: vec![vec![0u8; size]; n],
            at: Vec::with_capacity(n),
            headroom,
        }
    }

    /// Copies `frames` in (as many as there are buffers), each at the
    /// headroom, as a driver hands them over.
    #[inline]
    pub fn load<T: AsRef<[u8]>>(&mut self, frames: &[T]) {
        self.at.clear();
        for (b, f) in self.bufs.iter_mut().zip(frames) {
            let f = f.as_ref();
            b[self.headroom..self.headroom + f.len()].copy_from_slice(f);
            self.at.push((self.headroom, f.len()));
        }
    }

    /// How many frames it holds.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// A frame of a [`MemBurst`] being decided.
pub struct MemPkt<'a> {
    buf: &'a mut [u8],
    at: &'a mut (usize, usize),
}

impl Frames for MemBurst {
    type Pkt<'a> = MemPkt<'a>;

    #[inline(always)]
    fn data(&self, i: usize) -> &[u8] {
        let (off, len) = self.at[i];
        &self.bufs[i][off..off + len]
    }

    #[inline(always)]
    fn pkt_len(&self, i: usize) -> u32 {
        self.at[i].1 as u32
    }

    #[inline(always)]
    fn nb_segs(&self, _i: usize) -> u16 {
        1
    }

    #[inline(always)]
    fn pkt(&mut self, i: usize) -> MemPkt<'_> {
        MemPkt {
            buf: &mut self.bufs[i],
            at: &mut self.at[i],
        }
    }
}

impl FramePkt for MemPkt<'_> {
    #[inline(always)]
    fn len(&self) -> u32 {
        self.at.1 as u32
    }

    #[inline(always)]
    fn frame<R>(&mut self, f: impl FnOnce(Option<&mut Frame>) -> R) -> R {
        let (off, len) = *self.at;
        let Some(mut fr) = Frame::new(self.buf, off, len) else {
            return f(None);
        };
        let r = f(Some(&mut fr));
        *self.at = (fr.offset(), fr.len());
        r
    }
}

impl InPlace for MemPkt<'_> {
    #[inline(always)]
    fn bytes(&mut self) -> Option<&mut [u8]> {
        let (off, len) = *self.at;
        self.buf.get_mut(off..off + len)
    }

    #[inline(always)]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let (off, len) = *self.at;
        if n > off {
            return None;
        }
        *self.at = (off - n, len + n);
        self.buf.get_mut(off - n..off + len)
    }
}
