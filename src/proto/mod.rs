//! The control protocol between `dvr-ctl` and `dvr-pmd`: newline-delimited JSON
//! over a UNIX stream socket, one request line, one response line. Documented in
//! `docs/PROTOCOL.md`.

use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};

use crate::model::{Change, Kind};

pub mod answers;
pub mod iface;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// The longest request line accepted, newline included.
pub const MAX_REQUEST: usize = 4 << 20;

/// A request as it arrives; `params` is checked per method.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub version: u32,
    #[serde(default)]
    pub id: u64,
    pub method: String,
    #[serde(default)]
    pub params: serde_json::Value,
}

/// A request with its `params` read as `P`. The daemon reads a line as
/// `Envelope<IgnoredAny>` first (is it a request at all, which method and
/// version: the params are only checked to be JSON, nothing is built for them),
/// then as the envelope of its method's params: an `apply`'s changes are parsed
/// once, straight into [`Change`]s, not into a [`serde_json::Value`] first (which
/// costs more than the typed parse, per change, in allocations).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, bound = "P: Deserialize<'de>")]
pub struct Envelope<P> {
    pub version: u32,
    #[serde(default)]
    pub id: u64,
    pub method: String,
    /// None: absent or `null`.
    #[serde(default)]
    pub params: Option<P>,
}

/// Parameters of `apply`: a transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyParams {
    pub changes: Vec<Change>,
}

/// Parameters of `show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowParams {
    pub kind: Kind,
    pub name: String,
}

/// Parameters of `list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub kind: Kind,
}

/// Parameters of `tables`: a table kind (`answers::TableKind`'s names),
/// of one router or all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablesParams {
    pub what: String,
    #[serde(default)]
    pub router: Option<String>,
}

/// Parameters of `trace`, arriving on dataplane port `port`: a whole frame
/// (`frame`, hex: any frame at all), or a UDP frame described by its
/// addresses (both MACs; unset IPv4 addresses are 0.0.0.0).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceParams {
    pub port: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<crate::mac::MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<crate::mac::MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<std::net::Ipv4Addr>,
    /// The frame itself, as hex digits (at most [`TRACE_FRAME_MAX`] bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
}

/// The longest frame `trace` takes.
pub const TRACE_FRAME_MAX: usize = 9216;

impl TraceParams {
    /// The frame to trace: the given one, or the UDP frame the addresses
    /// describe.
    pub fn frame(&self) -> Result<Vec<u8>, String> {
        if let Some(h) = &self.frame {
            if self.src_mac.is_some()
                || self.dst_mac.is_some()
                || self.src_ip.is_some()
                || self.dst_ip.is_some()
            {
                return Err("a whole frame, or addresses: not both".into());
            }
            let h: String = h.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            if !h.len().is_multiple_of(2) || h.len() / 2 > TRACE_FRAME_MAX {
                return Err(format!(
                    "frame: an even number of hex digits, at most {TRACE_FRAME_MAX} bytes"
                ));
            }
            return (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| "frame: not hex digits".into());
        }
        let (Some(src_mac), Some(dst_mac)) = (self.src_mac, self.dst_mac) else {
            return Err("a frame (hex), or at least its source and destination MACs".into());
        };
        Ok(crate::gen::udp4_frame(
            &crate::gen::Udp4 {
                src_mac,
                dst_mac,
                src_ip: self.src_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                dst_ip: self.dst_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                src_port: 1024,
                dst_port: 9,
            },
            60,
            0,
        ))
    }
}

/// What went wrong, for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not a request, unknown method or fields.
    InvalidRequest,
    /// A version this daemon does not speak.
    UnsupportedVersion,
    /// Longer than [`MAX_REQUEST`].
    TooLarge,
    /// Valid request, refused by the model's rules (nothing changed).
    Rejected,
    /// The object does not exist.
    NotFound,
    /// The daemon could not do it (e.g. could not persist).
    Internal,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// A response line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub version: u32,
    pub id: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub fn ok(id: u64, result: serde_json::Value) -> Self {
        Response {
            version: VERSION,
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        Response {
            version: VERSION,
            id,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }
}

/// A request line as the daemon reads it ([`decode`]).
#[derive(Debug)]
pub enum Decoded {
    /// `apply`: the transaction, its changes parsed straight from the line.
    Apply { id: u64, changes: Vec<Change> },
    /// Any other method; its `params` are checked per method ([`params`]).
    Other(Request),
}

/// Reads one request line (newline removed) as the daemon does: the envelope
/// first (is it a request at all, which version and method: the params are
/// only checked to be JSON, nothing is built for them), then an `apply`'s
/// changes straight from the line, or any other request whole. `Err` is the
/// error reply: [`ErrorCode::InvalidRequest`] or
/// [`ErrorCode::UnsupportedVersion`].
pub fn decode(line: &str) -> Result<Decoded, Response> {
    let head: Envelope<serde::de::IgnoredAny> = serde_json::from_str(line).map_err(|e| {
        Response::err(
            0,
            ErrorCode::InvalidRequest,
            format!("not a valid request: {e}"),
        )
    })?;
    let id = head.id;
    if head.version != VERSION {
        return Err(Response::err(
            id,
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this daemon speaks {}",
                head.version, VERSION
            ),
        ));
    }
    if head.method == "apply" {
        let p: ApplyParams = match serde_json::from_str::<Envelope<ApplyParams>>(line) {
            Ok(Envelope {
                params: Some(p), ..
            }) => p,
            // Absent or null: what `{}` is missing.
            Ok(_) => params(id, serde_json::Value::Null)?,
            Err(e) => return Err(bad_params(id, e)),
        };
        return Ok(Decoded::Apply {
            id,
            changes: p.changes,
        });
    }
    serde_json::from_str(line).map(Decoded::Other).map_err(|e| {
        Response::err(
            id,
            ErrorCode::InvalidRequest,
            format!("not a valid request: {e}"),
        )
    })
}

/// Bad params, as the reply says it.
pub fn bad_params(id: u64, e: impl std::fmt::Display) -> Response {
    Response::err(id, ErrorCode::InvalidRequest, format!("bad params: {e}"))
}

/// The `params` of request `id` read as `T` (absent or `null`: as `{}`).
pub fn params<T: serde::de::DeserializeOwned>(
    id: u64,
    v: serde_json::Value,
) -> Result<T, Response> {
    let v = if v.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        v
    };
    serde_json::from_value(v).map_err(|e| bad_params(id, e))
}

/// One line read with a bound.
#[derive(Debug)]
pub enum Line {
    /// A complete line, newline removed.
    Complete(String),
    /// The peer closed the connection (a partial line, if any, is discarded).
    Closed,
    /// The line is longer than the bound; the connection should be closed.
    TooLong,
}

/// Reads one newline-terminated line of at most `max` bytes. `buf` keeps a partial
/// line across calls that fail with a timeout; it is empty after a complete line.
pub fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            buf.clear();
            return Ok(Line::Closed);
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if buf.len() + i + 1 > max {
                    return Ok(Line::TooLong);
                }
                buf.extend_from_slice(&avail[..i]);
                r.consume(i + 1);
                let line = std::mem::take(buf);
                return Ok(Line::Complete(
                    String::from_utf8(line).unwrap_or_else(|_| String::from("\u{fffd}")),
                ));
            }
            None => {
                let n = avail.len();
                if buf.len() + n >= max {
                    return Ok(Line::TooLong);
                }
                buf.extend_from_slice(avail);
                r.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_within_bound() {
        let mut r = io::BufReader::with_capacity(4, &b"ab\ncdef\n\nxyz"[..]);
        let mut b = Vec::new();
        assert!(matches!(read_line(&mut r, &mut b, 16).unwrap(), Line::Complete(s) if s == "ab"));
        assert!(matches!(read_line(&mut r, &mut b, 16).unwrap(), Line::Complete(s) if s == "cdef"));
        assert!(
            matches!(read_line(&mut r, &mut b, 16).unwrap(), Line::Complete(s) if s.is_empty())
        );
        assert!(
            matches!(read_line(&mut r, &mut b, 16).unwrap(), Line::Closed),
            "partial line dropped"
        );
    }

    #[test]
    fn refuses_long_lines() {
        let mut b = Vec::new();
        let mut r = io::BufReader::with_capacity(4, &b"0123456789\n"[..]);
        assert!(matches!(
            read_line(&mut r, &mut b, 8).unwrap(),
            Line::TooLong
        ));
        let mut b = Vec::new();
        let mut r = io::BufReader::new(&b"0123456\n"[..]);
        assert!(matches!(
            read_line(&mut r, &mut b, 8).unwrap(),
            Line::Complete(_)
        ));
    }

    #[test]
    fn requests_parse_and_reject_unknown_fields() {
        let r: Request = serde_json::from_str(
            r#"{"version":1,"id":3,"method":"list","params":{"kind":"router"}}"#,
        )
        .unwrap();
        let p: ListParams = serde_json::from_value(r.params).unwrap();
        assert_eq!(p.kind, Kind::Router);
        assert!(
            serde_json::from_str::<Request>(r#"{"version":1,"method":"x","colour":1}"#).is_err()
        );
        let a: ApplyParams = serde_json::from_str(
            r#"{"changes":[{"op":"router_create","name":"r1"},{"op":"router_set","name":"r1","admin_state_up":false}]}"#,
        )
        .unwrap();
        assert_eq!(a.changes.len(), 2);
        assert!(serde_json::from_str::<ApplyParams>(
            r#"{"changes":[{"op":"router_create","name":"r1","x":1}]}"#
        )
        .is_err());
    }

    #[test]
    fn envelopes_read_the_same_requests() {
        use serde::de::IgnoredAny;
        let line = r#"{"version":1,"id":4,"method":"apply","params":{"changes":[{"op":"router_create","name":"r1"}]}}"#;
        let head: Envelope<IgnoredAny> = serde_json::from_str(line).unwrap();
        assert_eq!(
            (head.version, head.id, head.method.as_str()),
            (1, 4, "apply")
        );
        assert!(head.params.is_some());
        let typed: Envelope<ApplyParams> = serde_json::from_str(line).unwrap();
        assert_eq!(typed.params.unwrap().changes.len(), 1);
        for absent in [
            r#"{"version":1,"method":"status"}"#,
            r#"{"version":1,"method":"status","params":null}"#,
        ] {
            let e: Envelope<IgnoredAny> = serde_json::from_str(absent).unwrap();
            assert!(e.params.is_none(), "{absent}");
        }
        for bad in [
            r#"{"version":1,"method":"x","colour":1}"#,
            r#"{"method":"status"}"#,
            r#"{"version":1,"method":"apply","params":{"changes":[}}"#,
            "[1,2,3]",
        ] {
            assert!(
                serde_json::from_str::<Envelope<IgnoredAny>>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn decode_reads_requests_as_the_daemon_does() {
        let code = |line: &str| match decode(line) {
            Err(r) => {
                assert!(!r.ok);
                Some(r.error.unwrap().code)
            }
            Ok(_) => None,
        };
        match decode(
            r#"{"version":1,"id":7,"method":"apply","params":{"changes":[{"op":"router_create","name":"r1"}]}}"#,
        ) {
            Ok(Decoded::Apply { id: 7, changes }) => assert_eq!(changes.len(), 1),
            other => panic!("{other:?}"),
        }
        match decode(r#"{"version":1,"id":8,"method":"list","params":{"kind":"router"}}"#) {
            Ok(Decoded::Other(r)) => assert_eq!((r.id, r.method.as_str()), (8, "list")),
            other => panic!("{other:?}"),
        }
        assert_eq!(code("not json"), Some(ErrorCode::InvalidRequest));
        assert_eq!(
            code(r#"{"version":2,"id":1,"method":"apply"}"#),
            Some(ErrorCode::UnsupportedVersion)
        );
        let r = decode(r#"{"version":1,"id":9,"method":"apply"}"#).unwrap_err();
        assert_eq!(r.id, 9);
        let e = r.error.unwrap();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.starts_with("bad params: "), "{}", e.message);
        assert!(e.message.contains("changes"), "{}", e.message);
        assert_eq!(
            code(r#"{"version":1,"method":"apply","params":{"changes":[{"op":"x"}]}}"#),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(r#"{"version":1,"method":"list","colour":1}"#),
            Some(ErrorCode::InvalidRequest)
        );
    }
}
