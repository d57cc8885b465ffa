//! The ARP / ND responder: requests for any address the model knows are
//! answered in place, never flooded; requests it does not answer, for
//! addresses inside allowed address pairs (VIPs), go to the ports that may
//! hold them. VIP learning: what a port announces about an address inside
//! its allowed pairs names the address's holder ([`super::VipNote`]). And the
//! ARP frames the control thread writes (requests, gratuitous ARP) and reads
//! (the sender of a reply).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::switch::{flood, flood_vip};
use super::{mac_at, Env, Trace, Verdict, VipNote};
use crate::mac::MacAddr;
use crate::pkt::*;
use crate::stats::{DropReason, DropReason as R};
use crate::tables::{Dest, NetTables, VmPort};

/// Answers an ARP request for an address of `net` in place. `Err(None)`: not
/// an ARP request this responder answers (switch it as is).
pub(super) fn arp_respond<T: Trace>(
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Result<(), Option<DropReason>> {
    let b = f.data();
    if b.len() < ETH_LEN + 28 {
        return Err(Some(R::MalformedArp));
    }
    let a = &b[ETH_LEN..];
    if be16(a, 0) != 1 || be16(a, 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4 {
        return Err(Some(R::MalformedArp));
    }
    let op = be16(a, 6);
    let broadcast = b[0] & 1 != 0;
    if op != 1 {
        // Replies (gratuitous ones are broadcast) are switched or flooded.
        return Err(if op == 2 { None } else { Some(R::MalformedArp) });
    }
    let target = ipv4_at(a, 24);
    let Some(&mac) = net.arp.get(&IpAddr::V4(target)) else {
        tr!(
            t,
            "arp-responder",
            "who-has {target}: unknown in network {}",
            net.name
        );
        return if broadcast {
            Err(Some(R::ArpUnknownTarget))
        } else {
            Err(None)
        };
    };
    tr!(t, "arp-responder", "who-has {target}: {mac}");
    answer_arp(f.data_mut(), mac, target);
    Ok(())
}

/// The address and MAC a frame announces: an ARP request or reply (a
/// gratuitous one included) whose sender MAC is the frame's source, or a
/// neighbour advertisement (its target, the frame's source MAC).
fn announced(b: &[u8]) -> Option<(IpAddr, MacAddr)> {
    let src = b.get(6..12)?;
    let ip = match be16(b, 12) {
        ETHERTYPE_ARP => {
            let a = arp_payload(b).ok()?;
            if !matches!(be16(a, 6), 1 | 2) || a[8..14] != *src {
                return None;
            }
            IpAddr::V4(ipv4_at(a, 14))
        }
        ETHERTYPE_IPV6 => {
            let ip = b.get(ETH_LEN..)?;
            if ip.len() < IPV6_LEN + 24
                || ip[0] >> 4 != 6
                || ip[6] != PROTO_ICMPV6
                || ip[7] != 255
                || ip[IPV6_LEN] != 136
                || ip[IPV6_LEN + 1] != 0
            {
                return None;
            }
            IpAddr::V6(ipv6_at(ip, IPV6_LEN + 8))
        }
        _ => return None,
    };
    (!ip.is_unspecified()).then_some((ip, MacAddr(mac_at(b, 6))))
}

/// Whether the frame `b` from port `vm` (port security passed) announces
/// an address inside one of the port's allowed pairs, with the pair's MAC
/// ([`announced`]); if so and the holder is new, notes it.
#[inline(never)]
pub(super) fn vip_learn<T: Trace>(
    env: &mut Env,
    vm: &VmPort,
    net: &NetTables,
    b: &[u8],
    t: &mut T,
) -> bool {
    let Some((ip, mac)) = announced(b) else {
        return false;
    };
    if vm.ips.contains(&ip)
        || !vm
            .pairs
            .iter()
            .any(|(n, m)| m.unwrap_or(vm.mac) == mac && n.contains(&ip))
    {
        return false;
    }
    if net.holders.get(&ip) != Some(&mac) {
        tr!(t, "vip", "{ip} is held by {mac} (port {})", vm.name);
        env.vip = Some(VipNote {
            net: vm.net,
            ip,
            mac,
        });
    }
    true
}

/// An ARP reply (a neighbour advertisement) of a VIP's holder to a router
/// interface, the answer to [`vip_probe`]: sent to the whole network as a
/// broadcast (to the all-nodes group), so that every host learns the holder
/// (the routers of other hosts asked too). `None` for any other frame.
#[inline(never)]
pub(super) fn vip_reply_to_router<T: Trace>(
    env: &mut Env,
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Option<Verdict> {
    // The frame announces (vip_learn): an ARP request or reply, or a
    // neighbour advertisement, as long as they are.
    let b = f.data();
    let to = match be16(b, 12) {
        ETHERTYPE_ARP if be16(b, ETH_LEN + 6) == 2 => [0xff; 6],
        ETHERTYPE_IPV6 => [0x33, 0x33, 0, 0, 0, 1],
        _ => return None,
    };
    if b[0] & 1 != 0 {
        return None;
    }
    let Some(Dest::Router { .. }) = net.fdb.get(MacAddr(mac_at(b, 0)).key()) else {
        return None;
    };
    tr!(
        t,
        "vip",
        "the holder's answer to a router: to the whole network"
    );
    f.data_mut()[..6].copy_from_slice(&to);
    Some(flood(env, vm.net, true, t))
}

/// Notes a VIP's holder when a broadcast or multicast frame `b` of network
/// `net` (index `id`) from another host announces an address inside the
/// allowed pairs of a port there, with the pair's MAC (that host's port
/// security checked it).
#[inline(never)]
pub(super) fn vip_learn_overlay<T: Trace>(
    env: &mut Env,
    id: u32,
    net: &NetTables,
    b: &[u8],
    t: &mut T,
) {
    if net.vips.is_empty() {
        return;
    }
    let Some((ip, mac)) = announced(b) else {
        return;
    };
    if net.holders.get(&ip) == Some(&mac)
        || !net
            .vips_of(ip)
            .any(|v| v.mac == mac && matches!(v.dest, Dest::Remote(_)))
    {
        return;
    }
    tr!(t, "vip", "{ip} is held by {mac}, on another host");
    env.vip = Some(VipNote { net: id, ip, mac });
}

/// The address a broadcast ARP request or a neighbour solicitation `b` from
/// another host asks for, when it is inside allowed address pairs of ports
/// of `net` (and not an address the model knows): it goes to those ports
/// only, as on the host it came from.
#[inline(never)]
pub(super) fn vip_asked(net: &NetTables, b: &[u8]) -> Option<IpAddr> {
    if net.vips.is_empty() {
        return None;
    }
    let target = match be16(b, 12) {
        ETHERTYPE_ARP => {
            let a = b.get(ETH_LEN..ETH_LEN + 28)?;
            if be16(a, 6) != 1 || a[14..18] == a[24..28] {
                return None;
            }
            IpAddr::V4(ipv4_at(a, 24))
        }
        ETHERTYPE_IPV6 => {
            let ip = b.get(ETH_LEN..)?;
            if ip.len() < IPV6_LEN + 24 || ip[6] != PROTO_ICMPV6 || ip[IPV6_LEN] != 135 {
                return None;
            }
            IpAddr::V6(ipv6_at(ip, IPV6_LEN + 8))
        }
        _ => return None,
    };
    (!net.arp.contains_key(&target) && net.vips_of(target).next().is_some()).then_some(target)
}

/// A broadcast ARP request the responder does not answer (it would be
/// dropped as `arp_unknown_target`): a gratuitous one (a VIP announced by
/// its holder) goes to the whole network; one for an address inside
/// allowed address pairs, to the ports whose pairs cover it.
#[inline(never)]
pub(super) fn arp_unanswered<T: Trace>(
    env: &mut Env,
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let Some(a) = f.data().get(ETH_LEN..ETH_LEN + 28) else {
        return Err(R::MalformedArp);
    };
    let (sender, target) = (ipv4_at(a, 14), ipv4_at(a, 24));
    if sender == target {
        tr!(t, "arp-responder", "gratuitous ARP for {target}");
        return flood(env, vm.net, true, t);
    }
    let ip = IpAddr::V4(target);
    if net.vips_of(ip).next().is_some() {
        return flood_vip(env, vm.net, true, ip, t);
    }
    Err(R::ArpUnknownTarget)
}

/// A neighbour solicitation the responder does not answer (it would be
/// dropped as `nd_unknown_target`): for an address inside allowed address
/// pairs, to the ports whose pairs cover it; for another link-local address
/// (a stable-privacy or random one), to the whole network.
#[inline(never)]
pub(super) fn nd_unanswered<T: Trace>(
    env: &mut Env,
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Verdict {
    let at = ETH_LEN + IPV6_LEN + 8;
    let Some(target) = f.data().get(at..at + 16) else {
        return Err(R::MalformedNd);
    };
    let target = ipv6_at(target, 0);
    let ip = IpAddr::V6(target);
    if net.vips_of(ip).next().is_some() {
        return flood_vip(env, vm.net, true, ip, t);
    }
    if target.segments()[0] & 0xffc0 == 0xfe80 {
        tr!(t, "nd-responder", "{target} is link-local: to the network");
        return flood(env, vm.net, true, t);
    }
    Err(R::NdUnknownTarget)
}

/// Whether `b` is a well-formed duplicate address detection probe (a
/// neighbour solicitation from the unspecified address) of port `vm` for
/// one of its own addresses: the responder must not answer it (the guest
/// would give the address up).
#[inline(never)]
pub(super) fn own_dad(vm: &VmPort, net: &NetTables, b: &[u8]) -> bool {
    let Some(ip) = b.get(ETH_LEN..) else {
        return false;
    };
    if ip.len() < IPV6_LEN + 24 || ip[0] >> 4 != 6 || ip[6] != PROTO_ICMPV6 || ip[7] != 255 {
        return false;
    }
    let plen = be16(ip, 4) as usize;
    let Some(icmp) = ip.get(IPV6_LEN..IPV6_LEN + plen) else {
        return false;
    };
    if icmp.len() < 24 || icmp[0] != 135 || icmp[1] != 0 || !ipv6_at(ip, 8).is_unspecified() {
        return false;
    }
    let sum = pseudo6(&ip[8..24], &ip[24..40], plen as u32, PROTO_ICMPV6);
    if csum_fold(csum_add(sum, icmp)) != 0 {
        return false;
    }
    net.arp.get(&IpAddr::V6(ipv6_at(icmp, 8))) == Some(&vm.mac)
}

/// Turns the ARP request in `b` into the reply that `ip` is at `mac`, to the
/// requester.
pub(super) fn answer_arp(b: &mut [u8], mac: MacAddr, ip: Ipv4Addr) {
    let requester = mac_at(b, ETH_LEN + 8);
    let sender_ip: [u8; 4] = b[ETH_LEN + 14..ETH_LEN + 18].try_into().expect("4 bytes");
    write_eth(b, &requester, &mac.0, ETHERTYPE_ARP);
    let a = &mut b[ETH_LEN..];
    put16(a, 6, 2);
    a[8..14].copy_from_slice(&mac.0);
    a[14..18].copy_from_slice(&ip.octets());
    a[18..24].copy_from_slice(&requester);
    a[24..28].copy_from_slice(&sender_ip);
}

/// Answers a neighbour solicitation for an address of `net` with a neighbour
/// advertisement, in place. `Err(None)`: not a solicitation (flood or switch
/// it as is).
pub(super) fn nd_respond<T: Trace>(
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Result<(), Option<DropReason>> {
    let b = f.data();
    let Some(ip) = b.get(ETH_LEN..) else {
        return Err(Some(R::MalformedIpv6));
    };
    if ip.len() < IPV6_LEN || ip[0] >> 4 != 6 {
        return Err(Some(R::MalformedIpv6));
    }
    let plen = be16(ip, 4) as usize;
    if ip.len() < IPV6_LEN + plen {
        return Err(Some(R::MalformedIpv6));
    }
    if ip[6] != PROTO_ICMPV6 {
        return Err(None);
    }
    let icmp = &ip[IPV6_LEN..IPV6_LEN + plen];
    if icmp.len() < 4 || icmp[0] != 135 {
        return Err(None);
    }
    // RFC 4861, 7.1.1: hop limit 255, code 0, at least 24 bytes, a valid
    // checksum, options of non-zero length that fit.
    if ip[7] != 255 || icmp[1] != 0 || icmp.len() < 24 {
        return Err(Some(R::MalformedNd));
    }
    let sum = pseudo6(&ip[8..24], &ip[24..40], plen as u32, PROTO_ICMPV6);
    if csum_fold(csum_add(sum, icmp)) != 0 {
        return Err(Some(R::MalformedNd));
    }
    let mut o = 24;
    let mut src_ll: Option<[u8; 6]> = None;
    while o < icmp.len() {
        if icmp.len() - o < 8 {
            return Err(Some(R::MalformedNd));
        }
        let len = icmp[o + 1] as usize * 8;
        if len == 0 || o + len > icmp.len() {
            return Err(Some(R::MalformedNd));
        }
        if icmp[o] == 1 {
            src_ll = Some(mac_at(icmp, o + 2));
        }
        o += len;
    }
    let src = ipv6_at(ip, 8);
    if src.is_unspecified() && src_ll.is_some() {
        return Err(Some(R::MalformedNd));
    }
    let target = ipv6_at(icmp, 8);
    if target.is_multicast() {
        return Err(Some(R::MalformedNd));
    }
    let Some(&mac) = net.arp.get(&IpAddr::V6(target)) else {
        tr!(
            t,
            "nd-responder",
            "solicitation for {target}: unknown in network {}",
            net.name
        );
        return Err(Some(R::NdUnknownTarget));
    };
    let router = net.gateways.iter().any(|g| g.ip == IpAddr::V6(target));
    tr!(
        t,
        "nd-responder",
        "solicitation for {target}: {mac}{}",
        if router { " (router)" } else { "" }
    );
    let eth_src = mac_at(b, 6);
    let solicited = !src.is_unspecified();
    let dst: [u8; 16] = if solicited {
        src.octets()
    } else {
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets()
    };
    let eth_dst = if solicited {
        eth_src
    } else {
        [0x33, 0x33, 0, 0, 0, 1]
    };
    // Neighbour advertisement: 24 bytes and a target link-layer address option.
    let want = ETH_LEN + IPV6_LEN + 32;
    if f.len() < want && !f.extend(want - f.len()) {
        return Err(Some(R::NoHeadroom));
    }
    f.trim(want);
    let b = f.data_mut();
    write_eth(b, &eth_dst, &mac.0, ETHERTYPE_IPV6);
    write_ipv6(
        &mut b[ETH_LEN..],
        32,
        PROTO_ICMPV6,
        255,
        &target.octets(),
        &dst,
    );
    let n = &mut b[ETH_LEN + IPV6_LEN..];
    n[0] = 136;
    n[1] = 0;
    put16(n, 2, 0);
    let flags = (router as u32) << 31 | (solicited as u32) << 30 | 1 << 29;
    put32(n, 4, flags);
    n[8..24].copy_from_slice(&target.octets());
    n[24] = 2;
    n[25] = 1;
    n[26..32].copy_from_slice(&mac.0);
    let sum = pseudo6(&target.octets(), &dst, 32, PROTO_ICMPV6);
    let c = csum_fold(csum_add(sum, &n[..32]));
    put16(n, 2, c);
    Ok(())
}

/// An ARP reply (payload `a`) seen by `stage`: for the control thread's
/// resolver, not forwarded.
pub(super) fn arp_reply_consumed<T: Trace>(
    env: &mut Env,
    a: &[u8],
    stage: &'static str,
    t: &mut T,
) -> Verdict {
    tr!(
        t,
        stage,
        "reply from {}: to the control thread",
        ipv4_at(a, 14)
    );
    arp_sender_learned(env, a)
}

/// The sender of ARP payload `a` (a reply, or a gratuitous ARP) handed to
/// the control thread's resolver ([`Env::learned`]); the frame goes no
/// further.
pub(super) fn arp_sender_learned(env: &mut Env, a: &[u8]) -> Verdict {
    env.learned = Some((ipv4_at(a, 14), MacAddr(mac_at(a, 8))));
    Err(R::ArpReplyConsumed)
}

/// The ARP payload of an Ethernet/IPv4 ARP frame, checked.
pub(super) fn arp_payload(b: &[u8]) -> Result<&[u8], DropReason> {
    let a = b.get(ETH_LEN..ETH_LEN + 28).ok_or(R::MalformedArp)?;
    if be16(a, 0) != 1 || be16(a, 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4 {
        return Err(R::MalformedArp);
    }
    Ok(a)
}

/// Writes a gratuitous ARP (a request for `ip` from `ip`, broadcast) from
/// `mac` into `b` (at least 60 bytes); gives the frame's length.
pub fn write_garp(b: &mut [u8], mac: MacAddr, ip: Ipv4Addr) -> usize {
    write_arp_request(b, mac, ip, ip)
}

/// The sender of an ARP reply or gratuitous ARP (for VTEP and upstream
/// resolution), if `b` is one.
pub fn arp_reply_sender(b: &[u8]) -> Option<(Ipv4Addr, MacAddr)> {
    if b.len() < ETH_LEN + 28 || be16(b, 12) != ETHERTYPE_ARP {
        return None;
    }
    let a = &b[ETH_LEN..];
    let gratuitous = be16(a, 6) == 1 && a[14..18] == a[24..28];
    (be16(a, 6) == 2 || gratuitous).then(|| (ipv4_at(a, 14), MacAddr(mac_at(a, 8))))
}

/// Writes an ARP request from `sender` (MAC, IP) for `target` into `b` (at least
/// 42 bytes; returns the frame length).
pub fn write_arp_request(b: &mut [u8], mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> usize {
    write_eth(b, &[0xff; 6], &mac.0, ETHERTYPE_ARP);
    let a = &mut b[ETH_LEN..];
    put16(a, 0, 1);
    put16(a, 2, ETHERTYPE_IPV4);
    a[4] = 6;
    a[5] = 4;
    put16(a, 6, 1);
    a[8..14].copy_from_slice(&mac.0);
    a[14..18].copy_from_slice(&ip.octets());
    a[18..24].copy_from_slice(&[0; 6]);
    a[24..28].copy_from_slice(&target.octets());
    ETH_LEN + 28
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{process, Disposition, NoTrace, PuntKind};
    use crate::tables::Snapshot;
    use crate::testkit;

    /// What the pipeline hands the control thread's resolver for `frame` in
    /// on `in_port`, with its verdict.
    fn learned(
        snap: &Snapshot,
        in_port: u16,
        frame: &[u8],
    ) -> (Disposition, Option<(Ipv4Addr, MacAddr)>) {
        let mut buf = vec![0u8; testkit::HEADROOM + frame.len() + testkit::TAILROOM];
        buf[testkit::HEADROOM..testkit::HEADROOM + frame.len()].copy_from_slice(frame);
        let mut f = Frame::new(&mut buf, testkit::HEADROOM, frame.len()).expect("fits");
        let mut env = Env::new(|| 0, 1_000_000);
        let v = process(snap, &mut env, in_port, &mut f, &mut NoTrace);
        (v, env.learned)
    }

    /// An ARP request from `mac` (`ip`) for `target`, made a reply to
    /// `to` when `reply`.
    fn arp(mac: [u8; 6], ip: [u8; 4], target: [u8; 4], reply: Option<[u8; 6]>) -> Vec<u8> {
        let mut b = vec![0u8; 60];
        let ip = Ipv4Addr::from(ip);
        write_arp_request(&mut b, MacAddr(mac), ip, Ipv4Addr::from(target));
        if let Some(to) = reply {
            b[..6].copy_from_slice(&to);
            put16(&mut b[ETH_LEN..], 6, 2);
            b[ETH_LEN + 18..ETH_LEN + 24].copy_from_slice(&to);
        }
        b
    }

    /// The sender of an ARP reply on the underlay (a VTEP) and of a
    /// gratuitous ARP on the external port (an upstream router) goes to the
    /// resolver with the frame's drop, as the pipeline read it: the worker
    /// does not parse the frame again. Requests it answers hand over nothing.
    #[test]
    fn arp_senders_go_to_the_resolver_with_the_consumed_frame() {
        let snap = testkit::snapshot(&testkit::model());
        let reply = arp(
            testkit::CN2_UL_MAC,
            testkit::VTEP2,
            testkit::VTEP1,
            Some(testkit::UL_MAC),
        );
        assert_eq!(
            learned(&snap, testkit::UP, &reply),
            (
                Disposition::Punt(PuntKind::ArpReply),
                Some((testkit::VTEP2.into(), MacAddr(testkit::CN2_UL_MAC)))
            )
        );
        let ask = arp(testkit::CN2_UL_MAC, testkit::VTEP2, testkit::VTEP1, None);
        assert_eq!(
            learned(&snap, testkit::UP, &ask),
            (Disposition::Forward(testkit::UP), None)
        );

        let snap = testkit::ns_snapshot(&testkit::ns_model());
        let up = [203, 0, 113, 1];
        let garp = arp(testkit::UPSTREAM_MAC, up, up, None);
        assert_eq!(
            learned(&snap, testkit::EXT, &garp),
            (
                Disposition::Punt(PuntKind::ArpReply),
                Some((up.into(), MacAddr(testkit::UPSTREAM_MAC)))
            )
        );
    }
}
