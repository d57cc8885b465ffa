//! The metadata service on every distributed router (Neutron's metadata
//! proxy, hosted on all the distributed routers): a VM port's TCP to
//! 169.254.169.254:80 is handed to the node's metadata proxy, which
//! terminates the connection on the VM's own host and sends each request on
//! to Nova's metadata API (`dvr-pmd`'s `metadata` thread). Only with
//! `[metadata]` configured ([`Env::metadata`]), and only from a VM whose
//! network has a router interface on the VM's subnet, sent to that
//! interface's MAC (the VM's gateway: the router the request names), as
//! Neutron's proxy in the router's namespace sees only what reaches the
//! router; anything else to 169.254.169.254 goes on through the pipeline
//! (switched, or met by the router as any link-local address: not routed).
//!
//! Every IPv4 frame of a VM port's full pipeline pays one comparison (its
//! destination address); the flow cache never holds such a frame (only
//! forwarded frames are cached).

use std::net::IpAddr;

use super::{Disposition, Env, PuntKind, Trace};
use crate::mac::MacAddr;
use crate::pkt::Frame;
use crate::tables::{NetTables, VmPort};
use crate::wire::{be16, ethernet, ipv4, tcp};
use Disposition as D;

/// The metadata service's address, in the order of the wire.
pub const ADDRESS: [u8; 4] = [169, 254, 169, 254];
/// The metadata service's port.
pub const PORT: u16 = 80;

const IP_AT: usize = ethernet::HEADER_LEN;
const DST_AT: usize = IP_AT + ipv4::field::DST_ADDR.start;

/// What the worker hands the proxy with a frame punted to it: where the
/// frame came from and the router it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataNote {
    /// The VM's dataplane port and network (index).
    pub port: u16,
    pub net: u32,
    /// The router whose interface on the VM's subnet is its gateway, and
    /// that interface's MAC (the source of the proxy's replies).
    pub router: u32,
    pub gw_mac: MacAddr,
}

/// Whether IPv4 frame `b` is to 169.254.169.254: the one test every IPv4
/// frame of a VM port's full pipeline pays.
#[inline(always)]
pub(super) fn to_service(b: &[u8]) -> bool {
    b.get(DST_AT..DST_AT + 4) == Some(&ADDRESS[..])
}

/// Frame `f` from VM port `vm` of network `net`, to 169.254.169.254: for
/// the proxy ([`PuntKind::Metadata`], with [`Env::metadata_note`] set) if
/// it runs and the frame is a first or only fragment of TCP to port 80 from
/// an address of a subnet a router interface here serves, sent to that
/// interface's MAC; else `None`, the pipeline goes on with it.
#[cold]
pub(super) fn intercept<T: Trace>(
    env: &mut Env,
    vm: &VmPort,
    net: &NetTables,
    f: &Frame,
    t: &mut T,
) -> Option<Disposition> {
    if !env.metadata {
        tr!(
            t,
            "metadata",
            "to 169.254.169.254: no metadata proxy on this node"
        );
        return None;
    }
    let b = f.data();
    let ip = b.get(IP_AT..)?;
    let ihl = (*ip.first()? & 0x0f) as usize * 4;
    if ip.len() < ihl + tcp::HEADER_LEN
        || ihl < ipv4::HEADER_LEN
        || ip[ipv4::field::PROTOCOL] != 6
        || be16(ip, ipv4::field::FLAGS_OFFSET.start) & 0x1fff != 0
        || be16(ip, ihl + tcp::field::DST_PORT.start) != PORT
    {
        return None;
    }
    let src = u32::from_be_bytes(ip[ipv4::field::SRC_ADDR].try_into().ok()?);
    let dst_mac = &b[ethernet::field::DST];
    let Some(gw) = net.gateways.iter().find(|g| match (g.cidr, g.ip) {
        (ipnet::IpNet::V4(c), IpAddr::V4(_)) => {
            let mask = u32::from(c.netmask());
            src & mask == u32::from(c.network()) & mask && g.mac.0 == dst_mac
        }
        _ => false,
    }) else {
        tr!(
            t,
            "metadata",
            "to 169.254.169.254:80 from {}: not sent to a router interface on its subnet",
            std::net::Ipv4Addr::from(src)
        );
        return None;
    };
    tr!(
        t,
        "metadata",
        "TCP to 169.254.169.254:80: to the metadata proxy, for router {}",
        gw.router
    );
    env.metadata_note = Some(MetadataNote {
        port: vm.index,
        net: vm.net,
        router: gw.router,
        gw_mac: gw.mac,
    });
    Some(D::Punt(PuntKind::Metadata))
}
