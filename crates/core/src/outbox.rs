//! The durable mailbox outbox: history sealed for the mailbox *before* the change is shown,
//! so a tab that is closed (or killed) a second after writing strands nothing.
//!
//! A record is one sealed mailbox message (its entries in order) plus everything needed to
//! post it without the app: the mailbox URL, the bearer token and this device's tag. The page
//! posts records as soon as no other device is connected; on `pagehide` it sends what fits the
//! browser's keepalive budget; the service worker's Background Sync posts what is left with
//! the app closed, and the next start does where there is no Background Sync.
//!
//! Rules (each is what makes the next one safe):
//! - **Cumulative.** A new record carries every change since the heads the mailbox is known
//!   to have (or since the record before it, if that one is already partly posted). Records
//!   nobody started posting are *replaced*, so the outbox usually holds one record and the
//!   newest changes are always in the first thing sent. Records are posted oldest first:
//!   automerge keeps a change whose dependencies are missing only in memory, so a reader that
//!   got a newer delta before an older one would lose it on its next reload.
//! - **Exactly once.** Posting the same entry twice (the page and the service worker racing,
//!   a retry after a lost answer, a restart before the record was deleted) is harmless: the
//!   server deduplicates by the entry's BLAKE3 hash and answers with the first sequence
//!   number. The page alone deletes records; the service worker only writes "done" markers
//!   (`mailbox-outbox-done/<stamp>`), so neither overwrites what the other wrote.
//! - **Crash order.** The new record is stored before the one it replaces is deleted, and
//!   both before the change is shown: a crash leaves the history in the outbox at least once.

use crate::doc::SpaceDoc;
use crate::ids::DeviceId;
use crate::mailbox::{MailboxError, MailboxKeys, MailboxPayload, plan_upload, seal_payload};
use crate::pairing::RoomId;
use crate::store::{StoreError, StoreKey};
use automerge::ChangeHash;
use base64::Engine;

/// Storage prefix of outbox records (`mailbox-outbox/<stamp>`), read by the service worker too.
pub const OUTBOX_PREFIX: &str = "mailbox-outbox";
/// Storage prefix of the service worker's "posted" markers (`mailbox-outbox-done/<stamp>`).
pub const OUTBOX_DONE_PREFIX: &str = "mailbox-outbox-done";
/// Chromium's budget for all keepalive requests in flight at once (bytes of body).
pub const KEEPALIVE_BUDGET: usize = 64 * 1024;
/// The format version of a stored record; the service worker refuses other versions.
const RECORD_VERSION: u64 = 1;
/// Refuse stored records above this size (a message is at most
/// [`crate::mailbox::MAX_MESSAGE_BYTES`] = 32 MiB; base64 in JSON adds a third).
const MAX_RECORD_BYTES: usize = 96 * 1024 * 1024;

/// Where a record goes: the mailbox of one space on one server, as this device.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    /// `http(s)://host:port/mailbox/<room>`.
    pub url: String,
    /// The bearer token (a secret: stored beside the space secret, sent only to that server;
    /// wiped when dropped, never printed).
    pub token: zeroize::Zeroizing<String>,
    /// This device's opaque tag on the server.
    pub tag: String,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("url", &self.url)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// One sealed message waiting to be posted.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Orders records (oldest first) and names their storage keys.
    pub stamp: u64,
    /// Where to post it.
    pub to: Destination,
    /// Sealed entries, each one `POST` body, in order.
    pub entries: Vec<Vec<u8>>,
    /// The history heads the mailbox has once every entry is posted.
    pub heads: Vec<[u8; 32]>,
    /// The newest item time it carries (delivery: a cursor past it means "has these items").
    pub carried_ms: u64,
}

impl std::fmt::Debug for OutboxRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("OutboxRecord")
            .field("stamp", &self.stamp)
            .field("entries", &self.entries.len())
            .field("heads", &self.heads.len())
            .field("carried_ms", &self.carried_ms)
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl OutboxRecord {
    /// Its storage key.
    pub fn key(&self) -> StoreKey {
        record_key(OUTBOX_PREFIX, self.stamp)
    }

    /// Its "posted" marker's storage key.
    pub fn done_key(&self) -> StoreKey {
        record_key(OUTBOX_DONE_PREFIX, self.stamp)
    }

    /// JSON, so the service worker reads it without the app's code.
    pub fn encode(&self) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD;
        serde_json::json!({
            "v": RECORD_VERSION,
            "url": self.to.url,
            "token": self.to.token.as_str(),
            "tag": self.to.tag,
            "entries": self.entries.iter().map(|e| b64.encode(e)).collect::<Vec<_>>(),
            "heads": self.heads.iter().map(|h| hex(h)).collect::<Vec<_>>(),
            "carried": self.carried_ms,
        })
        .to_string()
        .into_bytes()
    }

    /// Reads a stored record (storage is untrusted too: a damaged record is an error, never
    /// a panic).
    pub fn decode(stamp: u64, bytes: &[u8]) -> Result<Self, MailboxError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(MailboxError::Malformed("outbox record too large"));
        }
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|_| MailboxError::Malformed("outbox record is not JSON"))?;
        if v["v"].as_u64() != Some(RECORD_VERSION) {
            return Err(MailboxError::Malformed("unknown outbox record version"));
        }
        let text = |name: &str| {
            v[name]
                .as_str()
                .map(str::to_owned)
                .ok_or(MailboxError::Malformed("outbox record field missing"))
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let entries = v["entries"]
            .as_array()
            .ok_or(MailboxError::Malformed("outbox record without entries"))?
            .iter()
            .map(|e| e.as_str().and_then(|s| b64.decode(s).ok()))
            .collect::<Option<Vec<_>>>()
            .filter(|e| !e.is_empty())
            .ok_or(MailboxError::Malformed("outbox record entries are damaged"))?;
        let heads = v["heads"]
            .as_array()
            .ok_or(MailboxError::Malformed("outbox record without heads"))?
            .iter()
            .map(|h| h.as_str().and_then(unhex32))
            .collect::<Option<Vec<_>>>()
            .ok_or(MailboxError::Malformed("outbox record heads are damaged"))?;
        Ok(OutboxRecord {
            stamp,
            to: Destination {
                url: text("url")?,
                token: zeroize::Zeroizing::new(text("token")?),
                tag: text("tag")?,
            },
            entries,
            heads,
            carried_ms: v["carried"].as_u64().unwrap_or(0),
        })
    }

    /// The stamp a stored key names, if it is an outbox (or done-marker) key.
    pub fn stamp_of(key: &StoreKey) -> Option<u64> {
        let s = key.as_str();
        let rest = s
            .strip_prefix(OUTBOX_DONE_PREFIX)
            .or_else(|| s.strip_prefix(OUTBOX_PREFIX))?;
        rest.strip_prefix('/')?.parse().ok()
    }
}

fn record_key(prefix: &str, stamp: u64) -> StoreKey {
    // Zero-padded, so the store's string order is the records' order.
    StoreKey::from_stored(format!("{prefix}/{stamp:020}"))
}

/// The server's answer for a posted record, written by whoever posted it last (the page or
/// the service worker): the sequence numbers of its entries.
pub fn encode_done(seqs: &[u64]) -> Vec<u8> {
    serde_json::json!({ "seqs": seqs }).to_string().into_bytes()
}

/// Reads a "posted" marker; `None` if damaged (the record is then simply posted again).
pub fn decode_done(bytes: &[u8]) -> Option<Vec<u64>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let seqs = v["seqs"]
        .as_array()?
        .iter()
        .map(serde_json::Value::as_u64)
        .collect::<Option<Vec<u64>>>()?;
    (!seqs.is_empty() && !seqs.contains(&0)).then_some(seqs)
}

/// What [`stage`] decided: store `record` first, then delete `replaces`.
#[derive(Debug)]
pub struct Staged {
    /// The new record.
    pub record: OutboxRecord,
    /// An older record nobody started posting, whose changes the new one carries too.
    pub replaces: Option<u64>,
}

/// Why nothing was staged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StageError {
    /// The outbox already carries everything in the document.
    #[error("nothing new for the mailbox")]
    NothingNew,
    /// The changes do not fit one mailbox message (direct sync only; a base will carry them).
    #[error(transparent)]
    Seal(#[from] MailboxError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything [`stage`] needs besides the outbox and the document.
pub struct StageContext<'a> {
    /// The space's mailbox keys.
    pub keys: &'a MailboxKeys,
    /// The space's room.
    pub room: &'a RoomId,
    /// This device.
    pub device: DeviceId,
    /// Where the record goes.
    pub to: Destination,
    /// Heads the mailbox is known to have (every earlier record posted).
    pub confirmed: &'a [[u8; 32]],
    /// Now, for the stamp (made strictly increasing).
    pub now_ms: u64,
    /// The newest item time in the document.
    pub carried_ms: u64,
    /// A random message id.
    pub msg_id: u64,
}

/// The heads the outbox brings the mailbox to once everything in it is posted.
pub fn target_heads<'a>(records: &'a [OutboxRecord], confirmed: &'a [[u8; 32]]) -> &'a [[u8; 32]] {
    records.last().map_or(confirmed, |r| r.heads.as_slice())
}

fn same_heads(a: &[[u8; 32]], b: &[[u8; 32]]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// Seals what the outbox does not carry yet. `started` says which records' posting has
/// begun (the page posted one of their entries): those are kept, the newest record is
/// replaced otherwise.
pub fn stage(
    records: &[OutboxRecord],
    started: impl Fn(u64) -> bool,
    doc: &mut SpaceDoc,
    cx: StageContext<'_>,
) -> Result<Staged, StageError> {
    let now: Vec<[u8; 32]> = doc.heads().iter().map(|h| h.0).collect();
    if same_heads(target_heads(records, cx.confirmed), &now) {
        return Err(StageError::NothingNew);
    }
    let replaces = records
        .last()
        .filter(|r| !started(r.stamp))
        .map(|r| r.stamp);
    let kept = match replaces {
        Some(_) => &records[..records.len() - 1],
        None => records,
    };
    let since: Vec<ChangeHash> = target_heads(kept, cx.confirmed)
        .iter()
        .map(|h| ChangeHash(*h))
        .collect();
    let plan = plan_upload(doc, &since).ok_or(StageError::NothingNew)?;
    let entries = seal_payload(
        cx.keys,
        cx.room,
        cx.device,
        cx.msg_id,
        &MailboxPayload::Changes {
            bytes: plan.changes,
        },
    )?;
    let stamp = records
        .iter()
        .map(|r| r.stamp + 1)
        .max()
        .unwrap_or(0)
        .max(cx.now_ms);
    Ok(Staged {
        record: OutboxRecord {
            stamp,
            to: cx.to,
            entries,
            heads: plan.heads.iter().map(|h| h.0).collect(),
            carried_ms: cx.carried_ms,
        },
        replaces,
    })
}

/// The outbox as stored: records oldest first, and the sequence numbers of those the
/// service worker (or an earlier run) posted. Damaged records are returned as stamps to
/// delete (they cannot be posted; the history they carried is still in the document and is
/// staged again).
pub async fn load<S: crate::Store>(store: &S) -> Result<Loaded, StoreError> {
    let prefix = |p: &str| StoreKey::from_stored(p.to_owned());
    let mut loaded = Loaded::default();
    for (key, bytes) in store.list(&prefix(OUTBOX_PREFIX)).await? {
        let Some(stamp) = OutboxRecord::stamp_of(&key) else {
            continue;
        };
        match OutboxRecord::decode(stamp, &bytes) {
            Ok(r) => loaded.records.push(r),
            Err(_) => loaded.damaged.push(stamp),
        }
    }
    loaded.records.sort_by_key(|r| r.stamp);
    for (key, bytes) in store.list(&prefix(OUTBOX_DONE_PREFIX)).await? {
        if let (Some(stamp), Some(seqs)) = (OutboxRecord::stamp_of(&key), decode_done(&bytes)) {
            loaded.done.insert(stamp, seqs);
        }
    }
    Ok(loaded)
}

/// What [`load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Records, oldest first.
    pub records: Vec<OutboxRecord>,
    /// Entry sequence numbers of records someone already posted, by stamp.
    pub done: std::collections::BTreeMap<u64, Vec<u64>>,
    /// Stamps of records that could not be read.
    pub damaged: Vec<u64>,
}

/// Stores a staged record, then deletes the one it replaces (in that order: a crash in
/// between leaves both, which only posts some changes twice).
pub async fn save_staged<S: crate::Store>(store: &S, staged: &Staged) -> Result<(), StoreError> {
    store
        .put(&staged.record.key(), &staged.record.encode())
        .await?;
    if let Some(old) = staged.replaces {
        remove(store, old).await?;
    }
    Ok(())
}

/// Deletes a record and its "posted" marker once its result is recorded.
pub async fn remove<S: crate::Store>(store: &S, stamp: u64) -> Result<(), StoreError> {
    store.delete(&record_key(OUTBOX_PREFIX, stamp)).await?;
    store.delete(&record_key(OUTBOX_DONE_PREFIX, stamp)).await
}

/// The entries to send with `fetch(.., {keepalive: true})` as the page goes away: oldest
/// record first (see the module docs for why not newest), as many whole entries as fit the
/// keepalive budget; `(record index, entry index)`. `posted(stamp, i)` skips entries the
/// server already has.
pub fn keepalive_plan(
    records: &[OutboxRecord],
    posted: impl Fn(u64, usize) -> bool,
    budget: usize,
) -> Vec<(usize, usize)> {
    let mut left = budget;
    let mut out = Vec::new();
    for (r, record) in records.iter().enumerate() {
        for (i, entry) in record.entries.iter().enumerate() {
            if posted(record.stamp, i) {
                continue;
            }
            if entry.len() > left {
                // In order or not at all: what does not fit follows with the next start or
                // the service worker.
                return out;
            }
            left -= entry.len();
            out.push((r, i));
        }
    }
    out
}

/// How long after a change the outbox is posted (ms): a burst of messages goes together, and
/// still well within the second a phone gives a page that is being closed.
pub const FLUSH_DELAY_MS: u64 = 300;
/// After a failed post (offline, server down), when to try again (ms).
pub const RETRY_MS: u64 = 5_000;
/// A change no connected device has confirmed after this long (ms) goes to the outbox too: a
/// peer that vanished without a goodbye is not someone to rely on.
pub const UNCONFIRMED_MS: u64 = 1_500;

/// When to stage and when to post: the outbox's timing, apart from its storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// When to post next (`None`: nothing waits).
    flush_at: Option<u64>,
    /// When the document last changed without being staged (another device took it).
    changed_at: Option<u64>,
    /// Heads whose changes could not be sealed (larger than one mailbox message): not tried
    /// again until the document changes.
    blocked: Option<Vec<[u8; 32]>>,
}

/// What one turn of the outbox should do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Turn {
    /// Seal what the outbox lacks into a record.
    pub stage: bool,
    /// Post the records now (report with [`Schedule::flushed`]).
    pub flush: bool,
}

fn sorted(heads: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut h = heads.to_vec();
    h.sort();
    h
}

impl Schedule {
    /// The document changed and was stored. `true`: stage it now (no other device is
    /// connected). Otherwise the connected device takes it, and [`Schedule::turn`] stages it
    /// if that device never confirms it.
    pub fn changed(&mut self, now: u64, alone: bool) -> bool {
        if alone {
            return true;
        }
        self.changed_at.get_or_insert(now);
        false
    }

    /// One turn: `heads` are the document's, `target` what the mailbox has once the outbox is
    /// posted ([`target_heads`]), `alone` no other device is connected, `confirmed` a
    /// connected device has everything here.
    pub fn turn(
        &mut self,
        now: u64,
        heads: &[[u8; 32]],
        target: &[[u8; 32]],
        alone: bool,
        confirmed: bool,
    ) -> Turn {
        let heads = sorted(heads);
        let blocked = self.blocked.as_deref().is_some_and(|b| sorted(b) == heads);
        let mut turn = Turn::default();
        if heads != sorted(target) && !blocked {
            let unconfirmed = !confirmed
                && self
                    .changed_at
                    .is_some_and(|t| now.saturating_sub(t) > UNCONFIRMED_MS);
            turn.stage = alone || unconfirmed;
        } else {
            self.changed_at = None;
        }
        if self.flush_at.is_some_and(|t| now >= t) {
            self.flush_at = None;
            turn.flush = true;
        }
        turn
    }

    /// A record was stored: post within [`FLUSH_DELAY_MS`] (a burst goes together).
    pub fn staged(&mut self, now: u64) {
        self.changed_at = None;
        let at = self.flush_at.get_or_insert(now + FLUSH_DELAY_MS);
        *at = (*at).min(now + FLUSH_DELAY_MS);
    }

    /// Nothing was new to stage.
    pub fn nothing_new(&mut self) {
        self.changed_at = None;
    }

    /// What the document holds at `heads` cannot be sealed (larger than one mailbox
    /// message): direct sync and the next base carry it; not tried again until it changes.
    pub fn too_large(&mut self, heads: Vec<[u8; 32]>) {
        self.changed_at = None;
        self.blocked = Some(heads);
    }

    /// A post of the records ended: when it did not empty the outbox, try again later.
    pub fn flushed(&mut self, emptied: bool, now: u64) {
        if !emptied {
            self.flush_at = Some(now + RETRY_MS);
        }
    }

    /// Post at the next turn (at start, for what an earlier run left; after the server
    /// lost the mailbox).
    pub fn flush_soon(&mut self) {
        self.flush_at = Some(0);
    }

    /// Forget everything (the outbox was cleared).
    pub fn clear(&mut self) {
        *self = Schedule::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::SpaceSecret;

    fn dest() -> Destination {
        Destination {
            url: "http://127.0.0.1:3536/mailbox/room".into(),
            token: zeroize::Zeroizing::new("ab".repeat(32)),
            tag: "cd".repeat(12),
        }
    }

    fn record(stamp: u64, sizes: &[usize]) -> OutboxRecord {
        OutboxRecord {
            stamp,
            to: dest(),
            entries: sizes.iter().map(|n| vec![7u8; *n]).collect(),
            heads: vec![[stamp as u8; 32]],
            carried_ms: stamp,
        }
    }

    #[test]
    fn records_round_trip_and_damage_is_an_error() {
        let r = record(42, &[256, 1024]);
        assert_eq!(OutboxRecord::decode(42, &r.encode()).unwrap(), r);
        assert_eq!(OutboxRecord::stamp_of(&r.key()), Some(42));
        assert_eq!(OutboxRecord::stamp_of(&r.done_key()), Some(42));
        assert!(r.key().as_str() < record(100, &[1]).key().as_str());
        for bad in [&b"{}"[..], b"not json", b"{\"v\":2}", b""] {
            assert!(OutboxRecord::decode(1, bad).is_err());
        }
        let mut v: serde_json::Value = serde_json::from_slice(&r.encode()).unwrap();
        v["heads"][0] = "zz".into();
        assert!(OutboxRecord::decode(1, v.to_string().as_bytes()).is_err());
        assert!(!format!("{r:?}").contains(dest().token.as_str()));
        assert!(!format!("{:?}", dest()).contains(dest().token.as_str()));
        assert_eq!(decode_done(&encode_done(&[3, 4])), Some(vec![3, 4]));
        assert_eq!(decode_done(b"{\"seqs\":[0]}"), None);
        assert_eq!(decode_done(b"garbage"), None);
    }

    #[test]
    fn keepalive_sends_whole_entries_in_order_within_the_budget() {
        let records = [record(1, &[256, 60_000]), record(2, &[512])];
        assert_eq!(
            keepalive_plan(&records, |_, _| false, KEEPALIVE_BUDGET),
            vec![(0, 0), (0, 1), (1, 0)]
        );
        // Too little budget: stops at the first entry that does not fit (never skips ahead).
        assert_eq!(keepalive_plan(&records, |_, _| false, 10_000), vec![(0, 0)]);
        // Posted entries are skipped.
        assert_eq!(
            keepalive_plan(&records, |s, i| s == 1 && i == 0, 61_000),
            vec![(0, 1), (1, 0)]
        );
    }

    #[test]
    fn staging_replaces_unstarted_records_and_keeps_started_ones() {
        let secret = SpaceSecret::random();
        let keys = MailboxKeys::derive(&secret);
        let room = secret.room_id();
        let me = DeviceId::random();
        let mut replica = crate::Replica::new(me, "A", &secret).unwrap();
        let cx = |confirmed: &'static [[u8; 32]], now_ms| StageContext {
            keys: &keys,
            room: &room,
            device: me,
            to: dest(),
            confirmed,
            now_ms,
            carried_ms: now_ms,
            msg_id: now_ms,
        };
        replica.add_text("one", 1).unwrap();
        let first = stage(&[], |_| false, replica.doc_mut(), cx(&[], 10)).unwrap();
        assert_eq!(first.replaces, None);
        // Nothing new: nothing staged.
        let records = vec![first.record.clone()];
        assert_eq!(
            stage(&records, |_| false, replica.doc_mut(), cx(&[], 11)).unwrap_err(),
            StageError::NothingNew
        );
        replica.add_text("two", 2).unwrap();
        // Not started: replaced by a record that carries both.
        let second = stage(&records, |_| false, replica.doc_mut(), cx(&[], 5)).unwrap();
        assert_eq!(second.replaces, Some(first.record.stamp));
        assert!(second.record.stamp > first.record.stamp);
        // Started: kept, and the new record carries only what came after it.
        let third = stage(&records, |_| true, replica.doc_mut(), cx(&[], 12)).unwrap();
        assert_eq!(third.replaces, None);
        let size = |r: &OutboxRecord| r.entries.iter().map(Vec::len).sum::<usize>();
        assert!(size(&third.record) <= size(&second.record));
    }

    #[test]
    fn a_change_is_staged_at_once_when_alone_and_posted_after_the_delay() {
        let mut s = Schedule::default();
        assert!(s.changed(1_000, true));
        s.staged(1_000);
        let (h, t) = ([[1u8; 32]], [[1u8; 32]]);
        assert_eq!(s.turn(1_100, &h, &t, true, false), Turn::default());
        s.staged(1_200); // a burst: the first deadline stands
        assert!(s.turn(1_300, &h, &t, true, false).flush);
        s.flushed(false, 1_300);
        assert!(!s.turn(1_300 + RETRY_MS - 1, &h, &t, true, false).flush);
        assert!(s.turn(1_300 + RETRY_MS, &h, &t, true, false).flush);
    }

    #[test]
    fn a_change_a_connected_device_never_confirms_is_staged_later() {
        let mut s = Schedule::default();
        assert!(!s.changed(1_000, false));
        let (heads, target) = ([[2u8; 32]], [[1u8; 32]]);
        assert!(
            !s.turn(1_000 + UNCONFIRMED_MS, &heads, &target, false, false)
                .stage
        );
        // Confirmed: nothing to stage.
        assert!(
            !s.turn(1_001 + UNCONFIRMED_MS, &heads, &target, false, true)
                .stage
        );
        assert!(
            s.turn(1_001 + UNCONFIRMED_MS, &heads, &target, false, false)
                .stage
        );
        // Alone, whatever differs is staged; once it is in the outbox nothing is.
        assert!(s.turn(0, &heads, &target, true, false).stage);
        assert!(!s.turn(0, &heads, &heads, true, false).stage);
    }

    #[test]
    fn what_cannot_be_sealed_is_not_tried_again_until_the_document_changes() {
        let mut s = Schedule::default();
        let (heads, target) = ([[2u8; 32]], [[1u8; 32]]);
        s.too_large(heads.to_vec());
        assert!(!s.turn(0, &heads, &target, true, false).stage);
        assert!(s.turn(0, &[[3u8; 32]], &target, true, false).stage);
    }
}
