//! ICMPv6 (RFC 4443): types and codes by name, and the header view.
//! Neighbour discovery's messages are in [`super::nd`].

use super::{get16, get32, set16, Field};

/// Type, code, checksum and the 4 bytes after them.
pub const HEADER_LEN: usize = 8;

/// ICMPv6 message types. Errors are below 128, informational messages from
/// 128 on.
pub mod types {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAMETER_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
}

/// Codes of [`types::DEST_UNREACHABLE`].
pub mod unreachable {
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const ADDRESS: u8 = 3;
    pub const PORT: u8 = 4;
}

/// Codes of [`types::TIME_EXCEEDED`].
pub mod time_exceeded {
    pub const HOP_LIMIT: u8 = 0;
    pub const REASSEMBLY: u8 = 1;
}

/// An error message (type below 128), about which no error is sent.
#[inline(always)]
pub fn is_error(t: u8) -> bool {
    t < 128
}

/// Router and neighbour discovery, and redirect (133 to 137): the messages
/// a node handles on its link, never routed.
#[inline(always)]
pub fn is_ndp(t: u8) -> bool {
    matches!(t, types::ROUTER_SOLICIT..=types::REDIRECT)
}

pub mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// Packet too big: the MTU; parameter problem: the pointer.
    pub const PARAM: Field = 4..8;
    pub const ECHO_ID: Field = 4..6;
    pub const ECHO_SEQ: Field = 6..8;
}

/// An ICMPv6 message at the start of a buffer. Only type, code and checksum
/// are checked for (4 bytes): a neighbour discovery message checks its own
/// length ([`super::nd::NdMessage`]).
#[derive(Debug, Clone, Copy)]
pub struct Icmp6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmp6Packet<T> {
    /// `None` if `buffer` is shorter than 4 bytes (type, code, checksum).
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= 4).then_some(Icmp6Packet { buffer })
    }

    #[inline(always)]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline(always)]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        get16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The word after the checksum (an MTU or a pointer); `None` when the
    /// message is shorter than 8 bytes.
    #[inline(always)]
    pub fn param(&self) -> Option<u32> {
        let b = self.buffer.as_ref();
        (b.len() >= HEADER_LEN).then(|| get32(b, field::PARAM))
    }

    #[inline(always)]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmp6Packet<T> {
    #[inline(always)]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    #[inline(always)]
    pub fn set_checksum(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
}

/// The ICMPv6 checksum over message `icmp` carried by the IPv6 header at
/// the start of `ip` (its addresses): 0 when the message's own checksum is
/// right; the value to write when that field is 0.
pub fn checksum_of(ip: &[u8], icmp: &[u8]) -> u16 {
    use super::checksum::{csum_add, csum_fold, pseudo6};
    let sum = pseudo6(
        &ip[super::ipv6::field::SRC_ADDR],
        &ip[super::ipv6::field::DST_ADDR],
        icmp.len() as u32,
        super::proto::ICMPV6,
    );
    csum_fold(csum_add(sum, icmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_its_types_apart_from_icmpv4s() {
        // The same number, two meanings: the reason for the names.
        assert_eq!(
            types::TIME_EXCEEDED,
            super::super::icmp4::types::DEST_UNREACHABLE
        );
        assert!(is_error(types::PACKET_TOO_BIG) && !is_error(types::ECHO_REQUEST));
        assert!(is_ndp(135) && is_ndp(133) && is_ndp(137) && !is_ndp(132) && !is_ndp(138));
        let m = Icmp6Packet::new_checked(&[2, 0, 1, 2, 0, 0, 5, 0xdc][..]).unwrap();
        assert_eq!((m.msg_type(), m.code(), m.checksum()), (2, 0, 0x0102));
        assert_eq!(m.param(), Some(1500));
        let m = Icmp6Packet::new_checked(&[128, 0, 0, 0][..]).unwrap();
        assert_eq!(m.param(), None);
        assert!(Icmp6Packet::new_checked(&[0u8; 3][..]).is_none());
    }
}
