//! Ethernet II: destination and source MAC, ethertype.

use super::{get16, get_mac, set16, Field};

pub const HEADER_LEN: usize = 14;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// GRE protocol of a transported Ethernet frame (transparent Ethernet bridging).
pub const ETHERTYPE_TEB: u16 = 0x6558;

pub mod field {
    use super::Field;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    /// Both MACs, the part a router rewrites.
    pub const MACS: Field = 0..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// An Ethernet frame at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// `None` if `buffer` is shorter than a header.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(EthernetFrame { buffer })
    }

    #[inline(always)]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    pub fn dst(&self) -> [u8; 6] {
        get_mac(self.buffer.as_ref(), field::DST)
    }

    #[inline(always)]
    pub fn src(&self) -> [u8; 6] {
        get_mac(self.buffer.as_ref(), field::SRC)
    }

    /// The destination is a group (multicast or broadcast) address.
    #[inline(always)]
    pub fn dst_is_group(&self) -> bool {
        self.buffer.as_ref()[field::DST.start] & 1 != 0
    }

    /// The source is a group address (never a valid sender).
    #[inline(always)]
    pub fn src_is_group(&self) -> bool {
        self.buffer.as_ref()[field::SRC.start] & 1 != 0
    }

    #[inline(always)]
    pub fn ethertype(&self) -> u16 {
        get16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Both MACs, destination first.
    #[inline(always)]
    pub fn macs(&self) -> &[u8; 12] {
        self.buffer.as_ref()[field::MACS]
            .try_into()
            .expect("12 bytes")
    }

    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline(always)]
    pub fn set_dst(&mut self, mac: &[u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(mac);
    }

    #[inline(always)]
    pub fn set_src(&mut self, mac: &[u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(mac);
    }

    #[inline(always)]
    pub fn set_ethertype(&mut self, et: u16) {
        set16(self.buffer.as_mut(), field::ETHERTYPE, et);
    }

    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// Writes an Ethernet header at the start of `b` (at least 14 bytes).
#[inline(always)]
pub fn write(b: &mut [u8], dst: &[u8; 6], src: &[u8; 6], ethertype: u16) {
    b[field::DST].copy_from_slice(dst);
    b[field::SRC].copy_from_slice(src);
    set16(b, field::ETHERTYPE, ethertype);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_write_wrote_and_refuses_a_runt() {
        let mut b = [0u8; 20];
        write(
            &mut b,
            &[1, 2, 3, 4, 5, 6],
            &[0xfa, 0, 0, 0, 0, 1],
            ETHERTYPE_IPV6,
        );
        let e = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(e.dst(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(e.src(), [0xfa, 0, 0, 0, 0, 1]);
        assert!(e.dst_is_group() && !e.src_is_group());
        assert_eq!(e.ethertype(), ETHERTYPE_IPV6);
        assert_eq!(e.payload().len(), 6);
        assert!(EthernetFrame::new_checked(&b[..13]).is_none());
        let mut e = EthernetFrame::new_checked(&mut b[..]).unwrap();
        e.set_src(&[2; 6]);
        e.set_ethertype(ETHERTYPE_ARP);
        assert_eq!(&b[6..14], &[2, 2, 2, 2, 2, 2, 8, 6]);
    }
}
