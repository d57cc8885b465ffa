//! The `[metrics]` endpoint: the node's counters in Prometheus's text
//! format (`dvr::metrics`) at `http://LISTEN/metrics`, served by a thread
//! of its own, one short connection at a time (a Prometheus server scrapes
//! every few seconds). Never in the workers' way: it reads the same
//! counters `dvr-ctl show stats` reads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::report::View;

/// The longest request head read.
const HEAD_MAX: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the address may stay taken (by the process a take-over
/// replaces) before the endpoint gives up.
const BIND_PATIENCE: Duration = Duration::from_secs(10);

pub struct Endpoint {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Serves `view`'s counters on `addr` from a thread of its own. The
    /// address is bound in the thread, tried again for a few seconds while
    /// it is in use (the old process of a take-over still holds it).
    pub fn start(addr: SocketAddr, view: Arc<View>) -> std::io::Result<Endpoint> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dvr-metrics".into())
            .spawn(move || run(addr, &view, &s))?;
        Ok(Endpoint {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(addr: SocketAddr, view: &View, stop: &AtomicBool) {
    let started = Instant::now();
    let listener = loop {
        match TcpListener::bind(addr) {
            Ok(l) => break l,
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && started.elapsed() < BIND_PATIENCE
                    && !stop.load(Ordering::SeqCst) =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "metrics: cannot listen; no metrics endpoint");
                return;
            }
        }
    };
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!(error = %e, "metrics: cannot set up the listener");
        return;
    }
    tracing::info!(%addr, "metrics endpoint listening (GET /metrics)");
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, _)) => {
                if let Err(e) = serve(conn, view) {
                    tracing::debug!(error = %e, "metrics: a client went away");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// One request: `GET /metrics` gets the page, another path 404, another
/// method 405, a head that does not come or is too long 400.
fn serve(mut conn: TcpStream, view: &View) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(READ_TIMEOUT))?;
    conn.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > HEAD_MAX {
            return answer(
                &mut conn,
                "400 Bad Request",
                "text/plain",
                "request head too long\n",
            );
        }
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e),
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => answer(
            &mut conn,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &view.metrics(),
        ),
        ("GET", _) => answer(
            &mut conn,
            "404 Not Found",
            "text/plain",
            "dvr-pmd serves /metrics only\n",
        ),
        ("", _) => answer(&mut conn, "400 Bad Request", "text/plain", "no request\n"),
        _ => answer(
            &mut conn,
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics only\n",
        ),
    }
}

fn answer(conn: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}
