//! The external network's addresses: floating IPs and routers' gateway
//! addresses, and the SNAT that runs on this node.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use serde::Serialize;

use super::{Dest, IntMap, RouterTables};
use crate::mac::MacAddr;

/// What an address of the external network is to this node ([`crate::tables::Snapshot::ext`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtAddr {
    /// A floating IP of router `router` (index), associated with `fixed`;
    /// `here`: this node serves it (its port is bound here; or, `central`,
    /// the router's SNAT node is this node).
    Fip {
        router: u32,
        fixed: Ipv4Addr,
        here: bool,
        central: bool,
    },
    /// The external gateway IP of router `router`, whose port has `mac`;
    /// `here`: the router's SNAT runs on this node.
    Gateway {
        router: u32,
        mac: MacAddr,
        here: bool,
    },
}

impl ExtAddr {
    fn router(&self) -> u32 {
        match *self {
            ExtAddr::Fip { router, .. } | ExtAddr::Gateway { router, .. } => router,
        }
    }
}

/// What a global IPv6 address is to this node's external port
/// ([`ExtMap::get6`]): IPv6 is routed, never translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtAddr6 {
    /// The address of a VM port bound here, behind router `router` (index),
    /// whose IPv6 north-south traffic is distributed: the external port
    /// answers neighbour solicitations for it (ND proxy, from this host's
    /// FIP gateway MAC) and routes what comes in for it.
    Vm { router: u32 },
    /// The IPv6 address of router `router`'s external gateway, whose port
    /// has `mac`, on its SNAT node (`central`): the external port answers
    /// neighbour solicitations for it; the upstream router reaches the
    /// router's tenant prefixes through it.
    Gateway { router: u32, mac: MacAddr },
    /// An address on a tenant subnet of router `router` (`central`, its
    /// SNAT node): what comes in for it to the gateway port's `mac` is
    /// routed to its VM, wherever that is.
    Tenant { router: u32, mac: MacAddr },
}

impl ExtAddr6 {
    fn router(&self) -> u32 {
        match *self {
            ExtAddr6::Vm { router }
            | ExtAddr6::Gateway { router, .. }
            | ExtAddr6::Tenant { router, .. } => router,
        }
    }
}

const EXT_SHARDS: usize = 64;

/// The external addresses every router of the node uses (floating IPs,
/// gateway IPs), in shards: a change copies one shard, not the whole map.
#[derive(Debug, Clone)]
pub struct ExtMap {
    shards: Vec<Arc<IntMap<Ipv4Addr, ExtAddr>>>,
    /// The IPv6 addresses, in shards too.
    v6: Vec<Arc<IntMap<Ipv6Addr, ExtAddr6>>>,
}

impl Default for ExtMap {
    fn default() -> Self {
        ExtMap {
            shards: (0..EXT_SHARDS).map(|_| Arc::default()).collect(),
            v6: (0..EXT_SHARDS).map(|_| Arc::default()).collect(),
        }
    }
}

impl ExtMap {
    #[inline]
    fn shard(a: Ipv4Addr) -> usize {
        (u32::from(a).wrapping_mul(0x9E37_79B9) >> 26) as usize % EXT_SHARDS
    }

    #[inline]
    pub fn get(&self, a: Ipv4Addr) -> Option<ExtAddr> {
        self.shards.get(Self::shard(a))?.get(&a).copied()
    }

    #[inline]
    fn shard6(a: Ipv6Addr) -> usize {
        let x = u128::from(a);
        let folded = (x as u32) ^ ((x >> 32) as u32) ^ ((x >> 64) as u32) ^ ((x >> 96) as u32);
        (folded.wrapping_mul(0x9E37_79B9) >> 26) as usize % EXT_SHARDS
    }

    /// What IPv6 address `a` is to the external port.
    #[inline]
    pub fn get6(&self, a: Ipv6Addr) -> Option<ExtAddr6> {
        self.v6.get(Self::shard6(a))?.get(&a).copied()
    }

    /// The IPv6 addresses, all.
    pub fn iter6(&self) -> impl Iterator<Item = (Ipv6Addr, ExtAddr6)> + '_ {
        self.v6.iter().flat_map(|s| s.iter().map(|(a, e)| (*a, *e)))
    }

    /// Whether the IPv6 addresses are `old`'s (unchanged since).
    pub fn same6(&self, old: &ExtMap) -> bool {
        self.v6.len() == old.v6.len() && self.v6.iter().zip(&old.v6).all(|(a, b)| Arc::ptr_eq(a, b))
    }

    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, ExtAddr)> + '_ {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(a, e)| (*a, *e)))
    }

    /// The entries of the shards that are not `old`'s (changed since), with
    /// whether each shard changed: for following changes without a scan of
    /// every address.
    pub fn changed_since<'a>(
        &'a self,
        old: &'a ExtMap,
    ) -> impl Iterator<Item = (usize, &'a IntMap<Ipv4Addr, ExtAddr>)> + 'a {
        self.shards
            .iter()
            .enumerate()
            .filter(move |(i, s)| old.shards.get(*i).is_none_or(|o| !Arc::ptr_eq(o, s)))
            .map(|(i, s)| (i, &**s))
    }

    /// The shard an address lives in.
    pub fn shard_of(a: Ipv4Addr) -> usize {
        Self::shard(a)
    }

    pub(crate) fn insert(&mut self, a: Ipv4Addr, e: ExtAddr) {
        Arc::make_mut(&mut self.shards[Self::shard(a)]).insert(a, e);
    }

    /// Removes `a` if router `router` holds it (another router may have
    /// taken it over in the same transaction).
    pub(crate) fn remove_of(&mut self, a: Ipv4Addr, router: u32) {
        let sh = &mut self.shards[Self::shard(a)];
        if sh.get(&a).is_some_and(|e| e.router() == router) {
            Arc::make_mut(sh).remove(&a);
        }
    }

    /// Replaces the addresses of router `id` as `old` had them by `new`'s.
    pub(crate) fn update(
        &mut self,
        id: u32,
        old: Option<&RouterTables>,
        new: Option<&RouterTables>,
        ext_here: bool,
    ) {
        if let Some(o) = old {
            for (a, _) in o.ext_addrs(id, ext_here) {
                self.remove_of(a, id);
            }
        }
        if let Some(n) = new {
            for (a, e) in n.ext_addrs(id, ext_here) {
                self.insert(a, e);
            }
        }
        // The IPv6 addresses follow the router's ports: a change of its
        // floating IPs alone leaves them as they are.
        if let (Some(o), Some(n)) = (old, new) {
            if Arc::ptr_eq(&o.neighbors, &n.neighbors)
                && o.upstream6 == n.upstream6
                && o.v6_central == n.v6_central
                && o.snat == n.snat
            {
                return;
            }
        }
        let was = old.map(|o| o.ext_addrs6(id, ext_here)).unwrap_or_default();
        let now = new.map(|n| n.ext_addrs6(id, ext_here)).unwrap_or_default();
        // Both sorted: what went or changed is removed, what came or changed
        // inserted; only their shards are copied.
        for (a, e) in &was {
            if now.binary_search_by_key(a, |x| x.0).map(|i| now[i].1) != Ok(*e) {
                let sh = &mut self.v6[Self::shard6(*a)];
                if sh.get(a).is_some_and(|x| x.router() == id) {
                    Arc::make_mut(sh).remove(a);
                }
            }
        }
        for (a, e) in &now {
            if was.binary_search_by_key(a, |x| x.0).map(|i| was[i].1) != Ok(*e) {
                Arc::make_mut(&mut self.v6[Self::shard6(*a)]).insert(*a, *e);
            }
        }
    }
}

/// A router whose SNAT runs on this node: its index and external IPv4
/// addresses (the workers' NAT follows this list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatHere {
    pub router: u32,
    pub ips: Vec<Ipv4Addr>,
    /// The router's fixed IPs that have a floating IP (sorted): their SNAT
    /// sessions are flushed when they get one (they leave by it from then on).
    pub with_fip: Vec<Ipv4Addr>,
}

impl RouterTables {
    /// The external addresses of this router (index `id`) as this node sees
    /// them; `ext_here`: the node has an external port (serves floating IPs).
    pub(crate) fn ext_addrs(&self, id: u32, ext_here: bool) -> Vec<(Ipv4Addr, ExtAddr)> {
        let mut v = Vec::new();
        let snat_here = self.snat.as_ref().is_some_and(|s| s.here);
        for f in self.fips.values() {
            let here = if f.central {
                snat_here
            } else {
                matches!(f.dest, Dest::Local(_))
            };
            v.push((
                f.floating,
                ExtAddr::Fip {
                    router: id,
                    fixed: f.fixed,
                    here: ext_here && here,
                    central: f.central,
                },
            ));
        }
        if let Some(sn) = &self.snat {
            for ip in &sn.ips {
                if let IpAddr::V4(a) = ip {
                    v.push((
                        *a,
                        ExtAddr::Gateway {
                            router: id,
                            mac: sn.mac,
                            here: sn.here && ext_here,
                        },
                    ));
                }
            }
        }
        v
    }

    /// The global IPv6 addresses of this router (index `id`) the external
    /// port serves ([`ExtAddr6`]), sorted; `ext_here`: the node has an
    /// external port.
    pub(crate) fn ext_addrs6(&self, id: u32, ext_here: bool) -> Vec<(Ipv6Addr, ExtAddr6)> {
        let Some(sn) = self.snat.as_ref() else {
            return Vec::new();
        };
        if !ext_here || self.upstream6.is_none() || (self.v6_central && !sn.here) {
            return Vec::new();
        }
        let central = self.v6_central;
        let mut v: Vec<(Ipv6Addr, ExtAddr6)> = self
            .neighbors
            .iter()
            .filter_map(|(a, n)| match (a, n.dest) {
                (IpAddr::V6(a), Dest::Local(_)) if !central && global6(*a) => {
                    Some((*a, ExtAddr6::Vm { router: id }))
                }
                (IpAddr::V6(a), Dest::Local(_) | Dest::Remote(_)) if central && global6(*a) => {
                    Some((
                        *a,
                        ExtAddr6::Tenant {
                            router: id,
                            mac: sn.mac,
                        },
                    ))
                }
                _ => None,
            })
            .collect();
        if central {
            v.extend(sn.ips.iter().filter_map(|a| match a {
                IpAddr::V6(a) => Some((
                    *a,
                    ExtAddr6::Gateway {
                        router: id,
                        mac: sn.mac,
                    },
                )),
                IpAddr::V4(_) => None,
            }));
        }
        v.sort_unstable_by_key(|e| e.0);
        v
    }

    /// The router's SNAT, if it runs on this node.
    pub(crate) fn snat_here(&self, id: u32) -> Option<SnatHere> {
        let sn = self.snat.as_ref().filter(|s| s.here && s.enable_snat)?;
        let ips: Vec<Ipv4Addr> = sn
            .ips
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let mut with_fip: Vec<Ipv4Addr> = self.fips.values().map(|f| f.fixed).collect();
        with_fip.sort();
        (!ips.is_empty()).then_some(SnatHere {
            router: id,
            ips,
            with_fip,
        })
    }
}

/// Whether IPv6 address `a` may be routed to or from outside: not
/// unspecified, loopback, multicast or link-local.
pub(crate) fn global6(a: Ipv6Addr) -> bool {
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || a.segments()[0] & 0xffc0 == 0xfe80)
}

/// A floating IP association (1:1 NAT) as the dataplane sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FipEntry {
    pub floating: Ipv4Addr,
    pub fixed: Ipv4Addr,
    pub port: String,
    /// Where the associated port is: in mode `dvr` the host of the port
    /// serves its floating IP (DNAT in, SNAT out, proxy ARP).
    pub dest: Dest,
    /// Served centrally, by the router's SNAT node: the router is not
    /// distributed (`legacy`), or the port's host is `dvr_no_external`.
    pub central: bool,
}

/// A router's external gateway: the addresses SNAT translates to, where the
/// centralized SNAT runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnatSettings {
    pub network: String,
    pub ips: Vec<IpAddr>,
    pub mac: MacAddr,
    pub enable_snat: bool,
    /// The `dvr_snat` host that holds the router's SNAT, and whether it is this node.
    pub host: Option<String>,
    pub here: bool,
    /// That host's index among the node's other hosts (where compute nodes
    /// send the router's SNAT traffic).
    #[serde(skip)]
    pub host_idx: Option<u16>,
    /// The external network's index ([`crate::tables::Snapshot::net`]): its MTU bounds what
    /// leaves through the external port.
    #[serde(skip)]
    pub net: Option<u32>,
}
