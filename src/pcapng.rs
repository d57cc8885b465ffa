//! A pcapng writer (the format of Wireshark and tcpdump -w): one section, one
//! Ethernet interface with nanosecond timestamps, an enhanced packet block
//! per frame with its direction (inbound, outbound) in `epb_flags`.

use std::io::{self, Write};

/// Link type Ethernet.
const LINKTYPE_ETHERNET: u16 = 1;

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Writes blocks to `w`.
pub struct Writer<W: Write> {
    w: W,
}

impl<W: Write> Writer<W> {
    /// Starts a file: the section header and the interface `name` (snap
    /// length `snaplen`, timestamps in nanoseconds).
    pub fn new(mut w: W, name: &str, snaplen: u32) -> io::Result<Writer<W>> {
        // Section header block: byte-order magic, version 1.0, section
        // length unknown (-1), no options.
        let mut shb = Vec::new();
        shb.extend(0x1a2b_3c4du32.to_le_bytes());
        shb.extend(1u16.to_le_bytes());
        shb.extend(0u16.to_le_bytes());
        shb.extend((-1i64).to_le_bytes());
        block(&mut w, 0x0a0d_0d0a, &shb)?;
        // Interface description block: options if_name (2), if_tsresol (9)
        // = 9 (10^-9 s), end.
        let mut idb = Vec::new();
        idb.extend(LINKTYPE_ETHERNET.to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(snaplen.to_le_bytes());
        option(&mut idb, 2, name.as_bytes());
        option(&mut idb, 9, &[9]);
        idb.extend([0u8; 4]);
        block(&mut w, 1, &idb)?;
        Ok(Writer { w })
    }

    /// One frame: `data` (the bytes kept) of a frame of `len` bytes, at
    /// `ns` nanoseconds since 1970, inbound (`rx`) or outbound.
    pub fn packet(&mut self, ns: u64, rx: bool, data: &[u8], len: u32) -> io::Result<()> {
        let mut epb = Vec::with_capacity(32 + data.len());
        epb.extend(0u32.to_le_bytes()); // interface 0
        epb.extend(((ns >> 32) as u32).to_le_bytes());
        epb.extend((ns as u32).to_le_bytes());
        epb.extend((data.len() as u32).to_le_bytes());
        epb.extend(len.to_le_bytes());
        epb.extend(data);
        epb.extend(std::iter::repeat_n(0u8, pad4(data.len())));
        // epb_flags (2): direction in bits 0-1, 1 inbound, 2 outbound.
        option(&mut epb, 2, &(if rx { 1u32 } else { 2 }).to_le_bytes());
        epb.extend([0u8; 4]);
        block(&mut self.w, 6, &epb)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

fn option(b: &mut Vec<u8>, code: u16, v: &[u8]) {
    b.extend(code.to_le_bytes());
    b.extend((v.len() as u16).to_le_bytes());
    b.extend(v);
    b.extend(std::iter::repeat_n(0u8, pad4(v.len())));
}

fn block(w: &mut impl Write, kind: u32, body: &[u8]) -> io::Result<()> {
    let total = (12 + body.len()) as u32;
    w.write_all(&kind.to_le_bytes())?;
    w.write_all(&total.to_le_bytes())?;
    w.write_all(body)?;
    w.write_all(&total.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_whole_and_aligned() {
        let mut out = Vec::new();
        {
            let mut w = Writer::new(&mut out, "vm-a", 2048).unwrap();
            w.packet(1_000_000_123, true, &[1, 2, 3, 4, 5], 60).unwrap();
        }
        // Walk the blocks by their lengths: each starts and ends with it.
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < out.len() {
            let kind = u32::from_le_bytes(out[at..at + 4].try_into().unwrap());
            let len = u32::from_le_bytes(out[at + 4..at + 8].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            assert_eq!(&out[at + len - 4..at + len], &out[at + 4..at + 8]);
            kinds.push(kind);
            at += len;
        }
        assert_eq!(at, out.len());
        assert_eq!(kinds, vec![0x0a0d_0d0a, 1, 6]);
    }
}
