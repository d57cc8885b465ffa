//! `dvr-ctl`: drives a dvr-pmd with the verbs of the openstack client
//! (`dvr-ctl router set --disable r1`, `dvr-ctl floating ip set --port p1 IP`), and
//! shows what the daemon does (`dvr-ctl show stats`).
//!
//! Exit codes: 0 done, 1 refused (by the daemon or a bad command line), 2 the
//! daemon could not be reached. Output goes through `dvr::outln!`: a standard
//! output whose reader is gone (`dvr-ctl show errors | head -1`) ends dvr-ctl
//! as it ends `cat`, killed by SIGPIPE without a word (see `dvr::cli`).

mod cli;
mod client;
mod decode;
mod view;

use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use dvr::model::{Change, Kind};
use serde_json::{json, Value};

use cli::{Call, Cli, ShowKind};

const EXIT_REFUSED: u8 = 1;
const EXIT_UNREACHABLE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_REFUSED } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // What needs no daemon: completions and the manual page.
    match &cli.cmd {
        cli::Cmd::Completion { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "dvr-ctl", &mut out);
            dvr::cli::print(format_args!("{}", String::from_utf8_lossy(&out)));
            return ExitCode::SUCCESS;
        }
        cli::Cmd::Man => {
            let mut out = Vec::new();
            if let Err(e) = clap_mangen::Man::new(Cli::command()).render(&mut out) {
                eprintln!("dvr-ctl: cannot render the manual page: {e}");
                return ExitCode::from(EXIT_REFUSED);
            }
            dvr::cli::print(format_args!("{}", String::from_utf8_lossy(&out)));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    view::set_output(cli.format, cli.columns.clone());
    let call = match cli.cmd.call() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dvr-ctl: {e}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let socket = match client::socket_path(&cli.socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dvr-ctl: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let (method, params) = request_of(&call);
    let resp = match client::request(&socket, method, params) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dvr-ctl: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    if !resp.ok {
        let msg = resp
            .error
            .map(|e| e.message)
            .unwrap_or_else(|| "refused".into());
        eprintln!("dvr-ctl: {msg}");
        return ExitCode::from(EXIT_REFUSED);
    }
    let result = resp.result.unwrap_or(Value::Null);
    if let Call::Apply(changes) = &call {
        warn_unbound(&socket, changes);
    }
    if cli.json {
        // The daemon's answer as it came (keys in name order).
        dvr::outln!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let shown = match call {
        // As the openstack client: `create` prints the object made.
        Call::Apply(changes) if creates_one(&changes) => created(&socket, result),
        Call::Apply(_) => view::applied(result),
        Call::Show(kind, _) => view::object(kind, result),
        Call::List(kind) => view::list(kind, result),
        Call::View(what, all) => view::node(what, all, result),
        Call::Tables(what, _) => view::tables(what, result),
        Call::Trace(p) => view::trace(p.frame().ok().as_deref(), result),
        Call::Interface(method, _) => view::interface(method, result),
        Call::Live("capture_start" | "capture_stop" | "capture_show", _) => view::capture(result),
        Call::Live(..) => view::live_trace(result),
    };
    match shown {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dvr-ctl: {e}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// Whether `changes` is one `... create`.
fn creates_one(changes: &[Change]) -> bool {
    matches!(
        changes,
        [Change::NetworkCreate { .. }
            | Change::SubnetCreate { .. }
            | Change::PortCreate { .. }
            | Change::RouterCreate { .. }
            | Change::FloatingIpCreate { .. }]
    )
}

/// The object a committed `create` made, shown as `KIND show` shows it.
fn created(socket: &Path, result: Value) -> Result<(), String> {
    let c: dvr::proto::answers::Committed = client::answer(result)?;
    let a = c.applied.first().ok_or("the daemon named no object")?;
    let resp = client::request(socket, "show", json!({ "kind": a.kind, "name": a.name }))
        .map_err(|e| e.to_string())?;
    view::object(a.kind, resp.result.unwrap_or(Value::Null))
}

/// The method and params of a call.
fn request_of(call: &Call) -> (&'static str, Value) {
    match call {
        Call::Apply(changes) => ("apply", json!({ "changes": changes })),
        Call::Show(kind, name) => ("show", json!({ "kind": kind, "name": name })),
        Call::List(kind) => ("list", json!({ "kind": kind })),
        Call::View(ShowKind::Status | ShowKind::Ports, _) => ("status", Value::Null),
        Call::View(..) => ("stats", Value::Null),
        Call::Tables(what, router) => ("tables", json!({ "what": what.name(), "router": router })),
        Call::Trace(p) => ("trace", json!(p)),
        Call::Interface(method, params) => (method, params.clone()),
        Call::Live(method, params) => (method, params.clone()),
    }
}

/// After `port set` / `port unset` were applied: a warning on standard
/// error for each such port left with a binding and no host, which binds it
/// nowhere (the model accepts it, as Neutron accepts a port without
/// `binding:host_id`).
fn warn_unbound(socket: &Path, changes: &[Change]) {
    for c in changes {
        let (Change::PortSet { name, .. } | Change::PortUnset { name, .. }) = c else {
            continue;
        };
        let Ok(resp) = client::request(socket, "show", json!({ "kind": Kind::Port, "name": name }))
        else {
            continue;
        };
        let Ok(dvr::proto::iface::PortView { port, .. }) =
            client::answer(resp.result.unwrap_or(Value::Null))
        else {
            continue;
        };
        if let (Some(b), None) = (&port.binding, &port.host) {
            eprintln!(
                "dvr-ctl: warning: port {name} has binding {b} but no host: it is bound nowhere \
                 (port set --host HOST {name})"
            );
        }
    }
}
