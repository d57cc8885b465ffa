//! The whole pipeline on arbitrary frames: the first byte picks the ingress
//! port of the test topology (`dvr::testkit`: VM ports a, b, e, the underlay,
//! and one index past the last port), the rest is the frame. Never panics;
//! the invariants are `dvr::testkit::check_pipeline`'s.
#![no_main]

use std::sync::{Arc, OnceLock};

use dvr::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

static SNAP: OnceLock<Arc<Snapshot>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let snap = SNAP.get_or_init(|| dvr::testkit::snapshot(&dvr::testkit::model()));
    let Some((&port, frame)) = data.split_first() else {
        return;
    };
    let in_port = u16::from(port) % (snap.ports.len() as u16 + 1);
    let _ = dvr::testkit::check_pipeline(snap, in_port, frame);
});
