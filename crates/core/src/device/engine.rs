//! [`Device`]: one Ferry device as a sans-IO state machine. It owns the replica (the document,
//! the sync sessions, the handshake), this device's local state, which peers are which
//! devices, "last synced" and the delivery marks, the reconnect timing, and the file set
//! (with the transfer engine). It takes one [`Input`] (a person's intent, a link event, a
//! tick carrying the time) and returns [`Effect`]s for an executor to perform: sends on a lane,
//! storage writes, socket replacement, and view patches.
//!
//! Time and randomness come in with the inputs, so a test drives it deterministically; the
//! browser runtime, the host simulation (`testing::SimNet`) and a native peer run this same
//! code. The order of the effects is the device's decision: a local change is saved before it
//! is shown (a tab killed right after shows nothing it lost), a change from a peer is shown
//! first (it is stored elsewhere already) and saved right after.
//!
//! Still executor-side for now (issue #16 goes on): the mailbox visits (core
//! `mailbox_client` through its host port) and file chunk I/O (core `FileSet`/`SendJob` through
//! the executor, reached with [`Device::files_mut`]).

use super::delivery;
use super::files::FileSet;
use super::link::LinkEvent;
use super::local_state::LocalState;
use super::presence::{self, Backoff, Reconnect, Socket};
use crate::blobs::BlobMessage;
use crate::history::HistoryPatch;
use crate::ids::{DeviceId, ItemId};
use crate::replica::{self, PeerKey, RejectReason, Replica, ReplicaError};
use crate::seal::Lane;
use crate::wire::WireError;
use std::collections::BTreeMap;

/// How long "last synced" may lag in storage while nothing waits on it (ms): the mark moves
/// with every tick a device is connected, and a write per tick would be wasteful.
pub const LAST_SYNCED_SAVE_MS: u64 = 10_000;

/// What a person asked this device to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Write a text.
    Write(String),
    /// Replace an item's text (a file's caption).
    Edit(ItemId, String),
    /// Delete an item on every device.
    Delete(ItemId),
    /// Pin an item above the history (`true`) or unpin it, on every device.
    Pin(ItemId, bool),
    /// Write a task.
    Task(String),
    /// Check (`true`) or uncheck a task, on every device.
    Check(ItemId, bool),
    /// Write a note under an id the editor chose (its edits name it).
    Note {
        /// The note's id.
        id: ItemId,
        /// Its title.
        title: String,
        /// Its body.
        body: String,
    },
    /// Edit a note: `base` is the body the editor's change was made on.
    EditNote {
        /// The note.
        id: ItemId,
        /// Its title now.
        title: String,
        /// The body the change was made on.
        base: String,
        /// The body now, in the editor.
        body: String,
    },
    /// Rename this device.
    Rename(String),
}

/// Everything that happens to a device.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A person's intent, at `now` (ms since the epoch).
    Intent {
        /// What they asked.
        intent: Intent,
        /// The time.
        now: u64,
    },
    /// A link reported a peer up or down, or a frame on a lane.
    Link {
        /// What happened.
        event: LinkEvent,
        /// The time.
        now: u64,
    },
    /// Time passed. `synced_elsewhere` is when this device last counted as synced through
    /// something the device does not see itself (a sibling tab, the mailbox).
    Tick {
        /// The time.
        now: u64,
        /// Synced through tabs or the mailbox, as of then (0 = never).
        synced_elsewhere: u64,
    },
    /// The state of the current signaling socket, for reconnect timing.
    Socket {
        /// What the socket does.
        state: Socket,
        /// The time.
        now: u64,
        /// A random number in [0, 1) for the backoff's jitter.
        random: f64,
    },
}

/// A field of [`LocalState`] that changed: the executor applies it to the stored record as it
/// is then (another tab may have changed other fields meanwhile) and writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalChange {
    /// A device was seen (connected, or went away) at this time.
    Seen(DeviceId, u64),
    /// The delivery marks moved.
    Delivered(BTreeMap<DeviceId, u64>),
    /// This device last counted as synced at this time.
    LastSynced(u64),
    /// This device's name.
    Name(String),
}

impl LocalChange {
    /// Applies the change to a copy of the local state. Times only move forward: a sibling
    /// tab may have stored a later one (its own marks, the mailbox's receipts), and a lost
    /// mark is proved again by the next sync, never a wrong one kept.
    pub fn apply(&self, s: &mut LocalState) {
        match self {
            LocalChange::Seen(d, at) => {
                let seen = s.seen.entry(*d).or_insert(0);
                *seen = (*seen).max(*at);
            }
            LocalChange::Delivered(marks) => {
                for (d, at) in marks {
                    let to = s.delivered.entry(*d).or_insert(0);
                    *to = (*to).max(*at);
                }
            }
            LocalChange::LastSynced(at) => s.last_synced = s.last_synced.max(*at),
            LocalChange::Name(name) => s.name = name.clone(),
        }
    }
}

/// What the screen must change: rows and lists are patched, never rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewPatch {
    /// Rows of the history were added, changed or removed (in order).
    Items(Vec<HistoryPatch>),
    /// The device list changed (a device joined or was renamed, connected or left).
    Devices,
    /// Delivery marks moved: re-word the rows that say where a message is.
    Delivery,
    /// This device last counted as synced at `at` ("Last synced …"; rows that still say
    /// "not yet on other devices" are re-worded).
    Synced {
        /// When.
        at: u64,
    },
}

/// Something the executor must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send a frame to a peer on a lane.
    Send {
        /// The recipient.
        peer: PeerKey,
        /// Main (sync, control) or Bulk (file chunks).
        lane: Lane,
        /// Sealed bytes.
        frame: Vec<u8>,
    },
    /// The document changed: write what is not stored yet (the executor's `DocStore`).
    SaveDoc,
    /// Write a changed field of this device's local state.
    SaveLocal(LocalChange),
    /// Store a peer's automerge sync state, to resume from next time.
    SaveSyncState {
        /// The other device.
        device: DeviceId,
        /// `automerge::sync::State::encode` bytes.
        state: Vec<u8>,
    },
    /// Patch the view.
    View(ViewPatch),
    /// A file message from an authenticated peer, for the file transfer engine.
    Blob {
        /// The sender.
        peer: PeerKey,
        /// The message.
        msg: BlobMessage,
    },
    /// A peer proved it belongs to the space: file transfers and presence start on it.
    PeerReady {
        /// The transport's name for it.
        peer: PeerKey,
        /// Its device.
        device: DeviceId,
    },
    /// A peer went away (or was blocked): file transfers move its requests elsewhere.
    PeerGone {
        /// The transport's name for it.
        peer: PeerKey,
    },
    /// A frame from a peer was refused (nothing of it was applied).
    Refused {
        /// The peer.
        peer: PeerKey,
        /// Why.
        reason: RejectReason,
    },
    /// A peer sent too many bad frames and is blocked.
    Banned {
        /// The peer.
        peer: PeerKey,
    },
    /// Something this device tried to send could not be encoded (our failure).
    SendFailed {
        /// The intended recipient.
        peer: PeerKey,
        /// Why.
        error: WireError,
    },
    /// Signaling is gone: retire the current socket (its peers live on) and open a new one.
    ReplaceSocket,
}

impl Effect {
    /// The frame, when this is a send (on either lane).
    pub fn sent_frame(&self) -> Option<&[u8]> {
        match self {
            Effect::Send { frame, .. } => Some(frame),
            _ => None,
        }
    }
}

/// Why an intent was not carried out (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The replica refused it.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

/// One device (see the module docs).
pub struct Device {
    replica: Replica,
    local: LocalState,
    /// Identified peers: transport key -> device (sibling tabs share this device's id).
    peers: BTreeMap<PeerKey, DeviceId>,
    /// The last moment another device had everything this one has (on the HLC's scale).
    last_synced: u64,
    reconnect: Backoff,
    files: FileSet,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("replica", &self.replica)
            .field("peers", &self.peers.len())
            .field("last_synced", &self.last_synced)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// A device over its replica and its local state as loaded.
    pub fn new(replica: Replica, local: LocalState) -> Self {
        Device {
            last_synced: local.last_synced,
            files: FileSet::new(local.files_stopped.clone()),
            replica,
            local,
            peers: BTreeMap::new(),
            reconnect: Backoff::default(),
        }
    }

    /// This device's id.
    pub fn id(&self) -> DeviceId {
        self.replica.device()
    }

    /// The replica (the document and its sync sessions).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The replica, for the parts still executor-side (mailbox, files).
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    /// This device's local state as last changed.
    pub fn local(&self) -> &LocalState {
        &self.local
    }

    /// The local state, for the parts still executor-side (mailbox bookkeeping, settings).
    pub fn local_mut(&mut self) -> &mut LocalState {
        &mut self.local
    }

    /// The replica and the local state at once (a mailbox host needs both).
    pub fn split_mut(&mut self) -> (&mut Replica, &mut LocalState) {
        (&mut self.replica, &mut self.local)
    }

    /// The file set (what is whole here, stopped, live; the transfer engine).
    pub fn files(&self) -> &FileSet {
        &self.files
    }

    /// The file set, for the executor's chunk I/O.
    pub fn files_mut(&mut self) -> &mut FileSet {
        &mut self.files
    }

    /// Starts the file set over (a new space: nothing of the old one is whole or stopped).
    pub fn reset_files(&mut self) {
        self.files = FileSet::new(self.local.files_stopped.clone());
    }

    /// Identified peers and their devices.
    pub fn peers(&self) -> &BTreeMap<PeerKey, DeviceId> {
        &self.peers
    }

    /// Forgets every peer (the space changed and its links are closed).
    pub fn forget_peers(&mut self) {
        self.peers.clear();
    }

    /// Other devices connected directly (sibling tabs are this device).
    pub fn remote_devices(&self) -> usize {
        presence::remote_devices(self.id(), self.peers.values().copied())
    }

    /// When another device last had everything this one has (0 = never).
    pub fn last_synced(&self) -> u64 {
        self.last_synced
    }

    /// Whether a new socket should be opened now (no socket, and not backing off).
    pub fn wants_socket(&self, connected: bool) -> bool {
        !connected && !self.reconnect.waiting()
    }

    /// Reconnect timing starts over (new connection settings).
    pub fn reset_reconnect(&mut self) {
        self.reconnect.reset();
    }

    /// The newest timestamp a file this device wrote is held through by `device`, over
    /// direct links (see `FileSet::held_through`).
    pub fn held_through(&self, device: DeviceId) -> u64 {
        let links = self
            .peers
            .iter()
            .filter(|(_, d)| **d == device)
            .map(|(k, _)| k);
        self.files
            .held_through(links, self.replica.history().file_items(), self.id())
    }

    /// Handles one input; effects come back in the order to perform them.
    pub fn handle(&mut self, input: Input) -> Result<Vec<Effect>, DeviceError> {
        Ok(match input {
            Input::Intent { intent, now } => self.on_intent(intent, now)?,
            Input::Link { event, now } => self.on_link(event, now),
            Input::Tick {
                now,
                synced_elsewhere,
            } => self.on_tick(now, synced_elsewhere),
            Input::Socket { state, now, random } => match self.reconnect.turn(now, state, random) {
                Reconnect::Replace => vec![Effect::ReplaceSocket],
                _ => vec![],
            },
        })
    }

    fn on_intent(&mut self, intent: Intent, now: u64) -> Result<Vec<Effect>, DeviceError> {
        let (effects, renamed) = match intent {
            Intent::Write(text) => (self.replica.add_text(&text, now)?.1, false),
            Intent::Edit(id, text) => (self.replica.edit_text(id, &text, now)?, false),
            Intent::Delete(id) => (self.replica.delete_item(id, now)?, false),
            Intent::Pin(id, pinned) => (self.replica.set_pinned(id, pinned, now)?, false),
            Intent::Task(text) => (self.replica.add_task(&text, now)?.1, false),
            Intent::Check(id, done) => (self.replica.set_done(id, done, now)?, false),
            Intent::Note { id, title, body } => {
                (self.replica.add_note(id, &title, &body, now)?.1, false)
            }
            Intent::EditNote {
                id,
                title,
                base,
                body,
            } => (
                self.replica.edit_note(id, &title, &base, &body, now)?,
                false,
            ),
            Intent::Rename(name) => (self.replica.rename(&name, now)?, true),
        };
        let mut out = Vec::new();
        if renamed {
            self.local.name = self.replica.name().to_owned();
            out.push(Effect::SaveLocal(LocalChange::Name(
                self.local.name.clone(),
            )));
        }
        out.extend(self.translate(effects, now, false));
        Ok(out)
    }

    /// Runs effects of the replica that came from outside (the mailbox, still executor-side)
    /// through the same translation as the device's own: peers, saves and view patches.
    pub fn absorb(&mut self, effects: Vec<replica::Effect>, now: u64, remote: bool) -> Vec<Effect> {
        self.translate(effects, now, remote)
    }

    fn on_link(&mut self, event: LinkEvent, now: u64) -> Vec<Effect> {
        let remote = matches!(event, LinkEvent::Frame { .. });
        let mut out = Vec::new();
        if let LinkEvent::Down(peer) = &event {
            if let Some(device) = self.peers.remove(peer) {
                out.extend(self.seen(device, now));
                out.push(Effect::View(ViewPatch::Devices));
            }
            out.push(Effect::PeerGone { peer: peer.clone() });
        }
        let effects = self.replica.handle(replica::Input::from(event));
        out.extend(self.translate(effects, now, remote));
        out
    }

    fn seen(&mut self, device: DeviceId, now: u64) -> Option<Effect> {
        (device != self.id()).then(|| {
            self.local.seen.insert(device, now);
            Effect::SaveLocal(LocalChange::Seen(device, now))
        })
    }

    /// The replica's effects as the device's: what peers became, the document saved before
    /// (local) or after (remote) its rows are patched.
    fn translate(&mut self, effects: Vec<replica::Effect>, now: u64, remote: bool) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut changed = false;
        for e in effects {
            match e {
                replica::Effect::Send { peer, frame } => out.push(Effect::Send {
                    peer,
                    lane: Lane::Main,
                    frame,
                }),
                replica::Effect::SendBulk { peer, frame } => out.push(Effect::Send {
                    peer,
                    lane: Lane::Bulk,
                    frame,
                }),
                replica::Effect::DocChanged => changed = true,
                replica::Effect::PeerIdentified { peer, device, .. } => {
                    self.peers.insert(peer.clone(), device);
                    out.extend(self.seen(device, now));
                    out.push(Effect::PeerReady { peer, device });
                    out.push(Effect::View(ViewPatch::Devices));
                }
                replica::Effect::Rejected { peer, reason } => {
                    out.push(Effect::Refused { peer, reason })
                }
                replica::Effect::SaveSyncState { device, state } => {
                    out.push(Effect::SaveSyncState { device, state })
                }
                replica::Effect::SendFailed { peer, error } => {
                    out.push(Effect::SendFailed { peer, error })
                }
                replica::Effect::Blob { peer, msg } => out.push(Effect::Blob { peer, msg }),
                replica::Effect::PeerBanned { peer } => {
                    if self.peers.remove(&peer).is_some() {
                        out.push(Effect::View(ViewPatch::Devices));
                    }
                    out.push(Effect::PeerGone { peer: peer.clone() });
                    out.push(Effect::Banned { peer });
                }
            }
        }
        if changed {
            let changes = self.replica.take_changes();
            let mut show = vec![Effect::View(ViewPatch::Items(changes.patches))];
            if changes.devices {
                show.push(Effect::View(ViewPatch::Devices));
            }
            if remote {
                out.extend(show);
                out.push(Effect::SaveDoc);
            } else {
                out.push(Effect::SaveDoc);
                out.extend(show);
            }
        }
        out
    }

    /// Delivery bookkeeping: a device with this one's heads has every item written here, and
    /// a file's bytes once it said it holds them. Moves the marks and "last synced".
    fn on_tick(&mut self, now: u64, synced_elsewhere: u64) -> Vec<Effect> {
        let before = synced_elsewhere;
        let devices = self.replica.synced_devices();
        let latest = self.replica.latest_ms();
        let mut delivered = std::mem::take(&mut self.local.delivered);
        let (synced, moved) =
            delivery::note_direct_sync(&mut delivered, devices, latest, now, before, |d| {
                self.held_through(d)
            });
        self.local.delivered = delivered;
        let mut out = Vec::new();
        if moved {
            out.push(Effect::SaveLocal(LocalChange::Delivered(
                self.local.delivered.clone(),
            )));
            out.push(Effect::View(ViewPatch::Delivery));
        }
        let advanced = synced > self.last_synced;
        if advanced {
            self.last_synced = synced;
            if synced > self.local.last_synced + LAST_SYNCED_SAVE_MS {
                self.local.last_synced = synced;
                out.push(Effect::SaveLocal(LocalChange::LastSynced(synced)));
            }
        }
        if advanced {
            out.push(Effect::View(ViewPatch::Synced { at: synced }));
        }
        out
    }

    /// Writes "last synced" now if storage lags behind (items wait on it to stop saying "not
    /// yet on other devices" after a reload).
    pub fn flush_last_synced(&mut self) -> Option<Effect> {
        (self.last_synced > self.local.last_synced).then(|| {
            self.local.last_synced = self.last_synced;
            Effect::SaveLocal(LocalChange::LastSynced(self.last_synced))
        })
    }
}

/// Effects of several local writes handled in one turn, as one: every send in order, then
/// one document save, then one patch of the rows (a paste of many lines, or a fast typist,
/// never costs one storage write and one render each). Save still comes before show.
pub fn coalesce(effects: Vec<Effect>) -> Vec<Effect> {
    let mut out = Vec::with_capacity(effects.len());
    let mut save = false;
    let mut rows: Option<Vec<HistoryPatch>> = None;
    let mut devices = false;
    for e in effects {
        match e {
            Effect::SaveDoc => save = true,
            Effect::View(ViewPatch::Items(p)) => rows.get_or_insert_with(Vec::new).extend(p),
            Effect::View(ViewPatch::Devices) => devices = true,
            other => out.push(other),
        }
    }
    if save {
        out.push(Effect::SaveDoc);
    }
    out.extend(rows.map(|p| Effect::View(ViewPatch::Items(p))));
    if devices {
        out.push(Effect::View(ViewPatch::Devices));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SpaceSecret;

    fn device(secret: &SpaceSecret, name: &str) -> Device {
        let id = DeviceId::random();
        let replica = Replica::new(id, name, secret).unwrap();
        Device::new(replica, LocalState::new(id, name.into()))
    }

    fn up(d: &mut Device, peer: &str, now: u64) -> Vec<Effect> {
        d.handle(Input::Link {
            event: LinkEvent::Up(PeerKey::rtc(peer)),
            now,
        })
        .unwrap()
    }

    /// Delivers every main-lane frame between `a` (peer "a" to `b`) and `b` (peer "b" to
    /// `a`) until quiet, starting with `to_b` (what `a` said); returns each side's effects.
    fn exchange(
        a: &mut Device,
        b: &mut Device,
        to_b: Vec<Effect>,
        now: u64,
    ) -> (Vec<Effect>, Vec<Effect>) {
        let frames = |effects: &[Effect]| -> Vec<Vec<u8>> {
            effects
                .iter()
                .filter_map(|e| e.sent_frame().map(<[u8]>::to_vec))
                .collect()
        };
        let (mut all_a, mut all_b) = (vec![], vec![]);
        let (mut q_ab, mut q_ba) = (frames(&to_b), Vec::new());
        for _ in 0..200 {
            if q_ab.is_empty() && q_ba.is_empty() {
                break;
            }
            for bytes in std::mem::take(&mut q_ab) {
                let event = LinkEvent::Frame {
                    peer: PeerKey::rtc("a"),
                    lane: Lane::Main,
                    bytes,
                };
                let out = b.handle(Input::Link { event, now }).unwrap();
                q_ba.extend(frames(&out));
                all_b.extend(out);
            }
            for bytes in std::mem::take(&mut q_ba) {
                let event = LinkEvent::Frame {
                    peer: PeerKey::rtc("b"),
                    lane: Lane::Main,
                    bytes,
                };
                let out = a.handle(Input::Link { event, now }).unwrap();
                q_ab.extend(frames(&out));
                all_a.extend(out);
            }
        }
        (all_a, all_b)
    }

    /// Both see each other (A's hello and B's) and talk until quiet; each side's effects.
    fn connect(a: &mut Device, b: &mut Device, now: u64) -> (Vec<Effect>, Vec<Effect>) {
        let mut to_b = up(a, "b", now);
        for e in up(b, "a", now) {
            if let Some(bytes) = e.sent_frame() {
                let event = LinkEvent::Frame {
                    peer: PeerKey::rtc("b"),
                    lane: Lane::Main,
                    bytes: bytes.to_vec(),
                };
                to_b.extend(a.handle(Input::Link { event, now }).unwrap());
            }
        }
        exchange(a, b, to_b, now)
    }

    fn position(effects: &[Effect], f: impl Fn(&Effect) -> bool) -> Option<usize> {
        effects.iter().position(f)
    }

    #[test]
    fn a_local_change_is_saved_before_it_is_shown_and_a_remote_one_shown_first() {
        let secret = SpaceSecret::random();
        let (mut a, mut b) = (device(&secret, "A"), device(&secret, "B"));
        let intent = Intent::Write("hello".into());
        let local = a.handle(Input::Intent { intent, now: 10 }).unwrap();
        let save = position(&local, |e| *e == Effect::SaveDoc).unwrap();
        let shown = position(
            &local,
            |e| matches!(e, Effect::View(ViewPatch::Items(p)) if p.len() == 1),
        )
        .unwrap();
        assert!(save < shown, "saved first: {local:?}");

        let (_, from_a) = connect(&mut a, &mut b, 20);
        assert!(
            b.replica().items().iter().any(|i| i.text == "hello"),
            "B got the text"
        );
        let shown = position(
            &from_a,
            |e| matches!(e, Effect::View(ViewPatch::Items(p)) if !p.is_empty()),
        )
        .unwrap();
        let save = from_a
            .iter()
            .enumerate()
            .skip(shown)
            .find(|(_, e)| **e == Effect::SaveDoc)
            .map(|(i, _)| i);
        assert!(save.is_some(), "shown, then saved: {from_a:?}");
    }

    #[test]
    fn peers_become_devices_are_seen_and_marked_delivered_once_synced() {
        let secret = SpaceSecret::random();
        let (mut a, mut b) = (device(&secret, "A"), device(&secret, "B"));
        a.handle(Input::Intent {
            intent: Intent::Write("one".into()),
            now: 10,
        })
        .unwrap();
        assert!(
            a.handle(Input::Tick {
                now: 11,
                synced_elsewhere: 0
            })
            .unwrap()
            .is_empty()
        );
        connect(&mut a, &mut b, 100);
        assert_eq!(a.peers().get(&PeerKey::rtc("b")), Some(&b.id()));
        assert_eq!(a.remote_devices(), 1);
        assert_eq!(a.local().seen.get(&b.id()), Some(&100));
        let tick = a
            .handle(Input::Tick {
                now: 200,
                synced_elsewhere: 0,
            })
            .unwrap();
        assert!(tick.iter().any(|e| matches!(e, Effect::SaveLocal(LocalChange::Delivered(m)) if m.contains_key(&b.id()))), "{tick:?}");
        assert!(
            tick.iter()
                .any(|e| matches!(e, Effect::View(ViewPatch::Synced { at }) if *at >= 200))
        );
        assert!(a.last_synced() >= 200);
        // B goes away: seen then, the device list changes, files hear of it.
        let down = a
            .handle(Input::Link {
                event: LinkEvent::Down(PeerKey::rtc("b")),
                now: 300,
            })
            .unwrap();
        assert!(down.contains(&Effect::SaveLocal(LocalChange::Seen(b.id(), 300))));
        assert!(down.contains(&Effect::PeerGone {
            peer: PeerKey::rtc("b")
        }));
        assert!(down.contains(&Effect::View(ViewPatch::Devices)));
        assert_eq!(a.remote_devices(), 0);
    }

    #[test]
    fn writes_in_one_turn_are_saved_once_then_shown_once() {
        let secret = SpaceSecret::random();
        let mut a = device(&secret, "A");
        let mut all = Vec::new();
        for (i, t) in ["one", "two", "three"].iter().enumerate() {
            let intent = Intent::Write((*t).into());
            all.extend(
                a.handle(Input::Intent {
                    intent,
                    now: 10 + i as u64,
                })
                .unwrap(),
            );
        }
        let one = coalesce(all);
        assert_eq!(one.iter().filter(|e| **e == Effect::SaveDoc).count(), 1);
        let rows: Vec<&Effect> = one
            .iter()
            .filter(|e| matches!(e, Effect::View(ViewPatch::Items(_))))
            .collect();
        assert!(matches!(rows[..], [Effect::View(ViewPatch::Items(p))] if p.len() == 3));
        let save = position(&one, |e| *e == Effect::SaveDoc).unwrap();
        let shown = position(&one, |e| matches!(e, Effect::View(ViewPatch::Items(_)))).unwrap();
        assert!(save < shown);
        assert!(coalesce(vec![]).is_empty());
    }

    #[test]
    fn stored_times_only_move_forward() {
        let (a, b) = (DeviceId::random(), DeviceId::random());
        let mut s = LocalState::new(a, "A".into());
        s.delivered.insert(b, 50);
        s.seen.insert(b, 70);
        s.last_synced = 90;
        LocalChange::Delivered([(b, 40)].into_iter().collect()).apply(&mut s);
        LocalChange::Seen(b, 60).apply(&mut s);
        LocalChange::LastSynced(80).apply(&mut s);
        assert_eq!((s.delivered[&b], s.seen[&b], s.last_synced), (50, 70, 90));
        LocalChange::Delivered([(b, 55)].into_iter().collect()).apply(&mut s);
        LocalChange::Seen(b, 75).apply(&mut s);
        LocalChange::LastSynced(95).apply(&mut s);
        LocalChange::Name("Phone".into()).apply(&mut s);
        assert_eq!((s.delivered[&b], s.seen[&b], s.last_synced), (55, 75, 95));
        assert_eq!(s.name, "Phone");
    }

    #[test]
    fn a_rename_is_saved_locally_and_a_lost_socket_is_replaced_after_backoff() {
        let secret = SpaceSecret::random();
        let mut a = device(&secret, "A");
        let out = a
            .handle(Input::Intent {
                intent: Intent::Rename("Work laptop".into()),
                now: 5,
            })
            .unwrap();
        assert_eq!(
            out[0],
            Effect::SaveLocal(LocalChange::Name("Work laptop".into()))
        );
        assert_eq!(a.local().name, "Work laptop");
        assert!(matches!(
            a.handle(Input::Intent {
                intent: Intent::Write("   ".into()),
                now: 6
            }),
            Err(DeviceError::Replica(ReplicaError::Empty))
        ));
        assert!(a.wants_socket(false));
        let mut replaced = None;
        for t in 0..30_000u64 {
            let out = a
                .handle(Input::Socket {
                    state: Socket::Lost,
                    now: t,
                    random: 0.5,
                })
                .unwrap();
            if out.contains(&Effect::ReplaceSocket) {
                replaced = Some(t);
                break;
            }
        }
        assert!(
            replaced.is_some_and(|t| t > 0),
            "replaced after a backoff: {replaced:?}"
        );
    }
}
