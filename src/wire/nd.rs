//! Neighbour discovery (RFC 4861): solicitations and advertisements (the
//! ICMPv6 message from its type on), their target and their options, and
//! the advertisement writer.
//!
//! ```text
//! | type | code | checksum | flags (advert: R S O) + reserved |
//! | target address (16 bytes)                                  |
//! | options: type, length in 8-byte units, data ...            |
//! ```

use std::net::Ipv6Addr;

use super::icmp6::types;
use super::{get32, get_ipv6, set16, set32, Field};

/// Header and target, without options.
pub const HEADER_LEN: usize = 24;
/// An advertisement with a target link-layer address option: what the
/// responder writes.
pub const ADVERT_LEN: usize = HEADER_LEN + 8;

/// Option types.
pub const OPT_SOURCE_LL: u8 = 1;
pub const OPT_TARGET_LL: u8 = 2;

/// Advertisement flags.
pub const FLAG_ROUTER: u32 = 1 << 31;
pub const FLAG_SOLICITED: u32 = 1 << 30;
pub const FLAG_OVERRIDE: u32 = 1 << 29;

pub mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const FLAGS: Field = 4..8;
    pub const TARGET: Field = 8..24;
    pub const OPTIONS: usize = 24;
}

/// A neighbour solicitation or advertisement (or any message of their
/// layout) at the start of a buffer: the ICMPv6 payload.
#[derive(Debug, Clone, Copy)]
pub struct NdMessage<T: AsRef<[u8]>> {
    buffer: T,
}

/// An option that does not fit or says it has length 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// A link-layer address option (or another option: its type and data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdOption<'a> {
    pub kind: u8,
    /// The option's bytes after type and length.
    pub data: &'a [u8],
}

impl NdOption<'_> {
    /// The MAC of a link-layer address option (its first 6 data bytes; an
    /// option is at least 8 bytes, so there are 6).
    #[inline(always)]
    pub fn mac(&self) -> [u8; 6] {
        self.data
            .first_chunk::<6>()
            .copied()
            .expect("an option holds 6 data bytes")
    }
}

impl<T: AsRef<[u8]>> NdMessage<T> {
    /// `None` if `buffer` is shorter than 24 bytes (header and target).
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(NdMessage { buffer })
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
    pub fn is_advert(&self) -> bool {
        self.msg_type() == types::NEIGHBOR_ADVERT
    }

    #[inline(always)]
    pub fn flags(&self) -> u32 {
        get32(self.buffer.as_ref(), field::FLAGS)
    }

    #[inline(always)]
    pub fn target(&self) -> Ipv6Addr {
        get_ipv6(self.buffer.as_ref(), field::TARGET)
    }

    /// The options in order; an option that does not fit (less than 8
    /// bytes left, a length of 0, or past the end) is `Err` and ends them.
    #[inline]
    pub fn options(&self) -> NdOptions<'_> {
        NdOptions {
            rest: &self.buffer.as_ref()[field::OPTIONS..],
        }
    }
}

/// The options of an [`NdMessage`].
#[derive(Debug, Clone)]
pub struct NdOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdOptions<'a> {
    type Item = Result<NdOption<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let len = match self.rest {
            [_, l, ..] if self.rest.len() >= 8 => usize::from(*l) * 8,
            _ => 0,
        };
        let Some((opt, rest)) = self.rest.split_at_checked(len).filter(|_| len != 0) else {
            self.rest = &[];
            return Some(Err(Malformed));
        };
        self.rest = rest;
        Some(Ok(NdOption {
            kind: opt[0],
            data: &opt[2..],
        }))
    }
}

/// Writes a neighbour advertisement for `target` at `mac` (flags
/// [`FLAG_ROUTER`], [`FLAG_SOLICITED`], [`FLAG_OVERRIDE`]) with a target
/// link-layer address option into the first [`ADVERT_LEN`] bytes of `b`,
/// checksum 0 (the caller sums it with the pseudo-header).
pub fn write_advert(b: &mut [u8], flags: u32, target: &[u8; 16], mac: &[u8; 6]) {
    b[field::TYPE] = types::NEIGHBOR_ADVERT;
    b[field::CODE] = 0;
    set16(b, field::CHECKSUM, 0);
    set32(b, field::FLAGS, flags);
    b[field::TARGET].copy_from_slice(target);
    b[HEADER_LEN] = OPT_TARGET_LL;
    b[HEADER_LEN + 1] = 1;
    b[HEADER_LEN + 2..ADVERT_LEN].copy_from_slice(mac);
}

/// The length of a whole frame [`write_solicit_frame`] and
/// [`write_unsolicited_advert_frame`] write: Ethernet, IPv6, the message
/// and one link-layer address option.
pub const FRAME_LEN: usize = super::ethernet::HEADER_LEN + super::ipv6::HEADER_LEN + ADVERT_LEN;

/// Writes into `b` ([`FRAME_LEN`] bytes) the whole frame of message `n`
/// (written by the caller into its ICMPv6 part) from `src` (`mac`) to `dst`,
/// hop limit 255, checksum filled in.
fn frame(b: &mut [u8; FRAME_LEN], mac: &[u8; 6], src: Ipv6Addr, dst: Ipv6Addr) {
    use super::checksum::{csum_add, csum_fold, pseudo6};
    use super::{ethernet, ipv6, proto};
    let d = dst.octets();
    let eth_dst = [0x33, 0x33, d[12], d[13], d[14], d[15]];
    ethernet::write(b, &eth_dst, mac, ethernet::ETHERTYPE_IPV6);
    ipv6::write(
        &mut b[ethernet::HEADER_LEN..],
        ADVERT_LEN as u16,
        proto::ICMPV6,
        255,
        &src.octets(),
        &d,
    );
    let n = &mut b[ethernet::HEADER_LEN + ipv6::HEADER_LEN..];
    let sum = pseudo6(&src.octets(), &d, ADVERT_LEN as u32, proto::ICMPV6);
    let c = csum_fold(csum_add(sum, &n[..ADVERT_LEN]));
    set16(n, field::CHECKSUM, c);
}

/// A neighbour solicitation for `target` from `src` (`mac`, in a source
/// link-layer address option) to its solicited-node multicast address, as a
/// whole frame.
pub fn write_solicit_frame(
    b: &mut [u8; FRAME_LEN],
    mac: &[u8; 6],
    src: Ipv6Addr,
    target: Ipv6Addr,
) {
    let t = target.octets();
    let dst = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let at = super::ethernet::HEADER_LEN + super::ipv6::HEADER_LEN;
    let n = &mut b[at..];
    write_advert(n, 0, &t, mac);
    n[field::TYPE] = types::NEIGHBOR_SOLICIT;
    n[HEADER_LEN] = OPT_SOURCE_LL;
    frame(b, mac, src, dst);
}

/// An unsolicited neighbour advertisement (override; `router`: the router
/// flag) of `target` at `mac`, from `target` to all nodes, as a whole
/// frame: the neighbours on the link learn the new place at once (RFC 4861,
/// 7.2.6).
pub fn write_unsolicited_advert_frame(
    b: &mut [u8; FRAME_LEN],
    mac: &[u8; 6],
    target: Ipv6Addr,
    router: bool,
) {
    let at = super::ethernet::HEADER_LEN + super::ipv6::HEADER_LEN;
    let flags = FLAG_OVERRIDE | if router { FLAG_ROUTER } else { 0 };
    write_advert(&mut b[at..], flags, &target.octets(), mac);
    frame(b, mac, target, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_the_options_and_stops_at_one_that_does_not_fit() {
        let mut b = vec![0u8; ADVERT_LEN];
        let t = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        write_advert(
            &mut b,
            FLAG_SOLICITED | FLAG_OVERRIDE,
            &t,
            &[2, 0, 0, 0, 0, 9],
        );
        let m = NdMessage::new_checked(&b[..]).unwrap();
        assert!(m.is_advert());
        assert_eq!((m.flags(), m.target()), (0x6000_0000, Ipv6Addr::from(t)));
        let o: Vec<_> = m.options().collect();
        assert_eq!(o.len(), 1);
        let o = o[0].unwrap();
        assert_eq!((o.kind, o.mac()), (OPT_TARGET_LL, [2, 0, 0, 0, 0, 9]));
        // A zero length, a short tail, an option past the end.
        for (tail, ok) in [
            (&[1u8, 0, 0, 0, 0, 0, 0, 0][..], 0),
            (&[1, 1, 0, 0][..], 0),
            (&[1, 2, 0, 0, 0, 0, 0, 0][..], 0),
            (&[1, 1, 0, 0, 0, 0, 0, 0, 1, 0][..], 1),
        ] {
            let mut b = b[..HEADER_LEN].to_vec();
            b.extend_from_slice(tail);
            let m = NdMessage::new_checked(&b[..]).unwrap();
            let o: Vec<_> = m.options().collect();
            assert_eq!(o.len(), ok + 1, "{tail:?}");
            assert_eq!(o[ok], Err(Malformed), "{tail:?}");
        }
        assert!(NdMessage::new_checked(&b[..23]).is_none());
        assert_eq!(
            NdMessage::new_checked(&b[..24]).unwrap().options().count(),
            0
        );
    }
}
