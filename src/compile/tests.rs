use super::*;
use std::net::IpAddr;

use crate::config::PortRole;
use crate::l2::MacTable;
use crate::model::{Change, NetworkType};
use crate::tables::{Dest, DpPort, Slot, MAX_HOLDERS};

/// A learned VIP holder is published, stays when its network is
/// recompiled and when a new compiler takes over; a MAC no pair gives
/// the address is refused; a network remembers at most MAX_HOLDERS.
#[test]
fn vip_holders_survive_recompiles_and_are_bounded() {
    use crate::testkit;
    use serde_json::json;
    let mut m = testkit::model();
    let mut c = Compiler::new(&m, testkit::node());
    let blue = c.net_ids["blue"];
    let ip: IpAddr = "10.1.99.7".parse().unwrap();
    let pair = MacAddr(testkit::PAIR_MAC);
    let holders = |s: &Snapshot| s.nets.get(blue as usize).unwrap().holders.clone();
    assert!(c
        .set_vip_holder(blue, ip, MacAddr(testkit::A_MAC))
        .is_none());
    assert!(c
        .set_vip_holder(blue, "10.1.98.7".parse().unwrap(), pair)
        .is_none());
    let s = c.set_vip_holder(blue, ip, pair).expect("published");
    assert_eq!(
        s.nets.get(blue as usize).unwrap().vip_holder(ip),
        Some((pair, Dest::Local(testkit::VM_A)))
    );
    let applied = m
        .apply(&testkit::changes(json!([testkit::port(
            "a3",
            "blue",
            [0xfa, 0x16, 0x3e, 0, 0, 0xa3],
            "cn2",
            None,
            &[("blue4", "10.1.0.30")]
        )])))
        .unwrap();
    let s = c.update(&m, &applied);
    assert_eq!(holders(&s).get(&ip), Some(&pair), "kept on a recompile");
    let mut fresh = Compiler::new(&m, testkit::node());
    fresh.inherit_holders(&c);
    assert_eq!(holders(fresh.current()).get(&ip), Some(&pair));

    m.apply(&testkit::changes(json!([
        {"op": "port_set", "name": "a", "allowed_address_pairs": [{"ip": "10.200.0.0/16"}]}
    ])))
    .unwrap();
    let mut c = Compiler::new(&m, testkit::node());
    let a = MacAddr(testkit::A_MAC);
    for i in 0..MAX_HOLDERS as u32 + 10 {
        let ip = IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i));
        let _ = c.set_vip_holder(blue, ip, a);
    }
    assert_eq!(holders(c.current()).len(), MAX_HOLDERS);
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn node() -> NodePorts {
    let dp = |name: &str, role| DpPort {
        name: name.into(),
        role,
        mac: MacAddr::default(),
    };
    NodePorts {
        node: "cn1".into(),
        ports: vec![
            dp("vm-a", PortRole::Vm),
            dp("vm-b", PortRole::Vm),
            dp("vm-c", PortRole::Vm),
            dp("up", PortRole::Underlay),
        ],
        static_fdb: vec![(mac("fa:16:3e:00:00:99"), 2)],
        vtep: None,
        dvr_mac: None,
        vtep_macs: vec![],
    }
}

/// The FDB of the network dataplane port `p`'s model port is on.
fn fdb_of(s: &Snapshot, p: u16) -> Option<&MacTable<Dest>> {
    match &s.ports[p as usize] {
        Slot::Vm(Some(v)) => s.net(v.net).map(|n| &n.fdb),
        _ => None,
    }
}

fn port(name: &str, net: &str, m: &str, host: &str, binding: &str) -> Change {
    Change::PortCreate {
        name: name.into(),
        network: net.into(),
        mac: Some(mac(m)),
        fixed_ips: vec![],
        host: Some(host.into()),
        port_security: None,
        allowed_address_pairs: vec![],
        binding: Some(binding.into()),
    }
}

#[test]
fn local_ports_switch_within_their_network_only() {
    let mut m = Model::default();
    let mut changes = vec![
        Change::HostSet {
            name: "cn1".into(),
            agent_mode: crate::config::AgentMode::Dvr,
            vtep: None,
            dvr_mac: None,
            fip_gateway: None,
        },
        Change::HostSet {
            name: "cn2".into(),
            agent_mode: crate::config::AgentMode::Dvr,
            vtep: None,
            dvr_mac: None,
            fip_gateway: None,
        },
    ];
    for (n, seg) in [("net1", 1), ("net2", 2)] {
        changes.push(Change::NetworkCreate {
            name: n.into(),
            network_type: NetworkType::Vxlan,
            segment: Some(seg),
            mtu: None,
            external: false,
        });
    }
    changes.push(port("pa", "net1", "fa:16:3e:00:00:0a", "cn1", "vm-a"));
    changes.push(port("pb", "net1", "fa:16:3e:00:00:0b", "cn1", "vm-b"));
    changes.push(port("pc", "net2", "fa:16:3e:00:00:0c", "cn1", "vm-c"));
    changes.push(port("pd", "net1", "fa:16:3e:00:00:0d", "cn2", "vm-a")); // another host
    changes.push(port("pe", "net1", "fa:16:3e:00:00:0e", "cn1", "up")); // not a VM port
    m.apply(&changes).unwrap();
    let s = Snapshot::compile(&m, &node());
    assert_eq!(s.generation, 1);
    let k = |x: &str| mac(x).key();
    let f0 = fdb_of(&s, 0).unwrap();
    assert_eq!(f0.get(k("fa:16:3e:00:00:0b")), Some(Dest::Local(1)));
    assert_eq!(
        fdb_of(&s, 1).unwrap().get(k("fa:16:3e:00:00:0a")),
        Some(Dest::Local(0))
    );
    assert_eq!(f0.get(k("fa:16:3e:00:00:0c")), None, "other network");
    assert_eq!(
        fdb_of(&s, 2).unwrap().get(k("fa:16:3e:00:00:0a")),
        None,
        "other network"
    );
    // cn2 has no VTEP: its port is nowhere this node can reach.
    assert_eq!(f0.get(k("fa:16:3e:00:00:0d")), None, "unreachable port");
    assert_eq!(
        f0.get(k("fa:16:3e:00:00:0e")),
        None,
        "bound to a port that is not a VM port"
    );
    assert!(matches!(s.ports[3], Slot::Underlay));
    assert_eq!(s.static_fdb().get(k("fa:16:3e:00:00:99")), Some(2));
    // With a VTEP, cn2's port is behind it.
    let mut m2 = m.clone();
    m2.apply(&[Change::HostSet {
        name: "cn2".into(),
        agent_mode: crate::config::AgentMode::Dvr,
        vtep: Some("192.0.2.2".parse().unwrap()),
        dvr_mac: Some(mac("fa:16:3f:00:00:02")),
        fip_gateway: None,
    }])
    .unwrap();
    let s = Snapshot::compile(&m2, &node());
    assert_eq!(
        fdb_of(&s, 0).unwrap().get(k("fa:16:3e:00:00:0d")),
        Some(Dest::Remote(0))
    );
    assert_eq!(s.node.hosts[0].name, "cn2");
    assert_eq!(s.node.dvr_macs.get(k("fa:16:3f:00:00:02")), Some(0));
    assert_eq!(s.node.by_vni.len(), 2);
}

#[test]
fn config_snapshot_uses_the_static_table() {
    let s = Snapshot::from_config(&node());
    assert_eq!(s.generation, 0);
    assert!(matches!(s.ports[0], Slot::Vm(None)));
    assert_eq!(s.static_fdb().get(mac("fa:16:3e:00:00:99").key()), Some(2));
}

fn same_router(a: Option<&RouterTables>, b: Option<&RouterTables>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.name == b.name
                && a.interfaces == b.interfaces
                && a.fib.routes() == b.fib.routes()
                && a.neighbors == b.neighbors
                && a.distributed == b.distributed
                && a.fips == b.fips
                && a.snat == b.snat
        }
        _ => false,
    }
}

/// Incremental updates give the same tables as compiling from scratch, over
/// a long pseudo-random sequence of transactions (refused ones included).
#[test]
fn incremental_equals_full_compile() {
    let mut x: u64 = 0x9e37_79b9;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut m = Model::default();
    let mut setup = vec![Change::HostSet {
        name: "cn1".into(),
        agent_mode: crate::config::AgentMode::Dvr,
        vtep: None,
        dvr_mac: None,
        fip_gateway: None,
    }];
    for n in 0..4 {
        setup.push(Change::NetworkCreate {
            name: format!("net{n}"),
            network_type: NetworkType::Vxlan,
            segment: Some(100 + n),
            mtu: None,
            external: false,
        });
        setup.push(Change::SubnetCreate {
            name: format!("s{n}"),
            network: format!("net{n}"),
            cidr: format!("10.{n}.0.0/24").parse().unwrap(),
            gateway_ip: None,
            enable_dhcp: None,
            dns_nameservers: vec![],
            host_routes: vec![],
            ipv6_ra_mode: None,
            ipv6_address_mode: None,
        });
        // An IPv6 subnet of each mode (and one of none): router
        // advertisements and DHCPv6.
        use crate::model::Ipv6Mode::*;
        let mode = [
            Some(Slaac),
            Some(Dhcpv6Stateful),
            Some(Dhcpv6Stateless),
            None,
        ][n as usize];
        setup.push(Change::SubnetCreate {
            name: format!("v{n}"),
            network: format!("net{n}"),
            cidr: format!("2001:db8:{n}::/64").parse().unwrap(),
            gateway_ip: None,
            enable_dhcp: None,
            dns_nameservers: vec![],
            host_routes: vec![],
            ipv6_ra_mode: mode,
            ipv6_address_mode: mode,
        });
    }
    m.apply(&setup).unwrap();
    let mut c = Compiler::new(&m, node());
    let mut committed = 0;
    for step in 0..3000 {
        let r = format!("r{}", rnd(5));
        let s = format!("{}{}", ["s", "v"][rnd(2) as usize], rnd(4));
        let v6 = s.starts_with('v');
        let p = format!("p{}", rnd(12));
        let change = match rnd(11) {
            // DHCP of a subnet: on or off, DNS servers, host routes.
            9 => Change::SubnetSet {
                name: s,
                enable_dhcp: Some(rnd(3) != 0),
                clear_dns_nameservers: rnd(2) == 0,
                dns_nameservers: vec![if v6 {
                    format!("2001:db8::{}", rnd(4) + 1).parse().unwrap()
                } else {
                    format!("192.0.2.{}", rnd(4)).parse().unwrap()
                }],
                clear_host_routes: true,
                host_routes: vec![],
            },
            10 => {
                let n = s[1..].to_owned();
                Change::SubnetSet {
                    name: s,
                    enable_dhcp: None,
                    clear_dns_nameservers: false,
                    dns_nameservers: vec![],
                    clear_host_routes: rnd(2) == 0,
                    host_routes: vec![crate::model::Route {
                        destination: format!("172.{}.0.0/16", rnd(8)).parse().unwrap(),
                        nexthop: format!("10.{n}.0.{}", 2 + rnd(20)).parse().unwrap(),
                    }],
                }
            }
            0 => Change::RouterCreate {
                name: r,
                distributed: None,
                ha: false,
                admin_state_up: true,
            },
            1 => Change::RouterAddSubnet {
                router: r,
                subnet: s,
            },
            2 => Change::RouterRemoveSubnet {
                router: r,
                subnet: s,
            },
            3 => Change::RouterSet {
                name: r,
                admin_state_up: Some(rnd(2) == 0),
                distributed: None,
                ha: None,
                external_gateway: None,
                routes: vec![],
                snat_host: None,
                ipv6_north_south: None,
            },
            4 => Change::RouterSet {
                name: r,
                admin_state_up: None,
                distributed: None,
                ha: None,
                external_gateway: None,
                routes: vec![crate::model::Route {
                    destination: format!("172.{}.0.0/16", rnd(8)).parse().unwrap(),
                    nexthop: format!("10.{}.0.{}", rnd(4), 2 + rnd(20)).parse().unwrap(),
                }],
                snat_host: None,
                ipv6_north_south: None,
            },
            5 => Change::RouterDelete { name: r },
            6 => Change::PortDelete { name: p },
            7 => Change::RouterUnset {
                name: r,
                external_gateway: false,
                routes: vec![crate::model::Route {
                    destination: format!("172.{}.0.0/16", rnd(8)).parse().unwrap(),
                    nexthop: format!("10.{}.0.{}", rnd(4), 2 + rnd(20)).parse().unwrap(),
                }],
            },
            _ => {
                let n = rnd(4);
                Change::PortCreate {
                    name: p,
                    network: format!("net{n}"),
                    mac: None,
                    fixed_ips: vec![],
                    host: Some("cn1".into()),
                    port_security: None,
                    allowed_address_pairs: vec![],
                    binding: Some(["vm-a", "vm-b", "vm-c"][rnd(3) as usize].into()),
                }
            }
        };
        let Ok(applied) = m.apply(std::slice::from_ref(&change)) else {
            continue;
        };
        committed += 1;
        let inc = c.update(&m, &applied);
        let full = Snapshot::compile(&m, &node());
        assert_eq!(inc.generation, full.generation);
        for (i, name) in m.routers.keys().enumerate() {
            let a = inc.router(&c, name);
            let b = full.routers.get(i);
            assert!(
                same_router(a, b),
                "step {step}, {change:?}: router {name} differs"
            );
        }
        let full_c = Compiler::new(&m, node());
        for net in m.networks.keys() {
            let a = inc.network(&c, net).unwrap();
            let b = full.network(&full_c, net).unwrap();
            // Router indexes differ between compilers: compare by name.
            let named = |c: &Compiler, d: Dest| match d {
                Dest::Router { router, iface } => {
                    format!("{}/{iface}", c.router_names()[router as usize])
                }
                d => format!("{d:?}"),
            };
            let mut fa: Vec<_> = a.fdb.iter().map(|(k, d)| (k, named(&c, d))).collect();
            let mut fb: Vec<_> = b.fdb.iter().map(|(k, d)| (k, named(&full_c, d))).collect();
            fa.sort_by_key(|e| e.0);
            fb.sort_by_key(|e| e.0);
            assert_eq!(fa, fb, "step {step}, {change:?}: fdb of {net}");
            assert_eq!(a.arp, b.arp, "step {step}: arp of {net}");
            assert_eq!(
                a.gateways.len(),
                b.gateways.len(),
                "step {step}: gateways of {net}"
            );
            assert_eq!(
                a.local_ports, b.local_ports,
                "step {step}: local ports of {net}"
            );
            assert_eq!(a.dhcp4, b.dhcp4, "step {step}, {change:?}: DHCP of {net}");
            assert_eq!(a.ra6, b.ra6, "step {step}, {change:?}: RA of {net}");
            assert_eq!(a.dhcp6, b.dhcp6, "step {step}, {change:?}: DHCPv6 of {net}");
        }
        for p in 0..3 {
            match (&inc.ports[p], &full.ports[p]) {
                (Slot::Vm(a), Slot::Vm(b)) => {
                    assert_eq!(a.as_deref(), b.as_deref(), "step {step}: slot {p}")
                }
                _ => panic!("slot kinds differ"),
            }
        }
    }
    assert!(
        committed > 500,
        "the sequence exercises the compiler ({committed} committed)"
    );
}

/// An interface added while the node runs (`Compiler::set_ports`): the
/// model ports bound to it are served there at once, as a compile from
/// scratch with that interface would serve them; deleted (a hole), they
/// are served nowhere here, and the other ports keep their indexes.
#[test]
fn interfaces_added_and_deleted_compile_as_from_scratch() {
    let mut m = Model::default();
    let mut changes = vec![Change::HostSet {
        name: "cn1".into(),
        agent_mode: crate::config::AgentMode::Dvr,
        vtep: None,
        dvr_mac: None,
        fip_gateway: None,
    }];
    changes.push(Change::NetworkCreate {
        name: "net1".into(),
        network_type: NetworkType::Vxlan,
        segment: Some(1),
        mtu: None,
        external: false,
    });
    changes.push(port("pa", "net1", "fa:16:3e:00:00:0a", "cn1", "vm-a"));
    changes.push(port("px", "net1", "fa:16:3e:00:00:0f", "cn1", "vhu-x"));
    m.apply(&changes).unwrap();
    let k = |x: &str| mac(x).key();
    let mut c = Compiler::new(&m, node());
    let s = c.current().clone();
    assert_eq!(s.ports.len(), 4);
    assert_eq!(fdb_of(&s, 0).unwrap().get(k("fa:16:3e:00:00:0f")), None);

    let mut added = node();
    added.ports.push(DpPort {
        name: "vhu-x".into(),
        role: PortRole::Vm,
        mac: MacAddr::default(),
    });
    let inc = c.set_ports(&m, added.clone(), "vhu-x");
    let full = Snapshot::compile(&m, &added);
    for s in [&inc, &full] {
        assert_eq!(s.ports.len(), 5);
        assert!(matches!(&s.ports[4], Slot::Vm(Some(v)) if v.name == "px"));
        assert_eq!(
            fdb_of(s, 0).unwrap().get(k("fa:16:3e:00:00:0f")),
            Some(Dest::Local(4))
        );
        assert_eq!(
            fdb_of(s, 4).unwrap().get(k("fa:16:3e:00:00:0a")),
            Some(Dest::Local(0))
        );
    }
    assert_eq!(
        inc.net(0).unwrap().local_ports,
        full.net(0).unwrap().local_ports
    );

    let mut deleted = added;
    deleted.ports[4] = DpPort::hole();
    assert_eq!(deleted.index_of(""), None, "a hole has no name");
    let inc = c.set_ports(&m, deleted.clone(), "vhu-x");
    let full = Snapshot::compile(&m, &deleted);
    for s in [&inc, &full] {
        assert!(matches!(s.ports[4], Slot::Vm(None)));
        assert_eq!(fdb_of(s, 0).unwrap().get(k("fa:16:3e:00:00:0f")), None);
        assert!(matches!(&s.ports[0], Slot::Vm(Some(v)) if v.name == "pa"));
    }
    assert_eq!(
        inc.net(0).unwrap().local_ports,
        full.net(0).unwrap().local_ports
    );
}
