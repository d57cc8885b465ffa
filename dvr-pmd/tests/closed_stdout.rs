//! A standard output whose reader is gone (`dvr-ctl show errors | head -1`).
//! dvr-ctl, dvr-pktgen and dvr-pmd's one-shot commands end as `cat` does:
//! killed by SIGPIPE, nothing on standard error. A running dvr-pmd says so once
//! and goes on forwarding, then stops cleanly on SIGTERM. Each program's
//! standard output is a pipe whose read end the test closes before the program
//! writes to it.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use common::{dvr_ctl, dvr_pktgen, dvr_pmd, node_head, unique, Daemon, Guard, PATIENCE};

const SIGPIPE: i32 = 13;

/// Starts `cmd` with its standard output a pipe whose read end is closed at
/// once; its standard error is collected as it comes, and whole when the
/// thread returned ends.
fn spawn_closed(cmd: &mut Command) -> (Guard, Arc<Mutex<String>>, JoinHandle<()>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let err = child.stderr.take().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let s2 = stderr.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let mut s = s2.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    (Guard(Some(child)), stderr, reader)
}

/// Runs `cmd` to its end with its standard output closed: its status and
/// standard error.
fn run_closed(cmd: &mut Command) -> (ExitStatus, String) {
    let (mut g, stderr, reader) = spawn_closed(cmd);
    let st = g.wait();
    reader.join().unwrap();
    let s = stderr.lock().unwrap().clone();
    (st, s)
}

/// `cmd` ended as `cat` ends on a closed pipe: killed by SIGPIPE, silent.
fn assert_sigpipe(what: &str, st: ExitStatus, stderr: &str) {
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert_eq!(
        st.signal(),
        Some(SIGPIPE),
        "{what}: killed by SIGPIPE, not {st}; stderr:\n{stderr}"
    );
}

/// A node with a control socket and two VM ports, in a temporary directory:
/// null devices, or with `traffic` vm-a replaying generated frames to vm-b
/// without end.
fn node(dir: &Path, traffic: bool) -> (PathBuf, PathBuf) {
    let socket = dir.join("ctl.sock");
    let vm_a = if traffic {
        "kind = \"pcap\"\ninfinite_rx = true\ngenerate = { src_mac = \"fa:16:3e:00:00:0a\", \
         dst_mac = \"fa:16:3e:00:00:0b\", flows = 4, frame_len = 60 }\n\
         [[l2.fdb]]\nmac = \"fa:16:3e:00:00:0b\"\nport = \"vm-b\"\n"
    } else {
        "kind = \"null\"\n"
    };
    let cfg = format!(
        "{head}[control]\nsocket = \"{s}\"\nstate_file = \"{st}\"\n\
         [[ports]]\nname = \"vm-b\"\nrole = \"vm\"\nkind = \"null\"\n\
         [[ports]]\nname = \"vm-a\"\nrole = \"vm\"\n{vm_a}",
        head = node_head("pipe", &dir.join("run")),
        s = socket.display(),
        st = dir.join("state/model.json").display()
    );
    let config = dir.join("node.toml");
    std::fs::write(&config, cfg).unwrap();
    (config, socket)
}

#[test]
fn dvr_ctl_on_a_closed_pipe_ends_by_sigpipe() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = node(dir.path(), false);
    let mut daemon = Daemon::start(&config);
    // Its first counters: the control socket is up.
    daemon.next();
    let ctl = |args: &[&str]| {
        let mut c = Command::new(dvr_ctl());
        c.arg("--socket").arg(&socket).args(args);
        c
    };
    for args in [
        &["show", "errors", "--all"][..],
        &["show", "runtime"],
        &["--json", "show", "stats"],
        &["router", "list"],
    ] {
        // Once with a reader: what the closed pipe would have been given.
        let out = ctl(args).output().unwrap();
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "{args:?}: {:?}",
            out
        );
        let (st, err) = run_closed(&mut ctl(args));
        assert_sigpipe(&format!("dvr-ctl {args:?}"), st, &err);
        assert_eq!(err, "", "dvr-ctl {args:?} says nothing");
    }
    daemon.stop();
}

#[test]
fn dvr_pmd_one_shot_commands_on_a_closed_pipe_end_by_sigpipe() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = node(dir.path(), false);
    let pmd = |args: &[&str]| {
        let mut c = Command::new(dvr_pmd());
        c.args(args);
        c
    };
    for args in [
        vec!["--print-default-config"],
        vec!["--check", "--config", config.to_str().unwrap()],
    ] {
        let out = pmd(&args).output().unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{out:?}");
        let (st, err) = run_closed(&mut pmd(&args));
        assert_sigpipe(&format!("dvr-pmd {args:?}"), st, &err);
        assert_eq!(err, "", "dvr-pmd {args:?} says nothing");
    }
}

#[test]
fn dvr_pktgen_on_a_closed_pipe_ends_by_sigpipe() {
    let gen = || {
        let mut c = Command::new(dvr_pktgen());
        c.args(["--file-prefix", &unique("pktgen-pipe")])
            .args(["--port", "net_null0"]);
        c
    };
    let out = gen().output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && summary.contains("\"received\""),
        "{out:?}"
    );
    let (st, err) = run_closed(&mut gen());
    assert_sigpipe("dvr-pktgen", st, &err);
    assert!(!err.contains("dvr-pktgen:"), "no error: {err}");
}

#[test]
fn dvr_pmd_with_its_stdout_closed_forwards_on_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = node(dir.path(), true);
    let (mut g, stderr, reader) = spawn_closed(
        Command::new(dvr_pmd())
            .arg("--config")
            .arg(&config)
            .args(["--stats-format", "json", "--stats-interval-ms", "100"])
            .env("DVR_LOG", "info"),
    );
    const NOTE: &str = "standard output closed: no more counter lines";
    let deadline = Instant::now() + PATIENCE;
    while !stderr.lock().unwrap().contains(NOTE) {
        if let Some(st) = g.child().try_wait().unwrap() {
            panic!("dvr-pmd exited ({st}):\n{}", stderr.lock().unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "no word of the closed output:\n{}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Forwarding goes on: the null ports' frames are still counted.
    let received = || {
        let out = Command::new(dvr_ctl())
            .arg("--socket")
            .arg(&socket)
            .args(["--json", "show", "stats"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        common::port(&v, "vm-a", "rx_packets")
    };
    let before = received();
    let deadline = Instant::now() + PATIENCE;
    while received() <= before {
        assert!(Instant::now() < deadline, "vm-a receives nothing more");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let st = g.terminate();
    reader.join().unwrap();
    let err = stderr.lock().unwrap().clone();
    assert!(!err.contains("panicked"), "{err}");
    assert!(st.success(), "dvr-pmd exit status {st}:\n{err}");
    assert_eq!(err.matches(NOTE).count(), 1, "said once:\n{err}");
    assert!(err.contains("stopped cleanly"), "{err}");
}
