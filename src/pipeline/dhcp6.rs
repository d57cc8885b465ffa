//! IPv6 configuration on the VM's own host: router solicitations go to
//! [`ra`](super::ra); DHCPv6 (RFC 8415) client messages (UDP 546 to 547)
//! from a VM port with an address on a `dhcpv6-stateful` or
//! `dhcpv6-stateless` subnet ([`NetTables::dhcp6`]) are answered here, in
//! place, never flooded. The server's DUID is a DUID-LL of the router
//! interface's MAC on the subnet; replies come from its link-local address.
//!
//! | client sends | answer |
//! |---|---|
//! | Solicit | Advertise: IA_NA with the port's addresses on stateful subnets (Reply with rapid commit if asked), else status NoAddrsAvail |
//! | Request, Renew, Rebind | Reply: IA_NA with the port's addresses |
//! | Confirm | Reply: status Success, NotOnLink for an address outside the network's DHCPv6 subnets |
//! | Information-request | Reply: DNS servers (option 23) |
//! | Release, Decline | Reply: status Success (the address stays the port's) |
//! | naming another server's DUID | none: `dhcp6_other_server` |
//!
//! An address the client names in a Request, Renew or Rebind that is not
//! the port's goes back with lifetimes 0 (the client stops using it).
//! Every reply carries the server and client identifiers and the subnet's
//! DNS servers. Leases: preferred and valid 86,400 s, T1 half, T2 seven
//! eighths (as DHCPv4's). A port with no address on such a subnet has its
//! DHCPv6 switched as any frame.

use super::{ra, Disposition, Trace};
use crate::pkt::Frame;
use crate::stats::DropReason as R;
use crate::tables::{Dhcp6, NetTables, VmPort};
use crate::wire::checksum::pseudo6;
use crate::wire::dhcp6::{self, msg, opt, status};
use crate::wire::{be16, ethernet, icmp6, ipv6, mac_at, proto, udp};
use Disposition as D;

const IP_AT: usize = ethernet::HEADER_LEN;
const L4_AT: usize = IP_AT + ipv6::HEADER_LEN;
/// The most addresses one IA_NA carries (a port on several stateful subnets).
const MAX_LEASES: usize = 4;
const LEASE_SECS: u32 = super::dhcp::LEASE_SECS;

/// Answers IPv6 frame `f` from VM port `vm` of network `net` when it is a
/// router solicitation (the network has an advertisement) or a DHCPv6 client
/// message this node answers; `None` otherwise: the pipeline goes on with
/// it. The one test every IPv6 frame of the full pipeline from a VM port
/// pays on a network with either.
#[inline]
pub(super) fn config6<T: Trace>(
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Option<Disposition> {
    let b = f.data();
    let next = *b.get(IP_AT + ipv6::field::NEXT_HEADER)?;
    if next == proto::ICMPV6 {
        let ra6 = net.ra6.as_ref()?;
        if b.get(L4_AT) != Some(&icmp6::types::ROUTER_SOLICIT) {
            return None;
        }
        return Some(ra::answer(vm, ra6, f, t));
    }
    if next != proto::UDP
        || net.dhcp6.is_empty()
        || b.len() < L4_AT + udp::HEADER_LEN
        || be16(b, L4_AT + udp::field::DST_PORT.start) != dhcp6::SERVER_PORT
        || be16(b, L4_AT + udp::field::SRC_PORT.start) != dhcp6::CLIENT_PORT
    {
        return None;
    }
    dhcp6(vm, net, f, t)
}

#[cold]
fn dhcp6<T: Trace>(vm: &VmPort, net: &NetTables, f: &mut Frame, t: &mut T) -> Option<Disposition> {
    // The port's addresses on the network's DHCPv6 subnets: the first such
    // subnet serves it, its stateful ones are leased.
    let mut info: Option<&Dhcp6> = None;
    let mut leases = [[0u8; 16]; MAX_LEASES];
    let mut n = 0;
    for a in &vm.ips {
        let std::net::IpAddr::V6(a) = a else { continue };
        let v = u128::from(*a);
        if let Some(d) = net.dhcp6.iter().find(|d| v & d.mask == d.net) {
            info.get_or_insert(d);
            if d.stateful && n < MAX_LEASES {
                leases[n] = a.octets();
                n += 1;
            }
        }
    }
    let d = info?;
    Some(answer(vm, net, d, &leases[..n], f, t))
}

fn answer<T: Trace>(
    vm: &VmPort,
    net: &NetTables,
    d: &Dhcp6,
    leases: &[[u8; 16]],
    f: &mut Frame,
    t: &mut T,
) -> Disposition {
    let b = f.data();
    let Some(h) = ipv6::Ipv6Packet::new_checked(&b[IP_AT..]) else {
        return D::Drop(R::MalformedIpv6);
    };
    let l4 = h.payload();
    let ulen = l4
        .get(udp::field::LENGTH)
        .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
    if ulen < udp::HEADER_LEN || ulen > l4.len() {
        tr!(t, "dhcp6", "not one whole UDP datagram");
        return D::Drop(R::Dhcp6Malformed);
    }
    let Some(q) = dhcp6::request(&l4[udp::HEADER_LEN..ulen]) else {
        tr!(
            t,
            "dhcp6",
            "UDP 546 to 547 that is not a DHCPv6 client message"
        );
        return D::Drop(R::Dhcp6Malformed);
    };
    let server = dhcp6::duid_ll(&d.server_mac.0);
    let ours = q.server_id.is_none_or(|s| s == server);
    let needs_client = q.kind != msg::INFORMATION_REQUEST;
    if needs_client && q.client_id.is_none() {
        tr!(t, "dhcp6", "message type {} without a client id", q.kind);
        return D::Drop(R::Dhcp6Malformed);
    }
    // RFC 8415, 16: these must name a server, those must not.
    let (reply, lease, code) = match q.kind {
        msg::SOLICIT | msg::CONFIRM | msg::REBIND if q.server_id.is_some() => {
            tr!(t, "dhcp6", "message type {} with a server id", q.kind);
            return D::Drop(R::Dhcp6Malformed);
        }
        msg::REQUEST | msg::RENEW | msg::RELEASE | msg::DECLINE if q.server_id.is_none() => {
            tr!(t, "dhcp6", "message type {} without a server id", q.kind);
            return D::Drop(R::Dhcp6Malformed);
        }
        _ if !ours => {
            tr!(t, "dhcp6", "for another server");
            return D::Drop(R::Dhcp6OtherServer);
        }
        msg::SOLICIT if leases.is_empty() => (msg::ADVERTISE, false, Some(status::NO_ADDRS_AVAIL)),
        msg::SOLICIT if q.rapid_commit => (msg::REPLY, true, None),
        msg::SOLICIT => (msg::ADVERTISE, true, None),
        msg::REQUEST | msg::RENEW | msg::REBIND if leases.is_empty() => {
            (msg::REPLY, false, Some(status::NO_ADDRS_AVAIL))
        }
        msg::REQUEST | msg::RENEW | msg::REBIND => (msg::REPLY, true, None),
        msg::CONFIRM => {
            let on_link = q.ia_addr.is_none_or(|a| {
                let v = u128::from_be_bytes(a);
                net.dhcp6.iter().any(|x| v & x.mask == x.net)
            });
            let c = if on_link {
                status::SUCCESS
            } else {
                status::NOT_ON_LINK
            };
            (msg::REPLY, false, Some(c))
        }
        msg::RELEASE | msg::DECLINE => (msg::REPLY, false, Some(status::SUCCESS)),
        msg::INFORMATION_REQUEST => (msg::REPLY, false, None),
        _ => {
            tr!(t, "dhcp6", "message type {}: not a client's", q.kind);
            return D::Drop(R::Dhcp6Malformed);
        }
    };
    let lease = lease && q.iaid.is_some();
    // RFC 8415, 18.3.4, 18.3.5: an address the client names that is not
    // the port's (any more) goes back with lifetimes 0, so it stops using it.
    let stale = q
        .ia_addr
        .filter(|a| lease && q.kind != msg::SOLICIT && !leases.contains(a));
    let ia_len = 12 + 28 * (leases.len() + usize::from(stale.is_some()));
    let mut client = [0u8; dhcp6::MAX_DUID_LEN];
    let client_len = q.client_id.map_or(0, |c| c.len());
    client[..client_len].copy_from_slice(q.client_id.unwrap_or(&[]));
    let (xid, iaid, rapid) = (q.xid, q.iaid.unwrap_or_default(), q.rapid_commit);
    let rapid = rapid && reply == msg::REPLY && q.kind == msg::SOLICIT;
    tr!(
        t,
        "dhcp6",
        "{} from {}: {}{}",
        name(q.kind),
        vm.name,
        name(reply),
        super::Label(|f: &mut std::fmt::Formatter<'_>| {
            if lease {
                for a in leases.iter() {
                    write!(f, " {}", std::net::Ipv6Addr::from(*a))?;
                }
            }
            Ok(())
        })
    );

    let len = dhcp6::HEADER_LEN
        + 4
        + server.len()
        + if client_len > 0 { 4 + client_len } else { 0 }
        + if lease { 4 + ia_len } else { 0 }
        + if code.is_some() { 6 } else { 0 }
        + if rapid { 4 } else { 0 }
        + d.dns.len();
    let total = L4_AT + udp::HEADER_LEN + len;
    let (to_ip, to_mac) = (
        ipv6::Ipv6Packet::new_checked(&b[IP_AT..]).map(|h| h.src_addr().octets()),
        mac_at(b, ethernet::field::SRC.start),
    );
    let Some(to_ip) = to_ip else {
        return D::Drop(R::MalformedIpv6);
    };
    if f.len() < total && !f.extend(total - f.len()) {
        tr!(t, "dhcp6", "no room in the buffer for the reply");
        return D::Drop(R::Dhcp6Malformed);
    }
    f.trim(total);
    let b = f.data_mut();
    ethernet::write(b, &to_mac, &d.server_mac.0, ethernet::ETHERTYPE_IPV6);
    let from = d.server_ip.octets();
    let ulen = (udp::HEADER_LEN + len) as u16;
    ipv6::write(&mut b[IP_AT..], ulen, proto::UDP, 64, &from, &to_ip);
    let u = &mut b[L4_AT..total];
    udp::write(u, dhcp6::SERVER_PORT, dhcp6::CLIENT_PORT, ulen);
    let m = &mut u[udp::HEADER_LEN..];
    m[0] = reply;
    m[1..4].copy_from_slice(&xid);
    let mut o = dhcp6::HEADER_LEN;
    let mut put = |m: &mut [u8], bytes: &[u8]| {
        m[o..o + bytes.len()].copy_from_slice(bytes);
        o += bytes.len();
    };
    let head = |code: u16, len: usize| {
        let mut h = [0u8; 4];
        h[..2].copy_from_slice(&code.to_be_bytes());
        h[2..].copy_from_slice(&(len as u16).to_be_bytes());
        h
    };
    put(m, &head(opt::SERVERID, server.len()));
    put(m, &server);
    if client_len > 0 {
        put(m, &head(opt::CLIENTID, client_len));
        put(m, &client[..client_len]);
    }
    if lease {
        put(m, &head(opt::IA_NA, ia_len));
        put(m, &iaid);
        put(m, &(LEASE_SECS / 2).to_be_bytes());
        put(m, &(LEASE_SECS / 8 * 7).to_be_bytes());
        for a in leases {
            put(m, &head(opt::IAADDR, 24));
            put(m, a);
            put(m, &LEASE_SECS.to_be_bytes());
            put(m, &LEASE_SECS.to_be_bytes());
        }
        if let Some(a) = stale {
            put(m, &head(opt::IAADDR, 24));
            put(m, &a);
            put(m, &[0; 8]);
        }
    }
    if let Some(c) = code {
        put(m, &head(opt::STATUS_CODE, 2));
        put(m, &c.to_be_bytes());
    }
    if rapid {
        put(m, &head(opt::RAPID_COMMIT, 0));
    }
    put(m, &d.dns);
    udp::finish_checksum(u, pseudo6(&from, &to_ip, u32::from(ulen), proto::UDP));
    D::Forward(vm.index)
}

fn name(kind: u8) -> &'static str {
    match kind {
        msg::SOLICIT => "Solicit",
        msg::ADVERTISE => "Advertise",
        msg::REQUEST => "Request",
        msg::CONFIRM => "Confirm",
        msg::RENEW => "Renew",
        msg::REBIND => "Rebind",
        msg::REPLY => "Reply",
        msg::RELEASE => "Release",
        msg::DECLINE => "Decline",
        msg::INFORMATION_REQUEST => "Information-request",
        _ => "?",
    }
}
