//! Golden tests of IPv6 configuration on the VM's own host (docs/BEHAVIOUR.md
//! section 6): router solicitations answered with the router's
//! advertisement, DHCPv6 client messages answered, both built and read with
//! `etherparse` (Ethernet, IPv6, ICMPv6 or UDP, checksums checked) and the
//! messages read by offset as RFC 4861 and RFC 8415 lay them out.
//!
//! The node is the golden tests' `cn1`. [`v6_model`] gives network `blue`
//! (VXLAN, MTU 1450) two more IPv6 subnets on router `r1`: `slaac6`
//! (2001:db8:a::/64, slaac) and `state6` (2001:db8:b::/64,
//! dhcpv6-stateful), and port `a` (VM port `vm-a`) an address on each: its
//! EUI-64 one on `slaac6`, 2001:db8:b::10 on `state6`.

use std::net::{Ipv4Addr, Ipv6Addr};

use dvr::compile::Compiler;
use dvr::mac::MacAddr;
use dvr::model::Model;
use dvr::pipeline::{self, Disposition as D, Env, NoTrace, Notes};
use dvr::pkt::Frame;
use dvr::stats::DropReason as R;
use dvr::tables::eui64_link_local;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use serde_json::{json, Value};

use dvr::testkit::*;

const SOLICIT: u8 = 1;
const ADVERTISE: u8 = 2;
const REQUEST: u8 = 3;
const CONFIRM: u8 = 4;
const RENEW: u8 = 5;
const REBIND: u8 = 6;
const REPLY: u8 = 7;
const RELEASE: u8 = 8;
const DECLINE: u8 = 9;
const INFORMATION_REQUEST: u8 = 11;

const XID: [u8; 3] = [0xab, 0xcd, 0xef];
const IAID: [u8; 4] = [0, 0, 0, 0x2a];
const CLIENT_DUID: [u8; 14] = [
    0, 1, 0, 1, 0x2c, 0x1d, 0x0e, 0x0f, 0xfa, 0x16, 0x3e, 0, 0, 0x0a,
];

/// The EUI-64 address of A_MAC in 2001:db8:a::/64.
const A_SLAAC: &str = "2001:db8:a::f816:3eff:fe00:a";

fn with(mut m: Model, extra: Value) -> Model {
    m.apply(&changes(extra)).expect("valid changes");
    m
}

fn v6_subnets(m: Model, modes: &[(&str, &str, &str)]) -> Model {
    let mut ch = Vec::new();
    for (name, cidr, mode) in modes {
        ch.push(
            json!({"op": "subnet_create", "name": name, "network": "blue", "cidr": cidr,
            "ipv6_ra_mode": mode, "ipv6_address_mode": mode,
            "dns_nameservers": ["2001:db8::53", "2001:db8::54", "192.0.2.53"]}),
        );
        ch.push(json!({"op": "router_add_subnet", "router": "r1", "subnet": name}));
    }
    ch.push(json!({"op": "port_delete", "name": "a"}));
    let mut ips = vec![json!({"subnet": "blue4", "ip": "10.1.0.10"})];
    for (name, _, mode) in modes {
        ips.push(if *mode == "dhcpv6-stateful" {
            json!({"subnet": name, "ip": "2001:db8:b::10"})
        } else {
            json!({"subnet": name})
        });
    }
    ch.push(json!({"op": "port_create", "name": "a", "network": "blue",
        "mac": MacAddr(A_MAC).to_string(), "host": "cn1", "binding": "vm-a", "fixed_ips": ips}));
    with(m, Value::Array(ch))
}

fn v6_model() -> Model {
    v6_subnets(
        model(),
        &[
            ("slaac6", "2001:db8:a::/64", "slaac"),
            ("state6", "2001:db8:b::/64", "dhcpv6-stateful"),
        ],
    )
}

fn run(m: &Model, frame: &[u8]) -> (D, Vec<u8>) {
    let mut c = Compiler::new(m, node());
    let snap = c
        .set_vtep_mac(Ipv4Addr::from(VTEP2), MacAddr(CN2_UL_MAC))
        .unwrap_or_else(|| c.current().clone());
    let mut buf = vec![0u8; 128 + frame.len() + 512];
    buf[128..128 + frame.len()].copy_from_slice(frame);
    let mut f = Frame::new(&mut buf, 128, frame.len()).unwrap();
    let mut env = Env::new(|| 0, 1_000_000);
    let d = pipeline::process(&snap, &mut env, VM_A, &mut f, &mut NoTrace);
    // The tracer sees the same decision.
    let mut buf2 = vec![0u8; 128 + frame.len() + 512];
    buf2[128..128 + frame.len()].copy_from_slice(frame);
    let mut f2 = Frame::new(&mut buf2, 128, frame.len()).unwrap();
    let mut notes = Notes::default();
    let d2 = pipeline::process(&snap, &mut env, VM_A, &mut f2, &mut notes);
    assert_eq!(d, d2, "trace and workers agree: {:?}", notes.0);
    (d, f.data().to_vec())
}

fn a_ll() -> [u8; 16] {
    eui64_link_local(MacAddr(A_MAC)).octets()
}

fn ll_of(mac: MacAddr) -> [u8; 16] {
    eui64_link_local(mac).octets()
}

const ALL_ROUTERS: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// A router solicitation from `src` (with a source link-layer address
/// option when `sllao`) to all routers, hop limit `hop`.
fn rs(src: [u8; 16], sllao: bool, hop: u8) -> Vec<u8> {
    let mut opts = Vec::new();
    if sllao {
        opts.extend([1, 1]);
        opts.extend(A_MAC);
    }
    let b = PacketBuilder::ethernet2(A_MAC, [0x33, 0x33, 0, 0, 0, 2])
        .ipv6(src, ALL_ROUTERS, hop)
        .icmpv6_raw(133, 0, [0; 4]);
    let mut out = Vec::new();
    b.write(&mut out, &opts).unwrap();
    out
}

/// A router advertisement read: addresses, the message's fixed part, its
/// options (type, bytes after type and length).
struct Ra {
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    hop: u8,
    msg: Vec<u8>,
    options: Vec<(u8, Vec<u8>)>,
}

impl Ra {
    fn read(frame: &[u8]) -> Ra {
        let p = SlicedPacket::from_ethernet(frame).expect("a well-formed frame");
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link.as_ref() else {
            panic!("not Ethernet II");
        };
        let Some(NetSlice::Ipv6(ip)) = p.net.as_ref() else {
            panic!("not IPv6");
        };
        let h = ip.header().to_header();
        let Some(TransportSlice::Icmpv6(icmp)) = p.transport.as_ref() else {
            panic!("not ICMPv6");
        };
        assert!(
            icmp.is_checksum_valid(h.source, h.destination),
            "ICMPv6 checksum"
        );
        let msg = icmp.slice().to_vec();
        assert_eq!((msg[0], msg[1]), (134, 0), "a router advertisement");
        let mut options = Vec::new();
        let mut o = &msg[16..];
        while !o.is_empty() {
            let n = o[1] as usize * 8;
            assert!(n > 0 && n <= o.len(), "option {o:?}");
            options.push((o[0], o[2..n].to_vec()));
            o = &o[n..];
        }
        Ra {
            eth_dst: eth.destination(),
            eth_src: eth.source(),
            src: h.source,
            dst: h.destination,
            hop: h.hop_limit,
            msg,
            options,
        }
    }

    fn all(&self, kind: u8) -> Vec<&[u8]> {
        self.options
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

/// A prefix information option's bytes after type and length.
fn prefix(p: &str, flags: u8) -> Vec<u8> {
    let mut v = vec![64, flags];
    v.extend(86_400u32.to_be_bytes());
    v.extend(14_400u32.to_be_bytes());
    v.extend([0; 4]);
    v.extend(p.parse::<Ipv6Addr>().unwrap().octets());
    v
}

#[test]
fn a_solicitation_gets_the_routers_advertisement_of_every_prefix() {
    let m = v6_model();
    assert_eq!(
        m.ports["a"].fixed_ips[1].ip,
        A_SLAAC.parse::<Ipv6Addr>().unwrap(),
        "a slaac subnet's port address is its EUI-64 one"
    );
    let gw = iface_mac(&m, "r1", "slaac6");
    let (d, out) = run(&m, &rs(a_ll(), true, 255));
    assert_eq!(d, D::Forward(VM_A), "answered to the port");
    let r = Ra::read(&out);
    assert_eq!(r.eth_dst, A_MAC, "unicast to the solicitor");
    assert_eq!(r.eth_src, gw.0, "from the router interface's MAC");
    assert_eq!(r.src, ll_of(gw), "from its EUI-64 link-local address");
    assert_eq!(r.dst, a_ll());
    assert_eq!(r.hop, 255);
    assert_eq!(r.msg[4], 64, "current hop limit");
    assert_eq!(r.msg[5], 0x80, "M: a dhcpv6-stateful subnet; no O");
    assert_eq!(r.msg[6..8], 1800u16.to_be_bytes(), "router lifetime");
    assert_eq!(r.msg[8..16], [0; 8], "reachable time, retrans timer");
    let mut sll = gw.0.to_vec();
    assert_eq!(r.all(1), vec![sll.as_slice()], "source link-layer address");
    sll.clear();
    let mut mtu = vec![0, 0];
    mtu.extend(1450u32.to_be_bytes());
    assert_eq!(r.all(5), vec![mtu.as_slice()], "the network's MTU");
    assert_eq!(
        r.all(3),
        vec![
            prefix("2001:db8:a::", 0xc0).as_slice(),
            prefix("2001:db8:b::", 0x80).as_slice()
        ],
        "slaac: on-link and autonomous; stateful: on-link only; blue6 (no RA mode) not there"
    );
    let mut rdnss = vec![0, 0];
    rdnss.extend(1200u32.to_be_bytes());
    rdnss.extend("2001:db8::53".parse::<Ipv6Addr>().unwrap().octets());
    rdnss.extend("2001:db8::54".parse::<Ipv6Addr>().unwrap().octets());
    assert_eq!(
        r.all(25),
        vec![rdnss.as_slice()],
        "the IPv6 DNS servers, once each"
    );

    // From the unspecified address (no link-layer option allowed): to all
    // nodes, still on the port only.
    let (d, out) = run(&m, &rs([0; 16], false, 255));
    assert_eq!(d, D::Forward(VM_A));
    let r = Ra::read(&out);
    assert_eq!(r.eth_dst, [0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(r.dst, "ff02::1".parse::<Ipv6Addr>().unwrap().octets());
}

#[test]
fn the_flags_follow_the_ra_modes() {
    let m = v6_subnets(model(), &[("slaac6", "2001:db8:a::/64", "slaac")]);
    let (_, out) = run(&m, &rs(a_ll(), true, 255));
    let r = Ra::read(&out);
    assert_eq!(r.msg[5], 0, "slaac: neither M nor O");
    assert_eq!(r.all(3), vec![prefix("2001:db8:a::", 0xc0).as_slice()]);

    let m = v6_subnets(model(), &[("sl6", "2001:db8:c::/64", "dhcpv6-stateless")]);
    let (_, out) = run(&m, &rs(a_ll(), false, 255));
    let r = Ra::read(&out);
    assert_eq!(r.msg[5], 0x40, "dhcpv6-stateless: O");
    assert_eq!(r.all(3), vec![prefix("2001:db8:c::", 0xc0).as_slice()]);
    assert_eq!(
        m.ports["a"].fixed_ips[1].ip,
        "2001:db8:c::f816:3eff:fe00:a".parse::<Ipv6Addr>().unwrap(),
        "a stateless subnet's port address is its EUI-64 one"
    );
}

#[test]
fn no_ra_mode_or_no_router_no_advertisement_and_bad_solicitations_are_counted() {
    // The golden model: blue6 has no RA mode; the solicitation is flooded
    // as before.
    let (d, _) = run(&model(), &rs(a_ll(), true, 255));
    assert!(matches!(d, D::Flood { .. }), "{d:?}");
    // An RA mode but no router interface on the subnet.
    let m = with(
        model(),
        json!([{"op": "subnet_create", "name": "x6", "network": "blue",
            "cidr": "2001:db8:e::/64", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}]),
    );
    let (d, _) = run(&m, &rs(a_ll(), true, 255));
    assert!(matches!(d, D::Flood { .. }), "{d:?}");

    let m = v6_model();
    let (d, _) = run(&m, &rs(a_ll(), true, 64));
    assert_eq!(d, D::Drop(R::MalformedNd), "hop limit not 255");
    let (d, _) = run(&m, &rs([0; 16], true, 255));
    assert_eq!(
        d,
        D::Drop(R::MalformedNd),
        "from :: with a link-layer option"
    );
    let mut f = rs(a_ll(), true, 255);
    let at = 14 + 40 + 2;
    f[at] ^= 0x55;
    let (d, _) = run(&m, &f);
    assert_eq!(d, D::Drop(R::MalformedNd), "bad checksum");
    // An option of length 0 (checksum made right).
    let mut f = rs(a_ll(), true, 255);
    f[14 + 40 + 9] = 0;
    fix_icmp6(&mut f);
    let (d, _) = run(&m, &f);
    assert_eq!(d, D::Drop(R::MalformedNd), "an option of length 0");
}

/// Makes the ICMPv6 checksum of `f` right again.
fn fix_icmp6(f: &mut [u8]) {
    let (src, dst): ([u8; 16], [u8; 16]) =
        (f[22..38].try_into().unwrap(), f[38..54].try_into().unwrap());
    f[56..58].fill(0);
    let mut sum: u32 = 0;
    let len = (f.len() - 54) as u32;
    let mut words = Vec::new();
    words.extend(src);
    words.extend(dst);
    words.extend(len.to_be_bytes());
    words.extend([0, 0, 0, 58]);
    words.extend(&f[54..]);
    if words.len() % 2 == 1 {
        words.push(0);
    }
    for w in words.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    f[56..58].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn the_router_link_local_address_is_answered_as_a_router() {
    let m = v6_model();
    let gw = iface_mac(&m, "r1", "state6");
    let target = ll_of(gw);
    let mut ns = vec![0u8; 4];
    ns.extend(target);
    ns.extend([1, 1]);
    ns.extend(A_MAC);
    let mut dst = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    dst[13..].copy_from_slice(&target[13..]);
    let b = PacketBuilder::ethernet2(
        A_MAC,
        [0x33, 0x33, 0xff, target[13], target[14], target[15]],
    )
    .ipv6(a_ll(), dst, 255)
    .icmpv6_raw(135, 0, [0; 4]);
    let mut f = Vec::new();
    b.write(&mut f, &ns[4..]).unwrap();
    let (d, out) = run(&m, &f);
    assert_eq!(d, D::Forward(VM_A), "answered");
    assert_eq!(out[14 + 40], 136, "a neighbour advertisement");
    assert_eq!(out[6..12], gw.0, "from the router interface's MAC");
    assert_eq!(
        out[14 + 40 + 4] & 0xe0,
        0xe0,
        "router, solicited and override flags"
    );
    // Unicast to the router's MAC from the guest's link-local address (a
    // reachability probe of its next hop): answered too, not a martian.
    let b = PacketBuilder::ethernet2(A_MAC, gw.0)
        .ipv6(a_ll(), target, 255)
        .icmpv6_raw(135, 0, [0; 4]);
    let mut f = Vec::new();
    b.write(&mut f, &ns[4..]).unwrap();
    let (d, out) = run(&m, &f);
    assert_eq!(d, D::Forward(VM_A), "answered");
    assert_eq!(out[14 + 40], 136, "a neighbour advertisement");
    assert_eq!(out[0..6], A_MAC, "to the guest");
    assert_eq!(out[14 + 40 + 4] & 0xe0, 0xe0);
}

fn opt(code: u16, v: &[u8]) -> Vec<u8> {
    let mut o = code.to_be_bytes().to_vec();
    o.extend((v.len() as u16).to_be_bytes());
    o.extend(v);
    o
}

fn ia_na(addr: Option<&str>) -> Vec<u8> {
    let mut v = IAID.to_vec();
    v.extend([0; 8]);
    if let Some(a) = addr {
        let mut x = a.parse::<Ipv6Addr>().unwrap().octets().to_vec();
        x.extend([0; 8]);
        v.extend(opt(5, &x));
    }
    opt(3, &v)
}

/// A DHCPv6 client message of type `kind` with the options `options`, from
/// A's link-local address to all DHCP servers.
fn client6(kind: u8, options: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend(XID);
    for o in options {
        m.extend(o);
    }
    let all_servers = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2];
    let b = PacketBuilder::ethernet2(A_MAC, [0x33, 0x33, 0, 1, 0, 2])
        .ipv6(a_ll(), all_servers, 1)
        .udp(546, 547);
    let mut out = Vec::new();
    b.write(&mut out, &m).unwrap();
    out
}

fn cid() -> Vec<u8> {
    opt(1, &CLIENT_DUID)
}

fn server_duid(mac: MacAddr) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1];
    d.extend(mac.0);
    d
}

fn sid(m: &Model) -> Vec<u8> {
    opt(2, &server_duid(iface_mac(m, "r1", "state6")))
}

/// An address of an IA_NA with its preferred and valid lifetimes.
type Lease = (Ipv6Addr, u32, u32);

/// A DHCPv6 reply read: addresses, type, its top-level options.
struct Reply6 {
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    kind: u8,
    options: Vec<(u16, Vec<u8>)>,
}

fn options6(mut o: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut v = Vec::new();
    while !o.is_empty() {
        let code = u16::from_be_bytes([o[0], o[1]]);
        let len = u16::from_be_bytes([o[2], o[3]]) as usize;
        v.push((code, o[4..4 + len].to_vec()));
        o = &o[4 + len..];
    }
    v
}

impl Reply6 {
    fn read(frame: &[u8]) -> Reply6 {
        let p = SlicedPacket::from_ethernet(frame).expect("a well-formed frame");
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link.as_ref() else {
            panic!("not Ethernet II");
        };
        let Some(NetSlice::Ipv6(ip)) = p.net.as_ref() else {
            panic!("not IPv6");
        };
        let h = ip.header().to_header();
        let Some(TransportSlice::Udp(u)) = p.transport.as_ref() else {
            panic!("not UDP");
        };
        assert_eq!((u.source_port(), u.destination_port()), (547, 546));
        let uh = u.to_header();
        let payload = u.payload().to_vec();
        assert_eq!(
            uh.checksum,
            uh.calc_checksum_ipv6(&h, &payload).unwrap(),
            "UDP checksum"
        );
        assert_eq!(payload[1..4], XID, "transaction id");
        Reply6 {
            eth_dst: eth.destination(),
            eth_src: eth.source(),
            src: h.source,
            dst: h.destination,
            kind: payload[0],
            options: options6(&payload[4..]),
        }
    }

    fn opt(&self, code: u16) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// The IA_NA's IAID and addresses with their preferred and valid
    /// lifetimes, checking T1 and T2.
    fn ia_na(&self) -> Option<([u8; 4], Vec<Lease>)> {
        let v = self.opt(3)?;
        assert_eq!(v[4..8], 43_200u32.to_be_bytes(), "T1");
        assert_eq!(v[8..12], 75_600u32.to_be_bytes(), "T2");
        let addrs = options6(&v[12..])
            .into_iter()
            .filter(|(c, _)| *c == 5)
            .map(|(_, a)| {
                (
                    Ipv6Addr::from(<[u8; 16]>::try_from(&a[..16]).unwrap()),
                    u32::from_be_bytes(a[16..20].try_into().unwrap()),
                    u32::from_be_bytes(a[20..24].try_into().unwrap()),
                )
            })
            .collect();
        Some((v[..4].try_into().unwrap(), addrs))
    }

    fn status(&self) -> Option<u16> {
        self.opt(13).map(|v| u16::from_be_bytes([v[0], v[1]]))
    }
}

fn dns(servers: &[&str]) -> Vec<u8> {
    servers
        .iter()
        .flat_map(|s| s.parse::<Ipv6Addr>().unwrap().octets())
        .collect()
}

fn lease() -> Vec<Lease> {
    vec![("2001:db8:b::10".parse().unwrap(), 86_400, 86_400)]
}

#[test]
fn solicit_gets_an_advertise_of_the_ports_fixed_address() {
    let m = v6_model();
    let gw = iface_mac(&m, "r1", "state6");
    let elapsed = opt(8, &[0, 0]);
    let (d, out) = run(&m, &client6(SOLICIT, &[cid(), elapsed, ia_na(None)]));
    assert_eq!(d, D::Forward(VM_A), "answered to the port");
    let r = Reply6::read(&out);
    assert_eq!(r.kind, ADVERTISE);
    assert_eq!(r.eth_dst, A_MAC);
    assert_eq!(r.eth_src, gw.0, "from the router interface's MAC");
    assert_eq!(r.src, ll_of(gw), "from its link-local address");
    assert_eq!(r.dst, a_ll(), "to the client's link-local address");
    assert_eq!(r.opt(2), Some(&server_duid(gw)[..]), "DUID-LL of the MAC");
    assert_eq!(r.opt(1), Some(&CLIENT_DUID[..]), "the client's DUID echoed");
    assert_eq!(r.ia_na(), Some((IAID, lease())));
    assert_eq!(
        r.opt(23),
        Some(&dns(&["2001:db8::53", "2001:db8::54"])[..]),
        "the subnet's IPv6 DNS servers"
    );
    assert_eq!(r.opt(14), None, "no rapid commit asked");

    // Rapid commit: a Reply at once.
    let (_, out) = run(&m, &client6(SOLICIT, &[cid(), ia_na(None), opt(14, &[])]));
    let r = Reply6::read(&out);
    assert_eq!(r.kind, REPLY);
    assert_eq!(r.opt(14), Some(&[][..]));
    assert_eq!(r.ia_na(), Some((IAID, lease())));
}

#[test]
fn request_renew_rebind_confirm_release_decline_are_replied() {
    let m = v6_model();
    for kind in [REQUEST, RENEW] {
        let (d, out) = run(
            &m,
            &client6(kind, &[cid(), sid(&m), ia_na(Some("2001:db8:b::10"))]),
        );
        assert_eq!(d, D::Forward(VM_A), "{kind}");
        let r = Reply6::read(&out);
        assert_eq!(r.kind, REPLY, "{kind}");
        assert_eq!(r.ia_na(), Some((IAID, lease())), "{kind}");
    }
    let (_, out) = run(
        &m,
        &client6(REBIND, &[cid(), ia_na(Some("2001:db8:b::10"))]),
    );
    let r = Reply6::read(&out);
    assert_eq!((r.kind, r.ia_na()), (REPLY, Some((IAID, lease()))));

    // An address that is not the port's: back with lifetimes 0.
    let (_, out) = run(
        &m,
        &client6(RENEW, &[cid(), sid(&m), ia_na(Some("2001:db8:b::99"))]),
    );
    let r = Reply6::read(&out);
    let mut want = lease();
    want.push(("2001:db8:b::99".parse().unwrap(), 0, 0));
    assert_eq!((r.kind, r.ia_na()), (REPLY, Some((IAID, want))));
    let (_, out) = run(
        &m,
        &client6(CONFIRM, &[cid(), ia_na(Some("2001:db8:b::10"))]),
    );
    let r = Reply6::read(&out);
    assert_eq!((r.kind, r.status()), (REPLY, Some(0)), "on link: success");
    assert!(r.ia_na().is_none());
    let (_, out) = run(
        &m,
        &client6(CONFIRM, &[cid(), ia_na(Some("2001:db8:99::10"))]),
    );
    let r = Reply6::read(&out);
    assert_eq!((r.kind, r.status()), (REPLY, Some(4)), "NotOnLink");

    for kind in [RELEASE, DECLINE] {
        let (d, out) = run(
            &m,
            &client6(kind, &[cid(), sid(&m), ia_na(Some("2001:db8:b::10"))]),
        );
        assert_eq!(d, D::Forward(VM_A));
        let r = Reply6::read(&out);
        assert_eq!((r.kind, r.status()), (REPLY, Some(0)), "{kind}: success");
        assert!(r.ia_na().is_none(), "{kind}: the address stays the port's");
    }
}

#[test]
fn information_request_gets_dns_on_a_stateless_subnet() {
    let m = v6_subnets(model(), &[("sl6", "2001:db8:c::/64", "dhcpv6-stateless")]);
    let gw = iface_mac(&m, "r1", "sl6");
    let (d, out) = run(&m, &client6(INFORMATION_REQUEST, &[opt(6, &[0, 23])]));
    assert_eq!(d, D::Forward(VM_A));
    let r = Reply6::read(&out);
    assert_eq!(r.kind, REPLY);
    assert_eq!(r.opt(2), Some(&server_duid(gw)[..]));
    assert_eq!(r.opt(1), None, "no client id to echo");
    assert_eq!(r.opt(23), Some(&dns(&["2001:db8::53", "2001:db8::54"])[..]));
    assert!(r.ia_na().is_none());
    // With a client id: echoed.
    let (_, out) = run(&m, &client6(INFORMATION_REQUEST, &[cid()]));
    assert_eq!(Reply6::read(&out).opt(1), Some(&CLIENT_DUID[..]));
    // No address to lease on a stateless subnet.
    let (_, out) = run(&m, &client6(SOLICIT, &[cid(), ia_na(None)]));
    let r = Reply6::read(&out);
    assert_eq!((r.kind, r.status()), (ADVERTISE, Some(2)), "NoAddrsAvail");
    assert!(r.ia_na().is_none());
}

#[test]
fn other_servers_and_broken_messages_are_counted_unserved_ports_switched() {
    let m = v6_model();
    let other = opt(2, &server_duid(MacAddr([2, 0, 0, 0, 0, 9])));
    let (d, _) = run(&m, &client6(REQUEST, &[cid(), other.clone(), ia_na(None)]));
    assert_eq!(d, D::Drop(R::Dhcp6OtherServer));
    let (d, _) = run(&m, &client6(INFORMATION_REQUEST, &[other]));
    assert_eq!(d, D::Drop(R::Dhcp6OtherServer));
    for (what, f) in [
        (
            "a Request without a server id",
            client6(REQUEST, &[cid(), ia_na(None)]),
        ),
        (
            "a Solicit with a server id",
            client6(SOLICIT, &[cid(), sid(&m)]),
        ),
        (
            "a Solicit without a client id",
            client6(SOLICIT, &[ia_na(None)]),
        ),
        ("an Advertise from a client", client6(ADVERTISE, &[cid()])),
        ("an option past the end", {
            let mut f = client6(SOLICIT, &[cid()]);
            let at = 14 + 40 + 8 + 4 + 2;
            f[at..at + 2].copy_from_slice(&200u16.to_be_bytes());
            fix_udp6(&mut f);
            f
        }),
        (
            "a short IA_NA",
            client6(SOLICIT, &[cid(), opt(3, &[0, 0, 0, 1])]),
        ),
        (
            "no message",
            client6(SOLICIT, &[])[..14 + 40 + 8 + 2].to_vec(),
        ),
    ] {
        let mut f = f;
        if what == "no message" {
            // Two bytes of DHCPv6: lengths made to fit.
            f[18..20].copy_from_slice(&10u16.to_be_bytes());
            f[14 + 40 + 4..14 + 40 + 6].copy_from_slice(&10u16.to_be_bytes());
            fix_udp6(&mut f);
        }
        let (d, _) = run(&m, &f);
        assert_eq!(d, D::Drop(R::Dhcp6Malformed), "{what}");
    }
    // An IPv6 payload shorter than a UDP header (the frame's padding
    // holds the rest).
    let mut f = client6(SOLICIT, &[cid()]);
    f[18..20].copy_from_slice(&4u16.to_be_bytes());
    let (d, _) = run(&m, &f);
    assert_eq!(d, D::Drop(R::Dhcp6Malformed), "a UDP header cut short");
    // The UDP length longer than the IPv6 payload.
    let mut f = client6(SOLICIT, &[cid()]);
    let at = 14 + 40 + 4;
    f[at..at + 2].copy_from_slice(&500u16.to_be_bytes());
    let (d, _) = run(&m, &f);
    assert_eq!(d, D::Drop(R::Dhcp6Malformed), "a UDP length past the end");
    // The golden model: blue6 has no address mode; DHCPv6 is switched as
    // any multicast (to a tenant's own server, say).
    let (d, _) = run(&model(), &client6(SOLICIT, &[cid(), ia_na(None)]));
    assert!(matches!(d, D::Flood { .. }), "{d:?}");
}

/// Makes the UDP checksum of IPv6 frame `f` right again.
fn fix_udp6(f: &mut [u8]) {
    f[14 + 40 + 6..14 + 40 + 8].fill(0);
    let copy = f.to_vec();
    let p = SlicedPacket::from_ethernet(&copy).unwrap();
    let Some(NetSlice::Ipv6(ip)) = p.net.as_ref() else {
        panic!()
    };
    let h = ip.header().to_header();
    let Some(TransportSlice::Udp(u)) = p.transport.as_ref() else {
        panic!()
    };
    let c = u.to_header().calc_checksum_ipv6(&h, u.payload()).unwrap();
    f[14 + 40 + 6..14 + 40 + 8].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn ipv6_modes_are_checked_as_neutron_checks_them() {
    let m = model();
    let bad = [
        json!([{"op": "subnet_create", "name": "x", "network": "blue", "cidr": "10.9.0.0/24",
            "ipv6_ra_mode": "slaac"}]),
        json!([{"op": "subnet_create", "name": "x", "network": "blue", "cidr": "2001:db8:e::/64",
            "ipv6_ra_mode": "slaac", "ipv6_address_mode": "dhcpv6-stateful"}]),
        json!([{"op": "subnet_create", "name": "x", "network": "blue", "cidr": "2001:db8:e::/64",
            "ipv6_ra_mode": "dhcpv6-stateless", "ipv6_address_mode": "slaac"}]),
        json!([{"op": "subnet_create", "name": "x", "network": "blue", "cidr": "2001:db8:e::/80",
            "ipv6_address_mode": "slaac"}]),
        json!([{"op": "subnet_create", "name": "x", "network": "blue", "cidr": "2001:db8:e::/64",
            "ipv6_address_mode": "dhcpv6-stateful", "enable_dhcp": false}]),
        // A port's address on an automatic subnet is its EUI-64 one.
        json!([{"op": "subnet_create", "name": "x", "network": "blue", "cidr": "2001:db8:e::/64",
            "ipv6_address_mode": "slaac"},
            {"op": "port_create", "name": "z", "network": "blue",
             "fixed_ips": [{"subnet": "x", "ip": "2001:db8:e::5"}]}]),
    ];
    for b in bad {
        let mut m2 = m.clone();
        let e = m2.apply(&changes(b.clone())).expect_err(&b.to_string());
        assert!(!e.0.is_empty());
        assert_eq!(m2, m, "{b} changed the model");
    }
    // Good ones: a stateful /80 (no SLAAC there), an RA mode alone.
    let m2 = with(
        m.clone(),
        json!([{"op": "subnet_create", "name": "x", "network": "blue", "cidr": "2001:db8:e::/80",
            "ipv6_ra_mode": "dhcpv6-stateful", "ipv6_address_mode": "dhcpv6-stateful"},
            {"op": "subnet_create", "name": "y", "network": "blue", "cidr": "2001:db8:f::/64",
            "ipv6_ra_mode": "slaac"},
            {"op": "port_create", "name": "z", "network": "blue", "mac": "fa:16:3e:00:00:77",
             "fixed_ips": [{"subnet": "y"}]},
            {"op": "port_create", "name": "w", "network": "blue", "mac": "fa:16:3e:00:00:78",
             "fixed_ips": [{"subnet": "y", "ip": "2001:db8:f::f816:3eff:fe00:78"}]}]),
    );
    assert_eq!(
        m2.ports["z"].fixed_ips[0].ip,
        "2001:db8:f::f816:3eff:fe00:77".parse::<Ipv6Addr>().unwrap()
    );
    // Old state files (no modes) load; a subnet without modes is
    // serialised as before.
    let s = serde_json::to_value(&m.subnets["blue6"]).unwrap();
    assert!(s.get("ipv6_ra_mode").is_none() && s.get("ipv6_address_mode").is_none());
    let s = serde_json::to_value(&m2.subnets["x"]).unwrap();
    assert_eq!(s["ipv6_ra_mode"], "dhcpv6-stateful");
}

#[test]
fn unsolicited_advertisements_when_a_port_appears_then_every_ten_minutes() {
    use dvr::pipeline::ra::{Advertiser, UNSOLICITED_EVERY};
    use std::time::{Duration, Instant};
    let m = v6_model();
    let snap = snapshot(&m);
    let mut adv = Advertiser::default();
    let t0 = Instant::now();
    let mut sent: Vec<(u16, Vec<u8>)> = Vec::new();
    // A full queue: nothing is taken, and it is due again.
    adv.follow(&snap, t0, 16, |_, _| false);
    adv.follow(&snap, t0, 16, |p, f| {
        sent.push((p, f.to_vec()));
        true
    });
    assert_eq!(
        sent.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![VM_A],
        "vm-a only: the other local ports' networks have no RA mode"
    );
    let r = Ra::read(&sent[0].1);
    assert_eq!(r.eth_dst, [0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(r.dst, "ff02::1".parse::<Ipv6Addr>().unwrap().octets());
    assert_eq!(r.src, ll_of(iface_mac(&m, "r1", "slaac6")));
    assert_eq!(r.all(3).len(), 2, "both prefixes");
    assert!(sent[0].1.len() <= dvr::punt::INJECT_MAX);
    // Not again before ten minutes; then again.
    sent.clear();
    adv.follow(
        &snap,
        t0 + UNSOLICITED_EVERY - Duration::from_secs(1),
        16,
        |p, f| {
            sent.push((p, f.to_vec()));
            true
        },
    );
    assert!(sent.is_empty());
    adv.follow(&snap, t0 + UNSOLICITED_EVERY, 16, |p, f| {
        sent.push((p, f.to_vec()));
        true
    });
    assert_eq!(sent.len(), 1);
    // A changed advertisement (a DNS server more) goes at once; at most
    // `max` a call.
    let m2 = with(
        m.clone(),
        json!([{"op": "subnet_set", "name": "slaac6", "dns_nameservers": ["2001:db8::55"]}]),
    );
    sent.clear();
    adv.follow(&snapshot(&m2), t0 + UNSOLICITED_EVERY, 0, |p, f| {
        sent.push((p, f.to_vec()));
        true
    });
    assert!(sent.is_empty(), "max 0");
    adv.follow(&snapshot(&m2), t0 + UNSOLICITED_EVERY, 16, |p, f| {
        sent.push((p, f.to_vec()));
        true
    });
    assert_eq!(sent.len(), 1, "changed: sent at once");
}

/// Solicitations and DHCPv6 messages mutated (bytes changed, cut, lengths
/// made up) keep the pipeline's invariants and never panic.
#[test]
fn mutated_solicitations_and_dhcpv6_messages_keep_the_invariants() {
    let m = v6_model();
    let snap = snapshot(&m);
    let ia = ia_na(Some("2001:db8:b::10"));
    let seeds = [
        rs(a_ll(), true, 255),
        rs([0; 16], false, 255),
        client6(SOLICIT, &[cid(), ia_na(None), opt(14, &[])]),
        client6(REQUEST, &[cid(), sid(&m), ia.clone()]),
        client6(CONFIRM, &[cid(), ia.clone()]),
        client6(RELEASE, &[cid(), sid(&m), ia]),
        client6(INFORMATION_REQUEST, &[opt(6, &[0, 23])]),
    ];
    let mut x: u64 = 0x6d6f_6465_7336;
    let mut rnd = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let mut answered = 0;
    for i in 0..60_000 {
        let mut f = seeds[rnd(seeds.len())].clone();
        for _ in 0..1 + rnd(4) {
            match rnd(6) {
                0 => {
                    let n = rnd(f.len() + 1);
                    f.truncate(n.max(14));
                }
                1 => {
                    let at = 18 + rnd(2);
                    if at < f.len() {
                        f[at] = rnd(256) as u8;
                    }
                }
                2 => {
                    let at = 58 + rnd(2);
                    if at < f.len() {
                        f[at] = rnd(256) as u8;
                    }
                }
                3 => f.extend((0..rnd(40)).map(|_| rnd(256) as u8)),
                _ => {
                    let at = 54 + rnd(f.len().saturating_sub(54).max(1));
                    if at < f.len() {
                        f[at] = rnd(256) as u8;
                    }
                }
            }
        }
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_pipeline(&snap, VM_A, &f)
        }))
        .unwrap_or_else(|_| panic!("frame {i}: {f:02x?}"));
        if matches!(run.0, D::Forward(_)) {
            answered += 1;
        }
    }
    assert!(
        answered > 1000,
        "{answered} answered: the mutations stay close"
    );
}

#[test]
fn an_advertisement_carries_at_most_eight_prefixes() {
    let mut ch = Vec::new();
    for i in 0..9 {
        let name = format!("p{i}");
        ch.push(json!({"op": "subnet_create", "name": name, "network": "blue",
            "cidr": format!("2001:db8:a{i}::/64"), "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac",
            "dns_nameservers": ["2001:db8::53", "2001:db8::54", "2001:db8::55", "2001:db8::56"]}));
        ch.push(json!({"op": "router_add_subnet", "router": "r1", "subnet": name}));
    }
    let m = with(model(), Value::Array(ch));
    let (d, out) = run(&m, &rs(a_ll(), true, 255));
    assert_eq!(d, D::Forward(VM_A));
    let r = Ra::read(&out);
    let prefixes = r.all(3);
    assert_eq!(prefixes.len(), dvr::compile::MAX_RA_PREFIXES);
    assert_eq!(prefixes[0], prefix("2001:db8:a0::", 0xc0).as_slice());
    assert_eq!(prefixes[7], prefix("2001:db8:a7::", 0xc0).as_slice());
    assert_eq!(r.all(25)[0].len(), 6 + 3 * 16, "three DNS servers at most");
    assert!(out.len() <= dvr::punt::INJECT_MAX && out.len() <= CONFIG_REPLY_MAX);
}
