//! The compiler's indexes: stable router and network numbers, the routers
//! by subnet, network and neighbour port, the ports by subnet and network.

use std::collections::{BTreeSet, HashMap};

use super::{Compiler, PortsBy};
use crate::model::Model;
use crate::tables::RouterTables;

impl Compiler {
    pub(super) fn net_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.net_ids.get(name) {
            return id;
        }
        let id = self.net_names.len() as u32;
        self.net_ids.insert(name.to_owned(), id);
        self.net_names.push(name.to_owned());
        id
    }

    pub(super) fn router_id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len();
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }

    pub(super) fn index(&mut self, id: usize, t: &RouterTables) {
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

    pub(super) fn unindex(&mut self, id: usize, t: &RouterTables) {
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
    pub(super) fn reindex_port(&mut self, model: &Model, name: &str) -> Option<String> {
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
}
