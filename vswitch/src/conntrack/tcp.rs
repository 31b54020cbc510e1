//! TCP state and window tracking, after OVS's `conntrack-tcp.c` (itself
//! derived from pf): per-direction sequence windows, out-of-window → invalid.

use super::Timeout;
use super::pkt::Parsed;

pub(crate) const WSCALE_FLAG: u8 = 0x80;
pub(crate) const WSCALE_UNKNOWN: u8 = 0x40;
const WSCALE_MASK: u8 = 0xf;
const MAX_WSCALE: u8 = 14;
const MAXACKWINDOW: i64 = 0xffff + 1500;

pub(crate) const FIN: u16 = 0x01;
pub(crate) const SYN: u16 = 0x02;
pub(crate) const RST: u16 = 0x04;
pub(crate) const PSH: u16 = 0x08;
pub(crate) const ACK: u16 = 0x10;
pub(crate) const URG: u16 = 0x20;

/// `ct_dpif_tcp_state` values (the subset pf tracking uses).
pub mod state {
    pub const CLOSED: u8 = 0;
    pub const LISTEN: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const ESTABLISHED: u8 = 4;
    pub const CLOSING: u8 = 7;
    pub const FIN_WAIT_2: u8 = 9;
    pub const TIME_WAIT: u8 = 10;
}
use state::*;

/// One direction's view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    pub seqlo: u32,
    pub seqhi: u32,
    pub max_win: u32,
    pub wscale: u8,
    pub state: u8,
}

/// Result of tracking one packet of an existing connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Update {
    Valid,
    Invalid,
    /// A SYN retransmission of a connection that has not been answered.
    ValidNew,
    /// A new SYN after both sides closed: replace the connection.
    New,
}

fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

pub(crate) fn invalid_flags(f: u16) -> bool {
    if f & SYN != 0 {
        if f & (RST | FIN) != 0 {
            return true;
        }
    } else if f & (ACK | RST) == 0 {
        return true;
    }
    f & ACK == 0 && f & (FIN | PSH | URG) != 0
}

/// Whether a packet may create a connection (SYN+ACK may not).
pub(crate) fn valid_new(p: &Parsed) -> bool {
    p.tcp_flags & (SYN | ACK) != SYN | ACK && !invalid_flags(p.tcp_flags)
}

/// Initial peers for a new connection from `p` (wscale: the SYN's option).
pub(crate) fn new_conn(p: &Parsed, wscale: u8) -> [Peer; 2] {
    let mut src = Peer {
        seqlo: p.tcp_seq,
        ..Default::default()
    };
    let mut dst = Peer::default();
    src.seqhi = src.seqlo.wrapping_add(p.payload).wrapping_add(1);
    if p.tcp_flags & SYN != 0 {
        src.seqhi = src.seqhi.wrapping_add(1);
        src.wscale = wscale;
    } else {
        src.wscale = WSCALE_UNKNOWN;
        dst.wscale = WSCALE_UNKNOWN;
    }
    src.max_win = (p.tcp_win as u32).max(1);
    if src.wscale & WSCALE_FLAG != 0 {
        let sws = (src.wscale & WSCALE_MASK) as u32;
        src.max_win = src.max_win.div_ceil(1 << sws);
    }
    if p.tcp_flags & FIN != 0 {
        src.seqhi = src.seqhi.wrapping_add(1);
    }
    dst.seqhi = 1;
    dst.max_win = 1;
    src.state = SYN_SENT;
    dst.state = CLOSED;
    [src, dst]
}

/// The timeout class for the peers' states.
pub(crate) fn timeout(src: &Peer, dst: &Peer) -> Timeout {
    if src.state >= FIN_WAIT_2 && dst.state >= FIN_WAIT_2 {
        Timeout::TcpClosed
    } else if src.state >= CLOSING && dst.state >= CLOSING {
        Timeout::TcpFinWait
    } else if src.state < ESTABLISHED || dst.state < ESTABLISHED {
        Timeout::TcpOpening
    } else if src.state >= CLOSING || dst.state >= CLOSING {
        Timeout::TcpClosing
    } else {
        Timeout::TcpEstablished
    }
}

/// Tracks packet `p` (direction `reply`) on `peers`; returns the verdict
/// and the timeout class to apply (if any).
pub(crate) fn update(
    peers: &mut [Peer; 2],
    reply: bool,
    p: &Parsed,
    wscale_opt: u8,
) -> (Update, Option<Timeout>) {
    let (a, b) = peers.split_at_mut(1);
    let (src, dst) = if reply {
        (&mut b[0], &mut a[0])
    } else {
        (&mut a[0], &mut b[0])
    };
    let flags = p.tcp_flags;
    if invalid_flags(flags) {
        return (Update::Invalid, None);
    }
    if flags & (SYN | ACK) == SYN {
        if dst.state >= FIN_WAIT_2 && src.state >= FIN_WAIT_2 {
            src.state = CLOSED;
            dst.state = CLOSED;
            return (Update::New, None);
        } else if src.state <= SYN_SENT {
            src.state = SYN_SENT;
            return (Update::ValidNew, Some(Timeout::TcpFirstPacket));
        }
    }
    let (mut sws, mut dws) = (0u8, 0u8);
    if src.wscale & WSCALE_FLAG != 0 && dst.wscale & WSCALE_FLAG != 0 && flags & SYN == 0 {
        sws = src.wscale & WSCALE_MASK;
        dws = dst.wscale & WSCALE_MASK;
    } else if src.wscale & WSCALE_UNKNOWN != 0
        && dst.wscale & WSCALE_UNKNOWN != 0
        && flags & SYN == 0
    {
        sws = MAX_WSCALE;
        dws = MAX_WSCALE;
    }
    let mut win = p.tcp_win as u32;
    let orig_seq = p.tcp_seq;
    let mut seq = orig_seq;
    let mut ack;
    let mut end;
    if src.state < SYN_SENT {
        // First packet from this end.
        ack = p.tcp_ack;
        end = seq.wrapping_add(p.payload);
        if flags & SYN != 0 {
            end = end.wrapping_add(1);
            if dst.wscale & WSCALE_FLAG != 0 {
                src.wscale = wscale_opt;
                if src.wscale & WSCALE_FLAG != 0 {
                    sws = src.wscale & WSCALE_MASK;
                    win = win.div_ceil(1 << sws);
                    dws = dst.wscale & WSCALE_MASK;
                } else {
                    dst.max_win <<= dst.wscale & WSCALE_MASK;
                    dst.wscale = 0;
                }
            }
        }
        if flags & FIN != 0 {
            end = end.wrapping_add(1);
        }
        src.seqlo = seq;
        src.state = SYN_SENT;
        let w = (dst.max_win << dws).max(1);
        if src.seqhi == 1 || seq_geq(end.wrapping_add(w), src.seqhi) {
            src.seqhi = end.wrapping_add(w);
        }
        if win > src.max_win {
            src.max_win = win;
        }
    } else {
        ack = p.tcp_ack;
        end = seq.wrapping_add(p.payload);
        if flags & SYN != 0 {
            end = end.wrapping_add(1);
        }
        if flags & FIN != 0 {
            end = end.wrapping_add(1);
        }
    }
    if flags & ACK == 0 || (ack == 0 && flags & (ACK | RST) == ACK | RST) {
        ack = dst.seqlo;
    }
    if seq == end {
        seq = src.seqlo;
        end = seq;
    }
    let ackskew = dst.seqlo.wrapping_sub(ack) as i32 as i64;
    let swin = (win as u64) << sws;
    if seq_geq(src.seqhi, end)
        && seq_geq(seq, src.seqlo.wrapping_sub(dst.max_win << dws))
        && ackskew >= -MAXACKWINDOW
        && ackskew <= (MAXACKWINDOW << sws)
        && (flags & RST == 0
            || orig_seq == src.seqlo
            || orig_seq == src.seqlo.wrapping_add(1)
            || orig_seq.wrapping_add(1) == src.seqlo)
    {
        if src.max_win < win {
            src.max_win = win;
        }
        if seq_gt(end, src.seqlo) {
            src.seqlo = end;
        }
        if seq_geq(ack.wrapping_add(swin as u32), dst.seqhi) {
            dst.seqhi = ack.wrapping_add((swin as u32).max(1));
        }
        if flags & SYN != 0 && src.state < SYN_SENT {
            src.state = SYN_SENT;
        }
        if flags & FIN != 0 && src.state < CLOSING {
            src.state = CLOSING;
        }
        if flags & ACK != 0 {
            if dst.state == SYN_SENT {
                dst.state = ESTABLISHED;
            } else if dst.state == CLOSING {
                dst.state = FIN_WAIT_2;
            }
        }
        if flags & RST != 0 {
            src.state = TIME_WAIT;
            dst.state = TIME_WAIT;
        }
        (Update::Valid, Some(timeout(src, dst)))
    } else if (dst.state < SYN_SENT || dst.state >= FIN_WAIT_2 || src.state >= FIN_WAIT_2)
        && seq_geq(src.seqhi.wrapping_add(MAXACKWINDOW as u32), end)
        && seq_geq(seq, src.seqlo.wrapping_sub(MAXACKWINDOW as u32))
    {
        if src.max_win < win {
            src.max_win = win;
        }
        if seq_gt(end, src.seqlo) {
            src.seqlo = end;
        }
        if seq_geq(ack.wrapping_add(swin as u32), dst.seqhi) {
            dst.seqhi = ack.wrapping_add((swin as u32).max(1));
        }
        if flags & FIN != 0 && src.state < CLOSING {
            src.state = CLOSING;
        }
        if flags & RST != 0 {
            src.state = TIME_WAIT;
            dst.state = TIME_WAIT;
        }
        (Update::Valid, None)
    } else {
        (Update::Invalid, None)
    }
}

/// The state `ovs-appctl dpctl/dump-conntrack` (without `-m`) shows for a
/// peer state: the kernel's view where it differs from pf's (FIN_WAIT_2 →
/// TIME_WAIT, SYN_RECV → ESTABLISHED), as OVS's `ct_dpif_coalesce_tcp_state`.
pub fn coalesce(s: u8) -> u8 {
    match s {
        FIN_WAIT_2 => TIME_WAIT,
        SYN_RECV => ESTABLISHED,
        _ => s,
    }
}

/// Name of a peer state as `ovs-appctl dpctl/dump-conntrack -m` prints it.
pub fn state_name(s: u8) -> &'static str {
    match s {
        CLOSED => "CLOSED",
        LISTEN => "LISTEN",
        SYN_SENT => "SYN_SENT",
        SYN_RECV => "SYN_RECV",
        ESTABLISHED => "ESTABLISHED",
        CLOSING => "CLOSING",
        FIN_WAIT_2 => "FIN_WAIT_2",
        TIME_WAIT => "TIME_WAIT",
        _ => "UNKNOWN",
    }
}
