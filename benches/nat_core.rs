//! NAT alone, in process (no DPDK, no I/O): cycles per packet of the
//! translations a worker does, against issue 5's goals.
//!
//! - FIP: `nat::rewrite_src` / `nat::rewrite_dst` (1:1, stateless) on 32 flows.
//! - SNAT established: `Nat::snat_out` on `DVR_BENCH_SESSIONS` (default
//!   1,000,000) live sessions, each packet of another session in a shuffled
//!   order (a pass touches every session once: the tables do not fit the
//!   caches, as on a loaded node); then `Nat::snat_in` on the replies, in
//!   another shuffled order. Per packet, and as the daemon's worker does it:
//!   its own loop (`worker::burst::BurstCtx::decide`) on bursts of VXLAN
//!   frames from a compute node in on the underlay port of the node holding
//!   the router's SNAT (the SNAT way: each frame's way worked out and its
//!   lookup prefetched for the whole burst, then each decapsulated,
//!   translated, routed out), and on the replies in on its external port
//!   (the SNAT's lookups of the burst prefetched, then the whole pipeline:
//!   translated back, routed, VXLAN-encapsulated to the compute node).
//! - SNAT new sessions: a fresh table of the same size filled by
//!   `DVR_BENCH_NEW_FLOWS` (default: the session count) distinct flows, each
//!   packet making a session: only the `snat_out` calls (or the worker's
//!   bursts) are timed. Then the sweep that frees them once expired
//!   (`Nat::expire`), per session.
//!
//! The flows are those of `benches/nat.rs` (`nat_gen::snat_flow`: 4000 inside
//! hosts, 250 remote hosts); the router gets as many external addresses as
//! endpoint-independent mapping needs for them (each inside address and port
//! holds one external port; about 64k per address).
//!
//! The worker's rows run on the `dvr::testkit` north-south topology on its
//! SNAT node `nn1`, grown by an inside network `in` (VXLAN 500,
//! 10.0.0.0/16) on router `r1` with a port on `cn1` for each inside host,
//! and the router's external gateway given those addresses.
//!
//! Each burst of 32 IPv4/UDP packets (46 bytes; in 60-byte frames, VXLAN
//! encapsulated for the worker's SNAT way) is copied from the capture into
//! a burst buffer first, as a NIC would have written it; the copy alone is
//! measured too and subtracted. Best of `DVR_BENCH_ROUNDS` (default 3) passes.
//!
//! Run: `scripts/bench nat_core`. `DVR_BENCH_CASE=<substring>` runs only the
//! matching cases (profiling: `valgrind --tool=callgrind` with a smaller
//! `DVR_BENCH_SESSIONS`).

#[path = "harness.rs"]
mod harness;
#[path = "nat_gen.rs"]
mod nat_gen;

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dvr::gen::{udp4_frame, Udp4};
use dvr::mac::MacAddr;
use dvr::model::{FixedIp, Model};
use dvr::nat::{self, Nat, NatConfig};
use dvr::pipeline::{self, Env};
use dvr::stats::WorkerCounters;
use dvr::sys::{rdtsc, Frames};
use dvr::tables::Snapshot;
use dvr::testkit::{self as kit, MemBurst, Rng};
use dvr::wire::{be32, Ipv4Packet, UdpHeader};
use dvr::worker::burst::{Ahead, BurstCtx};
use serde_json::json;

const BURST: usize = 32;
const IP_LEN: usize = nat_gen::FRAME_LEN - 14;

/// A packet's buffer, holding the 46-byte IPv4/UDP packet of a 60-byte frame.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Buf([u8; 64]);

impl AsMut<[u8]> for Buf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0[..IP_LEN]
    }
}
const ROUTER: u32 = 7;

fn tsc_hz() -> f64 {
    let (t0, c0) = (Instant::now(), rdtsc());
    std::thread::sleep(Duration::from_millis(200));
    (rdtsc() - c0) as f64 / t0.elapsed().as_secs_f64()
}

fn ip_packet(u: &Udp4, seq: u32) -> Buf {
    let f = udp4_frame(u, nat_gen::FRAME_LEN, seq);
    let mut b = Buf([0u8; 64]);
    b.0[..IP_LEN].copy_from_slice(&f[14..]);
    b
}

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, seq: u32) -> Buf {
    let m = MacAddr([0; 6]);
    ip_packet(
        &Udp4 {
            src_mac: m,
            dst_mac: m,
            src_ip: src,
            dst_ip: dst,
            src_port: sport,
            dst_port: dport,
        },
        seq,
    )
}

fn shuffled(n: u32, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).collect();
    let mut r = Rng(seed);
    for i in (1..v.len()).rev() {
        v.swap(i, (r.next_u64() % (i as u64 + 1)) as usize);
    }
    v
}

/// SNAT flow `i` outbound (`nat_gen::snat_flow`, first source port 1024).
fn snat_packet(i: u32) -> Buf {
    let (src, sport, dst) = nat_gen::snat_flow(i, 1024);
    udp(src, sport, dst, 80, i)
}

/// External addresses for `sessions` endpoint-independent mappings of the
/// `nat_gen` flows: the inside hosts are spread over them by a hash, so twice
/// what a perfect spread needs (at most 256).
fn ext_ips(sessions: u32) -> Vec<Ipv4Addr> {
    let n = (sessions as usize * 2 / 64_512 + 1)
        .next_power_of_two()
        .min(256);
    (0..n as u32)
        .map(|i| {
            Ipv4Addr::from(
                u32::from(Ipv4Addr::new(203, 0, 113, 0)) + 256 * (i / 200) + 20 + i % 200,
            )
        })
        .collect()
}

fn new_nat(sessions: u32, hz: f64) -> Nat {
    let mut n = Nat::new(
        NatConfig {
            max_sessions: sessions as usize,
            ..NatConfig::default()
        },
        hz as u64,
    );
    n.set_router(ROUTER, &ext_ips(sessions), nat::DEFAULT_PORTS)
        .unwrap();
    n
}

/// Cycles for one pass of `pkts`, a burst at a time: each burst copied into
/// `bufs`, then `f` on it (with the burst's `now`).
fn pass(
    pkts: &[Buf],
    bufs: &mut [Buf; BURST],
    now: u64,
    mut f: impl FnMut(&mut [Buf], u64),
) -> u64 {
    let t0 = rdtsc();
    for (k, chunk) in pkts.chunks(BURST).enumerate() {
        let b = &mut bufs[..chunk.len()];
        b.copy_from_slice(chunk);
        f(b, now + k as u64);
    }
    rdtsc() - t0
}

/// Best cycles per packet of `rounds` passes of `f` over `pkts`, less the copy.
fn measure(
    pkts: &[Buf],
    rounds: usize,
    now: u64,
    mut f: impl FnMut(&mut [Buf], u64),
) -> (f64, f64) {
    let mut bufs = [Buf([0u8; 64]); BURST];
    let n = pkts.len() as f64;
    let (mut best, mut copy) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        copy = copy.min(
            pass(pkts, &mut bufs, now, |b, _| {
                black_box(b);
            }) as f64
                / n,
        );
        best = best.min(pass(pkts, &mut bufs, now, &mut f) as f64 / n);
    }
    ((best - copy).max(0.0), copy)
}

/// A frame of a capture for the worker's rows (at most a VXLAN frame of a
/// 60-byte frame).
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Wire {
    len: usize,
    b: [u8; 120],
}

impl Wire {
    fn new(f: &[u8]) -> Self {
        let mut w = Wire {
            len: f.len(),
            b: [0; 120],
        };
        w.b[..f.len()].copy_from_slice(f);
        w
    }
}

impl AsRef<[u8]> for Wire {
    fn as_ref(&self) -> &[u8] {
        &self.b[..self.len]
    }
}

/// The VNI of the inside network of [`snat_model`].
const INSIDE_VNI: u32 = 500;

/// The external addresses of [`snat_model`]'s router: as many as
/// [`ext_ips`], from 203.0.113.100 up (clear of the topology's floating IPs).
fn gw_ips(sessions: u32) -> Vec<Ipv4Addr> {
    let n = ext_ips(sessions).len();
    assert!(n <= 150, "too many sessions for the external subnet");
    (0..n as u8)
        .map(|i| Ipv4Addr::new(203, 0, 113, 100 + i))
        .collect()
}

/// The `testkit` north-south model with an inside network `in` (VXLAN
/// [`INSIDE_VNI`], 10.0.0.0/16) on `r1` and a port on `cn1` for each
/// `nat_gen` inside host; r1's external gateway with the addresses
/// [`gw_ips`] of `sessions` sessions.
fn snat_model(sessions: u32) -> Model {
    let mut m = kit::ns_model();
    let mut ch = vec![
        json!({"op": "network_create", "name": "in", "network_type": "vxlan", "segment": INSIDE_VNI}),
        json!({"op": "subnet_create", "name": "in4", "network": "in", "cidr": "10.0.0.0/16", "gateway_ip": "10.0.0.1"}),
        json!({"op": "router_add_subnet", "router": "r1", "subnet": "in4"}),
    ];
    for h in 0..nat_gen::SNAT_HOSTS {
        let (ip, _, _) = nat_gen::snat_flow(h, 1024);
        let mac = [0xfa, 0x16, 0x3e, 0x10, (h >> 8) as u8, h as u8];
        ch.push(kit::port(
            &format!("h{h}"),
            "in",
            mac,
            "cn1",
            None,
            &[("in4", &ip.to_string())],
        ));
    }
    m.apply(&kit::changes(json!(ch)))
        .expect("the inside network is valid");
    let gw = m
        .routers
        .get_mut("r1")
        .and_then(|r| r.gateway.as_mut())
        .expect("r1 has an external gateway");
    gw.ips.retain(|a| !a.ip.is_ipv4());
    for ip in gw_ips(sessions) {
        gw.ips.push(FixedIp {
            subnet: "ext4".into(),
            ip: ip.into(),
        });
    }
    m
}

/// A worker on `nn1` ([`kit::snat_node_snapshot`] of [`snat_model`]): its
/// environment with a SNAT table of `sessions`, and what its loop takes.
struct Rig {
    snap: std::sync::Arc<Snapshot>,
    env: Env,
    c: WorkerCounters,
    x: dvr::punt::Exchange,
    floods: Vec<pipeline::Flood>,
    ahead: Ahead,
    rx: MemBurst,
    to: [u16; BURST],
    lens: [u32; BURST],
}

impl Rig {
    fn new(snap: &std::sync::Arc<Snapshot>, sessions: u32, hz: f64) -> Self {
        let config = NatConfig {
            max_sessions: sessions as usize,
            ..NatConfig::default()
        };
        Rig {
            snap: snap.clone(),
            env: Env::with_nat(rdtsc, hz as u64, config, nat::DEFAULT_PORTS),
            c: WorkerCounters::new(2),
            x: Default::default(),
            floods: Vec::with_capacity(BURST),
            ahead: Ahead::default(),
            rx: MemBurst::new(BURST, 256, kit::HEADROOM),
            to: [0; BURST],
            lens: [0; BURST],
        }
    }

    /// The frames loaded ([`MemBurst::load`]) decided by the worker's loop,
    /// in on `port`: where each went ([`Rig::to`]).
    #[inline]
    fn decide(&mut self, port: u16) {
        let n = self.rx.len();
        self.env.burst(&self.snap);
        let mut b = BurstCtx::new(
            &self.snap,
            &mut self.env,
            &self.c,
            &self.x,
            port,
            0b11,
            2,
            &mut self.floods,
        );
        b.decide(
            &mut self.ahead,
            &mut self.rx,
            &mut self.to[..n],
            &mut self.lens[..n],
        );
    }

    /// `frames`, a burst at a time, through the worker's loop in on `port`:
    /// the cycles taken (loading included), and the frames sent to `want`.
    fn pass(&mut self, frames: &[Wire], port: u16, want: u16) -> (u64, usize) {
        let mut sent = 0;
        let t0 = rdtsc();
        for chunk in frames.chunks(BURST) {
            self.rx.load(chunk);
            self.decide(port);
            sent += self.to[..chunk.len()]
                .iter()
                .filter(|&&p| p == want)
                .count();
        }
        (rdtsc() - t0, sent)
    }

    /// The cycles of loading `frames` alone, a burst at a time.
    fn copy_pass(&mut self, frames: &[Wire]) -> u64 {
        let t0 = rdtsc();
        for chunk in frames.chunks(BURST) {
            self.rx.load(chunk);
            black_box(self.rx.data(0));
        }
        rdtsc() - t0
    }

    /// Best cycles per packet of `rounds` passes of `frames` in on `port`
    /// (each sent to `want`), less the copy.
    fn measure(&mut self, frames: &[Wire], rounds: usize, port: u16, want: u16) -> (f64, f64) {
        let n = frames.len() as f64;
        let (mut best, mut copy) = (f64::MAX, f64::MAX);
        for _ in 0..rounds {
            copy = copy.min(self.copy_pass(frames) as f64 / n);
            let (c, sent) = self.pass(frames, port, want);
            assert_eq!(sent, frames.len(), "every frame sent to port {want}");
            best = best.min(c as f64 / n);
        }
        ((best - copy).max(0.0), copy)
    }
}

/// SNAT flow `i` as `cn1` sends it to the SNAT node `nn1`: routed by its
/// DVR MAC to r1's interface on `in` (`in_mac`), in VXLAN.
fn snat_vxlan(i: u32, in_mac: MacAddr) -> Wire {
    let (src, sport, dst) = nat_gen::snat_flow(i, 1024);
    let inner = udp4_frame(
        &Udp4 {
            src_mac: MacAddr(kit::DVR1),
            dst_mac: in_mac,
            src_ip: src,
            dst_ip: dst,
            src_port: sport,
            dst_port: 80,
        },
        nat_gen::FRAME_LEN,
        i,
    );
    Wire::new(&kit::vxlan_frame(
        &inner,
        INSIDE_VNI,
        (kit::UL_MAC, kit::VTEP1),
        (kit::NN1_UL_MAC, kit::VTEP3),
    ))
}

/// The reply to the translated packet `ip` (IPv4): from its destination
/// (port 80) to its source, sent by the upstream router to `gw_mac`.
fn reply_frame(ip: &[u8], gw_mac: MacAddr) -> Wire {
    let ip = Ipv4Packet::new_checked(ip).expect("an IPv4 packet");
    let u = UdpHeader::new_checked(ip.payload()).expect("a UDP header");
    let f = udp4_frame(
        &Udp4 {
            src_mac: MacAddr(kit::UPSTREAM_MAC),
            dst_mac: gw_mac,
            src_ip: ip.dst_addr(),
            dst_ip: ip.src_u32().into(),
            src_port: 80,
            dst_port: u.src_port(),
        },
        nat_gen::FRAME_LEN,
        be32(u.payload(), 0),
    );
    Wire::new(&f)
}

fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut r = Rng(seed);
    for i in (1..v.len()).rev() {
        v.swap(i, (r.next_u64() % (i as u64 + 1)) as usize);
    }
}

struct Row {
    name: String,
    cycles: f64,
    goal: Option<f64>,
}

fn main() {
    let sessions: u32 = harness::env_or("DVR_BENCH_SESSIONS", 1_000_000);
    let new_flows: u32 = harness::env_or("DVR_BENCH_NEW_FLOWS", sessions);
    let rounds: usize = harness::env_or("DVR_BENCH_ROUNDS", 3);
    let only: String = harness::env_or("DVR_BENCH_CASE", String::new());
    let want = |name: &str| name.contains(only.as_str());
    let hz = tsc_hz();
    eprintln!("TSC {:.2} GHz", hz / 1e9);
    // 250 cycles/packet established; 3M new sessions/s at this TSC rate.
    let goal_new = hz / 3e6;
    let mut rows: Vec<Row> = Vec::new();
    let mut copy_cost = 0.0;
    let mut row = |name: String, (c, copy): (f64, f64), goal: Option<f64>| {
        eprintln!("  {name}: {c:.1} cycles/packet (copy {copy:.1} subtracted)");
        if copy > 0.0 {
            copy_cost = copy;
        }
        rows.push(Row {
            name,
            cycles: c,
            goal,
        });
    };
    let now0 = 1_000_000u64;

    // ---- FIP, stateless.
    let fip_out: Vec<Buf> = (0..BURST as u16)
        .map(|i| {
            udp(
                nat_gen::fixed_ip(0),
                1024 + i,
                nat_gen::INTERNET,
                80,
                i.into(),
            )
        })
        .collect();
    let fip_in: Vec<Buf> = (0..BURST as u16)
        .map(|i| {
            udp(
                nat_gen::INTERNET,
                80,
                nat_gen::floating_ip(0),
                8080 + i,
                i.into(),
            )
        })
        .collect();
    let reps = |v: &[Buf]| -> Vec<Buf> { v.iter().cycle().take(BURST * 20_000).copied().collect() };
    let (fip_out, fip_in) = (reps(&fip_out), reps(&fip_in));
    if want("FIP") {
        let fip = nat_gen::floating_ip(0);
        let fixed = nat_gen::fixed_ip(0);
        row(
            "FIP rewrite_src (VM -> external)".into(),
            measure(&fip_out, rounds, now0, |b, _| {
                for p in b {
                    nat::rewrite_src(p.as_mut(), fip).unwrap();
                }
            }),
            None,
        );
        row(
            "FIP rewrite_dst (external -> VM)".into(),
            measure(&fip_in, rounds, now0, |b, _| {
                for p in b {
                    nat::rewrite_dst(p.as_mut(), fixed).unwrap();
                }
            }),
            None,
        );
    }

    // ---- SNAT established.
    let est = format!("SNAT established ({sessions} sessions)");
    if want("established") {
        let t = Instant::now();
        let mut n = new_nat(sessions, hz);
        let out: Vec<Buf> = shuffled(sessions, 1).into_iter().map(snat_packet).collect();
        // Create the sessions, and learn each one's mapping for the replies.
        let mut replies: Vec<Buf> = Vec::with_capacity(sessions as usize);
        for p in &out {
            let mut q = *p;
            n.snat_out(ROUTER, q.as_mut(), now0)
                .expect("session created");
            let ip = Ipv4Packet::new_checked(&q.0[..]).expect("an IPv4 packet");
            let u = UdpHeader::new_checked(ip.payload()).expect("a UDP header");
            let (ext, eport) = (ip.src_u32(), u.src_port());
            let (rem, seq) = (ip.dst_addr(), be32(u.payload(), 0));
            replies.push(udp(rem, 80, ext.into(), eport, seq));
        }
        assert_eq!(n.len(), sessions as usize);
        let mut r = Rng(2);
        for i in (1..replies.len()).rev() {
            replies.swap(i, (r.next_u64() % (i as u64 + 1)) as usize);
        }
        let out = {
            // Another order than the one that created them.
            let mut o = out;
            let mut r = Rng(3);
            for i in (1..o.len()).rev() {
                o.swap(i, (r.next_u64() % (i as u64 + 1)) as usize);
            }
            o
        };
        eprintln!(
            "{sessions} sessions on {} external addresses set up in {:.1} s",
            ext_ips(sessions).len(),
            t.elapsed().as_secs_f64()
        );
        row(
            format!("{est}: snat_out"),
            measure(&out, rounds, now0, |b, now| {
                for p in b {
                    n.snat_out(ROUTER, p.as_mut(), now).unwrap();
                }
            }),
            Some(250.0),
        );
        row(
            format!("{est}: snat_in (replies)"),
            measure(&replies, rounds, now0, |b, now| {
                for p in b {
                    n.snat_in(p.as_mut(), now).unwrap();
                }
            }),
            Some(250.0),
        );
        assert_eq!(n.len(), sessions as usize, "no session lost or made");
        assert_eq!(n.counters().created, sessions as u64);
        drop(n);

        // The same through the daemon's worker on the SNAT node.
        let t = Instant::now();
        let m = snat_model(sessions);
        let in_mac = kit::iface_mac(&m, "r1", "in4");
        let gw_mac = m.routers["r1"].gateway.as_ref().expect("a gateway").mac;
        let snap = kit::snat_node_snapshot(&m);
        drop(m);
        let mut w = Rig::new(&snap, sessions, hz);
        let mut out: Vec<Wire> = shuffled(sessions, 1)
            .into_iter()
            .map(|i| snat_vxlan(i, in_mac))
            .collect();
        // Create the sessions, and learn each one's mapping for the replies.
        let mut replies: Vec<Wire> = Vec::with_capacity(sessions as usize);
        for chunk in out.chunks(BURST) {
            w.rx.load(chunk);
            w.decide(kit::NN1_UP);
            for i in 0..chunk.len() {
                assert_eq!(w.to[i], kit::NN1_EXT, "the SNAT way sends it out");
                replies.push(reply_frame(&w.rx.data(i)[14..], gw_mac));
            }
        }
        assert_eq!(w.env.nat.len(), sessions as usize);
        shuffle(&mut replies, 2);
        shuffle(&mut out, 3);
        eprintln!(
            "{sessions} sessions through the worker set up in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        row(
            format!("{est}: worker, SNAT way (VXLAN in)"),
            w.measure(&out, rounds, kit::NN1_UP, kit::NN1_EXT),
            Some(250.0),
        );
        row(
            format!("{est}: worker, external port (replies)"),
            w.measure(&replies, rounds, kit::NN1_EXT, kit::NN1_UP),
            Some(250.0),
        );
        assert_eq!(
            w.env.nat.len(),
            sessions as usize,
            "no session lost or made"
        );
        assert_eq!(w.env.nat.counters().created, sessions as u64);
    }

    // ---- SNAT new sessions.
    if want("new") {
        let pkts: Vec<Buf> = shuffled(new_flows, 4)
            .into_iter()
            .map(snat_packet)
            .collect();
        let mut bufs = [Buf([0u8; 64]); BURST];
        let per = |x: f64| x / new_flows as f64;
        let (mut best, mut copy) = (f64::MAX, f64::MAX);
        for _ in 0..rounds {
            let mut n = new_nat(new_flows, hz);
            copy = copy.min(pass(&pkts, &mut bufs, now0, |b, _| {
                black_box(b);
            }) as f64);
            let c = pass(&pkts, &mut bufs, now0, |b, now| {
                for p in b {
                    n.snat_out(ROUTER, p.as_mut(), now).unwrap();
                }
            });
            assert_eq!(
                n.counters().created,
                new_flows as u64,
                "a session per packet"
            );
            best = best.min(c as f64);
        }
        row(
            format!("SNAT new sessions (table of {new_flows}): snat_out"),
            (per(best - copy).max(0.0), per(copy)),
            Some(goal_new),
        );
        // The same through the daemon's worker on the SNAT node.
        let m = snat_model(new_flows);
        let in_mac = kit::iface_mac(&m, "r1", "in4");
        let snap = kit::snat_node_snapshot(&m);
        drop(m);
        let frames: Vec<Wire> = shuffled(new_flows, 4)
            .into_iter()
            .map(|i| snat_vxlan(i, in_mac))
            .collect();
        let (mut best, mut copy, mut sweep) = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..rounds {
            let mut w = Rig::new(&snap, new_flows, hz);
            copy = copy.min(w.copy_pass(&frames) as f64);
            let (c, sent) = w.pass(&frames, kit::NN1_UP, kit::NN1_EXT);
            assert_eq!(sent, frames.len(), "every frame sent out");
            assert_eq!(
                w.env.nat.counters().created,
                new_flows as u64,
                "a session per packet"
            );
            best = best.min(c as f64);
            // All idle past the UDP timeout: the sweep frees them.
            let later = rdtsc() + 301 * hz as u64;
            let t0 = rdtsc();
            let freed = w.env.nat.expire(later, new_flows as usize);
            sweep = sweep.min((rdtsc() - t0) as f64);
            assert_eq!(freed, new_flows as usize);
            assert!(w.env.nat.is_empty());
        }
        row(
            format!("SNAT new sessions (table of {new_flows}): worker, SNAT way"),
            (per(best - copy).max(0.0), per(copy)),
            Some(goal_new),
        );
        row(
            "  ... and their expiry (Nat::expire), per session".into(),
            (per(sweep), 0.0),
            None,
        );
    }

    println!(
        "\nNAT in process, bursts of {BURST} 46-byte IPv4/UDP packets, best of {rounds} passes, TSC {:.2} GHz",
        hz / 1e9
    );
    for r in &rows {
        print!(
            "{:<68} {:>7.1} cycles/packet {:>7.2} Mpps/core",
            r.name,
            r.cycles,
            hz / r.cycles.max(1.0) / 1e6
        );
        if let Some(g) = r.goal {
            print!(
                "   goal <= {g:.0}: {}",
                if r.cycles <= g { "met" } else { "NOT met" }
            );
        }
        println!();
    }
    println!("copying a packet into its burst buffer (subtracted above): {copy_cost:.1} cycles");
    println!(
        "goals (issue 5): SNAT established with 1M sessions <= 250 cycles/packet; >= 3M new \
         sessions/s/core = <= {goal_new:.0} cycles per new session at this TSC rate"
    );
}
