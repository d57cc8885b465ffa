//! Compiling one router: interfaces, FIB, neighbours, the IPv4 forwarding
//! trie, floating IPs, SNAT settings.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::{Compiler, Ctx, PortsBy};
use crate::fib::{Fib, NextHop, Trie4};
use crate::model::Router;
use crate::tables::{
    Adj, Dest, FipEntry, Home, Iface, IntMap, IpMap, Neighbor, RouterTables, SnatSettings,
};

impl RouterTables {
    /// Compiles one router from the model; `fips` are the addresses of the
    /// floating IPs associated through it.
    pub(super) fn compile(
        cx: &Ctx<'_>,
        r: &Router,
        ports_by_subnet: &PortsBy,
        fips: Option<&BTreeSet<Ipv4Addr>>,
    ) -> RouterTables {
        let (interfaces, fib) = Self::interfaces_and_fib(cx, r);
        let neighbors = Self::neighbors(cx, &interfaces, ports_by_subnet);
        let fwd4 = Self::resolve4(&fib, &interfaces, &neighbors);
        let fip_map = Self::fip_map(cx, r.distributed, fips);
        RouterTables {
            name: r.name.clone(),
            distributed: r.distributed,
            interfaces,
            fib: Arc::new(fib),
            neighbors: Arc::new(neighbors),
            fwd4: Arc::new(fwd4),
            floating: Self::floating_of(&fip_map),
            fips: fip_map,
            snat: Self::snat_settings(cx, r),
            home: Self::home(cx, r),
            upstream: Self::upstream(cx, r),
            upstream6: Self::upstream6(cx, r),
            v6_central: !r.distributed
                || r.ipv6_north_south == Some(crate::model::Ipv6NorthSouth::Central),
        }
    }

    /// The router's interfaces on subnets of known networks, and its FIB:
    /// their connected subnets, the default route through the gateway's
    /// upstream router, the extra routes.
    fn interfaces_and_fib(cx: &Ctx<'_>, r: &Router) -> (Vec<Iface>, Fib) {
        let model = cx.model;
        let mut fib = Fib::default();
        let mut interfaces = Vec::new();
        for itf in &r.interfaces {
            if let Some(sn) = model.subnets.get(&itf.subnet) {
                let Some(&net) = cx.net_ids.get(&sn.network) else {
                    continue;
                };
                fib.insert(
                    sn.cidr,
                    NextHop::Connected {
                        iface: interfaces.len() as u16,
                    },
                );
                interfaces.push(Iface {
                    subnet: sn.name.clone(),
                    network: sn.network.clone(),
                    net,
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
        (interfaces, fib)
    }

    /// The addresses on the router's connected subnets: the model's ports
    /// there, their MACs and where each lives.
    fn neighbors(cx: &Ctx<'_>, interfaces: &[Iface], ports_by_subnet: &PortsBy) -> IpMap<Neighbor> {
        let model = cx.model;
        let mut neighbors = IpMap::default();
        for i in interfaces {
            for name in ports_by_subnet.get(&i.subnet).into_iter().flatten() {
                if let Some(p) = model.ports.get(name) {
                    for f in p.fixed_ips.iter().filter(|f| f.subnet == i.subnet) {
                        neighbors.insert(
                            f.ip,
                            Neighbor {
                                mac: p.mac,
                                port: p.name.clone(),
                                dest: cx.port_dest(p),
                            },
                        );
                    }
                }
            }
        }
        neighbors
    }

    /// The external gateway's SNAT settings, if the router has a gateway.
    fn snat_settings(cx: &Ctx<'_>, r: &Router) -> Option<SnatSettings> {
        r.gateway.as_ref().map(|g| SnatSettings {
            network: g.network.clone(),
            ips: g.ips.iter().map(|f| f.ip).collect(),
            mac: g.mac,
            enable_snat: g.enable_snat,
            host: r.snat_host.clone(),
            here: r.snat_host.as_deref() == Some(cx.node.node.as_str()),
            host_idx: r
                .snat_host
                .as_deref()
                .and_then(|h| cx.host_ids.get(h).copied()),
            net: cx.net_ids.get(&g.network).copied(),
        })
    }

    /// Where the router routes, seen from this node.
    fn home(cx: &Ctx<'_>, r: &Router) -> Home {
        match r.snat_host.as_deref() {
            _ if r.distributed => Home::Everywhere,
            Some(h) if h == cx.node.node => Home::Here,
            Some(h) => cx.host_ids.get(h).map_or(Home::Nowhere, |&i| Home::Host(i)),
            None => Home::Nowhere,
        }
    }

    /// The upstream router of the external gateway's IPv4 subnet.
    fn upstream(cx: &Ctx<'_>, r: &Router) -> Option<Ipv4Addr> {
        r.gateway.as_ref().and_then(|g| {
            g.ips.iter().find_map(|f| {
                match cx.model.subnets.get(&f.subnet).and_then(|sn| sn.gateway_ip) {
                    Some(IpAddr::V4(a)) => Some(a),
                    _ => None,
                }
            })
        })
    }

    /// The upstream router of the external gateway's IPv6 subnet.
    fn upstream6(cx: &Ctx<'_>, r: &Router) -> Option<Ipv6Addr> {
        r.gateway.as_ref().and_then(|g| {
            g.ips.iter().find_map(|f| {
                match cx.model.subnets.get(&f.subnet).and_then(|sn| sn.gateway_ip) {
                    Some(IpAddr::V6(a)) => Some(a),
                    _ => None,
                }
            })
        })
    }

    pub(super) fn floating_of(fips: &IntMap<Ipv4Addr, FipEntry>) -> IntMap<Ipv4Addr, Ipv4Addr> {
        fips.values().map(|f| (f.floating, f.fixed)).collect()
    }

    /// The floating IPs `fips` (addresses) as served through this router.
    pub(super) fn fip_map(
        cx: &Ctx<'_>,
        distributed: bool,
        fips: Option<&BTreeSet<Ipv4Addr>>,
    ) -> IntMap<Ipv4Addr, FipEntry> {
        let model = cx.model;
        let mut fip_map = IntMap::default();
        for f in fips
            .into_iter()
            .flatten()
            .filter_map(|a| model.floating_ips.get(a))
        {
            let (Some(port), Some(fixed)) = (&f.port, f.fixed_ip) else {
                continue;
            };
            let p = model.ports.get(port);
            let dest = p.map_or(Dest::Nowhere, |p| cx.port_dest(p));
            let no_external = p
                .and_then(|p| p.host.as_deref())
                .and_then(|h| model.hosts.get(h))
                .is_some_and(|h| h.agent_mode == crate::config::AgentMode::DvrNoExternal);
            fip_map.insert(
                fixed,
                FipEntry {
                    floating: f.address,
                    fixed,
                    port: port.clone(),
                    dest,
                    central: !distributed || no_external,
                },
            );
        }
        fip_map
    }

    /// The IPv4 forwarding trie: every route resolved to its adjacency, every
    /// neighbour whose longest match is its connected subnet as a /32, every
    /// interface address as a /32 of the router itself.
    pub(super) fn resolve4(
        fib: &Fib,
        interfaces: &[Iface],
        neighbors: &IpMap<Neighbor>,
    ) -> Trie4<Adj> {
        let adj_of = |iface: u16, ip: IpAddr| match neighbors.get(&ip) {
            Some(n) => Adj::Neighbor {
                iface,
                mac: n.mac,
                dest: n.dest,
            },
            None => Adj::Unknown { iface },
        };
        let mut entries: Vec<(u32, u8, Adj)> = Vec::new();
        for (p, len, nh) in fib.v4.routes() {
            let adj = match nh {
                NextHop::Connected { iface } => Adj::Unknown { iface },
                NextHop::Via { via } => match fib.lookup_fast(via) {
                    Some((_, NextHop::Connected { iface })) => adj_of(iface, via),
                    _ => Adj::External,
                },
            };
            entries.push((p, len, adj));
        }
        for (ip, _) in neighbors.iter() {
            let IpAddr::V4(a) = ip else { continue };
            if let Some((_, NextHop::Connected { iface })) = fib.lookup4(u32::from(*a)) {
                entries.push((u32::from(*a), 32, adj_of(iface, *ip)));
            }
        }
        for (k, i) in interfaces.iter().enumerate() {
            if let IpAddr::V4(a) = i.ip {
                entries.push((u32::from(a), 32, Adj::Local { iface: k as u16 }));
            }
        }
        // Equal prefixes: the later wins (the build is stable by length), so
        // the router's own addresses come last.
        Trie4::build(entries.into_iter())
    }
}

impl Compiler {
    /// Keeps the list of routers whose SNAT runs here up to date with router
    /// `id`'s new tables (`None`: gone or disabled).
    pub(super) fn snat_routers(&mut self, id: u32, new: Option<&RouterTables>) {
        // The upstream router to resolve, and who asks: this host's FIP
        // gateway port, else the router's own gateway port if its SNAT is here.
        let up = new.filter(|_| self.node.has_external()).and_then(|t| {
            let target = t.upstream?;
            let sender = self.fip_gw.or_else(|| {
                let sn = t.snat.as_ref().filter(|s| s.here)?;
                sn.ips.iter().find_map(|a| match a {
                    IpAddr::V4(a) => Some((*a, sn.mac)),
                    IpAddr::V6(_) => None,
                })
            })?;
            Some((target, sender.0, sender.1))
        });
        match up {
            Some(u) => self.upstreams.insert(id, u),
            None => self.upstreams.remove(&id),
        };
        // The IPv6 upstream router, asked for from this host's FIP gateway
        // MAC (distributed) or the router's gateway port (central, its SNAT
        // here).
        let up6 = new.filter(|_| self.node.has_external()).and_then(|t| {
            let target = t.upstream6?;
            let mac = if t.v6_central {
                t.snat.as_ref().filter(|s| s.here).map(|s| s.mac)
            } else {
                self.fip_gw.map(|g| g.1)
            }?;
            Some((target, mac))
        });
        match up6 {
            Some(u) => self.upstreams6.insert(id, u),
            None => self.upstreams6.remove(&id),
        };
        let now = new.and_then(|t| t.snat_here(id));
        if self.snat.get(&id) != now.as_ref() {
            self.snat_changed = true;
            match now {
                Some(h) => self.snat.insert(id, h),
                None => self.snat.remove(&id),
            };
        }
    }
}
