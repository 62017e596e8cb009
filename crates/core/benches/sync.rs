//! Sync benchmarks on the public `Replica` API, with frames shuttled in order between two
//! replicas the way a data channel delivers them (sealed, packetized, handshake included).
//!
//! - `apply 1,000 items`: a replica holding 1,000 texts meets a fresh replica of the same
//!   space; time from both `PeerUp`s until neither has anything left to send.
//! - `reconnect`: two devices that shared a 1,000-item history restart (reload from their
//!   saved documents) and meet again, resuming from the sync states they persisted at
//!   disconnect, or starting from fresh ones. Besides the time, the bytes on the wire are
//!   printed and written to `$FERRY_BENCH_OUT/core_sync_bytes.json` (ratio persisted / fresh).
//!
//! `cargo bench -p ferry-core --bench sync`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ferry_core::{DeviceId, Replica, SpaceSecret};

mod common;
use common::{Pair, reload};

const T0: u64 = 1_700_000_000_000;
const HISTORY: usize = 1_000;

/// Two devices after a disconnect: their documents and the sync states each saved.
struct Parted {
    secret: SpaceSecret,
    devices: [DeviceId; 2],
    docs: [Vec<u8>; 2],
    saved: [Vec<(DeviceId, Vec<u8>)>; 2],
}

/// Two paired devices write `HISTORY` texts alternately, each synced as it is written, then
/// part.
fn parted() -> Parted {
    let secret = SpaceSecret::random();
    let devices = [DeviceId::random(), DeviceId::random()];
    let mut p = Pair::new(
        Replica::new(devices[0], "a", &secret).expect("replica"),
        Replica::new(devices[1], "b", &secret).expect("replica"),
    );
    p.connect();
    for i in 0..HISTORY {
        p.write(i % 2 == 0, &format!("note {i}"), T0 + i as u64);
    }
    assert_eq!(p.b.items().len(), HISTORY);
    p.disconnect();
    assert!(
        p.saved.iter().all(|s| s.len() == 1),
        "each side saved a sync state"
    );
    Parted {
        docs: [p.a.doc_mut().save(), p.b.doc_mut().save()],
        saved: p.saved.clone(),
        secret,
        devices,
    }
}

/// Both devices restart, each writes `new_each` texts while apart, then they meet.
fn reconnect_setup(parted: &Parted, new_each: usize, persisted: bool) -> Pair {
    let mut a = reload(parted.devices[0], "a", &parted.docs[0], &parted.secret);
    let mut b = reload(parted.devices[1], "b", &parted.docs[1], &parted.secret);
    if persisted {
        a.restore_sync_states(parted.saved[0].clone());
        b.restore_sync_states(parted.saved[1].clone());
    }
    for i in 0..new_each {
        let at = T0 + (HISTORY + i) as u64;
        a.add_text(&format!("a offline {i}"), at).expect("add");
        b.add_text(&format!("b offline {i}"), at).expect("add");
    }
    Pair::new(a, b)
}

fn reconnect_bytes(parted: &Parted, new_each: usize, persisted: bool) -> usize {
    let mut p = reconnect_setup(parted, new_each, persisted);
    let bytes = p.connect();
    assert_eq!(p.a.items().len(), HISTORY + 2 * new_each);
    assert_eq!(p.a.heads(), p.b.heads());
    bytes
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

fn apply_1000_items(c: &mut Criterion) {
    let secret = SpaceSecret::random();
    let source = DeviceId::random();
    let mut a = Replica::new(source, "a", &secret).expect("replica");
    for i in 0..HISTORY {
        a.add_text(&format!("note {i}"), T0 + i as u64)
            .expect("add");
    }
    let snapshot = a.doc_mut().save();
    let setup = || {
        Pair::new(
            reload(source, "a", &snapshot, &secret),
            Replica::new(DeviceId::random(), "fresh", &secret).expect("replica"),
        )
    };
    let mut check = setup();
    let bytes = check.connect();
    assert_eq!(check.b.items().len(), HISTORY);
    println!("apply 1,000 items: {bytes} bytes on the wire");
    c.bench_function("apply 1,000 items (sync into a fresh replica)", |bench| {
        bench.iter_batched(
            setup,
            |mut p| {
                black_box(p.connect());
                p
            },
            BatchSize::PerIteration,
        )
    });
}

fn reconnect(c: &mut Criterion) {
    let parted = parted();
    let mut report = Vec::new();
    println!("\nsync bytes on reconnect after a restart ({HISTORY}-item shared history):");
    println!(
        "| texts written apart (each side) | persisted state | fresh state | persisted / fresh |"
    );
    println!("|---|---|---|---|");
    for new_each in [0, 10] {
        let persisted = reconnect_bytes(&parted, new_each, true);
        let fresh = reconnect_bytes(&parted, new_each, false);
        let ratio = persisted as f64 / fresh as f64;
        println!("| {new_each} | {persisted} B | {fresh} B | {ratio:.3} |");
        report.push(format!(
            "{{\"history\":{HISTORY},\"new_each\":{new_each},\"persisted_bytes\":{persisted},\"fresh_bytes\":{fresh},\"ratio\":{ratio:.4}}}"
        ));
    }
    if let Some(dir) = std::env::var_os("FERRY_BENCH_OUT") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("bench output dir");
        std::fs::write(
            dir.join("core_sync_bytes.json"),
            format!("[{}]\n", report.join(",")),
        )
        .expect("write core_sync_bytes.json");
    }
    let mut group = c.benchmark_group("reconnect after restart, 10 texts apart each");
    for (name, persisted) in [("persisted sync state", true), ("fresh sync state", false)] {
        group.bench_function(name, |bench| {
            bench.iter_batched(
                || reconnect_setup(&parted, 10, persisted),
                |mut p| {
                    black_box(p.connect());
                    p
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = apply_1000_items, reconnect
}
criterion_main!(benches);
