//! The history in display order, kept up to date from [`DocChanges`] instead of re-read.
//!
//! Reading every item out of automerge costs O(history) (each item is several map lookups);
//! doing that after every message made a long history slow to use. The index reads the whole
//! document once, at load, and after that only the items a change touched: a message costs
//! O(log history). It also counts which files items refer to, so "which files are live" needs
//! no scan either.

use crate::blobs::BlobId;
use crate::doc::{DocChanges, Item, SpaceDoc};
use crate::hlc::Hlc;
use crate::ids::ItemId;
use std::collections::{BTreeMap, BTreeSet};

/// What happened to one row of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryPatch {
    /// A new visible item.
    Added(ItemId),
    /// A visible item changed (edited; its position may have moved).
    Changed(ItemId),
    /// An item left the visible history (deleted).
    Removed(ItemId),
}

/// The visible items of a space in display order `(at, id)`, the order [`SpaceDoc::items`]
/// returns.
#[derive(Debug, Default, Clone)]
pub struct History {
    order: BTreeMap<(Hlc, ItemId), Item>,
    at: BTreeMap<ItemId, Hlc>,
    files: BTreeMap<BlobId, usize>,
    /// The items that carry a file, in display order (what delivery marks look at, without
    /// walking every text).
    with_files: BTreeSet<(Hlc, ItemId)>,
}

impl History {
    /// Indexes every visible item of `doc` (once, at load).
    pub fn load(doc: &SpaceDoc) -> Self {
        let mut h = History::default();
        for item in doc.items() {
            h.insert(item);
        }
        h
    }

    fn insert(&mut self, item: Item) {
        if let Some(f) = &item.file {
            *self.files.entry(f.root).or_default() += 1;
            self.with_files.insert((item.at, item.id));
        }
        self.at.insert(item.id, item.at);
        self.order.insert((item.at, item.id), item);
    }

    fn remove(&mut self, id: ItemId) -> Option<Item> {
        let at = self.at.remove(&id)?;
        let item = self.order.remove(&(at, id))?;
        self.with_files.remove(&(at, id));
        if let Some(f) = &item.file
            && let Some(n) = self.files.get_mut(&f.root)
        {
            *n -= 1;
            if *n == 0 {
                self.files.remove(&f.root);
            }
        }
        Some(item)
    }

    /// Re-reads the items `changes` names from `doc`; returns what happened to each row.
    /// Items that read back unchanged produce no patch.
    pub fn apply(&mut self, doc: &SpaceDoc, changes: &DocChanges) -> Vec<HistoryPatch> {
        let mut out = Vec::new();
        for &id in &changes.items {
            let now = doc.item(id);
            let before = self.remove(id);
            match (before, now) {
                (None, None) => {}
                (Some(_), None) => out.push(HistoryPatch::Removed(id)),
                (None, Some(item)) => {
                    self.insert(item);
                    out.push(HistoryPatch::Added(id));
                }
                (Some(old), Some(item)) => {
                    let same = old == item;
                    self.insert(item);
                    if !same {
                        out.push(HistoryPatch::Changed(id));
                    }
                }
            }
        }
        out
    }

    /// Visible items, oldest first.
    pub fn items(&self) -> impl DoubleEndedIterator<Item = &Item> + ExactSizeIterator + Clone {
        self.order.values()
    }

    /// Visible items that carry a file, oldest first.
    pub fn file_items(&self) -> impl Iterator<Item = &Item> {
        self.with_files.iter().filter_map(|k| self.order.get(k))
    }

    /// The files of visible items `author` wrote (looks at file items only).
    pub fn files_by(&self, author: crate::ids::DeviceId) -> BTreeSet<BlobId> {
        self.file_items()
            .filter(|i| i.author == author)
            .filter_map(|i| i.file.as_ref().map(|f| f.root))
            .collect()
    }

    /// One visible item.
    pub fn get(&self, id: ItemId) -> Option<&Item> {
        let at = self.at.get(&id)?;
        self.order.get(&(*at, id))
    }

    /// Number of visible items.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// No visible items.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Files some visible item refers to (the same as [`SpaceDoc::live_blobs`]).
    pub fn live_blobs(&self) -> BTreeSet<BlobId> {
        self.files.keys().copied().collect()
    }

    /// The newest timestamp of any visible item (written or edited).
    pub fn latest(&self) -> Option<Hlc> {
        self.order
            .values()
            .next_back()
            .map(|i| i.at)
            .into_iter()
            .chain(self.order.values().filter_map(|i| i.edited_at).max())
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::FileMeta;
    use crate::ids::DeviceId;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Text(u8),
        File(u8),
        Edit(u8),
        Delete(u8),
        /// Merge the other document's changes into this one.
        Merge,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u8>().prop_map(Op::Text),
            1 => any::<u8>().prop_map(Op::File),
            2 => any::<u8>().prop_map(Op::Edit),
            2 => any::<u8>().prop_map(Op::Delete),
            2 => Just(Op::Merge),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever two devices do and merge, the patched index always equals a fresh read of
        /// the document, and its live files equal the document's.
        #[test]
        fn the_patched_index_equals_a_fresh_read(ops in prop::collection::vec((any::<bool>(), op()), 1..80)) {
            let devices = [DeviceId::random(), DeviceId::random()];
            let mut docs = [
                SpaceDoc::new(devices[0].as_bytes()).unwrap(),
                SpaceDoc::new(devices[1].as_bytes()).unwrap(),
            ];
            let mut index = [History::load(&docs[0]), History::load(&docs[1])];
            let mut clock = 0u64;
            for (which, op) in ops {
                let (i, j) = if which { (0, 1) } else { (1, 0) };
                clock += 1;
                let at = Hlc { wall_ms: 1_000 - clock % 7 * 100 + clock, counter: 0 };
                let items = docs[i].items();
                let pick = |n: u8| items.get(usize::from(n) % items.len().max(1)).map(|x| x.id);
                match op {
                    Op::Text(n) => {
                        docs[i].add_text(ItemId::random(), &format!("t{n}"), devices[i], at).unwrap();
                    }
                    Op::File(n) => {
                        let meta = FileMeta { root: BlobId([n % 4; 32]), name: "f".into(), size: 1, mime: String::new() };
                        docs[i].add_file(ItemId::random(), &meta, devices[i], at).unwrap();
                    }
                    Op::Edit(n) => {
                        if let Some(id) = pick(n) {
                            docs[i].edit_text(id, &format!("e{n}"), at).unwrap();
                        }
                    }
                    Op::Delete(n) => {
                        if let Some(id) = pick(n) {
                            docs[i].delete(id, at).unwrap();
                        }
                    }
                    Op::Merge => {
                        let heads = docs[i].heads();
                        let bytes = docs[j].save_after(&heads);
                        docs[i].apply_changes(&bytes).unwrap();
                    }
                }
                let changes = docs[i].take_changes();
                index[i].apply(&docs[i], &changes);
                let fresh: Vec<Item> = docs[i].items();
                let patched: Vec<Item> = index[i].items().cloned().collect();
                let fresh_files: Vec<&Item> = fresh.iter().filter(|i| i.file.is_some()).collect();
                prop_assert_eq!(index[i].file_items().collect::<Vec<_>>(), fresh_files);
                prop_assert_eq!(patched, fresh);
                prop_assert_eq!(index[i].live_blobs(), docs[i].live_blobs());
            }
        }
    }

    #[test]
    fn patches_say_added_changed_removed_once() {
        let d = DeviceId::random();
        let mut doc = SpaceDoc::new(d.as_bytes()).unwrap();
        let mut h = History::load(&doc);
        let at = |ms| Hlc {
            wall_ms: ms,
            counter: 0,
        };
        let step = |h: &mut History, doc: &mut SpaceDoc| {
            let changes = doc.take_changes();
            h.apply(doc, &changes)
        };
        let id = ItemId::random();
        doc.add_text(id, "one", d, at(1)).unwrap();
        assert_eq!(step(&mut h, &mut doc), [HistoryPatch::Added(id)]);
        doc.edit_text(id, "uno", at(2)).unwrap();
        assert_eq!(step(&mut h, &mut doc), [HistoryPatch::Changed(id)]);
        assert_eq!(h.get(id).map(|i| i.text.as_str()), Some("uno"));
        doc.delete(id, at(3)).unwrap();
        assert_eq!(step(&mut h, &mut doc), [HistoryPatch::Removed(id)]);
        assert!(h.is_empty());
        assert!(step(&mut h, &mut doc).is_empty());
    }
}
