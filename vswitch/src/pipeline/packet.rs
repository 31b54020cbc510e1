//! The packet buffer the pipeline rewrites in place, and the byte-level
//! rewrites (set-field with checksum updates, VLAN/MPLS push/pop, TTLs).
//!
//! Every rewrite here is total: a frame too short for the header an
//! operation needs is left unchanged (the translation only emits operations
//! whose prerequisites the flow key says are present, so this only happens
//! for frames the parser already flagged as truncated).

use plexus_openflow::oxm::FieldId;

/// Bytes kept free in front of the frame so pushes (VLAN, MPLS) don't move
/// the payload.
pub const HEADROOM: usize = 64;

/// A reusable frame buffer with headroom. Load a frame with
/// [`load`](Self::load) (or write into [`raw_mut`](Self::raw_mut) after
/// [`reset`](Self::reset)); the pipeline rewrites it in place.
#[derive(Debug, Clone)]
pub struct PacketBuf {
    buf: Vec<u8>,
    head: usize,
    len: usize,
}

impl Default for PacketBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketBuf {
    /// An empty buffer with room for a 2 KiB frame.
    pub fn new() -> Self {
        Self::with_capacity(2048)
    }

    pub fn with_capacity(cap: usize) -> Self {
        Self {
            buf: vec![0; HEADROOM + cap],
            head: HEADROOM,
            len: 0,
        }
    }

    /// A buffer holding a copy of `frame`.
    pub fn from_slice(frame: &[u8]) -> Self {
        let mut b = Self::with_capacity(frame.len().max(64));
        b.load(frame);
        b
    }

    /// Replaces the contents with a copy of `frame` (no allocation when it fits).
    pub fn load(&mut self, frame: &[u8]) {
        self.head = HEADROOM;
        self.len = frame.len();
        if self.buf.len() < HEADROOM + frame.len() {
            self.buf.resize(HEADROOM + frame.len(), 0);
        }
        self.buf[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
    }

    /// Sets the frame length to `len` bytes at the default headroom and
    /// returns them for the caller to fill (zero-copy receive into the buffer).
    pub fn reset(&mut self, len: usize) -> &mut [u8] {
        self.head = HEADROOM;
        self.len = len;
        if self.buf.len() < HEADROOM + len {
            self.buf.resize(HEADROOM + len, 0);
        }
        &mut self.buf[HEADROOM..HEADROOM + len]
    }

    /// The frame.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.head..self.head + self.len]
    }

    /// The frame, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..self.head + self.len]
    }

    /// Same as [`data_mut`](Self::data_mut).
    pub fn raw_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Opens `n` bytes at offset `at` (moving the bytes before `at` into the
    /// headroom) and returns them.
    pub fn insert(&mut self, at: usize, n: usize) -> &mut [u8] {
        let at = at.min(self.len);
        if self.head < n {
            // Out of headroom: grow at the front.
            let grow = HEADROOM + n;
            let mut nb = vec![0u8; self.buf.len() + grow];
            nb[self.head + grow..self.head + grow + self.len].copy_from_slice(self.data());
            self.buf = nb;
            self.head += grow;
        }
        let h = self.head;
        self.buf.copy_within(h..h + at, h - n);
        self.head -= n;
        self.len += n;
        &mut self.buf[self.head + at..self.head + at + n]
    }

    /// Zero-pads the frame to `min` bytes (no-op when it is longer).
    pub fn pad_to(&mut self, min: usize) {
        if self.len >= min {
            return;
        }
        let end = self.head + min;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        self.buf[self.head + self.len..end].fill(0);
        self.len = min;
    }

    /// Removes `n` bytes at offset `at` (moving the bytes before it forward).
    pub fn remove(&mut self, at: usize, n: usize) {
        if at + n > self.len {
            return;
        }
        let h = self.head;
        self.buf.copy_within(h..h + at, h + n);
        self.head += n;
        self.len -= n;
    }
}

/// Minimum Ethernet frame without FCS: frames a pop shrinks below it are
/// zero-padded back up, as a NIC pads short frames on the wire.
pub(crate) const ETH_MIN_LEN: usize = 60;

pub(crate) const ETH_VLAN: u16 = 0x8100;
pub(crate) const ETH_QINQ: u16 = 0x88a8;
pub(crate) const ETH_IPV4: u16 = 0x0800;
pub(crate) const ETH_IPV6: u16 = 0x86dd;
/// 802.1ah backbone service instance tag (I-TAG).
pub(crate) const ETH_PBB: u16 = 0x88e7;
pub(crate) const ETH_ARP: u16 = 0x0806;
pub(crate) const ETH_MPLS: u16 = 0x8847;
pub(crate) const ETH_MPLS_MC: u16 = 0x8848;

fn be16(d: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([d[o], d[o + 1]])
}

/// Header offsets of a frame.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Hdrs {
    /// Offset of the first VLAN tag (the TPID), if tagged.
    pub vlan: Option<usize>,
    /// Offset of the ethertype after the VLAN tags.
    pub eth_type_off: usize,
    pub eth_type: u16,
    /// Start of the L3 header (MPLS label stack, IP, ARP).
    pub l3: usize,
    /// Start of the L4 header (IP only; first fragment only).
    pub l4: Option<usize>,
    pub proto: u8,
}

pub(crate) fn hdrs(d: &[u8]) -> Option<Hdrs> {
    if d.len() < 14 {
        return None;
    }
    let mut h = Hdrs::default();
    let mut o = 12;
    let mut t = be16(d, o);
    while (t == ETH_VLAN || t == ETH_QINQ) && d.len() >= o + 6 {
        if h.vlan.is_none() {
            h.vlan = Some(o);
        }
        o += 4;
        t = be16(d, o);
    }
    h.eth_type_off = o;
    h.eth_type = t;
    h.l3 = o + 2;
    let l3 = h.l3;
    match t {
        ETH_IPV4 if d.len() >= l3 + 20 => {
            let ihl = (d[l3] & 0xf) as usize * 4;
            h.proto = d[l3 + 9];
            let frag_off = be16(d, l3 + 6) & 0x1fff;
            if ihl >= 20 && d.len() >= l3 + ihl && frag_off == 0 {
                h.l4 = Some(l3 + ihl);
            }
        }
        ETH_IPV6 if d.len() >= l3 + 40 => {
            // No extension-header walk: L4 rewrites apply to plain IPv6.
            h.proto = d[l3 + 6];
            if matches!(h.proto, 6 | 17 | 58 | 132) {
                h.l4 = Some(l3 + 40);
            }
        }
        _ => {}
    }
    Some(h)
}

/// One's-complement sum of `data` (as big-endian 16-bit words) added to `sum`.
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// RFC 1624 incremental update of checksum `csum` for a 16-bit-aligned span
/// changing from `old` to `new` (same even length).
pub(crate) fn csum_update(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut sum = (!csum) as u32;
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum += (!u16::from_be_bytes([o[0], o[1]])) as u32;
        sum += u16::from_be_bytes([n[0], n[1]]) as u32;
    }
    !fold(sum)
}

/// Recomputes the IPv4 header checksum at `l3`.
pub(crate) fn ipv4_fix_csum(d: &mut [u8], l3: usize) {
    let ihl = (d[l3] & 0xf) as usize * 4;
    if ihl < 20 || d.len() < l3 + ihl {
        return;
    }
    d[l3 + 10] = 0;
    d[l3 + 11] = 0;
    let c = !fold(sum16(0, &d[l3..l3 + ihl]));
    d[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Offset of the L4 checksum for `proto`, and whether zero means "none" (UDP/IPv4).
fn l4_csum_off(proto: u8, v4: bool) -> Option<(usize, bool)> {
    match proto {
        6 => Some((16, false)),
        17 => Some((6, v4)),
        58 => Some((2, false)),
        _ => None,
    }
}

/// Applies a pseudo-header (or port) change `old → new` to the L4 checksum.
fn l4_csum_adjust(d: &mut [u8], h: &Hdrs, old: &[u8], new: &[u8]) {
    let Some(l4) = h.l4 else { return };
    let Some((co, zero_none)) = l4_csum_off(h.proto, h.eth_type == ETH_IPV4) else {
        return;
    };
    if d.len() < l4 + co + 2 {
        return;
    }
    let c = be16(d, l4 + co);
    if zero_none && c == 0 {
        return;
    }
    let mut n = csum_update(c, old, new);
    if h.proto == 17 && n == 0 {
        n = 0xffff;
    }
    d[l4 + co..l4 + co + 2].copy_from_slice(&n.to_be_bytes());
}

/// Writes `value` under `mask` into the big-endian span `d[off..off+len]`
/// (`len` ≤ 16), returning the old bytes (padded) for checksum updates.
fn write_be(d: &mut [u8], off: usize, len: usize, value: u128, mask: u128) -> Option<[u8; 16]> {
    if d.len() < off + len {
        return None;
    }
    let mut old = [0u8; 16];
    old[16 - len..].copy_from_slice(&d[off..off + len]);
    let cur = u128::from_be_bytes(old);
    let new = (cur & !mask) | (value & mask);
    let nb = new.to_be_bytes();
    d[off..off + len].copy_from_slice(&nb[16 - len..]);
    Some(old)
}

/// Sets a packet field in the frame (masked), fixing checksums. Fields that
/// are not in the frame (registers, metadata, tunnel) are ignored here.
pub(crate) fn set_field(d: &mut [u8], field: FieldId, value: u128, mask: u128) {
    use FieldId::*;
    let Some(h) = hdrs(d) else { return };
    let l3 = h.l3;
    let v4 = h.eth_type == ETH_IPV4;
    let v6 = h.eth_type == ETH_IPV6;
    match field {
        EthDst => {
            write_be(d, 0, 6, value, mask);
        }
        EthSrc => {
            write_be(d, 6, 6, value, mask);
        }
        VlanVid | VlanPcp | VlanTci => {
            let Some(vo) = h.vlan else { return };
            let (v, m) = match field {
                VlanVid => (value & 0xfff, mask & 0xfff),
                VlanPcp => ((value & 7) << 13, (mask & 7) << 13),
                _ => (value & 0xefff, mask & 0xefff),
            };
            write_be(d, vo + 2, 2, v, m);
        }
        Ipv4Src | Ipv4Dst if v4 => {
            let off = l3 + if field == Ipv4Src { 12 } else { 16 };
            if let Some(old) = write_be(d, off, 4, value, mask) {
                let new: [u8; 4] = d[off..off + 4].try_into().unwrap_or([0; 4]);
                ipv4_fix_csum(d, l3);
                l4_csum_adjust(d, &h, &old[12..], &new);
            }
        }
        ArpSpa | ArpTpa if h.eth_type == ETH_ARP => {
            write_be(
                d,
                l3 + if field == ArpSpa { 14 } else { 24 },
                4,
                value,
                mask,
            );
        }
        ArpSha | ArpTha if h.eth_type == ETH_ARP => {
            write_be(d, l3 + if field == ArpSha { 8 } else { 18 }, 6, value, mask);
        }
        PbbIsid if h.eth_type == ETH_PBB && d.len() >= l3 + 4 => {
            write_be(d, l3 + 1, 3, value, mask);
        }
        ArpOp if h.eth_type == ETH_ARP => {
            write_be(d, l3 + 6, 2, value, mask);
        }
        IpDscp | IpEcn | NwTos if v4 || v6 => {
            let (v, m) = match field {
                IpDscp => ((value & 0x3f) << 2, (mask & 0x3f) << 2),
                IpEcn => (value & 3, mask & 3),
                _ => (value & 0xfc, mask & 0xfc),
            };
            if v4 {
                write_be(d, l3 + 1, 1, v, m);
                ipv4_fix_csum(d, l3);
            } else {
                // Traffic class spans bytes 0-1: bits 4..12 of the first word.
                write_be(d, l3, 2, v << 4, m << 4);
            }
        }
        IpTtl if v4 => {
            write_be(d, l3 + 8, 1, value, mask);
            ipv4_fix_csum(d, l3);
        }
        IpTtl if v6 => {
            write_be(d, l3 + 7, 1, value, mask);
        }
        Ipv6Src | Ipv6Dst if v6 => {
            let off = l3 + if field == Ipv6Src { 8 } else { 24 };
            if let Some(old) = write_be(d, off, 16, value, mask) {
                let new: [u8; 16] = d[off..off + 16].try_into().unwrap_or([0; 16]);
                l4_csum_adjust(d, &h, &old, &new);
            }
        }
        Ipv6Flabel if v6 => {
            write_be(d, l3, 4, value & 0xfffff, mask & 0xfffff);
        }
        TcpSrc | TcpDst | UdpSrc | UdpDst | SctpSrc | SctpDst => {
            let Some(l4) = h.l4 else { return };
            let ok = matches!(
                (field, h.proto),
                (TcpSrc | TcpDst, 6) | (UdpSrc | UdpDst, 17) | (SctpSrc | SctpDst, 132)
            );
            if !ok {
                return;
            }
            let off = l4
                + if matches!(field, TcpSrc | UdpSrc | SctpSrc) {
                    0
                } else {
                    2
                };
            if let Some(old) = write_be(d, off, 2, value, mask) {
                let new = [d[off], d[off + 1]];
                if h.proto == 132 {
                    sctp_fix_crc(d, l4);
                } else {
                    l4_csum_adjust(d, &h, &old[14..], &new);
                }
            }
        }
        Icmpv4Type | Icmpv4Code | Icmpv6Type | Icmpv6Code => {
            let Some(l4) = h.l4 else { return };
            let ok = matches!(
                (field, h.proto, v4),
                (Icmpv4Type | Icmpv4Code, 1, true) | (Icmpv6Type | Icmpv6Code, 58, false)
            );
            if !ok || d.len() < l4 + 4 {
                return;
            }
            let old = [d[l4], d[l4 + 1]];
            let off = l4 + usize::from(matches!(field, Icmpv4Code | Icmpv6Code));
            write_be(d, off, 1, value, mask);
            let new = [d[l4], d[l4 + 1]];
            let c = be16(d, l4 + 2);
            let n = csum_update(c, &old, &new);
            d[l4 + 2..l4 + 4].copy_from_slice(&n.to_be_bytes());
        }
        MplsLabel | MplsTc | MplsBos | MplsTtl if matches!(h.eth_type, ETH_MPLS | ETH_MPLS_MC) => {
            let (v, m) = match field {
                MplsLabel => ((value & 0xfffff) << 12, (mask & 0xfffff) << 12),
                MplsTc => ((value & 7) << 9, (mask & 7) << 9),
                MplsBos => ((value & 1) << 8, (mask & 1) << 8),
                _ => (value & 0xff, mask & 0xff),
            };
            write_be(d, l3, 4, v, m);
        }
        // OpenFlow 1.3 set-field on the ethertype: a plain rewrite of the
        // (innermost, after VLAN tags) ethertype; the payload is unchanged.
        EthType => {
            write_be(d, h.eth_type_off, 2, value & 0xffff, mask & 0xffff);
        }
        // IP protocol / IPv6 next header: header rewrite, IPv4 header
        // checksum and the old L4 checksum's pseudo-header share updated.
        IpProto if v4 || v6 => {
            let off = l3 + if v4 { 9 } else { 6 };
            if let Some(old) = write_be(d, off, 1, value & 0xff, mask & 0xff) {
                let new = [0, d[off]];
                if v4 {
                    ipv4_fix_csum(d, l3);
                }
                l4_csum_adjust(d, &h, &[0, old[15]], &new);
            }
        }
        Ipv6NdTarget | Ipv6NdSll | Ipv6NdTll if v6 && h.proto == 58 => {
            let Some(l4) = h.l4 else { return };
            let Some(off) = nd_field_off(d, l4, field) else {
                return;
            };
            let len = if field == Ipv6NdTarget { 16 } else { 6 };
            if let Some(old) = write_be(d, off, len, value, mask) {
                let new: [u8; 16] = {
                    let mut n = [0u8; 16];
                    n[16 - len..].copy_from_slice(&d[off..off + len]);
                    n
                };
                // `off - l4` is even, so the span is word-aligned for the
                // ICMPv6 checksum.
                l4_csum_adjust(d, &h, &old[16 - len..], &new[16 - len..]);
            }
        }
        _ => {}
    }
}

/// Offset of an ND field in an ICMPv6 neighbor solicitation/advertisement
/// at `l4`: the target address, or the MAC of the first source (type 1) /
/// target (type 2) link-layer address option.
fn nd_field_off(d: &[u8], l4: usize, field: FieldId) -> Option<usize> {
    let ty = *d.get(l4)?;
    if !matches!(ty, 135 | 136) || d.len() < l4 + 24 {
        return None;
    }
    let want = match field {
        FieldId::Ipv6NdTarget => return Some(l4 + 8),
        FieldId::Ipv6NdSll => 1,
        FieldId::Ipv6NdTll => 2,
        _ => return None,
    };
    let mut o = l4 + 24;
    // Bounded: every option is at least 8 bytes long.
    while d.len() >= o + 8 {
        let (t, n) = (d[o], d[o + 1] as usize * 8);
        if n == 0 {
            return None;
        }
        if t == want && n >= 8 {
            return Some(o + 2);
        }
        o += n;
    }
    None
}

/// SCTP CRC32c over the whole packet (checksum field zeroed first).
fn sctp_fix_crc(d: &mut [u8], l4: usize) {
    if d.len() < l4 + 12 {
        return;
    }
    d[l4 + 8..l4 + 12].fill(0);
    let mut crc: u32 = !0;
    for &b in &d[l4..] {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    let crc = !crc;
    d[l4 + 8..l4 + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Pushes a VLAN tag with TPID `tpid`; VID/PCP are copied from the current
/// outer tag, zero otherwise (OpenFlow 1.3 §B.6.2).
pub(crate) fn push_vlan(p: &mut PacketBuf, tpid: u16) {
    if p.len() < 14 {
        return;
    }
    let h = hdrs(p.data()).unwrap_or_default();
    let tci = match h.vlan {
        Some(o) => be16(p.data(), o + 2),
        None => 0,
    };
    let tag = p.insert(12, 4);
    tag[0..2].copy_from_slice(&tpid.to_be_bytes());
    tag[2..4].copy_from_slice(&tci.to_be_bytes());
}

/// Pops the outer VLAN tag, if any.
pub(crate) fn pop_vlan(p: &mut PacketBuf) {
    if let Some(Hdrs { vlan: Some(o), .. }) = hdrs(p.data()) {
        p.remove(o, 4);
        p.pad_to(ETH_MIN_LEN);
    }
}

/// Pushes an MPLS label stack entry and sets the ethertype. On an MPLS
/// packet the new entry is a copy of the outer one (label, TC, TTL) with BoS
/// clear; otherwise label 0, TC 0, BoS set and the TTL copied from the IP
/// header (0 when there is none), as the OpenFlow 1.3 switch tester expects.
pub(crate) fn push_mpls(p: &mut PacketBuf, ethertype: u16) {
    let Some(h) = hdrs(p.data()) else { return };
    let d = p.data();
    let lse: u32 = match h.eth_type {
        ETH_MPLS | ETH_MPLS_MC if d.len() >= h.l3 + 4 => {
            u32::from_be_bytes([d[h.l3], d[h.l3 + 1], d[h.l3 + 2], d[h.l3 + 3]]) & !0x100
        }
        ETH_IPV4 if d.len() >= h.l3 + 20 => 0x100 | d[h.l3 + 8] as u32,
        ETH_IPV6 if d.len() >= h.l3 + 40 => 0x100 | d[h.l3 + 7] as u32,
        _ => 0x100,
    };
    let l3 = h.l3;
    let slot = p.insert(l3, 4);
    slot.copy_from_slice(&lse.to_be_bytes());
    // The ethertype moved 4 bytes towards the front with everything before l3.
    let d = p.data_mut();
    d[l3 - 2..l3].copy_from_slice(&ethertype.to_be_bytes());
}

/// 802.1ah `push_pbb`: a new outer Ethernet header (B-DA/B-SA copied from
/// the current DA/SA, ethertype `ethertype`) and an I-TAG (PCP/DEI/UCA 0,
/// I-SID 0) in front of the whole current frame, which becomes the
/// customer frame.
pub(crate) fn push_pbb(p: &mut PacketBuf, ethertype: u16) {
    if p.len() < 14 {
        return;
    }
    let mut hdr = [0u8; 18];
    hdr[..12].copy_from_slice(&p.data()[..12]);
    hdr[12..14].copy_from_slice(&ethertype.to_be_bytes());
    let slot = p.insert(0, 18);
    slot.copy_from_slice(&hdr);
}

/// 802.1ah `pop_pbb`: removes the backbone header (outer Ethernet, any
/// B-tag, I-TAG); the customer frame that followed is the packet.
pub(crate) fn pop_pbb(p: &mut PacketBuf) {
    let Some(h) = hdrs(p.data()) else { return };
    if h.eth_type != ETH_PBB || p.len() < h.l3 + 4 + 14 {
        return;
    }
    p.remove(0, h.l3 + 4);
    p.pad_to(ETH_MIN_LEN);
}

/// Pops the top MPLS entry and sets the ethertype to `ethertype`.
pub(crate) fn pop_mpls(p: &mut PacketBuf, ethertype: u16) {
    let Some(h) = hdrs(p.data()) else { return };
    if !matches!(h.eth_type, ETH_MPLS | ETH_MPLS_MC) || p.len() < h.l3 + 4 {
        return;
    }
    let l3 = h.l3;
    p.data_mut()[l3 - 2..l3].copy_from_slice(&ethertype.to_be_bytes());
    // Remove the LSE: shift the Ethernet header (up to and incl. ethertype) forward.
    p.remove(l3, 4);
    p.pad_to(ETH_MIN_LEN);
}

/// The IP DSCP (IPv4 or IPv6), if the frame is IP.
pub(crate) fn ip_dscp(d: &[u8]) -> Option<u8> {
    let h = hdrs(d)?;
    match h.eth_type {
        ETH_IPV4 => d.get(h.l3 + 1).map(|b| b >> 2),
        ETH_IPV6 if d.len() >= h.l3 + 2 => Some(((be16(d, h.l3) >> 6) & 0x3f) as u8),
        _ => None,
    }
}

/// OFPMBT_DSCP_REMARK: raises the drop precedence of the DSCP by
/// `prec_level` (the AF drop-precedence bits 1..2 of the DSCP, saturating
/// at 3, as in RFC 2597: AF21 (18) + 1 = AF22 (20)).
pub(crate) fn dscp_remark(d: &mut [u8], prec_level: u8) {
    let Some(dscp) = ip_dscp(d) else { return };
    let prec = ((dscp >> 1) & 3).saturating_add(prec_level).min(3);
    let new = (dscp & !0x06) | (prec << 1);
    if new != dscp {
        set_field(d, FieldId::IpDscp, new as u128, 0x3f);
    }
}

/// The IP TTL / hop limit, if IP.
pub(crate) fn ip_ttl(d: &[u8]) -> Option<u8> {
    let h = hdrs(d)?;
    match h.eth_type {
        ETH_IPV4 if d.len() >= h.l3 + 20 => Some(d[h.l3 + 8]),
        ETH_IPV6 if d.len() >= h.l3 + 40 => Some(d[h.l3 + 7]),
        _ => None,
    }
}

/// Sets the IP TTL / hop limit.
pub(crate) fn set_ip_ttl(d: &mut [u8], ttl: u8) {
    set_field(d, FieldId::IpTtl, ttl as u128, 0xff);
}

/// The top MPLS TTL, if MPLS.
pub(crate) fn mpls_ttl(d: &[u8]) -> Option<u8> {
    let h = hdrs(d)?;
    (matches!(h.eth_type, ETH_MPLS | ETH_MPLS_MC) && d.len() >= h.l3 + 4).then(|| d[h.l3 + 3])
}

pub(crate) fn set_mpls_ttl(d: &mut [u8], ttl: u8) {
    set_field(d, FieldId::MplsTtl, ttl as u128, 0xff);
}

/// TTL of the header below the top MPLS entry (next LSE or IP), for copy-TTL-in.
pub(crate) fn inner_ttl_set(d: &mut [u8], ttl: u8) {
    let Some(h) = hdrs(d) else { return };
    if !matches!(h.eth_type, ETH_MPLS | ETH_MPLS_MC) || d.len() < h.l3 + 4 {
        return;
    }
    let bos = d[h.l3 + 2] & 1 != 0;
    let inner = h.l3 + 4;
    if !bos {
        if d.len() >= inner + 4 {
            d[inner + 3] = ttl;
        }
    } else if d.len() > inner {
        match d[inner] >> 4 {
            4 if d.len() >= inner + 20 => {
                d[inner + 8] = ttl;
                ipv4_fix_csum(d, inner);
            }
            6 if d.len() >= inner + 40 => d[inner + 7] = ttl,
            _ => {}
        }
    }
}

/// TTL of the header below the top MPLS entry.
pub(crate) fn inner_ttl(d: &[u8]) -> Option<u8> {
    let h = hdrs(d)?;
    if !matches!(h.eth_type, ETH_MPLS | ETH_MPLS_MC) || d.len() < h.l3 + 4 {
        return None;
    }
    let bos = d[h.l3 + 2] & 1 != 0;
    let inner = h.l3 + 4;
    if !bos {
        return (d.len() >= inner + 4).then(|| d[inner + 3]);
    }
    match d.get(inner)? >> 4 {
        4 if d.len() >= inner + 20 => Some(d[inner + 8]),
        6 if d.len() >= inner + 40 => Some(d[inner + 7]),
        _ => None,
    }
}
