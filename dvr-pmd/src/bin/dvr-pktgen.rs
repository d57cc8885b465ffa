//! `dvr-pktgen`: a small DPDK packet generator and checker, the peer of dvr-pmd in
//! tests and benchmarks (a "VM" on a vhost-user socket through virtio_user, or any
//! other virtual device).
//!
//! Each `--port` is a device; `--send P:SRC:DST:N` sends N UDP frames from port P
//! with those MACs (sequence numbers in the payload, correct checksums); every port
//! counts what it receives and checks each frame (addresses, checksums, payload
//! pattern). At most `--window` frames are in flight (sent and not yet received
//! anywhere), so a lossless path loses nothing. Ends when everything was sent and
//! `--expect` is met, or when nothing moved for `--idle-exit-ms`; prints one JSON
//! line with the counts and exits 0 (the caller judges the counts).
//!
//! `--probe P:SRC:DST` (before any counted frame): a probe frame of that flow
//! (UDP port 7, not 9) is sent from port P, again every 50 ms, until one is
//! received back. A vhost-user peer's queues are set up by the backend's own
//! thread after our link is up; frames it forwards to a queue not yet enabled
//! are dropped there. The probes are counted apart (`probes_sent`,
//! `probes_received`), so the caller can account for each one.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dvr::gen::{udp4_frame, Udp4};
use dvr::mac::MacAddr;
use dvr::sys::{self, Burst, Eal, Mempool, Port, PortSetup};

#[derive(Parser, Debug)]
#[command(
    name = "dvr-pktgen",
    about = "DPDK packet generator and checker for dvr tests"
)]
struct Args {
    /// A device per port: DPDK vdev `NAME,ARGS` (e.g. `virtio_user0,path=/run/vm.sock`).
    #[arg(long = "port", required = true)]
    ports: Vec<String>,
    /// `PORT:SRC_MAC:DST_MAC:COUNT`: frames to send from port index PORT.
    #[arg(long = "send")]
    sends: Vec<String>,
    /// `PORT:SRC_MAC:DST_MAC`: a path to probe until it forwards, before the
    /// counted frames.
    #[arg(long = "probe")]
    probes: Vec<String>,
    /// Total frames to receive (all ports) before exiting; default: all sent.
    #[arg(long)]
    expect: Option<u64>,
    /// Frames in flight at most.
    #[arg(long, default_value_t = 256)]
    window: u64,
    /// Frame length without FCS.
    #[arg(long, default_value_t = 128)]
    frame_len: usize,
    /// Exit when nothing was sent or received for this long.
    #[arg(long, default_value_t = 3000)]
    idle_exit_ms: u64,
    /// EAL file prefix (unique per process).
    #[arg(long)]
    file_prefix: String,
    /// Core to run on.
    #[arg(long, default_value_t = 0)]
    core: usize,
    /// Queue pairs per port (a multi-queue VM: give virtio_user `queues=N`
    /// too): bursts are sent on each TX queue in turn, every RX queue is
    /// polled, and probes go out of each TX queue.
    #[arg(long, default_value_t = 1)]
    queues: u16,
}

struct Send {
    port: usize,
    flow: Udp4,
    count: u64,
    sent: u64,
}

/// The UDP destination port of counted frames, and of probes.
const COUNTED_PORT: u16 = 9;
const PROBE_PORT: u16 = 7;

fn parse_send(s: &str, nports: usize) -> Result<Send, String> {
    let parts: Vec<&str> = s.split(':').collect();
    // PORT : six MAC octets : six MAC octets : COUNT
    if parts.len() != 14 {
        return Err(format!("--send {s}: expected PORT:SRC_MAC:DST_MAC:COUNT"));
    }
    parse_flow("--send", s, &parts[..13], nports, COUNTED_PORT).and_then(|(port, flow)| {
        let count: u64 = parts[13]
            .parse()
            .map_err(|_| format!("--send {s}: bad count"))?;
        Ok(Send {
            port,
            flow,
            count,
            sent: 0,
        })
    })
}

fn parse_probe(s: &str, nports: usize) -> Result<(usize, Udp4), String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 13 {
        return Err(format!("--probe {s}: expected PORT:SRC_MAC:DST_MAC"));
    }
    parse_flow("--probe", s, &parts, nports, PROBE_PORT)
}

/// PORT and two MACs (`parts`, split at ':') of `s`, the value of option
/// `opt`: the port index and the flow sent from it to UDP port `dst_port`.
fn parse_flow(
    opt: &str,
    s: &str,
    parts: &[&str],
    nports: usize,
    dst_port: u16,
) -> Result<(usize, Udp4), String> {
    let port: usize = parts[0]
        .parse()
        .map_err(|_| format!("{opt} {s}: bad port"))?;
    if port >= nports {
        return Err(format!("{opt} {s}: port {port} does not exist"));
    }
    let src: MacAddr = parts[1..7]
        .join(":")
        .parse()
        .map_err(|e| format!("{opt} {s}: {e}"))?;
    let dst: MacAddr = parts[7..13]
        .join(":")
        .parse()
        .map_err(|e| format!("{opt} {s}: {e}"))?;
    Ok((
        port,
        Udp4 {
            src_mac: src,
            dst_mac: dst,
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 5000 + port as u16,
            dst_port,
        },
    ))
}

/// What a received frame is.
enum Got {
    Counted,
    Probe,
    Bad,
}

/// A counted frame or a probe this generator could have built (any flow, any
/// seq), or anything else.
fn classify(f: &[u8], frame_len: usize) -> Got {
    if f.len() != frame_len || f.len() < 46 {
        return Got::Bad;
    }
    let dst_port = u16::from_be_bytes([f[36], f[37]]);
    let seq = u32::from_be_bytes([f[42], f[43], f[44], f[45]]);
    let flow = Udp4 {
        src_mac: MacAddr(f[6..12].try_into().unwrap()),
        dst_mac: MacAddr(f[0..6].try_into().unwrap()),
        src_ip: Ipv4Addr::new(10, 0, 0, 1),
        dst_ip: Ipv4Addr::new(10, 0, 0, 2),
        src_port: u16::from_be_bytes([f[34], f[35]]),
        dst_port,
    };
    match dst_port {
        _ if udp4_frame(&flow, frame_len, seq) != f => Got::Bad,
        COUNTED_PORT => Got::Counted,
        PROBE_PORT => Got::Probe,
        _ => Got::Bad,
    }
}

#[derive(Default, serde::Serialize)]
struct PortCount {
    sent: u64,
    received: u64,
    received_bad: u64,
    tx_refused: u64,
    probes_sent: u64,
    probes_received: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dvr-pktgen: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let mut sends = args
        .sends
        .iter()
        .map(|s| parse_send(s, args.ports.len()))
        .collect::<Result<Vec<_>, _>>()?;
    let probes = args
        .probes
        .iter()
        .map(|s| parse_probe(s, args.ports.len()))
        .collect::<Result<Vec<_>, _>>()?;
    let eal_args: Vec<String> = [
        "-l",
        &args.core.to_string(),
        "--no-huge",
        "-m",
        "512",
        "--no-pci",
        "--single-file-segments",
        "--no-shconf",
        "--file-prefix",
        &args.file_prefix,
        "--log-level",
        "lib.eal:error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init("dvr-pktgen", &eal_args).map_err(|e| e.to_string())?;
    let pool = Mempool::new("pktgen", 8191, 256).map_err(|e| e.to_string())?;
    if args.queues == 0 {
        return Err("--queues must be at least 1".into());
    }
    let (ports, queues) = start_ports(&args.ports, &pool, args.queues)?;
    let mut g = Gen {
        counts: ports.iter().map(|_| PortCount::default()).collect(),
        queues,
        rx: Burst::new(),
        tx: Burst::new(),
        frame_len: args.frame_len,
        turn: 0,
    };
    for &(port, flow) in &probes {
        for q in 0..g.queues[port].1.len() {
            g.probe(&pool, port, q, &flow)?;
        }
    }
    let (sent, received) = g.stream(args, &pool, &mut sends)?;
    let out = serde_json::json!({ "ports": g.counts, "sent": sent, "received": received });
    drop(g.queues);
    for p in ports {
        p.close();
    }
    drop(pool);
    eal.cleanup();
    // After the cleanup: a closed standard output ends dvr-pktgen as it ends
    // `cat`, killed by SIGPIPE without a word (`dvr::cli`).
    dvr::outln!("{out}");
    Ok(())
}

/// A port's receive queues and transmit queues.
type Queues = (Vec<sys::RxQueue>, Vec<sys::TxQueue>);

/// Creates and starts the ports (`NAME[,DEVARGS]` each), `n` queues each
/// way (as many as the device has, at most), and waits (bounded) for their
/// links: a vhost-user peer must have accepted us.
fn start_ports(
    specs: &[String],
    pool: &Arc<Mempool>,
    n: u16,
) -> Result<(Vec<Arc<Port>>, Vec<Queues>), String> {
    let mut ports = Vec::new();
    let mut queues = Vec::new();
    for spec in specs {
        let (name, devargs) = spec.split_once(',').unwrap_or((spec.as_str(), ""));
        let id = sys::vdev_create(name, devargs).map_err(|e| e.to_string())?;
        let info = sys::dev_info(id).map_err(|e| e.to_string())?;
        let (rx, tx) = (n.min(info.max_rx_queues), n.min(info.max_tx_queues));
        let setup = PortSetup {
            rx_queues: rx,
            tx_queues: tx,
            rx_desc: 1024,
            tx_desc: 1024,
            promiscuous: true,
        };
        let p = Port::start(id, name, &setup, pool).map_err(|e| e.to_string())?;
        queues.push(p.queues(rx, tx));
        ports.push(p);
    }
    let t0 = Instant::now();
    while !ports.iter().all(|p| p.link_up()) {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("links did not come up within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((ports, queues))
}

/// The generator's ports and what it counted on each.
struct Gen {
    queues: Vec<Queues>,
    counts: Vec<PortCount>,
    rx: Burst,
    tx: Burst,
    frame_len: usize,
    /// The TX queue the next burst of a stream goes out of.
    turn: usize,
}

impl Gen {
    /// Receives a burst on each port into the counts; returns how many
    /// frames other than probes, and how many probes.
    fn receive(&mut self) -> (u64, u64) {
        let (mut others, mut probes) = (0u64, 0u64);
        for (p, (qs, _)) in self.queues.iter_mut().enumerate() {
            for q in qs.iter_mut() {
                for i in 0..q.rx(&mut self.rx, 32) {
                    match classify(self.rx.data(i), self.frame_len) {
                        Got::Counted => self.counts[p].received += 1,
                        Got::Probe => {
                            self.counts[p].probes_received += 1;
                            probes += 1;
                            continue;
                        }
                        Got::Bad => self.counts[p].received_bad += 1,
                    }
                    others += 1;
                }
                self.rx.clear();
            }
        }
        (others, probes)
    }

    /// Sends `flow`'s probe out of `port`'s TX queue `q` every 50 ms until a
    /// probe comes back on any port (10 s at most).
    fn probe(&mut self, pool: &Mempool, port: usize, q: usize, flow: &Udp4) -> Result<(), String> {
        let start = Instant::now();
        let mut last_sent: Option<Instant> = None;
        loop {
            if last_sent.is_none_or(|t| t.elapsed() >= Duration::from_millis(50)) {
                if start.elapsed() > Duration::from_secs(10) {
                    return Err(format!("probe from port {port} not forwarded within 10 s"));
                }
                pool.alloc_into(&mut self.tx, 1)
                    .map_err(|e| e.to_string())?;
                self.tx
                    .set_frame(0, &udp4_frame(flow, self.frame_len, 0))
                    .map_err(|e| e.to_string())?;
                let r = self.queues[port].1[q].tx(&mut self.tx);
                self.counts[port].probes_sent += r.sent;
                last_sent = Some(Instant::now());
            }
            match self.receive() {
                (_, 1..) => return Ok(()),
                (0, 0) => std::thread::sleep(Duration::from_micros(50)),
                _ => {}
            }
        }
    }

    /// Sends every `--send` stream within the window of frames in flight and
    /// counts what comes back, until all were sent and the expected number
    /// received, or nothing moved for `--idle-exit-ms`. Returns (sent,
    /// received).
    fn stream(
        &mut self,
        args: &Args,
        pool: &Mempool,
        sends: &mut [Send],
    ) -> Result<(u64, u64), String> {
        let total: u64 = sends.iter().map(|s| s.count).sum();
        let expect = args.expect.unwrap_or(total);
        let (mut sent, mut received) = (0u64, 0u64);
        let mut last_progress = Instant::now();
        let mut seq: u32 = 0;
        loop {
            let mut progress = false;
            for s in sends.iter_mut() {
                let in_flight = sent - received.min(sent);
                let room = args
                    .window
                    .saturating_sub(in_flight)
                    .min(s.count - s.sent)
                    .min(32);
                if room == 0 {
                    continue;
                }
                if pool.alloc_into(&mut self.tx, room as usize).is_err() {
                    continue;
                }
                for i in 0..self.tx.len() {
                    let f = udp4_frame(&s.flow, self.frame_len, seq.wrapping_add(i as u32));
                    self.tx.set_frame(i, &f).map_err(|e| e.to_string())?;
                }
                let txqs = &mut self.queues[s.port].1;
                self.turn = self.turn.wrapping_add(1);
                let q = self.turn % txqs.len();
                let r = txqs[q].tx(&mut self.tx);
                seq = seq.wrapping_add(r.sent as u32);
                s.sent += r.sent;
                sent += r.sent;
                self.counts[s.port].sent += r.sent;
                self.counts[s.port].tx_refused += r.dropped;
                progress |= r.sent > 0;
            }
            // Late probes are not counted frames: they were never in the window.
            let (others, probes) = self.receive();
            received += others;
            progress |= others + probes > 0;
            if progress {
                last_progress = Instant::now();
            }
            let all_sent = sends.iter().all(|s| s.sent == s.count);
            if all_sent && received >= expect {
                return Ok((sent, received));
            }
            if last_progress.elapsed() > Duration::from_millis(args.idle_exit_ms) {
                return Ok((sent, received));
            }
            if !progress {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}
