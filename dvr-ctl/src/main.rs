//! `dvr-ctl`: drives a dvr-pmd with the verbs of the openstack client
//! (`dvr-ctl router set --disable r1`, `dvr-ctl floating ip set --port p1 IP`), and
//! shows what the daemon does (`dvr-ctl show stats`).
//!
//! Exit codes: 0 done, 1 refused (by the daemon or a bad command line), 2 the
//! daemon could not be reached. Output goes through `dvr::outln!`: a standard
//! output whose reader is gone (`dvr-ctl show errors | head -1`) ends dvr-ctl
//! as it ends `cat`, killed by SIGPIPE without a word (see `dvr::cli`).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dvr::mac::MacAddr;
use dvr::model::{
    AgentMode, AllowedPair, Change, FipGateway, FixedIpSpec, GatewaySpec, Kind, NetworkType, Route,
};
use dvr::proto::{self, Request, Response};
use ipnet::IpNet;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "dvr-ctl",
    version,
    about = "Drive a dvr-pmd node like `openstack router ...`"
)]
struct Cli {
    /// The daemon's control socket (default: $DVR_SOCKET, else the only
    /// /run/dvr/*/dvr.sock).
    #[arg(short, long, global = true)]
    socket: Option<PathBuf>,
    /// Print the daemon's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
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
        #[arg(value_parser = ["ports", "stats", "errors", "runtime", "status", "fib", "neighbors", "fdb", "nat", "sessions"])]
        what: String,
        /// With fib / neighbors / nat / sessions: one router only.
        router: Option<String>,
    },
}

// The verbs every kind named by a name has.
#[derive(Subcommand, Debug)]
enum CommonCmd {
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
enum HostCmd {
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
enum NetworkCmd {
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
enum SubnetCmd {
    Create {
        #[arg(long)]
        network: String,
        #[arg(long)]
        subnet_range: IpNet,
        /// An address, `auto` (the first one, the default) or `none`.
        #[arg(long)]
        gateway: Option<String>,
        name: String,
    },
    #[command(flatten)]
    Common(CommonCmd),
}

#[derive(Args, Debug)]
struct PortSecurity {
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
enum PortCmd {
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
enum RouterCmd {
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
enum RouterLink {
    Subnet { router: String, subnet: String },
}

#[derive(Subcommand, Debug)]
enum FloatingCmd {
    /// `floating ip ...`
    #[command(subcommand)]
    Ip(FipCmd),
}

#[derive(Subcommand, Debug)]
enum FipCmd {
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

/// What a command asks of the daemon.
enum Call {
    Apply(Vec<Change>),
    Show(Kind, String),
    List(Kind),
    View(String),
    /// `show fib|neighbors [ROUTER]`: the published tables.
    Tables(String, Option<String>),
    Trace(Value),
}

fn call_of(cmd: Cmd) -> Result<Call, String> {
    use Call::*;
    Ok(match cmd {
        Cmd::Host(c) => match c {
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
        },
        Cmd::Network(c) => match c {
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
        },
        Cmd::Subnet(c) => match c {
            SubnetCmd::Create {
                network,
                subnet_range,
                gateway,
                name,
            } => {
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
                }])
            }
            SubnetCmd::Common(c) => c.call(Kind::Subnet, |name| Change::SubnetDelete { name }),
        },
        Cmd::Port(c) => match c {
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
        },
        Cmd::Router(c) => match c {
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
        },
        Cmd::Floating {
            ip: FloatingCmd::Ip(c),
        } => match c {
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
        },
        Cmd::Trace {
            port,
            src_mac,
            dst_mac,
            src_ip,
            dst_ip,
        } => Trace(
            json!({"port": port, "src_mac": src_mac, "dst_mac": dst_mac, "src_ip": src_ip, "dst_ip": dst_ip}),
        ),
        Cmd::Show { what, router }
            if ["fib", "neighbors", "nat", "sessions"].contains(&what.as_str()) =>
        {
            Tables(what, router)
        }
        Cmd::Show { what, router: None } if what == "fdb" => Tables(what, None),
        Cmd::Show {
            what,
            router: Some(r),
        } => {
            return Err(format!("show {what} takes no router (got {r:?})"));
        }
        Cmd::Show { what, router: None } => View(what),
    })
}

const EXIT_REFUSED: u8 = 1;
const EXIT_UNREACHABLE: u8 = 2;

fn socket_path(cli: &Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = cli {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("DVR_SOCKET") {
        return Ok(PathBuf::from(p));
    }
    let found: Vec<PathBuf> = std::fs::read_dir("/run/dvr")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("dvr.sock"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    match found.len() {
        1 => Ok(found[0].clone()),
        0 => Err("no dvr-pmd socket found under /run/dvr; give --socket or set DVR_SOCKET".into()),
        _ => Err(format!(
            "several dvr-pmd sockets: {}; give --socket",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Sends one request; Err(message) when the daemon cannot be reached.
fn request(socket: &Path, method: &str, params: Value) -> Result<Response, String> {
    let mut s = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach dvr-pmd at {}: {e}", socket.display()))?;
    let req = Request {
        version: proto::VERSION,
        id: 1,
        method: method.to_owned(),
        params,
    };
    let mut line = serde_json::to_string(&req).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes())
        .map_err(|e| format!("sending to dvr-pmd: {e}"))?;
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer)
        .map_err(|e| format!("reading from dvr-pmd: {e}"))?;
    if answer.is_empty() {
        return Err("dvr-pmd closed the connection without answering".into());
    }
    serde_json::from_str(&answer)
        .map_err(|e| format!("dvr-pmd answered something that is not a response: {e}"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_REFUSED } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let call = match call_of(cli.cmd) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dvr-ctl: {e}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let socket = match socket_path(&cli.socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dvr-ctl: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let (method, params, view) = match &call {
        Call::Apply(changes) => ("apply", json!({ "changes": changes }), None),
        Call::Show(kind, name) => ("show", json!({ "kind": kind, "name": name }), None),
        Call::List(kind) => ("list", json!({ "kind": kind }), None),
        Call::View(w) if w == "status" || w == "ports" => ("status", Value::Null, Some(w.as_str())),
        Call::View(w) => ("stats", Value::Null, Some(w.as_str())),
        Call::Tables(w, r) => (
            "tables",
            json!({ "what": w, "router": r }),
            Some(w.as_str()),
        ),
        Call::Trace(p) => ("trace", p.clone(), Some("trace")),
    };
    let resp = match request(&socket, method, params) {
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
        dvr::outln!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    match (&call, view) {
        (Call::Apply(_), _) => {
            if let Some(applied) = result["applied"].as_array() {
                for a in applied {
                    if let (Some(k), Some(n)) = (a["kind"].as_str(), a["name"].as_str()) {
                        dvr::outln!("{} {}", k.replace('_', " "), n);
                    }
                }
            }
        }
        (Call::Show(..), _) => print_object(&result),
        (Call::List(kind), _) => print_list(*kind, &result),
        (_, Some(w)) => print_view(w, &result),
        _ => {}
    }
    ExitCode::SUCCESS
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
        let Ok(resp) = request(socket, "show", json!({ "kind": Kind::Port, "name": name })) else {
            continue;
        };
        let port = resp.result.unwrap_or(Value::Null);
        if let (Some(b), true) = (port["binding"].as_str(), port["host"].is_null()) {
            eprintln!(
                "dvr-ctl: warning: port {name} has binding {b} but no host: it is bound nowhere \
                 (port set --host HOST {name})"
            );
        }
    }
}

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

/// One part of a worker's cycles per packet (`rx`, `work`, `tx`; the daemon
/// divides them from sampled polls): empty before the first sample.
fn part(w: &Value, name: &str) -> String {
    w["cycles_per_packet_split"][name]
        .as_f64()
        .map_or(String::new(), |c| format!("{c:.1}"))
}

fn table(headers: &[&str], rows: &[Vec<String>]) {
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

fn print_object(v: &Value) {
    let rows: Vec<Vec<String>> = v
        .as_object()
        .map(|o| o.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect())
        .unwrap_or_default();
    table(&["Field", "Value"], &rows);
}

fn print_list(kind: Kind, v: &Value) {
    let cols: &[&str] = match kind {
        Kind::Host => &["name", "agent_mode", "vtep", "dvr_mac"],
        Kind::Network => &["name", "network_type", "segment", "mtu", "external"],
        Kind::Subnet => &["name", "network", "cidr", "gateway_ip"],
        Kind::Port => &["name", "network", "mac", "fixed_ips", "host"],
        Kind::Router => &["name", "admin_state_up", "distributed", "ha"],
        Kind::FloatingIp => &["address", "network", "port", "fixed_ip", "router"],
    };
    table(cols, &rows_of(v, |o| fields(o, cols)));
}

/// One row per element of the array `list`, made by `row`.
fn rows_of(list: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array()
        .map(|a| a.iter().map(row).collect())
        .unwrap_or_default()
}

/// The cells of `keys` of object `e`.
fn fields(e: &Value, keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| cell(&e[*k])).collect()
}

fn print_view(what: &str, v: &Value) {
    match what {
        "ports" => table(
            &["port", "id", "mac", "link up"],
            &rows_of(&v["ports"], |p| {
                fields(p, &["name", "id", "mac", "link_up"])
            }),
        ),
        "stats" => table(
            &[
                "port",
                "rx packets",
                "rx bytes",
                "tx packets",
                "tx bytes",
                "missed",
            ],
            &rows_of(&v["ports"], |p| {
                fields(
                    p,
                    &[
                        "name",
                        "rx_packets",
                        "rx_bytes",
                        "tx_packets",
                        "tx_bytes",
                        "imissed",
                    ],
                )
            }),
        ),
        "errors" => {
            let rows: Vec<Vec<String>> = v["drops"]
                .as_object()
                .map(|o| o.iter().map(|(k, n)| vec![cell(n), k.clone()]).collect())
                .unwrap_or_default();
            table(&["count", "reason"], &rows);
        }
        "fib" => table(
            &["router", "prefix", "next hop"],
            &rows_of(&v["entries"], |e| {
                let nh = &e["next_hop"];
                let hop = match nh["type"].as_str() {
                    Some("connected") => format!("connected (interface {})", cell(&nh["iface"])),
                    _ => format!("via {}", cell(&nh["via"])),
                };
                vec![cell(&e["router"]), cell(&e["prefix"]), hop]
            }),
        ),
        "neighbors" => table(
            &["router", "ip", "mac", "port", "location"],
            &rows_of(&v["entries"], |e| {
                fields(e, &["router", "ip", "mac", "port", "location"])
            }),
        ),
        "nat" => table(
            &["router", "type", "external", "internal", "port", "where"],
            &rows_of(&v["entries"], |e| {
                fields(
                    e,
                    &["router", "type", "external", "internal", "port", "where"],
                )
            }),
        ),
        "sessions" => {
            table(
                &[
                    "router", "protocol", "inside", "outside", "remote", "state", "idle s",
                ],
                &rows_of(&v["entries"], |e| {
                    let mut r = fields(
                        e,
                        &["router", "protocol", "inside", "outside", "remote", "state"],
                    );
                    r.push(format!("{:.1}", e["idle_s"].as_f64().unwrap_or(0.0)));
                    r
                }),
            );
            let listed = v["entries"].as_array().map_or(0, |a| a.len());
            let total = v["total"].as_u64().unwrap_or(0);
            if total as usize > listed {
                dvr::outln!(
                    "{total} sessions, {listed} listed (at most {} per worker)",
                    cell(&v["limit_per_worker"])
                );
            } else {
                dvr::outln!("{total} sessions");
            }
            for w in v["unanswered"].as_array().into_iter().flatten() {
                eprintln!(
                    "dvr-ctl: worker {} (core {}) did not answer in time: its sessions are missing",
                    cell(&w["worker"]),
                    cell(&w["core"])
                );
            }
        }
        "fdb" => table(
            &["network", "mac", "location", "port", "dataplane port"],
            &rows_of(&v["entries"], |e| {
                fields(e, &["network", "mac", "location", "port", "dataplane_port"])
            }),
        ),
        "trace" => {
            for st in v["stages"].as_array().into_iter().flatten() {
                let rest: Vec<String> = st
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| *k != "stage")
                    .map(|(k, v)| format!("{k}={}", cell(v)))
                    .collect();
                dvr::outln!("{:<14} {}", cell(&st["stage"]), rest.join(" "));
            }
        }
        "runtime" => table(
            &[
                "worker",
                "core",
                "packets",
                "cycles/packet",
                "rx",
                "dvr",
                "tx",
                "packets/poll",
                "busy polls",
                "nat sessions",
                "nat created",
                "flow hits",
                "flows cached",
                "decap way",
                "snat way",
            ],
            &rows_of(&v["workers"], |w| {
                let polls = w["polls"].as_f64().unwrap_or(0.0);
                let busy = w["busy_polls"].as_f64().unwrap_or(0.0);
                let pk = w["packets"].as_f64().unwrap_or(0.0);
                vec![
                    cell(&w["worker"]),
                    cell(&w["core"]),
                    cell(&w["packets"]),
                    format!("{:.1}", w["cycles_per_packet"].as_f64().unwrap_or(0.0)),
                    part(w, "rx"),
                    part(w, "work"),
                    part(w, "tx"),
                    format!("{:.1}", if busy > 0.0 { pk / busy } else { 0.0 }),
                    format!(
                        "{:.1}%",
                        if polls > 0.0 {
                            100.0 * busy / polls
                        } else {
                            0.0
                        }
                    ),
                    cell(&w["nat_sessions"]),
                    cell(&w["nat_sessions_created"]),
                    cell(&w["flow_hits"]),
                    cell(&w["flow_inserts"]),
                    cell(&w["decap_way"]),
                    cell(&w["snat_way"]),
                ]
            }),
        ),
        _ => print_object(v),
    }
}
