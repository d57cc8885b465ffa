//! Builds test frames (Ethernet / IPv4 / UDP with correct checksums) for the
//! generated captures of pcap ports, the packet generator, tests and benchmarks.

use std::net::Ipv4Addr;

use crate::config::Generate;
use crate::mac::MacAddr;
use crate::wire::checksum::{csum_add, csum_fold, pseudo4};
use crate::wire::ethernet::{self, ETHERTYPE_IPV4};
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::proto;
use crate::wire::udp::{self, UdpHeader};

/// The IPv4 header checksum of `hdr` (with its checksum field zero; 0 for
/// a header whose checksum is right).
pub fn ipv4_checksum(hdr: &[u8]) -> u16 {
    crate::wire::checksum::checksum(hdr)
}

/// A UDP flow's addresses.
#[derive(Debug, Clone, Copy)]
pub struct Udp4 {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// An Ethernet/IPv4/UDP frame of `frame_len` bytes (at least 42), whose payload
/// starts with `seq` (big endian) and is filled with a pattern derived from it.
pub fn udp4_frame(f: &Udp4, frame_len: usize, seq: u32) -> Vec<u8> {
    let l4 = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    let frame_len = frame_len.max(l4 + udp::HEADER_LEN + 4);
    let mut b = vec![0u8; frame_len];
    ethernet::write(&mut b, &f.dst_mac.0, &f.src_mac.0, ETHERTYPE_IPV4);
    let ip_len = (frame_len - ethernet::HEADER_LEN) as u16;
    let (src, dst) = (f.src_ip.octets(), f.dst_ip.octets());
    ipv4::write(
        &mut b[ethernet::HEADER_LEN..],
        ip_len,
        64,
        proto::UDP,
        src,
        dst,
    );
    if let Some(mut ip) = Ipv4Packet::new_checked(&mut b[ethernet::HEADER_LEN..]) {
        ip.set_ident(seq as u16);
        ip.fill_checksum();
    }
    let udp_len = ip_len - ipv4::HEADER_LEN as u16;
    let data = l4 + udp::HEADER_LEN;
    b[data..data + 4].copy_from_slice(&seq.to_be_bytes());
    for (i, x) in b[data + 4..].iter_mut().enumerate() {
        *x = (seq as u8).wrapping_add(i as u8);
    }
    if let Some(mut u) = UdpHeader::new_checked(&mut b[l4..]) {
        u.set_src_port(f.src_port);
        u.set_dst_port(f.dst_port);
        u.set_len(udp_len);
    }
    // UDP checksum over the pseudo header and the datagram.
    let pseudo = pseudo4(&src, &dst, udp_len, proto::UDP);
    let mut c = csum_fold(csum_add(pseudo, &b[l4..]));
    if c == 0 {
        c = 0xffff;
    }
    if let Some(mut u) = UdpHeader::new_checked(&mut b[l4..]) {
        u.set_checksum(c);
    }
    b
}

/// The frames of a `generate` spec: one per flow, flows differ in UDP source port.
pub fn generate(g: &Generate) -> Vec<Vec<u8>> {
    (0..g.flows)
        .map(|i| {
            let f = Udp4 {
                src_mac: g.src_mac,
                dst_mac: g.dst_mac,
                src_ip: Ipv4Addr::new(10, 0, 0, 1),
                dst_ip: Ipv4Addr::new(10, 0, 0, 2),
                src_port: 1024 + i,
                dst_port: 9,
            };
            udp4_frame(&f, g.frame_len as usize, i as u32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum16(data: &[u8], acc: u32) -> u32 {
        csum_add(acc, data)
    }

    fn fold(acc: u32) -> u16 {
        csum_fold(acc)
    }

    #[test]
    fn ipv4_checksum_known_value() {
        // RFC 1071 style example header, checksum field zeroed.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&h), 0xb861);
    }

    #[test]
    fn frame_checksums_verify() {
        let f = Udp4 {
            src_mac: "fa:16:3e:00:00:01".parse().unwrap(),
            dst_mac: "fa:16:3e:00:00:02".parse().unwrap(),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 1000,
            dst_port: 2000,
        };
        for len in [60usize, 61, 128, 1514] {
            let b = udp4_frame(&f, len, 77);
            assert_eq!(b.len(), len);
            assert_eq!(fold(sum16(&b[14..34], 0)), 0, "ip checksum");
            let udp_len = (len - 34) as u32;
            let mut acc = sum16(&b[26..34], 0) + 17 + udp_len;
            acc = sum16(&b[34..], acc);
            assert_eq!(fold(acc), 0, "udp checksum, len {len}");
            assert_eq!(&b[42..46], &77u32.to_be_bytes());
        }
    }

    #[test]
    fn generate_gives_distinct_flows() {
        let g = Generate {
            src_mac: "fa:16:3e:00:00:01".parse().unwrap(),
            dst_mac: "fa:16:3e:00:00:02".parse().unwrap(),
            flows: 5,
            frame_len: 60,
        };
        let fr = generate(&g);
        assert_eq!(fr.len(), 5);
        let ports: std::collections::HashSet<_> = fr.iter().map(|f| [f[34], f[35]]).collect();
        assert_eq!(ports.len(), 5);
        assert!(fr.iter().all(|f| f.len() == 60 && f[0..6] == g.dst_mac.0));
    }

    /// The frame is byte for byte the one written at literal offsets before
    /// the wire views (the generated captures and the benches depend on it).
    #[test]
    fn frame_bytes_are_unchanged() {
        fn before(f: &Udp4, frame_len: usize, seq: u32) -> Vec<u8> {
            let frame_len = frame_len.max(42 + 4);
            let mut b = vec![0u8; frame_len];
            b[0..6].copy_from_slice(&f.dst_mac.0);
            b[6..12].copy_from_slice(&f.src_mac.0);
            b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ip_len = (frame_len - 14) as u16;
            let ip = &mut b[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
            ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&f.src_ip.octets());
            ip[16..20].copy_from_slice(&f.dst_ip.octets());
            let c = crate::wire::checksum::checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let udp_len = ip_len - 20;
            b[34..36].copy_from_slice(&f.src_port.to_be_bytes());
            b[36..38].copy_from_slice(&f.dst_port.to_be_bytes());
            b[38..40].copy_from_slice(&udp_len.to_be_bytes());
            b[42..46].copy_from_slice(&seq.to_be_bytes());
            for (i, x) in b[46..].iter_mut().enumerate() {
                *x = (seq as u8).wrapping_add(i as u8);
            }
            let pseudo = pseudo4(&f.src_ip.octets(), &f.dst_ip.octets(), udp_len, 17);
            let mut c = csum_fold(csum_add(pseudo, &b[34..]));
            if c == 0 {
                c = 0xffff;
            }
            b[40..42].copy_from_slice(&c.to_be_bytes());
            b
        }
        let f = Udp4 {
            src_mac: "fa:16:3e:00:00:01".parse().unwrap(),
            dst_mac: "fa:16:3e:00:00:02".parse().unwrap(),
            src_ip: Ipv4Addr::new(10, 1, 2, 3),
            dst_ip: Ipv4Addr::new(192, 0, 2, 9),
            src_port: 40000,
            dst_port: 53,
        };
        for len in [0usize, 45, 46, 60, 61, 128, 1514] {
            for seq in [0u32, 1, 77, 0xdead_beef, u32::MAX] {
                assert_eq!(
                    udp4_frame(&f, len, seq),
                    before(&f, len, seq),
                    "{len} {seq}"
                );
            }
        }
    }
}
