//! Control-plane benchmark: a running dvr-pmd forwards (two pcap ports replaying
//! at each other) while the model grows to 10k routers, 1M extra routes and 100k
//! floating IPs through the control socket, in batched transactions; every
//! committed transaction is validated, compiled into a new snapshot, published to
//! the worker and made durable (journal) before its reply.
//!
//! The batched rates are the daemon's: the request lines are built before the
//! timed sections (100 routers, 10,000 routes, per transaction; 10,000 floating
//! IPs per transaction), so that the client, which shares the control thread's
//! core on a small machine, only writes lines and reads the replies' timings.
//!
//! Prints: route changes/s and FIP changes/s (batched), the latency of a single
//! change from the daemon receiving the request to the new snapshot being
//! published (the worker uses it from its next burst; measured in the daemon and
//! returned as `publish_us`) and the client's round trip including the journal's
//! fsync, p50/p99, the daemon's
//! resident memory before and after (model + snapshots + everything), and the
//! forwarding rate while changes are applied against the rate without.
//!
//! Run: `scripts/bench control`. `DVR_BENCH_SCALE` (default 1.0) scales the
//! counts down for a quick run.

#[path = "harness.rs"]
mod harness;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Client(BufReader<UnixStream>, f64, f64);

impl Client {
    fn call(&mut self, method: &str, params: Value) -> Value {
        let req = json!({"version": 1, "method": method, "params": params});
        let s = self.0.get_mut();
        s.write_all(format!("{req}\n").as_bytes()).unwrap();
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        let r: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(r["ok"], true, "{method}: {r}");
        r["result"].clone()
    }

    /// Daemon-side seconds (to published, to durable) summed since the last call.
    fn take(&mut self) -> (f64, f64) {
        let t = (self.1 / 1e6, self.2 / 1e6);
        self.1 = 0.0;
        self.2 = 0.0;
        t
    }

    fn apply(&mut self, changes: Vec<Value>) -> Value {
        let r = self.call("apply", json!({ "changes": changes }));
        self.1 += r["publish_us"].as_f64().unwrap_or(0.0);
        self.2 += r["durable_us"].as_f64().unwrap_or(0.0);
        r
    }

    /// Sends a request line built by [`apply_line`] and reads only the timings
    /// of the reply (the list of applied changes is skipped, not built).
    fn apply_line(&mut self, line: &str) {
        #[derive(serde::Deserialize)]
        struct Reply {
            ok: bool,
            result: Option<Timings>,
            error: Option<Value>,
        }
        #[derive(serde::Deserialize)]
        struct Timings {
            publish_us: f64,
            durable_us: f64,
        }
        self.0.get_mut().write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        self.0.read_line(&mut reply).unwrap();
        let r: Reply = serde_json::from_str(&reply).unwrap();
        assert!(r.ok, "apply: {:?}", r.error);
        let t = r.result.expect("a committed transaction's result");
        self.1 += t.publish_us;
        self.2 += t.durable_us;
    }
}

/// An `apply` request line (newline included) for `changes`.
fn apply_line(changes: &[Value]) -> String {
    let req = json!({"version": 1, "method": "apply", "params": {"changes": changes}});
    format!("{req}\n")
}

fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Sum of tx packets over the daemon's ports, from its status/stats.
fn tx_total(c: &mut Client) -> u64 {
    let v = c.call("stats", Value::Null);
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tx_packets"].as_u64().unwrap())
        .sum()
}

fn rate(c: &mut Client, during: impl FnOnce(&mut Client)) -> (f64, f64) {
    let t0 = Instant::now();
    let p0 = tx_total(c);
    during(c);
    let dt = t0.elapsed().as_secs_f64();
    ((tx_total(c) - p0) as f64 / dt / 1e6, dt)
}

fn main() {
    let scale: f64 = harness::env_or("DVR_BENCH_SCALE", 1.0);
    let routers = ((10_000.0 * scale) as usize).max(10);
    let routes_per_router = 100usize;
    let fips = ((100_000.0 * scale) as usize).max(10);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = harness::pcap_pair(d, 60, 64);
    let extra = format!(
        "[stats]\ninterval_ms = 0\n[control]\nsocket = \"{d}/ctl.sock\"\nstate_file = \"{d}/state/model.json\"",
        d = d.display()
    );
    let cfg = harness::node_config(d, &a, &b, 1, &extra);
    std::fs::write(d.join("node.toml"), cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvr-pmd"))
        .arg("--config")
        .arg(d.join("node.toml"))
        .env("DVR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| harness::cannot_measure(format!("cannot start dvr-pmd: {e}")));
    let pid = child.id();
    let sock = d.join("ctl.sock");
    let t0 = Instant::now();
    let conn = loop {
        if let Ok(c) = UnixStream::connect(&sock) {
            break c;
        }
        if let Ok(Some(st)) = child.try_wait() {
            // Its own error is on standard error, above.
            harness::cannot_measure(format!(
                "dvr-pmd ended ({st}) before its control socket was up"
            ));
        }
        if t0.elapsed() > Duration::from_secs(30) {
            harness::cannot_measure(format!("no control socket {} after 30 s", sock.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut c = Client(BufReader::new(conn), 0.0, 0.0);
    std::thread::sleep(Duration::from_secs(1));
    let rss0 = rss_mib(pid);
    let (idle_mpps, _) = rate(&mut c, |_| std::thread::sleep(Duration::from_secs(2)));

    // Topology: one external network, `routers` routers each with its own
    // network, subnet and gateway.
    c.apply(vec![
        json!({"op": "host_set", "name": "bench", "agent_mode": "dvr"}),
        json!({"op": "network_create", "name": "ext", "network_type": "flat", "external": true}),
        json!({"op": "subnet_create", "name": "ext-s", "network": "ext", "cidr": "100.64.0.0/12"}),
    ]);
    let sub = |i: usize| format!("10.{}.{}", i >> 8, i & 255);
    let t = Instant::now();
    let mut batch = Vec::new();
    for i in 0..routers {
        batch.push(json!({"op": "network_create", "name": format!("n{i}"), "network_type": "vxlan", "segment": i + 1}));
        batch.push(json!({"op": "subnet_create", "name": format!("s{i}"), "network": format!("n{i}"), "cidr": format!("{}.0/24", sub(i))}));
        batch.push(json!({"op": "router_create", "name": format!("r{i}")}));
        batch.push(json!({"op": "router_add_subnet", "router": format!("r{i}"), "subnet": format!("s{i}")}));
        batch.push(json!({"op": "router_set", "name": format!("r{i}"), "external_gateway": {"network": "ext"}}));
        if batch.len() >= 1000 {
            c.apply(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        c.apply(std::mem::take(&mut batch));
    }
    let topo_s = t.elapsed().as_secs_f64();

    // Routes: 100 per router, 100 routers (10,000 routes) per transaction, while
    // the worker forwards.
    let total_routes = routers * routes_per_router;
    let route_changes: Vec<Value> = (0..routers)
        .map(|i| {
            let routes: Vec<Value> = (0..routes_per_router)
                .map(|k| json!({"destination": format!("192.168.{k}.0/24"), "nexthop": format!("{}.5", sub(i))}))
                .collect();
            json!({"op": "router_set", "name": format!("r{i}"), "routes": routes})
        })
        .collect();
    let lines: Vec<String> = route_changes.chunks(100).map(apply_line).collect();
    drop(route_changes);
    c.take();
    let (route_mpps, route_s) = rate(&mut c, |c| {
        for l in &lines {
            c.apply_line(l);
        }
    });

    let route_daemon = c.take();
    // Floating IPs: a port per FIP (10 per router subnet), 1,000 per transaction.
    let t = Instant::now();
    let mut batch = Vec::new();
    for j in 0..fips {
        let i = j % routers;
        let host = 10 + j / routers;
        batch.push(
            json!({"op": "port_create", "name": format!("p{j}"), "network": format!("n{i}"),
            "fixed_ips": [{"subnet": format!("s{i}"), "ip": format!("{}.{host}", sub(i))}]}),
        );
        if batch.len() >= 1000 {
            c.apply(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        c.apply(std::mem::take(&mut batch));
    }
    let ports_s = t.elapsed().as_secs_f64();
    // Floating IPs created associated with their ports, 10,000 per transaction.
    let fip_changes: Vec<Value> = (0..fips)
        .map(|j| {
            let addr = std::net::Ipv4Addr::from(100u32 << 24 | 64 << 16 | (20_000 + j as u32));
            json!({"op": "floating_ip_create", "network": "ext", "address": addr.to_string(), "port": format!("p{j}")})
        })
        .collect();
    let lines: Vec<String> = fip_changes.chunks(10_000).map(apply_line).collect();
    drop(fip_changes);
    c.take();
    let (fip_mpps, fip_s) = rate(&mut c, |c| {
        for l in &lines {
            c.apply_line(l);
        }
    });

    let fip_daemon = c.take();
    // Latency of one change, request to reply (published), on the full model.
    let mut lat = Vec::new();
    let mut publish = Vec::new();
    for k in 0..1000 {
        let i = k % routers;
        let change = if k % 2 == 0 {
            json!({"op": "router_set", "name": format!("r{i}"), "routes": [{"destination": "198.18.0.0/16", "nexthop": format!("{}.5", sub(i))}]})
        } else {
            json!({"op": "router_unset", "name": format!("r{}", (k - 1) % routers), "routes": [{"destination": "198.18.0.0/16", "nexthop": format!("{}.5", sub((k - 1) % routers))}]})
        };
        let t = Instant::now();
        let r = c.apply(vec![change]);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        publish.push(r["publish_us"].as_f64().unwrap());
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    publish.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let status = c.call("status", Value::Null);
    assert_eq!(status["generation"], status["published_generation"]);
    let rss1 = rss_mib(pid);
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();

    println!("\ncontrol plane under forwarding, scale {scale}: {routers} routers, {total_routes} routes, {fips} floating IPs");
    println!(
        "topology ({} changes)       {:>10.0} changes/s",
        routers * 5,
        (routers * 5) as f64 / topo_s
    );
    println!(
        "extra routes (batched)       {:>10.0} routes/s   (goal >= 500,000)",
        total_routes as f64 / route_s
    );
    println!(
        "  of which in the daemon: {:.2} s of {route_s:.2} s; applied and published {:.2} s, journal {:.2} s",
        route_daemon.1,
        route_daemon.0,
        route_daemon.1 - route_daemon.0
    );
    println!(
        "ports for FIPs               {:>10.0} changes/s",
        fips as f64 / ports_s
    );
    println!(
        "floating IPs (batched)       {:>10.0} FIPs/s     (goal >= 500,000)",
        fips as f64 / fip_s
    );
    println!(
        "  of which in the daemon: {:.2} s of {fip_s:.2} s; applied and published {:.2} s, journal {:.2} s",
        fip_daemon.1,
        fip_daemon.0,
        fip_daemon.1 - fip_daemon.0
    );
    let pct = |v: &[f64]| (v[v.len() / 2], v[v.len() * 99 / 100], v[v.len() - 1]);
    let (p50, p99, max) = pct(&publish);
    println!(
        "one change, request→published (daemon-side): p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs (goal p99 <= 1,000 µs)"
    );
    let (p50, p99, max) = pct(&lat);
    println!(
        "one change, client round trip incl. journal fsync: p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs"
    );
    println!("resident memory: {rss0:.0} MiB before, {rss1:.0} MiB after (goal: model + snapshot <= 2,048 MiB)");
    println!(
        "forwarding: {idle_mpps:.2} Mpps idle control plane; {route_mpps:.2} Mpps while adding routes, {fip_mpps:.2} Mpps while adding FIPs"
    );
}
