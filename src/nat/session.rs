//! The session table: a session's slot and the rest of it, the bindings of
//! inside endpoints, the hashes of their keys; finding, creating, refreshing,
//! expiring and freeing sessions.

use crate::stats::DropReason as R;
use crate::sys::prefetch;
use crate::wire::proto;

use super::pool::{pick_ip, proto_index};
use super::tcp::{tcp_established, tcp_track};
use super::Nat;

/// A session slot: the fields a packet reads and writes, 32 bytes aligned to
/// 32, so a lookup touches one cache line. Free when `proto` is 0. What only
/// creating and freeing need is in [`Cold`], apart.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
pub(super) struct Session {
    pub(super) router: u32,
    pub(super) in_ip: u32,
    pub(super) rem_ip: u32,
    pub(super) ext_ip: u32,
    pub(super) in_port: u16,
    pub(super) rem_port: u16,
    pub(super) ext_port: u16,
    pub(super) proto: u8,
    pub(super) tcp: u8,
    pub(super) last: u64,
}

const _: () = assert!(std::mem::size_of::<Session>() == 32);

/// The rest of a session: its binding and when it was made.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cold {
    pub(super) created: u64,
    pub(super) binding: u32,
}

/// An inside endpoint's external address and port. Free when `refs` is 0.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Binding {
    pub(super) router: u32,
    pub(super) in_ip: u32,
    pub(super) ext_ip: u32,
    pub(super) refs: u32,
    /// The pool of `ext_ip` (`Nat::pools`).
    pub(super) pool: u32,
    pub(super) in_port: u16,
    pub(super) ext_port: u16,
    pub(super) proto: u8,
}

pub(super) const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xBF58_476D_1CE4_E5B9;

#[inline(always)]
pub(super) fn mix(a: u64, b: u64) -> u64 {
    let h = (a ^ K1).wrapping_mul(K2);
    let h = (h.rotate_left(31) ^ b).wrapping_mul(K1);
    h ^ (h >> 29)
}

#[inline(always)]
pub(super) fn hash_in(
    router: u32,
    proto: u8,
    in_ip: u32,
    in_port: u16,
    rem_ip: u32,
    rem_port: u16,
) -> u64 {
    mix(
        (u64::from(in_ip) << 32) | u64::from(rem_ip),
        (u64::from(router) << 32)
            ^ (u64::from(proto) << 56)
            ^ (u64::from(in_port) << 16)
            ^ u64::from(rem_port),
    )
}

#[inline(always)]
pub(super) fn hash_out(proto: u8, ext_ip: u32, ext_port: u16, rem_ip: u32, rem_port: u16) -> u64 {
    mix(
        (u64::from(ext_ip) << 32) | u64::from(rem_ip),
        (u64::from(proto) << 32) | (u64::from(ext_port) << 16) | u64::from(rem_port),
    )
}

#[inline(always)]
pub(super) fn hash_binding(router: u32, proto: u8, in_ip: u32, in_port: u16) -> u64 {
    mix(
        (u64::from(in_ip) << 32) | u64::from(router),
        (u64::from(proto) << 16) | u64::from(in_port),
    )
}

impl Session {
    #[inline(always)]
    pub(super) fn hash_in(&self) -> u64 {
        hash_in(
            self.router,
            self.proto,
            self.in_ip,
            self.in_port,
            self.rem_ip,
            self.rem_port,
        )
    }

    #[inline(always)]
    pub(super) fn hash_out(&self) -> u64 {
        hash_out(
            self.proto,
            self.ext_ip,
            self.ext_port,
            self.rem_ip,
            self.rem_port,
        )
    }
}

/// A session slot and the hashes of its keys in the three indexes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Hashed {
    pub(super) slot: u32,
    pub(super) h_in: u64,
    pub(super) h_out: u64,
    pub(super) h_binding: u64,
}

impl Hashed {
    #[inline(always)]
    pub(super) fn of(slot: u32, s: &Session) -> Hashed {
        Hashed {
            slot,
            h_in: s.hash_in(),
            h_out: s.hash_out(),
            h_binding: hash_binding(s.router, s.proto, s.in_ip, s.in_port),
        }
    }
}

/// Slots a full table or pool sweeps for dead sessions before it refuses a
/// new flow ([`Nat::create`]).
pub const RECLAIM_SLOTS: usize = 4096;

/// An outbound flow's inside key.
#[derive(Debug, Clone, Copy)]
pub(super) struct InKey {
    pub(super) router: u32,
    pub(super) proto: u8,
    pub(super) in_ip: u32,
    pub(super) in_port: u16,
    pub(super) rem_ip: u32,
    pub(super) rem_port: u16,
}

impl InKey {
    #[inline(always)]
    pub(super) fn hash(&self) -> u64 {
        hash_in(
            self.router,
            self.proto,
            self.in_ip,
            self.in_port,
            self.rem_ip,
            self.rem_port,
        )
    }
}

impl Nat {
    pub(super) fn flush_where(&mut self, mut pick: impl FnMut(&Session) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.proto != 0 && pick(s) {
                self.free_session(i as u32);
                n += 1;
            }
        }
        self.counters.flushed += n as u64;
        n
    }

    /// Frees dead sessions among the next `budget` slots of the table (the
    /// worker calls this once per burst: bounded work). Returns how many.
    ///
    /// The dead ones are freed 16 at a time, their index buckets, binding and
    /// rest prefetched first: freeing one touches four lines at random. Their
    /// hashes are computed once, for the prefetch and the removal.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let n = self.slots.len();
        let mut freed = 0;
        let mut dead = [Hashed::default(); 16];
        let mut nd = 0;
        for _ in 0..budget.min(n) {
            let i = self.cursor;
            self.cursor = if i + 1 == n { 0 } else { i + 1 };
            let s = &self.slots[i];
            if s.proto != 0 && self.dead(s, now) {
                let d = Hashed::of(i as u32, s);
                self.by_in.prefetch(d.h_in);
                self.by_out.prefetch(d.h_out);
                self.by_binding.prefetch(d.h_binding);
                prefetch(&self.cold[i]);
                dead[nd] = d;
                nd += 1;
                if nd == dead.len() {
                    self.free_dead(&dead);
                    freed += nd;
                    nd = 0;
                }
            }
        }
        self.free_dead(&dead[..nd]);
        freed + nd
    }

    pub(super) fn free_dead(&mut self, dead: &[Hashed]) {
        for d in dead {
            prefetch(&self.bindings[self.cold[d.slot as usize].binding as usize]);
        }
        for d in dead {
            self.free_hashed(d);
        }
        self.counters.expired += dead.len() as u64;
    }

    #[inline(always)]
    pub(super) fn timeout(&self, s: &Session) -> u64 {
        match s.proto {
            proto::TCP if tcp_established(s.tcp) => self.t_est,
            proto::TCP => self.t_trans,
            proto::UDP => self.t_udp,
            _ => self.t_icmp,
        }
    }

    #[inline(always)]
    pub(super) fn dead(&self, s: &Session, now: u64) -> bool {
        now.saturating_sub(s.last) >= self.timeout(s)
    }

    #[inline(always)]
    pub(super) fn find_in(&self, k: &InKey) -> Option<u32> {
        self.find_in_hashed(k, k.hash())
    }

    /// [`Nat::find_in`] with `k`'s hash at hand.
    #[inline(always)]
    pub(super) fn find_in_hashed(&self, k: &InKey, h: u64) -> Option<u32> {
        self.by_in.find(h, |i| {
            let s = &self.slots[i as usize];
            s.router == k.router
                && s.in_ip == k.in_ip
                && s.rem_ip == k.rem_ip
                && s.in_port == k.in_port
                && s.rem_port == k.rem_port
                && s.proto == k.proto
        })
    }

    #[inline(always)]
    pub(super) fn find_out(
        &self,
        proto: u8,
        ext_ip: u32,
        ext_port: u16,
        rem_ip: u32,
        rem_port: u16,
    ) -> Option<u32> {
        let h = hash_out(proto, ext_ip, ext_port, rem_ip, rem_port);
        self.by_out.find(h, |i| {
            let s = &self.slots[i as usize];
            s.ext_ip == ext_ip
                && s.rem_ip == rem_ip
                && s.ext_port == ext_port
                && s.rem_port == rem_port
                && s.proto == proto
        })
    }

    /// A live session, freeing it if it is dead.
    #[inline(always)]
    pub(super) fn live(&mut self, s: Option<u32>, now: u64) -> Option<u32> {
        let s = s?;
        if self.dead(&self.slots[s as usize], now) {
            self.free_session(s);
            self.counters.expired += 1;
            return None;
        }
        Some(s)
    }

    /// A new session for `k` (its binding found or made); `h_in` is `k`'s
    /// hash. With every slot or every port of its address taken, the dead
    /// sessions of the next [`RECLAIM_SLOTS`] slots are freed first, as
    /// conntrack reuses an expired entry's tuple (at most one such sweep per
    /// `now`, i.e. per burst: a flood of refused flows costs one sweep).
    pub(super) fn create(&mut self, k: &InKey, h_in: u64, now: u64) -> Result<u32, R> {
        match self.try_create(k, h_in, now) {
            Err(e @ (R::NatTableFull | R::NatPortsExhausted)) if self.reclaimed != now => {
                self.reclaimed = now;
                if self.expire(now, RECLAIM_SLOTS) == 0 {
                    return Err(e);
                }
                self.try_create(k, h_in, now)
            }
            r => r,
        }
    }

    /// [`Nat::create`] with what is free now.
    pub(super) fn try_create(&mut self, k: &InKey, h_in: u64, now: u64) -> Result<u32, R> {
        let Some(&slot) = self.free_slots.last() else {
            return Err(R::NatTableFull);
        };
        let hb = hash_binding(k.router, k.proto, k.in_ip, k.in_port);
        let found = self.by_binding.find(hb, |i| {
            let b = &self.bindings[i as usize];
            b.router == k.router
                && b.in_ip == k.in_ip
                && b.in_port == k.in_port
                && b.proto == k.proto
        });
        let b = match found {
            Some(b) => b,
            None => {
                let r = self.routers.get(&k.router).ok_or(R::NatNoPool)?;
                let pick = pick_ip(k.in_ip, r.ips.len());
                let (ext_ip, pi) = (r.ips[pick], r.pools[pick]);
                let pool = self.pools[pi as usize].as_mut().ok_or(R::NatNoPool)?;
                // A binding per live session at most: never short of one while
                // a session slot is free.
                let b = self.free_bindings.pop().ok_or(R::NatTableFull)?;
                let Some(port) = pool.free[proto_index(k.proto)].pop_front() else {
                    self.free_bindings.push(b);
                    return Err(R::NatPortsExhausted);
                };
                self.bindings[b as usize] = Binding {
                    router: k.router,
                    in_ip: k.in_ip,
                    ext_ip,
                    refs: 0,
                    pool: pi,
                    in_port: k.in_port,
                    ext_port: port,
                    proto: k.proto,
                };
                self.by_binding.insert(hb, b);
                b
            }
        };
        self.free_slots.pop();
        let bd = &mut self.bindings[b as usize];
        bd.refs += 1;
        let s = Session {
            router: k.router,
            in_ip: k.in_ip,
            rem_ip: k.rem_ip,
            ext_ip: bd.ext_ip,
            in_port: k.in_port,
            rem_port: k.rem_port,
            ext_port: bd.ext_port,
            proto: k.proto,
            tcp: 0,
            last: now,
        };
        self.slots[slot as usize] = s;
        self.cold[slot as usize] = Cold {
            created: now,
            binding: b,
        };
        self.by_in.insert(h_in, slot);
        self.by_out.insert(s.hash_out(), slot);
        self.counters.created += 1;
        Ok(slot)
    }

    pub(super) fn free_session(&mut self, i: u32) {
        let d = Hashed::of(i, &self.slots[i as usize]);
        self.free_hashed(&d);
    }

    /// Frees a session, its hashes at hand.
    #[inline(always)]
    pub(super) fn free_hashed(&mut self, d: &Hashed) {
        let i = d.slot;
        self.by_in.remove(d.h_in, i);
        self.by_out.remove(d.h_out, i);
        let bi = self.cold[i as usize].binding as usize;
        let b = &mut self.bindings[bi];
        b.refs -= 1;
        if b.refs == 0 {
            let b = *b;
            if let Some(p) = &mut self.pools[b.pool as usize] {
                p.free[proto_index(b.proto)].push_back(b.ext_port);
            }
            // The binding's key is the session's inside endpoint.
            self.by_binding.remove(d.h_binding, bi as u32);
            self.bindings[bi] = Binding::default();
            self.free_bindings.push(bi as u32);
        }
        self.slots[i as usize] = Session::default();
        self.free_slots.push(i);
    }

    /// Refreshes a session with a packet (`out`bound or not, TCP `flags`).
    #[inline(always)]
    pub(super) fn touch(&mut self, i: u32, out: bool, flags: u8, now: u64) {
        let s = &mut self.slots[i as usize];
        if s.proto == proto::TCP {
            s.tcp = tcp_track(s.tcp, out, flags);
        }
        s.last = now;
    }
}
