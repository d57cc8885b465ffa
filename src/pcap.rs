//! Reading and writing libpcap capture files (Ethernet link type), for pcap ports,
//! tests and benchmarks.

use std::io::{self, Read, Write};

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;

/// Writes `frames` as a pcap capture, each stamped one microsecond after the last.
pub fn write<W: Write>(mut w: W, frames: &[Vec<u8>]) -> io::Result<()> {
    let mut hdr = Vec::with_capacity(24);
    hdr.extend_from_slice(&MAGIC_US.to_le_bytes());
    hdr.extend_from_slice(&2u16.to_le_bytes());
    hdr.extend_from_slice(&4u16.to_le_bytes());
    hdr.extend_from_slice(&0i32.to_le_bytes());
    hdr.extend_from_slice(&0u32.to_le_bytes());
    hdr.extend_from_slice(&65535u32.to_le_bytes());
    hdr.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    w.write_all(&hdr)?;
    for (i, f) in frames.iter().enumerate() {
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&((i / 1_000_000) as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&((i % 1_000_000) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&(f.len() as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&(f.len() as u32).to_le_bytes());
        w.write_all(&rec)?;
        w.write_all(f)?;
    }
    w.flush()
}

/// Writes a capture file atomically (temporary file, then rename).
pub fn write_file(path: &std::path::Path, frames: &[Vec<u8>]) -> io::Result<()> {
    let tmp = path.with_extension("pcap.tmp");
    {
        let f = std::fs::File::create(&tmp)?;
        write(io::BufWriter::new(f), frames)?;
    }
    std::fs::rename(tmp, path)
}

/// Reads every frame of a pcap capture (either byte order, µs or ns stamps).
pub fn read<R: Read>(mut r: R) -> io::Result<Vec<Vec<u8>>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
    let mut buf = Vec::new();
    r.read_to_end(&mut buf)?;
    if buf.len() < 24 {
        return Err(bad("pcap: file shorter than its header"));
    }
    let magic_le = u32::from_le_bytes(buf[0..4].try_into().unwrap());
    let le = match magic_le {
        MAGIC_US | MAGIC_NS => true,
        m if m.swap_bytes() == MAGIC_US || m.swap_bytes() == MAGIC_NS => false,
        _ => return Err(bad("pcap: bad magic")),
    };
    let u32_at = |b: &[u8], o: usize| {
        let v: [u8; 4] = b[o..o + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    if u32_at(&buf, 20) & 0xffff != LINKTYPE_ETHERNET {
        return Err(bad("pcap: link type is not Ethernet"));
    }
    let mut frames = Vec::new();
    let mut off = 24;
    while off < buf.len() {
        if off + 16 > buf.len() {
            return Err(bad("pcap: truncated record header"));
        }
        let incl = u32_at(&buf, off + 8) as usize;
        off += 16;
        if off + incl > buf.len() {
            return Err(bad("pcap: truncated record"));
        }
        frames.push(buf[off..off + incl].to_vec());
        off += incl;
    }
    Ok(frames)
}

/// Reads a capture file.
pub fn read_file(path: &std::path::Path) -> io::Result<Vec<Vec<u8>>> {
    read(std::fs::File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let frames = vec![vec![1u8; 60], vec![2u8; 1514], vec![]];
        let mut out = Vec::new();
        write(&mut out, &frames).unwrap();
        assert_eq!(out.len(), 24 + 3 * 16 + 60 + 1514);
        assert_eq!(read(&out[..]).unwrap(), frames);
    }

    #[test]
    fn rejects_truncated() {
        let mut out = Vec::new();
        write(&mut out, &[vec![7u8; 60]]).unwrap();
        out.pop();
        assert!(read(&out[..]).is_err());
        assert!(read(&out[..10]).is_err());
    }

    #[test]
    fn reads_big_endian_ns() {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC_NS.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65535u32.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(&[9, 8, 7]);
        assert_eq!(read(&b[..]).unwrap(), vec![vec![9, 8, 7]]);
    }
}
