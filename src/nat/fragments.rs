//! Fragments: a first fragment's translation, remembered for the later ones
//! (no reassembly).

use crate::stats::DropReason as R;

use super::session::mix;
use super::wire::{self, Hdr, Side};
use super::Nat;

pub(super) const DIR_IN: u64 = 1 << 63;

/// A first fragment's translation, for the later ones.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Frag {
    /// Source and destination before translation.
    pub(super) addrs: u64,
    /// Direction bit, protocol, IP id, router (0 inbound).
    pub(super) what: u64,
    pub(super) new_ip: u32,
    pub(super) router: u32,
    /// 0: free.
    pub(super) expires: u64,
}

pub(super) const FRAG_WAYS: usize = 4;

impl Nat {
    pub(super) fn forget_frags(&mut self, mut pick: impl FnMut(&Frag) -> bool) {
        for f in &mut self.frags {
            if f.expires != 0 && pick(f) {
                *f = Frag::default();
            }
        }
    }

    #[inline(always)]
    pub(super) fn frag_key(inbound: bool, router: u32, h: &Hdr) -> (u64, u64) {
        let addrs = (u64::from(h.src) << 32) | u64::from(h.dst);
        let what = if inbound { DIR_IN } else { 0 }
            | (u64::from(h.proto) << 48)
            | (u64::from(h.id) << 32)
            | if inbound { 0 } else { u64::from(router) };
        (addrs, what)
    }

    /// Records a first fragment's new address (and router, inbound) for the
    /// later fragments: a free, expired or same-key way of its set, else the
    /// one closest to expiry.
    pub(super) fn remember(&mut self, inbound: bool, router: u32, h: &Hdr, new_ip: u32, now: u64) {
        let (addrs, what) = Nat::frag_key(inbound, router, h);
        let set = (mix(addrs, what) >> 32) as usize & (self.frags.len() - 1) & !(FRAG_WAYS - 1);
        let mut pick = set;
        for i in set..set + FRAG_WAYS {
            let f = &self.frags[i];
            if f.expires <= now || (f.addrs == addrs && f.what == what) {
                pick = i;
                break;
            }
            if f.expires < self.frags[pick].expires {
                pick = i;
            }
        }
        self.frags[pick] = Frag {
            addrs,
            what,
            new_ip,
            router,
            expires: now.saturating_add(self.t_frag).max(1),
        };
    }

    /// Translates a later fragment as its first was.
    pub(super) fn follow(
        &mut self,
        inbound: bool,
        router: u32,
        ip: &mut [u8],
        h: &Hdr,
        now: u64,
    ) -> Result<u32, R> {
        let (addrs, what) = Nat::frag_key(inbound, router, h);
        let set = (mix(addrs, what) >> 32) as usize & (self.frags.len() - 1) & !(FRAG_WAYS - 1);
        let f = self.frags[set..set + FRAG_WAYS]
            .iter()
            .find(|f| f.addrs == addrs && f.what == what && f.expires > now)
            .copied()
            .ok_or(R::NatFragmentUnknown)?;
        let side = if inbound { Side::Dst } else { Side::Src };
        wire::xlate(ip, h, side, f.new_ip, None)?;
        Ok(f.router)
    }
}
