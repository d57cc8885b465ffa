//! The dataplane's tables as one immutable snapshot, compiled from the model for
//! this node and published RCU style: the control thread swaps in a new snapshot
//! (`arc_swap::ArcSwap`), a worker loads the current one once per burst, and an old
//! snapshot is freed when the last worker that loaded it has finished its burst.

use std::collections::HashMap;
use std::sync::Arc;

use crate::l2::MacTable;
use crate::mac::MacAddr;
use crate::model::Model;

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
        }
    }

    /// Compiles the model for `node`. A model port is served here when its host
    /// is this node and its binding names one of this node's VM ports.
    pub fn compile(model: &Model, node: &NodePorts) -> Snapshot {
        let index: HashMap<&str, u16> = node
            .ports
            .iter()
            .enumerate()
            .filter(|(_, (_, vm))| *vm)
            .map(|(i, (n, _))| (n.as_str(), i as u16))
            .collect();
        let mut port_net = vec![NO_NETWORK; node.ports.len()];
        let mut nets: HashMap<&str, u32> = HashMap::new();
        let mut entries: Vec<Vec<(MacAddr, u16)>> = Vec::new();
        for p in model.ports.values() {
            if p.host.as_deref() != Some(node.node.as_str()) {
                continue;
            }
            let Some(&idx) = p.binding.as_deref().and_then(|b| index.get(b)) else {
                continue;
            };
            let n = *nets.entry(p.network.as_str()).or_insert_with(|| {
                entries.push(Vec::new());
                (entries.len() - 1) as u32
            });
            entries[n as usize].push((p.mac, idx));
            port_net[idx as usize] = n;
        }
        Snapshot {
            generation: model.generation,
            port_net: port_net.into_boxed_slice(),
            fdbs: entries.iter().map(|e| Arc::new(MacTable::new(e))).collect(),
            static_fdb: Arc::new(MacTable::new(&node.static_fdb)),
        }
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
}
