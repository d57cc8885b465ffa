//! Shared pieces of the benchmarks: input captures, running the reference
//! forwarders and dvr-pmd on them, reading their rates.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dvr::gen::{udp4_frame, Udp4};
use dvr::mac::MacAddr;

pub const MAC_A: &str = "fa:16:3e:00:00:0a";
pub const MAC_B: &str = "fa:16:3e:00:00:0b";

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// One forwarder's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    /// Packets forwarded per second, all ports summed, in millions.
    pub mpps: f64,
    pub cycles_per_packet: f64,
    pub tsc_hz: u64,
}

impl Measured {
    pub fn cycles_at(tsc_hz: f64, mpps: f64) -> f64 {
        if mpps == 0.0 {
            0.0
        } else {
            tsc_hz / (mpps * 1e6)
        }
    }
}

/// Two captures: frames from VM A to VM B and the other way round.
pub fn pcap_pair(dir: &Path, frame_len: usize, flows: u16) -> (PathBuf, PathBuf) {
    let mk = |src: &str, dst: &str, name: &str| {
        let frames: Vec<Vec<u8>> = (0..flows)
            .map(|i| {
                let f = Udp4 {
                    src_mac: src.parse::<MacAddr>().unwrap(),
                    dst_mac: dst.parse::<MacAddr>().unwrap(),
                    src_ip: Ipv4Addr::new(10, 0, 0, 1),
                    dst_ip: Ipv4Addr::new(10, 0, 0, 2),
                    src_port: 1024 + i,
                    dst_port: 9,
                };
                udp4_frame(&f, frame_len, i as u32)
            })
            .collect();
        let p = dir.join(name);
        dvr::pcap::write_file(&p, &frames).unwrap();
        p
    };
    (
        mk(MAC_A, MAC_B, "a-to-b.pcap"),
        mk(MAC_B, MAC_A, "b-to-a.pcap"),
    )
}

fn dvr_pmd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dvr-pmd"))
}

/// A node configuration: two pcap VM ports replaying `a` and `b` at each other
/// through the static FDB, the worker on `core`, plus `extra` TOML sections.
pub fn node_config(dir: &Path, a: &Path, b: &Path, core: usize, extra: &str) -> String {
    let main = if core == 0 { 1 } else { 0 };
    format!(
        r#"
node = "bench"
agent_mode = "dvr"
run_dir = "{dir}/run"
[cores]
main = {main}
workers = [{core}]
[eal]
file_prefix = "dvr-bench-{pid}"
no_shconf = true
{extra}
[[ports]]
name = "vm-a"
role = "vm"
kind = "pcap"
rx_pcap = "{a}"
infinite_rx = true
[[ports]]
name = "vm-b"
role = "vm"
kind = "pcap"
rx_pcap = "{b}"
infinite_rx = true
[[l2.fdb]]
mac = "{MAC_A}"
port = "vm-a"
[[l2.fdb]]
mac = "{MAC_B}"
port = "vm-b"
"#,
        dir = dir.display(),
        a = a.display(),
        b = b.display(),
        pid = std::process::id(),
    )
}

/// Runs dvr-pmd forwarding between two pcap ports replaying `a` and `b` for `secs`
/// seconds; the rate is taken from its JSON counters over the last seconds.
pub fn run_dvr(dir: &Path, a: &Path, b: &Path, core: usize, secs: u64) -> Measured {
    let cfg = node_config(
        dir,
        a,
        b,
        core,
        "[stats]\ninterval_ms = 1000\nformat = \"json\"",
    );
    let path = dir.join("bench.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut child = Command::new(dvr_pmd())
        .arg("--config")
        .arg(&path)
        .env("DVR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start dvr-pmd");
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut samples: Vec<(f64, u64, u64, u64)> = Vec::new(); // t, tx packets, busy cycles, packets
    let mut tsc_hz = 0;
    let mut start = None;
    for line in out.lines() {
        let Ok(line) = line else { break };
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        tsc_hz = v["tsc_hz"].as_u64().unwrap_or(0);
        let tx: u64 = v["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["tx_packets"].as_u64().unwrap())
            .sum();
        let w = &v["workers"][0];
        samples.push((
            v["t"].as_f64().unwrap(),
            tx,
            w["poll_cycles"].as_u64().unwrap(),
            w["packets"].as_u64().unwrap(),
        ));
        if start.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(secs) {
            break;
        }
    }
    stop(&mut child);
    assert!(
        samples.len() >= 3,
        "dvr-pmd gave {} counter lines in {secs} s: too few to measure",
        samples.len()
    );
    // Skip the first second (start-up), rate over the rest.
    let s = &samples[1..];
    let (first, last) = (s[0], s[s.len() - 1]);
    let dt = last.0 - first.0;
    let mpps = if dt > 0.0 {
        (last.1 - first.1) as f64 / dt / 1e6
    } else {
        0.0
    };
    let pk = last.3 - first.3;
    Measured {
        mpps,
        cycles_per_packet: if pk > 0 {
            (last.2 - first.2) as f64 / pk as f64
        } else {
            0.0
        },
        tsc_hz,
    }
}

fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

/// Runs `dpdk-testpmd` in `mode` between pcap ports replaying `pcaps`, forwarding
/// on `core`, for `secs` seconds; the rate is the median of its per-second Rx-pps
/// reports (all ports summed), the first two skipped.
pub fn run_testpmd(dir: &Path, pcaps: &[&Path], core: usize, secs: u64, mode: &str) -> Measured {
    let main = if core == 0 { 1 } else { 0 };
    let mut cmd = Command::new("dpdk-testpmd");
    cmd.args([
        "-l",
        &format!("{main},{core}"),
        "--main-lcore",
        &main.to_string(),
    ])
    .args(["--no-huge", "-m", "1024", "--no-pci", "--no-shconf"])
    .args(["--file-prefix", &format!("tp-bench-{}", std::process::id())]);
    for (i, p) in pcaps.iter().enumerate() {
        cmd.args([
            "--vdev",
            &format!("net_pcap{i},rx_pcap={},infinite_rx=1", p.display()),
        ]);
    }
    cmd.args([
        "--",
        &format!("--forward-mode={mode}"),
        "--stats-period",
        "1",
        "--total-num-mbufs",
        "16384",
    ]);
    // testpmd stops forwarding when its standard input closes: keep a pipe open.
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .current_dir(dir)
        .spawn()
        .expect("start dpdk-testpmd (scripts/install-deps installs it)");
    let out = BufReader::new(child.stdout.take().unwrap());
    let nports = pcaps.len();
    let mut current = Vec::new();
    let mut sums = Vec::new();
    let mut start = None;
    for line in out.lines() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.trim().strip_prefix("Rx-pps:") {
            if let Some(v) = rest
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<f64>().ok())
            {
                current.push(v);
                if current.len() == nports {
                    sums.push(current.iter().sum::<f64>());
                    current.clear();
                }
            }
        }
        // The measurement window starts with the first report (start-up excluded).
        if start.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(secs) {
            break;
        }
    }
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"\n");
    }
    stop(&mut child);
    // The first report has no baseline (0 pps).
    assert!(
        sums.len() >= 2,
        "dpdk-testpmd gave {} rate reports in {secs} s: too few to measure",
        sums.len()
    );
    let mpps = median(sums[1..].iter().copied()) / 1e6;
    assert!(mpps > 0.0, "dpdk-testpmd forwarded nothing: {sums:?}");
    Measured {
        mpps,
        ..Default::default()
    }
}
