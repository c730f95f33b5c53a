//! The per-frame forwarding decision (parse + lookup) in ns/frame, with 1, 1 k and 64 k MACs in
//! the table. Frames cycle through the table's MACs in a scrambled order so that larger tables
//! also pay their cache misses, as a busy parent would. `wire_vlan`: the same with every endpoint
//! on VLAN 10 and tagged frames; `wire_source_listed`: every frame's sender is on a source-mode
//! endpoint's list (one more lookup and a flood of two).
//!
//! `cargo bench -p xmacvlan-datapath --bench decide`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use xmacvlan_datapath::frame::MacAddr;
use xmacvlan_datapath::fwd::{decide, Mode, PortId, PortInfo, Table, PARENT};

const FRAMES: usize = 4096;

fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0x42, b[0], b[1], b[2], b[3]])
}

/// A 60-byte IPv4/UDP-sized frame to `dst` from a wire host.
fn frame(dst: MacAddr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&SENDER.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f
}

const SENDER: MacAddr = MacAddr([0x02, 0, 0xc6, 0x12, 0, 0xfe]);

fn table(n: u32, vlan: u16) -> Table {
    let mut t = Table::new(MacAddr([0x02, 0, 0, 0, 0, 1]), 1500);
    for i in 0..n {
        let info = PortInfo { vlan, ..PortInfo::endpoint(mac(i), 1500) };
        t.add_endpoint((i + 1) as PortId, info).expect("distinct ports and MACs");
    }
    t
}

fn tagged(dst: MacAddr) -> [u8; 64] {
    let mut f = [0u8; 64];
    f[..12].copy_from_slice(&frame(dst)[..12]);
    f[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
    f
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(FRAMES as u64));
    for n in [1u32, 1024, 65_534] {
        let t = table(n, 0);
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
    for n in [1u32, 1024, 65_534] {
        let order = |k: u32| mac(k.wrapping_mul(2_654_435_761) % n);
        let t = table(n, 10);
        let frames: Vec<[u8; 64]> = (0..FRAMES as u32).map(|k| tagged(order(k))).collect();
        g.bench_with_input(BenchmarkId::new("wire_vlan", n), &frames, |b, frames| {
            b.iter(|| {
                for f in frames {
                    black_box(decide(black_box(f), PARENT, &t));
                }
            })
        });
        let mut t = table(n, 0);
        let listener = (n + 1) as PortId;
        t.add_endpoint(listener, PortInfo { mode: Mode::Source, ..PortInfo::endpoint(mac(n), 1500) }).unwrap();
        t.set_sources(listener, &[SENDER]).unwrap();
        let frames: Vec<[u8; 60]> = (0..FRAMES as u32).map(|k| frame(order(k))).collect();
        g.bench_with_input(BenchmarkId::new("wire_source_listed", n), &frames, |b, frames| {
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
