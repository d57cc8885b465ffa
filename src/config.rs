//! The node configuration: a TOML file (`configs/*.toml`), read with serde into
//! typed structs that reject unknown keys, then checked as a whole. Every error names
//! the key it is about.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::mac::MacAddr;

/// Why a configuration was rejected. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

/// Neutron's L3 agent modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMode {
    Dvr,
    DvrSnat,
    DvrNoExternal,
    Legacy,
}

impl AgentMode {
    /// The name in files, requests and messages: `dvr`, `dvr_snat`,
    /// `dvr_no_external`, `legacy`.
    pub fn name(self) -> &'static str {
        match self {
            AgentMode::Dvr => "dvr",
            AgentMode::DvrSnat => "dvr_snat",
            AgentMode::DvrNoExternal => "dvr_no_external",
            AgentMode::Legacy => "legacy",
        }
    }
}

/// What a port is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortRole {
    /// A VM's port (vhost-user in production).
    Vm,
    /// The NIC that carries the overlay tunnels.
    Underlay,
    /// The NIC on the external (provider) network.
    External,
}

impl PortRole {
    pub fn name(self) -> &'static str {
        match self {
            PortRole::Vm => "vm",
            PortRole::Underlay => "underlay",
            PortRole::External => "external",
        }
    }
}

/// How workers poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PollMode {
    /// Spin on the queues: lowest latency, one whole core per worker.
    #[default]
    Busy,
    /// Back off when idle (pause, then sleep in growing steps), wake on traffic.
    Adaptive,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cores {
    /// The EAL main lcore: the control thread runs here.
    pub main: usize,
    /// One worker per entry, pinned to that core (cores.main too, with a
    /// warning: the control thread then shares the worker's core).
    pub workers: Vec<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dataplane {
    pub burst: usize,
    pub poll_mode: PollMode,
    pub mbufs: u32,
    pub mbuf_cache: u32,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Without hugepages and without NICs, packet buffers in memory of
    /// their own on transparent huge pages rather than EAL's 4 KiB pages.
    pub thp_mbufs: bool,
}

impl Default for Dataplane {
    fn default() -> Self {
        Dataplane {
            burst: 32,
            poll_mode: PollMode::Busy,
            mbufs: 16383,
            mbuf_cache: 256,
            rx_desc: 1024,
            tx_desc: 1024,
            thp_mbufs: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Eal {
    /// Use hugepages (otherwise `--no-huge`, which runs anywhere).
    pub hugepages: bool,
    /// Memory for EAL in MiB (`-m`).
    pub memory_mb: u32,
    /// `--file-prefix`; default `dvr-<node>`.
    pub file_prefix: Option<String>,
    /// `--no-shconf`: no shared runtime files (several processes, same prefix).
    pub no_shconf: bool,
    /// EAL log level (`--log-level`).
    pub log_level: String,
    /// Further EAL arguments, passed as they are.
    pub extra_args: Vec<String>,
}

impl Default for Eal {
    fn default() -> Self {
        Eal {
            hugepages: false,
            memory_mb: 1024,
            file_prefix: None,
            no_shconf: false,
            log_level: "notice".into(),
            extra_args: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stats {
    /// How often the daemon prints its counters; 0 = never.
    pub interval_ms: u64,
    /// `text` (a table for people) or `json` (one object per line, for scripts).
    pub format: StatsFormat,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            interval_ms: 1000,
            format: StatsFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsFormat {
    Text,
    Json,
}

/// Frames the daemon writes into a capture for a pcap port to replay: a stand-in
/// for a traffic generator, so the embedded default runs with no outside help.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    /// Distinct UDP flows (source ports) in the capture.
    #[serde(default = "default_flows")]
    pub flows: u16,
    /// Frame length without the FCS (60 is the Ethernet minimum).
    #[serde(default = "default_frame_len")]
    pub frame_len: u16,
}

fn default_flows() -> u16 {
    64
}
fn default_frame_len() -> u16 {
    60
}

/// A port as written in the file: every kind's keys, checked against its kind later.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: String,
    role: PortRole,
    kind: String,
    worker: Option<usize>,
    socket: Option<PathBuf>,
    client: Option<bool>,
    address: Option<String>,
    iface: Option<String>,
    rx_pcap: Option<PathBuf>,
    tx_pcap: Option<PathBuf>,
    infinite_rx: Option<bool>,
    generate: Option<Generate>,
    peer: Option<String>,
}

/// The device behind a port.
#[derive(Debug, Clone, PartialEq)]
pub enum PortKind {
    /// vhost-user server socket (client mode when `client`).
    VhostUser { socket: PathBuf, client: bool },
    /// A PCI NIC bound to a DPDK-compatible driver.
    Pci { address: String },
    /// A Linux interface read through AF_PACKET.
    AfPacket { iface: String },
    /// A tap interface created by the daemon.
    Tap { iface: String },
    /// A capture replayed (`rx_pcap`, or frames from `generate`) and/or written.
    Pcap {
        rx: Option<PcapRx>,
        tx: Option<PathBuf>,
        infinite_rx: bool,
    },
    /// One end of an in-memory pair: what this port sends, `peer` receives.
    Ring { peer: String },
    /// Discards what it is sent, receives nothing.
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PcapRx {
    File(PathBuf),
    Generate(Generate),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortConfig {
    pub name: String,
    pub role: PortRole,
    pub kind: PortKind,
    /// Index into `cores.workers` of the worker that polls this port.
    pub worker: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FdbEntry {
    pub mac: MacAddr,
    pub port: String,
}

/// The control socket and the saved model.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    /// The UNIX socket `dvr-ctl` talks to; default `<run_dir>/dvr.sock`.
    pub socket: Option<PathBuf>,
    /// A group allowed to use the socket (mode 0660); without it, 0600 (root only).
    pub group: Option<String>,
    /// Where the model is saved after each committed change and loaded at start;
    /// default `/var/lib/dvr/<node>/model.json`.
    pub state_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct L2 {
    /// Static MAC table: frames to `mac` leave through `port`.
    pub fdb: Vec<FdbEntry>,
}

/// The underlay: static neighbours (VTEP → MAC), for underlays where ARP is
/// not wanted (as `ip neigh add ... nud permanent`); other VTEPs are resolved
/// by ARP on the underlay port.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Underlay {
    pub neighbors: Vec<UnderlayNeighbor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnderlayNeighbor {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// The SNAT of a `dvr_snat` node: session table size and translated ports
/// (per worker: each worker has its own table of `max_sessions` and its own
/// share of the range).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Nat {
    /// Sessions per worker (the table never grows).
    pub max_sessions: usize,
    /// The ports (and ICMP ids) translated to, "LO-HI".
    pub port_range: String,
    /// Idle timeouts in seconds, to the millisecond: `300`, or `0.25` for
    /// 250 ms (short timeouts are for tests and benchmarks of session churn).
    pub tcp_established_timeout: f64,
    pub tcp_transitory_timeout: f64,
    pub udp_timeout: f64,
    pub icmp_timeout: f64,
}

/// The longest timeout: 2^32 - 1 ms (about 49 days).
const TIMEOUT_MAX_MS: u64 = u32::MAX as u64;

/// A timeout in seconds as whole milliseconds, if it is one: at least 1 ms,
/// at most [`TIMEOUT_MAX_MS`], no finer than a millisecond.
fn timeout_ms(secs: f64) -> Option<u64> {
    let ms = secs * 1000.0;
    let whole = ms.round();
    (ms.is_finite() && (ms - whole).abs() < 1e-6 && whole >= 1.0 && whole <= TIMEOUT_MAX_MS as f64)
        .then_some(whole as u64)
}

impl Default for Nat {
    fn default() -> Self {
        let t = crate::nat::Timeouts::default();
        Nat {
            max_sessions: 1 << 16,
            port_range: "1024-65535".into(),
            tcp_established_timeout: t.tcp_established_ms as f64 / 1000.0,
            tcp_transitory_timeout: t.tcp_transitory_ms as f64 / 1000.0,
            udp_timeout: t.udp_ms as f64 / 1000.0,
            icmp_timeout: t.icmp_ms as f64 / 1000.0,
        }
    }
}

impl Nat {
    /// The port range (checked by [`Config::load`]).
    pub fn ports(&self) -> std::ops::RangeInclusive<u16> {
        parse_range(&self.port_range).unwrap_or(crate::nat::DEFAULT_PORTS)
    }

    /// The table configuration of one worker's NAT.
    pub fn table(&self) -> crate::nat::NatConfig {
        crate::nat::NatConfig {
            max_sessions: self.max_sessions,
            timeouts: crate::nat::Timeouts {
                tcp_established_ms: timeout_ms(self.tcp_established_timeout).unwrap_or(1),
                tcp_transitory_ms: timeout_ms(self.tcp_transitory_timeout).unwrap_or(1),
                udp_ms: timeout_ms(self.udp_timeout).unwrap_or(1),
                icmp_ms: timeout_ms(self.icmp_timeout).unwrap_or(1),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

fn parse_range(s: &str) -> Option<std::ops::RangeInclusive<u16>> {
    let (lo, hi) = s.split_once('-')?;
    let (lo, hi): (u16, u16) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (lo >= 1 && lo <= hi).then_some(lo..=hi)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: String,
    agent_mode: AgentMode,
    vtep: Option<Ipv4Addr>,
    dvr_mac: Option<MacAddr>,
    run_dir: Option<PathBuf>,
    cores: Cores,
    #[serde(default)]
    dataplane: Dataplane,
    #[serde(default)]
    eal: Eal,
    #[serde(default)]
    stats: Stats,
    #[serde(default)]
    ports: Vec<RawPort>,
    #[serde(default)]
    l2: L2,
    #[serde(default)]
    underlay: Underlay,
    #[serde(default)]
    nat: Nat,
    #[serde(default)]
    control: Control,
    metadata: Option<Metadata>,
    metrics: Option<Metrics>,
}

/// A checked node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: String,
    pub agent_mode: AgentMode,
    pub vtep: Option<Ipv4Addr>,
    pub dvr_mac: Option<MacAddr>,
    /// Where the daemon keeps its runtime files (generated captures, sockets).
    pub run_dir: PathBuf,
    pub cores: Cores,
    pub dataplane: Dataplane,
    pub eal: Eal,
    pub stats: Stats,
    pub ports: Vec<PortConfig>,
    pub l2: L2,
    pub underlay: Underlay,
    pub nat: Nat,
    /// The control socket (always set after checking).
    pub control_socket: PathBuf,
    pub control_group: Option<String>,
    /// Where the model is saved (always set after checking).
    pub state_file: PathBuf,
    /// The metadata proxy (`[metadata]`): None, 169.254.169.254 is not
    /// intercepted (routed as any address).
    pub metadata: Option<Metadata>,
    /// The Prometheus endpoint (`[metrics]`): None, none.
    pub metrics: Option<Metrics>,
}

/// `[metrics]`: the node's counters in Prometheus's text format, served
/// over HTTP at `http://LISTEN/metrics` for a Prometheus server to scrape.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// The address and port to listen on, e.g. `127.0.0.1:9417` (or the
    /// management network's address).
    pub listen: std::net::SocketAddr,
}

/// `[metadata]`: the metadata proxy on every distributed router. A VM's TCP
/// connection to 169.254.169.254:80 is terminated on its own host and each
/// request is sent on to `server` (Nova's metadata API) with
/// `X-Forwarded-For` (the VM's fixed IP) and `X-Neutron-Router-ID`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// `http://HOST:PORT` (port 80 if none), e.g. `http://10.0.0.5:8775`.
    pub server: String,
    /// Seconds to connect to the server before the VM gets a 502
    /// (refused) or 504 (no answer).
    #[serde(default = "Metadata::default_connect_timeout")]
    pub connect_timeout: f64,
    /// Seconds for the whole answer before the VM gets a 504.
    #[serde(default = "Metadata::default_timeout")]
    pub timeout: f64,
    /// VM connections open at once (over it a new one is refused).
    #[serde(default = "Metadata::default_max_connections")]
    pub max_connections: usize,
    /// Networks with a TCP/IP stack of the proxy at once.
    #[serde(default = "Metadata::default_max_networks")]
    pub max_networks: usize,
}

impl Metadata {
    fn default_connect_timeout() -> f64 {
        2.0
    }
    fn default_timeout() -> f64 {
        10.0
    }
    fn default_max_connections() -> usize {
        256
    }
    fn default_max_networks() -> usize {
        64
    }

    /// The server's host and port (checked by [`Config::load`]).
    pub fn host_port(&self) -> (String, u16) {
        parse_http_url(&self.server).unwrap_or_default()
    }

    /// The timeouts in milliseconds (checked by [`Config::load`]).
    pub fn connect_timeout_ms(&self) -> u64 {
        timeout_ms(self.connect_timeout).unwrap_or(2000)
    }
    pub fn timeout_ms(&self) -> u64 {
        timeout_ms(self.timeout).unwrap_or(10_000)
    }
}

/// `http://HOST[:PORT][/]`: the host (a name, an IPv4 address or a
/// bracketed IPv6 address) and the port (80 if none).
fn parse_http_url(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("http://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (h.to_owned(), 80),
            p => (h.to_owned(), p.strip_prefix(':')?.parse().ok()?),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (rest.to_owned(), 80),
        }
    };
    (!host.is_empty() && port != 0).then_some((host, port))
}

/// Keys that each port kind accepts besides name, role, kind and worker.
const KIND_KEYS: &[(&str, &[&str])] = &[
    ("vhost-user", &["socket", "client"]),
    ("pci", &["address"]),
    ("af_packet", &["iface"]),
    ("tap", &["iface"]),
    ("pcap", &["rx_pcap", "tx_pcap", "infinite_rx", "generate"]),
    ("ring", &["peer"]),
    ("null", &[]),
];

pub const MAX_BURST: usize = crate::sys::MAX_BURST;
/// Ports of one node (the workers keep a 64-bit mask of them).
pub const MAX_PORTS: usize = 64;

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Self::parse(&text, &path.display().to_string())?;
        // Relative paths in a file are relative to the file.
        if let Some(dir) = path.parent() {
            cfg.resolve_paths(dir);
        }
        Ok(cfg)
    }

    /// Parses and checks configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: describe_toml_error(&e, text),
        })?;
        Self::check(raw, origin)
    }

    fn check(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
        let ports = check_sections(&raw).map_err(|b| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: b.key,
            message: b.message,
        })?;
        let node = raw.node;
        let run_dir = raw
            .run_dir
            .unwrap_or_else(|| PathBuf::from(format!("/run/dvr/{node}")));
        Ok(Config {
            control_socket: raw
                .control
                .socket
                .unwrap_or_else(|| run_dir.join("dvr.sock")),
            control_group: raw.control.group,
            state_file: raw
                .control
                .state_file
                .unwrap_or_else(|| PathBuf::from(format!("/var/lib/dvr/{node}/model.json"))),
            run_dir,
            node,
            agent_mode: raw.agent_mode,
            vtep: raw.vtep,
            dvr_mac: raw.dvr_mac,
            cores: raw.cores,
            dataplane: raw.dataplane,
            eal: raw.eal,
            stats: raw.stats,
            ports,
            l2: raw.l2,
            underlay: raw.underlay,
            nat: raw.nat,
            metadata: raw.metadata,
            metrics: raw.metrics,
        })
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        fix(&mut self.run_dir);
        fix(&mut self.control_socket);
        fix(&mut self.state_file);
        for port in &mut self.ports {
            match &mut port.kind {
                PortKind::VhostUser { socket, .. } => fix(socket),
                PortKind::Pcap { rx, tx, .. } => {
                    if let Some(PcapRx::File(f)) = rx {
                        fix(f);
                    }
                    if let Some(t) = tx {
                        fix(t);
                    }
                }
                _ => {}
            }
        }
    }

    /// The EAL file prefix of this node.
    pub fn file_prefix(&self) -> String {
        self.eal
            .file_prefix
            .clone()
            .unwrap_or_else(|| format!("dvr-{}", self.node))
    }

    /// EAL arguments (without the program name) for this node.
    pub fn eal_args(&self) -> Vec<String> {
        let mut a = vec![
            "-l".to_string(),
            self.cores.main.to_string(),
            "--file-prefix".into(),
            self.file_prefix(),
            "-m".into(),
            self.eal.memory_mb.to_string(),
            "--log-level".into(),
            format!("lib.eal:{}", self.eal.log_level),
            "--log-level".into(),
            format!("pmd.*:{}", self.eal.log_level),
        ];
        if !self.eal.hugepages {
            a.push("--no-huge".into());
        }
        if self.eal.no_shconf {
            a.push("--no-shconf".into());
        }
        let pci: Vec<&str> = self
            .ports
            .iter()
            .filter_map(|p| match &p.kind {
                PortKind::Pci { address } => Some(address.as_str()),
                _ => None,
            })
            .collect();
        if pci.is_empty() {
            a.push("--no-pci".into());
        } else {
            for addr in pci {
                a.push("-a".into());
                a.push(addr.to_owned());
            }
        }
        a.extend(self.eal.extra_args.iter().cloned());
        a
    }
}

/// A key of the file and what is wrong with it (a [`ConfigError::Invalid`]
/// without its origin).
struct Bad {
    key: String,
    message: String,
}

fn bad(key: &str, message: String) -> Bad {
    Bad {
        key: key.to_owned(),
        message,
    }
}

/// Every section of a parsed file, in the file's order (the first error is
/// the one reported); the ports checked.
fn check_sections(raw: &RawConfig) -> Result<Vec<PortConfig>, Bad> {
    check_node(raw)?;
    check_cores(&raw.cores)?;
    check_dataplane(&raw.dataplane)?;
    check_eal(&raw.eal)?;
    let ports = check_ports(&raw.ports, raw.cores.workers.len())?;
    check_l2(&raw.l2, &ports)?;
    check_underlay(&raw.underlay)?;
    check_nat(&raw.nat)?;
    check_control(&raw.control)?;
    if let Some(m) = &raw.metadata {
        check_metadata(m)?;
    }
    if raw.metrics.as_ref().is_some_and(|m| m.listen.port() == 0) {
        return Err(bad(
            "metrics.listen",
            "port 0 is not a port a Prometheus server can be told to scrape".into(),
        ));
    }
    Ok(ports)
}

/// `node` and `dvr_mac`.
fn check_node(raw: &RawConfig) -> Result<(), Bad> {
    if raw.node.is_empty()
        || raw.node.len() > 32
        || !raw
            .node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(
            "node",
            format!("{:?}: use 1 to 32 letters, digits, '-' or '_'", raw.node),
        ));
    }
    if let Some(m) = raw.dvr_mac {
        if m.is_multicast() || m.is_zero() {
            return Err(bad("dvr_mac", format!("{m} is not a unicast address")));
        }
    }
    Ok(())
}

/// `[cores]`.
fn check_cores(cores: &Cores) -> Result<(), Bad> {
    if cores.workers.is_empty() {
        return Err(bad(
            "cores.workers",
            "at least one worker core is needed".into(),
        ));
    }
    // A worker may share cores.main (a machine with two cores and two
    // workers): the daemon warns at start; the control thread then runs
    // between the worker's polls.
    let mut seen = HashSet::new();
    for &c in &cores.workers {
        if !seen.insert(c) {
            return Err(bad("cores.workers", format!("core {c} is listed twice")));
        }
    }
    Ok(())
}

/// `[dataplane]`.
fn check_dataplane(dp: &Dataplane) -> Result<(), Bad> {
    if dp.burst == 0 || dp.burst > MAX_BURST {
        return Err(bad(
            "dataplane.burst",
            format!("{} is out of range 1..={MAX_BURST}", dp.burst),
        ));
    }
    if dp.mbufs < 1024 {
        return Err(bad(
            "dataplane.mbufs",
            format!("{} is too few (at least 1024)", dp.mbufs),
        ));
    }
    if dp.mbuf_cache > 512 || dp.mbuf_cache as u64 * 3 / 2 > dp.mbufs as u64 {
        return Err(bad(
            "dataplane.mbuf_cache",
            format!(
                "{} is out of range (at most 512 and two thirds of mbufs)",
                dp.mbuf_cache
            ),
        ));
    }
    for (key, v) in [
        ("dataplane.rx_desc", dp.rx_desc),
        ("dataplane.tx_desc", dp.tx_desc),
    ] {
        if !(32..=4096).contains(&v) {
            return Err(bad(key, format!("{v} is out of range 32..=4096")));
        }
    }
    Ok(())
}

/// `[eal]`.
fn check_eal(eal: &Eal) -> Result<(), Bad> {
    if eal.memory_mb < 64 {
        return Err(bad(
            "eal.memory_mb",
            format!("{} MiB is too little (at least 64)", eal.memory_mb),
        ));
    }
    if let Some(p) = &eal.file_prefix {
        if p.is_empty() || p.contains('/') {
            return Err(bad(
                "eal.file_prefix",
                format!("{p:?} must be a non-empty name without '/'"),
            ));
        }
    }
    if ![
        "emergency",
        "alert",
        "critical",
        "error",
        "warning",
        "notice",
        "info",
        "debug",
    ]
    .contains(&eal.log_level.as_str())
        && eal.log_level.parse::<u32>().is_err()
    {
        return Err(bad(
            "eal.log_level",
            format!(
                "{:?}: use error, warning, notice, info, debug or a number",
                eal.log_level
            ),
        ));
    }
    Ok(())
}

/// `[[ports]]`: each port, then what ports say of each other (ring peers,
/// vhost-user sockets).
fn check_ports(raw: &[RawPort], workers: usize) -> Result<Vec<PortConfig>, Bad> {
    if raw.len() > MAX_PORTS {
        return Err(bad(
            "ports",
            format!("{} ports; at most {MAX_PORTS} are supported", raw.len()),
        ));
    }
    let mut ports = Vec::with_capacity(raw.len());
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, p) in raw.iter().enumerate() {
        let key = |k: &str| format!("ports[{i}].{k}");
        if p.name.is_empty()
            || p.name.len() > 24
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                &key("name"),
                format!("{:?}: use 1 to 24 letters, digits, '-' or '_'", p.name),
            ));
        }
        if names.insert(&p.name, i).is_some() {
            return Err(bad(
                &key("name"),
                format!("port name {:?} is used twice", p.name),
            ));
        }
        let kind = port_kind(i, p)?;
        let worker = p.worker.unwrap_or(i % workers);
        if worker >= workers {
            return Err(bad(
                &key("worker"),
                format!("worker {worker} does not exist (cores.workers has {workers})"),
            ));
        }
        ports.push(PortConfig {
            name: p.name.clone(),
            role: p.role,
            kind,
            worker,
        });
    }
    // Ring peers must name each other.
    for (i, p) in ports.iter().enumerate() {
        if let PortKind::Ring { peer } = &p.kind {
            let ok = ports.iter().any(|q| {
                q.name == *peer
                    && matches!(&q.kind, PortKind::Ring { peer: back } if *back == p.name)
            });
            if !ok || *peer == p.name {
                return Err(bad(
                    &format!("ports[{i}].peer"),
                    format!(
                        "{peer:?} must be another ring port whose peer is {:?}",
                        p.name
                    ),
                ));
            }
        }
    }
    let mut sockets = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        if let PortKind::VhostUser { socket, .. } = &p.kind {
            if !sockets.insert(socket.clone()) {
                return Err(bad(
                    &format!("ports[{i}].socket"),
                    format!("{} is used by two ports", socket.display()),
                ));
            }
        }
    }
    Ok(ports)
}

/// The device of port `i`: its kind, with the keys that kind takes and only those.
fn port_kind(i: usize, p: &RawPort) -> Result<PortKind, Bad> {
    let key = |k: &str| format!("ports[{i}].{k}");
    let Some((_, allowed)) = KIND_KEYS.iter().find(|(k, _)| *k == p.kind) else {
        let kinds: Vec<_> = KIND_KEYS.iter().map(|(k, _)| *k).collect();
        return Err(bad(
            &key("kind"),
            format!(
                "unknown port kind {:?}; expected one of {}",
                p.kind,
                kinds.join(", ")
            ),
        ));
    };
    for (k, present) in [
        ("socket", p.socket.is_some()),
        ("client", p.client.is_some()),
        ("address", p.address.is_some()),
        ("iface", p.iface.is_some()),
        ("rx_pcap", p.rx_pcap.is_some()),
        ("tx_pcap", p.tx_pcap.is_some()),
        ("infinite_rx", p.infinite_rx.is_some()),
        ("generate", p.generate.is_some()),
        ("peer", p.peer.is_some()),
    ] {
        if present && !allowed.contains(&k) {
            return Err(bad(
                &key(k),
                format!("does not apply to a port of kind {}", p.kind),
            ));
        }
    }
    let need = |k: &str, v: Option<String>| -> Result<String, Bad> {
        match v {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(bad(&key(k), format!("a port of kind {} needs it", p.kind))),
        }
    };
    let kind = match p.kind.as_str() {
        "vhost-user" => PortKind::VhostUser {
            socket: PathBuf::from(need(
                "socket",
                p.socket.as_ref().map(|s| s.display().to_string()),
            )?),
            client: p.client.unwrap_or(false),
        },
        "pci" => {
            let address = need("address", p.address.clone())?;
            if !is_pci_address(&address) {
                return Err(bad(
                    &key("address"),
                    format!("{address:?} is not a PCI address like 0000:01:00.0"),
                ));
            }
            PortKind::Pci { address }
        }
        "af_packet" | "tap" => {
            let iface = need("iface", p.iface.clone())?;
            if iface.len() > 15 || iface.contains(['/', ',', ' ', '=']) {
                return Err(bad(
                    &key("iface"),
                    format!("{iface:?} is not a valid interface name"),
                ));
            }
            if p.kind == "tap" {
                PortKind::Tap { iface }
            } else {
                PortKind::AfPacket { iface }
            }
        }
        "pcap" => pcap_kind(i, p)?,
        "ring" => PortKind::Ring {
            peer: need("peer", p.peer.clone())?,
        },
        _ => PortKind::Null,
    };
    if let PortKind::VhostUser { socket, .. } = &kind {
        if socket.to_string_lossy().contains([',', '=']) {
            return Err(bad(
                &key("socket"),
                format!(
                    "{}: ',' and '=' cannot appear in the path",
                    socket.display()
                ),
            ));
        }
    }
    Ok(kind)
}

/// A pcap port `i`: what it replays (a file or generated frames) and writes.
fn pcap_kind(i: usize, p: &RawPort) -> Result<PortKind, Bad> {
    let key = |k: &str| format!("ports[{i}].{k}");
    let rx = match (&p.rx_pcap, &p.generate) {
        (Some(_), Some(_)) => {
            return Err(bad(
                &key("generate"),
                "give rx_pcap or generate, not both".into(),
            ))
        }
        (Some(f), None) => Some(PcapRx::File(f.clone())),
        (None, Some(g)) => {
            if !(60..=1514).contains(&g.frame_len) {
                return Err(bad(
                    &key("generate.frame_len"),
                    format!("{} is out of range 60..=1514", g.frame_len),
                ));
            }
            if g.flows == 0 {
                return Err(bad(&key("generate.flows"), "must be at least 1".into()));
            }
            Some(PcapRx::Generate(g.clone()))
        }
        (None, None) => None,
    };
    if rx.is_none() && p.tx_pcap.is_none() {
        return Err(bad(
            &key("rx_pcap"),
            "a pcap port needs rx_pcap, generate or tx_pcap".into(),
        ));
    }
    if p.infinite_rx == Some(true) && rx.is_none() {
        return Err(bad(&key("infinite_rx"), "needs rx_pcap or generate".into()));
    }
    for (k, v) in [("rx_pcap", &p.rx_pcap), ("tx_pcap", &p.tx_pcap)] {
        if let Some(v) = v {
            if v.to_string_lossy().contains([',', '=']) {
                return Err(bad(
                    &key(k),
                    format!("{}: ',' and '=' cannot appear in the path", v.display()),
                ));
            }
        }
    }
    Ok(PortKind::Pcap {
        rx,
        tx: p.tx_pcap.clone(),
        infinite_rx: p.infinite_rx.unwrap_or(false),
    })
}

/// `[l2]`: the static MAC table names vm ports.
fn check_l2(l2: &L2, ports: &[PortConfig]) -> Result<(), Bad> {
    let mut macs = HashSet::new();
    for (i, e) in l2.fdb.iter().enumerate() {
        let key = |k: &str| format!("l2.fdb[{i}].{k}");
        if e.mac.is_multicast() || e.mac.is_zero() {
            return Err(bad(
                &key("mac"),
                format!("{} is not a unicast address", e.mac),
            ));
        }
        if !macs.insert(e.mac) {
            return Err(bad(&key("mac"), format!("{} is listed twice", e.mac)));
        }
        match ports.iter().find(|p| p.name == e.port) {
            None => return Err(bad(&key("port"), format!("no port is named {:?}", e.port))),
            Some(p) if p.role != PortRole::Vm => {
                return Err(bad(
                    &key("port"),
                    format!("port {:?} is not a vm port", e.port),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `[underlay]`.
fn check_underlay(underlay: &Underlay) -> Result<(), Bad> {
    let mut ips = HashSet::new();
    for (i, n) in underlay.neighbors.iter().enumerate() {
        let key = |k: &str| format!("underlay.neighbors[{i}].{k}");
        if n.mac.is_multicast() || n.mac.is_zero() {
            return Err(bad(
                &key("mac"),
                format!("{} is not a unicast address", n.mac),
            ));
        }
        if !ips.insert(n.ip) {
            return Err(bad(&key("ip"), format!("{} is listed twice", n.ip)));
        }
    }
    Ok(())
}

/// `[nat]`.
fn check_nat(t: &Nat) -> Result<(), Bad> {
    if parse_range(&t.port_range).is_none() {
        return Err(bad(
            "nat.port_range",
            format!(
                "{:?} is not a port range LO-HI with 1 <= LO <= HI <= 65535",
                t.port_range
            ),
        ));
    }
    if t.max_sessions == 0 || t.max_sessions > 1 << 26 {
        return Err(bad(
            "nat.max_sessions",
            format!("{} is not between 1 and 67108864", t.max_sessions),
        ));
    }
    for (key, v) in [
        ("nat.tcp_established_timeout", t.tcp_established_timeout),
        ("nat.tcp_transitory_timeout", t.tcp_transitory_timeout),
        ("nat.udp_timeout", t.udp_timeout),
        ("nat.icmp_timeout", t.icmp_timeout),
    ] {
        if timeout_ms(v).is_none() {
            return Err(bad(
                key,
                format!(
                    "{v} is not a timeout: seconds from 0.001 to {}, to the millisecond",
                    TIMEOUT_MAX_MS as f64 / 1000.0
                ),
            ));
        }
    }
    Ok(())
}

/// `[metadata]`.
fn check_metadata(m: &Metadata) -> Result<(), Bad> {
    if parse_http_url(&m.server).is_none() {
        return Err(bad(
            "metadata.server",
            format!(
                "{:?} is not http://HOST or http://HOST:PORT (Nova's metadata API, e.g. http://192.0.2.10:8775)",
                m.server
            ),
        ));
    }
    for (key, v) in [
        ("metadata.connect_timeout", m.connect_timeout),
        ("metadata.timeout", m.timeout),
    ] {
        if timeout_ms(v).is_none_or(|ms| ms > 300_000) {
            return Err(bad(
                key,
                format!("{v} is not a timeout: seconds from 0.001 to 300, to the millisecond"),
            ));
        }
    }
    if m.max_connections == 0 || m.max_connections > 65_536 {
        return Err(bad(
            "metadata.max_connections",
            format!("{} is not between 1 and 65536", m.max_connections),
        ));
    }
    if m.max_networks == 0 || m.max_networks > 4096 {
        return Err(bad(
            "metadata.max_networks",
            format!("{} is not between 1 and 4096", m.max_networks),
        ));
    }
    Ok(())
}

/// `[control]`.
fn check_control(control: &Control) -> Result<(), Bad> {
    if let Some(g) = &control.group {
        if g.is_empty() || g.contains([':', '/', ' ']) {
            return Err(bad("control.group", format!("{g:?} is not a group name")));
        }
    }
    Ok(())
}

fn is_pci_address(s: &str) -> bool {
    // DDDD:BB:DD.F or BB:DD.F
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let (dom_bus, devfn) = match s.rsplit_once(':') {
        Some(x) => x,
        None => return false,
    };
    let (dev, func) = match devfn.split_once('.') {
        Some(x) => x,
        None => return false,
    };
    let dom_ok = match dom_bus.split_once(':') {
        Some((d, b)) => hex(d, 4) && hex(b, 2),
        None => hex(dom_bus, 2),
    };
    dom_ok && hex(dev, 2) && func.len() == 1 && matches!(func.as_bytes()[0], b'0'..=b'7')
}

/// The toml crate's error with the key it is about, without its multi-line source excerpt.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let src = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}: {msg} (in `{src}`)")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node = "cn1"
agent_mode = "dvr"
vtep = "192.0.2.1"
dvr_mac = "fa:16:3f:00:00:01"
run_dir = "/tmp/x"
[cores]
main = 0
workers = [1]
[dataplane]
poll_mode = "adaptive"
[[ports]]
name = "vm-a"
role = "vm"
kind = "pcap"
generate = { src_mac = "fa:16:3e:00:00:0a", dst_mac = "fa:16:3e:00:00:0b" }
infinite_rx = true
[[ports]]
name = "vm-b"
role = "vm"
kind = "vhost-user"
socket = "/tmp/vm-b.sock"
[[ports]]
name = "r1"
role = "vm"
kind = "ring"
peer = "r2"
[[ports]]
name = "r2"
role = "vm"
kind = "ring"
peer = "r1"
[[l2.fdb]]
mac = "fa:16:3e:00:00:0b"
port = "vm-b"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn parses_good_config() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.node, "cn1");
        assert_eq!(c.agent_mode, AgentMode::Dvr);
        assert_eq!(c.dataplane.poll_mode, PollMode::Adaptive);
        assert_eq!(c.dataplane.burst, 32);
        assert_eq!(c.ports.len(), 4);
        assert!(matches!(
            c.ports[0].kind,
            PortKind::Pcap {
                infinite_rx: true,
                rx: Some(PcapRx::Generate(_)),
                ..
            }
        ));
        assert_eq!(
            c.ports[1].kind,
            PortKind::VhostUser {
                socket: "/tmp/vm-b.sock".into(),
                client: false
            }
        );
        let args = c.eal_args();
        assert!(args.contains(&"--no-huge".to_string()));
        assert!(args.contains(&"--no-pci".to_string()));
        assert!(args
            .windows(2)
            .any(|w| w[0] == "--file-prefix" && w[1] == "dvr-cn1"));
    }

    /// Two workers on a machine of two cores: one shares cores.main.
    #[test]
    fn a_worker_may_share_the_main_core() {
        let c =
            Config::parse(&GOOD.replace("workers = [1]", "workers = [0, 1]"), "t.toml").unwrap();
        assert_eq!(c.cores.workers, vec![0, 1]);
        assert_eq!(c.cores.main, 0);
    }

    /// The node configuration of docs/DEPLOYMENT.md is one dvr accepts.
    #[test]
    fn the_deployment_guides_configuration_is_valid() {
        let doc = include_str!("../docs/DEPLOYMENT.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let len = doc[start..].find("```").expect("its end");
        let c = Config::parse(&doc[start..start + len], "DEPLOYMENT.md").unwrap();
        assert_eq!(c.ports.len(), 2);
        assert!(c.eal.hugepages && c.metadata.is_some() && c.metrics.is_some());
    }

    #[test]
    fn metrics_section() {
        let with = |m: &str| Config::parse(&format!("{GOOD}[metrics]\n{m}\n"), "t.toml");
        assert_eq!(Config::parse(GOOD, "t.toml").unwrap().metrics, None);
        let m = with("listen = \"127.0.0.1:9417\"")
            .unwrap()
            .metrics
            .unwrap();
        assert_eq!(m.listen, "127.0.0.1:9417".parse().unwrap());
        for bad in [
            "listen = \"127.0.0.1\"",
            "listen = \"localhost:9417\"",
            "listen = \"127.0.0.1:0\"",
            "port = 9417",
        ] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains("metrics") || e.contains("listen"), "{bad}: {e}");
        }
    }

    #[test]
    fn metadata_section() {
        let with = |m: &str| Config::parse(&format!("{GOOD}[metadata]\n{m}\n"), "t.toml");
        assert_eq!(Config::parse(GOOD, "t.toml").unwrap().metadata, None);
        let m = with("server = \"http://192.0.2.10:8775\"")
            .unwrap()
            .metadata
            .unwrap();
        assert_eq!(m.host_port(), ("192.0.2.10".into(), 8775));
        assert_eq!((m.connect_timeout_ms(), m.timeout_ms()), (2000, 10_000));
        assert_eq!((m.max_connections, m.max_networks), (256, 64));
        let m = with("server = \"http://nova-api/\"\ntimeout = 3.5")
            .unwrap()
            .metadata
            .unwrap();
        assert_eq!(m.host_port(), ("nova-api".into(), 80));
        assert_eq!(m.timeout_ms(), 3500);
        let m = with("server = \"http://[2001:db8::1]:8775\"")
            .unwrap()
            .metadata
            .unwrap();
        assert_eq!(m.host_port(), ("2001:db8::1".into(), 8775));
        for (text, key) in [
            ("server = \"https://x:8775\"", "metadata.server"),
            ("server = \"http://x:8775/openstack\"", "metadata.server"),
            ("server = \"http://x:0\"", "metadata.server"),
            ("server = \"http://:8775\"", "metadata.server"),
            ("server = \"http://x\"\ntimeout = 0", "metadata.timeout"),
            (
                "server = \"http://x\"\nconnect_timeout = 1000",
                "metadata.connect_timeout",
            ),
            (
                "server = \"http://x\"\nmax_connections = 0",
                "metadata.max_connections",
            ),
            (
                "server = \"http://x\"\nmax_networks = 0",
                "metadata.max_networks",
            ),
        ] {
            let e = with(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = with("").unwrap_err().to_string();
        assert!(e.contains("server"), "{e}");
        let e = with("server = \"http://x\"\nport = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("port"), "{e}");
    }

    #[test]
    fn nat_timeouts_in_seconds_to_the_millisecond() {
        let with = |nat: &str| Config::parse(&format!("{GOOD}[nat]\n{nat}\n"), "t.toml");
        let t = with("").unwrap().nat.table().timeouts;
        assert_eq!(t, crate::nat::Timeouts::default());
        let t = with("udp_timeout = 300\nicmp_timeout = 0.25\ntcp_transitory_timeout = 1.5")
            .unwrap()
            .nat
            .table()
            .timeouts;
        assert_eq!(
            (t.udp_ms, t.icmp_ms, t.tcp_transitory_ms),
            (300_000, 250, 1500)
        );
        assert_eq!(t.tcp_established_ms, 7_440_000);
        assert_eq!(
            with("udp_timeout = 0.001")
                .unwrap()
                .nat
                .table()
                .timeouts
                .udp_ms,
            1
        );
        for bad in ["0", "0.0005", "0.0015", "-1", "5000000", "nan", "inf"] {
            let e = with(&format!("udp_timeout = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("nat.udp_timeout"), "{bad}: {e}");
            assert!(e.contains("to the millisecond"), "{bad}: {e}");
        }
    }

    #[test]
    fn rejects_unknown_top_level_key() {
        let e = err(&GOOD.replace("agent_mode = \"dvr\"", "agent_mode = \"dvr\"\ncolour = 3"));
        assert!(e.contains("unknown field `colour`"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn rejects_unknown_port_key() {
        let e = err(&GOOD.replace(
            "socket = \"/tmp/vm-b.sock\"",
            "socket = \"/tmp/vm-b.sock\"\nsokcet = 1",
        ));
        assert!(e.contains("unknown field `sokcet`"), "{e}");
    }

    #[test]
    fn rejects_bad_values_naming_the_key() {
        let cases = [
            ("agent_mode = \"dvr\"", "agent_mode = \"dvrx\"", "dvrx"),
            ("vtep = \"192.0.2.1\"", "vtep = \"192.0.2\"", "vtep"),
            (
                "dvr_mac = \"fa:16:3f:00:00:01\"",
                "dvr_mac = \"01:16:3f:00:00:01\"",
                "`dvr_mac`",
            ),
            ("workers = [1]", "workers = [1, 1]", "`cores.workers`"),
            ("workers = [1]", "workers = []", "`cores.workers`"),
            (
                "poll_mode = \"adaptive\"",
                "poll_mode = \"adaptive\"\nburst = 0",
                "`dataplane.burst`",
            ),
            (
                "kind = \"vhost-user\"",
                "kind = \"vhost\"",
                "`ports[1].kind`",
            ),
            (
                "socket = \"/tmp/vm-b.sock\"",
                "iface = \"x\"",
                "`ports[1].iface`",
            ),
            ("peer = \"r1\"", "peer = \"r9\"", "`ports[2].peer`"),
            ("port = \"vm-b\"", "port = \"vm-z\"", "`l2.fdb[0].port`"),
            ("name = \"vm-b\"", "name = \"vm-a\"", "`ports[1].name`"),
            (
                "name = \"vm-b\"\nrole = \"vm\"",
                "name = \"vm-b\"\nrole = \"vm\"\nworker = 3",
                "`ports[1].worker`",
            ),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replacen(from, to, 1);
            assert_ne!(text, GOOD, "{from}");
            let e = err(&text);
            assert!(e.contains(want), "{to}: {e}");
        }
    }

    #[test]
    fn rejects_pcap_without_input_or_output() {
        let e = err(&GOOD.replace(
            "generate = { src_mac = \"fa:16:3e:00:00:0a\", dst_mac = \"fa:16:3e:00:00:0b\" }\ninfinite_rx = true",
            "",
        ));
        assert!(e.contains("`ports[0].rx_pcap`"), "{e}");
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:01:00.0"));
        assert!(is_pci_address("3b:00.1"));
        assert!(!is_pci_address("0000:01:00.8"));
        assert!(!is_pci_address("eth0"));
        assert!(!is_pci_address("0000:01:00"));
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let mut c = Config::parse(&GOOD.replace("/tmp/vm-b.sock", "vm-b.sock"), "t").unwrap();
        c.resolve_paths(Path::new("/etc/dvr"));
        assert_eq!(
            c.ports[1].kind,
            PortKind::VhostUser {
                socket: "/etc/dvr/vm-b.sock".into(),
                client: false
            }
        );
    }
}
