//! UDP (RFC 768): ports, length, checksum (0: none).

use super::{get16, set16, Field};

pub const HEADER_LEN: usize = 8;
/// The IANA port of VXLAN.
pub const VXLAN_PORT: u16 = 4789;

pub mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// A UDP header at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct UdpHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpHeader<T> {
    /// `None` if `buffer` is shorter than a header.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(UdpHeader { buffer })
    }

    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        get16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        get16(self.buffer.as_ref(), field::DST_PORT)
    }

    #[inline(always)]
    pub fn len(&self) -> u16 {
        get16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the length field is 0 (never valid: the header counts).
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpHeader<T> {
    #[inline(always)]
    pub fn set_src_port(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    #[inline(always)]
    pub fn set_dst_port(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    #[inline(always)]
    pub fn set_len(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::LENGTH, v);
    }

    #[inline(always)]
    pub fn set_checksum(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
}

/// Writes a UDP header (checksum 0, for [`finish_checksum`]) at the start
/// of `b`.
pub fn write(b: &mut [u8], src_port: u16, dst_port: u16, len: u16) {
    set16(b, field::SRC_PORT, src_port);
    set16(b, field::DST_PORT, dst_port);
    set16(b, field::LENGTH, len);
    set16(b, field::CHECKSUM, 0);
}

/// Sets the checksum of datagram `u` (header with a zero checksum, and
/// payload) from `pseudo`, its pseudo-header's sum
/// ([`super::checksum::pseudo4`] or [`super::checksum::pseudo6`]); a sum of
/// 0 goes as 0xffff (0 means none).
pub fn finish_checksum(u: &mut [u8], pseudo: u32) {
    let c = match super::checksum::csum_fold(super::checksum::csum_add(pseudo, u)) {
        0 => 0xffff,
        c => c,
    };
    set16(u, field::CHECKSUM, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_its_fields() {
        let mut b = [0u8; 10];
        let mut u = UdpHeader::new_checked(&mut b[..]).unwrap();
        u.set_src_port(1234);
        u.set_dst_port(VXLAN_PORT);
        u.set_len(10);
        u.set_checksum(0xbeef);
        assert_eq!(b, [4, 210, 0x12, 0xb5, 0, 10, 0xbe, 0xef, 0, 0]);
        let u = UdpHeader::new_checked(&b[..]).unwrap();
        assert_eq!(
            (u.src_port(), u.dst_port(), u.len()),
            (1234, VXLAN_PORT, 10)
        );
        assert_eq!((u.checksum(), u.payload().len()), (0xbeef, 2));
        assert!(UdpHeader::new_checked(&b[..7]).is_none());
    }
}
