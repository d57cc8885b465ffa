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
use dvr::stats::CycleSplit;

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

/// Ends a bench that cannot measure: why, in one line on standard error, and
/// exit status 1. Not a panic: the bench profile aborts on one (exit 134, a
/// backtrace with `RUST_BACKTRACE`), which says less and leaves a core. The
/// bench's temporary directory stays, with the logs a message names.
pub fn cannot_measure(why: impl std::fmt::Display) -> ! {
    eprintln!("{}", cannot_measure_line(&why.to_string()));
    std::process::exit(1)
}

/// [`cannot_measure`]'s line: `why` on one line, whatever it quotes (a log
/// line, an error with its own line breaks).
pub fn cannot_measure_line(why: &str) -> String {
    format!(
        "bench: cannot measure: {}",
        why.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// The last non-empty line of a forwarder's log, to quote in one line.
pub fn last_line(log: &str) -> &str {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(empty)")
}

/// A measurement window over a forwarder's rate reports: it ends `secs` after
/// its first report, and not before it has the `need` reports a rate is worked
/// out of. A window shorter than the forwarder's reports allow
/// (`DVR_BENCH_SECONDS=1`, or reports that come slower than once a second) is
/// measured longer, with a note, rather than refused.
pub struct Window {
    who: &'static str,
    secs: u64,
    need: usize,
    start: Option<Instant>,
    stretched: bool,
}

impl Window {
    pub fn new(who: &'static str, secs: u64, need: usize) -> Window {
        Window {
            who,
            secs,
            need,
            start: None,
            stretched: false,
        }
    }

    /// After a report came, `reports` in all: whether the window is over.
    pub fn over(&mut self, reports: usize) -> bool {
        let start = *self.start.get_or_insert_with(Instant::now);
        if start.elapsed() < Duration::from_secs(self.secs) {
            return false;
        }
        if reports < self.need {
            self.stretched = true;
            return false;
        }
        if self.stretched {
            eprintln!(
                "  {}: window measured {:.1} s, not {} s: a rate needs {} reports",
                self.who,
                start.elapsed().as_secs_f64(),
                self.secs,
                self.need
            );
        }
        true
    }

    /// Whether the window went on past `secs` for its reports.
    pub fn stretched(&self) -> bool {
        self.stretched
    }

    /// The forwarder stopped reporting with `reports` (its output ended: it
    /// exited with `status`): the bench cannot measure. `more`: where to look.
    pub fn ended(&self, reports: usize, status: &str, more: &str) -> ! {
        cannot_measure(format!(
            "{} ended ({status}) after {reports} of the {} reports a rate needs{more}",
            self.who, self.need
        ))
    }
}

/// One forwarder's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    /// Packets forwarded per second, all ports summed, in millions.
    pub mpps: f64,
    pub cycles_per_packet: f64,
    pub tsc_hz: u64,
    /// dvr-pmd's only: its cycles per packet in the drivers' receive calls,
    /// its own work and the drivers' transmit calls (sampled polls).
    pub split: Option<CycleSplit>,
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

/// `" (rx R, dvr W, tx T)"`: the parts of dvr-pmd's cycles per packet
/// ([`Measured::split`]), or nothing.
pub fn parts(split: Option<CycleSplit>) -> String {
    split.map_or(String::new(), |s| format!(" ({s})"))
}

/// The median of each part of the splits (`None` if one is missing).
pub fn median_split(v: impl Iterator<Item = Option<CycleSplit>>) -> Option<CycleSplit> {
    let all: Option<Vec<CycleSplit>> = v.collect();
    let all = all.filter(|a| !a.is_empty())?;
    Some(CycleSplit {
        rx: median(all.iter().map(|s| s.rx)),
        work: median(all.iter().map(|s| s.work)),
        tx: median(all.iter().map(|s| s.tx)),
    })
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

/// The dvr-pmd binary measured: this build's, or `DVR_BENCH_PMD` (another
/// build's, to compare two builds on the same machine in alternation).
fn dvr_pmd() -> PathBuf {
    std::env::var_os("DVR_BENCH_PMD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dvr-pmd")))
}

/// The cores of a measured dvr-pmd: its control thread (`main`) and its
/// workers, `[core]`, or with `DVR_BENCH_WORKERS=2` `[core, other]`, the
/// other core shared with the control thread (a machine of two cores).
pub fn cores(core: usize) -> (usize, String) {
    let other = if core == 0 { 1 } else { 0 };
    match env_or("DVR_BENCH_WORKERS", 1usize) {
        1 => (other, format!("[{core}]")),
        _ => (other, format!("[{core}, {other}]")),
    }
}

/// A node configuration: two pcap VM ports replaying `a` and `b` at each other
/// through the static FDB, the worker on `core`, plus `extra` TOML sections.
pub fn node_config(dir: &Path, a: &Path, b: &Path, core: usize, extra: &str) -> String {
    let (main, workers) = cores(core);
    format!(
        r#"
node = "bench"
agent_mode = "dvr"
run_dir = "{dir}/run"
[cores]
main = {main}
workers = {workers}
[eal]
file_prefix = "dvr-bench-{pid}"
no_shconf = true
{huge}
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
        huge = huge_eal(),
    )
}

/// Runs dvr-pmd forwarding between two pcap ports replaying `a` and `b` for `secs`
/// seconds; the rate is taken from its JSON counters over the last seconds.
/// `fdb`: more static L2 entries (`[[l2.fdb]]` TOML) beside those of
/// [`node_config`]. Its (empty) model is kept in `dir`.
pub fn run_dvr(dir: &Path, a: &Path, b: &Path, core: usize, secs: u64, fdb: &str) -> Measured {
    let cfg = node_config(
        dir,
        a,
        b,
        core,
        &format!(
            "[stats]\ninterval_ms = 1000\nformat = \"json\"\n[control]\nstate_file = \"{}\"\n{fdb}",
            dir.join("state/model.json").display()
        ),
    );
    run_dvr_config(dir, &cfg, secs)
}

/// Runs dvr-pmd with configuration `cfg` (which must print JSON counters every
/// second: `[stats] interval_ms = 1000, format = "json"`) for `secs` seconds;
/// the rate is the packets sent on all ports, over the last seconds.
pub fn run_dvr_config(dir: &Path, cfg: &str, secs: u64) -> Measured {
    run_dvr_window(dir, cfg, secs).measured
}

/// A dvr-pmd measurement and the JSON counter lines that open and close its
/// window (for the counters a bench reads beyond the rate: drops, sessions).
pub struct DvrWindow {
    pub measured: Measured,
    pub first: serde_json::Value,
    pub last: serde_json::Value,
}

impl DvrWindow {
    /// The drop reasons counted in the window, with their counts.
    pub fn drops(&self) -> Vec<(String, u64)> {
        let at = |v: &serde_json::Value, k: &str| v["drops"][k].as_u64().unwrap_or(0);
        let Some(reasons) = self.last["drops"].as_object() else {
            return Vec::new();
        };
        reasons
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    at(&self.last, k).saturating_sub(at(&self.first, k)),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The packets each port sent in the window, by port name.
    pub fn sent(&self) -> Vec<(String, u64)> {
        sent_between(&self.first, &self.last)
    }
}

/// The packets each port sent between counter lines `first` and `last`, by
/// port name.
fn sent_between(first: &serde_json::Value, last: &serde_json::Value) -> Vec<(String, u64)> {
    let ports = |v: &serde_json::Value| v["ports"].as_array().cloned().unwrap_or_default();
    ports(last)
        .iter()
        .zip(ports(first))
        .map(|(l, f)| {
            let n = |p: &serde_json::Value| p["tx_packets"].as_u64().unwrap_or(0);
            let name = l["name"].as_str().unwrap_or("?").to_owned();
            (name, n(l).saturating_sub(n(&f)))
        })
        .collect()
}

/// [`run_dvr_config`], with the window's first and last counter lines. With
/// `DVR_BENCH_PERF=FILE` set, `perf record -g -p PID -o FILE` samples the
/// daemon over the window (from its second counter line on, `secs` - 1 s).
pub fn run_dvr_window(dir: &Path, cfg: &str, secs: u64) -> DvrWindow {
    let path = dir.join("bench.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut child = Command::new(dvr_pmd())
        .arg("--config")
        .arg(&path)
        .env("DVR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| cannot_measure(format!("cannot start dvr-pmd: {e}")));
    // Read to its end, after the window too: dvr-pmd takes a closed standard
    // output for a reader that left, and says so.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines: Vec<serde_json::Value> = Vec::new();
    // Three counter lines: the first (start-up) is skipped, the rate is over
    // the others.
    let mut window = Window::new("dvr-pmd", secs, 3);
    let mut over = false;
    let mut perf: Option<std::process::Child> = None;
    for line in (&mut out).lines() {
        let Ok(line) = line else { break };
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        lines.push(v);
        if lines.len() == 2 {
            // What of the daemon is on transparent huge pages (its packet
            // buffers and its tables), once per measurement.
            let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", child.id()));
            let kb = rollup.ok().and_then(|r| {
                r.lines()
                    .find(|l| l.starts_with("AnonHugePages:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            });
            eprintln!(
                "  dvr-pmd on transparent huge pages: {} MiB",
                kb.map_or("?".into(), |k| (k / 1024).to_string())
            );
        }
        if lines.len() == 2 && secs > 1 {
            if let Ok(file) = std::env::var("DVR_BENCH_PERF") {
                perf = Some(
                    Command::new("perf")
                        .args(["record", "-q", "-g", "-o", &file, "-p"])
                        .arg(child.id().to_string())
                        .args(["--", "sleep", &(secs - 1).to_string()])
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("perf record"),
                );
            }
        }
        if window.over(lines.len()) {
            over = true;
            break;
        }
    }
    let rest = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    if let Some(mut p) = perf {
        let _ = p.wait();
    }
    let status = stop(&mut child);
    let _ = rest.join();
    if !over {
        // Its own error is on standard error, above.
        window.ended(lines.len(), &status, "");
    }
    // Skip the first second (start-up), rate over the rest.
    let (first, last) = (lines[1].clone(), lines[lines.len() - 1].clone());
    let w = |v: &serde_json::Value, k: &str| v["workers"][0][k].as_u64().unwrap();
    let dt = last["t"].as_f64().unwrap() - first["t"].as_f64().unwrap();
    let mpps = if dt > 0.0 {
        let sent: u64 = sent_between(&first, &last).iter().map(|(_, n)| n).sum();
        sent as f64 / dt / 1e6
    } else {
        0.0
    };
    let pk = w(&last, "packets") - w(&first, "packets");
    let cycles_per_packet = if pk > 0 {
        (w(&last, "poll_cycles") - w(&first, "poll_cycles")) as f64 / pk as f64
    } else {
        0.0
    };
    // A sampled counter over the window (`None` from a build without them,
    // measured by `DVR_BENCH_PMD`: no split).
    let sampled = |k: &str| {
        let (a, b) = (
            first["workers"][0][k].as_u64()?,
            last["workers"][0][k].as_u64()?,
        );
        b.checked_sub(a)
    };
    let split = (|| {
        dvr::stats::split(
            cycles_per_packet,
            sampled("sampled_cycles")?,
            sampled("sampled_rx_cycles")?,
            sampled("sampled_tx_cycles")?,
        )
    })();
    let measured = Measured {
        mpps,
        cycles_per_packet,
        tsc_hz: last["tsc_hz"].as_u64().unwrap_or(0),
        split,
    };
    let nworkers = last["workers"].as_array().map_or(0, |a| a.len());
    if nworkers > 1 {
        // Per worker: what it decided (its own frames and those handed to
        // it), its cycles per packet in its busy polls (sampled: an
        // underloaded worker's empty polls left out), what it handed on.
        for i in 0..nworkers {
            let d = |k: &str| {
                last["workers"][i][k]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(first["workers"][i][k].as_u64().unwrap_or(0))
            };
            let busy = d("sampled_packets");
            eprintln!(
                "  dvr-pmd worker {i}: {:.2} Mpps decided, {:.1} cycles/packet in busy polls, \
                 handed on {:.2} Mpps, taken {:.2} Mpps",
                d("packets") as f64 / dt.max(1e-9) / 1e6,
                if busy > 0 {
                    d("sampled_cycles") as f64 / busy as f64
                } else {
                    0.0
                },
                d("handoff_out") as f64 / dt.max(1e-9) / 1e6,
                d("handoff_in") as f64 / dt.max(1e-9) / 1e6,
            );
        }
    }
    DvrWindow {
        measured,
        first,
        last,
    }
}

/// SIGINT, then waits: how the child ended, as a phrase (`exit status: 1`).
fn stop(child: &mut std::process::Child) -> String {
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    child
        .wait()
        .map_or_else(|e| format!("not waited for: {e}"), |st| st.to_string())
}

/// Runs `dpdk-testpmd` in `mode` between pcap ports replaying `pcaps`, forwarding
/// on `core`, for `secs` seconds; the rate is the median of its per-second Rx-pps
/// reports (all ports summed), the first two skipped.
pub fn run_testpmd(dir: &Path, pcaps: &[&Path], core: usize, secs: u64, mode: &str) -> Measured {
    let vdevs: Vec<String> = pcaps
        .iter()
        .enumerate()
        .map(|(i, p)| format!("net_pcap{i},rx_pcap={},infinite_rx=1", p.display()))
        .collect();
    run_testpmd_vdevs(dir, &vdevs, core, secs, mode, 16384, 1024)
}

/// [`run_testpmd`] on the devices `vdevs` (`--vdev` arguments, one port each,
/// paired in order), with a pool of `mbufs` and `memory_mb` of EAL memory (a
/// capture replayed with `infinite_rx` holds one mbuf per frame). Cycles per
/// packet: the TSC rate EAL measured over the rate (the forwarding core
/// polls all the time).
pub fn run_testpmd_vdevs(
    dir: &Path,
    vdevs: &[String],
    core: usize,
    secs: u64,
    mode: &str,
    mbufs: u32,
    memory_mb: u32,
) -> Measured {
    let main = if core == 0 { 1 } else { 0 };
    let prefix = format!("tp-bench-{}", std::process::id());
    let log = dir.join("testpmd-eal.log");
    let mut cmd = Command::new("dpdk-testpmd");
    cmd.args([
        "-l",
        &format!("{main},{core}"),
        "--main-lcore",
        &main.to_string(),
    ])
    .args(huge_args())
    .args(["-m", &memory_mb.to_string(), "--no-pci", "--no-shconf"])
    .args(["--file-prefix", &prefix])
    // for "TSC frequency is ~N KHz"
    .arg("--log-level=lib.eal:debug");
    for v in vdevs {
        cmd.args(["--vdev", v]);
    }
    cmd.args([
        "--",
        &format!("--forward-mode={mode}"),
        "--stats-period",
        "1",
        "--total-num-mbufs",
        &mbufs.to_string(),
    ]);
    // testpmd stops forwarding when its standard input closes: keep a pipe open.
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .current_dir(dir)
        .spawn()
        .unwrap_or_else(|e| {
            cannot_measure(format!(
                "cannot start dpdk-testpmd ({e}; scripts/install-deps installs it)"
            ))
        });
    let out = BufReader::new(child.stdout.take().unwrap());
    let nports = vdevs.len();
    let mut current = Vec::new();
    let mut sums = Vec::new();
    // The window starts with the first report (start-up, e.g. loading a large
    // capture, excluded), which has no baseline (0 pps): two at least.
    let mut window = Window::new("dpdk-testpmd", secs, 2);
    let mut over = false;
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
                    if window.over(sums.len()) {
                        over = true;
                        break;
                    }
                }
            }
        }
    }
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"\n");
    }
    let status = stop(&mut child);
    // testpmd (DPDK 22.11) leaves its runtime directory behind.
    let _ = std::fs::remove_dir_all(dpdk_runtime_dir(&prefix));
    let eal_log = std::fs::read_to_string(&log).unwrap_or_default();
    if !over {
        window.ended(
            sums.len(),
            &status,
            &format!("; its log {}: {}", log.display(), last_line(&eal_log)),
        );
    }
    let tsc_hz = eal_tsc_hz(&eal_log);
    let mpps = median(sums[1..].iter().copied()) / 1e6;
    if mpps <= 0.0 {
        cannot_measure(format!(
            "dpdk-testpmd forwarded nothing in its window (Rx-pps sums {sums:?})"
        ));
    }
    Measured {
        mpps,
        cycles_per_packet: Measured::cycles_at(tsc_hz as f64, mpps),
        tsc_hz,
        split: None,
    }
}

// ---- DPDK's C l3fwd (LPM), the reference of the routing benchmarks ----

/// The l3fwd binary, built by `scripts/build-l3fwd` (once; cached in
/// `target/l3fwd/`).
pub fn l3fwd_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(root.join("scripts/build-l3fwd"))
        .status()
        .unwrap_or_else(|e| cannot_measure(format!("cannot run scripts/build-l3fwd: {e}")));
    if !status.success() {
        cannot_measure(format!(
            "scripts/build-l3fwd failed ({status}); its output is above"
        ));
    }
    root.join("target/l3fwd/build/l3fwd")
}

/// EAL's runtime directory of a `--file-prefix` (as EAL and dpdk-telemetry.py
/// compute it).
pub fn dpdk_runtime_dir(prefix: &str) -> PathBuf {
    let base = match std::env::var_os("RUNTIME_DIRECTORY") {
        Some(d) => PathBuf::from(d),
        None if std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false) =>
        {
            PathBuf::from("/var/run")
        }
        None => std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp")),
    };
    base.join("dpdk").join(prefix)
}

/// A client of a DPDK process's telemetry socket
/// (`RUNTIME_DIR/dpdk_telemetry.v2`, SOCK_SEQPACKET, one JSON reply per command).
/// The standard library has no SOCK_SEQPACKET sockets, so this drives DPDK's own
/// client, `dpdk-telemetry.py` (package dpdk-dev), which reads commands on standard
/// input and prints one JSON reply per line when not on a terminal.
pub struct Telemetry {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Telemetry {
    /// Connects to the process started with `--file-prefix prefix`; waits up to
    /// 10 s for its socket.
    pub fn connect(prefix: &str) -> Telemetry {
        let sock = dpdk_runtime_dir(prefix).join("dpdk_telemetry.v2");
        let t0 = Instant::now();
        while !sock.exists() {
            if t0.elapsed() > Duration::from_secs(10) {
                cannot_measure(format!("no telemetry socket {} after 10 s", sock.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut child = Command::new("dpdk-telemetry.py")
            .args(["-f", prefix])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                cannot_measure(format!(
                    "cannot start dpdk-telemetry.py ({e}; package dpdk-dev)"
                ))
            });
        let out = BufReader::new(child.stdout.take().unwrap());
        Telemetry { child, out }
    }

    /// Sends `cmd` (e.g. `/ethdev/stats,0`) and returns the value under the
    /// command's name in the reply.
    pub fn query(&mut self, cmd: &str) -> serde_json::Value {
        let stdin = self.child.stdin.as_mut().unwrap();
        if let Err(e) = writeln!(stdin, "{cmd}").and_then(|()| stdin.flush()) {
            cannot_measure(format!("dpdk-telemetry.py does not read {cmd}: {e}"));
        }
        let mut line = String::new();
        let n = self.out.read_line(&mut line).unwrap_or(0);
        if n == 0 {
            cannot_measure(format!("dpdk-telemetry.py gave no reply to {cmd}"));
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| cannot_measure(format!("telemetry reply to {cmd}: {e}: {line}")));
        let name = cmd.split(',').next().unwrap_or(cmd);
        v.get(name).cloned().unwrap_or_else(|| {
            cannot_measure(format!("telemetry reply to {cmd} lacks {name}: {line}"))
        })
    }

    /// A port's `/ethdev/stats` counter, e.g. `opackets`.
    pub fn port_counter(&mut self, port: u16, name: &str) -> u64 {
        let v = self.query(&format!("/ethdev/stats,{port}"));
        v[name]
            .as_u64()
            .unwrap_or_else(|| cannot_measure(format!("/ethdev/stats,{port} has no {name}: {v}")))
    }

    /// Packets sent, summed over ports `0..nports`, and when they were read (the
    /// middle of the queries).
    pub fn sent(&mut self, nports: u16) -> (Instant, u64) {
        let t0 = Instant::now();
        let n = (0..nports).map(|p| self.port_counter(p, "opackets")).sum();
        let t1 = Instant::now();
        (t0 + (t1 - t0) / 2, n)
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // EOF: the client closes the socket and exits
        let _ = self.child.wait();
    }
}

/// The arguments of l3fwd's application part: LPM lookups, every port in the
/// mask, one RX queue per port polled by `core`, packet types parsed in software
/// (the pcap PMD sets none; without it l3fwd would not recognise IPv4/IPv6 and
/// would send everything back out of its input port), promiscuous ports.
fn l3fwd_app_args(nports: usize, core: usize) -> Vec<String> {
    let config: Vec<String> = (0..nports).map(|p| format!("({p},0,{core})")).collect();
    vec![
        "--".into(),
        "--lookup=lpm".into(),
        "-p".into(),
        format!("{:#x}", (1u32 << nports) - 1),
        format!("--config={}", config.join(",")),
        "--parse-ptype".into(),
        "-P".into(),
    ]
}

/// A started l3fwd: the child, its file prefix and its log file.
struct L3fwd {
    child: std::process::Child,
    prefix: String,
    log: PathBuf,
}

impl L3fwd {
    /// Starts l3fwd on `core` alone (main lcore and forwarding lcore) with one
    /// `net_pcap` port per entry of `ports` (`rx_pcap=...` plus extra device
    /// arguments) and waits until it forwards.
    fn start(dir: &Path, ports: &[String], core: usize, tag: &str) -> L3fwd {
        let prefix = format!("l3fwd-bench-{}-{tag}", std::process::id());
        let log = dir.join(format!("{prefix}.log"));
        let mut cmd = Command::new(l3fwd_bin());
        cmd.args(["-l", &core.to_string()])
            .args(huge_args())
            .args(["-m", "1024", "--no-pci", "--no-shconf"])
            .args(["--file-prefix", &prefix])
            // for "TSC frequency is ~N KHz"
            .arg("--log-level=lib.eal:debug");
        for (i, p) in ports.iter().enumerate() {
            cmd.args(["--vdev", &format!("net_pcap{i},{p}")]);
        }
        cmd.args(l3fwd_app_args(ports.len(), core));
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .current_dir(dir)
            .spawn()
            .unwrap_or_else(|e| cannot_measure(format!("cannot start l3fwd: {e}")));
        let mut l = L3fwd { child, prefix, log };
        let t0 = Instant::now();
        while !l.log_text().contains("entering main loop") {
            if let Ok(Some(st)) = l.child.try_wait() {
                cannot_measure(format!(
                    "l3fwd ended ({st}) before forwarding; its log {}: {}",
                    l.log.display(),
                    last_line(&l.log_text())
                ));
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = l.child.kill();
                let _ = l.child.wait();
                cannot_measure(format!(
                    "l3fwd not forwarding after 20 s; its log {}: {}",
                    l.log.display(),
                    last_line(&l.log_text())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        l
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The TSC rate EAL measured, from its debug log.
    fn tsc_hz(&self) -> u64 {
        eal_tsc_hz(&self.log_text())
    }

    /// SIGINT (l3fwd stops its lcores, stops and closes its ports: pcap outputs
    /// are flushed), wait, remove the runtime directory.
    fn stop(mut self) -> String {
        stop(&mut self.child);
        let _ = std::fs::remove_dir_all(dpdk_runtime_dir(&self.prefix));
        let text = self.log_text();
        let _ = std::fs::remove_file(&self.log);
        text
    }
}

/// Runs DPDK's l3fwd (LPM) on `core` between `net_pcap` ports replaying `pcaps`
/// (`infinite_rx=1`, no `tx_pcap`: what it sends is counted and dropped). After
/// a 1 s warm-up it reads the ports' counters over telemetry, again `secs`
/// seconds later; the rate is the packets sent, all ports summed, over that
/// window, and cycles/packet is the TSC rate over it (the core polls all the time).
pub fn run_l3fwd(dir: &Path, pcaps: &[&Path], core: usize, secs: u64) -> Measured {
    let ports: Vec<String> = pcaps
        .iter()
        .map(|p| format!("rx_pcap={},infinite_rx=1", p.display()))
        .collect();
    let l = L3fwd::start(dir, &ports, core, "run");
    let tsc_hz = l.tsc_hz();
    let mut tel = Telemetry::connect(&l.prefix);
    std::thread::sleep(Duration::from_secs(1));
    let (t0, n0) = tel.sent(pcaps.len() as u16);
    std::thread::sleep(Duration::from_secs(secs));
    let (t1, n1) = tel.sent(pcaps.len() as u16);
    drop(tel);
    let log = l.stop();
    let mpps = (n1 - n0) as f64 / (t1 - t0).as_secs_f64() / 1e6;
    if mpps <= 0.0 {
        cannot_measure(format!(
            "l3fwd forwarded nothing in {secs} s; its log's last line: {}",
            last_line(&log)
        ));
    }
    if tsc_hz == 0 {
        cannot_measure("no TSC rate in l3fwd's EAL log (\"TSC frequency is ~N KHz\")");
    }
    Measured {
        mpps,
        cycles_per_packet: Measured::cycles_at(tsc_hz as f64, mpps),
        tsc_hz,
        split: None,
    }
}

/// Runs l3fwd once over `pcaps` (each replayed once, no `infinite_rx`) with a
/// `tx_pcap` per port; returns what each port sent, in port order. Waits until
/// as many packets were sent as the captures hold (or 10 s).
pub fn l3fwd_forward_once(dir: &Path, pcaps: &[&Path], core: usize) -> Vec<Vec<Vec<u8>>> {
    let total: u64 = pcaps
        .iter()
        .map(|p| dvr::pcap::read_file(p).unwrap().len() as u64)
        .sum();
    let outs: Vec<PathBuf> = (0..pcaps.len())
        .map(|i| dir.join(format!("l3fwd-out{i}.pcap")))
        .collect();
    let ports: Vec<String> = pcaps
        .iter()
        .zip(&outs)
        .map(|(i, o)| format!("rx_pcap={},tx_pcap={}", i.display(), o.display()))
        .collect();
    let l = L3fwd::start(dir, &ports, core, "once");
    let mut tel = Telemetry::connect(&l.prefix);
    let t0 = Instant::now();
    while tel.sent(pcaps.len() as u16).1 < total && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(tel);
    l.stop();
    outs.iter()
        .map(|o| {
            let f = dvr::pcap::read_file(o).unwrap();
            let _ = std::fs::remove_file(o);
            f
        })
        .collect()
}

/// The TSC rate EAL measured, from its debug log ("TSC frequency is ~N KHz");
/// 0 if the log does not say.
pub fn eal_tsc_hz(log: &str) -> u64 {
    log.lines()
        .find_map(|l| {
            l.split("TSC frequency is ~")
                .nth(1)?
                .strip_suffix(" KHz")?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|khz| khz * 1000)
        .unwrap_or(0)
}

/// What sets one benchmark node apart in [`model_config`].
pub struct BenchNode<'a> {
    pub agent_mode: &'a str,
    pub vtep: &'a str,
    pub dvr_mac: &'a str,
    /// Names the EAL file prefix, the control socket and the state file.
    pub tag: &'a str,
    pub memory_mb: u32,
    /// A static underlay neighbour (IP, MAC), as the resolver would learn it.
    pub neighbor: (&'a str, &'a str),
}

/// dvr-pmd's configuration for node `bench` with the model `model` saved as
/// its state file in `dir`, its worker on `core`, JSON counters every second,
/// and `extra` TOML (ports, more sections) at the end.
pub fn model_config(
    dir: &Path,
    core: usize,
    n: &BenchNode<'_>,
    model: &dvr::model::Model,
    extra: &str,
) -> String {
    let state = dir.join(format!("{}-model.json", n.tag));
    let _ = std::fs::remove_file(&state);
    model.save(&state).unwrap();
    let (main, workers) = cores(core);
    format!(
        r#"
node = "bench"
agent_mode = "{agent_mode}"
vtep = "{vtep}"
dvr_mac = "{dvr_mac}"
run_dir = "{dir}/run"
[cores]
main = {main}
workers = {workers}
[eal]
file_prefix = "dvr-{tag}-{pid}"
no_shconf = true
{huge}
memory_mb = {memory_mb}
[stats]
interval_ms = 1000
format = "json"
[control]
socket = "{dir}/run/{tag}.sock"
state_file = "{state}"
[[underlay.neighbors]]
ip = "{nip}"
mac = "{nmac}"
{extra}
"#,
        agent_mode = n.agent_mode,
        vtep = n.vtep,
        dvr_mac = n.dvr_mac,
        tag = n.tag,
        memory_mb = n.memory_mb,
        nip = n.neighbor.0,
        nmac = n.neighbor.1,
        dir = dir.display(),
        state = state.display(),
        pid = std::process::id(),
        huge = huge_eal(),
    )
}

/// A pcap port `name` of `role` replaying `rx` from memory.
pub fn pcap_port(name: &str, role: &str, rx: &Path) -> String {
    format!(
        "[[ports]]\nname = \"{name}\"\nrole = \"{role}\"\nkind = \"pcap\"\nrx_pcap = \"{}\"\ninfinite_rx = true\n",
        rx.display()
    )
}

/// EAL's memory for the reference forwarders: `--no-huge`, or with
/// `DVR_BENCH_HUGE=DIR` the hugepages of that hugetlbfs mount (README).
pub fn huge_args() -> Vec<String> {
    match std::env::var("DVR_BENCH_HUGE") {
        Ok(d) => vec!["--huge-dir".into(), d],
        Err(_) => vec!["--no-huge".into()],
    }
}

/// dvr-pmd's `[eal]` lines for the same choice as [`huge_args`] (nothing:
/// its default, no hugepages, packet buffers on transparent huge pages).
pub fn huge_eal() -> String {
    match std::env::var("DVR_BENCH_HUGE") {
        Ok(d) => format!("hugepages = true\nextra_args = [\"--huge-dir\", \"{d}\"]"),
        Err(_) => String::new(),
    }
}
