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
//! - testpmd mac rewrites both MACs of each frame and nothing else (no parsing,
//!   no lookup): the least any forwarder that writes to its frames spends. A
//!   router 1.1 x as fast as l3fwd must spend at most l3fwd's cycles / 1.1;
//!   the summary prints both, so a run shows whether that is below this floor.
//! - l3fwd (`scripts/build-l3fwd`: the example from dpdk-doc, RX checksum offload
//!   off, `--lookup=lpm --parse-ptype -P`) parses the packet type in software,
//!   looks the destination up in an `rte_lpm`, decrements the TTL, updates the
//!   checksum and rewrites both MACs (IPv6: lookup and MACs only, the hop limit
//!   is left alone). It checks neither the TTL nor the IPv4 checksum: a lighter
//!   job than a router's. Before measuring, one pass with `tx_pcap`
//!   outputs checks that it really routes: each port sends exactly the other
//!   port's frames, TTL 63, checksum valid, MACs rewritten.
//! - dvr-pmd: routed same-host, and for each overlay (VXLAN, GRE, VLAN)
//!   routed + encapsulation toward another host and the receiving side
//!   (decapsulation + routed) (issue 4), in `dvr_cases` below; and under them
//!   the same frames switched by dvr-pmd's static L2 table, not routed
//!   (`dvr_switched`): what dvr-pmd's loop and the drivers cost when it does
//!   the least it does.
//!
//! Rates are packets sent per second, both ports summed, by the one forwarding
//! core: testpmd's per-second reports (median), l3fwd's port counters read over
//! DPDK telemetry at the start and end of the window (after 1 s of warm-up).
//! Cycles/packet is the TSC rate (from EAL) over that rate: the polling core is
//! always busy. The median of the rounds is printed; compare only within a run.
//!
//! Run: `scripts/bench l3` (or `cargo bench -p dvr-pmd --bench l3`).
//! Environment: `DVR_BENCH_PMD` (the dvr-pmd binary to measure, default this
//! build's: to compare two builds in alternation), `DVR_BENCH_SECONDS` (per
//! measurement, default 6), `DVR_BENCH_ROUNDS`
//! (alternating rounds, default 3), `DVR_BENCH_CORE` (forwarding core, default 1),
//! `DVR_BENCH_FLOWS` (flows per direction, default 64), `DVR_BENCH_V6=1` (adds
//! l3fwd on IPv6 captures: 66-byte frames to 2001:200:0:P::/64).

#[path = "harness.rs"]
mod harness;
#[path = "routed_gen.rs"]
mod routed_gen;

use std::path::{Path, PathBuf};

use dvr::mac::MacAddr;
use dvr::model::{Change, Model, NetworkType};
use dvr::wire::{ethernet, Ipv4Packet};
use harness::{median, pcap_port, run_l3fwd, run_testpmd, BenchNode, Measured};
use serde_json::json;

/// One dvr-pmd case: a name, and what measures it on a [`Run`] (the routed
/// captures, sent to [`routed_gen::ROUTER_MAC`]) with the model's networks of
/// type `ty`; `None` while dvr-pmd lacks the path.
struct DvrCase {
    name: &'static str,
    /// The type of the model's two networks.
    ty: NetworkType,
    run: fn(ty: NetworkType, r: &Run) -> Option<Measured>,
}

/// What a dvr-pmd case runs on: the routed captures `a` (port 0's input)
/// and `b` (port 1's), in `dir`, forwarding on `core` for `secs` seconds.
struct Run<'p> {
    dir: &'p Path,
    a: &'p Path,
    b: &'p Path,
    core: usize,
    secs: u64,
}

/// `inner` as cn2 sends it to this node on segment `seg` of a network of
/// type `ty`: in VXLAN or GRE from cn2's VTEP, tagged, or as it is (flat).
fn sent_by_cn2(ty: NetworkType, inner: &[u8], seg: u32) -> Vec<u8> {
    let ul: MacAddr = CN2_UL_MAC.parse().unwrap();
    let src: std::net::Ipv4Addr = CN2_VTEP.parse().unwrap();
    let dst: std::net::Ipv4Addr = VTEP.parse().unwrap();
    let (from, to) = (
        (ul.0, src.octets()),
        ([0x02, 0, 0, 0, 0, 0x01], dst.octets()),
    );
    dvr::testkit::segment_frame(ty, inner, seg, from, to)
}

// ======== dvr-pmd rows (issue 4).
// Each gets the same captures as l3fwd (or, for decapsulation, the same frames
// as another host would send them) and a model, loaded from the state file at
// start: one distributed router with interfaces on 198.18.0.0/24 (network n0,
// segment 100) and 198.18.1.0/24 (n1, segment 101), both VXLAN, GRE or VLAN
// networks, gateways .254; the senders `a` (198.18.0.200 on vm-a) and `b`
// (198.18.1.200 on vm-b) named a0 and a1 (the first by name serves its VM
// port); and one port per flow destination (198.18.P.1-64), all on this node
// or all on another host `cn2`.

/// The last byte of the senders' addresses: above the flows' destinations
/// (198.18.P.1 up, `DVR_BENCH_FLOWS` of them), so that with cn2 holding
/// those, every frame leaves toward cn2.
const SENDER: u8 = 200;
const VTEP: &str = "192.0.2.1";
const CN2_VTEP: &str = "192.0.2.2";
const DVR_MAC: &str = "fa:16:3f:00:00:01";
const CN2_DVR_MAC: &str = "fa:16:3f:00:00:02";
const CN2_UL_MAC: &str = "02:00:00:00:00:02";

/// The node configuration of the dvr-pmd rows: `ports` (TOML), the model
/// saved as the state file, cn2's VTEP given as a static neighbour.
fn dvr_config(dir: &Path, core: usize, model: &Model, ports: &str) -> String {
    let node = BenchNode {
        agent_mode: "dvr",
        vtep: VTEP,
        dvr_mac: DVR_MAC,
        tag: "l3",
        memory_mb: 1024,
        neighbor: (CN2_VTEP, CN2_UL_MAC),
    };
    harness::model_config(dir, core, &node, model, ports)
}

/// The benchmarks' model; the neighbours live on this node (`bench`) or on
/// `cn2`. Returns it with the router's interface MACs on s0 and s1 (the same
/// whatever `neighbours_on`: the model gives them before any port exists).
fn bench_model(flows: u16, neighbours_on: &str, ty: NetworkType) -> (Model, [MacAddr; 2]) {
    let mut changes = vec![
        json!({"op": "host_set", "name": "bench", "agent_mode": "dvr", "vtep": VTEP, "dvr_mac": DVR_MAC}),
        json!({"op": "host_set", "name": "cn2", "agent_mode": "dvr", "vtep": CN2_VTEP, "dvr_mac": CN2_DVR_MAC}),
        json!({"op": "network_create", "name": "n0", "network_type": ty, "segment": 100}),
        json!({"op": "network_create", "name": "n1", "network_type": ty, "segment": 101}),
        json!({"op": "subnet_create", "name": "s0", "network": "n0", "cidr": "198.18.0.0/24", "gateway_ip": "198.18.0.254"}),
        json!({"op": "subnet_create", "name": "s1", "network": "n1", "cidr": "198.18.1.0/24", "gateway_ip": "198.18.1.254"}),
        json!({"op": "router_create", "name": "r"}),
        json!({"op": "router_add_subnet", "router": "r", "subnet": "s0"}),
        json!({"op": "router_add_subnet", "router": "r", "subnet": "s1"}),
    ];
    for p in 0..2u8 {
        changes.push(json!({"op": "port_create", "name": format!("a{p}"), "network": format!("n{p}"),
            "mac": routed_gen::HOST_MAC[p as usize], "host": "bench", "binding": format!("vm-{}", ["a", "b"][p as usize]),
            "fixed_ips": [{"subnet": format!("s{p}"), "ip": format!("198.18.{p}.{SENDER}")}]}));
        for h in 1..=flows.min(254) {
            if h == SENDER as u16 {
                continue;
            }
            changes.push(
                json!({"op": "port_create", "name": format!("h{p}-{h}"), "network": format!("n{p}"),
                "host": neighbours_on, "binding": format!("vm-{}", ["a", "b"][p as usize]),
                "fixed_ips": [{"subnet": format!("s{p}"), "ip": format!("198.18.{p}.{h}")}]}),
            );
        }
    }
    let changes: Vec<Change> = changes
        .into_iter()
        .map(|c| serde_json::from_value(c).unwrap())
        .collect();
    let mut m = Model::default();
    m.apply(&changes).expect("the bench model is valid");
    let mac = |sn: &str| {
        m.routers["r"]
            .interfaces
            .iter()
            .find(|i| i.subnet == sn)
            .expect("interface")
            .mac
    };
    let macs = [mac("s0"), mac("s1")];
    (m, macs)
}

/// The routed captures (`routed_gen`), each port's frames sent to the router
/// interface MAC of its own subnet.
fn captures(dir: &Path, router: [MacAddr; 2], flows: u16) -> (PathBuf, PathBuf) {
    let mk = |p: u8| {
        let frames = routed_gen::routed_v4_frames(
            routed_gen::HOST_MAC[p as usize].parse().unwrap(),
            router[p as usize],
            std::net::Ipv4Addr::new(198, 18, p, SENDER),
            routed_gen::l3fwd_v4_net(1 - p),
            flows,
            60,
        );
        let path = dir.join(format!("routed-v4-in{p}.pcap"));
        dvr::pcap::write_file(&path, &frames).unwrap();
        path
    };
    (mk(0), mk(1))
}

/// A port that only sends, into a sink: a `net_pcap` port reading an empty
/// capture, whose transmit side drops what it is given (pcap's tx_drop), as
/// the reference forwarders' ports do. (`net_null` would free each packet on
/// its own, which costs the forwarder more than a bulk free.)
fn sink_port(dir: &Path, name: &str, role: &str) -> String {
    let empty = dir.join("empty.pcap");
    if !empty.exists() {
        dvr::pcap::write_file(&empty, &[]).expect("an empty capture");
    }
    format!(
        "[[ports]]\nname = \"{name}\"\nrole = \"{role}\"\nkind = \"pcap\"\nrx_pcap = \"{}\"\n",
        empty.display()
    )
}

fn flows() -> u16 {
    harness::env_or("DVR_BENCH_FLOWS", 64)
}

fn dvr_cases() -> Vec<DvrCase> {
    vec![
        DvrCase {
            name: SWITCHED,
            ty: NetworkType::Vxlan,
            run: dvr_switched,
        },
        DvrCase {
            name: "dvr-pmd routed same-host",
            ty: NetworkType::Vxlan,
            run: dvr_routed,
        },
        DvrCase {
            name: "dvr-pmd routed + VXLAN encap",
            ty: NetworkType::Vxlan,
            run: dvr_routed_encap,
        },
        DvrCase {
            name: "dvr-pmd VXLAN decap + routed",
            ty: NetworkType::Vxlan,
            run: dvr_decap_routed,
        },
        DvrCase {
            name: "dvr-pmd routed + GRE encap",
            ty: NetworkType::Gre,
            run: dvr_routed_encap,
        },
        DvrCase {
            name: "dvr-pmd GRE decap + routed",
            ty: NetworkType::Gre,
            run: dvr_decap_routed,
        },
        DvrCase {
            name: "dvr-pmd routed + VLAN tag",
            ty: NetworkType::Vlan,
            run: dvr_routed_encap,
        },
        DvrCase {
            name: "dvr-pmd VLAN untag + routed",
            ty: NetworkType::Vlan,
            run: dvr_decap_routed,
        },
    ]
}

/// The name of the row under the routed ones: [`dvr_switched`].
const SWITCHED: &str = "dvr-pmd switched, not routed";

/// The floor under the routed rows: the same frames switched by the static L2
/// table of the node configuration, with no model (no router: each frame is
/// read, not written, and its router MAC sends port 0's input out of port 1
/// and port 1's out of port 0). What dvr-pmd's worker loop and the drivers
/// cost when dvr-pmd does the least it does to a frame.
fn dvr_switched(ty: NetworkType, r: &Run) -> Option<Measured> {
    let (_, macs) = bench_model(flows(), "bench", ty);
    let fdb = format!(
        "[[l2.fdb]]\nmac = \"{}\"\nport = \"vm-b\"\n\
         [[l2.fdb]]\nmac = \"{}\"\nport = \"vm-a\"\n",
        macs[0], macs[1]
    );
    Some(harness::run_dvr(r.dir, r.a, r.b, r.core, r.secs, &fdb))
}

/// Both subnets' VMs on this node: each port's input is routed to the other
/// port (TTL, checksum, MACs), as l3fwd does.
fn dvr_routed(ty: NetworkType, r: &Run) -> Option<Measured> {
    let (m, _) = bench_model(flows(), "bench", ty);
    let ports = pcap_port("vm-a", "vm", r.a) + &pcap_port("vm-b", "vm", r.b);
    Some(run_checked(
        r.dir,
        &dvr_config(r.dir, r.core, &m, &ports),
        r.secs,
        &["vm-a", "vm-b"],
    ))
}

/// The destinations live on `cn2`: each packet is routed, its (inner) source
/// set to this host's DVR MAC, and sent out of the underlay port (a sink here)
/// in VXLAN or GRE to cn2's VTEP, or tagged with the network's VLAN.
fn dvr_routed_encap(ty: NetworkType, r: &Run) -> Option<Measured> {
    let (m, _) = bench_model(flows(), "cn2", ty);
    let ports = pcap_port("vm-a", "vm", r.a)
        + &pcap_port("vm-b", "vm", r.b)
        + &sink_port(r.dir, "up", "underlay");
    Some(run_checked(
        r.dir,
        &dvr_config(r.dir, r.core, &m, &ports),
        r.secs,
        &["up"],
    ))
}

/// The receiving side of the routed + encap case: what `cn2` sends for the same
/// flows (routed there, inner source cn2's DVR MAC, in VXLAN or GRE from cn2's
/// VTEP, or VLAN-tagged) arrives on the underlay port, is decapsulated (or
/// untagged), its source rewritten to the router interface MAC and delivered
/// to the local VMs (sinks here).
fn dvr_decap_routed(ty: NetworkType, r: &Run) -> Option<Measured> {
    let (m, _) = bench_model(flows(), "bench", ty);
    let mut frames = Vec::new();
    for (p, cap) in [r.a, r.b].iter().enumerate() {
        let seg = 101 - p as u32; // port 0's input goes to n1, port 1's to n0
        for f in dvr::pcap::read_file(cap).unwrap() {
            let dst = std::net::Ipv4Addr::new(f[30], f[31], f[32], f[33]);
            let Some(nb) = m.ports.values().find(|q| {
                q.fixed_ips
                    .iter()
                    .any(|i| i.ip == std::net::IpAddr::V4(dst))
            }) else {
                panic!("no port has {dst}");
            };
            let mut inner = f.clone();
            inner[0..6].copy_from_slice(&nb.mac.0);
            inner[6..12].copy_from_slice(&CN2_DVR_MAC.parse::<MacAddr>().unwrap().0);
            let mut ip = Ipv4Packet::new_checked(&mut inner[ethernet::HEADER_LEN..]).expect("IPv4");
            ip.dec_ttl();
            ip.fill_checksum();
            frames.push(sent_by_cn2(ty, &inner, seg));
        }
    }
    let cap = r.dir.join("decap-in.pcap");
    dvr::pcap::write_file(&cap, &frames).unwrap();
    let ports = sink_port(r.dir, "vm-a", "vm")
        + &sink_port(r.dir, "vm-b", "vm")
        + &pcap_port("up", "underlay", &cap);
    Some(run_checked(
        r.dir,
        &dvr_config(r.dir, r.core, &m, &ports),
        r.secs,
        &["vm-a", "vm-b"],
    ))
}

/// dvr-pmd's measurement on `cfg`, its window checked: nothing dropped, and
/// every packet sent out of one of the ports `out` (a row that measured
/// frames going elsewhere would measure another path).
fn run_checked(dir: &Path, cfg: &str, secs: u64, out: &[&str]) -> Measured {
    let w = harness::run_dvr_window(dir, cfg, secs);
    let drops = w.drops();
    if !drops.is_empty() {
        harness::cannot_measure(format!("dvr-pmd dropped in the window: {drops:?}"));
    }
    let sent = w.sent();
    for (port, n) in &sent {
        if *n > 0 && !out.contains(&port.as_str()) {
            harness::cannot_measure(format!(
                "dvr-pmd sent {n} packets out of {port}, expected only {out:?}"
            ));
        }
    }
    if sent.iter().all(|(_, n)| *n == 0) {
        harness::cannot_measure(format!("dvr-pmd sent nothing: {sent:?}"));
    }
    w.measured
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
    if !(1..SENDER as u16).contains(&flows) {
        harness::cannot_measure(format!(
            "DVR_BENCH_FLOWS must be 1 to {}: the senders are .{SENDER}",
            SENDER - 1
        ));
    }
    let v6 = harness::env_or("DVR_BENCH_V6", 0u8) == 1;
    let dir = tempfile::tempdir().expect("temp dir");
    // The captures go to the bench model's router interface MAC (l3fwd and
    // testpmd ignore it).
    let macs = bench_model(flows, "bench", NetworkType::Vxlan).1;
    let (a, b) = captures(dir.path(), macs, flows);
    let router = macs[0];
    check_l3fwd_routes(dir.path(), [&a, &b], core);
    let v6_caps = v6.then(|| {
        let (a6, b6) =
            routed_gen::routed_v6_pair(dir.path(), router, flows, routed_gen::MIN_UDP6_FRAME);
        check_l3fwd_routes(dir.path(), [&a6, &b6], core);
        (a6, b6)
    });
    eprintln!("l3fwd routes the captures: each port's input leaves by the other port");

    // DVR_BENCH_CASE=<substring>: only the matching dvr-pmd rows (for profiling).
    let only: String = harness::env_or("DVR_BENCH_CASE", String::new());
    let cases: Vec<DvrCase> = dvr_cases()
        .into_iter()
        .filter(|c| c.name.contains(only.as_str()))
        .collect();
    let mut tp = Vec::new();
    let mut tpm = Vec::new();
    let mut l3 = Vec::new();
    let mut l3v6 = Vec::new();
    let mut dv: Vec<Vec<Measured>> = vec![Vec::new(); cases.len()];
    for r in 0..rounds {
        let t = run_testpmd(dir.path(), &[&a, &b], core, secs, "io");
        eprintln!("round {r}: testpmd io    {:.2} Mpps", t.mpps);
        tp.push(t);
        let t = run_testpmd(dir.path(), &[&a, &b], core, secs, "mac");
        eprintln!("round {r}: testpmd mac   {:.2} Mpps", t.mpps);
        tpm.push(t);
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
            let run = Run {
                dir: dir.path(),
                a: &a,
                b: &b,
                core,
                secs,
            };
            if let Some(d) = (c.run)(c.ty, &run) {
                eprintln!(
                    "round {r}: {} {:.2} Mpps, {:.1} cycles/packet{}",
                    c.name,
                    d.mpps,
                    d.cycles_per_packet,
                    harness::parts(d.split)
                );
                out.push(d);
            }
        }
    }

    let tsc_hz = l3.iter().map(|m| m.tsc_hz).max().unwrap_or(0) as f64;
    let t = median(tp.iter().map(|m| m.mpps));
    let tm = median(tpm.iter().map(|m| m.mpps));
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
        "dpdk-testpmd --forward-mode=mac",
        tm,
        Measured::cycles_at(tsc_hz, tm),
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
    let mut switched = None;
    for (c, ms) in cases.iter().zip(&dv) {
        if ms.is_empty() {
            println!("{:<34} not measured (no such path in dvr-pmd yet)", c.name);
            continue;
        }
        let m = median(ms.iter().map(|m| m.mpps));
        let cpp = median(ms.iter().map(|m| m.cycles_per_packet));
        report(c.name, m, cpp);
        let parts = harness::parts(harness::median_split(ms.iter().map(|m| m.split)));
        println!(
            "  ratio to l3fwd: {:.3}; cycles/packet in parts{parts}",
            m / l
        );
        if c.name == SWITCHED {
            switched = Some((cpp, parts));
        }
    }
    println!("goals: routed same-host >= 1.1 x l3fwd; routed + VXLAN encap <= 200 cycles/packet");
    println!(
        "  1.1 x l3fwd is {:.1} cycles/packet; testpmd mac (MACs rewritten, nothing else) spends {:.1}",
        Measured::cycles_at(tsc_hz, l * 1.1),
        Measured::cycles_at(tsc_hz, tm)
    );
    if let Some((cpp, parts)) = switched {
        println!("  dvr-pmd, switching these frames and routing none, spends {cpp:.1}{parts}");
    }
}
