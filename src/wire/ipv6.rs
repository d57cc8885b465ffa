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

/// Extension headers (next header values) the router walks past.
pub mod ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const DEST_OPTIONS: u8 = 60;
}

/// The upper-layer protocol of the IPv6 packet `ip` and its bytes (within
/// the payload length, or to the end of `ip` if that is shorter), past
/// hop-by-hop, routing, destination options and fragment headers (at most
/// 8). `None` for another version, a packet too short for its headers, a
/// non-first fragment or a longer chain.
pub fn upper_layer(ip: &[u8]) -> Option<(u8, &[u8])> {
    let h = ip.first_chunk::<HEADER_LEN>()?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let rest = &ip[HEADER_LEN..];
    let mut p = rest
        .get(..usize::from(get16(h, field::PAYLOAD_LEN)))
        .unwrap_or(rest);
    let mut nh = h[field::NEXT_HEADER];
    for _ in 0..8 {
        match nh {
            ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTIONS => {
                let len = (usize::from(*p.get(1)?) + 1) * 8;
                nh = p[0];
                p = p.get(len..)?;
            }
            ext::FRAGMENT => {
                // Offset 0 (the first fragment); the M flag may be set.
                let f = p.first_chunk::<8>()?;
                if get16(f, 2..4) & 0xfff8 != 0 {
                    return None;
                }
                nh = f[0];
                p = &p[8..];
            }
            _ => return Some((nh, p)),
        }
    }
    None
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

    #[test]
    fn upper_layer_walks_the_extension_headers() {
        let (s, d) = ([0xfe; 16], [0xff; 16]);
        // Hop-by-hop (8 bytes), fragment (first), then UDP (4 bytes).
        let mut b = vec![0u8; 40];
        write(&mut b, 20, ext::HOP_BY_HOP, 64, &s, &d);
        b.extend_from_slice(&[ext::FRAGMENT, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 7]);
        b.extend_from_slice(&[1, 2, 3, 4, 0xee]);
        assert_eq!(upper_layer(&b), Some((17, &[1, 2, 3, 4][..])));
        // A later fragment, a truncated chain, another version.
        let mut later = b.clone();
        later[51] = 8;
        assert_eq!(upper_layer(&later), None);
        assert_eq!(upper_layer(&b[..50]), None);
        let mut v4 = b.clone();
        v4[0] = 0x45;
        assert_eq!(upper_layer(&v4), None);
        // A payload length past the bytes: to the end.
        let mut long = b.clone();
        long[5] = 200;
        assert_eq!(upper_layer(&long), Some((17, &[1, 2, 3, 4, 0xee][..])));
        // Nine extension headers: too long a chain.
        let mut chain = vec![0u8; 40];
        write(&mut chain, 72, ext::DEST_OPTIONS, 64, &s, &d);
        for _ in 0..9 {
            chain.extend_from_slice(&[ext::DEST_OPTIONS, 0, 0, 0, 0, 0, 0, 0]);
        }
        assert_eq!(upper_layer(&chain), None);
    }
}
