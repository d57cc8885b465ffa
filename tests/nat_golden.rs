//! North-south golden tests (sections 3 and 4 of docs/BEHAVIOUR.md): crafted
//! frames through the pipeline of a compute node (`cn1`, floating IPs) and of
//! the network node (`nn1`, SNAT), the frames out compared byte for byte with
//! frames built by `etherparse`, every drop with its exact reason.
//!
//! The topology is `dvr::testkit`'s, plus an external network `ext`
//! (203.0.113.0/24, upstream router 203.0.113.1), router r1's external gateway
//! on it with its SNAT on `nn1` (`dvr_snat`), floating IPs 203.0.113.50 for
//! port a (on cn1) and 203.0.113.51 for port c (on cn2), and cn1's FIP gateway
//! port 203.0.113.11.

use std::net::{IpAddr, Ipv4Addr};

use dvr::compile::Compiler;
use dvr::config::PortRole;
use dvr::mac::MacAddr;
use dvr::model::Model;
use dvr::pipeline::{self, Disposition as D, Env, NoTrace, Notes, PuntKind};
use dvr::pkt::Frame;
use dvr::stats::DropReason as R;
use dvr::tables::{DpPort, Snapshot};
use dvr::testkit::*;
use dvr::wire::checksum::{checksum, csum_add, csum_fold, pseudo4, pseudo6};
use dvr::wire::{be16, be32, ethernet, ipv4, ipv4_at, proto, tunnel, udp, Ipv4Packet};
use etherparse::{ArpEthIpv4Packet, ArpOperation, PacketBuilder, SlicedPacket, TransportSlice};
use serde_json::json;

const OUTSIDE: &str = "198.51.100.7";
const PAYLOAD: &[u8] = b"north-south golden payload";

fn dp(name: &str, role: PortRole, mac: [u8; 6]) -> DpPort {
    DpPort {
        name: name.into(),
        role,
        mac: MacAddr(mac),
    }
}

fn cn1(m: &Model) -> std::sync::Arc<Snapshot> {
    ns_snapshot(m)
}

/// nn1: an underlay port (0) and an external port (1); cn1's and cn2's VTEPs
/// and the upstream router resolved.
fn nn1(m: &Model) -> std::sync::Arc<Snapshot> {
    snat_node_snapshot(m)
}

fn gw_mac(m: &Model, sn: &str) -> [u8; 6] {
    m.routers["r1"]
        .interfaces
        .iter()
        .find(|i| i.subnet == sn)
        .expect("interface")
        .mac
        .0
}

fn router_gw(m: &Model) -> (Ipv4Addr, [u8; 6]) {
    let g = m.routers["r1"].gateway.as_ref().expect("gateway");
    let ip = g
        .ips
        .iter()
        .find_map(|f| match f.ip {
            IpAddr::V4(a) => Some(a),
            _ => None,
        })
        .expect("an IPv4 gateway address");
    (ip, g.mac.0)
}

fn udp4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    ports: (u16, u16),
    ttl: u8,
) -> Vec<u8> {
    udp4_packet(src_mac, dst_mac, src, dst, ports, ttl, PAYLOAD)
}

fn tcp4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    ports: (u16, u16),
    ttl: u8,
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(ip4(src), ip4(dst), ttl)
        .tcp(ports.0, ports.1, 1000, 64240)
        .syn()
        .write(&mut v, PAYLOAD)
        .unwrap();
    v
}

fn arp_request(src_mac: [u8; 6], src: &str, target: &str) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, [0xff; 6])
        .arp(
            ArpEthIpv4Packet {
                operation: ArpOperation::REQUEST,
                sender_mac: src_mac,
                sender_ipv4: ip4(src),
                target_mac: [0; 6],
                target_ipv4: ip4(target),
            }
            .into(),
        )
        .write(&mut v)
        .unwrap();
    v
}

fn arp_reply(from_mac: [u8; 6], from: &str, to_mac: [u8; 6], to: &str) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(from_mac, to_mac)
        .arp(
            ArpEthIpv4Packet {
                operation: ArpOperation::REPLY,
                sender_mac: from_mac,
                sender_ipv4: ip4(from),
                target_mac: to_mac,
                target_ipv4: ip4(to),
            }
            .into(),
        )
        .write(&mut v)
        .unwrap();
    v
}

/// Runs `frame` in on `in_port` with `env`; the trace path must agree.
fn run(snap: &Snapshot, env: &mut Env, in_port: u16, frame: &[u8]) -> (D, Vec<u8>) {
    env.burst(snap);
    let mut buf = vec![0u8; 128 + frame.len() + 256];
    buf[128..128 + frame.len()].copy_from_slice(frame);
    let mut f = Frame::new(&mut buf, 128, frame.len()).unwrap();
    let v = pipeline::process(snap, env, in_port, &mut f, &mut NoTrace);
    (v, f.data().to_vec())
}

/// Like [`run`] with a fresh environment, and the tracer sees the same.
fn run1(snap: &Snapshot, in_port: u16, frame: &[u8]) -> (D, Vec<u8>) {
    let out = run(snap, &mut env(), in_port, frame);
    let mut buf = vec![0u8; 128 + frame.len() + 256];
    buf[128..128 + frame.len()].copy_from_slice(frame);
    let mut f = Frame::new(&mut buf, 128, frame.len()).unwrap();
    let mut e = env();
    e.burst(snap);
    let mut notes = Notes::default();
    let v = pipeline::process(snap, &mut e, in_port, &mut f, &mut notes);
    assert_eq!(v, out.0, "trace and workers agree; notes {:?}", notes.0);
    out
}

fn env() -> Env {
    Env::new(|| 0, 1_000_000)
}

/// Where field `f` of the IPv4 header lies in an Ethernet frame.
fn l3(f: std::ops::Range<usize>) -> std::ops::Range<usize> {
    ethernet::HEADER_LEN + f.start..ethernet::HEADER_LEN + f.end
}

/// Whether a frame leaves (forwarded, answered or flooded).
fn leaves(v: D) -> bool {
    matches!(v, D::Forward(_) | D::Answered { .. } | D::Flood { .. })
}

/// IPv4 and transport checksums of an Ethernet frame are right.
fn checksums_ok(frame: &[u8]) {
    let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]).expect("an IPv4 header");
    assert_eq!(checksum(ip.header()), 0, "IPv4 header checksum");
    let l4 = &ip.as_bytes()[ip.header_len()..usize::from(ip.total_len())];
    let (src, dst) = (ip.src_addr().octets(), ip.dst_addr().octets());
    let sum = pseudo4(&src, &dst, l4.len() as u16, ip.protocol());
    match ip.protocol() {
        proto::UDP if be16(l4, udp::field::CHECKSUM.start) == 0 => {}
        proto::UDP | proto::TCP => {
            assert_eq!(csum_fold(csum_add(sum, l4)), 0, "L4 checksum")
        }
        _ => {}
    }
}

#[test]
fn floating_ip_out_of_the_vm_host_external_port() {
    let m = ns_model();
    let s = cn1(&m);
    let f = udp4(
        A_MAC,
        gw_mac(&m, "blue4"),
        "10.1.0.10",
        OUTSIDE,
        (40000, 53),
        64,
    );
    let (v, out) = run1(&s, VM_A, &f);
    assert_eq!(v, D::Forward(EXT));
    let want = udp4(FG1, UPSTREAM_MAC, "203.0.113.50", OUTSIDE, (40000, 53), 63);
    assert_eq!(out, want);
    // TCP too, checksums right.
    let f = tcp4(
        A_MAC,
        gw_mac(&m, "blue4"),
        "10.1.0.10",
        OUTSIDE,
        (40001, 80),
        64,
    );
    let (v, out) = run1(&s, VM_A, &f);
    assert_eq!(v, D::Forward(EXT));
    assert_eq!(
        out,
        tcp4(FG1, UPSTREAM_MAC, "203.0.113.50", OUTSIDE, (40001, 80), 63)
    );
}

#[test]
fn floating_ip_in_from_the_external_port() {
    let m = ns_model();
    let s = cn1(&m);
    let f = tcp4(UPSTREAM_MAC, FG1, OUTSIDE, "203.0.113.50", (80, 40001), 64);
    let (v, out) = run1(&s, EXT, &f);
    assert_eq!(v, D::Forward(VM_A));
    assert_eq!(
        out,
        tcp4(
            gw_mac(&m, "blue4"),
            A_MAC,
            OUTSIDE,
            "10.1.0.10",
            (80, 40001),
            63
        )
    );
    // Port c's floating IP is served by cn2, not here; the right address to
    // the wrong MAC is not taken either.
    let f = udp4(UPSTREAM_MAC, FG1, OUTSIDE, "203.0.113.51", (53, 4000), 64);
    assert_eq!(run1(&s, EXT, &f).0, D::Drop(R::ExternalNotServed));
    let f = udp4(
        UPSTREAM_MAC,
        [0x02, 9, 9, 9, 9, 9],
        OUTSIDE,
        "203.0.113.50",
        (53, 4000),
        64,
    );
    assert_eq!(run1(&s, EXT, &f).0, D::Drop(R::ExternalWrongMac));
}

#[test]
fn proxy_arp_only_for_what_this_host_serves() {
    let m = ns_model();
    let s = cn1(&m);
    for target in ["203.0.113.50", "203.0.113.11"] {
        let (v, out) = run1(&s, EXT, &arp_request(UPSTREAM_MAC, "203.0.113.1", target));
        assert_eq!(v, D::Forward(EXT), "who-has {target}");
        let mut want = arp_reply(FG1, target, UPSTREAM_MAC, "203.0.113.1");
        want.resize(out.len(), 0);
        assert_eq!(out, want, "who-has {target}");
    }
    for target in ["203.0.113.51", "203.0.113.99"] {
        let (v, _) = run1(&s, EXT, &arp_request(UPSTREAM_MAC, "203.0.113.1", target));
        assert_eq!(v, D::Drop(R::ArpUnknownTarget), "who-has {target}");
    }
    // The router's gateway address is answered by its SNAT node only.
    let (gw, gw_mac) = router_gw(&m);
    let gw = gw.to_string();
    let req = arp_request(UPSTREAM_MAC, "203.0.113.1", &gw);
    assert_eq!(run1(&s, EXT, &req).0, D::Drop(R::ArpUnknownTarget));
    let n = nn1(&m);
    let (v, out) = run1(&n, 1, &req);
    assert_eq!(v, D::Forward(1));
    let mut want = arp_reply(gw_mac, &gw, UPSTREAM_MAC, "203.0.113.1");
    want.resize(out.len(), 0);
    assert_eq!(out, want);
    // Replies go to the control thread (upstream resolution).
    let r = arp_reply(UPSTREAM_MAC, "203.0.113.1", FG1, "203.0.113.11");
    assert_eq!(run1(&s, EXT, &r).0, D::Punt(PuntKind::ArpReply));
    assert_eq!(PuntKind::ArpReply.counter(), R::ArpReplyConsumed);
    assert_eq!(
        dvr::wire::arp::reply_sender(&r).map(|(ip, mac)| (ip, MacAddr(mac))),
        Some(("203.0.113.1".parse().unwrap(), MacAddr(UPSTREAM_MAC)))
    );
}

#[test]
fn hairpin_to_another_vms_floating_ip() {
    let m = ns_model();
    let s = cn1(&m);
    // a (FIP .50) to c's FIP .51: c is on cn2, reached over VXLAN from the
    // DVR MAC, seeing a's floating IP as the source.
    let f = udp4(
        A_MAC,
        gw_mac(&m, "blue4"),
        "10.1.0.10",
        "203.0.113.51",
        (40000, 7),
        64,
    );
    let (v, out) = run1(&s, VM_A, &f);
    assert_eq!(v, D::Forward(UP));
    let inner = udp4(DVR1, C_MAC, "203.0.113.50", "10.1.0.20", (40000, 7), 63);
    let want = vxlan_frame(&inner, 101, (UL_MAC, VTEP1), (CN2_UL_MAC, VTEP2));
    assert_eq!(out, want);
    // b has no floating IP: not translated.
    let f = udp4(
        B_MAC,
        gw_mac(&m, "red4"),
        "10.2.0.10",
        "203.0.113.50",
        (40000, 7),
        64,
    );
    assert_eq!(run1(&s, VM_B, &f).0, D::Drop(R::HairpinNoFip));
}

#[test]
fn snat_traffic_goes_unrouted_to_the_snat_node_and_comes_back_translated() {
    let m = ns_model();
    let s = cn1(&m);
    let red_gw = gw_mac(&m, "red4");
    // b has no floating IP: over the overlay (red is GRE key 202) to nn1,
    // unrouted (TTL 64), from cn1's DVR MAC to the router's interface.
    let f = tcp4(B_MAC, red_gw, "10.2.0.10", OUTSIDE, (41000, 80), 64);
    let (v, out) = run1(&s, VM_B, &f);
    assert_eq!(v, D::Forward(UP));
    let inner = tcp4(DVR1, red_gw, "10.2.0.10", OUTSIDE, (41000, 80), 64);
    let to_nn1 = gre_frame(&inner, 202, (UL_MAC, VTEP1), (NN1_UL_MAC, VTEP3));
    assert_eq!(out, to_nn1);

    // On nn1: routed, translated to the gateway address, out of its external port.
    let n = nn1(&m);
    let mut e = env();
    let (gw, gw_mac) = router_gw(&m);
    let (v, out) = run(&n, &mut e, 0, &to_nn1);
    assert_eq!(v, D::Forward(1));
    checksums_ok(&out);
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("IPv4")
    };
    assert_eq!(ip.header().source_addr(), gw);
    assert_eq!(ip.header().destination_addr().to_string(), OUTSIDE);
    assert_eq!(ip.header().ttl(), 63);
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("TCP")
    };
    let ext_port = tcp.source_port();
    assert_eq!(tcp.destination_port(), 80);
    assert_eq!(&out[0..12], &[UPSTREAM_MAC, gw_mac].concat()[..]);
    assert_eq!(tcp.payload(), PAYLOAD);

    // The answer: back to b's address and port, tunnelled to cn1 from nn1's
    // DVR MAC.
    let reply = tcp4(
        UPSTREAM_MAC,
        gw_mac,
        OUTSIDE,
        &gw.to_string(),
        (80, ext_port),
        64,
    );
    let (v, out) = run(&n, &mut e, 1, &reply);
    assert_eq!(v, D::Forward(0));
    let inner = tcp4(DVR3, B_MAC, OUTSIDE, "10.2.0.10", (80, 41000), 63);
    assert_eq!(
        out,
        gre_frame(&inner, 202, (NN1_UL_MAC, VTEP3), (UL_MAC, VTEP1))
    );
    // ... which cn1 delivers to b with the router's interface MAC.
    let (v, out) = run1(
        &s,
        UP,
        &gre_frame(&inner, 202, (NN1_UL_MAC, VTEP3), (UL_MAC, VTEP1)),
    );
    assert_eq!(v, D::Forward(VM_B));
    assert_eq!(
        out,
        tcp4(red_gw, B_MAC, OUTSIDE, "10.2.0.10", (80, 41000), 63)
    );

    // The outside cannot open a session.
    let probe = tcp4(
        UPSTREAM_MAC,
        gw_mac,
        OUTSIDE,
        &gw.to_string(),
        (80, 1024),
        64,
    );
    assert_eq!(run(&n, &mut e, 1, &probe).0, D::Drop(R::NatNoSession));
    // cn1 does not take SNAT traffic sent to it (its router's SNAT is on nn1).
    let stray = gre_frame(
        &inner_redirect(red_gw),
        202,
        (NN1_UL_MAC, VTEP3),
        (UL_MAC, VTEP1),
    );
    assert_eq!(run1(&s, UP, &stray).0, D::Drop(R::SnatNotHere));
}

fn inner_redirect(red_gw: [u8; 6]) -> Vec<u8> {
    tcp4(DVR3, red_gw, "10.2.0.10", OUTSIDE, (41000, 80), 64)
}

#[test]
fn tiny_port_range_drops_the_new_flow_and_keeps_the_old() {
    let m = ns_model();
    let n = nn1(&m);
    let cfg = dvr::nat::NatConfig::default();
    let mut e = Env::with_nat(|| 0, 1_000_000, cfg, 40000..=40001);
    let red_gw = gw_mac(&m, "red4");
    let flow = |sport: u16| {
        let inner = udp4(DVR1, red_gw, "10.2.0.10", OUTSIDE, (sport, 53), 64);
        gre_frame(&inner, 202, (UL_MAC, VTEP1), (NN1_UL_MAC, VTEP3))
    };
    let mut ports = Vec::new();
    for sport in [5000, 5001] {
        let (v, out) = run(&n, &mut e, 0, &flow(sport));
        assert_eq!(v, D::Forward(1));
        ports.push(be16(&out, ethernet::HEADER_LEN + ipv4::HEADER_LEN));
    }
    ports.sort();
    assert_eq!(ports, [40000, 40001]);
    assert_eq!(
        run(&n, &mut e, 0, &flow(5002)).0,
        D::Drop(R::NatPortsExhausted)
    );
    // The established ones still pass.
    for sport in [5000, 5001] {
        assert_eq!(run(&n, &mut e, 0, &flow(sport)).0, D::Forward(1));
    }
}

#[test]
fn upstream_not_resolved_is_counted() {
    let m = ns_model();
    let mut n = node();
    n.ports
        .push(dp("ext", PortRole::External, [0x02, 0, 0, 0, 0, 0xee]));
    let c = Compiler::new(&m, n);
    let s = c.current().clone();
    let f = udp4(
        A_MAC,
        gw_mac(&m, "blue4"),
        "10.1.0.10",
        OUTSIDE,
        (40000, 53),
        64,
    );
    assert_eq!(run1(&s, VM_A, &f).0, D::Drop(R::UpstreamUnresolved));
    let mut up = c.upstreams();
    up.sort();
    assert_eq!(
        up,
        [(
            "203.0.113.1".parse().unwrap(),
            "203.0.113.11".parse().unwrap(),
            MacAddr(FG1)
        )]
    );
}

/// r1 made centralized on nn1 (the seed's procedure backwards: disabled,
/// `--centralized`, enabled).
fn legacy_model() -> Model {
    let mut m = ns_model();
    m.apply(&changes(json!([
        {"op": "router_set", "name": "r1", "admin_state_up": false},
        {"op": "router_set", "name": "r1", "distributed": false},
        {"op": "router_set", "name": "r1", "admin_state_up": true},
    ])))
    .expect("a disabled router may become centralized");
    m
}

#[test]
fn legacy_router_routes_only_on_its_node() {
    let m = legacy_model();
    let s = cn1(&m);
    let blue_gw = gw_mac(&m, "blue4");
    // On cn1 the router's MAC is switched to nn1, unrouted, over blue's VNI.
    let f = udp4(A_MAC, blue_gw, "10.1.0.10", "10.2.0.20", (40000, 7), 64);
    let (v, out) = run1(&s, VM_A, &f);
    assert_eq!(v, D::Forward(UP));
    let to_nn1 = vxlan_frame(&f, 101, (UL_MAC, VTEP1), (NN1_UL_MAC, VTEP3));
    assert_eq!(out, to_nn1);
    // nn1 routes it to d on cn2 (red, GRE), from its DVR MAC.
    let n = nn1(&m);
    let (v, out) = run1(&n, 0, &to_nn1);
    assert_eq!(v, D::Forward(0));
    let inner = udp4(DVR3, D_MAC, "10.1.0.10", "10.2.0.20", (40000, 7), 63);
    assert_eq!(out[tunnel::GRE_OVERHEAD..], inner[..]);
    // Its floating IPs are served by nn1 with the gateway port's MAC, not by cn1.
    let req = arp_request(UPSTREAM_MAC, "203.0.113.1", "203.0.113.50");
    assert_eq!(run1(&s, EXT, &req).0, D::Drop(R::ArpUnknownTarget));
    let (_, gw_mac) = router_gw(&m);
    let (v, out) = run1(&n, 1, &req);
    assert_eq!(v, D::Forward(1));
    assert_eq!(&out[6..12], &gw_mac);
    let f = udp4(
        UPSTREAM_MAC,
        gw_mac,
        OUTSIDE,
        "203.0.113.50",
        (53, 40000),
        64,
    );
    let (v, out) = run1(&n, 1, &f);
    assert_eq!(v, D::Forward(0));
    let inner = udp4(DVR3, A_MAC, OUTSIDE, "10.1.0.10", (53, 40000), 63);
    assert_eq!(out[tunnel::VXLAN_OVERHEAD..], inner[..]);
}

#[test]
fn dvr_no_external_host_floating_ips_are_served_by_the_snat_node() {
    let mut m = ns_model();
    m.apply(&changes(json!([
        {"op": "host_set", "name": "cn1", "agent_mode": "dvr_no_external", "vtep": "192.0.2.1",
         "dvr_mac": MacAddr(DVR1).to_string()},
    ])))
    .expect("cn1 without an external port");
    let s = Compiler::new(&m, node())
        .set_vtep_mac(Ipv4Addr::from(VTEP3), MacAddr(NN1_UL_MAC))
        .expect("publishes");
    // E-W stays local.
    let f = udp4(
        A_MAC,
        gw_mac(&m, "blue4"),
        "10.1.0.10",
        "10.2.0.10",
        (40000, 7),
        64,
    );
    assert_eq!(run1(&s, VM_A, &f).0, D::Forward(VM_B));
    // a's floating IP traffic goes unrouted to nn1 ...
    let f = udp4(
        A_MAC,
        gw_mac(&m, "blue4"),
        "10.1.0.10",
        OUTSIDE,
        (40000, 53),
        64,
    );
    let (v, out) = run1(&s, VM_A, &f);
    assert_eq!(v, D::Forward(UP));
    let inner = udp4(
        DVR1,
        gw_mac(&m, "blue4"),
        "10.1.0.10",
        OUTSIDE,
        (40000, 53),
        64,
    );
    let to_nn1 = vxlan_frame(&inner, 101, (UL_MAC, VTEP1), (NN1_UL_MAC, VTEP3));
    assert_eq!(out, to_nn1);
    // ... which translates it to the floating IP from the gateway port's MAC.
    let n = nn1(&m);
    let (_, gw_mac) = router_gw(&m);
    let (v, out) = run1(&n, 0, &to_nn1);
    assert_eq!(v, D::Forward(1));
    assert_eq!(
        out,
        udp4(
            gw_mac,
            UPSTREAM_MAC,
            "203.0.113.50",
            OUTSIDE,
            (40000, 53),
            63
        )
    );
}

#[test]
fn migration_to_distributed_under_a_stream() {
    // The seed's procedure: a legacy router disabled, made distributed,
    // enabled. The same E-W and N-S frames at each step, on cn1.
    let mut m = legacy_model();
    let blue_gw = gw_mac(&m, "blue4");
    let ew = udp4(A_MAC, blue_gw, "10.1.0.10", "10.2.0.10", (40000, 7), 64);
    let ns = udp4(A_MAC, blue_gw, "10.1.0.10", OUTSIDE, (40000, 53), 64);
    let mut c = {
        let mut n = node();
        n.ports
            .push(dp("ext", PortRole::External, [0x02, 0, 0, 0, 0, 0xee]));
        Compiler::new(&m, n)
    };
    c.set_vtep_mac(Ipv4Addr::from(VTEP3), MacAddr(NN1_UL_MAC));
    let up: Ipv4Addr = "203.0.113.1".parse().unwrap();
    let s = c.set_vtep_mac(up, MacAddr(UPSTREAM_MAC)).unwrap();
    // Centralized: both go to nn1.
    assert_eq!(run1(&s, VM_A, &ew).0, D::Forward(UP));
    assert_eq!(run1(&s, VM_A, &ns).0, D::Forward(UP));
    let steps = [
        (
            json!({"op": "router_set", "name": "r1", "admin_state_up": false}),
            D::Drop(R::UnknownDstMac),
            D::Drop(R::UnknownDstMac),
        ),
        (
            json!({"op": "router_set", "name": "r1", "distributed": true}),
            D::Drop(R::UnknownDstMac),
            D::Drop(R::UnknownDstMac),
        ),
        (
            json!({"op": "router_set", "name": "r1", "admin_state_up": true}),
            D::Forward(VM_B),
            D::Forward(EXT),
        ),
    ];
    for (change, want_ew, want_ns) in steps {
        let applied = m.apply(&changes(json!([change.clone()]))).unwrap();
        let s = c.update(&m, &applied);
        assert_eq!(run1(&s, VM_A, &ew).0, want_ew, "E-W after {change}");
        assert_eq!(run1(&s, VM_A, &ns).0, want_ns, "N-S after {change}");
    }
}

#[test]
fn a_floating_ip_association_or_a_router_removal_flushes_snat_sessions() {
    let mut m = ns_model();
    let mut c = Compiler::new(&m, snat_node_ports());
    c.set_vtep_mac(Ipv4Addr::from(VTEP1), MacAddr(UL_MAC));
    let n = c
        .set_vtep_mac("203.0.113.1".parse().unwrap(), MacAddr(UPSTREAM_MAC))
        .unwrap();
    let red_gw = gw_mac(&m, "red4");
    let (gw, gw_port_mac) = router_gw(&m);
    let out_frame = gre_frame(
        &udp4(DVR1, red_gw, "10.2.0.10", OUTSIDE, (5000, 53), 64),
        202,
        (UL_MAC, VTEP1),
        (NN1_UL_MAC, VTEP3),
    );
    let mut e = env();
    let (v, out) = run(&n, &mut e, 0, &out_frame);
    assert_eq!(v, D::Forward(1));
    let port = be16(&out, ethernet::HEADER_LEN + ipv4::HEADER_LEN);
    let reply = udp4(
        UPSTREAM_MAC,
        gw_port_mac,
        OUTSIDE,
        &gw.to_string(),
        (53, port),
        64,
    );
    assert_eq!(run(&n, &mut e, 1, &reply).0, D::Forward(0));
    // b gets a floating IP: its sessions go.
    let applied = m
        .apply(&changes(json!([
            {"op": "floating_ip_create", "network": "ext", "address": "203.0.113.52", "port": "b"},
        ])))
        .unwrap();
    let n = c.update(&m, &applied);
    assert_eq!(run(&n, &mut e, 1, &reply).0, D::Drop(R::NatNoSession));
    // A session of d (no floating IP), then the router disabled (gone from
    // the dataplane).
    let out_frame = gre_frame(
        &udp4(DVR2, red_gw, "10.2.0.20", OUTSIDE, (5001, 53), 64),
        202,
        (CN2_UL_MAC, VTEP2),
        (NN1_UL_MAC, VTEP3),
    );
    let mut c2 = c;
    let n = c2
        .set_vtep_mac(Ipv4Addr::from(VTEP2), MacAddr(CN2_UL_MAC))
        .unwrap();
    let (v, _) = run(&n, &mut e, 0, &out_frame);
    assert_eq!(v, D::Forward(1));
    assert_eq!(e.nat.len(), 1);
    let applied = m
        .apply(&changes(
            json!([{"op": "router_set", "name": "r1", "admin_state_up": false}]),
        ))
        .unwrap();
    let n = c2.update(&m, &applied);
    e.burst(&n);
    assert_eq!(e.nat.len(), 0, "the router's sessions are flushed");
}

/// r1's SNAT traffic as cn2 tunnels it to nn1 over blue (VXLAN 101), from
/// cn2's DVR MAC to the router's blue interface; `inner` from `src`.
fn snat_from_cn2(m: &Model, src: &str, ports: (u16, u16), ttl: u8) -> (Vec<u8>, Vec<u8>) {
    let blue = gw_mac(m, "blue4");
    let inner = udp4(DVR2, blue, src, OUTSIDE, ports, ttl);
    let outer = vxlan_frame(&inner, 101, (CN2_UL_MAC, VTEP2), (NN1_UL_MAC, VTEP3));
    (inner, outer)
}

/// Runs `frames` in on nn1's underlay port in order, each twice: the way a
/// worker does (`run_snat_way`) and through the whole pipeline, each in its
/// own environment; both must agree byte for byte. Gives each frame's
/// outcome and whether the SNAT way took it.
fn snat_way_vs_pipeline(snap: &Snapshot, frames: &[Vec<u8>]) -> Vec<(D, Vec<u8>, bool)> {
    snat_way_vs_pipeline_in(snap, &mut (env(), env()), frames)
}

/// [`snat_way_vs_pipeline`] in the environments `envs` (the SNAT way's,
/// the whole pipeline's), as a worker runs one burst after another.
fn snat_way_vs_pipeline_in(
    snap: &Snapshot,
    (e_way, e_all): &mut (Env, Env),
    frames: &[Vec<u8>],
) -> Vec<(D, Vec<u8>, bool)> {
    frames
        .iter()
        .map(|f| {
            let ((v, out), taken) = run_snat_way(e_way, snap, 0, f);
            let (v2, out2) = run(snap, e_all, 0, f);
            assert_eq!(v, v2, "verdicts (SNAT way taken: {taken})");
            if leaves(v) {
                assert_eq!(out, out2, "frames out (SNAT way taken: {taken})");
            }
            assert!(!matches!(
                v,
                D::Answered { .. } | D::Flood { why: Some(_), .. }
            ));
            (v, out, taken)
        })
        .collect()
}

#[test]
fn snat_way_takes_the_common_case_as_the_pipeline_does() {
    let m = ns_model();
    let n = nn1(&m);
    let (gw, gw_router_mac) = router_gw(&m);
    let blue = gw_mac(&m, "blue4");
    let (_, udp) = snat_from_cn2(&m, "10.1.0.77", (5000, 53), 64);
    let mut tcp_inner = Vec::new();
    PacketBuilder::ethernet2(DVR2, blue)
        .ipv4(ip4("10.1.0.78"), ip4(OUTSIDE), 9)
        .tcp(41000, 443, 7, 64240)
        .ack(1)
        .write(&mut tcp_inner, PAYLOAD)
        .unwrap();
    let tcp = vxlan_frame(&tcp_inner, 101, (CN2_UL_MAC, VTEP1), (NN1_UL_MAC, VTEP3));
    let mut echo_inner = Vec::new();
    PacketBuilder::ethernet2(DVR2, blue)
        .ipv4(ip4("10.1.0.79"), ip4(OUTSIDE), 2)
        .icmpv4_echo_request(77, 1)
        .write(&mut echo_inner, PAYLOAD)
        .unwrap();
    let echo = vxlan_frame(&echo_inner, 101, (CN2_UL_MAC, VTEP2), (NN1_UL_MAC, VTEP3));
    let runs = snat_way_vs_pipeline(&n, &[udp.clone(), tcp, echo, udp]);
    let mut ext_ports = Vec::new();
    for (v, out, taken) in &runs {
        assert!(taken, "the SNAT way takes it");
        assert_eq!(*v, D::Forward(1));
        checksums_ok(out);
        assert_eq!(&out[0..12], &[UPSTREAM_MAC, gw_router_mac].concat()[..]);
        assert_eq!(
            ipv4_at(out, ethernet::HEADER_LEN + ipv4::field::SRC_ADDR.start),
            gw
        );
        ext_ports.push(be16(out, ethernet::HEADER_LEN + ipv4::HEADER_LEN));
    }
    // TTL 9 and 2 leave as 8 and 1; the UDP flow keeps its port.
    assert_eq!(runs[1].1[ethernet::HEADER_LEN + ipv4::field::TTL], 8);
    assert_eq!(runs[2].1[ethernet::HEADER_LEN + ipv4::field::TTL], 1);
    assert_eq!(ext_ports[0], ext_ports[3]);
}

#[test]
fn snat_way_leaves_every_other_frame_to_the_pipeline() {
    let m = ns_model();
    let n = nn1(&m);
    let blue = gw_mac(&m, "blue4");
    let (inner, good) = snat_from_cn2(&m, "10.1.0.77", (5000, 53), 64);
    let tunnel = |inner: &[u8], vni: u32, from: [u8; 4], to: [u8; 4]| {
        vxlan_frame(inner, vni, (CN2_UL_MAC, from), (NN1_UL_MAC, to))
    };
    let with_inner = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut i = inner.clone();
        edit(&mut i);
        tunnel(&i, 101, VTEP2, VTEP3)
    };
    let with_outer = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut o = good.clone();
        edit(&mut o);
        o
    };
    let inner_ip = tunnel::VXLAN_OVERHEAD + ethernet::HEADER_LEN;
    let cases: Vec<(&str, Vec<u8>, D)> = vec![
        (
            "bad outer checksum",
            with_outer(&|o| o[ethernet::HEADER_LEN + ipv4::field::CHECKSUM.start] ^= 1),
            D::Drop(R::BadIpv4Checksum),
        ),
        (
            "bad inner checksum",
            with_outer(&|o| o[inner_ip + 10] ^= 1),
            D::Drop(R::BadIpv4Checksum),
        ),
        (
            "inner TTL 1",
            tunnel(
                &snat_from_cn2(&m, "10.1.0.77", (5000, 53), 1).0,
                101,
                VTEP2,
                VTEP3,
            ),
            D::Drop(R::TtlExpired),
        ),
        (
            "unknown VNI",
            tunnel(&inner, 999, VTEP2, VTEP3),
            D::Drop(R::UnknownVni),
        ),
        (
            "red's GRE key as a VNI (a network without that VNI)",
            tunnel(&inner, 202, VTEP2, VTEP3),
            D::Drop(R::UnknownVni),
        ),
        (
            "unknown VTEP source",
            tunnel(&inner, 101, [192, 0, 2, 99], VTEP3),
            D::Drop(R::UnknownVtepSource),
        ),
        (
            "not this VTEP",
            tunnel(&inner, 101, VTEP2, VTEP1),
            D::Drop(R::NotForThisVtep),
        ),
        (
            "VXLAN I flag clear",
            with_outer(&|o| o[ethernet::HEADER_LEN + ipv4::HEADER_LEN + 8] = 0),
            D::Drop(R::BadVxlan),
        ),
        (
            "outer IP length beyond the frame",
            with_outer(&|o| {
                let l = be16(o, ethernet::HEADER_LEN + ipv4::field::LENGTH.start) + 1;
                o[l3(ipv4::field::LENGTH)].copy_from_slice(&l.to_be_bytes());
                fix_ipv4(o, ethernet::HEADER_LEN);
            }),
            D::Drop(R::MalformedIpv4),
        ),
        (
            "inner IP length beyond the frame",
            with_inner(&|i| {
                let l = be16(i, ethernet::HEADER_LEN + ipv4::field::LENGTH.start) + 1;
                i[l3(ipv4::field::LENGTH)].copy_from_slice(&l.to_be_bytes());
                fix_ipv4(i, ethernet::HEADER_LEN);
            }),
            D::Drop(R::MalformedIpv4),
        ),
        (
            "martian destination",
            with_inner(&|i| {
                i[l3(ipv4::field::DST_ADDR)].copy_from_slice(&[127, 0, 0, 1]);
                fix_ipv4(i, ethernet::HEADER_LEN);
            }),
            D::Drop(R::MartianDestination),
        ),
        (
            "a VM's MAC, not a DVR MAC (the router is not centralized here)",
            with_inner(&|i| i[6..12].copy_from_slice(&C_MAC)),
            D::Drop(R::NotLocalAfterDecap),
        ),
        (
            "a later fragment",
            with_inner(&|i| {
                i[l3(ipv4::field::FLAGS_OFFSET)].copy_from_slice(&[0, 8]);
                fix_ipv4(i, ethernet::HEADER_LEN);
            }),
            D::Drop(R::NatFragmentUnknown),
        ),
        (
            "a TCP header cut short",
            with_inner(&|i| {
                i[ethernet::HEADER_LEN + ipv4::field::PROTOCOL] = proto::TCP;
                i.truncate(ethernet::HEADER_LEN + ipv4::HEADER_LEN + 12);
                i[l3(ipv4::field::LENGTH)].copy_from_slice(&32u16.to_be_bytes());
                fix_ipv4(i, ethernet::HEADER_LEN);
            }),
            D::Drop(R::NatTruncated),
        ),
        (
            "a source with a floating IP (served on cn1)",
            snat_from_cn2(&m, "10.1.0.10", (5000, 53), 64).1,
            D::Drop(R::FipNotServedHere),
        ),
    ];
    // After a frame of the same tunnel took the SNAT way: what the worker
    // remembers of the tunnel leaves every check of the frame to be made.
    let envs = &mut (env(), env());
    assert!(snat_way_vs_pipeline_in(&n, envs, std::slice::from_ref(&good))[0].2);
    for (what, frame, want) in cases {
        let runs = snat_way_vs_pipeline_in(&n, envs, std::slice::from_ref(&frame));
        let (v, _, taken) = &runs[0];
        assert!(!taken, "{what}: the SNAT way must leave it to the pipeline");
        assert_eq!(*v, want, "{what}");
    }
    // A tunnel remembered as not leading here (red's VNI, where blue's
    // gateway MAC is no router interface) leaves the good tunnel's frames
    // to take the way still.
    let other = tunnel(&inner, 202, VTEP2, VTEP3);
    let runs = snat_way_vs_pipeline_in(&n, envs, &[other, good.clone()]);
    assert_eq!((runs[0].2, runs[1].2), (false, true));
    // A frame the SNAT way leaves to the pipeline that it forwards: IPv4
    // options inside.
    // The inner packet with 4 bytes of options (NOP, NOP, NOP, end).
    let mut opts = inner.clone();
    let at = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    opts.splice(at..at, [1, 1, 1, 0]);
    opts[ethernet::HEADER_LEN] = 0x46;
    let l = be16(&opts, ethernet::HEADER_LEN + ipv4::field::LENGTH.start) + 4;
    opts[l3(ipv4::field::LENGTH)].copy_from_slice(&l.to_be_bytes());
    opts[l3(ipv4::field::CHECKSUM)].copy_from_slice(&[0, 0]);
    let c = checksum(&opts[ethernet::HEADER_LEN..at + 4]);
    opts[l3(ipv4::field::CHECKSUM)].copy_from_slice(&c.to_be_bytes());
    assert_eq!(blue, opts[..6]);
    let runs = snat_way_vs_pipeline(&n, &[tunnel(&opts, 101, VTEP2, VTEP3)]);
    let (v, out, taken) = &runs[0];
    assert!(!taken, "IPv4 options: left to the pipeline");
    assert_eq!(*v, D::Forward(1), "IPv4 options");
    checksums_ok(out);
}

#[test]
fn snat_way_follows_a_table_change() {
    let m = ns_model();
    let (_, f) = snat_from_cn2(&m, "10.1.0.77", (5000, 53), 64);
    // One worker's environments throughout: what its SNAT way remembers of
    // the tunnel belongs to the snapshot it was found on.
    let envs = &mut (env(), env());
    let (v, out, taken) =
        snat_way_vs_pipeline_in(&nn1(&m), envs, std::slice::from_ref(&f)).remove(0);
    assert!(taken);
    assert_eq!((v, &out[0..6]), (D::Forward(1), &UPSTREAM_MAC[..]));
    // The upstream router's MAC changes: the next snapshot's frames leave to
    // the new one.
    let moved = [0x02, 0, 0, 0, 0, 0x77];
    let mut c = Compiler::new(&m, snat_node_ports());
    c.set_vtep_mac(Ipv4Addr::from(VTEP2), MacAddr(CN2_UL_MAC));
    let n2 = c
        .set_vtep_mac("203.0.113.1".parse().unwrap(), MacAddr(moved))
        .expect("publishes");
    let (v, out, taken) = snat_way_vs_pipeline_in(&n2, envs, std::slice::from_ref(&f)).remove(0);
    assert!(taken);
    assert_eq!((v, &out[0..6]), (D::Forward(1), &moved[..]));
    // SNAT disabled on the router: the pipeline drops it, the way does not
    // take it.
    let mut m2 = m.clone();
    m2.apply(&changes(json!([
        {"op": "router_set", "name": "r1", "external_gateway": {"network": "ext", "enable_snat": false}, "snat_host": "nn1"},
    ])))
    .expect("valid");
    let (v, _, taken) = snat_way_vs_pipeline_in(&nn1(&m2), envs, &[f]).remove(0);
    assert!(!taken);
    assert_eq!(v, D::Drop(R::NoSnat));
}

// ======== Path MTU on the north-south ways (fragmentation needed, RFC 1191).

/// A TCP segment with DF (etherparse sets it) whose IPv4 packet is `total`
/// bytes.
fn big_tcp4(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, total: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(ip4(src), ip4(dst), 64)
        .tcp(41000, 80, 1000, 64240)
        .ack(1)
        .write(&mut v, &vec![0x5a; total - 40])
        .unwrap();
    assert_eq!(v.len(), ethernet::HEADER_LEN + total);
    v
}

/// `f` with DF cleared (IPv4 header checksum fixed).
fn without_df(f: &[u8]) -> Vec<u8> {
    let mut f = f.to_vec();
    f[ethernet::HEADER_LEN + ipv4::field::FLAGS_OFFSET.start] &= !0x40;
    fix_ipv4(&mut f, ethernet::HEADER_LEN);
    f
}

/// Runs `frame` in on `in_port` with a fresh environment: its disposition
/// (with what the worker counts for it) and the frame out.
fn run_noted(snap: &Snapshot, in_port: u16, frame: &[u8]) -> (D, Vec<u8>) {
    run(snap, &mut env(), in_port, frame)
}

/// `out` is an Ethernet frame from `macs.1` to `macs.0` holding an ICMP
/// fragmentation needed with next-hop MTU `mtu` from `from` to `to`, both
/// checksums right, quoting the first bytes of `sent`'s IP packet (at most
/// 576 bytes of IP in all).
fn assert_frag_needed(
    out: &[u8],
    macs: ([u8; 6], [u8; 6]),
    (from, to): (&str, &str),
    mtu: u16,
    sent: &[u8],
) {
    assert_eq!(&out[..6], &macs.0, "destination MAC");
    assert_eq!(&out[6..12], &macs.1, "source MAC");
    let p = SlicedPacket::from_ethernet(out).expect("an IPv4 frame");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("IPv4: {out:02x?}")
    };
    let h = ip.header();
    assert_eq!(h.source_addr().to_string(), from, "ICMP source");
    assert_eq!(h.destination_addr().to_string(), to, "ICMP destination");
    assert_eq!(
        checksum(&out[l3(0..ipv4::HEADER_LEN)]),
        0,
        "IPv4 header checksum"
    );
    assert!(h.total_len() as usize <= 576, "at most 576 bytes");
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("ICMP: {out:02x?}")
    };
    assert_eq!(
        icmp.icmp_type(),
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu }
        )
    );
    assert_eq!(
        checksum(&out[ethernet::HEADER_LEN + ipv4::HEADER_LEN..]),
        0,
        "ICMP checksum"
    );
    let quote = &out[42..];
    assert!(!quote.is_empty());
    assert_eq!(
        quote,
        &sent[ethernet::HEADER_LEN..ethernet::HEADER_LEN + quote.len()],
        "the quote is what was sent, untranslated"
    );
}

/// `m` with the external network's MTU set to `mtu`.
fn ext_mtu(m: &Model, mtu: u16) -> Model {
    let mut m = m.clone();
    m.apply(&changes(
        json!([{"op": "network_set", "name": "ext", "mtu": mtu}]),
    ))
    .unwrap();
    m
}

#[test]
fn snat_traffic_too_big_for_the_overlay_is_answered_on_the_vm_host() {
    // b (red: GRE, MTU 1458) sends a full-size segment to the outside; it
    // has no floating IP, so it would go to nn1 over red's overlay.
    let m = ns_model();
    let s = cn1(&m);
    let red = gw_mac(&m, "red4");
    let mtu = m.networks["red"].mtu;
    let f = big_tcp4(B_MAC, red, "10.2.0.10", OUTSIDE, 1500);
    let (v, out) = run_noted(&s, VM_B, &f);
    assert_eq!(
        v,
        D::Answered {
            port: VM_B,
            why: R::FragmentationNeeded
        }
    );
    assert_frag_needed(&out, (B_MAC, red), ("10.2.0.1", "10.2.0.10"), mtu, &f);
    // Exactly the MTU fits; without DF it is dropped, counted.
    let fits = big_tcp4(B_MAC, red, "10.2.0.10", OUTSIDE, mtu as usize);
    assert_eq!(run_noted(&s, VM_B, &fits).0, D::Forward(UP));
    assert_eq!(
        run_noted(&s, VM_B, &without_df(&f)).0,
        D::Drop(R::MtuExceeded)
    );
}

#[test]
fn floating_ip_traffic_too_big_for_the_external_network_is_answered() {
    // ext's MTU lowered to 1400: a's (floating IP 203.0.113.50) 1450 bytes
    // to the outside are answered with the interface's address; the quote
    // is a's packet as it sent it (its fixed address, not the floating IP).
    let m = ext_mtu(&ns_model(), 1400);
    let s = cn1(&m);
    let blue = gw_mac(&m, "blue4");
    let f = big_tcp4(A_MAC, blue, "10.1.0.10", OUTSIDE, 1450);
    let (v, out) = run_noted(&s, VM_A, &f);
    assert_eq!(
        v,
        D::Answered {
            port: VM_A,
            why: R::FragmentationNeeded
        }
    );
    assert_frag_needed(&out, (A_MAC, blue), ("10.1.0.1", "10.1.0.10"), 1400, &f);
    let fits = big_tcp4(A_MAC, blue, "10.1.0.10", OUTSIDE, 1400);
    assert_eq!(run_noted(&s, VM_A, &fits).0, D::Forward(EXT));
    assert_eq!(
        run_noted(&s, VM_A, &without_df(&f)).0,
        D::Drop(R::MtuExceeded)
    );
}

#[test]
fn too_big_for_the_vm_network_from_outside_is_answered_with_the_quote_untranslated() {
    // Into a's floating IP on cn1: blue (VXLAN) has MTU 1450.
    let m = ns_model();
    let s = cn1(&m);
    let blue_mtu = m.networks["blue"].mtu;
    let f = big_tcp4(UPSTREAM_MAC, FG1, OUTSIDE, "203.0.113.50", 1500);
    let (v, out) = run_noted(&s, EXT, &f);
    assert_eq!(
        v,
        D::Answered {
            port: EXT,
            why: R::FragmentationNeeded
        }
    );
    assert_frag_needed(
        &out,
        (UPSTREAM_MAC, FG1),
        ("203.0.113.50", OUTSIDE),
        blue_mtu,
        &f,
    );
    let fits = big_tcp4(
        UPSTREAM_MAC,
        FG1,
        OUTSIDE,
        "203.0.113.50",
        blue_mtu as usize,
    );
    assert_eq!(run_noted(&s, EXT, &fits).0, D::Forward(VM_A));

    // Into an SNAT session on nn1: b's flow out, then a full-size answer
    // to the gateway address and port it left with.
    let n = nn1(&m);
    let mut e = env();
    let red = gw_mac(&m, "red4");
    let red_mtu = m.networks["red"].mtu;
    let inner = tcp4(DVR1, red, "10.2.0.10", OUTSIDE, (41000, 80), 64);
    let to_nn1 = gre_frame(&inner, 202, (UL_MAC, VTEP1), (NN1_UL_MAC, VTEP3));
    let (v, out) = run(&n, &mut e, NN1_UP, &to_nn1);
    assert_eq!(v, D::Forward(NN1_EXT));
    let ext_port = be16(&out, ethernet::HEADER_LEN + ipv4::HEADER_LEN);
    let (gw, gw_router_mac) = router_gw(&m);
    let mut back = Vec::new();
    PacketBuilder::ethernet2(UPSTREAM_MAC, gw_router_mac)
        .ipv4(ip4(OUTSIDE), gw.octets(), 64)
        .tcp(80, ext_port, 5000, 64240)
        .ack(1001)
        .write(&mut back, &vec![0xa5; 1500 - 40])
        .unwrap();
    let (v, out) = run(&n, &mut e, NN1_EXT, &back);
    assert_eq!(
        v,
        D::Answered {
            port: NN1_EXT,
            why: R::FragmentationNeeded
        }
    );
    assert_frag_needed(
        &out,
        (UPSTREAM_MAC, gw_router_mac),
        (&gw.to_string(), OUTSIDE),
        red_mtu,
        &back,
    );
    // The session still translates what fits.
    back.truncate(ethernet::HEADER_LEN + red_mtu as usize);
    let total = red_mtu.to_be_bytes();
    back[l3(ipv4::field::LENGTH)].copy_from_slice(&total);
    fix_ipv4(&mut back, ethernet::HEADER_LEN);
    let l4 = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    let sum = pseudo4(
        &back[l3(ipv4::field::SRC_ADDR)],
        &back[l3(ipv4::field::DST_ADDR)],
        (back.len() - l4) as u16,
        proto::TCP,
    );
    back[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
    let c = csum_fold(csum_add(sum, &back[l4..]));
    back[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    let (v, _) = run(&n, &mut e, NN1_EXT, &back);
    assert_eq!(v, D::Forward(NN1_UP));
}

#[test]
fn on_the_snat_node_too_big_for_the_outside_goes_back_over_the_overlay() {
    // ext's MTU lowered to 1400; g (10.1.0.30 on blue, on cn2, no floating
    // IP) sent 1450 bytes: they fit blue's overlay to nn1, not the outside.
    // nn1 answers g where it lives: routed back over blue (VXLAN 101) to
    // cn2, from nn1's DVR MAC to g's MAC.
    const G_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x10];
    let mut m = ext_mtu(&ns_model(), 1400);
    m.apply(&changes(json!([port(
        "g",
        "blue",
        G_MAC,
        "cn2",
        Some("vm-g"),
        &[("blue4", "10.1.0.30")]
    )])))
    .unwrap();
    let n = nn1(&m);
    let blue = gw_mac(&m, "blue4");
    let inner = big_tcp4(DVR2, blue, "10.1.0.30", OUTSIDE, 1450);
    let from_cn2 = vxlan_frame(&inner, 101, (CN2_UL_MAC, VTEP2), (NN1_UL_MAC, VTEP3));
    let (v, out) = run_noted(&n, NN1_UP, &from_cn2);
    assert_eq!(
        v,
        D::Answered {
            port: NN1_UP,
            why: R::FragmentationNeeded
        }
    );
    // The outer headers toward cn2; inside, the answer.
    let outer = tunnel::VXLAN_OVERHEAD;
    assert_eq!(&out[..6], &CN2_UL_MAC);
    assert_eq!(
        ipv4_at(&out, ethernet::HEADER_LEN + ipv4::field::DST_ADDR.start).octets(),
        VTEP2
    );
    assert_eq!(be32(&out, outer - 4) >> 8, 101, "VNI");
    assert_frag_needed(
        &out[outer..],
        (G_MAC, DVR3),
        ("10.1.0.1", "10.1.0.30"),
        1400,
        &inner,
    );
    // The SNAT way leaves it to the pipeline (without DF: dropped, counted);
    // what fits takes the way out.
    let fits = big_tcp4(DVR2, blue, "10.1.0.30", OUTSIDE, 1400);
    let fits = vxlan_frame(&fits, 101, (CN2_UL_MAC, VTEP2), (NN1_UL_MAC, VTEP3));
    let runs = snat_way_vs_pipeline(&n, &[without_df_inner(&from_cn2, outer), fits]);
    assert_eq!((runs[0].0, runs[0].2), (D::Drop(R::MtuExceeded), false));
    assert_eq!((runs[1].0, runs[1].2), (D::Forward(NN1_EXT), true));
}

/// `f` with DF cleared in the IPv4 header of its inner frame (at `at`).
fn without_df_inner(f: &[u8], at: usize) -> Vec<u8> {
    let mut f = f.to_vec();
    let inner = without_df(&f[at..]);
    f[at..].copy_from_slice(&inner);
    f
}

#[test]
fn hairpin_too_big_for_the_destination_network_is_answered() {
    // a → c's floating IP 203.0.113.51: c is on blue (MTU 1450) on cn2.
    let m = ns_model();
    let s = cn1(&m);
    let blue = gw_mac(&m, "blue4");
    let mtu = m.networks["blue"].mtu;
    let f = big_tcp4(A_MAC, blue, "10.1.0.10", "203.0.113.51", 1500);
    let (v, out) = run_noted(&s, VM_A, &f);
    assert_eq!(
        v,
        D::Answered {
            port: VM_A,
            why: R::FragmentationNeeded
        }
    );
    assert_frag_needed(&out, (A_MAC, blue), ("10.1.0.1", "10.1.0.10"), mtu, &f);
}

#[test]
fn a_centralized_router_answers_too_big_over_the_overlay() {
    // r1 centralized on nn1 (legacy); red's MTU lowered to 1400. a (blue,
    // on cn1) sends 1450 bytes to d (red, on cn2): they fit blue's overlay
    // to nn1, which routes them, but not red. nn1 answers a where it lives:
    // over blue (VXLAN 101) to cn1, from nn1's DVR MAC, from blue's gateway.
    let mut m = legacy_model();
    m.apply(&changes(
        json!([{"op": "network_set", "name": "red", "mtu": 1400}]),
    ))
    .unwrap();
    let n = nn1(&m);
    let blue = gw_mac(&m, "blue4");
    let f = big_tcp4(A_MAC, blue, "10.1.0.10", "10.2.0.20", 1450);
    let to_nn1 = vxlan_frame(&f, 101, (UL_MAC, VTEP1), (NN1_UL_MAC, VTEP3));
    let (v, out) = run_noted(&n, NN1_UP, &to_nn1);
    assert_eq!(
        v,
        D::Answered {
            port: NN1_UP,
            why: R::FragmentationNeeded
        }
    );
    assert_eq!(&out[..6], &UL_MAC);
    assert_eq!(
        ipv4_at(&out, ethernet::HEADER_LEN + ipv4::field::DST_ADDR.start).octets(),
        VTEP1
    );
    assert_frag_needed(
        &out[tunnel::VXLAN_OVERHEAD..],
        (A_MAC, DVR3),
        ("10.1.0.1", "10.1.0.10"),
        1400,
        &f,
    );

    // IPv6: packet too big, the same way back.
    let mut f6 = Vec::new();
    let blue6 = gw_mac(&m, "blue6");
    PacketBuilder::ethernet2(A_MAC, blue6)
        .ipv6(
            "2001:db8:1::10"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            "2001:db8:2::20"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            64,
        )
        .udp(5000, 7)
        .write(&mut f6, &vec![0x6b; 1450 - 48])
        .unwrap();
    let to_nn1 = vxlan_frame(&f6, 101, (UL_MAC, VTEP1), (NN1_UL_MAC, VTEP3));
    let (v, out) = run_noted(&n, NN1_UP, &to_nn1);
    assert_eq!(
        v,
        D::Answered {
            port: NN1_UP,
            why: R::FragmentationNeeded
        }
    );
    let inner = &out[tunnel::VXLAN_OVERHEAD..];
    assert_eq!(&inner[..12], &[A_MAC, DVR3].concat()[..]);
    let p = SlicedPacket::from_ethernet(inner).unwrap();
    let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
        panic!("IPv6: {inner:02x?}")
    };
    let gw6 = m.routers["r1"]
        .interfaces
        .iter()
        .find(|i| i.subnet == "blue6")
        .unwrap()
        .ip
        .to_string();
    assert_eq!(ip.header().source_addr().to_string(), gw6);
    assert_eq!(ip.header().destination_addr().to_string(), "2001:db8:1::10");
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!("ICMPv6: {inner:02x?}")
    };
    assert_eq!(
        icmp.icmp_type(),
        etherparse::Icmpv6Type::PacketTooBig { mtu: 1400 }
    );
    let h = ip.header();
    let sum = pseudo6(
        &h.source(),
        &h.destination(),
        u32::from(h.payload_length()),
        proto::ICMPV6,
    );
    assert_eq!(csum_fold(csum_add(sum, &inner[54..])), 0, "ICMPv6 checksum");
    assert_eq!(&inner[62..], &f6[14..14 + inner.len() - 62], "the quote");
}

/// The SNAT node never routes a frame from the overlay whose inner source
/// is its own router interface MAC or DVR MAC (the gateway MAC never
/// appears as a source on the fabric); nor does its SNAT way take it.
#[test]
fn the_snat_node_drops_frames_from_its_own_gateway_or_dvr_mac() {
    for (m, what) in [(ns_model(), "distributed"), (legacy_model(), "centralized")] {
        let n = nn1(&m);
        let blue = gw_mac(&m, "blue4");
        // What cn2 sends is taken (the SNAT way, or routed by the
        // centralized router).
        let from = if what == "distributed" { DVR2 } else { C_MAC };
        let inner = udp4(from, blue, "10.1.0.77", OUTSIDE, (5000, 53), 64);
        let f = vxlan_frame(&inner, 101, (CN2_UL_MAC, VTEP2), (NN1_UL_MAC, VTEP3));
        let ((v, _), _) = run_snat_way(&mut env(), &n, NN1_UP, &f);
        assert_eq!(v, D::Forward(1), "{what}: from {}", MacAddr(from));
        for src in [blue, DVR3] {
            let inner = udp4(src, blue, "10.1.0.77", OUTSIDE, (5000, 53), 64);
            let f = vxlan_frame(&inner, 101, (CN2_UL_MAC, VTEP2), (NN1_UL_MAC, VTEP3));
            let mut memo = Default::default();
            assert!(
                dvr::fastpath::snat_way(&n, &mut memo, &f).is_none(),
                "{what}: from {}: not the SNAT way",
                MacAddr(src)
            );
            assert_eq!(
                run1(&n, NN1_UP, &f).0,
                D::Drop(R::OverlayGatewayMac),
                "{what}: from {}",
                MacAddr(src)
            );
            assert_eq!(
                run_snat_way(&mut env(), &n, NN1_UP, &f).0 .0,
                D::Drop(R::OverlayGatewayMac)
            );
        }
    }
}

/// Seeds of the `icmp` fuzz target (`fuzz/corpus/icmp/`) for the ways the
/// pipeline seeds do not take: byte 0 the port, byte 1 the shape (0x80: on
/// nn1, the target's `snat_node_snapshot(&ns_model_pmtu())`; 0: on cn1,
/// `ns_snapshot(&ns_model())`), then the frame.
fn icmp_fuzz_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let m = ns_model_pmtu();
    let blue = gw_mac(&m, "blue4");
    // g's 1450 bytes fit blue's overlay to nn1, not the outside (MTU 1400).
    let inner = big_tcp4(DVR2, blue, "10.1.0.30", OUTSIDE, 1450);
    let from_cn2 = vxlan_frame(&inner, 101, (CN2_UL_MAC, VTEP2), (NN1_UL_MAC, VTEP3));
    // 1500 bytes from outside to a's floating IP: blue's MTU is 1450.
    let into_fip = big_tcp4(UPSTREAM_MAC, FG1, OUTSIDE, "203.0.113.50", 1500);
    // a's 1450 bytes to d through r1 centralized on nn1: red's MTU is 1400.
    let l = legacy_red_1400();
    let f = big_tcp4(A_MAC, gw_mac(&l, "blue4"), "10.1.0.10", "10.2.0.20", 1450);
    let to_nn1 = vxlan_frame(&f, 101, (UL_MAC, VTEP1), (NN1_UL_MAC, VTEP3));
    let with = |port: u16, shape: u8, f: &[u8]| {
        let mut v = vec![port as u8, shape];
        v.extend_from_slice(f);
        v
    };
    vec![
        ("nn1-overlay-too-big", with(NN1_UP, 0x80, &from_cn2)),
        ("cn1-outside-to-fip-too-big", with(EXT, 0, &into_fip)),
        ("nn1-legacy-too-big", with(0x80 | NN1_UP, 0x80, &to_nn1)),
    ]
}

/// [`legacy_model`] with red's MTU lowered to 1400: the `icmp` target's
/// third node.
fn legacy_red_1400() -> Model {
    let mut m = legacy_model();
    m.apply(&changes(
        json!([{"op": "network_set", "name": "red", "mtu": 1400}]),
    ))
    .unwrap();
    m
}

/// The `icmp` target's seeds are answered with fragmentation needed in its
/// environment: over the overlay on nn1, from the floating IP on cn1.
#[test]
fn icmp_fuzz_seeds_are_answered() {
    let nn1 = snat_node_snapshot(&ns_model_pmtu());
    let cn1 = ns_snapshot(&ns_model());
    let legacy = snat_node_snapshot(&legacy_red_1400());
    for (name, s) in icmp_fuzz_seeds() {
        let snap = match (s[1] & 0x80 != 0, s[0] & 0x80 != 0) {
            (false, _) => &cn1,
            (true, false) => &nn1,
            (true, true) => &legacy,
        };
        let port = u16::from(s[0] & 0x7f);
        let (v, out) = run_frame(snap, port, &s[2..]);
        assert_eq!(
            v,
            D::Answered {
                port,
                why: R::FragmentationNeeded
            },
            "{name}: back where it came from"
        );
        assert!(out.len() > ethernet::HEADER_LEN + 28, "{name}");
    }
}

/// Writes them: `cargo test --test nat_golden -- --ignored write_icmp_fuzz_seeds`.
#[test]
#[ignore]
fn write_icmp_fuzz_seeds() {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/icmp");
    std::fs::create_dir_all(&d).unwrap();
    for (name, s) in icmp_fuzz_seeds() {
        std::fs::write(d.join(name), s).unwrap();
    }
}

/// nn1 answers a frame from the overlay too big for the outside, but cannot
/// route the answer back to its sender (here: no port has its address): the
/// frame is dropped for that, counted once, not also as answered with
/// fragmentation needed. Found by the `icmp` fuzz target.
#[test]
fn too_big_on_the_snat_node_with_no_way_back_is_one_drop() {
    let m = ns_model_pmtu();
    let n = nn1(&m);
    let blue = gw_mac(&m, "blue4");
    for (src, why) in [
        ("10.1.0.99", R::NeighborUnknown),
        ("10.30.0.1", R::NeighborUnknown),
    ] {
        let inner = big_tcp4(DVR2, blue, src, OUTSIDE, 1450);
        let from_cn2 = vxlan_frame(&inner, 101, (CN2_UL_MAC, VTEP2), (NN1_UL_MAC, VTEP3));
        let (v, _) = run_noted(&n, NN1_UP, &from_cn2);
        assert_eq!(v, D::Drop(why), "from {src}");
    }
    // A centralized router on nn1, red's MTU lowered: from a host on blue
    // with no port, IPv6.
    let mut m = legacy_model();
    m.apply(&changes(
        json!([{"op": "network_set", "name": "red", "mtu": 1400}]),
    ))
    .unwrap();
    let n = nn1(&m);
    let mut f6 = Vec::new();
    PacketBuilder::ethernet2(A_MAC, gw_mac(&m, "blue6"))
        .ipv6(
            "2001:db8:1::99"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            "2001:db8:2::20"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            64,
        )
        .udp(5000, 7)
        .write(&mut f6, &vec![0x6b; 1450 - 48])
        .unwrap();
    let to_nn1 = vxlan_frame(&f6, 101, (UL_MAC, VTEP1), (NN1_UL_MAC, VTEP3));
    let (v, _) = run_noted(&n, NN1_UP, &to_nn1);
    assert!(matches!(v, D::Drop(_) | D::Punt(_)), "IPv6: {v:?}");
}
