//! The vendored automerge's `FERRY PATCH`es (`crates/automerge/FERRY_PATCH.md`) change how a
//! change is applied to a large map, never what the document becomes.
//!
//! Each case forks one document with a large map into three devices that write concurrently
//! (new keys, overwrites, deletes, counters, nested maps, conflicts) and merge in small
//! pieces, in a random order, as sync does. That is the path the patches speed up. The result
//! is compared with the same changes applied in one batch to an empty document, a walk with
//! no document ops to skip, which is upstream's code path, down to the op set.

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue};
use proptest::prelude::*;

/// Keys in the map before the devices fork: enough that the walk seeks between them.
const BASE_KEYS: usize = 120;

#[derive(Debug, Clone)]
enum Edit {
    /// Put a scalar at key `k` (old or new).
    Put(usize, i64),
    /// Delete key `k` if it exists.
    Delete(usize),
    /// Put a nested map at key `k` with one field.
    Nested(usize, i64),
    /// Increment the counter at key `k`, creating it when absent.
    Count(usize, i64),
    /// Merge the changes of device `d` that this device lacks.
    MergeFrom(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let key = 0..(BASE_KEYS * 2);
    prop_oneof![
        4 => (key.clone(), any::<i64>()).prop_map(|(k, v)| Edit::Put(k, v)),
        2 => key.clone().prop_map(Edit::Delete),
        2 => (key.clone(), any::<i64>()).prop_map(|(k, v)| Edit::Nested(k, v)),
        1 => (key, -5_i64..5).prop_map(|(k, v)| Edit::Count(k, v)),
        3 => (0_usize..3).prop_map(Edit::MergeFrom),
    ]
}

fn key(k: usize) -> String {
    // Zero-padded, spread over the whole key range so new keys land between old ones.
    format!("{:08x}", (k as u64).wrapping_mul(0x9e37_79b9) % 0xffff_ffff)
}

fn base() -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(b"base".as_slice()));
    let items = doc.put_object(ROOT, "items", ObjType::Map).expect("items");
    for k in 0..BASE_KEYS {
        let item = doc
            .put_object(&items, key(k * 2).as_str(), ObjType::Map)
            .expect("item");
        doc.put(&item, "text", format!("item {k}")).expect("text");
        doc.commit();
    }
    doc
}

fn apply(doc: &mut AutoCommit, edit: &Edit) {
    let (_, items) = doc.get(ROOT, "items").expect("get").expect("items");
    match *edit {
        Edit::Put(k, v) => {
            doc.put(&items, key(k).as_str(), v).expect("put");
        }
        Edit::Delete(k) => {
            if doc.get(&items, key(k).as_str()).expect("get").is_some() {
                doc.delete(&items, key(k).as_str()).expect("delete");
            }
        }
        Edit::Nested(k, v) => {
            let obj = doc
                .put_object(&items, key(k).as_str(), ObjType::Map)
                .expect("nested");
            doc.put(&obj, "v", v).expect("field");
        }
        Edit::Count(k, by) => {
            let is_counter = matches!(
                doc.get(&items, key(k).as_str()).expect("get"),
                Some((automerge::Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Counter(_))
            );
            if is_counter {
                doc.increment(&items, key(k).as_str(), by)
                    .expect("increment");
            } else {
                doc.put(&items, key(k).as_str(), ScalarValue::counter(by))
                    .expect("counter");
            }
        }
        Edit::MergeFrom(_) => unreachable!("handled by the caller"),
    }
    doc.commit();
}

/// Every key of the map with all its conflicting values, as a device reads them.
fn read_all(doc: &AutoCommit) -> Vec<(String, Vec<String>)> {
    let (_, items) = doc.get(ROOT, "items").expect("get").expect("items");
    doc.keys(&items)
        .map(|k| {
            let values = doc
                .get_all(&items, k.as_str())
                .expect("get_all")
                .into_iter()
                .map(|(v, id)| format!("{v:?}@{id}"))
                .collect();
            (k, values)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn small_merges_into_a_large_map_equal_one_batch_into_an_empty_document(
        script in prop::collection::vec((0_usize..3, edit()), 1..60)
    ) {
        let mut start = base();
        let mut devices: Vec<AutoCommit> = (0..3u8)
            .map(|i| start.fork().with_actor(ActorId::from([b'd', i].as_slice())))
            .collect();
        for (at, edit) in &script {
            match edit {
                Edit::MergeFrom(from) if from != at => {
                    let mut src = devices[*from].fork();
                    devices[*at].merge(&mut src).expect("merge");
                }
                Edit::MergeFrom(_) => {}
                edit => apply(&mut devices[*at], edit),
            }
        }
        // Everyone converges, one device at a time, still in small pieces.
        for _ in 0..2 {
            for to in 0..3 {
                for from in 0..3 {
                    if to != from {
                        let mut src = devices[from].fork();
                        devices[to].merge(&mut src).expect("merge");
                    }
                }
            }
        }
        let mut batch = AutoCommit::new();
        batch.apply_changes(devices[0].get_changes(&[])).expect("batch");
        for device in &devices {
            prop_assert_eq!(read_all(device), read_all(&batch));
            prop_assert!(device.diff_opset(&batch).is_ok(), "op sets differ");
        }
    }
}
