//! Sibling tabs of one browser profile, linked by a `BroadcastChannel` named after the room:
//! they sync instantly with no server at all. Frames are the same sealed frames as on WebRTC;
//! the replica treats each tab as one more peer ([`PeerKey::tab`]).
//!
//! Envelope: `kind:u8 | from:[u8;16] | to:[u8;16] | payload`. Tabs announce themselves, send a
//! heartbeat every 1.5 s (carrying how many remote devices they are connected to, so tabs
//! without the WebRTC connection can show it), say goodbye on `pagehide`, and are considered
//! gone after 5 s of silence (a killed tab says nothing).

use ferry_core::PeerKey;
use ferry_core::device::LinkEvent;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BroadcastChannel, MessageEvent};

const ANNOUNCE: u8 = 1;
const PRESENT: u8 = 2;
const FRAME: u8 = 3;
const BYE: u8 = 4;
/// Another tab moved this browser to another space: reload from storage.
const SPACE_CHANGED: u8 = 5;
const HEARTBEAT_MS: f64 = 1_500.0;
const GONE_AFTER_MS: f64 = 5_000.0;
const ENVELOPE: usize = 33;

struct Peer {
    last_heard: f64,
    remote_devices: u16,
    last_synced: u64,
}

/// What `poll` found besides link events.
#[derive(Default)]
pub struct TabNews {
    /// Another tab switched this browser to another space.
    pub space_changed: bool,
}

/// The link to sibling tabs.
pub struct TabLink {
    channel: BroadcastChannel,
    me: [u8; 16],
    inbox: Rc<RefCell<Vec<Vec<u8>>>>,
    peers: HashMap<PeerKey, Peer>,
    last_beat: f64,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl TabLink {
    /// Joins the channel of `room`; `None` where BroadcastChannel is unavailable.
    pub fn open(room: &str) -> Option<Self> {
        let channel = BroadcastChannel::new(&format!("ferry-{room}")).ok()?;
        let inbox: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let sink = inbox.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            if let Ok(bytes) = ev.data().dyn_into::<js_sys::Uint8Array>() {
                sink.borrow_mut().push(bytes.to_vec());
                crate::wake::wake();
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let mut me = [0u8; 16];
        me.copy_from_slice(ferry_core::ItemId::random().as_bytes());
        let link = TabLink {
            channel,
            me,
            inbox,
            peers: HashMap::new(),
            last_beat: 0.0,
            _on_message: on_message,
        };
        link.post(ANNOUNCE, &[0; 16], &[]);
        Some(link)
    }

    fn post(&self, kind: u8, to: &[u8; 16], payload: &[u8]) {
        let mut env = Vec::with_capacity(ENVELOPE + payload.len());
        env.push(kind);
        env.extend_from_slice(&self.me);
        env.extend_from_slice(to);
        env.extend_from_slice(payload);
        let _ = self
            .channel
            .post_message(&js_sys::Uint8Array::from(env.as_slice()));
    }

    /// Events since the last call; `remote_devices` and `last_synced` (ms) are what this tab
    /// reports in its heartbeats.
    pub fn poll(
        &mut self,
        now: f64,
        remote_devices: u16,
        last_synced: u64,
    ) -> (Vec<LinkEvent>, TabNews) {
        let mut status = remote_devices.to_le_bytes().to_vec();
        status.extend_from_slice(&last_synced.to_le_bytes());
        let mut out = Vec::new();
        let mut news = TabNews::default();
        let messages: Vec<Vec<u8>> = self.inbox.borrow_mut().drain(..).collect();
        for env in messages {
            if env.len() < ENVELOPE {
                continue;
            }
            let (kind, from, to, payload) = (env[0], &env[1..17], &env[17..33], &env[33..]);
            let key = PeerKey::tab(hex(from));
            if kind == BYE {
                if self.peers.remove(&key).is_some() {
                    out.push(LinkEvent::Down(key));
                }
                continue;
            }
            if kind == SPACE_CHANGED {
                news.space_changed = true;
                continue;
            }
            if kind == FRAME && to != self.me {
                continue;
            }
            if !self.peers.contains_key(&key) {
                out.push(LinkEvent::Up(key.clone()));
            }
            let peer = self.peers.entry(key.clone()).or_insert(Peer {
                last_heard: now,
                remote_devices: 0,
                last_synced: 0,
            });
            peer.last_heard = now;
            match kind {
                ANNOUNCE => {
                    let mut to = [0u8; 16];
                    to.copy_from_slice(from);
                    self.post(PRESENT, &to, &status);
                }
                PRESENT if payload.len() >= 10 => {
                    peer.remote_devices = u16::from_le_bytes([payload[0], payload[1]]);
                    let mut ms = [0u8; 8];
                    ms.copy_from_slice(&payload[2..10]);
                    peer.last_synced = u64::from_le_bytes(ms);
                }
                FRAME => out.push(LinkEvent::Frame {
                    peer: key,
                    lane: ferry_core::Lane::Main,
                    bytes: payload.to_vec(),
                }),
                _ => {}
            }
        }
        let gone: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| now - p.last_heard > GONE_AFTER_MS)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.peers.remove(&key);
            out.push(LinkEvent::Down(key));
        }
        if now - self.last_beat > HEARTBEAT_MS {
            self.last_beat = now;
            self.post(PRESENT, &[0; 16], &status);
        }
        (out, news)
    }

    /// Remote devices reachable through the best-connected sibling tab.
    pub fn remote_devices_via_tabs(&self) -> usize {
        self.peers
            .values()
            .map(|p| usize::from(p.remote_devices))
            .max()
            .unwrap_or(0)
    }

    /// The most recent full sync with another device reported by a sibling tab (ms).
    pub fn last_synced_via_tabs(&self) -> u64 {
        self.peers
            .values()
            .map(|p| p.last_synced)
            .max()
            .unwrap_or(0)
    }

    /// Sends a frame to one tab.
    pub fn send(&self, peer: &PeerKey, frame: &[u8]) {
        if !peer.is_tab() {
            return;
        }
        let id = &peer.id;
        let mut to = [0u8; 16];
        for (i, chunk) in id.as_bytes().chunks(2).take(16).enumerate() {
            let pair = std::str::from_utf8(chunk).unwrap_or("00");
            to[i] = u8::from_str_radix(pair, 16).unwrap_or(0);
        }
        self.post(FRAME, &to, frame);
    }

    /// Posts a goodbye when the page goes away, so siblings notice at once.
    pub fn say_goodbye_on_pagehide(&self) {
        let channel = self.channel.clone();
        let mut env = vec![BYE];
        env.extend_from_slice(&self.me);
        env.extend_from_slice(&[0; 16]);
        let cb = Closure::<dyn FnMut()>::new(move || {
            let _ = channel.post_message(&js_sys::Uint8Array::from(env.as_slice()));
        });
        if let Some(w) = web_sys::window() {
            let _ = w.add_event_listener_with_callback("pagehide", cb.as_ref().unchecked_ref());
        }
        cb.forget();
    }

    /// Tells sibling tabs this browser moved to another space.
    pub fn announce_space_change(&self) {
        self.post(SPACE_CHANGED, &[0; 16], &[]);
    }

    /// Says goodbye (on `pagehide` and before switching spaces).
    pub fn close(&self) {
        self.post(BYE, &[0; 16], &[]);
        self.channel.close();
    }
}
