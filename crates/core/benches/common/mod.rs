//! What the core benches share: two replicas joined by an in-order link (sealed, packetized,
//! handshake included), and reloading a replica from a snapshot.
#![allow(dead_code)] // each bench uses its own part

use std::collections::VecDeque;

use ferry_core::{DeviceId, Effect, Input, Replica, SpaceDoc, SpaceSecret};

/// Two replicas joined by an in-order link. `a` knows `b` as peer "b" and vice versa.
pub struct Pair {
    pub a: Replica,
    pub b: Replica,
    /// Frames in flight: `(to_b, frame)`.
    pub queue: VecDeque<(bool, Vec<u8>)>,
    pub bytes: usize,
    /// Sync states saved at the last disconnect, per side.
    pub saved: [Vec<(DeviceId, Vec<u8>)>; 2],
}

impl Pair {
    pub fn new(a: Replica, b: Replica) -> Self {
        Pair {
            a,
            b,
            queue: VecDeque::new(),
            bytes: 0,
            saved: [vec![], vec![]],
        }
    }

    pub fn collect(&mut self, from_a: bool, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Send { frame, .. } => {
                    self.bytes += frame.len();
                    self.queue.push_back((from_a, frame));
                }
                Effect::SaveSyncState { device, state } => {
                    self.saved[usize::from(!from_a)].push((device, state));
                }
                Effect::Rejected { reason, .. } => panic!("frame rejected: {reason}"),
                _ => {}
            }
        }
    }

    /// Delivers everything in flight, and everything sent in reply, in order.
    pub fn pump(&mut self) {
        while let Some((to_b, frame)) = self.queue.pop_front() {
            let effects = if to_b {
                self.b.handle(Input::Frame {
                    peer: "a".into(),
                    frame,
                })
            } else {
                self.a.handle(Input::Frame {
                    peer: "b".into(),
                    frame,
                })
            };
            self.collect(!to_b, effects);
        }
    }

    /// Both sides see each other; returns the bytes exchanged until both are quiet.
    pub fn connect(&mut self) -> usize {
        let before = self.bytes;
        let ea = self.a.handle(Input::PeerUp("b".into()));
        self.collect(true, ea);
        let eb = self.b.handle(Input::PeerUp("a".into()));
        self.collect(false, eb);
        self.pump();
        self.bytes - before
    }

    pub fn disconnect(&mut self) {
        self.saved = [vec![], vec![]];
        let ea = self.a.handle(Input::PeerDown("b".into()));
        self.collect(true, ea);
        let eb = self.b.handle(Input::PeerDown("a".into()));
        self.collect(false, eb);
    }

    pub fn write(&mut self, on_a: bool, text: &str, now_ms: u64) {
        let r = if on_a { &mut self.a } else { &mut self.b };
        let (_, effects) = r.add_text(text, now_ms).expect("add text");
        self.collect(on_a, effects);
        self.pump();
    }
}

/// A replica reloaded from a document snapshot, as after closing and reopening the app.
pub fn reload(device: DeviceId, name: &str, snapshot: &[u8], secret: &SpaceSecret) -> Replica {
    let (doc, bad) = SpaceDoc::load(&Replica::actor_for(device), [snapshot]).expect("load");
    assert!(bad.is_empty());
    Replica::from_doc(device, name, doc, secret)
}
