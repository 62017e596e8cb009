//! The upload side of the mailbox client: what this device has put in the mailbox, and what it
//! puts there next. The runtime performs the requests (`POST /mailbox/<room>`, `…/base`) and
//! reads file bytes from storage; every decision is here, so the host simulation
//! (`tests/mailbox_device_sim.rs`) runs the same code as the app.
//!
//! - History goes as a delta since the heads the mailbox has, or, when one is due
//!   ([`crate::base_due`]), as the whole document declared as a *base* that lets the server
//!   drop the entries it covers. A base covers only entries whose contents are in this
//!   document ([`crate::MailboxCursor::base_covers`]) and is declared once all of it is posted.
//! - A long upload is posted a few entries per visit ([`HISTORY_ENTRIES_PER_VISIT`]) and
//!   resumed; after a reload it is planned again (readers skip the half-posted message).
//! - What arrives *from* the mailbox is in it already: when nothing of ours was waiting, the
//!   heads after reading count as uploaded ([`Uploader::after_read`]), or every device would
//!   echo every change back.
//! - Files written here and held whole go chunk by chunk ([`CHUNKS_PER_VISIT`] per visit), held
//!   by the server for the other devices, resumed where they stopped.

use super::local_state::MailboxState;
use crate::mailbox::{MailboxPayload, UploadLog, base_due, plan_upload};
use crate::{BlobId, SpaceDoc};
use std::collections::{BTreeSet, VecDeque};

/// History entries posted per visit (up to 1 MiB): the loop waits for each request.
pub const HISTORY_ENTRIES_PER_VISIT: usize = 16;
/// File chunks posted per visit (1 MiB).
pub const CHUNKS_PER_VISIT: u32 = 4;

/// What the server said about the room at this visit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomView {
    /// The room's newest entry.
    pub last_seq: u64,
    /// The last entry of the newest base, if there is one.
    pub base_to: Option<u64>,
}

/// A base to declare (`POST …/base`): entries `from..=to` are a whole document that makes
/// every entry up to `covers` unnecessary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseDeclaration {
    /// Its first entry.
    pub from: u64,
    /// Its last entry.
    pub to: u64,
    /// The entries it replaces.
    pub covers: u64,
}

/// A finished history upload: what to declare, and what changed in the saved state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryDone {
    /// Declare this base now (the upload was a snapshot).
    pub base: Option<BaseDeclaration>,
}

/// The next step of a file upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStep {
    /// Post the file's manifest (held), then its chunks from 0.
    Manifest(BlobId),
    /// Post this chunk (held).
    Chunk(BlobId, u32),
    /// This visit's budget is spent: come back soon.
    Later,
    /// Nothing left to upload.
    Done,
}

/// A history upload in progress.
#[derive(Debug)]
struct HistoryUpload {
    /// Sealed entries not posted yet.
    entries: VecDeque<Vec<u8>>,
    /// Sequence numbers of the entries posted.
    seqs: Vec<u64>,
    /// A snapshot to declare as the base, covering entries up to this one.
    base_covers: Option<u64>,
    /// The document heads it reaches.
    heads: Vec<[u8; 32]>,
    /// Items up to this time are in it.
    carried: u64,
    /// Entries handed out and not reported yet.
    in_flight: usize,
}

/// What this device has put in the mailbox (saved in [`MailboxState`]) and the upload in
/// progress (in memory only).
#[derive(Debug, Default)]
pub struct Uploader {
    heads: Vec<[u8; 32]>,
    files: BTreeSet<BlobId>,
    log: UploadLog,
    carried_ms: u64,
    history: Option<HistoryUpload>,
    /// The file being uploaded and its next chunk (`None`: its manifest first).
    file: Option<(BlobId, Option<u32>)>,
    /// Chunks left in this visit's budget.
    budget: u32,
}

fn sorted(mut heads: Vec<[u8; 32]>) -> Vec<[u8; 32]> {
    heads.sort();
    heads
}

fn doc_heads(doc: &mut SpaceDoc) -> Vec<[u8; 32]> {
    sorted(doc.heads().iter().map(|h| h.0).collect())
}

impl Uploader {
    /// Resumes from the saved state.
    pub fn resume(saved: &MailboxState) -> Self {
        Uploader {
            heads: saved.heads.clone(),
            files: saved.files.clone(),
            log: saved.uploads.clone(),
            carried_ms: saved.carried,
            ..Uploader::default()
        }
    }

    /// Writes what must survive a reload into `state` (the rest is planned again).
    pub fn save_into(&self, state: &mut MailboxState) {
        state.heads = self.heads.clone();
        state.files = self.files.clone();
        state.uploads = self.log.clone();
        state.carried = self.carried_ms;
    }

    /// The document heads the mailbox has (as of the last complete upload).
    pub fn heads(&self) -> &[[u8; 32]] {
        &self.heads
    }

    /// This device's uploads (for "waiting in the mailbox").
    pub fn log(&self) -> &UploadLog {
        &self.log
    }

    /// The newest item time the mailbox holds from this device.
    pub fn carried_ms(&self) -> u64 {
        self.carried_ms
    }

    /// A history upload is half posted.
    pub fn uploading_history(&self) -> bool {
        self.history.is_some()
    }

    /// The mailbox has this document's whole history (as of the last complete upload).
    pub fn has_all_of(&self, doc: &mut SpaceDoc) -> bool {
        doc_heads(doc) == sorted(self.heads.clone())
    }

    /// Notes an upload that reached the server outside [`Uploader::plan_history`] (the durable
    /// outbox): its last entry, the items it carried, the heads it reaches.
    pub fn uploaded(&mut self, last_seq: Option<u64>, carried: u64, heads: Vec<[u8; 32]>) {
        if let Some(seq) = last_seq {
            self.log.record(seq, carried);
            self.carried_ms = self.carried_ms.max(carried);
        }
        self.heads = heads;
    }

    /// After reading the mailbox: if nothing of ours was waiting before (`had_all`), what was
    /// just read is in the mailbox already, so the document's heads count as uploaded.
    /// Returns whether the saved state changed.
    pub fn after_read(&mut self, had_all: bool, doc: &mut SpaceDoc) -> bool {
        if !had_all || self.has_all_of(doc) {
            return false;
        }
        self.heads = doc_heads(doc);
        true
    }

    /// Plans the next history upload unless one is in progress: a delta since the uploaded
    /// heads, or the whole document as a base when one is due. `covers` is
    /// [`crate::MailboxCursor::base_covers`]; `seal` turns the payload into sealed entries
    /// (`None`: larger than one mailbox message may be, so direct sync only); `carried_ms`
    /// is how far the items reach (the newest item time here, or now if later). Returns
    /// whether something is to be posted.
    pub fn plan_history(
        &mut self,
        doc: &mut SpaceDoc,
        room: RoomView,
        covers: Option<u64>,
        carried_ms: u64,
        seal: impl FnOnce(&MailboxPayload) -> Option<Vec<Vec<u8>>>,
    ) -> bool {
        if self.history.is_some() {
            return true;
        }
        let since: Vec<automerge::ChangeHash> = self
            .heads
            .iter()
            .map(|h| automerge::ChangeHash(*h))
            .collect();
        // A device with nothing new uploads the snapshot too: compaction is a service to the
        // late joiner, not a side effect of writing.
        let as_base = covers.is_some_and(|c| base_due(room.last_seq, room.base_to, c, true));
        let (changes, heads) = match plan_upload(doc, &since) {
            Some(plan) => (plan.changes, plan.heads),
            None if as_base => (Vec::new(), doc.heads()),
            None => return false,
        };
        let bytes = if as_base { doc.save() } else { changes };
        let Some(entries) = seal(&MailboxPayload::Changes { bytes }) else {
            return false;
        };
        self.history = Some(HistoryUpload {
            entries: entries.into(),
            seqs: Vec::new(),
            base_covers: covers.filter(|_| as_base),
            heads: heads.iter().map(|h| h.0).collect(),
            carried: carried_ms,
            in_flight: 0,
        });
        true
    }

    /// The next history entry to post, if any is left (report with [`Uploader::posted`] or
    /// [`Uploader::not_posted`]).
    pub fn next_history_entry(&mut self) -> Option<Vec<u8>> {
        let h = self.history.as_mut()?;
        let entry = h.entries.pop_front()?;
        h.in_flight += 1;
        Some(entry)
    }

    /// The entry was stored as `seq`.
    pub fn posted(&mut self, seq: u64) {
        if let Some(h) = self.history.as_mut() {
            h.seqs.push(seq);
            h.in_flight = h.in_flight.saturating_sub(1);
        }
    }

    /// The entry was refused or the request failed: it is posted first at the next visit.
    pub fn not_posted(&mut self, entry: Vec<u8>) {
        if let Some(h) = self.history.as_mut() {
            h.entries.push_front(entry);
            h.in_flight = h.in_flight.saturating_sub(1);
        }
    }

    /// Finishes the upload once every entry is posted (`None` while some are left): the base
    /// to declare, if it was a snapshot. The upload is recorded for delivery and its heads
    /// count as uploaded.
    pub fn finish_history(&mut self) -> Option<HistoryDone> {
        let done = self
            .history
            .take_if(|h| h.entries.is_empty() && h.in_flight == 0)?;
        // Declared only once all of it is stored: a half-uploaded snapshot is never what a
        // late joiner is given instead of the entries it replaces.
        let base = match (done.base_covers, done.seqs.first(), done.seqs.last()) {
            (Some(covers), Some(&from), Some(&to)) => Some(BaseDeclaration { from, to, covers }),
            _ => None,
        };
        self.uploaded(done.seqs.last().copied(), done.carried, done.heads);
        Some(HistoryDone { base })
    }

    /// Files to upload: written here (`mine`) and held whole here (`stored`), not yet in
    /// the mailbox. Starts a visit's file budget.
    pub fn files_to_upload(
        &mut self,
        mine: &BTreeSet<BlobId>,
        stored: impl IntoIterator<Item = BlobId>,
    ) -> Vec<BlobId> {
        self.budget = CHUNKS_PER_VISIT;
        stored
            .into_iter()
            .filter(|r| mine.contains(r) && !self.files.contains(r))
            .collect()
    }

    /// The next step for `root` (one of [`Uploader::files_to_upload`]), whose manifest has
    /// `chunks` chunks. Report with [`Uploader::file_posted`]; a failure leaves the step to
    /// the next visit.
    pub fn file_step(&mut self, root: BlobId, chunks: u32) -> FileStep {
        let next = match self.file {
            Some((r, next)) if r == root => next,
            _ => None,
        };
        match next {
            None => FileStep::Manifest(root),
            Some(index) if index >= chunks => FileStep::Done,
            Some(_) if self.budget == 0 => FileStep::Later,
            Some(index) => FileStep::Chunk(root, index),
        }
    }

    /// The step was posted. Returns whether the file is now wholly in the mailbox (saved
    /// state changed).
    pub fn file_posted(&mut self, step: FileStep, chunks: u32) -> bool {
        let (root, next) = match step {
            FileStep::Manifest(root) => (root, 0),
            FileStep::Chunk(root, index) => {
                self.budget = self.budget.saturating_sub(1);
                (root, index + 1)
            }
            FileStep::Later | FileStep::Done => return false,
        };
        if next >= chunks {
            self.file = None;
            self.files.insert(root);
            true
        } else {
            self.file = Some((root, Some(next)));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceId, Hlc, ItemId};

    fn doc() -> SpaceDoc {
        SpaceDoc::new(&[1; 16]).unwrap()
    }

    fn write(doc: &mut SpaceDoc, text: &str, ms: u64) {
        let at = Hlc {
            wall_ms: ms,
            counter: 0,
        };
        doc.add_text(ItemId::random(), text, DeviceId::from_bytes([1; 16]), at)
            .unwrap();
    }

    fn seal_one(p: &MailboxPayload) -> Option<Vec<Vec<u8>>> {
        match p {
            MailboxPayload::Changes { bytes } => Some(vec![bytes.clone()]),
            _ => None,
        }
    }

    #[test]
    fn a_delta_then_nothing_then_a_base_when_due() {
        let mut d = doc();
        write(&mut d, "one", 10);
        let mut up = Uploader::default();
        let room = RoomView::default();
        assert!(up.plan_history(&mut d, room, Some(0), 20, seal_one));
        let entry = up.next_history_entry().unwrap();
        assert!(up.finish_history().is_none(), "posted nothing yet");
        up.posted(1);
        // An empty mailbox and no base yet: the first upload is the whole document, the
        // room's first base (covering nothing before it).
        let done = up.finish_history().unwrap();
        assert_eq!(
            done.base,
            Some(BaseDeclaration {
                from: 1,
                to: 1,
                covers: 0
            })
        );
        assert!(!entry.is_empty());
        assert!(up.has_all_of(&mut d));
        assert_eq!(up.log().delivered_ms(1), Some(20));
        // Nothing new and no base due: nothing planned.
        let room = RoomView {
            last_seq: 1,
            base_to: Some(1),
        };
        assert!(!up.plan_history(&mut d, room, Some(1), 30, seal_one));
        // 16 entries after the base, all applied here: a snapshot is due even with nothing
        // new, declared with the entries it covers once all of it is posted.
        let room = RoomView {
            last_seq: 17,
            base_to: Some(1),
        };
        assert!(up.plan_history(&mut d, room, Some(17), 40, seal_one));
        let e = up.next_history_entry().unwrap();
        up.not_posted(e);
        assert!(
            up.finish_history().is_none(),
            "a refused entry is posted again"
        );
        let _ = up.next_history_entry().unwrap();
        up.posted(18);
        let done = up.finish_history().unwrap();
        assert_eq!(
            done.base,
            Some(BaseDeclaration {
                from: 18,
                to: 18,
                covers: 17
            })
        );
    }

    #[test]
    fn a_base_never_covers_what_is_not_applied_here() {
        let mut d = doc();
        write(&mut d, "one", 10);
        let mut up = Uploader::default();
        let room = RoomView {
            last_seq: 20,
            base_to: None,
        };
        // Entries up to 20 exist but only 5 are applied here: no snapshot, a delta.
        assert!(up.plan_history(&mut d, room, Some(5), 20, seal_one));
        let _ = up.next_history_entry().unwrap();
        up.posted(21);
        assert_eq!(up.finish_history().unwrap().base, None);
        // And no cover at all (a message half read): never a base.
        write(&mut d, "two", 30);
        assert!(up.plan_history(&mut d, room, None, 40, seal_one));
        let _ = up.next_history_entry().unwrap();
        up.posted(22);
        assert_eq!(up.finish_history().unwrap().base, None);
    }

    #[test]
    fn what_was_read_is_not_echoed_back() {
        let mut d = doc();
        let mut up = Uploader::default();
        let had_all = up.has_all_of(&mut d);
        assert!(!had_all, "the genesis change was never uploaded");
        // Uploaded everything, then another device's change arrives from the mailbox.
        let heads = d.heads().iter().map(|h| h.0).collect();
        up.uploaded(None, 0, heads);
        let had_all = up.has_all_of(&mut d);
        write(&mut d, "from the mailbox", 10);
        assert!(up.after_read(had_all, &mut d));
        assert!(!up.plan_history(&mut d, RoomView::default(), None, 20, seal_one));
        // Something of ours was waiting: what was read does not make it uploaded.
        write(&mut d, "ours", 30);
        let had_all = up.has_all_of(&mut d);
        write(&mut d, "read", 40);
        assert!(!up.after_read(had_all, &mut d));
        assert!(up.plan_history(&mut d, RoomView::default(), None, 50, seal_one));
    }

    #[test]
    fn files_go_manifest_first_a_few_chunks_a_visit_and_resume() {
        let root = BlobId([9; 32]);
        let other = BlobId([8; 32]);
        let mut up = Uploader::default();
        let mine = BTreeSet::from([root]);
        assert_eq!(up.files_to_upload(&mine, [root, other]), vec![root]);
        let chunks = 6;
        let mut steps = vec![];
        loop {
            let step = up.file_step(root, chunks);
            steps.push(step);
            if matches!(step, FileStep::Later | FileStep::Done) {
                break;
            }
            up.file_posted(step, chunks);
        }
        assert_eq!(steps.len(), 6, "{steps:?}");
        assert_eq!(steps[0], FileStep::Manifest(root));
        assert_eq!(steps[4], FileStep::Chunk(root, 3));
        assert_eq!(steps[5], FileStep::Later);
        // Next visit: resumes at chunk 4 (a failure there leaves it for the visit after).
        assert_eq!(up.files_to_upload(&mine, [root]), vec![root]);
        assert_eq!(up.file_step(root, chunks), FileStep::Chunk(root, 4));
        assert!(!up.file_posted(FileStep::Chunk(root, 4), chunks));
        assert!(up.file_posted(FileStep::Chunk(root, 5), chunks));
        assert_eq!(up.files_to_upload(&mine, [root]), Vec::<BlobId>::new());
        let mut saved = MailboxState::default();
        up.save_into(&mut saved);
        assert!(Uploader::resume(&saved).files.contains(&root));
    }
}
