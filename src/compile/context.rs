//! The model as seen from this node, for compiling.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::PortRole;
use crate::model::Model;
use crate::tables::{Dest, NodePorts, VmPort};

/// The model's view that compiling needs besides the model: host and network
/// indexes, this node.
pub(super) struct Ctx<'a> {
    pub(super) model: &'a Model,
    pub(super) node: &'a NodePorts,
    pub(super) host_ids: &'a HashMap<String, u16>,
    pub(super) net_ids: &'a HashMap<String, u32>,
}

impl Ctx<'_> {
    /// The VM port of this node that model port `p` is bound to.
    pub(super) fn local_index(&self, p: &crate::model::Port) -> Option<u16> {
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
    pub(super) fn port_dest(&self, p: &crate::model::Port) -> Dest {
        if let Some(i) = self.local_index(p) {
            return Dest::Local(i);
        }
        match p.host.as_deref().and_then(|h| self.host_ids.get(h)) {
            Some(&h) => Dest::Remote(h),
            None => Dest::Nowhere,
        }
    }

    pub(super) fn vm_port(&self, p: &crate::model::Port) -> Option<VmPort> {
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
