//! VXLAN (RFC 7348): flags (I: a valid VNI), the VNI; and the flow hash its
//! outer UDP source port carries.

use super::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, HEADER_LEN as ETH_LEN};
use super::ipv4::HEADER_LEN as IPV4_LEN;
use super::ipv6::HEADER_LEN as IPV6_LEN;
use super::{be16, be32, get32, proto, set32, Field};

pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI is valid.
pub const FLAG_VNI: u8 = 0x08;

pub mod field {
    use super::Field;
    pub const FLAGS: usize = 0;
    /// The VNI (3 bytes) and the reserved byte after it.
    pub const VNI_WORD: Field = 4..8;
}

/// A VXLAN header at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct VxlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// `None` if `buffer` is shorter than a header.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(VxlanHeader { buffer })
    }

    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The I flag is set.
    #[inline(always)]
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_VNI != 0
    }

    #[inline(always)]
    pub fn vni(&self) -> u32 {
        get32(self.buffer.as_ref(), field::VNI_WORD) >> 8
    }

    /// The VNI's word as sent (VNI and reserved byte).
    #[inline(always)]
    pub fn vni_word(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::VNI_WORD]
            .try_into()
            .expect("4 bytes")
    }
}

/// Writes a VXLAN header with VNI `vni` (I flag set) at the start of `b`.
#[inline(always)]
pub fn write(b: &mut [u8], vni: u32) {
    set32(b, 0..4, (FLAG_VNI as u32) << 24);
    set32(b, field::VNI_WORD, vni << 8);
}

/// A hash of an inner frame's flow (addresses, protocol, ports when present),
/// for the outer UDP source port of VXLAN (ECMP entropy): the same flow always
/// gets the same port.
#[inline(always)]
pub fn flow_hash(inner: &[u8]) -> u32 {
    if inner.len() < ETH_LEN {
        return 0;
    }
    let et = be16(inner, 12);
    if et == ETHERTYPE_IPV4 {
        if let Some(ip) = inner[ETH_LEN..].first_chunk::<IPV4_LEN>() {
            // The common case, with a short dependency chain: both addresses
            // in one word, the ports and protocol in another, one final mix.
            let addrs = u64::from_le_bytes(ip[12..20].try_into().expect("8 bytes"));
            let proto = ip[9];
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            let b = &inner[ETH_LEN..];
            let ports = match b.get(ihl..ihl + 4) {
                Some(p) if matches!(proto, proto::TCP | proto::UDP) => {
                    u32::from_le_bytes(p.try_into().expect("4 bytes"))
                }
                _ => 0,
            };
            return final_mix(addrs ^ ((ports as u64) << 8 | proto as u64).rotate_left(40));
        }
    }
    flow_hash_other(inner, et)
}

/// The last step of [`flow_hash`]: every input bit reaches the low bits.
#[inline(always)]
fn final_mix(x: u64) -> u32 {
    let h = (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (h ^ (h >> 32)) as u32
}

/// [`flow_hash`] of anything but an IPv4 packet.
fn flow_hash_other(inner: &[u8], et: u16) -> u32 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut mix = |v: u64| h = (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    match et {
        ETHERTYPE_IPV6 if inner.len() >= ETH_LEN + IPV6_LEN => {
            let ip = &inner[ETH_LEN..];
            for w in (8..40).step_by(8) {
                mix(u64::from_be_bytes(
                    ip[w..w + 8].try_into().expect("8 bytes"),
                ));
            }
            let next = ip[6];
            mix(next as u64);
            if matches!(next, proto::TCP | proto::UDP) && ip.len() >= IPV6_LEN + 4 {
                mix(be32(ip, IPV6_LEN) as u64);
            }
        }
        _ => {
            mix(u64::from_le_bytes(inner[0..8].try_into().expect("8 bytes")));
            mix(u64::from_le_bytes(
                inner[6..14].try_into().expect("8 bytes"),
            ));
        }
    }
    final_mix(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ipv4, put16};

    #[test]
    fn reads_the_vni_and_the_flag() {
        let mut b = [0u8; 8];
        write(&mut b, 0x12_3456);
        let v = VxlanHeader::new_checked(&b[..]).unwrap();
        assert!(v.vni_valid());
        assert_eq!((v.vni(), v.vni_word()), (0x12_3456, [0x12, 0x34, 0x56, 0]));
        assert!(VxlanHeader::new_checked(&b[..7]).is_none());
        b[0] = 0;
        assert!(!VxlanHeader::new_checked(&b[..]).unwrap().vni_valid());
    }

    #[test]
    fn flow_hash_spreads_flows_over_the_vxlan_port_bits() {
        let frame = |src: [u8; 4], dst: [u8; 4], sport: u16, proto: u8| {
            let mut b = vec![0u8; 60];
            put16(&mut b, 12, ETHERTYPE_IPV4);
            ipv4::write(&mut b[ETH_LEN..], 46, 64, proto, src, dst);
            put16(&mut b, ETH_LEN + IPV4_LEN, sport);
            put16(&mut b, ETH_LEN + IPV4_LEN + 2, 9);
            b
        };
        let bits = |f: &[u8]| flow_hash(f) & 0x3fff;
        let by_port: std::collections::HashSet<u32> = (0..4096u16)
            .map(|p| bits(&frame([10, 0, 0, 1], [10, 0, 1, 1], 1024 + p, proto::UDP)))
            .collect();
        let by_dst: std::collections::HashSet<u32> = (0..4096u16)
            .map(|i| {
                let [a, b] = i.to_be_bytes();
                bits(&frame([10, 0, 0, 1], [10, 9, a, b], 1024, proto::TCP))
            })
            .collect();
        let by_src: std::collections::HashSet<u32> = (0..4096u16)
            .map(|i| {
                let [a, b] = i.to_be_bytes();
                bits(&frame([a, b, 0, 1], [10, 0, 1, 1], 1024, proto::UDP))
            })
            .collect();
        // 4096 flows in 16384 values: about 3,600 distinct if uniform.
        for (what, n) in [("port", by_port), ("dst", by_dst), ("src", by_src)] {
            assert!(n.len() > 3400, "{what}: {} distinct", n.len());
        }
        // The protocol and the ports count; other protocols hash no ports.
        let f = frame([10, 0, 0, 1], [10, 0, 1, 1], 1024, proto::UDP);
        assert_ne!(
            flow_hash(&f),
            flow_hash(&frame([10, 0, 0, 1], [10, 0, 1, 1], 1024, proto::TCP))
        );
        let icmp = |p| frame([10, 0, 0, 1], [10, 0, 1, 1], p, 1);
        assert_eq!(flow_hash(&icmp(1)), flow_hash(&icmp(2)));
    }
}
