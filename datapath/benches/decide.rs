//! The per-frame forwarding decision (parse + lookup) in ns/frame, with 1, 1 k and 64 k MACs in
//! the table. Frames cycle through the table's MACs in a scrambled order so that larger tables
//! also pay their cache misses, as a busy parent would.
//!
//! `cargo bench -p xmacvlan-datapath --bench decide`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::fwd::{decide, PortId, PortInfo, Table, PARENT};

const FRAMES: usize = 4096;

fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0x42, b[0], b[1], b[2], b[3]])
}

/// A 60-byte IPv4/UDP-sized frame to `dst` from a wire host.
fn frame(dst: MacAddr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&[0x02, 0, 0xc6, 0x12, 0, 0xfe]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f
}

fn table(n: u32) -> Table {
    let mut t = Table::new(MacAddr([0x02, 0, 0, 0, 0, 1]), 1500);
    for i in 0..n {
        let info = PortInfo::endpoint(mac(i), 1500);
        t.add_endpoint((i + 1) as PortId, info).expect("distinct ports and MACs");
    }
    t
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(FRAMES as u64));
    for n in [1u32, 1024, 65_534] {
        let t = table(n);
        // Knuth's multiplicative hash spreads consecutive frames over the whole table.
        let frames: Vec<[u8; 60]> = (0..FRAMES as u32).map(|k| frame(mac(k.wrapping_mul(2_654_435_761) % n))).collect();
        g.bench_with_input(BenchmarkId::new("wire_unicast", n), &frames, |b, frames| {
            b.iter(|| {
                for f in frames {
                    black_box(decide(black_box(f), PARENT, &t));
                }
            })
        });
        let miss: Vec<[u8; 60]> = (0..FRAMES as u32).map(|k| frame(mac(n + k))).collect();
        g.bench_with_input(BenchmarkId::new("wire_unknown", n), &miss, |b, frames| {
            b.iter(|| {
                for f in frames {
                    black_box(decide(black_box(f), PARENT, &t));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
