//! The webrtc_socket module provides a unified API for dealing with WebRtc on both native and wasm
//! builds. This common API only implements behaviors needed by the rest of matchbox_socket: it is
//! not a general WebRtc abstraction.

pub mod error;
mod messages;
mod signal_peer;
mod socket;

use self::error::SignalingError;
use crate::{Error, webrtc_socket::signal_peer::SignalPeer};
use async_trait::async_trait;
use bytes::Bytes;
use cfg_if::cfg_if;
use futures::{
    Future, FutureExt, StreamExt,
    future::Either,
    stream::{FusedStream, FuturesUnordered},
};
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures_timer::Delay;
use futures_util::future::{AbortHandle, AbortRegistration, Abortable};
use futures_util::select;
use log::{debug, error, info, warn};
use matchbox_protocol::PeerId;
pub use messages::*;
pub use socket::{
    CandidatePair, CandidateType, ChannelConfig, IceFailure, IceRecovery, PeerState, RelayProtocol,
    RtcIceServerConfig, WebRtcChannel, WebRtcSocket, WebRtcSocketBuilder, oversized_messages,
    reconnecting_peers, restart_ice_all, set_wake_hook, take_ice_failures, take_ice_recoveries,
};
pub(crate) use socket::{MessageLoopChannels, SignalingErrors, record_signaling_error};
use std::{collections::HashMap, pin::Pin, time::Duration};

cfg_if! {
    if #[cfg(target_arch = "wasm32")] {
        mod wasm;
        type UseMessenger = wasm::WasmMessenger;
        type UseSignallerBuilder = wasm::WasmSignallerBuilder;
        /// A future which runs the message loop for the socket and completes
        /// when the socket closes or disconnects
        pub type MessageLoopFuture = Pin<Box<dyn Future<Output = Result<(), Error>>>>;
    } else {
        mod native;
        type UseMessenger = native::NativeMessenger;
        type UseSignallerBuilder = native::NativeSignallerBuilder;
        /// A future which runs the message loop for the socket and completes
        /// when the socket closes or disconnects
        pub type MessageLoopFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;
    }
}

/// A builder that constructs a new [Signaller] from a room URL.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait SignallerBuilder: std::fmt::Debug + Sync + Send + 'static {
    /// Create a new [Signaller]. The Room URL is an implementation specific identifier for joining
    /// a room.
    async fn new_signaller(
        &self,
        attempts: Option<u16>,
        room_url: String,
    ) -> Result<Box<dyn Signaller>, SignalingError>;
}

/// A signalling implementation.
///
/// The Signaller is responsible for passing around
/// [WebRTC signals](https://developer.mozilla.org/en-US/docs/Web/API/WebRTC_API/Signaling_and_video_calling#the_signaling_server)
/// between room peers, encoded as [PeerEvent::Signal] which holds a [PeerSignal].
///
/// It is also responsible for notifying each peer of the following special events:
///
/// - [PeerEvent::IdAssigned] -- first event in stream, received once at connection time.
/// - [PeerEvent::NewPeer] -- received when a new peer has joined the room, AND when this node must
///   send an offer to them.
/// - [PeerEvent::PeerLeft] -- received when a peer leaves the room.
///
/// To achieve a full mesh configuration, the signaller must do the following for **each pair** of
/// peers in a room:
///
/// 1. It decides which peer is the "Offerer" and which is the "Answerer".
/// 2. It sends [PeerEvent::NewPeer] to the "Offerer" only.
/// 3. It passes [PeerEvent::Signal] events back and forth between them, until one of them
///    disconnects.
/// 4. It sends [PeerEvent::PeerLeft] with the ID of the disconnected peer to the remaining peer.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Signaller: Sync + Send + 'static {
    /// Request the signaller to pass a message to another peer.
    async fn send(&mut self, request: PeerRequest) -> Result<(), SignalingError>;

    /// Get the next event from the signaller.
    async fn next_message(&mut self) -> Result<PeerEvent, SignalingError>;
}

/// FERRY PATCH 12: how the signaling loop may re-dial the server under the same peer id after
/// its connection died or went silent (a network change), so that ICE restarts can be
/// signaled to peers that know this device by that id.
pub(crate) struct Resume {
    pub(crate) builder: std::sync::Arc<dyn SignallerBuilder>,
    pub(crate) room_url: String,
    /// The secret sent with the first join (`key`) and with each resume; `None`: never resume.
    pub(crate) key: Option<String>,
    /// Requests to re-dial now (from peer loops whose ICE disconnected, or a network change).
    pub(crate) redial_rx: UnboundedReceiver<()>,
}

/// FERRY PATCH 12: the room URL with `key` (and `resume`) query parameters added.
pub(crate) fn url_with(room_url: &str, params: &[(&str, &str)]) -> String {
    let mut url = room_url.to_owned();
    for (name, value) in params {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(name);
        url.push('=');
        url.push_str(value);
    }
    url
}

/// FERRY PATCH 12: how a re-dial under the same id went.
enum Resumed {
    Yes(Box<dyn Signaller>),
    /// The server could not be reached (the network may still be coming up): maybe later.
    No,
    /// The server answered but would not resume (close code 4004: it restarted and forgot
    /// the id, or the key is wrong): only a fresh join helps.
    Refused,
    /// The server gave a new id: it does not know resuming (not Ferry's server). Its new
    /// connection is dropped again; trying again would only churn the room.
    Unsupported,
}

/// FERRY PATCH 12: re-dials with `?resume=<id>&key=<key>`. Ferry's server gives back the same
/// id (or refuses an unknown resume with close code 4004); another matchbox server assigns a
/// new id.
async fn resume_signaller(
    builder: &dyn SignallerBuilder,
    room_url: &str,
    id: PeerId,
    key: &str,
) -> Resumed {
    let id_text = id.0.to_string();
    let url = url_with(room_url, &[("resume", &id_text), ("key", key)]);
    let attempt = async {
        let Ok(mut signaller) = builder.new_signaller(Some(1), url).await else {
            return Resumed::No;
        };
        // The socket is open: whatever comes now is the server's answer.
        match signaller.next_message().await {
            Ok(PeerEvent::IdAssigned(same)) if same == id => Resumed::Yes(signaller),
            Ok(PeerEvent::IdAssigned(other)) => {
                warn!("the signaling server cannot resume ids (it assigned {other}); not trying again");
                Resumed::Unsupported
            }
            other => {
                warn!("the signaling server refused to resume: {other:?}");
                Resumed::Refused
            }
        }
    };
    select! {
        resumed = Box::pin(attempt.fuse()) => resumed,
        _ = Delay::new(RESUME_TIMEOUT).fuse() => {
            warn!("signaling could not be resumed within {RESUME_TIMEOUT:?}");
            Resumed::No
        }
    }
}

/// FERRY PATCH 12: `PeerRequest` is not `Clone`; a request that failed on a dead connection
/// is sent again on the resumed one.
fn copy_request(request: &PeerRequest) -> PeerRequest {
    match request {
        PeerRequest::Signal { receiver, data } => PeerRequest::Signal {
            receiver: *receiver,
            data: data.clone(),
        },
        PeerRequest::KeepAlive => PeerRequest::KeepAlive,
    }
}

/// FERRY PATCH 12: [`resume_signaller`] a few times while the server is out of reach (the
/// network may still be coming up: a phone between Wi-Fi and cellular); a server that
/// answers is not asked again.
async fn redial(builder: &dyn SignallerBuilder, room_url: &str, id: PeerId, key: &str) -> Resumed {
    let mut resumed = Resumed::No;
    for attempt in 0..RESUME_ATTEMPTS {
        if attempt > 0 {
            Delay::new(RESUME_RETRY).await;
        }
        resumed = resume_signaller(builder, room_url, id, key).await;
        if !matches!(resumed, Resumed::No) {
            break;
        }
    }
    resumed
}

/// FERRY PATCH 12: how long one resume may take (dial, upgrade, id).
const RESUME_TIMEOUT: Duration = Duration::from_secs(5);
/// FERRY PATCH 12: how often a server out of reach is re-dialed before giving up (after a
/// connection that ended, signaling then counts as lost and the application builds a new
/// socket), and how far apart.
const RESUME_ATTEMPTS: usize = 4;
const RESUME_RETRY: Duration = Duration::from_millis(500);
/// FERRY PATCH 12: re-dial requests closer together than this are one request (every peer
/// loop of a device asks when the network changes).
const REDIAL_DEBOUNCE: Duration = Duration::from_millis(1500);

async fn signaling_loop(
    mut signaller: Box<dyn Signaller>,
    mut requests_receiver: futures_channel::mpsc::UnboundedReceiver<PeerRequest>,
    events_sender: futures_channel::mpsc::UnboundedSender<PeerEvent>,
    signaling_errors: SignalingErrors,
    mut resume: Resume,
) -> Result<(), SignalingError> {
    // FERRY PATCH 12: this device's id once assigned, and when it last re-dialed.
    let mut own_id = None;
    let mut last_redial: Option<Delay> = None;
    loop {
        let ended = select! {
            request = requests_receiver.next().fuse() => {
                debug!("-> {request:?}");
                let Some(request) = request else {break Err(SignalingError::StreamExhausted)};
                // FERRY PATCH 12: a send that fails on a dead connection re-dials first.
                match signaller.send(copy_request(&request)).await {
                    Ok(()) => continue,
                    Err(err) => Some((Some(request), err)),
                }
            }

            message = signaller.next_message().fuse() => {
                match message {
                    Ok(message) => {
                        debug!("Received {message:?}");
                        if let PeerEvent::IdAssigned(id) = &message {
                            own_id.get_or_insert(*id);
                        }
                        events_sender.unbounded_send(message).map_err(SignalingError::from)?;
                        None
                    }
                    Err(SignalingError::UnknownFormat) => {
                        warn!("ignoring unexpected non-text message from signaling server");
                        // FERRY PATCH 8: tell the application the server misbehaves.
                        record_signaling_error(&signaling_errors, "it sent a message that is not text");
                        None
                    },
                    // FERRY PATCH 8: unreadable or oversized messages are ignored and reported.
                    Err(SignalingError::Malformed(what)) => {
                        warn!("ignoring a message from the signaling server: {what}");
                        record_signaling_error(&signaling_errors, what);
                        None
                    },
                    Err(err) => Some((None, err)),
                }
            }

            // FERRY PATCH 12: a peer's ICE disconnected or the network changed: the
            // connection may be dead without having noticed; re-dial under the same id.
            asked = resume.redial_rx.next() => {
                if asked.is_none() {
                    // No more requests can come (the message loop ended); the stream is
                    // terminated and this arm is not polled again.
                    continue;
                }
                if last_redial.as_mut().is_some_and(|quiet| quiet.now_or_never().is_none()) {
                    continue;
                }
                let (Some(id), Some(key)) = (own_id, resume.key.as_deref()) else { continue };
                last_redial = Some(Delay::new(REDIAL_DEBOUNCE));
                match redial(&*resume.builder, &resume.room_url, id, key).await {
                    Resumed::Yes(resumed) => {
                        info!("signaling resumed after a network change");
                        signaller = resumed;
                        socket::nudge(socket::Nudge::SignalingResumed);
                    }
                    Resumed::No | Resumed::Refused => {}
                    Resumed::Unsupported => resume.key = None,
                }
                continue;
            }

            complete => break Ok(())
        };
        let Some((unsent, err)) = ended else { continue };
        // FERRY PATCH 12: the connection ended: resume it once before giving up (then the
        // application builds a new socket, as before).
        let resumed = match (own_id, resume.key.clone()) {
            (Some(id), Some(key)) => redial(&*resume.builder, &resume.room_url, id, &key).await,
            _ => Resumed::No,
        };
        let Resumed::Yes(resumed) = resumed else { break Err(err) };
        info!("signaling resumed after its connection ended: {err:?}");
        last_redial = Some(Delay::new(REDIAL_DEBOUNCE));
        signaller = resumed;
        socket::nudge(socket::Nudge::SignalingResumed);
        if let Some(request) = unsent
            && let Err(err) = signaller.send(request).await
        {
            break Err(err);
        }
    }
}

/// FERRY PATCH 8: the largest signaling message accepted. An offer or answer with all its
/// candidates is a few KiB; Ferry's signaling server relays at most 64 KiB.
const MAX_SIGNAL_MESSAGE: usize = 64 * 1024;

/// FERRY PATCH 8: refuses a signaling message above [`MAX_SIGNAL_MESSAGE`] before it is parsed.
pub(crate) fn check_signal_size(len: usize) -> Result<(), SignalingError> {
    if len > MAX_SIGNAL_MESSAGE {
        Err(SignalingError::Malformed(format!(
            "it sent an oversized message of {len} bytes"
        )))
    } else {
        Ok(())
    }
}

/// The raw format of data being sent and received.
pub type Packet = Bytes;

/// Errors that can happen when sending packets
#[derive(Debug, thiserror::Error)]
#[error("The socket was dropped and package could not be sent")]
struct PacketSendError {
    #[cfg(not(target_arch = "wasm32"))]
    source: futures_channel::mpsc::SendError,
    #[cfg(target_arch = "wasm32")]
    source: error::JsError,
}

trait PeerDataSender {
    fn send(&mut self, packet: Packet) -> Result<(), PacketSendError>;
}

struct HandshakeResult<D: PeerDataSender, M> {
    peer_id: PeerId,
    data_channels: Vec<D>,
    metadata: M,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
trait Messenger {
    type DataChannel: PeerDataSender;
    type HandshakeMeta: Send;

    /// `None` when the handshake was abandoned (FERRY PATCH 7): the peer's input was
    /// unusable or the browser refused a step. The connection is closed by then.
    async fn offer_handshake(
        signal_peer: SignalPeer,
        mut peer_signal_rx: UnboundedReceiver<PeerSignal>,
        messages_from_peers_tx: Vec<UnboundedSender<(PeerId, Packet)>>,
        ice_server_config: &RtcIceServerConfig,
        channel_configs: &[ChannelConfig],
    ) -> Option<HandshakeResult<Self::DataChannel, Self::HandshakeMeta>>;

    /// See [`Messenger::offer_handshake`].
    async fn accept_handshake(
        signal_peer: SignalPeer,
        peer_signal_rx: UnboundedReceiver<PeerSignal>,
        messages_from_peers_tx: Vec<UnboundedSender<(PeerId, Packet)>>,
        ice_server_config: &RtcIceServerConfig,
        channel_configs: &[ChannelConfig],
    ) -> Option<HandshakeResult<Self::DataChannel, Self::HandshakeMeta>>;

    /// Runs the connection to a peer until it ends, reporting the candidate pair it uses on
    /// `candidate_pair_tx` whenever it changes. FERRY PATCH 12: `redial_tx` asks the
    /// signaling loop to re-dial under the same id (before an ICE restart).
    async fn peer_loop(
        peer_uuid: PeerId,
        handshake_meta: Self::HandshakeMeta,
        candidate_pair_tx: UnboundedSender<(PeerId, CandidatePair)>,
        redial_tx: UnboundedSender<()>,
    ) -> PeerId;
}

/// FERRY PATCH 7: how long a handshake may take, from the first signal to open data channels.
/// Two devices on one network connect in about 2 s, through TURN in a few more; a handshake
/// still running after this never will (its peer is gone, or it is a stranger who joined the
/// room and left), and its `RTCPeerConnection` is closed instead of waiting forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// FERRY PATCH 7: runs one handshake until it connects, is abandoned, times out or is
/// cancelled (its peer left). Dropping the handshake future closes its connection.
async fn bounded_handshake<F: Future<Output = Option<R>>, R>(
    peer: PeerId,
    generation: u64,
    handshake: F,
    cancel: AbortRegistration,
) -> (PeerId, u64, Option<R>) {
    let mut handshake = Box::pin(Abortable::new(handshake, cancel).fuse());
    let mut timeout = Delay::new(HANDSHAKE_TIMEOUT).fuse();
    let result = select! {
        result = handshake => match result {
            Ok(result) => result,
            Err(_) => {
                debug!("handshake with {peer} cancelled: the peer left");
                None
            }
        },
        _ = timeout => {
            warn!("handshake with {peer} still not connected after {HANDSHAKE_TIMEOUT:?}; giving up");
            None
        },
    };
    (peer, generation, result)
}

async fn message_loop<M: Messenger>(
    id_tx: futures_channel::oneshot::Sender<PeerId>,
    ice_server_config: &RtcIceServerConfig,
    channel_configs: &[ChannelConfig],
    channels: MessageLoopChannels,
    keep_alive_interval: Option<Duration>,
) -> Result<(), SignalingError> {
    let MessageLoopChannels {
        requests_sender,
        mut events_receiver,
        mut peer_messages_out_rx,
        messages_from_peers_tx,
        peer_state_tx,
        candidate_pair_tx,
        signaling_errors,
        redial_tx,
    } = channels;

    let mut handshakes = FuturesUnordered::new();
    let mut peer_loops = FuturesUnordered::new();
    // Signals for a peer go to its handshake, then to its peer loop (trickled candidates).
    let mut handshake_signals = HashMap::new();
    // FERRY PATCH 7: the handshakes in progress, to cancel them when their peer leaves. The
    // generation tells a finished handshake from a newer one with the same peer.
    let mut pending: HashMap<PeerId, (u64, AbortHandle)> = HashMap::new();
    let mut generation = 0u64;
    let mut data_channels = HashMap::new();
    let mut id_tx = Option::Some(id_tx);

    let mut timeout = if let Some(interval) = keep_alive_interval {
        Either::Left(Delay::new(interval))
    } else {
        Either::Right(std::future::pending())
    }
    .fuse();

    loop {
        let mut next_peer_messages_out = peer_messages_out_rx
            .iter_mut()
            .enumerate()
            .map(|(channel, rx)| async move { (channel, rx.next().await) })
            .collect::<FuturesUnordered<_>>();

        let mut next_peer_message_out = next_peer_messages_out.next().fuse();

        select! {
            _  = &mut timeout => {
                if requests_sender.unbounded_send(PeerRequest::KeepAlive).is_err() {
                    // The signaling loop is gone; keep-alives exist to keep
                    // the signaling websocket alive, so there is nothing
                    // left to send them to. Existing peer connections are
                    // unaffected. Do not break: the socket stays alive on
                    // its data channels.
                    debug!("cannot send keep-alive: signaling connection is gone");
                }
                if let Some(interval) = keep_alive_interval {
                    timeout = Either::Left(Delay::new(interval)).fuse();
                } else {
                    error!("no keep alive timeout, please file a bug");
                }
            }

            event = events_receiver.next() => {
                match event {
                    Some(event) => {
                        debug!("{event:?}");
                        match event {
                            PeerEvent::IdAssigned(peer_uuid) => {
                                // FERRY PATCH 8: a second id was an `expect` (a panic).
                                let Some(id_tx) = id_tx.take() else {
                                    warn!("ignoring a second id from the signaling server: {peer_uuid}");
                                    record_signaling_error(&signaling_errors, "it assigned this device a second id");
                                    continue;
                                };
                                if id_tx.send(peer_uuid.to_owned()).is_err() {
                                    // Socket receiver was dropped, exit cleanly.
                                    break Ok(());
                                };
                            },
                            PeerEvent::NewPeer(peer_uuid) => {
                                // FERRY PATCH 8: a peer announced again would replace the
                                // signal route of its running handshake or connection.
                                if handshake_signals.contains_key(&peer_uuid) {
                                    warn!("ignoring peer {peer_uuid} announced again");
                                    record_signaling_error(&signaling_errors, "it announced the same peer twice");
                                    continue;
                                }
                                let (signal_tx, signal_rx) = futures_channel::mpsc::unbounded();
                                handshake_signals.insert(peer_uuid, signal_tx);
                                let signal_peer = SignalPeer::new(peer_uuid, requests_sender.clone());
                                let (cancel, registration) = AbortHandle::new_pair();
                                generation += 1;
                                pending.insert(peer_uuid, (generation, cancel));
                                handshakes.push(bounded_handshake(peer_uuid, generation, M::offer_handshake(signal_peer, signal_rx, messages_from_peers_tx.clone(), ice_server_config, channel_configs), registration));
                            },
                            PeerEvent::PeerLeft(peer_uuid) => {
                                // FERRY PATCH 7: a handshake with a peer that left can never
                                // finish: cancel it (which closes its connection). Only peers
                                // that connected are reported as disconnected; the
                                // application never heard of the others.
                                if let Some((_, cancel)) = pending.remove(&peer_uuid) {
                                    cancel.abort();
                                    handshake_signals.remove(&peer_uuid);
                                    continue;
                                }
                                if !data_channels.contains_key(&peer_uuid) {
                                    continue;
                                }
                                if peer_state_tx.unbounded_send((peer_uuid, PeerState::Disconnected)).is_err() {
                                    // socket dropped, exit cleanly
                                    break Ok(());
                                }
                            },
                            PeerEvent::Signal { sender, data } => {
                                if let Some(signal_tx) = handshake_signals.get(&sender) {
                                    if signal_tx.unbounded_send(data).is_err() {
                                        warn!("ignoring signal from peer {sender} because the handshake has already finished");
                                    }
                                    continue;
                                }
                                // FERRY PATCH 7: only an offer starts a handshake. A late
                                // candidate of a handshake that ended (or one made up by a
                                // stranger) would otherwise create a connection waiting
                                // for an offer that never comes.
                                if !matches!(data, PeerSignal::Offer(_)) {
                                    debug!("ignoring signal from peer {sender} without a handshake: {data:?}");
                                    continue;
                                }
                                let (from_peer_tx, peer_signal_rx) = futures_channel::mpsc::unbounded();
                                let signal_peer = SignalPeer::new(sender, requests_sender.clone());
                                let (cancel, registration) = AbortHandle::new_pair();
                                generation += 1;
                                pending.insert(sender, (generation, cancel));
                                handshakes.push(bounded_handshake(sender, generation, M::accept_handshake(signal_peer, peer_signal_rx, messages_from_peers_tx.clone(), ice_server_config, channel_configs), registration));
                                if from_peer_tx.unbounded_send(data).is_err() {
                                    warn!("ignoring signal from peer {sender} because the handshake has already finished");
                                }
                                handshake_signals.insert(sender, from_peer_tx);
                            },
                        }
                    }
                    None => {
                        // The signaling loop ended (server restart, lost
                        // websocket, ...). This is not fatal while peers are
                        // connected: their connections live entirely on the
                        // data channels and keep working; only new handshakes
                        // are impossible until the application rebuilds the
                        // socket. `signaling_events` has become terminated,
                        // so this arm is disabled from here on.
                        //
                        // With no peer connected, though, there is nothing
                        // left to keep alive, and a socket that can never
                        // gain a peer must end, so that the application
                        // learns the signaling server is gone (e.g. a player
                        // waiting for a match) instead of waiting forever.
                        if peer_loops.is_empty() {
                            break Err(SignalingError::StreamExhausted);
                        }
                        warn!(
                            "signaling connection lost; keeping existing peer \
                            connections, but no new peers can join until the \
                            socket is rebuilt"
                        );
                    }
                }
            }

            (peer, handshake_generation, handshake_result) = handshakes.select_next_some() => {
                let current = pending.get(&peer).is_some_and(|(g, _)| *g == handshake_generation);
                if current {
                    pending.remove(&peer);
                }
                let Some(handshake_result) = handshake_result else {
                    // FERRY PATCH 7: abandoned, timed out or cancelled; its connection is
                    // closed. Forget its signal route unless a newer handshake owns it.
                    if current {
                        handshake_signals.remove(&peer);
                    }
                    continue;
                };
                data_channels.insert(handshake_result.peer_id, handshake_result.data_channels);
                if peer_state_tx.unbounded_send((handshake_result.peer_id, PeerState::Connected)).is_err() {
                    // sending can only fail on socket drop, in which case connected_peers is unavailable, ignore
                    break Ok(());
                }
                peer_loops.push(M::peer_loop(handshake_result.peer_id, handshake_result.metadata, candidate_pair_tx.clone(), redial_tx.clone()));
            }

            peer_uuid = peer_loops.select_next_some() => {
                debug!("peer {peer_uuid} finished");
                // FERRY PATCH 7: forget the peer (its loop closed the connection).
                data_channels.remove(&peer_uuid);
                if !pending.contains_key(&peer_uuid) {
                    handshake_signals.remove(&peer_uuid);
                }
                if peer_state_tx.unbounded_send((peer_uuid, PeerState::Disconnected)).is_err() {
                    // sending can only fail on socket drop, in which case connected_peers is unavailable, ignore
                    break Ok(());
                }
                if events_receiver.is_terminated() && peer_loops.is_empty() {
                    // The last peer is gone and, without signaling, no new
                    // one can join: end the socket (see the `None` arm above).
                    break Err(SignalingError::StreamExhausted);
                }
            }

            message = next_peer_message_out => {
                match message {
                    Some((channel_index, Some((peer, packet)))) => {
                        // The app may send to a peer this socket never connected to,
                        // e.g. a stale id from before the socket was rebuilt.
                        let Some(peer_channels) = data_channels.get_mut(&peer) else {
                            warn!("dropping packet for unknown peer {peer}");
                            continue;
                        };
                        let Some(data_channel) = peer_channels.get_mut(channel_index) else {
                            error!("couldn't find data channel with index {channel_index}");
                            continue;
                        };
                        if let Err(e) = data_channel.send(packet) {
                            // Peer we're sending to closed their end of the connection.
                            // We anticipate the PeerLeft event soon, but we sent a message before it came.
                            // Do nothing. Only log it.
                            warn!("failed to send to peer {peer} (socket closed): {e:?}");
                        };
                    }
                    Some((_, None)) | None => {
                        // Receiver end of outgoing message channel closed,
                        // which most likely means the socket was dropped.
                        // There could probably be cleaner ways to handle this,
                        // but for now, just exit cleanly.
                        warn!("Outgoing message queue closed, message not sent");
                        break Ok(());
                    }
                }
            }

            complete => break Ok(())
        }
    }
}
