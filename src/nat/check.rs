//! The tables checked against each other, for tests and fuzzing.

use rustc_hash::FxHashMap;

use crate::wire::proto;

use super::session::InKey;
use super::Nat;

impl Nat {
    /// Checks the tables against each other (tests and fuzzing; a scan of
    /// everything): both indexes find every session, bindings count their
    /// sessions, no (protocol, external address, port) is bound twice, and
    /// each pool's free ports and bound ports are exactly its range.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut refs = vec![0u32; self.bindings.len()];
        let mut used = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if s.proto == 0 {
                continue;
            }
            used += 1;
            let k = InKey {
                router: s.router,
                proto: s.proto,
                in_ip: s.in_ip,
                in_port: s.in_port,
                rem_ip: s.rem_ip,
                rem_port: s.rem_port,
            };
            if self.find_in(&k) != Some(i as u32) {
                return Err(format!("session {i} not found by its inside key: {s:?}"));
            }
            if self.find_out(s.proto, s.ext_ip, s.ext_port, s.rem_ip, s.rem_port) != Some(i as u32)
            {
                return Err(format!("session {i} not found by its outside key: {s:?}"));
            }
            let sb = self.cold[i].binding as usize;
            let b = self.bindings.get(sb).ok_or("binding out of range")?;
            if (b.router, b.proto, b.in_ip, b.in_port, b.ext_ip, b.ext_port)
                != (s.router, s.proto, s.in_ip, s.in_port, s.ext_ip, s.ext_port)
            {
                return Err(format!(
                    "session {i} {s:?} disagrees with its binding {b:?}"
                ));
            }
            if self
                .pools
                .get(b.pool as usize)
                .and_then(|p| p.as_ref().map(|p| p.ip))
                != Some(b.ext_ip)
            {
                return Err(format!("binding {sb} {b:?} names another address's pool"));
            }
            refs[sb] += 1;
            let r = self
                .routers
                .get(&s.router)
                .ok_or(format!("session {i} of no router"))?;
            if !r.ips.contains(&s.ext_ip) || !r.range.contains(&s.ext_port) {
                return Err(format!("session {i} {s:?} outside its router's pool {r:?}"));
            }
        }
        if used + self.free_slots.len() != self.slots.len() {
            return Err("session free list and slots disagree".into());
        }
        let mut bound: FxHashMap<(u8, u32, u16), usize> = FxHashMap::default();
        let mut nb = 0;
        for (i, b) in self.bindings.iter().enumerate() {
            if b.refs != refs[i] {
                return Err(format!(
                    "binding {i} {b:?} counts {} sessions, has {}",
                    b.refs, refs[i]
                ));
            }
            if b.refs == 0 {
                continue;
            }
            nb += 1;
            if let Some(j) = bound.insert((b.proto, b.ext_ip, b.ext_port), i) {
                return Err(format!("bindings {j} and {i} share {b:?}"));
            }
        }
        if nb + self.free_bindings.len() != self.bindings.len() {
            return Err("binding free list and bindings disagree".into());
        }
        for (i, p) in self.pools.iter().enumerate() {
            let Some(p) = p else { continue };
            let ip = p.ip;
            if self.pool_of.get(&ip) != Some(&(i as u32)) {
                return Err(format!("pool {i} of {ip:x} not found by its address"));
            }
            for (pi, proto) in [proto::TCP, proto::UDP, proto::ICMP]
                .into_iter()
                .enumerate()
            {
                let mut seen = std::collections::HashSet::new();
                for &port in &p.free[pi] {
                    if !p.range.contains(&port) || !seen.insert(port) {
                        return Err(format!("pool {ip:x}/{proto}: port {port} bad or twice"));
                    }
                    if bound.contains_key(&(proto, ip, port)) {
                        return Err(format!("pool {ip:x}/{proto}: port {port} free and bound"));
                    }
                }
                let nbound = bound
                    .keys()
                    .filter(|&&(pr, i, _)| pr == proto && i == ip)
                    .count();
                if seen.len() + nbound != p.range.clone().count() {
                    return Err(format!("pool {ip:x}/{proto}: ports lost"));
                }
            }
        }
        Ok(())
    }
}
