//! Compiling one network: FDB, responder addresses, gateways, VIPs.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::Ctx;
use crate::l2::MacTable;
use crate::mac::MacAddr;
use crate::tables::{
    eui64_link_local, Chunked, Dest, Gw, Home, IpMap, NetTables, RouterTables, Vip,
};

/// An order of [`Dest`]s (the VIP entries of one port are together).
fn dest_key(d: Dest) -> (u8, u32, u32) {
    match d {
        Dest::Nowhere => (0, 0, 0),
        Dest::Local(p) => (1, p as u32, 0),
        Dest::Remote(h) => (2, h as u32, 0),
        Dest::Router { router, iface } => (3, router, iface as u32),
    }
}

impl NetTables {
    /// Compiles network `name`: its ports (`ports`), the enabled routers' interfaces
    /// on it (from their compiled tables).
    pub(super) fn compile(
        cx: &Ctx<'_>,
        name: &str,
        ports: Option<&BTreeSet<String>>,
        routers: &Chunked<RouterTables>,
        router_ids: Option<&BTreeSet<usize>>,
    ) -> Option<NetTables> {
        let n = cx.model.networks.get(name)?;
        let mut t = Parts::default();
        t.ports(cx, ports);
        t.gateways(name, routers, router_ids);
        Some(NetTables {
            name: n.name.clone(),
            kind: n.network_type,
            segment: n.segment.unwrap_or(0),
            mtu: n.mtu,
            external: n.external,
            fdb: MacTable::new(&t.fdb),
            arp: t.arp,
            gateways: t.gateways,
            remote_hosts: t.remote_hosts.into_iter().collect(),
            local_ports: t.local_ports.into_iter().collect(),
            vips: t.vips,
            holders: IpMap::default(),
        })
    }
}

/// A network's tables while they are built: what its ports, then the
/// routers' interfaces on it, put in them.
#[derive(Default)]
struct Parts {
    fdb: Vec<(MacAddr, Dest)>,
    arp: IpMap<MacAddr>,
    remote_hosts: BTreeSet<u16>,
    local_ports: BTreeSet<u16>,
    vips: Vec<Vip>,
    gateways: Vec<Gw>,
}

impl Parts {
    /// The network's ports (`ports`): their MACs and where they are, the
    /// addresses the responder answers for, their allowed address pairs.
    fn ports(&mut self, cx: &Ctx<'_>, ports: Option<&BTreeSet<String>>) {
        for p in ports
            .into_iter()
            .flatten()
            .filter_map(|p| cx.model.ports.get(p))
        {
            let dest = cx.port_dest(p);
            match dest {
                Dest::Nowhere => continue,
                Dest::Local(i) => {
                    self.local_ports.insert(i);
                }
                Dest::Remote(h) => {
                    self.remote_hosts.insert(h);
                }
                Dest::Router { .. } => {}
            }
            self.fdb.push((p.mac, dest));
            for f in &p.fixed_ips {
                self.arp.insert(f.ip, p.mac);
            }
            // The port's EUI-64 link-local address: answered like a fixed IP.
            self.arp
                .entry(IpAddr::V6(eui64_link_local(p.mac)))
                .or_insert(p.mac);
            for a in &p.allowed_address_pairs {
                let mac = a.mac.unwrap_or(p.mac);
                if a.mac.is_some() {
                    self.fdb.push((mac, dest));
                }
                // Not answered by the responder (several ports may hold the
                // address, and it moves): requests for it go to the ports
                // whose pairs cover it, and the holder answers.
                self.vips.push(Vip {
                    cidr: a.ip,
                    mac,
                    dest,
                });
            }
        }
        self.vips
            .sort_by_key(|v| (dest_key(v.dest), v.cidr.addr(), v.cidr.prefix_len()));
        self.vips.dedup();
    }

    /// The enabled routers' interfaces on network `name` (from their
    /// compiled tables `routers`, indexes `router_ids`).
    fn gateways(
        &mut self,
        name: &str,
        routers: &Chunked<RouterTables>,
        router_ids: Option<&BTreeSet<usize>>,
    ) {
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
                    self.remote_hosts.insert(h);
                }
                self.fdb.push((i.mac, dest));
                self.arp.insert(i.ip, i.mac);
                self.gateways.push(gw);
            }
        }
        self.gateways.sort_by_key(|g| (g.router, g.iface));
    }
}
