//! Runs the fuzz entry points (the same ones cargo-fuzz drives,
//! `vswitch/fuzz/`) on a deterministic corpus: real frames of every kind the
//! parser knows (built with etherparse), their truncations and bit flips,
//! and random frames, through the parser and through twin pipelines (cached
//! and uncached) holding a fixed flow table. Bounded to a few seconds;
//! `VSWITCH_FUZZ_ITERS` scales the random part.

use etherparse::{IcmpEchoHeader, Icmpv4Type, Icmpv6Type, PacketBuilder};
use plexus_vswitch::fuzz::{Out, Twin, ipv4_check, parse_frame, pipeline_frames};

const M1: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const M2: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const BCAST: [u8; 6] = [0xff; 6];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn iters(default: usize) -> usize {
    std::env::var("VSWITCH_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Real frames: IPv4/IPv6 TCP/UDP/ICMP, VLAN-tagged, ARP, MPLS, LLC, IPv4
/// fragments and options.
fn seeds() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let mut w = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = Vec::new();
        f(&mut b);
        v.push(b);
    };
    for (src, dst) in [
        ([10, 0, 0, 5], [10, 0, 0, 9]),
        ([192, 168, 1, 1], [8, 8, 8, 8]),
    ] {
        w(&|b| {
            PacketBuilder::ethernet2(M1, M2)
                .ipv4(src, dst, 64)
                .udp(1234, 53)
                .write(b, &[0xab; 20])
                .unwrap()
        });
        w(&|b| {
            PacketBuilder::ethernet2(M1, M2)
                .ipv4(src, dst, 1)
                .udp(1234, 53)
                .write(b, &[1; 3])
                .unwrap()
        });
        w(&|b| {
            PacketBuilder::ethernet2(M1, M2)
                .ipv4(src, dst, 64)
                .tcp(40000, 80, 1000, 4096)
                .syn()
                .write(b, &[0x55; 11])
                .unwrap()
        });
        w(&|b| {
            PacketBuilder::ethernet2(M1, M2)
                .ipv4(src, dst, 64)
                .icmpv4(Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 7, seq: 1 }))
                .write(b, &[9; 8])
                .unwrap()
        });
        w(&|b| {
            PacketBuilder::ethernet2(M1, BCAST)
                .single_vlan(100.try_into().unwrap())
                .ipv4(src, dst, 64)
                .udp(5, 53)
                .write(b, &[7; 10])
                .unwrap()
        });
    }
    w(&|b| {
        PacketBuilder::ethernet2(M1, M2)
            .ipv6(
                [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .udp(546, 547)
            .write(b, &[3; 16])
            .unwrap()
    });
    w(&|b| {
        PacketBuilder::ethernet2(M1, M2)
            .ipv6(
                [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                255,
            )
            .icmpv6(Icmpv6Type::EchoRequest(IcmpEchoHeader { id: 1, seq: 2 }))
            .write(b, &[1; 4])
            .unwrap()
    });
    w(&|b| {
        PacketBuilder::ethernet2(M1, M2)
            .ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .tcp(1, 2, 3, 4)
            .write(b, &[])
            .unwrap()
    });
    // ARP request.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&M1);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&M1);
    arp.extend_from_slice(&[10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 10, 0, 0, 9]);
    v.push(arp);
    // MPLS (label 42, bottom of stack, TTL 64) over the first IPv4 frame.
    let ip = v[0][14..].to_vec();
    let mut mpls = [M2, M1].concat();
    mpls.extend_from_slice(&[0x88, 0x47, 0x00, 0x02, 0xa1, 64]);
    mpls.extend_from_slice(&ip);
    v.push(mpls);
    // IPv4 fragment (MF, offset 0) and a header with options (IHL 6).
    let mut frag = v[0].clone();
    frag[14 + 6] = 0x20;
    fix_ipv4_csum(&mut frag);
    v.push(frag);
    let mut opts = v[2][..14].to_vec();
    let mut hdr = v[2][14..34].to_vec();
    hdr[0] = 0x46;
    let total = u16::from_be_bytes([hdr[2], hdr[3]]) + 4;
    hdr[2..4].copy_from_slice(&total.to_be_bytes());
    opts.extend_from_slice(&hdr);
    opts.extend_from_slice(&[1, 1, 1, 0]);
    opts.extend_from_slice(&v[2][34..]);
    fix_ipv4_csum(&mut opts);
    v.push(opts);
    // 802.3 LLC/SNAP and a runt.
    let mut llc = [M2, M1].concat();
    llc.extend_from_slice(&[0, 8, 0xaa, 0xaa, 3, 0, 0, 0, 0x08, 0x00]);
    v.push(llc);
    v.push(vec![0; 13]);
    v
}

fn fix_ipv4_csum(f: &mut [u8]) {
    let ihl = usize::from(f[14] & 0xf) * 4;
    f[24] = 0;
    f[25] = 0;
    let mut acc: u32 = 0;
    for c in f[14..14 + ihl].chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    f[24..26].copy_from_slice(&(!(acc as u16)).to_be_bytes());
}

#[test]
fn seeds_are_well_formed_and_take_several_paths() {
    let seeds = seeds();
    let mut t = Twin::new();
    let mut outputs = 0;
    let mut pins = 0;
    for s in &seeds {
        if s.len() > 20 && s[12..14] == [8, 0] {
            assert_eq!(ipv4_check(s), Some(true), "seed {s:02x?}");
        }
        for port in [1, 2, 3, 4] {
            for o in t.run(port, s) {
                match o {
                    Out::Output { .. } => outputs += 1,
                    Out::PacketIn(_) => pins += 1,
                }
            }
        }
    }
    assert!(
        outputs > 50 && pins > 0,
        "outputs {outputs}, packet-ins {pins}"
    );
    assert!(t.cached.counters.cache_hits > 0);
}

#[test]
fn truncated_and_bit_flipped_frames() {
    let mut t = Twin::new();
    let mut runs = 0;
    for s in seeds() {
        for n in 0..=s.len() {
            parse_frame(&s[..n]);
            t.run(1 + (n % 4) as u32, &s[..n]);
            runs += 1;
        }
        for i in 0..s.len() {
            for bit in [0, 3, 7] {
                let mut m = s.clone();
                m[i] ^= 1 << bit;
                parse_frame(&m);
                t.run(1 + ((i + bit) % 4) as u32, &m);
                runs += 1;
            }
        }
    }
    assert!(runs > 3_000, "corpus too small: {runs}");
}

#[test]
fn random_frames_through_parser_and_pipeline() {
    let seeds = seeds();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut t = Twin::new();
    for i in 0..iters(4_000) {
        // A real header with random bytes after a random cut, or random
        // bytes under a known EtherType.
        let mut f = seeds[i % seeds.len()].clone();
        let cut = (rng.next() as usize) % (f.len() + 1);
        f.truncate(cut.max(12));
        let extra = (rng.next() % 64) as usize;
        f.extend((0..extra).map(|_| rng.next() as u8));
        if i % 5 == 0 && f.len() >= 14 {
            let ty: [u16; 8] = [
                0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x8847, 0x8848, 0x0042,
            ];
            f[12..14].copy_from_slice(&ty[(rng.next() % 8) as usize].to_be_bytes());
        }
        parse_frame(&f);
        t.run((rng.next() % 5) as u32, &f);
    }
    // The byte-record entry point the cargo-fuzz target uses.
    let data: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    pipeline_frames(&data);
}

/// Replays the checked-in corpus of each cargo-fuzz target
/// (`fuzz/seeds/TARGET/*`, minimised from the libFuzzer runs recorded in
/// BENCHMARKS.md, crash inputs included once fixed) through its entry point.
fn replay(target: &str, f: impl Fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        f(&std::fs::read(&p).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn checked_in_seeds_replay() {
    replay("parse", parse_frame);
    replay("pipeline", pipeline_frames);
    replay("conntrack", plexus_vswitch::fuzz::conntrack_sequence);
    replay("vxlan_decap", plexus_vswitch::fuzz::vxlan_datagrams);
}
