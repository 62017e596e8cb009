//! Sibling tabs of one browser profile, linked by a `BroadcastChannel` named after the room:
//! they sync instantly with no server at all. This adapter only moves envelopes; what they
//! mean (who is there, frames, presence, goodbye, a silent tab gone) is the core's
//! `device::tabs::TabPeers`, host-tested.

use ferry_core::PeerKey;
use ferry_core::device::LinkEvent;
use ferry_core::device::tabs::{Status, TabPeers, Turn};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BroadcastChannel, MessageEvent};

/// What `poll` found besides link events.
#[derive(Default)]
pub struct TabNews {
    /// Another tab switched this browser to another space.
    pub space_changed: bool,
}

/// The link to sibling tabs.
pub struct TabLink {
    channel: BroadcastChannel,
    tabs: TabPeers,
    inbox: Rc<RefCell<Vec<Vec<u8>>>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
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
        let (tabs, hello) = TabPeers::open(me);
        let link = TabLink {
            channel,
            tabs,
            inbox,
            _on_message: on_message,
        };
        link.post(&hello);
        Some(link)
    }

    fn post(&self, env: &[u8]) {
        let _ = self.channel.post_message(&js_sys::Uint8Array::from(env));
    }

    /// Events since the last call; `remote_devices` and `last_synced` (ms) are what this tab
    /// reports in its presence.
    pub fn poll(
        &mut self,
        now: f64,
        remote_devices: u16,
        last_synced: u64,
    ) -> (Vec<LinkEvent>, TabNews) {
        let status = Status {
            remote_devices,
            last_synced,
        };
        let now = now as u64;
        let mut turn = Turn::default();
        let messages: Vec<Vec<u8>> = self.inbox.borrow_mut().drain(..).collect();
        for env in messages {
            self.tabs.receive(&env, now, status, &mut turn);
        }
        self.tabs.tick(now, status, &mut turn);
        for env in &turn.posts {
            self.post(env);
        }
        let news = TabNews {
            space_changed: turn.space_changed,
        };
        (turn.events, news)
    }

    /// Remote devices reachable through the best-connected sibling tab.
    pub fn remote_devices_via_tabs(&self) -> usize {
        self.tabs.remote_devices_via_tabs()
    }

    /// The most recent full sync with another device reported by a sibling tab (ms).
    pub fn last_synced_via_tabs(&self) -> u64 {
        self.tabs.last_synced_via_tabs()
    }

    /// Sends a frame to one tab (nothing for a peer that is not a tab).
    pub fn send(&self, peer: &PeerKey, frame: &[u8]) {
        if let Some(env) = self.tabs.frame(peer, frame) {
            self.post(&env);
        }
    }

    /// Posts a goodbye when the page goes away, so siblings notice at once.
    pub fn say_goodbye_on_pagehide(&self) {
        let channel = self.channel.clone();
        let env = self.tabs.bye();
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
        self.post(&self.tabs.space_changed());
    }

    /// Says goodbye (on `pagehide` and before switching spaces).
    pub fn close(&self) {
        self.post(&self.tabs.bye());
        self.channel.close();
    }
}
