//! What a device knows of the files in its history, apart from their bytes: which are whole
//! here, which the person stopped here, which the history still holds, which connected
//! devices were asked about them, and the transfer engine that moves them ([`FileSet`]);
//! and which stored bytes may be freed at start ([`to_free`]). Reading and writing the bytes
//! is the host's (IndexedDB in the app).

use crate::blobs::{BlobEffect, BlobId, TransferConfig, Transfers};
use crate::doc::Item;
use crate::ids::DeviceId;
use crate::replica::PeerKey;
use std::collections::BTreeSet;

/// The files of one device (see the module docs).
pub struct FileSet {
    /// The transfer engine (requests, serving, verification).
    pub engine: Transfers,
    /// Devices that proved membership over a link that does not share this device's storage
    /// (not sibling tabs), and were asked which of our files they hold.
    peers: BTreeSet<PeerKey>,
    /// Files whose every chunk is stored here.
    stored: BTreeSet<BlobId>,
    /// Files the person stopped on this device.
    stopped: BTreeSet<BlobId>,
    /// Files the history references, as of the last look.
    live: BTreeSet<BlobId>,
    /// Files that became whole here since connected devices were last told.
    announce: Vec<BlobId>,
}

/// What the history's files did since the last look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveChange {
    /// No longer referenced (their items were deleted): free their bytes.
    pub gone: Vec<BlobId>,
    /// Newly referenced: serve, resume or fetch them.
    pub new: Vec<BlobId>,
}

impl FileSet {
    /// A device's files, with what the person stopped here (saved in its local state).
    pub fn new(stopped: BTreeSet<BlobId>) -> Self {
        FileSet {
            engine: Transfers::new(TransferConfig::default()),
            peers: BTreeSet::new(),
            stored: BTreeSet::new(),
            stopped,
            live: BTreeSet::new(),
            announce: Vec::new(),
        }
    }

    /// The history references these files now: what went and what came, once (the engine
    /// forgets what went).
    pub fn history_changed(&mut self, live: BTreeSet<BlobId>) -> LiveChange {
        if live == self.live {
            return LiveChange::default();
        }
        let gone: Vec<BlobId> = self.live.difference(&live).copied().collect();
        let new: Vec<BlobId> = live.difference(&self.live).copied().collect();
        self.live = live;
        for root in &gone {
            self.engine.forget(*root);
            self.stored.remove(root);
        }
        LiveChange { gone, new }
    }

    /// A file this device is writing: in the history from now on.
    pub fn writing(&mut self, root: BlobId) {
        self.live.insert(root);
    }

    /// The files the history references.
    pub fn live(&self) -> &BTreeSet<BlobId> {
        &self.live
    }

    /// Every chunk of `root` is stored here; connected devices are told at the next
    /// [`FileSet::announcements`].
    pub fn whole(&mut self, root: BlobId) {
        if self.stored.insert(root) {
            self.announce.push(root);
        }
    }

    /// Tells connected devices which files became whole here (their authors may then say
    /// "on" this device).
    pub fn announcements(&mut self) -> Vec<BlobEffect> {
        std::mem::take(&mut self.announce)
            .into_iter()
            .flat_map(|root| self.engine.announce(root))
            .collect()
    }

    /// Stored whole here.
    pub fn is_stored(&self, root: &BlobId) -> bool {
        self.stored.contains(root)
    }

    /// Files stored whole here and still in the history.
    pub fn stored_files(&self) -> Vec<BlobId> {
        self.stored.intersection(&self.live).copied().collect()
    }

    /// Files the history references that are neither whole here nor complete in the engine
    /// (another tab may have stored them in shared storage).
    pub fn incomplete(&self) -> Vec<BlobId> {
        self.live
            .iter()
            .filter(|r| !self.stored.contains(r) && !self.engine.is_complete(r))
            .copied()
            .collect()
    }

    /// The person stopped `root` here: no more requests (stored chunks stay).
    pub fn stop(&mut self, root: BlobId) {
        self.engine.cancel(root);
        self.stopped.insert(root);
    }

    /// The person wants `root` again.
    pub fn unstop(&mut self, root: BlobId) {
        self.stopped.remove(&root);
    }

    /// Stopped here.
    pub fn is_stopped(&self, root: &BlobId) -> bool {
        self.stopped.contains(root)
    }

    /// What the person stopped here (to save).
    pub fn stopped(&self) -> &BTreeSet<BlobId> {
        &self.stopped
    }

    /// A device proved membership: it may hold or want files; it is asked which of `mine`
    /// (the files this device wrote) it holds. Nothing when it was already up.
    pub fn peer_up(&mut self, peer: &PeerKey, mine: &[BlobId]) -> Vec<BlobEffect> {
        if !self.peers.insert(peer.clone()) {
            return Vec::new();
        }
        let mut effects = self.engine.peer_up(peer);
        effects.extend(self.engine.ask(peer, mine));
        effects
    }

    /// A device went away: its requests go to others.
    pub fn peer_down(&mut self, peer: &PeerKey, now_ms: u64) -> Vec<BlobEffect> {
        if !self.peers.remove(peer) {
            return Vec::new();
        }
        self.engine.peer_down(peer, now_ms)
    }

    /// Per author other than `me`, up to when this device holds every item with its file's
    /// bytes (what its mailbox receipt says; stopped files hold nothing back).
    pub fn stored_through<'a>(
        &self,
        items: impl IntoIterator<Item = &'a Item>,
        me: DeviceId,
    ) -> Vec<(DeviceId, u64)> {
        let stored: BTreeSet<BlobId> = self.stored_files().into_iter().collect();
        super::delivery::stored_through(items, &stored, &self.stopped, me)
    }

    /// How far a direct sync may mark a device as having what `me` wrote, given the links
    /// that reach it (`links`): before the first file of ours it has not said it holds whole.
    pub fn held_through<'a>(
        &self,
        links: impl IntoIterator<Item = &'a PeerKey>,
        file_items: impl IntoIterator<Item = &'a Item>,
        me: DeviceId,
    ) -> u64 {
        let holds: BTreeSet<BlobId> = links
            .into_iter()
            .filter_map(|k| self.engine.peer_holds(k))
            .flatten()
            .copied()
            .collect();
        super::delivery::held_through(file_items, me, &holds)
    }
}

/// The stored files whose bytes may be freed at start: only files whose items the loaded
/// history shows deleted (`deleted`, see [`crate::SpaceDoc::deleted_blobs`]), and nothing at
/// all when the load skipped damaged chunks (`skipped_chunks`): the change that made an item
/// live again, or the item of bytes stored here alone, may be in what was skipped, and those
/// bytes may be the only copy.
pub fn to_free(
    stored: &BTreeSet<BlobId>,
    deleted: &BTreeSet<BlobId>,
    skipped_chunks: bool,
) -> Vec<BlobId> {
    if skipped_chunks {
        return Vec::new();
    }
    stored.intersection(deleted).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_changing_says_once_what_went_and_what_came() {
        let (a, b, c) = (BlobId([1; 32]), BlobId([2; 32]), BlobId([3; 32]));
        let mut files = FileSet::new(BTreeSet::new());
        let change = files.history_changed(BTreeSet::from([a, b]));
        assert_eq!(change.new, vec![a, b]);
        files.whole(a);
        assert_eq!(files.stored_files(), vec![a]);
        assert_eq!(
            files.history_changed(BTreeSet::from([a, b])),
            LiveChange::default()
        );
        let change = files.history_changed(BTreeSet::from([b, c]));
        assert_eq!((change.gone, change.new), (vec![a], vec![c]));
        assert!(!files.is_stored(&a), "a deleted file is not held any more");
        assert_eq!(files.incomplete(), vec![b, c]);
    }

    #[test]
    fn a_peer_is_asked_once_and_let_go_once() {
        let mut files = FileSet::new(BTreeSet::new());
        let peer = PeerKey::rtc("p");
        let mine = [BlobId([1; 32])];
        assert!(
            !files.peer_up(&peer, &mine).is_empty(),
            "asked which it holds"
        );
        assert!(files.peer_up(&peer, &mine).is_empty());
        files.peer_down(&peer, 0);
        assert!(files.peer_down(&peer, 0).is_empty());
        assert!(
            !files.peer_up(&peer, &mine).is_empty(),
            "asked again after a reconnect"
        );
    }

    #[test]
    fn a_file_that_becomes_whole_is_announced_once() {
        let mut files = FileSet::new(BTreeSet::new());
        let root = BlobId([1; 32]);
        files.writing(root);
        files.whole(root);
        files.whole(root);
        assert_eq!(files.stored_files(), vec![root]);
        // One announcement (the engine sends it to whoever is connected then).
        let _ = files.announcements();
        assert!(files.announcements().is_empty(), "told once");
        files.whole(root);
        assert!(
            files.announcements().is_empty(),
            "already whole: nothing new"
        );
    }
    use crate::doc::FileMeta;
    use crate::persist::DocStore;
    use crate::store::{MemoryStore, Store};
    use crate::testing::block_on;
    use crate::{DeviceId, Hlc, ItemId, SpaceDoc};

    /// A history with a deleted file item, stored in chunks; then one chunk is damaged on
    /// disk. The load notices and skips it, and no stored bytes are freed.
    #[test]
    fn a_load_that_skipped_a_chunk_frees_no_file() {
        let store = MemoryStore::default();
        let me = DeviceId::from_bytes([1; 16]);
        let mut doc = SpaceDoc::new(me.as_bytes()).unwrap();
        let mut persist = block_on(DocStore::load(&store, me.as_bytes()))
            .unwrap()
            .store;
        let (gone, kept) = (BlobId([1; 32]), BlobId([2; 32]));
        let meta = |root| FileMeta {
            root,
            name: "f".into(),
            size: 1,
            mime: String::new(),
        };
        let at = |ms| Hlc {
            wall_ms: ms,
            counter: 0,
        };
        let id = ItemId::random();
        doc.add_file(id, &meta(gone), me, at(1)).unwrap();
        block_on(persist.save(&store, &mut doc)).unwrap();
        doc.add_file(ItemId::random(), &meta(kept), me, at(2))
            .unwrap();
        block_on(persist.save(&store, &mut doc)).unwrap();
        doc.delete(id, at(3)).unwrap();
        block_on(persist.save(&store, &mut doc)).unwrap();
        let stored = BTreeSet::from([gone, kept]);

        let loaded = block_on(DocStore::load(&store, me.as_bytes())).unwrap();
        assert!(loaded.corrupt.is_empty());
        let deleted = loaded.doc.deleted_blobs();
        assert_eq!(
            to_free(&stored, &deleted, false),
            vec![gone],
            "a clean load frees it"
        );

        // A torn write damages one chunk (its bytes no longer hash to its key).
        let chunks = block_on(store.list(&crate::StoreKey::new(&["doc"]).unwrap())).unwrap();
        let (key, mut bytes) = chunks[0].clone();
        bytes[0] ^= 0xff;
        block_on(store.put(&key, &bytes)).unwrap();
        let loaded = block_on(DocStore::load(&store, me.as_bytes())).unwrap();
        assert_eq!(loaded.corrupt.len(), 1);
        let deleted = loaded.doc.deleted_blobs();
        assert_eq!(
            to_free(&stored, &deleted, !loaded.corrupt.is_empty()),
            vec![]
        );
    }
}
