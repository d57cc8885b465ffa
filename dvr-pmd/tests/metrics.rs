//! The `[metrics]` endpoint with real clients: a dvr-pmd forwarding a
//! replayed capture (1,000 frames from port a to port b, 10 runts), scraped
//! by `curl`; Prometheus's own `promtool check metrics` validates the
//! exposition, and the samples carry the counters' values. Other paths get
//! 404, other methods 405.

mod common;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use common::{fdb, node_head, port, state_in, vm_port, Daemon};
use dvr::gen::{udp4_frame, Udp4};
use dvr::mac::MacAddr;

const A: &str = "fa:16:3e:00:00:0a";
const B: &str = "fa:16:3e:00:00:0b";

fn frame(seq: u32) -> Vec<u8> {
    udp4_frame(
        &Udp4 {
            src_mac: A.parse::<MacAddr>().unwrap(),
            dst_mac: B.parse::<MacAddr>().unwrap(),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 1000,
            dst_port: 9,
        },
        100,
        seq,
    )
}

/// `curl` of `url` with `args`: (HTTP status, body).
fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl (scripts/install-deps installs it)");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// A sample's value: the line `name{labels} value` of `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn prometheus_scrapes_valid_metrics_with_the_counters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut frames: Vec<Vec<u8>> = (0..1000).map(frame).collect();
    for _ in 0..10 {
        frames.push(vec![0xfa; 13]); // runt_frame
    }
    dvr::pcap::write_file(&d.join("in-a.pcap"), &frames).unwrap();
    // A free port, taken and given back (the daemon binds it a moment later).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = [
        node_head("metrics", &d.join("run")),
        vm_port("vm-a", "pcap", &["rx_pcap = \"in-a.pcap\"".into()]),
        vm_port("vm-b", "null", &[]),
        fdb(&[(A, "vm-a"), (B, "vm-b")]),
        state_in(d),
        format!("[metrics]\nlisten = \"{addr}\"\n"),
    ]
    .concat();
    std::fs::write(d.join("node.toml"), cfg).unwrap();
    let mut dvr = Daemon::start(&d.join("node.toml"));
    dvr.until(|v| port(v, "vm-a", "rx_packets") == frames.len() as u64);

    let url = format!("http://{addr}/metrics");
    let (code, text) = curl(&url, &[]);
    assert_eq!(code, 200, "{text}");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-deps installs prometheus)");
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let o = check.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        sample(&text, "dvr_interface_rx_packets_total{interface=\"vm-a\"}"),
        1010.0
    );
    assert_eq!(
        sample(&text, "dvr_interface_tx_packets_total{interface=\"vm-b\"}"),
        1000.0
    );
    assert_eq!(
        sample(&text, "dvr_drops_total{reason=\"runt_frame\"}"),
        10.0
    );
    assert_eq!(
        sample(&text, "dvr_drops_total{reason=\"unknown_dst_mac\"}"),
        0.0
    );
    assert!(sample(&text, "dvr_worker_packets_total{worker=\"0\",core=\"1\"}") >= 1010.0);
    assert!(sample(&text, "dvr_worker_cycles_total{worker=\"0\",core=\"1\"}") > 0.0);
    assert!(text.contains("dvr_worker_rx_queue{worker=\"0\",interface=\"vm-a\",queue=\"0\"} 1"));
    assert!(text.contains("dvr_info{node=\"metrics\"} 1"));

    let (code, _) = curl(&format!("http://{addr}/"), &[]);
    assert_eq!(code, 404);
    let (code, _) = curl(&url, &["-X", "POST"]);
    assert_eq!(code, 405);
    // Still serving after those.
    assert_eq!(curl(&url, &[]).0, 200);
    dvr.stop();
}
