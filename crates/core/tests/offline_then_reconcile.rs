//! Scenario: two devices write while apart, one restarts, then they meet.

use ferry_core::MemoryStore;
use ferry_core::testing::{SimNet, block_on, store_batch_is_atomic, store_contract};

#[test]
fn offline_writes_survive_a_restart_and_reconcile() {
    // 1. Alice and Bob are paired and in sync.
    let mut net = SimNet::new(2);
    net.connect(0, 1);
    net.write(0, "before the trip");
    net.run_until_quiescent();
    assert_eq!(net.devices[1].replica_mut().items().len(), 1);
    // 2. They drift apart; each writes.
    net.disconnect(0, 1);
    net.write(0, "alice offline");
    net.write(1, "bob offline");
    // 3. Bob's tab is killed and reopened from storage.
    net.restart(1);
    assert_eq!(
        net.devices[1].replica_mut().items().len(),
        2,
        "Bob's own write survived the restart"
    );
    // 4. They reconnect and see the same three items in the same order.
    net.connect(0, 1);
    net.run_until_quiescent();
    let a: Vec<_> = net.devices[0].replica_mut().items();
    let b: Vec<_> = net.devices[1].replica_mut().items();
    assert_eq!(a.len(), 3);
    assert_eq!(a, b);
    assert_eq!(net.rejected, 0);
}

#[test]
fn memory_store_passes_the_storage_contract() {
    block_on(store_contract(&MemoryStore::default()));
    block_on(store_batch_is_atomic(&MemoryStore::with_quota(256 * 1024)));
}

#[test]
fn a_full_store_refuses_the_write_and_keeps_what_it_had() {
    use ferry_core::{Store, StoreError, StoreKey};
    let store = MemoryStore::with_quota(100);
    let k = StoreKey::new(&["a"]).unwrap();
    block_on(store.put(&k, b"small")).unwrap();
    let big = vec![0u8; 200];
    assert_eq!(
        block_on(store.put(&k, &big)),
        Err(StoreError::QuotaExceeded)
    );
    assert_eq!(
        block_on(store.get(&k)).unwrap().as_deref(),
        Some(&b"small"[..])
    );
}

#[test]
fn a_damaged_chunk_is_set_aside_and_the_rest_loads() {
    use ferry_core::persist::DocStore;
    use ferry_core::{DeviceId, Replica, Store, StoreKey};
    let store = MemoryStore::default();
    let me = DeviceId::random();
    let mut loaded = block_on(DocStore::load(&store, &Replica::actor_for(me))).unwrap();
    let mut replica = Replica::from_doc(me, "pc", loaded.doc, &ferry_core::SpaceSecret::random());
    replica.add_text("kept", 1).unwrap();
    block_on(loaded.store.save(&store, replica.doc_mut())).unwrap();
    replica.add_text("also kept", 2).unwrap();
    block_on(loaded.store.save(&store, replica.doc_mut())).unwrap();
    // A torn write: bytes that do not match their content-hash key.
    let bad = StoreKey::new(&["doc", "incremental", &"0".repeat(64)]).unwrap();
    block_on(store.put(&bad, b"\x85\x6f\x4a\x83 torn")).unwrap();
    let again = block_on(DocStore::load(&store, &Replica::actor_for(me))).unwrap();
    assert_eq!(again.corrupt, vec![bad]);
    assert_eq!(again.doc.items().len(), 2);
}

#[test]
fn compaction_keeps_everything_and_shrinks_the_chunk_count() {
    use ferry_core::persist::DocStore;
    use ferry_core::{DeviceId, Replica};
    let store = MemoryStore::default();
    let me = DeviceId::random();
    let mut loaded = block_on(DocStore::load(&store, &Replica::actor_for(me))).unwrap();
    let mut replica = Replica::from_doc(me, "pc", loaded.doc, &ferry_core::SpaceSecret::random());
    for i in 0..70 {
        replica.add_text(&format!("n{i}"), i).unwrap();
        block_on(loaded.store.save(&store, replica.doc_mut())).unwrap();
    }
    // Worth compacting when idle; not yet so many that it cannot wait.
    assert!(loaded.store.should_compact());
    assert!(!loaded.store.must_compact());
    block_on(loaded.store.compact(&store, replica.doc_mut())).unwrap();
    assert_eq!(loaded.store.chunk_count(), 1);
    let again = block_on(DocStore::load(&store, &Replica::actor_for(me))).unwrap();
    assert_eq!(again.doc.items().len(), 70);
    // A device that is never idle compacts anyway once four times as many piled up.
    for i in 70..70 + 4 * ferry_core::persist::COMPACT_AFTER as u64 {
        replica.add_text(&format!("n{i}"), i).unwrap();
        block_on(loaded.store.save(&store, replica.doc_mut())).unwrap();
        let saved = i - 69;
        assert_eq!(
            loaded.store.must_compact(),
            saved >= 4 * ferry_core::persist::COMPACT_AFTER as u64,
            "after {saved} saves"
        );
    }
}

#[test]
fn a_save_that_hit_a_full_disk_is_retried_by_the_next_save() {
    use ferry_core::persist::{DocStore, PersistError};
    use ferry_core::{DeviceId, Replica, StoreError};
    let store = MemoryStore::with_quota(1200);
    let me = DeviceId::random();
    let mut loaded = block_on(DocStore::load(&store, &Replica::actor_for(me))).unwrap();
    let mut replica = Replica::from_doc(me, "pc", loaded.doc, &ferry_core::SpaceSecret::random());
    replica.add_text("small", 1).unwrap();
    block_on(loaded.store.save(&store, replica.doc_mut())).unwrap();
    replica.add_text(&"big ".repeat(400), 2).unwrap();
    let err = block_on(loaded.store.save(&store, replica.doc_mut())).unwrap_err();
    assert!(matches!(
        err,
        PersistError::Store(StoreError::QuotaExceeded)
    ));
    // Storage still loads, with what was saved before.
    let before = block_on(DocStore::load(&store, &Replica::actor_for(me))).unwrap();
    assert_eq!(before.doc.items().len(), 1);
    // Space is freed (simulated by a bigger store with the same data): the next save writes
    // the change that failed earlier too.
    let bigger = MemoryStore::default();
    for (k, v) in block_on(ferry_core::Store::list(
        &store,
        &ferry_core::StoreKey::new(&["doc"]).unwrap(),
    ))
    .unwrap()
    {
        block_on(ferry_core::Store::put(&bigger, &k, &v)).unwrap();
    }
    replica.add_text("after cleanup", 3).unwrap();
    block_on(loaded.store.save(&bigger, replica.doc_mut())).unwrap();
    let after = block_on(DocStore::load(&bigger, &Replica::actor_for(me))).unwrap();
    assert_eq!(after.doc.items().len(), 3);
}

#[test]
fn a_reconnect_resumes_from_the_saved_sync_state_instead_of_starting_over() {
    // Measures bytes exchanged to re-sync after a restart: with the saved sync state the
    // devices only exchange heads; without it they also exchange the Bloom filter of everything.
    fn resync_bytes(restore: bool) -> usize {
        let mut net = SimNet::new(2);
        net.connect(0, 1);
        for i in 0..200 {
            net.write(i % 2, &format!("note {i}"));
            net.run_until_quiescent();
        }
        net.disconnect(0, 1);
        assert!(net.sync_states_saved >= 2);
        if !restore {
            // Forget saved sync states, as a device without this feature would.
            for d in 0..2 {
                let store = net.devices[d].store.clone();
                let keys = block_on(ferry_core::Store::list(
                    &store,
                    &ferry_core::StoreKey::new(&["sync"]).unwrap(),
                ))
                .unwrap();
                for (k, _) in keys {
                    block_on(ferry_core::Store::delete(&store, &k)).unwrap();
                }
            }
        }
        net.restart(0);
        net.restart(1);
        let before = net.bytes_sent;
        net.connect(0, 1);
        net.run_until_quiescent();
        assert_eq!(net.devices[0].replica_mut().items().len(), 200);
        net.bytes_sent - before
    }
    let with_state = resync_bytes(true);
    let without = resync_bytes(false);
    assert!(
        with_state < without,
        "saved sync state should shrink the resync: {with_state} vs {without}"
    );
}

#[test]
fn delivery_state_names_the_devices_that_have_everything() {
    let mut net = SimNet::new(3);
    net.write(0, "for everyone");
    net.connect(0, 1);
    net.run_until_quiescent();
    let (b, c) = (net.devices[1].id, net.devices[2].id);
    // Only the connected device that holds everything counts; the offline one does not.
    assert_eq!(net.devices[0].replica_mut().synced_devices(), vec![b]);
    assert!(!net.devices[0].replica_mut().synced_devices().contains(&c));
    // A new local change is not on the other device until it syncs again.
    net.devices[0]
        .replica_mut()
        .add_text("only here", 1)
        .unwrap();
    assert!(net.devices[0].replica_mut().synced_devices().is_empty());
    net.disconnect(0, 1);
    assert!(net.devices[0].replica_mut().synced_devices().is_empty());
}
