//! Classify: what the ingress port is to the pipeline (a VM port bound to a
//! model port and its network, an unbound VM port switched by the static
//! table, the underlay, the external port), looked up once per burst.

use crate::tables::{NetTables, Slot, Snapshot, VmPort};

/// What a port is to the pipeline, looked up once per burst ([`ingress`]).
#[derive(Clone, Copy)]
pub enum Ingress<'a> {
    /// A VM port bound to a model port, and its network's tables.
    Vm(&'a VmPort, &'a NetTables),
    /// A bound VM port whose network the same snapshot lacks (the compiler
    /// never builds one: counted as `dangling_reference`).
    VmNoNet,
    Underlay,
    External,
    /// A VM port no model port is bound to: the configuration's static table.
    Static,
}

/// The ingress of port `in_port` in `snap`.
#[inline]
pub fn ingress(snap: &Snapshot, in_port: u16) -> Ingress<'_> {
    match snap.ports.get(in_port as usize) {
        Some(Slot::Vm(Some(vm))) => match snap.net(vm.net) {
            Some(net) => Ingress::Vm(vm, net),
            None => Ingress::VmNoNet,
        },
        Some(Slot::Underlay) => Ingress::Underlay,
        Some(Slot::External) => Ingress::External,
        Some(Slot::Vm(None)) | None => Ingress::Static,
    }
}
