//! An 802.1Q tag (after the MACs, in place of the ethertype): the tag
//! control information, then the ethertype of what it tags.

use super::{get16, Field};

pub const HEADER_LEN: usize = 4;
/// The VLAN ID bits of the tag control information.
pub const VID_MASK: u16 = 0x0fff;

pub mod field {
    use super::Field;
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
}

/// A VLAN tag at the start of a buffer (the bytes after the MACs and the
/// 0x8100 ethertype).
#[derive(Debug, Clone, Copy)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// `None` if `buffer` is shorter than a tag.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(VlanTag { buffer })
    }

    #[inline(always)]
    pub fn vid(&self) -> u16 {
        get16(self.buffer.as_ref(), field::TCI) & VID_MASK
    }

    /// The ethertype of the tagged frame.
    #[inline(always)]
    pub fn ethertype(&self) -> u16 {
        get16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_vid_without_the_priority() {
        let t = VlanTag::new_checked(&[0xe0, 0x64, 0x08, 0x00, 9][..]).unwrap();
        assert_eq!(
            (t.vid(), t.ethertype(), t.payload()),
            (100, 0x0800, &[9][..])
        );
        assert!(VlanTag::new_checked(&[0u8; 3][..]).is_none());
    }
}
