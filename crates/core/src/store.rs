//! The storage port: a small async key/value store with prefix listing.
//!
//! IndexedDB (in the app) and [`MemoryStore`] (tests) implement it; one contract suite
//! (`testing::store_contract`) checks both. Keys are `/`-joined segments such as
//! `doc/incremental/<hash>`, so a prefix lists one kind of record. Single-threaded wasm: no
//! `Send` bounds.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

/// A storage failure, worded for the person who will see it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The browser's storage quota is exhausted: nothing was written.
    #[error("storage is full: free some space (or allow Ferry more) and try again")]
    QuotaExceeded,
    /// Storage could not be opened or used (private mode, blocked, broken profile).
    #[error("local storage is unavailable: {0}")]
    Unavailable(String),
    /// A key segment contained a `/` or was empty.
    #[error("invalid storage key segment {0:?}")]
    BadKey(String),
}

/// A storage key: non-empty segments without `/`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreKey(String);

impl StoreKey {
    /// Builds a key from segments.
    pub fn new<S: AsRef<str>>(segments: &[S]) -> Result<Self, StoreError> {
        let mut s = String::new();
        for seg in segments {
            let seg = seg.as_ref();
            if seg.is_empty() || seg.contains('/') {
                return Err(StoreError::BadKey(seg.to_owned()));
            }
            if !s.is_empty() {
                s.push('/');
            }
            s.push_str(seg);
        }
        Ok(StoreKey(s))
    }

    /// Rebuilds a key read back from storage.
    pub fn from_stored(s: String) -> Self {
        StoreKey(s)
    }

    /// The flat form stored on disk.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The inclusive-exclusive range `[self/, self/\u{10ffff})` that holds every key below it.
    pub fn prefix_range(&self) -> (String, String) {
        (format!("{}/", self.0), format!("{}/\u{10ffff}", self.0))
    }

    /// The last segment (e.g. the hash of a chunk key).
    pub fn last(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({})", self.0)
    }
}

/// A key/value store. Writes are atomic per call.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Reads one value.
    async fn get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes one value, replacing any previous one.
    async fn put(&self, key: &StoreKey, value: &[u8]) -> Result<(), StoreError>;
    /// Removes one value (no error if absent).
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError>;
    /// All entries strictly below `prefix`, in key order.
    async fn list(&self, prefix: &StoreKey) -> Result<Vec<(StoreKey, Vec<u8>)>, StoreError>;
    /// Writes several values at once, all or nothing (chunks of a file that arrived together;
    /// one commit instead of one each). Adapters should override this default, which is not
    /// atomic.
    async fn put_many(&self, entries: &[(StoreKey, Vec<u8>)]) -> Result<(), StoreError> {
        for (k, v) in entries {
            self.put(k, v).await?;
        }
        Ok(())
    }
    /// Reads several values at once, in the order asked.
    async fn get_many(&self, keys: &[StoreKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }
    /// The keys strictly below `prefix`, in key order, without their values (e.g. the chunks
    /// of a file already stored). Adapters should override this default, which reads values.
    async fn keys(&self, prefix: &StoreKey) -> Result<Vec<StoreKey>, StoreError> {
        Ok(self
            .list(prefix)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }
}

/// An in-memory store for tests and for running without persistent storage.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    map: std::rc::Rc<RefCell<BTreeMap<String, Vec<u8>>>>,
    quota: Option<usize>,
}

impl MemoryStore {
    /// A store that refuses writes once it would hold more than `bytes` (for quota tests).
    pub fn with_quota(bytes: usize) -> Self {
        MemoryStore {
            quota: Some(bytes),
            ..Default::default()
        }
    }

    /// A second handle on the same data, like a second tab on the same IndexedDB.
    pub fn share(&self) -> Self {
        self.clone()
    }
}

impl Store for MemoryStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.borrow().get(&key.0).cloned())
    }

    async fn put(&self, key: &StoreKey, value: &[u8]) -> Result<(), StoreError> {
        let mut map = self.map.borrow_mut();
        if let Some(quota) = self.quota {
            let used: usize = map
                .iter()
                .filter(|(k, _)| **k != key.0)
                .map(|(k, v)| k.len() + v.len())
                .sum();
            if used + key.0.len() + value.len() > quota {
                return Err(StoreError::QuotaExceeded);
            }
        }
        map.insert(key.0.clone(), value.to_vec());
        Ok(())
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.map.borrow_mut().remove(&key.0);
        Ok(())
    }

    async fn put_many(&self, entries: &[(StoreKey, Vec<u8>)]) -> Result<(), StoreError> {
        let mut map = self.map.borrow_mut();
        if let Some(quota) = self.quota {
            let replaced: std::collections::BTreeSet<&str> =
                entries.iter().map(|(k, _)| k.as_str()).collect();
            let kept: usize = map
                .iter()
                .filter(|(k, _)| !replaced.contains(k.as_str()))
                .map(|(k, v)| k.len() + v.len())
                .sum();
            let mut new: BTreeMap<&str, usize> = BTreeMap::new();
            for (k, v) in entries {
                new.insert(k.as_str(), k.0.len() + v.len());
            }
            if kept + new.values().sum::<usize>() > quota {
                // All or nothing, like one IndexedDB transaction that aborts.
                return Err(StoreError::QuotaExceeded);
            }
        }
        for (k, v) in entries {
            map.insert(k.0.clone(), v.clone());
        }
        Ok(())
    }

    async fn list(&self, prefix: &StoreKey) -> Result<Vec<(StoreKey, Vec<u8>)>, StoreError> {
        let (lo, hi) = prefix.prefix_range();
        Ok(self
            .map
            .borrow()
            .range(lo..hi)
            .map(|(k, v)| (StoreKey(k.clone()), v.clone()))
            .collect())
    }
}
