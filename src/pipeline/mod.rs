//! The packet pipeline: what happens to one frame, from the port it came in on
//! to the port it leaves by (or the reason it is dropped). The stages, in
//! the order a frame meets them, one file each:
//!
//! - [`classify`](mod@classify): the ingress port's slot (a VM port bound to a model port,
//!   an unbound VM port switched by the static table, the underlay, the
//!   external port), looked up once per burst; [`process_from`] sends the
//!   frame on to the way in of its kind;
//! - [`port_security`](mod@port_security) (VM ports): source MAC and IP against the port's own
//!   and its allowed address pairs (exact or CIDR); ARP senders and neighbour
//!   discovery about the port itself only; no router advertisement, redirect
//!   or DHCP server message;
//! - [`dhcp`](mod@dhcp) (VM ports): DHCPv4 answered from the model on the
//!   VM's own host (address, mask, router, DNS, MTU, classless routes);
//!   [`ra`](mod@ra) and [`dhcp6`](mod@dhcp6): router solicitations and
//!   DHCPv6 answered likewise (prefixes, flags, MTU; IA_NA, DNS);
//! - [`metadata`](mod@metadata) (VM ports): TCP to 169.254.169.254:80 handed
//!   to the node's metadata proxy (with `[metadata]` configured);
//! - [`responder`](mod@responder): requests for any address the model knows are answered
//!   here, never flooded (ARP, neighbour discovery); VIP holders learned from
//!   what allowed address pairs announce;
//! - [`switch`](mod@switch): destination MAC in the network's FDB (local port, a port on
//!   another host, a router interface); broadcast and multicast flooded;
//! - [`route`](mod@route) (distributed, per router, IPv4 and IPv6 LPM): router-addressed
//!   echo, TTL / hop limit, MTU, neighbour rewrite;
//! - [`icmp`](mod@icmp): the errors routing answers with (unreachable, time exceeded,
//!   fragmentation needed / packet too big), rate limited;
//! - [`nat`](mod@nat): north-south: floating IPs, the router's SNAT here or on its
//!   SNAT node, hairpin; the external port's way in (DNAT, SNAT sessions,
//!   proxy ARP);
//! - [`encap`](mod@encap) toward another host (VXLAN, GRE, VLAN) with this host's DVR
//!   MAC as the inner source of routed frames;
//! - [`decap`](mod@decap): the underlay's way in: VTEP and VNI / key / VLAN checks, drop
//!   an inner source that is this node's router interface or DVR MAC, and
//!   rewrite a DVR MAC source to the router interface MAC.
//!
//! In order: a VM port's frame takes `from_vm` (the flow cache, else
//! `from_vm_full`: port security, VIP learning, DHCP, metadata, responder, switch, route,
//! NAT, encap); an underlay frame `decap::from_underlay` (decap, then
//! switch or route); an external frame `nat::from_external` (NAT, then
//! route). The fast paths that decide the common cases on a frame's bytes
//! alone are in [`crate::fastpath`].
//!
//! Each stage returns the frame's [`Disposition`] itself (forwarded, flooded,
//! answered with an ICMP error, punted, dropped): nothing about the outcome
//! is left aside in [`Env`] but a VIP flood's address ([`Env::flood_vip`]).
//!
//! Frames are changed in place ([`Frame`]); an answer (ARP reply, echo reply,
//! ICMP error) reuses the request's buffer. No allocation, no lock, no syscall.
//! The same code runs in `dvr-ctl trace` with a recording [`Trace`].

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use self::decap::from_underlay;
use self::nat::from_external;
use self::port_security::{port_security, port_security_msgs};
use self::responder::{
    arp_respond, arp_unanswered, nd_respond, nd_unanswered, own_dad, vip_learn, vip_reply_to_router,
};
use self::switch::{flood, switch};
use crate::fastpath::cached::cached;
use crate::fastpath::decap::DecapMemo;
use crate::fastpath::flow::{self, FlowCache};
use crate::fastpath::snat::SnatMemo;
use crate::fastpath::tunnel::{TUNNEL_MEMO, TUNNEL_MEMO_SMALL};
use crate::l2;
use crate::mac::MacAddr;
use crate::nat::{Nat, NatConfig};
use crate::pkt::Frame;
use crate::stats::{DropReason, DropReason as R};
use crate::tables::{NetTables, Snapshot, SnatHere, VmPort};
use crate::wire::{be16, ethernet};
use Disposition as D;

/// Where a frame goes: a dataplane port index, or why not: what the
/// helpers the fast paths share with the stages return (`encap::overlay`,
/// [`encap_copy`]); the stages themselves return a [`Disposition`].
pub type Verdict = Result<u16, DropReason>;

/// What becomes of a frame: the one outcome of each stage, of the pipeline
/// ([`process`], [`process_from`]) and of the fast paths
/// ([`crate::fastpath`]), which the worker matches once per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Out of dataplane port `.0` as the stages left it: switched, routed,
    /// encapsulated or decapsulated; or a reply with nothing to count (an
    /// ARP reply, an echo reply, a neighbour advertisement), out of the port
    /// the request came in on.
    Forward(u16),
    /// Replicated by the worker ([`flood_targets`] of [`Env::flood_of`]) to
    /// network `net`'s other local ports and, with `tunnels`, to its other
    /// hosts; with `vip`, only to the ports (and hosts) whose allowed
    /// address pairs cover the address asked for ([`Env::flood_vip`]). `why`: the
    /// frame was not forwarded but turned into the request flooded, counted
    /// under that reason (a routed frame to a VIP nobody announced).
    Flood {
        net: u32,
        tunnels: bool,
        vip: bool,
        why: Option<DropReason>,
    },
    /// Not forwarded but answered: an ICMP error written over the frame, out
    /// of `port` (where the frame came from), counted under `why`.
    Answered { port: u16, why: DropReason },
    /// Handed to the control thread (what it is to take in [`Env`]); the
    /// frame goes no further, counted under [`PuntKind::counter`].
    Punt(PuntKind),
    /// Dropped, counted under the reason.
    Drop(DropReason),
}

/// The worker matches a [`Disposition`] per frame and the fast paths return
/// one: it stays a register's worth.
const _: () = assert!(std::mem::size_of::<Disposition>() <= 8);

/// What a frame handed to the control thread is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PuntKind {
    /// An ARP reply or a gratuitous ARP on the underlay or the external
    /// port, or a neighbour advertisement on the external port: its sender
    /// ([`Env::learned`]) for the resolver (the VTEPs of other hosts, the
    /// upstream routers).
    ArpReply,
    /// TCP from a VM to 169.254.169.254:80, for the metadata proxy
    /// ([`Env::metadata_note`]).
    Metadata,
}

impl PuntKind {
    /// The counter a frame punted this way is counted under (it is not
    /// forwarded).
    pub const fn counter(self) -> DropReason {
        match self {
            PuntKind::ArpReply => DropReason::ArpReplyConsumed,
            PuntKind::Metadata => DropReason::MetadataConsumed,
        }
    }
}

impl Disposition {
    /// The disposition of a verdict: a port or a drop (what the fast paths,
    /// the static table and [`encap::overlay`] decide: they never flood,
    /// answer or punt).
    #[inline(always)]
    pub(crate) fn plain(v: Verdict) -> Disposition {
        match v {
            Ok(p) => Disposition::Forward(p),
            Err(r) => Disposition::Drop(r),
        }
    }
}

/// Records each stage's decision when tracing; compiled out otherwise.
pub trait Trace {
    const ON: bool;
    /// A stage's decision; formatted by the tracer (a live trace writes it
    /// into a buffer of its own: nothing allocated).
    fn note(&mut self, stage: &'static str, what: std::fmt::Arguments<'_>);
}

/// The workers' tracer: records nothing.
pub struct NoTrace;

impl Trace for NoTrace {
    const ON: bool = false;
    #[inline(always)]
    fn note(&mut self, _: &'static str, _: std::fmt::Arguments<'_>) {}
}

/// A tracer that keeps every note, in order.
#[derive(Debug, Default)]
pub struct Notes(pub Vec<(&'static str, String)>);

impl Trace for Notes {
    const ON: bool = true;
    fn note(&mut self, stage: &'static str, what: std::fmt::Arguments<'_>) {
        self.0.push((stage, what.to_string()));
    }
}

/// `?` for a stage: the value of an `Ok`, or the stage returns
/// [`Disposition::Drop`] with the reason of the `Err`.
macro_rules! ok_or_drop {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return $crate::pipeline::Disposition::Drop(r),
        }
    };
}

macro_rules! tr {
    ($t:expr, $stage:expr, $($a:tt)*) => {
        if T::ON {
            $t.note($stage, format_args!($($a)*));
        }
    };
}

pub mod classify;
pub mod decap;
pub mod dhcp;
pub mod dhcp6;
pub mod encap;
pub mod icmp;
pub mod metadata;
pub mod nat;
pub mod port_security;
pub mod ra;
pub mod responder;
pub mod route;
pub mod switch;

pub use classify::{ingress, Ingress};
pub use metadata::MetadataNote;
pub use nat::fip_mac;
pub use switch::{encap_copy, flood_targets, Flood, Target};

/// ICMP errors a worker may send: a token bucket of `ICMP_BURST` refilled at
/// `ICMP_PER_SEC`.
pub const ICMP_PER_SEC: u64 = 1000;
pub const ICMP_BURST: u64 = 50;
/// The most an ICMP error may be (IP header, ICMP header and the quote).
pub const ICMP_ERROR_MAX: usize = 576;

/// The ingress "port" of a frame another host sent over the overlay to a
/// router interface here, routed here ([`nat::routed_from_overlay`]): no
/// port of this node. Such a frame is never answered (no ICMP error goes
/// back over the overlay, but for a path MTU: [`icmp::too_big4`]) and never
/// sent on to another host for SNAT.
const FROM_OVERLAY: u16 = u16::MAX;

/// A worker's own state for the pipeline.
pub struct Env {
    /// The clock (TSC) and its rate; read only when an ICMP error is due.
    pub now: fn() -> u64,
    pub hz: u64,
    tokens: u64,
    last: u64,
    /// Set with a [`Disposition::Flood`] whose `vip` is set: the address
    /// asked for, which the disposition has no room for ([`Env::flood_of`]).
    pub flood_vip: Option<IpAddr>,
    /// Set with a [`PuntKind::ArpReply`] punt: the sender (address, MAC) of
    /// the ARP reply or gratuitous ARP, or the target of a neighbour
    /// advertisement on the external port, for the control thread's
    /// resolver (the VTEPs of other hosts, the upstream routers).
    pub learned: Option<(IpAddr, MacAddr)>,
    /// Set when a frame showed a VIP's holder ([`VipNote`]): the worker
    /// hands it to the control thread.
    pub vip: Option<VipNote>,
    /// This worker's SNAT sessions (routers whose SNAT runs on this node).
    pub nat: Box<Nat>,
    /// The ports this worker translates to (its share of the node's range).
    pub nat_ports: RangeInclusive<u16>,
    /// The router list the NAT was last set up from.
    nat_routers: Arc<Vec<SnatHere>>,
    /// The clock for this burst, read at most once per burst (see [`Env::burst`]).
    clock: Option<u64>,
    /// The routed east-west flows seen on this worker ([`crate::fastpath::flow`]).
    pub flows: FlowCache,
    /// Whether the node runs the metadata proxy ([`metadata`]).
    pub metadata: bool,
    /// Set with a [`PuntKind::Metadata`] punt: where the frame came from.
    pub metadata_note: Option<MetadataNote>,
    /// What [`crate::fastpath::snat_way`] last found for a tunnel ([`SnatMemo`]).
    pub snat_memo: SnatMemo,
    /// What [`crate::fastpath::decap_way`] last found for a tunnel ([`DecapMemo`]).
    pub decap_memo: DecapMemo,
}

/// A frame from a port showed that `mac` holds `ip`, an address inside the
/// allowed address pairs of a port of network `net` (a gratuitous ARP, an
/// ARP reply, a neighbour advertisement): for the control thread, which
/// publishes the holder ([`crate::compile::Compiler::set_vip_holder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipNote {
    pub net: u32,
    pub ip: IpAddr,
    pub mac: MacAddr,
}

impl Env {
    /// An environment with a small SNAT table (tests, tools); workers use
    /// [`Env::with_nat`].
    pub fn new(now: fn() -> u64, hz: u64) -> Env {
        Env::small(now, hz, crate::nat::DEFAULT_PORTS)
    }

    /// [`Env::new`] whose SNAT translates to `ports`: a short range makes one
    /// quickly (its port pools are shuffled when the first burst sets up the
    /// SNAT), for fuzzing that makes one per frame.
    pub fn small(now: fn() -> u64, hz: u64, ports: RangeInclusive<u16>) -> Env {
        // Small: tests and traces make one per frame. 64 flow cache sets (8
        // KiB): enough that the few flows of a test do not share a set.
        let cfg = NatConfig {
            max_sessions: 64,
            max_fragments: 4,
            ..NatConfig::default()
        };
        Env::build(now, hz, cfg, ports, 64, TUNNEL_MEMO_SMALL)
    }

    /// An environment whose SNAT holds `cfg.max_sessions` sessions and
    /// translates to `ports`.
    pub fn with_nat(now: fn() -> u64, hz: u64, cfg: NatConfig, ports: RangeInclusive<u16>) -> Env {
        Env::build(now, hz, cfg, ports, flow::WORKER_SETS, TUNNEL_MEMO)
    }

    fn build(
        now: fn() -> u64,
        hz: u64,
        cfg: NatConfig,
        ports: RangeInclusive<u16>,
        flow_sets: usize,
        memo: usize,
    ) -> Env {
        Env {
            now,
            hz: hz.max(1),
            tokens: ICMP_BURST,
            last: now(),
            flood_vip: None,
            vip: None,
            learned: None,
            nat: Box::new(Nat::new(cfg, hz.max(1))),
            nat_ports: ports,
            nat_routers: Arc::default(),
            clock: None,
            flows: FlowCache::new(flow_sets),
            metadata: false,
            metadata_note: None,
            snat_memo: SnatMemo::new(memo),
            decap_memo: DecapMemo::new(memo),
        }
    }

    /// Starts a burst on `snap`: the clock is read again when needed, and the
    /// SNAT follows the routers whose SNAT runs here (a change of them is
    /// rare: control path work, here on the worker that owns the table).
    #[inline]
    pub fn burst(&mut self, snap: &Snapshot) {
        self.clock = None;
        if !Arc::ptr_eq(&self.nat_routers, &snap.snat_here) {
            self.sync_nat(snap);
        }
    }

    #[cold]
    fn sync_nat(&mut self, snap: &Snapshot) {
        let new = snap.snat_here.clone();
        for old in self.nat_routers.iter() {
            if !new.iter().any(|n| n.router == old.router) {
                self.nat.remove_router(old.router);
            }
        }
        for r in new.iter() {
            // Sharing an address with another router and another range is
            // refused; the router then translates nothing (nat_no_pool).
            if let Err(e) = self
                .nat
                .set_router(r.router, &r.ips, self.nat_ports.clone())
            {
                tracing::warn!(router = r.router, error = %e, "SNAT not set up");
            }
            // A fixed IP that got a floating IP leaves by it from now on: its
            // SNAT sessions go.
            let before = self.nat_routers.iter().find(|o| o.router == r.router);
            for fixed in &r.with_fip {
                if before.is_none_or(|b| b.with_fip.binary_search(fixed).is_err()) {
                    self.nat.flush_inside(r.router, *fixed);
                }
            }
        }
        self.nat_routers = new;
    }

    /// Whether this worker translates (some router's SNAT runs here): only
    /// then is [`crate::fastpath::prefetch_nat`] worth its pass over a burst.
    #[inline]
    pub fn snat_here(&self) -> bool {
        !self.nat_routers.is_empty()
    }

    /// The clock, read once per burst.
    #[inline]
    pub(crate) fn clock(&mut self) -> u64 {
        *self.clock.get_or_insert_with(self.now)
    }

    /// Expires idle SNAT sessions: a bounded sweep, once per burst.
    #[inline]
    pub fn expire(&mut self, budget: usize) {
        if !self.nat.is_empty() {
            let now = self.clock();
            self.nat.expire(now, budget);
        }
    }

    /// [`Env::expire`] between bursts: at the time now, not the last
    /// burst's.
    #[inline]
    pub fn expire_now(&mut self, budget: usize) {
        self.clock = None;
        self.expire(budget);
    }

    /// Where a [`Disposition::Flood`] is to be replicated ([`flood_targets`]):
    /// its own fields and, for a VIP flood, the address asked for
    /// ([`Env::flood_vip`]). `None` for any other disposition.
    #[inline(always)]
    pub fn flood_of(&self, d: Disposition) -> Option<Flood> {
        match d {
            Disposition::Flood {
                net, tunnels, vip, ..
            } => Some(Flood {
                net,
                tunnels,
                only: if vip { self.flood_vip } else { None },
            }),
            _ => None,
        }
    }

    /// Takes one ICMP error token if there is one.
    fn icmp_token(&mut self) -> bool {
        if self.tokens == 0 {
            let now = (self.now)();
            let earned =
                now.wrapping_sub(self.last) as u128 * ICMP_PER_SEC as u128 / self.hz as u128;
            if earned == 0 {
                return false;
            }
            self.tokens = (earned as u64).min(ICMP_BURST);
            self.last = now;
        }
        self.tokens -= 1;
        true
    }
}

/// Runs the pipeline over one frame that came in on `in_port`.
#[inline]
pub fn process<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> Disposition {
    process_from(snap, env, ingress(snap, in_port), in_port, f, t)
}

/// [`process`] with the port's ingress already looked up (once per burst):
/// the stages a frame meets, by the kind of its ingress port.
#[inline]
pub fn process_from<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    ing: Ingress<'_>,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> Disposition {
    let b = f.data();
    if b.len() < ethernet::HEADER_LEN {
        return D::Drop(R::RuntFrame);
    }
    if b[ethernet::field::SRC.start] & 1 != 0 {
        return D::Drop(R::MulticastSrcMac);
    }
    match ing {
        Ingress::Vm(vm, net) => {
            tr!(
                t,
                "classify",
                "VM port of model port {} on network {}",
                vm.name,
                vm.network
            );
            from_vm(snap, env, vm, net, f, t)
        }
        Ingress::VmNoNet => D::Drop(R::Dangling),
        Ingress::Underlay => {
            tr!(t, "classify", "underlay port");
            from_underlay(snap, env, in_port, f, t)
        }
        Ingress::External => {
            tr!(t, "classify", "external port");
            from_external(snap, env, in_port, f, t)
        }
        Ingress::Static => {
            tr!(
                t,
                "classify",
                "VM port with no model port bound: the configuration's static table"
            );
            D::plain(l2::classify(snap.static_fdb(), in_port, b))
        }
    }
}

/// A frame from a VM port: an IPv4 flow already routed or switched on this
/// snapshot takes its cached way ([`crate::fastpath::flow`]), anything else the full
/// pipeline, whose outcome is then cached if it may be. Traces always take
/// the full pipeline.
#[inline(always)]
fn from_vm<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Disposition {
    if T::ON {
        return from_vm_full(snap, env, vm, net, f, t);
    }
    let Some(k) = FlowCache::key(vm.index, f.data()) else {
        return from_vm_full(snap, env, vm, net, f, t);
    };
    match env.flows.lookup(snap.epoch, k) {
        Some(a) => match cached(snap, a, f) {
            Some(v) => D::plain(v),
            // A check of this frame failed: the full pipeline says which.
            None => from_vm_full(snap, env, vm, net, f, t),
        },
        None => {
            let d = from_vm_full(snap, env, vm, net, f, t);
            env.flows.settle(snap.epoch, matches!(d, D::Forward(_)));
            d
        }
    }
}

#[inline(always)]
fn from_vm_full<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Disposition {
    let in_port = vm.index;
    let b = f.data();
    let et = be16(b, ethernet::field::ETHERTYPE.start);
    if et == ethernet::ETHERTYPE_VLAN {
        return D::Drop(R::VlanFromVm);
    }
    if vm.security {
        ok_or_drop!(port_security(vm, b, t));
        ok_or_drop!(port_security_msgs(vm, et, b, t));
        tr!(t, "port-security", "allowed");
    }
    if et != ethernet::ETHERTYPE_IPV4 && !vm.pairs.is_empty() && vip_learn(env, vm, net, b, t) {
        if let Some(d) = vip_reply_to_router(vm, net, f, t) {
            return d;
        }
    }
    if et == ethernet::ETHERTYPE_IPV4 {
        if let Some(d) = dhcp::dhcp4(vm, net, f, t) {
            return d;
        }
        if metadata::to_service(f.data()) {
            if let Some(d) = metadata::intercept(env, vm, net, f, t) {
                return d;
            }
        }
    }
    if et == ethernet::ETHERTYPE_IPV6 && (net.ra6.is_some() || !net.dhcp6.is_empty()) {
        if let Some(d) = dhcp6::config6(vm, net, f, t) {
            return d;
        }
    }
    if et == ethernet::ETHERTYPE_ARP {
        match arp_respond(net, f, t) {
            Ok(()) => return D::Forward(in_port),
            Err(None) => {} // not a request the responder answers: switch it
            Err(Some(R::ArpUnknownTarget)) => return arp_unanswered(env, vm, net, f, t),
            Err(Some(r)) => return D::Drop(r),
        }
    }
    let b = f.data();
    if b[ethernet::field::DST.start] & 1 != 0 {
        if et == ethernet::ETHERTYPE_IPV6 {
            if own_dad(vm, net, b) {
                tr!(
                    t,
                    "nd-responder",
                    "duplicate address detection for the port's own address: not answered"
                );
                return flood(vm.net, true, t);
            }
            match nd_respond(net, f, t) {
                Ok(()) => return D::Forward(in_port),
                Err(Some(R::NdUnknownTarget)) => return nd_unanswered(env, vm, net, f, t),
                Err(Some(r)) => return D::Drop(r),
                Err(None) => {}
            }
        }
        return flood(vm.net, true, t);
    }
    switch(snap, env, net, in_port, et, f, t)
}

/// A local port for a trace: the model port bound to its slot, if any
/// (formatted where it is written: nothing allocated).
fn port_label(snap: &Snapshot, p: u16) -> impl std::fmt::Display + '_ {
    Label(
        move |f: &mut std::fmt::Formatter<'_>| match snap.ports.get(p as usize) {
            Some(crate::tables::Slot::Vm(Some(vm))) => {
                write!(f, "local port {} (slot {p})", vm.name)
            }
            _ => write!(f, "local slot {p}"),
        },
    )
}

/// A router interface for a trace: the router's name and the subnet.
fn router_label(snap: &Snapshot, router: u32, iface: u16) -> impl std::fmt::Display + '_ {
    Label(
        move |f: &mut std::fmt::Formatter<'_>| match snap.routers.get(router as usize) {
            Some(r) => match r.interfaces.get(iface as usize) {
                Some(i) => write!(f, "router {}'s interface on subnet {}", r.name, i.subnet),
                None => write!(f, "router {} (interface {iface})", r.name),
            },
            None => write!(f, "router index {router} (interface {iface})"),
        },
    )
}

/// A trace's text made by a closure when it is formatted.
pub(crate) struct Label<F>(pub(crate) F);

impl<F: Fn(&mut std::fmt::Formatter<'_>) -> std::fmt::Result> std::fmt::Display for Label<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (self.0)(f)
    }
}

fn host_name(snap: &Snapshot, h: u16) -> &str {
    snap.node
        .hosts
        .get(h as usize)
        .map_or("?", |h| h.name.as_str())
}
