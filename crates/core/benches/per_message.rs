//! What one message costs as the history grows: a device (the core `Device` engine the app
//! runs) with an empty history and one with 100,000 items each receive one new text from a
//! connected peer (sealed frames, sync, handshake done beforehand); the engine's effects carry
//! the view patch of the rows, and the changed rows are read, which is all a view needs.
//!
//! Only the receiving side is timed (the engine's frame handling: open, merge, reply, the row
//! patches; reading the changed items). The ratio 100k / empty is printed and written to
//! `$FERRY_BENCH_OUT/core_per_message.json`; near 1 means the per-message cost does not grow
//! with the history.
//!
//! Measured 2026-12-07 (through the `Device` engine): ~0.16 ms on an empty history, ~0.34 ms
//! at 100k (median ratio 2.2; criterion's means 0.21 vs 0.25 ms). 2026-12-02 night (the bare
//! replica): ~0.25 ms and ~0.46 ms (ratio ~1.8).
//! It was ~29 ms at 100k (ratio ~100) before the vendored automerge's patches
//! (`crates/automerge/FERRY_PATCH.md`): a walk of the whole change graph on every sync
//! message, and applying a change by reading every key of the items map before it.
//!
//! `cargo bench -p ferry-core --bench per_message` (`FERRY_BENCH_HISTORY=20000` for a
//! smaller long history).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ferry_core::device::{self, Device, LinkEvent, LocalState, ViewPatch};
use ferry_core::{DeviceId, Effect, HistoryPatch, Input, Lane, PeerKey, Replica, SpaceSecret};

mod common;
use common::{Pair, reload};

const T0: u64 = 1_700_000_000_000;
/// The long history; `FERRY_BENCH_HISTORY` overrides it (e.g. for profiling a smaller one).
fn big() -> usize {
    std::env::var("FERRY_BENCH_HISTORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The receiving device (`a`, knowing the writer as peer "b") and the writer `b`.
struct Receiving {
    a: Device,
    b: Replica,
}

/// Two connected devices sharing a history of `items` texts (`a` receives).
fn connected(items: usize) -> Receiving {
    let secret = SpaceSecret::random();
    let (da, db) = (DeviceId::random(), DeviceId::random());
    let mut writer = Replica::new(da, "a", &secret).expect("replica");
    for i in 0..items {
        writer
            .add_text(
                &format!("note {i}: a line of an ordinary length"),
                T0 + i as u64,
            )
            .expect("add");
    }
    let snapshot = writer.doc_mut().save();
    let mut p = Pair::new(
        reload(da, "a", &snapshot, &secret),
        reload(db, "b", &snapshot, &secret),
    );
    p.connect();
    p.a.take_changes();
    let Pair { a, b, .. } = p;
    Receiving {
        a: Device::new(a, LocalState::new(da, "a".into())),
        b,
    }
}

/// The frames a replica sends.
fn frames(effects: &[Effect]) -> Vec<Vec<u8>> {
    effects
        .iter()
        .filter_map(|e| e.main_frame().map(<[u8]>::to_vec))
        .collect()
}

/// `b` writes one text; `a` receives it. Returns the time `a` spent on it, start to patch.
fn one_message(p: &mut Receiving, n: u64) -> Duration {
    let (_, effects) =
        p.b.add_text(&format!("incoming {n}"), T0 + 10_000_000 + n)
            .expect("add");
    let started = Instant::now();
    let mut out = Vec::new();
    for bytes in frames(&effects) {
        let event = LinkEvent::Frame {
            peer: PeerKey::rtc("b"),
            lane: Lane::Main,
            bytes,
        };
        out.extend(
            p.a.handle(device::Input::Link { event, now: T0 })
                .expect("frame"),
        );
    }
    let patches: Vec<HistoryPatch> = out
        .iter()
        .filter_map(|e| match e {
            device::Effect::View(ViewPatch::Items(p)) => Some(p.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let history = p.a.replica().history();
    let rows: Vec<_> = patches
        .iter()
        .filter_map(|patch| match patch {
            HistoryPatch::Added(id) | HistoryPatch::Changed(id) => history.get(*id).cloned(),
            HistoryPatch::Removed(_) => None,
        })
        .collect();
    black_box(rows);
    let spent = started.elapsed();
    assert_eq!(patches.len(), 1, "exactly the new item changed");
    // The replies go back and forth until both sides are quiet (not timed).
    let mut to_b: Vec<Vec<u8>> = out
        .iter()
        .filter_map(|e| e.sent_frame().map(<[u8]>::to_vec))
        .collect();
    while !to_b.is_empty() {
        let mut to_a = Vec::new();
        for frame in to_b.drain(..) {
            to_a.extend(frames(&p.b.handle(Input::Frame {
                peer: "a".into(),
                frame,
            })));
        }
        for bytes in to_a {
            let event = LinkEvent::Frame {
                peer: PeerKey::rtc("b"),
                lane: Lane::Main,
                bytes,
            };
            for e in
                p.a.handle(device::Input::Link { event, now: T0 })
                    .expect("frame")
            {
                if let device::Effect::Send { frame, .. } = e {
                    to_b.push(frame);
                }
            }
        }
    }
    spent
}

fn per_message(c: &mut Criterion) {
    let mut empty = connected(0);
    let big_n = big();
    let mut big = connected(big_n);
    // Plain medians too, for the ratio written to the bench table.
    let median = |p: &mut Receiving, base: u64| {
        let mut times: Vec<Duration> = (0..200).map(|n| one_message(p, base + n)).collect();
        times.sort();
        times[times.len() / 2]
    };
    let (e, b) = (median(&mut empty, 0), median(&mut big, 0));
    let ratio = b.as_secs_f64() / e.as_secs_f64();
    println!(
        "\none incoming text, then patch: empty history {:.1} µs, {big_n} items {:.1} µs, ratio {ratio:.2}",
        e.as_secs_f64() * 1e6,
        b.as_secs_f64() * 1e6
    );
    if let Some(dir) = std::env::var_os("FERRY_BENCH_OUT") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("bench output dir");
        std::fs::write(
            dir.join("core_per_message.json"),
            format!(
                "{{\"history\":{big_n},\"empty_us\":{:.2},\"big_us\":{:.2},\"ratio\":{ratio:.4}}}\n",
                e.as_secs_f64() * 1e6,
                b.as_secs_f64() * 1e6
            ),
        )
        .expect("write core_per_message.json");
    }
    let mut group = c.benchmark_group("one incoming text, then view patch");
    for (name, pair) in [("empty history", &mut empty), ("long history", &mut big)] {
        let mut n = 1_000;
        group.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        n += 1;
                        one_message(pair, n)
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = per_message
}
criterion_main!(benches);
