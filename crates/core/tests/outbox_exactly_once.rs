//! Scenario (issue #14): what a device writes alone is in the durable outbox before it is
//! shown, and reaches the mailbox exactly once across crashes, restarts and duplicate
//! flushes (the page and the service worker racing). The "server" deduplicates entries by
//! their BLAKE3 hash, as ferry-signal does.

use ferry_core::outbox::{self, Destination, StageContext, StageError};
use ferry_core::testing::block_on;
use ferry_core::{
    DeviceId, MailboxKeys, MailboxPayload, MailboxReader, MemoryStore, Replica, SpaceSecret, Store,
    random_msg_id,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// A mailbox that, like ferry-signal, answers a repeated entry with its first seq.
#[derive(Default)]
struct Server {
    entries: Vec<Vec<u8>>,
    by_hash: BTreeMap<[u8; 32], u64>,
    posts: usize,
}

impl Server {
    fn post(&mut self, entry: &[u8]) -> u64 {
        self.posts += 1;
        let hash = *blake3::hash(entry).as_bytes();
        if let Some(seq) = self.by_hash.get(&hash) {
            return *seq;
        }
        self.entries.push(entry.to_vec());
        let seq = self.entries.len() as u64;
        self.by_hash.insert(hash, seq);
        seq
    }
}

/// The writing device: its document, its store (which survives a crash) and what only lives
/// in memory (which does not).
struct Writer {
    space: SpaceSecret,
    keys: MailboxKeys,
    replica: Replica,
    store: MemoryStore,
    /// Heads the mailbox is known to have (saved in settings by the app).
    confirmed: Vec<[u8; 32]>,
    /// Records whose posting began in this run (in memory).
    started: BTreeSet<u64>,
    clock: u64,
}

impl Writer {
    fn new(space: &SpaceSecret) -> Self {
        Writer {
            space: space.clone(),
            keys: MailboxKeys::derive(space),
            replica: Replica::new(DeviceId::random(), "Phone", space).unwrap(),
            store: MemoryStore::default(),
            confirmed: vec![],
            started: BTreeSet::new(),
            clock: 1_000,
        }
    }

    /// A person writes a text; the app stages the outbox before showing it. Returns whether
    /// the outbox carries it at the moment it would be shown.
    fn write(&mut self, text: &str) -> bool {
        self.clock += 1;
        self.replica.add_text(text, self.clock).unwrap();
        self.stage();
        // "Shown": read back from storage only, as a restarted app would.
        let loaded = block_on(outbox::load(&self.store)).unwrap();
        let carried: Vec<[u8; 32]> =
            outbox::target_heads(&loaded.records, &self.confirmed).to_vec();
        let mut now: Vec<[u8; 32]> = self.replica.doc_mut().heads().iter().map(|h| h.0).collect();
        now.sort();
        let mut carried = carried;
        carried.sort();
        carried == now
    }

    fn stage(&mut self) {
        let loaded = block_on(outbox::load(&self.store)).unwrap();
        let room = self.space.room_id();
        let cx = StageContext {
            keys: &self.keys,
            room: &room,
            device: self.replica.device(),
            to: Destination {
                url: "http://127.0.0.1:3536/mailbox/r".into(),
                token: self.keys.auth_token(),
                tag: self.keys.device_tag(self.replica.device()),
            },
            confirmed: &self.confirmed,
            now_ms: self.clock,
            carried_ms: self.clock,
            msg_id: random_msg_id(),
        };
        let started = self.started.clone();
        match outbox::stage(
            &loaded.records,
            |s| started.contains(&s),
            self.replica.doc_mut(),
            cx,
        ) {
            Ok(staged) => block_on(outbox::save_staged(&self.store, &staged)).unwrap(),
            Err(StageError::NothingNew) => {}
            Err(e) => panic!("staging failed: {e}"),
        }
    }

    /// The page flushes: posts records oldest first, at most `budget` entries; a finished
    /// record moves the confirmed heads and is deleted.
    fn flush(&mut self, server: &mut Server, mut budget: usize) {
        let loaded = block_on(outbox::load(&self.store)).unwrap();
        for record in loaded.records {
            if let Some(seqs) = loaded.done.get(&record.stamp) {
                // The service worker posted it while the page was away.
                assert_eq!(seqs.len(), record.entries.len());
                self.finish(&record);
                continue;
            }
            self.started.insert(record.stamp);
            for entry in &record.entries {
                if budget == 0 {
                    return;
                }
                budget -= 1;
                server.post(entry);
            }
            self.finish(&record);
        }
    }

    fn finish(&mut self, record: &outbox::OutboxRecord) {
        self.confirmed = record.heads.clone();
        block_on(outbox::remove(&self.store, record.stamp)).unwrap();
    }

    /// The service worker with the app closed: posts every record and leaves "done" markers
    /// (it never deletes or rewrites a record).
    fn service_worker_sync(&self, server: &mut Server) {
        let loaded = block_on(outbox::load(&self.store)).unwrap();
        for record in loaded.records {
            let seqs: Vec<u64> = record.entries.iter().map(|e| server.post(e)).collect();
            block_on(
                self.store
                    .put(&record.done_key(), &outbox::encode_done(&seqs)),
            )
            .unwrap();
        }
    }

    /// The tab is killed: everything in memory is gone, storage stays.
    fn crash(&mut self) {
        self.started.clear();
    }
}

/// The other device, opening alone: reads every entry.
fn read_all(space: &SpaceSecret, server: &Server) -> BTreeSet<String> {
    let keys = MailboxKeys::derive(space);
    let mut reader = MailboxReader::new(keys, &space.room_id()).unwrap();
    let mut laptop = Replica::new(DeviceId::random(), "Laptop", space).unwrap();
    for entry in &server.entries {
        if let Some((_, MailboxPayload::Changes { bytes })) = reader.open(entry).unwrap() {
            laptop.apply_mailbox_changes(&bytes).unwrap();
        }
    }
    laptop.items().into_iter().map(|i| i.text).collect()
}

#[test]
fn write_then_close_then_the_other_device_reads_everything_once() {
    let space = SpaceSecret::random();
    let mut server = Server::default();
    let mut phone = Writer::new(&space);

    // 1. The phone writes three texts alone; each is in the outbox before it is shown.
    for t in ["one", "two", "three"] {
        assert!(phone.write(t), "{t} shown before the outbox carried it");
    }
    // 2. The tab is killed before anything was posted.
    phone.crash();
    // 3. The service worker posts it, twice (a retried sync), and so does the next start.
    phone.service_worker_sync(&mut server);
    phone.service_worker_sync(&mut server);
    phone.flush(&mut server, usize::MAX);
    // The service worker posted every entry twice; the server stored each once, and the next
    // start took the worker's "done" markers instead of posting again.
    assert_eq!(server.posts, 2 * server.entries.len());
    assert_eq!(
        read_all(&space, &server),
        ["one", "two", "three"].map(String::from).into()
    );
    // 4. Nothing is left to send.
    assert!(
        block_on(outbox::load(&phone.store))
            .unwrap()
            .records
            .is_empty()
    );
}

#[test]
fn a_half_posted_record_is_kept_and_the_next_change_follows_it() {
    let space = SpaceSecret::random();
    let mut server = Server::default();
    let mut phone = Writer::new(&space);
    phone.write(&"long ".repeat(40_000)); // several entries
    let parts = block_on(outbox::load(&phone.store)).unwrap().records[0]
        .entries
        .len();
    assert!(parts > 1);
    // 1. The page posts one entry, then the person writes again: the started record stays.
    phone.flush(&mut server, 1);
    phone.write("after");
    assert_eq!(
        block_on(outbox::load(&phone.store)).unwrap().records.len(),
        2
    );
    // 2. Killed; the next start posts everything again (the first entry a second time).
    phone.crash();
    phone.flush(&mut server, usize::MAX);
    assert!(server.posts > server.entries.len());
    assert!(read_all(&space, &server).contains("after"));
}

#[derive(Debug, Clone)]
enum Step {
    Write,
    Flush(usize),
    ServiceWorker,
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Write),
        2 => (0usize..4).prop_map(Step::Flush),
        1 => Just(Step::ServiceWorker),
        1 => Just(Step::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any interleaving of writes, partial flushes, service-worker syncs and crashes: every
    /// text is in the outbox when shown, and once the outbox is flushed it is empty and the
    /// other device has every text.
    #[test]
    fn nothing_is_stranded_or_stored_twice(steps in prop::collection::vec(step(), 1..24)) {
        let space = SpaceSecret::random();
        let mut server = Server::default();
        let mut phone = Writer::new(&space);
        let mut written = BTreeSet::new();
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Write => {
                    let text = format!("text {i}");
                    prop_assert!(phone.write(&text));
                    written.insert(text);
                }
                Step::Flush(n) => phone.flush(&mut server, *n),
                Step::ServiceWorker => phone.service_worker_sync(&mut server),
                Step::Crash => phone.crash(),
            }
        }
        phone.crash();
        phone.flush(&mut server, usize::MAX);
        prop_assert!(block_on(outbox::load(&phone.store)).unwrap().records.is_empty());
        prop_assert_eq!(read_all(&space, &server), written);
    }
}
