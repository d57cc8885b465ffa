//! Port security (VM ports), as Neutron's default rules: source MAC and IP
//! against the port's own and its allowed address pairs (exact or CIDR);
//! ARP senders and neighbour discovery about the port itself only; no
//! router advertisement, redirect, DHCP or DHCPv6 server message.

use std::net::IpAddr;

use super::Trace;
use crate::mac::MacAddr;
use crate::stats::{DropReason, DropReason as R};
use crate::tables::VmPort;
use crate::wire::{
    arp, be16, be32, ethernet, icmp6, ipv4, ipv4_at, ipv6, ipv6_at, mac_at, nd, proto, udp,
    NdMessage,
};

/// Whether `ip` is the port's or inside one of its allowed pairs (for `src_mac`).
fn ip_allowed(vm: &VmPort, src_mac: &[u8; 6], ip: IpAddr) -> bool {
    (vm.mac.0 == *src_mac && vm.ips.contains(&ip))
        || vm
            .pairs
            .iter()
            .any(|(net, mac)| mac.unwrap_or(vm.mac).0 == *src_mac && net.contains(&ip))
}

/// Whether `mac` is one the port may send from: its own or an allowed pair's.
fn mac_allowed(vm: &VmPort, mac: &[u8; 6]) -> bool {
    vm.mac.0 == *mac || vm.pairs.iter().any(|(_, m)| m.is_some_and(|m| m.0 == *mac))
}

/// Port security; `Ok` when the frame may enter.
#[inline(always)]
pub(super) fn port_security<T: Trace>(vm: &VmPort, b: &[u8], t: &mut T) -> Result<(), DropReason> {
    // The common case first: the port's own MAC and one of its IPv4 addresses.
    if b.len() >= ethernet::HEADER_LEN + ipv4::HEADER_LEN
        && be16(b, ethernet::field::ETHERTYPE.start) == ethernet::ETHERTYPE_IPV4
        && b[ethernet::field::SRC] == vm.mac.0
        && vm
            .ips4
            .contains(&be32(b, ethernet::HEADER_LEN + ipv4::field::SRC_ADDR.start))
    {
        return Ok(());
    }
    port_security_slow(vm, b, t)
}

#[inline(never)]
fn port_security_slow<T: Trace>(vm: &VmPort, b: &[u8], t: &mut T) -> Result<(), DropReason> {
    let src = mac_at(b, ethernet::field::SRC.start);
    if !mac_allowed(vm, &src) {
        tr!(
            t,
            "port-security",
            "source MAC {} is not the port's",
            MacAddr(src)
        );
        return Err(R::PortSecurityMac);
    }
    let ip = match be16(b, ethernet::field::ETHERTYPE.start) {
        ethernet::ETHERTYPE_IPV4 if b.len() >= ethernet::HEADER_LEN + ipv4::HEADER_LEN => {
            let a = ipv4_at(b, ethernet::HEADER_LEN + ipv4::field::SRC_ADDR.start);
            if a.is_unspecified() {
                return Ok(()); // DHCP discover
            }
            IpAddr::V4(a)
        }
        ethernet::ETHERTYPE_ARP if b.len() >= ethernet::HEADER_LEN + arp::HEADER_LEN => {
            return arp_security(vm, b, t)
        }
        ethernet::ETHERTYPE_IPV6 if b.len() >= ethernet::HEADER_LEN + ipv6::HEADER_LEN => {
            let a = ipv6_at(b, ethernet::HEADER_LEN + ipv6::field::SRC_ADDR.start);
            // Unspecified (DAD) and link-local sources stay on the link.
            if a.is_unspecified() || a.segments()[0] & 0xffc0 == 0xfe80 {
                return Ok(());
            }
            IpAddr::V6(a)
        }
        // Truncated headers are judged by the stage that parses them.
        ethernet::ETHERTYPE_IPV4 | ethernet::ETHERTYPE_ARP | ethernet::ETHERTYPE_IPV6 => {
            return Ok(())
        }
        _ => return Ok(()),
    };
    if !vm.security || ip_allowed(vm, &src, ip) {
        Ok(())
    } else {
        tr!(
            t,
            "port-security",
            "source {ip} is not allowed on port {}",
            vm.name
        );
        Err(R::PortSecurityIp)
    }
}

/// Port security of the ARP packet in frame `b` (Ethernet / IPv4; anything else is left
/// to the responder, which drops it as malformed): its sender hardware
/// address is the port's MAC or an allowed pair's, and its sender IP one of
/// the port's addresses or inside an allowed pair, for that MAC. Requests,
/// replies and gratuitous ARP alike; a probe (RFC 5227, no sender IP yet)
/// needs the MAC only.
fn arp_security<T: Trace>(vm: &VmPort, b: &[u8], t: &mut T) -> Result<(), DropReason> {
    let Some(a) = arp::of_frame(b) else {
        return Ok(());
    };
    let sha = a.sender_mac();
    let spa = a.sender_ip();
    let ok = if spa.is_unspecified() {
        mac_allowed(vm, &sha)
    } else {
        ip_allowed(vm, &sha, IpAddr::V4(spa))
    };
    if ok {
        return Ok(());
    }
    tr!(
        t,
        "port-security",
        "ARP sender {spa} at {} is not allowed on port {}",
        MacAddr(sha),
        vm.name
    );
    Err(R::PortSecurityArp)
}

/// Whether IPv4 packet `ip` is a DHCP server message: UDP from port 67 to
/// port 68, unfragmented or the first fragment. The flow key holds neither
/// the protocol nor the ports, so the frames of a cached flow are asked too
/// ([`fast`], [`cached`]): one byte read for any other protocol.
#[inline(always)]
pub(crate) fn dhcp_server4(ip: &[u8]) -> bool {
    let Some(h) = ip.first_chunk::<{ ipv4::HEADER_LEN }>() else {
        return false;
    };
    if h[ipv4::field::PROTOCOL] != proto::UDP {
        return false;
    }
    let ihl = usize::from(h[ipv4::field::VER_IHL] & 0x0f) * 4;
    ihl >= ipv4::HEADER_LEN
        && be16(h, ipv4::field::FLAGS_OFFSET.start) & ipv4::OFFSET_MASK == 0
        && ip.get(ihl..ihl + 4).is_some_and(|u| {
            be16(u, udp::field::SRC_PORT.start) == 67 && be16(u, udp::field::DST_PORT.start) == 68
        })
}

/// Whether a port may advertise link-local `target` at `mac`: its EUI-64
/// address, or any other `fe80::/64` address (stable-privacy, random: port
/// security lets the port send from it) that is not another MAC's EUI-64
/// one.
fn link_local_of(target: IpAddr, mac: &[u8; 6]) -> bool {
    let IpAddr::V6(a) = target else {
        return false;
    };
    let o = a.octets();
    o[..8] == [0xfe, 0x80, 0, 0, 0, 0, 0, 0]
        && (a == crate::tables::eui64_link_local(MacAddr(*mac)) || o[11..13] != [0xff, 0xfe])
}

/// Port security beyond a frame's source addresses, as Neutron's default
/// rules: no DHCP or DHCPv6 server messages, no ICMPv6 router advertisement
/// or redirect, and neighbour discovery only about the port itself
/// ([`nd_security`]). Frame `b` is of ethertype `et`; anything too short
/// to tell is left to the stages that parse it.
#[inline(always)]
pub(super) fn port_security_msgs<T: Trace>(
    vm: &VmPort,
    et: u16,
    b: &[u8],
    t: &mut T,
) -> Result<(), DropReason> {
    let Some(ip) = b.get(ethernet::HEADER_LEN..) else {
        return Ok(());
    };
    match et {
        ethernet::ETHERTYPE_IPV4 if dhcp_server4(ip) => {
            tr!(t, "port-security", "DHCP server message (UDP 67 to 68)");
            Err(R::PortSecurityDhcp)
        }
        ethernet::ETHERTYPE_IPV6 => match ipv6::upper_layer(ip) {
            Some((proto::UDP, u))
                if u.len() >= 4
                    && be16(u, udp::field::SRC_PORT.start) == 547
                    && be16(u, udp::field::DST_PORT.start) == 546 =>
            {
                tr!(t, "port-security", "DHCPv6 server message (UDP 547 to 546)");
                Err(R::PortSecurityDhcp)
            }
            Some((proto::ICMPV6, icmp)) => match icmp.first().copied() {
                Some(icmp6::types::ROUTER_ADVERT | icmp6::types::REDIRECT) => {
                    tr!(
                        t,
                        "port-security",
                        "ICMPv6 {} from a VM port",
                        if icmp[icmp6::field::TYPE] == icmp6::types::ROUTER_ADVERT {
                            "router advertisement"
                        } else {
                            "redirect"
                        }
                    );
                    Err(R::PortSecurityRa)
                }
                Some(icmp6::types::NEIGHBOR_SOLICIT | icmp6::types::NEIGHBOR_ADVERT) => {
                    nd_security(vm, b, icmp, t)
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Port security of a neighbour solicitation or advertisement `icmp` in
/// frame `b`: every link-layer address option (source in a solicitation,
/// target in an advertisement) is the port's MAC or an allowed pair's; an
/// advertisement's target is one of the port's addresses or inside an
/// allowed pair for the MAC it advertises (its target link-layer option,
/// else the frame's source), or a link-local address of that MAC
/// ([`link_local_of`]).
/// Options that do not parse are malformed (RFC 4861, 7.1).
fn nd_security<T: Trace>(vm: &VmPort, b: &[u8], icmp: &[u8], t: &mut T) -> Result<(), DropReason> {
    let Some(m) = NdMessage::new_checked(icmp) else {
        return Err(R::MalformedNd);
    };
    let advert = m.is_advert();
    let mut mac = mac_at(b, ethernet::field::SRC.start);
    for o in m.options() {
        let o = o.map_err(|_| R::MalformedNd)?;
        if o.kind == nd::OPT_SOURCE_LL || o.kind == nd::OPT_TARGET_LL {
            let ll = o.mac();
            if !mac_allowed(vm, &ll) {
                tr!(
                    t,
                    "port-security",
                    "neighbour discovery with link-layer address {}: not the port's",
                    MacAddr(ll)
                );
                return Err(R::PortSecurityNd);
            }
            if o.kind == nd::OPT_TARGET_LL {
                mac = ll;
            }
        }
    }
    if !advert {
        return Ok(());
    }
    let target = IpAddr::V6(m.target());
    if ip_allowed(vm, &mac, target) || (mac_allowed(vm, &mac) && link_local_of(target, &mac)) {
        return Ok(());
    }
    tr!(
        t,
        "port-security",
        "neighbour advertisement for {target} at {}: not the port's",
        MacAddr(mac)
    );
    Err(R::PortSecurityNd)
}
