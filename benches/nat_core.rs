//! NAT alone, in process (no DPDK, no I/O): cycles per packet of the
//! translations a worker does, against issue 5's goals.
//!
//! - FIP: `nat::rewrite_src` / `nat::rewrite_dst` (1:1, stateless) on 32 flows.
//! - SNAT established: `Nat::snat_out` on `DVR_BENCH_SESSIONS` (default
//!   1,000,000) live sessions, each packet of another session in a shuffled
//!   order (a pass touches every session once: the tables do not fit the
//!   caches, as on a loaded node); then `Nat::snat_in` on the replies, in
//!   another shuffled order. Per packet, and through `Nat::snat_out_burst` /
//!   `Nat::snat_in_burst` (the hash lookups of a burst prefetched).
//! - SNAT new sessions: a fresh table of the same size filled by
//!   `DVR_BENCH_NEW_FLOWS` (default: the session count) distinct flows, each
//!   packet making a session: only the `snat_out` calls are timed. Then the
//!   sweep that frees them once expired (`Nat::expire`), per session.
//!
//! The flows are those of `benches/nat.rs` (`nat_gen::snat_flow`: 4000 inside
//! hosts, 250 remote hosts); the router gets as many external addresses as
//! endpoint-independent mapping needs for them (each inside address and port
//! holds one external port; about 64k per address).
//!
//! Each burst of 32 IPv4/UDP packets (46 bytes) is copied from the capture
//! into a burst buffer first, as a NIC would have written it; the copy alone is
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
use dvr::nat::{self, Nat, NatConfig};
use dvr::sys::rdtsc;
use dvr::testkit::Rng;
use dvr::wire::{be32, Ipv4Packet, UdpHeader};

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
        let mut res = [Ok(()); BURST];
        row(
            format!("{est}: snat_out_burst"),
            measure(&out, rounds, now0, |b, now| {
                n.snat_out_burst(ROUTER, b, now, &mut res);
                assert!(res[..b.len()].iter().all(|r| r.is_ok()));
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
        let mut res = [Ok(0); BURST];
        row(
            format!("{est}: snat_in_burst (replies)"),
            measure(&replies, rounds, now0, |b, now| {
                n.snat_in_burst(b, now, &mut res);
                assert!(res[..b.len()].iter().all(|r| *r == Ok(ROUTER)));
            }),
            Some(250.0),
        );
        assert_eq!(n.len(), sessions as usize, "no session lost or made");
        assert_eq!(n.counters().created, sessions as u64);
    }

    // ---- SNAT new sessions.
    if want("new") {
        let pkts: Vec<Buf> = shuffled(new_flows, 4)
            .into_iter()
            .map(snat_packet)
            .collect();
        let mut bufs = [Buf([0u8; 64]); BURST];
        for burst in [false, true] {
            let (mut best, mut copy, mut sweep) = (f64::MAX, f64::MAX, f64::MAX);
            for _ in 0..rounds {
                let mut n = new_nat(new_flows, hz);
                copy = copy.min(pass(&pkts, &mut bufs, now0, |b, _| {
                    black_box(b);
                }) as f64);
                let mut res = [Ok(()); BURST];
                let c = pass(&pkts, &mut bufs, now0, |b, now| {
                    if burst {
                        n.snat_out_burst(ROUTER, b, now, &mut res);
                        assert!(res[..b.len()].iter().all(|r| r.is_ok()));
                    } else {
                        for p in b {
                            n.snat_out(ROUTER, p.as_mut(), now).unwrap();
                        }
                    }
                });
                assert_eq!(
                    n.counters().created,
                    new_flows as u64,
                    "a session per packet"
                );
                best = best.min(c as f64);
                // All idle past the UDP timeout: the sweep frees them.
                let later = now0 + 301 * hz as u64;
                let t0 = rdtsc();
                let freed = n.expire(later, new_flows as usize);
                sweep = sweep.min((rdtsc() - t0) as f64);
                assert_eq!(freed, new_flows as usize);
                assert!(n.is_empty());
            }
            let per = |x: f64| x / new_flows as f64;
            row(
                format!(
                    "SNAT new sessions (table of {new_flows}): {}",
                    if burst { "snat_out_burst" } else { "snat_out" }
                ),
                (per(best - copy).max(0.0), per(copy)),
                Some(goal_new),
            );
            if burst {
                row(
                    "  ... and their expiry (Nat::expire), per session".into(),
                    (per(sweep), 0.0),
                    None,
                );
            }
        }
    }

    println!(
        "\nNAT in process, bursts of {BURST} 46-byte IPv4/UDP packets, best of {rounds} passes, TSC {:.2} GHz",
        hz / 1e9
    );
    for r in &rows {
        print!(
            "{:<56} {:>7.1} cycles/packet {:>7.2} Mpps/core",
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
