//! Helpers of the integration tests: a dvr-pmd child process that is always
//! stopped (also when a test fails), its JSON counters, unique names.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub mod testbed;

/// How long a test waits for a child to reach a state before failing. This is a
/// guard against a hung test, not a performance assertion.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn dvr_pmd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dvr-pmd"))
}

pub fn dvr_pktgen() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dvr-pktgen"))
}

/// A name unique to this test process and call, for EAL file prefixes.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A child process killed on drop.
pub struct Guard(pub Option<Child>);

impl Guard {
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let c = self.0.as_mut().unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.0 = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the child to exit by itself.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = self.child().try_wait().unwrap() {
                self.0 = None;
                return st;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running dvr-pmd with its JSON counter lines.
pub struct Daemon {
    pub proc: Guard,
    lines: Receiver<serde_json::Value>,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Starts dvr-pmd on `config` with JSON counters every 100 ms.
    pub fn start(config: &Path) -> Daemon {
        Daemon::spawn(Command::new(dvr_pmd()), config)
    }

    /// The same with more arguments (`--take-over`).
    pub fn start_with(config: &Path, args: &[&str]) -> Daemon {
        let mut cmd = Command::new(dvr_pmd());
        cmd.args(args);
        Daemon::spawn(cmd, config)
    }

    /// The same in network namespace `netns` (an emulated host). `ip netns
    /// exec` execs dvr-pmd: the child is dvr-pmd itself.
    pub fn start_in(netns: &str, config: &Path) -> Daemon {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(dvr_pmd());
        Daemon::spawn(cmd, config)
    }

    /// The same with more arguments (`--take-over`).
    pub fn start_in_with(netns: &str, config: &Path, args: &[&str]) -> Daemon {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(dvr_pmd()).args(args);
        Daemon::spawn(cmd, config)
    }

    fn spawn(mut cmd: Command, config: &Path) -> Daemon {
        let mut child = cmd
            .arg("--config")
            .arg(config)
            .args(["--stats-format", "json", "--stats-interval-ms", "100"])
            .env("DVR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dvr-pmd");
        let (tx, rx) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let s2 = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = s2.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Daemon {
            proc: Guard(Some(child)),
            lines: rx,
            stderr,
        }
    }

    /// The next counter line, failing the test if the daemon died or hangs.
    pub fn next(&mut self) -> serde_json::Value {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no counters from dvr-pmd; stderr:\n{}", self.stderr())
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("dvr-pmd exited; stderr:\n{}", self.stderr())
            }
        }
    }

    /// Reads counter lines until `pred` holds for one; returns it.
    pub fn until(&mut self, mut pred: impl FnMut(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.next();
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "condition not reached; last counters: {v}"
            );
        }
    }

    /// SIGTERM, then the final counter line; asserts exit code 0.
    pub fn stop(mut self) -> serde_json::Value {
        let st = self.proc.terminate();
        let mut last = None;
        while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(5)) {
            last = Some(v);
        }
        assert!(
            st.success(),
            "dvr-pmd exit status {st}; stderr:\n{}",
            self.stderr()
        );
        let last = last.expect("final counters");
        assert_eq!(last["final"], true, "last line is the final one: {last}");
        last
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

/// A port's counter from a counter line.
pub fn port(v: &serde_json::Value, name: &str, key: &str) -> u64 {
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name} in {v}"))[key]
        .as_u64()
        .unwrap()
}

/// A drop counter from a counter line.
pub fn drops(v: &serde_json::Value, reason: &str) -> u64 {
    v["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop reason {reason} in {v}"))
}

/// A `[control]` section keeping the node's model state in `dir` (a test's
/// own directory), not in the default `/var/lib/dvr/<node>/`.
pub fn state_in(dir: &Path) -> String {
    format!(
        "[control]\nstate_file = \"{}\"\n",
        dir.join("state/model.json").display()
    )
}

/// The common head of a test node configuration.
pub fn node_head(name: &str, run_dir: &Path) -> String {
    format!(
        r#"node = "{name}"
agent_mode = "dvr"
run_dir = "{run}"
[cores]
main = 0
workers = [1]
[dataplane]
poll_mode = "adaptive"
mbufs = 4095
[eal]
memory_mb = 512
file_prefix = "{prefix}"
no_shconf = true
"#,
        run = run_dir.display(),
        prefix = unique(name),
    )
}

/// Runs `cmd` to its end (killed if the test fails first); returns its status and
/// standard output.
pub fn run_guarded(cmd: &mut Command) -> (ExitStatus, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(out), &mut s);
        s
    });
    let mut g = Guard(Some(child));
    let st = g.wait();
    (st, reader.join().unwrap())
}

/// The dvr-ctl binary, built beside dvr-pmd by `cargo test --workspace`.
pub fn dvr_ctl() -> PathBuf {
    let p = dvr_pmd().with_file_name("dvr-ctl");
    assert!(
        p.exists(),
        "{} missing: run `cargo test --workspace` (it builds dvr-ctl)",
        p.display()
    );
    p
}

/// Starts `cmd` (killed if the test fails first); its standard output is
/// collected by a thread whose result is the whole output.
pub fn spawn_guarded(cmd: &mut Command) -> (Guard, std::thread::JoinHandle<String>) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(out), &mut s);
        s
    });
    (Guard(Some(child)), reader)
}

/// A `[[ports]]` entry of a VM port of `kind`, with its kind's `keys` (TOML lines).
pub fn vm_port(name: &str, kind: &str, keys: &[String]) -> String {
    format!(
        "[[ports]]\nname = \"{name}\"\nrole = \"vm\"\nkind = \"{kind}\"\n{}\n",
        keys.join("\n")
    )
}

/// `[[l2.fdb]]` entries: (MAC, port) pairs.
pub fn fdb(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(mac, port)| format!("[[l2.fdb]]\nmac = \"{mac}\"\nport = \"{port}\"\n"))
        .collect()
}

/// `dvr-ctl --socket SOCKET ARGS...`: whether it succeeded, its standard
/// output and standard error.
pub fn ctl_output(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(dvr_ctl())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `n` UDP frames of `len` bytes from (`src_mac`, 10.0.1.5:5000) to
/// (`dst_mac`, 10.0.1.6:9), numbered.
pub fn udp_frames(n: u32, len: usize, src_mac: &str, dst_mac: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            dvr::gen::udp4_frame(
                &dvr::gen::Udp4 {
                    src_mac: src_mac.parse().unwrap(),
                    dst_mac: dst_mac.parse().unwrap(),
                    src_ip: std::net::Ipv4Addr::new(10, 0, 1, 5),
                    dst_ip: std::net::Ipv4Addr::new(10, 0, 1, 6),
                    src_port: 5000,
                    dst_port: 9,
                },
                len,
                i,
            )
        })
        .collect()
}
