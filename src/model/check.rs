//! The invariants of the model: one check per kind (an object against the objects
//! it refers to), and the claims objects make on shared values (addresses, MACs,
//! VTEPs, segments, ...) that must be unique.
//!
//! A change checks its new object with the same function a load uses for every
//! object, and checks the claims the new object adds against everyone else's by
//! looking them up in the model's index (`index.rs`). A load checks all claims at
//! once with a hash map.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::alloc::{is_network_address, overlaps, reserved};
use super::index::{Index, ObjKey, OwnerKey};
use super::*;
use crate::config::AgentMode;
use crate::mac::MacAddr;

/// Names: 1..=64 characters of [A-Za-z0-9_.-].
pub(super) fn check_name(kind: Kind, name: &str) -> Result<(), ModelError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        bail!("invalid {kind} name {name:?}: a name is 1 to 64 characters from A-Z a-z 0-9 _ . -");
    }
    Ok(())
}

pub(super) fn is_v6(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(_))
}

/// "fd00::/64" as "IPv6 subnet", for messages.
fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// The identity of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum ObjId<'a> {
    Host(&'a str),
    Network(&'a str),
    Port(&'a str),
    Router(&'a str),
    Fip(Ipv4Addr),
}

/// Who makes a claim: an object, or a part of one (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Owner<'a> {
    Host(&'a str),
    HostFipGateway(&'a str),
    Network(&'a str),
    Port(&'a str),
    Router(&'a str),
    RouterGateway(&'a str),
    Fip(Ipv4Addr),
}

impl<'a> Owner<'a> {
    pub(super) fn id(self) -> ObjId<'a> {
        match self {
            Owner::Host(n) | Owner::HostFipGateway(n) => ObjId::Host(n),
            Owner::Network(n) => ObjId::Network(n),
            Owner::Port(n) => ObjId::Port(n),
            Owner::Router(n) | Owner::RouterGateway(n) => ObjId::Router(n),
            Owner::Fip(a) => ObjId::Fip(a),
        }
    }

    pub(super) fn is_host(self) -> bool {
        matches!(self.id(), ObjId::Host(_))
    }
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Host(n) => write!(f, "host {n}"),
            Owner::HostFipGateway(n) => write!(f, "the FIP gateway port of host {n}"),
            Owner::Network(n) => write!(f, "network {n}"),
            Owner::Port(n) => write!(f, "port {n}"),
            Owner::Router(n) => write!(f, "router {n}"),
            Owner::RouterGateway(n) => write!(f, "the external gateway of router {n}"),
            Owner::Fip(a) => write!(f, "floating IP {a}"),
        }
    }
}

/// A value an object holds that no other object may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Claim<'a> {
    /// An address on a network (subnets of a network never overlap, so this is
    /// "an address in a subnet").
    Ip(&'a str, IpAddr),
    /// An address on an external network, against hosts' FIP gateway ports
    /// (which do not name their network): conflicts only when one side is a host.
    ExtIp(IpAddr),
    /// A MAC on a network.
    Mac(&'a str, MacAddr),
    DvrMac(MacAddr),
    Vtep(Ipv4Addr),
    Segment(NetworkType, u32),
    SubnetOnRouter(&'a str),
    /// A port's fixed IP has a floating IP.
    FipTarget(&'a str, Ipv4Addr),
}

const HOSTS: u8 = 1;
const NETWORKS: u8 = 2;
const PORTS: u8 = 4;
const ROUTERS: u8 = 8;
const FIPS: u8 = 16;
const ALL: u8 = HOSTS | NETWORKS | PORTS | ROUTERS | FIPS;

impl Claim<'_> {
    /// The kinds of objects to scan for a claim this one conflicts with. Floating
    /// IPs are not scanned for addresses: they are keyed by address, so
    /// [`Ctx::check_new_claims`] looks the address up instead.
    fn sources(&self, by_host: bool) -> u8 {
        match self {
            Claim::Ip(..) => PORTS | ROUTERS,
            Claim::ExtIp(_) if by_host => HOSTS | PORTS | ROUTERS,
            Claim::ExtIp(_) => HOSTS,
            Claim::Mac(..) => PORTS | ROUTERS,
            Claim::DvrMac(_) | Claim::Vtep(_) => HOSTS,
            Claim::Segment(..) => NETWORKS,
            Claim::SubnetOnRouter(_) => ROUTERS,
            Claim::FipTarget(..) => FIPS,
        }
    }

    /// What to tell the one who claims this when `other` already holds it.
    fn taken_by(&self, other: Owner) -> String {
        match self {
            Claim::Ip(_, ip) | Claim::ExtIp(ip) => format!("{ip} is already used by {other}"),
            Claim::Mac(net, mac) => {
                format!("MAC {mac} is already used by {other} on network {net}")
            }
            Claim::DvrMac(mac) => format!("DVR MAC {mac} is already used by {other}"),
            Claim::Vtep(ip) => format!("VTEP {ip} is already used by {other}"),
            Claim::Segment(t, s) => format!("{t} segment {s} is already used by {other}"),
            Claim::SubnetOnRouter(s) => format!("subnet {s} is already on {other}"),
            Claim::FipTarget(p, ip) => {
                format!("fixed IP {ip} of port {p} already has {other}")
            }
        }
    }
}

fn conflicts(a: &(Claim, Owner), b: &(Claim, Owner)) -> bool {
    a.0 == b.0
        && a.1.id() != b.1.id()
        && (!matches!(a.0, Claim::ExtIp(_)) || a.1.is_host() || b.1.is_host())
}

type Claims<'a> = Vec<(Claim<'a>, Owner<'a>)>;

/// The first claim of `theirs` (one object's) in conflict with a probe, as a message.
fn first_conflict(probes: &Claims<'_>, theirs: &Claims<'_>) -> Option<String> {
    theirs.iter().find_map(|t| {
        probes
            .iter()
            .find(|p| conflicts(p, t))
            .map(|p| p.0.taken_by(t.1))
    })
}

/// The `sources` bit of an object's kind.
fn source_bit(id: ObjId<'_>) -> u8 {
    match id {
        ObjId::Host(_) => HOSTS,
        ObjId::Network(_) => NETWORKS,
        ObjId::Port(_) => PORTS,
        ObjId::Router(_) => ROUTERS,
        ObjId::Fip(_) => FIPS,
    }
}

/// A reference to any object, for code that handles claims of every kind.
#[derive(Clone, Copy)]
pub(super) enum ObjRef<'a> {
    Host(&'a Host),
    Network(&'a Network),
    Port(&'a Port),
    Router(&'a Router),
    Fip(&'a FloatingIp),
}

/// The model as seen by the checks, with an optional index of subnets by network
/// (built for a whole-model validation; a change uses the model's index).
pub(super) struct Ctx<'m> {
    pub m: &'m Model,
    subnets_by_network: Option<HashMap<&'m str, Vec<&'m Subnet>>>,
}

impl<'m> Ctx<'m> {
    pub(super) fn scan(m: &'m Model) -> Self {
        Ctx {
            m,
            subnets_by_network: None,
        }
    }

    fn indexed(m: &'m Model) -> Self {
        let mut idx: HashMap<&str, Vec<&Subnet>> = HashMap::new();
        for s in m.subnets.values() {
            idx.entry(s.network.as_str()).or_default().push(s);
        }
        Ctx {
            m,
            subnets_by_network: Some(idx),
        }
    }

    /// The subnets of a network, in name order.
    pub(super) fn subnets_of(&self, network: &str) -> Vec<&'m Subnet> {
        match &self.subnets_by_network {
            Some(idx) => idx.get(network).cloned().unwrap_or_default(),
            None => self.m.subnets_of(network),
        }
    }

    // ---- claims -------------------------------------------------------------

    pub(super) fn claims_of<'a>(&self, obj: ObjRef<'a>, out: &mut Claims<'a>)
    where
        'm: 'a,
    {
        self.claims_into(obj, out, false)
    }

    /// The claims the index holds for `obj`: those of [`Ctx::claims_of`], except
    /// that a port's addresses are `ExtIp` claims whatever its network (whether
    /// they count depends on the network, which can change under the port).
    pub(super) fn claims_for_index<'a>(&self, obj: ObjRef<'a>, out: &mut Claims<'a>)
    where
        'm: 'a,
    {
        self.claims_into(obj, out, true)
    }

    fn claims_into<'a>(&self, obj: ObjRef<'a>, out: &mut Claims<'a>, all_ext: bool)
    where
        'm: 'a,
    {
        match obj {
            ObjRef::Host(h) => {
                let o = Owner::Host(&h.name);
                if let Some(m) = h.dvr_mac {
                    out.push((Claim::DvrMac(m), o));
                }
                if let Some(v) = h.vtep {
                    out.push((Claim::Vtep(v), o));
                }
                if let Some(g) = &h.fip_gateway {
                    out.push((
                        Claim::ExtIp(IpAddr::V4(g.ip)),
                        Owner::HostFipGateway(&h.name),
                    ));
                }
            }
            ObjRef::Network(n) => {
                if let Some(s) = n.segment {
                    out.push((Claim::Segment(n.network_type, s), Owner::Network(&n.name)));
                }
            }
            ObjRef::Port(p) => {
                let o = Owner::Port(&p.name);
                out.push((Claim::Mac(&p.network, p.mac), o));
                let external =
                    all_ext || self.m.networks.get(&p.network).is_some_and(|n| n.external);
                for f in &p.fixed_ips {
                    out.push((Claim::Ip(&p.network, f.ip), o));
                    if external {
                        out.push((Claim::ExtIp(f.ip), o));
                    }
                }
            }
            ObjRef::Router(r) => {
                let o = Owner::Router(&r.name);
                for i in &r.interfaces {
                    out.push((Claim::SubnetOnRouter(&i.subnet), o));
                    if let Some(s) = self.m.subnets.get(&i.subnet) {
                        out.push((Claim::Ip(&s.network, i.ip), o));
                        out.push((Claim::Mac(&s.network, i.mac), o));
                    }
                }
                if let Some(g) = &r.gateway {
                    let o = Owner::RouterGateway(&r.name);
                    out.push((Claim::Mac(&g.network, g.mac), o));
                    for f in &g.ips {
                        out.push((Claim::Ip(&g.network, f.ip), o));
                        out.push((Claim::ExtIp(f.ip), o));
                    }
                }
            }
            ObjRef::Fip(f) => {
                let o = Owner::Fip(f.address);
                let a = IpAddr::V4(f.address);
                out.push((Claim::Ip(&f.network, a), o));
                out.push((Claim::ExtIp(a), o));
                if let (Some(p), Some(ip)) = (&f.port, f.fixed_ip) {
                    out.push((Claim::FipTarget(p, ip), o));
                }
            }
        }
    }

    /// Calls `f` with the claims of every object of the kinds in `sources`
    /// (hosts first), one object at a time, until it returns `Some`.
    fn for_each_object_claims<T>(
        &self,
        sources: u8,
        mut f: impl FnMut(&Claims<'m>) -> Option<T>,
    ) -> Option<T> {
        let mut buf = Vec::new();
        let mut visit = |obj: ObjRef<'m>, buf: &mut Claims<'m>| {
            buf.clear();
            self.claims_of(obj, buf);
            f(buf)
        };
        if sources & HOSTS != 0 {
            for h in self.m.hosts.values() {
                if let Some(t) = visit(ObjRef::Host(h), &mut buf) {
                    return Some(t);
                }
            }
        }
        if sources & NETWORKS != 0 {
            for n in self.m.networks.values() {
                if let Some(t) = visit(ObjRef::Network(n), &mut buf) {
                    return Some(t);
                }
            }
        }
        if sources & PORTS != 0 {
            for p in self.m.ports.values() {
                if let Some(t) = visit(ObjRef::Port(p), &mut buf) {
                    return Some(t);
                }
            }
        }
        if sources & ROUTERS != 0 {
            for r in self.m.routers.values() {
                if let Some(t) = visit(ObjRef::Router(r), &mut buf) {
                    return Some(t);
                }
            }
        }
        if sources & FIPS != 0 {
            for fip in self.m.floating_ips.values() {
                if let Some(t) = visit(ObjRef::Fip(fip), &mut buf) {
                    return Some(t);
                }
            }
        }
        None
    }

    /// Checks the claims `new` makes that `old` (its previous version, if any)
    /// did not make against every other object: a scan of the kinds concerned,
    /// skipped entirely when the change adds no claim (an extra route, a flag).
    pub(super) fn check_new_claims(
        &self,
        new: ObjRef<'_>,
        old: Option<ObjRef<'_>>,
    ) -> Result<(), ModelError> {
        let mut probes = Vec::new();
        self.claims_of(new, &mut probes);
        if let Some(old) = old {
            let mut before = Vec::new();
            self.claims_of(old, &mut before);
            // (Few claims, as a rule: a linear search under a few dozen.)
            if before.len() <= 32 {
                probes.retain(|(c, _)| !before.iter().any(|(b, _)| b == c));
            } else {
                let before: HashSet<Claim> = before.into_iter().map(|(c, _)| c).collect();
                probes.retain(|(c, _)| !before.contains(c));
            }
        }
        if probes.is_empty() {
            return Ok(());
        }
        for probe in &probes {
            let (Claim::Ip(_, IpAddr::V4(a)) | Claim::ExtIp(IpAddr::V4(a))) = probe.0 else {
                continue;
            };
            if let Some(f) = self.m.floating_ips.get(&a) {
                let mut theirs = Vec::new();
                self.claims_of(ObjRef::Fip(f), &mut theirs);
                if let Some(t) = theirs.iter().find(|t| conflicts(probe, t)) {
                    return Err(ModelError(probe.0.taken_by(t.1)));
                }
            }
        }
        let sources = probes
            .iter()
            .fold(0, |s, (c, o)| s | c.sources(o.is_host()));
        let found = match self.m.idx() {
            Some(idx) => self.find_conflict_indexed(idx, &probes, sources),
            None => self.for_each_object_claims(sources, |theirs| first_conflict(&probes, theirs)),
        };
        match found {
            Some(msg) => Err(ModelError(msg)),
            None => Ok(()),
        }
    }

    /// What the scan of [`Ctx::for_each_object_claims`] would find first, from
    /// the index: the objects of the kinds in `sources` holding a claim in
    /// conflict with a probe, taken in scan order (kind, then name or address),
    /// each checked against its claims as a scan would.
    fn find_conflict_indexed(
        &self,
        idx: &Index,
        probes: &Claims<'_>,
        sources: u8,
    ) -> Option<String> {
        let mut candidates: Vec<ObjKey> = Vec::new();
        for probe in probes {
            for holder in idx.owners(probe.0) {
                let owner = holder.owner();
                if sources & source_bit(owner.id()) == 0 || !conflicts(probe, &(probe.0, owner)) {
                    continue;
                }
                if let (Claim::ExtIp(_), Owner::Port(name)) = (probe.0, owner) {
                    if !self.port_on_external(name) {
                        continue;
                    }
                }
                candidates.push(ObjKey::of(owner.id()));
            }
        }
        candidates.sort();
        candidates.dedup();
        let mut theirs = Vec::new();
        for c in &candidates {
            let obj = match c {
                ObjKey::Host(n) => self.m.hosts.get(n).map(ObjRef::Host),
                ObjKey::Network(n) => self.m.networks.get(n).map(ObjRef::Network),
                ObjKey::Port(n) => self.m.ports.get(n).map(ObjRef::Port),
                ObjKey::Router(n) => self.m.routers.get(n).map(ObjRef::Router),
                ObjKey::Fip(a) => self.m.floating_ips.get(a).map(ObjRef::Fip),
                ObjKey::Subnet(_) => None,
            };
            let Some(obj) = obj else { continue };
            theirs.clear();
            self.claims_of(obj, &mut theirs);
            if let Some(msg) = first_conflict(probes, &theirs) {
                return Some(msg);
            }
        }
        None
    }

    fn port_on_external(&self, port: &str) -> bool {
        self.m
            .ports
            .get(port)
            .and_then(|p| self.m.networks.get(&p.network))
            .is_some_and(|n| n.external)
    }

    /// Whether `ip` (inside `net`, a subnet of `network`) is held by something
    /// other than `exclude`, as [`Ctx::used_ips`] counts: probes the index (one
    /// address at a time) when there is one, else computes the set once.
    pub(super) fn ip_user<'s>(
        &'s self,
        network: &'s str,
        net: &IpNet,
        exclude: Option<ObjId<'s>>,
    ) -> Box<dyn Fn(IpAddr) -> bool + 's> {
        let Some(idx) = self.m.idx() else {
            let used = self.used_ips(network, net, exclude);
            return Box::new(move |ip| used.contains(&ip));
        };
        let net = *net;
        let external = self.m.networks.get(network).is_some_and(|n| n.external);
        Box::new(move |ip| {
            if !net.contains(&ip) {
                return false;
            }
            let not_excluded = |o: Owner| Some(o.id()) != exclude;
            idx.owners(Claim::Ip(network, ip))
                .map(OwnerKey::owner)
                .any(|o| matches!(o.id(), ObjId::Port(_) | ObjId::Router(_)) && not_excluded(o))
                || (external
                    && idx
                        .owners(Claim::ExtIp(ip))
                        .map(OwnerKey::owner)
                        .any(|o| o.is_host() && not_excluded(o)))
                || matches!(ip, IpAddr::V4(a)
                    if self.m.floating_ips.contains_key(&a) && Some(ObjId::Fip(a)) != exclude)
        })
    }

    /// The addresses of `net` (a subnet of `network`) that something holds,
    /// except `exclude`: ports, router interfaces and gateways, floating IPs of
    /// any network (their address is their key) and, on an external network,
    /// hosts' FIP gateway ports.
    pub(super) fn used_ips(
        &self,
        network: &str,
        net: &IpNet,
        exclude: Option<ObjId>,
    ) -> HashSet<IpAddr> {
        let external = self.m.networks.get(network).is_some_and(|n| n.external);
        let mut used = HashSet::new();
        let sources = PORTS | ROUTERS | if external { HOSTS } else { 0 };
        self.for_each_object_claims(sources, |claims| {
            for (c, o) in claims {
                if Some(o.id()) == exclude {
                    continue;
                }
                match *c {
                    Claim::Ip(n, ip) if n == network && net.contains(&ip) => {
                        used.insert(ip);
                    }
                    Claim::ExtIp(ip) if o.is_host() && net.contains(&ip) => {
                        used.insert(ip);
                    }
                    _ => {}
                }
            }
            None::<()>
        });
        if let IpNet::V4(v4) = net {
            let range = v4.network()..=v4.broadcast();
            used.extend(
                self.m
                    .floating_ips
                    .range(range)
                    .filter(|(a, _)| Some(ObjId::Fip(**a)) != exclude)
                    .map(|(a, _)| IpAddr::V4(*a)),
            );
        }
        used
    }

    // ---- one object against the objects it refers to -------------------------

    pub(super) fn check_host(&self, h: &Host) -> Result<(), ModelError> {
        check_name(Kind::Host, &h.name)?;
        if let Some(m) = h.dvr_mac {
            if m.is_multicast() || m.is_zero() {
                bail!("DVR MAC {m} of host {} must be a unicast address", h.name);
            }
        }
        if let Some(g) = &h.fip_gateway {
            if g.mac.is_multicast() || g.mac.is_zero() {
                bail!(
                    "FIP gateway MAC {} of host {} must be a unicast address",
                    g.mac,
                    h.name
                );
            }
        }
        Ok(())
    }

    pub(super) fn check_network(&self, n: &Network) -> Result<(), ModelError> {
        check_name(Kind::Network, &n.name)?;
        let (what, max) = match n.network_type {
            NetworkType::Vxlan => ("VNI", 16_777_215),
            NetworkType::Gre => ("key", u32::MAX),
            NetworkType::Vlan => ("VLAN id", 4094),
            NetworkType::Flat => ("", 0),
        };
        let t = n.network_type;
        match (t, n.segment) {
            (NetworkType::Flat, Some(s)) => {
                bail!("a flat network has no segment (network {} has {s})", n.name)
            }
            (NetworkType::Flat, None) => {}
            (_, None) => bail!("a {t} network needs a segment ({what} 1..={max})"),
            (_, Some(s)) if !(1..=max).contains(&s) => {
                bail!("segment {s} is out of range for a {t} network ({what} 1..={max})")
            }
            (_, Some(_)) => {}
        }
        if !(68..=9000).contains(&n.mtu) {
            bail!("MTU {} is out of range 68..=9000", n.mtu);
        }
        Ok(())
    }

    /// Everything about a subnet except overlaps with the other subnets of its
    /// network ([`Ctx::check_subnet_overlap`]).
    pub(super) fn check_subnet(&self, s: &Subnet) -> Result<(), ModelError> {
        check_name(Kind::Subnet, &s.name)?;
        let net = self.m.network(&s.network)?;
        if !is_network_address(&s.cidr) {
            bail!(
                "{} is not a network address; did you mean {}",
                s.cidr,
                s.cidr.trunc()
            );
        }
        let (max, fam) = if is_v6(&s.cidr) {
            (126, "IPv6")
        } else {
            (30, "IPv4")
        };
        if s.cidr.prefix_len() > max {
            bail!(
                "{}: an {fam} subnet's prefix must be /{max} or shorter (room for a gateway and hosts)",
                s.cidr
            );
        }
        if is_v6(&s.cidr) && net.mtu < 1280 {
            bail!(
                "network {} has MTU {}; an IPv6 subnet needs an MTU of at least 1280",
                net.name,
                net.mtu
            );
        }
        if let Some(gw) = s.gateway_ip {
            if !s.cidr.contains(&gw) {
                bail!("gateway {gw} is not inside {}", s.cidr);
            }
            if let Some(why) = reserved(&s.cidr, gw) {
                bail!(
                    "gateway {gw} is {why} of {}; it cannot be the gateway",
                    s.cidr
                );
            }
        }
        check_dhcp_options(s)
    }

    pub(super) fn check_subnet_overlap(&self, s: &Subnet) -> Result<(), ModelError> {
        for other in self.subnets_of(&s.network) {
            if other.name != s.name && overlaps(&s.cidr, &other.cidr) {
                bail!(
                    "subnet {} overlaps {} (subnet {}) on network {}",
                    s.cidr,
                    other.cidr,
                    other.name,
                    s.network
                );
            }
        }
        Ok(())
    }

    /// A fixed IP of something on `network` (a port, a router gateway).
    pub(super) fn check_fixed_ip(
        &self,
        network: &str,
        f: &FixedIp,
    ) -> Result<&'m Subnet, ModelError> {
        let s = self.m.subnet(&f.subnet)?;
        if s.network != network {
            bail!(
                "subnet {} is on network {}, not on network {network}",
                s.name,
                s.network
            );
        }
        if !s.cidr.contains(&f.ip) {
            bail!("{} is not inside subnet {} ({})", f.ip, s.name, s.cidr);
        }
        if let Some(why) = reserved(&s.cidr, f.ip) {
            bail!("{} is {why} of subnet {} ({})", f.ip, s.name, s.cidr);
        }
        if s.gateway_ip == Some(f.ip) {
            bail!("{} is the gateway address of subnet {}", f.ip, s.name);
        }
        Ok(s)
    }

    pub(super) fn check_port(&self, p: &Port) -> Result<(), ModelError> {
        check_name(Kind::Port, &p.name)?;
        self.m.network(&p.network)?;
        if p.mac.is_multicast() || p.mac.is_zero() {
            bail!(
                "MAC {} is not a unicast address; a port needs a unicast MAC",
                p.mac
            );
        }
        let mut seen = HashSet::new();
        for f in &p.fixed_ips {
            self.check_fixed_ip(&p.network, f)?;
            if !seen.insert(f.ip) {
                bail!("port {} lists fixed IP {} twice", p.name, f.ip);
            }
        }
        if let Some(h) = &p.host {
            self.m.host(h)?;
        }
        let mut seen = HashSet::new();
        for pair in &p.allowed_address_pairs {
            check_pair(pair)?;
            if !seen.insert(pair) {
                bail!(
                    "port {} lists allowed address pair {} twice",
                    p.name,
                    pair.ip
                );
            }
        }
        if !p.port_security && !p.allowed_address_pairs.is_empty() {
            bail!(
                "allowed address pairs need port security, and port {} has port security disabled",
                p.name
            );
        }
        Ok(())
    }

    pub(super) fn check_router(&self, r: &Router) -> Result<(), ModelError> {
        check_name(Kind::Router, &r.name)?;
        if r.distributed && r.ha {
            bail!(
                "DVR cannot be combined with L3 HA: router {} cannot be both distributed and ha",
                r.name
            );
        }
        if let Some(h) = &r.snat_host {
            let host = self.m.host(h)?;
            // A centralized (not distributed) router may also live on a
            // `legacy` node, which routes everything of it.
            let legacy_home = !r.distributed && host.agent_mode == AgentMode::Legacy;
            if host.agent_mode != AgentMode::DvrSnat && !legacy_home {
                bail!(
                    "host {h} is in agent mode {}; a router's SNAT needs a dvr_snat host (or, for a router that is not distributed, a legacy host)",
                    host.agent_mode.name()
                );
            }
        }
        // The subnets the router reaches: its interfaces', then its gateway's.
        let mut nets: Vec<(&Interface, &Subnet)> = Vec::with_capacity(r.interfaces.len());
        for i in &r.interfaces {
            let s = self.m.subnet(&i.subnet)?;
            let net = self.m.network(&s.network)?;
            if net.external {
                bail!(
                    "subnet {} belongs to external network {}; it can only be a router's external gateway",
                    s.name,
                    net.name
                );
            }
            match s.gateway_ip {
                None => bail!(
                    "subnet {} has no gateway IP; a router interface takes the subnet's gateway address",
                    s.name
                ),
                Some(gw) if gw != i.ip => bail!(
                    "router {}'s interface on subnet {} has {} but the subnet's gateway is {gw}",
                    r.name,
                    s.name,
                    i.ip
                ),
                Some(_) => {}
            }
            if i.mac.is_multicast() || i.mac.is_zero() {
                bail!(
                    "MAC {} of router {}'s interface on subnet {} is not unicast",
                    i.mac,
                    r.name,
                    s.name
                );
            }
            for (_, prev) in &nets {
                if prev.name == s.name {
                    bail!("subnet {} is already on router {}", s.name, r.name);
                }
                if overlaps(&prev.cidr, &s.cidr) {
                    bail!(
                        "subnet {} overlaps {} (subnet {}) already on router {}",
                        s.cidr,
                        prev.cidr,
                        prev.name,
                        r.name
                    );
                }
            }
            nets.push((i, s));
        }
        let mut reach: Vec<IpNet> = nets.iter().map(|(_, s)| s.cidr).collect();
        let mut own: Vec<IpAddr> = r.interfaces.iter().map(|i| i.ip).collect();
        if let Some(g) = &r.gateway {
            let net = self.m.network(&g.network)?;
            if !net.external {
                bail!(
                    "network {} is not external; a router's external gateway needs an external network (router:external)",
                    net.name
                );
            }
            if g.mac.is_multicast() || g.mac.is_zero() {
                bail!(
                    "MAC {} of router {}'s gateway is not unicast",
                    g.mac,
                    r.name
                );
            }
            let mut seen = HashSet::new();
            for f in &g.ips {
                let s = self.check_fixed_ip(&g.network, f)?;
                if !seen.insert(f.ip) {
                    bail!("router {}'s gateway lists {} twice", r.name, f.ip);
                }
                reach.push(s.cidr);
                own.push(f.ip);
            }
        }
        let mut seen = HashSet::new();
        for route in &r.routes {
            check_route(&r.name, route, &reach, &own)?;
            if !seen.insert(route) {
                bail!(
                    "route {} via {} is already on router {}",
                    route.destination,
                    route.nexthop,
                    r.name
                );
            }
        }
        Ok(())
    }

    pub(super) fn check_fip(&self, f: &FloatingIp) -> Result<(), ModelError> {
        let net = self.m.network(&f.network)?;
        if !net.external {
            bail!(
                "network {} is not external; floating IPs live on an external network (router:external)",
                net.name
            );
        }
        let a = IpAddr::V4(f.address);
        let Some(s) = self
            .subnets_of(&f.network)
            .into_iter()
            .find(|s| s.cidr.contains(&a))
        else {
            bail!(
                "{} is not inside any IPv4 subnet of network {}",
                f.address,
                f.network
            );
        };
        if let Some(why) = reserved(&s.cidr, a) {
            bail!("{a} is {why} of subnet {} ({})", s.name, s.cidr);
        }
        if s.gateway_ip == Some(a) {
            bail!("{a} is the gateway address of subnet {}", s.name);
        }
        match (&f.port, f.fixed_ip, &f.router) {
            (None, None, None) => Ok(()),
            (Some(port), Some(fixed), Some(router)) => {
                let p = self.m.port(port)?;
                self.check_fip_port(f, p)?;
                let Some(fixed_ip) = p.fixed_ips.iter().find(|x| x.ip == IpAddr::V4(fixed)) else {
                    bail!("{fixed} is not an IPv4 fixed IP of port {port}");
                };
                let r = self.m.router(router)?;
                if !router_connects(r, &fixed_ip.subnet, &f.network) {
                    bail!(
                        "router {router} does not connect subnet {} to external network {}",
                        fixed_ip.subnet,
                        f.network
                    );
                }
                Ok(())
            }
            _ => bail!(
                "floating IP {} has an incomplete association: port, fixed_ip and router go together",
                f.address
            ),
        }
    }

    pub(super) fn check_fip_port(&self, f: &FloatingIp, p: &Port) -> Result<(), ModelError> {
        let net = self.m.network(&p.network)?;
        if net.external {
            bail!(
                "port {} is on external network {}; floating IP {} needs a port on an internal network",
                p.name,
                net.name,
                f.address
            );
        }
        Ok(())
    }
}

/// The router has an interface on `subnet` and its gateway on `network`.
pub(super) fn router_connects(r: &Router, subnet: &str, network: &str) -> bool {
    r.interfaces.iter().any(|i| i.subnet == subnet)
        && r.gateway.as_ref().is_some_and(|g| g.network == network)
}

pub(super) fn check_pair(pair: &AllowedPair) -> Result<(), ModelError> {
    if pair.ip.prefix_len() == 0 {
        bail!(
            "an allowed address pair of {} would let the port send from any address; not allowed",
            pair.ip
        );
    }
    if !is_network_address(&pair.ip) {
        bail!(
            "allowed address pair {} is not a network address; did you mean {} (or {}/{})",
            pair.ip,
            pair.ip.trunc(),
            pair.ip.addr(),
            pair.ip.max_prefix_len()
        );
    }
    if let Some(m) = pair.mac {
        if m.is_multicast() || m.is_zero() {
            bail!(
                "allowed address pair {} has MAC {m}, which is not unicast",
                pair.ip
            );
        }
    }
    Ok(())
}

/// `reach`: the router's subnets (interfaces and gateway); `own`: its addresses.
fn check_route(
    router: &str,
    route: &Route,
    reach: &[IpNet],
    own: &[IpAddr],
) -> Result<(), ModelError> {
    let (d, nh) = (route.destination, route.nexthop);
    if !is_network_address(&d) {
        bail!(
            "route destination {d} is not a network address; did you mean {}",
            d.trunc()
        );
    }
    if d.addr().is_ipv4() != nh.is_ipv4() {
        bail!(
            "route {d} via {nh} mixes an {} destination with an {} nexthop",
            family(d.addr()),
            family(nh)
        );
    }
    if own.contains(&nh) {
        bail!("nexthop {nh} of route {d} is an address of router {router} itself");
    }
    if !nexthop_reachable(nh, reach) {
        bail!(
            "nexthop {nh} of route {d} is not inside any subnet of router {router} (its interfaces and external gateway)"
        );
    }
    Ok(())
}

pub(super) fn nexthop_reachable(nh: IpAddr, reach: &[IpNet]) -> bool {
    reach.iter().any(|n| n.contains(&nh))
}

impl Model {
    pub(super) fn host(&self, name: &str) -> Result<&Host, ModelError> {
        match self.hosts.get(name) {
            Some(o) => Ok(o),
            None => bail!("no host named {name}"),
        }
    }
    pub(super) fn network(&self, name: &str) -> Result<&Network, ModelError> {
        match self.networks.get(name) {
            Some(o) => Ok(o),
            None => bail!("no network named {name}"),
        }
    }
    pub(super) fn subnet(&self, name: &str) -> Result<&Subnet, ModelError> {
        match self.subnets.get(name) {
            Some(o) => Ok(o),
            None => bail!("no subnet named {name}"),
        }
    }
    pub(super) fn port(&self, name: &str) -> Result<&Port, ModelError> {
        match self.ports.get(name) {
            Some(o) => Ok(o),
            None => bail!("no port named {name}"),
        }
    }
    pub(super) fn router(&self, name: &str) -> Result<&Router, ModelError> {
        match self.routers.get(name) {
            Some(o) => Ok(o),
            None => bail!("no router named {name}"),
        }
    }
    pub(super) fn fip(&self, address: Ipv4Addr) -> Result<&FloatingIp, ModelError> {
        match self.floating_ips.get(&address) {
            Some(o) => Ok(o),
            None => bail!("no floating IP {address}"),
        }
    }
}

/// The whole model: keys against names, every object's checks, the subnets of
/// each network against each other, and every claim against every other.
pub(super) fn validate(m: &Model) -> Result<(), ModelError> {
    fn key<K: fmt::Display + PartialEq>(map: &str, k: &K, name: &K) -> Result<(), ModelError> {
        if k != name {
            bail!("{map}: the entry {k} holds an object named {name}");
        }
        Ok(())
    }
    fn ctx_err<T>(what: impl fmt::Display, r: Result<T, ModelError>) -> Result<T, ModelError> {
        r.map_err(|e| ModelError(format!("{what}: {}", e.0)))
    }
    for (k, o) in &m.hosts {
        key("hosts", k, &o.name)?;
    }
    for (k, o) in &m.networks {
        key("networks", k, &o.name)?;
    }
    for (k, o) in &m.subnets {
        key("subnets", k, &o.name)?;
    }
    for (k, o) in &m.ports {
        key("ports", k, &o.name)?;
    }
    for (k, o) in &m.routers {
        key("routers", k, &o.name)?;
    }
    for (k, o) in &m.floating_ips {
        key("floating_ips", k, &o.address)?;
    }

    let ctx = Ctx::indexed(m);
    for h in m.hosts.values() {
        ctx_err(Owner::Host(&h.name), ctx.check_host(h))?;
    }
    for n in m.networks.values() {
        ctx_err(Owner::Network(&n.name), ctx.check_network(n))?;
    }
    for s in m.subnets.values() {
        ctx_err(format!("subnet {}", s.name), ctx.check_subnet(s))?;
    }
    for p in m.ports.values() {
        ctx_err(Owner::Port(&p.name), ctx.check_port(p))?;
    }
    for r in m.routers.values() {
        ctx_err(Owner::Router(&r.name), ctx.check_router(r))?;
    }
    for f in m.floating_ips.values() {
        ctx_err(Owner::Fip(f.address), ctx.check_fip(f))?;
    }

    // Overlaps: sorted by first address then widest first, a subnet that overlaps
    // any other overlaps the one right after it.
    if let Some(idx) = &ctx.subnets_by_network {
        for subnets in idx.values() {
            let mut sorted: Vec<&&Subnet> = subnets.iter().collect();
            sorted.sort_by_key(|s| (s.cidr.network(), s.cidr.prefix_len()));
            for w in sorted.windows(2) {
                if overlaps(&w[0].cidr, &w[1].cidr) {
                    bail!(
                        "subnet {}: {} overlaps {} (subnet {}) on network {}",
                        w[1].name,
                        w[1].cidr,
                        w[0].cidr,
                        w[0].name,
                        w[1].network
                    );
                }
            }
        }
    }

    // Claims. Hosts come first, so a non-host address on an external network
    // needs only to look for a host's.
    let mut seen: HashMap<Claim, Owner> = HashMap::new();
    let found = ctx.for_each_object_claims(ALL, |claims| {
        for &(c, o) in claims {
            match c {
                Claim::ExtIp(_) if !o.is_host() => {
                    if let Some(&h) = seen.get(&c) {
                        return Some(format!("{o}: {}", c.taken_by(h)));
                    }
                }
                _ => match seen.entry(c) {
                    Entry::Occupied(e) if e.get().id() != o.id() => {
                        return Some(format!("{o}: {}", c.taken_by(*e.get())));
                    }
                    Entry::Occupied(_) => {}
                    Entry::Vacant(e) => {
                        e.insert(o);
                    }
                },
            }
        }
        None
    });
    match found {
        Some(msg) => Err(ModelError(msg)),
        None => Ok(()),
    }
}

/// A subnet's DNS servers and host routes: few enough for a DHCP reply,
/// no duplicates, routes of the subnet's family through a next hop inside
/// it (a DHCP client reaches its next hops on the link).
fn check_dhcp_options(s: &Subnet) -> Result<(), ModelError> {
    use crate::model::types::{MAX_DNS_NAMESERVERS, MAX_HOST_ROUTES};
    if s.dns_nameservers.len() > MAX_DNS_NAMESERVERS {
        bail!(
            "subnet {}: {} DNS servers; at most {MAX_DNS_NAMESERVERS}",
            s.name,
            s.dns_nameservers.len()
        );
    }
    for (i, d) in s.dns_nameservers.iter().enumerate() {
        if s.dns_nameservers[..i].contains(d) {
            bail!("subnet {}: DNS server {d} given twice", s.name);
        }
        if d.is_unspecified() || d.is_multicast() {
            bail!("subnet {}: {d} cannot be a DNS server", s.name);
        }
    }
    if s.host_routes.len() > MAX_HOST_ROUTES {
        bail!(
            "subnet {}: {} host routes; at most {MAX_HOST_ROUTES}",
            s.name,
            s.host_routes.len()
        );
    }
    for (i, r) in s.host_routes.iter().enumerate() {
        if is_v6(&r.destination) != is_v6(&s.cidr) || r.nexthop.is_ipv6() != is_v6(&s.cidr) {
            bail!(
                "subnet {}: host route {} via {} is not of the subnet's family",
                s.name,
                r.destination,
                r.nexthop
            );
        }
        if !is_network_address(&r.destination) {
            bail!(
                "subnet {}: host route destination {} is not a network address; did you mean {}",
                s.name,
                r.destination,
                r.destination.trunc()
            );
        }
        if !s.cidr.contains(&r.nexthop) {
            bail!(
                "subnet {}: host route {} via {}: the next hop is not inside {}",
                s.name,
                r.destination,
                r.nexthop,
                s.cidr
            );
        }
        if s.host_routes[..i]
            .iter()
            .any(|o| o.destination == r.destination)
        {
            bail!("subnet {}: two host routes to {}", s.name, r.destination);
        }
    }
    Ok(())
}
