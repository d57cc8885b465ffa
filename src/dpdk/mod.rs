//! The only place of dvr that touches DPDK: the generated bindings, the wrappers
//! for DPDK's `static inline` functions, and one layer of safe types above them.
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
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::pkt::Frame;

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

/// The largest burst a [`Burst`] holds.
pub const MAX_BURST: usize = 64;

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

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// The DPDK environment of this process. Created once; [`Eal::cleanup`] ends it.
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Starts EAL with `args` (without the program name). Fails if EAL was already
    /// started in this process: EAL can start only once.
    pub fn init(program: &str, args: &[String]) -> Result<Eal> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(Error::other(
                "rte_eal_init",
                "EAL already started in this process",
            ));
        }
        let mut argv: Vec<*mut libc::c_char> = Vec::with_capacity(args.len() + 2);
        for a in std::iter::once(program).chain(args.iter().map(String::as_str)) {
            // EAL keeps pointers into argv for the life of the process: leak on purpose.
            argv.push(cstring("rte_eal_init", a)?.into_raw());
        }
        argv.push(std::ptr::null_mut());
        let argv: &'static mut [*mut libc::c_char] = Box::leak(argv.into_boxed_slice());
        // SAFETY: argv is a NULL-terminated array of valid, leaked C strings that
        // outlive EAL; argc excludes the terminating NULL; EAL_STARTED guarantees a
        // single call per process.
        let rc = unsafe { ffi::rte_eal_init((argv.len() - 1) as i32, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(Error::from_errno("rte_eal_init"));
        }
        Ok(Eal { _private: () })
    }

    /// EAL's runtime directory of this process (`/var/run/dpdk/<file-prefix>`).
    pub fn runtime_dir(&self) -> std::path::PathBuf {
        // SAFETY: EAL is started (we hold an Eal); the function returns a pointer
        // to a static NUL-terminated string, copied at once.
        let s = unsafe { CStr::from_ptr(ffi::rte_eal_get_runtime_dir()) };
        std::path::PathBuf::from(s.to_string_lossy().into_owned())
    }

    /// Releases EAL's resources, then removes its runtime directory (sockets
    /// and config files that 22.11 leaves behind). Call after every port is
    /// closed and every mempool dropped.
    pub fn cleanup(self) {
        let dir = self.runtime_dir();
        // SAFETY: consumes the only Eal; callers have closed ports and pools.
        unsafe {
            ffi::rte_eal_cleanup();
        }
        // Always <base>/dpdk/<file-prefix>; never remove anything else.
        if dir.parent().and_then(|p| p.file_name()) == Some(std::ffi::OsStr::new("dpdk")) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Timestamp counter, in cycles.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the TSC; no memory is touched.
    unsafe { ffi::rte_rdtsc() }
}

/// Asks the CPU to bring the cache line holding `r` into its caches (DPDK's
/// `rte_prefetch0`): a hash table's bucket or slot a few packets ahead.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees and never
    // faults; the address comes from a live reference anyway.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// The size of a transparent huge page on x86-64.
const HUGE_PAGE: usize = 2 << 20;

/// A fixed-size table of `Copy` values on whole, aligned 2 MiB pages advised
/// as transparent huge pages: a table read at random on the packet path then
/// costs one TLB entry per 2 MiB instead of one per 4 KiB page (a page walk
/// per lookup once the mbufs have filled the TLB). The pages are mapped here
/// (the allocator may hand out heap memory already backed by small pages).
/// Without huge pages it works all the same, on small pages; tables under
/// 2 MiB are plain allocations.
pub struct HugeTable<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    /// Bytes mapped (huge), or the allocation's layout (small).
    mem: std::result::Result<usize, std::alloc::Layout>,
}

// SAFETY: a HugeTable owns its memory exclusively, like a Box<[T]>.
unsafe impl<T: Copy + Send> Send for HugeTable<T> {}
// SAFETY: shared access only reads, like &[T].
unsafe impl<T: Copy + Sync> Sync for HugeTable<T> {}

impl<T: Copy> HugeTable<T> {
    /// `n` copies of `v` (at least one).
    pub fn new(n: usize, v: T) -> HugeTable<T> {
        let n = n.max(1);
        let bytes = std::mem::size_of::<T>()
            .checked_mul(n)
            .expect("table size overflows")
            .max(1);
        let (raw, mem) = if bytes >= HUGE_PAGE && std::mem::align_of::<T>() <= HUGE_PAGE {
            let size = bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE;
            (map_huge(size), Ok(size))
        } else {
            let layout = std::alloc::Layout::from_size_align(bytes, std::mem::align_of::<T>())
                .expect("valid layout");
            // SAFETY: the layout has a non-zero size.
            (unsafe { std::alloc::alloc(layout) }, Err(layout))
        };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else {
            panic!("out of memory for a table of {bytes} bytes");
        };
        for i in 0..n {
            // SAFETY: n elements fit in the memory (at least n * size_of T bytes).
            unsafe { ptr.as_ptr().add(i).write(v) };
        }
        HugeTable { ptr, len: n, mem }
    }
}

/// Maps `size` bytes (a multiple of [`HUGE_PAGE`]) aligned to a huge
/// page and advises them as huge; null when the mapping fails.
fn map_huge(size: usize) -> *mut u8 {
    let span = size + HUGE_PAGE;
    // SAFETY: an anonymous private mapping of fresh memory; nothing else
    // refers to it. The head and tail beyond the aligned `size` bytes are
    // unmapped again (whole pages of our own mapping), and the advice
    // only changes how the kernel backs pages not yet touched; its
    // failure (no THP) leaves small pages.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        let start = p as usize;
        let aligned = (start + HUGE_PAGE - 1) & !(HUGE_PAGE - 1);
        if aligned > start {
            libc::munmap(p, aligned - start);
        }
        let tail = start + span - (aligned + size);
        if tail > 0 {
            libc::munmap((aligned + size) as *mut libc::c_void, tail);
        }
        libc::madvise(aligned as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
        aligned as *mut u8
    }
}

impl<T: Copy> std::ops::Deref for HugeTable<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: ptr holds len initialised elements, owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> std::ops::DerefMut for HugeTable<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> fmt::Debug for HugeTable<T> {
    /// The size only: the tables are large.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HugeTable({} entries)", self.len)
    }
}

impl<T: Copy> Drop for HugeTable<T> {
    fn drop(&mut self) {
        match self.mem {
            // SAFETY: mapped in HugeTable::map with this size; T: Copy needs no drop.
            Ok(size) => unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), size);
            },
            // SAFETY: allocated in new with this very layout.
            Err(layout) => unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), layout) },
        }
    }
}

/// TSC ticks per second, as measured by EAL.
pub fn tsc_hz() -> u64 {
    // SAFETY: pure read of a value EAL computed at init.
    unsafe { ffi::rte_get_tsc_hz() }
}

/// Registers the calling (already pinned) thread with EAL so that it gets an lcore
/// id, and with it the per-lcore mempool caches. Returns the lcore id.
pub fn register_thread() -> Result<u32> {
    // SAFETY: registers the calling thread; EAL must be started (callers hold an Eal).
    let rc = unsafe { ffi::rte_thread_register() };
    if rc < 0 {
        return Err(Error::from_errno("rte_thread_register"));
    }
    // SAFETY: reads the calling thread's lcore id.
    Ok(unsafe { ffi::rte_lcore_id() })
}

/// Undoes [`register_thread`] for the calling thread.
pub fn unregister_thread() {
    // SAFETY: only releases the calling thread's lcore id.
    unsafe { ffi::rte_thread_unregister() }
}

/// A pool of packet buffers.
pub struct Mempool {
    ptr: NonNull<ffi::rte_mempool>,
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

/// Memory of a packet pool that is not EAL's: anonymous, aligned to and
/// advised onto transparent huge pages, added to DPDK as a malloc heap of
/// its own. It has no IOVAs: for virtual devices, which only use virtual
/// addresses.
struct ThpHeap {
    name: CString,
    addr: NonNull<u8>,
    len: usize,
    /// Added to the heap (removed again on drop).
    added: bool,
}

impl ThpHeap {
    /// A heap named `name` of at least `bytes`, its memory mapped and added.
    fn new(name: &str, bytes: usize) -> Result<ThpHeap> {
        let op = format!("THP heap {name}");
        let cname = cstring(&op, name)?;
        let len = bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let Some(addr) = NonNull::new(map_huge(len)) else {
            return Err(Error::other(op, format!("mmap of {len} bytes failed")));
        };
        // SAFETY: cname is a valid C string DPDK copies.
        if unsafe { ffi::rte_malloc_heap_create(cname.as_ptr()) } != 0 {
            // SAFETY: our own mapping of `len` bytes, not yet given to DPDK.
            unsafe { libc::munmap(addr.as_ptr().cast(), len) };
            return Err(Error::from_errno(format!("rte_malloc_heap_create({name})")));
        }
        let mut heap = ThpHeap {
            name: cname,
            addr,
            len,
            added: false,
        };
        // SAFETY: `len` bytes at `addr` are our mapping, aligned to and a
        // multiple of HUGE_PAGE; no IOVA table (null): DPDK records none.
        let rc = unsafe {
            ffi::rte_malloc_heap_memory_add(
                heap.name.as_ptr(),
                addr.as_ptr().cast(),
                len,
                std::ptr::null_mut(),
                (len / HUGE_PAGE) as u32,
                HUGE_PAGE,
            )
        };
        if rc != 0 {
            // `heap` drops: the heap is destroyed and the memory unmapped.
            return Err(Error::from_errno(format!(
                "rte_malloc_heap_memory_add({name})"
            )));
        }
        heap.added = true;
        Ok(heap)
    }

    /// The socket id DPDK gave the heap (allocations on it use its memory).
    fn socket(&self) -> Result<i32> {
        // SAFETY: a valid C string naming a heap we created.
        let s = unsafe { ffi::rte_malloc_heap_get_socket(self.name.as_ptr()) };
        if s < 0 {
            return Err(Error::from_errno("rte_malloc_heap_get_socket"));
        }
        Ok(s)
    }
}

impl Drop for ThpHeap {
    fn drop(&mut self) {
        // SAFETY: nothing is allocated from the heap any more (its pool was
        // freed first); then the memory is ours again to unmap.
        unsafe {
            if self.added {
                ffi::rte_malloc_heap_memory_remove(
                    self.name.as_ptr(),
                    self.addr.as_ptr().cast(),
                    self.len,
                );
            }
            ffi::rte_malloc_heap_destroy(self.name.as_ptr());
            libc::munmap(self.addr.as_ptr().cast(), self.len);
        }
    }
}

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

/// The first segment's bytes of `m`.
///
/// # Safety
/// `m` must be a valid mbuf that the caller owns for the returned lifetime.
#[inline(always)]
unsafe fn segment<'a>(m: *const ffi::rte_mbuf) -> &'a [u8] {
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
unsafe fn with_frame<R>(m: *mut ffi::rte_mbuf, f: impl FnOnce(Option<&mut Frame>) -> R) -> R {
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
unsafe fn write_frame(p: *mut ffi::rte_mbuf, frame: &[u8], op: &str) -> Result<()> {
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

/// Up to [`MAX_BURST`] owned packets. Dropping a burst frees what it still holds.
pub struct Burst {
    len: usize,
    pkts: [*mut ffi::rte_mbuf; MAX_BURST],
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
    fn push_raw(&mut self, m: *mut ffi::rte_mbuf) {
        debug_assert!(self.len < MAX_BURST);
        self.pkts[self.len] = m;
        self.len += 1;
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

/// Counters kept by the driver for a port.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// How a port is set up.
#[derive(Debug, Clone)]
pub struct PortSetup {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub promiscuous: bool,
}

/// An ethdev port: probed, configured, started.
pub struct Port {
    id: u16,
    name: String,
    closed: AtomicBool,
    /// The link was down when last looked at ([`Port::refresh_link`]).
    link_down: AtomicBool,
    _pool: Arc<Mempool>,
}

impl fmt::Debug for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Port({} {})", self.id, self.name)
    }
}

/// Creates a virtual device (`net_pcap0`, `net_vhost1`, ...) with its arguments.
pub fn vdev_create(devname: &str, args: &str) -> Result<u16> {
    let op = format!("rte_vdev_init({devname},{args})");
    let n = cstring(&op, devname)?;
    let a = cstring(&op, args)?;
    // SAFETY: both are valid C strings that DPDK copies.
    let rc = unsafe { ffi::rte_vdev_init(n.as_ptr(), a.as_ptr()) };
    if rc < 0 {
        return Err(Error::from_code(op, rc));
    }
    port_by_name(devname)
}

/// Port id of a device probed by EAL (a PCI address or a vdev name).
pub fn port_by_name(devname: &str) -> Result<u16> {
    let op = format!("rte_eth_dev_get_port_by_name({devname})");
    let n = cstring(&op, devname)?;
    let mut id = 0u16;
    // SAFETY: valid C string and a valid out pointer.
    let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(n.as_ptr(), &mut id) };
    if rc < 0 {
        return Err(Error::from_code(op, rc));
    }
    Ok(id)
}

/// Creates two ring ports `a` and `b` wired to each other: what `a` sends, `b`
/// receives, and the other way round.
pub fn ring_pair(a: &str, b: &str, size: u32) -> Result<(u16, u16)> {
    let op = format!("rte_eth_from_rings({a},{b})");
    let mk = |name: String| -> Result<*mut ffi::rte_ring> {
        let c = cstring(&op, &name)?;
        // SAFETY: valid name; single-producer/single-consumer flags since each ring
        // has one sending and one receiving queue.
        let r = unsafe {
            ffi::rte_ring_create(
                c.as_ptr(),
                size,
                -1,
                ffi::RING_F_SP_ENQ | ffi::RING_F_SC_DEQ,
            )
        };
        if r.is_null() {
            Err(Error::from_errno(format!("rte_ring_create({name})")))
        } else {
            Ok(r)
        }
    };
    // Ring names are short (RTE_RING_NAMESIZE); number them.
    static RINGS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RINGS.fetch_add(2, Ordering::Relaxed);
    let ab = mk(format!("dvr_ring{n}"))?;
    let ba = mk(format!("dvr_ring{}", n + 1))?;
    let ca = cstring(&op, a)?;
    let cb = cstring(&op, b)?;
    // SAFETY: the ring pointers are valid rings created above; arrays of one ring
    // each; DPDK keeps the ring pointers (the rings live for the process).
    let pa = unsafe { ffi::rte_eth_from_rings(ca.as_ptr(), &ba, 1, &ab, 1, 0) };
    if pa < 0 {
        return Err(Error::from_errno(op));
    }
    // SAFETY: as above, crossed.
    let pb = unsafe { ffi::rte_eth_from_rings(cb.as_ptr(), &ab, 1, &ba, 1, 0) };
    if pb < 0 {
        return Err(Error::from_errno(op));
    }
    Ok((pa as u16, pb as u16))
}

/// What a device supports.
#[derive(Debug, Clone)]
pub struct DevInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
}

/// The limits of probed port `id`.
pub fn dev_info(id: u16) -> Result<DevInfo> {
    let mut info = ffi::rte_eth_dev_info::default();
    // SAFETY: out pointer to our local; DPDK fills it.
    let rc = unsafe { ffi::rte_eth_dev_info_get(id, &mut info) };
    if rc < 0 {
        return Err(Error::from_code(format!("rte_eth_dev_info_get({id})"), rc));
    }
    let driver = if info.driver_name.is_null() {
        String::new()
    } else {
        // SAFETY: driver_name points to the driver's static NUL-terminated name.
        unsafe { CStr::from_ptr(info.driver_name) }
            .to_string_lossy()
            .into_owned()
    };
    Ok(DevInfo {
        driver,
        max_rx_queues: info.max_rx_queues,
        max_tx_queues: info.max_tx_queues,
    })
}

impl Port {
    /// Configures and starts port `id` with `setup`, RX buffers from `pool`.
    pub fn start(id: u16, name: &str, setup: &PortSetup, pool: &Arc<Mempool>) -> Result<Arc<Port>> {
        let conf = ffi::rte_eth_conf::default();
        // SAFETY: id is a probed port; conf is a zeroed (default) config we own.
        let rc = unsafe { ffi::rte_eth_dev_configure(id, setup.rx_queues, setup.tx_queues, &conf) };
        if rc < 0 {
            return Err(Error::from_code(
                format!("rte_eth_dev_configure({name})"),
                rc,
            ));
        }
        let (mut rxd, mut txd) = (setup.rx_desc, setup.tx_desc);
        // SAFETY: valid port id and out pointers to our locals.
        let rc = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rxd, &mut txd) };
        if rc < 0 {
            return Err(Error::from_code(
                format!("rte_eth_dev_adjust_nb_rx_tx_desc({name})"),
                rc,
            ));
        }
        // SAFETY: valid port id; returns the device's NUMA socket or -1.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..setup.rx_queues {
            // SAFETY: configured port, queue index below the configured count, NULL
            // rxconf means the driver's default, the pool outlives the port (Arc).
            let rc = unsafe {
                ffi::rte_eth_rx_queue_setup(id, q, rxd, socket, std::ptr::null(), pool.ptr.as_ptr())
            };
            if rc < 0 {
                return Err(Error::from_code(
                    format!("rte_eth_rx_queue_setup({name}, {q})"),
                    rc,
                ));
            }
        }
        for q in 0..setup.tx_queues {
            // SAFETY: as above; NULL txconf = driver default.
            let rc = unsafe { ffi::rte_eth_tx_queue_setup(id, q, txd, socket, std::ptr::null()) };
            if rc < 0 {
                return Err(Error::from_code(
                    format!("rte_eth_tx_queue_setup({name}, {q})"),
                    rc,
                ));
            }
        }
        if setup.promiscuous {
            // SAFETY: valid port; failure (drivers without the mode) is harmless.
            unsafe { ffi::rte_eth_promiscuous_enable(id) };
        }
        // SAFETY: fully configured port.
        let rc = unsafe { ffi::rte_eth_dev_start(id) };
        if rc < 0 {
            return Err(Error::from_code(format!("rte_eth_dev_start({name})"), rc));
        }
        let port = Arc::new(Port {
            id,
            name: name.to_owned(),
            closed: AtomicBool::new(false),
            link_down: AtomicBool::new(false),
            _pool: pool.clone(),
        });
        port.refresh_link();
        Ok(port)
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut a = ffi::rte_ether_addr::default();
        // SAFETY: valid port, out pointer to our local.
        unsafe { ffi::rte_eth_macaddr_get(self.id, &mut a) };
        a.addr_bytes
    }

    /// Whether the link is up (vhost-user: a guest is connected).
    pub fn link_up(&self) -> bool {
        let mut l = ffi::rte_eth_link::default();
        // SAFETY: valid port, out pointer to our local; the call does not wait.
        let rc = unsafe { ffi::rte_eth_link_get_nowait(self.id, &mut l) };
        rc == 0 && l.link_status() != 0
    }

    /// Looks at the link again (a call into the driver: the control thread
    /// does it, a few times a second) and remembers it for
    /// [`Port::link_known_down`]. Returns whether it is up.
    pub fn refresh_link(&self) -> bool {
        let up = self.link_up();
        self.link_down.store(!up, Ordering::Relaxed);
        up
    }

    /// Whether the link was down when last looked at ([`Port::refresh_link`]):
    /// one load, for the workers (a vhost-user port whose guest has not set
    /// up its queues yet is down).
    #[inline]
    pub fn link_known_down(&self) -> bool {
        self.link_down.load(Ordering::Relaxed)
    }

    /// The driver's counters for this port.
    pub fn stats(&self) -> PortStats {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: valid port, out pointer to our local.
        unsafe { ffi::rte_eth_stats_get(self.id, &mut s) };
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// The queue handles of this port: one RX and one TX handle per queue. Call it
    /// once per port (the handles are the only way to poll its queues).
    pub fn queues(self: &Arc<Self>, rx: u16, tx: u16) -> (Vec<RxQueue>, Vec<TxQueue>) {
        let r = (0..rx)
            .map(|q| RxQueue {
                port: self.clone(),
                queue: q,
            })
            .collect();
        let t = (0..tx)
            .map(|q| TxQueue {
                port: self.clone(),
                queue: q,
            })
            .collect();
        (r, t)
    }

    /// Stops and closes the port. Idempotent; also done on drop.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // SAFETY: the port was started by us; no queue handle is polling (they hold
        // an Arc to the port, and callers drop workers first).
        unsafe {
            ffi::rte_eth_dev_stop(self.id);
            ffi::rte_eth_dev_close(self.id);
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.close();
    }
}

/// The right to poll one RX queue of a port.
pub struct RxQueue {
    port: Arc<Port>,
    queue: u16,
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
    port: Arc<Port>,
    queue: u16,
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
