//! The pipeline inside a real dvr-pmd, the way VPP's `make test` checks a
//! feature: crafted frames in through a pcap port, the exact frames out on each
//! port (byte for byte) and the exact change of every drop counter.
//!
//! The node is `cn1` of `dvr::testkit` (VM ports vm-a, vm-b, vm-e, underlay
//! `up`), its model loaded from the state file at start (the workers start on
//! it). The expected frames are what `pipeline::process` gives for each input
//! on the same tables (the golden tests check those bytes against an
//! independent packet builder); this test checks the daemon around it: the
//! mbuf path, the output grouping and order, the counters.

mod common;

use std::net::Ipv4Addr;

use common::{drops, node_head, Daemon};
use dvr::compile::Compiler;
use dvr::pipeline::{self, Disposition, Env, NoTrace};
use dvr::pkt::Frame;
use dvr::stats::DropReason;
use dvr::tables::{DpPort, NodePorts};
use dvr::testkit::*;

fn udp4(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, ttl: u8) -> Vec<u8> {
    let ips = (src.parse().unwrap(), dst.parse().unwrap());
    udp4_min(src_mac, dst_mac, ips, (4000, 9), ttl)
}

fn arp_request(src_mac: [u8; 6], src: &str, target: &str) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    dvr::wire::arp::write_request(
        &mut f,
        &src_mac,
        src.parse().unwrap(),
        target.parse().unwrap(),
    );
    f
}

/// The ports of cn1's daemon, in order ([`dvr::testkit::node`]).
const PORTS: [&str; 4] = ["vm-a", "vm-b", "vm-e", "up"];

/// What cn1's daemon did with `input`, replayed once into port `in_port`,
/// beside what the pipeline does with the same frames on the same tables.
struct Replay {
    /// The frames out of each port.
    got: Vec<Vec<Vec<u8>>>,
    /// The final counters, after the workers stopped: the exact totals.
    last: serde_json::Value,
    /// `pipeline::process` of each frame: the frames out of each port and
    /// the drops by reason.
    want: Vec<Vec<Vec<u8>>>,
    want_drops: std::collections::BTreeMap<&'static str, u64>,
}

impl Replay {
    /// Checks that the daemon sent exactly the pipeline's frames out of each
    /// port and counted exactly its drops.
    fn check(&self) {
        for (i, p) in PORTS.iter().enumerate() {
            assert_eq!(self.got[i], self.want[i], "frames out of {p}");
        }
        for r in DropReason::ALL {
            assert_eq!(
                drops(&self.last, r.name()),
                self.want_drops.get(r.name()).copied().unwrap_or(0),
                "{}: {}",
                r.name(),
                self.last
            );
        }
    }
}

/// Runs cn1 (model [`model`], loaded from its state file at start) on pcap
/// ports, `input` replayed into `PORTS[in_port]`, every port writing what it
/// sends; stops it once it has received every frame.
fn replay(d: &std::path::Path, in_port: u16, input: &[Vec<u8>]) -> Replay {
    let m = model();
    let rx = d.join("in.pcap");
    dvr::pcap::write_file(&rx, input).unwrap();
    let state = d.join("state/model.json");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    m.save(&state).unwrap();
    let out = |p: &str| d.join(format!("out-{p}.pcap"));
    let mut cfg = format!(
        r#"vtep = "192.0.2.1"
dvr_mac = "{dvr}"
{head}
[control]
socket = "{d}/ctl.sock"
state_file = "{state}"
[[underlay.neighbors]]
ip = "192.0.2.2"
mac = "{cn2}"
"#,
        dvr = dvr::mac::MacAddr(DVR1),
        cn2 = dvr::mac::MacAddr(CN2_UL_MAC),
        head = node_head("cn1", &d.join("run")),
        d = d.display(),
        state = state.display(),
    );
    for (i, p) in PORTS.iter().enumerate() {
        let role = if *p == "up" { "underlay" } else { "vm" };
        cfg += &format!(
            "[[ports]]\nname = \"{p}\"\nrole = \"{role}\"\nkind = \"pcap\"\ntx_pcap = \"{}\"\n",
            out(p).display()
        );
        if i == in_port as usize {
            cfg += &format!("rx_pcap = \"{}\"\n", rx.display());
        }
    }
    let config = d.join("node.toml");
    std::fs::write(&config, cfg).unwrap();
    let mut dvr = Daemon::start(&config);
    let n = input.len() as u64;
    dvr.until(|v| v["ports"][in_port as usize]["rx_packets"].as_u64() == Some(n));
    // The ports' MACs as the daemon has them (the underlay's is the tunnels'
    // source).
    let ports: serde_json::Value = serde_json::from_str(&common::testbed::ctl(
        &d.join("ctl.sock"),
        &["--json", "show", "ports"],
    ))
    .unwrap();
    let last = dvr.stop();

    // The same frames through the pipeline, on the same tables.
    let np = NodePorts {
        ports: node()
            .ports
            .into_iter()
            .enumerate()
            .map(|(i, p)| DpPort {
                mac: ports["ports"][i]["mac"].as_str().unwrap().parse().unwrap(),
                ..p
            })
            .collect(),
        ..node()
    };
    assert_eq!(np.ports[UP as usize].name, "up");
    let mut c = Compiler::new(&m, np);
    let snap = c
        .set_vtep_mac(Ipv4Addr::from(VTEP2), dvr::mac::MacAddr(CN2_UL_MAC))
        .unwrap();
    let mut want: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PORTS.len()];
    let mut want_drops = std::collections::BTreeMap::<&str, u64>::new();
    let mut env = Env::new(|| 0, 1);
    for f in input {
        let mut buf = vec![0u8; 2048];
        buf[128..128 + f.len()].copy_from_slice(f);
        let mut fr = Frame::new(&mut buf, 128, f.len()).unwrap();
        match pipeline::process(&snap, &mut env, in_port, &mut fr, &mut NoTrace) {
            Disposition::Forward(p) => want[p as usize].push(fr.data().to_vec()),
            Disposition::Answered { port, why } => {
                want[port as usize].push(fr.data().to_vec());
                *want_drops.entry(why.name()).or_default() += 1;
            }
            Disposition::Drop(r) => *want_drops.entry(r.name()).or_default() += 1,
            Disposition::Punt(k) => *want_drops.entry(k.counter().name()).or_default() += 1,
            d @ Disposition::Flood { .. } => panic!("a routed capture floods nothing: {d:?}"),
        }
    }
    let got = PORTS
        .iter()
        .map(|p| dvr::pcap::read_file(&out(p)).unwrap())
        .collect();
    Replay {
        got,
        last,
        want,
        want_drops,
    }
}

#[test]
fn frames_out_and_counters_match_the_pipeline_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let m = model();
    let blue = m.routers["r1"]
        .interfaces
        .iter()
        .find(|i| i.subnet == "blue4")
        .unwrap()
        .mac
        .0;
    // What goes in on vm-a (port a: 10.1.0.10).
    let mut input = Vec::new();
    for _ in 0..3 {
        input.push(udp4(A_MAC, blue, "10.1.0.10", "10.2.0.10", 64)); // routed to b, local
    }
    input.push(udp4(A_MAC, blue, "10.1.0.10", "10.2.0.20", 64)); // routed to d on cn2 (GRE)
    input.push(udp4(A_MAC, C_MAC, "10.1.0.10", "10.1.0.20", 64)); // switched to c on cn2 (VXLAN)
    input.push(arp_request(A_MAC, "10.1.0.10", "10.1.0.1")); // the gateway, answered
    input.push(udp4(A_MAC, blue, "10.1.0.10", "10.2.0.10", 1)); // time exceeded
    input.push(udp4(A_MAC, blue, "10.1.0.10", "10.2.0.10", 1)); // time exceeded
    for _ in 0..3 {
        input.push(udp4(
            A_MAC,
            [0xfa, 0x16, 0x3e, 9, 9, 9],
            "10.1.0.10",
            "10.1.0.30",
            64,
        ));
    }
    input.push(udp4(A_MAC, blue, "10.1.0.66", "10.2.0.10", 64)); // spoofed source
    input.push(udp4(A_MAC, blue, "10.1.0.66", "10.2.0.10", 64));
    let mut bad = udp4(A_MAC, blue, "10.1.0.10", "10.2.0.10", 64);
    bad[24] ^= 0x55;
    input.push(bad);
    input.push(arp_request(A_MAC, "10.1.0.10", "10.1.0.77")); // unknown: never flooded

    let r = replay(dir.path(), VM_A, &input);
    r.check();
    let want = &r.want;
    assert_eq!(want[1].len(), 3, "three routed to b");
    assert_eq!(want[3].len(), 2, "one GRE, one VXLAN to cn2");
    assert_eq!(
        want[0].len(),
        3,
        "the ARP reply and two ICMP errors back to a"
    );
    // The worker's flow cache: the routed flows to b and d and the switched
    // one to c were cached; b's second and third frames, both TTL-1 frames
    // and the bad checksum found b's flow (the last three then took the full
    // pipeline, whose drops are counted above).
    let w = &r.last["workers"][0];
    assert_eq!(w["flow_hits"].as_u64(), Some(5), "{w}");
    assert_eq!(w["flow_inserts"].as_u64(), Some(3), "{w}");
    assert_eq!(w["decap_way"].as_u64(), Some(0), "{w}");
    assert_eq!(
        r.want_drops,
        [
            ("arp_unknown_target", 1),
            ("bad_ipv4_checksum", 1),
            ("port_security_ip", 2),
            ("ttl_expired", 2),
            ("unknown_dst_mac", 3),
        ]
        .into_iter()
        .collect()
    );
}

/// Frames cn2 sends cn1 over each overlay, for ports on cn1: each one the
/// workers' decap way takes (`fastpath::decap_way`) is counted as such
/// (`decap_way`), and the daemon sends exactly what the whole pipeline
/// would; the frames the way leaves to the pipeline are not counted.
#[test]
fn frames_from_another_host_take_the_decap_way() {
    let dir = tempfile::tempdir().unwrap();
    let m = model();
    let iface = |subnet: &str| {
        m.routers["r1"]
            .interfaces
            .iter()
            .find(|i| i.subnet == subnet)
            .unwrap()
            .mac
            .0
    };
    let from_cn2 = (CN2_UL_MAC, VTEP2);
    let to_cn1 = (UL_MAC, VTEP1);
    let vxlan = |inner: &[u8], vni| vxlan_frame(inner, vni, from_cn2, to_cn1);
    let gre = |inner: &[u8], key| gre_frame(inner, key, from_cn2, to_cn1);
    let mut input = Vec::new();
    // Switched on blue (VXLAN 101): c on cn2 to a.
    for _ in 0..3 {
        input.push(vxlan(
            &udp4(C_MAC, A_MAC, "10.1.0.20", "10.1.0.10", 64),
            101,
        ));
    }
    // Routed there: by cn2 from blue to red (GRE 202), c to b, with cn2's
    // DVR MAC as source.
    for _ in 0..2 {
        input.push(gre(&udp4(DVR2, B_MAC, "10.1.0.20", "10.2.0.10", 63), 202));
    }
    // On green (VLAN 303): f on cn2 to e, switched; c to e, routed by cn2.
    input.push(vlan_frame(
        &udp4(F_MAC, E_MAC, "10.3.0.20", "10.3.0.10", 64),
        303,
    ));
    input.push(vlan_frame(
        &udp4(DVR2, E_MAC, "10.1.0.20", "10.3.0.10", 63),
        303,
    ));
    // Left to the pipeline, which drops them: no such VNI, GRE key or VLAN.
    input.push(vxlan(
        &udp4(C_MAC, A_MAC, "10.1.0.20", "10.1.0.10", 64),
        999,
    ));
    input.push(gre(&udp4(DVR2, B_MAC, "10.1.0.20", "10.2.0.10", 63), 999));
    input.push(vlan_frame(
        &udp4(F_MAC, E_MAC, "10.3.0.20", "10.3.0.10", 64),
        999,
    ));

    let r = replay(dir.path(), UP, &input);
    r.check();
    let want = &r.want;
    assert_eq!(want[VM_A as usize].len(), 3, "three switched to a");
    assert_eq!(want[VM_B as usize].len(), 2, "two routed to b");
    assert_eq!(
        want[VM_E as usize].len(),
        2,
        "one switched, one routed to e"
    );
    // Routed there: the DVR MAC rewritten to the router interface's.
    assert_eq!(want[VM_B as usize][0][6..12], iface("red4"));
    assert_eq!(want[VM_E as usize][1][6..12], iface("green4"));
    assert_eq!(
        r.want_drops,
        [
            ("unknown_gre_key", 1),
            ("unknown_vlan", 1),
            ("unknown_vni", 1)
        ]
        .into_iter()
        .collect()
    );
    let w = &r.last["workers"][0];
    assert_eq!(w["decap_way"].as_u64(), Some(7), "{w}");
    assert_eq!(w["snat_way"].as_u64(), Some(0), "{w}");
}
