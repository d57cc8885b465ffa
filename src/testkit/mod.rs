//! The test topology shared by the golden tests, the fuzz targets and the
//! routed benchmarks: node `cn1` (VTEP 192.0.2.1) and another host `cn2`
//! (VTEP 192.0.2.2); one distributed router `r1` joining `blue` (VXLAN 101:
//! 10.1.0.0/24, 2001:db8:1::/64), `red` (GRE key 202: 10.2.0.0/24,
//! 2001:db8:2::/64) and `green` (VLAN 303, MTU 1500: 10.3.0.0/24,
//! 2001:db8:3::/64). Ports a (blue), b (red) and e (green) are on cn1; c (blue),
//! d (red) and f (green) on cn2. Port a has the allowed pair 10.1.99.0/24 with
//! its own MAC; a and c share the VIP 10.1.0.100 / 2001:db8:1::100 (exact
//! pairs, their own MACs).
//!
//! Also the invariants the fuzz targets (`fuzz/`) and the random-frame test
//! (`tests/pipeline_random.rs`) check on any input: [`check_pipeline`] and
//! [`check_headers`].

mod burst;
mod frames;

pub use burst::{MemBurst, MemPkt};
pub use frames::*;

use serde_json::{json, Value};

use crate::config::PortRole;
use crate::mac::MacAddr;
use crate::model::{Change, Model};
use crate::tables::{DpPort, NodePorts};

pub const UL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
pub const CN2_UL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const DVR1: [u8; 6] = [0xfa, 0x16, 0x3f, 0, 0, 1];
pub const DVR2: [u8; 6] = [0xfa, 0x16, 0x3f, 0, 0, 2];
pub const VTEP1: [u8; 4] = [192, 0, 2, 1];
pub const VTEP2: [u8; 4] = [192, 0, 2, 2];

pub const A_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0a];
pub const B_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0b];
pub const C_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0c];
pub const D_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0d];
pub const E_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0e];
pub const F_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0f];
pub const PAIR_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x99];

// Dataplane port indexes of cn1.
pub const VM_A: u16 = 0;
pub const VM_B: u16 = 1;
pub const VM_E: u16 = 2;
pub const UP: u16 = 3;

pub fn changes(v: Value) -> Vec<Change> {
    serde_json::from_value(v).expect("valid changes")
}

pub fn port(
    name: &str,
    net: &str,
    mac: [u8; 6],
    host: &str,
    binding: Option<&str>,
    ips: &[(&str, &str)],
) -> Value {
    json!({"op": "port_create", "name": name, "network": net, "mac": MacAddr(mac).to_string(),
        "host": host, "binding": binding,
        "fixed_ips": ips.iter().map(|(s, ip)| json!({"subnet": s, "ip": ip})).collect::<Vec<_>>()})
}

pub fn model() -> Model {
    let mut m = Model::default();
    m.apply(&changes(json!([
        {"op": "host_set", "name": "cn1", "agent_mode": "dvr", "vtep": "192.0.2.1", "dvr_mac": MacAddr(DVR1).to_string()},
        {"op": "host_set", "name": "cn2", "agent_mode": "dvr", "vtep": "192.0.2.2", "dvr_mac": MacAddr(DVR2).to_string()},
        {"op": "network_create", "name": "blue", "network_type": "vxlan", "segment": 101},
        {"op": "network_create", "name": "red", "network_type": "gre", "segment": 202},
        {"op": "network_create", "name": "green", "network_type": "vlan", "segment": 303, "mtu": 1500},
        {"op": "subnet_create", "name": "blue4", "network": "blue", "cidr": "10.1.0.0/24"},
        {"op": "subnet_create", "name": "blue6", "network": "blue", "cidr": "2001:db8:1::/64"},
        {"op": "subnet_create", "name": "red4", "network": "red", "cidr": "10.2.0.0/24"},
        {"op": "subnet_create", "name": "red6", "network": "red", "cidr": "2001:db8:2::/64"},
        {"op": "subnet_create", "name": "green4", "network": "green", "cidr": "10.3.0.0/24"},
        {"op": "subnet_create", "name": "green6", "network": "green", "cidr": "2001:db8:3::/64"},
        {"op": "router_create", "name": "r1"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "blue4"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "blue6"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "red4"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "red6"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "green4"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "green6"},
        port("a", "blue", A_MAC, "cn1", Some("vm-a"), &[("blue4", "10.1.0.10"), ("blue6", "2001:db8:1::10")]),
        port("b", "red", B_MAC, "cn1", Some("vm-b"), &[("red4", "10.2.0.10"), ("red6", "2001:db8:2::10")]),
        port("c", "blue", C_MAC, "cn2", Some("vm-a"), &[("blue4", "10.1.0.20")]),
        port("d", "red", D_MAC, "cn2", Some("vm-b"), &[("red4", "10.2.0.20"), ("red6", "2001:db8:2::20")]),
        port("e", "green", E_MAC, "cn1", Some("vm-e"), &[("green4", "10.3.0.10"), ("green6", "2001:db8:3::10")]),
        port("f", "green", F_MAC, "cn2", Some("vm-c"), &[("green4", "10.3.0.20")]),
        {"op": "port_set", "name": "a", "allowed_address_pairs": [{"ip": "10.1.99.0/24", "mac": MacAddr(PAIR_MAC).to_string()}]},
        {"op": "port_set", "name": "a", "allowed_address_pairs": [{"ip": "10.1.0.100/32"}, {"ip": "2001:db8:1::100/128"}]},
        {"op": "port_set", "name": "c", "allowed_address_pairs": [{"ip": "10.1.0.100/32"}, {"ip": "2001:db8:1::100/128"}]},
    ])))
    .expect("the test topology is valid");
    m
}

pub fn node() -> NodePorts {
    let dp = |name: &str, role, mac: [u8; 6]| DpPort {
        name: name.into(),
        role,
        mac: MacAddr(mac),
    };
    NodePorts {
        node: "cn1".into(),
        ports: vec![
            dp("vm-a", PortRole::Vm, [0; 6]),
            dp("vm-b", PortRole::Vm, [0; 6]),
            dp("vm-e", PortRole::Vm, [0; 6]),
            dp("up", PortRole::Underlay, UL_MAC),
        ],
        static_fdb: vec![],
        vtep: None,
        dvr_mac: None,
        vtep_macs: vec![],
    }
}

/// The snapshot of [`model`] on [`node`] with cn2's VTEP resolved (its
/// underlay MAC is [`CN2_UL_MAC`]).
pub fn snapshot(m: &Model) -> std::sync::Arc<crate::tables::Snapshot> {
    let mut c = crate::compile::Compiler::new(m, node());
    c.set_vtep_mac(std::net::Ipv4Addr::from(VTEP2), MacAddr(CN2_UL_MAC))
        .expect("a new VTEP MAC publishes")
}

pub const UPSTREAM_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// cn1's FIP gateway port MAC (203.0.113.11).
pub const FG1: [u8; 6] = [0xfa, 0x16, 0x3e, 0xf0, 0, 1];
pub const DVR3: [u8; 6] = [0xfa, 0x16, 0x3f, 0, 0, 3];
pub const NN1_UL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
pub const VTEP3: [u8; 4] = [192, 0, 2, 3];
/// cn1's external port in [`ns_node`].
pub const EXT: u16 = 4;

/// [`model`] with north-south: an external network `ext` (203.0.113.0/24,
/// upstream router 203.0.113.1), r1's external gateway on it with its SNAT on
/// `nn1` (`dvr_snat`, VTEP 192.0.2.3), floating IPs 203.0.113.50 for port a (on
/// cn1) and 203.0.113.51 for port c (on cn2), cn1's FIP gateway port
/// 203.0.113.11 ([`FG1`]).
pub fn ns_model() -> Model {
    let mut m = model();
    m.apply(&changes(json!([
        {"op": "host_set", "name": "cn1", "agent_mode": "dvr", "vtep": "192.0.2.1",
         "dvr_mac": MacAddr(DVR1).to_string(),
         "fip_gateway": {"ip": "203.0.113.11", "mac": MacAddr(FG1).to_string()}},
        {"op": "host_set", "name": "nn1", "agent_mode": "dvr_snat", "vtep": "192.0.2.3",
         "dvr_mac": MacAddr(DVR3).to_string()},
        {"op": "network_create", "name": "ext", "network_type": "flat", "external": true},
        {"op": "subnet_create", "name": "ext4", "network": "ext", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1"},
        {"op": "router_set", "name": "r1", "external_gateway": {"network": "ext"}, "snat_host": "nn1"},
        {"op": "floating_ip_create", "network": "ext", "address": "203.0.113.50", "port": "a"},
        {"op": "floating_ip_create", "network": "ext", "address": "203.0.113.51", "port": "c"},
    ])))
    .expect("the north-south topology is valid");
    m
}

/// The MAC of port `g` of [`ns_model_pmtu`].
pub const G_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x10];

/// [`ns_model`] with the external network's MTU lowered to 1400 (below
/// blue's overlay MTU, 1450) and a port `g` (10.1.0.30 on blue, on cn2, no
/// floating IP: it goes out by SNAT on nn1): a packet from g can fit the
/// overlay to nn1 and not the outside, and nn1 then answers fragmentation
/// needed back over the overlay. The `icmp` fuzz target's model of nn1.
pub fn ns_model_pmtu() -> Model {
    let mut m = ns_model();
    m.apply(&changes(json!([
        {"op": "network_set", "name": "ext", "mtu": 1400},
        port("g", "blue", G_MAC, "cn2", Some("vm-g"), &[("blue4", "10.1.0.30")]),
    ])))
    .expect("a valid change of the north-south topology");
    m
}

/// [`node`] with an external port (index [`EXT`]).
pub fn ns_node() -> NodePorts {
    let mut n = node();
    n.ports.push(DpPort {
        name: "ext".into(),
        role: PortRole::External,
        mac: MacAddr([0x02, 0, 0, 0, 0, 0xee]),
    });
    n
}

/// The snapshot of `m` on [`ns_node`] with cn2's and nn1's VTEPs and the
/// upstream router resolved.
pub fn ns_snapshot(m: &Model) -> std::sync::Arc<crate::tables::Snapshot> {
    resolved(m, ns_node(), [(VTEP2, CN2_UL_MAC), (VTEP3, NN1_UL_MAC)])
}

/// The snapshot of `m` on `ports` with the two VTEPs `vteps` (address, MAC)
/// and the upstream router 203.0.113.1 resolved.
fn resolved(
    m: &Model,
    ports: NodePorts,
    vteps: [([u8; 4], [u8; 6]); 2],
) -> std::sync::Arc<crate::tables::Snapshot> {
    use std::net::Ipv4Addr;
    let mut c = crate::compile::Compiler::new(m, ports);
    for (ip, mac) in vteps {
        c.set_vtep_mac(Ipv4Addr::from(ip), MacAddr(mac));
    }
    c.set_vtep_mac(Ipv4Addr::new(203, 0, 113, 1), MacAddr(UPSTREAM_MAC))
        .expect("a new neighbour publishes")
}

/// The ports of [`snat_node_snapshot`]: its underlay and external ports.
pub const NN1_UP: u16 = 0;
pub const NN1_EXT: u16 = 1;

/// The ports of `nn1` ([`snat_node_snapshot`]).
pub fn snat_node_ports() -> NodePorts {
    let port = |name: &str, role, mac| DpPort {
        name: name.into(),
        role,
        mac: MacAddr(mac),
    };
    NodePorts {
        node: "nn1".into(),
        ports: vec![
            port("up", PortRole::Underlay, NN1_UL_MAC),
            port("ext", PortRole::External, [0x02, 0, 0, 0, 0, 0xef]),
        ],
        static_fdb: vec![],
        vtep: None,
        dvr_mac: None,
        vtep_macs: vec![],
    }
}

/// The snapshot of `m` ([`ns_model`]) on `nn1`, the `dvr_snat` node holding
/// r1's SNAT: an underlay port ([`NN1_UP`]) and an external port
/// ([`NN1_EXT`]); cn1's and cn2's VTEPs and the upstream router resolved.
pub fn snat_node_snapshot(m: &Model) -> std::sync::Arc<crate::tables::Snapshot> {
    resolved(m, snat_node_ports(), [(VTEP1, UL_MAC), (VTEP2, CN2_UL_MAC)])
}

/// The MAC of router `router`'s interface on subnet `subnet` of `m`.
///
/// # Panics
/// When the router has no interface there (a test's own topology is wrong).
pub fn iface_mac(m: &Model, router: &str, subnet: &str) -> crate::mac::MacAddr {
    m.routers[router]
        .interfaces
        .iter()
        .find(|i| i.subnet == subnet)
        .unwrap_or_else(|| panic!("{router} has no interface on {subnet}"))
        .mac
}

/// Recomputes the IPv4 header checksum at `at` (if an IPv4 header is
/// there), so that a changed or mutated frame gets past the checksum check
/// to the stages behind it.
pub fn fix_ipv4(f: &mut [u8], at: usize) {
    let Some(&vihl) = f.get(at) else { return };
    let ihl = (vihl & 0x0f) as usize * 4;
    if vihl >> 4 != 4 || ihl < 20 || f.len() < at + ihl {
        return;
    }
    let ck = &crate::wire::ipv4::field::CHECKSUM;
    let ck = at + ck.start..at + ck.end;
    f[ck.clone()].fill(0);
    let c = crate::wire::checksum::checksum(&f[at..at + ihl]);
    f[ck].copy_from_slice(&c.to_be_bytes());
}

/// Headroom and tailroom of the buffers [`check_pipeline`] runs frames in.
pub const HEADROOM: usize = 128;
pub const TAILROOM: usize = 128;

/// The most a frame may grow on its way through the pipeline when it is
/// forwarded: the largest encapsulation (VXLAN: 50 bytes) with room to spare.
pub const MAX_GROWTH: usize = 54;
/// The length of a neighbour advertisement the ND responder writes.
pub const ND_ADVERT_LEN: usize =
    crate::wire::ethernet::HEADER_LEN + crate::wire::ipv6::HEADER_LEN + 32;

/// The most bytes of a router advertisement or a DHCPv6 reply the pipeline
/// writes over a guest's solicitation or client message (at most
/// [`MAX_RA_PREFIXES`](crate::compile::MAX_RA_PREFIXES) prefixes, five DNS
/// servers, a DUID of 130 bytes, four leases).
pub const CONFIG_REPLY_MAX: usize = 512;

/// Whether `out` is a router advertisement or a DHCPv6 server message.
fn ipv6_config_reply(out: &[u8]) -> bool {
    use crate::wire::{be16, ethernet, ipv6, proto};
    const L4: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN;
    out.len() >= L4 + 8
        && be16(out, ethernet::field::ETHERTYPE.start) == ethernet::ETHERTYPE_IPV6
        && match out[ethernet::HEADER_LEN + ipv6::field::NEXT_HEADER] {
            proto::ICMPV6 => out[L4] == 134,
            proto::UDP => be16(out, L4) == 547,
            _ => false,
        }
}

/// One run of `frame` in on `in_port`: its disposition and the frame that
/// leaves (empty on a drop or a punt).
pub type Run = (crate::pipeline::Disposition, Vec<u8>);

fn run_one<T: crate::pipeline::Trace>(
    snap: &crate::tables::Snapshot,
    in_port: u16,
    frame: &[u8],
    t: &mut T,
) -> Run {
    // A clock that never moves and a full token bucket: each run starts alike.
    let mut env = crate::pipeline::Env::new(|| 0, 1_000_000);
    run_in(&mut env, snap, in_port, frame, t)
}

/// One run of `frame` in on `in_port` in a fresh worker environment, with
/// no check: for the `icmp` fuzz target, which checks the ICMP errors that
/// come out its own way. Its SNAT translates to 64 ports (40000-40063):
/// quicker to set up than the whole range.
pub fn run_frame(snap: &crate::tables::Snapshot, in_port: u16, frame: &[u8]) -> Run {
    let mut env = crate::pipeline::Env::small(|| 0, 1_000_000, 40000..=40063);
    run_in(
        &mut env,
        snap,
        in_port,
        frame,
        &mut crate::pipeline::NoTrace,
    )
}

/// Runs `frame` once more in `env`, as a worker runs the next frame of a flow.
fn run_in<T: crate::pipeline::Trace>(
    env: &mut crate::pipeline::Env,
    snap: &crate::tables::Snapshot,
    in_port: u16,
    frame: &[u8],
    t: &mut T,
) -> Run {
    let mut buf = buffer(frame);
    let mut f = crate::pkt::Frame::new(&mut buf, HEADROOM, frame.len()).expect("fits");
    env.burst(snap);
    // The workers' SNAT prefetch reads any frame too.
    let ing = crate::pipeline::ingress(snap, in_port);
    crate::fastpath::prefetch_nat(snap, env, ing, frame);
    crate::fastpath::prefetch_nat_next(env);
    let v = crate::pipeline::process(snap, env, in_port, &mut f, t);
    outcome(v, &f)
}

/// `frame` in a buffer laid out as in an mbuf: headroom, frame, tailroom.
fn buffer(frame: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + frame.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
    buf
}

/// The [`Run`] of a frame decided `v`, as `f` then is.
fn outcome(v: crate::pipeline::Disposition, f: &crate::pkt::Frame) -> Run {
    use crate::pipeline::Disposition as D;
    let out = match v {
        D::Forward(_) | D::Answered { .. } | D::Flood { .. } => f.data().to_vec(),
        D::Punt(_) | D::Drop(_) => Vec::new(),
    };
    (v, out)
}

/// Runs `frame` in on `in_port` the way a worker decides a frame of a VM
/// port's burst: its flow key and set worked out ahead, then
/// [`crate::fastpath::fast`] on its bytes, and the whole pipeline when that
/// cannot decide.
fn run_fast(
    env: &mut crate::pipeline::Env,
    snap: &crate::tables::Snapshot,
    in_port: u16,
    frame: &[u8],
) -> Run {
    use crate::fastpath::fast;
    use crate::fastpath::flow::FlowCache;
    use crate::pipeline::{ingress, Ingress, NoTrace};
    let Ingress::Vm(vm, _) = ingress(snap, in_port) else {
        return run_in(env, snap, in_port, frame, &mut NoTrace);
    };
    let Some(k) = FlowCache::key(vm.index, frame) else {
        return run_in(env, snap, in_port, frame, &mut NoTrace);
    };
    let set = env.flows.set_of(&k);
    env.burst(snap);
    let mut buf = buffer(frame);
    let mut f = crate::pkt::Frame::new(&mut buf, HEADROOM, frame.len()).expect("fits");
    match fast(snap, env, &k, set, &mut f) {
        Some(d) => outcome(d, &f),
        None => {
            assert_eq!(f.data(), frame, "the fast way wrote a frame it left");
            run_in(env, snap, in_port, frame, &mut NoTrace)
        }
    }
}

/// Runs `frame` in on `in_port` the way a worker decides a frame of an
/// underlay port's burst on a node with SNAT here: its SNAT way worked out
/// and its lookup prefetched ahead ([`crate::fastpath::snat_way`]), then
/// finished that way, or the whole pipeline when there is none. Also gives
/// whether it took the SNAT way.
pub fn run_snat_way(
    env: &mut crate::pipeline::Env,
    snap: &crate::tables::Snapshot,
    in_port: u16,
    frame: &[u8],
) -> (Run, bool) {
    use crate::fastpath::{snat_apply, snat_way};
    run_way(
        env,
        snap,
        in_port,
        frame,
        |env| {
            if !env.snat_here() {
                return None;
            }
            let w = snat_way(snap, &mut env.snat_memo, frame)?;
            env.nat.prefetch_lookup(&w.look());
            crate::fastpath::prefetch_nat_next(env);
            Some(w)
        },
        snat_apply,
    )
}

/// Runs `frame` in on `in_port` the way a worker decides a frame of an
/// underlay port's burst on a node without SNAT here: its decap way
/// ([`crate::fastpath::decap_way`], with the environment's memory of
/// tunnels), or the whole pipeline when there is none. Also gives whether it
/// took the decap way.
pub fn run_decap_way(
    env: &mut crate::pipeline::Env,
    snap: &crate::tables::Snapshot,
    in_port: u16,
    frame: &[u8],
) -> (Run, bool) {
    use crate::fastpath::{decap_apply, decap_way};
    run_way(
        env,
        snap,
        in_port,
        frame,
        |env| decap_way(snap, &mut env.decap_memo, frame),
        |_, w, f| decap_apply(w, f),
    )
}

/// A frame of an underlay port's burst: the way `find` works out (on a new
/// burst), finished by `apply`, or the whole pipeline when there is none;
/// and whether it took the way.
fn run_way<W>(
    env: &mut crate::pipeline::Env,
    snap: &crate::tables::Snapshot,
    in_port: u16,
    frame: &[u8],
    find: impl FnOnce(&mut crate::pipeline::Env) -> Option<W>,
    apply: impl FnOnce(
        &mut crate::pipeline::Env,
        &W,
        &mut crate::pkt::Frame,
    ) -> Option<crate::pipeline::Disposition>,
) -> (Run, bool) {
    use crate::pipeline::{ingress, Ingress, NoTrace};
    env.burst(snap);
    let way = match ingress(snap, in_port) {
        Ingress::Underlay => find(env),
        _ => None,
    };
    let Some(w) = way else {
        return (run_in(env, snap, in_port, frame, &mut NoTrace), false);
    };
    let mut buf = buffer(frame);
    let mut f = crate::pkt::Frame::new(&mut buf, HEADROOM, frame.len()).expect("fits");
    match apply(env, &w, &mut f) {
        Some(v) => (outcome(v, &f), true),
        None => {
            assert_eq!(f.data(), frame, "the way changed a frame it left");
            (run_in(env, snap, in_port, frame, &mut NoTrace), false)
        }
    }
}

/// Runs `frame` (any bytes) in on `in_port` through the pipeline as the
/// workers do and as `trace` does, and asserts what must hold for every input:
///
/// - both runs agree: disposition and frame out; and so do a second
///   run in the same worker environment (through the flow cache), the
///   workers' own flow cache way ([`crate::fastpath::fast`]) and an underlay
///   port's SNAT way ([`run_snat_way`], twice: session made, then found) and
///   decap way ([`run_decap_way`], twice: the tunnel found, then
///   remembered);
/// - `Forward(port)`, `Answered { port, .. }`: `port` is a port of the
///   node; the frame that leaves is at least an Ethernet header with a
///   unicast source MAC, and at most the input plus [`MAX_GROWTH`] bytes of
///   encapsulation, or a neighbour advertisement of [`ND_ADVERT_LEN`] bytes
///   (forwarded), or a router advertisement or DHCPv6 reply of at most
///   [`CONFIG_REPLY_MAX`] bytes back to `in_port`, or an ICMP error of at most 14 + 576 bytes (answered, and
///   only then);
/// - `Flood`: a group destination; the frame as it came (from a VM
///   port; no larger, decapsulated, from the underlay), or with only its
///   destination MAC made the whole network's (a VIP holder's answer to a
///   router), or an ARP request or a solicitation counted as
///   `vip_holder_unknown` (a routed frame to a VIP nobody announced);
/// - `Drop(reason)`, `Punt(kind)`: the reason, or the kind's counter, is one
///   of [`DropReason::ALL`](crate::stats::DropReason::ALL).
pub fn check_pipeline(snap: &crate::tables::Snapshot, in_port: u16, frame: &[u8]) -> Run {
    use crate::pipeline::{NoTrace, Notes, ICMP_ERROR_MAX};
    use crate::stats::DropReason;
    use crate::wire::{ethernet, icmp4, ipv4};

    // A worker's environment: the frame's first run, then the same frame
    // again, which a routed or switched flow now takes from the flow cache
    // ([`crate::fastpath::flow`]) and must decide exactly alike.
    let mut env = crate::pipeline::Env::new(|| 0, 1_000_000);
    let run = run_in(&mut env, snap, in_port, frame, &mut NoTrace);
    let hits = env.flows.hits;
    let again = run_in(&mut env, snap, in_port, frame, &mut NoTrace);
    assert_eq!(
        again,
        run,
        "the flow cache disagrees (hit: {})",
        env.flows.hits > hits
    );
    let fast = run_fast(&mut env, snap, in_port, frame);
    assert_eq!(fast, run, "the workers' flow cache way disagrees");
    // The SNAT way of an underlay port, in a fresh environment (the first
    // run's session is then made alike), and once more in the same one (the
    // session found). A frame it does not take is decided by the whole
    // pipeline, as just checked: no second environment for it (each one
    // sets up the SNAT's port pools).
    let underlay = matches!(
        crate::pipeline::ingress(snap, in_port),
        crate::pipeline::Ingress::Underlay
    );
    if underlay && crate::fastpath::snat_way(snap, &mut Default::default(), frame).is_some() {
        let mut env = crate::pipeline::Env::new(|| 0, 1_000_000);
        let (way, taken) = run_snat_way(&mut env, snap, in_port, frame);
        assert_eq!(way, run, "the SNAT way disagrees (taken: {taken})");
        let (way, taken) = run_snat_way(&mut env, snap, in_port, frame);
        assert_eq!(way, again, "the SNAT way disagrees again (taken: {taken})");
    }
    // The decap way, twice (the tunnel found, then remembered): it changes
    // no state, so the first run's environment will do.
    if underlay && crate::fastpath::decap_way(snap, &mut Default::default(), frame).is_some() {
        for round in ["", " again"] {
            let (way, taken) = run_decap_way(&mut env, snap, in_port, frame);
            assert_eq!(way, run, "the decap way disagrees{round} (taken: {taken})");
        }
    }
    let mut notes = Notes::default();
    let traced = run_one(snap, in_port, frame, &mut notes);
    assert_eq!(
        run, traced,
        "trace and workers disagree; notes {:?}",
        notes.0
    );
    use crate::pipeline::Disposition as D;
    let (v, out) = &run;
    match *v {
        D::Flood { why, .. } => {
            // Replicated by the worker as it came in (from a VM port) or as
            // decapsulated (from the underlay).
            // Or, from a VM port: a VIP holder's answer to a router, to
            // the whole network (its destination MAC alone changed); a
            // frame routed to a VIP no port has announced, turned into an
            // ARP request or a neighbour solicitation for it (noted).
            if why == Some(DropReason::VipHolderUnknown) {
                assert!(!underlay);
                assert!(
                    out.len() == ethernet::HEADER_LEN + 28
                        || out.len() == ethernet::HEADER_LEN + 40 + 32,
                    "an ARP request or a solicitation, {} bytes",
                    out.len()
                );
            } else if underlay {
                assert!(out.len() <= frame.len(), "decapsulated, not grown");
            } else if out[..] != *frame {
                assert_eq!(out.len(), frame.len());
                assert_eq!(out[6..], frame[6..], "only the destination MAC changes");
                assert!(
                    out[..6] == [0xff; 6] || out[..6] == [0x33, 0x33, 0, 0, 0, 1],
                    "to the whole network"
                );
            }
            assert!(
                out.len() >= ethernet::HEADER_LEN && out[0] & 1 == 1,
                "a group address"
            );
            assert!(why.is_none() || why == Some(DropReason::VipHolderUnknown));
        }
        D::Forward(p) | D::Answered { port: p, .. } => {
            assert!(
                (p as usize) < snap.ports.len(),
                "out to port {p}, not a port of the node"
            );
            let n = out.len();
            assert!(n >= ethernet::HEADER_LEN, "a {n}-byte frame out");
            assert_eq!(out[6] & 1, 0, "multicast source MAC out");
            match *v {
                D::Answered { why, .. } => {
                    assert!(DropReason::ALL.contains(&why));
                    assert!(
                        (ethernet::HEADER_LEN + ipv4::HEADER_LEN + icmp4::HEADER_LEN
                            ..=ethernet::HEADER_LEN + ICMP_ERROR_MAX)
                            .contains(&n),
                        "an ICMP error of {n} bytes"
                    );
                }
                _ => assert!(
                    n <= frame.len() + MAX_GROWTH
                        || n == ND_ADVERT_LEN
                        || (p == in_port && n <= CONFIG_REPLY_MAX && ipv6_config_reply(out)),
                    "{} bytes in, {n} bytes out",
                    frame.len()
                ),
            }
        }
        D::Drop(r) => assert!(DropReason::ALL.contains(&r)),
        D::Punt(k) => assert!(DropReason::ALL.contains(&k.counter())),
    }
    run
}

/// Whether two checksum fields are the same one's complement number (0x0000
/// and 0xffff are both zero: an incremental update (RFC 1624) can give the
/// other zero than a recomputation when all the covered words are zero).
pub fn same_checksum(a: u16, b: u16) -> bool {
    a == b || (a ^ b == 0xffff && (a == 0 || b == 0))
}

/// Asserts the pure helpers of [`crate::wire`] and the capture reader on any
/// bytes: the flow hash and the ARP reply parser take any length; incremental
/// checksum updates (16 and 32 bits) equal recomputing; a [`Frame`] moved by
/// any script of prepend/adj/trim/extend stays inside its buffer and does what
/// a plain model of its edges says; a capture read back after writing is the
/// same frames.
///
/// Layout of `data`: four parameter bytes (checksum field and changed word,
/// frame buffer size and offset), then the body (a header, a frame, a script
/// of two-byte operations, a capture: each check reads it its own way).
///
/// [`Frame`]: crate::pkt::Frame
pub fn check_headers(data: &[u8]) {
    use crate::wire::vxlan::flow_hash;
    assert_eq!(flow_hash(data), flow_hash(data));
    let _ = crate::wire::arp::reply_sender(data);
    let [a, b, c, d, body @ ..] = data else {
        return;
    };
    let _ = flow_hash(body);
    check_checksum(*a, *b, u16::from_be_bytes([*c, *d]), body);
    check_frame_ops(*c, *d, body);
    if let Ok(frames) = crate::pcap::read(body) {
        let mut w = Vec::new();
        crate::pcap::write(&mut w, &frames).expect("to memory");
        assert_eq!(crate::pcap::read(&w[..]).expect("reads back"), frames);
    }
}

fn check_checksum(field: u8, word: u8, new: u16, body: &[u8]) {
    use crate::wire::checksum::{checksum, csum_update16, csum_update32};
    use crate::wire::{be16, be32, put16, put32};
    let n = body.len().min(64) & !1;
    if n < 4 {
        return;
    }
    let mut h = body[..n].to_vec();
    let words = n / 2;
    let fi = field as usize % words * 2;
    put16(&mut h, fi, 0);
    let c = checksum(&h);
    put16(&mut h, fi, c);
    assert_eq!(checksum(&h), 0, "a header with its checksum sums to zero");
    // One 16-bit word changes.
    let mut j = word as usize % words * 2;
    if j == fi {
        j = (j + 2) % n;
    }
    let old = be16(&h, j);
    put16(&mut h, j, new);
    let inc = csum_update16(c, old, new);
    put16(&mut h, fi, 0);
    let full = checksum(&h);
    assert!(
        same_checksum(inc, full),
        "16-bit update {old:#06x} → {new:#06x} at {j}: {inc:#06x}, recomputed {full:#06x}"
    );
    // Two adjacent words (an IPv4 address) change, clear of the field.
    if words < 4 {
        return;
    }
    put16(&mut h, fi, full);
    let k = (0..words - 1)
        .map(|i| (word as usize + i) % (words - 1) * 2)
        .find(|&k| k != fi && k + 2 != fi)
        .expect("4 words leave a pair clear of the field");
    let old = be32(&h, k);
    let new32 = (u32::from(new) << 16 | u32::from(!new)).rotate_left(u32::from(field));
    put32(&mut h, k, new32);
    let inc = csum_update32(full, old, new32);
    put16(&mut h, fi, 0);
    let full = checksum(&h);
    assert!(
        same_checksum(inc, full),
        "32-bit update {old:#010x} → {new32:#010x} at {k}: {inc:#06x}, recomputed {full:#06x}"
    );
}

fn check_frame_ops(size: u8, off: u8, script: &[u8]) {
    use crate::pkt::Frame;
    let n = 16 + size as usize;
    let mut so = off as usize % (n + 1);
    let mut sl = (n - so) / 2;
    let mut buf = vec![0u8; n];
    assert!(Frame::new(&mut buf, so, n - so + 1).is_none());
    assert!(Frame::new(&mut buf, usize::MAX, 2).is_none());
    let mut f = Frame::new(&mut buf, so, sl).expect("inside the buffer");
    for op in script.chunks_exact(2) {
        // The high bit of the operation asks for a huge count.
        let k = if op[0] & 0x80 != 0 {
            usize::MAX - op[1] as usize
        } else {
            op[1] as usize
        };
        match op[0] & 3 {
            0 => {
                let ok = f.prepend(k);
                assert_eq!(ok, k <= so, "prepend {k} at {so}");
                if ok {
                    so -= k;
                    sl += k;
                }
            }
            1 => {
                let ok = f.adj(k);
                assert_eq!(ok, k <= sl, "adj {k} of {sl}");
                if ok {
                    so += k;
                    sl -= k;
                }
            }
            2 => {
                f.trim(k);
                sl = sl.min(k);
            }
            _ => {
                let ok = f.extend(k);
                assert_eq!(ok, k <= n - so - sl, "extend {k} at {so}+{sl} of {n}");
                if ok {
                    sl += k;
                }
            }
        }
        assert_eq!((f.offset(), f.offset(), f.len()), (so, so, sl));
        assert_eq!(f.is_empty(), sl == 0);
        f.data_mut().fill(op[1]);
        assert_eq!(f.data().len(), sl);
    }
}

/// `inner` in VXLAN `vni` as the host with underlay MAC `src_mac` and VTEP
/// `src` sends it to `dst` (`dst_mac`): outer UDP source port from the flow
/// hash, outer UDP checksum zero, as the pipeline encapsulates.
pub fn vxlan_frame(
    inner: &[u8],
    vni: u32,
    (src_mac, src): ([u8; 6], [u8; 4]),
    (dst_mac, dst): ([u8; 6], [u8; 4]),
) -> Vec<u8> {
    use crate::wire::{ethernet, ipv4, proto, tunnel, udp, vxlan, UdpHeader};
    let mut v = tunnelled(
        inner,
        tunnel::VXLAN_OVERHEAD,
        proto::UDP,
        (src_mac, src),
        (dst_mac, dst),
    );
    let u = &mut v[ethernet::HEADER_LEN + ipv4::HEADER_LEN..];
    let mut h = UdpHeader::new_checked(&mut *u).expect("room for UDP");
    h.set_src_port(0xc000 | (vxlan::flow_hash(inner) as u16 & 0x3fff));
    h.set_dst_port(udp::VXLAN_PORT);
    h.set_len((udp::HEADER_LEN + vxlan::HEADER_LEN + inner.len()) as u16);
    vxlan::write(&mut u[udp::HEADER_LEN..], vni);
    v
}

/// `inner` after `over` bytes of outer headers: Ethernet and IPv4 (protocol
/// `proto`, TTL 64) from `src` to `dst` filled in, the tunnel header after
/// them left zero.
fn tunnelled(
    inner: &[u8],
    over: usize,
    proto: u8,
    (src_mac, src): ([u8; 6], [u8; 4]),
    (dst_mac, dst): ([u8; 6], [u8; 4]),
) -> Vec<u8> {
    use crate::wire::{ethernet, ipv4};
    let mut v = vec![0u8; over + inner.len()];
    ethernet::write(&mut v, &dst_mac, &src_mac, ethernet::ETHERTYPE_IPV4);
    let total = (over - ethernet::HEADER_LEN + inner.len()) as u16;
    ipv4::write(&mut v[ethernet::HEADER_LEN..], total, 64, proto, src, dst);
    v[over..].copy_from_slice(inner);
    v
}

/// `inner` in GRE with key `key` (transparent Ethernet bridging) as the host
/// with underlay MAC `src_mac` and VTEP `src` sends it to `dst` (`dst_mac`),
/// as the pipeline encapsulates.
pub fn gre_frame(
    inner: &[u8],
    key: u32,
    (src_mac, src): ([u8; 6], [u8; 4]),
    (dst_mac, dst): ([u8; 6], [u8; 4]),
) -> Vec<u8> {
    use crate::wire::{ethernet, gre, ipv4, proto, tunnel};
    let mut v = tunnelled(
        inner,
        tunnel::GRE_OVERHEAD,
        proto::GRE,
        (src_mac, src),
        (dst_mac, dst),
    );
    gre::write(&mut v[ethernet::HEADER_LEN + ipv4::HEADER_LEN..], key);
    v
}

/// `inner` as the host with underlay MAC `src_mac` and VTEP `src` sends it to
/// `dst` (`dst_mac`) on segment `seg` of a network of type `ty`: in VXLAN
/// ([`vxlan_frame`]) or GRE ([`gre_frame`]), tagged ([`vlan_frame`]), or as
/// it is (flat).
pub fn segment_frame(
    ty: crate::model::NetworkType,
    inner: &[u8],
    seg: u32,
    from: ([u8; 6], [u8; 4]),
    to: ([u8; 6], [u8; 4]),
) -> Vec<u8> {
    use crate::model::NetworkType;
    match ty {
        NetworkType::Vxlan => vxlan_frame(inner, seg, from, to),
        NetworkType::Gre => gre_frame(inner, seg, from, to),
        NetworkType::Vlan => vlan_frame(inner, seg as u16),
        NetworkType::Flat => inner.to_vec(),
    }
}

/// `frame` with an 802.1Q tag of VLAN `vid` after its MACs, as a host sends
/// it on a VLAN network.
pub fn vlan_frame(frame: &[u8], vid: u16) -> Vec<u8> {
    use crate::wire::{ethernet, vlan};
    let macs = ethernet::field::MACS.end;
    let mut v = Vec::with_capacity(frame.len() + vlan::HEADER_LEN);
    v.extend_from_slice(&frame[..macs]);
    v.extend_from_slice(&ethernet::ETHERTYPE_VLAN.to_be_bytes());
    v.extend_from_slice(&(vid & vlan::VID_MASK).to_be_bytes());
    v.extend_from_slice(&frame[macs..]);
    v
}
