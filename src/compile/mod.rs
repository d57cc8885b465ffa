//! Compiling the model into the tables the workers read ([`crate::tables`]):
//! the [`Compiler`] keeps the published snapshot up to date, one phase per
//! method of [`Compiler::apply`]: what a transaction touched, the hosts,
//! the routers, their floating IPs, the networks, this node's ports, the
//! node's tables.
//!
//! Files: `context` (the model seen from this node), `index` (the
//! compiler's indexes of routers, networks and ports), `router`, `network`,
//! `node` (compiling each), `learned` (what the control thread learns and
//! publishes: VTEP MACs, VIP holders).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::mac::MacAddr;
use crate::model::{Applied, Kind, Model};
use crate::tables::{
    next_epoch, Chunked, ExtMap, HostEntry, IntMap, IpMap, NetTables, NodePorts, RouterTables,
    Snapshot, SnatHere, VmPort,
};

mod context;
mod index;
mod learned;
mod network;
mod node;
mod router;
#[cfg(test)]
mod tests;

use context::Ctx;
pub use network::{
    MAX_RA_PREFIXES, RA_CUR_HOP_LIMIT, RA_MAX_RDNSS, RA_PREFERRED_LIFETIME, RA_RDNSS_LIFETIME,
    RA_ROUTER_LIFETIME, RA_VALID_LIFETIME,
};
use node::{hosts_of, slots};

/// Port names by the subnets of their fixed IPs (or by network).
pub type PortsBy = HashMap<String, BTreeSet<String>>;

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
    /// Resolved IPv6 neighbours on the external network.
    nd_macs: IntMap<Ipv6Addr, MacAddr>,
    /// Per router: its IPv6 upstream router on the external network, and the
    /// MAC to ask for it from (see [`Compiler::upstreams6`]).
    upstreams6: BTreeMap<u32, (Ipv6Addr, MacAddr)>,
    /// The external addresses of every router (published in the snapshot).
    ext: ExtMap,
    /// The routers whose SNAT runs here, by index.
    snat: BTreeMap<u32, SnatHere>,
    snat_changed: bool,
    /// The node's dataplane ports changed: the port slots are built again.
    slots_stale: bool,
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

/// What a transaction touched, as the phases of [`Compiler::apply`] see it.
#[derive(Debug, Default)]
struct Dirty {
    /// Routers to recompile.
    routers: BTreeSet<String>,
    /// Routers whose floating IPs alone changed.
    fips: BTreeSet<String>,
    /// Networks to recompile.
    nets: BTreeSet<String>,
    /// The hosts changed (or a first compile).
    hosts: bool,
    /// A network was added, changed or removed (or a first compile).
    networks: bool,
    /// This node's bound ports may have changed (or a first compile).
    local: bool,
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
            nd_macs: IntMap::default(),
            upstreams6: BTreeMap::new(),
            ext: ExtMap::default(),
            snat: BTreeMap::new(),
            snat_changed: false,
            slots_stale: false,
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

    /// The upstream routers to resolve by ARP on the external port: (target,
    /// sender address, sender MAC), one per distinct target.
    pub fn upstreams(&self) -> Vec<(Ipv4Addr, Ipv4Addr, MacAddr)> {
        let mut v: Vec<_> = self.upstreams.values().copied().collect();
        v.sort();
        v.dedup_by_key(|u| u.0);
        v
    }

    /// The IPv6 upstream routers to resolve by neighbour discovery on the
    /// external port: (target, sender MAC; the sender's address is that
    /// MAC's link-local one), one per distinct target.
    pub fn upstreams6(&self) -> Vec<(Ipv6Addr, MacAddr)> {
        let mut v: Vec<_> = self.upstreams6.values().copied().collect();
        v.sort();
        v.dedup_by_key(|u| u.0);
        v
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

    /// This node's dataplane ports changed (interface `name` added or deleted
    /// while the node runs): the next snapshot, with the port slots built
    /// again and the model ports bound to `name` here compiled again (their
    /// networks, and the routers that hold their addresses).
    pub fn set_ports(&mut self, model: &Model, node: NodePorts, name: &str) -> Arc<Snapshot> {
        self.node = node;
        let me = self.node.node.as_str();
        let applied: Vec<Applied> = model
            .ports
            .values()
            .filter(|p| p.host.as_deref() == Some(me) && p.binding.as_deref() == Some(name))
            .map(|p| Applied {
                kind: Kind::Port,
                name: p.name.clone(),
            })
            .collect();
        self.slots_stale = true;
        self.apply(model, &applied, false);
        self.current.clone()
    }

    /// Compiles what `applied` touched and publishes the next snapshot
    /// (`fresh`: everything, the compiler's first snapshot), phase by phase.
    fn apply(&mut self, model: &Model, applied: &[Applied], fresh: bool) {
        let mut d = Dirty {
            hosts: fresh,
            networks: fresh,
            local: fresh,
            ..Dirty::default()
        };
        for a in applied {
            self.note(model, a, &mut d);
        }
        if d.networks {
            for name in model.networks.keys() {
                self.net_id(name);
            }
        }
        if d.hosts {
            self.note_hosts(model, fresh, &mut d);
        }
        let mut routers = self.current.routers.clone();
        self.compile_routers(model, &mut d, &mut routers);
        self.compile_fips(model, &d, &mut routers);
        let nets = self.compile_networks(model, &d.nets, &routers);
        let local_changed = (d.local || d.networks) && self.local_ports(model, fresh);
        self.publish(model, &d, local_changed, routers, nets);
    }

    /// The model as seen from this node, for compiling a router or network.
    fn cx<'a>(&'a self, model: &'a Model) -> Ctx<'a> {
        Ctx {
            model,
            node: &self.node,
            host_ids: &self.host_ids,
            net_ids: &self.net_ids,
        }
    }

    /// What entry `a` of a transaction makes dirty.
    fn note(&mut self, model: &Model, a: &Applied, d: &mut Dirty) {
        match a.kind {
            Kind::Router => {
                d.routers.insert(a.name.clone());
            }
            Kind::Network => {
                d.networks = true;
                d.nets.insert(a.name.clone());
            }
            Kind::Host => d.hosts = true,
            Kind::Port => self.note_port(model, &a.name, d),
            Kind::FloatingIp => self.note_fip(model, &a.name, d),
            // A subnet in use cannot be deleted or its range changed; its
            // DHCP settings are its network's ([`NetTables::dhcp4`]).
            Kind::Subnet => {
                let net = match model.subnets.get(&a.name) {
                    Some(s) => Some(s.network.clone()),
                    // Deleted: the network whose DHCP still names it.
                    None => (0..self.current.nets.len())
                        .filter_map(|i| self.current.nets.get(i))
                        .find(|n| {
                            n.dhcp4.iter().any(|d| d.subnet == a.name)
                                || n.dhcp6.iter().any(|d| d.subnet == a.name)
                                || n.ra6.as_ref().is_some_and(|r| r.subnets.contains(&a.name))
                        })
                        .map(|n| n.name.clone()),
                };
                d.nets.extend(net);
            }
        }
    }

    /// A changed port: its old and new networks, and the routers whose
    /// neighbour tables hold it or should now.
    fn note_port(&mut self, model: &Model, name: &str, d: &mut Dirty) {
        if let Some(old) = self.reindex_port(model, name) {
            d.nets.insert(old);
        }
        let p = model.ports.get(name);
        if let Some(p) = p {
            d.nets.insert(p.network.clone());
        }
        let mut ids: BTreeSet<usize> = self.by_port.get(name).cloned().unwrap_or_default();
        if let Some(p) = p {
            for f in &p.fixed_ips {
                ids.extend(self.by_subnet.get(&f.subnet).into_iter().flatten());
            }
        }
        d.routers.extend(ids.iter().map(|&i| self.names[i].clone()));
        // Whether this node's slot for it changed is decided later, once
        // the network indexes are known.
        d.local |= self.local.contains_key(name)
            || p.is_some_and(|p| p.host.as_deref() == Some(self.node.node.as_str()));
    }

    /// A changed floating IP: the router that served it and the one that
    /// serves it now.
    fn note_fip(&mut self, model: &Model, name: &str, d: &mut Dirty) {
        let Ok(a) = name.parse::<Ipv4Addr>() else {
            return;
        };
        if let Some(old) = self.fip_router.remove(&a) {
            if let Some(set) = self.fips_by_router.get_mut(&old) {
                set.remove(&a);
                if set.is_empty() {
                    self.fips_by_router.remove(&old);
                }
            }
            d.fips.insert(old);
        }
        if let Some(r) = model.floating_ips.get(&a).and_then(|f| f.router.clone()) {
            self.fips_by_router.entry(r.clone()).or_default().insert(a);
            self.fip_router.insert(a, r.clone());
            d.fips.insert(r);
        }
    }

    /// The hosts changed: this host's FIP gateway port and the other hosts'
    /// indexes, and what depends on them.
    fn note_hosts(&mut self, model: &Model, fresh: bool, d: &mut Dirty) {
        let fip_gw = model
            .hosts
            .get(&self.node.node)
            .and_then(|h| h.fip_gateway.as_ref())
            .map(|g| (g.ip, g.mac));
        if fip_gw != self.fip_gw {
            self.fip_gw = fip_gw;
            // The address the upstream routers are asked from.
            d.routers.extend(model.routers.keys().cloned());
        }
        let (hosts, ids) = hosts_of(model, &self.node.node);
        if hosts != self.hosts || fresh {
            self.hosts = hosts;
            self.host_ids = ids;
            // Every neighbour and FDB entry may point at another host index.
            d.routers.extend(model.routers.keys().cloned());
            d.nets.extend(model.networks.keys().cloned());
        }
    }

    /// Recompiles the dirty routers into `routers` (a disabled or deleted
    /// one: none) with their indexes, external addresses and SNAT; the
    /// networks they were or are on become dirty.
    fn compile_routers(
        &mut self,
        model: &Model,
        d: &mut Dirty,
        routers: &mut Chunked<RouterTables>,
    ) {
        for name in &d.routers {
            let id = self.router_id(name);
            let old = routers.get_arc(id).cloned();
            if let Some(old) = &old {
                d.nets
                    .extend(old.interfaces.iter().map(|i| i.network.clone()));
                self.unindex(id, old);
            }
            let mut new = None;
            if let Some(r) = model.routers.get(name).filter(|r| r.admin_state_up) {
                let t = Arc::new(RouterTables::compile(
                    &self.cx(model),
                    r,
                    &self.ports_by_subnet,
                    self.fips_by_router.get(name),
                ));
                d.nets
                    .extend(t.interfaces.iter().map(|i| i.network.clone()));
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
    }

    /// The routers whose floating IPs alone changed (not recompiled whole):
    /// their floating IP tables replaced.
    fn compile_fips(&mut self, model: &Model, d: &Dirty, routers: &mut Chunked<RouterTables>) {
        for name in d.fips.difference(&d.routers) {
            let Some(&id) = self.ids.get(name) else {
                continue;
            };
            let Some(old) = routers.get(id) else {
                continue; // disabled or gone: nothing served
            };
            let fips = RouterTables::fip_map(
                &self.cx(model),
                old.distributed,
                self.fips_by_router.get(name),
            );
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
    }

    /// The networks `names` recompiled (with their learned VIP holders), the
    /// others shared.
    fn compile_networks(
        &self,
        model: &Model,
        names: &BTreeSet<String>,
        routers: &Chunked<RouterTables>,
    ) -> Chunked<NetTables> {
        let mut nets = self.current.nets.clone();
        let cx = self.cx(model);
        for name in names {
            let Some(&id) = self.net_ids.get(name) else {
                continue;
            };
            let t = NetTables::compile(
                &cx,
                name,
                self.ports_by_net.get(name),
                routers,
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
        nets
    }

    /// This node's bound VM ports, again; whether they changed (always, when
    /// `fresh`).
    fn local_ports(&mut self, model: &Model, fresh: bool) -> bool {
        let cx = self.cx(model);
        let local: HashMap<String, VmPort> = model
            .ports
            .values()
            .filter(|p| p.host.as_deref() == Some(self.node.node.as_str()))
            .filter_map(|p| cx.vm_port(p).map(|v| (p.name.clone(), v)))
            .collect();
        let changed = fresh || local != self.local;
        self.local = local;
        changed
    }

    /// Publishes the next snapshot: `routers` and `nets`, the node's tables
    /// and port slots when they changed, everything else shared.
    fn publish(
        &mut self,
        model: &Model,
        d: &Dirty,
        local_changed: bool,
        routers: Chunked<RouterTables>,
        nets: Chunked<NetTables>,
    ) {
        let node = if d.hosts || d.networks {
            Arc::new(self.node_tables(model))
        } else {
            self.current.node.clone()
        };
        let cur = &self.current;
        let ports = if std::mem::take(&mut self.slots_stale) || local_changed {
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

impl Snapshot {
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
}
