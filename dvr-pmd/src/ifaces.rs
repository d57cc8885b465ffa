//! The node's interfaces: those of the configuration, and those added and
//! deleted while it forwards (`dvr-ctl interface add|delete`, as `ovs-vsctl
//! add-port` does for OVS-DPDK).
//!
//! Each interface has a slot: its index in the tables (model ports bind to it
//! by name; the compiler turns the name into that index). Adding one: the
//! device is created and started, each worker is handed its queues through
//! its desk (`dvr::worker::desk`) and takes them between two polls; once
//! every worker has them, the tables naming the new slot are published (RCU:
//! workers pick them up at their next burst). Deleting one goes the other
//! way: the tables without it are published first, then the workers give its
//! queues back; only when every worker has, is the device stopped, closed and
//! removed (its mbufs freed by the driver). The other interfaces are never
//! touched: their workers keep forwarding throughout.
//!
//! Interfaces added at run time are saved (a JSON file beside the model) and
//! added again when the daemon starts.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use dvr::config::{PortConfig, PortKind, PortRole, MAX_PORTS};
use dvr::mac::MacAddr;
use dvr::model::Model;
use dvr::proto::iface::{IfaceInfo, IfaceSpec, IfaceType, QueuePoll};
use dvr::stats::{PortSnapshot, WorkerCounters};
use dvr::sys::{self, Mempool, Port, PortSetup};
use dvr::tables::{DpPort, NodePorts};
use dvr::worker::desk::{Desk, PortChange};

/// How long a worker may take to pick up a change (a sleeping adaptive
/// worker wakes every 500 µs at the latest).
const TAKE_LIMIT: Duration = Duration::from_secs(2);

/// Where an interface comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// The configuration file: stays until the configuration changes.
    Config,
    /// `interface add`: saved, deleted by `interface delete`.
    Runtime(IfaceSpec),
}

/// One interface of the node.
pub struct Iface {
    pub name: String,
    pub role: PortRole,
    pub origin: Origin,
    pub kind: &'static str,
    pub socket: Option<PathBuf>,
    pub client: bool,
    pub iface: Option<String>,
    pub port: Arc<Port>,
    pub driver: String,
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// (RX queue, worker polling it).
    pub polls: Vec<(u16, usize)>,
    /// The workers' counters of its slot when it was made (a slot is used
    /// again after a delete).
    base: PortSnapshot,
    /// A vhost-user socket dvr made: removed with the interface.
    owned_socket: Option<PathBuf>,
}

/// The slots and what the compiler is told of them.
pub struct Registry {
    pub slots: Vec<Option<Iface>>,
    pub node_ports: NodePorts,
    /// Saved interfaces that could not be added again at start: kept saved
    /// (never lost), shown in the log.
    failed: Vec<IfaceSpec>,
}

impl Registry {
    pub fn by_name(&self, name: &str) -> Option<(u16, &Iface)> {
        self.slots
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.as_ref().filter(|f| f.name == name).map(|f| (i as u16, f)))
    }

    /// The interfaces in index order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Iface)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|f| (i as u16, f)))
    }
}

/// What the node's interfaces need to be added and deleted.
pub struct Interfaces {
    reg: RwLock<Registry>,
    desks: Vec<Arc<Desk>>,
    counters: Vec<Arc<WorkerCounters>>,
    cores: Vec<usize>,
    pool: Arc<Mempool>,
    rx_desc: u16,
    tx_desc: u16,
    /// The saved runtime interfaces.
    saved: PathBuf,
    /// Numbers the devices made at run time (DPDK names must be unique).
    seq: AtomicU32,
}

/// The file of saved interfaces.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    format: u32,
    interfaces: Vec<IfaceSpec>,
}

/// Where the runtime interfaces are saved: beside the model's state file.
pub fn saved_path(state_file: &Path) -> PathBuf {
    let mut name = state_file.as_os_str().to_owned();
    name.push(".interfaces");
    PathBuf::from(name)
}

pub struct Params {
    pub desks: Vec<Arc<Desk>>,
    pub counters: Vec<Arc<WorkerCounters>>,
    pub cores: Vec<usize>,
    pub pool: Arc<Mempool>,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub saved: PathBuf,
    pub node_ports: NodePorts,
}

impl Interfaces {
    pub fn new(p: Params) -> Interfaces {
        Interfaces {
            reg: RwLock::new(Registry {
                slots: Vec::new(),
                node_ports: p.node_ports,
                failed: Vec::new(),
            }),
            desks: p.desks,
            counters: p.counters,
            cores: p.cores,
            pool: p.pool,
            rx_desc: p.rx_desc,
            tx_desc: p.tx_desc,
            saved: p.saved,
            seq: AtomicU32::new(0),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.reg.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.reg.write().unwrap_or_else(|e| e.into_inner())
    }

    /// What the compiler knows of the node's ports, now.
    pub fn node_ports(&self) -> NodePorts {
        self.read().node_ports.clone()
    }

    /// Every interface's port (for the link checks and counters).
    pub fn ports(&self) -> Vec<(u16, Arc<Port>)> {
        self.read()
            .iter()
            .map(|(i, f)| (i, f.port.clone()))
            .collect()
    }

    fn nworkers(&self) -> usize {
        self.desks.len()
    }

    /// The workers' counters of slot `i`, summed.
    fn slot_counters(&self, i: u16) -> PortSnapshot {
        let mut t = PortSnapshot::default();
        for p in self.counters.iter().filter_map(|c| c.ports.get(i as usize)) {
            t += p.snapshot();
        }
        t
    }

    /// The counters of interface `i` since it was made.
    pub fn counters_of(&self, i: u16, f: &Iface) -> PortSnapshot {
        self.slot_counters(i).since(f.base)
    }

    /// Hands every worker its queues of the port in slot `index`: RX queue
    /// `q` to the worker `polls` names for it, TX queue `w` to worker `w`.
    fn attach(&self, index: u16, port: &Arc<Port>, rx: u16, tx: u16, polls: &[(u16, usize)]) {
        let (rxqs, txqs) = port.queues(rx, tx);
        let mut per: Vec<Vec<sys::RxQueue>> = (0..self.nworkers()).map(|_| Vec::new()).collect();
        for q in rxqs {
            if let Some(&(_, w)) = polls.iter().find(|(qq, _)| *qq == q.queue()) {
                per[w].push(q);
            }
        }
        let mut txqs = txqs.into_iter();
        for (w, rx) in per.into_iter().enumerate() {
            let change = PortChange::Attach {
                port: index,
                rx,
                tx: txqs.next(),
            };
            if self.desks[w].send(change).is_err() {
                // A desk holds every port twice over: only a worker that
                // stopped taking changes leaves it full.
                tracing::error!(worker = w, port = %port.name(), "worker's desk is full: queues not handed over");
            }
        }
    }

    /// Adopts a port of the configuration, started by the node: slot
    /// `index` (its place in the file), RX queue `q` polled by worker
    /// `worker + q` (round the workers).
    pub fn adopt(
        &self,
        index: u16,
        pc: &PortConfig,
        port: Arc<Port>,
        driver: String,
        rx: u16,
        tx: u16,
    ) {
        let n = self.nworkers();
        let polls: Vec<(u16, usize)> = (0..rx).map(|q| (q, (pc.worker + q as usize) % n)).collect();
        self.attach(index, &port, rx, tx, &polls);
        let (kind, socket, client, iface) = describe(&pc.kind);
        let mut reg = self.write();
        let i = index as usize;
        if reg.slots.len() <= i {
            reg.slots.resize_with(i + 1, || None);
        }
        reg.node_ports.ports[i].mac = MacAddr(port.mac());
        reg.slots[i] = Some(Iface {
            name: pc.name.clone(),
            role: pc.role,
            origin: Origin::Config,
            kind,
            socket,
            client,
            iface,
            port,
            driver,
            rx_queues: rx,
            tx_queues: tx,
            polls,
            base: PortSnapshot::default(),
            owned_socket: None,
        });
    }

    /// The saved runtime interfaces, added again (at start, before the
    /// workers run: they take their queues when they start).
    pub fn restore(&self) {
        let text = match std::fs::read_to_string(&self.saved) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::error!(file = %self.saved.display(), error = %e, "cannot read the saved interfaces");
                return;
            }
        };
        let saved: Saved = match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(file = %self.saved.display(), error = %e, "saved interfaces unreadable: none restored (the file is left as it is)");
                return;
            }
        };
        for spec in saved.interfaces {
            match self.add_device(&spec) {
                Ok(name) => tracing::info!(interface = %name, "interface restored"),
                Err(e) => {
                    tracing::error!(interface = %spec.name, error = %e, "saved interface not added again (kept saved)");
                    self.write().failed.push(spec);
                }
            }
        }
    }

    /// `interface add`: the device made and started, its queues handed to
    /// the workers (taken by all of them when this returns), then
    /// `publish` called with the node's ports; saved.
    pub fn add(
        &self,
        spec: &IfaceSpec,
        publish: impl FnOnce(NodePorts, &str),
    ) -> Result<(), String> {
        self.add_device(spec)?;
        let taken = self.wait_workers();
        let np = self.node_ports();
        publish(np, &spec.name);
        self.save()?;
        taken.map_err(|w| {
            format!(
                "interface {} added, but worker {w} has not taken its queues yet (is it stuck?)",
                spec.name
            )
        })
    }

    /// Waits for every worker to take what its desk holds; the first worker
    /// that did not, if any.
    fn wait_workers(&self) -> Result<(), usize> {
        for (w, d) in self.desks.iter().enumerate() {
            d.wait(TAKE_LIMIT).map_err(|_| w)?;
        }
        Ok(())
    }

    /// Makes, starts and attaches the device of `spec` in a free slot.
    fn add_device(&self, spec: &IfaceSpec) -> Result<String, String> {
        spec.check()?;
        let mut reg = self.write();
        if reg.by_name(&spec.name).is_some() {
            return Err(format!("an interface named {} exists", spec.name));
        }
        if let Some(w) = spec.worker {
            if w >= self.nworkers() {
                return Err(format!(
                    "interface {}: worker {w} does not exist (the node has {})",
                    spec.name,
                    self.nworkers()
                ));
            }
        }
        if let Some(s) = &spec.socket {
            if let Some((_, f)) = reg.iter().find(|(_, f)| f.socket.as_ref() == Some(s)) {
                return Err(format!(
                    "interface {}: socket {} is used by interface {}",
                    spec.name,
                    s.display(),
                    f.name
                ));
            }
        }
        if let Some(l) = &spec.iface {
            if let Some((_, f)) = reg.iter().find(|(_, f)| f.iface.as_ref() == Some(l)) {
                return Err(format!(
                    "interface {}: Linux interface {l} is used by interface {}",
                    spec.name, f.name
                ));
            }
        }
        let index = match reg.node_ports.ports.iter().position(|p| p.is_hole()) {
            Some(i) => i,
            None if reg.node_ports.ports.len() < MAX_PORTS => reg.node_ports.ports.len(),
            None => {
                return Err(format!(
                    "interface {}: the node has {MAX_PORTS} interfaces, the most it can have",
                    spec.name
                ))
            }
        };
        let owned_socket = self.prepare_socket(spec)?;
        let made = self.start_device(spec);
        let (port, driver, rx, tx) = match made {
            Ok(m) => m,
            Err(e) => {
                if let Some(s) = &owned_socket {
                    let _ = std::fs::remove_file(s);
                }
                return Err(e);
            }
        };
        let polls = self.assign(&reg, spec, rx);
        let index16 = index as u16;
        let base = self.slot_counters(index16);
        self.attach(index16, &port, rx, tx, &polls);
        let dp = DpPort {
            name: spec.name.clone(),
            role: PortRole::Vm,
            mac: MacAddr(port.mac()),
        };
        if index == reg.node_ports.ports.len() {
            reg.node_ports.ports.push(dp);
        } else {
            reg.node_ports.ports[index] = dp;
        }
        if reg.slots.len() <= index {
            reg.slots.resize_with(index + 1, || None);
        }
        tracing::info!(
            interface = %spec.name, index, kind = spec.kind.name(), driver = %driver,
            rx_queues = rx, tx_queues = tx, ?polls, "interface added"
        );
        reg.slots[index] = Some(Iface {
            name: spec.name.clone(),
            role: PortRole::Vm,
            origin: Origin::Runtime(spec.clone()),
            kind: spec.kind.name(),
            socket: spec.socket.clone(),
            client: spec.client,
            iface: spec.iface.clone(),
            port,
            driver,
            rx_queues: rx,
            tx_queues: tx,
            polls,
            base,
            owned_socket,
        });
        Ok(spec.name.clone())
    }

    /// A vhost-user server socket's directory made, and a socket left by a
    /// process that died removed; the socket dvr will own.
    fn prepare_socket(&self, spec: &IfaceSpec) -> Result<Option<PathBuf>, String> {
        let (IfaceType::VhostUser, Some(socket), false) = (spec.kind, &spec.socket, spec.client)
        else {
            return Ok(None);
        };
        server_socket(socket).map_err(|e| format!("interface {}: {e}", spec.name))?;
        Ok(Some(socket.clone()))
    }

    /// The DPDK device of `spec`, configured and started.
    fn start_device(&self, spec: &IfaceSpec) -> Result<(Arc<Port>, String, u16, u16), String> {
        let n = self.nworkers() as u16;
        let pairs = spec.queues.max(n);
        let seq = 1000 + self.seq.fetch_add(1, Ordering::Relaxed);
        let (dev, args) = match spec.kind {
            IfaceType::VhostUser => (
                format!("net_vhost{seq}"),
                format!(
                    "iface={},queues={pairs},client={}",
                    spec.socket.as_deref().unwrap_or(Path::new("")).display(),
                    spec.client as u8
                ),
            ),
            IfaceType::AfPacket => (
                format!("net_af_packet{seq}"),
                format!(
                    "iface={},qpairs={pairs}",
                    spec.iface.as_deref().unwrap_or("")
                ),
            ),
            IfaceType::Tap => (
                format!("net_tap{seq}"),
                format!("iface={}", spec.iface.as_deref().unwrap_or("")),
            ),
        };
        let ctx = |e: sys::Error| format!("interface {}: {e}", spec.name);
        let id = sys::vdev_create(&dev, &args).map_err(ctx)?;
        let info = match sys::dev_info(id) {
            Ok(i) => i,
            Err(e) => {
                let _ = sys::vdev_remove(&dev);
                return Err(ctx(e));
            }
        };
        let rx = spec.queues.min(info.max_rx_queues).max(1);
        let tx = n.min(info.max_tx_queues);
        let setup = PortSetup {
            rx_queues: rx,
            tx_queues: tx,
            rx_desc: self.rx_desc,
            tx_desc: self.tx_desc,
            promiscuous: true,
        };
        match Port::start(id, &spec.name, &setup, &self.pool) {
            Ok(p) => Ok((p, info.driver, rx, tx)),
            Err(e) => {
                let _ = sys::vdev_remove(&dev);
                Err(ctx(e))
            }
        }
    }

    /// Which worker polls each of `rx` queues of a new interface: from the
    /// worker asked for, or the one polling the fewest queues, round the
    /// workers.
    fn assign(&self, reg: &Registry, spec: &IfaceSpec, rx: u16) -> Vec<(u16, usize)> {
        let n = self.nworkers();
        let first = spec.worker.unwrap_or_else(|| {
            let mut load = vec![0usize; n];
            for (_, f) in reg.iter() {
                for &(_, w) in &f.polls {
                    load[w] += 1;
                }
            }
            (0..n).min_by_key(|&w| (load[w], w)).unwrap_or(0)
        });
        (0..rx).map(|q| (q, (first + q as usize) % n)).collect()
    }

    /// `interface delete`: `publish` called with the node's ports without
    /// it, then its queues taken back from every worker, then the device
    /// stopped, closed and removed; saved.
    pub fn delete(&self, name: &str, publish: impl FnOnce(NodePorts, &str)) -> Result<(), String> {
        let mut reg = self.write();
        let Some((index, f)) = reg.by_name(name) else {
            return Err(format!("no interface named {name}"));
        };
        if matches!(f.origin, Origin::Config) {
            return Err(format!(
                "interface {name} is in the configuration file: remove it there (only interfaces added by `interface add` are deleted at run time)"
            ));
        }
        reg.node_ports.ports[index as usize] = DpPort::hole();
        let np = reg.node_ports.clone();
        // Not under the registry's lock: views take it under the compiler's.
        drop(reg);
        publish(np, name);
        for d in &self.desks {
            // The inbox holds every port twice: a full one means a stuck
            // worker, which keeps its handles (the device stays open).
            let _ = d.send(PortChange::Detach { port: index });
        }
        let taken = self.wait_workers();
        // The handles come back: dropping them lets go of the workers' hold.
        for d in &self.desks {
            while d.take_released().is_some() {}
        }
        let f = self.write().slots[index as usize].take();
        if let Some(f) = f {
            if taken.is_ok() {
                if let Err(e) = f.port.remove() {
                    tracing::warn!(interface = %name, error = %e, "device not removed");
                }
            }
            if let Some(s) = &f.owned_socket {
                let _ = std::fs::remove_file(s);
            }
            tracing::info!(interface = %name, index, "interface deleted");
        }
        self.save()?;
        taken.map_err(|w| format!("interface {name} deleted, but worker {w} has not given its queues back: its device stays open"))
    }

    /// Writes the runtime interfaces (and those that failed at start) to
    /// the saved file, atomically.
    fn save(&self) -> Result<(), String> {
        let reg = self.read();
        let mut interfaces: Vec<IfaceSpec> = reg
            .iter()
            .filter_map(|(_, f)| match &f.origin {
                Origin::Runtime(s) => Some(s.clone()),
                Origin::Config => None,
            })
            .collect();
        interfaces.extend(reg.failed.iter().cloned());
        drop(reg);
        let saved = Saved {
            format: 1,
            interfaces,
        };
        dvr::model::write_atomic(&self.saved, |w| {
            serde_json::to_writer_pretty(&mut *w, &saved)?;
            Ok(())
        })
        .map_err(|e| {
            format!(
                "cannot save the interfaces to {}: {e}",
                self.saved.display()
            )
        })
    }

    /// What `interface list` / `show` print.
    pub fn info(&self, model: &Model, me: &str) -> Vec<IfaceInfo> {
        let mut bound: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for p in model.ports.values() {
            if let (Some(h), Some(b)) = (&p.host, &p.binding) {
                if h == me {
                    bound.entry(b.as_str()).or_default().push(p.name.clone());
                }
            }
        }
        let reg = self.read();
        reg.iter()
            .map(|(i, f)| {
                let c = self.counters_of(i, f);
                IfaceInfo {
                    name: f.name.clone(),
                    index: i,
                    kind: f.kind.to_owned(),
                    role: f.role.name().to_owned(),
                    origin: match f.origin {
                        Origin::Config => "config",
                        Origin::Runtime(_) => "runtime",
                    }
                    .to_owned(),
                    driver: f.driver.clone(),
                    device: f.port.device_name().unwrap_or_default(),
                    socket: f.socket.clone(),
                    client: f.client,
                    iface: f.iface.clone(),
                    mac: MacAddr(f.port.mac()),
                    link_up: f.port.link_up(),
                    rx_queues: f.rx_queues,
                    tx_queues: f.tx_queues,
                    polled_by: f
                        .polls
                        .iter()
                        .map(|&(queue, worker)| QueuePoll {
                            queue,
                            worker,
                            core: self.cores.get(worker).copied().unwrap_or(0),
                        })
                        .collect(),
                    bound: bound.get(f.name.as_str()).cloned().unwrap_or_default(),
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                }
            })
            .collect()
    }

    /// Per worker, the RX queues it polls: `interface:qN`.
    pub fn polls_by_worker(&self) -> Vec<Vec<String>> {
        let mut v = vec![Vec::new(); self.nworkers()];
        for (_, f) in self.read().iter() {
            for &(q, w) in &f.polls {
                if let Some(l) = v.get_mut(w) {
                    l.push(format!("{}:q{q}", f.name));
                }
            }
        }
        v
    }

    /// Whether interface `name`'s link is up (None: no such interface).
    pub fn link(&self, name: &str) -> Option<bool> {
        self.read().by_name(name).map(|(_, f)| f.port.link_up())
    }

    /// Closes every interface (the workers have stopped).
    pub fn close_all(&self) {
        let mut reg = self.write();
        for f in reg.slots.drain(..).flatten() {
            f.port.close();
            if let Some(s) = &f.owned_socket {
                let _ = std::fs::remove_file(s);
            }
        }
    }
}

/// Makes ready the place of a vhost-user socket dvr serves (makes): its
/// directory made, a socket left by a process that did not exit cleanly
/// removed; anything else there is refused.
pub fn server_socket(socket: &Path) -> Result<(), String> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if let Ok(md) = std::fs::symlink_metadata(socket) {
        if !md.file_type().is_socket() {
            return Err(format!("{} exists and is not a socket", socket.display()));
        }
        let _ = std::fs::remove_file(socket);
    }
    Ok(())
}

/// The kind, socket, client flag and Linux interface of a configured port.
fn describe(k: &PortKind) -> (&'static str, Option<PathBuf>, bool, Option<String>) {
    match k {
        PortKind::VhostUser { socket, client } => {
            ("vhost-user", Some(socket.clone()), *client, None)
        }
        PortKind::Pci { .. } => ("pci", None, false, None),
        PortKind::AfPacket { iface } => ("af_packet", None, false, Some(iface.clone())),
        PortKind::Tap { iface } => ("tap", None, false, Some(iface.clone())),
        PortKind::Pcap { .. } => ("pcap", None, false, None),
        PortKind::Ring { .. } => ("ring", None, false, None),
        PortKind::Null => ("null", None, false, None),
    }
}
