//! Micro-benchmark of the per-packet userspace cost of a forwarding step:
//! fill a [`PacketBatch`] with 64 frames and walk it (what `rx_batch` +
//! `tx_batch` do around the kernel rings). Run: `cargo bench -p plexus-vswitch`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plexus_vswitch::port::{DEFAULT_BATCH, PacketBatch};
use std::hint::black_box;

fn batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("packet_batch");
    for size in [60usize, 1514] {
        let frame = vec![0xa5u8; size];
        let mut b = PacketBatch::new(DEFAULT_BATCH);
        g.throughput(Throughput::Elements(DEFAULT_BATCH as u64));
        g.bench_function(format!("fill_and_walk_64x{size}B"), |bench| {
            bench.iter(|| {
                b.clear();
                while b.push(black_box(&frame)) {}
                let mut sum = 0usize;
                for f in b.iter() {
                    sum += f.len() + f[0] as usize;
                }
                black_box(sum)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, batch);
criterion_main!(benches);
