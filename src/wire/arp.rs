//! ARP (RFC 826) for IPv4 over Ethernet: the view, and the writers of a
//! request, a gratuitous ARP and a reply.

use std::net::Ipv4Addr;

use super::ethernet::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, HEADER_LEN as ETH_LEN};
use super::{get16, get32, get_mac, set16, Field};

/// The Ethernet/IPv4 ARP payload.
pub const HEADER_LEN: usize = 28;
/// Hardware type Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

pub mod field {
    use super::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// An ARP packet (the Ethernet payload) at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// `None` if `buffer` is shorter than 28 bytes. The kinds of address are
    /// not checked: [`ArpPacket::is_ethernet_ipv4`].
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(ArpPacket { buffer })
    }

    /// Ethernet hardware addresses and IPv4 protocol addresses, of their
    /// lengths: the only ARP the router speaks.
    #[inline(always)]
    pub fn is_ethernet_ipv4(&self) -> bool {
        let b = self.buffer.as_ref();
        get16(b, field::HTYPE) == HTYPE_ETHERNET
            && get16(b, field::PTYPE) == ETHERTYPE_IPV4
            && b[field::HLEN] == 6
            && b[field::PLEN] == 4
    }

    #[inline(always)]
    pub fn operation(&self) -> u16 {
        get16(self.buffer.as_ref(), field::OPER)
    }

    #[inline(always)]
    pub fn sender_mac(&self) -> [u8; 6] {
        get_mac(self.buffer.as_ref(), field::SHA)
    }

    #[inline(always)]
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get32(self.buffer.as_ref(), field::SPA))
    }

    #[inline(always)]
    pub fn target_mac(&self) -> [u8; 6] {
        get_mac(self.buffer.as_ref(), field::THA)
    }

    #[inline(always)]
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get32(self.buffer.as_ref(), field::TPA))
    }

    /// A request from an address for itself: an announcement.
    #[inline(always)]
    pub fn is_gratuitous(&self) -> bool {
        let b = self.buffer.as_ref();
        self.operation() == OP_REQUEST && b[field::SPA] == b[field::TPA]
    }
}

/// The ARP payload of the Ethernet/IPv4 ARP frame `frame` (from its
/// Ethernet header on), checked: long enough and of those kinds of address.
/// `None` for anything else (what the pipeline drops as
/// [`crate::stats::DropReason::MalformedArp`]).
#[inline]
pub fn of_frame(frame: &[u8]) -> Option<ArpPacket<&[u8]>> {
    let a = ArpPacket::new_checked(frame.get(ETH_LEN..ETH_LEN + HEADER_LEN)?)?;
    a.is_ethernet_ipv4().then_some(a)
}

/// The sender of an ARP reply or gratuitous ARP in the frame `b` (for VTEP
/// and upstream resolution), if `b` is one.
pub fn reply_sender(b: &[u8]) -> Option<(Ipv4Addr, [u8; 6])> {
    let e = ethernet::EthernetFrame::new_checked(b)?;
    if e.ethertype() != ETHERTYPE_ARP {
        return None;
    }
    let a = ArpPacket::new_checked(e.payload())?;
    (a.operation() == OP_REPLY || a.is_gratuitous()).then(|| (a.sender_ip(), a.sender_mac()))
}

/// Writes an ARP request from `mac`, `ip` for `target`, broadcast, into
/// `b` (at least 42 bytes); gives the frame's length.
pub fn write_request(b: &mut [u8], mac: &[u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> usize {
    ethernet::write(b, &[0xff; 6], mac, ETHERTYPE_ARP);
    let a = &mut b[ETH_LEN..ETH_LEN + HEADER_LEN];
    set16(a, field::HTYPE, HTYPE_ETHERNET);
    set16(a, field::PTYPE, ETHERTYPE_IPV4);
    a[field::HLEN] = 6;
    a[field::PLEN] = 4;
    set16(a, field::OPER, OP_REQUEST);
    a[field::SHA].copy_from_slice(mac);
    a[field::SPA].copy_from_slice(&ip.octets());
    a[field::THA].copy_from_slice(&[0; 6]);
    a[field::TPA].copy_from_slice(&target.octets());
    ETH_LEN + HEADER_LEN
}

/// Turns the ARP request in the frame `b` (checked by [`of_frame`]) into
/// the reply that `ip` is at `mac`, to the requester, in place. False, with
/// nothing written, if `b` is too short to hold an ARP packet.
pub fn answer(b: &mut [u8], mac: &[u8; 6], ip: Ipv4Addr) -> bool {
    let Some(f) = b.get_mut(..ETH_LEN + HEADER_LEN) else {
        return false;
    };
    let (eth, a) = f.split_at_mut(ETH_LEN);
    let requester = get_mac(a, field::SHA);
    let sender_ip: [u8; 4] = a[field::SPA].try_into().expect("4 bytes");
    ethernet::write(eth, &requester, mac, ETHERTYPE_ARP);
    set16(a, field::OPER, OP_REPLY);
    a[field::SHA].copy_from_slice(mac);
    a[field::SPA].copy_from_slice(&ip.octets());
    a[field::THA].copy_from_slice(&requester);
    a[field::TPA].copy_from_slice(&sender_ip);
    true
}

/// Writes a gratuitous ARP (a request for `ip` from `ip`, broadcast) from
/// `mac` into `b` (at least 42 bytes); gives the frame's length.
pub fn write_garp(b: &mut [u8], mac: &[u8; 6], ip: Ipv4Addr) -> usize {
    write_request(b, mac, ip, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_and_a_garp_is_gratuitous() {
        let mut b = [0u8; 60];
        let mac = [2, 0, 0, 0, 0, 1];
        let (me, them) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(write_request(&mut b, &mac, me, them), 42);
        #[rustfmt::skip]
        let want = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06,
            0, 1, 0x08, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1,
            0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
        ];
        assert_eq!(b[..42], want);
        let a = of_frame(&b).unwrap();
        assert_eq!((a.operation(), a.sender_ip(), a.target_ip()), (1, me, them));
        assert_eq!((a.sender_mac(), a.target_mac()), (mac, [0; 6]));
        assert!(!a.is_gratuitous());
        assert_eq!(reply_sender(&b), None, "a request is not a reply");
        write_garp(&mut b, &mac, me);
        assert_eq!(reply_sender(&b), Some((me, mac)));
        b[ETH_LEN + 7] = 2;
        b[ETH_LEN + 24..ETH_LEN + 28].copy_from_slice(&them.octets());
        assert_eq!(reply_sender(&b), Some((me, mac)), "a reply");
        assert!(of_frame(&b[..41]).is_none());
        // Answered: from the answer's MAC to the requester's.
        let mut q = [0u8; 60];
        write_request(&mut q, &mac, me, them);
        let theirs = [2, 0, 0, 0, 0, 2];
        assert!(answer(&mut q, &theirs, them));
        let r = of_frame(&q).unwrap();
        assert_eq!(
            (r.operation(), r.sender_ip(), r.target_ip()),
            (OP_REPLY, them, me)
        );
        assert_eq!((r.sender_mac(), r.target_mac()), (theirs, mac));
        assert_eq!((&q[..6], &q[6..12]), (&mac[..], &theirs[..]));
        assert_eq!(reply_sender(&q), Some((them, theirs)));
        assert!(!answer(&mut q[..41], &theirs, them));
        b[ETH_LEN + 4] = 8;
        assert!(of_frame(&b).is_none(), "not Ethernet/IPv4");
        assert!(reply_sender(&b[..41]).is_none());
    }
}
