//! The daemon's answers to `status`, `stats`, `tables` and `trace`, as typed
//! structs: dvr-pmd builds them, dvr-ctl reads them back into the same types
//! and renders them. Their serde form is the `result` of the response
//! (`docs/PROTOCOL.md`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::AgentMode;
use crate::mac::MacAddr;
use crate::model::Applied;

/// `apply`: the transaction committed, one entry per change, how long until
/// the workers had its tables and until it was durable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Committed<'a> {
    pub generation: u64,
    pub applied: Cow<'a, [Applied]>,
    pub publish_us: u64,
    pub durable_us: u64,
}

/// `status`: who the node is and what it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub agent_mode: AgentMode,
    /// Seconds since the node started forwarding.
    pub uptime_s: f64,
    /// The worker cores.
    pub workers: Vec<usize>,
    pub ports: Vec<PortStatus>,
    /// The model's generation, and that of the tables the workers use now.
    pub generation: u64,
    pub published_generation: u64,
    /// The protocol version the daemon speaks.
    pub protocol: u32,
}

/// One dataplane port in [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortStatus {
    pub name: String,
    pub id: u16,
    pub mac: MacAddr,
    pub link_up: bool,
}

/// `stats`: the counters, as the `--stats-format json` line prints them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub node: String,
    /// Seconds since the node started forwarding.
    pub t: f64,
    /// The last line, printed after the workers stopped: the exact totals.
    #[serde(rename = "final")]
    pub is_final: bool,
    pub tsc_hz: u64,
    pub ports: Vec<PortStats>,
    /// Drops by reason name (`dvr::stats::DropReason::name`), every reason.
    pub drops: BTreeMap<String, u64>,
    pub workers: Vec<WorkerStats>,
    /// The metadata proxy's counters, when it runs (`[metadata]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataCounters>,
}

/// The metadata proxy's counters in [`Stats`] (`dvr::punt::MetadataStats`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetadataCounters {
    /// VM connections accepted, and refused (over `max_connections` or
    /// `max_networks`).
    pub connections: u64,
    pub refused: u64,
    /// Requests sent to the server, answers of the server relayed.
    pub requests: u64,
    pub answered: u64,
    /// The proxy's own answers: 502 (server refused, unreachable, a bad or
    /// too large answer), 504 (no answer in time), 4xx (a request it could
    /// not read).
    pub bad_gateway: u64,
    pub gateway_timeout: u64,
    pub bad_request: u64,
    /// Segments for the VMs the workers' queue had no room for.
    pub to_vms_full: u64,
    /// Requests at the server now.
    pub in_flight: u64,
}

/// One port's counters in [`Stats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortStats {
    pub name: String,
    /// Packets and bits per second over the last second (absent in the
    /// first second, or for an interface added since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rates: Option<PortRates>,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// What the driver counted: packets it could not receive for want of buffers
    /// or room, and its own errors.
    pub imissed: u64,
    pub ierrors: u64,
    pub rx_nombuf: u64,
    pub oerrors: u64,
}

/// An interface's rates in [`PortStats`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PortRates {
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub rx_bps: f64,
    pub tx_bps: f64,
}

/// One worker's counters in [`Stats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub worker: usize,
    pub core: usize,
    pub packets: u64,
    pub polls: u64,
    pub busy_polls: u64,
    pub poll_cycles: u64,
    pub cycles_per_packet: f64,
    /// The polls timed in parts (`dvr::stats::WorkerCounters`), and
    /// `cycles_per_packet` divided in their shares (absent before one).
    pub sampled_packets: u64,
    pub sampled_cycles: u64,
    pub sampled_rx_cycles: u64,
    pub sampled_tx_cycles: u64,
    pub cycles_per_packet_split: Option<CycleSplit>,
    /// Cycles per packet in the polls that got packets, and the share of
    /// all cycles they make (`dvr::stats::WorkerSnapshot::busy_share`): at
    /// low load `cycles_per_packet` counts the idle polls too.
    #[serde(default)]
    pub busy_cycles_per_packet: f64,
    #[serde(default)]
    pub busy_share: f64,
    /// Sessions in the worker's SNAT table (expired ones not yet freed
    /// included), and sessions it created since it started.
    pub nat_sessions: u64,
    pub nat_sessions_created: u64,
    /// Frames that took the flow cache, and flows cached (see `dvr::fastpath::flow`).
    pub flow_hits: u64,
    pub flow_inserts: u64,
    /// Frames from the underlay the decap way and the SNAT way decided
    /// (see `dvr::stats::WorkerCounters`).
    pub decap_way: u64,
    pub snat_way: u64,
    /// Frames handed to the worker owning their SNAT session, and taken
    /// from the other workers (see `dvr::worker::handoff`).
    #[serde(default)]
    pub handoff_out: u64,
    #[serde(default)]
    pub handoff_in: u64,
    /// The RX queues it polls, `interface:qN` (as OVS's `pmd-rxq-show`).
    #[serde(default)]
    pub rx_queues: Vec<String>,
}

/// Cycles per packet in the drivers' receive calls, in dvr's own work, and in
/// the drivers' transmit calls (`dvr::stats::CycleSplit`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CycleSplit {
    pub rx: f64,
    pub work: f64,
    pub tx: f64,
}

impl From<crate::stats::CycleSplit> for CycleSplit {
    fn from(s: crate::stats::CycleSplit) -> Self {
        CycleSplit {
            rx: s.rx,
            work: s.work,
            tx: s.tx,
        }
    }
}

/// The published tables `tables` shows (its `what`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    Fib,
    Neighbors,
    Fdb,
    Nat,
    Sessions,
}

impl TableKind {
    pub const ALL: [TableKind; 5] = [
        TableKind::Fib,
        TableKind::Neighbors,
        TableKind::Fdb,
        TableKind::Nat,
        TableKind::Sessions,
    ];

    /// Its name in requests.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Fib => "fib",
            TableKind::Neighbors => "neighbors",
            TableKind::Fdb => "fdb",
            TableKind::Nat => "nat",
            TableKind::Sessions => "sessions",
        }
    }

    pub fn from_name(s: &str) -> Option<TableKind> {
        TableKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// `tables`: the entries of one kind of published table, of the tables of
/// `generation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table<E> {
    pub generation: u64,
    pub entries: Vec<E>,
}

/// The answer to `tables`, by its `what`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TablesAnswer {
    Fib(Table<FibEntry>),
    Neighbors(Table<NeighborEntry>),
    Fdb(Table<FdbEntry>),
    Nat(Table<NatEntry>),
    Sessions(Sessions),
}

/// A route of a router's FIB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FibEntry {
    pub router: String,
    pub prefix: String,
    pub next_hop: NextHop,
    /// A connected route's subnet (the router's interface `iface` on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
}

/// Where a route leads (`dvr::fib::NextHop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum NextHop {
    /// The destination is on the subnet of the router's interface `iface`.
    Connected { iface: u16 },
    /// Forward to `via`, a neighbour on a connected subnet.
    Via { via: IpAddr },
}

impl From<crate::fib::NextHop> for NextHop {
    fn from(nh: crate::fib::NextHop) -> Self {
        match nh {
            crate::fib::NextHop::Connected { iface } => NextHop::Connected { iface },
            crate::fib::NextHop::Via { via } => NextHop::Via { via },
        }
    }
}

/// A neighbour of a router: an address of a port on one of its subnets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighborEntry {
    pub router: String,
    pub ip: String,
    pub mac: String,
    pub port: String,
    /// Where it lives, for people (`local port 0`, `host cn2 (VTEP ...)`).
    pub location: String,
}

/// A MAC of a network's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdbEntry {
    pub network: String,
    pub mac: String,
    pub location: String,
    /// On a port of this node: which.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub local: Option<FdbLocal>,
}

/// A MAC behind a dataplane port of this node. Both keys are there (null
/// when unknown), so an entry without them reads as not local.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdbLocal {
    /// The dataplane port (a `[[ports]]` name).
    #[serde(deserialize_with = "present")]
    pub dataplane_port: Option<String>,
    /// The model port served on it.
    #[serde(deserialize_with = "present")]
    pub port: Option<String>,
}

/// A key that must be there, null or not.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::deserialize(d)
}

/// A translation of a router: its SNAT or a floating IP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NatEntry {
    pub router: String,
    #[serde(rename = "type")]
    pub kind: NatKind,
    pub external: String,
    pub internal: String,
    /// A floating IP's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Where it is done, for people.
    #[serde(rename = "where")]
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatKind {
    Snat,
    FloatingIp,
}

impl NatKind {
    pub fn name(self) -> &'static str {
        match self {
            NatKind::Snat => "snat",
            NatKind::FloatingIp => "floating_ip",
        }
    }
}

/// `tables` of `sessions`: the workers' SNAT sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sessions {
    pub generation: u64,
    /// The sessions listed: at most `limit_per_worker` of each worker.
    pub entries: Vec<SessionEntry>,
    /// Every matching session of the workers that answered.
    pub total: u64,
    pub limit_per_worker: usize,
    pub workers: Vec<SessionWorker>,
    /// The workers that did not answer in time.
    pub unanswered: Vec<WorkerId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEntry {
    pub router: String,
    /// `tcp`, `udp` or `icmp`.
    pub protocol: String,
    pub inside: String,
    pub outside: String,
    pub remote: String,
    pub state: String,
    pub idle_s: f64,
    pub age_s: f64,
    pub worker: usize,
}

/// What one worker answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionWorker {
    pub worker: usize,
    pub core: usize,
    pub sessions: u64,
    pub listed: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerId {
    pub worker: usize,
    pub core: usize,
}

/// `trace`: each stage's decision on the described frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub stages: Vec<TraceStage>,
}

/// `capture start` / `capture stop`: the capture file and how far it got.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureInfo {
    /// The file being written (or last written), its interface and
    /// directions.
    pub file: Option<String>,
    pub interface: Option<String>,
    pub direction: Option<String>,
    /// Whether frames are still being taken.
    pub running: bool,
    /// Frames written to the file, lost on a full queue, still to take.
    pub written: u64,
    pub lost: u64,
    pub remaining: u32,
}

/// `show trace`: the frames a live trace marked (`trace add`), oldest
/// first, and what is still armed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveTrace {
    /// The interface being traced and the frames it will still mark.
    pub armed: Option<String>,
    pub remaining: u32,
    pub frames: Vec<LiveFrame>,
}

/// One frame of a [`LiveTrace`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveFrame {
    /// Its number among the frames traced since the daemon started.
    pub seq: u64,
    pub worker: u16,
    pub interface: String,
    pub length: u32,
    /// The frame's first bytes (at most 256), hex.
    pub head: String,
    /// Each stage's decision, then the outcome (`output`: as in [`Trace`]).
    pub stages: Vec<TraceStage>,
    /// Decisions that did not fit in the worker's buffer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost_notes: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// One line of a [`Trace`]: the stage and what it says (the fields it has).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceStage {
    pub stage: String,
    /// `ingress`: the port, its index, the frame's length and the tables'
    /// generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Every other stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// `output`: where the frame goes, why (an answer's or a drop's reason),
    /// the frame sent (hex), the copies of a flood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies_to: Option<Vec<String>>,
}

impl TraceStage {
    /// Its fields other than `stage`, in name order, those it has.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let num = |n: Option<u64>| n.map(|n| n.to_string());
        [
            ("copies_to", self.copies_to.as_ref().map(|c| c.join(", "))),
            ("decision", self.decision.clone()),
            ("frame", self.frame.clone()),
            ("frame_len", num(self.frame_len.map(|n| n as u64))),
            ("generation", num(self.generation)),
            ("index", num(self.index.map(u64::from))),
            ("out_port", self.out_port.clone()),
            ("port", self.port.clone()),
            ("reason", self.reason.clone()),
            ("why", self.why.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An answer's serde form, and the answer read back from it.
    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        v: &T,
    ) -> serde_json::Value {
        let j = serde_json::to_value(v).unwrap();
        let back: T = serde_json::from_value(j.clone()).unwrap();
        assert_eq!(&back, v);
        j
    }

    #[test]
    fn fdb_entries_have_port_keys_only_when_local() {
        let mut e = FdbEntry {
            network: "n1".into(),
            mac: "fa:16:3e:00:00:05".into(),
            location: "router 0 interface 0".into(),
            local: None,
        };
        assert_eq!(
            round_trip(&e),
            json!({"network": "n1", "mac": "fa:16:3e:00:00:05", "location": "router 0 interface 0"})
        );
        e.location = "local port 0".into();
        e.local = Some(FdbLocal {
            dataplane_port: Some("vm-a".into()),
            port: None,
        });
        assert_eq!(
            round_trip(&e),
            json!({"network": "n1", "mac": "fa:16:3e:00:00:05", "location": "local port 0",
                "dataplane_port": "vm-a", "port": null})
        );
    }

    #[test]
    fn nat_entries_and_next_hops_keep_their_keys() {
        let snat = NatEntry {
            router: "r1".into(),
            kind: NatKind::Snat,
            external: "203.0.113.2".into(),
            internal: "all subnets".into(),
            port: None,
            at: "ctl (this node)".into(),
        };
        assert_eq!(
            round_trip(&snat),
            json!({"router": "r1", "type": "snat", "external": "203.0.113.2",
                "internal": "all subnets", "where": "ctl (this node)"})
        );
        let fib = FibEntry {
            router: "r1".into(),
            prefix: "10.0.1.0/24".into(),
            next_hop: NextHop::Connected { iface: 0 },
            subnet: None,
        };
        assert_eq!(
            round_trip(&fib),
            json!({"router": "r1", "prefix": "10.0.1.0/24",
                "next_hop": {"type": "connected", "iface": 0}})
        );
    }

    #[test]
    fn trace_stages_list_the_fields_they_have_in_name_order() {
        let st = TraceStage {
            stage: "ingress".into(),
            port: Some("vm-a".into()),
            index: Some(0),
            frame_len: Some(60),
            generation: Some(22),
            ..Default::default()
        };
        assert_eq!(
            round_trip(&st),
            json!({"stage": "ingress", "port": "vm-a", "index": 0, "frame_len": 60, "generation": 22})
        );
        let names: Vec<&str> = st.fields().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["frame_len", "generation", "index", "port"]);
        let flood = TraceStage {
            stage: "output".into(),
            decision: Some("flood".into()),
            copies_to: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(
            flood.fields(),
            [("copies_to", String::new()), ("decision", "flood".into())]
        );
    }
}
