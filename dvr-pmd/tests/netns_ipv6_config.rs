//! IPv6 configuration from the distributed router, with real Linux clients
//! (network namespaces on `af_packet` ports of one real dvr-pmd): a guest
//! that accepts router advertisements gets its SLAAC address (the EUI-64
//! one of its MAC in the prefix, the port's fixed IP), a default route via
//! the router's link-local address and the network's MTU from the router's
//! answer to its solicitation, then pings the gateway and the other VMs; on
//! a `dhcpv6-stateful` subnet `dhclient -6` gets the port's fixed IPv6
//! address; on a `dhcpv6-stateless` subnet the guest gets SLAAC and
//! `dhclient -6 -S` the DNS server.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::testbed::{ctl, Testbed, Vm, VmOpts};
use common::{drops, dvr_ctl, node_head, vm_port, Daemon, Guard};

const A: &str = "fa:16:3e:00:06:0a";
const B: &str = "fa:16:3e:00:06:0b";
const C: &str = "fa:16:3e:00:06:0c";
const D: &str = "fa:16:3e:00:06:0d";
const E: &str = "fa:16:3e:00:06:0e";
/// The EUI-64 addresses of A, B and D in their prefixes.
const A_SLAAC: &str = "2001:db8:61:0:f816:3eff:fe00:60a";
const B_SLAAC: &str = "2001:db8:61:0:f816:3eff:fe00:60b";
const D_SLAAC: &str = "2001:db8:63:0:f816:3eff:fe00:60d";
const E_SLAAC: &str = "2001:db8:61:0:f816:3eff:fe00:60e";
/// C's fixed address on the stateful subnet.
const C_FIXED: &str = "2001:db8:62::20";

/// dhclient's script: applies an IPv6 lease (a /128 address, as Debian's
/// dhclient-script does) without touching the host's /etc/resolv.conf,
/// and keeps what the reply said in `$LEASE_ENV` (set on the line the test
/// puts before this text).
const DHCLIENT6_SCRIPT: &str = r#"
echo "$reason" >> "$LEASE_ENV.reasons"
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6)
  env | grep '^new_' | sort > "$LEASE_ENV.tmp"
  if [ -n "$new_ip6_address" ]; then
    ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad
  fi
  mv "$LEASE_ENV.tmp" "$LEASE_ENV"
  ;;
esac
exit 0
"#;

const DHCLIENT6_CONF: &str = "request dhcp6.name-servers;\n";

/// Turns on router advertisements and SLAAC on `vm`'s eth0 (the testbed
/// makes VMs with neither), then takes the link down and up: the kernel
/// solicits a router.
fn accept_ra(vm: &Vm) {
    for (k, v) in [
        ("accept_ra", "2"),
        ("autoconf", "1"),
        ("router_solicitations", "3"),
        ("router_solicitation_interval", "1"),
    ] {
        vm.ok(&["sysctl", "-qw", &format!("net.ipv6.conf.eth0.{k}={v}")]);
    }
    vm.ok(&["ip", "link", "set", "eth0", "down"]);
    vm.ok(&["ip", "link", "set", "eth0", "up"]);
}

/// Waits (20 s at most) until `ip -6 ARGS` in `vm` shows `want`; returns it.
fn wait_for(vm: &Vm, args: &[&str], want: &str) -> String {
    let started = Instant::now();
    let mut cmd = vec!["ip", "-6"];
    cmd.extend(args);
    loop {
        let out = vm.ok(&cmd);
        if out.contains(want) {
            return out;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "in {}: no {want} in `ip -6 {}` after 20 s:\n{out}",
            vm.ns,
            args.join(" ")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `dhclient -6` (with `extra` options) in `vm` under a guard, with
/// its own configuration, script, lease and pid files in `dir`; waits (30
/// s at most) until its script has seen a reply; returns the reply's
/// `new_*` variables.
fn dhclient6(vm: &Vm, dir: &Path, extra: &[&str]) -> (Guard, String) {
    std::fs::create_dir_all(dir).unwrap();
    let conf = dir.join("dhclient6.conf");
    std::fs::write(&conf, DHCLIENT6_CONF).unwrap();
    let script = dir.join("dhclient6-script");
    let lease_env = dir.join("lease.env");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nLEASE_ENV='{}'{DHCLIENT6_SCRIPT}",
            lease_env.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    let mut args = vec!["dhclient", "-d", "-6"];
    args.extend(extra);
    let (cf, sf, lf, pf) = (
        conf.to_str().unwrap().to_owned(),
        script.to_str().unwrap().to_owned(),
        dir.join("dhclient6.leases").to_str().unwrap().to_owned(),
        dir.join("dhclient6.pid").to_str().unwrap().to_owned(),
    );
    args.extend(["-cf", &cf, "-sf", &sf, "-lf", &lf, "-pf", &pf, "eth0"]);
    let started = Instant::now();
    let mut cmd = vm.cmd(90, &args);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("dhclient6.log")).unwrap());
    let guard = Guard(Some(cmd.spawn().expect("dhclient")));
    while !lease_env.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "dhclient -6 {extra:?} in {} got no reply in 30 s: {}\nreasons: {}",
            vm.ns,
            std::fs::read_to_string(dir.join("dhclient6.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("lease.env.reasons")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "dhclient -6 {extra:?} in {}: a reply in {:?}",
        vm.ns,
        started.elapsed()
    );
    (guard, std::fs::read_to_string(&lease_env).unwrap())
}

/// The default route and the MTU a guest took from the router's
/// advertisement: via a link-local address, `proto ra`, the network's MTU.
fn assert_router_config(vm: &Vm) {
    let r = wait_for(vm, &["route", "show", "default"], "proto ra");
    assert!(r.contains("via fe80::"), "in {}: {r}", vm.ns);
    let mtu = vm.ok(&["cat", "/proc/sys/net/ipv6/conf/eth0/mtu"]);
    assert_eq!(mtu.trim(), "1450", "in {}: the network's MTU", vm.ns);
}

#[test]
fn slaac_and_dhcpv6_from_the_distributed_router() {
    let tb = Testbed::new();
    let vm = |name, mac: &str| {
        tb.vm(
            name,
            VmOpts {
                mac: mac.into(),
                ..VmOpts::default()
            },
        )
    };
    let (a, b, c, d, e) = (vm("a", A), vm("b", B), vm("c", C), vm("d", D), vm("e", E));

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
        vm_port("vm-e", "af_packet", &[format!("iface = \"{}\"", e.iface)]),
    ]
    .concat();
    std::fs::write(dir.join("node.toml"), cfg).unwrap();
    let mut dvr = Daemon::start(&dir.join("node.toml"));
    dvr.next();

    let s = socket.as_path();
    ctl(s, &["router", "create", "--distributed", "r1"]);
    for (net, seg) in [("net1", "161"), ("net2", "162"), ("net3", "163")] {
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
    // --ip-version is checked against the range.
    let out = Command::new(dvr_ctl())
        .arg("--socket")
        .arg(s)
        .args([
            "subnet",
            "create",
            "--network",
            "net1",
            "--subnet-range",
            "2001:db8:61::/64",
            "--ip-version",
            "4",
            "bad",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--ip-version 4") && err.contains("IPv6"),
        "{err}"
    );
    for (net, name, range, mode, dns) in [
        ("net1", "s61", "2001:db8:61::/64", "slaac", None),
        ("net2", "s62", "2001:db8:62::/64", "dhcpv6-stateful", None),
        (
            "net3",
            "s63",
            "2001:db8:63::/64",
            "dhcpv6-stateless",
            Some("2001:db8::53"),
        ),
    ] {
        let mut args = vec![
            "subnet",
            "create",
            "--network",
            net,
            "--subnet-range",
            range,
            "--ip-version",
            "6",
            "--ipv6-ra-mode",
            mode,
            "--ipv6-address-mode",
            mode,
        ];
        if let Some(d) = dns {
            args.extend(["--dns-nameserver", d]);
        }
        args.push(name);
        ctl(s, &args);
        ctl(s, &["router", "add", "subnet", "r1", name]);
    }
    let show = ctl(s, &["subnet", "show", "s62"]);
    assert!(show.contains("dhcpv6-stateful"), "{show}");
    let c_ip = format!("subnet=s62,ip-address={C_FIXED}");
    for (name, net, mac, binding, fixed) in [
        ("pa", "net1", A, "vm-a", "subnet=s61"),
        ("pb", "net1", B, "vm-b", "subnet=s61"),
        ("pc", "net2", C, "vm-c", c_ip.as_str()),
        ("pd", "net3", D, "vm-d", "subnet=s63"),
    ] {
        ctl(
            s,
            &[
                "port",
                "create",
                "--network",
                net,
                "--mac-address",
                mac,
                "--fixed-ip",
                fixed,
                "--host",
                "cn1",
                "--binding",
                binding,
                name,
            ],
        );
    }
    // The ports' addresses on the automatic subnets are their EUI-64 ones.
    let pa = ctl(s, &["port", "show", "pa"]);
    assert!(pa.contains(A_SLAAC), "{pa}");

    // SLAAC: the guests solicit, the router answers; each has its address
    // and a default route via the router's link-local address.
    for vm in [&a, &b, &c, &d] {
        accept_ra(vm);
    }
    wait_for(
        &a,
        &["addr", "show", "dev", "eth0", "scope", "global"],
        A_SLAAC,
    );
    wait_for(
        &b,
        &["addr", "show", "dev", "eth0", "scope", "global"],
        B_SLAAC,
    );
    wait_for(
        &d,
        &["addr", "show", "dev", "eth0", "scope", "global"],
        D_SLAAC,
    );
    for vm in [&a, &b, &c, &d] {
        assert_router_config(vm);
    }
    // The router's link-local address resolves, as a router.
    a.ping("2001:db8:61::1", 3);
    let neigh = a.ok(&["ip", "-6", "neigh", "show", "dev", "eth0"]);
    assert!(
        neigh
            .lines()
            .any(|l| l.starts_with("fe80::") && l.contains("router")),
        "{neigh}"
    );
    a.ping(B_SLAAC, 3);

    // dhcpv6-stateful: no SLAAC address (A flag off), dhclient -6 gets the
    // port's fixed address.
    let global = c.ok(&["ip", "-6", "addr", "show", "dev", "eth0", "scope", "global"]);
    assert!(
        !global.contains("2001:db8:62:"),
        "no SLAAC on stateful: {global}"
    );
    let (_c_client, lease) = dhclient6(&c, &dir.join("dhcp6-c"), &[]);
    assert!(
        lease.contains(&format!("new_ip6_address={C_FIXED}")),
        "no {C_FIXED} in the lease:\n{lease}"
    );
    wait_for(
        &c,
        &["addr", "show", "dev", "eth0", "scope", "global"],
        C_FIXED,
    );
    // Routed both ways through the distributed router.
    c.ping(A_SLAAC, 3);
    a.ping(C_FIXED, 3);
    c.ping("2001:db8:62::1", 3);

    // dhcpv6-stateless: SLAAC (above), the DNS server from
    // Information-request.
    let (_d_client, info) = dhclient6(&d, &dir.join("dhcp6-d"), &["-S"]);
    assert!(
        info.contains("new_dhcp6_name_servers=2001:db8::53"),
        "no DNS server in the reply:\n{info}"
    );
    assert!(!info.contains("new_ip6_address"), "no lease: {info}");
    d.ping(A_SLAAC, 3);

    // Unsolicited: e accepts advertisements but never solicits; its port
    // appears and the control thread advertises to it at once.
    for (k, v) in [
        ("router_solicitations", "0"),
        ("accept_ra", "2"),
        ("autoconf", "1"),
    ] {
        e.ok(&["sysctl", "-qw", &format!("net.ipv6.conf.eth0.{k}={v}")]);
    }
    ctl(
        s,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--mac-address",
            E,
            "--fixed-ip",
            "subnet=s61",
            "--host",
            "cn1",
            "--binding",
            "vm-e",
            "pe",
        ],
    );
    wait_for(
        &e,
        &["addr", "show", "dev", "eth0", "scope", "global"],
        E_SLAAC,
    );
    assert_router_config(&e);
    e.ping(A_SLAAC, 3);

    let last = dvr.stop();
    for r in [
        "dhcp6_malformed",
        "dhcp6_other_server",
        "malformed_nd",
        "nd_unknown_target",
        "martian_source",
        "port_security_ip",
        "port_security_nd",
    ] {
        assert_eq!(drops(&last, r), 0, "{r}: {last}");
    }
}
