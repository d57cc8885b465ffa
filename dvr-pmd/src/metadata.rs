//! The metadata proxy on every distributed router (`[metadata]`): a thread
//! of its own, so that a slow metadata server never stalls the control
//! socket or the resolver.
//!
//! The workers hand it a VM's TCP segments to 169.254.169.254:80
//! ([`dvr::pipeline::metadata`], through [`MetadataQueues::from_vms`]); a
//! TCP/IP stack (smoltcp, raw IP) terminates the connection, one stack per
//! network with traffic, made when its first segment comes (tenant networks
//! may share addresses: a connection is known by its network, the VM's
//! address and port). Each request head (and body, if any) is sent on to the
//! configured server, Nova's metadata API, with `X-Forwarded-For: <the VM's
//! fixed IP>` and `X-Neutron-Router-ID: <router>` (any such header from the
//! VM is removed), from a short-lived thread with connect and read timeouts;
//! its answer is relayed to the VM and the connection closed. The server
//! refuses or cannot be reached: 502; does not answer in time: 504.
//!
//! The proxy's segments go back through [`MetadataQueues::to_vms`]: from the
//! router interface MAC of the VM's subnet (as its gateway) to the VM's MAC,
//! out of the VM's port.
//!
//! Bounded: `max_networks` stacks, `max_connections` connections (a SYN
//! over it is refused with a reset), a request head of 8 KiB, a body of 64
//! KiB, an answer of 256 KiB (larger: 502; Nova's user data is at most 64 KiB), each connection's buffers fixed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dvr::config::Metadata;
use dvr::mac::MacAddr;
use dvr::punt::{Exchange, MetadataQueues, MetadataStats as ProxyStats, Segment};
use dvr::tables::Tables;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

/// The largest request head, body and answer.
pub const HEAD_MAX: usize = 8 * 1024;
pub const BODY_MAX: usize = 64 * 1024;
pub const ANSWER_MAX: usize = 256 * 1024;
/// Each connection's receive and send buffers.
const RX_BUF: usize = 4 * 1024;
const TX_BUF: usize = 16 * 1024;
/// A VM that does not send its request in this long, or does not take the
/// answer, is cut off.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// A network's stack with no connection for this long is dropped.
const NET_IDLE: Duration = Duration::from_secs(120);
/// VMs a network's stack remembers (their MAC and port) at once.
const VMS_MAX: usize = 4096;
/// Segments taken from the workers per round.
const ROUND: usize = 512;

pub struct Proxy {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    pub stats: Arc<ProxyStats>,
}

impl Proxy {
    /// Starts the proxy's thread on the exchange's metadata queues (None
    /// when the exchange has none).
    pub fn start(
        cfg: &Metadata,
        exchange: Arc<Exchange>,
        tables: Arc<Tables>,
    ) -> std::io::Result<Option<Proxy>> {
        if exchange.metadata.is_none() {
            return Ok(None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let Some(stats) = exchange.metadata.as_ref().map(|q| q.stats.clone()) else {
            return Ok(None);
        };
        let mut state = State::new(cfg, tables, stats.clone());
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("dvr-metadata".into())
            .spawn(move || {
                let Some(q) = exchange.metadata.as_ref() else {
                    return;
                };
                state.run(q, &s);
            })?;
        tracing::info!(server = %cfg.server, "metadata proxy running");
        Ok(Some(Proxy {
            stop,
            handle: Some(handle),
            stats,
        }))
    }

    pub fn shutdown(mut self) {
        self.stop_now();
        let s = &self.stats;
        tracing::info!(
            connections = s.connections.load(Relaxed),
            refused = s.refused.load(Relaxed),
            requests = s.requests.load(Relaxed),
            answered = s.answered.load(Relaxed),
            bad_gateway = s.bad_gateway.load(Relaxed),
            gateway_timeout = s.gateway_timeout.load(Relaxed),
            bad_request = s.bad_request.load(Relaxed),
            to_vms_full = s.to_vms_full.load(Relaxed),
            "metadata proxy stopped"
        );
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The metadata server.
struct Upstream {
    host: String,
    port: u16,
    connect: Duration,
    total: Duration,
    /// Requests at the server at once ([`ProxyStats::in_flight`]).
    max_in_flight: u64,
}

/// A raw IP device between the queues and smoltcp: one packet in at a
/// time, the packets out collected.
struct Dev {
    rx: Option<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    mtu: usize,
}

struct RxTok(Vec<u8>);
struct TxTok<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0u8; len];
        let r = f(&mut b);
        self.0.push(b);
        r
    }
}

impl phy::Device for Dev {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let p = self.rx.take()?;
        Some((RxTok(p), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxTok(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = self.mtu;
        c
    }
}

/// A VM seen on a network: where its segments came from.
struct Vm {
    mac: MacAddr,
    port: u16,
    gw_mac: MacAddr,
    router: u32,
    seen: Instant,
}

/// One network's stack.
struct Net {
    iface: Interface,
    dev: Dev,
    sockets: SocketSet<'static>,
    vms: HashMap<Ipv4Addr, Vm>,
    /// The socket waiting for the next SYN.
    listener: SocketHandle,
    conns: Vec<Conn>,
    /// Connections refused: reset at the next poll, then removed.
    refused: Vec<SocketHandle>,
    used: Instant,
}

enum Phase {
    /// Reading the request.
    Head(Vec<u8>),
    /// Sent on to the server; its answer is awaited.
    Waiting,
    /// Relaying the answer (from the offset).
    Sending(Vec<u8>, usize),
    /// Answer sent, FIN sent.
    Closing,
}

struct Conn {
    id: u64,
    handle: SocketHandle,
    phase: Phase,
    since: Instant,
}

/// The server's answer for a connection: its network, its id, the bytes
/// to relay.
type Answer = (u32, u64, Vec<u8>);

struct State {
    up: Arc<Upstream>,
    tables: Arc<Tables>,
    stats: Arc<ProxyStats>,
    max_connections: usize,
    max_networks: usize,
    nets: HashMap<u32, Net>,
    /// Connections open over all networks (not the listeners).
    open: usize,
    next_id: u64,
    /// Answers of the server (network, connection id, bytes to relay).
    results: (mpsc::Sender<Answer>, mpsc::Receiver<Answer>),
}

fn now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::now()
}

const SERVICE: Ipv4Address = Ipv4Address::new(169, 254, 169, 254);

impl State {
    fn new(cfg: &Metadata, tables: Arc<Tables>, stats: Arc<ProxyStats>) -> State {
        let (host, port) = cfg.host_port();
        State {
            up: Arc::new(Upstream {
                host,
                port,
                connect: Duration::from_millis(cfg.connect_timeout_ms()),
                total: Duration::from_millis(cfg.timeout_ms()),
                max_in_flight: cfg.max_connections as u64,
            }),
            tables,
            stats,
            max_connections: cfg.max_connections,
            max_networks: cfg.max_networks,
            nets: HashMap::new(),
            open: 0,
            next_id: 1,
            results: mpsc::channel(),
        }
    }

    fn run(&mut self, q: &MetadataQueues, stop: &AtomicBool) {
        while !stop.load(Relaxed) {
            if !self.round(q) {
                let idle = self.nets.values().all(|n| n.conns.is_empty());
                std::thread::park_timeout(Duration::from_millis(if idle { 5 } else { 1 }));
            }
        }
    }

    /// One round: the VMs' segments, the server's answers, every
    /// connection's step. False when there was nothing to take.
    fn round(&mut self, q: &MetadataQueues) -> bool {
        let mut busy = false;
        for _ in 0..ROUND {
            let Some(s) = q.from_vms.pop() else { break };
            busy = true;
            self.segment(&s);
        }
        while let Ok((net, id, answer)) = self.results.1.try_recv() {
            busy = true;
            if let Some(c) = self
                .nets
                .get_mut(&net)
                .and_then(|n| n.conns.iter_mut().find(|c| c.id == id))
            {
                c.phase = Phase::Sending(answer, 0);
            }
        }
        self.service(q);
        busy
    }

    /// A segment from a VM into its network's stack.
    fn segment(&mut self, s: &Segment) {
        let f = s.frame();
        let Some(ip) = f.get(14..) else { return };
        if ip.len() < 20 {
            return;
        }
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        let ip = &ip[..total.clamp(20, ip.len())];
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&f[6..12]);
        let ihl = (ip[0] & 0x0f) as usize * 4;
        let syn = ip.get(ihl + 13).is_some_and(|&fl| fl & 0x12 == 0x02);
        if !self.make_net(s.net) {
            if syn {
                self.stats.refused.fetch_add(1, Relaxed);
            }
            return;
        }
        let Some(net) = self.nets.get_mut(&s.net) else {
            if syn {
                self.stats.refused.fetch_add(1, Relaxed);
            }
            return;
        };
        net.used = Instant::now();
        if net.vms.len() >= VMS_MAX && !net.vms.contains_key(&src) {
            let old = Instant::now() - NET_IDLE;
            net.vms.retain(|_, v| v.seen > old);
            if net.vms.len() >= VMS_MAX {
                return;
            }
        }
        net.vms.insert(
            src,
            Vm {
                mac: MacAddr(mac),
                port: s.port,
                gw_mac: s.gw_mac,
                router: s.router,
                seen: Instant::now(),
            },
        );
        net.dev.rx = Some(ip.to_vec());
        net.iface
            .poll_ingress_single(now(), &mut net.dev, &mut net.sockets);
        // The listener took a SYN: a connection if there is room for it,
        // else reset; a new listener for the next one.
        let h = net.listener;
        let l = net.sockets.get_mut::<tcp::Socket>(h);
        if l.state() != tcp::State::Listen {
            if self.open < self.max_connections {
                net.conns.push(Conn {
                    id: self.next_id,
                    handle: h,
                    phase: Phase::Head(Vec::new()),
                    since: Instant::now(),
                });
                self.next_id += 1;
                self.open += 1;
                self.stats.connections.fetch_add(1, Relaxed);
            } else {
                l.abort();
                net.refused.push(h);
                self.stats.refused.fetch_add(1, Relaxed);
            }
            net.listener = listen(&mut net.sockets);
        }
    }

    /// Whether network `index` has its stack, made if there is room for it.
    fn make_net(&mut self, index: u32) -> bool {
        if !self.nets.contains_key(&index) {
            if self.nets.len() >= self.max_networks {
                // Room made by the idle ones.
                self.nets.retain(|_, n| {
                    !n.conns.is_empty() || n.used.elapsed() < Duration::from_secs(1)
                });
                if self.nets.len() >= self.max_networks {
                    return false;
                }
            }
            let mtu = self
                .tables
                .load()
                .net(index)
                .map_or(1500, |n| usize::from(n.mtu))
                .clamp(576, 1500);
            let mut dev = Dev {
                rx: None,
                tx: Vec::new(),
                mtu,
            };
            // Initial sequence numbers no VM can guess.
            let mut config = Config::new(HardwareAddress::Ip);
            config.random_seed = std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                (index, Instant::now()),
            );
            let mut iface = Interface::new(config, &mut dev, now());
            iface.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::new(IpAddress::Ipv4(SERVICE), 32));
            });
            // Every VM is reached "through" the service's own address: the
            // raw IP device needs no neighbour.
            let _ = iface.routes_mut().add_default_ipv4_route(SERVICE);
            let mut sockets = SocketSet::new(Vec::new());
            let listener = listen(&mut sockets);
            self.nets.insert(
                index,
                Net {
                    iface,
                    dev,
                    sockets,
                    vms: HashMap::new(),
                    listener,
                    conns: Vec::new(),
                    refused: Vec::new(),
                    used: Instant::now(),
                },
            );
        }
        true
    }

    /// Moves every connection on (reads requests, sends answers, closes),
    /// runs each stack's timers and sends what it has for the VMs.
    fn service(&mut self, q: &MetadataQueues) {
        let snap = self.tables.load();
        let mut gone_nets = Vec::new();
        for (&index, net) in self.nets.iter_mut() {
            // What the stack owes first (the ACK of a VM's FIN before its
            // socket goes, say).
            net.iface.poll(now(), &mut net.dev, &mut net.sockets);
            for h in net.refused.drain(..) {
                net.sockets.remove(h);
            }
            let mut closed = 0;
            let mut conns = std::mem::take(&mut net.conns);
            conns.retain_mut(|c| {
                let keep = step(c, net, index, &self.up, &self.stats, &self.results.0, &snap);
                if !keep {
                    net.sockets.remove(c.handle);
                    closed += 1;
                }
                keep
            });
            net.conns = conns;
            self.open = self.open.saturating_sub(closed);
            net.iface.poll(now(), &mut net.dev, &mut net.sockets);
            for p in net.dev.tx.drain(..) {
                send(q, &net.vms, &p, &self.stats);
            }
            if net.conns.is_empty() && net.used.elapsed() > NET_IDLE {
                gone_nets.push(index);
            }
        }
        for i in gone_nets {
            self.nets.remove(&i);
        }
    }
}

fn listen(sockets: &mut SocketSet<'static>) -> SocketHandle {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; RX_BUF]),
        tcp::SocketBuffer::new(vec![0; TX_BUF]),
    );
    // Port 80 is never refused by a socket already listening on it.
    let _ = s.listen(80);
    s.set_timeout(Some(smoltcp::time::Duration::from_secs(60)));
    sockets.add(s)
}

/// A packet of the stack for a VM: from its gateway's MAC to its own, out
/// of its port.
fn send(q: &MetadataQueues, vms: &HashMap<Ipv4Addr, Vm>, p: &[u8], stats: &ProxyStats) {
    if p.len() < 20 {
        return;
    }
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let Some(vm) = vms.get(&dst) else { return };
    let mut f = [0u8; dvr::punt::SEGMENT_MAX];
    let Some(body) = f.get_mut(14..14 + p.len()) else {
        return;
    };
    body.copy_from_slice(p);
    f[..6].copy_from_slice(&vm.mac.0);
    f[6..12].copy_from_slice(&vm.gw_mac.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let Some(s) = Segment::new(vm.port, 0, vm.router, vm.gw_mac, &f[..14 + p.len()]) else {
        return;
    };
    if q.to_vms.push(s).is_err() {
        stats.to_vms_full.fetch_add(1, Relaxed);
    }
}

/// One connection's step; false when it is over (its socket is removed).
fn step(
    c: &mut Conn,
    net: &mut Net,
    index: u32,
    up: &Arc<Upstream>,
    stats: &Arc<ProxyStats>,
    results: &mpsc::Sender<Answer>,
    snap: &dvr::tables::Snapshot,
) -> bool {
    let s = net.sockets.get_mut::<tcp::Socket>(c.handle);
    if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) {
        return false;
    }
    if !matches!(c.phase, Phase::Waiting) && c.since.elapsed() > CLIENT_TIMEOUT {
        s.abort();
        return true;
    }
    match &mut c.phase {
        Phase::Head(buf) => {
            while s.can_recv() {
                let room = HEAD_MAX + BODY_MAX - buf.len();
                let _ = s.recv(|d| {
                    let n = d.len().min(room);
                    buf.extend_from_slice(&d[..n]);
                    (n, ())
                });
                if buf.len() >= HEAD_MAX + BODY_MAX {
                    break;
                }
            }
            let Some(vm_ip) = s.remote_endpoint().map(|e| match e.addr {
                IpAddress::Ipv4(a) => a,
            }) else {
                return true;
            };
            let router = net
                .vms
                .get(&vm_ip)
                .and_then(|v| snap.routers.get(v.router as usize))
                .map(|r| r.name.clone());
            match parse_request(buf) {
                Parsed::More if s.state() == tcp::State::CloseWait => {
                    // The VM closed before its request was whole.
                    s.close();
                    c.phase = Phase::Closing;
                }
                Parsed::More => {}
                Parsed::Bad(code) => {
                    stats.bad_request.fetch_add(1, Relaxed);
                    c.phase = Phase::Sending(status(code), 0);
                }
                Parsed::Whole(req) => {
                    let Some(router) = router else {
                        stats.bad_gateway.fetch_add(1, Relaxed);
                        c.phase = Phase::Sending(status(502), 0);
                        return true;
                    };
                    if stats.in_flight.load(Relaxed) >= up.max_in_flight {
                        c.phase = Phase::Sending(status(503), 0);
                        return true;
                    }
                    let out = upstream_request(&req, vm_ip, &router, &up.host, up.port);
                    stats.requests.fetch_add(1, Relaxed);
                    stats.in_flight.fetch_add(1, Relaxed);
                    let (up, st, results, id) = (up.clone(), stats.clone(), results.clone(), c.id);
                    let spawned = std::thread::Builder::new()
                        .name("dvr-metadata-up".into())
                        .stack_size(256 * 1024)
                        .spawn(move || {
                            let answer = fetch(&up, &out, &st);
                            st.in_flight.fetch_sub(1, Relaxed);
                            let _ = results.send((index, id, answer));
                        });
                    c.phase = match spawned {
                        Ok(_) => Phase::Waiting,
                        Err(_) => {
                            stats.in_flight.fetch_sub(1, Relaxed);
                            Phase::Sending(status(503), 0)
                        }
                    };
                }
            }
        }
        Phase::Waiting => {}
        Phase::Sending(data, off) => {
            while *off < data.len() && s.can_send() {
                match s.send_slice(&data[*off..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => *off += n,
                }
            }
            if *off >= data.len() {
                s.close();
                c.phase = Phase::Closing;
            }
        }
        Phase::Closing => {}
    }
    true
}

/// A request read so far.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// Not whole yet.
    More,
    /// Answered by the proxy with this status.
    Bad(u16),
    Whole(Request),
}

/// A whole request: what is sent on.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The VM's headers, but those the proxy sets or that are about the
    /// VM's connection.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Headers of the VM's that are not sent on: the proxy sets them (a VM
/// cannot name another instance or router), or they are about the VM's
/// own connection.
const DROPPED: &[&str] = &[
    "x-forwarded-for",
    "x-neutron-router-id",
    "x-neutron-network-id",
    "x-instance-id",
    "x-instance-id-signature",
    "x-tenant-id",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
];

/// Parses the bytes a VM sent: a request head of at most [`HEAD_MAX`],
/// its body by `Content-Length` (at most [`BODY_MAX`]).
pub fn parse_request(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Request::new(&mut headers);
    let head = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= HEAD_MAX => return Parsed::Bad(431),
        Ok(httparse::Status::Partial) => return Parsed::More,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(431),
        Err(_) => return Parsed::Bad(400),
    };
    if head > HEAD_MAX {
        return Parsed::Bad(431);
    }
    let mut len = 0usize;
    let mut kept = Vec::new();
    for h in r.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if name == "transfer-encoding" {
            return Parsed::Bad(411);
        }
        if name == "content-length" {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
            else {
                return Parsed::Bad(400);
            };
            if n > BODY_MAX {
                return Parsed::Bad(413);
            }
            len = n;
        }
        if !DROPPED.contains(&name.as_str()) {
            kept.push((h.name.to_owned(), h.value.to_vec()));
        }
    }
    let Some(body) = buf.get(head..head + len) else {
        return Parsed::More;
    };
    Parsed::Whole(Request {
        method: r.method.unwrap_or("GET").to_owned(),
        path: r.path.unwrap_or("/").to_owned(),
        headers: kept,
        body: body.to_vec(),
    })
}

/// The request sent to the server: the VM's, with `X-Forwarded-For` and
/// `X-Neutron-Router-ID` set, over a connection of its own (`Connection:
/// close`). The router's name loses any control character.
pub fn upstream_request(r: &Request, vm: Ipv4Addr, router: &str, host: &str, port: u16) -> Vec<u8> {
    let mut o = Vec::with_capacity(256 + r.body.len());
    let _ = write!(o, "{} {} HTTP/1.1\r\n", r.method, r.path);
    let mut has_host = false;
    for (n, v) in &r.headers {
        has_host |= n.eq_ignore_ascii_case("host");
        o.extend_from_slice(n.as_bytes());
        o.extend_from_slice(b": ");
        o.extend_from_slice(v);
        o.extend_from_slice(b"\r\n");
    }
    if !has_host {
        let _ = write!(o, "Host: {host}:{port}\r\n");
    }
    let router: String = router.chars().filter(|c| !c.is_control()).collect();
    let _ = write!(
        o,
        "X-Forwarded-For: {vm}\r\nX-Neutron-Router-ID: {router}\r\nConnection: close\r\n\r\n"
    );
    o.extend_from_slice(&r.body);
    o
}

/// An answer of the proxy's own.
pub fn status(code: u16) -> Vec<u8> {
    let reason = match code {
        400 => "Bad Request",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let body = format!("{code} {reason}\n");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `req` to the server, returns its answer or one of the proxy's
/// own: 502 when it refuses, cannot be reached, closes without an answer
/// or answers too much; 504 when it does not answer in time.
fn fetch(up: &Upstream, req: &[u8], stats: &ProxyStats) -> Vec<u8> {
    let r = exchange(up, req);
    match r {
        Ok(a) => {
            stats.answered.fetch_add(1, Relaxed);
            a
        }
        Err(code) => {
            if code == 504 {
                stats.gateway_timeout.fetch_add(1, Relaxed);
            } else {
                stats.bad_gateway.fetch_add(1, Relaxed);
            }
            tracing::debug!(code, server = %up.host, "metadata server did not answer");
            status(code)
        }
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// One request to the server; Err: the status the VM gets.
#[cfg(test)]
fn exchange_with(
    host: &str,
    port: u16,
    connect: Duration,
    total: Duration,
    req: &[u8],
) -> Result<Vec<u8>, u16> {
    exchange(
        &Upstream {
            host: host.to_owned(),
            port,
            connect,
            total,
            max_in_flight: 1,
        },
        req,
    )
}

fn exchange(up: &Upstream, req: &[u8]) -> Result<Vec<u8>, u16> {
    let deadline = Instant::now() + up.total;
    let left = || deadline.saturating_duration_since(Instant::now());
    let addrs: Vec<_> = (up.host.as_str(), up.port)
        .to_socket_addrs()
        .map_err(|_| 502u16)?
        .collect();
    let mut last: u16 = 502;
    let mut conn = None;
    for a in addrs {
        let t = up.connect.min(left());
        if t.is_zero() {
            last = 504;
            break;
        }
        match TcpStream::connect_timeout(&a, t) {
            Ok(s) => {
                conn = Some(s);
                break;
            }
            Err(e) => last = if timed_out(&e) { 504 } else { 502 },
        }
    }
    let mut s = conn.ok_or(last)?;
    let io = |e: std::io::Error| if timed_out(&e) { 504u16 } else { 502 };
    s.set_write_timeout(Some(left().max(Duration::from_millis(1))))
        .map_err(io)?;
    s.write_all(req).map_err(io)?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let t = left();
        if t.is_zero() {
            return Err(504);
        }
        s.set_read_timeout(Some(t)).map_err(io)?;
        let n = s.read(&mut chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.len() > ANSWER_MAX {
            return Err(502);
        }
        if whole_answer(&answer) {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    match httparse::Response::new(&mut headers).parse(&answer) {
        Ok(httparse::Status::Complete(_)) => Ok(answer),
        _ => Err(502),
    }
}

/// Whether an answer is whole by its `Content-Length` (else it ends when
/// the server closes).
fn whole_answer(a: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = r.parse(a) else {
        return false;
    };
    r.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .is_some_and(|n| a.len() >= head + n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn whole(b: &[u8]) -> Request {
        match parse_request(b) {
            Parsed::Whole(r) => r,
            p => panic!("{p:?}"),
        }
    }

    /// Ones' complement sum of `b` folded, from `sum`.
    fn csum(mut sum: u32, b: &[u8]) -> u16 {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    const VM_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 1];
    const GW_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0xfe];

    /// A SYN from `src`:`sport` to 169.254.169.254:80 as a VM port's frame.
    fn syn(src: [u8; 4], sport: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&GW_MAC);
        f.extend_from_slice(&VM_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&[169, 254, 169, 254]);
        let c = csum(0, &ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut t = [0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x02;
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip[12..20]);
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        let sum = pseudo
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        let c = csum(sum, &t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&t);
        f
    }

    fn state(max_connections: usize, max_networks: usize) -> State {
        let cfg = Metadata {
            server: "http://127.0.0.1:9".into(),
            connect_timeout: 1.0,
            timeout: 1.0,
            max_connections,
            max_networks,
        };
        let snap = dvr::tables::Snapshot::from_config(&dvr::tables::NodePorts {
            node: "cn1".into(),
            ports: Vec::new(),
            static_fdb: Vec::new(),
            vtep: None,
            dvr_mac: None,
            vtep_macs: Vec::new(),
        });
        State::new(&cfg, Arc::new(Tables::from_pointee(snap)), Arc::default())
    }

    /// What the proxy sent the VMs: (destination port, TCP flags), each
    /// from the gateway's MAC to the VM's.
    fn sent(q: &MetadataQueues) -> Vec<(u16, u8)> {
        let mut out = Vec::new();
        while let Some(s) = q.to_vms.pop() {
            let f = s.frame();
            assert_eq!((&f[..6], &f[6..12], s.port), (&VM_MAC[..], &GW_MAC[..], 4));
            out.push((u16::from_be_bytes([f[36], f[37]]), f[47]));
        }
        out.sort();
        out
    }

    /// `max_connections` connections are accepted; a SYN over it is
    /// answered with a reset and counted; a network over `max_networks`
    /// gets no stack (counted); another network may use the same address.
    #[test]
    fn connections_and_networks_are_bounded() {
        let x = Exchange::with_metadata();
        let q = x.metadata.as_ref().unwrap();
        let mut st = state(3, 2);
        let seg = |net: u32, src: [u8; 4], sport: u16| {
            Segment::new(4, net, 0, MacAddr(GW_MAC), &syn(src, sport)).unwrap()
        };
        for sport in [1001, 1002] {
            st.segment(&seg(1, [10, 0, 0, 5], sport));
        }
        st.service(q);
        assert_eq!(sent(q), [(1001, 0x12), (1002, 0x12)], "SYN-ACKs");
        // The same address on another network: its own stack, the last
        // connection there is room for.
        st.segment(&seg(2, [10, 0, 0, 5], 1001));
        st.service(q);
        assert_eq!(sent(q), [(1001, 0x12)]);
        assert_eq!(st.stats.refused.load(Relaxed), 0);
        // Over max_connections: reset.
        st.segment(&seg(1, [10, 0, 0, 5], 1003));
        st.service(q);
        let got = sent(q);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0, got[0].1 & 0x04), (1003, 0x04), "{got:?}");
        assert_eq!(st.stats.refused.load(Relaxed), 1);
        // A third network: no stack (both others busy), nothing sent.
        st.segment(&seg(3, [10, 0, 0, 5], 1001));
        st.service(q);
        assert_eq!(sent(q), []);
        assert_eq!(st.stats.refused.load(Relaxed), 2);
        assert_eq!(st.nets.len(), 2);
        assert_eq!(st.stats.connections.load(Relaxed), 3);
    }

    /// A VM's TCP/IP stack (smoltcp too), wired to the proxy through the
    /// queues as a VM port would be.
    struct Guest {
        iface: Interface,
        dev: Dev,
        sockets: SocketSet<'static>,
        sock: SocketHandle,
        ip: Ipv4Address,
    }

    impl Guest {
        fn new(ip: [u8; 4], sport: u16) -> Guest {
            let ip = Ipv4Address::from(ip);
            let mut dev = Dev {
                rx: None,
                tx: Vec::new(),
                mtu: 1500,
            };
            let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut dev, now());
            iface.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), 24));
            });
            let _ = iface
                .routes_mut()
                .add_default_ipv4_route(Ipv4Address::new(10, 1, 0, 1));
            let mut sockets = SocketSet::new(Vec::new());
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 65536]),
                tcp::SocketBuffer::new(vec![0; 65536]),
            );
            s.connect(iface.context(), (IpAddress::Ipv4(SERVICE), 80), sport)
                .unwrap();
            let sock = sockets.add(s);
            Guest {
                iface,
                dev,
                sockets,
                sock,
                ip,
            }
        }

        fn socket(&mut self) -> &mut tcp::Socket<'static> {
            self.sockets.get_mut::<tcp::Socket>(self.sock)
        }
    }

    /// The golden tests' model: network `blue` with router `r1`'s interface
    /// on 10.1.0.0/24. The proxy's state on it, and blue's and r1's
    /// indexes.
    fn state_on_model(server: &str, max_connections: usize, timeout: f64) -> (State, u32, u32) {
        let m = dvr::testkit::model();
        let c = dvr::compile::Compiler::new(&m, dvr::testkit::node());
        let snap = c.current().clone();
        let net = (0..64u32)
            .find(|&i| snap.net(i).is_some_and(|n| n.name == "blue"))
            .unwrap();
        let router = (0..64u32)
            .find(|&i| snap.routers.get(i as usize).is_some_and(|r| r.name == "r1"))
            .unwrap();
        let cfg = Metadata {
            server: server.into(),
            connect_timeout: 1.0,
            timeout,
            max_connections,
            max_networks: 4,
        };
        let tables = Arc::new(Tables::new(snap));
        (State::new(&cfg, tables, Arc::default()), net, router)
    }

    /// Moves segments both ways and the proxy's rounds for `d`.
    fn pump(
        st: &mut State,
        q: &MetadataQueues,
        guests: &mut [&mut Guest],
        net: u32,
        router: u32,
        d: Duration,
    ) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            for g in guests.iter_mut() {
                g.iface.poll(now(), &mut g.dev, &mut g.sockets);
                for p in g.dev.tx.drain(..) {
                    let mut f = GW_MAC.to_vec();
                    f.extend_from_slice(&VM_MAC);
                    f.extend_from_slice(&[0x08, 0]);
                    f.extend_from_slice(&p);
                    q.from_vms
                        .push(Segment::new(4, net, router, MacAddr(GW_MAC), &f).unwrap())
                        .ok()
                        .unwrap();
                }
            }
            st.round(q);
            while let Some(s) = q.to_vms.pop() {
                let ip = s.frame()[14..].to_vec();
                let dst = Ipv4Address::new(ip[16], ip[17], ip[18], ip[19]);
                if let Some(g) = guests.iter_mut().find(|g| g.ip == dst) {
                    g.dev.rx = Some(ip);
                    g.iface.poll(now(), &mut g.dev, &mut g.sockets);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn received(g: &mut Guest) -> String {
        let mut out = Vec::new();
        let s = g.socket();
        while s.can_recv() {
            let _ = s.recv(|d| {
                out.extend_from_slice(d);
                (d.len(), ())
            });
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A server on 127.0.0.1 that answers each request with what it got
    /// (by length), or never answers (`silent`).
    fn local_server(silent: bool) -> (u16, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in l.incoming().take(4) {
                let Ok(mut c) = c else { return };
                if silent {
                    held.push(c);
                    continue;
                }
                let mut got = Vec::new();
                let mut b = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&b[..n]),
                    }
                }
                let _ = write!(
                    c,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                    got.len()
                );
                let _ = c.write_all(&got);
            }
        });
        (port, h)
    }

    /// A VM's request through the proxy's stack reaches the server with
    /// the VM's address and router; the answer comes back whole and the
    /// connection is closed by the proxy.
    #[test]
    fn a_request_through_the_stack_and_its_answer() {
        let (port, _srv) = local_server(false);
        let (mut st, net, router) = state_on_model(&format!("http://127.0.0.1:{port}"), 8, 2.0);
        let x = Exchange::with_metadata();
        let q = x.metadata.as_ref().unwrap();
        let mut g = Guest::new([10, 1, 0, 10], 40000);
        pump(
            &mut st,
            q,
            &mut [&mut g],
            net,
            router,
            Duration::from_millis(100),
        );
        assert!(g.socket().may_send(), "connected: {}", g.socket().state());
        g.socket()
            .send_slice(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
            .unwrap();
        pump(
            &mut st,
            q,
            &mut [&mut g],
            net,
            router,
            Duration::from_millis(500),
        );
        let got = received(&mut g);
        assert!(got.starts_with("HTTP/1.0 200 OK\r\n"), "{got}");
        assert!(
            got.contains("GET /latest/meta-data/instance-id HTTP/1.1\r\n"),
            "{got}"
        );
        assert!(got.contains("X-Forwarded-For: 10.1.0.10\r\n"), "{got}");
        assert!(got.contains("X-Neutron-Router-ID: r1\r\n"), "{got}");
        assert!(!got.contains("6.6.6.6"), "{got}");
        assert!(
            !g.socket().may_recv(),
            "closed by the proxy: {}",
            g.socket().state()
        );
        assert_eq!(st.stats.answered.load(Relaxed), 1);
    }

    /// Requests at the server are bounded too: a VM that resets its
    /// connection leaves its request's thread waiting for the server; over
    /// `max_connections` of them, a new request gets 503 at once; the
    /// thread ends by the timeout.
    #[test]
    fn requests_at_a_silent_server_are_bounded() {
        let (port, _srv) = local_server(true);
        let (mut st, net, router) = state_on_model(&format!("http://127.0.0.1:{port}"), 1, 1.0);
        let x = Exchange::with_metadata();
        let q = x.metadata.as_ref().unwrap();
        let req = b"GET / HTTP/1.1\r\n\r\n";
        let mut a = Guest::new([10, 1, 0, 10], 40001);
        pump(
            &mut st,
            q,
            &mut [&mut a],
            net,
            router,
            Duration::from_millis(100),
        );
        a.socket().send_slice(req).unwrap();
        pump(
            &mut st,
            q,
            &mut [&mut a],
            net,
            router,
            Duration::from_millis(100),
        );
        assert_eq!(st.stats.in_flight.load(Relaxed), 1);
        a.socket().abort();
        pump(
            &mut st,
            q,
            &mut [&mut a],
            net,
            router,
            Duration::from_millis(100),
        );
        let mut b = Guest::new([10, 1, 0, 11], 40002);
        pump(
            &mut st,
            q,
            &mut [&mut b],
            net,
            router,
            Duration::from_millis(100),
        );
        b.socket().send_slice(req).unwrap();
        pump(
            &mut st,
            q,
            &mut [&mut b],
            net,
            router,
            Duration::from_millis(200),
        );
        let got = received(&mut b);
        assert!(got.starts_with("HTTP/1.1 503 "), "{got}");
        // The waiting thread ends by the timeout: the next request goes on
        // (and gets its 504), once b's connection is closed (the only one
        // there is room for).
        b.socket().close();
        pump(
            &mut st,
            q,
            &mut [&mut b],
            net,
            router,
            Duration::from_millis(1000),
        );
        assert_eq!(st.stats.in_flight.load(Relaxed), 0);
        let mut c = Guest::new([10, 1, 0, 12], 40003);
        pump(
            &mut st,
            q,
            &mut [&mut c],
            net,
            router,
            Duration::from_millis(100),
        );
        c.socket().send_slice(req).unwrap();
        pump(
            &mut st,
            q,
            &mut [&mut c],
            net,
            router,
            Duration::from_millis(1500),
        );
        let got = received(&mut c);
        assert!(got.starts_with("HTTP/1.1 504 "), "{got}");
    }

    #[test]
    fn headers_the_proxy_sets_replace_the_vms() {
        let r = whole(
            b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\
              User-Agent: curl\r\nX-Forwarded-For: 10.9.9.9\r\nx-neutron-router-id: other\r\n\
              Connection: keep-alive\r\n\r\n",
        );
        let out = upstream_request(&r, Ipv4Addr::new(10, 0, 0, 5), "r1", "nova", 8775);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("GET /latest/meta-data/instance-id HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("Host: 169.254.169.254\r\n"), "{text}");
        assert!(text.contains("User-Agent: curl\r\n"), "{text}");
        assert!(text.contains("X-Forwarded-For: 10.0.0.5\r\n"), "{text}");
        assert!(text.contains("X-Neutron-Router-ID: r1\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n\r\n"), "{text}");
        assert!(!text.contains("10.9.9.9"), "{text}");
        assert!(!text.contains("other"), "{text}");
        assert!(!text.contains("keep-alive"), "{text}");
        assert_eq!(text.matches("X-Forwarded-For").count(), 1);
    }

    #[test]
    fn a_body_is_awaited_and_sent_on() {
        let b = b"POST /openstack/latest/password HTTP/1.1\r\nContent-Length: 5\r\n\r\nab";
        assert_eq!(parse_request(b), Parsed::More);
        let mut b = b.to_vec();
        b.extend_from_slice(b"cde");
        let r = whole(&b);
        assert_eq!(r.body, b"abcde");
        let out = upstream_request(&r, Ipv4Addr::new(10, 0, 0, 5), "r1", "nova", 8775);
        assert!(out.ends_with(b"\r\n\r\nabcde"));
        assert!(String::from_utf8_lossy(&out).contains("Host: nova:8775\r\n"));
    }

    #[test]
    fn bounds_and_malformed_requests() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), Parsed::More);
        assert_eq!(
            parse_request(b"\x00\x01 nonsense\r\n\r\n"),
            Parsed::Bad(400)
        );
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(HEAD_MAX + 1, b'a');
        assert_eq!(parse_request(&big), Parsed::Bad(431));
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"),
            Parsed::Bad(413)
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Parsed::Bad(411)
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Parsed::Bad(400)
        );
        let s = String::from_utf8(status(502)).unwrap();
        assert!(s.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{s}");
        assert!(s.ends_with("\r\n\r\n502 Bad Gateway\n"), "{s}");
    }

    #[test]
    fn a_router_name_cannot_add_a_header() {
        let r = whole(b"GET / HTTP/1.1\r\n\r\n");
        let out = upstream_request(&r, Ipv4Addr::new(10, 0, 0, 5), "r1\r\nX-Evil: 1", "n", 80);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("X-Neutron-Router-ID: r1X-Evil: 1\r\n"),
            "{text}"
        );
    }

    /// A refused connection is a 502, a server that accepts but never
    /// answers a 504 within the timeout, an answer by its length is whole
    /// without waiting for the server to close.
    #[test]
    fn server_refused_silent_or_answering() {
        let ms = Duration::from_millis;
        // Silent: accepted (backlog) but never answered.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let p0 = silent.local_addr().unwrap().port();
        let t0 = Instant::now();
        let r = exchange_with("127.0.0.1", p0, ms(500), ms(300), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r, Err(504));
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // Answering, keeping the connection open.
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 1024];
            let _ = c.read(&mut b);
            c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc")
                .unwrap();
            std::thread::sleep(Duration::from_secs(3));
        });
        let t0 = Instant::now();
        let r = exchange_with(
            "127.0.0.1",
            port,
            ms(500),
            ms(2000),
            b"GET / HTTP/1.1\r\n\r\n",
        );
        assert_eq!(
            r.unwrap(),
            b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        );
        assert!(t0.elapsed() < Duration::from_millis(1500));
        drop(server);
        // Refused: nothing listens on a port just freed.
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let p2 = free.local_addr().unwrap().port();
        drop(free);
        let r = exchange_with("127.0.0.1", p2, ms(500), ms(500), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r, Err(502));
    }
}
