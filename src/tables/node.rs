//! The node's own tables: itself, the other hosts, its dataplane ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::IntMap;
use crate::config::PortRole;
use crate::l2::MacTable;
use crate::mac::MacAddr;
use crate::wire::checksum::csum_add;
use crate::wire::{ethernet, ipv4};

/// Another host, as the overlay reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub name: String,
    pub vtep: Ipv4Addr,
    pub dvr_mac: Option<MacAddr>,
}

/// What the node knows of itself and of the other hosts.
#[derive(Debug, Clone, Default)]
pub struct NodeTables {
    pub name: String,
    pub vtep: Option<Ipv4Addr>,
    pub dvr_mac: Option<MacAddr>,
    /// The underlay port (index, MAC), if the node has one.
    pub underlay: Option<(u16, MacAddr)>,
    /// The other hosts with a VTEP, by name.
    pub hosts: Vec<HostEntry>,
    /// The other hosts' DVR MACs (value: host index).
    pub dvr_macs: MacTable<u16>,
    /// The other hosts by VTEP (value: host index).
    pub by_vtep: IntMap<Ipv4Addr, u16>,
    /// Network index by VXLAN VNI, GRE key and VLAN id.
    pub by_vni: IntMap<u32, u32>,
    pub by_gre_key: IntMap<u32, u32>,
    pub by_vlan: IntMap<u32, u32>,
    /// Resolved underlay neighbours: VTEP → MAC.
    pub vtep_macs: IntMap<Ipv4Addr, MacAddr>,
    /// The outer Ethernet and IPv4 headers toward each host (by host index),
    /// ready to copy; `None` while its VTEP is unresolved (see [`Outer`]).
    pub outer: Vec<Option<Outer>>,
    /// The external port (index), if the node has one.
    pub external: Option<u16>,
    /// This host's FIP gateway port on the external network (address, MAC):
    /// the source MAC of floating IP traffic it sends, the MAC its proxy ARP
    /// answers with.
    pub fip_gw: Option<(Ipv4Addr, MacAddr)>,
    /// Resolved IPv6 neighbours on the external network (the upstream
    /// routers' IPv6 addresses) → MAC.
    pub nd_macs: IntMap<Ipv6Addr, MacAddr>,
}

/// The outer Ethernet + IPv4 header of the tunnels toward one host, built when
/// the tables are: this VTEP to the host's, TTL 64, DF, the protocol left 0
/// and the total length 0 (the encapsulation writes both and completes the
/// checksum from `sum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    pub hdr: [u8; 34],
    /// The one's complement sum of the IPv4 header as built (not folded).
    pub sum: u32,
}

impl NodeTables {
    /// The outer headers toward every host, from the resolved VTEP MACs.
    pub fn outer_headers(&self) -> Vec<Option<Outer>> {
        self.hosts
            .iter()
            .map(|h| {
                let (vtep, (_, ul_mac)) = (self.vtep?, self.underlay?);
                let nh = self.vtep_macs.get(&h.vtep)?;
                let mut hdr = [0u8; 34];
                ethernet::write(&mut hdr, &nh.0, &ul_mac.0, ethernet::ETHERTYPE_IPV4);
                let ip = &mut hdr[ethernet::HEADER_LEN..];
                ipv4::write(ip, 0, 64, 0, vtep.octets(), h.vtep.octets());
                ip[ipv4::field::CHECKSUM].fill(0);
                Some(Outer {
                    hdr,
                    sum: csum_add(0, &hdr[ethernet::HEADER_LEN..]),
                })
            })
            .collect()
    }
}

/// A VM port of this node bound to a model port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPort {
    pub name: String,
    pub network: String,
    pub net: u32,
    pub mac: MacAddr,
    pub security: bool,
    pub ips: Vec<IpAddr>,
    /// The IPv4 addresses of `ips`, as host-order integers (port security's
    /// common case, checked without building an `IpAddr`).
    pub ips4: Vec<u32>,
    /// Allowed address pairs: a prefix and the MAC it may use (None: the port's).
    pub pairs: Vec<(IpNet, Option<MacAddr>)>,
    pub index: u16,
}

/// What a dataplane port is to the pipeline.
#[derive(Debug, Clone)]
pub enum Slot {
    /// A VM port; `None` when no model port is bound to it (the configuration's
    /// static table switches it).
    Vm(Option<Arc<VmPort>>),
    Underlay,
    External,
}

/// The dataplane side of a node, as the compiler needs it.
#[derive(Debug, Clone)]
pub struct NodePorts {
    /// This node's name (model ports with `host` equal to it are local).
    pub node: String,
    /// Dataplane ports, in port index order.
    pub ports: Vec<DpPort>,
    /// The configuration's static FDB.
    pub static_fdb: Vec<(MacAddr, u16)>,
    /// The configuration's VTEP and DVR MAC (the model's host record wins).
    pub vtep: Option<Ipv4Addr>,
    pub dvr_mac: Option<MacAddr>,
    /// The configuration's static underlay neighbours (VTEP → MAC).
    pub vtep_macs: Vec<(Ipv4Addr, MacAddr)>,
}

/// A dataplane port: its configured name and role, and its MAC once started.
/// A port deleted at run time leaves a hole (no name), so that the others
/// keep their indexes; the next port added takes it.
#[derive(Debug, Clone)]
pub struct DpPort {
    pub name: String,
    pub role: PortRole,
    pub mac: MacAddr,
}

impl DpPort {
    /// The slot of a deleted port.
    pub fn hole() -> DpPort {
        DpPort {
            name: String::new(),
            role: PortRole::Vm,
            mac: MacAddr::default(),
        }
    }

    pub fn is_hole(&self) -> bool {
        self.name.is_empty()
    }
}

impl NodePorts {
    pub fn index_of(&self, name: &str) -> Option<u16> {
        if name.is_empty() {
            return None;
        }
        self.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
    }

    /// The external port's index, if the node has one.
    pub fn external(&self) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| p.role == PortRole::External)
            .map(|i| i as u16)
    }

    pub fn has_external(&self) -> bool {
        self.external().is_some()
    }
}
