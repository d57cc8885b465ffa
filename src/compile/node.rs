//! Compiling the node's own tables: the other hosts, the port slots, the
//! snapshot of the configuration alone.

use std::collections::HashMap;
use std::sync::Arc;

use super::Compiler;
use crate::config::PortRole;
use crate::l2::MacTable;
use crate::mac::MacAddr;
use crate::model::{Model, NetworkType};
use crate::tables::{
    next_epoch, Chunked, ExtMap, HostEntry, IntMap, NodePorts, NodeTables, Slot, Snapshot, VmPort,
};

/// The hosts with a VTEP other than `node`, by name, and their indexes.
pub(super) fn hosts_of(model: &Model, node: &str) -> (Vec<HostEntry>, HashMap<String, u16>) {
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

pub(super) fn underlay_of(node: &NodePorts) -> Option<(u16, MacAddr)> {
    node.ports
        .iter()
        .position(|p| p.role == PortRole::Underlay)
        .map(|i| (i as u16, node.ports[i].mac))
}

pub(super) fn slots(node: &NodePorts, local: &HashMap<String, VmPort>) -> Box<[Slot]> {
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
}

impl Compiler {
    /// The node's own tables, from the model's hosts and networks.
    pub(super) fn node_tables(&self, model: &Model) -> NodeTables {
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
            nd_macs: self.nd_macs.clone(),
        };
        node.outer = node.outer_headers();
        node
    }
}
