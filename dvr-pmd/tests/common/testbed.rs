//! The netns testbed of the end-to-end tests: `scripts/testbed` wrapped in values
//! that clean up after themselves. A [`Testbed`] owns every namespace, veth and
//! bridge made under its id and removes them when dropped, also when the test
//! panics; a [`Vm`] runs real clients in its namespace, each under `timeout`; a
//! [`Capture`] records an interface with `dumpcap` and hands back the fields
//! that Wireshark's dissectors decode; [`tcp_transfer`] moves random bytes with
//! `nc` and compares their SHA-256 on both sides.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use super::{dvr_ctl, Guard, PATIENCE};

/// How long one client command in a VM may run before `timeout` ends it.
pub const CLIENT_SECS: u64 = 20;

/// The testbed script of this checkout.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed")
}

/// Runs the testbed script; panics with its standard error unless it succeeds.
fn testbed(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/testbed");
    assert!(
        out.status.success(),
        "scripts/testbed {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An id unique to this test process and call, short enough to prefix interface
/// names: "t", the pid and a counter in base 36 (at most 8 characters).
fn unique_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    fn b36(mut n: u32, out: &mut String) {
        let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut s = Vec::new();
        loop {
            s.push(digits[(n % 36) as usize]);
            n /= 36;
            if n == 0 {
                break;
            }
        }
        s.reverse();
        out.push_str(std::str::from_utf8(&s).unwrap());
    }
    let mut id = String::from("t");
    b36(std::process::id(), &mut id);
    b36(N.fetch_add(1, Ordering::Relaxed), &mut id);
    assert!(id.len() <= 8, "testbed id {id} too long");
    id
}

/// The objects of one testbed and a directory for its files (configurations,
/// captures, transferred data). Dropping it runs `scripts/testbed down ID`.
pub struct Testbed {
    id: String,
    dir: tempfile::TempDir,
}

impl Testbed {
    /// A new, empty testbed (objects left by an earlier process that had the
    /// same pid are removed first).
    pub fn new() -> Testbed {
        let id = unique_id();
        testbed(&["down", &id]);
        Testbed {
            id,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A directory removed with the testbed.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The name `scripts/testbed` gives to object `name` of this testbed.
    pub fn name(&self, name: &str) -> String {
        format!("{}-{name}", self.id)
    }

    /// A VM: namespace `ID-name` with `eth0` configured from `opts`; its peer
    /// (`vm.iface`) stays in the root namespace for a dvr-pmd port or a bridge.
    pub fn vm(&self, name: &str, opts: VmOpts) -> Vm {
        let mut args: Vec<String> = vec![
            "vm".into(),
            self.id.clone(),
            name.into(),
            "--mac".into(),
            opts.mac.clone(),
        ];
        let mut opt = |k: &str, v: &str| {
            args.push(k.into());
            args.push(v.into());
        };
        opts.ip.iter().for_each(|a| opt("--ip", a));
        opts.ip6.iter().for_each(|a| opt("--ip6", a));
        opts.gw.iter().for_each(|a| opt("--gw", a));
        opts.gw6.iter().for_each(|a| opt("--gw6", a));
        opts.mtu.iter().for_each(|m| opt("--mtu", &m.to_string()));
        opts.bridge.iter().for_each(|b| opt("--bridge", b));
        opts.host.iter().for_each(|h| opt("--host", h));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let iface = testbed(&args);
        let addr = |cidr: &String| cidr.split('/').next().unwrap().to_owned();
        Vm {
            ns: self.name(name),
            iface,
            mac: opts.mac.clone(),
            ip: opts.ip.first().map(addr),
            ip6: opts.ip6.first().map(addr),
        }
    }

    /// A bridge `ID-name`; returns its interface name.
    pub fn bridge(&self, name: &str) -> String {
        testbed(&["bridge", &self.id, name])
    }

    /// A veth into bridge `ID-bridge`; returns the free end `ID-name` (for a
    /// dvr-pmd `af_packet` port).
    pub fn veth(&self, name: &str, bridge: &str) -> String {
        testbed(&["veth", &self.id, name, bridge])
    }

    /// The same with the free end in host `ID-host`'s namespace.
    pub fn veth_on(&self, name: &str, bridge: &str, host: &str) -> String {
        testbed(&["veth", &self.id, name, bridge, "--host", host])
    }

    /// A host for a node: namespace `ID-name`, with no IPv6 and no ARP
    /// answers from its kernel; returns the namespace's name. Run a dvr-pmd in
    /// it with `Daemon::start_in` and give it interfaces with
    /// [`VmOpts::host`] and [`Testbed::veth_on`]. Each dvr-pmd with
    /// `af_packet` ports needs its own: see `scripts/testbed host`.
    pub fn host(&self, name: &str) -> String {
        testbed(&["host", &self.id, name])
    }

    /// Puts an existing interface (a dvr-pmd `tap`, say) on bridge `ID-bridge`.
    pub fn attach(&self, bridge: &str, iface: &str) {
        testbed(&["attach", &self.id, bridge, iface]);
    }

    /// `scripts/testbed list ID`: one "ID KIND NAME ..." line per object.
    pub fn list(&self) -> String {
        testbed(&["list", &self.id])
    }

    /// Starts recording `iface` of the root namespace (a bridge, say; BPF
    /// `filter`, "" for everything) into a file of this testbed; returns once
    /// the capture is running.
    ///
    /// On the root-side end of a VM's veth this sees only what the VM sent:
    /// DPDK's AF_PACKET driver transmits with `PACKET_QDISC_BYPASS`, which skips
    /// the kernel's taps. Record what a VM receives with [`Testbed::capture_vm`].
    pub fn capture(&self, iface: &str, filter: &str) -> Capture {
        self.start_capture(None, iface, filter)
    }

    /// Starts recording `eth0` inside `vm`: every frame the VM sends or gets.
    pub fn capture_vm(&self, vm: &Vm, filter: &str) -> Capture {
        self.start_capture(Some(&vm.ns), "eth0", filter)
    }

    fn start_capture(&self, ns: Option<&str>, iface: &str, filter: &str) -> Capture {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let file = self.dir().join(format!(
            "{}{iface}-{}.pcap",
            ns.map(|n| format!("{n}-")).unwrap_or_default(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        // `ip netns exec` execs dumpcap: the child is dumpcap itself.
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "dumpcap"]);
                c
            }
            None => Command::new("dumpcap"),
        };
        cmd.args(["-q", "-P", "-i", iface, "-w"]).arg(&file);
        if !filter.is_empty() {
            cmd.args(["-f", filter]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dumpcap");
        let err = child.stderr.take().unwrap();
        let proc = Guard(Some(child));
        // dumpcap says "File: ..." once the socket is bound and the file open.
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let mut said = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.starts_with("File:") => break,
                Ok(l) => said.push_str(&(l + "\n")),
                Err(_) => panic!("dumpcap on {iface} did not start: {said}"),
            }
        }
        Capture {
            proc,
            file,
            iface: iface.into(),
        }
    }

    /// Removes the testbed now, failing the test if something is left.
    pub fn down(self) {
        testbed(&["down", &self.id]);
    }
}

impl Default for Testbed {
    fn default() -> Testbed {
        Testbed::new()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Never a second panic while unwinding: report and go on.
        match Command::new(script())
            .args(["down", &self.id])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "scripts/testbed down {}: {}",
                self.id,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("scripts/testbed down {}: {e}", self.id),
        }
    }
}

/// How a VM's `eth0` is set up (`scripts/testbed vm` options).
#[derive(Clone, Debug, Default)]
pub struct VmOpts {
    pub mac: String,
    /// IPv4 addresses with their prefix length ("10.0.1.5/24").
    pub ip: Vec<String>,
    /// IPv6 addresses with their prefix length, usable at once (no DAD).
    pub ip6: Vec<String>,
    pub gw: Option<String>,
    pub gw6: Option<String>,
    pub mtu: Option<u32>,
    /// A bridge of the testbed (its short name) for the root-side end.
    pub bridge: Option<String>,
    /// A host of the testbed (its short name) whose namespace gets the
    /// root-side end.
    pub host: Option<String>,
}

impl VmOpts {
    pub fn new(mac: &str, ip: &str) -> VmOpts {
        VmOpts {
            mac: mac.into(),
            ip: vec![ip.into()],
            ..VmOpts::default()
        }
    }

    pub fn ip6(mut self, cidr: &str) -> VmOpts {
        self.ip6.push(cidr.into());
        self
    }

    pub fn gw(mut self, ip: &str) -> VmOpts {
        self.gw = Some(ip.into());
        self
    }

    pub fn gw6(mut self, ip: &str) -> VmOpts {
        self.gw6 = Some(ip.into());
        self
    }

    pub fn mtu(mut self, mtu: u32) -> VmOpts {
        self.mtu = Some(mtu);
        self
    }

    pub fn bridge(mut self, bridge: &str) -> VmOpts {
        self.bridge = Some(bridge.into());
        self
    }

    pub fn host(mut self, host: &str) -> VmOpts {
        self.host = Some(host.into());
        self
    }
}

/// A VM of a testbed: its namespace, the root-side end of its veth (in its
/// host's namespace with [`VmOpts::host`]), its first addresses (without
/// prefix length).
#[derive(Clone, Debug)]
pub struct Vm {
    pub ns: String,
    pub iface: String,
    pub mac: String,
    pub ip: Option<String>,
    pub ip6: Option<String>,
}

impl Vm {
    /// `ip netns exec NS timeout -k 5 SECS ARGS...`: the command is ended after
    /// `secs` (and killed 5 s later), so a test never hangs on a client.
    pub fn cmd(&self, secs: u64, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "timeout", "-k", "5"])
            .arg(secs.to_string())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs `args` to its end (at most `secs`).
    pub fn run(&self, secs: u64, args: &[&str]) -> Output {
        self.cmd(secs, args)
            .output()
            .unwrap_or_else(|e| panic!("{}: {args:?}: {e}", self.ns))
    }

    /// Runs `args`, asserts that it succeeded, returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(CLIENT_SECS, args);
        assert!(
            o.status.success(),
            "in {}: {args:?}: {}\n{}{}",
            self.ns,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Starts `args` in the background (ended after `secs`, killed if the test
    /// fails first).
    pub fn spawn(&self, secs: u64, args: &[&str]) -> Guard {
        Guard(Some(self.cmd(secs, args).spawn().expect("spawn")))
    }

    /// A permanent neighbour entry for `ip` (IPv4 or IPv6) on `eth0`.
    pub fn neigh(&self, ip: &str, mac: &str) {
        self.ok(&[
            "ip",
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "nud",
            "permanent",
            "dev",
            "eth0",
        ]);
    }

    fn ping_cmd(dst: &str, count: u32) -> Vec<String> {
        let family = if dst.contains(':') { "-6" } else { "-4" };
        [
            family,
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            dst,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// `ping` (`-6` for an IPv6 address): asserts that all `count` replies came.
    pub fn ping(&self, dst: &str, count: u32) -> String {
        let mut args = vec!["ping".to_owned()];
        args.extend(Self::ping_cmd(dst, count));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.ok(&args);
        assert!(
            out.contains(&format!("{count} packets transmitted, {count} received")),
            "ping {dst} from {}: {out}",
            self.ns
        );
        out
    }

    /// `ping` that must get no reply at all.
    pub fn ping_fails(&self, dst: &str, count: u32) -> String {
        let mut args = vec!["ping".to_owned()];
        args.extend(Self::ping_cmd(dst, count));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = self.run(CLIENT_SECS, &args);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            out.contains(&format!("{count} packets transmitted, 0 received")),
            "ping {dst} from {} should get no reply: {out}",
            self.ns
        );
        out
    }

    /// Waits until a TCP socket listens on `port` in this VM.
    pub fn wait_listening(&self, port: u16) {
        let deadline = Instant::now() + PATIENCE;
        let filter = format!("sport = :{port}");
        while self.ok(&["ss", "-Hltn", &filter]).trim().is_empty() {
            assert!(
                Instant::now() < deadline,
                "nothing listens on {port} in {}",
                self.ns
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running capture; [`Capture::stop`] ends it and gives the file.
pub struct Capture {
    proc: Guard,
    file: PathBuf,
    iface: String,
}

impl Capture {
    /// Stops the capture and returns the recording. It first waits half a
    /// second: dumpcap gets frames from the kernel in blocks handed over every
    /// 250 ms, and the last block is lost if it is stopped before.
    pub fn stop(mut self) -> Recording {
        std::thread::sleep(Duration::from_millis(500));
        let pid = self.proc.child().id();
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let st = self.proc.wait();
        assert!(st.success(), "dumpcap on {}: {st}", self.iface);
        Recording {
            file: self.file.clone(),
        }
    }
}

/// A finished capture file.
pub struct Recording {
    pub file: PathBuf,
}

impl Recording {
    /// The frames matching the display filter `filter` ("" for all), each as the
    /// values of `fields` (`eth.src`, `vxlan.vni`, ...; "" where a frame has no
    /// such field; several occurrences joined by ",").
    pub fn fields(&self, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
        self.fields_with(&[], filter, fields)
    }

    /// [`Recording::fields`] with further tshark options `opts` (`-o
    /// tcp.check_checksum:TRUE`, say, for `tcp.checksum.status`: 1 good, 0 bad).
    pub fn fields_with(&self, opts: &[&str], filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
        let mut cmd = Command::new("tshark");
        cmd.arg("-r")
            .arg(&self.file)
            .args(["-n", "-T", "fields"])
            .args(opts);
        if !filter.is_empty() {
            cmd.args(["-Y", filter]);
        }
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd
            .args([
                "-E",
                "separator=/t",
                "-E",
                "occurrence=a",
                "-E",
                "aggregator=,",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run tshark");
        assert!(
            out.status.success(),
            "tshark -r {}: {}",
            self.file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }
}

/// The outcome of a TCP transfer: SHA-256 and length of what was sent and of
/// what arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub sent_sha256: String,
    pub sent_len: u64,
    pub received_sha256: String,
    pub received_len: u64,
}

impl Transfer {
    /// Every byte arrived, unchanged.
    pub fn assert_intact(&self) {
        assert_eq!(self.received_len, self.sent_len, "{self:?}");
        assert_eq!(self.received_sha256, self.sent_sha256, "{self:?}");
    }
}

fn sha256(file: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// Sends `len` random bytes over TCP from `from` to `addr:port` in `to` with
/// `nc` (a listener in `to` writes them to a file); returns what was sent and
/// what arrived. `dir` holds the two files.
pub fn tcp_transfer(dir: &Path, from: &Vm, to: &Vm, addr: &str, port: u16, len: usize) -> Transfer {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let (sent, received) = (
        dir.join(format!("sent-{n}")),
        dir.join(format!("received-{n}")),
    );
    // xorshift64*, seeded per call: different data every time, no dependency.
    let mut x = (std::process::id() as u64) << 32 ^ n as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        data.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    data.truncate(len);
    File::create(&sent).unwrap().write_all(&data).unwrap();

    let secs = CLIENT_SECS * 3;
    // nc listens on one family only: the one of `addr`.
    let family = if addr.contains(':') { "-6" } else { "-4" };
    let mut listener = Guard(Some(
        to.cmd(secs, &["nc", family, "-l", &port.to_string()])
            .stdout(File::create(&received).unwrap())
            .spawn()
            .expect("spawn nc -l"),
    ));
    to.wait_listening(port);
    let o = from
        .cmd(
            secs,
            &["nc", family, "-N", "-w", "10", addr, &port.to_string()],
        )
        .stdin(File::open(&sent).unwrap())
        .output()
        .expect("spawn nc");
    assert!(
        o.status.success(),
        "nc to {addr}:{port} from {}: {} {}",
        from.ns,
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let st = listener.wait();
    assert!(st.success(), "nc -l {port} in {}: {st}", to.ns);
    Transfer {
        sent_sha256: sha256(&sent),
        sent_len: len as u64,
        received_sha256: sha256(&received),
        received_len: std::fs::metadata(&received).unwrap().len(),
    }
}

/// `dvr-ctl --socket SOCKET ARGS...`: asserts exit 0 and returns standard output.
pub fn ctl(socket: &Path, args: &[&str]) -> String {
    let out = Command::new(dvr_ctl())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dvr-ctl");
    assert!(
        out.status.success(),
        "dvr-ctl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
