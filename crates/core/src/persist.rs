//! How a space's document lives in a [`Store`]: content-addressed chunks, loaded in any
//! order, compacted without a window where a crash could lose data.
//!
//! - Every save writes `doc/incremental/<blake3 of bytes>`. Content-hash keys make writers in
//!   several tabs safe: two tabs never overwrite each other's chunk.
//! - Compaction writes `doc/snapshot/<hash>` first, and only then deletes the chunks *it had
//!   loaded* (never ones another tab wrote meanwhile). A crash at any point leaves a loadable
//!   set of chunks; duplicates merge away on load.

use crate::doc::{DocError, SpaceDoc};
use crate::store::{Store, StoreError, StoreKey};
use std::collections::BTreeSet;
use thiserror::Error;

/// Loading or saving the document failed.
#[derive(Debug, Error)]
pub enum PersistError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The document failed.
    #[error(transparent)]
    Doc(#[from] DocError),
}

/// Compact once this many incremental chunks have piled up (when the device is idle: a
/// compaction writes a full snapshot, tens of milliseconds on a long history, and must not sit
/// between Enter and the message on screen).
pub const COMPACT_AFTER: usize = 64;
/// Compact even while busy once this many piled up (a device that is never idle, say during a
/// long transfer, must not let its start-up load grow without bound).
pub const COMPACT_ANYWAY_AFTER: usize = 4 * COMPACT_AFTER;

fn chunk_key(kind: &str, bytes: &[u8]) -> Result<StoreKey, StoreError> {
    StoreKey::new(&["doc", kind, blake3::hash(bytes).to_hex().as_str()])
}

/// Tracks which chunks back the in-memory document.
#[derive(Debug, Default)]
pub struct DocStore {
    known: BTreeSet<StoreKey>,
    incrementals: usize,
    /// Heads covered by what is in storage. Saves write everything after these, so a write
    /// that failed (full quota) is simply retried by the next save: nothing is skipped.
    saved_heads: Vec<automerge::ChangeHash>,
}

/// What loading found.
#[derive(Debug)]
pub struct Loaded {
    /// The document.
    pub doc: SpaceDoc,
    /// Tracker to pass to later saves.
    pub store: DocStore,
    /// Keys of chunks that could not be read (left in place, never deleted).
    pub corrupt: Vec<StoreKey>,
}

impl DocStore {
    /// Loads every stored chunk into a document that writes as `actor`.
    pub async fn load<S: Store>(store: &S, actor: &[u8]) -> Result<Loaded, PersistError> {
        let prefix = StoreKey::new(&["doc"])?;
        // A chunk whose bytes no longer hash to its key was damaged (a torn write, a broken
        // disk): leave it in place for diagnosis but never feed it to the document.
        let (entries, mut corrupt): (Vec<_>, Vec<_>) = store
            .list(&prefix)
            .await?
            .into_iter()
            .partition(|(k, v)| blake3::hash(v).to_hex().as_str() == k.last());
        let mut corrupt: Vec<StoreKey> = corrupt.drain(..).map(|(k, _)| k).collect();
        let (doc, bad) = SpaceDoc::load(actor, entries.iter().map(|(_, v)| v.as_slice()))?;
        corrupt.extend(bad.iter().map(|&i| entries[i].0.clone()));
        let known: BTreeSet<StoreKey> = entries
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !corrupt.contains(k))
            .collect();
        let incrementals = known
            .iter()
            .filter(|k| k.as_str().starts_with("doc/incremental/"))
            .count();
        let mut doc = doc;
        let saved_heads = doc.heads();
        Ok(Loaded {
            doc,
            store: DocStore {
                known,
                incrementals,
                saved_heads,
            },
            corrupt,
        })
    }

    /// Writes the changes made since the last save. Returns whether anything was written.
    pub async fn save<S: Store>(
        &mut self,
        store: &S,
        doc: &mut SpaceDoc,
    ) -> Result<bool, PersistError> {
        let heads = doc.heads();
        if heads == self.saved_heads {
            return Ok(false);
        }
        let bytes = doc.save_after(&self.saved_heads);
        let key = chunk_key("incremental", &bytes)?;
        store.put(&key, &bytes).await?;
        self.saved_heads = heads;
        self.known.insert(key);
        self.incrementals += 1;
        Ok(true)
    }

    /// Whether enough chunks piled up to be worth compacting (when idle).
    pub fn should_compact(&self) -> bool {
        self.incrementals >= COMPACT_AFTER
    }

    /// Whether so many piled up that compaction cannot wait for an idle moment.
    pub fn must_compact(&self) -> bool {
        self.incrementals >= COMPACT_ANYWAY_AFTER
    }

    /// Replaces known chunks by one snapshot: snapshot first, deletes after.
    pub async fn compact<S: Store>(
        &mut self,
        store: &S,
        doc: &mut SpaceDoc,
    ) -> Result<(), PersistError> {
        let heads = doc.heads();
        let snapshot = doc.save();
        let key = chunk_key("snapshot", &snapshot)?;
        store.put(&key, &snapshot).await?;
        let old: Vec<StoreKey> = self.known.iter().filter(|k| **k != key).cloned().collect();
        for k in &old {
            store.delete(k).await?;
        }
        self.known = BTreeSet::from([key]);
        self.incrementals = 0;
        self.saved_heads = heads;
        Ok(())
    }

    /// Number of chunks backing the document.
    pub fn chunk_count(&self) -> usize {
        self.known.len()
    }
}
