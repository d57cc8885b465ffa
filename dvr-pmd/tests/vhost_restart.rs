//! A VM that restarts gets traffic again, in both vhost-user roles. The "VMs"
//! are `dvr-pktgen` processes holding two virtio_user devices (as in
//! `vhost_user.rs`); each round a new one sends a counted stream both ways,
//! stays connected while the test reads the daemon's link state (`dvr-ctl
//! show status`: up), and exits (link down); the next round is a new process
//! on the same sockets, as a rebooted VM's QEMU would be.
//!
//! - Server role (the default): dvr-pmd creates the sockets and keeps
//!   listening on them while no peer is there; it removes them at exit.
//! - Client role (`client = true`, what OVS calls `dpdkvhostuserclient`): the
//!   peer owns the socket (virtio_user `server=1`, as QEMU's `-chardev
//!   socket,server=on`). dvr-pmd starts before any peer exists, connects when
//!   the socket appears, and reconnects by itself (DPDK's vhost library
//!   retries every second) after the peer left and came back. It never
//!   creates or removes the peer's socket, not even at exit.

mod common;

use common::testbed::ctl;
use common::PATIENCE;
use common::{drops, dvr_pktgen, fdb, node_head, port, spawn_guarded, unique, vm_port, Daemon};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const A: &str = "fa:16:3e:00:00:0a";
const B: &str = "fa:16:3e:00:00:0b";

/// Frames each way per round.
const N: u64 = 2000;

/// The node's files in a test's directory.
struct Node {
    ctl: PathBuf,
    sock_a: PathBuf,
    sock_b: PathBuf,
}

/// A daemon `node` in `d` with two vhost-user ports, vm-a (MAC A) and vm-b
/// (MAC B), switched by a static table, in the client role if `client`.
fn start(d: &Path, node: &str, client: bool) -> (Daemon, Node) {
    let n = Node {
        ctl: d.join("ctl.sock"),
        sock_a: d.join("vm-a.sock"),
        sock_b: d.join("vm-b.sock"),
    };
    let keys = |s: &Path| {
        vec![
            format!("socket = \"{}\"", s.display()),
            format!("client = {client}"),
        ]
    };
    let cfg = [
        node_head(node, &d.join("run")),
        format!(
            "[control]\nsocket = \"{}\"\nstate_file = \"{}\"\n",
            n.ctl.display(),
            d.join("state/model.json").display()
        ),
        vm_port("vm-a", "vhost-user", &keys(&n.sock_a)),
        vm_port("vm-b", "vhost-user", &keys(&n.sock_b)),
        fdb(&[(A, "vm-a"), (B, "vm-b")]),
    ]
    .concat();
    std::fs::write(d.join("node.toml"), cfg).unwrap();
    let mut dvr = Daemon::start(&d.join("node.toml"));
    dvr.next();
    (dvr, n)
}

/// The daemon's link state of vm-a and vm-b, as `dvr-ctl show status` gives it.
fn links(ctl_sock: &Path) -> [bool; 2] {
    let v: Value = serde_json::from_str(&ctl(ctl_sock, &["--json", "show", "status"])).unwrap();
    let up = |name: &str| {
        v["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no port {name} in {v}"))["link_up"]
            .as_bool()
            .unwrap()
    };
    [up("vm-a"), up("vm-b")]
}

/// Waits until both links are `up` (or both down).
fn wait_links(ctl_sock: &Path, up: bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let l = links(ctl_sock);
        if l == [up, up] {
            return;
        }
        assert!(Instant::now() < deadline, "links {l:?}, want both {up}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One "VM" lifetime: a new dvr-pktgen on both sockets (the sockets' server
/// if `peer_is_server`) probes both ways, sends N counted frames each way
/// and stays connected while the daemon reports both links up; then it exits
/// and the daemon reports them down. Asserts that every counted frame
/// arrived intact, and that the daemon counted every frame the peer sent
/// and every one it delivered, the probes it could not deliver (a queue not
/// yet set up) under their drop reasons. Returns the peer's summary.
fn round(dvr: &mut Daemon, n: &Node, peer_is_server: bool) -> Value {
    let before = dvr.next();
    let dev = |i: usize, s: &Path| {
        let server = if peer_is_server { ",server=1" } else { "" };
        format!("virtio_user{i},path={}{server}", s.display())
    };
    let (mut peer, out) = spawn_guarded(
        Command::new(dvr_pktgen())
            .args(["--file-prefix", &unique("pktgen")])
            .args(["--port", &dev(0, &n.sock_a)])
            .args(["--port", &dev(1, &n.sock_b)])
            .args(["--probe", &format!("0:{A}:{B}")])
            .args(["--probe", &format!("1:{B}:{A}")])
            .args(["--send", &format!("0:{A}:{B}:{N}")])
            .args(["--send", &format!("1:{B}:{A}:{N}")])
            .arg("--hold")
            .stdin(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    // Connected (the peer holds until its standard input closes): up.
    wait_links(&n.ctl, true);
    drop(peer.child().stdin.take());
    let st = peer.wait();
    let out = out.join().unwrap();
    assert!(st.success(), "dvr-pktgen failed: {out}");
    let gen: Value = serde_json::from_str(out.trim()).expect("pktgen summary");
    // Gone: down.
    wait_links(&n.ctl, false);

    for p in 0..2 {
        assert_eq!(gen["ports"][p]["sent"], N, "{gen}");
        assert_eq!(gen["ports"][p]["received"], N, "every frame arrived: {gen}");
        assert_eq!(gen["ports"][p]["received_bad"], 0, "{gen}");
    }
    let probes = |p: usize, what: &str| gen["ports"][p][what].as_u64().unwrap();
    let (sent_a, sent_b) = (probes(0, "probes_sent"), probes(1, "probes_sent"));
    let (got_a, got_b) = (probes(0, "probes_received"), probes(1, "probes_received"));
    let delta = |v: &Value, name: &str, key: &str| port(v, name, key) - port(&before, name, key);
    let lost = |v: &Value| {
        drops(v, "tx_queue_full") + drops(v, "tx_link_down")
            - drops(&before, "tx_queue_full")
            - drops(&before, "tx_link_down")
    };
    let v = dvr.until(|v| {
        delta(v, "vm-a", "rx_packets") >= N + sent_a && delta(v, "vm-b", "rx_packets") >= N + sent_b
    });
    assert_eq!(delta(&v, "vm-a", "rx_packets"), N + sent_a, "{v}");
    assert_eq!(delta(&v, "vm-b", "rx_packets"), N + sent_b, "{v}");
    assert_eq!(delta(&v, "vm-a", "tx_packets"), N + got_a, "{v}");
    assert_eq!(delta(&v, "vm-b", "tx_packets"), N + got_b, "{v}");
    assert_eq!(lost(&v), sent_a + sent_b - got_a - got_b, "{v}");
    gen
}

#[test]
fn server_role_peer_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut dvr, n) = start(dir.path(), "vhost-srv", false);
    assert!(
        n.sock_a.exists() && n.sock_b.exists(),
        "the daemon's sockets"
    );
    assert_eq!(links(&n.ctl), [false, false], "no peer yet");
    for _ in 0..2 {
        round(&mut dvr, &n, false);
        assert!(
            n.sock_a.exists() && n.sock_b.exists(),
            "still listening for the next peer"
        );
    }
    dvr.stop();
    assert!(
        !n.sock_a.exists() && !n.sock_b.exists(),
        "sockets removed at exit"
    );
}

#[test]
fn client_role_reconnects_to_a_restarted_peer() {
    let dir = tempfile::tempdir().unwrap();
    // The daemon first, with no peer anywhere (QEMU not started yet).
    let (mut dvr, n) = start(dir.path(), "vhost-cli", true);
    dvr.next();
    assert!(
        !n.sock_a.exists() && !n.sock_b.exists(),
        "a client creates no socket"
    );
    assert_eq!(links(&n.ctl), [false, false], "no peer yet");
    for _ in 0..2 {
        round(&mut dvr, &n, true);
        assert!(
            !n.sock_a.exists() && !n.sock_b.exists(),
            "the peer took its sockets along; the daemon made none"
        );
    }
    // A peer's socket is the peer's: a daemon that exits while connected
    // leaves it in place. (A bare listener stands in for the peer; the
    // daemon connects to it within its retry period.)
    let listener = std::os::unix::net::UnixListener::bind(&n.sock_a).unwrap();
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let _conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the daemon did not connect");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    dvr.stop();
    assert!(n.sock_a.exists(), "the peer's socket left in place");
}
