//! The lookahead: lookups of a burst's packets prefetched in two stages
//! before the packets are translated.

use std::cell::Cell;

use crate::sys::prefetch;
use crate::wire::icmp4::{self, types as icmp_types};
use crate::wire::{be16, proto, udp};

use super::pool::{pick_ip, proto_index};
use super::session::{hash_binding, hash_out, InKey};
use super::wire;
use super::{Nat, OutLookup};

/// What stage one of the lookahead ([`Nat::prefetch_out`],
/// [`Nat::prefetch_in`]) leaves for stage two ([`Nat::prefetch_next`]): the
/// lookup's key and hash, so stage two neither parses nor hashes again.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ahead {
    Out(InKey, u64),
    In(u64),
}

/// Lookups that stage one prefetched, for stage two: a ring the size of the
/// largest burst, filled by stage one in packet order and emptied by stage
/// two in the same order. Cells: the lookahead reads the tables only, and
/// stays a `&self` hint.
#[derive(Debug)]
pub(super) struct Lookahead {
    pub(super) ring: [Cell<Ahead>; LOOKAHEAD],
    /// Next entry stage two takes, next free entry (both wrap at 256).
    pub(super) head: Cell<u8>,
    pub(super) tail: Cell<u8>,
    /// Bumped when stage one finds the ring empty: a new burst (see
    /// `IpPool::ahead`).
    pub(super) burst: Cell<u32>,
}

/// Entries of the lookahead ring: a burst (`sys::MAX_BURST`).
const LOOKAHEAD: usize = 64;
const _: () = assert!(LOOKAHEAD.is_power_of_two() && LOOKAHEAD <= 128);

impl Lookahead {
    pub(super) fn new() -> Lookahead {
        Lookahead {
            ring: std::array::from_fn(|_| Cell::new(Ahead::In(0))),
            head: Cell::new(0),
            tail: Cell::new(0),
            burst: Cell::new(0),
        }
    }

    #[inline(always)]
    pub(super) fn push(&self, a: Ahead) {
        let (head, tail) = (self.head.get(), self.tail.get());
        let used = tail.wrapping_sub(head) as usize;
        if used == 0 || used == LOOKAHEAD {
            // Stage two took everything (or never ran): a new burst.
            self.head.set(tail);
            self.burst.set(self.burst.get().wrapping_add(1));
        }
        self.ring[tail as usize % LOOKAHEAD].set(a);
        self.tail.set(tail.wrapping_add(1));
    }

    #[inline(always)]
    pub(super) fn pop(&self) -> Option<Ahead> {
        let head = self.head.get();
        if head == self.tail.get() {
            return None;
        }
        self.head.set(head.wrapping_add(1));
        Some(self.ring[head as usize % LOOKAHEAD].get())
    }
}

/// The outside key's hash [`Nat::snat_in`] looks `ip` up by, if it looks one up.
#[inline(always)]
pub(super) fn in_hash(ip: &[u8]) -> Option<u64> {
    let h = wire::parse(ip).ok()?;
    let l4 = h.ihl;
    // 8 bytes: a UDP header, an ICMP header, TCP's ports.
    if h.frag_off != 0 || ip.len() < l4 + udp::HEADER_LEN {
        return None;
    }
    let (rem_port, ext_port) = match h.proto {
        // The ports at the same offsets in TCP and UDP.
        proto::TCP | proto::UDP => (
            be16(ip, l4 + udp::field::SRC_PORT.start),
            be16(ip, l4 + udp::field::DST_PORT.start),
        ),
        proto::ICMP if ip[l4 + icmp4::field::TYPE] == icmp_types::ECHO_REPLY => {
            (0, be16(ip, l4 + icmp4::field::ECHO_ID.start))
        }
        _ => return None,
    };
    Some(hash_out(h.proto, h.dst, ext_port, h.src, rem_port))
}

impl Nat {
    /// Stage one of the lookahead ([`Nat::prefetch_out`]) for a lookup
    /// already worked out.
    #[inline(always)]
    pub fn prefetch_lookup(&self, l: &OutLookup) {
        self.by_in.prefetch(l.h_in);
        self.look.push(Ahead::Out(l.k, l.h_in));
    }

    /// Stage one of a lookahead for [`Nat::snat_out`] of `ip` (a few packets
    /// before it): prefetches the index bucket its lookup reads, and leaves
    /// the key for stage two ([`Nat::prefetch_next`]). A hint only: any packet
    /// is fine, one with no session lookup (fragment, ICMP error, other
    /// protocol, short) prefetches nothing.
    ///
    /// Stage one of a burst runs on all its packets, then stage two as many
    /// times, then the translations, in the packets' order (at most 64
    /// packets a burst).
    #[inline(always)]
    pub fn prefetch_out(&self, router: u32, ip: &[u8]) {
        if let Some(l) = Self::out_lookup(router, ip) {
            self.prefetch_lookup(&l);
        }
    }

    /// [`Nat::prefetch_out`] for [`Nat::snat_in`].
    #[inline(always)]
    pub fn prefetch_in(&self, ip: &[u8]) {
        if let Some(h) = in_hash(ip) {
            self.by_out.prefetch(h);
            self.look.push(Ahead::In(h));
        }
    }

    /// Stage two of the lookahead, once stage one's bucket is in: the next
    /// lookup stage one left (none left: nothing) gets the session slot it
    /// will compare prefetched, or, for a new outbound flow, what creating
    /// its session will read: the binding index bucket and the outside index
    /// bucket of the port it will most likely get (the next free one of its
    /// pool after those of the burst's earlier new flows).
    #[inline(always)]
    pub fn prefetch_next(&self) {
        match self.look.pop() {
            Some(Ahead::Out(k, h)) => match self.by_in.first(h) {
                Some(s) => prefetch(&self.slots[s as usize]),
                None => {
                    self.by_binding
                        .prefetch(hash_binding(k.router, k.proto, k.in_ip, k.in_port));
                    if let Some((ext_ip, port)) = self.next_port(&k) {
                        self.by_out
                            .prefetch(hash_out(k.proto, ext_ip, port, k.rem_ip, k.rem_port));
                    }
                }
            },
            Some(Ahead::In(h)) => {
                if let Some(s) = self.by_out.first(h) {
                    prefetch(&self.slots[s as usize]);
                }
            }
            None => {}
        }
    }

    /// The external address and port a new binding for `k` will most likely
    /// get, if this burst's earlier new flows predicted so far get theirs
    /// first (and none of them finds a binding after all).
    #[inline(always)]
    pub(super) fn next_port(&self, k: &InKey) -> Option<(u32, u16)> {
        let r = self.routers.get(&k.router)?;
        let pick = pick_ip(k.in_ip, r.ips.len());
        let (ext_ip, pool) = (r.ips[pick], self.pools[r.pools[pick] as usize].as_ref()?);
        let pi = proto_index(k.proto);
        let burst = self.look.burst.get();
        let n = match pool.ahead[pi].get() {
            (b, n) if b == burst => n,
            _ => 0,
        };
        pool.ahead[pi].set((burst, n + 1));
        pool.free[pi].get(n as usize).map(|&p| (ext_ip, p))
    }
}
