//! The open-addressing index from a key's hash to a session or binding slot.

use crate::sys::{prefetch, HugeTable};

const EMPTY: u64 = u64::MAX;

/// An open-addressing index (linear probing, backward-shift deletion, load at
/// most one half) from a hash to a slot number: each entry is the hash's high
/// 32 bits (which also pick the home bucket) and the slot, 8 bytes, 8 to a
/// cache line. The caller compares the slot's key on a tag match.
#[derive(Debug)]
pub(super) struct Index {
    pub(super) e: HugeTable<u64>,
    pub(super) mask: usize,
}

impl Index {
    pub(super) fn new(n: usize) -> Index {
        let cap = n.saturating_mul(2).next_power_of_two().max(16);
        Index {
            e: HugeTable::new(cap, EMPTY),
            mask: cap - 1,
        }
    }

    #[inline(always)]
    pub(super) fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = h >> 32;
        let mut i = tag as usize & self.mask;
        loop {
            let e = self.e[i];
            if e == EMPTY {
                return None;
            }
            if e >> 32 == tag && eq(e as u32) {
                return Some(e as u32);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Prefetches `h`'s home bucket.
    #[inline(always)]
    pub(super) fn prefetch(&self, h: u64) {
        prefetch(&self.e[(h >> 32) as usize & self.mask]);
    }

    /// The slot of the first entry with `h`'s tag, unchecked: what [`find`]
    /// will most likely compare (to prefetch it).
    ///
    /// [`find`]: Index::find
    #[inline(always)]
    pub(super) fn first(&self, h: u64) -> Option<u32> {
        let tag = h >> 32;
        let mut i = tag as usize & self.mask;
        loop {
            let e = self.e[i];
            if e == EMPTY {
                return None;
            }
            if e >> 32 == tag {
                return Some(e as u32);
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline(always)]
    pub(super) fn insert(&mut self, h: u64, slot: u32) {
        let tag = h >> 32;
        let mut i = tag as usize & self.mask;
        while self.e[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.e[i] = (tag << 32) | u64::from(slot);
    }

    pub(super) fn remove(&mut self, h: u64, slot: u32) {
        let entry = (h & !0xffff_ffff) | u64::from(slot);
        let mut i = (h >> 32) as usize & self.mask;
        while self.e[i] != entry {
            if self.e[i] == EMPTY {
                debug_assert!(false, "index entry missing");
                return;
            }
            i = (i + 1) & self.mask;
        }
        // Backward shift: move up each later entry of the run that may live
        // in the hole (its home is not between the hole and itself).
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let e = self.e[j];
            if e == EMPTY {
                break;
            }
            let home = (e >> 32) as usize & self.mask;
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(i) & self.mask) {
                self.e[i] = e;
                i = j;
            }
        }
        self.e[i] = EMPTY;
    }
}
