//! Real Linux guests on vhost-user client ports. Two QEMU guests (TCG, a
//! Debian kernel and a busybox initramfs, guest memory shared through memfd)
//! are the vhost-user servers of their sockets (`-chardev
//! socket,server=on,wait=off`), as Nova starts them for OVS-DPDK's
//! `dpdkvhostuserclient` ports; dvr-pmd's two interfaces, added at run time
//! (`dvr-ctl interface add --type vhost-user --client`), are their clients,
//! made before the guests exist. The
//! guests are on two subnets of a distributed router set up through
//! `dvr-ctl`:
//!
//! | guest | port | network | address |
//! |---|---|---|---|
//! | a | vm-a | net1 | 10.1.0.10 |
//! | b | vm-b | net2 | 10.2.0.10 |
//!
//! They ping each other across the router (their gateways answered by the
//! daemon's ARP responder) and move 1 MiB over TCP (busybox `httpd` and
//! `wget`), checked by MD5 on both ends. Then each way a VM restarts: guest
//! b's QEMU is killed (the socket goes away, the daemon's link goes down) and
//! started again on the same socket; guest a reboots itself (`reboot -f`: the
//! same QEMU resets the machine, the link goes down, and the new kernel's
//! driver sets the queues up again); the daemon itself restarts under the
//! running guests (the model from its state file, the two interfaces from
//! its saved ones); and a new daemon takes over from the running one
//! (`--take-over`, an upgrade) while guest a pings b 100 times a second: at
//! most 10 pings (100 ms) lost. After each, the link is up again and the
//! ping and a checked transfer work again.
//!
//! A second test runs guests with two vCPUs and a NIC of two queue pairs
//! (`-netdev ...,queues=2`, `mq=on`; the guest's virtio-net enables one
//! pair per vCPU) on a dvr-pmd of two workers, each interface added with
//! `--queues 2`: queue i of each is polled by worker i (`dvr-ctl interface
//! show`, `show stats`), both pairs are up in the guests, pings sent from
//! guest a's vCPU 1, then vCPU 0 (`taskset`: the guest sends on the queue of
//! its vCPU) each go through the worker of that number, and a ping each way
//! and a checked transfer work.
//!
//! QEMU, SeaBIOS, busybox and the kernel come from Debian's packages through
//! `scripts/install-deps qemu`, unpacked into a cache folder; the test is
//! skipped, saying so, only when they cannot be fetched.

mod common;

use common::testbed::ctl;
use common::{node_head, Daemon, Guard};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a guest may take to boot, or a command in it to end: TCG on a
/// loaded two-core machine. A guard against a hung test only.
const GUEST_PATIENCE: Duration = Duration::from_secs(180);

/// The networks' MTU, and the guests'.
const MTU: u32 = 1450;

/// The modules the guest's init loads, in order (`scripts/install-deps qemu`
/// keeps these of the kernel package).
const MODULES: [&str; 8] = [
    "virtio",
    "virtio_ring",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// The unpacked QEMU and guest files, fetched if missing; Err (the reason)
/// only when the packages cannot be fetched (`scripts/install-deps` exits 3).
/// Anything else that goes wrong fails the test.
fn qemu_dir() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-deps");
    let out = Command::new(&script)
        .arg("qemu")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    if out.status.code() == Some(3) {
        return Err(
            "`scripts/install-deps qemu` could not fetch QEMU and the guest packages".into(),
        );
    }
    assert!(
        out.status.success(),
        "`scripts/install-deps qemu` failed: {}",
        out.status
    );
    let dir = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(dir.lines().last().unwrap_or("").trim());
    assert!(
        dir.join("complete").exists(),
        "no unpacked QEMU in {}",
        dir.display()
    );
    Ok(dir)
}

/// One entry of a `newc` cpio archive (what the kernel unpacks an initramfs
/// from).
fn cpio_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
    let pad = |out: &mut Vec<u8>| {
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    };
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        data.len() as u32,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
    out.extend_from_slice(data);
    pad(out);
}

/// The guests' initramfs: busybox, the init script, the NIC's modules and a
/// console device node.
fn initramfs(qemu: &Path, out: &Path) {
    let guest = qemu.join("guest");
    let mut a = Vec::new();
    let mut ino = 1;
    let mut add = |a: &mut Vec<u8>, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]| {
        cpio_entry(a, ino, name, mode, rdev, data);
        ino += 1;
    };
    for d in [
        "bin",
        "dev",
        "lib",
        "lib/modules",
        "proc",
        "sys",
        "tmp",
        "srv",
    ] {
        add(&mut a, d, 0o040755, (0, 0), &[]);
    }
    add(&mut a, "dev/console", 0o020600, (5, 1), &[]);
    add(
        &mut a,
        "init",
        0o100755,
        (0, 0),
        include_bytes!("guest/init"),
    );
    let busybox = std::fs::read(guest.join("busybox")).unwrap();
    add(&mut a, "bin/busybox", 0o100755, (0, 0), &busybox);
    for m in MODULES {
        let ko = std::fs::read(guest.join(format!("{m}.ko"))).unwrap();
        add(
            &mut a,
            &format!("lib/modules/{m}.ko"),
            0o100644,
            (0, 0),
            &ko,
        );
    }
    add(&mut a, "TRAILER!!!", 0, (0, 0), &[]);
    std::fs::write(out, a).unwrap();
}

/// What a guest is: its vhost-user socket (QEMU's), MAC, address, gateway,
/// its vCPUs and its NIC's queue pairs.
#[derive(Clone)]
struct GuestSpec {
    name: &'static str,
    socket: PathBuf,
    mac: &'static str,
    cidr: &'static str,
    gw: &'static str,
    smp: u32,
    queues: u16,
}

impl GuestSpec {
    fn ip(&self) -> &str {
        self.cidr.split('/').next().unwrap()
    }
}

/// A running QEMU guest, driven through its serial console (the init reads
/// shell commands from it).
struct Guest {
    spec: GuestSpec,
    proc: Guard,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Everything the console printed, for failure messages.
    log: Arc<Mutex<String>>,
    commands: u32,
}

impl Guest {
    /// Starts QEMU (it creates the socket and listens on it; the guest boots
    /// without waiting for the backend).
    fn start(qemu: &Path, dir: &Path, spec: &GuestSpec) -> Guest {
        let root = qemu.join("root");
        let mut child = Command::new(root.join("usr/bin/qemu-system-x86_64"))
            .env("LD_LIBRARY_PATH", root.join("usr/lib/x86_64-linux-gnu"))
            // TCG itself is a module.
            .env(
                "QEMU_MODULE_DIR",
                root.join("usr/lib/x86_64-linux-gnu/qemu"),
            )
            .arg("-L")
            .arg(root.join("usr/share/seabios"))
            .arg("-L")
            .arg(root.join("usr/share/qemu"))
            .args(["-accel", "tcg", "-m", "256", "-smp", &spec.smp.to_string()])
            .args(["-nodefaults", "-display", "none", "-serial", "stdio"])
            .args(["-object", "memory-backend-memfd,id=mem,size=256M,share=on"])
            .args(["-numa", "node,memdev=mem"])
            .arg("-kernel")
            .arg(qemu.join("guest/vmlinuz"))
            .arg("-initrd")
            .arg(dir.join("initramfs.cpio"))
            .arg("-append")
            .arg(format!(
                "console=ttyS0 quiet panic=-1 vmip={} vmgw={} vmmtu={MTU}",
                spec.cidr, spec.gw
            ))
            .arg("-chardev")
            .arg(format!(
                "socket,id=c0,path={},server=on,wait=off",
                spec.socket.display()
            ))
            .args([
                "-netdev",
                &format!("type=vhost-user,id=n0,chardev=c0,queues={}", spec.queues),
            ])
            // vectors=0: QEMU 7.2 under TCG crashes in vhost_net_start with
            // MSI-X (the queues share the legacy interrupt, also with mq=on).
            .args([
                "-device",
                &format!(
                    "virtio-net-pci,netdev=n0,mac={},mq={},vectors=0,romfile=",
                    spec.mac,
                    if spec.queues > 1 { "on" } else { "off" }
                ),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qemu");
        let stdin = child.stdin.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = channel();
        let out = child.stdout.take().unwrap();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                l2.lock().unwrap().push_str(&format!("{line}\n"));
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let l3 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                l3.lock().unwrap().push_str(&format!("qemu: {line}\n"));
            }
        });
        Guest {
            spec: spec.clone(),
            proc: Guard(Some(child)),
            stdin,
            lines: rx,
            log,
            commands: 0,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Reads console lines until one satisfies `pred`; returns the lines
    /// before it and that one.
    fn until(&self, what: &str, mut pred: impl FnMut(&str) -> bool) -> (Vec<String>, String) {
        let deadline = Instant::now() + GUEST_PATIENCE;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return (before, l),
                Ok(l) => {
                    assert!(
                        !l.contains("GUEST-ERROR") && !l.contains("Kernel panic"),
                        "guest {}: {l}\n{}",
                        self.spec.name,
                        self.log()
                    );
                    before.push(l)
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "guest {}: no {what} within {GUEST_PATIENCE:?}; console:\n{}",
                    self.spec.name,
                    self.log()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "guest {}: QEMU exited waiting for {what}; console:\n{}",
                    self.spec.name,
                    self.log()
                ),
            }
        }
    }

    /// Writes `line` to the console, then 16 empty lines. (The guest's UART
    /// raises its receive interrupt when its FIFO reaches the trigger level,
    /// or after a timeout that does not always come under TCG when the
    /// guest is idle: the empty lines push the line through the FIFO.)
    fn send(&mut self, line: &str) {
        let padded = format!("{line}\n{}", "\n".repeat(16));
        self.stdin.write_all(padded.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for the init to have configured eth0 and for its shell to
    /// answer (a line written again every second until its answer comes).
    fn ready(&mut self) {
        self.until("boot", |l| l.contains("GUEST-READY"));
        let deadline = Instant::now() + GUEST_PATIENCE;
        loop {
            self.commands += 1;
            let sync = format!("__SYNC{}__", self.commands);
            self.send(&format!("echo {sync}"));
            match self.lines.recv_timeout(Duration::from_secs(1)) {
                Ok(l) if l.starts_with("__SYNC") => return,
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("guest {}: QEMU exited:\n{}", self.spec.name, self.log())
                }
            }
            assert!(
                Instant::now() < deadline,
                "guest {}: the shell does not answer:\n{}",
                self.spec.name,
                self.log()
            );
        }
    }

    /// Runs `cmd` in the guest's shell; returns its exit code and output.
    fn sh(&mut self, cmd: &str) -> (i32, String) {
        self.commands += 1;
        let end = format!("__END{}__", self.commands);
        self.send(&format!("{cmd} 2>&1; echo {end} $?"));
        // The command itself, if the console echoes it, does not start with
        // the marker.
        let (out, last) = self.until(&end, |l| l.starts_with(&end));
        let code = last[end.len()..].trim().parse().unwrap_or(-1);
        (code, out.join("\n"))
    }

    /// `cmd` must succeed; returns its output.
    fn ok(&mut self, cmd: &str) -> String {
        let (code, out) = self.sh(cmd);
        assert_eq!(
            code, 0,
            "guest {}: `{cmd}` exited {code}:\n{out}",
            self.spec.name
        );
        out
    }

    /// Three pings of `ip`, one after the other, each answered within 10 s
    /// (a TCG guest on a loaded machine may stall for a second or two: one
    /// `ping -c 3` waits only two round trips for its last replies).
    fn ping(&mut self, ip: &str) -> String {
        self.ping_via(ip, "")
    }

    /// [`Guest::ping`] run by `prefix` (`taskset 2`: on the second vCPU).
    fn ping_via(&mut self, ip: &str, prefix: &str) -> String {
        let out = self.ok(&format!(
            "(for i in 1 2 3; do {prefix} ping -c 1 -W 10 {ip} || exit 1; done)"
        ));
        assert_eq!(
            out.matches("1 packets received").count(),
            3,
            "guest {}: {out}",
            self.spec.name
        );
        out
    }

    /// Kills QEMU (the VM is gone, its socket with it).
    fn kill(mut self) {
        let _ = self.proc.child().kill();
        let _ = self.proc.wait();
    }
}

/// 1 MiB of fresh random bytes served by `server` over HTTP and fetched by
/// `client`; both MD5s must match.
fn transfer(server: &mut Guest, client: &mut Guest) {
    let sum = |out: &str| out.split_whitespace().next().unwrap_or("").to_owned();
    server.ok("killall httpd 2>/dev/null; true");
    let sent =
        sum(&server
            .ok("dd if=/dev/urandom of=/srv/f bs=1024 count=1024 2>/dev/null && md5sum /srv/f"));
    server.ok("httpd -p 8080 -h /srv");
    let url = format!("http://{}:8080/f", server.spec.ip());
    let got = sum(&client.ok(&format!(
        "rm -f /tmp/got; timeout 120 wget -q -O /tmp/got {url} && md5sum /tmp/got"
    )));
    let size = client.ok("wc -c < /tmp/got");
    assert_eq!(size.trim(), "1048576", "received size");
    assert_eq!(sent.len(), 32, "md5 of the sent file: {sent}");
    assert_eq!(
        got, sent,
        "the transfer from {} arrived intact",
        server.spec.name
    );
}

/// Prints the daemon's log (its last 200 lines) if the test fails,
/// and its counters if it still answers.
struct DaemonLog(Arc<Mutex<String>>, PathBuf);

impl Drop for DaemonLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(200);
            eprintln!("dvr-pmd's log, last lines:\n{}", lines[from..].join("\n"));
            // Not common::dvr_ctl(): it asserts, and a panic here aborts.
            let ctl_bin = common::dvr_pmd().with_file_name("dvr-ctl");
            if let Ok(o) = Command::new(ctl_bin)
                .arg("--socket")
                .arg(&self.1)
                .args(["--json", "show", "stats"])
                .output()
            {
                eprintln!("dvr-pmd's counters: {}", String::from_utf8_lossy(&o.stdout));
            }
        }
    }
}

/// The drop reasons counted in the daemon's last counters, with their counts.
fn drops(last: &Value) -> Vec<String> {
    last["drops"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, n)| n.as_u64() != Some(0))
        .map(|(r, n)| format!("{r} {n}"))
        .collect()
}

/// The daemon's link state of dataplane port `name` (`dvr-ctl show status`).
fn link_up(ctl_sock: &Path, name: &str) -> bool {
    let v: Value = serde_json::from_str(&ctl(ctl_sock, &["--json", "show", "status"])).unwrap();
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name} in {v}"))["link_up"]
        .as_bool()
        .unwrap()
}

fn wait_link(ctl_sock: &Path, name: &str, up: bool) {
    let deadline = Instant::now() + GUEST_PATIENCE;
    while link_up(ctl_sock, name) != up {
        assert!(
            Instant::now() < deadline,
            "port {name}: link not {}",
            if up { "up" } else { "down" }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Both ways work: pings each way, and a checked transfer served by `b`
/// (fetched by `a`) if `b_serves`, else the other way.
fn both_ways(a: &mut Guest, b: &mut Guest, b_serves: bool) {
    let (ia, ib) = (a.spec.ip().to_owned(), b.spec.ip().to_owned());
    a.ping(&ib);
    b.ping(&ia);
    if b_serves {
        transfer(b, a);
    } else {
        transfer(a, b);
    }
}

/// The QEMU files, or None after saying why `test` is skipped.
fn qemu_or_skip(test: &str) -> Option<PathBuf> {
    match qemu_dir() {
        Ok(d) => Some(d),
        Err(why) => {
            // Straight to standard error: the test harness keeps what
            // eprintln! prints from a passing test to itself.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

/// The two guests, with `smp` vCPUs and NICs of `queues` queue pairs.
fn guest_specs(d: &Path, smp: u32, queues: u16) -> [GuestSpec; 2] {
    [
        GuestSpec {
            name: "a",
            socket: d.join("a.sock"),
            mac: "fa:16:3e:00:01:0a",
            cidr: "10.1.0.10/24",
            gw: "10.1.0.1",
            smp,
            queues,
        },
        GuestSpec {
            name: "b",
            socket: d.join("b.sock"),
            mac: "fa:16:3e:00:02:0a",
            cidr: "10.2.0.10/24",
            gw: "10.2.0.1",
            smp,
            queues,
        },
    ]
}

/// Starts dvr-pmd with the worker cores `workers` (a TOML list) and no
/// interface in its configuration: the guests' two are added at run time
/// with `queues` queue pairs each (their first RX queue on worker 0),
/// clients of sockets nobody created yet (as Nova plugs a VM's port before
/// it starts QEMU); then the model. Returns the daemon, its log guard, its
/// configuration file and its control socket.
fn node(
    d: &Path,
    guests: &[GuestSpec],
    workers: &str,
    queues: u16,
) -> (Daemon, DaemonLog, PathBuf, PathBuf) {
    let ctl_sock = d.join("ctl.sock");
    let mut cfg = node_head("cn1", &d.join("run"));
    assert!(cfg.contains("workers = [1]"), "{cfg}");
    cfg = cfg.replace("workers = [1]", &format!("workers = {workers}"));
    cfg += &format!(
        "[control]\nsocket = \"{}\"\nstate_file = \"{}\"\n",
        ctl_sock.display(),
        d.join("state/model.json").display()
    );
    let config = d.join("node.toml");
    std::fs::write(&config, cfg).unwrap();
    let mut dvr = Daemon::start(&config);
    dvr.next();
    let log = DaemonLog(dvr.stderr.clone(), ctl_sock.clone());
    let c = |args: &[&str]| ctl(&ctl_sock, args);
    let queues = queues.to_string();
    for g in guests {
        let out = c(&[
            "interface",
            "add",
            "--type",
            "vhost-user",
            "--socket",
            g.socket.to_str().unwrap(),
            "--client",
            "--queues",
            &queues,
            "--worker",
            "0",
            &format!("vm-{}", g.name),
        ]);
        assert!(out.contains("client"), "{out}");
        assert!(!g.socket.exists(), "a client makes no socket");
    }

    // The model: one distributed router between two networks, a port on
    // each bound to this host's vhost-user interface.
    c(&["router", "create", "--distributed", "r1"]);
    for (n, g) in guests.iter().enumerate() {
        let (net, sub) = (format!("net{}", n + 1), format!("s{}", n + 1));
        let seg = (1001 + n).to_string();
        let mtu = MTU.to_string();
        c(&[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "--provider-segment",
            &seg,
            "--mtu",
            &mtu,
            &net,
        ]);
        let range = format!("10.{}.0.0/24", n + 1);
        c(&[
            "subnet",
            "create",
            "--network",
            &net,
            "--subnet-range",
            &range,
            &sub,
        ]);
        c(&["router", "add", "subnet", "r1", &sub]);
        let fixed = format!("subnet={sub},ip-address={}", g.ip());
        c(&[
            "port",
            "create",
            "--network",
            &net,
            "--mac-address",
            g.mac,
            "--fixed-ip",
            &fixed,
            "--host",
            "cn1",
            "--binding",
            &format!("vm-{}", g.name),
            &format!("p-{}", g.name),
        ]);
    }

    (dvr, log, config, ctl_sock)
}

/// Each worker's `packets` and `rx_queues` (`dvr-ctl show stats`).
fn workers(ctl_sock: &Path) -> Vec<(u64, Vec<String>)> {
    let v: Value = serde_json::from_str(&ctl(ctl_sock, &["--json", "show", "stats"])).unwrap();
    v["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers in {v}"))
        .iter()
        .map(|w| {
            let queues = w["rx_queues"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| q.as_str().unwrap().to_owned())
                .collect();
            (w["packets"].as_u64().unwrap(), queues)
        })
        .collect()
}

#[test]
fn guests_ping_and_transfer_across_restarts() {
    let started = Instant::now();
    let Some(qemu) = qemu_or_skip("guests_ping_and_transfer_across_restarts") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    initramfs(&qemu, &d.join("initramfs.cpio"));
    let guests = guest_specs(d, 1, 1);
    let (dvr, _log, config, ctl_sock) = node(d, &guests, "[1]", 1);

    // Both guests boot at once (TCG: a few seconds each).
    let mut a = Guest::start(&qemu, d, &guests[0]);
    let mut b = Guest::start(&qemu, d, &guests[1]);
    a.ready();
    b.ready();
    wait_link(&ctl_sock, "vm-a", true);
    wait_link(&ctl_sock, "vm-b", true);
    let t = Instant::now();
    both_ways(&mut a, &mut b, true);
    eprintln!("guests: first ping and transfer in {:?}", t.elapsed());

    // Guest b's QEMU dies (its socket with it): the link goes down. A new
    // QEMU on the same socket: the daemon reconnects by itself.
    b.kill();
    wait_link(&ctl_sock, "vm-b", false);
    let t = Instant::now();
    let mut b = Guest::start(&qemu, d, &guests[1]);
    b.ready();
    wait_link(&ctl_sock, "vm-b", true);
    both_ways(&mut a, &mut b, false);
    eprintln!(
        "guests: b's QEMU restarted, traffic again in {:?}",
        t.elapsed()
    );

    // Guest a reboots itself: the same QEMU, the same connection; the
    // guest's driver sets the queues up again.
    let t = Instant::now();
    a.send("reboot -f");
    // The reset stops the vhost device: down until the new kernel's driver
    // sets its queues up again.
    wait_link(&ctl_sock, "vm-a", false);
    a.ready();
    wait_link(&ctl_sock, "vm-a", true);
    both_ways(&mut a, &mut b, true);
    eprintln!("guests: a rebooted, traffic again in {:?}", t.elapsed());

    // The daemon restarts under the running guests (an upgrade): it
    // reconnects to both and restores the model from its state file.
    let t = Instant::now();
    dvr.stop();
    let mut dvr = Daemon::start(&config);
    dvr.next();
    let _log = DaemonLog(dvr.stderr.clone(), ctl_sock.clone());
    wait_link(&ctl_sock, "vm-a", true);
    wait_link(&ctl_sock, "vm-b", true);
    both_ways(&mut a, &mut b, false);
    eprintln!(
        "guests: dvr-pmd restarted, traffic again in {:?}",
        t.elapsed()
    );

    // An upgrade without a gap: a new process takes over (`--take-over`)
    // while guest a pings b 100 times a second. The new process connects
    // to the guests' sockets while the old one still holds them (QEMU
    // takes the new connection once the old one closes) and stops the old
    // one once its workers poll.
    let (dvr, lost, sent) = take_over(dvr, &config, &mut a);
    let _log = DaemonLog(dvr.stderr.clone(), ctl_sock.clone());
    eprintln!("guests: take-over of dvr-pmd: {lost} of {sent} pings lost at 100/s");
    assert!(
        lost <= MAX_LOST_TAKE_OVER,
        "{lost} of {sent} pings lost in a take-over (at most {MAX_LOST_TAKE_OVER})"
    );
    wait_link(&ctl_sock, "vm-a", true);
    wait_link(&ctl_sock, "vm-b", true);
    both_ways(&mut a, &mut b, true);

    let last = dvr.stop();
    assert!(
        guests.iter().all(|g| g.socket.exists()),
        "the guests' sockets are theirs: left in place"
    );
    eprintln!(
        "guests: done in {:?}; drops since the daemon's restart: {:?}",
        started.elapsed(),
        drops(&last)
    );
    a.kill();
    b.kill();
}

/// The most pings (at 100/s) a take-over may lose: the goal of
/// 100 ms.
const MAX_LOST_TAKE_OVER: u64 = 10;

/// `dvr-pmd --take-over` on `config` beside `old` while guest `a` pings
/// guest b (10.2.0.10) 100 times a second for 8 s; returns the new
/// process once the old one has exited and the ping ended, and the pings
/// lost and sent.
fn take_over(mut old: Daemon, config: &Path, a: &mut Guest) -> (Daemon, u64, u64) {
    a.ok("rm -f /tmp/ping; (ping -q -i 0.01 -c 800 -W 2 10.2.0.10 > /tmp/ping 2>&1 &)");
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    let mut new = Daemon::start_with(config, &["--take-over"]);
    let st = loop {
        if let Some(st) = old.proc.child().try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < GUEST_PATIENCE,
            "the old dvr-pmd did not stop; new one:\n{}",
            new.stderr()
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    old.proc.0 = None;
    assert!(
        st.success(),
        "old dvr-pmd exit {st}; stderr:\n{}",
        old.stderr()
    );
    eprintln!(
        "guests: the old dvr-pmd exited {:?} after the new one started",
        t.elapsed()
    );
    new.next();
    // The ping ends by itself (800 at 100/s, then 2 s for the last replies).
    let deadline = Instant::now() + GUEST_PATIENCE;
    let out = loop {
        let out = a.ok("cat /tmp/ping");
        if out.contains("packets received") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "guest a's ping never ended: {out}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    // busybox: "800 packets transmitted, 795 packets received, 0% packet loss"
    let num = |what: &str| -> u64 {
        let at = out
            .find(what)
            .unwrap_or_else(|| panic!("no \"{what}\" in {out}"));
        out[..at]
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (sent, got) = (num(" packets transmitted"), num(" packets received"));
    assert!(sent >= 700, "guest a sent only {sent} pings: {out}");
    (new, sent - got, sent)
}

/// The RX queues of interface `name` and the worker polling each
/// (`dvr-ctl interface show`).
fn polled_by(ctl_sock: &Path, name: &str) -> Vec<(u64, u64)> {
    let v: Value =
        serde_json::from_str(&ctl(ctl_sock, &["--json", "interface", "show", name])).unwrap();
    v["polled_by"]
        .as_array()
        .unwrap_or_else(|| panic!("no polled_by in {v}"))
        .iter()
        .map(|p| (p["queue"].as_u64().unwrap(), p["worker"].as_u64().unwrap()))
        .collect()
}

#[test]
fn multiqueue_guests_spread_over_workers() {
    let started = Instant::now();
    let Some(qemu) = qemu_or_skip("multiqueue_guests_spread_over_workers") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    initramfs(&qemu, &d.join("initramfs.cpio"));
    // Two vCPUs and two queue pairs a guest; two workers (worker 0 shares
    // the main core), each polling one RX queue of each interface.
    let guests = guest_specs(d, 2, 2);
    let (dvr, _log, _config, ctl_sock) = node(d, &guests, "[0, 1]", 2);
    for g in &guests {
        let name = format!("vm-{}", g.name);
        assert_eq!(
            polled_by(&ctl_sock, &name),
            [(0, 0), (1, 1)],
            "{name}'s queues"
        );
    }
    let w = workers(&ctl_sock);
    assert_eq!(w.len(), 2, "two workers: {w:?}");
    for (i, (_, queues)) in w.iter().enumerate() {
        for g in &guests {
            let q = format!("vm-{}:q{i}", g.name);
            assert!(queues.contains(&q), "worker {i} polls {q}: {w:?}");
        }
    }

    let mut a = Guest::start(&qemu, d, &guests[0]);
    let mut b = Guest::start(&qemu, d, &guests[1]);
    a.ready();
    b.ready();
    wait_link(&ctl_sock, "vm-a", true);
    wait_link(&ctl_sock, "vm-b", true);
    // The guests' drivers use both queue pairs (virtio-net enables as many
    // as there are vCPUs; busybox has no ethtool to ask for them), and
    // send on queue i from vCPU i (XPS).
    for g in [&mut a, &mut b] {
        let q = g.ok("ls /sys/class/net/eth0/queues");
        let q: Vec<&str> = q.split_whitespace().collect();
        assert_eq!(q, ["rx-0", "rx-1", "tx-0", "tx-1"], "guest {}", g.spec.name);
        let xps = g.ok("cat /sys/class/net/eth0/queues/tx-1/xps_cpus");
        assert_eq!(xps.trim(), "2", "guest {}: tx-1 is vCPU 1's", g.spec.name);
    }

    // Pings from one vCPU, then the other: guest a sends them on its queue
    // of that vCPU, which the worker of the same number polls.
    let ib = b.spec.ip().to_owned();
    for cpu in [1, 0] {
        let before = workers(&ctl_sock);
        a.ping_via(&ib, &format!("taskset {}", 1 << cpu));
        let after = workers(&ctl_sock);
        assert!(
            after[cpu].0 >= before[cpu].0 + 3,
            "pings from guest a's vCPU {cpu} through worker {cpu}: {before:?} -> {after:?}"
        );
    }
    let t = Instant::now();
    both_ways(&mut a, &mut b, true);
    eprintln!("multiqueue guests: ping and transfer in {:?}", t.elapsed());
    let w = workers(&ctl_sock);
    eprintln!("multiqueue guests: workers' packets {:?}", w);

    let last = dvr.stop();
    eprintln!(
        "multiqueue guests: done in {:?}; drops: {:?}",
        started.elapsed(),
        drops(&last)
    );
    a.kill();
    b.kill();
}
