//! A device's replica of the space and its sans-IO sync sessions, one per connected peer.
//!
//! The runtime feeds [`Input`]s (a peer came or went, a frame arrived) and performs the
//! returned [`Effect`]s (send a frame, persist and re-render after a change). Nothing here
//! waits, sleeps or does I/O, so whole multi-device networks can be simulated in tests.

use crate::doc::{DeviceInfo, DocError, Item, SpaceDoc};
use crate::hlc::Clock;
use crate::ids::{DeviceId, ItemId};
use crate::wire::{Message, Reassembler, WireError};
use automerge::sync;
use std::collections::BTreeMap;
use thiserror::Error;

/// How the transport names a connected peer (matchbox peer id, tab id, ...).
pub type PeerKey = String;

/// Something that happened to the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A peer connected: start a sync session.
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
    /// A peer said who it is.
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
        reason: String,
    },
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
}

#[derive(Default)]
struct Session {
    sync: sync::State,
    reassembler: Reassembler,
    device: Option<DeviceId>,
}

/// One device's view of the space.
pub struct Replica {
    device: DeviceId,
    name: String,
    doc: SpaceDoc,
    clock: Clock,
    peers: BTreeMap<PeerKey, Session>,
    next_msg: u32,
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
    /// A replica of a new, empty space.
    pub fn new(device: DeviceId, name: &str) -> Result<Self, DocError> {
        Ok(Self::from_doc(
            device,
            name,
            SpaceDoc::new(&session_actor(device))?,
        ))
    }

    /// The actor id a replica of `device` should load its document with.
    pub fn actor_for(device: DeviceId) -> Vec<u8> {
        session_actor(device)
    }

    /// Wraps a loaded document.
    pub fn from_doc(device: DeviceId, name: &str, doc: SpaceDoc) -> Self {
        let mut clock = Clock::default();
        if let Some(max) = doc.items().iter().map(|i| i.at).max() {
            clock.observe(max);
        }
        Replica {
            device,
            name: name.to_owned(),
            doc,
            clock,
            peers: BTreeMap::new(),
            next_msg: 0,
        }
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The document (for persistence).
    pub fn doc_mut(&mut self) -> &mut SpaceDoc {
        &mut self.doc
    }

    /// Items in display order.
    pub fn items(&self) -> Vec<Item> {
        self.doc.items()
    }

    /// Devices of the space.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.doc.devices()
    }

    /// Peers with an open session.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
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
        let text = text.trim();
        if text.is_empty() {
            return Err(ReplicaError::Empty);
        }
        let at = self.clock.tick(now_ms);
        let item = self.doc.add_text(ItemId::random(), text, self.device, at)?;
        Ok((item, self.after_local_change()?))
    }

    fn after_local_change(&mut self) -> Result<Vec<Effect>, ReplicaError> {
        let mut effects = vec![Effect::DocChanged];
        let peers: Vec<PeerKey> = self.peers.keys().cloned().collect();
        for peer in peers {
            self.sync_to(&peer, &mut effects)?;
        }
        Ok(effects)
    }

    fn send(&mut self, peer: &str, msg: &Message, out: &mut Vec<Effect>) -> Result<(), WireError> {
        self.next_msg = self.next_msg.wrapping_add(1);
        for frame in msg.to_packets(self.next_msg)? {
            out.push(Effect::Send {
                peer: peer.to_owned(),
                frame,
            });
        }
        Ok(())
    }

    fn sync_to(&mut self, peer: &str, out: &mut Vec<Effect>) -> Result<(), WireError> {
        let Some(session) = self.peers.get_mut(peer) else {
            return Ok(());
        };
        if let Some(bytes) = self.doc.generate_sync_message(&mut session.sync) {
            self.send(peer, &Message::Sync(bytes), out)?;
        }
        Ok(())
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::PeerUp(peer) => {
                self.peers.insert(peer.clone(), Session::default());
                let hello = Message::Hello {
                    device: *self.device.as_bytes(),
                    name: self.name.clone(),
                };
                if let Err(e) = self
                    .send(&peer, &hello, &mut out)
                    .and_then(|()| self.sync_to(&peer, &mut out))
                {
                    out.push(Effect::Rejected {
                        peer,
                        reason: e.to_string(),
                    });
                }
            }
            Input::PeerDown(peer) => {
                self.peers.remove(&peer);
            }
            Input::Frame { peer, frame } => self.on_frame(peer, &frame, &mut out),
        }
        out
    }

    fn on_frame(&mut self, peer: PeerKey, frame: &[u8], out: &mut Vec<Effect>) {
        let session = self.peers.entry(peer.clone()).or_default();
        let msg = match session.reassembler.push(frame) {
            Ok(Some(msg)) => msg,
            Ok(None) => return,
            Err(e) => {
                out.push(Effect::Rejected {
                    peer,
                    reason: e.to_string(),
                });
                return;
            }
        };
        match msg {
            Message::Hello { device, name } => {
                let device = DeviceId::from_bytes(device);
                session.device = Some(device);
                out.push(Effect::PeerIdentified {
                    peer,
                    device,
                    name: name.chars().take(100).collect(),
                });
            }
            Message::Sync(bytes) => {
                let before = self.doc.heads();
                if let Err(e) = self.doc.receive_sync_message(&mut session.sync, &bytes) {
                    out.push(Effect::Rejected {
                        peer,
                        reason: e.to_string(),
                    });
                    return;
                }
                let changed = self.doc.heads() != before;
                if changed {
                    out.push(Effect::DocChanged);
                    if let Some(max) = self.doc.items().iter().map(|i| i.at).max() {
                        self.clock.observe(max);
                    }
                }
                // Reply to the sender; after a change, also tell everyone else.
                let targets: Vec<PeerKey> = if changed {
                    self.peers.keys().cloned().collect()
                } else {
                    vec![peer]
                };
                for p in targets {
                    if let Err(e) = self.sync_to(&p, out) {
                        out.push(Effect::Rejected {
                            peer: p,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
    }

    /// Current heads of the document (equal heads = equal documents).
    pub fn heads(&mut self) -> Vec<automerge::ChangeHash> {
        self.doc.heads()
    }
}
