//! Pools of packet buffers.

use std::ptr::NonNull;
use std::sync::Arc;

use super::huge::ThpHeap;
use super::{cstring, ffi, Burst, Error, Result, MAX_BURST};

/// A pool of packet buffers.
pub struct Mempool {
    pub(super) ptr: NonNull<ffi::rte_mempool>,
    name: String,
    /// The pool's own memory, when it is not EAL's ([`Mempool::new_thp`]);
    /// released after the pool (fields drop after `Drop::drop`).
    heap: Option<ThpHeap>,
}

// SAFETY: rte_mempool is designed for concurrent use from many lcores; the pointer
// is only freed in Drop, when no other reference exists.
unsafe impl Send for Mempool {}
// SAFETY: as above: every operation we expose on &Mempool is thread-safe in DPDK.
unsafe impl Sync for Mempool {}

/// Bytes a packet buffer of the default data room takes in a pool, with the
/// mempool's header and alignment (2,304 bytes of mbuf and data room, a
/// 64-byte object header, rounded up).
const MBUF_FOOTPRINT: usize = 2432;
/// Room a pool's own memory keeps beyond its buffers: the pool structure,
/// its ring and per-lcore caches, and the buffers a 2 MiB page cannot hold
/// whole at its end.
const POOL_SLACK: usize = 8 << 20;

impl Mempool {
    /// A packet mbuf pool of `n` buffers with a per-lcore cache of `cache` and the
    /// default data room (2048 bytes + headroom), in EAL's memory.
    pub fn new(name: &str, n: u32, cache: u32) -> Result<Arc<Mempool>> {
        // SOCKET_ID_ANY (-1) lets DPDK choose the memory.
        Self::create(name, n, cache, -1, None)
    }

    /// As [`Mempool::new`], in memory of the pool's own on transparent huge
    /// pages ([`ThpHeap`]) instead of EAL's. Without hugepages (`--no-huge`)
    /// EAL's memory is 4 KiB pages, one buffer per page, and every buffer a
    /// packet touches costs a TLB entry; on 2 MiB pages the buffers are
    /// packed and a few entries cover them. For virtual devices only: the
    /// memory has no IOVAs, which a NIC's DMA would need.
    pub fn new_thp(name: &str, n: u32, cache: u32) -> Result<Arc<Mempool>> {
        let bytes = n as usize * MBUF_FOOTPRINT + POOL_SLACK;
        let heap = ThpHeap::new(&format!("{name}_thp"), bytes)?;
        let socket = heap.socket()?;
        Self::create(name, n, cache, socket, Some(heap))
    }

    fn create(
        name: &str,
        n: u32,
        cache: u32,
        socket: i32,
        heap: Option<ThpHeap>,
    ) -> Result<Arc<Mempool>> {
        let op = format!("rte_pktmbuf_pool_create({name})");
        let cname = cstring(&op, name)?;
        // SAFETY: cname is a valid C string copied by DPDK; sizes are plain
        // integers; `socket` is SOCKET_ID_ANY or the socket of `heap`, which
        // lives as long as the pool.
        let p = unsafe {
            ffi::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                n,
                cache,
                0,
                ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        match NonNull::new(p) {
            Some(ptr) => Ok(Arc::new(Mempool {
                ptr,
                name: name.to_owned(),
                heap,
            })),
            None => Err(Error::from_errno(op)),
        }
    }

    /// Whether the pool's buffers are in memory of its own on transparent
    /// huge pages ([`Mempool::new_thp`]).
    pub fn on_thp(&self) -> bool {
        self.heap.is_some()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Buffers currently available (in the pool and the caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive for &self; the count is a read.
        unsafe { ffi::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Fills `burst` up to `n` packets with freshly allocated, empty mbufs.
    pub fn alloc_into(&self, burst: &mut Burst, n: usize) -> Result<()> {
        let n = n.min(MAX_BURST - burst.len);
        if n == 0 {
            return Ok(());
        }
        // SAFETY: the destination slots [len, len+n) lie inside the array; on success
        // DPDK writes n valid mbuf pointers there and we take ownership of them.
        let rc = unsafe {
            ffi::rte_pktmbuf_alloc_bulk(
                self.ptr.as_ptr(),
                burst.pkts.as_mut_ptr().add(burst.len),
                n as u32,
            )
        };
        if rc != 0 {
            return Err(Error::other("rte_pktmbuf_alloc_bulk", "mempool empty"));
        }
        burst.len += n;
        Ok(())
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the last reference is going away (ports hold an Arc, so all ports
        // using it are closed), so no mbuf of it is still in a queue.
        unsafe { ffi::rte_mempool_free(self.ptr.as_ptr()) }
    }
}
