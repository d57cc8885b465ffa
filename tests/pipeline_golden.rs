//! Golden tests of the pipeline (docs/BEHAVIOUR.md sections 1, 2 and 7): crafted
//! frames in, the exact frames out compared byte for byte, or the exact drop
//! reason (the worker counts exactly that reason, once). The expected frames
//! are built with `etherparse`, an implementation independent of ours.
//!
//! The node under test is `cn1` (VTEP 192.0.2.1); `cn2` (VTEP 192.0.2.2) is the
//! other host. One distributed router `r1` joins three networks: `blue` (VXLAN
//! 101: 10.1.0.0/24 and 2001:db8:1::/64), `red` (GRE key 202: 10.2.0.0/24 and
//! 2001:db8:2::/64) and `green` (VLAN 303: 10.3.0.0/24).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dvr::compile::Compiler;
use dvr::mac::MacAddr;
use dvr::model::Model;
use dvr::pipeline::{self, Disposition as D, Env, NoTrace, Notes, PuntKind};
use dvr::pkt::Frame;
use dvr::stats::DropReason as R;
use dvr::tables::Snapshot;
use etherparse::{
    icmpv4, icmpv6, ArpEthIpv4Packet, ArpOperation, Icmpv4Type, Icmpv6Type, IpNumber, PacketBuilder,
};
use serde_json::json;

use dvr::testkit::*;
use dvr::wire::checksum::{checksum, csum_add, csum_fold, pseudo6};

struct Bed {
    m: Model,
    snap: std::sync::Arc<Snapshot>,
}

impl Bed {
    fn new() -> Bed {
        Self::from_model(model())
    }

    fn from_model(m: Model) -> Bed {
        let mut c = Compiler::new(&m, node());
        let snap = c
            .set_vtep_mac(Ipv4Addr::from(VTEP2), MacAddr(CN2_UL_MAC))
            .expect("a new VTEP MAC publishes");
        Bed { m, snap }
    }

    /// A router interface's (IP, MAC) on subnet `sn`.
    fn gw(&self, sn: &str) -> (IpAddr, [u8; 6]) {
        let i = self.m.routers["r1"]
            .interfaces
            .iter()
            .find(|i| i.subnet == sn)
            .expect("interface");
        (i.ip, i.mac.0)
    }

    fn run_env(&self, env: &mut Env, in_port: u16, frame: &[u8]) -> (D, Vec<u8>) {
        let mut buf = vec![0u8; 128 + frame.len() + 256];
        buf[128..128 + frame.len()].copy_from_slice(frame);
        let mut f = Frame::new(&mut buf, 128, frame.len()).unwrap();
        let v = pipeline::process(&self.snap, env, in_port, &mut f, &mut NoTrace);
        // The tracer sees the same decision.
        let mut buf2 = vec![0u8; 128 + frame.len() + 256];
        buf2[128..128 + frame.len()].copy_from_slice(frame);
        let mut f2 = Frame::new(&mut buf2, 128, frame.len()).unwrap();
        let mut notes = Notes::default();
        let v2 = pipeline::process(&self.snap, &mut env_at(0), in_port, &mut f2, &mut notes);
        if v != D::Drop(R::IcmpRateLimited) {
            assert_eq!(v, v2, "trace and workers agree; notes {:?}", notes.0);
        }
        (v, f.data().to_vec())
    }

    fn run(&self, in_port: u16, frame: &[u8]) -> (D, Vec<u8>) {
        let mut env = env_at(0);
        self.run_env(&mut env, in_port, frame)
    }

    /// Runs a frame that must be dropped for `why`; the frame must not come out.
    fn drops(&self, in_port: u16, frame: &[u8], why: R) {
        let (v, _) = self.run(in_port, frame);
        assert_eq!(v, D::Drop(why), "drop reason");
    }
}

fn env_at(_t: u64) -> Env {
    Env::new(|| 0, 1_000_000)
}

/// Whether a frame was flooded.
fn floods(v: D) -> bool {
    matches!(v, D::Flood { .. })
}

/// Whether a frame leaves (forwarded, answered or flooded).
fn leaves(v: D) -> bool {
    matches!(v, D::Forward(_) | D::Answered { .. } | D::Flood { .. })
}

fn v4(ip: IpAddr) -> [u8; 4] {
    match ip {
        IpAddr::V4(a) => a.octets(),
        _ => panic!("not v4"),
    }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(a) => a.octets(),
        _ => panic!("not v6"),
    }
}

const PAYLOAD: &[u8] = b"dvr golden payload 0123456789";

fn udp4(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, ttl: u8) -> Vec<u8> {
    udp4_carrying(src_mac, dst_mac, src, dst, ttl, PAYLOAD)
}

/// [`udp4`] with `payload`.
fn udp4_carrying(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    udp4_packet(src_mac, dst_mac, src, dst, (40000, 5001), ttl, payload)
}

fn udp6(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, hop: u8) -> Vec<u8> {
    udp6_packet(src_mac, dst_mac, src, dst, (40000, 5001), hop, PAYLOAD)
}

/// An outer VXLAN (or GRE) frame from cn1 to cn2 around `inner`, with the
/// UDP source port `sport`.
fn vxlan_to_cn2(inner: &[u8], vni: u32, sport: u16) -> Vec<u8> {
    let mut hdr = vec![0x08, 0, 0, 0];
    hdr.extend_from_slice(&(vni << 8).to_be_bytes());
    hdr.extend_from_slice(inner);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(UL_MAC, CN2_UL_MAC)
        .ipv4(VTEP1, VTEP2, 64)
        .udp(sport, 4789)
        .write(&mut v, &hdr)
        .unwrap();
    // RFC 7348: the outer UDP checksum is sent as zero.
    v[40] = 0;
    v[41] = 0;
    v
}

fn gre(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    key: u32,
    inner: &[u8],
) -> Vec<u8> {
    let mut g = vec![0x20, 0x00, 0x65, 0x58];
    g.extend_from_slice(&key.to_be_bytes());
    g.extend_from_slice(inner);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .write(&mut v, IpNumber(47), &g)
        .unwrap();
    v
}

/// `frame` as routed: MACs rewritten, TTL (hop limit) one less, checksum fixed.
fn routed4(frame: &[u8], src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
    let mut v = frame.to_vec();
    v[0..6].copy_from_slice(&dst_mac);
    v[6..12].copy_from_slice(&src_mac);
    v[22] -= 1;
    v[24] = 0;
    v[25] = 0;
    let c = checksum(&v[14..34]);
    v[24..26].copy_from_slice(&c.to_be_bytes());
    v
}

fn routed6(frame: &[u8], src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
    let mut v = frame.to_vec();
    v[0..6].copy_from_slice(&dst_mac);
    v[6..12].copy_from_slice(&src_mac);
    v[21] -= 1;
    v
}

fn sport_of(out: &[u8]) -> u16 {
    u16::from_be_bytes([out[34], out[35]])
}

// ---- Section 1: switching inside a network ------------------------------------

#[test]
fn switches_to_a_local_port_unchanged() {
    let b = Bed::new();
    // e (green, vm-e) to f is remote; a to c is remote: add a local pair by
    // sending from a to itself's network neighbour: use the same-host port e↔e2.
    let mut m = model();
    m.apply(&changes(json!([port(
        "a2",
        "blue",
        [0xfa, 0x16, 0x3e, 0, 0, 0xa2],
        "cn1",
        Some("vm-b"),
        &[("blue4", "10.1.0.11")]
    )])))
    .unwrap();
    let _ = b;
    // vm-b now carries both b (red) and a2 (blue): the first by name serves it.
    let b = Bed::from_model(m);
    let f = udp4(
        A_MAC,
        [0xfa, 0x16, 0x3e, 0, 0, 0xa2],
        "10.1.0.10",
        "10.1.0.11",
        64,
    );
    let (v, out) = b.run(VM_A, &f);
    assert_eq!(v, D::Forward(VM_B));
    assert_eq!(out, f);
}

#[test]
fn switches_to_a_remote_port_over_vxlan() {
    let b = Bed::new();
    let f = udp4(A_MAC, C_MAC, "10.1.0.10", "10.1.0.20", 64);
    let (v, out) = b.run(VM_A, &f);
    assert_eq!(v, D::Forward(UP));
    let sport = sport_of(&out);
    assert!(
        sport >= 0xc000,
        "source port from the flow hash, in the dynamic range"
    );
    assert_eq!(out, vxlan_to_cn2(&f, 101, sport));
    // The same flow always gets the same port; another flow (most likely) another.
    assert_eq!(sport_of(&b.run(VM_A, &f).1), sport);
    let ports: std::collections::HashSet<u16> = (0..16)
        .map(|i| {
            let mut g = f.clone();
            g[34] = i; // UDP source port high byte
            sport_of(&b.run(VM_A, &g).1)
        })
        .collect();
    assert!(ports.len() > 8, "entropy: {ports:?}");
}

#[test]
fn switches_to_a_remote_port_over_gre_and_vlan() {
    let b = Bed::new();
    let f = udp4(B_MAC, D_MAC, "10.2.0.10", "10.2.0.20", 64);
    let (v, out) = b.run(VM_B, &f);
    assert_eq!(v, D::Forward(UP));
    assert_eq!(out, gre(UL_MAC, CN2_UL_MAC, VTEP1, VTEP2, 202, &f));

    let f = udp4(E_MAC, F_MAC, "10.3.0.10", "10.3.0.20", 64);
    let (v, out) = b.run(VM_E, &f);
    assert_eq!(v, D::Forward(UP));
    assert_eq!(out, vlan_frame(&f, 303));
}

#[test]
fn port_security_checks_mac_and_ip_and_allows_cidr_pairs() {
    let b = Bed::new();
    b.drops(
        VM_A,
        &udp4(
            [0xfa, 0x16, 0x3e, 1, 2, 3],
            C_MAC,
            "10.1.0.10",
            "10.1.0.20",
            64,
        ),
        R::PortSecurityMac,
    );
    b.drops(
        VM_A,
        &udp4(A_MAC, C_MAC, "10.1.0.66", "10.1.0.20", 64),
        R::PortSecurityIp,
    );
    // The pair 10.1.99.0/24 with its own MAC: any address inside, with that MAC.
    let f = udp4(PAIR_MAC, C_MAC, "10.1.99.7", "10.1.0.20", 64);
    assert_eq!(b.run(VM_A, &f).0, D::Forward(UP));
    b.drops(
        VM_A,
        &udp4(PAIR_MAC, C_MAC, "10.1.98.7", "10.1.0.20", 64),
        R::PortSecurityIp,
    );
    b.drops(
        VM_A,
        &udp4(A_MAC, C_MAC, "10.1.99.7", "10.1.0.20", 64),
        R::PortSecurityIp,
    );
}

fn arp_request(src_mac: [u8; 6], src_ip: &str, target: &str) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, [0xff; 6])
        .arp(
            ArpEthIpv4Packet {
                operation: ArpOperation::REQUEST,
                sender_mac: src_mac,
                sender_ipv4: ip4(src_ip),
                target_mac: [0; 6],
                target_ipv4: ip4(target),
            }
            .into(),
        )
        .write(&mut v)
        .unwrap();
    v
}

fn arp_reply(from_mac: [u8; 6], from_ip: [u8; 4], to_mac: [u8; 6], to_ip: &str) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(from_mac, to_mac)
        .arp(
            ArpEthIpv4Packet {
                operation: ArpOperation::REPLY,
                sender_mac: from_mac,
                sender_ipv4: from_ip,
                target_mac: to_mac,
                target_ipv4: ip4(to_ip),
            }
            .into(),
        )
        .write(&mut v)
        .unwrap();
    v
}

#[test]
fn arp_responder_answers_gateways_and_known_ports_never_floods() {
    let b = Bed::new();
    let (gw, gw_mac) = b.gw("blue4");
    let (v, out) = b.run(VM_A, &arp_request(A_MAC, "10.1.0.10", &gw.to_string()));
    assert_eq!(v, D::Forward(VM_A));
    assert_eq!(out, arp_reply(gw_mac, v4(gw), A_MAC, "10.1.0.10"));
    // A port on another host: answered here, not sent into a tunnel.
    let (v, out) = b.run(VM_A, &arp_request(A_MAC, "10.1.0.10", "10.1.0.20"));
    assert_eq!(v, D::Forward(VM_A));
    assert_eq!(out, arp_reply(C_MAC, ip4("10.1.0.20"), A_MAC, "10.1.0.10"));
    b.drops(
        VM_A,
        &arp_request(A_MAC, "10.1.0.10", "10.1.0.77"),
        R::ArpUnknownTarget,
    );
    // An address of another network is unknown in this one.
    b.drops(
        VM_A,
        &arp_request(A_MAC, "10.1.0.10", "10.2.0.20"),
        R::ArpUnknownTarget,
    );
    let mut short = arp_request(A_MAC, "10.1.0.10", "10.1.0.1");
    short.truncate(30);
    b.drops(VM_A, &short, R::MalformedArp);
}

#[test]
fn a_disabled_router_answers_no_arp_and_routes_nothing() {
    let mut m = model();
    m.apply(&changes(
        json!([{"op": "router_set", "name": "r1", "admin_state_up": false}]),
    ))
    .unwrap();
    let b = Bed::from_model(m);
    let (gw, gw_mac) = b.gw("blue4");
    b.drops(
        VM_A,
        &arp_request(A_MAC, "10.1.0.10", &gw.to_string()),
        R::ArpUnknownTarget,
    );
    b.drops(
        VM_A,
        &udp4(A_MAC, gw_mac, "10.1.0.10", "10.2.0.10", 64),
        R::UnknownDstMac,
    );
}

fn ns(src_mac: [u8; 6], src: &str, target: &str) -> Vec<u8> {
    let t = ip6(target);
    let mut dst = ip6("ff02::1:ff00:0");
    dst[13..].copy_from_slice(&t[13..]);
    let mut body = t.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&src_mac);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, [0x33, 0x33, 0xff, t[13], t[14], t[15]])
        .ipv6(ip6(src), dst, 255)
        .icmpv6(Icmpv6Type::NeighborSolicitation)
        .write(&mut v, &body)
        .unwrap();
    v
}

fn na(from_mac: [u8; 6], target: [u8; 16], to_mac: [u8; 6], to: &str, router: bool) -> Vec<u8> {
    let mut body = target.to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&from_mac);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(from_mac, to_mac)
        .ipv6(target, ip6(to), 255)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(
            icmpv6::NeighborAdvertisementHeader {
                router,
                solicited: true,
                r#override: true,
            },
        ))
        .write(&mut v, &body)
        .unwrap();
    v
}

#[test]
fn nd_responder_answers_gateways_and_known_ports() {
    let b = Bed::new();
    let (gw, gw_mac) = b.gw("blue6");
    let (v, out) = b.run(VM_A, &ns(A_MAC, "2001:db8:1::10", &gw.to_string()));
    assert_eq!(v, D::Forward(VM_A));
    assert_eq!(out, na(gw_mac, v6(gw), A_MAC, "2001:db8:1::10", true));
    b.drops(
        VM_A,
        &ns(A_MAC, "2001:db8:1::10", "2001:db8:1::77"),
        R::NdUnknownTarget,
    );
    // Bad ND: a hop limit other than 255, a broken checksum, a zero-length option.
    let mut bad = ns(A_MAC, "2001:db8:1::10", &gw.to_string());
    bad[21] = 64;
    b.drops(VM_A, &bad, R::MalformedNd);
    let mut bad = ns(A_MAC, "2001:db8:1::10", &gw.to_string());
    bad[57] ^= 0xff;
    b.drops(VM_A, &bad, R::MalformedNd);
    let mut bad = ns(A_MAC, "2001:db8:1::10", &gw.to_string());
    bad[79] = 0;
    b.drops(VM_A, &bad, R::MalformedNd);
}

// ---- Section 2: East-West routing -------------------------------------------

#[test]
fn routes_v4_and_v6_to_a_local_port() {
    let b = Bed::new();
    let (_, blue_gw) = b.gw("blue4");
    let (_, red_gw) = b.gw("red4");
    let f = udp4(A_MAC, blue_gw, "10.1.0.10", "10.2.0.10", 64);
    let (v, out) = b.run(VM_A, &f);
    assert_eq!(v, D::Forward(VM_B));
    assert_eq!(out, routed4(&f, red_gw, B_MAC));
    let (_, red6_gw) = b.gw("red6");
    let f = udp6(A_MAC, blue_gw, "2001:db8:1::10", "2001:db8:2::10", 64);
    let (v, out) = b.run(VM_A, &f);
    assert_eq!(v, D::Forward(VM_B));
    assert_eq!(out, routed6(&f, red6_gw, B_MAC));
}

#[test]
fn routes_to_another_host_with_the_dvr_mac_inside_the_tunnel() {
    let b = Bed::new();
    let (_, blue_gw) = b.gw("blue4");
    // To d on cn2 (red: GRE 202): the inner source is cn1's DVR MAC, never the
    // gateway MAC.
    let f = udp4(A_MAC, blue_gw, "10.1.0.10", "10.2.0.20", 64);
    let (v, out) = b.run(VM_A, &f);
    assert_eq!(v, D::Forward(UP));
    assert_eq!(
        out,
        gre(
            UL_MAC,
            CN2_UL_MAC,
            VTEP1,
            VTEP2,
            202,
            &routed4(&f, DVR1, D_MAC)
        )
    );
    // To c on cn2 (blue: VXLAN 101) from b on red.
    let (_, red_gw) = b.gw("red4");
    let f = udp4(B_MAC, red_gw, "10.2.0.10", "10.1.0.20", 64);
    let (v, out) = b.run(VM_B, &f);
    assert_eq!(v, D::Forward(UP));
    assert_eq!(
        out,
        vxlan_to_cn2(&routed4(&f, DVR1, C_MAC), 101, sport_of(&out))
    );
    // IPv6, distributed too (beyond Neutron).
    let (_, blue6_gw) = b.gw("blue6");
    let f = udp6(A_MAC, blue6_gw, "2001:db8:1::10", "2001:db8:2::20", 64);
    let (v, out) = b.run(VM_A, &f);
    assert_eq!(v, D::Forward(UP));
    assert_eq!(
        out,
        gre(
            UL_MAC,
            CN2_UL_MAC,
            VTEP1,
            VTEP2,
            202,
            &routed6(&f, DVR1, D_MAC)
        )
    );
    // VLAN: the routed frame goes out tagged, DVR MAC as source.
    let f = udp4(A_MAC, blue_gw, "10.1.0.10", "10.3.0.20", 64);
    let (v, out) = b.run(VM_A, &f);
    assert_eq!(v, D::Forward(UP));
    assert_eq!(out, vlan_frame(&routed4(&f, DVR1, F_MAC), 303));
}

#[test]
fn decapsulates_and_rewrites_the_dvr_mac_to_the_gateway_mac() {
    let b = Bed::new();
    let (_, blue_gw) = b.gw("blue4");
    // cn2 routed c → a: inner source is cn2's DVR MAC.
    let inner = udp4(DVR2, A_MAC, "10.2.0.20", "10.1.0.10", 63);
    let (v, out) = b.run(UP, &vxlan_from_cn2(&inner, 101));
    assert_eq!(v, D::Forward(VM_A));
    let mut want = inner.clone();
    want[6..12].copy_from_slice(&blue_gw);
    assert_eq!(out, want);
    // Switched (not routed) from c: delivered as is.
    let inner = udp4(C_MAC, A_MAC, "10.1.0.20", "10.1.0.10", 64);
    let (v, out) = b.run(UP, &vxlan_from_cn2(&inner, 101));
    assert_eq!((v, out), (D::Forward(VM_A), inner.clone()));
    // GRE and VLAN.
    let (_, red_gw) = b.gw("red4");
    let inner = udp4(DVR2, B_MAC, "10.1.0.20", "10.2.0.10", 63);
    let (v, out) = b.run(UP, &gre(CN2_UL_MAC, UL_MAC, VTEP2, VTEP1, 202, &inner));
    assert_eq!(v, D::Forward(VM_B));
    let mut want = inner.clone();
    want[6..12].copy_from_slice(&red_gw);
    assert_eq!(out, want);
    let inner = udp4(F_MAC, E_MAC, "10.3.0.20", "10.3.0.10", 64);
    let (v, out) = b.run(UP, &vlan_frame(&inner, 303));
    assert_eq!((v, out), (D::Forward(VM_E), inner));
}

/// A frame another host routed is delivered from the router interface of the
/// subnet that holds its destination, on a VXLAN network with one IPv4 subnet
/// and on one with two; one outside them is dropped. The workers' decap way
/// takes the frames it delivers, byte for byte as the whole pipeline.
#[test]
fn decap_rewrites_to_the_interface_of_the_destination_subnet() {
    let one = Bed::new();
    let mut m = model();
    m.apply(&changes(json!([
        {"op": "subnet_create", "name": "blue4b", "network": "blue", "cidr": "10.9.0.0/24"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "blue4b"},
    ])))
    .expect("a second IPv4 subnet on blue");
    let two = Bed::from_model(m);
    let cases = [
        (&one, "10.1.0.10", Some(one.gw("blue4").1)),
        (&one, "10.9.0.10", None),
        (&two, "10.1.0.10", Some(two.gw("blue4").1)),
        (&two, "10.9.0.10", Some(two.gw("blue4b").1)),
        (&two, "10.7.0.10", None),
    ];
    for (b, dst, gw) in cases {
        let inner = udp4(DVR2, A_MAC, "10.2.0.20", dst, 63);
        let f = vxlan_from_cn2(&inner, 101);
        let got = check_pipeline(&b.snap, UP, &f);
        let (_, taken) = run_decap_way(&mut env_at(0), &b.snap, UP, &f);
        match gw {
            Some(gw) => {
                let mut want = inner.clone();
                want[6..12].copy_from_slice(&gw);
                assert_eq!(got, (D::Forward(VM_A), want), "to {dst}");
                assert!(taken, "to {dst}: the decap way");
            }
            None => {
                assert_eq!(got.0, D::Drop(R::DvrMacNoInterface), "to {dst}");
                assert!(!taken, "to {dst}: the whole pipeline");
            }
        }
    }
}

/// Frames from another host on GRE and VLAN networks take the workers'
/// decap way, as VXLAN ones do, and leave it byte for byte as the whole
/// pipeline delivers them: routed there (DVR MAC rewritten to the interface
/// of the destination's subnet, IPv4 and IPv6) or switched; padding after
/// the outer IPv4 packet trimmed, a VLAN frame's kept. Unknown segments are
/// left to the whole pipeline, which drops them.
#[test]
fn gre_and_vlan_frames_from_another_host_take_the_decap_way() {
    let b = Bed::new();
    let (_, red4) = b.gw("red4");
    let (_, red6) = b.gw("red6");
    let (_, green4) = b.gw("green4");
    let gre_in = |key: u32, inner: &[u8]| gre(CN2_UL_MAC, UL_MAC, VTEP2, VTEP1, key, inner);
    let with_src = |f: &[u8], mac: [u8; 6]| {
        let mut v = f.to_vec();
        v[6..12].copy_from_slice(&mac);
        v
    };
    let padded = |f: Vec<u8>| [f, vec![0xee; 6]].concat();
    let red_routed4 = udp4(DVR2, B_MAC, "10.1.0.20", "10.2.0.10", 63);
    let red_routed6 = udp6(DVR2, B_MAC, "2001:db8:1::20", "2001:db8:2::10", 63);
    let red_switched = udp4(D_MAC, B_MAC, "10.2.0.20", "10.2.0.10", 64);
    let green_routed = udp4(DVR2, E_MAC, "10.1.0.20", "10.3.0.10", 63);
    let green_switched = udp4(F_MAC, E_MAC, "10.3.0.20", "10.3.0.10", 64);
    let cases = [
        (
            gre_in(202, &red_routed4),
            VM_B,
            with_src(&red_routed4, red4),
        ),
        (
            gre_in(202, &red_routed6),
            VM_B,
            with_src(&red_routed6, red6),
        ),
        (gre_in(202, &red_switched), VM_B, red_switched.clone()),
        (
            padded(gre_in(202, &red_switched)),
            VM_B,
            red_switched.clone(),
        ),
        (
            vlan_frame(&green_routed, 303),
            VM_E,
            with_src(&green_routed, green4),
        ),
        (
            vlan_frame(&green_switched, 303),
            VM_E,
            green_switched.clone(),
        ),
        (
            vlan_frame(&padded(green_switched.clone()), 303),
            VM_E,
            padded(green_switched.clone()),
        ),
    ];
    for (i, (f, port, want)) in cases.iter().enumerate() {
        let got = check_pipeline(&b.snap, UP, f);
        assert_eq!(got, (D::Forward(*port), want.clone()), "case {i}");
        let mut env = env_at(0);
        for pass in ["found", "remembered"] {
            let (way, taken) = run_decap_way(&mut env, &b.snap, UP, f);
            assert!(taken, "case {i} ({pass}): the decap way");
            assert_eq!(way, got, "case {i} ({pass})");
        }
    }
    for (f, why) in [
        (gre_in(4242, &red_switched), R::UnknownGreKey),
        (vlan_frame(&green_switched, 999), R::UnknownVlan),
    ] {
        assert_eq!(check_pipeline(&b.snap, UP, &f).0, D::Drop(why));
        assert!(!run_decap_way(&mut env_at(0), &b.snap, UP, &f).1);
    }
}

#[test]
fn decap_checks_vtep_vni_key_and_never_forwards_tunnel_to_tunnel() {
    let b = Bed::new();
    let inner = udp4(C_MAC, A_MAC, "10.1.0.20", "10.1.0.10", 64);
    b.drops(UP, &vxlan_from_cn2(&inner, 999), R::UnknownVni);
    let mut other = vxlan_from_cn2(&inner, 101);
    // Outer destination 192.0.2.9: not this VTEP (checksum fixed up).
    other[33] = 9;
    other[24] = 0;
    other[25] = 0;
    let c = checksum(&other[14..34]);
    other[24..26].copy_from_slice(&c.to_be_bytes());
    b.drops(UP, &other, R::NotForThisVtep);
    b.drops(
        UP,
        &gre(CN2_UL_MAC, UL_MAC, [192, 0, 2, 77], VTEP1, 202, &inner),
        R::UnknownVtepSource,
    );
    b.drops(
        UP,
        &gre(CN2_UL_MAC, UL_MAC, VTEP2, VTEP1, 4242, &inner),
        R::UnknownGreKey,
    );
    b.drops(UP, &vlan_frame(&inner, 999), R::UnknownVlan);
    // To a port that is not here (d lives on cn2): never sent back into a tunnel.
    let inner = udp4(B_MAC, D_MAC, "10.2.0.10", "10.2.0.20", 64);
    b.drops(
        UP,
        &gre(CN2_UL_MAC, UL_MAC, VTEP2, VTEP1, 202, &inner),
        R::NotLocalAfterDecap,
    );
    let mut bad = vxlan_from_cn2(&udp4(C_MAC, A_MAC, "10.1.0.20", "10.1.0.10", 64), 101);
    bad[42] = 0; // no I flag
    b.drops(UP, &bad, R::BadVxlan);
    b.drops(
        UP,
        &udp4(CN2_UL_MAC, UL_MAC, "192.0.2.2", "192.0.2.1", 64),
        R::NotATunnel,
    );
}

#[test]
fn answers_arp_for_its_vtep_on_the_underlay() {
    let b = Bed::new();
    let (v, out) = b.run(UP, &arp_request(CN2_UL_MAC, "192.0.2.2", "192.0.2.1"));
    assert_eq!(v, D::Forward(UP));
    assert_eq!(out, arp_reply(UL_MAC, VTEP1, CN2_UL_MAC, "192.0.2.2"));
    b.drops(
        UP,
        &arp_request(CN2_UL_MAC, "192.0.2.2", "192.0.2.50"),
        R::ArpUnknownTarget,
    );
    let r = arp_reply(CN2_UL_MAC, VTEP2, UL_MAC, "192.0.2.1");
    assert_eq!(
        dvr::wire::arp::reply_sender(&r).map(|(ip, mac)| (ip, MacAddr(mac))),
        Some((Ipv4Addr::from(VTEP2), MacAddr(CN2_UL_MAC)))
    );
    let (v, _) = b.run(UP, &r);
    assert_eq!(v, D::Punt(PuntKind::ArpReply));
    assert_eq!(PuntKind::ArpReply.counter(), R::ArpReplyConsumed);
}

fn echo4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    reply: bool,
) -> Vec<u8> {
    echo4_packet(src_mac, dst_mac, (src, dst), ttl, reply, b"ping")
}

#[test]
fn the_router_answers_echo_on_its_addresses() {
    let b = Bed::new();
    let (gw, gw_mac) = b.gw("blue4");
    let (v, out) = b.run(
        VM_A,
        &echo4(A_MAC, gw_mac, ip4("10.1.0.10"), v4(gw), 64, false),
    );
    assert_eq!(v, D::Forward(VM_A));
    assert_eq!(
        out,
        echo4(gw_mac, A_MAC, v4(gw), ip4("10.1.0.10"), 64, true)
    );
    // Another interface of the same router, through this one.
    let (red, _) = b.gw("red4");
    let (v, out) = b.run(
        VM_A,
        &echo4(A_MAC, gw_mac, ip4("10.1.0.10"), v4(red), 64, false),
    );
    assert_eq!(v, D::Forward(VM_A));
    assert_eq!(
        out,
        echo4(gw_mac, A_MAC, v4(red), ip4("10.1.0.10"), 64, true)
    );
    let (gw6, gw6_mac) = b.gw("blue6");
    let mut req = Vec::new();
    PacketBuilder::ethernet2(A_MAC, gw6_mac)
        .ipv6(ip6("2001:db8:1::10"), v6(gw6), 64)
        .icmpv6_echo_request(9, 3)
        .write(&mut req, b"ping6")
        .unwrap();
    let mut want = Vec::new();
    PacketBuilder::ethernet2(gw6_mac, A_MAC)
        .ipv6(v6(gw6), ip6("2001:db8:1::10"), 64)
        .icmpv6_echo_reply(9, 3)
        .write(&mut want, b"ping6")
        .unwrap();
    let (v, out) = b.run(VM_A, &req);
    assert_eq!((v, out), (D::Forward(VM_A), want));
    b.drops(
        VM_A,
        &udp4(A_MAC, gw_mac, "10.1.0.10", &gw.to_string(), 64),
        R::ToRouterUnsupported,
    );
}

/// The ICMP error `ty` the router (interface on `sn`) sends to a about `orig`.
fn icmp4_err(b: &Bed, sn: &str, orig: &[u8], ty: Icmpv4Type) -> Vec<u8> {
    icmp4_err_to(b, sn, A_MAC, "10.1.0.10", orig, ty)
}

fn icmp4_err_to(b: &Bed, sn: &str, mac: [u8; 6], ip: &str, orig: &[u8], ty: Icmpv4Type) -> Vec<u8> {
    let (gw, gw_mac) = b.gw(sn);
    let quote = &orig[14..orig.len().min(14 + 576 - 28)];
    let mut v = Vec::new();
    PacketBuilder::ethernet2(gw_mac, mac)
        .ipv4(v4(gw), ip4(ip), 64)
        .icmpv4(ty)
        .write(&mut v, quote)
        .unwrap();
    v
}

fn icmp6_err(b: &Bed, orig: &[u8], ty: Icmpv6Type) -> Vec<u8> {
    icmp6_err_to(b, "blue6", A_MAC, "2001:db8:1::10", orig, ty)
}

fn icmp6_err_to(b: &Bed, sn: &str, mac: [u8; 6], ip: &str, orig: &[u8], ty: Icmpv6Type) -> Vec<u8> {
    let (gw, gw_mac) = b.gw(sn);
    let quote = &orig[14..orig.len().min(14 + 576 - 48)];
    let mut v = Vec::new();
    PacketBuilder::ethernet2(gw_mac, mac)
        .ipv6(v6(gw), ip6(ip), 64)
        .icmpv6(ty)
        .write(&mut v, quote)
        .unwrap();
    v
}

#[test]
fn ttl_expiry_no_route_and_mtu_get_icmp_errors() {
    let b = Bed::new();
    let (_, gw_mac) = b.gw("blue4");
    let f = udp4(A_MAC, gw_mac, "10.1.0.10", "10.2.0.10", 1);
    let (v, out) = b.run(VM_A, &f);
    assert_eq!(
        v,
        D::Answered {
            port: VM_A,
            why: R::TtlExpired
        }
    );
    let te = Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit);
    assert_eq!(out, icmp4_err(&b, "blue4", &f, te));
    let f = udp4(A_MAC, gw_mac, "10.1.0.10", "172.16.0.1", 64);
    let (v, out) = b.run(VM_A, &f);
    assert_eq!(
        v,
        D::Answered {
            port: VM_A,
            why: R::NoRoute
        }
    );
    let nu = Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::Network);
    assert_eq!(out, icmp4_err(&b, "blue4", &f, nu));
    // Red's MTU is the GRE default (below 1,480), green's 1,500: a 1,480-byte
    // packet with DF from e on green to red needs fragmenting; the quote is cut
    // at 576 bytes in all.
    let red_mtu = b.m.networks["red"].mtu;
    assert!(red_mtu < 1480);
    let (_, green_gw) = b.gw("green4");
    let mut big = Vec::new();
    PacketBuilder::ethernet2(E_MAC, green_gw)
        .ipv4(ip4("10.3.0.10"), ip4("10.2.0.10"), 64)
        .udp(1, 2)
        .write(&mut big, &vec![0x5a; 1480 - 28])
        .unwrap();
    let (v, out) = b.run(VM_E, &big);
    assert_eq!(
        v,
        D::Answered {
            port: VM_E,
            why: R::FragmentationNeeded
        }
    );
    let fnd =
        Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: red_mtu,
        });
    assert_eq!(
        out,
        icmp4_err_to(&b, "green4", E_MAC, "10.3.0.10", &big, fnd)
    );
    assert_eq!(out.len(), 14 + 576);
    // Without DF the router does not fragment: counted.
    big[20] = 0;
    big[24] = 0;
    big[25] = 0;
    let c = checksum(&big[14..34]);
    big[24..26].copy_from_slice(&c.to_be_bytes());
    b.drops(VM_E, &big, R::MtuExceeded);
    // IPv6: hop limit, no route, packet too big.
    let (_, gw6_mac) = b.gw("blue6");
    let f = udp6(A_MAC, gw6_mac, "2001:db8:1::10", "2001:db8:2::10", 1);
    let (v, out) = b.run(VM_A, &f);
    assert_eq!(
        v,
        D::Answered {
            port: VM_A,
            why: R::TtlExpired
        }
    );
    assert_eq!(
        out,
        icmp6_err(
            &b,
            &f,
            Icmpv6Type::TimeExceeded(icmpv6::TimeExceededCode::HopLimitExceeded)
        )
    );
    let f = udp6(A_MAC, gw6_mac, "2001:db8:1::10", "2001:db8:77::1", 64);
    let (v, out) = b.run(VM_A, &f);
    assert_eq!(
        v,
        D::Answered {
            port: VM_A,
            why: R::NoRoute
        }
    );
    assert_eq!(
        out,
        icmp6_err(
            &b,
            &f,
            Icmpv6Type::DestinationUnreachable(icmpv6::DestUnreachableCode::NoRoute)
        )
    );
    let (_, green6_gw) = b.gw("green6");
    let mut big = Vec::new();
    PacketBuilder::ethernet2(E_MAC, green6_gw)
        .ipv6(ip6("2001:db8:3::10"), ip6("2001:db8:2::10"), 64)
        .udp(1, 2)
        .write(&mut big, &vec![0x5a; 1480 - 48])
        .unwrap();
    let (v, out) = b.run(VM_E, &big);
    assert_eq!(
        v,
        D::Answered {
            port: VM_E,
            why: R::FragmentationNeeded
        }
    );
    let ptb = Icmpv6Type::PacketTooBig {
        mtu: red_mtu as u32,
    };
    assert_eq!(
        out,
        icmp6_err_to(&b, "green6", E_MAC, "2001:db8:3::10", &big, ptb)
    );
}

#[test]
fn icmp_errors_are_rate_limited_and_never_about_icmp_errors() {
    let b = Bed::new();
    let (_, gw_mac) = b.gw("blue4");
    let f = udp4(A_MAC, gw_mac, "10.1.0.10", "10.2.0.10", 1);
    let mut env = env_at(0); // a clock that never moves
    let mut sent = 0;
    let mut limited = 0;
    for _ in 0..80 {
        match b.run_env(&mut env, VM_A, &f).0 {
            v if leaves(v) => sent += 1,
            D::Drop(R::IcmpRateLimited) => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        (sent, limited),
        (
            pipeline::ICMP_BURST as usize,
            80 - pipeline::ICMP_BURST as usize
        )
    );
    // An ICMP error with TTL 1 gets no error back.
    let te = Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit);
    let mut e = Vec::new();
    PacketBuilder::ethernet2(A_MAC, gw_mac)
        .ipv4(ip4("10.1.0.10"), ip4("10.2.0.10"), 1)
        .icmpv4(te)
        .write(&mut e, &[0; 28])
        .unwrap();
    b.drops(VM_A, &e, R::IcmpErrorNotSent);
}

#[test]
fn malformed_and_martian_packets_are_dropped_with_reasons() {
    let b = Bed::new();
    let (_, gw_mac) = b.gw("blue4");
    let good = udp4(A_MAC, gw_mac, "10.1.0.10", "10.2.0.10", 64);
    b.drops(VM_A, &good[..13], R::RuntFrame);
    b.drops(VM_A, &good[..30], R::MalformedIpv4);
    let mut long = good.clone();
    long[16..18].copy_from_slice(&2000u16.to_be_bytes()); // longer than the frame
    b.drops(VM_A, &long, R::MalformedIpv4);
    let mut bad = good.clone();
    bad[24] ^= 1;
    b.drops(VM_A, &bad, R::BadIpv4Checksum);
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    b.drops(VM_A, &ihl, R::MalformedIpv4);
    let mut mc = good.clone();
    mc[6] |= 1;
    b.drops(VM_A, &mc, R::MulticastSrcMac);
    b.drops(VM_A, &vlan_frame(&good, 5), R::VlanFromVm);
    let m = udp4(A_MAC, gw_mac, "10.1.0.10", "224.0.0.5", 64);
    b.drops(VM_A, &m, R::MartianDestination);
    let mut v6 = udp6(A_MAC, gw_mac, "2001:db8:1::10", "2001:db8:2::10", 64);
    v6.truncate(50);
    b.drops(VM_A, &v6, R::MalformedIpv6);
    // Padding beyond the IP length is trimmed: a 60-byte minimum frame of a
    // 20+8+4-byte packet comes out at its real length.
    let mut small = Vec::new();
    PacketBuilder::ethernet2(A_MAC, gw_mac)
        .ipv4(ip4("10.1.0.10"), ip4("10.2.0.10"), 64)
        .udp(1, 2)
        .write(&mut small, b"tiny")
        .unwrap();
    let mut padded = small.clone();
    padded.resize(60, 0);
    let (_, red_gw) = b.gw("red4");
    let (v, out) = b.run(VM_A, &padded);
    assert_eq!((v, out), (D::Forward(VM_B), routed4(&small, red_gw, B_MAC)));
    b.drops(
        VM_A,
        &udp4(
            A_MAC,
            [0xfa, 0x16, 0x3e, 9, 9, 9],
            "10.1.0.10",
            "10.1.0.20",
            64,
        ),
        R::UnknownDstMac,
    );
}

#[test]
fn unresolved_vtep_and_missing_dvr_mac_are_counted() {
    let m = model();
    let c = Compiler::new(&m, node());
    let snap = c.current().clone();
    let f = udp4(A_MAC, C_MAC, "10.1.0.10", "10.1.0.20", 64);
    let mut buf = vec![0u8; 512];
    buf[128..128 + f.len()].copy_from_slice(&f);
    let mut fr = Frame::new(&mut buf, 128, f.len()).unwrap();
    let v = pipeline::process(&snap, &mut env_at(0), VM_A, &mut fr, &mut NoTrace);
    assert_eq!(v, D::Drop(R::VtepUnresolved));
    assert_eq!(c.unresolved_vteps(), vec![Ipv4Addr::from(VTEP2)]);
}

#[test]
fn broadcasts_flood_to_local_ports_and_by_head_end_replication() {
    // A second local port on blue (a2 on vm-b) and the remote c on cn2.
    let mut m = model();
    m.apply(&changes(json!([port(
        "a2",
        "blue",
        [0xfa, 0x16, 0x3e, 0, 0, 0xa2],
        "cn1",
        Some("vm-b"),
        &[("blue4", "10.1.0.11")]
    )])))
    .unwrap();
    let b = Bed::from_model(m);
    // A broadcast from a (not ARP, not ND, not DHCP: that is answered
    // here, tests/dhcp_golden.rs): a NetBIOS name query.
    let mut f = Vec::new();
    PacketBuilder::ethernet2(A_MAC, [0xff; 6])
        .ipv4(ip4("10.1.0.10"), ip4("255.255.255.255"), 64)
        .udp(137, 137)
        .write(&mut f, b"discover")
        .unwrap();
    let mut env = env_at(0);
    let (v, out) = b.run_env(&mut env, VM_A, &f);
    assert!(floods(v));
    assert_eq!(out, f, "the original is untouched");
    let fl = env.flood_of(v).expect("flood set");
    let targets: Vec<_> = pipeline::flood_targets(&b.snap, fl, VM_A).collect();
    assert_eq!(
        targets,
        vec![pipeline::Target::Port(VM_B), pipeline::Target::Host(0)],
        "the other local port and cn2, never the ingress port"
    );
    // The copy to cn2: VXLAN 101.
    let mut buf = vec![0u8; 512];
    buf[128..128 + f.len()].copy_from_slice(&f);
    let mut fr = Frame::new(&mut buf, 128, f.len()).unwrap();
    assert_eq!(pipeline::encap_copy(&b.snap, fl.net, 0, &mut fr), Ok(UP));
    let out = fr.data().to_vec();
    assert_eq!(out, vxlan_to_cn2(&f, 101, sport_of(&out)));
    // From the overlay, a broadcast goes to local ports only.
    let mut env = env_at(0);
    let (v, _) = b.run_env(&mut env, UP, &vxlan_from_cn2(&f, 101));
    assert!(floods(v));
    let fl = env.flood_of(v).unwrap();
    assert!(!fl.tunnels);
    let targets: Vec<_> = pipeline::flood_targets(&b.snap, fl, UP).collect();
    assert_eq!(
        targets,
        vec![pipeline::Target::Port(VM_A), pipeline::Target::Port(VM_B)]
    );
    // Gratuitous ARP and IPv6 multicast other than NS are flooded too.
    let garp = arp_reply(A_MAC, ip4("10.1.0.10"), [0xff; 6], "10.1.0.10");
    assert!(floods(b.run(VM_A, &garp).0));
}

#[test]
fn only_frames_into_the_overlay_must_fit_the_network_mtu() {
    let mut m = model();
    m.apply(&changes(json!([port(
        "a2",
        "blue",
        [0xfa, 0x16, 0x3e, 0, 0, 0xa2],
        "cn1",
        Some("vm-b"),
        &[("blue4", "10.1.0.11")]
    )])))
    .unwrap();
    let b = Bed::from_model(m);
    let big = |dst: [u8; 6], to: &str| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(A_MAC, dst)
            .ipv4(ip4("10.1.0.10"), ip4(to), 64)
            .udp(1, 2)
            .write(&mut v, &[7u8; 1500 - 28])
            .unwrap();
        v
    };
    // 1,500 bytes of IP on blue (MTU 1,450 for VXLAN): fine between local ports,
    // refused into the tunnel.
    let f = big([0xfa, 0x16, 0x3e, 0, 0, 0xa2], "10.1.0.11");
    assert_eq!(b.run(VM_A, &f).0, D::Forward(VM_B));
    b.drops(VM_A, &big(C_MAC, "10.1.0.20"), R::MtuExceeded);
}

#[test]
fn floating_ips_and_snat_settings_are_compiled_per_router() {
    use dvr::tables::Dest;
    let mut m = model();
    let mut c = Compiler::new(&m, node());
    let ext = json!([
        {"op": "host_set", "name": "nn1", "agent_mode": "dvr_snat", "vtep": "192.0.2.3"},
        {"op": "network_create", "name": "ext", "network_type": "flat", "external": true},
        {"op": "subnet_create", "name": "ext4", "network": "ext", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1"},
        {"op": "router_set", "name": "r1", "external_gateway": {"network": "ext"}, "snat_host": "nn1"},
        {"op": "floating_ip_create", "network": "ext", "address": "203.0.113.50", "port": "a"},
        {"op": "floating_ip_create", "network": "ext", "address": "203.0.113.51", "port": "c"},
    ]);
    let applied = m.apply(&changes(ext)).unwrap();
    let inc = c.update(&m, &applied);
    let full = Compiler::new(&m, node());
    for (s, comp) in [(&inc, &c), (full.current(), &full)] {
        let r = s.router(comp, "r1").unwrap();
        let a = &r.fips[&ip4("10.1.0.10").into()];
        assert_eq!(
            (a.floating, a.dest),
            ("203.0.113.50".parse().unwrap(), Dest::Local(VM_A))
        );
        let cc = &r.fips[&ip4("10.1.0.20").into()];
        assert_eq!(
            (cc.floating, cc.dest),
            ("203.0.113.51".parse().unwrap(), Dest::Remote(0))
        );
        let snat = r.snat.as_ref().unwrap();
        assert!(snat.enable_snat);
        assert_eq!((snat.host.as_deref(), snat.here), (Some("nn1"), false));
        assert_eq!(snat.network, "ext");
    }
    // Unset one: gone from the next snapshot.
    let applied = m
        .apply(&changes(
            json!([{"op": "floating_ip_unset", "address": "203.0.113.50"}]),
        ))
        .unwrap();
    let inc = c.update(&m, &applied);
    let r = inc.router(&c, "r1").unwrap();
    assert_eq!(r.fips.len(), 1);
    // A floating IP change recompiles the router's floating IPs only; the
    // result equals a full compile, and the routing tables are shared.
    let full = Compiler::new(&m, node());
    assert_eq!(r.fips, full.current().router(&full, "r1").unwrap().fips);
    let applied = m
        .apply(&changes(
            json!([{"op": "floating_ip_set", "address": "203.0.113.50", "port": "a"}]),
        ))
        .unwrap();
    let before = inc.router(&c, "r1").unwrap().fwd4.clone();
    let inc = c.update(&m, &applied);
    let r = inc.router(&c, "r1").unwrap();
    assert_eq!(r.fips.len(), 2);
    assert!(std::sync::Arc::ptr_eq(&before, &r.fwd4));
    let full = Compiler::new(&m, node());
    assert_eq!(r.fips, full.current().router(&full, "r1").unwrap().fips);
}

/// Runs `frame` on `b` in the worker environment `env` (which keeps its flow
/// cache from frame to frame); gives the verdict, the frame out (empty when
/// dropped).
fn run_warm(b: &Bed, env: &mut Env, in_port: u16, frame: &[u8]) -> (D, Vec<u8>) {
    let (v, out) = b.run_env(env, in_port, frame);
    (v, if leaves(v) { out } else { Vec::new() })
}

#[test]
fn a_routed_flow_is_cached_and_each_frame_still_checked() {
    let b = Bed::new();
    let (_, blue_gw) = b.gw("blue4");
    let (_, red_gw) = b.gw("red4");
    let mut env = env_at(0);
    // A local neighbour, one on cn2 over GRE and one over VXLAN: the second
    // frame of each flow comes from the cache, byte for byte the same.
    let local = udp4(A_MAC, blue_gw, "10.1.0.10", "10.2.0.10", 64);
    let gre_f = udp4(A_MAC, blue_gw, "10.1.0.10", "10.2.0.20", 64);
    let vx_f = udp4(B_MAC, red_gw, "10.2.0.10", "10.1.0.20", 64);
    let flows = [(VM_A, &local), (VM_A, &gre_f), (VM_B, &vx_f)];
    let mut first = Vec::new();
    for (i, (port, f)) in flows.iter().enumerate() {
        let r = run_warm(&b, &mut env, *port, f);
        assert_eq!(env.flows.hits, 0);
        assert_eq!(env.flows.inserts, i as u64 + 1);
        first.push(r);
    }
    assert_eq!(first[0], (D::Forward(VM_B), routed4(&local, red_gw, B_MAC)));
    let gre_out = gre(
        UL_MAC,
        CN2_UL_MAC,
        VTEP1,
        VTEP2,
        202,
        &routed4(&gre_f, DVR1, D_MAC),
    );
    assert_eq!(first[1], (D::Forward(UP), gre_out));
    let vx_out = vxlan_to_cn2(&routed4(&vx_f, DVR1, C_MAC), 101, sport_of(&first[2].1));
    assert_eq!(first[2], (D::Forward(UP), vx_out));
    for (i, (port, f)) in flows.iter().enumerate() {
        assert_eq!(run_warm(&b, &mut env, *port, f), first[i]);
        assert_eq!(env.flows.hits, i as u64 + 1);
    }
    let hits = env.flows.hits;

    // What is checked per frame is still checked on a cached flow (the key
    // is the same: TTL, checksum and length are not in it).
    let mut ttl1 = udp4(A_MAC, blue_gw, "10.1.0.10", "10.2.0.10", 1);
    let (v, out) = run_warm(&b, &mut env, VM_A, &ttl1);
    assert_eq!(
        v,
        D::Answered {
            port: VM_A,
            why: R::TtlExpired
        }
    );
    let te = Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit);
    assert_eq!(out, icmp4_err(&b, "blue4", &ttl1, te));
    ttl1[24] ^= 1;
    assert_eq!(
        run_warm(&b, &mut env, VM_A, &ttl1),
        (D::Drop(R::BadIpv4Checksum), vec![])
    );
    let mut short = local.clone();
    short[16..18].copy_from_slice(&2000u16.to_be_bytes());
    assert_eq!(
        run_warm(&b, &mut env, VM_A, &short),
        (D::Drop(R::MalformedIpv4), vec![])
    );
    // Over the overlay's MTU with DF: fragmentation needed, as uncached.
    let red_mtu = b.m.networks["red"].mtu;
    let over_red = vec![0x5a; red_mtu as usize + 1 - 28];
    let big = udp4_carrying(A_MAC, blue_gw, "10.1.0.10", "10.2.0.20", 64, &over_red);
    let (v, _) = run_warm(&b, &mut env, VM_A, &big);
    assert_eq!(
        v,
        D::Answered {
            port: VM_A,
            why: R::FragmentationNeeded
        }
    );
    // Padding beyond the IP length is trimmed on the cached way too.
    let mut padded = local.clone();
    padded.extend_from_slice(&[0xee; 7]);
    assert_eq!(run_warm(&b, &mut env, VM_A, &padded), first[0]);
    // Each of those five frames found its flow in the cache.
    assert_eq!(env.flows.hits, hits + 5);

    // Another snapshot: every entry is stale. With the router disabled the
    // flow that was cached is dropped as the tables now say.
    let mut m = model();
    m.apply(&changes(
        json!([{"op": "router_set", "name": "r1", "admin_state_up": false}]),
    ))
    .unwrap();
    let off = Bed::from_model(m);
    assert_eq!(
        run_warm(&off, &mut env, VM_A, &local),
        (D::Drop(R::UnknownDstMac), vec![])
    );
    // Switched IPv4 flows are cached too (to C on cn2 over VXLAN), and a
    // frame too big for the overlay is still refused.
    let sw = udp4(A_MAC, C_MAC, "10.1.0.10", "10.1.0.20", 64);
    let (v, out) = run_warm(&b, &mut env, VM_A, &sw);
    assert_eq!(v, D::Forward(UP));
    let sw_out = vxlan_to_cn2(&sw, 101, sport_of(&out));
    assert_eq!(out, sw_out);
    let hits = env.flows.hits;
    assert_eq!(run_warm(&b, &mut env, VM_A, &sw), (D::Forward(UP), sw_out));
    assert_eq!(env.flows.hits, hits + 1);
    let blue_mtu = b.m.networks["blue"].mtu;
    let over_blue = vec![0x5a; blue_mtu as usize + 1 - 28];
    let sw_big = udp4_carrying(A_MAC, C_MAC, "10.1.0.10", "10.1.0.20", 64, &over_blue);
    assert_eq!(
        run_warm(&b, &mut env, VM_A, &sw_big),
        (D::Drop(R::MtuExceeded), vec![])
    );
    // ARP is never cached (its key does not hold what port security reads).
    let inserts = env.flows.inserts;
    let (gw, _) = b.gw("blue4");
    let arp = arp_request(A_MAC, "10.1.0.10", &gw.to_string());
    assert!(leaves(run_warm(&b, &mut env, VM_A, &arp).0));
    assert_eq!(env.flows.inserts, inserts);

    let again = Bed::new();
    let hits = env.flows.hits;
    assert_eq!(run_warm(&again, &mut env, VM_A, &local), first[0]);
    assert_eq!(env.flows.hits, hits, "a new snapshot starts cold");
    assert_eq!(run_warm(&again, &mut env, VM_A, &local), first[0]);
    assert_eq!(env.flows.hits, hits + 1);
}

// ---- Port security as Neutron's anti-spoofing and default rules -------------

/// The test topology with port b's port security disabled.
fn b_insecure() -> Bed {
    let mut m = model();
    m.apply(&changes(
        json!([{"op": "port_set", "name": "b", "port_security": false}]),
    ))
    .expect("b has no allowed pairs");
    Bed::from_model(m)
}

/// The verdict of `frame` in on `in_port`, after [`check_pipeline`]'s checks
/// (trace, flow cache, the workers' ways all agree).
fn verdict(b: &Bed, in_port: u16, frame: &[u8]) -> D {
    check_pipeline(&b.snap, in_port, frame).0
}

/// The EUI-64 link-local address of `mac`.
fn link_local(mac: [u8; 6]) -> String {
    let m = mac;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 2, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
    .to_string()
}

/// An ICMPv6 message of type `ty` (code 0, bytes 5 to 8 zero) with `body`.
fn icmp6_msg(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    ty: u8,
    body: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(ip6(src), ip6(dst), 255)
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: ty,
            code_u8: 0,
            bytes5to8: [0; 4],
        })
        .write(&mut v, body)
        .unwrap();
    v
}

/// `frame` (IPv6) with an 8-byte hop-by-hop options header (PadN) before
/// its upper layer.
fn with_hop_by_hop(frame: &[u8]) -> Vec<u8> {
    let nh = frame[20];
    let mut v = frame[..54].to_vec();
    v[20] = 0;
    let plen = u16::from_be_bytes([v[18], v[19]]) + 8;
    v[18..20].copy_from_slice(&plen.to_be_bytes());
    v.extend_from_slice(&[nh, 0, 1, 4, 0, 0, 0, 0]);
    v.extend_from_slice(&frame[54..]);
    v
}

#[test]
fn port_security_drops_router_advertisements_and_redirects() {
    let b = Bed::new();
    let all_nodes = [0x33, 0x33, 0, 0, 0, 1];
    // A router advertisement with a prefix information option, as radvd
    // sends it: today flooded to every VM of the network.
    let mut pio = vec![
        3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0,
    ];
    pio.extend_from_slice(&ip6("2001:db8:1::"));
    let ra_body = [&[0u8; 8][..], &pio].concat();
    let ra = |mac, src: &str| icmp6_msg(mac, all_nodes, src, "ff02::1", 134, &ra_body);
    let ll_a = link_local(A_MAC);
    b.drops(VM_A, &ra(A_MAC, &ll_a), R::PortSecurityRa);
    assert_eq!(
        verdict(&b, VM_A, &ra(A_MAC, &ll_a)),
        D::Drop(R::PortSecurityRa)
    );
    b.drops(VM_A, &ra(A_MAC, "2001:db8:1::10"), R::PortSecurityRa);
    // Behind a hop-by-hop options header too.
    b.drops(VM_A, &with_hop_by_hop(&ra(A_MAC, &ll_a)), R::PortSecurityRa);
    // A redirect to c (on cn2): today sent into the tunnel.
    let mut redirect_body = ip6("2001:db8:1::1").to_vec();
    redirect_body.extend_from_slice(&ip6("2001:db8:2::20"));
    let redirect = icmp6_msg(A_MAC, C_MAC, &ll_a, &link_local(C_MAC), 137, &redirect_body);
    assert_eq!(verdict(&b, VM_A, &redirect), D::Drop(R::PortSecurityRa));
    // A router solicitation and an echo request still pass.
    let rs = icmp6_msg(
        A_MAC,
        [0x33, 0x33, 0, 0, 0, 2],
        &ll_a,
        "ff02::2",
        133,
        &[0; 4],
    );
    assert!(floods(verdict(&b, VM_A, &rs)));
    // Port security disabled: as before.
    let b = b_insecure();
    let ll_b = link_local(B_MAC);
    assert!(floods(verdict(&b, VM_B, &ra(B_MAC, &ll_b))));
    let redirect = icmp6_msg(B_MAC, D_MAC, &ll_b, "fe80::1", 137, &redirect_body);
    assert_eq!(verdict(&b, VM_B, &redirect), D::Forward(UP));
}

fn dhcp4(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, ports: (u16, u16)) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(ip4(src), ip4(dst), 64)
        .udp(ports.0, ports.1)
        .write(&mut v, b"offer")
        .unwrap();
    v
}

fn dhcp6(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, ports: (u16, u16)) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(ip6(src), ip6(dst), 64)
        .udp(ports.0, ports.1)
        .write(&mut v, b"advertise")
        .unwrap();
    v
}

#[test]
fn port_security_drops_dhcp_server_messages_even_on_a_cached_flow() {
    let b = Bed::new();
    let bcast = [0xff; 6];
    // An offer broadcast, and one unicast to c on cn2.
    let offer = dhcp4(A_MAC, bcast, "10.1.0.10", "255.255.255.255", (67, 68));
    assert_eq!(verdict(&b, VM_A, &offer), D::Drop(R::PortSecurityDhcp));
    let offer_c = dhcp4(A_MAC, C_MAC, "10.1.0.10", "10.1.0.20", (67, 68));
    assert_eq!(verdict(&b, VM_A, &offer_c), D::Drop(R::PortSecurityDhcp));
    // DHCPv6 advertise / reply, multicast and unicast.
    let ll_a = link_local(A_MAC);
    let adv = dhcp6(A_MAC, C_MAC, &ll_a, &link_local(C_MAC), (547, 546));
    assert_eq!(verdict(&b, VM_A, &adv), D::Drop(R::PortSecurityDhcp));
    let adv = dhcp6(
        A_MAC,
        [0x33, 0x33, 0, 1, 0, 2],
        &ll_a,
        "ff02::1:2",
        (547, 546),
    );
    assert_eq!(verdict(&b, VM_A, &adv), D::Drop(R::PortSecurityDhcp));
    assert_eq!(
        verdict(&b, VM_A, &with_hop_by_hop(&adv)),
        D::Drop(R::PortSecurityDhcp)
    );
    // Client messages (and a relay's, 67 to 67) pass. A client's goes to
    // the node's own DHCP server (tests/dhcp_golden.rs), which finds no
    // BOOTP message in this one.
    let discover = dhcp4(A_MAC, bcast, "0.0.0.0", "255.255.255.255", (68, 67));
    assert_eq!(verdict(&b, VM_A, &discover), D::Drop(R::DhcpMalformed));
    let relay = dhcp4(A_MAC, C_MAC, "10.1.0.10", "10.1.0.20", (67, 67));
    assert_eq!(verdict(&b, VM_A, &relay), D::Forward(UP));
    let solicit = dhcp6(
        A_MAC,
        [0x33, 0x33, 0, 1, 0, 2],
        &ll_a,
        "ff02::1:2",
        (546, 547),
    );
    assert!(floods(verdict(&b, VM_A, &solicit)));

    // A flow a to c cached (its key: port, MACs, ethertype, addresses), then
    // the offer of the same key: neither the cached way nor the workers'
    // flow cache way forwards it.
    let mut env = env_at(0);
    let data = udp4(A_MAC, C_MAC, "10.1.0.10", "10.1.0.20", 64);
    assert_eq!(run_warm(&b, &mut env, VM_A, &data).0, D::Forward(UP));
    assert_eq!(run_warm(&b, &mut env, VM_A, &data).0, D::Forward(UP));
    assert_eq!(env.flows.hits, 1, "the flow is cached");
    let fast = |env: &Env, frame: &[u8]| {
        let k = dvr::fastpath::flow::FlowCache::key(VM_A, frame).expect("a key");
        assert_eq!(k, dvr::fastpath::flow::FlowCache::key(VM_A, &data).unwrap());
        let set = env.flows.set_of(&k);
        let mut buf = vec![0u8; 128 + frame.len() + 128];
        buf[128..128 + frame.len()].copy_from_slice(frame);
        let mut f = Frame::new(&mut buf, 128, frame.len()).unwrap();
        dvr::fastpath::fast(&b.snap, env, &k, set, &mut f)
    };
    assert_eq!(fast(&env, &data), Some(D::Forward(UP)));
    assert_eq!(fast(&env, &offer_c), None, "left to the whole pipeline");
    assert_eq!(
        run_warm(&b, &mut env, VM_A, &offer_c),
        (D::Drop(R::PortSecurityDhcp), vec![])
    );
    // A routed flow likewise (a to b through the router).
    let (_, blue_gw) = b.gw("blue4");
    let routed = udp4(A_MAC, blue_gw, "10.1.0.10", "10.2.0.10", 64);
    assert!(leaves(run_warm(&b, &mut env, VM_A, &routed).0));
    let routed_offer = dhcp4(A_MAC, blue_gw, "10.1.0.10", "10.2.0.10", (67, 68));
    assert_eq!(
        run_warm(&b, &mut env, VM_A, &routed_offer),
        (D::Drop(R::PortSecurityDhcp), vec![])
    );

    // Port security disabled: served as before.
    let b = b_insecure();
    let offer = dhcp4(B_MAC, D_MAC, "10.2.0.10", "10.2.0.20", (67, 68));
    assert_eq!(verdict(&b, VM_B, &offer), D::Forward(UP));
    let adv = dhcp6(B_MAC, D_MAC, &link_local(B_MAC), "fe80::1", (547, 546));
    assert_eq!(verdict(&b, VM_B, &adv), D::Forward(UP));
}

/// An ARP packet of operation `op` in a frame from `eth_src` to `eth_dst`.
fn arp_of(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    op: ArpOperation,
    sender: ([u8; 6], &str),
    target: ([u8; 6], &str),
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(eth_src, eth_dst)
        .arp(
            ArpEthIpv4Packet {
                operation: op,
                sender_mac: sender.0,
                sender_ipv4: ip4(sender.1),
                target_mac: target.0,
                target_ipv4: ip4(target.1),
            }
            .into(),
        )
        .write(&mut v)
        .unwrap();
    v
}

#[test]
fn port_security_checks_the_arp_sender_of_requests_replies_and_gratuitous_arp() {
    let b = Bed::new();
    let (gw, gw_mac) = b.gw("blue4");
    let gw = gw.to_string();
    let spoofed = [0xfa, 0x16, 0x3e, 0, 0, 0x66];
    let bcast = [0xff; 6];
    let req = ArpOperation::REQUEST;
    let rep = ArpOperation::REPLY;
    // A request whose sender MAC is not the port's: today answered, to it.
    let f = arp_of(A_MAC, bcast, req, (spoofed, "10.1.0.10"), ([0; 6], &gw));
    assert_eq!(verdict(&b, VM_A, &f), D::Drop(R::PortSecurityArp));
    // The sender IP not the port's.
    let f = arp_of(A_MAC, bcast, req, (A_MAC, "10.1.0.20"), ([0; 6], &gw));
    assert_eq!(verdict(&b, VM_A, &f), D::Drop(R::PortSecurityArp));
    // A reply to c with another MAC, or another IP.
    let f = arp_of(
        A_MAC,
        C_MAC,
        rep,
        (spoofed, "10.1.0.10"),
        (C_MAC, "10.1.0.20"),
    );
    assert_eq!(verdict(&b, VM_A, &f), D::Drop(R::PortSecurityArp));
    let f = arp_of(A_MAC, C_MAC, rep, (A_MAC, "10.1.0.1"), (C_MAC, "10.1.0.20"));
    assert_eq!(verdict(&b, VM_A, &f), D::Drop(R::PortSecurityArp));
    // Gratuitous ARP claiming the gateway's address, or with another MAC.
    let f = arp_of(A_MAC, bcast, rep, (A_MAC, &gw), (bcast, &gw));
    assert_eq!(verdict(&b, VM_A, &f), D::Drop(R::PortSecurityArp));
    let f = arp_of(
        A_MAC,
        bcast,
        rep,
        (spoofed, "10.1.0.10"),
        (bcast, "10.1.0.10"),
    );
    assert_eq!(verdict(&b, VM_A, &f), D::Drop(R::PortSecurityArp));
    // A probe (no sender IP) with another MAC.
    let f = arp_of(
        A_MAC,
        bcast,
        req,
        (spoofed, "0.0.0.0"),
        ([0; 6], "10.1.0.10"),
    );
    assert_eq!(verdict(&b, VM_A, &f), D::Drop(R::PortSecurityArp));
    // The pair's MAC with an address outside the pair.
    let f = arp_of(PAIR_MAC, bcast, req, (PAIR_MAC, "10.1.0.10"), ([0; 6], &gw));
    assert_eq!(verdict(&b, VM_A, &f), D::Drop(R::PortSecurityArp));

    // The port's own, and the allowed pair's MAC and address: answered.
    let (v, out) = check_pipeline(&b.snap, VM_A, &arp_request(A_MAC, "10.1.0.10", &gw));
    assert_eq!(v, D::Forward(VM_A));
    assert_eq!(out, arp_reply(gw_mac, ip4(&gw), A_MAC, "10.1.0.10"));
    let f = arp_of(PAIR_MAC, bcast, req, (PAIR_MAC, "10.1.99.7"), ([0; 6], &gw));
    let (v, out) = check_pipeline(&b.snap, VM_A, &f);
    assert_eq!(v, D::Forward(VM_A));
    assert_eq!(out, arp_reply(gw_mac, ip4(&gw), PAIR_MAC, "10.1.99.7"));
    // Its own reply, gratuitous ARP and probe pass.
    let f = arp_of(
        A_MAC,
        C_MAC,
        rep,
        (A_MAC, "10.1.0.10"),
        (C_MAC, "10.1.0.20"),
    );
    assert_eq!(verdict(&b, VM_A, &f), D::Forward(UP));
    let f = arp_of(
        A_MAC,
        bcast,
        rep,
        (A_MAC, "10.1.0.10"),
        (bcast, "10.1.0.10"),
    );
    assert!(floods(verdict(&b, VM_A, &f)));
    let f = arp_of(A_MAC, bcast, req, (A_MAC, "0.0.0.0"), ([0; 6], "10.1.0.10"));
    assert_eq!(verdict(&b, VM_A, &f), D::Forward(VM_A));

    // Port security disabled: a spoofed request is answered as before.
    let b = b_insecure();
    let (gw, gw_mac) = b.gw("red4");
    let gw = gw.to_string();
    let f = arp_of(B_MAC, bcast, req, (spoofed, "10.2.0.10"), ([0; 6], &gw));
    let (v, out) = check_pipeline(&b.snap, VM_B, &f);
    assert_eq!(v, D::Forward(VM_B));
    assert_eq!(out, arp_reply(gw_mac, ip4(&gw), spoofed, "10.2.0.10"));
    let f = arp_of(B_MAC, bcast, rep, (B_MAC, &gw), (bcast, &gw));
    assert!(floods(verdict(&b, VM_B, &f)));
}

/// A neighbour solicitation from `eth_src` (IPv6 `src`) for `target` with
/// the source link-layer option `ll`.
fn ns_with(eth_src: [u8; 6], src: &str, target: &str, ll: [u8; 6]) -> Vec<u8> {
    let mut f = ns(eth_src, src, target);
    // ns() puts its MAC in the option: `ll` there, the checksum fixed up.
    let at = f.len() - 6;
    f[at..].copy_from_slice(&ll);
    fix_icmp6(&mut f);
    f
}

/// A neighbour advertisement from `eth_src` (IPv6 `src`) to `dst` for
/// `target` with the target link-layer option `ll`.
fn na_with(eth_src: [u8; 6], src: &str, dst: &str, target: &str, ll: [u8; 6]) -> Vec<u8> {
    let mut body = ip6(target).to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&ll);
    let mut v = Vec::new();
    let dst_mac = if dst == "ff02::1" {
        [0x33, 0x33, 0, 0, 0, 1]
    } else {
        C_MAC
    };
    PacketBuilder::ethernet2(eth_src, dst_mac)
        .ipv6(ip6(src), ip6(dst), 255)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(
            icmpv6::NeighborAdvertisementHeader {
                router: false,
                solicited: false,
                r#override: true,
            },
        ))
        .write(&mut v, &body)
        .unwrap();
    v
}

/// The ICMPv6 checksum of an IPv6 frame without extension headers recomputed.
fn fix_icmp6(f: &mut [u8]) {
    f[56] = 0;
    f[57] = 0;
    let plen = u16::from_be_bytes([f[18], f[19]]) as u32;
    let sum = pseudo6(&f[22..38], &f[38..54], plen, 58);
    let c = csum_fold(csum_add(sum, &f[54..]));
    f[56..58].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn port_security_checks_neighbour_discovery_link_layer_options_and_targets() {
    let b = Bed::new();
    let (gw, gw_mac) = b.gw("blue6");
    let gw = gw.to_string();
    let spoofed = [0xfa, 0x16, 0x3e, 0, 0, 0x66];
    // A solicitation whose source link-layer option is not the port's:
    // today answered.
    let f = ns_with(A_MAC, "2001:db8:1::10", &gw, spoofed);
    assert_eq!(verdict(&b, VM_A, &f), D::Drop(R::PortSecurityNd));
    // An advertisement for another port's address (c's), for the gateway's,
    // or for its own with another MAC; unsolicited (flooded today) or
    // unicast (switched today).
    for (dst, target, ll) in [
        ("ff02::1", "2001:db8:1::20", A_MAC),
        ("ff02::1", gw.as_str(), A_MAC),
        ("ff02::1", "2001:db8:1::10", spoofed),
        ("2001:db8:1::20", "2001:db8:1::20", A_MAC),
        ("ff02::1", link_local(C_MAC).as_str(), A_MAC),
    ] {
        let f = na_with(A_MAC, "2001:db8:1::10", dst, target, ll);
        assert_eq!(
            verdict(&b, VM_A, &f),
            D::Drop(R::PortSecurityNd),
            "{target} at {}",
            MacAddr(ll)
        );
    }
    // Its own solicitation, and advertisements for its own addresses (its
    // EUI-64 link-local one too) pass.
    let (v, out) = check_pipeline(&b.snap, VM_A, &ns(A_MAC, "2001:db8:1::10", &gw));
    assert_eq!(v, D::Forward(VM_A));
    assert_eq!(out, na(gw_mac, ip6(&gw), A_MAC, "2001:db8:1::10", true));
    let f = na_with(A_MAC, "2001:db8:1::10", "ff02::1", "2001:db8:1::10", A_MAC);
    assert!(floods(verdict(&b, VM_A, &f)));
    let ll_a = link_local(A_MAC);
    let f = na_with(A_MAC, &ll_a, "2001:db8:1::20", &ll_a, A_MAC);
    assert_eq!(verdict(&b, VM_A, &f), D::Forward(UP));

    // Port security disabled: as before.
    let b = b_insecure();
    let (gw, gw_mac) = b.gw("red6");
    let gw = gw.to_string();
    let f = ns_with(B_MAC, "2001:db8:2::10", &gw, spoofed);
    let (v, out) = check_pipeline(&b.snap, VM_B, &f);
    assert_eq!(v, D::Forward(VM_B));
    assert_eq!(out, na(gw_mac, ip6(&gw), B_MAC, "2001:db8:2::10", true));
    let f = na_with(B_MAC, "2001:db8:2::10", "ff02::1", "2001:db8:2::20", B_MAC);
    assert!(floods(verdict(&b, VM_B, &f)));
}

#[test]
fn a_frame_from_the_overlay_with_a_gateway_or_own_dvr_mac_source_is_dropped() {
    let b = Bed::new();
    let (_, blue_gw) = b.gw("blue4");
    let (_, blue6_gw) = b.gw("blue6");
    // From cn2 to a: today delivered (the decap way takes it).
    for src in [blue_gw, blue6_gw, DVR1] {
        let inner = udp4(src, A_MAC, "10.1.0.1", "10.1.0.10", 64);
        let f = vxlan_from_cn2(&inner, 101);
        assert_eq!(verdict(&b, UP, &f), D::Drop(R::OverlayGatewayMac));
        assert!(!run_decap_way(&mut env_at(0), &b.snap, UP, &f).1);
    }
    // A gratuitous ARP for the gateway from the gateway MAC: today flooded.
    let (gw, _) = b.gw("blue4");
    let gw = gw.to_string();
    let garp = arp_of(
        blue_gw,
        [0xff; 6],
        ArpOperation::REPLY,
        (blue_gw, &gw),
        ([0xff; 6], &gw),
    );
    assert_eq!(
        verdict(&b, UP, &vxlan_from_cn2(&garp, 101)),
        D::Drop(R::OverlayGatewayMac)
    );
    // GRE and VLAN alike.
    let (_, red_gw) = b.gw("red4");
    let inner = udp4(red_gw, B_MAC, "10.2.0.1", "10.2.0.10", 64);
    let f = gre(CN2_UL_MAC, UL_MAC, VTEP2, VTEP1, 202, &inner);
    assert_eq!(verdict(&b, UP, &f), D::Drop(R::OverlayGatewayMac));
    let (_, green_gw) = b.gw("green4");
    let inner = udp4(green_gw, E_MAC, "10.3.0.1", "10.3.0.10", 64);
    assert_eq!(
        verdict(&b, UP, &vlan_frame(&inner, 303)),
        D::Drop(R::OverlayGatewayMac)
    );
    // cn2's DVR MAC and a VM's MAC as source are delivered as before.
    let inner = udp4(DVR2, A_MAC, "10.2.0.20", "10.1.0.10", 63);
    assert_eq!(
        verdict(&b, UP, &vxlan_from_cn2(&inner, 101)),
        D::Forward(VM_A)
    );
    let inner = udp4(C_MAC, A_MAC, "10.1.0.20", "10.1.0.10", 64);
    assert_eq!(
        verdict(&b, UP, &vxlan_from_cn2(&inner, 101)),
        D::Forward(VM_A)
    );
}

// ---- Allowed address pairs (VIPs) and link-local addresses ---------------------

const A2_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0xa2];
const VIP: &str = "10.1.0.100";
const VIP6: &str = "2001:db8:1::100";

/// [`model`] with a second blue port `a2` on cn1 (it takes vm-b from b), if
/// `a2`, and the VIP 10.1.0.100 / 2001:db8:1::100 (exact pairs, the ports'
/// own MACs) on a (cn1) and c (cn2), as keepalived would hold it; and the
/// CIDR pair 10.1.0.128/28 on a only.
fn vip_model(a2: bool) -> Model {
    let mut m = model();
    if a2 {
        m.apply(&changes(json!([port(
            "a2",
            "blue",
            A2_MAC,
            "cn1",
            Some("vm-b"),
            &[("blue4", "10.1.0.11")]
        )])))
        .unwrap();
    }
    let pairs = json!([{"ip": format!("{VIP}/32")}, {"ip": format!("{VIP6}/128")}]);
    m.apply(&changes(json!([
        {"op": "port_set", "name": "a", "allowed_address_pairs": pairs},
        {"op": "port_set", "name": "c", "allowed_address_pairs": pairs},
        {"op": "port_set", "name": "a", "allowed_address_pairs": [{"ip": "10.1.0.128/28"}]},
    ])))
    .unwrap();
    m
}

/// The targets of the flood `run` asked for (`v`).
fn flooded_to(b: &Bed, env: &Env, v: D, in_port: u16) -> Vec<pipeline::Target> {
    let fl = env.flood_of(v).expect("a flood");
    pipeline::flood_targets(&b.snap, fl, in_port).collect()
}

/// A duplicate address detection probe for `target`: from the unspecified
/// address, no option.
fn ns_dad(src_mac: [u8; 6], target: &str) -> Vec<u8> {
    let t = ip6(target);
    let mut dst = ip6("ff02::1:ff00:0");
    dst[13..].copy_from_slice(&t[13..]);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, [0x33, 0x33, 0xff, t[13], t[14], t[15]])
        .ipv6([0; 16], dst, 255)
        .icmpv6(Icmpv6Type::NeighborSolicitation)
        .write(&mut v, &t)
        .unwrap();
    v
}

/// An unsolicited neighbour advertisement for `target` to all nodes.
fn na_unsolicited(from_mac: [u8; 6], target: &str) -> Vec<u8> {
    let mut body = ip6(target).to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&from_mac);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(from_mac, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(ip6(target), ip6("ff02::1"), 255)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(
            icmpv6::NeighborAdvertisementHeader {
                router: false,
                solicited: false,
                r#override: true,
            },
        ))
        .write(&mut v, &body)
        .unwrap();
    v
}

#[test]
fn arp_and_ns_for_a_vip_go_to_the_ports_whose_pairs_cover_it() {
    use pipeline::Target::{Host, Port};
    let b = Bed::from_model(vip_model(true));
    // The exact VIP, which a (here) and c (on cn2) may hold: to both, not
    // answered for either.
    let req = arp_request(A2_MAC, "10.1.0.11", VIP);
    let mut env = env_at(0);
    let (v, out) = b.run_env(&mut env, VM_B, &req);
    assert!(floods(v));
    assert_eq!(out, req, "the request goes as it came");
    assert_eq!(env.flood_of(v).unwrap().only, Some(VIP.parse().unwrap()));
    assert_eq!(flooded_to(&b, &env, v, VM_B), vec![Port(VM_A), Host(0)]);
    // A CIDR pair (a's 10.1.0.128/28, 10.1.99.0/24): to a only.
    for ip in ["10.1.0.130", "10.1.99.7"] {
        let mut env = env_at(0);
        let (v, _) = b.run_env(&mut env, VM_B, &arp_request(A2_MAC, "10.1.0.11", ip));
        assert!(floods(v));
        assert_eq!(flooded_to(&b, &env, v, VM_B), vec![Port(VM_A)]);
    }
    // From a holder: to the other one only.
    let mut env = env_at(0);
    let (v, _) = b.run_env(&mut env, VM_A, &arp_request(A_MAC, "10.1.0.10", VIP));
    assert!(floods(v));
    assert_eq!(flooded_to(&b, &env, v, VM_A), vec![Host(0)]);
    // From another host (c on cn2 asks): to the ports here whose pairs
    // cover it, not to a2.
    let mut env = env_at(0);
    let asked = arp_request(C_MAC, "10.1.0.20", "10.1.0.130");
    let (v, _) = b.run_env(&mut env, UP, &vxlan_from_cn2(&asked, 101));
    assert!(floods(v));
    assert_eq!(flooded_to(&b, &env, v, UP), vec![Port(VM_A)]);
    // The same for a neighbour solicitation.
    let mut env = env_at(0);
    let (v, _) = b.run_env(&mut env, VM_B, &ns(A2_MAC, "fe80::f816:3eff:fe00:a2", VIP6));
    assert!(floods(v));
    assert_eq!(flooded_to(&b, &env, v, VM_B), vec![Port(VM_A), Host(0)]);
    // An address no pair covers is still unknown.
    b.drops(
        VM_B,
        &arp_request(A2_MAC, "10.1.0.11", "10.1.0.77"),
        R::ArpUnknownTarget,
    );
    b.drops(
        VM_B,
        &ns(A2_MAC, "fe80::f816:3eff:fe00:a2", "2001:db8:1::77"),
        R::NdUnknownTarget,
    );
}

#[test]
fn routed_traffic_to_a_vip_goes_to_its_holder_and_follows_it() {
    let m = vip_model(false);
    let mut c = Compiler::new(&m, node());
    let snap = c
        .set_vtep_mac(Ipv4Addr::from(VTEP2), MacAddr(CN2_UL_MAC))
        .unwrap();
    let mut b = Bed { m, snap };
    let (_, red_gw) = b.gw("red4");
    let (_, blue_gw) = b.gw("blue4");
    let (_, red6_gw) = b.gw("red6");
    let (_, blue6_gw) = b.gw("blue6");
    let f = udp4(B_MAC, red_gw, "10.2.0.10", VIP, 64);
    let f6 = udp6(B_MAC, red6_gw, "2001:db8:2::10", VIP6, 64);
    // Two ports may hold it and neither has said so yet: the router asks
    // them (the frame is counted as not forwarded).
    let mut env = env_at(0);
    let (v, out) = b.run_env(&mut env, VM_B, &f);
    assert!(matches!(
        v,
        D::Flood {
            why: Some(R::VipHolderUnknown),
            ..
        }
    ));
    let (blue_ip, _) = b.gw("blue4");
    let mut ask = arp_request(blue_gw, &blue_ip.to_string(), VIP);
    ask[6..12].copy_from_slice(&DVR1);
    assert_eq!(out, ask, "who-has the VIP, from the DVR MAC");
    assert_eq!(
        flooded_to(&b, &env, v, VM_B),
        vec![pipeline::Target::Port(VM_A), pipeline::Target::Host(0)]
    );
    let mut env = env_at(0);
    let (v, out) = b.run_env(&mut env, VM_B, &f6);
    assert!(matches!(
        v,
        D::Flood {
            why: Some(R::VipHolderUnknown),
            ..
        }
    ));
    let (blue6_ip, _) = b.gw("blue6");
    let mut ask6 = ns(blue6_gw, &blue6_ip.to_string(), VIP6);
    ask6[6..12].copy_from_slice(&DVR1);
    assert_eq!(out, ask6, "a solicitation for the VIP, from the DVR MAC");
    assert_eq!(
        flooded_to(&b, &env, v, VM_B),
        vec![pipeline::Target::Port(VM_A), pipeline::Target::Host(0)]
    );
    let mut env = env_at(0);
    let answer6 = na(A_MAC, ip6(VIP6), blue6_gw, &blue6_ip.to_string(), false);
    let (v, out) = b.run_env(&mut env, VM_A, &answer6);
    assert!(floods(v));
    let mut all_nodes = answer6.clone();
    all_nodes[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(out, all_nodes);
    assert_eq!(env.vip.map(|n| n.mac), Some(MacAddr(A_MAC)));
    // The holder's answer to the router goes to the whole network (the
    // routers of other hosts learn it too), and the holder is noted.
    let mut env = env_at(0);
    let answer = arp_reply(A_MAC, ip4(VIP), blue_gw, &blue_ip.to_string());
    let (v, out) = b.run_env(&mut env, VM_A, &answer);
    assert!(floods(v));
    let mut bcast = answer.clone();
    bcast[..6].copy_from_slice(&[0xff; 6]);
    assert_eq!(out, bcast);
    assert_eq!(env.vip.map(|n| n.mac), Some(MacAddr(A_MAC)));
    // Inside the pair of one port only: that port's, with the pair's MAC.
    let g = udp4(B_MAC, red_gw, "10.2.0.10", "10.1.0.130", 64);
    let (v, out) = b.run(VM_B, &g);
    assert_eq!((v, out), (D::Forward(VM_A), routed4(&g, blue_gw, A_MAC)));

    // a announces the VIP (keepalived's gratuitous ARP): flooded to the
    // whole network, and the holder noted for the control thread.
    let garp = arp_request(A_MAC, VIP, VIP);
    let mut env = env_at(0);
    let (v, out) = b.run_env(&mut env, VM_A, &garp);
    assert!(floods(v));
    assert_eq!(out, garp);
    assert_eq!(env.flood_of(v).unwrap().only, None);
    let n = env.vip.expect("the holder is noted");
    assert_eq!((n.ip, n.mac), (VIP.parse().unwrap(), MacAddr(A_MAC)));
    // Nobody else may claim it with a MAC no pair gives it.
    assert!(c.set_vip_holder(n.net, n.ip, MacAddr(PAIR_MAC)).is_none());
    b.snap = c.set_vip_holder(n.net, n.ip, n.mac).expect("published");
    assert!(c.set_vip_holder(n.net, n.ip, n.mac).is_none(), "known");
    let (v, out) = b.run(VM_B, &f);
    assert_eq!((v, out), (D::Forward(VM_A), routed4(&f, blue_gw, A_MAC)));
    // Known again, not noted again.
    let mut env = env_at(0);
    assert!(floods(b.run_env(&mut env, VM_A, &garp).0));
    assert_eq!(env.vip, None);

    // The VIP moves to c on cn2: its gratuitous ARP comes over the overlay.
    let mut env = env_at(0);
    let moved = vxlan_from_cn2(&arp_request(C_MAC, VIP, VIP), 101);
    let (v, _) = b.run_env(&mut env, UP, &moved);
    assert!(floods(v));
    let n = env.vip.expect("the new holder is noted");
    assert_eq!(n.mac, MacAddr(C_MAC));
    b.snap = c.set_vip_holder(n.net, n.ip, n.mac).expect("published");
    let (v, out) = b.run(VM_B, &f);
    assert_eq!(v, D::Forward(UP));
    assert_eq!(
        out,
        vxlan_to_cn2(&routed4(&f, DVR1, C_MAC), 101, sport_of(&out))
    );

    // And back to a, announced by a broadcast ARP reply.
    let mut env = env_at(0);
    let reply = arp_reply(A_MAC, ip4(VIP), [0xff; 6], VIP);
    assert!(floods(b.run_env(&mut env, VM_A, &reply).0));
    let n = env.vip.expect("noted");
    b.snap = c.set_vip_holder(n.net, n.ip, n.mac).expect("published");
    let (v, out) = b.run(VM_B, &f);
    assert_eq!((v, out), (D::Forward(VM_A), routed4(&f, blue_gw, A_MAC)));

    // IPv6: an unsolicited neighbour advertisement.
    let mut env = env_at(0);
    let (v, _) = b.run_env(&mut env, VM_A, &na_unsolicited(A_MAC, VIP6));
    assert!(floods(v));
    let n = env.vip.expect("noted");
    assert_eq!(n.ip, VIP6.parse::<IpAddr>().unwrap());
    b.snap = c.set_vip_holder(n.net, n.ip, n.mac).expect("published");
    let (v, out) = b.run(VM_B, &f6);
    assert_eq!((v, out), (D::Forward(VM_A), routed6(&f6, blue6_gw, A_MAC)));
}

#[test]
fn link_local_addresses_work_between_the_ports_of_a_network() {
    use pipeline::Target::{Host, Port};
    let b = Bed::from_model(vip_model(true));
    let (ll_a, ll_a2) = ("fe80::f816:3eff:fe00:a", "fe80::f816:3eff:fe00:a2");
    // A port's EUI-64 link-local address is answered, here or on cn2.
    let (v, out) = b.run(VM_B, &ns(A2_MAC, ll_a2, ll_a));
    assert_eq!(v, D::Forward(VM_B));
    assert_eq!(out, na(A_MAC, ip6(ll_a), A2_MAC, ll_a2, false));
    let ll_c = "fe80::f816:3eff:fe00:c";
    let (v, out) = b.run(VM_B, &ns(A2_MAC, ll_a2, ll_c));
    assert_eq!(v, D::Forward(VM_B));
    assert_eq!(out, na(C_MAC, ip6(ll_c), A2_MAC, ll_a2, false));
    // Another link-local address (stable privacy): a port may advertise it
    // (not another MAC's EUI-64 one), and a solicitation for it goes to the
    // whole network.
    let mut env = env_at(0);
    let ours = na_unsolicited(A_MAC, "fe80::1234:5678:9abc:def0");
    assert!(floods(b.run_env(&mut env, VM_A, &ours).0));
    b.drops(VM_A, &na_unsolicited(A_MAC, ll_c), R::PortSecurityNd);
    let mut env = env_at(0);
    let (v, _) = b.run_env(
        &mut env,
        VM_B,
        &ns(A2_MAC, ll_a2, "fe80::1234:5678:9abc:def0"),
    );
    assert!(floods(v));
    assert_eq!(env.flood_of(v).unwrap().only, None);
    assert_eq!(flooded_to(&b, &env, v, VM_B), vec![Port(VM_A), Host(0)]);
    // A port's probe (DAD) for its own address is not answered (it would
    // give the address up); another port's probe for it is.
    for own in [ll_a, "2001:db8:1::10"] {
        let mut env = env_at(0);
        let (v, _) = b.run_env(&mut env, VM_A, &ns_dad(A_MAC, own));
        assert!(floods(v), "{own}");
    }
    let (v, _) = b.run(VM_B, &ns_dad(A2_MAC, ll_a));
    assert_eq!(v, D::Forward(VM_B));
    // Link-local unicast between the two: switched.
    let f = udp6(A2_MAC, A_MAC, ll_a2, ll_a, 64);
    let (v, out) = b.run(VM_B, &f);
    assert_eq!((v, out), (D::Forward(VM_A), f));
}
