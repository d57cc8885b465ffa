//! The NAT (`dvr::nat::Nat`) against its reference model, on ICMP errors and
//! IP fragments: the input is a script that makes sessions as the `nat`
//! target does, then sends ICMP errors both ways about them and about what
//! is not theirs (cut, with options, about fragments, about ICMP, fragmented
//! themselves, junk) and fragments out of order, repeated, interleaved and
//! expired; the invariants are `dvr::nat::model::run_icmp`'s.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dvr::nat::model::run_icmp(data);
});
