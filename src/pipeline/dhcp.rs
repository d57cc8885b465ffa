//! DHCP on the VM's own host (as OVN answers it, where Neutron's DHCP agent
//! runs on a controller): a VM port's DHCPv4 client messages are answered
//! here from the model, never flooded. The port's IPv4 address in a subnet
//! of its network with DHCP enabled is its lease; the options were made when
//! the network was compiled ([`NetTables::dhcp4`]): mask, router, DNS
//! servers, MTU, classless static routes. A port without such an address,
//! or on a subnet with DHCP off, has its DHCP switched as any frame (to a
//! DHCP server of the tenant's own, say).
//!
//! | client sends | answer |
//! |---|---|
//! | DISCOVER | OFFER of the port's address |
//! | REQUEST for the port's address (or no address named) | ACK |
//! | REQUEST for another address | NAK |
//! | REQUEST naming another server (option 54) | none: `dhcp_other_server` |
//! | INFORM | ACK with the options, no lease |
//! | RELEASE, DECLINE | none: `dhcp_released` (the address stays the port's) |
//!
//! A client's message is UDP from port 68 to port 67 (as OVN matches it); a
//! relay agent's (67 to 67) is switched.
//!
//! The reply is written over the request, in its buffer: no allocation.

use super::{Disposition, Trace};
use crate::pkt::Frame;
use crate::stats::DropReason as R;
use crate::tables::{Dhcp4, NetTables, VmPort};
use crate::wire::checksum::{checksum, pseudo4};
use crate::wire::dhcp::{self, field, msg, opt};
use crate::wire::{be16, ethernet, ipv4, udp};
use Disposition as D;

/// The lease handed out, in seconds (Neutron's `dhcp_lease_duration`), and
/// when the client renews (T1, half) and rebinds (T2, seven eighths).
pub const LEASE_SECS: u32 = 86_400;
const T1_SECS: u32 = LEASE_SECS / 2;
const T2_SECS: u32 = LEASE_SECS / 8 * 7;

const IP_AT: usize = ethernet::HEADER_LEN;

/// Whether IPv4 frame `b` is UDP from the DHCP client port to the server
/// port (as OVN matches a client's messages; a relay agent's, 67 to 67, is
/// switched): the one test every IPv4 frame of the full pipeline from a VM
/// port pays.
#[inline(always)]
fn client_to_server(b: &[u8]) -> bool {
    let Some(&vihl) = b.get(IP_AT) else {
        return false;
    };
    let ihl = (vihl & 0x0f) as usize * 4;
    let u = IP_AT + ihl;
    b.get(IP_AT + ipv4::field::PROTOCOL) == Some(&17)
        && b.len() >= u + udp::HEADER_LEN
        && be16(b, u + udp::field::DST_PORT.start) == dhcp::SERVER_PORT
        && be16(b, u + udp::field::SRC_PORT.start) == dhcp::CLIENT_PORT
}

/// Answers the DHCPv4 client message `f` from VM port `vm` of network `net`
/// in place; `None` when `f` is not one this node answers (not UDP from port
/// 68 to port 67, or the port has no address on a subnet with DHCP here): the pipeline
/// goes on with it.
#[inline]
pub(super) fn dhcp4<T: Trace>(
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Option<Disposition> {
    if !client_to_server(f.data()) {
        return None;
    }
    let (ip, d) = vm.ips4.iter().find_map(|&a| {
        net.dhcp4
            .iter()
            .find(|d| a & d.mask == d.net)
            .map(|d| (a, d))
    })?;
    Some(answer(vm, ip, d, f, t))
}

#[cold]
fn answer<T: Trace>(vm: &VmPort, ip: u32, d: &Dhcp4, f: &mut Frame, t: &mut T) -> Disposition {
    let b = f.data();
    let Some(h) = ipv4::Ipv4Packet::new_checked(&b[IP_AT..]) else {
        return D::Drop(R::DhcpMalformed);
    };
    let ihl = h.header_len();
    let end = (IP_AT + h.total_len() as usize).min(b.len());
    let at = IP_AT + ihl + udp::HEADER_LEN;
    if h.frag_offset() != 0 || h.more_frags() || end < at {
        tr!(t, "dhcp", "not one whole UDP datagram");
        return D::Drop(R::DhcpMalformed);
    }
    let Some(q) = dhcp::request(&b[at..end]) else {
        tr!(
            t,
            "dhcp",
            "UDP to port 67 that is not a DHCP client message"
        );
        return D::Drop(R::DhcpMalformed);
    };
    if q.chaddr != vm.mac.0 {
        tr!(
            t,
            "dhcp",
            "client hardware address {} is not the port's",
            crate::mac::MacAddr(q.chaddr)
        );
        return D::Drop(R::DhcpForeignClient);
    }
    let reply = match q.kind {
        msg::DISCOVER => msg::OFFER,
        msg::REQUEST => {
            if q.server_id.is_some_and(|s| s != d.server) {
                tr!(t, "dhcp", "REQUEST for another server");
                return D::Drop(R::DhcpOtherServer);
            }
            let asked = q.requested.or((q.ciaddr != 0).then_some(q.ciaddr));
            if asked.is_some_and(|a| a != ip) {
                msg::NAK
            } else {
                msg::ACK
            }
        }
        msg::INFORM => msg::ACK,
        msg::RELEASE | msg::DECLINE => {
            tr!(t, "dhcp", "RELEASE or DECLINE: nothing to answer");
            return D::Drop(R::DhcpReleased);
        }
        _ => {
            tr!(t, "dhcp", "message type {}: not a client's", q.kind);
            return D::Drop(R::DhcpMalformed);
        }
    };
    let inform = q.kind == msg::INFORM;
    let lease = !inform && reply != msg::NAK;
    let opts_len = 3
        + 6
        + if lease { 18 } else { 0 }
        + if reply == msg::NAK {
            0
        } else {
            d.options.len()
        }
        + 1;
    let bootp = (dhcp::OPTIONS_AT + opts_len).max(dhcp::MIN_LEN);
    let at = IP_AT + ipv4::HEADER_LEN + udp::HEADER_LEN;
    let total = at + bootp;
    if f.len() < total && !f.extend(total - f.len()) {
        tr!(t, "dhcp", "no room in the buffer for the reply");
        return D::Drop(R::DhcpMalformed);
    }
    f.trim(total);

    // Where the reply goes: the client's address when it has one (renewing,
    // informing), else broadcast if it asked so, else the address offered.
    let yiaddr = if inform || reply == msg::NAK { 0 } else { ip };
    let bcast = reply == msg::NAK || (q.ciaddr == 0 && q.flags & dhcp::FLAG_BROADCAST != 0);
    let dst_ip = match () {
        _ if bcast => u32::MAX,
        _ if q.ciaddr != 0 => q.ciaddr,
        _ => yiaddr,
    };
    let dst_mac = if bcast { [0xff; 6] } else { q.chaddr };
    tr!(
        t,
        "dhcp",
        "{} from {}: {} {}",
        name(q.kind),
        vm.name,
        name(reply),
        std::net::Ipv4Addr::from(yiaddr)
    );

    let b = f.data_mut();
    ethernet::write(b, &dst_mac, &d.server_mac.0, ethernet::ETHERTYPE_IPV4);
    let ip_len = (total - IP_AT) as u16;
    {
        let h = &mut b[IP_AT..IP_AT + ipv4::HEADER_LEN];
        h.fill(0);
        h[ipv4::field::VER_IHL] = 0x45;
        h[ipv4::field::LENGTH].copy_from_slice(&ip_len.to_be_bytes());
        h[ipv4::field::TTL] = 64;
        h[ipv4::field::PROTOCOL] = 17;
        h[ipv4::field::SRC_ADDR].copy_from_slice(&d.server.to_be_bytes());
        h[ipv4::field::DST_ADDR].copy_from_slice(&dst_ip.to_be_bytes());
        let c = checksum(h);
        h[ipv4::field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
    let m = &mut b[at..total];
    m.fill(0);
    m[field::OP] = dhcp::BOOTREPLY;
    m[field::HTYPE] = dhcp::HTYPE_ETHERNET;
    m[field::HLEN] = 6;
    m[field::XID].copy_from_slice(&q.xid);
    m[field::FLAGS].copy_from_slice(&q.flags.to_be_bytes());
    if reply != msg::NAK {
        m[field::CIADDR].copy_from_slice(&q.ciaddr.to_be_bytes());
    }
    m[field::YIADDR].copy_from_slice(&yiaddr.to_be_bytes());
    m[field::GIADDR].copy_from_slice(&q.giaddr);
    m[field::CHADDR][..6].copy_from_slice(&q.chaddr);
    m[field::MAGIC].copy_from_slice(&dhcp::MAGIC);
    let mut o = dhcp::OPTIONS_AT;
    let mut put = |m: &mut [u8], bytes: &[u8]| {
        m[o..o + bytes.len()].copy_from_slice(bytes);
        o += bytes.len();
    };
    put(m, &[opt::MESSAGE_TYPE, 1, reply]);
    put(m, &[opt::SERVER_ID, 4]);
    put(m, &d.server.to_be_bytes());
    if lease {
        for (code, secs) in [
            (opt::LEASE_TIME, LEASE_SECS),
            (opt::RENEWAL_TIME, T1_SECS),
            (opt::REBINDING_TIME, T2_SECS),
        ] {
            put(m, &[code, 4]);
            put(m, &secs.to_be_bytes());
        }
    }
    if reply != msg::NAK {
        put(m, &d.options);
    }
    put(m, &[opt::END]);

    let u_len = (total - IP_AT - ipv4::HEADER_LEN) as u16;
    let (head, u) = b.split_at_mut(IP_AT + ipv4::HEADER_LEN);
    let u = &mut u[..u_len as usize];
    udp::write(u, dhcp::SERVER_PORT, dhcp::CLIENT_PORT, u_len);
    let ip = &head[IP_AT..];
    let sum = pseudo4(
        &ip[ipv4::field::SRC_ADDR],
        &ip[ipv4::field::DST_ADDR],
        u_len,
        17,
    );
    udp::finish_checksum(u, sum);
    D::Forward(vm.index)
}

fn name(kind: u8) -> &'static str {
    match kind {
        msg::DISCOVER => "DISCOVER",
        msg::OFFER => "OFFER",
        msg::REQUEST => "REQUEST",
        msg::DECLINE => "DECLINE",
        msg::ACK => "ACK",
        msg::NAK => "NAK",
        msg::RELEASE => "RELEASE",
        msg::INFORM => "INFORM",
        _ => "?",
    }
}
