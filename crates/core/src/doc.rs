//! The automerge document of one space: devices and items, each in a map keyed by id.
//!
//! Items live in a *map* keyed by a random [`ItemId`], never a list, so concurrent inserts on
//! different devices merge without conflicts and display order is computed, not stored:
//! `(at, id)`. The top-level objects come from one deterministic genesis change that every
//! device creates identically; otherwise two devices starting offline would each create their
//! own `items` map and one would silently win the merge.

use crate::blobs::{BlobId, MAX_FILE_SIZE};
use crate::hlc::Hlc;
use crate::ids::{DeviceId, ItemId};
use automerge::legacy::{Key as OpKey, ObjectId as OpObject};
use automerge::sync::SyncDoc;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, Value, sync};
use std::collections::BTreeSet;
use thiserror::Error;

/// What went wrong with a document operation.
#[derive(Debug, Error)]
pub enum DocError {
    /// Automerge refused an operation or a chunk of bytes.
    #[error("the history could not be read or changed: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// A sync message from a peer could not be decoded.
    #[error("a peer sent a sync message that could not be read: {0}")]
    BadSyncMessage(String),
    /// The genesis objects are missing (never happens for documents made by Ferry).
    #[error("the history is missing its {0:?} map")]
    MissingSchema(&'static str),
    /// No visible item has this id (never existed, or deleted).
    #[error("this message no longer exists (deleted on another device?)")]
    NotFound,
    /// Text too large for one item.
    #[error("a message may hold at most {max} bytes of text, this one has {len}")]
    TooLarge {
        /// Limit in bytes.
        max: usize,
        /// Actual length.
        len: usize,
    },
    /// File metadata out of bounds (empty or overlong name, overlong type, huge size).
    #[error("this file cannot be shared: {0}")]
    BadFile(&'static str),
    /// Only a task can be checked.
    #[error("only a task can be checked")]
    NotATask,
    /// Only a note has a body to edit.
    #[error("only a note can be edited as a note")]
    NotANote,
}

/// Largest text body of one item; longer texts belong in a file.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Longest file name kept (bytes of UTF-8).
pub const MAX_FILE_NAME_BYTES: usize = 1024;
/// Longest MIME type kept.
pub const MAX_MIME_BYTES: usize = 255;

/// The fixed actor of the genesis change, shared by every device.
const GENESIS_ACTOR: &[u8] = b"ferry-genesis-v1";

/// What an item holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    /// A chat text.
    Text,
    /// A shared file (see [`Item::file`]).
    File,
    /// A task: its text, and whether it is done ([`Item::done`]). An older Ferry shows it as a
    /// plain text (or as a newer kind), never as an error.
    Task,
    /// A note: a title ([`Item::text`]) and a body ([`Item::body`]) that is an automerge text
    /// object, edited by splices so offline edits merge by character (see [`crate::note`]).
    Note,
    /// Anything written by a newer Ferry that this version does not know yet.
    Other(String),
}

/// One entry of the history, as read from the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its id, also its key in the `items` map.
    pub id: ItemId,
    /// Kind of content.
    pub kind: ItemKind,
    /// The device that wrote it.
    pub author: DeviceId,
    /// When it was written (hybrid logical clock).
    pub at: Hlc,
    /// Text body (empty for non-text kinds); a note's title.
    pub text: String,
    /// A note's body (empty for other kinds).
    pub body: String,
    /// When the text was last edited, if ever.
    pub edited_at: Option<Hlc>,
    /// For [`ItemKind::File`]: which file.
    pub file: Option<FileMeta>,
    /// Pinned above the history on every device (`pinned` in the item map; absent: not).
    pub pinned: bool,
    /// For [`ItemKind::Task`]: checked. Concurrent check and uncheck resolve to *checked*
    /// on every device (any of the concurrent values `true`); a later change that saw them
    /// decides again.
    pub done: bool,
}

/// A file item's metadata. The bytes live in chunks under the root (see [`crate::blobs`]);
/// in the item map it is stored flat as `file_root` (hex), `file_name`, `file_size`,
/// `file_mime`, so older items are untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The file's content id.
    pub root: BlobId,
    /// The original file name (for download/save).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type as the browser reported it (may be empty).
    pub mime: String,
}

impl FileMeta {
    fn check(&self) -> Result<(), DocError> {
        if self.name.is_empty() || self.name.len() > MAX_FILE_NAME_BYTES {
            return Err(DocError::BadFile("the name is empty or too long"));
        }
        if self.mime.len() > MAX_MIME_BYTES {
            return Err(DocError::BadFile("the type is too long"));
        }
        if self.size > MAX_FILE_SIZE {
            return Err(DocError::BadFile("it is too large"));
        }
        Ok(())
    }
}

/// One device of the space, as recorded in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device id.
    pub id: DeviceId,
    /// Human name, e.g. "Chrome on Linux".
    pub name: String,
    /// When it first joined (ms since epoch).
    pub added_at: u64,
}

/// What a device last said about its browser storage (in its device record as
/// `storage_kept`, `storage_used`, `storage_at`; an older Ferry ignores them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceStorage {
    /// The browser promised to keep the data (`navigator.storage.persisted()`).
    pub kept: bool,
    /// Bytes used by Ferry there.
    pub used: u64,
    /// When it said so (ms since the epoch).
    pub at: u64,
}

/// What changed in the document since the previous [`SpaceDoc::take_changes`] (or since
/// load): which items (added, edited or deleted) and whether the device list changed.
///
/// Local writes record their item directly; merged changes are read from the new automerge
/// changes themselves (their ops name the object they touch). Either way the cost follows the
/// change, not the history, so a view can patch its rows instead of rebuilding all of them.
/// (automerge's own `diff_incremental` was measured quadratic here: each diff scanned the
/// document.)
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DocChanges {
    /// Items whose entry changed in any way; read each with [`SpaceDoc::item`] (`None` means
    /// it is gone from the visible history).
    pub items: BTreeSet<ItemId>,
    /// Whether any device's record changed.
    pub devices: bool,
}

impl DocChanges {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && !self.devices
    }

    /// Everything in `other` too.
    pub fn merge(&mut self, other: DocChanges) {
        self.items.extend(other.items);
        self.devices |= other.devices;
    }
}

/// The document of one space.
pub struct SpaceDoc {
    doc: AutoCommit,
    items: ObjId,
    devices: ObjId,
    changed: DocChanges,
}

impl std::fmt::Debug for SpaceDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceDoc").finish_non_exhaustive()
    }
}

fn genesis() -> Result<AutoCommit, DocError> {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(GENESIS_ACTOR));
    doc.put(ROOT, "schema", 1_i64)?;
    doc.put_object(ROOT, "devices", ObjType::Map)?;
    doc.put_object(ROOT, "items", ObjType::Map)?;
    doc.commit_with(CommitOptions::default().with_time(0));
    Ok(doc)
}

fn map_at(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(obj, key) {
        Ok(Some((Value::Object(ObjType::Map), id))) => Some(id),
        _ => None,
    }
}

/// A title and body must fit one item (longer belongs in a file).
fn check_len(len: usize) -> Result<(), DocError> {
    if len > MAX_TEXT_BYTES {
        return Err(DocError::TooLarge {
            max: MAX_TEXT_BYTES,
            len,
        });
    }
    Ok(())
}

fn str_at(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key) {
        Ok(Some((v, _))) => v.as_str().map(str::to_owned),
        _ => None,
    }
}

fn int_at(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<i64> {
    match doc.get(obj, key) {
        Ok(Some((v, _))) => v.as_i64(),
        _ => None,
    }
}

/// The fields of one item's map as stored (each `None` when absent or of another type).
#[derive(Default)]
struct ItemFields {
    deleted: bool,
    kind: Option<String>,
    author: Option<String>,
    at: Option<i64>,
    text: Option<String>,
    edited_at: Option<i64>,
    file_root: Option<String>,
    file_name: Option<String>,
    file_size: Option<i64>,
    file_mime: Option<String>,
    pinned: bool,
    body: Option<ObjId>,
}

impl SpaceDoc {
    /// A new, empty space document that will write changes as `actor`.
    pub fn new(actor: &[u8]) -> Result<Self, DocError> {
        Self::load(actor, std::iter::empty::<&[u8]>()).map(|(d, _)| d)
    }

    /// Rebuilds a document from stored chunks (snapshots or incremental saves, any order).
    ///
    /// A chunk that fails to load is skipped and reported by index, so one corrupt record in
    /// storage costs only the changes in it, never the whole history.
    pub fn load<'a>(
        actor: &[u8],
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(Self, Vec<usize>), DocError> {
        let mut doc = genesis()?;
        let mut bad = Vec::new();
        for (i, chunk) in chunks.into_iter().enumerate() {
            if doc.load_incremental(chunk).is_err() {
                bad.push(i);
            }
        }
        doc.set_actor(ActorId::from(actor));
        let items = map_at(&doc, &ROOT, "items").ok_or(DocError::MissingSchema("items"))?;
        let devices = map_at(&doc, &ROOT, "devices").ok_or(DocError::MissingSchema("devices"))?;
        Ok((
            SpaceDoc {
                doc,
                items,
                devices,
                changed: DocChanges::default(),
            },
            bad,
        ))
    }

    /// Adds a text item.
    pub fn add_text(
        &mut self,
        id: ItemId,
        text: &str,
        author: DeviceId,
        at: Hlc,
    ) -> Result<Item, DocError> {
        self.add_text_item(id, text, author, at, ItemKind::Text)
    }

    /// Adds a task (unchecked): a text item of kind `task` with `done = false`, in one
    /// change. An older Ferry shows it as a message (or as a newer kind).
    pub fn add_task(
        &mut self,
        id: ItemId,
        text: &str,
        author: DeviceId,
        at: Hlc,
    ) -> Result<Item, DocError> {
        self.add_text_item(id, text, author, at, ItemKind::Task)
    }

    /// Adds a note: kind `note`, its title in `text` (so search, copy and an older Ferry's
    /// "newer version" row need nothing new) and its body in a text object `body`, all in
    /// one change.
    pub fn add_note(
        &mut self,
        id: ItemId,
        title: &str,
        body: &str,
        author: DeviceId,
        at: Hlc,
    ) -> Result<Item, DocError> {
        check_len(title.len() + body.len())?;
        let key = id.to_string();
        let obj = self
            .doc
            .put_object(&self.items, key.as_str(), ObjType::Map)?;
        self.doc.put(&obj, "kind", "note")?;
        self.doc.put(&obj, "author", author.to_string())?;
        self.doc.put(&obj, "at", at.pack())?;
        self.doc.put(&obj, "text", title)?;
        let text = self.doc.put_object(&obj, "body", ObjType::Text)?;
        self.doc.splice_text(&text, 0, 0, body)?;
        self.commit(at);
        self.changed.items.insert(id);
        Ok(Item {
            id,
            kind: ItemKind::Note,
            author,
            at,
            text: title.to_owned(),
            body: body.to_owned(),
            edited_at: None,
            file: None,
            pinned: false,
            done: false,
        })
    }

    /// Edits a note: its title (one value; concurrent titles converge on one of them) and its
    /// body, by the splices that take `base` (the text the editor started from) to `body`,
    /// moved onto the body as it is now ([`crate::note::rebase`]), so a peer's concurrent
    /// edit is kept. Returns whether anything changed (nothing is written otherwise).
    pub fn edit_note(
        &mut self,
        id: ItemId,
        title: &str,
        base: &str,
        body: &str,
        at: Hlc,
    ) -> Result<bool, DocError> {
        let obj = self.live_item_obj(id)?;
        if str_at(&self.doc, &obj, "kind").as_deref() != Some("note") {
            return Err(DocError::NotANote);
        }
        let text_obj = match self.doc.get(&obj, "body")? {
            Some((Value::Object(ObjType::Text), text_obj)) => text_obj,
            _ => return Err(DocError::NotANote),
        };
        let current = self.doc.text(&text_obj)?;
        let splices = crate::note::rebase(base, body, &current);
        let new_title = str_at(&self.doc, &obj, "text").as_deref() != Some(title);
        if splices.is_empty() && !new_title {
            return Ok(false);
        }
        let mut result = current;
        for s in &splices {
            result = s.apply(&result);
        }
        check_len(title.len() + result.len())?;
        if new_title {
            self.doc.put(&obj, "text", title)?;
        }
        for s in splices {
            // Both are at most the text's length (checked above), far below isize::MAX.
            let del = isize::try_from(s.del).unwrap_or(isize::MAX);
            self.doc.splice_text(&text_obj, s.pos, del, &s.insert)?;
        }
        self.doc.put(&obj, "edited_at", at.pack())?;
        self.commit(at);
        self.changed.items.insert(id);
        Ok(true)
    }

    fn add_text_item(
        &mut self,
        id: ItemId,
        text: &str,
        author: DeviceId,
        at: Hlc,
        kind: ItemKind,
    ) -> Result<Item, DocError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(DocError::TooLarge {
                max: MAX_TEXT_BYTES,
                len: text.len(),
            });
        }
        let key = id.to_string();
        let obj = self
            .doc
            .put_object(&self.items, key.as_str(), ObjType::Map)?;
        let task = kind == ItemKind::Task;
        self.doc
            .put(&obj, "kind", if task { "task" } else { "text" })?;
        self.doc.put(&obj, "author", author.to_string())?;
        self.doc.put(&obj, "at", at.pack())?;
        self.doc.put(&obj, "text", text)?;
        if task {
            self.doc.put(&obj, "done", false)?;
        }
        self.commit(at);
        self.changed.items.insert(id);
        Ok(Item {
            id,
            kind,
            author,
            at,
            text: text.to_owned(),
            body: String::new(),
            edited_at: None,
            file: None,
            pinned: false,
            done: false,
        })
    }

    /// Adds a file item.
    pub fn add_file(
        &mut self,
        id: ItemId,
        meta: &FileMeta,
        author: DeviceId,
        at: Hlc,
    ) -> Result<Item, DocError> {
        meta.check()?;
        let key = id.to_string();
        let obj = self
            .doc
            .put_object(&self.items, key.as_str(), ObjType::Map)?;
        self.doc.put(&obj, "kind", "file")?;
        self.doc.put(&obj, "author", author.to_string())?;
        self.doc.put(&obj, "at", at.pack())?;
        self.doc.put(&obj, "file_root", meta.root.to_string())?;
        self.doc.put(&obj, "file_name", meta.name.as_str())?;
        // MAX_FILE_SIZE fits in i64 (checked above).
        self.doc.put(&obj, "file_size", meta.size as i64)?;
        self.doc.put(&obj, "file_mime", meta.mime.as_str())?;
        self.commit(at);
        self.changed.items.insert(id);
        Ok(Item {
            id,
            kind: ItemKind::File,
            author,
            at,
            text: String::new(),
            body: String::new(),
            edited_at: None,
            file: Some(meta.clone()),
            pinned: false,
            done: false,
        })
    }

    /// Files referenced by items that are not deleted: chunks of any other stored file can be
    /// freed (a delete reaches every device, so every device frees them).
    pub fn live_blobs(&self) -> BTreeSet<BlobId> {
        self.items()
            .into_iter()
            .filter_map(|i| i.file.map(|f| f.root))
            .collect()
    }

    /// Files whose items were deleted (on any device): their bytes may be freed. A stored
    /// file that no item mentions at all is *not* here: it may belong to a change not loaded
    /// (a damaged chunk skipped) or not yet saved (a sibling tab between storing a file's
    /// manifest and its item), so it must be kept, not deleted.
    pub fn deleted_blobs(&self) -> BTreeSet<BlobId> {
        let live = self.live_blobs();
        self.doc
            .keys(&self.items)
            .filter_map(|key| {
                let obj = map_at(&self.doc, &self.items, &key)?;
                if !self.is_deleted(&obj) {
                    return None;
                }
                str_at(&self.doc, &obj, "file_root")?.parse::<BlobId>().ok()
            })
            // The same bytes may be shared by another, live item.
            .filter(|root| !live.contains(root))
            .collect()
    }

    fn is_deleted(&self, obj: &ObjId) -> bool {
        matches!(self.doc.get(obj, "deleted"), Ok(Some((v, _))) if v.as_bool() == Some(true))
    }

    fn live_item_obj(&self, id: ItemId) -> Result<ObjId, DocError> {
        let obj = map_at(&self.doc, &self.items, &id.to_string()).ok_or(DocError::NotFound)?;
        if self.is_deleted(&obj) {
            return Err(DocError::NotFound);
        }
        Ok(obj)
    }

    /// Replaces an item's text. Concurrent edits converge on one of them (automerge's
    /// deterministic winner); an edit concurrent with a delete loses to the delete.
    pub fn edit_text(&mut self, id: ItemId, text: &str, at: Hlc) -> Result<(), DocError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(DocError::TooLarge {
                max: MAX_TEXT_BYTES,
                len: text.len(),
            });
        }
        let obj = self.live_item_obj(id)?;
        self.doc.put(&obj, "text", text)?;
        self.doc.put(&obj, "edited_at", at.pack())?;
        self.commit(at);
        self.changed.items.insert(id);
        Ok(())
    }

    /// Checks or unchecks a task (see [`Item::done`] for concurrent ones).
    pub fn set_done(&mut self, id: ItemId, done: bool, at: Hlc) -> Result<(), DocError> {
        let obj = self.live_item_obj(id)?;
        if str_at(&self.doc, &obj, "kind").as_deref() != Some("task") {
            return Err(DocError::NotATask);
        }
        self.doc.put(&obj, "done", done)?;
        self.commit(at);
        self.changed.items.insert(id);
        Ok(())
    }

    /// Whether a task is done: any of the concurrent values of `done` is `true`.
    fn task_done(&self, obj: &ObjId) -> bool {
        self.doc
            .get_all(obj, "done")
            .map(|all| all.iter().any(|(v, _)| v.as_bool() == Some(true)))
            .unwrap_or(false)
    }

    /// Pins or unpins an item. Concurrent pin and unpin converge on one of them everywhere
    /// (automerge's deterministic winner among concurrent writes of one field); a later
    /// change wins over an earlier one it saw.
    pub fn set_pinned(&mut self, id: ItemId, pinned: bool, at: Hlc) -> Result<(), DocError> {
        let obj = self.live_item_obj(id)?;
        self.doc.put(&obj, "pinned", pinned)?;
        self.commit(at);
        self.changed.items.insert(id);
        Ok(())
    }

    /// Deletes an item: a tombstone (`deleted = true`) that syncs like any change, so the
    /// delete reaches devices that were offline. The text is cleared from the current state
    /// (automerge history still holds old values; see the README).
    pub fn delete(&mut self, id: ItemId, at: Hlc) -> Result<(), DocError> {
        let obj = self.live_item_obj(id)?;
        self.doc.put(&obj, "deleted", true)?;
        self.doc.put(&obj, "deleted_at", at.pack())?;
        self.doc.put(&obj, "text", "")?;
        if let Some((Value::Object(ObjType::Text), body)) = self.doc.get(&obj, "body")? {
            let len = self.doc.length(&body);
            self.doc
                .splice_text(&body, 0, isize::try_from(len).unwrap_or(isize::MAX), "")?;
        }
        if str_at(&self.doc, &obj, "file_name").is_some() {
            self.doc.put(&obj, "file_name", "")?;
        }
        self.commit(at);
        self.changed.items.insert(id);
        Ok(())
    }

    /// Records (or renames) a device.
    pub fn set_device(&mut self, info: &DeviceInfo) -> Result<(), DocError> {
        let key = info.id.to_string();
        let obj = match map_at(&self.doc, &self.devices, &key) {
            Some(obj) => obj,
            None => {
                let obj = self
                    .doc
                    .put_object(&self.devices, key.as_str(), ObjType::Map)?;
                self.doc.put(&obj, "added_at", info.added_at as i64)?;
                obj
            }
        };
        if str_at(&self.doc, &obj, "name").as_deref() != Some(info.name.as_str()) {
            self.doc.put(&obj, "name", info.name.as_str())?;
        }
        self.doc.commit();
        self.changed.devices = true;
        Ok(())
    }

    fn commit(&mut self, at: Hlc) {
        let secs = i64::try_from(at.wall_ms / 1000).unwrap_or(0);
        self.doc
            .commit_with(CommitOptions::default().with_time(secs));
    }

    /// All readable items in display order `(at, id)`. Malformed entries (from a buggy or
    /// newer peer) are skipped rather than failing the whole list.
    pub fn items(&self) -> Vec<Item> {
        // One pass over the items map, and one over each item's map: a key-by-key `get`
        // seeks the op set again for every field (measured 4.8 s for 100k items natively).
        let mut out: Vec<Item> = self
            .doc
            .map_range(&self.items, ..)
            .filter(|e| matches!(e.value, automerge::ValueRef::Object(ObjType::Map)))
            .filter_map(|e| self.read_item_obj(e.key.parse().ok()?, &e.id()))
            .collect();
        out.sort_by_key(|i| (i.at, i.id));
        out
    }

    /// What changed since the previous call (or since load). Every change made to the
    /// document, local or merged from a peer or the mailbox, is reported exactly once.
    pub fn take_changes(&mut self) -> DocChanges {
        std::mem::take(&mut self.changed)
    }

    /// Records what the changes merged since `before` touched.
    fn note_merged(&mut self, before: &[ChangeHash]) {
        for change in self.doc.get_changes(before) {
            for op in change.decode().operations {
                self.note_op(&op.obj, &op.key);
            }
        }
    }

    /// An op on `obj` at `key`: a key of `items` or `devices` is an item or device; an op
    /// inside an item's own map belongs to the item that map sits under.
    fn note_op(&mut self, obj: &OpObject, key: &OpKey) {
        let OpObject::Id(id) = obj else {
            // The root: only the genesis writes there.
            return;
        };
        let exid = match self.doc.import_obj(&format!("{}@{}", id.0, id.1)) {
            Ok(exid) => exid,
            Err(_) => return, // not an object of this document (never for applied ops)
        };
        let (parent, prop) = if exid == self.items || exid == self.devices {
            let OpKey::Map(k) = key else { return };
            (exid, Some(k.to_string()))
        } else {
            // Up to the entry of `items` or `devices` this object sits under (a note's body
            // is a text object inside its item's map).
            let Ok(parents) = self.doc.parents(&exid) else {
                return;
            };
            let found = parents
                .take(4)
                .find(|p| p.obj == self.items || p.obj == self.devices);
            match found {
                Some(parent) => match parent.prop {
                    automerge::Prop::Map(k) => (parent.obj, Some(k)),
                    automerge::Prop::Seq(_) => return,
                },
                None => return,
            }
        };
        if parent == self.items {
            if let Some(id) = prop.and_then(|k| k.parse().ok()) {
                self.changed.items.insert(id);
            }
        } else if parent == self.devices {
            self.changed.devices = true;
        }
    }

    /// Whether this document has ever had the item (visible or deleted).
    pub fn knows(&self, id: ItemId) -> bool {
        map_at(&self.doc, &self.items, &id.to_string()).is_some()
    }

    /// One visible item (None when unknown or deleted).
    pub fn item(&self, id: ItemId) -> Option<Item> {
        self.read_item(&id.to_string())
    }

    fn read_item(&self, key: &str) -> Option<Item> {
        let id: ItemId = key.parse().ok()?;
        let obj = map_at(&self.doc, &self.items, key)?;
        self.read_item_obj(id, &obj)
    }

    /// The item in map `obj`, read in one pass over its fields; `None` when it is deleted or
    /// malformed (a buggy or hostile peer's item is skipped, not shown half-read).
    fn read_item_obj(&self, id: ItemId, obj: &ObjId) -> Option<Item> {
        let mut f = ItemFields::default();
        for e in self.doc.map_range(obj, ..) {
            if e.key.as_ref() == "body" {
                if matches!(e.value, automerge::ValueRef::Object(ObjType::Text)) {
                    f.body = Some(e.id());
                }
                continue;
            }
            let v = e.value.into_value();
            let text = || v.as_str().map(str::to_owned);
            match e.key.as_ref() {
                "deleted" => f.deleted = v.as_bool() == Some(true),
                "kind" => f.kind = text(),
                "author" => f.author = text(),
                "at" => f.at = v.as_i64(),
                "text" => f.text = text(),
                "edited_at" => f.edited_at = v.as_i64(),
                "file_root" => f.file_root = text(),
                "file_name" => f.file_name = text(),
                "file_size" => f.file_size = v.as_i64(),
                "file_mime" => f.file_mime = text(),
                "pinned" => f.pinned = v.as_bool() == Some(true),
                _ => {}
            }
        }
        if f.deleted {
            return None;
        }
        let kind = match f.kind?.as_str() {
            "text" => ItemKind::Text,
            "file" => ItemKind::File,
            "task" => ItemKind::Task,
            "note" => ItemKind::Note,
            other => ItemKind::Other(other.to_owned()),
        };
        let file = if kind == ItemKind::File {
            let meta = FileMeta {
                root: f.file_root?.parse().ok()?,
                name: f.file_name?,
                size: u64::try_from(f.file_size?).ok()?,
                mime: f.file_mime.unwrap_or_default(),
            };
            meta.check().ok()?;
            Some(meta)
        } else {
            None
        };
        let done = kind == ItemKind::Task && self.task_done(obj);
        let body = match (&kind, f.body) {
            (ItemKind::Note, Some(body)) => self.doc.text(&body).ok()?,
            _ => String::new(),
        };
        Some(Item {
            id,
            kind,
            author: f.author?.parse().ok()?,
            at: Hlc::unpack(f.at?),
            text: f.text.unwrap_or_default(),
            body,
            edited_at: f.edited_at.map(Hlc::unpack),
            file,
            pinned: f.pinned,
            done,
        })
    }

    /// The devices recorded in the space, oldest first.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        let mut out: Vec<DeviceInfo> = self
            .doc
            .keys(&self.devices)
            .filter_map(|key| {
                let obj = map_at(&self.doc, &self.devices, &key)?;
                Some(DeviceInfo {
                    id: key.parse().ok()?,
                    name: str_at(&self.doc, &obj, "name").unwrap_or_default(),
                    added_at: u64::try_from(int_at(&self.doc, &obj, "added_at")?).ok()?,
                })
            })
            .collect();
        out.sort_by_key(|d| (d.added_at, d.id));
        out
    }

    /// What each device last said about its storage (devices that never said are absent).
    pub fn device_storage(&self) -> std::collections::BTreeMap<DeviceId, DeviceStorage> {
        self.doc
            .keys(&self.devices)
            .filter_map(|key| {
                let obj = map_at(&self.doc, &self.devices, &key)?;
                let kept = match self.doc.get(&obj, "storage_kept") {
                    Ok(Some((v, _))) => v.as_bool()?,
                    _ => return None,
                };
                Some((
                    key.parse().ok()?,
                    DeviceStorage {
                        kept,
                        used: u64::try_from(int_at(&self.doc, &obj, "storage_used")?).ok()?,
                        at: u64::try_from(int_at(&self.doc, &obj, "storage_at")?).ok()?,
                    },
                ))
            })
            .collect()
    }

    /// Records what device `id` says about its storage.
    pub fn set_device_storage(&mut self, id: DeviceId, s: DeviceStorage) -> Result<(), DocError> {
        let obj = map_at(&self.doc, &self.devices, &id.to_string()).ok_or(DocError::NotFound)?;
        self.doc.put(&obj, "storage_kept", s.kept)?;
        self.doc.put(
            &obj,
            "storage_used",
            i64::try_from(s.used).unwrap_or(i64::MAX),
        )?;
        self.doc
            .put(&obj, "storage_at", i64::try_from(s.at).unwrap_or(i64::MAX))?;
        self.doc.commit();
        self.changed.devices = true;
        Ok(())
    }

    /// Current heads: equal heads on two devices mean equal documents.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        let mut h = self.doc.get_heads();
        h.sort();
        h
    }

    /// Bytes of every change since the previous call (or since load): one storage chunk.
    /// Empty when nothing changed.
    pub fn save_incremental(&mut self) -> Vec<u8> {
        self.doc.save_incremental()
    }

    /// Bytes of every change not covered by `heads` (an incremental storage chunk).
    pub fn save_after(&mut self, heads: &[ChangeHash]) -> Vec<u8> {
        self.doc.save_after(heads)
    }

    /// Merges incremental bytes (a mailbox [`crate::mailbox::MailboxPayload::Changes`] or
    /// any `save_after` output) into this live document, returning whether it changed.
    ///
    /// Sync states live outside the document and are untouched: the next sync message to a
    /// connected peer simply offers the new changes. Changes whose dependencies are missing
    /// wait inside automerge until those arrive (then `true` is returned), so batches may
    /// come in any order; applying the same bytes twice is a no-op.
    pub fn apply_changes(&mut self, bytes: &[u8]) -> Result<bool, DocError> {
        let before = self.doc.get_heads();
        self.doc.load_incremental(bytes)?;
        let changed = self.doc.get_heads() != before;
        if changed {
            self.note_merged(&before);
        }
        Ok(changed)
    }

    /// A compact snapshot of the whole document.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// The next automerge sync message for a peer, if there is anything to say.
    pub fn generate_sync_message(&mut self, state: &mut sync::State) -> Option<Vec<u8>> {
        self.doc
            .sync()
            .generate_sync_message(state)
            .map(sync::Message::encode)
    }

    /// Applies a sync message from a peer.
    pub fn receive_sync_message(
        &mut self,
        state: &mut sync::State,
        bytes: &[u8],
    ) -> Result<(), DocError> {
        let msg =
            sync::Message::decode(bytes).map_err(|e| DocError::BadSyncMessage(e.to_string()))?;
        let before = self.doc.get_heads();
        self.doc.sync().receive_sync_message(state, msg)?;
        if self.doc.get_heads() != before {
            self.note_merged(&before);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference reader: every field by its own `get` (what `items()` did before).
    fn by_get(doc: &SpaceDoc, key: &str) -> Option<Item> {
        let id: ItemId = key.parse().ok()?;
        let obj = map_at(&doc.doc, &doc.items, key)?;
        if doc.is_deleted(&obj) {
            return None;
        }
        let d = &doc.doc;
        let kind = match str_at(d, &obj, "kind")?.as_str() {
            "text" => ItemKind::Text,
            "file" => ItemKind::File,
            "task" => ItemKind::Task,
            "note" => ItemKind::Note,
            other => ItemKind::Other(other.to_owned()),
        };
        let body = match (&kind, d.get(&obj, "body").ok().flatten()) {
            (ItemKind::Note, Some((Value::Object(ObjType::Text), b))) => d.text(&b).ok()?,
            _ => String::new(),
        };
        let kind_is_task = kind == ItemKind::Task;
        let file = if kind == ItemKind::File {
            let meta = FileMeta {
                root: str_at(d, &obj, "file_root")?.parse().ok()?,
                name: str_at(d, &obj, "file_name")?,
                size: u64::try_from(int_at(d, &obj, "file_size")?).ok()?,
                mime: str_at(d, &obj, "file_mime").unwrap_or_default(),
            };
            meta.check().ok()?;
            Some(meta)
        } else {
            None
        };
        Some(Item {
            id,
            kind,
            author: str_at(d, &obj, "author")?.parse().ok()?,
            at: Hlc::unpack(int_at(d, &obj, "at")?),
            text: str_at(d, &obj, "text").unwrap_or_default(),
            body,
            edited_at: int_at(d, &obj, "edited_at").map(Hlc::unpack),
            file,
            pinned: d
                .get(&obj, "pinned")
                .ok()
                .flatten()
                .is_some_and(|(v, _)| v.as_bool() == Some(true)),
            done: kind_is_task && doc.task_done(&obj),
        })
    }

    /// `items()` reads each item in one pass; it must agree with reading field by field,
    /// also on what it skips (deleted, malformed, not a map) and on merged conflicts.
    #[test]
    fn one_pass_listing_reads_what_field_by_field_reads() {
        let d = DeviceId::random();
        let mut a = SpaceDoc::new(d.as_bytes()).unwrap();
        let at = |ms| Hlc {
            wall_ms: ms,
            counter: 0,
        };
        let texts: Vec<Item> = (0..40)
            .map(|n| {
                a.add_text(ItemId::random(), &format!("note {n}"), d, at(n))
                    .unwrap()
            })
            .collect();
        a.edit_text(texts[3].id, "edited", at(100)).unwrap();
        a.delete(texts[5].id, at(101)).unwrap();
        let meta = FileMeta {
            root: BlobId([7; 32]),
            name: "a.bin".into(),
            size: 10,
            mime: "application/octet-stream".into(),
        };
        a.add_file(ItemId::random(), &meta, d, at(102)).unwrap();
        // Hostile shapes: a file without its size, an item without an author, a scalar where
        // an item map belongs, and a kind this version does not know.
        let bad_file = a.add_file(ItemId::random(), &meta, d, at(103)).unwrap();
        let obj = map_at(&a.doc, &a.items, &bad_file.id.to_string()).unwrap();
        a.doc.delete(&obj, "file_size").unwrap();
        let no_author = a.add_text(ItemId::random(), "x", d, at(104)).unwrap();
        let obj = map_at(&a.doc, &a.items, &no_author.id.to_string()).unwrap();
        a.doc.put(&obj, "author", 5).unwrap();
        let items = a.items.clone();
        a.doc
            .put(&items, ItemId::random().to_string(), "not a map")
            .unwrap();
        let other = a.add_text(ItemId::random(), "future", d, at(105)).unwrap();
        let obj = map_at(&a.doc, &a.items, &other.id.to_string()).unwrap();
        a.doc.put(&obj, "kind", "poll").unwrap();
        // Concurrent edits of one item on a fork, merged back: a conflict in its map.
        let mut b = SpaceDoc::load(DeviceId::random().as_bytes(), [a.doc.save().as_slice()])
            .unwrap()
            .0;
        b.edit_text(texts[7].id, "from b", at(200)).unwrap();
        a.edit_text(texts[7].id, "from a", at(200)).unwrap();
        a.doc.merge(&mut b.doc).unwrap();

        let mut slow: Vec<Item> = a
            .doc
            .keys(&a.items)
            .filter_map(|k| by_get(&a, &k))
            .collect();
        slow.sort_by_key(|i| (i.at, i.id));
        let fast = a.items();
        assert_eq!(fast, slow);
        assert_eq!(fast.len(), 40 - 1 + 1 + 1);
        assert!(
            fast.iter()
                .any(|i| i.kind == ItemKind::Other("poll".into()))
        );
    }

    #[test]
    fn only_files_of_deleted_items_may_be_freed() {
        let d = DeviceId::random();
        let mut doc = SpaceDoc::new(d.as_bytes()).unwrap();
        let at = |ms| Hlc {
            wall_ms: ms,
            counter: 0,
        };
        let file = |n: u8| FileMeta {
            root: BlobId([n; 32]),
            name: format!("f{n}"),
            size: 1,
            mime: String::new(),
        };
        let (kept, gone, shared) = (ItemId::random(), ItemId::random(), ItemId::random());
        doc.add_file(kept, &file(1), d, at(1)).unwrap();
        doc.add_file(gone, &file(2), d, at(2)).unwrap();
        doc.add_file(shared, &file(1), d, at(3)).unwrap();
        doc.delete(gone, at(4)).unwrap();
        doc.delete(shared, at(5)).unwrap();
        // File 2's item was deleted; file 1 is still live through another item; a file no
        // item mentions (3) is never listed (it may be in a change that did not load).
        assert_eq!(doc.deleted_blobs(), [BlobId([2; 32])].into());
    }

    #[test]
    fn changes_name_exactly_the_items_that_changed_local_merged_or_loaded() {
        let (da, db) = (DeviceId::random(), DeviceId::random());
        let at = |ms| Hlc {
            wall_ms: ms,
            counter: 0,
        };
        let mut a = SpaceDoc::new(da.as_bytes()).unwrap();
        let mut b = SpaceDoc::new(db.as_bytes()).unwrap();
        for n in 0..50 {
            a.add_text(ItemId::random(), &format!("old {n}"), da, at(n))
                .unwrap();
        }
        a.set_device(&DeviceInfo {
            id: da,
            name: "A".into(),
            added_at: 1,
        })
        .unwrap();
        let first = a.take_changes();
        assert_eq!(first.items.len(), 50);
        assert!(first.devices);
        assert!(a.take_changes().is_empty(), "each change is reported once");

        // Loaded from storage: nothing is "new".
        let saved = a.save();
        let (mut loaded, bad) = SpaceDoc::load(&[9; 16], [saved.as_slice()]).unwrap();
        assert!(bad.is_empty());
        assert!(loaded.take_changes().is_empty());

        // One local add, one edit, one delete: exactly those three.
        let items = a.items();
        let added = ItemId::random();
        a.add_text(added, "new", da, at(100)).unwrap();
        a.edit_text(items[3].id, "edited", at(101)).unwrap();
        a.delete(items[7].id, at(102)).unwrap();
        let local = a.take_changes();
        assert_eq!(local.items, [added, items[3].id, items[7].id].into());
        assert!(!local.devices);
        assert_eq!(a.item(items[3].id).unwrap().text, "edited");
        assert!(a.item(items[7].id).is_none(), "deleted: gone from the view");

        // Merged from another device: everything it did not have before, nothing else.
        let before = b.heads();
        b.apply_changes(&a.save_after(&before)).unwrap();
        let merged = b.take_changes();
        assert_eq!(
            merged.items.len(),
            51,
            "49 visible + the deleted one + the new one"
        );
        assert!(merged.devices);
        let mine = ItemId::random();
        b.add_text(mine, "from b", db, at(200)).unwrap();
        b.take_changes();
        let heads = a.heads();
        a.apply_changes(&b.save_after(&heads)).unwrap();
        assert_eq!(a.take_changes().items, [mine].into());
    }

    #[test]
    fn every_device_creates_the_same_genesis() {
        let mut a = SpaceDoc::new(&[1; 16]).unwrap();
        let mut b = SpaceDoc::new(&[2; 16]).unwrap();
        assert_eq!(a.heads(), b.heads());
    }

    #[test]
    fn offline_devices_merge_items_without_losing_either_side() {
        let (da, db) = (DeviceId::random(), DeviceId::random());
        let mut a = SpaceDoc::new(da.as_bytes()).unwrap();
        let mut b = SpaceDoc::new(db.as_bytes()).unwrap();
        a.add_text(
            ItemId::random(),
            "from a",
            da,
            Hlc {
                wall_ms: 2,
                counter: 0,
            },
        )
        .unwrap();
        b.add_text(
            ItemId::random(),
            "from b",
            db,
            Hlc {
                wall_ms: 1,
                counter: 0,
            },
        )
        .unwrap();
        let chunk_a = a.save_incremental();
        b.doc.load_incremental(&chunk_a).unwrap();
        let texts: Vec<_> = b.items().into_iter().map(|i| i.text).collect();
        assert_eq!(texts, ["from b", "from a"]);
    }

    #[test]
    fn reload_from_chunks_skips_a_corrupt_chunk_and_keeps_the_rest() {
        let d = DeviceId::random();
        let mut a = SpaceDoc::new(d.as_bytes()).unwrap();
        a.add_text(
            ItemId::random(),
            "one",
            d,
            Hlc {
                wall_ms: 1,
                counter: 0,
            },
        )
        .unwrap();
        let c1 = a.save_incremental();
        a.add_text(
            ItemId::random(),
            "two",
            d,
            Hlc {
                wall_ms: 2,
                counter: 0,
            },
        )
        .unwrap();
        let c2 = a.save_incremental();
        let garbage = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3];
        // automerge may skip garbage silently or report it; either way the rest must load.
        let (b, bad) =
            SpaceDoc::load(&[9; 16], [c1.as_slice(), garbage.as_slice(), c2.as_slice()]).unwrap();
        assert!(bad.iter().all(|&i| i == 1));
        assert_eq!(b.items().len(), 2);
    }

    #[test]
    fn concurrent_edit_and_delete_resolve_to_deleted_everywhere() {
        let (da, db) = (DeviceId::random(), DeviceId::random());
        let mut a = SpaceDoc::new(da.as_bytes()).unwrap();
        let id = ItemId::random();
        a.add_text(id, "draft", da, Hlc::unpack(1 << 16)).unwrap();
        let (mut b, _) = SpaceDoc::load(db.as_bytes(), [a.save().as_slice()]).unwrap();
        a.edit_text(id, "edited on a", Hlc::unpack(2 << 16))
            .unwrap();
        b.delete(id, Hlc::unpack(2 << 16)).unwrap();
        let (ca, cb) = (a.save(), b.save());
        a.doc.load_incremental(&cb).unwrap();
        b.doc.load_incremental(&ca).unwrap();
        assert!(a.items().is_empty() && b.items().is_empty());
        assert_eq!(a.heads(), b.heads());
        assert!(matches!(
            a.edit_text(id, "late", Hlc::unpack(3 << 16)),
            Err(DocError::NotFound)
        ));
    }

    #[test]
    fn pins_sync_and_concurrent_pin_and_unpin_agree_everywhere() {
        let (da, db) = (DeviceId::random(), DeviceId::random());
        let mut a = SpaceDoc::new(da.as_bytes()).unwrap();
        let id = ItemId::random();
        a.add_text(id, "shopping list", da, Hlc::unpack(1 << 16))
            .unwrap();
        assert!(!a.items()[0].pinned, "new items are not pinned");
        a.set_pinned(id, true, Hlc::unpack(2 << 16)).unwrap();
        let (mut b, _) = SpaceDoc::load(db.as_bytes(), [a.save().as_slice()]).unwrap();
        assert!(b.items()[0].pinned, "a pin syncs");
        // Offline on both, from pinned: a unpins; b unpins and pins again.
        a.set_pinned(id, false, Hlc::unpack(3 << 16)).unwrap();
        b.set_pinned(id, false, Hlc::unpack(3 << 16)).unwrap();
        b.set_pinned(id, true, Hlc::unpack(3 << 16)).unwrap();
        let (ca, cb) = (a.save(), b.save());
        a.doc.load_incremental(&cb).unwrap();
        b.doc.load_incremental(&ca).unwrap();
        assert_eq!(
            a.items()[0].pinned,
            b.items()[0].pinned,
            "one answer everywhere"
        );
        // The one-pass listing and the field-by-field reading agree on it.
        assert_eq!(a.item(id).map(|i| i.pinned), Some(a.items()[0].pinned));
        // A later unpin that saw both wins.
        b.set_pinned(id, false, Hlc::unpack(4 << 16)).unwrap();
        a.doc.load_incremental(&b.save()).unwrap();
        assert!(!a.items()[0].pinned);
        // A deleted item cannot be pinned.
        a.delete(id, Hlc::unpack(5 << 16)).unwrap();
        assert!(matches!(
            a.set_pinned(id, true, Hlc::unpack(6 << 16)),
            Err(DocError::NotFound)
        ));
    }

    #[test]
    fn tasks_check_everywhere_and_a_concurrent_check_beats_an_uncheck() {
        let (da, db) = (DeviceId::random(), DeviceId::random());
        let mut a = SpaceDoc::new(da.as_bytes()).unwrap();
        let id = ItemId::random();
        let task = a
            .add_task(id, "buy milk", da, Hlc::unpack(1 << 16))
            .unwrap();
        assert_eq!((task.kind, task.done), (ItemKind::Task, false));
        let note = ItemId::random();
        a.add_text(note, "a note", da, Hlc::unpack(1 << 16))
            .unwrap();
        assert!(matches!(
            a.set_done(note, true, Hlc::unpack(2 << 16)),
            Err(DocError::NotATask)
        ));
        a.set_done(id, true, Hlc::unpack(2 << 16)).unwrap();
        let (mut b, _) = SpaceDoc::load(db.as_bytes(), [a.save().as_slice()]).unwrap();
        let on_b = b.items().into_iter().find(|i| i.id == id).unwrap();
        assert_eq!(
            (on_b.kind, on_b.done, on_b.text.as_str()),
            (ItemKind::Task, true, "buy milk")
        );
        // Offline on both, from checked: a unchecks; b unchecks and checks again (writing
        // the value a field already has records nothing). Concurrent values false (a) and
        // true (b): checked wins, on both.
        a.set_done(id, false, Hlc::unpack(3 << 16)).unwrap();
        b.set_done(id, false, Hlc::unpack(3 << 16)).unwrap();
        b.set_done(id, true, Hlc::unpack(3 << 16)).unwrap();
        let (ca, cb) = (a.save(), b.save());
        a.doc.load_incremental(&cb).unwrap();
        b.doc.load_incremental(&ca).unwrap();
        for d in [&a, &b] {
            assert!(d.item(id).unwrap().done);
            assert!(d.items().iter().any(|i| i.id == id && i.done));
        }
        // An uncheck that saw both decides.
        a.set_done(id, false, Hlc::unpack(4 << 16)).unwrap();
        b.doc.load_incremental(&a.save()).unwrap();
        assert!(!b.item(id).unwrap().done);
    }

    #[test]
    fn edits_are_marked() {
        let d = DeviceId::random();
        let mut a = SpaceDoc::new(d.as_bytes()).unwrap();
        let id = ItemId::random();
        a.add_text(id, "typo", d, Hlc::unpack(1 << 16)).unwrap();
        a.edit_text(id, "fixed", Hlc::unpack(5 << 16)).unwrap();
        let item = &a.items()[0];
        assert_eq!(
            (item.text.as_str(), item.edited_at),
            ("fixed", Some(Hlc::unpack(5 << 16)))
        );
    }

    #[test]
    fn file_items_round_trip_and_deleted_files_are_not_live() {
        let d = DeviceId::random();
        let mut a = SpaceDoc::new(d.as_bytes()).unwrap();
        let meta = |n: u8| FileMeta {
            root: BlobId([n; 32]),
            name: format!("photo {n}.jpg"),
            size: 3 << 20,
            mime: "image/jpeg".into(),
        };
        let (one, two) = (ItemId::random(), ItemId::random());
        a.add_file(one, &meta(1), d, Hlc::unpack(1 << 16)).unwrap();
        a.add_file(two, &meta(2), d, Hlc::unpack(2 << 16)).unwrap();
        a.add_text(ItemId::random(), "caption", d, Hlc::unpack(3 << 16))
            .unwrap();
        let (b, _) = SpaceDoc::load(&[7; 16], [a.save().as_slice()]).unwrap();
        let items = b.items();
        assert_eq!(items[0].kind, ItemKind::File);
        assert_eq!(items[0].file, Some(meta(1)));
        assert_eq!(items[2].file, None);
        assert_eq!(
            b.live_blobs(),
            [BlobId([1; 32]), BlobId([2; 32])].into_iter().collect()
        );
        a.delete(one, Hlc::unpack(4 << 16)).unwrap();
        assert_eq!(a.live_blobs(), [BlobId([2; 32])].into_iter().collect());
        let long = FileMeta {
            name: "x".repeat(MAX_FILE_NAME_BYTES + 1),
            ..meta(3)
        };
        assert!(matches!(
            a.add_file(ItemId::random(), &long, d, Hlc::unpack(5 << 16)),
            Err(DocError::BadFile(_))
        ));
        let huge = FileMeta {
            size: MAX_FILE_SIZE + 1,
            ..meta(3)
        };
        assert!(
            a.add_file(ItemId::random(), &huge, d, Hlc::unpack(5 << 16))
                .is_err()
        );
    }

    #[test]
    fn oversized_text_is_refused_and_changes_nothing() {
        let d = DeviceId::random();
        let mut a = SpaceDoc::new(d.as_bytes()).unwrap();
        let big = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(matches!(
            a.add_text(ItemId::random(), &big, d, Hlc::unpack(1)),
            Err(DocError::TooLarge { .. })
        ));
        assert!(a.items().is_empty());
    }

    /// A note's body is a text object: concurrent offline edits merge by character, a merged
    /// edit of the body is reported as a change of its item, and a delete clears it.
    #[test]
    fn notes_merge_by_character() {
        let (da, db) = (DeviceId::random(), DeviceId::random());
        let mut a = SpaceDoc::new(da.as_bytes()).unwrap();
        let mut b = SpaceDoc::new(db.as_bytes()).unwrap();
        let at = |ms| Hlc {
            wall_ms: ms,
            counter: 0,
        };
        let id = ItemId::random();
        let note = a
            .add_note(id, "Groceries", "milk\neggs", da, at(1))
            .unwrap();
        assert_eq!(
            (note.kind, note.body.as_str()),
            (ItemKind::Note, "milk\neggs")
        );
        b.apply_changes(&a.save()).unwrap();
        b.take_changes();
        assert_eq!(b.item(id).unwrap().body, "milk\neggs");
        // Offline on both: a edits the end, b the start.
        assert!(
            a.edit_note(id, "Groceries", "milk\neggs", "milk\neggs\nbread", at(2))
                .unwrap()
        );
        assert!(
            b.edit_note(id, "Groceries", "milk\neggs", "oat milk\neggs", at(2))
                .unwrap()
        );
        // Nothing changed: nothing written.
        assert!(!a.edit_note(id, "Groceries", "x", "x", at(3)).unwrap());
        let (ha, hb) = (a.heads(), b.heads());
        let (from_a, from_b) = (a.save_after(&hb), b.save_after(&ha));
        a.take_changes();
        a.apply_changes(&from_b).unwrap();
        b.apply_changes(&from_a).unwrap();
        assert_eq!(
            a.take_changes().items,
            [id].into(),
            "a body edit is its item's change"
        );
        let (na, nb) = (a.item(id).unwrap(), b.item(id).unwrap());
        assert_eq!(na.body, "oat milk\neggs\nbread");
        assert_eq!(na, nb);
        assert!(na.edited_at.is_some());
        // Only notes have bodies; a too-long body is refused whole.
        let text = a.add_text(ItemId::random(), "hi", da, at(4)).unwrap();
        assert!(matches!(
            a.edit_note(text.id, "t", "", "x", at(5)),
            Err(DocError::NotANote)
        ));
        let huge = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(matches!(
            a.edit_note(id, "Groceries", &na.body, &huge, at(6)),
            Err(DocError::TooLarge { .. })
        ));
        assert_eq!(a.item(id).unwrap().body, na.body);
        // A delete empties the body from the current state.
        a.delete(id, at(7)).unwrap();
        let obj = map_at(&a.doc, &a.items, &id.to_string()).unwrap();
        let Some((Value::Object(ObjType::Text), body)) = a.doc.get(&obj, "body").unwrap() else {
            panic!("the body object stays");
        };
        assert_eq!(a.doc.text(&body).unwrap(), "");
        assert_eq!(by_get(&a, &id.to_string()), None);
    }
}
