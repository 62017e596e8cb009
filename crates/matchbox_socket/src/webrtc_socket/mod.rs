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
    reconnecting_peers, restart_failed, restart_ice_all, set_wake_hook, take_ice_failures,
    take_ice_recoveries,
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

/// FERRY PATCH 12: the resume logic of [`signaling_loop`], driven against a scripted signaling
/// server (no network): each dial the loop makes is recorded and answered by the next scripted
/// [`resume_tests::Dial`].
#[cfg(all(test, not(target_arch = "wasm32")))]
mod resume_tests {
    use super::*;
    use futures::future::join;
    use futures_channel::mpsc;
    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
        time::Instant,
    };

    /// A room URL that already has a query: resume parameters follow with `&`.
    const ROOM: &str = "wss://signal.test/room?app=ferry";
    const KEY: &str = "00ff";
    /// What the loop dials to resume peer `A` (`ROOM` with `resume` and `key` added).
    const RESUME_A: &str =
        "wss://signal.test/room?app=ferry&resume=00000000-0000-0000-0000-00000000000a&key=00ff";
    /// No test may take longer than this (the longest waits about 1.6 s).
    const TEST_TIMEOUT: Duration = Duration::from_secs(10);

    fn peer(n: u8) -> PeerId {
        serde_json::from_str(&format!("\"00000000-0000-0000-0000-0000000000{n:02x}\"")).unwrap()
    }
    fn a() -> PeerId {
        peer(0x0a)
    }
    fn b() -> PeerId {
        peer(0x0b)
    }

    /// What a connection does once its scripted events are used up.
    #[derive(Debug, Clone, Copy)]
    enum End {
        /// Stays open and silent.
        Pending,
        /// Closes: `Err(StreamExhausted)`.
        Exhausted,
        /// Dies: `Err(UserImplementationError(..))`, told apart from the requests ending.
        Fail(&'static str),
    }

    #[derive(Debug)]
    struct Script {
        events: Vec<Result<PeerEvent, SignalingError>>,
        end: End,
        /// Every `send` fails (a dead connection that has not noticed).
        send_fails: bool,
    }

    fn script(events: Vec<PeerEvent>, end: End) -> Script {
        Script {
            events: events.into_iter().map(Ok).collect(),
            end,
            send_fails: false,
        }
    }

    /// How the server answers one dial.
    #[derive(Debug)]
    enum Dial {
        Unreachable,
        Connect(Script),
    }

    #[derive(Debug, Default)]
    struct Server {
        /// The URL of every dial, in order.
        urls: Vec<String>,
        /// Answers to the coming dials; a dial nobody scripted panics.
        dials: VecDeque<Dial>,
        /// Every request sent: (connection, request, delivered). Connection 0 is the one the
        /// loop started with, 1.. those the builder made, in order.
        sent: Vec<(usize, PeerRequest, bool)>,
        connections: usize,
    }

    type Shared = Arc<Mutex<Server>>;

    struct FakeSignaller {
        connection: usize,
        events: VecDeque<Result<PeerEvent, SignalingError>>,
        end: End,
        send_fails: bool,
        server: Shared,
    }

    impl FakeSignaller {
        fn new(connection: usize, script: Script, server: Shared) -> Self {
            Self {
                connection,
                events: script.events.into(),
                end: script.end,
                send_fails: script.send_fails,
                server,
            }
        }
    }

    #[async_trait]
    impl Signaller for FakeSignaller {
        async fn send(&mut self, request: PeerRequest) -> Result<(), SignalingError> {
            let delivered = !self.send_fails;
            self.server
                .lock()
                .unwrap()
                .sent
                .push((self.connection, request, delivered));
            if delivered {
                Ok(())
            } else {
                Err(SignalingError::UserImplementationError(format!(
                    "connection {} is dead",
                    self.connection
                )))
            }
        }

        async fn next_message(&mut self) -> Result<PeerEvent, SignalingError> {
            // Cancel-safe: an event is taken only when it is returned.
            if let Some(event) = self.events.pop_front() {
                return event;
            }
            match self.end {
                End::Pending => std::future::pending().await,
                End::Exhausted => Err(SignalingError::StreamExhausted),
                End::Fail(what) => Err(SignalingError::UserImplementationError(what.into())),
            }
        }
    }

    #[derive(Debug)]
    struct FakeBuilder(Shared);

    #[async_trait]
    impl SignallerBuilder for FakeBuilder {
        async fn new_signaller(
            &self,
            attempts: Option<u16>,
            room_url: String,
        ) -> Result<Box<dyn Signaller>, SignalingError> {
            assert_eq!(attempts, Some(1), "a resume dials once per attempt");
            let dial = {
                let mut server = self.0.lock().unwrap();
                server.urls.push(room_url.clone());
                server.dials.pop_front()
            };
            match dial {
                None => panic!("unexpected dial of {room_url}"),
                Some(Dial::Unreachable) => Err(SignalingError::UserImplementationError(
                    "unreachable".into(),
                )),
                Some(Dial::Connect(script)) => {
                    let connection = {
                        let mut server = self.0.lock().unwrap();
                        server.connections += 1;
                        server.connections
                    };
                    Ok(Box::new(FakeSignaller::new(
                        connection,
                        script,
                        self.0.clone(),
                    )))
                }
            }
        }
    }

    /// The application's ends of one signaling loop.
    struct Ends {
        server: Shared,
        requests_tx: mpsc::UnboundedSender<PeerRequest>,
        events_rx: mpsc::UnboundedReceiver<PeerEvent>,
        redial_tx: mpsc::UnboundedSender<()>,
    }

    impl Ends {
        fn urls(&self) -> Vec<String> {
            self.server.lock().unwrap().urls.clone()
        }

        fn sent(&self) -> Vec<(usize, PeerRequest, bool)> {
            self.server
                .lock()
                .unwrap()
                .sent
                .iter()
                .map(|(connection, request, delivered)| {
                    (*connection, copy_request(request), *delivered)
                })
                .collect()
        }

        fn request(&self, request: PeerRequest) {
            self.requests_tx.unbounded_send(request).unwrap();
        }

        fn redial(&self) {
            self.redial_tx.unbounded_send(()).unwrap();
        }

        async fn next_event(&mut self) -> PeerEvent {
            within(self.events_rx.next())
                .await
                .expect("the signaling loop ended")
        }

        /// The events not yet taken, once the loop has ended.
        async fn rest_of_events(&mut self) -> Vec<PeerEvent> {
            within((&mut self.events_rx).collect()).await
        }
    }

    /// A running [`signaling_loop`].
    type Run = Pin<Box<dyn Future<Output = Result<(), SignalingError>> + Send>>;

    /// A signaling loop on connection 0 (`first`), resuming with `key` through `dials`.
    fn start(first: Script, key: Option<&str>, dials: Vec<Dial>) -> (Ends, Run) {
        let server = Shared::new(Mutex::new(Server {
            dials: dials.into(),
            ..Server::default()
        }));
        let (requests_tx, requests_rx) = mpsc::unbounded();
        let (events_tx, events_rx) = mpsc::unbounded();
        let (redial_tx, redial_rx) = mpsc::unbounded();
        let resume = Resume {
            builder: Arc::new(FakeBuilder(server.clone())),
            room_url: ROOM.into(),
            key: key.map(str::to_owned),
            redial_rx,
        };
        let run = signaling_loop(
            Box::new(FakeSignaller::new(0, first, server.clone())),
            requests_rx,
            events_tx,
            SignalingErrors::default(),
            resume,
        );
        let ends = Ends {
            server,
            requests_tx,
            events_rx,
            redial_tx,
        };
        (ends, Box::pin(run))
    }

    async fn within<T>(future: impl Future<Output = T>) -> T {
        select! {
            out = Box::pin(future.fuse()) => out,
            _ = Delay::new(TEST_TIMEOUT).fuse() => panic!("still running after {TEST_TIMEOUT:?}"),
        }
    }

    /// Lets the loop (polled beside the caller by `join`) handle what is ready: fake
    /// connections answer at once, so one poll does it.
    async fn settle() {
        Delay::new(Duration::from_millis(20)).await;
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < TEST_TIMEOUT,
                "timed out waiting for {what}"
            );
            Delay::new(Duration::from_millis(1)).await;
        }
    }

    fn died(result: &Result<(), SignalingError>) -> Option<&str> {
        match result {
            Err(SignalingError::UserImplementationError(what)) => Some(what),
            _ => None,
        }
    }

    fn signal(receiver: PeerId, data: PeerSignal) -> PeerRequest {
        PeerRequest::Signal { receiver, data }
    }

    #[test]
    fn url_with_adds_query_parameters() {
        assert_eq!(url_with("wss://h/room", &[]), "wss://h/room");
        assert_eq!(
            url_with("wss://h/room", &[("key", "k")]),
            "wss://h/room?key=k"
        );
        assert_eq!(
            url_with("wss://h/room", &[("resume", "id"), ("key", "k")]),
            "wss://h/room?resume=id&key=k"
        );
        assert_eq!(
            url_with("wss://h/room?x=1", &[("resume", "id"), ("key", "k")]),
            "wss://h/room?x=1&resume=id&key=k"
        );
        assert_eq!(
            url_with(ROOM, &[("resume", &a().0.to_string()), ("key", KEY)]),
            RESUME_A
        );
    }

    /// 1. The connection ends after `IdAssigned(A)`: the loop re-dials `?resume=A&key=k`, the
    /// application sees no second `IdAssigned`, and later requests go to the new connection.
    #[futures_test::test]
    async fn ended_connection_resumes_under_the_same_id() {
        let (mut ends, run) = start(
            script(
                vec![PeerEvent::IdAssigned(a())],
                End::Fail("connection 0 ended"),
            ),
            Some(KEY),
            vec![
                Dial::Connect(script(
                    vec![PeerEvent::IdAssigned(a()), PeerEvent::NewPeer(b())],
                    End::Pending,
                )),
                // Only dialed if the redial below were not debounced.
                Dial::Connect(script(vec![PeerEvent::IdAssigned(a())], End::Pending)),
            ],
        );
        let script = async {
            assert_eq!(ends.next_event().await, PeerEvent::IdAssigned(a()));
            // What the resumed server sent after its `IdAssigned`: the resume is done.
            assert_eq!(ends.next_event().await, PeerEvent::NewPeer(b()));
            assert_eq!(ends.urls(), [RESUME_A]);
            // Right after a resume, a redial request is within REDIAL_DEBOUNCE: ignored.
            ends.redial();
            settle().await;
            assert_eq!(
                ends.urls().len(),
                1,
                "a redial right after a resume re-dialed"
            );
            ends.request(signal(b(), PeerSignal::Offer("offer".into())));
            // The loop sends the request before it sees the requests end.
            ends.requests_tx.close_channel();
        };
        let (result, ()) = within(join(run, script)).await;
        assert!(
            matches!(result, Err(SignalingError::StreamExhausted)),
            "{result:?}"
        );
        assert_eq!(ends.rest_of_events().await, []);
        assert_eq!(
            ends.sent(),
            [(1, signal(b(), PeerSignal::Offer("offer".into())), true)]
        );
        assert_eq!(ends.urls(), [RESUME_A]);
    }

    /// 2a. The server answers the resume with a new id: it cannot resume; the loop ends with
    /// the original error and the new id never reaches the application.
    #[futures_test::test]
    async fn new_id_on_resume_ends_the_loop() {
        let (mut ends, run) = start(
            script(
                vec![PeerEvent::IdAssigned(a())],
                End::Fail("connection 0 ended"),
            ),
            Some(KEY),
            vec![
                Dial::Connect(script(
                    vec![PeerEvent::IdAssigned(b()), PeerEvent::NewPeer(peer(0x0c))],
                    End::Pending,
                )),
                Dial::Connect(script(vec![PeerEvent::IdAssigned(a())], End::Pending)),
            ],
        );
        let result = within(run).await;
        assert_eq!(died(&result), Some("connection 0 ended"), "{result:?}");
        assert_eq!(ends.urls(), [RESUME_A]);
        assert_eq!(ends.rest_of_events().await, [PeerEvent::IdAssigned(a())]);
    }

    /// 2b. A server that gave a new id on a redial is not asked again: neither on a later
    /// redial request (after REDIAL_DEBOUNCE) nor when the connection then ends.
    #[futures_test::test]
    async fn new_id_on_redial_stops_resuming() {
        let (mut ends, run) = start(
            Script {
                send_fails: true,
                ..script(vec![PeerEvent::IdAssigned(a())], End::Pending)
            },
            Some(KEY),
            vec![
                Dial::Connect(script(vec![PeerEvent::IdAssigned(b())], End::Pending)),
                // Would be used by a second resume, which must not happen.
                Dial::Connect(script(vec![PeerEvent::IdAssigned(a())], End::Pending)),
            ],
        );
        let script = async {
            assert_eq!(ends.next_event().await, PeerEvent::IdAssigned(a()));
            ends.redial();
            until("the redial", || ends.urls().len() == 1).await;
            settle().await;
            Delay::new(REDIAL_DEBOUNCE + Duration::from_millis(100)).await;
            ends.redial();
            settle().await;
            assert_eq!(ends.urls(), [RESUME_A], "resumed again after a new id");
            // The old connection is still in use; its send fails: the connection ended.
            ends.request(PeerRequest::KeepAlive);
        };
        let (result, ()) = within(join(run, script)).await;
        assert_eq!(died(&result), Some("connection 0 is dead"), "{result:?}");
        assert_eq!(ends.urls(), [RESUME_A]);
        assert_eq!(ends.sent(), [(0, PeerRequest::KeepAlive, false)]);
        // The new id `B` never reached the application.
        assert_eq!(ends.rest_of_events().await, []);
    }

    /// 3. The server answers the resume with anything but `IdAssigned` (it closes, or sends
    /// something else first): refused, not retried; the loop ends with the original error.
    #[futures_test::test]
    async fn refused_resume_ends_the_loop_after_one_attempt() {
        let refusals = [
            script(vec![], End::Exhausted),
            script(vec![], End::Fail("close 4004")),
            script(
                vec![PeerEvent::NewPeer(b()), PeerEvent::IdAssigned(a())],
                End::Pending,
            ),
        ];
        for refusal in refusals {
            let started = Instant::now();
            let (mut ends, run) = start(
                script(
                    vec![PeerEvent::IdAssigned(a())],
                    End::Fail("connection 0 ended"),
                ),
                Some(KEY),
                vec![
                    Dial::Connect(refusal),
                    Dial::Connect(script(vec![PeerEvent::IdAssigned(a())], End::Pending)),
                ],
            );
            let result = within(run).await;
            assert_eq!(died(&result), Some("connection 0 ended"), "{result:?}");
            assert_eq!(ends.urls(), [RESUME_A]);
            assert!(started.elapsed() < RESUME_RETRY, "a refusal was retried");
            assert_eq!(ends.rest_of_events().await, [PeerEvent::IdAssigned(a())]);
        }
    }

    /// 4. The server is out of reach twice (the network is coming up), then resumes: the loop
    /// goes on, after three dials RESUME_RETRY apart.
    #[futures_test::test]
    async fn unreachable_server_is_retried_until_it_resumes() {
        let started = Instant::now();
        let (mut ends, run) = start(
            script(
                vec![PeerEvent::IdAssigned(a())],
                End::Fail("connection 0 ended"),
            ),
            Some(KEY),
            vec![
                Dial::Unreachable,
                Dial::Unreachable,
                Dial::Connect(script(
                    vec![PeerEvent::IdAssigned(a()), PeerEvent::NewPeer(b())],
                    End::Pending,
                )),
            ],
        );
        let script = async {
            assert_eq!(ends.next_event().await, PeerEvent::IdAssigned(a()));
            assert_eq!(ends.next_event().await, PeerEvent::NewPeer(b()));
            ends.request(PeerRequest::KeepAlive);
            ends.requests_tx.close_channel();
        };
        let (result, ()) = within(join(run, script)).await;
        assert!(
            matches!(result, Err(SignalingError::StreamExhausted)),
            "{result:?}"
        );
        assert_eq!(ends.urls(), [RESUME_A; 3]);
        assert!(
            started.elapsed() >= 2 * RESUME_RETRY,
            "retried without a pause"
        );
        assert_eq!(ends.sent(), [(1, PeerRequest::KeepAlive, true)]);
        assert_eq!(ends.rest_of_events().await, []);
    }

    /// 4b. A server out of reach RESUME_ATTEMPTS times: the loop gives up with the original
    /// error (the application then builds a new socket).
    #[futures_test::test]
    async fn unreachable_server_is_given_up_after_resume_attempts() {
        let mut dials: Vec<Dial> = (0..RESUME_ATTEMPTS).map(|_| Dial::Unreachable).collect();
        dials.push(Dial::Connect(script(
            vec![PeerEvent::IdAssigned(a())],
            End::Pending,
        )));
        let (mut ends, run) = start(
            script(
                vec![PeerEvent::IdAssigned(a())],
                End::Fail("connection 0 ended"),
            ),
            Some(KEY),
            dials,
        );
        let result = within(run).await;
        assert_eq!(died(&result), Some("connection 0 ended"), "{result:?}");
        assert_eq!(ends.urls(), vec![RESUME_A; RESUME_ATTEMPTS]);
        assert_eq!(ends.rest_of_events().await, [PeerEvent::IdAssigned(a())]);
    }

    /// 5. A redial request while the old connection is open but silent: the loop re-dials and
    /// later requests go to the new connection; a second request within REDIAL_DEBOUNCE is
    /// ignored.
    #[futures_test::test]
    async fn redial_request_replaces_a_silent_connection_once() {
        let (mut ends, run) = start(
            script(vec![PeerEvent::IdAssigned(a())], End::Pending),
            Some(KEY),
            vec![
                Dial::Connect(script(vec![PeerEvent::IdAssigned(a())], End::Pending)),
                Dial::Connect(script(vec![PeerEvent::IdAssigned(a())], End::Pending)),
            ],
        );
        let script = async {
            assert_eq!(ends.next_event().await, PeerEvent::IdAssigned(a()));
            ends.request(PeerRequest::KeepAlive);
            until("the first keep-alive", || ends.sent().len() == 1).await;
            ends.redial();
            until("the redial", || ends.urls().len() == 1).await;
            settle().await;
            ends.redial();
            settle().await;
            assert_eq!(ends.urls(), [RESUME_A], "a second redial was not debounced");
            ends.request(signal(b(), PeerSignal::Answer("answer".into())));
            ends.requests_tx.close_channel();
        };
        let (result, ()) = within(join(run, script)).await;
        assert!(
            matches!(result, Err(SignalingError::StreamExhausted)),
            "{result:?}"
        );
        assert_eq!(ends.urls(), [RESUME_A]);
        assert_eq!(
            ends.sent(),
            [
                (0, PeerRequest::KeepAlive, true),
                (1, signal(b(), PeerSignal::Answer("answer".into())), true),
            ]
        );
        assert_eq!(ends.rest_of_events().await, []);
    }

    /// 6. Without a key, or before an id was assigned, an ended connection ends the loop with
    /// its error (as upstream) and nothing is dialed.
    #[futures_test::test]
    async fn without_key_or_id_an_ended_connection_ends_the_loop() {
        for (key, events) in [
            (None, vec![PeerEvent::IdAssigned(a())]),
            (Some(KEY), vec![]),
            (Some(KEY), vec![PeerEvent::NewPeer(b())]),
        ] {
            let (mut ends, run) = start(
                script(events.clone(), End::Fail("connection 0 ended")),
                key,
                vec![],
            );
            let result = within(run).await;
            assert_eq!(died(&result), Some("connection 0 ended"), "{result:?}");
            assert_eq!(ends.urls(), Vec::<String>::new());
            assert_eq!(ends.rest_of_events().await, events);
        }
    }

    /// 6b. Without a key a redial request is ignored; a failed send then ends the loop.
    #[futures_test::test]
    async fn without_key_redial_requests_are_ignored() {
        let (mut ends, run) = start(
            Script {
                send_fails: true,
                ..script(vec![PeerEvent::IdAssigned(a())], End::Pending)
            },
            None,
            vec![],
        );
        let script = async {
            assert_eq!(ends.next_event().await, PeerEvent::IdAssigned(a()));
            ends.redial();
            settle().await;
            ends.request(PeerRequest::KeepAlive);
        };
        let (result, ()) = within(join(run, script)).await;
        assert_eq!(died(&result), Some("connection 0 is dead"), "{result:?}");
        assert_eq!(ends.urls(), Vec::<String>::new());
        assert_eq!(ends.sent(), [(0, PeerRequest::KeepAlive, false)]);
    }

    /// 7. A request whose send fails on the dead connection is sent again on the resumed one.
    #[futures_test::test]
    async fn failed_send_is_resent_on_the_resumed_connection() {
        let (mut ends, run) = start(
            Script {
                send_fails: true,
                ..script(vec![PeerEvent::IdAssigned(a())], End::Pending)
            },
            Some(KEY),
            vec![Dial::Connect(script(
                vec![PeerEvent::IdAssigned(a())],
                End::Pending,
            ))],
        );
        let offer = || signal(b(), PeerSignal::Offer("offer".into()));
        let script = async {
            assert_eq!(ends.next_event().await, PeerEvent::IdAssigned(a()));
            ends.request(offer());
            ends.requests_tx.close_channel();
        };
        let (result, ()) = within(join(run, script)).await;
        assert!(
            matches!(result, Err(SignalingError::StreamExhausted)),
            "{result:?}"
        );
        assert_eq!(ends.urls(), [RESUME_A]);
        assert_eq!(ends.sent(), [(0, offer(), false), (1, offer(), true)]);
        assert_eq!(ends.rest_of_events().await, []);
    }
}
