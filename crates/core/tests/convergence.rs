//! Property: whatever happens while devices are partitioned (drops, duplicates, reorders,
//! restarts from storage), once the network heals every device holds exactly the items that
//! were written: none lost, none duplicated, identical documents.

use ferry_core::testing::SimNet;
use proptest::prelude::*;
use std::collections::BTreeSet;

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    Connect(usize, usize),
    Disconnect(usize, usize),
    Deliver(usize, usize, usize),
    Drop(usize, usize),
    Duplicate(usize, usize),
    Reorder(usize, usize),
    Restart(usize),
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    let d = 0..n;
    prop_oneof![
        4 => d.clone().prop_map(Op::Write),
        3 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Connect(a, b)),
        1 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Disconnect(a, b)),
        5 => (d.clone(), d.clone(), 1..4usize).prop_map(|(a, b, k)| Op::Deliver(a, b, k)),
        1 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Drop(a, b)),
        1 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Duplicate(a, b)),
        1 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Reorder(a, b)),
        1 => d.prop_map(Op::Restart),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (3..=5usize).prop_flat_map(|n| (Just(n), proptest::collection::vec(op(n), 1..60)))
}

fn cases() -> u32 {
    std::env::var("FERRY_SOAK_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn every_written_item_reaches_every_device_exactly_once((n, ops) in scenario()) {
        let mut net = SimNet::new(n);
        let mut written = BTreeSet::new();
        for (step, op) in ops.iter().enumerate() {
            match *op {
                Op::Write(i) => {
                    let text = format!("item {step} from {i}");
                    net.write(i, &text);
                    written.insert(text);
                }
                Op::Connect(a, b) => net.connect(a, b),
                Op::Disconnect(a, b) => net.disconnect(a, b),
                Op::Deliver(a, b, k) => { net.deliver(a, b, k); }
                Op::Drop(a, b) => net.drop_next(a, b),
                Op::Duplicate(a, b) => net.duplicate_next(a, b),
                Op::Reorder(a, b) => net.reorder_next(a, b),
                Op::Restart(i) => net.restart(i),
            }
        }
        net.heal();
        let heads0 = net.devices[0].replica.heads();
        for d in net.devices.iter_mut() {
            prop_assert_eq!(&d.replica.heads(), &heads0);
            let texts: Vec<String> = d.replica.items().into_iter().map(|i| i.text).collect();
            let unique: BTreeSet<String> = texts.iter().cloned().collect();
            prop_assert_eq!(texts.len(), unique.len(), "an item was duplicated");
            prop_assert_eq!(&unique, &written, "an item was lost or invented");
        }
    }
}
