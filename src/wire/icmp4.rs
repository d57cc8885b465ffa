//! ICMP for IPv4 (RFC 792): types and codes by name, and the header view.
//!
//! ```text
//! | type | code | checksum | rest: echo id and sequence; or unused and,
//! |                        | for fragmentation needed, the next-hop MTU |
//! | an error's quote: the offending IP header and 8 bytes of its data  |
//! ```

use super::{get16, set16, Field};

/// Type, code, checksum and the 4 bytes after them.
pub const HEADER_LEN: usize = 8;

/// ICMPv4 message types.
pub mod types {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
    pub const TIMESTAMP: u8 = 13;
    pub const TIMESTAMP_REPLY: u8 = 14;
    pub const INFO_REQUEST: u8 = 15;
    pub const INFO_REPLY: u8 = 16;
    pub const ADDRESS_MASK_REQUEST: u8 = 17;
    pub const ADDRESS_MASK_REPLY: u8 = 18;
}

/// Codes of [`types::DEST_UNREACHABLE`].
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set (RFC 1191: the next-hop MTU in the
    /// low 16 bits of the rest).
    pub const FRAG_NEEDED: u8 = 4;
}

/// Codes of [`types::TIME_EXCEEDED`].
pub mod time_exceeded {
    pub const TTL: u8 = 0;
    pub const REASSEMBLY: u8 = 1;
}

/// Destination unreachable, time exceeded, parameter problem: the errors
/// that quote a packet (and that NAT translates inside).
#[inline(always)]
pub fn is_error(t: u8) -> bool {
    matches!(
        t,
        types::DEST_UNREACHABLE | types::TIME_EXCEEDED | types::PARAMETER_PROBLEM
    )
}

/// The informational messages (echo, timestamp, information, address mask
/// and their replies): an ICMP error may be sent about these and no other
/// ICMP message (RFC 1812, 4.3.2.7).
#[inline(always)]
pub fn is_query(t: u8) -> bool {
    matches!(t, types::ECHO_REPLY | types::ECHO_REQUEST | 13..=18)
}

pub mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// Echo: identifier and sequence number.
    pub const ECHO_ID: Field = 4..6;
    pub const ECHO_SEQ: Field = 6..8;
    /// The 4 bytes after the checksum (an error's unused word and MTU).
    pub const REST: Field = 4..8;
    /// Where an error's quote starts.
    pub const QUOTE: usize = 8;
}

/// An ICMPv4 message at the start of a buffer (at least its 8-byte header).
#[derive(Debug, Clone, Copy)]
pub struct Icmp4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmp4Packet<T> {
    /// `None` if `buffer` is shorter than 8 bytes.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(Icmp4Packet { buffer })
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

    #[inline(always)]
    pub fn echo_id(&self) -> u16 {
        get16(self.buffer.as_ref(), field::ECHO_ID)
    }

    /// An error's quote (the offending IP header and what follows).
    #[inline(always)]
    pub fn quote(&self) -> &[u8] {
        &self.buffer.as_ref()[field::QUOTE..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmp4Packet<T> {
    #[inline(always)]
    pub fn set_checksum(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    #[inline(always)]
    pub fn set_echo_id(&mut self, v: u16) {
        set16(self.buffer.as_mut(), field::ECHO_ID, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_errors_and_the_queries() {
        for t in 0..=255u8 {
            assert_eq!(is_error(t), matches!(t, 3 | 11 | 12), "{t}");
            assert_eq!(
                is_query(t),
                matches!(t, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18),
                "{t}"
            );
        }
        let m = Icmp4Packet::new_checked(&[8, 0, 0xab, 0xcd, 0, 7, 0, 1, 0x45][..]).unwrap();
        assert_eq!((m.msg_type(), m.code()), (types::ECHO_REQUEST, 0));
        assert_eq!(
            (m.checksum(), m.echo_id(), m.quote()),
            (0xabcd, 7, &[0x45][..])
        );
        assert!(Icmp4Packet::new_checked(&[0u8; 7][..]).is_none());
    }
}
