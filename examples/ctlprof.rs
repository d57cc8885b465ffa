//! In-process timing of [`Model::apply`] on the control benchmark's workload
//! (`benches/control.rs`), without the daemon, the socket, the journal or the
//! snapshot compiler: what the model's validation and index cost per change.
//!
//! ```text
//! cargo build --release --example ctlprof
//! ./target/release/examples/ctlprof [ROUTERS] [ROUNDS]
//! ```
//!
//! ROUTERS (default 2000) routers each with a network, a subnet and a gateway;
//! 100 extra routes per router in transactions of 100 routers; 10 ports per
//! router; then ROUNDS (default 1) rounds of creating a floating IP for every port
//! (with the port: created associated) and deleting them again, in transactions
//! of 10,000 (the bench's batches). Then the model is saved whole, as a
//! compaction of the journal does. Wall-clock and CPU time per phase.
//!
//! To profile the floating IP rounds alone: `mkfifo /tmp/ctl; perf record -D -1
//! --control fifo:/tmp/ctl --call-graph dwarf -- env PERF_CTL_FIFO=/tmp/ctl
//! ./target/release/examples/ctlprof` (the recording is enabled when they start).

use std::net::Ipv4Addr;
use std::time::Instant;

use dvr::model::{Change, Model};
use serde_json::{json, Value};

fn changes(v: Vec<Value>) -> Vec<Change> {
    v.into_iter()
        .map(|v| serde_json::from_value(v).expect("a change"))
        .collect()
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`):
/// steadier than the wall clock on a machine shared with other work.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Applies each transaction and prints the rate of `count` things, by the wall
/// clock and by this thread's CPU time.
fn timed(m: &mut Model, what: &str, count: usize, txns: &[Vec<Change>]) {
    let (t, cpu) = (Instant::now(), cpu_ns());
    for c in txns {
        m.apply(c).expect("the workload applies");
    }
    let s = t.elapsed().as_secs_f64();
    let cpu_s = (cpu_ns() - cpu) as f64 / 1e9;
    println!(
        "{what:<24} {count:>9} in {:>7.1} ms: {:>9.0}/s; CPU {:>7.1} ms: {:>9.0}/s",
        s * 1e3,
        count as f64 / s,
        cpu_s * 1e3,
        count as f64 / cpu_s
    );
}

fn batched(v: Vec<Value>, per_txn: usize) -> Vec<Vec<Change>> {
    v.chunks(per_txn).map(|c| changes(c.to_vec())).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let routers: usize = args.next().map_or(2000, |s| s.parse().expect("ROUTERS"));
    let rounds: usize = args.next().map_or(1, |s| s.parse().expect("ROUNDS"));
    let fips = routers * 10;
    let sub = |i: usize| format!("10.{}.{}", i >> 8, i & 255);
    let mut m = Model::default();
    m.apply(&changes(vec![
        json!({"op": "host_set", "name": "bench", "agent_mode": "dvr"}),
        json!({"op": "network_create", "name": "ext", "network_type": "flat", "external": true}),
        json!({"op": "subnet_create", "name": "ext-s", "network": "ext", "cidr": "100.64.0.0/12"}),
    ]))
    .expect("the external network");

    let mut topo = Vec::new();
    for i in 0..routers {
        topo.push(json!({"op": "network_create", "name": format!("n{i}"), "network_type": "vxlan", "segment": i + 1}));
        topo.push(json!({"op": "subnet_create", "name": format!("s{i}"), "network": format!("n{i}"), "cidr": format!("{}.0/24", sub(i))}));
        topo.push(json!({"op": "router_create", "name": format!("r{i}")}));
        topo.push(json!({"op": "router_add_subnet", "router": format!("r{i}"), "subnet": format!("s{i}")}));
        topo.push(json!({"op": "router_set", "name": format!("r{i}"), "external_gateway": {"network": "ext"}}));
    }
    let n = topo.len();
    timed(&mut m, "topology changes", n, &batched(topo, 1000));

    let routes: Vec<Value> = (0..routers)
        .map(|i| {
            let routes: Vec<Value> = (0..100)
                .map(|k| json!({"destination": format!("192.168.{k}.0/24"), "nexthop": format!("{}.5", sub(i))}))
                .collect();
            json!({"op": "router_set", "name": format!("r{i}"), "routes": routes})
        })
        .collect();
    timed(&mut m, "routes", routers * 100, &batched(routes, 100));

    let ports: Vec<Value> = (0..fips)
        .map(|j| {
            let i = j % routers;
            json!({"op": "port_create", "name": format!("p{j}"), "network": format!("n{i}"),
                "fixed_ips": [{"subnet": format!("s{i}"), "ip": format!("{}.{}", sub(i), 10 + j / routers)}]})
        })
        .collect();
    timed(&mut m, "ports", fips, &batched(ports, 1000));

    let address = |j: usize| Ipv4Addr::from(100u32 << 24 | 64 << 16 | (20_000 + j as u32));
    let create: Vec<Vec<Change>> = batched(
        (0..fips)
            .map(|j| json!({"op": "floating_ip_create", "network": "ext", "address": address(j).to_string(), "port": format!("p{j}")}))
            .collect(),
        10_000,
    );
    let delete: Vec<Vec<Change>> = batched(
        (0..fips)
            .map(|j| json!({"op": "floating_ip_delete", "address": address(j).to_string()}))
            .collect(),
        10_000,
    );
    // What the daemon's parse of such a request costs (serde's internally tagged
    // `Change` buffers each change before reading it as its variant).
    let line = json!({"changes": (0..fips.min(10_000))
        .map(|j| json!({"op": "floating_ip_create", "network": "ext", "address": address(j).to_string(), "port": format!("p{j}")}))
        .collect::<Vec<Value>>()})
    .to_string();
    let t = Instant::now();
    let parsed: dvr::proto::ApplyParams = serde_json::from_str(&line).expect("parses");
    println!(
        "parse, floating IPs      {:>9} in {:>7.1} ms: {:>9.0}/s",
        parsed.changes.len(),
        t.elapsed().as_secs_f64() * 1e3,
        parsed.changes.len() as f64 / t.elapsed().as_secs_f64()
    );
    if let Ok(fifo) = std::env::var("PERF_CTL_FIFO") {
        std::fs::write(fifo, "enable\n").expect("PERF_CTL_FIFO: perf's control fifo");
    }
    for round in 0..rounds {
        timed(&mut m, "floating IPs, with port", fips, &create);
        if round + 1 < rounds {
            timed(&mut m, "floating IP deletes", fips, &delete);
        }
    }
    // What a compaction of the journal costs at this size (the control thread
    // is blocked for as long): the model saved whole.
    let dir = std::env::temp_dir().join(format!("ctlprof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("model.json");
    let t = Instant::now();
    m.save(&path).expect("the model saves");
    let bytes = std::fs::metadata(&path).map_or(0, |md| md.len());
    println!(
        "save (compaction)        {:>6.1} MB in {:>7.1} ms",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
    // Not dropped: freeing the model would only add to a profile.
    std::mem::forget(m);
}
