//! The end-to-end encrypted mailbox (issue #9): per room, an append-only box of opaque sealed
//! blobs that lets devices which are never online together hand each other changes.
//!
//! The server cannot read what it stores: clients seal every blob with a content key derived
//! from the space secret, which never leaves the devices. Access is authorized by a second
//! key `K` (another HKDF label of the same secret): the room registers `V = BLAKE3(K)` once,
//! and every request shows `K`, which the server hashes and compares with `V` in constant time.
//! `K` opens the box but cannot decrypt its contents; the database holds only `V`.
//!
//! Entries leave when they are no longer needed by anyone, including a device that joins the
//! space later (from a pairing link, alone):
//! - history entries once every registered device acknowledged them *and* a compacted base
//!   (a snapshot a device uploaded and declared with `declare_base`) covers them — the base is
//!   what a late joiner reads instead;
//! - held entries (file chunks: no base can stand in for them) once every registered device
//!   other than their uploader acknowledged them, and at least one did;
//! - anything older than the TTL (a periodic sweep, and on every request), or the room wiped.
//!
//! A cursor not moved for a TTL stops holding entries back (a lost phone must not pin the
//! mailbox). This module is the store (redb, one file, durable commits); `mailbox/http.rs` is
//! the API.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::time::Duration;

pub mod http;

/// Room → `verifier (32) | next_seq (8) | bytes (8) | entries (8) | covers (8) | base_from (8)
/// | base_to (8) | accessed (8, unix ms)`, little endian (records of the first 56 bytes read
/// as "no base", of 80 bytes as "accessed: unknown").
const ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("rooms/v1");
/// (room, seq) → (stored at, unix ms; sealed blob exactly as sent).
const ENTRIES: TableDefinition<(&str, u64), (u64, &[u8])> = TableDefinition::new("entries/v1");
/// (room, device) → (highest sequence number the device has acknowledged, when, unix ms).
const CURSORS: TableDefinition<(&str, &str), (u64, u64)> = TableDefinition::new("cursors/v2");
/// (room, seq) → uploading device, for held entries only.
const HOLDS: TableDefinition<(&str, u64), &str> = TableDefinition::new("holds/v1");
/// (room, BLAKE3 of the blob) → seq of the stored entry with exactly those bytes, so a client
/// that POSTs the same sealed entry twice (a retry after a lost answer, a page and its service
/// worker racing on one outbox) gets the first seq back instead of a second copy. Kept in step
/// with ENTRIES wherever entries leave. Added after the first release: `open` creates it, and
/// entries stored before then are simply not in it (a repeat of one of those appends again).
const DIGESTS: TableDefinition<(&str, [u8; 32]), u64> = TableDefinition::new("digests/v1");
/// Server-wide counters: `"bytes"` → blob bytes stored in all rooms (for `max_total_bytes`).
/// Computed from ROOMS when a data dir from before it is opened.
const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("totals/v1");
const TOTAL_BYTES: &str = "bytes";

/// Limits of the mailbox. Defaults suit a personal or family deployment.
#[derive(Debug, Clone, Copy)]
pub struct MailboxLimits {
    /// Entries older than this are deleted.
    pub ttl: Duration,
    /// Stored blob bytes allowed per room.
    pub quota_bytes: u64,
    /// Entries allowed per room.
    pub quota_entries: u64,
    /// Rooms allowed on the server (registration is unauthenticated: bound it).
    pub max_rooms: u64,
    /// Largest blob, after the client's padding.
    pub max_entry_bytes: usize,
    /// Blob bytes allowed in all rooms together (the disk the mailbox may take).
    pub max_total_bytes: u64,
    /// A room with no entries that nobody used for this long is forgotten (registration is
    /// unauthenticated: an abandoned or squatted room must not hold a slot for ever).
    pub room_ttl: Duration,
}

impl Default for MailboxLimits {
    fn default() -> Self {
        MailboxLimits {
            ttl: Duration::from_secs(30 * 24 * 3600),
            quota_bytes: 64 * 1024 * 1024,
            quota_entries: 10_000,
            max_rooms: 100_000,
            max_entry_bytes: MAX_ENTRY_BYTES,
            max_total_bytes: 4 << 30,
            room_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Blob size cap (64 KiB, the size of one wire packet).
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;
/// Blobs are padded by clients to a multiple of this, so sizes leak only coarse buckets.
pub const PAD_BYTES: usize = 256;
/// Most entries returned by one fetch.
pub const MAX_FETCH: usize = 256;
/// A fetch stops adding entries once it holds this many blob bytes.
const MAX_FETCH_BYTES: usize = 4 * 1024 * 1024;

/// What can go wrong, each message written for the developer of a client.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    /// No verifier registered for the room.
    #[error("no mailbox is registered for this room (PUT /mailbox/<room> first)")]
    NotRegistered,
    /// The key does not hash to the room's verifier.
    #[error("wrong mailbox key for this room")]
    Unauthorized,
    /// Body longer than the cap.
    #[error("sealed blob of {0} bytes exceeds the {MAX_ENTRY_BYTES}-byte limit")]
    TooLarge(usize),
    /// Body not padded.
    #[error(
        "sealed blob of {0} bytes: pad it to a non-zero multiple of {PAD_BYTES} bytes before sealing"
    )]
    BadPadding(usize),
    /// Per-room byte or entry quota, or the server's room cap.
    #[error("{0}")]
    Quota(String),
    /// Malformed input.
    #[error("{0}")]
    BadRequest(String),
    /// The database failed.
    #[error("mailbox storage failed: {0}")]
    Storage(#[from] redb::Error),
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for MailboxError {
            fn from(e: $t) -> Self {
                MailboxError::Storage(e.into())
            }
        }
    )*};
}
storage_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    verifier: [u8; 32],
    next_seq: u64,
    bytes: u64,
    entries: u64,
    /// The newest declared base.
    base: Option<Base>,
    /// Last authorized request (unix ms, at least 1; 0: unknown, a record from before it
    /// was kept).
    accessed_ms: u64,
}

/// A compacted snapshot: entries `from..=to` hold everything in entries `..=covers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    /// First entry of the snapshot.
    pub from: u64,
    /// Last entry of the snapshot.
    pub to: u64,
    /// The uploader had applied every entry up to this one.
    pub covers: u64,
}

impl Meta {
    fn encode(&self) -> [u8; 88] {
        let mut out = [0; 88];
        out[..32].copy_from_slice(&self.verifier);
        let base = self.base.unwrap_or(Base {
            from: 0,
            to: 0,
            covers: 0,
        });
        for (i, v) in [
            self.next_seq,
            self.bytes,
            self.entries,
            base.covers,
            base.from,
            base.to,
            self.accessed_ms,
        ]
        .into_iter()
        .enumerate()
        {
            out[32 + 8 * i..40 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, MailboxError> {
        let field = |i: usize| -> Result<u64, MailboxError> {
            bytes
                .get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| MailboxError::BadRequest("damaged room record".into()))
        };
        let verifier = bytes
            .get(..32)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| MailboxError::BadRequest("damaged room record".into()))?;
        let base = if bytes.len() >= 80 {
            Some(Base {
                covers: field(56)?,
                from: field(64)?,
                to: field(72)?,
            })
            .filter(|b| b.to > 0)
        } else {
            None
        };
        Ok(Meta {
            verifier,
            next_seq: field(32)?,
            bytes: field(40)?,
            entries: field(48)?,
            base,
            accessed_ms: if bytes.len() >= 88 { field(80)? } else { 0 },
        })
    }

    /// Constant-time: `blake3::Hash` equality does not short-circuit.
    fn authorizes(&self, key_hash: &blake3::Hash) -> bool {
        *key_hash == blake3::Hash::from(self.verifier)
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number in the room, from 1.
    pub seq: u64,
    /// When the server stored it (unix ms).
    pub at_ms: u64,
    /// The sealed blob, as sent.
    pub blob: Vec<u8>,
}

/// The answer to a fetch.
#[derive(Debug)]
pub struct Fetched {
    /// Entries after the cursor, oldest first.
    pub entries: Vec<Entry>,
    /// Whether more entries follow the last one returned.
    pub more: bool,
    /// The newest sequence number ever issued in the room (0 if none).
    pub last_seq: u64,
    /// The newest declared base, if any.
    pub base: Option<Base>,
    /// Registered devices and their cursors (so an uploader can tell who has what).
    pub cursors: Vec<(String, u64)>,
    /// What the room holds now: entries and blob bytes.
    pub stored: (u64, u64),
}

/// The mailbox store.
pub struct Mailbox {
    db: Database,
    limits: MailboxLimits,
}

/// `K`'s hash as the server stores and compares it.
pub fn verifier_of(key: &[u8; 32]) -> blake3::Hash {
    blake3::hash(key)
}

type Tables<'t> = (
    redb::Table<'t, &'static str, &'static [u8]>,
    redb::Table<'t, (&'static str, u64), (u64, &'static [u8])>,
    redb::Table<'t, (&'static str, &'static str), (u64, u64)>,
    redb::Table<'t, (&'static str, u64), &'static str>,
    redb::Table<'t, (&'static str, [u8; 32]), u64>,
    redb::Table<'t, &'static str, u64>,
);

/// What a sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Entries (expired or no longer needed).
    pub entries: u64,
    /// Empty rooms nobody used for `room_ttl`.
    pub rooms: u64,
}

/// Adds `delta` to the server-wide byte count.
fn add_total(
    totals: &mut redb::Table<'_, &'static str, u64>,
    delta: i128,
) -> Result<(), MailboxError> {
    let now = totals.get(TOTAL_BYTES)?.map_or(0, |v| v.value());
    let next = (i128::from(now) + delta).clamp(0, i128::from(u64::MAX)) as u64;
    totals.insert(TOTAL_BYTES, next)?;
    Ok(())
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The entry's sequence number (the earlier one, for a duplicate).
    pub seq: u64,
    /// The same bytes were already stored in the room: nothing was added.
    pub duplicate: bool,
}

/// The dedup index key of a blob.
fn digest_of(blob: &[u8]) -> [u8; 32] {
    *blake3::hash(blob).as_bytes()
}

/// Drops `blob`'s index row if it points at `seq` (the entry being deleted).
fn unindex(
    digests: &mut redb::Table<'_, (&'static str, [u8; 32]), u64>,
    room: &str,
    blob: &[u8],
    seq: u64,
) -> Result<(), MailboxError> {
    let digest = digest_of(blob);
    if digests.get((room, digest))?.map(|v| v.value()) == Some(seq) {
        digests.remove((room, digest))?;
    }
    Ok(())
}

impl Mailbox {
    /// Opens (or creates) `dir/mailbox.redb`.
    pub fn open(dir: &Path, limits: MailboxLimits) -> Result<Self, MailboxError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            MailboxError::BadRequest(format!("cannot create the data directory: {e}"))
        })?;
        let db = Database::create(dir.join("mailbox.redb")).map_err(redb::Error::from)?;
        // Create the tables so reads never meet a missing one.
        let txn = db.begin_write()?;
        txn.open_table(ROOMS)?;
        txn.open_table(ENTRIES)?;
        txn.open_table(CURSORS)?;
        txn.open_table(HOLDS)?;
        txn.open_table(DIGESTS)?;
        {
            let mut totals = txn.open_table(TOTALS)?;
            if totals.get(TOTAL_BYTES)?.is_none() {
                let rooms = txn.open_table(ROOMS)?;
                let mut bytes = 0u64;
                for row in rooms.iter()? {
                    let (_, meta) = row?;
                    bytes = bytes.saturating_add(Meta::decode(meta.value())?.bytes);
                }
                totals.insert(TOTAL_BYTES, bytes)?;
            }
        }
        txn.commit()?;
        Ok(Mailbox { db, limits })
    }

    /// The limits in force.
    pub fn limits(&self) -> MailboxLimits {
        self.limits
    }

    /// Runs `f` in one durable write transaction.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Tables<'_>) -> Result<T, MailboxError>,
    ) -> Result<T, MailboxError> {
        let txn = self.db.begin_write()?;
        let out = {
            let mut tables = (
                txn.open_table(ROOMS)?,
                txn.open_table(ENTRIES)?,
                txn.open_table(CURSORS)?,
                txn.open_table(HOLDS)?,
                txn.open_table(DIGESTS)?,
                txn.open_table(TOTALS)?,
            );
            f(&mut tables)?
        };
        txn.commit()?;
        Ok(out)
    }

    /// Registers `verifier` for `room` on first use (trust on first use). Returns whether it
    /// was created now; the same verifier again is fine, another one is refused.
    pub fn register(&self, room: &str, verifier: blake3::Hash) -> Result<bool, MailboxError> {
        self.register_at(room, verifier, now_ms())
    }

    /// [`Mailbox::register`] at `now_ms` (which counts as the room's last use).
    pub fn register_at(
        &self,
        room: &str,
        verifier: blake3::Hash,
        now_ms: u64,
    ) -> Result<bool, MailboxError> {
        self.write(|(rooms, _, _, _, _, _)| {
            let existing = rooms.get(room)?.map(|m| Meta::decode(m.value()));
            if let Some(meta) = existing {
                let mut meta = meta?;
                if !meta.authorizes(&verifier) {
                    return Err(MailboxError::Unauthorized);
                }
                meta.accessed_ms = now_ms.max(1);
                rooms.insert(room, meta.encode().as_slice())?;
                return Ok(false);
            }
            if rooms.len()? >= self.limits.max_rooms {
                return Err(MailboxError::Quota(format!(
                    "this server holds its maximum of {} mailboxes",
                    self.limits.max_rooms
                )));
            }
            let meta = Meta {
                verifier: *verifier.as_bytes(),
                next_seq: 1,
                bytes: 0,
                entries: 0,
                base: None,
                accessed_ms: now_ms.max(1),
            };
            rooms.insert(room, meta.encode().as_slice())?;
            Ok(true)
        })
    }

    fn authorized(
        rooms: &redb::Table<'_, &'static str, &'static [u8]>,
        room: &str,
        key_hash: &blake3::Hash,
    ) -> Result<Meta, MailboxError> {
        let meta = match rooms.get(room)? {
            Some(m) => Meta::decode(m.value())?,
            None => return Err(MailboxError::NotRegistered),
        };
        if meta.authorizes(key_hash) {
            Ok(meta)
        } else {
            Err(MailboxError::Unauthorized)
        }
    }

    /// [`Mailbox::authorized`], and records the use (rooms nobody uses expire when empty).
    fn opened(
        t: &mut Tables<'_>,
        room: &str,
        key_hash: &blake3::Hash,
        now_ms: u64,
    ) -> Result<Meta, MailboxError> {
        let mut meta = Self::authorized(&t.0, room, key_hash)?;
        meta.accessed_ms = now_ms.max(1);
        t.0.insert(room, meta.encode().as_slice())?;
        Ok(meta)
    }

    /// The room's registered devices and their cursors.
    fn cursors(t: &Tables<'_>, room: &str) -> Result<Vec<(String, u64, u64)>, MailboxError> {
        let mut out = Vec::new();
        for row in t.2.range((room, "")..)? {
            let (key, value) = row?;
            let (r, device) = key.value();
            if r != room {
                break;
            }
            let (seq, at) = value.value();
            out.push((device.to_owned(), seq, at));
        }
        Ok(out)
    }

    /// Deletes what nobody needs any more (see the module docs): expired entries, history
    /// entries covered by the base and acknowledged by every registered device, held entries
    /// every other registered device acknowledged. Forgets cursors idle for a TTL first.
    fn trim(
        &self,
        t: &mut Tables<'_>,
        room: &str,
        meta: &mut Meta,
        now_ms: u64,
    ) -> Result<u64, MailboxError> {
        let ttl_ms = u64::try_from(self.limits.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut cursors = Self::cursors(t, room)?;
        for (device, _, at) in &cursors {
            if at.saturating_add(ttl_ms) <= now_ms {
                t.2.remove((room, device.as_str()))?;
            }
        }
        cursors.retain(|(_, _, at)| at.saturating_add(ttl_ms) > now_ms);
        let mut doomed = std::collections::BTreeSet::new();
        // History: covered by the base and acknowledged by everyone registered.
        let acked = cursors.iter().map(|c| c.1).min().unwrap_or(0);
        let bound = acked.min(meta.base.map_or(0, |b| b.covers));
        if bound > 0 {
            for row in t.1.range((room, 1)..=(room, bound))? {
                let (key, _) = row?;
                let seq = key.value().1;
                if t.3.get((room, seq))?.is_none() {
                    doomed.insert(seq);
                }
            }
        }
        // Held: every other registered device has it, and there is one.
        for row in t.3.range((room, 0)..)? {
            let (key, uploader) = row?;
            let (r, seq) = key.value();
            if r != room {
                break;
            }
            let uploader = uploader.value();
            let mut others = cursors.iter().filter(|c| c.0 != uploader).peekable();
            if others.peek().is_some() && others.all(|c| c.1 >= seq) {
                doomed.insert(seq);
            }
        }
        // Expired: entries are stored in time order, so stop at the first fresh one.
        for row in t.1.range((room, 0)..)? {
            let (key, value) = row?;
            let (r, seq) = key.value();
            if r != room || value.value().0.saturating_add(ttl_ms) > now_ms {
                break;
            }
            doomed.insert(seq);
        }
        for seq in &doomed {
            if let Some(old) = t.1.remove((room, *seq))? {
                let blob = old.value().1;
                meta.bytes = meta.bytes.saturating_sub(blob.len() as u64);
                meta.entries = meta.entries.saturating_sub(1);
                let len = blob.len();
                unindex(&mut t.4, room, blob, *seq)?;
                add_total(&mut t.5, -(len as i128))?;
            }
            t.3.remove((room, *seq))?;
        }
        if meta.base.is_some_and(|b| doomed.contains(&b.from)) {
            // Its first part expired: a late joiner can no longer read it whole.
            meta.base = None;
        }
        if !doomed.is_empty() {
            t.0.insert(room, meta.encode().as_slice())?;
        }
        Ok(doomed.len() as u64)
    }

    /// Appends a sealed blob; returns its sequence number. `uploader` is the sending device's
    /// opaque id; `hold` keeps the entry until every other registered device acknowledged it,
    /// whatever bases say (file chunks, which no snapshot contains).
    ///
    /// The same bytes as an entry still stored in the room are not appended again: the answer
    /// is that entry's seq, marked `duplicate` (sealing uses a fresh nonce, so equal bytes are
    /// the same upload repeated, never two changes).
    pub fn append(
        &self,
        room: &str,
        key_hash: &blake3::Hash,
        blob: &[u8],
        uploader: Option<&str>,
        hold: bool,
        now_ms: u64,
    ) -> Result<Appended, MailboxError> {
        if blob.len() > self.limits.max_entry_bytes {
            return Err(MailboxError::TooLarge(blob.len()));
        }
        if blob.is_empty() || !blob.len().is_multiple_of(PAD_BYTES) {
            return Err(MailboxError::BadPadding(blob.len()));
        }
        if hold && uploader.is_none() {
            return Err(MailboxError::BadRequest(
                "a held entry needs its uploader (`device`)".into(),
            ));
        }
        self.write(|t| {
            let mut meta = Self::opened(t, room, key_hash, now_ms)?;
            self.trim(t, room, &mut meta, now_ms)?;
            // Checked before the quotas: a repeat costs nothing, even in a full room.
            let digest = digest_of(blob);
            if let Some(seq) = t.4.get((room, digest))?.map(|v| v.value())
                && t.1.get((room, seq))?.is_some()
            {
                return Ok(Appended {
                    seq,
                    duplicate: true,
                });
            }
            if meta.entries + 1 > self.limits.quota_entries {
                return Err(MailboxError::Quota(format!(
                    "the room's mailbox is full: {} of {} entries (devices must fetch and acknowledge)",
                    meta.entries, self.limits.quota_entries
                )));
            }
            if meta.bytes + blob.len() as u64 > self.limits.quota_bytes {
                return Err(MailboxError::Quota(format!(
                    "the room's mailbox is full: {} + {} bytes exceeds the quota of {} bytes (devices must fetch and acknowledge)",
                    meta.bytes,
                    blob.len(),
                    self.limits.quota_bytes
                )));
            }
            let total = t.5.get(TOTAL_BYTES)?.map_or(0, |v| v.value());
            if total.saturating_add(blob.len() as u64) > self.limits.max_total_bytes {
                return Err(MailboxError::Quota(format!(
                    "this server's mailbox storage is full ({total} of {} bytes across all spaces); entries leave as devices fetch and acknowledge them: try again later, or ask the server's operator to raise --mailbox-max-bytes",
                    self.limits.max_total_bytes
                )));
            }
            if hold {
                // Files must not crowd out history: they get three quarters of the quota.
                let mut held = 0u64;
                for row in t.3.range((room, 0)..)? {
                    let (key, _) = row?;
                    let (r, seq) = key.value();
                    if r != room {
                        break;
                    }
                    held += t.1.get((room, seq))?.map_or(0, |e| e.value().1.len() as u64);
                }
                let cap = self.limits.quota_bytes / 4 * 3;
                if held + blob.len() as u64 > cap {
                    return Err(MailboxError::Quota(format!(
                        "the room's mailbox is full for files: {held} + {} bytes exceeds {cap} bytes, three quarters of the quota (the rest is kept for history; files leave once your other devices fetch them)",
                        blob.len()
                    )));
                }
            }
            let seq = meta.next_seq;
            t.1.insert((room, seq), (now_ms, blob))?;
            t.4.insert((room, digest), seq)?;
            add_total(&mut t.5, blob.len() as i128)?;
            if let (true, Some(device)) = (hold, uploader) {
                t.3.insert((room, seq), device)?;
            }
            meta.next_seq += 1;
            meta.bytes += blob.len() as u64;
            meta.entries += 1;
            t.0.insert(room, meta.encode().as_slice())?;
            Ok(Appended {
                seq,
                duplicate: false,
            })
        })
    }

    /// Declares entries `from..=to` a compacted snapshot of everything up to `covers`, so the
    /// entries it covers can leave once every registered device has them. Only a newer base
    /// (covering more) replaces the current one.
    pub fn declare_base(
        &self,
        room: &str,
        key_hash: &blake3::Hash,
        base: Base,
        now_ms: u64,
    ) -> Result<(bool, u64), MailboxError> {
        self.write(|t| {
            let mut meta = Self::opened(t, room, key_hash, now_ms)?;
            let issued = meta.next_seq - 1;
            if !(base.covers < base.from && base.from <= base.to && base.to <= issued) {
                return Err(MailboxError::BadRequest(format!(
                    "a base needs covers < from <= to <= {issued} (the newest entry), got covers {} from {} to {}",
                    base.covers, base.from, base.to
                )));
            }
            for seq in base.from..=base.to {
                if t.1.get((room, seq))?.is_none() {
                    return Err(MailboxError::BadRequest(format!(
                        "entry {seq} of the base is not in the mailbox"
                    )));
                }
            }
            let newer = meta.base.is_none_or(|b| base.covers >= b.covers && base.to > b.to);
            if newer {
                meta.base = Some(base);
                t.0.insert(room, meta.encode().as_slice())?;
            }
            let deleted = self.trim(t, room, &mut meta, now_ms)?;
            Ok((newer, deleted))
        })
    }

    /// Entries after `after`, oldest first, at most `limit`. Expired entries are deleted first.
    pub fn fetch(
        &self,
        room: &str,
        key_hash: &blake3::Hash,
        after: u64,
        limit: usize,
        now_ms: u64,
    ) -> Result<Fetched, MailboxError> {
        self.write(|t| {
            let mut meta = Self::opened(t, room, key_hash, now_ms)?;
            self.trim(t, room, &mut meta, now_ms)?;
            let limit = limit.clamp(1, MAX_FETCH);
            let mut entries = Vec::new();
            let mut bytes = 0;
            let mut more = false;
            for row in t.1.range((room, after.saturating_add(1))..)? {
                let (key, value) = row?;
                let (r, seq) = key.value();
                if r != room {
                    break;
                }
                let (at_ms, blob) = value.value();
                if entries.len() >= limit
                    || (bytes + blob.len() > MAX_FETCH_BYTES && !entries.is_empty())
                {
                    more = true;
                    break;
                }
                bytes += blob.len();
                entries.push(Entry {
                    seq,
                    at_ms,
                    blob: blob.to_vec(),
                });
            }
            Ok(Fetched {
                entries,
                more,
                last_seq: meta.next_seq - 1,
                base: meta.base,
                cursors: Self::cursors(t, room)?
                    .into_iter()
                    .map(|(d, seq, _)| (d, seq))
                    .collect(),
                stored: (meta.entries, meta.bytes),
            })
        })
    }

    /// Records that `device` has everything up to `seq` (a device becomes registered in the
    /// room with its first acknowledgement; `seq` 0 registers without acknowledging).
    /// Returns the device's cursor and how many entries were deleted.
    pub fn ack(
        &self,
        room: &str,
        key_hash: &blake3::Hash,
        device: &str,
        seq: u64,
        now_ms: u64,
    ) -> Result<(u64, u64), MailboxError> {
        self.write(|t| {
            let mut meta = Self::opened(t, room, key_hash, now_ms)?;
            let issued = meta.next_seq - 1;
            if seq > issued {
                return Err(MailboxError::BadRequest(format!(
                    "cannot acknowledge seq {seq}: the newest entry is {issued}"
                )));
            }
            let old = t.2.get((room, device))?.map(|v| v.value().0);
            let cursor = old.unwrap_or(0).max(seq);
            t.2.insert((room, device), (cursor, now_ms))?;
            let deleted = self.trim(t, room, &mut meta, now_ms)?;
            Ok((cursor, deleted))
        })
    }

    /// Forgets a device (removed from the space), so its cursor no longer holds entries back.
    pub fn remove_device(
        &self,
        room: &str,
        key_hash: &blake3::Hash,
        device: &str,
        now_ms: u64,
    ) -> Result<(bool, u64), MailboxError> {
        self.write(|t| {
            let mut meta = Self::opened(t, room, key_hash, now_ms)?;
            let existed = t.2.remove((room, device))?.is_some();
            let deleted = self.trim(t, room, &mut meta, now_ms)?;
            Ok((existed, deleted))
        })
    }

    /// Deletes the room's mailbox: entries, cursors and verifier. Returns the entries deleted.
    pub fn wipe(&self, room: &str, key_hash: &blake3::Hash) -> Result<u64, MailboxError> {
        self.write(|t| {
            let meta = Self::authorized(&t.0, room, key_hash)?;
            let mut seqs = Vec::new();
            for row in t.1.range((room, 0)..)? {
                let (key, _) = row?;
                let (r, seq) = key.value();
                if r != room {
                    break;
                }
                seqs.push(seq);
            }
            for seq in &seqs {
                t.1.remove((room, *seq))?;
                t.3.remove((room, *seq))?;
            }
            let mut digests = Vec::new();
            for row in t.4.range((room, [0; 32])..=(room, [0xff; 32]))? {
                digests.push(row?.0.value().1);
            }
            for digest in digests {
                t.4.remove((room, digest))?;
            }
            for (device, _, _) in Self::cursors(t, room)? {
                t.2.remove((room, device.as_str()))?;
            }
            t.0.remove(room)?;
            add_total(&mut t.5, -i128::from(meta.bytes))?;
            debug_assert_eq!(meta.entries, seqs.len() as u64);
            Ok(seqs.len() as u64)
        })
    }

    /// Blob bytes stored in all rooms.
    pub fn total_bytes(&self) -> Result<u64, MailboxError> {
        let txn = self.db.begin_read()?;
        let totals = txn.open_table(TOTALS)?;
        Ok(totals.get(TOTAL_BYTES)?.map_or(0, |v| v.value()))
    }

    /// Deletes expired entries in every room, and rooms left empty and unused for
    /// `room_ttl` (their verifier and cursors: the id can be registered afresh).
    pub fn sweep(&self, now_ms: u64) -> Result<Swept, MailboxError> {
        let rooms: Vec<String> = {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(ROOMS)?;
            table
                .iter()?
                .filter_map(|row| row.ok().map(|(k, _)| k.value().to_owned()))
                .collect()
        };
        let room_ttl_ms = u64::try_from(self.limits.room_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut swept = Swept::default();
        for room in rooms {
            let (entries, gone) = self.write(|t| {
                let Some(meta) = t.0.get(room.as_str())?.map(|m| m.value().to_vec()) else {
                    return Ok((0, false));
                };
                let mut meta = Meta::decode(&meta)?;
                let entries = self.trim(t, &room, &mut meta, now_ms)?;
                if meta.entries > 0 {
                    return Ok((entries, false));
                }
                if meta.accessed_ms == 0 {
                    // A record from before uses were kept: its clock starts now.
                    meta.accessed_ms = now_ms.max(1);
                    t.0.insert(room.as_str(), meta.encode().as_slice())?;
                    return Ok((entries, false));
                }
                if meta.accessed_ms.saturating_add(room_ttl_ms) > now_ms {
                    return Ok((entries, false));
                }
                for (device, _, _) in Self::cursors(t, &room)? {
                    t.2.remove((room.as_str(), device.as_str()))?;
                }
                t.0.remove(room.as_str())?;
                Ok((entries, true))
            })?;
            swept.entries += entries;
            swept.rooms += u64::from(gone);
        }
        Ok(swept)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferry-mailbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    const ROOM: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn history_leaves_once_acknowledged_and_covered_by_a_base() {
        let dir = temp_dir("ack");
        let mb = Mailbox::open(&dir, MailboxLimits::default()).unwrap();
        let k = verifier_of(&[7; 32]);
        assert!(mb.register(ROOM, k).unwrap());
        assert!(!mb.register(ROOM, k).unwrap());
        assert!(matches!(
            mb.register(ROOM, verifier_of(&[8; 32])),
            Err(MailboxError::Unauthorized)
        ));
        mb.ack(ROOM, &k, "phone", 0, 0).unwrap();
        mb.ack(ROOM, &k, "laptop", 0, 0).unwrap();
        for i in 1..=3 {
            let seq = mb.append(ROOM, &k, &[i; 256], Some("phone"), false, 0);
            assert_eq!(seq.unwrap().seq, u64::from(i));
        }
        // Acknowledged by everyone, but no base: a device joining later needs them.
        assert_eq!(mb.ack(ROOM, &k, "phone", 3, 0).unwrap(), (3, 0));
        assert_eq!(mb.ack(ROOM, &k, "laptop", 3, 0).unwrap(), (3, 0));
        // The laptop compacts: entry 4 is a snapshot of everything up to 3.
        assert_eq!(
            mb.append(ROOM, &k, &[4; 256], Some("laptop"), false, 0)
                .unwrap()
                .seq,
            4
        );
        let base = |from, to, covers| Base { from, to, covers };
        for bad in [base(4, 4, 4), base(4, 5, 3), base(3, 2, 1)] {
            assert!(matches!(
                mb.declare_base(ROOM, &k, bad, 0),
                Err(MailboxError::BadRequest(_))
            ));
        }
        assert_eq!(
            mb.declare_base(ROOM, &k, base(4, 4, 3), 0).unwrap(),
            (true, 3)
        );
        let f = mb.fetch(ROOM, &k, 0, 10, 0).unwrap();
        assert_eq!(f.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [4]);
        assert_eq!(f.base, Some(base(4, 4, 3)));
        assert_eq!(f.stored, (1, 256));
        assert_eq!(
            f.cursors,
            [("laptop".to_string(), 3), ("phone".to_string(), 3)]
        );
        // An older base never replaces a newer one.
        assert_eq!(
            mb.declare_base(ROOM, &k, base(4, 4, 2), 0).unwrap(),
            (false, 0)
        );
        assert_eq!(mb.remove_device(ROOM, &k, "phone", 0).unwrap(), (true, 0));
        assert_eq!(mb.wipe(ROOM, &k).unwrap(), 1);
        assert!(matches!(
            mb.fetch(ROOM, &k, 0, 10, 0),
            Err(MailboxError::NotRegistered)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn held_entries_wait_for_every_other_device_and_idle_cursors_expire() {
        let dir = temp_dir("hold");
        let limits = MailboxLimits {
            ttl: Duration::from_secs(100),
            ..MailboxLimits::default()
        };
        let mb = Mailbox::open(&dir, limits).unwrap();
        let k = verifier_of(&[7; 32]);
        mb.register(ROOM, k).unwrap();
        assert!(matches!(
            mb.append(ROOM, &k, &[1; 256], None, true, 0),
            Err(MailboxError::BadRequest(_))
        ));
        // Only the uploader: nobody else has it, so it stays.
        mb.ack(ROOM, &k, "phone", 0, 0).unwrap();
        assert_eq!(
            mb.append(ROOM, &k, &[1; 256], Some("phone"), true, 0)
                .unwrap()
                .seq,
            1
        );
        assert_eq!(mb.ack(ROOM, &k, "phone", 1, 0).unwrap(), (1, 0));
        assert_eq!(mb.fetch(ROOM, &k, 0, 10, 1).unwrap().entries.len(), 1);
        // A tablet registers at 10 s and never comes back; a laptop registers at 50 s.
        mb.ack(ROOM, &k, "tablet", 0, 10_000).unwrap();
        mb.ack(ROOM, &k, "laptop", 0, 50_000).unwrap();
        assert_eq!(
            mb.append(ROOM, &k, &[2; 256], Some("phone"), true, 50_000)
                .unwrap()
                .seq,
            2
        );
        assert_eq!(mb.ack(ROOM, &k, "phone", 2, 50_000).unwrap(), (2, 0));
        // The laptop has both; the tablet holds them back...
        assert_eq!(mb.ack(ROOM, &k, "laptop", 2, 60_000).unwrap(), (2, 0));
        // ...until its cursor has been idle for a TTL (at 110 s). Entry 1 (stored at 0 s)
        // expires at 100 s in any case; entry 2 (50 s) leaves because only the laptop
        // remains besides its uploader.
        let f = mb.fetch(ROOM, &k, 0, 10, 120_000).unwrap();
        assert!(f.entries.is_empty(), "{:?}", f.entries);
        assert_eq!(
            f.cursors,
            [("laptop".to_string(), 2), ("phone".to_string(), 2)]
        );
        assert_eq!(f.stored, (0, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_same_bytes_are_stored_once_until_they_leave() {
        let dir = temp_dir("dedup");
        let mb = Mailbox::open(&dir, MailboxLimits::default()).unwrap();
        let k = verifier_of(&[7; 32]);
        mb.register(ROOM, k).unwrap();
        mb.ack(ROOM, &k, "phone", 0, 0).unwrap();
        let first = mb.append(ROOM, &k, &[1; 256], Some("phone"), false, 0);
        let again = |mb: &Mailbox| mb.append(ROOM, &k, &[1; 256], Some("phone"), false, 0);
        assert_eq!(
            first.unwrap(),
            Appended {
                seq: 1,
                duplicate: false
            }
        );
        // 1. The page and its service worker both flush the outbox: one entry, one seq.
        assert_eq!(
            again(&mb).unwrap(),
            Appended {
                seq: 1,
                duplicate: true
            }
        );
        assert_eq!(
            mb.append(ROOM, &k, &[2; 256], Some("phone"), false, 0)
                .unwrap(),
            Appended {
                seq: 2,
                duplicate: false
            }
        );
        let f = mb.fetch(ROOM, &k, 0, 10, 0).unwrap();
        assert_eq!(f.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(f.stored, (2, 512));
        // 2. Another room may hold the same bytes.
        let other = "fedcba9876543210fedcba9876543210";
        mb.register(other, k).unwrap();
        let there = mb.append(other, &k, &[1; 256], None, false, 0).unwrap();
        assert_eq!(
            there,
            Appended {
                seq: 1,
                duplicate: false
            }
        );
        // 3. Entry 1 leaves (acknowledged, covered by base 2): the same bytes append anew.
        mb.ack(ROOM, &k, "phone", 2, 0).unwrap();
        let base = Base {
            from: 2,
            to: 2,
            covers: 1,
        };
        assert_eq!(mb.declare_base(ROOM, &k, base, 0).unwrap(), (true, 1));
        assert_eq!(
            again(&mb).unwrap(),
            Appended {
                seq: 3,
                duplicate: false
            }
        );
        assert_eq!(
            again(&mb).unwrap(),
            Appended {
                seq: 3,
                duplicate: true
            }
        );
        // 4. Expiry and wipes leave no index rows behind.
        let ttl = u64::try_from(MailboxLimits::default().ttl.as_millis()).unwrap();
        assert_eq!(mb.sweep(ttl).unwrap().entries, 3);
        let later = mb.append(ROOM, &k, &[1; 256], None, false, ttl).unwrap();
        assert_eq!(
            later,
            Appended {
                seq: 4,
                duplicate: false
            }
        );
        mb.wipe(ROOM, &k).unwrap();
        mb.wipe(other, &k).unwrap();
        let txn = mb.db.begin_read().unwrap();
        assert!(txn.open_table(DIGESTS).unwrap().is_empty().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_data_dir_from_before_the_index_opens_and_appends() {
        let dir = temp_dir("old");
        std::fs::create_dir_all(&dir).unwrap();
        {
            // The previous version's tables, one room with one entry, and no DIGESTS.
            let db = Database::create(dir.join("mailbox.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            let meta = Meta {
                verifier: *verifier_of(&[7; 32]).as_bytes(),
                next_seq: 2,
                bytes: 256,
                entries: 1,
                base: None,
                accessed_ms: 0,
            };
            // Its records were 80 bytes (no `accessed`).
            txn.open_table(ROOMS)
                .unwrap()
                .insert(ROOM, &meta.encode()[..80])
                .unwrap();
            let blob: &[u8] = &[1; 256];
            txn.open_table(ENTRIES)
                .unwrap()
                .insert((ROOM, 1), (0, blob))
                .unwrap();
            txn.open_table(CURSORS).unwrap();
            txn.open_table(HOLDS).unwrap();
            txn.commit().unwrap();
        }
        let mb = Mailbox::open(&dir, MailboxLimits::default()).unwrap();
        let k = verifier_of(&[7; 32]);
        // The old entry is not indexed: its bytes append again (documented), then dedup.
        let a = mb.append(ROOM, &k, &[1; 256], None, false, 0).unwrap();
        assert_eq!(
            a,
            Appended {
                seq: 2,
                duplicate: false
            }
        );
        let b = mb.append(ROOM, &k, &[1; 256], None, false, 0).unwrap();
        assert_eq!(
            b,
            Appended {
                seq: 2,
                duplicate: true
            }
        );
        assert_eq!(mb.fetch(ROOM, &k, 0, 10, 0).unwrap().stored, (2, 512));
        // The server-wide count was computed from the old rooms on open.
        assert_eq!(mb.total_bytes().unwrap(), 512);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn empty_rooms_nobody_uses_expire_and_the_id_is_free_again() {
        let dir = temp_dir("rooms");
        let limits = MailboxLimits {
            room_ttl: Duration::from_secs(100),
            ttl: Duration::from_secs(1000),
            ..MailboxLimits::default()
        };
        let mb = Mailbox::open(&dir, limits).unwrap();
        let (squatter, owner) = (verifier_of(&[1; 32]), verifier_of(&[2; 32]));
        let busy = "fedcba9876543210fedcba9876543210";
        // 1. A squatter registers a room at 0 s and never uses it; another room holds an
        //    entry; a third is used (fetched) at 60 s.
        assert!(mb.register_at(ROOM, squatter, 0).unwrap());
        mb.register_at(busy, owner, 0).unwrap();
        mb.append(busy, &owner, &[1; 256], None, false, 0).unwrap();
        let used = "00112233445566778899aabbccddeeff";
        mb.register_at(used, owner, 0).unwrap();
        mb.ack(used, &owner, "phone", 0, 0).unwrap();
        mb.fetch(used, &owner, 0, 10, 60_000).unwrap();
        // 2. At 100 s the squatted room is gone; the others stay.
        assert_eq!(mb.sweep(99_000).unwrap(), Swept::default());
        assert_eq!(
            mb.sweep(100_001).unwrap(),
            Swept {
                entries: 0,
                rooms: 1
            }
        );
        assert!(matches!(
            mb.fetch(ROOM, &squatter, 0, 10, 100_000),
            Err(MailboxError::NotRegistered)
        ));
        assert_eq!(
            mb.fetch(busy, &owner, 0, 10, 100_000)
                .unwrap()
                .entries
                .len(),
            1
        );
        // 3. The rightful owner can register the id now.
        assert!(mb.register_at(ROOM, owner, 100_000).unwrap());
        // 4. The used room expires a room TTL after its last use (its cursor goes with it).
        assert_eq!(mb.sweep(160_000).unwrap().rooms, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_server_wide_byte_cap_refuses_with_a_clear_error() {
        let dir = temp_dir("total");
        let limits = MailboxLimits {
            max_total_bytes: 1024,
            ..MailboxLimits::default()
        };
        let mb = Mailbox::open(&dir, limits).unwrap();
        let k = verifier_of(&[7; 32]);
        let other = "fedcba9876543210fedcba9876543210";
        mb.register(ROOM, k).unwrap();
        mb.register(other, k).unwrap();
        mb.append(ROOM, &k, &[1; 512], None, false, 0).unwrap();
        mb.append(other, &k, &[2; 512], None, false, 0).unwrap();
        // Each room is far below its own quota, but the server is full.
        match mb.append(other, &k, &[3; 256], None, false, 0) {
            Err(MailboxError::Quota(m)) => {
                assert!(m.contains("server's mailbox storage is full"), "{m}")
            }
            other => panic!("expected a quota error, got {other:?}"),
        }
        // A repeat costs nothing, and a wipe gives the bytes back.
        assert!(
            mb.append(other, &k, &[2; 512], None, false, 0)
                .unwrap()
                .duplicate
        );
        assert_eq!(mb.wipe(ROOM, &k).unwrap(), 1);
        assert_eq!(mb.total_bytes().unwrap(), 512);
        mb.append(other, &k, &[3; 256], None, false, 0).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn meta_round_trips() {
        let m = Meta {
            verifier: [3; 32],
            next_seq: 9,
            bytes: 1 << 40,
            entries: 5,
            base: Some(Base {
                from: 7,
                to: 8,
                covers: 6,
            }),
            accessed_ms: 77,
        };
        assert_eq!(Meta::decode(&m.encode()).unwrap(), m);
        let older = Meta {
            accessed_ms: 0,
            ..m
        };
        assert_eq!(Meta::decode(&m.encode()[..80]).unwrap(), older);
        let old = Meta {
            base: None,
            ..older
        };
        assert_eq!(Meta::decode(&old.encode()[..56]).unwrap(), old);
        assert!(Meta::decode(&[0; 10]).is_err());
    }
}
