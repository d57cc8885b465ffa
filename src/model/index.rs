//! A derived index of the model, kept incrementally by the transaction writers
//! (and by their rollback): who holds each claim, which MACs are used, and the
//! relations the per-change rules ask about (subnets of a network, ports of a
//! subnet, floating IPs of a port, ...). It makes a change cost the size of the
//! objects it touches instead of the size of the model. Never persisted: built on
//! load, and by [`Model::apply`] when missing or out of step.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};

use super::check::{Claim, Ctx, ObjId, ObjRef, Owner};
use super::*;
use crate::mac::MacAddr;
use rustc_hash::FxHashMap as HashMap;

/// A [`Claim`] with owned values. It hashes and compares as the [`Claim`] it
/// holds, and borrows as a [`dyn AsClaim`](AsClaim): the index's map of claims
/// is looked up with a borrowed [`Claim`], without building (allocating) a key.
#[derive(Debug, Clone)]
pub(super) enum ClaimKey {
    Ip(String, IpAddr),
    ExtIp(IpAddr),
    Mac(String, MacAddr),
    DvrMac(MacAddr),
    Vtep(Ipv4Addr),
    Segment(NetworkType, u32),
    SubnetOnRouter(String),
    FipTarget(String, Ipv4Addr),
}

/// A claim, owned or borrowed, as a map key.
pub(super) trait AsClaim {
    fn claim(&self) -> Claim<'_>;
}

impl AsClaim for ClaimKey {
    fn claim(&self) -> Claim<'_> {
        match self {
            ClaimKey::Ip(n, ip) => Claim::Ip(n, *ip),
            ClaimKey::ExtIp(ip) => Claim::ExtIp(*ip),
            ClaimKey::Mac(n, m) => Claim::Mac(n, *m),
            ClaimKey::DvrMac(m) => Claim::DvrMac(*m),
            ClaimKey::Vtep(v) => Claim::Vtep(*v),
            ClaimKey::Segment(t, s) => Claim::Segment(*t, *s),
            ClaimKey::SubnetOnRouter(s) => Claim::SubnetOnRouter(s),
            ClaimKey::FipTarget(p, ip) => Claim::FipTarget(p, *ip),
        }
    }
}

impl AsClaim for Claim<'_> {
    fn claim(&self) -> Claim<'_> {
        *self
    }
}

impl Hash for dyn AsClaim + '_ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.claim().hash(h)
    }
}

impl PartialEq for dyn AsClaim + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.claim() == other.claim()
    }
}

impl Eq for dyn AsClaim + '_ {}

impl<'a> Borrow<dyn AsClaim + 'a> for ClaimKey {
    fn borrow(&self) -> &(dyn AsClaim + 'a) {
        self
    }
}

impl Hash for ClaimKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.claim().hash(h)
    }
}

impl PartialEq for ClaimKey {
    fn eq(&self, other: &Self) -> bool {
        self.claim() == other.claim()
    }
}

impl Eq for ClaimKey {}

impl From<Claim<'_>> for ClaimKey {
    fn from(c: Claim<'_>) -> Self {
        match c {
            Claim::Ip(n, ip) => ClaimKey::Ip(n.to_owned(), ip),
            Claim::ExtIp(ip) => ClaimKey::ExtIp(ip),
            Claim::Mac(n, m) => ClaimKey::Mac(n.to_owned(), m),
            Claim::DvrMac(m) => ClaimKey::DvrMac(m),
            Claim::Vtep(v) => ClaimKey::Vtep(v),
            Claim::Segment(t, s) => ClaimKey::Segment(t, s),
            Claim::SubnetOnRouter(s) => ClaimKey::SubnetOnRouter(s.to_owned()),
            Claim::FipTarget(p, ip) => ClaimKey::FipTarget(p.to_owned(), ip),
        }
    }
}

/// An [`Owner`] with owned values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum OwnerKey {
    Host(String),
    HostFipGateway(String),
    Network(String),
    Port(String),
    Router(String),
    RouterGateway(String),
    Fip(Ipv4Addr),
}

impl OwnerKey {
    fn of(o: Owner<'_>) -> Self {
        match o {
            Owner::Host(n) => OwnerKey::Host(n.to_owned()),
            Owner::HostFipGateway(n) => OwnerKey::HostFipGateway(n.to_owned()),
            Owner::Network(n) => OwnerKey::Network(n.to_owned()),
            Owner::Port(n) => OwnerKey::Port(n.to_owned()),
            Owner::Router(n) => OwnerKey::Router(n.to_owned()),
            Owner::RouterGateway(n) => OwnerKey::RouterGateway(n.to_owned()),
            Owner::Fip(a) => OwnerKey::Fip(a),
        }
    }

    pub(super) fn owner(&self) -> Owner<'_> {
        match self {
            OwnerKey::Host(n) => Owner::Host(n),
            OwnerKey::HostFipGateway(n) => Owner::HostFipGateway(n),
            OwnerKey::Network(n) => Owner::Network(n),
            OwnerKey::Port(n) => Owner::Port(n),
            OwnerKey::Router(n) => Owner::Router(n),
            OwnerKey::RouterGateway(n) => Owner::RouterGateway(n),
            OwnerKey::Fip(a) => Owner::Fip(*a),
        }
    }
}

/// An object of the model. The order (kind, then name or address) is the order
/// in which a scan of the model meets objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum ObjKey {
    Host(String),
    Network(String),
    Subnet(String),
    Port(String),
    Router(String),
    Fip(Ipv4Addr),
}

impl ObjKey {
    pub(super) fn of(id: ObjId<'_>) -> Self {
        match id {
            ObjId::Host(n) => ObjKey::Host(n.to_owned()),
            ObjId::Network(n) => ObjKey::Network(n.to_owned()),
            ObjId::Port(n) => ObjKey::Port(n.to_owned()),
            ObjId::Router(n) => ObjKey::Router(n.to_owned()),
            ObjId::Fip(a) => ObjKey::Fip(a),
        }
    }

    /// The name of a named object (not of a floating IP).
    pub(super) fn name(&self) -> &str {
        match self {
            ObjKey::Host(n)
            | ObjKey::Network(n)
            | ObjKey::Subnet(n)
            | ObjKey::Port(n)
            | ObjKey::Router(n) => n,
            ObjKey::Fip(_) => unreachable!("a floating IP has no name"),
        }
    }

    pub(super) fn address(&self) -> Ipv4Addr {
        match self {
            ObjKey::Fip(a) => *a,
            _ => unreachable!("only a floating IP has an address"),
        }
    }
}

/// The relations kept: `(Rel, name)` → the objects that refer to `name` that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Rel {
    SubnetsByNetwork,
    PortsByNetwork,
    PortsByHost,
    PortsBySubnet,
    RoutersByIfaceSubnet,
    RoutersByGwSubnet,
    RoutersByGwNetwork,
    RoutersBySnatHost,
    FipsByNetwork,
    FipsByPort,
    FipsByRouter,
}

/// What one object put into the index (taken out as it was put in).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Entry {
    claims: Vec<(ClaimKey, OwnerKey)>,
    macs: Vec<MacAddr>,
    rels: Vec<(Rel, String)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Index {
    /// Claim → its holders, with the number of times each holds it. A port's
    /// addresses are held as `ExtIp` whatever its network (it claims them only
    /// while the network is external: checked when looked up).
    /// (A sorted vector: a claim has one holder, rarely a few.)
    claims: HashMap<ClaimKey, Vec<(OwnerKey, u32)>>,
    /// MAC → how many times it is used ([`Model::mac_in_use`]).
    macs: HashMap<MacAddr, u32>,
    rels: HashMap<Rel, HashMap<String, BTreeSet<ObjKey>>>,
    objs: HashMap<ObjKey, Entry>,
}

/// The index as a field of [`Model`]: equal to any other and shown as nothing,
/// so that models compare and print by their objects alone.
#[derive(Clone, Default)]
pub(super) struct Slot(pub(super) Option<Box<Index>>);

impl PartialEq for Slot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(index)")
    }
}

/// An object that goes into the index.
pub(super) trait Indexed {
    fn entry(&self, m: &Model) -> Entry;
}

fn claims_entry(m: &Model, obj: ObjRef<'_>) -> Vec<(ClaimKey, OwnerKey)> {
    let mut claims = Vec::new();
    Ctx::scan(m).claims_for_index(obj, &mut claims);
    claims
        .into_iter()
        .map(|(c, o)| (ClaimKey::from(c), OwnerKey::of(o)))
        .collect()
}

fn rels(mut v: Vec<(Rel, String)>) -> Vec<(Rel, String)> {
    v.sort();
    v.dedup();
    v
}

impl Indexed for Host {
    fn entry(&self, m: &Model) -> Entry {
        Entry {
            claims: claims_entry(m, ObjRef::Host(self)),
            macs: self
                .dvr_mac
                .into_iter()
                .chain(self.fip_gateway.as_ref().map(|g| g.mac))
                .collect(),
            rels: Vec::new(),
        }
    }
}

impl Indexed for Network {
    fn entry(&self, m: &Model) -> Entry {
        Entry {
            claims: claims_entry(m, ObjRef::Network(self)),
            ..Entry::default()
        }
    }
}

impl Indexed for Subnet {
    fn entry(&self, _: &Model) -> Entry {
        Entry {
            rels: vec![(Rel::SubnetsByNetwork, self.network.clone())],
            ..Entry::default()
        }
    }
}

impl Indexed for Port {
    fn entry(&self, m: &Model) -> Entry {
        let mut r = vec![(Rel::PortsByNetwork, self.network.clone())];
        r.extend(self.host.iter().map(|h| (Rel::PortsByHost, h.clone())));
        r.extend(
            self.fixed_ips
                .iter()
                .map(|f| (Rel::PortsBySubnet, f.subnet.clone())),
        );
        Entry {
            claims: claims_entry(m, ObjRef::Port(self)),
            macs: vec![self.mac],
            rels: rels(r),
        }
    }
}

impl Indexed for Router {
    fn entry(&self, m: &Model) -> Entry {
        let mut r: Vec<(Rel, String)> = self
            .interfaces
            .iter()
            .map(|i| (Rel::RoutersByIfaceSubnet, i.subnet.clone()))
            .collect();
        if let Some(g) = &self.gateway {
            r.push((Rel::RoutersByGwNetwork, g.network.clone()));
            r.extend(
                g.ips
                    .iter()
                    .map(|f| (Rel::RoutersByGwSubnet, f.subnet.clone())),
            );
        }
        r.extend(
            self.snat_host
                .iter()
                .map(|h| (Rel::RoutersBySnatHost, h.clone())),
        );
        Entry {
            claims: claims_entry(m, ObjRef::Router(self)),
            macs: self
                .interfaces
                .iter()
                .map(|i| i.mac)
                .chain(self.gateway.as_ref().map(|g| g.mac))
                .collect(),
            rels: rels(r),
        }
    }
}

impl Indexed for FloatingIp {
    fn entry(&self, m: &Model) -> Entry {
        let mut r = vec![(Rel::FipsByNetwork, self.network.clone())];
        r.extend(self.port.iter().map(|p| (Rel::FipsByPort, p.clone())));
        r.extend(self.router.iter().map(|p| (Rel::FipsByRouter, p.clone())));
        Entry {
            claims: claims_entry(m, ObjRef::Fip(self)),
            macs: Vec::new(),
            rels: rels(r),
        }
    }
}

impl Index {
    pub(super) fn build(m: &Model) -> Index {
        let mut idx = Index::default();
        for o in m.hosts.values() {
            idx.add(ObjKey::Host(o.name.clone()), o.entry(m));
        }
        for o in m.networks.values() {
            idx.add(ObjKey::Network(o.name.clone()), o.entry(m));
        }
        for o in m.subnets.values() {
            idx.add(ObjKey::Subnet(o.name.clone()), o.entry(m));
        }
        for o in m.ports.values() {
            idx.add(ObjKey::Port(o.name.clone()), o.entry(m));
        }
        for o in m.routers.values() {
            idx.add(ObjKey::Router(o.name.clone()), o.entry(m));
        }
        for o in m.floating_ips.values() {
            idx.add(ObjKey::Fip(o.address), o.entry(m));
        }
        idx
    }

    /// How many objects are indexed.
    pub(super) fn len(&self) -> usize {
        self.objs.len()
    }

    pub(super) fn add(&mut self, key: ObjKey, e: Entry) {
        // (Looked up before `entry`: the keys are cloned only when new.)
        for (c, o) in &e.claims {
            match self.claims.get_mut(c) {
                Some(owners) => match owners.binary_search_by(|(x, _)| x.cmp(o)) {
                    Ok(at) => owners[at].1 += 1,
                    Err(at) => owners.insert(at, (o.clone(), 1)),
                },
                None => {
                    self.claims.insert(c.clone(), vec![(o.clone(), 1)]);
                }
            }
        }
        for m in &e.macs {
            *self.macs.entry(*m).or_default() += 1;
        }
        for (rel, name) in &e.rels {
            let by_name = self.rels.entry(*rel).or_default();
            match by_name.get_mut(name.as_str()) {
                Some(set) => {
                    set.insert(key.clone());
                }
                None => {
                    by_name.insert(name.clone(), BTreeSet::from([key.clone()]));
                }
            }
        }
        self.objs.insert(key, e);
    }

    pub(super) fn remove(&mut self, key: &ObjKey) {
        let Some(e) = self.objs.remove(key) else {
            return;
        };
        for (c, o) in &e.claims {
            if let Some(owners) = self.claims.get_mut(c) {
                if let Ok(at) = owners.binary_search_by(|(x, _)| x.cmp(o)) {
                    owners[at].1 -= 1;
                    if owners[at].1 == 0 {
                        owners.remove(at);
                    }
                }
                if owners.is_empty() {
                    self.claims.remove(c);
                }
            }
        }
        for m in &e.macs {
            if let Some(n) = self.macs.get_mut(m) {
                *n -= 1;
                if *n == 0 {
                    self.macs.remove(m);
                }
            }
        }
        for (rel, name) in &e.rels {
            if let Some(by_name) = self.rels.get_mut(rel) {
                if let Some(set) = by_name.get_mut(name) {
                    set.remove(key);
                    if set.is_empty() {
                        by_name.remove(name);
                    }
                }
                if by_name.is_empty() {
                    self.rels.remove(rel);
                }
            }
        }
    }

    /// The holders of a claim, in [`OwnerKey`] order.
    pub(super) fn owners(&self, c: Claim<'_>) -> impl Iterator<Item = &OwnerKey> {
        self.claims
            .get(&c as &dyn AsClaim)
            .into_iter()
            .flat_map(|o| o.iter().map(|(k, _)| k))
    }

    pub(super) fn mac_used(&self, mac: MacAddr) -> bool {
        self.macs.contains_key(&mac)
    }

    /// The objects related to `name` by `rel`, in name (address) order.
    pub(super) fn rel<'s>(&'s self, rel: Rel, name: &str) -> impl Iterator<Item = &'s ObjKey> {
        self.rels
            .get(&rel)
            .and_then(|m| m.get(name))
            .into_iter()
            .flatten()
    }
}

#[cfg(test)]
thread_local! {
    /// Tests: the claim checks and allocations scan the model as they did
    /// before the index (the index is still kept), to compare both ways.
    pub(super) static SCAN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Model {
    /// The index for the claim checks and the allocations, when built (always
    /// inside [`Model::apply`]); without it they scan.
    pub(super) fn idx(&self) -> Option<&Index> {
        #[cfg(test)]
        if SCAN.with(|s| s.get()) {
            return None;
        }
        self.index.0.as_deref()
    }

    /// The index, inside a transaction.
    pub(super) fn index(&self) -> &Index {
        self.index
            .0
            .as_deref()
            .expect("Model::apply builds the index first")
    }

    /// Builds the index if it is missing or does not hold as many objects as the
    /// model (a model built or edited field by field).
    pub(super) fn ensure_index(&mut self) {
        let total = self.hosts.len()
            + self.networks.len()
            + self.subnets.len()
            + self.ports.len()
            + self.routers.len()
            + self.floating_ips.len();
        if self.index.0.as_ref().is_some_and(|i| i.len() == total) {
            return;
        }
        self.index.0 = Some(Box::new(Index::build(self)));
    }

    /// Replaces what object `key` put in the index by what `new` puts (nothing
    /// when `None`). Called by every write and every undo, before the map changes.
    pub(super) fn reindex(&mut self, key: ObjKey, new: Option<&dyn Indexed>) {
        if self.index.0.is_none() {
            return;
        }
        let e = new.map(|o| o.entry(self));
        let idx = self.index.0.as_mut().expect("checked above");
        idx.remove(&key);
        if let Some(e) = e {
            idx.add(key, e);
        }
    }

    /// The subnets of network `network` (through the index when there is
    /// one, else by a scan), in name order.
    pub fn subnets_of(&self, network: &str) -> Vec<&crate::model::Subnet> {
        let mut v: Vec<_> = match self.idx() {
            Some(i) => i
                .rel(Rel::SubnetsByNetwork, network)
                .filter_map(|k| self.subnets.get(k.name()))
                .collect(),
            None => self
                .subnets
                .values()
                .filter(|s| s.network == network)
                .collect(),
        };
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The incrementally kept index equals one built from scratch (false when
    /// none is built yet). For the tests and the `control` fuzz target.
    #[doc(hidden)]
    pub fn index_is_fresh(&self) -> bool {
        self.index.0.as_deref() == Some(&Index::build(self))
    }
}
