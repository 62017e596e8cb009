//! Property: random concurrent splices to one note on three to five devices, made while they
//! are partitioned (frames dropped, duplicated, reordered, devices restarted from storage),
//! converge once the network heals to the same text everywhere, and that text keeps every
//! inserted character nobody deleted, each exactly once, and nothing anybody deleted.
//!
//! Every inserted character is unique (a private-use code point), so the final text can be
//! checked character by character. Edits go through the device engine's `EditNote` intent,
//! sometimes made on a stale view of the note (the editor's text lagging the document), which
//! is what the core's rebase of an edit is for.

use ferry_core::device::Intent;
use ferry_core::testing::SimNet;
use ferry_core::{ItemId, ItemKind};
use proptest::prelude::*;
use std::collections::BTreeSet;

#[derive(Debug, Clone)]
enum Op {
    /// Device, where (fraction of its text), how many to delete, how many to insert, and
    /// whether the edit is made on the text the device saw before its last sync.
    Splice(usize, usize, usize, usize, bool),
    /// The device's editor catches up with its document.
    Look(usize),
    Connect(usize, usize),
    /// The two meet and talk until neither has more to say (the rest stay partitioned).
    Sync(usize, usize),
    Disconnect(usize, usize),
    Deliver(usize, usize, usize),
    Drop(usize, usize),
    Duplicate(usize, usize),
    Reorder(usize, usize),
    Restart(usize),
    Tick(usize),
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    let d = 0..n;
    prop_oneof![
        6 => (d.clone(), any::<usize>(), 0..4usize, 0..4usize, any::<bool>())
            .prop_map(|(i, at, del, ins, stale)| Op::Splice(i, at, del, ins, stale)),
        2 => d.clone().prop_map(Op::Look),
        3 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Connect(a, b)),
        3 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Sync(a, b)),
        1 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Disconnect(a, b)),
        5 => (d.clone(), d.clone(), 1..4usize).prop_map(|(a, b, k)| Op::Deliver(a, b, k)),
        1 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Drop(a, b)),
        1 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Duplicate(a, b)),
        1 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Reorder(a, b)),
        1 => d.clone().prop_map(Op::Restart),
        2 => d.prop_map(Op::Tick),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (3..=5usize).prop_flat_map(|n| (Just(n), proptest::collection::vec(op(n), 1..60)))
}

fn cases() -> u32 {
    std::env::var("FERRY_SOAK_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// The note's body on device `i` (empty until the note reached it).
fn body(net: &SimNet, i: usize, id: ItemId) -> Option<String> {
    net.devices[i]
        .replica()
        .history()
        .get(id)
        .map(|item| item.body.clone())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn concurrent_splices_converge_and_keep_every_character((n, ops) in scenario()) {
        let mut net = SimNet::new(n);
        let mut next = 0xE000u32;
        let mut fresh = |k: usize| -> String {
            (0..k)
                .map(|_| {
                    next += 1;
                    char::from_u32(next).expect("private use area")
                })
                .collect()
        };
        let seed = fresh(5);
        let id = ItemId::random();
        let note = Intent::Note { id, title: "Plan".into(), body: seed.clone() };
        prop_assert!(net.intent(0, note), "the note is written");
        for a in 0..n {
            for b in a + 1..n {
                net.connect(a, b);
            }
        }
        net.run_until_quiescent();
        for i in 0..n {
            prop_assert_eq!(body(&net, i, id), Some(seed.clone()));
        }
        for a in 0..n {
            for b in a + 1..n {
                net.disconnect(a, b);
            }
        }
        let mut inserted: BTreeSet<char> = seed.chars().collect();
        let mut deleted: BTreeSet<char> = BTreeSet::new();
        // What each device's editor shows: the text it last looked at.
        let mut seen: Vec<String> = vec![seed.clone(); n];
        for op in ops {
            match op {
                Op::Splice(i, at, del, ins, stale) => {
                    let Some(now) = body(&net, i, id) else { continue };
                    let base = if stale { seen[i].clone() } else { now };
                    let chars: Vec<char> = base.chars().collect();
                    let pos = at % (chars.len() + 1);
                    let del = del.min(chars.len() - pos);
                    let insert = fresh(ins);
                    let new: String = chars[..pos]
                        .iter()
                        .copied()
                        .chain(insert.chars())
                        .chain(chars[pos + del..].iter().copied())
                        .collect();
                    let edit = Intent::EditNote {
                        id,
                        title: "Plan".into(),
                        base: base.clone(),
                        body: new,
                    };
                    if net.intent(i, edit) {
                        inserted.extend(insert.chars());
                        deleted.extend(&chars[pos..pos + del]);
                    }
                    seen[i] = body(&net, i, id).unwrap_or_default();
                }
                Op::Look(i) => seen[i] = body(&net, i, id).unwrap_or_default(),
                Op::Connect(a, b) => net.connect(a, b),
                Op::Sync(a, b) => {
                    net.connect(a, b);
                    for _ in 0..100 {
                        if net.deliver(a, b, usize::MAX) + net.deliver(b, a, usize::MAX) == 0 {
                            break;
                        }
                    }
                }
                Op::Disconnect(a, b) => net.disconnect(a, b),
                Op::Deliver(a, b, k) => { net.deliver(a, b, k); }
                Op::Drop(a, b) => net.drop_next(a, b),
                Op::Duplicate(a, b) => net.duplicate_next(a, b),
                Op::Reorder(a, b) => net.reorder_next(a, b),
                Op::Restart(i) => net.restart(i),
                Op::Tick(i) => net.tick(i),
            }
        }
        net.heal();
        let texts: Vec<String> = (0..n).map(|i| body(&net, i, id).expect("the note")).collect();
        for t in &texts[1..] {
            prop_assert_eq!(t, &texts[0]);
        }
        let kept: Vec<char> = texts[0].chars().collect();
        let unique: BTreeSet<char> = kept.iter().copied().collect();
        prop_assert_eq!(unique.len(), kept.len(), "a character appears twice: {:?}", texts[0]);
        let expected: BTreeSet<char> = inserted.difference(&deleted).copied().collect();
        prop_assert_eq!(unique, expected);
        let item = net.devices[0].replica().history().get(id).cloned().expect("the note");
        prop_assert_eq!(item.kind, ItemKind::Note);
        prop_assert_eq!(item.text, "Plan");
    }
}
