//! A device that upgrades keeps everything: the first storage layout (nineteen keys in six
//! encodings), captured from a real Chromium profile made by that release
//! (`tests/e2e/profile_fixture.capture.ts`), migrates to the one versioned local-state record
//! with every item, file, pairing, ICE setting, mailbox cursor and device name intact.

use base64::Engine;
use ferry_core::blobs::{Manifest, chunk_key, manifest_key};
use ferry_core::device::{LocalState, Origin, local_state};
use ferry_core::persist::DocStore;
use ferry_core::testing::block_on;
use ferry_core::{DeviceId, ItemKind, MemoryStore, Replica, SpaceSecret, Store, StoreKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
struct Fixture {
    made_by: String,
    expect: Expect,
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Expect {
    texts: Vec<String>,
    device_name: String,
    ice: Vec<local_state::IceServer>,
    file: ExpectFile,
    stopped: String,
}

#[derive(Deserialize)]
struct ExpectFile {
    name: String,
    sha256: String,
}

#[derive(Deserialize)]
struct Record {
    key: String,
    value: String,
}

fn profile() -> (Fixture, MemoryStore) {
    let fixture: Fixture =
        serde_json::from_str(include_str!("fixtures/profile-v0.json")).expect("fixture parses");
    assert_eq!(fixture.made_by.len(), 40, "made by a commit");
    let store = MemoryStore::default();
    for r in &fixture.records {
        let value = base64::engine::general_purpose::STANDARD
            .decode(&r.value)
            .expect("base64");
        block_on(store.put(&StoreKey::from_stored(r.key.clone()), &value)).expect("put");
    }
    (fixture, store)
}

fn get(store: &MemoryStore, key: &str) -> Option<Vec<u8>> {
    block_on(store.get(&StoreKey::from_stored(key.into()))).expect("get")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_profile_of_the_first_layout_keeps_everything() {
    let (fixture, store) = profile();
    let want = &fixture.expect;
    let id: DeviceId = String::from_utf8(get(&store, "device/id").expect("device id"))
        .unwrap()
        .parse()
        .unwrap();
    let cursor: u64 = String::from_utf8(get(&store, "settings/mailbox-cursor").expect("cursor"))
        .unwrap()
        .parse()
        .unwrap();
    let secret = get(&store, "space/secret").expect("pairing");

    let (state, origin) = block_on(LocalState::load(&store, || {
        panic!("an upgraded device is not new")
    }))
    .unwrap();
    let Origin::Migrated(found) = origin else {
        panic!("not migrated: {origin:?}");
    };
    assert!(found >= 14, "only {found} first-layout keys in the profile");
    assert_eq!(state.device, id);
    assert_eq!(state.name, want.device_name);
    assert_eq!(state.ice.as_deref(), Some(&want.ice[..]));
    assert!(
        state
            .signal
            .as_deref()
            .is_some_and(|s| s.starts_with("ws://")),
        "the pairing link's signaling endpoint: {:?}",
        state.signal
    );
    assert_eq!(state.mailbox.cursor, cursor);
    assert!(cursor > 0, "the laptop had read from the mailbox");
    assert!(!state.mailbox.off);
    assert!(state.mailbox.endpoint.is_some());
    assert!(!state.mailbox.heads.is_empty());
    assert!(state.mailbox.uploads.delivered_ms(u64::MAX).is_some());
    assert_eq!(state.seen.len(), 1, "the phone: {:?}", state.seen);
    assert!(state.delivered.keys().eq(state.seen.keys()));

    // The pairing, the history and the files are untouched records.
    assert_eq!(get(&store, "space/secret"), Some(secret.clone()));
    let space = SpaceSecret::from_slice(&secret).unwrap();
    let loaded = block_on(DocStore::load(&store, &Replica::actor_for(state.device))).unwrap();
    assert!(loaded.corrupt.is_empty());
    let replica = Replica::from_doc(state.device, &state.name, loaded.doc, &space);
    let items = replica.items();
    let texts: Vec<&str> = items
        .iter()
        .filter(|i| i.kind == ItemKind::Text)
        .map(|i| i.text.as_str())
        .collect();
    let shown: Vec<&str> = want
        .texts
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(texts, shown);
    // Items written before pins and tasks existed read as unpinned, and none as a task.
    assert!(
        items
            .iter()
            .all(|i| !i.pinned && !i.done && i.kind != ItemKind::Task)
    );
    let file = |name: &str| {
        items
            .iter()
            .filter_map(|i| i.file.as_ref())
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no file item {name}"))
            .clone()
    };
    let whole = file(&want.file.name);
    let manifest = Manifest::decode(
        &whole.root,
        &get(&store, manifest_key(&whole.root).as_str()).expect("manifest"),
    )
    .unwrap();
    let mut bytes = vec![];
    for i in 0..manifest.chunk_count() {
        let chunk = get(&store, chunk_key(&whole.root, i).as_str()).expect("chunk");
        manifest.verify_chunk(i, &chunk).unwrap();
        bytes.extend(chunk);
    }
    assert_eq!(hex(&Sha256::digest(&bytes)), want.file.sha256);
    let stopped = file(&want.stopped);
    assert!(state.files_stopped.contains(&stopped.root));

    // Written once: the next start reads the record, and the old keys are gone.
    for k in local_state::legacy::KEYS {
        assert_eq!(get(&store, k), None, "{k} left behind");
    }
    let (again, origin) = block_on(LocalState::load(&store, || unreachable!())).unwrap();
    assert_eq!((again, origin), (state, Origin::Stored));
}
