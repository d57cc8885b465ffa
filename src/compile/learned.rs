//! What the control thread learns and publishes between transactions:
//! underlay neighbours (VTEP MACs) and VIP holders.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::Compiler;
use crate::mac::MacAddr;
use crate::tables::{next_epoch, Snapshot, MAX_HOLDERS};

impl Compiler {
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

    /// Records the MAC of an IPv6 neighbour on the external network (an
    /// upstream router) and publishes it. Returns the new snapshot when the
    /// MAC is new or changed; `None` too for an address no router goes
    /// through (not asked for).
    pub fn set_nd_mac(&mut self, ip: Ipv6Addr, mac: MacAddr) -> Option<Arc<Snapshot>> {
        if self.nd_macs.get(&ip) == Some(&mac) || !self.upstreams6.values().any(|u| u.0 == ip) {
            return None;
        }
        self.nd_macs.insert(ip, mac);
        let mut node = (*self.current.node).clone();
        node.nd_macs = self.nd_macs.clone();
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

    /// Takes over the underlay neighbours `old` resolved (and the IPv6
    /// upstream routers).
    pub fn inherit_vtep_macs(&mut self, old: &Compiler) {
        for (ip, mac) in &old.vtep_macs {
            self.set_vtep_mac(*ip, *mac);
        }
        for (ip, mac) in &old.nd_macs {
            self.set_nd_mac(*ip, *mac);
        }
    }
}
