//! Scenarios: one device shares a multi-chunk file; the others fetch it through the transfer
//! engine over real replicas (sealed frames on the bulk lane), despite lost and reordered
//! frames, a peer serving damaged chunks, a peer vanishing mid-transfer, and a restart.

use ferry_core::blobs::{self, chunk_key, chunks_prefix, manifest_key};
use ferry_core::testing::{SimNet, block_on, peer_index, peer_name};
use ferry_core::{
    BlobEffect, BlobId, BlobMessage, CHUNK_SIZE, FileMeta, Have, Manifest, ManifestBuilder,
    PeerKey, Store, TransferConfig, Transfers,
};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// A small deterministic generator (xorshift), so each seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Lost and reordered bulk frames: probabilities, and how many at most per link (every
/// reorder costs one refused frame, and refusals count towards a ban).
#[derive(Clone, Copy, Default)]
struct Chaos {
    drop_percent: u64,
    swap_percent: u64,
    max_per_link: u32,
}

struct Net {
    sim: SimNet,
    engines: Vec<Transfers>,
    now: u64,
    rng: Rng,
    chaos: Chaos,
    chaos_used: std::collections::BTreeMap<(usize, usize), u32>,
    /// Devices that flip a byte in every chunk they serve.
    corrupting: BTreeSet<usize>,
    complete: BTreeSet<(usize, BlobId)>,
    rejected: Vec<(usize, PeerKey)>,
}

impl Net {
    fn new(n: usize, seed: u64) -> Self {
        Net {
            sim: SimNet::new(n),
            engines: (0..n)
                .map(|_| Transfers::new(TransferConfig::default()))
                .collect(),
            now: 1_000_000,
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            chaos: Chaos::default(),
            chaos_used: Default::default(),
            corrupting: BTreeSet::new(),
            complete: BTreeSet::new(),
            rejected: vec![],
        }
    }

    /// Device `i` reads a file chunk by chunk, stores it, serves it and shares it.
    fn share(&mut self, i: usize, data: &[u8], name: &str) -> FileMeta {
        let mut builder = ManifestBuilder::new();
        for chunk in data.chunks(CHUNK_SIZE) {
            builder.push(chunk).unwrap();
        }
        let manifest = builder.finish();
        let root = manifest.root();
        let store = &self.sim.devices[i].store;
        block_on(store.put(&manifest_key(&root), &manifest.encode())).unwrap();
        for (index, chunk) in data.chunks(CHUNK_SIZE).enumerate() {
            manifest.verify_chunk(index as u32, chunk).unwrap();
            block_on(store.put(&chunk_key(&root, index as u32), chunk)).unwrap();
        }
        self.engines[i]
            .serve(root, &manifest.encode(), Have::All)
            .unwrap();
        let meta = FileMeta {
            root,
            name: name.into(),
            size: data.len() as u64,
            mime: "application/octet-stream".into(),
        };
        self.sim.add_file(i, &meta);
        meta
    }

    /// A copy that already holds the file (stored and served, without a new item).
    fn give(&mut self, i: usize, data: &[u8]) {
        let mut builder = ManifestBuilder::new();
        for chunk in data.chunks(CHUNK_SIZE) {
            builder.push(chunk).unwrap();
        }
        let manifest = builder.finish();
        let root = manifest.root();
        let store = &self.sim.devices[i].store;
        block_on(store.put(&manifest_key(&root), &manifest.encode())).unwrap();
        for (index, chunk) in data.chunks(CHUNK_SIZE).enumerate() {
            block_on(store.put(&chunk_key(&root, index as u32), chunk)).unwrap();
        }
        self.engines[i]
            .serve(root, &manifest.encode(), Have::All)
            .unwrap();
    }

    /// What the app does when it sees a file item: fetch what it does not hold.
    fn want_all_files(&mut self, i: usize) {
        let roots = self.sim.devices[i].replica_mut().doc_mut().live_blobs();
        for root in roots {
            let eff = self.engines[i].want(root, self.now);
            self.apply(i, eff);
        }
    }

    /// The file as reassembled from device `i`'s storage.
    fn read_file(&self, i: usize, root: &BlobId) -> Option<Vec<u8>> {
        let store = &self.sim.devices[i].store;
        let bytes = block_on(store.get(&manifest_key(root))).unwrap()?;
        let manifest = Manifest::decode(root, &bytes).unwrap();
        let mut out = vec![];
        for index in 0..manifest.chunk_count() {
            out.extend(block_on(store.get(&chunk_key(root, index))).unwrap()?);
        }
        Some(out)
    }

    fn stored_chunks(&self, i: usize, root: &BlobId) -> Vec<u32> {
        let store = &self.sim.devices[i].store;
        let keys = block_on(store.keys(&chunks_prefix(root))).unwrap();
        blobs::have_from_keys(root, &keys)
    }

    /// Performs an engine's effects the way the app runtime does.
    fn apply(&mut self, i: usize, effects: Vec<BlobEffect>) {
        for e in effects {
            match e {
                BlobEffect::Send { peer, mut msg } => {
                    if self.corrupting.contains(&i)
                        && let BlobMessage::Chunk { data, .. } = &mut msg
                    {
                        data[0] ^= 0x55;
                    }
                    let to = peer_index(&peer).unwrap();
                    self.sim.send_blob(i, to, &msg);
                }
                BlobEffect::ReadChunk { peer, root, index } => {
                    let store = &self.sim.devices[i].store;
                    let bytes = block_on(store.get(&chunk_key(&root, index))).unwrap();
                    let eff = self.engines[i].chunk_read(&peer, root, index, bytes);
                    self.apply(i, eff);
                }
                BlobEffect::StoreManifest { root, bytes } => {
                    let store = &self.sim.devices[i].store;
                    block_on(store.put(&manifest_key(&root), &bytes)).unwrap();
                }
                BlobEffect::StoreChunk { root, index, data } => {
                    let store = &self.sim.devices[i].store;
                    block_on(store.put(&chunk_key(&root, index), &data)).unwrap();
                    let eff = self.engines[i].stored(root, index);
                    self.apply(i, eff);
                }
                BlobEffect::Progress {
                    have_bytes,
                    total_bytes,
                    ..
                } => assert!(have_bytes <= total_bytes),
                BlobEffect::Complete { root } => {
                    self.complete.insert((i, root));
                }
                BlobEffect::Rejected { peer, .. } => self.rejected.push((i, peer)),
                BlobEffect::Failed { reason, .. } => {
                    panic!("device {i}: transfer failed: {reason}")
                }
                BlobEffect::Corrupt { .. } => panic!("device {i}: storage damaged"),
            }
        }
    }

    /// Hands identified peers and arrived blob messages to the engines.
    fn drain_events(&mut self) -> bool {
        let mut any = false;
        while let Some((i, peer)) = self.sim.identified.pop_front() {
            any = true;
            let eff = self.engines[i].peer_up(&peer);
            self.apply(i, eff);
        }
        while let Some((i, peer, msg)) = self.sim.blob_inbox.pop_front() {
            any = true;
            let eff = self.engines[i].on_message(&peer, msg, self.now);
            self.apply(i, eff);
        }
        any
    }

    /// One round: every link delivers what it holds (bulk frames through the chaos).
    fn round(&mut self) -> bool {
        let mut moved = self.drain_events();
        let n = self.sim.devices.len();
        for a in 0..n {
            for b in 0..n {
                if a == b || !self.sim.connected(a, b) {
                    continue;
                }
                moved |= self.sim.deliver(a, b, usize::MAX) > 0;
                while self.sim.bulk_in_flight(a, b) > 0 {
                    let used = self.chaos_used.entry((a, b)).or_default();
                    if *used < self.chaos.max_per_link {
                        let q = self.sim.bulk_queue(a, b).unwrap();
                        if self.rng.chance(self.chaos.drop_percent) {
                            q.pop_front();
                            *used += 1;
                            continue;
                        }
                        if q.len() >= 2 && self.rng.chance(self.chaos.swap_percent) {
                            q.swap(0, 1);
                            *used += 1;
                        }
                    }
                    moved |= self.sim.deliver_bulk(a, b, 1) > 0;
                    moved |= self.drain_events();
                }
                moved |= self.drain_events();
            }
        }
        moved
    }

    /// Runs rounds; when the network is quiet, a second passes and every engine ticks.
    fn run_until(&mut self, mut done: impl FnMut(&Net) -> bool) {
        for _ in 0..5_000 {
            if done(self) {
                return;
            }
            if !self.round() {
                self.now += 1_000;
                for i in 0..self.engines.len() {
                    let eff = self.engines[i].tick(self.now);
                    self.apply(i, eff);
                }
            }
        }
        panic!("the transfer never finished");
    }

    fn connect_all(&mut self) {
        let n = self.sim.devices.len();
        for a in 0..n {
            for b in a + 1..n {
                self.sim.connect(a, b);
            }
        }
        self.sim.run_until_quiescent();
        self.drain_events();
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        self.sim.disconnect(a, b);
        for (x, y) in [(a, b), (b, a)] {
            let eff = self.engines[x].peer_down(&peer_name(y), self.now);
            self.apply(x, eff);
        }
    }
}

const SIZE: usize = 3 * 1024 * 1024 + 1000; // 13 chunks, the last one short

#[test]
fn three_devices_fetch_a_file_through_lost_and_reordered_frames() {
    // 1. Three devices are connected; the laptop shares a 3 MiB file.
    let mut net = Net::new(3, 1);
    net.chaos = Chaos {
        drop_percent: 5,
        swap_percent: 5,
        max_per_link: 6,
    };
    net.connect_all();
    let data = random_bytes(SIZE, 42);
    let meta = net.share(0, &data, "video.mp4");
    net.sim.run_until_quiescent();

    // 2. The others see the item and fetch the file, while bulk frames get lost/reordered.
    for i in [1, 2] {
        let items = net.sim.devices[i].replica_mut().items();
        assert_eq!(items[0].file.as_ref(), Some(&meta));
        net.want_all_files(i);
    }
    net.run_until(|n| n.complete.len() == 2);

    // 3. Both hold exactly the original bytes; losses were made up for by asking again.
    assert!(net.chaos_used.values().sum::<u32>() > 0);
    let requests: u64 = [1, 2]
        .map(|i| net.engines[i].stats().chunk_requests)
        .iter()
        .sum();
    let chunks = SIZE.div_ceil(CHUNK_SIZE) as u64;
    assert!(requests > 2 * chunks, "lost chunks were asked for again");
    for i in [1, 2] {
        assert_eq!(net.read_file(i, &meta.root).as_deref(), Some(&data[..]));
        assert!(net.engines[i].is_complete(&meta.root));
    }
}

#[test]
fn a_peer_serving_damaged_chunks_is_refused_and_the_file_comes_from_another() {
    // 1. Two devices hold the file; one of them damages every chunk it sends.
    let mut net = Net::new(3, 2);
    let data = random_bytes(SIZE, 7);
    net.give(1, &data);
    let meta = net.share(0, &data, "photos.zip");
    net.corrupting.insert(1);
    net.connect_all();

    // 2. The phone fetches it from both.
    net.want_all_files(2);
    net.run_until(|n| n.complete.contains(&(2, meta.root)));

    // 3. The damaged chunks were refused (never stored) and fetched from the honest device;
    //    the damaging device stopped being asked after a few.
    assert_eq!(net.read_file(2, &meta.root).as_deref(), Some(&data[..]));
    let stats = net.engines[2].stats();
    assert!(stats.chunks_rejected >= 1, "{stats:?}");
    // At most the chunks already asked for when the limit was reached.
    let config = TransferConfig::default();
    let limit = u64::from(config.max_bad_chunks) + config.per_peer as u64;
    assert!(stats.chunks_rejected <= limit, "{stats:?}");
    assert!(
        net.rejected
            .iter()
            .all(|(i, p)| *i == 2 && p == &peer_name(1))
    );
}

#[test]
fn a_peer_vanishing_mid_transfer_is_replaced_by_another() {
    // 1. Two devices hold the file; the phone starts fetching it from both.
    let mut net = Net::new(3, 3);
    let data = random_bytes(SIZE, 9);
    net.give(1, &data);
    let meta = net.share(0, &data, "backup.tar");
    net.connect_all();
    net.want_all_files(2);
    net.run_until(|n| n.stored_chunks(2, &meta.root).len() >= 2);
    assert!(!net.complete.contains(&(2, meta.root)));

    // 2. The laptop vanishes mid-transfer.
    net.disconnect(0, 2);

    // 3. The phone completes from the remaining device.
    net.run_until(|n| n.complete.contains(&(2, meta.root)));
    assert_eq!(net.read_file(2, &meta.root).as_deref(), Some(&data[..]));
}

#[test]
fn a_restart_mid_transfer_resumes_without_fetching_stored_chunks_again() {
    // 1. The phone starts fetching a file from the laptop.
    let mut net = Net::new(2, 4);
    let data = random_bytes(SIZE, 11);
    let meta = net.share(0, &data, "album.zip");
    net.connect_all();
    net.want_all_files(1);
    net.run_until(|n| n.stored_chunks(1, &meta.root).len() >= 3);
    assert!(!net.complete.contains(&(1, meta.root)));

    // 2. The phone's tab reloads: a new replica and a new engine, resumed from storage.
    net.sim.restart(1);
    let eff = net.engines[0].peer_down(&peer_name(1), net.now);
    net.apply(0, eff);
    net.engines[1] = Transfers::new(TransferConfig::default());
    let have = net.stored_chunks(1, &meta.root);
    let manifest = block_on(net.sim.devices[1].store.get(&manifest_key(&meta.root)))
        .unwrap()
        .unwrap();
    let eff = net.engines[1]
        .resume(meta.root, &manifest, &have, net.now)
        .unwrap();
    net.apply(1, eff);

    // 3. It reconnects and completes, asking only for the chunks it did not store.
    net.connect_all();
    net.run_until(|n| n.complete.contains(&(1, meta.root)));
    assert_eq!(net.read_file(1, &meta.root).as_deref(), Some(&data[..]));
    let total = SIZE.div_ceil(CHUNK_SIZE) as u64;
    assert_eq!(
        net.engines[1].stats().chunk_requests,
        total - have.len() as u64
    );
}

#[test]
fn a_zero_byte_file_completes_at_once() {
    let mut net = Net::new(2, 5);
    let meta = net.share(0, &[], "empty.txt");
    net.connect_all();
    net.want_all_files(1);
    net.run_until(|n| n.complete.contains(&(1, meta.root)));
    assert_eq!(net.read_file(1, &meta.root), Some(vec![]));
    assert_eq!(net.engines[1].stats().chunk_requests, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever the losses and reorders, every device ends with exactly the original bytes.
    #[test]
    fn any_losses_and_reorders_still_deliver_the_exact_file(seed in any::<u64>(), chunks in 1usize..6, tail in 0usize..3000) {
        let mut net = Net::new(3, seed);
        net.chaos = Chaos { drop_percent: 10, swap_percent: 10, max_per_link: 8 };
        let data = random_bytes(chunks * CHUNK_SIZE + tail, seed);
        net.give(1, &data);
        let meta = net.share(0, &data, "f.bin");
        net.connect_all();
        net.want_all_files(2);
        net.run_until(|n| n.complete.contains(&(2, meta.root)));
        prop_assert_eq!(net.read_file(2, &meta.root), Some(data));
    }
}
