//! Underlay neighbour resolution: the control side of "the node resolves the
//! next hop toward other VTEPs". A thread asks for every other host's VTEP by
//! ARP on the underlay port (through the workers' inject queue), learns the
//! answers the workers hand over, and publishes each new or changed MAC in the
//! snapshot. Unresolved VTEPs are asked for every second, resolved ones every
//! 30 seconds (a moved VTEP is learned again).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dvr::pipeline::write_arp_request;
use dvr::punt::Injected;

use crate::report::View;

const TICK: Duration = Duration::from_millis(50);
const RETRY: Duration = Duration::from_secs(1);
const REFRESH: Duration = Duration::from_secs(30);

pub struct Resolver {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Resolver {
    pub fn start(view: Arc<View>) -> std::io::Result<Resolver> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("dvr-resolver".into())
            .spawn(move || run(&view, &s))?;
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
            let _ = h.join();
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn run(view: &View, stop: &AtomicBool) {
    let mut asked: HashMap<Ipv4Addr, Instant> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(TICK);
        let (vteps, unresolved) = {
            let mut c = view.compiler.lock().unwrap_or_else(|e| e.into_inner());
            let Some(c) = c.as_mut() else {
                continue;
            };
            let vteps = c.vteps();
            while let Some((ip, mac)) = view.exchange.learned.pop() {
                if !vteps.contains(&ip) {
                    continue;
                }
                if let Some(snap) = c.set_vtep_mac(ip, mac) {
                    tracing::info!(vtep = %ip, %mac, "underlay neighbour resolved");
                    view.tables.store(snap);
                }
            }
            (vteps, c.unresolved_vteps())
        };
        let node = view.tables.load().node.clone();
        let (Some(me), Some((port, mac))) = (node.vtep, node.underlay) else {
            continue;
        };
        let now = Instant::now();
        asked.retain(|ip, _| vteps.contains(ip));
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
            write_arp_request(&mut frame, mac, me, ip);
            if let Some(x) = Injected::new(port, &frame) {
                if view.exchange.inject.push(x).is_ok() {
                    asked.insert(ip, now);
                }
            }
        }
    }
}
