//! The model drives the dataplane: ports created with dvr-ctl semantics (bound to
//! this host and to a dataplane port; port security off: the generator sends from
//! addresses the ports do not own) are switched within their network; a counted
//! stream keeps flowing, without loss or misdelivery, while thousands of route
//! and floating IP changes are committed (each transaction compiles and
//! publishes a new snapshot, whose tables then hold exactly them); a deleted
//! port stops receiving at once.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use common::{
    drops, dvr_pktgen, node_head, port, run_guarded, spawn_guarded, unique, vm_port, Daemon,
};
use serde_json::{json, Value};

const A: &str = "fa:16:3e:00:00:0a";
const B: &str = "fa:16:3e:00:00:0b";

fn apply(c: &mut BufReader<UnixStream>, changes: Value) -> Value {
    let req = json!({"version": 1, "method": "apply", "params": {"changes": changes}});
    c.get_mut()
        .write_all(format!("{req}\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    let r: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(r["ok"], true, "{r}");
    r
}

#[test]
fn stream_survives_thousands_of_changes_and_follows_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sa, sb) = (d.join("a.sock"), d.join("b.sock"));
    let control = format!(
        "[control]\nsocket = \"{}\"\nstate_file = \"{}\"\n",
        d.join("ctl.sock").display(),
        d.join("model.json").display()
    );
    let cfg = [
        node_head("cn1", &d.join("run")),
        control,
        vm_port(
            "vm-a",
            "vhost-user",
            &[format!("socket = \"{}\"", sa.display())],
        ),
        vm_port(
            "vm-b",
            "vhost-user",
            &[format!("socket = \"{}\"", sb.display())],
        ),
    ]
    .concat();
    std::fs::write(d.join("node.toml"), cfg).unwrap();
    let mut dvr = Daemon::start(&d.join("node.toml"));
    dvr.next();
    let mut c = BufReader::new(UnixStream::connect(d.join("ctl.sock")).unwrap());
    apply(
        &mut c,
        json!([
            {"op": "host_set", "name": "cn1", "agent_mode": "dvr"},
            {"op": "network_create", "name": "net1", "network_type": "vxlan", "segment": 101},
            {"op": "port_create", "name": "pa", "network": "net1", "mac": A, "host": "cn1", "binding": "vm-a", "port_security": false},
            {"op": "port_create", "name": "pb", "network": "net1", "mac": B, "host": "cn1", "binding": "vm-b", "port_security": false},
            // A router with an external gateway and ten ports behind it, for
            // the route and floating IP changes below.
            {"op": "network_create", "name": "net2", "network_type": "vxlan", "segment": 102},
            {"op": "subnet_create", "name": "s2", "network": "net2", "cidr": "10.2.0.0/24"},
            {"op": "network_create", "name": "ext", "network_type": "flat", "external": true},
            {"op": "subnet_create", "name": "ext-s", "network": "ext", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1"},
            {"op": "router_create", "name": "rr"},
            {"op": "router_add_subnet", "router": "rr", "subnet": "s2"},
            {"op": "router_set", "name": "rr", "external_gateway": {"network": "ext"}},
        ]),
    );
    let qs: Vec<Value> = (0..10)
        .map(|k| {
            json!({"op": "port_create", "name": format!("q{k}"), "network": "net2",
            "fixed_ips": [{"subnet": "s2", "ip": format!("10.2.0.{}", 10 + k)}]})
        })
        .collect();
    apply(&mut c, Value::Array(qs));

    let g0 = {
        c.get_mut()
            .write_all(b"{\"version\":1,\"method\":\"status\"}\n")
            .unwrap();
        let mut l = String::new();
        c.read_line(&mut l).unwrap();
        serde_json::from_str::<Value>(&l).unwrap()["result"]["generation"]
            .as_u64()
            .unwrap()
    };
    // A counted stream both ways...
    const N: u64 = 100_000;
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
    // ... while 500 transactions of 4 changes (2,000 changes: 1,000 extra
    // routes, 500 floating IPs created with a port and 499 deleted) are
    // committed, each compiled, published to the workers and saved.
    let fip = |i: usize| format!("203.0.113.{}", 10 + i % 200);
    for i in 0..500usize {
        let mut changes = Vec::new();
        for j in 0..2 {
            let k = 2 * i + j;
            changes.push(json!({"op": "router_set", "name": "rr", "routes": [
                {"destination": format!("172.{}.{}.0/24", 16 + k / 256, k % 256), "nexthop": "10.2.0.10"}]}));
        }
        changes.push(json!({"op": "floating_ip_create", "network": "ext", "address": fip(i), "port": format!("q{}", i % 10)}));
        if i > 0 {
            changes.push(json!({"op": "floating_ip_delete", "address": fip(i - 1)}));
        } else {
            changes.push(json!({"op": "router_set", "name": "rr", "routes": []}));
        }
        apply(&mut c, Value::Array(changes));
    }
    assert!(gen.wait().success());
    let g: Value = serde_json::from_str(gen_out.join().unwrap().trim()).expect("pktgen summary");
    for p in 0..2 {
        assert_eq!(g["ports"][p]["sent"], N, "{g}");
        assert_eq!(g["ports"][p]["received"], N, "every frame arrived: {g}");
        assert_eq!(
            g["ports"][p]["received_bad"], 0,
            "intact and at the right VM: {g}"
        );
    }
    let status = {
        c.get_mut()
            .write_all(b"{\"version\":1,\"method\":\"status\"}\n")
            .unwrap();
        let mut l = String::new();
        c.read_line(&mut l).unwrap();
        serde_json::from_str::<Value>(&l).unwrap()
    };
    assert_eq!(status["result"]["generation"], g0 + 500, "{status}");
    let mut tables = |what: &str| -> Value {
        let req =
            json!({"version": 1, "method": "tables", "params": {"what": what, "router": "rr"}});
        c.get_mut()
            .write_all(format!("{req}\n").as_bytes())
            .unwrap();
        let mut l = String::new();
        c.read_line(&mut l).unwrap();
        serde_json::from_str::<Value>(&l).unwrap()["result"]["entries"].clone()
    };
    // The published tables: 1,000 extra routes, the connected subnet and the
    // default; the last floating IP only.
    assert_eq!(tables("fib").as_array().unwrap().len(), 1002);
    let nat = tables("nat");
    let fips: Vec<&Value> = nat
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "floating_ip")
        .collect();
    assert_eq!(fips.len(), 1, "{nat}");
    assert_eq!(fips[0]["external"], fip(499));
    assert_eq!(
        status["result"]["published_generation"],
        g0 + 500,
        "workers use the newest tables"
    );
    // The probes (sent before the stream until one came back each way):
    // those not forwarded were dropped at a vhost-user queue not yet set up.
    let probes = |p: usize, what: &str| g["ports"][p][what].as_u64().unwrap();
    let (sent_a, sent_b) = (probes(0, "probes_sent"), probes(1, "probes_sent"));
    let (got_a, got_b) = (probes(0, "probes_received"), probes(1, "probes_received"));
    let v = dvr.until(|v| {
        port(v, "vm-b", "tx_packets") >= N + got_b && port(v, "vm-a", "tx_packets") >= N + got_a
    });
    assert_eq!(port(&v, "vm-a", "rx_packets"), N + sent_a);
    assert_eq!(port(&v, "vm-b", "rx_packets"), N + sent_b);
    assert_eq!(
        port(&v, "vm-a", "tx_packets"),
        N + got_a,
        "nothing lost or misrouted"
    );
    assert_eq!(port(&v, "vm-b", "tx_packets"), N + got_b);
    assert_eq!(drops(&v, "unknown_dst_mac"), 0, "{v}");
    // Lost at a queue not yet set up: counted as the link down, or as a
    // full queue when the link came up just before.
    assert_eq!(
        drops(&v, "tx_queue_full") + drops(&v, "tx_link_down"),
        sent_a + sent_b - got_a - got_b,
        "{v}"
    );

    // Delete pb: frames for B are dropped from the next burst on. (A new
    // virtio_user peer may lose its first frames while the vhost-user queues
    // are set up again: compare what dvr-pmd received with what it dropped, and
    // retry until frames arrived: on a loaded machine the set-up takes
    // several tries.)
    apply(&mut c, json!([{"op": "port_delete", "name": "pb"}]));
    let before = dvr.next();
    let mut after = before.clone();
    for _ in 0..30 {
        let (st, summary) = run_guarded(
            Command::new(dvr_pktgen())
                .args(["--file-prefix", &unique("pktgen")])
                .args(["--port", &format!("virtio_user0,path={}", sa.display())])
                .args(["--port", &format!("virtio_user1,path={}", sb.display())])
                .args(["--send", &format!("0:{A}:{B}:100")])
                .args(["--expect", "0", "--idle-exit-ms", "500"])
                .stdin(Stdio::null())
                .stderr(Stdio::inherit()),
        );
        assert!(st.success());
        let s: Value = serde_json::from_str(summary.trim()).unwrap();
        assert_eq!(s["ports"][0]["sent"], 100, "{s}");
        assert_eq!(
            s["ports"][1]["received"], 0,
            "nothing reaches the deleted port: {s}"
        );
        dvr.next();
        after = dvr.next();
        if port(&after, "vm-a", "rx_packets") > port(&before, "vm-a", "rx_packets") {
            break;
        }
    }
    let arrived = port(&after, "vm-a", "rx_packets") - port(&before, "vm-a", "rx_packets");
    assert!(arrived > 0, "frames reached dvr-pmd");
    assert_eq!(
        drops(&after, "unknown_dst_mac") - drops(&before, "unknown_dst_mac"),
        arrived
    );
    assert_eq!(port(&after, "vm-b", "tx_packets"), N + got_b);
    dvr.stop();
}
