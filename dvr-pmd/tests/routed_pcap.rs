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
use dvr::pipeline::{self, Env, NoTrace};
use dvr::pkt::{self, Frame};
use dvr::snapshot::{Compiler, DpPort, NodePorts};
use dvr::stats::DropReason;
use dvr::testkit::*;

fn udp4(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, ttl: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    pkt::write_eth(&mut f, &dst_mac, &src_mac, pkt::ETHERTYPE_IPV4);
    let (s, d): (Ipv4Addr, Ipv4Addr) = (src.parse().unwrap(), dst.parse().unwrap());
    pkt::write_ipv4(
        &mut f[14..],
        46,
        ttl,
        pkt::PROTO_UDP,
        s.octets(),
        d.octets(),
    );
    pkt::put16(&mut f, 34, 4000);
    pkt::put16(&mut f, 36, 9);
    pkt::put16(&mut f, 38, 26);
    f
}

fn arp_request(src_mac: [u8; 6], src: &str, target: &str) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    pipeline::write_arp_request(
        &mut f,
        dvr::mac::MacAddr(src_mac),
        src.parse().unwrap(),
        target.parse().unwrap(),
    );
    f
}

#[test]
fn frames_out_and_counters_match_the_pipeline_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
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
    let in_a = d.join("in-a.pcap");
    dvr::pcap::write_file(&in_a, &input).unwrap();

    let state = d.join("state/model.json");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    m.save(&state).unwrap();
    let out = |p: &str| d.join(format!("out-{p}.pcap"));
    let cfg = format!(
        r#"vtep = "192.0.2.1"
dvr_mac = "{dvr}"
{head}
[control]
socket = "{d}/ctl.sock"
state_file = "{state}"
[[underlay.neighbors]]
ip = "192.0.2.2"
mac = "{cn2}"
[[ports]]
name = "vm-a"
role = "vm"
kind = "pcap"
rx_pcap = "{in_a}"
tx_pcap = "{oa}"
[[ports]]
name = "vm-b"
role = "vm"
kind = "pcap"
tx_pcap = "{ob}"
[[ports]]
name = "vm-e"
role = "vm"
kind = "pcap"
tx_pcap = "{oe}"
[[ports]]
name = "up"
role = "underlay"
kind = "pcap"
tx_pcap = "{ou}"
"#,
        dvr = dvr::mac::MacAddr(DVR1),
        cn2 = dvr::mac::MacAddr(CN2_UL_MAC),
        head = node_head("cn1", &d.join("run")),
        d = d.display(),
        state = state.display(),
        in_a = in_a.display(),
        oa = out("vm-a").display(),
        ob = out("vm-b").display(),
        oe = out("vm-e").display(),
        ou = out("up").display(),
    );
    let config = d.join("node.toml");
    std::fs::write(&config, cfg).unwrap();
    let mut dvr = Daemon::start(&config);
    let n = input.len() as u64;
    let last = dvr.until(|v| v["ports"][0]["rx_packets"].as_u64() == Some(n));
    // Set at the end of the last burst, just after the port counters.
    let flows = dvr.until(|v| v["workers"][0]["flow_inserts"].as_u64() == Some(3));
    // The ports' MACs as the daemon has them (the underlay's is the tunnels'
    // source).
    let status = common::dvr_ctl();
    let ports: serde_json::Value = serde_json::from_slice(
        &std::process::Command::new(status)
            .args([
                "--socket",
                &d.join("ctl.sock").display().to_string(),
                "--json",
                "show",
                "ports",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    dvr.stop();

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
    assert_eq!(np.ports[3].name, "up");
    let mut c = Compiler::new(&m, np);
    let snap = c
        .set_vtep_mac(Ipv4Addr::from(VTEP2), dvr::mac::MacAddr(CN2_UL_MAC))
        .unwrap();
    let mut want: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 4];
    let mut want_drops = std::collections::BTreeMap::<&str, u64>::new();
    let mut env = Env::new(|| 0, 1);
    for f in &input {
        let mut buf = vec![0u8; 2048];
        buf[128..128 + f.len()].copy_from_slice(f);
        let mut fr = Frame::new(&mut buf, 128, f.len()).unwrap();
        env.noted = None;
        match pipeline::process(&snap, &mut env, VM_A, &mut fr, &mut NoTrace) {
            Ok(p) => want[p as usize].push(fr.data().to_vec()),
            Err(r) => *want_drops.entry(r.name()).or_default() += 1,
        }
        if let Some(r) = env.noted {
            *want_drops.entry(r.name()).or_default() += 1;
        }
    }
    for (i, p) in ["vm-a", "vm-b", "vm-e", "up"].iter().enumerate() {
        let got = dvr::pcap::read_file(&out(p)).unwrap();
        assert_eq!(got, want[i], "frames out of {p}");
    }
    assert_eq!(want[1].len(), 3, "three routed to b");
    assert_eq!(want[3].len(), 2, "one GRE, one VXLAN to cn2");
    assert_eq!(
        want[0].len(),
        3,
        "the ARP reply and two ICMP errors back to a"
    );
    for r in DropReason::ALL {
        assert_eq!(
            drops(&last, r.name()),
            want_drops.get(r.name()).copied().unwrap_or(0),
            "{}: {last}",
            r.name()
        );
    }
    // The worker's flow cache: the routed flows to b and d and the switched
    // one to c were cached; b's second and third frames, both TTL-1 frames
    // and the bad checksum found b's flow (the last three then took the full
    // pipeline, whose drops are counted above).
    let w = &flows["workers"][0];
    assert_eq!(w["flow_hits"].as_u64(), Some(5), "{w}");
    assert_eq!(
        want_drops,
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
