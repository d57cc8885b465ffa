//! Counters: per worker, written only by their worker (plain load + store of
//! relaxed atomics, no read-modify-write, no shared cache lines between workers),
//! read and summed by the control thread.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $v:ident => $name:literal,)*) => {
        /// Why a packet was dropped (or, for the ICMP-answered ones, why it was
        /// not forwarded). Every drop is counted under one of these.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[doc = $doc])* $v,)*
        }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$v,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The counter's name, as shown by the daemon and `dvr-ctl show errors`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$v => $name,)*
                }
            }

            /// What the counter means, for people.
            pub fn describe(self) -> &'static str {
                match self {
                    $(DropReason::$v => concat!($($doc,)*).trim_ascii(),)*
                }
            }
        }
    };
}

reasons! {
    /// Shorter than an Ethernet header.
    RuntFrame => "runt_frame",
    /// Chained mbufs: the pipeline handles single-segment frames only.
    MultiSegment => "multi_segment",
    /// Source MAC is a group address, which no station may send from.
    MulticastSrcMac => "multicast_src_mac",
    /// Broadcast or multicast on a VM port with no model port bound: the static table does not flood.
    FloodNotConfigured => "flood_not_configured",
    /// Broadcast or multicast with no other port or host of its network to go to.
    FloodNoMember => "flood_no_member",
    /// A copy of a flooded frame could not get a buffer (mempool empty).
    NoMbuf => "no_mbuf",
    /// Destination MAC is not in the FDB.
    UnknownDstMac => "unknown_dst_mac",
    /// The FDB sends the frame back out of the port it came in on.
    SameIngressPort => "same_ingress_port",
    /// The destination port has no transmit queue for this worker.
    NoTxQueue => "no_tx_queue",
    /// The destination port's transmit queue was full.
    TxQueueFull => "tx_queue_full",
    /// The ring to the worker that owns the frame's SNAT session was full (that worker is overloaded).
    HandoffFull => "handoff_full",
    /// The destination port's link is down (a vhost-user guest that has not set up its queues yet, or has gone): not a congestion.
    TxLinkDown => "tx_link_down",
    /// Port security: the source MAC is neither the port's nor an allowed pair's.
    PortSecurityMac => "port_security_mac",
    /// Port security: the source IP is neither a fixed IP nor inside an allowed pair.
    PortSecurityIp => "port_security_ip",
    /// Port security: an ARP packet whose sender MAC or sender IP is neither the port's nor an allowed pair's.
    PortSecurityArp => "port_security_arp",
    /// Port security: a neighbour solicitation or advertisement whose link-layer address option, or advertised target, is not the port's.
    PortSecurityNd => "port_security_nd",
    /// Port security: an ICMPv6 router advertisement or redirect from a VM port.
    PortSecurityRa => "port_security_ra",
    /// Port security: a DHCP (UDP 67 to 68) or DHCPv6 (UDP 547 to 546) server message from a VM port.
    PortSecurityDhcp => "port_security_dhcp",
    /// UDP to port 67 from a VM port that this host answers DHCP for, which is not a whole DHCP client message (or whose reply found no room in its buffer).
    DhcpMalformed => "dhcp_malformed",
    /// A DHCP message whose client hardware address is not its port's MAC.
    DhcpForeignClient => "dhcp_foreign_client",
    /// A DHCPREQUEST that chose another server's offer (option 54): not answered.
    DhcpOtherServer => "dhcp_other_server",
    /// A DHCPRELEASE or DHCPDECLINE: taken, nothing to answer (the address stays the port's).
    DhcpReleased => "dhcp_released",
    /// UDP from port 546 to port 547 from a VM port that this host answers DHCPv6 for, which is not a whole DHCPv6 client message as RFC 8415 has it (no client id, a server id where none belongs or none where one must be, a type no client sends), or whose reply found no room in its buffer.
    Dhcp6Malformed => "dhcp6_malformed",
    /// A DHCPv6 message naming another server's DUID: not answered.
    Dhcp6OtherServer => "dhcp6_other_server",
    /// A VLAN-tagged frame from a VM port.
    VlanFromVm => "vlan_from_vm",
    /// ARP that is not an Ethernet/IPv4 request or reply of the right length.
    MalformedArp => "malformed_arp",
    /// Broadcast ARP request for an address the model does not know (never flooded).
    ArpUnknownTarget => "arp_unknown_target",
    /// Neighbour discovery with a bad length, checksum, hop limit or option.
    MalformedNd => "malformed_nd",
    /// Neighbour solicitation for an address the model does not know.
    NdUnknownTarget => "nd_unknown_target",
    /// A frame larger than its network's MTU (and not answered with an ICMP error).
    MtuExceeded => "mtu_exceeded",
    /// Routed frame of an ethertype other than IPv4 / IPv6.
    UnsupportedEthertype => "unsupported_ethertype",
    /// IPv4 header truncated, or lengths that disagree with the frame.
    MalformedIpv4 => "malformed_ipv4",
    /// IPv4 header checksum is wrong.
    BadIpv4Checksum => "bad_ipv4_checksum",
    /// IPv6 header truncated, or a payload length that disagrees with the frame.
    MalformedIpv6 => "malformed_ipv6",
    /// Source address that must never be routed (unspecified, loopback, multicast, link-local).
    MartianSource => "martian_source",
    /// Destination address that is not routed (multicast, broadcast, loopback, link-local).
    MartianDestination => "martian_destination",
    /// TTL / hop limit exhausted (answered with ICMP time exceeded).
    TtlExpired => "ttl_expired",
    /// No route (answered with ICMP net unreachable).
    NoRoute => "no_route",
    /// Too big for the egress network with DF set (answered with fragmentation needed / packet too big).
    FragmentationNeeded => "fragmentation_needed",
    /// The next hop is not a known port on a connected subnet.
    NeighborUnknown => "neighbor_unknown",
    /// Routed to an address inside the allowed address pairs of several ports (a VIP), none of which has announced it yet (gratuitous ARP, ARP reply, neighbour advertisement).
    VipHolderUnknown => "vip_holder_unknown",
    /// The next hop's port is bound to no host with a VTEP.
    NeighborUnbound => "neighbor_unbound",
    /// North-south traffic (via the external gateway): not served by this node yet.
    NoExternalPath => "no_external_path",
    /// To a router address: neither an echo request nor anything the router serves.
    ToRouterUnsupported => "to_router_unsupported",
    /// An ICMP error was due but the per-worker rate limit was reached.
    IcmpRateLimited => "icmp_rate_limited",
    /// No ICMP error is ever sent about an ICMP error or a non-first fragment.
    IcmpErrorNotSent => "icmp_error_not_sent",
    /// The router or network was removed while the frame or its SNAT session was on its way (state kept across a change of the tables).
    TableGone => "table_gone",
    /// A table entry refers to a router, network or interface the same snapshot lacks; the compiler never builds one: counted instead of crashing.
    Dangling => "dangling_reference",
    /// To another host, but this node has no DVR MAC configured.
    NoDvrMac => "no_dvr_mac",
    /// To another host, but this node has no VTEP or no underlay port.
    NoUnderlay => "no_underlay",
    /// The remote VTEP's MAC is not resolved yet (ARP on the underlay is pending).
    VtepUnresolved => "vtep_unresolved",
    /// No headroom left in the buffer to push the tunnel headers.
    NoHeadroom => "no_headroom",
    /// On the underlay: an IPv4 packet whose destination is not this node's VTEP.
    NotForThisVtep => "not_for_this_vtep",
    /// On the underlay: outer source is not a known host's VTEP.
    UnknownVtepSource => "unknown_vtep_source",
    /// On the underlay: addressed to the VTEP but neither VXLAN nor GRE.
    NotATunnel => "not_a_tunnel",
    /// VXLAN header truncated or without the I flag.
    BadVxlan => "bad_vxlan",
    /// VXLAN network identifier of no known network.
    UnknownVni => "unknown_vni",
    /// GRE header truncated, with flags other than the key, or not Ethernet.
    BadGre => "bad_gre",
    /// GRE key of no known network.
    UnknownGreKey => "unknown_gre_key",
    /// VLAN id of no known network.
    UnknownVlan => "unknown_vlan",
    /// Underlay frame of an ethertype that is neither IPv4, ARP nor 802.1Q.
    UnderlayEthertype => "underlay_ethertype",
    /// An ARP reply on the underlay or the external port, or a neighbour advertisement on the external port, handed to the control thread (VTEP and upstream router resolution).
    ArpReplyConsumed => "arp_reply_consumed",
    /// Decapsulated frame whose destination is not a local port (never tunnel to tunnel).
    NotLocalAfterDecap => "not_local_after_decap",
    /// Decapsulated frame whose source MAC is a router interface MAC or the DVR MAC of this node (the gateway MAC never appears as a source on the fabric).
    OverlayGatewayMac => "overlay_gateway_mac",
    /// Decapsulated frame from another host's DVR MAC (routed there) to a local port, but no router interface here covers its destination: its source cannot become a router interface MAC.
    DvrMacNoInterface => "dvr_mac_no_interface",
    /// Received on the external port: not ARP, IPv4 or IPv6.
    ExternalEthertype => "external_ethertype",
    /// Received on the external port for an address this node does not serve (a floating IP bound elsewhere, another node's SNAT, no such address).
    ExternalNotServed => "external_not_served",
    /// Received on the external port for a served address, but not sent to the MAC that serves it.
    ExternalWrongMac => "external_wrong_mac",
    /// North-south: the upstream router's MAC is not resolved yet (ARP on the external port).
    UpstreamUnresolved => "upstream_unresolved",
    /// North-south with no floating IP: the router has no external gateway with SNAT enabled.
    NoSnat => "no_snat",
    /// North-south through a floating IP whose port is not on this node, or a node without an external port (dvr_no_external).
    FipNotServedHere => "fip_not_served_here",
    /// A frame sent to this node's router for SNAT, but the router's SNAT is not here (moved).
    SnatNotHere => "snat_not_here",
    /// The router's dvr_snat host is unknown (no VTEP) or has not been chosen.
    SnatHostUnknown => "snat_host_unknown",
    /// Hairpin to a floating IP from a VM that has none: not translated (the reply could not find its way back).
    HairpinNoFip => "hairpin_no_fip",
    /// SNAT: the session table is full; the new flow is dropped, no session is evicted for it.
    NatTableFull => "nat_table_full",
    /// SNAT: no free port (or ICMP id) left on the external address for this protocol.
    NatPortsExhausted => "nat_ports_exhausted",
    /// SNAT: from outside (or an ICMP error from inside) with no live session to match.
    NatNoSession => "nat_no_session",
    /// NAT: a non-first fragment whose first fragment was not seen (or is forgotten).
    NatFragmentUnknown => "nat_fragment_unknown",
    /// SNAT: neither TCP, UDP, ICMP echo nor an ICMP error about one of them.
    NatUnsupportedProto => "nat_unsupported_proto",
    /// NAT: a transport header (or an ICMP error's quoted header) too short to translate.
    NatTruncated => "nat_truncated",
    /// SNAT: the router has no external addresses configured on this worker.
    NatNoPool => "nat_no_pool",
    /// TCP from a VM to 169.254.169.254:80, handed to the metadata proxy (not forwarded).
    MetadataConsumed => "metadata_consumed",
    /// TCP to the metadata proxy while its queue from the workers is full (the VM's TCP sends it again).
    MetadataQueueFull => "metadata_queue_full",
    /// TCP to the metadata proxy in a frame larger than the proxy's queue slot (1536 bytes).
    MetadataOversize => "metadata_oversize",
    /// Neighbour discovery on the external port that dvr does not take: router solicitations and advertisements, redirects.
    ExternalNdIgnored => "external_nd_ignored",
}

/// A counter written by one thread only.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this: a load and a store, no locked
    /// instruction.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Sets the value (a gauge, or a count kept elsewhere). Only the owning
    /// worker calls this: one store.
    #[inline(always)]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One port's traffic as seen by one worker.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
}

/// Everything one worker counts.
#[derive(Debug)]
#[repr(align(64))]
pub struct WorkerCounters {
    pub ports: Box<[PortCounters]>,
    pub drops: [Counter; DropReason::COUNT],
    /// Polls of all the worker's queues, and how many of them found packets.
    pub polls: Counter,
    pub busy_polls: Counter,
    /// TSC cycles spent polling (processing and TX included; sleeps of the
    /// adaptive mode excluded). Per packet, it is the cost of forwarding when the
    /// worker is saturated.
    pub poll_cycles: Counter,
    /// Packets processed (received) by this worker.
    pub packets: Counter,
    /// Where the cycles go, from a sample of the polls that found packets
    /// (one poll in `worker::SAMPLE_POLLS` is timed in parts): the sampled
    /// polls' packets and cycles, and the cycles of those spent in the
    /// drivers' receive and transmit calls. The rest is dvr's own work.
    pub sampled_packets: Counter,
    pub sampled_cycles: Counter,
    pub sampled_rx_cycles: Counter,
    pub sampled_tx_cycles: Counter,
    /// Sessions in this worker's SNAT table (live, and expired ones not yet
    /// freed), and sessions it has created since it started: set after each
    /// burst.
    pub nat_sessions: Counter,
    pub nat_sessions_created: Counter,
    /// Frames that found their flow in the worker's flow cache
    /// ([`crate::fastpath::flow`]), and flows it has cached: set after each burst.
    pub flow_hits: Counter,
    pub flow_inserts: Counter,
    /// Frames from the underlay decided by the workers' short ways: the
    /// decap way (`fastpath::decap_way`: from another host, for a port
    /// here) and the SNAT way (`fastpath::snat_way`: to the SNAT on this
    /// node). Every other frame takes the whole pipeline.
    pub decap_way: Counter,
    pub snat_way: Counter,
    /// Frames this worker handed to the worker that owns their SNAT
    /// session, and frames other workers handed to it
    /// (`worker::handoff`).
    pub handoff_out: Counter,
    pub handoff_in: Counter,
}

impl WorkerCounters {
    pub fn new(ports: usize) -> Self {
        WorkerCounters {
            ports: (0..ports).map(|_| PortCounters::default()).collect(),
            drops: std::array::from_fn(|_| Counter::default()),
            polls: Counter::default(),
            busy_polls: Counter::default(),
            poll_cycles: Counter::default(),
            packets: Counter::default(),
            sampled_packets: Counter::default(),
            sampled_cycles: Counter::default(),
            sampled_rx_cycles: Counter::default(),
            sampled_tx_cycles: Counter::default(),
            nat_sessions: Counter::default(),
            nat_sessions_created: Counter::default(),
            flow_hits: Counter::default(),
            flow_inserts: Counter::default(),
            decap_way: Counter::default(),
            snat_way: Counter::default(),
            handoff_out: Counter::default(),
            handoff_in: Counter::default(),
        }
    }

    #[inline(always)]
    pub fn drop(&self, r: DropReason, n: u64) {
        self.drops[r as usize].add(n);
    }

    pub fn snapshot(&self) -> WorkerSnapshot {
        WorkerSnapshot {
            ports: self.ports.iter().map(PortCounters::snapshot).collect(),
            drops: std::array::from_fn(|i| self.drops[i].get()),
            polls: self.polls.get(),
            busy_polls: self.busy_polls.get(),
            poll_cycles: self.poll_cycles.get(),
            packets: self.packets.get(),
            sampled_packets: self.sampled_packets.get(),
            sampled_cycles: self.sampled_cycles.get(),
            sampled_rx_cycles: self.sampled_rx_cycles.get(),
            sampled_tx_cycles: self.sampled_tx_cycles.get(),
            nat_sessions: self.nat_sessions.get(),
            nat_sessions_created: self.nat_sessions_created.get(),
            flow_hits: self.flow_hits.get(),
            flow_inserts: self.flow_inserts.get(),
            decap_way: self.decap_way.get(),
            snat_way: self.snat_way.get(),
            handoff_out: self.handoff_out.get(),
            handoff_in: self.handoff_in.get(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortSnapshot {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl PortCounters {
    /// The counters now.
    pub fn snapshot(&self) -> PortSnapshot {
        PortSnapshot {
            rx_packets: self.rx_packets.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_packets: self.tx_packets.get(),
            tx_bytes: self.tx_bytes.get(),
        }
    }
}

impl PortSnapshot {
    /// What was counted since `base` (a slot used again counts from there).
    pub fn since(self, base: PortSnapshot) -> PortSnapshot {
        PortSnapshot {
            rx_packets: self.rx_packets.saturating_sub(base.rx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(base.rx_bytes),
            tx_packets: self.tx_packets.saturating_sub(base.tx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(base.tx_bytes),
        }
    }
}

impl std::ops::AddAssign for PortSnapshot {
    fn add_assign(&mut self, o: Self) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
    }
}

/// A copy of one worker's counters at one moment.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot {
    pub ports: Vec<PortSnapshot>,
    pub drops: [u64; DropReason::COUNT],
    pub polls: u64,
    pub busy_polls: u64,
    pub poll_cycles: u64,
    pub packets: u64,
    pub sampled_packets: u64,
    pub sampled_cycles: u64,
    pub sampled_rx_cycles: u64,
    pub sampled_tx_cycles: u64,
    pub nat_sessions: u64,
    pub nat_sessions_created: u64,
    pub flow_hits: u64,
    pub flow_inserts: u64,
    pub decap_way: u64,
    pub snat_way: u64,
    pub handoff_out: u64,
    pub handoff_in: u64,
}

impl Default for WorkerSnapshot {
    fn default() -> Self {
        WorkerSnapshot {
            ports: Vec::new(),
            drops: [0; DropReason::COUNT],
            polls: 0,
            busy_polls: 0,
            poll_cycles: 0,
            packets: 0,
            sampled_packets: 0,
            sampled_cycles: 0,
            sampled_rx_cycles: 0,
            sampled_tx_cycles: 0,
            nat_sessions: 0,
            nat_sessions_created: 0,
            flow_hits: 0,
            flow_inserts: 0,
            decap_way: 0,
            snat_way: 0,
            handoff_out: 0,
            handoff_in: 0,
        }
    }
}

impl WorkerSnapshot {
    /// Polling cycles per packet: exact when the worker is saturated, an upper
    /// bound when it also polls empty queues.
    pub fn cycles_per_packet(&self) -> f64 {
        if self.packets == 0 {
            0.0
        } else {
            self.poll_cycles as f64 / self.packets as f64
        }
    }

    /// Cycles per packet in the polls that got packets (the sampled ones:
    /// one in [`crate::worker::SAMPLE_POLLS`]), as OVS's `pmd-stats-show`
    /// gives "processing cycles per packet": what forwarding costs, whatever
    /// the load. 0 before a sampled poll had packets.
    pub fn busy_cycles_per_packet(&self) -> f64 {
        if self.sampled_packets == 0 {
            0.0
        } else {
            self.sampled_cycles as f64 / self.sampled_packets as f64
        }
    }

    /// The share of the worker's cycles spent on packets (the rest polled
    /// empty queues or slept): busy cycles per packet times packets, over
    /// all cycles; at most 1.
    pub fn busy_share(&self) -> f64 {
        if self.poll_cycles == 0 {
            return 0.0;
        }
        (self.busy_cycles_per_packet() * self.packets as f64 / self.poll_cycles as f64).min(1.0)
    }

    /// [`WorkerSnapshot::busy_cycles_per_packet`] in its three parts.
    pub fn busy_split(&self) -> Option<CycleSplit> {
        split(
            self.busy_cycles_per_packet(),
            self.sampled_cycles,
            self.sampled_rx_cycles,
            self.sampled_tx_cycles,
        )
    }

    /// [`WorkerSnapshot::cycles_per_packet`] in its three parts, in the
    /// shares the sampled polls spent on them (`None` before a poll with
    /// packets was sampled).
    pub fn split(&self) -> Option<CycleSplit> {
        split(
            self.cycles_per_packet(),
            self.sampled_cycles,
            self.sampled_rx_cycles,
            self.sampled_tx_cycles,
        )
    }
}

/// Cycles per packet in the drivers' receive calls, in dvr's own work, and in
/// the drivers' transmit calls; they add up to the whole.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CycleSplit {
    pub rx: f64,
    pub work: f64,
    pub tx: f64,
}

impl std::fmt::Display for CycleSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rx {:.1}, dvr {:.1}, tx {:.1}",
            self.rx, self.work, self.tx
        )
    }
}

/// `cycles_per_packet` divided in the shares that the sampled cycles
/// `sampled` spent in receive calls (`rx`) and transmit calls (`tx`). `None`
/// with no sample, or with parts larger than their whole (counters read
/// between two updates of one sample).
pub fn split(cycles_per_packet: f64, sampled: u64, rx: u64, tx: u64) -> Option<CycleSplit> {
    if sampled == 0 || rx.checked_add(tx)? > sampled {
        return None;
    }
    let share = |c: u64| cycles_per_packet * c as f64 / sampled as f64;
    let (rx, tx) = (share(rx), share(tx));
    Some(CycleSplit {
        rx,
        work: cycles_per_packet - rx - tx,
        tx,
    })
}

/// Sums of several workers' snapshots.
pub fn total(ws: &[WorkerSnapshot], ports: usize) -> WorkerSnapshot {
    let mut t = WorkerSnapshot {
        ports: vec![PortSnapshot::default(); ports],
        ..Default::default()
    };
    for w in ws {
        for (a, b) in t.ports.iter_mut().zip(&w.ports) {
            *a += *b;
        }
        for (a, b) in t.drops.iter_mut().zip(&w.drops) {
            *a += b;
        }
        t.polls += w.polls;
        t.busy_polls += w.busy_polls;
        t.poll_cycles += w.poll_cycles;
        t.packets += w.packets;
        t.sampled_packets += w.sampled_packets;
        t.sampled_cycles += w.sampled_cycles;
        t.sampled_rx_cycles += w.sampled_rx_cycles;
        t.sampled_tx_cycles += w.sampled_tx_cycles;
        t.nat_sessions += w.nat_sessions;
        t.nat_sessions_created += w.nat_sessions_created;
        t.flow_hits += w.flow_hits;
        t.flow_inserts += w.flow_inserts;
        t.decap_way += w.decap_way;
        t.snat_way += w.snat_way;
        t.handoff_out += w.handoff_out;
        t.handoff_in += w.handoff_in;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexed() {
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    /// docs/BEHAVIOUR.md lists every reason with its meaning: a reason added
    /// without its line there fails here.
    #[test]
    fn every_reason_is_documented() {
        let doc = include_str!("../docs/BEHAVIOUR.md");
        for r in DropReason::ALL {
            let row = format!("| `{}` | ", r.name());
            assert!(
                doc.lines()
                    .any(|l| l.starts_with(&row) && l.len() > row.len() + 2),
                "docs/BEHAVIOUR.md has no row for {}",
                r.name()
            );
        }
    }

    #[test]
    fn counts_and_sums() {
        let a = WorkerCounters::new(2);
        let b = WorkerCounters::new(2);
        a.ports[1].rx_packets.add(3);
        b.ports[1].rx_packets.add(4);
        a.drop(DropReason::UnknownDstMac, 2);
        b.poll_cycles.add(100);
        b.packets.add(4);
        let t = total(&[a.snapshot(), b.snapshot()], 2);
        assert_eq!(t.ports[1].rx_packets, 7);
        assert_eq!(t.ports[0], PortSnapshot::default());
        assert_eq!(t.drops[DropReason::UnknownDstMac as usize], 2);
        assert_eq!(t.cycles_per_packet(), 25.0);
        assert_eq!(t.split(), None);
    }

    #[test]
    fn splits_in_the_sampled_shares() {
        let a = WorkerCounters::new(1);
        a.poll_cycles.add(1000);
        a.packets.add(10);
        a.sampled_packets.add(2);
        a.sampled_cycles.add(400);
        a.sampled_rx_cycles.add(100);
        a.sampled_tx_cycles.add(60);
        let s = a.snapshot().split().unwrap();
        assert_eq!(
            s,
            CycleSplit {
                rx: 25.0,
                work: 60.0,
                tx: 15.0
            }
        );
        // Parts larger than their whole: no split.
        assert_eq!(split(100.0, 10, 8, 8), None);
        assert_eq!(split(100.0, 10, u64::MAX, 8), None);
        assert_eq!(split(100.0, 0, 0, 0), None);
    }
}
