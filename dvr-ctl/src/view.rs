//! The daemon's answers for people: tables over the typed answers
//! (`dvr::proto::answers`, the model's objects), as the openstack client
//! prints them.

use dvr::model::{FloatingIp, Host, Kind, Network, Router, Subnet};
use dvr::proto::answers::{
    Committed, FdbEntry, FibEntry, NatEntry, NeighborEntry, NextHop, Sessions, Stats, Status,
    Table, TableKind, Trace, WorkerStats,
};
use dvr::proto::iface::{IfaceInfo, PortView};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{Format, ShowKind};
use crate::client::answer;

/// A value of an object's serde form in one cell: lists joined by `, `,
/// objects as `key=value,...`, null empty.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// An optional value in a cell: empty when absent.
fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(String::new, T::to_string)
}

/// How views print (`-f`, `-c`), set once by `main`.
static OUTPUT: std::sync::OnceLock<(Format, Vec<String>)> = std::sync::OnceLock::new();

/// Sets the output format and the columns to keep (none: all).
pub fn set_output(format: Format, columns: Vec<String>) {
    let _ = OUTPUT.set((format, columns));
}

fn output() -> (Format, &'static [String]) {
    OUTPUT
        .get()
        .map_or((Format::Table, &[][..]), |(f, c)| (*f, c.as_slice()))
}

/// The columns of `headers` that `-c` keeps, in its order (all without
/// `-c`); an unknown one ends dvr-ctl with the names it has.
fn selected(headers: &[&str], columns: &[String]) -> Vec<usize> {
    if columns.is_empty() {
        return (0..headers.len()).collect();
    }
    columns
        .iter()
        .map(|c| {
            headers.iter().position(|h| h == c).unwrap_or_else(|| {
                eprintln!("dvr-ctl: no column {c:?}; columns: {}", headers.join(", "));
                std::process::exit(1)
            })
        })
        .collect()
}

fn table(headers: &[&str], rows: &[Vec<String>]) {
    let (format, columns) = output();
    let keep = selected(headers, columns);
    let headers: Vec<&str> = keep.iter().map(|&i| headers[i]).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            keep.iter()
                .map(|&i| r.get(i).cloned().unwrap_or_default())
                .collect()
        })
        .collect();
    match format {
        Format::Table => boxed(&headers, &rows),
        Format::Value => {
            for r in &rows {
                dvr::outln!("{}", r.join(" "));
            }
        }
        Format::Csv => {
            let line = |cells: &mut dyn Iterator<Item = &str>| {
                cells
                    .map(|c| {
                        if c.contains([',', '"', '\n']) {
                            format!("\"{}\"", c.replace('"', "\"\""))
                        } else {
                            c.to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            dvr::outln!("{}", line(&mut headers.iter().copied()));
            for r in &rows {
                dvr::outln!("{}", line(&mut r.iter().map(String::as_str)));
            }
        }
        Format::Json => {
            let objs: Vec<serde_json::Map<String, Value>> = rows
                .iter()
                .map(|r| {
                    headers
                        .iter()
                        .zip(r)
                        .map(|(h, c)| (h.to_string(), Value::String(c.clone())))
                        .collect()
                })
                .collect();
            dvr::outln!(
                "{}",
                serde_json::to_string_pretty(&objs).unwrap_or_default()
            );
        }
    }
}

/// A table with borders, as the openstack client prints one.
fn boxed(headers: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let sep: String = w
        .iter()
        .map(|n| format!("+{}", "-".repeat(n + 2)))
        .collect::<String>()
        + "+";
    dvr::outln!("{sep}");
    dvr::outln!(
        "{}|",
        headers
            .iter()
            .zip(&w)
            .map(|(h, n)| format!("| {h:<n$} "))
            .collect::<String>()
    );
    dvr::outln!("{sep}");
    for r in rows {
        dvr::outln!(
            "{}|",
            r.iter()
                .zip(&w)
                .map(|(c, n)| format!("| {c:<n$} "))
                .collect::<String>()
        );
    }
    dvr::outln!("{sep}");
}

/// One object, a row per field of its serde form, in name order.
fn fields(obj: &impl Serialize) {
    let (format, columns) = output();
    let o = match serde_json::to_value(obj) {
        Ok(Value::Object(o)) => o,
        _ => Default::default(),
    };
    // `-c`: these fields, in this order.
    let names: Vec<&String> = if columns.is_empty() {
        o.keys().collect()
    } else {
        let all: Vec<&str> = o.keys().map(String::as_str).collect();
        selected(&all, columns)
            .into_iter()
            .map(|i| o.keys().nth(i).expect("a key"))
            .collect()
    };
    match format {
        Format::Table | Format::Csv => {
            let rows: Vec<Vec<String>> = names
                .iter()
                .map(|k| vec![k.to_string(), cell(&o[*k])])
                .collect();
            if format == Format::Table {
                boxed(&["Field", "Value"], &rows)
            } else {
                dvr::outln!("Field,Value");
                for r in rows {
                    dvr::outln!("{},{}", r[0], r[1]);
                }
            }
        }
        // One value a line, in the fields' order.
        Format::Value => {
            for k in names {
                dvr::outln!("{}", cell(&o[k]));
            }
        }
        Format::Json => {
            let m: serde_json::Map<String, Value> = names
                .iter()
                .map(|k| (k.to_string(), o[*k].clone()))
                .collect();
            dvr::outln!("{}", serde_json::to_string_pretty(&m).unwrap_or_default());
        }
    }
}

/// `apply`: each object changed, `KIND NAME`.
pub fn applied(result: Value) -> Result<(), String> {
    let c: Committed = answer(result)?;
    for a in c.applied.iter() {
        dvr::outln!("{} {}", a.kind.name().replace('_', " "), a.name);
    }
    Ok(())
}

/// `KIND show NAME`.
pub fn object(kind: Kind, result: Value) -> Result<(), String> {
    match kind {
        Kind::Host => fields(&answer::<Host>(result)?),
        Kind::Network => fields(&answer::<Network>(result)?),
        Kind::Subnet => {
            // Every DHCP field, defaults too (the model leaves them out).
            let sub: Subnet = answer(result)?;
            let mut v = serde_json::to_value(&sub).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut v {
                o.insert("enable_dhcp".into(), sub.enable_dhcp.into());
                o.insert(
                    "dns_nameservers".into(),
                    serde_json::json!(sub.dns_nameservers),
                );
                o.insert("host_routes".into(), serde_json::json!(sub.host_routes));
                if sub.cidr.addr().is_ipv6() {
                    let m = |m: Option<dvr::model::Ipv6Mode>| m.map_or("none", |m| m.as_str());
                    o.insert("ipv6_ra_mode".into(), m(sub.ipv6_ra_mode).into());
                    o.insert("ipv6_address_mode".into(), m(sub.ipv6_address_mode).into());
                }
            }
            fields(&v)
        }
        Kind::Port => fields(&answer::<PortView>(result)?),
        Kind::Router => fields(&answer::<Router>(result)?),
        Kind::FloatingIp => fields(&answer::<FloatingIp>(result)?),
    }
    Ok(())
}

/// `KIND list`: the main fields of each object.
pub fn list(kind: Kind, result: Value) -> Result<(), String> {
    fn rows<T: serde::de::DeserializeOwned>(
        result: Value,
        row: impl Fn(&T) -> Vec<String>,
    ) -> Result<Vec<Vec<String>>, String> {
        Ok(answer::<Vec<T>>(result)?.iter().map(row).collect())
    }
    match kind {
        Kind::Host => table(
            &["name", "agent_mode", "vtep", "dvr_mac"],
            &rows(result, |h: &Host| {
                vec![
                    h.name.clone(),
                    h.agent_mode.name().into(),
                    opt(&h.vtep),
                    opt(&h.dvr_mac),
                ]
            })?,
        ),
        Kind::Network => table(
            &["name", "network_type", "segment", "mtu", "external"],
            &rows(result, |n: &Network| {
                vec![
                    n.name.clone(),
                    n.network_type.to_string(),
                    opt(&n.segment),
                    n.mtu.to_string(),
                    n.external.to_string(),
                ]
            })?,
        ),
        Kind::Subnet => table(
            &["name", "network", "cidr", "gateway_ip"],
            &rows(result, |s: &Subnet| {
                vec![
                    s.name.clone(),
                    s.network.clone(),
                    s.cidr.to_string(),
                    opt(&s.gateway_ip),
                ]
            })?,
        ),
        Kind::Port => table(
            &["name", "network", "mac", "fixed_ips", "host", "status"],
            &rows(result, |v: &PortView| {
                let p = &v.port;
                let ips: Vec<String> = p
                    .fixed_ips
                    .iter()
                    .map(|f| format!("ip={},subnet={}", f.ip, f.subnet))
                    .collect();
                vec![
                    p.name.clone(),
                    p.network.clone(),
                    p.mac.to_string(),
                    ips.join(", "),
                    opt(&p.host),
                    opt(&v.status),
                ]
            })?,
        ),
        Kind::Router => table(
            &["name", "admin_state_up", "distributed", "ha"],
            &rows(result, |r: &Router| {
                vec![
                    r.name.clone(),
                    r.admin_state_up.to_string(),
                    r.distributed.to_string(),
                    r.ha.to_string(),
                ]
            })?,
        ),
        Kind::FloatingIp => table(
            &["address", "network", "port", "fixed_ip", "router"],
            &rows(result, |f: &FloatingIp| {
                vec![
                    f.address.to_string(),
                    f.network.clone(),
                    opt(&f.port),
                    opt(&f.fixed_ip),
                    opt(&f.router),
                ]
            })?,
        ),
    }
    Ok(())
}

/// `show status|ports` (from the `status` answer), `show stats|errors|runtime`
/// (from the `stats` answer).
pub fn node(what: ShowKind, all: bool, result: Value) -> Result<(), String> {
    match what {
        ShowKind::Status => fields(&answer::<Status>(result)?),
        ShowKind::Ports => ports(&answer(result)?),
        ShowKind::Errors => errors(&answer(result)?, all),
        ShowKind::Runtime => runtime(&answer(result)?),
        _ => stats(&answer(result)?),
    }
    Ok(())
}

fn ports(s: &Status) {
    let rows: Vec<Vec<String>> = s
        .ports
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.id.to_string(),
                p.mac.to_string(),
                p.link_up.to_string(),
            ]
        })
        .collect();
    table(&["port", "id", "mac", "link up"], &rows);
}

fn stats(s: &Stats) {
    let rows: Vec<Vec<String>> = s
        .ports
        .iter()
        .map(|p| {
            let mut r = [
                p.rx_packets,
                p.rx_bytes,
                p.tx_packets,
                p.tx_bytes,
                p.imissed,
            ]
            .iter()
            .fold(vec![p.name.clone()], |mut r, n| {
                r.push(n.to_string());
                r
            });
            // Rates over the last second (none in the daemon's first).
            match &p.rates {
                Some(x) => r.extend([
                    format!("{:.0}", x.rx_pps),
                    format!("{:.0}", x.tx_pps),
                    format!("{:.1}", x.rx_bps / 1e6),
                    format!("{:.1}", x.tx_bps / 1e6),
                ]),
                None => r.extend(std::iter::repeat_n(String::new(), 4)),
            }
            r
        })
        .collect();
    table(
        &[
            "port",
            "rx packets",
            "rx bytes",
            "tx packets",
            "tx bytes",
            "missed",
            "rx pkt/s",
            "tx pkt/s",
            "rx Mbit/s",
            "tx Mbit/s",
        ],
        &rows,
    );
}

/// The drop reasons that counted something (`all`: every one), with what
/// each means.
fn errors(s: &Stats, all: bool) {
    let rows: Vec<Vec<String>> = s
        .drops
        .iter()
        .filter(|(_, n)| all || **n > 0)
        .map(|(reason, n)| {
            let what = dvr::stats::DropReason::ALL
                .iter()
                .find(|r| r.name() == reason)
                .map_or("", |r| r.describe());
            vec![n.to_string(), reason.clone(), what.to_owned()]
        })
        .collect();
    if rows.is_empty() && output().0 == Format::Table {
        dvr::outln!(
            "no drops ({} reasons, all at zero; --all lists them)",
            s.drops.len()
        );
        return;
    }
    table(&["count", "reason", "what"], &rows);
}

fn runtime(s: &Stats) {
    table(
        &[
            "worker",
            "core",
            "packets",
            "busy cycles/packet",
            "rx",
            "dvr",
            "tx",
            "busy cycles",
            "all cycles/packet",
            "packets/poll",
            "busy polls",
            "nat sessions",
            "nat created",
            "flow hits",
            "flows cached",
            "decap way",
            "snat way",
            "handoff out/in",
            "rx queues",
        ],
        &s.workers.iter().map(runtime_row).collect::<Vec<_>>(),
    );
}

/// A worker's row of `show runtime`: its parts of the cycles per packet are
/// empty before the first sampled poll.
fn runtime_row(w: &WorkerStats) -> Vec<String> {
    let polls = w.polls as f64;
    let busy = w.busy_polls as f64;
    let pk = w.packets as f64;
    // The split of the busy cycles per packet (the daemon's split is of
    // all cycles per packet: the same shares).
    let part = |f: fn(&dvr::proto::answers::CycleSplit) -> f64| {
        w.cycles_per_packet_split
            .as_ref()
            .filter(|_| w.cycles_per_packet > 0.0)
            .map_or(String::new(), |s| {
                format!(
                    "{:.1}",
                    f(s) * w.busy_cycles_per_packet / w.cycles_per_packet
                )
            })
    };
    vec![
        w.worker.to_string(),
        w.core.to_string(),
        w.packets.to_string(),
        format!("{:.1}", w.busy_cycles_per_packet),
        part(|s| s.rx),
        part(|s| s.work),
        part(|s| s.tx),
        format!("{:.1}%", 100.0 * w.busy_share),
        format!("{:.1}", w.cycles_per_packet),
        format!("{:.1}", if busy > 0.0 { pk / busy } else { 0.0 }),
        format!(
            "{:.1}%",
            if polls > 0.0 {
                100.0 * busy / polls
            } else {
                0.0
            }
        ),
        w.nat_sessions.to_string(),
        w.nat_sessions_created.to_string(),
        w.flow_hits.to_string(),
        w.flow_inserts.to_string(),
        w.decap_way.to_string(),
        w.snat_way.to_string(),
        format!("{}/{}", w.handoff_out, w.handoff_in),
        w.rx_queues.join(" "),
    ]
}

/// `show fib|neighbors|nat|fdb|sessions`.
pub fn tables(what: TableKind, result: Value) -> Result<(), String> {
    match what {
        TableKind::Fib => fib(&answer(result)?),
        TableKind::Neighbors => neighbors(&answer(result)?),
        TableKind::Nat => nat(&answer(result)?),
        TableKind::Fdb => fdb(&answer(result)?),
        TableKind::Sessions => sessions(&answer(result)?),
    }
    Ok(())
}

fn fib(t: &Table<FibEntry>) {
    let rows: Vec<Vec<String>> = t
        .entries
        .iter()
        .map(|e| {
            let hop = match e.next_hop {
                NextHop::Connected { iface } => match &e.subnet {
                    Some(s) => format!("connected (subnet {s})"),
                    None => format!("connected (interface {iface})"),
                },
                NextHop::Via { via } => format!("via {via}"),
            };
            vec![e.router.clone(), e.prefix.clone(), hop]
        })
        .collect();
    table(&["router", "prefix", "next hop"], &rows);
}

fn neighbors(t: &Table<NeighborEntry>) {
    let rows: Vec<Vec<String>> = t
        .entries
        .iter()
        .map(|e| {
            vec![
                e.router.clone(),
                e.ip.clone(),
                e.mac.clone(),
                e.port.clone(),
                e.location.clone(),
            ]
        })
        .collect();
    table(&["router", "ip", "mac", "port", "location"], &rows);
}

fn nat(t: &Table<NatEntry>) {
    let rows: Vec<Vec<String>> = t
        .entries
        .iter()
        .map(|e| {
            vec![
                e.router.clone(),
                e.kind.name().into(),
                e.external.clone(),
                e.internal.clone(),
                opt(&e.port),
                e.at.clone(),
            ]
        })
        .collect();
    table(
        &["router", "type", "external", "internal", "port", "where"],
        &rows,
    );
}

fn fdb(t: &Table<FdbEntry>) {
    let rows: Vec<Vec<String>> = t
        .entries
        .iter()
        .map(|e| {
            let local = e.local.as_ref();
            vec![
                e.network.clone(),
                e.mac.clone(),
                e.location.clone(),
                local.map_or_else(String::new, |l| opt(&l.port)),
                local.map_or_else(String::new, |l| opt(&l.dataplane_port)),
            ]
        })
        .collect();
    table(
        &["network", "mac", "location", "port", "dataplane port"],
        &rows,
    );
}

/// The sessions listed, how many there are, and the workers that did not
/// answer (on standard error).
fn sessions(s: &Sessions) {
    let rows: Vec<Vec<String>> = s
        .entries
        .iter()
        .map(|e| {
            vec![
                e.router.clone(),
                e.protocol.clone(),
                e.inside.clone(),
                e.outside.clone(),
                e.remote.clone(),
                e.state.clone(),
                format!("{:.1}", e.idle_s),
            ]
        })
        .collect();
    table(
        &[
            "router", "protocol", "inside", "outside", "remote", "state", "idle s",
        ],
        &rows,
    );
    let listed = s.entries.len();
    let total = s.total;
    if total as usize > listed {
        dvr::outln!(
            "{total} sessions, {listed} listed (at most {} per worker)",
            s.limit_per_worker
        );
    } else {
        dvr::outln!("{total} sessions");
    }
    for w in &s.unanswered {
        eprintln!(
            "dvr-ctl: worker {} (core {}) did not answer in time: its sessions are missing",
            w.worker, w.core
        );
    }
}

/// `trace`: a line per stage, its fields after it.
pub fn trace(frame: Option<&[u8]>, result: Value) -> Result<(), String> {
    let t: Trace = answer(result)?;
    for st in &t.stages {
        let rest: Vec<String> = st
            .fields()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        dvr::outln!("{:<14} {}", st.stage, rest.join(" "));
        // The frame that came in, and each one that goes out, decoded.
        let bytes = match (st.stage.as_str(), &st.frame) {
            ("ingress", _) => frame.map(<[u8]>::to_vec),
            (_, Some(h)) => unhex(h),
            _ => None,
        };
        for line in bytes.iter().flat_map(|b| crate::decode::describe(b)) {
            dvr::outln!("{:<14}   {line}", "");
        }
    }
    Ok(())
}

/// `capture start|stop`: the file and how far it got.
pub fn capture(result: Value) -> Result<(), String> {
    let c: dvr::proto::answers::CaptureInfo = answer(result)?;
    fields(&c);
    Ok(())
}

/// `show trace` (and what `trace add` / `trace clear` leave): each frame
/// marked, decoded, with each stage's decision.
pub fn live_trace(result: Value) -> Result<(), String> {
    let t: dvr::proto::answers::LiveTrace = answer(result)?;
    match &t.armed {
        Some(i) => dvr::outln!("tracing {i}: {} more frames to mark", t.remaining),
        None => dvr::outln!("not tracing (dvr-ctl trace add INTERFACE COUNT)"),
    }
    for f in &t.frames {
        dvr::outln!(
            "\nframe {} on {} (worker {}, {} bytes)",
            f.seq,
            f.interface,
            f.worker,
            f.length
        );
        for line in unhex(&f.head)
            .iter()
            .flat_map(|b| crate::decode::describe(b))
        {
            dvr::outln!("{:<14}   {line}", "");
        }
        for st in &f.stages {
            let rest: Vec<String> = st
                .fields()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            dvr::outln!("{:<14} {}", st.stage, rest.join(" "));
        }
        if f.lost_notes > 0 {
            dvr::outln!("{:<14} ({} more decisions not kept)", "", f.lost_notes);
        }
    }
    Ok(())
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `interface list|show|add|delete`.
pub fn interface(method: &str, result: Value) -> Result<(), String> {
    match method {
        "interface_list" => {
            let list: Vec<IfaceInfo> = answer(result)?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|i| {
                    vec![
                        i.name.clone(),
                        i.kind.clone(),
                        i.role.clone(),
                        i.origin.clone(),
                        if i.link_up { "up" } else { "down" }.into(),
                        i.rx_queues.to_string(),
                        polled_by(i),
                        i.bound.join(", "),
                    ]
                })
                .collect();
            table(
                &[
                    "name",
                    "type",
                    "role",
                    "origin",
                    "link",
                    "rx_queues",
                    "polled_by",
                    "bound",
                ],
                &rows,
            );
        }
        "interface_delete" => {
            let name = result.get("deleted").map(cell).unwrap_or_default();
            dvr::outln!("interface {name} deleted");
        }
        _ => {
            let i: IfaceInfo = answer(result)?;
            let mut rows = vec![
                vec!["name".into(), i.name.clone()],
                vec!["index".into(), i.index.to_string()],
                vec!["type".into(), i.kind.clone()],
                vec!["role".into(), i.role.clone()],
                vec!["origin".into(), i.origin.clone()],
                vec!["driver".into(), i.driver.clone()],
                vec!["device".into(), i.device.clone()],
            ];
            if let Some(s) = &i.socket {
                rows.push(vec!["socket".into(), s.display().to_string()]);
                let role = if i.client { "client" } else { "server" };
                rows.push(vec!["vhost_role".into(), role.into()]);
            }
            if let Some(l) = &i.iface {
                rows.push(vec!["iface".into(), l.clone()]);
            }
            rows.extend([
                vec!["mac".into(), i.mac.to_string()],
                vec!["link".into(), if i.link_up { "up" } else { "down" }.into()],
                vec!["rx_queues".into(), i.rx_queues.to_string()],
                vec!["tx_queues".into(), i.tx_queues.to_string()],
                vec!["polled_by".into(), polled_by(&i)],
                vec!["bound_ports".into(), i.bound.join(", ")],
                vec!["rx_packets".into(), i.rx_packets.to_string()],
                vec!["rx_bytes".into(), i.rx_bytes.to_string()],
                vec!["tx_packets".into(), i.tx_packets.to_string()],
                vec!["tx_bytes".into(), i.tx_bytes.to_string()],
            ]);
            table(&["Field", "Value"], &rows);
        }
    }
    Ok(())
}

/// `queue 0: worker 1 (core 1), ...`
fn polled_by(i: &IfaceInfo) -> String {
    i.polled_by
        .iter()
        .map(|p| format!("q{}: worker {} (core {})", p.queue, p.worker, p.core))
        .collect::<Vec<_>>()
        .join(", ")
}
