//! Internet checksums (RFC 1071): full sums, the IPv4 header check, the
//! incremental updates of RFC 1624, and the IPv4 and IPv6 pseudo-headers.

/// The one's complement sum of `b` (16-bit big-endian words, odd byte padded),
/// added to `sum`, not folded.
pub fn csum_add(mut sum: u32, b: &[u8]) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u16::from_be_bytes([c[0], c[1]]) as u32);
        // Fold early enough that the sum never wraps (a frame is < 64 KiB).
        if sum >= 0xffff_0000 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add((*last as u32) << 8);
    }
    sum
}

/// Folds a sum to 16 bits and complements it: the checksum field's value.
#[inline]
pub fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum of `b`. The one's complement sum does not depend on
/// byte order (RFC 1071, 2.(B)): 32-bit words are summed into 64 bits and
/// folded once.
#[inline]
pub fn checksum(b: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut c = b.chunks_exact(4);
    for w in &mut c {
        sum += u32::from_be_bytes(w.try_into().expect("4 bytes")) as u64;
    }
    let r = c.remainder();
    let mut tail = [0u8; 4];
    tail[..r.len()].copy_from_slice(r);
    sum += u32::from_be_bytes(tail) as u64;
    // Fold 64 → 32 → 16 bits with end-around carries.
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Whether a 20-byte IPv4 header (no options) sums to all ones: its checksum
/// is right. Three little-endian loads (8, 8 and 4 bytes) added with
/// end-around carries: a ones' complement sum taken in the other byte order
/// is the byte-swapped sum, and all ones swapped is all ones.
#[inline(always)]
pub fn ipv4_header_sum_ok(h: &[u8; 20]) -> bool {
    let (a, rest) = h.split_first_chunk::<8>().expect("20 bytes");
    let (b, c) = rest.split_first_chunk::<8>().expect("12 bytes");
    let c: &[u8; 4] = c.try_into().expect("4 bytes");
    let (s, o) = u64::from_le_bytes(*a).overflowing_add(u64::from_le_bytes(*b));
    // A carry out leaves at most 2^64 - 2: adding it back cannot overflow.
    let s = s + o as u64;
    let (s, o) = s.overflowing_add(u32::from_le_bytes(*c) as u64);
    let s = s + o as u64;
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16 == 0xffff
}

/// The checksum field after a 16-bit word of the covered data changed from
/// `old` to `new` (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline(always)]
pub fn csum_update16(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!check as u32) + (!old as u32) + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// [`csum_update16`] for a 32-bit field (two words).
#[inline(always)]
pub fn csum_update32(check: u16, old: u32, new: u32) -> u16 {
    let c = csum_update16(check, (old >> 16) as u16, (new >> 16) as u16);
    csum_update16(c, old as u16, new as u16)
}

/// The sum of the IPv6 pseudo-header (RFC 8200, 8.1) for an upper-layer packet
/// of `len` bytes and protocol `next`.
pub fn pseudo6(src: &[u8], dst: &[u8], len: u32, next: u8) -> u32 {
    let mut s = csum_add(0, src);
    s = csum_add(s, dst);
    s = s.wrapping_add(len >> 16).wrapping_add(len & 0xffff);
    s.wrapping_add(next as u32)
}

/// The sum of the IPv4 pseudo-header for an upper-layer packet of `len` bytes.
pub fn pseudo4(src: &[u8], dst: &[u8], len: u16, proto: u8) -> u32 {
    let mut s = csum_add(0, src);
    s = csum_add(s, dst);
    s.wrapping_add(len as u32).wrapping_add(proto as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_sum_ok_agrees_with_checksum() {
        // Pseudo-random headers, and each with its checksum set right.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if x & 3 == 0 {
                // Words of all ones: the end-around carries.
                h[..8].fill(0xff);
            }
            assert_eq!(ipv4_header_sum_ok(&h), checksum(&h) == 0, "{h:?}");
            h[10..12].fill(0);
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            assert!(ipv4_header_sum_ok(&h), "{h:?}");
            h[(x % 20) as usize] ^= 1 << (x >> 8 & 7);
            assert!(!ipv4_header_sum_ok(&h), "{h:?}");
        }
        assert!(!ipv4_header_sum_ok(&[0; 20]));
        assert!(ipv4_header_sum_ok(&[0xff; 20]));
    }

    #[test]
    fn checksum_of_a_known_ipv4_header() {
        // RFC 1071 style example: a real header whose checksum is 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn word_checksum_equals_the_16_bit_sum() {
        let mut x: u32 = 12345;
        for len in 0..200 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            assert_eq!(checksum(&b), csum_fold(csum_add(0, &b)), "len {len}");
        }
        assert_eq!(checksum(&[0xff; 64]), csum_fold(csum_add(0, &[0xff; 64])));
    }

    #[test]
    fn odd_length_sums_pad_with_zero() {
        assert_eq!(csum_add(0, &[1, 2, 3]), 0x0102 + 0x0300);
    }
}
