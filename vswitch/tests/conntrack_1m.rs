//! 1M conntrack entries (issue #11 faults): the table holds exactly its
//! configured maximum, every commit over it is refused (packet dropped and
//! counted), and memory stays bounded: a flood of new connections against
//! the full table, and new connections after everything expired (reusing
//! the freed slots), do not grow the resident set. The RSS figures are printed (BENCHMARKS.md).

use std::time::{Duration, Instant};

use plexus_vswitch::conntrack::{Conntrack, CtConfig, CtRequest};
use plexus_vswitch::fuzz::ipv4_frame;

const MAX: usize = 1_000_000;
const FLOOD: u32 = 200_000;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Rewrites `buf` (a UDP frame from [`ipv4_frame`]) into flow `n`:
/// 10.x.y.z:sport -> 172.16.0.1:53, distinct 5-tuples; IPv4 header
/// checksum recomputed, UDP checksum 0 (none).
fn frame(n: u32, buf: &mut [u8]) {
    buf[26..30].copy_from_slice(&[10, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    buf[34..36].copy_from_slice(&(1024 + (n >> 24) as u16).to_be_bytes());
    buf[40..42].copy_from_slice(&[0, 0]);
    buf[24..26].copy_from_slice(&[0, 0]);
    let mut s: u32 = buf[14..34]
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    buf[24..26].copy_from_slice(&(!(s as u16)).to_be_bytes());
}

/// Commits `n` new connections starting at flow `base`; returns how many
/// were refused (each must be dropped).
fn commit_many(ct: &mut Conntrack, base: u32, n: u32, now: Instant) -> u64 {
    let req = CtRequest {
        commit: true,
        ..Default::default()
    };
    let mut l4 = [0u8; 12];
    l4[2..4].copy_from_slice(&53u16.to_be_bytes());
    l4[4..6].copy_from_slice(&12u16.to_be_bytes());
    let mut buf = ipv4_frame([10, 0, 0, 0], [172, 16, 0, 1], 17, 0, &l4);
    let mut refused = 0;
    for i in 0..n {
        frame(base + i, &mut buf);
        let r = ct.execute(&mut buf, &req, now);
        if r.drop {
            refused += 1;
        }
    }
    refused
}

#[test]
fn one_million_entries_bounded() {
    let t0 = Instant::now();
    let mut ct = Conntrack::new(
        CtConfig {
            max_conns: MAX,
            ..Default::default()
        },
        t0,
    );
    let rss0 = rss_kib();
    // Fill to the maximum and 10 % beyond.
    let refused = commit_many(&mut ct, 0, MAX as u32 + MAX as u32 / 10, t0);
    assert_eq!(ct.len(), MAX, "table holds its configured maximum");
    assert_eq!(
        refused,
        MAX as u64 / 10,
        "every commit over the maximum refused"
    );
    assert_eq!(ct.counters.table_full, MAX as u64 / 10);
    let rss_full = rss_kib();
    // A second million of new connections against the full table.
    let refused = commit_many(&mut ct, 2 * MAX as u32, MAX as u32, t0);
    assert_eq!(refused, MAX as u64);
    assert_eq!(ct.len(), MAX);
    let rss_flood = rss_kib();
    // Everything expires (UDP: 60 s), then a new million fills it again.
    let later = t0 + Duration::from_secs(300);
    ct.advance(later);
    assert_eq!(ct.len(), 0, "all connections expired");
    let refused = commit_many(&mut ct, 4 * MAX as u32, MAX as u32, later);
    assert_eq!(refused, 0);
    assert_eq!(ct.len(), MAX);
    ct.check_invariants();
    let rss_refill = rss_kib();
    let per_entry = (rss_full - rss0) * 1024 / MAX as u64;
    println!(
        "conntrack {MAX} entries: RSS {rss0} KiB empty, {rss_full} KiB full ({per_entry} B/entry), \
         {rss_flood} KiB after {FLOOD} refused commits, {rss_refill} KiB after expiry + {FLOOD} new; {:.1?}",
        t0.elapsed()
    );
    // Bounded: refused commits and a refill of freed slots allocate
    // (almost) nothing; 5 % slack for allocator noise.
    assert!(
        rss_flood <= rss_full + rss_full / 20,
        "RSS grew from {rss_full} to {rss_flood} KiB with the table full"
    );
    assert!(
        rss_refill <= rss_full + rss_full / 20,
        "RSS grew from {rss_full} to {rss_refill} KiB on refill after expiry"
    );
    // And the footprint of a full table is what a 1M-entry table needs,
    // not more: under 1 KiB per connection.
    assert!(per_entry < 1024, "{per_entry} B per connection");
}
