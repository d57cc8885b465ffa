//! One change at a time: the rules of each change (transitions, refusals while an
//! object is used), then the object's invariants (`check.rs`), then the write,
//! with the previous value of every object written kept in the undo log.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::alloc::{first_host, lowest_free};
use super::check::{
    check_name, check_pair, is_v6, nexthop_reachable, router_connects, Ctx, ObjId, ObjRef,
};
use super::index::{ObjKey, Rel};
use super::*;
use crate::config::AgentMode;
use crate::mac::MacAddr;

/// The previous value of an object a transaction wrote (`None`: it did not exist).
pub(super) enum Undo {
    Host(String, Option<Host>),
    Network(String, Option<Network>),
    Subnet(String, Option<Subnet>),
    Port(String, Option<Port>),
    Router(String, Option<Router>),
    Fip(Ipv4Addr, Option<FloatingIp>),
}

/// Writes to the model that record what they replace.
macro_rules! writers {
    ($($put:ident, $del:ident, $map:ident, $variant:ident, $ty:ty, $key:ident: $kty:ty;)*) => {
        impl Model {
            $(
                fn $put(&mut self, log: &mut Vec<Undo>, obj: $ty) {
                    let k = obj.$key.clone();
                    self.reindex(ObjKey::$variant(k.clone()), Some(&obj));
                    let old = self.$map.insert(k.clone(), obj);
                    log.push(Undo::$variant(k, old));
                }

                fn $del(&mut self, log: &mut Vec<Undo>, k: &$kty) {
                    if self.$map.contains_key(k) {
                        self.reindex(ObjKey::$variant(k.to_owned()), None);
                    }
                    if let Some(old) = self.$map.remove(k) {
                        log.push(Undo::$variant(k.to_owned(), Some(old)));
                    }
                }
            )*

            /// Puts back, newest first, what the log recorded.
            pub(super) fn rollback(&mut self, log: Vec<Undo>) {
                for u in log.into_iter().rev() {
                    match u {
                        $(
                            Undo::$variant(k, Some(old)) => {
                                self.reindex(ObjKey::$variant(k.clone()), Some(&old));
                                self.$map.insert(k, old);
                            }
                            Undo::$variant(k, None) => {
                                self.reindex(ObjKey::$variant(k.clone()), None);
                                self.$map.remove(&k);
                            }
                        )*
                    }
                }
            }
        }
    };
}

writers! {
    put_host, del_host, hosts, Host, Host, name: str;
    put_network, del_network, networks, Network, Network, name: str;
    put_subnet, del_subnet, subnets, Subnet, Subnet, name: str;
    put_port, del_port, ports, Port, Port, name: str;
    put_router, del_router, routers, Router, Router, name: str;
    put_fip, del_fip, floating_ips, Fip, FloatingIp, address: Ipv4Addr;
}

fn applied(kind: Kind, name: impl ToString) -> Applied {
    Applied {
        kind,
        name: name.to_string(),
    }
}

/// Up to five names, for messages: "p1, p2, p3 and 4 more".
fn some_names<S: std::fmt::Display>(names: impl IntoIterator<Item = S>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| n.to_string()).collect();
    if names.len() <= 5 {
        names.join(", ")
    } else {
        format!("{} and {} more", names[..5].join(", "), names.len() - 5)
    }
}

fn default_mtu(t: NetworkType) -> u16 {
    match t {
        NetworkType::Vxlan => 1450,
        NetworkType::Gre => 1458,
        NetworkType::Vlan | NetworkType::Flat => 1500,
    }
}

impl Model {
    pub(super) fn apply_one(
        &mut self,
        change: &Change,
        log: &mut Vec<Undo>,
    ) -> Result<Applied, ModelError> {
        match change {
            Change::HostSet {
                name,
                agent_mode,
                vtep,
                dvr_mac,
                fip_gateway,
            } => self.host_set(log, name, agent_mode, vtep, dvr_mac, fip_gateway),
            Change::HostDelete { name } => self.host_delete(log, name),
            Change::NetworkCreate {
                name,
                network_type,
                segment,
                mtu,
                external,
            } => self.network_create(log, name, network_type, segment, mtu, external),
            Change::NetworkSet {
                name,
                mtu,
                external,
            } => self.network_set(log, name, mtu, external),
            Change::NetworkDelete { name } => self.network_delete(log, name),
            Change::SubnetCreate {
                name,
                network,
                cidr,
                gateway_ip,
                enable_dhcp,
                dns_nameservers,
                host_routes,
                ipv6_ra_mode,
                ipv6_address_mode,
            } => {
                let dhcp = DhcpSpec {
                    enable: enable_dhcp.unwrap_or(true),
                    dns: dns_nameservers,
                    routes: host_routes,
                    ra_mode: *ipv6_ra_mode,
                    address_mode: *ipv6_address_mode,
                };
                self.subnet_create(log, name, network, cidr, gateway_ip, dhcp)
            }
            Change::SubnetSet {
                name,
                enable_dhcp,
                clear_dns_nameservers,
                dns_nameservers,
                clear_host_routes,
                host_routes,
            } => {
                let mut s = self.subnet(name)?.clone();
                if let Some(e) = enable_dhcp {
                    s.enable_dhcp = *e;
                }
                if *clear_dns_nameservers {
                    s.dns_nameservers.clear();
                }
                s.dns_nameservers.extend(dns_nameservers.iter().copied());
                if *clear_host_routes {
                    s.host_routes.clear();
                }
                s.host_routes.extend(host_routes.iter().cloned());
                Ctx::scan(self).check_subnet(&s)?;
                self.put_subnet(log, s);
                Ok(applied(Kind::Subnet, name))
            }
            Change::SubnetDelete { name } => self.subnet_delete(log, name),
            Change::PortCreate {
                name,
                network,
                mac,
                fixed_ips,
                host,
                port_security,
                allowed_address_pairs,
                binding,
            } => self.port_create(
                log,
                name,
                network,
                mac,
                fixed_ips,
                host,
                port_security,
                allowed_address_pairs,
                binding,
            ),
            Change::PortSet {
                name,
                host,
                binding,
                port_security,
                allowed_address_pairs,
            } => self.port_set(
                log,
                name,
                host,
                binding,
                port_security,
                allowed_address_pairs,
            ),
            Change::PortUnset {
                name,
                host,
                binding,
                allowed_address_pairs,
            } => self.port_unset(log, name, host, binding, allowed_address_pairs),
            Change::PortDelete { name } => self.port_delete(log, name),
            Change::RouterCreate {
                name,
                distributed,
                ha,
                admin_state_up,
            } => self.router_create(log, name, distributed, ha, admin_state_up),
            Change::RouterSet {
                name,
                admin_state_up,
                distributed,
                ha,
                external_gateway,
                routes,
                snat_host,
                ipv6_north_south,
            } => self.router_set(
                log,
                name,
                admin_state_up,
                distributed,
                ha,
                external_gateway,
                routes,
                snat_host,
                *ipv6_north_south,
            ),
            Change::RouterUnset {
                name,
                external_gateway,
                routes,
            } => self.router_unset(log, name, external_gateway, routes),
            Change::RouterDelete { name } => self.router_delete(log, name),
            Change::RouterAddSubnet { router, subnet } => {
                self.router_add_subnet(log, router, subnet)
            }
            Change::RouterRemoveSubnet { router, subnet } => {
                self.router_remove_subnet(log, router, subnet)
            }
            Change::FloatingIpCreate {
                network,
                address,
                port,
                fixed_ip,
            } => self.floating_ip_create(log, network, address, port, fixed_ip),
            Change::FloatingIpSet {
                address,
                port,
                fixed_ip,
            } => self.floating_ip_set(log, address, port, fixed_ip),
            Change::FloatingIpUnset { address } => self.floating_ip_unset(log, address),
            Change::FloatingIpDelete { address } => self.floating_ip_delete(log, address),
        }
    }

    /// [`Change::HostSet`].
    fn host_set(
        &mut self,
        log: &mut Vec<Undo>,
        name: &str,
        agent_mode: &AgentMode,
        vtep: &Option<Ipv4Addr>,
        dvr_mac: &Option<MacAddr>,
        fip_gateway: &Option<FipGateway>,
    ) -> Result<Applied, ModelError> {
        let h = Host {
            name: name.to_owned(),
            agent_mode: *agent_mode,
            vtep: *vtep,
            dvr_mac: *dvr_mac,
            fip_gateway: fip_gateway.clone(),
        };
        let ctx = Ctx::scan(self);
        ctx.check_host(&h)?;
        ctx.check_new_claims(ObjRef::Host(&h), self.hosts.get(name).map(ObjRef::Host))?;
        if h.agent_mode != AgentMode::DvrSnat {
            let legacy_ok = |r: &Router| !r.distributed && h.agent_mode == AgentMode::Legacy;
            if let Some(r) = self
                .index()
                .rel(Rel::RoutersBySnatHost, name)
                .find(|r| !self.routers.get(r.name()).is_some_and(legacy_ok))
            {
                bail!(
                    "router {} has its SNAT on host {name}, which must stay in agent mode dvr_snat (not {}); move the SNAT first",
                    r.name(),
                    h.agent_mode.name()
                );
            }
        }
        self.put_host(log, h);
        Ok(applied(Kind::Host, name))
    }

    /// [`Change::HostDelete`].
    fn host_delete(&mut self, log: &mut Vec<Undo>, name: &str) -> Result<Applied, ModelError> {
        self.host(name)?;
        let bound: Vec<&str> = self
            .index()
            .rel(Rel::PortsByHost, name)
            .map(ObjKey::name)
            .collect();
        if !bound.is_empty() {
            bail!(
                "host {name} has ports bound to it ({}); unbind them (port unset --host) or delete them first",
                some_names(bound)
            );
        }
        if let Some(r) = self.index().rel(Rel::RoutersBySnatHost, name).next() {
            bail!(
                "router {} has its SNAT on host {name}; move it to another host first",
                r.name()
            );
        }
        self.del_host(log, name);
        Ok(applied(Kind::Host, name))
    }

    /// [`Change::NetworkCreate`].
    fn network_create(
        &mut self,
        log: &mut Vec<Undo>,
        name: &str,
        network_type: &NetworkType,
        segment: &Option<u32>,
        mtu: &Option<u16>,
        external: &bool,
    ) -> Result<Applied, ModelError> {
        if self.networks.contains_key(name) {
            bail!("network {name} already exists");
        }
        let n = Network {
            name: name.to_owned(),
            network_type: *network_type,
            segment: *segment,
            mtu: mtu.unwrap_or(default_mtu(*network_type)),
            external: *external,
        };
        let ctx = Ctx::scan(self);
        ctx.check_network(&n)?;
        ctx.check_new_claims(ObjRef::Network(&n), None)?;
        self.put_network(log, n);
        Ok(applied(Kind::Network, name))
    }

    /// [`Change::NetworkSet`].
    fn network_set(
        &mut self,
        log: &mut Vec<Undo>,
        name: &str,
        mtu: &Option<u16>,
        external: &Option<bool>,
    ) -> Result<Applied, ModelError> {
        let mut n = self.network(name)?.clone();
        if let Some(mtu) = mtu {
            n.mtu = *mtu;
        }
        let ctx = Ctx::scan(self);
        ctx.check_network(&n)?;
        if n.mtu < 1280 {
            if let Some(s) = ctx.subnets_of(name).into_iter().find(|s| is_v6(&s.cidr)) {
                bail!(
                    "network {name} has IPv6 subnet {} ({}); its MTU cannot go below 1280",
                    s.name,
                    s.cidr
                );
            }
        }
        if let Some(ext) = *external {
            if ext && !n.external {
                self.check_can_become_external(&ctx, name)?;
            }
            if !ext && n.external {
                self.check_can_become_internal(name)?;
            }
            n.external = ext;
        }
        self.put_network(log, n);
        Ok(applied(Kind::Network, name))
    }

    /// [`Change::NetworkDelete`].
    fn network_delete(&mut self, log: &mut Vec<Undo>, name: &str) -> Result<Applied, ModelError> {
        self.network(name)?;
        let ctx = Ctx::scan(self);
        let subnets = ctx.subnets_of(name);
        if !subnets.is_empty() {
            bail!(
                "network {name} still has subnets ({}); delete them first",
                some_names(subnets.iter().map(|s| &s.name))
            );
        }
        let ports: Vec<&str> = self
            .index()
            .rel(Rel::PortsByNetwork, name)
            .map(ObjKey::name)
            .collect();
        if !ports.is_empty() {
            bail!(
                "network {name} still has ports ({}); delete them first",
                some_names(ports)
            );
        }
        // (Floating IPs and gateways need a subnet: covered above, but
        // said plainly should a file have been edited by hand.)
        if let Some(f) = self.index().rel(Rel::FipsByNetwork, name).next() {
            bail!(
                "network {name} still has floating IP {}; delete it first",
                f.address()
            );
        }
        if let Some(r) = self.index().rel(Rel::RoutersByGwNetwork, name).next() {
            bail!(
                "router {} has its external gateway on network {name}; unset it first",
                r.name()
            );
        }
        self.del_network(log, name);
        Ok(applied(Kind::Network, name))
    }

    /// [`Change::SubnetCreate`].
    fn subnet_create(
        &mut self,
        log: &mut Vec<Undo>,
        name: &str,
        network: &str,
        cidr: &IpNet,
        gateway_ip: &Option<Option<IpAddr>>,
        dhcp: DhcpSpec<'_>,
    ) -> Result<Applied, ModelError> {
        if self.subnets.contains_key(name) {
            bail!("subnet {name} already exists");
        }
        let s = Subnet {
            name: name.to_owned(),
            network: network.to_owned(),
            cidr: *cidr,
            gateway_ip: match gateway_ip {
                None => Some(first_host(cidr)),
                Some(g) => *g,
            },
            enable_dhcp: dhcp.enable,
            dns_nameservers: dhcp.dns.clone(),
            host_routes: dhcp.routes.clone(),
            ipv6_ra_mode: dhcp.ra_mode,
            ipv6_address_mode: dhcp.address_mode,
        };
        let ctx = Ctx::scan(self);
        ctx.check_subnet(&s)?;
        ctx.check_subnet_overlap(&s)?;
        self.put_subnet(log, s);
        Ok(applied(Kind::Subnet, name))
    }

    /// [`Change::SubnetDelete`].
    fn subnet_delete(&mut self, log: &mut Vec<Undo>, name: &str) -> Result<Applied, ModelError> {
        let s = self.subnet(name)?;
        let idx = self.index();
        let users = idx.rel(Rel::PortsBySubnet, name);
        for p in users.filter_map(|k| self.ports.get(k.name())) {
            if let Some(f) = p.fixed_ips.iter().find(|f| f.subnet == name) {
                bail!(
                    "subnet {name} is used by port {} ({}); delete the port first",
                    p.name,
                    f.ip
                );
            }
        }
        let routers: BTreeSet<&ObjKey> = idx
            .rel(Rel::RoutersByIfaceSubnet, name)
            .chain(idx.rel(Rel::RoutersByGwSubnet, name))
            .collect();
        for r in routers
            .into_iter()
            .filter_map(|k| self.routers.get(k.name()))
        {
            if r.interfaces.iter().any(|i| i.subnet == name) {
                bail!(
                    "subnet {name} is an interface of router {}; remove it from the router first (router remove subnet)",
                    r.name
                );
            }
            if let Some(f) = r
                .gateway
                .iter()
                .flat_map(|g| &g.ips)
                .find(|f| f.subnet == name)
            {
                bail!(
                    "router {}'s external gateway has {} in subnet {name}; unset the gateway first",
                    r.name,
                    f.ip
                );
            }
        }
        if let IpNet::V4(v4) = s.cidr {
            if let Some(f) = self
                .floating_ips
                .range(v4.network()..=v4.broadcast())
                .map(|(_, f)| f)
                .find(|f| f.network == s.network)
            {
                bail!(
                    "floating IP {} is in subnet {name}; delete it first",
                    f.address
                );
            }
        }
        self.del_subnet(log, name);
        Ok(applied(Kind::Subnet, name))
    }

    /// [`Change::PortCreate`].
    #[allow(clippy::too_many_arguments)] // one per field of the change
    fn port_create(
        &mut self,
        log: &mut Vec<Undo>,
        name: &str,
        network: &str,
        mac: &Option<MacAddr>,
        fixed_ips: &[FixedIpSpec],
        host: &Option<String>,
        port_security: &Option<bool>,
        allowed_address_pairs: &[AllowedPair],
        binding: &Option<String>,
    ) -> Result<Applied, ModelError> {
        if self.ports.contains_key(name) {
            bail!("port {name} already exists");
        }
        check_name(Kind::Port, name)?;
        self.network(network)?;
        if let Some(h) = host {
            self.host(h)?;
        }
        let specs: Vec<FixedIpSpec> = if fixed_ips.is_empty() {
            // The first subnet of each family.
            let subnets = Ctx::scan(self).subnets_of(network);
            let v4 = subnets.iter().find(|s| !is_v6(&s.cidr));
            let v6 = subnets.iter().find(|s| is_v6(&s.cidr));
            v4.into_iter()
                .chain(v6)
                .map(|s| FixedIpSpec {
                    subnet: Some(s.name.clone()),
                    ip: None,
                })
                .collect()
        } else {
            fixed_ips.to_vec()
        };
        let mac = match mac {
            Some(m) => *m,
            None => self.generate_mac(&format!("port/{name}")),
        };
        let ips = self.resolve_fixed_ips(network, &specs, ObjId::Port(name), Some(mac))?;
        let mut pairs = Vec::new();
        add_pairs(&mut pairs, allowed_address_pairs)?;
        let p = Port {
            name: name.to_owned(),
            network: network.to_owned(),
            mac,
            fixed_ips: ips,
            host: host.clone(),
            port_security: port_security.unwrap_or(true),
            allowed_address_pairs: pairs,
            binding: binding.clone(),
        };
        let ctx = Ctx::scan(self);
        ctx.check_port(&p)?;
        ctx.check_new_claims(ObjRef::Port(&p), None)?;
        self.put_port(log, p);
        Ok(applied(Kind::Port, name))
    }

    /// [`Change::PortSet`].
    fn port_set(
        &mut self,
        log: &mut Vec<Undo>,
        name: &str,
        host: &Option<String>,
        binding: &Option<String>,
        port_security: &Option<bool>,
        allowed_address_pairs: &[AllowedPair],
    ) -> Result<Applied, ModelError> {
        let mut p = self.port(name)?.clone();
        if let Some(h) = host {
            self.host(h)?;
            p.host = Some(h.clone());
        }
        if let Some(b) = binding {
            p.binding = Some(b.clone());
        }
        if let Some(ps) = port_security {
            p.port_security = *ps;
        }
        add_pairs(&mut p.allowed_address_pairs, allowed_address_pairs)?;
        Ctx::scan(self).check_port(&p)?;
        self.put_port(log, p);
        Ok(applied(Kind::Port, name))
    }

    /// [`Change::PortUnset`].
    fn port_unset(
        &mut self,
        log: &mut Vec<Undo>,
        name: &str,
        host: &bool,
        binding: &bool,
        allowed_address_pairs: &[AllowedPair],
    ) -> Result<Applied, ModelError> {
        let mut p = self.port(name)?.clone();
        if *host {
            p.host = None;
        }
        if *binding {
            p.binding = None;
        }
        for pair in allowed_address_pairs {
            let before = p.allowed_address_pairs.len();
            p.allowed_address_pairs
                .retain(|x| !(x.ip == pair.ip && (pair.mac.is_none() || x.mac == pair.mac)));
            if p.allowed_address_pairs.len() == before {
                bail!("port {name} has no allowed address pair {}", pair.ip);
            }
        }
        Ctx::scan(self).check_port(&p)?;
        self.put_port(log, p);
        Ok(applied(Kind::Port, name))
    }

    /// [`Change::PortDelete`].
    fn port_delete(&mut self, log: &mut Vec<Undo>, name: &str) -> Result<Applied, ModelError> {
        self.port(name)?;
        if let Some(f) = self.index().rel(Rel::FipsByPort, name).next() {
            bail!(
                "floating IP {} is associated with port {name}; unset it first",
                f.address()
            );
        }
        self.del_port(log, name);
        Ok(applied(Kind::Port, name))
    }

    /// [`Change::RouterCreate`].
    fn router_create(
        &mut self,
        log: &mut Vec<Undo>,
        name: &str,
        distributed: &Option<bool>,
        ha: &bool,
        admin_state_up: &bool,
    ) -> Result<Applied, ModelError> {
        if self.routers.contains_key(name) {
            bail!("router {name} already exists");
        }
        let r = Router {
            name: name.to_owned(),
            distributed: distributed.unwrap_or(true),
            ha: *ha,
            admin_state_up: *admin_state_up,
            interfaces: Vec::new(),
            gateway: None,
            routes: Vec::new(),
            snat_host: None,
            ipv6_north_south: None,
        };
        Ctx::scan(self).check_router(&r)?;
        self.put_router(log, r);
        Ok(applied(Kind::Router, name))
    }

    /// [`Change::RouterSet`].
    #[allow(clippy::too_many_arguments)] // one per field of the change
    fn router_set(
        &mut self,
        log: &mut Vec<Undo>,
        name: &str,
        admin_state_up: &Option<bool>,
        distributed: &Option<bool>,
        ha: &Option<bool>,
        external_gateway: &Option<GatewaySpec>,
        routes: &[Route],
        snat_host: &Option<String>,
        ipv6_north_south: Option<Ipv6NorthSouth>,
    ) -> Result<Applied, ModelError> {
        let cur = self.router(name)?;
        let mut r = cur.clone();
        self.router_mode_change(&mut r, *distributed, *ha)?;
        if let Some(up) = admin_state_up {
            r.admin_state_up = *up;
        }
        if let Some(spec) = external_gateway {
            r.gateway = Some(self.new_gateway(cur, spec)?);
        }
        for route in routes {
            if r.routes.contains(route) {
                bail!(
                    "route {} via {} is already on router {name}",
                    route.destination,
                    route.nexthop
                );
            }
            r.routes.push(route.clone());
        }
        if let Some(h) = snat_host {
            r.snat_host = Some(h.clone());
        }
        if ipv6_north_south.is_some() {
            r.ipv6_north_south = ipv6_north_south;
        }
        let new_gw_net = r.gateway.as_ref().map(|g| g.network.as_str());
        let old_gw_net = cur.gateway.as_ref().map(|g| g.network.as_str());
        if new_gw_net != old_gw_net {
            if let Some(f) = self.fip_served_by(name) {
                bail!(
                    "floating IP {} uses router {name}'s external gateway on network {}; unset it before moving the gateway",
                    f.address,
                    f.network
                );
            }
        }
        let ctx = Ctx::scan(self);
        ctx.check_router(&r)?;
        ctx.check_new_claims(ObjRef::Router(&r), Some(ObjRef::Router(cur)))?;
        self.put_router(log, r);
        Ok(applied(Kind::Router, name))
    }

    /// [`Change::RouterUnset`].
    fn router_unset(
        &mut self,
        log: &mut Vec<Undo>,
        name: &str,
        external_gateway: &bool,
        routes: &[Route],
    ) -> Result<Applied, ModelError> {
        let mut r = self.router(name)?.clone();
        for route in routes {
            let Some(at) = r.routes.iter().position(|x| x == route) else {
                bail!(
                    "router {name} has no route {} via {}",
                    route.destination,
                    route.nexthop
                );
            };
            r.routes.remove(at);
        }
        if *external_gateway {
            if let Some(f) = self.fip_served_by(name) {
                bail!(
                    "floating IP {} uses router {name}'s external gateway; unset it first",
                    f.address
                );
            }
            if let Some(g) = r.gateway.take() {
                let reach = self.reach(&r);
                if let Some(route) = r
                    .routes
                    .iter()
                    .find(|x| !nexthop_reachable(x.nexthop, &reach))
                {
                    bail!(
                        "route {} via {} needs router {name}'s external gateway on network {}: its nexthop is reachable only through it; remove the route first (router unset --route)",
                        route.destination,
                        route.nexthop,
                        g.network
                    );
                }
            }
        }
        Ctx::scan(self).check_router(&r)?;
        self.put_router(log, r);
        Ok(applied(Kind::Router, name))
    }

    /// [`Change::RouterDelete`].
    fn router_delete(&mut self, log: &mut Vec<Undo>, name: &str) -> Result<Applied, ModelError> {
        let r = self.router(name)?;
        if !r.interfaces.is_empty() {
            bail!(
                "router {name} still has interfaces on subnets {}; remove them first (router remove subnet)",
                some_names(r.interfaces.iter().map(|i| &i.subnet))
            );
        }
        if let Some(g) = &r.gateway {
            bail!(
                "router {name} still has an external gateway on network {}; unset it first",
                g.network
            );
        }
        self.del_router(log, name);
        Ok(applied(Kind::Router, name))
    }

    /// [`Change::RouterAddSubnet`].
    fn router_add_subnet(
        &mut self,
        log: &mut Vec<Undo>,
        router: &str,
        subnet: &str,
    ) -> Result<Applied, ModelError> {
        let cur = self.router(router)?;
        let s = self.subnet(subnet)?;
        let net = self.network(&s.network)?;
        if net.external {
            bail!(
                "subnet {subnet} belongs to external network {}; set it as router {router}'s external gateway instead",
                net.name
            );
        }
        let Some(gw) = s.gateway_ip else {
            bail!(
                "subnet {subnet} has no gateway IP; a router interface takes the subnet's gateway address"
            );
        };
        if cur.interfaces.iter().any(|i| i.subnet == subnet) {
            bail!("subnet {subnet} is already on router {router}");
        }
        let mut r = cur.clone();
        r.interfaces.push(Interface {
            subnet: subnet.to_owned(),
            ip: gw,
            mac: self.generate_mac(&format!("router/{router}/interface/{subnet}")),
        });
        let ctx = Ctx::scan(self);
        ctx.check_router(&r)?;
        ctx.check_new_claims(ObjRef::Router(&r), Some(ObjRef::Router(cur)))?;
        self.put_router(log, r);
        Ok(applied(Kind::Router, router))
    }

    /// [`Change::RouterRemoveSubnet`].
    fn router_remove_subnet(
        &mut self,
        log: &mut Vec<Undo>,
        router: &str,
        subnet: &str,
    ) -> Result<Applied, ModelError> {
        let mut r = self.router(router)?.clone();
        let s = self.subnet(subnet)?;
        let Some(at) = r.interfaces.iter().position(|i| i.subnet == subnet) else {
            bail!("subnet {subnet} is not on router {router}");
        };
        r.interfaces.remove(at);
        let reach = self.reach(&r);
        if let Some(route) = r
            .routes
            .iter()
            .find(|x| !nexthop_reachable(x.nexthop, &reach))
        {
            bail!(
                "route {} via {} needs subnet {subnet}: its nexthop is reachable only through it; remove the route first (router unset --route)",
                route.destination,
                route.nexthop
            );
        }
        let served = self.index().rel(Rel::FipsByRouter, router);
        for f in served.filter_map(|k| self.floating_ips.get(&k.address())) {
            if f.router.as_deref() != Some(router) {
                continue;
            }
            if let (Some(port), Some(ip)) = (&f.port, f.fixed_ip) {
                if s.cidr.contains(&IpAddr::V4(ip)) {
                    bail!(
                        "floating IP {} is served by router {router} through subnet {subnet} (port {port}, {ip}); unset it first",
                        f.address
                    );
                }
            }
        }
        Ctx::scan(self).check_router(&r)?;
        self.put_router(log, r);
        Ok(applied(Kind::Router, router))
    }

    /// [`Change::FloatingIpCreate`].
    fn floating_ip_create(
        &mut self,
        log: &mut Vec<Undo>,
        network: &str,
        address: &Option<Ipv4Addr>,
        port: &Option<String>,
        fixed_ip: &Option<Ipv4Addr>,
    ) -> Result<Applied, ModelError> {
        let net = self.network(network)?;
        if !net.external {
            bail!(
                "network {network} is not external; floating IPs live on an external network (router:external)"
            );
        }
        if port.is_none() && fixed_ip.is_some() {
            bail!("a fixed IP for a floating IP needs a port");
        }
        let address = match address {
            Some(a) => {
                if self.floating_ips.contains_key(a) {
                    bail!("floating IP {a} already exists");
                }
                *a
            }
            None => self.allocate_fip(network)?,
        };
        let f = FloatingIp {
            address,
            network: network.to_owned(),
            port: None,
            fixed_ip: None,
            router: None,
        };
        let ctx = Ctx::scan(self);
        ctx.check_fip(&f)?;
        ctx.check_new_claims(ObjRef::Fip(&f), None)?;
        // Created associated: checked as a create then a set would be,
        // and written (and indexed) once.
        let f = match port {
            Some(port) => self.associated(&f, port, *fixed_ip)?,
            None => f,
        };
        self.put_fip(log, f);
        Ok(applied(Kind::FloatingIp, address))
    }

    /// [`Change::FloatingIpSet`].
    fn floating_ip_set(
        &mut self,
        log: &mut Vec<Undo>,
        address: &Ipv4Addr,
        port: &str,
        fixed_ip: &Option<Ipv4Addr>,
    ) -> Result<Applied, ModelError> {
        let f = self.associated(self.fip(*address)?, port, *fixed_ip)?;
        self.put_fip(log, f);
        Ok(applied(Kind::FloatingIp, address))
    }

    /// [`Change::FloatingIpUnset`].
    fn floating_ip_unset(
        &mut self,
        log: &mut Vec<Undo>,
        address: &Ipv4Addr,
    ) -> Result<Applied, ModelError> {
        let mut f = self.fip(*address)?.clone();
        f.port = None;
        f.fixed_ip = None;
        f.router = None;
        self.put_fip(log, f);
        Ok(applied(Kind::FloatingIp, address))
    }

    /// [`Change::FloatingIpDelete`].
    fn floating_ip_delete(
        &mut self,
        log: &mut Vec<Undo>,
        address: &Ipv4Addr,
    ) -> Result<Applied, ModelError> {
        self.fip(*address)?;
        self.del_fip(log, address);
        Ok(applied(Kind::FloatingIp, address))
    }

    /// The migration rules (docs/BEHAVIOUR.md section 5): `distributed` and `ha`
    /// change only on a router that is already disabled, and an HA router is not
    /// made distributed directly.
    fn router_mode_change(
        &self,
        r: &mut Router,
        distributed: Option<bool>,
        ha: Option<bool>,
    ) -> Result<(), ModelError> {
        let name = &r.name;
        let d_changes = distributed.is_some_and(|d| d != r.distributed);
        let ha_changes = ha.is_some_and(|h| h != r.ha);
        if !d_changes && !ha_changes {
            return Ok(());
        }
        if r.admin_state_up {
            let what = match (d_changes, ha_changes) {
                (true, true) => "distributed and ha",
                (true, false) => "distributed",
                _ => "ha",
            };
            bail!("router {name} must be disabled (set --disable) before changing {what}");
        }
        // Checked on the router as it was: asking for --no-ha in the same call
        // does not make an HA router distributable.
        if d_changes && !r.distributed && r.ha {
            bail!("router {name} is HA: set --no-ha first, then --distributed");
        }
        let (new_d, new_ha) = (distributed.unwrap_or(r.distributed), ha.unwrap_or(r.ha));
        if new_d && new_ha {
            bail!(
                "DVR cannot be combined with L3 HA: router {name} is distributed; set --centralized first, then --ha"
            );
        }
        r.distributed = new_d;
        r.ha = new_ha;
        Ok(())
    }

    /// The gateway `spec` asks for on router `cur`. On the network it already has,
    /// the gateway keeps its MAC, its addresses (unless others are asked for) and
    /// its `enable_snat` (unless given).
    fn new_gateway(&self, cur: &Router, spec: &GatewaySpec) -> Result<Gateway, ModelError> {
        let net = self.network(&spec.network)?;
        if !net.external {
            bail!(
                "network {} is not external; a router's external gateway needs an external network (router:external)",
                net.name
            );
        }
        let same = cur.gateway.as_ref().filter(|g| g.network == spec.network);
        let owner = ObjId::Router(&cur.name);
        // Without a fixed IP asked for, the gateway also takes an address of
        // the network's first IPv6 subnet, if it has one and none yet (IPv6
        // north-south, routed from it when central).
        let first6 = || {
            Ctx::scan(self)
                .subnets_of(&spec.network)
                .into_iter()
                .find(|s| is_v6(&s.cidr))
                .map(|s| FixedIpSpec {
                    subnet: Some(s.name.clone()),
                    ip: None,
                })
        };
        let ips = match (&spec.fixed_ip, same) {
            (Some(f), _) => {
                self.resolve_fixed_ips(&spec.network, std::slice::from_ref(f), owner, None)?
            }
            (None, Some(g)) => {
                let mut ips = g.ips.clone();
                if !ips.iter().any(|f| f.ip.is_ipv6()) {
                    if let Some(s6) = first6() {
                        ips.extend(self.resolve_fixed_ips(&spec.network, &[s6], owner, None)?);
                    }
                }
                ips
            }
            (None, None) => {
                let Some(s) = Ctx::scan(self)
                    .subnets_of(&spec.network)
                    .into_iter()
                    .find(|s| !is_v6(&s.cidr))
                else {
                    bail!(
                        "network {} has no IPv4 subnet to take router {}'s gateway address from",
                        spec.network,
                        cur.name
                    );
                };
                let first = FixedIpSpec {
                    subnet: Some(s.name.clone()),
                    ip: None,
                };
                let mut want = vec![first];
                want.extend(first6());
                self.resolve_fixed_ips(&spec.network, &want, owner, None)?
            }
        };
        Ok(Gateway {
            network: spec.network.clone(),
            ips,
            mac: match same {
                Some(g) => g.mac,
                None => self.generate_mac(&format!("router/{}/gateway", cur.name)),
            },
            enable_snat: spec
                .enable_snat
                .unwrap_or(same.map(|g| g.enable_snat).unwrap_or(true)),
        })
    }

    /// Turns fixed IP requests on `network` into addresses: explicit addresses
    /// first, then the lowest free address of each subnet asked for. Whether the
    /// explicit ones are free is for the caller's claim check. A port's
    /// (`eui64`: its MAC) address on an IPv6 subnet whose addresses are
    /// automatic ([`Subnet::auto_address`]) is the EUI-64 address of its MAC
    /// in the prefix, as the guest makes it by SLAAC (Neutron refuses any
    /// other).
    fn resolve_fixed_ips(
        &self,
        network: &str,
        specs: &[FixedIpSpec],
        owner: ObjId,
        eui64: Option<MacAddr>,
    ) -> Result<Vec<FixedIp>, ModelError> {
        let ctx = Ctx::scan(self);
        let mut wanted: Vec<(&Subnet, Option<IpAddr>)> = Vec::with_capacity(specs.len());
        for spec in specs {
            let w = match (&spec.subnet, spec.ip) {
                (None, None) => bail!("a fixed IP needs a subnet, an address or both"),
                (Some(s), ip) => {
                    let s = self.subnet(s)?;
                    if s.network != network {
                        bail!(
                            "subnet {} is on network {}, not on network {network}",
                            s.name,
                            s.network
                        );
                    }
                    if let Some(ip) = ip {
                        if !s.cidr.contains(&ip) {
                            bail!("{ip} is not inside subnet {} ({})", s.name, s.cidr);
                        }
                    }
                    (s, ip)
                }
                (None, Some(ip)) => match ctx
                    .subnets_of(network)
                    .into_iter()
                    .find(|s| s.cidr.contains(&ip))
                {
                    Some(s) => (s, Some(ip)),
                    None => bail!("{ip} is not inside any subnet of network {network}"),
                },
            };
            let w = match (eui64, w.0.cidr) {
                (Some(mac), IpNet::V6(c)) if w.0.auto_address() => {
                    let ll = crate::tables::eui64_link_local(mac).octets();
                    let mut a = c.network().octets();
                    a[8..].copy_from_slice(&ll[8..]);
                    let a = IpAddr::V6(a.into());
                    if w.1.is_some_and(|ip| ip != a) {
                        bail!(
                            "subnet {} has automatic addresses ({}): a port with MAC {mac} has {a} there, not {}",
                            w.0.name,
                            w.0.ipv6_address_mode.or(w.0.ipv6_ra_mode).map_or("", |m| m.as_str()),
                            w.1.unwrap_or(a)
                        );
                    }
                    (w.0, Some(a))
                }
                _ => w,
            };
            wanted.push(w);
        }
        let mut taken: HashSet<IpAddr> = wanted.iter().filter_map(|w| w.1).collect();
        let mut used: HashMap<&str, Box<dyn Fn(IpAddr) -> bool + '_>> = HashMap::new();
        let mut out = Vec::with_capacity(wanted.len());
        for (s, ip) in wanted {
            let ip = match ip {
                Some(ip) => ip,
                None => {
                    let used = used
                        .entry(s.name.as_str())
                        .or_insert_with(|| ctx.ip_user(network, &s.cidr, Some(owner)));
                    let Some(ip) = lowest_free(&s.cidr, |a| {
                        Some(a) == s.gateway_ip || used(a) || taken.contains(&a)
                    }) else {
                        bail!("subnet {} ({}) has no free address", s.name, s.cidr);
                    };
                    taken.insert(ip);
                    ip
                }
            };
            out.push(FixedIp {
                subnet: s.name.clone(),
                ip,
            });
        }
        Ok(out)
    }

    /// The lowest free address of the IPv4 subnets of external network `network`.
    fn allocate_fip(&self, network: &str) -> Result<Ipv4Addr, ModelError> {
        let ctx = Ctx::scan(self);
        let mut best: Option<Ipv4Addr> = None;
        let mut any_v4 = false;
        for s in ctx.subnets_of(network) {
            if is_v6(&s.cidr) {
                continue;
            }
            any_v4 = true;
            let used = ctx.ip_user(network, &s.cidr, None);
            if let Some(IpAddr::V4(a)) =
                lowest_free(&s.cidr, |a| Some(a) == s.gateway_ip || used(a))
            {
                best = Some(best.map_or(a, |b| b.min(a)));
            }
        }
        match best {
            Some(a) => Ok(a),
            None if !any_v4 => bail!("network {network} has no IPv4 subnet for floating IPs"),
            None => bail!("network {network} has no free IPv4 address for a floating IP"),
        }
    }

    /// Floating IP `cur` associated with `port` (its fixed IP `fixed_ip`, or its
    /// first IPv4 one) through the router that connects that subnet to the
    /// floating IP's network: checked, not written.
    fn associated(
        &self,
        cur: &FloatingIp,
        port: &str,
        fixed_ip: Option<Ipv4Addr>,
    ) -> Result<FloatingIp, ModelError> {
        let address = cur.address;
        if let Some(p) = &cur.port {
            bail!("floating IP {address} is already associated with port {p}; unset it first");
        }
        let p = self.port(port)?;
        let ctx = Ctx::scan(self);
        ctx.check_fip_port(cur, p)?;
        let v4 = |f: &&FixedIp| f.ip.is_ipv4();
        let fixed = match fixed_ip {
            None => match p.fixed_ips.iter().find(v4) {
                Some(f) => f,
                None => bail!("port {port} has no IPv4 fixed IP for floating IP {address}"),
            },
            Some(ip) => match p.fixed_ips.iter().find(|f| f.ip == IpAddr::V4(ip)) {
                Some(f) => f,
                None => bail!("{ip} is not an IPv4 fixed IP of port {port}"),
            },
        };
        let IpAddr::V4(fixed_v4) = fixed.ip else {
            unreachable!("an IPv4 fixed IP")
        };
        let Some(router) = self
            .index()
            .rel(Rel::RoutersByIfaceSubnet, &fixed.subnet)
            .filter_map(|k| self.routers.get(k.name()))
            .find(|r| router_connects(r, &fixed.subnet, &cur.network))
        else {
            bail!(
                "no router connects subnet {} to external network {}",
                fixed.subnet,
                cur.network
            );
        };
        let mut f = cur.clone();
        f.port = Some(port.to_owned());
        f.fixed_ip = Some(fixed_v4);
        f.router = Some(router.name.clone());
        // What `check_fip` asks of an association (the port, on an internal
        // network, has that fixed IP; the router connects its subnet to the
        // floating IP's network) was established above, on a floating IP that
        // was valid without it: not looked up all over again.
        debug_assert_eq!(ctx.check_fip(&f), Ok(()));
        ctx.check_new_claims(ObjRef::Fip(&f), Some(ObjRef::Fip(cur)))?;
        Ok(f)
    }

    /// A floating IP associated through router `router`.
    fn fip_served_by(&self, router: &str) -> Option<&FloatingIp> {
        self.index()
            .rel(Rel::FipsByRouter, router)
            .filter_map(|k| self.floating_ips.get(&k.address()))
            .find(|f| f.router.as_deref() == Some(router))
    }

    /// The subnets router `r` reaches (interfaces and gateway), for nexthops.
    fn reach(&self, r: &Router) -> Vec<IpNet> {
        r.interfaces
            .iter()
            .map(|i| &i.subnet)
            .chain(
                r.gateway
                    .iter()
                    .flat_map(|g| g.ips.iter().map(|f| &f.subnet)),
            )
            .filter_map(|s| self.subnets.get(s).map(|s| s.cidr))
            .collect()
    }

    /// Making `name` external: no router interface on its subnets, no floating IP
    /// on a port of it.
    fn check_can_become_external(&self, ctx: &Ctx, name: &str) -> Result<(), ModelError> {
        let subnets: HashSet<&str> = ctx
            .subnets_of(name)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let idx = self.index();
        let routers: BTreeSet<&ObjKey> = subnets
            .iter()
            .flat_map(|s| idx.rel(Rel::RoutersByIfaceSubnet, s))
            .collect();
        for r in routers
            .into_iter()
            .filter_map(|k| self.routers.get(k.name()))
        {
            if let Some(i) = r
                .interfaces
                .iter()
                .find(|i| subnets.contains(i.subnet.as_str()))
            {
                bail!(
                    "subnet {} of network {name} is an interface of router {}; a network with router interfaces cannot become external",
                    i.subnet,
                    r.name
                );
            }
        }
        let fips: BTreeSet<&ObjKey> = idx
            .rel(Rel::PortsByNetwork, name)
            .flat_map(|p| idx.rel(Rel::FipsByPort, p.name()))
            .collect();
        for f in fips
            .into_iter()
            .filter_map(|k| self.floating_ips.get(&k.address()))
        {
            if let Some(p) = &f.port {
                if self.ports.get(p).is_some_and(|p| p.network == name) {
                    bail!(
                        "floating IP {} is associated with port {p} on network {name}; a network with floating IP ports cannot become external",
                        f.address
                    );
                }
            }
        }
        Ok(())
    }

    /// Making `name` internal: no floating IP and no router gateway on it.
    fn check_can_become_internal(&self, name: &str) -> Result<(), ModelError> {
        if let Some(f) = self.index().rel(Rel::FipsByNetwork, name).next() {
            bail!(
                "floating IP {} is on network {name}, which must stay external; delete it first",
                f.address()
            );
        }
        if let Some(r) = self.index().rel(Rel::RoutersByGwNetwork, name).next() {
            bail!(
                "router {} has its external gateway on network {name}, which must stay external; unset it first",
                r.name()
            );
        }
        Ok(())
    }
}

/// Adds `new` pairs to `pairs`, each checked; a pair already there is ignored.
fn add_pairs(pairs: &mut Vec<AllowedPair>, new: &[AllowedPair]) -> Result<(), ModelError> {
    for pair in new {
        check_pair(pair)?;
        if !pairs.contains(pair) {
            pairs.push(pair.clone());
        }
    }
    Ok(())
}

/// What [`Change::SubnetCreate`] says of DHCP.
struct DhcpSpec<'a> {
    enable: bool,
    dns: &'a Vec<IpAddr>,
    routes: &'a Vec<crate::model::types::Route>,
    ra_mode: Option<crate::model::types::Ipv6Mode>,
    address_mode: Option<crate::model::types::Ipv6Mode>,
}
