//! The control thread: serves `dvr-ctl` on a UNIX socket (newline-delimited JSON,
//! `docs/PROTOCOL.md`), applies model transactions and journals each committed one
//! durably before replying (`dvr::model::Store`; compacted on a clean stop). Bad
//! requests get an error reply or a clean close; the daemon and the model are never
//! affected by them.

use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use dvr::model::{Applied, Change, Kind, Model, Store};
use dvr::proto::answers::{self, Stats, Status, TableKind, TablesAnswer, Trace};
use dvr::proto::iface::{IfaceInfo, IfaceName, IfaceSpec};
use dvr::proto::{
    self, params, Decoded, ErrorCode, Line, ListParams, Request, Response, ShowParams,
    TablesParams, TraceParams,
};

/// Counters and identity of the node, as the control thread reports them.
pub trait NodeView: Send + Sync {
    /// Who the node is and what it runs; `generation`: the model's.
    fn status(&self, generation: u64) -> Status;
    fn stats(&self) -> Stats;
    /// Compiles the model into the dataplane's tables and publishes them:
    /// from scratch, or only what a committed transaction touched (`applied`).
    fn publish(&self, model: &Model, applied: Option<&[Applied]>);
    /// This node's name, and its agent mode, VTEP and DVR MAC from its configuration.
    fn node_name(&self) -> &str;
    fn host(
        &self,
    ) -> (
        dvr::config::AgentMode,
        Option<std::net::Ipv4Addr>,
        Option<dvr::mac::MacAddr>,
    );
    /// A view of the published tables: `fib`, `neighbors` or `nat` (of one
    /// router or all), `fdb` (this node's MAC tables), or `sessions` (the
    /// workers' SNAT sessions, of one router or all: asked of the workers,
    /// waiting for them at most 200 ms).
    fn tables(&self, what: TableKind, router: Option<&str>) -> Result<TablesAnswer, String>;
    /// Runs a described frame through the pipeline code on the published tables
    /// and reports each stage's decision (nothing is sent).
    fn trace(&self, port: &str, frame: &[u8]) -> Result<Trace, String>;
    /// `trace add INTERFACE N`: marks the next `n` frames received there.
    fn trace_add(&self, interface: &str, n: u32) -> Result<(), String>;
    /// `show trace`: the frames marked so far; `clear`: forgets them and
    /// disarms.
    fn trace_show(&self, clear: bool) -> dvr::proto::answers::LiveTrace;
    /// `capture start`: frames of `interface` going `dirs` (bits RX, TX of
    /// `dvr::worker::capture`) into pcapng file `file`.
    fn capture_start(
        &self,
        interface: &str,
        dirs: u8,
        count: u32,
        snaplen: u32,
        file: &Path,
    ) -> Result<dvr::proto::answers::CaptureInfo, String>;
    /// `capture stop`: the rest written, the file closed.
    fn capture_stop(&self) -> dvr::proto::answers::CaptureInfo;
    /// `capture show`: how far the capture got (it goes on).
    fn capture_show(&self) -> dvr::proto::answers::CaptureInfo;
    /// The model generation of the tables the workers use now.
    fn published_generation(&self) -> u64;
    /// A committed change reached the workers' tables `us` microseconds
    /// after its request was read (for the metrics).
    fn published_in(&self, _us: u64) {}
    /// `interface add`: the interface made, its queues polled, the tables
    /// that bind model ports to it published; what `interface show` says.
    fn interface_add(&self, model: &Model, spec: &IfaceSpec) -> Result<IfaceInfo, String>;
    /// `interface delete`: the tables without it published, then the device
    /// closed once no worker holds it.
    fn interface_delete(&self, model: &Model, name: &str) -> Result<(), String>;
    /// Every interface, as `interface list` / `show` print them.
    fn interfaces(&self, model: &Model) -> Vec<IfaceInfo>;
    /// Whether interface `name`'s link is up (None: no such interface).
    fn link(&self, name: &str) -> Option<bool>;
}

/// The model and where it is persisted: one lock, so that the journal holds the
/// transactions in the order they were applied.
struct State {
    model: Model,
    store: Store,
}

struct Shared {
    state: Mutex<State>,
    state_file: PathBuf,
    view: Arc<dyn NodeView>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Control {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    socket: PathBuf,
    shared: Arc<Shared>,
    /// An exclusive lock on `<state_file>.lock`, held while the daemon runs:
    /// two daemons never write one state file.
    _lock: std::fs::File,
}

/// The lock file of `state_file`; it holds the pid of the daemon that has it.
pub fn lock_path(state_file: &Path) -> PathBuf {
    let mut name = state_file.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock of `state_file` (a file next to it) and writes our pid
/// into it, or says who holds it; `wait`: how long to wait for a holder
/// that is stopping (a take-over), trying every millisecond.
fn lock_state(state_file: &Path, wait: Option<Duration>) -> Result<std::fs::File, String> {
    if let Some(dir) = state_file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let path = lock_path(state_file);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let deadline = wait.map(|w| std::time::Instant::now() + w);
    loop {
        match f.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock)
                if deadline.is_some_and(|d| std::time::Instant::now() < d) =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "state file {} is in use by another dvr-pmd (it holds {})",
                    state_file.display(),
                    path.display()
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()))
            }
        }
    }
    // Who holds it, for a take-over (best effort: the lock is what counts).
    let _ = f
        .set_len(0)
        .and_then(|()| writeln!(f, "{}", std::process::id()));
    Ok(f)
}

/// How long a connection may sit in the middle of a request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Control {
    /// Loads the saved model and starts serving `socket`; `wait`: how long
    /// to wait for the state file's lock (a take-over), else none.
    pub fn start(
        socket: &Path,
        group: Option<&str>,
        state_file: &Path,
        view: Arc<dyn NodeView>,
        wait: Option<Duration>,
    ) -> Result<Control, String> {
        let lock = lock_state(state_file, wait)?;
        let (mut store, mut model, opened) =
            Store::open(state_file).map_err(|e| format!("cannot load the model: {e}"))?;
        tracing::info!(
            state = %state_file.display(), generation = model.generation,
            routers = model.routers.len(), ports = model.ports.len(),
            replayed = opened.replayed, torn_bytes = opened.torn_bytes, "model loaded"
        );
        // The node registers itself (as a Neutron agent reports its state): its
        // host record follows its configuration.
        let (agent_mode, vtep, dvr_mac) = view.host();
        let name = view.node_name().to_owned();
        let known = model.hosts.get(&name);
        if known.is_none_or(|h| (h.agent_mode, h.vtep, h.dvr_mac) != (agent_mode, vtep, dvr_mac)) {
            let changes = [Change::HostSet {
                name: name.clone(),
                agent_mode,
                vtep,
                dvr_mac,
                // Set by the operator (dvr-ctl host set --fip-gateway): kept.
                fip_gateway: known.and_then(|h| h.fip_gateway.clone()),
            }];
            match model.apply(&changes) {
                Ok(applied) => {
                    if let Err(e) = store.commit(&changes, &model) {
                        return Err(format!("cannot save the model: {e}"));
                    }
                    tracing::info!(host = %name, "host record registered");
                    log_committed(model.generation, &changes, &applied);
                }
                Err(e) => tracing::warn!(error = %e, "cannot register this host in the model"),
            }
        }
        view.publish(&model, None);
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        if let Some(dir) = state_file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        // A socket left by a process that died: only ever remove a socket.
        if let Ok(md) = std::fs::symlink_metadata(socket) {
            use std::os::unix::fs::FileTypeExt;
            if md.file_type().is_socket() {
                let _ = std::fs::remove_file(socket);
            } else {
                return Err(format!("{} exists and is not a socket", socket.display()));
            }
        }
        let listener = UnixListener::bind(socket)
            .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        if let Err(e) = set_access(socket, group) {
            let _ = std::fs::remove_file(socket);
            return Err(e);
        }
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control socket: {e}"))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State { model, store }),
            state_file: state_file.to_owned(),
            view,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dvr-control".into())
            .spawn({
                let shared = shared.clone();
                move || serve(listener, shared, stop2)
            })
            .map_err(|e| format!("cannot start the control thread: {e}"))?;
        tracing::info!(socket = %socket.display(), "control socket listening");
        Ok(Control {
            stop,
            thread: Some(thread),
            socket: socket.to_owned(),
            shared,
            _lock: lock,
        })
    }

    /// Stops serving and removes the socket.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
            // No request runs any more: fold the journal into the base file, so a
            // restart has nothing to replay. (Not needed for safety: the journal
            // is durable.)
            let mut state = self.shared.lock();
            let State { model, store } = &mut *state;
            if let Err(e) = store.compact(model) {
                tracing::warn!(
                    state = %self.shared.state_file.display(), error = %e,
                    "cannot compact the model journal on shutdown"
                );
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Mode 0600, or 0660 with the group given: never world-accessible.
fn set_access(socket: &Path, group: Option<&str>) -> Result<(), String> {
    let mode = match group {
        Some(g) => {
            let gid =
                group_id(g).ok_or_else(|| format!("`control.group`: no group named {g:?}"))?;
            std::os::unix::fs::chown(socket, None, Some(gid))
                .map_err(|e| format!("cannot give {} to group {g}: {e}", socket.display()))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", socket.display()))
}

fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

fn serve(listener: UnixListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let mut clients: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, _)) => {
                let shared = shared.clone();
                let stop = stop.clone();
                if let Ok(h) = std::thread::Builder::new()
                    .name("dvr-control-conn".into())
                    .spawn(move || handle(conn, &shared, &stop))
                {
                    clients.push(h);
                }
                clients.retain(|h| !h.is_finished());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Woken at once by a stopping daemon (a restart waits for it).
                std::thread::park_timeout(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    for h in clients {
        let _ = h.join();
    }
}

/// Serves one connection: request lines until the peer closes, a request is too
/// long, or the daemon stops.
fn handle(conn: UnixStream, shared: &Shared, stop: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    // Short read timeouts let the thread notice a stopping daemon; a request may
    // take up to READ_TIMEOUT in all.
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    let mut partial = Vec::new();
    let mut waited = Duration::ZERO;
    while !stop.load(Ordering::SeqCst) {
        let line = match proto::read_line(&mut reader, &mut partial, proto::MAX_REQUEST) {
            Ok(Line::Complete(l)) => {
                waited = Duration::ZERO;
                l
            }
            Ok(Line::Closed) => return,
            Ok(Line::TooLong) => {
                let r = Response::err(
                    0,
                    ErrorCode::TooLarge,
                    format!(
                        "request longer than {} bytes; connection closed",
                        proto::MAX_REQUEST
                    ),
                );
                let _ = reply(&mut writer, &r);
                return;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // What was read so far stays in `partial`; a client has
                // READ_TIMEOUT to finish a request.
                waited += Duration::from_millis(200);
                if waited >= READ_TIMEOUT {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        if line.trim().is_empty() {
            continue;
        }
        let mut resp = dispatch(&line, shared);
        resp.push('\n');
        if writer.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn reply(w: &mut UnixStream, r: &Response) -> std::io::Result<()> {
    let mut s = to_line(r);
    s.push('\n');
    w.write_all(s.as_bytes())
}

/// A response as its line (without the newline).
fn to_line(r: &impl serde::Serialize) -> String {
    serde_json::to_string(r).unwrap_or_else(|_| String::from("{}"))
}

/// The reply to a committed `apply`: a [`Response`] whose `result` is written
/// straight from the list of applied changes (one entry per change: building a
/// `serde_json::Value` of it first would cost a map per change).
#[derive(serde::Serialize)]
struct Committed<'a> {
    version: u32,
    id: u64,
    ok: bool,
    result: answers::Committed<'a>,
}

/// Handles one request line; returns the response line (without the newline).
fn dispatch(line: &str, shared_state: &Shared) -> String {
    let received = std::time::Instant::now();
    match proto::decode(line) {
        Ok(Decoded::Apply { id, changes }) => apply(&changes, id, shared_state, received),
        Ok(Decoded::Other(req)) => to_line(&dispatch_other(req, shared_state)),
        Err(r) => to_line(&r),
    }
}

/// `apply`: validates and applies the transaction, publishes the new tables,
/// journals it (fsynced), then replies.
fn apply(
    changes: &[Change],
    id: u64,
    shared_state: &Shared,
    received: std::time::Instant,
) -> String {
    let mut state = shared_state.lock();
    let State { model, store } = &mut *state;
    match model.apply(changes) {
        Ok(applied) => {
            let generation = model.generation;
            shared_state.view.publish(model, Some(&applied));
            // From here the workers use the new tables from their next burst.
            let publish_us = received.elapsed().as_micros() as u64;
            shared_state.view.published_in(publish_us);
            if let Err(e) = store.commit(changes, model) {
                tracing::error!(error = %e, "cannot save the model");
                return to_line(&Response::err(
                    id,
                    ErrorCode::Internal,
                    format!(
                        "applied (generation {generation}) but not saved to {}: {e}",
                        shared_state.state_file.display()
                    ),
                ));
            }
            drop(state);
            log_committed(generation, changes, &applied);
            to_line(&Committed {
                version: proto::VERSION,
                id,
                ok: true,
                result: answers::Committed {
                    generation,
                    applied: std::borrow::Cow::Borrowed(&applied),
                    publish_us,
                    durable_us: received.elapsed().as_micros() as u64,
                },
            })
        }
        Err(e) => to_line(&Response::err(id, ErrorCode::Rejected, e.to_string())),
    }
}

/// Logs a committed transaction: its generation, how many changes, and the
/// first of them.
fn log_committed(generation: u64, changes: &[Change], applied: &[Applied]) {
    tracing::info!(
        generation,
        changes = changes.len(),
        what = %summary(changes, applied),
        "model change committed"
    );
}

/// A committed transaction for the log: each change's operation and the
/// object it named, the first four of them.
fn summary(changes: &[Change], applied: &[Applied]) -> String {
    const SHOWN: usize = 4;
    let mut s = String::new();
    for (c, a) in changes.iter().zip(applied).take(SHOWN) {
        let op = serde_json::to_value(c)
            .ok()
            .and_then(|v| v["op"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str(&format!("{op} {}", a.name));
    }
    if changes.len() > SHOWN {
        s.push_str(&format!(" (+{} more)", changes.len() - SHOWN));
    }
    s
}

/// A typed answer as a response.
fn answer(id: u64, result: &impl serde::Serialize) -> Response {
    match serde_json::to_value(result) {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(
            id,
            ErrorCode::Internal,
            format!("cannot encode the answer: {e}"),
        ),
    }
}

/// A model port's JSON with its status on this node added (`ACTIVE` when
/// bound here to an interface whose link is up; see
/// [`dvr::proto::iface::port_status`]).
fn with_status(v: &mut serde_json::Value, model: &Model, view: &dyn NodeView) {
    let Some(o) = v.as_object_mut() else { return };
    let Some(p) = o
        .get("name")
        .and_then(|n| n.as_str())
        .and_then(|n| model.ports.get(n))
    else {
        return;
    };
    let link = p.binding.as_deref().and_then(|b| view.link(b));
    let status = dvr::proto::iface::port_status(p.host.as_deref(), view.node_name(), link);
    o.insert("status".into(), status.into());
}

/// The methods other than `apply`.
fn dispatch_other(req: Request, shared_state: &Shared) -> Response {
    let id = req.id;
    let no_params =
        |v: &serde_json::Value| v.is_null() || v.as_object().is_some_and(|o| o.is_empty());
    match req.method.as_str() {
        "show" => {
            let p: ShowParams = match params(id, req.params) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let model = &shared_state.lock().model;
            match model.show(p.kind, &p.name) {
                Ok(mut v) => {
                    if p.kind == Kind::Port {
                        with_status(&mut v, model, &*shared_state.view);
                    }
                    Response::ok(id, v)
                }
                Err(e) => Response::err(id, ErrorCode::NotFound, e.to_string()),
            }
        }
        "list" => {
            let p: ListParams = match params(id, req.params) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let state = shared_state.lock();
            let mut list = state.model.list(p.kind);
            if p.kind == Kind::Port {
                for v in &mut list {
                    with_status(v, &state.model, &*shared_state.view);
                }
            }
            Response::ok(id, serde_json::Value::Array(list))
        }
        "interface_add" => {
            let p: IfaceSpec = match params(id, req.params) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let state = shared_state.lock();
            match shared_state.view.interface_add(&state.model, &p) {
                Ok(info) => answer(id, &info),
                Err(e) => Response::err(id, ErrorCode::Rejected, e),
            }
        }
        "interface_delete" => {
            let p: IfaceName = match params(id, req.params) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let state = shared_state.lock();
            match shared_state.view.interface_delete(&state.model, &p.name) {
                Ok(()) => Response::ok(id, serde_json::json!({ "deleted": p.name })),
                Err(e) if e.starts_with("no interface") => {
                    Response::err(id, ErrorCode::NotFound, e)
                }
                Err(e) => Response::err(id, ErrorCode::Rejected, e),
            }
        }
        "interface_list" if !no_params(&req.params) => Response::err(
            id,
            ErrorCode::InvalidRequest,
            "interface_list takes no params",
        ),
        "interface_list" => {
            let state = shared_state.lock();
            answer(id, &shared_state.view.interfaces(&state.model))
        }
        "interface_show" => {
            let p: IfaceName = match params(id, req.params) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let state = shared_state.lock();
            match shared_state
                .view
                .interfaces(&state.model)
                .into_iter()
                .find(|i| i.name == p.name)
            {
                Some(i) => answer(id, &i),
                None => Response::err(
                    id,
                    ErrorCode::NotFound,
                    format!("no interface named {}", p.name),
                ),
            }
        }
        "status" | "stats" if !no_params(&req.params) => Response::err(
            id,
            ErrorCode::InvalidRequest,
            format!("{} takes no params", req.method),
        ),
        "status" => {
            let generation = shared_state.lock().model.generation;
            answer(id, &shared_state.view.status(generation))
        }
        "stats" => answer(id, &shared_state.view.stats()),
        "trace_add" => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct P {
                interface: String,
                count: u32,
            }
            let p: P = match params(id, req.params) {
                Ok(p) => p,
                Err(r) => return r,
            };
            if p.count == 0 || p.count > dvr::worker::trace::TRACE_MAX {
                return Response::err(
                    id,
                    ErrorCode::InvalidRequest,
                    format!(
                        "trace add: count {} is not from 1 to {}",
                        p.count,
                        dvr::worker::trace::TRACE_MAX
                    ),
                );
            }
            match shared_state.view.trace_add(&p.interface, p.count) {
                Ok(()) => answer(id, &shared_state.view.trace_show(false)),
                Err(e) => Response::err(id, ErrorCode::NotFound, e),
            }
        }
        "capture_start" => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct P {
                interface: String,
                #[serde(default)]
                direction: Option<String>,
                #[serde(default)]
                count: Option<u32>,
                #[serde(default)]
                snaplen: Option<u32>,
                file: PathBuf,
            }
            let p: P = match params(id, req.params) {
                Ok(p) => p,
                Err(r) => return r,
            };
            use dvr::worker::capture::{CAPTURE_SLOT, RX, TX};
            let dirs = match p.direction.as_deref().unwrap_or("both") {
                "rx" => RX,
                "tx" => TX,
                "both" => RX | TX,
                other => {
                    return Response::err(
                        id,
                        ErrorCode::InvalidRequest,
                        format!("capture: direction {other:?}: rx, tx or both"),
                    )
                }
            };
            let count = p.count.unwrap_or(1000);
            let snaplen = p.snaplen.unwrap_or(CAPTURE_SLOT as u32);
            if count == 0 || !(64..=CAPTURE_SLOT as u32).contains(&snaplen) || !p.file.is_absolute() {
                return Response::err(
                    id,
                    ErrorCode::InvalidRequest,
                    format!(
                        "capture: count from 1, snaplen from 64 to {CAPTURE_SLOT}, an absolute file path"
                    ),
                );
            }
            match shared_state
                .view
                .capture_start(&p.interface, dirs, count, snaplen, &p.file)
            {
                Ok(info) => answer(id, &info),
                Err(e) => Response::err(id, ErrorCode::Rejected, e),
            }
        }
        "capture_stop" => answer(id, &shared_state.view.capture_stop()),
        "capture_show" => answer(id, &shared_state.view.capture_show()),
        "trace_show" | "trace_clear" => {
            answer(id, &shared_state.view.trace_show(req.method == "trace_clear"))
        }
        "trace" => {
            let p: TraceParams = match params(id, req.params) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let frame = match p.frame() {
                Ok(f) => f,
                Err(e) => return Response::err(id, ErrorCode::InvalidRequest, e),
            };
            match shared_state.view.trace(&p.port, &frame) {
                Ok(v) => answer(id, &v),
                Err(e) => Response::err(id, ErrorCode::NotFound, e),
            }
        }
        "tables" => {
            let p: TablesParams = match params(id, req.params) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let Some(what) = TableKind::from_name(&p.what) else {
                return Response::err(
                    id,
                    ErrorCode::InvalidRequest,
                    format!(
                        "tables: {:?}: use fib, neighbors, fdb, nat or sessions",
                        p.what
                    ),
                );
            };
            if let (TableKind::Sessions, Some(r)) = (what, &p.router) {
                if !shared_state.lock().model.routers.contains_key(r) {
                    return Response::err(
                        id,
                        ErrorCode::NotFound,
                        format!("sessions: no router named {r:?}"),
                    );
                }
            }
            match shared_state.view.tables(what, p.router.as_deref()) {
                Ok(v) => answer(id, &v),
                Err(e) => Response::err(id, ErrorCode::NotFound, e),
            }
        }
        other => Response::err(
            id,
            ErrorCode::InvalidRequest,
            format!("unknown method {other:?}; methods: apply, show, list, status, stats, tables, trace, trace_add, trace_show, trace_clear, capture_start, capture_stop, capture_show, interface_add, interface_delete, interface_list, interface_show"),
        ),
    }
}
