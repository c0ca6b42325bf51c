//! Throughput of each stage on generated input: gunzip, and each parser from decompressed bytes to
//! an Arrow batch. Reported in bytes/s of decompressed input.

use std::hint::black_box;

use bunker_benches::Inputs;
use bunker_ingest::ObjectContext;
use bunker_ingest::decode::{Limits, decompress};
use bunker_ingest::pipeline::parse_content;
use bunker_schemas::LogTable;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// CloudTrail events in the generated archive the benches read (flow and DNS come in proportion).
const EVENTS: u64 = 20_000;
const SEED: u64 = 42;

fn parsers(c: &mut Criterion) {
    let inputs = Inputs::generate(EVENTS, SEED).expect("generate inputs");
    let mut group = c.benchmark_group("parse");
    for table in LogTable::ALL {
        let objects: Vec<_> = inputs.objects.iter().filter(|(t, _, _)| *t == table).collect();
        group.throughput(Throughput::Bytes(inputs.bytes(table)));
        group.bench_function(table.name(), |b| {
            b.iter(|| {
                let mut rows = 0;
                for (_, key, content) in &objects {
                    // simd-json parses in place, so each iteration parses a fresh copy.
                    let mut data = content.clone();
                    let ctx = ObjectContext { bucket: "", key, key_date: None };
                    rows += parse_content(table, &mut data, &ctx).expect("parse").batch.num_rows();
                }
                black_box(rows)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("gunzip");
    let total: u64 = inputs.objects.iter().map(|(_, _, c)| c.len() as u64).sum();
    group.throughput(Throughput::Bytes(total));
    group.bench_function("all_objects", |b| {
        b.iter(|| {
            let mut n = 0;
            for stored in &inputs.compressed {
                n += decompress("bench", stored.clone(), Limits::default()).expect("gunzip").len();
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = parsers
}
criterion_main!(benches);
