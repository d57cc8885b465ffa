//! One network's tables: FDB, the ARP / ND responder's addresses, gateways, VIPs.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use super::{Dest, IpMap};
use crate::l2::MacTable;
use crate::mac::MacAddr;
use crate::model::NetworkType;

/// A router interface on a network, as the network's tables see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gw {
    pub cidr: IpNet,
    pub ip: IpAddr,
    pub mac: MacAddr,
    pub router: u32,
    pub iface: u16,
}

/// One network's tables.
#[derive(Debug, Clone)]
pub struct NetTables {
    pub name: String,
    pub kind: NetworkType,
    pub segment: u32,
    pub mtu: u16,
    pub external: bool,
    /// Destination MAC → where it is.
    pub fdb: MacTable<Dest>,
    /// The addresses the ARP / ND responder answers for, with their MACs.
    pub arp: IpMap<MacAddr>,
    /// The enabled router interfaces on this network.
    pub gateways: Vec<Gw>,
    /// Other hosts with ports here (head-end replication), by host index.
    pub remote_hosts: Vec<u16>,
    /// This node's ports here.
    pub local_ports: Vec<u16>,
    /// The allowed address pairs of the network's ports (a VIP such as a
    /// keepalived address may be held by any of them), by where the port is.
    pub vips: Vec<Vip>,
    /// The VIPs' holders as learned from the ports (a gratuitous ARP, an
    /// ARP reply, an unsolicited NA that passed port security): address →
    /// MAC. Set by the control thread ([`crate::compile::Compiler::set_vip_holder`]).
    pub holders: IpMap<MacAddr>,
    /// The network's IPv4 subnets whose DHCP this node answers for its
    /// VM ports ([`crate::pipeline::dhcp`]).
    pub dhcp4: Vec<Dhcp4>,
    /// What answers a VM port's router solicitation on this network
    /// ([`crate::pipeline::ra`]); None: no IPv6 subnet here has an RA mode
    /// and a router interface.
    pub ra6: Option<Ra6>,
    /// The network's IPv6 subnets whose DHCPv6 this node answers for its
    /// VM ports ([`crate::pipeline::dhcp6`]).
    pub dhcp6: Vec<Dhcp6>,
}

/// A router advertisement, made at compile time: one router's interfaces
/// on the network's IPv6 subnets with an `ipv6_ra_mode`, all their prefixes
/// in one message (as Neutron's radvd advertises a router port's subnets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ra6 {
    /// The subnets advertised, by name.
    pub subnets: Vec<String>,
    /// The router interface's MAC (the source, and the source link-layer
    /// option) and its EUI-64 link-local address (the source address).
    pub mac: MacAddr,
    pub src: Ipv6Addr,
    /// The ICMPv6 message from its type through its last option, its
    /// checksum zero: flags, router lifetime, then the source link-layer
    /// address, MTU, prefix information and RDNSS options.
    pub body: Box<[u8]>,
}

/// DHCPv6 of one IPv6 subnet (`dhcpv6-stateful` or `dhcpv6-stateless`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp6 {
    /// The subnet's name.
    pub subnet: String,
    /// The subnet's prefix and mask.
    pub net: u128,
    pub mask: u128,
    /// `dhcpv6-stateful`: a port's address on the subnet is leased (IA_NA).
    pub stateful: bool,
    /// The source MAC of replies (the router interface's on the subnet,
    /// else [`DHCP_SERVER_MAC`]), the server's DUID-LL is made of it, and
    /// its EUI-64 link-local address is the replies' source.
    pub server_mac: MacAddr,
    pub server_ip: Ipv6Addr,
    /// The DNS recursive name server option (23), whole, or empty when the
    /// subnet has no IPv6 DNS server.
    pub dns: Box<[u8]>,
}

/// DHCPv4 of one subnet, as its replies carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp4 {
    /// The subnet's name.
    pub subnet: String,
    /// The subnet, as host-order words: its prefix and mask.
    pub net: u32,
    pub mask: u32,
    /// The server identifier (option 54) and source address of replies:
    /// the subnet's gateway IP, else its last host address.
    pub server: u32,
    /// The source MAC of replies: the router interface's on the subnet,
    /// else [`DHCP_SERVER_MAC`].
    pub server_mac: MacAddr,
    /// The options every reply carries after its message type, server
    /// identifier and lease times, in wire form: subnet mask (1), router (3),
    /// DNS servers (6), interface MTU (26), classless static routes (121).
    pub options: Box<[u8]>,
}

/// The source MAC of DHCP replies on a subnet no router interface serves
/// (locally administered; OVN's `server_mac` plays this part).
pub const DHCP_SERVER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0xd4, 0xc0]);

/// The most VIP holders a network remembers (a port with a wide pair
/// cannot grow the tables without bound).
pub const MAX_HOLDERS: usize = 4096;

/// An allowed address pair of a port: any address of `cidr` may be the
/// port's, with `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vip {
    pub cidr: IpNet,
    pub mac: MacAddr,
    pub dest: Dest,
}

/// The link-local address (`fe80::/64`, modified EUI-64) a port with `mac`
/// gives itself.
pub fn eui64_link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

impl NetTables {
    /// The VIP entries that may hold `ip`.
    pub fn vips_of(&self, ip: IpAddr) -> impl Iterator<Item = &Vip> + '_ {
        self.vips.iter().filter(move |v| v.cidr.contains(&ip))
    }

    /// Where `ip`, an address inside allowed address pairs, lives: its
    /// learned holder, else the one port whose pairs cover it. `None` when
    /// no pair covers it, or several ports may hold it and none has said so.
    pub fn vip_holder(&self, ip: IpAddr) -> Option<(MacAddr, Dest)> {
        if let Some(&mac) = self.holders.get(&ip) {
            if let Some(v) = self.vips_of(ip).find(|v| v.mac == mac) {
                return Some((v.mac, v.dest));
            }
        }
        let mut c = self.vips_of(ip);
        let first = c.next()?;
        c.all(|v| v.mac == first.mac && v.dest == first.dest)
            .then_some((first.mac, first.dest))
    }
}
