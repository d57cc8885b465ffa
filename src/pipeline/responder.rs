//! The ARP / ND responder: requests for any address the model knows are
//! answered in place, never flooded; requests it does not answer, for
//! addresses inside allowed address pairs (VIPs), go to the ports that may
//! hold them. VIP learning: what a port announces about an address inside
//! its allowed pairs names the address's holder ([`super::VipNote`]). And the
//! ARP frames the control thread writes (requests, gratuitous ARP) and reads
//! (the sender of a reply).

use std::net::{IpAddr, Ipv6Addr};

use super::switch::{flood, flood_vip};
use super::{Disposition as D, Env, PuntKind, Trace, VipNote};
use crate::mac::MacAddr;
use crate::pkt::Frame;
use crate::stats::{DropReason, DropReason as R};
use crate::tables::{Dest, NetTables, VmPort};
use crate::wire::checksum::{csum_add, csum_fold, pseudo6};
use crate::wire::{
    arp, be16, ethernet, icmp6, ipv6, ipv6_at, mac_at, nd, proto, put16, ArpPacket, Ipv6Packet,
    NdMessage,
};

/// Answers an ARP request for an address of `net` in place. `Err(None)`: not
/// an ARP request this responder answers (switch it as is).
pub(super) fn arp_respond<T: Trace>(
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Result<(), Option<DropReason>> {
    let b = f.data();
    let a = arp::of_frame(b).ok_or(Some(R::MalformedArp))?;
    let op = a.operation();
    let broadcast = b[ethernet::field::DST.start] & 1 != 0;
    if op != arp::OP_REQUEST {
        // Replies (gratuitous ones are broadcast) are switched or flooded.
        return Err(if op == arp::OP_REPLY {
            None
        } else {
            Some(R::MalformedArp)
        });
    }
    let target = a.target_ip();
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
    arp::answer(f.data_mut(), &mac.0, target);
    Ok(())
}

/// The address and MAC a frame announces: an ARP request or reply (a
/// gratuitous one included) whose sender MAC is the frame's source, or a
/// neighbour advertisement (its target, the frame's source MAC).
fn announced(b: &[u8]) -> Option<(IpAddr, MacAddr)> {
    let e = ethernet::EthernetFrame::new_checked(b)?;
    let ip = match e.ethertype() {
        ethernet::ETHERTYPE_ARP => {
            let a = arp::of_frame(b)?;
            if !matches!(a.operation(), arp::OP_REQUEST | arp::OP_REPLY)
                || a.sender_mac() != e.src()
            {
                return None;
            }
            IpAddr::V4(a.sender_ip())
        }
        ethernet::ETHERTYPE_IPV6 => {
            let ip = b.get(ethernet::HEADER_LEN..)?;
            if ip.len() < ipv6::HEADER_LEN + nd::HEADER_LEN
                || ip[ipv6::field::VER_TC_FLOW.start] >> 4 != 6
                || ip[ipv6::field::NEXT_HEADER] != proto::ICMPV6
                || ip[ipv6::field::HOP_LIMIT] != 255
                || ip[ipv6::HEADER_LEN + icmp6::field::TYPE] != icmp6::types::NEIGHBOR_ADVERT
                || ip[ipv6::HEADER_LEN + icmp6::field::CODE] != 0
            {
                return None;
            }
            IpAddr::V6(ipv6_at(ip, ipv6::HEADER_LEN + nd::field::TARGET.start))
        }
        _ => return None,
    };
    (!ip.is_unspecified()).then_some((ip, MacAddr(e.src())))
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
    vm: &VmPort,
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Option<D> {
    // The frame announces (vip_learn): an ARP request or reply, or a
    // neighbour advertisement, as long as they are.
    let b = f.data();
    let to = match be16(b, ethernet::field::ETHERTYPE.start) {
        ethernet::ETHERTYPE_ARP
            if be16(b, ethernet::HEADER_LEN + arp::field::OPER.start) == arp::OP_REPLY =>
        {
            [0xff; 6]
        }
        ethernet::ETHERTYPE_IPV6 => [0x33, 0x33, 0, 0, 0, 1],
        _ => return None,
    };
    if b[ethernet::field::DST.start] & 1 != 0 {
        return None;
    }
    let Some(Dest::Router { .. }) = net
        .fdb
        .get(MacAddr(mac_at(b, ethernet::field::DST.start)).key())
    else {
        return None;
    };
    tr!(
        t,
        "vip",
        "the holder's answer to a router: to the whole network"
    );
    f.data_mut()[ethernet::field::DST].copy_from_slice(&to);
    Some(flood(vm.net, true, t))
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
    let target = match be16(b, ethernet::field::ETHERTYPE.start) {
        ethernet::ETHERTYPE_ARP => {
            let a = ArpPacket::new_checked(b.get(ethernet::HEADER_LEN..)?)?;
            if a.operation() != arp::OP_REQUEST || a.is_gratuitous() {
                return None;
            }
            IpAddr::V4(a.target_ip())
        }
        ethernet::ETHERTYPE_IPV6 => {
            let ip = b.get(ethernet::HEADER_LEN..)?;
            if ip.len() < ipv6::HEADER_LEN + nd::HEADER_LEN
                || ip[ipv6::field::NEXT_HEADER] != proto::ICMPV6
                || ip[ipv6::HEADER_LEN + icmp6::field::TYPE] != icmp6::types::NEIGHBOR_SOLICIT
            {
                return None;
            }
            IpAddr::V6(ipv6_at(ip, ipv6::HEADER_LEN + nd::field::TARGET.start))
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
) -> D {
    let Some(a) = f
        .data()
        .get(ethernet::HEADER_LEN..)
        .and_then(ArpPacket::new_checked)
    else {
        return D::Drop(R::MalformedArp);
    };
    let (sender, target) = (a.sender_ip(), a.target_ip());
    if sender == target {
        tr!(t, "arp-responder", "gratuitous ARP for {target}");
        return flood(vm.net, true, t);
    }
    let ip = IpAddr::V4(target);
    if net.vips_of(ip).next().is_some() {
        return flood_vip(env, vm.net, true, ip, None, t);
    }
    D::Drop(R::ArpUnknownTarget)
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
) -> D {
    let at = ethernet::HEADER_LEN + ipv6::HEADER_LEN + nd::field::TARGET.start;
    let Some(target) = f.data().get(at..at + 16) else {
        return D::Drop(R::MalformedNd);
    };
    let target = ipv6_at(target, 0);
    let ip = IpAddr::V6(target);
    if net.vips_of(ip).next().is_some() {
        return flood_vip(env, vm.net, true, ip, None, t);
    }
    if target.segments()[0] & 0xffc0 == 0xfe80 {
        tr!(t, "nd-responder", "{target} is link-local: to the network");
        return flood(vm.net, true, t);
    }
    D::Drop(R::NdUnknownTarget)
}

/// Whether `b` is a well-formed duplicate address detection probe (a
/// neighbour solicitation from the unspecified address) of port `vm` for
/// one of its own addresses: the responder must not answer it (the guest
/// would give the address up).
#[inline(never)]
pub(super) fn own_dad(vm: &VmPort, net: &NetTables, b: &[u8]) -> bool {
    let Some(ip) = b.get(ethernet::HEADER_LEN..) else {
        return false;
    };
    if ip.len() < ipv6::HEADER_LEN + nd::HEADER_LEN
        || ip[ipv6::field::VER_TC_FLOW.start] >> 4 != 6
        || ip[ipv6::field::NEXT_HEADER] != proto::ICMPV6
        || ip[ipv6::field::HOP_LIMIT] != 255
    {
        return false;
    }
    let plen = usize::from(be16(ip, ipv6::field::PAYLOAD_LEN.start));
    let Some(icmp) = ip.get(ipv6::HEADER_LEN..ipv6::HEADER_LEN + plen) else {
        return false;
    };
    if NdMessage::new_checked(icmp)
        .is_none_or(|m| m.msg_type() != icmp6::types::NEIGHBOR_SOLICIT || m.code() != 0)
        || !ipv6_at(ip, ipv6::field::SRC_ADDR.start).is_unspecified()
    {
        return false;
    }
    if icmp6::checksum_of(ip, icmp) != 0 {
        return false;
    }
    net.arp
        .get(&IpAddr::V6(ipv6_at(icmp, nd::field::TARGET.start)))
        == Some(&vm.mac)
}

/// Answers a neighbour solicitation for an address of `net` with a neighbour
/// advertisement, in place. `Err(None)`: not a solicitation (flood or switch
/// it as is).
pub(super) fn nd_respond<T: Trace>(
    net: &NetTables,
    f: &mut Frame,
    t: &mut T,
) -> Result<(), Option<DropReason>> {
    nd_answer(f, t, |target, t| {
        let Some(&mac) = net.arp.get(&IpAddr::V6(target)) else {
            tr!(
                t,
                "nd-responder",
                "solicitation for {target}: unknown in network {}",
                net.name
            );
            return Err(R::NdUnknownTarget);
        };
        // A router interface's address, or its link-local one (a VM's next
        // hop from our advertisements: without the router flag the guest
        // would drop the router from its default router list).
        let router = net.gateways.iter().any(|g| {
            g.ip == IpAddr::V6(target)
                || (g.ip.is_ipv6() && target == crate::tables::eui64_link_local(g.mac))
        });
        Ok((mac, router))
    })
}

/// Answers the neighbour solicitation in `f` (checked as RFC 4861 says)
/// with a neighbour advertisement, in place, with the MAC (and the router
/// flag) `who` gives for its target. `Err(None)`: not a solicitation.
pub(super) fn nd_answer<T: Trace>(
    f: &mut Frame,
    t: &mut T,
    who: impl FnOnce(Ipv6Addr, &mut T) -> Result<(MacAddr, bool), DropReason>,
) -> Result<(), Option<DropReason>> {
    let b = f.data();
    let Some(ip) = b.get(ethernet::HEADER_LEN..) else {
        return Err(Some(R::MalformedIpv6));
    };
    let Some(h) = Ipv6Packet::new_checked(ip) else {
        return Err(Some(R::MalformedIpv6));
    };
    if h.next_header() != proto::ICMPV6 {
        return Err(None);
    }
    let hop = h.hop_limit();
    let icmp = h.payload();
    if icmp.len() < 4 || icmp[icmp6::field::TYPE] != icmp6::types::NEIGHBOR_SOLICIT {
        return Err(None);
    }
    // RFC 4861, 7.1.1: hop limit 255, code 0, at least 24 bytes, a valid
    // checksum, options of non-zero length that fit.
    let Some(ns) = NdMessage::new_checked(icmp).filter(|m| m.code() == 0 && hop == 255) else {
        return Err(Some(R::MalformedNd));
    };
    if icmp6::checksum_of(ip, icmp) != 0 {
        return Err(Some(R::MalformedNd));
    }
    let mut src_ll: Option<[u8; 6]> = None;
    for o in ns.options() {
        let o = o.map_err(|_| Some(R::MalformedNd))?;
        if o.kind == nd::OPT_SOURCE_LL {
            src_ll = Some(o.mac());
        }
    }
    let src = ipv6_at(ip, ipv6::field::SRC_ADDR.start);
    if src.is_unspecified() && src_ll.is_some() {
        return Err(Some(R::MalformedNd));
    }
    let target = ns.target();
    if target.is_multicast() {
        return Err(Some(R::MalformedNd));
    }
    let (mac, router) = who(target, t)?;
    tr!(
        t,
        "nd-responder",
        "solicitation for {target}: {mac}{}",
        if router { " (router)" } else { "" }
    );
    let eth_src = mac_at(b, ethernet::field::SRC.start);
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
    let want = ethernet::HEADER_LEN + ipv6::HEADER_LEN + nd::ADVERT_LEN;
    if f.len() < want && !f.extend(want - f.len()) {
        return Err(Some(R::NoHeadroom));
    }
    f.trim(want);
    let b = f.data_mut();
    ethernet::write(b, &eth_dst, &mac.0, ethernet::ETHERTYPE_IPV6);
    ipv6::write(
        &mut b[ethernet::HEADER_LEN..],
        nd::ADVERT_LEN as u16,
        proto::ICMPV6,
        255,
        &target.octets(),
        &dst,
    );
    let n = &mut b[ethernet::HEADER_LEN + ipv6::HEADER_LEN..];
    let mut flags = nd::FLAG_OVERRIDE;
    if router {
        flags |= nd::FLAG_ROUTER;
    }
    if solicited {
        flags |= nd::FLAG_SOLICITED;
    }
    nd::write_advert(n, flags, &target.octets(), &mac.0);
    let sum = pseudo6(&target.octets(), &dst, nd::ADVERT_LEN as u32, proto::ICMPV6);
    let c = csum_fold(csum_add(sum, &n[..nd::ADVERT_LEN]));
    put16(n, icmp6::field::CHECKSUM.start, c);
    Ok(())
}

/// An ARP reply (payload `a`) seen by `stage`: for the control thread's
/// resolver, not forwarded.
pub(super) fn arp_reply_consumed<T: Trace>(
    env: &mut Env,
    a: &ArpPacket<&[u8]>,
    stage: &'static str,
    t: &mut T,
) -> D {
    tr!(
        t,
        stage,
        "reply from {}: to the control thread",
        a.sender_ip()
    );
    arp_sender_learned(env, a)
}

/// The sender of ARP payload `a` (a reply, or a gratuitous ARP) handed to
/// the control thread's resolver ([`Env::learned`]); the frame goes no
/// further.
pub(super) fn arp_sender_learned(env: &mut Env, a: &ArpPacket<&[u8]>) -> D {
    env.learned = Some((IpAddr::V4(a.sender_ip()), MacAddr(a.sender_mac())));
    D::Punt(PuntKind::ArpReply)
}

/// A neighbour advertisement on the external port (checked as RFC 4861,
/// 7.1.2 says): its target and the MAC it names (its target link-layer
/// option, else the frame's source) handed to the control thread's resolver
/// (the upstream routers' IPv6 addresses); the frame goes no further.
pub(super) fn nd_advert_learned<T: Trace>(env: &mut Env, f: &Frame, t: &mut T) -> D {
    let b = f.data();
    let Some(h) = b
        .get(ethernet::HEADER_LEN..)
        .and_then(Ipv6Packet::new_checked)
    else {
        return D::Drop(R::MalformedIpv6);
    };
    let hop = h.hop_limit();
    let icmp = h.payload();
    let Some(na) =
        NdMessage::new_checked(icmp).filter(|m| m.code() == 0 && hop == 255 && m.is_advert())
    else {
        return D::Drop(R::MalformedNd);
    };
    if icmp6::checksum_of(&b[ethernet::HEADER_LEN..], icmp) != 0 {
        return D::Drop(R::MalformedNd);
    }
    let mut mac = MacAddr(mac_at(b, ethernet::field::SRC.start));
    for o in na.options() {
        let Ok(o) = o else {
            return D::Drop(R::MalformedNd);
        };
        if o.kind == nd::OPT_TARGET_LL {
            mac = MacAddr(o.mac());
        }
    }
    let target = na.target();
    tr!(
        t,
        "external-nd",
        "advertisement of {target} at {mac}: to the control thread"
    );
    env.learned = Some((IpAddr::V6(target), mac));
    D::Punt(PuntKind::ArpReply)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

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
    ) -> (Disposition, Option<(IpAddr, MacAddr)>) {
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
        arp::write_request(&mut b, &mac, ip, Ipv4Addr::from(target));
        if let Some(to) = reply {
            b[ethernet::field::DST].copy_from_slice(&to);
            let a = &mut b[ethernet::HEADER_LEN..];
            put16(a, arp::field::OPER.start, arp::OP_REPLY);
            a[arp::field::THA].copy_from_slice(&to);
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
                Some((
                    Ipv4Addr::from(testkit::VTEP2).into(),
                    MacAddr(testkit::CN2_UL_MAC)
                ))
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
                Some((Ipv4Addr::from(up).into(), MacAddr(testkit::UPSTREAM_MAC)))
            )
        );
    }
}
