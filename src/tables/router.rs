//! One router's tables: interfaces, FIB, neighbours, the resolved IPv4
//! forwarding trie ([`Adj`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::{Dest, FipEntry, IntMap, IpMap, SnatSettings};
use crate::fib::{Fib, Trie4};
use crate::mac::MacAddr;

/// A router interface as the dataplane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub subnet: String,
    pub network: String,
    pub net: u32,
    pub cidr: IpNet,
    pub ip: IpAddr,
    pub mac: MacAddr,
}

/// A neighbour of a router: an address on a connected subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub mac: MacAddr,
    pub port: String,
    pub dest: Dest,
}

/// One router's compiled tables.
#[derive(Debug, Clone)]
pub struct RouterTables {
    pub name: String,
    pub distributed: bool,
    pub interfaces: Vec<Iface>,
    /// Connected subnets, extra routes, the default route through the gateway.
    pub fib: Arc<Fib>,
    /// Addresses on the router's connected subnets and their MACs (from the
    /// model's ports: no ARP needed), and where each lives.
    pub neighbors: Arc<IpMap<Neighbor>>,
    /// IPv4 forwarding resolved at compile time: the longest match of a
    /// destination gives what to do with it in one lookup (see [`Adj`]).
    pub fwd4: Arc<Trie4<Adj>>,
    /// Floating IPs served through this router, by fixed IP (shared parts
    /// above: a floating IP change recompiles only this).
    pub fips: IntMap<Ipv4Addr, FipEntry>,
    /// The external gateway and its SNAT settings, if the router has one.
    pub snat: Option<SnatSettings>,
    /// Where the router routes: everywhere (distributed), or on its central
    /// node only (`legacy`: the other nodes switch to it over the overlay).
    pub home: Home,
    /// The upstream router of the external gateway's IPv4 subnet: the next
    /// hop of north-south traffic (its MAC is resolved by ARP on the external
    /// port).
    pub upstream: Option<Ipv4Addr>,
    /// The upstream router of the external gateway's IPv6 subnet: the next
    /// hop of IPv6 north-south traffic (resolved by neighbour discovery on
    /// the external port).
    pub upstream6: Option<Ipv6Addr>,
    /// The router's IPv6 north-south traffic goes through its SNAT node
    /// (`central`, or the router is not distributed), not out of each
    /// compute node's external port.
    pub v6_central: bool,
    /// The router's floating IPs that have a fixed IP: floating → fixed
    /// (hairpin: a VM reaching another VM's floating IP).
    pub floating: IntMap<Ipv4Addr, Ipv4Addr>,
}

/// Where a router routes, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// Distributed: on every node.
    Everywhere,
    /// Not distributed, and this node is its central node (`snat_host`).
    Here,
    /// Not distributed, on another host (index), reached over the overlay.
    Host(u16),
    /// Not distributed and no central node known: routes nowhere.
    Nowhere,
}

/// What the IPv4 forwarding table of a router says about a destination:
/// resolved when the router's tables are compiled (the model knows every
/// neighbour), so that forwarding is one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adj {
    /// One of the router's own addresses (interface `iface`).
    Local { iface: u16 },
    /// Forward through interface `iface` to `mac`, which lives at `dest`.
    Neighbor {
        iface: u16,
        mac: MacAddr,
        dest: Dest,
    },
    /// On a connected subnet (or via an address on one) where no port has the
    /// address.
    Unknown { iface: u16 },
    /// Via a next hop that is not on a connected subnet (north-south).
    External,
}

impl RouterTables {
    /// The ports whose addresses this router's neighbour table holds.
    pub(crate) fn neighbor_ports(&self) -> impl Iterator<Item = &str> {
        self.neighbors.values().map(|n| n.port.as_str())
    }
}
