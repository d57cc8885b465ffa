//! What the underlay's ways ([`super::decap`], [`super::snat`]) share: a
//! frame from the underlay as they read it (`Arrival`), and the memory of
//! the tunnels they last looked at ([`TunnelMemo`]).

use std::net::Ipv4Addr;

use crate::mac::MacAddr;
use crate::model::NetworkType;
use crate::tables::{NodeTables, Snapshot};
use crate::wire::checksum::ipv4_header_sum_ok;
use crate::wire::tunnel::{self, Encap, Tunnel, Underlay};
use crate::wire::{be16, ethernet, ipv4, mac_at};

/// The common case of [`ipv4::validate`], on bytes: a 20-byte IPv4 header
/// at the start of `ip` with a right checksum and a total length that `ip`
/// holds; the header and that length. Read straight from the fixed header:
/// measured, the view's checks cost the ways 3 to 4%.
#[inline(always)]
pub(super) fn plain_ipv4(ip: &[u8]) -> Option<(&[u8; ipv4::HEADER_LEN], usize)> {
    let h = ip.first_chunk::<{ ipv4::HEADER_LEN }>()?;
    let total = usize::from(be16(h, ipv4::field::LENGTH.start));
    (h[ipv4::field::VER_IHL] == 0x45
        && total >= ipv4::HEADER_LEN
        && total <= ip.len()
        && ipv4_header_sum_ok(h))
    .then_some((h, total))
}

/// A worker's memory of the last tunnels a way ([`super::snat_way`],
/// [`super::decap_way`]) looked at: sets of two entries ([`TUNNEL_MEMO`] entries
/// in a worker), each set the last two tunnels of the keys that hash to it.
/// An entry holds its key (`Arrival`'s key: carrier, source VTEP, segment,
/// inner destination and source MACs, ethertype) and what the way's tunnel
/// part (`snat_tunnel`, `decap_tunnel`) found for it on snapshot `epoch`
/// (never 0), which reads nothing else of a frame: valid for that snapshot
/// only, so any table change makes it stale.
#[derive(Debug, Clone)]
pub struct TunnelMemo<T> {
    sets: Box<[[Remembered<T>; 2]]>,
    mask: usize,
}

/// Entries of a worker's [`TunnelMemo`]s: the tunnels of a compute node's
/// busy VMs and peers. A tunnel is a local VM's MAC for each sending host's
/// DVR MAC (or sending VM), so hundreds are common: with 64 entries, the
/// 128 tunnels of the l3 bench's receive case missed on most frames.
/// 4096 entries of 64 bytes (256 KiB), two per set: of a thousand busy
/// tunnels, fewer than one in ten shares its set with two others, where
/// with one entry per index about a fifth would share it with another.
pub const TUNNEL_MEMO: usize = 4096;
/// Entries of the memories of [`Env::new`] (tests and traces make one per
/// frame).
pub(crate) const TUNNEL_MEMO_SMALL: usize = 64;

#[derive(Debug, Clone, Copy)]
pub(super) struct Remembered<T> {
    epoch: u64,
    key: [u64; 3],
    t: Option<T>,
}

impl<T: Copy> Default for TunnelMemo<T> {
    fn default() -> Self {
        Self::new(TUNNEL_MEMO_SMALL)
    }
}

impl<T: Copy> TunnelMemo<T> {
    /// A memory of `entries` entries (rounded up to a power of two, at
    /// least one set of two).
    pub fn new(entries: usize) -> Self {
        let n = (entries / 2).max(1).next_power_of_two();
        let empty = Remembered {
            epoch: 0,
            key: [0; 3],
            t: None,
        };
        TunnelMemo {
            sets: vec![[empty; 2]; n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// The set `key` is remembered in.
    #[inline(always)]
    fn slot(&self, key: &[u64; 3]) -> usize {
        let x = key[0] ^ key[1].rotate_left(21) ^ key[2].rotate_left(42);
        super::flow::fold_mul(x) as usize & self.mask
    }

    /// What the tunnel part `find` finds for the tunnel `key` of a frame
    /// ([`Arrival`]'s key) on `epoch`: remembered, or found and remembered
    /// (the newest of its set; the set's older entry goes).
    #[inline(always)]
    pub(super) fn recall(
        &mut self,
        epoch: u64,
        key: [u64; 3],
        find: impl FnOnce() -> Option<T>,
    ) -> Option<T> {
        let at = self.slot(&key);
        let Some(set) = self.sets.get_mut(at) else {
            return find();
        };
        // Word by word: the key was just stored as three words, and the
        // wider loads of an array comparison stall on store forwarding.
        for e in set.iter() {
            if e.epoch == epoch && e.key[0] == key[0] && e.key[1] == key[1] && e.key[2] == key[2] {
                return e.t;
            }
        }
        let t = find();
        set[1] = set[0];
        set[0] = Remembered { epoch, key, t };
        t
    }
}

/// A frame from the underlay to this node, its outer headers checked as the
/// whole pipeline checks them ([`from_underlay`]; a 20-byte outer IPv4
/// header) and its inner frame's MACs unicast: what the ways
/// ([`snat_way`], [`decap_way`]) read of it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Arrival<'a> {
    /// How it carries its network (never flat). Part of its tunnel's key: a
    /// VNI, a GRE key and a VLAN ID of the same value name different
    /// networks.
    pub(super) carrier: NetworkType,
    /// The key of its tunnel in a [`TunnelMemo`]: the source VTEP and the
    /// segment's word as sent (a tag: the VLAN ID), the inner frame's first
    /// 14 bytes (MACs and ethertype) and the carrier. Loaded as words
    /// straight from the frame (a key assembled byte by byte and read back
    /// as words stalls on store forwarding), in each carrier's own branch.
    pub(super) key: [u64; 3],
    /// The inner frame's destination and source MACs.
    pub(super) macs: &'a [u8; 12],
    /// The inner frame's ethertype.
    pub(super) ethertype: u16,
    /// The rest of the inner frame, from its layer 3 header on.
    pub(super) l3: &'a [u8],
}

impl Arrival<'_> {
    pub(super) fn dst(&self) -> MacAddr {
        MacAddr(mac_at(self.macs, ethernet::field::DST.start))
    }

    pub(super) fn src(&self) -> MacAddr {
        MacAddr(mac_at(self.macs, ethernet::field::SRC.start))
    }

    /// Its source VTEP is a known host's (no VTEP for a tag).
    pub(super) fn sent_by_known_vtep(&self, node: &NodeTables) -> bool {
        let vtep = Ipv4Addr::from((self.key[0] as u32).swap_bytes());
        self.carrier == NetworkType::Vlan || node.by_vtep.contains_key(&vtep)
    }

    /// The network its segment names (read back from the key, whose words
    /// were loaded little-endian).
    pub(super) fn network(&self, node: &NodeTables) -> Option<u32> {
        let word = ((self.key[0] >> 32) as u32).swap_bytes();
        match self.carrier {
            NetworkType::Vxlan => node.by_vni.get(&(word >> 8)),
            NetworkType::Gre => node.by_gre_key.get(&word),
            NetworkType::Vlan => node.by_vlan.get(&(self.key[0] as u32)),
            NetworkType::Flat => None,
        }
        .copied()
    }
}

/// Frame `b` from the underlay as the ways read it ([`Arrival`]): a VXLAN or
/// GRE frame to this VTEP (a 20-byte outer IPv4 header), or a VLAN-tagged
/// frame, with a unicast inner source and destination. `None` for any other
/// frame. Its outer headers are read by the whole pipeline's parser
/// ([`tunnel::underlay_plain`]: [`tunnel::underlay`] without outer IPv4
/// options); the source VTEP is checked by the ways
/// ([`Arrival::sent_by_known_vtep`], remembered with the tunnel).
#[inline(always)]
pub(super) fn arrival<'a>(snap: &Snapshot, b: &'a [u8]) -> Option<Arrival<'a>> {
    let (eth, _) = b.split_first_chunk::<{ ethernet::HEADER_LEN }>()?;
    if eth[ethernet::field::SRC.start] & 1 != 0 {
        return None;
    }
    match tunnel::underlay_plain(b, &snap.node.vtep, |_| true)? {
        Underlay::Tunnel(t) => tunnelled(t),
        // The inner frame is the MACs and what follows the tag: its
        // ethertype and layer 3 are read after the tag.
        Underlay::Tagged(tag) => {
            let macs = tag.macs;
            if macs[ethernet::field::DST.start] & 1 != 0 {
                return None;
            }
            let vid = u32::from(tag.vid);
            let ethertype = tag.ethertype;
            Some(Arrival {
                carrier: NetworkType::Vlan,
                key: [
                    vid as u64,
                    word8(macs, 0),
                    word4(macs, 8) | (ethertype as u64) << 32 | (NetworkType::Vlan as u64) << 48,
                ],
                macs,
                ethertype,
                l3: tag.l3,
            })
        }
        _ => None,
    }
}

/// [`arrival`] of a VXLAN or GRE frame (a 20-byte outer IPv4 header): its
/// inner frame, with unicast MACs.
#[inline(always)]
fn tunnelled(t: Tunnel<'_>) -> Option<Arrival<'_>> {
    let carrier = match t.encap {
        Encap::Vxlan => NetworkType::Vxlan,
        Encap::Gre => NetworkType::Gre,
    };
    let eth = t.inner_header;
    let (macs, _) = eth.split_first_chunk::<12>()?;
    if macs[ethernet::field::DST.start] & 1 != 0 || macs[ethernet::field::SRC.start] & 1 != 0 {
        return None;
    }
    Some(Arrival {
        carrier,
        // Inner bytes 8..14 (source MAC end, ethertype): the word at 6
        // without its first two bytes.
        key: [
            word4(t.outer.fixed(), ipv4::field::SRC_ADDR.start)
                | (u32::from_le_bytes(t.segment_word) as u64) << 32,
            word8(eth, 0),
            word8(eth, 6) >> 16 | (carrier as u64) << 48,
        ],
        macs,
        ethertype: be16(eth, ethernet::field::ETHERTYPE.start),
        l3: t.inner.get(ethernet::HEADER_LEN..)?,
    })
}

/// The 4 bytes at `at` of `b` as a little-endian word (0 past its end).
#[inline(always)]
fn word4(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 4)
        .and_then(|x| x.try_into().ok())
        .map_or(0, u32::from_le_bytes) as u64
}

/// The 8 bytes at `at` of `b` as a little-endian word (0 past its end).
#[inline(always)]
fn word8(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|x| x.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;
    use crate::wire::proto;

    /// An IPv4/UDP frame from `src` to `dst` (MACs), as cn2 sends it to
    /// cn1 ([`testkit::model`]) on segment `seg` of `carrier`.
    fn sent_by_cn2(carrier: NetworkType, seg: u32, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut inner = vec![0u8; 60];
        ethernet::write(&mut inner, &dst, &src, ethernet::ETHERTYPE_IPV4);
        ipv4::write(
            &mut inner[ethernet::HEADER_LEN..],
            46,
            64,
            proto::UDP,
            [10, 1, 0, 20],
            [10, 1, 0, 10],
        );
        let from = (testkit::CN2_UL_MAC, testkit::VTEP2);
        let to = (testkit::UL_MAC, testkit::VTEP1);
        testkit::segment_frame(carrier, &inner, seg, from, to)
    }

    /// What `m` recalls for `key`, finding `t` (and noting it in `found`)
    /// when it does not remember it.
    fn recall<T: Copy>(
        m: &mut TunnelMemo<T>,
        key: [u64; 3],
        t: T,
        found: &mut Vec<T>,
    ) -> Option<T> {
        m.recall(7, key, || {
            found.push(t);
            Some(t)
        })
    }

    /// Tunnels that differ only in their carrier have different keys: a
    /// VNI, a GRE key and a VLAN ID of the same value name different
    /// networks.
    #[test]
    fn the_same_segment_on_another_carrier_is_another_tunnel() {
        let snap = testkit::snapshot(&testkit::model());
        let mut m: TunnelMemo<NetworkType> = TunnelMemo::new(TUNNEL_MEMO);
        let mut found = Vec::new();
        for _ in 0..2 {
            for c in [NetworkType::Vxlan, NetworkType::Gre, NetworkType::Vlan] {
                let f = sent_by_cn2(c, 101, testkit::A_MAC, testkit::C_MAC);
                let a = arrival(&snap, &f).expect("a frame the ways read");
                assert_eq!(a.carrier, c);
                assert_eq!(recall(&mut m, a.key, c, &mut found), Some(c));
            }
        }
        assert_eq!(found.len(), 3);
    }

    /// A worker's memory keeps apart the tunnels of a node's VMs: 128 that
    /// differ only in the last byte of the inner destination MAC are each
    /// found once, then remembered.
    #[test]
    fn tunnels_that_differ_in_one_mac_byte_are_all_remembered() {
        let snap = testkit::snapshot(&testkit::model());
        let mut m: TunnelMemo<u8> = TunnelMemo::new(TUNNEL_MEMO);
        let mut found = Vec::new();
        for _ in 0..3 {
            for i in 0..128u8 {
                let dst = [0xfa, 0x16, 0x3e, 0, 1, i];
                let f = sent_by_cn2(NetworkType::Vxlan, 101, dst, testkit::DVR2);
                let a = arrival(&snap, &f).expect("a frame the ways read");
                assert_eq!(recall(&mut m, a.key, i, &mut found), Some(i));
            }
        }
        assert_eq!(found.len(), 128);
    }

    /// A set keeps its two newest tunnels: a third one found takes the
    /// place of the older.
    #[test]
    fn a_set_keeps_its_two_newest_tunnels() {
        let mut m: TunnelMemo<u8> = TunnelMemo::new(2);
        let mut found = Vec::new();
        for i in [1u8, 2, 1, 2, 3, 2, 3, 1] {
            assert_eq!(recall(&mut m, [0, i as u64, 0], i, &mut found), Some(i));
        }
        // 1 and 2 found once each and remembered together; 3 replaced 1.
        assert_eq!(found, [1, 2, 3, 1]);
    }
}
