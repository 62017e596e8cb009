//! Ferry's pure core: everything that decides *what* happens, with no browser in sight.
//!
//! The app crate wires these pieces to IndexedDB, WebRTC and the UI; the core itself never
//! spawns a task, opens a socket or touches storage (sans-IO). That keeps every rule about
//! merging, ordering, framing and pairing testable with plain `cargo test`, including
//! simulated multi-device networks that run in milliseconds.
//!
//! Two devices, one history:
//!
//! ```
//! use ferry_core::{DeviceId, Replica, Input, Effect, SpaceSecret};
//!
//! let space = SpaceSecret::random(); // shared through a pairing link
//! let mut alice = Replica::new(DeviceId::random(), "Alice's laptop", &space).unwrap();
//! let mut bob = Replica::new(DeviceId::random(), "Bob's phone", &space).unwrap();
//! alice.add_text("hello from the laptop", 1_700_000_000_000).unwrap();
//!
//! // Both see each other; the runtime shuttles `Effect::Send` frames between them.
//! let mut inbox = vec![];
//! for e in alice.handle(Input::PeerUp("bob".into())) { if let Effect::Send { frame, .. } = e { inbox.push(("b", frame)) } }
//! for e in bob.handle(Input::PeerUp("alice".into())) { if let Effect::Send { frame, .. } = e { inbox.push(("a", frame)) } }
//! while !inbox.is_empty() {
//!     let (to, frame) = inbox.remove(0); // in order, like a data channel
//!     let (target, from, back) = if to == "b" { (&mut bob, "alice", "a") } else { (&mut alice, "bob", "b") };
//!     for e in target.handle(Input::Frame { peer: from.into(), frame }) {
//!         if let Effect::Send { frame, .. } = e { inbox.push((back, frame)) }
//!     }
//! }
//! assert_eq!(bob.items()[0].text, "hello from the laptop");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod backup;
pub mod blobs;
pub mod budget;
pub mod device;
pub mod doc;
pub mod history;
pub mod hlc;
pub mod ice;
pub mod ids;
pub mod mailbox;
pub mod note;
pub mod outbox;
pub mod pairing;
pub mod persist;
pub mod replica;
pub mod seal;
pub mod store;
pub mod wire;

#[cfg(feature = "testing")]
pub mod testing;

pub use blobs::{
    BlobEffect, BlobError, BlobId, BlobMessage, CHUNK_SIZE, Have, Manifest, ManifestBuilder,
    TransferConfig, TransferStats, Transfers,
};
pub use doc::{DeviceInfo, DeviceStorage, DocError, FileMeta, Item, ItemKind, SpaceDoc};
pub use history::{History, HistoryPatch};
pub use hlc::{Clock, Hlc};
pub use ice::{IceKind, IceUrlError, check_ice_url};
pub use ids::{DeviceId, IdError, ItemId};
pub use mailbox::{
    BASE_AFTER, MailboxCursor, MailboxError, MailboxKeys, MailboxPayload, MailboxReader,
    ReaderLimits, UploadLog, UploadPlan, base_due, plan_upload, random_msg_id, seal_payload,
};
pub use pairing::{PairingError, PairingLink, RoomId, SpaceSecret};
pub use replica::{
    Effect, Input, MAX_BAD_FRAMES, PeerKey, RejectReason, Replica, ReplicaChanges, ReplicaError,
    Transport,
};
pub use seal::Lane;
pub use store::{MemoryStore, Store, StoreError, StoreKey};
pub use wire::{Message, Reassembler, WireError};
