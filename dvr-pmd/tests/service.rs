//! dvr-pmd under a service manager: the test plays systemd's part. It binds
//! a unix datagram socket, starts dvr-pmd with `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` set, and checks what arrives: `READY=1` first, once the
//! node forwards (its control socket answers at once, the saved model's
//! generation is the one the workers use, its STATUS says so), `WATCHDOG=1`
//! every half period after it, `STOPPING=1` on SIGTERM, then exit 0. A
//! `WATCHDOG_PID` that is not dvr-pmd's gets no pings. And
//! `packaging/dvr-pmd.service` passes `systemd-analyze verify` (skipped,
//! said so, where systemd-analyze is missing).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{dvr_pmd, node_head, Guard, PATIENCE};
use serde_json::Value;

struct Node {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    socket: PathBuf,
    config: PathBuf,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let socket = d.join("ctl.sock");
    let cfg = format!(
        "{head}[control]\nsocket = \"{s}\"\nstate_file = \"{st}\"\n\
         [[ports]]\nname = \"vm-a\"\nrole = \"vm\"\nkind = \"null\"\n",
        head = node_head("svc", &d.join("run")),
        s = socket.display(),
        st = d.join("state/model.json").display()
    );
    let config = d.join("node.toml");
    std::fs::write(&config, cfg).unwrap();
    Node {
        _dir: dir,
        dir: d,
        socket,
        config,
    }
}

/// dvr-pmd with the service manager's environment; its standard error in
/// `log`.
fn start(n: &Node, notify: &Path, env: &[(&str, &str)], log: &str) -> Guard {
    start_with(n, notify, env, log, &[])
}

fn start_with(n: &Node, notify: &Path, env: &[(&str, &str)], log: &str, args: &[&str]) -> Guard {
    let mut cmd = Command::new(dvr_pmd());
    cmd.args(args)
        .arg("--config")
        .arg(&n.config)
        .args(["--stats-interval-ms", "0"])
        .env("NOTIFY_SOCKET", notify)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(n.dir.join(log)).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Guard(Some(cmd.spawn().expect("spawn dvr-pmd")))
}

/// The next notification, within `wait`.
fn recv(sock: &UnixDatagram, wait: Duration) -> Option<String> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

/// One request on the control socket.
fn rpc(socket: &Path, line: &str) -> Value {
    let mut c = BufReader::new(UnixStream::connect(socket).expect("control socket answers"));
    c.get_mut().write_all(line.as_bytes()).unwrap();
    c.get_mut().write_all(b"\n").unwrap();
    let mut answer = String::new();
    c.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

fn status(socket: &Path) -> Value {
    rpc(socket, r#"{"version":1,"method":"status"}"#)["result"].clone()
}

fn log(n: &Node, name: &str) -> String {
    std::fs::read_to_string(n.dir.join(name)).unwrap_or_default()
}

/// SIGTERM: STOPPING=1 arrives, then the daemon exits 0.
fn stop(n: &Node, mut d: Guard, sock: &UnixDatagram, logname: &str) {
    let pid = d.child().id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let m = recv(sock, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no STOPPING=1; stderr:\n{}", log(n, logname)));
        if m.lines().any(|l| l == "STOPPING=1") {
            break;
        }
        assert!(
            m == "WATCHDOG=1",
            "only watchdog pings before STOPPING: {m:?}"
        );
        assert!(Instant::now() < deadline);
    }
    let st = d.terminate();
    assert!(st.success(), "exit {st}; stderr:\n{}", log(n, logname));
}

#[test]
fn ready_after_forwarding_watchdog_while_alive_stopping_on_sigterm() {
    let n = node();
    let notify = n.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();

    // A first run makes a model: the second restores it.
    let d = start(&n, &notify, &[], "first.log");
    let m = recv(&sock, PATIENCE).unwrap_or_else(|| panic!("no READY; {}", log(&n, "first.log")));
    assert!(m.lines().any(|l| l == "READY=1"), "{m:?}");
    // Without WATCHDOG_USEC: no pings.
    assert_eq!(recv(&sock, Duration::from_millis(700)), None);
    common::testbed::ctl(
        &n.socket,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "--provider-segment",
            "1001",
            "net1",
        ],
    );
    let saved = status(&n.socket)["generation"].as_u64().unwrap();
    assert!(saved > 0);
    stop(&n, d, &sock, "first.log");

    let started = Instant::now();
    let d = start(&n, &notify, &[("WATCHDOG_USEC", "200000")], "second.log");
    let m = recv(&sock, PATIENCE)
        .unwrap_or_else(|| panic!("no READY; stderr:\n{}", log(&n, "second.log")));
    let ready_after = started.elapsed();
    // READY=1 is the first message, with a STATUS and the main pid.
    let lines: Vec<&str> = m.lines().collect();
    assert_eq!(lines[0], "READY=1", "{m:?}");
    assert!(
        lines.contains(&format!("MAINPID={}", d.0.as_ref().unwrap().id()).as_str()),
        "{m:?}"
    );
    let st = lines
        .iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS: {m:?}"));
    assert!(
        st.starts_with("forwarding") && st.contains(&format!("model generation {saved}")),
        "{st}"
    );
    // The node forwards: the control socket answers at once, and the
    // workers' tables are those of the saved model.
    let s = status(&n.socket);
    assert_eq!(s["generation"], saved, "{s}");
    assert_eq!(s["published_generation"], saved, "{s}");
    // The log says the workers run before READY was sent.
    assert!(
        log(&n, "second.log").contains("worker running"),
        "{}",
        log(&n, "second.log")
    );

    // WATCHDOG=1 every 100 ms (half of 200 ms): about 20 within 2 s (at
    // least 12: a loaded machine delays some).
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < Duration::from_secs(2) {
        match recv(&sock, Duration::from_millis(1500)) {
            Some(m) if m == "WATCHDOG=1" => pings += 1,
            Some(m) => panic!("unexpected notification {m:?}"),
            None => panic!("watchdog pings stopped after {pings}"),
        }
    }
    assert!((12..=25).contains(&pings), "{pings} pings in 2 s");
    stop(&n, d, &sock, "second.log");
    eprintln!("READY {ready_after:?} after start, {pings} watchdog pings in 2 s");

    // A watchdog meant for another process (WATCHDOG_PID) is not ours.
    let d = start(
        &n,
        &notify,
        &[("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")],
        "third.log",
    );
    let m = recv(&sock, PATIENCE).unwrap_or_else(|| panic!("no READY; {}", log(&n, "third.log")));
    assert!(m.starts_with("READY=1"), "{m:?}");
    assert_eq!(recv(&sock, Duration::from_millis(700)), None);
    stop(&n, d, &sock, "third.log");
}

/// `--take-over` with nobody to take over from is an ordinary start (READY
/// comes); with a port two processes cannot share it refuses, naming it,
/// before starting anything.
#[test]
fn take_over_alone_starts_and_refuses_what_cannot_be_shared() {
    let n = node();
    let notify = n.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let d = start_with(&n, &notify, &[], "alone.log", &["--take-over"]);
    let m = recv(&sock, PATIENCE).unwrap_or_else(|| panic!("no READY; {}", log(&n, "alone.log")));
    assert!(m.starts_with("READY=1"), "{m:?}");
    assert!(!log(&n, "alone.log").contains("taking over"));
    stop(&n, d, &sock, "alone.log");

    let tap = format!(
        "{}[[ports]]\nname = \"t\"\nrole = \"vm\"\nkind = \"tap\"\niface = \"dvrsvc0\"\n",
        std::fs::read_to_string(&n.config).unwrap()
    );
    std::fs::write(&n.config, tap).unwrap();
    let out = Command::new(dvr_pmd())
        .args(["--take-over", "--config"])
        .arg(&n.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("port t (tap) cannot be taken over"), "{err}");
    assert!(!err.contains("starting EAL"), "nothing started: {err}");

    // The same for an interface added at run time (restored at start).
    let cfg = std::fs::read_to_string(&n.config).unwrap();
    std::fs::write(&n.config, &cfg[..cfg.rfind("[[ports]]").unwrap()]).unwrap();
    std::fs::write(
        n.dir.join("state/model.json.interfaces"),
        r#"{"format":1,"interfaces":[{"name":"vhu1","type":"vhost-user","socket":"/tmp/x.sock"}]}"#,
    )
    .unwrap();
    let out = Command::new(dvr_pmd())
        .args(["--take-over", "--config"])
        .arg(&n.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("interface vhu1 (vhost-user server) cannot be taken over"),
        "{err}"
    );
}

#[test]
fn the_unit_file_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/dvr-pmd.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "ExecStart=",
    ] {
        assert!(text.contains(key), "{key} missing in {}", unit.display());
    }
    // systemd-analyze checks the unit and that ExecStart's binary exists:
    // a copy of the unit pointing at this build's dvr-pmd.
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: unit not verified");
        return;
    };
    assert!(v.status.success());
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("dvr-pmd.service");
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/dvr-pmd", &dvr_pmd().display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Warnings of the machine's own units (not ours) are not ours to fix.
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("dvr-pmd")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {}\n{err}",
        out.status
    );
}
