//! The NAT (`dvr::nat::Nat`) against its reference model: the input is a
//! script of packets (out, back, ICMP errors both ways, fragments, junk),
//! router changes, flushes and time steps; the invariants are
//! `dvr::nat::model::run`'s.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dvr::nat::model::run(data);
});
