//! Two to five devices that are never online together, whole: real device engines (core `Device`) write texts and files and
//! hand them over through one mailbox, with the app's own mailbox client on every device
//! (`device::mailbox_client::MailboxClient`: when to visit, and each visit's requests in the
//! app's order; the `Uploader` deciding deltas, bases and file chunks, the `Inbox` deciding
//! what counts as read and may be acknowledged, `store_payload` storing what arrives, sealed
//! receipts deciding "on Laptop"). It talks HTTP to an in-memory server that follows
//! ferry-signal's rules: the bearer key, sequence numbers, deduplication of nothing, bases (`covers < from <= to <= newest`, only newer ones replace), history trimmed
//! once every registered device acknowledged it and a base covers it, file chunks held until
//! every other registered device has them. Disks fill up and free again, devices restart from
//! their saved state (`local/state`, written through the same full disk; in-memory progress
//! lost), and the server **loses its data**: it is
//! restored from an earlier copy (finding 4 of issue #15).
//!
//! Devices also meet directly, now and then, over the core's link port (`Router` over a
//! `MemoryNet`): they sync history there, and a connected device leaves the mailbox alone,
//! as the app does. Connections are cut again (partitions), and a restart drops them.
//!
//! Every case must converge: every device ends with every text and every file byte-identical,
//! and no device ever says an item is on another device that has not stored it with its
//! file's bytes (through the mailbox a sealed receipt says so; directly, equal heads prove the
//! items and the device's `Have` answers the files, see `delivery::held_through`).
//! (Not modelled: the entry TTL and quotas, which ferry-signal's own tests cover.)

use ferry_core::blobs::{CHUNK_SIZE, ManifestBuilder, chunk_key, manifest_key};
use ferry_core::device::delivery;
use ferry_core::device::mailbox_client::{
    HttpError, INTERVAL_MS, MailboxClient, MailboxHost, Method, News, Request,
};
use ferry_core::device::{
    self as engine, Device as Engine, LocalState, MemoryLink, MemoryNet, Router,
};
use ferry_core::testing::block_on;
use ferry_core::{
    BlobId, DeviceId, Effect, FileMeta, MailboxKeys, MemoryStore, Replica, SpaceDoc, SpaceSecret,
    Store, StoreError, StoreKey,
};
use proptest::prelude::*;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

const PAGE: usize = 8;
/// The room's mailbox URL (never dialled: the host answers from [`Server`]).
const URL: &str = "http://mailbox.test/mailbox/room";

/// The server's state for one room (cloned to model a backup it is later restored from).
#[derive(Clone, Default)]
struct Server {
    /// seq → (sealed bytes, uploader's tag when held)
    entries: BTreeMap<u64, (Vec<u8>, Option<String>)>,
    next: u64,
    /// Registered devices' tags and cursors.
    cursors: BTreeMap<String, u64>,
    /// (from, to, covers)
    base: Option<(u64, u64, u64)>,
    /// The room's bearer key.
    token: String,
}

impl Server {
    fn post(&mut self, blob: Vec<u8>, uploader: &str, hold: bool) -> u64 {
        self.next += 1;
        self.entries
            .insert(self.next, (blob, hold.then(|| uploader.to_owned())));
        self.next
    }

    fn register(&mut self, tag: &str) {
        self.cursors.entry(tag.to_owned()).or_insert(0);
    }

    fn ack(&mut self, tag: &str, seq: u64) {
        assert!(
            seq <= self.next,
            "acknowledged {seq} past the newest {}",
            self.next
        );
        let c = self.cursors.entry(tag.to_owned()).or_insert(0);
        *c = (*c).max(seq);
        self.trim();
    }

    /// ferry-signal's `declare_base`: refused unless well-formed; only a newer one replaces.
    fn declare_base(&mut self, from: u64, to: u64, covers: u64) -> bool {
        if !(covers < from && from <= to && to <= self.next)
            || (from..=to).any(|s| !self.entries.contains_key(&s))
        {
            return false;
        }
        if self
            .base
            .is_none_or(|(_, bto, bcovers)| covers >= bcovers && to > bto)
        {
            self.base = Some((from, to, covers));
        }
        self.trim();
        true
    }

    /// ferry-signal's `trim`: history acknowledged by everyone registered and covered by the
    /// base; held entries once every other registered device has them.
    fn trim(&mut self) {
        let acked = self.cursors.values().copied().min().unwrap_or(0);
        let bound = acked.min(self.base.map_or(0, |b| b.2));
        let cursors = self.cursors.clone();
        self.entries.retain(|seq, (_, held)| match held {
            None => *seq > bound,
            Some(uploader) => {
                let mut others = cursors.iter().filter(|(d, _)| *d != uploader).peekable();
                !(others.peek().is_some() && others.all(|(_, c)| *c >= *seq))
            }
        });
    }

    /// The JSON answer to `GET ?after=&limit=`, as ferry-signal writes it.
    fn page(&self, after: u64) -> Vec<u8> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let picked: Vec<_> = self.entries.range(after + 1..).take(PAGE + 1).collect();
        let more = picked.len() > PAGE;
        let entries: Vec<_> = picked
            .iter()
            .take(PAGE)
            .map(|(seq, (blob, _))| serde_json::json!({ "seq": seq, "blob": b64.encode(blob) }))
            .collect();
        let mut answer = serde_json::json!({
            "entries": entries, "more": more, "last_seq": self.next, "cursors": self.cursors,
        });
        if let Some((from, to, _)) = self.base {
            answer["base"] = serde_json::json!({ "from": from, "to": to });
        }
        answer.to_string().into_bytes()
    }

    /// One request, answered as ferry-signal answers it (the routes the client uses).
    fn handle(&mut self, req: Request) -> (u16, Vec<u8>) {
        if req.token.as_str() != self.token {
            return (401, br#"{"error":"wrong key"}"#.to_vec());
        }
        let rest = req.url.strip_prefix(URL).expect("only this room's mailbox");
        let json = |v: serde_json::Value| v.to_string().into_bytes();
        let body: serde_json::Value = req
            .body
            .as_deref()
            .filter(|_| req.json)
            .map(|b| serde_json::from_slice(b).expect("JSON body"))
            .unwrap_or_default();
        match req.method {
            Method::Put if rest.is_empty() => (200, json(serde_json::json!({}))),
            Method::Get => {
                let after = rest
                    .strip_prefix("?after=")
                    .and_then(|q| q.split('&').next())
                    .and_then(|n| n.parse().ok())
                    .expect("?after=<seq>");
                (200, self.page(after))
            }
            Method::Post if rest == "/ack" => {
                let tag = body["device"].as_str().expect("device");
                self.ack(tag, body["seq"].as_u64().expect("seq"));
                (200, json(serde_json::json!({})))
            }
            Method::Post if rest == "/base" => {
                let n = |k: &str| body[k].as_u64().expect("base field");
                if self.declare_base(n("from"), n("to"), n("covers")) {
                    (200, json(serde_json::json!({})))
                } else {
                    (409, json(serde_json::json!({ "error": "bad base" })))
                }
            }
            Method::Post => {
                let query = rest.strip_prefix("?device=").expect("?device=<tag>");
                let (tag, hold) = match query.strip_suffix("&hold=1") {
                    Some(tag) => (tag, true),
                    None => (query, false),
                };
                let seq = self.post(req.body.expect("an entry"), tag, hold);
                (201, json(serde_json::json!({ "seq": seq })))
            }
            Method::Delete => {
                let tag = rest.strip_prefix("/devices/").expect("/devices/<tag>");
                self.cursors.remove(tag);
                self.trim();
                (200, json(serde_json::json!({})))
            }
            Method::Put => (404, Vec::new()),
        }
    }
}

/// A device's storage for file bytes, which can fill up.
#[derive(Default)]
struct Disk {
    mem: MemoryStore,
    full: Cell<bool>,
}

impl Store for Disk {
    async fn get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.mem.get(key).await
    }
    async fn put(&self, key: &StoreKey, value: &[u8]) -> Result<(), StoreError> {
        if self.full.get() {
            return Err(StoreError::QuotaExceeded);
        }
        self.mem.put(key, value).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.mem.delete(key).await
    }
    async fn list(&self, prefix: &StoreKey) -> Result<Vec<(StoreKey, Vec<u8>)>, StoreError> {
        self.mem.list(prefix).await
    }
}

struct World {
    secret: SpaceSecret,
    server: Server,
    backup: Option<Server>,
    /// Every file written: root → its bytes.
    files: BTreeMap<BlobId, Vec<u8>>,
    now: u64,
    msg_id: u64,
    net: MemoryNet,
}

struct Device {
    id: DeviceId,
    /// The app's device engine (core `device::Device`): the replica, this device's state as
    /// the app keeps it (`local/state` on `disk`: the mailbox part and the delivery marks,
    /// from receipts and from direct sync, one map as in the app), the peers, the marks.
    engine: Engine,
    disk: Disk,
    /// The app's mailbox client.
    client: MailboxClient,
    router: Router<MemoryLink>,
    /// What the client asked to show.
    news: Vec<News>,
}

/// The rest of a device, as its mailbox client sees it: storage, history, state, and the
/// server on the other end of HTTP.
struct Host<'a> {
    me: DeviceId,
    replica: &'a mut Replica,
    disk: &'a Disk,
    local: &'a mut LocalState,
    server: &'a mut Server,
    msg_id: &'a mut u64,
    now: u64,
    news: &'a mut Vec<News>,
}

impl MailboxHost for Host<'_> {
    type Store = Disk;
    fn store(&self) -> &Disk {
        self.disk
    }
    fn replica(&mut self) -> &mut Replica {
        self.replica
    }
    fn split(&mut self) -> (&Disk, &mut Replica) {
        (self.disk, self.replica)
    }
    fn local(&mut self) -> &mut LocalState {
        self.local
    }
    async fn save_local(&mut self, change: impl Fn(&mut LocalState)) -> Result<(), StoreError> {
        self.local.update(self.disk, change).await
    }
    fn now_ms(&self) -> u64 {
        self.now
    }
    fn msg_id(&mut self) -> u64 {
        *self.msg_id += 1;
        *self.msg_id
    }
    async fn request(&mut self, request: Request) -> Result<(u16, Vec<u8>), HttpError> {
        Ok(self.server.handle(request))
    }
    async fn apply(&mut self, _effects: Vec<Effect>) -> bool {
        // The history stays in memory here (restarts keep it); nothing else to perform.
        true
    }
    fn stored_through(&mut self) -> Vec<(DeviceId, u64)> {
        let stored = stored_files(self.replica, self.disk);
        delivery::stored_through(
            self.replica.history().items(),
            &stored,
            &BTreeSet::new(),
            self.me,
        )
    }
    fn files_stored(&mut self) -> Vec<BlobId> {
        stored_files(self.replica, self.disk).into_iter().collect()
    }
    fn news(&mut self, news: News) {
        self.news.push(news);
    }
}

/// Files held whole on `disk`.
fn stored_files(replica: &Replica, disk: &Disk) -> BTreeSet<BlobId> {
    replica
        .items()
        .iter()
        .filter_map(|i| i.file.as_ref().map(|f| f.root))
        .filter(|root| {
            let Some(m) = block_on(disk.mem.get(&manifest_key(root))).unwrap() else {
                return false;
            };
            let m = ferry_core::Manifest::decode(root, &m).unwrap();
            (0..m.chunk_count()).all(|c| {
                block_on(disk.mem.get(&chunk_key(root, c)))
                    .unwrap()
                    .is_some()
            })
        })
        .collect()
}

impl Device {
    fn new(world: &World, i: usize) -> Self {
        let id = DeviceId::from_bytes([i as u8 + 1; 16]);
        let disk = Disk::default();
        let (local, _) = block_on(LocalState::load(&disk, || (id, format!("device {i}")))).unwrap();
        let mut router = Router::default();
        router.connect(world.net.open(&socket(i)));
        let replica = Replica::new(id, &local.name, &world.secret).unwrap();
        Device {
            id,
            router,
            news: Vec::new(),
            client: MailboxClient::resume(&world.secret, id, &local.mailbox, world.now),
            engine: Engine::new(replica, local),
            disk,
        }
    }

    /// What was in memory only is gone; the saved state comes back from the disk.
    /// Connections drop (the other side sees them go) and a new socket opens.
    fn restart(&mut self, world: &World, me: usize) {
        let bytes = block_on(
            self.disk
                .mem
                .get(&StoreKey::from_stored("local/state".into())),
        )
        .unwrap()
        .expect("saved at the first start");
        let local = LocalState::decode(&bytes).unwrap();
        self.client = MailboxClient::resume(&world.secret, self.id, &local.mailbox, world.now);
        // The history as stored (in this model the disk never loses it): a new engine loads
        // it; peers, sessions and what was only in memory are gone.
        let saved = self.engine.replica_mut().doc_mut().save();
        let (doc, _) = SpaceDoc::load(&Replica::actor_for(self.id), [saved.as_slice()]).unwrap();
        let replica = Replica::from_doc(self.id, &local.name, doc, &world.secret);
        self.engine = Engine::new(replica, local);
        self.router.close_all();
        self.router.connect(world.net.open(&socket(me)));
    }

    /// Performs what the engine decided, as the app's executor does: sends on whichever
    /// socket reaches the peer, and local-state fields written through the (maybe full) disk.
    /// The history stays in memory here (restarts reload it from its saved bytes).
    fn perform(&mut self, effects: Vec<engine::Effect>) {
        for e in effects {
            match e {
                engine::Effect::Send { peer, lane, frame } => {
                    drop(self.router.send(&peer, lane, frame))
                }
                engine::Effect::SaveLocal(change) => {
                    // Best effort, as in the app: a full disk keeps it in memory only.
                    let local = self.engine.local();
                    drop(block_on(LocalState::store_change(&self.disk, local, |s| {
                        change.apply(s)
                    })));
                }
                _ => {}
            }
        }
    }

    /// One turn of the app's loop: what the sockets brought, then the engine's tick (the
    /// marks direct sync proves: equal heads for items, and files only once the device said
    /// it holds them, which here it never does: files travel through the mailbox).
    fn turn(&mut self, now: u64) -> bool {
        let events = self.router.poll();
        let busy = !events.is_empty();
        for event in events {
            let effects = self
                .engine
                .handle(engine::Input::Link { event, now })
                .unwrap();
            self.perform(effects);
        }
        let tick = engine::Input::Tick {
            now,
            synced_elsewhere: self.client.synced_ms,
        };
        let effects = self.engine.handle(tick).unwrap();
        self.perform(effects);
        // As the app's loop: while another device is connected the mailbox is left alone
        // (and the file grace period starts again).
        let connected = self.connected();
        self.client.due(now, connected, true);
        busy
    }

    /// Another device is connected directly (then the app leaves the mailbox alone).
    fn connected(&self) -> bool {
        self.engine.remote_devices() > 0
    }

    /// Files held whole here.
    fn stored_files(&self) -> BTreeSet<BlobId> {
        stored_files(self.engine.replica(), &self.disk)
    }

    /// One visit of the app's mailbox client, if it is due (time moves on by the interval).
    fn visit(&mut self, world: &mut World) {
        world.now += INTERVAL_MS;
        if !self.client.due(world.now, self.connected(), true) {
            return;
        }
        let (replica, local) = self.engine.split_mut();
        let mut host = Host {
            me: self.id,
            replica,
            disk: &self.disk,
            local,
            server: &mut world.server,
            msg_id: &mut world.msg_id,
            now: world.now,
            news: &mut self.news,
        };
        // An early end (a refused request) is tried again at the next visit, as in the app.
        let _ = block_on(self.client.visit(&mut host, URL));
    }

    fn write_file(&mut self, world: &mut World, tag: u8, chunks: usize) {
        let len = (chunks - 1) * CHUNK_SIZE + 1000 + tag as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u64 * 31 + world.now) as u8 ^ tag)
            .collect();
        let mut b = ManifestBuilder::new();
        for c in bytes.chunks(CHUNK_SIZE) {
            b.push(c).unwrap();
        }
        let manifest = b.finish();
        let root = manifest.root();
        // The sender stores its own bytes before the item exists (as the app does).
        block_on(self.disk.mem.put(&manifest_key(&root), &manifest.encode())).unwrap();
        for (i, c) in bytes.chunks(CHUNK_SIZE).enumerate() {
            block_on(self.disk.mem.put(&chunk_key(&root, i as u32), c)).unwrap();
        }
        let meta = FileMeta {
            root,
            name: format!("f{tag}.bin"),
            size: len as u64,
            mime: String::new(),
        };
        let (_, effects) = self
            .engine
            .replica_mut()
            .add_file(&meta, world.now)
            .unwrap();
        let effects = self.engine.absorb(effects, world.now, false);
        self.perform(effects);
        world.files.insert(root, bytes);
    }
}

/// No device says an item is on another device that has not stored it, with its file.
fn check_delivery(devices: &[Device]) -> Result<(), TestCaseError> {
    for a in devices {
        for (to, at) in &a.engine.local().delivered {
            let b = devices.iter().find(|d| d.id == *to).unwrap();
            let stored = b.stored_files();
            let held: BTreeSet<_> = b.engine.replica().items().iter().map(|i| i.id).collect();
            for item in a
                .engine
                .replica()
                .items()
                .iter()
                .filter(|i| i.author == a.id)
            {
                if item.at.wall_ms <= *at {
                    prop_assert!(held.contains(&item.id), "{:?} not on {to:?} yet", item.id);
                    if let Some(f) = &item.file {
                        prop_assert!(stored.contains(&f.root), "file not on {to:?} yet");
                    }
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    SendFile(usize, usize),
    Visit(usize),
    Disk(usize, bool),
    Restart(usize),
    /// Two devices connect directly (and sync while the connection lasts)…
    Meet(usize, usize),
    /// …and lose that connection.
    Part(usize, usize),
    /// The server's data dir is copied now…
    Backup,
    /// …and later restored from that copy (what came after is lost).
    Restore,
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..n).prop_map(Op::Write),
        1 => (0..n, 1usize..3).prop_map(|(d, c)| Op::SendFile(d, c)),
        5 => (0..n).prop_map(Op::Visit),
        1 => (0..n, any::<bool>()).prop_map(|(d, f)| Op::Disk(d, f)),
        1 => (0..n).prop_map(Op::Restart),
        1 => (0..n, 0..n).prop_map(|(a, b)| Op::Meet(a, b)),
        1 => (0..n, 0..n).prop_map(|(a, b)| Op::Part(a, b)),
        1 => Just(Op::Backup),
        1 => Just(Op::Restore),
    ]
}

fn cases() -> u32 {
    std::env::var("FERRY_SOAK_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// A device's socket name on the in-memory network.
fn socket(i: usize) -> String {
    format!("device-{i}")
}

/// Direct sync runs until nothing moves.
fn settle(devices: &mut [Device], now: u64) {
    for _ in 0..50 {
        let mut busy = false;
        for d in devices.iter_mut() {
            busy |= d.turn(now);
        }
        if !busy {
            return;
        }
    }
    panic!("direct sync never settles");
}

/// A space of `n` devices, none connected, each registered with the mailbox.
fn setup(n: usize) -> (World, Vec<Device>) {
    let secret = SpaceSecret::from_bytes([5; 32]);
    let keys = MailboxKeys::derive(&secret);
    let mut world = World {
        server: Server {
            token: keys.auth_token().to_string(),
            ..Server::default()
        },
        secret,
        backup: None,
        files: BTreeMap::new(),
        now: 1_700_000_000_000,
        msg_id: 0,
        net: MemoryNet::default(),
    };
    let devices: Vec<Device> = (0..n).map(|i| Device::new(&world, i)).collect();
    // Paired before the run: each device visited once (registered), so file chunks are held
    // for all of them. (One that registers later gets files by direct sync: chunks every
    // registered device had are gone, by design.)
    for i in 0..n {
        world
            .server
            .register(&keys.device_tag(DeviceId::from_bytes([i as u8 + 1; 16])));
    }
    (world, devices)
}

/// One operation, then direct sync settles; delivery marks are checked.
fn step(
    world: &mut World,
    devices: &mut [Device],
    step: usize,
    op: &Op,
) -> Result<(), TestCaseError> {
    world.now += 1000;
    match op {
        Op::Write(d) => {
            let text = format!("text {step} from {d}");
            let intent = engine::Intent::Write(text);
            let now = world.now;
            let effects = devices[*d]
                .engine
                .handle(engine::Input::Intent { intent, now })
                .unwrap();
            devices[*d].perform(effects);
        }
        Op::SendFile(d, chunks) => devices[*d].write_file(world, step as u8, *chunks),
        Op::Visit(d) => devices[*d].visit(world),
        Op::Disk(d, full) => devices[*d].disk.full.set(*full),
        Op::Restart(d) => devices[*d].restart(world, *d),
        Op::Meet(a, b) => world.net.connect(&socket(*a), &socket(*b)),
        Op::Part(a, b) => world.net.cut(&socket(*a), &socket(*b)),
        Op::Backup => world.backup = Some(world.server.clone()),
        Op::Restore => {
            if let Some(b) = world.backup.clone() {
                world.server = b;
            }
        }
    }
    settle(devices, world.now);
    check_delivery(devices)
}

fn run(n: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let (mut world, mut devices) = setup(n);
    for (i, op) in ops.iter().enumerate() {
        step(&mut world, &mut devices, i, op)?;
    }
    // Every connection drops, disks are freed; every device visits in turn until nothing
    // moves.
    for a in 0..n {
        for b in 0..n {
            world.net.cut(&socket(a), &socket(b));
        }
    }
    settle(&mut devices, world.now);
    for d in &devices {
        d.disk.full.set(false);
    }
    for _ in 0..14 {
        for d in devices.iter_mut() {
            d.visit(&mut world);
        }
        check_delivery(&devices)?;
    }
    let texts = |d: &Device| -> BTreeSet<(String, DeviceId)> {
        d.engine
            .replica()
            .items()
            .iter()
            .map(|i| (i.text.clone(), i.author))
            .collect()
    };
    let want = texts(&devices[0]);
    let written = ops
        .iter()
        .filter(|o| matches!(o, Op::Write(_) | Op::SendFile(..)))
        .count();
    prop_assert_eq!(
        devices[0].engine.replica().items().len(),
        written,
        "device 0 lost an item"
    );
    for (i, d) in devices.iter().enumerate() {
        prop_assert_eq!(&texts(d), &want, "device {} differs", i);
        for (root, bytes) in &world.files {
            let m = block_on(d.disk.mem.get(&manifest_key(root))).unwrap();
            prop_assert!(m.is_some(), "device {} lacks a manifest", i);
            let m = ferry_core::Manifest::decode(root, &m.unwrap()).unwrap();
            let mut got = Vec::new();
            for c in 0..m.chunk_count() {
                let chunk = block_on(d.disk.mem.get(&chunk_key(root, c))).unwrap();
                prop_assert!(chunk.is_some(), "device {} lacks chunk {}", i, c);
                got.extend(chunk.unwrap());
            }
            prop_assert!(got == *bytes, "device {i}: a file differs");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn devices_meeting_now_and_then_converge_through_a_mailbox_that_loses_data(
        (n, ops) in (2..=5usize).prop_flat_map(|n| (Just(n), proptest::collection::vec(op(n), 1..40)))
    ) {
        run(n, &ops)?;
    }
}

/// The restore the random cases found first, spelled out: A uploads, the server's data dir
/// is copied, A writes more (texts and a file) and uploads it, the server is restored from
/// the copy. A's cursor is not past the restored server's newest entry, so only A's record of
/// its own newest upload shows that it is gone; A uploads everything again and B gets it.
#[test]
fn a_server_restored_from_an_earlier_copy_loses_nothing() {
    use Op::*;
    let ops = [
        Visit(0),
        SendFile(0, 1),
        Backup,
        Write(0),
        Write(0),
        Write(0),
        Visit(0),
        Restore,
    ];
    run(2, &ops).unwrap();
}

/// B, its disk full, reads A's file chunks without storing them, posts a receipt and history,
/// reads its own posts back, and moves its cursor back before them (the chunks are read
/// again). The server is then restored from a copy without B's posts. Reading them back did
/// not make them safe: B checks its newest post until its saved cursor is past it, and
/// compares the entry at the cursor it moved back to, not the last one it read.
#[test]
fn posts_read_back_before_a_cursor_moved_back_are_still_checked() {
    use Op::*;
    let ops = [
        SendFile(0, 1),
        Visit(0),
        Disk(1, true),
        Backup,
        Write(0),
        Write(1),
        Visit(1),
        Visit(1),
        Restore,
        Write(0),
    ];
    run(2, &ops).unwrap();
}

/// The same with nothing of B's own lost: B's cursor, moved back, sits on an entry the
/// restored server numbers again with other contents.
#[test]
fn the_entry_at_a_cursor_moved_back_is_compared() {
    use Op::*;
    let ops = [
        SendFile(0, 1),
        Disk(1, true),
        Backup,
        Visit(0),
        Visit(1),
        Visit(1),
        Restore,
        Visit(0),
        Write(0),
    ];
    run(2, &ops).unwrap();
}

/// Two devices that meet sync directly, at once, and leave the mailbox alone while connected;
/// once parted, what one writes reaches the other through the mailbox.
#[test]
fn devices_that_meet_sync_directly_and_use_the_mailbox_once_apart() {
    use Op::*;
    let (mut world, mut devices) = setup(2);
    let texts = |d: &Device| d.engine.replica().items().len();
    for (i, op) in [Write(0), Meet(0, 1)].iter().enumerate() {
        step(&mut world, &mut devices, i, op).unwrap();
    }
    assert_eq!(texts(&devices[1]), 1, "synced directly");
    assert!(
        devices[0]
            .engine
            .local()
            .delivered
            .contains_key(&devices[1].id),
        "marked on B"
    );
    step(&mut world, &mut devices, 2, &Visit(0)).unwrap();
    assert!(
        world.server.entries.is_empty(),
        "a connected device uploads nothing"
    );
    for (i, op) in [Part(0, 1), Write(0), Visit(0), Visit(1)]
        .iter()
        .enumerate()
    {
        step(&mut world, &mut devices, 3 + i, op).unwrap();
    }
    assert_eq!(texts(&devices[1]), 2, "through the mailbox");
    // Met again after a restart (its socket is new): direct sync resumes.
    for (i, op) in [Restart(1), Write(1), Meet(0, 1)].iter().enumerate() {
        step(&mut world, &mut devices, 7 + i, op).unwrap();
    }
    assert_eq!(texts(&devices[0]), 3);
}

/// A mailbox that refuses the space's key (someone registered the room first) is news for
/// the person, at registration, and nothing is posted or read.
#[test]
fn a_mailbox_that_refuses_the_key_is_news_and_gets_nothing() {
    let (mut world, mut devices) = setup(2);
    world.server.token = "someone else's".into();
    step(&mut world, &mut devices, 0, &Op::Write(0)).unwrap();
    step(&mut world, &mut devices, 1, &Op::Visit(0)).unwrap();
    assert!(world.server.entries.is_empty());
    assert!(
        devices[0].news.iter().any(|n| matches!(
            n,
            News::KeyRefused {
                registering: true,
                ..
            }
        )),
        "{:?}",
        devices[0].news
    );
}

/// File chunks wait until no other device was connected for the grace period (a reload on
/// the other side is no reason to upload a big file); history goes at once.
#[test]
fn file_chunks_wait_out_the_grace_period_after_a_connection() {
    use Op::*;
    let (mut world, mut devices) = setup(2);
    for (i, op) in [Meet(0, 1), Part(0, 1), SendFile(0, 1)].iter().enumerate() {
        step(&mut world, &mut devices, i, op).unwrap();
    }
    let held = |w: &World| {
        w.server
            .entries
            .values()
            .filter(|(_, h)| h.is_some())
            .count()
    };
    step(&mut world, &mut devices, 3, &Visit(0)).unwrap();
    assert!(!world.server.entries.is_empty(), "history went at once");
    assert_eq!(held(&world), 0, "no chunk within the grace period");
    step(&mut world, &mut devices, 4, &Visit(0)).unwrap();
    assert!(held(&world) > 0, "chunks once it is over");
}
