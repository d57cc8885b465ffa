//! The netns testbed end to end, with what the dataplane does today (L2
//! switching between the VM ports of one network on one node): two VMs as
//! network namespaces on `af_packet` ports of a real dvr-pmd, the model created
//! with dvr-ctl, real `ping`/`ping -6` both ways, a TCP transfer of 1 MB checked
//! byte for byte, the frames' MACs read from a capture by Wireshark's
//! dissectors, and a frame to a MAC that no port has counted as
//! `unknown_dst_mac`. Also: the testbed's own objects are prefixed with its id,
//! work across a bridge, and are gone after it is dropped, also after a panic.

mod common;

use std::path::Path;
use std::process::Command;

use common::testbed::{ctl, tcp_transfer, Testbed, VmOpts};
use common::{drops, node_head, port, vm_port, Daemon};
use serde_json::Value;

const A: &str = "fa:16:3e:00:00:0a";
const B: &str = "fa:16:3e:00:00:0b";
const GHOST: &str = "fa:16:3e:00:00:99";

fn unknown_dst_mac(socket: &Path) -> u64 {
    let v: Value = serde_json::from_str(&ctl(socket, &["--json", "show", "errors"])).unwrap();
    drops(&v, "unknown_dst_mac")
}

#[test]
fn two_vms_on_af_packet_ports_ping_and_transfer() {
    two_vms_ping_and_transfer(false);
}

/// The same with VM A behind a `tap` port of dvr-pmd: the tap and A's veth on a
/// bridge of the testbed.
#[test]
fn a_vm_behind_a_tap_port_pings_and_transfers() {
    two_vms_ping_and_transfer(true);
}

fn two_vms_ping_and_transfer(tap_a: bool) {
    let tb = Testbed::new();
    let mut opts_a = VmOpts::new(A, "10.0.1.5/24").ip6("fd00:1::5/64");
    let tap = tb.name("tapa");
    let port_a = if tap_a {
        tb.bridge("ba");
        opts_a = opts_a.bridge("ba");
        vm_port("vm-a", "tap", &[format!("iface = \"{tap}\"")])
    } else {
        String::new()
    };
    let a = tb.vm("a", opts_a);
    let port_a = if tap_a {
        port_a
    } else {
        vm_port("vm-a", "af_packet", &[format!("iface = \"{}\"", a.iface)])
    };
    let b = tb.vm("b", VmOpts::new(B, "10.0.1.6/24").ip6("fd00:1::6/64"));

    let d = tb.dir();
    let socket = d.join("ctl.sock");
    let cfg = [
        node_head("cn1", &d.join("run")),
        format!(
            "[control]\nsocket = \"{}\"\nstate_file = \"{}\"\n",
            socket.display(),
            d.join("model.json").display()
        ),
        port_a,
        vm_port("vm-b", "af_packet", &[format!("iface = \"{}\"", b.iface)]),
    ]
    .concat();
    std::fs::write(d.join("node.toml"), cfg).unwrap();
    let mut dvr = Daemon::start(&d.join("node.toml"));
    dvr.next();
    if tap_a {
        // dvr-pmd made the tap (and removes it when it stops).
        tb.attach("ba", &tap);
    }

    let s = socket.as_path();
    ctl(
        s,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "--provider-segment",
            "101",
            "net1",
        ],
    );
    ctl(
        s,
        &[
            "subnet",
            "create",
            "--network",
            "net1",
            "--subnet-range",
            "10.0.1.0/24",
            "s4",
        ],
    );
    ctl(
        s,
        &[
            "subnet",
            "create",
            "--network",
            "net1",
            "--subnet-range",
            "fd00:1::/64",
            "s6",
        ],
    );
    for (name, vm, binding) in [("pa", &a, "vm-a"), ("pb", &b, "vm-b")] {
        let ip4 = format!("subnet=s4,ip-address={}", vm.ip.as_ref().unwrap());
        let ip6 = format!("subnet=s6,ip-address={}", vm.ip6.as_ref().unwrap());
        ctl(
            s,
            &[
                "port",
                "create",
                "--network",
                "net1",
                "--mac-address",
                &vm.mac,
                "--fixed-ip",
                &ip4,
                "--fixed-ip",
                &ip6,
                "--host",
                "cn1",
                "--binding",
                binding,
                name,
            ],
        );
    }
    let fdb: Value = serde_json::from_str(&ctl(s, &["--json", "show", "fdb"])).unwrap();
    assert_eq!(fdb["entries"].as_array().unwrap().len(), 2, "{fdb}");

    // The dataplane neither answers nor floods ARP/ND yet: static neighbours.
    for (vm, peer) in [(&a, &b), (&b, &a)] {
        vm.neigh(peer.ip.as_ref().unwrap(), &peer.mac);
        vm.neigh(peer.ip6.as_ref().unwrap(), &peer.mac);
    }

    // Real pings both ways, both families, seen by A. (A capture on A's veth
    // in the root namespace would see only what A sent: the AF_PACKET driver's
    // transmissions bypass the kernel's taps.)
    let cap = tb.capture_vm(&a, "icmp or icmp6");
    for (from, to) in [(&a, &b), (&b, &a)] {
        from.ping(to.ip.as_ref().unwrap(), 3);
        from.ping(to.ip6.as_ref().unwrap(), 3);
    }
    let frames = cap.stop().fields(
        "icmp.type == 0 || icmp.type == 8 || icmpv6.type == 128 || icmpv6.type == 129",
        &[
            "eth.src", "eth.dst", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst",
        ],
    );
    // 2 directions x 2 families x 3 (request + reply), all on A's link.
    assert_eq!(frames.len(), 24, "{frames:?}");
    for f in &frames {
        let (src, dst) = (format!("{}{}", f[2], f[3]), format!("{}{}", f[4], f[5]));
        let mac_of = |ip: &str| {
            if [&a.ip, &a.ip6].iter().any(|x| x.as_deref() == Some(ip)) {
                A
            } else if [&b.ip, &b.ip6].iter().any(|x| x.as_deref() == Some(ip)) {
                B
            } else {
                panic!("frame from an unknown address: {f:?}")
            }
        };
        assert_eq!(f[0], mac_of(&src), "source MAC of {f:?}");
        assert_eq!(f[1], mac_of(&dst), "destination MAC of {f:?}");
    }

    // 1 MB over TCP, byte for byte.
    let t = tcp_transfer(d, &a, &b, b.ip.as_ref().unwrap(), 5001, 1 << 20);
    t.assert_intact();
    let t = tcp_transfer(d, &b, &a, a.ip6.as_ref().unwrap(), 5002, 1 << 20);
    t.assert_intact();

    // A MAC that no port has: each frame is dropped and counted.
    let before = unknown_dst_mac(s);
    a.neigh("10.0.1.99", GHOST);
    let cap = tb.capture_vm(&b, "");
    a.ping_fails("10.0.1.99", 3);
    assert_eq!(
        unknown_dst_mac(s) - before,
        3,
        "three echo requests dropped"
    );
    let leaked = cap
        .stop()
        .fields(&format!("eth.dst == {GHOST}"), &["eth.dst"]);
    assert!(leaked.is_empty(), "not flooded to B: {leaked:?}");

    let last = dvr.stop();
    assert_eq!(drops(&last, "unknown_dst_mac"), before + 3, "{last}");
    assert_eq!(drops(&last, "tx_queue_full"), 0, "{last}");
    for p in ["vm-a", "vm-b"] {
        assert!(
            port(&last, p, "rx_bytes") > 1 << 20,
            "{p} carried 1 MiB: {last}"
        );
        assert!(
            port(&last, p, "tx_bytes") > 1 << 20,
            "{p} carried 1 MiB: {last}"
        );
    }
}

fn leftovers(id: &str) -> String {
    let prefix = format!("{id}-");
    let run = |args: &[&str]| {
        let o = Command::new("ip").args(args).output().unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    [run(&["netns", "list"]), run(&["-o", "link", "show"])]
        .concat()
        .lines()
        .filter(|l| {
            l.starts_with(&prefix) || l.split(": ").nth(1).is_some_and(|n| n.starts_with(&prefix))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn testbed_objects_are_prefixed_bridged_and_removed() {
    let tb = Testbed::new();
    let id = tb.id().to_owned();
    let br = tb.bridge("br");
    let a = tb.vm(
        "a",
        VmOpts::new(A, "10.0.2.5/24")
            .ip6("fd00:2::5/64")
            .bridge("br"),
    );
    let b = tb.vm(
        "b",
        VmOpts::new(B, "10.0.2.6/24")
            .ip6("fd00:2::6/64")
            .gw("10.0.2.1")
            .gw6("fd00:2::1")
            .mtu(1450)
            .bridge("br"),
    );
    let ul = tb.veth("ul1", "br");
    assert_eq!(
        [br.as_str(), &a.iface, &b.iface, &ul],
        [
            tb.name("br").as_str(),
            &tb.name("a"),
            &tb.name("b"),
            &tb.name("ul1")
        ]
    );
    let list = tb.list();
    for l in [
        format!("{id} netns {id}-a"),
        format!("{id} netns {id}-b"),
        format!("{id} bridge {id}-br"),
        format!("{id} veth {id}-ul1 "),
        format!("{id} veth {id}-ul1_b "),
    ] {
        assert!(list.contains(&l), "{l:?} not in\n{list}");
    }
    assert!(b.ok(&["ip", "route"]).contains("default via 10.0.2.1"));
    assert!(b.ok(&["ip", "link", "show", "eth0"]).contains("mtu 1450"));
    // No offloads on either end; no IPv6 on the root end.
    let k = Command::new("ethtool")
        .args(["-k", &a.iface])
        .output()
        .unwrap();
    let k = String::from_utf8(k.stdout).unwrap();
    let k_in = a.ok(&["ethtool", "-k", "eth0"]);
    for f in [
        "tcp-segmentation-offload: off",
        "generic-segmentation-offload: off",
        "generic-receive-offload: off",
        "tx-checksumming: off",
        "rx-checksumming: off",
    ] {
        assert!(k.contains(f), "{}: {f}", a.iface);
        assert!(k_in.contains(f), "eth0 of {}: {f}", a.ns);
    }
    let v6 = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", a.iface));
    assert_eq!(v6.unwrap().trim(), "1");

    // Across the bridge, without neighbour entries (the kernel resolves), and a
    // capture on the bridge.
    let cap = tb.capture(&br, "icmp or icmp6");
    a.ping(b.ip.as_ref().unwrap(), 2);
    b.ping(a.ip6.as_ref().unwrap(), 2);
    let f = cap.stop().fields(
        "icmp.type == 8 || icmpv6.type == 128",
        &["eth.src", "eth.dst"],
    );
    assert_eq!(
        f,
        [[A, B], [A, B], [B, A], [B, A]].map(|p| p.map(str::to_owned).to_vec())
    );
    tcp_transfer(tb.dir(), &a, &b, b.ip.as_ref().unwrap(), 5003, 100_000).assert_intact();

    // A process left in a namespace does not keep anything alive.
    let _sleeper = a.spawn(600, &["sleep", "600"]);
    drop(tb);
    assert_eq!(leftovers(&id), "", "all of {id} removed");

    // Also when the test fails half way.
    let id = std::panic::catch_unwind(|| {
        let tb = Testbed::new();
        let id = tb.id().to_owned();
        tb.bridge("br");
        tb.vm("c", VmOpts::new(A, "10.0.3.5/24").bridge("br"));
        panic!("{id}");
    })
    .unwrap_err()
    .downcast::<String>()
    .unwrap();
    assert_eq!(leftovers(&id), "", "all of {id} removed after a panic");
}
