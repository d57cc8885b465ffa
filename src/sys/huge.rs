//! Memory on transparent huge pages: [`HugeTable`] for the tables read at
//! random on the packet path, and [`ThpHeap`], a packet pool's own memory.

use std::ffi::CString;
use std::fmt;
use std::ptr::NonNull;

use super::{cstring, ffi, Error, Result};

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

/// Memory of a packet pool that is not EAL's: anonymous, aligned to and
/// advised onto transparent huge pages, added to DPDK as a malloc heap of
/// its own. It has no IOVAs: for virtual devices, which only use virtual
/// addresses.
pub(super) struct ThpHeap {
    name: CString,
    addr: NonNull<u8>,
    len: usize,
    /// Added to the heap (removed again on drop).
    added: bool,
}

impl ThpHeap {
    /// A heap named `name` of at least `bytes`, its memory mapped and added.
    pub(super) fn new(name: &str, bytes: usize) -> Result<ThpHeap> {
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
    pub(super) fn socket(&self) -> Result<i32> {
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
