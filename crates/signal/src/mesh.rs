//! Ferry's signaling topology: matchbox's full mesh, hardened for a public endpoint.
//!
//! matchbox_signaling has no per-message hook, so this is a custom topology on its public API:
//! - signals are delivered only to peers of the sender's own room (a peer id from another
//!   room is "unknown"), rooms are named by ids of bounded length and alphabet;
//! - at most `max_peers_per_room` peers per room (a person's devices, not a crowd);
//! - messages above `max_message_bytes` and binary messages close the connection;
//! - a token bucket limits messages per connection;
//! - a connection silent for `idle_timeout` is closed (clients send keep-alives).
//!
//! The server never sees what devices say to each other: only room ids and WebRTC session
//! descriptions. Nothing here panics on client input.

use async_trait::async_trait;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use futures::StreamExt;
use matchbox_protocol::{JsonPeerEvent, JsonPeerRequest, PeerId, PeerRequest};
use matchbox_signaling::common_logic::{SignalingChannel, spawn_sender_task};
use matchbox_signaling::{NoCallbacks, SignalingState, SignalingTopology, WsStateMeta};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Limits of the endpoint. Defaults suit a personal or family deployment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Peers allowed in one room at once.
    pub max_peers_per_room: usize,
    /// Largest text message accepted (an SDP with all ICE candidates is a few KiB).
    pub max_message_bytes: usize,
    /// Sustained messages per second per connection.
    pub messages_per_second: f64,
    /// Burst of messages allowed above the sustained rate.
    pub burst: f64,
    /// Close connections silent for this long.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_peers_per_room: 16,
            max_message_bytes: 64 * 1024,
            messages_per_second: 20.0,
            burst: 100.0,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Close codes sent to clients (4000–4999 are free for applications).
pub mod close {
    /// The room already has `max_peers_per_room` peers.
    pub const ROOM_FULL: u16 = 4001;
    /// A message exceeded `max_message_bytes` (RFC 6455 "message too big").
    pub const TOO_BIG: u16 = 1009;
    /// Too many messages, binary messages, or a bad room name (RFC 6455 "policy violation").
    pub const POLICY: u16 = 1008;
    /// Idle for `idle_timeout`.
    pub const IDLE: u16 = 4008;
}

type Rooms = HashMap<String, HashMap<PeerId, SignalingChannel>>;

/// Shared state: rooms and their peers, plus the limits.
#[derive(Clone, Default)]
pub struct MeshState {
    rooms: Arc<Mutex<Rooms>>,
    limits: Limits,
}

impl SignalingState for MeshState {}

impl MeshState {
    /// State enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        MeshState {
            rooms: Arc::default(),
            limits,
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        // A poisoned lock only means another handler panicked mid-update; the map itself is
        // still consistent enough to keep serving.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a peer unless the room is full; tells the others about it.
    fn join(&self, room: &str, peer: PeerId, sender: SignalingChannel) -> bool {
        let mut rooms = self.rooms();
        let members = rooms.entry(room.to_owned()).or_default();
        if members.len() >= self.limits.max_peers_per_room {
            return false;
        }
        let event = Message::Text(JsonPeerEvent::NewPeer(peer).to_string().into());
        for other in members.values() {
            let _ = other.send(Ok(event.clone()));
        }
        members.insert(peer, sender);
        true
    }

    fn leave(&self, room: &str, peer: PeerId) {
        let mut rooms = self.rooms();
        let Some(members) = rooms.get_mut(room) else {
            return;
        };
        if members.remove(&peer).is_none() {
            return;
        }
        let event = Message::Text(JsonPeerEvent::PeerLeft(peer).to_string().into());
        for other in members.values() {
            let _ = other.send(Ok(event.clone()));
        }
        if members.is_empty() {
            rooms.remove(room);
        }
    }

    /// Delivers to `to` only if it is in `room`.
    fn deliver(&self, room: &str, to: PeerId, message: Message) -> bool {
        self.rooms()
            .get(room)
            .and_then(|m| m.get(&to))
            .is_some_and(|s| s.send(Ok(message)).is_ok())
    }
}

/// A room id as Ferry makes them (hex) or as other matchbox apps do: short and plain.
fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= 128
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, limits: &Limits) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * limits.messages_per_second;
        self.tokens = (self.tokens + refill).min(limits.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn close_with(sender: &SignalingChannel, code: u16, reason: &'static str) {
    let _ = sender.send(Ok(Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))));
}

/// Initial read buffer of a connection. tungstenite's default (128 KiB) is zero-filled when
/// the first frame is read, so each idle peer held 128 KiB of RSS (the load bench measured
/// 142 KiB per peer); signaling messages are a few KiB and the buffer still grows on demand.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// `GET /<room>`: upgrades to a WebSocket and runs [`FerryMesh`] for the new peer.
///
/// This replaces matchbox_signaling's own handler only to size the connection's buffers:
/// its handler gives no access to the `WebSocketUpgrade` configuration.
pub async fn upgrade_room(
    ws: WebSocketUpgrade,
    Path(room): Path<String>,
    State(state): State<MeshState>,
) -> Response {
    upgrade(ws, room, state)
}

/// `GET /`: matchbox clients without a room path meet in the room `world`.
pub async fn upgrade_world(ws: WebSocketUpgrade, State(state): State<MeshState>) -> Response {
    upgrade(ws, "world".to_owned(), state)
}

fn upgrade(ws: WebSocketUpgrade, room: String, state: MeshState) -> Response {
    // Messages a little above the limit still arrive whole, so the topology can close the
    // connection with "message too big"; far larger ones fail in the codec before they are
    // buffered in full.
    let max_message = state
        .limits
        .max_message_bytes
        .saturating_mul(4)
        .max(64 * 1024);
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            let peer_id = PeerId(uuid::Uuid::new_v4());
            let (sink, receiver) = socket.split();
            let sender = spawn_sender_task(sink);
            let hello = JsonPeerEvent::IdAssigned(peer_id).to_string();
            let _ = sender.send(Ok(Message::Text(hello.into())));
            FerryMesh::state_machine(WsStateMeta {
                room,
                peer_id,
                sender,
                receiver,
                callbacks: NoCallbacks {},
                state,
            })
            .await;
        })
}

/// The topology (see the module docs).
#[derive(Debug, Default)]
pub struct FerryMesh;

#[async_trait]
impl SignalingTopology<NoCallbacks, MeshState> for FerryMesh {
    async fn state_machine(upgrade: WsStateMeta<NoCallbacks, MeshState>) {
        let WsStateMeta {
            room,
            peer_id,
            sender,
            mut receiver,
            state,
            ..
        } = upgrade;
        let limits = state.limits;
        if !valid_room(&room) {
            warn!(%peer_id, "refused: bad room name");
            close_with(&sender, close::POLICY, "bad room name");
            return;
        }
        if !state.join(&room, peer_id, sender.clone()) {
            warn!(%peer_id, %room, "refused: room full");
            close_with(&sender, close::ROOM_FULL, "room full");
            return;
        }
        info!(%peer_id, %room, "joined");
        let mut bucket = Bucket {
            tokens: limits.burst,
            last: Instant::now(),
        };
        loop {
            let text = match tokio::time::timeout(limits.idle_timeout, receiver.next()).await {
                Err(_) => {
                    info!(%peer_id, "closing idle connection");
                    close_with(&sender, close::IDLE, "idle");
                    break;
                }
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(Message::Binary(_)))) => {
                    warn!(%peer_id, "closing: binary message");
                    close_with(&sender, close::POLICY, "binary messages are not signaling");
                    break;
                }
                Ok(Some(Ok(Message::Text(text)))) => text,
            };
            if text.len() > limits.max_message_bytes {
                warn!(%peer_id, bytes = text.len(), "closing: message too big");
                close_with(&sender, close::TOO_BIG, "message too big");
                break;
            }
            if !bucket.take(&limits) {
                warn!(%peer_id, "closing: rate limit");
                close_with(&sender, close::POLICY, "too many messages");
                break;
            }
            match JsonPeerRequest::from_str(&text) {
                Ok(PeerRequest::Signal { receiver: to, data }) => {
                    let event = JsonPeerEvent::Signal {
                        sender: peer_id,
                        data,
                    };
                    let message = Message::Text(event.to_string().into());
                    if !state.deliver(&room, to, message) {
                        info!(%peer_id, %to, "signal to a peer not in this room dropped");
                    }
                }
                Ok(PeerRequest::KeepAlive) => {}
                Err(_) => warn!(%peer_id, "ignored a malformed request"),
            }
        }
        state.leave(&room, peer_id);
        info!(%peer_id, %room, "left");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_bounded() {
        assert!(valid_room("0123456789abcdef0123456789abcdef"));
        assert!(!valid_room(""));
        assert!(!valid_room(&"a".repeat(129)));
        assert!(!valid_room("a/b"));
        assert!(!valid_room("a b"));
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let limits = Limits {
            burst: 3.0,
            messages_per_second: 0.0001,
            ..Limits::default()
        };
        let mut b = Bucket {
            tokens: 3.0,
            last: Instant::now(),
        };
        assert!((0..3).all(|_| b.take(&limits)));
        assert!(!b.take(&limits));
    }
}
