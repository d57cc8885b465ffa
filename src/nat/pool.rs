//! The routers' external addresses and the pools of free ports of each
//! (external address, protocol).

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use crate::wire::proto;

use super::fragments::DIR_IN;
use super::session::{mix, K1};
use super::{Nat, NatConfigError};

/// Free ports of one (external address, protocol).
#[derive(Debug)]
pub(super) struct IpPool {
    pub(super) ip: u32,
    pub(super) range: RangeInclusive<u16>,
    /// Routers using the address.
    pub(super) users: Vec<u32>,
    /// TCP, UDP, ICMP.
    pub(super) free: [VecDeque<u16>; 3],
    /// Per protocol: (lookahead burst, new flows of that burst predicted to
    /// take a port here so far), for [`Nat::prefetch_next`] to guess the
    /// port each one will get (the next ones at the front of `free`).
    pub(super) ahead: [Cell<(u32, u32)>; 3],
}

/// Which of a router's `n` external addresses inside address `in_ip` gets
/// (paired pooling): the hash's top 32 bits scaled to the count
/// (multiply-shift).
#[inline(always)]
pub(super) fn pick_ip(in_ip: u32, n: usize) -> usize {
    (((mix(u64::from(in_ip), 0) >> 32) * n as u64) >> 32) as usize
}

#[inline(always)]
pub(super) fn proto_index(proto: u8) -> usize {
    match proto {
        proto::TCP => 0,
        proto::UDP => 1,
        _ => 2,
    }
}

impl IpPool {
    pub(super) fn new(ip: u32, range: RangeInclusive<u16>) -> IpPool {
        let mut ports: Vec<u16> = range.clone().collect();
        // Fisher-Yates with a xorshift seeded by the address: the order is
        // not guessable from the first port, and the same on every run.
        let mut x = u64::from(ip) ^ K1;
        for i in (1..ports.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ports.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let q: VecDeque<u16> = ports.into();
        IpPool {
            ip,
            range,
            users: Vec::new(),
            free: [q.clone(), q.clone(), q],
            ahead: Default::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct RouterExt {
    pub(super) ips: Vec<u32>,
    /// Their pools (`Nat::pools`), in the same order.
    pub(super) pools: Vec<u32>,
    pub(super) range: RangeInclusive<u16>,
}

impl Nat {
    /// Sets (or changes) router `router`'s external addresses and the ports
    /// (and ICMP ids) it translates to on this instance: a worker's share of
    /// the range when several workers translate. Unchanged: nothing happens.
    /// Changed: the router's sessions are flushed first. An address shared
    /// with another router must come with the same range (they share its
    /// ports). Control path: allocates a pool per new address.
    pub fn set_router(
        &mut self,
        router: u32,
        ext_ips: &[Ipv4Addr],
        ports: RangeInclusive<u16>,
    ) -> Result<(), NatConfigError> {
        if ext_ips.is_empty() {
            return Err(NatConfigError::NoAddress(router));
        }
        if ports.is_empty() {
            return Err(NatConfigError::EmptyRange(
                router,
                *ports.start(),
                *ports.end(),
            ));
        }
        let mut ips: Vec<u32> = Vec::with_capacity(ext_ips.len());
        for ip in ext_ips {
            if !ips.contains(&u32::from(*ip)) {
                ips.push(u32::from(*ip));
            }
        }
        for &ip in &ips {
            if let Some(p) = self.pool_of(ip) {
                if let Some(&other) = p.users.iter().find(|&&u| u != router) {
                    if p.range != ports {
                        return Err(NatConfigError::SharedRange {
                            router,
                            ip: Ipv4Addr::from(ip),
                            other,
                            range: p.range.clone(),
                        });
                    }
                }
            }
        }
        if let Some(r) = self.routers.get(&router) {
            if r.ips == ips && r.range == ports {
                return Ok(());
            }
            self.remove_router(router);
        }
        let mut pools = Vec::with_capacity(ips.len());
        for &ip in &ips {
            let i = match self.pool_of.get(&ip) {
                Some(&i) => i,
                None => {
                    let p = Some(IpPool::new(ip, ports.clone()));
                    let i = match self.free_pools.pop() {
                        Some(i) => {
                            self.pools[i as usize] = p;
                            i
                        }
                        None => {
                            self.pools.push(p);
                            (self.pools.len() - 1) as u32
                        }
                    };
                    self.pool_of.insert(ip, i);
                    i
                }
            };
            if let Some(p) = &mut self.pools[i as usize] {
                p.users.push(router);
            }
            pools.push(i);
        }
        self.routers.insert(
            router,
            RouterExt {
                ips,
                pools,
                range: ports,
            },
        );
        Ok(())
    }

    /// The pool of external address `ip`, if a router uses it.
    pub(super) fn pool_of(&self, ip: u32) -> Option<&IpPool> {
        let &i = self.pool_of.get(&ip)?;
        self.pools[i as usize].as_ref()
    }

    /// Removes a router: its sessions are flushed, their ports freed, its
    /// pending fragments forgotten. Returns how many sessions were flushed.
    pub fn remove_router(&mut self, router: u32) -> usize {
        let n = self.flush_where(|s| s.router == router);
        self.forget_frags(|f| f.router == router);
        if let Some(r) = self.routers.remove(&router) {
            for (ip, i) in r.ips.into_iter().zip(r.pools) {
                let slot = &mut self.pools[i as usize];
                if let Some(p) = slot {
                    p.users.retain(|&u| u != router);
                    if p.users.is_empty() {
                        // No router uses it: no binding either (flushed).
                        *slot = None;
                        self.pool_of.remove(&ip);
                        self.free_pools.push(i);
                    }
                }
            }
        }
        n
    }

    /// Flushes the sessions (and pending fragments) of one inside address of
    /// a router: it got a floating IP, which now translates it 1:1. Returns
    /// how many sessions were flushed.
    pub fn flush_inside(&mut self, router: u32, fixed: Ipv4Addr) -> usize {
        let ip = u32::from(fixed);
        let n = self.flush_where(|s| s.router == router && s.in_ip == ip);
        self.forget_frags(|f| {
            f.router == router
                && if f.what & DIR_IN != 0 {
                    f.new_ip == ip
                } else {
                    (f.addrs >> 32) as u32 == ip
                }
        });
        n
    }
}
