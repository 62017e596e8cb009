//! Test support (feature `testing`): the storage contract suite and a simulated network.
//!
//! The contract runs unchanged against [`MemoryStore`] on the host and against IndexedDB in
//! Chromium. The simulated network runs several real [`Device`]s (the engine the app runs)
//! with their own stores and lets a test connect, partition, drop, duplicate, reorder, tick
//! and restart at will; each device's view is kept from its view patches alone.

#![allow(clippy::unwrap_used)] // test support: a failed step should fail the test loudly

use crate::blobs::BlobMessage;
use crate::device::{Device, DeviceError, Effect, Input, Intent, LinkEvent, LocalState, ViewPatch};
use crate::history::HistoryPatch;
use crate::persist::DocStore;
use crate::replica::{PeerKey, Replica};
use crate::seal::Lane;
use crate::store::{MemoryStore, Store, StoreError, StoreKey};
use crate::{DeviceId, Item, ItemId, SpaceSecret};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs a future that never waits (everything over [`MemoryStore`]).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("block_on: the future waited; only use it with MemoryStore"),
    }
}

fn key(s: &[&str]) -> StoreKey {
    StoreKey::new(s).expect("valid test key")
}

/// The storage contract every [`Store`] must pass. Panics with a description on violation.
/// Expects an empty store.
pub async fn store_contract<S: Store>(store: &S) {
    let a = key(&["contract", "a"]);
    let b = key(&["contract", "b"]);
    let nested = key(&["contract", "n", "1"]);
    let outside = key(&["contractx", "a"]);
    assert_eq!(
        store.get(&a).await.unwrap(),
        None,
        "missing key reads as None"
    );
    store.put(&a, b"one").await.unwrap();
    assert_eq!(store.get(&a).await.unwrap().as_deref(), Some(&b"one"[..]));
    store.put(&a, b"two").await.unwrap();
    assert_eq!(
        store.get(&a).await.unwrap().as_deref(),
        Some(&b"two"[..]),
        "put replaces"
    );
    let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    store.put(&b, &binary).await.unwrap();
    assert_eq!(
        store.get(&b).await.unwrap(),
        Some(binary.clone()),
        "binary round trip"
    );
    store.put(&nested, b"").await.unwrap();
    assert_eq!(
        store.get(&nested).await.unwrap(),
        Some(vec![]),
        "empty value is kept"
    );
    store.put(&outside, b"x").await.unwrap();
    let listed = store.list(&key(&["contract"])).await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["contract/a", "contract/b", "contract/n/1"],
        "prefix list, ordered"
    );
    assert_eq!(listed[1].1, binary);
    store.delete(&a).await.unwrap();
    store.delete(&a).await.unwrap();
    assert_eq!(
        store.get(&a).await.unwrap(),
        None,
        "delete removes, twice is fine"
    );
    assert_eq!(store.list(&key(&["contract", "n"])).await.unwrap().len(), 1);
    assert_eq!(store.list(&key(&["nothing"])).await.unwrap(), vec![]);
    let keys = store.keys(&key(&["contract"])).await.unwrap();
    let keys: Vec<&str> = keys.iter().map(StoreKey::as_str).collect();
    assert_eq!(
        keys,
        ["contract/b", "contract/n/1"],
        "keys: prefix, ordered"
    );
    assert_eq!(store.keys(&key(&["nothing"])).await.unwrap(), vec![]);
    // Zero-padded chunk indices list in numeric order.
    let root = crate::blobs::BlobId([7; 32]);
    for i in [10, 2, 1] {
        store
            .put(&crate::blobs::chunk_key(&root, i), &[i as u8])
            .await
            .unwrap();
    }
    let listed = store
        .keys(&crate::blobs::chunks_prefix(&root))
        .await
        .unwrap();
    assert_eq!(crate::blobs::have_from_keys(&root, &listed), [1, 2, 10]);
    assert!(matches!(
        StoreKey::new(&["a/b"]),
        Err(StoreError::BadKey(_))
    ));
    // Batches: written together, read back in the order asked, missing keys as None.
    let batch: Vec<(StoreKey, Vec<u8>)> = (0..40u8)
        .map(|i| {
            (
                key(&["batch", &format!("{i:03}")]),
                vec![i; usize::from(i) * 100],
            )
        })
        .collect();
    store.put_many(&batch).await.unwrap();
    store.put_many(&[]).await.unwrap();
    let mut ask: Vec<StoreKey> = batch.iter().rev().map(|(k, _)| k.clone()).collect();
    ask.push(key(&["batch", "missing"]));
    let read = store.get_many(&ask).await.unwrap();
    assert_eq!(read.len(), 41);
    for (got, (_, want)) in read.iter().zip(batch.iter().rev()) {
        assert_eq!(
            got.as_deref(),
            Some(want.as_slice()),
            "get_many keeps order"
        );
    }
    assert_eq!(read[40], None);
    assert_eq!(store.keys(&key(&["batch"])).await.unwrap().len(), 40);
    assert_eq!(
        store.get_many(&[]).await.unwrap(),
        Vec::<Option<Vec<u8>>>::new()
    );
}

/// `put_many` is all or nothing when storage is full (a quota-limited store).
pub async fn store_batch_is_atomic<S: Store>(store: &S) {
    let big: Vec<(StoreKey, Vec<u8>)> = (0..8u8)
        .map(|i| (key(&["atomic", &i.to_string()]), vec![i; 64 * 1024]))
        .collect();
    assert_eq!(
        store.put_many(&big).await,
        Err(StoreError::QuotaExceeded),
        "the batch does not fit"
    );
    assert!(
        store.keys(&key(&["atomic"])).await.unwrap().is_empty(),
        "nothing of a refused batch was written"
    );
}

/// One simulated device: the real [`Device`] engine and its own persistent store, plus the
/// view it patches (the rows a screen would show).
pub struct SimDevice {
    /// Device id (kept across restarts).
    pub id: DeviceId,
    /// The live device.
    pub device: Device,
    /// Its storage (survives restarts).
    pub store: MemoryStore,
    docstore: DocStore,
    /// The history's rows as the view patches left them (rebuilt from the history at boot).
    pub rows: BTreeSet<ItemId>,
    /// View patches of the device list received so far.
    pub device_patches: usize,
}

impl SimDevice {
    fn boot(id: DeviceId, store: MemoryStore, secret: &SpaceSecret) -> Self {
        let loaded = block_on(DocStore::load(&store, &Replica::actor_for(id))).expect("load");
        let (local, _) = block_on(LocalState::load(&store, || {
            (id, format!("sim {}", id.short()))
        }))
        .expect("local state");
        let mut replica = Replica::from_doc(id, &local.name, loaded.doc, secret);
        let saved = block_on(store.list(&key(&["sync"]))).expect("list sync states");
        replica.restore_sync_states(
            saved
                .into_iter()
                .filter_map(|(k, v)| Some((k.last().parse().ok()?, v))),
        );
        let rows = replica.history().items().map(|i| i.id).collect();
        SimDevice {
            id,
            device: Device::new(replica, local),
            store,
            docstore: loaded.store,
            rows,
            device_patches: 0,
        }
    }

    /// The device's replica.
    pub fn replica(&self) -> &Replica {
        self.device.replica()
    }

    /// The device's replica, mutably (heads, sync internals).
    pub fn replica_mut(&mut self) -> &mut Replica {
        self.device.replica_mut()
    }
}

/// A network of simulated devices with fully controllable links.
pub struct SimNet {
    /// The devices, by index.
    pub devices: Vec<SimDevice>,
    links: BTreeMap<(usize, usize), VecDeque<Vec<u8>>>,
    bulk: BTreeMap<(usize, usize), VecDeque<Vec<u8>>>,
    /// Blob messages received: (receiving device, sender's peer name, message).
    pub blob_inbox: VecDeque<(usize, PeerKey, BlobMessage)>,
    /// Peers identified: (device, peer name), in order.
    pub identified: VecDeque<(usize, PeerKey)>,
    /// Frames refused by replicas so far.
    pub rejected: usize,
    clock_ms: u64,
    secret: SpaceSecret,
    /// Sync states persisted so far (connections that ended after authenticating).
    pub sync_states_saved: usize,
    /// Bytes of all frames sent so far.
    pub bytes_sent: usize,
}

/// The transport name of device `i` as its peers see it.
pub fn peer_name(i: usize) -> PeerKey {
    PeerKey::rtc(format!("dev{i}"))
}

/// The device index behind a transport name.
pub fn peer_index(peer: &PeerKey) -> Option<usize> {
    peer.id.strip_prefix("dev")?.parse().ok()
}

impl SimNet {
    /// `n` fresh devices, all offline.
    pub fn new(n: usize) -> Self {
        let secret = SpaceSecret::random();
        SimNet {
            devices: (0..n)
                .map(|_| SimDevice::boot(DeviceId::random(), MemoryStore::default(), &secret))
                .collect(),
            links: BTreeMap::new(),
            bulk: BTreeMap::new(),
            blob_inbox: VecDeque::new(),
            identified: VecDeque::new(),
            rejected: 0,
            clock_ms: 1_700_000_000_000,
            secret,
            sync_states_saved: 0,
            bytes_sent: 0,
        }
    }

    fn apply(&mut self, from: usize, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Send { peer, lane, frame } => {
                    self.bytes_sent += frame.len();
                    let queues = match lane {
                        Lane::Main => &mut self.links,
                        Lane::Bulk => &mut self.bulk,
                    };
                    if let Some(to) = peer_index(&peer)
                        && let Some(q) = queues.get_mut(&(from, to))
                    {
                        q.push_back(frame);
                    }
                }
                Effect::SaveDoc => {
                    let d = &mut self.devices[from];
                    let doc = d.device.replica_mut().doc_mut();
                    block_on(d.docstore.save(&d.store, doc)).expect("save");
                    if d.docstore.should_compact() {
                        let doc = d.device.replica_mut().doc_mut();
                        block_on(d.docstore.compact(&d.store, doc)).expect("compact");
                    }
                }
                Effect::SaveLocal(change) => {
                    let d = &self.devices[from];
                    block_on(LocalState::store_change(&d.store, d.device.local(), |s| {
                        change.apply(s)
                    }))
                    .expect("save local state");
                }
                Effect::Refused { .. } => self.rejected += 1,
                Effect::SaveSyncState { device, state } => {
                    let d = &self.devices[from];
                    let k = key(&["sync", &device.to_string()]);
                    block_on(d.store.put(&k, &state)).expect("save sync state");
                    self.sync_states_saved += 1;
                }
                Effect::View(ViewPatch::Items(patches)) => {
                    let rows = &mut self.devices[from].rows;
                    for p in patches {
                        match p {
                            HistoryPatch::Added(id) => {
                                assert!(rows.insert(id), "a row added twice: {id}");
                            }
                            HistoryPatch::Changed(id) => {
                                assert!(
                                    rows.contains(&id),
                                    "a row changed before it was added: {id}"
                                );
                            }
                            HistoryPatch::Removed(id) => {
                                assert!(rows.remove(&id), "a row removed that was not there: {id}");
                            }
                        }
                    }
                }
                Effect::View(ViewPatch::Devices) => self.devices[from].device_patches += 1,
                Effect::View(ViewPatch::Delivery | ViewPatch::Synced { .. }) => {}
                Effect::Blob { peer, msg } => self.blob_inbox.push_back((from, peer, msg)),
                Effect::PeerReady { peer, .. } => self.identified.push_back((from, peer)),
                Effect::PeerGone { .. } | Effect::Banned { .. } | Effect::ReplaceSocket => {}
                Effect::SendFailed { peer, error } => {
                    panic!("device {from} could not send to {peer}: {error}")
                }
            }
        }
    }

    fn input(&mut self, i: usize, input: Input) -> Result<(), DeviceError> {
        let effects = self.devices[i].device.handle(input)?;
        self.apply(i, effects);
        Ok(())
    }

    fn link(&mut self, i: usize, event: LinkEvent) {
        let now = self.clock_ms;
        self.input(i, Input::Link { event, now })
            .expect("link events never fail");
    }

    /// Device `i` does its delivery bookkeeping (a tick of its loop).
    pub fn tick(&mut self, i: usize) {
        self.clock_ms += 3;
        let now = self.clock_ms;
        self.input(
            i,
            Input::Tick {
                now,
                synced_elsewhere: 0,
            },
        )
        .expect("ticks never fail");
    }

    /// Device `i` writes a text; returns the item.
    pub fn write(&mut self, i: usize, text: &str) -> Item {
        self.clock_ms += 7;
        let before: BTreeSet<ItemId> = self.devices[i].rows.clone();
        let now = self.clock_ms;
        self.input(
            i,
            Input::Intent {
                intent: Intent::Write(text.to_owned()),
                now,
            },
        )
        .expect("write");
        let new = self.devices[i].rows.difference(&before).next().copied();
        let id = new.expect("a written text adds a row");
        self.devices[i]
            .replica()
            .history()
            .get(id)
            .cloned()
            .expect("the new row's item")
    }

    /// Device `i` shares a file whose chunks it already stored; returns the item.
    pub fn add_file(&mut self, i: usize, meta: &crate::FileMeta) -> Item {
        self.clock_ms += 7;
        let now = self.clock_ms;
        let (item, effects) = self.devices[i]
            .device
            .replica_mut()
            .add_file(meta, now)
            .expect("add_file");
        let effects = self.devices[i].device.absorb(effects, now, false);
        self.apply(i, effects);
        item
    }

    /// Device `i` edits an item it can see; false if it cannot (not synced yet, or deleted).
    pub fn edit(&mut self, i: usize, id: crate::ItemId, text: &str) -> bool {
        self.clock_ms += 7;
        let now = self.clock_ms;
        let intent = Intent::Edit(id, text.to_owned());
        self.input(i, Input::Intent { intent, now }).is_ok()
    }

    /// Device `i` carries out any intent; false if it was refused.
    pub fn intent(&mut self, i: usize, intent: Intent) -> bool {
        self.clock_ms += 7;
        let now = self.clock_ms;
        self.input(i, Input::Intent { intent, now }).is_ok()
    }

    /// Device `i` deletes an item it can see; false if it cannot.
    pub fn delete(&mut self, i: usize, id: crate::ItemId) -> bool {
        self.clock_ms += 7;
        let now = self.clock_ms;
        let intent = Intent::Delete(id);
        self.input(i, Input::Intent { intent, now }).is_ok()
    }

    /// Whether `a` and `b` are connected.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.links.contains_key(&(a, b))
    }

    /// Opens a connection between `a` and `b` (both get `PeerUp`).
    pub fn connect(&mut self, a: usize, b: usize) {
        if a == b || self.connected(a, b) {
            return;
        }
        self.links.insert((a, b), VecDeque::new());
        self.links.insert((b, a), VecDeque::new());
        self.bulk.insert((a, b), VecDeque::new());
        self.bulk.insert((b, a), VecDeque::new());
        for (x, y) in [(a, b), (b, a)] {
            self.link(x, LinkEvent::Up(peer_name(y)));
        }
    }

    /// Closes the connection; frames in flight are lost.
    pub fn disconnect(&mut self, a: usize, b: usize) {
        if !self.connected(a, b) {
            return;
        }
        self.links.remove(&(a, b));
        self.links.remove(&(b, a));
        self.bulk.remove(&(a, b));
        self.bulk.remove(&(b, a));
        for (x, y) in [(a, b), (b, a)] {
            self.link(x, LinkEvent::Down(peer_name(y)));
        }
    }

    /// Delivers up to `n` frames from `a` to `b` in order. Returns how many were delivered.
    pub fn deliver(&mut self, a: usize, b: usize, n: usize) -> usize {
        let mut done = 0;
        while done < n {
            let Some(frame) = self.links.get_mut(&(a, b)).and_then(VecDeque::pop_front) else {
                break;
            };
            let peer = peer_name(a);
            self.link(
                b,
                LinkEvent::Frame {
                    peer,
                    lane: Lane::Main,
                    bytes: frame,
                },
            );
            done += 1;
        }
        done
    }

    /// Device `i` sends a blob message to device `to` on the bulk lane; false if `to` is not
    /// an authenticated peer of `i`.
    pub fn send_blob(&mut self, i: usize, to: usize, msg: &BlobMessage) -> bool {
        let now = self.clock_ms;
        match self.devices[i]
            .device
            .replica_mut()
            .send_blob(&peer_name(to), msg)
        {
            Ok(effects) => {
                let effects = self.devices[i].device.absorb(effects, now, false);
                self.apply(i, effects);
                true
            }
            Err(_) => false,
        }
    }

    /// Delivers up to `n` bulk-lane frames from `a` to `b` in order. Returns how many.
    pub fn deliver_bulk(&mut self, a: usize, b: usize, n: usize) -> usize {
        let mut done = 0;
        while done < n {
            let Some(frame) = self.bulk.get_mut(&(a, b)).and_then(VecDeque::pop_front) else {
                break;
            };
            let peer = peer_name(a);
            self.link(
                b,
                LinkEvent::Frame {
                    peer,
                    lane: Lane::Bulk,
                    bytes: frame,
                },
            );
            done += 1;
        }
        done
    }

    /// Bulk-lane frames in flight from `a` to `b`.
    pub fn bulk_in_flight(&self, a: usize, b: usize) -> usize {
        self.bulk.get(&(a, b)).map_or(0, VecDeque::len)
    }

    /// Mutable access to the bulk-lane frames in flight from `a` to `b` (to drop, corrupt
    /// or reorder them).
    pub fn bulk_queue(&mut self, a: usize, b: usize) -> Option<&mut VecDeque<Vec<u8>>> {
        self.bulk.get_mut(&(a, b))
    }

    /// Loses the next frame from `a` to `b`.
    pub fn drop_next(&mut self, a: usize, b: usize) {
        if let Some(q) = self.links.get_mut(&(a, b)) {
            q.pop_front();
        }
    }

    /// Duplicates the next frame from `a` to `b`.
    pub fn duplicate_next(&mut self, a: usize, b: usize) {
        if let Some(q) = self.links.get_mut(&(a, b))
            && let Some(f) = q.front().cloned()
        {
            q.push_front(f);
        }
    }

    /// Swaps the next two frames from `a` to `b`.
    pub fn reorder_next(&mut self, a: usize, b: usize) {
        if let Some(q) = self.links.get_mut(&(a, b))
            && q.len() >= 2
        {
            q.swap(0, 1);
        }
    }

    /// Kills device `i` (its connections drop) and boots it again from its store.
    pub fn restart(&mut self, i: usize) {
        let others: Vec<usize> = (0..self.devices.len())
            .filter(|&j| self.connected(i, j))
            .collect();
        for j in others {
            self.disconnect(i, j);
        }
        let (id, store) = (self.devices[i].id, self.devices[i].store.share());
        self.devices[i] = SimDevice::boot(id, store, &self.secret);
    }

    /// Delivers everything in flight, in order, until no link has frames.
    pub fn run_until_quiescent(&mut self) {
        for _ in 0..10_000 {
            let busy: Vec<(usize, usize)> = self
                .links
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(k, _)| *k)
                .collect();
            let busy_bulk: Vec<(usize, usize)> = self
                .bulk
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(k, _)| *k)
                .collect();
            if busy.is_empty() && busy_bulk.is_empty() {
                return;
            }
            for (a, b) in busy {
                self.deliver(a, b, usize::MAX);
            }
            for (a, b) in busy_bulk {
                self.deliver_bulk(a, b, usize::MAX);
            }
        }
        panic!("the network never went quiet");
    }

    /// Heals every partition: all links are re-established fresh and drained.
    pub fn heal(&mut self) {
        let n = self.devices.len();
        for a in 0..n {
            for b in a + 1..n {
                self.disconnect(a, b);
                self.connect(a, b);
            }
        }
        self.run_until_quiescent();
    }
}
