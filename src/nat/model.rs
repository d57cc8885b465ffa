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
use crate::pkt::*;
use crate::stats::DropReason;

type R = DropReason;

// ---------------------------------------------------------------------------
// Packets.

/// An IPv4 packet (20-byte header, id `id`, DF clear) around `l4` with the
/// transport checksum computed (UDP: left 0 when `udp_csum` is false).
pub fn packet(proto: u8, src: u32, dst: u32, id: u16, mut l4: Vec<u8>, udp_csum: bool) -> Vec<u8> {
    let len = (IPV4_LEN + l4.len()) as u16;
    let ck_at = match proto {
        PROTO_TCP => Some(16),
        PROTO_UDP if udp_csum => Some(6),
        PROTO_ICMP => Some(2),
        _ => None,
    };
    if let Some(at) = ck_at {
        put16(&mut l4, at, 0);
        let mut c = if proto == PROTO_ICMP {
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
        if proto == PROTO_UDP && c == 0 {
            c = 0xffff;
        }
        put16(&mut l4, at, c);
    }
    let mut p = vec![0u8; IPV4_LEN];
    write_ipv4(&mut p, len, 64, proto, src.to_be_bytes(), dst.to_be_bytes());
    put16(&mut p, 6, 0);
    put16(&mut p, 4, id);
    put16(&mut p, 10, 0);
    let c = checksum(&p);
    put16(&mut p, 10, c);
    p.extend_from_slice(&l4);
    p
}

/// A TCP header (20 bytes) with `flags` and then `payload`.
pub fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    put16(&mut t, 0, sport);
    put16(&mut t, 2, dport);
    put32(&mut t, 4, 0x0102_0304);
    t[12] = 5 << 4;
    t[13] = flags;
    put16(&mut t, 14, 65535);
    t.extend_from_slice(payload);
    t
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; UDP_LEN];
    put16(&mut u, 0, sport);
    put16(&mut u, 2, dport);
    put16(&mut u, 4, (UDP_LEN + payload.len()) as u16);
    u.extend_from_slice(payload);
    u
}

/// An ICMP echo request (8) or reply (0).
pub fn echo(kind: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut e = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    put16(&mut e, 4, id);
    put16(&mut e, 6, seq);
    e.extend_from_slice(payload);
    e
}

/// An ICMP error `kind` from `src` to `dst` quoting `quote` (whole or cut).
pub fn icmp_error(kind: u8, src: u32, dst: u32, quote: &[u8]) -> Vec<u8> {
    let mut e = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    e.extend_from_slice(quote);
    packet(PROTO_ICMP, src, dst, 0, e, false)
}

/// Splits an unfragmented packet into a first fragment carrying `first`
/// bytes of its payload (rounded up to 8) and a second with the rest.
pub fn fragment(p: &[u8], first: usize) -> (Vec<u8>, Vec<u8>) {
    let payload = &p[IPV4_LEN..];
    let cut = first.div_ceil(8).max(1) * 8;
    let cut = cut.min(payload.len());
    let mut a = p[..IPV4_LEN + cut].to_vec();
    let n = a.len() as u16;
    put16(&mut a, 2, n);
    put16(&mut a, 6, 0x2000);
    let mut b = p[..IPV4_LEN].to_vec();
    b.extend_from_slice(&payload[cut..]);
    let n = b.len() as u16;
    put16(&mut b, 2, n);
    put16(&mut b, 6, (cut / 8) as u16);
    for f in [&mut a, &mut b] {
        put16(f, 10, 0);
        let c = checksum(&f[..IPV4_LEN]);
        put16(f, 10, c);
    }
    (a, b)
}

/// Joins two fragments made by [`fragment`] (after translation) back into
/// one packet, header from the first.
pub fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut p = a.to_vec();
    p.extend_from_slice(&b[IPV4_LEN..]);
    let n = p.len() as u16;
    put16(&mut p, 2, n);
    put16(&mut p, 6, 0);
    put16(&mut p, 10, 0);
    let c = checksum(&p[..IPV4_LEN]);
    put16(&mut p, 10, c);
    p
}

/// Whether the transport checksum of the whole (unfragmented) packet `p`
/// verifies; a zero UDP checksum is none and verifies.
pub fn l4_ok(p: &[u8]) -> bool {
    let ihl = usize::from(p[0] & 15) * 4;
    let (src, dst, proto) = (&p[12..16], &p[16..20], p[9]);
    let l4 = &p[ihl..];
    match proto {
        PROTO_TCP => csum_fold(csum_add(pseudo4(src, dst, l4.len() as u16, proto), l4)) == 0,
        PROTO_UDP => {
            be16(l4, 6) == 0
                || csum_fold(csum_add(pseudo4(src, dst, l4.len() as u16, proto), l4)) == 0
        }
        PROTO_ICMP => checksum(l4) == 0,
        _ => true,
    }
}

/// Asserts every checksum of the whole packet `p`: IPv4 header, transport,
/// and for an ICMP error with a whole quote, the quoted packet's too.
pub fn assert_checksums(p: &[u8]) {
    assert_eq!(
        checksum(&p[..IPV4_LEN]),
        0,
        "IPv4 header checksum of {p:02x?}"
    );
    assert!(l4_ok(p), "transport checksum of {p:02x?}");
    if p[9] == PROTO_ICMP && super::wire::is_icmp_error(p[IPV4_LEN]) {
        let q = &p[IPV4_LEN + ICMP_LEN..];
        assert_eq!(
            checksum(&q[..IPV4_LEN]),
            0,
            "quoted IPv4 header of {p:02x?}"
        );
        if usize::from(be16(q, 2)) == q.len() {
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
            PROTO_TCP if s.established() => t.tcp_established_ms,
            PROTO_TCP => t.tcp_transitory_ms,
            PROTO_UDP => t.udp_ms,
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

/// Plays `data` on a [`Nat`] and on the [`Model`] and panics where they
/// disagree (see the module documentation).
pub fn run(data: &[u8]) -> Outcome {
    let mut o = Outcome::default();
    let mut b = Bytes(data);
    let Some(first) = b.next() else { return o };
    let max_sessions = 4 + usize::from(first % 37);
    let Some(size) = b.next() else { return o };
    let base = 1000 + u16::from(size >> 4) * 100;
    let range = base..=base + u16::from(size % 8);
    let cfg = NatConfig {
        max_sessions,
        max_fragments: 64,
        timeouts: Timeouts::default(),
    };
    let mut nat = Nat::new(cfg, TPS);
    let mut m = Model {
        timeouts: cfg.timeouts,
        tps: TPS,
        ..Default::default()
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
                let p = packet(PROTO_UDP, src, dst, ip_id, udp(1, 2, &[0; 24]), true);
                let (_, mut later) = fragment(&p, 8);
                assert_eq!(nat.snat_out(1, &mut later, now), Err(R::NatFragmentUnknown));
                let p = packet(
                    PROTO_UDP,
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
        PROTO_TCP => tcp(sport, dport, flags, payload),
        PROTO_UDP => udp(sport, dport, payload),
        _ => echo(kind, sport, 1, payload),
    }
}

/// Ports of a translated packet: (sport, dport), ICMP (id, id).
fn ports(p: &[u8]) -> (u16, u16) {
    if p[9] == PROTO_ICMP {
        (be16(p, IPV4_LEN + 4), be16(p, IPV4_LEN + 4))
    } else {
        (be16(p, IPV4_LEN), be16(p, IPV4_LEN + 2))
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
            assert_eq!(a[12..20], c[12..20], "fragment addresses");
            assert_eq!(
                checksum(&c[..IPV4_LEN]),
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
    let proto = b.pick(&[PROTO_TCP, PROTO_UDP, PROTO_ICMP])?;
    let src = b.pick(&INSIDE)?;
    let sport = b.pick(&IN_PORTS)?;
    let dst = b.pick(&REMOTE)?;
    let dport = if proto == PROTO_ICMP {
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
            let ext = (be32(&q, 12), ports(&q).0);
            assert_eq!(q[16..20], p[16..20], "destination kept");
            if proto != PROTO_ICMP {
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
            if proto == PROTO_TCP {
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
            let proto = b.pick(&[PROTO_TCP, PROTO_UDP, PROTO_ICMP])?;
            let ext = (b.pick(&EXT)?, 1000 + u16::from(b.next()? % 8));
            (proto, ext, (b.pick(&REMOTE)?, b.pick(&REM_PORTS)?))
        }
    };
    let rport = if proto == PROTO_ICMP { 0 } else { remote.1 };
    let sport = if proto == PROTO_ICMP { ext.1 } else { rport };
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
                (be32(&q, 16), ports(&q).1),
                (k.2, k.3),
                "reverse translation of {k:x?}"
            );
            assert_eq!(q[12..16], p[12..16], "source kept");
            if proto == PROTO_TCP {
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
    let rport = if s.proto == PROTO_ICMP { 0 } else { s.remote.1 };
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
        orig.truncate(IPV4_LEN + 8);
    }
    let router_addr = 0xc633_64fe;
    let mut p = icmp_error(kind, router_addr, s.ext.0, &orig);
    let found = m.by_out(s.proto, s.ext, (s.remote.0, rport), now);
    match (found, nat.snat_in(&mut p, now)) {
        (Some((k, _)), Ok(router)) => {
            assert_eq!(router, k.0);
            assert_checksums(&p);
            let q = &p[IPV4_LEN + ICMP_LEN..];
            assert_eq!(be32(&p, 16), k.2, "outer destination");
            assert_eq!((be32(q, 12), ports(q).0), (k.2, k.3), "quoted source");
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
    let rport = if s.proto == PROTO_ICMP { 0 } else { s.remote.1 };
    // The packet that came in, as the inside host got it.
    let kind = if s.proto == PROTO_ICMP { 0 } else { 8 };
    let sport = if s.proto == PROTO_ICMP {
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
            let q = &p[IPV4_LEN + ICMP_LEN..];
            assert_eq!(be32(&p, 12), ms.ext.0, "outer source");
            assert_eq!((be32(q, 16), ports(q).1), ms.ext, "quoted destination");
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

/// The harness of the `nat_icmp` fuzz target (work in progress).
pub fn run_icmp(data: &[u8]) {
    let _ = data;
}
