//! Live trace on a forwarding node, as VPP's `trace add` / `show trace`: a
//! capture replayed without end into VM port vm-a (model port pa, UDP to pb
//! on vm-b), `dvr-ctl trace add vm-a 5` marks the next five frames; the
//! worker records each stage's decision for them; `dvr-ctl show trace`
//! prints them decoded with every stage and the outcome; `trace clear`
//! forgets them. Bad requests are refused.

mod common;

use std::time::Instant;

use common::{ctl_output, node_head, state_in, udp_frames, vm_port, Daemon, PATIENCE};
use serde_json::Value;

const A: &str = "fa:16:3e:00:00:0a";
const B: &str = "fa:16:3e:00:00:0b";

fn ok(socket: &std::path::Path, args: &[&str]) -> String {
    let (good, out, err) = ctl_output(socket, args);
    assert!(good, "dvr-ctl {args:?}: {err}");
    out
}

#[test]
fn trace_add_marks_frames_the_workers_record_and_show_trace_prints() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let frames = udp_frames(64, 80, A, B);
    dvr::pcap::write_file(&d.join("in-a.pcap"), &frames).unwrap();
    let socket = d.join("ctl.sock");
    let cfg = [
        node_head("live", &d.join("run")),
        vm_port(
            "vm-a",
            "pcap",
            &[
                "rx_pcap = \"in-a.pcap\"".into(),
                "infinite_rx = true".into(),
            ],
        ),
        vm_port("vm-b", "null", &[]),
        state_in(d),
        format!("socket = \"{}\"\n", socket.display()),
    ]
    .concat();
    std::fs::write(d.join("node.toml"), cfg).unwrap();
    let mut dvr = Daemon::start(&d.join("node.toml"));
    dvr.next();
    let s = socket.as_path();
    ok(
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
    for (name, mac, ip, port) in [("pa", A, "10.0.1.5", "vm-a"), ("pb", B, "10.0.1.6", "vm-b")] {
        let fixed = format!("subnet=s1,ip-address={ip}");
        ok(
            s,
            &[
                "port",
                "create",
                "--network",
                "net1",
                "--mac-address",
                mac,
                "--fixed-ip",
                &fixed,
                "--host",
                "live",
                "--binding",
                port,
                name,
            ],
        );
    }

    // Refused: no such interface, no frames, too many.
    let (good, _, err) = ctl_output(s, &["trace", "add", "vm-z", "5"]);
    assert!(!good && err.contains("no interface named vm-z"), "{err}");
    for n in ["0", "257"] {
        let (good, _, err) = ctl_output(s, &["trace", "add", "vm-a", n]);
        assert!(!good && err.contains("is not from 1 to 256"), "{err}");
    }

    ok(s, &["trace", "add", "vm-a", "5"]);
    let deadline = Instant::now() + PATIENCE;
    let t = loop {
        let t: Value = serde_json::from_str(&ok(s, &["--json", "show", "trace"])).unwrap();
        if t["frames"].as_array().is_some_and(|f| f.len() >= 5) {
            break t;
        }
        assert!(Instant::now() < deadline, "no 5 traced frames: {t}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let fr = t["frames"].as_array().unwrap();
    assert_eq!(fr.len(), 5, "exactly the frames marked: {t}");
    assert_eq!(
        (t["remaining"].as_u64(), &t["armed"]),
        (Some(0), &Value::Null),
        "{t}"
    );
    for (i, f) in fr.iter().enumerate() {
        assert_eq!(f["interface"], "vm-a", "{f}");
        assert_eq!(f["length"], 80, "{f}");
        assert!(
            f["head"]
                .as_str()
                .unwrap()
                .starts_with("fa163e00000bfa163e00000a0800"),
            "{f}"
        );
        if i > 0 {
            assert!(
                f["seq"].as_u64() > fr[i - 1]["seq"].as_u64(),
                "in order: {t}"
            );
        }
        let stages: Vec<(&str, &str)> = f["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["stage"].as_str().unwrap(),
                    s["decision"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert!(
            stages.contains(&("classify", "VM port of model port pa on network net1")),
            "{stages:?}"
        );
        assert!(stages.contains(&("port-security", "allowed")), "{stages:?}");
        assert!(
            stages
                .iter()
                .any(|(st, d)| *st == "switch" && d.contains("local port pb")),
            "{stages:?}"
        );
        let last = f["stages"].as_array().unwrap().last().unwrap();
        assert_eq!(
            (&last["decision"], &last["out_port"]),
            (&Value::from("forward"), &Value::from("vm-b")),
            "{f}"
        );
    }
    let text = ok(s, &["show", "trace"]);
    assert!(text.contains("not tracing"), "{text}");
    assert_eq!(text.matches("frame ").count(), 5, "{text}");
    assert!(text.contains("UDP 5000 → 9"), "decoded: {text}");
    assert!(text.contains("out_port=vm-b"), "{text}");

    ok(s, &["trace", "clear"]);
    let t: Value = serde_json::from_str(&ok(s, &["--json", "show", "trace"])).unwrap();
    assert_eq!(t["frames"], Value::Array(vec![]), "{t}");
    let last = dvr.stop();
    // The frames traced were forwarded as the others.
    assert_eq!(common::drops(&last, "port_security_ip"), 0);
}
