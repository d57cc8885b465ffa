//! The command line: clap's definitions of the verbs (those of the openstack
//! client), the parsers of their `KEY=VALUE` options, and what each command
//! asks of the daemon ([`Call`]).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dvr::mac::MacAddr;
use dvr::model::{
    AgentMode, AllowedPair, Change, FipGateway, FixedIpSpec, GatewaySpec, Ipv6Mode, Ipv6NorthSouth,
    Kind, NetworkType, Route,
};
use dvr::proto::answers::TableKind;
use dvr::proto::iface::{IfaceSpec, IfaceType};
use dvr::proto::TraceParams;
use ipnet::IpNet;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "dvr-ctl",
    version,
    about = "Drive a dvr-pmd node like `openstack router ...`"
)]
pub struct Cli {
    /// The daemon's control socket (default: $DVR_SOCKET, else the only
    /// /run/dvr/*/dvr.sock). Before the command: `interface add` has a
    /// `--socket` of its own (the VM's vhost-user socket).
    #[arg(short, long)]
    pub socket: Option<PathBuf>,
    /// Print the daemon's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Hosts (nodes) of the deployment.
    #[command(subcommand)]
    Host(HostCmd),
    /// Networks (vxlan, gre, vlan, flat; external ones for floating IPs).
    #[command(subcommand)]
    Network(NetworkCmd),
    /// IPv4 and IPv6 subnets of networks.
    #[command(subcommand)]
    Subnet(SubnetCmd),
    /// Ports: VMs' addresses, bindings, allowed address pairs.
    #[command(subcommand)]
    Port(PortCmd),
    /// Routers: interfaces, gateway, extra routes, distributed / HA / enabled.
    #[command(subcommand)]
    Router(RouterCmd),
    /// Dataplane interfaces: VMs' vhost-user sockets, af_packet, tap; added
    /// and deleted while the node forwards, as `ovs-vsctl add-port` does.
    #[command(subcommand)]
    Interface(InterfaceCmd),
    /// `floating ip ...`
    Floating {
        #[command(subcommand)]
        ip: FloatingCmd,
    },
    /// Run a described packet through the pipeline (nothing is sent) and print
    /// each stage's decision, like ovn-trace.
    Trace {
        /// The dataplane port it arrives on.
        #[arg(long)]
        port: String,
        #[arg(long)]
        src_mac: MacAddr,
        #[arg(long)]
        dst_mac: MacAddr,
        #[arg(long)]
        src_ip: Option<Ipv4Addr>,
        #[arg(long)]
        dst_ip: Option<Ipv4Addr>,
    },
    /// Operator views of the running daemon.
    Show {
        what: ShowKind,
        /// With fib / neighbors / nat / sessions: one router only.
        router: Option<String>,
    },
}

// The verbs every kind named by a name has.
#[derive(Subcommand, Debug)]
pub enum CommonCmd {
    /// Delete objects (all or none).
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show one object.
    Show { name: String },
    /// List all objects of the kind.
    List,
}

impl CommonCmd {
    /// The call for objects of `kind`, deleted with `delete`.
    fn call(self, kind: Kind, delete: fn(String) -> Change) -> Call {
        match self {
            CommonCmd::Delete { names } => Call::Apply(names.into_iter().map(delete).collect()),
            CommonCmd::Show { name } => Call::Show(kind, name),
            CommonCmd::List => Call::List(kind),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum HostCmd {
    /// Register a host or replace its record.
    Set {
        #[arg(long, value_parser = parse_agent_mode)]
        agent_mode: AgentMode,
        #[arg(long)]
        vtep: Option<Ipv4Addr>,
        #[arg(long)]
        dvr_mac: Option<MacAddr>,
        /// `ip=IP,mac=MAC`: the host's FIP gateway port on the external network.
        #[arg(long, value_parser = parse_fip_gateway)]
        fip_gateway: Option<FipGateway>,
        name: String,
    },
    #[command(flatten)]
    Common(CommonCmd),
}

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    Create {
        #[arg(long, value_parser = parse_network_type)]
        provider_network_type: NetworkType,
        #[arg(long)]
        provider_segment: Option<u32>,
        #[arg(long)]
        mtu: Option<u16>,
        /// `router:external`: for floating IPs and router gateways.
        #[arg(long, conflicts_with = "internal")]
        external: bool,
        #[arg(long)]
        internal: bool,
        name: String,
    },
    Set {
        #[arg(long)]
        mtu: Option<u16>,
        #[arg(long, conflicts_with = "internal")]
        external: bool,
        #[arg(long)]
        internal: bool,
        name: String,
    },
    #[command(flatten)]
    Common(CommonCmd),
}

#[derive(Subcommand, Debug)]
pub enum SubnetCmd {
    Create {
        #[arg(long)]
        network: String,
        #[arg(long)]
        subnet_range: IpNet,
        /// An address, `auto` (the first one, the default) or `none`.
        #[arg(long)]
        gateway: Option<String>,
        #[command(flatten)]
        dhcp: DhcpArgs,
        /// 4 or 6: checked against --subnet-range (as the openstack client
        /// names it; the range alone decides).
        #[arg(long, value_parser = clap::value_parser!(u8).range(4..=6))]
        ip_version: Option<u8>,
        /// IPv6: the router's advertisements: slaac, dhcpv6-stateful or
        /// dhcpv6-stateless (flags M and O, the prefix's A flag).
        #[arg(long)]
        ipv6_ra_mode: Option<Ipv6Mode>,
        /// IPv6: how VMs get addresses: slaac, dhcpv6-stateful or
        /// dhcpv6-stateless (equal to --ipv6-ra-mode when both are given).
        #[arg(long)]
        ipv6_address_mode: Option<Ipv6Mode>,
        name: String,
    },
    /// Change a subnet's DHCP: on or off, its DNS servers and host routes.
    Set {
        #[command(flatten)]
        dhcp: DhcpArgs,
        /// Empty the DNS server list (before any --dns-nameserver).
        #[arg(long)]
        no_dns_nameservers: bool,
        /// Empty the host routes (before any --host-route).
        #[arg(long)]
        no_host_route: bool,
        name: String,
    },
    #[command(flatten)]
    Common(CommonCmd),
}

/// What DHCP hands out on a subnet (answered on each VM's own host).
#[derive(Args, Debug)]
pub struct DhcpArgs {
    /// Answer DHCP on this subnet (the default).
    #[arg(long, conflicts_with = "no_dhcp")]
    dhcp: bool,
    /// Do not answer DHCP on this subnet (its VMs' DHCP is switched).
    #[arg(long)]
    no_dhcp: bool,
    /// A DNS server DHCP hands out; repeatable (at most 5).
    #[arg(long = "dns-nameserver")]
    dns_nameservers: Vec<IpAddr>,
    /// `destination=CIDR,gateway=IP`: a route DHCP hands out (option 121);
    /// repeatable (at most 20).
    #[arg(long = "host-route", value_parser = parse_route)]
    host_routes: Vec<Route>,
}

#[derive(Args, Debug)]
pub struct PortSecurity {
    #[arg(long, conflicts_with = "disable_port_security")]
    enable_port_security: bool,
    #[arg(long)]
    disable_port_security: bool,
}

impl PortSecurity {
    fn value(&self) -> Option<bool> {
        match (self.enable_port_security, self.disable_port_security) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum InterfaceCmd {
    /// Add an interface while the node forwards (saved with the node's
    /// state, added again when it starts). Model ports bind to it by name
    /// (`port set --host NODE --binding NAME PORT`).
    Add {
        /// vhost-user, af_packet or tap.
        #[arg(long = "type", value_parser = parse_iface_type)]
        kind: IfaceType,
        /// vhost-user: the socket. dvr makes it (server), or with --client
        /// connects to the one QEMU made, and again whenever it reappears.
        #[arg(long = "socket", id = "vhost_socket")]
        socket: Option<PathBuf>,
        /// vhost-user: connect to QEMU's socket (`-chardev socket,server=on`)
        /// instead of making one: the guest survives a restart of dvr.
        #[arg(long)]
        client: bool,
        /// af_packet, tap: the Linux interface (tap: dvr creates it).
        #[arg(long)]
        iface: Option<String>,
        /// Queue pairs (1 to 16): its RX queues spread over the workers.
        #[arg(long, default_value_t = 1)]
        queues: u16,
        /// The worker that polls its first RX queue (default: the one
        /// polling the fewest).
        #[arg(long)]
        worker: Option<usize>,
        name: String,
    },
    /// Delete an interface added by `interface add` (the others keep
    /// forwarding; its device is closed once no worker holds it).
    Delete { name: String },
    /// Type, link, queues, which worker polls which queue, counters.
    Show { name: String },
    /// Every interface of the node.
    List,
}

impl InterfaceCmd {
    fn call(self) -> Result<Call, String> {
        Ok(match self {
            InterfaceCmd::Add {
                kind,
                socket,
                client,
                iface,
                queues,
                worker,
                name,
            } => {
                let spec = IfaceSpec {
                    name,
                    kind,
                    socket,
                    client,
                    iface,
                    queues,
                    worker,
                };
                spec.check()?;
                Call::Interface("interface_add", json!(spec))
            }
            InterfaceCmd::Delete { name } => {
                Call::Interface("interface_delete", json!({ "name": name }))
            }
            InterfaceCmd::Show { name } => {
                Call::Interface("interface_show", json!({ "name": name }))
            }
            InterfaceCmd::List => Call::Interface("interface_list", Value::Null),
        })
    }
}

fn parse_iface_type(s: &str) -> Result<IfaceType, String> {
    serde_json::from_value(json!(s)).map_err(|_| format!("{s:?}: use vhost-user, af_packet or tap"))
}

#[derive(Subcommand, Debug)]
pub enum PortCmd {
    Create {
        #[arg(long)]
        network: String,
        #[arg(long)]
        mac_address: Option<MacAddr>,
        /// `subnet=S,ip-address=IP` (either part may be left out); repeatable.
        #[arg(long, value_parser = parse_fixed_ip)]
        fixed_ip: Vec<FixedIpSpec>,
        /// The host the port is bound to (`--host` of openstack port create).
        #[arg(long)]
        host: Option<String>,
        /// The dataplane port on that host (a `[[ports]]` name of its config);
        /// needs `--host`: without one the port is bound nowhere.
        #[arg(long, requires = "host")]
        binding: Option<String>,
        #[command(flatten)]
        security: PortSecurity,
        /// `ip-address=IP_OR_CIDR[,mac-address=MAC]`; repeatable.
        #[arg(long, value_parser = parse_allowed)]
        allowed_address: Vec<AllowedPair>,
        name: String,
    },
    Set {
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        binding: Option<String>,
        #[command(flatten)]
        security: PortSecurity,
        #[arg(long, value_parser = parse_allowed)]
        allowed_address: Vec<AllowedPair>,
        name: String,
    },
    Unset {
        #[arg(long)]
        host: bool,
        #[arg(long)]
        binding: bool,
        #[arg(long, value_parser = parse_allowed)]
        allowed_address: Vec<AllowedPair>,
        name: String,
    },
    #[command(flatten)]
    Common(CommonCmd),
}

#[derive(Subcommand, Debug)]
pub enum RouterCmd {
    Create {
        #[arg(long, conflicts_with = "centralized")]
        distributed: bool,
        #[arg(long)]
        centralized: bool,
        #[arg(long, conflicts_with = "no_ha")]
        ha: bool,
        #[arg(long)]
        no_ha: bool,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        name: String,
    },
    Set {
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[arg(long, conflicts_with = "centralized")]
        distributed: bool,
        #[arg(long)]
        centralized: bool,
        #[arg(long, conflicts_with = "no_ha")]
        ha: bool,
        #[arg(long)]
        no_ha: bool,
        /// The external network of the router's gateway.
        #[arg(long)]
        external_gateway: Option<String>,
        #[arg(long, conflicts_with = "disable_snat", requires = "external_gateway")]
        enable_snat: bool,
        #[arg(long, requires = "external_gateway")]
        disable_snat: bool,
        /// With --external-gateway: `subnet=S,ip-address=IP`.
        #[arg(long, value_parser = parse_fixed_ip, requires = "external_gateway")]
        fixed_ip: Option<FixedIpSpec>,
        /// `destination=CIDR,gateway=IP`; repeatable.
        #[arg(long, value_parser = parse_route)]
        route: Vec<Route>,
        /// The dvr_snat host of the router's centralized SNAT.
        #[arg(long)]
        snat_host: Option<String>,
        /// How the router's IPv6 traffic to and from outside is routed:
        /// `distributed` (each compute node, the default) or `central`
        /// (through the router's SNAT node).
        #[arg(long, value_parser = parse_ipv6_north_south)]
        ipv6_north_south: Option<Ipv6NorthSouth>,
        name: String,
    },
    Unset {
        #[arg(long)]
        external_gateway: bool,
        #[arg(long, value_parser = parse_route)]
        route: Vec<Route>,
        name: String,
    },
    /// `router add subnet ROUTER SUBNET`
    Add {
        #[command(subcommand)]
        what: RouterLink,
    },
    /// `router remove subnet ROUTER SUBNET`
    Remove {
        #[command(subcommand)]
        what: RouterLink,
    },
    #[command(flatten)]
    Common(CommonCmd),
}

#[derive(Subcommand, Debug)]
pub enum RouterLink {
    Subnet { router: String, subnet: String },
}

#[derive(Subcommand, Debug)]
pub enum FloatingCmd {
    /// `floating ip ...`
    #[command(subcommand)]
    Ip(FipCmd),
}

#[derive(Subcommand, Debug)]
pub enum FipCmd {
    Create {
        #[arg(long)]
        floating_ip_address: Option<Ipv4Addr>,
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        fixed_ip_address: Option<Ipv4Addr>,
        /// The external network.
        network: String,
    },
    Set {
        #[arg(long)]
        port: String,
        #[arg(long)]
        fixed_ip_address: Option<Ipv4Addr>,
        address: Ipv4Addr,
    },
    Unset {
        /// Disassociate from its port (the only thing to unset).
        #[arg(long, required = true)]
        port: bool,
        address: Ipv4Addr,
    },
    Delete {
        #[arg(required = true)]
        addresses: Vec<Ipv4Addr>,
    },
    Show {
        address: Ipv4Addr,
    },
    List,
}

fn parse_agent_mode(s: &str) -> Result<AgentMode, String> {
    serde_json::from_value(json!(s))
        .map_err(|_| format!("{s:?}: use dvr, dvr_snat, dvr_no_external or legacy"))
}

fn parse_network_type(s: &str) -> Result<NetworkType, String> {
    serde_json::from_value(json!(s)).map_err(|_| format!("{s:?}: use vxlan, gre, vlan or flat"))
}

/// `a=1,b=2` into pairs, refusing keys not in `allowed`.
fn kv<'a>(s: &'a str, allowed: &[&str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    s.split(',')
        .map(|part| {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected KEY=VALUE"))?;
            if !allowed.contains(&k) {
                return Err(format!(
                    "unknown key {k:?}; expected {}",
                    allowed.join(", ")
                ));
            }
            Ok((k, v))
        })
        .collect()
}

fn parse_fixed_ip(s: &str) -> Result<FixedIpSpec, String> {
    let mut f = FixedIpSpec::default();
    for (k, v) in kv(s, &["subnet", "ip-address"])? {
        match k {
            "subnet" => f.subnet = Some(v.to_owned()),
            _ => {
                f.ip = Some(
                    v.parse::<IpAddr>()
                        .map_err(|e| format!("ip-address {v:?}: {e}"))?,
                )
            }
        }
    }
    Ok(f)
}

/// An address or a prefix; a bare address is a host prefix.
fn parse_prefix(v: &str) -> Result<IpNet, String> {
    if let Ok(n) = v.parse::<IpNet>() {
        return Ok(n);
    }
    v.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{v:?} is not an address or a prefix"))
}

fn parse_allowed(s: &str) -> Result<AllowedPair, String> {
    let mut ip = None;
    let mut mac = None;
    for (k, v) in kv(s, &["ip-address", "mac-address"])? {
        match k {
            "ip-address" => ip = Some(parse_prefix(v)?),
            _ => mac = Some(v.parse::<MacAddr>().map_err(|e| e.to_string())?),
        }
    }
    Ok(AllowedPair {
        ip: ip.ok_or("ip-address is required")?,
        mac,
    })
}

fn parse_ipv6_north_south(s: &str) -> Result<Ipv6NorthSouth, String> {
    match s {
        "distributed" => Ok(Ipv6NorthSouth::Distributed),
        "central" => Ok(Ipv6NorthSouth::Central),
        _ => Err(format!("{s:?}: distributed or central")),
    }
}

fn parse_route(s: &str) -> Result<Route, String> {
    let mut dst = None;
    let mut gw = None;
    for (k, v) in kv(s, &["destination", "gateway"])? {
        match k {
            "destination" => dst = Some(parse_prefix(v)?),
            _ => {
                gw = Some(
                    v.parse::<IpAddr>()
                        .map_err(|e| format!("gateway {v:?}: {e}"))?,
                )
            }
        }
    }
    Ok(Route {
        destination: dst.ok_or("destination is required")?,
        nexthop: gw.ok_or("gateway is required")?,
    })
}

fn parse_fip_gateway(s: &str) -> Result<FipGateway, String> {
    let mut ip = None;
    let mut mac = None;
    for (k, v) in kv(s, &["ip", "mac"])? {
        match k {
            "ip" => {
                ip = Some(
                    v.parse::<Ipv4Addr>()
                        .map_err(|e| format!("ip {v:?}: {e}"))?,
                )
            }
            _ => mac = Some(v.parse::<MacAddr>().map_err(|e| e.to_string())?),
        }
    }
    Ok(FipGateway {
        ip: ip.ok_or("ip is required")?,
        mac: mac.ok_or("mac is required")?,
    })
}

fn flag(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// `show`: a view of the running daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ShowKind {
    Ports,
    Stats,
    Errors,
    Runtime,
    Status,
    Fib,
    Neighbors,
    Fdb,
    Nat,
    Sessions,
}

impl ShowKind {
    /// The published table it shows, if it is one (`tables`), else the
    /// answer it reads (`status` or `stats`).
    fn table(self) -> Option<TableKind> {
        match self {
            ShowKind::Fib => Some(TableKind::Fib),
            ShowKind::Neighbors => Some(TableKind::Neighbors),
            ShowKind::Fdb => Some(TableKind::Fdb),
            ShowKind::Nat => Some(TableKind::Nat),
            ShowKind::Sessions => Some(TableKind::Sessions),
            ShowKind::Ports
            | ShowKind::Stats
            | ShowKind::Errors
            | ShowKind::Runtime
            | ShowKind::Status => None,
        }
    }

    /// Its name on the command line.
    fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_owned())
    }
}

/// What a command asks of the daemon.
pub enum Call {
    Apply(Vec<Change>),
    Show(Kind, String),
    List(Kind),
    /// `show status|ports` (the `status` answer), `show stats|errors|runtime`
    /// (the `stats` answer).
    View(ShowKind),
    /// `show fib|neighbors|nat|sessions [ROUTER]`, `show fdb`: the published tables.
    Tables(TableKind, Option<String>),
    Trace(TraceParams),
    /// `interface add|delete|show|list`: the method and its params.
    Interface(&'static str, Value),
}

impl Cmd {
    pub fn call(self) -> Result<Call, String> {
        Ok(match self {
            Cmd::Host(c) => c.call(),
            Cmd::Network(c) => c.call(),
            Cmd::Subnet(c) => c.call()?,
            Cmd::Port(c) => c.call(),
            Cmd::Router(c) => c.call(),
            Cmd::Interface(c) => c.call()?,
            Cmd::Floating {
                ip: FloatingCmd::Ip(c),
            } => c.call(),
            Cmd::Trace {
                port,
                src_mac,
                dst_mac,
                src_ip,
                dst_ip,
            } => Call::Trace(TraceParams {
                port,
                src_mac,
                dst_mac,
                src_ip,
                dst_ip,
            }),
            Cmd::Show { what, router } => match (what.table(), router) {
                (Some(t), router) if what != ShowKind::Fdb => Call::Tables(t, router),
                (Some(t), None) => Call::Tables(t, None),
                (_, Some(r)) => {
                    return Err(format!("show {} takes no router (got {r:?})", what.name()));
                }
                (None, None) => Call::View(what),
            },
        })
    }
}

impl HostCmd {
    fn call(self) -> Call {
        use Call::*;
        match self {
            HostCmd::Set {
                agent_mode,
                vtep,
                dvr_mac,
                fip_gateway,
                name,
            } => Apply(vec![Change::HostSet {
                name,
                agent_mode,
                vtep,
                dvr_mac,
                fip_gateway,
            }]),
            HostCmd::Common(c) => c.call(Kind::Host, |name| Change::HostDelete { name }),
        }
    }
}

impl NetworkCmd {
    fn call(self) -> Call {
        use Call::*;
        match self {
            NetworkCmd::Create {
                provider_network_type,
                provider_segment,
                mtu,
                external,
                internal: _,
                name,
            } => Apply(vec![Change::NetworkCreate {
                name,
                network_type: provider_network_type,
                segment: provider_segment,
                mtu,
                external,
            }]),
            NetworkCmd::Set {
                mtu,
                external,
                internal,
                name,
            } => Apply(vec![Change::NetworkSet {
                name,
                mtu,
                external: flag(external, internal),
            }]),
            NetworkCmd::Common(c) => c.call(Kind::Network, |name| Change::NetworkDelete { name }),
        }
    }
}

impl SubnetCmd {
    fn call(self) -> Result<Call, String> {
        use Call::*;
        Ok(match self {
            SubnetCmd::Create {
                network,
                subnet_range,
                gateway,
                dhcp,
                ip_version,
                ipv6_ra_mode,
                ipv6_address_mode,
                name,
            } => {
                let v = if matches!(subnet_range, IpNet::V6(_)) {
                    6
                } else {
                    4
                };
                if let Some(want) = ip_version.filter(|&w| w != v) {
                    return Err(if want == 4 || want == 6 {
                        format!("--ip-version {want}: --subnet-range {subnet_range} is IPv{v}")
                    } else {
                        format!("--ip-version {want}: 4 or 6")
                    });
                }
                let gateway_ip = match gateway.as_deref() {
                    None | Some("auto") => None,
                    Some("none") => Some(None),
                    Some(ip) => Some(Some(
                        ip.parse::<IpAddr>()
                            .map_err(|e| format!("--gateway {ip:?}: {e}"))?,
                    )),
                };
                Apply(vec![Change::SubnetCreate {
                    name,
                    network,
                    cidr: subnet_range,
                    gateway_ip,
                    enable_dhcp: flag(dhcp.dhcp, dhcp.no_dhcp),
                    dns_nameservers: dhcp.dns_nameservers,
                    host_routes: dhcp.host_routes,
                    ipv6_ra_mode,
                    ipv6_address_mode,
                }])
            }
            SubnetCmd::Set {
                dhcp,
                no_dns_nameservers,
                no_host_route,
                name,
            } => Apply(vec![Change::SubnetSet {
                name,
                enable_dhcp: flag(dhcp.dhcp, dhcp.no_dhcp),
                clear_dns_nameservers: no_dns_nameservers,
                dns_nameservers: dhcp.dns_nameservers,
                clear_host_routes: no_host_route,
                host_routes: dhcp.host_routes,
            }]),
            SubnetCmd::Common(c) => c.call(Kind::Subnet, |name| Change::SubnetDelete { name }),
        })
    }
}

impl PortCmd {
    fn call(self) -> Call {
        use Call::*;
        match self {
            PortCmd::Create {
                network,
                mac_address,
                fixed_ip,
                host,
                binding,
                security,
                allowed_address,
                name,
            } => Apply(vec![Change::PortCreate {
                name,
                network,
                mac: mac_address,
                fixed_ips: fixed_ip,
                host,
                port_security: security.value(),
                allowed_address_pairs: allowed_address,
                binding,
            }]),
            PortCmd::Set {
                host,
                binding,
                security,
                allowed_address,
                name,
            } => Apply(vec![Change::PortSet {
                name,
                host,
                binding,
                port_security: security.value(),
                allowed_address_pairs: allowed_address,
            }]),
            PortCmd::Unset {
                host,
                binding,
                allowed_address,
                name,
            } => Apply(vec![Change::PortUnset {
                name,
                host,
                binding,
                allowed_address_pairs: allowed_address,
            }]),
            PortCmd::Common(c) => c.call(Kind::Port, |name| Change::PortDelete { name }),
        }
    }
}

impl RouterCmd {
    fn call(self) -> Call {
        use Call::*;
        match self {
            RouterCmd::Create {
                distributed,
                centralized,
                ha,
                no_ha: _,
                enable: _,
                disable,
                name,
            } => Apply(vec![Change::RouterCreate {
                name,
                distributed: flag(distributed, centralized),
                ha,
                admin_state_up: !disable,
            }]),
            RouterCmd::Set {
                enable,
                disable,
                distributed,
                centralized,
                ha,
                no_ha,
                external_gateway,
                enable_snat,
                disable_snat,
                fixed_ip,
                route,
                snat_host,
                ipv6_north_south,
                name,
            } => Apply(vec![Change::RouterSet {
                name,
                admin_state_up: flag(enable, disable),
                distributed: flag(distributed, centralized),
                ha: flag(ha, no_ha),
                external_gateway: external_gateway.map(|network| GatewaySpec {
                    network,
                    enable_snat: flag(enable_snat, disable_snat),
                    fixed_ip,
                }),
                routes: route,
                snat_host,
                ipv6_north_south,
            }]),
            RouterCmd::Unset {
                external_gateway,
                route,
                name,
            } => Apply(vec![Change::RouterUnset {
                name,
                external_gateway,
                routes: route,
            }]),
            RouterCmd::Add {
                what: RouterLink::Subnet { router, subnet },
            } => Apply(vec![Change::RouterAddSubnet { router, subnet }]),
            RouterCmd::Remove {
                what: RouterLink::Subnet { router, subnet },
            } => Apply(vec![Change::RouterRemoveSubnet { router, subnet }]),
            RouterCmd::Common(c) => c.call(Kind::Router, |name| Change::RouterDelete { name }),
        }
    }
}

impl FipCmd {
    fn call(self) -> Call {
        use Call::*;
        match self {
            FipCmd::Create {
                floating_ip_address,
                port,
                fixed_ip_address,
                network,
            } => Apply(vec![Change::FloatingIpCreate {
                network,
                address: floating_ip_address,
                port,
                fixed_ip: fixed_ip_address,
            }]),
            FipCmd::Set {
                port,
                fixed_ip_address,
                address,
            } => Apply(vec![Change::FloatingIpSet {
                address,
                port,
                fixed_ip: fixed_ip_address,
            }]),
            FipCmd::Unset { port: _, address } => Apply(vec![Change::FloatingIpUnset { address }]),
            FipCmd::Delete { addresses } => Apply(
                addresses
                    .into_iter()
                    .map(|address| Change::FloatingIpDelete { address })
                    .collect(),
            ),
            FipCmd::Show { address } => Show(Kind::FloatingIp, address.to_string()),
            FipCmd::List => List(Kind::FloatingIp),
        }
    }
}
