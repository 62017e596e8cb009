//! Ferry's signaling topology: matchbox's full mesh, hardened for a public endpoint.
//!
//! It speaks matchbox's full-mesh protocol (`matchbox_protocol`) but runs its own per-peer
//! loop: matchbox_signaling has no per-message hook and queues outgoing messages without
//! bound, so neither its handler nor its sender task is used.
//!
//! - signals are delivered only to peers of the sender's own room (a peer id from another
//!   room is "unknown"), rooms are named by ids of bounded length and alphabet;
//! - at most `max_peers_per_room` peers per room (a person's devices, not a crowd);
//! - messages above `max_message_bytes` and binary messages close the connection;
//! - a token bucket limits messages per connection, another joins per address (429 before
//!   the upgrade);
//! - a connection silent for `idle_timeout` is closed (clients send keep-alives);
//! - what waits to be written to a peer is bounded (`max_queued_bytes`): a peer that does not
//!   read is dropped rather than buffered for (security finding 7).
//!
//! The server never sees what devices say to each other: only room ids and WebRTC session
//! descriptions. Nothing here panics on client input.

use crate::intake::{PerAddress, Rate};
use axum::extract::ws::WebSocket;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use matchbox_protocol::{JsonPeerEvent, JsonPeerRequest, PeerId, PeerRequest};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

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
    /// Bytes allowed to wait for a peer's socket; past it the peer is dropped. Bounds what a
    /// peer that never reads can make the server hold (a few SDPs need a few KiB).
    pub max_queued_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_peers_per_room: 16,
            max_message_bytes: 64 * 1024,
            messages_per_second: 20.0,
            burst: 100.0,
            idle_timeout: Duration::from_secs(60),
            max_queued_bytes: 1024 * 1024,
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

/// Most messages waiting for one peer, whatever their size.
const QUEUE_MESSAGES: usize = 256;

/// The sending side of one peer's bounded outgoing queue (what `join`/`deliver` write to).
///
/// matchbox_signaling's `spawn_sender_task` queues without bound, so a socket that never
/// reads let another peer of its room grow server memory at 64 KiB a message. Here a full
/// queue (by bytes or count) *kicks* the slow peer instead: its reader and writer both stop,
/// and dropping the socket closes the TCP connection.
#[derive(Clone)]
struct PeerTx {
    tx: mpsc::Sender<Message>,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
    kick: Arc<watch::Sender<bool>>,
}

fn message_len(m: &Message) -> usize {
    match m {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) => 0,
    }
}

impl PeerTx {
    /// Queues `m`; `false` if the peer is gone or was just kicked for being too slow.
    fn send(&self, m: Message) -> bool {
        let len = message_len(&m);
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.max_bytes {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.kick_slow();
            return false;
        }
        match self.tx.try_send(m) {
            Ok(()) => true,
            Err(e) => {
                self.queued.fetch_sub(len, Ordering::AcqRel);
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    self.kick_slow();
                }
                false
            }
        }
    }

    fn kick_slow(&self) {
        if !self.kick.send_replace(true) {
            warn!("dropping a peer that does not read (its send queue is full)");
        }
    }
}

/// Writes a peer's queue to its socket until the queue closes, a close frame went out, a
/// write stalls for `stall` (the peer stopped reading), or the peer is kicked.
async fn write_queue(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
    queued: Arc<AtomicUsize>,
    mut kicked: watch::Receiver<bool>,
    stall: Duration,
) {
    // `wait_for` fails once every `PeerTx` is gone: that is no kick (the `Ok(_)` patterns
    // disable the branch), and the queue still drains its last messages, a close frame say.
    loop {
        let m = tokio::select! {
            biased;
            Ok(_) = kicked.wait_for(|k| *k) => break,
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        queued.fetch_sub(message_len(&m), Ordering::AcqRel);
        let closing = matches!(m, Message::Close(_));
        let sent = tokio::select! {
            biased;
            Ok(_) = kicked.wait_for(|k| *k) => break,
            r = tokio::time::timeout(stall, sink.send(m)) => matches!(r, Ok(Ok(()))),
        };
        if !sent || closing {
            break;
        }
    }
}

type Rooms = HashMap<String, HashMap<PeerId, PeerTx>>;

/// Shared state: rooms and their peers, plus the limits.
#[derive(Clone, Default)]
pub struct MeshState {
    rooms: Arc<Mutex<Rooms>>,
    limits: Limits,
    /// Joins per address (finding 1): every join makes each device in the room set up a
    /// WebRTC connection, so a stranger who knows a room id must not join it in a loop.
    joins: Option<Arc<PerAddress>>,
}

impl MeshState {
    /// State enforcing `limits`, and `join_rate` joins per address if set.
    pub fn new(limits: Limits, join_rate: Option<Rate>) -> Self {
        MeshState {
            rooms: Arc::default(),
            limits,
            joins: join_rate.map(|r| Arc::new(PerAddress::new(r))),
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        // A poisoned lock only means another handler panicked mid-update; the map itself is
        // still consistent enough to keep serving.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a peer unless the room is full; tells the others about it.
    fn join(&self, room: &str, peer: PeerId, sender: PeerTx) -> bool {
        let mut rooms = self.rooms();
        let members = rooms.entry(room.to_owned()).or_default();
        if members.len() >= self.limits.max_peers_per_room {
            return false;
        }
        let event = Message::Text(JsonPeerEvent::NewPeer(peer).to_string().into());
        for other in members.values() {
            other.send(event.clone());
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
            other.send(event.clone());
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
            .is_some_and(|s| s.send(message))
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

fn close_with(sender: &PeerTx, code: u16, reason: &'static str) {
    sender.send(Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    })));
}

/// Initial read buffer of a connection. tungstenite's default (128 KiB) is zero-filled when
/// the first frame is read, so each idle peer held 128 KiB of RSS (the load bench measured
/// 142 KiB per peer); signaling messages are a few KiB and the buffer still grows on demand.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// `GET /<room>`: upgrades to a WebSocket and runs the peer in its room.
///
/// This replaces matchbox_signaling's own handler to size the connection's buffers (its
/// handler gives no access to the `WebSocketUpgrade` configuration) and to bound the queue.
pub async fn upgrade_room(
    ws: WebSocketUpgrade,
    Path(room): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    State(state): State<MeshState>,
) -> Response {
    upgrade(ws, room, addr, state)
}

/// `GET /`: matchbox clients without a room path meet in the room `world`.
pub async fn upgrade_world(
    ws: WebSocketUpgrade,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    State(state): State<MeshState>,
) -> Response {
    upgrade(ws, "world".to_owned(), addr, state)
}

/// The answer to a join over the per-address rate, before any upgrade.
fn too_many_joins(retry: Duration) -> Response {
    let secs = retry.as_secs_f64().ceil().max(1.0) as u64;
    let body = serde_json::json!({
        "error": format!("too many joins from your address; try again in {secs} s"),
        "code": "join_rate",
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

fn upgrade(ws: WebSocketUpgrade, room: String, addr: SocketAddr, state: MeshState) -> Response {
    if let Some(joins) = &state.joins
        && let Err(retry) = joins.allow(addr.ip())
    {
        warn!("refused a join: over the per-address join rate");
        return too_many_joins(retry);
    }
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
            let limits = state.limits;
            let (tx, rx) = mpsc::channel(QUEUE_MESSAGES);
            let (kick, kicked) = watch::channel(false);
            let sender = PeerTx {
                tx,
                queued: Arc::default(),
                max_bytes: limits.max_queued_bytes,
                kick: Arc::new(kick),
            };
            tokio::spawn(write_queue(
                sink,
                rx,
                sender.queued.clone(),
                kicked.clone(),
                limits.idle_timeout,
            ));
            let hello = JsonPeerEvent::IdAssigned(peer_id).to_string();
            sender.send(Message::Text(hello.into()));
            run_peer(room, peer_id, sender, receiver, kicked, state).await;
        })
}

/// A short, stable tag for a room in logs: room ids are derived from the space secret and
/// let anyone join the room, so they are never logged (debug logs show this tag instead).
pub fn room_tag(room: &str) -> String {
    blake3::hash(room.as_bytes()).to_hex()[..8].to_owned()
}

/// One peer's life in its room (see the module docs): join, relay signals within the room
/// under the limits, leave. Ends early when the writer kicked the peer for not reading.
async fn run_peer(
    room: String,
    peer_id: PeerId,
    sender: PeerTx,
    mut receiver: SplitStream<WebSocket>,
    mut kicked: watch::Receiver<bool>,
    state: MeshState,
) {
    let limits = state.limits;
    let tag = room_tag(&room);
    if !valid_room(&room) {
        warn!(%peer_id, "refused: bad room name");
        close_with(&sender, close::POLICY, "bad room name");
        return;
    }
    if !state.join(&room, peer_id, sender.clone()) {
        warn!(%peer_id, "refused: room full");
        debug!(%peer_id, room = %tag, "room full");
        close_with(&sender, close::ROOM_FULL, "room full");
        return;
    }
    info!(%peer_id, "joined");
    debug!(%peer_id, room = %tag, "joined");
    let mut bucket = Bucket {
        tokens: limits.burst,
        last: Instant::now(),
    };
    loop {
        let next = tokio::select! {
            biased;
            Ok(_) = kicked.wait_for(|k| *k) => break,
            next = tokio::time::timeout(limits.idle_timeout, receiver.next()) => next,
        };
        let text = match next {
            Err(_) => {
                info!(%peer_id, "closing idle connection");
                close_with(&sender, close::IDLE, "idle");
                break;
            }
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
            // Pings make the server write pongs: they count against the rate like signals.
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {
                if bucket.take(&limits) {
                    continue;
                }
                warn!(%peer_id, "closing: rate limit (pings)");
                close_with(&sender, close::POLICY, "too many messages");
                break;
            }
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
                    debug!(%peer_id, %to, "signal to a peer not in this room (or too slow) dropped");
                }
            }
            Ok(PeerRequest::KeepAlive) => {}
            Err(_) => warn!(%peer_id, "ignored a malformed request"),
        }
    }
    state.leave(&room, peer_id);
    info!(%peer_id, "left");
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
