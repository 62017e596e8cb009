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
//!
//! ## Resuming a peer id
//!
//! A phone that changes network loses its signaling connection silently, but its WebRTC
//! connections survive an ICE restart, whose offer/answer must travel under the peer id the
//! other devices know it by. So a client may re-dial and take its id back. The upgrade URL
//! (`GET /<room>` or `GET /`) takes two optional query parameters:
//!
//! - `key`: a secret the client chooses, 32–128 hex digits (compared case-insensitively). On
//!   a normal join the server keeps only `blake3(key)` with the peer's room entry; such a peer
//!   can be resumed. Without a key, or with one that is not 32–128 hex digits, the join works
//!   as always but cannot be resumed (old clients keep working).
//! - `resume`: the peer id (uuid) to take back, with the same `key`. If the room has that peer
//!   and its stored hash matches (constant-time), the new connection replaces the old one:
//!   the old one is kicked (its socket dropped, what was queued to it lost), the new one gets
//!   `{"IdAssigned": "<same id>"}` and runs as a normal peer, and the room's other peers hear
//!   nothing (no `PeerLeft`, no `NewPeer`). Each connection has a serial number stored in the
//!   room entry, so the old connection's end does not remove the new one. Otherwise (no such
//!   peer in the room, wrong or missing key, malformed id) no id is assigned and the
//!   connection closes with [`close::CANNOT_RESUME`]; the client then joins afresh.
//!
//! A resume counts against the per-address join rate like a join, and a full room does not
//! refuse it (the peer is already counted). A bad room name closes it with `POLICY`, as on a
//! join.

use crate::intake::{PerAddress, Rate};
use axum::extract::ws::WebSocket;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use matchbox_protocol::{JsonPeerEvent, JsonPeerRequest, PeerId, PeerRequest};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// A `resume` the server cannot honour (unknown peer, wrong or missing key): join afresh.
    pub const CANNOT_RESUME: u16 = 4004;
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

    /// Stops the connection's reader and writer, which drops its socket.
    fn kick(&self) {
        self.kick.send_replace(true);
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

/// One peer of a room.
struct Member {
    /// Its current connection.
    tx: PeerTx,
    /// `blake3` of the key it joined with: only a client that knows the key may resume it.
    key: Option<blake3::Hash>,
    /// Which connection holds the id: a replaced connection must not `leave` for its
    /// successor.
    serial: u64,
}

type Rooms = HashMap<String, HashMap<PeerId, Member>>;

/// Why a `resume` was refused (all close with [`close::CANNOT_RESUME`]; told apart only in
/// the server's log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum CannotResume {
    #[error("no valid peer id and key in the request")]
    Malformed,
    #[error("no such peer in this room")]
    Unknown,
    #[error("the key does not match the peer's")]
    WrongKey,
}

/// What the upgrade URL's query asks for (see the module docs).
#[derive(Debug, PartialEq)]
enum Admission {
    /// A fresh peer id, resumable later if it came with a valid key (its hash here).
    Join { key: Option<blake3::Hash> },
    /// This peer id back, if the room has it under this key's hash.
    Resume(Result<(PeerId, blake3::Hash), CannotResume>),
}

/// `blake3` of a resume key if it is 32–128 hex digits (case does not matter); anything else
/// is no key, so a client sending something odd is merely not resumable.
fn key_hash(key: &str) -> Option<blake3::Hash> {
    let valid = (32..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| blake3::hash(key.to_ascii_lowercase().as_bytes()))
}

/// Reads `key` and `resume` from the query (the first of each; others are ignored). Both
/// values are hex or a uuid, so nothing needs percent-decoding: an encoded one is invalid.
fn admission(query: Option<&str>) -> Admission {
    let (mut key, mut resume) = (None, None);
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "key" if key.is_none() => key = Some(value),
            "resume" if resume.is_none() => resume = Some(value),
            _ => {}
        }
    }
    let key = key.and_then(key_hash);
    match resume {
        None => Admission::Join { key },
        Some(id) => Admission::Resume(
            uuid::Uuid::try_parse(id)
                .ok()
                .map(PeerId)
                .zip(key)
                .ok_or(CannotResume::Malformed),
        ),
    }
}

/// Shared state: rooms and their peers, plus the limits.
#[derive(Clone, Default)]
pub struct MeshState {
    rooms: Arc<Mutex<Rooms>>,
    limits: Limits,
    /// Joins per address (finding 1): every join makes each device in the room set up a
    /// WebRTC connection, so a stranger who knows a room id must not join it in a loop.
    joins: Option<Arc<PerAddress>>,
    /// The last connection serial handed out (see [`Member::serial`]).
    serials: Arc<AtomicU64>,
}

impl MeshState {
    /// State enforcing `limits`, and `join_rate` joins per address if set.
    pub fn new(limits: Limits, join_rate: Option<Rate>) -> Self {
        MeshState {
            rooms: Arc::default(),
            limits,
            joins: join_rate.map(|r| Arc::new(PerAddress::new(r))),
            serials: Arc::default(),
        }
    }

    fn next_serial(&self) -> u64 {
        self.serials.fetch_add(1, Ordering::Relaxed)
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        // A poisoned lock only means another handler panicked mid-update; the map itself is
        // still consistent enough to keep serving.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a peer (connection `serial`, resumable with the key hashed to `key`) unless the
    /// room is full; tells the others about it.
    fn join(
        &self,
        room: &str,
        peer: PeerId,
        sender: PeerTx,
        key: Option<blake3::Hash>,
        serial: u64,
    ) -> bool {
        let mut rooms = self.rooms();
        let members = rooms.entry(room.to_owned()).or_default();
        if members.len() >= self.limits.max_peers_per_room {
            return false;
        }
        let event = Message::Text(JsonPeerEvent::NewPeer(peer).to_string().into());
        for other in members.values() {
            other.tx.send(event.clone());
        }
        members.insert(
            peer,
            Member {
                tx: sender,
                key,
                serial,
            },
        );
        true
    }

    /// Hands `peer` of `room` to connection `serial` if `key` is the hash it joined with:
    /// sends it `IdAssigned` and kicks the previous connection. The room hears nothing.
    fn resume(
        &self,
        room: &str,
        peer: PeerId,
        key: blake3::Hash,
        sender: PeerTx,
        serial: u64,
    ) -> Result<(), CannotResume> {
        let mut rooms = self.rooms();
        let member = rooms
            .get_mut(room)
            .and_then(|m| m.get_mut(&peer))
            .ok_or(CannotResume::Unknown)?;
        // `blake3::Hash` equality is constant-time.
        if !member.key.is_some_and(|k| k == key) {
            return Err(CannotResume::WrongKey);
        }
        // Under the lock, so that no signal can reach the new connection before its id.
        sender.send(Message::Text(
            JsonPeerEvent::IdAssigned(peer).to_string().into(),
        ));
        let old = std::mem::replace(&mut member.tx, sender);
        member.serial = serial;
        old.kick();
        Ok(())
    }

    /// Removes `peer` if connection `serial` still holds it (a resumed id belongs to the new
    /// connection), and tells the others.
    fn leave(&self, room: &str, peer: PeerId, serial: u64) {
        let mut rooms = self.rooms();
        let Some(members) = rooms.get_mut(room) else {
            return;
        };
        if members.get(&peer).is_none_or(|m| m.serial != serial) {
            return;
        }
        members.remove(&peer);
        let event = Message::Text(JsonPeerEvent::PeerLeft(peer).to_string().into());
        for other in members.values() {
            other.tx.send(event.clone());
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
            .is_some_and(|s| s.tx.send(message))
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

/// `GET /<room>[?key=…][&resume=…]`: upgrades to a WebSocket and runs the peer in its room.
///
/// This replaces matchbox_signaling's own handler to size the connection's buffers (its
/// handler gives no access to the `WebSocketUpgrade` configuration) and to bound the queue.
/// The query is read raw: a typed `Query` would answer 400 to a query it cannot parse, and
/// old clients must never be refused for one.
pub async fn upgrade_room(
    ws: WebSocketUpgrade,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    State(state): State<MeshState>,
) -> Response {
    upgrade(ws, room, admission(query.as_deref()), addr, state)
}

/// `GET /`: matchbox clients without a room path meet in the room `world`.
pub async fn upgrade_world(
    ws: WebSocketUpgrade,
    RawQuery(query): RawQuery,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    State(state): State<MeshState>,
) -> Response {
    upgrade(
        ws,
        "world".to_owned(),
        admission(query.as_deref()),
        addr,
        state,
    )
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

fn upgrade(
    ws: WebSocketUpgrade,
    room: String,
    admission: Admission,
    addr: SocketAddr,
    state: MeshState,
) -> Response {
    // A resume is a join from the network's point of view: it counts too.
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
            let serial = state.next_serial();
            let Some(peer_id) = admit(&room, admission, &sender, serial, &state) else {
                return;
            };
            run_peer(room, peer_id, serial, sender, receiver, kicked, state).await;
        })
}

/// Puts connection `serial` in its room under a fresh or a resumed peer id (see the module
/// docs), or closes it with the reason it was refused.
fn admit(
    room: &str,
    admission: Admission,
    sender: &PeerTx,
    serial: u64,
    state: &MeshState,
) -> Option<PeerId> {
    match admission {
        Admission::Join { key } => {
            let peer_id = PeerId(uuid::Uuid::new_v4());
            let hello = JsonPeerEvent::IdAssigned(peer_id).to_string();
            sender.send(Message::Text(hello.into()));
            if !valid_room(room) {
                warn!(%peer_id, "refused: bad room name");
                close_with(sender, close::POLICY, "bad room name");
                return None;
            }
            if !state.join(room, peer_id, sender.clone(), key, serial) {
                warn!(%peer_id, "refused: room full");
                debug!(%peer_id, room = %room_tag(room), "room full");
                close_with(sender, close::ROOM_FULL, "room full");
                return None;
            }
            info!(%peer_id, resumable = key.is_some(), "joined");
            debug!(%peer_id, room = %room_tag(room), "joined");
            Some(peer_id)
        }
        Admission::Resume(request) => {
            if !valid_room(room) {
                warn!("refused a resume: bad room name");
                close_with(sender, close::POLICY, "bad room name");
                return None;
            }
            let resumed = request.and_then(|(peer_id, key)| {
                state.resume(room, peer_id, key, sender.clone(), serial)?;
                Ok(peer_id)
            });
            match resumed {
                Ok(peer_id) => {
                    info!(%peer_id, "resumed");
                    debug!(%peer_id, room = %room_tag(room), "resumed");
                    Some(peer_id)
                }
                Err(e) => {
                    // An unknown id is the usual case (the server saw the old connection end
                    // first); a wrong key is someone guessing.
                    if e == CannotResume::WrongKey {
                        warn!("refused a resume: {e}");
                    } else {
                        info!("refused a resume: {e}");
                    }
                    close_with(sender, close::CANNOT_RESUME, "cannot resume");
                    None
                }
            }
        }
    }
}

/// A short, stable tag for a room in logs: room ids are derived from the space secret and
/// let anyone join the room, so they are never logged (debug logs show this tag instead).
pub fn room_tag(room: &str) -> String {
    blake3::hash(room.as_bytes()).to_hex()[..8].to_owned()
}

/// One admitted peer's life in its room (see the module docs): relay signals within the room
/// under the limits, leave. Ends early when the peer is kicked: by the writer for not
/// reading, or by a resume that took its id over.
async fn run_peer(
    room: String,
    peer_id: PeerId,
    serial: u64,
    sender: PeerTx,
    mut receiver: SplitStream<WebSocket>,
    mut kicked: watch::Receiver<bool>,
    state: MeshState,
) {
    let limits = state.limits;
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
    state.leave(&room, peer_id, serial);
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
    fn resume_keys_are_32_to_128_hex_digits() {
        let k = "0123456789abcdef".repeat(2);
        assert_eq!(key_hash(&k), Some(blake3::hash(k.as_bytes())));
        assert_eq!(key_hash(&k.to_uppercase()), key_hash(&k));
        assert!(key_hash(&"a".repeat(128)).is_some());
        assert!(key_hash(&"a".repeat(31)).is_none());
        assert!(key_hash(&"a".repeat(129)).is_none());
        assert!(key_hash(&format!("{}g", "a".repeat(31))).is_none());
        assert!(key_hash(&format!("{}é", "a".repeat(30))).is_none());
        assert!(key_hash("").is_none());
    }

    #[test]
    fn the_query_asks_for_a_join_or_a_resume() {
        let k = "ab".repeat(16);
        let h = key_hash(&k).unwrap();
        let id = uuid::Uuid::new_v4();
        assert_eq!(admission(None), Admission::Join { key: None });
        assert_eq!(admission(Some("")), Admission::Join { key: None });
        assert_eq!(
            admission(Some(&format!("x=1&key={k}&key=00"))),
            Admission::Join { key: Some(h) }
        );
        // An invalid key on a join is ignored: the join works, it just cannot be resumed.
        assert_eq!(admission(Some("key=xyz")), Admission::Join { key: None });
        assert_eq!(
            admission(Some(&format!("resume={id}&key={k}"))),
            Admission::Resume(Ok((PeerId(id), h)))
        );
        for bad in [
            format!("resume={id}"),
            format!("resume={id}&key=xyz"),
            format!("resume=not-a-uuid&key={k}"),
            format!("resume&key={k}"),
        ] {
            assert_eq!(
                admission(Some(&bad)),
                Admission::Resume(Err(CannotResume::Malformed)),
                "{bad}"
            );
        }
    }

    fn peer_tx() -> (PeerTx, mpsc::Receiver<Message>, watch::Receiver<bool>) {
        let (tx, rx) = mpsc::channel(QUEUE_MESSAGES);
        let (kick, kicked) = watch::channel(false);
        let tx = PeerTx {
            tx,
            queued: Arc::default(),
            max_bytes: 1 << 20,
            kick: Arc::new(kick),
        };
        (tx, rx, kicked)
    }

    #[test]
    fn a_resumed_id_is_left_only_by_its_new_connection() {
        let state = MeshState::new(Limits::default(), None);
        let key = key_hash(&"cd".repeat(16));
        let (a, peer) = (PeerId(uuid::Uuid::new_v4()), PeerId(uuid::Uuid::new_v4()));
        let (old, _old_rx, old_kicked) = peer_tx();
        let (b, mut b_rx, _) = peer_tx();
        assert!(state.join("r", a, old, key, 1));
        assert!(state.join("r", peer, b, None, 2));
        let (new, mut new_rx, _) = peer_tx();
        let wrong = key_hash(&"ef".repeat(16)).unwrap();
        assert_eq!(
            state.resume("r", a, wrong, new.clone(), 3),
            Err(CannotResume::WrongKey)
        );
        assert_eq!(
            state.resume("other", a, key.unwrap(), new.clone(), 3),
            Err(CannotResume::Unknown)
        );
        // B (joined without a key) cannot be resumed with any key.
        assert_eq!(
            state.resume("r", peer, wrong, new.clone(), 3),
            Err(CannotResume::WrongKey)
        );
        assert!(!*old_kicked.borrow());
        assert_eq!(state.resume("r", a, key.unwrap(), new, 3), Ok(()));
        assert!(*old_kicked.borrow());
        let hello = new_rx.try_recv().unwrap();
        assert_eq!(
            hello.to_text().unwrap(),
            JsonPeerEvent::IdAssigned(a).to_string()
        );
        // The old connection's end changes nothing; the new one's tells B once.
        state.leave("r", a, 1);
        assert!(state.deliver("r", a, Message::Text("x".into())));
        assert!(b_rx.try_recv().is_err());
        state.leave("r", a, 3);
        state.leave("r", a, 3);
        let left = b_rx.try_recv().unwrap();
        assert_eq!(
            left.to_text().unwrap(),
            JsonPeerEvent::PeerLeft(a).to_string()
        );
        assert!(b_rx.try_recv().is_err());
        assert!(!state.deliver("r", a, Message::Text("x".into())));
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
