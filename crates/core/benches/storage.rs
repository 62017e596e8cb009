//! Storage benchmarks: a 100,000-item space document (one change per text, as typed) saved as
//! one snapshot, loaded back, and listed (what a cold start does before the first render).
//!
//! `cargo bench -p ferry-core --bench storage`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use ferry_core::{DeviceId, Replica, SpaceDoc, SpaceSecret};

const ITEMS: usize = 100_000;
const T0: u64 = 1_700_000_000_000;

fn storage(c: &mut Criterion) {
    let device = DeviceId::random();
    let mut replica = Replica::new(device, "bench", &SpaceSecret::random()).expect("replica");
    for i in 0..ITEMS {
        replica
            .add_text(
                &format!("note number {i}, written while testing"),
                T0 + i as u64,
            )
            .expect("add");
    }
    let snapshot = replica.doc_mut().save();
    let actor = Replica::actor_for(device);
    let (loaded, bad) = SpaceDoc::load(&actor, [snapshot.as_slice()]).expect("load");
    assert!(bad.is_empty());
    assert_eq!(loaded.items().len(), ITEMS);
    println!(
        "100,000-item snapshot: {} bytes ({:.1} B/item)",
        snapshot.len(),
        snapshot.len() as f64 / ITEMS as f64
    );

    let mut group = c.benchmark_group("100,000 items");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("save (snapshot)", |b| {
        b.iter(|| black_box(replica.doc_mut().save()))
    });
    // Seconds per run: one run per sample, ten samples.
    group
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("load (snapshot)", |b| {
        b.iter(|| black_box(SpaceDoc::load(&actor, [snapshot.as_slice()]).expect("load")))
    });
    group.bench_function("list items", |b| b.iter(|| black_box(loaded.items())));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    targets = storage
}
criterion_main!(benches);
