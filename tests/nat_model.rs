//! The NAT against its reference model (`dvr::nat::model`) on many seeded
//! random scripts of packets, configuration changes and time steps: the same
//! checks as the `nat` fuzz target, on every `cargo test`.

use dvr::nat::model::Outcome;
use dvr::testkit::Rng;

#[test]
fn nat_matches_the_model_on_random_scripts() {
    let mut rng = Rng(0x5eed_f4a7);
    let mut o = Outcome::default();
    for _ in 0..800 {
        let len = 16 + (rng.next_u64() % 1500) as usize;
        let script: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        add(&mut o, dvr::nat::model::run(&script));
    }
    println!("{o:?}");
    assert!(
        o.out > 5000 && o.back > 1000 && o.errors > 1000 && o.refused > 1000,
        "{o:?}"
    );
}

/// Scripts heavy in outbound flows and few routers changes: tables and pools
/// fill up, time moves on, ports come back.
#[test]
fn nat_matches_the_model_under_pressure() {
    let mut rng = Rng(0xdead_beef);
    let mut o = Outcome::default();
    for _ in 0..150 {
        // Routers 1 {EXT1}, 2 {EXT1, EXT2}, 3 {EXT3}.
        let mut script = vec![
            rng.next_u64() as u8,
            rng.next_u64() as u8,
            0,
            0,
            1,
            0,
            1,
            3,
            0,
            2,
            4,
        ];
        for _ in 0..300 {
            let op = match rng.next_u64() % 10 {
                0..=4 => 6,
                5 | 6 => 10,
                7 => 12,
                8 => 13,
                _ => 4,
            };
            script.push(op);
            for _ in 0..8 {
                script.push(rng.next_u64() as u8);
            }
        }
        add(&mut o, dvr::nat::model::run(&script));
    }
    println!("{o:?}");
    assert!(
        o.out > 5000 && o.back > 1000 && o.errors > 1000 && o.refused > 1000,
        "{o:?}"
    );
}

fn add(o: &mut Outcome, r: Outcome) {
    o.out += r.out;
    o.back += r.back;
    o.errors += r.errors;
    o.refused += r.refused;
}

/// The seeds of the `nat_icmp` fuzz target (`fuzz/corpus/nat_icmp/`): scripts
/// for `run_icmp` that make a UDP, a TCP and an ICMP session on router 1
/// (external address 203.0.113.1), then do one kind of thing to them each.
fn nat_icmp_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Router 1 on EXT[0]; out: UDP 10.0.0.5:1234 -> REMOTE[0]:80, TCP
    // 10.0.0.6:1235 -> REMOTE[0]:80 (SYN), ICMP echo from 10.0.1.5 id 7 to
    // REMOTE[1]. `sent` then holds them as 0, 1, 2.
    let setup: Vec<u8> = vec![
        20, 0x12, // 24 sessions, ports 1100..=1102
        0, 0, 1, // router 1: EXT[0]
        3, 0, 1, 0, 0, 0, 0, 0, 2, // UDP out
        3, 0, 0, 1, 1, 0, 0, 0, 2, // TCP SYN out
        3, 0, 2, 2, 2, 1, 0, 0, // ICMP echo out
    ];
    let with = |ops: &[&[u8]]| {
        let mut v = setup.clone();
        for op in ops {
            v.extend_from_slice(op);
        }
        v
    };
    vec![
        // From outside, about each session: whole quote, header + 8, header + 4.
        (
            "errors-in",
            with(&[
                &[7, 0, 0, 0, 0],
                &[7, 1, 1, 0, 4],
                &[8, 2, 0, 0, 4],
                &[7, 0, 2, 0, 5],
            ]),
        ),
        // From inside (port unreachable, time exceeded), and one on the
        // wrong router.
        (
            "errors-out",
            with(&[
                &[9, 0, 1, 0, 0, 0],
                &[10, 1, 1, 1, 0, 4],
                &[9, 2, 0, 3, 0, 0],
            ]),
        ),
        // Quotes with IP options, of a first fragment, of a later one,
        // with DF, with a zero UDP checksum, another port, another remote.
        (
            "quote-shapes",
            with(&[
                &[7, 0, 0, 0x01, 0],
                &[7, 1, 0, 0x05, 4],
                &[7, 0, 0, 0x08, 0],
                &[7, 0, 0, 0x10, 0],
                &[9, 1, 1, 0, 0x18, 0],
                &[7, 0, 0, 0x20, 0],
                &[7, 0, 0, 0x40, 0],
                &[9, 0, 1, 0, 0x80, 0],
                &[7, 0, 3, 0, 0],
            ]),
        ),
        // Errors in two fragments, both ways.
        (
            "fragmented-errors",
            with(&[
                &[11, 1, 0, 0, 0, 0],
                &[11, 0, 1, 1, 0, 0, 0],
                &[11, 1, 2, 1, 0, 0],
            ]),
        ),
        // First fragments both ways, later ones in order, repeated, after
        // another datagram's, after a time step; a last one before its first.
        (
            "fragments",
            with(&[
                &[12, 0, 0],
                &[13, 0],
                &[13, 1],
                &[13, 1],
                &[12, 1, 1],
                &[13, 3],
                &[13, 0],
                &[14, 2, 0],
                &[1, 8],
                &[13, 2],
            ]),
        ),
        // Junk in the quote: its protocol, a port, the header length.
        (
            "junk-quotes",
            with(&[
                &[15, 1, 0, 0, 0, 0, 9, 0x07],
                &[15, 1, 1, 0, 0, 0, 20, 0x01],
                &[15, 0, 0, 1, 0, 0, 0, 0, 0x02],
                &[15, 1, 2, 0, 0, 0, 24, 0x80],
            ]),
        ),
        // Errors after the sessions expired (ICMP after 60 s, UDP after 300 s).
        (
            "errors-after-expiry",
            with(&[
                &[1, 11],
                &[7, 2, 0, 0, 0],
                &[7, 0, 0, 0, 0],
                &[1, 13],
                &[7, 0, 0, 0, 0],
            ]),
        ),
    ]
}

#[test]
fn nat_icmp_seeds_reach_their_cases() {
    let mut o = Outcome::default();
    for (name, s) in nat_icmp_seeds() {
        let r = dvr::nat::model::run_icmp(&s);
        println!("{name}: {r:?}");
        assert_eq!(r.out, 3, "{name}: the three sessions");
        add(&mut o, r);
    }
    assert!(o.errors >= 12 && o.back >= 3, "{o:?}");
}

/// `run_icmp` on seeded random scripts, as the `nat_icmp` fuzz target runs
/// it: ICMP errors and fragments against the model on every `cargo test`.
#[test]
fn nat_icmp_matches_the_model_on_random_scripts() {
    let mut rng = Rng(0x1c3f_7a91);
    let mut o = Outcome::default();
    let seeds = nat_icmp_seeds();
    for i in 0..600 {
        // Half of them the seeds' sessions then random, half random.
        let mut script = if i % 2 == 0 {
            seeds[0].1[..31].to_vec()
        } else {
            Vec::new()
        };
        let len = 16 + (rng.next_u64() % 1000) as usize;
        script.extend((0..len).map(|_| rng.next_u64() as u8));
        add(&mut o, dvr::nat::model::run_icmp(&script));
    }
    println!("{o:?}");
    assert!(o.out > 500 && o.errors > 500 && o.back > 100, "{o:?}");
}

/// Writes the `nat_icmp` seeds: `cargo test --test nat_model -- --ignored
/// write_nat_icmp_corpus`.
#[test]
#[ignore]
fn write_nat_icmp_corpus() {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/nat_icmp");
    std::fs::create_dir_all(&d).unwrap();
    for (name, s) in nat_icmp_seeds() {
        std::fs::write(d.join(name), s).unwrap();
    }
}
