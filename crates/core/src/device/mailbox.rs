//! The mailbox client protocol, as far as it has moved into the device engine: the server's
//! answer to a fetch (`GET /mailbox/<room>?after=<seq>&limit=<n>`), parsed and bounded before
//! anything acts on it. The server is not trusted with it: an answer that is not the shape an
//! honest server sends is refused as a whole; an entry the server numbered impossibly is
//! refused by the cursor ([`crate::MailboxCursor::opened_checked`]).

use crate::mailbox::{MAX_ENTRY_BYTES, MailboxError};
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Entries one answer may carry (ferry-signal sends at most the requested `limit`, 64).
pub const MAX_FETCH_ENTRIES: usize = 256;
/// Device cursors one answer may list (ferry-signal registers at most a few dozen devices).
pub const MAX_FETCH_CURSORS: usize = 1024;
/// Bytes of an answer (a full page of the largest entries, in base64, with room to spare;
/// the browser adapter refuses larger bodies before reading them).
pub const MAX_FETCH_BYTES: usize = 8 * 1024 * 1024;

/// The request that unregisters this device's first-version tag, while it may still be
/// registered: a path under the room's mailbox URL (`devices/<tag>`), to `DELETE`.
///
/// The first version named a device by a tag keyed with the content key; it goes by another
/// now ([`crate::MailboxKeys::device_tag`]). The old registration's cursor never moves again,
/// so until it is gone the server holds every file chunk back for a device that is not there.
pub fn legacy_unregistration(
    keys: &crate::MailboxKeys,
    device: crate::DeviceId,
    state: &super::local_state::MailboxState,
) -> Option<String> {
    (!state.legacy_tag_removed).then(|| format!("devices/{}", keys.legacy_device_tag(device)))
}

/// Notes the server's answer to [`legacy_unregistration`]'s request: `200` means the tag is
/// gone (whether or not it was registered), so it is never asked again; anything else (offline,
/// refused, rate-limited) is asked again at the next visit.
pub fn note_legacy_unregistration(state: &mut super::local_state::MailboxState, status: u16) {
    if status == 200 {
        state.legacy_tag_removed = true;
    }
}

/// One sealed entry of an answer: its number, and its bytes unless they were not base64
/// (the entry is then read and skipped, never applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedEntry {
    /// The server's number for it.
    pub seq: u64,
    /// The sealed bytes, or `None` when the server sent something that is not base64.
    pub blob: Option<Vec<u8>>,
}

/// What the server says it holds for the room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Held {
    /// Entries held.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// A parsed fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchAnswer {
    /// The entries after the requested one, in increasing order.
    pub entries: Vec<FetchedEntry>,
    /// More entries wait after these.
    pub more: bool,
    /// The room's newest entry.
    pub last_seq: u64,
    /// The last entry of the newest compacted snapshot, if there is one.
    pub base_to: Option<u64>,
    /// Registered devices (opaque tags) and their cursors.
    pub cursors: BTreeMap<String, u64>,
    /// What the room holds.
    pub held: Held,
}

#[derive(Deserialize)]
struct RawEntry {
    seq: u64,
    blob: String,
}

#[derive(Deserialize)]
struct RawBase {
    to: u64,
}

#[derive(Deserialize)]
struct Raw {
    entries: Vec<RawEntry>,
    #[serde(default)]
    more: bool,
    #[serde(default)]
    last_seq: u64,
    #[serde(default)]
    base: Option<RawBase>,
    #[serde(default)]
    cursors: BTreeMap<String, u64>,
    #[serde(default)]
    stored: Held,
}

impl FetchAnswer {
    /// Parses an answer. Refused whole: bodies over [`MAX_FETCH_BYTES`], anything but the
    /// answer's JSON shape, more than [`MAX_FETCH_ENTRIES`] entries or
    /// [`MAX_FETCH_CURSORS`] cursors, entries not in strictly increasing order or past
    /// `last_seq`, and entries longer than a sealed entry can be.
    pub fn parse(body: &[u8]) -> Result<Self, MailboxError> {
        if body.len() > MAX_FETCH_BYTES {
            return Err(MailboxError::BadAnswer(format!(
                "{} bytes is more than any answer",
                body.len()
            )));
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| MailboxError::BadAnswer(format!("not a fetch answer: {e}")))?;
        if raw.entries.len() > MAX_FETCH_ENTRIES {
            return Err(MailboxError::BadAnswer(format!(
                "{} entries in one answer",
                raw.entries.len()
            )));
        }
        if raw.cursors.len() > MAX_FETCH_CURSORS {
            return Err(MailboxError::BadAnswer(format!(
                "{} device cursors",
                raw.cursors.len()
            )));
        }
        let mut last = 0u64;
        let mut entries = Vec::with_capacity(raw.entries.len());
        for e in raw.entries {
            if e.seq <= last || e.seq > raw.last_seq {
                return Err(MailboxError::BadAnswer(format!(
                    "entry {} out of order (after {last}, newest {})",
                    e.seq, raw.last_seq
                )));
            }
            last = e.seq;
            // Base64 of a sealed entry is at most 4/3 of its bytes, plus padding.
            if e.blob.len() > MAX_ENTRY_BYTES.div_ceil(3) * 4 {
                return Err(MailboxError::BadAnswer(format!(
                    "entry {} has {} characters",
                    e.seq,
                    e.blob.len()
                )));
            }
            let blob = base64::engine::general_purpose::STANDARD
                .decode(&e.blob)
                .ok();
            entries.push(FetchedEntry { seq: e.seq, blob });
        }
        Ok(FetchAnswer {
            entries,
            more: raw.more,
            last_seq: raw.last_seq,
            base_to: raw.base.map(|b| b.to),
            cursors: raw.cursors,
            held: raw.stored,
        })
    }
}

/// What became of one opened message's contents on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied and stored.
    Applied,
    /// Refused, or not for this document: read, never covered by a base.
    Unapplied,
    /// Could not be stored (storage full): neither skipped nor acknowledged; read again, from
    /// its first part, next visit.
    Unstored,
}

/// What [`Inbox::open`] made of an entry.
#[derive(Debug)]
pub enum Opened {
    /// A whole message to apply; report what became of it with [`Inbox::record`].
    Message {
        /// Its author.
        from: crate::ids::DeviceId,
        /// What it carries.
        payload: crate::mailbox::MailboxPayload,
    },
    /// Nothing to apply (a part of a message still incomplete, a duplicate, this device's own,
    /// already read); recorded.
    Nothing,
    /// Not from this space's mailbox, or altered: skipped and recorded (count it).
    Refused(MailboxError),
}

/// The server no longer holds what this device read (restored from an older copy, replaced,
/// wiped): start over there, as a new device would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Forgotten(pub String);

/// This device's newest post the reading has not come back to yet: if the server no longer
/// has it there, the server lost data (restored from an earlier copy) even when its numbers
/// still reach past this device's cursor. A restore loses the newest entries, so checking
/// the newest post is enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostedEntry {
    /// The server's number for it.
    pub seq: u64,
    /// BLAKE3 of the sealed bytes.
    #[serde(with = "super::local_state::hex32")]
    pub hash: [u8; 32],
    /// Held for the other devices (a file chunk): it may leave once they all have it.
    pub held: bool,
}

/// The cursor to save (and acknowledge) after a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedCursor {
    /// [`crate::MailboxCursor::safe`].
    pub cursor: u64,
    /// BLAKE3 of the entry at `cursor`, when it was read in this run.
    pub hash: Option<[u8; 32]>,
    /// [`crate::MailboxCursor::first_unapplied`].
    pub unapplied: Option<u64>,
}

/// Reading one space's mailbox: the cursor, the reassembling reader, and what was read where
/// (to notice a server that lost its data). Sans-IO: the runtime fetches pages and applies the
/// messages it is handed; every decision about what counts as read, what may be acknowledged
/// and what is read again lives here.
///
/// A visit: [`Inbox::begin`], then per page [`Inbox::after`] (what to ask for), per entry
/// [`Inbox::open`] (and [`Inbox::record`] for a message), [`Inbox::end_page`], and finally
/// [`Inbox::finish`] with whether what was applied reached storage.
#[derive(Debug)]
pub struct Inbox {
    cursor: crate::MailboxCursor,
    reader: crate::MailboxReader,
    last_read: Option<(u64, [u8; 32])>,
    read_hashes: BTreeMap<u64, [u8; 32]>,
    saved: u64,
    overlap: Option<(u64, [u8; 32])>,
    page_last: u64,
    pending: Option<u64>,
    /// This device's name on the server, to tell the other devices' cursors from its own.
    tag: String,
    last_post: Option<PostedEntry>,
    /// `last_post` was on a page of this visit, unchanged.
    post_seen: bool,
}

impl Inbox {
    /// Resumes from what was saved: the cursor, the first entry read but not applied, the
    /// hash of the entry at the cursor, and this device's newest post not read back yet
    /// (checked to be still where the server put it); `tag` is this device's name on the
    /// server (to tell the other devices' cursors from its own).
    pub fn resume(
        reader: crate::MailboxReader,
        cursor: u64,
        unapplied: Option<u64>,
        cursor_hash: Option<[u8; 32]>,
        tag: String,
        last_post: Option<PostedEntry>,
    ) -> Self {
        let cursor = crate::MailboxCursor::resume(cursor, unapplied);
        let read = cursor.read();
        Inbox {
            cursor,
            reader,
            last_read: cursor_hash.filter(|_| read > 0).map(|h| (read, h)),
            read_hashes: BTreeMap::new(),
            saved: read,
            overlap: None,
            page_last: 0,
            pending: None,
            tag,
            last_post: last_post.filter(|p| p.seq > read),
            post_seen: false,
        }
    }

    /// This device posted `entry` and the server numbered it `seq`. Remembered (to save with
    /// the cursor) when it is the newest post and the reading has not passed it.
    pub fn posted(&mut self, seq: u64, entry: &[u8], held: bool) {
        if seq > self.cursor.read() && self.last_post.is_none_or(|p| seq > p.seq) {
            self.last_post = Some(PostedEntry {
                seq,
                hash: *blake3::hash(entry).as_bytes(),
                held,
            });
        }
    }

    /// The newest post not read back yet (save it; see [`PostedEntry`]).
    pub fn last_post(&self) -> Option<PostedEntry> {
        self.last_post
    }

    /// The position (what acknowledgements, bases and duplicates are judged by).
    pub fn cursor(&self) -> &crate::MailboxCursor {
        &self.cursor
    }

    /// The reader holds part of a message still incomplete.
    pub fn incomplete(&self) -> bool {
        self.reader.buffered().0 > 0
    }

    /// Starts a visit: the entry last read is asked for once more, to compare.
    pub fn begin(&mut self) {
        self.saved = self.cursor.safe();
        self.post_seen = false;
        self.overlap = self.last_read.filter(|(seq, _)| *seq == self.cursor.read());
    }

    /// The page comes from what the service worker fetched ahead (it did not ask for the
    /// overlap): nothing to compare.
    pub fn prefetched(&mut self) {
        self.overlap = None;
    }

    /// What to ask the server for: entries after this one.
    pub fn after(&self) -> u64 {
        match self.overlap {
            Some((seq, _)) => seq - 1,
            None => self.cursor.read(),
        }
    }

    /// Starts a page; refuses one whose newest entry is older than what was read here.
    pub fn start_page(&mut self, answer: &FetchAnswer) -> Result<(), Forgotten> {
        if let Some(p) = self.last_post
            && answer.last_seq < p.seq
        {
            return Err(Forgotten(format!(
                "the server's newest entry ({}) is older than this device's last upload ({})",
                answer.last_seq, p.seq
            )));
        }
        if answer.last_seq < self.cursor.read() {
            return Err(Forgotten(format!(
                "the server's newest entry ({}) is older than this device's cursor ({})",
                answer.last_seq,
                self.cursor.read()
            )));
        }
        self.page_last = answer.last_seq;
        Ok(())
    }

    /// Opens one entry of the page.
    pub fn open(&mut self, entry: &FetchedEntry) -> Result<Opened, Forgotten> {
        let last = self.page_last;
        let Some(blob) = &entry.blob else {
            // Unreadable: moved past (fetching it again would not help), never covered.
            let busy = self.incomplete();
            let _ = self.cursor.opened_unapplied(entry.seq, last, busy);
            return Ok(Opened::Nothing);
        };
        let hash = *blake3::hash(blob).as_bytes();
        if let Some(p) = self.last_post
            && p.seq == entry.seq
        {
            if p.hash != hash {
                return Err(Forgotten(format!(
                    "entry {} is not the one this device uploaded there",
                    p.seq
                )));
            }
            // Checked again at every visit until the saved cursor is past it: a cursor that
            // moves back before it (a chunk not stored) reads it again.
            self.post_seen = true;
        }
        // The entry at the cursor may be gone (compacted): then there is nothing to compare,
        // and reading carries on after the cursor.
        if let Some((seq, known)) = self.overlap.take()
            && entry.seq == seq
        {
            if hash != known {
                return Err(Forgotten(format!(
                    "entry {seq} is not the one this device read there"
                )));
            }
            return Ok(Opened::Nothing);
        }
        if entry.seq <= self.cursor.read() || entry.seq > last {
            // Read already (or out of order): never applied twice, never moves back.
            return Ok(Opened::Nothing);
        }
        self.last_read = Some((entry.seq, hash));
        self.read_hashes.insert(entry.seq, hash);
        match self.reader.open(blob) {
            Ok(Some((from, payload))) => {
                self.pending = Some(entry.seq);
                Ok(Opened::Message { from, payload })
            }
            Ok(None) => {
                self.record_at(entry.seq, Outcome::Applied);
                Ok(Opened::Nothing)
            }
            Err(e) => {
                self.record_at(entry.seq, Outcome::Unapplied);
                Ok(Opened::Refused(e))
            }
        }
    }

    /// What became of the message [`Inbox::open`] just handed out.
    pub fn record(&mut self, outcome: Outcome) {
        if let Some(seq) = self.pending.take() {
            self.record_at(seq, outcome);
        }
    }

    fn record_at(&mut self, seq: u64, outcome: Outcome) {
        let busy = self.incomplete();
        let last = self.page_last;
        // In range: `open` checked it.
        let _ = match outcome {
            Outcome::Applied => self.cursor.opened_checked(seq, last, busy),
            Outcome::Unapplied => self.cursor.opened_unapplied(seq, last, busy),
            Outcome::Unstored => self.cursor.opened_unstored(seq, last, busy),
        };
    }

    /// Ends a page. On the last page, everything after the last entry read is gone from the
    /// server (held chunks every other device fetched, history a base covers): nothing there
    /// is for this device, so the cursor moves to the newest, unless something here could not
    /// be stored.
    /// After reading moved back (a visit that counts for nothing, a message read again), the
    /// entry now at the cursor is the one the next visit compares: entries read past it and
    /// then given back must not leave the check looking at a later one, or a server restored
    /// from an earlier copy would go unnoticed from there.
    fn compare_at_cursor(&mut self) {
        let read = self.cursor.read();
        if self.last_read.is_none_or(|(seq, _)| seq != read) {
            self.last_read = self.read_hashes.get(&read).map(|h| (read, *h));
        }
    }

    /// Refuses the page when this device's newest post should have been on it and is not.
    pub fn end_page(&mut self, answer: &FetchAnswer) -> Result<(), Forgotten> {
        self.record(Outcome::Unapplied); // a message handed out but never reported
        self.overlap = None;
        if let Some(p) = self.last_post {
            let passed = answer.entries.last().is_some_and(|e| e.seq > p.seq)
                || (!answer.more && answer.last_seq >= p.seq);
            // Not on the page. History leaves only once this device acknowledged it (it has
            // not: its cursor is before it); a held chunk once every other device has it.
            let mut others = answer
                .cursors
                .iter()
                .filter(|(t, _)| **t != self.tag)
                .peekable();
            let let_go = p.held && others.peek().is_some() && others.all(|(_, c)| *c >= p.seq);
            if passed && !self.post_seen && !let_go {
                return Err(Forgotten(format!(
                    "entry {} this device uploaded is gone before every device read it",
                    p.seq
                )));
            }
        }
        if !answer.more && !self.cursor.has_unstored() && answer.last_seq > self.cursor.read() {
            let busy = self.incomplete();
            self.cursor.opened(answer.last_seq, busy);
            self.last_read = None;
        }
        Ok(())
    }

    /// Ends a visit. `stored`: what was applied reached storage. Returns the cursor to save
    /// when it moved. A visit whose document did not reach storage counts for nothing (read
    /// again next visit; applying twice is harmless); a message that could not be stored is
    /// read again from its first part, and reassembled.
    pub fn finish(&mut self, stored: bool) -> Option<SavedCursor> {
        if !stored {
            self.cursor = crate::MailboxCursor::new(self.saved);
            self.reader.reset();
            self.compare_at_cursor();
            return None;
        }
        if self.cursor.has_unstored() {
            self.cursor.rewind();
            self.reader.reset();
        }
        self.compare_at_cursor();
        let safe = self.cursor.safe();
        // Past the saved cursor, the check on the entry at the cursor takes over.
        self.last_post = self.last_post.filter(|p| p.seq > safe);
        if safe == self.saved {
            return None;
        }
        let saved = SavedCursor {
            cursor: safe,
            hash: self.read_hashes.get(&safe).copied(),
            unapplied: self.cursor.first_unapplied(),
        };
        self.read_hashes.retain(|seq, _| *seq >= safe);
        self.saved = safe;
        Some(saved)
    }
}

/// What one message read from the mailbox did here.
#[derive(Debug)]
pub enum Stored {
    /// History applied (and its effects to perform), or a manifest or chunk stored.
    Applied(Vec<crate::Effect>),
    /// Refused, and so never counted as applied: changes automerge rejects, a manifest that
    /// is not its file's, a chunk that does not match the manifest stored here (or none is).
    Unapplied,
    /// Another device's sealed receipt: what it stored, per author (see
    /// [`super::delivery::note_receipt`]).
    Receipt(Vec<(crate::DeviceId, u64)>),
}

/// Applies one message read from the mailbox: history into the replica, a file's manifest and
/// verified chunks into `store`. A storage error means the message is *not stored* (the
/// reader reads it again; it is never acknowledged).
pub async fn store_payload<S: crate::Store>(
    store: &S,
    replica: &mut crate::Replica,
    payload: crate::MailboxPayload,
) -> Result<Stored, crate::StoreError> {
    use crate::blobs::{chunk_key, manifest_key};
    use crate::{MailboxPayload, Manifest};
    Ok(match payload {
        MailboxPayload::Changes { bytes } => match replica.apply_mailbox_changes(&bytes) {
            Ok(effects) => Stored::Applied(effects),
            Err(_) => Stored::Unapplied,
        },
        MailboxPayload::Manifest { root, bytes } => {
            if Manifest::decode(&root, &bytes).is_err() {
                return Ok(Stored::Unapplied);
            }
            store.put(&manifest_key(&root), &bytes).await?;
            Stored::Applied(Vec::new())
        }
        MailboxPayload::Chunk { root, index, data } => {
            let verified = match store.get(&manifest_key(&root)).await? {
                Some(m) => {
                    Manifest::decode(&root, &m).is_ok_and(|m| m.verify_chunk(index, &data).is_ok())
                }
                None => false,
            };
            if !verified {
                // No manifest here to check it against: not stored, so never covered.
                return Ok(Stored::Unapplied);
            }
            store.put(&chunk_key(&root, index), &data).await?;
            Stored::Applied(Vec::new())
        }
        MailboxPayload::Receipt { stored } => Stored::Receipt(stored),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn answer(entries: &[(u64, &str)], last_seq: u64) -> Vec<u8> {
        let entries: Vec<_> = entries
            .iter()
            .map(|(seq, blob)| serde_json::json!({ "seq": seq, "blob": blob }))
            .collect();
        serde_json::json!({
            "entries": entries, "more": true, "last_seq": last_seq,
            "base": { "from": 1, "to": 2 }, "cursors": { "ab12": 3 },
            "stored": { "entries": 2, "bytes": 512 },
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn an_honest_answer_is_read_whole() {
        let a = FetchAnswer::parse(&answer(&[(3, "AAEC"), (5, "not base64!")], 9)).unwrap();
        assert_eq!(
            a.entries,
            vec![
                FetchedEntry {
                    seq: 3,
                    blob: Some(vec![0, 1, 2])
                },
                FetchedEntry { seq: 5, blob: None },
            ]
        );
        assert!(a.more);
        assert_eq!((a.last_seq, a.base_to), (9, Some(2)));
        assert_eq!(a.cursors.get("ab12"), Some(&3));
        assert_eq!(
            a.held,
            Held {
                entries: 2,
                bytes: 512
            }
        );
    }

    #[test]
    fn answers_no_honest_server_sends_are_refused() {
        for (body, why) in [
            (answer(&[(3, "AA"), (3, "AA")], 9), "repeated"),
            (answer(&[(5, "AA"), (4, "AA")], 9), "backwards"),
            (answer(&[(0, "AA")], 9), "entry 0"),
            (answer(&[(10, "AA")], 9), "past the newest"),
            (
                answer(&[(1, &"A".repeat(MAX_ENTRY_BYTES * 2))], 9),
                "oversized entry",
            ),
            (b"{\"entries\": 3}".to_vec(), "wrong shape"),
            (b"\xff\xfe".to_vec(), "not JSON"),
            (vec![b' '; MAX_FETCH_BYTES + 1], "too long"),
        ] {
            assert!(
                matches!(FetchAnswer::parse(&body), Err(MailboxError::BadAnswer(_))),
                "{why} accepted"
            );
        }
        let many: Vec<(u64, &str)> = (1..=MAX_FETCH_ENTRIES as u64 + 1)
            .map(|s| (s, "AA"))
            .collect();
        assert!(FetchAnswer::parse(&answer(&many, 1000)).is_err());
    }

    /// A test server page: the entries from `after` on, as ferry-signal would answer.
    fn page(entries: &[Vec<u8>], after: u64) -> FetchAnswer {
        FetchAnswer {
            entries: (1..)
                .zip(entries)
                .filter(|(seq, _)| *seq > after)
                .map(|(seq, blob)| FetchedEntry {
                    seq,
                    blob: Some(blob.clone()),
                })
                .collect(),
            more: false,
            last_seq: entries.len() as u64,
            base_to: None,
            cursors: BTreeMap::new(),
            held: Held::default(),
        }
    }

    /// One visit: every message handed out goes through `apply`; returns what was applied.
    fn visit(
        inbox: &mut Inbox,
        entries: &[Vec<u8>],
        mut apply: impl FnMut(&crate::mailbox::MailboxPayload) -> Outcome,
        stored: bool,
    ) -> (Vec<crate::mailbox::MailboxPayload>, Option<SavedCursor>) {
        inbox.begin();
        let answer = page(entries, inbox.after());
        inbox.start_page(&answer).unwrap();
        let mut got = vec![];
        for e in &answer.entries {
            if let Opened::Message { payload, .. } = inbox.open(e).unwrap() {
                let outcome = apply(&payload);
                if outcome == Outcome::Applied {
                    got.push(payload);
                }
                inbox.record(outcome);
            }
        }
        inbox.end_page(&answer).unwrap();
        (got, inbox.finish(stored))
    }

    fn mailbox_of_three() -> (Inbox, Vec<Vec<u8>>, Vec<crate::mailbox::MailboxPayload>) {
        use crate::mailbox::{MailboxPayload, seal_payload};
        let secret = crate::SpaceSecret::random();
        let keys = crate::MailboxKeys::derive(&secret);
        let room = secret.room_id();
        let laptop = crate::DeviceId::from_bytes([1; 16]);
        let msgs = vec![
            MailboxPayload::Changes { bytes: vec![1] },
            MailboxPayload::Chunk {
                root: crate::BlobId([7; 32]),
                index: 0,
                data: vec![9; 2 * crate::mailbox::MAX_PART_DATA + 10],
            },
            MailboxPayload::Changes { bytes: vec![2] },
        ];
        let mut entries = vec![];
        for (id, m) in (1..).zip(&msgs) {
            entries.extend(seal_payload(&keys, &room, laptop, id, m).unwrap());
        }
        let reader = crate::MailboxReader::new(keys, &room).unwrap();
        (
            Inbox::resume(reader, 0, None, None, String::new(), None),
            entries,
            msgs,
        )
    }

    #[test]
    fn a_full_disk_holds_the_cursor_before_what_it_could_not_store() {
        let (mut inbox, entries, msgs) = mailbox_of_three();
        assert_eq!(entries.len(), 5, "1 + 3 parts + 1");
        // The disk is full for file chunks; history still fits.
        let full_disk = |p: &crate::mailbox::MailboxPayload| {
            if matches!(p, crate::mailbox::MailboxPayload::Chunk { .. }) {
                Outcome::Unstored
            } else {
                Outcome::Applied
            }
        };
        // Visit 1: the chunk does not fit. The history behind it arrives all the same; the
        // cursor saved (and acknowledged) stays before the chunk's first part.
        let (got, saved) = visit(&mut inbox, &entries, full_disk, true);
        assert_eq!(got, vec![msgs[0].clone(), msgs[2].clone()]);
        assert_eq!(saved.map(|s| s.cursor), Some(1));
        assert_eq!(inbox.cursor().base_covers(), Some(1));
        // Visit 2, still full: nothing moves, nothing is lost.
        let (_, saved) = visit(&mut inbox, &entries, full_disk, true);
        assert_eq!(saved, None);
        assert_eq!(inbox.cursor().safe(), 1);
        // Visit 3, space freed: the chunk is reassembled whole and stored; then the cursor
        // passes everything.
        let (got, saved) = visit(&mut inbox, &entries, |_| Outcome::Applied, true);
        assert!(got.contains(&msgs[1]), "the chunk, whole");
        assert_eq!(saved.map(|s| s.cursor), Some(5));
        assert!(saved.and_then(|s| s.hash).is_some());
    }

    #[test]
    fn a_cursor_moved_back_compares_the_entry_it_now_stands_on() {
        let (mut inbox, entries, _) = mailbox_of_three();
        let full_disk = |p: &crate::mailbox::MailboxPayload| match p {
            crate::mailbox::MailboxPayload::Chunk { .. } => Outcome::Unstored,
            _ => Outcome::Applied,
        };
        // Read up to entry 5, then moved back to 1 (the chunk after it did not fit).
        let (_, saved) = visit(&mut inbox, &entries, full_disk, true);
        assert_eq!(saved.map(|s| s.cursor), Some(1));
        inbox.begin();
        assert_eq!(inbox.after(), 0, "entry 1, not entry 5, is compared");
        // A server whose entry 1 is another one now is noticed.
        let mut other = entries.clone();
        other[0] = entries[4].clone();
        let answer = page(&other, 0);
        inbox.start_page(&answer).unwrap();
        assert!(inbox.open(&answer.entries[0]).is_err());
    }

    #[test]
    fn a_visit_whose_document_was_not_stored_counts_for_nothing() {
        let (mut inbox, entries, msgs) = mailbox_of_three();
        let (got, saved) = visit(&mut inbox, &entries, |_| Outcome::Applied, false);
        assert_eq!(got.len(), 3);
        assert_eq!((saved, inbox.cursor().read()), (None, 0));
        // Read again, whole (the reader forgot what it had completed).
        let (got, saved) = visit(&mut inbox, &entries, |_| Outcome::Applied, true);
        assert_eq!(got, msgs);
        assert_eq!(saved.map(|s| s.cursor), Some(5));
    }

    #[test]
    fn a_server_that_lost_what_was_read_is_noticed() {
        let (mut inbox, entries, _) = mailbox_of_three();
        let (_, saved) = visit(&mut inbox, &entries, |_| Outcome::Applied, true);
        let saved = saved.unwrap();
        // Restarted from what was saved, as after a reload.
        let mut again = Inbox::resume(
            inbox.reader,
            saved.cursor,
            saved.unapplied,
            saved.hash,
            String::new(),
            None,
        );
        again.begin();
        assert_eq!(again.after(), 4, "the entry at the cursor once more");
        // A server restored from an older copy: fewer entries than were read.
        let older = page(&entries[..3], 0);
        assert!(again.start_page(&older).is_err());
        // One whose entry at the cursor is another.
        let mut other = entries.clone();
        other[4] = entries[0].clone();
        let answer = page(&other, 4);
        again.start_page(&answer).unwrap();
        assert!(again.open(&answer.entries[0]).is_err());
    }

    proptest! {
        /// Whatever bytes a server sends, parsing never panics, and what it accepts is in
        /// strictly increasing order within `last_seq`, bounded in size.
        #[test]
        fn any_answer_is_parsed_or_refused_never_trusted(
            body in prop::collection::vec(any::<u8>(), 0..512),
            seqs in prop::collection::vec(0u64..40, 0..12),
            last in 0u64..40,
            blobs in prop::collection::vec("[A-Za-z0-9+/=!]{0,12}", 12),
        ) {
            let _ = FetchAnswer::parse(&body);
            let entries: Vec<(u64, &str)> =
                seqs.iter().zip(&blobs).map(|(s, b)| (*s, b.as_str())).collect();
            if let Ok(a) = FetchAnswer::parse(&answer(&entries, last)) {
                let mut prev = 0;
                for e in &a.entries {
                    prop_assert!(e.seq > prev && e.seq <= a.last_seq);
                    prev = e.seq;
                    prop_assert!(e.blob.as_ref().is_none_or(|b| b.len() <= MAX_ENTRY_BYTES));
                }
            }
        }
    }
}
