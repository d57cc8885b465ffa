//! Routed traffic for the L3 benchmarks: captures of IPv4/UDP frames sent to a
//! router's MAC address, whose destinations lie in the prefixes that DPDK's l3fwd
//! routes to the other port by default.
//!
//! l3fwd 22.11 (`main.c`, `ipv4_l3fwd_route_array`; the same list is
//! `lpm_default_v4.cfg`) installs 198.18.P.0/24 -> port P for P in 0..16, and
//! (`ipv6_l3fwd_route_array`) 2001:200:0:P::/64 -> port P, but only for the ports
//! in its `-p` mask. With two ports: 198.18.0.0/24 -> 0, 198.18.1.0/24 -> 1.
//! Frames entering port 0 go to 198.18.1.x, frames entering port 1 to 198.18.0.x:
//! each port's input leaves by the other port.

#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use dvr::gen::{udp4_frame, Udp4};
use dvr::mac::MacAddr;

/// The router's MAC address in the captures (l3fwd ignores it; dvr-pmd's router
/// interface must have it).
pub const ROUTER_MAC: &str = "fa:16:3e:00:01:fe";
/// The senders' MAC addresses: the VM behind port 0 and the one behind port 1.
pub const HOST_MAC: [&str; 2] = ["fa:16:3e:00:01:0a", "fa:16:3e:00:01:0b"];

/// The /24 that l3fwd routes to `port` by default: 198.18.PORT.0/24.
pub fn l3fwd_v4_net(port: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, port, 0)
}

/// The /64 that l3fwd routes to `port` by default: 2001:200:0:PORT::/64.
pub fn l3fwd_v6_net(port: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0x200, 0, port as u16, 0, 0, 0, 0)
}

/// One direction of routed traffic: `flows` frames from `src_ip` (one host) to
/// hosts .1 to .254 of the /24 `dst_net` (then round again), UDP source ports from
/// 1024 up; Ethernet destination `router_mac`, TTL 64, valid checksums.
pub fn routed_v4_frames(
    src_mac: MacAddr,
    router_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst_net: Ipv4Addr,
    flows: u16,
    frame_len: usize,
) -> Vec<Vec<u8>> {
    let net = dst_net.octets();
    (0..flows)
        .map(|i| {
            let f = Udp4 {
                src_mac,
                dst_mac: router_mac,
                src_ip,
                dst_ip: Ipv4Addr::new(net[0], net[1], net[2], 1 + (i % 254) as u8),
                src_port: 1024 + i,
                dst_port: 9,
            };
            udp4_frame(&f, frame_len, i as u32)
        })
        .collect()
}

/// Two captures of routed IPv4 traffic, `in0.pcap` for port 0 (to 198.18.1.0/24,
/// from 198.18.0.10) and `in1.pcap` for port 1 (to 198.18.0.0/24, from
/// 198.18.1.10), `flows` flows each, frames of `frame_len` bytes sent to
/// `router_mac`.
pub fn routed_v4_pair(
    dir: &Path,
    router_mac: MacAddr,
    flows: u16,
    frame_len: usize,
) -> (PathBuf, PathBuf) {
    let mk = |port: u8| {
        let frames = routed_v4_frames(
            HOST_MAC[port as usize].parse().unwrap(),
            router_mac,
            host(l3fwd_v4_net(port), 10),
            l3fwd_v4_net(1 - port),
            flows,
            frame_len,
        );
        let p = dir.join(format!("routed-v4-in{port}.pcap"));
        dvr::pcap::write_file(&p, &frames).unwrap();
        p
    };
    (mk(0), mk(1))
}

fn host(net: Ipv4Addr, h: u8) -> Ipv4Addr {
    let o = net.octets();
    Ipv4Addr::new(o[0], o[1], o[2], h)
}

/// The smallest IPv6/UDP frame with a 4-byte sequence number: 14 + 40 + 8 + 4.
pub const MIN_UDP6_FRAME: usize = 66;

/// An Ethernet/IPv6/UDP frame of `frame_len` bytes (at least [`MIN_UDP6_FRAME`]),
/// hop limit 64, payload starting with `seq`, valid UDP checksum.
#[allow(clippy::too_many_arguments)]
pub fn udp6_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: Ipv6Addr,
    dst_ip: Ipv6Addr,
    src_port: u16,
    dst_port: u16,
    frame_len: usize,
    seq: u32,
) -> Vec<u8> {
    let frame_len = frame_len.max(MIN_UDP6_FRAME);
    let mut b = vec![0u8; frame_len];
    b[0..6].copy_from_slice(&dst_mac.0);
    b[6..12].copy_from_slice(&src_mac.0);
    b[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let udp_len = (frame_len - 54) as u16;
    let ip = &mut b[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
    ip[6] = 17;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src_ip.octets());
    ip[24..40].copy_from_slice(&dst_ip.octets());
    b[54..56].copy_from_slice(&src_port.to_be_bytes());
    b[56..58].copy_from_slice(&dst_port.to_be_bytes());
    b[58..60].copy_from_slice(&udp_len.to_be_bytes());
    b[62..66].copy_from_slice(&seq.to_be_bytes());
    for (i, x) in b[66..].iter_mut().enumerate() {
        *x = (seq as u8).wrapping_add(i as u8);
    }
    // UDP checksum over the pseudo header (RFC 8200 8.1) and the datagram.
    let mut acc = sum16(&b[22..54], 0) + 17 + udp_len as u32;
    acc = sum16(&b[54..], acc);
    let mut c = fold(acc);
    if c == 0 {
        c = 0xffff;
    }
    b[60..62].copy_from_slice(&c.to_be_bytes());
    b
}

/// Two captures of routed IPv6 traffic like [`routed_v4_pair`]: `in0` to
/// 2001:200:0:1::/64 (hosts ::1 to ::N), `in1` to 2001:200:0:0::/64.
pub fn routed_v6_pair(
    dir: &Path,
    router_mac: MacAddr,
    flows: u16,
    frame_len: usize,
) -> (PathBuf, PathBuf) {
    let mk = |port: u8| {
        let src = v6_host(l3fwd_v6_net(port), 10);
        let dst = l3fwd_v6_net(1 - port);
        let frames: Vec<Vec<u8>> = (0..flows)
            .map(|i| {
                udp6_frame(
                    HOST_MAC[port as usize].parse().unwrap(),
                    router_mac,
                    src,
                    v6_host(dst, i.wrapping_add(1)),
                    1024 + i,
                    9,
                    frame_len,
                    i as u32,
                )
            })
            .collect();
        let p = dir.join(format!("routed-v6-in{port}.pcap"));
        dvr::pcap::write_file(&p, &frames).unwrap();
        p
    };
    (mk(0), mk(1))
}

fn v6_host(net: Ipv6Addr, h: u16) -> Ipv6Addr {
    let mut s = net.segments();
    s[7] = h;
    Ipv6Addr::from(s)
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u32) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}
