//! The pipeline alone, in process (no DPDK, no I/O): cycles per packet of each
//! dataplane path, and what a large model costs the lookups and memory.
//!
//! The frames of one burst are copied into mbuf-sized buffers (128 bytes of
//! headroom) and run through `pipeline::process`, the code the workers run,
//! on the `dvr::testkit` topology: L2 to a local port, routed to a local port,
//! routed to another host (VXLAN and GRE encapsulation, DVR MAC), and the
//! receive side (VXLAN and GRE decapsulation, VLAN untagging; DVR MAC
//! rewrite). The copy alone is measured too and subtracted. Each path three
//! ways: without the flow cache, with it, and the worker's own way for the
//! burst: a VM port's cached flows (`measure_fast`), an underlay port's decap
//! way (`measure_decap`).
//!
//! Scale: the same paths on the same router `r1` with one extra route, then
//! with the model grown to 10,000 routers (each with its own network, subnet and
//! 100 extra routes: 1,000,000 routes) and `r1` itself holding 1,000 extra
//! routes of lengths /22 to /32: lookup cost against the one-route case, and
//! the resident memory the compiled snapshot adds.
//!
//! Run: `scripts/bench pipeline`. `DVR_BENCH_SCALE` (default 1.0) scales the
//! number of routers; `DVR_BENCH_ITERS` the bursts per measurement.

#[path = "harness.rs"]
mod harness;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dvr::fastpath;
use dvr::model::Model;
use dvr::pipeline::{self, Disposition, Env, NoTrace};
use dvr::pkt::Frame;
use dvr::tables::Snapshot;
use dvr::testkit::*;
use serde_json::json;

const BURST: usize = 32;
const HEADROOM: usize = 128;
const BUF: usize = 2048;

fn tsc_hz() -> f64 {
    let (t0, c0) = (Instant::now(), dvr::sys::rdtsc());
    std::thread::sleep(Duration::from_millis(200));
    (dvr::sys::rdtsc() - c0) as f64 / t0.elapsed().as_secs_f64()
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// A 60-byte IPv4/UDP frame.
fn udp4(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    udp4_min(src_mac, dst_mac, (src, dst), (sport, 9), 64)
}

struct Case {
    name: &'static str,
    port: u16,
    want: u16,
    frames: Vec<Vec<u8>>,
}

fn gw_mac(m: &Model, sn: &str) -> [u8; 6] {
    m.routers["r1"]
        .interfaces
        .iter()
        .find(|i| i.subnet == sn)
        .unwrap()
        .mac
        .0
}

fn cases(m: &Model) -> Vec<Case> {
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let flows = |f: &dyn Fn(u16) -> Vec<u8>| (0..BURST as u16).map(f).collect::<Vec<_>>();
    let blue = gw_mac(m, "blue4");
    let red = gw_mac(m, "red4");
    vec![
        Case {
            name: "L2, to a local port",
            port: VM_A,
            want: VM_B,
            frames: flows(&|i| udp4(A_MAC, A2_MAC, ip("10.1.0.10"), ip("10.1.0.11"), 1024 + i)),
        },
        Case {
            name: "routed, to a local port",
            port: VM_A,
            want: VM_B,
            frames: flows(&|i| udp4(A_MAC, blue, ip("10.1.0.10"), ip("10.2.0.10"), 1024 + i)),
        },
        Case {
            name: "routed + VXLAN encap",
            port: VM_B,
            want: UP,
            frames: flows(&|i| udp4(B_MAC, red, ip("10.2.0.10"), ip("10.1.0.20"), 1024 + i)),
        },
        Case {
            name: "routed + GRE encap",
            port: VM_A,
            want: UP,
            frames: flows(&|i| udp4(A_MAC, blue, ip("10.1.0.10"), ip("10.2.0.20"), 1024 + i)),
        },
        Case {
            name: "VXLAN decap + DVR MAC rewrite",
            port: UP,
            want: VM_A,
            frames: flows(&|i| {
                vxlan_from_cn2(
                    &udp4(DVR2, A_MAC, ip("10.2.0.20"), ip("10.1.0.10"), 1024 + i),
                    101,
                )
            }),
        },
        Case {
            name: "GRE decap + DVR MAC rewrite",
            port: UP,
            want: VM_B,
            frames: flows(&|i| {
                gre_frame(
                    &udp4(DVR2, B_MAC, ip("10.1.0.20"), ip("10.2.0.10"), 1024 + i),
                    202,
                    (CN2_UL_MAC, VTEP2),
                    (UL_MAC, VTEP1),
                )
            }),
        },
        Case {
            name: "VLAN untag + DVR MAC rewrite",
            port: UP,
            want: VM_E,
            frames: flows(&|i| {
                vlan_frame(
                    &udp4(DVR2, E_MAC, ip("10.1.0.20"), ip("10.3.0.10"), 1024 + i),
                    303,
                )
            }),
        },
    ]
}

const A2_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0xa2];

/// The testkit model plus a second local port on blue (for L2) and `routes`
/// extra routes on r1.
fn base_model(routes: usize) -> Model {
    let mut m = model();
    // Named after b: b serves vm-b (the first by name), a2 is reached through it.
    let mut ch = vec![port(
        "za2",
        "blue",
        A2_MAC,
        "cn1",
        Some("vm-b"),
        &[("blue4", "10.1.0.11")],
    )];
    let rs: Vec<_> = (0..routes)
        .map(|k| {
            // Distinct prefixes of lengths /22 to /32 (k in bits 10-19).
            let len = 22 + (k % 11) as u32;
            let net = Ipv4Addr::from((172u32 << 24 | (k as u32) << 10) & (u32::MAX << (32 - len)));
            json!({"destination": format!("{net}/{len}"), "nexthop": "10.2.0.20"})
        })
        .collect();
    ch.push(json!({"op": "router_set", "name": "r1", "routes": rs}));
    m.apply(&changes(json!(ch))).unwrap();
    m
}

/// Grows `m` by `routers` routers, each with its network, subnet and 100 routes.
fn grow(m: &mut Model, routers: usize) {
    let sub = |i: usize| format!("100.{}.{}", 64 + (i >> 8), i & 255);
    let mut batch = Vec::new();
    for i in 0..routers {
        batch.push(json!({"op": "network_create", "name": format!("n{i}"), "network_type": "vxlan", "segment": 10_000 + i}));
        batch.push(json!({"op": "subnet_create", "name": format!("s{i}"), "network": format!("n{i}"), "cidr": format!("{}.0/24", sub(i))}));
        batch.push(json!({"op": "router_create", "name": format!("x{i}")}));
        batch.push(json!({"op": "router_add_subnet", "router": format!("x{i}"), "subnet": format!("s{i}")}));
        let routes: Vec<_> = (0..100)
            .map(|k| json!({"destination": format!("192.168.{k}.0/24"), "nexthop": format!("{}.5", sub(i))}))
            .collect();
        batch.push(json!({"op": "router_set", "name": format!("x{i}"), "routes": routes}));
        if batch.len() >= 5000 {
            m.apply(&changes(json!(std::mem::take(&mut batch))))
                .unwrap();
        }
    }
    if !batch.is_empty() {
        m.apply(&changes(json!(batch))).unwrap();
    }
}

/// The cycles of copying `frames` into `bufs`, `iters` times: what each
/// measurement also spends, to subtract.
fn copy_only(bufs: &mut [Vec<u8>], frames: &[Vec<u8>], iters: usize) -> u64 {
    let t0 = dvr::sys::rdtsc();
    for _ in 0..iters {
        for (b, f) in bufs.iter_mut().zip(frames) {
            b[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
            std::hint::black_box(&b[HEADROOM]);
        }
    }
    dvr::sys::rdtsc() - t0
}

/// The best of 5 runs of `run` over `c`'s frames in `bufs` (each `iters`
/// bursts, its cycles or `None`), in cycles per packet with the copy
/// subtracted, and the copy's.
fn best_of_5(
    bufs: &mut Vec<Vec<u8>>,
    c: &Case,
    iters: usize,
    mut run: impl FnMut(&mut Vec<Vec<u8>>) -> Option<u64>,
) -> Option<(f64, f64)> {
    let n = (iters * BURST) as f64;
    let (mut best, mut best_copy) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        best_copy = best_copy.min(copy_only(bufs, &c.frames, iters) as f64 / n);
        best = best.min(run(bufs)? as f64 / n);
    }
    Some(((best - best_copy).max(0.0), best_copy))
}

/// A worker's environment, with its flow cache and SNAT tables.
fn worker_env(hz: f64) -> Env {
    Env::with_nat(
        dvr::sys::rdtsc,
        hz as u64,
        dvr::nat::NatConfig::default(),
        dvr::nat::DEFAULT_PORTS,
    )
}

/// Cycles per packet of `c` on `snap`, the copy into the buffers subtracted:
/// with a worker's flow cache (`cached`: routed flows after their first
/// frame), or with none (every frame through the full pipeline).
fn measure(snap: &Snapshot, c: &Case, iters: usize, hz: f64, cached: bool) -> (f64, f64) {
    let mut bufs: Vec<Vec<u8>> = (0..BURST).map(|_| vec![0u8; BUF]).collect();
    let mut env = if cached {
        worker_env(hz)
    } else {
        let mut e = Env::new(dvr::sys::rdtsc, hz as u64);
        e.flows = fastpath::flow::FlowCache::off();
        e
    };
    // Check once that the path is the one meant.
    for (b, f) in bufs.iter_mut().zip(&c.frames) {
        b[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
        let mut fr = Frame::new(b, HEADROOM, f.len()).unwrap();
        let v = pipeline::process(snap, &mut env, c.port, &mut fr, &mut NoTrace);
        assert_eq!(v, Disposition::Forward(c.want), "{}", c.name);
    }
    let full = |bufs: &mut Vec<Vec<u8>>| {
        let mut sent = 0u64;
        let t0 = dvr::sys::rdtsc();
        for _ in 0..iters {
            for (b, f) in bufs.iter_mut().zip(&c.frames) {
                b[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
                let mut fr = Frame::new(b, HEADROOM, f.len()).unwrap();
                if let Disposition::Forward(p) =
                    pipeline::process(snap, &mut env, c.port, &mut fr, &mut NoTrace)
                {
                    sent += p as u64;
                }
            }
        }
        std::hint::black_box(sent);
        Some(dvr::sys::rdtsc() - t0)
    };
    best_of_5(&mut bufs, c, iters, full).expect("every run gives its cycles")
}

/// The worker's way for a VM port's burst when the flow cache knows its flows
/// (`worker.rs`, `Ingress::Vm`): every frame's flow key worked out and its
/// cache set fetched, then each frame decided where it lies
/// ([`fastpath::fast`]). Cycles per packet, the copy subtracted; `None`
/// when the cache does not decide this path's frames.
fn measure_fast(snap: &Snapshot, c: &Case, iters: usize, hz: f64) -> Option<f64> {
    let mut bufs: Vec<Vec<u8>> = (0..BURST).map(|_| vec![0u8; BUF]).collect();
    let mut env = worker_env(hz);
    // The first frame of each flow goes the whole way, and is learned.
    for (b, f) in bufs.iter_mut().zip(&c.frames) {
        b[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
        let mut fr = Frame::new(b, HEADROOM, f.len()).unwrap();
        if let Disposition::Drop(_) | Disposition::Punt(_) =
            pipeline::process(snap, &mut env, c.port, &mut fr, &mut NoTrace)
        {
            return None;
        }
    }
    let mut keys = [([0u64; 3], 0usize); BURST];
    let mut run = |bufs: &mut Vec<Vec<u8>>, check: bool| {
        time_bursts(bufs, c, iters, |bufs, sent| {
            for (k, (b, f)) in keys.iter_mut().zip(bufs.iter().zip(&c.frames)) {
                let key = fastpath::flow::FlowCache::key(c.port, &b[HEADROOM..HEADROOM + f.len()])?;
                let set = env.flows.set_of(&key);
                env.flows.prefetch_set(set);
                *k = (key, set);
            }
            for ((k, set), (b, f)) in keys.iter().zip(bufs.iter_mut().zip(&c.frames)) {
                let mut fr = Frame::new(b, HEADROOM, f.len()).unwrap();
                let v = fastpath::fast(snap, &env, k, *set, &mut fr);
                tally(check, c.want, v, sent)?;
            }
            Some(())
        })
    };
    run(&mut bufs, true)?;
    best_of_5(&mut bufs, c, iters, |b| run(b, false)).map(|(way, _)| way)
}

/// The worker's way for an underlay port's burst (`worker.rs`,
/// `Ingress::Underlay`, no SNAT here): each frame's decap way worked out on
/// its bytes ([`fastpath::decap_way`]), then finished
/// ([`fastpath::decap_apply`]). Cycles per packet, the copy subtracted;
/// `None` when the frames do not take that way.
fn measure_decap(snap: &Snapshot, c: &Case, iters: usize, hz: f64) -> Option<f64> {
    let mut bufs: Vec<Vec<u8>> = (0..BURST).map(|_| vec![0u8; BUF]).collect();
    let mut env = worker_env(hz);
    let mut run = |bufs: &mut Vec<Vec<u8>>, check: bool| {
        time_bursts(bufs, c, iters, |bufs, sent| {
            for (b, f) in bufs.iter_mut().zip(&c.frames) {
                let w = fastpath::decap_way(
                    snap,
                    &mut env.decap_memo,
                    &b[HEADROOM..HEADROOM + f.len()],
                );
                let v = w.and_then(|w| {
                    let mut fr = Frame::new(b, HEADROOM, f.len()).unwrap();
                    fastpath::decap_apply(&w, &mut fr)
                });
                tally(check, c.want, v, sent)?;
            }
            Some(())
        })
    };
    run(&mut bufs, true)?;
    best_of_5(&mut bufs, c, iters, |b| run(b, false)).map(|(way, _)| way)
}

/// The worker's own way for `c`'s burst: [`measure_decap`] for an underlay
/// port's frames, [`measure_fast`] for any other.
fn measure_way(snap: &Snapshot, c: &Case, iters: usize, hz: f64) -> Option<f64> {
    match pipeline::ingress(snap, c.port) {
        pipeline::Ingress::Underlay => measure_decap(snap, c, iters, hz),
        _ => measure_fast(snap, c, iters, hz),
    }
}

/// `iters` bursts of `c`'s frames, each copied into `bufs` whole (as a
/// driver hands it over), then decided by `burst`, which adds the ports to
/// `sent` ([`tally`]): the cycles taken, or `None` when `burst` gives up.
fn time_bursts(
    bufs: &mut [Vec<u8>],
    c: &Case,
    iters: usize,
    mut burst: impl FnMut(&mut [Vec<u8>], &mut u64) -> Option<()>,
) -> Option<u64> {
    let mut sent = 0u64;
    let t0 = dvr::sys::rdtsc();
    for _ in 0..iters {
        for (b, f) in bufs.iter_mut().zip(&c.frames) {
            b[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
        }
        burst(bufs, &mut sent)?;
    }
    std::hint::black_box(sent);
    Some(dvr::sys::rdtsc() - t0)
}

/// Adds the port a way decided (`v`; `None`: the way left the frame) to
/// `sent`; with `check`, `None` unless it decided the frame and sent it to
/// `want`.
fn tally(check: bool, want: u16, v: Option<Disposition>, sent: &mut u64) -> Option<()> {
    match v {
        Some(Disposition::Forward(p)) if !check || p == want => *sent += p as u64,
        _ if check => return None,
        _ => {}
    }
    Some(())
}

fn main() {
    let scale: f64 = harness::env_or("DVR_BENCH_SCALE", 1.0);
    let iters: usize = harness::env_or("DVR_BENCH_ITERS", 20_000);
    let routers = ((10_000.0 * scale) as usize).max(10);
    let hz = tsc_hz();
    eprintln!("TSC {:.2} GHz", hz / 1e9);

    let small = base_model(1);
    let snap_small = snapshot(&small);
    // DVR_BENCH_CASE=<substring>: only the matching paths (for profiling).
    let only: String = harness::env_or("DVR_BENCH_CASE", String::new());
    let cs: Vec<Case> = cases(&small)
        .into_iter()
        .filter(|c| c.name.contains(only.as_str()))
        .collect();
    let res_small: Vec<(f64, f64)> = cs
        .iter()
        .map(|c| measure(&snap_small, c, iters, hz, false))
        .collect();
    let cached_small: Vec<(f64, f64)> = cs
        .iter()
        .map(|c| measure(&snap_small, c, iters, hz, true))
        .collect();
    let way_small: Vec<Option<f64>> = cs
        .iter()
        .map(|c| measure_way(&snap_small, c, iters, hz))
        .collect();

    let rss0 = rss_mib();
    let t = Instant::now();
    let mut big = base_model(1000);
    grow(&mut big, routers);
    let built = t.elapsed();
    let total_routes: usize = big.routers.values().map(|r| r.routes.len()).sum();
    let rss1 = rss_mib();
    let t = Instant::now();
    let snap_big = snapshot(&big);
    let compiled = t.elapsed();
    let rss2 = rss_mib();
    let trie_bytes: usize = (0..snap_big.routers.len())
        .filter_map(|i| snap_big.routers.get(i))
        .map(|r| r.fwd4.bytes())
        .sum();
    let small_trie = snap_small.routers.get(0).map_or(0, |r| r.fwd4.bytes());
    let res_big: Vec<(f64, f64)> = cs
        .iter()
        .map(|c| measure(&snap_big, c, iters, hz, false))
        .collect();
    let cached_big: Vec<(f64, f64)> = cs
        .iter()
        .map(|c| measure(&snap_big, c, iters, hz, true))
        .collect();
    let way_big: Vec<Option<f64>> = cs
        .iter()
        .map(|c| measure_way(&snap_big, c, iters, hz))
        .collect();
    let way = |w: Option<f64>| w.map_or("-".to_string(), |w| format!("{w:.1}"));

    println!(
        "\npipeline in process, bursts of {BURST}, {iters} bursts per measurement, best of 5, TSC {:.2} GHz",
        hz / 1e9
    );
    println!(
        "cycles/packet; full: every frame through the whole pipeline (no flow cache); \
         cached: the whole pipeline with a worker's flow cache (routed flows after their \
         first frame); way: the worker's own way for the burst: a VM port's cached flows \
         (keys and sets fetched for the burst, then each frame decided in place), the \
         underlay's decap way (- where there is none)"
    );
    println!(
        "{:<36} {:>26} {:>40}",
        "path",
        "1 route: full/cached/way",
        format!(
            "{} routers, {} routes: full/cached/way",
            big.routers.len(),
            total_routes
        )
    );
    for (i, c) in cs.iter().enumerate() {
        let s = res_small[i].0;
        println!(
            "{:<36} {:>9.1} / {:>5.1} / {:>5} {:>23.1} / {:>5.1} / {:>5}   ({:.1} Mpps/core full at {:.2} GHz, pipeline only)",
            c.name,
            s,
            cached_small[i].0,
            way(way_small[i]),
            res_big[i].0,
            cached_big[i].0,
            way(way_big[i]),
            hz / s.max(1.0) / 1e6,
            hz / 1e9
        );
    }
    println!(
        "copying a 60-byte frame into its buffer (subtracted above): {:.1} cycles",
        res_small[0].1
    );
    println!(
        "model of {} routers / {} routes built in {:.1} s: +{:.0} MiB; snapshot compiled in {:.2} s: +{:.0} MiB resident",
        big.routers.len(),
        total_routes,
        built.as_secs_f64(),
        rss1 - rss0,
        compiled.as_secs_f64(),
        rss2 - rss1
    );
    println!(
        "IPv4 adjacency tries: {:.1} KiB for r1 alone (1 route); {:.1} MiB for all {} routers (resident size above is the allocator's view)",
        small_trie as f64 / 1024.0,
        trie_bytes as f64 / 1048576.0,
        big.routers.len()
    );
}
