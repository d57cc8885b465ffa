//! A session's TCP state: the flags seen each way, and whether the
//! connection is established (the longer timeout).

// TCP state bits of a session.
const SYN_OUT: u8 = 1;
const SYN_IN: u8 = 2;
const FIN_OUT: u8 = 4;
const FIN_IN: u8 = 8;
const RST: u8 = 16;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// The TCP state after a segment with `flags`, outbound or not.
#[inline(always)]
pub(super) fn tcp_track(st: u8, out: bool, flags: u8) -> u8 {
    let mut st = st;
    let closed = st & RST != 0 || st & (FIN_OUT | FIN_IN) == FIN_OUT | FIN_IN;
    if out && closed && flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        st = 0;
    }
    if flags & TCP_RST != 0 {
        st |= RST;
    }
    if flags & TCP_SYN != 0 {
        st |= if out { SYN_OUT } else { SYN_IN };
    }
    if flags & TCP_FIN != 0 {
        st |= if out { FIN_OUT } else { FIN_IN };
    }
    st
}

#[inline(always)]
pub(super) fn tcp_established(st: u8) -> bool {
    st & (SYN_OUT | SYN_IN) == SYN_OUT | SYN_IN
        && st & RST == 0
        && st & (FIN_OUT | FIN_IN) != FIN_OUT | FIN_IN
}
