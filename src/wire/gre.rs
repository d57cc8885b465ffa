//! GRE (RFC 2784, with the key of RFC 2890) as the overlay uses it: the key
//! bit and nothing else set, version 0, carrying Ethernet (transparent
//! Ethernet bridging), the key naming the network.

use super::ethernet::ETHERTYPE_TEB;
use super::{get16, get32, set16, set32, Field};

/// Flags/version, protocol, key.
pub const HEADER_LEN: usize = 8;
/// The flags/version word with only the key bit.
pub const FLAGS_KEY: u16 = 0x2000;

pub mod field {
    use super::Field;
    pub const FLAGS_VERSION: Field = 0..2;
    pub const PROTOCOL: Field = 2..4;
    pub const KEY: Field = 4..8;
}

/// A GRE header with a key at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct GreHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GreHeader<T> {
    /// `None` if `buffer` is shorter than a header with a key.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(GreHeader { buffer })
    }

    #[inline(always)]
    pub fn flags_version(&self) -> u16 {
        get16(self.buffer.as_ref(), field::FLAGS_VERSION)
    }

    #[inline(always)]
    pub fn protocol(&self) -> u16 {
        get16(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// The overlay's kind of GRE: only the key bit, version 0, Ethernet
    /// inside.
    #[inline(always)]
    pub fn is_keyed_teb(&self) -> bool {
        self.flags_version() == FLAGS_KEY && self.protocol() == ETHERTYPE_TEB
    }

    #[inline(always)]
    pub fn key(&self) -> u32 {
        get32(self.buffer.as_ref(), field::KEY)
    }

    /// The key's word as sent.
    #[inline(always)]
    pub fn key_word(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::KEY]
            .try_into()
            .expect("4 bytes")
    }
}

/// Writes a GRE header with key `key`, carrying Ethernet, at the start of `b`.
#[inline(always)]
pub fn write(b: &mut [u8], key: u32) {
    set16(b, field::FLAGS_VERSION, FLAGS_KEY);
    set16(b, field::PROTOCOL, ETHERTYPE_TEB);
    set32(b, field::KEY, key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_write_wrote() {
        let mut b = [0u8; 8];
        write(&mut b, 0xdead_beef);
        let g = GreHeader::new_checked(&b[..]).unwrap();
        assert!(g.is_keyed_teb());
        assert_eq!(
            (g.key(), g.key_word()),
            (0xdead_beef, [0xde, 0xad, 0xbe, 0xef])
        );
        b[0] = 0xa0;
        assert!(!GreHeader::new_checked(&b[..]).unwrap().is_keyed_teb());
        assert!(GreHeader::new_checked(&b[..7]).is_none());
    }
}
