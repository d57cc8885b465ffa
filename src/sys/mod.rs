//! Every `unsafe` of dvr: the generated DPDK bindings, the wrappers for DPDK's
//! `static inline` functions, one layer of safe types above them, and the
//! huge-page memory of the hot tables.
//!
//! - `eal`: the DPDK environment and worker-thread registration
//! - `cpu`: timestamp counter and prefetch
//! - `mempool`: pools of packet buffers
//! - `mbuf`: one owned packet buffer ([`Mbuf`]) and the raw segment access
//! - `burst`: a burst of owned packets ([`Burst`]) and a packet of it ([`Pkt`])
//! - `port`: ethdev ports and virtual devices
//! - `queue`: the right to poll an RX queue / transmit on a TX queue
//! - `huge`: memory on transparent huge pages ([`HugeTable`], a pool's own heap)
//!
//! Everything outside this module is `#![deny(unsafe_code)]`. Every `unsafe` block
//! here carries a `// SAFETY:` line saying why the call is sound.
//!
//! Ownership rules that make the safe layer sound:
//! - [`Eal::init`] runs once per process; the argument strings are leaked, since EAL
//!   keeps pointers to them for the life of the process.
//! - A [`Burst`] owns the mbufs it holds: dropping it frees them in bulk.
//! - An [`RxQueue`] / [`TxQueue`] handle is created once per (port, queue) and is not
//!   `Clone`: DPDK requires that one queue is polled by one thread at a time, and the
//!   `&mut self` receivers make that a compile-time fact.
//! - A [`Port`] keeps its [`Mempool`] alive (the RX rings hold its mbufs) and is stopped
//!   and closed by [`Port::close`] or on drop, after its queue handles are gone
//!   (each handle holds an `Arc` of the port).
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::ffi::{CStr, CString};
use std::fmt;

mod burst;
mod cpu;
mod eal;
mod huge;
mod mbuf;
mod mempool;
mod port;
mod queue;

pub use burst::{Burst, FramePkt, Frames, Pkt, MAX_BURST};
pub use cpu::{prefetch, rdtsc, tsc_hz};
pub use eal::{register_thread, unregister_thread, Eal};
pub use huge::HugeTable;
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{
    dev_info, port_by_name, ring_pair, vdev_create, vdev_remove, DevInfo, Port, PortSetup,
    PortStats,
};
pub use queue::{RxQueue, TxQueue, TxResult};

#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    improper_ctypes,
    unnecessary_transmutes,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]
mod ffi {
    include!(concat!(env!("OUT_DIR"), "/dpdk_bindings.rs"));
}

/// An error from a DPDK call, with DPDK's own message for the error number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub op: String,
    pub code: i32,
    pub msg: String,
}

impl Error {
    fn from_code(op: impl Into<String>, code: i32) -> Self {
        let code = code.abs();
        // SAFETY: rte_strerror returns a pointer to a static or thread-local
        // NUL-terminated string for any error number; we copy it at once.
        let msg = unsafe { CStr::from_ptr(ffi::rte_strerror(code)) }
            .to_string_lossy()
            .into_owned();
        Error {
            op: op.into(),
            code,
            msg,
        }
    }

    fn from_errno(op: impl Into<String>) -> Self {
        // SAFETY: dvr_errno only reads the calling thread's rte_errno.
        let code = unsafe { ffi::dvr_errno() };
        Self::from_code(op, code)
    }

    fn other(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error {
            op: op.into(),
            code: 0,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.msg)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn cstring(op: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::other(op, format!("{s:?} contains a NUL byte")))
}
