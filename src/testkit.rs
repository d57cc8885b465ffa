//! The test topology shared by the golden tests, the fuzz targets and the
//! routed benchmarks: node `cn1` (VTEP 192.0.2.1) and another host `cn2`
//! (VTEP 192.0.2.2); one distributed router `r1` joining `blue` (VXLAN 101:
//! 10.1.0.0/24, 2001:db8:1::/64), `red` (GRE key 202: 10.2.0.0/24,
//! 2001:db8:2::/64) and `green` (VLAN 303, MTU 1500: 10.3.0.0/24,
//! 2001:db8:3::/64). Ports a (blue), b (red) and e (green) are on cn1; c (blue),
//! d (red) and f (green) on cn2. Port a has the allowed pair 10.1.99.0/24 with
//! its own MAC.

use serde_json::{json, Value};

use crate::config::PortRole;
use crate::mac::MacAddr;
use crate::model::{Change, Model};
use crate::snapshot::{DpPort, NodePorts};

pub const UL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
pub const CN2_UL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const DVR1: [u8; 6] = [0xfa, 0x16, 0x3f, 0, 0, 1];
pub const DVR2: [u8; 6] = [0xfa, 0x16, 0x3f, 0, 0, 2];
pub const VTEP1: [u8; 4] = [192, 0, 2, 1];
pub const VTEP2: [u8; 4] = [192, 0, 2, 2];

pub const A_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0a];
pub const B_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0b];
pub const C_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0c];
pub const D_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0d];
pub const E_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0e];
pub const F_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0f];
pub const PAIR_MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x99];

// Dataplane port indexes of cn1.
pub const VM_A: u16 = 0;
pub const VM_B: u16 = 1;
pub const VM_E: u16 = 2;
pub const UP: u16 = 3;

pub fn changes(v: Value) -> Vec<Change> {
    serde_json::from_value(v).expect("valid changes")
}

pub fn port(
    name: &str,
    net: &str,
    mac: [u8; 6],
    host: &str,
    binding: Option<&str>,
    ips: &[(&str, &str)],
) -> Value {
    json!({"op": "port_create", "name": name, "network": net, "mac": MacAddr(mac).to_string(),
        "host": host, "binding": binding,
        "fixed_ips": ips.iter().map(|(s, ip)| json!({"subnet": s, "ip": ip})).collect::<Vec<_>>()})
}

pub fn model() -> Model {
    let mut m = Model::default();
    m.apply(&changes(json!([
        {"op": "host_set", "name": "cn1", "agent_mode": "dvr", "vtep": "192.0.2.1", "dvr_mac": MacAddr(DVR1).to_string()},
        {"op": "host_set", "name": "cn2", "agent_mode": "dvr", "vtep": "192.0.2.2", "dvr_mac": MacAddr(DVR2).to_string()},
        {"op": "network_create", "name": "blue", "network_type": "vxlan", "segment": 101},
        {"op": "network_create", "name": "red", "network_type": "gre", "segment": 202},
        {"op": "network_create", "name": "green", "network_type": "vlan", "segment": 303, "mtu": 1500},
        {"op": "subnet_create", "name": "blue4", "network": "blue", "cidr": "10.1.0.0/24"},
        {"op": "subnet_create", "name": "blue6", "network": "blue", "cidr": "2001:db8:1::/64"},
        {"op": "subnet_create", "name": "red4", "network": "red", "cidr": "10.2.0.0/24"},
        {"op": "subnet_create", "name": "red6", "network": "red", "cidr": "2001:db8:2::/64"},
        {"op": "subnet_create", "name": "green4", "network": "green", "cidr": "10.3.0.0/24"},
        {"op": "subnet_create", "name": "green6", "network": "green", "cidr": "2001:db8:3::/64"},
        {"op": "router_create", "name": "r1"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "blue4"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "blue6"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "red4"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "red6"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "green4"},
        {"op": "router_add_subnet", "router": "r1", "subnet": "green6"},
        port("a", "blue", A_MAC, "cn1", Some("vm-a"), &[("blue4", "10.1.0.10"), ("blue6", "2001:db8:1::10")]),
        port("b", "red", B_MAC, "cn1", Some("vm-b"), &[("red4", "10.2.0.10"), ("red6", "2001:db8:2::10")]),
        port("c", "blue", C_MAC, "cn2", Some("vm-a"), &[("blue4", "10.1.0.20")]),
        port("d", "red", D_MAC, "cn2", Some("vm-b"), &[("red4", "10.2.0.20"), ("red6", "2001:db8:2::20")]),
        port("e", "green", E_MAC, "cn1", Some("vm-e"), &[("green4", "10.3.0.10"), ("green6", "2001:db8:3::10")]),
        port("f", "green", F_MAC, "cn2", Some("vm-c"), &[("green4", "10.3.0.20")]),
        {"op": "port_set", "name": "a", "allowed_address_pairs": [{"ip": "10.1.99.0/24", "mac": MacAddr(PAIR_MAC).to_string()}]},
    ])))
    .expect("the test topology is valid");
    m
}

pub fn node() -> NodePorts {
    let dp = |name: &str, role, mac: [u8; 6]| DpPort {
        name: name.into(),
        role,
        mac: MacAddr(mac),
    };
    NodePorts {
        node: "cn1".into(),
        ports: vec![
            dp("vm-a", PortRole::Vm, [0; 6]),
            dp("vm-b", PortRole::Vm, [0; 6]),
            dp("vm-e", PortRole::Vm, [0; 6]),
            dp("up", PortRole::Underlay, UL_MAC),
        ],
        static_fdb: vec![],
        vtep: None,
        dvr_mac: None,
        vtep_macs: vec![],
    }
}

/// The snapshot of [`model`] on [`node`] with cn2's VTEP resolved (its
/// underlay MAC is [`CN2_UL_MAC`]).
pub fn snapshot(m: &Model) -> std::sync::Arc<crate::snapshot::Snapshot> {
    let mut c = crate::snapshot::Compiler::new(m, node());
    c.set_vtep_mac(std::net::Ipv4Addr::from(VTEP2), MacAddr(CN2_UL_MAC))
        .expect("a new VTEP MAC publishes")
}
