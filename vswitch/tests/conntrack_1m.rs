//! 1M conntrack entries (issue #11 faults): the table holds exactly its
//! configured maximum, every commit over it is refused (packet dropped and
//! counted), and memory stays bounded: a second million of new connections
//! against the full table, and a refill after everything expired, do not
//! grow the resident set. The RSS figures are printed (BENCHMARKS.md).

use std::time::{Duration, Instant};

use plexus_vswitch::conntrack::{Conntrack, CtConfig, CtRequest};
use plexus_vswitch::fuzz::ipv4_frame;

const MAX: usize = 1_000_000;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A UDP frame of flow `i` (distinct 5-tuples: 10.x.y.z:sport -> 172.16.0.1:53).
fn frame(i: u32, base: u32, buf: &mut Vec<u8>) {
    let n = base + i;
    let src = [10, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    let mut l4 = [0u8; 12];
    l4[0..2].copy_from_slice(&(1024 + (n >> 24) as u16).to_be_bytes());
    l4[2..4].copy_from_slice(&53u16.to_be_bytes());
    l4[4..6].copy_from_slice(&12u16.to_be_bytes());
    *buf = ipv4_frame(src, [172, 16, 0, 1], 17, 0, &l4);
}

/// Commits `n` new connections starting at flow `base`; returns how many
/// were refused (each must be dropped).
fn commit_many(ct: &mut Conntrack, base: u32, n: u32, now: Instant) -> u64 {
    let req = CtRequest {
        commit: true,
        ..Default::default()
    };
    let mut buf = Vec::new();
    let mut refused = 0;
    for i in 0..n {
        frame(i, base, &mut buf);
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
         {rss_flood} KiB after 1M refused commits, {rss_refill} KiB after expiry + refill; {:.1?}",
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
