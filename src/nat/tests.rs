use super::lookahead::Ahead;
use super::model::*;
use super::*;
use crate::stats::DropReason as R;
use crate::wire::checksum::checksum;
use crate::wire::{be16, be32, get32, icmp4, ipv4, proto, set16};
use std::net::SocketAddrV4;

const IN1: u32 = 0x0a00_0005; // 10.0.0.5
const IN2: u32 = 0x0a00_0006;
const REM: u32 = 0xc633_6401; // 198.51.100.1
const EXT1: u32 = 0xcb00_7101; // 203.0.113.1
const EXT2: u32 = 0xcb00_7102;
const FIP: u32 = 0xcb00_7164;
const TPS: u64 = 1000;
const SYN: u8 = 0x02;
const SYNACK: u8 = 0x12;
const ACK: u8 = 0x10;
const FINACK: u8 = 0x11;
const RSTF: u8 = 0x04;

fn a(x: u32) -> Ipv4Addr {
    x.into()
}

fn nat(max: usize) -> Nat {
    Nat::new(
        NatConfig {
            max_sessions: max,
            ..NatConfig::default()
        },
        TPS,
    )
}

fn tcp_out(src: u32, sport: u16, flags: u8) -> Vec<u8> {
    packet(
        proto::TCP,
        src,
        REM,
        1,
        tcp(sport, 80, flags, b"hello"),
        true,
    )
}

fn tcp_in(ext: (u32, u16), flags: u8) -> Vec<u8> {
    packet(
        proto::TCP,
        REM,
        ext.0,
        2,
        tcp(80, ext.1, flags, b"world!"),
        true,
    )
}

fn src_of(p: &[u8]) -> (u32, u16) {
    (get32(p, ipv4::field::SRC_ADDR), be16(p, ipv4::HEADER_LEN))
}

// --- stateless rewrites -----------------------------------------------------

#[test]
fn fip_rewrites_tcp_udp_icmp_with_checksums() {
    let cases = [
        packet(proto::TCP, IN1, REM, 7, tcp(1234, 80, SYN, b"abc"), true),
        packet(proto::UDP, IN1, REM, 7, udp(1234, 53, b"query"), true),
        packet(proto::UDP, IN1, REM, 7, udp(1234, 53, b"query"), false),
        packet(proto::ICMP, IN1, REM, 7, echo(8, 99, 1, b"ping"), true),
        packet(proto::GRE, IN1, REM, 7, vec![0; 12], true),
    ];
    for p in cases {
        let mut q = p.clone();
        rewrite_src(&mut q, a(FIP)).unwrap();
        assert_eq!(get32(&q, ipv4::field::SRC_ADDR), FIP);
        assert_checksums(&q);
        if q[ipv4::field::PROTOCOL] == proto::UDP && be16(&p, ipv4::HEADER_LEN + 6) == 0 {
            assert_eq!(
                be16(&q, ipv4::HEADER_LEN + 6),
                0,
                "no UDP checksum stays none"
            );
        }
        // And back, as the reply's destination would be.
        rewrite_src(&mut q, a(IN1)).unwrap();
        assert_eq!(q, p);
        let mut r = p.clone();
        rewrite_dst(&mut r, a(EXT2)).unwrap();
        assert_eq!(get32(&r, ipv4::field::DST_ADDR), EXT2);
        assert_checksums(&r);
    }
}

#[test]
fn fip_fragments_adjust_the_transport_checksum_in_the_first_only() {
    let p = packet(proto::UDP, IN1, REM, 7, udp(1234, 53, &[0x5a; 40]), true);
    let (mut f1, mut f2) = fragment(&p, 16);
    let tail = f2[ipv4::HEADER_LEN..].to_vec();
    rewrite_src(&mut f1, a(FIP)).unwrap();
    rewrite_src(&mut f2, a(FIP)).unwrap();
    assert_eq!(
        &f2[ipv4::HEADER_LEN..],
        &tail[..],
        "a later fragment's payload is untouched"
    );
    assert_eq!(checksum(&f2[..ipv4::HEADER_LEN]), 0);
    assert_checksums(&join(&f1, &f2));
}

#[test]
fn fip_translates_icmp_errors_inside_rfc5508() {
    // Inbound: an error about what the VM sent from its floating IP.
    for quote in [
        packet(proto::TCP, FIP, REM, 3, tcp(1234, 80, ACK, b""), true),
        packet(proto::UDP, FIP, REM, 3, udp(1234, 53, b"x"), true),
        packet(proto::ICMP, FIP, REM, 3, echo(8, 5, 1, b""), true),
    ] {
        let mut p = icmp_error(11, REM, FIP, &quote);
        rewrite_dst(&mut p, a(IN1)).unwrap();
        assert_eq!(get32(&p, ipv4::field::DST_ADDR), IN1);
        assert_eq!(
            be32(&p, ipv4::HEADER_LEN + icmp4::HEADER_LEN + 12),
            IN1,
            "quoted source"
        );
        assert_checksums(&p);
        // Cut to 8 bytes of transport: still both IP checksums and the ICMP one.
        let mut p = icmp_error(3, REM, FIP, &quote[..ipv4::HEADER_LEN + 8]);
        rewrite_dst(&mut p, a(IN1)).unwrap();
        assert_checksums(&p);
        assert_eq!(be32(&p, ipv4::HEADER_LEN + icmp4::HEADER_LEN + 12), IN1);
    }
    // Outbound: the VM complains about what it got on its fixed IP.
    let quote = packet(proto::UDP, REM, IN1, 3, udp(53, 1234, b"y"), true);
    let mut p = icmp_error(3, IN1, REM, &quote);
    rewrite_src(&mut p, a(FIP)).unwrap();
    assert_eq!(get32(&p, ipv4::field::SRC_ADDR), FIP);
    assert_eq!(
        be32(&p, ipv4::HEADER_LEN + icmp4::HEADER_LEN + 16),
        FIP,
        "quoted destination"
    );
    assert_checksums(&p);
    // A quote that is not about the address: left alone.
    let quote = packet(proto::UDP, REM, IN2, 3, udp(53, 1234, b"y"), true);
    let mut p = icmp_error(3, IN1, REM, &quote);
    rewrite_src(&mut p, a(FIP)).unwrap();
    assert_eq!(be32(&p, ipv4::HEADER_LEN + icmp4::HEADER_LEN + 16), IN2);
    assert_checksums(&p);
}

#[test]
fn truncated_packets_are_drops_not_panics() {
    let p = packet(proto::TCP, IN1, REM, 7, tcp(1234, 80, SYN, b""), true);
    let mut n = nat(8);
    n.set_router(1, &[a(EXT1)], DEFAULT_PORTS).unwrap();
    for len in 0..p.len() {
        let mut q = p[..len].to_vec();
        if len >= ipv4::HEADER_LEN {
            set16(&mut q, ipv4::field::LENGTH, len as u16);
        }
        assert!(rewrite_src(&mut q.clone(), a(FIP)).is_err() || len >= 40);
        assert!(n.snat_out(1, &mut q.clone(), 1).is_err() || len >= 40);
        let _ = n.snat_in(&mut q, 1);
    }
    let e = icmp_error(3, REM, EXT1, &p[..ipv4::HEADER_LEN + 4]);
    for len in 0..e.len() {
        let _ = rewrite_dst(&mut e[..len].to_vec(), a(IN1));
        let _ = n.snat_in(&mut e[..len].to_vec(), 1);
    }
    assert_eq!(n.len(), 0);
}

// --- PAT ----------------------------------------------------------------------

#[test]
fn tcp_round_trip_and_state_machine() {
    let mut n = nat(16);
    n.set_router(1, &[a(EXT1)], DEFAULT_PORTS).unwrap();
    let mut p = tcp_out(IN1, 1234, SYN);
    n.snat_out(1, &mut p, 1).unwrap();
    assert_checksums(&p);
    let ext = src_of(&p);
    assert_eq!(ext.0, EXT1);
    assert!(DEFAULT_PORTS.contains(&ext.1));
    let view = |n: &Nat| n.sessions(1).next().unwrap().state;
    assert_eq!(view(&n), SessionState::TcpTransitory);
    let mut r = tcp_in(ext, SYNACK);
    assert_eq!(n.snat_in(&mut r, 2), Ok(1));
    assert_checksums(&r);
    assert_eq!(
        (
            get32(&r, ipv4::field::DST_ADDR),
            be16(&r, ipv4::HEADER_LEN + 2)
        ),
        (IN1, 1234)
    );
    assert_eq!(view(&n), SessionState::TcpEstablished);
    // Established: alive after the transitory timeout.
    let t = 2 + 241 * TPS;
    let mut p = tcp_out(IN1, 1234, ACK);
    n.snat_out(1, &mut p, t).unwrap();
    assert_eq!(src_of(&p), ext);
    // FIN both ways: transitory again, gone 240 s later.
    n.snat_out(1, &mut tcp_out(IN1, 1234, FINACK), t).unwrap();
    assert_eq!(view(&n), SessionState::TcpEstablished);
    n.snat_in(&mut tcp_in(ext, FINACK), t).unwrap();
    assert_eq!(view(&n), SessionState::TcpTransitory);
    assert_eq!(
        n.snat_in(&mut tcp_in(ext, ACK), t + 240 * TPS),
        Err(R::NatNoSession)
    );
    assert_eq!(n.len(), 0, "freed by the lookup");
    assert_eq!(n.counters().expired, 1);
}

#[test]
fn live_sessions_are_listed_by_parts_without_the_dead_ones() {
    let mut n = Nat::new(
        NatConfig {
            max_sessions: 8,
            timeouts: Timeouts {
                udp_ms: 250,
                ..Timeouts::default()
            },
            ..NatConfig::default()
        },
        TPS,
    );
    n.set_router(1, &[a(EXT1)], DEFAULT_PORTS).unwrap();
    // Three UDP sessions at t = 0 and a TCP one at t = 200 ms.
    for port in [5000, 5001, 5002] {
        let mut p = packet(proto::UDP, IN1, REM, 1, udp(port, 53, b"q"), true);
        n.snat_out(1, &mut p, 0).unwrap();
    }
    n.snat_out(1, &mut tcp_out(IN2, 4000, SYN), 200).unwrap();
    assert_eq!(n.capacity(), 8);
    let at = |now: u64| {
        // In parts of 3 slots, as a worker scans its table.
        let mut v: Vec<SessionView> = (0..n.capacity())
            .step_by(3)
            .flat_map(|i| n.live_sessions(i..i + 3, now).collect::<Vec<_>>())
            .collect();
        v.sort_by_key(|s| s.inside);
        v
    };
    let v = at(249);
    assert_eq!(v.len(), 4);
    assert_eq!(v[0].inside, SocketAddrV4::new(a(IN1), 5000));
    assert_eq!((v[0].idle_ms, v[0].age_ms), (249, 249));
    assert_eq!(v[0].protocol(), "udp");
    assert_eq!(v[3].protocol(), "tcp");
    assert_eq!(v[3].idle_ms, 49);
    // 250 ms idle: the UDP sessions are dead (still held until swept).
    let v = at(250);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].state, SessionState::TcpTransitory);
    assert_eq!(n.len(), 4);
    assert_eq!(n.sessions(250).count(), 4, "sessions() lists all held");
    assert_eq!(
        n.live_sessions(6..100, 0).count(),
        0,
        "clamped to the table"
    );
}

#[test]
fn rst_makes_a_session_transitory_and_syn_reopens_it() {
    let mut n = nat(16);
    n.set_router(1, &[a(EXT1)], DEFAULT_PORTS).unwrap();
    n.snat_out(1, &mut tcp_out(IN1, 1, SYN), 0).unwrap();
    let ext = n.sessions(0).next().unwrap().outside;
    let ext = (u32::from(*ext.ip()), ext.port());
    n.snat_in(&mut tcp_in(ext, SYNACK), 0).unwrap();
    n.snat_in(&mut tcp_in(ext, RSTF), 0).unwrap();
    assert_eq!(
        n.sessions(0).next().unwrap().state,
        SessionState::TcpTransitory
    );
    n.snat_out(1, &mut tcp_out(IN1, 1, SYN), 1).unwrap();
    n.snat_in(&mut tcp_in(ext, SYNACK), 1).unwrap();
    assert_eq!(
        n.sessions(0).next().unwrap().state,
        SessionState::TcpEstablished
    );
}

#[test]
fn udp_mapping_is_endpoint_independent_and_filtering_is_not() {
    let mut n = nat(16);
    n.set_router(1, &[a(EXT1)], DEFAULT_PORTS).unwrap();
    let mut p1 = packet(proto::UDP, IN1, REM, 1, udp(5000, 53, b"a"), true);
    let mut p2 = packet(proto::UDP, IN1, REM + 1, 1, udp(5000, 123, b"b"), false);
    n.snat_out(1, &mut p1, 0).unwrap();
    n.snat_out(1, &mut p2, 0).unwrap();
    assert_checksums(&p1);
    assert_checksums(&p2);
    assert_eq!(be16(&p2, ipv4::HEADER_LEN + 6), 0);
    assert_eq!(
        src_of(&p1),
        src_of(&p2),
        "same inside endpoint, same mapping"
    );
    let ext = src_of(&p1);
    // A third remote that was never sent to is filtered.
    let mut r = packet(proto::UDP, REM + 2, ext.0, 1, udp(53, ext.1, b"c"), true);
    assert_eq!(n.snat_in(&mut r, 0), Err(R::NatNoSession));
    let mut r = packet(proto::UDP, REM + 1, ext.0, 1, udp(123, ext.1, b"c"), true);
    assert_eq!(n.snat_in(&mut r, 10), Ok(1));
    assert_checksums(&r);
    // Expiry: 300 s idle.
    assert_eq!(n.expire(300 * TPS - 1, 100), 0);
    assert_eq!(n.expire(300 * TPS, 100), 1, "the one not refreshed at 10");
    assert_eq!(n.expire(300 * TPS + 10, 100), 1);
}

#[test]
fn icmp_echo_id_is_translated() {
    let mut n = nat(16);
    n.set_router(1, &[a(EXT1)], 40000..=40000).unwrap();
    let mut p = packet(proto::ICMP, IN1, REM, 1, echo(8, 77, 1, b"ping"), true);
    n.snat_out(1, &mut p, 0).unwrap();
    assert_checksums(&p);
    assert_eq!(be16(&p, ipv4::HEADER_LEN + 4), 40000);
    let mut r = packet(proto::ICMP, REM, EXT1, 1, echo(0, 40000, 1, b"ping"), true);
    assert_eq!(n.snat_in(&mut r, 0), Ok(1));
    assert_checksums(&r);
    assert_eq!(
        (
            get32(&r, ipv4::field::DST_ADDR),
            be16(&r, ipv4::HEADER_LEN + 4)
        ),
        (IN1, 77)
    );
    // 60 s later it is gone.
    let mut r = packet(proto::ICMP, REM, EXT1, 1, echo(0, 40000, 2, b"ping"), true);
    assert_eq!(n.snat_in(&mut r, 60 * TPS), Err(R::NatNoSession));
    // Not a query: unsupported.
    let mut t = packet(proto::ICMP, IN1, REM, 1, echo(13, 1, 1, b""), true);
    assert_eq!(n.snat_out(1, &mut t, 0), Err(R::NatUnsupportedProto));
}

#[test]
fn icmp_errors_about_sessions_are_translated_both_ways() {
    for proto in [proto::TCP, proto::UDP, proto::ICMP] {
        let mut n = nat(16);
        n.set_router(1, &[a(EXT1)], DEFAULT_PORTS).unwrap();
        let l4 = match proto {
            proto::TCP => tcp(1234, 80, SYN, b""),
            proto::UDP => udp(1234, 80, b"q"),
            _ => echo(8, 1234, 1, b""),
        };
        let mut p = packet(proto, IN1, REM, 1, l4, true);
        n.snat_out(1, &mut p, 0).unwrap();
        let ext = (
            get32(&p, ipv4::field::SRC_ADDR),
            be16(
                &p,
                ipv4::HEADER_LEN + if proto == proto::ICMP { 4 } else { 0 },
            ),
        );
        // In: an error quoting what went out (whole and cut to 8 bytes).
        for quote in [&p[..], &p[..ipv4::HEADER_LEN + 8]] {
            let mut e = icmp_error(3, 0xc633_64fe, EXT1, quote);
            assert_eq!(n.snat_in(&mut e, 1), Ok(1), "{proto}");
            assert_checksums(&e);
            let q = &e[ipv4::HEADER_LEN + icmp4::HEADER_LEN..];
            assert_eq!(get32(&e, ipv4::field::DST_ADDR), IN1);
            assert_eq!(get32(q, ipv4::field::SRC_ADDR), IN1);
            let port_at = ipv4::HEADER_LEN + if proto == proto::ICMP { 4 } else { 0 };
            assert_eq!(be16(q, port_at), 1234);
        }
        // Out: the inside host's error about what came in.
        if proto != proto::ICMP {
            let got = packet(
                proto,
                REM,
                IN1,
                1,
                if proto == proto::TCP {
                    tcp(80, 1234, ACK, b"")
                } else {
                    udp(80, 1234, b"r")
                },
                true,
            );
            let mut e = icmp_error(3, IN1, REM, &got);
            n.snat_out(1, &mut e, 1).unwrap();
            assert_checksums(&e);
            let q = &e[ipv4::HEADER_LEN + icmp4::HEADER_LEN..];
            assert_eq!(get32(&e, ipv4::field::SRC_ADDR), ext.0);
            assert_eq!(
                (
                    get32(q, ipv4::field::DST_ADDR),
                    be16(q, ipv4::HEADER_LEN + 2)
                ),
                ext
            );
        }
        // About no session: dropped.
        let stray = packet(proto::UDP, EXT1, REM, 1, udp(9, 9, b""), true);
        let mut e = icmp_error(11, REM, EXT1, &stray);
        assert_eq!(n.snat_in(&mut e, 1), Err(R::NatNoSession));
    }
}

#[test]
fn fragments_follow_their_first() {
    let mut n = nat(16);
    n.set_router(1, &[a(EXT1)], DEFAULT_PORTS).unwrap();
    let p = packet(proto::UDP, IN1, REM, 42, udp(5000, 53, &[7; 60]), true);
    let (mut f1, mut f2) = fragment(&p, 24);
    // The later one first: unknown.
    assert_eq!(
        n.snat_out(1, &mut f2.clone(), 0),
        Err(R::NatFragmentUnknown)
    );
    n.snat_out(1, &mut f1, 0).unwrap();
    n.snat_out(1, &mut f2, 0).unwrap();
    let whole = join(&f1, &f2);
    assert_checksums(&whole);
    let ext = src_of(&whole);
    // Another router's datagram with the same addresses and id is not it.
    assert_eq!(
        n.snat_out(2, &mut fragment(&p, 24).1, 0),
        Err(R::NatFragmentUnknown)
    );
    // Inbound the same, and the fragment entry times out.
    let r = packet(proto::UDP, REM, ext.0, 43, udp(53, ext.1, &[8; 60]), true);
    let (mut g1, mut g2) = fragment(&r, 24);
    let mut g3 = g2.clone();
    assert_eq!(n.snat_in(&mut g1, 1), Ok(1));
    assert_eq!(n.snat_in(&mut g2, 1), Ok(1));
    assert_checksums(&join(&g1, &g2));
    assert_eq!(get32(&g2, ipv4::field::DST_ADDR), IN1);
    assert_eq!(n.snat_in(&mut g3, 1 + 2 * TPS), Err(R::NatFragmentUnknown));
    // A flushed router forgets its fragments.
    let (mut f1, mut f2) = fragment(
        &packet(proto::UDP, IN1, REM, 44, udp(5000, 53, &[7; 60]), true),
        24,
    );
    n.snat_out(1, &mut f1, 5).unwrap();
    n.flush_inside(1, a(IN1));
    assert_eq!(n.snat_out(1, &mut f2, 5), Err(R::NatFragmentUnknown));
}

#[test]
fn exhausted_ports_drop_new_flows_only_and_come_back_after_expiry() {
    let mut n = nat(16);
    n.set_router(1, &[a(EXT1)], 2000..=2001).unwrap();
    let mut exts = Vec::new();
    for port in [1, 2] {
        let mut p = tcp_out(IN1, port, SYN);
        n.snat_out(1, &mut p, 0).unwrap();
        n.snat_in(&mut tcp_in(src_of(&p), SYNACK), 0).unwrap();
        exts.push(src_of(&p));
    }
    assert_ne!(exts[0], exts[1]);
    assert_eq!(
        n.snat_out(1, &mut tcp_out(IN1, 3, SYN), 0),
        Err(R::NatPortsExhausted)
    );
    // UDP has ports of its own.
    n.snat_out(
        1,
        &mut packet(proto::UDP, IN1, REM, 1, udp(3, 53, b""), true),
        0,
    )
    .unwrap();
    // The established ones are untouched.
    for (i, port) in [1u16, 2].into_iter().enumerate() {
        let mut p = tcp_out(IN1, port, ACK);
        n.snat_out(1, &mut p, 10).unwrap();
        assert_eq!(src_of(&p), exts[i]);
    }
    n.check_invariants().unwrap();
    // RST on one: after the transitory timeout and a sweep, its port serves the new flow.
    n.snat_in(&mut tcp_in(exts[0], RSTF), 10).unwrap();
    let later = 10 + 240 * TPS;
    assert_eq!(
        n.snat_out(1, &mut tcp_out(IN1, 3, SYN), later - 1),
        Err(R::NatPortsExhausted)
    );
    // No sweep has run: the refused flow's own sweep frees the dead session.
    let mut p = tcp_out(IN1, 3, SYN);
    n.snat_out(1, &mut p, later).unwrap();
    assert_eq!(src_of(&p), exts[0]);
    assert_eq!(n.counters().expired, 1);
    n.check_invariants().unwrap();
}

#[test]
fn a_full_table_or_pool_frees_dead_sessions_before_refusing() {
    let udp_out = |sport: u16| packet(proto::UDP, IN1, REM, 1, udp(sport, 53, b""), true);
    let dead = 300 * TPS;
    // Two ports: flow 1 made at 0, flow 2 at 10; flow 3 finds both ports
    // taken. Once flow 1 is dead (not swept), flow 3 gets its port; flow 4
    // at the same time finds flow 2 alive and is refused.
    let mut n = nat(16);
    n.set_router(1, &[a(EXT1)], 2000..=2001).unwrap();
    let mut p1 = udp_out(1);
    n.snat_out(1, &mut p1, 0).unwrap();
    n.snat_out(1, &mut udp_out(2), 10).unwrap();
    assert_eq!(
        n.snat_out(1, &mut udp_out(3), dead - 1),
        Err(R::NatPortsExhausted)
    );
    let mut p3 = udp_out(3);
    n.snat_out(1, &mut p3, dead).unwrap();
    assert_eq!(src_of(&p3), src_of(&p1), "flow 1's port");
    assert_eq!(
        n.snat_out(1, &mut udp_out(4), dead),
        Err(R::NatPortsExhausted)
    );
    assert_eq!((n.len(), n.counters().expired), (2, 1));
    n.check_invariants().unwrap();
    // A full table the same way: three slots, the first session dead.
    let mut n = nat(3);
    n.set_router(1, &[a(EXT1)], DEFAULT_PORTS).unwrap();
    for (sport, at) in [(1, 0), (2, 10), (3, 10)] {
        n.snat_out(1, &mut udp_out(sport), at).unwrap();
    }
    assert_eq!(
        n.snat_out(1, &mut udp_out(4), dead - 1),
        Err(R::NatTableFull)
    );
    n.snat_out(1, &mut udp_out(4), dead).unwrap();
    assert_eq!(n.snat_out(1, &mut udp_out(5), dead), Err(R::NatTableFull));
    assert_eq!((n.len(), n.counters().expired), (3, 1));
    n.check_invariants().unwrap();
}

#[test]
fn a_full_table_drops_new_flows_and_keeps_the_others() {
    let mut n = nat(3);
    n.set_router(1, &[a(EXT1)], DEFAULT_PORTS).unwrap();
    for port in 1..=3 {
        n.snat_out(1, &mut tcp_out(IN1, port, SYN), 0).unwrap();
    }
    assert_eq!(
        n.snat_out(1, &mut tcp_out(IN1, 4, SYN), 0),
        Err(R::NatTableFull)
    );
    assert_eq!(n.len(), 3);
    n.snat_out(1, &mut tcp_out(IN1, 2, ACK), 0).unwrap();
    // A dead session is freed by its own lookup, or by a sweep.
    assert_eq!(n.expire(240 * TPS, 3), 3);
    n.snat_out(1, &mut tcp_out(IN1, 4, SYN), 240 * TPS).unwrap();
    assert_eq!(
        n.counters(),
        NatCounters {
            created: 4,
            expired: 3,
            flushed: 0
        }
    );
}

#[test]
fn routers_with_overlapping_inside_addresses_never_collide() {
    let mut n = nat(16);
    // Sharing an address (and so its ports) ...
    n.set_router(1, &[a(EXT1)], 3000..=3009).unwrap();
    n.set_router(2, &[a(EXT1)], 3000..=3009).unwrap();
    let mut p1 = tcp_out(IN1, 1234, SYN);
    let mut p2 = tcp_out(IN1, 1234, SYN);
    n.snat_out(1, &mut p1, 0).unwrap();
    n.snat_out(2, &mut p2, 0).unwrap();
    assert_ne!(src_of(&p1), src_of(&p2));
    assert_eq!(n.snat_in(&mut tcp_in(src_of(&p1), SYNACK), 0), Ok(1));
    assert_eq!(n.snat_in(&mut tcp_in(src_of(&p2), SYNACK), 0), Ok(2));
    // ... with the same range only.
    assert!(matches!(
        n.set_router(3, &[a(EXT1)], 3000..=3010),
        Err(NatConfigError::SharedRange { other: 1 | 2, .. })
    ));
    // Addresses of their own: independent.
    n.set_router(3, &[a(EXT2)], 3000..=3009).unwrap();
    let mut p3 = tcp_out(IN1, 1234, SYN);
    n.snat_out(3, &mut p3, 0).unwrap();
    assert_eq!(src_of(&p3).0, EXT2);
    n.check_invariants().unwrap();
}

#[test]
fn removing_a_router_or_flushing_an_address_frees_its_sessions() {
    let mut n = nat(16);
    n.set_router(1, &[a(EXT1)], 3000..=3001).unwrap();
    n.set_router(2, &[a(EXT2)], DEFAULT_PORTS).unwrap();
    n.snat_out(1, &mut tcp_out(IN1, 1, SYN), 0).unwrap();
    n.snat_out(1, &mut tcp_out(IN2, 1, SYN), 0).unwrap();
    let mut keep = tcp_out(IN1, 1, SYN);
    n.snat_out(2, &mut keep, 0).unwrap();
    assert_eq!(n.flush_inside(1, a(IN1)), 1);
    assert_eq!(
        n.snat_out(1, &mut tcp_out(IN2, 2, SYN), 0),
        Ok(()),
        "the port came back"
    );
    assert_eq!(n.remove_router(1), 2);
    assert_eq!(
        n.snat_out(1, &mut tcp_out(IN1, 1, SYN), 0),
        Err(R::NatNoPool)
    );
    assert_eq!(n.snat_in(&mut tcp_in(src_of(&keep), SYNACK), 0), Ok(2));
    // Changing a router's range flushes it too; the same config does not.
    n.set_router(2, &[a(EXT2)], DEFAULT_PORTS).unwrap();
    assert_eq!(n.len(), 1);
    n.set_router(2, &[a(EXT2)], 5000..=5001).unwrap();
    assert_eq!(n.len(), 0);
    n.check_invariants().unwrap();
    assert_eq!(n.counters().flushed, 4);
}

#[test]
fn many_sessions_fill_and_empty_the_indexes() {
    let mut n = nat(5000);
    n.set_router(1, &[a(EXT1), a(EXT2)], DEFAULT_PORTS).unwrap();
    for i in 0..5000u32 {
        let mut p = packet(
            proto::UDP,
            IN1 + (i % 50),
            REM + i / 50,
            1,
            udp(1000, 53, b""),
            true,
        );
        n.snat_out(1, &mut p, u64::from(i)).unwrap();
    }
    n.check_invariants().unwrap();
    // Every other one refreshed, then the rest swept out in small steps.
    for i in (0..5000u32).step_by(2) {
        let mut p = packet(
            proto::UDP,
            IN1 + (i % 50),
            REM + i / 50,
            1,
            udp(1000, 53, b""),
            true,
        );
        n.snat_out(1, &mut p, 200 * TPS).unwrap();
    }
    let mut freed = 0;
    for _ in 0..100 {
        freed += n.expire(300 * TPS + 5000, 64);
    }
    assert_eq!(freed, 2500);
    n.check_invariants().unwrap();
}

/// `pkts` through `n` as a worker's burst of SNAT frames takes them (in
/// bursts of 32): each one's lookup worked out and prefetched, stage two
/// of the prefetch for each, then each translated by its lookup
/// ([`Nat::snat_out_looked`]; [`Nat::snat_out`] without one).
fn out_burst(n: &mut Nat, router: u32, pkts: &mut [Vec<u8>], now: u64) -> Vec<Result<(), R>> {
    let mut res = Vec::new();
    for pkts in pkts.chunks_mut(32) {
        let looks: Vec<_> = pkts.iter().map(|p| Nat::out_lookup(router, p)).collect();
        for l in looks.iter().flatten() {
            n.prefetch_lookup(l);
        }
        for _ in looks.iter().flatten() {
            n.prefetch_next();
        }
        for (p, l) in pkts.iter_mut().zip(&looks) {
            res.push(match l {
                Some(l) => n.snat_out_looked(p, l, now),
                None => n.snat_out(router, p, now),
            });
        }
    }
    res
}

/// `pkts` through `n` as a worker's burst from the external port takes them
/// (in bursts of 32): stage one of the SNAT's prefetch for each, stage two
/// for each, then each translated ([`Nat::snat_in`]).
fn in_burst(n: &mut Nat, pkts: &mut [Vec<u8>], now: u64) -> Vec<Result<u32, R>> {
    let mut res = Vec::new();
    for pkts in pkts.chunks_mut(32) {
        for p in pkts.iter() {
            n.prefetch_in(p);
        }
        for _ in 0..pkts.len() {
            n.prefetch_next();
        }
        for p in pkts.iter_mut() {
            res.push(n.snat_in(p, now));
        }
    }
    res
}

#[test]
fn bursts_translate_as_packets_one_by_one() {
    // The same packets (new flows, the same again, replies, an ICMP error,
    // junk, a full table) through two instances: one a packet at a time, one
    // in bursts of 40 (two chunks of the prefetching loop).
    let mut one = nat(30);
    let mut many = nat(30);
    for n in [&mut one, &mut many] {
        n.set_router(1, &[a(EXT1), a(EXT2)], DEFAULT_PORTS).unwrap();
    }
    let orig: Vec<Vec<u8>> = (0..60u32)
        .map(|i| match i % 4 {
            0 => tcp_out(IN1 + i % 7, 1000 + (i % 9) as u16, SYN),
            1 => packet(proto::UDP, IN2, REM + i, 1, udp(53, 53, b"q"), true),
            2 => packet(proto::ICMP, IN1, REM, 1, echo(8, i as u16, 1, b""), true),
            _ => vec![0x45; (i % 30) as usize],
        })
        .collect();
    let mut out = orig.clone();
    for _ in 0..2 {
        out = orig.clone();
        let mut a1 = out.clone();
        let r1: Vec<_> = a1.iter_mut().map(|p| one.snat_out(1, p, 5)).collect();
        let r2 = out_burst(&mut many, 1, &mut out, 5);
        assert_eq!(r1, r2);
        assert_eq!(a1, out);
        assert!(r1.iter().any(|r| r.is_ok()) && r1.contains(&Err(R::NatTableFull)));
    }
    let mut back: Vec<Vec<u8>> = out
        .iter()
        .filter(|p| p.len() >= ipv4::HEADER_LEN + 8 && p[0] == 0x45)
        .filter_map(|p| {
            let (ext, port) = src_of(p);
            match p[ipv4::field::PROTOCOL] {
                proto::TCP => Some(tcp_in((ext, port), SYNACK)),
                proto::UDP => Some(packet(
                    proto::UDP,
                    get32(p, ipv4::field::DST_ADDR),
                    ext,
                    3,
                    udp(be16(p, ipv4::HEADER_LEN + 2), port, b"r"),
                    true,
                )),
                _ => None,
            }
        })
        .collect();
    let mut b1 = back.clone();
    let r1: Vec<_> = b1.iter_mut().map(|p| one.snat_in(p, 6)).collect();
    let r2 = in_burst(&mut many, &mut back, 6);
    assert_eq!(r1, r2);
    assert!(r1.contains(&Ok(1)));
    assert_eq!(b1, back);
    one.check_invariants().unwrap();
    many.check_invariants().unwrap();
}

#[test]
fn lookahead_guesses_the_ports_new_flows_get() {
    // Two bursts of new flows over two external addresses and three
    // protocols: stage two of the lookahead guesses, for each new flow in
    // order, the port its binding then gets (the next free ones of its pool,
    // after the burst's earlier new flows).
    let mut n = nat(100);
    n.set_router(1, &[a(EXT1), a(EXT2)], DEFAULT_PORTS).unwrap();
    for round in 0..2u32 {
        let mut pkts: Vec<Vec<u8>> = (0..40u32)
            .map(|i| {
                let src = IN1 + i % 5 + 16 * round;
                let sport = 2000 + i as u16;
                match i % 3 {
                    0 => tcp_out(src, sport, SYN),
                    1 => packet(proto::UDP, src, REM, 1, udp(sport, 53, b"q"), true),
                    _ => packet(proto::ICMP, src, REM, 1, echo(8, sport, 1, b""), true),
                }
            })
            .collect();
        for p in &pkts {
            n.prefetch_out(1, p);
        }
        let guessed: Vec<_> = (0..pkts.len())
            .map(|_| match n.look.pop() {
                Some(Ahead::Out(k, h)) => {
                    assert!(n.by_in.first(h).is_none(), "a new flow");
                    n.next_port(&k)
                }
                _ => panic!("stage one left each packet's key"),
            })
            .collect();
        assert_eq!(n.look.pop().map(|_| ()), None);
        for (p, g) in pkts.iter_mut().zip(guessed) {
            n.snat_out(1, p, 5).unwrap();
            let got = match p[ipv4::field::PROTOCOL] {
                proto::ICMP => (
                    get32(p, ipv4::field::SRC_ADDR),
                    be16(p, ipv4::HEADER_LEN + 4),
                ),
                _ => src_of(p),
            };
            assert_eq!(Some(got), g);
        }
    }
    n.check_invariants().unwrap();
}

#[test]
fn model_smoke() {
    // A fixed script through the harness: a router, flows out and back.
    let mut s = vec![20, 0x13, 0, 0, 1];
    for i in 0..40u8 {
        s.extend_from_slice(&[6 + i % 4, i, i / 3, i / 5, i / 7, i / 2, i, i]);
        s.extend_from_slice(&[10, 0, i, i]);
        s.extend_from_slice(&[12, i, i]);
        s.extend_from_slice(&[4, i]);
    }
    run(&s);
}
