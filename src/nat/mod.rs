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
//!
//! # Files
//!
//! - this one: the API ([`Nat`], [`NatConfig`], the translations one packet
//!   or one burst at a time)
//! - `session`: the session table, bindings, key hashes, expiry
//! - `index`: the open-addressing index from a hash to a slot
//! - `pool`: the routers' external addresses and their free ports
//! - `tcp`: TCP state tracking
//! - `fragments`: later fragments translated as their first
//! - `lookahead`: the two-stage prefetch of a burst's lookups
//! - `view`: what `show sessions` lists
//! - `check`: the tables checked against each other (tests, fuzzing)
//! - `wire`: parsing and rewriting the packets, checksums
//! - `model`: a reference model for tests and fuzzing

mod check;
mod fragments;
mod index;
mod lookahead;
mod pool;
mod session;
mod tcp;
mod view;
mod wire;

#[doc(hidden)]
#[cfg(any(test, feature = "testkit"))]
pub mod model;

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use rustc_hash::FxHashMap;

use crate::stats::DropReason;
use crate::sys::HugeTable;
use crate::wire::icmp4::{self, types as icmp_types};
// `tcp` is NAT's own connection tracking (super::tcp).
use crate::wire::{be16, proto, tcp as tcp_wire, udp};
use fragments::{Frag, FRAG_WAYS};
use index::Index;
use lookahead::Lookahead;
use pool::{IpPool, RouterExt};
use session::{Binding, Cold, InKey, Session};
use wire::{Hdr, Side};

pub use session::RECLAIM_SLOTS;
pub use view::{SessionState, SessionView};
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

/// Sessions created, and freed by expiry (lookups and sweeps) or by a flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatCounters {
    pub created: u64,
    pub expired: u64,
    pub flushed: u64,
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
            proto::ICMP
                if ip.len() >= l4 + icmp4::HEADER_LEN
                    && icmp4::is_error(ip[l4 + icmp4::field::TYPE]) =>
            {
                self.error_out(router, ip, &h, now)
            }
            proto::ICMP if ip.len() >= l4 + icmp4::HEADER_LEN => Err(R::NatUnsupportedProto),
            proto::TCP | proto::UDP | proto::ICMP => Err(R::NatTruncated),
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
            proto::TCP | proto::UDP => ports(ip, h.proto, l4)?,
            proto::ICMP
                if ip.len() >= l4 + icmp4::HEADER_LEN
                    && ip[l4 + icmp4::field::TYPE] == icmp_types::ECHO_REQUEST =>
            {
                (be16(ip, l4 + icmp4::field::ECHO_ID.start), 0, 0)
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
            rem_port: if q.proto == proto::ICMP { 0 } else { q.sport },
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
            proto::TCP | proto::UDP => ports(ip, h.proto, l4).ok_or(R::NatTruncated)?,
            proto::ICMP if ip.len() >= l4 + icmp4::HEADER_LEN => {
                match ip[l4 + icmp4::field::TYPE] {
                    icmp_types::ECHO_REPLY => (0, be16(ip, l4 + icmp4::field::ECHO_ID.start), 0),
                    t if icmp4::is_error(t) => return self.error_in(ip, &h, now),
                    _ => return Err(R::NatUnsupportedProto),
                }
            }
            proto::ICMP => return Err(R::NatTruncated),
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
        let rem_port = if q.proto == proto::ICMP { 0 } else { q.dport };
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
}

/// The source and destination ports of the TCP or UDP packet `ip` (of
/// protocol `proto`) whose layer 4 starts at `l4`, and its TCP flags (0 for
/// UDP); `None` for another protocol or a packet too short for its header.
#[inline(always)]
fn ports(ip: &[u8], proto: u8, l4: usize) -> Option<(u16, u16, u8)> {
    match proto {
        proto::TCP if ip.len() >= l4 + tcp_wire::HEADER_LEN => Some((
            be16(ip, l4 + tcp_wire::field::SRC_PORT.start),
            be16(ip, l4 + tcp_wire::field::DST_PORT.start),
            ip[l4 + tcp_wire::field::FLAGS],
        )),
        proto::UDP if ip.len() >= l4 + udp::HEADER_LEN => Some((
            be16(ip, l4 + udp::field::SRC_PORT.start),
            be16(ip, l4 + udp::field::DST_PORT.start),
            0,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
