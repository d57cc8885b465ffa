//! The whole pipeline on arbitrary frames: the first byte picks the ingress
//! port of the north-south test topology (`dvr::testkit::ns_model` on
//! `ns_node`: VM ports a, b, e, the underlay, the external port, and one index
//! past the last port), the rest is the frame. Never panics;
//! the invariants are `dvr::testkit::check_pipeline`'s.
#![no_main]

use std::sync::{Arc, OnceLock};

use dvr::tables::Snapshot;
use libfuzzer_sys::fuzz_target;

static SNAP: OnceLock<Arc<Snapshot>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let snap = SNAP.get_or_init(|| dvr::testkit::ns_snapshot(&dvr::testkit::ns_model()));
    let Some((&port, frame)) = data.split_first() else {
        return;
    };
    let in_port = u16::from(port) % (snap.ports.len() as u16 + 1);
    let _ = dvr::testkit::check_pipeline(snap, in_port, frame);
});
