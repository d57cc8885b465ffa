//! SNAT on every worker. Each worker has its own SNAT table and its own
//! slice of the external ports ([`super::port_share`]); a frame whose
//! session another worker owns is handed to that worker through a ring per
//! pair of workers (VPP's NAT hand-off), before it is decided, and the owner
//! decides it as if it had received it. Who owns a frame, from its bytes:
//!
//! - inside to outside (a VM port or the underlay, on a node where some
//!   router's SNAT runs): the worker picked by the inside address (the
//!   source of the IPv4 packet, inside the tunnel for the underlay), so that
//!   every packet of an inside host (its flows, their fragments, the ICMP
//!   errors it sends) meets its sessions on one worker;
//! - outside to inside (the external port, to a router's SNAT address): the
//!   worker whose slice holds the destination port (the echo id of an echo
//!   reply; for an ICMP error, the source port or echo id of the packet it
//!   quotes); a fragment after the first goes where its first went (a small
//!   memory per worker: the fragments of a datagram all reach one RX queue,
//!   RSS hashing fragments by their addresses), else it stays (and is
//!   counted `nat_fragment_unknown` if it finds no session);
//! - anything else (ARP, IPv6, floating IP traffic on the external port, a
//!   node without SNAT) stays with the worker that received it.
//!
//! The frames of one flow thus always meet on one worker, in order. A
//! burst's frames for one worker go together, as one burst (one ring
//! operation for up to a burst of frames, not one per frame); the rings are
//! lock-free (`crossbeam_queue::ArrayQueue`); a full ring drops the burst,
//! counted `handoff_full`.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use crossbeam_queue::ArrayQueue;

use crate::sys::Burst;
use crate::tables::Snapshot;
use crate::wire::tunnel::{self, Underlay};

/// Bursts a ring between two workers holds. A burst may carry a single
/// frame (a port's RX bursts are short at low rates), and an adaptive worker
/// may sleep up to half a millisecond before it takes them: room for a
/// thousand (about 0.5 MiB a ring).
pub const RING: usize = 1024;

/// The rings between every pair of workers.
pub struct Handoff {
    n: usize,
    /// The SNAT port range the workers share out ([`super::port_share`]).
    ports: RangeInclusive<u16>,
    /// Ring `from * n + to`; each burst with the port its frames arrived on.
    rings: Box<[ArrayQueue<(u16, Burst)>]>,
}

impl Handoff {
    /// The rings of `n` workers, who share out the SNAT ports `ports`.
    pub fn new(n: usize, ports: RangeInclusive<u16>) -> Handoff {
        Handoff {
            n,
            ports,
            rings: (0..n * n).map(|_| ArrayQueue::new(RING)).collect(),
        }
    }

    pub fn workers(&self) -> usize {
        self.n
    }

    pub fn ports(&self) -> &RangeInclusive<u16> {
        &self.ports
    }

    /// Hands burst `b` (from port `port`) from worker `from` to worker `to`.
    /// False when the ring is full: the burst is dropped then (its frames
    /// freed), for the caller to count.
    #[inline]
    pub(super) fn send(&self, from: usize, to: usize, port: u16, b: Burst) -> bool {
        match self.rings.get(from * self.n + to) {
            Some(r) => r.push((port, b)).is_ok(),
            None => false,
        }
    }

    /// The next burst worker `from` handed to worker `to`.
    #[inline]
    pub(super) fn recv(&self, from: usize, to: usize) -> Option<(u16, Burst)> {
        self.rings.get(from * self.n + to)?.pop()
    }

    /// Whether any worker handed worker `to` a frame not taken yet.
    #[inline]
    pub(super) fn waiting(&self, to: usize) -> bool {
        (0..self.n).any(|f| f != to && !self.rings[f * self.n + to].is_empty())
    }
}

/// Which side of the SNAT a port's frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A VM port: its frames' own IPv4 source.
    Vm,
    /// The underlay: the IPv4 source inside the tunnel (or the tag).
    Underlay,
    /// The external port: the destination port of a SNAT address.
    External,
}

/// A datagram whose first fragment was handed on.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    key: (u32, u32, u16, u8),
    to: u8,
    used: bool,
}

/// Datagrams a worker remembers (direct-mapped by a hash of the key).
const MEMO: usize = 256;

/// Works out which worker owns a frame, for worker `me` of `n`.
pub struct Owner {
    me: usize,
    n: usize,
    /// The port range shared out among the workers, and each one's share.
    lo: u32,
    hi: u32,
    share: u32,
    memo: Box<[Sent; MEMO]>,
}

/// The Ethernet type of IPv4, and the IPv4 protocol numbers read here.
const IPV4: u16 = 0x0800;
const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The IPv4 packet of an Ethernet frame (untagged), if it is one.
fn ipv4_of(frame: &[u8]) -> Option<&[u8]> {
    (be16(frame, 12)? == IPV4)
        .then(|| frame.get(14..))
        .flatten()
}

/// The header length of IPv4 packet `ip`, if it has a whole header.
fn ihl(ip: &[u8]) -> Option<usize> {
    let v = *ip.first()?;
    let l = ((v & 0x0f) as usize) * 4;
    (v >> 4 == 4 && l >= 20 && ip.len() >= l).then_some(l)
}

impl Owner {
    /// Worker `me` of `n`, the SNAT port range `range` shared out as
    /// [`super::port_share`] does.
    pub fn new(me: usize, n: usize, range: &RangeInclusive<u16>) -> Owner {
        let (lo, hi) = (*range.start() as u32, *range.end() as u32);
        let n = n.max(1);
        Owner {
            me,
            n,
            lo,
            hi,
            share: ((hi - lo + 1) / n.min((hi - lo + 1) as usize) as u32).max(1),
            memo: Box::new([Sent::default(); MEMO]),
        }
    }

    /// The worker that owns frame `f` from a port of side `side`, when it
    /// is another one than this worker.
    #[inline]
    pub fn of(&mut self, snap: &Snapshot, side: Side, f: &[u8]) -> Option<usize> {
        let w = match side {
            Side::Vm => self.inside(ipv4_of(f)?)?,
            Side::Underlay => {
                let ip = match tunnel::underlay_plain(f, &snap.node.vtep, |_| true)? {
                    Underlay::Tunnel(t) => ipv4_of(t.inner)?,
                    Underlay::Tagged(t) if t.ethertype == IPV4 => t.l3,
                    _ => return None,
                };
                self.inside(ip)?
            }
            Side::External => self.outside(snap, ipv4_of(f)?)?,
        };
        (w != self.me).then_some(w)
    }

    /// The owner of an inside packet: by its source address.
    #[inline]
    fn inside(&self, ip: &[u8]) -> Option<usize> {
        ihl(ip)?;
        let src = be32(ip, 12)?;
        Some(((src.wrapping_mul(0x9e37_79b1) >> 16) as usize) % self.n)
    }

    /// The owner of the worker's share that holds `port`.
    fn by_port(&self, port: u16) -> Option<usize> {
        let p = port as u32;
        (self.lo..=self.hi)
            .contains(&p)
            .then(|| (((p - self.lo) / self.share) as usize).min(self.n - 1))
    }

    fn slot(key: &(u32, u32, u16, u8)) -> usize {
        let h = key
            .0
            .wrapping_mul(0x9e37_79b1)
            .wrapping_add(key.1.rotate_left(7))
            .wrapping_add((key.2 as u32) << 8 | key.3 as u32);
        (h.wrapping_mul(0x85eb_ca6b) >> 24) as usize % MEMO
    }

    /// The owner of an outside packet to a SNAT address of this node.
    fn outside(&mut self, snap: &Snapshot, ip: &[u8]) -> Option<usize> {
        let l = ihl(ip)?;
        let dst = Ipv4Addr::from(be32(ip, 16)?);
        if !snap.snat_here.iter().any(|s| s.ips.contains(&dst)) {
            return None;
        }
        let proto = ip[9];
        let frag = be16(ip, 6)?;
        let key = (be32(ip, 12)?, u32::from(dst), be16(ip, 4)?, proto);
        if frag & 0x1fff != 0 {
            let s = self.memo[Self::slot(&key)];
            return (s.used && s.key == key).then_some(s.to as usize);
        }
        let l4 = &ip[l..];
        let port = match proto {
            TCP | UDP => be16(l4, 2)?,
            ICMP => match *l4.first()? {
                // An echo reply: its id.
                0 => be16(l4, 4)?,
                // An error: the source port (echo id) of what it quotes.
                3 | 4 | 5 | 11 | 12 => {
                    let q = l4.get(8..)?;
                    let ql = ihl(q)?;
                    match q[9] {
                        TCP | UDP => be16(q, ql)?,
                        ICMP => be16(q, ql + 4)?,
                        _ => return None,
                    }
                }
                _ => return None,
            },
            _ => return None,
        };
        let w = self.by_port(port)?;
        if frag & 0x2000 != 0 {
            self.memo[Self::slot(&key)] = Sent {
                key,
                to: w as u8,
                used: true,
            };
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::port_share;

    #[test]
    fn the_owner_of_a_port_is_the_worker_whose_share_holds_it() {
        let range = 1024..=65535u16;
        for n in 1..=5 {
            let o = Owner::new(0, n, &range);
            for w in 0..n {
                let share = port_share(&range, w, n);
                for p in [
                    *share.start(),
                    *share.end(),
                    share.start() / 2 + share.end() / 2,
                ] {
                    assert_eq!(o.by_port(p), Some(w), "port {p}, {n} workers");
                }
            }
            assert_eq!(o.by_port(80), None);
        }
        // Fewer ports than workers: each port still has one owner.
        let small = 5000..=5001u16;
        let o = Owner::new(0, 4, &small);
        for w in 0..4 {
            let s = port_share(&small, w, 4);
            assert_eq!(o.by_port(*s.start()), Some(w.min(1)));
        }
    }

    /// What comes back to the SNAT address goes to the worker whose share
    /// holds its port: a reply, an ICMP error quoting a packet of the
    /// session, the first fragment and the fragments after it; a floating
    /// IP's traffic and a later fragment of an unknown datagram stay; a
    /// packet from inside, tunnelled or not, goes by its inside source.
    #[test]
    fn frames_follow_their_session() {
        use crate::testkit;
        let m = testkit::ns_model();
        let snap = testkit::snat_node_snapshot(&m);
        let gw = snap.snat_here[0].ips[0];
        let range = 1024..=65535u16;
        // `me` no worker: every owner is told.
        let mut o = Owner::new(usize::MAX, 2, &range);
        let remote = Ipv4Addr::new(198, 51, 100, 7);
        let udp = |src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16| {
            crate::gen::udp4_frame(
                &crate::gen::Udp4 {
                    src_mac: crate::mac::MacAddr([2, 0, 0, 0, 0, 1]),
                    dst_mac: crate::mac::MacAddr([2, 0, 0, 0, 0, 2]),
                    src_ip: src,
                    dst_ip: dst,
                    src_port: sport,
                    dst_port: dport,
                },
                60,
                0,
            )
        };
        let (low, high) = (2000u16, 60000u16);
        assert_eq!(o.by_port(low), Some(0));
        assert_eq!(o.by_port(high), Some(1));
        for (port, w) in [(low, 0), (high, 1)] {
            let reply = udp(remote, gw, 53, port);
            assert_eq!(o.of(&snap, Side::External, &reply), Some(w));
            // An ICMP error from a router on the way, quoting what left by
            // the session (gw:port -> remote:53).
            let quoted = udp(gw, remote, port, 53);
            let mut err = reply[..34].to_vec();
            err[14 + 9] = 1; // ICMP
            err[14 + 12..14 + 16].copy_from_slice(&[198, 51, 100, 1]);
            err.extend_from_slice(&[3, 4, 0, 0, 0, 0, 5, 0x78]);
            err.extend_from_slice(&quoted[14..14 + 28]);
            assert_eq!(o.of(&snap, Side::External, &err), Some(w), "ICMP error");
            // Fragments: the first (MF, offset 0) by its port, a later one
            // of the same datagram (no port) after it.
            let mut first = reply.clone();
            first[14 + 4..14 + 6].copy_from_slice(&(0x1000 + port).to_be_bytes());
            first[14 + 6] = 0x20;
            assert_eq!(
                o.of(&snap, Side::External, &first),
                Some(w),
                "first fragment"
            );
            let mut later = first.clone();
            later[14 + 6..14 + 8].copy_from_slice(&185u16.to_be_bytes());
            assert_eq!(
                o.of(&snap, Side::External, &later),
                Some(w),
                "later fragment"
            );
            later[14 + 4] ^= 0x40;
            assert_eq!(
                o.of(&snap, Side::External, &later),
                None,
                "unknown datagram"
            );
        }
        // A floating IP: not the SNAT's.
        let fip = udp(remote, Ipv4Addr::new(203, 0, 113, 50), 53, high);
        assert_eq!(o.of(&snap, Side::External, &fip), None);
        // From inside: the same owner in a tunnel as on a VM port.
        let inner = udp(Ipv4Addr::new(10, 1, 0, 11), remote, 40000, 53);
        let w = o.of(&snap, Side::Vm, &inner).unwrap();
        let tunnelled = testkit::vxlan_frame(
            &inner,
            101,
            ([2, 0, 0, 0, 0, 0x22], [192, 0, 2, 1]),
            ([2, 0, 0, 0, 0, 0x33], [192, 0, 2, 3]),
        );
        assert_eq!(o.of(&snap, Side::Underlay, &tunnelled), Some(w));
    }

    #[test]
    fn inside_packets_of_one_host_have_one_owner() {
        let o = Owner::new(0, 3, &(1024..=65535));
        let mut seen = [0usize; 3];
        for host in 0..300u32 {
            let mut ip = vec![0x45u8; 20];
            ip[12..16].copy_from_slice(&(0x0a00_0000 + host).to_be_bytes());
            let w = o.inside(&ip).unwrap();
            seen[w] += 1;
            ip[16..20].copy_from_slice(&[8, 8, 8, 8]);
            assert_eq!(o.inside(&ip), Some(w), "the destination does not matter");
        }
        assert!(seen.iter().all(|&s| s > 50), "spread: {seen:?}");
        assert_eq!(o.inside(&[0x60; 40]), None, "not IPv4");
    }
}
