//! Three hosts, North-South: two compute nodes (cn1, cn2, agent mode `dvr`,
//! each with a FIP gateway port on the external network) and a network node
//! (nn, `dvr_snat`, the router's centralized SNAT), each a dvr-pmd in a host
//! namespace of its own with an `underlay` port on the underlay bridge and an
//! `external` port on the external bridge (both `af_packet` on veths). An
//! "internet host" namespace on the external bridge is 203.0.113.254, the
//! external subnet's gateway (the routers' upstream next hop); it serves HTTP,
//! iperf3 and a TCP + UDP echo. A probe namespace on the external bridge checks
//! those services without the router.
//!
//! | VM | host | address | floating IP |
//! |---|---|---|---|
//! | vm1 | cn1 | 10.0.1.11 | 203.0.113.101 (moved to vm3 by `fip_move`) |
//! | vm2 | cn2 | 10.0.1.21 | none: SNAT through nn |
//! | vm3 | cn2 | 10.0.1.22 | none until `fip_move` |
//!
//! One distributed router r1: 10.0.1.0/24 (VXLAN 1001), external gateway on
//! `ext` (flat, 203.0.113.0/24, gateway 203.0.113.254) at 203.0.113.1 with
//! SNAT on nn. The same model goes to every node through its control socket.
//!
//! The steps share the topology and run in order; each is caught on its own
//! (a failed step is reported, the next ones still run) and the test fails
//! at the end if any did. `DVR_3H_STEPS=ew,snat,...` runs only those steps.
//!
//! - `services`: the internet host's HTTP and echo answer a probe on the
//!   external bridge (no router involved).
//! - `ew`: ping and a TCP transfer between vm1 and vm2/vm3 across hosts, in
//!   VXLAN 1001 between cn1's and cn2's VTEPs only.
//! - `fip_egress`: curl from vm1 to the internet host; the file arrives intact;
//!   on the external bridge its packets have source 203.0.113.101, Ethernet
//!   source cn1's FIP gateway MAC, destination the internet host's MAC, good IP
//!   and TCP checksums; nothing of it crosses the underlay; ARP answers for the
//!   FIP come from cn1 only; iperf3 through the FIP.
//! - `fip_ingress`: curl from the internet host to 203.0.113.101 reaches the
//!   server in vm1 (which sees 203.0.113.254 -> 10.0.1.11: DNAT).
//! - `snat`: curl, ping and iperf3 from vm2 (no FIP) to the internet host; on the
//!   wire the source is the router's gateway IP and MAC, leaving nn's external
//!   port; the flow crosses the underlay from cn2 to nn; the internet host cannot
//!   connect to vm2's server through the gateway IP, and nn counts
//!   `nat_no_session` for it; `dvr-ctl show sessions r1` on nn lists one TCP
//!   session for the curl (its outside address and port the ones on the wire)
//!   and one ICMP session for the ping.
//! - `pmtu`: vm1 and vm2 with MTU 1500 on their 1450 network (a guest that
//!   ignores DHCP's MTU): iperf3 for 5 s each way through SNAT (vm2) and
//!   through the floating IP (vm1) moves data, the internet host sending
//!   first (nn and cn1 answer its too-big segments after translating them:
//!   both count `fragmentation_needed`); `ping -M do -s 1472` from vm2
//!   through SNAT prints the router's "Frag needed and DF set (mtu = 1450)"
//!   (cn2 counts it).
//! - `dhcp`: a new VM (vm4, no address) on an `af_packet` interface added
//!   to cn2 at run time, its port 10.0.1.23: `dhclient` gets the address,
//!   MTU 1450, the subnet's DNS server and routes (default, metadata, a host
//!   route) from cn2 itself; iperf3 through SNAT each way with no
//!   `fragmentation_needed` on cn2 or nn.
//! - `snat_1000`: 1,000 TCP connections from vm2 to the echo server, all open at
//!   once, each with its own bytes, every byte checked; 1,000 distinct
//!   translated source ports from the gateway IP on the wire; nn's two
//!   workers created 1,000 sessions in all (none twice) and handed frames to
//!   each other (a return packet reaches the worker owning its session).
//! - `fip_move`: `floating ip unset --port` then `set --port p-vm3` on the three
//!   nodes at once, while the internet host pings 203.0.113.101 every 20 ms:
//!   the first echo reply through cn2 (from cn2's FIP gateway MAC) comes less
//!   than a second after the change began (the gap is printed), none through
//!   cn1 after it; cn2 sent a gratuitous ARP for the FIP; vm3 got the
//!   requests; curl to the FIP now reaches vm3's server; vm1 now leaves
//!   through SNAT.
//! - `exhaustion`: nn restarted with `[nat] port_range = "40000-40003"` and
//!   one worker (nn runs two otherwise, each with its SNAT table):
//!   4 TCP connections from vm2 hold the 4 ports, 4 more fail, the 4 held ones
//!   still echo intact; the same with UDP; nn counts `nat_ports_exhausted`;
//!   translated ports on the wire are inside the range.
//!
//! Every step's external capture must also show no tenant (10.0.1.0/24)
//! address, no DVR or router-interface MAC, no overlay and no bad IP, TCP, UDP
//! or ICMP checksum (a TCP checksum 0xffff where 0x0000 is computed is the same
//! number in one's complement and is only noted). Over the whole run, cn1 must
//! have sent a gratuitous ARP for the FIP when it was associated.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::testbed::{ctl, tcp_transfer, Capture, Recording, Testbed, Vm, VmOpts};
use common::{drops, node_head, spawn_guarded, Daemon, Guard, PATIENCE};
use serde_json::Value;

/// A node: name, agent mode, VTEP, DVR MAC, FIP gateway (IP, MAC).
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

/// The VMs: name, node index, last byte of the address.
const VMS: [(&str, usize, u8); 3] = [("vm1", CN1, 11), ("vm2", CN2, 21), ("vm3", CN2, 22)];

const MTU: u32 = 1450;
const TENANT_GW: &str = "10.0.1.1";
/// The internet host: the external subnet's gateway.
const INET: &str = "203.0.113.254";
const INET_MAC: &str = "fa:16:3e:ee:00:fe";
const PROBE: &str = "203.0.113.250";
/// The router's external gateway address (SNAT).
const ROUTER_GW: &str = "203.0.113.1";
const FIP: &str = "203.0.113.101";
/// Services of the internet host: HTTP, iperf3, echo (TCP here, UDP + 1).
const HTTP: u16 = 8000;
const IPERF: u16 = 5201;
const ECHO: u16 = 7000;
/// The HTTP server in vm1 and vm3 (and vm2, for the inbound check).
const VM_HTTP: u16 = 8080;
/// The tiny translation range of the exhaustion step.
const TINY_RANGE: (u16, u16) = (40000, 40003);

/// What the steps share.
struct Bed {
    tb: Testbed,
    hosts: Vec<String>,
    underlay: Vec<String>,
    ext_ifaces: Vec<String>,
    daemons: Vec<Option<Daemon>>,
    sockets: Vec<PathBuf>,
    vms: Vec<Vm>,
    inet: Vm,
    probe: Vm,
    ext_bridge: String,
    ul_bridge: String,
    /// The router gateway port's MAC (generated by the model).
    router_gw_mac: String,
    /// The router's interface MAC on 10.0.1.0/24.
    router_if_mac: String,
    /// Files the internet host serves, and one per VM server.
    inet_file: PathBuf,
    /// Background services, ended with the testbed.
    _services: Vec<Guard>,
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ns_scripts")
}

fn json(socket: &Path, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ctl(socket, &a)).unwrap()
}

/// `dvr-ctl` with the same arguments on every node, one after the other.
fn all(sockets: &[PathBuf], args: &[&str]) {
    for s in sockets {
        ctl(s, args);
    }
}

/// Several `dvr-ctl` calls, in order, on every node at once (as a
/// controller pushes a change to its agents).
fn all_at_once(sockets: &[PathBuf], calls: &[&[&str]]) {
    std::thread::scope(|sc| {
        let hs: Vec<_> = sockets
            .iter()
            .map(|s| {
                sc.spawn(move || {
                    for args in calls {
                        ctl(s, args);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
    });
}

/// Waits until `d` logged that it resolved `vtep` on the underlay.
fn wait_resolved(d: &Daemon, vtep: &str) {
    let want = format!("vtep={vtep} mac=");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let log = d.stderr();
        if log
            .lines()
            .map(str::to_owned)
            .any(|l| l.contains("underlay neighbour resolved") && l.contains(&want))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "VTEP {vtep} not resolved; stderr:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Random bytes (xorshift64*), seeded.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        data.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    data.truncate(len);
    data
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The config of node `n`; `extra` is appended (a `[nat]` table, say);
/// `workers`: the `[cores] workers` line.
fn node_config(
    b_dir: &Path,
    n: usize,
    underlay: &str,
    external: &str,
    vms: &[Vm],
    extra: &str,
    workers: &str,
) -> PathBuf {
    let node = &NODES[n];
    let mut cfg = format!("vtep = \"{}\"\ndvr_mac = \"{}\"\n", node.vtep, node.dvr_mac);
    cfg += &node_head(node.name, &b_dir.join(format!("run-{}", node.name))).replace(
        "agent_mode = \"dvr\"",
        &format!("agent_mode = \"{}\"", node.mode),
    );
    cfg = cfg.replace("workers = [1]", workers);
    cfg += &format!(
        "[control]\nsocket = \"{}\"\nstate_file = \"{}\"\n",
        b_dir.join(format!("{}.sock", node.name)).display(),
        b_dir.join(format!("{}.json", node.name)).display()
    );
    cfg += extra;
    cfg += &format!(
        "[[ports]]\nname = \"ul\"\nrole = \"underlay\"\nkind = \"af_packet\"\niface = \"{underlay}\"\n"
    );
    cfg += &format!(
        "[[ports]]\nname = \"ext\"\nrole = \"external\"\nkind = \"af_packet\"\niface = \"{external}\"\n"
    );
    for (vm, &(name, host, _)) in vms.iter().zip(VMS.iter()) {
        if host == n {
            cfg += &common::vm_port(
                &format!("vm-{name}"),
                "af_packet",
                &[format!("iface = \"{}\"", vm.iface)],
            );
        }
    }
    let file = b_dir.join(format!("{}.toml", node.name));
    std::fs::write(&file, cfg).unwrap();
    file
}

impl Bed {
    fn dir(&self) -> &Path {
        self.tb.dir()
    }

    fn vm(&self, name: &str) -> &Vm {
        let i = VMS.iter().position(|v| v.0 == name).unwrap();
        &self.vms[i]
    }

    fn ip(name: &str) -> String {
        let v = VMS.iter().find(|v| v.0 == name).unwrap();
        format!("10.0.1.{}", v.2)
    }

    fn errors(&self, n: usize) -> Value {
        json(&self.sockets[n], &["show", "errors"])
    }

    fn ext_capture(&self) -> Capture {
        self.tb.capture(&self.ext_bridge, "")
    }

    /// A capture of what node `n` sends on the external network (the bridge
    /// end of its external veth).
    fn ext_port_capture(&self, n: usize) -> Capture {
        self.tb.capture(&format!("{}_b", self.ext_ifaces[n]), "")
    }

    fn fip_mac(n: usize) -> &'static str {
        NODES[n].fip_gw.unwrap().1
    }

    /// Starts node `n` (its config written anew with `extra`).
    /// Starts node `n`. The SNAT node runs two workers (one on the main
    /// core: this machine has two), each with its own SNAT table and share
    /// of the ports: frames meet their session's owner through the hand-off.
    fn start_node(&mut self, n: usize, extra: &str) {
        let workers = if NODES[n].mode == "dvr_snat" {
            "workers = [0, 1]"
        } else {
            "workers = [1]"
        };
        self.start_node_with(n, extra, workers);
    }

    fn start_node_with(&mut self, n: usize, extra: &str, workers: &str) {
        let file = node_config(
            self.tb.dir(),
            n,
            &self.underlay[n],
            &self.ext_ifaces[n],
            &self.vms,
            extra,
            workers,
        );
        let mut d = Daemon::start_in(&self.hosts[n], &file);
        d.next();
        self.daemons[n] = Some(d);
    }

    fn daemon(&self, n: usize) -> &Daemon {
        self.daemons[n].as_ref().unwrap()
    }

    /// curl `url` in `vm` into a file; returns the file's bytes.
    fn curl(&self, vm: &Vm, url: &str) -> Vec<u8> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let out = self
            .dir()
            .join(format!("curl-{}", N.fetch_add(1, Ordering::Relaxed)));
        vm.ok(&[
            "curl",
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
}

/// Checks that hold for every frame on the external bridge.
fn check_external_clean(rec: &Recording, bed: &Bed) {
    let tenant = rec.fields(
        "ip.addr == 10.0.0.0/8",
        &["frame.number", "ip.src", "ip.dst"],
    );
    assert!(
        tenant.is_empty(),
        "tenant addresses on the external network: {tenant:?}"
    );
    let overlay = rec.fields("vxlan || gre", &["frame.number"]);
    assert!(
        overlay.is_empty(),
        "overlay frames on the external network: {overlay:?}"
    );
    let mut inner: Vec<&str> = NODES.iter().map(|n| n.dvr_mac).collect();
    inner.push(&bed.router_if_mac);
    for m in inner {
        let f = rec.fields(
            &format!("eth.addr == {m}"),
            &["frame.number", "eth.src", "eth.dst"],
        );
        assert!(f.is_empty(), "MAC {m} on the external network: {f:?}");
    }
    let c = checksums(rec, "ip");
    assert!(
        c.bad.is_empty(),
        "bad checksums on the external network: {:?}",
        c.bad
    );
    if !c.minus_zero.is_empty() {
        eprintln!(
            "note: {} TCP checksums 0xffff for 0x0000 (RFC 1624, valid) on the external network, from {:?}",
            c.minus_zero.len(),
            {
                let mut from: Vec<&String> = c.minus_zero.iter().map(|f| &f[1]).collect();
                from.sort();
                from.dedup();
                from
            }
        );
    }
}

/// The checksum verdicts of the frames matching a display filter.
struct Checksums {
    /// Frames (number, source, destination, statuses...) with a checksum wrong.
    bad: Vec<Vec<String>>,
    /// Frames whose TCP checksum is 0xffff where 0x0000 is computed: the same
    /// value in one's complement (RFC 1624 section 3; receivers accept it),
    /// which Wireshark flags.
    minus_zero: Vec<Vec<String>>,
    /// Frames that matched.
    frames: usize,
}

fn checksums(rec: &Recording, filter: &str) -> Checksums {
    let f = rec.fields_with(
        CHECKSUMS,
        filter,
        &[
            "frame.number",
            "ip.src",
            "ip.dst",
            "ip.checksum.status",
            "tcp.checksum.status",
            "tcp.checksum",
            "tcp.checksum_calculated",
            "udp.checksum.status",
            "icmp.checksum.status",
        ],
    );
    let mut c = Checksums {
        bad: Vec::new(),
        minus_zero: Vec::new(),
        frames: f.len(),
    };
    for x in f {
        // Inner headers (an ICMP error's quote) come after the outer: first.
        let first = |i: usize| x[i].split(',').next().unwrap_or("").to_owned();
        let ip_bad = first(3) == "0";
        let tcp_bad = first(4) == "0";
        let other_bad = first(7) == "0" || first(8) == "0";
        let tcp_minus_zero = tcp_bad && first(5) == "0xffff" && first(6) == "0x0000";
        if ip_bad || other_bad || (tcp_bad && !tcp_minus_zero) {
            c.bad.push(x);
        } else if tcp_minus_zero {
            c.minus_zero.push(x);
        }
    }
    c
}

/// tshark options that make it verify checksums (status 1 good, 0 bad).
const CHECKSUMS: &[&str] = &[
    "-o",
    "ip.check_checksum:TRUE",
    "-o",
    "tcp.check_checksum:TRUE",
    "-o",
    "udp.check_checksum:TRUE",
];

/// Asserts that the frames matching `filter` exist and have good IP and TCP
/// checksums; returns how many frames, and how many had 0xffff for 0x0000.
fn assert_checksums_good(rec: &Recording, filter: &str) -> (usize, usize) {
    let c = checksums(rec, filter);
    assert!(c.frames > 0, "no frame matches {filter}");
    assert!(c.bad.is_empty(), "bad checksums in {filter}: {:?}", c.bad);
    (c.frames, c.minus_zero.len())
}

/// A one-second iperf3 run from `vm` to the internet host: it must move data
/// without error (the byte-exact checks are curl's and the echo's).
fn iperf(vm: &Vm, how: &str) {
    let o = vm.ok(&[
        "iperf3",
        "-c",
        INET,
        "-p",
        &IPERF.to_string(),
        "-t",
        "1",
        "-J",
    ]);
    let v: Value = serde_json::from_str(&o).unwrap_or_else(|e| panic!("iperf3 JSON: {e}: {o}"));
    assert!(v.get("error").is_none(), "iperf3 via {how}: {}", v["error"]);
    let recv = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(recv > 0, "iperf3 via {how}: nothing received: {o}");
    eprintln!(
        "iperf3 via {how}: {recv} bytes in 1 s, {:.0} Mbit/s",
        bps / 1e6
    );
}

fn step_services(bed: &mut Bed) {
    let got = bed.curl(&bed.probe, &format!("http://{INET}:{HTTP}/file.bin"));
    assert!(
        got == std::fs::read(&bed.inet_file).unwrap(),
        "probe: HTTP content differs"
    );
    bed.probe.ping(INET, 2);
    let o = bed.probe.ok(&[
        "/usr/bin/python3",
        scripts().join("echo_clients.py").to_str().unwrap(),
        "many",
        INET,
        &ECHO.to_string(),
        "5",
    ]);
    let v: Value = serde_json::from_str(o.trim()).unwrap();
    assert_eq!(v["intact"], 5, "probe echo: {v}");
}

fn step_ew(bed: &mut Bed) {
    let cap = bed.tb.capture(&bed.ul_bridge, "");
    let (vm1, vm2, vm3) = (bed.vm("vm1"), bed.vm("vm2"), bed.vm("vm3"));
    vm1.ping(&Bed::ip("vm2"), 3);
    vm2.ping(&Bed::ip("vm1"), 3);
    vm1.ping(&Bed::ip("vm3"), 3);
    vm3.ping(TENANT_GW, 2);
    vm1.ping(TENANT_GW, 2);
    tcp_transfer(bed.dir(), vm1, vm2, &Bed::ip("vm2"), 5101, 256 << 10).assert_intact();
    let rec = cap.stop();
    // Across the overlay between cn1 and cn2, never nn.
    let f = rec.fields("vxlan", &["ip.src", "ip.dst", "vxlan.vni"]);
    assert!(!f.is_empty(), "no VXLAN on the underlay");
    for x in &f {
        let outer = (
            x[0].split(',').next().unwrap(),
            x[1].split(',').next().unwrap(),
        );
        assert!(
            [
                (NODES[CN1].vtep, NODES[CN2].vtep),
                (NODES[CN2].vtep, NODES[CN1].vtep)
            ]
            .contains(&outer),
            "E-W between cn1 and cn2 only: {x:?}"
        );
        assert_eq!(x[2], "1001", "{x:?}");
    }
}

fn step_fip_egress(bed: &mut Bed) {
    let ext = bed.ext_capture();
    let ul = bed.tb.capture(&bed.ul_bridge, "");
    let vm1 = bed.vm("vm1");
    let got = bed.curl(vm1, &format!("http://{INET}:{HTTP}/file.bin"));
    assert!(
        got == std::fs::read(&bed.inet_file).unwrap(),
        "vm1 -> internet: HTTP content differs ({} bytes)",
        got.len()
    );
    let rec = ext.stop();
    let ul = ul.stop();
    iperf(vm1, "FIP");

    let cn1 = Bed::fip_mac(CN1);
    let out = rec.fields(
        &format!("tcp && ip.src == {FIP} && ip.dst == {INET}"),
        &["eth.src", "eth.dst"],
    );
    assert!(
        !out.is_empty(),
        "no TCP from the FIP on the external bridge"
    );
    for f in &out {
        assert_eq!(
            (f[0].as_str(), f[1].as_str()),
            (cn1, INET_MAC),
            "FIP egress frame: {f:?}"
        );
    }
    let back = rec.fields(&format!("tcp && ip.dst == {FIP}"), &["eth.dst"]);
    for f in &back {
        assert_eq!(f[0], cn1, "to the FIP: {f:?}");
    }
    let (n, mz) = assert_checksums_good(&rec, &format!("tcp && ip.src == {FIP}"));
    // Who answers ARP for the FIP: cn1 alone.
    for f in rec.fields(
        &format!("arp.opcode == 2 && arp.src.proto_ipv4 == {FIP}"),
        &["eth.src", "arp.src.hw_mac"],
    ) {
        assert_eq!(
            (f[0].as_str(), f[1].as_str()),
            (cn1, cn1),
            "ARP reply for the FIP: {f:?}"
        );
    }
    // Nor do any of the egress frames leave with the router's gateway IP.
    assert!(
        rec.fields(&format!("ip.src == {ROUTER_GW}"), &["frame.number"])
            .is_empty(),
        "SNAT used for vm1"
    );
    let tunnelled = ul.fields(&format!("ip.addr == {INET}"), &["frame.number"]);
    assert!(
        tunnelled.is_empty(),
        "vm1's N-S traffic crossed the underlay: {tunnelled:?}"
    );
    check_external_clean(&rec, bed);
    eprintln!(
        "fip_egress: {} frames from the FIP to the internet host, {n} TCP checksums checked ({mz} 0xffff for 0x0000)",
        out.len()
    );
}

fn step_fip_ingress(bed: &mut Bed) {
    let vm1 = bed.vm("vm1");
    let in_vm = bed.tb.capture_vm(vm1, "tcp");
    let ext = bed.ext_capture();
    let t = Instant::now();
    let got = bed.curl(&bed.inet, &format!("http://{FIP}:{VM_HTTP}/vm1.bin"));
    eprintln!("fip_ingress: curl took {:?}", t.elapsed());
    assert!(
        got == std::fs::read(bed.dir().join("www-vm1/vm1.bin")).unwrap(),
        "internet -> FIP: content differs"
    );
    let rec = ext.stop();
    let seen = in_vm
        .stop()
        .fields(&format!("tcp.dstport == {VM_HTTP}"), &["ip.src", "ip.dst"]);
    assert!(!seen.is_empty(), "vm1 saw no connection");
    for f in &seen {
        assert_eq!(
            (f[0].as_str(), f[1].as_str()),
            (INET, "10.0.1.11"),
            "DNAT in vm1: {f:?}"
        );
    }
    let cn1 = Bed::fip_mac(CN1);
    for f in rec.fields(&format!("ip.dst == {FIP}"), &["eth.dst"]) {
        assert_eq!(f[0], cn1, "to the FIP: {f:?}");
    }
    for f in rec.fields(&format!("ip.src == {FIP}"), &["eth.src"]) {
        assert_eq!(f[0], cn1, "from the FIP: {f:?}");
    }
    for f in rec.fields(
        &format!("arp.opcode == 2 && arp.src.proto_ipv4 == {FIP}"),
        &["eth.src", "arp.src.hw_mac"],
    ) {
        assert_eq!(
            (f[0].as_str(), f[1].as_str()),
            (cn1, cn1),
            "ARP reply for the FIP: {f:?}"
        );
    }
    assert_checksums_good(&rec, &format!("tcp && ip.src == {FIP}"));
    check_external_clean(&rec, bed);
}

fn step_snat(bed: &mut Bed) {
    let vm2 = bed.vm("vm2");
    let ext = bed.ext_capture();
    let nn_port = bed.ext_port_capture(NN);
    let ul = bed.tb.capture(&bed.ul_bridge, "");
    let got = bed.curl(vm2, &format!("http://{INET}:{HTTP}/file.bin"));
    assert!(
        got == std::fs::read(&bed.inet_file).unwrap(),
        "vm2 -> internet: HTTP content differs ({} bytes)",
        got.len()
    );
    vm2.ping(INET, 3);
    // nn's sessions of vm2 with the internet host's HTTP and echo: the
    // curl's connection and the ping's echo id (their outside port is
    // checked against the wire below).
    let listed = json(&bed.sockets[NN], &["show", "sessions", "r1"]);
    let vm2_ip = Bed::ip("vm2");
    let mine: Vec<&Value> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["inside"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{vm2_ip}:"))
                && (e["remote"] == format!("{INET}:{HTTP}")
                    || (e["protocol"] == "icmp" && e["remote"] == format!("{INET}:0")))
        })
        .collect();
    let tcp: Vec<&&Value> = mine.iter().filter(|e| e["protocol"] == "tcp").collect();
    assert_eq!(tcp.len(), 1, "one session for the curl: {listed}");
    assert_eq!(
        mine.iter().filter(|e| e["protocol"] == "icmp").count(),
        1,
        "one session for the ping: {listed}"
    );
    assert_eq!(listed["unanswered"], serde_json::json!([]), "{listed}");
    for e in &mine {
        assert!(
            e["outside"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{ROUTER_GW}:")),
            "{e}"
        );
        assert_eq!(e["router"], "r1", "{e}");
    }
    let curl_outside = tcp[0]["outside"].as_str().unwrap().to_owned();

    // Unsolicited inbound: vm2 serves, the internet host tries the gateway IP.
    let before = drops(&bed.errors(NN), "nat_no_session");
    let in_vm = bed.tb.capture_vm(vm2, &format!("tcp port {VM_HTTP}"));
    let o = bed.inet.run(
        15,
        &[
            "curl",
            "-sS",
            "--connect-timeout",
            "3",
            "--max-time",
            "5",
            &format!("http://{ROUTER_GW}:{VM_HTTP}/"),
        ],
    );
    assert!(
        !o.status.success(),
        "the internet host reached {ROUTER_GW}:{VM_HTTP}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let reached = in_vm.stop().fields("tcp", &["ip.src", "ip.dst"]);
    assert!(reached.is_empty(), "inbound reached vm2: {reached:?}");
    let after = drops(&bed.errors(NN), "nat_no_session");
    let (rec, nn_rec, ul) = (ext.stop(), nn_port.stop(), ul.stop());
    assert!(
        after > before,
        "nn counted no nat_no_session for the inbound SYNs ({before} -> {after})"
    );

    let gw_mac = bed.router_gw_mac.as_str();
    let out_filter =
        format!("ip.dst == {INET} && (tcp.dstport == {HTTP} || tcp.dstport == {IPERF} || icmp)");
    let out = rec.fields(&out_filter, &["ip.src", "eth.src", "eth.dst"]);
    assert!(!out.is_empty(), "no SNAT traffic on the external bridge");
    for f in &out {
        assert_eq!(
            (f[0].as_str(), f[1].as_str(), f[2].as_str()),
            (ROUTER_GW, gw_mac, INET_MAC),
            "SNAT egress frame: {f:?}"
        );
    }
    let curl_ports: std::collections::BTreeSet<String> = rec
        .fields(
            &format!("ip.src == {ROUTER_GW} && tcp.dstport == {HTTP}"),
            &["tcp.srcport"],
        )
        .into_iter()
        .map(|f| format!("{ROUTER_GW}:{}", f[0]))
        .collect();
    assert_eq!(
        curl_ports.into_iter().collect::<Vec<_>>(),
        vec![curl_outside],
        "the curl's translated source on the wire is its session's outside"
    );
    let from_nn = nn_rec.fields(&out_filter, &["frame.number"]);
    assert_eq!(
        from_nn.len(),
        out.len(),
        "SNAT frames leaving nn's external port vs. on the bridge"
    );
    for f in rec.fields(
        &format!("ip.dst == {ROUTER_GW} && ip.src == {INET} && tcp.srcport == {HTTP}"),
        &["eth.dst"],
    ) {
        assert_eq!(f[0], gw_mac, "replies to the gateway IP: {f:?}");
    }
    for f in rec.fields(
        &format!("arp.opcode == 2 && arp.src.proto_ipv4 == {ROUTER_GW}"),
        &["eth.src", "arp.src.hw_mac"],
    ) {
        assert_eq!(
            (f[0].as_str(), f[1].as_str()),
            (gw_mac, gw_mac),
            "ARP reply for the gateway IP: {f:?}"
        );
    }
    let (n, mz) = assert_checksums_good(&rec, &format!("tcp && ip.src == {ROUTER_GW}"));
    eprintln!(
        "snat: {} frames out, {n} TCP checksums from the gateway IP checked ({mz} 0xffff for 0x0000)",
        out.len()
    );
    // vm2's traffic crossed the overlay between cn2 and nn.
    let tun = ul.fields(
        &format!("vxlan && ip.src == {} && ip.dst == {INET}", Bed::ip("vm2")),
        &["ip.src", "ip.dst"],
    );
    assert!(
        !tun.is_empty(),
        "vm2's SNAT traffic not seen on the underlay"
    );
    for f in &tun {
        let outer = (
            f[0].split(',').next().unwrap(),
            f[1].split(',').next().unwrap(),
        );
        assert_eq!(outer, (NODES[CN2].vtep, NODES[NN].vtep), "cn2 -> nn: {f:?}");
    }
    // And the replies, translated back on nn, crossed it from nn to cn2.
    let back = ul.fields(
        &format!("vxlan && ip.src == {INET} && ip.dst == {}", Bed::ip("vm2")),
        &["ip.src", "ip.dst"],
    );
    assert!(!back.is_empty(), "replies to vm2 not seen on the underlay");
    for f in &back {
        let outer = (
            f[0].split(',').next().unwrap(),
            f[1].split(',').next().unwrap(),
        );
        assert_eq!(outer, (NODES[NN].vtep, NODES[CN2].vtep), "nn -> cn2: {f:?}");
    }
    check_external_clean(&rec, bed);
    iperf(vm2, "SNAT");
}

/// VMs with MTU 1500 on their network of MTU 1450 (guests that ignore
/// DHCP's MTU option) for the `pmtu` step; back to 1450, their path MTU
/// memory flushed, when dropped (also when the step fails).
struct Mtu1500<'a> {
    bed: &'a Bed,
    vms: Vec<&'static str>,
}

impl<'a> Mtu1500<'a> {
    fn set(bed: &'a Bed, vms: &[&'static str]) -> Self {
        let m = Mtu1500 {
            bed,
            vms: vms.to_vec(),
        };
        m.mtu("1500");
        m
    }

    /// Both ends of each VM's link: a frame the VM sends must reach dvr-pmd.
    fn mtu(&self, mtu: &str) {
        for name in &self.vms {
            let i = VMS.iter().position(|v| v.0 == *name).unwrap();
            let vm = &self.bed.vms[i];
            let host = &self.bed.hosts[VMS[i].1];
            let o = std::process::Command::new("ip")
                .args(["-n", host, "link", "set", &vm.iface, "mtu", mtu])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            vm.ok(&["ip", "link", "set", "eth0", "mtu", mtu]);
            vm.ok(&["ip", "route", "flush", "cache"]);
        }
    }
}

impl Drop for Mtu1500<'_> {
    fn drop(&mut self) {
        self.mtu(&MTU.to_string());
    }
}

/// `iperf3` for 5 s between `vm` and the internet host (`-R`: the internet
/// host sends): it must move data.
fn iperf5(vm: &Vm, how: &str, reverse: bool) -> u64 {
    let port = IPERF.to_string();
    let mut args = vec!["iperf3", "-c", INET, "-p", &port, "-t", "5", "-J"];
    if reverse {
        args.push("-R");
    }
    let o = vm.run(40, &args);
    let out = String::from_utf8_lossy(&o.stdout);
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("iperf3 {how} JSON: {e}: {out}"));
    assert!(v.get("error").is_none(), "iperf3 {how}: {}", v["error"]);
    let recv = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    eprintln!(
        "pmtu: iperf3 {how}: {recv} bytes in 5 s, {:.0} Mbit/s",
        bps / 1e6
    );
    assert!(recv > 1 << 20, "iperf3 {how}: under 1 MiB received: {out}");
    recv
}

fn step_pmtu(bed: &mut Bed) {
    let bed: &Bed = bed;
    let _mtu = Mtu1500::set(bed, &["vm1", "vm2"]);
    let (vm1, vm2) = (bed.vm("vm1"), bed.vm("vm2"));
    let frag_needed = |n: usize| drops(&bed.errors(n), "fragmentation_needed");
    let before: Vec<u64> = [CN1, CN2, NN].into_iter().map(frag_needed).collect();
    // The internet host sends first (the VMs have not learnt a path MTU:
    // their SYNs offer 1460-byte segments): nn answers what is too big for
    // the overlay to cn2 after the session's translation, cn1 what is too
    // big for vm1's network after the floating IP's.
    iperf5(vm2, "through SNAT, reverse", true);
    assert!(frag_needed(NN) > before[2], "nn answered nothing too big");
    iperf5(vm1, "through the floating IP, reverse", true);
    assert!(frag_needed(CN1) > before[0], "cn1 answered nothing too big");
    // A full-size ping with DF through SNAT: the router's answer, from the
    // network's gateway, with the overlay's MTU.
    let o = vm2.run(
        20,
        &[
            "ping", "-4", "-n", "-M", "do", "-s", "1472", "-c", "2", "-i", "0.5", "-W", "2", INET,
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "From {TENANT_GW} icmp_seq=1 Frag needed and DF set (mtu = {MTU})"
        )),
        "ping -M do -s 1472 through SNAT: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        frag_needed(CN2) > before[1],
        "cn2 counted no fragmentation_needed"
    );
    // The VMs send: TCP finds the path's MTU through SNAT and the floating IP.
    iperf5(vm2, "through SNAT", false);
    iperf5(vm1, "through the floating IP", false);
    eprintln!(
        "pmtu: fragmentation_needed answered by cn1 {}, cn2 {}, nn {}",
        frag_needed(CN1) - before[0],
        frag_needed(CN2) - before[1],
        frag_needed(NN) - before[2]
    );
}

/// dhclient's configuration for the DHCP step: what it asks for (the
/// classless static routes declared, as Debian's own configuration does).
const DHCLIENT_CONF: &str =
    "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, routers, domain-name-servers, interface-mtu, rfc3442-classless-static-routes;
";

/// dhclient's script for the DHCP step: applies the lease as Debian's
/// dhclient-script does (address, MTU, classless routes, else the router)
/// without touching the host's /etc/resolv.conf, and keeps what the lease
/// said in `$LEASE_ENV` (set on the line the test puts before this text:
/// dhclient gives its script an environment of its own).
const DHCLIENT_SCRIPT: &str = r#"
case "$reason" in
PREINIT) ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
  env | grep '^new_' | sort > "$LEASE_ENV.tmp"
  [ -n "$new_interface_mtu" ] && ip link set dev "$interface" mtu "$new_interface_mtu"
  ip -4 addr flush dev "$interface"
  ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
  if [ -n "$new_rfc3442_classless_static_routes" ]; then
    set -- $new_rfc3442_classless_static_routes
    while [ $# -gt 0 ]; do
      len=$1; shift
      n=$(( (len + 7) / 8 )); net=""; i=0
      while [ $i -lt 4 ]; do
        if [ $i -lt $n ]; then o=$1; shift; else o=0; fi
        net="$net${net:+.}$o"; i=$((i + 1))
      done
      via="$1.$2.$3.$4"; shift 4
      if [ "$len" -eq 0 ]; then ip route add default via "$via"
      else ip route add "$net/$len" via "$via"; fi
    done
  else
    for r in $new_routers; do ip route add default via "$r"; break; done
  fi
  mv "$LEASE_ENV.tmp" "$LEASE_ENV"
  ;;
esac
exit 0
"#;

/// DHCP on the VM's own host, with a real client: a new VM (vm4, no
/// address) on an interface added to cn2 at run time, its port 10.0.1.23 on
/// every node, the subnet given a DNS server and a host route
/// (`subnet set`). dhclient gets the address, the network's MTU (1450), the
/// DNS server, and the routes (default, 169.254.169.254/32 and the host
/// route, through the gateway); then iperf3 through SNAT each way moves
/// data without one `fragmentation_needed` on cn2 or nn (the VM's MTU came
/// from DHCP). The VM, its port and its
/// interface are gone afterwards.
fn step_dhcp(bed: &mut Bed) {
    let bed: &Bed = bed;
    let d = bed.dir().join("dhcp");
    std::fs::create_dir_all(&d).unwrap();
    let vm = bed.tb.vm(
        "vm4",
        VmOpts {
            mac: "fa:16:3e:01:01:23".into(),
            ..VmOpts::default()
        }
        .host("cn2"),
    );
    let cn2 = &bed.sockets[CN2];
    ctl(
        cn2,
        &[
            "interface",
            "add",
            "--type",
            "af_packet",
            "--iface",
            &vm.iface,
            "vm4",
        ],
    );
    all(
        &bed.sockets,
        &[
            "subnet",
            "set",
            "--dns-nameserver",
            "198.51.100.53",
            "--host-route",
            "destination=198.51.100.0/24,gateway=10.0.1.1",
            "s1",
        ],
    );
    all(
        &bed.sockets,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--mac-address",
            "fa:16:3e:01:01:23",
            "--fixed-ip",
            "subnet=s1,ip-address=10.0.1.23",
            "--host",
            "cn2",
            "--binding",
            "vm4",
            "p-vm4",
        ],
    );
    let show = ctl(cn2, &["subnet", "show", "s1"]);
    assert!(
        show.contains("198.51.100.53") && show.contains("enable_dhcp"),
        "{show}"
    );

    let conf = d.join("dhclient.conf");
    std::fs::write(&conf, DHCLIENT_CONF).unwrap();
    let script = d.join("dhclient-script");
    let lease_env = d.join("lease.env");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nLEASE_ENV='{}'{DHCLIENT_SCRIPT}",
            lease_env.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    let started = Instant::now();
    let mut cmd = vm.cmd(
        60,
        &[
            "dhclient",
            "-d",
            "-4",
            "-cf",
            conf.to_str().unwrap(),
            "-sf",
            script.to_str().unwrap(),
            "-lf",
            d.join("dhclient.leases").to_str().unwrap(),
            "-pf",
            d.join("dhclient.pid").to_str().unwrap(),
            "eth0",
        ],
    );
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("dhclient.log")).unwrap());
    let _client = Guard(Some(cmd.spawn().expect("dhclient")));
    while !lease_env.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "dhclient got no lease in 30 s: {}\ncn2: {}",
            std::fs::read_to_string(d.join("dhclient.log")).unwrap_or_default(),
            bed.errors(CN2)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("dhcp: vm4 bound in {:?}", started.elapsed());
    let lease = std::fs::read_to_string(&lease_env).unwrap();
    for want in [
        "new_ip_address=10.0.1.23",
        "new_subnet_mask=255.255.255.0",
        "new_interface_mtu=1450",
        "new_domain_name_servers=198.51.100.53",
        "new_dhcp_server_identifier=10.0.1.1",
        "new_dhcp_lease_time=86400",
    ] {
        assert!(lease.contains(want), "no {want} in the lease:\n{lease}");
    }
    let link = vm.ok(&["ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("mtu 1450"), "{link}");
    let addr = vm.ok(&["ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains("10.0.1.23/24"), "{addr}");
    let routes = vm.ok(&["ip", "-4", "route"]);
    for want in [
        "default via 10.0.1.1",
        "169.254.169.254 via 10.0.1.1",
        "198.51.100.0/24 via 10.0.1.1",
    ] {
        assert!(routes.contains(want), "no route {want} in vm4:\n{routes}");
    }
    let e = bed.errors(CN2);
    assert_eq!(drops(&e, "dhcp_malformed"), 0, "{e}");

    // Through SNAT each way, with the MTU DHCP gave: nothing too big.
    let frag_needed = |n: usize| drops(&bed.errors(n), "fragmentation_needed");
    let before = [frag_needed(CN2), frag_needed(NN)];
    iperf5(&vm, "vm4 (MTU from DHCP) through SNAT", false);
    iperf5(&vm, "vm4 (MTU from DHCP) through SNAT, reverse", true);
    assert_eq!(
        [frag_needed(CN2), frag_needed(NN)],
        before,
        "a fragmentation needed round trip for a VM whose MTU came from DHCP"
    );

    // Release: the port's address stays the port's; vm4 leaves.
    drop(_client);
    all(&bed.sockets, &["port", "delete", "p-vm4"]);
    all(
        &bed.sockets,
        &[
            "subnet",
            "set",
            "--no-dns-nameservers",
            "--no-host-route",
            "s1",
        ],
    );
    ctl(cn2, &["interface", "delete", "vm4"]);
}

/// The SNAT node's workers' counters: (sessions created, frames handed on,
/// frames taken) per worker.
fn nn_workers(bed: &Bed) -> Vec<(u64, u64, u64)> {
    let v = json(&bed.sockets[NN], &["show", "runtime"]);
    v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let n = |k: &str| w[k].as_u64().unwrap();
            (n("nat_sessions_created"), n("handoff_out"), n("handoff_in"))
        })
        .collect()
}

fn step_snat_1000(bed: &mut Bed) {
    const N: usize = 1000;
    let before = nn_workers(bed);
    let vm2 = bed.vm("vm2");
    let ext = bed.tb.capture(&bed.ext_bridge, &format!("tcp port {ECHO}"));
    let started = Instant::now();
    let o = vm2.run(
        240,
        &[
            "/usr/bin/python3",
            scripts().join("echo_clients.py").to_str().unwrap(),
            "many",
            INET,
            &ECHO.to_string(),
            &N.to_string(),
        ],
    );
    let took = started.elapsed();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "echo clients: {}\n{out}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rec = ext.stop();
    assert_eq!(v["all_up_at_once"], true, "{v}");
    assert_eq!(v["connected"], N, "{v}");
    assert_eq!(v["intact"], N, "{v}");
    let syns = rec.fields(
        &format!("tcp.flags.syn == 1 && tcp.flags.ack == 0 && ip.dst == {INET}"),
        &["ip.src", "tcp.srcport"],
    );
    let mut ports: Vec<&str> = syns.iter().map(|f| f[1].as_str()).collect();
    ports.sort();
    ports.dedup();
    assert!(
        syns.iter().all(|f| f[0] == ROUTER_GW),
        "SYNs not from the gateway IP"
    );
    assert_eq!(ports.len(), N, "distinct translated source ports");
    let (n, mz) = assert_checksums_good(&rec, &format!("ip.src == {ROUTER_GW}"));
    let errs = bed.errors(NN);
    // Two workers on the SNAT node: one session per connection in all (none
    // made twice by two workers), frames handed between them.
    let after = nn_workers(bed);
    assert_eq!(after.len(), 2, "{after:?}");
    let created: u64 = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).sum();
    let out: u64 = after.iter().zip(&before).map(|(a, b)| a.1 - b.1).sum();
    let taken: u64 = after.iter().zip(&before).map(|(a, b)| a.2 - b.2).sum();
    assert_eq!(
        created, N as u64,
        "sessions created: {before:?} -> {after:?}"
    );
    assert!(out > 0 && taken > 0, "handed over: {before:?} -> {after:?}");
    assert_eq!(drops(&errs, "handoff_full"), 0);
    eprintln!(
        "snat_1000: {N} connections intact in {took:?}; {n} frames' checksums checked ({mz} 0xffff for 0x0000); nn drops: nat_table_full {} nat_ports_exhausted {}; nn workers (sessions created, handed on, taken): {after:?}",
        drops(&errs, "nat_table_full"),
        drops(&errs, "nat_ports_exhausted")
    );
}

fn step_fip_move(bed: &mut Bed) {
    let vm3 = bed.vm("vm3");
    let in_vm3 = bed.tb.capture_vm(vm3, "icmp");
    let ext = bed.ext_capture();
    // 250 pings, one every 20 ms: 5 s, the move 1 s in.
    let (mut ping, ping_out) = spawn_guarded(&mut bed.inet.cmd(
        30,
        &["ping", "-n", "-i", "0.02", "-c", "250", "-W", "1", FIP],
    ));
    std::thread::sleep(Duration::from_secs(1));
    let t0 = now_epoch();
    // The model moves a FIP in two changes: unset, then set.
    all_at_once(
        &bed.sockets,
        &[
            &["floating", "ip", "unset", "--port", FIP],
            &["floating", "ip", "set", "--port", "p-vm3", FIP],
        ],
    );
    let applied = now_epoch() - t0;
    let st = ping.wait();
    let ping_out = ping_out.join().unwrap();
    let rec = ext.stop();
    let seen3 = in_vm3.stop().fields(
        &format!(
            "icmp.type == 8 && ip.src == {INET} && ip.dst == {}",
            Bed::ip("vm3")
        ),
        &["frame.time_epoch"],
    );
    let cn1 = Bed::fip_mac(CN1);
    let cn2 = Bed::fip_mac(CN2);
    let replies = rec.fields(
        &format!("icmp.type == 0 && ip.src == {FIP}"),
        &["frame.time_epoch", "eth.src"],
    );
    let t = |f: &Vec<String>| f[0].parse::<f64>().unwrap() - t0;
    let last_cn1 = replies
        .iter()
        .filter(|f| f[1] == cn1)
        .map(t)
        .fold(f64::NEG_INFINITY, f64::max);
    let first_cn2 = replies
        .iter()
        .filter(|f| f[1] == cn2)
        .map(t)
        .fold(f64::INFINITY, f64::min);
    let garp = rec.fields(
        &format!("arp && arp.src.proto_ipv4 == {FIP} && arp.dst.proto_ipv4 == {FIP}"),
        &[
            "frame.time_epoch",
            "eth.src",
            "arp.src.hw_mac",
            "arp.opcode",
        ],
    );
    let lost = ping_out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .to_owned();
    eprintln!(
        "fip_move: change applied on 3 nodes in {:.1} ms; last reply via cn1 at {:+.1} ms, first via cn2 at {:+.1} ms; vm3 got {} requests; GARPs {garp:?}; ping: {lost} ({st})",
        applied * 1e3,
        last_cn1 * 1e3,
        first_cn2 * 1e3,
        seen3.len(),
    );
    assert!(!seen3.is_empty(), "vm3 got no echo request for the FIP");
    assert!(
        first_cn2.is_finite(),
        "no echo reply through cn2: {replies:?}"
    );
    assert!(
        first_cn2 < 1.0,
        "traffic followed the FIP after {first_cn2:.3} s"
    );
    assert!(
        garp.iter()
            .any(|f| f[1] == cn2 && f[2] == cn2 && t(f) >= 0.0),
        "no gratuitous ARP for {FIP} from cn2: {garp:?}"
    );
    // After the move: replies only via cn2 (none via cn1 after cn2 started).
    let stale: Vec<_> = replies
        .iter()
        .filter(|f| f[1] == cn1 && t(f) > first_cn2)
        .collect();
    assert!(
        stale.is_empty(),
        "replies via cn1 after the move: {stale:?}"
    );
    check_external_clean(&rec, bed);

    // The FIP now reaches vm3's server; vm1 leaves through SNAT.
    let got = bed.curl(&bed.inet, &format!("http://{FIP}:{VM_HTTP}/vm3.bin"));
    assert!(
        got == std::fs::read(bed.dir().join("www-vm3/vm3.bin")).unwrap(),
        "internet -> FIP (vm3): content differs"
    );
    let ext = bed.ext_capture();
    let got = bed.curl(bed.vm("vm1"), &format!("http://{INET}:{HTTP}/file.bin"));
    assert!(
        got == std::fs::read(&bed.inet_file).unwrap(),
        "vm1 (no FIP) -> internet: content differs"
    );
    let rec = ext.stop();
    for f in rec.fields(
        &format!("ip.dst == {INET} && tcp.dstport == {HTTP}"),
        &["ip.src"],
    ) {
        assert_eq!(f[0], ROUTER_GW, "vm1 without its FIP: {f:?}");
    }
}

fn step_exhaustion(bed: &mut Bed) {
    // nn again, with a range of four ports (its model is in its state file)
    // and one worker: with two, each worker owns two of the four ports, and
    // one inside host's sessions are all on one worker.
    let st = bed.daemons[NN].take().unwrap();
    st.stop();
    bed.start_node_with(
        NN,
        &format!(
            "[nat]\nport_range = \"{}-{}\"\n",
            TINY_RANGE.0, TINY_RANGE.1
        ),
        "workers = [1]",
    );
    for n in [CN1, CN2] {
        wait_resolved(bed.daemon(NN), NODES[n].vtep);
    }
    let before = drops(&bed.errors(NN), "nat_ports_exhausted");
    let ext = bed.ext_capture();
    let size = (TINY_RANGE.1 - TINY_RANGE.0 + 1) as usize;
    let o = bed.vm("vm2").run(
        120,
        &[
            "/usr/bin/python3",
            scripts().join("echo_clients.py").to_str().unwrap(),
            "exhaust",
            INET,
            &ECHO.to_string(),
            &size.to_string(),
            "4",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "exhaust: {}\n{out}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rec = ext.stop();
    let after = drops(&bed.errors(NN), "nat_ports_exhausted");
    eprintln!("exhaustion: {v}; nat_ports_exhausted {before} -> {after}");
    assert_eq!(v["tcp_held"], size, "{v}");
    assert_eq!(v["tcp_extra_connected"], 0, "{v}");
    assert_eq!(v["tcp_held_intact"], size, "{v}");
    assert_eq!(v["udp_held"], size, "{v}");
    assert_eq!(v["udp_extra_answered"], 0, "{v}");
    assert_eq!(v["udp_held_again"], size, "{v}");
    assert!(
        after > before,
        "nat_ports_exhausted not counted ({before} -> {after})"
    );
    for f in rec.fields(
        &format!("ip.src == {ROUTER_GW} && (tcp || udp)"),
        &["tcp.srcport", "udp.srcport"],
    ) {
        let p: u16 = format!("{}{}", f[0], f[1]).parse().unwrap();
        assert!(
            (TINY_RANGE.0..=TINY_RANGE.1).contains(&p),
            "translated port {p} outside the range"
        );
    }
    check_external_clean(&rec, bed);
}

/// Replies of a `ping -D` output: (time, icmp_seq).
fn ping_replies(out: &str) -> Vec<(f64, u32)> {
    out.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            let t = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
            let seq = l
                .split("icmp_seq=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((t, seq))
        })
        .collect()
}

/// The seed's migration while traffic runs: r1 (distributed) is made
/// centralized on nn (disabled, `--centralized`, enabled), then distributed
/// again (disabled, `--distributed`, enabled: the procedure of the seed from
/// legacy to DVR), all nodes at once, while pings run every 20 ms: vm2 to the
/// internet (SNAT), the internet to the floating IP (vm3), vm1 to vm2 (same
/// network: switched, the router is not on its path). Reports what each lost
/// and the longest gap; asserts the traffic recovered after each re-enable.
fn step_migration(bed: &mut Bed) {
    let pings: Vec<(&str, &Vm, String)> = vec![
        ("SNAT vm2 -> internet", bed.vm("vm2"), INET.to_owned()),
        ("FIP internet -> vm3", &bed.inet, FIP.to_owned()),
        ("switched vm1 -> vm2", bed.vm("vm1"), Bed::ip("vm2")),
    ];
    let mut running = Vec::new();
    for (name, vm, dst) in &pings {
        let (g, out) = spawn_guarded(&mut vm.cmd(
            40,
            &[
                "ping", "-n", "-D", "-i", "0.02", "-c", "600", "-W", "1", dst,
            ],
        ));
        running.push((*name, g, out));
    }
    std::thread::sleep(Duration::from_secs(1));
    let mut marks = Vec::new();
    for (dir, flag) in [
        ("centralized", "--centralized"),
        ("distributed", "--distributed"),
    ] {
        let t0 = now_epoch();
        all_at_once(&bed.sockets, &[&["router", "set", "--disable", "r1"]]);
        let t1 = now_epoch();
        all_at_once(&bed.sockets, &[&["router", "set", flag, "r1"]]);
        all_at_once(&bed.sockets, &[&["router", "set", "--enable", "r1"]]);
        let t2 = now_epoch();
        marks.push((dir, t0, t1, t2));
        std::thread::sleep(Duration::from_secs(4));
    }
    let mut report = Vec::new();
    for (name, mut g, out) in running {
        let _ = g.wait();
        let out = out.join().unwrap();
        let r = ping_replies(&out);
        let gap = r.windows(2).map(|w| w[1].0 - w[0].0).fold(0.0, f64::max);
        let lost = 600 - r.len();
        for (dir, t0, _, t2) in &marks {
            // Traffic recovered: replies after the router came back.
            let after = r.iter().filter(|(t, _)| *t > t2 + 0.5).count();
            let during = r.iter().filter(|(t, _)| *t >= *t0 && *t <= *t2).count();
            report.push(format!(
                "{name}: to {dir}: disabled for {:.0} ms ({during} replies meanwhile), {after} replies from 0.5 s after",
                (t2 - t0) * 1e3
            ));
            assert!(after > 0, "{name}: no reply after the router became {dir}");
        }
        report.push(format!(
            "{name}: {lost} of 600 lost in all, longest gap {:.0} ms",
            gap * 1e3
        ));
        if name.starts_with("switched") {
            assert!(lost <= 2, "{name}: switching lost {lost}");
        }
    }
    eprintln!("migration:\n  {}", report.join("\n  "));
    // Afterwards, distributed again: SNAT and the FIP work.
    let got = bed.curl(bed.vm("vm2"), &format!("http://{INET}:{HTTP}/file.bin"));
    assert!(
        got == std::fs::read(&bed.inet_file).unwrap(),
        "vm2 -> internet after the migration"
    );
    let got = bed.curl(&bed.inet, &format!("http://{FIP}:{VM_HTTP}/vm3.bin"));
    assert!(
        got == std::fs::read(bed.dir().join("www-vm3/vm3.bin")).unwrap(),
        "internet -> FIP (vm3) after the migration"
    );
}

type Step = (&'static str, fn(&mut Bed));

const STEPS: [Step; 11] = [
    ("services", step_services),
    ("ew", step_ew),
    ("fip_egress", step_fip_egress),
    ("fip_ingress", step_fip_ingress),
    ("snat", step_snat),
    ("pmtu", step_pmtu),
    ("dhcp", step_dhcp),
    ("snat_1000", step_snat_1000),
    ("fip_move", step_fip_move),
    ("migration", step_migration),
    ("exhaustion", step_exhaustion),
];

#[test]
fn three_hosts_north_south() {
    let started = Instant::now();
    let wanted: Option<Vec<String>> = std::env::var("DVR_3H_STEPS")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let tb = Testbed::new();
    let ul_bridge = tb.bridge("ul");
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
                &format!("fa:16:3e:01:01:{last:02}"),
                &format!("10.0.1.{last}/24"),
            )
            .gw(TENANT_GW)
            .mtu(MTU)
            .host(NODES[host].name);
            tb.vm(name, opts)
        })
        .collect();
    let inet = tb.vm(
        "inet",
        VmOpts::new(INET_MAC, &format!("{INET}/24")).bridge("ext"),
    );
    let probe = tb.vm(
        "prb",
        VmOpts::new("fa:16:3e:ee:00:fa", &format!("{PROBE}/24")).bridge("ext"),
    );

    // Services: files, HTTP servers, iperf3, echo.
    let d = tb.dir().to_owned();
    let www = d.join("www-inet");
    std::fs::create_dir_all(&www).unwrap();
    let inet_file = www.join("file.bin");
    std::fs::write(&inet_file, random_bytes(1, 300_000)).unwrap();
    let mut services = vec![
        inet.spawn(
            900,
            &[
                "/usr/bin/python3",
                "-m",
                "http.server",
                &HTTP.to_string(),
                "--bind",
                INET,
                "--directory",
                www.to_str().unwrap(),
            ],
        ),
        inet.spawn(900, &["iperf3", "-s", "-B", INET, "-p", &IPERF.to_string()]),
        inet.spawn(
            900,
            &[
                "/usr/bin/python3",
                scripts().join("echo_server.py").to_str().unwrap(),
                INET,
                &ECHO.to_string(),
            ],
        ),
    ];
    for (i, vm) in vms.iter().enumerate() {
        let name = VMS[i].0;
        let dir = d.join(format!("www-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{name}.bin")),
            random_bytes(10 + i as u64, 100_000),
        )
        .unwrap();
        services.push(vm.spawn(
            900,
            &[
                "/usr/bin/python3",
                "-m",
                "http.server",
                &VM_HTTP.to_string(),
                "--directory",
                dir.to_str().unwrap(),
            ],
        ));
    }
    for p in [HTTP, IPERF, ECHO] {
        inet.wait_listening(p);
    }
    for vm in &vms {
        vm.wait_listening(VM_HTTP);
    }

    let mut bed = Bed {
        tb,
        hosts,
        underlay,
        ext_ifaces,
        daemons: (0..NODES.len()).map(|_| None).collect(),
        sockets: NODES
            .iter()
            .map(|n| d.join(format!("{}.sock", n.name)))
            .collect(),
        vms,
        inet,
        probe,
        ext_bridge,
        ul_bridge,
        router_gw_mac: String::new(),
        router_if_mac: String::new(),
        inet_file,
        _services: services,
    };
    // ARP on the external bridge for the whole run (the GARPs at association);
    // ARP only: the iperf3 runs would make it large and slow to read.
    let whole = bed.tb.capture(&bed.ext_bridge, "arp");
    for n in 0..NODES.len() {
        bed.start_node(n, "");
    }
    let model_started = Instant::now();
    model(&bed.sockets);
    let r = json(&bed.sockets[0], &["router", "show", "r1"]);
    for s in &bed.sockets[1..] {
        assert_eq!(
            json(s, &["router", "show", "r1"]),
            r,
            "router r1 differs between nodes"
        );
    }
    bed.router_gw_mac = r["gateway"]["mac"]
        .as_str()
        .unwrap_or_else(|| panic!("r1: {r}"))
        .to_owned();
    bed.router_if_mac = r["interfaces"][0]["mac"].as_str().unwrap().to_owned();
    assert_eq!(r["gateway"]["ips"][0]["ip"], ROUTER_GW, "{r}");
    for n in 0..NODES.len() {
        for (m, other) in NODES.iter().enumerate() {
            if m != n {
                wait_resolved(bed.daemon(n), other.vtep);
            }
        }
    }
    let ready = started.elapsed();
    eprintln!(
        "three hosts: up in {ready:?} (model {:?})",
        model_started.elapsed()
    );

    let mut results = Vec::new();
    for (name, step) in STEPS {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.iter().any(|x| x == name))
        {
            continue;
        }
        let t = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| step(&mut bed)));
        let took = t.elapsed();
        let ok = r.is_ok();
        eprintln!(
            "step {name}: {} in {took:?}",
            if ok { "ok" } else { "FAILED" }
        );
        results.push((name, ok, took, r.err().map(panic_text)));
        // A failed step may leave its clients: they end by their timeouts.
    }
    let whole = whole.stop();
    let garp1 = whole.fields(
        &format!("arp && arp.src.proto_ipv4 == {FIP} && arp.dst.proto_ipv4 == {FIP}"),
        &["eth.src"],
    );
    let mut failed: Vec<String> = results
        .iter()
        .filter(|r| !r.1)
        .map(|r| format!("{}: {}", r.0, r.3.clone().unwrap_or_default()))
        .collect();
    if !garp1.iter().any(|f| f[0] == Bed::fip_mac(CN1)) {
        failed.push(format!(
            "association: no gratuitous ARP for {FIP} from cn1: {garp1:?}"
        ));
    }
    let mut logs = vec![String::new(); NODES.len()];
    for (n, d) in bed.daemons.iter_mut().enumerate() {
        if let Some(d) = d.take() {
            logs[n] = d.stderr();
            let last = d.stop();
            eprintln!("{} final drops: {}", NODES[n].name, last["drops"]);
        }
    }
    eprintln!("summary:");
    for (name, ok, took, _) in &results {
        eprintln!("  {name:12} {} {took:?}", if *ok { "ok" } else { "FAILED" });
    }
    eprintln!("total {:?}", started.elapsed());
    // DVR_3H_KEEP=DIR keeps the captures and the nodes' logs for a look.
    if let Ok(keep) = std::env::var("DVR_3H_KEEP") {
        std::fs::create_dir_all(&keep).unwrap();
        for e in std::fs::read_dir(bed.dir()).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "pcap" || x == "toml") {
                let _ = std::fs::copy(&p, Path::new(&keep).join(e.file_name()));
            }
        }
        for (n, log) in logs.iter().enumerate() {
            let _ = std::fs::write(Path::new(&keep).join(format!("{}.log", NODES[n].name)), log);
        }
    }
    let Bed { tb, _services, .. } = bed;
    drop(_services);
    tb.down();
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
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
    all(
        sockets,
        &[
            "network",
            "create",
            "--provider-network-type",
            "flat",
            "--external",
            "ext",
        ],
    );
    all(
        sockets,
        &[
            "subnet",
            "create",
            "--network",
            "ext",
            "--subnet-range",
            "203.0.113.0/24",
            "--gateway",
            INET,
            "extsub",
        ],
    );
    all(
        sockets,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "--provider-segment",
            "1001",
            "--mtu",
            &MTU.to_string(),
            "net1",
        ],
    );
    all(
        sockets,
        &[
            "subnet",
            "create",
            "--network",
            "net1",
            "--subnet-range",
            "10.0.1.0/24",
            "s1",
        ],
    );
    all(sockets, &["router", "create", "--distributed", "r1"]);
    all(sockets, &["router", "add", "subnet", "r1", "s1"]);
    let gw_ip = format!("subnet=extsub,ip-address={ROUTER_GW}");
    all(
        sockets,
        &[
            "router",
            "set",
            "--external-gateway",
            "ext",
            "--enable-snat",
            "--fixed-ip",
            &gw_ip,
            "--snat-host",
            "nn",
            "r1",
        ],
    );
    for &(name, host, last) in &VMS {
        let fixed = format!("subnet=s1,ip-address=10.0.1.{last}");
        all(
            sockets,
            &[
                "port",
                "create",
                "--network",
                "net1",
                "--mac-address",
                &format!("fa:16:3e:01:01:{last:02}"),
                "--fixed-ip",
                &fixed,
                "--host",
                NODES[host].name,
                "--binding",
                &format!("vm-{name}"),
                &format!("p-{name}"),
            ],
        );
    }
    all(
        sockets,
        &[
            "floating",
            "ip",
            "create",
            "--floating-ip-address",
            FIP,
            "--port",
            "p-vm1",
            "ext",
        ],
    );
}
