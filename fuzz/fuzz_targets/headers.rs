//! The pure packet helpers (`dvr::wire`: checksums, flow hash; `dvr::pkt`: `Frame`'s
//! edges), the ARP reply parser and the capture reader on arbitrary bytes;
//! the invariants are `dvr::testkit::check_headers`'s.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dvr::testkit::check_headers(data));
