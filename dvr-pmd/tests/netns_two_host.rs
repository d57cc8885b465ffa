//! Two hosts end to end: two dvr-pmd processes (nodes cn1 and cn2, agent mode
//! `dvr`, each with its own VTEP and DVR MAC) joined by an underlay Linux bridge,
//! each node's underlay an `af_packet` port on a veth into the bridge. VMs are
//! network namespaces on `af_packet` VM ports, on two subnets (IPv4 + IPv6) of
//! one distributed router:
//!
//! | VM | host | network | IPv4 / IPv6 |
//! |---|---|---|---|
//! | a1 | cn1 | net1 | 10.1.0.11 / 2001:db8:1::11 |
//! | c1 | cn1 | net1 | 10.1.0.12 / 2001:db8:1::12 |
//! | b1 | cn1 | net2 | 10.2.0.11 / 2001:db8:2::11 |
//! | a2 | cn2 | net1 | 10.1.0.21 / 2001:db8:1::21 |
//! | b2 | cn2 | net2 | 10.2.0.21 / 2001:db8:2::21 |
//!
//! Both nodes get the same model through their own control sockets (each
//! registers itself at start; the other host is registered on each). The VMs
//! have their gateways as default routes and no static neighbour entries: the
//! nodes' ARP / ND responders answer. For each overlay (VXLAN, GRE, VLAN):
//! real `ping` and `ping -6` on the same host and subnet, on the same host
//! across subnets, across hosts on one subnet (switched over the overlay) and
//! across hosts and subnets (routed by the sending host, DVR); echo from every
//! gateway address; 1 MB over TCP across hosts and subnets, both families,
//! checked by SHA-256; and Wireshark's dissectors on the underlay bridge: the
//! VNI / GRE key / VLAN id of every tunnelled frame is its inner destination's
//! network's, the outer addresses are the two hosts' VTEPs, the inner source MAC
//! of a routed frame is the sending host's DVR MAC and never a router interface
//! MAC, the inner destination MAC is the destination VM's. The workers'
//! counters show that the transfers' frames took the short ways: the decap
//! way on the receiving host, the flow cache on the sending one.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::testbed::{ctl, tcp_transfer, Recording, Testbed, Vm, VmOpts};
use common::{drops, node_head, Daemon, PATIENCE};
use serde_json::Value;

/// The hosts: name, VTEP, DVR MAC.
const HOSTS: [(&str, &str, &str); 2] = [
    ("cn1", "192.0.2.1", "fa:16:3f:00:00:01"),
    ("cn2", "192.0.2.2", "fa:16:3f:00:00:02"),
];

/// The VMs: name, host index, network index (0: net1, 1: net2), last byte.
const VMS: [(&str, usize, usize, u8); 5] = [
    ("a1", 0, 0, 11),
    ("c1", 0, 0, 12),
    ("b1", 0, 1, 11),
    ("a2", 1, 0, 21),
    ("b2", 1, 1, 21),
];

/// The networks' MTU (and the VMs'): room for the VXLAN header on the
/// underlay's 1500, as Neutron sets it.
const MTU: u32 = 1450;

/// One overlay type: `network create` arguments, the two networks' segment
/// ids, and the Wireshark field that carries them.
#[derive(Clone, Copy)]
struct Overlay {
    kind: &'static str,
    segments: [u32; 2],
    field: &'static str,
}

#[test]
fn two_hosts_over_vxlan() {
    two_hosts(Overlay {
        kind: "vxlan",
        segments: [1001, 1002],
        field: "vxlan.vni",
    });
}

#[test]
fn two_hosts_over_gre() {
    two_hosts(Overlay {
        kind: "gre",
        segments: [2001, 2002],
        field: "gre.key",
    });
}

#[test]
fn two_hosts_over_vlan() {
    two_hosts(Overlay {
        kind: "vlan",
        segments: [101, 102],
        field: "vlan.id",
    });
}

/// What the test knows of one VM.
struct Guest {
    vm: Vm,
    host: usize,
    net: usize,
    ip4: String,
    ip6: String,
}

fn ip4(net: usize, last: u8) -> String {
    format!("10.{}.0.{last}", net + 1)
}

fn ip6(net: usize, last: u8) -> String {
    format!("2001:db8:{}::{last}", net + 1)
}

/// The network index of a VM address.
fn net_of(ip: &str) -> Option<usize> {
    let ip: IpAddr = ip.parse().ok()?;
    (0..2).find(|&n| {
        let (a, b) = (ip4(n, 0).parse::<IpAddr>(), ip6(n, 0).parse::<IpAddr>());
        match (ip, a.unwrap(), b.unwrap()) {
            (IpAddr::V4(x), IpAddr::V4(p), _) => x.octets()[..3] == p.octets()[..3],
            (IpAddr::V6(x), _, IpAddr::V6(p)) => x.segments()[..4] == p.segments()[..4],
            _ => false,
        }
    })
}

/// `dvr-ctl` with the same arguments on every node: the model is the same
/// everywhere.
fn all(sockets: &[PathBuf], args: &[&str]) {
    for s in sockets {
        ctl(s, args);
    }
}

fn json(socket: &Path, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ctl(socket, &a)).unwrap()
}

/// The MACs that `d` logged for `vtep` as resolved, in order.
fn resolved(d: &Daemon, vtep: &str) -> Vec<String> {
    let want = format!("vtep={vtep} mac=");
    d.stderr()
        .lines()
        .map(str::to_owned)
        .filter(|l| l.contains("underlay neighbour resolved"))
        .filter_map(|l| Some(l.split_once(&want)?.1.trim().to_owned()))
        .collect()
}

/// Waits until `d` logged that it resolved the other host's VTEP on the
/// underlay (its resolver asks by ARP every second until answered).
fn wait_resolved(d: &Daemon, vtep: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if !resolved(d, vtep).is_empty() {
            return;
        }
        let log = d.stderr();
        assert!(
            Instant::now() < deadline,
            "VTEP {vtep} not resolved; stderr:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn two_hosts(ov: Overlay) {
    let started = Instant::now();
    let tb = Testbed::new();
    let bridge = tb.bridge("ul");
    // Each node in a host namespace of its own, as in a data centre (and as
    // two dvr-pmd with `af_packet` ports need: `scripts/testbed host`).
    let hosts: Vec<String> = HOSTS.iter().map(|h| tb.host(h.0)).collect();
    let underlay = [
        tb.veth_on("ul1", "ul", HOSTS[0].0),
        tb.veth_on("ul2", "ul", HOSTS[1].0),
    ];
    let gw4 = |n: usize| ip4(n, 1);
    let gw6 = |n: usize| ip6(n, 1);
    let guests: Vec<Guest> = VMS
        .iter()
        .map(|&(name, host, net, last)| {
            let mac = format!("fa:16:3e:01:{:02}:{last:02}", net + 1);
            let opts = VmOpts::new(&mac, &format!("{}/24", ip4(net, last)))
                .ip6(&format!("{}/64", ip6(net, last)))
                .gw(&gw4(net))
                .gw6(&gw6(net))
                .mtu(MTU)
                .host(HOSTS[host].0);
            Guest {
                vm: tb.vm(name, opts),
                host,
                net,
                ip4: ip4(net, last),
                ip6: ip6(net, last),
            }
        })
        .collect();

    // The nodes. Declared after the testbed: dropped (killed) before it.
    let d = tb.dir();
    let mut sockets = Vec::new();
    let mut daemons = Vec::new();
    for (h, (name, vtep, dvr_mac)) in HOSTS.iter().enumerate() {
        let socket = d.join(format!("{name}.sock"));
        let mut cfg = format!("vtep = \"{vtep}\"\ndvr_mac = \"{dvr_mac}\"\n");
        cfg += &node_head(name, &d.join(format!("run-{name}")));
        cfg += &format!(
            "[control]\nsocket = \"{}\"\nstate_file = \"{}\"\n",
            socket.display(),
            d.join(format!("{name}.json")).display()
        );
        cfg += &format!(
            "[[ports]]\nname = \"ul\"\nrole = \"underlay\"\nkind = \"af_packet\"\niface = \"{}\"\n",
            underlay[h]
        );
        for g in guests.iter().filter(|g| g.host == h) {
            cfg += &common::vm_port(
                &format!("vm-{}", g.vm.ns.rsplit('-').next().unwrap()),
                "af_packet",
                &[format!("iface = \"{}\"", g.vm.iface)],
            );
        }
        let file = d.join(format!("{name}.toml"));
        std::fs::write(&file, cfg).unwrap();
        let mut dmn = Daemon::start_in(&hosts[h], &file);
        dmn.next();
        daemons.push(dmn);
        sockets.push(socket);
    }

    // The same model on both nodes.
    for (h, s) in sockets.iter().enumerate() {
        let (name, vtep, dvr_mac) = HOSTS[1 - h];
        ctl(
            s,
            &[
                "host",
                "set",
                "--agent-mode",
                "dvr",
                "--vtep",
                vtep,
                "--dvr-mac",
                dvr_mac,
                name,
            ],
        );
    }
    all(&sockets, &["router", "create", "--distributed", "r1"]);
    for n in 0..2 {
        let (net, seg, mtu) = (
            format!("net{}", n + 1),
            ov.segments[n].to_string(),
            MTU.to_string(),
        );
        all(
            &sockets,
            &[
                "network",
                "create",
                "--provider-network-type",
                ov.kind,
                "--provider-segment",
                &seg,
                "--mtu",
                &mtu,
                &net,
            ],
        );
        for (sn, range) in [
            (format!("s{}v4", n + 1), format!("{}/24", ip4(n, 0))),
            (format!("s{}v6", n + 1), format!("{}/64", ip6(n, 0))),
        ] {
            all(
                &sockets,
                &[
                    "subnet",
                    "create",
                    "--network",
                    &net,
                    "--subnet-range",
                    &range,
                    &sn,
                ],
            );
            all(&sockets, &["router", "add", "subnet", "r1", &sn]);
        }
    }
    for g in &guests {
        let name = g.vm.ns.rsplit('-').next().unwrap();
        let fixed4 = format!("subnet=s{}v4,ip-address={}", g.net + 1, g.ip4);
        let fixed6 = format!("subnet=s{}v6,ip-address={}", g.net + 1, g.ip6);
        all(
            &sockets,
            &[
                "port",
                "create",
                "--network",
                &format!("net{}", g.net + 1),
                "--mac-address",
                &g.vm.mac,
                "--fixed-ip",
                &fixed4,
                "--fixed-ip",
                &fixed6,
                "--host",
                HOSTS[g.host].0,
                "--binding",
                &format!("vm-{name}"),
                &format!("p-{name}"),
            ],
        );
    }

    // Both nodes compiled the same router: the interface MACs (generated by
    // the model) are the same on every host, as DVR needs.
    let routers: Vec<Value> = sockets
        .iter()
        .map(|s| json(s, &["router", "show", "r1"]))
        .collect();
    assert_eq!(
        routers[0]["interfaces"], routers[1]["interfaces"],
        "router r1 differs between the nodes"
    );
    let gateway_macs: Vec<String> = routers[0]["interfaces"]
        .as_array()
        .unwrap_or_else(|| panic!("router r1: {}", routers[0]))
        .iter()
        .map(|i| i["mac"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(gateway_macs.len(), 4, "{}", routers[0]);
    for (h, s) in sockets.iter().enumerate() {
        // Each VM: a local port here, or the other host (L2 population).
        let fdb = json(s, &["show", "fdb"]);
        for g in &guests {
            let e = fdb["entries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["mac"] == g.vm.mac.as_str())
                .unwrap_or_else(|| panic!("{} not in the FDB of {}: {fdb}", g.vm.mac, HOSTS[h].0));
            let at = e["location"].as_str().unwrap();
            if g.host == h {
                assert!(at.starts_with("local interface"), "{e}");
            } else {
                let (name, vtep, _) = HOSTS[g.host];
                assert_eq!(at, format!("host {name} (VTEP {vtep})"), "{e}");
            }
        }
    }
    for (h, dmn) in daemons.iter().enumerate() {
        wait_resolved(dmn, HOSTS[1 - h].1);
    }
    let ready = started.elapsed();

    let cap = tb.capture(&bridge, "");
    let by = |n: &str| {
        guests
            .iter()
            .find(|g| g.vm.ns.ends_with(&format!("-{n}")))
            .unwrap()
    };
    // (from, to): same host and subnet, same host across subnets, across hosts
    // on one subnet, across hosts and subnets (both ways, both hosts).
    for (from, to) in [
        ("a1", "c1"),
        ("c1", "a1"),
        ("a1", "b1"),
        ("b1", "c1"),
        ("a1", "a2"),
        ("a2", "c1"),
        ("a1", "b2"),
        ("b2", "c1"),
        ("b1", "a2"),
        ("a2", "b1"),
    ] {
        let (f, t) = (by(from), by(to));
        f.vm.ping(&t.ip4, 3);
        f.vm.ping(&t.ip6, 3);
    }
    // Every gateway address answers echo, on every host.
    for g in &guests {
        g.vm.ping(&gw4(g.net), 2);
        g.vm.ping(&gw6(g.net), 2);
    }
    // 1 MB each way across hosts and subnets, IPv4 and IPv6.
    let (a1, b2) = (by("a1"), by("b2"));
    tcp_transfer(d, &a1.vm, &b2.vm, &b2.ip4, 5001, 1 << 20).assert_intact();
    tcp_transfer(d, &b2.vm, &a1.vm, &a1.ip6, 5002, 1 << 20).assert_intact();
    let (b1, a2) = (by("b1"), by("a2"));
    tcp_transfer(d, &a2.vm, &b1.vm, &b1.ip6, 5003, 1 << 20).assert_intact();
    tcp_transfer(d, &b1.vm, &a2.vm, &a2.ip4, 5004, 1 << 20).assert_intact();
    let traffic = started.elapsed() - ready;
    // The frames of the transfers took the workers' short ways. Each node
    // received 2 MiB from the other host's VMs, routed there, in frames of
    // at most the MTU: every one of them is one the decap way decides. cn1
    // sent 2 MiB over IPv4 (a1 to b2, b1 to a2): all but the first frame of
    // each flow found it in the flow cache (the pings cached them already;
    // a snapshot published meanwhile makes each flow miss once more).
    let least = 2 * (1 << 20) / MTU as u64;
    for (h, s) in sockets.iter().enumerate() {
        let rt = json(s, &["show", "runtime"]);
        let sum = |k: &str| -> u64 {
            rt["workers"]
                .as_array()
                .unwrap_or_else(|| panic!("no workers: {rt}"))
                .iter()
                .map(|w| w[k].as_u64().unwrap())
                .sum()
        };
        eprintln!(
            "{}: decap way {}, flow hits {} (at least {least})",
            HOSTS[h].0,
            sum("decap_way"),
            sum("flow_hits")
        );
        assert!(sum("decap_way") >= least, "{}: {rt}", HOSTS[h].0);
        if h == 0 {
            assert!(sum("flow_hits") >= least - 8, "{}: {rt}", HOSTS[h].0);
        }
    }

    check_underlay(&cap.stop(), ov, &guests, &gateway_macs);

    for (h, s) in sockets.iter().enumerate() {
        let e = json(s, &["show", "errors"]);
        for r in [
            "vtep_unresolved",
            "not_local_after_decap",
            "unknown_vtep_source",
            "unknown_vni",
            "unknown_gre_key",
            "unknown_vlan",
            "port_security_mac",
            "port_security_ip",
            "port_security_arp",
            "port_security_nd",
            "port_security_ra",
            "port_security_dhcp",
            "overlay_gateway_mac",
            "dvr_mac_no_interface",
            "neighbor_unknown",
            "mtu_exceeded",
            "table_gone",
            "dangling_reference",
            "tx_queue_full",
            "tx_link_down",
            "arp_unknown_target",
            "nd_unknown_target",
        ] {
            assert_eq!(drops(&e, r), 0, "{} dropped {r}: {e}", HOSTS[h].0);
        }
    }
    // Each node learned the other's underlay MAC, and nothing else.
    for (h, dmn) in daemons.iter().enumerate() {
        let other = std::process::Command::new("ip")
            .args(["netns", "exec", &hosts[1 - h], "cat"])
            .arg(format!("/sys/class/net/{}/address", underlay[1 - h]))
            .output()
            .unwrap();
        assert_eq!(
            resolved(dmn, HOSTS[1 - h].1),
            [String::from_utf8(other.stdout).unwrap().trim()],
            "VTEP {} as resolved by {}",
            HOSTS[1 - h].1,
            HOSTS[h].0
        );
    }
    for dmn in daemons {
        dmn.stop();
    }
    tb.down();
    eprintln!(
        "{}: model and resolution {ready:?}, traffic {traffic:?}, total {:?}",
        ov.kind,
        started.elapsed()
    );
}

/// The address fields of a frame as tshark gives them with every occurrence:
/// the last is the innermost.
fn last(f: &str) -> &str {
    f.rsplit(',').next().unwrap_or("")
}

fn first(f: &str) -> &str {
    f.split(',').next().unwrap_or("")
}

/// Checks every frame on the underlay bridge: tunnelled frames, and ARP
/// between the nodes (VTEP resolution) but nothing else.
fn check_underlay(rec: &Recording, ov: Overlay, guests: &[Guest], gateway_macs: &[String]) {
    let other = rec.fields(
        &format!("!{} && !arp", ov.kind),
        &["frame.number", "eth.src", "eth.dst", "eth.type"],
    );
    assert!(other.is_empty(), "on the underlay: {other:?}");
    for f in rec.fields("", &["eth.src"]) {
        assert!(
            !gateway_macs.iter().any(|m| f[0].contains(m.as_str())),
            "a router interface MAC on the fabric: {f:?}"
        );
    }
    let frames = rec.fields(
        ov.kind,
        &[
            "eth.src", "eth.dst", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", ov.field,
        ],
    );
    let guest = |ip: &str| {
        guests
            .iter()
            .find(|g| g.ip4 == ip || g.ip6 == ip)
            .unwrap_or_else(|| panic!("{ip} is no VM's"))
    };
    let (mut switched, mut routed) = ([0; 2], [0; 2]);
    for f in &frames {
        let (src, dst) = if f[4].is_empty() {
            (last(&f[2]), last(&f[3]))
        } else {
            (last(&f[4]), last(&f[5]))
        };
        let (from, to) = (guest(src), guest(dst));
        assert_ne!(from.host, to.host, "tunnelled within one host: {f:?}");
        let net = net_of(dst).unwrap();
        // tshark prints GRE keys in hex.
        let seg = match f[6].strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => f[6].parse().ok(),
        };
        assert_eq!(
            seg,
            Some(ov.segments[net]),
            "{} of a frame to net{}: {f:?}",
            ov.field,
            net + 1
        );
        if ov.kind != "vlan" {
            assert_eq!(
                (first(&f[2]), first(&f[3])),
                (HOSTS[from.host].1, HOSTS[to.host].1),
                "outer addresses are the VTEPs: {f:?}"
            );
        }
        let (inner_src, inner_dst) = (last(&f[0]), last(&f[1]));
        assert_eq!(inner_dst, to.vm.mac, "inner destination MAC: {f:?}");
        if from.net == to.net {
            assert_eq!(inner_src, from.vm.mac, "switched: the VM's MAC: {f:?}");
            switched[from.host] += 1;
        } else {
            assert_eq!(
                inner_src, HOSTS[from.host].2,
                "routed: the sending host's DVR MAC: {f:?}"
            );
            routed[from.host] += 1;
        }
    }
    // Pings alone: 3 requests and 3 replies per pair and family.
    for h in 0..2 {
        assert!(
            switched[h] >= 12 && routed[h] >= 12,
            "from {}: {} switched, {} routed tunnelled frames",
            HOSTS[h].0,
            switched[h],
            routed[h]
        );
    }
}
