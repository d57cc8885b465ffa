//! DHCPv6 (RFC 8415): a client's message as a server on its own link reads
//! it: type, transaction id, and the options a reply depends on.

/// The client's and the server's UDP ports.
pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;

/// The message type and transaction id: where the options start.
pub const HEADER_LEN: usize = 4;

/// The longest DUID (RFC 8415, 11.1).
pub const MAX_DUID_LEN: usize = 130;

/// Message types.
pub mod msg {
    pub const SOLICIT: u8 = 1;
    pub const ADVERTISE: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const CONFIRM: u8 = 4;
    pub const RENEW: u8 = 5;
    pub const REBIND: u8 = 6;
    pub const REPLY: u8 = 7;
    pub const RELEASE: u8 = 8;
    pub const DECLINE: u8 = 9;
    pub const INFORMATION_REQUEST: u8 = 11;
}

/// Option codes (RFC 8415, 21; RFC 3646).
pub mod opt {
    pub const CLIENTID: u16 = 1;
    pub const SERVERID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IAADDR: u16 = 5;
    pub const ELAPSED_TIME: u16 = 8;
    pub const STATUS_CODE: u16 = 13;
    pub const RAPID_COMMIT: u16 = 14;
    pub const DNS_SERVERS: u16 = 23;
}

/// Status codes (RFC 8415, 21.13).
pub mod status {
    pub const SUCCESS: u16 = 0;
    pub const NO_ADDRS_AVAIL: u16 = 2;
    pub const NOT_ON_LINK: u16 = 4;
}

/// What a server reads of a client's message (the slices borrow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub kind: u8,
    pub xid: [u8; 3],
    /// The client identifier's DUID, if present.
    pub client_id: Option<&'a [u8]>,
    /// The server identifier's DUID, if present.
    pub server_id: Option<&'a [u8]>,
    /// The IAID of the first IA_NA, if present.
    pub iaid: Option<[u8; 4]>,
    /// The first address of the first IA_NA (an IAADDR option), if any.
    pub ia_addr: Option<[u8; 16]>,
    pub rapid_commit: bool,
}

/// The options of `b` in order as (code, value); an option that does not
/// fit is `Err` and ends them.
fn options(mut b: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), ()>> {
    std::iter::from_fn(move || {
        if b.is_empty() {
            return None;
        }
        let Some((h, rest)) = b.split_first_chunk::<4>() else {
            b = &[];
            return Some(Err(()));
        };
        let code = u16::from_be_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let Some((v, rest)) = rest.split_at_checked(len) else {
            b = &[];
            return Some(Err(()));
        };
        b = rest;
        Some(Ok((code, v)))
    })
}

/// Reads the client message `b` (the UDP payload): `None` when it is not
/// well formed (a header, options that fit, a DUID of 1 to 130 bytes, an
/// IA_NA of at least its 12 fixed bytes whose options fit).
pub fn request(b: &[u8]) -> Option<Request<'_>> {
    let (h, o) = b.split_first_chunk::<HEADER_LEN>()?;
    let mut r = Request {
        kind: h[0],
        xid: [h[1], h[2], h[3]],
        client_id: None,
        server_id: None,
        iaid: None,
        ia_addr: None,
        rapid_commit: false,
    };
    let duid = |v: &[u8]| (!v.is_empty() && v.len() <= MAX_DUID_LEN).then_some(());
    for x in options(o) {
        let (code, v) = x.ok()?;
        match code {
            opt::CLIENTID => {
                duid(v)?;
                r.client_id = Some(v);
            }
            opt::SERVERID => {
                duid(v)?;
                r.server_id = Some(v);
            }
            opt::IA_NA if r.iaid.is_none() => {
                let (fixed, inner) = v.split_first_chunk::<12>()?;
                r.iaid = Some([fixed[0], fixed[1], fixed[2], fixed[3]]);
                for y in options(inner) {
                    let (c, a) = y.ok()?;
                    if c == opt::IAADDR && r.ia_addr.is_none() {
                        r.ia_addr = Some(*a.first_chunk::<16>()?);
                    }
                }
            }
            opt::RAPID_COMMIT => r.rapid_commit = true,
            _ => {}
        }
    }
    Some(r)
}

/// A DUID-LL (RFC 8415, 11.4) of Ethernet MAC `mac`.
pub fn duid_ll(mac: &[u8; 6]) -> [u8; 10] {
    let mut d = [0, 3, 0, 1, 0, 0, 0, 0, 0, 0];
    d[4..].copy_from_slice(mac);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(code: u16, v: &[u8]) -> Vec<u8> {
        let mut o = code.to_be_bytes().to_vec();
        o.extend((v.len() as u16).to_be_bytes());
        o.extend(v);
        o
    }

    #[test]
    fn reads_a_request_and_refuses_what_is_not_one() {
        let mut ia = vec![1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0];
        ia.extend(opt(opt::IAADDR, &[0x20; 24]));
        let mut b = vec![msg::REQUEST, 9, 8, 7];
        b.extend(opt(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1]));
        b.extend(opt(opt::SERVERID, &duid_ll(&[2, 0, 0, 0, 0, 9])));
        b.extend(opt(opt::ELAPSED_TIME, &[0, 0]));
        b.extend(opt(opt::IA_NA, &ia));
        b.extend(opt(opt::RAPID_COMMIT, &[]));
        let r = request(&b).unwrap();
        assert_eq!(r.kind, msg::REQUEST);
        assert_eq!(r.xid, [9, 8, 7]);
        assert_eq!(r.client_id, Some(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 1][..]));
        assert_eq!(r.server_id, Some(&duid_ll(&[2, 0, 0, 0, 0, 9])[..]));
        assert_eq!(r.iaid, Some([1, 2, 3, 4]));
        assert_eq!(r.ia_addr, Some([0x20; 16]));
        assert!(r.rapid_commit);
        // Too short; an option past the end; a half option header; an
        // empty DUID; an IA_NA shorter than its fixed part; a short IAADDR.
        assert!(request(&b[..3]).is_none());
        assert!(request(&[msg::SOLICIT, 0, 0, 0, 0, 1, 0, 9, 1]).is_none());
        assert!(request(&[msg::SOLICIT, 0, 0, 0, 0, 1]).is_none());
        assert!(request(&[msg::SOLICIT, 0, 0, 0, 0, 1, 0, 0]).is_none());
        let mut s = vec![msg::SOLICIT, 0, 0, 0];
        s.extend(opt(opt::IA_NA, &[1, 2, 3]));
        assert!(request(&s).is_none());
        let mut s = vec![msg::SOLICIT, 0, 0, 0];
        let mut ia = vec![0; 12];
        ia.extend(opt(opt::IAADDR, &[0; 8]));
        s.extend(opt(opt::IA_NA, &ia));
        assert!(request(&s).is_none());
        // No options at all is a message (whether it may go without a
        // client id is the server's business).
        assert!(request(&[msg::INFORMATION_REQUEST, 1, 2, 3]).is_some());
    }
}
