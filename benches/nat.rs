//! NAT benchmark: floating IPs (1:1 NAT) and SNAT (established sessions, new
//! sessions), dvr-pmd against the Linux kernel doing the same job the way
//! Neutron's L3 agent does it, on the same traffic, in the same run.
//!
//! # The kernel reference
//!
//! A router namespace (`qrouter-knat-PID`) with an inside leg `qr-knat`
//! (10.0.0.1/16) and an external gateway leg `qg-knat` (203.0.113.1/24, plus
//! each floating IP as a /32, as the L3 agent configures them), a default route
//! to the upstream router 203.0.113.254, `ip_forward=1`, and the iptables
//! rules the L3 agent writes (`router_info.py`; chain names and rules as it
//! builds them, `use_random_fully` on, its default):
//!
//! - nat: `neutron-l3-agent-PREROUTING -d FIP/32 -j DNAT --to-destination
//!   FIXED` (and the same in OUTPUT), `neutron-l3-agent-float-snat -s FIXED/32
//!   -j SNAT --to-source FIP --random-fully`, `neutron-l3-agent-snat -j
//!   neutron-l3-agent-float-snat`, `-o qg-knat -j SNAT --to-source 203.0.113.1
//!   --random-fully`, the DNAT-hairpin SNAT and the `! -o qg ... ! --ctstate
//!   DNAT -j ACCEPT` rule, reached through `neutron-postrouting-bottom`;
//! - mangle: the external ingress mark (`-i qg-knat -j MARK --set-xmark
//!   0x2/0xffff`) and the address scope CONNMARK restore, evaluated for every
//!   packet;
//! - filter: the FORWARD jumps to `neutron-filter-top` and the (empty) scope
//!   chain.
//!
//! NAT rules are consulted for a connection's first packet only; conntrack
//! (one global table; `nf_conntrack_max` and the hash size are raised for the
//! run and restored after) translates the rest. Debian's `iptables` is the
//! nf_tables backend (`iptables-nft`), as on current Neutron hosts.
//!
//! A generator namespace holds the other ends of both veths: `kn-in` plays the
//! VMs, `kn-out` the upstream router. There is no pktgen module on these
//! machines (`CONFIG_NET_PKTGEN` is not set), so `dpdk-testpmd --forward-mode=io`
//! replays each capture from memory (`net_pcap`, `infinite_rx=1`) into an
//! `net_af_packet` port on the generator's veth end, on the generator core. All
//! offloads are off on all four veth ends (with them on, the kernel hands an
//! AF_PACKET reader 64 KiB super-frames with partial checksums).
//!
//! # What "per core" means here
//!
//! The router legs `qr-knat` and `qg-knat` run their receive side as threaded
//! NAPI (GRO on gives a veth a NAPI instance; UDP is not aggregated without
//! udp-gro-forwarding; `/sys/class/net/DEV/threaded` = 1), and both NAPI
//! kthreads are pinned to the measured core (`DVR_BENCH_CORE`, default 1). A
//! frame the generator sends into `kn-in` lands in `qr-knat`'s ring; that
//! thread does all of the router's work for it: IP receive, conntrack, iptables
//! (mangle, nat, filter), routing, the translation, neighbour output and the
//! veth transmit to `kn-out`, whose receive side RPS sends to the generator's
//! core. The figures:
//!
//! - forwarded = packets sent by `qg-knat` plus `qr-knat` during the window
//!   (the router namespace's link counters);
//! - busy = CPU time of the two NAPI threads during the window
//!   (`/proc/PID/schedstat`, nanoseconds: exact, and blind to whatever else
//!   shares the core; the machine is shared);
//! - Mpps/core = forwarded / busy; cycles/packet = TSC rate × busy / forwarded
//!   (TSC rate from EAL's log of the generator); new sessions/s/core = NAT
//!   table traversals (the packet counter of the nat POSTROUTING jump, which
//!   only a connection's first packet takes) / busy.
//!
//! The core's softirq share is printed too: it stays near zero, i.e. no router
//! work runs outside the threads. Work the kernel does elsewhere for the NAT is
//! not counted: conntrack's garbage collector (a workqueue). This flatters the
//! kernel slightly.
//!
//! Caveat, seen on this 2-core machine: the generator (testpmd through
//! AF_PACKET, one core, shared with other work) offers only about 0.1-0.2 Mpps,
//! so the router's threads are busy about half of the time and sleep in
//! between; their per-packet cost then includes wake-ups and cold caches that a
//! saturated router amortises. Each case prints the offered rate and the busy
//! share, and warns when the core is under 90% busy.
//!
//! dvr-pmd's rows are measured like `benches/l3.rs` measures it: one
//! busy-polling worker core, its poll cycles over the packets it handled, on
//! captures replayed from memory into its ports (`net_pcap`, `infinite_rx`)
//! with its model's MACs. Comparable: cycles/packet and Mpps/core for the same
//! traffic pattern and session count. Not comparable: absolute packet rates
//! (the kernel is fed through AF_PACKET by a generator sharing the machine).
//! A replayed capture's frames each sit in an mbuf, so a capture of a million
//! distinct flows costs the reader a cache miss or two per frame that a NIC
//! would not: `dpdk-testpmd --forward-mode=io` on the established case's
//! capture (same replay, same core) is printed beside it as that I/O floor.
//!
//! - dvr-pmd SNAT established: the `dvr_snat` node's underlay port replays
//!   the flows compute node cn2 tunnels to the router (VXLAN, from its DVR
//!   MAC), `DVR_BENCH_SESSIONS / 20` inside endpoints x 20 destinations (one
//!   gateway address holds at most 64,512 endpoints: endpoint-independent
//!   mapping gives each one port); the first pass creates the sessions.
//! - dvr-pmd SNAT new sessions: the kernel case's flows (every flow its own
//!   inside endpoint), the first 1,000,000 at most (4 KiB of EAL memory per
//!   replayed frame), with `[nat] udp_timeout = 0.004` (4 ms, far shorter
//!   than a pass): each flow's session has expired and been freed when it
//!   comes round again, so every packet creates one (expiry included, as in a
//!   steady state of churn). New sessions/s/core: the worker's
//!   `nat_sessions_created` counter over the window per second of its poll
//!   cycles; the share of packets that created one is printed.
//!
//! # Cases
//!
//! - FIP: 64 VMs with floating IPs, 16 flows each way (`nat_gen::fip_outbound`
//!   into `qr-`, `nat_gen::fip_inbound` into `qg-`), both directions at once.
//! - SNAT established: `DVR_BENCH_SESSIONS` (default 1,000,000) distinct flows
//!   replayed round-robin; measured once conntrack holds all of them; the
//!   window's conntrack inserts show how many packets were not established.
//! - SNAT new sessions: `DVR_BENCH_NEW_FLOWS` (default 2,000,000) distinct flows,
//!   UDP conntrack timeout 1 s in the router namespace: a flow comes round again
//!   after more than 1 s (the generator sends under 2 Mpps), when its entry has
//!   expired, so nearly every packet makes a conntrack entry (and drops an
//!   expired one). Sessions/s/core = conntrack inserts / busy; the fraction of
//!   packets that were new is printed.
//!
//! Before each case is measured, a capture on the generator's side (tshark, 64
//! frames each way) checks the translation: addresses rewritten to the floating
//! IP / gateway address (or back to the fixed IP), ports kept by DNAT, TTL 63,
//! IPv4 and UDP checksums valid, MACs of the router and its next hop.
//!
//! Run: `scripts/bench nat` (or `cargo bench -p dvr-pmd --bench nat`), as root.
//! Environment: `DVR_BENCH_SECONDS` (window per measurement, default 6),
//! `DVR_BENCH_ROUNDS` (default 3), `DVR_BENCH_CORE` (the core measured, default
//! 1; the generator takes the other of cores 0 and 1), `DVR_BENCH_SESSIONS`
//! (default 1,000,000), `DVR_BENCH_NEW_FLOWS` (default 2,000,000),
//! `DVR_BENCH_CASE` (a substring: only the rows whose name has it).

#[path = "harness.rs"]
mod harness;
#[path = "nat_gen.rs"]
mod nat_gen;

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dvr::mac::MacAddr;
use dvr::wire::checksum::{csum_add, csum_fold, pseudo4};
use dvr::wire::{ethernet, proto, EthernetFrame, Ipv4Packet, UdpHeader};
use harness::median;
use nat_gen::{fixed_ip, floating_ip, EXT_GW_IP, INSIDE_GW, INTERNET, UPSTREAM};

/// Figures of one NAT measurement.
#[derive(Debug, Clone, Copy, Default)]
struct NatMeasured {
    /// Packets forwarded per second of busy core, in millions.
    mpps_core: f64,
    cycles_per_packet: f64,
    /// New sessions (conntrack inserts, or dvr-pmd's session creations) per
    /// second of busy core.
    sessions_per_s: f64,
    /// Of the packets forwarded, the fraction that made a new session.
    new_fraction: f64,
    /// dvr-pmd's cycles per packet in parts ([`harness::Measured::split`]).
    split: Option<dvr::stats::CycleSplit>,
}

// ======== dvr-pmd rows (issue 5).
// The lead adds them: each builds its captures with `nat_gen` (its model's MACs:
// the VMs', the router's interfaces', the upstream router's), runs dvr-pmd with
// them on `core` for `secs` seconds and returns its figures (cycles/packet from
// the worker's poll cycles, as `harness::run_dvr_config` reads them).

/// One dvr-pmd case (or a reference forwarder on a dvr-pmd case's capture):
/// a name, and what measures it (`None` while dvr-pmd lacks the path).
/// `sessions` is `DVR_BENCH_SESSIONS`, `new_flows` `DVR_BENCH_NEW_FLOWS`.
struct DvrCase {
    name: &'static str,
    /// The kernel case doing the same job, if any.
    kernel: Option<Case>,
    run: fn(
        dir: &Path,
        core: usize,
        secs: u64,
        sessions: u32,
        new_flows: u32,
    ) -> Option<NatMeasured>,
}

fn dvr_cases() -> Vec<DvrCase> {
    vec![
        DvrCase {
            name: "dvr-pmd FIP NAT (VM -> external)",
            kernel: Some(Case::Fip),
            run: dvr_fip,
        },
        DvrCase {
            name: "dvr-pmd SNAT established",
            kernel: Some(Case::SnatEstablished),
            run: dvr_snat_established,
        },
        DvrCase {
            name: "testpmd io, SNAT established capture",
            kernel: None,
            run: testpmd_snat_established,
        },
        DvrCase {
            name: "dvr-pmd SNAT new sessions",
            kernel: Some(Case::SnatNew),
            run: dvr_snat_new,
        },
    ]
}

const DVR_VTEP: &str = "192.0.2.1";
const DVR_MAC: &str = "fa:16:3f:00:00:01";
/// This host's FIP gateway port on the external network: inbound floating IP
/// traffic is sent to its MAC (it answers ARP for the floating IPs here).
const FIP_GW_IP: &str = "203.0.113.3";
const FIP_GW_MAC: &str = "fa:16:3e:00:06:03";

/// The NAT model of dvr-pmd's node `bench` in `agent_mode`: network n0
/// (VXLAN 100, 10.0.0.0/16), an external flat network (203.0.113.0/24, the
/// upstream router [`UPSTREAM`] its gateway), router r on both (gateway
/// address [`EXT_GW_IP`], its SNAT on `bench` if that is `dvr_snat`), and `FIP_VMS` ports on
/// `bench` behind one dataplane port `vm-a` (port security off: the capture's
/// frames all come from [`VM_MAC`]), each with its fixed IP and floating IP
/// as `nat_gen` numbers them. Returns it with r's interface MAC on n0.
fn nat_model(agent_mode: &str) -> (dvr::model::Model, MacAddr) {
    use serde_json::json;
    let mut ch = vec![
        json!({"op": "host_set", "name": "bench", "agent_mode": agent_mode, "vtep": DVR_VTEP,
               "dvr_mac": DVR_MAC, "fip_gateway": {"ip": FIP_GW_IP, "mac": FIP_GW_MAC}}),
        json!({"op": "network_create", "name": "n0", "network_type": "vxlan", "segment": 100}),
        json!({"op": "subnet_create", "name": "s0", "network": "n0", "cidr": "10.0.0.0/16",
               "gateway_ip": INSIDE_GW.to_string()}),
        json!({"op": "network_create", "name": "ext", "network_type": "flat", "external": true}),
        json!({"op": "subnet_create", "name": "ext4", "network": "ext", "cidr": "203.0.113.0/24",
               "gateway_ip": UPSTREAM.to_string()}),
        json!({"op": "router_create", "name": "r"}),
        json!({"op": "router_add_subnet", "router": "r", "subnet": "s0"}),
        json!({"op": "router_set", "name": "r",
               "external_gateway": {"network": "ext",
                                    "fixed_ip": {"subnet": "ext4", "ip": EXT_GW_IP.to_string()}}}),
    ];
    if agent_mode == "dvr_snat" {
        ch.push(json!({"op": "router_set", "name": "r", "snat_host": "bench"}));
    }
    for v in 0..FIP_VMS {
        ch.push(
            json!({"op": "port_create", "name": format!("vm{v:03}"), "network": "n0",
                       "host": "bench", "binding": "vm-a", "port_security": false,
                       "fixed_ips": [{"subnet": "s0", "ip": fixed_ip(v).to_string()}]}),
        );
        ch.push(json!({"op": "floating_ip_create", "network": "ext",
                       "address": floating_ip(v).to_string(), "port": format!("vm{v:03}")}));
    }
    let ch: Vec<dvr::model::Change> = ch
        .into_iter()
        .map(|c| serde_json::from_value(c).unwrap())
        .collect();
    let mut m = dvr::model::Model::default();
    m.apply(&ch).expect("the NAT bench model is valid");
    let mac = m.routers["r"]
        .interfaces
        .iter()
        .find(|i| i.subnet == "s0")
        .expect("interface")
        .mac;
    (m, mac)
}

/// dvr-pmd's configuration for node `bench` in `agent_mode` with `extra`
/// (ports, more sections), `memory_mb` of EAL memory, the model saved as its
/// state file, the upstream router's MAC given (as the resolver would learn
/// it).
fn dvr_nat_config(
    dir: &Path,
    core: usize,
    agent_mode: &str,
    model: &dvr::model::Model,
    extra: &str,
    memory_mb: u32,
) -> String {
    let node = harness::BenchNode {
        agent_mode,
        vtep: DVR_VTEP,
        dvr_mac: DVR_MAC,
        tag: "nat",
        memory_mb,
        neighbor: (&UPSTREAM.to_string(), UP_MAC),
    };
    harness::model_config(dir, core, &node, model, extra)
}

/// Floating IPs on the VM's host (a `dvr` compute node), both directions at
/// once as in the kernel case: `nat_gen::fip_outbound` from the VMs into
/// `vm-a` (SNAT to the floating IP, out of the external port to the upstream
/// router), `nat_gen::fip_inbound` from the upstream router into the external
/// port (DNAT to the fixed IP, to the VM). Every packet is forwarded: no
/// sessions, so none new.
fn dvr_fip(dir: &Path, core: usize, secs: u64, _: u32, _: u32) -> Option<NatMeasured> {
    let (m, router_mac) = nat_model("dvr");
    let w = |name: &str, frames: Vec<Vec<u8>>| {
        let p = dir.join(name);
        dvr::pcap::write_file(&p, &frames).unwrap();
        p
    };
    let out = w(
        "dvr-fip-out.pcap",
        nat_gen::fip_outbound(mac(VM_MAC), router_mac, FIP_VMS, FIP_FLOWS),
    );
    let inb = w(
        "dvr-fip-in.pcap",
        nat_gen::fip_inbound(mac(UP_MAC), mac(FIP_GW_MAC), FIP_VMS, FIP_FLOWS),
    );
    let ports =
        harness::pcap_port("vm-a", "vm", &out) + &harness::pcap_port("ext", "external", &inb);
    let r = harness::run_dvr_config(
        dir,
        &dvr_nat_config(dir, core, "dvr", &m, &ports, 1024),
        secs,
    );
    Some(NatMeasured {
        mpps_core: r.mpps,
        cycles_per_packet: r.cycles_per_packet,
        sessions_per_s: 0.0,
        new_fraction: 0.0,
        split: r.split,
    })
}

/// Another compute node, whose VMs' SNAT traffic reaches the network node.
const CN2_VTEP: &str = "192.0.2.2";
const CN2_DVR_MAC: &str = "fa:16:3f:00:00:02";
/// Destinations per inside endpoint: a router has one gateway address, so
/// its sessions share endpoints (a binding, one external port, per inside
/// address and port; up to 64,512 of them), 20 destinations each.
const SNAT_DESTS: u32 = 20;

/// The model of the `dvr_snat` node (`nat_model`) with compute node cn2,
/// whose VMs' SNAT traffic it receives; and the router's interface MAC.
fn snat_model() -> (dvr::model::Model, MacAddr) {
    use serde_json::json;
    let (mut m, router_mac) = nat_model("dvr_snat");
    let ch: Vec<dvr::model::Change> = serde_json::from_value(json!([
        {"op": "host_set", "name": "cn2", "agent_mode": "dvr", "vtep": CN2_VTEP, "dvr_mac": CN2_DVR_MAC}
    ]))
    .unwrap();
    m.apply(&ch).expect("cn2");
    (m, router_mac)
}

/// A capture `name` in `dir` of UDP flows (source, source port, destination,
/// port 80; frame `i` carries `i`) as compute node cn2 tunnels them to the
/// router's interface `router_mac` for SNAT (VXLAN 100, from its DVR MAC),
/// written once per run; returns its path and frame count.
fn snat_capture(
    dir: &Path,
    name: &str,
    router_mac: MacAddr,
    flows: impl Iterator<Item = (Ipv4Addr, u16, Ipv4Addr)>,
) -> (PathBuf, u32) {
    let p = dir.join(name);
    let count = dir.join(format!("{name}.count"));
    if let Some(n) = std::fs::read_to_string(&count)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return (p, n);
    }
    let vtep = |s: &str| s.parse::<Ipv4Addr>().unwrap().octets();
    let frames: Vec<Vec<u8>> = flows
        .enumerate()
        .map(|(i, (src_ip, src_port, dst_ip))| {
            let inner = dvr::gen::udp4_frame(
                &dvr::gen::Udp4 {
                    src_mac: mac(CN2_DVR_MAC),
                    dst_mac: router_mac,
                    src_ip,
                    dst_ip,
                    src_port,
                    dst_port: 80,
                },
                60,
                i as u32,
            );
            dvr::testkit::vxlan_frame(
                &inner,
                100,
                ([0x02, 0, 0, 0, 0, 0x22], vtep(CN2_VTEP)),
                ([0x02, 0, 0, 0, 0, 0x01], vtep(DVR_VTEP)),
            )
        })
        .collect();
    dvr::pcap::write_file(&p, &frames).unwrap();
    std::fs::write(&count, frames.len().to_string()).unwrap();
    (p, frames.len() as u32)
}

/// The mbufs and EAL memory (MB) of a process replaying a capture of `n`
/// frames from memory (per worker) (net_pcap's `infinite_rx` holds every frame in an
/// mbuf): room for them and the bursts in flight, about 4 KiB of EAL memory
/// per mbuf without hugepages.
fn replay_memory(n: u32) -> (u32, u32) {
    // Each worker's queue replays the capture (`DVR_BENCH_WORKERS`).
    let mbufs = n * harness::env_or("DVR_BENCH_WORKERS", 1u32) + 32768;
    (mbufs, 1024 + mbufs / 250)
}

/// dvr-pmd as the `dvr_snat` node of `m`, its underlay port replaying `cap`
/// (`n` frames), its external port a null device, `nat` as its `[nat]`
/// section; `secs` seconds on `core`.
fn run_snat_node(
    dir: &Path,
    core: usize,
    secs: u64,
    m: &dvr::model::Model,
    (cap, n): (&Path, u32),
    nat: &str,
) -> harness::DvrWindow {
    let (mbufs, memory_mb) = replay_memory(n);
    let ports = harness::pcap_port("up", "underlay", cap)
        + "[[ports]]\nname = \"ext\"\nrole = \"external\"\nkind = \"null\"\n";
    let extra = format!("[dataplane]\nmbufs = {mbufs}\n[nat]\n{nat}\n{ports}");
    let cfg = dvr_nat_config(dir, core, "dvr_snat", m, &extra, memory_mb);
    harness::run_dvr_window(dir, &cfg, secs)
}

/// The established case's capture: `sessions` UDP flows, `sessions / 20`
/// inside endpoints on 10.0.16.0/20 and up (source ports 20000 up), each to
/// 20 internet hosts 198.51.100.1-20.
fn established_capture(dir: &Path, sessions: u32, router_mac: MacAddr) -> (PathBuf, u32, u32) {
    let endpoints = sessions.div_ceil(SNAT_DESTS).min(64_000);
    let flows = (0..endpoints * SNAT_DESTS).map(|i| {
        let (e, d) = (i / SNAT_DESTS, i % SNAT_DESTS);
        (
            Ipv4Addr::new(10, 0, 16 + (e / 250) as u8, 1 + (e % 250) as u8),
            20000 + (e % 1000) as u16,
            Ipv4Addr::new(198, 51, 100, 1 + d as u8),
        )
    });
    let name = format!("dvr-snat-established-{sessions}.pcap");
    let (p, n) = snat_capture(dir, &name, router_mac, flows);
    (p, n, endpoints)
}

/// Centralized SNAT on the `dvr_snat` node, established sessions: the
/// flows of [`established_capture`], replayed round robin into the underlay
/// port: the first round creates the sessions, the rest of the run finds
/// them (decapsulation, routing, PAT lookup and rewrite, out of the external
/// port).
fn dvr_snat_established(
    dir: &Path,
    core: usize,
    secs: u64,
    sessions: u32,
    _: u32,
) -> Option<NatMeasured> {
    let (m, router_mac) = snat_model();
    let (cap, n, endpoints) = established_capture(dir, sessions, router_mac);
    let max = (n as usize * 2).next_power_of_two();
    let w = run_snat_node(
        dir,
        core,
        secs,
        &m,
        (&cap, n),
        &format!("max_sessions = {max}"),
    );
    let r = w.measured;
    let created = |v: &serde_json::Value| v["workers"][0]["nat_sessions_created"].as_u64().unwrap();
    let new = created(&w.last) - created(&w.first);
    eprintln!(
        "  dvr-pmd SNAT established: {n} sessions ({endpoints} inside endpoints x {SNAT_DESTS}), \
         {} held at the end, {new} created in the window",
        w.last["workers"][0]["nat_sessions"]
    );
    Some(NatMeasured {
        mpps_core: r.mpps,
        cycles_per_packet: r.cycles_per_packet,
        sessions_per_s: 0.0,
        new_fraction: 0.0,
        split: r.split,
    })
}

/// The I/O floor of the established case's capture: `dpdk-testpmd
/// --forward-mode=io` on the same core, replaying the same capture (one
/// mbuf per frame, the same memory) into a pcap port and forwarding it to a
/// null port, as dvr-pmd's node does (underlay pcap in, external null out).
fn testpmd_snat_established(
    dir: &Path,
    core: usize,
    secs: u64,
    sessions: u32,
    _: u32,
) -> Option<NatMeasured> {
    let (_, router_mac) = snat_model();
    let (cap, n, _) = established_capture(dir, sessions, router_mac);
    let (mbufs, memory_mb) = replay_memory(n);
    let vdevs = [
        format!("net_pcap0,rx_pcap={},infinite_rx=1", cap.display()),
        "net_null1,no-rx=1".to_string(),
    ];
    let r = harness::run_testpmd_vdevs(dir, &vdevs, core, secs, "io", mbufs, memory_mb);
    Some(NatMeasured {
        mpps_core: r.mpps,
        cycles_per_packet: r.cycles_per_packet,
        sessions_per_s: 0.0,
        new_fraction: 0.0,
        split: r.split,
    })
}

/// Frames of dvr-pmd's new-sessions capture at most: `nat_gen`'s first SNAT
/// flows, as many as the kernel's case up to this (each frame is an mbuf of
/// about 4 KiB of EAL memory without hugepages: 1M frames take 4 GiB).
const DVR_NEW_FLOWS_MAX: u32 = 1_000_000;
/// The UDP timeout of the new-sessions case, in seconds: far shorter than a
/// pass over the capture (1M frames at several Mpps: hundreds of ms), so
/// that each packet's session has expired when its flow comes round again.
const DVR_NEW_UDP_TIMEOUT: &str = "0.004";

/// Centralized SNAT on the `dvr_snat` node, new sessions: the kernel case's
/// flows (`nat_gen::snat_flow`: every flow its own inside endpoint, hence
/// its own external port), the first [`DVR_NEW_FLOWS_MAX`] of them, as cn2
/// tunnels them, replayed round robin, with a UDP timeout of 4 ms
/// (`[nat] udp_timeout = 0.004`) and the default table of 65,536 sessions.
/// A flow comes round again a pass later, long after its session expired
/// and was freed (by the expiry sweep, 64 slots a burst, or by the lookup
/// that finds it dead), so every packet creates a session: binding, port
/// from the pool, both indexes; expiry and freeing are in the same cycles.
/// Live sessions stay well under the 64,512 ports of the one gateway
/// address (about rate x 4 ms, plus dead ones the sweep has not reached).
/// The rate is the worker's created-sessions counter over the window
/// (`nat_sessions_created`, read in the counter lines that open and close
/// it) per second of its poll cycles; the fraction of packets that created
/// one is printed, and the NAT's drops.
fn dvr_snat_new(dir: &Path, core: usize, secs: u64, _: u32, new_flows: u32) -> Option<NatMeasured> {
    let (m, router_mac) = snat_model();
    let count = new_flows.min(DVR_NEW_FLOWS_MAX);
    let flows = (0..count).map(|i| {
        let (src, port, dst) = nat_gen::snat_flow(i, SNAT_PORT);
        (src, port, dst)
    });
    let name = format!("dvr-snat-new-{count}.pcap");
    let (cap, n) = snat_capture(dir, &name, router_mac, flows);
    let w = run_snat_node(
        dir,
        core,
        secs,
        &m,
        (&cap, n),
        &format!("udp_timeout = {DVR_NEW_UDP_TIMEOUT}"),
    );
    let r = w.measured;
    let wk = |v: &serde_json::Value, k: &str| v["workers"][0][k].as_u64().unwrap();
    let created = wk(&w.last, "nat_sessions_created") - wk(&w.first, "nat_sessions_created");
    let packets = wk(&w.last, "packets") - wk(&w.first, "packets");
    let cycles = wk(&w.last, "poll_cycles") - wk(&w.first, "poll_cycles");
    let busy_s = cycles as f64 / r.tsc_hz.max(1) as f64;
    let drops: Vec<String> = w.last["drops"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    eprintln!(
        "  dvr-pmd SNAT new sessions: {n} flows, udp_timeout {DVR_NEW_UDP_TIMEOUT} s; window: \
         {created} sessions created for {packets} packets ({:.1}% new), {} held at the end; \
         drops since start: {}",
        100.0 * created as f64 / packets.max(1) as f64,
        w.last["workers"][0]["nat_sessions"],
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(" ")
        }
    );
    if (created as f64) < 0.9 * packets as f64 {
        eprintln!("  warning: fewer than 90% of the new-sessions case's packets made new sessions");
    }
    Some(NatMeasured {
        mpps_core: r.mpps,
        cycles_per_packet: r.cycles_per_packet,
        sessions_per_s: if busy_s > 0.0 {
            created as f64 / busy_s
        } else {
            0.0
        },
        new_fraction: created as f64 / packets.max(1) as f64,
        split: r.split,
    })
}

// ======== end of the dvr-pmd rows.

// ---- the kernel reference ----

/// The MACs of the kernel topology: the VMs' end (`kn-in`), the router's inside
/// leg (`qr-knat`), its gateway leg (`qg-knat`), the upstream router (`kn-out`).
const VM_MAC: &str = "fa:16:3e:00:05:0a";
const QR_MAC: &str = "fa:16:3e:00:05:01";
const QG_MAC: &str = "fa:16:3e:00:05:02";
const UP_MAC: &str = "fa:16:3e:00:05:fe";
const QR: &str = "qr-knat";
const QG: &str = "qg-knat";

/// VMs with floating IPs, and flows per VM and direction, of the FIP case.
const FIP_VMS: u8 = 64;
const FIP_FLOWS: u16 = 16;
/// The first source port of the SNAT flows.
const SNAT_PORT: u16 = 1024;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

/// Runs `bash -ec script`; panics with its output when it fails.
fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-ec", script])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "failed ({}):\n{script}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The conntrack table's global limits, raised for the run and restored on drop.
struct ConntrackLimits {
    max: String,
    hashsize: String,
}

const CT_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const CT_HASHSIZE: &str = "/sys/module/nf_conntrack/parameters/hashsize";

impl ConntrackLimits {
    /// Room for `sessions` entries (twice over: a namespace being deleted may
    /// still hold the last round's), one bucket per entry.
    fn raise(sessions: u32) -> Result<ConntrackLimits, String> {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("{p}: {e}"))
        };
        let old = ConntrackLimits {
            max: read(CT_MAX)?,
            hashsize: read(CT_HASHSIZE)?,
        };
        let want_max = (2 * sessions as u64 + 100_000).max(old.max.parse().unwrap_or(0));
        let want_hash = (sessions as u64)
            .next_power_of_two()
            .max(old.hashsize.parse().unwrap_or(0));
        std::fs::write(CT_MAX, want_max.to_string()).map_err(|e| format!("{CT_MAX}: {e}"))?;
        std::fs::write(CT_HASHSIZE, want_hash.to_string())
            .map_err(|e| format!("{CT_HASHSIZE}: {e}"))?;
        eprintln!(
            "conntrack: nf_conntrack_max {} -> {want_max}, hashsize {} -> {want_hash} (restored at exit)",
            old.max, old.hashsize
        );
        Ok(old)
    }
}

impl Drop for ConntrackLimits {
    fn drop(&mut self) {
        let _ = std::fs::write(CT_HASHSIZE, &self.hashsize);
        let _ = std::fs::write(CT_MAX, &self.max);
    }
}

/// The router and generator namespaces with their veths; deleted on drop.
struct Topology {
    gen: String,
    router: String,
    /// The router legs' NAPI threads, pinned to the measured core.
    napi: Vec<u32>,
}

impl Topology {
    /// Builds the namespaces, veths, addresses, routes, neighbours, RPS and
    /// the L3 agent's iptables rules. `core` runs the router's receive work,
    /// `gen_core` the generator ends'.
    fn new(tag: &str, core: usize, gen_core: usize) -> Topology {
        let id = std::process::id();
        let mut t = Topology {
            gen: format!("knat-gen-{tag}-{id}"),
            router: format!("qrouter-knat-{tag}-{id}"),
            napi: Vec::new(),
        };
        let (g, r) = (&t.gen, &t.router);
        let mut s = format!(
            r#"
ip netns add {g}
ip netns add {r}
for ns in {g} {r}; do
  ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n $ns link set lo up
done
ip -n {g} link add kn-in address {VM_MAC} type veth peer name {QR} address {QR_MAC} netns {r}
ip -n {g} link add kn-out address {UP_MAC} type veth peer name {QG} address {QG_MAC} netns {r}
for d in kn-in kn-out; do
  ip netns exec {g} ethtool -K $d tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  ip -n {g} link set $d up
done
for d in {QR} {QG}; do
  ip netns exec {r} ethtool -K $d tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  ip -n {r} link set $d up
done
# GRO on gives an up veth a NAPI instance (UDP is not aggregated: no
# udp-gro-forwarding); threaded, it runs in a kthread of its own.
for d in {QR} {QG}; do
  ip netns exec {r} ethtool -K $d gro on >/dev/null
  ip netns exec {r} sh -c "echo 1 > /sys/class/net/$d/threaded"
done
ip netns exec {r} sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
  net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.{QR}.rp_filter=0 net.ipv4.conf.{QG}.rp_filter=0
ip -n {r} addr add 10.0.0.1/16 dev {QR}
ip -n {r} addr add {EXT_GW_IP}/24 dev {QG}
ip -n {r} route add default via {UPSTREAM} dev {QG}
ip -n {r} neigh replace {UPSTREAM} lladdr {UP_MAC} dev {QG} nud permanent
ip netns exec {g} sh -c 'echo {gmask:x} > /sys/class/net/kn-in/queues/rx-0/rps_cpus; echo {gmask:x} > /sys/class/net/kn-out/queues/rx-0/rps_cpus'
"#,
            gmask = 1u32 << gen_core,
        );
        for v in 0..FIP_VMS {
            s += &format!(
                "ip -n {r} addr add {}/32 dev {QG}\nip -n {r} neigh replace {} lladdr {VM_MAC} dev {QR} nud permanent\n",
                floating_ip(v),
                fixed_ip(v)
            );
        }
        sh(&s);
        t.iptables_restore(&neutron_rules());
        // The NAPI threads are named napi/DEV-ID (cut to 15 characters): only
        // this benchmark names devices qr-knat / qg-knat.
        let ps = sh("ps -eo pid=,comm=");
        t.napi = ps
            .lines()
            .filter_map(|l| {
                let (pid, comm) = l.trim().split_once(' ')?;
                let comm = comm.trim();
                (comm.starts_with(&format!("napi/{QR}")) || comm.starts_with(&format!("napi/{QG}")))
                    .then(|| pid.parse().ok())?
            })
            .collect();
        assert!(
            t.napi.len() >= 2,
            "no threaded NAPI for {QR} and {QG}:\n{ps}"
        );
        for pid in &t.napi {
            sh(&format!("taskset -pc {core} {pid} >/dev/null"));
        }
        t
    }

    /// CPU time the router's NAPI threads have run so far, in seconds
    /// (/proc/PID/schedstat: nanoseconds on CPU).
    fn napi_s(&self) -> f64 {
        self.napi
            .iter()
            .map(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum::<u64>() as f64
            / 1e9
    }

    fn iptables_restore(&self, rules: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.router, "iptables-restore"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("iptables-restore (scripts/install-deps installs iptables)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "iptables-restore failed: {}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn sysctl(&self, kv: &str) {
        sh(&format!("ip netns exec {} sysctl -qw {kv}", self.router));
    }

    /// Packets sent by the router's legs: (qg-, qr-).
    fn router_tx(&self) -> (u64, u64) {
        let out = sh(&format!("ip -n {} -s -j link show", self.router));
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j link");
        let tx = |name: &str| {
            v.as_array()
                .unwrap()
                .iter()
                .find(|l| l["ifname"] == name)
                .and_then(|l| l["stats64"]["tx"]["packets"].as_u64())
                .unwrap_or_else(|| panic!("no tx counter of {name}: {out}"))
        };
        (tx(QG), tx(QR))
    }

    /// The router namespace's conntrack entries.
    fn ct_count(&self) -> u64 {
        sh(&format!(
            "ip netns exec {} cat /proc/sys/net/netfilter/nf_conntrack_count",
            self.router
        ))
        .trim()
        .parse()
        .unwrap()
    }

    /// Connections the router namespace's NAT table has seen: the packet
    /// counter of the rule every connection's first packet (and only that)
    /// passes, `-A POSTROUTING -j neutron-l3-agent-POSTROUTING` of the nat
    /// table. (/proc/net/stat/nf_conntrack no longer counts inserts.)
    fn nat_sessions(&self) -> u64 {
        let out = sh(&format!(
            "ip netns exec {} iptables-save -c -t nat",
            self.router
        ));
        out.lines()
            .find(|l| l.ends_with("-A POSTROUTING -j neutron-l3-agent-POSTROUTING"))
            .and_then(|l| l.strip_prefix('[')?.split(':').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no counter of the nat POSTROUTING jump in:\n{out}"))
    }

    /// Packets the generator's end `dev` offered to the router: sent plus
    /// dropped at the router core's backlog.
    fn offered(&self, dev: &str) -> u64 {
        let out = sh(&format!("ip -n {} -s -j link show dev {dev}", self.gen));
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j link");
        let tx = &v[0]["stats64"]["tx"];
        tx["packets"].as_u64().unwrap() + tx["dropped"].as_u64().unwrap_or(0)
    }

    /// Captures `count` frames leaving the router on the generator's end `dev`
    /// while traffic flows (tshark, at most 30 s).
    fn capture(&self, dir: &Path, dev: &str, count: usize) -> Vec<Vec<u8>> {
        let file = dir.join(format!("check-{dev}.pcap"));
        let _ = std::fs::remove_file(&file);
        let out = Command::new("ip")
            .args(["netns", "exec", &self.gen, "tshark", "-q", "-i", dev])
            .args(["-c", &count.to_string(), "-a", "duration:30", "-F", "pcap"])
            .arg("-w")
            .arg(&file)
            .output()
            .expect("tshark (scripts/install-deps installs it)");
        assert!(
            out.status.success(),
            "tshark on {dev}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let frames = dvr::pcap::read_file(&file).expect("tshark's capture");
        let _ = std::fs::remove_file(&file);
        frames
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.gen, &self.router] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The iptables rules Neutron's L3 agent installs in a legacy router's
/// namespace for the gateway leg `qg-knat` (203.0.113.1) and `FIP_VMS`
/// floating IPs (router_info.py: floating_forward_rules,
/// external_gateway_nat_snat_rules, external_gateway_nat_fip_rules,
/// external_gateway_mangle_rules, the address scope rules; use_random_fully).
fn neutron_rules() -> String {
    let mut nat = String::new();
    for v in 0..FIP_VMS {
        let (fip, fixed) = (floating_ip(v), fixed_ip(v));
        nat += &format!(
            "-A neutron-l3-agent-PREROUTING -d {fip}/32 -j DNAT --to-destination {fixed}\n\
             -A neutron-l3-agent-OUTPUT -d {fip}/32 -j DNAT --to-destination {fixed}\n\
             -A neutron-l3-agent-float-snat -s {fixed}/32 -j SNAT --to-source {fip} --random-fully\n"
        );
    }
    format!(
        r#"*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:neutron-filter-top - [0:0]
:neutron-l3-agent-FORWARD - [0:0]
:neutron-l3-agent-INPUT - [0:0]
:neutron-l3-agent-OUTPUT - [0:0]
:neutron-l3-agent-local - [0:0]
:neutron-l3-agent-scope - [0:0]
-A INPUT -j neutron-l3-agent-INPUT
-A FORWARD -j neutron-filter-top
-A FORWARD -j neutron-l3-agent-FORWARD
-A OUTPUT -j neutron-filter-top
-A OUTPUT -j neutron-l3-agent-OUTPUT
-A neutron-filter-top -j neutron-l3-agent-local
-A neutron-l3-agent-FORWARD -j neutron-l3-agent-scope
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:neutron-l3-agent-FORWARD - [0:0]
:neutron-l3-agent-INPUT - [0:0]
:neutron-l3-agent-OUTPUT - [0:0]
:neutron-l3-agent-POSTROUTING - [0:0]
:neutron-l3-agent-PREROUTING - [0:0]
:neutron-l3-agent-float-snat - [0:0]
:neutron-l3-agent-floatingip - [0:0]
:neutron-l3-agent-mark - [0:0]
:neutron-l3-agent-scope - [0:0]
-A PREROUTING -j neutron-l3-agent-PREROUTING
-A INPUT -j neutron-l3-agent-INPUT
-A FORWARD -j neutron-l3-agent-FORWARD
-A OUTPUT -j neutron-l3-agent-OUTPUT
-A POSTROUTING -j neutron-l3-agent-POSTROUTING
-A neutron-l3-agent-PREROUTING -j neutron-l3-agent-mark
-A neutron-l3-agent-PREROUTING -j neutron-l3-agent-scope
-A neutron-l3-agent-PREROUTING -m connmark ! --mark 0x0/0xffff0000 -j CONNMARK --restore-mark --nfmask 0xffff0000 --ctmask 0xffff0000
-A neutron-l3-agent-PREROUTING -j neutron-l3-agent-floatingip
-A neutron-l3-agent-float-snat -m connmark --mark 0x0/0xffff0000 -j CONNMARK --save-mark --nfmask 0xffff0000 --ctmask 0xffff0000
-A neutron-l3-agent-mark -i {QG} -j MARK --set-xmark 0x2/0xffff
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:neutron-l3-agent-OUTPUT - [0:0]
:neutron-l3-agent-POSTROUTING - [0:0]
:neutron-l3-agent-PREROUTING - [0:0]
:neutron-l3-agent-float-snat - [0:0]
:neutron-l3-agent-snat - [0:0]
:neutron-postrouting-bottom - [0:0]
-A PREROUTING -j neutron-l3-agent-PREROUTING
-A OUTPUT -j neutron-l3-agent-OUTPUT
-A POSTROUTING -j neutron-l3-agent-POSTROUTING
-A POSTROUTING -j neutron-postrouting-bottom
-A neutron-l3-agent-POSTROUTING ! -o {QG} -m conntrack ! --ctstate DNAT -j ACCEPT
{nat}-A neutron-l3-agent-snat -j neutron-l3-agent-float-snat
-A neutron-l3-agent-snat -o {QG} -j SNAT --to-source {EXT_GW_IP} --random-fully
-A neutron-l3-agent-snat -m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j SNAT --to-source {EXT_GW_IP} --random-fully
-A neutron-postrouting-bottom -m comment --comment "Perform source NAT on outgoing traffic." -j neutron-l3-agent-snat
COMMIT
"#
    )
}

/// dpdk-testpmd in the generator namespace: each capture replayed from memory
/// into an AF_PACKET port on a generator veth end, on `gen_core`; stopped on drop.
struct Generator {
    child: Child,
    prefix: String,
    log: PathBuf,
}

impl Generator {
    fn start(
        topo: &Topology,
        dir: &Path,
        feeds: &[(&Path, &str)],
        frames: usize,
        core: usize,
        gen_core: usize,
    ) -> Generator {
        let prefix = format!("knat-{}", std::process::id());
        let log = dir.join("testpmd.log");
        // Each mbuf: 640 bytes of buffer (AF_PACKET frames of 512 need 480 of
        // room after the headroom) plus its header: about 900 bytes with the
        // pool's overhead. The replayed captures live in the pool.
        let mbufs = frames + 32_768;
        let mem_mb = mbufs * 900 / (1 << 20) + 512;
        let mut cmd = Command::new("ip");
        // Niced: the machine is shared, and the generator must outrun the router.
        cmd.args([
            "netns",
            "exec",
            &topo.gen,
            "nice",
            "-n",
            "-19",
            "dpdk-testpmd",
        ])
        .args(["-l", &format!("{core},{gen_core}")])
        .args(["--main-lcore", &core.to_string()])
        .args([
            "--no-huge",
            "-m",
            &mem_mb.to_string(),
            "--no-pci",
            "--no-shconf",
        ])
        .args(["--file-prefix", &prefix])
        .arg("--log-level=lib.eal:debug");
        for (i, (pcap, dev)) in feeds.iter().enumerate() {
            cmd.args([
                "--vdev",
                &format!("net_pcap{i},rx_pcap={},infinite_rx=1", pcap.display()),
            ]);
            cmd.args([
                "--vdev",
                &format!("net_af_packet{i},iface={dev},framesz=512,blocksz=4096,framecnt=1024"),
            ]);
        }
        cmd.args([
            "--",
            "--forward-mode=io",
            "--stats-period",
            "1",
            "--nb-cores",
            "1",
            "--mbuf-size",
            "640",
            "--total-num-mbufs",
            &mbufs.to_string(),
        ]);
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .current_dir(dir)
            .spawn()
            .unwrap_or_else(|e| harness::cannot_measure(format!("cannot start dpdk-testpmd: {e}")));
        let mut g = Generator { child, prefix, log };
        let t0 = Instant::now();
        while !g.log_text().contains("Port statistics") {
            if let Ok(Some(st)) = g.child.try_wait() {
                harness::cannot_measure(format!(
                    "dpdk-testpmd (the generator) ended ({st}); its log {}: {}",
                    g.log.display(),
                    harness::last_line(&g.log_text())
                ));
            }
            // Loading a capture of millions of frames takes a few seconds.
            if t0.elapsed() > Duration::from_secs(120) {
                let _ = g.child.kill();
                let _ = g.child.wait();
                harness::cannot_measure(format!(
                    "dpdk-testpmd (the generator) not forwarding after 120 s; its log {}: {}",
                    g.log.display(),
                    harness::last_line(&g.log_text())
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        g
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The TSC rate EAL measured, from its debug log.
    fn tsc_hz(&self) -> u64 {
        harness::eal_tsc_hz(&self.log_text())
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(harness::dpdk_runtime_dir(&self.prefix));
    }
}

/// The softirq time of `cpu` so far, in seconds (/proc/stat, USER_HZ = 100).
fn softirq_s(cpu: usize) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let name = format!("cpu{cpu}");
    let l = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("no {name} in /proc/stat"));
    // cpuN user nice system idle iowait irq softirq ...
    let ticks: u64 = l.split_whitespace().nth(7).unwrap().parse().unwrap();
    ticks as f64 / 100.0
}

/// A reading of the counters that make a measurement.
#[derive(Clone, Copy)]
struct Reading {
    t: Instant,
    /// The router's NAPI threads' CPU seconds.
    busy: f64,
    /// The measured core's softirq seconds (should stay near zero: the
    /// router's work runs in its NAPI threads).
    softirq: f64,
    forwarded: u64,
    inserts: u64,
    offered: u64,
}

fn read(topo: &Topology, core: usize) -> Reading {
    let t = Instant::now();
    let busy = topo.napi_s();
    let softirq = softirq_s(core);
    let (qg, qr) = topo.router_tx();
    let inserts = topo.nat_sessions();
    let offered = topo.offered("kn-in") + topo.offered("kn-out");
    Reading {
        t,
        busy,
        softirq,
        forwarded: qg + qr,
        inserts,
        offered,
    }
}

/// The figures of the window `a`..`b`, and the forwarded rate (Mpps), the
/// share of the core the NAPI threads took and its share in softirq.
fn figures(a: Reading, b: Reading, tsc_hz: u64) -> (NatMeasured, f64, f64, f64) {
    let dt = (b.t - a.t).as_secs_f64();
    let busy = (b.busy - a.busy).max(1e-9);
    let fwd = (b.forwarded - a.forwarded) as f64;
    let new = (b.inserts - a.inserts) as f64;
    let m = NatMeasured {
        mpps_core: fwd / busy / 1e6,
        cycles_per_packet: if fwd > 0.0 {
            tsc_hz as f64 * busy / fwd
        } else {
            0.0
        },
        sessions_per_s: new / busy,
        new_fraction: if fwd > 0.0 { new / fwd } else { 0.0 },
        split: None,
    };
    (m, fwd / dt / 1e6, busy / dt, (b.softirq - a.softirq) / dt)
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Fip,
    SnatEstablished,
    SnatNew,
}

impl Case {
    fn name(self, sessions: u32) -> String {
        match self {
            Case::Fip => "kernel FIP (iptables 1:1 NAT)".into(),
            Case::SnatEstablished if sessions == 1_000_000 => {
                "kernel SNAT established (1M conntrack)".into()
            }
            Case::SnatEstablished => format!("kernel SNAT established ({sessions} conntrack)"),
            Case::SnatNew => "kernel SNAT new sessions".into(),
        }
    }
}

/// The captures of the kernel cases, written once.
struct Captures {
    fip_out: PathBuf,
    fip_in: PathBuf,
    snat: PathBuf,
    snat_new: PathBuf,
}

fn write_captures(dir: &Path, sessions: u32, new_flows: u32) -> Captures {
    let w = |name: &str, frames: Vec<Vec<u8>>| {
        let p = dir.join(name);
        dvr::pcap::write_file(&p, &frames).unwrap();
        p
    };
    Captures {
        fip_out: w(
            "fip-out.pcap",
            nat_gen::fip_outbound(mac(VM_MAC), mac(QR_MAC), FIP_VMS, FIP_FLOWS),
        ),
        fip_in: w(
            "fip-in.pcap",
            nat_gen::fip_inbound(mac(UP_MAC), mac(QG_MAC), FIP_VMS, FIP_FLOWS),
        ),
        snat: w(
            "snat.pcap",
            nat_gen::snat_frames(mac(VM_MAC), mac(QR_MAC), sessions, SNAT_PORT),
        ),
        snat_new: w(
            "snat-new.pcap",
            nat_gen::snat_frames(mac(VM_MAC), mac(QR_MAC), new_flows, SNAT_PORT),
        ),
    }
}

/// Checks a translated frame's headers: IPv4/UDP, TTL 63 (routed once), valid
/// IPv4 and UDP checksums, the given MACs; returns (src, dst, src port, dst
/// port, flow index).
fn check_frame(f: &[u8], src_mac: &str, dst_mac: &str) -> (Ipv4Addr, Ipv4Addr, u16, u16, u32) {
    assert_eq!(f.len(), nat_gen::FRAME_LEN, "frame length");
    let e = EthernetFrame::new_checked(f).expect("an Ethernet header");
    assert_eq!(e.dst(), mac(dst_mac).0, "destination MAC");
    assert_eq!(e.src(), mac(src_mac).0, "source MAC");
    assert_eq!(e.ethertype(), ethernet::ETHERTYPE_IPV4, "ethertype");
    let ip = Ipv4Packet::new_checked(e.payload()).expect("an IPv4 header");
    assert_eq!(ip.protocol(), proto::UDP, "protocol");
    assert_eq!(ip.ttl(), 63, "TTL");
    assert_eq!(dvr::gen::ipv4_checksum(ip.header()), 0, "IPv4 checksum");
    let udp = UdpHeader::new_checked(ip.payload()).expect("a UDP header");
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let pseudo = pseudo4(&src.octets(), &dst.octets(), udp.len(), proto::UDP);
    let l4 = ip.header_len()..usize::from(ip.total_len());
    assert_eq!(
        csum_fold(csum_add(pseudo, &ip.as_bytes()[l4])),
        0,
        "UDP checksum"
    );
    (
        src,
        dst,
        udp.src_port(),
        udp.dst_port(),
        nat_gen::seq_of(f).unwrap(),
    )
}

/// Captures what the router sends while the generator runs and checks that it
/// is translated as the case's rules say.
fn check_translation(topo: &Topology, dir: &Path, case: Case) {
    const N: usize = 64;
    let out = topo.capture(dir, "kn-out", N);
    assert_eq!(out.len(), N, "captured on kn-out");
    for f in &out {
        let (src, dst, _, dport, seq) = check_frame(f, QG_MAC, UP_MAC);
        assert_eq!(dport, 80, "destination port");
        match case {
            Case::Fip => {
                let v = (seq / FIP_FLOWS as u32) as u8;
                assert_eq!(src, floating_ip(v), "source of VM {v}'s flow {seq}");
                assert_eq!(dst, INTERNET);
            }
            Case::SnatEstablished | Case::SnatNew => {
                assert_eq!(src, EXT_GW_IP, "source of SNAT flow {seq}");
                assert_eq!(dst, nat_gen::snat_flow(seq, SNAT_PORT).2, "flow {seq}");
            }
        }
    }
    if case == Case::Fip {
        let inb = topo.capture(dir, "kn-in", N);
        assert_eq!(inb.len(), N, "captured on kn-in");
        for f in &inb {
            let (src, dst, sport, dport, seq) = check_frame(f, QR_MAC, VM_MAC);
            let v = (seq / FIP_FLOWS as u32) as u8;
            assert_eq!(src, INTERNET, "inbound source");
            assert_eq!(sport, 80, "inbound source port");
            assert_eq!(dst, fixed_ip(v), "inbound flow {seq} to VM {v}");
            assert_eq!(dport, 8080 + (seq % FIP_FLOWS as u32) as u16, "port kept");
        }
    }
}

/// Runs one kernel case: topology, generator, warm-up, check, then a window
/// of `secs` seconds on `core`.
#[allow(clippy::too_many_arguments)]
fn run_kernel(
    dir: &Path,
    caps: &Captures,
    case: Case,
    core: usize,
    gen_core: usize,
    secs: u64,
    sessions: u32,
    new_flows: u32,
) -> NatMeasured {
    let tag = match case {
        Case::Fip => "f",
        Case::SnatEstablished => "e",
        Case::SnatNew => "n",
    };
    let topo = Topology::new(tag, core, gen_core);
    if case == Case::SnatNew {
        topo.sysctl("net.netfilter.nf_conntrack_udp_timeout=1");
    }
    let (feeds, frames): (Vec<(&Path, &str)>, usize) = match case {
        Case::Fip => (
            vec![(&caps.fip_out, "kn-in"), (&caps.fip_in, "kn-out")],
            2 * FIP_VMS as usize * FIP_FLOWS as usize,
        ),
        Case::SnatEstablished => (vec![(&caps.snat, "kn-in")], sessions as usize),
        Case::SnatNew => (vec![(&caps.snat_new, "kn-in")], new_flows as usize),
    };
    let gen = Generator::start(&topo, dir, &feeds, frames, core, gen_core);
    let tsc_hz = gen.tsc_hz();
    if tsc_hz == 0 {
        harness::cannot_measure(format!(
            "no TSC rate (\"TSC frequency is ~N KHz\") in the generator's EAL log {}",
            gen.log.display()
        ));
    }

    // Warm-up: established sessions must all exist first.
    if case == Case::SnatEstablished {
        let target = sessions as u64 * 999 / 1000;
        let (mut last, mut since) = (0, Instant::now());
        loop {
            let n = topo.ct_count();
            if n >= target {
                break;
            }
            if n > last {
                (last, since) = (n, Instant::now());
            }
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "conntrack stuck at {n} of {sessions} sessions for 30 s"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    check_translation(&topo, dir, case);

    let a = read(&topo, core);
    std::thread::sleep(Duration::from_secs(secs));
    let b = read(&topo, core);
    let ct = topo.ct_count();
    drop(gen);
    let (m, rate, share, softirq) = figures(a, b, tsc_hz);
    let offered = (b.offered - a.offered) as f64 / (b.t - a.t).as_secs_f64() / 1e6;
    eprintln!(
        "  {}: offered {offered:.3} Mpps, forwarded {rate:.3} Mpps using {:.0}% of core {core} \
         in its NAPI threads (core softirq {:.1}%), conntrack {ct} entries, {:.1}% of packets new",
        case.name(sessions),
        share * 100.0,
        softirq * 100.0,
        m.new_fraction * 100.0
    );
    if share < 0.9 {
        eprintln!(
            "  warning: core {core} not saturated by the router's work: the generator offers \
             too little (per-packet costs then include more wake-ups)"
        );
    }
    if case == Case::SnatEstablished && m.new_fraction > 0.01 {
        eprintln!("  warning: more than 1% of the established case's packets made new sessions");
    }
    if case == Case::SnatNew && m.new_fraction < 0.9 {
        eprintln!("  warning: fewer than 90% of the new-sessions case's packets made new sessions");
    }
    m
}

/// Why the kernel reference cannot run here, if it cannot.
fn kernel_unavailable() -> Option<String> {
    let uid = sh("id -u");
    if uid.trim() != "0" {
        return Some("not root (network namespaces and sysctls need it)".into());
    }
    for tool in ["iptables-restore", "tshark", "ethtool", "dpdk-testpmd"] {
        if sh(&format!("command -v {tool} || true")).trim().is_empty() {
            return Some(format!("{tool} missing (scripts/install-deps installs it)"));
        }
    }
    None
}

fn main() {
    let secs: u64 = harness::env_or("DVR_BENCH_SECONDS", 6);
    let rounds: usize = harness::env_or("DVR_BENCH_ROUNDS", 3);
    let core: usize = harness::env_or("DVR_BENCH_CORE", 1);
    let sessions: u32 = harness::env_or("DVR_BENCH_SESSIONS", 1_000_000);
    let new_flows: u32 = harness::env_or("DVR_BENCH_NEW_FLOWS", 2_000_000);
    let gen_core = if core == 0 { 1 } else { 0 };
    let dir = tempfile::tempdir().expect("temp dir");

    // DVR_BENCH_CASE=<substring>: only the matching rows, kernel's and dvr-pmd's.
    let only: String = harness::env_or("DVR_BENCH_CASE", String::new());
    let kernel_cases: Vec<Case> = [Case::Fip, Case::SnatEstablished, Case::SnatNew]
        .into_iter()
        .filter(|c| c.name(sessions).contains(only.as_str()))
        .collect();
    let mut kern: Vec<Vec<NatMeasured>> = vec![Vec::new(); kernel_cases.len()];
    let why_not = if kernel_cases.is_empty() {
        Some(format!("DVR_BENCH_CASE={only}"))
    } else {
        kernel_unavailable()
    };
    let limits = match &why_not {
        None => Some(ConntrackLimits::raise(sessions.max(new_flows))),
        Some(_) => None,
    };
    let limits_err = match &limits {
        Some(Err(e)) => Some(format!("conntrack limits not raised: {e}")),
        _ => None,
    };
    let caps = why_not
        .is_none()
        .then(|| write_captures(dir.path(), sessions, new_flows));

    let cases: Vec<DvrCase> = dvr_cases()
        .into_iter()
        .filter(|c| c.name.contains(only.as_str()))
        .collect();
    let mut dv: Vec<Vec<NatMeasured>> = vec![Vec::new(); cases.len()];
    for r in 0..rounds {
        if let Some(caps) = &caps {
            for (c, out) in kernel_cases.iter().zip(kern.iter_mut()) {
                let m = run_kernel(
                    dir.path(),
                    caps,
                    *c,
                    core,
                    gen_core,
                    secs,
                    sessions,
                    new_flows,
                );
                eprintln!(
                    "round {r}: {} {:.3} Mpps/core, {:.0} cycles/packet, {:.0} new sessions/s/core",
                    c.name(sessions),
                    m.mpps_core,
                    m.cycles_per_packet,
                    m.sessions_per_s
                );
                out.push(m);
            }
        }
        for (c, out) in cases.iter().zip(dv.iter_mut()) {
            if let Some(m) = (c.run)(dir.path(), core, secs, sessions, new_flows) {
                eprintln!(
                    "round {r}: {} {:.3} Mpps/core, {:.0} cycles/packet{}, {:.0} new sessions/s/core",
                    c.name,
                    m.mpps_core,
                    m.cycles_per_packet,
                    harness::parts(m.split),
                    m.sessions_per_s
                );
                out.push(m);
            }
        }
    }
    drop(limits);

    println!(
        "\nNAT, 60-byte IPv4/UDP frames, core {core} measured, median of {rounds} rounds of {secs} s; \
         FIP: {FIP_VMS} VMs x {FIP_FLOWS} flows each way; SNAT: {sessions} established sessions, \
         {new_flows} new-session flows"
    );
    let row = |name: &str, ms: &[NatMeasured], new: bool| {
        let m = median(ms.iter().map(|m| m.mpps_core));
        let c = median(ms.iter().map(|m| m.cycles_per_packet));
        let s = median(ms.iter().map(|m| m.sessions_per_s));
        print!("{name:<40} {m:>8.3} Mpps/core {c:>8.0} cycles/packet");
        if new {
            print!(" {:>8.3} M new sessions/s/core", s / 1e6);
        }
        println!();
        let parts = harness::parts(harness::median_split(ms.iter().map(|m| m.split)));
        if !parts.is_empty() {
            println!("  cycles/packet in parts{parts}");
        }
        (m, c, s)
    };
    let mut kernel_rows = Vec::new();
    for (c, ms) in kernel_cases.iter().zip(&kern) {
        if ms.is_empty() {
            let why = why_not.clone().or(limits_err.clone()).unwrap_or_default();
            println!("{:<40} not measured: {why}", c.name(sessions));
            kernel_rows.push(None);
        } else {
            kernel_rows.push(Some(row(&c.name(sessions), ms, *c == Case::SnatNew)));
        }
    }
    if let Some(e) = &limits_err {
        println!("note: {e}");
    }
    let mut measured: Vec<(&str, f64)> = Vec::new();
    for (c, ms) in cases.iter().zip(&dv) {
        let k = kernel_cases
            .iter()
            .position(|&kc| Some(kc) == c.kernel)
            .and_then(|i| kernel_rows[i]);
        if ms.is_empty() {
            println!(
                "{:<40} not measured (dvr-pmd NAT lands with issue 5)",
                c.name
            );
            continue;
        }
        let new = c.kernel == Some(Case::SnatNew);
        let (m, cpp, ns) = row(c.name, ms, new);
        match k {
            Some((_, _, ks)) if new => {
                println!(
                    "  ratio to the kernel per core (new sessions/s): {:.1}",
                    ns / ks
                )
            }
            Some((km, _, _)) => println!("  ratio to the kernel per core: {:.1}", m / km),
            None => {}
        }
        measured.push((c.name, cpp));
    }
    // The established case's I/O floor: what testpmd io spends per packet on
    // the same capture, replayed the same way, of what dvr-pmd spends.
    let cpp_of = |name: &str| measured.iter().find(|(n, _)| *n == name).map(|x| x.1);
    if let (Some(d), Some(t)) = (
        cpp_of("dvr-pmd SNAT established"),
        cpp_of("testpmd io, SNAT established capture"),
    ) {
        println!(
            "  SNAT established: {t:.0} of dvr-pmd's {d:.0} cycles/packet ({:.0}%) are testpmd io's \
             on the same capture (the replay of its distinct mbufs, the I/O floor); dvr-pmd spends {:.0} more \
             (its parts, above, measure its own work without testpmd's loop)",
            100.0 * t / d,
            d - t
        );
    }
    println!(
        "goals: SNAT established (1M sessions) <= 250 cycles/packet; new sessions >= 3M/s/core; \
         >= 10x the kernel per core"
    );
}
