//! Ethernet MAC addresses.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Group (multicast or broadcast) address: the I/G bit of the first octet.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// The address as a table key: its six octets as the low 48 bits of a
    /// little-endian u64 (so that [`MacAddr::key_of`] is one load and one mask).
    pub fn key(&self) -> u64 {
        let b = self.0;
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0])
    }

    /// The MAC of a key ([`MacAddr::key`]).
    pub fn from_key(k: u64) -> MacAddr {
        let b = k.to_le_bytes();
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The key ([`MacAddr::key`]) of the MAC in the first six bytes of `b`, which
    /// must hold at least eight bytes (an Ethernet header always does).
    #[inline(always)]
    pub fn key_of(b: &[u8]) -> u64 {
        let w: [u8; 8] = b[..8].try_into().expect("at least 8 bytes");
        u64::from_le_bytes(w) & 0x0000_ffff_ffff_ffff
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like fa:16:3e:00:00:01")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for o in out.iter_mut() {
            let p = parts.next().ok_or_else(err)?;
            if p.is_empty() || p.len() > 2 {
                return Err(err());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let m: MacAddr = "FA:16:3e:0:a:ff".parse().unwrap();
        assert_eq!(m.0, [0xfa, 0x16, 0x3e, 0, 0x0a, 0xff]);
        assert_eq!(m.to_string(), "fa:16:3e:00:0a:ff");
        assert_eq!(m.key(), 0xff0a_003e_16fa);
        let mut frame = m.0.to_vec();
        frame.extend_from_slice(&[0x12, 0x34]);
        assert_eq!(MacAddr::key_of(&frame), m.key());
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "fa:16:3e:00:00",
            "fa:16:3e:00:00:00:01",
            "fa:16:3e:00:00:gg",
            "fa:16:3e:000:00:01",
            "fa::3e:00:00:01",
        ] {
            assert!(s.parse::<MacAddr>().is_err(), "{s}");
        }
    }

    #[test]
    fn multicast_bit() {
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!("01:00:5e:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
        assert!(!"fa:16:3e:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
    }
}
