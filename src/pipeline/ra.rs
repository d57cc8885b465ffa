//! Router advertisements from the distributed router, on the VM's own host:
//! a VM port's router solicitation (ICMPv6 133) is answered with the
//! advertisement (ICMPv6 134) made when its network was compiled
//! ([`NetTables::ra6`](crate::tables::NetTables::ra6)): from the router interface's MAC and EUI-64
//! link-local address, router lifetime 1800 s, M flag for
//! `dhcpv6-stateful`, O flag for `dhcpv6-stateless`, the network's MTU, a
//! prefix information option per subnet (on-link; autonomous unless
//! `dhcpv6-stateful`), RDNSS with up to three of the subnets' DNS servers.
//!
//! The reply is unicast to the solicitor (all-nodes when it solicited from
//! the unspecified address) and goes back to its port only, written over
//! the solicitation. The control thread sends the same advertisement
//! unsolicited ([`Advertiser`]): when a port appears, then every
//! [`UNSOLICITED_EVERY`].

use super::{Disposition, Trace};
use crate::pkt::Frame;
use crate::stats::DropReason as R;
use crate::tables::{Ra6, VmPort};
use crate::wire::{ethernet, icmp6, ipv6, ipv6_at, mac_at, proto, put16};
use Disposition as D;

const IP_AT: usize = ethernet::HEADER_LEN;
/// A router solicitation: type, code, checksum, reserved; then options.
const RS_LEN: usize = 8;

/// Answers the router solicitation `f` from VM port `vm` with `ra`, in
/// place; a solicitation that RFC 4861 (6.1.1) says to discard is dropped
/// as `malformed_nd`.
#[cold]
pub(super) fn answer<T: Trace>(vm: &VmPort, ra: &Ra6, f: &mut Frame, t: &mut T) -> Disposition {
    let b = f.data();
    let Some(h) = b.get(IP_AT..).and_then(ipv6::Ipv6Packet::new_checked) else {
        return D::Drop(R::MalformedIpv6);
    };
    let icmp = h.payload();
    let ip = &b[IP_AT..];
    if h.hop_limit() != 255 || icmp.len() < RS_LEN || icmp[1] != 0 {
        tr!(t, "ra", "router solicitation: hop limit, code or length");
        return D::Drop(R::MalformedNd);
    }
    if icmp6::checksum_of(ip, icmp) != 0 {
        tr!(t, "ra", "router solicitation: bad checksum");
        return D::Drop(R::MalformedNd);
    }
    let mut o = &icmp[RS_LEN..];
    let mut src_ll = false;
    while let [kind, len, ..] = *o {
        let n = usize::from(len) * 8;
        if n == 0 || n > o.len() {
            tr!(t, "ra", "router solicitation: an option does not fit");
            return D::Drop(R::MalformedNd);
        }
        src_ll |= kind == crate::wire::nd::OPT_SOURCE_LL;
        o = &o[n..];
    }
    if !o.is_empty() {
        return D::Drop(R::MalformedNd);
    }
    let src = ipv6_at(ip, ipv6::field::SRC_ADDR.start);
    if src.is_unspecified() && src_ll {
        tr!(
            t,
            "ra",
            "router solicitation from :: with a link-layer address"
        );
        return D::Drop(R::MalformedNd);
    }
    let (dst, eth_dst) = if src.is_unspecified() {
        (
            std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets(),
            [0x33, 0x33, 0, 0, 0, 1],
        )
    } else {
        (src.octets(), mac_at(b, ethernet::field::SRC.start))
    };
    tr!(
        t,
        "ra",
        "router solicitation from {} ({src}): advertisement from {} of {}",
        vm.name,
        ra.src,
        super::Label(|f: &mut std::fmt::Formatter<'_>| {
            for (i, s) in ra.subnets.iter().enumerate() {
                write!(f, "{}{s}", if i == 0 { "" } else { ", " })?;
            }
            Ok(())
        })
    );
    let want = IP_AT + ipv6::HEADER_LEN + ra.body.len();
    if f.len() < want && !f.extend(want - f.len()) {
        tr!(t, "ra", "no room in the buffer for the advertisement");
        return D::Drop(R::NoHeadroom);
    }
    f.trim(want);
    write(ra, f.data_mut(), &eth_dst, &dst);
    D::Forward(vm.index)
}

/// How often each VM port gets an unsolicited advertisement (RFC 4861,
/// 6.2.4; radvd's default `MaxRtrAdvInterval`): three per router lifetime,
/// so a guest keeps its default route and its prefixes' lifetimes without
/// soliciting again.
pub const UNSOLICITED_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Writes advertisement `ra` unsolicited (to all nodes, `ff02::1`) into
/// `out`; its length, or `None` when it does not fit.
pub fn write_unsolicited(ra: &Ra6, out: &mut [u8]) -> Option<usize> {
    let len = IP_AT + ipv6::HEADER_LEN + ra.body.len();
    let dst = std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
    write(ra, out.get_mut(..len)?, &[0x33, 0x33, 0, 0, 0, 1], &dst);
    Some(len)
}

/// Writes advertisement `ra` to (`eth_dst`, `dst`) into `b` (exactly its
/// length): Ethernet, IPv6 from the router's link-local address, the
/// message with its checksum.
fn write(ra: &Ra6, b: &mut [u8], eth_dst: &[u8; 6], dst: &[u8; 16]) {
    ethernet::write(b, eth_dst, &ra.mac.0, ethernet::ETHERTYPE_IPV6);
    let (head, m) = b.split_at_mut(IP_AT + ipv6::HEADER_LEN);
    let ip = &mut head[IP_AT..];
    ipv6::write(
        ip,
        ra.body.len() as u16,
        proto::ICMPV6,
        255,
        &ra.src.octets(),
        dst,
    );
    m.copy_from_slice(&ra.body);
    let c = icmp6::checksum_of(ip, m);
    put16(m, 2, c);
}

/// The control thread's unsolicited advertisements: each local VM port
/// whose network has one ([`NetTables::ra6`](crate::tables::NetTables::ra6))
/// gets it when the port is first seen or its advertisement changes, then
/// every [`UNSOLICITED_EVERY`].
#[derive(Default)]
pub struct Advertiser {
    /// Port index → when it was last sent, and what.
    sent: std::collections::HashMap<u16, (std::time::Instant, Box<[u8]>)>,
}

impl Advertiser {
    /// Hands `send` (port, frame) the advertisements due at `now` in
    /// `snap`, at most `max` of them (the rest wait for the next call); a
    /// frame `send` refuses (a full queue) is due again next time.
    pub fn follow(
        &mut self,
        snap: &crate::tables::Snapshot,
        now: std::time::Instant,
        max: usize,
        mut send: impl FnMut(u16, &[u8]) -> bool,
    ) {
        use crate::tables::Slot;
        let mut buf = [0u8; 1024];
        let mut left = max;
        let mut live = Vec::new();
        for (i, slot) in snap.ports.iter().enumerate() {
            let Slot::Vm(Some(vm)) = slot else { continue };
            let Some(ra) = snap.net(vm.net).and_then(|n| n.ra6.as_ref()) else {
                continue;
            };
            let port = i as u16;
            live.push(port);
            let due = self.sent.get(&port).is_none_or(|(t, body)| {
                **body != *ra.body || now.duration_since(*t) >= UNSOLICITED_EVERY
            });
            if !due || left == 0 {
                continue;
            }
            let Some(len) = write_unsolicited(ra, &mut buf) else {
                continue;
            };
            if send(port, &buf[..len]) {
                left -= 1;
                self.sent.insert(port, (now, ra.body.clone()));
            }
        }
        // In port order: sorted.
        self.sent.retain(|p, _| live.binary_search(p).is_ok());
    }
}
