//! The dataplane's tables as one immutable snapshot, compiled from the model for
//! this node and published RCU style: the control thread swaps in a new snapshot
//! (`arc_swap::ArcSwap`), a worker loads the current one once per burst, and an old
//! snapshot is freed when the last worker that loaded it has finished its burst.
//!
//! A snapshot is a tree of `Arc`s: the node's own tables (VTEP, DVR MAC, the
//! other hosts, segment → network maps), one table set per network (FDB with
//! local ports, remote ports behind their host's VTEP and router interfaces; the
//! ARP/ND responder's addresses; the gateways), one per router (interfaces, LPM,
//! neighbours with where they live), and one slot per dataplane port. A change
//! recompiles only the networks and routers it touches; everything else is
//! shared with the previous snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;

use crate::config::PortRole;
use crate::fib::{Fib, IntHasher, NextHop, Trie4};
use crate::l2::MacTable;
use crate::mac::MacAddr;
use crate::model::{Applied, Kind, Model, NetworkType, Router};

/// Where a snapshot is published and read.
pub type Tables = arc_swap::ArcSwap<Snapshot>;

/// Items of a snapshot indexed by a stable number (routers, networks), in
/// chunks: the next snapshot shares every chunk it does not change, so
/// publishing a change to one router costs one chunk, not one pointer per
/// router of the node.
#[derive(Debug)]
pub struct Chunked<T> {
    chunks: Vec<Arc<[Option<Arc<T>>]>>,
    len: usize,
}

const CHUNK: usize = 64;

impl<T> Clone for Chunked<T> {
    fn clone(&self) -> Self {
        Chunked {
            chunks: self.chunks.clone(),
            len: self.len,
        }
    }
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)?.as_deref()
    }

    /// The shared handle of item `i`.
    pub fn get_arc(&self, i: usize) -> Option<&Arc<T>> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)?.as_ref()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets item `i` (growing as needed); copies the one chunk it is in.
    pub fn set(&mut self, i: usize, v: Option<Arc<T>>) {
        while self.chunks.len() <= i / CHUNK {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        self.len = self.len.max(i + 1);
        let c = &mut self.chunks[i / CHUNK];
        let mut items: Vec<Option<Arc<T>>> = c.to_vec();
        items[i % CHUNK] = v;
        *c = items.into();
    }
}

/// A map keyed by IP address with a cheap hash (keys come from the operator).
pub type IpMap<V> = HashMap<IpAddr, V, BuildHasherDefault<IntHasher>>;
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Where a frame goes after the L2 lookup, or where a neighbour lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dest {
    /// Nowhere this node can send to (a port bound to no host, or to a host
    /// without a VTEP).
    #[default]
    Nowhere,
    /// A VM port of this node (dataplane port index).
    Local(u16),
    /// A port on another host (index in [`NodeTables::hosts`]).
    Remote(u16),
    /// A router interface (router index, interface index).
    Router { router: u32, iface: u16 },
}

/// Another host, as the overlay reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub name: String,
    pub vtep: Ipv4Addr,
    pub dvr_mac: Option<MacAddr>,
}

/// What the node knows of itself and of the other hosts.
#[derive(Debug, Clone, Default)]
pub struct NodeTables {
    pub name: String,
    pub vtep: Option<Ipv4Addr>,
    pub dvr_mac: Option<MacAddr>,
    /// The underlay port (index, MAC), if the node has one.
    pub underlay: Option<(u16, MacAddr)>,
    /// The other hosts with a VTEP, by name.
    pub hosts: Vec<HostEntry>,
    /// The other hosts' DVR MACs (value: host index).
    pub dvr_macs: MacTable<u16>,
    /// The other hosts by VTEP (value: host index).
    pub by_vtep: IntMap<Ipv4Addr, u16>,
    /// Network index by VXLAN VNI, GRE key and VLAN id.
    pub by_vni: IntMap<u32, u32>,
    pub by_gre_key: IntMap<u32, u32>,
    pub by_vlan: IntMap<u32, u32>,
    /// Resolved underlay neighbours: VTEP → MAC.
    pub vtep_macs: IntMap<Ipv4Addr, MacAddr>,
    /// The outer Ethernet and IPv4 headers toward each host (by host index),
    /// ready to copy; `None` while its VTEP is unresolved (see [`Outer`]).
    pub outer: Vec<Option<Outer>>,
    /// The external port (index), if the node has one.
    pub external: Option<u16>,
    /// This host's FIP gateway port on the external network (address, MAC):
    /// the source MAC of floating IP traffic it sends, the MAC its proxy ARP
    /// answers with.
    pub fip_gw: Option<(Ipv4Addr, MacAddr)>,
}

/// The outer Ethernet + IPv4 header of the tunnels toward one host, built when
/// the tables are: this VTEP to the host's, TTL 64, DF, the protocol left 0
/// and the total length 0 (the encapsulation writes both and completes the
/// checksum from `sum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    pub hdr: [u8; 34],
    /// The one's complement sum of the IPv4 header as built (not folded).
    pub sum: u32,
}

impl NodeTables {
    /// The outer headers toward every host, from the resolved VTEP MACs.
    pub fn outer_headers(&self) -> Vec<Option<Outer>> {
        self.hosts
            .iter()
            .map(|h| {
                let (vtep, (_, ul_mac)) = (self.vtep?, self.underlay?);
                let nh = self.vtep_macs.get(&h.vtep)?;
                let mut hdr = [0u8; 34];
                crate::pkt::write_eth(&mut hdr, &nh.0, &ul_mac.0, crate::pkt::ETHERTYPE_IPV4);
                crate::pkt::write_ipv4(&mut hdr[14..], 0, 64, 0, vtep.octets(), h.vtep.octets());
                crate::pkt::put16(&mut hdr, 24, 0);
                Some(Outer {
                    hdr,
                    sum: crate::pkt::csum_add(0, &hdr[14..]),
                })
            })
            .collect()
    }
}

/// A VM port of this node bound to a model port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPort {
    pub name: String,
    pub network: String,
    pub net: u32,
    pub mac: MacAddr,
    pub security: bool,
    pub ips: Vec<IpAddr>,
    /// The IPv4 addresses of `ips`, as host-order integers (port security's
    /// common case, checked without building an `IpAddr`).
    pub ips4: Vec<u32>,
    /// Allowed address pairs: a prefix and the MAC it may use (None: the port's).
    pub pairs: Vec<(IpNet, Option<MacAddr>)>,
    pub index: u16,
}

/// What a dataplane port is to the pipeline.
#[derive(Debug, Clone)]
pub enum Slot {
    /// A VM port; `None` when no model port is bound to it (the configuration's
    /// static table switches it).
    Vm(Option<Arc<VmPort>>),
    Underlay,
    External,
}

/// A router interface on a network, as the network's tables see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gw {
    pub cidr: IpNet,
    pub ip: IpAddr,
    pub mac: MacAddr,
    pub router: u32,
    pub iface: u16,
}

/// One network's tables.
#[derive(Debug, Clone)]
pub struct NetTables {
    pub name: String,
    pub kind: NetworkType,
    pub segment: u32,
    pub mtu: u16,
    pub external: bool,
    /// Destination MAC → where it is.
    pub fdb: MacTable<Dest>,
    /// The addresses the ARP / ND responder answers for, with their MACs.
    pub arp: IpMap<MacAddr>,
    /// The enabled router interfaces on this network.
    pub gateways: Vec<Gw>,
    /// Other hosts with ports here (head-end replication), by host index.
    pub remote_hosts: Vec<u16>,
    /// This node's ports here.
    pub local_ports: Vec<u16>,
    /// The allowed address pairs of the network's ports (a VIP such as a
    /// keepalived address may be held by any of them), by where the port is.
    pub vips: Vec<Vip>,
    /// The VIPs' holders as learned from the ports (a gratuitous ARP, an
    /// ARP reply, an unsolicited NA that passed port security): address →
    /// MAC. Set by the control thread ([`Compiler::set_vip_holder`]).
    pub holders: IpMap<MacAddr>,
}

/// The most VIP holders a network remembers (a port with a wide pair
/// cannot grow the tables without bound).
pub const MAX_HOLDERS: usize = 4096;

/// An allowed address pair of a port: any address of `cidr` may be the
/// port's, with `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vip {
    pub cidr: IpNet,
    pub mac: MacAddr,
    pub dest: Dest,
}

/// An order of [`Dest`]s (the VIP entries of one port are together).
fn dest_key(d: Dest) -> (u8, u32, u32) {
    match d {
        Dest::Nowhere => (0, 0, 0),
        Dest::Local(p) => (1, p as u32, 0),
        Dest::Remote(h) => (2, h as u32, 0),
        Dest::Router { router, iface } => (3, router, iface as u32),
    }
}

/// The link-local address (`fe80::/64`, modified EUI-64) a port with `mac`
/// gives itself.
pub fn eui64_link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

impl NetTables {
    /// The VIP entries that may hold `ip`.
    pub fn vips_of(&self, ip: IpAddr) -> impl Iterator<Item = &Vip> + '_ {
        self.vips.iter().filter(move |v| v.cidr.contains(&ip))
    }

    /// Where `ip`, an address inside allowed address pairs, lives: its
    /// learned holder, else the one port whose pairs cover it. `None` when
    /// no pair covers it, or several ports may hold it and none has said so.
    pub fn vip_holder(&self, ip: IpAddr) -> Option<(MacAddr, Dest)> {
        if let Some(&mac) = self.holders.get(&ip) {
            if let Some(v) = self.vips_of(ip).find(|v| v.mac == mac) {
                return Some((v.mac, v.dest));
            }
        }
        let mut c = self.vips_of(ip);
        let first = c.next()?;
        c.all(|v| v.mac == first.mac && v.dest == first.dest)
            .then_some((first.mac, first.dest))
    }
}

/// A router interface as the dataplane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub subnet: String,
    pub network: String,
    pub net: u32,
    pub cidr: IpNet,
    pub ip: IpAddr,
    pub mac: MacAddr,
}

/// A neighbour of a router: an address on a connected subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub mac: MacAddr,
    pub port: String,
    pub dest: Dest,
}

/// One router's compiled tables.
#[derive(Debug, Clone)]
pub struct RouterTables {
    pub name: String,
    pub distributed: bool,
    pub interfaces: Vec<Iface>,
    /// Connected subnets, extra routes, the default route through the gateway.
    pub fib: Arc<Fib>,
    /// Addresses on the router's connected subnets and their MACs (from the
    /// model's ports: no ARP needed), and where each lives.
    pub neighbors: Arc<IpMap<Neighbor>>,
    /// IPv4 forwarding resolved at compile time: the longest match of a
    /// destination gives what to do with it in one lookup (see [`Adj`]).
    pub fwd4: Arc<Trie4<Adj>>,
    /// Floating IPs served through this router, by fixed IP (shared parts
    /// above: a floating IP change recompiles only this).
    pub fips: IntMap<Ipv4Addr, FipEntry>,
    /// The external gateway and its SNAT settings, if the router has one.
    pub snat: Option<SnatSettings>,
    /// Where the router routes: everywhere (distributed), or on its central
    /// node only (`legacy`: the other nodes switch to it over the overlay).
    pub home: Home,
    /// The upstream router of the external gateway's IPv4 subnet: the next
    /// hop of north-south traffic (its MAC is resolved by ARP on the external
    /// port).
    pub upstream: Option<Ipv4Addr>,
    /// The router's floating IPs that have a fixed IP: floating → fixed
    /// (hairpin: a VM reaching another VM's floating IP).
    pub floating: IntMap<Ipv4Addr, Ipv4Addr>,
}

/// Where a router routes, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// Distributed: on every node.
    Everywhere,
    /// Not distributed, and this node is its central node (`snat_host`).
    Here,
    /// Not distributed, on another host (index), reached over the overlay.
    Host(u16),
    /// Not distributed and no central node known: routes nowhere.
    Nowhere,
}

/// What an address of the external network is to this node ([`Snapshot::ext`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtAddr {
    /// A floating IP of router `router` (index), associated with `fixed`;
    /// `here`: this node serves it (its port is bound here; or, `central`,
    /// the router's SNAT node is this node).
    Fip {
        router: u32,
        fixed: Ipv4Addr,
        here: bool,
        central: bool,
    },
    /// The external gateway IP of router `router`, whose port has `mac`;
    /// `here`: the router's SNAT runs on this node.
    Gateway {
        router: u32,
        mac: MacAddr,
        here: bool,
    },
}

impl ExtAddr {
    fn router(&self) -> u32 {
        match *self {
            ExtAddr::Fip { router, .. } | ExtAddr::Gateway { router, .. } => router,
        }
    }
}

const EXT_SHARDS: usize = 64;

/// The external addresses every router of the node uses (floating IPs,
/// gateway IPs), in shards: a change copies one shard, not the whole map.
#[derive(Debug, Clone)]
pub struct ExtMap {
    shards: Vec<Arc<IntMap<Ipv4Addr, ExtAddr>>>,
}

impl Default for ExtMap {
    fn default() -> Self {
        ExtMap {
            shards: (0..EXT_SHARDS).map(|_| Arc::default()).collect(),
        }
    }
}

impl ExtMap {
    #[inline]
    fn shard(a: Ipv4Addr) -> usize {
        (u32::from(a).wrapping_mul(0x9E37_79B9) >> 26) as usize % EXT_SHARDS
    }

    #[inline]
    pub fn get(&self, a: Ipv4Addr) -> Option<ExtAddr> {
        self.shards.get(Self::shard(a))?.get(&a).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, ExtAddr)> + '_ {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(a, e)| (*a, *e)))
    }

    /// The entries of the shards that are not `old`'s (changed since), with
    /// whether each shard changed: for following changes without a scan of
    /// every address.
    pub fn changed_since<'a>(
        &'a self,
        old: &'a ExtMap,
    ) -> impl Iterator<Item = (usize, &'a IntMap<Ipv4Addr, ExtAddr>)> + 'a {
        self.shards
            .iter()
            .enumerate()
            .filter(move |(i, s)| old.shards.get(*i).is_none_or(|o| !Arc::ptr_eq(o, s)))
            .map(|(i, s)| (i, &**s))
    }

    /// The shard an address lives in.
    pub fn shard_of(a: Ipv4Addr) -> usize {
        Self::shard(a)
    }

    fn insert(&mut self, a: Ipv4Addr, e: ExtAddr) {
        Arc::make_mut(&mut self.shards[Self::shard(a)]).insert(a, e);
    }

    /// Removes `a` if router `router` holds it (another router may have
    /// taken it over in the same transaction).
    fn remove_of(&mut self, a: Ipv4Addr, router: u32) {
        let sh = &mut self.shards[Self::shard(a)];
        if sh.get(&a).is_some_and(|e| e.router() == router) {
            Arc::make_mut(sh).remove(&a);
        }
    }

    /// Replaces the addresses of router `id` as `old` had them by `new`'s.
    fn update(
        &mut self,
        id: u32,
        old: Option<&RouterTables>,
        new: Option<&RouterTables>,
        ext_here: bool,
    ) {
        if let Some(o) = old {
            for (a, _) in o.ext_addrs(id, ext_here) {
                self.remove_of(a, id);
            }
        }
        if let Some(n) = new {
            for (a, e) in n.ext_addrs(id, ext_here) {
                self.insert(a, e);
            }
        }
    }
}

/// A router whose SNAT runs on this node: its index and external IPv4
/// addresses (the workers' NAT follows this list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatHere {
    pub router: u32,
    pub ips: Vec<Ipv4Addr>,
    /// The router's fixed IPs that have a floating IP (sorted): their SNAT
    /// sessions are flushed when they get one (they leave by it from then on).
    pub with_fip: Vec<Ipv4Addr>,
}

impl RouterTables {
    /// The external addresses of this router (index `id`) as this node sees
    /// them; `ext_here`: the node has an external port (serves floating IPs).
    fn ext_addrs(&self, id: u32, ext_here: bool) -> Vec<(Ipv4Addr, ExtAddr)> {
        let mut v = Vec::new();
        let snat_here = self.snat.as_ref().is_some_and(|s| s.here);
        for f in self.fips.values() {
            let here = if f.central {
                snat_here
            } else {
                matches!(f.dest, Dest::Local(_))
            };
            v.push((
                f.floating,
                ExtAddr::Fip {
                    router: id,
                    fixed: f.fixed,
                    here: ext_here && here,
                    central: f.central,
                },
            ));
        }
        if let Some(sn) = &self.snat {
            for ip in &sn.ips {
                if let IpAddr::V4(a) = ip {
                    v.push((
                        *a,
                        ExtAddr::Gateway {
                            router: id,
                            mac: sn.mac,
                            here: sn.here && ext_here,
                        },
                    ));
                }
            }
        }
        v
    }

    /// The router's SNAT, if it runs on this node.
    fn snat_here(&self, id: u32) -> Option<SnatHere> {
        let sn = self.snat.as_ref().filter(|s| s.here && s.enable_snat)?;
        let ips: Vec<Ipv4Addr> = sn
            .ips
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let mut with_fip: Vec<Ipv4Addr> = self.fips.values().map(|f| f.fixed).collect();
        with_fip.sort();
        (!ips.is_empty()).then_some(SnatHere {
            router: id,
            ips,
            with_fip,
        })
    }
}

/// What the IPv4 forwarding table of a router says about a destination:
/// resolved when the router's tables are compiled (the model knows every
/// neighbour), so that forwarding is one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adj {
    /// One of the router's own addresses (interface `iface`).
    Local { iface: u16 },
    /// Forward through interface `iface` to `mac`, which lives at `dest`.
    Neighbor {
        iface: u16,
        mac: MacAddr,
        dest: Dest,
    },
    /// On a connected subnet (or via an address on one) where no port has the
    /// address.
    Unknown { iface: u16 },
    /// Via a next hop that is not on a connected subnet (north-south).
    External,
}

/// A floating IP association (1:1 NAT) as the dataplane sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FipEntry {
    pub floating: Ipv4Addr,
    pub fixed: Ipv4Addr,
    pub port: String,
    /// Where the associated port is: in mode `dvr` the host of the port
    /// serves its floating IP (DNAT in, SNAT out, proxy ARP).
    pub dest: Dest,
    /// Served centrally, by the router's SNAT node: the router is not
    /// distributed (`legacy`), or the port's host is `dvr_no_external`.
    pub central: bool,
}

/// A router's external gateway: the addresses SNAT translates to, where the
/// centralized SNAT runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnatSettings {
    pub network: String,
    pub ips: Vec<IpAddr>,
    pub mac: MacAddr,
    pub enable_snat: bool,
    /// The `dvr_snat` host that holds the router's SNAT, and whether it is this node.
    pub host: Option<String>,
    pub here: bool,
    /// That host's index among the node's other hosts (where compute nodes
    /// send the router's SNAT traffic).
    #[serde(skip)]
    pub host_idx: Option<u16>,
    /// The external network's index ([`Snapshot::net`]): its MTU bounds what
    /// leaves through the external port.
    #[serde(skip)]
    pub net: Option<u32>,
}

/// The dataplane side of a node, as the compiler needs it.
#[derive(Debug, Clone)]
pub struct NodePorts {
    /// This node's name (model ports with `host` equal to it are local).
    pub node: String,
    /// Dataplane ports, in port index order.
    pub ports: Vec<DpPort>,
    /// The configuration's static FDB.
    pub static_fdb: Vec<(MacAddr, u16)>,
    /// The configuration's VTEP and DVR MAC (the model's host record wins).
    pub vtep: Option<Ipv4Addr>,
    pub dvr_mac: Option<MacAddr>,
    /// The configuration's static underlay neighbours (VTEP → MAC).
    pub vtep_macs: Vec<(Ipv4Addr, MacAddr)>,
}

/// A dataplane port: its configured name and role, and its MAC once started.
#[derive(Debug, Clone)]
pub struct DpPort {
    pub name: String,
    pub role: PortRole,
    pub mac: MacAddr,
}

impl NodePorts {
    pub fn index_of(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
    }
}

/// The model's view that compiling needs besides the model: host and network
/// indexes, this node.
struct Ctx<'a> {
    model: &'a Model,
    node: &'a NodePorts,
    host_ids: &'a HashMap<String, u16>,
    net_ids: &'a HashMap<String, u32>,
}

impl Ctx<'_> {
    /// The VM port of this node that model port `p` is bound to.
    fn local_index(&self, p: &crate::model::Port) -> Option<u16> {
        if p.host.as_deref() != Some(self.node.node.as_str()) {
            return None;
        }
        let b = p.binding.as_deref()?;
        self.node
            .ports
            .iter()
            .position(|d| d.role == PortRole::Vm && d.name == b)
            .map(|i| i as u16)
    }

    /// Where model port `p` is, seen from this node.
    fn port_dest(&self, p: &crate::model::Port) -> Dest {
        if let Some(i) = self.local_index(p) {
            return Dest::Local(i);
        }
        match p.host.as_deref().and_then(|h| self.host_ids.get(h)) {
            Some(&h) => Dest::Remote(h),
            None => Dest::Nowhere,
        }
    }

    fn vm_port(&self, p: &crate::model::Port) -> Option<VmPort> {
        let index = self.local_index(p)?;
        Some(VmPort {
            name: p.name.clone(),
            network: p.network.clone(),
            net: *self.net_ids.get(&p.network)?,
            mac: p.mac,
            security: p.port_security,
            ips: p.fixed_ips.iter().map(|f| f.ip).collect(),
            ips4: p
                .fixed_ips
                .iter()
                .filter_map(|f| match f.ip {
                    IpAddr::V4(a) => Some(u32::from(a)),
                    IpAddr::V6(_) => None,
                })
                .collect(),
            pairs: p
                .allowed_address_pairs
                .iter()
                .map(|a| (a.ip, a.mac))
                .collect(),
            index,
        })
    }
}

/// Port names by the subnets of their fixed IPs (or by network).
pub type PortsBy = HashMap<String, BTreeSet<String>>;

impl RouterTables {
    /// Compiles one router from the model; `fips` are the addresses of the
    /// floating IPs associated through it.
    fn compile(
        cx: &Ctx<'_>,
        r: &Router,
        ports_by_subnet: &PortsBy,
        fips: Option<&BTreeSet<Ipv4Addr>>,
    ) -> RouterTables {
        let model = cx.model;
        let mut fib = Fib::default();
        let mut interfaces = Vec::new();
        for itf in &r.interfaces {
            if let Some(sn) = model.subnets.get(&itf.subnet) {
                let Some(&net) = cx.net_ids.get(&sn.network) else {
                    continue;
                };
                fib.insert(
                    sn.cidr,
                    NextHop::Connected {
                        iface: interfaces.len() as u16,
                    },
                );
                interfaces.push(Iface {
                    subnet: sn.name.clone(),
                    network: sn.network.clone(),
                    net,
                    cidr: sn.cidr,
                    ip: itf.ip,
                    mac: itf.mac,
                });
            }
        }
        if let Some(gw) = &r.gateway {
            // The default route: the upstream router of the gateway's subnet.
            for fip in &gw.ips {
                if let Some(sn) = model.subnets.get(&fip.subnet) {
                    if let Some(up) = sn.gateway_ip {
                        let default: IpNet = if up.is_ipv4() {
                            IpNet::V4(Default::default())
                        } else {
                            IpNet::V6(Default::default())
                        };
                        fib.insert(default, NextHop::Via { via: up });
                    }
                }
            }
        }
        for route in &r.routes {
            fib.insert(route.destination, NextHop::Via { via: route.nexthop });
        }

        let mut neighbors = IpMap::default();
        for i in &interfaces {
            for name in ports_by_subnet.get(&i.subnet).into_iter().flatten() {
                if let Some(p) = model.ports.get(name) {
                    for f in p.fixed_ips.iter().filter(|f| f.subnet == i.subnet) {
                        neighbors.insert(
                            f.ip,
                            Neighbor {
                                mac: p.mac,
                                port: p.name.clone(),
                                dest: cx.port_dest(p),
                            },
                        );
                    }
                }
            }
        }
        let fwd4 = Self::resolve4(&fib, &interfaces, &neighbors);
        let fip_map = Self::fip_map(cx, r.distributed, fips);
        let snat = r.gateway.as_ref().map(|g| SnatSettings {
            network: g.network.clone(),
            ips: g.ips.iter().map(|f| f.ip).collect(),
            mac: g.mac,
            enable_snat: g.enable_snat,
            host: r.snat_host.clone(),
            here: r.snat_host.as_deref() == Some(cx.node.node.as_str()),
            host_idx: r
                .snat_host
                .as_deref()
                .and_then(|h| cx.host_ids.get(h).copied()),
            net: cx.net_ids.get(&g.network).copied(),
        });
        let home = match r.snat_host.as_deref() {
            _ if r.distributed => Home::Everywhere,
            Some(h) if h == cx.node.node => Home::Here,
            Some(h) => cx.host_ids.get(h).map_or(Home::Nowhere, |&i| Home::Host(i)),
            None => Home::Nowhere,
        };
        let upstream = r.gateway.as_ref().and_then(|g| {
            g.ips.iter().find_map(|f| {
                match model.subnets.get(&f.subnet).and_then(|sn| sn.gateway_ip) {
                    Some(IpAddr::V4(a)) => Some(a),
                    _ => None,
                }
            })
        });
        RouterTables {
            name: r.name.clone(),
            distributed: r.distributed,
            interfaces,
            fib: Arc::new(fib),
            neighbors: Arc::new(neighbors),
            fwd4: Arc::new(fwd4),
            floating: Self::floating_of(&fip_map),
            fips: fip_map,
            snat,
            home,
            upstream,
        }
    }

    fn floating_of(fips: &IntMap<Ipv4Addr, FipEntry>) -> IntMap<Ipv4Addr, Ipv4Addr> {
        fips.values().map(|f| (f.floating, f.fixed)).collect()
    }

    /// The floating IPs `fips` (addresses) as served through this router.
    fn fip_map(
        cx: &Ctx<'_>,
        distributed: bool,
        fips: Option<&BTreeSet<Ipv4Addr>>,
    ) -> IntMap<Ipv4Addr, FipEntry> {
        let model = cx.model;
        let mut fip_map = IntMap::default();
        for f in fips
            .into_iter()
            .flatten()
            .filter_map(|a| model.floating_ips.get(a))
        {
            let (Some(port), Some(fixed)) = (&f.port, f.fixed_ip) else {
                continue;
            };
            let p = model.ports.get(port);
            let dest = p.map_or(Dest::Nowhere, |p| cx.port_dest(p));
            let no_external = p
                .and_then(|p| p.host.as_deref())
                .and_then(|h| model.hosts.get(h))
                .is_some_and(|h| h.agent_mode == crate::config::AgentMode::DvrNoExternal);
            fip_map.insert(
                fixed,
                FipEntry {
                    floating: f.address,
                    fixed,
                    port: port.clone(),
                    dest,
                    central: !distributed || no_external,
                },
            );
        }
        fip_map
    }

    /// The IPv4 forwarding trie: every route resolved to its adjacency, every
    /// neighbour whose longest match is its connected subnet as a /32, every
    /// interface address as a /32 of the router itself.
    fn resolve4(fib: &Fib, interfaces: &[Iface], neighbors: &IpMap<Neighbor>) -> Trie4<Adj> {
        let adj_of = |iface: u16, ip: IpAddr| match neighbors.get(&ip) {
            Some(n) => Adj::Neighbor {
                iface,
                mac: n.mac,
                dest: n.dest,
            },
            None => Adj::Unknown { iface },
        };
        let mut entries: Vec<(u32, u8, Adj)> = Vec::new();
        for (p, len, nh) in fib.v4.routes() {
            let adj = match nh {
                NextHop::Connected { iface } => Adj::Unknown { iface },
                NextHop::Via { via } => match fib.lookup_fast(via) {
                    Some((_, NextHop::Connected { iface })) => adj_of(iface, via),
                    _ => Adj::External,
                },
            };
            entries.push((p, len, adj));
        }
        for (ip, _) in neighbors.iter() {
            let IpAddr::V4(a) = ip else { continue };
            if let Some((_, NextHop::Connected { iface })) = fib.lookup4(u32::from(*a)) {
                entries.push((u32::from(*a), 32, adj_of(iface, *ip)));
            }
        }
        for (k, i) in interfaces.iter().enumerate() {
            if let IpAddr::V4(a) = i.ip {
                entries.push((u32::from(a), 32, Adj::Local { iface: k as u16 }));
            }
        }
        // Equal prefixes: the later wins (the build is stable by length), so
        // the router's own addresses come last.
        Trie4::build(entries.into_iter())
    }

    /// The ports whose addresses this router's neighbour table holds.
    fn neighbor_ports(&self) -> impl Iterator<Item = &str> {
        self.neighbors.values().map(|n| n.port.as_str())
    }
}

impl NetTables {
    /// Compiles network `name`: its ports (`ports`), the enabled routers' interfaces
    /// on it (from their compiled tables).
    fn compile(
        cx: &Ctx<'_>,
        name: &str,
        ports: Option<&BTreeSet<String>>,
        routers: &Chunked<RouterTables>,
        router_ids: Option<&BTreeSet<usize>>,
    ) -> Option<NetTables> {
        let n = cx.model.networks.get(name)?;
        let mut fdb = Vec::new();
        let mut arp = IpMap::default();
        let mut remote_hosts = BTreeSet::new();
        let mut local_ports = BTreeSet::new();
        let mut vips = Vec::new();
        for p in ports
            .into_iter()
            .flatten()
            .filter_map(|p| cx.model.ports.get(p))
        {
            let dest = cx.port_dest(p);
            match dest {
                Dest::Nowhere => continue,
                Dest::Local(i) => {
                    local_ports.insert(i);
                }
                Dest::Remote(h) => {
                    remote_hosts.insert(h);
                }
                Dest::Router { .. } => {}
            }
            fdb.push((p.mac, dest));
            for f in &p.fixed_ips {
                arp.insert(f.ip, p.mac);
            }
            // The port's EUI-64 link-local address: answered like a fixed IP.
            arp.entry(IpAddr::V6(eui64_link_local(p.mac)))
                .or_insert(p.mac);
            for a in &p.allowed_address_pairs {
                let mac = a.mac.unwrap_or(p.mac);
                if a.mac.is_some() {
                    fdb.push((mac, dest));
                }
                // Not answered by the responder (several ports may hold the
                // address, and it moves): requests for it go to the ports
                // whose pairs cover it, and the holder answers.
                vips.push(Vip {
                    cidr: a.ip,
                    mac,
                    dest,
                });
            }
        }
        vips.sort_by_key(|v| (dest_key(v.dest), v.cidr.addr(), v.cidr.prefix_len()));
        vips.dedup();
        let mut gateways = Vec::new();
        for &id in router_ids.into_iter().flatten() {
            let Some(t) = routers.get(id) else {
                continue;
            };
            for (k, i) in t.interfaces.iter().enumerate() {
                if i.network != name {
                    continue;
                }
                let gw = Gw {
                    cidr: i.cidr,
                    ip: i.ip,
                    mac: i.mac,
                    router: id as u32,
                    iface: k as u16,
                };
                let dest = match t.home {
                    Home::Everywhere | Home::Here => Dest::Router {
                        router: gw.router,
                        iface: gw.iface,
                    },
                    // A centralized router: switched to its node.
                    Home::Host(h) => Dest::Remote(h),
                    Home::Nowhere => Dest::Nowhere,
                };
                if let Dest::Remote(h) = dest {
                    remote_hosts.insert(h);
                }
                fdb.push((i.mac, dest));
                arp.insert(i.ip, i.mac);
                gateways.push(gw);
            }
        }
        gateways.sort_by_key(|g| (g.router, g.iface));
        Some(NetTables {
            name: n.name.clone(),
            kind: n.network_type,
            segment: n.segment.unwrap_or(0),
            mtu: n.mtu,
            external: n.external,
            fdb: MacTable::new(&fdb),
            arp,
            gateways,
            remote_hosts: remote_hosts.into_iter().collect(),
            local_ports: local_ports.into_iter().collect(),
            vips,
            holders: IpMap::default(),
        })
    }
}

/// The hosts with a VTEP other than `node`, by name, and their indexes.
fn hosts_of(model: &Model, node: &str) -> (Vec<HostEntry>, HashMap<String, u16>) {
    let hosts: Vec<HostEntry> = model
        .hosts
        .values()
        .filter(|h| h.name != node)
        .filter_map(|h| {
            Some(HostEntry {
                name: h.name.clone(),
                vtep: h.vtep?,
                dvr_mac: h.dvr_mac,
            })
        })
        .collect();
    let ids = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.clone(), i as u16))
        .collect();
    (hosts, ids)
}

impl Snapshot {
    /// The snapshot of the configuration alone (no model).
    pub fn from_config(node: &NodePorts) -> Snapshot {
        Snapshot {
            generation: 0,
            epoch: next_epoch(),
            node: Arc::new(NodeTables {
                name: node.node.clone(),
                vtep: node.vtep,
                dvr_mac: node.dvr_mac,
                underlay: underlay_of(node),
                vtep_macs: node.vtep_macs.iter().copied().collect(),
                external: node.external(),
                ..NodeTables::default()
            }),
            ports: slots(node, &HashMap::new()),
            nets: Chunked::default(),
            static_fdb: Arc::new(MacTable::new(&node.static_fdb)),
            routers: Chunked::default(),
            ext: ExtMap::default(),
            snat_here: Arc::default(),
        }
    }

    /// Compiles the model for `node` from scratch. A model port is served here
    /// when its host is this node and its binding names one of this node's VM
    /// ports.
    pub fn compile(model: &Model, node: &NodePorts) -> Arc<Snapshot> {
        Compiler::new(model, node.clone()).current().clone()
    }

    /// The tables of router `name`, if it is enabled.
    pub fn router<'a>(&'a self, compiler: &Compiler, name: &str) -> Option<&'a RouterTables> {
        let id = *compiler.ids.get(name)?;
        self.routers.get(id)
    }

    /// The tables of network `name`.
    pub fn network<'a>(&'a self, compiler: &Compiler, name: &str) -> Option<&'a NetTables> {
        let id = *compiler.net_ids.get(name)?;
        self.nets.get(id as usize)
    }

    /// The configuration's static MAC table (for VM ports no model port is bound to).
    #[inline(always)]
    pub fn static_fdb(&self) -> &MacTable {
        &self.static_fdb
    }

    /// The network tables of index `net`.
    #[inline(always)]
    pub fn net(&self, net: u32) -> Option<&NetTables> {
        self.nets.get(net as usize)
    }
}

impl NodePorts {
    /// The external port's index, if the node has one.
    pub fn external(&self) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| p.role == PortRole::External)
            .map(|i| i as u16)
    }

    pub fn has_external(&self) -> bool {
        self.external().is_some()
    }
}

fn underlay_of(node: &NodePorts) -> Option<(u16, MacAddr)> {
    node.ports
        .iter()
        .position(|p| p.role == PortRole::Underlay)
        .map(|i| (i as u16, node.ports[i].mac))
}

fn slots(node: &NodePorts, local: &HashMap<String, VmPort>) -> Box<[Slot]> {
    let mut s: Vec<Slot> = node
        .ports
        .iter()
        .map(|p| match p.role {
            PortRole::Vm => Slot::Vm(None),
            PortRole::Underlay => Slot::Underlay,
            PortRole::External => Slot::External,
        })
        .collect();
    // Two model ports bound to one dataplane port: the first by name serves it.
    let mut v: Vec<&VmPort> = local.values().collect();
    v.sort_by(|a, b| b.name.cmp(&a.name));
    for v in v {
        s[v.index as usize] = Slot::Vm(Some(Arc::new(v.clone())));
    }
    s.into_boxed_slice()
}

/// A new [`Snapshot::epoch`].
fn next_epoch() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The dataplane's tables: see the module documentation.
#[derive(Debug)]
pub struct Snapshot {
    /// The model generation it was compiled from (0: configuration only).
    pub generation: u64,
    /// Unique to this snapshot among those of the process (never 0): what a
    /// worker's flow cache entries are valid for ([`crate::flow`]). Several
    /// snapshots can share a model generation (a resolved VTEP, say).
    pub epoch: u64,
    pub node: Arc<NodeTables>,
    /// Per dataplane port.
    pub ports: Box<[Slot]>,
    /// Per network (index from the [`Compiler`]); None when deleted.
    pub nets: Chunked<NetTables>,
    /// The configuration's static table, for VM ports no model port is bound to.
    static_fdb: Arc<MacTable>,
    /// Per router (index from the [`Compiler`]): its tables, or None when the
    /// router is disabled or deleted (a disabled router routes nothing).
    pub routers: Chunked<RouterTables>,
    /// The external network's addresses of the routers: floating IPs and
    /// gateway IPs (what the external port answers ARP for and translates).
    pub ext: ExtMap,
    /// The routers whose SNAT runs on this node.
    pub snat_here: Arc<Vec<SnatHere>>,
}

/// Keeps the published snapshot up to date with the model, recompiling only what
/// a transaction touched: the routers it changed, the routers whose neighbour
/// tables hold (or should now hold) a changed port, the networks whose ports or
/// router interfaces changed, and the port slots when this node's ports
/// changed. A host change (VTEPs, DVR MACs) recompiles everything. Every other
/// table is shared with the previous snapshot (`Arc`).
pub struct Compiler {
    node: NodePorts,
    /// Router name → index in `Snapshot::routers` (stable; deleted routers leave
    /// a hole that a new router of the same name reuses).
    ids: HashMap<String, usize>,
    /// Index → router name.
    names: Vec<String>,
    /// Network name → index in `Snapshot::nets` (stable, like routers).
    net_ids: HashMap<String, u32>,
    net_names: Vec<String>,
    host_ids: HashMap<String, u16>,
    hosts: Vec<HostEntry>,
    /// Subnet → routers with an interface on it.
    by_subnet: HashMap<String, BTreeSet<usize>>,
    /// Network → routers with an interface on it.
    routers_by_net: HashMap<String, BTreeSet<usize>>,
    /// Port → routers whose neighbour tables hold one of its addresses.
    by_port: HashMap<String, BTreeSet<usize>>,
    /// The model's ports by the subnets of their fixed IPs.
    ports_by_subnet: PortsBy,
    /// Port → the subnets it is indexed under in `ports_by_subnet`.
    port_subnets: HashMap<String, Vec<String>>,
    /// The model's ports by network, and each port's network.
    ports_by_net: PortsBy,
    port_net: HashMap<String, String>,
    /// Floating IPs by the router serving them, and each one's router.
    fips_by_router: HashMap<String, BTreeSet<Ipv4Addr>>,
    fip_router: HashMap<Ipv4Addr, String>,
    /// This node's bound VM ports.
    local: HashMap<String, VmPort>,
    /// Resolved underlay neighbours.
    vtep_macs: IntMap<Ipv4Addr, MacAddr>,
    /// The external addresses of every router (published in the snapshot).
    ext: ExtMap,
    /// The routers whose SNAT runs here, by index.
    snat: BTreeMap<u32, SnatHere>,
    snat_changed: bool,
    /// This host's FIP gateway port (address, MAC), from its host record.
    fip_gw: Option<(Ipv4Addr, MacAddr)>,
    /// Per router: its upstream router on the external network, and the
    /// address and MAC to ask for it from (see [`Compiler::upstreams`]).
    upstreams: BTreeMap<u32, (Ipv4Addr, Ipv4Addr, MacAddr)>,
    /// The learned holders of VIPs, by network name (see
    /// [`NetTables::holders`]).
    holders: HashMap<String, IpMap<MacAddr>>,
    current: Arc<Snapshot>,
}

impl Compiler {
    /// A compiler whose first snapshot is the full compile of `model`.
    pub fn new(model: &Model, node: NodePorts) -> Compiler {
        let mut c = Compiler {
            current: Arc::new(Snapshot::from_config(&node)),
            node,
            ids: HashMap::new(),
            names: Vec::new(),
            net_ids: HashMap::new(),
            net_names: Vec::new(),
            host_ids: HashMap::new(),
            hosts: Vec::new(),
            by_subnet: HashMap::new(),
            routers_by_net: HashMap::new(),
            by_port: HashMap::new(),
            ports_by_subnet: PortsBy::new(),
            port_subnets: HashMap::new(),
            ports_by_net: PortsBy::new(),
            port_net: HashMap::new(),
            fips_by_router: HashMap::new(),
            fip_router: HashMap::new(),
            local: HashMap::new(),
            vtep_macs: IntMap::default(),
            ext: ExtMap::default(),
            snat: BTreeMap::new(),
            snat_changed: false,
            fip_gw: None,
            upstreams: BTreeMap::new(),
            holders: HashMap::new(),
        };
        c.vtep_macs.extend(c.node.vtep_macs.iter().copied());
        for name in model.networks.keys() {
            c.net_id(name);
        }
        for name in model.routers.keys() {
            c.router_id(name);
        }
        // A fresh compile recompiles every network and router anyway; the
        // ports and floating IPs build the compiler's indexes.
        let all: Vec<Applied> = model
            .ports
            .keys()
            .map(|n| Applied {
                kind: Kind::Port,
                name: n.clone(),
            })
            .chain(model.floating_ips.keys().map(|a| Applied {
                kind: Kind::FloatingIp,
                name: a.to_string(),
            }))
            .collect();
        c.apply(model, &all, true);
        c
    }

    pub fn current(&self) -> &Arc<Snapshot> {
        &self.current
    }

    /// The L2 entries of this node, as compiled: (network, MAC, model port,
    /// dataplane port index), by network then MAC.
    pub fn local_entries(&self) -> Vec<(String, MacAddr, String, u16)> {
        let mut v: Vec<_> = self
            .local
            .iter()
            .map(|(p, l)| (l.network.clone(), l.mac, p.clone(), l.index))
            .collect();
        v.sort();
        v
    }

    /// Names of the routers the compiler knows, in index order.
    pub fn router_names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Names of the networks the compiler knows, in index order.
    pub fn network_names(&self) -> Vec<String> {
        self.net_names.clone()
    }

    /// The other hosts, by index.
    pub fn hosts(&self) -> &[HostEntry] {
        &self.hosts
    }

    fn net_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.net_ids.get(name) {
            return id;
        }
        let id = self.net_names.len() as u32;
        self.net_ids.insert(name.to_owned(), id);
        self.net_names.push(name.to_owned());
        id
    }

    fn router_id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len();
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }

    fn index(&mut self, id: usize, t: &RouterTables) {
        for i in &t.interfaces {
            self.by_subnet
                .entry(i.subnet.clone())
                .or_default()
                .insert(id);
            self.routers_by_net
                .entry(i.network.clone())
                .or_default()
                .insert(id);
        }
        for p in t.neighbor_ports() {
            self.by_port.entry(p.to_owned()).or_default().insert(id);
        }
    }

    fn unindex(&mut self, id: usize, t: &RouterTables) {
        fn out(m: &mut HashMap<String, BTreeSet<usize>>, k: &str, id: usize) {
            if let Some(s) = m.get_mut(k) {
                s.remove(&id);
                if s.is_empty() {
                    m.remove(k);
                }
            }
        }
        for i in &t.interfaces {
            out(&mut self.by_subnet, &i.subnet, id);
            out(&mut self.routers_by_net, &i.network, id);
        }
        for p in t.neighbor_ports() {
            out(&mut self.by_port, p, id);
        }
    }

    /// Moves port `name` in `ports_by_subnet` and `ports_by_net` to where it
    /// is now; returns its previous network.
    fn reindex_port(&mut self, model: &Model, name: &str) -> Option<String> {
        fn out(m: &mut PortsBy, k: &str, name: &str) {
            if let Some(set) = m.get_mut(k) {
                set.remove(name);
                if set.is_empty() {
                    m.remove(k);
                }
            }
        }
        for sn in self.port_subnets.remove(name).unwrap_or_default() {
            out(&mut self.ports_by_subnet, &sn, name);
        }
        let old = self.port_net.remove(name);
        if let Some(n) = &old {
            out(&mut self.ports_by_net, n, name);
        }
        if let Some(p) = model.ports.get(name) {
            let subnets: Vec<String> = p.fixed_ips.iter().map(|f| f.subnet.clone()).collect();
            for sn in &subnets {
                self.ports_by_subnet
                    .entry(sn.clone())
                    .or_default()
                    .insert(name.to_owned());
            }
            self.port_subnets.insert(name.to_owned(), subnets);
            self.ports_by_net
                .entry(p.network.clone())
                .or_default()
                .insert(name.to_owned());
            self.port_net.insert(name.to_owned(), p.network.clone());
        }
        old
    }

    /// Records the MAC of an underlay neighbour (a VTEP) and publishes it.
    /// Returns the new snapshot when the MAC is new or changed.
    pub fn set_vtep_mac(&mut self, vtep: Ipv4Addr, mac: MacAddr) -> Option<Arc<Snapshot>> {
        if self.vtep_macs.get(&vtep) == Some(&mac) {
            return None;
        }
        self.vtep_macs.insert(vtep, mac);
        let mut node = (*self.current.node).clone();
        node.vtep_macs = self.vtep_macs.clone();
        node.outer = node.outer_headers();
        let cur = &self.current;
        self.current = Arc::new(Snapshot {
            generation: cur.generation,
            epoch: next_epoch(),
            node: Arc::new(node),
            ports: cur.ports.clone(),
            nets: cur.nets.clone(),
            static_fdb: cur.static_fdb.clone(),
            routers: cur.routers.clone(),
            ext: cur.ext.clone(),
            snat_here: cur.snat_here.clone(),
        });
        Some(self.current.clone())
    }

    /// Takes over the VIP holders `old` learned.
    pub fn inherit_holders(&mut self, old: &Compiler) {
        for (net, m) in &old.holders {
            let Some(&id) = self.net_ids.get(net) else {
                continue;
            };
            for (ip, mac) in m {
                self.set_vip_holder(id, *ip, *mac);
            }
        }
    }

    /// Records that `mac` holds `ip`, an address inside the allowed pairs of
    /// a port of network `net` (index), and publishes it. Returns the new
    /// snapshot when the holder is new or changed; `None` too when no pair of
    /// the network covers `ip` with `mac` (a stale or forged note).
    pub fn set_vip_holder(&mut self, net: u32, ip: IpAddr, mac: MacAddr) -> Option<Arc<Snapshot>> {
        let t = self.current.nets.get(net as usize)?;
        if t.holders.get(&ip) == Some(&mac)
            || !t.vips_of(ip).any(|v| v.mac == mac)
            || (t.holders.len() >= MAX_HOLDERS && !t.holders.contains_key(&ip))
        {
            return None;
        }
        let name = self.net_names.get(net as usize)?.clone();
        let mut t = t.clone();
        t.holders.insert(ip, mac);
        self.holders.entry(name).or_default().insert(ip, mac);
        let mut nets = self.current.nets.clone();
        nets.set(net as usize, Some(Arc::new(t)));
        let cur = &self.current;
        self.current = Arc::new(Snapshot {
            generation: cur.generation,
            epoch: next_epoch(),
            node: cur.node.clone(),
            ports: cur.ports.clone(),
            nets,
            static_fdb: cur.static_fdb.clone(),
            routers: cur.routers.clone(),
            ext: cur.ext.clone(),
            snat_here: cur.snat_here.clone(),
        });
        Some(self.current.clone())
    }

    /// Keeps the list of routers whose SNAT runs here up to date with router
    /// `id`'s new tables (`None`: gone or disabled).
    fn snat_routers(&mut self, id: u32, new: Option<&RouterTables>) {
        // The upstream router to resolve, and who asks: this host's FIP
        // gateway port, else the router's own gateway port if its SNAT is here.
        let up = new.filter(|_| self.node.has_external()).and_then(|t| {
            let target = t.upstream?;
            let sender = self.fip_gw.or_else(|| {
                let sn = t.snat.as_ref().filter(|s| s.here)?;
                sn.ips.iter().find_map(|a| match a {
                    IpAddr::V4(a) => Some((*a, sn.mac)),
                    IpAddr::V6(_) => None,
                })
            })?;
            Some((target, sender.0, sender.1))
        });
        match up {
            Some(u) => self.upstreams.insert(id, u),
            None => self.upstreams.remove(&id),
        };
        let now = new.and_then(|t| t.snat_here(id));
        if self.snat.get(&id) != now.as_ref() {
            self.snat_changed = true;
            match now {
                Some(h) => self.snat.insert(id, h),
                None => self.snat.remove(&id),
            };
        }
    }

    /// The upstream routers to resolve by ARP on the external port: (target,
    /// sender address, sender MAC), one per distinct target.
    pub fn upstreams(&self) -> Vec<(Ipv4Addr, Ipv4Addr, MacAddr)> {
        let mut v: Vec<_> = self.upstreams.values().copied().collect();
        v.sort();
        v.dedup_by_key(|u| u.0);
        v
    }

    /// Takes over the underlay neighbours `old` resolved.
    pub fn inherit_vtep_macs(&mut self, old: &Compiler) {
        for (ip, mac) in &old.vtep_macs {
            self.set_vtep_mac(*ip, *mac);
        }
    }

    /// The VTEPs of the other hosts to resolve by ARP (resolved or not): all
    /// but those the configuration gives (static, never asked for or replaced).
    pub fn vteps(&self) -> Vec<Ipv4Addr> {
        self.hosts
            .iter()
            .map(|h| h.vtep)
            .filter(|v| !self.node.vtep_macs.iter().any(|(s, _)| s == v))
            .collect()
    }

    /// The VTEPs of the other hosts that have no MAC yet.
    pub fn unresolved_vteps(&self) -> Vec<Ipv4Addr> {
        self.hosts
            .iter()
            .map(|h| h.vtep)
            .filter(|v| !self.vtep_macs.contains_key(v))
            .collect()
    }

    /// The next snapshot after a committed transaction that touched `applied`.
    pub fn update(&mut self, model: &Model, applied: &[Applied]) -> Arc<Snapshot> {
        self.apply(model, applied, false);
        self.current.clone()
    }

    fn apply(&mut self, model: &Model, applied: &[Applied], fresh: bool) {
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        // Routers whose floating IPs alone changed.
        let mut fip_dirty: BTreeSet<String> = BTreeSet::new();
        let mut dirty_nets: BTreeSet<String> = BTreeSet::new();
        let mut hosts_changed = fresh;
        let mut nets_changed = fresh;
        let mut local_changed = fresh;
        for a in applied {
            match a.kind {
                Kind::Router => {
                    dirty.insert(a.name.clone());
                }
                Kind::Network => {
                    nets_changed = true;
                    dirty_nets.insert(a.name.clone());
                }
                Kind::Host => hosts_changed = true,
                Kind::Port => {
                    if let Some(old) = self.reindex_port(model, &a.name) {
                        dirty_nets.insert(old);
                    }
                    let p = model.ports.get(&a.name);
                    if let Some(p) = p {
                        dirty_nets.insert(p.network.clone());
                    }
                    let mut ids: BTreeSet<usize> =
                        self.by_port.get(&a.name).cloned().unwrap_or_default();
                    if let Some(p) = p {
                        for f in &p.fixed_ips {
                            ids.extend(self.by_subnet.get(&f.subnet).into_iter().flatten());
                        }
                    }
                    dirty.extend(ids.iter().map(|&i| self.names[i].clone()));
                    // Whether this node's slot for it changed is decided below,
                    // once the network indexes are known.
                    local_changed |= self.local.contains_key(&a.name)
                        || p.is_some_and(|p| p.host.as_deref() == Some(self.node.node.as_str()));
                }
                Kind::FloatingIp => {
                    let Ok(a) = a.name.parse::<Ipv4Addr>() else {
                        continue;
                    };
                    if let Some(old) = self.fip_router.remove(&a) {
                        if let Some(set) = self.fips_by_router.get_mut(&old) {
                            set.remove(&a);
                            if set.is_empty() {
                                self.fips_by_router.remove(&old);
                            }
                        }
                        fip_dirty.insert(old);
                    }
                    if let Some(r) = model.floating_ips.get(&a).and_then(|f| f.router.clone()) {
                        self.fips_by_router.entry(r.clone()).or_default().insert(a);
                        self.fip_router.insert(a, r.clone());
                        fip_dirty.insert(r);
                    }
                }
                // A subnet in use cannot be deleted or changed.
                Kind::Subnet => {}
            }
        }
        if nets_changed {
            for name in model.networks.keys() {
                self.net_id(name);
            }
        }
        if hosts_changed {
            let fip_gw = model
                .hosts
                .get(&self.node.node)
                .and_then(|h| h.fip_gateway.as_ref())
                .map(|g| (g.ip, g.mac));
            if fip_gw != self.fip_gw {
                self.fip_gw = fip_gw;
                // The address the upstream routers are asked from.
                dirty.extend(model.routers.keys().cloned());
            }
            let (hosts, ids) = hosts_of(model, &self.node.node);
            if hosts != self.hosts || fresh {
                self.hosts = hosts;
                self.host_ids = ids;
                // Every neighbour and FDB entry may point at another host index.
                dirty.extend(model.routers.keys().cloned());
                dirty_nets.extend(model.networks.keys().cloned());
            }
        }
        let mut routers = self.current.routers.clone();
        for name in &dirty {
            let id = self.router_id(name);
            let old = routers.get_arc(id).cloned();
            if let Some(old) = &old {
                dirty_nets.extend(old.interfaces.iter().map(|i| i.network.clone()));
                self.unindex(id, old);
            }
            let mut new = None;
            if let Some(r) = model.routers.get(name).filter(|r| r.admin_state_up) {
                let cx = Ctx {
                    model,
                    node: &self.node,
                    host_ids: &self.host_ids,
                    net_ids: &self.net_ids,
                };
                let t = Arc::new(RouterTables::compile(
                    &cx,
                    r,
                    &self.ports_by_subnet,
                    self.fips_by_router.get(name),
                ));
                dirty_nets.extend(t.interfaces.iter().map(|i| i.network.clone()));
                self.index(id, &t);
                new = Some(t);
            }
            self.ext.update(
                id as u32,
                old.as_deref(),
                new.as_deref(),
                self.node.has_external(),
            );
            self.snat_routers(id as u32, new.as_deref());
            // One copy of the router's chunk per change.
            if old.is_some() || new.is_some() {
                routers.set(id, new);
            }
        }
        for name in fip_dirty.difference(&dirty) {
            let Some(&id) = self.ids.get(name) else {
                continue;
            };
            let Some(old) = routers.get(id) else {
                continue; // disabled or gone: nothing served
            };
            let cx = Ctx {
                model,
                node: &self.node,
                host_ids: &self.host_ids,
                net_ids: &self.net_ids,
            };
            let fips = RouterTables::fip_map(&cx, old.distributed, self.fips_by_router.get(name));
            let t = RouterTables {
                floating: RouterTables::floating_of(&fips),
                fips,
                ..old.clone()
            };
            self.ext
                .update(id as u32, Some(old), Some(&t), self.node.has_external());
            self.snat_routers(id as u32, Some(&t));
            routers.set(id, Some(Arc::new(t)));
        }
        let mut nets = self.current.nets.clone();
        let cx = Ctx {
            model,
            node: &self.node,
            host_ids: &self.host_ids,
            net_ids: &self.net_ids,
        };
        for name in &dirty_nets {
            let Some(&id) = self.net_ids.get(name) else {
                continue;
            };
            let t = NetTables::compile(
                &cx,
                name,
                self.ports_by_net.get(name),
                &routers,
                self.routers_by_net.get(name),
            )
            .map(|mut t| {
                if let Some(h) = self.holders.get(name) {
                    t.holders = h.clone();
                }
                Arc::new(t)
            });
            nets.set(id as usize, t);
        }
        if local_changed || nets_changed {
            let local: HashMap<String, VmPort> = model
                .ports
                .values()
                .filter(|p| p.host.as_deref() == Some(self.node.node.as_str()))
                .filter_map(|p| cx.vm_port(p).map(|v| (p.name.clone(), v)))
                .collect();
            local_changed = fresh || local != self.local;
            self.local = local;
        }
        let cur = &self.current;
        let node = if hosts_changed || nets_changed {
            let me = model.hosts.get(&self.node.node);
            let mut by_vni = IntMap::default();
            let mut by_gre_key = IntMap::default();
            let mut by_vlan = IntMap::default();
            for n in model.networks.values() {
                let (Some(seg), Some(&id)) = (n.segment, self.net_ids.get(&n.name)) else {
                    continue;
                };
                match n.network_type {
                    NetworkType::Vxlan => by_vni.insert(seg, id),
                    NetworkType::Gre => by_gre_key.insert(seg, id),
                    NetworkType::Vlan => by_vlan.insert(seg, id),
                    NetworkType::Flat => None,
                };
            }
            let dvr_macs: Vec<(MacAddr, u16)> = self
                .hosts
                .iter()
                .enumerate()
                .filter_map(|(i, h)| Some((h.dvr_mac?, i as u16)))
                .collect();
            let mut node = NodeTables {
                name: self.node.node.clone(),
                vtep: me.and_then(|h| h.vtep).or(self.node.vtep),
                dvr_mac: me.and_then(|h| h.dvr_mac).or(self.node.dvr_mac),
                underlay: underlay_of(&self.node),
                hosts: self.hosts.clone(),
                dvr_macs: MacTable::new(&dvr_macs),
                by_vtep: self
                    .hosts
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (h.vtep, i as u16))
                    .collect(),
                by_vni,
                by_gre_key,
                by_vlan,
                vtep_macs: self.vtep_macs.clone(),
                outer: Vec::new(),
                external: self.node.external(),
                fip_gw: me
                    .and_then(|h| h.fip_gateway.as_ref())
                    .map(|g| (g.ip, g.mac)),
            };
            node.outer = node.outer_headers();
            Arc::new(node)
        } else {
            cur.node.clone()
        };
        let ports = if local_changed {
            slots(&self.node, &self.local)
        } else {
            cur.ports.clone()
        };
        let snat_here = if std::mem::take(&mut self.snat_changed) {
            Arc::new(self.snat.values().cloned().collect())
        } else {
            cur.snat_here.clone()
        };
        self.current = Arc::new(Snapshot {
            generation: model.generation,
            epoch: next_epoch(),
            node,
            ports,
            nets,
            static_fdb: cur.static_fdb.clone(),
            routers,
            ext: self.ext.clone(),
            snat_here,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Change, NetworkType};

    /// A learned VIP holder is published, stays when its network is
    /// recompiled and when a new compiler takes over; a MAC no pair gives
    /// the address is refused; a network remembers at most MAX_HOLDERS.
    #[test]
    fn vip_holders_survive_recompiles_and_are_bounded() {
        use crate::testkit;
        use serde_json::json;
        let mut m = testkit::model();
        let mut c = Compiler::new(&m, testkit::node());
        let blue = c.net_ids["blue"];
        let ip: IpAddr = "10.1.99.7".parse().unwrap();
        let pair = MacAddr(testkit::PAIR_MAC);
        let holders = |s: &Snapshot| s.nets.get(blue as usize).unwrap().holders.clone();
        assert!(c
            .set_vip_holder(blue, ip, MacAddr(testkit::A_MAC))
            .is_none());
        assert!(c
            .set_vip_holder(blue, "10.1.98.7".parse().unwrap(), pair)
            .is_none());
        let s = c.set_vip_holder(blue, ip, pair).expect("published");
        assert_eq!(
            s.nets.get(blue as usize).unwrap().vip_holder(ip),
            Some((pair, Dest::Local(testkit::VM_A)))
        );
        let applied = m
            .apply(&testkit::changes(json!([testkit::port(
                "a3",
                "blue",
                [0xfa, 0x16, 0x3e, 0, 0, 0xa3],
                "cn2",
                None,
                &[("blue4", "10.1.0.30")]
            )])))
            .unwrap();
        let s = c.update(&m, &applied);
        assert_eq!(holders(&s).get(&ip), Some(&pair), "kept on a recompile");
        let mut fresh = Compiler::new(&m, testkit::node());
        fresh.inherit_holders(&c);
        assert_eq!(holders(fresh.current()).get(&ip), Some(&pair));

        m.apply(&testkit::changes(json!([
            {"op": "port_set", "name": "a", "allowed_address_pairs": [{"ip": "10.200.0.0/16"}]}
        ])))
        .unwrap();
        let mut c = Compiler::new(&m, testkit::node());
        let a = MacAddr(testkit::A_MAC);
        for i in 0..MAX_HOLDERS as u32 + 10 {
            let ip = IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i));
            let _ = c.set_vip_holder(blue, ip, a);
        }
        assert_eq!(holders(c.current()).len(), MAX_HOLDERS);
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    fn node() -> NodePorts {
        let dp = |name: &str, role| DpPort {
            name: name.into(),
            role,
            mac: MacAddr::default(),
        };
        NodePorts {
            node: "cn1".into(),
            ports: vec![
                dp("vm-a", PortRole::Vm),
                dp("vm-b", PortRole::Vm),
                dp("vm-c", PortRole::Vm),
                dp("up", PortRole::Underlay),
            ],
            static_fdb: vec![(mac("fa:16:3e:00:00:99"), 2)],
            vtep: None,
            dvr_mac: None,
            vtep_macs: vec![],
        }
    }

    /// The FDB of the network dataplane port `p`'s model port is on.
    fn fdb_of(s: &Snapshot, p: u16) -> Option<&MacTable<Dest>> {
        match &s.ports[p as usize] {
            Slot::Vm(Some(v)) => s.net(v.net).map(|n| &n.fdb),
            _ => None,
        }
    }

    fn port(name: &str, net: &str, m: &str, host: &str, binding: &str) -> Change {
        Change::PortCreate {
            name: name.into(),
            network: net.into(),
            mac: Some(mac(m)),
            fixed_ips: vec![],
            host: Some(host.into()),
            port_security: None,
            allowed_address_pairs: vec![],
            binding: Some(binding.into()),
        }
    }

    #[test]
    fn local_ports_switch_within_their_network_only() {
        let mut m = Model::default();
        let mut changes = vec![
            Change::HostSet {
                name: "cn1".into(),
                agent_mode: crate::config::AgentMode::Dvr,
                vtep: None,
                dvr_mac: None,
                fip_gateway: None,
            },
            Change::HostSet {
                name: "cn2".into(),
                agent_mode: crate::config::AgentMode::Dvr,
                vtep: None,
                dvr_mac: None,
                fip_gateway: None,
            },
        ];
        for (n, seg) in [("net1", 1), ("net2", 2)] {
            changes.push(Change::NetworkCreate {
                name: n.into(),
                network_type: NetworkType::Vxlan,
                segment: Some(seg),
                mtu: None,
                external: false,
            });
        }
        changes.push(port("pa", "net1", "fa:16:3e:00:00:0a", "cn1", "vm-a"));
        changes.push(port("pb", "net1", "fa:16:3e:00:00:0b", "cn1", "vm-b"));
        changes.push(port("pc", "net2", "fa:16:3e:00:00:0c", "cn1", "vm-c"));
        changes.push(port("pd", "net1", "fa:16:3e:00:00:0d", "cn2", "vm-a")); // another host
        changes.push(port("pe", "net1", "fa:16:3e:00:00:0e", "cn1", "up")); // not a VM port
        m.apply(&changes).unwrap();
        let s = Snapshot::compile(&m, &node());
        assert_eq!(s.generation, 1);
        let k = |x: &str| mac(x).key();
        let f0 = fdb_of(&s, 0).unwrap();
        assert_eq!(f0.get(k("fa:16:3e:00:00:0b")), Some(Dest::Local(1)));
        assert_eq!(
            fdb_of(&s, 1).unwrap().get(k("fa:16:3e:00:00:0a")),
            Some(Dest::Local(0))
        );
        assert_eq!(f0.get(k("fa:16:3e:00:00:0c")), None, "other network");
        assert_eq!(
            fdb_of(&s, 2).unwrap().get(k("fa:16:3e:00:00:0a")),
            None,
            "other network"
        );
        // cn2 has no VTEP: its port is nowhere this node can reach.
        assert_eq!(f0.get(k("fa:16:3e:00:00:0d")), None, "unreachable port");
        assert_eq!(
            f0.get(k("fa:16:3e:00:00:0e")),
            None,
            "bound to a port that is not a VM port"
        );
        assert!(matches!(s.ports[3], Slot::Underlay));
        assert_eq!(s.static_fdb().get(k("fa:16:3e:00:00:99")), Some(2));
        // With a VTEP, cn2's port is behind it.
        let mut m2 = m.clone();
        m2.apply(&[Change::HostSet {
            name: "cn2".into(),
            agent_mode: crate::config::AgentMode::Dvr,
            vtep: Some("192.0.2.2".parse().unwrap()),
            dvr_mac: Some(mac("fa:16:3f:00:00:02")),
            fip_gateway: None,
        }])
        .unwrap();
        let s = Snapshot::compile(&m2, &node());
        assert_eq!(
            fdb_of(&s, 0).unwrap().get(k("fa:16:3e:00:00:0d")),
            Some(Dest::Remote(0))
        );
        assert_eq!(s.node.hosts[0].name, "cn2");
        assert_eq!(s.node.dvr_macs.get(k("fa:16:3f:00:00:02")), Some(0));
        assert_eq!(s.node.by_vni.len(), 2);
    }

    #[test]
    fn config_snapshot_uses_the_static_table() {
        let s = Snapshot::from_config(&node());
        assert_eq!(s.generation, 0);
        assert!(matches!(s.ports[0], Slot::Vm(None)));
        assert_eq!(s.static_fdb().get(mac("fa:16:3e:00:00:99").key()), Some(2));
    }

    fn same_router(a: Option<&RouterTables>, b: Option<&RouterTables>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.name == b.name
                    && a.interfaces == b.interfaces
                    && a.fib.routes() == b.fib.routes()
                    && a.neighbors == b.neighbors
                    && a.distributed == b.distributed
                    && a.fips == b.fips
                    && a.snat == b.snat
            }
            _ => false,
        }
    }

    /// Incremental updates give the same tables as compiling from scratch, over
    /// a long pseudo-random sequence of transactions (refused ones included).
    #[test]
    fn incremental_equals_full_compile() {
        let mut x: u64 = 0x9e37_79b9;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut m = Model::default();
        let mut setup = vec![Change::HostSet {
            name: "cn1".into(),
            agent_mode: crate::config::AgentMode::Dvr,
            vtep: None,
            dvr_mac: None,
            fip_gateway: None,
        }];
        for n in 0..4 {
            setup.push(Change::NetworkCreate {
                name: format!("net{n}"),
                network_type: NetworkType::Vxlan,
                segment: Some(100 + n),
                mtu: None,
                external: false,
            });
            setup.push(Change::SubnetCreate {
                name: format!("s{n}"),
                network: format!("net{n}"),
                cidr: format!("10.{n}.0.0/24").parse().unwrap(),
                gateway_ip: None,
            });
        }
        m.apply(&setup).unwrap();
        let mut c = Compiler::new(&m, node());
        let mut committed = 0;
        for step in 0..3000 {
            let r = format!("r{}", rnd(5));
            let s = format!("s{}", rnd(4));
            let p = format!("p{}", rnd(12));
            let change = match rnd(9) {
                0 => Change::RouterCreate {
                    name: r,
                    distributed: None,
                    ha: false,
                    admin_state_up: true,
                },
                1 => Change::RouterAddSubnet {
                    router: r,
                    subnet: s,
                },
                2 => Change::RouterRemoveSubnet {
                    router: r,
                    subnet: s,
                },
                3 => Change::RouterSet {
                    name: r,
                    admin_state_up: Some(rnd(2) == 0),
                    distributed: None,
                    ha: None,
                    external_gateway: None,
                    routes: vec![],
                    snat_host: None,
                },
                4 => Change::RouterSet {
                    name: r,
                    admin_state_up: None,
                    distributed: None,
                    ha: None,
                    external_gateway: None,
                    routes: vec![crate::model::Route {
                        destination: format!("172.{}.0.0/16", rnd(8)).parse().unwrap(),
                        nexthop: format!("10.{}.0.{}", rnd(4), 2 + rnd(20)).parse().unwrap(),
                    }],
                    snat_host: None,
                },
                5 => Change::RouterDelete { name: r },
                6 => Change::PortDelete { name: p },
                7 => Change::RouterUnset {
                    name: r,
                    external_gateway: false,
                    routes: vec![crate::model::Route {
                        destination: format!("172.{}.0.0/16", rnd(8)).parse().unwrap(),
                        nexthop: format!("10.{}.0.{}", rnd(4), 2 + rnd(20)).parse().unwrap(),
                    }],
                },
                _ => {
                    let n = rnd(4);
                    Change::PortCreate {
                        name: p,
                        network: format!("net{n}"),
                        mac: None,
                        fixed_ips: vec![],
                        host: Some("cn1".into()),
                        port_security: None,
                        allowed_address_pairs: vec![],
                        binding: Some(["vm-a", "vm-b", "vm-c"][rnd(3) as usize].into()),
                    }
                }
            };
            let Ok(applied) = m.apply(std::slice::from_ref(&change)) else {
                continue;
            };
            committed += 1;
            let inc = c.update(&m, &applied);
            let full = Snapshot::compile(&m, &node());
            assert_eq!(inc.generation, full.generation);
            for (i, name) in m.routers.keys().enumerate() {
                let a = inc.router(&c, name);
                let b = full.routers.get(i);
                assert!(
                    same_router(a, b),
                    "step {step}, {change:?}: router {name} differs"
                );
            }
            let full_c = Compiler::new(&m, node());
            for net in m.networks.keys() {
                let a = inc.network(&c, net).unwrap();
                let b = full.network(&full_c, net).unwrap();
                // Router indexes differ between compilers: compare by name.
                let named = |c: &Compiler, d: Dest| match d {
                    Dest::Router { router, iface } => {
                        format!("{}/{iface}", c.router_names()[router as usize])
                    }
                    d => format!("{d:?}"),
                };
                let mut fa: Vec<_> = a.fdb.iter().map(|(k, d)| (k, named(&c, d))).collect();
                let mut fb: Vec<_> = b.fdb.iter().map(|(k, d)| (k, named(&full_c, d))).collect();
                fa.sort_by_key(|e| e.0);
                fb.sort_by_key(|e| e.0);
                assert_eq!(fa, fb, "step {step}, {change:?}: fdb of {net}");
                assert_eq!(a.arp, b.arp, "step {step}: arp of {net}");
                assert_eq!(
                    a.gateways.len(),
                    b.gateways.len(),
                    "step {step}: gateways of {net}"
                );
                assert_eq!(
                    a.local_ports, b.local_ports,
                    "step {step}: local ports of {net}"
                );
            }
            for p in 0..3 {
                match (&inc.ports[p], &full.ports[p]) {
                    (Slot::Vm(a), Slot::Vm(b)) => {
                        assert_eq!(a.as_deref(), b.as_deref(), "step {step}: slot {p}")
                    }
                    _ => panic!("slot kinds differ"),
                }
            }
        }
        assert!(
            committed > 500,
            "the sequence exercises the compiler ({committed} committed)"
        );
    }
}
