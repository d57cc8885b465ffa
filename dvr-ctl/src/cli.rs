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
    /// How views are printed: table (the default), json (the view's rows as
    /// objects), value (cells only, space-separated: for scripts), csv.
    #[arg(short = 'f', long = "format", global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Only this column (a `show`'s field); repeatable, in the order given.
    #[arg(short = 'c', long = "column", global = true)]
    pub columns: Vec<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// `capture start|stop`.
#[derive(Subcommand, Debug)]
pub enum CaptureCmd {
    /// Capture COUNT frames of INTERFACE into FILE (pcapng; Wireshark,
    /// tshark and tcpdump read it).
    Start {
        /// rx (received, before dvr decides them), tx (sent) or both.
        #[arg(long, default_value = "both")]
        direction: String,
        /// How many frames, then the file is closed.
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// The most bytes kept of each frame (64 to 2048).
        #[arg(long, default_value_t = 2048)]
        snaplen: u32,
        /// The interface (a `[[ports]]` or `interface add` name).
        interface: String,
        /// The file the daemon writes (made absolute here).
        file: PathBuf,
    },
    /// Stop: what was taken is written and the file closed.
    Stop,
    /// How far the capture got (it goes on).
    Show,
}

/// `trace add|clear`: the live trace, as VPP's `trace add` / `clear trace`.
#[derive(Subcommand, Debug)]
pub enum LiveTraceCmd {
    /// Mark the next COUNT frames received on INTERFACE: each stage's
    /// decision is recorded by the worker that takes it (`show trace`).
    Add {
        /// The interface (a `[[ports]]` or `interface add` name).
        interface: String,
        /// How many frames (1 to 256).
        count: u32,
    },
    /// Stop marking and forget the frames traced.
    Clear,
}

/// `-f`: how views are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Value,
    Csv,
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
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Trace {
        /// Live trace: mark frames as they arrive (`trace add`), forget them
        /// (`trace clear`); `show trace` prints them.
        #[command(subcommand)]
        live: Option<LiveTraceCmd>,
        /// The dataplane port it arrives on.
        #[arg(long, required = true)]
        port: Option<String>,
        /// The frame's source MAC (a UDP frame described by its addresses).
        #[arg(long, required_unless_present_any = ["hex", "pcap"])]
        src_mac: Option<MacAddr>,
        /// The frame's destination MAC.
        #[arg(long, required_unless_present_any = ["hex", "pcap"])]
        dst_mac: Option<MacAddr>,
        /// With --dst-ip: an IPv4 UDP packet from this address.
        #[arg(long)]
        src_ip: Option<Ipv4Addr>,
        /// With --src-ip: an IPv4 UDP packet to this address.
        #[arg(long)]
        dst_ip: Option<Ipv4Addr>,
        /// Any frame, as hex digits (IPv6, TCP, ICMP, VLAN, VXLAN or GRE from
        /// the underlay...).
        #[arg(long, conflicts_with_all = ["src_mac", "dst_mac", "src_ip", "dst_ip", "pcap"])]
        hex: Option<String>,
        /// A frame of a capture file (pcap), the first or --index N.
        #[arg(long, conflicts_with_all = ["src_mac", "dst_mac", "src_ip", "dst_ip"])]
        pcap: Option<PathBuf>,
        /// With --pcap: which frame (0: the first).
        #[arg(long, requires = "pcap", default_value_t = 0)]
        index: usize,
    },
    /// Packet capture of an interface into a pcapng file (as `dpdk-pdump`
    /// or VPP's `pcap trace`), written by the daemon.
    #[command(subcommand)]
    Capture(CaptureCmd),
    /// Print a completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell): `dvr-ctl completion bash > /etc/bash_completion.d/dvr-ctl`.
    /// Needs no daemon.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `dvr-ctl man > /usr/local/share/man/man1/dvr-ctl.1`.
    /// Needs no daemon.
    Man,
    /// Operator views of the running daemon.
    Show {
        /// ports, stats, errors, runtime, status, fib, neighbors, fdb, nat, sessions.
        what: ShowKind,
        /// With fib / neighbors / nat / sessions: one router only.
        router: Option<String>,
        /// With errors: every drop reason, those at zero too (default: only
        /// those that counted something).
        #[arg(long)]
        all: bool,
    },
}

// The verbs every kind named by a name has.
#[derive(Subcommand, Debug)]
pub enum CommonCmd {
    /// Delete objects (all or none).
    Delete {
        /// The objects' names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show one object.
    Show {
        /// The object's name.
        name: String,
    },
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
        /// dvr (compute node), dvr_snat (network node), dvr_no_external or legacy.
        #[arg(long, value_parser = parse_agent_mode)]
        agent_mode: AgentMode,
        /// The host's tunnel endpoint (IPv4) on the underlay.
        #[arg(long)]
        vtep: Option<Ipv4Addr>,
        /// The host's DVR MAC: the source of frames it routed, on the overlay.
        #[arg(long)]
        dvr_mac: Option<MacAddr>,
        /// `ip=IP,mac=MAC`: the host's FIP gateway port on the external network.
        #[arg(long, value_parser = parse_fip_gateway)]
        fip_gateway: Option<FipGateway>,
        /// The host's name (its node name in its configuration).
        name: String,
    },
    #[command(flatten)]
    Common(CommonCmd),
}

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network.
    Create {
        /// vxlan, gre, vlan or flat.
        #[arg(long, value_parser = parse_network_type)]
        provider_network_type: NetworkType,
        /// The VNI (vxlan), key (gre) or VLAN id (vlan); none for flat.
        #[arg(long)]
        provider_segment: Option<u32>,
        /// The MTU VMs may send (default: 1450 for vxlan, 1458 for gre, 1500 otherwise).
        #[arg(long)]
        mtu: Option<u16>,
        /// `router:external`: for floating IPs and router gateways.
        #[arg(long, conflicts_with = "internal")]
        external: bool,
        /// A tenant network (the default).
        #[arg(long)]
        internal: bool,
        /// The network's name.
        name: String,
    },
    /// Change a network's MTU or whether it is external.
    Set {
        /// The MTU VMs may send.
        #[arg(long)]
        mtu: Option<u16>,
        /// Make it external (`router:external`).
        #[arg(long, conflicts_with = "internal")]
        external: bool,
        /// Make it a tenant network again.
        #[arg(long)]
        internal: bool,
        /// The network's name.
        name: String,
    },
    #[command(flatten)]
    Common(CommonCmd),
}

#[derive(Subcommand, Debug)]
pub enum SubnetCmd {
    Create {
        /// The network it belongs to.
        #[arg(long)]
        network: String,
        /// Its prefix, IPv4 or IPv6 (`10.0.1.0/24`).
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
        /// The subnet's name.
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
        /// The subnet's name.
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
    /// Check the port's source MAC and addresses (the default).
    #[arg(long, conflicts_with = "disable_port_security")]
    enable_port_security: bool,
    /// Let the port send from any MAC and address (no allowed pairs then).
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
        /// The interface's name (model ports bind to it by this name).
        name: String,
    },
    /// Delete an interface added by `interface add` (the others keep
    /// forwarding; its device is closed once no worker holds it).
    Delete {
        /// The interface's name.
        name: String,
    },
    /// Type, link, queues, which worker polls which queue, counters.
    Show {
        /// The interface's name.
        name: String,
    },
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
    /// Create a port (a VM's NIC): its network, MAC, addresses and binding.
    Create {
        /// The network it is on.
        #[arg(long)]
        network: String,
        /// Its MAC (default: a new fa:16:3e:xx:xx:xx).
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
        /// The port's name.
        name: String,
    },
    /// Bind a port to a host, change its port security, add allowed pairs.
    Set {
        /// The host it is bound to (a VM moved: the new host).
        #[arg(long)]
        host: Option<String>,
        /// The dataplane port on that host (a `[[ports]]` or `interface add` name).
        #[arg(long)]
        binding: Option<String>,
        #[command(flatten)]
        security: PortSecurity,
        /// `ip-address=IP_OR_CIDR[,mac-address=MAC]` to add; repeatable.
        #[arg(long, value_parser = parse_allowed)]
        allowed_address: Vec<AllowedPair>,
        /// The port's name.
        name: String,
    },
    /// Unbind a port, remove allowed pairs.
    Unset {
        /// Bound to no host any more.
        #[arg(long)]
        host: bool,
        /// Bound to no dataplane port any more.
        #[arg(long)]
        binding: bool,
        /// `ip-address=IP_OR_CIDR[,mac-address=MAC]` to remove; repeatable.
        #[arg(long, value_parser = parse_allowed)]
        allowed_address: Vec<AllowedPair>,
        /// The port's name.
        name: String,
    },
    #[command(flatten)]
    Common(CommonCmd),
}

#[derive(Subcommand, Debug)]
pub enum RouterCmd {
    /// Create a router (distributed by default, as Neutron's
    /// `router_distributed = True`).
    Create {
        /// Route on every compute node (DVR; the default).
        #[arg(long, conflicts_with = "centralized")]
        distributed: bool,
        /// Route on its SNAT node only (a legacy router).
        #[arg(long)]
        centralized: bool,
        /// Highly available (centralized routers only).
        #[arg(long, conflicts_with = "no_ha")]
        ha: bool,
        /// Not highly available (the default).
        #[arg(long)]
        no_ha: bool,
        /// Routing (the default).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Created disabled: routes nothing, answers no ARP.
        #[arg(long)]
        disable: bool,
        /// The router's name.
        name: String,
    },
    /// Change a router: enabled, distributed, HA, gateway, routes, SNAT host.
    Set {
        /// Route again.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop routing (needed before --distributed / --centralized / --ha change).
        #[arg(long)]
        disable: bool,
        /// Make it distributed (disabled and not HA first).
        #[arg(long, conflicts_with = "centralized")]
        distributed: bool,
        /// Make it centralized (disabled first).
        #[arg(long)]
        centralized: bool,
        /// Make it highly available (centralized, disabled first).
        #[arg(long, conflicts_with = "no_ha")]
        ha: bool,
        /// Make it not highly available (disabled first).
        #[arg(long)]
        no_ha: bool,
        /// The external network of the router's gateway.
        #[arg(long)]
        external_gateway: Option<String>,
        /// With --external-gateway: VMs without a floating IP go out by SNAT (the default).
        #[arg(long, conflicts_with = "disable_snat", requires = "external_gateway")]
        enable_snat: bool,
        /// With --external-gateway: no SNAT (VMs without a floating IP stay inside).
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
        /// The router's name.
        name: String,
    },
    /// Remove a router's gateway or extra routes.
    Unset {
        /// Remove its external gateway (and its SNAT).
        #[arg(long)]
        external_gateway: bool,
        /// `destination=CIDR,gateway=IP` to remove; repeatable.
        #[arg(long, value_parser = parse_route)]
        route: Vec<Route>,
        /// The router's name.
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
    /// A subnet as an interface of the router (its gateway IP).
    Subnet {
        /// The router's name.
        router: String,
        /// The subnet's name.
        subnet: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum FloatingCmd {
    /// `floating ip ...`
    #[command(subcommand)]
    Ip(FipCmd),
}

#[derive(Subcommand, Debug)]
pub enum FipCmd {
    /// Create a floating IP, associated with a port or not.
    Create {
        /// Its address (default: the next free one of the external subnets).
        #[arg(long)]
        floating_ip_address: Option<Ipv4Addr>,
        /// The port it maps to.
        #[arg(long)]
        port: Option<String>,
        /// Which of the port's IPv4 addresses (default: its first).
        #[arg(long)]
        fixed_ip_address: Option<Ipv4Addr>,
        /// The external network.
        network: String,
    },
    /// Associate a floating IP with a port (or move it to another).
    Set {
        /// The port it maps to.
        #[arg(long)]
        port: String,
        /// Which of the port's IPv4 addresses (default: its first).
        #[arg(long)]
        fixed_ip_address: Option<Ipv4Addr>,
        /// The floating IP.
        address: Ipv4Addr,
    },
    /// Disassociate a floating IP from its port.
    Unset {
        /// Disassociate from its port (the only thing to unset).
        #[arg(long, required = true)]
        port: bool,
        /// The floating IP.
        address: Ipv4Addr,
    },
    /// Delete floating IPs (all or none).
    Delete {
        /// The floating IPs.
        #[arg(required = true)]
        addresses: Vec<Ipv4Addr>,
    },
    /// Show one floating IP.
    Show {
        /// The floating IP.
        address: Ipv4Addr,
    },
    /// List the floating IPs.
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
    /// The frames a live trace marked (`trace add`).
    Trace,
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
            | ShowKind::Status
            | ShowKind::Trace => None,
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
    View(ShowKind, bool),
    /// `show fib|neighbors|nat|sessions [ROUTER]`, `show fdb`: the published tables.
    Tables(TableKind, Option<String>),
    Trace(TraceParams),
    /// `interface add|delete|show|list`: the method and its params.
    Interface(&'static str, Value),
    /// `trace add|clear`, `show trace`: the method and its params.
    Live(&'static str, Value),
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
                live: Some(LiveTraceCmd::Add { interface, count }),
                ..
            } => Call::Live(
                "trace_add",
                json!({ "interface": interface, "count": count }),
            ),
            Cmd::Trace {
                live: Some(LiveTraceCmd::Clear),
                ..
            } => Call::Live("trace_clear", Value::Null),
            Cmd::Trace {
                live: None,
                port,
                src_mac,
                dst_mac,
                src_ip,
                dst_ip,
                hex,
                pcap,
                index,
            } => {
                let frame = match (hex, pcap) {
                    (Some(h), _) => Some(h),
                    (None, Some(f)) => {
                        let frames = dvr::pcap::read_file(&f)
                            .map_err(|e| format!("--pcap {}: {e}", f.display()))?;
                        let n = frames.len();
                        let fr = frames.get(index).ok_or_else(|| {
                            format!("--pcap {}: no frame {index} ({n} in it)", f.display())
                        })?;
                        Some(fr.iter().map(|b| format!("{b:02x}")).collect())
                    }
                    (None, None) => None,
                };
                Call::Trace(TraceParams {
                    port: port.ok_or("trace: --port, or `trace add` / `trace clear`")?,
                    src_mac,
                    dst_mac,
                    src_ip,
                    dst_ip,
                    frame,
                })
            }
            Cmd::Capture(CaptureCmd::Start {
                direction,
                count,
                snaplen,
                interface,
                file,
            }) => {
                let file = std::path::absolute(&file)
                    .map_err(|e| format!("capture: {}: {e}", file.display()))?;
                Call::Live(
                    "capture_start",
                    json!({ "interface": interface, "direction": direction, "count": count,
                            "snaplen": snaplen, "file": file }),
                )
            }
            Cmd::Capture(CaptureCmd::Stop) => Call::Live("capture_stop", Value::Null),
            Cmd::Capture(CaptureCmd::Show) => Call::Live("capture_show", Value::Null),
            Cmd::Completion { .. } | Cmd::Man => {
                return Err("completion and man are answered without a daemon".into());
            }
            Cmd::Show { what, all, .. } if all && what != ShowKind::Errors => {
                return Err(format!(
                    "--all is for show errors, not show {}",
                    what.name()
                ));
            }
            Cmd::Show { what, router, all } => match (what.table(), router) {
                (Some(t), router) if what != ShowKind::Fdb => Call::Tables(t, router),
                (Some(t), None) => Call::Tables(t, None),
                (_, Some(r)) => {
                    return Err(format!("show {} takes no router (got {r:?})", what.name()));
                }
                (None, None) if what == ShowKind::Trace => Call::Live("trace_show", Value::Null),
                (None, None) => Call::View(what, all),
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

#[cfg(test)]
mod help_tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand says what it does and every option and argument what
    /// it takes (`dvr-ctl ... --help` has no empty lines).
    #[test]
    fn every_command_option_and_argument_has_help() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path}: {id}"));
                }
            }
            for s in c.get_subcommands() {
                if s.get_name() == "help" {
                    continue;
                }
                let sub = format!("{path} {}", s.get_name());
                if s.get_about().is_none() {
                    missing.push(format!("{sub} (what it does)"));
                }
                walk(s, &sub, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "dvr-ctl", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
