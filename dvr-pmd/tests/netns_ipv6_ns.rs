//! Three hosts, IPv6 north-south (docs/BEHAVIOUR.md, section 3, item 6):
//! two compute nodes (cn1, cn2, agent mode `dvr`, each with a FIP gateway
//! port on the external network) and a network node (nn, `dvr_snat`), each a
//! dvr-pmd in a host namespace of its own with an `underlay` port on the
//! underlay bridge and an `external` port on the external bridge (both
//! `af_packet` on veths). An "internet host" on the external bridge is
//! 203.0.113.254 and 2001:db8:ff::fe, the external subnets' gateways (the
//! router's upstream next hops); it serves HTTP on both.
//!
//! | VM | host | addresses |
//! |---|---|---|
//! | vm1 | cn1 | 10.0.1.11, 2001:db8:1::11 |
//! | vm2 | cn2 | 10.0.1.21, 2001:db8:1::21 |
//!
//! One distributed router r1: 10.0.1.0/24 and 2001:db8:1::/64 (VXLAN
//! 1001), external gateway on `ext` (203.0.113.0/24 and 2001:db8:ff::/64)
//! with its SNAT on nn. The steps run in order (`DVR_6NS_STEPS=...` runs
//! some):
//!
//! - `distributed` (the default): the internet host has 2001:db8:1::/64
//!   on-link. `ping -6` and `curl -6` from each VM to the internet host and
//!   back; on the external bridge every frame from a VM's address leaves
//!   from its host's FIP gateway MAC, every frame to it goes to that MAC,
//!   and the neighbour advertisements for it come from that host alone.
//! - `move` (distributed): port p-vm3 (2001:db8:1::31) moves from cn2 (VM
//!   vm3) to cn1 (VM vm3b: the same MAC and addresses, the VM "moved")
//!   while the internet host pings it every 20 ms: the first echo reply
//!   through cn1 (from its FIP gateway MAC) comes less than a second after
//!   the change began, none through cn2 after it; cn1 sent an unsolicited
//!   neighbour advertisement for the address.
//! - `central`: `router set --ipv6-north-south central r1`; the internet
//!   host routes 2001:db8:1::/64 via the gateway's IPv6 address. The same
//!   traffic; on the external bridge all of it is from and to the router
//!   gateway port's MAC (nn), none from a FIP gateway MAC; nn advertises the
//!   gateway's address and answers `ping -6` to it.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::testbed::{ctl, Testbed, Vm, VmOpts};
use common::{node_head, spawn_guarded, Daemon, Guard, PATIENCE};
use serde_json::Value;

struct Node {
    name: &'static str,
    mode: &'static str,
    vtep: &'static str,
    dvr_mac: &'static str,
    fip_gw: Option<(&'static str, &'static str)>,
}

const NODES: [Node; 3] = [
    Node {
        name: "cn1",
        mode: "dvr",
        vtep: "192.0.2.1",
        dvr_mac: "fa:16:3f:00:00:01",
        fip_gw: Some(("203.0.113.11", "fa:16:3f:aa:00:01")),
    },
    Node {
        name: "cn2",
        mode: "dvr",
        vtep: "192.0.2.2",
        dvr_mac: "fa:16:3f:00:00:02",
        fip_gw: Some(("203.0.113.12", "fa:16:3f:aa:00:02")),
    },
    Node {
        name: "nn",
        mode: "dvr_snat",
        vtep: "192.0.2.3",
        dvr_mac: "fa:16:3f:00:00:03",
        fip_gw: None,
    },
];
const CN1: usize = 0;
const CN2: usize = 1;
const NN: usize = 2;

/// The VMs: name, node index, last byte of the addresses.
const VMS: [(&str, usize, u8); 2] = [("vm1", CN1, 0x11), ("vm2", CN2, 0x21)];
/// The VM of port p-vm3 before and after its move (the same MAC and
/// addresses, last byte [`MOVER`]): name, node index.
const MOVED: [(&str, usize); 2] = [("vm3", CN2), ("vm3b", CN1)];
const MOVER: u8 = 0x31;

const MTU: u32 = 1450;
const INET: &str = "203.0.113.254";
const INET6: &str = "2001:db8:ff::fe";
const INET_MAC: &str = "fa:16:3e:ee:00:fe";
const TENANT6: &str = "2001:db8:1::/64";
const HTTP: u16 = 8000;
const VM_HTTP: u16 = 8080;

struct Bed {
    tb: Testbed,
    ext_bridge: String,
    daemons: Vec<Daemon>,
    sockets: Vec<PathBuf>,
    vms: Vec<Vm>,
    inet: Vm,
    inet_file: PathBuf,
    vm_files: Vec<PathBuf>,
    _services: Vec<Guard>,
}

fn json(socket: &Path, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ctl(socket, &a)).unwrap()
}

fn all(sockets: &[PathBuf], args: &[&str]) {
    for s in sockets {
        ctl(s, args);
    }
}

fn vm6(last: u8) -> String {
    format!("2001:db8:1::{last:x}")
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Waits until `d` logged `what` (with `detail` on the same line).
fn wait_log(d: &Daemon, what: &str, detail: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let log = d.stderr();
        if log.lines().any(|l| l.contains(what) && l.contains(detail)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {what:?} with {detail:?}; stderr:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Bed {
    fn curl(&self, vm: &Vm, url: &str) -> Vec<u8> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let out = self
            .tb
            .dir()
            .join(format!("curl-{}", N.fetch_add(1, Ordering::Relaxed)));
        vm.ok(&[
            "curl",
            "-6",
            "-sS",
            "--connect-timeout",
            "5",
            "--max-time",
            "15",
            "-o",
            out.to_str().unwrap(),
            url,
        ]);
        std::fs::read(&out).unwrap()
    }

    /// `ping -6` and `curl -6` from every VM to the internet host and back.
    fn traffic_both_ways(&self) {
        let want = std::fs::read(&self.inet_file).unwrap();
        for (i, vm) in self.vms.iter().enumerate() {
            vm.ping(INET6, 3);
            self.inet.ping(&vm6(VMS[i].2), 3);
            let got = self.curl(vm, &format!("http://[{INET6}]:{HTTP}/file.bin"));
            assert!(
                got == want,
                "{} -> internet: HTTP content differs",
                VMS[i].0
            );
            let got = self.curl(
                &self.inet,
                &format!("http://[{}]:{VM_HTTP}/{}.bin", vm6(VMS[i].2), VMS[i].0),
            );
            assert!(
                got == std::fs::read(&self.vm_files[i]).unwrap(),
                "internet -> {}: HTTP content differs",
                VMS[i].0
            );
        }
    }
}

fn step_distributed(bed: &mut Bed) {
    for n in [CN1, CN2] {
        wait_log(&bed.daemons[n], "IPv6 upstream router resolved", INET6);
    }
    bed.inet
        .ok(&["ip", "-6", "route", "replace", TENANT6, "dev", "eth0"]);
    let ext = bed.tb.capture(&bed.ext_bridge, "ip6");
    bed.traffic_both_ways();
    let rec = ext.stop();
    for (i, &(name, host, last)) in VMS.iter().enumerate() {
        let a = vm6(last);
        let fip_mac = NODES[host].fip_gw.unwrap().1;
        let out = rec.fields(
            &format!("ipv6.src == {a} && !icmpv6.type == 136"),
            &["eth.src", "eth.dst"],
        );
        assert!(
            !out.is_empty(),
            "nothing from {name} on the external bridge"
        );
        for f in &out {
            assert_eq!(
                (f[0].as_str(), f[1].as_str()),
                (fip_mac, INET_MAC),
                "from {name}: {f:?}"
            );
        }
        let back = rec.fields(&format!("ipv6.dst == {a}"), &["eth.dst"]);
        assert!(!back.is_empty(), "nothing to {name} on the external bridge");
        for f in &back {
            assert_eq!(f[0], fip_mac, "to {name}: {f:?}");
        }
        // The ND proxy: only the VM's host advertises its address.
        let na = rec.fields(
            &format!("icmpv6.type == 136 && icmpv6.nd.na.target_address == {a}"),
            &["eth.src"],
        );
        assert!(!na.is_empty(), "no advertisement of {name}'s address");
        for f in &na {
            assert_eq!(f[0], fip_mac, "advertisement of {name}: {f:?}");
        }
        eprintln!(
            "distributed: {name} ({i}) {} frames out and {} in through {}",
            out.len(),
            back.len(),
            NODES[host].name
        );
    }
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn step_move(bed: &mut Bed) {
    let a = vm6(MOVER);
    bed.inet
        .ok(&["ip", "-6", "route", "replace", TENANT6, "dev", "eth0"]);
    bed.inet.ping(&a, 3);
    let ext = bed.tb.capture(&bed.ext_bridge, "ip6");
    // 200 pings, one every 20 ms: 4 s, the move 1 s in.
    let (mut ping, ping_out) = spawn_guarded(&mut bed.inet.cmd(
        30,
        &["ping", "-6", "-n", "-i", "0.02", "-c", "200", "-W", "1", &a],
    ));
    std::thread::sleep(Duration::from_secs(1));
    let t0 = now_epoch();
    std::thread::scope(|sc| {
        for s in &bed.sockets {
            sc.spawn(move || {
                ctl(
                    s,
                    &[
                        "port",
                        "set",
                        "--host",
                        "cn1",
                        "--binding",
                        "vm-vm3b",
                        "p-vm3",
                    ],
                )
            });
        }
    });
    let applied = now_epoch() - t0;
    let st = ping.wait();
    let ping_out = ping_out.join().unwrap();
    let rec = ext.stop();
    let (cn1, cn2) = (NODES[CN1].fip_gw.unwrap().1, NODES[CN2].fip_gw.unwrap().1);
    let replies = rec.fields(
        &format!("icmpv6.type == 129 && ipv6.src == {a}"),
        &["frame.time_epoch", "eth.src"],
    );
    let t = |f: &Vec<String>| f[0].parse::<f64>().unwrap() - t0;
    let first_cn1 = replies
        .iter()
        .filter(|f| f[1] == cn1)
        .map(t)
        .fold(f64::INFINITY, f64::min);
    let last_cn2 = replies
        .iter()
        .filter(|f| f[1] == cn2)
        .map(t)
        .fold(f64::NEG_INFINITY, f64::max);
    let unsolicited = rec.fields(
        &format!(
            "icmpv6.type == 136 && icmpv6.nd.na.target_address == {a} && icmpv6.nd.na.flag.s == 0"
        ),
        &["frame.time_epoch", "eth.src"],
    );
    let lost = ping_out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .to_owned();
    eprintln!(
        "move: change applied on 3 nodes in {:.1} ms; last reply via cn2 at {:+.1} ms, first via cn1 at {:+.1} ms; unsolicited advertisements {unsolicited:?}; ping: {lost} ({st})",
        applied * 1e3,
        last_cn2 * 1e3,
        first_cn1 * 1e3,
    );
    assert!(
        first_cn1.is_finite(),
        "no echo reply through cn1: {replies:?}"
    );
    assert!(
        first_cn1 < 1.0,
        "the way in followed the port after {first_cn1:.3} s"
    );
    assert!(
        unsolicited.iter().any(|f| f[1] == cn1 && t(f) >= 0.0),
        "no unsolicited advertisement of {a} from cn1: {unsolicited:?}"
    );
    let stale: Vec<_> = replies
        .iter()
        .filter(|f| f[1] == cn2 && t(f) > first_cn1)
        .collect();
    assert!(
        stale.is_empty(),
        "replies via cn2 after the move: {stale:?}"
    );
}

fn step_central(bed: &mut Bed) {
    all(
        &bed.sockets,
        &["router", "set", "--ipv6-north-south", "central", "r1"],
    );
    let r = json(&bed.sockets[NN], &["router", "show", "r1"]);
    let gw_mac = r["gateway"]["mac"].as_str().unwrap().to_owned();
    let gw6 = r["gateway"]["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["ip"].as_str())
        .find(|a| a.contains(':'))
        .unwrap_or_else(|| panic!("no IPv6 gateway address: {r}"))
        .to_owned();
    wait_log(&bed.daemons[NN], "IPv6 upstream router resolved", INET6);
    bed.inet.ok(&["ip", "-6", "neigh", "flush", "dev", "eth0"]);
    bed.inet.ok(&[
        "ip", "-6", "route", "replace", TENANT6, "via", &gw6, "dev", "eth0",
    ]);
    let ext = bed.tb.capture(&bed.ext_bridge, "ip6");
    bed.traffic_both_ways();
    bed.inet.ping(&gw6, 2);
    let rec = ext.stop();
    for &(name, _, last) in &VMS {
        let a = vm6(last);
        let out = rec.fields(&format!("ipv6.src == {a}"), &["eth.src", "eth.dst"]);
        assert!(
            !out.is_empty(),
            "nothing from {name} on the external bridge"
        );
        for f in &out {
            assert_eq!(
                (f[0].as_str(), f[1].as_str()),
                (gw_mac.as_str(), INET_MAC),
                "from {name}: {f:?}"
            );
        }
        let back = rec.fields(&format!("ipv6.dst == {a}"), &["eth.dst"]);
        assert!(!back.is_empty(), "nothing to {name} on the external bridge");
        for f in &back {
            assert_eq!(f[0], gw_mac, "to {name}: {f:?}");
        }
    }
    let na = rec.fields(
        &format!("icmpv6.type == 136 && icmpv6.nd.na.target_address == {gw6}"),
        &["eth.src"],
    );
    assert!(!na.is_empty(), "no advertisement of the gateway {gw6}");
    for f in &na {
        assert_eq!(f[0], gw_mac, "advertisement of the gateway: {f:?}");
    }
}

type Step = fn(&mut Bed);
const STEPS: [(&str, Step); 3] = [
    ("distributed", step_distributed),
    ("move", step_move),
    ("central", step_central),
];

#[test]
fn three_hosts_ipv6_north_south() {
    let wanted: Option<Vec<String>> = std::env::var("DVR_6NS_STEPS")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let tb = Testbed::new();
    tb.bridge("ul");
    let ext_bridge = tb.bridge("ext");
    let hosts: Vec<String> = NODES.iter().map(|n| tb.host(n.name)).collect();
    let underlay: Vec<String> = NODES
        .iter()
        .enumerate()
        .map(|(i, n)| tb.veth_on(&format!("ul{}", i + 1), "ul", n.name))
        .collect();
    let ext_ifaces: Vec<String> = NODES
        .iter()
        .enumerate()
        .map(|(i, n)| tb.veth_on(&format!("ex{}", i + 1), "ext", n.name))
        .collect();
    let vms: Vec<Vm> = VMS
        .iter()
        .map(|&(name, host, last)| {
            let opts = VmOpts::new(
                &format!("fa:16:3e:01:01:{last:02x}"),
                &format!("10.0.1.{last}/24"),
            )
            .ip6(&format!("{}/64", vm6(last)))
            .gw("10.0.1.1")
            .gw6("2001:db8:1::1")
            .mtu(MTU)
            .host(NODES[host].name);
            tb.vm(name, opts)
        })
        .collect();
    let movers: Vec<Vm> = MOVED
        .iter()
        .map(|&(name, host)| {
            let opts = VmOpts::new(
                &format!("fa:16:3e:01:01:{MOVER:02x}"),
                &format!("10.0.1.{MOVER}/24"),
            )
            .ip6(&format!("{}/64", vm6(MOVER)))
            .gw("10.0.1.1")
            .gw6("2001:db8:1::1")
            .mtu(MTU)
            .host(NODES[host].name);
            tb.vm(name, opts)
        })
        .collect();
    let inet = tb.vm(
        "inet",
        VmOpts::new(INET_MAC, &format!("{INET}/24"))
            .ip6(&format!("{INET6}/64"))
            .bridge("ext"),
    );
    let d = tb.dir().to_owned();
    let www = d.join("www-inet");
    std::fs::create_dir_all(&www).unwrap();
    let inet_file = www.join("file.bin");
    std::fs::write(&inet_file, random_bytes(1, 300_000)).unwrap();
    let mut services = vec![inet.spawn(
        900,
        &[
            "/usr/bin/python3",
            "-m",
            "http.server",
            &HTTP.to_string(),
            "--bind",
            INET6,
            "--directory",
            www.to_str().unwrap(),
        ],
    )];
    let mut vm_files = Vec::new();
    for (i, vm) in vms.iter().enumerate() {
        let name = VMS[i].0;
        let dir = d.join(format!("www-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}.bin"));
        std::fs::write(&file, random_bytes(10 + i as u64, 100_000)).unwrap();
        vm_files.push(file);
        services.push(vm.spawn(
            900,
            &[
                "/usr/bin/python3",
                "-m",
                "http.server",
                &VM_HTTP.to_string(),
                "--bind",
                "::",
                "--directory",
                dir.to_str().unwrap(),
            ],
        ));
    }
    inet.wait_listening(HTTP);
    for vm in &vms {
        vm.wait_listening(VM_HTTP);
    }
    let sockets: Vec<PathBuf> = NODES
        .iter()
        .map(|n| d.join(format!("{}.sock", n.name)))
        .collect();
    let daemons: Vec<Daemon> = (0..NODES.len())
        .map(|n| {
            let node = &NODES[n];
            let mut cfg = format!("vtep = \"{}\"\ndvr_mac = \"{}\"\n", node.vtep, node.dvr_mac);
            cfg += &node_head(node.name, &d.join(format!("run-{}", node.name))).replace(
                "agent_mode = \"dvr\"",
                &format!("agent_mode = \"{}\"", node.mode),
            );
            cfg += &format!(
                "[control]\nsocket = \"{}\"\nstate_file = \"{}\"\n",
                sockets[n].display(),
                d.join(format!("{}.json", node.name)).display()
            );
            cfg += &format!(
                "[[ports]]\nname = \"ul\"\nrole = \"underlay\"\nkind = \"af_packet\"\niface = \"{}\"\n",
                underlay[n]
            );
            cfg += &format!(
                "[[ports]]\nname = \"ext\"\nrole = \"external\"\nkind = \"af_packet\"\niface = \"{}\"\n",
                ext_ifaces[n]
            );
            let all_vms = VMS
                .iter()
                .map(|v| (v.0, v.1))
                .chain(MOVED.iter().copied());
            for (vm, (name, host)) in vms.iter().chain(movers.iter()).zip(all_vms) {
                if host == n {
                    cfg += &common::vm_port(
                        &format!("vm-{name}"),
                        "af_packet",
                        &[format!("iface = \"{}\"", vm.iface)],
                    );
                }
            }
            let file = d.join(format!("{}.toml", node.name));
            std::fs::write(&file, cfg).unwrap();
            let mut dm = Daemon::start_in(&hosts[n], &file);
            dm.next();
            dm
        })
        .collect();
    model(&sockets);
    let mut bed = Bed {
        tb,
        ext_bridge,
        daemons,
        sockets,
        vms,
        inet,
        inet_file,
        vm_files,
        _services: services,
    };
    let mut failed = Vec::new();
    for (name, step) in STEPS {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.iter().any(|x| x == name))
        {
            continue;
        }
        let t = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| step(&mut bed)));
        eprintln!(
            "step {name}: {} in {:?}",
            if r.is_ok() { "ok" } else { "FAILED" },
            t.elapsed()
        );
        if let Err(e) = r {
            let text = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{name}: {text}"));
        }
    }
    if !failed.is_empty() {
        for (n, d) in bed.daemons.iter().enumerate() {
            eprintln!("{} stderr:\n{}", NODES[n].name, d.stderr());
        }
    }
    for (n, d) in std::mem::take(&mut bed.daemons).into_iter().enumerate() {
        let last = d.stop();
        eprintln!("{} final drops: {}", NODES[n].name, last["drops"]);
    }
    let Bed { tb, _services, .. } = bed;
    drop(_services);
    tb.down();
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
}

/// The model, the same on every node.
fn model(sockets: &[PathBuf]) {
    for s in sockets {
        for node in &NODES {
            let mut args = vec![
                "host",
                "set",
                "--agent-mode",
                node.mode,
                "--vtep",
                node.vtep,
                "--dvr-mac",
                node.dvr_mac,
            ];
            let fip;
            if let Some((ip, mac)) = node.fip_gw {
                fip = format!("ip={ip},mac={mac}");
                args.extend(["--fip-gateway", &fip]);
            }
            args.push(node.name);
            ctl(s, &args);
        }
    }
    let calls: &[&[&str]] = &[
        &[
            "network",
            "create",
            "--provider-network-type",
            "flat",
            "--external",
            "ext",
        ],
        &[
            "subnet",
            "create",
            "--network",
            "ext",
            "--subnet-range",
            "203.0.113.0/24",
            "--gateway",
            INET,
            "ext4",
        ],
        &[
            "subnet",
            "create",
            "--network",
            "ext",
            "--subnet-range",
            "2001:db8:ff::/64",
            "--ip-version",
            "6",
            "--gateway",
            INET6,
            "ext6",
        ],
        &[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "--provider-segment",
            "1001",
            "--mtu",
            "1450",
            "net1",
        ],
        &[
            "subnet",
            "create",
            "--network",
            "net1",
            "--subnet-range",
            "10.0.1.0/24",
            "s1",
        ],
        &[
            "subnet",
            "create",
            "--network",
            "net1",
            "--subnet-range",
            TENANT6,
            "--ip-version",
            "6",
            "s1v6",
        ],
        &["router", "create", "--distributed", "r1"],
        &["router", "add", "subnet", "r1", "s1"],
        &["router", "add", "subnet", "r1", "s1v6"],
        &[
            "router",
            "set",
            "--external-gateway",
            "ext",
            "--enable-snat",
            "--snat-host",
            "nn",
            "r1",
        ],
    ];
    for c in calls {
        all(sockets, c);
    }
    let movers = std::iter::once((MOVED[0].0, MOVED[0].1, MOVER));
    for (name, host, last) in VMS.iter().copied().chain(movers) {
        let fixed4 = format!("subnet=s1,ip-address=10.0.1.{last}");
        let fixed6 = format!("subnet=s1v6,ip-address={}", vm6(last));
        all(
            sockets,
            &[
                "port",
                "create",
                "--network",
                "net1",
                "--mac-address",
                &format!("fa:16:3e:01:01:{last:02x}"),
                "--fixed-ip",
                &fixed4,
                "--fixed-ip",
                &fixed6,
                "--host",
                NODES[host].name,
                "--binding",
                &format!("vm-{name}"),
                &format!("p-{name}"),
            ],
        );
    }
}
