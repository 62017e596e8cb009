//! This device's own state: who it is, what it has seen, how it connects, and what it
//! believes the mailbox holds. One versioned record (`local/state`, JSON) read and written
//! through the [`Store`] port, instead of the nineteen keys in six encodings of the first
//! version ([`legacy`]), which [`LocalState::load`] migrates once and then removes.
//!
//! JSON because the service worker reads two fields of it (`mailbox.endpoint` and
//! `mailbox.cursor`) to fetch ahead while the app is closed.
//!
//! Sibling tabs share the record. A tab never writes its whole in-memory copy back: it applies
//! its change to the stored record as it is now ([`LocalState::update`]), so a change another
//! tab made to another field survives.
//!
//! The space secret is not in here: it is key material, kept raw in its own record
//! (`space/secret`) and never copied into a string.

use crate::blobs::BlobId;
use crate::ids::DeviceId;
use crate::mailbox::UploadLog;
use crate::store::{Store, StoreError, StoreKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// The layout this build writes. Bump it (and migrate in [`LocalState::decode`]) whenever a
/// field changes meaning; adding a field with a default needs no bump.
pub const LOCAL_STATE_VERSION: u32 = 1;

/// Where the record lives.
pub fn state_key() -> StoreKey {
    StoreKey::from_stored("local/state".into())
}

/// One ICE server, in the shape of the browser's `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(default)]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default)]
    pub credential: Option<String>,
}

/// Where the service worker fetches this space's mailbox ahead of time.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxEndpoint {
    /// The room's mailbox URL.
    pub url: String,
    /// The bearer token (derived from the space secret). Stored, because the service worker
    /// has no other way to it; wiped from memory when dropped and never printed.
    pub token: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for MailboxEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxEndpoint")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// What this device believes one mailbox server holds, and its settings for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MailboxState {
    /// The person turned the mailbox off on this device.
    pub off: bool,
    /// For the service worker; `None` while off or not configured.
    pub endpoint: Option<MailboxEndpoint>,
    /// The saved cursor ([`crate::MailboxCursor::safe`]).
    pub cursor: u64,
    /// [`crate::MailboxCursor::first_unapplied`].
    pub unapplied: Option<u64>,
    /// BLAKE3 of the entry at `cursor`, to notice a server that lost its data.
    #[serde(with = "opt_hex32")]
    pub cursor_hash: Option<[u8; 32]>,
    /// This device's uploads, for delivery.
    pub uploads: UploadLog,
    /// The document heads the mailbox has.
    #[serde(with = "hex32_list")]
    pub heads: Vec<[u8; 32]>,
    /// Files whose bytes this device put in the mailbox.
    #[serde(with = "blob_set")]
    pub files: BTreeSet<BlobId>,
    /// The newest item time this device's uploads carried.
    pub carried: u64,
    /// A digest of the last receipt this device posted (to post a new one only on change).
    pub receipt: u64,
    /// The first version's device tag (keyed by the content key) was unregistered on the
    /// server, so it holds no file chunk back (see `MailboxKeys::legacy_device_tag`).
    pub legacy_tag_removed: bool,
    /// This device's newest upload not read back yet, to notice a server restored from an
    /// earlier copy (added 2026-12-02; absent in older records, which is the same as none).
    pub last_post: Option<super::mailbox::PostedEntry>,
}

impl MailboxState {
    /// Forgets what the server was believed to hold (another space, or a server that lost
    /// its data); the person's on/off choice stays.
    pub fn forget_server(&mut self) {
        *self = MailboxState {
            off: self.off,
            endpoint: self.endpoint.take(),
            ..MailboxState::default()
        };
    }
}

/// This device's state (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// The layout ([`LOCAL_STATE_VERSION`]).
    pub version: u32,
    /// This device.
    pub device: DeviceId,
    /// Its name as the person set it (or as guessed from the browser).
    pub name: String,
    /// The signaling endpoint a pairing link brought (`None`: the one in `config.json`).
    #[serde(default)]
    pub signal: Option<String>,
    /// ICE servers chosen on this device (`None`: the ones in `config.json`).
    #[serde(default)]
    pub ice: Option<Vec<IceServer>>,
    /// When each other device was last in touch (ms).
    #[serde(default)]
    pub seen: BTreeMap<DeviceId, u64>,
    /// Up to when each other device has stored what this one wrote (ms).
    #[serde(default)]
    pub delivered: BTreeMap<DeviceId, u64>,
    /// "Last synced": every other device had everything here at this time (ms).
    #[serde(default)]
    pub last_synced: u64,
    /// Downloads the person stopped on this device.
    #[serde(default, with = "blob_set")]
    pub files_stopped: BTreeSet<BlobId>,
    /// Files this device is storing to send (their items exist, their bytes only partly):
    /// one still here at start, with no tab sending it, was interrupted, and no device can
    /// ever complete it.
    #[serde(default, with = "blob_set")]
    pub sending: BTreeSet<BlobId>,
    /// The mailbox.
    #[serde(default)]
    pub mailbox: MailboxState,
}

/// Why the local state could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LocalStateError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The record is not valid JSON of this shape.
    #[error("this device's settings are damaged: {0}")]
    Damaged(String),
    /// A newer Ferry wrote it: this one must not overwrite what it does not understand.
    #[error(
        "this device's settings were written by a newer version of Ferry (layout {0}); reload to update"
    )]
    Newer(u32),
    /// The first version's device id is not an id.
    #[error("the stored device id is damaged: {0}")]
    BadDeviceId(String),
}

/// How [`LocalState::load`] found the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from the record.
    Stored,
    /// Migrated from the first version's keys (this many were present).
    Migrated(usize),
    /// A new device.
    New,
}

impl LocalState {
    /// A new device's state.
    pub fn new(device: DeviceId, name: String) -> Self {
        LocalState {
            version: LOCAL_STATE_VERSION,
            device,
            name,
            signal: None,
            ice: None,
            seen: BTreeMap::new(),
            delivered: BTreeMap::new(),
            last_synced: 0,
            files_stopped: BTreeSet::new(),
            sending: BTreeSet::new(),
            mailbox: MailboxState::default(),
        }
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, numbers and maps with string keys always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the stored form; refuses a newer layout.
    pub fn decode(bytes: &[u8]) -> Result<Self, LocalStateError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version =
            serde_json::from_slice(bytes).map_err(|e| LocalStateError::Damaged(e.to_string()))?;
        if v.version > LOCAL_STATE_VERSION {
            return Err(LocalStateError::Newer(v.version));
        }
        serde_json::from_slice(bytes).map_err(|e| LocalStateError::Damaged(e.to_string()))
    }

    /// Loads this device's state: the record if there is one, else the first version's keys
    /// (migrated, written as the record, then removed), else a new device (`new_device`
    /// gives its id and name). The record is written before anything is removed, so a tab
    /// killed half-way loses nothing and finishes the clean-up next time.
    pub async fn load<S: Store>(
        store: &S,
        new_device: impl FnOnce() -> (DeviceId, String),
    ) -> Result<(LocalState, Origin), LocalStateError> {
        if let Some(bytes) = store.get(&state_key()).await? {
            let state = Self::decode(&bytes)?;
            legacy::remove(store).await;
            return Ok((state, Origin::Stored));
        }
        let (state, origin) = match legacy::read(store).await? {
            Some((state, found)) => (state, Origin::Migrated(found)),
            None => {
                let (device, name) = new_device();
                (LocalState::new(device, name), Origin::New)
            }
        };
        store.put(&state_key(), &state.encode()).await?;
        if matches!(origin, Origin::Migrated(_)) {
            legacy::remove(store).await;
        }
        Ok((state, origin))
    }

    /// Applies `change` to this copy and to the stored record as it is now (another tab may
    /// have changed other fields), and writes the record.
    pub async fn update<S: Store>(
        &mut self,
        store: &S,
        change: impl Fn(&mut LocalState),
    ) -> Result<(), StoreError> {
        change(self);
        Self::store_change(store, self, change).await
    }

    /// Applies `change` to the stored record as it is now (another tab may have changed other
    /// fields), or to `current` where none is stored or it does not decode, and writes it.
    /// For a [`crate::device::Device`], which changed its own copy already.
    pub async fn store_change<S: Store>(
        store: &S,
        current: &LocalState,
        change: impl Fn(&mut LocalState),
    ) -> Result<(), StoreError> {
        let mut stored = match store.get(&state_key()).await? {
            Some(bytes) => Self::decode(&bytes).unwrap_or_else(|_| current.clone()),
            None => current.clone(),
        };
        change(&mut stored);
        store.put(&state_key(), &stored.encode()).await
    }
}

/// The first version's layout: one key per setting, each in its own encoding.
pub mod legacy {
    use super::*;

    /// Every key the first version wrote for this device's state (the space secret, the
    /// document, sync states, files and the outbox are records of their own and stay).
    pub const KEYS: [&str; 18] = [
        "device/id",
        "device/name",
        "device/seen",
        "device/delivered",
        "settings/signal",
        "settings/ice",
        "settings/last-synced",
        "settings/files-stopped",
        "settings/mailbox-off",
        "settings/mailbox-endpoint",
        "settings/mailbox-cursor",
        "settings/mailbox-unapplied",
        "settings/mailbox-cursor-hash",
        "settings/mailbox-uploads",
        "settings/mailbox-heads",
        "settings/mailbox-files",
        "settings/mailbox-carried",
        "settings/mailbox-receipt",
    ];

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    fn number(b: &[u8]) -> Option<u64> {
        text(b).trim().parse().ok()
    }

    /// `"<device> <ms>"` lines (seen, delivered); bad lines are skipped.
    fn times(b: &[u8]) -> BTreeMap<DeviceId, u64> {
        text(b)
            .lines()
            .filter_map(|l| {
                let (id, ms) = l.split_once(' ')?;
                Some((id.parse().ok()?, ms.parse().ok()?))
            })
            .collect()
    }

    /// File ids, one per line.
    fn roots(b: &[u8]) -> BTreeSet<BlobId> {
        text(b).lines().filter_map(|l| l.parse().ok()).collect()
    }

    /// Reads the first version's keys; `None` when it has no device id (a new device).
    pub async fn read<S: Store>(store: &S) -> Result<Option<(LocalState, usize)>, LocalStateError> {
        let keys: Vec<StoreKey> = KEYS
            .iter()
            .map(|k| StoreKey::from_stored((*k).into()))
            .collect();
        let values = store.get_many(&keys).await?;
        let found = values.iter().filter(|v| v.is_some()).count();
        let v = |name: &str| -> Option<&[u8]> {
            let i = KEYS.iter().position(|k| *k == name)?;
            values.get(i)?.as_deref()
        };
        let Some(id) = v("device/id") else {
            return Ok(None);
        };
        let device = text(id)
            .parse()
            .map_err(|e: crate::ids::IdError| LocalStateError::BadDeviceId(e.to_string()))?;
        let name = v("device/name").map(text).unwrap_or_default();
        let mut state = LocalState::new(device, name);
        state.signal = v("settings/signal").map(text);
        // Damaged ICE settings fall back to `config.json`, as the first version did.
        state.ice = v("settings/ice").and_then(|b| serde_json::from_slice(b).ok());
        state.seen = v("device/seen").map(times).unwrap_or_default();
        state.delivered = v("device/delivered").map(times).unwrap_or_default();
        state.last_synced = v("settings/last-synced").and_then(number).unwrap_or(0);
        state.files_stopped = v("settings/files-stopped").map(roots).unwrap_or_default();
        let m = &mut state.mailbox;
        m.off = v("settings/mailbox-off") == Some(b"1");
        m.endpoint = v("settings/mailbox-endpoint").and_then(|b| serde_json::from_slice(b).ok());
        m.cursor = v("settings/mailbox-cursor").and_then(number).unwrap_or(0);
        m.unapplied = v("settings/mailbox-unapplied").and_then(number);
        m.cursor_hash = v("settings/mailbox-cursor-hash").and_then(|b| b.try_into().ok());
        m.uploads = v("settings/mailbox-uploads")
            .map(|b| UploadLog::decode(&text(b)))
            .unwrap_or_default();
        m.heads = v("settings/mailbox-heads")
            .map(|b| {
                b.chunks_exact(32)
                    .filter_map(|c| c.try_into().ok())
                    .collect()
            })
            .unwrap_or_default();
        m.files = v("settings/mailbox-files").map(roots).unwrap_or_default();
        m.carried = v("settings/mailbox-carried").and_then(number).unwrap_or(0);
        m.receipt = v("settings/mailbox-receipt").and_then(number).unwrap_or(0);
        Ok(Some((state, found)))
    }

    /// Removes the first version's keys (best effort: what is left is removed next time).
    /// One read of all of them at every start; deletes only when some are there.
    pub async fn remove<S: Store>(store: &S) {
        let keys: Vec<StoreKey> = KEYS
            .iter()
            .map(|k| StoreKey::from_stored((*k).into()))
            .collect();
        let Ok(found) = store.get_many(&keys).await else {
            return;
        };
        for (key, value) in keys.iter().zip(found) {
            if value.is_some() {
                let _ = store.delete(key).await;
            }
        }
    }
}

/// `[u8; 32]` lists as hex strings.
mod hex32_list {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|h| crate::ids::to_hex(h)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|h| super::from_hex32(h).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// A `[u8; 32]` as a hex string.
pub(super) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::ids::to_hex(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        super::from_hex32(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An optional `[u8; 32]` as a hex string.
mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(h) => s.serialize_some(&crate::ids::to_hex(h)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<[u8; 32]>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|h| super::from_hex32(&h).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// File ids as their 64 hex digits.
mod blob_set {
    use crate::blobs::BlobId;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeSet;

    pub(super) fn serialize<S: Serializer>(v: &BTreeSet<BlobId>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(ToString::to_string))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeSet<BlobId>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|h| h.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

fn from_hex32(h: &str) -> Result<[u8; 32], String> {
    h.parse::<BlobId>()
        .map(|b| b.0)
        .map_err(|_| format!("not 64 hex digits: {h:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        crate::testing::block_on(f)
    }

    fn key(k: &str) -> StoreKey {
        StoreKey::from_stored(k.into())
    }

    #[test]
    fn a_new_device_gets_a_record_and_reads_it_back() {
        let store = MemoryStore::default();
        let id = DeviceId::from_bytes([1; 16]);
        let (s, origin) = block_on(LocalState::load(&store, || (id, "Pixel".into()))).unwrap();
        assert_eq!(origin, Origin::New);
        assert_eq!((s.device, s.name.as_str()), (id, "Pixel"));
        let (again, origin) =
            block_on(LocalState::load(&store, || unreachable!("not new"))).unwrap();
        assert_eq!((again, origin), (s, Origin::Stored));
    }

    #[test]
    fn a_change_keeps_what_another_tab_changed_meanwhile() {
        let store = MemoryStore::default();
        let (mut a, _) = block_on(LocalState::load(&store, || {
            (DeviceId::random(), "a".into())
        }))
        .unwrap();
        let mut b = a.clone();
        block_on(b.update(&store, |s| s.name = "Work laptop".into())).unwrap();
        block_on(a.update(&store, |s| s.mailbox.cursor = 42)).unwrap();
        let (stored, _) = block_on(LocalState::load(&store, || unreachable!())).unwrap();
        assert_eq!(
            (stored.name.as_str(), stored.mailbox.cursor),
            ("Work laptop", 42)
        );
        assert_eq!(a.mailbox.cursor, 42);
    }

    /// A record written before `mailbox.last_post` existed (the release before 2026-12-02:
    /// the same JSON without that key) loads with every field as it was, and no post to check.
    #[test]
    fn a_record_of_the_previous_release_keeps_every_field() {
        let store = MemoryStore::default();
        let (mut s, _) = block_on(LocalState::load(&store, || {
            (DeviceId::from_bytes([3; 16]), "Bus phone".into())
        }))
        .unwrap();
        s.signal = Some("wss://signal.example".into());
        s.seen.insert(DeviceId::from_bytes([4; 16]), 77);
        s.delivered.insert(DeviceId::from_bytes([4; 16]), 66);
        s.mailbox.cursor = 12;
        s.mailbox.cursor_hash = Some([9; 32]);
        s.mailbox.carried = 55;
        s.mailbox.receipt = 44;
        let mut json: serde_json::Value = serde_json::to_value(&s).unwrap();
        let removed = json["mailbox"].as_object_mut().unwrap().remove("last_post");
        assert_eq!(removed, Some(serde_json::Value::Null), "the only new key");
        block_on(store.put(&state_key(), json.to_string().as_bytes())).unwrap();
        let (loaded, origin) = block_on(LocalState::load(&store, || unreachable!())).unwrap();
        assert_eq!(origin, Origin::Stored);
        assert_eq!(loaded, s);
        assert_eq!(loaded.mailbox.last_post, None);
    }

    #[test]
    fn a_newer_or_damaged_record_is_refused_not_overwritten() {
        let store = MemoryStore::default();
        let newer = br#"{"version":2,"device":"x","name":"n"}"#;
        block_on(store.put(&state_key(), newer)).unwrap();
        let err = block_on(LocalState::load(&store, || unreachable!())).unwrap_err();
        assert_eq!(err, LocalStateError::Newer(2));
        assert_eq!(block_on(store.get(&state_key())).unwrap().unwrap(), newer);
        block_on(store.put(&state_key(), b"{not json")).unwrap();
        assert!(matches!(
            block_on(LocalState::load(&store, || unreachable!())),
            Err(LocalStateError::Damaged(_))
        ));
    }

    #[test]
    fn every_first_version_key_is_migrated_then_removed() {
        let store = MemoryStore::default();
        let me = DeviceId::from_bytes([7; 16]);
        let phone = DeviceId::from_bytes([8; 16]);
        let root = BlobId([5; 32]);
        let put = |k: &str, v: &[u8]| block_on(store.put(&key(k), v)).unwrap();
        put("device/id", me.to_string().as_bytes());
        put("device/name", b"Work laptop");
        put("device/seen", format!("{phone} 1700000000001\n").as_bytes());
        put(
            "device/delivered",
            format!("{phone} 1700000000002\nbad line\n").as_bytes(),
        );
        put("settings/signal", b"wss://signal.example/");
        put(
            "settings/ice",
            br#"[{"urls":["turn:t.example:3478"],"username":"u","credential":"c"}]"#,
        );
        put("settings/last-synced", b"1700000000003");
        put("settings/files-stopped", format!("{root}\n").as_bytes());
        put("settings/mailbox-off", b"1");
        put(
            "settings/mailbox-endpoint",
            br#"{"url":"https://m.example/mailbox/r","token":"t"}"#,
        );
        put("settings/mailbox-cursor", b"17");
        put("settings/mailbox-unapplied", b"9");
        put("settings/mailbox-cursor-hash", &[3; 32]);
        put(
            "settings/mailbox-uploads",
            b"5 1700000000004\n12 1700000000005\n",
        );
        put("settings/mailbox-heads", &[[1u8; 32], [2; 32]].concat());
        put("settings/mailbox-files", format!("{root}\n").as_bytes());
        put("settings/mailbox-carried", b"1700000000005");
        put("settings/mailbox-receipt", b"99");
        put("space/secret", &[4; 32]);
        let (s, origin) = block_on(LocalState::load(&store, || unreachable!())).unwrap();
        assert_eq!(origin, Origin::Migrated(18));
        assert_eq!((s.device, s.name.as_str()), (me, "Work laptop"));
        assert_eq!(s.seen, BTreeMap::from([(phone, 1_700_000_000_001)]));
        assert_eq!(s.delivered, BTreeMap::from([(phone, 1_700_000_000_002)]));
        assert_eq!(s.signal.as_deref(), Some("wss://signal.example/"));
        let ice = s.ice.as_ref().unwrap();
        assert_eq!(ice[0].urls, ["turn:t.example:3478"]);
        assert_eq!(ice[0].credential.as_deref(), Some("c"));
        assert_eq!(s.last_synced, 1_700_000_000_003);
        assert_eq!(s.files_stopped, BTreeSet::from([root]));
        let m = &s.mailbox;
        assert!(m.off);
        assert_eq!(m.endpoint.as_ref().unwrap().token.as_str(), "t");
        // The token is stored as it was (the service worker reads it) but never printed.
        assert!(!format!("{s:?}").contains("\"t\""), "token printed");
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""token":"t""#), "{json}");
        assert_eq!(
            (m.cursor, m.unapplied, m.cursor_hash),
            (17, Some(9), Some([3; 32]))
        );
        assert_eq!(m.uploads.delivered_ms(12), Some(1_700_000_000_005));
        assert_eq!(m.heads, vec![[1; 32], [2; 32]]);
        assert_eq!(m.files, BTreeSet::from([root]));
        assert_eq!((m.carried, m.receipt), (1_700_000_000_005, 99));
        // Written as one record; the old keys are gone, the secret is not.
        for k in legacy::KEYS {
            assert_eq!(block_on(store.get(&key(k))).unwrap(), None, "{k} left");
        }
        assert!(block_on(store.get(&key("space/secret"))).unwrap().is_some());
        let (again, origin) = block_on(LocalState::load(&store, || unreachable!())).unwrap();
        assert_eq!((again, origin), (s, Origin::Stored));
    }

    #[test]
    fn a_damaged_first_version_device_id_is_refused() {
        let store = MemoryStore::default();
        block_on(store.put(&key("device/id"), b"not an id")).unwrap();
        assert!(matches!(
            block_on(LocalState::load(&store, || unreachable!())),
            Err(LocalStateError::BadDeviceId(_))
        ));
        assert_eq!(block_on(store.get(&state_key())).unwrap(), None);
    }
}
