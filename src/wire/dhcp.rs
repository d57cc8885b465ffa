//! DHCPv4 (RFC 2131, 2132) over BOOTP (RFC 951): the fixed part of a
//! message, its magic cookie and its options, as far as a server on the
//! client's own link reads and writes them.

use super::Field;

/// The server's and the client's UDP ports.
pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

/// The fixed part of a BOOTP message, through `file`.
pub const FIXED_LEN: usize = 236;
/// The fixed part and the magic cookie: where the options start.
pub const OPTIONS_AT: usize = FIXED_LEN + 4;
/// The least a BOOTP message is (RFC 1542, 2.1: relays and old clients
/// drop shorter ones): replies are padded to it.
pub const MIN_LEN: usize = 300;
/// The magic cookie before the options (RFC 2131, 3).
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// `op`.
pub const BOOTREQUEST: u8 = 1;
pub const BOOTREPLY: u8 = 2;
/// `htype` of Ethernet, and its `hlen`.
pub const HTYPE_ETHERNET: u8 = 1;
/// The broadcast bit of `flags`.
pub const FLAG_BROADCAST: u16 = 0x8000;

pub mod field {
    use super::Field;
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const HOPS: usize = 3;
    pub const XID: Field = 4..8;
    pub const SECS: Field = 8..10;
    pub const FLAGS: Field = 10..12;
    pub const CIADDR: Field = 12..16;
    pub const YIADDR: Field = 16..20;
    pub const SIADDR: Field = 20..24;
    pub const GIADDR: Field = 24..28;
    /// The client's hardware address (16 bytes; an Ethernet MAC in the
    /// first 6).
    pub const CHADDR: Field = 28..44;
    /// `sname` and `file`, zero in our replies.
    pub const SNAME_FILE: Field = 44..236;
    pub const MAGIC: Field = 236..240;
}

/// Option codes (RFC 2132, 3442).
pub mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const MTU: u8 = 26;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const END: u8 = 255;
}

/// Message types (option 53).
pub mod msg {
    pub const DISCOVER: u8 = 1;
    pub const OFFER: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const DECLINE: u8 = 4;
    pub const ACK: u8 = 5;
    pub const NAK: u8 = 6;
    pub const RELEASE: u8 = 7;
    pub const INFORM: u8 = 8;
}

/// What a server reads of a client's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub kind: u8,
    pub xid: [u8; 4],
    pub flags: u16,
    pub ciaddr: u32,
    pub giaddr: [u8; 4],
    /// The client's MAC (`chaddr`).
    pub chaddr: [u8; 6],
    /// Option 50, if present.
    pub requested: Option<u32>,
    /// Option 54, if present.
    pub server_id: Option<u32>,
}

/// Reads the BOOTP request `b` (the UDP payload): `None` when it is not a
/// well-formed Ethernet client message with a message type (options
/// bounded, an end or the message's end after them).
pub fn request(b: &[u8]) -> Option<Request> {
    if b.len() < OPTIONS_AT
        || b[field::OP] != BOOTREQUEST
        || b[field::HTYPE] != HTYPE_ETHERNET
        || b[field::HLEN] != 6
        || b[field::MAGIC] != MAGIC
    {
        return None;
    }
    let w = |r: Field| u32::from_be_bytes(b[r].try_into().expect("4 bytes"));
    let mut kind = None;
    let mut requested = None;
    let mut server_id = None;
    let mut o = &b[OPTIONS_AT..];
    loop {
        match *o {
            [] | [opt::END, ..] => break,
            [opt::PAD, ref rest @ ..] => o = rest,
            [code, len, ref rest @ ..] => {
                let v = rest.get(..len as usize)?;
                let addr = || -> Option<u32> { Some(u32::from_be_bytes(v.try_into().ok()?)) };
                match code {
                    opt::MESSAGE_TYPE => kind = Some(*v.first()?),
                    opt::REQUESTED_IP => requested = Some(addr()?),
                    opt::SERVER_ID => server_id = Some(addr()?),
                    _ => {}
                }
                o = &rest[len as usize..];
            }
            // A code with no length byte.
            [_] => return None,
        }
    }
    Some(Request {
        kind: kind?,
        xid: b[field::XID].try_into().expect("4 bytes"),
        flags: u16::from_be_bytes(b[field::FLAGS].try_into().expect("2 bytes")),
        ciaddr: w(field::CIADDR),
        giaddr: b[field::GIADDR].try_into().expect("4 bytes"),
        chaddr: b[field::CHADDR][..6].try_into().expect("6 bytes"),
        requested,
        server_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(options: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; OPTIONS_AT];
        b[field::OP] = BOOTREQUEST;
        b[field::HTYPE] = HTYPE_ETHERNET;
        b[field::HLEN] = 6;
        b[field::XID].copy_from_slice(&[1, 2, 3, 4]);
        b[field::CHADDR][..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        b[field::MAGIC].copy_from_slice(&MAGIC);
        b.extend_from_slice(options);
        b
    }

    #[test]
    fn reads_a_request_and_refuses_what_is_not_one() {
        let r = request(&message(&[
            53, 1, 3, 0, 50, 4, 10, 0, 0, 5, 54, 4, 10, 0, 0, 1, 255,
        ]))
        .unwrap();
        assert_eq!(r.kind, msg::REQUEST);
        assert_eq!(r.requested, Some(0x0a00_0005));
        assert_eq!(r.server_id, Some(0x0a00_0001));
        assert_eq!(r.chaddr, [2, 0, 0, 0, 0, 1]);
        assert_eq!(r.xid, [1, 2, 3, 4]);
        // No end option: the message's end ends the options.
        assert!(request(&message(&[53, 1, 1])).is_some());
        // No message type: BOOTP, not DHCP.
        assert!(request(&message(&[255])).is_none());
        // An option longer than the message, a lone code, a bad address length.
        assert!(request(&message(&[53, 1, 1, 12, 9, 1])).is_none());
        assert!(request(&message(&[53, 1, 1, 12])).is_none());
        assert!(request(&message(&[53, 1, 3, 50, 3, 1, 2, 3])).is_none());
        // Not a request, no cookie, too short.
        let mut b = message(&[53, 1, 1]);
        b[field::OP] = BOOTREPLY;
        assert!(request(&b).is_none());
        let mut b = message(&[53, 1, 1]);
        b[field::MAGIC.start] = 0;
        assert!(request(&b).is_none());
        assert!(request(&message(&[])[..200]).is_none());
    }
}
