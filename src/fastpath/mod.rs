//! The fast paths: what a worker decides for the common cases on a frame's
//! bytes alone, before (and instead of) the whole pipeline
//! ([`crate::pipeline`]), and the per-worker memories that let it:
//!
//! - [`flow`]: the flow cache of routed and switched IPv4 flows from VM
//!   ports, and [`cached`], its way: [`fast`] on a frame in place;
//! - [`tunnel`]: a frame from the underlay as the ways read it
//!   (`tunnel::Arrival`) and the memory of the tunnels they looked at
//!   ([`TunnelMemo`]);
//! - [`decap`]: the decap way ([`decap_way`], [`decap_apply`]) and its memory
//!   ([`DecapMemo`]): from another host, for a port here;
//! - [`snat`]: the SNAT way ([`snat_way`], [`snat_apply`]) and its memory
//!   ([`SnatMemo`]): from another host, out through the router's SNAT here;
//!   the SNAT's prefetch of a burst ([`prefetch_nat`]).
//!
//! A frame a fast path does not decide is left as it was: the whole pipeline
//! decides it, and decides the same for the frames decided here.

pub mod cached;
pub mod decap;
pub mod flow;
pub mod snat;
pub mod tunnel;

#[cfg(test)]
mod tests;

pub use cached::fast;
pub use decap::{decap_apply, decap_way, DecapMemo, DecapWay};
pub use snat::{prefetch_nat, prefetch_nat_next, snat_apply, snat_way, SnatMemo, SnatWay};
pub use tunnel::{TunnelMemo, TUNNEL_MEMO};
