//! A frame decoded header by header for people (`dvr-ctl trace`): Ethernet,
//! 802.1Q tags, IPv4 / IPv6, UDP / TCP / ICMP / ICMPv6, and through the
//! tunnels dvr uses (VXLAN on UDP 4789, GRE carrying Ethernet) the inner
//! frame again. The headers are read by `etherparse`, an implementation
//! independent of the router's own.

use etherparse::{
    Ethernet2Header, Icmpv4Header, Icmpv6Header, IpNumber, Ipv4Header, Ipv6Header,
    SingleVlanHeader, TcpHeader, UdpHeader,
};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_TEB: u16 = 0x6558;
const VXLAN_PORT: u16 = 4789;

fn mac(m: [u8; 6]) -> String {
    dvr::mac::MacAddr(m).to_string()
}

/// One line per header of `frame`, indented one step deeper inside a
/// tunnel; a header that does not parse ends the list with what is left.
pub fn describe(frame: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    ethernet(frame, 0, &mut out);
    out
}

fn push(out: &mut Vec<String>, depth: usize, line: String) {
    out.push(format!("{}{line}", "  ".repeat(depth)));
}

fn ethernet(b: &[u8], depth: usize, out: &mut Vec<String>) {
    let Ok((eth, mut rest)) = Ethernet2Header::from_slice(b) else {
        push(
            out,
            depth,
            format!("{} bytes: shorter than an Ethernet header", b.len()),
        );
        return;
    };
    let mut et = eth.ether_type.0;
    push(
        out,
        depth,
        format!(
            "Ethernet {} → {} type 0x{et:04x}",
            mac(eth.source),
            mac(eth.destination)
        ),
    );
    while et == ETHERTYPE_VLAN {
        let Ok((v, r)) = SingleVlanHeader::from_slice(rest) else {
            push(out, depth, "802.1Q tag: truncated".into());
            return;
        };
        push(
            out,
            depth,
            format!(
                "802.1Q VLAN {} priority {}",
                v.vlan_id.value(),
                v.pcp.value()
            ),
        );
        et = v.ether_type.0;
        rest = r;
    }
    match et {
        ETHERTYPE_IPV4 => ipv4(rest, depth, out),
        ETHERTYPE_IPV6 => ipv6(rest, depth, out),
        ETHERTYPE_ARP => arp(rest, depth, out),
        other => push(
            out,
            depth,
            format!("payload of type 0x{other:04x}: {} bytes", rest.len()),
        ),
    }
}

fn arp(b: &[u8], depth: usize, out: &mut Vec<String>) {
    if b.len() < 28 {
        push(out, depth, format!("ARP: {} bytes, truncated", b.len()));
        return;
    }
    let ip = |at: usize| std::net::Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
    let m = |at: usize| mac(b[at..at + 6].try_into().expect("6 bytes"));
    let op = match u16::from_be_bytes([b[6], b[7]]) {
        1 => "request",
        2 => "reply",
        _ => "operation ?",
    };
    push(
        out,
        depth,
        format!(
            "ARP {op}: sender {} {}, target {} {}",
            m(8),
            ip(14),
            m(18),
            ip(24)
        ),
    );
}

fn ipv4(b: &[u8], depth: usize, out: &mut Vec<String>) {
    let Ok((h, rest)) = Ipv4Header::from_slice(b) else {
        push(
            out,
            depth,
            format!("IPv4: {} bytes, not a valid header", b.len()),
        );
        return;
    };
    let sum = if h.header_checksum == h.calc_header_checksum() {
        "ok"
    } else {
        "BAD"
    };
    let frag = if h.more_fragments || h.fragment_offset.value() != 0 {
        format!(
            " fragment offset {}{}",
            h.fragment_offset.value() * 8,
            if h.more_fragments { " +" } else { "" }
        )
    } else {
        String::new()
    };
    push(
        out,
        depth,
        format!(
            "IPv4 {} → {} ttl {} protocol {} length {}{}{frag} checksum {sum}",
            std::net::Ipv4Addr::from(h.source),
            std::net::Ipv4Addr::from(h.destination),
            h.time_to_live,
            h.protocol.0,
            h.total_len,
            if h.dont_fragment { " DF" } else { "" },
        ),
    );
    if h.fragment_offset.value() != 0 {
        return;
    }
    let end = (h.total_len as usize)
        .saturating_sub(h.header_len())
        .min(rest.len());
    transport(h.protocol, &rest[..end], depth, out);
}

fn ipv6(b: &[u8], depth: usize, out: &mut Vec<String>) {
    let Ok((h, rest)) = Ipv6Header::from_slice(b) else {
        push(
            out,
            depth,
            format!("IPv6: {} bytes, not a valid header", b.len()),
        );
        return;
    };
    push(
        out,
        depth,
        format!(
            "IPv6 {} → {} hop limit {} next header {} payload {}",
            std::net::Ipv6Addr::from(h.source),
            std::net::Ipv6Addr::from(h.destination),
            h.hop_limit,
            h.next_header.0,
            h.payload_length
        ),
    );
    let end = (h.payload_length as usize).min(rest.len());
    transport(h.next_header, &rest[..end], depth, out);
}

fn transport(p: IpNumber, b: &[u8], depth: usize, out: &mut Vec<String>) {
    match p {
        IpNumber::UDP => {
            let Ok((u, rest)) = UdpHeader::from_slice(b) else {
                push(out, depth, "UDP: truncated".into());
                return;
            };
            push(
                out,
                depth,
                format!(
                    "UDP {} → {} length {}",
                    u.source_port, u.destination_port, u.length
                ),
            );
            if u.destination_port == VXLAN_PORT && rest.len() >= 8 && rest[0] & 0x08 != 0 {
                let vni = u32::from_be_bytes([0, rest[4], rest[5], rest[6]]);
                push(out, depth, format!("VXLAN VNI {vni}"));
                ethernet(&rest[8..], depth + 1, out);
            }
        }
        IpNumber::TCP => match TcpHeader::from_slice(b) {
            Ok((t, rest)) => {
                let flags: String = [
                    (t.syn, 'S'),
                    (t.ack, '.'),
                    (t.fin, 'F'),
                    (t.rst, 'R'),
                    (t.psh, 'P'),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, c)| *c)
                .collect();
                push(
                    out,
                    depth,
                    format!(
                        "TCP {} → {} [{flags}] seq {} ack {} window {} data {}",
                        t.source_port,
                        t.destination_port,
                        t.sequence_number,
                        t.acknowledgment_number,
                        t.window_size,
                        rest.len()
                    ),
                );
            }
            Err(_) => push(out, depth, "TCP: truncated".into()),
        },
        IpNumber::ICMP => match Icmpv4Header::from_slice(b) {
            Ok((i, _)) => push(out, depth, format!("ICMP {:?}", i.icmp_type)),
            Err(_) => push(out, depth, "ICMP: truncated".into()),
        },
        IpNumber::IPV6_ICMP => match Icmpv6Header::from_slice(b) {
            Ok((i, _)) => push(out, depth, format!("ICMPv6 {:?}", i.icmp_type)),
            Err(_) => push(out, depth, "ICMPv6: truncated".into()),
        },
        IpNumber::GRE => {
            if b.len() < 4 {
                push(out, depth, "GRE: truncated".into());
                return;
            }
            let key = b[0] & 0x20 != 0;
            let proto = u16::from_be_bytes([b[2], b[3]]);
            let (k, at) = match (key, b.get(4..8)) {
                (true, Some(k)) => (Some(u32::from_be_bytes(k.try_into().expect("4 bytes"))), 8),
                _ => (None, 4),
            };
            push(
                out,
                depth,
                format!(
                    "GRE protocol 0x{proto:04x}{}",
                    k.map_or(String::new(), |k| format!(" key {k}"))
                ),
            );
            if proto == ETHERTYPE_TEB {
                ethernet(&b[at..], depth + 1, out);
            }
        }
        other => push(
            out,
            depth,
            format!("IP protocol {}: {} bytes", other.0, b.len()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    #[test]
    fn vxlan_with_an_inner_tcp_segment_and_a_vlan_icmpv6() {
        let mut inner = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 7, 1000)
            .syn()
            .write(&mut inner, b"")
            .unwrap();
        let mut vx = vec![0x08, 0, 0, 0, 0, 0x03, 0xe9, 0];
        vx.extend(&inner);
        let mut outer = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(49152, 4789)
            .write(&mut outer, &vx)
            .unwrap();
        let lines = describe(&outer);
        assert!(
            lines[0].starts_with("Ethernet 02:00:00:00:00:0a → 02:00:00:00:00:0b"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("IPv4 192.0.2.1 → 192.0.2.2 ttl 64 protocol 17"),
            "{lines:?}"
        );
        assert!(lines[1].ends_with("checksum ok"), "{lines:?}");
        assert_eq!(lines[2], "UDP 49152 → 4789 length 70");
        assert_eq!(lines[3], "VXLAN VNI 1001");
        assert!(
            lines[4].starts_with("  Ethernet 02:00:00:00:00:01"),
            "{lines:?}"
        );
        assert!(
            lines[6].starts_with("  TCP 40000 → 80 [S] seq 7"),
            "{lines:?}"
        );

        let mut v6 = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .single_vlan(etherparse::VlanId::try_new(303).unwrap())
            .ipv6(
                [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                255,
            )
            .icmpv6_echo_request(1, 2)
            .write(&mut v6, b"x")
            .unwrap();
        let lines = describe(&v6);
        assert_eq!(lines[1], "802.1Q VLAN 303 priority 0");
        assert!(
            lines[2].starts_with("IPv6 fe80::1 → ff02::1 hop limit 255"),
            "{lines:?}"
        );
        assert!(lines[3].starts_with("ICMPv6 EchoRequest"), "{lines:?}");
        // A runt, a broken IPv4 header.
        assert_eq!(
            describe(&[0; 5]),
            vec!["5 bytes: shorter than an Ethernet header"]
        );
        let mut bad = v6.clone();
        bad.truncate(20);
        assert!(describe(&bad).last().unwrap().contains("IPv6"));
    }
}
