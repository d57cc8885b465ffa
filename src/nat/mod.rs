//! Network address translation: the stateless 1:1 rewrite of floating IPs
//! ([`rewrite_src`], [`rewrite_dst`]) and the stateful port address
//! translation (PAT) of the `dvr_snat` node ([`Nat`]), both with incremental
//! checksums and ICMP errors translated inside (RFC 5508).
//!
//! # PAT, one instance per worker
//!
//! A [`Nat`] belongs to one worker: no lock, no allocation, no syscall once
//! built ([`Nat::new`] allocates every table for `max_sessions`; only the
//! control-path calls [`Nat::set_router`] allocates, a port pool per new
//! external address). Several workers each get their own instance with a
//! disjoint slice of the port range ([`Nat::set_router`] takes any range: the
//! caller passes the worker's share), and inbound packets must reach the
//! worker whose slice holds their destination port.
//!
//! The choices, where RFC 4787 / 5382 / 5508 or VPP leave one:
//!
//! - **Endpoint-independent mapping** for every protocol (RFC 4787 REQ-1,
//!   RFC 5382 REQ-1): an inside endpoint (router, protocol, address, port or
//!   ICMP id) gets one external address and port, a *binding*, shared by all
//!   its sessions; the binding lives while one of its sessions does.
//!   Filtering is **address and port dependent**: a packet from outside
//!   matches only a session, i.e. a remote address and port the inside
//!   endpoint sent to.
//! - **Paired pooling**: the external address is picked among the router's by
//!   a hash of the inside address (RFC 4787 REQ-2); when that address has no
//!   free port for the protocol, the new flow is dropped
//!   ([`DropReason::NatPortsExhausted`]), not moved to another address.
//! - Ports come out of a FIFO per (external address, protocol), shuffled once
//!   (RFC 6056 in spirit): a freed port goes to the back, so it is reused as
//!   late as possible. Routers that share an external address share its pool
//!   (and must give it the same range): a (protocol, external address, port)
//!   is never handed out twice at the same time.
//! - **Sessions are created by any outbound TCP, UDP or ICMP echo request
//!   packet** (as VPP; a TCP session that never saw both SYNs stays
//!   transitory). Outbound ICMP errors and inbound packets never create one.
//!   Other ICMP messages and other protocols: [`DropReason::NatUnsupportedProto`].
//! - **TCP state**: SYN seen both ways (the second a SYN-ACK, or a
//!   simultaneous open) → established; RST, or FIN both ways → transitory
//!   again, so a closed connection expires quickly; an outbound SYN (no ACK)
//!   on a reset or closed session reopens it.
//! - **Expiry**: a session is dead once idle for its timeout (by protocol and
//!   state). Lookups treat a dead session as absent and free it; the worker
//!   frees the others with [`Nat::expire`], a bounded sweep per burst. A dead
//!   session not yet swept still holds its table slot and its port.
//! - **Full table or pool**: the new flow is dropped and counted; no session,
//!   established or not, is evicted for it.
//! - **Fragments**: the first fragment (offset 0, MF) is translated with its
//!   session and leaves (direction, router, source, destination, protocol, IP
//!   id) → new address in a small set-associative table with a short timeout;
//!   later fragments take that address (their payload has no transport
//!   header). A later fragment seen before its first, or after the entry was
//!   evicted, is dropped ([`DropReason::NatFragmentUnknown`]): no reassembly.
//! - **ICMP errors** about a session are translated both ways (outer address,
//!   quoted address and port or id, quoted IP and transport checksums, ICMP
//!   checksum) and do not refresh the session. Hairpinning is not done here.
//! - Removing a router, changing its external addresses or range, or flushing
//!   an inside address (it got a floating IP) frees the sessions at once: a
//!   scan of the table, on the control path.

mod wire;

#[doc(hidden)]
#[cfg(any(test, feature = "testkit"))]
pub mod model;

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;

use rustc_hash::FxHashMap;

use crate::pkt::{be16, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::stats::DropReason;
use crate::sys::{prefetch, HugeTable};
use wire::{Hdr, Side};

pub use wire::{in_port, rewrite_dst, rewrite_src, untranslate_in};

type R = DropReason;

/// The usual range of translated ports and ICMP ids.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 1024..=65535;

/// Idle timeouts in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_established_ms: u64,
    pub tcp_transitory_ms: u64,
    pub udp_ms: u64,
    pub icmp_ms: u64,
    /// How long a first fragment's translation waits for the later ones.
    pub fragment_ms: u64,
}

impl Default for Timeouts {
    /// VPP's NAT44 defaults (7440 s, 240 s, 300 s, 60 s), and 2 s for fragments.
    fn default() -> Self {
        Timeouts {
            tcp_established_ms: 7_440_000,
            tcp_transitory_ms: 240_000,
            udp_ms: 300_000,
            icmp_ms: 60_000,
            fragment_ms: 2_000,
        }
    }
}

/// `ms` milliseconds in ticks of `ticks_per_sec`, rounded up (a timeout is
/// never shorter than asked, nor 0 ticks unless 0 ms), saturating.
pub fn ms_to_ticks(ms: u64, ticks_per_sec: u64) -> u64 {
    (u128::from(ms) * u128::from(ticks_per_sec))
        .div_ceil(1000)
        .min(u128::from(u64::MAX)) as u64
}

/// `ticks` of `ticks_per_sec` in whole milliseconds.
fn ticks_to_ms(ticks: u64, ticks_per_sec: u64) -> u64 {
    (u128::from(ticks) * 1000 / u128::from(ticks_per_sec.max(1))) as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    /// Sessions of this instance (one worker): the table never grows.
    pub max_sessions: usize,
    /// Entries of the fragment table (rounded up to a power of two, at least 4).
    pub max_fragments: usize,
    pub timeouts: Timeouts,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            max_sessions: 65536,
            max_fragments: 1024,
            timeouts: Timeouts::default(),
        }
    }
}

/// A router's external configuration that [`Nat::set_router`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatConfigError {
    #[error("router {0}: SNAT needs at least one external address")]
    NoAddress(u32),
    #[error("router {0}: the port range {1}..={2} is empty")]
    EmptyRange(u32, u16, u16),
    #[error(
        "router {router}: external address {ip} is shared with router {other}, \
         which translates to ports {}..={}; a shared address needs the same range",
        range.start(), range.end()
    )]
    SharedRange {
        router: u32,
        ip: Ipv4Addr,
        other: u32,
        range: RangeInclusive<u16>,
    },
}

/// What `dvr-ctl show sessions` prints of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    pub router: u32,
    pub proto: u8,
    /// ICMP: the port is the echo id (inside and outside), 0 for the remote.
    pub inside: SocketAddrV4,
    pub outside: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub state: SessionState,
    /// Milliseconds since created, since the last packet.
    pub age_ms: u64,
    pub idle_ms: u64,
}

impl SessionView {
    /// `tcp`, `udp` or `icmp`.
    pub fn protocol(&self) -> &'static str {
        match self.proto {
            PROTO_TCP => "tcp",
            PROTO_UDP => "udp",
            _ => "icmp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    TcpTransitory,
    TcpEstablished,
    Udp,
    Icmp,
}

impl SessionState {
    pub fn name(self) -> &'static str {
        match self {
            SessionState::TcpTransitory => "tcp-transitory",
            SessionState::TcpEstablished => "tcp-established",
            SessionState::Udp => "udp",
            SessionState::Icmp => "icmp",
        }
    }
}

/// Sessions created, and freed by expiry (lookups and sweeps) or by a flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatCounters {
    pub created: u64,
    pub expired: u64,
    pub flushed: u64,
}

// TCP state bits of a session.
const SYN_OUT: u8 = 1;
const SYN_IN: u8 = 2;
const FIN_OUT: u8 = 4;
const FIN_IN: u8 = 8;
const RST: u8 = 16;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// The TCP state after a segment with `flags`, outbound or not.
#[inline(always)]
fn tcp_track(st: u8, out: bool, flags: u8) -> u8 {
    let mut st = st;
    let closed = st & RST != 0 || st & (FIN_OUT | FIN_IN) == FIN_OUT | FIN_IN;
    if out && closed && flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        st = 0;
    }
    if flags & TCP_RST != 0 {
        st |= RST;
    }
    if flags & TCP_SYN != 0 {
        st |= if out { SYN_OUT } else { SYN_IN };
    }
    if flags & TCP_FIN != 0 {
        st |= if out { FIN_OUT } else { FIN_IN };
    }
    st
}

#[inline(always)]
fn tcp_established(st: u8) -> bool {
    st & (SYN_OUT | SYN_IN) == SYN_OUT | SYN_IN
        && st & RST == 0
        && st & (FIN_OUT | FIN_IN) != FIN_OUT | FIN_IN
}

/// A session slot: the fields a packet reads and writes, 32 bytes aligned to
/// 32, so a lookup touches one cache line. Free when `proto` is 0. What only
/// creating and freeing need is in [`Cold`], apart.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct Session {
    router: u32,
    in_ip: u32,
    rem_ip: u32,
    ext_ip: u32,
    in_port: u16,
    rem_port: u16,
    ext_port: u16,
    proto: u8,
    tcp: u8,
    last: u64,
}

const _: () = assert!(std::mem::size_of::<Session>() == 32);

/// The rest of a session: its binding and when it was made.
#[derive(Debug, Clone, Copy, Default)]
struct Cold {
    created: u64,
    binding: u32,
}

/// An inside endpoint's external address and port. Free when `refs` is 0.
#[derive(Debug, Clone, Copy, Default)]
struct Binding {
    router: u32,
    in_ip: u32,
    ext_ip: u32,
    refs: u32,
    /// The pool of `ext_ip` (`Nat::pools`).
    pool: u32,
    in_port: u16,
    ext_port: u16,
    proto: u8,
}

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xBF58_476D_1CE4_E5B9;

#[inline(always)]
fn mix(a: u64, b: u64) -> u64 {
    let h = (a ^ K1).wrapping_mul(K2);
    let h = (h.rotate_left(31) ^ b).wrapping_mul(K1);
    h ^ (h >> 29)
}

#[inline(always)]
fn hash_in(router: u32, proto: u8, in_ip: u32, in_port: u16, rem_ip: u32, rem_port: u16) -> u64 {
    mix(
        (u64::from(in_ip) << 32) | u64::from(rem_ip),
        (u64::from(router) << 32)
            ^ (u64::from(proto) << 56)
            ^ (u64::from(in_port) << 16)
            ^ u64::from(rem_port),
    )
}

#[inline(always)]
fn hash_out(proto: u8, ext_ip: u32, ext_port: u16, rem_ip: u32, rem_port: u16) -> u64 {
    mix(
        (u64::from(ext_ip) << 32) | u64::from(rem_ip),
        (u64::from(proto) << 32) | (u64::from(ext_port) << 16) | u64::from(rem_port),
    )
}

#[inline(always)]
fn hash_binding(router: u32, proto: u8, in_ip: u32, in_port: u16) -> u64 {
    mix(
        (u64::from(in_ip) << 32) | u64::from(router),
        (u64::from(proto) << 16) | u64::from(in_port),
    )
}

impl Session {
    #[inline(always)]
    fn hash_in(&self) -> u64 {
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
    fn hash_out(&self) -> u64 {
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
struct Hashed {
    slot: u32,
    h_in: u64,
    h_out: u64,
    h_binding: u64,
}

impl Hashed {
    #[inline(always)]
    fn of(slot: u32, s: &Session) -> Hashed {
        Hashed {
            slot,
            h_in: s.hash_in(),
            h_out: s.hash_out(),
            h_binding: hash_binding(s.router, s.proto, s.in_ip, s.in_port),
        }
    }
}

const EMPTY: u64 = u64::MAX;

/// An open-addressing index (linear probing, backward-shift deletion, load at
/// most one half) from a hash to a slot number: each entry is the hash's high
/// 32 bits (which also pick the home bucket) and the slot, 8 bytes, 8 to a
/// cache line. The caller compares the slot's key on a tag match.
#[derive(Debug)]
struct Index {
    e: HugeTable<u64>,
    mask: usize,
}

impl Index {
    fn new(n: usize) -> Index {
        let cap = n.saturating_mul(2).next_power_of_two().max(16);
        Index {
            e: HugeTable::new(cap, EMPTY),
            mask: cap - 1,
        }
    }

    #[inline(always)]
    fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
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
    fn prefetch(&self, h: u64) {
        prefetch(&self.e[(h >> 32) as usize & self.mask]);
    }

    /// The slot of the first entry with `h`'s tag, unchecked: what [`find`]
    /// will most likely compare (to prefetch it).
    ///
    /// [`find`]: Index::find
    #[inline(always)]
    fn first(&self, h: u64) -> Option<u32> {
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
    fn insert(&mut self, h: u64, slot: u32) {
        let tag = h >> 32;
        let mut i = tag as usize & self.mask;
        while self.e[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.e[i] = (tag << 32) | u64::from(slot);
    }

    fn remove(&mut self, h: u64, slot: u32) {
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

/// Free ports of one (external address, protocol).
#[derive(Debug)]
struct IpPool {
    ip: u32,
    range: RangeInclusive<u16>,
    /// Routers using the address.
    users: Vec<u32>,
    /// TCP, UDP, ICMP.
    free: [VecDeque<u16>; 3],
    /// Per protocol: (lookahead burst, new flows of that burst predicted to
    /// take a port here so far), for [`Nat::prefetch_next`] to guess the
    /// port each one will get (the next ones at the front of `free`).
    ahead: [Cell<(u32, u32)>; 3],
}

/// Which of a router's `n` external addresses inside address `in_ip` gets
/// (paired pooling): the hash's top 32 bits scaled to the count
/// (multiply-shift).
#[inline(always)]
fn pick_ip(in_ip: u32, n: usize) -> usize {
    (((mix(u64::from(in_ip), 0) >> 32) * n as u64) >> 32) as usize
}

#[inline(always)]
fn proto_index(proto: u8) -> usize {
    match proto {
        PROTO_TCP => 0,
        PROTO_UDP => 1,
        _ => 2,
    }
}

impl IpPool {
    fn new(ip: u32, range: RangeInclusive<u16>) -> IpPool {
        let mut ports: Vec<u16> = range.clone().collect();
        // Fisher-Yates with a xorshift seeded by the address: the order is
        // not guessable from the first port, and the same on every run.
        let mut x = u64::from(ip) ^ K1;
        for i in (1..ports.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ports.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let q: VecDeque<u16> = ports.into();
        IpPool {
            ip,
            range,
            users: Vec::new(),
            free: [q.clone(), q.clone(), q],
            ahead: Default::default(),
        }
    }
}

#[derive(Debug, Clone)]
struct RouterExt {
    ips: Vec<u32>,
    /// Their pools (`Nat::pools`), in the same order.
    pools: Vec<u32>,
    range: RangeInclusive<u16>,
}

const DIR_IN: u64 = 1 << 63;

/// Slots a full table or pool sweeps for dead sessions before it refuses a
/// new flow ([`Nat::create`]).
pub const RECLAIM_SLOTS: usize = 4096;

/// A first fragment's translation, for the later ones.
#[derive(Debug, Clone, Copy, Default)]
struct Frag {
    /// Source and destination before translation.
    addrs: u64,
    /// Direction bit, protocol, IP id, router (0 inbound).
    what: u64,
    new_ip: u32,
    router: u32,
    /// 0: free.
    expires: u64,
}

const FRAG_WAYS: usize = 4;

/// What stage one of the lookahead ([`Nat::prefetch_out`],
/// [`Nat::prefetch_in`]) leaves for stage two ([`Nat::prefetch_next`]): the
/// lookup's key and hash, so stage two neither parses nor hashes again.
#[derive(Debug, Clone, Copy)]
enum Ahead {
    Out(InKey, u64),
    In(u64),
}

/// Lookups that stage one prefetched, for stage two: a ring the size of the
/// largest burst, filled by stage one in packet order and emptied by stage
/// two in the same order. Cells: the lookahead reads the tables only, and
/// stays a `&self` hint.
#[derive(Debug)]
struct Lookahead {
    ring: [Cell<Ahead>; LOOKAHEAD],
    /// Next entry stage two takes, next free entry (both wrap at 256).
    head: Cell<u8>,
    tail: Cell<u8>,
    /// Bumped when stage one finds the ring empty: a new burst (see
    /// `IpPool::ahead`).
    burst: Cell<u32>,
}

/// Entries of the lookahead ring: a burst (`sys::MAX_BURST`).
const LOOKAHEAD: usize = 64;
const _: () = assert!(LOOKAHEAD.is_power_of_two() && LOOKAHEAD <= 128);

impl Lookahead {
    fn new() -> Lookahead {
        Lookahead {
            ring: std::array::from_fn(|_| Cell::new(Ahead::In(0))),
            head: Cell::new(0),
            tail: Cell::new(0),
            burst: Cell::new(0),
        }
    }

    #[inline(always)]
    fn push(&self, a: Ahead) {
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
    fn pop(&self) -> Option<Ahead> {
        let head = self.head.get();
        if head == self.tail.get() {
            return None;
        }
        self.head.set(head.wrapping_add(1));
        Some(self.ring[head as usize % LOOKAHEAD].get())
    }
}

/// Stateful PAT for the routers of one `dvr_snat` node, one instance per
/// worker: sessions keyed with the router, so overlapping inside addresses of
/// two routers never collide. See the module documentation for the choices.
#[derive(Debug)]
pub struct Nat {
    cfg: NatConfig,
    ticks_per_sec: u64,
    slots: HugeTable<Session>,
    cold: HugeTable<Cold>,
    free_slots: Vec<u32>,
    by_in: Index,
    by_out: Index,
    bindings: HugeTable<Binding>,
    free_bindings: Vec<u32>,
    by_binding: Index,
    frags: Vec<Frag>,
    routers: FxHashMap<u32, RouterExt>,
    /// The pools of the external addresses in use, where routers and
    /// bindings find them by number (`None`: a number free for the next one,
    /// in `free_pools`), and by address on the control path (`pool_of`).
    pools: Vec<Option<IpPool>>,
    pool_of: FxHashMap<u32, u32>,
    free_pools: Vec<u32>,
    /// Timeouts in ticks: TCP established, TCP transitory, UDP, ICMP, fragment.
    t_est: u64,
    t_trans: u64,
    t_udp: u64,
    t_icmp: u64,
    t_frag: u64,
    cursor: usize,
    /// The `now` of the last reclaiming sweep ([`Nat::create`]).
    reclaimed: u64,
    counters: NatCounters,
    look: Lookahead,
}

/// An outbound flow's inside key.
#[derive(Debug, Clone, Copy)]
struct InKey {
    router: u32,
    proto: u8,
    in_ip: u32,
    in_port: u16,
    rem_ip: u32,
    rem_port: u16,
}

impl InKey {
    #[inline(always)]
    fn hash(&self) -> u64 {
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

/// [`Nat::snat_out`]'s lookup of a packet, worked out ahead of it
/// ([`Nat::out_lookup`]).
#[derive(Debug, Clone, Copy)]
pub struct OutLookup {
    hdr: Hdr,
    k: InKey,
    h_in: u64,
    /// TCP flags (0 for UDP and ICMP).
    flags: u8,
}

/// The outside key's hash [`Nat::snat_in`] looks `ip` up by, if it looks one up.
#[inline(always)]
fn in_hash(ip: &[u8]) -> Option<u64> {
    let h = wire::parse(ip).ok()?;
    let l4 = h.ihl;
    if h.frag_off != 0 || ip.len() < l4 + 8 {
        return None;
    }
    let (rem_port, ext_port) = match h.proto {
        PROTO_TCP | PROTO_UDP => (be16(ip, l4), be16(ip, l4 + 2)),
        PROTO_ICMP if ip[l4] == wire::ICMP_ECHO_REPLY => (0, be16(ip, l4 + 4)),
        _ => return None,
    };
    Some(hash_out(h.proto, h.dst, ext_port, h.src, rem_port))
}

impl Nat {
    /// Every table for `cfg.max_sessions` sessions (at least 1), allocated
    /// here once; `ticks_per_sec` is the unit of the `now` arguments.
    pub fn new(cfg: NatConfig, ticks_per_sec: u64) -> Nat {
        let n = cfg.max_sessions.clamp(1, u32::MAX as usize / 2);
        let frags = cfg
            .max_fragments
            .clamp(FRAG_WAYS, 1 << 20)
            .next_power_of_two();
        let t = |ms: u64| ms_to_ticks(ms, ticks_per_sec);
        let to = cfg.timeouts;
        Nat {
            cfg: NatConfig {
                max_sessions: n,
                max_fragments: frags,
                ..cfg
            },
            ticks_per_sec: ticks_per_sec.max(1),
            slots: HugeTable::new(n, Session::default()),
            cold: HugeTable::new(n, Cold::default()),
            free_slots: (0..n as u32).rev().collect(),
            by_in: Index::new(n),
            by_out: Index::new(n),
            bindings: HugeTable::new(n, Binding::default()),
            free_bindings: (0..n as u32).rev().collect(),
            by_binding: Index::new(n),
            frags: vec![Frag::default(); frags],
            routers: FxHashMap::default(),
            pools: Vec::new(),
            pool_of: FxHashMap::default(),
            free_pools: Vec::new(),
            t_est: t(to.tcp_established_ms),
            t_trans: t(to.tcp_transitory_ms),
            t_udp: t(to.udp_ms),
            t_icmp: t(to.icmp_ms),
            t_frag: t(to.fragment_ms),
            cursor: 0,
            reclaimed: u64::MAX,
            counters: NatCounters::default(),
            look: Lookahead::new(),
        }
    }

    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// Live sessions (and dead ones not yet freed).
    pub fn len(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn counters(&self) -> NatCounters {
        self.counters
    }

    /// Sets (or changes) router `router`'s external addresses and the ports
    /// (and ICMP ids) it translates to on this instance: a worker's share of
    /// the range when several workers translate. Unchanged: nothing happens.
    /// Changed: the router's sessions are flushed first. An address shared
    /// with another router must come with the same range (they share its
    /// ports). Control path: allocates a pool per new address.
    pub fn set_router(
        &mut self,
        router: u32,
        ext_ips: &[Ipv4Addr],
        ports: RangeInclusive<u16>,
    ) -> Result<(), NatConfigError> {
        if ext_ips.is_empty() {
            return Err(NatConfigError::NoAddress(router));
        }
        if ports.is_empty() {
            return Err(NatConfigError::EmptyRange(
                router,
                *ports.start(),
                *ports.end(),
            ));
        }
        let mut ips: Vec<u32> = Vec::with_capacity(ext_ips.len());
        for ip in ext_ips {
            if !ips.contains(&u32::from(*ip)) {
                ips.push(u32::from(*ip));
            }
        }
        for &ip in &ips {
            if let Some(p) = self.pool_of(ip) {
                if let Some(&other) = p.users.iter().find(|&&u| u != router) {
                    if p.range != ports {
                        return Err(NatConfigError::SharedRange {
                            router,
                            ip: Ipv4Addr::from(ip),
                            other,
                            range: p.range.clone(),
                        });
                    }
                }
            }
        }
        if let Some(r) = self.routers.get(&router) {
            if r.ips == ips && r.range == ports {
                return Ok(());
            }
            self.remove_router(router);
        }
        let mut pools = Vec::with_capacity(ips.len());
        for &ip in &ips {
            let i = match self.pool_of.get(&ip) {
                Some(&i) => i,
                None => {
                    let p = Some(IpPool::new(ip, ports.clone()));
                    let i = match self.free_pools.pop() {
                        Some(i) => {
                            self.pools[i as usize] = p;
                            i
                        }
                        None => {
                            self.pools.push(p);
                            (self.pools.len() - 1) as u32
                        }
                    };
                    self.pool_of.insert(ip, i);
                    i
                }
            };
            if let Some(p) = &mut self.pools[i as usize] {
                p.users.push(router);
            }
            pools.push(i);
        }
        self.routers.insert(
            router,
            RouterExt {
                ips,
                pools,
                range: ports,
            },
        );
        Ok(())
    }

    /// The pool of external address `ip`, if a router uses it.
    fn pool_of(&self, ip: u32) -> Option<&IpPool> {
        let &i = self.pool_of.get(&ip)?;
        self.pools[i as usize].as_ref()
    }

    /// Removes a router: its sessions are flushed, their ports freed, its
    /// pending fragments forgotten. Returns how many sessions were flushed.
    pub fn remove_router(&mut self, router: u32) -> usize {
        let n = self.flush_where(|s| s.router == router);
        self.forget_frags(|f| f.router == router);
        if let Some(r) = self.routers.remove(&router) {
            for (ip, i) in r.ips.into_iter().zip(r.pools) {
                let slot = &mut self.pools[i as usize];
                if let Some(p) = slot {
                    p.users.retain(|&u| u != router);
                    if p.users.is_empty() {
                        // No router uses it: no binding either (flushed).
                        *slot = None;
                        self.pool_of.remove(&ip);
                        self.free_pools.push(i);
                    }
                }
            }
        }
        n
    }

    /// Flushes the sessions (and pending fragments) of one inside address of
    /// a router: it got a floating IP, which now translates it 1:1. Returns
    /// how many sessions were flushed.
    pub fn flush_inside(&mut self, router: u32, fixed: Ipv4Addr) -> usize {
        let ip = u32::from(fixed);
        let n = self.flush_where(|s| s.router == router && s.in_ip == ip);
        self.forget_frags(|f| {
            f.router == router
                && if f.what & DIR_IN != 0 {
                    f.new_ip == ip
                } else {
                    (f.addrs >> 32) as u32 == ip
                }
        });
        n
    }

    fn flush_where(&mut self, mut pick: impl FnMut(&Session) -> bool) -> usize {
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

    fn forget_frags(&mut self, mut pick: impl FnMut(&Frag) -> bool) {
        for f in &mut self.frags {
            if f.expires != 0 && pick(f) {
                *f = Frag::default();
            }
        }
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

    fn free_dead(&mut self, dead: &[Hashed]) {
        for d in dead {
            prefetch(&self.bindings[self.cold[d.slot as usize].binding as usize]);
        }
        for d in dead {
            self.free_hashed(d);
        }
        self.counters.expired += dead.len() as u64;
    }

    #[inline(always)]
    fn timeout(&self, s: &Session) -> u64 {
        match s.proto {
            PROTO_TCP if tcp_established(s.tcp) => self.t_est,
            PROTO_TCP => self.t_trans,
            PROTO_UDP => self.t_udp,
            _ => self.t_icmp,
        }
    }

    #[inline(always)]
    fn dead(&self, s: &Session, now: u64) -> bool {
        now.saturating_sub(s.last) >= self.timeout(s)
    }

    /// Every session held (live, and dead ones not yet freed), ages at time
    /// `now`: a scan of the whole table (tests, the reference model).
    pub fn sessions(&self, now: u64) -> impl Iterator<Item = SessionView> + '_ {
        self.view_slots(0..self.slots.len(), now)
            .filter_map(|(v, _)| v)
    }

    /// Session slots of the table (its `max_sessions`).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The live sessions of slots `slots` (a part of `0..capacity()`), ages
    /// at time `now`: what `dvr-ctl show sessions` lists, scanned a part at a
    /// time by the worker that owns the table (control path: a bounded scan
    /// between bursts, never a pause of the whole table's length). Sessions
    /// that are idle past their timeout are left out: a packet would not find
    /// them.
    pub fn live_sessions(
        &self,
        slots: std::ops::Range<usize>,
        now: u64,
    ) -> impl Iterator<Item = SessionView> + '_ {
        let slots = slots.start.min(self.slots.len())..slots.end.min(self.slots.len());
        self.view_slots(slots, now)
            .filter_map(|(v, dead)| v.filter(|_| !dead))
    }

    /// The view of each slot in `slots` (None: free) and whether it is dead.
    fn view_slots(
        &self,
        slots: std::ops::Range<usize>,
        now: u64,
    ) -> impl Iterator<Item = (Option<SessionView>, bool)> + '_ {
        let tps = self.ticks_per_sec;
        self.slots[slots.clone()]
            .iter()
            .zip(&self.cold[slots])
            .map(move |(s, c)| {
                if s.proto == 0 {
                    return (None, false);
                }
                let v = SessionView {
                    router: s.router,
                    proto: s.proto,
                    inside: SocketAddrV4::new(s.in_ip.into(), s.in_port),
                    outside: SocketAddrV4::new(s.ext_ip.into(), s.ext_port),
                    remote: SocketAddrV4::new(s.rem_ip.into(), s.rem_port),
                    state: match s.proto {
                        PROTO_TCP if tcp_established(s.tcp) => SessionState::TcpEstablished,
                        PROTO_TCP => SessionState::TcpTransitory,
                        PROTO_UDP => SessionState::Udp,
                        _ => SessionState::Icmp,
                    },
                    age_ms: ticks_to_ms(now.saturating_sub(c.created), tps),
                    idle_ms: ticks_to_ms(now.saturating_sub(s.last), tps),
                };
                (Some(v), self.dead(s, now))
            })
    }

    #[inline(always)]
    fn find_in(&self, k: &InKey) -> Option<u32> {
        self.find_in_hashed(k, k.hash())
    }

    /// [`Nat::find_in`] with `k`'s hash at hand.
    #[inline(always)]
    fn find_in_hashed(&self, k: &InKey, h: u64) -> Option<u32> {
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
    fn find_out(
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
    fn live(&mut self, s: Option<u32>, now: u64) -> Option<u32> {
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
    fn create(&mut self, k: &InKey, h_in: u64, now: u64) -> Result<u32, R> {
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
    fn try_create(&mut self, k: &InKey, h_in: u64, now: u64) -> Result<u32, R> {
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

    fn free_session(&mut self, i: u32) {
        let d = Hashed::of(i, &self.slots[i as usize]);
        self.free_hashed(&d);
    }

    /// Frees a session, its hashes at hand.
    #[inline(always)]
    fn free_hashed(&mut self, d: &Hashed) {
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
    fn touch(&mut self, i: u32, out: bool, flags: u8, now: u64) {
        let s = &mut self.slots[i as usize];
        if s.proto == PROTO_TCP {
            s.tcp = tcp_track(s.tcp, out, flags);
        }
        s.last = now;
    }

    /// Translates a packet of router `router` from inside to outside: looks
    /// up or creates its session, rewrites the source address and port (or
    /// ICMP echo id), checksums incrementally. An ICMP error from inside
    /// about a session gets its quoted destination translated too. `ip` is
    /// the IPv4 packet, validated by the caller.
    pub fn snat_out(&mut self, router: u32, ip: &mut [u8], now: u64) -> Result<(), DropReason> {
        if let Some(l) = Self::out_lookup(router, ip) {
            return self.snat_out_looked(ip, &l, now);
        }
        // What has no lookup of its own: fragments, ICMP other than echo
        // requests, other protocols, packets too short to translate.
        let h = wire::parse(ip)?;
        if h.frag_off != 0 {
            return self.follow(false, router, ip, &h, now).map(|_| ());
        }
        let l4 = h.ihl;
        match h.proto {
            PROTO_ICMP if ip.len() >= l4 + 8 && wire::is_icmp_error(ip[l4]) => {
                self.error_out(router, ip, &h, now)
            }
            PROTO_ICMP if ip.len() >= l4 + 8 => Err(R::NatUnsupportedProto),
            PROTO_TCP | PROTO_UDP | PROTO_ICMP => Err(R::NatTruncated),
            _ => Err(R::NatUnsupportedProto),
        }
    }

    /// The lookup of [`Nat::snat_out`] of `ip` for router `router`, worked
    /// out without translating (nothing is read but `ip`): for a whole
    /// packet or first fragment of TCP, UDP or an ICMP echo request long
    /// enough to translate. `None` for any other packet (fragment, ICMP
    /// error, other protocol, short): [`Nat::snat_out`] decides those.
    /// [`Nat::snat_out_looked`] then translates `ip`, unchanged meanwhile,
    /// exactly as [`Nat::snat_out`] would.
    #[inline(always)]
    pub fn out_lookup(router: u32, ip: &[u8]) -> Option<OutLookup> {
        let h = wire::parse(ip).ok()?;
        if h.frag_off != 0 {
            return None;
        }
        let l4 = h.ihl;
        let (sport, dport, flags) = match h.proto {
            PROTO_TCP if ip.len() >= l4 + 20 => (be16(ip, l4), be16(ip, l4 + 2), ip[l4 + 13]),
            PROTO_UDP if ip.len() >= l4 + 8 => (be16(ip, l4), be16(ip, l4 + 2), 0),
            PROTO_ICMP if ip.len() >= l4 + 8 && ip[l4] == wire::ICMP_ECHO_REQUEST => {
                (be16(ip, l4 + 4), 0, 0)
            }
            _ => return None,
        };
        let k = InKey {
            router,
            proto: h.proto,
            in_ip: h.src,
            in_port: sport,
            rem_ip: h.dst,
            rem_port: dport,
        };
        Some(OutLookup {
            hdr: h,
            h_in: k.hash(),
            k,
            flags,
        })
    }

    /// Stage one of the lookahead ([`Nat::prefetch_out`]) for a lookup
    /// already worked out.
    #[inline(always)]
    pub fn prefetch_lookup(&self, l: &OutLookup) {
        self.by_in.prefetch(l.h_in);
        self.look.push(Ahead::Out(l.k, l.h_in));
    }

    /// [`Nat::snat_out`] of `ip`, whose lookup `l` is ([`Nat::out_lookup`] of
    /// the same bytes): the session found or created, refreshed, the packet
    /// translated.
    #[inline(always)]
    pub fn snat_out_looked(
        &mut self,
        ip: &mut [u8],
        l: &OutLookup,
        now: u64,
    ) -> Result<(), DropReason> {
        let (h, k) = (&l.hdr, &l.k);
        let found = self.find_in_hashed(k, l.h_in);
        let s = match self.live(found, now) {
            Some(s) => s,
            None => self.create(k, l.h_in, now)?,
        };
        self.touch(s, true, l.flags, now);
        let (ext_ip, ext_port) = (
            self.slots[s as usize].ext_ip,
            self.slots[s as usize].ext_port,
        );
        wire::xlate(ip, h, Side::Src, ext_ip, Some(ext_port))?;
        if h.mf {
            self.remember(false, k.router, h, ext_ip, now);
        }
        Ok(())
    }

    /// An ICMP error from inside quotes a packet that came in through a
    /// session: remote → inside.
    fn error_out(&mut self, router: u32, ip: &mut [u8], h: &Hdr, now: u64) -> Result<(), R> {
        let q = wire::quoted(ip, h.ihl)?;
        let k = InKey {
            router,
            proto: q.proto,
            in_ip: q.dst,
            in_port: q.dport,
            rem_ip: q.src,
            rem_port: if q.proto == PROTO_ICMP { 0 } else { q.sport },
        };
        let found = self.find_in(&k);
        let s = self.live(found, now).ok_or(R::NatNoSession)?;
        let (ext_ip, ext_port) = (
            self.slots[s as usize].ext_ip,
            self.slots[s as usize].ext_port,
        );
        wire::xlate_quoted(ip, h.ihl, Side::Dst, None, ext_ip, Some(ext_port))?;
        wire::xlate(ip, h, Side::Src, ext_ip, None)?;
        if h.mf {
            self.remember(false, router, h, ext_ip, now);
        }
        Ok(())
    }

    /// Translates a packet from outside back to inside by its session
    /// (protocol, external address and port or echo id, remote address and
    /// port): the destination becomes the inside address and port. An ICMP
    /// error about a session gets its quoted source translated too. Returns
    /// the session's router, for the caller to route the packet.
    pub fn snat_in(&mut self, ip: &mut [u8], now: u64) -> Result<u32, DropReason> {
        let h = wire::parse(ip)?;
        if h.frag_off != 0 {
            return self.follow(true, 0, ip, &h, now);
        }
        let l4 = h.ihl;
        let (sport, dport, flags) = match h.proto {
            PROTO_TCP if ip.len() >= l4 + 20 => (be16(ip, l4), be16(ip, l4 + 2), ip[l4 + 13]),
            PROTO_UDP if ip.len() >= l4 + 8 => (be16(ip, l4), be16(ip, l4 + 2), 0),
            PROTO_ICMP if ip.len() >= l4 + 8 => match ip[l4] {
                wire::ICMP_ECHO_REPLY => (0, be16(ip, l4 + 4), 0),
                t if wire::is_icmp_error(t) => return self.error_in(ip, &h, now),
                _ => return Err(R::NatUnsupportedProto),
            },
            PROTO_TCP | PROTO_UDP | PROTO_ICMP => return Err(R::NatTruncated),
            _ => return Err(R::NatUnsupportedProto),
        };
        let found = self.find_out(h.proto, h.dst, dport, h.src, sport);
        let s = self.live(found, now).ok_or(R::NatNoSession)?;
        self.touch(s, false, flags, now);
        let x = self.slots[s as usize];
        wire::xlate(ip, &h, Side::Dst, x.in_ip, Some(x.in_port))?;
        if h.mf {
            self.remember(true, x.router, &h, x.in_ip, now);
        }
        Ok(x.router)
    }

    /// An ICMP error from outside quotes a packet that went out through a
    /// session: external → remote.
    fn error_in(&mut self, ip: &mut [u8], h: &Hdr, now: u64) -> Result<u32, R> {
        let q = wire::quoted(ip, h.ihl)?;
        let rem_port = if q.proto == PROTO_ICMP { 0 } else { q.dport };
        let found = self.find_out(q.proto, q.src, q.sport, q.dst, rem_port);
        let s = self.live(found, now).ok_or(R::NatNoSession)?;
        let x = self.slots[s as usize];
        wire::xlate_quoted(ip, h.ihl, Side::Src, None, x.in_ip, Some(x.in_port))?;
        wire::xlate(ip, h, Side::Dst, x.in_ip, None)?;
        if h.mf {
            self.remember(true, x.router, h, x.in_ip, now);
        }
        Ok(x.router)
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
    fn next_port(&self, k: &InKey) -> Option<(u32, u16)> {
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

    /// [`Nat::snat_out`] on each packet of a burst (`res[i]` the result of
    /// `pkts[i]`; as many as the shorter of the two), the same translations in
    /// the same order, with the lookups of up to 32 packets prefetched first
    /// (both stages of the lookahead): with a table larger than the caches,
    /// their cache misses overlap instead of following each other.
    pub fn snat_out_burst<P: AsMut<[u8]>>(
        &mut self,
        router: u32,
        pkts: &mut [P],
        now: u64,
        res: &mut [Result<(), DropReason>],
    ) {
        let n = pkts.len().min(res.len());
        for (pkts, res) in pkts[..n].chunks_mut(32).zip(res[..n].chunks_mut(32)) {
            for p in pkts.iter_mut() {
                self.prefetch_out(router, p.as_mut());
            }
            for _ in 0..pkts.len() {
                self.prefetch_next();
            }
            for (p, r) in pkts.iter_mut().zip(res.iter_mut()) {
                *r = self.snat_out(router, p.as_mut(), now);
            }
        }
    }

    /// [`Nat::snat_out_burst`] for [`Nat::snat_in`].
    pub fn snat_in_burst<P: AsMut<[u8]>>(
        &mut self,
        pkts: &mut [P],
        now: u64,
        res: &mut [Result<u32, DropReason>],
    ) {
        let n = pkts.len().min(res.len());
        for (pkts, res) in pkts[..n].chunks_mut(32).zip(res[..n].chunks_mut(32)) {
            for p in pkts.iter_mut() {
                self.prefetch_in(p.as_mut());
            }
            for _ in 0..pkts.len() {
                self.prefetch_next();
            }
            for (p, r) in pkts.iter_mut().zip(res.iter_mut()) {
                *r = self.snat_in(p.as_mut(), now);
            }
        }
    }

    #[inline(always)]
    fn frag_key(inbound: bool, router: u32, h: &Hdr) -> (u64, u64) {
        let addrs = (u64::from(h.src) << 32) | u64::from(h.dst);
        let what = if inbound { DIR_IN } else { 0 }
            | (u64::from(h.proto) << 48)
            | (u64::from(h.id) << 32)
            | if inbound { 0 } else { u64::from(router) };
        (addrs, what)
    }

    /// Records a first fragment's new address (and router, inbound) for the
    /// later fragments: a free, expired or same-key way of its set, else the
    /// one closest to expiry.
    fn remember(&mut self, inbound: bool, router: u32, h: &Hdr, new_ip: u32, now: u64) {
        let (addrs, what) = Nat::frag_key(inbound, router, h);
        let set = (mix(addrs, what) >> 32) as usize & (self.frags.len() - 1) & !(FRAG_WAYS - 1);
        let mut pick = set;
        for i in set..set + FRAG_WAYS {
            let f = &self.frags[i];
            if f.expires <= now || (f.addrs == addrs && f.what == what) {
                pick = i;
                break;
            }
            if f.expires < self.frags[pick].expires {
                pick = i;
            }
        }
        self.frags[pick] = Frag {
            addrs,
            what,
            new_ip,
            router,
            expires: now.saturating_add(self.t_frag).max(1),
        };
    }

    /// Translates a later fragment as its first was.
    fn follow(
        &mut self,
        inbound: bool,
        router: u32,
        ip: &mut [u8],
        h: &Hdr,
        now: u64,
    ) -> Result<u32, R> {
        let (addrs, what) = Nat::frag_key(inbound, router, h);
        let set = (mix(addrs, what) >> 32) as usize & (self.frags.len() - 1) & !(FRAG_WAYS - 1);
        let f = self.frags[set..set + FRAG_WAYS]
            .iter()
            .find(|f| f.addrs == addrs && f.what == what && f.expires > now)
            .copied()
            .ok_or(R::NatFragmentUnknown)?;
        let side = if inbound { Side::Dst } else { Side::Src };
        wire::xlate(ip, h, side, f.new_ip, None)?;
        Ok(f.router)
    }

    /// Checks the tables against each other (tests and fuzzing; a scan of
    /// everything): both indexes find every session, bindings count their
    /// sessions, no (protocol, external address, port) is bound twice, and
    /// each pool's free ports and bound ports are exactly its range.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut refs = vec![0u32; self.bindings.len()];
        let mut used = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if s.proto == 0 {
                continue;
            }
            used += 1;
            let k = InKey {
                router: s.router,
                proto: s.proto,
                in_ip: s.in_ip,
                in_port: s.in_port,
                rem_ip: s.rem_ip,
                rem_port: s.rem_port,
            };
            if self.find_in(&k) != Some(i as u32) {
                return Err(format!("session {i} not found by its inside key: {s:?}"));
            }
            if self.find_out(s.proto, s.ext_ip, s.ext_port, s.rem_ip, s.rem_port) != Some(i as u32)
            {
                return Err(format!("session {i} not found by its outside key: {s:?}"));
            }
            let sb = self.cold[i].binding as usize;
            let b = self.bindings.get(sb).ok_or("binding out of range")?;
            if (b.router, b.proto, b.in_ip, b.in_port, b.ext_ip, b.ext_port)
                != (s.router, s.proto, s.in_ip, s.in_port, s.ext_ip, s.ext_port)
            {
                return Err(format!(
                    "session {i} {s:?} disagrees with its binding {b:?}"
                ));
            }
            if self
                .pools
                .get(b.pool as usize)
                .and_then(|p| p.as_ref().map(|p| p.ip))
                != Some(b.ext_ip)
            {
                return Err(format!("binding {sb} {b:?} names another address's pool"));
            }
            refs[sb] += 1;
            let r = self
                .routers
                .get(&s.router)
                .ok_or(format!("session {i} of no router"))?;
            if !r.ips.contains(&s.ext_ip) || !r.range.contains(&s.ext_port) {
                return Err(format!("session {i} {s:?} outside its router's pool {r:?}"));
            }
        }
        if used + self.free_slots.len() != self.slots.len() {
            return Err("session free list and slots disagree".into());
        }
        let mut bound: FxHashMap<(u8, u32, u16), usize> = FxHashMap::default();
        let mut nb = 0;
        for (i, b) in self.bindings.iter().enumerate() {
            if b.refs != refs[i] {
                return Err(format!(
                    "binding {i} {b:?} counts {} sessions, has {}",
                    b.refs, refs[i]
                ));
            }
            if b.refs == 0 {
                continue;
            }
            nb += 1;
            if let Some(j) = bound.insert((b.proto, b.ext_ip, b.ext_port), i) {
                return Err(format!("bindings {j} and {i} share {b:?}"));
            }
        }
        if nb + self.free_bindings.len() != self.bindings.len() {
            return Err("binding free list and bindings disagree".into());
        }
        for (i, p) in self.pools.iter().enumerate() {
            let Some(p) = p else { continue };
            let ip = p.ip;
            if self.pool_of.get(&ip) != Some(&(i as u32)) {
                return Err(format!("pool {i} of {ip:x} not found by its address"));
            }
            for (pi, proto) in [PROTO_TCP, PROTO_UDP, PROTO_ICMP].into_iter().enumerate() {
                let mut seen = std::collections::HashSet::new();
                for &port in &p.free[pi] {
                    if !p.range.contains(&port) || !seen.insert(port) {
                        return Err(format!("pool {ip:x}/{proto}: port {port} bad or twice"));
                    }
                    if bound.contains_key(&(proto, ip, port)) {
                        return Err(format!("pool {ip:x}/{proto}: port {port} free and bound"));
                    }
                }
                let nbound = bound
                    .keys()
                    .filter(|&&(pr, i, _)| pr == proto && i == ip)
                    .count();
                if seen.len() + nbound != p.range.clone().count() {
                    return Err(format!("pool {ip:x}/{proto}: ports lost"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
