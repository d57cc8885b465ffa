//! The rules of the model, each accepted once and refused once (with the message),
//! the DVR migration procedure, transactions, persistence and scale.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};

use super::txn::Undo;
use super::*;

fn change(v: Value) -> Change {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("bad change {v}: {e}"))
}

fn changes(vs: &[Value]) -> Vec<Change> {
    vs.iter().cloned().map(change).collect()
}

/// Applies, expects success, then checks the whole model still validates (every
/// change must leave a model that a load would accept) and the generation grew by one.
#[track_caller]
fn ok(m: &mut Model, vs: &[Value]) -> Vec<Applied> {
    let generation = m.generation;
    let applied = m
        .apply(&changes(vs))
        .unwrap_or_else(|e| panic!("refused: {e}\nchanges: {vs:?}"));
    assert_eq!(m.generation, generation + 1);
    if let Err(e) = m.validate() {
        panic!("model invalid after {vs:?}: {e}");
    }
    applied
}

/// Applies, expects a refusal whose message contains `needle`, and checks the
/// model is exactly as before (serialized form and generation).
#[track_caller]
fn refused(m: &mut Model, vs: &[Value], needle: &str) -> String {
    let before = serde_json::to_string(m).unwrap();
    let err = match m.apply(&changes(vs)) {
        Ok(_) => panic!("accepted, expected a refusal containing {needle:?}: {vs:?}"),
        Err(e) => e.0,
    };
    assert!(
        err.contains(needle),
        "message {err:?} does not contain {needle:?}"
    );
    assert_eq!(
        serde_json::to_string(m).unwrap(),
        before,
        "refused change altered the model"
    );
    err
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn port(m: &Model, name: &str) -> Port {
    m.ports[name].clone()
}

fn router(m: &Model, name: &str) -> Router {
    m.routers[name].clone()
}

/// Two hosts, an internal network n1 with s1 10.0.0.0/24, an external network ext
/// with ext-sub 203.0.113.0/24, router r1 (distributed) on s1 with its gateway on ext.
fn base() -> Model {
    let mut m = Model::default();
    ok(
        &mut m,
        &[
            json!({"op": "host_set", "name": "cn1", "agent_mode": "dvr", "vtep": "192.0.2.11", "dvr_mac": "fa:16:3f:00:00:11"}),
            json!({"op": "host_set", "name": "nn1", "agent_mode": "dvr_snat", "vtep": "192.0.2.21", "dvr_mac": "fa:16:3f:00:00:21"}),
            json!({"op": "network_create", "name": "n1", "network_type": "vxlan", "segment": 100}),
            json!({"op": "subnet_create", "name": "s1", "network": "n1", "cidr": "10.0.0.0/24"}),
            json!({"op": "network_create", "name": "ext", "network_type": "flat", "external": true}),
            json!({"op": "subnet_create", "name": "ext-sub", "network": "ext", "cidr": "203.0.113.0/24"}),
            json!({"op": "router_create", "name": "r1"}),
            json!({"op": "router_add_subnet", "router": "r1", "subnet": "s1"}),
            json!({"op": "router_set", "name": "r1", "external_gateway": {"network": "ext"}}),
        ],
    );
    m
}

/// `base` plus port p1 (10.0.0.2) with floating IP 203.0.113.3.
fn with_fip() -> Model {
    let mut m = base();
    ok(
        &mut m,
        &[
            json!({"op": "port_create", "name": "p1", "network": "n1"}),
            json!({"op": "floating_ip_create", "network": "ext", "port": "p1"}),
        ],
    );
    m
}

// ---- names --------------------------------------------------------------------

#[test]
fn names_are_checked() {
    let mut m = Model::default();
    let long = "a".repeat(64);
    ok(&mut m, &[json!({"op": "router_create", "name": "a.B_c-9"})]);
    ok(&mut m, &[json!({"op": "router_create", "name": long})]);
    for bad in ["", "a b", "r/1", "é", &"a".repeat(65)] {
        refused(
            &mut m,
            &[json!({"op": "router_create", "name": bad})],
            "a name is 1 to 64 characters from A-Z a-z 0-9 _ . -",
        );
    }
    refused(
        &mut m,
        &[json!({"op": "router_create", "name": "a.B_c-9"})],
        "router a.B_c-9 already exists",
    );
    // Every kind checks its names.
    ok(
        &mut m,
        &[json!({"op": "network_create", "name": "n", "network_type": "flat"})],
    );
    for (v, kind) in [
        (
            json!({"op": "network_create", "name": "no good", "network_type": "flat"}),
            "network",
        ),
        (
            json!({"op": "host_set", "name": "no good", "agent_mode": "dvr"}),
            "host",
        ),
        (
            json!({"op": "subnet_create", "name": "no good", "network": "n", "cidr": "10.0.0.0/24"}),
            "subnet",
        ),
        (
            json!({"op": "port_create", "name": "no good", "network": "n"}),
            "port",
        ),
    ] {
        refused(&mut m, &[v], &format!("invalid {kind} name \"no good\""));
    }
    refused(
        &mut m,
        &[json!({"op": "port_create", "name": "p1", "network": "n9"})],
        "no network named n9",
    );
    refused(
        &mut m,
        &[json!({"op": "router_delete", "name": "r9"})],
        "no router named r9",
    );
}

// ---- hosts ----------------------------------------------------------------------

#[test]
fn host_set_creates_and_replaces() {
    let mut m = base();
    ok(
        &mut m,
        &[
            json!({"op": "host_set", "name": "cn1", "agent_mode": "dvr_no_external", "vtep": "192.0.2.12", "dvr_mac": "fa:16:3f:00:00:11"}),
        ],
    );
    let h = &m.hosts["cn1"];
    assert_eq!(h.vtep, Some(v4("192.0.2.12")));
    assert_eq!(h.agent_mode, AgentMode::DvrNoExternal);
    assert_eq!(m.hosts.len(), 2);
}

#[test]
fn host_dvr_macs_and_vteps_are_unique() {
    let mut m = base();
    refused(
        &mut m,
        &[
            json!({"op": "host_set", "name": "cn2", "agent_mode": "dvr", "vtep": "192.0.2.12", "dvr_mac": "fa:16:3f:00:00:11"}),
        ],
        "DVR MAC fa:16:3f:00:00:11 is already used by host cn1",
    );
    refused(
        &mut m,
        &[
            json!({"op": "host_set", "name": "cn2", "agent_mode": "dvr", "vtep": "192.0.2.11", "dvr_mac": "fa:16:3f:00:00:12"}),
        ],
        "VTEP 192.0.2.11 is already used by host cn1",
    );
    refused(
        &mut m,
        &[
            json!({"op": "host_set", "name": "cn2", "agent_mode": "dvr", "dvr_mac": "01:00:5e:00:00:01"}),
        ],
        "must be a unicast address",
    );
    ok(
        &mut m,
        &[
            json!({"op": "host_set", "name": "cn2", "agent_mode": "dvr", "vtep": "192.0.2.12", "dvr_mac": "fa:16:3f:00:00:12"}),
        ],
    );
}

#[test]
fn host_fip_gateway_addresses_do_not_collide() {
    let mut m = base();
    // r1's gateway took 203.0.113.2.
    refused(
        &mut m,
        &[json!({"op": "host_set", "name": "cn2", "agent_mode": "dvr",
                 "fip_gateway": {"ip": "203.0.113.2", "mac": "fa:16:3f:aa:00:02"}})],
        "203.0.113.2 is already used by the external gateway of router r1",
    );
    ok(
        &mut m,
        &[json!({"op": "host_set", "name": "cn2", "agent_mode": "dvr",
                 "fip_gateway": {"ip": "203.0.113.3", "mac": "fa:16:3f:aa:00:03"}})],
    );
    refused(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext", "address": "203.0.113.3"})],
        "203.0.113.3 is already used by the FIP gateway port of host cn2",
    );
    // Allocation skips it.
    ok(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext"})],
    );
    assert!(m.floating_ips.contains_key(&v4("203.0.113.4")));
}

#[test]
fn host_delete_refused_while_used() {
    let mut m = base();
    ok(
        &mut m,
        &[
            json!({"op": "port_create", "name": "p1", "network": "n1", "host": "cn1"}),
            json!({"op": "router_set", "name": "r1", "snat_host": "nn1"}),
        ],
    );
    refused(
        &mut m,
        &[json!({"op": "host_delete", "name": "cn1"})],
        "host cn1 has ports bound to it (p1)",
    );
    refused(
        &mut m,
        &[json!({"op": "host_delete", "name": "nn1"})],
        "router r1 has its SNAT on host nn1",
    );
    refused(
        &mut m,
        &[
            json!({"op": "host_set", "name": "nn1", "agent_mode": "dvr", "vtep": "192.0.2.21", "dvr_mac": "fa:16:3f:00:00:21"}),
        ],
        "router r1 has its SNAT on host nn1, which must stay in agent mode dvr_snat",
    );
    ok(
        &mut m,
        &[
            json!({"op": "port_unset", "name": "p1", "host": true}),
            json!({"op": "host_delete", "name": "cn1"}),
        ],
    );
    assert!(!m.hosts.contains_key("cn1"));
}

// ---- networks ------------------------------------------------------------------

#[test]
fn network_segments_by_type() {
    let mut m = Model::default();
    let net = |name: &str, t: &str, seg: Option<u64>| {
        let mut v = json!({"op": "network_create", "name": name, "network_type": t});
        if let Some(s) = seg {
            v["segment"] = json!(s);
        }
        v
    };
    refused(
        &mut m,
        &[net("a", "vxlan", None)],
        "a vxlan network needs a segment (VNI 1..=16777215)",
    );
    refused(
        &mut m,
        &[net("a", "vxlan", Some(0))],
        "segment 0 is out of range for a vxlan network",
    );
    refused(
        &mut m,
        &[net("a", "vxlan", Some(16_777_216))],
        "segment 16777216 is out of range",
    );
    ok(&mut m, &[net("vx", "vxlan", Some(16_777_215))]);
    refused(
        &mut m,
        &[net("a", "gre", Some(0))],
        "segment 0 is out of range for a gre network (key 1..=4294967295)",
    );
    refused(
        &mut m,
        &[net("a", "gre", None)],
        "a gre network needs a segment",
    );
    ok(&mut m, &[net("gr", "gre", Some(4_294_967_295))]);
    refused(
        &mut m,
        &[net("a", "vlan", Some(4095))],
        "out of range for a vlan network (VLAN id 1..=4094)",
    );
    ok(&mut m, &[net("vl", "vlan", Some(4094))]);
    refused(
        &mut m,
        &[net("a", "flat", Some(3))],
        "a flat network has no segment",
    );
    ok(&mut m, &[net("fl", "flat", None)]);
    // (type, segment) is unique; the same number in another type is another segment.
    refused(
        &mut m,
        &[net("a", "vxlan", Some(16_777_215))],
        "vxlan segment 16777215 is already used by network vx",
    );
    ok(
        &mut m,
        &[net("vl2", "vlan", Some(16)), net("vx2", "vxlan", Some(16))],
    );
    // MTU defaults.
    assert_eq!(m.networks["vx"].mtu, 1450);
    assert_eq!(m.networks["gr"].mtu, 1458);
    assert_eq!(m.networks["vl"].mtu, 1500);
    assert_eq!(m.networks["fl"].mtu, 1500);
}

#[test]
fn network_mtu_range_and_ipv6() {
    let mut m = Model::default();
    let net = |name: &str, mtu: u64| json!({"op": "network_create", "name": name, "network_type": "flat", "mtu": mtu});
    refused(&mut m, &[net("a", 67)], "MTU 67 is out of range 68..=9000");
    refused(
        &mut m,
        &[net("a", 9001)],
        "MTU 9001 is out of range 68..=9000",
    );
    ok(
        &mut m,
        &[net("small", 68), net("jumbo", 9000), net("v6", 1280)],
    );
    refused(
        &mut m,
        &[json!({"op": "subnet_create", "name": "s6", "network": "small", "cidr": "fd00::/64"})],
        "network small has MTU 68; an IPv6 subnet needs an MTU of at least 1280",
    );
    ok(
        &mut m,
        &[json!({"op": "subnet_create", "name": "s6", "network": "v6", "cidr": "fd00::/64"})],
    );
    refused(
        &mut m,
        &[json!({"op": "network_set", "name": "v6", "mtu": 1279})],
        "network v6 has IPv6 subnet s6 (fd00::/64); its MTU cannot go below 1280",
    );
    refused(
        &mut m,
        &[json!({"op": "network_set", "name": "v6", "mtu": 9100})],
        "MTU 9100 is out of range",
    );
    ok(
        &mut m,
        &[json!({"op": "network_set", "name": "jumbo", "mtu": 1000})],
    );
    ok(
        &mut m,
        &[json!({"op": "network_set", "name": "v6", "mtu": 9000})],
    );
    assert_eq!(m.networks["v6"].mtu, 9000);
}

#[test]
fn network_external_flag_follows_its_users() {
    let mut m = with_fip();
    refused(
        &mut m,
        &[json!({"op": "network_set", "name": "n1", "external": true})],
        "subnet s1 of network n1 is an interface of router r1; a network with router interfaces cannot become external",
    );
    refused(
        &mut m,
        &[json!({"op": "network_set", "name": "ext", "external": false})],
        "floating IP 203.0.113.3 is on network ext, which must stay external",
    );
    ok(
        &mut m,
        &[json!({"op": "floating_ip_delete", "address": "203.0.113.3"})],
    );
    refused(
        &mut m,
        &[json!({"op": "network_set", "name": "ext", "external": false})],
        "router r1 has its external gateway on network ext, which must stay external",
    );
    ok(
        &mut m,
        &[json!({"op": "network_create", "name": "n2", "network_type": "vlan", "segment": 7})],
    );
    ok(
        &mut m,
        &[json!({"op": "network_set", "name": "n2", "external": true})],
    );
    assert!(m.networks["n2"].external);
}

#[test]
fn network_delete_refused_while_used() {
    let mut m = with_fip();
    refused(
        &mut m,
        &[json!({"op": "network_delete", "name": "n1"})],
        "network n1 still has subnets (s1); delete them first",
    );
    refused(
        &mut m,
        &[json!({"op": "network_delete", "name": "ext"})],
        "network ext still has subnets (ext-sub)",
    );
    ok(
        &mut m,
        &[
            json!({"op": "network_create", "name": "n2", "network_type": "vxlan", "segment": 200}),
            json!({"op": "port_create", "name": "p0", "network": "n2"}),
        ],
    );
    assert!(port(&m, "p0").fixed_ips.is_empty());
    refused(
        &mut m,
        &[json!({"op": "network_delete", "name": "n2"})],
        "network n2 still has ports (p0); delete them first",
    );
    ok(
        &mut m,
        &[
            json!({"op": "port_delete", "name": "p0"}),
            json!({"op": "network_delete", "name": "n2"}),
        ],
    );
    assert!(!m.networks.contains_key("n2"));
}

// ---- subnets --------------------------------------------------------------------

#[test]
fn subnet_cidr_rules() {
    let mut m = base();
    let sub = |name: &str, net: &str, cidr: &str| json!({"op": "subnet_create", "name": name, "network": net, "cidr": cidr});
    refused(
        &mut m,
        &[sub("s2", "n9", "10.0.2.0/24")],
        "no network named n9",
    );
    refused(
        &mut m,
        &[sub("s2", "n1", "10.0.2.1/24")],
        "10.0.2.1/24 is not a network address; did you mean 10.0.2.0/24",
    );
    refused(
        &mut m,
        &[sub("s2", "n1", "10.0.3.0/31")],
        "an IPv4 subnet's prefix must be /30 or shorter",
    );
    ok(&mut m, &[sub("s30", "n1", "10.0.3.0/30")]);
    refused(
        &mut m,
        &[sub("s2", "n1", "fd00::/127")],
        "an IPv6 subnet's prefix must be /126 or shorter",
    );
    ok(&mut m, &[sub("s126", "n1", "fd00::/126")]);
    refused(
        &mut m,
        &[sub("s2", "n1", "10.0.0.0/16")],
        "subnet 10.0.0.0/16 overlaps 10.0.0.0/24 (subnet s1) on network n1",
    );
    refused(
        &mut m,
        &[sub("s2", "n1", "10.0.0.128/25")],
        "overlaps 10.0.0.0/24 (subnet s1)",
    );
    refused(
        &mut m,
        &[sub("s1", "n1", "10.9.0.0/24")],
        "subnet s1 already exists",
    );
    // The same range on another network is another address space.
    ok(
        &mut m,
        &[
            json!({"op": "network_create", "name": "n2", "network_type": "vxlan", "segment": 200}),
            sub("s2", "n2", "10.0.0.0/24"),
        ],
    );
}

#[test]
fn subnet_gateway_rules() {
    let mut m = base();
    assert_eq!(m.subnets["s1"].gateway_ip, Some(ip("10.0.0.1")));
    let sub = |name: &str, cidr: &str, gw: Value| json!({"op": "subnet_create", "name": name, "network": "n1", "cidr": cidr, "gateway_ip": gw});
    ok(&mut m, &[sub("none", "10.0.4.0/24", Value::Null)]);
    assert_eq!(m.subnets["none"].gateway_ip, None);
    ok(&mut m, &[sub("high", "10.0.5.0/24", json!("10.0.5.254"))]);
    assert_eq!(m.subnets["high"].gateway_ip, Some(ip("10.0.5.254")));
    refused(
        &mut m,
        &[sub("x", "10.0.6.0/24", json!("10.9.0.1"))],
        "gateway 10.9.0.1 is not inside 10.0.6.0/24",
    );
    refused(
        &mut m,
        &[sub("x", "10.0.6.0/24", json!("10.0.6.255"))],
        "gateway 10.0.6.255 is the broadcast address of 10.0.6.0/24",
    );
    refused(
        &mut m,
        &[sub("x", "10.0.6.0/24", json!("10.0.6.0"))],
        "gateway 10.0.6.0 is the network address",
    );
    refused(
        &mut m,
        &[sub("x", "10.0.6.0/24", json!("fd00::1"))],
        "gateway fd00::1 is not inside 10.0.6.0/24",
    );
    ok(
        &mut m,
        &[json!({"op": "subnet_create", "name": "v6", "network": "n1", "cidr": "fd00:1::/64"})],
    );
    assert_eq!(m.subnets["v6"].gateway_ip, Some(ip("fd00:1::1")));
}

#[test]
fn subnet_delete_refused_while_used() {
    let mut m = base();
    ok(
        &mut m,
        &[json!({"op": "port_create", "name": "p1", "network": "n1"})],
    );
    refused(
        &mut m,
        &[json!({"op": "subnet_delete", "name": "s1"})],
        "subnet s1 is used by port p1 (10.0.0.2); delete the port first",
    );
    ok(&mut m, &[json!({"op": "port_delete", "name": "p1"})]);
    refused(
        &mut m,
        &[json!({"op": "subnet_delete", "name": "s1"})],
        "subnet s1 is an interface of router r1",
    );
    refused(
        &mut m,
        &[json!({"op": "subnet_delete", "name": "ext-sub"})],
        "router r1's external gateway has 203.0.113.2 in subnet ext-sub; unset the gateway first",
    );
    ok(
        &mut m,
        &[
            json!({"op": "router_remove_subnet", "router": "r1", "subnet": "s1"}),
            json!({"op": "subnet_delete", "name": "s1"}),
        ],
    );
    assert!(!m.subnets.contains_key("s1"));
}

// ---- ports ------------------------------------------------------------------------

#[test]
fn port_addresses_are_allocated_lowest_first() {
    let mut m = base();
    ok(
        &mut m,
        &[
            json!({"op": "port_create", "name": "p1", "network": "n1"}),
            json!({"op": "port_create", "name": "p2", "network": "n1", "fixed_ips": [{"ip": "10.0.0.3"}]}),
            json!({"op": "port_create", "name": "p3", "network": "n1", "fixed_ips": [{"subnet": "s1"}]}),
        ],
    );
    // .1 is the gateway (r1's interface), .2 p1, .3 asked for by p2, so p3 gets .4.
    assert_eq!(
        port(&m, "p1").fixed_ips,
        vec![FixedIp {
            subnet: "s1".into(),
            ip: ip("10.0.0.2")
        }]
    );
    assert_eq!(port(&m, "p2").fixed_ips[0].ip, ip("10.0.0.3"));
    assert_eq!(port(&m, "p3").fixed_ips[0].ip, ip("10.0.0.4"));
    assert!(port(&m, "p1").port_security);
    ok(&mut m, &[json!({"op": "port_delete", "name": "p1"})]);
    ok(
        &mut m,
        &[json!({"op": "port_create", "name": "p4", "network": "n1"})],
    );
    assert_eq!(port(&m, "p4").fixed_ips[0].ip, ip("10.0.0.2"));
    // Subnet and address together; an address asked for after an allocation in
    // the same port is not handed out twice.
    ok(
        &mut m,
        &[json!({"op": "port_create", "name": "p5", "network": "n1",
                 "fixed_ips": [{"subnet": "s1"}, {"subnet": "s1", "ip": "10.0.0.5"}]})],
    );
    let ips: Vec<IpAddr> = port(&m, "p5").fixed_ips.iter().map(|f| f.ip).collect();
    assert_eq!(ips, vec![ip("10.0.0.6"), ip("10.0.0.5")]);
}

#[test]
fn port_fixed_ip_rules() {
    let mut m = base();
    ok(
        &mut m,
        &[
            json!({"op": "network_create", "name": "n2", "network_type": "vxlan", "segment": 200}),
            json!({"op": "subnet_create", "name": "s2", "network": "n2", "cidr": "10.2.0.0/24"}),
            json!({"op": "port_create", "name": "p2", "network": "n1", "fixed_ips": [{"ip": "10.0.0.5"}]}),
        ],
    );
    let p = |fixed: Value| json!({"op": "port_create", "name": "p", "network": "n1", "fixed_ips": [fixed]});
    refused(
        &mut m,
        &[p(json!({"ip": "10.0.0.5"}))],
        "10.0.0.5 is already used by port p2",
    );
    refused(
        &mut m,
        &[p(json!({"ip": "10.0.0.1"}))],
        "10.0.0.1 is the gateway address of subnet s1",
    );
    refused(
        &mut m,
        &[p(json!({"ip": "10.0.0.0"}))],
        "10.0.0.0 is the network address of subnet s1 (10.0.0.0/24)",
    );
    refused(
        &mut m,
        &[p(json!({"ip": "10.0.0.255"}))],
        "10.0.0.255 is the broadcast address of subnet s1",
    );
    refused(
        &mut m,
        &[p(json!({"ip": "10.1.0.5"}))],
        "10.1.0.5 is not inside any subnet of network n1",
    );
    refused(
        &mut m,
        &[p(json!({"subnet": "s1", "ip": "10.1.0.5"}))],
        "10.1.0.5 is not inside subnet s1 (10.0.0.0/24)",
    );
    refused(
        &mut m,
        &[p(json!({"subnet": "s2"}))],
        "subnet s2 is on network n2, not on network n1",
    );
    refused(&mut m, &[p(json!({"subnet": "s9"}))], "no subnet named s9");
    refused(
        &mut m,
        &[p(json!({}))],
        "a fixed IP needs a subnet, an address or both",
    );
    ok(&mut m, &[p(json!({"ip": "10.0.0.6"}))]);
    // An address held by a floating IP, on an external network.
    ok(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext", "address": "203.0.113.50"})],
    );
    refused(
        &mut m,
        &[
            json!({"op": "port_create", "name": "pe", "network": "ext", "fixed_ips": [{"ip": "203.0.113.50"}]}),
        ],
        "203.0.113.50 is already used by floating IP 203.0.113.50",
    );
    refused(
        &mut m,
        &[
            json!({"op": "port_create", "name": "pe", "network": "ext", "fixed_ips": [{"ip": "203.0.113.2"}]}),
        ],
        "203.0.113.2 is already used by the external gateway of router r1",
    );
}

#[test]
fn port_dual_stack_and_full_subnets() {
    let mut m = Model::default();
    ok(
        &mut m,
        &[
            json!({"op": "network_create", "name": "n", "network_type": "vxlan", "segment": 1}),
            json!({"op": "subnet_create", "name": "a6", "network": "n", "cidr": "fd00::/64"}),
            json!({"op": "subnet_create", "name": "b4", "network": "n", "cidr": "10.0.0.0/30"}),
            json!({"op": "port_create", "name": "p1", "network": "n"}),
        ],
    );
    assert_eq!(
        port(&m, "p1").fixed_ips,
        vec![
            FixedIp {
                subnet: "b4".into(),
                ip: ip("10.0.0.2")
            },
            FixedIp {
                subnet: "a6".into(),
                ip: ip("fd00::2")
            },
        ]
    );
    refused(
        &mut m,
        &[json!({"op": "port_create", "name": "p2", "network": "n"})],
        "subnet b4 (10.0.0.0/30) has no free address",
    );
    ok(
        &mut m,
        &[
            json!({"op": "port_create", "name": "p2", "network": "n", "fixed_ips": [{"subnet": "a6"}]}),
        ],
    );
    assert_eq!(port(&m, "p2").fixed_ips[0].ip, ip("fd00::3"));
}

#[test]
fn port_macs_given_or_generated() {
    let mut m = base();
    ok(
        &mut m,
        &[
            json!({"op": "network_create", "name": "n2", "network_type": "vxlan", "segment": 200}),
            json!({"op": "port_create", "name": "p1", "network": "n1", "mac": "fa:16:3e:00:00:01"}),
        ],
    );
    refused(
        &mut m,
        &[json!({"op": "port_create", "name": "p2", "network": "n1", "mac": "fa:16:3e:00:00:01"})],
        "MAC fa:16:3e:00:00:01 is already used by port p1 on network n1",
    );
    refused(
        &mut m,
        &[json!({"op": "port_create", "name": "p2", "network": "n1", "mac": "01:00:5e:00:00:01"})],
        "MAC 01:00:5e:00:00:01 is not a unicast address",
    );
    // Another network is another broadcast domain.
    ok(
        &mut m,
        &[json!({"op": "port_create", "name": "p2", "network": "n2", "mac": "fa:16:3e:00:00:01"})],
    );
    // Generated: fa:16:3e, the same for the same history, all distinct.
    let mut names = Vec::new();
    for i in 0..300 {
        names.push(json!({"op": "port_create", "name": format!("g{i}"), "network": "n2"}));
    }
    ok(&mut m, &names);
    let mut again = base();
    ok(
        &mut again,
        &[
            json!({"op": "network_create", "name": "n2", "network_type": "vxlan", "segment": 200}),
            json!({"op": "port_create", "name": "p1", "network": "n1", "mac": "fa:16:3e:00:00:01"}),
            json!({"op": "port_create", "name": "p2", "network": "n2", "mac": "fa:16:3e:00:00:01"}),
        ],
    );
    ok(&mut again, &names);
    let mut macs = std::collections::HashSet::new();
    for i in 0..300 {
        let mac = m.ports[&format!("g{i}")].mac;
        assert_eq!(mac, again.ports[&format!("g{i}")].mac);
        assert_eq!(mac.0[..3], [0xfa, 0x16, 0x3e]);
        assert!(macs.insert(mac), "duplicate generated MAC {mac}");
    }
    // Router MACs are distinct from port MACs too.
    for r in m.routers.values() {
        for i in &r.interfaces {
            assert!(!macs.contains(&i.mac));
        }
    }
}

#[test]
fn port_allowed_address_pairs() {
    let mut m = base();
    let pp = |pairs: Value| json!({"op": "port_create", "name": "p", "network": "n1", "allowed_address_pairs": pairs});
    refused(
        &mut m,
        &[pp(json!([{"ip": "0.0.0.0/0"}]))],
        "an allowed address pair of 0.0.0.0/0 would let the port send from any address; not allowed",
    );
    refused(
        &mut m,
        &[pp(json!([{"ip": "::/0"}]))],
        "an allowed address pair of ::/0 would let the port send from any address",
    );
    refused(
        &mut m,
        &[pp(json!([{"ip": "10.0.0.5/24"}]))],
        "allowed address pair 10.0.0.5/24 is not a network address; did you mean 10.0.0.0/24",
    );
    refused(
        &mut m,
        &[
            json!({"op": "port_create", "name": "p", "network": "n1", "port_security": false,
                 "allowed_address_pairs": [{"ip": "10.0.0.100/32"}]}),
        ],
        "allowed address pairs need port security, and port p has port security disabled",
    );
    ok(
        &mut m,
        &[pp(
            json!([{"ip": "10.0.0.100/32"}, {"ip": "10.0.0.100/32"}, {"ip": "192.168.0.0/16", "mac": "fa:16:3e:12:34:56"}]),
        )],
    );
    assert_eq!(
        port(&m, "p").allowed_address_pairs.len(),
        2,
        "the duplicate is ignored"
    );
    // Added by set (a duplicate is ignored), removed by unset.
    ok(
        &mut m,
        &[
            json!({"op": "port_set", "name": "p", "allowed_address_pairs": [{"ip": "10.0.0.100/32"}, {"ip": "10.0.0.128/25"}]}),
        ],
    );
    assert_eq!(port(&m, "p").allowed_address_pairs.len(), 3);
    refused(
        &mut m,
        &[json!({"op": "port_set", "name": "p", "port_security": false})],
        "allowed address pairs need port security",
    );
    refused(
        &mut m,
        &[
            json!({"op": "port_unset", "name": "p", "allowed_address_pairs": [{"ip": "10.9.0.0/16"}]}),
        ],
        "port p has no allowed address pair 10.9.0.0/16",
    );
    ok(
        &mut m,
        &[
            json!({"op": "port_unset", "name": "p", "allowed_address_pairs": [{"ip": "10.0.0.100/32"}, {"ip": "10.0.0.128/25"}, {"ip": "192.168.0.0/16"}]}),
            json!({"op": "port_set", "name": "p", "port_security": false}),
        ],
    );
    let p = port(&m, "p");
    assert!(p.allowed_address_pairs.is_empty());
    assert!(!p.port_security);
}

#[test]
fn port_set_and_unset_host_and_binding() {
    let mut m = base();
    ok(
        &mut m,
        &[json!({"op": "port_create", "name": "p1", "network": "n1"})],
    );
    refused(
        &mut m,
        &[json!({"op": "port_set", "name": "p1", "host": "cn9"})],
        "no host named cn9",
    );
    refused(
        &mut m,
        &[json!({"op": "port_create", "name": "p2", "network": "n1", "host": "cn9"})],
        "no host named cn9",
    );
    refused(
        &mut m,
        &[json!({"op": "port_set", "name": "p9", "host": "cn1"})],
        "no port named p9",
    );
    ok(
        &mut m,
        &[json!({"op": "port_set", "name": "p1", "host": "cn1", "binding": "vm-a"})],
    );
    let p = port(&m, "p1");
    assert_eq!(
        (p.host.as_deref(), p.binding.as_deref()),
        (Some("cn1"), Some("vm-a"))
    );
    ok(
        &mut m,
        &[json!({"op": "port_unset", "name": "p1", "host": true, "binding": true})],
    );
    let p = port(&m, "p1");
    assert_eq!((p.host, p.binding), (None, None));
}

#[test]
fn port_delete_refused_while_it_has_a_floating_ip() {
    let mut m = with_fip();
    refused(
        &mut m,
        &[json!({"op": "port_delete", "name": "p1"})],
        "floating IP 203.0.113.3 is associated with port p1; unset it first",
    );
    ok(
        &mut m,
        &[
            json!({"op": "floating_ip_unset", "address": "203.0.113.3"}),
            json!({"op": "port_delete", "name": "p1"}),
        ],
    );
}

// ---- routers ------------------------------------------------------------------------

#[test]
fn router_create_defaults_and_modes() {
    let mut m = Model::default();
    ok(&mut m, &[json!({"op": "router_create", "name": "r1"})]);
    let r = router(&m, "r1");
    assert!(r.distributed && !r.ha && r.admin_state_up);
    refused(
        &mut m,
        &[json!({"op": "router_create", "name": "r2", "distributed": true, "ha": true})],
        "DVR cannot be combined with L3 HA",
    );
    refused(
        &mut m,
        &[json!({"op": "router_create", "name": "r2", "ha": true})],
        "DVR cannot be combined with L3 HA",
    );
    ok(
        &mut m,
        &[
            json!({"op": "router_create", "name": "r2", "distributed": false, "ha": true, "admin_state_up": false}),
        ],
    );
    let r = router(&m, "r2");
    assert!(!r.distributed && r.ha && !r.admin_state_up);
}

#[test]
fn router_mode_changes_need_a_disabled_router() {
    let mut m = base();
    refused(
        &mut m,
        &[json!({"op": "router_set", "name": "r1", "distributed": false})],
        "router r1 must be disabled (set --disable) before changing distributed",
    );
    // Disabling in the same call is not enough: Neutron checks the state before.
    refused(
        &mut m,
        &[json!({"op": "router_set", "name": "r1", "admin_state_up": false, "distributed": false})],
        "router r1 must be disabled (set --disable) before changing distributed",
    );
    // Asking for what it already is changes nothing and needs nothing.
    ok(
        &mut m,
        &[json!({"op": "router_set", "name": "r1", "distributed": true, "ha": false})],
    );
    ok(
        &mut m,
        &[json!({"op": "router_set", "name": "r1", "admin_state_up": false})],
    );
    refused(
        &mut m,
        &[json!({"op": "router_set", "name": "r1", "ha": true})],
        "DVR cannot be combined with L3 HA: router r1 is distributed; set --centralized first, then --ha",
    );
    // Disabled before, in the same transaction: fine.
    ok(
        &mut m,
        &[
            json!({"op": "router_set", "name": "r1", "distributed": false}),
            json!({"op": "router_set", "name": "r1", "ha": true}),
            json!({"op": "router_set", "name": "r1", "admin_state_up": true}),
        ],
    );
    refused(
        &mut m,
        &[json!({"op": "router_set", "name": "r1", "ha": false})],
        "router r1 must be disabled (set --disable) before changing ha",
    );
    // A disabled router keeps its state.
    let before = router(&m, "r1");
    ok(
        &mut m,
        &[json!({"op": "router_set", "name": "r1", "admin_state_up": false})],
    );
    let after = router(&m, "r1");
    assert!(!after.admin_state_up);
    assert_eq!(
        (after.interfaces, after.gateway, after.routes),
        (before.interfaces, before.gateway, before.routes)
    );
}

/// The seed's procedure "Migrating centralized routers to distributed routing",
/// step by step, on a legacy HA router.
#[test]
fn migration_of_a_legacy_ha_router_to_dvr() {
    let mut m = base();
    ok(
        &mut m,
        &[
            json!({"op": "network_create", "name": "n2", "network_type": "vxlan", "segment": 200}),
            json!({"op": "subnet_create", "name": "s2", "network": "n2", "cidr": "10.2.0.0/24"}),
            json!({"op": "router_create", "name": "router1", "distributed": false, "ha": true}),
            json!({"op": "router_add_subnet", "router": "router1", "subnet": "s2"}),
            json!({"op": "router_set", "name": "router1", "external_gateway": {"network": "ext"}}),
        ],
    );
    let set = |fields: Value| {
        let mut v = json!({"op": "router_set", "name": "router1"});
        for (k, x) in fields.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    // Not disabled yet.
    refused(
        &mut m,
        &[set(json!({"distributed": true}))],
        "router router1 must be disabled (set --disable) before changing distributed",
    );
    // 1. openstack router set --disable router1
    ok(&mut m, &[set(json!({"admin_state_up": false}))]);
    // An HA router is not made distributed directly.
    refused(
        &mut m,
        &[set(json!({"distributed": true}))],
        "router router1 is HA: set --no-ha first, then --distributed",
    );
    refused(
        &mut m,
        &[set(json!({"ha": false, "distributed": true}))],
        "router router1 is HA: set --no-ha first, then --distributed",
    );
    // 2. openstack router set --no-ha router1
    ok(&mut m, &[set(json!({"ha": false}))]);
    // 3. openstack router set --distributed router1
    ok(&mut m, &[set(json!({"distributed": true}))]);
    // 4. openstack router set --enable router1
    ok(&mut m, &[set(json!({"admin_state_up": true}))]);
    let r = router(&m, "router1");
    assert!(r.distributed && !r.ha && r.admin_state_up);
    assert_eq!(r.interfaces.len(), 1);
    assert!(r.gateway.is_some());
}

#[test]
fn router_external_gateway() {
    let mut m = base();
    let gw = router(&m, "r1").gateway.unwrap();
    assert_eq!(gw.network, "ext");
    assert_eq!(
        gw.ips,
        vec![FixedIp {
            subnet: "ext-sub".into(),
            ip: ip("203.0.113.2")
        }]
    );
    assert!(gw.enable_snat);
    assert_eq!(gw.mac.0[..3], [0xfa, 0x16, 0x3e]);
    ok(&mut m, &[json!({"op": "router_create", "name": "r2"})]);
    refused(
        &mut m,
        &[json!({"op": "router_set", "name": "r2", "external_gateway": {"network": "n1"}})],
        "network n1 is not external; a router's external gateway needs an external network (router:external)",
    );
    refused(
        &mut m,
        &[
            json!({"op": "router_set", "name": "r2", "external_gateway": {"network": "ext", "fixed_ip": {"ip": "203.0.113.2"}}}),
        ],
        "203.0.113.2 is already used by the external gateway of router r1",
    );
    ok(
        &mut m,
        &[
            json!({"op": "router_set", "name": "r2", "external_gateway": {"network": "ext", "enable_snat": false, "fixed_ip": {"ip": "203.0.113.20"}}}),
        ],
    );
    let gw2 = router(&m, "r2").gateway.unwrap();
    assert_eq!(gw2.ips[0].ip, ip("203.0.113.20"));
    assert!(!gw2.enable_snat);
    assert_ne!(gw2.mac, gw.mac);
    // Set again on the same network: the MAC and address stay, the flag changes.
    ok(
        &mut m,
        &[
            json!({"op": "router_set", "name": "r2", "external_gateway": {"network": "ext", "enable_snat": true}}),
        ],
    );
    let gw3 = router(&m, "r2").gateway.unwrap();
    assert_eq!(
        (gw3.mac, gw3.ips.clone(), gw3.enable_snat),
        (gw2.mac, gw2.ips, true)
    );
    // An external network without an IPv4 subnet has no address to give.
    ok(
        &mut m,
        &[
            json!({"op": "network_create", "name": "ext6", "network_type": "vlan", "segment": 6, "external": true}),
            json!({"op": "subnet_create", "name": "ext6-sub", "network": "ext6", "cidr": "2001:db8::/64"}),
            json!({"op": "router_create", "name": "r3"}),
        ],
    );
    refused(
        &mut m,
        &[json!({"op": "router_set", "name": "r3", "external_gateway": {"network": "ext6"}})],
        "network ext6 has no IPv4 subnet to take router r3's gateway address from",
    );
}

#[test]
fn router_extra_routes() {
    let mut m = base();
    let route = |d: &str, nh: &str| json!({"destination": d, "nexthop": nh});
    let add = |routes: Value| json!({"op": "router_set", "name": "r1", "routes": routes});
    refused(
        &mut m,
        &[add(json!([route("10.1.0.1/16", "10.0.0.10")]))],
        "route destination 10.1.0.1/16 is not a network address; did you mean 10.1.0.0/16",
    );
    refused(
        &mut m,
        &[add(json!([route("10.1.0.0/16", "10.9.0.10")]))],
        "nexthop 10.9.0.10 of route 10.1.0.0/16 is not inside any subnet of router r1",
    );
    refused(
        &mut m,
        &[add(json!([route("10.1.0.0/16", "fd00::10")]))],
        "route 10.1.0.0/16 via fd00::10 mixes an IPv4 destination with an IPv6 nexthop",
    );
    refused(
        &mut m,
        &[add(json!([route("10.1.0.0/16", "10.0.0.1")]))],
        "nexthop 10.0.0.1 of route 10.1.0.0/16 is an address of router r1 itself",
    );
    ok(
        &mut m,
        &[add(json!([
            route("10.1.0.0/16", "10.0.0.10"),
            route("198.51.100.0/24", "203.0.113.254")
        ]))],
    );
    assert_eq!(router(&m, "r1").routes.len(), 2);
    refused(
        &mut m,
        &[add(json!([route("10.1.0.0/16", "10.0.0.10")]))],
        "route 10.1.0.0/16 via 10.0.0.10 is already on router r1",
    );
    refused(
        &mut m,
        &[add(json!([
            route("10.3.0.0/16", "10.0.0.10"),
            route("10.3.0.0/16", "10.0.0.10")
        ]))],
        "route 10.3.0.0/16 via 10.0.0.10 is already on router r1",
    );
    refused(
        &mut m,
        &[
            json!({"op": "router_unset", "name": "r1", "routes": [route("10.7.0.0/16", "10.0.0.10")]}),
        ],
        "router r1 has no route 10.7.0.0/16 via 10.0.0.10",
    );
    // The route through the gateway keeps the gateway.
    refused(
        &mut m,
        &[json!({"op": "router_unset", "name": "r1", "external_gateway": true})],
        "route 198.51.100.0/24 via 203.0.113.254 needs router r1's external gateway on network ext",
    );
    ok(
        &mut m,
        &[
            json!({"op": "router_unset", "name": "r1", "routes": [route("198.51.100.0/24", "203.0.113.254")]}),
        ],
    );
    assert_eq!(
        router(&m, "r1").routes,
        vec![Route {
            destination: "10.1.0.0/16".parse().unwrap(),
            nexthop: ip("10.0.0.10")
        }]
    );
    ok(
        &mut m,
        &[json!({"op": "router_unset", "name": "r1", "external_gateway": true})],
    );
    assert_eq!(router(&m, "r1").gateway, None);
}

#[test]
fn router_snat_host() {
    let mut m = base();
    refused(
        &mut m,
        &[json!({"op": "router_set", "name": "r1", "snat_host": "cn1"})],
        "host cn1 is in agent mode dvr; a router's SNAT needs a dvr_snat host",
    );
    refused(
        &mut m,
        &[json!({"op": "router_set", "name": "r1", "snat_host": "nn9"})],
        "no host named nn9",
    );
    ok(
        &mut m,
        &[json!({"op": "router_set", "name": "r1", "snat_host": "nn1"})],
    );
    assert_eq!(router(&m, "r1").snat_host.as_deref(), Some("nn1"));
}

#[test]
fn router_gateway_unset_refused_while_a_floating_ip_uses_it() {
    let mut m = with_fip();
    refused(
        &mut m,
        &[json!({"op": "router_unset", "name": "r1", "external_gateway": true})],
        "floating IP 203.0.113.3 uses router r1's external gateway; unset it first",
    );
    ok(
        &mut m,
        &[
            json!({"op": "network_create", "name": "ext2", "network_type": "vlan", "segment": 2, "external": true}),
            json!({"op": "subnet_create", "name": "ext2-sub", "network": "ext2", "cidr": "198.51.100.0/24"}),
        ],
    );
    refused(
        &mut m,
        &[json!({"op": "router_set", "name": "r1", "external_gateway": {"network": "ext2"}})],
        "floating IP 203.0.113.3 uses router r1's external gateway on network ext; unset it before moving the gateway",
    );
    ok(
        &mut m,
        &[
            json!({"op": "floating_ip_unset", "address": "203.0.113.3"}),
            json!({"op": "router_set", "name": "r1", "external_gateway": {"network": "ext2"}}),
        ],
    );
    assert_eq!(
        router(&m, "r1").gateway.unwrap().ips[0].ip,
        ip("198.51.100.2")
    );
    ok(
        &mut m,
        &[json!({"op": "router_unset", "name": "r1", "external_gateway": true})],
    );
}

#[test]
fn router_delete_refused_while_connected() {
    let mut m = base();
    refused(
        &mut m,
        &[json!({"op": "router_delete", "name": "r1"})],
        "router r1 still has interfaces on subnets s1; remove them first",
    );
    ok(
        &mut m,
        &[json!({"op": "router_remove_subnet", "router": "r1", "subnet": "s1"})],
    );
    refused(
        &mut m,
        &[json!({"op": "router_delete", "name": "r1"})],
        "router r1 still has an external gateway on network ext; unset it first",
    );
    ok(
        &mut m,
        &[
            json!({"op": "router_unset", "name": "r1", "external_gateway": true}),
            json!({"op": "router_delete", "name": "r1"}),
        ],
    );
    assert!(m.routers.is_empty());
}

#[test]
fn router_add_subnet_rules() {
    let mut m = base();
    let i = &router(&m, "r1").interfaces[0];
    assert_eq!((i.subnet.as_str(), i.ip), ("s1", ip("10.0.0.1")));
    assert_eq!(i.mac.0[..3], [0xfa, 0x16, 0x3e]);
    ok(
        &mut m,
        &[
            json!({"op": "router_create", "name": "r2"}),
            json!({"op": "network_create", "name": "n2", "network_type": "vxlan", "segment": 200}),
            json!({"op": "subnet_create", "name": "wide", "network": "n2", "cidr": "10.0.0.0/16", "gateway_ip": "10.0.255.254"}),
            json!({"op": "network_create", "name": "n3", "network_type": "vxlan", "segment": 300}),
            json!({"op": "subnet_create", "name": "narrow", "network": "n3", "cidr": "10.0.1.0/24"}),
            json!({"op": "subnet_create", "name": "nogw", "network": "n3", "cidr": "10.3.0.0/24", "gateway_ip": null}),
            json!({"op": "subnet_create", "name": "other", "network": "n3", "cidr": "10.4.0.0/24"}),
        ],
    );
    refused(
        &mut m,
        &[json!({"op": "router_add_subnet", "router": "r2", "subnet": "s1"})],
        "subnet s1 is already on router r1",
    );
    refused(
        &mut m,
        &[json!({"op": "router_add_subnet", "router": "r1", "subnet": "s1"})],
        "subnet s1 is already on router r1",
    );
    ok(
        &mut m,
        &[json!({"op": "router_add_subnet", "router": "r2", "subnet": "wide"})],
    );
    assert_eq!(router(&m, "r2").interfaces[0].ip, ip("10.0.255.254"));
    refused(
        &mut m,
        &[json!({"op": "router_add_subnet", "router": "r2", "subnet": "narrow"})],
        "subnet 10.0.1.0/24 overlaps 10.0.0.0/16 (subnet wide) already on router r2",
    );
    refused(
        &mut m,
        &[json!({"op": "router_add_subnet", "router": "r2", "subnet": "nogw"})],
        "subnet nogw has no gateway IP; a router interface takes the subnet's gateway address",
    );
    refused(
        &mut m,
        &[json!({"op": "router_add_subnet", "router": "r2", "subnet": "ext-sub"})],
        "subnet ext-sub belongs to external network ext",
    );
    ok(
        &mut m,
        &[json!({"op": "router_add_subnet", "router": "r2", "subnet": "other"})],
    );
    let macs: Vec<_> = m
        .routers
        .values()
        .flat_map(|r| r.interfaces.iter().map(|i| i.mac))
        .collect();
    let distinct: std::collections::HashSet<_> = macs.iter().collect();
    assert_eq!(macs.len(), distinct.len());
}

#[test]
fn router_remove_subnet_rules() {
    let mut m = with_fip();
    ok(
        &mut m,
        &[
            json!({"op": "network_create", "name": "n2", "network_type": "vxlan", "segment": 200}),
            json!({"op": "subnet_create", "name": "s2", "network": "n2", "cidr": "10.2.0.0/24"}),
            json!({"op": "router_add_subnet", "router": "r1", "subnet": "s2"}),
            json!({"op": "router_set", "name": "r1", "routes": [
                {"destination": "10.20.0.0/16", "nexthop": "10.2.0.20"},
                {"destination": "10.30.0.0/16", "nexthop": "10.0.0.30"}]}),
        ],
    );
    refused(
        &mut m,
        &[json!({"op": "router_remove_subnet", "router": "r1", "subnet": "s2"})],
        "route 10.20.0.0/16 via 10.2.0.20 needs subnet s2: its nexthop is reachable only through it; remove the route first",
    );
    refused(
        &mut m,
        &[json!({"op": "router_remove_subnet", "router": "r1", "subnet": "s1"})],
        "route 10.30.0.0/16 via 10.0.0.30 needs subnet s1",
    );
    ok(
        &mut m,
        &[
            json!({"op": "router_unset", "name": "r1", "routes": [{"destination": "10.30.0.0/16", "nexthop": "10.0.0.30"}]}),
        ],
    );
    refused(
        &mut m,
        &[json!({"op": "router_remove_subnet", "router": "r1", "subnet": "s1"})],
        "floating IP 203.0.113.3 is served by router r1 through subnet s1 (port p1, 10.0.0.2); unset it first",
    );
    ok(
        &mut m,
        &[
            json!({"op": "floating_ip_unset", "address": "203.0.113.3"}),
            json!({"op": "router_remove_subnet", "router": "r1", "subnet": "s1"}),
        ],
    );
    refused(
        &mut m,
        &[json!({"op": "router_remove_subnet", "router": "r1", "subnet": "s1"})],
        "subnet s1 is not on router r1",
    );
}

// ---- floating IPs -----------------------------------------------------------------

#[test]
fn floating_ip_create_allocates_or_takes_the_address() {
    let mut m = base();
    refused(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "n1"})],
        "network n1 is not external; floating IPs live on an external network (router:external)",
    );
    // .1 is the subnet's gateway, .2 r1's gateway.
    let a = ok(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext"})],
    );
    assert_eq!(
        a,
        vec![Applied {
            kind: Kind::FloatingIp,
            name: "203.0.113.3".into()
        }]
    );
    ok(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext", "address": "203.0.113.10"})],
    );
    refused(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext", "address": "203.0.113.10"})],
        "floating IP 203.0.113.10 already exists",
    );
    refused(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext", "fixed_ip": "10.0.0.2"})],
        "a fixed IP for a floating IP needs a port",
    );
    refused(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext", "address": "198.51.100.10"})],
        "198.51.100.10 is not inside any IPv4 subnet of network ext",
    );
    refused(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext", "address": "203.0.113.2"})],
        "203.0.113.2 is already used by the external gateway of router r1",
    );
    refused(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext", "address": "203.0.113.1"})],
        "203.0.113.1 is the gateway address of subnet ext-sub",
    );
    refused(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext", "address": "203.0.113.255"})],
        "203.0.113.255 is the broadcast address of subnet ext-sub",
    );
    ok(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext"})],
    );
    assert!(m.floating_ips.contains_key(&v4("203.0.113.4")));
    // The lowest free address over all the network's subnets.
    ok(
        &mut m,
        &[
            json!({"op": "subnet_create", "name": "ext-low", "network": "ext", "cidr": "192.0.2.128/30"}),
            json!({"op": "floating_ip_create", "network": "ext"}),
        ],
    );
    assert!(m.floating_ips.contains_key(&v4("192.0.2.130")));
    refused(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext", "address": "192.0.2.129"})],
        "192.0.2.129 is the gateway address of subnet ext-low",
    );
}

#[test]
fn floating_ip_association() {
    let mut m = base();
    ok(
        &mut m,
        &[
            json!({"op": "port_create", "name": "p1", "network": "n1", "fixed_ips": [{"subnet": "s1"}, {"subnet": "s1"}]}),
            json!({"op": "network_create", "name": "n2", "network_type": "vxlan", "segment": 200}),
            json!({"op": "subnet_create", "name": "s2", "network": "n2", "cidr": "10.2.0.0/24"}),
            json!({"op": "port_create", "name": "p2", "network": "n2"}),
            json!({"op": "port_create", "name": "pe", "network": "ext"}),
            json!({"op": "floating_ip_create", "network": "ext", "address": "203.0.113.10"}),
            json!({"op": "floating_ip_create", "network": "ext", "address": "203.0.113.11"}),
        ],
    );
    let set =
        |addr: &str, port: &str| json!({"op": "floating_ip_set", "address": addr, "port": port});
    refused(&mut m, &[set("203.0.113.10", "p9")], "no port named p9");
    refused(
        &mut m,
        &[set("203.0.113.99", "p1")],
        "no floating IP 203.0.113.99",
    );
    refused(
        &mut m,
        &[set("203.0.113.10", "pe")],
        "port pe is on external network ext; floating IP 203.0.113.10 needs a port on an internal network",
    );
    refused(
        &mut m,
        &[set("203.0.113.10", "p2")],
        "no router connects subnet s2 to external network ext",
    );
    // A router on s2 without a gateway does not connect it either.
    ok(
        &mut m,
        &[
            json!({"op": "router_create", "name": "r2"}),
            json!({"op": "router_add_subnet", "router": "r2", "subnet": "s2"}),
        ],
    );
    refused(
        &mut m,
        &[set("203.0.113.10", "p2")],
        "no router connects subnet s2 to external network ext",
    );
    refused(
        &mut m,
        &[
            json!({"op": "floating_ip_set", "address": "203.0.113.10", "port": "p1", "fixed_ip": "10.0.0.9"}),
        ],
        "10.0.0.9 is not an IPv4 fixed IP of port p1",
    );
    // Default: the port's first IPv4 address; the router that connects it is recorded.
    ok(&mut m, &[set("203.0.113.10", "p1")]);
    let f = &m.floating_ips[&v4("203.0.113.10")];
    assert_eq!(
        (f.port.as_deref(), f.fixed_ip, f.router.as_deref()),
        (Some("p1"), Some(v4("10.0.0.2")), Some("r1"))
    );
    refused(
        &mut m,
        &[set("203.0.113.10", "p1")],
        "floating IP 203.0.113.10 is already associated with port p1; unset it first",
    );
    refused(
        &mut m,
        &[set("203.0.113.11", "p1")],
        "fixed IP 10.0.0.2 of port p1 already has floating IP 203.0.113.10",
    );
    // The port's other address may have its own.
    ok(
        &mut m,
        &[
            json!({"op": "floating_ip_set", "address": "203.0.113.11", "port": "p1", "fixed_ip": "10.0.0.3"}),
        ],
    );
    ok(
        &mut m,
        &[json!({"op": "floating_ip_unset", "address": "203.0.113.10"})],
    );
    let f = &m.floating_ips[&v4("203.0.113.10")];
    assert_eq!((&f.port, f.fixed_ip, &f.router), (&None, None, &None));
    // Created associated (.3 is port pe's), and deleted while associated.
    ok(
        &mut m,
        &[json!({"op": "floating_ip_create", "network": "ext", "port": "p1"})],
    );
    let f = &m.floating_ips[&v4("203.0.113.4")];
    assert_eq!(f.router.as_deref(), Some("r1"));
    refused(
        &mut m,
        &[
            json!({"op": "floating_ip_create", "network": "ext", "port": "p1", "fixed_ip": "10.0.0.3"}),
        ],
        "fixed IP 10.0.0.3 of port p1 already has floating IP 203.0.113.11",
    );
    ok(
        &mut m,
        &[json!({"op": "floating_ip_delete", "address": "203.0.113.11"})],
    );
    assert!(!m.floating_ips.contains_key(&v4("203.0.113.11")));
    refused(
        &mut m,
        &[json!({"op": "floating_ip_delete", "address": "203.0.113.11"})],
        "no floating IP 203.0.113.11",
    );
}

#[test]
fn floating_ip_needs_an_ipv4_fixed_ip() {
    let mut m = base();
    ok(
        &mut m,
        &[
            json!({"op": "subnet_create", "name": "s6", "network": "n1", "cidr": "fd00::/64"}),
            json!({"op": "port_create", "name": "p6", "network": "n1", "fixed_ips": [{"subnet": "s6"}]}),
            json!({"op": "floating_ip_create", "network": "ext"}),
        ],
    );
    refused(
        &mut m,
        &[json!({"op": "floating_ip_set", "address": "203.0.113.3", "port": "p6"})],
        "port p6 has no IPv4 fixed IP for floating IP 203.0.113.3",
    );
}

// ---- transactions ----------------------------------------------------------------

#[test]
fn empty_transaction_is_refused() {
    let mut m = base();
    refused(&mut m, &[], "empty transaction");
}

#[test]
fn a_transaction_is_applied_whole_or_not_at_all() {
    let mut m = with_fip();
    let before = serde_json::to_string_pretty(&m).unwrap();
    let generation = m.generation;
    // Two changes that would succeed (one deletes, one creates), a third that
    // fails, a fourth never reached.
    let err = m
        .apply(&changes(&[
            json!({"op": "floating_ip_delete", "address": "203.0.113.3"}),
            json!({"op": "port_create", "name": "p2", "network": "n1"}),
            json!({"op": "port_create", "name": "p3", "network": "n1", "fixed_ips": [{"ip": "10.0.0.3"}]}),
            json!({"op": "router_delete", "name": "r1"}),
        ]))
        .unwrap_err();
    assert_eq!(err.0, "change 3 of 4: 10.0.0.3 is already used by port p2");
    assert_eq!(serde_json::to_string_pretty(&m).unwrap(), before);
    assert_eq!(m.generation, generation);
    // Everything kinds of write rolled back: modify, delete, create of each kind.
    let err = m
        .apply(&changes(&[
            json!({"op": "host_set", "name": "cn1", "agent_mode": "legacy"}),
            json!({"op": "host_set", "name": "cn3", "agent_mode": "dvr"}),
            json!({"op": "network_set", "name": "n1", "mtu": 1400}),
            json!({"op": "network_create", "name": "n5", "network_type": "gre", "segment": 5}),
            json!({"op": "subnet_create", "name": "s5", "network": "n5", "cidr": "10.5.0.0/24"}),
            json!({"op": "port_set", "name": "p1", "host": "cn3"}),
            json!({"op": "router_set", "name": "r1", "routes": [{"destination": "10.9.0.0/16", "nexthop": "10.0.0.9"}]}),
            json!({"op": "router_add_subnet", "router": "r1", "subnet": "s5"}),
            json!({"op": "floating_ip_unset", "address": "203.0.113.3"}),
            json!({"op": "floating_ip_create", "network": "ext"}),
            json!({"op": "port_delete", "name": "p1"}),
            json!({"op": "router_delete", "name": "r1"}),
        ]))
        .unwrap_err();
    assert!(
        err.0
            .starts_with("change 12 of 12: router r1 still has interfaces"),
        "{err}"
    );
    assert_eq!(serde_json::to_string_pretty(&m).unwrap(), before);
    assert_eq!(m.generation, generation);
}

#[test]
fn later_changes_see_earlier_ones_and_generation_grows_once() {
    let mut m = Model::default();
    let applied = ok(
        &mut m,
        &[
            json!({"op": "network_create", "name": "n1", "network_type": "vxlan", "segment": 1}),
            json!({"op": "subnet_create", "name": "s1", "network": "n1", "cidr": "10.0.0.0/24"}),
            json!({"op": "port_create", "name": "p1", "network": "n1"}),
            json!({"op": "port_delete", "name": "p1"}),
            json!({"op": "port_create", "name": "p1", "network": "n1", "fixed_ips": [{"ip": "10.0.0.7"}]}),
        ],
    );
    assert_eq!(m.generation, 1);
    assert_eq!(applied.len(), 5);
    assert_eq!(
        applied[2],
        Applied {
            kind: Kind::Port,
            name: "p1".into()
        }
    );
    assert_eq!(port(&m, "p1").fixed_ips[0].ip, ip("10.0.0.7"));
}

// ---- show / list ---------------------------------------------------------------------

#[test]
fn show_and_list() {
    let m = with_fip();
    let r = m.show(Kind::Router, "r1").unwrap();
    assert_eq!(r["distributed"], json!(true));
    assert_eq!(r["interfaces"][0]["ip"], json!("10.0.0.1"));
    assert_eq!(
        m.show(Kind::Router, "r9").unwrap_err().0,
        "no router named r9"
    );
    assert_eq!(
        m.show(Kind::FloatingIp, "203.0.113.3").unwrap()["port"],
        json!("p1")
    );
    assert_eq!(
        m.show(Kind::FloatingIp, "203.0.113.9").unwrap_err().0,
        "no floating IP 203.0.113.9"
    );
    assert_eq!(
        m.show(Kind::FloatingIp, "nonsense").unwrap_err().0,
        "no floating IP nonsense"
    );
    assert_eq!(
        m.show(Kind::Subnet, "s9").unwrap_err().0,
        "no subnet named s9"
    );
    let hosts: Vec<Value> = m
        .list(Kind::Host)
        .iter()
        .map(|h| h["name"].clone())
        .collect();
    assert_eq!(hosts, vec![json!("cn1"), json!("nn1")]);
    let nets: Vec<Value> = m
        .list(Kind::Network)
        .iter()
        .map(|h| h["name"].clone())
        .collect();
    assert_eq!(nets, vec![json!("ext"), json!("n1")]);
    assert_eq!(m.list(Kind::FloatingIp).len(), 1);
    assert!(m.list(Kind::Port)[0]["mac"]
        .as_str()
        .unwrap()
        .starts_with("fa:16:3e:"));
}

// ---- persistence ----------------------------------------------------------------------

#[test]
fn save_and_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    assert_eq!(
        Model::load(&path).unwrap(),
        Model::default(),
        "a missing file is an empty model"
    );
    let mut m = with_fip();
    ok(
        &mut m,
        &[
            json!({"op": "subnet_create", "name": "s6", "network": "n1", "cidr": "fd00::/64"}),
            json!({"op": "port_create", "name": "p2", "network": "n1", "allowed_address_pairs": [{"ip": "10.0.0.128/25", "mac": "fa:16:3e:00:00:99"}]}),
            json!({"op": "router_set", "name": "r1", "routes": [{"destination": "10.1.0.0/16", "nexthop": "10.0.0.10"}]}),
            json!({"op": "host_set", "name": "cn2", "agent_mode": "dvr_no_external", "fip_gateway": {"ip": "203.0.113.200", "mac": "fa:16:3f:aa:00:01"}}),
        ],
    );
    m.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["format"], json!(1));
    assert!(text.contains("\n  \"model\": {"), "pretty JSON");
    assert_eq!(Model::load(&path).unwrap(), m);
    // Saved again over the old file; no temporary file left behind.
    ok(&mut m, &[json!({"op": "router_create", "name": "r2"})]);
    m.save(&path).unwrap();
    assert_eq!(Model::load(&path).unwrap(), m);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["model.json".to_string()]);
}

#[test]
fn load_rejects_corrupt_and_unknown_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    let load_err = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let e = Model::load(&path).unwrap_err().0;
        assert!(
            e.contains(&path.display().to_string()),
            "{e} does not name the file"
        );
        e
    };
    let e = load_err("{\"format\": 1, \"model\": {\"hosts\": ");
    assert!(e.contains("is corrupt"), "{e}");
    let e = load_err("{\"format\": 2, \"model\": {}}");
    assert!(
        e.contains("has format 2; this dvr reads format 1 only"),
        "{e}"
    );
    let e = load_err("{\"model\": {}}");
    assert!(e.contains("no \"format\" field"), "{e}");
    let e = load_err("[1, 2]");
    assert!(e.contains("is corrupt"), "{e}");
    let e = load_err("{\"format\": 1, \"model\": {\"hosts\": {}, \"bogus\": 1}}");
    assert!(e.contains("is invalid") && e.contains("bogus"), "{e}");
    // A directory is not a file.
    let e = Model::load(dir.path()).unwrap_err().0;
    assert!(e.contains("cannot read model file"), "{e}");
}

/// Hand edits that break an invariant are refused with a message naming the object.
#[test]
fn load_validates_the_whole_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    let good = with_fip();
    good.save(&path).unwrap();
    let original: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = original.clone();
        f(&mut v["model"]);
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        Model::load(&path).unwrap_err().0
    };
    let e = edit(&|m| m["ports"]["p1"]["network"] = json!("n9"));
    assert!(e.contains("invalid: port p1: no network named n9"), "{e}");
    let e = edit(&|m| {
        let mut p2 = m["ports"]["p1"].clone();
        p2["name"] = json!("p2");
        p2["mac"] = json!("fa:16:3e:00:00:02");
        m["ports"]["p2"] = p2;
    });
    assert!(
        e.contains("port p2: 10.0.0.2 is already used by port p1"),
        "{e}"
    );
    let e = edit(&|m| m["routers"]["r1"]["ha"] = json!(true));
    assert!(
        e.contains("router r1: DVR cannot be combined with L3 HA"),
        "{e}"
    );
    let e = edit(&|m| m["subnets"]["s1"]["cidr"] = json!("10.0.0.1/24"));
    assert!(e.contains("did you mean 10.0.0.0/24"), "{e}");
    let e = edit(&|m| {
        m["subnets"]["s1b"] =
            json!({"name": "s1b", "network": "n1", "cidr": "10.0.0.0/16", "gateway_ip": null});
    });
    assert!(e.contains("overlaps"), "{e}");
    let e = edit(&|m| m["floating_ips"]["203.0.113.3"]["router"] = Value::Null);
    assert!(e.contains("incomplete association"), "{e}");
    let e = edit(&|m| m["hosts"]["cn1"]["name"] = json!("cn2"));
    assert!(
        e.contains("hosts: the entry cn1 holds an object named cn2"),
        "{e}"
    );
    let e = edit(&|m| m["networks"]["n1"]["segment"] = json!(null));
    assert!(
        e.contains("network n1: a vxlan network needs a segment"),
        "{e}"
    );
    let e = edit(&|m| {
        m["networks"]["n2"] = json!({"name": "n2", "network_type": "vxlan", "segment": 100, "mtu": 1450, "external": false});
    });
    assert!(
        e.contains("vxlan segment 100 is already used by network n"),
        "{e}"
    );
    let e = edit(&|m| m["ports"]["p1"]["allowed_address_pairs"] = json!([{"ip": "0.0.0.0/0"}]));
    assert!(
        e.contains("would let the port send from any address"),
        "{e}"
    );
    // The untouched file loads.
    std::fs::write(&path, serde_json::to_string(&original).unwrap()).unwrap();
    assert_eq!(Model::load(&path).unwrap(), good);
}

// ---- scale ------------------------------------------------------------------------------

/// 2,000 routers, each with one subnet interface and 50 extra routes, built in one
/// transaction; then one extra route on one router. The single change writes one
/// object: its undo log holds the previous value of that router and nothing else
/// (no map is copied; see `Model::apply`).
#[test]
fn scale_one_change_touches_one_router() {
    const ROUTERS: usize = 2000;
    const ROUTES: usize = 50;
    let mut m = Model::default();
    let mut big = vec![change(
        json!({"op": "network_create", "name": "tenant", "network_type": "vxlan", "segment": 7}),
    )];
    for i in 0..ROUTERS {
        let (a, b) = (i / 256, i % 256);
        let name = format!("r{i}");
        let subnet = format!("s{i}");
        big.push(change(json!({"op": "subnet_create", "name": subnet, "network": "tenant", "cidr": format!("10.{a}.{b}.0/24")})));
        big.push(change(json!({"op": "router_create", "name": name})));
        big.push(change(
            json!({"op": "router_add_subnet", "router": name, "subnet": subnet}),
        ));
        let routes: Vec<Value> = (0..ROUTES)
            .map(|k| json!({"destination": format!("172.{}.{k}.0/24", 16 + i % 16), "nexthop": format!("10.{a}.{b}.254")}))
            .collect();
        big.push(change(
            json!({"op": "router_set", "name": name, "routes": routes}),
        ));
    }
    let applied = m.apply(&big).unwrap();
    assert_eq!(applied.len(), 1 + 4 * ROUTERS);
    assert_eq!(m.generation, 1);
    assert_eq!(m.routers.len(), ROUTERS);
    assert_eq!(
        m.routers.values().map(|r| r.routes.len()).sum::<usize>(),
        ROUTERS * ROUTES
    );
    m.validate().unwrap();

    let one = change(
        json!({"op": "router_set", "name": "r1234", "routes": [{"destination": "192.168.0.0/16", "nexthop": "10.4.210.254"}]}),
    );
    let before_other = m.routers["r1233"].clone();
    let mut log = Vec::new();
    m.apply_one(&one, &mut log).unwrap();
    assert_eq!(log.len(), 1, "one change, one object saved");
    match &log[0] {
        Undo::Router(name, Some(old)) => {
            assert_eq!(name, "r1234");
            assert_eq!(old.routes.len(), ROUTES);
        }
        _ => panic!("expected the previous r1234 in the undo log"),
    }
    assert_eq!(m.routers["r1234"].routes.len(), ROUTES + 1);
    m.rollback(log);
    assert_eq!(m.routers["r1234"].routes.len(), ROUTES);

    // Through the public API: the generation grows by one, the rest is untouched.
    m.apply(std::slice::from_ref(&one)).unwrap();
    assert_eq!(m.generation, 2);
    assert_eq!(
        m.routers["r1234"].routes.last().unwrap().destination,
        "192.168.0.0/16".parse().unwrap()
    );
    assert_eq!(m.routers["r1233"], before_other);
    let e = m.apply(std::slice::from_ref(&one)).unwrap_err();
    assert_eq!(
        e.0,
        "route 192.168.0.0/16 via 10.4.210.254 is already on router r1234"
    );
    assert_eq!(m.generation, 2);
}

/// `gateway_ip`: absent is the default gateway, `null` is no gateway; both
/// survive a serialize / deserialize round trip (what dvr-ctl sends).
#[test]
fn subnet_gateway_none_on_the_wire() {
    let absent =
        change(json!({"op": "subnet_create", "name": "a", "network": "n", "cidr": "10.0.0.0/24"}));
    let null = change(
        json!({"op": "subnet_create", "name": "a", "network": "n", "cidr": "10.0.0.0/24", "gateway_ip": null}),
    );
    let given = change(
        json!({"op": "subnet_create", "name": "a", "network": "n", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.9"}),
    );
    let gw = |c: &Change| match c {
        Change::SubnetCreate { gateway_ip, .. } => *gateway_ip,
        _ => unreachable!(),
    };
    assert_eq!(gw(&absent), None);
    assert_eq!(gw(&null), Some(None));
    assert_eq!(gw(&given), Some(Some(ip("10.0.0.9"))));
    for c in [absent, null, given] {
        let back: Change = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}

use crate::testkit::Rng;

/// A random change over few names and few values, so that changes often collide
/// (taken addresses and MACs, used objects, missing ones).
fn random_change(r: &mut Rng) -> Value {
    const HOSTS: &[&str] = &["cn1", "nn1", "h2"];
    const NETS: &[&str] = &["n1", "ext", "n1", "ext", "n2", "n3"];
    const SUBNETS: &[&str] = &["s1", "ext-sub", "s2", "s3", "s4"];
    const PORTS: &[&str] = &["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"];
    const ROUTERS: &[&str] = &["r1", "r2", "r3"];
    const CIDRS: &[&str] = &[
        "10.0.0.0/24",
        "10.0.1.0/29",
        "10.0.2.0/29",
        "203.0.113.0/29",
        "203.0.113.0/28",
        "fd00::/64",
    ];
    const IPS: &[&str] = &[
        "10.0.0.2",
        "10.0.0.3",
        "10.0.1.2",
        "10.0.2.2",
        "203.0.113.2",
        "203.0.113.3",
        "203.0.113.4",
        "203.0.113.9",
        "fd00::2",
    ];
    const MACS: &[&str] = &[
        "fa:16:3e:00:00:01",
        "fa:16:3e:00:00:02",
        "fa:16:3e:00:00:03",
    ];
    const FIPS: &[&str] = &["203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.9"];
    let opt = |keep: bool, v: Value| if keep { v } else { Value::Null };
    match r.below(26) {
        0 => {
            let fip_gateway = if r.chance(40) {
                json!({"ip": r.pick(FIPS), "mac": r.pick(MACS)})
            } else {
                Value::Null
            };
            json!({"op": "host_set", "name": r.pick(HOSTS),
                "agent_mode": if r.chance(50) { "dvr" } else { "dvr_snat" },
                "vtep": opt(r.chance(50), json!(format!("192.0.2.{}", 10 + r.below(3)))),
                "dvr_mac": opt(r.chance(50), json!(format!("fa:16:3f:00:00:{}", 10 + r.below(3)))),
                "fip_gateway": fip_gateway})
        }
        1 => json!({"op": "host_delete", "name": r.pick(HOSTS)}),
        2 => json!({"op": "network_create", "name": r.pick(NETS), "network_type": "vxlan",
            "segment": 99 + r.below(3), "external": r.chance(40)}),
        3 => json!({"op": "network_set", "name": r.pick(NETS), "external": r.chance(50)}),
        4 => json!({"op": "network_delete", "name": r.pick(NETS)}),
        5 | 6 => json!({"op": "subnet_create", "name": r.pick(SUBNETS), "network": r.pick(NETS),
            "cidr": r.pick(CIDRS)}),
        7 => json!({"op": "subnet_delete", "name": r.pick(SUBNETS)}),
        8..=10 => {
            let fixed_ips = match r.below(4) {
                0 => json!([]),
                1 => json!([{"subnet": r.pick(SUBNETS)}]),
                2 => json!([{"ip": r.pick(IPS)}]),
                _ => {
                    json!([{"subnet": r.pick(SUBNETS), "ip": r.pick(IPS)}, {"subnet": r.pick(SUBNETS)}])
                }
            };
            json!({"op": "port_create", "name": r.pick(PORTS), "network": r.pick(NETS),
                "mac": opt(r.chance(50), json!(r.pick(MACS))), "fixed_ips": fixed_ips,
                "host": opt(r.chance(50), json!(r.pick(HOSTS)))})
        }
        11 => json!({"op": "port_set", "name": r.pick(PORTS), "host": r.pick(HOSTS)}),
        12 => json!({"op": "port_delete", "name": r.pick(PORTS)}),
        13 => json!({"op": "router_create", "name": r.pick(ROUTERS)}),
        14 => {
            json!({"op": "router_add_subnet", "router": r.pick(ROUTERS), "subnet": r.pick(SUBNETS)})
        }
        15 => {
            json!({"op": "router_remove_subnet", "router": r.pick(ROUTERS), "subnet": r.pick(SUBNETS)})
        }
        16 => {
            let fixed_ip = if r.chance(50) {
                json!({"ip": r.pick(IPS)})
            } else {
                Value::Null
            };
            json!({"op": "router_set", "name": r.pick(ROUTERS),
                "external_gateway": {"network": r.pick(NETS), "fixed_ip": fixed_ip},
                "snat_host": opt(r.chance(50), json!(r.pick(HOSTS)))})
        }
        17 => json!({"op": "router_unset", "name": r.pick(ROUTERS), "external_gateway": true}),
        18 => json!({"op": "router_delete", "name": r.pick(ROUTERS)}),
        19 | 22 | 23 => json!({"op": "floating_ip_create", "network": r.pick(NETS),
            "address": opt(r.chance(50), json!(r.pick(FIPS))), "port": opt(r.chance(50), json!(r.pick(PORTS)))}),
        20 | 24 => json!({"op": "floating_ip_set", "address": r.pick(FIPS), "port": r.pick(PORTS)}),
        _ => {
            if r.chance(50) {
                json!({"op": "floating_ip_unset", "address": r.pick(FIPS)})
            } else {
                json!({"op": "floating_ip_delete", "address": r.pick(FIPS)})
            }
        }
    }
}

/// The index kept change by change (through commits, refusals and rollbacks)
/// equals one built from scratch; and every transaction gives the same result
/// (the same objects, or the same message) as the scans the index replaced, and
/// as on a copy whose index is built lazily.
#[test]
fn index_follows_every_change_and_matches_the_scans() {
    use super::index::SCAN;
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut m = Model::default();
    let mut scanned = Model::default();
    let (mut accepted, mut rejected) = (0, 0);
    let mut associated = 0;
    for round in 0..6000 {
        if round % 1500 == 0 {
            // Episodes start from `base`, whose names the changes reuse.
            m = base();
            scanned = m.clone();
        }
        associated += m.floating_ips.values().filter(|f| f.port.is_some()).count();
        let n = if r.chance(75) {
            1
        } else {
            2 + r.below(2) as usize
        };
        let txn: Vec<Value> = (0..n).map(|_| random_change(&mut r)).collect();
        let Ok(txn) = txn
            .iter()
            .map(|v| serde_json::from_value::<Change>(v.clone()))
            .collect::<Result<Vec<Change>, _>>()
        else {
            continue;
        };
        let before = m.clone();
        let got = m.apply(&txn);
        SCAN.with(|s| s.set(true));
        let want = scanned.apply(&txn);
        SCAN.with(|s| s.set(false));
        assert_eq!(got, want, "round {round}: {txn:?}");
        assert_eq!(m, scanned, "round {round}: {txn:?}");
        match &got {
            Ok(_) => accepted += 1,
            Err(_) => {
                rejected += 1;
                assert_eq!(m, before, "round {round}: a refusal changed the model");
            }
        }
        assert!(m.index_is_fresh(), "round {round}: {txn:?}");
        assert!(scanned.index_is_fresh(), "round {round}: {txn:?}");
        m.validate().unwrap();
        if round % 250 == 0 {
            // A model without its index (as deserialized) builds it on first use.
            let mut fresh: Model =
                serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
            assert!(fresh.idx().is_none());
            let mut copy = m.clone();
            assert_eq!(fresh.apply(&txn), copy.apply(&txn));
            assert_eq!(fresh, copy);
            assert!(fresh.index_is_fresh());
        }
    }
    assert!(
        accepted > 500 && rejected > 500 && associated > 100,
        "{accepted} accepted, {rejected} rejected, {associated} associated floating IPs seen"
    );
}

/// Undo through `apply_one` and `rollback` directly: the index goes back too.
#[test]
fn rollback_restores_the_index() {
    let mut m = with_fip();
    assert!(m.index_is_fresh());
    let mut log = Vec::new();
    for c in changes(&[
        json!({"op": "port_create", "name": "x1", "network": "n1"}),
        json!({"op": "router_remove_subnet", "router": "r1", "subnet": "s1"}),
    ]) {
        let _ = m.apply_one(&c, &mut log);
        assert!(m.index_is_fresh());
    }
    let before = with_fip();
    m.rollback(log);
    assert_eq!(m, before);
    assert!(m.index_is_fresh());
}

/// 20,000 ports with explicit addresses and 20,000 floating IPs associated with
/// them, in transactions of 1,000: every change's checks and allocations look
/// things up instead of scanning, so this is linear (it would be quadratic, and
/// minutes long in a debug build, with scans).
#[test]
fn scale_ports_and_floating_ips() {
    const N: usize = 20_000;
    const TXN: usize = 1_000;
    let started = std::time::Instant::now();
    let mut m = Model::default();
    m.apply(&changes(&[
        json!({"op": "host_set", "name": "cn1", "agent_mode": "dvr", "vtep": "192.0.2.11", "dvr_mac": "fa:16:3f:00:00:11"}),
        json!({"op": "network_create", "name": "tenant", "network_type": "vxlan", "segment": 7}),
        json!({"op": "subnet_create", "name": "ts", "network": "tenant", "cidr": "10.0.0.0/16"}),
        json!({"op": "network_create", "name": "ext", "network_type": "flat", "external": true}),
        json!({"op": "subnet_create", "name": "es", "network": "ext", "cidr": "100.64.0.0/16"}),
        json!({"op": "router_create", "name": "r"}),
        json!({"op": "router_add_subnet", "router": "r", "subnet": "ts"}),
        json!({"op": "router_set", "name": "r", "external_gateway": {"network": "ext"}}),
    ]))
    .unwrap();
    // The gateway took 100.64.0.2; ports and floating IPs count from .3 / .2.
    let addr = |base: u32, i: usize| Ipv4Addr::from(base + i as u32);
    let port_ip = |i| addr(u32::from(v4("10.0.0.2")), i);
    let fip_ip = |i| addr(u32::from(v4("100.64.0.3")), i);
    for start in (0..N).step_by(TXN) {
        let txn: Vec<Change> = (start..start + TXN)
            .map(|i| Change::PortCreate {
                name: format!("p{i}"),
                network: "tenant".into(),
                mac: None,
                fixed_ips: vec![FixedIpSpec {
                    subnet: Some("ts".into()),
                    ip: Some(IpAddr::V4(port_ip(i))),
                }],
                host: Some("cn1".into()),
                port_security: None,
                allowed_address_pairs: Vec::new(),
                binding: None,
            })
            .collect();
        m.apply(&txn).unwrap();
    }
    let ports_done = started.elapsed();
    for start in (0..N).step_by(TXN) {
        let txn: Vec<Change> = (start..start + TXN)
            .map(|i| Change::FloatingIpCreate {
                network: "ext".into(),
                address: Some(fip_ip(i)),
                port: Some(format!("p{i}")),
                fixed_ip: None,
            })
            .collect();
        m.apply(&txn).unwrap();
    }
    let built = started.elapsed();
    assert_eq!(m.ports.len(), N);
    assert_eq!(m.floating_ips.len(), N);
    assert_eq!(m.generation, 1 + 2 * (N / TXN) as u64);
    let f = &m.floating_ips[&fip_ip(123)];
    assert_eq!(f.port.as_deref(), Some("p123"));
    assert_eq!(f.fixed_ip, Some(port_ip(123)));
    assert_eq!(f.router.as_deref(), Some("r"));
    let macs: std::collections::HashSet<_> = m.ports.values().map(|p| p.mac).collect();
    assert_eq!(macs.len(), N);

    // Conflicts are still found, with the same messages.
    let e = m
        .apply(&changes(&[
            json!({"op": "port_create", "name": "dup", "network": "tenant",
            "fixed_ips": [{"ip": port_ip(7777)}]}),
        ]))
        .unwrap_err();
    assert_eq!(
        e.0,
        format!("{} is already used by port p7777", port_ip(7777))
    );
    let e = m
        .apply(&changes(&[
            json!({"op": "port_create", "name": "dup", "network": "tenant",
            "mac": m.ports["p5"].mac}),
        ]))
        .unwrap_err();
    assert_eq!(
        e.0,
        format!(
            "MAC {} is already used by port p5 on network tenant",
            m.ports["p5"].mac
        )
    );
    let e = m
        .apply(&changes(&[
            json!({"op": "floating_ip_create", "network": "ext", "address": fip_ip(99)}),
        ]))
        .unwrap_err();
    assert_eq!(e.0, format!("floating IP {} already exists", fip_ip(99)));
    let e = m
        .apply(&changes(&[json!({"op": "floating_ip_create", "network": "ext", "address": fip_ip(N), "port": "p42"})]))
        .unwrap_err();
    assert_eq!(
        e.0,
        format!(
            "fixed IP {} of port p42 already has floating IP {}",
            port_ip(42),
            fip_ip(42)
        )
    );
    let e = m
        .apply(&changes(&[json!({"op": "port_delete", "name": "p9"})]))
        .unwrap_err();
    assert_eq!(
        e.0,
        format!(
            "floating IP {} is associated with port p9; unset it first",
            fip_ip(9)
        )
    );
    // Allocation: the lowest free address, after all the taken ones.
    m.apply(&changes(&[
        json!({"op": "port_create", "name": "auto", "network": "tenant"}),
        json!({"op": "floating_ip_create", "network": "ext"}),
    ]))
    .unwrap();
    assert_eq!(m.ports["auto"].fixed_ips[0].ip, IpAddr::V4(port_ip(N)));
    assert!(m.floating_ips.contains_key(&fip_ip(N)));
    m.validate().unwrap();
    eprintln!(
        "scale: {N} ports in {ports_done:?}, + {N} floating IPs in {built:?}, {:?} with the checks",
        started.elapsed()
    );
}
