//! Golden tests of DHCP on the VM's own host (docs/BEHAVIOUR.md section 6):
//! DHCPv4 client messages from a VM port, built and their replies read with
//! `etherparse` (Ethernet, IPv4 and UDP, checksums checked) and the BOOTP
//! fields read by offset as RFC 2131 lays them out.
//!
//! The node is the golden tests' `cn1`: port `a` (10.1.0.10 on `blue`,
//! 10.1.0.0/24, gateway 10.1.0.1 on router `r1`, VXLAN, MTU 1450) on VM port
//! `vm-a`.

use std::net::Ipv4Addr;

use dvr::compile::Compiler;
use dvr::mac::MacAddr;
use dvr::model::Model;
use dvr::pipeline::{self, Disposition as D, Env, NoTrace, Notes};
use dvr::pkt::Frame;
use dvr::stats::DropReason as R;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use serde_json::json;

use dvr::testkit::*;

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;
const RELEASE: u8 = 7;
const INFORM: u8 = 8;

const XID: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

/// A client message of type `kind` from `chaddr`, with `ciaddr`, the
/// broadcast flag if `bcast`, and the options `extra` after option 53.
fn client(kind: u8, chaddr: [u8; 6], ciaddr: [u8; 4], bcast: bool, extra: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 240];
    m[0] = 1;
    m[1] = 1;
    m[2] = 6;
    m[4..8].copy_from_slice(&XID);
    if bcast {
        m[10] = 0x80;
    }
    m[12..16].copy_from_slice(&ciaddr);
    m[28..34].copy_from_slice(&chaddr);
    m[236..240].copy_from_slice(&[99, 130, 83, 99]);
    m.extend([53, 1, kind]);
    m.extend(extra);
    // A parameter request list, and the end, padded as dhclient pads.
    m.extend([55, 4, 1, 3, 26, 121, 255]);
    m.resize(300, 0);
    let (src, dst) = if ciaddr == [0; 4] {
        ([0, 0, 0, 0], [255; 4])
    } else {
        (ciaddr, [10, 1, 0, 1])
    };
    let dst_mac = if ciaddr == [0; 4] {
        [0xff; 6]
    } else {
        gw_mac()
    };
    let b = PacketBuilder::ethernet2(chaddr, dst_mac)
        .ipv4(src, dst, 64)
        .udp(68, 67);
    let mut out = Vec::new();
    b.write(&mut out, &m).unwrap();
    out
}

fn model_with(extra: serde_json::Value) -> Model {
    let mut m = model();
    m.apply(&changes(extra)).expect("valid changes");
    m
}

fn gw_mac() -> [u8; 6] {
    iface_mac(&model(), "r1", "blue4").0
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

/// A reply read: Ethernet and IP addresses, the BOOTP message, its options.
struct Reply {
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    ip_src: [u8; 4],
    ip_dst: [u8; 4],
    bootp: Vec<u8>,
    options: Vec<(u8, Vec<u8>)>,
}

impl Reply {
    fn read(frame: &[u8]) -> Reply {
        let p = SlicedPacket::from_ethernet(frame).expect("a well-formed frame");
        let eth = p.link.as_ref().unwrap().to_header().unwrap();
        let eth = match eth {
            etherparse::LinkHeader::Ethernet2(e) => e,
            other => panic!("{other:?}"),
        };
        let ip = match p.net.as_ref().unwrap() {
            etherparse::NetSlice::Ipv4(ip) => ip.header().to_header(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            ip.header_checksum,
            ip.calc_header_checksum(),
            "IPv4 header checksum"
        );
        let TransportSlice::Udp(u) = p.transport.as_ref().unwrap() else {
            panic!("not UDP");
        };
        assert_eq!((u.source_port(), u.destination_port()), (67, 68));
        let h = u.to_header();
        let payload = u.payload().to_vec();
        assert_eq!(
            h.checksum,
            h.calc_checksum_ipv4(&ip, &payload).unwrap(),
            "UDP checksum"
        );
        assert!(payload.len() >= 300, "BOOTP of {} bytes", payload.len());
        assert_eq!(payload[0], 2, "BOOTREPLY");
        assert_eq!(payload[4..8], XID);
        assert_eq!(payload[236..240], [99, 130, 83, 99]);
        let mut options = Vec::new();
        let mut i = 240;
        loop {
            match payload[i] {
                255 => break,
                0 => i += 1,
                code => {
                    let len = payload[i + 1] as usize;
                    options.push((code, payload[i + 2..i + 2 + len].to_vec()));
                    i += 2 + len;
                }
            }
        }
        Reply {
            eth_dst: eth.destination,
            eth_src: eth.source,
            ip_src: ip.source,
            ip_dst: ip.destination,
            bootp: payload,
            options,
        }
    }

    fn opt(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    fn yiaddr(&self) -> [u8; 4] {
        self.bootp[16..20].try_into().unwrap()
    }
}

#[test]
fn discover_gets_an_offer_of_the_ports_address_with_its_options() {
    let m = model();
    let (d, out) = run(&m, &client(DISCOVER, A_MAC, [0; 4], false, &[]));
    assert_eq!(d, D::Forward(VM_A), "answered to the port");
    let r = Reply::read(&out);
    assert_eq!(r.eth_dst, A_MAC, "unicast to the client's MAC");
    assert_eq!(r.eth_src, gw_mac(), "from the router interface's MAC");
    assert_eq!(r.ip_src, [10, 1, 0, 1], "from the gateway");
    assert_eq!(r.ip_dst, [10, 1, 0, 10], "to the address offered");
    assert_eq!(r.yiaddr(), [10, 1, 0, 10]);
    assert_eq!(r.bootp[28..34], A_MAC, "chaddr");
    assert_eq!(r.opt(53), Some(&[OFFER][..]));
    assert_eq!(r.opt(54), Some(&[10, 1, 0, 1][..]), "server identifier");
    assert_eq!(r.opt(51), Some(&86_400u32.to_be_bytes()[..]), "lease");
    assert_eq!(r.opt(58), Some(&43_200u32.to_be_bytes()[..]), "T1");
    assert_eq!(r.opt(59), Some(&75_600u32.to_be_bytes()[..]), "T2");
    assert_eq!(r.opt(1), Some(&[255, 255, 255, 0][..]), "mask");
    assert_eq!(r.opt(3), Some(&[10, 1, 0, 1][..]), "router");
    assert_eq!(
        r.opt(26),
        Some(&1450u16.to_be_bytes()[..]),
        "the network's MTU"
    );
    assert_eq!(r.opt(6), None, "no DNS servers configured");
    // RFC 3442: default route and the metadata address via the gateway.
    assert_eq!(
        r.opt(121),
        Some(&[0, 10, 1, 0, 1, 32, 169, 254, 169, 254, 10, 1, 0, 1][..])
    );
}

#[test]
fn the_broadcast_flag_gets_a_broadcast_reply() {
    let (d, out) = run(&model(), &client(DISCOVER, A_MAC, [0; 4], true, &[]));
    assert_eq!(d, D::Forward(VM_A));
    let r = Reply::read(&out);
    assert_eq!(r.eth_dst, [0xff; 6]);
    assert_eq!(r.ip_dst, [255; 4]);
    assert_eq!(r.yiaddr(), [10, 1, 0, 10]);
}

#[test]
fn request_for_its_address_is_acked_another_is_naked() {
    let m = model();
    let sid = [54, 4, 10, 1, 0, 1];
    // Selecting: requested address and our server identifier.
    let (d, out) = run(
        &m,
        &client(
            REQUEST,
            A_MAC,
            [0; 4],
            false,
            &[50, 4, 10, 1, 0, 10, 54, 4, 10, 1, 0, 1],
        ),
    );
    assert_eq!(d, D::Forward(VM_A));
    let r = Reply::read(&out);
    assert_eq!(r.opt(53), Some(&[ACK][..]));
    assert_eq!(r.yiaddr(), [10, 1, 0, 10]);
    assert_eq!(r.opt(26), Some(&1450u16.to_be_bytes()[..]));
    // Renewing: unicast from its address to the server, ciaddr set.
    let (d, out) = run(&m, &client(REQUEST, A_MAC, [10, 1, 0, 10], false, &[]));
    assert_eq!(d, D::Forward(VM_A), "a renewal sent to the gateway");
    let r = Reply::read(&out);
    assert_eq!(r.opt(53), Some(&[ACK][..]));
    assert_eq!(r.ip_dst, [10, 1, 0, 10]);
    assert_eq!(r.bootp[12..16], [10, 1, 0, 10], "ciaddr kept");
    // An address that is not the port's: NAK, broadcast, no options.
    let (d, out) = run(
        &m,
        &client(REQUEST, A_MAC, [0; 4], false, &[50, 4, 10, 1, 0, 99]),
    );
    assert_eq!(d, D::Forward(VM_A));
    let r = Reply::read(&out);
    assert_eq!(r.opt(53), Some(&[NAK][..]));
    assert_eq!((r.eth_dst, r.ip_dst), ([0xff; 6], [255; 4]));
    assert_eq!(r.yiaddr(), [0; 4]);
    assert_eq!((r.opt(51), r.opt(1)), (None, None));
    assert_eq!(r.opt(54), Some(&sid[2..]));
}

#[test]
fn inform_gets_options_without_a_lease_release_is_taken() {
    let m = model();
    let (d, out) = run(&m, &client(INFORM, A_MAC, [10, 1, 0, 10], false, &[]));
    assert_eq!(d, D::Forward(VM_A));
    let r = Reply::read(&out);
    assert_eq!(r.opt(53), Some(&[ACK][..]));
    assert_eq!(r.yiaddr(), [0; 4]);
    assert_eq!(r.ip_dst, [10, 1, 0, 10]);
    assert_eq!(r.opt(51), None, "no lease for an INFORM");
    assert_eq!(r.opt(3), Some(&[10, 1, 0, 1][..]));
    let (d, _) = run(&m, &client(RELEASE, A_MAC, [10, 1, 0, 10], false, &[]));
    assert_eq!(d, D::Drop(R::DhcpReleased));
}

#[test]
fn other_servers_other_clients_and_broken_messages_are_counted() {
    let m = model();
    let (d, _) = run(
        &m,
        &client(REQUEST, A_MAC, [0; 4], false, &[54, 4, 10, 1, 0, 2]),
    );
    assert_eq!(d, D::Drop(R::DhcpOtherServer));
    // From the port's MAC (port security passes it) for another client.
    let mut f = client(DISCOVER, A_MAC, [0; 4], false, &[]);
    let at = 14 + 20 + 8 + 28;
    f[at..at + 6].copy_from_slice(&B_MAC);
    let (d, _) = run(&m, &f);
    assert_eq!(d, D::Drop(R::DhcpForeignClient));
    // No message type (plain BOOTP), no cookie, an option past the end.
    let mut f = client(DISCOVER, A_MAC, [0; 4], false, &[]);
    let o = 14 + 20 + 8 + 240;
    f[o..o + 4].copy_from_slice(&[0, 0, 0, 255]);
    let (d, _) = run(&m, &f);
    assert_eq!(d, D::Drop(R::DhcpMalformed), "no message type");
    let mut f = client(DISCOVER, A_MAC, [0; 4], false, &[]);
    f[14 + 20 + 8 + 236] = 0;
    let (d, _) = run(&m, &f);
    assert_eq!(d, D::Drop(R::DhcpMalformed), "no magic cookie");
    let mut f = client(DISCOVER, A_MAC, [0; 4], false, &[]);
    let o = 14 + 20 + 8 + 240 + 3;
    f[o..o + 2].copy_from_slice(&[12, 200]);
    let (d, _) = run(&m, &f);
    assert_eq!(d, D::Drop(R::DhcpMalformed), "an option past the end");
}

#[test]
fn dns_servers_and_host_routes_as_configured_and_dhcp_off_floods() {
    let m = model_with(json!([{"op": "subnet_set", "name": "blue4",
        "dns_nameservers": ["192.0.2.53", "2001:db8::53", "192.0.2.54"],
        "host_routes": [{"destination": "172.16.0.0/12", "nexthop": "10.1.0.254"},
                        {"destination": "169.254.169.254/32", "nexthop": "10.1.0.2"}]}]));
    let (_, out) = run(&m, &client(DISCOVER, A_MAC, [0; 4], false, &[]));
    let r = Reply::read(&out);
    assert_eq!(
        r.opt(6),
        Some(&[192, 0, 2, 53, 192, 0, 2, 54][..]),
        "the IPv4 DNS servers"
    );
    // The default route, then the host routes (one replacing the metadata
    // route).
    assert_eq!(
        r.opt(121),
        Some(
            &[
                0, 10, 1, 0, 1, //
                12, 172, 16, 10, 1, 0, 254, //
                32, 169, 254, 169, 254, 10, 1, 0, 2
            ][..]
        )
    );
    // DHCP off: the discover is flooded in the network as any broadcast.
    let m = model_with(json!([{"op": "subnet_set", "name": "blue4", "enable_dhcp": false}]));
    let (d, _) = run(&m, &client(DISCOVER, A_MAC, [0; 4], false, &[]));
    assert!(matches!(d, D::Flood { .. }), "{d:?}");
}

#[test]
fn subnet_dhcp_settings_are_checked() {
    let mut m = model();
    let before = m.clone();
    for bad in [
        json!([{"op": "subnet_set", "name": "blue4", "dns_nameservers":
            ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.5", "1.1.1.6"]}]),
        json!([{"op": "subnet_set", "name": "blue4", "dns_nameservers": ["1.1.1.1", "1.1.1.1"]}]),
        json!([{"op": "subnet_set", "name": "blue4", "dns_nameservers": ["0.0.0.0"]}]),
        json!([{"op": "subnet_set", "name": "blue4",
            "host_routes": [{"destination": "172.16.0.0/12", "nexthop": "10.9.0.1"}]}]),
        json!([{"op": "subnet_set", "name": "blue4",
            "host_routes": [{"destination": "172.16.0.1/12", "nexthop": "10.1.0.1"}]}]),
        json!([{"op": "subnet_set", "name": "blue4",
            "host_routes": [{"destination": "2001:db8::/64", "nexthop": "10.1.0.1"}]}]),
        json!([{"op": "subnet_set", "name": "nope", "enable_dhcp": false}]),
    ] {
        let e = m.apply(&changes(bad.clone())).expect_err(&bad.to_string());
        assert!(!e.0.is_empty());
        assert_eq!(m, before, "{bad} changed the model");
    }
}
