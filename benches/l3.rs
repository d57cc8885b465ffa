//! Routing benchmark: dvr-pmd's routed paths against DPDK's C `l3fwd` (LPM) and
//! `dpdk-testpmd --forward-mode=io` on the same input, on the same core, in the
//! same run.
//!
//! Input: two captures of 60-byte IPv4/UDP frames (TTL 64, valid checksums, 64
//! flows each, `benches/routed_gen.rs`), sent to the router's MAC; port 0's frames
//! go to 198.18.1.0/24, port 1's to 198.18.0.0/24: the prefixes l3fwd routes by
//! default to the other port (198.18.P.0/24 -> port P), so each port's input
//! leaves by the other port. Every forwarder polls two `net_pcap` ports replaying
//! them from memory (`infinite_rx=1`); what it sends is counted and dropped.
//!
//! - testpmd io moves mbufs from port to port without reading them: the I/O ceiling.
//! - l3fwd (`scripts/build-l3fwd`: the example from dpdk-doc, RX checksum offload
//!   off, `--lookup=lpm --parse-ptype -P`) parses the packet type in software,
//!   looks the destination up in an `rte_lpm`, decrements the TTL, updates the
//!   checksum and rewrites both MACs (IPv6: lookup and MACs only, the hop limit
//!   is left alone). It checks neither the TTL nor the IPv4 checksum: a lighter
//!   job than a router's. Before measuring, one pass with `tx_pcap`
//!   outputs checks that it really routes: each port sends exactly the other
//!   port's frames, TTL 63, checksum valid, MACs rewritten.
//! - dvr-pmd: routed same-host, routed + VXLAN encapsulation, decapsulation +
//!   routed (issue 4), in `dvr_cases` below once the routed dataplane exists.
//!
//! Rates are packets sent per second, both ports summed, by the one forwarding
//! core: testpmd's per-second reports (median), l3fwd's port counters read over
//! DPDK telemetry at the start and end of the window (after 1 s of warm-up).
//! Cycles/packet is the TSC rate (from EAL) over that rate: the polling core is
//! always busy. The median of the rounds is printed; compare only within a run.
//!
//! Run: `scripts/bench l3` (or `cargo bench -p dvr-pmd --bench l3`).
//! Environment: `DVR_BENCH_SECONDS` (per measurement, default 6), `DVR_BENCH_ROUNDS`
//! (alternating rounds, default 3), `DVR_BENCH_CORE` (forwarding core, default 1),
//! `DVR_BENCH_FLOWS` (flows per direction, default 64), `DVR_BENCH_V6=1` (adds
//! l3fwd on IPv6 captures: 66-byte frames to 2001:200:0:P::/64).

#[path = "harness.rs"]
mod harness;
#[path = "routed_gen.rs"]
mod routed_gen;

use std::path::Path;

use dvr::mac::MacAddr;
use harness::{median, run_l3fwd, run_testpmd, Measured};

/// One dvr-pmd case: a name, and what measures it on the routed captures `(a, b)`
/// (port 0's and port 1's input, sent to [`routed_gen::ROUTER_MAC`]) in `dir` on
/// `core` for `secs` seconds; `None` while dvr-pmd lacks the path.
struct DvrCase {
    name: &'static str,
    run: fn(dir: &Path, a: &Path, b: &Path, core: usize, secs: u64) -> Option<Measured>,
}

// ======== dvr-pmd rows (issue 4): fill these in when the routed dataplane lands.
// Each gets the same captures as l3fwd and returns the harness's `Measured`
// (`harness::run_dvr` shows how a run of dvr-pmd is measured from its JSON
// counters). No figures are made up here: `None` prints "not measured".

fn dvr_cases() -> Vec<DvrCase> {
    vec![
        DvrCase {
            name: "dvr-pmd routed same-host",
            run: dvr_routed,
        },
        DvrCase {
            name: "dvr-pmd routed + VXLAN encap",
            run: dvr_routed_encap,
        },
        DvrCase {
            name: "dvr-pmd decap + routed",
            run: dvr_decap_routed,
        },
    ]
}

/// Both VMs' subnets (198.18.0.0/24 behind port 0, 198.18.1.0/24 behind port 1)
/// on one router of this node, router interface MAC `ROUTER_MAC`.
fn dvr_routed(_dir: &Path, _a: &Path, _b: &Path, _core: usize, _secs: u64) -> Option<Measured> {
    None
}

/// The destination subnet's VM on another node: frames leave encapsulated in
/// VXLAN on an underlay port.
fn dvr_routed_encap(
    _dir: &Path,
    _a: &Path,
    _b: &Path,
    _core: usize,
    _secs: u64,
) -> Option<Measured> {
    None
}

/// The input arrives VXLAN-encapsulated from another node (the same frames
/// wrapped: the capture is to be made from `a`/`b` here), is decapsulated and
/// routed to a local VM.
fn dvr_decap_routed(
    _dir: &Path,
    _a: &Path,
    _b: &Path,
    _core: usize,
    _secs: u64,
) -> Option<Measured> {
    None
}

// ======== end of the dvr-pmd rows.

/// One pass through l3fwd with output captures: each port must send exactly the
/// other port's input, routed (IPv4: TTL - 1, checksum updated; both MACs
/// rewritten).
fn check_l3fwd_routes(dir: &Path, inputs: [&Path; 2], core: usize) {
    let outs = harness::l3fwd_forward_once(dir, &inputs, core);
    for (port, out) in outs.iter().enumerate() {
        let input = dvr::pcap::read_file(inputs[1 - port]).unwrap();
        assert_eq!(
            out.len(),
            input.len(),
            "l3fwd port {port} sent {} frames, the other port received {}",
            out.len(),
            input.len()
        );
        for (o, i) in out.iter().zip(&input) {
            assert_eq!(o.len(), i.len());
            // l3fwd's default next hop MAC of port P is 02:00:00:00:00:P.
            assert_eq!(&o[0..6], &[2, 0, 0, 0, 0, port as u8], "destination MAC");
            assert_ne!(&o[6..12], &i[6..12], "source MAC not rewritten");
            assert_eq!(&o[12..14], &i[12..14]);
            match u16::from_be_bytes([i[12], i[13]]) {
                0x0800 => {
                    assert_eq!(o[22], i[22] - 1, "TTL");
                    assert_eq!(dvr::gen::ipv4_checksum(&o[14..34]), 0, "IPv4 checksum");
                    assert_eq!(&o[14..22], &i[14..22], "IPv4 header before the TTL");
                    assert_eq!(o[23], i[23], "protocol");
                    assert_eq!(&o[26..], &i[26..], "addresses and payload");
                }
                0x86dd => {
                    // l3fwd leaves the hop limit alone: its RFC 1812 step
                    // (l3fwd_common.h) is IPv4 only. The IPv6 header is unchanged.
                    assert_eq!(&o[14..], &i[14..], "IPv6 packet");
                }
                t => panic!("unexpected ethertype {t:#06x}"),
            }
        }
    }
}

fn main() {
    let secs: u64 = harness::env_or("DVR_BENCH_SECONDS", 6);
    let rounds: usize = harness::env_or("DVR_BENCH_ROUNDS", 3);
    let core: usize = harness::env_or("DVR_BENCH_CORE", 1);
    let flows: u16 = harness::env_or("DVR_BENCH_FLOWS", 64);
    let v6 = harness::env_or("DVR_BENCH_V6", 0u8) == 1;
    let dir = tempfile::tempdir().expect("temp dir");
    let router: MacAddr = routed_gen::ROUTER_MAC.parse().unwrap();
    let (a, b) = routed_gen::routed_v4_pair(dir.path(), router, flows, 60);
    check_l3fwd_routes(dir.path(), [&a, &b], core);
    let v6_caps = v6.then(|| {
        let (a6, b6) =
            routed_gen::routed_v6_pair(dir.path(), router, flows, routed_gen::MIN_UDP6_FRAME);
        check_l3fwd_routes(dir.path(), [&a6, &b6], core);
        (a6, b6)
    });
    eprintln!("l3fwd routes the captures: each port's input leaves by the other port");

    let cases = dvr_cases();
    let mut tp = Vec::new();
    let mut l3 = Vec::new();
    let mut l3v6 = Vec::new();
    let mut dv: Vec<Vec<Measured>> = vec![Vec::new(); cases.len()];
    for r in 0..rounds {
        let t = run_testpmd(dir.path(), &[&a, &b], core, secs, "io");
        eprintln!("round {r}: testpmd io    {:.2} Mpps", t.mpps);
        tp.push(t);
        let l = run_l3fwd(dir.path(), &[&a, &b], core, secs);
        eprintln!(
            "round {r}: l3fwd LPM     {:.2} Mpps, {:.1} cycles/packet",
            l.mpps, l.cycles_per_packet
        );
        l3.push(l);
        if let Some((a6, b6)) = &v6_caps {
            let l = run_l3fwd(dir.path(), &[a6, b6], core, secs);
            eprintln!(
                "round {r}: l3fwd LPM6    {:.2} Mpps, {:.1} cycles/packet",
                l.mpps, l.cycles_per_packet
            );
            l3v6.push(l);
        }
        for (c, out) in cases.iter().zip(dv.iter_mut()) {
            if let Some(d) = (c.run)(dir.path(), &a, &b, core, secs) {
                eprintln!(
                    "round {r}: {} {:.2} Mpps, {:.1} cycles/packet",
                    c.name, d.mpps, d.cycles_per_packet
                );
                out.push(d);
            }
        }
    }

    let tsc_hz = l3.iter().map(|m| m.tsc_hz).max().unwrap_or(0) as f64;
    let t = median(tp.iter().map(|m| m.mpps));
    let l = median(l3.iter().map(|m| m.mpps));
    let report = |name: &str, m: f64, cpp: f64| {
        println!("{name:<34} {m:>8.2} Mpps/core {cpp:>8.1} cycles/packet");
    };
    println!(
        "\nIPv4 routing, 60-byte frames, {flows} flows each way, 2 pcap ports replaying, \
         1 forwarding core (core {core}), median of {rounds} rounds of {secs} s, TSC {:.2} GHz",
        tsc_hz / 1e9
    );
    report(
        "dpdk-testpmd --forward-mode=io",
        t,
        Measured::cycles_at(tsc_hz, t),
    );
    report(
        "l3fwd LPM (C, DPDK example)",
        l,
        Measured::cycles_at(tsc_hz, l),
    );
    if !l3v6.is_empty() {
        let l6 = median(l3v6.iter().map(|m| m.mpps));
        report(
            "l3fwd LPM6 (IPv6, 66-byte frames)",
            l6,
            Measured::cycles_at(tsc_hz, l6),
        );
    }
    println!("ratio l3fwd / testpmd-io: {:.3}", l / t);
    for (c, ms) in cases.iter().zip(&dv) {
        if ms.is_empty() {
            println!("{:<34} not measured (no such path in dvr-pmd yet)", c.name);
            continue;
        }
        let m = median(ms.iter().map(|m| m.mpps));
        let cpp = median(ms.iter().map(|m| m.cycles_per_packet));
        report(c.name, m, cpp);
        println!("  ratio to l3fwd: {:.3}", m / l);
    }
    println!("goals: routed same-host >= 1.1 x l3fwd; routed + VXLAN encap <= 200 cycles/packet");
}
