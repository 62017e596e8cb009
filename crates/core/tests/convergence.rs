//! Property: whatever happens while devices are partitioned (drops, duplicates, reorders,
//! restarts from storage), once the network heals every device holds exactly the items that
//! were written and not deleted: none lost, none duplicated, no deleted one resurrected,
//! every text one that was really written for that item, identical documents everywhere.

use ferry_core::ItemId;
use ferry_core::testing::SimNet;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    Edit(usize, usize),
    Delete(usize, usize),
    Connect(usize, usize),
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
        4 => d.clone().prop_map(Op::Write),
        2 => (d.clone(), any::<usize>()).prop_map(|(i, k)| Op::Edit(i, k)),
        1 => (d.clone(), any::<usize>()).prop_map(|(i, k)| Op::Delete(i, k)),
        3 => (d.clone(), d.clone()).prop_map(|(a, b)| Op::Connect(a, b)),
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
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn every_written_item_reaches_every_device_exactly_once((n, ops) in scenario()) {
        let mut net = SimNet::new(n);
        // Every text ever written for each item, and the items deleted anywhere.
        let mut texts: BTreeMap<ItemId, BTreeSet<String>> = BTreeMap::new();
        let mut order: Vec<ItemId> = vec![];
        let mut deleted = BTreeSet::new();
        for (step, op) in ops.iter().enumerate() {
            match *op {
                Op::Write(i) => {
                    let text = format!("item {step} from {i}");
                    let item = net.write(i, &text);
                    texts.entry(item.id).or_default().insert(text);
                    order.push(item.id);
                }
                Op::Edit(i, k) if !order.is_empty() => {
                    let id = order[k % order.len()];
                    let text = format!("edit {step} by {i}");
                    if net.edit(i, id, &text) {
                        texts.entry(id).or_default().insert(text);
                    }
                }
                Op::Delete(i, k) if !order.is_empty() => {
                    let id = order[k % order.len()];
                    if net.delete(i, id) {
                        deleted.insert(id);
                    }
                }
                Op::Edit(..) | Op::Delete(..) => {}
                Op::Connect(a, b) => net.connect(a, b),
                Op::Disconnect(a, b) => net.disconnect(a, b),
                Op::Deliver(a, b, k) => { net.deliver(a, b, k); }
                Op::Drop(a, b) => net.drop_next(a, b),
                Op::Duplicate(a, b) => net.duplicate_next(a, b),
                Op::Reorder(a, b) => net.reorder_next(a, b),
                Op::Restart(i) => {
                    let marks = net.devices[i].device.local().delivered.clone();
                    net.restart(i);
                    prop_assert_eq!(&net.devices[i].device.local().delivered, &marks, "delivery marks lost in a restart");
                }
                Op::Tick(i) => {
                    net.tick(i);
                    marks_are_honest(&net, i)?;
                }
            }
        }
        net.heal();
        for i in 0..n {
            net.tick(i);
            marks_are_honest(&net, i)?;
        }
        let expected: BTreeSet<ItemId> =
            texts.keys().filter(|id| !deleted.contains(*id)).copied().collect();
        let heads0 = net.devices[0].replica_mut().heads();
        let items0 = net.devices[0].replica_mut().items();
        for d in net.devices.iter_mut() {
            prop_assert_eq!(&d.replica_mut().heads(), &heads0);
            let items = d.replica().items();
            prop_assert_eq!(&items, &items0, "devices disagree");
            let ids: Vec<ItemId> = items.iter().map(|i| i.id).collect();
            let unique: BTreeSet<ItemId> = ids.iter().copied().collect();
            prop_assert_eq!(ids.len(), unique.len(), "an item was duplicated");
            prop_assert_eq!(&unique, &expected, "an item was lost, resurrected or invented");
            for item in &items {
                prop_assert!(texts[&item.id].contains(&item.text), "text never written: {}", item.text);
            }
            // The view kept from patches alone shows exactly the history.
            prop_assert_eq!(&d.rows, &unique, "the view's rows drifted from the history");
        }
        // Healed and ticked: every device marks every other as having all it wrote.
        for d in &net.devices {
            let latest = d.replica().latest_ms();
            for other in net.devices.iter().filter(|o| o.id != d.id) {
                prop_assert!(
                    d.device.local().delivered.get(&other.id).copied().unwrap_or(0) >= latest
                        || !d.replica().items().iter().any(|i| i.author == d.id),
                    "a healed network left a delivery mark behind"
                );
            }
        }
    }
}

/// Device `i`'s delivery marks never claim more than the other device stored: every item `i`
/// wrote up to a device's mark is in that device's document (visible or deleted).
fn marks_are_honest(net: &SimNet, i: usize) -> Result<(), TestCaseError> {
    let me = &net.devices[i];
    for (device, mark) in &me.device.local().delivered {
        let Some(other) = net.devices.iter().find(|d| d.id == *device) else {
            continue;
        };
        for item in me
            .replica()
            .items()
            .iter()
            .filter(|it| it.author == me.id && it.at.wall_ms <= *mark)
        {
            prop_assert!(
                other.replica().knows_item(item.id),
                "device {i} marked {} delivered through {mark} without item {} (at {})",
                device.short(),
                item.id,
                item.at.wall_ms
            );
        }
    }
    Ok(())
}
