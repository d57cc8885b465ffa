//! TCP (RFC 9293): the fields the router reads and NAT rewrites.

use super::{get16, get32, set16, Field};

/// The header without options.
pub const HEADER_LEN: usize = 20;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

pub mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ: Field = 4..8;
    pub const ACK: Field = 8..12;
    pub const FLAGS: usize = 13;
    pub const CHECKSUM: Field = 16..18;
}

/// A TCP header (its first 20 bytes) at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct TcpHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpHeader<T> {
    /// `None` if `buffer` is shorter than 20 bytes.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(TcpHeader { buffer })
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
    pub fn seq(&self) -> u32 {
        get32(self.buffer.as_ref(), field::SEQ)
    }

    #[inline(always)]
    pub fn ack(&self) -> u32 {
        get32(self.buffer.as_ref(), field::ACK)
    }

    /// The flags byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), field::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpHeader<T> {
    #[inline(always)]
    pub fn set_src_port(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    #[inline(always)]
    pub fn set_dst_port(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    #[inline(always)]
    pub fn set_checksum(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_fields() {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&[0, 80, 1, 187]);
        b[13] = SYN | ACK;
        let mut t = TcpHeader::new_checked(&mut b[..]).unwrap();
        t.set_checksum(7);
        assert_eq!((t.src_port(), t.dst_port(), t.flags()), (80, 443, 0x12));
        assert_eq!(t.checksum(), 7);
        assert!(TcpHeader::new_checked(&b[..19]).is_none());
    }
}
