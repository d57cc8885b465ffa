//! What `dvr-ctl show sessions` sees of the session table.

use std::net::SocketAddrV4;

use crate::wire::proto;

use super::tcp::tcp_established;
use super::Nat;

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
            proto::TCP => "tcp",
            proto::UDP => "udp",
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

/// `ticks` of `ticks_per_sec` in whole milliseconds.
pub(super) fn ticks_to_ms(ticks: u64, ticks_per_sec: u64) -> u64 {
    (u128::from(ticks) * 1000 / u128::from(ticks_per_sec.max(1))) as u64
}

impl Nat {
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
    pub(super) fn view_slots(
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
                        proto::TCP if tcp_established(s.tcp) => SessionState::TcpEstablished,
                        proto::TCP => SessionState::TcpTransitory,
                        proto::UDP => SessionState::Udp,
                        _ => SessionState::Icmp,
                    },
                    age_ms: ticks_to_ms(now.saturating_sub(c.created), tps),
                    idle_ms: ticks_to_ms(now.saturating_sub(s.last), tps),
                };
                (Some(v), self.dead(s, now))
            })
    }
}
