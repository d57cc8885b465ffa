//! The metadata proxy on every distributed router, end to end: two dvr-pmd
//! nodes (cn1, cn2) in host namespaces, joined by an underlay bridge and by
//! a management bridge on which a stand-in for Nova's metadata API listens
//! (`ns_scripts/metadata_server.py`: it answers with the path and headers it
//! received). VMs are namespaces on `af_packet` ports, on two networks of
//! two routers that use the same addresses:
//!
//! | VM | host | network (router) | IPv4 |
//! |---|---|---|---|
//! | a1 | cn1 | net1 (r1) | 10.1.0.11 |
//! | b1 | cn1 | net2 (r2) | 10.1.0.11 |
//! | a2 | cn2 | net1 (r1) | 10.1.0.21 |
//!
//! Real `curl http://169.254.169.254/latest/meta-data/instance-id` in each
//! VM: answered by the server through the VM's own host with
//! `X-Forwarded-For` the VM's address and `X-Neutron-Router-ID` its router
//! (a1 and b1 share an address and are told apart); 50 concurrent requests
//! from a VM on each host at once, every one answered with its own path;
//! the server stopped: 502 within seconds; a server that accepts and never
//! answers: 504 within the configured timeout. The workers counted the
//! VMs' segments as `metadata_consumed`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::testbed::{ctl, Testbed, Vm, VmOpts};
use common::{drops, node_head, Daemon};
use serde_json::Value;

const HOSTS: [(&str, &str, &str, &str); 2] = [
    ("cn1", "192.0.2.1", "fa:16:3f:00:00:01", "198.51.100.1"),
    ("cn2", "192.0.2.2", "fa:16:3f:00:00:02", "198.51.100.2"),
];
const SERVER: &str = "198.51.100.10";
const PORT: &str = "8775";
const URL: &str = "http://169.254.169.254/latest/meta-data/instance-id";
/// The proxy's timeouts in the nodes' configuration (seconds).
const CONNECT_TIMEOUT: u64 = 1;
const TIMEOUT: u64 = 3;

/// The VMs: name, host index, network index (0: net1 of r1, 1: net2 of r2),
/// address.
const VMS: [(&str, usize, usize, &str); 3] = [
    ("a1", 0, 0, "10.1.0.11"),
    ("b1", 0, 1, "10.1.0.11"),
    ("a2", 1, 0, "10.1.0.21"),
];

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ns_scripts")
}

/// Runs `args` in namespace `ns`; asserts success.
fn in_ns(ns: &str, args: &[&str]) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec");
    assert!(
        o.status.success(),
        "in {ns}: {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `curl` in `vm`: (HTTP status, seconds, body).
fn curl(vm: &Vm, url: &str) -> (u16, f64, String) {
    let out = vm.ok(&[
        "curl",
        "-sS",
        "-m",
        "20",
        "-w",
        "\n%{http_code} %{time_total}",
        url,
    ]);
    let (body, last) = out.rsplit_once('\n').unwrap();
    let (code, secs) = last.split_once(' ').unwrap();
    (
        code.parse().unwrap(),
        secs.parse().unwrap(),
        body.to_owned(),
    )
}

/// The headers the server received, as it echoed them.
fn echoed(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn header<'a>(v: &'a Value, name: &str) -> &'a str {
    v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

#[test]
fn metadata_proxy_on_two_hosts() {
    let tb = Testbed::new();
    tb.bridge("ul");
    tb.bridge("mg");
    let hosts: Vec<String> = HOSTS.iter().map(|h| tb.host(h.0)).collect();
    let underlay = [
        tb.veth_on("ul1", "ul", HOSTS[0].0),
        tb.veth_on("ul2", "ul", HOSTS[1].0),
    ];
    // The hosts' management addresses, where the metadata server is reached
    // (the host namespaces answer no ARP by default: this one does).
    for (h, (name, .., mgmt)) in HOSTS.iter().enumerate() {
        let i = tb.veth_on(&format!("mg{}", h + 1), "mg", name);
        let ns = &hosts[h];
        in_ns(
            ns,
            &["sysctl", "-qw", &format!("net.ipv4.conf.{i}.arp_ignore=0")],
        );
        in_ns(ns, &["ip", "addr", "add", &format!("{mgmt}/24"), "dev", &i]);
        in_ns(ns, &["ip", "link", "set", &i, "up"]);
    }
    let server_vm = tb.vm(
        "md",
        VmOpts::new("fa:16:3e:99:00:10", &format!("{SERVER}/24")).bridge("mg"),
    );
    let guests: Vec<Vm> = VMS
        .iter()
        .map(|&(name, host, net, ip)| {
            let mac = format!("fa:16:3e:0{}:00:{:02x}", net + 1, 0x10 + host);
            tb.vm(
                name,
                VmOpts::new(&mac, &format!("{ip}/24"))
                    .gw("10.1.0.1")
                    .host(HOSTS[host].0),
            )
        })
        .collect();

    // The nodes, with the proxy on.
    let d = tb.dir();
    let mut sockets = Vec::new();
    let mut daemons = Vec::new();
    for (h, (name, vtep, dvr_mac, _)) in HOSTS.iter().enumerate() {
        let socket = d.join(format!("{name}.sock"));
        let mut cfg = format!("vtep = \"{vtep}\"\ndvr_mac = \"{dvr_mac}\"\n");
        cfg += &node_head(name, &d.join(format!("run-{name}")));
        cfg += &format!(
            "[control]\nsocket = \"{}\"\nstate_file = \"{}\"\n",
            socket.display(),
            d.join(format!("{name}.json")).display()
        );
        cfg += &format!(
            "[metadata]\nserver = \"http://{SERVER}:{PORT}\"\nconnect_timeout = {CONNECT_TIMEOUT}\ntimeout = {TIMEOUT}\n"
        );
        cfg += &format!(
            "[[ports]]\nname = \"ul\"\nrole = \"underlay\"\nkind = \"af_packet\"\niface = \"{}\"\n",
            underlay[h]
        );
        for (g, &(vm, host, ..)) in guests.iter().zip(VMS.iter()) {
            if host == h {
                cfg += &common::vm_port(
                    &format!("vm-{vm}"),
                    "af_packet",
                    &[format!("iface = \"{}\"", g.iface)],
                );
            }
        }
        let file = d.join(format!("{name}.toml"));
        std::fs::write(&file, cfg).unwrap();
        let mut dmn = Daemon::start_in(&hosts[h], &file);
        dmn.next();
        daemons.push(dmn);
        sockets.push(socket);
    }

    // The same model on both nodes: two routers, two networks on the same
    // addresses.
    let all = |args: &[&str]| {
        for s in &sockets {
            ctl(s, args);
        }
    };
    for (h, s) in sockets.iter().enumerate() {
        let (name, vtep, dvr_mac, _) = HOSTS[1 - h];
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
    for n in 1..=2 {
        let (router, net, subnet) = (format!("r{n}"), format!("net{n}"), format!("s{n}"));
        all(&["router", "create", "--distributed", &router]);
        all(&[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "--provider-segment",
            &(1000 + n).to_string(),
            &net,
        ]);
        all(&[
            "subnet",
            "create",
            "--network",
            &net,
            "--subnet-range",
            "10.1.0.0/24",
            &subnet,
        ]);
        all(&["router", "add", "subnet", &router, &subnet]);
    }
    for (g, &(name, host, net, ip)) in guests.iter().zip(VMS.iter()) {
        all(&[
            "port",
            "create",
            "--network",
            &format!("net{}", net + 1),
            "--mac-address",
            &g.mac,
            "--fixed-ip",
            &format!("subnet=s{},ip-address={ip}", net + 1),
            "--host",
            HOSTS[host].0,
            "--binding",
            &format!("vm-{name}"),
            &format!("p-{name}"),
        ]);
    }

    // The metadata server, reached from both hosts.
    let server = |silent: bool| {
        let script = scripts().join("metadata_server.py");
        let mut args = vec!["/usr/bin/python3", script.to_str().unwrap(), SERVER, PORT];
        if silent {
            args.push("--silent");
        }
        let g = server_vm.spawn(600, &args);
        server_vm.wait_listening(PORT.parse().unwrap());
        g
    };
    let mut up = server(false);
    for ns in &hosts {
        in_ns(
            ns,
            &[
                "curl",
                "-sS",
                "-m",
                "10",
                &format!("http://{SERVER}:{PORT}/"),
            ],
        );
    }

    // One request from each VM: its own address and router.
    for (g, &(name, _, net, ip)) in guests.iter().zip(VMS.iter()) {
        let cap = tb.capture_vm(g, "tcp port 80");
        let (code, secs, body) = curl(g, URL);
        // Closed cleanly by both: a FIN each way, the VM's acknowledged
        // (else it sends it again and meets a reset), no reset either way.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let seen = cap.stop().fields("", &["ip.src", "tcp.flags.str"]);
        assert!(seen.iter().all(|f| !f[1].contains('R')), "{name}: {seen:?}");
        for from in [ip, "169.254.169.254"] {
            assert!(
                seen.iter().any(|f| f[0] == from && f[1].contains('F')),
                "{name}: no FIN from {from}: {seen:?}"
            );
        }
        assert_eq!(code, 200, "{name}: {body}");
        let v = echoed(&body);
        assert_eq!(v["path"], "/latest/meta-data/instance-id", "{name}");
        assert_eq!(header(&v, "X-Forwarded-For"), ip, "{name}");
        assert_eq!(
            header(&v, "X-Neutron-Router-ID"),
            format!("r{}", net + 1),
            "{name}"
        );
        assert_eq!(header(&v, "Host"), "169.254.169.254", "{name}");
        eprintln!("{name}: one request answered in {:.1} ms", secs * 1000.0);
    }

    // 50 concurrent requests from a VM on each host at once.
    let t0 = Instant::now();
    let runs: Vec<_> = [&guests[0], &guests[2]]
        .iter()
        .map(|g| {
            let out = d.join(g.ns.clone());
            std::fs::create_dir_all(&out).unwrap();
            let script = format!(
                "for i in $(seq 1 50); do curl -sS -m 20 -o {o}/$i.json '{URL}?n='$i & done; wait",
                o = out.display()
            );
            (g.spawn(60, &["sh", "-c", &script]), out)
        })
        .collect();
    let mut runs = runs;
    for (run, _) in runs.iter_mut() {
        run.wait();
    }
    let took = t0.elapsed();
    for ((_, out), &(name, _, _, ip)) in runs.iter().zip([VMS[0], VMS[2]].iter()) {
        for i in 1..=50 {
            let f = out.join(format!("{i}.json"));
            let body =
                std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{name}: request {i}: {e}"));
            let v = echoed(&body);
            assert_eq!(
                v["path"],
                format!("/latest/meta-data/instance-id?n={i}"),
                "{name}"
            );
            assert_eq!(header(&v, "X-Forwarded-For"), ip, "{name} {i}");
            assert_eq!(header(&v, "X-Neutron-Router-ID"), "r1", "{name} {i}");
        }
    }
    eprintln!("2 x 50 concurrent requests answered in {took:?}");

    // The server stopped: 502, at once.
    up.terminate();
    let (code, secs, body) = curl(&guests[0], URL);
    assert_eq!(code, 502, "{body}");
    assert!(secs < 5.0, "502 after {secs} s");
    eprintln!("server down: 502 in {:.1} ms", secs * 1000.0);

    // A server that never answers: 504 within the timeout.
    let mut silent = server(true);
    let (code, secs, body) = curl(&guests[2], URL);
    assert_eq!(code, 504, "{body}");
    assert!(
        secs >= (TIMEOUT as f64) - 0.5 && secs < TIMEOUT as f64 + 3.0,
        "504 after {secs} s"
    );
    eprintln!("server silent: 504 in {secs:.2} s");
    silent.terminate();

    // The workers counted the VMs' segments as taken by the proxy: at least
    // the SYN, the request and two ACKs of each of the 50 connections.
    for (h, dmn) in daemons.into_iter().enumerate() {
        let v = dmn.stop();
        let taken = drops(&v, "metadata_consumed");
        eprintln!("{}: metadata_consumed {taken}", HOSTS[h].0);
        assert!(taken >= 200, "{}: {taken}", HOSTS[h].0);
        assert_eq!(drops(&v, "metadata_queue_full"), 0);
        assert_eq!(drops(&v, "metadata_oversize"), 0);
        // The proxy's own counters: cn1 answered a1's and b1's request and
        // a1's 50, then a 502; cn2 a2's request and its 50, then a 504.
        let m = &v["metadata"];
        eprintln!("{}: {m}", HOSTS[h].0);
        let n = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("no {k} in {m}"));
        let (answered, bad, timeout) = if h == 0 { (52, 1, 0) } else { (51, 0, 1) };
        assert_eq!(n("answered"), answered);
        assert_eq!(n("bad_gateway"), bad);
        assert_eq!(n("gateway_timeout"), timeout);
        assert_eq!(n("connections"), answered + 1);
        assert_eq!(n("requests"), answered + 1);
        assert_eq!(
            (
                n("refused"),
                n("bad_request"),
                n("to_vms_full"),
                n("in_flight")
            ),
            (0, 0, 0, 0)
        );
    }
    tb.down();
}
