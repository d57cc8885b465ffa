//! A reference model of [`Nat`] and the harness that checks one against the
//! other, shared by the unit tests, `tests/nat_model.rs` and the `nat` fuzz
//! target: [`run`] reads its input as a script of packets, configuration
//! changes and time steps, plays it on both, and panics when they disagree.
//!
//! The model is plain `HashMap`s and the rules written out once more: which
//! sessions are alive (idle time against the timeout of the protocol and TCP
//! state), the mapping each one got, which router and inside endpoint holds
//! which external port. It does not pick ports: [`Nat`] does, and the model
//! checks the pick (the router's address and range, the endpoint's binding
//! if it has a live one, no other live endpoint's port). Checked on every
//! step:
//!
//! - a packet of a live session is translated as the session says, back and
//!   forth, and a packet from outside with no live session is dropped
//!   ([`DropReason::NatNoSession`]);
//! - a new flow is dropped only with a reason that holds (no router, full
//!   table, and never because a live session would have to go);
//! - checksums verify after every translation: IPv4 header, transport (over
//!   the reassembled datagram for fragments), an ICMP error's own, its quoted
//!   IP header's and its quoted transport's (the quote is the whole packet);
//! - a later fragment goes where its first went;
//! - the model's live sessions are all in [`Nat::sessions`] with the same
//!   mapping, and [`Nat::check_invariants`] holds.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use super::{Nat, NatConfig, Timeouts};
use crate::stats::DropReason;
use crate::wire::checksum::{checksum, csum_add, csum_fold, pseudo4};
use crate::wire::icmp4;
use crate::wire::{be16, be32, get16, get32, ipv4, proto, put16, put32, set16, set32, tcp, udp};

type R = DropReason;

// ---------------------------------------------------------------------------
// Packets.

/// An IPv4 packet (20-byte header, id `id`, DF clear) around `l4` with the
/// transport checksum computed (UDP: left 0 when `udp_csum` is false).
pub fn packet(proto: u8, src: u32, dst: u32, id: u16, mut l4: Vec<u8>, udp_csum: bool) -> Vec<u8> {
    let len = (ipv4::HEADER_LEN + l4.len()) as u16;
    let ck_at = match proto {
        proto::TCP => Some(tcp::field::CHECKSUM),
        proto::UDP if udp_csum => Some(udp::field::CHECKSUM),
        proto::ICMP => Some(icmp4::field::CHECKSUM),
        _ => None,
    };
    if let Some(at) = ck_at {
        set16(&mut l4, at.clone(), 0);
        let mut c = if proto == proto::ICMP {
            checksum(&l4)
        } else {
            csum_fold(csum_add(
                pseudo4(
                    &src.to_be_bytes(),
                    &dst.to_be_bytes(),
                    l4.len() as u16,
                    proto,
                ),
                &l4,
            ))
        };
        if proto == proto::UDP && c == 0 {
            c = 0xffff;
        }
        set16(&mut l4, at, c);
    }
    let mut p = vec![0u8; ipv4::HEADER_LEN];
    ipv4::write(&mut p, len, 64, proto, src.to_be_bytes(), dst.to_be_bytes());
    set16(&mut p, ipv4::field::FLAGS_OFFSET, 0);
    set16(&mut p, ipv4::field::IDENT, id);
    fill_checksum(&mut p);
    p.extend_from_slice(&l4);
    p
}

/// A TCP header (20 bytes) with `flags` and then `payload`.
pub fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    set16(&mut t, tcp::field::SRC_PORT, sport);
    set16(&mut t, tcp::field::DST_PORT, dport);
    set32(&mut t, tcp::field::SEQ, 0x0102_0304);
    t[12] = 5 << 4; // data offset: no options
    t[tcp::field::FLAGS] = flags;
    put16(&mut t, 14, 65535); // window
    t.extend_from_slice(payload);
    t
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; udp::HEADER_LEN];
    set16(&mut u, udp::field::SRC_PORT, sport);
    set16(&mut u, udp::field::DST_PORT, dport);
    set16(
        &mut u,
        udp::field::LENGTH,
        (udp::HEADER_LEN + payload.len()) as u16,
    );
    u.extend_from_slice(payload);
    u
}

/// An ICMP echo request (8) or reply (0).
pub fn echo(kind: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut e = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    set16(&mut e, icmp4::field::ECHO_ID, id);
    set16(&mut e, icmp4::field::ECHO_SEQ, seq);
    e.extend_from_slice(payload);
    e
}

/// An ICMP error `kind` from `src` to `dst` quoting `quote` (whole or cut).
pub fn icmp_error(kind: u8, src: u32, dst: u32, quote: &[u8]) -> Vec<u8> {
    let mut e = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    e.extend_from_slice(quote);
    packet(proto::ICMP, src, dst, 0, e, false)
}

/// Splits an unfragmented packet into a first fragment carrying `first`
/// bytes of its payload (rounded up to 8) and a second with the rest.
pub fn fragment(p: &[u8], first: usize) -> (Vec<u8>, Vec<u8>) {
    let payload = &p[ipv4::HEADER_LEN..];
    let cut = first.div_ceil(8).max(1) * 8;
    let cut = cut.min(payload.len());
    let mut a = p[..ipv4::HEADER_LEN + cut].to_vec();
    let n = a.len() as u16;
    set16(&mut a, ipv4::field::LENGTH, n);
    set16(&mut a, ipv4::field::FLAGS_OFFSET, ipv4::MF);
    let mut b = p[..ipv4::HEADER_LEN].to_vec();
    b.extend_from_slice(&payload[cut..]);
    let n = b.len() as u16;
    set16(&mut b, ipv4::field::LENGTH, n);
    set16(&mut b, ipv4::field::FLAGS_OFFSET, (cut / 8) as u16);
    for f in [&mut a, &mut b] {
        fill_checksum(f);
    }
    (a, b)
}

/// Joins two fragments made by [`fragment`] (after translation) back into
/// one packet, header from the first.
pub fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut p = a.to_vec();
    p.extend_from_slice(&b[ipv4::HEADER_LEN..]);
    let n = p.len() as u16;
    set16(&mut p, ipv4::field::LENGTH, n);
    set16(&mut p, ipv4::field::FLAGS_OFFSET, 0);
    fill_checksum(&mut p);
    p
}

/// Writes the checksum of the (20-byte) IPv4 header at the start of `p`.
fn fill_checksum(p: &mut [u8]) {
    set16(p, ipv4::field::CHECKSUM, 0);
    let c = checksum(&p[..ipv4::HEADER_LEN]);
    set16(p, ipv4::field::CHECKSUM, c);
}

/// Whether the transport checksum of the whole (unfragmented) packet `p`
/// verifies; a zero UDP checksum is none and verifies.
pub fn l4_ok(p: &[u8]) -> bool {
    let ihl = usize::from(p[0] & 15) * 4;
    let (src, dst) = (&p[ipv4::field::SRC_ADDR], &p[ipv4::field::DST_ADDR]);
    let proto = p[ipv4::field::PROTOCOL];
    let l4 = &p[ihl..];
    match proto {
        proto::TCP => csum_fold(csum_add(pseudo4(src, dst, l4.len() as u16, proto), l4)) == 0,
        proto::UDP => {
            get16(l4, udp::field::CHECKSUM) == 0
                || csum_fold(csum_add(pseudo4(src, dst, l4.len() as u16, proto), l4)) == 0
        }
        proto::ICMP => checksum(l4) == 0,
        _ => true,
    }
}

/// Asserts every checksum of the whole packet `p`: IPv4 header, transport,
/// and for an ICMP error with a whole quote, the quoted packet's too.
pub fn assert_checksums(p: &[u8]) {
    assert_eq!(
        checksum(&p[..ipv4::HEADER_LEN]),
        0,
        "IPv4 header checksum of {p:02x?}"
    );
    assert!(l4_ok(p), "transport checksum of {p:02x?}");
    if p[ipv4::field::PROTOCOL] == proto::ICMP && icmp4::is_error(p[ipv4::HEADER_LEN]) {
        let q = &p[ipv4::HEADER_LEN + icmp4::HEADER_LEN..];
        assert_eq!(
            checksum(&q[..ipv4::HEADER_LEN]),
            0,
            "quoted IPv4 header of {p:02x?}"
        );
        if usize::from(get16(q, ipv4::field::LENGTH)) == q.len() {
            assert!(l4_ok(q), "quoted transport checksum of {p:02x?}");
        }
    }
}

// ---------------------------------------------------------------------------
// The model.

/// An inside key: router, protocol, inside address and port (ICMP: id),
/// remote address and port (ICMP: 0).
type Key = (u32, u8, u32, u16, u32, u16);

#[derive(Debug, Clone, Copy)]
struct MSession {
    ext: (u32, u16),
    last: u64,
    syn_out: bool,
    syn_in: bool,
    fin_out: bool,
    fin_in: bool,
    rst: bool,
}

impl MSession {
    fn track(&mut self, out: bool, flags: u8) {
        let (fin, syn, rst, ack) = (
            flags & 1 != 0,
            flags & 2 != 0,
            flags & 4 != 0,
            flags & 16 != 0,
        );
        if out && syn && !ack && (self.rst || (self.fin_out && self.fin_in)) {
            *self = MSession {
                ext: self.ext,
                last: self.last,
                syn_out: false,
                syn_in: false,
                fin_out: false,
                fin_in: false,
                rst: false,
            };
        }
        self.rst |= rst;
        if out {
            self.syn_out |= syn;
            self.fin_out |= fin;
        } else {
            self.syn_in |= syn;
            self.fin_in |= fin;
        }
    }

    fn established(&self) -> bool {
        self.syn_out && self.syn_in && !self.rst && !(self.fin_out && self.fin_in)
    }
}

/// The obviously correct NAT, minus the port choice.
#[derive(Debug, Default)]
pub struct Model {
    pub timeouts: Timeouts,
    pub tps: u64,
    routers: HashMap<u32, (Vec<u32>, RangeInclusive<u16>)>,
    sessions: HashMap<Key, MSession>,
}

impl Model {
    fn alive(&self, k: &Key, s: &MSession, now: u64) -> bool {
        let t = &self.timeouts;
        let ms = match k.1 {
            proto::TCP if s.established() => t.tcp_established_ms,
            proto::TCP => t.tcp_transitory_ms,
            proto::UDP => t.udp_ms,
            _ => t.icmp_ms,
        };
        now.saturating_sub(s.last) < super::ms_to_ticks(ms, self.tps)
    }

    fn live(&self, k: &Key, now: u64) -> Option<MSession> {
        self.sessions
            .get(k)
            .filter(|s| self.alive(k, s, now))
            .copied()
    }

    /// The live session with this outside key.
    fn by_out(
        &self,
        proto: u8,
        ext: (u32, u16),
        rem: (u32, u16),
        now: u64,
    ) -> Option<(Key, MSession)> {
        self.sessions
            .iter()
            .find(|(k, s)| {
                k.1 == proto && s.ext == ext && (k.4, k.5) == rem && self.alive(k, s, now)
            })
            .map(|(k, s)| (*k, *s))
    }

    /// The external address and port of a live session of the endpoint.
    fn binding(&self, router: u32, proto: u8, ip: u32, port: u16, now: u64) -> Option<(u32, u16)> {
        self.sessions
            .iter()
            .find(|(k, s)| {
                (k.0, k.1, k.2, k.3) == (router, proto, ip, port) && self.alive(k, s, now)
            })
            .map(|(_, s)| s.ext)
    }

    /// Whether another endpoint holds (proto, ext) in a live session.
    fn taken(&self, ep: (u32, u8, u32, u16), ext: (u32, u16), now: u64) -> bool {
        self.sessions.iter().any(|(k, s)| {
            k.1 == ep.1 && s.ext == ext && (k.0, k.1, k.2, k.3) != ep && self.alive(k, s, now)
        })
    }
}

// ---------------------------------------------------------------------------
// The harness.

const ROUTERS: [u32; 3] = [1, 2, 3];
const EXT: [u32; 3] = [0xcb00_7101, 0xcb00_7102, 0xcb00_7103];
const INSIDE: [u32; 3] = [0x0a00_0005, 0x0a00_0006, 0x0a00_0105];
const REMOTE: [u32; 2] = [0xc633_6401, 0xc633_6402];
const IN_PORTS: [u16; 3] = [1234, 1235, 7];
const REM_PORTS: [u16; 2] = [80, 53];
/// Time steps in ticks: mostly short, now and then past a timeout.
const STEPS: [u64; 16] = [
    0, 0, 1, 1, 10, 100, 500, 1000, 2000, 5000, 30_000, 61_000, 241_000, 300_000, 301_000,
    7_441_000,
];
const FLAGS: [u8; 8] = [0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x01];
/// Ticks per second of the harness.
const TPS: u64 = 1000;

/// A translated outbound packet, to answer: its inside and outside flows.
#[derive(Debug, Clone, Copy)]
struct Sent {
    router: u32,
    proto: u8,
    inside: (u32, u16),
    ext: (u32, u16),
    remote: (u32, u16),
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> Option<T> {
        Some(from[usize::from(self.next()?) % from.len()])
    }
}

/// What a [`run`] did, for tests to see that a script reached the cases.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Packets translated out, in; ICMP errors translated; new flows dropped.
    pub out: u64,
    pub back: u64,
    pub errors: u64,
    pub refused: u64,
}

/// The start of a script: its first two bytes size the session table and
/// the routers' port range; a NAT and its model, both empty.
fn start(b: &mut Bytes, max_fragments: usize) -> Option<(Nat, Model, RangeInclusive<u16>)> {
    let max_sessions = 4 + usize::from(b.next()? % 37);
    let size = b.next()?;
    let base = 1000 + u16::from(size >> 4) * 100;
    let cfg = NatConfig {
        max_sessions,
        max_fragments,
        timeouts: Timeouts::default(),
    };
    let m = Model {
        timeouts: cfg.timeouts,
        tps: TPS,
        ..Default::default()
    };
    Some((Nat::new(cfg, TPS), m, base..=base + u16::from(size % 8)))
}

/// Plays `data` on a [`Nat`] and on the [`Model`] and panics where they
/// disagree (see the module documentation).
pub fn run(data: &[u8]) -> Outcome {
    let mut o = Outcome::default();
    let mut b = Bytes(data);
    let Some((mut nat, mut m, range)) = start(&mut b, 64) else {
        return o;
    };
    let mut now: u64 = 1;
    let mut ip_id: u16 = 0;
    let mut sent: Vec<Sent> = Vec::new();
    while let Some(op) = b.next() {
        ip_id = ip_id.wrapping_add(1);
        let ok = match op % 16 {
            0 | 1 => set_router(&mut b, &mut nat, &mut m, &range),
            2 => (|| {
                let r = b.pick(&ROUTERS)?;
                nat.remove_router(r);
                m.routers.remove(&r);
                m.sessions.retain(|k, _| k.0 != r);
                Some(())
            })(),
            3 => (|| {
                let r = b.pick(&ROUTERS)?;
                let ip = b.pick(&INSIDE)?;
                nat.flush_inside(r, ip.into());
                m.sessions.retain(|k, _| !(k.0 == r && k.2 == ip));
                Some(())
            })(),
            4 => b.pick(&STEPS).map(|s| now += s),
            5 => b.next().map(|n| {
                nat.expire(now, usize::from(n));
            }),
            6..=9 => outbound(&mut b, &mut nat, &mut m, now, ip_id, &mut sent).map(|ok| {
                if ok {
                    o.out += 1
                } else {
                    o.refused += 1
                }
            }),
            10 | 11 => inbound(&mut b, &mut nat, &mut m, now, ip_id, &sent)
                .map(|ok| o.back += u64::from(ok)),
            12 => error_in(&mut b, &mut nat, &m, now, &sent).map(|ok| o.errors += u64::from(ok)),
            13 => error_out(&mut b, &mut nat, &m, now, &sent).map(|ok| o.errors += u64::from(ok)),
            14 => {
                // A later fragment of a datagram never seen (ids are unique).
                let (src, dst) = (INSIDE[0], REMOTE[0]);
                let p = packet(proto::UDP, src, dst, ip_id, udp(1, 2, &[0; 24]), true);
                let (_, mut later) = fragment(&p, 8);
                assert_eq!(nat.snat_out(1, &mut later, now), Err(R::NatFragmentUnknown));
                let p = packet(
                    proto::UDP,
                    REMOTE[0],
                    EXT[0],
                    ip_id,
                    udp(1, 2, &[0; 24]),
                    true,
                );
                let (_, mut later) = fragment(&p, 8);
                assert_eq!(nat.snat_in(&mut later, now), Err(R::NatFragmentUnknown));
                Some(())
            }
            _ => b.next().map(|n| {
                // Arbitrary bytes: no panic, and no session made from outside.
                let before = nat.len();
                let mut junk: Vec<u8> = b.0.iter().take(usize::from(n % 64)).copied().collect();
                let _ = nat.snat_in(&mut junk, now);
                assert!(nat.len() <= before, "a session from outside");
            }),
        };
        if ok.is_none() {
            break;
        }
        compare(&nat, &m, now);
    }
    o
}

fn set_router(
    b: &mut Bytes,
    nat: &mut Nat,
    m: &mut Model,
    range: &RangeInclusive<u16>,
) -> Option<()> {
    let r = b.pick(&ROUTERS)?;
    let mask = b.next()?;
    let ips: Vec<u32> = EXT
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, &ip)| ip)
        .collect();
    // Now and then a range of its own: refused if an address is shared.
    let range = if mask & 0x80 != 0 {
        *range.start() + 1..=*range.end() + 1
    } else {
        range.clone()
    };
    let addrs: Vec<Ipv4Addr> = ips.iter().map(|&i| i.into()).collect();
    let got = nat.set_router(r, &addrs, range.clone());
    let conflict = m.routers.iter().any(|(&o, (oips, orange))| {
        o != r && *orange != range && oips.iter().any(|i| ips.contains(i))
    });
    if ips.is_empty() || conflict {
        assert!(got.is_err(), "router {r} {ips:x?} {range:?} accepted");
        return Some(());
    }
    assert_eq!(got, Ok(()));
    if m.routers.get(&r) != Some(&(ips.clone(), range.clone())) {
        m.sessions.retain(|k, _| k.0 != r);
        m.routers.insert(r, (ips, range));
    }
    Some(())
}

/// The transport bytes of a packet of `proto` with `sport`/`dport` (ICMP: an
/// echo of `kind` with id `sport`).
fn l4_of(proto: u8, sport: u16, dport: u16, flags: u8, kind: u8, payload: &[u8]) -> Vec<u8> {
    match proto {
        proto::TCP => tcp(sport, dport, flags, payload),
        proto::UDP => udp(sport, dport, payload),
        _ => echo(kind, sport, 1, payload),
    }
}

/// Ports of a translated packet: (sport, dport), ICMP (id, id).
fn ports(p: &[u8]) -> (u16, u16) {
    if p[ipv4::field::PROTOCOL] == proto::ICMP {
        (be16(p, ipv4::HEADER_LEN + 4), be16(p, ipv4::HEADER_LEN + 4))
    } else {
        (be16(p, ipv4::HEADER_LEN), be16(p, ipv4::HEADER_LEN + 2))
    }
}

/// Sends `p` through `f` whole, or as two fragments (the second right after
/// the first) when `frag`; returns the result and the translated packet
/// (joined again).
fn through<T: PartialEq + std::fmt::Debug>(
    p: &[u8],
    frag: bool,
    mut f: impl FnMut(&mut [u8]) -> Result<T, R>,
) -> (Result<T, R>, Vec<u8>) {
    if !frag {
        let mut q = p.to_vec();
        let r = f(&mut q);
        return (r, q);
    }
    let (mut a, mut c) = fragment(p, 24);
    let ra = f(&mut a);
    let rc = f(&mut c);
    match &ra {
        Ok(_) => {
            assert_eq!(rc, ra, "the later fragment goes where the first went");
            assert_eq!(
                a[ipv4::field::ADDRS],
                c[ipv4::field::ADDRS],
                "fragment addresses"
            );
            assert_eq!(
                checksum(&c[..ipv4::HEADER_LEN]),
                0,
                "later fragment header checksum"
            );
        }
        Err(_) => assert_eq!(
            rc,
            Err(R::NatFragmentUnknown),
            "a fragment of a dropped first"
        ),
    }
    (ra, join(&a, &c))
}

fn outbound(
    b: &mut Bytes,
    nat: &mut Nat,
    m: &mut Model,
    now: u64,
    id: u16,
    sent: &mut Vec<Sent>,
) -> Option<bool> {
    let router = b.pick(&ROUTERS)?;
    let proto = b.pick(&[proto::TCP, proto::UDP, proto::ICMP])?;
    let src = b.pick(&INSIDE)?;
    let sport = b.pick(&IN_PORTS)?;
    let dst = b.pick(&REMOTE)?;
    let dport = if proto == proto::ICMP {
        0
    } else {
        b.pick(&REM_PORTS)?
    };
    let flags = b.pick(&FLAGS)?;
    let shape = b.next()?;
    let (frag, udp_csum) = (shape & 1 != 0, shape & 2 != 0);
    let payload = [shape; 21];
    let p = packet(
        proto,
        src,
        dst,
        id,
        l4_of(proto, sport, dport, flags, 8, &payload),
        udp_csum,
    );
    let key: Key = (router, proto, src, sport, dst, dport);
    let before = m.live(&key, now);
    let (res, q) = through(&p, frag, |x| nat.snat_out(router, x, now));
    match res {
        Ok(()) => {
            assert_checksums(&q);
            let ext = (get32(&q, ipv4::field::SRC_ADDR), ports(&q).0);
            assert_eq!(
                q[ipv4::field::DST_ADDR],
                p[ipv4::field::DST_ADDR],
                "destination kept"
            );
            if proto != proto::ICMP {
                assert_eq!(ports(&q).1, dport, "destination port kept");
            }
            let mut s = match before {
                Some(s) => {
                    assert_eq!(s.ext, ext, "session {key:x?} changed its mapping");
                    s
                }
                None => {
                    let (ips, range) = m.routers.get(&router).expect("a session of no router");
                    assert!(
                        ips.contains(&ext.0) && range.contains(&ext.1),
                        "{ext:x?} not of router {router}"
                    );
                    if let Some(bound) = m.binding(router, proto, src, sport, now) {
                        assert_eq!(bound, ext, "endpoint-independent mapping of {key:x?}");
                    }
                    assert!(
                        !m.taken((router, proto, src, sport), ext, now),
                        "{ext:x?} handed out twice"
                    );
                    MSession {
                        ext,
                        last: now,
                        syn_out: false,
                        syn_in: false,
                        fin_out: false,
                        fin_in: false,
                        rst: false,
                    }
                }
            };
            if proto == proto::TCP {
                s.track(true, flags);
            }
            s.last = now;
            m.sessions.insert(key, s);
            if sent.len() >= 16 {
                sent.remove(0);
            }
            sent.push(Sent {
                router,
                proto,
                inside: (src, sport),
                ext,
                remote: (dst, dport),
            });
            Some(true)
        }
        Err(e) => {
            assert!(before.is_none(), "live session {key:x?} dropped: {e:?}");
            match e {
                R::NatNoPool => assert!(
                    !m.routers.contains_key(&router),
                    "router {router} has a pool"
                ),
                R::NatTableFull => assert_eq!(nat.len(), max(nat), "table full at {}", nat.len()),
                R::NatPortsExhausted => assert!(
                    m.binding(router, proto, src, sport, now).is_none(),
                    "exhausted, but {key:x?} has a live binding"
                ),
                e => panic!("{key:x?}: unexpected {e:?}"),
            }
            Some(false)
        }
    }
}

fn max(nat: &Nat) -> usize {
    nat.config().max_sessions
}

fn inbound(
    b: &mut Bytes,
    nat: &mut Nat,
    m: &mut Model,
    now: u64,
    id: u16,
    sent: &[Sent],
) -> Option<bool> {
    let which = b.next()?;
    let flags = b.pick(&FLAGS)?;
    let shape = b.next()?;
    let (frag, udp_csum) = (shape & 1 != 0, shape & 2 != 0);
    let (proto, ext, remote) = match sent.get(usize::from(which) % (sent.len() + 1)) {
        Some(s) => (s.proto, s.ext, s.remote),
        None => {
            // Anything to the external addresses.
            let proto = b.pick(&[proto::TCP, proto::UDP, proto::ICMP])?;
            let ext = (b.pick(&EXT)?, 1000 + u16::from(b.next()? % 8));
            (proto, ext, (b.pick(&REMOTE)?, b.pick(&REM_PORTS)?))
        }
    };
    let rport = if proto == proto::ICMP { 0 } else { remote.1 };
    let sport = if proto == proto::ICMP { ext.1 } else { rport };
    let p = packet(
        proto,
        remote.0,
        ext.0,
        id,
        l4_of(proto, sport, ext.1, flags, 0, &[shape; 21]),
        udp_csum,
    );
    let found = m.by_out(proto, ext, (remote.0, rport), now);
    let (res, q) = through(&p, frag, |x| nat.snat_in(x, now));
    match (found, res) {
        (Some((k, mut s)), Ok(router)) => {
            assert_eq!(router, k.0, "router of {k:x?}");
            assert_checksums(&q);
            assert_eq!(
                (get32(&q, ipv4::field::DST_ADDR), ports(&q).1),
                (k.2, k.3),
                "reverse translation of {k:x?}"
            );
            assert_eq!(
                q[ipv4::field::SRC_ADDR],
                p[ipv4::field::SRC_ADDR],
                "source kept"
            );
            if proto == proto::TCP {
                s.track(false, flags);
            }
            s.last = now;
            m.sessions.insert(k, s);
            Some(true)
        }
        (None, Err(R::NatNoSession)) => Some(false),
        (f, r) => panic!("from {remote:x?} to {ext:x?}/{proto}: model {f:x?}, nat {r:?}"),
    }
}

fn error_in(b: &mut Bytes, nat: &mut Nat, m: &Model, now: u64, sent: &[Sent]) -> Option<bool> {
    let which = usize::from(b.next()?);
    let Some(&s) = sent.get(which % sent.len().max(1)) else {
        return Some(false);
    };
    let kind = b.pick(&[3u8, 11, 12])?;
    let cut = b.next()? & 1 != 0;
    let rport = if s.proto == proto::ICMP {
        0
    } else {
        s.remote.1
    };
    // The packet that went out (a whole quote verifies its checksums).
    let mut orig = packet(
        s.proto,
        s.ext.0,
        s.remote.0,
        9,
        l4_of(s.proto, s.ext.1, rport, 0x10, 8, &[]),
        true,
    );
    if cut {
        orig.truncate(ipv4::HEADER_LEN + 8);
    }
    let router_addr = 0xc633_64fe;
    let mut p = icmp_error(kind, router_addr, s.ext.0, &orig);
    let found = m.by_out(s.proto, s.ext, (s.remote.0, rport), now);
    match (found, nat.snat_in(&mut p, now)) {
        (Some((k, _)), Ok(router)) => {
            assert_eq!(router, k.0);
            assert_checksums(&p);
            let q = &p[ipv4::HEADER_LEN + icmp4::HEADER_LEN..];
            assert_eq!(get32(&p, ipv4::field::DST_ADDR), k.2, "outer destination");
            assert_eq!(
                (get32(q, ipv4::field::SRC_ADDR), ports(q).0),
                (k.2, k.3),
                "quoted source"
            );
            Some(true)
        }
        (None, Err(R::NatNoSession)) => Some(false),
        (f, r) => panic!("error about {s:x?}: model {f:x?}, nat {r:?}"),
    }
}

fn error_out(b: &mut Bytes, nat: &mut Nat, m: &Model, now: u64, sent: &[Sent]) -> Option<bool> {
    let which = usize::from(b.next()?);
    let Some(&s) = sent.get(which % sent.len().max(1)) else {
        return Some(false);
    };
    let router = if b.next()? & 1 == 0 {
        s.router
    } else {
        b.pick(&ROUTERS)?
    };
    let rport = if s.proto == proto::ICMP {
        0
    } else {
        s.remote.1
    };
    // The packet that came in, as the inside host got it.
    let kind = if s.proto == proto::ICMP { 0 } else { 8 };
    let sport = if s.proto == proto::ICMP {
        s.inside.1
    } else {
        rport
    };
    let orig = packet(
        s.proto,
        s.remote.0,
        s.inside.0,
        9,
        l4_of(s.proto, sport, s.inside.1, 0x10, kind, &[]),
        true,
    );
    let mut p = icmp_error(3, s.inside.0, s.remote.0, &orig);
    let key: Key = (router, s.proto, s.inside.0, s.inside.1, s.remote.0, rport);
    match (m.live(&key, now), nat.snat_out(router, &mut p, now)) {
        (Some(ms), Ok(())) => {
            assert_checksums(&p);
            let q = &p[ipv4::HEADER_LEN + icmp4::HEADER_LEN..];
            assert_eq!(get32(&p, ipv4::field::SRC_ADDR), ms.ext.0, "outer source");
            assert_eq!(
                (get32(q, ipv4::field::DST_ADDR), ports(q).1),
                ms.ext,
                "quoted destination"
            );
            Some(true)
        }
        (None, Err(R::NatNoSession)) => Some(false),
        (f, r) => panic!("error from inside about {key:x?}: model {f:x?}, nat {r:?}"),
    }
}

/// Every live session of the model is in the NAT as the model has it, and
/// the NAT's tables agree with each other.
fn compare(nat: &Nat, m: &Model, now: u64) {
    let mut have: HashMap<Key, (u32, u16)> = HashMap::new();
    for v in nat.sessions(now) {
        let k = (
            v.router,
            v.proto,
            u32::from(*v.inside.ip()),
            v.inside.port(),
            u32::from(*v.remote.ip()),
            v.remote.port(),
        );
        have.insert(k, (u32::from(*v.outside.ip()), v.outside.port()));
    }
    for (k, s) in &m.sessions {
        if m.alive(k, s, now) {
            assert_eq!(
                have.get(k),
                Some(&s.ext),
                "live session {k:x?} lost or changed"
            );
        }
    }
    if let Err(e) = nat.check_invariants() {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// ICMP errors and fragments: the harness of the `nat_icmp` fuzz target.

/// What the NAT must read of the packet an ICMP error quotes (`q`, from the
/// error's offset 8), as RFC 5508 and the module documentation say: a whole
/// IPv4 header of a first (or only) fragment and 8 bytes of TCP, UDP or an
/// ICMP echo; its flow (protocol, source, destination, ports or echo id
/// twice), or why the error is dropped.
fn quoted_flow(q: &[u8]) -> Result<(u8, u32, u32, u16, u16), R> {
    if q.len() < ipv4::HEADER_LEN || q[0] >> 4 != 4 {
        return Err(R::NatTruncated);
    }
    let ihl = usize::from(q[0] & 15) * 4;
    if ihl < ipv4::HEADER_LEN || ihl > q.len() {
        return Err(R::NatTruncated);
    }
    if get16(q, ipv4::field::FLAGS_OFFSET) & ipv4::OFFSET_MASK != 0 {
        return Err(R::NatFragmentUnknown);
    }
    if q.len() < ihl + 8 {
        return Err(R::NatTruncated);
    }
    let (sport, dport) = match q[ipv4::field::PROTOCOL] {
        proto::TCP | proto::UDP => (be16(q, ihl), be16(q, ihl + 2)),
        proto::ICMP if matches!(q[ihl], 0 | 8) => (be16(q, ihl + 4), be16(q, ihl + 4)),
        _ => return Err(R::NatUnsupportedProto),
    };
    Ok((
        q[ipv4::field::PROTOCOL],
        get32(q, ipv4::field::SRC_ADDR),
        get32(q, ipv4::field::DST_ADDR),
        sport,
        dport,
    ))
}

/// What must become of the ICMP error `p` (an unfragmented packet, or the
/// first fragment of one, with a 20-byte header) from outside: the session
/// it is about, or why it is dropped.
fn expect_error_in(m: &Model, p: &[u8], now: u64) -> Result<Key, R> {
    if !icmp4::is_error(p[ipv4::HEADER_LEN]) {
        return Err(R::NatUnsupportedProto);
    }
    let (proto, src, dst, sport, dport) = quoted_flow(&p[ipv4::HEADER_LEN + icmp4::HEADER_LEN..])?;
    let rport = if proto == proto::ICMP { 0 } else { dport };
    m.by_out(proto, (src, sport), (dst, rport), now)
        .map(|(k, _)| k)
        .ok_or(R::NatNoSession)
}

/// [`expect_error_in`] for an ICMP error `p` from inside, router `router`:
/// the session and its external address and port.
fn expect_error_out(m: &Model, router: u32, p: &[u8], now: u64) -> Result<(Key, (u32, u16)), R> {
    if !icmp4::is_error(p[ipv4::HEADER_LEN]) {
        return Err(R::NatUnsupportedProto);
    }
    let (proto, src, dst, sport, dport) = quoted_flow(&p[ipv4::HEADER_LEN + icmp4::HEADER_LEN..])?;
    let rport = if proto == proto::ICMP { 0 } else { sport };
    let key: Key = (router, proto, dst, dport, src, rport);
    m.live(&key, now)
        .map(|s| (key, s.ext))
        .ok_or(R::NatNoSession)
}

/// Where the transport checksum of a quoted packet of `proto` is, from its
/// transport header.
fn l4_ck_at(proto: u8) -> Option<usize> {
    match proto {
        proto::TCP => Some(16),
        proto::UDP => Some(6),
        proto::ICMP => Some(2),
        _ => None,
    }
}

/// Checks the ICMP error `after`, translated from `before` (unfragmented,
/// 20-byte outer header): from outside (`inbound`) its destination and
/// its quote's source address and port (or echo id) became `to`, from
/// inside its source and its quote's destination; nothing else changed but
/// the checksums, and every checksum that verified before verifies after
/// (outer header, ICMP, quoted header, quoted transport when the quote is the
/// whole packet).
fn check_error_rewrite(before: &[u8], after: &[u8], inbound: bool, to: (u32, u16)) {
    assert_eq!(before.len(), after.len());
    let q = ipv4::HEADER_LEN + icmp4::HEADER_LEN;
    let qihl = usize::from(before[q] & 15) * 4;
    let qproto = before[q + 9];
    let l4 = q + qihl;
    let (outer_at, quoted_at) = if inbound { (16, q + 12) } else { (12, q + 16) };
    let port_at = l4
        + match (qproto, inbound) {
            (proto::ICMP, _) => 4,
            (_, true) => 0,
            (_, false) => 2,
        };
    assert_eq!(be32(after, outer_at), to.0, "outer address of {after:02x?}");
    assert_eq!(
        be32(after, quoted_at),
        to.0,
        "quoted address of {after:02x?}"
    );
    assert_eq!(be16(after, port_at), to.1, "quoted port of {after:02x?}");
    let ck = l4_ck_at(qproto).map(|c| l4 + c);
    let may_change = |i: usize| {
        (outer_at..outer_at + 4).contains(&i)
            || (10..12).contains(&i)
            || (ipv4::HEADER_LEN + 2..ipv4::HEADER_LEN + 4).contains(&i)
            || (quoted_at..quoted_at + 4).contains(&i)
            || (q + 10..q + 12).contains(&i)
            || (port_at..port_at + 2).contains(&i)
            || ck.is_some_and(|c| (c..c + 2).contains(&i))
    };
    for (i, (a, b)) in before.iter().zip(after).enumerate() {
        assert!(
            a == b || may_change(i),
            "byte {i} changed: {before:02x?} -> {after:02x?}"
        );
    }
    assert_eq!(
        checksum(&after[..ipv4::HEADER_LEN]),
        0,
        "outer header checksum"
    );
    if checksum(&before[ipv4::HEADER_LEN..]) == 0 {
        assert_eq!(
            checksum(&after[ipv4::HEADER_LEN..]),
            0,
            "ICMP checksum of {after:02x?}"
        );
    }
    if checksum(&before[q..l4]) == 0 {
        assert_eq!(checksum(&after[q..l4]), 0, "quoted header checksum");
    }
    let whole = usize::from(be16(before, q + 2)) == before.len() - q && be16(before, q + 6) == 0;
    if whole && l4_ok(&before[q..]) {
        assert!(
            l4_ok(&after[q..]),
            "quoted transport checksum of {after:02x?}"
        );
    }
}

/// `translated` (a quote after translation) equals `expected` (the packet the
/// quote should now be of, cut as long): byte for byte, checksums as one's
/// complement numbers; a checksum the quote holds only half of is left.
fn assert_quote(translated: &[u8], expected: &[u8], untranslated: &[u8]) {
    let n = translated.len();
    let expected = &expected[..n];
    let ihl = usize::from(expected[0] & 15) * 4;
    let ck = l4_ck_at(expected[ipv4::field::PROTOCOL]).map(|c| ihl + c);
    let mut i = 0;
    while i < n {
        let field = if i == 10 {
            Some(10)
        } else {
            ck.filter(|&c| c == i)
        };
        match field {
            Some(c) if c + 2 <= n => {
                assert!(
                    crate::testkit::same_checksum(be16(translated, c), be16(expected, c)),
                    "quoted checksum at {c}: {translated:02x?}, expected {expected:02x?}"
                );
                i += 2;
            }
            Some(c) => {
                assert_eq!(translated[c..], untranslated[c..n], "half a checksum");
                i = n;
            }
            None => {
                assert_eq!(
                    translated[i], expected[i],
                    "quoted byte {i}: {translated:02x?}, expected {expected:02x?}"
                );
                i += 1;
            }
        }
    }
}

/// A packet as [`packet`] makes it, then with `opts` bytes of IP options
/// (NOPs) and flags and fragment offset `frag`; checksums of the whole.
#[allow(clippy::too_many_arguments)]
fn shaped(
    proto: u8,
    (src, sport): (u32, u16),
    (dst, dport): (u32, u16),
    kind: u8,
    opts: usize,
    frag: u16,
    payload: &[u8],
    udp_csum: bool,
) -> Vec<u8> {
    let mut p = packet(
        proto,
        src,
        dst,
        9,
        l4_of(proto, sport, dport, 0x10, kind, payload),
        udp_csum,
    );
    if opts > 0 {
        p.splice(
            ipv4::HEADER_LEN..ipv4::HEADER_LEN,
            std::iter::repeat_n(1u8, opts),
        );
        p[0] = 0x40 | ((ipv4::HEADER_LEN + opts) / 4) as u8;
    }
    let n = p.len() as u16;
    set16(&mut p, ipv4::field::LENGTH, n);
    set16(&mut p, ipv4::field::FLAGS_OFFSET, frag);
    fix_header(&mut p);
    p
}

/// Recomputes the IPv4 header checksum of `p`.
fn fix_header(p: &mut [u8]) {
    let ihl = usize::from(p[0] & 15) * 4;
    set16(p, ipv4::field::CHECKSUM, 0);
    let c = checksum(&p[..ihl]);
    set16(p, ipv4::field::CHECKSUM, c);
}

/// An ICMP error of type `kind` from `src` to `dst` with IP id `id`
/// quoting `quote`.
fn error_packet(kind: u8, src: u32, dst: u32, id: u16, quote: &[u8]) -> Vec<u8> {
    let mut p = icmp_error(kind, src, dst, quote);
    set16(&mut p, ipv4::field::IDENT, id);
    fix_header(&mut p);
    p
}

/// The ICMP types the harness sends as errors: the three that quote a
/// packet, and a redirect (not translated: dropped as unsupported).
const ERROR_KINDS: [u8; 4] = [3, 11, 12, 5];

/// One ICMP error the harness made, about `s`, before it is sent.
struct Crafted {
    /// The error.
    p: Vec<u8>,
    /// The packet it quotes, whole, as it was on the wire (translated).
    wire: Vec<u8>,
}

/// Makes an ICMP error about the packet of `s` that went out (`inbound`:
/// the error comes from outside) or came in (from inside), shaped by the
/// script: cut anywhere, with IP options, a quoted first or later fragment,
/// a UDP checksum of zero, another port or remote.
fn craft(b: &mut Bytes, s: &Sent, inbound: bool, id: u16) -> Option<Crafted> {
    let kind = b.pick(&ERROR_KINDS)?;
    let shape = b.next()?;
    let cut = b.next()?;
    let opts = if shape & 1 != 0 {
        4 * usize::from(1 + (shape >> 1) % 3)
    } else {
        0
    };
    let frag = match (shape >> 3) & 3 {
        1 => 0x2000,
        2 => ipv4::MF | 3,
        3 => 0x4000,
        _ => 0,
    };
    let udp_csum = shape & 0x20 == 0;
    let payload = [0xa5u8; 13];
    let rport = if s.proto == proto::ICMP {
        0
    } else {
        s.remote.1
    };
    // Another port (or echo id) than the session's, now and then.
    let other = |p: u16| {
        if shape & 0x40 != 0 {
            p.wrapping_add(1)
        } else {
            p
        }
    };
    let remote = if shape & 0x80 != 0 {
        REMOTE[usize::from(REMOTE[0] == s.remote.0)]
    } else {
        s.remote.0
    };
    let wire = if inbound {
        // What went out: ext -> remote (an echo request).
        shaped(
            s.proto,
            (s.ext.0, other(s.ext.1)),
            (remote, rport),
            8,
            opts,
            frag,
            &payload,
            udp_csum,
        )
    } else {
        // What came in: remote -> inside, as the inside host got it (an
        // echo reply).
        let sport = if s.proto == proto::ICMP {
            s.inside.1
        } else {
            rport
        };
        shaped(
            s.proto,
            (remote, sport),
            (s.inside.0, other(s.inside.1)),
            0,
            opts,
            frag,
            &payload,
            udp_csum,
        )
    };
    let n = match cut % 8 {
        0..=3 => wire.len(),
        4 => ipv4::HEADER_LEN + opts + 8,
        5 => ipv4::HEADER_LEN + opts + 4,
        _ => usize::from(cut) % (wire.len() + 1),
    }
    .min(wire.len());
    let p = if inbound {
        error_packet(kind, 0xc633_64fe, s.ext.0, id, &wire[..n])
    } else {
        error_packet(kind, s.inside.0, remote, id, &wire[..n])
    };
    Some(Crafted { p, wire })
}

/// The quote of `c` as the NAT must leave it: the quoted packet with the
/// session's side put back (from outside: source `to`; from inside:
/// destination `to`), checksums of the whole recomputed.
fn untranslated(c: &Crafted, inbound: bool, to: (u32, u16)) -> Vec<u8> {
    let w = &c.wire;
    let ihl = usize::from(w[0] & 15) * 4;
    let proto = w[ipv4::field::PROTOCOL];
    let mut p = w.clone();
    let (addr_at, port_at) = match (proto, inbound) {
        (proto::ICMP, true) => (12, ihl + 4),
        (proto::ICMP, false) => (16, ihl + 4),
        (_, true) => (12, ihl),
        (_, false) => (16, ihl + 2),
    };
    put32(&mut p, addr_at, to.0);
    put16(&mut p, port_at, to.1);
    fix_header(&mut p);
    // The transport checksum of the whole, from scratch (a zero UDP
    // checksum stays zero).
    if let Some(at) = l4_ck_at(proto) {
        let at = ihl + at;
        if !(proto == proto::UDP && be16(&p, at) == 0) {
            put16(&mut p, at, 0);
            let l4 = &p[ihl..];
            let mut c = if proto == proto::ICMP {
                checksum(l4)
            } else {
                csum_fold(csum_add(
                    pseudo4(
                        &p[ipv4::field::SRC_ADDR],
                        &p[ipv4::field::DST_ADDR],
                        l4.len() as u16,
                        proto,
                    ),
                    l4,
                ))
            };
            if proto == proto::UDP && c == 0 {
                c = 0xffff;
            }
            put16(&mut p, at, c);
        }
    }
    p
}

/// Sends an ICMP error about a flow the script made (or a near miss) from
/// outside (`inbound`) or inside, whole or as two fragments, and checks it
/// against the model. `junk`: one byte of the quote flipped first (the
/// checksums that covered it fixed), so that the quote may be anything.
#[allow(clippy::too_many_arguments)]
fn send_error(
    b: &mut Bytes,
    nat: &mut Nat,
    m: &Model,
    now: u64,
    id: u16,
    sent: &[Sent],
    inbound: bool,
    split: bool,
    junk: bool,
) -> Option<bool> {
    let which = usize::from(b.next()?);
    let Some(&s) = sent.get(which % sent.len().max(1)) else {
        return Some(false);
    };
    let router = if inbound || b.next()? & 3 != 0 {
        s.router
    } else {
        b.pick(&ROUTERS)?
    };
    let mut c = craft(b, &s, inbound, id)?;
    let q = ipv4::HEADER_LEN + icmp4::HEADER_LEN;
    if junk && c.p.len() > q {
        let at = q + usize::from(b.next()?) % (c.p.len() - q);
        let x = b.next()?.max(1);
        c.p[at] ^= x;
        // The quoted header's checksum (if the quote holds the header) and
        // the ICMP checksum made right again: only the content is junk.
        let ihl = usize::from(c.p[q] & 15) * 4;
        if ihl >= ipv4::HEADER_LEN && q + ihl <= c.p.len() && !(q + 10..q + 12).contains(&at) {
            put16(&mut c.p, q + 10, 0);
            let ck = checksum(&c.p[q..q + ihl]);
            put16(&mut c.p, q + 10, ck);
        }
        put16(&mut c.p, ipv4::HEADER_LEN + 2, 0);
        let ck = checksum(&c.p[ipv4::HEADER_LEN..]);
        put16(&mut c.p, ipv4::HEADER_LEN + 2, ck);
    }
    let before = c.p.clone();
    // What must happen: the session and the address and port the error's
    // side of it is translated to, or the reason.
    let expect: Result<(u32, (u32, u16)), R> = if inbound {
        expect_error_in(m, &c.p, now).map(|k| (k.0, (k.2, k.3)))
    } else {
        expect_error_out(m, router, &c.p, now).map(|(_, ext)| (router, ext))
    };
    // Split so that the first fragment holds the whole quoted header and
    // 8 bytes (the error can be translated from it alone).
    let split = split && c.p.len() > ipv4::HEADER_LEN + 8 + 60 + 8 + 8;
    let mut send = |x: &mut [u8]| -> Result<u32, R> {
        if inbound {
            nat.snat_in(x, now)
        } else {
            nat.snat_out(router, x, now).map(|()| router)
        }
    };
    let (got, after) = if split {
        let (mut first, mut later) = fragment(&c.p, 8 + 60 + 8);
        let r1 = send(&mut first);
        let r2 = send(&mut later);
        match &r1 {
            Ok(r) => {
                assert_eq!(
                    r2,
                    Ok(*r),
                    "the later fragment of an error goes with its first"
                );
                assert_eq!(
                    first[ipv4::field::ADDRS],
                    later[ipv4::field::ADDRS],
                    "fragment addresses"
                );
                assert_eq!(
                    checksum(&later[..ipv4::HEADER_LEN]),
                    0,
                    "later fragment checksum"
                );
            }
            Err(_) => assert_eq!(
                r2,
                Err(R::NatFragmentUnknown),
                "a fragment of a dropped first"
            ),
        }
        (r1, join(&first, &later))
    } else {
        let mut p = c.p.clone();
        (send(&mut p), p)
    };
    match (expect, got) {
        (Ok((r, to)), Ok(router)) => {
            assert_eq!(router, r, "router of the error");
            check_error_rewrite(&before, &after, inbound, to);
            if !junk {
                let native = untranslated(&c, inbound, to);
                assert_quote(&after[q..], &native, &before[q..]);
            }
            Some(true)
        }
        (Err(e), Err(g)) if e == g => Some(false),
        (e, g) => panic!(
            "error {} {before:02x?}: model {e:x?}, nat {g:?}",
            if inbound { "in" } else { "out" }
        ),
    }
}

/// A later fragment waiting to be sent, and what its first fragment got.
struct Later {
    inbound: bool,
    router: u32,
    frag: Vec<u8>,
    /// The first fragment's router and new address, or its drop.
    first: Result<(u32, u32), R>,
    /// [`Harness::epoch`] when the first was sent.
    epoch: u64,
}

/// Sends the first fragment of a new datagram of a flow of `sent` (out: of a
/// live session only; the harness does not make sessions from fragments),
/// and keeps the later ones, a middle and a last, for [`send_later`]. With
/// `reverse`, the last is sent before the first (dropped: nothing to follow)
/// and again right after it.
#[allow(clippy::too_many_arguments)]
fn send_first(
    b: &mut Bytes,
    nat: &mut Nat,
    m: &mut Model,
    now: u64,
    id: u16,
    sent: &[Sent],
    later: &mut Vec<Later>,
    epoch: u64,
    reverse: bool,
) -> Option<bool> {
    let which = usize::from(b.next()?);
    let Some(&s) = sent.get(which % sent.len().max(1)) else {
        return Some(false);
    };
    let inbound = b.next()? & 1 != 0;
    let rport = if s.proto == proto::ICMP {
        0
    } else {
        s.remote.1
    };
    let payload = [0x3cu8; 40];
    let (p, key) = if inbound {
        let sport = if s.proto == proto::ICMP {
            s.ext.1
        } else {
            rport
        };
        let p = packet(
            s.proto,
            s.remote.0,
            s.ext.0,
            id,
            l4_of(s.proto, sport, s.ext.1, 0x10, 0, &payload),
            true,
        );
        (
            p,
            m.by_out(s.proto, s.ext, (s.remote.0, rport), now)
                .map(|(k, _)| k),
        )
    } else {
        let key: Key = (s.router, s.proto, s.inside.0, s.inside.1, s.remote.0, rport);
        if m.live(&key, now).is_none() {
            return Some(false);
        }
        let p = packet(
            s.proto,
            s.inside.0,
            s.remote.0,
            id,
            l4_of(s.proto, s.inside.1, rport, 0x10, 8, &payload),
            true,
        );
        (p, Some(key))
    };
    // Three fragments: 24 bytes of transport (a whole TCP header), 16
    // more, the rest.
    let (mut first, rest) = fragment(&p, 24);
    let mut whole_rest = p[..ipv4::HEADER_LEN].to_vec();
    whole_rest.extend_from_slice(&rest[ipv4::HEADER_LEN..]);
    let (mut middle, mut last) = {
        // Split the rest again: offsets continue from the first's end.
        let off = get16(&rest, ipv4::field::FLAGS_OFFSET) & ipv4::OFFSET_MASK;
        let (mut a, mut c) = fragment(&whole_rest, 16);
        let c_off = get16(&c, ipv4::field::FLAGS_OFFSET) & ipv4::OFFSET_MASK;
        set16(&mut a, ipv4::field::FLAGS_OFFSET, ipv4::MF | off);
        set16(&mut c, ipv4::field::FLAGS_OFFSET, off + c_off);
        fix_header(&mut a);
        fix_header(&mut c);
        (a, c)
    };
    let send = |nat: &mut Nat, x: &mut [u8]| -> Result<u32, R> {
        if inbound {
            nat.snat_in(x, now)
        } else {
            nat.snat_out(s.router, x, now).map(|()| s.router)
        }
    };
    if reverse {
        let mut l = last.clone();
        assert_eq!(
            send(nat, &mut l),
            Err(R::NatFragmentUnknown),
            "a last fragment before its first"
        );
    }
    let got = send(nat, &mut first);
    let first_res = match (key, got) {
        (Some(k), Ok(router)) => {
            assert_eq!(router, k.0);
            let ms = m.sessions.get_mut(&k).expect("a live session");
            ms.last = now;
            let new = if inbound {
                get32(&first, ipv4::field::DST_ADDR)
            } else {
                get32(&first, ipv4::field::SRC_ADDR)
            };
            let want = if inbound { k.2 } else { ms.ext.0 };
            assert_eq!(new, want, "first fragment's new address");
            assert_eq!(
                checksum(&first[..ipv4::HEADER_LEN]),
                0,
                "first fragment's header checksum"
            );
            Ok((router, new))
        }
        (None, Err(R::NatNoSession)) => Err(R::NatNoSession),
        (k, g) => panic!("first fragment of {s:x?} ({inbound}): model {k:x?}, nat {g:?}"),
    };
    let ok = first_res.is_ok();
    for frag in [&mut middle, &mut last] {
        later.push(Later {
            inbound,
            router: s.router,
            frag: frag.clone(),
            first: first_res,
            epoch,
        });
    }
    if reverse {
        let l = later.pop().expect("just pushed");
        check_later(nat, now, epoch, &l);
    }
    if later.len() > 16 {
        later.drain(..later.len() - 16);
    }
    Some(ok)
}

/// Sends a later fragment: it goes where its first went (same router, same
/// new address, only the address and header checksum changed), or, if its
/// first was dropped, is dropped as unknown. Dropped as unknown also when
/// something since (`epoch` moved: time, other first fragments, router
/// changes) may have let its entry go.
fn check_later(nat: &mut Nat, now: u64, epoch: u64, l: &Later) {
    let mut f = l.frag.clone();
    let got = if l.inbound {
        nat.snat_in(&mut f, now)
    } else {
        nat.snat_out(l.router, &mut f, now).map(|()| l.router)
    };
    match (l.first, got) {
        (Ok((router, new)), Ok(r)) => {
            assert_eq!(r, router, "a later fragment's router");
            let at = if l.inbound { 16 } else { 12 };
            assert_eq!(be32(&f, at), new, "a later fragment's new address");
            assert_eq!(
                checksum(&f[..ipv4::HEADER_LEN]),
                0,
                "a later fragment's checksum"
            );
            for (i, (a, b)) in l.frag.iter().zip(&f).enumerate() {
                assert!(
                    a == b || (at..at + 4).contains(&i) || (10..12).contains(&i),
                    "a later fragment's byte {i} changed"
                );
            }
        }
        (Ok(_), Err(R::NatFragmentUnknown)) => assert!(
            epoch != l.epoch,
            "a later fragment lost its first's entry: {:02x?}",
            l.frag
        ),
        (Err(_), Err(R::NatFragmentUnknown)) => {}
        (first, g) => panic!(
            "later fragment {:02x?}: first {first:x?}, now {g:?}",
            l.frag
        ),
    }
}

/// Plays `data` as [`run`] does, with fewer plain packets and more ICMP
/// errors and fragments: errors both ways about the script's flows and near
/// misses (another port or remote), cut at any length, with quoted IP
/// options, about fragments, fragmented themselves, with junk in the quote;
/// and first fragments whose later ones come out of order, repeated,
/// interleaved with others, after time steps. Checked: what [`run`] checks;
/// each error is translated exactly when the model has its session (its
/// quote then is the untranslated packet, checksums and all, nothing else
/// changed) or dropped with the reason its quote gives; a later fragment goes
/// where its first went or is dropped as unknown, and only for a reason.
pub fn run_icmp(data: &[u8]) -> Outcome {
    let mut o = Outcome::default();
    let mut b = Bytes(data);
    let Some((mut nat, mut m, range)) = start(&mut b, 16) else {
        return o;
    };
    let mut now: u64 = 1;
    let mut ip_id: u16 = 0;
    let mut sent: Vec<Sent> = Vec::new();
    let mut later: Vec<Later> = Vec::new();
    // Moves whenever a fragment entry may have gone or been displaced.
    let mut epoch: u64 = 0;
    while let Some(op) = b.next() {
        ip_id = ip_id.wrapping_add(1);
        let count = |o: &mut u64, r: Option<bool>| r.map(|ok| *o += u64::from(ok));
        let ok = match op % 16 {
            0 => {
                epoch += 1;
                set_router(&mut b, &mut nat, &mut m, &range)
            }
            1 => {
                epoch += 1;
                b.pick(&STEPS).map(|s| now += s)
            }
            2 => b.next().map(|n| {
                nat.expire(now, usize::from(n));
            }),
            3..=5 => {
                epoch += 1;
                let r = outbound(&mut b, &mut nat, &mut m, now, ip_id, &mut sent);
                count(&mut o.out, r)
            }
            6 => {
                epoch += 1;
                let r = inbound(&mut b, &mut nat, &mut m, now, ip_id, &sent);
                count(&mut o.back, r)
            }
            7 | 8 => {
                let r = send_error(&mut b, &mut nat, &m, now, ip_id, &sent, true, false, false);
                count(&mut o.errors, r)
            }
            9 | 10 => {
                let r = send_error(&mut b, &mut nat, &m, now, ip_id, &sent, false, false, false);
                count(&mut o.errors, r)
            }
            11 => {
                epoch += 1;
                let inb = b.next().map(|x| x & 1 != 0);
                inb.and_then(|inb| {
                    let r = send_error(&mut b, &mut nat, &m, now, ip_id, &sent, inb, true, false);
                    count(&mut o.errors, r)
                })
            }
            12 | 14 => {
                epoch += 1;
                let r = send_first(
                    &mut b,
                    &mut nat,
                    &mut m,
                    now,
                    ip_id,
                    &sent,
                    &mut later,
                    epoch,
                    op % 16 == 14,
                );
                count(&mut o.back, r)
            }
            13 => b.next().map(|i| {
                if !later.is_empty() {
                    let l = &later[usize::from(i) % later.len()];
                    check_later(&mut nat, now, epoch, l);
                }
            }),
            _ => {
                let inb = b.next().map(|x| x & 1 != 0);
                inb.and_then(|inb| {
                    let r = send_error(&mut b, &mut nat, &m, now, ip_id, &sent, inb, false, true);
                    count(&mut o.errors, r)
                })
            }
        };
        if ok.is_none() {
            break;
        }
        compare(&nat, &m, now);
    }
    o
}
