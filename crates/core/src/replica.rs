//! A device's replica of the space and its sans-IO sync sessions, one per connected peer.
//!
//! The runtime feeds [`Input`]s (a peer came or went, a frame arrived) and performs the
//! returned [`Effect`]s (send a frame, persist and re-render after a change). Nothing here
//! waits, sleeps or does I/O, so whole multi-device networks can be simulated in tests.
//!
//! Per connection: both sides send a sealed `Hello` with a fresh challenge; each answers the
//! other's hello with a `Proof` sealed under both challenges, the peer's and its own (see
//! [`crate::seal`]). Only a peer whose proof opened is *authenticated*; only then does
//! automerge sync start. A hello carrying our own challenge, or our own device id from
//! anything but a sibling tab ([`Transport::Tab`]), is an echo of our own frames: refused. Frames that fail to open, replay, or
//! break the protocol are refused and counted; after [`MAX_BAD_FRAMES`] the peer is banned
//! (everything it sends is dropped unread).
//!
//! File transfers ([`BlobMessage`]) travel on a second data channel, the *bulk lane*, so a
//! text never waits behind a file. Only authenticated peers may use it; its frames are sealed
//! like all others but with their own sequence numbers and a lane-specific binding (see
//! [`crate::seal`]), so frames cannot cross from one lane to the other.

use crate::blobs::{BlobError, BlobMessage};
use crate::doc::{DeviceInfo, DocError, FileMeta, Item, ItemKind, SpaceDoc};
use crate::history::{History, HistoryPatch};
use crate::hlc::Clock;
use crate::ids::{DeviceId, ItemId};
use crate::pairing::SpaceSecret;
use crate::seal::{Binding, FrameKey, Lane, SealError};
use crate::wire::{Message, Reassembler, WireError};
use automerge::sync;
use std::collections::BTreeMap;
use thiserror::Error;

/// Which transport a peer is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    /// A WebRTC data channel (another device, or a stranger in the room).
    Rtc,
    /// A sibling tab of this browser (BroadcastChannel). Only such a peer may say hello with
    /// this device's own id: from anywhere else, that hello is an echo of our own frames.
    Tab,
}

/// How a connected peer is named: its transport, and that transport's id for it (a matchbox
/// peer id, a tab id). Typed, so no transport can pass for another by choosing an id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey {
    /// The transport.
    pub transport: Transport,
    /// The transport's id for the peer.
    pub id: String,
}

impl PeerKey {
    /// A peer over WebRTC.
    pub fn rtc(id: impl Into<String>) -> Self {
        PeerKey {
            transport: Transport::Rtc,
            id: id.into(),
        }
    }

    /// A sibling tab.
    pub fn tab(id: impl Into<String>) -> Self {
        PeerKey {
            transport: Transport::Tab,
            id: id.into(),
        }
    }

    /// Whether this is a sibling tab of this browser.
    pub fn is_tab(&self) -> bool {
        self.transport == Transport::Tab
    }
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.transport {
            Transport::Rtc => write!(f, "rtc:{}", self.id),
            Transport::Tab => write!(f, "tab:{}", self.id),
        }
    }
}

/// Tests name peers with plain strings: `"tab:x"` is a sibling tab, anything else WebRTC.
#[cfg(any(test, feature = "testing"))]
impl From<&str> for PeerKey {
    fn from(s: &str) -> Self {
        match s.strip_prefix("tab:") {
            Some(id) => PeerKey::tab(id),
            None => PeerKey::rtc(s),
        }
    }
}

#[cfg(any(test, feature = "testing"))]
impl From<String> for PeerKey {
    fn from(s: String) -> Self {
        PeerKey::from(s.as_str())
    }
}

/// Refused frames after which a peer is banned for the rest of the connection.
pub const MAX_BAD_FRAMES: u32 = 16;

/// Something that happened to the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A peer connected: start a session.
    PeerUp(PeerKey),
    /// A peer disconnected: forget its session (automerge resyncs from heads next time).
    PeerDown(PeerKey),
    /// A packet from a peer.
    Frame {
        /// Sender.
        peer: PeerKey,
        /// Raw packet bytes (untrusted).
        frame: Vec<u8>,
    },
    /// A packet from a peer on the bulk lane (the file data channel).
    BulkFrame {
        /// Sender.
        peer: PeerKey,
        /// Raw packet bytes (untrusted).
        frame: Vec<u8>,
    },
}

/// Something the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send a packet to a peer.
    Send {
        /// Recipient.
        peer: PeerKey,
        /// Packet bytes.
        frame: Vec<u8>,
    },
    /// The document changed: persist it, then show the new state.
    DocChanged,
    /// A peer proved it belongs to the space.
    PeerIdentified {
        /// The transport's name for it.
        peer: PeerKey,
        /// Its device id.
        device: DeviceId,
        /// Its device name.
        name: String,
    },
    /// A frame from a peer was refused (counted for diagnostics; nothing was applied).
    Rejected {
        /// The peer.
        peer: PeerKey,
        /// Why.
        reason: RejectReason,
    },
    /// Store this automerge sync state for a device, to resume from next time (so a reconnect
    /// does not resend what the peer already has).
    SaveSyncState {
        /// The other device.
        device: DeviceId,
        /// `automerge::sync::State::encode` bytes.
        state: Vec<u8>,
    },
    /// A peer sent too many bad frames: everything further from it is dropped unread.
    PeerBanned {
        /// The peer.
        peer: PeerKey,
    },
    /// Send a packet to a peer on the bulk lane (the file data channel).
    SendBulk {
        /// Recipient.
        peer: PeerKey,
        /// Packet bytes.
        frame: Vec<u8>,
    },
    /// Something this device tried to send could not be encoded (a sync message above
    /// [`crate::wire::MAX_MESSAGE`]). Our failure, not the peer's: it is never counted
    /// against the peer.
    SendFailed {
        /// The intended recipient.
        peer: PeerKey,
        /// Why.
        error: WireError,
    },
    /// A file transfer message arrived from an authenticated peer (hand it to
    /// [`crate::blobs::Transfers::on_message`]).
    Blob {
        /// The sender.
        peer: PeerKey,
        /// The message (its size bounds already checked).
        msg: BlobMessage,
    },
}

impl Effect {
    /// The frame, when this is a send on the main lane.
    pub fn main_frame(&self) -> Option<&[u8]> {
        match self {
            Effect::Send { frame, .. } => Some(frame),
            _ => None,
        }
    }
}

/// A local operation failed.
#[derive(Debug, Error)]
pub enum ReplicaError {
    /// The document refused it.
    #[error(transparent)]
    Doc(#[from] DocError),
    /// The frame could not be encoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Empty messages are not items.
    #[error("there is nothing to send")]
    Empty,
    /// The peer is gone, or has not proven it belongs to the space (yet).
    #[error("that device is not connected")]
    NotConnected,
}

/// Why a frame from a peer was refused. Each one counts towards [`MAX_BAD_FRAMES`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// It did not open under the frame key and this connection's binding (forged, replayed,
    /// from another space, or from an outdated device).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// It opened, but its packets or message do not decode.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A file message outside the protocol's bounds.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Automerge refused the sync message.
    #[error("sync message refused: {0}")]
    Sync(String),
    /// A hello after the peer's first.
    #[error("a second hello on one connection")]
    SecondHello,
    /// Our own hello, reflected back.
    #[error("our own hello came back (an echo, not a peer)")]
    OwnHello,
    /// A hello with this device's id from a transport other than a sibling tab.
    #[error("a hello with this device's own id from outside this browser (an echo)")]
    OwnIdFromOutside,
    /// A proof after the peer's first.
    #[error("a second proof on one connection")]
    SecondProof,
    /// A message the handshake does not allow in its current state.
    #[error("unexpected {0} at this point of the handshake")]
    Unexpected(&'static str),
    /// Bulk-lane data from a peer with no connection.
    #[error("file data from a peer that never said hello")]
    BulkWithoutSession,
    /// Bulk-lane data before the peer's proof opened.
    #[error("file data before the peer proved it belongs to the space")]
    BulkBeforeProof,
    /// A non-file message on the bulk lane.
    #[error("only file messages travel on the bulk lane")]
    NotAFileMessage,
}

/// What a peer's hello said about it.
struct Hello {
    device: DeviceId,
    name: String,
    challenge: [u8; 16],
}

/// Where a connection's handshake stands. Frames are accepted by state: a hello only while
/// awaiting one, a proof only while awaiting one, sync and file messages only once
/// authenticated, nothing once banned.
enum Handshake {
    /// Our hello is out; the peer's has not arrived.
    AwaitHello,
    /// The peer's hello arrived and our proof went out; the peer's proof has not opened yet.
    AwaitProof(Hello),
    /// The peer's proof opened under both challenges: it holds the frame key.
    Authenticated(Hello),
    /// Too many bad frames: everything further is dropped unread.
    Banned,
}

/// One data channel's framing: each lane has its own sequence numbers (the channels reorder
/// relative to each other) and its own reassembly.
#[derive(Default)]
struct LaneState {
    reassembler: Reassembler,
    send_seq: u64,
    recv_seq: u64,
}

fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Main => 0,
        Lane::Bulk => 1,
    }
}

struct Session {
    sync: sync::State,
    my_challenge: [u8; 16],
    handshake: Handshake,
    lanes: [LaneState; 2],
    bad: u32,
}

impl Session {
    fn new() -> Self {
        let mut my_challenge = [0u8; 16];
        my_challenge.copy_from_slice(ItemId::random().as_bytes());
        Session {
            sync: sync::State::new(),
            my_challenge,
            handshake: Handshake::AwaitHello,
            lanes: Default::default(),
            bad: 0,
        }
    }

    /// The peer's hello, once it said one (and was not banned since).
    fn hello(&self) -> Option<&Hello> {
        match &self.handshake {
            Handshake::AwaitProof(h) | Handshake::Authenticated(h) => Some(h),
            Handshake::AwaitHello | Handshake::Banned => None,
        }
    }

    /// The authenticated peer's hello.
    fn authenticated(&self) -> Option<&Hello> {
        match &self.handshake {
            Handshake::Authenticated(h) => Some(h),
            _ => None,
        }
    }

    /// The binding frames *from* the peer on `lane` must open under.
    fn inbound(&self, lane: Lane) -> Option<Binding> {
        self.hello().map(|h| Binding {
            sender: *h.device.as_bytes(),
            challenge: self.my_challenge,
            lane,
            sender_challenge: h.challenge,
        })
    }
}

/// One device's view of the space.
pub struct Replica {
    device: DeviceId,
    name: String,
    doc: SpaceDoc,
    clock: Clock,
    key: FrameKey,
    peers: BTreeMap<PeerKey, Session>,
    next_msg: u32,
    /// Sync states saved from earlier connections, by device.
    saved_sync: BTreeMap<DeviceId, Vec<u8>>,
    /// The visible history, patched after every change.
    history: History,
    /// What changed since the runtime last asked ([`Replica::take_changes`]).
    changes: ReplicaChanges,
}

/// What changed since the previous [`Replica::take_changes`]: rows of the history, and
/// whether the device list changed. A view applies these to its rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplicaChanges {
    /// Row changes in the order they happened (an item may appear more than once).
    pub patches: Vec<HistoryPatch>,
    /// Whether any device's record changed.
    pub devices: bool,
}

impl ReplicaChanges {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.patches.is_empty() && !self.devices
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("device", &self.device)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

/// Actor ids are per *replica instance*: the device id plus 8 random bytes. Two tabs of one
/// browser share a device id; were they to share an actor, their concurrent changes would
/// collide on sequence numbers and automerge would reject one side.
fn session_actor(device: DeviceId) -> Vec<u8> {
    let mut actor = device.as_bytes().to_vec();
    actor.extend_from_slice(&ItemId::random().as_bytes()[..8]);
    actor
}

impl Replica {
    /// A replica of a new, empty space document.
    pub fn new(device: DeviceId, name: &str, secret: &SpaceSecret) -> Result<Self, DocError> {
        let doc = SpaceDoc::new(&session_actor(device))?;
        Ok(Self::from_doc(device, name, doc, secret))
    }

    /// The actor id a replica of `device` should load its document with.
    pub fn actor_for(device: DeviceId) -> Vec<u8> {
        session_actor(device)
    }

    /// Wraps a loaded document; frames are sealed with the space's key.
    pub fn from_doc(device: DeviceId, name: &str, doc: SpaceDoc, secret: &SpaceSecret) -> Self {
        let mut clock = Clock::default();
        let history = History::load(&doc);
        if let Some(max) = history.latest() {
            clock.observe(max);
        }
        Replica {
            device,
            name: name.to_owned(),
            doc,
            clock,
            key: FrameKey::derive(secret),
            peers: BTreeMap::new(),
            next_msg: 0,
            saved_sync: BTreeMap::new(),
            history,
            changes: ReplicaChanges::default(),
        }
    }

    /// Sync states stored by earlier [`Effect::SaveSyncState`]s. Undecodable ones are ignored
    /// (a fresh state only costs a longer first exchange).
    pub fn restore_sync_states(&mut self, states: impl IntoIterator<Item = (DeviceId, Vec<u8>)>) {
        self.saved_sync.extend(states);
    }

    /// Moves this replica to another space (after "Join"): new key, no sessions. The document
    /// is kept, so everything on this device merges into the joined space.
    pub fn set_secret(&mut self, secret: &SpaceSecret) {
        self.key = FrameKey::derive(secret);
        self.peers.clear();
        self.saved_sync.clear();
    }

    /// Renames this device (recorded in the space document; sent in later hellos).
    pub fn rename(&mut self, name: &str, now_ms: u64) -> Result<Vec<Effect>, ReplicaError> {
        let name: String = name.trim().chars().take(60).collect();
        if name.is_empty() {
            return Err(ReplicaError::Empty);
        }
        self.name = name;
        self.register_self(now_ms)
    }

    /// This device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// Whether the document has ever had this item (visible or deleted): it stored the
    /// item's change.
    pub fn knows_item(&self, id: ItemId) -> bool {
        self.doc.knows(id)
    }

    /// What each device last said about its browser storage.
    pub fn device_storage(&self) -> std::collections::BTreeMap<DeviceId, crate::DeviceStorage> {
        self.doc.device_storage()
    }

    /// The document (for persistence).
    pub fn doc_mut(&mut self) -> &mut SpaceDoc {
        &mut self.doc
    }

    /// Items in display order (a copy; [`Self::history`] borrows them).
    pub fn items(&self) -> Vec<Item> {
        self.history.items().cloned().collect()
    }

    /// The visible history, kept up to date without re-reading the document.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Devices of the space.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.doc.devices()
    }

    /// Whether `peer` proved it belongs to the space on its current connection (only then may
    /// file messages go to it).
    pub fn is_authenticated(&self, peer: &PeerKey) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|s| s.authenticated().is_some())
    }

    /// Sends a file transfer message on the bulk lane; refused unless the peer is
    /// authenticated.
    pub fn send_blob(
        &mut self,
        peer: &PeerKey,
        msg: &BlobMessage,
    ) -> Result<Vec<Effect>, ReplicaError> {
        if !self.is_authenticated(peer) {
            return Err(ReplicaError::NotConnected);
        }
        let mut out = vec![];
        self.send(peer, &Message::Blob(msg.clone()), &mut out)?;
        Ok(out)
    }

    /// Authenticated peers.
    pub fn peer_count(&self) -> usize {
        self.peers
            .values()
            .filter(|s| s.authenticated().is_some())
            .count()
    }

    /// Whether another device (not a sibling tab of this one) is known to have everything this
    /// replica has: its last reported heads equal ours.
    pub fn synced_with_remote(&mut self) -> bool {
        !self.synced_devices().is_empty()
    }

    /// The other devices connected right now that have everything this replica has (their
    /// last announced heads equal ours): what each item's delivery state is computed from.
    pub fn synced_devices(&mut self) -> Vec<DeviceId> {
        let heads = self.doc.heads();
        let me = self.device;
        let mut out: Vec<DeviceId> = self
            .peers
            .values()
            .filter_map(|s| {
                let d = s.authenticated().map(|h| h.device).filter(|d| *d != me)?;
                let mut h = s.sync.their_heads.clone()?;
                h.sort();
                (h == heads).then_some(d)
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The latest wall time (ms) of any timestamp issued or seen: items at or before it are
    /// covered by a sync that happened after it.
    pub fn latest_ms(&self) -> u64 {
        self.clock.latest().map_or(0, |h| h.wall_ms)
    }

    /// Records this device in the space document (idempotent).
    pub fn register_self(&mut self, now_ms: u64) -> Result<Vec<Effect>, ReplicaError> {
        if self
            .doc
            .devices()
            .iter()
            .any(|d| d.id == self.device && d.name == self.name)
        {
            return Ok(vec![]);
        }
        self.doc.set_device(&DeviceInfo {
            id: self.device,
            name: self.name.clone(),
            added_at: now_ms,
        })?;
        self.after_local_change()
    }

    /// Writes a text item at physical time `now_ms`.
    pub fn add_text(
        &mut self,
        text: &str,
        now_ms: u64,
    ) -> Result<(Item, Vec<Effect>), ReplicaError> {
        self.add_text_kind(text, now_ms, ItemKind::Text)
    }

    fn add_text_kind(
        &mut self,
        text: &str,
        now_ms: u64,
        kind: ItemKind,
    ) -> Result<(Item, Vec<Effect>), ReplicaError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ReplicaError::Empty);
        }
        let at = self.clock.tick(now_ms);
        let id = ItemId::random();
        let item = if kind == ItemKind::Task {
            self.doc.add_task(id, text, self.device, at)?
        } else {
            self.doc.add_text(id, text, self.device, at)?
        };
        Ok((item, self.after_local_change()?))
    }

    /// Writes a file item at physical time `now_ms` (its chunks are already stored here).
    pub fn add_file(
        &mut self,
        meta: &FileMeta,
        now_ms: u64,
    ) -> Result<(Item, Vec<Effect>), ReplicaError> {
        let at = self.clock.tick(now_ms);
        let item = self.doc.add_file(ItemId::random(), meta, self.device, at)?;
        Ok((item, self.after_local_change()?))
    }

    /// Replaces the text of an item.
    pub fn edit_text(
        &mut self,
        id: ItemId,
        text: &str,
        now_ms: u64,
    ) -> Result<Vec<Effect>, ReplicaError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ReplicaError::Empty);
        }
        let at = self.clock.tick(now_ms);
        self.doc.edit_text(id, text, at)?;
        self.after_local_change()
    }

    /// Writes a task (unchecked).
    pub fn add_task(
        &mut self,
        text: &str,
        now_ms: u64,
    ) -> Result<(Item, Vec<Effect>), ReplicaError> {
        self.add_text_kind(text, now_ms, ItemKind::Task)
    }

    /// Tells the space what this device's browser storage is like: written when "kept"
    /// changed, when the usage moved by a quarter (at most hourly), or once a day, so the
    /// history does not grow with every byte stored.
    pub fn publish_storage(
        &mut self,
        kept: bool,
        used: u64,
        now_ms: u64,
    ) -> Result<Vec<Effect>, ReplicaError> {
        if !self.doc.devices().iter().any(|d| d.id == self.device) {
            return Ok(vec![]);
        }
        let last = self.doc.device_storage().get(&self.device).copied();
        let due = match last {
            None => true,
            Some(l) => {
                let since = now_ms.saturating_sub(l.at);
                l.kept != kept
                    || (used.abs_diff(l.used) > l.used / 4 && since > 3_600_000)
                    || since > 86_400_000
            }
        };
        if !due {
            return Ok(vec![]);
        }
        let s = crate::doc::DeviceStorage {
            kept,
            used,
            at: now_ms,
        };
        self.doc.set_device_storage(self.device, s)?;
        self.after_local_change()
    }

    /// Writes a note under `id` (chosen by the editor, which names it in the edits that
    /// follow while it stays open). A note needs a title or a body.
    pub fn add_note(
        &mut self,
        id: ItemId,
        title: &str,
        body: &str,
        now_ms: u64,
    ) -> Result<(Item, Vec<Effect>), ReplicaError> {
        if title.trim().is_empty() && body.trim().is_empty() {
            return Err(ReplicaError::Empty);
        }
        if self.doc.knows(id) {
            return Err(ReplicaError::Doc(DocError::NotANote));
        }
        let at = self.clock.tick(now_ms);
        let item = self.doc.add_note(id, title, body, self.device, at)?;
        Ok((item, self.after_local_change()?))
    }

    /// Edits a note's title and body: `base` is the body the edit was made on (see
    /// [`SpaceDoc::edit_note`]). Nothing is written when nothing changed.
    pub fn edit_note(
        &mut self,
        id: ItemId,
        title: &str,
        base: &str,
        body: &str,
        now_ms: u64,
    ) -> Result<Vec<Effect>, ReplicaError> {
        let at = self.clock.tick(now_ms);
        if !self.doc.edit_note(id, title, base, body, at)? {
            return Ok(vec![]);
        }
        self.after_local_change()
    }

    /// Checks or unchecks a task, on every device.
    pub fn set_done(
        &mut self,
        id: ItemId,
        done: bool,
        now_ms: u64,
    ) -> Result<Vec<Effect>, ReplicaError> {
        let at = self.clock.tick(now_ms);
        self.doc.set_done(id, done, at)?;
        self.after_local_change()
    }

    /// Pins an item above the history (or unpins it), on every device.
    pub fn set_pinned(
        &mut self,
        id: ItemId,
        pinned: bool,
        now_ms: u64,
    ) -> Result<Vec<Effect>, ReplicaError> {
        let at = self.clock.tick(now_ms);
        self.doc.set_pinned(id, pinned, at)?;
        self.after_local_change()
    }

    /// Deletes an item everywhere (a tombstone that syncs).
    pub fn delete_item(&mut self, id: ItemId, now_ms: u64) -> Result<Vec<Effect>, ReplicaError> {
        let at = self.clock.tick(now_ms);
        self.doc.delete(id, at)?;
        self.after_local_change()
    }

    /// Merges changes that came through the mailbox: on a change, the app persists and
    /// re-renders ([`Effect::DocChanged`]) and connected peers are offered them right away.
    pub fn apply_mailbox_changes(&mut self, bytes: &[u8]) -> Result<Vec<Effect>, ReplicaError> {
        if !self.doc.apply_changes(bytes)? {
            return Ok(vec![]);
        }
        self.after_local_change()
    }

    /// Items and devices changed since the previous call, for a view that patches its rows
    /// ([`Effect::DocChanged`] says when to ask). Cost follows the change, not the history.
    pub fn take_changes(&mut self) -> ReplicaChanges {
        self.note_changes();
        std::mem::take(&mut self.changes)
    }

    /// Moves the document's change log into `changes`, and lets the clock see the newest
    /// timestamp among the changed items (so a later local write sorts after them) without
    /// reading the whole history.
    fn note_changes(&mut self) {
        let changes = self.doc.take_changes();
        let patches = self.history.apply(&self.doc, &changes);
        let newest = changes
            .items
            .iter()
            .filter_map(|id| self.history.get(*id))
            .flat_map(|i| [Some(i.at), i.edited_at])
            .flatten()
            .max();
        if let Some(max) = newest {
            self.clock.observe(max);
        }
        self.changes.patches.extend(patches);
        self.changes.devices |= changes.devices;
    }

    fn after_local_change(&mut self) -> Result<Vec<Effect>, ReplicaError> {
        self.note_changes();
        let mut effects = vec![Effect::DocChanged];
        let peers: Vec<PeerKey> = self.peers.keys().cloned().collect();
        for peer in peers {
            self.sync_to(&peer, &mut effects);
        }
        Ok(effects)
    }

    /// Seals and queues a message. Hellos are bound to nothing; everything else to the
    /// peer's challenge (so it can only go out after the peer's hello arrived).
    fn send(
        &mut self,
        peer: &PeerKey,
        msg: &Message,
        out: &mut Vec<Effect>,
    ) -> Result<(), WireError> {
        let Some(session) = self.peers.get_mut(peer) else {
            return Ok(());
        };
        let lane = match msg {
            Message::Blob(_) => Lane::Bulk,
            _ => Lane::Main,
        };
        let binding = match (msg, session.hello()) {
            (Message::Hello { .. }, _) => Binding::HELLO,
            (_, Some(hello)) => Binding {
                sender: *self.device.as_bytes(),
                challenge: hello.challenge,
                lane,
                sender_challenge: session.my_challenge,
            },
            (_, None) => return Ok(()),
        };
        self.next_msg = self.next_msg.wrapping_add(1);
        let state = &mut session.lanes[lane_index(lane)];
        for packet in msg.to_packets(self.next_msg)? {
            state.send_seq += 1;
            let frame = self.key.seal(state.send_seq, &binding, &packet);
            let peer = peer.to_owned();
            out.push(match lane {
                Lane::Main => Effect::Send { peer, frame },
                Lane::Bulk => Effect::SendBulk { peer, frame },
            });
        }
        Ok(())
    }

    fn sync_to(&mut self, peer: &PeerKey, out: &mut Vec<Effect>) {
        let Some(session) = self.peers.get_mut(peer) else {
            return;
        };
        if session.authenticated().is_none() {
            return;
        }
        if let Some(bytes) = self.doc.generate_sync_message(&mut session.sync) {
            self.send_or_report(peer, &Message::Sync(bytes), out);
        }
    }

    /// Sends, reporting an encoding failure as ours ([`Effect::SendFailed`]).
    fn send_or_report(&mut self, peer: &PeerKey, msg: &Message, out: &mut Vec<Effect>) {
        if let Err(error) = self.send(peer, msg, out) {
            out.push(Effect::SendFailed {
                peer: peer.clone(),
                error,
            });
        }
    }

    fn start_session(&mut self, peer: &PeerKey, out: &mut Vec<Effect>) {
        let session = Session::new();
        let hello = Message::Hello {
            device: *self.device.as_bytes(),
            name: self.name.clone(),
            challenge: session.my_challenge,
        };
        self.peers.insert(peer.clone(), session);
        self.send_or_report(peer, &hello, out);
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::PeerUp(peer) => self.start_session(&peer, &mut out),
            Input::PeerDown(peer) => {
                if let Some(session) = self.peers.remove(&peer)
                    && let Some(device) = session.authenticated().map(|h| h.device)
                    && device != self.device
                {
                    let state = session.sync.encode();
                    self.saved_sync.insert(device, state.clone());
                    out.push(Effect::SaveSyncState { device, state });
                }
            }
            Input::Frame { peer, frame } => {
                if !self.peers.contains_key(&peer) {
                    self.start_session(&peer, &mut out);
                }
                if let Err(reason) = self.on_frame(&peer, &frame, &mut out) {
                    self.refuse(&peer, reason, &mut out);
                }
            }
            Input::BulkFrame { peer, frame } => {
                if !self.peers.contains_key(&peer) {
                    // No connection to count against: refuse without starting one.
                    out.push(Effect::Rejected {
                        peer,
                        reason: RejectReason::BulkWithoutSession,
                    });
                } else if let Err(reason) = self.on_bulk_frame(&peer, &frame, &mut out) {
                    self.refuse(&peer, reason, &mut out);
                }
            }
        }
        out
    }

    fn on_bulk_frame(
        &mut self,
        peer: &PeerKey,
        frame: &[u8],
        out: &mut Vec<Effect>,
    ) -> Result<(), RejectReason> {
        let Some(session) = self.peers.get_mut(peer) else {
            return Ok(());
        };
        let binding = match &session.handshake {
            Handshake::Banned => return Ok(()),
            Handshake::Authenticated(_) => session.inbound(Lane::Bulk),
            Handshake::AwaitHello | Handshake::AwaitProof(_) => None,
        };
        let Some(binding) = binding else {
            return Err(RejectReason::BulkBeforeProof);
        };
        let state = &mut session.lanes[lane_index(Lane::Bulk)];
        let (seq, packet) = self.key.open(frame, &binding, state.recv_seq)?;
        state.recv_seq = seq;
        match state.reassembler.push(&packet)? {
            None => Ok(()),
            Some(Message::Blob(msg)) => {
                msg.validate()?;
                out.push(Effect::Blob {
                    peer: peer.clone(),
                    msg,
                });
                Ok(())
            }
            Some(_) => Err(RejectReason::NotAFileMessage),
        }
    }

    fn refuse(&mut self, peer: &PeerKey, reason: RejectReason, out: &mut Vec<Effect>) {
        let Some(session) = self.peers.get_mut(peer) else {
            return;
        };
        session.bad += 1;
        out.push(Effect::Rejected {
            peer: peer.clone(),
            reason,
        });
        if session.bad >= MAX_BAD_FRAMES && !matches!(session.handshake, Handshake::Banned) {
            session.handshake = Handshake::Banned;
            out.push(Effect::PeerBanned { peer: peer.clone() });
        }
    }

    fn on_frame(
        &mut self,
        peer: &PeerKey,
        frame: &[u8],
        out: &mut Vec<Effect>,
    ) -> Result<(), RejectReason> {
        let Some(session) = self.peers.get_mut(peer) else {
            return Ok(());
        };
        if matches!(session.handshake, Handshake::Banned) {
            return Ok(());
        }
        // Frames bound to both challenges, from the device that said hello; else a hello.
        let recv_seq = session.lanes[lane_index(Lane::Main)].recv_seq;
        let opened = session
            .inbound(Lane::Main)
            .and_then(|b| self.key.open(frame, &b, recv_seq).ok())
            .map(|(seq, p)| (seq, p, false));
        let (seq, packet, is_hello_binding) = match opened {
            Some(o) => o,
            None => {
                let (seq, p) = self.key.open(frame, &Binding::HELLO, recv_seq)?;
                (seq, p, true)
            }
        };
        let lane = &mut session.lanes[lane_index(Lane::Main)];
        lane.recv_seq = seq;
        let Some(msg) = lane.reassembler.push(&packet)? else {
            return Ok(());
        };
        match (msg, is_hello_binding) {
            (
                Message::Hello {
                    device,
                    name,
                    challenge,
                },
                true,
            ) => {
                if !matches!(session.handshake, Handshake::AwaitHello) {
                    return Err(RejectReason::SecondHello);
                }
                // Our own hello coming back: whoever sends it cannot answer our challenge, but
                // our own proof, reflected, would look like theirs.
                if challenge == session.my_challenge {
                    return Err(RejectReason::OwnHello);
                }
                if device == *self.device.as_bytes() && !peer.is_tab() {
                    return Err(RejectReason::OwnIdFromOutside);
                }
                session.handshake = Handshake::AwaitProof(Hello {
                    device: DeviceId::from_bytes(device),
                    name: name.chars().take(100).collect(),
                    challenge,
                });
                self.send_or_report(peer, &Message::Proof, out);
            }
            (Message::Proof, false) => {
                let hello = match std::mem::replace(&mut session.handshake, Handshake::AwaitHello) {
                    Handshake::AwaitProof(hello) => hello,
                    other => {
                        session.handshake = other;
                        return Err(RejectReason::SecondProof);
                    }
                };
                if hello.device != self.device
                    && let Some(saved) = self.saved_sync.get(&hello.device)
                    && let Ok(state) = sync::State::decode(saved)
                {
                    session.sync = state;
                }
                out.push(Effect::PeerIdentified {
                    peer: peer.clone(),
                    device: hello.device,
                    name: hello.name.clone(),
                });
                session.handshake = Handshake::Authenticated(hello);
                self.sync_to(peer, out);
            }
            (Message::Sync(bytes), false) if session.authenticated().is_some() => {
                let before = self.doc.heads();
                self.doc
                    .receive_sync_message(&mut session.sync, &bytes)
                    .map_err(|e| RejectReason::Sync(e.to_string()))?;
                let changed = self.doc.heads() != before;
                if changed {
                    out.push(Effect::DocChanged);
                    self.note_changes();
                }
                // Reply to the sender; after a change, also tell everyone else.
                let targets: Vec<PeerKey> = if changed {
                    self.peers.keys().cloned().collect()
                } else {
                    vec![peer.clone()]
                };
                for p in targets {
                    self.sync_to(&p, out);
                }
            }
            (msg, _) => {
                return Err(RejectReason::Unexpected(match msg {
                    Message::Hello { .. } => "hello",
                    Message::Proof => "proof",
                    Message::Sync(_) => "sync message",
                    Message::Blob(_) => "file message on the main lane",
                }));
            }
        }
        Ok(())
    }

    /// Current heads of the document (equal heads = equal documents).
    pub fn heads(&mut self) -> Vec<automerge::ChangeHash> {
        self.doc.heads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::BlobId;

    fn frames(effects: &[Effect], bulk: bool) -> Vec<Vec<u8>> {
        effects
            .iter()
            .filter_map(|e| match (e, bulk) {
                (Effect::Send { frame, .. }, false) | (Effect::SendBulk { frame, .. }, true) => {
                    Some(frame.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn rejected(effects: &[Effect]) -> usize {
        effects
            .iter()
            .filter(|e| matches!(e, Effect::Rejected { .. }))
            .count()
    }

    /// Connects `a` ("a") and `b` ("b"), delivering main-lane frames until quiet.
    fn connect(a: &mut Replica, b: &mut Replica) {
        let mut to_b = frames(&a.handle(Input::PeerUp("b".into())), false);
        let mut to_a = frames(&b.handle(Input::PeerUp("a".into())), false);
        while !to_a.is_empty() || !to_b.is_empty() {
            let mut next_a = vec![];
            for frame in to_b.drain(..) {
                let peer = "a".into();
                next_a.extend(frames(&b.handle(Input::Frame { peer, frame }), false));
            }
            let mut next_b = vec![];
            for frame in to_a.drain(..) {
                let peer = "b".into();
                next_b.extend(frames(&a.handle(Input::Frame { peer, frame }), false));
            }
            to_a = next_a;
            to_b = next_b;
        }
    }

    fn pair() -> (Replica, Replica) {
        let space = SpaceSecret::random();
        let a = Replica::new(DeviceId::random(), "a", &space).unwrap();
        let b = Replica::new(DeviceId::random(), "b", &space).unwrap();
        (a, b)
    }

    fn query() -> BlobMessage {
        BlobMessage::Query {
            roots: vec![BlobId([3; 32])],
        }
    }

    fn identified(effects: &[Effect]) -> bool {
        effects
            .iter()
            .any(|e| matches!(e, Effect::PeerIdentified { .. }))
    }

    /// A peer under `key` that sends `a` back exactly what `a` sent it, until `a` is quiet.
    /// Returns whether `a` ever identified it.
    fn mirror(a: &mut Replica, key: &str) -> bool {
        let mut seen = false;
        let mut bounce = frames(&a.handle(Input::PeerUp(key.into())), false);
        for _ in 0..50 {
            let mut next = vec![];
            for frame in bounce.drain(..) {
                let eff = a.handle(Input::Frame {
                    peer: key.into(),
                    frame,
                });
                seen |= identified(&eff);
                next.extend(frames(&eff, false));
            }
            if next.is_empty() {
                break;
            }
            bounce = next;
        }
        seen || a.is_authenticated(&key.into())
    }

    #[test]
    fn an_echo_of_our_own_frames_never_authenticates() {
        let (mut a, _) = pair();
        assert!(!mirror(&mut a, "stranger"));
    }

    #[test]
    fn an_echo_under_a_tab_key_never_authenticates_either() {
        // Tabs may share our device id, so only the challenges catch this echo.
        let (mut a, _) = pair();
        assert!(!mirror(&mut a, "tab:mirror"));
    }

    #[test]
    fn an_echo_across_two_connections_never_authenticates() {
        // The mirror holds two connections to `a` and feeds each one the other's frames: the
        // challenges differ, so only the device id check stops it.
        let (mut a, _) = pair();
        let mut to_1 = frames(&a.handle(Input::PeerUp("m2".into())), false);
        let mut to_2 = frames(&a.handle(Input::PeerUp("m1".into())), false);
        for _ in 0..20 {
            let (mut n1, mut n2) = (vec![], vec![]);
            for frame in to_1.drain(..) {
                let eff = a.handle(Input::Frame {
                    peer: "m1".into(),
                    frame,
                });
                assert!(!identified(&eff));
                n2.extend(frames(&eff, false));
            }
            for frame in to_2.drain(..) {
                let eff = a.handle(Input::Frame {
                    peer: "m2".into(),
                    frame,
                });
                assert!(!identified(&eff));
                n1.extend(frames(&eff, false));
            }
            (to_1, to_2) = (n1, n2);
        }
        assert!(!a.is_authenticated(&"m1".into()) && !a.is_authenticated(&"m2".into()));
    }

    #[test]
    fn sibling_tabs_of_one_device_still_authenticate() {
        let space = SpaceSecret::random();
        let device = DeviceId::random();
        let mut a = Replica::new(device, "tab one", &space).unwrap();
        let mut b = Replica::new(device, "tab two", &space).unwrap();
        a.add_text("from tab one", 1).unwrap();
        let mut to_b = frames(&a.handle(Input::PeerUp("tab:b".into())), false);
        let mut to_a = frames(&b.handle(Input::PeerUp("tab:a".into())), false);
        while !to_a.is_empty() || !to_b.is_empty() {
            let mut next_a = vec![];
            for frame in to_b.drain(..) {
                let peer = "tab:a".into();
                next_a.extend(frames(&b.handle(Input::Frame { peer, frame }), false));
            }
            let mut next_b = vec![];
            for frame in to_a.drain(..) {
                let peer = "tab:b".into();
                next_b.extend(frames(&a.handle(Input::Frame { peer, frame }), false));
            }
            to_a = next_a;
            to_b = next_b;
        }
        assert!(a.is_authenticated(&"tab:b".into()) && b.is_authenticated(&"tab:a".into()));
        assert_eq!(b.items()[0].text, "from tab one");
    }

    #[test]
    fn a_device_with_our_id_outside_this_browser_is_refused() {
        let space = SpaceSecret::random();
        let device = DeviceId::random();
        let mut a = Replica::new(device, "a", &space).unwrap();
        let mut b = Replica::new(device, "clone", &space).unwrap();
        connect(&mut a, &mut b);
        assert!(!a.is_authenticated(&"b".into()) && !b.is_authenticated(&"a".into()));
    }

    #[test]
    fn a_proof_answers_only_the_hello_it_came_with() {
        // A relay gives `a` bob's hello of one connection and bob's proof of another, both
        // answering `a`'s challenge: the proof must not vouch for the other hello.
        let (mut a, mut b) = pair();
        let hello_a = frames(&a.handle(Input::PeerUp("b".into())), false);
        let _hello_b1 = frames(&b.handle(Input::PeerUp("a1".into())), false);
        let hello_b2 = frames(&b.handle(Input::PeerUp("a2".into())), false);
        let proof_b1 = frames(
            &b.handle(Input::Frame {
                peer: "a1".into(),
                frame: hello_a[0].clone(),
            }),
            false,
        );
        a.handle(Input::Frame {
            peer: "b".into(),
            frame: hello_b2[0].clone(),
        });
        for frame in proof_b1 {
            let eff = a.handle(Input::Frame {
                peer: "b".into(),
                frame,
            });
            assert!(!identified(&eff));
        }
        assert!(!a.is_authenticated(&"b".into()));
    }

    #[test]
    fn blob_messages_travel_on_the_bulk_lane_only() {
        let (mut a, mut b) = pair();
        connect(&mut a, &mut b);
        assert!(a.is_authenticated(&"b".into()) && b.is_authenticated(&"a".into()));
        let sent = a.send_blob(&"b".into(), &query()).unwrap();
        assert!(frames(&sent, false).is_empty(), "nothing on the main lane");
        let bulk = frames(&sent, true);
        assert_eq!(bulk.len(), 1);

        // A bulk frame fed as a main-lane frame does not open.
        let eff = b.handle(Input::Frame {
            peer: "a".into(),
            frame: bulk[0].clone(),
        });
        assert_eq!(rejected(&eff), 1);
        // On its own lane it does, even though main-lane seqs are far ahead of it.
        let eff = b.handle(Input::BulkFrame {
            peer: "a".into(),
            frame: bulk[0].clone(),
        });
        assert_eq!(
            eff,
            vec![Effect::Blob {
                peer: "a".into(),
                msg: query()
            }]
        );
        // Replayed on the bulk lane: refused.
        let eff = b.handle(Input::BulkFrame {
            peer: "a".into(),
            frame: bulk[0].clone(),
        });
        assert_eq!(rejected(&eff), 1);

        // A main-lane frame fed as a bulk frame does not open either.
        let (_, eff) = a.add_text("hi", 5).unwrap();
        let main = frames(&eff, false);
        assert!(!main.is_empty());
        let eff = b.handle(Input::BulkFrame {
            peer: "a".into(),
            frame: main[0].clone(),
        });
        assert_eq!(rejected(&eff), 1);
        let eff = b.handle(Input::Frame {
            peer: "a".into(),
            frame: main[0].clone(),
        });
        assert_eq!(rejected(&eff), 0);
        assert!(eff.contains(&Effect::DocChanged));
    }

    #[test]
    fn unauthenticated_peers_neither_send_nor_receive_blob_messages() {
        let (mut a, mut b) = pair();
        assert!(matches!(
            a.send_blob(&"b".into(), &query()),
            Err(ReplicaError::NotConnected)
        ));
        // Only hellos exchanged: no one is authenticated yet.
        let hello_a = frames(&a.handle(Input::PeerUp("b".into())), false);
        let hello_b = frames(&b.handle(Input::PeerUp("a".into())), false);
        assert!(matches!(
            a.send_blob(&"b".into(), &query()),
            Err(ReplicaError::NotConnected)
        ));
        // b answers a's hello with its proof; a authenticates b, b has not seen a's proof.
        let proof_b = frames(
            &b.handle(Input::Frame {
                peer: "a".into(),
                frame: hello_a[0].clone(),
            }),
            false,
        );
        a.handle(Input::Frame {
            peer: "b".into(),
            frame: hello_b[0].clone(),
        });
        for frame in proof_b {
            a.handle(Input::Frame {
                peer: "b".into(),
                frame,
            });
        }
        assert!(a.is_authenticated(&"b".into()) && !b.is_authenticated(&"a".into()));
        let bulk = frames(&a.send_blob(&"b".into(), &query()).unwrap(), true);
        let eff = b.handle(Input::BulkFrame {
            peer: "a".into(),
            frame: bulk[0].clone(),
        });
        assert_eq!(rejected(&eff), 1);
        assert!(!eff.iter().any(|e| matches!(e, Effect::Blob { .. })));
        // A bulk frame from a peer with no connection at all is refused too.
        let eff = b.handle(Input::BulkFrame {
            peer: "zed".into(),
            frame: bulk[0].clone(),
        });
        assert_eq!(rejected(&eff), 1);
        assert!(!b.is_authenticated(&"zed".into()));
    }

    #[test]
    fn bad_bulk_frames_count_towards_a_ban() {
        let (mut a, mut b) = pair();
        connect(&mut a, &mut b);
        let mut banned = false;
        for i in 0..MAX_BAD_FRAMES {
            let eff = b.handle(Input::BulkFrame {
                peer: "a".into(),
                frame: vec![i as u8; 80],
            });
            banned |= eff.contains(&Effect::PeerBanned { peer: "a".into() });
        }
        assert!(banned && !b.is_authenticated(&"a".into()));
        assert!(matches!(
            b.send_blob(&"a".into(), &query()),
            Err(ReplicaError::NotConnected)
        ));
    }

    #[test]
    fn a_file_item_syncs_like_a_text() {
        let (mut a, mut b) = pair();
        let meta = FileMeta {
            root: BlobId([9; 32]),
            name: "notes.pdf".into(),
            size: 1234,
            mime: "application/pdf".into(),
        };
        let (item, eff) = a.add_file(&meta, 10).unwrap();
        assert!(eff.contains(&Effect::DocChanged));
        connect(&mut a, &mut b);
        assert_eq!(b.items(), vec![item]);
        assert_eq!(b.items()[0].file.as_ref(), Some(&meta));
    }

    #[test]
    fn changes_through_sync_name_the_changed_items_and_move_the_clock() {
        let (mut a, mut b) = pair();
        a.register_self(1).unwrap();
        b.register_self(1).unwrap();
        let (old, _) = a.add_text("before", 5).unwrap();
        connect(&mut a, &mut b);
        a.take_changes();
        let seen = b.take_changes();
        assert!(seen.patches.contains(&HistoryPatch::Added(old.id)) && seen.devices);

        // A text written far "in the future" on b reaches a over the live session.
        let (late, effects) = b.add_text("from b", 9_000_000).unwrap();
        assert_eq!(b.take_changes().patches, [HistoryPatch::Added(late.id)]);
        let mut to_a = frames(&effects, false);
        while !to_a.is_empty() {
            let mut back = vec![];
            for frame in to_a.drain(..) {
                back.extend(frames(
                    &a.handle(Input::Frame {
                        peer: "b".into(),
                        frame,
                    }),
                    false,
                ));
            }
            for frame in back {
                to_a.extend(frames(
                    &b.handle(Input::Frame {
                        peer: "a".into(),
                        frame,
                    }),
                    false,
                ));
            }
        }
        let changes = a.take_changes();
        assert_eq!(changes.patches, [HistoryPatch::Added(late.id)]);
        assert!(!changes.devices);
        assert!(a.take_changes().is_empty(), "reported once");
        // The clock saw the changed item: a's next text sorts after it.
        let (next, _) = a.add_text("after", 10).unwrap();
        assert!(next.at > late.at);
        assert_eq!(a.items().last().map(|i| i.id), Some(next.id));
    }
}
