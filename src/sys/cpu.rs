//! The CPU: its timestamp counter and cache prefetch.

use super::ffi;

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

/// TSC ticks per second, as measured by EAL.
pub fn tsc_hz() -> u64 {
    // SAFETY: pure read of a value EAL computed at init.
    unsafe { ffi::rte_get_tsc_hz() }
}
