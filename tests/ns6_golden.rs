//! IPv6 north-south golden tests (docs/BEHAVIOUR.md, section 3, IPv6):
//! crafted frames through the pipeline of a compute node (`cn1`) and of the
//! network node (`nn1`), the frames out compared byte for byte with frames
//! built by `etherparse`, every drop with its exact reason.
//!
//! The topology is `dvr::testkit`'s north-south one plus an IPv6 subnet on
//! the external network (2001:db8:ff::/64, upstream router 2001:db8:ff::1,
//! resolved to [`UPSTREAM_MAC`]), the router's gateway taking an address
//! there. IPv6 is routed, never translated: `distributed` (the default) out
//! of and in by the VM's host, from its FIP gateway MAC; `central` through
//! the router's SNAT node, from the gateway port's MAC.

use std::net::{IpAddr, Ipv6Addr};

use dvr::compile::Compiler;
use dvr::mac::MacAddr;
use dvr::model::Model;
use dvr::pipeline::{self, Disposition as D, Env, NoTrace, Notes, PuntKind};
use dvr::pkt::Frame;
use dvr::stats::DropReason as R;
use dvr::tables::{NodePorts, Snapshot};
use dvr::testkit::*;
use etherparse::{icmpv6, Icmpv6Type, PacketBuilder};
use serde_json::json;

const OUTSIDE: &str = "2001:db8:ffff::7";
const UPSTREAM6: &str = "2001:db8:ff::1";
const A6: &str = "2001:db8:1::10";
const PAYLOAD: &[u8] = b"north-south IPv6 golden payload";

fn model6() -> Model {
    let mut m = ns_model();
    m.apply(&changes(json!([
        {"op": "subnet_create", "name": "ext6", "network": "ext", "cidr": "2001:db8:ff::/64",
         "gateway_ip": UPSTREAM6},
        // The same gateway again: it takes an address of the new subnet.
        {"op": "router_set", "name": "r1", "external_gateway": {"network": "ext"}},
    ])))
    .expect("a valid IPv6 external subnet");
    m
}

fn central(mut m: Model) -> Model {
    m.apply(&changes(json!([
        {"op": "router_set", "name": "r1", "ipv6_north_south": "central"},
    ])))
    .expect("a valid mode");
    m
}

/// The snapshot of `m` on `ports` with the VTEPs `vteps` resolved and, when
/// `up6`, the IPv6 upstream router.
fn snap_of(m: &Model, ports: NodePorts, vteps: &[[u8; 4]], up6: bool) -> std::sync::Arc<Snapshot> {
    let mut c = Compiler::new(m, ports);
    for (i, v) in vteps.iter().enumerate() {
        c.set_vtep_mac((*v).into(), MacAddr([2, 0, 0, 0, 1, i as u8]));
    }
    c.set_vtep_mac([203, 0, 113, 1].into(), MacAddr(UPSTREAM_MAC));
    if up6 {
        // Taken only where the node asks for it (not a compute node when
        // central).
        c.set_nd_mac(UPSTREAM6.parse().unwrap(), MacAddr(UPSTREAM_MAC));
    }
    c.current().clone()
}

fn cn1(m: &Model) -> std::sync::Arc<Snapshot> {
    snap_of(m, ns_node(), &[VTEP2, VTEP3], true)
}

fn nn1(m: &Model) -> std::sync::Arc<Snapshot> {
    snap_of(m, snat_node_ports(), &[VTEP1, VTEP2], true)
}

fn gw6(m: &Model) -> (Ipv6Addr, [u8; 6]) {
    let g = m.routers["r1"].gateway.as_ref().expect("gateway");
    let ip = g
        .ips
        .iter()
        .find_map(|f| match f.ip {
            IpAddr::V6(a) => Some(a),
            _ => None,
        })
        .expect("an IPv6 gateway address");
    (ip, g.mac.0)
}

fn udp6(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, hop: u8) -> Vec<u8> {
    udp6_packet(src_mac, dst_mac, src, dst, (40000, 8080), hop, PAYLOAD)
}

fn big6(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, ip_len: usize) -> Vec<u8> {
    let payload = vec![0x5a; ip_len - 40 - 8];
    udp6_packet(src_mac, dst_mac, src, dst, (40000, 8080), 64, &payload)
}

fn run(snap: &Snapshot, env: &mut Env, in_port: u16, frame: &[u8]) -> (D, Vec<u8>) {
    env.burst(snap);
    let mut buf = vec![0u8; 128 + frame.len() + 256];
    buf[128..128 + frame.len()].copy_from_slice(frame);
    let mut f = Frame::new(&mut buf, 128, frame.len()).unwrap();
    let v = pipeline::process(snap, env, in_port, &mut f, &mut NoTrace);
    (v, f.data().to_vec())
}

/// [`run`] with a fresh environment; the tracer sees the same.
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

/// `f` with its hop limit made `hop` and its MACs `dst`, `src`.
fn hopped(f: &[u8], dst: [u8; 6], src: [u8; 6], hop: u8) -> Vec<u8> {
    let mut v = f.to_vec();
    v[0..6].copy_from_slice(&dst);
    v[6..12].copy_from_slice(&src);
    v[14 + 7] = hop;
    v
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

fn na(from_mac: [u8; 6], target: &str, to_mac: [u8; 6], to: &str, router: bool) -> Vec<u8> {
    let mut body = ip6(target).to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&from_mac);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(from_mac, to_mac)
        .ipv6(ip6(target), ip6(to), 255)
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

/// ICMPv6 error `ty` about `orig` from `from` (`from_mac`) back to its
/// source at `to_mac`.
fn icmp6_err(
    from_mac: [u8; 6],
    to_mac: [u8; 6],
    from: &str,
    orig: &[u8],
    ty: Icmpv6Type,
) -> Vec<u8> {
    let src: [u8; 16] = orig[14 + 8..14 + 24].try_into().unwrap();
    let quote = &orig[14..orig.len().min(14 + 576 - 48)];
    let mut v = Vec::new();
    PacketBuilder::ethernet2(from_mac, to_mac)
        .ipv6(ip6(from), src, 64)
        .icmpv6(ty)
        .write(&mut v, quote)
        .unwrap();
    v
}

fn blue_mac(m: &Model) -> [u8; 6] {
    iface_mac(m, "r1", "blue6").0
}

#[test]
fn the_gateway_takes_an_ipv6_address_and_the_mode_is_not_serialised_unset() {
    let m = model6();
    let (ip, _) = gw6(&m);
    assert!("2001:db8:ff::/64"
        .parse::<ipnet::Ipv6Net>()
        .unwrap()
        .contains(&ip));
    let r = serde_json::to_value(&m.routers["r1"]).unwrap();
    assert!(r.get("ipv6_north_south").is_none(), "{r}");
    let r = serde_json::to_value(&central(m).routers["r1"]).unwrap();
    assert_eq!(r["ipv6_north_south"], "central");
}

#[test]
fn distributed_out_of_the_vm_hosts_external_port() {
    let m = model6();
    let snap = cn1(&m);
    let f = udp6(A_MAC, blue_mac(&m), A6, OUTSIDE, 64);
    let (v, out) = run1(&snap, VM_A, &f);
    assert_eq!(v, D::Forward(EXT));
    assert_eq!(out, hopped(&f, UPSTREAM_MAC, FG1, 63));
}

#[test]
fn distributed_in_to_the_vm_from_the_external_port() {
    let m = model6();
    let snap = cn1(&m);
    let f = udp6(UPSTREAM_MAC, FG1, OUTSIDE, A6, 64);
    let (v, out) = run1(&snap, EXT, &f);
    assert_eq!(v, D::Forward(VM_A));
    assert_eq!(out, hopped(&f, A_MAC, blue_mac(&m), 63));
    // Sent to another MAC than the FIP gateway port's.
    let (v, _) = run1(
        &snap,
        EXT,
        &udp6(UPSTREAM_MAC, [2, 0, 0, 0, 0, 0x77], OUTSIDE, A6, 64),
    );
    assert_eq!(v, D::Drop(R::ExternalWrongMac));
    // Port d (2001:db8:2::20) is on cn2: not served here.
    let (v, _) = run1(
        &snap,
        EXT,
        &udp6(UPSTREAM_MAC, FG1, OUTSIDE, "2001:db8:2::20", 64),
    );
    assert_eq!(v, D::Drop(R::ExternalNotServed));
    // A link-local source is never routed.
    let (v, _) = run1(&snap, EXT, &udp6(UPSTREAM_MAC, FG1, "fe80::1", A6, 64));
    assert_eq!(v, D::Drop(R::MartianSource));
}

#[test]
fn nd_proxy_answers_for_this_hosts_vms_only() {
    let m = model6();
    let snap = cn1(&m);
    let (v, out) = run1(&snap, EXT, &ns(UPSTREAM_MAC, UPSTREAM6, A6));
    assert_eq!(v, D::Forward(EXT));
    assert_eq!(out, na(FG1, A6, UPSTREAM_MAC, UPSTREAM6, false));
    // d is on cn2, the gateway address is the SNAT node's (central only).
    for target in ["2001:db8:2::20".to_string(), gw6(&m).0.to_string()] {
        let (v, _) = run1(&snap, EXT, &ns(UPSTREAM_MAC, UPSTREAM6, &target));
        assert_eq!(v, D::Drop(R::NdUnknownTarget), "{target}");
    }
}

#[test]
fn a_moved_port_moves_the_nd_proxy_and_the_way_in() {
    let mut m = model6();
    m.apply(&changes(json!([
        {"op": "port_set", "name": "d", "host": "cn1", "binding": "vm-b"},
        {"op": "port_set", "name": "b", "host": "cn2"},
    ])))
    .expect("a valid move");
    let snap = cn1(&m);
    let (v, out) = run1(&snap, EXT, &ns(UPSTREAM_MAC, UPSTREAM6, "2001:db8:2::20"));
    assert_eq!(v, D::Forward(EXT));
    assert_eq!(
        out,
        na(FG1, "2001:db8:2::20", UPSTREAM_MAC, UPSTREAM6, false)
    );
    let (v, _) = run1(&snap, EXT, &ns(UPSTREAM_MAC, UPSTREAM6, "2001:db8:2::10"));
    assert_eq!(v, D::Drop(R::NdUnknownTarget));
    let f = udp6(UPSTREAM_MAC, FG1, OUTSIDE, "2001:db8:2::20", 64);
    let (v, out) = run1(&snap, EXT, &f);
    assert_eq!(v, D::Forward(VM_B));
    assert_eq!(out, hopped(&f, D_MAC, iface_mac(&m, "r1", "red6").0, 63));
}

#[test]
fn upstream_advertisements_go_to_the_resolver_and_other_nd_is_dropped() {
    let m = model6();
    let snap = cn1(&m);
    let mut e = env();
    let (v, _) = run(
        &snap,
        &mut e,
        EXT,
        &na(UPSTREAM_MAC, UPSTREAM6, FG1, "fe80::1", true),
    );
    assert_eq!(v, D::Punt(PuntKind::ArpReply));
    assert_eq!(
        e.learned,
        Some((UPSTREAM6.parse().unwrap(), MacAddr(UPSTREAM_MAC)))
    );
    // A router advertisement of the upstream router.
    let mut ra = Vec::new();
    PacketBuilder::ethernet2(UPSTREAM_MAC, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(ip6("fe80::1"), ip6("ff02::1"), 255)
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: 134,
            code_u8: 0,
            bytes5to8: [64, 0, 7, 8],
        })
        .write(&mut ra, &[0; 8])
        .unwrap();
    let (v, _) = run1(&snap, EXT, &ra);
    assert_eq!(v, D::Drop(R::ExternalNdIgnored));
    // An advertisement with a broken checksum, or a hop limit not 255, is
    // not learned.
    let mut bad = na(UPSTREAM_MAC, UPSTREAM6, FG1, "fe80::1", true);
    bad[14 + 40 + 2] ^= 0xff;
    let mut e = env();
    assert_eq!(run(&snap, &mut e, EXT, &bad).0, D::Drop(R::MalformedNd));
    assert_eq!(e.learned, None);
    let mut far = na(UPSTREAM_MAC, UPSTREAM6, FG1, "fe80::1", true);
    far[14 + 7] = 254;
    assert_eq!(run1(&snap, EXT, &far).0, D::Drop(R::MalformedNd));
    // An IPv6 header cut short.
    let f = udp6(UPSTREAM_MAC, FG1, OUTSIDE, A6, 64);
    assert_eq!(run1(&snap, EXT, &f[..14 + 30]).0, D::Drop(R::MalformedIpv6));
}

#[test]
fn unresolved_upstream_and_no_external_port_are_counted() {
    let m = model6();
    let snap = snap_of(&m, ns_node(), &[VTEP2, VTEP3], false);
    let (v, _) = run1(&snap, VM_A, &udp6(A_MAC, blue_mac(&m), A6, OUTSIDE, 64));
    assert_eq!(v, D::Drop(R::UpstreamUnresolved));
    // cn1 without an external port.
    let snap = snapshot(&m);
    let (v, _) = run1(&snap, VM_A, &udp6(A_MAC, blue_mac(&m), A6, OUTSIDE, 64));
    assert_eq!(v, D::Drop(R::NoExternalPath));
}

#[test]
fn hop_limit_and_packet_too_big_both_ways() {
    let mut m = model6();
    m.apply(&changes(
        json!([{"op": "network_set", "name": "ext", "mtu": 1400}]),
    ))
    .unwrap();
    let snap = cn1(&m);
    let bm = blue_mac(&m);
    let gw_blue = "2001:db8:1::1";
    // Out: hop limit 1 expires in the router, as east-west.
    let f = udp6(A_MAC, bm, A6, OUTSIDE, 1);
    let (v, out) = run1(&snap, VM_A, &f);
    assert_eq!(
        v,
        D::Answered {
            port: VM_A,
            why: R::TtlExpired
        }
    );
    let te = Icmpv6Type::TimeExceeded(icmpv6::TimeExceededCode::HopLimitExceeded);
    assert_eq!(out, icmp6_err(bm, A_MAC, gw_blue, &f, te));
    // Out: too big for the external network (1400).
    let f = big6(A_MAC, bm, A6, OUTSIDE, 1401);
    let (v, out) = run1(&snap, VM_A, &f);
    assert_eq!(
        v,
        D::Answered {
            port: VM_A,
            why: R::FragmentationNeeded
        }
    );
    assert_eq!(
        out,
        icmp6_err(
            bm,
            A_MAC,
            gw_blue,
            &f,
            Icmpv6Type::PacketTooBig { mtu: 1400 }
        )
    );
    let (v, _) = run1(&snap, VM_A, &big6(A_MAC, bm, A6, OUTSIDE, 1400));
    assert_eq!(v, D::Forward(EXT));
    // In: hop limit 1, answered from the router's address on the VM's
    // subnet, out of the external port from the FIP gateway MAC.
    let f = udp6(UPSTREAM_MAC, FG1, OUTSIDE, A6, 1);
    let (v, out) = run1(&snap, EXT, &f);
    assert_eq!(
        v,
        D::Answered {
            port: EXT,
            why: R::TtlExpired
        }
    );
    assert_eq!(out, icmp6_err(FG1, UPSTREAM_MAC, gw_blue, &f, te));
    // In: too big for blue (VXLAN, 1450).
    let f = big6(UPSTREAM_MAC, FG1, OUTSIDE, A6, 1451);
    let (v, out) = run1(&snap, EXT, &f);
    assert_eq!(
        v,
        D::Answered {
            port: EXT,
            why: R::FragmentationNeeded
        }
    );
    assert_eq!(
        out,
        icmp6_err(
            FG1,
            UPSTREAM_MAC,
            gw_blue,
            &f,
            Icmpv6Type::PacketTooBig { mtu: 1450 }
        )
    );
}

#[test]
fn central_compute_node_sends_to_the_snat_node_over_the_overlay() {
    let m = central(model6());
    let snap = cn1(&m);
    let f = udp6(A_MAC, blue_mac(&m), A6, OUTSIDE, 64);
    let (v, out) = run1(&snap, VM_A, &f);
    assert_eq!(v, D::Forward(UP));
    // Unrouted (hop limit kept), from cn1's DVR MAC to the router's
    // interface, inside VXLAN 101 to nn1.
    let inner = &out[out.len() - f.len()..];
    assert_eq!(inner, hopped(&f, blue_mac(&m), DVR1, 64));
    assert_eq!(&out[14 + 16..14 + 20], &VTEP3);
    // Too big for the overlay to the SNAT node (blue: 1450): answered here.
    let f = big6(A_MAC, blue_mac(&m), A6, OUTSIDE, 1451);
    let (v, out) = run1(&snap, VM_A, &f);
    assert_eq!(
        v,
        D::Answered {
            port: VM_A,
            why: R::FragmentationNeeded
        }
    );
    assert_eq!(
        out,
        icmp6_err(
            blue_mac(&m),
            A_MAC,
            "2001:db8:1::1",
            &f,
            Icmpv6Type::PacketTooBig { mtu: 1450 }
        )
    );
    // Nothing is served on the compute node's external port.
    let (v, _) = run1(&snap, EXT, &ns(UPSTREAM_MAC, UPSTREAM6, A6));
    assert_eq!(v, D::Drop(R::NdUnknownTarget));
    let (v, _) = run1(&snap, EXT, &udp6(UPSTREAM_MAC, FG1, OUTSIDE, A6, 64));
    assert_eq!(v, D::Drop(R::ExternalNotServed));
}

#[test]
fn central_snat_node_routes_out_and_in_from_the_gateway() {
    let m = central(model6());
    let snap = nn1(&m);
    let (gw, gmac) = gw6(&m);
    let gw = gw.to_string();
    // Neighbour solicitation for the gateway's IPv6 address: a router.
    let (v, out) = run1(&snap, NN1_EXT, &ns(UPSTREAM_MAC, UPSTREAM6, &gw));
    assert_eq!(v, D::Forward(NN1_EXT));
    assert_eq!(out, na(gmac, &gw, UPSTREAM_MAC, UPSTREAM6, true));
    // An echo request to the gateway's address is answered.
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(UPSTREAM_MAC, gmac)
        .ipv6(ip6(OUTSIDE), ip6(&gw), 61)
        .icmpv6_echo_request(7, 1)
        .write(&mut ping, PAYLOAD)
        .unwrap();
    let mut pong = Vec::new();
    PacketBuilder::ethernet2(gmac, UPSTREAM_MAC)
        .ipv6(ip6(&gw), ip6(OUTSIDE), 64)
        .icmpv6_echo_reply(7, 1)
        .write(&mut pong, PAYLOAD)
        .unwrap();
    assert_eq!(run1(&snap, NN1_EXT, &ping), (D::Forward(NN1_EXT), pong));
    // The tenant addresses are reached through the gateway, not answered.
    let (v, _) = run1(&snap, NN1_EXT, &ns(UPSTREAM_MAC, UPSTREAM6, A6));
    assert_eq!(v, D::Drop(R::NdUnknownTarget));
    // In: to a (on cn1), routed and sent over the overlay from nn1's DVR MAC.
    let f = udp6(UPSTREAM_MAC, gmac, OUTSIDE, A6, 64);
    let (v, out) = run1(&snap, NN1_EXT, &f);
    assert_eq!(v, D::Forward(NN1_UP));
    let inner = &out[out.len() - f.len()..];
    assert_eq!(inner, hopped(&f, A_MAC, DVR3, 63));
    assert_eq!(&out[14 + 16..14 + 20], &VTEP1);
    // Out: from cn1 over the overlay (unrouted, from its DVR MAC), routed
    // here out of the external port from the gateway port's MAC.
    let inner = udp6(DVR1, blue_mac(&m), A6, OUTSIDE, 64);
    let (v, out) = run1(
        &snap,
        NN1_UP,
        &vxlan_from(&inner, 101, VTEP1, [2, 0, 0, 0, 1, 0]),
    );
    assert_eq!(v, D::Forward(NN1_EXT));
    assert_eq!(out, hopped(&inner, UPSTREAM_MAC, gmac, 63));
}

/// A VXLAN frame from `vtep` (its underlay MAC `mac`) to nn1 around `inner`.
fn vxlan_from(inner: &[u8], vni: u32, vtep: [u8; 4], mac: [u8; 6]) -> Vec<u8> {
    let mut hdr = vec![0x08, 0, 0, 0];
    hdr.extend_from_slice(&(vni << 8).to_be_bytes());
    hdr.extend_from_slice(inner);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac, NN1_UL_MAC)
        .ipv4(vtep, VTEP3, 64)
        .udp(50000, 4789)
        .write(&mut v, &hdr)
        .unwrap();
    v[40] = 0;
    v[41] = 0;
    v
}

/// What the resolver sends: its solicitation for the upstream router (from
/// the link-local address of the FIP gateway MAC) and its unsolicited
/// advertisement of a VM's address are well formed, as another node's
/// pipeline reads them: the solicitation of a VM's address is answered, the
/// advertisement taken.
#[test]
fn the_resolvers_solicitation_and_advertisement_are_well_formed() {
    use dvr::wire::nd;
    let m = model6();
    let snap = cn1(&m);
    let mut frame = [0u8; nd::FRAME_LEN];
    let from = dvr::tables::eui64_link_local(MacAddr(UPSTREAM_MAC));
    nd::write_solicit_frame(&mut frame, &UPSTREAM_MAC, from, A6.parse().unwrap());
    assert_eq!(frame.to_vec(), ns(UPSTREAM_MAC, &from.to_string(), A6));
    let (v, _) = run1(&snap, EXT, &frame);
    assert_eq!(v, D::Forward(EXT));
    nd::write_unsolicited_advert_frame(&mut frame, &UPSTREAM_MAC, UPSTREAM6.parse().unwrap(), true);
    let mut e = env();
    let (v, _) = run(&snap, &mut e, EXT, &frame);
    assert_eq!(v, D::Punt(PuntKind::ArpReply));
    assert_eq!(
        e.learned,
        Some((UPSTREAM6.parse().unwrap(), MacAddr(UPSTREAM_MAC)))
    );
    let mut want = Vec::new();
    let mut body = ip6(UPSTREAM6).to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&UPSTREAM_MAC);
    PacketBuilder::ethernet2(UPSTREAM_MAC, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(ip6(UPSTREAM6), ip6("ff02::1"), 255)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(
            icmpv6::NeighborAdvertisementHeader {
                router: true,
                solicited: false,
                r#override: true,
            },
        ))
        .write(&mut want, &body)
        .unwrap();
    assert_eq!(frame.to_vec(), want);
}

/// A port moving to this node (and one moving away), compiled
/// incrementally: the node's IPv6 addresses follow, as compiled whole.
#[test]
fn a_moved_port_is_followed_by_the_incremental_compile() {
    let mut m = model6();
    let mut c = Compiler::new(&m, ns_node());
    let applied = m
        .apply(&changes(json!([
            {"op": "port_set", "name": "d", "host": "cn1", "binding": "vm-b"},
            {"op": "port_set", "name": "b", "host": "cn2"},
        ])))
        .expect("a valid move");
    let inc = c.update(&m, &applied);
    let mut got: Vec<_> = inc.ext.iter6().map(|(a, _)| a).collect();
    got.sort();
    let full = cn1(&m);
    let mut want: Vec<_> = full.ext.iter6().map(|(a, _)| a).collect();
    want.sort();
    assert_eq!(got, want);
    let want6: Vec<Ipv6Addr> = ["2001:db8:1::10", "2001:db8:2::20", "2001:db8:3::10"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(got, want6);
    // A floating IP association alone leaves the IPv6 addresses shared.
    let applied = m
        .apply(&changes(json!([
            {"op": "floating_ip_create", "network": "ext", "address": "203.0.113.52", "port": "e"},
        ])))
        .unwrap();
    let after = c.update(&m, &applied);
    assert!(after
        .ext
        .get(std::net::Ipv4Addr::new(203, 0, 113, 52))
        .is_some());
    assert!(after.ext.same6(&inc.ext));
    // And back to central: nothing served on a compute node.
    let applied = m
        .apply(&changes(json!([
            {"op": "router_set", "name": "r1", "ipv6_north_south": "central"},
        ])))
        .unwrap();
    assert_eq!(c.update(&m, &applied).ext.iter6().count(), 0);
}
