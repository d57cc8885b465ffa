//! Interfaces added and deleted while the node forwards (`dvr-ctl interface
//! ...`): two VMs' vhost-user interfaces added at run time carry a counted
//! stream (driven by virtio_user devices in dvr-pktgen, standing in for the
//! VMs) that loses nothing while 200 other interfaces are added and deleted;
//! model ports bound to them show ACTIVE / DOWN; the interfaces come back
//! after a restart; bad requests get clear errors and change nothing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{drops, dvr_ctl, dvr_pktgen, node_head, port, spawn_guarded, unique, Daemon};
use serde_json::{json, Value};

const A: &str = "fa:16:3e:00:00:0a";
const B: &str = "fa:16:3e:00:00:0b";

/// One request on a new connection to the control socket (the daemon closes
/// a connection idle for 30 s: a loaded machine may keep the test away that
/// long); the whole response.
fn call(c: &Path, method: &str, params: Value) -> Value {
    let mut c = BufReader::new(UnixStream::connect(c).unwrap());
    let req = json!({"version": 1, "method": method, "params": params});
    c.get_mut()
        .write_all(format!("{req}\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

fn ok(c: &Path, method: &str, params: Value) -> Value {
    let r = call(c, method, params.clone());
    assert_eq!(r["ok"], true, "{method} {params}: {r}");
    r["result"].clone()
}

/// dvr-ctl with `args` on socket `s`: (exit code, stdout, stderr).
fn ctl(s: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(dvr_ctl())
        .arg("--socket")
        .arg(s)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A node with no interface in its configuration, its control socket and
/// state in `d`.
fn node(d: &Path, workers: &str) -> std::path::PathBuf {
    let control = format!(
        "[control]\nsocket = \"{}\"\nstate_file = \"{}\"\n",
        d.join("ctl.sock").display(),
        d.join("state/model.json").display()
    );
    let head = node_head("cn1", &d.join("run")).replace("workers = [1]", workers);
    let cfg = [head, control].concat();
    let path = d.join("node.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn model(c: &Path) {
    ok(
        c,
        "apply",
        json!({"changes": [
            {"op": "host_set", "name": "cn1", "agent_mode": "dvr"},
            {"op": "network_create", "name": "net1", "network_type": "vxlan", "segment": 101},
            {"op": "port_create", "name": "pa", "network": "net1", "mac": A, "host": "cn1", "binding": "vhu-a", "port_security": false},
            {"op": "port_create", "name": "pb", "network": "net1", "mac": B, "host": "cn1", "binding": "vhu-b", "port_security": false},
        ]}),
    );
}

fn status_of(c: &Path, p: &str) -> String {
    ok(c, "show", json!({"kind": "port", "name": p}))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_stream_loses_nothing_while_200_interfaces_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = node(d, "workers = [1]");
    let mut dvr = Daemon::start(&cfg);
    dvr.next();
    let sock = d.join("ctl.sock");
    let c = sock.as_path();
    model(c);
    // Not there yet: bound here to no interface.
    assert_eq!(status_of(c, "pa"), "DOWN");
    let (sa, sb) = (d.join("vm/a.sock"), d.join("vm/b.sock"));
    for (name, s) in [("vhu-a", &sa), ("vhu-b", &sb)] {
        let (code, out, err) = ctl(
            &sock,
            &[
                "interface",
                "add",
                "--type",
                "vhost-user",
                "--socket",
                s.to_str().unwrap(),
                name,
            ],
        );
        assert_eq!(code, 0, "{out} {err}");
        assert!(out.contains(name) && out.contains("server"), "{out}");
        assert!(s.exists(), "dvr made the socket");
    }
    // Added, no VM yet: its link is down.
    assert_eq!(status_of(c, "pa"), "DOWN");
    let (code, out, _) = ctl(&sock, &["port", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("status") && out.contains("DOWN"), "{out}");

    // The VMs: a counted stream both ways, long enough to outlast the
    // interface changes below (the test waits for both to end).
    const N: u64 = 3_000_000;
    let (mut gen, gen_out) = spawn_guarded(
        Command::new(dvr_pktgen())
            .args(["--file-prefix", &unique("pktgen")])
            .args(["--port", &format!("virtio_user0,path={}", sa.display())])
            .args(["--port", &format!("virtio_user1,path={}", sb.display())])
            .args(["--probe", &format!("0:{A}:{B}")])
            .args(["--probe", &format!("1:{B}:{A}")])
            .args(["--send", &format!("0:{A}:{B}:{N}")])
            .args(["--send", &format!("1:{B}:{A}:{N}")])
            .args(["--frame-len", "64"])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    // The stream flows before the changes start.
    let v = dvr.until(|v| port(v, "vhu-b", "tx_packets") > 1000);
    assert!(port(&v, "vhu-a", "rx_packets") > 0);
    assert_eq!(status_of(c, "pa"), "ACTIVE");
    assert_eq!(status_of(c, "pb"), "ACTIVE");

    // 200 interfaces added and deleted, two at a time, some bound to a
    // model port, while the stream flows.
    ok(
        c,
        "apply",
        json!({"changes": [
            {"op": "port_create", "name": "pc", "network": "net1", "mac": "fa:16:3e:00:00:0c", "host": "cn1", "binding": "churn-0", "port_security": false},
        ]}),
    );
    let started = Instant::now();
    let mut during = 0;
    for i in 0..100 {
        for k in 0..2 {
            let name = format!("churn-{}", (2 * i + k) % 7);
            let s = d.join(format!("vm/churn{}.sock", 2 * i + k));
            let info = ok(
                c,
                "interface_add",
                json!({"name": name, "type": "vhost-user", "socket": s}),
            );
            assert_eq!(info["origin"], "runtime", "{info}");
            assert!(s.exists());
        }
        for k in 0..2 {
            let name = format!("churn-{}", (2 * i + k) % 7);
            let s = d.join(format!("vm/churn{}.sock", 2 * i + k));
            ok(c, "interface_delete", json!({"name": name}));
            assert!(!s.exists(), "its socket removed");
        }
        if gen.child().try_wait().unwrap().is_none() {
            during += 1;
        }
    }
    let churn = started.elapsed();
    let list = ok(c, "interface_list", Value::Null);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert!(gen.wait().success());
    let g: Value = serde_json::from_str(gen_out.join().unwrap().trim()).expect("pktgen summary");
    eprintln!(
        "200 interfaces added and deleted in {churn:?} ({} ms each), {during} of 100 rounds while the stream ran",
        churn.as_millis() / 400
    );
    assert!(
        during >= 50,
        "the stream ended before half the interface changes: make it longer ({during} rounds)"
    );
    for p in 0..2 {
        assert_eq!(g["ports"][p]["sent"], N, "{g}");
        assert_eq!(g["ports"][p]["received"], N, "every frame arrived: {g}");
        assert_eq!(g["ports"][p]["received_bad"], 0, "{g}");
    }
    let probes = |p: usize, what: &str| g["ports"][p][what].as_u64().unwrap();
    let (sent_a, sent_b) = (probes(0, "probes_sent"), probes(1, "probes_sent"));
    let (got_a, got_b) = (probes(0, "probes_received"), probes(1, "probes_received"));
    // Counter lines printed while the stream ran are read first: the one
    // where both directions are through.
    let v = dvr.until(|v| {
        port(v, "vhu-b", "tx_packets") >= N + got_b && port(v, "vhu-a", "tx_packets") >= N + got_a
    });
    assert_eq!(port(&v, "vhu-a", "rx_packets"), N + sent_a);
    assert_eq!(port(&v, "vhu-b", "rx_packets"), N + sent_b);
    assert_eq!(port(&v, "vhu-a", "tx_packets"), N + got_a);
    assert_eq!(drops(&v, "unknown_dst_mac"), 0, "{v}");
    assert_eq!(drops(&v, "no_tx_queue"), 0, "{v}");

    // The interface show: queues, worker, counters.
    let (code, out, _) = ctl(&sock, &["interface", "show", "vhu-a"]);
    assert_eq!(code, 0);
    assert!(out.contains("q0: worker 0 (core 1)"), "{out}");
    assert!(out.contains("| rx_bytes"), "{out}");
    let info = ok(c, "interface_show", json!({"name": "vhu-a"}));
    assert_eq!(info["rx_packets"], N + sent_a, "{info}");
    assert_eq!(info["bound"], json!(["pa"]));
    // The VMs are gone: links down, ports DOWN.
    assert_eq!(info["link_up"], false);
    assert_eq!(status_of(c, "pa"), "DOWN");
    dvr.stop();
}

#[test]
fn interfaces_come_back_after_a_restart_and_bad_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = node(d, "workers = [1]");
    let mut dvr = Daemon::start(&cfg);
    dvr.next();
    let sock = d.join("ctl.sock");
    let c = sock.as_path();
    model(c);
    let sa = d.join("vm/a.sock");
    ok(
        c,
        "interface_add",
        json!({"name": "vhu-a", "type": "vhost-user", "socket": sa, "queues": 2}),
    );
    ok(
        c,
        "interface_add",
        json!({"name": "vhu-b", "type": "vhost-user", "socket": d.join("vm/b.sock"), "client": true}),
    );
    let before = ok(c, "interface_list", Value::Null);

    // Refused, with the reason, nothing changed.
    let refused = |c: &Path, method: &str, params: Value, says: &str| {
        let r = call(c, method, params.clone());
        assert_eq!(r["ok"], false, "{method} {params}: {r}");
        let msg = r["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(says), "{method} {params}: {msg}");
    };
    refused(
        c,
        "interface_add",
        json!({"name": "vhu-a", "type": "vhost-user", "socket": d.join("x.sock")}),
        "exists",
    );
    refused(
        c,
        "interface_add",
        json!({"name": "vhu-c", "type": "vhost-user", "socket": sa}),
        "is used by interface vhu-a",
    );
    refused(
        c,
        "interface_add",
        json!({"name": "vhu-c", "type": "vhost-user"}),
        "--socket",
    );
    refused(
        c,
        "interface_add",
        json!({"name": "bad name", "type": "tap", "iface": "t0"}),
        "letters",
    );
    refused(
        c,
        "interface_add",
        json!({"name": "vhu-c", "type": "vhost-user", "socket": d.join("c.sock"), "worker": 5}),
        "worker 5",
    );
    refused(
        c,
        "interface_add",
        json!({"name": "vhu-c", "type": "pci"}),
        "vhost-user",
    );
    refused(
        c,
        "interface_add",
        json!({"name": "vhu-c", "type": "vhost-user", "socket": d.join("c.sock"), "queues": 0}),
        "--queues",
    );
    refused(
        c,
        "interface_delete",
        json!({"name": "nope"}),
        "no interface named nope",
    );
    // A device DPDK cannot make: refused by DPDK, nothing left behind.
    refused(
        c,
        "interface_add",
        json!({"name": "af0", "type": "af_packet", "iface": "dvrnosuch0"}),
        "af0",
    );
    assert_eq!(ok(c, "interface_list", Value::Null), before);
    let (code, _, err) = ctl(&sock, &["interface", "add", "--type", "tap", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("--iface"), "{err}");
    let (code, _, err) = ctl(&sock, &["interface", "delete", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no interface named nope"), "{err}");

    // A restart: the same interfaces, the same way.
    dvr.stop();
    assert!(!sa.exists(), "sockets removed at exit");
    let mut dvr = Daemon::start(&cfg);
    dvr.next();
    let c = sock.as_path();
    let after = ok(c, "interface_list", Value::Null);
    let strip = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| {
                json!([
                    i["name"],
                    i["type"],
                    i["socket"],
                    i["client"],
                    i["rx_queues"],
                    i["index"],
                    i["polled_by"]
                ])
            })
            .collect()
    };
    assert_eq!(strip(&after), strip(&before), "{after}");
    assert!(sa.exists());
    // Deleted: gone for good.
    ok(c, "interface_delete", json!({"name": "vhu-a"}));
    dvr.stop();
    let mut dvr = Daemon::start(&cfg);
    dvr.next();
    let c = sock.as_path();
    let names: Vec<Value> = ok(c, "interface_list", Value::Null)
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("vhu-b")]);
    dvr.stop();
}

/// Two workers (one shares the control thread's core: this machine has
/// two), two VMs with two queue pairs each, one port from the configuration
/// and one added at run time: each worker polls one RX queue of every port,
/// `show runtime` and `interface show` say which, both forward, nothing is
/// lost.
#[test]
fn two_workers_poll_a_queue_each_of_every_port() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sa, sb) = (d.join("vm/a.sock"), d.join("vm/b.sock"));
    std::fs::create_dir_all(d.join("vm")).unwrap();
    let cfg = node(d, "workers = [0, 1]");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&common::vm_port(
        "vhu-a",
        "vhost-user",
        &[format!("socket = \"{}\"", sa.display())],
    ));
    std::fs::write(&cfg, text).unwrap();
    let mut dvr = Daemon::start(&cfg);
    dvr.next();
    assert!(
        dvr.stderr()
            .contains("shares its core with the control thread"),
        "{}",
        dvr.stderr()
    );
    let sock = d.join("ctl.sock");
    let c = sock.as_path();
    model(c);
    ok(
        c,
        "interface_add",
        json!({"name": "vhu-b", "type": "vhost-user", "socket": sb, "queues": 2}),
    );
    for name in ["vhu-a", "vhu-b"] {
        let info = ok(c, "interface_show", json!({"name": name}));
        assert_eq!(info["rx_queues"], 2, "{info}");
        assert_eq!(info["tx_queues"], 2, "{info}");
        let workers: Vec<&Value> = info["polled_by"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["worker"])
            .collect();
        assert_eq!(workers, [&json!(0), &json!(1)], "{info}");
    }

    const N: u64 = 200_000;
    let (mut gen, gen_out) = spawn_guarded(
        Command::new(dvr_pktgen())
            .args(["--file-prefix", &unique("pktgen")])
            .args(["--queues", "2"])
            .args([
                "--port",
                &format!("virtio_user0,path={},queues=2", sa.display()),
            ])
            .args([
                "--port",
                &format!("virtio_user1,path={},queues=2", sb.display()),
            ])
            .args(["--probe", &format!("0:{A}:{B}")])
            .args(["--probe", &format!("1:{B}:{A}")])
            .args(["--send", &format!("0:{A}:{B}:{N}")])
            .args(["--send", &format!("1:{B}:{A}:{N}")])
            .args(["--frame-len", "64"])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    assert!(gen.wait().success());
    let g: Value = serde_json::from_str(gen_out.join().unwrap().trim()).expect("pktgen summary");
    for p in 0..2 {
        assert_eq!(g["ports"][p]["sent"], N, "{g}");
        assert_eq!(g["ports"][p]["received"], N, "every frame arrived: {g}");
        assert_eq!(g["ports"][p]["received_bad"], 0, "{g}");
    }
    let stats = ok(c, "stats", Value::Null);
    for w in 0..2 {
        let ws = &stats["workers"][w];
        assert!(
            ws["packets"].as_u64().unwrap() > N / 4,
            "worker {w} forwards its share: {ws}"
        );
        let queues: Vec<&str> = ws["rx_queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q.as_str().unwrap())
            .collect();
        assert_eq!(
            queues,
            [format!("vhu-a:q{w}"), format!("vhu-b:q{w}")],
            "{ws}"
        );
    }
    let (code, out, _) = ctl(&sock, &["show", "runtime"]);
    assert_eq!(code, 0);
    assert!(out.contains("vhu-a:q1 vhu-b:q1"), "{out}");
    dvr.stop();
}
