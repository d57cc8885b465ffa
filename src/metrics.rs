//! The node's counters in Prometheus's text exposition format (version
//! 0.0.4), made from the same [`Stats`] answer `dvr-ctl show stats` reads:
//! what the `[metrics]` endpoint of dvr-pmd serves.
//!
//! Names follow Prometheus's conventions: a `dvr_` prefix, `_total` on
//! counters, base units (seconds, bytes), one family per quantity with the
//! interface, worker or reason as a label.

use std::fmt::Write;

use crate::proto::answers::Stats;

/// What the exposition says besides [`Stats`]: the generation of the model
/// the workers' tables were compiled from, and how long the last change
/// took to be published (seconds; None before one).
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra {
    pub tables_generation: u64,
    pub last_publish_seconds: Option<f64>,
}

/// One metric family being written: its `HELP` and `TYPE` once, then its
/// samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out }
}

/// A label value as the format wants it: backslash, quote and newline
/// escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition of `s` and `x`.
pub fn exposition(s: &Stats, x: &Extra) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let node = s.node.as_str();
    family(&mut out, "dvr_info", "gauge", "The node (always 1).").sample(
        "dvr_info",
        &[("node", node)],
        1,
    );
    family(
        &mut out,
        "dvr_uptime_seconds",
        "gauge",
        "Seconds since the node started forwarding.",
    )
    .sample("dvr_uptime_seconds", &[], s.t);
    family(
        &mut out,
        "dvr_tables_generation",
        "gauge",
        "The model generation of the tables the workers use.",
    )
    .sample("dvr_tables_generation", &[], x.tables_generation);
    if let Some(p) = x.last_publish_seconds {
        family(
            &mut out,
            "dvr_last_publish_seconds",
            "gauge",
            "How long the last committed model change took to reach the workers' tables.",
        )
        .sample("dvr_last_publish_seconds", &[], p);
    }

    type PortField = fn(&crate::proto::answers::PortStats) -> u64;
    let ports: [(&str, &str, PortField); 8] = [
        (
            "dvr_interface_rx_packets_total",
            "Packets received on the interface.",
            |p| p.rx_packets,
        ),
        (
            "dvr_interface_rx_bytes_total",
            "Bytes received on the interface.",
            |p| p.rx_bytes,
        ),
        (
            "dvr_interface_tx_packets_total",
            "Packets sent on the interface.",
            |p| p.tx_packets,
        ),
        (
            "dvr_interface_tx_bytes_total",
            "Bytes sent on the interface.",
            |p| p.tx_bytes,
        ),
        (
            "dvr_interface_rx_missed_total",
            "Packets the interface's driver could not receive (no room: imissed).",
            |p| p.imissed,
        ),
        (
            "dvr_interface_rx_errors_total",
            "The driver's receive errors.",
            |p| p.ierrors,
        ),
        (
            "dvr_interface_rx_nombuf_total",
            "Receive failures for want of packet buffers.",
            |p| p.rx_nombuf,
        ),
        (
            "dvr_interface_tx_errors_total",
            "The driver's transmit errors.",
            |p| p.oerrors,
        ),
    ];
    for (name, help, get) in ports {
        let mut f = family(&mut out, name, "counter", help);
        for p in &s.ports {
            f.sample(name, &[("interface", &p.name)], get(p));
        }
    }

    let mut f = family(
        &mut out,
        "dvr_drops_total",
        "counter",
        "Packets dropped (or answered instead of forwarded), by reason (dvr-ctl show errors --all).",
    );
    for (reason, n) in &s.drops {
        f.sample("dvr_drops_total", &[("reason", reason)], n);
    }

    type WorkerField = fn(&crate::proto::answers::WorkerStats) -> f64;
    let workers: [(&str, &str, &str, WorkerField); 12] = [
        (
            "dvr_worker_packets_total",
            "counter",
            "Packets the worker decided.",
            |w| w.packets as f64,
        ),
        (
            "dvr_worker_polls_total",
            "counter",
            "Polls of the worker's receive queues.",
            |w| w.polls as f64,
        ),
        (
            "dvr_worker_busy_polls_total",
            "counter",
            "Polls that found packets.",
            |w| w.busy_polls as f64,
        ),
        (
            "dvr_worker_cycles_total",
            "counter",
            "TSC cycles the worker spent polling, busy or idle (sleeps excluded).",
            |w| w.poll_cycles as f64,
        ),
        (
            "dvr_worker_busy_cycles_per_packet",
            "gauge",
            "Cycles per packet in the polls that found packets (what forwarding costs).",
            |w| w.busy_cycles_per_packet,
        ),
        (
            "dvr_worker_busy_ratio",
            "gauge",
            "The share of the worker's cycles spent on packets (0 to 1).",
            |w| w.busy_share,
        ),
        (
            "dvr_worker_nat_sessions",
            "gauge",
            "Sessions in the worker's SNAT table.",
            |w| w.nat_sessions as f64,
        ),
        (
            "dvr_worker_nat_sessions_created_total",
            "counter",
            "SNAT sessions the worker created.",
            |w| w.nat_sessions_created as f64,
        ),
        (
            "dvr_worker_flow_hits_total",
            "counter",
            "Frames that took the flow cache.",
            |w| w.flow_hits as f64,
        ),
        (
            "dvr_worker_flow_inserts_total",
            "counter",
            "Flows put in the flow cache.",
            |w| w.flow_inserts as f64,
        ),
        (
            "dvr_worker_handoff_out_total",
            "counter",
            "Frames handed to the worker owning their SNAT session.",
            |w| w.handoff_out as f64,
        ),
        (
            "dvr_worker_handoff_in_total",
            "counter",
            "Frames other workers handed to this one.",
            |w| w.handoff_in as f64,
        ),
    ];
    for (name, kind, help, get) in workers {
        let mut f = family(&mut out, name, kind, help);
        for w in &s.workers {
            let (id, core) = (w.worker.to_string(), w.core.to_string());
            f.sample(name, &[("worker", &id), ("core", &core)], get(w));
        }
    }
    let mut f = family(
        &mut out,
        "dvr_worker_rx_queue",
        "gauge",
        "The receive queues each worker polls (always 1).",
    );
    for w in &s.workers {
        let id = w.worker.to_string();
        for q in &w.rx_queues {
            let (iface, queue) = q.rsplit_once(":q").unwrap_or((q.as_str(), "0"));
            f.sample(
                "dvr_worker_rx_queue",
                &[("worker", &id), ("interface", iface), ("queue", queue)],
                1,
            );
        }
    }

    if let Some(m) = &s.metadata {
        let v = serde_json::to_value(m).unwrap_or_default();
        if let Some(o) = v.as_object() {
            for (k, n) in o {
                let Some(n) = n.as_u64() else { continue };
                let name = format!("dvr_metadata_{k}_total");
                family(
                    &mut out,
                    &name,
                    "counter",
                    &format!("The metadata proxy's {} count.", k.replace('_', " ")),
                )
                .sample(&name, &[], n);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::answers::{PortStats, WorkerStats};

    #[test]
    fn families_once_samples_labelled_values_escaped() {
        let mut s = Stats {
            node: "cn\"1".into(),
            t: 1.5,
            is_final: false,
            tsc_hz: 1,
            ports: vec![PortStats {
                name: "vm-a".into(),
                rates: None,
                rx_packets: 7,
                rx_bytes: 700,
                tx_packets: 0,
                tx_bytes: 0,
                imissed: 0,
                ierrors: 0,
                rx_nombuf: 0,
                oerrors: 0,
            }],
            drops: [("runt_frame".to_owned(), 3)].into_iter().collect(),
            workers: vec![],
            metadata: None,
        };
        s.workers.push(
            serde_json::from_value::<WorkerStats>(serde_json::json!({
                "worker": 0, "core": 1, "packets": 7, "polls": 10, "busy_polls": 2,
                "poll_cycles": 1000, "cycles_per_packet": 142.8, "sampled_packets": 0,
                "sampled_cycles": 0, "sampled_rx_cycles": 0, "sampled_tx_cycles": 0,
                "cycles_per_packet_split": null, "nat_sessions": 0, "nat_sessions_created": 0,
                "flow_hits": 0, "flow_inserts": 0, "decap_way": 0, "snat_way": 0,
                "rx_queues": ["vm-a:q0", "vm-b:q1"]
            }))
            .unwrap(),
        );
        let text = exposition(
            &s,
            &Extra {
                tables_generation: 4,
                last_publish_seconds: Some(0.0002),
            },
        );
        assert!(text.contains("dvr_info{node=\"cn\\\"1\"} 1\n"), "{text}");
        assert!(text.contains("dvr_interface_rx_packets_total{interface=\"vm-a\"} 7\n"));
        assert!(text.contains("dvr_drops_total{reason=\"runt_frame\"} 3\n"));
        assert!(text.contains("dvr_worker_packets_total{worker=\"0\",core=\"1\"} 7\n"));
        assert!(
            text.contains("dvr_worker_rx_queue{worker=\"0\",interface=\"vm-b\",queue=\"1\"} 1\n")
        );
        assert!(text.contains("dvr_tables_generation 4\n"));
        // Each family's HELP and TYPE once, before its samples.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
        }
    }
}
