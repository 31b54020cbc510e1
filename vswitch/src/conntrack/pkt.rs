//! Frame parsing for conntrack (Ethernet → IPv4/IPv6 → TCP/UDP/ICMP) and the
//! byte-level NAT rewrites with checksum updates. Every function is total:
//! short or malformed frames yield `None` / no change.

use super::Tuple;

pub(crate) const ETH_IPV4: u16 = 0x0800;
pub(crate) const ETH_IPV6: u16 = 0x86dd;
pub(crate) const TCP: u8 = 6;
pub(crate) const UDP: u8 = 17;
pub(crate) const ICMP: u8 = 1;
pub(crate) const ICMP6: u8 = 58;
pub(crate) const SCTP: u8 = 132;

/// ICMP tuples: `sport` is the echo id, `dport` tells request from reply.
pub const ICMP_REQ: u16 = 0;
pub const ICMP_REP: u16 = 1;

fn be16(d: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([d[o], d[o + 1]])
}

fn be32(d: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]])
}

/// What conntrack needs from one packet.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Parsed {
    pub l3: usize,
    pub l4: usize,
    /// End of the IP datagram (frames may carry Ethernet padding).
    pub end: usize,
    pub v6: bool,
    pub tuple: Tuple,
    /// ICMP type/code (for ct_tp_src/dst).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// An ICMP error: `tuple` is the *inner* packet's tuple, `inner_l3`/`inner_l4` its offsets.
    pub related: bool,
    pub inner_l3: usize,
    pub inner_l4: usize,
    pub tcp_flags: u16,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub tcp_win: u16,
    /// TCP payload length.
    pub payload: u32,
}

/// L3 of an Ethernet frame: (offset, ethertype), skipping VLAN tags.
pub(crate) fn l3_of(d: &[u8]) -> Option<(usize, u16)> {
    if d.len() < 14 {
        return None;
    }
    let mut o = 12;
    let mut t = be16(d, o);
    while (t == 0x8100 || t == 0x88a8) && d.len() >= o + 6 {
        o += 4;
        t = be16(d, o);
    }
    Some((o + 2, t))
}

/// IP header at `l3` (`v6`): (l4 offset, proto, end), or `None` if
/// malformed, truncated or a fragment.
fn ip(d: &[u8], l3: usize, v6: bool, tuple: &mut Tuple) -> Option<(usize, u8, usize)> {
    if !v6 {
        if d.len() < l3 + 20 || d[l3] >> 4 != 4 {
            return None;
        }
        let ihl = (d[l3] & 0xf) as usize * 4;
        let tot = be16(d, l3 + 2) as usize;
        if ihl < 20 || tot < ihl || d.len() < l3 + tot {
            return None;
        }
        if be16(d, l3 + 6) & 0x3fff != 0 {
            return None; // fragment (no reassembly): invalid
        }
        tuple.src = be32(d, l3 + 12) as u128;
        tuple.dst = be32(d, l3 + 16) as u128;
        tuple.v6 = false;
        Some((l3 + ihl, d[l3 + 9], l3 + tot))
    } else {
        if d.len() < l3 + 40 || d[l3] >> 4 != 6 {
            return None;
        }
        let end = l3 + 40 + be16(d, l3 + 4) as usize;
        if d.len() < end {
            return None;
        }
        tuple.src = u128::from_be_bytes(d[l3 + 8..l3 + 24].try_into().ok()?);
        tuple.dst = u128::from_be_bytes(d[l3 + 24..l3 + 40].try_into().ok()?);
        tuple.v6 = true;
        let mut nh = d[l3 + 6];
        let mut o = l3 + 40;
        // Hop-by-hop, routing, destination options; fragments are invalid.
        while matches!(nh, 0 | 43 | 60) {
            if end < o + 8 {
                return None;
            }
            let len = (d[o + 1] as usize + 1) * 8;
            nh = d[o];
            o += len;
        }
        if nh == 44 || o > end {
            return None;
        }
        Some((o, nh, end))
    }
}

fn is_icmp_error(v6: bool, t: u8) -> bool {
    if v6 {
        matches!(t, 1..=4)
    } else {
        matches!(t, 3 | 4 | 5 | 11 | 12)
    }
}

/// L4 ports (or ICMP echo id/kind) into `tuple`; `None` for a truncated
/// header or an untrackable ICMP type.
fn l4(
    d: &[u8],
    l4: usize,
    end: usize,
    proto: u8,
    v6: bool,
    p: &mut Parsed,
    inner: bool,
) -> Option<()> {
    let t = &mut p.tuple;
    t.proto = proto;
    match proto {
        TCP | UDP | SCTP => {
            // An ICMP error carries at least the first 8 bytes of L4.
            let need = if inner || proto != TCP { 8 } else { 20 };
            if end < l4 + need {
                return None;
            }
            t.sport = be16(d, l4);
            t.dport = be16(d, l4 + 2);
            if proto == TCP && !inner {
                let off = (d[l4 + 12] >> 4) as usize * 4;
                if off < 20 || end < l4 + off {
                    return None;
                }
                p.tcp_seq = be32(d, l4 + 4);
                p.tcp_ack = be32(d, l4 + 8);
                p.tcp_flags = be16(d, l4 + 12) & 0xfff;
                p.tcp_win = be16(d, l4 + 14);
                p.payload = (end - l4 - off) as u32;
            }
            Some(())
        }
        ICMP | ICMP6 if (proto == ICMP) != v6 => {
            if end < l4 + 8 {
                return None;
            }
            let (ty, code) = (d[l4], d[l4 + 1]);
            let (req, rep) = if v6 { (128, 129) } else { (8, 0) };
            t.sport = be16(d, l4 + 4);
            if ty == req {
                t.dport = ICMP_REQ;
            } else if ty == rep {
                t.dport = ICMP_REP;
            } else {
                return None;
            }
            if !inner {
                p.icmp_type = ty;
                p.icmp_code = code;
            }
            Some(())
        }
        ICMP | ICMP6 => None,
        _ => {
            t.sport = 0;
            t.dport = 0;
            Some(())
        }
    }
}

/// Parses a frame for conntrack. `None`: not trackable (→ `inv`).
pub(crate) fn parse(d: &[u8]) -> Option<Parsed> {
    let (l3, et) = l3_of(d)?;
    let v6 = match et {
        ETH_IPV4 => false,
        ETH_IPV6 => true,
        _ => return None,
    };
    let mut p = Parsed {
        l3,
        v6,
        ..Default::default()
    };
    let (l4o, proto, end) = ip(d, l3, v6, &mut p.tuple)?;
    p.l4 = l4o;
    p.end = end;
    if (proto == ICMP && !v6) || (proto == ICMP6 && v6) {
        if end < l4o + 8 {
            return None;
        }
        let ty = d[l4o];
        if is_icmp_error(v6, ty) {
            p.related = true;
            p.icmp_type = ty;
            p.icmp_code = d[l4o + 1];
            let il3 = l4o + 8;
            let mut it = Tuple::default();
            // The quoted datagram may be cut short: parse against the outer end.
            let (il4, iproto, _) = ip_inner(d, il3, v6, end, &mut it)?;
            p.inner_l3 = il3;
            p.inner_l4 = il4;
            p.tuple = it;
            l4(d, il4, end, iproto, v6, &mut p, true)?;
            return Some(p);
        }
    }
    l4(d, l4o, end, proto, v6, &mut p, false)?;
    Some(p)
}

/// The quoted IP header inside an ICMP error (total length not checked:
/// the quote is usually truncated).
fn ip_inner(
    d: &[u8],
    l3: usize,
    v6: bool,
    end: usize,
    t: &mut Tuple,
) -> Option<(usize, u8, usize)> {
    if !v6 {
        if end < l3 + 20 || d[l3] >> 4 != 4 {
            return None;
        }
        let ihl = (d[l3] & 0xf) as usize * 4;
        if ihl < 20 || end < l3 + ihl || be16(d, l3 + 6) & 0x1fff != 0 {
            return None;
        }
        t.src = be32(d, l3 + 12) as u128;
        t.dst = be32(d, l3 + 16) as u128;
        Some((l3 + ihl, d[l3 + 9], end))
    } else {
        if end < l3 + 40 || d[l3] >> 4 != 6 {
            return None;
        }
        t.src = u128::from_be_bytes(d[l3 + 8..l3 + 24].try_into().ok()?);
        t.dst = u128::from_be_bytes(d[l3 + 24..l3 + 40].try_into().ok()?);
        t.v6 = true;
        Some((l3 + 40, d[l3 + 6], end))
    }
}

/// TCP window scale option of a SYN (`CT_WSCALE_FLAG | shift`), or 0.
pub(crate) fn tcp_wscale(d: &[u8], l4: usize) -> u8 {
    if d.len() < l4 + 20 {
        return 0;
    }
    let off = (d[l4 + 12] >> 4) as usize * 4;
    let end = (l4 + off).min(d.len());
    let mut o = l4 + 20;
    while o < end {
        match d[o] {
            0 => break,
            1 => o += 1,
            3 if o + 3 <= end && d[o + 1] == 3 => {
                return super::tcp::WSCALE_FLAG | d[o + 2].min(14);
            }
            _ => {
                if o + 1 >= end || d[o + 1] < 2 {
                    break;
                }
                o += d[o + 1] as usize;
            }
        }
    }
    0
}

// ------------------------------------------------------------ checksums

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut c = data.chunks_exact(2);
    for w in &mut c {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    if let [b] = c.remainder() {
        sum += (*b as u32) << 8;
    }
    sum
}

/// RFC 1624 incremental update for an even-length span `old → new`.
fn csum_update(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut sum = (!csum) as u32;
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum += (!u16::from_be_bytes([o[0], o[1]])) as u32;
        sum += u16::from_be_bytes([n[0], n[1]]) as u32;
    }
    !fold(sum)
}

fn ipv4_fix(d: &mut [u8], l3: usize) {
    let ihl = (d[l3] & 0xf) as usize * 4;
    d[l3 + 10] = 0;
    d[l3 + 11] = 0;
    let c = !fold(sum16(0, &d[l3..l3 + ihl]));
    d[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Offset of the L4 checksum for `proto` and whether 0 means "none" (UDP/IPv4).
fn l4_csum(proto: u8, v6: bool) -> Option<(usize, bool)> {
    match proto {
        TCP => Some((16, false)),
        UDP => Some((6, !v6)),
        ICMP6 => Some((2, false)),
        _ => None,
    }
}

fn adjust_l4(d: &mut [u8], l4: usize, end: usize, proto: u8, v6: bool, old: &[u8], new: &[u8]) {
    let Some((co, zero_none)) = l4_csum(proto, v6) else {
        return;
    };
    if end < l4 + co + 2 {
        return;
    }
    let c = be16(d, l4 + co);
    if zero_none && c == 0 {
        return;
    }
    let mut n = csum_update(c, old, new);
    if proto == UDP && n == 0 {
        n = 0xffff;
    }
    d[l4 + co..l4 + co + 2].copy_from_slice(&n.to_be_bytes());
}

fn addr_bytes(a: u128, v6: bool, buf: &mut [u8; 16]) -> usize {
    if v6 {
        *buf = a.to_be_bytes();
        16
    } else {
        buf[..4].copy_from_slice(&(a as u32).to_be_bytes());
        4
    }
}

/// Rewrites the IP header at `l3` (and the L4 header at `l4`, checksum
/// included when `fix_l4`) from tuple `from` to tuple `to`.
#[allow(clippy::too_many_arguments)]
fn rewrite_hdr(
    d: &mut [u8],
    l3: usize,
    l4: usize,
    end: usize,
    v6: bool,
    from: &Tuple,
    to: &Tuple,
    fix_ip: bool,
) {
    let proto = from.proto;
    let mut ob = [0u8; 16];
    let mut nb = [0u8; 16];
    let (so, dso) = if v6 { (8, 24) } else { (12, 16) };
    for (off, o, n) in [(so, from.src, to.src), (dso, from.dst, to.dst)] {
        if o == n {
            continue;
        }
        let len = addr_bytes(o, v6, &mut ob);
        addr_bytes(n, v6, &mut nb);
        d[l3 + off..l3 + off + len].copy_from_slice(&nb[..len]);
        // Pseudo-header (TCP/UDP/ICMPv6).
        adjust_l4(d, l4, end, proto, v6, &ob[..len], &nb[..len]);
    }
    if !v6 && fix_ip {
        ipv4_fix(d, l3);
    }
    if matches!(proto, TCP | UDP | SCTP) && end >= l4 + 4 {
        for (off, o, n) in [(0, from.sport, to.sport), (2, from.dport, to.dport)] {
            if o != n {
                d[l4 + off..l4 + off + 2].copy_from_slice(&n.to_be_bytes());
                adjust_l4(d, l4, end, proto, v6, &o.to_be_bytes(), &n.to_be_bytes());
            }
        }
    }
}

/// NAT of a tracked packet: its tuple `from` becomes `to`.
pub(crate) fn rewrite(d: &mut [u8], p: &Parsed, from: &Tuple, to: &Tuple) {
    rewrite_hdr(d, p.l3, p.l4, p.end, p.v6, from, to, true);
}

/// NAT of an ICMP error: the quoted datagram (tuple `inner_from` → `inner_to`)
/// and the outer addresses that equal the connection's addresses; the ICMP
/// checksum is recomputed.
pub(crate) fn rewrite_related(d: &mut [u8], p: &Parsed, inner_from: &Tuple, inner_to: &Tuple) {
    // Quoted header: IPv4 header checksum fixed; quoted L4 checksums are
    // adjusted only where the quote reaches them.
    let ie = p.end;
    rewrite_hdr(
        d, p.inner_l3, p.inner_l4, ie, p.v6, inner_from, inner_to, true,
    );
    // Outer: the error travels opposite to the quoted packet.
    let (so, dso) = if p.v6 { (8, 24) } else { (12, 16) };
    let mut ob = [0u8; 16];
    let mut nb = [0u8; 16];
    for (off, o, n) in [
        (dso, inner_from.src, inner_to.src),
        (so, inner_from.dst, inner_to.dst),
    ] {
        let len = addr_bytes(o, p.v6, &mut ob);
        if o == n || d[p.l3 + off..p.l3 + off + len] != ob[..len] {
            continue;
        }
        addr_bytes(n, p.v6, &mut nb);
        d[p.l3 + off..p.l3 + off + len].copy_from_slice(&nb[..len]);
    }
    if !p.v6 {
        ipv4_fix(d, p.l3);
    }
    // Full ICMP checksum (ICMPv6: with the pseudo-header).
    let l4 = p.l4;
    d[l4 + 2] = 0;
    d[l4 + 3] = 0;
    let mut sum = sum16(0, &d[l4..p.end]);
    if p.v6 {
        sum = sum16(sum, &d[p.l3 + 8..p.l3 + 40]);
        sum += (p.end - l4) as u32;
        sum += ICMP6 as u32;
    }
    let c = !fold(sum);
    d[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
}
