//! The dataplane's tables as one immutable snapshot, compiled from the model for
//! this node and published RCU style: the control thread swaps in a new snapshot
//! (`arc_swap::ArcSwap`), a worker loads the current one once per burst, and an old
//! snapshot is freed when the last worker that loaded it has finished its burst.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::fib::{Fib, NextHop};
use crate::l2::MacTable;
use crate::mac::MacAddr;
use crate::model::{Applied, Kind, Model, Router};

/// Where a snapshot is published and read.
pub type Tables = arc_swap::ArcSwap<Snapshot>;

const NO_NETWORK: u32 = u32::MAX;

/// What this node's dataplane needs to know, compiled.
#[derive(Debug)]
pub struct Snapshot {
    /// The model generation it was compiled from (0: configuration only).
    pub generation: u64,
    /// Per dataplane port: the index in `fdbs` of the network of the model port
    /// bound to it, or NO_NETWORK.
    port_net: Box<[u32]>,
    /// Per network that has ports here: its MAC table (local ports only, until the
    /// overlay of issue 4).
    fdbs: Box<[Arc<MacTable>]>,
    /// The configuration's static table, for dataplane ports no model port is bound to.
    static_fdb: Arc<MacTable>,
    /// Per router (index from the [`Compiler`]): its tables, or None when the
    /// router is disabled or deleted (a disabled router routes nothing).
    pub routers: Box<[Option<Arc<RouterTables>>]>,
}

/// Port names by the subnets of their fixed IPs.
pub type PortsBySubnet = HashMap<String, BTreeSet<String>>;

fn ports_by_subnet(model: &Model) -> PortsBySubnet {
    let mut m = PortsBySubnet::new();
    for p in model.ports.values() {
        for f in &p.fixed_ips {
            m.entry(f.subnet.clone())
                .or_default()
                .insert(p.name.clone());
        }
    }
    m
}

/// A port served by this node: its network, MAC and dataplane port index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalPort {
    network: String,
    mac: MacAddr,
    index: u16,
}

/// The local ports of `model` on `node`, by port name.
fn local_ports(model: &Model, node: &NodePorts) -> HashMap<String, LocalPort> {
    model
        .ports
        .values()
        .filter_map(|p| local_port(p, node).map(|l| (p.name.clone(), l)))
        .collect()
}

/// The port as served here, if its host is this node and its binding names one
/// of this node's VM ports.
fn local_port(p: &crate::model::Port, node: &NodePorts) -> Option<LocalPort> {
    if p.host.as_deref() != Some(node.node.as_str()) {
        return None;
    }
    let b = p.binding.as_deref()?;
    let index = node.ports.iter().position(|(n, vm)| *vm && n == b)? as u16;
    Some(LocalPort {
        network: p.network.clone(),
        mac: p.mac,
        index,
    })
}

/// A router interface as the dataplane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub subnet: String,
    pub network: String,
    pub cidr: IpNet,
    pub ip: IpAddr,
    pub mac: MacAddr,
}

/// One router's compiled tables.
#[derive(Debug, Clone)]
pub struct RouterTables {
    pub name: String,
    pub distributed: bool,
    pub interfaces: Vec<Iface>,
    /// Connected subnets, extra routes, the default route through the gateway.
    pub fib: Fib,
    /// Addresses on the router's connected subnets and their MACs (from the
    /// model's ports: no ARP needed), as `(IP, MAC, port name)`.
    pub neighbors: HashMap<IpAddr, (MacAddr, String)>,
}

impl RouterTables {
    /// Compiles one router from the model; `ports_by_subnet` indexes the
    /// model's ports by the subnets of their fixed IPs.
    pub fn compile(model: &Model, r: &Router, ports_by_subnet: &PortsBySubnet) -> RouterTables {
        let mut fib = Fib::default();
        let mut interfaces = Vec::new();
        for (i, itf) in r.interfaces.iter().enumerate() {
            if let Some(sn) = model.subnets.get(&itf.subnet) {
                fib.insert(sn.cidr, NextHop::Connected { iface: i as u16 });
                interfaces.push(Iface {
                    subnet: sn.name.clone(),
                    network: sn.network.clone(),
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
        let mut neighbors = HashMap::new();
        for i in &interfaces {
            for name in ports_by_subnet.get(&i.subnet).into_iter().flatten() {
                if let Some(p) = model.ports.get(name) {
                    for f in p.fixed_ips.iter().filter(|f| f.subnet == i.subnet) {
                        neighbors.insert(f.ip, (p.mac, p.name.clone()));
                    }
                }
            }
        }
        RouterTables {
            name: r.name.clone(),
            distributed: r.distributed,
            interfaces,
            fib,
            neighbors,
        }
    }

    /// The ports whose addresses this router's neighbour table holds.
    fn neighbor_ports(&self) -> impl Iterator<Item = &str> {
        self.neighbors.values().map(|(_, p)| p.as_str())
    }
}

/// The dataplane side of a node, as the compiler needs it.
#[derive(Debug, Clone)]
pub struct NodePorts {
    /// This node's name (model ports with `host` equal to it are local).
    pub node: String,
    /// Dataplane port names, in port index order, with whether they are VM ports.
    pub ports: Vec<(String, bool)>,
    /// The configuration's static FDB.
    pub static_fdb: Vec<(MacAddr, u16)>,
}

impl Snapshot {
    /// The snapshot of the configuration alone (no model).
    pub fn from_config(node: &NodePorts) -> Snapshot {
        Snapshot {
            generation: 0,
            port_net: vec![NO_NETWORK; node.ports.len()].into_boxed_slice(),
            fdbs: Box::new([]),
            static_fdb: Arc::new(MacTable::new(&node.static_fdb)),
            routers: Box::new([]),
        }
    }

    /// Compiles the model for `node` from scratch (routers in name order). A
    /// model port is served here when its host is this node and its binding names
    /// one of this node's VM ports.
    pub fn compile(model: &Model, node: &NodePorts) -> Snapshot {
        let mut s = Self::compile_l2(model.generation, &local_ports(model, node), node);
        let by_subnet = ports_by_subnet(model);
        s.routers = model
            .routers
            .values()
            .map(|r| {
                r.admin_state_up
                    .then(|| Arc::new(RouterTables::compile(model, r, &by_subnet)))
            })
            .collect();
        s
    }

    /// The L2 part of the snapshot (no routers) from this node's local ports.
    fn compile_l2(
        generation: u64,
        local: &HashMap<String, LocalPort>,
        node: &NodePorts,
    ) -> Snapshot {
        let mut port_net = vec![NO_NETWORK; node.ports.len()];
        let mut nets: HashMap<&str, u32> = HashMap::new();
        let mut entries: Vec<Vec<(MacAddr, u16)>> = Vec::new();
        // In name order, so that equal inputs give equal tables.
        let mut ports: Vec<(&String, &LocalPort)> = local.iter().collect();
        ports.sort_by(|a, b| a.0.cmp(b.0));
        for (_, l) in ports {
            let n = *nets.entry(l.network.as_str()).or_insert_with(|| {
                entries.push(Vec::new());
                (entries.len() - 1) as u32
            });
            entries[n as usize].push((l.mac, l.index));
            port_net[l.index as usize] = n;
        }
        Snapshot {
            generation,
            port_net: port_net.into_boxed_slice(),
            fdbs: entries.iter().map(|e| Arc::new(MacTable::new(e))).collect(),
            static_fdb: Arc::new(MacTable::new(&node.static_fdb)),
            routers: Box::new([]),
        }
    }

    /// The tables of router `name`, if it is enabled.
    pub fn router<'a>(&'a self, compiler: &Compiler, name: &str) -> Option<&'a RouterTables> {
        let id = *compiler.ids.get(name)?;
        self.routers.get(id)?.as_deref()
    }

    /// The MAC table that frames arriving on `in_port` are switched with.
    #[inline(always)]
    pub fn fdb_for(&self, in_port: u16) -> &MacTable {
        match self.port_net.get(in_port as usize) {
            Some(&n) if n != NO_NETWORK => &self.fdbs[n as usize],
            _ => &self.static_fdb,
        }
    }
}

/// Keeps the published snapshot up to date with the model, recompiling only what
/// a transaction touched: the routers it changed, the routers whose neighbour
/// tables hold (or should now hold) a changed port, and the L2 tables when ports
/// or hosts changed. Every other router's tables are shared with the previous
/// snapshot (`Arc`), so a change costs the size of what it touches plus one
/// pointer per router.
pub struct Compiler {
    node: NodePorts,
    /// Router name → index in `Snapshot::routers` (stable; deleted routers leave
    /// a hole that a new router of the same name reuses).
    ids: HashMap<String, usize>,
    /// Index → router name.
    names: Vec<String>,
    /// Subnet → routers with an interface on it.
    by_subnet: HashMap<String, BTreeSet<usize>>,
    /// Port → routers whose neighbour tables hold one of its addresses.
    by_port: HashMap<String, BTreeSet<usize>>,
    /// The model's ports by the subnets of their fixed IPs.
    ports_by_subnet: PortsBySubnet,
    /// Port → the subnets it is indexed under in `ports_by_subnet`.
    port_subnets: HashMap<String, Vec<String>>,
    /// This node's ports.
    local: HashMap<String, LocalPort>,
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
            by_subnet: HashMap::new(),
            by_port: HashMap::new(),
            ports_by_subnet: ports_by_subnet(model),
            port_subnets: model
                .ports
                .values()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.fixed_ips.iter().map(|f| f.subnet.clone()).collect(),
                    )
                })
                .collect(),
            local: HashMap::new(),
        };
        c.local = local_ports(model, &c.node);
        let mut snap = Snapshot::compile_l2(model.generation, &c.local, &c.node);
        let mut routers = Vec::with_capacity(model.routers.len());
        for r in model.routers.values() {
            let id = routers.len();
            c.ids.insert(r.name.clone(), id);
            c.names.push(r.name.clone());
            let t = r
                .admin_state_up
                .then(|| Arc::new(RouterTables::compile(model, r, &c.ports_by_subnet)));
            if let Some(t) = &t {
                c.index(id, t);
            }
            routers.push(t);
        }
        snap.routers = routers.into_boxed_slice();
        c.current = Arc::new(snap);
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

    fn index(&mut self, id: usize, t: &RouterTables) {
        for i in &t.interfaces {
            self.by_subnet
                .entry(i.subnet.clone())
                .or_default()
                .insert(id);
        }
        for p in t.neighbor_ports() {
            self.by_port.entry(p.to_owned()).or_default().insert(id);
        }
    }

    fn unindex(&mut self, id: usize, t: &RouterTables) {
        for i in &t.interfaces {
            if let Some(s) = self.by_subnet.get_mut(&i.subnet) {
                s.remove(&id);
                if s.is_empty() {
                    self.by_subnet.remove(&i.subnet);
                }
            }
        }
        for p in t.neighbor_ports() {
            if let Some(s) = self.by_port.get_mut(p) {
                s.remove(&id);
                if s.is_empty() {
                    self.by_port.remove(p);
                }
            }
        }
    }

    /// Moves port `name` in `ports_by_subnet` to the subnets it has now.
    fn reindex_port(&mut self, model: &Model, name: &str) {
        for sn in self.port_subnets.remove(name).unwrap_or_default() {
            if let Some(set) = self.ports_by_subnet.get_mut(&sn) {
                set.remove(name);
                if set.is_empty() {
                    self.ports_by_subnet.remove(&sn);
                }
            }
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
        }
    }

    /// The next snapshot after a committed transaction that touched `applied`.
    pub fn update(&mut self, model: &Model, applied: &[Applied]) -> Arc<Snapshot> {
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut l2 = false;
        for a in applied {
            match a.kind {
                Kind::Router => {
                    dirty.insert(a.name.clone());
                }
                Kind::Port => {
                    self.reindex_port(model, &a.name);
                    let now = model
                        .ports
                        .get(&a.name)
                        .and_then(|p| local_port(p, &self.node));
                    if self.local.get(&a.name) != now.as_ref() {
                        l2 = true;
                        match now {
                            Some(l) => self.local.insert(a.name.clone(), l),
                            None => self.local.remove(&a.name),
                        };
                    }
                    let mut ids: BTreeSet<usize> =
                        self.by_port.get(&a.name).cloned().unwrap_or_default();
                    if let Some(p) = model.ports.get(&a.name) {
                        for f in &p.fixed_ips {
                            ids.extend(self.by_subnet.get(&f.subnet).into_iter().flatten());
                        }
                    }
                    dirty.extend(ids.iter().map(|&i| self.names[i].clone()));
                }
                // Hosts, networks, subnets and floating IPs change no compiled
                // table yet: a subnet in use cannot be deleted or changed, and a
                // port is local by its host's name, not by the host's record.
                Kind::Host | Kind::Network | Kind::Subnet | Kind::FloatingIp => {}
            }
        }
        let mut routers: Vec<Option<Arc<RouterTables>>> = self.current.routers.to_vec();
        for name in dirty {
            let id = match self.ids.get(&name) {
                Some(&id) => id,
                None => {
                    let id = routers.len();
                    self.ids.insert(name.clone(), id);
                    self.names.push(name.clone());
                    routers.push(None);
                    id
                }
            };
            if let Some(old) = routers[id].take() {
                self.unindex(id, &old);
            }
            if let Some(r) = model.routers.get(&name) {
                if r.admin_state_up {
                    let t = Arc::new(RouterTables::compile(model, r, &self.ports_by_subnet));
                    self.index(id, &t);
                    routers[id] = Some(t);
                }
            }
        }
        let mut snap = if l2 {
            Snapshot::compile_l2(model.generation, &self.local, &self.node)
        } else {
            Snapshot {
                generation: model.generation,
                port_net: self.current.port_net.clone(),
                fdbs: self.current.fdbs.clone(),
                static_fdb: self.current.static_fdb.clone(),
                routers: Box::new([]),
            }
        };
        snap.routers = routers.into_boxed_slice();
        self.current = Arc::new(snap);
        self.current.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Change, NetworkType};

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    fn node() -> NodePorts {
        NodePorts {
            node: "cn1".into(),
            ports: vec![
                ("vm-a".into(), true),
                ("vm-b".into(), true),
                ("vm-c".into(), true),
                ("up".into(), false),
            ],
            static_fdb: vec![(mac("fa:16:3e:00:00:99"), 2)],
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
        assert_eq!(s.fdb_for(0).get(k("fa:16:3e:00:00:0b")), Some(1));
        assert_eq!(s.fdb_for(1).get(k("fa:16:3e:00:00:0a")), Some(0));
        assert_eq!(
            s.fdb_for(0).get(k("fa:16:3e:00:00:0c")),
            None,
            "other network"
        );
        assert_eq!(
            s.fdb_for(2).get(k("fa:16:3e:00:00:0a")),
            None,
            "other network"
        );
        assert_eq!(
            s.fdb_for(0).get(k("fa:16:3e:00:00:0d")),
            None,
            "remote port"
        );
        assert_eq!(
            s.fdb_for(0).get(k("fa:16:3e:00:00:0e")),
            None,
            "not a VM port"
        );
        assert_eq!(
            s.fdb_for(3).get(k("fa:16:3e:00:00:99")),
            Some(2),
            "unbound port: static table"
        );
        assert_eq!(s.fdb_for(9).get(k("fa:16:3e:00:00:99")), Some(2));
    }

    #[test]
    fn config_snapshot_uses_the_static_table() {
        let s = Snapshot::from_config(&node());
        assert_eq!(s.generation, 0);
        assert_eq!(s.fdb_for(0).get(mac("fa:16:3e:00:00:99").key()), Some(2));
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
                let b = full.routers[i].as_deref();
                assert!(
                    same_router(a, b),
                    "step {step}, {change:?}: router {name} differs"
                );
            }
            for port in 0..3u16 {
                for pm in m.ports.values() {
                    let k = pm.mac.key();
                    assert_eq!(
                        inc.fdb_for(port).get(k),
                        full.fdb_for(port).get(k),
                        "step {step}: fdb"
                    );
                }
            }
        }
        assert!(
            committed > 500,
            "the sequence exercises the compiler ({committed} committed)"
        );
    }
}
