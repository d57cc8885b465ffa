//! Live counters on standard output: a table for people or one JSON object per
//! line for scripts (the tests and benchmarks read the latter).

use std::io::Write;
use std::time::Instant;

use dvr::config::StatsFormat;
use dvr::proto::answers::{
    CycleSplit, FdbEntry, FdbLocal, FibEntry, NatEntry, NatKind, NeighborEntry, PortRates,
    PortStats, PortStatus, SessionEntry, SessionWorker, Sessions, Stats, Status, Table, TableKind,
    TablesAnswer, Trace, TraceStage, WorkerId, WorkerStats,
};
use dvr::stats::{total, DropReason, WorkerSnapshot};

use std::sync::Arc;

use dvr::compile::Compiler;
use dvr::config::AgentMode;
use dvr::model::{Applied, Model};
use dvr::proto::iface::{IfaceInfo, IfaceSpec};
use dvr::stats::{PortSnapshot, WorkerCounters};
use dvr::tables::{NodePorts, Tables};

use crate::control::NodeView;
use crate::ifaces::Interfaces;
use crate::node::Node;

/// What the daemon shows of itself: shared by the counter printer and the
/// control thread (`dvr-ctl show ...`).
pub struct View {
    pub node: String,
    pub agent_mode: AgentMode,
    pub cores: Vec<usize>,
    /// The interfaces, of the configuration and added at run time.
    pub ifaces: Arc<Interfaces>,
    pub counters: Vec<Arc<WorkerCounters>>,
    pub tsc_hz: u64,
    pub started: Instant,
    pub tables: Arc<Tables>,
    pub vtep: Option<std::net::Ipv4Addr>,
    pub dvr_mac: Option<dvr::mac::MacAddr>,
    /// Keeps the published tables in step with the model (control thread only).
    pub compiler: std::sync::Mutex<Option<Compiler>>,
    pub exchange: Arc<dvr::punt::Exchange>,
    /// The neighbours saved before a restart (`neighbors.rs`), and those the
    /// first publication restored from it.
    pub neighbors: std::path::PathBuf,
    pub restored: std::sync::Mutex<Vec<std::net::Ipv4Addr>>,
    /// Microseconds the last committed change took to be published
    /// (`u64::MAX`: none yet).
    pub last_publish_us: std::sync::atomic::AtomicU64,
    /// Each interface's packet and bit rates over the last second
    /// ([`View::tick_rates`]).
    rates: std::sync::Mutex<Rates>,
    /// The frames a live trace marked, taken from the workers' queue.
    live: std::sync::Mutex<Vec<dvr::proto::answers::LiveFrame>>,
    /// The capture being written ([`View::tick_capture`]).
    capture: std::sync::Mutex<Capture>,
}

/// A capture: its file and what it got so far.
#[derive(Default)]
struct Capture {
    writer: Option<dvr::pcapng::Writer<std::io::BufWriter<std::fs::File>>>,
    info: dvr::proto::answers::CaptureInfo,
    /// The TSC and the time (ns since 1970) when it started.
    tsc0: u64,
    ns0: u64,
}

/// Rates per interface name: the counters a second ago and what they grew
/// by per second since.
#[derive(Default)]
struct Rates {
    at: Option<Instant>,
    last: std::collections::HashMap<String, PortSnapshot>,
    /// (rx packets/s, tx packets/s, rx bits/s, tx bits/s).
    per_s: std::collections::HashMap<String, [f64; 4]>,
}

impl View {
    pub fn new(node: &Node) -> Arc<View> {
        Arc::new(View {
            node: node.cfg.node.clone(),
            agent_mode: node.cfg.agent_mode,
            cores: node.cfg.cores.workers.clone(),
            ifaces: node
                .ifaces
                .clone()
                .expect("a started node has its interfaces"),
            counters: node.counters.clone(),
            tsc_hz: node.tsc_hz,
            started: Instant::now(),
            tables: node.tables.clone(),
            vtep: node.cfg.vtep,
            dvr_mac: node.cfg.dvr_mac,
            compiler: std::sync::Mutex::new(None),
            exchange: node.exchange.clone(),
            neighbors: crate::neighbors::path_of(&node.cfg.state_file),
            restored: std::sync::Mutex::new(Vec::new()),
            last_publish_us: std::sync::atomic::AtomicU64::new(u64::MAX),
            rates: std::sync::Mutex::new(Rates::default()),
            live: std::sync::Mutex::new(Vec::new()),
            capture: std::sync::Mutex::new(Capture::default()),
        })
    }

    /// Updates the interfaces' rates when a second has passed since the
    /// last update (the main loop calls it every few milliseconds).
    pub fn tick_rates(&self) {
        let now = Instant::now();
        let mut r = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        if r.at
            .is_some_and(|at| now.duration_since(at) < std::time::Duration::from_secs(1))
        {
            return;
        }
        let rows = self.port_rows();
        if let Some(at) = r.at {
            let dt = now.duration_since(at).as_secs_f64();
            let mut per_s = std::collections::HashMap::new();
            for (_, name, c, _) in &rows {
                // An interface added since: its rates from the next tick.
                let Some(o) = r.last.get(name) else { continue };
                let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                per_s.insert(
                    name.clone(),
                    [
                        d(c.rx_packets, o.rx_packets),
                        d(c.tx_packets, o.tx_packets),
                        8.0 * d(c.rx_bytes, o.rx_bytes),
                        8.0 * d(c.tx_bytes, o.tx_bytes),
                    ],
                );
            }
            r.per_s = per_s;
        }
        r.last = rows.into_iter().map(|(_, n, c, _)| (n, c)).collect();
        r.at = Some(now);
    }

    /// Writes the frames the workers captured; closes the file once the
    /// count is reached (the main loop calls it every few milliseconds).
    pub fn tick_capture(&self) {
        let mut c = self.capture.lock().unwrap_or_else(|e| e.into_inner());
        if c.writer.is_none() {
            return;
        }
        self.drain_capture(&mut c);
        if self.exchange.capture.remaining() == 0 {
            self.finish_capture(&mut c);
        }
    }

    fn drain_capture(&self, c: &mut Capture) {
        let tap = &self.exchange.capture;
        let hz = self.tsc_hz.max(1) as u128;
        let mut failed = None;
        while let Some(f) = tap.frames.pop() {
            let ns = c.ns0 + (f.tsc.saturating_sub(c.tsc0) as u128 * 1_000_000_000 / hz) as u64;
            if let Some(w) = c.writer.as_mut() {
                match w.packet(ns, f.dir == dvr::worker::capture::RX, f.bytes(), f.len) {
                    Ok(()) => c.info.written += 1,
                    Err(e) => failed = Some(e),
                }
            }
        }
        c.info.lost = tap.lost.load(std::sync::atomic::Ordering::Relaxed);
        c.info.remaining = tap.remaining();
        if let Some(e) = failed {
            tracing::error!(error = %e, "capture: cannot write; stopped");
            tap.disarm();
            c.writer = None;
            c.info.running = false;
        }
    }

    fn finish_capture(&self, c: &mut Capture) {
        self.exchange.capture.disarm();
        self.drain_capture(c);
        if let Some(mut w) = c.writer.take() {
            if let Err(e) = w.flush() {
                tracing::error!(error = %e, "capture: cannot write");
            }
            tracing::info!(
                file = c.info.file.as_deref().unwrap_or(""),
                written = c.info.written,
                lost = c.info.lost,
                "capture written"
            );
        }
        c.info.running = false;
        c.info.remaining = 0;
    }

    /// Every worker's counters, now.
    pub fn snapshot(&self) -> Vec<WorkerSnapshot> {
        self.counters.iter().map(|c| c.snapshot()).collect()
    }

    /// Each interface's index, name and counters (since it was made), in
    /// index order.
    pub fn port_rows(&self) -> Vec<(u16, String, PortSnapshot, dvr::sys::PortStats)> {
        let reg = self.ifaces.read();
        reg.iter()
            .map(|(i, f)| {
                (
                    i,
                    f.name.clone(),
                    self.ifaces.counters_of(i, f),
                    f.port.stats(),
                )
            })
            .collect()
    }

    /// The counters (the `stats` answer and the `--stats-format json` line).
    pub fn counters(&self, is_final: bool) -> Stats {
        let rates = self
            .rates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .per_s
            .clone();
        let ws = self.snapshot();
        let mut polls = self.ifaces.polls_by_worker();
        let t = total(&ws, 0);
        Stats {
            node: self.node.clone(),
            t: self.started.elapsed().as_secs_f64(),
            is_final,
            tsc_hz: self.tsc_hz,
            ports: self
                .port_rows()
                .into_iter()
                .map(|(_, name, c, d)| PortStats {
                    rates: rates.get(&name).map(|r| PortRates {
                        rx_pps: r[0],
                        tx_pps: r[1],
                        rx_bps: r[2],
                        tx_bps: r[3],
                    }),
                    name,
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                    imissed: d.imissed,
                    ierrors: d.ierrors,
                    rx_nombuf: d.rx_nombuf,
                    oerrors: d.oerrors,
                })
                .collect(),
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_owned(), t.drops[*r as usize]))
                .collect(),
            workers: ws
                .iter()
                .enumerate()
                .map(|(i, w)| WorkerStats {
                    worker: i,
                    core: self.cores[i],
                    packets: w.packets,
                    polls: w.polls,
                    busy_polls: w.busy_polls,
                    poll_cycles: w.poll_cycles,
                    cycles_per_packet: w.cycles_per_packet(),
                    sampled_packets: w.sampled_packets,
                    sampled_cycles: w.sampled_cycles,
                    sampled_rx_cycles: w.sampled_rx_cycles,
                    sampled_tx_cycles: w.sampled_tx_cycles,
                    cycles_per_packet_split: w.split().map(CycleSplit::from),
                    busy_cycles_per_packet: w.busy_cycles_per_packet(),
                    busy_share: w.busy_share(),
                    nat_sessions: w.nat_sessions,
                    nat_sessions_created: w.nat_sessions_created,
                    flow_hits: w.flow_hits,
                    flow_inserts: w.flow_inserts,
                    decap_way: w.decap_way,
                    snat_way: w.snat_way,
                    handoff_out: w.handoff_out,
                    handoff_in: w.handoff_in,
                    rx_queues: polls.get_mut(i).map(std::mem::take).unwrap_or_default(),
                })
                .collect(),
            metadata: self.exchange.metadata.as_ref().map(|q| q.stats.snapshot()),
        }
    }
}

impl View {
    /// The node's ports changed (interface `name` added or deleted): the
    /// next tables published.
    fn publish_ports(&self, model: &Model, np: NodePorts, name: &str) {
        let mut c = self.compiler.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = c.as_mut() {
            self.tables.store(c.set_ports(model, np, name));
        }
    }
}

impl NodeView for View {
    fn status(&self, generation: u64) -> Status {
        Status {
            node: self.node.clone(),
            agent_mode: self.agent_mode,
            uptime_s: self.started.elapsed().as_secs_f64(),
            workers: self.cores.clone(),
            ports: self
                .ifaces
                .ports()
                .into_iter()
                .map(|(_, p)| PortStatus {
                    name: p.name().to_owned(),
                    id: p.id(),
                    mac: dvr::mac::MacAddr(p.mac()),
                    link_up: p.link_up(),
                })
                .collect(),
            generation,
            published_generation: self.published_generation(),
            protocol: dvr::proto::VERSION,
        }
    }

    fn stats(&self) -> Stats {
        self.counters(false)
    }

    fn publish(&self, model: &Model, applied: Option<&[Applied]>) {
        let mut c = self.compiler.lock().unwrap_or_else(|e| e.into_inner());
        let snap = match (c.as_mut(), applied) {
            (Some(c), Some(applied)) => c.update(model, applied),
            _ => {
                let mut fresh = Compiler::new(model, self.ifaces.node_ports());
                // What was resolved on the underlay stays resolved, and
                // the VIPs' holders stay known.
                if let Some(old) = c.as_ref() {
                    fresh.inherit_vtep_macs(old);
                    fresh.inherit_holders(old);
                } else {
                    // The first: with the neighbours saved before a restart.
                    let r = crate::neighbors::restore(&mut fresh, &self.neighbors);
                    *self.restored.lock().unwrap_or_else(|e| e.into_inner()) = r;
                }
                let s = fresh.current().clone();
                *c = Some(fresh);
                s
            }
        };
        self.tables.store(snap);
    }

    fn node_name(&self) -> &str {
        &self.node
    }

    fn interface_add(&self, model: &Model, spec: &IfaceSpec) -> Result<IfaceInfo, String> {
        self.ifaces
            .add(spec, |np, name| self.publish_ports(model, np, name))?;
        self.interfaces(model)
            .into_iter()
            .find(|i| i.name == spec.name)
            .ok_or_else(|| format!("interface {} added, then gone", spec.name))
    }

    fn interface_delete(&self, model: &Model, name: &str) -> Result<(), String> {
        self.ifaces
            .delete(name, |np, name| self.publish_ports(model, np, name))
    }

    fn interfaces(&self, model: &Model) -> Vec<IfaceInfo> {
        self.ifaces.info(model, &self.node)
    }

    fn link(&self, name: &str) -> Option<bool> {
        self.ifaces.link(name)
    }

    fn host(
        &self,
    ) -> (
        AgentMode,
        Option<std::net::Ipv4Addr>,
        Option<dvr::mac::MacAddr>,
    ) {
        (self.agent_mode, self.vtep, self.dvr_mac)
    }

    fn trace(&self, port: &str, frame: &[u8]) -> Result<Trace, String> {
        let node_ports = self.ifaces.node_ports();
        let in_port = node_ports
            .index_of(port)
            .ok_or_else(|| format!("no dataplane port named {port}"))?;
        let snap = self.tables.load_full();
        let mut stages = vec![TraceStage {
            stage: "ingress".into(),
            port: Some(port.to_owned()),
            index: Some(in_port),
            frame_len: Some(frame.len()),
            generation: Some(snap.generation),
            ..Default::default()
        }];
        // The same code the workers run, on the same snapshot, on a copy of the
        // frame in a buffer with the mbufs' headroom.
        const HEADROOM: usize = 128;
        let mut buf = vec![0u8; HEADROOM + frame.len().max(64) + 2048];
        buf[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
        let mut f =
            dvr::pkt::Frame::new(&mut buf, HEADROOM, frame.len()).ok_or("frame does not fit")?;
        // A trace's SNAT is a fresh table of its own: it shows what a new
        // flow gets, never the workers' sessions.
        let mut env = dvr::pipeline::Env::new(|| 0, 1);
        env.metadata = self.exchange.metadata.is_some();
        env.burst(&snap);
        let mut notes = dvr::pipeline::Notes::default();
        let v = dvr::pipeline::process(&snap, &mut env, in_port, &mut f, &mut notes);
        for (stage, what) in notes.0 {
            stages.push(TraceStage {
                stage: stage.to_string(),
                decision: Some(what.to_string()),
                ..Default::default()
            });
        }
        let name = |p: u16| {
            node_ports
                .ports
                .get(p as usize)
                .map_or("?".to_string(), |d| d.name.clone())
        };
        let hex: String = f.data().iter().map(|b| format!("{b:02x}")).collect();
        use dvr::pipeline::Disposition as D;
        let out = output_stage(v, name);
        let last = match v {
            D::Flood { .. } => {
                let targets: Vec<String> = env
                    .flood_of(v)
                    .into_iter()
                    .flat_map(|fl| dvr::pipeline::flood_targets(&snap, fl, in_port))
                    .map(|t| match t {
                        dvr::pipeline::Target::Port(p) => name(p),
                        dvr::pipeline::Target::Host(h) => snap
                            .node
                            .hosts
                            .get(h as usize)
                            .map_or("?".into(), |h| format!("host {}", h.name)),
                    })
                    .collect();
                TraceStage {
                    copies_to: Some(targets),
                    ..out
                }
            }
            D::Answered { .. } | D::Forward(_) => TraceStage {
                frame: Some(hex),
                ..out
            },
            D::Drop(_) | D::Punt(_) => out,
        };
        stages.push(last);
        Ok(Trace { stages })
    }

    fn tables(&self, what: TableKind, router: Option<&str>) -> Result<TablesAnswer, String> {
        if what == TableKind::Sessions {
            return self.sessions(router).map(TablesAnswer::Sessions);
        }
        let snap = self.tables.load();
        let c = self.compiler.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = c.as_ref() else {
            return Err("no tables published yet".into());
        };
        let generation = snap.generation;
        let node_ports = self.ifaces.node_ports();
        if what == TableKind::Fdb {
            let entries = self.fdb(c, &snap);
            return Ok(TablesAnswer::Fdb(Table {
                generation,
                entries,
            }));
        }
        let names: Vec<String> = match router {
            Some(r) => vec![r.to_owned()],
            None => c.router_names(),
        };
        let mut fib = Vec::new();
        let mut nat = Vec::new();
        let mut neighbors = Vec::new();
        for name in names {
            let Some(t) = snap.router(c, &name) else {
                if router.is_some() {
                    return Err(format!(
                        "router {name} has no tables here (unknown or disabled)"
                    ));
                }
                continue;
            };
            match what {
                TableKind::Fib => fib.extend(t.fib.routes().into_iter().map(|(p, nh)| {
                    let subnet = match nh {
                        dvr::fib::NextHop::Connected { iface } => {
                            t.interfaces.get(iface as usize).map(|i| i.subnet.clone())
                        }
                        dvr::fib::NextHop::Via { .. } => None,
                    };
                    FibEntry {
                        router: name.clone(),
                        prefix: p.to_string(),
                        next_hop: nh.into(),
                        subnet,
                    }
                })),
                TableKind::Nat => nat.extend(nat_entries(c, &snap, &node_ports, &name, t)),
                _ => {
                    let mut v: Vec<_> = t.neighbors.iter().collect();
                    v.sort_by_key(|(ip, _)| **ip);
                    neighbors.extend(v.into_iter().map(|(ip, n)| NeighborEntry {
                        router: name.clone(),
                        ip: ip.to_string(),
                        mac: n.mac.to_string(),
                        port: n.port.clone(),
                        location: location(c, &snap, &node_ports, n.dest),
                    }));
                }
            }
        }
        Ok(match what {
            TableKind::Fib => TablesAnswer::Fib(Table {
                generation,
                entries: fib,
            }),
            TableKind::Nat => TablesAnswer::Nat(Table {
                generation,
                entries: nat,
            }),
            _ => TablesAnswer::Neighbors(Table {
                generation,
                entries: neighbors,
            }),
        })
    }

    fn published_generation(&self) -> u64 {
        self.tables.load().generation
    }

    fn capture_start(
        &self,
        interface: &str,
        dirs: u8,
        count: u32,
        snaplen: u32,
        file: &std::path::Path,
    ) -> Result<dvr::proto::answers::CaptureInfo, String> {
        let ports = self.ifaces.node_ports();
        let i = ports
            .index_of(interface)
            .ok_or_else(|| format!("no interface named {interface}"))?;
        let mut c = self.capture.lock().unwrap_or_else(|e| e.into_inner());
        if c.writer.is_some() {
            return Err(format!(
                "a capture of {} into {} runs: capture stop first",
                c.info.interface.as_deref().unwrap_or("?"),
                c.info.file.as_deref().unwrap_or("?")
            ));
        }
        let f = std::fs::File::create(file)
            .map_err(|e| format!("capture: cannot create {}: {e}", file.display()))?;
        let w = dvr::pcapng::Writer::new(std::io::BufWriter::new(f), interface, snaplen)
            .map_err(|e| format!("capture: cannot write {}: {e}", file.display()))?;
        // Empty what an earlier capture left, then arm.
        while self.exchange.capture.frames.pop().is_some() {}
        let ns0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        *c = Capture {
            writer: Some(w),
            info: dvr::proto::answers::CaptureInfo {
                file: Some(file.display().to_string()),
                interface: Some(interface.to_owned()),
                direction: Some(
                    match dirs {
                        dvr::worker::capture::RX => "rx",
                        dvr::worker::capture::TX => "tx",
                        _ => "both",
                    }
                    .into(),
                ),
                running: true,
                written: 0,
                lost: 0,
                remaining: count,
            },
            tsc0: dvr::sys::rdtsc(),
            ns0,
        };
        self.exchange.capture.arm(i, dirs, count, snaplen);
        tracing::info!(interface, file = %file.display(), count, "capture started");
        Ok(c.info.clone())
    }

    fn capture_show(&self) -> dvr::proto::answers::CaptureInfo {
        self.tick_capture();
        let c = self.capture.lock().unwrap_or_else(|e| e.into_inner());
        c.info.clone()
    }

    fn capture_stop(&self) -> dvr::proto::answers::CaptureInfo {
        let mut c = self.capture.lock().unwrap_or_else(|e| e.into_inner());
        self.finish_capture(&mut c);
        c.info.clone()
    }

    fn trace_add(&self, interface: &str, n: u32) -> Result<(), String> {
        let ports = self.ifaces.node_ports();
        let i = ports
            .index_of(interface)
            .ok_or_else(|| format!("no interface named {interface}"))?;
        self.exchange.trace.arm(i, n);
        Ok(())
    }

    fn trace_show(&self, clear: bool) -> dvr::proto::answers::LiveTrace {
        use dvr::pipeline::Disposition as D;
        let ports = self.ifaces.node_ports();
        let name = |p: u16| {
            ports
                .ports
                .get(p as usize)
                .map_or_else(|| format!("slot {p}"), |d| d.name.clone())
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(e) = self.exchange.trace.entries.pop() {
            let mut stages: Vec<TraceStage> = e
                .notes()
                .iter()
                .map(|n| TraceStage {
                    stage: n.stage.into(),
                    decision: Some(n.text().into()),
                    ..Default::default()
                })
                .collect();
            let out = output_stage(e.disposition, name);
            stages.push(match e.disposition {
                D::Flood { why, .. } => TraceStage {
                    reason: why.map(|r| r.name().into()),
                    ..out
                },
                _ => out,
            });
            live.push(dvr::proto::answers::LiveFrame {
                seq: e.seq,
                worker: e.worker,
                interface: name(e.port),
                length: e.len,
                head: e.head().iter().map(|b| format!("{b:02x}")).collect(),
                stages,
                lost_notes: e.lost_notes,
            });
        }
        live.sort_by_key(|f| f.seq);
        let max = dvr::worker::trace::TRACE_MAX as usize;
        if live.len() > max {
            let extra = live.len() - max;
            live.drain(..extra);
        }
        if clear {
            self.exchange.trace.disarm();
            live.clear();
        }
        let t = &self.exchange.trace;
        dvr::proto::answers::LiveTrace {
            armed: t.armed_port().filter(|_| t.remaining() > 0).map(name),
            remaining: t.remaining(),
            frames: live.clone(),
        }
    }

    fn published_in(&self, us: u64) {
        self.last_publish_us
            .store(us, std::sync::atomic::Ordering::Relaxed);
    }
}

impl View {
    /// The `[metrics]` endpoint's page.
    pub fn metrics(&self) -> String {
        let us = self
            .last_publish_us
            .load(std::sync::atomic::Ordering::Relaxed);
        dvr::metrics::exposition(
            &self.counters(false),
            &dvr::metrics::Extra {
                tables_generation: self.tables.load().generation,
                last_publish_seconds: (us != u64::MAX).then(|| us as f64 / 1e6),
            },
        )
    }
}

/// A router's translations: its SNAT, then its floating IPs by address.
fn nat_entries(
    c: &Compiler,
    snap: &dvr::tables::Snapshot,
    node_ports: &NodePorts,
    router: &str,
    t: &dvr::tables::RouterTables,
) -> Vec<NatEntry> {
    let mut out = Vec::new();
    if let Some(g) = &t.snat {
        out.push(NatEntry {
            router: router.to_owned(),
            kind: NatKind::Snat,
            external: g
                .ips
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(","),
            internal: if g.enable_snat {
                "all subnets"
            } else {
                "disabled"
            }
            .into(),
            port: None,
            at: g.host.as_deref().map_or("no dvr_snat host".into(), |h| {
                if g.here {
                    format!("{h} (this node)")
                } else {
                    h.to_string()
                }
            }),
        });
    }
    let mut v: Vec<_> = t.fips.values().collect();
    v.sort_by_key(|f| f.floating);
    for f in v {
        out.push(NatEntry {
            router: router.to_owned(),
            kind: NatKind::FloatingIp,
            external: f.floating.to_string(),
            internal: f.fixed.to_string(),
            port: Some(f.port.clone()),
            at: location(c, snap, node_ports, f.dest),
        });
    }
    out
}

/// How long the control thread waits for the workers' session answers.
const SESSIONS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

impl View {
    /// Every network's MAC table: local ports, ports on other hosts (behind
    /// their VTEP) and router interfaces.
    fn fdb(&self, c: &Compiler, snap: &dvr::tables::Snapshot) -> Vec<FdbEntry> {
        let mut entries = Vec::new();
        // The model port served on each dataplane port (the first by
        // network and MAC, as compiled).
        let mut served: std::collections::HashMap<u16, String> = Default::default();
        for (_, _, port, idx) in c.local_entries() {
            served.entry(idx).or_insert(port);
        }
        let node_ports = self.ifaces.node_ports();
        for net in c.network_names() {
            let Some(t) = snap.network(c, &net) else {
                continue;
            };
            let mut v: Vec<_> = t.fdb.iter().collect();
            v.sort_by_key(|(k, _)| dvr::mac::MacAddr::from_key(*k));
            for (k, d) in v {
                let local = match d {
                    dvr::tables::Dest::Local(i) => Some(FdbLocal {
                        dataplane_port: node_ports.ports.get(i as usize).map(|p| p.name.clone()),
                        port: served.get(&i).cloned(),
                    }),
                    _ => None,
                };
                entries.push(FdbEntry {
                    network: net.clone(),
                    mac: dvr::mac::MacAddr::from_key(k).to_string(),
                    location: location(c, snap, &node_ports, d),
                    local,
                });
            }
        }
        entries
    }

    /// The SNAT sessions of every worker (of router `router` only, if given):
    /// asked of the workers, which each answer from their own table between
    /// bursts with at most `punt::SESSIONS_MAX` sessions and their count. A
    /// worker that does not answer within [`SESSIONS_TIMEOUT`] is named in
    /// `unanswered`.
    fn sessions(&self, router: Option<&str>) -> Result<Sessions, String> {
        let (generation, names) = {
            let c = self.compiler.lock().unwrap_or_else(|e| e.into_inner());
            let Some(c) = c.as_ref() else {
                return Err("no tables published yet".into());
            };
            (self.tables.load().generation, c.router_names())
        };
        let mut out = Sessions {
            generation,
            entries: Vec::new(),
            total: 0,
            limit_per_worker: dvr::punt::SESSIONS_MAX,
            workers: Vec::new(),
            unanswered: Vec::new(),
        };
        let id = match router {
            None => None,
            Some(r) => match names.iter().position(|n| n == r) {
                Some(i) => Some(i as u32),
                // Known to the model (the caller checked) but never compiled
                // here: no sessions.
                None => return Ok(out),
            },
        };
        let answers = self
            .exchange
            .sessions
            .ask(id, self.counters.len(), SESSIONS_TIMEOUT);
        for (w, a) in answers.into_iter().enumerate() {
            let core = self.cores[w];
            let Some(a) = a else {
                out.unanswered.push(WorkerId { worker: w, core });
                continue;
            };
            out.total += a.total;
            out.workers.push(SessionWorker {
                worker: w,
                core,
                sessions: a.total,
                listed: a.sessions.len(),
            });
            let mut v = a.sessions;
            v.sort_by_key(|s| (s.router, s.inside, s.remote, s.proto));
            out.entries.extend(v.into_iter().map(|s| {
                SessionEntry {
                    router: names
                        .get(s.router as usize)
                        .map_or_else(|| format!("#{}", s.router), |n| n.clone()),
                    protocol: s.protocol().into(),
                    inside: s.inside.to_string(),
                    outside: s.outside.to_string(),
                    remote: s.remote.to_string(),
                    state: s.state.name().into(),
                    idle_s: s.idle_ms as f64 / 1000.0,
                    age_s: s.age_ms as f64 / 1000.0,
                    worker: w,
                }
            }));
        }
        Ok(out)
    }
}

/// A trace's `output` stage for disposition `d` (interfaces named by
/// `name`): where the frame goes, or the reason it does not (a punted frame
/// shown as the drop it is counted as).
fn output_stage(d: dvr::pipeline::Disposition, name: impl Fn(u16) -> String) -> TraceStage {
    use dvr::pipeline::Disposition as D;
    let output = |decision: &str| TraceStage {
        stage: "output".into(),
        decision: Some(decision.into()),
        ..Default::default()
    };
    let dropped = |r: dvr::stats::DropReason| TraceStage {
        reason: Some(r.name().into()),
        why: Some(r.describe().into()),
        ..output("drop")
    };
    match d {
        D::Forward(p) => TraceStage {
            out_port: Some(name(p)),
            ..output("forward")
        },
        D::Answered { port, why } => TraceStage {
            out_port: Some(name(port)),
            reason: Some(why.name().into()),
            ..output("answer")
        },
        D::Flood { .. } => output("flood"),
        D::Drop(r) => dropped(r),
        D::Punt(k) => dropped(k.counter()),
    }
}

/// Where a neighbour lives, for people: by names (the interface here, the
/// host and its VTEP, the router and the subnet of its interface).
fn location(
    c: &Compiler,
    snap: &dvr::tables::Snapshot,
    ports: &NodePorts,
    d: dvr::tables::Dest,
) -> String {
    use dvr::tables::Dest;
    match d {
        Dest::Local(p) => match ports.ports.get(p as usize) {
            Some(i) => format!("local interface {}", i.name),
            None => format!("local interface {p}"),
        },
        Dest::Remote(h) => c
            .hosts()
            .get(h as usize)
            .map_or("?".into(), |h| format!("host {} (VTEP {})", h.name, h.vtep)),
        Dest::Router { router, iface } => {
            let name = c
                .router_names()
                .get(router as usize)
                .cloned()
                .unwrap_or_else(|| router.to_string());
            match snap
                .routers
                .get(router as usize)
                .and_then(|t| t.interfaces.get(iface as usize))
            {
                Some(i) => format!("router {name} (subnet {})", i.subnet),
                None => format!("router {name}"),
            }
        }
        Dest::Nowhere => "unbound".into(),
    }
}

pub struct Reporter {
    format: StatsFormat,
    /// The last report's time and each interface's counters by index.
    last: Option<(Instant, std::collections::HashMap<u16, PortSnapshot>)>,
    /// Standard output's reader is gone: no more counter lines.
    closed: bool,
}

impl Reporter {
    pub fn new(format: StatsFormat) -> Self {
        Reporter {
            format,
            last: None,
            closed: false,
        }
    }

    /// Prints one counter report on standard output. When its reader is gone
    /// (`dvr-pmd | head -3`, a log collector that stopped), the daemon is not
    /// ended with it, as a short command would be (`dvr::cli`): it says so once
    /// on standard error and goes on forwarding without counter lines until
    /// SIGINT / SIGTERM; `dvr-ctl show stats` still reads the counters. SIGPIPE
    /// stays ignored (as Rust starts a program), so no write to the closed pipe,
    /// ours or DPDK's log lines, ends the process. Other write errors (a full
    /// disk) drop that report; the next one is tried.
    pub fn print(&mut self, view: &View, is_final: bool) {
        if self.closed {
            return;
        }
        let now = Instant::now();
        let ws = view.snapshot();
        let t = total(&ws, 0);
        let rows = view.port_rows();
        // The whole report in one write, whose error is seen.
        let mut out = Vec::new();
        match self.format {
            StatsFormat::Json => {
                let _ = serde_json::to_writer(&mut out, &view.counters(is_final));
                let _ = writeln!(out);
            }
            StatsFormat::Text => {
                let (dt, prev) = match &self.last {
                    Some((at, s)) => ((now - *at).as_secs_f64(), Some(s)),
                    None => ((now - view.started).as_secs_f64(), None),
                };
                let rate = |cur: u64, old: Option<u64>| {
                    (cur - old.unwrap_or(0)) as f64 / dt.max(1e-9) / 1e6
                };
                let _ = writeln!(
                    out,
                    "{} [{}] t={:.1}s",
                    if is_final { "final" } else { "stats" },
                    view.node,
                    (now - view.started).as_secs_f64()
                );
                let _ = writeln!(
                    out,
                    "  {:<12} {:>14} {:>9} {:>14} {:>9}",
                    "port", "rx-packets", "rx-Mpps", "tx-packets", "tx-Mpps"
                );
                for (i, name, c, _) in &rows {
                    let old = prev.and_then(|s| s.get(i));
                    let _ = writeln!(
                        out,
                        "  {:<12} {:>14} {:>9.2} {:>14} {:>9.2}",
                        name,
                        c.rx_packets,
                        rate(c.rx_packets, old.map(|o| o.rx_packets)),
                        c.tx_packets,
                        rate(c.tx_packets, old.map(|o| o.tx_packets)),
                    );
                }
                for (i, w) in ws.iter().enumerate() {
                    let split = w.busy_split().map_or(String::new(), |s| format!(" ({s})"));
                    let _ = writeln!(
                        out,
                        "  worker {i} (core {}): {} packets, {:.1} cycles/packet busy{split}, {:.0}% of cycles busy, {:.0}% polls busy",
                        view.cores[i],
                        w.packets,
                        w.busy_cycles_per_packet(),
                        100.0 * w.busy_share(),
                        if w.polls == 0 { 0.0 } else { 100.0 * w.busy_polls as f64 / w.polls as f64 }
                    );
                }
                let drops: Vec<String> = DropReason::ALL
                    .iter()
                    .filter(|r| t.drops[**r as usize] > 0)
                    .map(|r| format!("{}={}", r.name(), t.drops[*r as usize]))
                    .collect();
                let _ = writeln!(
                    out,
                    "  drops: {}",
                    if drops.is_empty() {
                        "none".to_string()
                    } else {
                        drops.join(" ")
                    }
                );
                if let Some(q) = &view.exchange.metadata {
                    let m = q.stats.snapshot();
                    let _ = writeln!(
                        out,
                        "  metadata: {} connections ({} refused), {} answered, {} 502, {} 504, {} bad requests, {} at the server",
                        m.connections,
                        m.refused,
                        m.answered,
                        m.bad_gateway,
                        m.gateway_timeout,
                        m.bad_request,
                        m.in_flight
                    );
                }
            }
        }
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = stdout.write_all(&out).and_then(|()| stdout.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                self.closed = true;
                tracing::warn!(
                    "standard output closed: no more counter lines; forwarding goes on \
                     (dvr-ctl show stats reads the counters)"
                );
            }
        }
        self.last = Some((now, rows.into_iter().map(|(i, _, c, _)| (i, c)).collect()));
    }
}
