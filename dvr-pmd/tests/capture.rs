//! Packet capture on a forwarding node, read back by tshark: a capture
//! replayed without end into vm-a, switched to vm-b (the static table);
//! `dvr-ctl capture start vm-b --direction tx --count 100 FILE` writes the
//! next 100 frames vm-b sends into a pcapng file, which tshark reads: 100
//! frames, each the replayed UDP frame, outbound; a capture of both
//! directions of vm-a stopped by hand is whole too. Bad requests refused.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{ctl_output, fdb, node_head, state_in, udp_frames, vm_port, Daemon, PATIENCE};
use serde_json::Value;

const A: &str = "fa:16:3e:00:00:0a";
const B: &str = "fa:16:3e:00:00:0b";

fn json(socket: &std::path::Path, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let (good, out, err) = ctl_output(socket, &a);
    assert!(good, "dvr-ctl {args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// tshark's fields of every frame of `file`.
fn tshark(file: &std::path::Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec!["-r", file.to_str().unwrap(), "-T", "fields"];
    for f in fields {
        args.extend(["-e", f]);
    }
    let o = Command::new("tshark").args(&args).output().expect("tshark");
    assert!(
        o.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn capture_writes_pcapng_that_tshark_reads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let frames = udp_frames(64, 100, A, B);
    dvr::pcap::write_file(&d.join("in-a.pcap"), &frames).unwrap();
    let socket = d.join("ctl.sock");
    let cfg = [
        node_head("cap", &d.join("run")),
        vm_port(
            "vm-a",
            "pcap",
            &[
                "rx_pcap = \"in-a.pcap\"".into(),
                "infinite_rx = true".into(),
            ],
        ),
        vm_port("vm-b", "null", &[]),
        fdb(&[(A, "vm-a"), (B, "vm-b")]),
        state_in(d),
        format!("socket = \"{}\"\n", socket.display()),
    ]
    .concat();
    std::fs::write(d.join("node.toml"), cfg).unwrap();
    let mut dvr = Daemon::start(&d.join("node.toml"));
    dvr.next();
    let s = socket.as_path();

    let other = d.join("other.pcapng");
    // What vm-b receives (nothing: a capture that runs until stopped); a
    // second capture meanwhile is refused; stopped, its file is a valid
    // empty capture.
    let f0 = d.join("vm-b-rx.pcapng");
    let info = json(
        s,
        &[
            "capture",
            "start",
            "--direction",
            "rx",
            "vm-b",
            f0.to_str().unwrap(),
        ],
    );
    assert_eq!(info["running"], true, "{info}");
    let (good, _, err) = ctl_output(s, &["capture", "start", "vm-a", other.to_str().unwrap()]);
    assert!(!good && err.contains("capture stop first"), "{err}");
    let info = json(s, &["capture", "stop"]);
    assert_eq!(
        (info["running"].as_bool(), info["written"].as_u64()),
        (Some(false), Some(0)),
        "{info}"
    );
    assert_eq!(tshark(&f0, &["frame.len"]).len(), 0);

    // Both directions of vm-a (it only receives), 64 bytes kept of each
    // frame: the file closes itself after the count. At the replay's rate
    // the queue may overflow: what is lost is counted, what is written is
    // in the file.
    let f2 = d.join("vm-a.pcapng");
    json(
        s,
        &[
            "capture",
            "start",
            "--count",
            "5000",
            "--snaplen",
            "64",
            "vm-a",
            f2.to_str().unwrap(),
        ],
    );
    let info = wait_stopped(s);
    let (n, lost) = (
        info["written"].as_u64().unwrap(),
        info["lost"].as_u64().unwrap(),
    );
    assert_eq!(n + lost, 5000, "{info}");
    assert!(n >= 1024, "at least a queue's worth written: {info}");
    let rows = tshark(
        &f2,
        &["frame.len", "frame.cap_len", "frame.packet_flags_direction"],
    );
    assert_eq!(rows.len() as u64, n, "every frame written is in the file");
    assert!(
        rows.iter()
            .all(|r| r == &["100", "64", "0x00000001"].map(String::from).to_vec()),
        "{:?}",
        &rows[..rows.len().min(3)]
    );

    let f1 = d.join("vm-b.pcapng");
    let info = json(
        s,
        &[
            "capture",
            "start",
            "--direction",
            "tx",
            "--count",
            "100",
            "vm-b",
            f1.to_str().unwrap(),
        ],
    );
    assert_eq!(info["running"], true, "{info}");
    // The count reached, the file is closed by itself.
    let info = wait_stopped(s);
    assert_eq!(
        (info["written"].as_u64(), info["lost"].as_u64()),
        (Some(100), Some(0)),
        "{info}"
    );
    let rows = tshark(
        &f1,
        &[
            "frame.len",
            "eth.src",
            "eth.dst",
            "udp.dstport",
            "frame.packet_flags_direction",
        ],
    );
    assert_eq!(rows.len(), 100, "{rows:?}");
    for r in &rows {
        assert_eq!(
            r,
            &["100", A, B, "9", "0x00000002"].map(String::from).to_vec(),
            "an outbound copy of the frame sent"
        );
    }

    for (args, want) in [
        (
            vec!["capture", "start", "vm-z", other.to_str().unwrap()],
            "no interface named vm-z",
        ),
        (
            vec![
                "capture",
                "start",
                "--direction",
                "up",
                "vm-a",
                other.to_str().unwrap(),
            ],
            "rx, tx or both",
        ),
        (
            vec![
                "capture",
                "start",
                "--snaplen",
                "10",
                "vm-a",
                other.to_str().unwrap(),
            ],
            "snaplen from 64",
        ),
    ] {
        let (good, _, err) = ctl_output(s, &args);
        assert!(!good && err.contains(want), "{args:?}: {err}");
    }

    dvr.stop();
}

/// The capture's state once it stopped by itself (its count reached).
fn wait_stopped(s: &std::path::Path) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = json(s, &["capture", "show"]);
        if v["running"] == false {
            return v;
        }
        assert!(Instant::now() < deadline, "the capture never ended: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
