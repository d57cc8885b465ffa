//! Talking to a service manager (systemd's `sd_notify` protocol): `READY=1`
//! once the node forwards (the workers run on the restored tables),
//! `WATCHDOG=1` while every worker is alive, `STOPPING=1` on shutdown, each
//! with a `STATUS=` line for `systemctl status`.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the unix socket named
//! by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace); a few
//! lines over std's `UnixDatagram` do it, without a library and its
//! dependencies. Without `$NOTIFY_SOCKET` (not run by a service manager)
//! nothing is sent.
//!
//! The watchdog: with `$WATCHDOG_USEC` set (and `$WATCHDOG_PID`, if set,
//! ours), `WATCHDOG=1` goes out every half of that period from the main
//! (control) thread, but only while every worker is seen polling: each
//! worker's poll counter (flushed by the worker every 1024 polls, within
//! about half a second even when an adaptive worker idles) must have moved
//! within the last [`STALL`]. A worker stuck in a loop, or gone, stops the
//! pings, and the service manager restarts the daemon (`WatchdogSec=` in
//! `packaging/dvr-pmd.service`).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use crate::control::NodeView;
use crate::report::View;

/// How long a worker's poll counter may stand still before the watchdog
/// pings stop.
pub const STALL: Duration = Duration::from_secs(3);

/// The notification socket and the watchdog of this process.
pub struct Service {
    sock: Option<(UnixDatagram, SocketAddr)>,
    /// Half the watchdog period, when there is one.
    every: Option<Duration>,
    next: Instant,
    live: Liveness,
    /// The stuck worker last reported (reported once).
    stuck: Option<usize>,
}

impl Service {
    /// From the environment the service manager set.
    pub fn from_env() -> Service {
        let sock = std::env::var_os("NOTIFY_SOCKET").and_then(|p| {
            let p = p.to_string_lossy().into_owned();
            match open(&p) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(socket = %p, error = %e, "NOTIFY_SOCKET unusable: no notifications");
                    None
                }
            }
        });
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.trim() == std::process::id().to_string());
        let every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(|u| Duration::from_micros(u) / 2);
        Service {
            sock,
            every,
            next: Instant::now(),
            live: Liveness::default(),
            stuck: None,
        }
    }

    fn send(&self, msg: &str) {
        if let Some((s, addr)) = &self.sock {
            if let Err(e) = s.send_to_addr(msg.as_bytes(), addr) {
                tracing::warn!(error = %e, "service manager notification not sent");
            }
        }
    }

    /// The node forwards: the workers run on the published tables.
    pub fn ready(&mut self, view: &View) {
        let status = format!(
            "STATUS=forwarding: node {}, ports {}, workers {}, model generation {}",
            view.node,
            view.ifaces.read().iter().count(),
            view.counters.len(),
            view.published_generation()
        );
        self.send(&format!(
            "READY=1\n{status}\nMAINPID={}",
            std::process::id()
        ));
        self.next = Instant::now();
        self.tick(view);
    }

    /// Called often (every few milliseconds) by the main thread: pings the
    /// watchdog when due and every worker is alive.
    pub fn tick(&mut self, view: &View) {
        let Some(every) = self.every else {
            return;
        };
        let now = Instant::now();
        let polls: Vec<u64> = view.counters.iter().map(|c| c.polls.get()).collect();
        let stuck = self.live.observe(&polls, now);
        if stuck != self.stuck {
            if let Some(w) = stuck {
                tracing::error!(
                    worker = w,
                    "worker has not polled for {STALL:?}: watchdog pings stop"
                );
                self.send(&format!(
                    "STATUS=worker {w} has not polled for {STALL:?}: watchdog pings stopped"
                ));
            }
            self.stuck = stuck;
        }
        if now < self.next || stuck.is_some() {
            return;
        }
        self.send("WATCHDOG=1");
        self.next = now + every;
    }

    /// The daemon stops.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: draining and closing the ports");
    }
}

/// The socket named by `$NOTIFY_SOCKET`: a path, or `@name` (abstract).
fn open(name: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match name.strip_prefix('@') {
        Some(abs) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abs.as_bytes())?
        }
        None => SocketAddr::from_pathname(name)?,
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// When each worker's poll counter last moved.
#[derive(Default)]
struct Liveness {
    seen: Vec<(u64, Instant)>,
}

impl Liveness {
    /// Takes the poll counters at `now`; returns the first worker whose
    /// counter has not moved for [`STALL`].
    fn observe(&mut self, polls: &[u64], now: Instant) -> Option<usize> {
        if self.seen.len() != polls.len() {
            self.seen = polls.iter().map(|&p| (p, now)).collect();
        }
        let mut stuck = None;
        for (w, (&p, seen)) in polls.iter().zip(self.seen.iter_mut()).enumerate() {
            if p != seen.0 {
                *seen = (p, now);
            } else if stuck.is_none() && now.duration_since(seen.1) >= STALL {
                stuck = Some(w);
            }
        }
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_whose_polls_stand_still_is_stuck() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        assert_eq!(l.observe(&[0, 0], t0), None);
        // Worker 0 polls on, worker 1 never does.
        assert_eq!(l.observe(&[1024, 0], t0 + Duration::from_secs(1)), None);
        assert_eq!(l.observe(&[2048, 0], t0 + STALL), Some(1));
        // Worker 1 moves again: alive; worker 0 stops.
        assert_eq!(l.observe(&[2048, 1024], t0 + STALL * 2), Some(0));
        assert_eq!(
            l.observe(&[3072, 1024], t0 + STALL * 2 + Duration::from_millis(1)),
            None
        );
        assert_eq!(l.observe(&[3072, 1024], t0 + STALL * 4), Some(0));
    }
}
