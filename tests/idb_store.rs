//! IndexedDB adapter in real Chromium (wasm-bindgen-test): the same storage contract as
//! `MemoryStore`, plus a history that survives closing and reopening the database.
#![cfg(target_arch = "wasm32")]

use ferry::store::idb::IdbStore;
use ferry_core::persist::DocStore;
use ferry_core::testing::store_contract;
use ferry_core::{DeviceId, Replica};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn fresh_name(tag: &str) -> String {
    format!("ferry-test-{tag}-{}", js_sys::Math::random())
}

#[wasm_bindgen_test]
async fn indexeddb_passes_the_storage_contract() {
    let name = fresh_name("contract");
    let store = IdbStore::open(&name).await.expect("open");
    store_contract(&store).await;
    store.close();
    IdbStore::delete(&name).await.expect("delete");
}

#[wasm_bindgen_test]
async fn history_round_trips_through_indexeddb() {
    let name = fresh_name("history");
    let me = DeviceId::random();
    {
        let store = IdbStore::open(&name).await.expect("open");
        let loaded = DocStore::load(&store, &Replica::actor_for(me))
            .await
            .expect("load");
        let mut docstore = loaded.store;
        let mut replica =
            Replica::from_doc(me, "test", loaded.doc, &ferry_core::SpaceSecret::random());
        for i in 0..3 {
            replica
                .add_text(&format!("note {i}"), 1_000 + i)
                .expect("add");
            docstore
                .save(&store, replica.doc_mut())
                .await
                .expect("save");
        }
        docstore
            .compact(&store, replica.doc_mut())
            .await
            .expect("compact");
        replica.add_text("after compaction", 2_000).expect("add");
        docstore
            .save(&store, replica.doc_mut())
            .await
            .expect("save");
        store.close();
    }
    // A new handle, as after a reload.
    let store = IdbStore::open(&name).await.expect("reopen");
    let loaded = DocStore::load(&store, &Replica::actor_for(me))
        .await
        .expect("load");
    let texts: Vec<String> = loaded.doc.items().into_iter().map(|i| i.text).collect();
    assert_eq!(texts, ["note 0", "note 1", "note 2", "after compaction"]);
    assert!(loaded.corrupt.is_empty());
    store.close();
    IdbStore::delete(&name).await.expect("delete");
}

#[wasm_bindgen_test]
async fn batches_write_and_read_in_one_transaction() {
    use ferry_core::{Store, StoreKey};
    let name = fresh_name("batch");
    let store = IdbStore::open(&name).await.expect("open");
    let key = |i: u8| StoreKey::new(&["blob", "r", "c", &i.to_string()]).expect("key");
    let entries: Vec<(StoreKey, Vec<u8>)> = (0..5u8).map(|i| (key(i), vec![i; 1000])).collect();
    store.put_many(&entries).await.expect("put_many");
    for (k, v) in &entries {
        assert_eq!(store.get(k).await.expect("get").as_ref(), Some(v));
    }
    let got = store
        .get_many(&[key(4), key(9), key(0)])
        .await
        .expect("get_many");
    assert_eq!(got, vec![Some(vec![4; 1000]), None, Some(vec![0; 1000])]);
    store.put_many(&[]).await.expect("an empty batch is fine");
    store.close();
    IdbStore::delete(&name).await.expect("delete");
}
