//! File decisions of a device that need no transfer: which stored bytes may be freed.

use crate::blobs::BlobId;
use std::collections::BTreeSet;

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
