//! The objects of the control-plane model (docs/BEHAVIOUR.md, "Objects") and the
//! changes that `dvr-ctl` asks for. Objects are named: a name is the object's id
//! and is unique among objects of its kind (floating IPs are named by address).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::config::AgentMode;
use crate::mac::MacAddr;

/// A node running dvr-pmd, as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    pub agent_mode: AgentMode,
    pub vtep: Option<Ipv4Addr>,
    pub dvr_mac: Option<MacAddr>,
    /// The host's address and MAC on the external network (FIP gateway port).
    pub fip_gateway: Option<FipGateway>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FipGateway {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkType {
    Vxlan,
    Gre,
    Vlan,
    Flat,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    pub network_type: NetworkType,
    /// VNI (vxlan, 24 bits), key (gre, 32 bits), VLAN id (1..=4094); none for flat.
    pub segment: Option<u32>,
    pub mtu: u16,
    /// `router:external`: floating IPs and router gateways live here.
    pub external: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    pub name: String,
    pub network: String,
    pub cidr: IpNet,
    pub gateway_ip: Option<IpAddr>,
    /// DHCP answered on each VM's own host (`--dhcp`, Neutron's default;
    /// on IPv6 subnets with a `dhcpv6-*` address mode, DHCPv6).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enable_dhcp: bool,
    /// The DNS servers DHCP hands out (`--dns-nameserver`), at most
    /// [`MAX_DNS_NAMESERVERS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_nameservers: Vec<IpAddr>,
    /// Routes DHCP hands out besides the default one (`--host-route
    /// destination=CIDR,gateway=IP`), at most [`MAX_HOST_ROUTES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_routes: Vec<Route>,
    /// IPv6 only: what the router's advertisements say (`--ipv6-ra-mode`);
    /// None: the router sends none for this subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_ra_mode: Option<Ipv6Mode>,
    /// IPv6 only: how VMs get their addresses (`--ipv6-address-mode`);
    /// with `dhcpv6-stateful` or `dhcpv6-stateless` DHCPv6 is answered on
    /// each VM's own host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address_mode: Option<Ipv6Mode>,
}

/// A subnet's `ipv6_ra_mode` or `ipv6_address_mode` (Neutron's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ipv6Mode {
    /// Addresses by SLAAC from the advertised prefix (EUI-64 of the MAC).
    Slaac,
    /// Addresses and other configuration by DHCPv6 (M flag).
    Dhcpv6Stateful,
    /// Addresses by SLAAC, other configuration (DNS) by DHCPv6 (O flag).
    Dhcpv6Stateless,
}

impl Ipv6Mode {
    /// Neutron's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Ipv6Mode::Slaac => "slaac",
            Ipv6Mode::Dhcpv6Stateful => "dhcpv6-stateful",
            Ipv6Mode::Dhcpv6Stateless => "dhcpv6-stateless",
        }
    }
}

impl std::str::FromStr for Ipv6Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "slaac" => Ok(Ipv6Mode::Slaac),
            "dhcpv6-stateful" => Ok(Ipv6Mode::Dhcpv6Stateful),
            "dhcpv6-stateless" => Ok(Ipv6Mode::Dhcpv6Stateless),
            _ => Err(format!(
                "{s:?}: one of slaac, dhcpv6-stateful, dhcpv6-stateless"
            )),
        }
    }
}

impl Subnet {
    /// Whether a port's address on this subnet is the EUI-64 address of
    /// its MAC in the prefix (Neutron's `is_auto_address_subnet`): address
    /// mode `slaac` or `dhcpv6-stateless`, or, with no address mode, such
    /// an RA mode.
    pub fn auto_address(&self) -> bool {
        matches!(
            self.ipv6_address_mode.or(self.ipv6_ra_mode),
            Some(Ipv6Mode::Slaac | Ipv6Mode::Dhcpv6Stateless)
        )
    }
}

/// The most DNS servers a subnet hands out (Neutron's `max_dns_nameservers`).
pub const MAX_DNS_NAMESERVERS: usize = 5;
/// The most host routes a subnet hands out (Neutron's `max_subnet_host_routes`).
pub const MAX_HOST_ROUTES: usize = 20;

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedIp {
    pub subnet: String,
    pub ip: IpAddr,
}

/// An allowed address pair: an address or a whole prefix (beyond Neutron's OVS
/// DVR), optionally with its own MAC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedPair {
    pub ip: IpNet,
    #[serde(default)]
    pub mac: Option<MacAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub name: String,
    pub network: String,
    pub mac: MacAddr,
    pub fixed_ips: Vec<FixedIp>,
    /// The host the port is bound to (`binding:host_id`).
    pub host: Option<String>,
    pub port_security: bool,
    pub allowed_address_pairs: Vec<AllowedPair>,
    /// The dataplane port of the bound host that carries this port (a `[[ports]]`
    /// name of that host's configuration: a vhost-user socket, a veth, a tap).
    pub binding: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub destination: IpNet,
    pub nexthop: IpAddr,
}

/// A router's interface on one subnet: its gateway address and the router's MAC
/// there (the same on every host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub subnet: String,
    pub ip: IpAddr,
    pub mac: MacAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub network: String,
    pub ips: Vec<FixedIp>,
    pub mac: MacAddr,
    pub enable_snat: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Router {
    pub name: String,
    pub distributed: bool,
    pub ha: bool,
    pub admin_state_up: bool,
    pub interfaces: Vec<Interface>,
    pub gateway: Option<Gateway>,
    pub routes: Vec<Route>,
    /// The `dvr_snat` host holding the centralized SNAT of this router.
    pub snat_host: Option<String>,
    /// How the router's IPv6 traffic to and from outside is routed (none:
    /// [`Ipv6NorthSouth::Distributed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_north_south: Option<Ipv6NorthSouth>,
}

/// How a router's IPv6 north-south traffic (routed, never translated) is
/// routed (docs/BEHAVIOUR.md, section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ipv6NorthSouth {
    /// Each compute node routes its own VMs' traffic through its own
    /// external port (from its FIP gateway MAC) and answers neighbour
    /// solicitations for their addresses there.
    #[default]
    Distributed,
    /// Neutron's: through the router's `dvr_snat` node, from the router
    /// gateway's IPv6 address.
    Central,
}

impl std::fmt::Display for Ipv6NorthSouth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ipv6NorthSouth::Distributed => "distributed",
            Ipv6NorthSouth::Central => "central",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloatingIp {
    pub address: Ipv4Addr,
    pub network: String,
    pub port: Option<String>,
    pub fixed_ip: Option<Ipv4Addr>,
    /// The router that serves the association (found when associated).
    pub router: Option<String>,
}

/// A fixed IP as asked for (`--fixed-ip subnet=S,ip-address=IP`): a subnet (the
/// next free address in it), an address (its subnet is the one containing it),
/// or both. A port created with no fixed IPs at all gets the next free address of
/// the first subnet of each IP family of its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FixedIpSpec {
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    pub network: String,
    #[serde(default)]
    pub enable_snat: Option<bool>,
    #[serde(default)]
    pub fixed_ip: Option<FixedIpSpec>,
}

/// One change to the model. A request carries a list of them: a transaction,
/// validated whole and applied whole or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Registers a host or replaces its record.
    HostSet {
        name: String,
        agent_mode: AgentMode,
        #[serde(default)]
        vtep: Option<Ipv4Addr>,
        #[serde(default)]
        dvr_mac: Option<MacAddr>,
        #[serde(default)]
        fip_gateway: Option<FipGateway>,
    },
    HostDelete {
        name: String,
    },
    NetworkCreate {
        name: String,
        network_type: NetworkType,
        #[serde(default)]
        segment: Option<u32>,
        #[serde(default)]
        mtu: Option<u16>,
        #[serde(default)]
        external: bool,
    },
    NetworkSet {
        name: String,
        #[serde(default)]
        mtu: Option<u16>,
        #[serde(default)]
        external: Option<bool>,
    },
    NetworkDelete {
        name: String,
    },
    SubnetCreate {
        name: String,
        network: String,
        cidr: IpNet,
        /// None: the first address of the range; Some(None) is `--gateway none`.
        /// In JSON: absent is None, `null` is Some(None).
        #[serde(
            default,
            deserialize_with = "present",
            skip_serializing_if = "Option::is_none"
        )]
        gateway_ip: Option<Option<IpAddr>>,
        /// None: enabled (Neutron's default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enable_dhcp: Option<bool>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dns_nameservers: Vec<IpAddr>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        host_routes: Vec<Route>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ipv6_ra_mode: Option<Ipv6Mode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ipv6_address_mode: Option<Ipv6Mode>,
    },
    /// `openstack subnet set`: DHCP on or off; with `clear_*` the list is
    /// emptied first (`--no-dns-nameservers`, `--no-host-route`), then the
    /// given entries are added (`--dns-nameserver`, `--host-route`).
    SubnetSet {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enable_dhcp: Option<bool>,
        #[serde(default, skip_serializing_if = "is_false")]
        clear_dns_nameservers: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dns_nameservers: Vec<IpAddr>,
        #[serde(default, skip_serializing_if = "is_false")]
        clear_host_routes: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        host_routes: Vec<Route>,
    },
    SubnetDelete {
        name: String,
    },
    PortCreate {
        name: String,
        network: String,
        #[serde(default)]
        mac: Option<MacAddr>,
        #[serde(default)]
        fixed_ips: Vec<FixedIpSpec>,
        #[serde(default)]
        host: Option<String>,
        #[serde(default)]
        port_security: Option<bool>,
        #[serde(default)]
        allowed_address_pairs: Vec<AllowedPair>,
        #[serde(default)]
        binding: Option<String>,
    },
    PortSet {
        name: String,
        #[serde(default)]
        host: Option<String>,
        #[serde(default)]
        binding: Option<String>,
        #[serde(default)]
        port_security: Option<bool>,
        /// Added to the port's pairs.
        #[serde(default)]
        allowed_address_pairs: Vec<AllowedPair>,
    },
    PortUnset {
        name: String,
        #[serde(default)]
        host: bool,
        #[serde(default)]
        binding: bool,
        /// Removed from the port's pairs.
        #[serde(default)]
        allowed_address_pairs: Vec<AllowedPair>,
    },
    PortDelete {
        name: String,
    },
    RouterCreate {
        name: String,
        /// None: the deployment default (distributed).
        #[serde(default)]
        distributed: Option<bool>,
        #[serde(default)]
        ha: bool,
        #[serde(default = "yes")]
        admin_state_up: bool,
    },
    RouterSet {
        name: String,
        #[serde(default)]
        admin_state_up: Option<bool>,
        #[serde(default)]
        distributed: Option<bool>,
        #[serde(default)]
        ha: Option<bool>,
        #[serde(default)]
        external_gateway: Option<GatewaySpec>,
        /// Added to the router's extra routes.
        #[serde(default)]
        routes: Vec<Route>,
        #[serde(default)]
        snat_host: Option<String>,
        /// How the router's IPv6 north-south traffic is routed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ipv6_north_south: Option<Ipv6NorthSouth>,
    },
    RouterUnset {
        name: String,
        #[serde(default)]
        external_gateway: bool,
        /// Removed from the router's extra routes.
        #[serde(default)]
        routes: Vec<Route>,
    },
    RouterDelete {
        name: String,
    },
    RouterAddSubnet {
        router: String,
        subnet: String,
    },
    RouterRemoveSubnet {
        router: String,
        subnet: String,
    },
    FloatingIpCreate {
        network: String,
        #[serde(default)]
        address: Option<Ipv4Addr>,
        #[serde(default)]
        port: Option<String>,
        #[serde(default)]
        fixed_ip: Option<Ipv4Addr>,
    },
    FloatingIpSet {
        address: Ipv4Addr,
        port: String,
        #[serde(default)]
        fixed_ip: Option<Ipv4Addr>,
    },
    FloatingIpUnset {
        address: Ipv4Addr,
    },
    FloatingIpDelete {
        address: Ipv4Addr,
    },
}

fn yes() -> bool {
    true
}

/// A field that is present (even as `null`) is `Some`: with `default`, an
/// `Option<Option<T>>` tells "absent" (None) from "null" (Some(None)).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The kinds of objects, for show / list / delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Host,
    Network,
    Subnet,
    Port,
    Router,
    FloatingIp,
}

impl NetworkType {
    /// The name used in the API and in messages: `vxlan`, `gre`, `vlan`, `flat`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkType::Vxlan => "vxlan",
            NetworkType::Gre => "gre",
            NetworkType::Vlan => "vlan",
            NetworkType::Flat => "flat",
        }
    }
}

impl std::fmt::Display for NetworkType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Kind {
    /// The kind as a person reads it: `host`, ..., `floating IP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Network => "network",
            Kind::Subnet => "subnet",
            Kind::Port => "port",
            Kind::Router => "router",
            Kind::FloatingIp => "floating IP",
        }
    }

    /// The name in requests and replies: `host`, ..., `floating_ip`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Network => "network",
            Kind::Subnet => "subnet",
            Kind::Port => "port",
            Kind::Router => "router",
            Kind::FloatingIp => "floating_ip",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
