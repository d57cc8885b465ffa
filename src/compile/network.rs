//! Compiling one network: FDB, responder addresses, gateways, VIPs.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::Ctx;
use crate::l2::MacTable;
use crate::mac::MacAddr;
use crate::model::Subnet;
use crate::tables::{
    eui64_link_local, Chunked, Dest, Dhcp4, Gw, Home, IpMap, NetTables, RouterTables, Vip,
    DHCP_SERVER_MAC,
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
        let dhcp4 = dhcp4(cx, name, n.mtu, &t.gateways);
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
            dhcp4,
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

/// What DHCPv4 answers on network `name` (MTU `mtu`): one entry per IPv4
/// subnet with DHCP enabled, its options made once here.
fn dhcp4(cx: &Ctx<'_>, name: &str, mtu: u16, gateways: &[Gw]) -> Vec<Dhcp4> {
    let mut out = Vec::new();
    for s in cx.model.subnets_of(name) {
        let IpNet::V4(c) = s.cidr else { continue };
        if !s.enable_dhcp {
            continue;
        }
        let gw = match s.gateway_ip {
            Some(IpAddr::V4(g)) => Some(g),
            _ => None,
        };
        // No gateway: the last host address speaks for the server (clients
        // renew to it by broadcast once unicast goes unanswered).
        let server = gw.unwrap_or_else(|| Ipv4Addr::from(u32::from(c.broadcast()) - 1));
        let server_mac = gateways
            .iter()
            .find(|g| g.ip == IpAddr::V4(server))
            .map_or(DHCP_SERVER_MAC, |g| g.mac);
        out.push(Dhcp4 {
            subnet: s.name.clone(),
            net: u32::from(c.network()),
            mask: u32::from(c.netmask()),
            server: u32::from(server),
            server_mac,
            options: dhcp4_options(s, c, gw, mtu).into_boxed_slice(),
        });
    }
    out
}

/// Subnet `s`'s (`c`) options 1, 3, 6, 26 and 121 in wire form. With a
/// gateway, option 121 (which a client that asks for it uses instead of
/// option 3) carries the default route and 169.254.169.254/32 (the
/// metadata service, on the router) through it, then the host routes.
fn dhcp4_options(s: &Subnet, c: Ipv4Net, gw: Option<Ipv4Addr>, mtu: u16) -> Vec<u8> {
    let mut o = Vec::with_capacity(64);
    o.extend([1, 4]);
    o.extend(c.netmask().octets());
    if let Some(g) = gw {
        o.extend([3, 4]);
        o.extend(g.octets());
    }
    let dns: Vec<Ipv4Addr> = s
        .dns_nameservers
        .iter()
        .filter_map(|d| match d {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .collect();
    if !dns.is_empty() {
        o.extend([6, 4 * dns.len() as u8]);
        for d in dns {
            o.extend(d.octets());
        }
    }
    o.extend([26, 2]);
    o.extend(mtu.to_be_bytes());
    let mut routes: Vec<(Ipv4Net, Ipv4Addr)> = Vec::new();
    if let Some(g) = gw {
        routes.push((Ipv4Net::default(), g));
        let md = Ipv4Net::new(Ipv4Addr::new(169, 254, 169, 254), 32).expect("a /32");
        if !s.host_routes.iter().any(|r| r.destination == IpNet::V4(md)) {
            routes.push((md, g));
        }
    }
    for r in &s.host_routes {
        if let (IpNet::V4(d), IpAddr::V4(h)) = (r.destination, r.nexthop) {
            routes.retain(|(x, _)| *x != d);
            routes.push((d, h));
        }
    }
    if !routes.is_empty() {
        // RFC 3442: prefix length, the significant octets of the
        // destination, the router. 2 + 20 routes of at most 9 bytes: < 255.
        let mut v = Vec::new();
        for (d, h) in routes {
            let len = d.prefix_len();
            v.push(len);
            v.extend(&d.network().octets()[..len.div_ceil(8) as usize]);
            v.extend(h.octets());
        }
        o.extend([121, v.len() as u8]);
        o.extend(v);
    }
    o
}
