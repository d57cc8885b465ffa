//! The control socket of a real dvr-pmd: the protocol's error handling (malformed
//! JSON, unknown fields, oversized requests, vanishing clients leave the daemon
//! serving and the model unchanged), dvr-ctl's verbs, the seed's migration
//! procedure with Neutron's refusals, and persistence across a restart.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{dvr_ctl, node_head, Daemon};
use serde_json::{json, Value};

struct Node {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    socket: PathBuf,
    state: PathBuf,
    config: PathBuf,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let socket = d.join("ctl.sock");
    let state = d.join("state/model.json");
    let cfg = format!(
        r#"{head}
[control]
socket = "{s}"
state_file = "{st}"
[[ports]]
name = "vm-a"
role = "vm"
kind = "null"
[[ports]]
name = "vm-b"
role = "vm"
kind = "null"
"#,
        head = node_head("ctl", &d.join("run")),
        s = socket.display(),
        st = state.display()
    );
    let config = d.join("node.toml");
    std::fs::write(&config, cfg).unwrap();
    Node {
        _dir: dir,
        dir: d,
        socket,
        state,
        config,
    }
}

/// One request line, one response.
fn rpc(conn: &mut BufReader<UnixStream>, line: &str) -> Value {
    conn.get_mut().write_all(line.as_bytes()).unwrap();
    conn.get_mut().write_all(b"\n").unwrap();
    let mut answer = String::new();
    conn.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

fn connect(socket: &Path) -> BufReader<UnixStream> {
    BufReader::new(UnixStream::connect(socket).unwrap())
}

fn ctl(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(dvr_ctl())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(socket: &Path, args: &[&str]) -> String {
    let (code, out, err) = ctl(socket, args);
    assert_eq!(code, 0, "dvr-ctl {args:?}: {err}");
    out
}

fn refused(socket: &Path, args: &[&str], want: &str) {
    let (code, _, err) = ctl(socket, args);
    assert_eq!(code, 1, "dvr-ctl {args:?} should be refused: {err}");
    assert!(
        err.contains(want),
        "dvr-ctl {args:?}: want {want:?} in {err}"
    );
}

fn generation(conn: &mut BufReader<UnixStream>) -> u64 {
    rpc(conn, r#"{"version":1,"method":"status"}"#)["result"]["generation"]
        .as_u64()
        .unwrap()
}

#[test]
fn bad_requests_leave_daemon_and_model_alone() {
    let n = node();
    let mut dvr = Daemon::start(&n.config);
    dvr.next();
    let mode = std::fs::metadata(&n.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket is owner-only");

    let mut c = connect(&n.socket);
    let r = rpc(
        &mut c,
        r#"{"version":1,"id":5,"method":"apply","params":{"changes":[{"op":"router_create","name":"r1"}]}}"#,
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["id"], 5);
    let g = generation(&mut c);
    let before = rpc(
        &mut c,
        r#"{"version":1,"method":"list","params":{"kind":"router"}}"#,
    );

    let bad = [
        ("this is not json", "invalid_request"),
        (
            r#"{"version":1,"method":"list","params":{"kind":"router"},"colour":1}"#,
            "invalid_request",
        ),
        (
            r#"{"version":1,"method":"list","params":{"kind":"routers"}}"#,
            "invalid_request",
        ),
        (r#"{"version":1,"method":"reboot"}"#, "invalid_request"),
        (r#"{"version":2,"method":"status"}"#, "unsupported_version"),
        (r#"{"method":"status"}"#, "invalid_request"),
        (
            r#"{"version":1,"method":"apply","params":{"changes":[{"op":"router_create","name":"r2","wings":2}]}}"#,
            "invalid_request",
        ),
        (
            r#"{"version":1,"method":"apply","params":{"changes":[]}}"#,
            "rejected",
        ),
        // A transaction whose second change fails applies nothing.
        (
            r#"{"version":1,"method":"apply","params":{"changes":[{"op":"router_create","name":"r3"},{"op":"router_create","name":"r1"}]}}"#,
            "rejected",
        ),
        (
            r#"{"version":1,"method":"show","params":{"kind":"router","name":"r9"}}"#,
            "not_found",
        ),
        ("[1,2,3]", "invalid_request"),
        ("{\"version\":1,\"method\":\"status\"", "invalid_request"),
    ];
    for (line, code) in bad {
        let r = rpc(&mut c, line);
        assert_eq!(r["ok"], false, "{line}: {r}");
        assert_eq!(r["error"]["code"], code, "{line}: {r}");
        assert!(!r["error"]["message"].as_str().unwrap().is_empty());
    }
    // Oversized: error, then the connection is closed.
    let mut big = connect(&n.socket);
    let huge = format!(
        r#"{{"version":1,"method":"status","pad":"{}"}}"#,
        "x".repeat(5 << 20)
    );
    let _ = big.get_mut().write_all(huge.as_bytes());
    let mut answer = String::new();
    big.read_line(&mut answer).unwrap();
    let r: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(r["error"]["code"], "too_large", "{r}");
    answer.clear();
    assert_eq!(
        big.read_line(&mut answer).unwrap(),
        0,
        "closed after too_large"
    );
    // A client that vanishes in the middle of a request.
    {
        let mut s = UnixStream::connect(&n.socket).unwrap();
        s.write_all(
            br#"{"version":1,"method":"apply","params":{"changes":[{"op":"router_create","na"#,
        )
        .unwrap();
    }
    // Still serving, nothing changed.
    let mut c2 = connect(&n.socket);
    assert_eq!(generation(&mut c2), g);
    let after = rpc(
        &mut c2,
        r#"{"version":1,"method":"list","params":{"kind":"router"}}"#,
    );
    assert_eq!(before, after);
    assert_eq!(after["result"].as_array().unwrap().len(), 1);
    let stats = rpc(&mut c2, r#"{"version":1,"method":"stats"}"#);
    assert_eq!(stats["result"]["ports"][0]["name"], "vm-a", "{stats}");
    dvr.stop();
    assert!(!n.socket.exists(), "socket removed at exit");
}

#[test]
fn verbs_migration_and_persistence() {
    let n = node();
    let mut dvr = Daemon::start(&n.config);
    dvr.next();
    let s = n.socket.as_path();
    ok(
        s,
        &[
            "host",
            "set",
            "--agent-mode",
            "dvr",
            "--vtep",
            "192.0.2.11",
            "--dvr-mac",
            "fa:16:3f:00:00:11",
            "ctl",
        ],
    );
    // `create` prints the object made, as the openstack client does.
    let made = ok(
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
    for want in ["network_type", "vxlan", "segment", "101", "mtu", "1450"] {
        assert!(made.contains(want), "network create printed:\n{made}");
    }
    // Nothing dropped yet: `show errors` says so; `--all` lists every reason.
    let errs = ok(s, &["show", "errors"]);
    assert!(errs.starts_with("no drops ("), "{errs}");
    let all = ok(s, &["show", "errors", "--all"]);
    assert!(
        all.contains("runt_frame") && all.contains("Shorter than an Ethernet header"),
        "{all}"
    );
    refused(s, &["show", "stats", "--all"], "--all is for show errors");
    ok(
        s,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "--provider-segment",
            "102",
            "net2",
        ],
    );
    ok(
        s,
        &[
            "network",
            "create",
            "--provider-network-type",
            "flat",
            "--external",
            "ext",
        ],
    );
    ok(
        s,
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
    ok(
        s,
        &[
            "subnet",
            "create",
            "--network",
            "net2",
            "--subnet-range",
            "10.0.2.0/24",
            "s2",
        ],
    );
    ok(
        s,
        &[
            "subnet",
            "create",
            "--network",
            "ext",
            "--subnet-range",
            "203.0.113.0/24",
            "ext-s",
        ],
    );
    refused(
        s,
        &[
            "subnet",
            "create",
            "--network",
            "net1",
            "--subnet-range",
            "10.0.1.128/25",
            "s1b",
        ],
        "overlaps",
    );
    ok(
        s,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--mac-address",
            "fa:16:3e:00:00:0a",
            "--fixed-ip",
            "subnet=s1,ip-address=10.0.1.5",
            "--host",
            "ctl",
            "--binding",
            "vm-a",
            "--allowed-address",
            "ip-address=10.0.1.64/28",
            "p1",
        ],
    );
    refused(
        s,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--fixed-ip",
            "subnet=s1,ip-address=10.0.1.5",
            "p2",
        ],
        "10.0.1.5",
    );
    refused(
        s,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--allowed-address",
            "ip-address=0.0.0.0/0",
            "p3",
        ],
        "0.0.0.0/0",
    );
    refused(s, &["port", "create", "--network", "nope", "p4"], "nope");

    // A centralized HA router, migrated as the seed says.
    ok(s, &["router", "create", "--centralized", "--ha", "r1"]);
    ok(s, &["router", "add", "subnet", "r1", "s1"]);
    ok(s, &["router", "add", "subnet", "r1", "s2"]);
    ok(s, &["router", "set", "--external-gateway", "ext", "r1"]);
    ok(
        s,
        &[
            "router",
            "set",
            "--route",
            "destination=172.16.0.0/16,gateway=10.0.1.5",
            "r1",
        ],
    );
    refused(s, &["router", "set", "--distributed", "r1"], "disable");
    ok(s, &["router", "set", "--disable", "r1"]);
    refused(s, &["router", "set", "--distributed", "r1"], "--no-ha");
    ok(s, &["router", "set", "--no-ha", "r1"]);
    ok(s, &["router", "set", "--distributed", "r1"]);
    ok(s, &["router", "set", "--enable", "r1"]);
    // The published tables of the router (the dataplane's view, not the model's).
    let fib: Value = serde_json::from_str(&ok(s, &["--json", "show", "fib", "r1"])).unwrap();
    let routes: Vec<(String, String)> = fib["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["prefix"].as_str().unwrap().to_owned(),
                e["next_hop"].to_string(),
            )
        })
        .collect();
    assert!(
        routes.contains(&(
            "10.0.1.0/24".into(),
            json!({"type": "connected", "iface": 0}).to_string()
        )),
        "{fib}"
    );
    assert!(
        routes.contains(&(
            "10.0.2.0/24".into(),
            json!({"type": "connected", "iface": 1}).to_string()
        )),
        "{fib}"
    );
    assert!(
        routes.contains(&(
            "172.16.0.0/16".into(),
            json!({"type": "via", "via": "10.0.1.5"}).to_string()
        )),
        "{fib}"
    );
    assert!(
        routes.contains(&(
            "0.0.0.0/0".into(),
            json!({"type": "via", "via": "203.0.113.1"}).to_string()
        )),
        "{fib}"
    );
    assert_eq!(routes.len(), 4, "{fib}");
    // Connected routes name their subnet.
    let subnet_of = |prefix: &str| {
        fib["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["prefix"] == prefix)
            .map(|e| e["subnet"].clone())
    };
    assert_eq!(subnet_of("10.0.1.0/24"), Some(json!("s1")), "{fib}");
    assert_eq!(subnet_of("172.16.0.0/16"), Some(Value::Null), "{fib}");
    let text = ok(s, &["show", "fib", "r1"]);
    assert!(text.contains("connected (subnet s1)"), "{text}");
    // -f and -c, as the openstack client has them.
    assert_eq!(
        ok(s, &["-f", "value", "-c", "name", "router", "list"]),
        "r1\n"
    );
    assert_eq!(
        ok(
            s,
            &["network", "show", "net1", "-f", "value", "-c", "mtu", "-c", "name"]
        ),
        "1450\nnet1\n"
    );
    let j: Value = serde_json::from_str(&ok(
        s,
        &[
            "-f", "json", "-c", "prefix", "-c", "next hop", "show", "fib", "r1",
        ],
    ))
    .unwrap();
    assert!(
        j.as_array()
            .unwrap()
            .iter()
            .any(|r| r == &json!({"prefix": "10.0.1.0/24", "next hop": "connected (subnet s1)"})),
        "{j}"
    );
    let csv = ok(
        s,
        &["-f", "csv", "-c", "name", "-c", "cidr", "subnet", "list"],
    );
    assert!(
        csv.starts_with("name,cidr\n") && csv.contains("s1,10.0.1.0/24\n"),
        "{csv}"
    );
    refused(
        s,
        &["-c", "colour", "router", "list"],
        "no column \"colour\"",
    );
    let nb: Value = serde_json::from_str(&ok(s, &["--json", "show", "neighbors", "r1"])).unwrap();
    assert_eq!(
        nb["entries"],
        json!([{"router": "r1", "ip": "10.0.1.5", "mac": "fa:16:3e:00:00:0a", "port": "p1",
            "location": "local interface vm-a"}]),
        "{nb}"
    );
    let fdb: Value = serde_json::from_str(&ok(s, &["--json", "show", "fdb"])).unwrap();
    let p1 = fdb["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == "fa:16:3e:00:00:0a")
        .cloned();
    assert_eq!(
        p1,
        Some(
            json!({"network": "net1", "mac": "fa:16:3e:00:00:0a", "port": "p1",
            "dataplane_port": "vm-a", "location": "local interface vm-a"})
        ),
        "p1 is bound to this node (ctl) and its port vm-a: {fdb}"
    );
    let r1: Value = serde_json::from_str(&ok(s, &["--json", "router", "show", "r1"])).unwrap();
    let r1_mac = r1["interfaces"][0]["mac"].clone();
    assert!(
        fdb["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == r1_mac && e["location"] == "router r1 (subnet s1)"),
        "r1's interface MAC on net1: {fdb}"
    );
    // trace: the workers' own L2 code on the published tables.
    let trace = |dst: &str| -> Value {
        let out = ok(
            s,
            &[
                "--json",
                "trace",
                "--port",
                "vm-a",
                "--src-mac",
                "fa:16:3e:00:00:0a",
                "--dst-mac",
                dst,
            ],
        );
        let v = serde_json::from_str::<Value>(&out).unwrap();
        assert_eq!(
            v["stages"][1]["decision"], "VM port of model port p1 on network net1",
            "{v}"
        );
        v["stages"].as_array().unwrap().last().unwrap().clone()
    };
    let t = trace("fa:16:3e:00:00:0b");
    assert_eq!(t["decision"], "drop", "{t}");
    assert_eq!(t["reason"], "unknown_dst_mac", "{t}");
    ok(
        s,
        &[
            "port",
            "create",
            "--network",
            "net1",
            "--mac-address",
            "fa:16:3e:00:00:0b",
            "--host",
            "ctl",
            "--binding",
            "vm-b",
            "pb",
        ],
    );
    let t = trace("fa:16:3e:00:00:0b");
    assert_eq!(
        (t["decision"].as_str(), t["out_port"].as_str()),
        (Some("forward"), Some("vm-b")),
        "{t}"
    );
    let fl = trace("ff:ff:ff:ff:ff:ff");
    assert_eq!(
        (&fl["decision"], &fl["copies_to"]),
        (&json!("flood"), &json!(["vm-b"])),
        "{fl}"
    );
    let text = ok(
        s,
        &[
            "trace",
            "--port",
            "vm-a",
            "--src-mac",
            "fa:16:3e:00:00:0a",
            "--dst-mac",
            "fa:16:3e:00:00:0b",
        ],
    );
    assert!(
        text.contains("decision=forward") && text.contains("out_port=vm-b"),
        "{text}"
    );
    // Any frame, as hex or from a capture: a TCP SYN from p1 to pb's MAC,
    // switched; the frames in and out decoded header by header.
    let syn = tcp_syn();
    let hex: String = syn.iter().map(|b| format!("{b:02x}")).collect();
    let text = ok(s, &["trace", "--port", "vm-a", "--hex", &hex]);
    assert!(text.contains("out_port=vm-b"), "{text}");
    assert_eq!(
        text.matches("TCP 40000 → 80 [S] seq 1").count(),
        2,
        "the SYN decoded in and out:\n{text}"
    );
    assert!(
        text.contains("IPv4 10.0.1.5 → 10.0.1.99 ttl 64 protocol 6"),
        "{text}"
    );
    let cap = n.dir.join("syn.pcap");
    dvr::pcap::write_file(&cap, &[syn.clone(), syn]).unwrap();
    let text = ok(
        s,
        &[
            "trace",
            "--port",
            "vm-a",
            "--pcap",
            cap.to_str().unwrap(),
            "--index",
            "1",
        ],
    );
    assert!(text.contains("out_port=vm-b"), "{text}");
    refused(
        s,
        &[
            "trace",
            "--port",
            "vm-a",
            "--pcap",
            cap.to_str().unwrap(),
            "--index",
            "2",
        ],
        "no frame 2 (2 in it)",
    );
    refused(
        s,
        &["trace", "--port", "vm-a", "--hex", "0a0"],
        "even number of hex digits",
    );
    // A binding left without a host binds nothing: applied, with a warning.
    let warned = |args: &[&str]| {
        let (code, _, err) = ctl(s, args);
        assert_eq!(code, 0, "dvr-ctl {args:?}: {err}");
        err.contains("warning: port pb has binding vm-b but no host")
    };
    assert!(warned(&["port", "unset", "--host", "pb"]));
    let t = trace("fa:16:3e:00:00:0b");
    assert_eq!(t["reason"], "unknown_dst_mac", "bound nowhere: {t}");
    assert!(warned(&["port", "set", "--binding", "vm-b", "pb"]));
    assert!(!warned(&["port", "set", "--host", "ctl", "pb"]));
    assert!(!warned(&["port", "set", "--binding", "vm-b", "pb"]));
    let t = trace("fa:16:3e:00:00:0b");
    assert_eq!(t["out_port"], "vm-b", "bound again: {t}");
    ok(s, &["port", "delete", "pb"]);
    refused(
        s,
        &[
            "trace",
            "--port",
            "vm-z",
            "--src-mac",
            "fa:16:3e:00:00:0a",
            "--dst-mac",
            "fa:16:3e:00:00:0b",
        ],
        "vm-z",
    );
    let table = ok(s, &["show", "fib"]);
    assert!(table.contains("via 10.0.1.5"), "{table}");
    ok(s, &["router", "set", "--disable", "r1"]);
    refused(s, &["show", "fib", "r1"], "disabled");
    ok(s, &["router", "set", "--enable", "r1"]);
    let out = ok(s, &["--json", "router", "show", "r1"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["distributed"], true, "{r}");
    assert_eq!(r["ha"], false);
    assert_eq!(r["admin_state_up"], true);
    assert_eq!(r["interfaces"].as_array().unwrap().len(), 2);

    // Floating IPs.
    let out = ok(
        s,
        &[
            "--json",
            "floating",
            "ip",
            "create",
            "--floating-ip-address",
            "203.0.113.10",
            "--port",
            "p1",
            "ext",
        ],
    );
    assert!(out.contains("203.0.113.10"), "{out}");
    refused(
        s,
        &[
            "floating",
            "ip",
            "create",
            "--floating-ip-address",
            "203.0.113.10",
            "ext",
        ],
        "203.0.113.10",
    );
    refused(s, &["port", "delete", "p1"], "203.0.113.10");
    // The NAT view: the router's SNAT settings and the floating IP, served
    // where its port is (this node, port vm-a).
    let nat: Value = serde_json::from_str(&ok(s, &["--json", "show", "nat", "r1"])).unwrap();
    let fip = nat["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "floating_ip")
        .cloned();
    assert_eq!(
        fip,
        Some(
            json!({"router": "r1", "type": "floating_ip", "external": "203.0.113.10",
            "internal": "10.0.1.5", "port": "p1", "where": "local interface vm-a"})
        ),
        "{nat}"
    );
    assert!(
        nat["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "snat"),
        "{nat}"
    );
    let text = ok(s, &["show", "nat"]);
    assert!(
        text.contains("203.0.113.10") && text.contains("10.0.1.5"),
        "{text}"
    );
    // A dvr node: no SNAT here, no sessions (dvr-pmd/tests/snat_sessions.rs
    // has sessions made by real packets).
    let sessions = ok(s, &["show", "sessions"]);
    assert!(sessions.contains("0 sessions"), "{sessions}");
    let sessions: Value =
        serde_json::from_str(&ok(s, &["--json", "show", "sessions", "r1"])).unwrap();
    assert_eq!(sessions["entries"], json!([]), "{sessions}");
    assert_eq!(sessions["unanswered"], json!([]), "{sessions}");
    refused(s, &["show", "sessions", "r9"], "no router named \"r9\"");
    ok(s, &["floating", "ip", "unset", "--port", "203.0.113.10"]);
    let nat: Value = serde_json::from_str(&ok(s, &["--json", "show", "nat", "r1"])).unwrap();
    assert!(
        !nat["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "floating_ip"),
        "unset: gone from the next snapshot: {nat}"
    );
    let table = ok(s, &["router", "list"]);
    assert!(table.contains("| r1 "), "{table}");
    ok(s, &["show", "stats"]);
    ok(s, &["show", "errors"]);
    ok(s, &["show", "runtime"]);
    ok(s, &["show", "ports"]);

    let before = ok(s, &["--json", "router", "show", "r1"]);
    dvr.stop();
    assert!(n.state.exists(), "model saved");

    // Restart on the same state: everything is back.
    let mut dvr = Daemon::start(&n.config);
    dvr.next();
    assert_eq!(ok(s, &["--json", "router", "show", "r1"]), before);
    // The loaded model is compiled and published at start, before any change.
    let fib: Value = serde_json::from_str(&ok(s, &["--json", "show", "fib", "r1"])).unwrap();
    assert_eq!(fib["entries"].as_array().unwrap().len(), 4, "{fib}");
    // The node registered itself from its configuration.
    let me: Value = serde_json::from_str(&ok(s, &["--json", "host", "show", "ctl"])).unwrap();
    assert_eq!(me["agent_mode"], "dvr", "{me}");
    let fips: Value = serde_json::from_str(&ok(s, &["--json", "floating", "ip", "list"])).unwrap();
    assert_eq!(
        fips,
        json!([{"address": "203.0.113.10", "network": "ext", "port": null, "fixed_ip": null, "router": null}])
    );
    dvr.stop();
    let _ = &n.dir;
}

#[test]
fn socket_group_gets_0660_and_unknown_groups_are_refused() {
    let n = node();
    let text = std::fs::read_to_string(&n.config).unwrap();
    let with_group = text.replace("[control]\n", "[control]\ngroup = \"root\"\n");
    std::fs::write(&n.config, &with_group).unwrap();
    let mut dvr = Daemon::start(&n.config);
    dvr.next();
    let md = std::fs::metadata(&n.socket).unwrap();
    assert_eq!(
        md.permissions().mode() & 0o777,
        0o660,
        "group-accessible, never world"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(md.gid(), 0);
    dvr.stop();

    std::fs::write(
        &n.config,
        text.replace("[control]\n", "[control]\ngroup = \"no-such-group-dvr\"\n"),
    )
    .unwrap();
    let out = Command::new(common::dvr_pmd())
        .arg("--config")
        .arg(&n.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`control.group`: no group named \"no-such-group-dvr\""),
        "{err}"
    );
    assert!(!n.socket.exists(), "no socket left behind");
}

/// Two daemons never write one state file: the second is refused at start,
/// naming the file, and the first is unaffected.
#[test]
fn a_state_file_in_use_is_refused() {
    let n = node();
    let mut dvr = Daemon::start(&n.config);
    dvr.next();
    let other = n.dir.join("other.toml");
    let cfg = format!(
        r#"{head}
[control]
socket = "{s}"
state_file = "{st}"
[[ports]]
name = "vm-a"
role = "vm"
kind = "null"
"#,
        head = node_head("ctl2", &n.dir.join("run2")),
        s = n.dir.join("other.sock").display(),
        st = n.state.display()
    );
    std::fs::write(&other, cfg).unwrap();
    let out = Command::new(common::dvr_pmd())
        .arg("--config")
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "state file {} is in use by another dvr-pmd",
            n.state.display()
        )),
        "{err}"
    );
    assert!(!n.dir.join("other.sock").exists());
    // The first one still serves.
    ok(&n.socket, &["show", "status"]);
    dvr.stop();
}

/// A TCP SYN from p1 (fa:16:3e:00:00:0a, 10.0.1.5) to fa:16:3e:00:00:0b,
/// 10.0.1.99, port 40000 to 80, with right checksums.
fn tcp_syn() -> Vec<u8> {
    let mut f = vec![
        0xfa, 0x16, 0x3e, 0, 0, 0x0b, 0xfa, 0x16, 0x3e, 0, 0, 0x0a, 0x08, 0x00,
    ];
    let mut ip = vec![
        0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 1, 5, 10, 0, 1, 99,
    ];
    let c = dvr::wire::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut tcp = vec![
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];
    let sum = dvr::wire::checksum::pseudo4(&ip[12..16], &ip[16..20], 20, 6);
    let c = dvr::wire::checksum::csum_fold(dvr::wire::checksum::csum_add(sum, &tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f.extend(ip);
    f.extend(tcp);
    f
}
