//! Devices that are never online together, reading one mailbox through the core's `Inbox`
//! (the code the app runs), with real sealing and reassembly, full disks that come and go, and
//! restarts from the saved cursor. The server follows ferry-signal's rule for held entries
//! (file chunks leave once every other registered device acknowledged them).
//!
//! Every case must converge (each device ends with every message and every chunk the others
//! wrote), and the server must never let go of a held chunk that a registered device other
//! than its uploader has not stored: the bug a full disk exposed (issue #15), which only an
//! e2e journey had caught.

use base64::Engine;
use ferry_core::device::mailbox::{FetchAnswer, Inbox, Opened, Outcome, SavedCursor};
use ferry_core::mailbox::MAX_PART_DATA;
use ferry_core::{
    BlobId, DeviceId, MailboxKeys, MailboxPayload, MailboxReader, RoomId, SpaceSecret, seal_payload,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const PAGE: usize = 8;

#[derive(Default)]
struct Server {
    /// seq → (sealed bytes, uploader when held)
    entries: BTreeMap<u64, (Vec<u8>, Option<usize>)>,
    next: u64,
    cursors: BTreeMap<usize, u64>,
    /// seq → the chunk whose part it is (the harness's knowledge, not the server's)
    chunk_of: BTreeMap<u64, (BlobId, u32)>,
}

impl Server {
    fn post(&mut self, blob: Vec<u8>, held: Option<usize>) -> u64 {
        self.next += 1;
        self.entries.insert(self.next, (blob, held));
        self.next
    }

    /// The JSON answer to `GET ?after=&limit=`, as ferry-signal writes it.
    fn page(&self, after: u64) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let picked: Vec<_> = self.entries.range(after + 1..).take(PAGE + 1).collect();
        let more = picked.len() > PAGE;
        let entries: Vec<_> = picked
            .iter()
            .take(PAGE)
            .map(|(seq, (blob, _))| serde_json::json!({ "seq": seq, "blob": b64.encode(blob) }))
            .collect();
        serde_json::json!({ "entries": entries, "more": more, "last_seq": self.next })
            .to_string()
            .into_bytes()
    }

    /// Records an acknowledgement and trims held entries every other registered device has.
    /// Returns the chunks let go.
    fn ack(&mut self, device: usize, seq: u64) -> Vec<(u64, BlobId, u32, usize)> {
        let c = self.cursors.entry(device).or_insert(0);
        *c = (*c).max(seq);
        let mut gone = vec![];
        let doomed: Vec<u64> = self
            .entries
            .iter()
            .filter_map(|(seq, (_, held))| {
                let uploader = (*held)?;
                let mut others = self
                    .cursors
                    .iter()
                    .filter(|(d, _)| **d != uploader)
                    .peekable();
                (others.peek().is_some() && others.all(|(_, c)| *c >= *seq)).then_some(*seq)
            })
            .collect();
        for seq in doomed {
            if let Some((_, Some(uploader))) = self.entries.remove(&seq)
                && let Some((root, index)) = self.chunk_of.get(&seq)
            {
                gone.push((seq, *root, *index, uploader));
            }
        }
        gone
    }
}

struct Device {
    id: DeviceId,
    inbox: Inbox,
    saved: SavedCursor,
    /// What reached "storage": history messages and file chunks.
    changes: BTreeSet<Vec<u8>>,
    chunks: BTreeSet<(BlobId, u32)>,
    full: bool,
}

fn reader(keys: &MailboxKeys, room: &RoomId, me: DeviceId) -> MailboxReader {
    MailboxReader::new(keys.clone(), room)
        .unwrap()
        .skip_from(me)
}

impl Device {
    fn visit(&mut self, me: usize, server: &mut Server) -> Vec<(u64, BlobId, u32, usize)> {
        self.inbox.begin();
        loop {
            let page = FetchAnswer::parse(&server.page(self.inbox.after())).unwrap();
            self.inbox
                .start_page(&page)
                .expect("the server lost nothing");
            for e in &page.entries {
                if let Opened::Message { payload, .. } = self.inbox.open(e).unwrap() {
                    let outcome = match payload {
                        MailboxPayload::Changes { bytes } => {
                            self.changes.insert(bytes);
                            Outcome::Applied
                        }
                        MailboxPayload::Chunk { root, index, .. } if !self.full => {
                            self.chunks.insert((root, index));
                            Outcome::Applied
                        }
                        MailboxPayload::Chunk { .. } => Outcome::Unstored,
                        _ => Outcome::Unapplied,
                    };
                    self.inbox.record(outcome);
                }
            }
            self.inbox.end_page(&page).expect("the server lost nothing");
            if !page.more || page.entries.is_empty() {
                break;
            }
        }
        if let Some(s) = self.inbox.finish(true) {
            self.saved = s;
        }
        server.ack(me, self.inbox.cursor().safe())
    }
}

/// Every held chunk the server let go is stored on every device other than its uploader.
fn check(gone: Vec<(u64, BlobId, u32, usize)>, devices: &[Device]) -> Result<(), TestCaseError> {
    for (seq, root, index, uploader) in gone {
        for (d, dev) in devices.iter().enumerate() {
            if d != uploader {
                prop_assert!(
                    dev.chunks.contains(&(root, index)),
                    "entry {seq} (chunk {index}) let go before device {d} stored it"
                );
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    SendFile(usize, u8),
    Visit(usize),
    Disk(usize, bool),
    Restart(usize),
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..n).prop_map(Op::Write),
        1 => (0..n, 1u8..3).prop_map(|(d, c)| Op::SendFile(d, c)),
        4 => (0..n).prop_map(Op::Visit),
        1 => (0..n, any::<bool>()).prop_map(|(d, f)| Op::Disk(d, f)),
        1 => (0..n).prop_map(Op::Restart),
    ]
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
    fn devices_never_online_together_lose_nothing_through_full_disks_and_restarts(
        n in 2usize..5,
        ops in prop::collection::vec(op(4), 1..40),
    ) {
        let secret = SpaceSecret::random();
        let keys = MailboxKeys::derive(&secret);
        let room = secret.room_id();
        let mut server = Server::default();
        let mut devices: Vec<Device> = (0..n)
            .map(|i| {
                let id = DeviceId::from_bytes([i as u8 + 1; 16]);
                Device {
                    id,
                    inbox: Inbox::resume(reader(&keys, &room, id), 0, None, None, String::new(), None),
                    saved: SavedCursor { cursor: 0, hash: None, unapplied: None },
                    changes: BTreeSet::new(),
                    chunks: BTreeSet::new(),
                    full: false,
                }
            })
            .collect();
        // Every device registered (seq 0), as each does on its first visit.
        for i in 0..n {
            server.ack(i, 0);
        }
        let mut written: Vec<(usize, Vec<u8>)> = vec![];
        let mut files: Vec<(usize, BlobId, u32)> = vec![];
        let mut msg_id = 0u64;
        for op in ops {
            match op {
                Op::Write(d) if d < n => {
                    msg_id += 1;
                    let bytes = format!("d{d}-m{msg_id}").into_bytes();
                    devices[d].changes.insert(bytes.clone());
                    let payload = MailboxPayload::Changes { bytes: bytes.clone() };
                    for e in seal_payload(&keys, &room, devices[d].id, msg_id, &payload).unwrap() {
                        server.post(e, None);
                    }
                    written.push((d, bytes));
                }
                Op::SendFile(d, count) if d < n => {
                    msg_id += 1;
                    let root = BlobId([msg_id as u8; 32]);
                    for index in 0..u32::from(count) {
                        msg_id += 1;
                        devices[d].chunks.insert((root, index));
                        // Two or three parts each: a chunk is one multi-part message.
                        let data = vec![index as u8; MAX_PART_DATA + 1 + index as usize];
                        let payload = MailboxPayload::Chunk { root, index, data };
                        for e in seal_payload(&keys, &room, devices[d].id, msg_id, &payload).unwrap() {
                            let seq = server.post(e, Some(d));
                            server.chunk_of.insert(seq, (root, index));
                        }
                        files.push((d, root, index));
                    }
                }
                Op::Visit(d) if d < n => {
                    let gone = devices[d].visit(d, &mut server);
                    check(gone, &devices)?;
                }
                Op::Disk(d, full) if d < n => devices[d].full = full,
                Op::Restart(d) if d < n => {
                    let dev = &mut devices[d];
                    let s = dev.saved;
                    dev.inbox = Inbox::resume(
                        reader(&keys, &room, dev.id),
                        s.cursor,
                        s.unapplied,
                        s.hash,
                        String::new(),
                        None,
                    );
                }
                _ => {}
            }
        }
        // Space everywhere; every device visits until nothing changes.
        for dev in devices.iter_mut() {
            dev.full = false;
        }
        for _ in 0..3 {
            for d in 0..n {
                let gone = devices[d].visit(d, &mut server);
                check(gone, &devices)?;
            }
        }
        for (d, dev) in devices.iter().enumerate() {
            for (_, bytes) in &written {
                prop_assert!(dev.changes.contains(bytes), "device {d} lacks {:?}", String::from_utf8_lossy(bytes));
            }
            for (_, root, index) in &files {
                prop_assert!(dev.chunks.contains(&(*root, *index)), "device {d} lacks a chunk");
            }
        }
        // And every held chunk left the server once everyone had it.
        prop_assert!(server.entries.values().all(|(_, held)| held.is_none()));
    }
}
