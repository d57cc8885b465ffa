//! The ways' finishing steps on a frame other than the one the way read
//! (which the worker never hands over): left unchanged for the whole
//! pipeline, not dropped.

use crate::pipeline::{Disposition, Env};
use crate::pkt::Frame;
use crate::testkit::*;
use std::net::Ipv4Addr;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// `frame` in a buffer with headroom and tailroom, `cut` bytes short.
fn framed(frame: &[u8], cut: usize) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + frame.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
    buf.truncate(HEADROOM + frame.len() - cut + TAILROOM);
    buf
}

#[test]
fn decap_apply_leaves_a_frame_shorter_than_the_way_read() {
    let snap = snapshot(&model());
    // From cn2's DVR MAC to a, on blue (VXLAN 101): the decap way.
    let inner = udp4_min(
        DVR2,
        A_MAC,
        (ip("10.2.0.20"), ip("10.1.0.10")),
        (1024, 9),
        64,
    );
    let frame = vxlan_from_cn2(&inner, 101);
    let mut memo = super::DecapMemo::default();
    let w = super::decap_way(&snap, &mut memo, &frame).expect("the decap way");
    // The frame the way read: decided.
    let mut buf = framed(&frame, 0);
    let mut f = Frame::new(&mut buf, HEADROOM, frame.len()).unwrap();
    assert_eq!(
        super::decap_apply(&w, &mut f),
        Some(Disposition::Forward(VM_A))
    );
    // One byte short: left as it was.
    let short = &frame[..frame.len() - 1];
    let mut buf = framed(&frame, 1);
    let mut f = Frame::new(&mut buf, HEADROOM, short.len()).unwrap();
    assert_eq!(super::decap_apply(&w, &mut f), None);
    assert_eq!(f.data(), short);
}

#[test]
fn snat_apply_leaves_a_frame_shorter_than_the_way_read() {
    let m = ns_model();
    let snap = snat_node_snapshot(&m);
    let blue = iface_mac(&m, "r1", "blue4").0;
    // From a host of blue on cn2 (no floating IP) out by r1's SNAT on nn1.
    let inner = udp4_min(
        DVR2,
        blue,
        (ip("10.1.0.77"), ip("198.51.100.1")),
        (1024, 80),
        64,
    );
    let frame = vxlan_frame(&inner, 101, (CN2_UL_MAC, VTEP2), (NN1_UL_MAC, VTEP3));
    let mut env = Env::small(|| 0, 1_000_000, 40000..=40063);
    env.burst(&snap);
    let w = super::snat_way(&snap, &mut env.snat_memo, &frame).expect("the SNAT way");
    let short = &frame[..frame.len() - 1];
    let mut buf = framed(&frame, 1);
    let mut f = Frame::new(&mut buf, HEADROOM, short.len()).unwrap();
    assert_eq!(super::snat_apply(&mut env, &w, &mut f), None);
    assert_eq!(f.data(), short);
    assert!(env.nat.is_empty(), "no session made");
    // The frame the way read: decided.
    let mut buf = framed(&frame, 0);
    let mut f = Frame::new(&mut buf, HEADROOM, frame.len()).unwrap();
    assert_eq!(
        super::snat_apply(&mut env, &w, &mut f),
        Some(Disposition::Forward(NN1_EXT))
    );
}
