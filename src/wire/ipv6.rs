//! IPv6 (RFC 8200): the fixed header view and its writer.

use std::net::Ipv6Addr;

use super::{get16, get_ipv6, set16, set32, Field};

pub const HEADER_LEN: usize = 40;

pub mod field {
    use super::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// An IPv6 packet at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// A view of the IPv6 packet at the start of `buffer`: version 6 and a
    /// payload length that `buffer` holds (what is beyond is padding; see
    /// [`Ipv6Packet::payload`]). `None` for anything else: what the pipeline
    /// drops as [`crate::stats::DropReason::MalformedIpv6`].
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        let b = buffer.as_ref();
        let h = b.first_chunk::<HEADER_LEN>()?;
        let plen = usize::from(get16(h, field::PAYLOAD_LEN));
        (h[0] >> 4 == 6 && HEADER_LEN + plen <= b.len()).then_some(Ipv6Packet { buffer })
    }

    #[inline(always)]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    pub fn payload_len(&self) -> u16 {
        get16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    #[inline(always)]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    #[inline(always)]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline(always)]
    pub fn src_addr(&self) -> Ipv6Addr {
        get_ipv6(self.buffer.as_ref(), field::SRC_ADDR)
    }

    #[inline(always)]
    pub fn dst_addr(&self) -> Ipv6Addr {
        get_ipv6(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The source address's bytes (for a pseudo-header sum).
    #[inline(always)]
    pub fn src_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SRC_ADDR]
    }

    /// The destination address's bytes.
    #[inline(always)]
    pub fn dst_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DST_ADDR]
    }

    /// The payload: its payload length of bytes after the header.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline(always)]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }
}

/// Writes a 40-byte IPv6 header at the start of `b`.
pub fn write(b: &mut [u8], payload_len: u16, next: u8, hop: u8, src: &[u8], dst: &[u8]) {
    set32(b, field::VER_TC_FLOW, 6 << 28);
    set16(b, field::PAYLOAD_LEN, payload_len);
    b[field::NEXT_HEADER] = next;
    b[field::HOP_LIMIT] = hop;
    b[field::SRC_ADDR].copy_from_slice(src);
    b[field::DST_ADDR].copy_from_slice(dst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_version_and_the_payload_length() {
        let mut b = [0u8; 52];
        let (s, d) = ([0xfe; 16], [0xff; 16]);
        write(&mut b, 8, 58, 255, &s, &d);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.payload_len(), p.next_header(), p.hop_limit()),
            (8, 58, 255)
        );
        assert_eq!(p.payload().len(), 8, "padding left out");
        assert_eq!(p.src_addr(), Ipv6Addr::from(s));
        assert_eq!(p.dst_bytes(), &d);
        assert!(Ipv6Packet::new_checked(&b[..47]).is_none());
        assert!(Ipv6Packet::new_checked(&b[..39]).is_none());
        b[0] = 0x40;
        assert!(Ipv6Packet::new_checked(&b[..]).is_none());
    }
}
