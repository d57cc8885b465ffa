//! NAT traffic for the NAT benchmark: captures of 60-byte IPv4/UDP frames
//! between VMs behind a router (10.0.0.0/16) and hosts on the "internet"
//! (198.51.100.0/24), seen from the router's two sides.
//!
//! - Floating IPs: VM `v` has the fixed IP 10.0.0.(10 + v) and the floating IP
//!   203.0.113.(10 + v) on the external network. Outbound frames go from the
//!   fixed IPs to 198.51.100.1:80; inbound frames come from 198.51.100.1 (source
//!   port 80) to the floating IPs, destination ports 8080 up.
//! - SNAT: `count` distinct 5-tuples from 10.0.16.0 up (4000 source hosts,
//!   source ports from `first_port` up), each to one of 250 hosts
//!   198.51.100.1-250, port 80. Not all to one host: SNAT to the one gateway
//!   address gives at most 64k sessions per destination (address, port), as
//!   many as there are source ports; 250 destinations keep every pool below
//!   4k sessions per million.
//!
//! Each frame's UDP payload starts with its flow index (`seq`), so a check can
//! tie a translated frame back to its flow. MACs are parameters: the kernel
//! reference and dvr-pmd's model each give theirs.

#![allow(dead_code)]

use std::net::Ipv4Addr;

use dvr::gen::{udp4_frame, Udp4};
use dvr::mac::MacAddr;

/// The frame length of every capture (the Ethernet minimum without FCS).
pub const FRAME_LEN: usize = 60;
/// The "internet" host of the floating IP traffic.
pub const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The router's address on the inside network (10.0.0.0/16).
pub const INSIDE_GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The router's external gateway address: the SNAT source.
pub const EXT_GW_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The upstream router on the external network (the router's default route).
pub const UPSTREAM: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
/// Source hosts of the SNAT flows.
pub const SNAT_HOSTS: u32 = 4000;
/// Destination hosts of the SNAT flows.
pub const SNAT_DESTS: u32 = 250;

/// The fixed IP of VM `v` (0-based; at most 200 VMs).
pub fn fixed_ip(v: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 10 + v)
}

/// The floating IP of VM `v`.
pub fn floating_ip(v: u8) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, 10 + v)
}

/// Outbound floating IP traffic: `vms` VMs, `flows` flows each (source ports
/// 1024 up), from the fixed IPs to [`INTERNET`]:80, frames sent by `vm_mac` to
/// the router's inside MAC `router_mac`. Flow `v * flows + f` is frame number
/// `v * flows + f`.
pub fn fip_outbound(vm_mac: MacAddr, router_mac: MacAddr, vms: u8, flows: u16) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(vms as usize * flows as usize);
    for v in 0..vms {
        for f in 0..flows {
            let seq = v as u32 * flows as u32 + f as u32;
            let u = Udp4 {
                src_mac: vm_mac,
                dst_mac: router_mac,
                src_ip: fixed_ip(v),
                dst_ip: INTERNET,
                src_port: 1024 + f,
                dst_port: 80,
            };
            out.push(udp4_frame(&u, FRAME_LEN, seq));
        }
    }
    out
}

/// Inbound floating IP traffic: from [`INTERNET`]:80 to the floating IPs of
/// `vms` VMs, `flows` destination ports each (8080 up), frames sent by the
/// upstream router `ext_mac` to the router's external MAC `router_mac`.
pub fn fip_inbound(ext_mac: MacAddr, router_mac: MacAddr, vms: u8, flows: u16) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(vms as usize * flows as usize);
    for v in 0..vms {
        for f in 0..flows {
            let seq = v as u32 * flows as u32 + f as u32;
            let u = Udp4 {
                src_mac: ext_mac,
                dst_mac: router_mac,
                src_ip: INTERNET,
                dst_ip: floating_ip(v),
                src_port: 80,
                dst_port: 8080 + f,
            };
            out.push(udp4_frame(&u, FRAME_LEN, seq));
        }
    }
    out
}

/// The 5-tuple of SNAT flow `i`: source host, source port, destination host
/// (port 80). Distinct for `i < SNAT_HOSTS * (65536 - first_port)`.
pub fn snat_flow(i: u32, first_port: u16) -> (Ipv4Addr, u16, Ipv4Addr) {
    let h = i % SNAT_HOSTS;
    let src = Ipv4Addr::new(10, 0, 16 + (h / 250) as u8, 1 + (h % 250) as u8);
    let port = first_port as u32 + i / SNAT_HOSTS;
    assert!(
        port <= u16::MAX as u32,
        "too many SNAT flows for the port space"
    );
    let dst = Ipv4Addr::new(198, 51, 100, 1 + (i % SNAT_DESTS) as u8);
    (src, port as u16, dst)
}

/// `count` SNAT flows (see [`snat_flow`]), one frame each, frame `i` of flow
/// `i`, sent by `vm_mac` to the router's inside MAC `router_mac`.
pub fn snat_frames(
    vm_mac: MacAddr,
    router_mac: MacAddr,
    count: u32,
    first_port: u16,
) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let (src_ip, src_port, dst_ip) = snat_flow(i, first_port);
            let u = Udp4 {
                src_mac: vm_mac,
                dst_mac: router_mac,
                src_ip,
                dst_ip,
                src_port,
                dst_port: 80,
            };
            udp4_frame(&u, FRAME_LEN, i)
        })
        .collect()
}

/// The flow index a frame of these captures carries (the first 4 payload bytes).
pub fn seq_of(frame: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(frame.get(42..46)?.try_into().ok()?))
}
