//! WebRTC link through `matchbox_socket`: one socket per space room, two reliable channels:
//! channel 0 carries sync and control, channel 1 file chunks, so a text never waits behind a
//! file.
//!
//! The adapter keeps matchbox on its non-panicking paths (`try_update_peers`, `try_send`,
//! ICE configuration validated by [`crate::config::Config::validate`] before it gets here) and
//! turns the socket into plain events for the runtime.

use crate::config::IceServer;
use ferry_core::device::{Link, LinkEvent};
use ferry_core::{Lane, PeerKey, Transport};
use matchbox_socket::{
    CandidateType, PeerId, PeerState, RelayProtocol, RtcIceServerConfig, WebRtcSocket,
};
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use thiserror::Error;

/// The channel of sync and control frames.
const CONTROL: usize = 0;
/// The channel of file chunks.
const BULK: usize = 1;

/// A send failed.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The peer is not (or no longer) connected.
    #[error("peer {0} is not connected")]
    UnknownPeer(String),
    /// The data channel refused the message.
    #[error("sending to {0} failed: {1}")]
    Send(String, String),
}

/// One connection to the signaling room and the peers met there.
pub struct RtcLink {
    socket: WebRtcSocket,
    closed: Rc<Cell<bool>>,
    id_known: Cell<bool>,
    peers: HashMap<String, PeerId>,
    /// A connection of this socket could not be restarted (see [`RtcLink::is_signaling_lost`]).
    restart_failed: Cell<bool>,
}

/// A fresh secret for resuming this socket's signaling id (16 random bytes as hex).
fn resume_key() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|b| format!("{b:02x}")).collect())
}

/// Restarts ICE on every connection when the browser reports a network change (`online`;
/// `navigator.connection`'s `change` where it exists), rather than waiting seconds for ICE
/// checks on the old path to time out. Installed once per page.
fn listen_for_network_changes() {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    thread_local!(static INSTALLED: Cell<bool> = const { Cell::new(false) });
    if INSTALLED.with(|i| i.replace(true)) {
        return;
    }
    let Some(window) = web_sys::window() else {
        return;
    };
    let changed = Closure::<dyn Fn()>::new(|| {
        log("the network changed: restarting ICE");
        matchbox_socket::restart_ice_all();
    })
    .into_js_value();
    let _ = window.add_event_listener_with_callback("online", changed.unchecked_ref());
    if let Ok(connection) = js_sys::Reflect::get(&window.navigator(), &"connection".into())
        && let Ok(connection) = connection.dyn_into::<web_sys::EventTarget>()
    {
        let _ = connection.add_event_listener_with_callback("change", changed.unchecked_ref());
    }
}

/// matchbox takes one `RTCIceServer` entry: merge all URLs into it, with the first
/// credentials found (TURN entries were validated to have them).
fn ice_config(servers: &[IceServer]) -> RtcIceServerConfig {
    RtcIceServerConfig {
        urls: servers.iter().flat_map(|s| s.urls.clone()).collect(),
        username: servers.iter().find_map(|s| s.username.clone()),
        credential: servers.iter().find_map(|s| s.credential.clone()),
    }
}

impl RtcLink {
    /// Connects to `<signal>/<room>`; the message loop runs on the local executor.
    pub fn connect(signal: &str, room: &str, ice: &[IceServer]) -> Self {
        let url = format!("{}/{room}", signal.trim_end_matches('/'));
        let mut builder = WebRtcSocket::builder(url)
            .ice_server(ice_config(ice))
            .reconnect_attempts(Some(2))
            .signaling_keep_alive_interval(Some(Duration::from_secs(10)))
            .add_reliable_channel()
            .add_reliable_channel();
        // After a network change the socket re-dials signaling under the same peer id (the
        // key proves it is us) so ICE restarts reach the peers that know us by that id.
        if let Some(key) = resume_key() {
            builder = builder.resume_key(key);
        }
        let (socket, message_loop) = builder.build();
        log_matchbox_to_console();
        listen_for_network_changes();
        let closed = Rc::new(Cell::new(false));
        let flag = closed.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = message_loop.await {
                log(&format!("signaling ended: {e}"));
            }
            flag.set(true);
        });
        RtcLink {
            socket,
            closed,
            id_known: Cell::new(false),
            peers: HashMap::new(),
            restart_failed: Cell::new(false),
        }
    }

    /// Whether the signaling connection (and with it the socket) has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Whether the signaling connection ended while the socket lives on for connected peers,
    /// or a connection this socket carried could not be restarted after a network change:
    /// time for a new socket to meet the peers (again).
    pub fn is_signaling_lost(&self) -> bool {
        self.socket.is_signaling_lost() || self.restart_failed.get()
    }

    /// Whether this link carries the given peer.
    pub fn has_peer(&self, peer: &PeerKey) -> bool {
        peer.transport == Transport::Rtc && self.peers.contains_key(&peer.id)
    }

    /// The peers this link carries.
    pub fn peer_keys(&self) -> Vec<PeerKey> {
        self.peers.keys().cloned().map(PeerKey::rtc).collect()
    }

    /// Whether the signaling server has accepted us (refreshes the cached answer).
    pub fn is_signaling(&mut self) -> bool {
        if !self.id_known.get() {
            self.id_known.set(self.socket.id().is_some());
        }
        !self.closed.get() && self.id_known.get()
    }

    /// Last known answer of [`RtcLink::is_signaling`], without polling.
    pub fn has_id(&self) -> bool {
        self.id_known.get()
    }

    /// Collects peer changes and received packets since the last call.
    pub fn poll(&mut self) -> Vec<LinkEvent> {
        let mut out = Vec::new();
        if self.closed.get() {
            for (key, _) in self.peers.drain() {
                out.push(LinkEvent::Down(PeerKey::rtc(key)));
            }
            return out;
        }
        if let Ok(changes) = self.socket.try_update_peers() {
            for (peer, state) in changes {
                let key = peer.to_string();
                match state {
                    PeerState::Connected => {
                        self.peers.insert(key.clone(), peer);
                        out.push(LinkEvent::Up(PeerKey::rtc(key)));
                    }
                    PeerState::Disconnected => {
                        self.peers.remove(&key);
                        // An ICE restart that could not bring the connection back: the peer
                        // is still in the room, and only a new socket meets it again.
                        if matchbox_socket::restart_failed(peer) {
                            log(&format!(
                                "the connection to {peer} could not be restarted: connecting anew"
                            ));
                            self.restart_failed.set(true);
                        }
                        out.push(LinkEvent::Down(PeerKey::rtc(key)));
                    }
                }
            }
        }
        if let Ok(channel) = self.socket.get_channel_mut(CONTROL) {
            for (peer, packet) in channel.receive() {
                out.push(LinkEvent::Frame {
                    peer: PeerKey::rtc(peer.to_string()),
                    lane: Lane::Main,
                    bytes: packet.to_vec(),
                });
            }
        }
        if let Ok(channel) = self.socket.get_channel_mut(BULK) {
            for (peer, packet) in channel.receive() {
                out.push(LinkEvent::Frame {
                    peer: PeerKey::rtc(peer.to_string()),
                    lane: Lane::Bulk,
                    bytes: packet.to_vec(),
                });
            }
        }
        out
    }

    /// Sends one packet to a peer.
    pub fn send(&mut self, peer: &PeerKey, frame: Vec<u8>) -> Result<(), LinkError> {
        self.send_on(CONTROL, peer, frame)
    }

    /// Sends one packet of a file transfer to a peer (the transfer engine bounds how much is
    /// in flight, so the browser's send queue never overflows).
    pub fn send_bulk(&mut self, peer: &PeerKey, frame: Vec<u8>) -> Result<(), LinkError> {
        self.send_on(BULK, peer, frame)
    }

    fn send_on(&mut self, channel: usize, peer: &PeerKey, frame: Vec<u8>) -> Result<(), LinkError> {
        let id = *self
            .peers
            .get(&peer.id)
            .filter(|_| peer.transport == Transport::Rtc)
            .ok_or_else(|| LinkError::UnknownPeer(peer.to_string()))?;
        let channel = self
            .socket
            .get_channel_mut(channel)
            .map_err(|e| LinkError::Send(peer.to_string(), e.to_string()))?;
        channel
            .try_send(frame.into(), id)
            .map_err(|e| LinkError::Send(peer.to_string(), e.to_string()))
    }

    /// How a connected peer is reached, in words for the device list ("direct", "via STUN",
    /// "relayed via TURN"), with the measured round trip; `None` until the browser reports
    /// the candidate pair.
    pub fn path(&self, peer: &PeerKey) -> Option<String> {
        if peer.transport != Transport::Rtc {
            return None;
        }
        let id = *self.peers.get(&peer.id)?;
        // The connection is alive but its network path is being rebuilt (ICE restart);
        // what is sent meanwhile waits in the data channel.
        if matchbox_socket::reconnecting_peers().contains(&id) {
            return Some("reconnecting after a network change".to_owned());
        }
        let pair = self.socket.candidate_pair(id)?;
        let path = if pair.is_relayed() {
            match pair.relay_protocol {
                Some(RelayProtocol::Udp) => "relayed via TURN (UDP)",
                Some(RelayProtocol::Tcp) => "relayed via TURN (TCP)",
                Some(RelayProtocol::Tls) => "relayed via TURN (TLS)",
                // Only the other end relays (its own way to its server is not ours to see).
                None => "relayed via TURN",
            }
        } else if pair.remote == CandidateType::ServerReflexive
            || pair.local == CandidateType::ServerReflexive
        {
            "direct via STUN"
        } else {
            "direct"
        };
        Some(crate::view::path_text(path, pair.rtt_ms))
    }

    /// Connections (of any socket) that failed before they ever connected since the last
    /// call, as the facts [`crate::view::failure_reason`] words.
    pub fn take_failures(ice: &[IceServer]) -> Vec<crate::view::FailedPath> {
        let urls = || ice.iter().flat_map(|s| s.urls.iter());
        let tcp = |u: &&String| u.starts_with("turns:") || u.contains("transport=tcp");
        let turn_configured = urls().any(|u| u.starts_with("turn:") || u.starts_with("turns:"));
        let tcp_relay = urls().any(|u| tcp(&u));
        let udp_servers = urls().any(|u| !tcp(&u));
        let turns = || urls().filter(|u| u.starts_with("turn:") || u.starts_with("turns:"));
        let tls_relays_only = turn_configured && turns().all(|u| u.starts_with("turns:"));
        matchbox_socket::take_ice_failures()
            .into_iter()
            .map(|f| crate::view::FailedPath {
                local_relay: f.local.contains(&CandidateType::Relay),
                remote_relay: f.remote.contains(&CandidateType::Relay),
                turn_configured,
                local_reflexive: f.local.contains(&CandidateType::ServerReflexive),
                udp_servers,
                tcp_relay,
                tls_relays_only,
            })
            .collect()
    }

    /// What the signaling server sent that the socket ignored since the last call (a second
    /// id, unreadable or oversized messages, a peer announced twice), each a clause such as
    /// "it assigned this device a second id". Anything here means the server misbehaves.
    pub fn take_signaling_problems(&self) -> Vec<String> {
        self.socket.take_signaling_errors()
    }

    /// Closes the socket (e.g. before joining another space).
    pub fn close(mut self) -> Vec<PeerKey> {
        self.socket.close();
        self.peers.drain().map(|(k, _)| PeerKey::rtc(k)).collect()
    }
}

/// The core's link port (the runtime's `Router` owns current and retired sockets).
impl Link for RtcLink {
    type Error = LinkError;

    fn poll(&mut self) -> Vec<LinkEvent> {
        RtcLink::poll(self)
    }

    fn peer_keys(&self) -> Vec<PeerKey> {
        RtcLink::peer_keys(self)
    }

    fn has_peer(&self, peer: &PeerKey) -> bool {
        RtcLink::has_peer(self, peer)
    }

    fn send(&mut self, peer: &PeerKey, lane: Lane, frame: Vec<u8>) -> Result<(), LinkError> {
        match lane {
            Lane::Main => RtcLink::send(self, peer, frame),
            Lane::Bulk => RtcLink::send_bulk(self, peer, frame),
        }
    }

    fn is_closed(&self) -> bool {
        RtcLink::is_closed(self)
    }

    fn close(self) -> Vec<PeerKey> {
        RtcLink::close(self)
    }
}

/// Shows matchbox's own notes (warnings, and info such as "signaling resumed" or "connection
/// is back after 2400 ms") in the browser console, where a person debugging a connection looks.
struct MatchboxConsole;

impl log::Log for MatchboxConsole {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.level() <= log::Level::Info && meta.target().starts_with("matchbox_socket")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let text = format!("matchbox: {}", record.args());
            if record.level() <= log::Level::Warn {
                web_sys::console::warn_1(&text.into());
            } else {
                web_sys::console::info_1(&text.into());
            }
        }
    }

    fn flush(&self) {}
}

static MATCHBOX_CONSOLE: MatchboxConsole = MatchboxConsole;

/// Installs [`MatchboxConsole`] (once; a second call is refused by `log` and ignored).
pub fn log_matchbox_to_console() {
    if log::set_logger(&MATCHBOX_CONSOLE).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

fn log(msg: &str) {
    web_sys::console::warn_1(&msg.into());
}
