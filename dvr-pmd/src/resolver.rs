//! Underlay neighbour resolution: the control side of "the node resolves the
//! next hop toward other VTEPs". A thread asks for every other host's VTEP by
//! ARP on the underlay port (through the workers' inject queue), learns the
//! answers the workers hand over, and publishes each new or changed MAC in the
//! snapshot. Unresolved VTEPs are asked for every second, resolved ones every
//! 30 seconds (a moved VTEP is learned again).
//!
//! The holders of VIPs (addresses inside allowed address pairs) that the
//! workers saw announced on VM ports are published here too, every tick.
//!
//! The same for the upstream routers of the external network (the next hop
//! of north-south traffic), asked for on the external port from this host's
//! FIP gateway port (or a router's gateway port on a `dvr_snat` node). And
//! when an address of the external network starts being served here (a
//! floating IP associated to, or moved to, a port of this node; a router's
//! SNAT placed here), a gratuitous ARP for it goes out of the external port,
//! twice, one second apart, so that the upstream switch and router learn the
//! new place at once.
//!
//! IPv6 alike: the upstream routers' IPv6 addresses are asked for by
//! neighbour solicitation on the external port (from the link-local address
//! of the asking MAC), and an unsolicited neighbour advertisement goes out,
//! twice, when a VM's global IPv6 address starts being served here
//! (distributed IPv6 north-south: a port appears or moves here) or a
//! router's gateway IPv6 address does (central, its SNAT placed here).
//!
//! And the router advertisements of the VM ports' networks, unsolicited:
//! when a port appears or its advertisement changes, then every 10 minutes
//! ([`dvr::pipeline::ra::Advertiser`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dvr::mac::MacAddr;
use dvr::pipeline::fip_mac;
use dvr::punt::Injected;
use dvr::tables::{eui64_link_local, ExtAddr, ExtAddr6, ExtMap};
use dvr::wire::{arp, nd};

use crate::neighbors::Saved;
use crate::report::View;

const TICK: Duration = Duration::from_millis(50);
const RETRY: Duration = Duration::from_secs(1);
const REFRESH: Duration = Duration::from_secs(30);
/// A gratuitous ARP is sent again after this (Neutron sends three).
const GARP_AGAIN: Duration = Duration::from_secs(1);

pub struct Resolver {
    stop: Arc<AtomicBool>,
    /// Woken at once by `shutdown` (a restart should not wait for a tick).
    handle: Option<JoinHandle<()>>,
}

impl Resolver {
    /// Starts the thread; the MACs it resolves are saved into `saved`.
    pub fn start(view: Arc<View>, mut saved: Saved) -> std::io::Result<Resolver> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("dvr-resolver".into())
            .spawn(move || run(&view, &s, &mut saved))?;
        Ok(Resolver {
            stop,
            handle: Some(handle),
        })
    }

    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn run(view: &View, stop: &AtomicBool, saved: &mut Saved) {
    let mut asked: HashMap<Ipv4Addr, Instant> = HashMap::new();
    let mut asked6: HashMap<Ipv6Addr, Instant> = HashMap::new();
    let mut garps = Garps::default();
    let mut ras = dvr::pipeline::ra::Advertiser::default();
    while !stop.load(Ordering::SeqCst) {
        std::thread::park_timeout(TICK);
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // The workers count frames a port's link did not take apart from a
        // full queue (tx_link_down): they read what is seen here.
        for (_, p) in view.ifaces.ports() {
            p.refresh_link();
        }
        garps.follow(view);
        // Unsolicited router advertisements to the VM ports, a few a tick.
        ras.follow(&view.tables.load(), Instant::now(), 16, |port, frame| {
            Injected::new(port, frame).is_some_and(|x| view.exchange.inject.push(x).is_ok())
        });
        let (vteps, unresolved, upstreams, upstreams6) = {
            let mut c = view.compiler.lock().unwrap_or_else(|e| e.into_inner());
            let Some(c) = c.as_mut() else {
                continue;
            };
            let vteps = c.vteps();
            let upstreams = c.upstreams();
            let upstreams6 = c.upstreams6();
            while let Some((ip, mac)) = view.exchange.learned.pop() {
                let ip = match ip {
                    IpAddr::V4(ip) => ip,
                    IpAddr::V6(ip) => {
                        if let Some(snap) = c.set_nd_mac(ip, mac) {
                            tracing::info!(upstream = %ip, %mac, "IPv6 upstream router resolved");
                            view.tables.store(snap);
                        }
                        continue;
                    }
                };
                let upstream = upstreams.iter().any(|u| u.0 == ip);
                if !vteps.contains(&ip) && !upstream {
                    continue;
                }
                let snap = c.set_vtep_mac(ip, mac);
                // A MAC restored at start and now answered is resolved too.
                if snap.is_some() | saved.confirm(ip) {
                    if upstream {
                        tracing::info!(upstream = %ip, %mac, "upstream router resolved");
                    } else {
                        tracing::info!(vtep = %ip, %mac, "underlay neighbour resolved");
                    }
                }
                if let Some(snap) = snap {
                    view.tables.store(snap);
                }
            }
            if let Some(snap) = view.exchange.learn_vips(c) {
                view.tables.store(snap);
            }
            (vteps, c.unresolved_vteps(), upstreams, upstreams6)
        };
        saved.follow(view);
        let now = Instant::now();
        if let Some(ext) = view.tables.load().node.external {
            let resolved = view.tables.load().node.vtep_macs.clone();
            asked.retain(|ip, _| vteps.contains(ip) || upstreams.iter().any(|u| u.0 == *ip));
            for &(ip, from, mac) in &upstreams {
                let every = if resolved.contains_key(&ip) {
                    REFRESH
                } else {
                    RETRY
                };
                if asked
                    .get(&ip)
                    .is_some_and(|t| now.duration_since(*t) < every)
                {
                    continue;
                }
                let mut frame = [0u8; 60];
                arp::write_request(&mut frame, &mac.0, from, ip);
                if let Some(x) = Injected::new(ext, &frame) {
                    if view.exchange.inject.push(x).is_ok() {
                        asked.insert(ip, now);
                    }
                }
            }
        }
        if let Some(ext) = view.tables.load().node.external {
            let resolved = view.tables.load().node.nd_macs.clone();
            asked6.retain(|ip, _| upstreams6.iter().any(|u| u.0 == *ip));
            for &(ip, mac) in &upstreams6 {
                let every = if resolved.contains_key(&ip) {
                    REFRESH
                } else {
                    RETRY
                };
                if asked6
                    .get(&ip)
                    .is_some_and(|t| now.duration_since(*t) < every)
                {
                    continue;
                }
                let mut frame = [0u8; nd::FRAME_LEN];
                nd::write_solicit_frame(&mut frame, &mac.0, eui64_link_local(mac), ip);
                if let Some(x) = Injected::new(ext, &frame) {
                    if view.exchange.inject.push(x).is_ok() {
                        asked6.insert(ip, now);
                    }
                }
            }
        }
        let node = view.tables.load().node.clone();
        let (Some(me), Some((port, mac))) = (node.vtep, node.underlay) else {
            continue;
        };
        asked.retain(|ip, _| vteps.contains(ip) || upstreams.iter().any(|u| u.0 == *ip));
        for ip in vteps {
            let every = if unresolved.contains(&ip) {
                RETRY
            } else {
                REFRESH
            };
            if asked
                .get(&ip)
                .is_some_and(|t| now.duration_since(*t) < every)
            {
                continue;
            }
            let mut frame = [0u8; 60];
            arp::write_request(&mut frame, &mac.0, me, ip);
            if let Some(x) = Injected::new(port, &frame) {
                if view.exchange.inject.push(x).is_ok() {
                    asked.insert(ip, now);
                }
            }
        }
    }
}

/// Follows the external addresses served here and announces the new ones.
#[derive(Default)]
struct Garps {
    /// The map last looked at.
    seen: Option<ExtMap>,
    /// Served here: address → the MAC it is served with.
    served: HashMap<Ipv4Addr, MacAddr>,
    /// Second announcements due: (when, address, MAC).
    again: Vec<(Instant, Ipv4Addr, MacAddr)>,
    /// IPv6 served here: address → the MAC it is served with, and whether
    /// it is a router's (the router flag).
    served6: HashMap<Ipv6Addr, (MacAddr, bool)>,
    /// Second unsolicited advertisements due: (when, address).
    again6: Vec<(Instant, Ipv6Addr)>,
}

impl Garps {
    fn follow(&mut self, view: &View) {
        let snap = view.tables.load();
        let now = Instant::now();
        let Some(ext) = snap.node.external else {
            return;
        };
        let mut announce: Vec<(Ipv4Addr, MacAddr)> = Vec::new();
        let empty = ExtMap::default();
        let old = self.seen.as_ref().unwrap_or(&empty);
        // The MAC an address is served with here, if it is.
        let served_mac = |e: &ExtAddr| match *e {
            ExtAddr::Fip {
                here: true,
                router,
                central,
                ..
            } => snap
                .routers
                .get(router as usize)
                .and_then(|r| fip_mac(&snap.node, r, central)),
            ExtAddr::Gateway {
                here: true, mac, ..
            } => Some(mac),
            _ => None,
        };
        let mut changed = Vec::new();
        for (shard, entries) in snap.ext.changed_since(old) {
            changed.push(shard);
            for (&a, e) in entries {
                if let Some(mac) = served_mac(e) {
                    if self.served.insert(a, mac) != Some(mac) {
                        announce.push((a, mac));
                    }
                }
            }
        }
        // Addresses of the changed shards no longer served here.
        self.served.retain(|a, mac| {
            !changed.contains(&ExtMap::shard_of(*a))
                || snap.ext.get(*a).and_then(|e| served_mac(&e)) == Some(*mac)
        });
        if !snap.ext.same6(old) {
            let served6: HashMap<Ipv6Addr, (MacAddr, bool)> = snap
                .ext
                .iter6()
                .filter_map(|(a, e)| match e {
                    ExtAddr6::Vm { .. } => snap.node.fip_gw.map(|g| (a, (g.1, false))),
                    ExtAddr6::Gateway { mac, .. } => Some((a, (mac, true))),
                    ExtAddr6::Tenant { .. } => None,
                })
                .collect();
            for (&a, &(mac, router)) in &served6 {
                if self.served6.get(&a) != Some(&(mac, router)) {
                    self.again6.push((now + GARP_AGAIN, a));
                    tracing::info!(address = %a, %mac, "served here: unsolicited neighbour advertisement");
                    advertise(view, ext, a, mac, router);
                }
            }
            self.served6 = served6;
        }
        let due6: Vec<Ipv6Addr> = self
            .again6
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, a)| *a)
            .collect();
        self.again6.retain(|(t, _)| *t > now);
        for a in due6 {
            if let Some(&(mac, router)) = self.served6.get(&a) {
                advertise(view, ext, a, mac, router);
            }
        }
        self.seen = Some(snap.ext.clone());
        let due: Vec<(Ipv4Addr, MacAddr)> = self
            .again
            .iter()
            .filter(|(t, _, _)| *t <= now)
            .map(|(_, a, m)| (*a, *m))
            .collect();
        self.again.retain(|(t, _, _)| *t > now);
        for &(a, mac) in &announce {
            self.again.push((now + GARP_AGAIN, a, mac));
            tracing::info!(address = %a, %mac, "served here: gratuitous ARP");
        }
        for (a, mac) in announce.into_iter().chain(due) {
            if self.served.get(&a) != Some(&mac) {
                continue; // gone again meanwhile
            }
            let mut frame = [0u8; 60];
            arp::write_garp(&mut frame, &mac.0, a);
            if let Some(x) = Injected::new(ext, &frame) {
                let _ = view.exchange.inject.push(x);
            }
        }
    }
}

/// An unsolicited neighbour advertisement of `a` at `mac` out of the
/// external port `ext`.
fn advertise(view: &View, ext: u16, a: Ipv6Addr, mac: MacAddr, router: bool) {
    let mut frame = [0u8; nd::FRAME_LEN];
    nd::write_unsolicited_advert_frame(&mut frame, &mac.0, a, router);
    if let Some(x) = Injected::new(ext, &frame) {
        let _ = view.exchange.inject.push(x);
    }
}
