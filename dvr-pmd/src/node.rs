//! A running node: EAL, the mbuf pool, the ports, the pinned workers.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use dvr::config::{Config, PcapRx, PortKind, MAX_PORTS};
use dvr::mac::MacAddr;
use dvr::punt::Exchange;
use dvr::stats::WorkerCounters;
use dvr::sys::{self, Eal, Mempool, Port, PortSetup};
use dvr::tables::{DpPort, NodePorts, Snapshot, Tables};
use dvr::worker::desk::Desk;
use dvr::worker::Worker;

use crate::ifaces::{self, Interfaces};

/// Why the node could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(msg: impl Into<String>) -> StartError {
    StartError(msg.into())
}

impl From<sys::Error> for StartError {
    fn from(e: sys::Error) -> Self {
        StartError(e.to_string())
    }
}

pub struct Node {
    pub cfg: Config,
    eal: Option<Eal>,
    pool: Option<Arc<Mempool>>,
    /// The interfaces, of the configuration and added at run time.
    pub ifaces: Option<Arc<Interfaces>>,
    pub counters: Vec<Arc<WorkerCounters>>,
    /// The published dataplane tables.
    pub tables: Arc<Tables>,
    /// Each worker's desk, where it takes its ports.
    desks: Vec<Arc<Desk>>,
    /// Between the workers and the control thread (learned, injected).
    pub exchange: Arc<Exchange>,
    workers: Vec<JoinHandle<()>>,
    /// Workers built by `start`, launched by `run_workers`.
    pending: Vec<Worker>,
    stop: Arc<AtomicBool>,
    /// Files the node made and removes on shutdown (sockets, generated captures).
    owned_files: Vec<PathBuf>,
    pub tsc_hz: u64,
}

/// Checks that every configured core exists on this machine.
fn check_cores(cfg: &Config) -> Result<(), StartError> {
    let ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    for (key, c) in std::iter::once(("cores.main", cfg.cores.main))
        .chain(cfg.cores.workers.iter().map(|&c| ("cores.workers", c)))
    {
        if !ids.contains(&c) {
            return Err(err(format!(
                "`{key}`: core {c} is not available to this process (available: {ids:?})"
            )));
        }
    }
    Ok(())
}

impl Node {
    /// Starts EAL, creates and starts the ports, and launches the workers.
    pub fn start(cfg: Config) -> Result<Node, StartError> {
        check_cores(&cfg)?;
        std::fs::create_dir_all(&cfg.run_dir).map_err(|e| {
            err(format!(
                "cannot create run_dir {}: {e}",
                cfg.run_dir.display()
            ))
        })?;
        let _ = std::fs::set_permissions(&cfg.run_dir, std::fs::Permissions::from_mode(0o700));

        let node_ports = NodePorts {
            node: cfg.node.clone(),
            ports: cfg
                .ports
                .iter()
                .map(|p| DpPort {
                    name: p.name.clone(),
                    role: p.role,
                    mac: MacAddr::default(),
                })
                .collect(),
            vtep: cfg.vtep,
            dvr_mac: cfg.dvr_mac,
            vtep_macs: cfg
                .underlay
                .neighbors
                .iter()
                .map(|n| (n.ip, n.mac))
                .collect(),
            static_fdb: cfg
                .l2
                .fdb
                .iter()
                .map(|e| {
                    let idx = cfg
                        .ports
                        .iter()
                        .position(|p| p.name == e.port)
                        .expect("checked by config");
                    (e.mac, idx as u16)
                })
                .collect(),
        };
        let mut node = Node {
            eal: None,
            pool: None,
            ifaces: None,
            desks: Vec::new(),
            counters: Vec::new(),
            tables: Arc::new(Tables::from_pointee(Snapshot::from_config(&node_ports))),
            exchange: Arc::new(if cfg.metadata.is_some() {
                Exchange::with_metadata()
            } else {
                Exchange::default()
            }),
            workers: Vec::new(),
            pending: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            owned_files: Vec::new(),
            tsc_hz: 0,
            cfg,
        };
        // On any error below, `node` is dropped, which closes what was opened.
        node.prepare_files()?;
        let args = node.cfg.eal_args();
        tracing::info!(args = %args.join(" "), "starting EAL");
        node.eal = Some(Eal::init("dvr-pmd", &args)?);
        node.tsc_hz = sys::tsc_hz();
        let dp = node.cfg.dataplane.clone();
        let pool = packet_pool(&node.cfg, dp.mbufs, dp.mbuf_cache)?;
        node.pool = Some(pool.clone());
        let nworkers = node.cfg.cores.workers.len() as u16;
        let main = node.cfg.cores.main;
        if let Some(w) = node.cfg.cores.workers.iter().position(|&c| c == main) {
            tracing::warn!(
                worker = w, core = main,
                "a worker shares its core with the control thread: the control thread's \
                 answers wait for the worker's polls (use poll_mode = \"adaptive\", or a core of its own)"
            );
        }

        node.desks = (0..nworkers).map(|_| Arc::new(Desk::default())).collect();
        node.counters = (0..nworkers)
            .map(|_| Arc::new(WorkerCounters::new(MAX_PORTS)))
            .collect();
        let ifs = Arc::new(Interfaces::new(ifaces::Params {
            desks: node.desks.clone(),
            counters: node.counters.clone(),
            cores: node.cfg.cores.workers.clone(),
            pool: pool.clone(),
            rx_desc: dp.rx_desc,
            tx_desc: dp.tx_desc,
            saved: ifaces::saved_path(&node.cfg.state_file),
            node_ports,
        }));
        node.ifaces = Some(ifs.clone());

        let ids = node.create_devices(nworkers)?;
        for (i, (pc, id)) in node.cfg.ports.clone().iter().zip(ids).enumerate() {
            let info = sys::dev_info(id)?;
            // An RX queue per worker where the device has them (a SNAT
            // session's frames meet on its owner: `dvr::worker::handoff`).
            let rx = info.max_rx_queues.min(nworkers);
            let tx = info.max_tx_queues.min(nworkers);
            if tx < nworkers {
                tracing::warn!(
                    port = %pc.name, driver = %info.driver, tx_queues = tx,
                    "port has fewer TX queues than workers: workers without one count no_tx_queue drops"
                );
            }
            let setup = PortSetup {
                rx_queues: rx,
                tx_queues: tx,
                rx_desc: dp.rx_desc,
                tx_desc: dp.tx_desc,
                promiscuous: true,
            };
            let port = Port::start(id, &pc.name, &setup, &pool)
                .map_err(|e| err(format!("port {} ({}): {e}", pc.name, info.driver)))?;
            tracing::info!(port = %pc.name, id, driver = %info.driver, rx, tx, "port started");
            ifs.adopt(i as u16, pc, port, info.driver, rx, tx);
        }
        // Interfaces added at run time before the last stop.
        ifs.restore();
        // The ports' MACs are known now (the underlay's is the tunnels' source).
        node.tables
            .store(Arc::new(Snapshot::from_config(&ifs.node_ports())));

        // Several workers: SNAT on each, frames handed to their session's owner.
        let handoff = (nworkers > 1).then(|| {
            Arc::new(dvr::worker::handoff::Handoff::new(
                nworkers as usize,
                node.cfg.nat.ports(),
            ))
        });
        for (w, desk) in node.desks.iter().enumerate() {
            node.pending.push(Worker {
                index: w,
                rx: Vec::new(),
                tx: Vec::new(),
                tables: node.tables.clone(),
                counters: node.counters[w].clone(),
                burst: dp.burst,
                poll_mode: dp.poll_mode,
                stop: node.stop.clone(),
                exchange: node.exchange.clone(),
                pool: pool.clone(),
                nat: node.cfg.nat.table(),
                nat_ports: dvr::worker::port_share(&node.cfg.nat.ports(), w, nworkers as usize),
                desk: desk.clone(),
                handoff: handoff.clone(),
            });
        }
        Ok(node)
    }

    /// Launches the workers, pinned, each with an lcore id. Called once the
    /// tables are published (a restarted node never forwards with empty tables).
    pub fn run_workers(&mut self) -> Result<(), StartError> {
        for worker in std::mem::take(&mut self.pending) {
            let w = worker.index;
            let core = self.cfg.cores.workers[w];
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let h = std::thread::Builder::new()
                .name(format!("dvr-worker-{w}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        let _ =
                            ready_tx.send(Err(format!("worker {w}: cannot pin to core {core}")));
                        return;
                    }
                    match sys::register_thread() {
                        Ok(lcore) => {
                            let _ = ready_tx.send(Ok(lcore));
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("worker {w}: {e}")));
                            return;
                        }
                    }
                    worker.run();
                    sys::unregister_thread();
                })
                .map_err(|e| err(format!("cannot spawn worker {w}: {e}")))?;
            self.workers.push(h);
            match ready_rx.recv() {
                Ok(Ok(lcore)) => tracing::info!(worker = w, core, lcore, "worker running"),
                Ok(Err(e)) => return Err(err(e)),
                Err(_) => return Err(err(format!("worker {w} died while starting"))),
            }
        }
        // Forwarding once every worker has taken its queues.
        for (w, d) in self.desks.iter().enumerate() {
            d.wait(std::time::Duration::from_secs(5))
                .map_err(|_| err(format!("worker {w} did not take its queues")))?;
        }
        Ok(())
    }

    /// Writes the captures of `generate` pcap ports and clears stale vhost sockets.
    fn prepare_files(&mut self) -> Result<(), StartError> {
        for p in &self.cfg.ports {
            match &p.kind {
                PortKind::Pcap {
                    rx: Some(PcapRx::Generate(g)),
                    ..
                } => {
                    let path = self.generated_capture(&p.name);
                    dvr::pcap::write_file(&path, &dvr::gen::generate(g)).map_err(|e| {
                        err(format!(
                            "port {}: cannot write {}: {e}",
                            p.name,
                            path.display()
                        ))
                    })?;
                    self.owned_files.push(path);
                }
                PortKind::VhostUser {
                    socket,
                    client: false,
                } => {
                    crate::ifaces::server_socket(socket)
                        .map_err(|e| err(format!("port {}: {e}", p.name)))?;
                    self.owned_files.push(socket.clone());
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn generated_capture(&self, port: &str) -> PathBuf {
        self.cfg.run_dir.join(format!("{port}-rx.pcap"))
    }

    /// Creates the device of every port; returns their port ids in config order.
    fn create_devices(&self, nworkers: u16) -> Result<Vec<u16>, StartError> {
        let mut ids = Vec::new();
        let mut rings: HashMap<String, u16> = HashMap::new();
        for (i, p) in self.cfg.ports.iter().enumerate() {
            let ctx = |e: sys::Error| err(format!("port {}: {e}", p.name));
            let id = match &p.kind {
                PortKind::VhostUser { socket, client } => sys::vdev_create(
                    &format!("net_vhost{i}"),
                    &format!(
                        "iface={},queues={nworkers},client={}",
                        socket.display(),
                        *client as u8
                    ),
                )
                .map_err(ctx)?,
                PortKind::Pci { address } => sys::port_by_name(address).map_err(|e| {
                    err(format!(
                        "port {}: PCI device {address} not found by DPDK (bound to vfio-pci?): {e}",
                        p.name
                    ))
                })?,
                PortKind::AfPacket { iface } => sys::vdev_create(
                    &format!("net_af_packet{i}"),
                    &format!("iface={iface},qpairs={nworkers}"),
                )
                .map_err(ctx)?,
                PortKind::Tap { iface } => {
                    sys::vdev_create(&format!("net_tap{i}"), &format!("iface={iface}"))
                        .map_err(ctx)?
                }
                PortKind::Pcap {
                    rx,
                    tx,
                    infinite_rx,
                } => {
                    let mut args = Vec::new();
                    let file = match rx {
                        Some(PcapRx::File(f)) => Some(f.clone()),
                        Some(PcapRx::Generate(_)) => Some(self.generated_capture(&p.name)),
                        None => None,
                    };
                    // A capture replayed forever (a generator) without a
                    // capture written: one RX queue (and one dropping TX
                    // queue) per worker, each replaying it, so that every
                    // worker polls the port (benchmarks with several
                    // workers). Otherwise one queue: each frame once.
                    let queues = if *infinite_rx && tx.is_none() {
                        nworkers.max(1)
                    } else {
                        1
                    };
                    if let Some(f) = file {
                        for _ in 0..queues {
                            args.push(format!("rx_pcap={}", f.display()));
                        }
                    }
                    if let Some(t) = tx {
                        args.push(format!("tx_pcap={}", t.display()));
                    }
                    if *infinite_rx {
                        args.push("infinite_rx=1".into());
                    }
                    sys::vdev_create(&format!("net_pcap{i}"), &args.join(",")).map_err(ctx)?
                }
                PortKind::Ring { peer } => match rings.get(&p.name) {
                    Some(&id) => id,
                    None => {
                        let (a, b) = sys::ring_pair(&p.name, peer, 1024).map_err(ctx)?;
                        rings.insert(peer.clone(), b);
                        a
                    }
                },
                // Without no-rx, net_null would hand out empty packets forever.
                PortKind::Null => {
                    sys::vdev_create(&format!("net_null{i}"), "no-rx=1").map_err(ctx)?
                }
            };
            ids.push(id);
        }
        Ok(ids)
    }

    /// Stops the workers (they drain their queues) and waits for them.
    pub fn stop_workers(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.workers.drain(..) {
            if h.join().is_err() {
                tracing::error!("a worker panicked");
            }
        }
    }

    /// Stops workers, closes ports, frees the pool, removes the node's files and
    /// ends EAL.
    pub fn shutdown(mut self) {
        self.close_all();
    }

    fn close_all(&mut self) {
        self.stop_workers();
        // Workers never launched hold queues and the pool: gone before EAL ends.
        self.pending.clear();
        // Queue handles still waiting on a desk (workers never launched).
        for d in &self.desks {
            d.clear();
        }
        if let Some(i) = self.ifaces.take() {
            i.close_all();
        }
        self.pool = None;
        for f in self.owned_files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
        if let Some(eal) = self.eal.take() {
            eal.cleanup();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// The packet buffers. Without hugepages and without a NIC, in memory of
/// their own on transparent huge pages (`Mempool::new_thp`: a few TLB
/// entries instead of one per buffer; `[dataplane] thp_mbufs`); otherwise,
/// or when that fails, in EAL's memory.
fn packet_pool(cfg: &Config, n: u32, cache: u32) -> Result<Arc<Mempool>, StartError> {
    let nic = cfg
        .ports
        .iter()
        .any(|p| matches!(p.kind, PortKind::Pci { .. }));
    if cfg.dataplane.thp_mbufs && !cfg.eal.hugepages && !nic {
        match Mempool::new_thp("dvr_mbufs", n, cache) {
            Ok(p) => {
                tracing::info!(mbufs = n, "packet buffers on transparent huge pages");
                return Ok(p);
            }
            Err(e) => tracing::warn!(
                error = %e,
                "packet buffers on transparent huge pages failed: in EAL's memory instead"
            ),
        }
    }
    Ok(Mempool::new("dvr_mbufs", n, cache)?)
}
