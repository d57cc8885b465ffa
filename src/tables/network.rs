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
}

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
