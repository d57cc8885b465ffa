//! Golden tests of the metadata proxy's interception (docs/BEHAVIOUR.md
//! section 6): which frames of a VM port the pipeline hands to the proxy
//! (TCP to 169.254.169.254:80 from a subnet a router interface serves, only
//! with the proxy running), and what the worker hands it with them.
//!
//! Without the proxy (no `[metadata]`), the address is link-local as any
//! other: never routed.
//!
//! The node is the golden tests' `cn1`: port `a` (10.1.0.10 on `blue`,
//! 10.1.0.0/24, gateway 10.1.0.1 on router `r1`) on VM port `vm-a`.

use std::net::Ipv4Addr;

use dvr::compile::Compiler;
use dvr::mac::MacAddr;
use dvr::model::Model;
use dvr::pipeline::{self, Disposition as D, Env, MetadataNote, NoTrace, Notes, PuntKind};
use dvr::pkt::Frame;
use dvr::punt::{Exchange, SEGMENT_MAX};
use dvr::stats::DropReason as R;
use dvr::tables::Snapshot;
use etherparse::PacketBuilder;
use serde_json::json;
use std::sync::Arc;

use dvr::testkit::*;

const SERVICE: [u8; 4] = [169, 254, 169, 254];
const A_IP: [u8; 4] = [10, 1, 0, 10];

fn gw_mac() -> [u8; 6] {
    iface_mac(&model(), "r1", "blue4").0
}

/// A TCP SYN from port `a` to `dst`:`port`, through its gateway.
fn syn(dst: [u8; 4], port: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(A_MAC, gw_mac())
        .ipv4(A_IP, dst, 64)
        .tcp(40000, port, 1, 64240)
        .syn();
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

fn snapshot(m: &Model) -> Arc<Snapshot> {
    let mut c = Compiler::new(m, node());
    c.set_vtep_mac(Ipv4Addr::from(VTEP2), MacAddr(CN2_UL_MAC))
        .unwrap_or_else(|| c.current().clone())
}

/// The frame through the pipeline from `vm-a` (twice: a second time
/// through the flow cache, and traced), with the proxy running if `on`:
/// the disposition and the note handed with a punt.
fn run(m: &Model, on: bool, frame: &[u8]) -> (D, Option<MetadataNote>) {
    let snap = snapshot(m);
    let mut env = Env::new(|| 0, 1_000_000);
    env.metadata = on;
    let mut once = |t: bool| {
        let mut buf = vec![0u8; 128 + frame.len() + 512];
        buf[128..128 + frame.len()].copy_from_slice(frame);
        let mut f = Frame::new(&mut buf, 128, frame.len()).unwrap();
        let d = if t {
            let mut notes = Notes::default();
            pipeline::process(&snap, &mut env, VM_A, &mut f, &mut notes)
        } else {
            pipeline::process(&snap, &mut env, VM_A, &mut f, &mut NoTrace)
        };
        (d, env.metadata_note.take())
    };
    let first = once(false);
    assert_eq!(once(false), first, "the flow cache decides the same");
    assert_eq!(once(true), first, "the trace decides the same");
    first
}

fn index_of(snap: &Snapshot, net: &str, router: &str) -> (u32, u32) {
    let n = (0..64u32)
        .find(|&i| snap.net(i).is_some_and(|n| n.name == net))
        .unwrap();
    let r = (0..64u32)
        .find(|&i| {
            snap.routers
                .get(i as usize)
                .is_some_and(|r| r.name == router)
        })
        .unwrap();
    (n, r)
}

#[test]
fn tcp_to_the_service_port_80_goes_to_the_proxy_with_where_it_came_from() {
    let m = model();
    let (d, note) = run(&m, true, &syn(SERVICE, 80));
    assert_eq!(d, D::Punt(PuntKind::Metadata));
    let (net, router) = index_of(&snapshot(&m), "blue", "r1");
    assert_eq!(
        note,
        Some(MetadataNote {
            port: VM_A,
            net,
            router,
            gw_mac: MacAddr(gw_mac()),
        })
    );
    assert_eq!(
        PuntKind::Metadata.counter(),
        R::MetadataConsumed,
        "counted as taken, not forwarded"
    );
}

#[test]
fn without_the_proxy_the_service_address_is_routed_as_any_other() {
    let m = model();
    let (off, note) = run(&m, false, &syn(SERVICE, 80));
    assert_eq!(note, None);
    // A link-local address is never routed: the VM's connection times out.
    assert_eq!(off, D::Drop(R::MartianDestination));
    let (other, _) = run(&m, false, &syn([169, 254, 1, 1], 80));
    assert_eq!(off, other);
}

#[test]
fn other_ports_protocols_and_fragments_are_not_intercepted() {
    let m = model();
    let (routed, _) = run(&m, false, &syn(SERVICE, 443));
    // Port 443: routed as without the proxy.
    assert_eq!(run(&m, true, &syn(SERVICE, 443)), (routed, None));
    // UDP to port 80.
    let mut udp = Vec::new();
    PacketBuilder::ethernet2(A_MAC, gw_mac())
        .ipv4(A_IP, SERVICE, 64)
        .udp(40000, 80)
        .write(&mut udp, b"x")
        .unwrap();
    let (d, note) = run(&m, true, &udp);
    assert_ne!(d, D::Punt(PuntKind::Metadata));
    assert_eq!(note, None);
    // A non-first fragment whose bytes look like TCP to port 80.
    let mut frag = syn(SERVICE, 80);
    frag[14 + 6] = 0x00;
    frag[14 + 7] = 0x10;
    frag[14 + 10] = 0;
    frag[14 + 11] = 0;
    let c = dvr::wire::checksum::checksum(&frag[14..34]);
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    let (d, _) = run(&m, true, &frag);
    assert_ne!(d, D::Punt(PuntKind::Metadata));
}

#[test]
fn a_vm_whose_subnet_has_no_router_interface_is_not_intercepted() {
    let mut m = model();
    m.apply(&changes(json!([
        {"op": "router_remove_subnet", "router": "r1", "subnet": "blue4"},
    ])))
    .unwrap();
    let (d, note) = run(&m, true, &syn(SERVICE, 80));
    assert_ne!(d, D::Punt(PuntKind::Metadata));
    assert_eq!(note, None);
}

/// Sent to another port's MAC (port `c` of `blue`, on cn2: a tenant's own
/// router VM, say), not to the router interface: switched to it as without
/// the proxy, as Neutron's proxy in the router's namespace never sees it.
#[test]
fn not_sent_to_the_gateway_mac_is_switched() {
    let m = model();
    let mut f = syn(SERVICE, 80);
    f[..6].copy_from_slice(&C_MAC);
    let (off, _) = run(&m, false, &f);
    assert!(matches!(off, D::Forward(_)), "{off:?}");
    assert_eq!(run(&m, true, &f), (off, None));
}

/// The worker's side: the frame is copied into the proxy's queue with its
/// note; a full queue, a frame larger than a slot, or no proxy: dropped,
/// each under its reason.
#[test]
fn the_worker_hands_the_frame_over_or_counts_why_not() {
    let note = MetadataNote {
        port: 3,
        net: 7,
        router: 2,
        gw_mac: MacAddr(gw_mac()),
    };
    let f = syn(SERVICE, 80);
    let x = Exchange::with_metadata();
    assert_eq!(x.punt_metadata(Some(note), &f), D::Punt(PuntKind::Metadata));
    let q = x.metadata.as_ref().unwrap();
    let s = q.from_vms.pop().unwrap();
    assert_eq!(
        (s.port, s.net, s.router, s.gw_mac, s.frame()),
        (3, 7, 2, note.gw_mac, &f[..])
    );
    let big = vec![0u8; SEGMENT_MAX + 1];
    assert_eq!(
        x.punt_metadata(Some(note), &big),
        D::Drop(R::MetadataOversize)
    );
    while q.from_vms.push(s).is_ok() {}
    assert_eq!(
        x.punt_metadata(Some(note), &f),
        D::Drop(R::MetadataQueueFull)
    );
    assert_eq!(
        Exchange::default().punt_metadata(Some(note), &f),
        D::Drop(R::Dangling)
    );
}
