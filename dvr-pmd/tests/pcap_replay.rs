//! A capture replayed through two pcap ports of a real dvr-pmd process; what comes
//! out of each port is compared byte for byte with the expected capture, and every
//! frame that does not come out is found under its drop reason.

mod common;

use std::net::Ipv4Addr;

use common::{drops, fdb, node_head, port, state_in, vm_port, Daemon};
use dvr::gen::{udp4_frame, Udp4};
use dvr::mac::MacAddr;

const A: &str = "fa:16:3e:00:00:0a";
const B: &str = "fa:16:3e:00:00:0b";

fn frame(src: &str, dst: &str, len: usize, seq: u32) -> Vec<u8> {
    udp4_frame(
        &Udp4 {
            src_mac: src.parse::<MacAddr>().unwrap(),
            dst_mac: dst.parse::<MacAddr>().unwrap(),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 1000 + (seq % 50) as u16,
            dst_port: 9,
        },
        len,
        seq,
    )
}

#[test]
fn pcap_replay_switches_by_mac_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Port a's input: frames for B (forwarded) mixed with frames that must drop.
    let mut in_a = Vec::new();
    let mut want_b = Vec::new();
    for i in 0..300u32 {
        let f = frame(A, B, 60 + (i as usize * 7) % 1400, i);
        want_b.push(f.clone());
        in_a.push(f);
        match i % 50 {
            0 => in_a.push(frame(A, "fa:16:3e:00:00:99", 60, i)), // unknown_dst_mac
            10 => in_a.push(frame(A, "ff:ff:ff:ff:ff:ff", 60, i)), // flood_not_configured
            20 => in_a.push(frame("01:00:5e:00:00:01", B, 60, i)), // multicast_src_mac
            30 => in_a.push(vec![0xfa; 13]),                      // runt_frame
            40 => in_a.push(frame(B, A, 60, i)),                  // same_ingress_port
            _ => {}
        }
    }
    // Port b's input: frames for A only.
    let in_b: Vec<Vec<u8>> = (0..200u32)
        .map(|i| frame(B, A, 64 + i as usize, 10_000 + i))
        .collect();
    let want_a = in_b.clone();

    dvr::pcap::write_file(&d.join("in-a.pcap"), &in_a).unwrap();
    dvr::pcap::write_file(&d.join("in-b.pcap"), &in_b).unwrap();
    let cfg = [
        node_head("pcap", &d.join("run")),
        vm_port(
            "vm-a",
            "pcap",
            &[
                "rx_pcap = \"in-a.pcap\"".into(),
                "tx_pcap = \"out-a.pcap\"".into(),
            ],
        ),
        vm_port(
            "vm-b",
            "pcap",
            &[
                "rx_pcap = \"in-b.pcap\"".into(),
                "tx_pcap = \"out-b.pcap\"".into(),
            ],
        ),
        fdb(&[(A, "vm-a"), (B, "vm-b")]),
        state_in(d),
    ]
    .concat();
    std::fs::write(d.join("node.toml"), cfg).unwrap();

    let mut dvr = Daemon::start(&d.join("node.toml"));
    let total_in = (in_a.len() + in_b.len()) as u64;
    dvr.until(|v| port(v, "vm-a", "rx_packets") + port(v, "vm-b", "rx_packets") == total_in);
    let last = dvr.stop();

    // Counters: everything received, exactly the expected frames sent, the rest
    // under its reason.
    assert_eq!(port(&last, "vm-a", "rx_packets"), in_a.len() as u64);
    assert_eq!(port(&last, "vm-b", "rx_packets"), in_b.len() as u64);
    assert_eq!(port(&last, "vm-b", "tx_packets"), want_b.len() as u64);
    assert_eq!(port(&last, "vm-a", "tx_packets"), want_a.len() as u64);
    let bytes = |fs: &[Vec<u8>]| fs.iter().map(|f| f.len() as u64).sum::<u64>();
    assert_eq!(port(&last, "vm-b", "tx_bytes"), bytes(&want_b));
    assert_eq!(port(&last, "vm-a", "rx_bytes"), bytes(&in_a));
    for (reason, n) in [
        ("unknown_dst_mac", 6),
        ("flood_not_configured", 6),
        ("multicast_src_mac", 6),
        ("runt_frame", 6),
        ("same_ingress_port", 6),
        ("multi_segment", 0),
        ("no_tx_queue", 0),
        ("tx_queue_full", 0),
    ] {
        assert_eq!(drops(&last, reason), n, "drop counter {reason}");
    }

    // The captures written by the pcap devices, byte for byte and in order.
    let out_b = dvr::pcap::read_file(&d.join("out-b.pcap")).unwrap();
    let out_a = dvr::pcap::read_file(&d.join("out-a.pcap")).unwrap();
    assert_eq!(out_b.len(), want_b.len());
    assert!(
        out_b == want_b,
        "out-b.pcap differs from the expected frames"
    );
    assert!(
        out_a == want_a,
        "out-a.pcap differs from the expected frames"
    );
    // The node removed its runtime files.
    assert_eq!(std::fs::read_dir(d.join("run")).unwrap().count(), 0);
}

/// A capture replayed forever keeps the worker busy. Its cycles per packet
/// come in three parts, the drivers' receive calls, dvr's own work and the
/// drivers' transmit calls, measured on one poll in 16 and adding up to the
/// whole: in the JSON counters and in `dvr-ctl show runtime`.
#[test]
fn busy_worker_splits_its_cycles_into_rx_work_and_tx() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a: Vec<Vec<u8>> = (0..64).map(|i| frame(A, B, 60, i)).collect();
    let b: Vec<Vec<u8>> = (0..64).map(|i| frame(B, A, 60, 100 + i)).collect();
    dvr::pcap::write_file(&d.join("in-a.pcap"), &a).unwrap();
    dvr::pcap::write_file(&d.join("in-b.pcap"), &b).unwrap();
    let replay = |f: &str| [format!("rx_pcap = \"{f}\""), "infinite_rx = true".into()];
    let socket = d.join("ctl.sock");
    let cfg = [
        node_head("split", &d.join("run")),
        vm_port("vm-a", "pcap", &replay("in-a.pcap")),
        vm_port("vm-b", "pcap", &replay("in-b.pcap")),
        fdb(&[(A, "vm-a"), (B, "vm-b")]),
        state_in(d),
        format!("socket = \"{}\"\n", socket.display()),
    ]
    .concat();
    std::fs::write(d.join("node.toml"), cfg).unwrap();

    let mut dvr = Daemon::start(&d.join("node.toml"));
    let v = dvr.until(|v| v["workers"][0]["sampled_packets"].as_u64() > Some(100_000));
    let runtime = std::process::Command::new(common::dvr_ctl())
        .arg("--socket")
        .arg(&socket)
        .args(["show", "runtime"])
        .output()
        .unwrap();
    // Rates: after the daemon's second second, each interface's packets per
    // second over the last one, near its average since the start.
    let later = dvr.until(|v| v["t"].as_f64().unwrap_or(0.0) > 2.2);
    let stats = std::process::Command::new(common::dvr_ctl())
        .arg("--socket")
        .arg(&socket)
        .args(["--json", "show", "stats"])
        .output()
        .unwrap();
    let text_stats = std::process::Command::new(common::dvr_ctl())
        .arg("--socket")
        .arg(&socket)
        .args(["show", "stats"])
        .output()
        .unwrap();
    dvr.stop();
    let st: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let pa = st["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "vm-a")
        .unwrap();
    let pps = pa["rates"]["rx_pps"].as_f64().unwrap_or(0.0);
    let mean = port(&later, "vm-a", "rx_packets") as f64 / later["t"].as_f64().unwrap();
    assert!(
        pps > 0.3 * mean && pps < 3.0 * mean,
        "vm-a's rate {pps}/s, its mean {mean}/s: {pa}"
    );
    let bps = pa["rates"]["rx_bps"].as_f64().unwrap_or(0.0);
    assert!((bps / pps - 8.0 * 60.0).abs() < 1.0, "60-byte frames: {pa}");
    let text_stats = String::from_utf8_lossy(&text_stats.stdout);
    assert!(text_stats.contains("rx pkt/s"), "{text_stats}");

    let w = &v["workers"][0];
    let n = |k: &str| w[k].as_u64().unwrap_or_else(|| panic!("no {k} in {w}"));
    let f = |k: &str| {
        w["cycles_per_packet_split"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("no split {k} in {w}"))
    };
    // Every poll of the replay finds packets: one in 16 of them is sampled,
    // and nearly all cycles are busy ones.
    let share = w["busy_share"].as_f64().unwrap_or(0.0);
    assert!(share > 0.5, "busy share {share}: {w}");
    let share = n("sampled_packets") as f64 / n("packets") as f64;
    assert!((0.04..0.09).contains(&share), "sampled share {share}: {w}");
    assert!(
        n("sampled_rx_cycles") + n("sampled_tx_cycles") < n("sampled_cycles"),
        "{w}"
    );
    let (rx, work, tx) = (f("rx"), f("work"), f("tx"));
    assert!(rx > 0.0 && work > 0.0 && tx > 0.0, "{w}");
    let whole = w["cycles_per_packet"].as_f64().unwrap();
    assert!((rx + work + tx - whole).abs() < 1e-6 * whole, "{w}");

    let text = String::from_utf8_lossy(&runtime.stdout);
    assert!(runtime.status.success(), "{text}");
    let header = text.lines().nth(1).unwrap_or_default();
    let row = text.lines().nth(3).unwrap_or_default();
    let cells = |l: &str| {
        l.split('|')
            .map(|c| c.trim().to_owned())
            .collect::<Vec<_>>()
    };
    let (header, row) = (cells(header), cells(row));
    for part in ["rx", "dvr", "tx"] {
        let i = header.iter().position(|h| h == part);
        let cell = i.and_then(|i| row.get(i)).map(String::as_str);
        assert!(
            cell.and_then(|c| c.parse::<f64>().ok())
                .is_some_and(|c| c > 0.0),
            "column {part}: {text}"
        );
    }
}

/// A worker that forwarded a burst of traffic and then idles, polling empty
/// queues (busy polling; adaptive polling would sleep, and sleeps are not
/// counted): its cycles per packet over all its cycles grow with every
/// empty poll, but `show runtime` leads with the cycles per packet of the
/// polls that got packets (what forwarding costs, as OVS's
/// `pmd-stats-show`), gives the busy share of all cycles, and keeps the
/// all-cycles figure in a column of its own.
#[test]
fn an_idle_worker_shows_its_busy_cycles_apart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a: Vec<Vec<u8>> = (0..20_000).map(|i| frame(A, B, 60, i)).collect();
    dvr::pcap::write_file(&d.join("in-a.pcap"), &a).unwrap();
    let socket = d.join("ctl.sock");
    let head = node_head("idle", &d.join("run"));
    assert!(head.contains("poll_mode = \"adaptive\""), "{head}");
    let cfg = [
        head.replace("poll_mode = \"adaptive\"", "poll_mode = \"busy\""),
        vm_port("vm-a", "pcap", &["rx_pcap = \"in-a.pcap\"".into()]),
        vm_port("vm-b", "null", &[]),
        fdb(&[(A, "vm-a"), (B, "vm-b")]),
        state_in(d),
        format!("socket = \"{}\"\n", socket.display()),
    ]
    .concat();
    std::fs::write(d.join("node.toml"), cfg).unwrap();
    let mut dvr = Daemon::start(&d.join("node.toml"));
    dvr.until(|v| port(v, "vm-a", "rx_packets") == a.len() as u64);
    // Then idle: at least half a second of empty polls and sleeps.
    let first = dvr.next();
    let v =
        dvr.until(|v| v["t"].as_f64().unwrap_or(0.0) > first["t"].as_f64().unwrap_or(0.0) + 0.5);
    let runtime = std::process::Command::new(common::dvr_ctl())
        .arg("--socket")
        .arg(&socket)
        .args(["show", "runtime"])
        .output()
        .unwrap();
    dvr.stop();

    let w = &v["workers"][0];
    let f = |k: &str| w[k].as_f64().unwrap_or_else(|| panic!("no {k} in {w}"));
    let (busy, all, share) = (
        f("busy_cycles_per_packet"),
        f("cycles_per_packet"),
        f("busy_share"),
    );
    assert!(busy > 0.0, "no sampled busy poll: {w}");
    assert!(
        all > 2.0 * busy,
        "idle cycles not in the all-cycles figure: {w}"
    );
    assert!(share > 0.0 && share < 0.5, "busy share {share}: {w}");

    let text = String::from_utf8_lossy(&runtime.stdout);
    assert!(runtime.status.success(), "{text}");
    let cells = |l: &str| {
        l.split('|')
            .map(|c| c.trim().to_owned())
            .collect::<Vec<_>>()
    };
    let header = cells(text.lines().nth(1).unwrap_or_default());
    let row = cells(text.lines().nth(3).unwrap_or_default());
    let cell = |name: &str| -> f64 {
        let i = header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}: {text}"));
        row[i].trim_end_matches('%').parse().unwrap()
    };
    assert!(
        cell("busy cycles/packet") * 2.0 < cell("all cycles/packet"),
        "{text}"
    );
    assert!(cell("busy cycles") < 50.0, "{text}");
}
