//! The exchange between the workers and the control thread, without locks or
//! allocation on the workers' side: what the dataplane learned for the control
//! plane (the senders of ARP replies on the underlay), and frames the control
//! plane wants sent (ARP requests for VTEPs). Bounded queues: when one is full
//! the newest entry is dropped (learning retries, requests are re-sent).

use std::net::Ipv4Addr;

use crossbeam_queue::ArrayQueue;

use crate::mac::MacAddr;

/// The largest frame the control plane injects.
pub const INJECT_MAX: usize = 128;

/// A frame to send on a port.
#[derive(Clone, Copy)]
pub struct Injected {
    pub port: u16,
    pub len: u16,
    pub bytes: [u8; INJECT_MAX],
}

impl Injected {
    /// A frame of at most [`INJECT_MAX`] bytes for `port`.
    pub fn new(port: u16, frame: &[u8]) -> Option<Injected> {
        let mut bytes = [0u8; INJECT_MAX];
        bytes.get_mut(..frame.len())?.copy_from_slice(frame);
        Some(Injected {
            port,
            len: frame.len() as u16,
            bytes,
        })
    }

    pub fn frame(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

pub struct Exchange {
    /// (IP, MAC) of ARP replies seen on the underlay.
    pub learned: ArrayQueue<(Ipv4Addr, MacAddr)>,
    /// Frames for the workers to send.
    pub inject: ArrayQueue<Injected>,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            learned: ArrayQueue::new(256),
            inject: ArrayQueue::new(64),
        }
    }
}
