//! Real Linux guests (network namespaces on `af_packet` ports of a real
//! dvr-pmd) with no static neighbour entries: a VIP shared by two ports'
//! allowed address pairs, as keepalived holds one, is reached through the
//! ports that may hold it and follows its holder's gratuitous ARP, also
//! routed from another network (the router asks the ports that may hold it,
//! then learns the holder from the answer or the gratuitous ARP); IPv6
//! link-local addresses (the EUI-64 one and another) work between the VMs.

mod common;

use common::testbed::{ctl, Testbed, Vm, VmOpts, CLIENT_SECS};
use common::{drops, node_head, vm_port, Daemon};

const A: &str = "fa:16:3e:00:00:0a";
const B: &str = "fa:16:3e:00:00:0b";
const C: &str = "fa:16:3e:00:00:0c";
const D: &str = "fa:16:3e:00:00:0d";
const VIP: &str = "10.0.1.100";

/// A gratuitous ARP for `argv[2]` from `argv[1]` (MAC) out of eth0.
const GARP: &str = "
import socket, sys
mac = bytes.fromhex(sys.argv[1].replace(':', ''))
ip = socket.inet_aton(sys.argv[2])
f = b'\\xff' * 6 + mac + b'\\x08\\x06' + b'\\x00\\x01\\x08\\x00\\x06\\x04\\x00\\x01' + mac + ip + bytes(6) + ip
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
s.send(f + bytes(60 - len(f)))
";

/// The link-local address of eth0 in `vm` (the kernel's, from its MAC).
fn link_local(vm: &Vm) -> String {
    let out = vm.ok(&[
        "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
    ]);
    let addr = out
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .unwrap_or_else(|| panic!("no link-local address in {}: {out}", vm.ns));
    addr.split('/').next().unwrap().to_owned()
}

#[test]
fn vips_and_link_local_addresses_between_real_guests() {
    let tb = Testbed::new();
    let vm =
        |name, mac, ip: &str, ip6: &str| tb.vm(name, VmOpts::new(mac, ip).ip6(ip6).gw("10.0.1.1"));
    let a = vm("a", A, "10.0.1.5/24", "fd00:1::5/64");
    let b = vm("b", B, "10.0.1.6/24", "fd00:1::6/64");
    let c = vm("c", C, "10.0.1.7/24", "fd00:1::7/64");
    // On another network, behind the router.
    let d = tb.vm("d", VmOpts::new(D, "10.0.2.5/24").gw("10.0.2.1"));

    let dir = tb.dir();
    let socket = dir.join("ctl.sock");
    let cfg = [
        node_head("cn1", &dir.join("run")),
        format!(
            "[control]\nsocket = \"{}\"\nstate_file = \"{}\"\n",
            socket.display(),
            dir.join("model.json").display()
        ),
        vm_port("vm-a", "af_packet", &[format!("iface = \"{}\"", a.iface)]),
        vm_port("vm-b", "af_packet", &[format!("iface = \"{}\"", b.iface)]),
        vm_port("vm-c", "af_packet", &[format!("iface = \"{}\"", c.iface)]),
        vm_port("vm-d", "af_packet", &[format!("iface = \"{}\"", d.iface)]),
    ]
    .concat();
    std::fs::write(dir.join("node.toml"), cfg).unwrap();
    let mut dvr = Daemon::start(&dir.join("node.toml"));
    dvr.next();

    let s = socket.as_path();
    ctl(s, &["router", "create", "--distributed", "r1"]);
    for (net, seg) in [("net1", "101"), ("net2", "102")] {
        ctl(
            s,
            &[
                "network",
                "create",
                "--provider-network-type",
                "vxlan",
                "--provider-segment",
                seg,
                net,
            ],
        );
    }
    for (net, name, range) in [
        ("net1", "s4", "10.0.1.0/24"),
        ("net1", "s6", "fd00:1::/64"),
        ("net2", "s24", "10.0.2.0/24"),
    ] {
        ctl(
            s,
            &[
                "subnet",
                "create",
                "--network",
                net,
                "--subnet-range",
                range,
                name,
            ],
        );
    }
    ctl(s, &["router", "add", "subnet", "r1", "s4"]);
    ctl(s, &["router", "add", "subnet", "r1", "s24"]);
    let ip_d = format!("subnet=s24,ip-address={}", d.ip.as_ref().unwrap());
    ctl(
        s,
        &[
            "port",
            "create",
            "--network",
            "net2",
            "--mac-address",
            D,
            "--fixed-ip",
            &ip_d,
            "--host",
            "cn1",
            "--binding",
            "vm-d",
            "pd",
        ],
    );
    let vip_pair = format!("ip-address={VIP}/32");
    for (name, vm, binding, vip) in [
        ("pa", &a, "vm-a", false),
        ("pb", &b, "vm-b", true),
        ("pc", &c, "vm-c", true),
    ] {
        let ip4 = format!("subnet=s4,ip-address={}", vm.ip.as_ref().unwrap());
        let ip6 = format!("subnet=s6,ip-address={}", vm.ip6.as_ref().unwrap());
        let mut args = vec![
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
        ];
        if vip {
            args.extend(["--allowed-address", &vip_pair]);
        }
        args.push(name);
        ctl(s, &args);
    }

    // Fixed addresses: the responder answers.
    a.ping(b.ip.as_ref().unwrap(), 2);
    a.ping(b.ip6.as_ref().unwrap(), 2);

    // Link-local: b's own (EUI-64) address, and another one c gives itself.
    a.ping(&format!("{}%eth0", link_local(&b)), 3);
    c.ok(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fe80::1234/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    a.ping("fe80::1234%eth0", 3);

    // The VIP on b (keepalived's master), which announces nothing (no
    // gratuitous ARP). Routed from net2: the first echo request becomes the
    // router's ARP request to b and c (and is counted); b's answer is
    // learned, and the next ones go to b.
    b.ok(&["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"]);
    d.run(CLIENT_SECS, &["ping", "-c", "1", "-W", "1", VIP]);
    dvr.until(|v| drops(v, "vip_holder_unknown") >= 1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    d.ping(VIP, 3);
    // On net1: a's ARP for it reaches b and c, b answers.
    a.ping(VIP, 3);
    let neigh = a.ok(&["ip", "neigh", "show", VIP, "dev", "eth0"]);
    assert!(neigh.contains(B), "{neigh}");

    // It moves to c, which announces it: a's next pings reach c.
    b.ok(&["ip", "addr", "del", &format!("{VIP}/24"), "dev", "eth0"]);
    c.ok(&["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    c.ok(&["python3", "-c", GARP, C, VIP]);
    a.ping(VIP, 3);
    let neigh = a.ok(&["ip", "neigh", "show", VIP, "dev", "eth0"]);
    assert!(neigh.contains(C), "{neigh}");
    // The router learned it too, within a tick of the control thread.
    std::thread::sleep(std::time::Duration::from_millis(300));
    d.ping(VIP, 3);

    let last = dvr.stop();
    for r in [
        "arp_unknown_target",
        "nd_unknown_target",
        "port_security_ip",
    ] {
        assert_eq!(drops(&last, r), 0, "{r}: {last}");
    }
}
