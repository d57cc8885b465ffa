//! Compiling one network: FDB, responder addresses, gateways, VIPs.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

use super::Ctx;
use crate::l2::MacTable;
use crate::mac::MacAddr;
use crate::model::{Ipv6Mode, Subnet};
use crate::tables::{
    eui64_link_local, Chunked, Dest, Dhcp4, Dhcp6, Gw, Home, IpMap, NetTables, Ra6, RouterTables,
    Vip, DHCP_SERVER_MAC,
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
        let ra6 = ra6(cx, name, n.mtu, &t.gateways);
        let dhcp6 = dhcp6(cx, name, &t.gateways);
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
            ra6,
            dhcp6,
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
                if i.ip.is_ipv6() {
                    // Its link-local address: the source of its router
                    // advertisements, the VMs' next hop.
                    self.arp
                        .entry(IpAddr::V6(eui64_link_local(i.mac)))
                        .or_insert(i.mac);
                }
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

/// The router lifetime of our advertisements, in seconds (radvd's default,
/// three times its default `MaxRtrAdvInterval` of 600 s).
pub const RA_ROUTER_LIFETIME: u16 = 1800;
/// A prefix's valid and preferred lifetimes (radvd's defaults, which
/// Neutron's radvd configuration keeps).
pub const RA_VALID_LIFETIME: u32 = 86_400;
pub const RA_PREFERRED_LIFETIME: u32 = 14_400;
/// The lifetime of the RDNSS option (radvd's default: twice its
/// `MaxRtrAdvInterval`).
pub const RA_RDNSS_LIFETIME: u32 = 1200;
/// The most DNS servers an advertisement carries (Neutron's radvd
/// configuration: `MAX_RDNSS_ENTRIES`).
pub const RA_MAX_RDNSS: usize = 3;
/// The most prefixes one advertisement carries (those of the first
/// subnets by name): it stays within a worker's reply and the inject
/// queue's frame limit.
pub const MAX_RA_PREFIXES: usize = 8;
/// The hop limit our advertisements give hosts (radvd's `AdvCurHopLimit`).
pub const RA_CUR_HOP_LIMIT: u8 = 64;

/// The router advertisement of network `name` (MTU `mtu`): the IPv6
/// subnets with an `ipv6_ra_mode` that have an interface on an enabled
/// router (`gateways`); the first of them by name chooses the router, and
/// that router's interfaces on such subnets are its prefixes, one message
/// (as a Neutron router port's radvd advertises all its IPv6 subnets).
fn ra6(cx: &Ctx<'_>, name: &str, mtu: u16, gateways: &[Gw]) -> Option<Ra6> {
    let served: Vec<(&Subnet, &Gw)> = cx
        .model
        .subnets_of(name)
        .into_iter()
        .filter(|s| s.cidr.addr().is_ipv6() && s.ipv6_ra_mode.is_some())
        .filter_map(|s| gateways.iter().find(|g| g.cidr == s.cidr).map(|g| (s, g)))
        .collect();
    let router = served.first()?.1.router;
    let served: Vec<(&Subnet, &Gw)> = served
        .into_iter()
        .filter(|(_, g)| g.router == router)
        .take(MAX_RA_PREFIXES)
        .collect();
    let mac = served[0].1.mac;
    let mode = |m| served.iter().any(|(s, _)| s.ipv6_ra_mode == Some(m));
    let mut b = vec![crate::wire::icmp6::types::ROUTER_ADVERT, 0, 0, 0];
    b.push(RA_CUR_HOP_LIMIT);
    b.push(
        if mode(Ipv6Mode::Dhcpv6Stateful) {
            0x80
        } else {
            0
        } | if mode(Ipv6Mode::Dhcpv6Stateless) {
            0x40
        } else {
            0
        },
    );
    b.extend(RA_ROUTER_LIFETIME.to_be_bytes());
    b.extend([0; 8]); // reachable time, retransmission timer: unspecified
    b.extend([1, 1]);
    b.extend(mac.0);
    if mtu >= 1280 {
        b.extend([5, 1, 0, 0]);
        b.extend(u32::from(mtu).to_be_bytes());
    }
    for (s, _) in &served {
        let IpNet::V6(c) = s.cidr else { continue };
        let auto = s.ipv6_ra_mode != Some(Ipv6Mode::Dhcpv6Stateful);
        b.extend([3, 4, c.prefix_len(), 0x80 | if auto { 0x40 } else { 0 }]);
        b.extend(RA_VALID_LIFETIME.to_be_bytes());
        b.extend(RA_PREFERRED_LIFETIME.to_be_bytes());
        b.extend([0; 4]);
        b.extend(c.network().octets());
    }
    let dns: Vec<Ipv6Addr> = served
        .iter()
        .flat_map(|(s, _)| s.dns_nameservers.iter())
        .filter_map(|d| match d {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .fold(Vec::new(), |mut v, a| {
            if !v.contains(&a) && v.len() < RA_MAX_RDNSS {
                v.push(a);
            }
            v
        });
    if !dns.is_empty() {
        b.extend([25, 1 + 2 * dns.len() as u8, 0, 0]);
        b.extend(RA_RDNSS_LIFETIME.to_be_bytes());
        for d in dns {
            b.extend(d.octets());
        }
    }
    Some(Ra6 {
        subnets: served.iter().map(|(s, _)| s.name.clone()).collect(),
        mac,
        src: eui64_link_local(mac),
        body: b.into_boxed_slice(),
    })
}

/// What DHCPv6 answers on network `name`: one entry per IPv6 subnet with
/// DHCP enabled and an address mode of `dhcpv6-stateful` or
/// `dhcpv6-stateless`.
fn dhcp6(cx: &Ctx<'_>, name: &str, gateways: &[Gw]) -> Vec<Dhcp6> {
    let mut out = Vec::new();
    for s in cx.model.subnets_of(name) {
        let IpNet::V6(c) = s.cidr else { continue };
        let stateful = match s.ipv6_address_mode {
            Some(Ipv6Mode::Dhcpv6Stateful) => true,
            Some(Ipv6Mode::Dhcpv6Stateless) => false,
            _ => continue,
        };
        if !s.enable_dhcp {
            continue;
        }
        let server_mac = gateways
            .iter()
            .find(|g| g.cidr == s.cidr)
            .map_or(DHCP_SERVER_MAC, |g| g.mac);
        let dns: Vec<Ipv6Addr> = s
            .dns_nameservers
            .iter()
            .filter_map(|d| match d {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })
            .collect();
        let mut o = Vec::new();
        if !dns.is_empty() {
            o.extend(crate::wire::dhcp6::opt::DNS_SERVERS.to_be_bytes());
            o.extend((16 * dns.len() as u16).to_be_bytes());
            for d in dns {
                o.extend(d.octets());
            }
        }
        out.push(Dhcp6 {
            subnet: s.name.clone(),
            net: u128::from(c.network()),
            mask: u128::from(c.netmask()),
            stateful,
            server_mac,
            server_ip: eui64_link_local(server_mac),
            dns: o.into_boxed_slice(),
        });
    }
    out
}
