//! One owned packet buffer, and the raw access to an mbuf's segment that
//! [`Mbuf`] and [`Burst`](super::Burst) share.

use std::ptr::NonNull;

use super::{ffi, Burst, Error, Mempool, Result, MAX_BURST};
use crate::pkt::Frame;

/// The first segment's bytes of `m`.
///
/// # Safety
/// `m` must be a valid mbuf that the caller owns for the returned lifetime.
#[inline(always)]
pub(super) unsafe fn segment<'a>(m: *const ffi::rte_mbuf) -> &'a [u8] {
    let m = &*m;
    std::slice::from_raw_parts(
        (m.buf_addr as *const u8).add(m.data_off as usize),
        m.data_len as usize,
    )
}

/// Runs `f` on the single segment of `m` as a [`Frame`] over its whole buffer
/// (None for a chained mbuf), then sets the mbuf's start and length to the
/// frame's.
///
/// # Safety
/// `m` must be a valid mbuf that only the caller references, for the call.
#[inline(always)]
pub(super) unsafe fn with_frame<R>(
    m: *mut ffi::rte_mbuf,
    f: impl FnOnce(Option<&mut Frame>) -> R,
) -> R {
    let mb = &mut *m;
    if mb.nb_segs != 1 {
        return f(None);
    }
    // The buffer is the mbuf's own, borrowed only for the call to `f`; the
    // range written back lies inside it by `Frame`'s contract.
    let buf = std::slice::from_raw_parts_mut(mb.buf_addr as *mut u8, mb.buf_len as usize);
    let Some(mut fr) = Frame::new(buf, mb.data_off as usize, mb.data_len as usize) else {
        return f(None);
    };
    let r = f(Some(&mut fr));
    mb.data_off = fr.offset() as u16;
    mb.data_len = fr.len() as u16;
    mb.pkt_len = fr.len() as u32;
    r
}

/// Replaces the data of `p` with a copy of `frame` (one segment, at the default
/// headroom); fails when it does not fit.
///
/// # Safety
/// `p` must be a valid single-owner mbuf of the caller.
pub(super) unsafe fn write_frame(p: *mut ffi::rte_mbuf, frame: &[u8], op: &str) -> Result<()> {
    let headroom = (*p).data_off;
    if frame.len() > ((*p).buf_len - headroom) as usize {
        return Err(Error::other(op, "frame larger than mbuf data room"));
    }
    let dst = ((*p).buf_addr as *mut u8).add(headroom as usize);
    std::ptr::copy_nonoverlapping(frame.as_ptr(), dst, frame.len());
    (*p).data_len = frame.len() as u16;
    (*p).pkt_len = frame.len() as u32;
    (*p).nb_segs = 1;
    Ok(())
}

/// One owned packet buffer: for the control path (building a reply, a
/// gratuitous ARP), not the hot path, which moves packets in [`Burst`]s.
pub struct Mbuf(NonNull<ffi::rte_mbuf>);

// SAFETY: an Mbuf is owned exclusively; mbufs may be freed from any thread.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// A packet holding a copy of `frame`, from `pool`.
    pub fn from_frame(pool: &Mempool, frame: &[u8]) -> Result<Mbuf> {
        // SAFETY: the pool is alive for the call; a NULL return means empty.
        let p = unsafe { ffi::rte_pktmbuf_alloc(pool.ptr.as_ptr()) };
        let m = Mbuf(
            NonNull::new(p).ok_or_else(|| Error::other("rte_pktmbuf_alloc", "mempool empty"))?,
        );
        // SAFETY: m is a fresh mbuf we own (freed by its Drop on error).
        unsafe { write_frame(p, frame, "Mbuf::from_frame")? };
        Ok(m)
    }

    /// The packet's bytes (first segment).
    pub fn data(&self) -> &[u8] {
        // SAFETY: the mbuf is ours and borrowed for &self.
        unsafe { segment(self.0.as_ptr()) }
    }

    /// Runs `f` on the packet as a mutable [`Frame`] over its whole buffer (it
    /// may push headers in front, cut or grow it); the mbuf takes the frame's
    /// new start and length.
    pub fn with_frame<R>(&mut self, f: impl FnOnce(&mut Frame) -> R) -> R {
        // SAFETY: the mbuf is ours, and borrowed mutably for the call.
        unsafe {
            with_frame(self.0.as_ptr(), |fr| {
                f(fr.expect("from_frame makes one segment inside the buffer"))
            })
        }
    }

    /// Moves the packet to the end of `burst`; gives it back if the burst is full.
    pub fn push_to(self, burst: &mut Burst) -> std::result::Result<(), Mbuf> {
        if burst.len == MAX_BURST {
            return Err(self);
        }
        burst.push_raw(self.0.as_ptr());
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it is not referenced after this.
        unsafe { ffi::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}
