//! IndexedDB adapter (rexie) for [`Store`]: one object store `kv`, string keys, byte values.
//!
//! Each call is its own transaction, so a write is durable once `put` returns: the runtime
//! awaits it before showing a change as saved. A quota error is reported as
//! [`StoreError::QuotaExceeded`] and the transaction aborts, leaving earlier data intact.

use ferry_core::{Store, StoreError, StoreKey};
use futures::future::join;
use js_sys::Uint8Array;
use rexie::{KeyRange, ObjectStore, Rexie, Transaction, TransactionMode, TransactionResult};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};

const STORE: &str = "kv";

/// A Ferry database in this browser profile. Clones share the connection (file chunk reads
/// and writes run beside the runtime's loop).
#[derive(Clone)]
pub struct IdbStore {
    name: Rc<str>,
    db: Rc<RefCell<Rc<Rexie>>>,
}

async fn connect(name: &str) -> Result<Rexie, StoreError> {
    Rexie::builder(name)
        .version(1)
        .add_object_store(ObjectStore::new(STORE))
        .build()
        .await
        .map_err(err)
}

fn err(e: impl std::fmt::Debug) -> StoreError {
    let text = format!("{e:?}");
    if text.contains("QuotaExceeded") {
        StoreError::QuotaExceeded
    } else {
        StoreError::Unavailable(text.chars().take(300).collect())
    }
}

/// Awaits a write request *and* its transaction's completion in the same poll.
///
/// The completion listener must be attached before the browser can fire `complete`: awaiting
/// the request first and the transaction after races with auto-commit (seen in Chromium: a
/// delete of a missing key completed before the listener existed, and the await hung). A
/// write counts as durable only once the transaction committed; an abort (quota) is an error.
fn finish<T>(
    (request, done): (rexie::Result<T>, rexie::Result<TransactionResult>),
) -> Result<(), StoreError> {
    request.map_err(err)?;
    match done.map_err(err)? {
        TransactionResult::Committed => Ok(()),
        TransactionResult::Aborted => Err(StoreError::Unavailable(
            "the browser aborted the write (storage may be full)".into(),
        )),
    }
}

fn bytes(v: &JsValue) -> Vec<u8> {
    v.dyn_ref::<Uint8Array>()
        .map(Uint8Array::to_vec)
        .unwrap_or_default()
}

impl IdbStore {
    /// Opens (creating if needed) the database `name`.
    pub async fn open(name: &str) -> Result<Self, StoreError> {
        let db = connect(name).await?;
        Ok(IdbStore {
            name: name.into(),
            db: Rc::new(RefCell::new(Rc::new(db))),
        })
    }

    /// Closes the connection (deleting a database waits until every connection is closed);
    /// only the last clone can (chunk I/O in flight holds the others briefly).
    pub fn close(self) {
        if let Ok(cell) = Rc::try_unwrap(self.db)
            && let Ok(db) = Rc::try_unwrap(cell.into_inner())
        {
            db.close();
        }
    }

    /// A transaction on the one object store. Chromium closes a database whose write hit a
    /// full disk ("The database connection is closing"), and every transaction after fails:
    /// then the database is opened again, once per call, so a device that freed space goes
    /// on without a reload.
    async fn tx(&self, mode: TransactionMode) -> Result<Transaction, StoreError> {
        let db = self.db.borrow().clone();
        match db.transaction(&[STORE], mode) {
            Ok(tx) => Ok(tx),
            Err(e) if format!("{e:?}").contains("InvalidStateError") => {
                web_sys::console::warn_1(&"IndexedDB connection closed; opening it again".into());
                let fresh = Rc::new(connect(&self.name).await?);
                *self.db.borrow_mut() = fresh.clone();
                fresh.transaction(&[STORE], mode).map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// One value as the browser holds it (a `Uint8Array`), without copying it into wasm
    /// memory: saving a large file composes a `Blob` from its chunks this way.
    pub async fn get_js(&self, key: &StoreKey) -> Result<Option<JsValue>, StoreError> {
        let tx = self.tx(TransactionMode::ReadOnly).await?;
        let store = tx.store(STORE).map_err(err)?;
        let v = store
            .get(JsValue::from_str(key.as_str()))
            .await
            .map_err(err)?;
        Ok(v.filter(|v| !v.is_undefined()))
    }

    /// Deletes every value under `prefix` in one transaction (a deleted file's chunks).
    pub async fn delete_prefix(&self, prefix: &StoreKey) -> Result<(), StoreError> {
        let tx = self.tx(TransactionMode::ReadWrite).await?;
        let store = tx.store(STORE).map_err(err)?;
        finish(join(store.delete(JsValue::from(range(prefix)?)), tx.done()).await)
    }

    /// Deletes the database `name` (tests).
    pub async fn delete(name: &str) -> Result<(), StoreError> {
        Rexie::delete(name).await.map_err(err)
    }
}

impl Store for IdbStore {
    /// Writes several values in one transaction (file chunks that arrived together): one
    /// commit instead of one each. All or nothing, like `put`.
    async fn put_many(&self, entries: &[(StoreKey, Vec<u8>)]) -> Result<(), StoreError> {
        let tx = self.tx(TransactionMode::ReadWrite).await?;
        let store = tx.store(STORE).map_err(err)?;
        let values: Vec<(JsValue, JsValue)> = entries
            .iter()
            .map(|(k, v)| {
                (
                    Uint8Array::from(v.as_slice()).into(),
                    JsValue::from_str(k.as_str()),
                )
            })
            .collect();
        // Every request is issued on the first poll, with the completion listener beside them.
        let puts = futures::future::join_all(values.iter().map(|(v, k)| store.put(v, Some(k))));
        let (results, done) = join(puts, tx.done()).await;
        for r in results {
            r.map_err(err)?;
        }
        finish((Ok(()), done))
    }

    /// Reads several values in one transaction.
    async fn get_many(&self, keys: &[StoreKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let tx = self.tx(TransactionMode::ReadOnly).await?;
        let store = tx.store(STORE).map_err(err)?;
        let keys: Vec<JsValue> = keys.iter().map(|k| JsValue::from_str(k.as_str())).collect();
        let gets = futures::future::join_all(keys.iter().map(|k| store.get(k.clone())));
        gets.await
            .into_iter()
            .map(|r| {
                r.map_err(err)
                    .map(|v| v.filter(|v| !v.is_undefined()).map(|v| bytes(&v)))
            })
            .collect()
    }

    async fn get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_js(key).await?.map(|v| bytes(&v)))
    }

    async fn put(&self, key: &StoreKey, value: &[u8]) -> Result<(), StoreError> {
        let tx = self.tx(TransactionMode::ReadWrite).await?;
        let store = tx.store(STORE).map_err(err)?;
        let array: JsValue = Uint8Array::from(value).into();
        let key = JsValue::from_str(key.as_str());
        finish(join(store.put(&array, Some(&key)), tx.done()).await)
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let tx = self.tx(TransactionMode::ReadWrite).await?;
        let store = tx.store(STORE).map_err(err)?;
        finish(join(store.delete(JsValue::from_str(key.as_str())), tx.done()).await)
    }

    async fn list(&self, prefix: &StoreKey) -> Result<Vec<(StoreKey, Vec<u8>)>, StoreError> {
        let range = range(prefix)?;
        let tx = self.tx(TransactionMode::ReadOnly).await?;
        let store = tx.store(STORE).map_err(err)?;
        let rows = store
            .scan(Some(range), None, None, None)
            .await
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| Some((StoreKey::from_stored(k.as_string()?), bytes(&v))))
            .collect())
    }

    /// Keys only (`getAllKeys`): a file's have-set without reading its chunks.
    async fn keys(&self, prefix: &StoreKey) -> Result<Vec<StoreKey>, StoreError> {
        let tx = self.tx(TransactionMode::ReadOnly).await?;
        let store = tx.store(STORE).map_err(err)?;
        let keys = store
            .get_all_keys(Some(range(prefix)?), None)
            .await
            .map_err(err)?;
        Ok(keys
            .into_iter()
            .filter_map(|k| Some(StoreKey::from_stored(k.as_string()?)))
            .collect())
    }
}

fn range(prefix: &StoreKey) -> Result<KeyRange, StoreError> {
    let (lo, hi) = prefix.prefix_range();
    KeyRange::bound(&JsValue::from_str(&lo), &JsValue::from_str(&hi), None, None).map_err(err)
}
