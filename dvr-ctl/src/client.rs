//! The daemon's control socket: where it is, and one request, one response
//! (`docs/PROTOCOL.md`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use dvr::proto::{self, Request, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The socket: `--socket`, else $DVR_SOCKET, else the only /run/dvr/*/dvr.sock.
pub fn socket_path(cli: &Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = cli {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("DVR_SOCKET") {
        return Ok(PathBuf::from(p));
    }
    let found: Vec<PathBuf> = std::fs::read_dir("/run/dvr")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("dvr.sock"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    match found.len() {
        1 => Ok(found[0].clone()),
        0 => Err("no dvr-pmd socket found under /run/dvr; give --socket or set DVR_SOCKET".into()),
        _ => Err(format!(
            "several dvr-pmd sockets: {}; give --socket",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Sends one request; Err(message) when the daemon cannot be reached.
pub fn request(socket: &Path, method: &str, params: Value) -> Result<Response, String> {
    let mut s = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach dvr-pmd at {}: {e}", socket.display()))?;
    let req = Request {
        version: proto::VERSION,
        id: 1,
        method: method.to_owned(),
        params,
    };
    let mut line = serde_json::to_string(&req).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes())
        .map_err(|e| format!("sending to dvr-pmd: {e}"))?;
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer)
        .map_err(|e| format!("reading from dvr-pmd: {e}"))?;
    if answer.is_empty() {
        return Err("dvr-pmd closed the connection without answering".into());
    }
    serde_json::from_str(&answer)
        .map_err(|e| format!("dvr-pmd answered something that is not a response: {e}"))
}

/// A response's `result` read as the answer type of its method.
pub fn answer<T: DeserializeOwned>(result: Value) -> Result<T, String> {
    serde_json::from_value(result)
        .map_err(|e| format!("dvr-pmd answered something this dvr-ctl does not read: {e}"))
}
