//! `dvr-ctl show sessions` against a real dvr-pmd whose SNAT sessions are
//! made by real packets: the network node `nn1` (`dvr_snat`) of
//! `dvr::testkit`'s north-south topology, plus a second router r2 whose
//! inside network overlaps r1's (10.1.0.0/24) and whose SNAT is on nn1 too,
//! and a router r3 without a gateway. Its underlay port (pcap) replays, once,
//! the frames compute nodes cn1 and cn2 tunnel to the routers' interfaces for
//! SNAT (VXLAN, from their DVR MACs); its external port (pcap) writes what
//! leaves translated.
//!
//! Checked: the sessions listed are exactly the flows sent (router, inside,
//! remote, protocol, state; one session per flow, a repeated packet makes
//! none, the same inside endpoint of two routers two sessions), their outside
//! address and port are the ones the translated frames left with, the
//! router filter, the counters `nat_sessions` / `nat_sessions_created` and
//! `snat_way` (every frame replayed took the SNAT way) of the JSON stats, and
//! the refusal of an unknown router.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{dvr_ctl, node_head, Daemon};
use dvr::mac::MacAddr;
use dvr::model::Model;
use dvr::testkit::*;
use dvr::wire::checksum::{csum_add, csum_fold, pseudo4};
use dvr::wire::{
    be16, ethernet, icmp4, ipv4, ipv4_at, proto, put16, put32, tcp, udp, TcpHeader, UdpHeader,
};
use serde_json::{json, Value};

/// cn2's underlay MAC is `CN2_UL_MAC`; cn1's is `UL_MAC`.
const R2_VNI: u32 = 111;

/// One flow sent for SNAT: which router's network (its interface MAC and
/// VNI), from which compute node, the inside and remote endpoints.
struct Flow {
    router: &'static str,
    from_cn2: bool,
    proto: u8,
    inside: (&'static str, u16),
    remote: (&'static str, u16),
}

/// An Ethernet / IPv4 frame with `l4` (its checksum computed here) and the
/// payload tag `tag` (8 bytes), TTL 64.
fn ip_frame(src_mac: [u8; 6], dst_mac: [u8; 6], f: &Flow, tag: u8) -> Vec<u8> {
    let src: Ipv4Addr = f.inside.0.parse().unwrap();
    let dst: Ipv4Addr = f.remote.0.parse().unwrap();
    let payload = [tag; 8];
    let mut l4 = match f.proto {
        proto::UDP => {
            let mut u = vec![0u8; udp::HEADER_LEN];
            let mut h = UdpHeader::new_checked(&mut u[..]).unwrap();
            h.set_src_port(f.inside.1);
            h.set_dst_port(f.remote.1);
            h.set_len((udp::HEADER_LEN + payload.len()) as u16);
            u
        }
        proto::TCP => {
            let mut t = vec![0u8; tcp::HEADER_LEN];
            let mut h = TcpHeader::new_checked(&mut t[..]).unwrap();
            h.set_src_port(f.inside.1);
            h.set_dst_port(f.remote.1);
            put32(&mut t, tcp::field::SEQ.start, 1000);
            t[12] = 5 << 4; // data offset: no options
            t[tcp::field::FLAGS] = tcp::SYN;
            put16(&mut t, 14, 64240); // window
            t
        }
        _ => {
            // Echo request, id = the inside "port".
            let mut i = vec![icmp4::types::ECHO_REQUEST, 0, 0, 0, 0, 0, 0, 1];
            put16(&mut i, icmp4::field::ECHO_ID.start, f.inside.1);
            i
        }
    };
    l4.extend_from_slice(&payload);
    let ck_at = match f.proto {
        proto::UDP => udp::field::CHECKSUM,
        proto::TCP => tcp::field::CHECKSUM,
        _ => icmp4::field::CHECKSUM,
    };
    let sum = if f.proto == proto::ICMP {
        csum_add(0, &l4)
    } else {
        csum_add(
            pseudo4(&src.octets(), &dst.octets(), l4.len() as u16, f.proto),
            &l4,
        )
    };
    put16(&mut l4, ck_at.start, csum_fold(sum));
    let mut v = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN];
    ethernet::write(&mut v, &dst_mac, &src_mac, ethernet::ETHERTYPE_IPV4);
    ipv4::write(
        &mut v[ethernet::HEADER_LEN..],
        (ipv4::HEADER_LEN + l4.len()) as u16,
        64,
        f.proto,
        src.octets(),
        dst.octets(),
    );
    v.extend_from_slice(&l4);
    v
}

/// `testkit::ns_model` with router r2 (network n2, VXLAN 111, subnet
/// 10.1.0.0/24 like r1's blue, port g of cn2 at 10.1.0.20 like c) whose
/// gateway is on ext with its SNAT on nn1, and router r3 with no gateway.
fn model() -> Model {
    let mut m = ns_model();
    m.apply(&changes(json!([
        {"op": "network_create", "name": "n2", "network_type": "vxlan", "segment": R2_VNI},
        {"op": "subnet_create", "name": "n2-4", "network": "n2", "cidr": "10.1.0.0/24"},
        {"op": "router_create", "name": "r2"},
        {"op": "router_add_subnet", "router": "r2", "subnet": "n2-4"},
        {"op": "router_set", "name": "r2", "external_gateway": {"network": "ext"}, "snat_host": "nn1"},
        port("g", "n2", [0xfa, 0x16, 0x3e, 0, 0, 0x20], "cn2", Some("vm-a"), &[("n2-4", "10.1.0.20")]),
        {"op": "router_create", "name": "r3"},
    ])))
    .expect("r2 and r3");
    m
}

fn interface_mac(m: &Model, router: &str, subnet: &str) -> [u8; 6] {
    m.routers[router]
        .interfaces
        .iter()
        .find(|i| i.subnet == subnet)
        .expect("interface")
        .mac
        .0
}

fn gateway_ip(m: &Model, router: &str) -> Ipv4Addr {
    m.routers[router]
        .gateway
        .as_ref()
        .expect("gateway")
        .ips
        .iter()
        .find_map(|f| match f.ip {
            IpAddr::V4(a) => Some(a),
            _ => None,
        })
        .expect("an IPv4 gateway address")
}

fn ctl(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(dvr_ctl())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sessions_json(socket: &Path, router: Option<&str>) -> Value {
    let mut args = vec!["--json", "show", "sessions"];
    args.extend(router);
    let (code, out, err) = ctl(socket, &args);
    assert_eq!(code, 0, "dvr-ctl {args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Each listed session as (router, protocol, inside, remote, state) → outside.
fn by_key(v: &Value) -> BTreeMap<(String, String, String, String, String), String> {
    let s = |e: &Value, k: &str| {
        e[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {e}"))
            .to_owned()
    };
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    s(e, "router"),
                    s(e, "protocol"),
                    s(e, "inside"),
                    s(e, "remote"),
                    s(e, "state"),
                ),
                s(e, "outside"),
            )
        })
        .collect()
}

/// The flows sent for SNAT. Inside addresses without floating IPs (ports a
/// and c have some: their traffic leaves by them on their own hosts, never
/// by SNAT).
fn snat_flows() -> [Flow; 6] {
    [
        Flow {
            router: "r1",
            from_cn2: false,
            proto: proto::UDP,
            inside: ("10.1.0.30", 5000),
            remote: ("198.51.100.7", 53),
        },
        // The same inside endpoint to another remote: its own session, the
        // same outside address and port (endpoint-independent mapping).
        Flow {
            router: "r1",
            from_cn2: false,
            proto: proto::UDP,
            inside: ("10.1.0.30", 5000),
            remote: ("198.51.100.8", 53),
        },
        Flow {
            router: "r1",
            from_cn2: true,
            proto: proto::UDP,
            inside: ("10.1.0.40", 5001),
            remote: ("198.51.100.7", 53),
        },
        Flow {
            router: "r1",
            from_cn2: true,
            proto: proto::TCP,
            inside: ("10.1.0.40", 41000),
            remote: ("198.51.100.7", 80),
        },
        Flow {
            router: "r1",
            from_cn2: false,
            proto: proto::ICMP,
            inside: ("10.1.0.30", 77),
            remote: ("198.51.100.7", 0),
        },
        // r2's network overlaps r1's: the same inside endpoint as flow 2,
        // another router, another session.
        Flow {
            router: "r2",
            from_cn2: true,
            proto: proto::UDP,
            inside: ("10.1.0.40", 5001),
            remote: ("198.51.100.7", 53),
        },
    ]
}

/// A dvr-pmd as nn1 that replays, once, `flows` tunnelled from the compute
/// nodes, and then flow 0's packet again (no new session), with `nat` as
/// its `[nat]` table. The daemon, its control socket, the capture
/// its external port writes, the frames replayed.
fn start_nn1(d: &Path, m: &Model, flows: &[Flow], nat: &str) -> (Daemon, PathBuf, PathBuf, u64) {
    let tunnelled = |i: usize, f: &Flow| {
        let (router_mac, vni) = match f.router {
            "r1" => (interface_mac(m, "r1", "blue4"), 101),
            _ => (interface_mac(m, "r2", "n2-4"), R2_VNI),
        };
        let (dvr_mac, ul) = if f.from_cn2 {
            (DVR2, (CN2_UL_MAC, VTEP2))
        } else {
            (DVR1, (UL_MAC, VTEP1))
        };
        let inner = ip_frame(dvr_mac, router_mac, f, i as u8);
        vxlan_frame(&inner, vni, ul, (NN1_UL_MAC, VTEP3))
    };
    let mut input: Vec<Vec<u8>> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| tunnelled(i, f))
        .collect();
    // Flow 0 again: no new session.
    input.push(tunnelled(0, &flows[0]));
    let in_up = d.join("in-up.pcap");
    dvr::pcap::write_file(&in_up, &input).unwrap();

    let state = d.join("state/model.json");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    m.save(&state).unwrap();
    let out_ext = d.join("out-ext.pcap");
    let socket = d.join("ctl.sock");
    let cfg = format!(
        r#"vtep = "192.0.2.3"
dvr_mac = "{dvr}"
{head}
[control]
socket = "{socket}"
state_file = "{state}"
[[underlay.neighbors]]
ip = "203.0.113.1"
mac = "{upstream}"
[[ports]]
name = "up"
role = "underlay"
kind = "pcap"
rx_pcap = "{in_up}"
tx_pcap = "{d}/out-up.pcap"
[[ports]]
name = "ext"
role = "external"
kind = "pcap"
tx_pcap = "{out_ext}"
"#,
        dvr = MacAddr(DVR3),
        head = node_head("nn1", &d.join("run"))
            .replace("agent_mode = \"dvr\"", "agent_mode = \"dvr_snat\""),
        socket = socket.display(),
        state = state.display(),
        upstream = MacAddr(UPSTREAM_MAC),
        in_up = in_up.display(),
        d = d.display(),
        out_ext = out_ext.display(),
    ) + "[nat]\n"
        + nat;
    let config = d.join("node.toml");
    std::fs::write(&config, cfg).unwrap();
    let dvr = Daemon::start(&config);
    (dvr, socket, out_ext, input.len() as u64)
}

#[test]
fn show_sessions_lists_exactly_the_flows_translated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = model();
    let flows = snat_flows();
    let (mut dvr, socket, out_ext, n) = start_nn1(d, &m, &flows, "");
    let stats = dvr.until(|v| {
        v["ports"][0]["rx_packets"].as_u64() == Some(n)
            && v["ports"][1]["tx_packets"].as_u64() >= Some(flows.len() as u64 + 1)
    });
    let w = &stats["workers"][0];
    assert_eq!(w["nat_sessions"], json!(flows.len()), "{stats}");
    assert_eq!(w["nat_sessions_created"], json!(flows.len()), "{stats}");

    let all = sessions_json(&socket, None);
    let r1 = sessions_json(&socket, Some("r1"));
    let r2 = sessions_json(&socket, Some("r2"));
    let r3 = sessions_json(&socket, Some("r3"));
    let (code, text, err) = ctl(&socket, &["show", "sessions"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ctl(&socket, &["show", "sessions", "r9"]);
    assert_eq!(code, 1, "an unknown router is refused: {err}");
    assert!(err.contains("no router named \"r9\""), "{err}");
    let final_stats = dvr.stop();

    // Exactly the flows, each once.
    let key = |f: &Flow| {
        let (proto, state) = match f.proto {
            proto::UDP => ("udp", "udp"),
            proto::TCP => ("tcp", "tcp-transitory"),
            _ => ("icmp", "icmp"),
        };
        (
            f.router.to_string(),
            proto.to_string(),
            format!("{}:{}", f.inside.0, f.inside.1),
            format!("{}:{}", f.remote.0, f.remote.1),
            state.to_string(),
        )
    };
    let want: Vec<_> = flows
        .iter()
        .map(key)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let got = by_key(&all);
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want, "{all}");
    assert_eq!(all["total"], json!(flows.len()), "{all}");
    assert_eq!(all["unanswered"], json!([]), "{all}");
    for e in all["entries"].as_array().unwrap() {
        let idle = e["idle_s"].as_f64().unwrap();
        assert!((0.0..60.0).contains(&idle), "idle seconds: {e}");
        assert_eq!(e["worker"], 0, "{e}");
    }
    assert_eq!(r1["total"], json!(5), "{r1}");
    assert!(by_key(&r1).keys().all(|k| k.0 == "r1"), "{r1}");
    assert_eq!(r2["total"], json!(1), "{r2}");
    assert!(by_key(&r2).keys().all(|k| k.0 == "r2"), "{r2}");
    assert_eq!(r3["total"], json!(0), "{r3}");
    assert_eq!(r3["entries"], json!([]), "{r3}");
    // For people: one line per session and the count.
    assert!(text.contains("6 sessions"), "{text}");
    assert!(
        text.contains("10.1.0.40:41000") && text.contains("tcp-transitory"),
        "{text}"
    );
    assert_eq!(
        final_stats["workers"][0]["nat_sessions_created"],
        json!(flows.len())
    );
    // Every frame replayed is a VXLAN frame to a router's SNAT here, with
    // nothing the SNAT way leaves to the whole pipeline: each one took it.
    assert_eq!(
        final_stats["workers"][0]["snat_way"],
        json!(n),
        "{final_stats}"
    );
    assert_eq!(
        final_stats["workers"][0]["decap_way"],
        json!(0),
        "{final_stats}"
    );

    // The outside address and port of each session is the source its
    // frames left the external port with (the payload tag names the flow).
    let outs = dvr::pcap::read_file(&out_ext).unwrap();
    let mut left: BTreeMap<u8, String> = BTreeMap::new();
    for f in outs
        .iter()
        .filter(|f| be16(f, ethernet::field::ETHERTYPE.start) == ethernet::ETHERTYPE_IPV4)
    {
        let ip = &f[ethernet::HEADER_LEN..];
        let l4 = &ip[ipv4::HEADER_LEN..];
        let (port, payload) = match ip[ipv4::field::PROTOCOL] {
            proto::UDP => (be16(l4, udp::field::SRC_PORT.start), &l4[udp::HEADER_LEN..]),
            proto::TCP => (be16(l4, tcp::field::SRC_PORT.start), &l4[tcp::HEADER_LEN..]),
            _ => (
                be16(l4, icmp4::field::ECHO_ID.start),
                &l4[icmp4::HEADER_LEN..],
            ),
        };
        let src = format!("{}:{port}", ipv4_at(ip, ipv4::field::SRC_ADDR.start));
        if let Some(old) = left.insert(payload[0], src.clone()) {
            assert_eq!(old, src, "flow {} left with two sources", payload[0]);
        }
    }
    assert_eq!(left.len(), flows.len(), "every flow left translated");
    for (i, f) in flows.iter().enumerate() {
        let outside = &got[&key(f)];
        assert_eq!(&left[&(i as u8)], outside, "flow {i}");
        let gw = gateway_ip(&m, f.router);
        assert!(
            outside.starts_with(&format!("{gw}:")),
            "flow {i} of {} leaves from its gateway {gw}: {outside}",
            f.router
        );
    }
    assert_eq!(left[&0], left[&1], "one endpoint, one mapping");
}

/// Sessions expire when no packet comes after them too: an idle worker sweeps
/// its table (bursts only sweep it when packets come). Timeouts of 0.3 s; the
/// `nat_sessions` counter and `show sessions` go to zero with no packet
/// received meanwhile.
#[test]
fn idle_sessions_expire_without_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = model();
    let flows = snat_flows();
    let timeouts = "udp_timeout = 0.3\nicmp_timeout = 0.3\ntcp_transitory_timeout = 0.3\n";
    let (mut dvr, socket, _, n) = start_nn1(d, &m, &flows, timeouts);
    dvr.until(|v| {
        v["ports"][0]["rx_packets"].as_u64() == Some(n)
            && v["workers"][0]["nat_sessions_created"] == json!(flows.len())
    });
    let v = dvr.until(|v| v["workers"][0]["nat_sessions"] == json!(0));
    assert_eq!(
        v["ports"][0]["rx_packets"],
        json!(n),
        "no packet since: {v}"
    );
    let all = sessions_json(&socket, None);
    assert_eq!(all["total"], json!(0), "{all}");
    assert_eq!(all["entries"], json!([]), "{all}");
    dvr.stop();
}
