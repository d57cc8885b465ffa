//! The dataplane's tables as one immutable snapshot, compiled from the model for
//! this node ([`crate::compile`], which also holds `Snapshot::compile` and
//! `Snapshot::from_config`) and published RCU style: the control thread swaps
//! in a new snapshot (`arc_swap::ArcSwap`), a worker loads the current one once
//! per burst, and an old snapshot is freed when the last worker that loaded it
//! has finished its burst.
//!
//! A snapshot is a tree of `Arc`s: the node's own tables (VTEP, DVR MAC, the
//! other hosts, segment → network maps), one table set per network (FDB with
//! local ports, remote ports behind their host's VTEP and router interfaces; the
//! ARP/ND responder's addresses; the gateways), one per router (interfaces, LPM,
//! neighbours with where they live), and one slot per dataplane port. A change
//! recompiles only the networks and routers it touches; everything else is
//! shared with the previous snapshot.
//!
//! What the workers read, one file per part: `node` (the node, its hosts and
//! ports), `network` (a network's FDB, responder, gateways, VIPs), `router`
//! (a router's interfaces, FIB, neighbours and IPv4 forwarding), `external`
//! (floating IPs, gateway addresses, SNAT).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::fib::IntHasher;
use crate::l2::MacTable;

mod external;
mod network;
mod node;
mod router;

pub(crate) use external::global6;
pub use external::{ExtAddr, ExtAddr6, ExtMap, FipEntry, SnatHere, SnatSettings};
pub use network::{
    eui64_link_local, Dhcp4, Dhcp6, Gw, NetTables, Ra6, Vip, DHCP_SERVER_MAC, MAX_HOLDERS,
};
pub use node::{DpPort, HostEntry, NodePorts, NodeTables, Outer, Slot, VmPort};
pub use router::{Adj, Home, Iface, Neighbor, RouterTables};

/// Where a snapshot is published and read.
pub type Tables = arc_swap::ArcSwap<Snapshot>;

/// Items of a snapshot indexed by a stable number (routers, networks), in
/// chunks: the next snapshot shares every chunk it does not change, so
/// publishing a change to one router costs one chunk, not one pointer per
/// router of the node.
#[derive(Debug)]
pub struct Chunked<T> {
    chunks: Vec<Arc<[Option<Arc<T>>]>>,
    len: usize,
}

const CHUNK: usize = 64;

impl<T> Clone for Chunked<T> {
    fn clone(&self) -> Self {
        Chunked {
            chunks: self.chunks.clone(),
            len: self.len,
        }
    }
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)?.as_deref()
    }

    /// The shared handle of item `i`.
    pub fn get_arc(&self, i: usize) -> Option<&Arc<T>> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)?.as_ref()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets item `i` (growing as needed); copies the one chunk it is in.
    pub fn set(&mut self, i: usize, v: Option<Arc<T>>) {
        while self.chunks.len() <= i / CHUNK {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        self.len = self.len.max(i + 1);
        let c = &mut self.chunks[i / CHUNK];
        let mut items: Vec<Option<Arc<T>>> = c.to_vec();
        items[i % CHUNK] = v;
        *c = items.into();
    }
}

/// A map keyed by IP address with a cheap hash (keys come from the operator).
pub type IpMap<V> = HashMap<IpAddr, V, BuildHasherDefault<IntHasher>>;
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Where a frame goes after the L2 lookup, or where a neighbour lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dest {
    /// Nowhere this node can send to (a port bound to no host, or to a host
    /// without a VTEP).
    #[default]
    Nowhere,
    /// A VM port of this node (dataplane port index).
    Local(u16),
    /// A port on another host (index in [`NodeTables::hosts`]).
    Remote(u16),
    /// A router interface (router index, interface index).
    Router { router: u32, iface: u16 },
}

/// The dataplane's tables: see the module documentation.
#[derive(Debug)]
pub struct Snapshot {
    /// The model generation it was compiled from (0: configuration only).
    pub generation: u64,
    /// Unique to this snapshot among those of the process (never 0): what a
    /// worker's flow cache entries are valid for ([`crate::fastpath::flow`]). Several
    /// snapshots can share a model generation (a resolved VTEP, say).
    pub epoch: u64,
    pub node: Arc<NodeTables>,
    /// Per dataplane port.
    pub ports: Box<[Slot]>,
    /// Per network (index from the [`Compiler`](crate::compile::Compiler)); None when deleted.
    pub nets: Chunked<NetTables>,
    /// The configuration's static table, for VM ports no model port is bound to.
    pub(crate) static_fdb: Arc<MacTable>,
    /// Per router (index from the [`Compiler`](crate::compile::Compiler)): its tables, or None when the
    /// router is disabled or deleted (a disabled router routes nothing).
    pub routers: Chunked<RouterTables>,
    /// The external network's addresses of the routers: floating IPs and
    /// gateway IPs (what the external port answers ARP for and translates).
    pub ext: ExtMap,
    /// The routers whose SNAT runs on this node.
    pub snat_here: Arc<Vec<SnatHere>>,
}

impl Snapshot {
    /// The configuration's static MAC table (for VM ports no model port is bound to).
    #[inline(always)]
    pub fn static_fdb(&self) -> &MacTable {
        &self.static_fdb
    }

    /// The network tables of index `net`.
    #[inline(always)]
    pub fn net(&self, net: u32) -> Option<&NetTables> {
        self.nets.get(net as usize)
    }
}

/// A new [`Snapshot::epoch`].
pub(crate) fn next_epoch() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
