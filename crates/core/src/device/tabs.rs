//! Sibling tabs of one browser profile: who is there, sans-IO. The browser adapter
//! (`src/net/tabs.rs`) only moves envelopes over a `BroadcastChannel` named after the room;
//! what they mean and when a tab counts as gone is decided here, host-tested.
//!
//! Envelope: `kind:u8 | from:[u8;16] | to:[u8;16] | payload`. A tab announces itself when it
//! opens (the others answer with their presence), sends its presence every
//! [`HEARTBEAT_MS`] (carrying how many remote devices it is connected to and when it last
//! synced, so a tab without the WebRTC connection can show both), says goodbye on `pagehide`,
//! and is considered gone after [`GONE_AFTER_MS`] of silence (a killed tab says nothing).
//! Frames are the same sealed frames as on WebRTC, addressed to one tab; the replica treats
//! each tab as one more peer ([`PeerKey::tab`]).

use super::link::LinkEvent;
use crate::replica::PeerKey;
use crate::seal::Lane;
use std::collections::BTreeMap;

const ANNOUNCE: u8 = 1;
const PRESENT: u8 = 2;
const FRAME: u8 = 3;
const BYE: u8 = 4;
/// Another tab moved this browser to another space: reload from storage.
const SPACE_CHANGED: u8 = 5;
/// How often a tab says it is there (ms).
pub const HEARTBEAT_MS: u64 = 1_500;
/// Silence after which a tab counts as gone (ms).
pub const GONE_AFTER_MS: u64 = 5_000;
/// Bytes before an envelope's payload.
pub const ENVELOPE: usize = 33;
const EVERYONE: [u8; 16] = [0; 16];

/// What this tab tells its siblings about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Other devices this tab is connected to.
    pub remote_devices: u16,
    /// When this tab last synced with another device (ms, 0 = never).
    pub last_synced: u64,
}

impl Status {
    fn encode(self) -> Vec<u8> {
        let mut out = self.remote_devices.to_le_bytes().to_vec();
        out.extend_from_slice(&self.last_synced.to_le_bytes());
        out
    }

    fn decode(payload: &[u8]) -> Option<Status> {
        let remote = payload.get(..2)?;
        let synced = payload.get(2..10)?;
        Some(Status {
            remote_devices: u16::from_le_bytes(remote.try_into().ok()?),
            last_synced: u64::from_le_bytes(synced.try_into().ok()?),
        })
    }
}

/// What one turn found: link events for the device, envelopes to post, and whether another
/// tab moved this browser to another space.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Turn {
    /// Tabs that came, went, or sent a frame.
    pub events: Vec<LinkEvent>,
    /// Envelopes to post on the channel, in order.
    pub posts: Vec<Vec<u8>>,
    /// Another tab switched this browser to another space.
    pub space_changed: bool,
}

struct Sibling {
    last_heard: u64,
    status: Status,
}

/// The sibling tabs this tab knows (see the module docs).
pub struct TabPeers {
    me: [u8; 16],
    peers: BTreeMap<PeerKey, Sibling>,
    last_beat: Option<u64>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A tab's 16-byte id back from its peer key; `None` for anything that is not one.
fn tab_id(peer: &PeerKey) -> Option<[u8; 16]> {
    if !peer.is_tab() || peer.id.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, pair) in peer.id.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        id[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(id)
}

impl TabPeers {
    /// This tab (`me`, random per page) and the announcement to post first.
    pub fn open(me: [u8; 16]) -> (Self, Vec<u8>) {
        let tabs = TabPeers {
            me,
            peers: BTreeMap::new(),
            last_beat: None,
        };
        let hello = tabs.envelope(ANNOUNCE, &EVERYONE, &[]);
        (tabs, hello)
    }

    fn envelope(&self, kind: u8, to: &[u8; 16], payload: &[u8]) -> Vec<u8> {
        let mut env = Vec::with_capacity(ENVELOPE + payload.len());
        env.push(kind);
        env.extend_from_slice(&self.me);
        env.extend_from_slice(to);
        env.extend_from_slice(payload);
        env
    }

    /// One envelope from the channel (untrusted: a malformed one is ignored).
    pub fn receive(&mut self, env: &[u8], now: u64, status: Status, turn: &mut Turn) {
        if env.len() < ENVELOPE {
            return;
        }
        let (kind, from, to, payload) = (env[0], &env[1..17], &env[17..33], &env[33..]);
        if from == self.me {
            return;
        }
        let key = PeerKey::tab(hex(from));
        match kind {
            BYE => {
                if self.peers.remove(&key).is_some() {
                    turn.events.push(LinkEvent::Down(key));
                }
                return;
            }
            SPACE_CHANGED => {
                turn.space_changed = true;
                return;
            }
            FRAME if to != self.me => return,
            ANNOUNCE | PRESENT | FRAME => {}
            _ => return,
        }
        if !self.peers.contains_key(&key) {
            turn.events.push(LinkEvent::Up(key.clone()));
        }
        let sibling = self.peers.entry(key.clone()).or_insert(Sibling {
            last_heard: now,
            status: Status::default(),
        });
        sibling.last_heard = now;
        match kind {
            ANNOUNCE => {
                let mut to = [0u8; 16];
                to.copy_from_slice(from);
                turn.posts
                    .push(self.envelope(PRESENT, &to, &status.encode()));
            }
            PRESENT => {
                if let Some(s) = Status::decode(payload) {
                    sibling.status = s;
                }
            }
            _ => turn.events.push(LinkEvent::Frame {
                peer: key,
                lane: Lane::Main,
                bytes: payload.to_vec(),
            }),
        }
    }

    /// Time passed: silent tabs are gone, and this tab's presence is due now and then.
    pub fn tick(&mut self, now: u64, status: Status, turn: &mut Turn) {
        let gone: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.last_heard) > GONE_AFTER_MS)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.peers.remove(&key);
            turn.events.push(LinkEvent::Down(key));
        }
        if self
            .last_beat
            .is_none_or(|t| now.saturating_sub(t) > HEARTBEAT_MS)
        {
            self.last_beat = Some(now);
            turn.posts
                .push(self.envelope(PRESENT, &EVERYONE, &status.encode()));
        }
    }

    /// A frame for one sibling tab; `None` when `peer` is not a tab id.
    pub fn frame(&self, peer: &PeerKey, frame: &[u8]) -> Option<Vec<u8>> {
        Some(self.envelope(FRAME, &tab_id(peer)?, frame))
    }

    /// The goodbye (posted on `pagehide` and before switching spaces).
    pub fn bye(&self) -> Vec<u8> {
        self.envelope(BYE, &EVERYONE, &[])
    }

    /// Tells sibling tabs this browser moved to another space.
    pub fn space_changed(&self) -> Vec<u8> {
        self.envelope(SPACE_CHANGED, &EVERYONE, &[])
    }

    /// Remote devices reachable through the best-connected sibling tab.
    pub fn remote_devices_via_tabs(&self) -> usize {
        self.peers
            .values()
            .map(|p| usize::from(p.status.remote_devices))
            .max()
            .unwrap_or(0)
    }

    /// The most recent sync with another device a sibling tab reported (ms).
    pub fn last_synced_via_tabs(&self) -> u64 {
        self.peers
            .values()
            .map(|p| p.status.last_synced)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tabs on one channel: every post reaches every other tab (a broadcast).
    struct Channel {
        tabs: Vec<TabPeers>,
        status: Vec<Status>,
        bus: Vec<(usize, Vec<u8>)>,
        events: Vec<Vec<LinkEvent>>,
    }

    impl Channel {
        fn new(n: usize) -> Self {
            let mut c = Channel {
                tabs: vec![],
                status: vec![Status::default(); n],
                bus: vec![],
                events: vec![vec![]; n],
            };
            for i in 0..n {
                let (tab, hello) = TabPeers::open([i as u8 + 1; 16]);
                c.tabs.push(tab);
                c.bus.push((i, hello));
            }
            c
        }

        /// Delivers everything posted until quiet; then each tab ticks at `now`.
        fn run(&mut self, now: u64) {
            for _ in 0..10 {
                let bus = std::mem::take(&mut self.bus);
                for (from, env) in bus {
                    for to in (0..self.tabs.len()).filter(|t| *t != from) {
                        let mut turn = Turn::default();
                        self.tabs[to].receive(&env, now, self.status[to], &mut turn);
                        self.events[to].extend(turn.events);
                        self.bus.extend(turn.posts.into_iter().map(|p| (to, p)));
                    }
                }
            }
            for i in 0..self.tabs.len() {
                let mut turn = Turn::default();
                self.tabs[i].tick(now, self.status[i], &mut turn);
                self.events[i].extend(turn.events);
                self.bus.extend(turn.posts.into_iter().map(|p| (i, p)));
            }
        }

        fn key(i: usize) -> PeerKey {
            PeerKey::tab(hex(&[i as u8 + 1; 16]))
        }
    }

    #[test]
    fn tabs_meet_exchange_frames_and_presence_and_say_goodbye() {
        let mut c = Channel::new(3);
        c.status[0] = Status {
            remote_devices: 2,
            last_synced: 777,
        };
        c.run(1_000);
        c.run(1_100);
        for i in 0..3 {
            let ups: Vec<&LinkEvent> = c.events[i]
                .iter()
                .filter(|e| matches!(e, LinkEvent::Up(_)))
                .collect();
            assert_eq!(
                ups.len(),
                2,
                "tab {i} met both others once: {:?}",
                c.events[i]
            );
        }
        // Tab 0's presence reached the others (a heartbeat or the answer to a hello).
        assert_eq!(c.tabs[1].remote_devices_via_tabs(), 2);
        assert_eq!(c.tabs[2].last_synced_via_tabs(), 777);
        // A frame goes to its addressee only.
        let env = c.tabs[0].frame(&Channel::key(1), b"sealed").unwrap();
        c.bus.push((0, env));
        c.run(1_200);
        let frames = |i: usize| {
            c.events[i]
                .iter()
                .filter(|e| matches!(e, LinkEvent::Frame { .. }))
                .count()
        };
        assert_eq!((frames(1), frames(2)), (1, 0));
        assert!(c.events[1].contains(&LinkEvent::Frame {
            peer: Channel::key(0),
            lane: Lane::Main,
            bytes: b"sealed".to_vec()
        }));
        // Tab 2 says goodbye: down at once on both others.
        let bye = c.tabs[2].bye();
        c.bus.push((2, bye));
        c.run(1_300);
        assert!(c.events[0].contains(&LinkEvent::Down(Channel::key(2))));
        assert!(c.events[1].contains(&LinkEvent::Down(Channel::key(2))));
    }

    #[test]
    fn a_silent_tab_is_gone_after_the_timeout_and_a_space_change_is_news() {
        let mut c = Channel::new(2);
        c.run(0);
        c.run(10);
        // Tab 1 is killed: it says nothing more. Tab 0 keeps ticking.
        let mut turn = Turn::default();
        c.tabs[0].tick(GONE_AFTER_MS, Status::default(), &mut turn);
        assert!(
            !turn.events.contains(&LinkEvent::Down(Channel::key(1))),
            "not yet"
        );
        assert_eq!(turn.posts.len(), 1, "a heartbeat was due");
        let mut turn = Turn::default();
        c.tabs[0].tick(GONE_AFTER_MS + 11, Status::default(), &mut turn);
        assert_eq!(turn.events, vec![LinkEvent::Down(Channel::key(1))]);
        assert!(turn.posts.is_empty(), "the next heartbeat is not due yet");
        let mut turn = Turn::default();
        let moved = c.tabs[1].space_changed();
        c.tabs[0].receive(&moved, 6_000, Status::default(), &mut turn);
        assert!(turn.space_changed);
    }

    #[test]
    fn malformed_envelopes_and_foreign_ids_are_ignored() {
        let (mut tab, _) = TabPeers::open([9; 16]);
        let mut turn = Turn::default();
        for env in [
            vec![],
            vec![FRAME; 10],
            vec![99; 40],
            {
                // A frame addressed to another tab.
                let mut e = vec![FRAME];
                e.extend([1; 16]);
                e.extend([2; 16]);
                e
            },
            {
                // A presence with a short payload: the tab is met, its status unknown.
                let mut e = vec![PRESENT];
                e.extend([3; 16]);
                e.extend([0; 16]);
                e.push(1);
                e
            },
            {
                // Its own envelope, echoed.
                let mut e = vec![ANNOUNCE];
                e.extend([9; 16]);
                e.extend([0; 16]);
                e
            },
        ] {
            tab.receive(&env, 5, Status::default(), &mut turn);
        }
        assert_eq!(
            turn.events,
            vec![LinkEvent::Up(PeerKey::tab(hex(&[3; 16])))]
        );
        assert_eq!(tab.remote_devices_via_tabs(), 0);
        assert_eq!(tab.frame(&PeerKey::rtc("abc"), b"x"), None);
        assert_eq!(tab.frame(&PeerKey::tab("zz".repeat(16)), b"x"), None);
        assert_eq!(tab.frame(&PeerKey::tab("ab"), b"x"), None);
    }
}
