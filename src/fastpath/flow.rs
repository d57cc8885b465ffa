//! The per-worker flow cache of the east-west path: what the full pipeline
//! decided for an IPv4 frame from a VM port, kept by the frame's key so the
//! next frames of the flow skip the lookups (FDB, router, routing trie,
//! neighbour, network).
//!
//! The key is everything those decisions read from the frame: the ingress
//! port, both MACs, the EtherType, the IPv4 source and destination. The value
//! is the outcome of a frame switched to a known port, or routed to a known
//! neighbour (its MACs after the rewrite): where it goes (a local port, or
//! another host through the network's overlay). Entries belong to one
//! snapshot ([`Snapshot::epoch`]): a table change makes every entry stale at
//! once, without a sweep.
//!
//! What depends on each frame is still checked on each frame by the pipeline
//! (IPv4 header and checksum, TTL, MTU); a frame that does not pass them takes
//! the full pipeline, which then decides exactly as it would have uncached.
//!
//! [`Snapshot::epoch`]: crate::tables::Snapshot::epoch

use crate::model::NetworkType;
use crate::sys::HugeTable;

/// Where a cached flow goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// A local port.
    Port(u16),
    /// Host `host` (index) over the overlay of a network of type `kind`,
    /// segment `segment`.
    Host {
        host: u16,
        kind: NetworkType,
        segment: u32,
    },
}

/// The cached outcome of a frame: routed (checked, TTL decremented, MACs
/// rewritten) or switched as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub routed: bool,
    /// Destination and source MAC after the rewrite (routed).
    pub macs: [u8; 12],
    /// The egress network's MTU.
    pub mtu: u16,
    pub out: Out,
}

/// A frame's key: ingress port with the destination MAC; source MAC with the
/// EtherType; IPv4 source and destination (bytes as on the wire).
pub type Key = [u64; 3];

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Entry {
    key: Key,
    /// The snapshot the entry was learned on; 0: empty.
    epoch: u64,
    action: Action,
}

const EMPTY: Entry = Entry {
    key: [0; 3],
    epoch: 0,
    action: Action {
        routed: false,
        macs: [0; 12],
        mtu: 0,
        out: Out::Port(0),
    },
};

/// `x` mixed for a table index (its low bits): the full 128-bit product with
/// an odd constant, its halves folded together (as foldhash and wyhash
/// mix), so every bit of `x` moves the low bits. One multiplication; the
/// middle bits of a 64-bit product alone ignore the top of `x`, and sent
/// 128 tunnels that differ in one MAC byte to 16 entries.
#[inline(always)]
pub fn fold_mul(x: u64) -> u64 {
    let p = x as u128 * 0x9E37_79B9_7F4A_7C15u128;
    p as u64 ^ (p >> 64) as u64
}

/// Ways per set: a new flow replaces the set's older entry.
const WAYS: usize = 2;

/// Sets of a worker's cache (`WAYS` × 64 bytes each: 2 MiB, one huge page).
pub const WORKER_SETS: usize = 16384;

/// A set-associative cache of [`Action`]s by [`Key`].
pub struct FlowCache {
    sets: HugeTable<[Entry; WAYS]>,
    mask: usize,
    /// The key and set of the frame being decided by the full pipeline, and
    /// what it decided (see [`FlowCache::offer`]).
    pending: Option<(Key, usize)>,
    learned: Option<Action>,
    /// Off: nothing is ever cached (every frame takes the full pipeline).
    learn: bool,
    pub hits: u64,
    pub inserts: u64,
}

impl FlowCache {
    /// A cache of `sets` sets (rounded up to a power of two).
    pub fn new(sets: usize) -> FlowCache {
        let n = sets.max(1).next_power_of_two();
        FlowCache {
            sets: HugeTable::new(n, [EMPTY; WAYS]),
            mask: n - 1,
            pending: None,
            learned: None,
            learn: true,
            hits: 0,
            inserts: 0,
        }
    }

    /// A cache that caches nothing: every frame takes the full pipeline
    /// (to measure or compare it).
    pub fn off() -> FlowCache {
        FlowCache {
            learn: false,
            ..FlowCache::new(1)
        }
    }

    /// The key of frame `b` from port `in_port` (None: shorter than an
    /// Ethernet and an IPv4 header).
    #[inline(always)]
    pub fn key(in_port: u16, b: &[u8]) -> Option<Key> {
        let h = b.first_chunk::<34>()?;
        let w = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        // Bytes 0..6 (destination MAC) with the port in the top 16 bits.
        let dst = w(0) & 0x0000_ffff_ffff_ffff | (in_port as u64) << 48;
        Some([dst, w(6), w(26)])
    }

    /// The set of key `k` (a worker works it out once per frame, a few
    /// frames ahead, for [`FlowCache::prefetch_set`] and [`FlowCache::peek`]).
    #[inline(always)]
    pub fn set_of(&self, k: &Key) -> usize {
        let x = k[0] ^ k[1].rotate_left(21) ^ k[2].rotate_left(43);
        fold_mul(x) as usize & self.mask
    }

    /// Prefetches set `s` ([`FlowCache::set_of`]).
    #[inline(always)]
    pub fn prefetch_set(&self, s: usize) {
        if let Some(set) = self.sets.get(s) {
            crate::sys::prefetch(set);
        }
    }

    /// The action cached for `k`, whose set is `s` ([`FlowCache::set_of`]),
    /// on snapshot `epoch`; neither counts a hit nor keeps the key.
    #[inline(always)]
    pub fn peek(&self, epoch: u64, k: &Key, s: usize) -> Option<&Action> {
        // Word by word: the key was just stored as three words, and one
        // wider load of it would stall on store forwarding.
        self.sets.get(s)?.iter().find_map(|e| {
            (e.key[0] == k[0] && e.key[1] == k[1] && e.key[2] == k[2] && e.epoch == epoch)
                .then_some(&e.action)
        })
    }

    /// The action cached for `k` on snapshot `epoch`. On a miss the key is
    /// kept for [`FlowCache::offer`] until [`FlowCache::settle`].
    #[inline(always)]
    pub fn lookup(&mut self, epoch: u64, k: Key) -> Option<Action> {
        let s = self.set_of(&k);
        if let Some(a) = self.peek(epoch, &k, s) {
            let a = *a;
            self.hits += 1;
            return Some(a);
        }
        self.pending = Some((k, s));
        None
    }

    /// The full pipeline's outcome for the frame whose lookup missed: kept
    /// if the frame is then forwarded ([`FlowCache::settle`]). No effect
    /// when no lookup is pending (a frame from elsewhere than a VM port).
    #[inline(always)]
    pub fn offer(&mut self, a: Action) {
        if self.pending.is_some() {
            self.learned = Some(a);
        }
    }

    /// Ends the full pipeline's decision on the pending frame: its offered
    /// action is cached if the frame was forwarded (`forwarded`).
    #[inline(always)]
    pub fn settle(&mut self, epoch: u64, forwarded: bool) {
        let (Some((k, s)), Some(a)) = (self.pending.take(), self.learned.take()) else {
            return;
        };
        if forwarded && self.learn {
            let set = &mut self.sets[s];
            // The newest entry in way 0; the older one moves to way 1.
            set[1] = set[0];
            set[0] = Entry {
                key: k,
                epoch,
                action: a,
            };
            self.inserts += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(port_byte: u8, dst: [u8; 4]) -> Vec<u8> {
        let mut b = vec![0u8; 60];
        b[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        b[6..12].copy_from_slice(&[2, 0, 0, 0, 0, port_byte]);
        b[12..14].copy_from_slice(&[8, 0]);
        b[26..30].copy_from_slice(&[10, 0, 0, 1]);
        b[30..34].copy_from_slice(&dst);
        b
    }

    const A: Action = Action {
        routed: true,
        macs: [1; 12],
        mtu: 1500,
        out: Out::Port(3),
    };

    #[test]
    fn key_covers_port_macs_ethertype_and_addresses() {
        let b = frame(2, [10, 0, 1, 1]);
        let k = FlowCache::key(1, &b).unwrap();
        assert_ne!(k, FlowCache::key(2, &b).unwrap());
        for at in (0..14).chain(26..34) {
            let mut c = b.clone();
            c[at] ^= 0x80;
            assert_ne!(k, FlowCache::key(1, &c).unwrap(), "byte {at}");
        }
        // Bytes outside the key (TTL, checksum, ports) do not change it.
        let mut c = b.clone();
        c[22] = 9;
        c[24] = 9;
        c[40] = 9;
        assert_eq!(k, FlowCache::key(1, &c).unwrap());
        assert_eq!(FlowCache::key(1, &b[..33]), None);
    }

    #[test]
    fn learns_only_what_was_offered_and_forwarded() {
        let mut c = FlowCache::new(4);
        let k = FlowCache::key(1, &frame(2, [10, 0, 1, 1])).unwrap();
        assert_eq!(c.lookup(7, k), None);
        c.settle(7, true); // nothing offered: nothing learned
        assert_eq!(c.lookup(7, k), None);
        c.offer(A);
        c.settle(7, false); // dropped after all
        assert_eq!(c.lookup(7, k), None);
        c.offer(A);
        c.settle(7, true);
        assert_eq!(c.lookup(7, k), Some(A));
        // Another snapshot: stale.
        assert_eq!(c.lookup(8, k), None);
        c.settle(8, true);
        // An offer with no pending lookup is ignored.
        c.offer(A);
        c.settle(8, true);
        assert_eq!(c.lookup(8, k), None);
        // Off: never learns.
        let mut off = FlowCache::off();
        assert_eq!(off.lookup(7, k), None);
        off.offer(A);
        off.settle(7, true);
        assert_eq!(off.lookup(7, k), None);
    }

    /// The keys of frames to 10.0.1.`i` for each `i` of `last`.
    fn keys(last: impl Iterator<Item = u8>) -> Vec<Key> {
        last.map(|i| FlowCache::key(1, &frame(2, [10, 0, 1, i])).unwrap())
            .collect()
    }

    /// Each of `keys` missed, then was forwarded with [`A`] on `epoch`.
    fn learn(c: &mut FlowCache, keys: &[Key], epoch: u64) {
        for k in keys {
            assert_eq!(c.lookup(epoch, *k), None);
            c.offer(A);
            c.settle(epoch, true);
        }
    }

    #[test]
    fn a_worker_sized_cache_on_huge_pages_works_alike() {
        let mut c = FlowCache::new(WORKER_SETS);
        assert_eq!(c.sets.len(), WORKER_SETS);
        let keys = keys(0..=255);
        learn(&mut c, &keys, 3);
        for k in &keys {
            assert_eq!(c.lookup(3, *k), Some(A));
        }
        assert_eq!(c.hits, 256);
    }

    /// Flows that differ in one byte of the key only (any of them, or the
    /// port) spread over a worker's sets: 256 of them take at least 240
    /// sets, so a set's two ways hold them.
    #[test]
    fn flows_that_differ_in_one_byte_spread_over_the_sets() {
        let c = FlowCache::new(WORKER_SETS);
        let b = frame(2, [10, 0, 1, 1]);
        let spread = |keys: &mut dyn Iterator<Item = Key>| {
            keys.map(|k| c.set_of(&k))
                .collect::<std::collections::HashSet<_>>()
                .len()
        };
        for at in (0..14).chain(26..34) {
            let n = spread(&mut (0..=255u8).map(|v| {
                let mut f = b.clone();
                f[at] = v;
                FlowCache::key(1, &f).unwrap()
            }));
            assert!(n >= 240, "byte {at}: {n} sets");
        }
        let n = spread(&mut (0..256u16).map(|p| FlowCache::key(p, &b).unwrap()));
        assert!(n >= 240, "ports: {n} sets");
    }

    #[test]
    fn a_set_keeps_its_two_newest_flows() {
        let mut c = FlowCache::new(1);
        let keys = keys(1..=3);
        learn(&mut c, &keys, 1);
        assert_eq!(c.lookup(1, keys[0]), None);
        c.settle(1, true);
        assert_eq!(c.lookup(1, keys[1]), Some(A));
        assert_eq!(c.lookup(1, keys[2]), Some(A));
    }
}
