//! The first pipeline stage: L2 switching between VM ports by destination MAC,
//! from a static table. Later stages replace the table with the control plane's FDB.

use crate::mac::MacAddr;
use crate::stats::DropReason;
use crate::wire::EthernetFrame;

/// Where a packet goes: a port index, or [`DROP`].
pub type Dest = u16;
/// The disposition of a dropped packet in a destination array.
pub const DROP: Dest = u16::MAX;

/// A MAC → value table (a port by default) with open addressing: a power-of-two
/// array of slots, linear probing, key 0 (the all-zero MAC, never a valid
/// station) marks an empty slot. Built once; lookups never allocate.
#[derive(Debug, Clone)]
pub struct MacTable<V: Copy + Default = u16> {
    keys: Box<[u64]>,
    ports: Box<[V]>,
    mask: usize,
    len: usize,
    /// The same entries as a short list, when there are at most [`SMALL`].
    small: Option<Box<[(u64, V)]>>,
}

/// Tables up to this size are searched linearly.
const SMALL: usize = 8;

#[inline(always)]
fn hash(key: u64) -> usize {
    // Fibonacci hashing of the 48-bit key.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize
}

impl<V: Copy + Default> Default for MacTable<V> {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl<V: Copy + Default> MacTable<V> {
    /// Builds a table from (MAC, value) pairs; a later pair for the same MAC wins.
    /// Zero and group MACs are skipped (they cannot be looked up).
    pub fn new(entries: &[(MacAddr, V)]) -> Self {
        let cap = (entries.len() * 2).next_power_of_two().max(16);
        let mut t = MacTable {
            keys: vec![0; cap].into_boxed_slice(),
            ports: vec![V::default(); cap].into_boxed_slice(),
            mask: cap - 1,
            len: 0,
            small: None,
        };
        for (mac, port) in entries {
            if mac.is_zero() || mac.is_multicast() {
                continue;
            }
            let key = mac.key();
            let mut i = hash(key) & t.mask;
            loop {
                if t.keys[i] == 0 {
                    t.keys[i] = key;
                    t.ports[i] = *port;
                    t.len += 1;
                    break;
                }
                if t.keys[i] == key {
                    t.ports[i] = *port;
                    break;
                }
                i = (i + 1) & t.mask;
            }
        }
        if t.len <= SMALL {
            let small: Vec<(u64, V)> = t
                .keys
                .iter()
                .zip(t.ports.iter())
                .filter(|(k, _)| **k != 0)
                .map(|(k, p)| (*k, *p))
                .collect();
            t.small = Some(small.into_boxed_slice());
        }
        t
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.keys
            .iter()
            .zip(self.ports.iter())
            .filter(|(k, _)| **k != 0)
            .map(|(k, v)| (*k, *v))
    }

    /// The value of a MAC given as a key ([`MacAddr::key_of`]).
    #[inline(always)]
    pub fn get(&self, key: u64) -> Option<V> {
        if let Some(small) = &self.small {
            // A handful of entries: compare them all, no hashing, no probing.
            return small.iter().find(|(k, _)| *k == key).map(|(_, p)| *p);
        }
        let mut i = hash(key) & self.mask;
        loop {
            let k = self.keys[i];
            if k == 0 {
                return None;
            }
            if k == key {
                return Some(self.ports[i]);
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// The L2 switching stage: decides where a frame that came in on `in_port` goes,
/// by its destination MAC in `fdb` (the table of the ingress port's network).
#[inline(always)]
pub fn classify(fdb: &MacTable, in_port: u16, frame: &[u8]) -> Result<Dest, DropReason> {
    let eth = EthernetFrame::new_checked(frame).ok_or(DropReason::RuntFrame)?;
    if eth.src_is_group() {
        return Err(DropReason::MulticastSrcMac);
    }
    if eth.dst_is_group() {
        return Err(DropReason::FloodNotConfigured);
    }
    match fdb.get(MacAddr::key_of(frame)) {
        None => Err(DropReason::UnknownDstMac),
        Some(p) if p == in_port => Err(DropReason::SameIngressPort),
        Some(p) => Ok(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    fn frame(dst: &str, src: &str, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&mac(dst).0);
        f[6..12].copy_from_slice(&mac(src).0);
        f
    }

    fn fdb() -> MacTable {
        MacTable::new(&[(mac("fa:16:3e:00:00:0a"), 0), (mac("fa:16:3e:00:00:0b"), 1)])
    }

    #[test]
    fn forwards_known_unicast() {
        let s = fdb();
        assert_eq!(
            classify(&s, 0, &frame("fa:16:3e:00:00:0b", "fa:16:3e:00:00:0a", 60)),
            Ok(1)
        );
        assert_eq!(
            classify(&s, 1, &frame("fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b", 60)),
            Ok(0)
        );
    }

    #[test]
    fn drops_with_reasons() {
        let s = fdb();
        let a = "fa:16:3e:00:00:0a";
        assert_eq!(classify(&s, 0, &[0u8; 13]), Err(DropReason::RuntFrame));
        assert_eq!(
            classify(&s, 0, &frame("fa:16:3e:00:00:0b", "01:00:5e:00:00:01", 60)),
            Err(DropReason::MulticastSrcMac)
        );
        assert_eq!(
            classify(&s, 0, &frame("ff:ff:ff:ff:ff:ff", a, 60)),
            Err(DropReason::FloodNotConfigured)
        );
        assert_eq!(
            classify(&s, 0, &frame("33:33:00:00:00:01", a, 60)),
            Err(DropReason::FloodNotConfigured)
        );
        assert_eq!(
            classify(&s, 0, &frame("fa:16:3e:00:00:99", a, 60)),
            Err(DropReason::UnknownDstMac)
        );
        assert_eq!(
            classify(&s, 0, &frame(a, "fa:16:3e:00:00:0c", 60)),
            Err(DropReason::SameIngressPort)
        );
        // A bare Ethernet header is enough for L2.
        assert_eq!(classify(&s, 0, &frame("fa:16:3e:00:00:0b", a, 14)), Ok(1));
    }

    #[test]
    fn table_holds_many_and_finds_all() {
        let entries: Vec<_> = (1..=5000u64)
            .map(|i| {
                (
                    MacAddr(std::array::from_fn(|k| ((i << 8) >> (8 * (5 - k))) as u8)),
                    (i % 7) as u16,
                )
            })
            .collect();
        let t = MacTable::new(&entries);
        assert_eq!(t.len(), 5000);
        for (m, p) in &entries {
            assert_eq!(t.get(m.key()), Some(*p));
        }
        assert_eq!(t.get(mac("fa:16:3e:99:99:99").key()), None);
    }

    #[test]
    fn later_entry_wins_and_zero_is_skipped() {
        let t = MacTable::new(&[
            (mac("fa:16:3e:00:00:01"), 1),
            (mac("fa:16:3e:00:00:01"), 2),
            (MacAddr([0; 6]), 3),
            (MacAddr::BROADCAST, 4),
        ]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(mac("fa:16:3e:00:00:01").key()), Some(2));
        assert_eq!(t.get(0), None);
    }
}
