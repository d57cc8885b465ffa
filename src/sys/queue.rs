//! The right to poll one RX queue, or to transmit on one TX queue, of a port.

use std::sync::Arc;

use super::{ffi, Burst, Port, MAX_BURST};

/// The right to poll one RX queue of a port.
pub struct RxQueue {
    pub(super) port: Arc<Port>,
    pub(super) queue: u16,
}

impl RxQueue {
    pub fn port(&self) -> &Arc<Port> {
        &self.port
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to `max` packets, appended to `burst`. Returns how many.
    #[inline]
    pub fn rx(&mut self, burst: &mut Burst, max: usize) -> usize {
        let room = (MAX_BURST - burst.len).min(max);
        // SAFETY: &mut self makes this the only poller of the queue; the driver
        // writes at most `room` mbuf pointers into our array, which we then own.
        let n = unsafe {
            ffi::rte_eth_rx_burst(
                self.port.id,
                self.queue,
                burst.pkts.as_mut_ptr().add(burst.len),
                room as u16,
            )
        } as usize;
        burst.len += n;
        n
    }
}

/// The right to transmit on one TX queue of a port.
pub struct TxQueue {
    pub(super) port: Arc<Port>,
    pub(super) queue: u16,
}

/// What [`TxQueue::tx`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxResult {
    pub sent: u64,
    pub bytes: u64,
    pub dropped: u64,
}

impl TxQueue {
    pub fn port(&self) -> &Arc<Port> {
        &self.port
    }

    /// Sends the burst. What the queue does not take is freed and counted as
    /// dropped. `burst` is empty afterwards.
    #[inline]
    pub fn tx(&mut self, burst: &mut Burst) -> TxResult {
        let bytes = burst.bytes();
        self.tx_with_bytes(burst, bytes)
    }

    /// [`TxQueue::tx`] for a caller that already knows the burst's total length
    /// in bytes (`bytes_all`), which saves a pass over the mbufs.
    #[inline]
    pub fn tx_with_bytes(&mut self, burst: &mut Burst, bytes_all: u64) -> TxResult {
        if burst.len == 0 {
            return TxResult::default();
        }
        let total = burst.len;
        // SAFETY: &mut self makes this the only user of the queue; the driver takes
        // ownership of the first `n` mbufs.
        let n = unsafe {
            ffi::rte_eth_tx_burst(
                self.port.id,
                self.queue,
                burst.pkts.as_mut_ptr(),
                total as u16,
            )
        } as usize;
        let mut unsent_bytes = 0u64;
        for i in n..total {
            // SAFETY: slots n..total are still ours.
            unsent_bytes += unsafe { (*burst.pkts[i]).pkt_len } as u64;
        }
        if n < total {
            // SAFETY: the unsent mbufs are ours; free them in bulk, then forget them.
            unsafe {
                ffi::rte_pktmbuf_free_bulk(burst.pkts.as_mut_ptr().add(n), (total - n) as u32);
            }
        }
        burst.len = 0;
        TxResult {
            sent: n as u64,
            bytes: bytes_all - unsent_bytes,
            dropped: (total - n) as u64,
        }
    }
}
