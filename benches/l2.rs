//! L2 path benchmark: dvr-pmd against `dpdk-testpmd --forward-mode=io` on the same
//! input, on the same core, in the same run.
//!
//! Both forward between two `net_pcap` ports that replay (`infinite_rx`) the same
//! captures of 60-byte UDP frames (64 flows each way); what they send is discarded
//! by the pcap device. testpmd io moves mbufs without looking at them: the I/O
//! ceiling of these devices. testpmd mac touches each frame (rewrites both MACs)
//! but looks nothing up. dvr-pmd parses each frame, looks its destination MAC up
//! in the FDB and counts per port and per reason.
//!
//! Run: `scripts/bench l2` (or `cargo bench -p dvr-pmd --bench l2`).
//! Environment: `DVR_BENCH_SECONDS` (per measurement, default 6), `DVR_BENCH_ROUNDS`
//! (alternating rounds, default 3), `DVR_BENCH_CORE` (forwarding core, default 1).

#[path = "harness.rs"]
mod harness;

use harness::{median, pcap_pair, run_dvr, run_testpmd, Measured};

fn main() {
    let secs: u64 = harness::env_or("DVR_BENCH_SECONDS", 6);
    let rounds: usize = harness::env_or("DVR_BENCH_ROUNDS", 3);
    let core: usize = harness::env_or("DVR_BENCH_CORE", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pcap_pair(dir.path(), 60, 64);

    let mut tp = Vec::new();
    let mut tm = Vec::new();
    let mut dv = Vec::new();
    for r in 0..rounds {
        let t = run_testpmd(dir.path(), &[&a, &b], core, secs, "io");
        eprintln!("round {r}: testpmd io  {:.2} Mpps", t.mpps);
        let m = run_testpmd(dir.path(), &[&a, &b], core, secs, "mac");
        eprintln!("round {r}: testpmd mac {:.2} Mpps", m.mpps);
        tm.push(m);
        let d = run_dvr(dir.path(), &a, &b, core, secs, "");
        eprintln!(
            "round {r}: dvr-pmd l2  {:.2} Mpps, {:.1} cycles/packet{}",
            d.mpps,
            d.cycles_per_packet,
            harness::parts(d.split)
        );
        tp.push(t);
        dv.push(d);
    }
    let tsc_hz = dv.iter().map(|d| d.tsc_hz).max().unwrap_or(0) as f64;
    let t = median(tp.iter().map(|m| m.mpps));
    let m = median(tm.iter().map(|m| m.mpps));
    let d = median(dv.iter().map(|m| m.mpps));
    let d_cpp = median(dv.iter().map(|m| m.cycles_per_packet));
    let report = |name: &str, m: f64, cpp: f64| {
        println!("{name:<28} {m:>8.2} Mpps/core {cpp:>8.1} cycles/packet");
    };
    println!("\nL2 switch, 60-byte frames, 2 pcap ports replaying, 1 forwarding core (core {core}), median of {rounds} rounds of {secs} s");
    report(
        "dpdk-testpmd --forward-mode=io",
        t,
        Measured::cycles_at(tsc_hz, t),
    );
    report(
        "dpdk-testpmd --forward-mode=mac",
        m,
        Measured::cycles_at(tsc_hz, m),
    );
    report("dvr-pmd (L2 FDB switch)", d, d_cpp);
    println!(
        "  cycles/packet in parts{}",
        harness::parts(harness::median_split(dv.iter().map(|m| m.split)))
    );
    println!("ratio dvr / testpmd-io:  {:.3} (goal >= 0.95)", d / t);
    println!(
        "ratio dvr / testpmd-mac: {:.3} (mac rewrites the Ethernet header, no lookup)",
        d / m
    );
}
