//! The ICMP and ICMPv6 errors the pipeline builds (net unreachable, time
//! exceeded, fragmentation needed / packet too big, on every way: routed,
//! north-south, from the overlay), checked with a parser of their own
//! (etherparse) rather than the pipeline's helpers.
//!
//! Input: byte 0 picks the ingress port, byte 1 shapes the frame, the rest is
//! the frame. Shape bits: 0-1 set the IPv4 TTL / IPv6 hop limit (1: to 1,
//! 2: to 0); 2 sets DF; 3-4 grow the packet (to 1,501, 1,600 or 9,100 bytes
//! of IP, past the test networks' MTUs); 5 fixes the IP lengths and the IPv4
//! header checksum (also done after any of the above); 6 adds Ethernet
//! padding (after the IP packet: never quoted); 7 runs the frame on `nn1`,
//! the SNAT node (`dvr::testkit::snat_node_snapshot` of `ns_model_pmtu`:
//! the outside's MTU below the overlay's, so that nn1 answers too big back
//! over the overlay) instead of `cn1` (`ns_snapshot` of `ns_model`); with
//! bit 7 of byte 0 also set, on nn1 with r1 centralized there and red's MTU
//! lowered (the rest of byte 0 picks the port). Each frame runs once, in a
//! fresh worker environment.
//!
//! Checked on every ICMP error that leaves (after its tunnel, if it goes
//! back over the overlay):
//!
//! - IPv4: the header checksum, the total length (the frame's, at most 576),
//!   the ICMP checksum, type 3 or 11, a fragmentation needed's MTU below the
//!   quoted packet's length;
//! - IPv6: the payload length (the frame's, at most 1,280 bytes in all), the
//!   ICMPv6 checksum over the pseudo-header, type 1, 2 or 3, a packet too
//!   big's MTU below the quoted packet's length;
//! - the quote: sent to the quoted packet's source, never about an ICMP
//!   error or a later fragment, and a prefix of a packet of the input frame:
//!   the whole offending packet, or as much as fits in 576 bytes of IP.
#![no_main]

use std::sync::{Arc, OnceLock};

use dvr::tables::Snapshot;
use dvr::stats::DropReason;
use dvr::wire::checksum::checksum;
use etherparse::{Icmpv4Slice, Icmpv6Slice, Ipv4Slice, Ipv6Slice};
use libfuzzer_sys::fuzz_target;

static CN1: OnceLock<Arc<Snapshot>> = OnceLock::new();
static NN1: OnceLock<Arc<Snapshot>> = OnceLock::new();
static LEGACY: OnceLock<Arc<Snapshot>> = OnceLock::new();

/// nn1 with r1 centralized there (legacy) and red's MTU lowered to 1400:
/// nn1 routes between the networks and answers too big back over the
/// overlay.
fn legacy() -> Arc<Snapshot> {
    let mut m = dvr::testkit::ns_model();
    m.apply(&dvr::testkit::changes(serde_json::json!([
        {"op": "router_set", "name": "r1", "admin_state_up": false},
        {"op": "router_set", "name": "r1", "distributed": false},
        {"op": "router_set", "name": "r1", "admin_state_up": true},
        {"op": "network_set", "name": "red", "mtu": 1400},
    ])))
    .expect("a disabled router may become centralized");
    dvr::testkit::snat_node_snapshot(&m)
}

/// The most bytes of IP an ICMP error takes (RFC 1812: 576).
const MAX: usize = dvr::pipeline::ICMP_ERROR_MAX;

fuzz_target!(|data: &[u8]| {
    let [port, shape, rest @ ..] = data else {
        return;
    };
    let snap = match (shape & 0x80 != 0, port & 0x80 != 0) {
        (false, _) => CN1.get_or_init(|| dvr::testkit::ns_snapshot(&dvr::testkit::ns_model())),
        (true, false) => {
            NN1.get_or_init(|| dvr::testkit::snat_node_snapshot(&dvr::testkit::ns_model_pmtu()))
        }
        (true, true) => LEGACY.get_or_init(legacy),
    };
    let in_port = u16::from(port & 0x7f) % (snap.ports.len() as u16 + 1);
    let mut frame = rest.to_vec();
    shape_frame(&mut frame, *shape);
    let (v, out, noted) = dvr::testkit::run_frame(snap, in_port, &frame);
    // Noted without an ICMP error: a routed frame to a VIP no port has
    // announced, turned into an ARP request or a neighbour solicitation.
    if matches!(noted, None | Some(DropReason::VipHolderUnknown)) {
        return;
    }
    assert!(v.is_ok(), "noted {noted:?} with {v:?}");
    check_error(&frame, &out);
});

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Where the IP header of an Ethernet frame starts, and its ethertype.
fn l3(f: &[u8]) -> Option<(usize, usize)> {
    let et = be16(f.get(..14)?, 12);
    if et == 0x8100 {
        return Some((be16(f.get(..18)?, 16), 18));
    }
    Some((et, 14))
}

fn shape_frame(f: &mut Vec<u8>, shape: u8) {
    let Some((et, at)) = l3(f) else { return };
    let v4 = et == 0x0800 && f.get(at).is_some_and(|b| b >> 4 == 4);
    let v6 = et == 0x86dd && f.len() >= at + 40 && f[at] >> 4 == 6;
    if !v4 && !v6 || (v4 && f.len() < at + 20) {
        return;
    }
    let mut fix = shape & 0x20 != 0;
    let ttl_at = at + if v4 { 8 } else { 7 };
    match shape & 3 {
        1 => f[ttl_at] = 1,
        2 => f[ttl_at] = 0,
        _ => {}
    }
    if v4 && shape & 4 != 0 {
        f[at + 6] |= 0x40;
    }
    let grow = [0, 1501, 1600, 9100][usize::from((shape >> 3) & 3)];
    if f.len() < at + grow {
        f.resize(at + grow, 0x5a);
    }
    fix |= shape & 0x1f != 0;
    if fix {
        let len = (f.len() - at) as u16;
        if v4 {
            f[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
            dvr::testkit::fix_ipv4(f, at);
        } else {
            f[at + 4..at + 6].copy_from_slice(&(len - 40).to_be_bytes());
        }
    }
    if shape & 0x40 != 0 {
        f.extend_from_slice(&[0xee; 7]);
    }
}

/// The Ethernet frame inside `out`'s tunnel (VXLAN, GRE), or `out`.
fn untunnel(out: &[u8]) -> &[u8] {
    let Some((0x0800, at)) = l3(out) else {
        return out;
    };
    let Ok(ip) = Ipv4Slice::from_slice(&out[at..]) else {
        return out;
    };
    let p = ip.payload().payload;
    match ip.payload().ip_number.0 {
        17 if p.len() >= 16 && be16(p, 2) == 4789 => &p[16..],
        47 if p.len() >= 4 && be16(p, 2) == 0x6558 => {
            let flags = be16(p, 0);
            let hdr = 4 + [0x8000, 0x2000, 0x1000]
                .iter()
                .filter(|&&b| flags & b != 0)
                .count()
                * 4;
            &p[hdr.min(p.len())..]
        }
        _ => out,
    }
}

fn check_error(input: &[u8], out: &[u8]) {
    let e = untunnel(out);
    let (et, at) = l3(e).expect("an ICMP error has an Ethernet header");
    let ip = &e[at..];
    match et {
        0x0800 => check4(input, ip),
        0x86dd => check6(input, ip),
        _ => panic!("an ICMP error of ethertype {et:#x}: {out:02x?}"),
    }
}

/// The quote `q` of an error of at most `MAX - hdr` bytes of quote, whose
/// packet says it is `declared` bytes long: a prefix of a packet in `input`,
/// the whole of it or as much as fits.
fn check_quote(input: &[u8], q: &[u8], declared: usize, hdr: usize) {
    assert_eq!(
        q.len(),
        declared.min(MAX - hdr),
        "a quote of {} bytes of a {declared}-byte packet",
        q.len()
    );
    assert!(
        input.windows(q.len()).any(|w| w == q),
        "the quote is not a packet of the input: {q:02x?}"
    );
}

fn check4(input: &[u8], ip: &[u8]) {
    let s = Ipv4Slice::from_slice(ip).expect("an IPv4 header etherparse reads");
    let h = s.header();
    assert_eq!(usize::from(h.total_len()), ip.len(), "IPv4 total length");
    assert!(ip.len() <= MAX, "an ICMP error of {} bytes of IP", ip.len());
    assert_eq!(
        h.to_header().calc_header_checksum(),
        h.header_checksum(),
        "IPv4 header checksum"
    );
    assert_eq!(h.protocol().0, 1, "an ICMP error that is not ICMP");
    assert!(!s.payload().fragmented);
    let icmp = Icmpv4Slice::from_slice(s.payload().payload).expect("an ICMP header");
    assert_eq!(
        icmp.icmp_type().calc_checksum(icmp.payload()),
        icmp.checksum(),
        "ICMP checksum"
    );
    assert_eq!(checksum(icmp.slice()), 0, "ICMP checksum (sum)");
    let ty = icmp.type_u8();
    assert!(matches!(ty, 3 | 11), "ICMP type {ty}");
    let q = &icmp.slice()[8..];
    assert!(q.len() >= 20 && q[0] >> 4 == 4, "quote {q:02x?}");
    let ihl = usize::from(q[0] & 15) * 4;
    assert_eq!(h.destination(), q[12..16], "not to the quoted source");
    assert_eq!(be16(q, 6) & 0x1fff, 0, "about a later fragment");
    if q[9] == 1 {
        let t = q.get(ihl).copied();
        assert!(
            !matches!(t, Some(3 | 4 | 5 | 11 | 12)),
            "about an ICMP error ({t:?})"
        );
    }
    let declared = be16(q, 2);
    if (ty, icmp.code_u8()) == (3, 4) {
        let mtu = be16(icmp.slice(), 6);
        assert!(mtu > 0 && declared > mtu, "MTU {mtu} for {declared} bytes");
    }
    check_quote(input, q, declared, 28);
}

fn check6(input: &[u8], ip: &[u8]) {
    let s = Ipv6Slice::from_slice(ip).expect("an IPv6 header etherparse reads");
    let h = s.header();
    assert_eq!(
        usize::from(h.payload_length()) + 40,
        ip.len(),
        "IPv6 payload length"
    );
    assert!(
        ip.len() <= 1280 && ip.len() <= MAX,
        "{} bytes of IPv6",
        ip.len()
    );
    assert_eq!(h.next_header().0, 58, "an ICMPv6 error that is not ICMPv6");
    let icmp = Icmpv6Slice::from_slice(s.payload().payload).expect("an ICMPv6 header");
    assert!(
        icmp.is_checksum_valid(h.source(), h.destination()),
        "ICMPv6 checksum"
    );
    let ty = icmp.type_u8();
    assert!(matches!(ty, 1..=3), "ICMPv6 type {ty}");
    let q = &icmp.slice()[8..];
    assert!(q.len() >= 40 && q[0] >> 4 == 6, "quote {q:02x?}");
    assert_eq!(h.destination(), q[8..24], "not to the quoted source");
    if q[6] == 58 {
        let t = q.get(40).copied();
        assert!(t.is_some_and(|t| t >= 128), "about an ICMPv6 error ({t:?})");
    }
    let declared = 40 + be16(q, 4);
    if ty == 2 {
        let b = icmp.slice();
        let mtu = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        assert!(mtu > 0 && declared > mtu, "MTU {mtu} for {declared} bytes");
    }
    check_quote(input, q, declared, 48);
}
