//! The packet pipeline: what happens to one frame, from the port it came in on
//! to the port it leaves by (or the reason it is dropped). Stages, in order:
//!
//! - **classify**: the ingress port's slot (a VM port bound to a model port, an
//!   unbound VM port switched by the static table, the underlay);
//! - **port security** (VM ports): source MAC and IP against the port's own and
//!   its allowed address pairs (exact or CIDR); ARP senders and neighbour
//!   discovery about the port itself only; no router advertisement, redirect
//!   or DHCP server message;
//! - **ARP / ND responder**: requests for any address the model knows are
//!   answered here, never flooded;
//! - **switch**: destination MAC in the network's FDB (local port, a port on
//!   another host, a router interface);
//! - **route** (distributed, per router, IPv4 and IPv6 LPM): router-addressed
//!   echo, TTL / hop limit, MTU, neighbour rewrite, ICMP errors;
//! - **encapsulate** toward another host (VXLAN, GRE, VLAN) with this host's DVR
//!   MAC as the inner source of routed frames; on the way in, **decapsulate**
//!   with VTEP and VNI / key / VLAN checks, drop an inner source that is this
//!   node's router interface or DVR MAC, and rewrite a DVR MAC source to the
//!   router interface MAC.
//!
//! Frames are changed in place ([`Frame`]); an answer (ARP reply, echo reply,
//! ICMP error) reuses the request's buffer. No allocation, no lock, no syscall.
//! The same code runs in `dvr-ctl trace` with a recording [`Trace`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::fib::{Key as _, NextHop};
use crate::flow::{self, Action, FlowCache, Out};
use crate::l2;
use crate::mac::MacAddr;
use crate::model::NetworkType;
use crate::nat::{self, Nat, NatConfig};
use crate::pkt::*;
use crate::stats::DropReason;
use crate::tables::{
    Adj, Dest, Gw, HostEntry, Iface, NetTables, NodeTables, RouterTables, Slot, Snapshot, VmPort,
};
use crate::tables::{ExtAddr, Home, SnatHere, SnatSettings};
use std::ops::RangeInclusive;
use std::sync::Arc;

type R = DropReason;

/// Where a frame goes: a dataplane port index, or why not.
pub type Verdict = Result<u16, DropReason>;

/// Records each stage's decision when tracing; compiled out otherwise.
pub trait Trace {
    const ON: bool;
    fn note(&mut self, stage: &'static str, what: String);
}

/// The workers' tracer: records nothing.
pub struct NoTrace;

impl Trace for NoTrace {
    const ON: bool = false;
    #[inline(always)]
    fn note(&mut self, _: &'static str, _: String) {}
}

/// A tracer that keeps every note, in order.
#[derive(Debug, Default)]
pub struct Notes(pub Vec<(&'static str, String)>);

impl Trace for Notes {
    const ON: bool = true;
    fn note(&mut self, stage: &'static str, what: String) {
        self.0.push((stage, what));
    }
}

macro_rules! tr {
    ($t:expr, $stage:expr, $($a:tt)*) => {
        if T::ON {
            $t.note($stage, format!($($a)*));
        }
    };
}

/// ICMP errors a worker may send: a token bucket of `ICMP_BURST` refilled at
/// `ICMP_PER_SEC`.
pub const ICMP_PER_SEC: u64 = 1000;
pub const ICMP_BURST: u64 = 50;
/// The most an ICMP error may be (IP header, ICMP header and the quote).
pub const ICMP_ERROR_MAX: usize = 576;

/// A worker's own state for the pipeline.
pub struct Env {
    /// The clock (TSC) and its rate; read only when an ICMP error is due.
    pub now: fn() -> u64,
    pub hz: u64,
    tokens: u64,
    last: u64,
    /// Set when a frame was not forwarded but answered (an ICMP error): the
    /// worker counts the reason and sends the answer.
    pub noted: Option<DropReason>,
    /// Set with a [`FLOOD`] verdict: where the frame is to be replicated.
    pub flood: Option<Flood>,
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
    /// Set while a frame another host sent here for SNAT is routed: never
    /// sent back to another host for SNAT.
    redirected: bool,
    /// The routed east-west flows seen on this worker ([`crate::flow`]).
    pub flows: FlowCache,
    /// What [`snat_way`] last found for a tunnel ([`SnatMemo`]).
    pub snat_memo: SnatMemo,
    /// What [`decap_way`] last found for a tunnel ([`DecapMemo`]).
    pub decap_memo: DecapMemo,
}

/// The verdict of a frame to replicate (see [`Env::flood`], [`flood_targets`]).
pub const FLOOD: u16 = u16::MAX - 1;

/// A broadcast or multicast frame of network `net` (index), to copy to the
/// network's other local ports and, when `tunnels`, to every other host with
/// ports on it (head-end replication). With `only`, an address inside allowed
/// address pairs: only to the ports whose pairs cover it (and the hosts of
/// such ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood {
    pub net: u32,
    pub tunnels: bool,
    pub only: Option<IpAddr>,
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

/// Where one copy of a flooded frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Port(u16),
    Host(u16),
}

/// The copies of a flooded frame that came in on `in_port`.
pub fn flood_targets(
    snap: &Snapshot,
    fl: Flood,
    in_port: u16,
) -> impl Iterator<Item = Target> + '_ {
    let net = snap.net(fl.net);
    let all = net.filter(|_| fl.only.is_none());
    let local = all
        .into_iter()
        .flat_map(|n| n.local_ports.iter())
        .filter(move |&&p| p != in_port)
        .map(|&p| Target::Port(p));
    let remote = all
        .filter(|_| fl.tunnels)
        .into_iter()
        .flat_map(|n| n.remote_hosts.iter())
        .map(|&h| Target::Host(h));
    // The VIP entries are sorted by where their port is: a port (or host)
    // with several covering pairs gets one copy.
    let vips = net
        .zip(fl.only)
        .into_iter()
        .flat_map(|(n, ip)| n.vips_of(ip))
        .filter_map(move |v| match v.dest {
            Dest::Local(p) if p != in_port => Some(Target::Port(p)),
            Dest::Remote(h) if fl.tunnels => Some(Target::Host(h)),
            _ => None,
        })
        .scan(None, |prev, t| {
            let first = *prev != Some(t);
            *prev = Some(t);
            Some(first.then_some(t))
        })
        .flatten();
    local.chain(remote).chain(vips)
}

/// Encapsulates a copy of a flooded frame of network `net` toward host `h`.
pub fn encap_copy(snap: &Snapshot, net: u32, h: u16, f: &mut Frame) -> Verdict {
    let n = snap.net(net).ok_or(R::TableGone)?;
    encap(snap, n, h, f, &mut NoTrace)
}

fn flood<T: Trace>(env: &mut Env, net: u32, tunnels: bool, t: &mut T) -> Verdict {
    tr!(
        t,
        "switch",
        "broadcast / multicast: flooded to the network's local ports{}",
        if tunnels {
            " and, head-end replicated, to its other hosts"
        } else {
            ""
        }
    );
    env.flood = Some(Flood {
        net,
        tunnels,
        only: None,
    });
    Ok(FLOOD)
}

/// Floods a request for `ip`, an address inside allowed address pairs, to
/// the ports whose pairs cover it (and, when `tunnels`, to their hosts).
fn flood_vip<T: Trace>(env: &mut Env, net: u32, tunnels: bool, ip: IpAddr, t: &mut T) -> Verdict {
    tr!(
        t,
        "switch",
        "{ip} is inside allowed address pairs: to the ports whose pairs cover it"
    );
    env.flood = Some(Flood {
        net,
        tunnels,
        only: Some(ip),
    });
    Ok(FLOOD)
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
            noted: None,
            flood: None,
            vip: None,
            nat: Box::new(Nat::new(cfg, hz.max(1))),
            nat_ports: ports,
            nat_routers: Arc::default(),
            clock: None,
            redirected: false,
            flows: FlowCache::new(flow_sets),
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
    /// then is [`prefetch_nat`] worth its pass over a burst.
    #[inline]
    pub fn snat_here(&self) -> bool {
        !self.nat_routers.is_empty()
    }

    /// The clock, read once per burst.
    #[inline]
    fn clock(&mut self) -> u64 {
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

/// What a port is to the pipeline, looked up once per burst ([`ingress`]).
#[derive(Clone, Copy)]
pub enum Ingress<'a> {
    /// A VM port bound to a model port, and its network's tables.
    Vm(&'a VmPort, &'a NetTables),
    /// A bound VM port whose network's tables are gone (a change in flight).
    VmNoNet,
    Underlay,
    External,
    /// A VM port no model port is bound to: the configuration's static table.
    Static,
}

/// The ingress of port `in_port` in `snap`.
#[inline]
pub fn ingress(snap: &Snapshot, in_port: u16) -> Ingress<'_> {
    match snap.ports.get(in_port as usize) {
        Some(Slot::Vm(Some(vm))) => match snap.net(vm.net) {
            Some(net) => Ingress::Vm(vm, net),
            None => Ingress::VmNoNet,
        },
        Some(Slot::Underlay) => Ingress::Underlay,
        Some(Slot::External) => Ingress::External,
        Some(Slot::Vm(None)) | None => Ingress::Static,
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
) -> Verdict {
    process_from(snap, env, ingress(snap, in_port), in_port, f, t)
}

/// [`process`] with the port's ingress already looked up (once per burst).
#[inline]
pub fn process_from<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    ing: Ingress<'_>,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let b = f.data();
    if b.len() < ETH_LEN {
        return Err(R::RuntFrame);
    }
    if b[6] & 1 != 0 {
        return Err(R::MulticastSrcMac);
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
        Ingress::VmNoNet => Err(R::TableGone),
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
            l2::classify(snap.static_fdb(), in_port, b)
        }
    }
}

fn mac_at(b: &[u8], at: usize) -> [u8; 6] {
    b[at..at + 6].try_into().expect("6 bytes")
}

/// Whether `ip` is the port's or inside one of its allowed pairs (for `src_mac`).
fn ip_allowed(vm: &VmPort, src_mac: &[u8; 6], ip: IpAddr) -> bool {
    (vm.mac.0 == *src_mac && vm.ips.contains(&ip))
        || vm
            .pairs
            .iter()
            .any(|(net, mac)| mac.unwrap_or(vm.mac).0 == *src_mac && net.contains(&ip))
}

/// Whether `mac` is one the port may send from: its own or an allowed pair's.
fn mac_allowed(vm: &VmPort, mac: &[u8; 6]) -> bool {
    vm.mac.0 == *mac || vm.pairs.iter().any(|(_, m)| m.is_some_and(|m| m.0 == *mac))
}

/// Port security; `Ok` when the frame may enter.
#[inline(always)]
fn port_security<T: Trace>(vm: &VmPort, b: &[u8], t: &mut T) -> Result<(), DropReason> {
    // The common case first: the port's own MAC and one of its IPv4 addresses.
    if b.len() >= ETH_LEN + IPV4_LEN
        && be16(b, 12) == ETHERTYPE_IPV4
        && b[6..12] == vm.mac.0
        && vm.ips4.contains(&be32(b, ETH_LEN + 12))
    {
        return Ok(());
    }
    port_security_slow(vm, b, t)
}

#[inline(never)]
fn port_security_slow<T: Trace>(vm: &VmPort, b: &[u8], t: &mut T) -> Result<(), DropReason> {
    let src = mac_at(b, 6);
    if !mac_allowed(vm, &src) {
        tr!(
            t,
            "port-security",
            "source MAC {} is not the port's",
            MacAddr(src)
        );
        return Err(R::PortSecurityMac);
    }
    let ip = match be16(b, 12) {
        ETHERTYPE_IPV4 if b.len() >= ETH_LEN + IPV4_LEN => {
            let a = ipv4_at(b, ETH_LEN + 12);
            if a.is_unspecified() {
                return Ok(()); // DHCP discover
            }
            IpAddr::V4(a)
        }
        ETHERTYPE_ARP if b.len() >= ETH_LEN + 28 => return arp_security(vm, b, t),
        ETHERTYPE_IPV6 if b.len() >= ETH_LEN + IPV6_LEN => {
            let a = ipv6_at(b, ETH_LEN + 8);
            // Unspecified (DAD) and link-local sources stay on the link.
            if a.is_unspecified() || a.segments()[0] & 0xffc0 == 0xfe80 {
                return Ok(());
            }
            IpAddr::V6(a)
        }
        // Truncated headers are judged by the stage that parses them.
        ETHERTYPE_IPV4 | ETHERTYPE_ARP | ETHERTYPE_IPV6 => return Ok(()),
        _ => return Ok(()),
    };
    if !vm.security || ip_allowed(vm, &src, ip) {
        Ok(())
    } else {
        tr!(
            t,
            "port-security",
            "source {ip} is not allowed on port {}",
            vm.name
        );
        Err(R::PortSecurityIp)
    }
}

/// Port security of the ARP packet in frame `b` (Ethernet / IPv4; anything else is left
/// to the responder, which drops it as malformed): its sender hardware
/// address is the port's MAC or an allowed pair's, and its sender IP one of
/// the port's addresses or inside an allowed pair, for that MAC. Requests,
/// replies and gratuitous ARP alike; a probe (RFC 5227, no sender IP yet)
/// needs the MAC only.
fn arp_security<T: Trace>(vm: &VmPort, b: &[u8], t: &mut T) -> Result<(), DropReason> {
    let Ok(a) = arp_payload(b) else {
        return Ok(());
    };
    let sha = mac_at(a, 8);
    let spa = ipv4_at(a, 14);
    let ok = if spa.is_unspecified() {
        mac_allowed(vm, &sha)
    } else {
        ip_allowed(vm, &sha, IpAddr::V4(spa))
    };
    if ok {
        return Ok(());
    }
    tr!(
        t,
        "port-security",
        "ARP sender {spa} at {} is not allowed on port {}",
        MacAddr(sha),
        vm.name
    );
    Err(R::PortSecurityArp)
}

/// Whether IPv4 packet `ip` is a DHCP server message: UDP from port 67 to
/// port 68, unfragmented or the first fragment. The flow key holds neither
/// the protocol nor the ports, so the frames of a cached flow are asked too
/// ([`fast`], [`cached`]): one byte read for any other protocol.
#[inline(always)]
fn dhcp_server4(ip: &[u8]) -> bool {
    let Some(h) = ip.first_chunk::<IPV4_LEN>() else {
        return false;
    };
    if h[9] != PROTO_UDP {
        return false;
    }
    let ihl = (h[0] & 0x0f) as usize * 4;
    ihl >= IPV4_LEN
        && be16(h, 6) & 0x1fff == 0
        && ip
            .get(ihl..ihl + 4)
            .is_some_and(|u| be16(u, 0) == 67 && be16(u, 2) == 68)
}

/// The upper-layer protocol of IPv6 packet `ip` and its bytes (within the
/// payload length), past hop-by-hop, routing, destination options and
/// fragment headers (at most 8). `None` for a packet too short for its
/// headers, a non-first fragment or a longer chain.
fn upper6(ip: &[u8]) -> Option<(u8, &[u8])> {
    if ip.len() < IPV6_LEN || ip[0] >> 4 != 6 {
        return None;
    }
    let rest = &ip[IPV6_LEN..];
    let mut p = rest.get(..be16(ip, 4) as usize).unwrap_or(rest);
    let mut nh = ip[6];
    for _ in 0..8 {
        match nh {
            0 | 43 | 60 => {
                let len = (*p.get(1)? as usize + 1) * 8;
                nh = p[0];
                p = p.get(len..)?;
            }
            44 => {
                if p.len() < 8 || be16(p, 2) & 0xfff8 != 0 {
                    return None;
                }
                nh = p[0];
                p = &p[8..];
            }
            _ => return Some((nh, p)),
        }
    }
    None
}

/// Whether a port may advertise link-local `target` at `mac`: its EUI-64
/// address, or any other `fe80::/64` address (stable-privacy, random: port
/// security lets the port send from it) that is not another MAC's EUI-64
/// one.
fn link_local_of(target: IpAddr, mac: &[u8; 6]) -> bool {
    let IpAddr::V6(a) = target else {
        return false;
    };
    let o = a.octets();
    o[..8] == [0xfe, 0x80, 0, 0, 0, 0, 0, 0]
        && (a == crate::tables::eui64_link_local(MacAddr(*mac)) || o[11..13] != [0xff, 0xfe])
}

/// Port security beyond a frame's source addresses, as Neutron's default
/// rules: no DHCP or DHCPv6 server messages, no ICMPv6 router advertisement
/// or redirect, and neighbour discovery only about the port itself
/// ([`nd_security`]). Frame `b` is of ethertype `et`; anything too short
/// to tell is left to the stages that parse it.
#[inline(always)]
fn port_security_msgs<T: Trace>(
    vm: &VmPort,
    et: u16,
    b: &[u8],
    t: &mut T,
) -> Result<(), DropReason> {
    let Some(ip) = b.get(ETH_LEN..) else {
        return Ok(());
    };
    match et {
        ETHERTYPE_IPV4 if dhcp_server4(ip) => {
            tr!(t, "port-security", "DHCP server message (UDP 67 to 68)");
            Err(R::PortSecurityDhcp)
        }
        ETHERTYPE_IPV6 => match upper6(ip) {
            Some((PROTO_UDP, u)) if u.len() >= 4 && be16(u, 0) == 547 && be16(u, 2) == 546 => {
                tr!(t, "port-security", "DHCPv6 server message (UDP 547 to 546)");
                Err(R::PortSecurityDhcp)
            }
            Some((PROTO_ICMPV6, icmp)) => match icmp.first() {
                Some(134) | Some(137) => {
                    tr!(
                        t,
                        "port-security",
                        "ICMPv6 {} from a VM port",
                        if icmp[0] == 134 {
                            "router advertisement"
                        } else {
                            "redirect"
                        }
                    );
                    Err(R::PortSecurityRa)
                }
                Some(135) | Some(136) => nd_security(vm, b, icmp, t),
                _ => Ok(()),
            },
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Port security of a neighbour solicitation or advertisement `icmp` in
/// frame `b`: every link-layer address option (source in a solicitation,
/// target in an advertisement) is the port's MAC or an allowed pair's; an
/// advertisement's target is one of the port's addresses or inside an
/// allowed pair for the MAC it advertises (its target link-layer option,
/// else the frame's source), or a link-local address of that MAC
/// ([`link_local_of`]).
/// Options that do not parse are malformed (RFC 4861, 7.1).
fn nd_security<T: Trace>(vm: &VmPort, b: &[u8], icmp: &[u8], t: &mut T) -> Result<(), DropReason> {
    if icmp.len() < 24 {
        return Err(R::MalformedNd);
    }
    let advert = icmp[0] == 136;
    let mut mac = mac_at(b, 6);
    let mut o = 24;
    while o < icmp.len() {
        if icmp.len() - o < 8 {
            return Err(R::MalformedNd);
        }
        let len = icmp[o + 1] as usize * 8;
        if len == 0 || o + len > icmp.len() {
            return Err(R::MalformedNd);
        }
        if icmp[o] == 1 || icmp[o] == 2 {
            let ll = mac_at(icmp, o + 2);
            if !mac_allowed(vm, &ll) {
                tr!(
                    t,
                    "port-security",
                    "neighbour discovery with link-layer address {}: not the port's",
                    MacAddr(ll)
                );
                return Err(R::PortSecurityNd);
            }
            if icmp[o] == 2 {
                mac = ll;
            }
        }
        o += len;
    }
    if !advert {
        return Ok(());
    }
    let target = IpAddr::V6(ipv6_at(icmp, 8));
    if ip_allowed(vm, &mac, target) || (mac_allowed(vm, &mac) && link_local_of(target, &mac)) {
        return Ok(());
    }
    tr!(
        t,
        "port-security",
        "neighbour advertisement for {target} at {}: not the port's",
        MacAddr(mac)
    );
    Err(R::PortSecurityNd)
}

/// A frame from a VM port: an IPv4 flow already routed or switched on this
/// snapshot takes its cached way ([`crate::flow`]), anything else the full
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
) -> Verdict {
    if T::ON {
        return from_vm_full(snap, env, vm, net, f, t);
    }
    let Some(k) = FlowCache::key(vm.index, f.data()) else {
        return from_vm_full(snap, env, vm, net, f, t);
    };
    match env.flows.lookup(snap.epoch, k) {
        Some(a) => match cached(snap, a, f) {
            Some(v) => v,
            // A check of this frame failed: the full pipeline says which.
            None => from_vm_full(snap, env, vm, net, f, t),
        },
        None => {
            let v = from_vm_full(snap, env, vm, net, f, t);
            env.flows.settle(snap.epoch, v.is_ok());
            v
        }
    }
}

/// A frame of a cached flow; routed: the per-frame checks of [`route4`] (IPv4
/// header, TTL, MTU), then the cached rewrite; then the cached way out (an
/// overlay checks its MTU). `None` when a check fails: the full pipeline then
/// decides.
#[inline(always)]
fn cached(snap: &Snapshot, a: Action, f: &mut Frame) -> Option<Verdict> {
    if f.data().get(ETH_LEN..).is_some_and(dhcp_server4) {
        return None;
    }
    if a.routed {
        ipv4_valid(f).ok()?;
        let b = f.data_mut();
        let ip = &mut b[ETH_LEN..];
        if ip[8] <= 1 || be16(ip, 2) > a.mtu {
            return None;
        }
        dec_ttl4(ip);
        b[..12].copy_from_slice(&a.macs);
    }
    Some(cached_out(snap, a, f))
}

/// The common case of a routed frame of a cached flow ([`fast`]; [`cached`]
/// takes any frame), checked and rewritten in place in its bytes `b`: a
/// 20-byte IPv4 header with a valid checksum,
/// exactly as long as the frame (no padding to trim), TTL above 1, within the
/// MTU; then the TTL and checksum, and the cached MACs. `false`, with nothing
/// written, for any other frame.
#[inline(always)]
fn routed_in_place(a: &Action, b: &mut [u8]) -> bool {
    let Some((eth, ip)) = b.split_at_mut_checked(ETH_LEN) else {
        return false;
    };
    let ip_len = ip.len();
    let Some(h) = ip.first_chunk_mut::<IPV4_LEN>() else {
        return false;
    };
    let total = be16(h, 2) as usize;
    if h[0] != 0x45
        || total != ip_len
        || h[8] <= 1
        || total > a.mtu as usize
        || !ipv4_header_sum_ok(h)
    {
        return false;
    }
    dec_ttl4(h);
    eth[..12].copy_from_slice(&a.macs);
    true
}

/// The cached way out of a frame already checked and rewritten.
#[inline(always)]
fn cached_out<P: InPlace>(snap: &Snapshot, a: Action, f: &mut P) -> Verdict {
    match a.out {
        Out::Port(p) => Ok(p),
        Out::Host {
            host,
            kind,
            segment,
        } => {
            let seg = Segment {
                kind,
                segment,
                mtu: a.mtu,
            };
            overlay(snap, seg, "", host, f, &mut NoTrace)
        }
    }
}

/// A frame from a VM port whose flow key `k` and set `set` the worker
/// computed ahead ([`FlowCache::key`], [`FlowCache::set_of`]): a flow
/// cached on this snapshot, and a frame needing nothing but its rewrite (see
/// [`routed_in_place`]), is decided here where it lies, without a
/// [`Frame`]: rewritten, and encapsulated if it leaves over the overlay.
/// `None`, with nothing written, for any other frame: the whole pipeline
/// ([`process_from`]) then decides, and it decides the same for the frames
/// decided here. The caller counts the hits (`env.flows.hits`), a burst at
/// a time.
#[inline(always)]
pub fn fast<P: InPlace>(
    snap: &Snapshot,
    env: &Env,
    k: &flow::Key,
    set: usize,
    p: &mut P,
) -> Option<Verdict> {
    let &a = env.flows.peek(snap.epoch, k, set)?;
    let b = p.bytes()?;
    // Port security's checks the key cannot hold: the whole pipeline judges.
    if b.get(ETH_LEN..).is_some_and(dhcp_server4) {
        return None;
    }
    if a.routed && !routed_in_place(&a, b) {
        return None;
    }
    Some(cached_out(snap, a, p))
}

#[inline(always)]
fn from_vm_full<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let in_port = vm.index;
    let b = f.data();
    let et = be16(b, 12);
    if et == ETHERTYPE_VLAN {
        return Err(R::VlanFromVm);
    }
    if vm.security {
        port_security(vm, b, t)?;
        port_security_msgs(vm, et, b, t)?;
        tr!(t, "port-security", "allowed");
    }
    if et != ETHERTYPE_IPV4 && !vm.pairs.is_empty() && vip_learn(env, vm, net, b, t) {
        if let Some(v) = vip_reply_to_router(env, vm, net, f, t) {
            return v;
        }
    }
    if et == ETHERTYPE_ARP {
        match arp_respond(net, f, t) {
            Ok(()) => return Ok(in_port),
            Err(None) => {} // not a request the responder answers: switch it
            Err(Some(R::ArpUnknownTarget)) => return arp_unanswered(env, vm, net, f, t),
            Err(Some(r)) => return Err(r),
        }
    }
    let b = f.data();
    if b[0] & 1 != 0 {
        if et == ETHERTYPE_IPV6 {
            if own_dad(vm, net, b) {
                tr!(
                    t,
                    "nd-responder",
                    "duplicate address detection for the port's own address: not answered"
                );
                return flood(env, vm.net, true, t);
            }
            match nd_respond(net, f, t) {
                Ok(()) => return Ok(in_port),
                Err(Some(R::NdUnknownTarget)) => return nd_unanswered(env, vm, net, f, t),
                Err(Some(r)) => return Err(r),
                Err(None) => {}
            }
        }
        return flood(env, vm.net, true, t);
    }
    let dst = MacAddr(mac_at(b, 0));
    match net.fdb.get(dst.key()) {
        Some(Dest::Local(p)) if p == in_port => Err(R::SameIngressPort),
        Some(Dest::Local(p)) => {
            tr!(t, "switch", "{dst} is local port {p}");
            if !T::ON && et == ETHERTYPE_IPV4 {
                env.flows.offer(switched(net, Out::Port(p)));
            }
            Ok(p)
        }
        Some(Dest::Remote(h)) => {
            tr!(t, "switch", "{dst} is on host {}", host_name(snap, h));
            if !T::ON && et == ETHERTYPE_IPV4 {
                env.flows.offer(switched(net, host_out(h, net)));
            }
            encap(snap, net, h, f, t)
        }
        Some(Dest::Router { router, iface }) => {
            tr!(
                t,
                "switch",
                "{dst} is router interface {iface} of router index {router}"
            );
            route(snap, env, router, iface, in_port, f, t)
        }
        Some(Dest::Nowhere) | None => {
            tr!(t, "switch", "{dst} is not in network {}", net.name);
            Err(R::UnknownDstMac)
        }
    }
}

fn host_name(snap: &Snapshot, h: u16) -> &str {
    snap.node
        .hosts
        .get(h as usize)
        .map_or("?", |h| h.name.as_str())
}

/// Answers an ARP request for an address of `net` in place. `Err(None)`: not
/// an ARP request this responder answers (switch it as is).
fn arp_respond<T: Trace>(
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Result<(), Option<DropReason>> {
    let b = f.data();
    if b.len() < ETH_LEN + 28 {
        return Err(Some(R::MalformedArp));
    }
    let a = &b[ETH_LEN..];
    if be16(a, 0) != 1 || be16(a, 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4 {
        return Err(Some(R::MalformedArp));
    }
    let op = be16(a, 6);
    let broadcast = b[0] & 1 != 0;
    if op != 1 {
        // Replies (gratuitous ones are broadcast) are switched or flooded.
        return Err(if op == 2 { None } else { Some(R::MalformedArp) });
    }
    let target = ipv4_at(a, 24);
    let Some(&mac) = net.arp.get(&IpAddr::V4(target)) else {
        tr!(
            t,
            "arp-responder",
            "who-has {target}: unknown in network {}",
            net.name
        );
        return if broadcast {
            Err(Some(R::ArpUnknownTarget))
        } else {
            Err(None)
        };
    };
    tr!(t, "arp-responder", "who-has {target}: {mac}");
    answer_arp(f.data_mut(), mac, target);
    Ok(())
}

/// The address and MAC a frame announces: an ARP request or reply (a
/// gratuitous one included) whose sender MAC is the frame's source, or a
/// neighbour advertisement (its target, the frame's source MAC).
fn announced(b: &[u8]) -> Option<(IpAddr, MacAddr)> {
    let src = b.get(6..12)?;
    let ip = match be16(b, 12) {
        ETHERTYPE_ARP => {
            let a = arp_payload(b).ok()?;
            if !matches!(be16(a, 6), 1 | 2) || a[8..14] != *src {
                return None;
            }
            IpAddr::V4(ipv4_at(a, 14))
        }
        ETHERTYPE_IPV6 => {
            let ip = b.get(ETH_LEN..)?;
            if ip.len() < IPV6_LEN + 24
                || ip[0] >> 4 != 6
                || ip[6] != PROTO_ICMPV6
                || ip[7] != 255
                || ip[IPV6_LEN] != 136
                || ip[IPV6_LEN + 1] != 0
            {
                return None;
            }
            IpAddr::V6(ipv6_at(ip, IPV6_LEN + 8))
        }
        _ => return None,
    };
    (!ip.is_unspecified()).then_some((ip, MacAddr(mac_at(b, 6))))
}

/// Whether the frame `b` from port `vm` (port security passed) announces
/// an address inside one of the port's allowed pairs, with the pair's MAC
/// ([`announced`]); if so and the holder is new, notes it.
#[inline(never)]
fn vip_learn<T: Trace>(env: &mut Env, vm: &VmPort, net: &NetTables, b: &[u8], t: &mut T) -> bool {
    let Some((ip, mac)) = announced(b) else {
        return false;
    };
    if vm.ips.contains(&ip)
        || !vm
            .pairs
            .iter()
            .any(|(n, m)| m.unwrap_or(vm.mac) == mac && n.contains(&ip))
    {
        return false;
    }
    if net.holders.get(&ip) != Some(&mac) {
        tr!(t, "vip", "{ip} is held by {mac} (port {})", vm.name);
        env.vip = Some(VipNote {
            net: vm.net,
            ip,
            mac,
        });
    }
    true
}

/// An ARP reply (a neighbour advertisement) of a VIP's holder to a router
/// interface, the answer to [`vip_probe`]: sent to the whole network as a
/// broadcast (to the all-nodes group), so that every host learns the holder
/// (the routers of other hosts asked too). `None` for any other frame.
#[inline(never)]
fn vip_reply_to_router<T: Trace>(
    env: &mut Env,
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Option<Verdict> {
    // The frame announces (vip_learn): an ARP request or reply, or a
    // neighbour advertisement, as long as they are.
    let b = f.data();
    let to = match be16(b, 12) {
        ETHERTYPE_ARP if be16(b, ETH_LEN + 6) == 2 => [0xff; 6],
        ETHERTYPE_IPV6 => [0x33, 0x33, 0, 0, 0, 1],
        _ => return None,
    };
    if b[0] & 1 != 0 {
        return None;
    }
    let Some(Dest::Router { .. }) = net.fdb.get(MacAddr(mac_at(b, 0)).key()) else {
        return None;
    };
    tr!(
        t,
        "vip",
        "the holder's answer to a router: to the whole network"
    );
    f.data_mut()[..6].copy_from_slice(&to);
    Some(flood(env, vm.net, true, t))
}

/// Notes a VIP's holder when a broadcast or multicast frame `b` of network
/// `net` (index `id`) from another host announces an address inside the
/// allowed pairs of a port there, with the pair's MAC (that host's port
/// security checked it).
#[inline(never)]
fn vip_learn_overlay<T: Trace>(env: &mut Env, id: u32, net: &NetTables, b: &[u8], t: &mut T) {
    if net.vips.is_empty() {
        return;
    }
    let Some((ip, mac)) = announced(b) else {
        return;
    };
    if net.holders.get(&ip) == Some(&mac)
        || !net
            .vips_of(ip)
            .any(|v| v.mac == mac && matches!(v.dest, Dest::Remote(_)))
    {
        return;
    }
    tr!(t, "vip", "{ip} is held by {mac}, on another host");
    env.vip = Some(VipNote { net: id, ip, mac });
}

/// The address a broadcast ARP request or a neighbour solicitation `b` from
/// another host asks for, when it is inside allowed address pairs of ports
/// of `net` (and not an address the model knows): it goes to those ports
/// only, as on the host it came from.
#[inline(never)]
fn vip_asked(net: &NetTables, b: &[u8]) -> Option<IpAddr> {
    if net.vips.is_empty() {
        return None;
    }
    let target = match be16(b, 12) {
        ETHERTYPE_ARP => {
            let a = b.get(ETH_LEN..ETH_LEN + 28)?;
            if be16(a, 6) != 1 || a[14..18] == a[24..28] {
                return None;
            }
            IpAddr::V4(ipv4_at(a, 24))
        }
        ETHERTYPE_IPV6 => {
            let ip = b.get(ETH_LEN..)?;
            if ip.len() < IPV6_LEN + 24 || ip[6] != PROTO_ICMPV6 || ip[IPV6_LEN] != 135 {
                return None;
            }
            IpAddr::V6(ipv6_at(ip, IPV6_LEN + 8))
        }
        _ => return None,
    };
    (!net.arp.contains_key(&target) && net.vips_of(target).next().is_some()).then_some(target)
}

/// A broadcast ARP request the responder does not answer (it would be
/// dropped as `arp_unknown_target`): a gratuitous one (a VIP announced by
/// its holder) goes to the whole network; one for an address inside
/// allowed address pairs, to the ports whose pairs cover it.
#[inline(never)]
fn arp_unanswered<T: Trace>(
    env: &mut Env,
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let Some(a) = f.data().get(ETH_LEN..ETH_LEN + 28) else {
        return Err(R::MalformedArp);
    };
    let (sender, target) = (ipv4_at(a, 14), ipv4_at(a, 24));
    if sender == target {
        tr!(t, "arp-responder", "gratuitous ARP for {target}");
        return flood(env, vm.net, true, t);
    }
    let ip = IpAddr::V4(target);
    if net.vips_of(ip).next().is_some() {
        return flood_vip(env, vm.net, true, ip, t);
    }
    Err(R::ArpUnknownTarget)
}

/// A neighbour solicitation the responder does not answer (it would be
/// dropped as `nd_unknown_target`): for an address inside allowed address
/// pairs, to the ports whose pairs cover it; for another link-local address
/// (a stable-privacy or random one), to the whole network.
#[inline(never)]
fn nd_unanswered<T: Trace>(
    env: &mut Env,
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let at = ETH_LEN + IPV6_LEN + 8;
    let Some(target) = f.data().get(at..at + 16) else {
        return Err(R::MalformedNd);
    };
    let target = ipv6_at(target, 0);
    let ip = IpAddr::V6(target);
    if net.vips_of(ip).next().is_some() {
        return flood_vip(env, vm.net, true, ip, t);
    }
    if target.segments()[0] & 0xffc0 == 0xfe80 {
        tr!(t, "nd-responder", "{target} is link-local: to the network");
        return flood(env, vm.net, true, t);
    }
    Err(R::NdUnknownTarget)
}

/// Whether `b` is a well-formed duplicate address detection probe (a
/// neighbour solicitation from the unspecified address) of port `vm` for
/// one of its own addresses: the responder must not answer it (the guest
/// would give the address up).
#[inline(never)]
fn own_dad(vm: &VmPort, net: &NetTables, b: &[u8]) -> bool {
    let Some(ip) = b.get(ETH_LEN..) else {
        return false;
    };
    if ip.len() < IPV6_LEN + 24 || ip[0] >> 4 != 6 || ip[6] != PROTO_ICMPV6 || ip[7] != 255 {
        return false;
    }
    let plen = be16(ip, 4) as usize;
    let Some(icmp) = ip.get(IPV6_LEN..IPV6_LEN + plen) else {
        return false;
    };
    if icmp.len() < 24 || icmp[0] != 135 || icmp[1] != 0 || !ipv6_at(ip, 8).is_unspecified() {
        return false;
    }
    let sum = pseudo6(&ip[8..24], &ip[24..40], plen as u32, PROTO_ICMPV6);
    if csum_fold(csum_add(sum, icmp)) != 0 {
        return false;
    }
    net.arp.get(&IpAddr::V6(ipv6_at(icmp, 8))) == Some(&vm.mac)
}

/// Turns the ARP request in `b` into the reply that `ip` is at `mac`, to the
/// requester.
fn answer_arp(b: &mut [u8], mac: MacAddr, ip: Ipv4Addr) {
    let requester = mac_at(b, ETH_LEN + 8);
    let sender_ip: [u8; 4] = b[ETH_LEN + 14..ETH_LEN + 18].try_into().expect("4 bytes");
    write_eth(b, &requester, &mac.0, ETHERTYPE_ARP);
    let a = &mut b[ETH_LEN..];
    put16(a, 6, 2);
    a[8..14].copy_from_slice(&mac.0);
    a[14..18].copy_from_slice(&ip.octets());
    a[18..24].copy_from_slice(&requester);
    a[24..28].copy_from_slice(&sender_ip);
}

/// Answers a neighbour solicitation for an address of `net` with a neighbour
/// advertisement, in place. `Err(None)`: not a solicitation (flood or switch
/// it as is).
fn nd_respond<T: Trace>(
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Result<(), Option<DropReason>> {
    let b = f.data();
    let Some(ip) = b.get(ETH_LEN..) else {
        return Err(Some(R::MalformedIpv6));
    };
    if ip.len() < IPV6_LEN || ip[0] >> 4 != 6 {
        return Err(Some(R::MalformedIpv6));
    }
    let plen = be16(ip, 4) as usize;
    if ip.len() < IPV6_LEN + plen {
        return Err(Some(R::MalformedIpv6));
    }
    if ip[6] != PROTO_ICMPV6 {
        return Err(None);
    }
    let icmp = &ip[IPV6_LEN..IPV6_LEN + plen];
    if icmp.len() < 4 || icmp[0] != 135 {
        return Err(None);
    }
    // RFC 4861, 7.1.1: hop limit 255, code 0, at least 24 bytes, a valid
    // checksum, options of non-zero length that fit.
    if ip[7] != 255 || icmp[1] != 0 || icmp.len() < 24 {
        return Err(Some(R::MalformedNd));
    }
    let sum = pseudo6(&ip[8..24], &ip[24..40], plen as u32, PROTO_ICMPV6);
    if csum_fold(csum_add(sum, icmp)) != 0 {
        return Err(Some(R::MalformedNd));
    }
    let mut o = 24;
    let mut src_ll: Option<[u8; 6]> = None;
    while o < icmp.len() {
        if icmp.len() - o < 8 {
            return Err(Some(R::MalformedNd));
        }
        let len = icmp[o + 1] as usize * 8;
        if len == 0 || o + len > icmp.len() {
            return Err(Some(R::MalformedNd));
        }
        if icmp[o] == 1 {
            src_ll = Some(mac_at(icmp, o + 2));
        }
        o += len;
    }
    let src = ipv6_at(ip, 8);
    if src.is_unspecified() && src_ll.is_some() {
        return Err(Some(R::MalformedNd));
    }
    let target = ipv6_at(icmp, 8);
    if target.is_multicast() {
        return Err(Some(R::MalformedNd));
    }
    let Some(&mac) = net.arp.get(&IpAddr::V6(target)) else {
        tr!(
            t,
            "nd-responder",
            "solicitation for {target}: unknown in network {}",
            net.name
        );
        return Err(Some(R::NdUnknownTarget));
    };
    let router = net.gateways.iter().any(|g| g.ip == IpAddr::V6(target));
    tr!(
        t,
        "nd-responder",
        "solicitation for {target}: {mac}{}",
        if router { " (router)" } else { "" }
    );
    let eth_src = mac_at(b, 6);
    let solicited = !src.is_unspecified();
    let dst: [u8; 16] = if solicited {
        src.octets()
    } else {
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets()
    };
    let eth_dst = if solicited {
        eth_src
    } else {
        [0x33, 0x33, 0, 0, 0, 1]
    };
    // Neighbour advertisement: 24 bytes and a target link-layer address option.
    let want = ETH_LEN + IPV6_LEN + 32;
    if f.len() < want && !f.extend(want - f.len()) {
        return Err(Some(R::NoHeadroom));
    }
    f.trim(want);
    let b = f.data_mut();
    write_eth(b, &eth_dst, &mac.0, ETHERTYPE_IPV6);
    write_ipv6(
        &mut b[ETH_LEN..],
        32,
        PROTO_ICMPV6,
        255,
        &target.octets(),
        &dst,
    );
    let n = &mut b[ETH_LEN + IPV6_LEN..];
    n[0] = 136;
    n[1] = 0;
    put16(n, 2, 0);
    let flags = (router as u32) << 31 | (solicited as u32) << 30 | 1 << 29;
    put32(n, 4, flags);
    n[8..24].copy_from_slice(&target.octets());
    n[24] = 2;
    n[25] = 1;
    n[26..32].copy_from_slice(&mac.0);
    let sum = pseudo6(&target.octets(), &dst, 32, PROTO_ICMPV6);
    let c = csum_fold(csum_add(sum, &n[..32]));
    put16(n, 2, c);
    Ok(())
}

/// 0/8 (unspecified included), 127/8, 224/4 and 255.255.255.255.
#[inline(always)]
fn martian4(a: Ipv4Addr) -> bool {
    let a = u32::from(a);
    let first = a >> 24;
    first == 0 || first == 127 || (first & 0xf0) == 0xe0 || a == u32::MAX
}

fn martian6(a: Ipv6Addr) -> bool {
    a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.segments()[0] & 0xffc0 == 0xfe80
}

/// Routes a frame addressed to interface `iface` of router `router`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn route<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    router: u32,
    iface: u16,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let Some(r) = snap.routers.get(router as usize) else {
        return Err(R::TableGone);
    };
    let Some(ingress) = r.interfaces.get(iface as usize) else {
        return Err(R::TableGone);
    };
    match be16(f.data(), 12) {
        ETHERTYPE_IPV4 => route4(snap, env, r, router, ingress, in_port, f, t),
        ETHERTYPE_IPV6 => route6(snap, env, r, ingress, in_port, f, t),
        et => {
            tr!(t, "route", "ethertype {et:#06x} is not routed");
            Err(R::UnsupportedEthertype)
        }
    }
}

/// The egress of a routed packet: the neighbour's MAC, where it is, the egress
/// interface.
struct Egress<'a> {
    iface: &'a Iface,
    mac: MacAddr,
    dest: Dest,
}

/// Resolves the next hop of `dst` in router `r`.
fn next_hop<'a, T: Trace>(
    r: &'a RouterTables,
    dst: IpAddr,
    t: &mut T,
) -> Result<Egress<'a>, DropReason> {
    let Some((plen, nh)) = r.fib.lookup_fast(dst) else {
        return Err(R::NoRoute);
    };
    let (iface, via) = match nh {
        NextHop::Connected { iface } => (iface, dst),
        NextHop::Via { via } => match r.fib.lookup_fast(via) {
            Some((_, NextHop::Connected { iface })) => (iface, via),
            _ => {
                tr!(t, "route", "{dst} matches a /{plen} via {via}, which is not on a connected subnet: north-south");
                return Err(R::NoExternalPath);
            }
        },
    };
    let iface = &r.interfaces[iface as usize];
    let Some(n) = r.neighbors.get(&via) else {
        tr!(
            t,
            "route",
            "{dst} matches a /{plen} via {via} on {}: no such neighbour",
            iface.subnet
        );
        return Err(R::NeighborUnknown);
    };
    tr!(
        t,
        "route",
        "{dst} matches a /{plen}: neighbour {via} ({}, port {}) on subnet {}",
        n.mac,
        n.port,
        iface.subnet
    );
    Ok(Egress {
        iface,
        mac: n.mac,
        dest: n.dest,
    })
}

/// The interface and next hop (`dst` itself on a connected subnet) of `dst`
/// in router `r`, when the next hop is on a connected subnet.
fn connected_via(r: &RouterTables, dst: IpAddr) -> Option<(&Iface, IpAddr)> {
    let (iface, via) = match r.fib.lookup_fast(dst)? {
        (_, NextHop::Connected { iface }) => (iface, dst),
        (_, NextHop::Via { via }) => match r.fib.lookup_fast(via)? {
            (_, NextHop::Connected { iface }) => (iface, via),
            _ => return None,
        },
    };
    Some((r.interfaces.get(iface as usize)?, via))
}

/// The egress toward `dst` when router `r` has no neighbour for its next
/// hop: the next hop may be inside the allowed address pairs of ports of its
/// subnet (a VIP), held by a port that announced it or by the only port
/// that may hold it. Several may and none has announced it: the ports are
/// asked ([`vip_probe`]).
#[inline(never)]
fn vip_egress<'a, T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &'a RouterTables,
    dst: IpAddr,
    f: &mut Frame,
    t: &mut T,
) -> Result<Egress<'a>, Verdict> {
    let Some((iface, via)) = connected_via(r, dst) else {
        return Err(Err(R::NeighborUnknown));
    };
    let net = snap.net(iface.net).ok_or(Err(R::TableGone))?;
    if net.vips_of(via).next().is_none() {
        return Err(Err(R::NeighborUnknown));
    }
    match net.vip_holder(via) {
        Some((mac, dest)) => {
            tr!(
                t,
                "route",
                "{via} is inside allowed address pairs: held by {mac}"
            );
            Ok(Egress { iface, mac, dest })
        }
        None => {
            tr!(
                t,
                "route",
                "{via} is inside allowed address pairs of several ports: none has announced it"
            );
            Err(vip_probe(env, snap.node.dvr_mac, iface, via, f, t))
        }
    }
}

/// Turns a frame routed to `via`, an address inside the allowed pairs of
/// several ports none of which has announced it, into an ARP request (a
/// neighbour solicitation) from interface `iface` for it, to those ports
/// (the holder's answer is learned like a gratuitous ARP). The frame is
/// counted as `vip_holder_unknown`; requests share the ICMP errors' rate
/// limit. Their Ethernet source is this host's DVR MAC if it has one (as
/// for every routed frame, a router's MAC is never seen from several
/// hosts), the sender (source link-layer address) the interface's.
fn vip_probe<T: Trace>(
    env: &mut Env,
    dvr_mac: Option<MacAddr>,
    iface: &Iface,
    via: IpAddr,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let want = match (iface.ip, via) {
        (IpAddr::V4(_), IpAddr::V4(_)) => ETH_LEN + 28,
        (IpAddr::V6(_), IpAddr::V6(_)) => ETH_LEN + IPV6_LEN + 32,
        _ => return Err(R::VipHolderUnknown),
    };
    if !env.icmp_token() || (f.len() < want && !f.extend(want - f.len())) {
        return Err(R::VipHolderUnknown);
    }
    f.trim(want);
    let b = f.data_mut();
    match (iface.ip, via) {
        (IpAddr::V4(from), IpAddr::V4(target)) => {
            write_arp_request(b, iface.mac, from, target);
            tr!(
                t,
                "route",
                "who-has {target} tell {from}: to the ports that may hold it"
            );
        }
        (IpAddr::V6(from), IpAddr::V6(target)) => {
            let to = target.octets();
            let mut dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0).octets();
            dst[13..].copy_from_slice(&to[13..]);
            write_eth(
                b,
                &[0x33, 0x33, dst[12], dst[13], dst[14], dst[15]],
                &iface.mac.0,
                ETHERTYPE_IPV6,
            );
            write_ipv6(
                &mut b[ETH_LEN..],
                32,
                PROTO_ICMPV6,
                255,
                &from.octets(),
                &dst,
            );
            let n = &mut b[ETH_LEN + IPV6_LEN..];
            n[..8].copy_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
            n[8..24].copy_from_slice(&to);
            n[24] = 1;
            n[25] = 1;
            n[26..32].copy_from_slice(&iface.mac.0);
            let sum = pseudo6(&from.octets(), &dst, 32, PROTO_ICMPV6);
            let c = csum_fold(csum_add(sum, &n[..32]));
            put16(n, 2, c);
            tr!(
                t,
                "route",
                "solicitation for {target} from {from}: to the ports that may hold it"
            );
        }
        _ => return Err(R::VipHolderUnknown),
    }
    if let Some(m) = dvr_mac {
        b[6..12].copy_from_slice(&m.0);
    }
    env.noted = Some(R::VipHolderUnknown);
    flood_vip(env, iface.net, true, via, t)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn route4<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    rid: u32,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let ihl = ipv4_valid(f)?;
    let b = f.data();
    let ip = &b[ETH_LEN..];
    let total = be16(ip, 2) as usize;
    let src = ipv4_at(ip, 12);
    let dst = ipv4_at(ip, 16);
    if martian4(src) {
        tr!(t, "route", "martian source {src}");
        return Err(R::MartianSource);
    }
    if martian4(dst) || dst.is_link_local() {
        tr!(t, "route", "destination {dst} is not routed");
        return Err(R::MartianDestination);
    }
    // One lookup: routes, neighbours and the router's own addresses were
    // resolved together when the tables were compiled.
    let Some((plen, adj)) = r.fwd4.lookup(u32::from(dst)) else {
        tr!(t, "route", "no route to {dst}: net unreachable");
        return icmp4_error(env, ingress, in_port, f, 3, 0, 0, R::NoRoute, t);
    };
    let ttl = ip[8];
    let eg = match adj {
        Adj::Local { .. } => return to_router4(ingress, in_port, ihl, f, t),
        _ if ttl <= 1 => {
            tr!(t, "route", "TTL {ttl}: time exceeded");
            return icmp4_error(env, ingress, in_port, f, 11, 0, 0, R::TtlExpired, t);
        }
        Adj::Neighbor { iface, mac, dest } => {
            let iface = &r.interfaces[iface as usize];
            tr!(
                t,
                "route",
                "{dst} matches a /{plen}: neighbour {mac} on subnet {}",
                iface.subnet
            );
            Egress { iface, mac, dest }
        }
        Adj::Unknown { iface } => {
            tr!(
                t,
                "route",
                "{dst} matches a /{plen} on {}: no such neighbour",
                r.interfaces[iface as usize].subnet
            );
            match vip_egress(snap, env, r, IpAddr::V4(dst), f, t) {
                Ok(eg) => eg,
                Err(v) => return v,
            }
        }
        Adj::External => {
            tr!(
                t,
                "route",
                "{dst} matches a /{plen} via a next hop not on a connected subnet: north-south"
            );
            return north_south4(snap, env, r, rid, ingress, in_port, f, t);
        }
    };
    let Some(net) = snap.net(eg.iface.net) else {
        return Err(R::TableGone);
    };
    if total > net.mtu as usize {
        tr!(t, "route", "egress network {}", net.name);
        return too_big4(snap, env, r, ingress, in_port, f, net.mtu, t);
    }
    if !T::ON {
        offer_routed(snap, env, net, &eg);
    }
    dec_ttl4(&mut f.data_mut()[ETH_LEN..]);
    tr!(t, "rewrite", "TTL {} → {}", ttl, ttl - 1);
    deliver_routed(snap, net, &eg, f, t)
}

#[allow(clippy::too_many_arguments)]
fn route6<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let b = f.data();
    if b.len() < ETH_LEN + IPV6_LEN {
        return Err(R::MalformedIpv6);
    }
    let ip = &b[ETH_LEN..];
    let plen = be16(ip, 4) as usize;
    if ip[0] >> 4 != 6 || IPV6_LEN + plen > ip.len() {
        return Err(R::MalformedIpv6);
    }
    f.trim(ETH_LEN + IPV6_LEN + plen);
    let b = f.data();
    let ip = &b[ETH_LEN..];
    let src = ipv6_at(ip, 8);
    let dst = ipv6_at(ip, 24);
    if martian6(src) {
        tr!(t, "route", "source {src} is not routed");
        return Err(R::MartianSource);
    }
    if ip[6] == PROTO_ICMPV6 && plen >= 4 && matches!(ip[IPV6_LEN], 133..=137) {
        // Neighbour discovery to the router's MAC (unicast NS, RS): answered
        // for the router's own addresses.
        if ip[IPV6_LEN] == 135 {
            let net = snap.net(ingress.net).ok_or(R::TableGone)?;
            return nd_respond(net, f, t)
                .map(|()| in_port)
                .map_err(|e| e.unwrap_or(R::ToRouterUnsupported));
        }
        return Err(R::ToRouterUnsupported);
    }
    if martian6(dst) {
        tr!(t, "route", "destination {dst} is not routed");
        return Err(R::MartianDestination);
    }
    if r.interfaces.iter().any(|i| i.ip == IpAddr::V6(dst)) {
        return to_router6(ingress, in_port, f, t);
    }
    let hop = ip[7];
    if hop <= 1 {
        tr!(t, "route", "hop limit {hop}: time exceeded");
        return icmp6_error(env, ingress, in_port, f, 3, 0, 0, R::TtlExpired, t);
    }
    let eg = match next_hop(r, IpAddr::V6(dst), t) {
        Ok(e) => e,
        Err(R::NoRoute) => {
            tr!(t, "route", "no route to {dst}: unreachable");
            return icmp6_error(env, ingress, in_port, f, 1, 0, 0, R::NoRoute, t);
        }
        Err(R::NeighborUnknown) => match vip_egress(snap, env, r, IpAddr::V6(dst), f, t) {
            Ok(eg) => eg,
            Err(v) => return v,
        },
        Err(e) => return Err(e),
    };
    let Some(net) = snap.net(eg.iface.net) else {
        return Err(R::TableGone);
    };
    if IPV6_LEN + plen > net.mtu as usize {
        tr!(
            t,
            "route",
            "{} bytes exceed MTU {} of {}: packet too big",
            IPV6_LEN + plen,
            net.mtu,
            net.name
        );
        return too_big6(snap, env, r, ingress, in_port, f, net.mtu, t);
    }
    f.data_mut()[ETH_LEN + 7] = hop - 1;
    tr!(t, "rewrite", "hop limit {} → {}", hop, hop - 1);
    deliver_routed(snap, net, &eg, f, t)
}

/// Where the flow cache sends a frame for host `h` over `net`'s overlay.
#[inline(always)]
fn host_out(h: u16, net: &NetTables) -> Out {
    Out::Host {
        host: h,
        kind: net.kind,
        segment: net.segment,
    }
}

/// The flow cache's action for an IPv4 frame switched on `net` to `out`
/// (its key holds all that port security and the FDB read of it, but the
/// DHCP server check, which [`fast`] and [`cached`] make on each frame).
#[inline(always)]
fn switched(net: &NetTables, out: Out) -> Action {
    Action {
        routed: false,
        macs: [0; 12],
        mtu: net.mtu,
        out,
    }
}

/// Offers the flow cache what [`deliver_routed`] does with `eg` (kept if the
/// frame is forwarded and came from a VM port: see [`FlowCache::offer`]).
#[inline(always)]
fn offer_routed(snap: &Snapshot, env: &mut Env, net: &NetTables, eg: &Egress<'_>) {
    let (src, out) = match eg.dest {
        Dest::Local(p) => (eg.iface.mac, Out::Port(p)),
        Dest::Remote(h) => match snap.node.dvr_mac {
            Some(dvr) => (dvr, host_out(h, net)),
            None => return,
        },
        Dest::Nowhere | Dest::Router { .. } => return,
    };
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&eg.mac.0);
    macs[6..].copy_from_slice(&src.0);
    env.flows.offer(Action {
        routed: true,
        macs,
        mtu: net.mtu,
        out,
    });
}

/// The MAC rewrite of a routed frame and its way out: to a local port with the
/// egress interface's MAC as source, or to another host with this host's DVR
/// MAC as source, encapsulated.
#[inline(always)]
fn deliver_routed<T: Trace>(
    snap: &Snapshot,
    net: &NetTables,
    eg: &Egress<'_>,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    match eg.dest {
        Dest::Local(p) => {
            write_macs(f.data_mut(), &eg.mac.0, &eg.iface.mac.0);
            tr!(
                t,
                "rewrite",
                "{} → {} (local port {p})",
                eg.iface.mac,
                eg.mac
            );
            Ok(p)
        }
        Dest::Remote(h) => {
            let Some(dvr) = snap.node.dvr_mac else {
                return Err(R::NoDvrMac);
            };
            write_macs(f.data_mut(), &eg.mac.0, &dvr.0);
            tr!(
                t,
                "rewrite",
                "{dvr} (this host's DVR MAC) → {} on host {}",
                eg.mac,
                host_name(snap, h)
            );
            encap(snap, net, h, f, t)
        }
        Dest::Nowhere | Dest::Router { .. } => Err(R::NeighborUnbound),
    }
}

#[inline(always)]
fn write_macs(b: &mut [u8], dst: &[u8; 6], src: &[u8; 6]) {
    b[0..6].copy_from_slice(dst);
    b[6..12].copy_from_slice(src);
}

/// A packet to one of the router's own IPv4 addresses: echo requests are
/// answered, anything else is dropped.
fn to_router4<T: Trace>(
    ingress: &Iface,
    in_port: u16,
    ihl: usize,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let b = f.data_mut();
    let l4 = ETH_LEN + ihl;
    if b[ETH_LEN + 9] != PROTO_ICMP || b.len() < l4 + ICMP_LEN || b[l4] != 8 || b[l4 + 1] != 0 {
        tr!(t, "router", "to the router's address, not an echo request");
        return Err(R::ToRouterUnsupported);
    }
    if checksum(&b[l4..]) != 0 {
        return Err(R::ToRouterUnsupported);
    }
    let src_mac = mac_at(b, 6);
    write_macs(b, &src_mac, &ingress.mac.0);
    let ip = &mut b[ETH_LEN..];
    let (s, d) = (be32(ip, 12), be32(ip, 16));
    put32(ip, 12, d);
    put32(ip, 16, s);
    let old = be16(ip, 8);
    ip[8] = 64;
    let c = csum_update16(be16(ip, 10), old, be16(ip, 8));
    put16(ip, 10, c);
    let icmp = &mut b[l4..];
    icmp[0] = 0;
    let c = csum_update16(be16(icmp, 2), 0x0800, 0x0000);
    put16(icmp, 2, c);
    tr!(
        t,
        "router",
        "echo request to {}: echo reply",
        Ipv4Addr::from(d)
    );
    Ok(in_port)
}

fn to_router6<T: Trace>(ingress: &Iface, in_port: u16, f: &mut Frame, t: &mut T) -> Verdict {
    let b = f.data_mut();
    let l4 = ETH_LEN + IPV6_LEN;
    if b[ETH_LEN + 6] != PROTO_ICMPV6 || b.len() < l4 + ICMP_LEN || b[l4] != 128 || b[l4 + 1] != 0 {
        tr!(t, "router", "to the router's address, not an echo request");
        return Err(R::ToRouterUnsupported);
    }
    let plen = (b.len() - l4) as u32;
    let sum = pseudo6(
        &b[ETH_LEN + 8..ETH_LEN + 24],
        &b[ETH_LEN + 24..ETH_LEN + 40],
        plen,
        PROTO_ICMPV6,
    );
    if csum_fold(csum_add(sum, &b[l4..])) != 0 {
        return Err(R::ToRouterUnsupported);
    }
    let src_mac = mac_at(b, 6);
    write_macs(b, &src_mac, &ingress.mac.0);
    let ip = &mut b[ETH_LEN..];
    let mut s = [0u8; 16];
    s.copy_from_slice(&ip[8..24]);
    ip.copy_within(24..40, 8);
    ip[24..40].copy_from_slice(&s);
    ip[7] = 64;
    let icmp = &mut b[l4..];
    icmp[0] = 129;
    // The pseudo-header is the same with the addresses swapped.
    let c = csum_update16(be16(icmp, 2), 128 << 8, 129 << 8);
    put16(icmp, 2, c);
    tr!(t, "router", "echo request to {}: echo reply", ingress.ip);
    Ok(in_port)
}

/// Whether an ICMP error may be sent about this IPv4 packet (RFC 1812 4.3.2.7:
/// never about an ICMP error or a non-first fragment).
fn may_answer4(ip: &[u8], ihl: usize) -> bool {
    if be16(ip, 6) & 0x1fff != 0 {
        return false;
    }
    if ip[9] == PROTO_ICMP {
        return matches!(ip.get(ihl), Some(0 | 8 | 13 | 14 | 15 | 16 | 17 | 18));
    }
    true
}

/// Turns the packet in `f` (from `in_port`, to the router interface `ingress`)
/// into an ICMP error to its source, in place: a new IPv4 + ICMP header in
/// front of the quoted original, at most [`ICMP_ERROR_MAX`] bytes of IP.
#[allow(clippy::too_many_arguments)]
fn icmp4_error<T: Trace>(
    env: &mut Env,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    ty: u8,
    code: u8,
    mtu: u32,
    why: DropReason,
    t: &mut T,
) -> Verdict {
    // A frame another host sent here for SNAT gets no answer (no ICMP goes
    // back over the overlay) but for a path MTU ([`too_big4`]): that host
    // already answered for its TTL and route before sending it.
    if env.redirected {
        return Err(why);
    }
    let IpAddr::V4(from) = ingress.ip else {
        return Err(why);
    };
    icmp4_build(env, from, ingress.mac, f, Icmp4 { ty, code, mtu }, why, t)?;
    Ok(in_port)
}

/// An ICMP error's type, code and (fragmentation needed) next-hop MTU.
#[derive(Clone, Copy)]
struct Icmp4 {
    ty: u8,
    code: u8,
    mtu: u32,
}

/// ICMP destination unreachable, fragmentation needed (RFC 1191).
const fn frag_needed(mtu: u16) -> Icmp4 {
    Icmp4 {
        ty: 3,
        code: 4,
        mtu: mtu as u32,
    }
}

/// The IPv4 packet in `f` turned, in place, into ICMP error `e` from `from`
/// (`mac`) to its source, back to the MAC it came from; `env.noted` is
/// `why`. Never about an ICMP error or a non-first fragment; rate limited.
fn icmp4_build<T: Trace>(
    env: &mut Env,
    from: Ipv4Addr,
    mac: MacAddr,
    f: &mut Frame,
    e: Icmp4,
    why: DropReason,
    t: &mut T,
) -> Result<(), DropReason> {
    let b = f.data();
    let ip = &b[ETH_LEN..];
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if !may_answer4(ip, ihl) {
        return Err(R::IcmpErrorNotSent);
    }
    if !env.icmp_token() {
        return Err(R::IcmpRateLimited);
    }
    let to: [u8; 4] = ip[12..16].try_into().expect("4 bytes");
    let src_mac = mac_at(b, 6);
    let quote = ip.len().min(ICMP_ERROR_MAX - IPV4_LEN - ICMP_LEN);
    if !f.prepend(IPV4_LEN + ICMP_LEN) {
        return Err(R::NoHeadroom);
    }
    f.trim(ETH_LEN + IPV4_LEN + ICMP_LEN + quote);
    let b = f.data_mut();
    write_eth(b, &src_mac, &mac.0, ETHERTYPE_IPV4);
    let total = (IPV4_LEN + ICMP_LEN + quote) as u16;
    write_ipv4(&mut b[ETH_LEN..], total, 64, PROTO_ICMP, from.octets(), to);
    let icmp = &mut b[ETH_LEN + IPV4_LEN..];
    icmp[0] = e.ty;
    icmp[1] = e.code;
    put16(icmp, 2, 0);
    put32(icmp, 4, e.mtu & 0xffff);
    let c = checksum(icmp);
    put16(icmp, 2, c);
    tr!(
        t,
        "icmp",
        "ICMP type {} code {} from {from} to {}",
        e.ty,
        e.code,
        Ipv4Addr::from(to)
    );
    env.noted = Some(why);
    Ok(())
}

/// The IPv4 packet in `f` (header valid), routed by router `r` from
/// interface `ingress` (port `in_port`), is `total` bytes and its way out
/// takes at most `mtu`: with DF, answered with fragmentation needed and the
/// way's MTU (RFC 1191) from the interface it came in by (a frame another
/// host sent here for SNAT: routed back to its sender over the overlay),
/// else dropped (dvr does not fragment). Before any translation of the
/// packet, so the quote is what its sender sent.
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
fn too_big4<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    mtu: u16,
    t: &mut T,
) -> Verdict {
    let total = be16(f.data(), ETH_LEN + 2);
    if be16(f.data(), ETH_LEN + 6) & 0x4000 == 0 {
        tr!(
            t,
            "mtu",
            "{total} bytes exceed the way's MTU {mtu}; fragmenting is not supported"
        );
        return Err(R::MtuExceeded);
    }
    tr!(
        t,
        "mtu",
        "{total} bytes exceed the way's MTU {mtu} with DF: fragmentation needed"
    );
    if !env.redirected {
        return icmp4_error(
            env,
            ingress,
            in_port,
            f,
            3,
            4,
            mtu as u32,
            R::FragmentationNeeded,
            t,
        );
    }
    let IpAddr::V4(from) = ingress.ip else {
        return Err(R::FragmentationNeeded);
    };
    icmp4_build(
        env,
        from,
        ingress.mac,
        f,
        frag_needed(mtu),
        R::FragmentationNeeded,
        t,
    )?;
    // Back to the sender where it lives, as the router routes to it.
    let dst = ipv4_at(f.data(), ETH_LEN + 16);
    let back =
        egress_to(snap, r, dst, t).and_then(|(eg, net)| deliver_routed(snap, net, &eg, f, t));
    unnote_if_dropped(env, back)
}

/// `v`, the verdict on an ICMP error [`icmp4_build`] or [`icmp6_build`] made
/// (and noted), then routed: dropped on its way, the frame counts once, under
/// that drop's reason, not also as answered.
#[inline(always)]
fn unnote_if_dropped(env: &mut Env, v: Verdict) -> Verdict {
    if v.is_err() {
        env.noted = None;
    }
    v
}

/// The IPv4 packet in `f`, in from the external port `in_port` to `from`
/// (address, MAC: a floating IP or a router's gateway), untranslated, is too
/// big for the network its translated destination is on (`mtu`): with DF,
/// answered from `from` with fragmentation needed, else dropped.
#[cold]
#[inline(never)]
fn too_big_in<T: Trace>(
    env: &mut Env,
    (from, mac): (Ipv4Addr, MacAddr),
    in_port: u16,
    f: &mut Frame,
    mtu: u16,
    t: &mut T,
) -> Verdict {
    if be16(f.data(), ETH_LEN + 6) & 0x4000 == 0 {
        tr!(
            t,
            "mtu",
            "exceeds the MTU {mtu} of the way in; fragmenting is not supported"
        );
        return Err(R::MtuExceeded);
    }
    tr!(
        t,
        "mtu",
        "exceeds the MTU {mtu} of the way in, with DF: fragmentation needed"
    );
    icmp4_build(
        env,
        from,
        mac,
        f,
        frag_needed(mtu),
        R::FragmentationNeeded,
        t,
    )?;
    Ok(in_port)
}

/// The MTU of router `r`'s external network: what may leave through the
/// external port (`u16::MAX` when unknown: no bound).
#[inline(always)]
fn external_mtu(snap: &Snapshot, r: &RouterTables) -> u16 {
    r.snat
        .as_ref()
        .and_then(|s| s.net)
        .and_then(|n| snap.net(n))
        .map_or(u16::MAX, |n| n.mtu)
}

/// The IPv6 counterpart of [`icmp4_error`] (RFC 4443).
#[allow(clippy::too_many_arguments)]
fn icmp6_error<T: Trace>(
    env: &mut Env,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    ty: u8,
    code: u8,
    param: u32,
    why: DropReason,
    t: &mut T,
) -> Verdict {
    // As in icmp4_error: no answer over the overlay but for a path MTU.
    if env.redirected {
        return Err(why);
    }
    let IpAddr::V6(from) = ingress.ip else {
        return Err(why);
    };
    icmp6_build(env, from, ingress.mac, f, (ty, code, param), why, t)?;
    Ok(in_port)
}

/// The IPv6 packet in `f` turned, in place, into ICMPv6 error `(type, code,
/// parameter)` from `from` (`mac`) to its source, back to the MAC it came
/// from; `env.noted` is `why`. Never about an ICMPv6 error; rate limited.
fn icmp6_build<T: Trace>(
    env: &mut Env,
    from: Ipv6Addr,
    mac: MacAddr,
    f: &mut Frame,
    (ty, code, param): (u8, u8, u32),
    why: DropReason,
    t: &mut T,
) -> Result<(), DropReason> {
    let b = f.data();
    let ip = &b[ETH_LEN..];
    // Never about an ICMPv6 error (types below 128).
    if ip[6] == PROTO_ICMPV6 && ip.get(IPV6_LEN).is_none_or(|&ty| ty < 128) {
        return Err(R::IcmpErrorNotSent);
    }
    if !env.icmp_token() {
        return Err(R::IcmpRateLimited);
    }
    let mut to = [0u8; 16];
    to.copy_from_slice(&ip[8..24]);
    let src_mac = mac_at(b, 6);
    let quote = ip.len().min(ICMP_ERROR_MAX - IPV6_LEN - ICMP_LEN);
    if !f.prepend(IPV6_LEN + ICMP_LEN) {
        return Err(R::NoHeadroom);
    }
    f.trim(ETH_LEN + IPV6_LEN + ICMP_LEN + quote);
    let b = f.data_mut();
    write_eth(b, &src_mac, &mac.0, ETHERTYPE_IPV6);
    let plen = (ICMP_LEN + quote) as u16;
    write_ipv6(
        &mut b[ETH_LEN..],
        plen,
        PROTO_ICMPV6,
        64,
        &from.octets(),
        &to,
    );
    let icmp = &mut b[ETH_LEN + IPV6_LEN..];
    icmp[0] = ty;
    icmp[1] = code;
    put16(icmp, 2, 0);
    put32(icmp, 4, param);
    let sum = pseudo6(&from.octets(), &to, plen as u32, PROTO_ICMPV6);
    let c = csum_fold(csum_add(sum, icmp));
    put16(icmp, 2, c);
    tr!(
        t,
        "icmp",
        "ICMPv6 type {ty} code {code} from {from} to {}",
        Ipv6Addr::from(to)
    );
    env.noted = Some(why);
    Ok(())
}

/// The IPv6 counterpart of [`too_big4`] (packet too big, RFC 8201; IPv6
/// routers never fragment).
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
fn too_big6<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    mtu: u16,
    t: &mut T,
) -> Verdict {
    let why = R::FragmentationNeeded;
    if !env.redirected {
        return icmp6_error(env, ingress, in_port, f, 2, 0, mtu as u32, why, t);
    }
    let IpAddr::V6(from) = ingress.ip else {
        return Err(why);
    };
    icmp6_build(env, from, ingress.mac, f, (2, 0, mtu as u32), why, t)?;
    // Back to the sender where it lives, as the router routes to it.
    let dst = ipv6_at(f.data(), ETH_LEN + 24);
    let back = next_hop(r, IpAddr::V6(dst), t).and_then(|eg| {
        let net = snap.net(eg.iface.net).ok_or(R::TableGone)?;
        deliver_routed(snap, net, &eg, f, t)
    });
    unnote_if_dropped(env, back)
}

/// What the overlay of a network needs to know of it.
#[derive(Clone, Copy)]
struct Segment {
    kind: NetworkType,
    segment: u32,
    mtu: u16,
}

/// Sends the frame in `f` to host `h` over the overlay of network `net`.
#[inline(always)]
fn encap<T: Trace>(snap: &Snapshot, net: &NetTables, h: u16, f: &mut Frame, t: &mut T) -> Verdict {
    let seg = Segment {
        kind: net.kind,
        segment: net.segment,
        mtu: net.mtu,
    };
    overlay(snap, seg, &net.name, h, f, t)
}

/// Sends the frame in `f` to host `h` over the overlay of `net` (named `name`).
fn overlay<P: InPlace, T: Trace>(
    snap: &Snapshot,
    net: Segment,
    name: &str,
    h: u16,
    f: &mut P,
    t: &mut T,
) -> Verdict {
    let node = &*snap.node;
    let (Some((ul_port, _)), Some(host)) = (node.underlay, node.hosts.get(h as usize)) else {
        return Err(R::NoUnderlay);
    };
    let Some(b) = f.bytes() else {
        return Err(R::MultiSegment);
    };
    let inner = b.len();
    // Only what leaves through the overlay must fit its MTU (the underlay
    // must never fragment); frames between local ports may be larger.
    if inner > net.mtu as usize + ETH_LEN {
        tr!(
            t,
            "encap",
            "frame of {inner} bytes exceeds MTU {} of {name}",
            net.mtu,
        );
        return Err(R::MtuExceeded);
    }
    match net.kind {
        NetworkType::Vxlan | NetworkType::Gre => {
            let Some(Some(outer)) = node.outer.get(h as usize) else {
                return Err(unresolved(node, host, t));
            };
            let vxlan = net.kind == NetworkType::Vxlan;
            let hash = if vxlan { flow_hash(b) } else { 0 };
            let over = if vxlan { VXLAN_OVERHEAD } else { GRE_OVERHEAD };
            let Some(b) = f.prepend(over) else {
                return Err(R::NoHeadroom);
            };
            let Some((hdr, l4)) = b.split_first_chunk_mut::<34>() else {
                return Err(R::NoHeadroom); // unreachable: over > 34
            };
            // The prepared headers; then the length, the protocol and the
            // checksum completed from the prepared sum.
            *hdr = outer.hdr;
            let total = (over - ETH_LEN + inner) as u16;
            let proto = if vxlan { PROTO_UDP } else { PROTO_GRE };
            hdr[16..18].copy_from_slice(&total.to_be_bytes());
            hdr[23] = proto;
            let c = csum_fold(outer.sum + total as u32 + proto as u32);
            hdr[24..26].copy_from_slice(&c.to_be_bytes());
            if vxlan {
                let Some(v) = l4.first_chunk_mut::<16>() else {
                    return Err(R::NoHeadroom); // unreachable: prepended
                };
                v[0..2].copy_from_slice(&(0xc000 | (hash as u16 & 0x3fff)).to_be_bytes());
                v[2..4].copy_from_slice(&VXLAN_PORT.to_be_bytes());
                v[4..6].copy_from_slice(&((UDP_LEN + VXLAN_LEN + inner) as u16).to_be_bytes());
                v[6..8].copy_from_slice(&[0, 0]);
                v[8..12].copy_from_slice(&0x0800_0000u32.to_be_bytes());
                v[12..16].copy_from_slice(&(net.segment << 8).to_be_bytes());
                tr!(
                    t,
                    "encap",
                    "VXLAN VNI {} {} → {} ({})",
                    net.segment,
                    Ipv4Addr::from(be32(hdr, 26)),
                    host.vtep,
                    host.name
                );
            } else {
                let Some(g) = l4.first_chunk_mut::<8>() else {
                    return Err(R::NoHeadroom); // unreachable: prepended
                };
                g[0..2].copy_from_slice(&0x2000u16.to_be_bytes());
                g[2..4].copy_from_slice(&ETHERTYPE_TEB.to_be_bytes());
                g[4..8].copy_from_slice(&net.segment.to_be_bytes());
                tr!(
                    t,
                    "encap",
                    "GRE key {} {} → {} ({})",
                    net.segment,
                    Ipv4Addr::from(be32(hdr, 26)),
                    host.vtep,
                    host.name
                );
            }
            Ok(ul_port)
        }
        NetworkType::Vlan => {
            let Some(b) = f.prepend(VLAN_LEN) else {
                return Err(R::NoHeadroom);
            };
            b.copy_within(VLAN_LEN..VLAN_LEN + 12, 0);
            put16(b, 12, ETHERTYPE_VLAN);
            put16(b, 14, (net.segment & 0x0fff) as u16);
            tr!(t, "encap", "VLAN {} toward host {}", net.segment, host.name);
            Ok(ul_port)
        }
        NetworkType::Flat => {
            tr!(
                t,
                "encap",
                "flat network: untagged on the underlay toward host {}",
                host.name
            );
            Ok(ul_port)
        }
    }
}

/// Why there is no outer header toward `host`: no VTEP of this node, or the
/// host's VTEP not resolved yet.
#[cold]
fn unresolved<T: Trace>(node: &NodeTables, host: &HostEntry, t: &mut T) -> DropReason {
    if node.vtep.is_none() {
        return R::NoUnderlay;
    }
    tr!(
        t,
        "encap",
        "VTEP {} of host {} is not resolved yet",
        host.vtep,
        host.name
    );
    R::VtepUnresolved
}

/// Takes the 802.1Q tag after the MACs out of `f` (the MACs move over it).
/// False, `f` unchanged, if `f` is too short to hold one.
fn untag(f: &mut Frame) -> bool {
    let Some(b) = f.data_mut().get_mut(..ETH_LEN + VLAN_LEN) else {
        return false;
    };
    b.copy_within(0..12, VLAN_LEN);
    f.adj(VLAN_LEN)
}

/// A frame from the underlay: ARP for this VTEP, tunnels, VLAN-tagged frames.
fn from_underlay<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let node = &*snap.node;
    let b = f.data();
    match be16(b, 12) {
        ETHERTYPE_ARP => underlay_arp(snap, in_port, f, t),
        ETHERTYPE_VLAN => {
            if b.len() < ETH_LEN + VLAN_LEN {
                return Err(R::RuntFrame);
            }
            let vid = (be16(b, 14) & 0x0fff) as u32;
            let Some(&net) = node.by_vlan.get(&vid) else {
                tr!(t, "decap", "VLAN {vid}: no such network");
                return Err(R::UnknownVlan);
            };
            untag(f); // its length checked above
            tr!(t, "decap", "VLAN {vid}");
            deliver_decapped(snap, env, net, f, t)
        }
        ETHERTYPE_IPV4 => {
            if b.len() < ETH_LEN + IPV4_LEN {
                return Err(R::MalformedIpv4);
            }
            let ip = &b[ETH_LEN..];
            let ihl = (ip[0] & 0x0f) as usize * 4;
            let total = be16(ip, 2) as usize;
            if ip[0] >> 4 != 4 || ihl < IPV4_LEN || total < ihl || total > ip.len() {
                return Err(R::MalformedIpv4);
            }
            let dst = ipv4_at(ip, 16);
            if Some(dst) != node.vtep {
                tr!(t, "decap", "to {dst}, not this VTEP");
                return Err(R::NotForThisVtep);
            }
            if checksum(&ip[..ihl]) != 0 {
                return Err(R::BadIpv4Checksum);
            }
            let src = ipv4_at(ip, 12);
            if !node.by_vtep.contains_key(&src) {
                tr!(t, "decap", "from {src}: not a known host's VTEP");
                return Err(R::UnknownVtepSource);
            }
            let l4 = &ip[ihl..total];
            let (net, strip) = match ip[9] {
                PROTO_UDP if l4.len() >= UDP_LEN && be16(l4, 2) == VXLAN_PORT => {
                    if l4.len() < UDP_LEN + VXLAN_LEN + ETH_LEN || l4[8] & 0x08 == 0 {
                        return Err(R::BadVxlan);
                    }
                    let vni = be32(l4, 12) >> 8;
                    let Some(&net) = node.by_vni.get(&vni) else {
                        tr!(t, "decap", "VXLAN VNI {vni}: no such network");
                        return Err(R::UnknownVni);
                    };
                    tr!(t, "decap", "VXLAN VNI {vni} from {src}");
                    (net, UDP_LEN + VXLAN_LEN)
                }
                PROTO_GRE => {
                    if l4.len() < GRE_LEN + ETH_LEN
                        || be16(l4, 0) != 0x2000
                        || be16(l4, 2) != ETHERTYPE_TEB
                    {
                        return Err(R::BadGre);
                    }
                    let key = be32(l4, 4);
                    let Some(&net) = node.by_gre_key.get(&key) else {
                        tr!(t, "decap", "GRE key {key}: no such network");
                        return Err(R::UnknownGreKey);
                    };
                    tr!(t, "decap", "GRE key {key} from {src}");
                    (net, GRE_LEN)
                }
                _ => return Err(R::NotATunnel),
            };
            f.trim(ETH_LEN + total);
            f.adj(ETH_LEN + ihl + strip);
            deliver_decapped(snap, env, net, f, t)
        }
        et => {
            tr!(t, "decap", "ethertype {et:#06x} on the underlay");
            Err(R::UnderlayEthertype)
        }
    }
}

/// ARP on the underlay: requests for this VTEP are answered; replies go to
/// the control thread (VTEP resolution).
fn underlay_arp<T: Trace>(snap: &Snapshot, in_port: u16, f: &mut Frame, t: &mut T) -> Verdict {
    let node = &*snap.node;
    let a = arp_payload(f.data())?;
    match be16(a, 6) {
        1 => {
            let target = ipv4_at(a, 24);
            let (Some(vtep), Some((_, mac))) = (node.vtep, node.underlay) else {
                return Err(R::NoUnderlay);
            };
            if target != vtep {
                tr!(t, "underlay-arp", "who-has {target}: not this VTEP");
                return Err(R::ArpUnknownTarget);
            }
            tr!(t, "underlay-arp", "who-has {target}: this VTEP, {mac}");
            answer_arp(f.data_mut(), mac, vtep);
            Ok(in_port)
        }
        2 => arp_reply_consumed(a, "underlay-arp", t),
        _ => Err(R::MalformedArp),
    }
}

// ======== North-south (sections 3 and 4 of docs/BEHAVIOUR.md).
//
// Out: a routed IPv4 packet whose destination is outside (the default route via
// the upstream router) leaves with a floating IP if its source has one served
// on this node (SNAT to the floating IP, out of this node's external port from
// its FIP gateway MAC), else through the router's SNAT: on the `dvr_snat` node
// that holds it, port address translation to the gateway IP (out of the
// external port from the gateway port's MAC); on any other node the frame goes
// unrouted over the overlay of its own network to that node, from this
// node's DVR MAC to the router's interface MAC (the router's SNAT port,
// Neutron's `sg-` port, is that interface on the SNAT node).
// In: the external port answers ARP for the addresses this node serves
// (floating IPs of its ports, its FIP gateway IP, the gateway IPs of the
// routers whose SNAT runs here); traffic to them is translated back (DNAT to
// the fixed IP, or the SNAT session) and routed by the router.

/// The MAC a floating IP of router `r` is served with: this host's FIP
/// gateway port's, or (`central`) the router's gateway port's.
pub fn fip_mac(node: &NodeTables, r: &RouterTables, central: bool) -> Option<MacAddr> {
    if central {
        r.snat.as_ref().map(|s| s.mac)
    } else {
        node.fip_gw.map(|g| g.1)
    }
}

/// The upstream router's MAC for router `r` (resolved on the external port).
#[inline]
fn upstream_mac(node: &NodeTables, r: &RouterTables) -> Result<MacAddr, DropReason> {
    r.upstream
        .and_then(|u| node.vtep_macs.get(&u).copied())
        .ok_or(R::UpstreamUnresolved)
}

/// Prefetches what the SNAT of `frame` will read, a burst ahead of the
/// pipeline, in two stages: this is stage one, the index bucket of the
/// frame's lookup; [`prefetch_nat_next`] is stage two, once the bucket is in:
/// the session slot, or for a new flow what creating its session reads. With
/// a session table larger than the caches, the misses of a burst's packets
/// then overlap instead of following each other. From the external port, the
/// reply's session; from the underlay, the session of a frame another host
/// sent to a router interface here (the router's SNAT). A hint only: a frame
/// it does not recognise prefetches nothing.
#[inline]
pub fn prefetch_nat(snap: &Snapshot, env: &Env, ing: Ingress<'_>, frame: &[u8]) {
    match ing {
        Ingress::External
            if frame.len() > ETH_LEN + IPV4_LEN && be16(frame, 12) == ETHERTYPE_IPV4 =>
        {
            env.nat.prefetch_in(&frame[ETH_LEN..]);
        }
        Ingress::Underlay => {
            if let Some((router, ip)) = tunnelled_to_router(snap, frame) {
                env.nat.prefetch_out(router, ip);
            }
        }
        _ => {}
    }
}

/// Stage two of [`prefetch_nat`]: called once per frame of the burst after
/// stage one ran on all of them, it takes what stage one found, in the same
/// order (it does not read the frame again).
#[inline]
pub fn prefetch_nat_next(env: &Env) {
    env.nat.prefetch_next();
}

/// For [`prefetch_nat`]: the router and inner IPv4 packet of a VXLAN or GRE
/// frame whose inner destination is a router interface (no checks beyond
/// what finding them needs: the pipeline checks the frame).
fn tunnelled_to_router<'a>(snap: &Snapshot, frame: &'a [u8]) -> Option<(u32, &'a [u8])> {
    let node = &*snap.node;
    if be16(frame.get(..14)?, 12) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(ETH_LEN..ETH_LEN + IPV4_LEN)?;
    let (net, inner) = match ip[9] {
        PROTO_UDP => {
            let vni = be32(frame.get(..VXLAN_OVERHEAD)?, VXLAN_OVERHEAD - 4) >> 8;
            (*node.by_vni.get(&vni)?, &frame[VXLAN_OVERHEAD..])
        }
        PROTO_GRE => {
            let key = be32(frame.get(..GRE_OVERHEAD)?, GRE_OVERHEAD - 4);
            (*node.by_gre_key.get(&key)?, &frame[GRE_OVERHEAD..])
        }
        _ => return None,
    };
    if inner.len() <= ETH_LEN + IPV4_LEN || be16(inner, 12) != ETHERTYPE_IPV4 {
        return None;
    }
    match snap.net(net)?.fdb.get(MacAddr(mac_at(inner, 0)).key())? {
        Dest::Router { router, .. } => Some((router, &inner[ETH_LEN..])),
        _ => None,
    }
}

/// The common case of a `dvr_snat` node, worked out on a frame's bytes alone
/// ([`snat_way`]): a VXLAN frame from a known host to this VTEP whose inner
/// frame goes to a router interface here, routed by the router out to the
/// outside through its SNAT here. What [`snat_apply`] needs to finish it.
#[derive(Debug, Clone, Copy)]
pub struct SnatWay {
    /// The external port, and the MACs the frame leaves with.
    ext: u16,
    up: MacAddr,
    from: MacAddr,
    /// The inner frame's length (Ethernet + its IPv4 total length).
    inner: u16,
    look: nat::OutLookup,
}

impl SnatWay {
    /// The NAT's lookup of the frame, to prefetch ([`Nat::prefetch_lookup`]).
    #[inline(always)]
    pub fn look(&self) -> nat::OutLookup {
        self.look
    }
}

/// Whether the whole pipeline ([`process_from`]) takes `b`, in from the
/// underlay, the way [`SnatWay`] describes: every check it makes of such a
/// frame made here, read-only (outer Ethernet and IPv4 header, checksum,
/// VTEPs, VXLAN header and VNI; the inner frame's MACs and the router
/// interface it is for; the inner IPv4 header and checksum, martians, the
/// route, TTL; the floating IPs; the router's SNAT here, the external port and
/// its MTU, the upstream router resolved; what the NAT looks the packet up by).
/// `None` for any other frame (the pipeline decides it), including frames it
/// would take this way but with IPv4 options.
#[inline(always)]
pub fn snat_way(snap: &Snapshot, memo: &mut SnatMemo, b: &[u8]) -> Option<SnatWay> {
    // process_from, from_underlay: the outer headers.
    let a = arrival(snap, b)?;
    if a.carrier != NetworkType::Vxlan {
        return None;
    }
    // The tunnel: source VTEP, VNI, inner MACs; what they decide (a router
    // interface here, the router's SNAT here and its way out) depends on
    // the snapshot only, kept for the next frames of the same tunnel.
    // A tunnel that does not lead here is remembered too: the frames of an
    // east-west tunnel on this node then pay no lookups before the whole
    // pipeline makes them.
    let t = memo.recall(snap.epoch, a.key, move || snat_tunnel(snap, a))?;
    let r = snap.routers.get(t.router as usize)?;
    // route4: ipv4_valid, martians, the route, TTL.
    let ip = a.l3;
    let (h, total) = plain_ipv4(ip)?;
    let (src, dst) = (ipv4_at(h, 12), ipv4_at(h, 16));
    if martian4(src) || martian4(dst) || dst.is_link_local() || h[8] <= 1 {
        return None;
    }
    // north_south4: what the external network takes.
    if total > t.mtu as usize {
        return None;
    }
    let Some((_, Adj::External)) = r.fwd4.lookup(u32::from(dst)) else {
        return None;
    };
    // north_south4: no floating IP either way.
    if (!r.floating.is_empty() && r.floating.contains_key(&dst))
        || (!r.fips.is_empty() && r.fips.contains_key(&src))
    {
        return None;
    }
    let look = Nat::out_lookup(t.router, &ip[..total])?;
    Some(SnatWay {
        ext: t.ext,
        up: t.up,
        from: t.from,
        inner: (ETH_LEN + total) as u16,
        look,
    })
}

/// The common case of [`ipv4_valid`], on bytes: a 20-byte IPv4 header at
/// the start of `ip` with a right checksum and a total length that `ip`
/// holds; the header and that length.
#[inline(always)]
fn plain_ipv4(ip: &[u8]) -> Option<(&[u8; IPV4_LEN], usize)> {
    let h = ip.first_chunk::<IPV4_LEN>()?;
    let total = be16(h, 2) as usize;
    (h[0] == 0x45 && total >= IPV4_LEN && total <= ip.len() && ipv4_header_sum_ok(h))
        .then_some((h, total))
}

/// What a tunnel's frames that reach the SNAT have in common ([`snat_way`]).
#[derive(Debug, Clone, Copy)]
pub struct SnatTunnel {
    router: u32,
    ext: u16,
    up: MacAddr,
    from: MacAddr,
    /// The external network's MTU ([`external_mtu`]).
    mtu: u16,
}

/// The part of [`snat_way`] that depends on a frame's tunnel only
/// ([`Arrival`]'s key): a known source VTEP, the VNI's network, to a router
/// interface there from a DVR MAC (or to a router centralized here), the
/// router's SNAT enabled and here, the external port, the upstream router
/// resolved.
fn snat_tunnel(snap: &Snapshot, a: Arrival) -> Option<SnatTunnel> {
    let node = &*snap.node;
    if !a.sent_by_known_vtep(node) {
        return None;
    }
    let net = a.network(node)?;
    // deliver_decapped: to a router interface.
    let n = snap.net(net)?;
    let Some(Dest::Router { router, iface }) = n.fdb.get(a.dst().key()) else {
        return None;
    };
    // deliver_decapped drops it: left to the whole pipeline.
    if gateway_source(node, n, a.src()) {
        return None;
    }
    let from_router = node.dvr_macs.get(a.src().key()).is_some();
    // routed_from_overlay, route.
    let r = snap.routers.get(router as usize)?;
    let sn = r.snat.as_ref()?;
    if !(sn.here && sn.enable_snat && (from_router || r.home == Home::Here)) {
        return None;
    }
    r.interfaces.get(iface as usize)?;
    if a.ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    Some(SnatTunnel {
        router,
        ext: node.external?,
        up: upstream_mac(node, r).ok()?,
        from: sn.mac,
        mtu: external_mtu(snap, r),
    })
}

/// A worker's memory of the last tunnels a way ([`snat_way`],
/// [`decap_way`]) looked at: sets of two entries ([`TUNNEL_MEMO`] entries
/// in a worker), each set the last two tunnels of the keys that hash to it.
/// An entry holds its key ([`Arrival`]'s key: carrier, source VTEP, segment,
/// inner destination and source MACs, ethertype) and what the way's tunnel
/// part ([`snat_tunnel`], [`decap_tunnel`]) found for it on snapshot `epoch`
/// (never 0), which reads nothing else of a frame: valid for that snapshot
/// only, so any table change makes it stale.
#[derive(Debug, Clone)]
pub struct TunnelMemo<T> {
    sets: Box<[[Remembered<T>; 2]]>,
    mask: usize,
}

/// Entries of a worker's [`TunnelMemo`]s: the tunnels of a compute node's
/// busy VMs and peers. A tunnel is a local VM's MAC for each sending host's
/// DVR MAC (or sending VM), so hundreds are common: with 64 entries, the
/// 128 tunnels of the l3 bench's receive case missed on most frames.
/// 4096 entries of 64 bytes (256 KiB), two per set: of a thousand busy
/// tunnels, fewer than one in ten shares its set with two others, where
/// with one entry per index about a fifth would share it with another.
pub const TUNNEL_MEMO: usize = 4096;
/// Entries of the memories of [`Env::new`] (tests and traces make one per
/// frame).
const TUNNEL_MEMO_SMALL: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Remembered<T> {
    epoch: u64,
    key: [u64; 3],
    t: Option<T>,
}

// What the size of TUNNEL_MEMO's memory assumes.
const _: () = assert!(std::mem::size_of::<Remembered<DecapTunnel>>() <= 64);
const _: () = assert!(std::mem::size_of::<Remembered<SnatTunnel>>() <= 64);

/// [`snat_way`]'s memory.
pub type SnatMemo = TunnelMemo<SnatTunnel>;
/// [`decap_way`]'s memory.
pub type DecapMemo = TunnelMemo<DecapTunnel>;

impl<T: Copy> Default for TunnelMemo<T> {
    fn default() -> Self {
        Self::new(TUNNEL_MEMO_SMALL)
    }
}

impl<T: Copy> TunnelMemo<T> {
    /// A memory of `entries` entries (rounded up to a power of two, at
    /// least one set of two).
    pub fn new(entries: usize) -> Self {
        let n = (entries / 2).max(1).next_power_of_two();
        let empty = Remembered {
            epoch: 0,
            key: [0; 3],
            t: None,
        };
        TunnelMemo {
            sets: vec![[empty; 2]; n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// The set `key` is remembered in.
    #[inline(always)]
    fn slot(&self, key: &[u64; 3]) -> usize {
        let x = key[0] ^ key[1].rotate_left(21) ^ key[2].rotate_left(42);
        crate::flow::fold_mul(x) as usize & self.mask
    }

    /// What the tunnel part `find` finds for the tunnel `key` of a frame
    /// ([`Arrival`]'s key) on `epoch`: remembered, or found and remembered
    /// (the newest of its set; the set's older entry goes).
    #[inline(always)]
    fn recall(&mut self, epoch: u64, key: [u64; 3], find: impl FnOnce() -> Option<T>) -> Option<T> {
        let at = self.slot(&key);
        let Some(set) = self.sets.get_mut(at) else {
            return find();
        };
        // Word by word: the key was just stored as three words, and the
        // wider loads of an array comparison stall on store forwarding.
        for e in set.iter() {
            if e.epoch == epoch && e.key[0] == key[0] && e.key[1] == key[1] && e.key[2] == key[2] {
                return e.t;
            }
        }
        let t = find();
        set[1] = set[0];
        set[0] = Remembered { epoch, key, t };
        t
    }
}

/// The common case of a frame from another host to a port here, worked out
/// on its bytes alone ([`decap_way`]): a VXLAN or GRE frame from a known
/// host to this VTEP, or a frame tagged with a VLAN network's ID, whose
/// inner frame goes to a local port, switched, or routed by the sending host
/// (its DVR MAC rewritten to the router interface's). What [`decap_apply`]
/// needs to finish it.
#[derive(Debug, Clone, Copy)]
pub struct DecapWay {
    port: u16,
    /// How its network came: the outer headers to remove, or the tag.
    carrier: NetworkType,
    /// The inner frame's length.
    inner: u16,
    /// The source MAC the inner frame leaves with, if it is rewritten.
    src: Option<MacAddr>,
}

/// A frame from the underlay to this node, its outer headers checked as the
/// whole pipeline checks them ([`from_underlay`]; a 20-byte outer IPv4
/// header) and its inner frame's MACs unicast: what the ways
/// ([`snat_way`], [`decap_way`]) read of it.
#[derive(Debug, Clone, Copy)]
struct Arrival<'a> {
    /// How it carries its network (never flat). Part of its tunnel's key: a
    /// VNI, a GRE key and a VLAN ID of the same value name different
    /// networks.
    carrier: NetworkType,
    /// The key of its tunnel in a [`TunnelMemo`]: the source VTEP and the
    /// segment's word as sent (a tag: the VLAN ID), the inner frame's first
    /// 14 bytes (MACs and ethertype) and the carrier. Loaded as words
    /// straight from the frame (a key assembled byte by byte and read back
    /// as words stalls on store forwarding), in each carrier's own branch.
    key: [u64; 3],
    /// The inner frame's destination and source MACs.
    macs: &'a [u8; 12],
    /// The inner frame's ethertype.
    ethertype: u16,
    /// The rest of the inner frame, from its layer 3 header on.
    l3: &'a [u8],
}

impl Arrival<'_> {
    fn dst(&self) -> MacAddr {
        MacAddr(mac_at(self.macs, 0))
    }

    fn src(&self) -> MacAddr {
        MacAddr(mac_at(self.macs, 6))
    }

    /// Its source VTEP is a known host's (no VTEP for a tag).
    fn sent_by_known_vtep(&self, node: &NodeTables) -> bool {
        let vtep = Ipv4Addr::from((self.key[0] as u32).swap_bytes());
        self.carrier == NetworkType::Vlan || node.by_vtep.contains_key(&vtep)
    }

    /// The network its segment names (read back from the key, whose words
    /// were loaded little-endian).
    fn network(&self, node: &NodeTables) -> Option<u32> {
        let word = ((self.key[0] >> 32) as u32).swap_bytes();
        match self.carrier {
            NetworkType::Vxlan => node.by_vni.get(&(word >> 8)),
            NetworkType::Gre => node.by_gre_key.get(&word),
            NetworkType::Vlan => node.by_vlan.get(&(self.key[0] as u32)),
            NetworkType::Flat => None,
        }
        .copied()
    }
}

/// What a tunnel's frames that go to a local port have in common
/// ([`decap_way`]).
#[derive(Debug, Clone, Copy)]
pub struct DecapTunnel {
    port: u16,
    net: u32,
    /// The inner source MAC is a host's DVR MAC.
    dvr_src: bool,
    /// With a DVR MAC source, the network's router interface when it is
    /// its only IPv4 one: an IPv4 frame's gateway found without the
    /// network's tables (see [`covering_gateway`]).
    gw4: Option<Gw4>,
}

/// An IPv4 router interface's prefix, as words, and its MAC.
#[derive(Debug, Clone, Copy)]
pub struct Gw4 {
    net: u32,
    mask: u32,
    mac: MacAddr,
}

/// The router interface of network `n` when it is its only IPv4 one: its
/// prefix as words (masked as the LPM masks, [`fib::Key::mask`]) and MAC.
///
/// [`fib::Key::mask`]: crate::fib::Key::mask
fn sole_gw4(n: &NetTables) -> Option<Gw4> {
    let mut v4 = n.gateways.iter().filter_map(|g| match g.cidr {
        IpNet::V4(c) => Some((c, g.mac)),
        IpNet::V6(_) => None,
    });
    let (c, mac) = v4.next()?;
    if v4.next().is_some() {
        return None;
    }
    let len = c.prefix_len();
    Some(Gw4 {
        net: u32::from(c.addr()).mask(len),
        mask: u32::MAX.mask(len),
        mac,
    })
}

/// Whether `dst` lies in prefix `net`/`len` (IPv4 or IPv6 as words).
#[inline(always)]
fn in_prefix<K: crate::fib::Key>(dst: K, net: K, len: u8) -> bool {
    dst.mask(len) == net.mask(len)
}

/// Whether the whole pipeline ([`process_from`]) takes `b`, in from the
/// underlay, the way [`DecapWay`] describes: every check it makes of such a
/// frame made here, read-only (outer Ethernet and IPv4 header, checksum,
/// VTEPs, VXLAN or GRE header and VNI or key, or the VLAN tag; the inner
/// MACs and the local port; for a DVR MAC source, the router interface
/// covering the destination). `None` for any other frame (the pipeline
/// decides it), including frames it would take this way but with outer IPv4
/// options.
#[inline(always)]
pub fn decap_way(snap: &Snapshot, memo: &mut DecapMemo, b: &[u8]) -> Option<DecapWay> {
    let a = arrival(snap, b)?;
    let t = memo.recall(snap.epoch, a.key, move || decap_tunnel(snap, a))?;
    // deliver_decapped: the DVR MAC of the host that routed it becomes the
    // interface's of the subnet of the destination.
    let src = match (t.dvr_src, t.gw4) {
        (false, _) => None,
        (true, Some(g)) if a.ethertype == ETHERTYPE_IPV4 => {
            if a.l3.len() < IPV4_LEN || u32::from(ipv4_at(a.l3, 16)) & g.mask != g.net {
                return None;
            }
            Some(g.mac)
        }
        (true, _) => Some(covering_gateway(snap.net(t.net)?, a.ethertype, a.l3)?.mac),
    };
    Some(DecapWay {
        port: t.port,
        carrier: a.carrier,
        inner: (ETH_LEN + a.l3.len()) as u16,
        src,
    })
}

/// The router interface of network `n` whose subnet holds the destination
/// of a decapsulated frame (of `ethertype`, IPv4 or IPv6, its header at the
/// start of `l3`): the source MAC a frame routed by another host (from its
/// DVR MAC) is delivered with.
///
/// Word arithmetic on the interfaces' prefixes: `IpNet::contains` on an
/// `IpAddr` is an out-of-line call that rebuilds both ends of the range; it
/// took a fifth of the pipeline bench's samples on the receive path.
#[inline(always)]
fn covering_gateway<'a>(n: &'a NetTables, ethertype: u16, l3: &[u8]) -> Option<&'a Gw> {
    match ethertype {
        ETHERTYPE_IPV4 if l3.len() >= IPV4_LEN => {
            let dst = u32::from(ipv4_at(l3, 16));
            n.gateways.iter().find(|g| match g.cidr {
                IpNet::V4(c) => in_prefix(dst, u32::from(c.addr()), c.prefix_len()),
                IpNet::V6(_) => false,
            })
        }
        ETHERTYPE_IPV6 if l3.len() >= IPV6_LEN => {
            let dst = u128::from(ipv6_at(l3, 24));
            n.gateways.iter().find(|g| match g.cidr {
                IpNet::V6(c) => in_prefix(dst, u128::from(c.addr()), c.prefix_len()),
                IpNet::V4(_) => false,
            })
        }
        _ => None,
    }
}

/// Frame `b` from the underlay as the ways read it ([`Arrival`]): a VXLAN or
/// GRE frame to this VTEP, or a VLAN-tagged frame, with a unicast inner
/// source and destination. `None` for any other frame.
#[inline(always)]
fn arrival<'a>(snap: &Snapshot, b: &'a [u8]) -> Option<Arrival<'a>> {
    let (eth, rest) = b.split_first_chunk::<ETH_LEN>()?;
    if eth[6] & 1 != 0 {
        return None;
    }
    match be16(eth, 12) {
        ETHERTYPE_IPV4 => {
            let (h, total) = plain_ipv4(rest)?;
            if Some(ipv4_at(h, 16)) != snap.node.vtep {
                return None;
            }
            let l4 = &rest[IPV4_LEN..total];
            match h[9] {
                PROTO_UDP => {
                    if l4.len() < UDP_LEN + VXLAN_LEN + ETH_LEN
                        || be16(l4, 2) != VXLAN_PORT
                        || l4[8] & 0x08 == 0
                    {
                        return None;
                    }
                    tunnelled(NetworkType::Vxlan, h, l4, 12, UDP_LEN + VXLAN_LEN)
                }
                PROTO_GRE => {
                    if l4.len() < GRE_LEN + ETH_LEN
                        || be16(l4, 0) != 0x2000
                        || be16(l4, 2) != ETHERTYPE_TEB
                    {
                        return None;
                    }
                    tunnelled(NetworkType::Gre, h, l4, 4, GRE_LEN)
                }
                _ => None,
            }
        }
        // The inner frame is the MACs and what follows the tag: its
        // ethertype and layer 3 are read after the tag.
        ETHERTYPE_VLAN => {
            let tag = rest.first_chunk::<VLAN_LEN>()?;
            let vid = (be16(tag, 0) & 0x0fff) as u32;
            let (macs, _) = b.split_first_chunk::<12>()?;
            if macs[0] & 1 != 0 {
                return None;
            }
            let ethertype = be16(tag, 2);
            Some(Arrival {
                carrier: NetworkType::Vlan,
                key: [
                    vid as u64,
                    word8(macs, 0),
                    word4(macs, 8) | (ethertype as u64) << 32 | (NetworkType::Vlan as u64) << 48,
                ],
                macs,
                ethertype,
                l3: &rest[VLAN_LEN..],
            })
        }
        _ => None,
    }
}

/// [`arrival`] of a VXLAN or GRE frame (outer IPv4 header `h`, then `l4`):
/// its segment's word at `seg_at` of `l4`, its inner frame after `strip`
/// bytes of `l4`, with unicast MACs.
#[inline(always)]
fn tunnelled<'a>(
    carrier: NetworkType,
    h: &[u8; IPV4_LEN],
    l4: &'a [u8],
    seg_at: usize,
    strip: usize,
) -> Option<Arrival<'a>> {
    let inner = l4.get(strip..)?;
    let (macs, _) = inner.split_first_chunk::<12>()?;
    if macs[0] & 1 != 0 || macs[6] & 1 != 0 {
        return None;
    }
    Some(Arrival {
        carrier,
        // Inner bytes 8..14 (source MAC end, ethertype): the word at 6
        // without its first two bytes.
        key: [
            word4(h, 12) | word4(l4, seg_at) << 32,
            word8(inner, 0),
            word8(inner, 6) >> 16 | (carrier as u64) << 48,
        ],
        macs,
        ethertype: be16(inner, 12),
        l3: inner.get(ETH_LEN..)?,
    })
}

/// The 4 bytes at `at` of `b` as a little-endian word (0 past its end).
#[inline(always)]
fn word4(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 4)
        .and_then(|x| x.try_into().ok())
        .map_or(0, u32::from_le_bytes) as u64
}

/// The 8 bytes at `at` of `b` as a little-endian word (0 past its end).
#[inline(always)]
fn word8(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|x| x.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The part of [`decap_way`] that depends on a frame's tunnel only
/// ([`Arrival`]'s key): a known source VTEP, the segment's network, a local
/// port there for the inner destination MAC, whether the inner source is a
/// DVR MAC.
fn decap_tunnel(snap: &Snapshot, a: Arrival) -> Option<DecapTunnel> {
    let node = &*snap.node;
    if !a.sent_by_known_vtep(node) {
        return None;
    }
    let net = a.network(node)?;
    let n = snap.net(net)?;
    let Some(Dest::Local(port)) = n.fdb.get(a.dst().key()) else {
        return None;
    };
    // deliver_decapped drops it: left to the whole pipeline.
    if gateway_source(node, n, a.src()) {
        return None;
    }
    let dvr_src = node.dvr_macs.get(a.src().key()).is_some();
    let gw4 = if dvr_src { sole_gw4(n) } else { None };
    Some(DecapTunnel {
        port,
        net,
        dvr_src,
        gw4,
    })
}

/// Finishes a frame [`decap_way`] found `w` for (its bytes unchanged since,
/// the same snapshot) as the whole pipeline does: decapsulated (or its tag
/// taken out), its source MAC rewritten if it was a DVR MAC, to the local
/// port.
#[inline(always)]
pub fn decap_apply(w: &DecapWay, f: &mut Frame) -> Verdict {
    let stripped = match w.carrier {
        NetworkType::Vxlan => f.adj(VXLAN_OVERHEAD),
        NetworkType::Gre => f.adj(GRE_OVERHEAD),
        NetworkType::Vlan => untag(f),
        NetworkType::Flat => false,
    };
    if !stripped {
        return Err(R::TableGone);
    }
    f.trim(w.inner as usize);
    if let Some(src) = w.src {
        f.data_mut()[6..12].copy_from_slice(&src.0);
    }
    Ok(w.port)
}

/// Finishes a frame [`snat_way`] found `w` for (its bytes unchanged since,
/// the same snapshot) as the whole pipeline does: decapsulated, translated
/// by this worker's SNAT, its TTL decremented, out of the external port from
/// the router's gateway MAC to the upstream router.
#[inline(always)]
pub fn snat_apply(env: &mut Env, w: &SnatWay, f: &mut Frame) -> Verdict {
    if !f.adj(VXLAN_OVERHEAD) {
        return Err(R::TableGone);
    }
    f.trim(w.inner as usize);
    let now = env.clock();
    let b = f.data_mut();
    let Some(ip) = b.get_mut(ETH_LEN..) else {
        return Err(R::TableGone);
    };
    env.nat.snat_out_looked(ip, &w.look, now)?;
    dec_ttl4(ip);
    write_macs(b, &w.up.0, &w.from.0);
    Ok(w.ext)
}

/// A routed IPv4 packet of router `r` (index `rid`), in from `ingress`
/// (port `in_port`), whose destination is outside. What is too big for its
/// way out (the external network, or the overlay toward the SNAT node) is
/// answered before it is translated ([`too_big4`]).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn north_south4<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    rid: u32,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let node = &*snap.node;
    let b = f.data();
    let src = ipv4_at(b, ETH_LEN + 12);
    let dst = ipv4_at(b, ETH_LEN + 16);
    let total = be16(b, ETH_LEN + 2);
    if let Some(&fixed) = r.floating.get(&dst) {
        return hairpin4(snap, env, r, ingress, in_port, (src, dst, fixed), f, t);
    }
    let sn = r.snat.as_ref();
    if let Some(fe) = r.fips.get(&src) {
        // Served here from this host's FIP gateway port, or (central) by the
        // router's SNAT node from its gateway port.
        let (ext, from) = if fe.central {
            let Some(sn) = sn else {
                return Err(R::NoSnat);
            };
            if !sn.here {
                return to_snat_node(snap, env, r, sn, ingress, in_port, f, t);
            }
            let Some(ext) = node.external else {
                return Err(R::NoExternalPath);
            };
            (ext, sn.mac)
        } else {
            let (Dest::Local(_), Some(ext), Some((_, gw_mac))) =
                (fe.dest, node.external, node.fip_gw)
            else {
                tr!(
                    t,
                    "nat",
                    "{src} has floating IP {}, not served by this node",
                    fe.floating
                );
                return Err(R::FipNotServedHere);
            };
            (ext, gw_mac)
        };
        let mtu = external_mtu(snap, r);
        if total > mtu {
            return too_big4(snap, env, r, ingress, in_port, f, mtu, t);
        }
        let up = upstream_mac(node, r)?;
        let b = f.data_mut();
        nat::rewrite_src(&mut b[ETH_LEN..], fe.floating)?;
        dec_ttl4(&mut b[ETH_LEN..]);
        write_macs(b, &up.0, &from.0);
        tr!(
            t,
            "nat",
            "source {src} → floating IP {} from {from}; out of the external port to {up}",
            fe.floating
        );
        return Ok(ext);
    }
    let Some(sn) = sn.filter(|s| s.enable_snat) else {
        tr!(t, "nat", "{src} has no floating IP and the router no SNAT");
        return Err(R::NoSnat);
    };
    if sn.here {
        let Some(ext) = node.external else {
            return Err(R::NoExternalPath);
        };
        let mtu = external_mtu(snap, r);
        if total > mtu {
            return too_big4(snap, env, r, ingress, in_port, f, mtu, t);
        }
        let up = upstream_mac(node, r)?;
        let now = env.clock();
        let b = f.data_mut();
        env.nat.snat_out(rid, &mut b[ETH_LEN..], now)?;
        dec_ttl4(&mut b[ETH_LEN..]);
        write_macs(b, &up.0, &sn.mac.0);
        tr!(
            t,
            "nat",
            "SNAT {src} → {}; out of the external port to {up}",
            ipv4_at(b, ETH_LEN + 12)
        );
        return Ok(ext);
    }
    to_snat_node(snap, env, r, sn, ingress, in_port, f, t)
}

/// Sends a frame that entered router interface `ingress` to the router's SNAT
/// node, unrouted (that node routes it), from this host's DVR MAC, over the
/// overlay of the ingress network; one too big for that overlay is answered
/// here ([`too_big4`]).
#[allow(clippy::too_many_arguments)]
fn to_snat_node<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    sn: &SnatSettings,
    ingress: &Iface,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    if env.redirected {
        return Err(R::SnatNotHere);
    }
    let node = &*snap.node;
    let (Some(h), Some(dvr)) = (sn.host_idx, node.dvr_mac) else {
        return Err(R::SnatHostUnknown);
    };
    let Some(net) = snap.net(ingress.net) else {
        return Err(R::TableGone);
    };
    if be16(f.data(), ETH_LEN + 2) > net.mtu {
        return too_big4(snap, env, r, ingress, in_port, f, net.mtu, t);
    }
    write_macs(f.data_mut(), &ingress.mac.0, &dvr.0);
    tr!(t, "nat", "to the router's SNAT node {}", host_name(snap, h));
    encap(snap, net, h, f, t)
}

/// A VM reaching another VM's floating IP through their router: the
/// destination back to the fixed IP, the source to its own floating IP (so
/// that the answer, to that floating IP, comes back the same way), routed.
/// `(src, dst, fixed)`: the packet's addresses and the fixed IP behind `dst`.
#[allow(clippy::too_many_arguments)]
fn hairpin4<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    r: &RouterTables,
    ingress: &Iface,
    in_port: u16,
    (src, dst, fixed): (Ipv4Addr, Ipv4Addr, Ipv4Addr),
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let Some(own) = r.fips.get(&src).map(|fe| fe.floating) else {
        tr!(
            t,
            "nat",
            "hairpin to {dst} from {src}, which has no floating IP"
        );
        return Err(R::HairpinNoFip);
    };
    let (eg, net) = egress_to(snap, r, fixed, t)?;
    if be16(f.data(), ETH_LEN + 2) > net.mtu {
        return too_big4(snap, env, r, ingress, in_port, f, net.mtu, t);
    }
    let b = f.data_mut();
    nat::rewrite_dst(&mut b[ETH_LEN..], fixed)?;
    nat::rewrite_src(&mut b[ETH_LEN..], own)?;
    tr!(t, "nat", "hairpin: {src} → {dst} becomes {own} → {fixed}");
    routed_on(snap, net, &eg, f, t)
}

/// Where router `r` routes a translated destination `dst`: a neighbour on a
/// connected subnet, and that subnet's network.
fn egress_to<'a, T: Trace>(
    snap: &'a Snapshot,
    r: &'a RouterTables,
    dst: Ipv4Addr,
    t: &mut T,
) -> Result<(Egress<'a>, &'a NetTables), DropReason> {
    let Some((_, Adj::Neighbor { iface, mac, dest })) = r.fwd4.lookup(u32::from(dst)) else {
        tr!(t, "route", "{dst} is not a known neighbour of the router");
        return Err(R::NeighborUnknown);
    };
    let Some(iface) = r.interfaces.get(iface as usize) else {
        return Err(R::TableGone);
    };
    let Some(net) = snap.net(iface.net) else {
        return Err(R::TableGone);
    };
    tr!(
        t,
        "route",
        "{dst}: neighbour {mac} on subnet {}",
        iface.subnet
    );
    Ok((Egress { iface, mac, dest }, net))
}

/// Routes an IPv4 packet (header valid, TTL not yet decremented, translated)
/// to `eg` on `net` ([`egress_to`]).
fn routed_on<T: Trace>(
    snap: &Snapshot,
    net: &NetTables,
    eg: &Egress<'_>,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    if f.data()[ETH_LEN + 8] <= 1 {
        return Err(R::TtlExpired);
    }
    dec_ttl4(&mut f.data_mut()[ETH_LEN..]);
    deliver_routed(snap, net, eg, f, t)
}

/// A frame from the overlay to this node's interface of router `router`:
/// another host's router sent it here unrouted (`from_router`: from its DVR
/// MAC) for the router's SNAT, or a VM on another host sent it to its
/// centralized (`legacy`) router, whose node this is. Routed here.
fn routed_from_overlay<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    router: u32,
    iface: u16,
    from_router: bool,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let Some(r) = snap.routers.get(router as usize) else {
        return Err(R::TableGone);
    };
    let snat_here = r.snat.as_ref().is_some_and(|s| s.here);
    if from_router && !snat_here {
        tr!(
            t,
            "nat",
            "sent here for SNAT, but the router's SNAT is not here"
        );
        return Err(R::SnatNotHere);
    }
    if !from_router && r.home != Home::Here {
        tr!(
            t,
            "switch",
            "to a router interface from the overlay: not a router centralized here"
        );
        return Err(R::NotLocalAfterDecap);
    }
    tr!(t, "route", "from the overlay, routed here");
    env.redirected = true;
    // The ingress port only matters for answers to the sender, which a
    // redirected frame never gets (no ICMP is sent back over the overlay).
    let v = route(snap, env, router, iface, u16::MAX, f, t);
    env.redirected = false;
    v
}

/// A frame from the external network.
fn from_external<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    in_port: u16,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let b = f.data();
    match be16(b, 12) {
        ETHERTYPE_ARP => external_arp(snap, in_port, f, t),
        ETHERTYPE_IPV4 => {
            let ihl = ipv4_valid(f)?;
            let b = f.data();
            let dst = ipv4_at(b, ETH_LEN + 16);
            let to = MacAddr(mac_at(b, 0));
            let node = &*snap.node;
            match snap.ext.get(dst) {
                Some(ExtAddr::Fip {
                    router,
                    fixed,
                    here: true,
                    central,
                }) => {
                    let Some(r) = snap.routers.get(router as usize) else {
                        return Err(R::TableGone);
                    };
                    if fip_mac(node, r, central) != Some(to) {
                        return Err(R::ExternalWrongMac);
                    }
                    if b[ETH_LEN + 8] <= 1 {
                        return Err(R::TtlExpired);
                    }
                    let (eg, net) = egress_to(snap, r, fixed, t)?;
                    if be16(b, ETH_LEN + 2) > net.mtu {
                        return too_big_in(env, (dst, to), in_port, f, net.mtu, t);
                    }
                    nat::rewrite_dst(&mut f.data_mut()[ETH_LEN..], fixed)?;
                    tr!(t, "nat", "floating IP {dst} → {fixed}");
                    routed_on(snap, net, &eg, f, t)
                }
                Some(ExtAddr::Gateway {
                    mac, here: true, ..
                }) => {
                    if mac != to {
                        return Err(R::ExternalWrongMac);
                    }
                    let now = env.clock();
                    // What the session translates besides the address, to put
                    // back in a packet answered as too big.
                    let port = nat::in_port(&b[ETH_LEN..]);
                    let router = env.nat.snat_in(&mut f.data_mut()[ETH_LEN..], now)?;
                    let Some(r) = snap.routers.get(router as usize) else {
                        return Err(R::TableGone);
                    };
                    let b = f.data();
                    let inside = ipv4_at(b, ETH_LEN + 16);
                    tr!(
                        t,
                        "nat",
                        "SNAT session: {dst} → {inside}:{}",
                        be16(b, ETH_LEN + ihl + 2)
                    );
                    if b[ETH_LEN + 8] <= 1 {
                        return Err(R::TtlExpired);
                    }
                    let (eg, net) = egress_to(snap, r, inside, t)?;
                    if be16(b, ETH_LEN + 2) > net.mtu {
                        nat::untranslate_in(&mut f.data_mut()[ETH_LEN..], dst, port)?;
                        return too_big_in(env, (dst, mac), in_port, f, net.mtu, t);
                    }
                    routed_on(snap, net, &eg, f, t)
                }
                _ => {
                    tr!(t, "external", "{dst} is not served by this node");
                    Err(R::ExternalNotServed)
                }
            }
        }
        _ => Err(R::ExternalEthertype),
    }
}

/// Checks the IPv4 header after the Ethernet header (version, lengths,
/// checksum) and trims the Ethernet padding beyond the IP length; gives the
/// header length.
#[inline(always)]
fn ipv4_valid(f: &mut Frame) -> Result<usize, DropReason> {
    let b = f.data();
    if b.len() < ETH_LEN + IPV4_LEN {
        return Err(R::MalformedIpv4);
    }
    let ip = &b[ETH_LEN..];
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let total = be16(ip, 2) as usize;
    if ip[0] >> 4 != 4 || ihl < IPV4_LEN || total < ihl || total > ip.len() {
        return Err(R::MalformedIpv4);
    }
    let sum_ok = match ip.first_chunk::<IPV4_LEN>() {
        Some(h) if ihl == IPV4_LEN => ipv4_header_sum_ok(h),
        _ => checksum(&ip[..ihl]) == 0,
    };
    if !sum_ok {
        return Err(R::BadIpv4Checksum);
    }
    f.trim(ETH_LEN + total);
    Ok(ihl)
}

/// An ARP reply (payload `a`) seen by `stage`: for the control thread's
/// resolver, not forwarded.
fn arp_reply_consumed<T: Trace>(a: &[u8], stage: &'static str, t: &mut T) -> Verdict {
    tr!(
        t,
        stage,
        "reply from {}: to the control thread",
        ipv4_at(a, 14)
    );
    Err(R::ArpReplyConsumed)
}

/// The ARP payload of an Ethernet/IPv4 ARP frame, checked.
fn arp_payload(b: &[u8]) -> Result<&[u8], DropReason> {
    let a = b.get(ETH_LEN..ETH_LEN + 28).ok_or(R::MalformedArp)?;
    if be16(a, 0) != 1 || be16(a, 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4 {
        return Err(R::MalformedArp);
    }
    Ok(a)
}

/// ARP on the external port: requests for the addresses this node serves are
/// answered (proxy ARP for floating IPs); replies go to the control thread
/// (the upstream routers' MACs).
fn external_arp<T: Trace>(snap: &Snapshot, in_port: u16, f: &mut Frame, t: &mut T) -> Verdict {
    let node = &*snap.node;
    let a = arp_payload(f.data())?;
    match be16(a, 6) {
        1 => {
            let target = ipv4_at(a, 24);
            let sender = ipv4_at(a, 14);
            if sender == target {
                // Gratuitous: somebody else announcing; nothing to answer.
                return Err(R::ArpReplyConsumed);
            }
            let fip_gw = node.fip_gw;
            let mac = match snap.ext.get(target) {
                Some(ExtAddr::Fip {
                    here: true,
                    router,
                    central,
                    ..
                }) => snap
                    .routers
                    .get(router as usize)
                    .and_then(|r| fip_mac(node, r, central)),
                Some(ExtAddr::Gateway {
                    mac, here: true, ..
                }) => Some(mac),
                _ => fip_gw.filter(|g| g.0 == target).map(|g| g.1),
            };
            let Some(mac) = mac else {
                tr!(t, "external-arp", "who-has {target}: not served here");
                return Err(R::ArpUnknownTarget);
            };
            tr!(t, "external-arp", "who-has {target}: {mac}");
            answer_arp(f.data_mut(), mac, target);
            Ok(in_port)
        }
        2 => arp_reply_consumed(a, "external-arp", t),
        _ => Err(R::MalformedArp),
    }
}

/// Writes a gratuitous ARP (a request for `ip` from `ip`, broadcast) from
/// `mac` into `b` (at least 60 bytes); gives the frame's length.
pub fn write_garp(b: &mut [u8], mac: MacAddr, ip: Ipv4Addr) -> usize {
    write_arp_request(b, mac, ip, ip)
}

/// The sender of an ARP reply or gratuitous ARP (for VTEP and upstream
/// resolution), if `b` is one.
pub fn arp_reply_sender(b: &[u8]) -> Option<(Ipv4Addr, MacAddr)> {
    if b.len() < ETH_LEN + 28 || be16(b, 12) != ETHERTYPE_ARP {
        return None;
    }
    let a = &b[ETH_LEN..];
    let gratuitous = be16(a, 6) == 1 && a[14..18] == a[24..28];
    (be16(a, 6) == 2 || gratuitous).then(|| (ipv4_at(a, 14), MacAddr(mac_at(a, 8))))
}

/// Writes an ARP request from `sender` (MAC, IP) for `target` into `b` (at least
/// 42 bytes; returns the frame length).
pub fn write_arp_request(b: &mut [u8], mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> usize {
    write_eth(b, &[0xff; 6], &mac.0, ETHERTYPE_ARP);
    let a = &mut b[ETH_LEN..];
    put16(a, 0, 1);
    put16(a, 2, ETHERTYPE_IPV4);
    a[4] = 6;
    a[5] = 4;
    put16(a, 6, 1);
    a[8..14].copy_from_slice(&mac.0);
    a[14..18].copy_from_slice(&ip.octets());
    a[18..24].copy_from_slice(&[0; 6]);
    a[24..28].copy_from_slice(&target.octets());
    ETH_LEN + 28
}

/// Whether `src`, the inner source MAC of a frame from the overlay on
/// network `n`, is one only this node sends from: a router interface MAC of
/// a router here (the gateway MAC never appears as a source on the fabric:
/// other hosts route from their DVR MAC), or this node's own DVR MAC.
#[inline(always)]
fn gateway_source(node: &NodeTables, n: &NetTables, src: MacAddr) -> bool {
    node.dvr_mac == Some(src) || matches!(n.fdb.get(src.key()), Some(Dest::Router { .. }))
}

/// A decapsulated frame on network `net`: delivered to a local port only, with
/// a DVR MAC source (a frame routed on its source host) rewritten to the
/// destination subnet's router interface MAC.
fn deliver_decapped<T: Trace>(
    snap: &Snapshot,
    env: &mut Env,
    net: u32,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let Some(n) = snap.net(net) else {
        return Err(R::TableGone);
    };
    let b = f.data();
    if b.len() < ETH_LEN {
        return Err(R::RuntFrame);
    }
    if b[6] & 1 != 0 {
        return Err(R::MulticastSrcMac);
    }
    let src = MacAddr(mac_at(b, 6));
    if gateway_source(&snap.node, n, src) {
        tr!(
            t,
            "decap",
            "source {src} is a router interface or DVR MAC of this node"
        );
        return Err(R::OverlayGatewayMac);
    }
    if b[0] & 1 != 0 {
        vip_learn_overlay(env, net, n, b, t);
        if let Some(ip) = vip_asked(n, b) {
            return flood_vip(env, net, false, ip, t);
        }
        return flood(env, net, false, t);
    }
    let dst = MacAddr(mac_at(b, 0));
    let p = match n.fdb.get(dst.key()) {
        Some(Dest::Local(p)) => p,
        Some(Dest::Router { router, iface }) => {
            let from_router = snap.node.dvr_macs.get(src.key()).is_some();
            return routed_from_overlay(snap, env, router, iface, from_router, f, t);
        }
        _ => {
            tr!(
                t,
                "switch",
                "{dst} is not a local port of network {}",
                n.name
            );
            return Err(R::NotLocalAfterDecap);
        }
    };
    if let Some(h) = snap.node.dvr_macs.get(src.key()) {
        if let Some(gw) = covering_gateway(n, be16(b, 12), &b[ETH_LEN..]) {
            f.data_mut()[6..12].copy_from_slice(&gw.mac.0);
            tr!(
                t,
                "rewrite",
                "source {src} (DVR MAC of host {}) → {} (router interface)",
                host_name(snap, h),
                gw.mac
            );
        } else {
            tr!(
                t,
                "rewrite",
                "source {src} is a DVR MAC but no router interface here covers the destination"
            );
            return Err(R::TableGone);
        }
    }
    tr!(t, "switch", "{dst} is local port {p}");
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    /// An IPv4/UDP frame from `src` to `dst` (MACs), as cn2 sends it to
    /// cn1 ([`testkit::model`]) on segment `seg` of `carrier`.
    fn sent_by_cn2(carrier: NetworkType, seg: u32, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut inner = vec![0u8; 60];
        write_eth(&mut inner, &dst, &src, ETHERTYPE_IPV4);
        write_ipv4(
            &mut inner[ETH_LEN..],
            46,
            64,
            PROTO_UDP,
            [10, 1, 0, 20],
            [10, 1, 0, 10],
        );
        let from = (testkit::CN2_UL_MAC, testkit::VTEP2);
        let to = (testkit::UL_MAC, testkit::VTEP1);
        testkit::segment_frame(carrier, &inner, seg, from, to)
    }

    /// What `m` recalls for `key`, finding `t` (and noting it in `found`)
    /// when it does not remember it.
    fn recall<T: Copy>(
        m: &mut TunnelMemo<T>,
        key: [u64; 3],
        t: T,
        found: &mut Vec<T>,
    ) -> Option<T> {
        m.recall(7, key, || {
            found.push(t);
            Some(t)
        })
    }

    /// Tunnels that differ only in their carrier have different keys: a
    /// VNI, a GRE key and a VLAN ID of the same value name different
    /// networks.
    #[test]
    fn the_same_segment_on_another_carrier_is_another_tunnel() {
        let snap = testkit::snapshot(&testkit::model());
        let mut m: TunnelMemo<NetworkType> = TunnelMemo::new(TUNNEL_MEMO);
        let mut found = Vec::new();
        for _ in 0..2 {
            for c in [NetworkType::Vxlan, NetworkType::Gre, NetworkType::Vlan] {
                let f = sent_by_cn2(c, 101, testkit::A_MAC, testkit::C_MAC);
                let a = arrival(&snap, &f).expect("a frame the ways read");
                assert_eq!(a.carrier, c);
                assert_eq!(recall(&mut m, a.key, c, &mut found), Some(c));
            }
        }
        assert_eq!(found.len(), 3);
    }

    /// A worker's memory keeps apart the tunnels of a node's VMs: 128 that
    /// differ only in the last byte of the inner destination MAC are each
    /// found once, then remembered.
    #[test]
    fn tunnels_that_differ_in_one_mac_byte_are_all_remembered() {
        let snap = testkit::snapshot(&testkit::model());
        let mut m: TunnelMemo<u8> = TunnelMemo::new(TUNNEL_MEMO);
        let mut found = Vec::new();
        for _ in 0..3 {
            for i in 0..128u8 {
                let dst = [0xfa, 0x16, 0x3e, 0, 1, i];
                let f = sent_by_cn2(NetworkType::Vxlan, 101, dst, testkit::DVR2);
                let a = arrival(&snap, &f).expect("a frame the ways read");
                assert_eq!(recall(&mut m, a.key, i, &mut found), Some(i));
            }
        }
        assert_eq!(found.len(), 128);
    }

    /// A set keeps its two newest tunnels: a third one found takes the
    /// place of the older.
    #[test]
    fn a_set_keeps_its_two_newest_tunnels() {
        let mut m: TunnelMemo<u8> = TunnelMemo::new(2);
        let mut found = Vec::new();
        for i in [1u8, 2, 1, 2, 3, 2, 3, 1] {
            assert_eq!(recall(&mut m, [0, i as u64, 0], i, &mut found), Some(i));
        }
        // 1 and 2 found once each and remembered together; 3 replaced 1.
        assert_eq!(found, [1, 2, 3, 1]);
    }
}
