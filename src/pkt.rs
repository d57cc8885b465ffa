//! A frame in its buffer: a mutable window with headroom and tailroom (what
//! a single-segment mbuf is), and the trait of a frame a fast way rewrites
//! where it lies. The headers inside a frame are read and written through
//! the views of [`crate::wire`].

/// A frame in a buffer with room in front (headroom) and behind (tailroom):
/// `buf[off..off + len]` is the frame. Headers can be pushed in front
/// ([`Frame::prepend`]), stripped ([`Frame::adj`]) and the tail cut
/// ([`Frame::trim`]) without copying the payload.
#[derive(Debug)]
pub struct Frame<'a> {
    buf: &'a mut [u8],
    off: usize,
    len: usize,
}

impl<'a> Frame<'a> {
    /// The frame `buf[off..off + len]`; `None` if that is outside `buf`.
    pub fn new(buf: &'a mut [u8], off: usize, len: usize) -> Option<Frame<'a>> {
        (off.checked_add(len)? <= buf.len()).then_some(Frame { buf, off, len })
    }

    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }

    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the frame starts in the buffer.
    #[inline(always)]
    pub fn offset(&self) -> usize {
        self.off
    }

    /// Grows the frame by `n` bytes in front (contents unspecified); false if
    /// the headroom is too small.
    #[inline(always)]
    pub fn prepend(&mut self, n: usize) -> bool {
        if n > self.off {
            return false;
        }
        self.off -= n;
        self.len += n;
        true
    }

    /// Removes `n` bytes from the front; false if the frame is shorter.
    #[inline(always)]
    pub fn adj(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.off += n;
        self.len -= n;
        true
    }

    /// Cuts the frame to `len` bytes (never grows it).
    #[inline(always)]
    pub fn trim(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Grows the frame by `n` bytes at the end (contents unspecified); false if
    /// the tailroom is too small.
    pub fn extend(&mut self, n: usize) -> bool {
        // `off + len <= buf.len()` always: no sum that could overflow.
        if n > self.buf.len() - self.off - self.len {
            return false;
        }
        self.len += n;
        true
    }
}

/// A frame that a worker's flow cache way rewrites where it lies
/// ([`crate::fastpath::fast`]): an mbuf of a burst ([`crate::sys::Pkt`]), or
/// a [`Frame`].
pub trait InPlace {
    /// Its bytes; `None` when they are not one contiguous run.
    fn bytes(&mut self) -> Option<&mut [u8]>;
    /// Grows it by `n` bytes in front (contents unspecified) and returns its
    /// bytes then; `None`, with nothing changed, when the headroom is too
    /// small or the bytes are not one run.
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]>;
}

impl InPlace for Frame<'_> {
    #[inline(always)]
    fn bytes(&mut self) -> Option<&mut [u8]> {
        Some(self.data_mut())
    }

    #[inline(always)]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        Frame::prepend(self, n).then(|| self.data_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_moves_its_edges_within_the_buffer() {
        let mut buf = [0u8; 64];
        let mut f = Frame::new(&mut buf, 16, 32).unwrap();
        assert!(f.prepend(16));
        assert!(!f.prepend(1));
        assert_eq!((f.offset(), f.len()), (0, 48));
        assert!(f.adj(8));
        f.trim(10);
        assert_eq!((f.offset(), f.len()), (8, 10));
        assert!(f.extend(46));
        assert!(!f.extend(1));
        assert!(!f.adj(57));
        assert!(Frame::new(&mut buf, 60, 5).is_none());
    }

    /// Found by the `headers` fuzz target: `off + len + n` overflowed (a
    /// panic with overflow checks, a frame past its buffer without).
    #[test]
    fn extend_refuses_a_huge_count() {
        let mut buf = [0u8; 80];
        let mut f = Frame::new(&mut buf, 32, 24).unwrap();
        assert!(!f.extend(usize::MAX));
        assert!(!f.extend(usize::MAX - 55));
        assert!(f.extend(24));
        assert_eq!((f.offset(), f.len()), (32, 48));
    }
}
