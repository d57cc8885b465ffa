//! The NAT against its reference model (`dvr::nat::model`) on many seeded
//! random scripts of packets, configuration changes and time steps: the same
//! checks as the `nat` fuzz target, on every `cargo test`.

use dvr::nat::model::Outcome;

/// xorshift64*: the scripts are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn nat_matches_the_model_on_random_scripts() {
    let mut rng = Rng(0x5eed_f4a7);
    let mut o = Outcome::default();
    for _ in 0..800 {
        let len = 16 + (rng.next() % 1500) as usize;
        let script: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
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
            rng.next() as u8,
            rng.next() as u8,
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
            let op = match rng.next() % 10 {
                0..=4 => 6,
                5 | 6 => 10,
                7 => 12,
                8 => 13,
                _ => 4,
            };
            script.push(op);
            for _ in 0..8 {
                script.push(rng.next() as u8);
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
