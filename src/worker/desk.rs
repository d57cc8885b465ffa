//! How a worker's ports change while it forwards: the control thread hands
//! it queue handles (a port added) or asks for them back (a port removed)
//! through its desk; the worker takes the changes between two polls, never
//! in the middle of a burst, and counts each one done. A removed port's
//! handles come back through the desk, so the control thread knows when no
//! worker can touch the device any more and may stop and close it.
//!
//! Lockless both ways (bounded queues); the worker looks at its inbox once
//! per poll (one load) and does the rest off the packet path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::sys::{RxQueue, TxQueue};

/// Changes (and given-back handles) a desk holds at once: every port of a
/// node attached in one go, twice over.
pub const DESK_SLOTS: usize = 2 * crate::config::MAX_PORTS;

/// A change of a worker's ports.
pub enum PortChange {
    /// Port `port` (its index in the tables): the RX queues this worker polls
    /// (none, one, or several), and its TX queue (None: the port has none for
    /// this worker; frames for it count `no_tx_queue`).
    Attach {
        port: u16,
        rx: Vec<RxQueue>,
        tx: Option<TxQueue>,
    },
    /// Give back every queue of port `port`.
    Detach { port: u16 },
}

/// What a worker gives back when it lets go of a port.
pub struct Released {
    pub port: u16,
    pub rx: Vec<RxQueue>,
    pub tx: Option<TxQueue>,
}

/// One worker's desk: changes in, handles back, and how many changes it
/// has taken.
pub struct Desk {
    inbox: ArrayQueue<PortChange>,
    released: ArrayQueue<Released>,
    sent: AtomicU64,
    done: AtomicU64,
}

impl Default for Desk {
    fn default() -> Self {
        Desk {
            inbox: ArrayQueue::new(DESK_SLOTS),
            released: ArrayQueue::new(DESK_SLOTS),
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }
    }
}

/// A worker that did not take its changes in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotTaken;

impl Desk {
    /// Leaves a change for the worker (control thread). Refused, and given
    /// back, when the inbox is full.
    pub fn send(&self, c: PortChange) -> Result<(), PortChange> {
        self.inbox.push(c)?;
        self.sent.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Waits until the worker has taken every change sent so far, for at
    /// most `limit` (a polling worker takes them within a poll; a sleeping
    /// one within its longest sleep).
    pub fn wait(&self, limit: Duration) -> Result<(), NotTaken> {
        let sent = self.sent.load(Ordering::Acquire);
        let until = Instant::now() + limit;
        while self.done.load(Ordering::Acquire) < sent {
            if Instant::now() >= until {
                return Err(NotTaken);
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }

    /// Whether the worker has taken every change sent so far.
    pub fn idle(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.sent.load(Ordering::Acquire)
    }

    /// The next handles a worker gave back.
    pub fn take_released(&self) -> Option<Released> {
        self.released.pop()
    }

    /// Drops every change still waiting and every handle given back (the
    /// node stops and its workers never ran or have stopped).
    pub fn clear(&self) {
        while self.inbox.pop().is_some() {}
        while self.released.pop().is_some() {}
    }

    /// Whether a change waits (worker, once per poll).
    #[inline(always)]
    pub(super) fn pending(&self) -> bool {
        !self.inbox.is_empty()
    }

    pub(super) fn next(&self) -> Option<PortChange> {
        self.inbox.pop()
    }

    /// Gives handles back (worker). The queue holds a node's every port
    /// twice; were it full, the handles are dropped here, which only lets
    /// go of the worker's reference to the port (no call into the driver).
    pub(super) fn give_back(&self, r: Released) {
        let _ = self.released.push(r);
    }

    pub(super) fn taken(&self) {
        self.done.fetch_add(1, Ordering::Release);
    }
}
