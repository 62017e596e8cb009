use super::{
    HandshakeResult, PacketSendError, PeerDataSender, SignallerBuilder,
    error::JsErrorExt,
    messages::{PeerEvent, PeerRequest},
};
use crate::{
    CandidatePair, CandidateType, RelayProtocol,
    webrtc_socket::{
        ChannelConfig, Messenger, Packet, RtcIceServerConfig, Signaller,
        error::SignalingError,
        messages::PeerSignal,
        signal_peer::SignalPeer,
        socket::{
            SignaledCandidates, create_data_channels_ready_fut, record_signaled_candidate,
            signaled_type,
        },
    },
};
use async_trait::async_trait;
use futures::{Future, FutureExt, StreamExt};
use futures_channel::mpsc::{Receiver, UnboundedReceiver, UnboundedSender};
use futures_timer::Delay;
use futures_util::select;
use js_sys::{Function, JsString, Map, Reflect};
use log::{debug, error, info, trace, warn};
use matchbox_protocol::PeerId;
use serde::Serialize;
use std::{pin::Pin, time::Duration};
use wasm_bindgen::{JsCast, JsValue, convert::FromWasmAbi, prelude::*};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    CloseEvent, DomException, Event, MessageEvent, RtcConfiguration, RtcDataChannel,
    RtcDataChannelInit, RtcDataChannelType, RtcIceCandidateInit, RtcIceGatheringState,
    RtcPeerConnection, RtcPeerConnectionIceEvent, RtcSdpType, RtcSessionDescriptionInit, WebSocket,
};

use super::error::WebSocketError;

/// FERRY PATCH 10: what the signaling WebSocket's handlers report, in order. A text frame
/// stays a JS string (a handle; its characters are not in wasm memory) until
/// `next_message` has looked at its length.
enum WsIncoming {
    Open,
    Text(JsString),
    /// Anything but text (a `Blob`: nothing reads binary frames, so they are never copied)
    NotText,
    Closed(WebSocketError),
}

/// FERRY PATCH 10: the signaling connection, on the browser's `WebSocket` directly. Upstream
/// used `ws_stream_wasm`, which copies every text frame into a wasm `String` before matchbox
/// sees it: a hostile server could send a 100 MiB frame and the page would grow its wasm memory
/// by that much (wasm memory never shrinks; enough of them and the app runs out) before
/// [`super::check_signal_size`] refused it.
pub(crate) struct WasmSignaller {
    ws: WebSocket,
    incoming: UnboundedReceiver<WsIncoming>,
}

impl WasmSignaller {
    /// Opens the WebSocket, resolving once it is open or has failed (as `WsMeta::connect`
    /// did). Dropping the future while it connects closes the socket (`Drop`).
    async fn connect(url: &str) -> Result<Self, WebSocketError> {
        let ws = WebSocket::new(url).map_err(|e| match e.dyn_ref::<DomException>() {
            Some(de) if de.code() == DomException::SYNTAX_ERR => {
                WebSocketError::InvalidUrl(url.to_string())
            }
            Some(de) => WebSocketError::Unknown(de.message()),
            None => WebSocketError::Unknown(format!("{e:?}")),
        })?;
        let (tx, incoming) = futures_channel::mpsc::unbounded();
        let on_open = {
            let tx = tx.clone();
            Closure::<dyn FnMut()>::wrap(Box::new(move || {
                let _ = tx.unbounded_send(WsIncoming::Open);
            }))
            .into_js_value()
        };
        let on_message = {
            let tx = tx.clone();
            Closure::<dyn FnMut(MessageEvent)>::wrap(Box::new(move |event: MessageEvent| {
                // Only a handle to the frame crosses into wasm here, never its contents.
                let incoming = match event.data().dyn_into::<JsString>() {
                    Ok(text) => WsIncoming::Text(text),
                    Err(_) => WsIncoming::NotText,
                };
                let _ = tx.unbounded_send(incoming);
            }))
            .into_js_value()
        };
        // The browser fires `close` after every `error`; the close ends the stream.
        let on_error = Closure::<dyn FnMut()>::wrap(Box::new(move || {
            warn!("the signaling WebSocket reported an error");
        }))
        .into_js_value();
        let on_close =
            Closure::<dyn FnMut(CloseEvent)>::wrap(Box::new(move |event: CloseEvent| {
                let _ = tx.unbounded_send(WsIncoming::Closed(WebSocketError::ConnectionFailed {
                    code: event.code(),
                    reason: event.reason(),
                    was_clean: event.was_clean(),
                }));
                // Messages already queued are still read, then `next_message` says exhausted.
                tx.close_channel();
            }))
            .into_js_value();
        ws.set_onopen(Some(on_open.unchecked_ref()));
        ws.set_onmessage(Some(on_message.unchecked_ref()));
        ws.set_onerror(Some(on_error.unchecked_ref()));
        ws.set_onclose(Some(on_close.unchecked_ref()));
        // The socket now holds the handlers (`into_js_value` gave them to JS): they are freed
        // once `Drop` unsets them, not leaked for the life of the page.
        let mut signaller = WasmSignaller { ws, incoming };
        loop {
            match signaller.incoming.next().await {
                Some(WsIncoming::Open) => return Ok(signaller),
                Some(WsIncoming::Closed(e)) => return Err(e),
                // Nothing arrives before `open`; the `close` that follows ends this.
                Some(WsIncoming::Text(_) | WsIncoming::NotText) => {}
                None => {
                    return Err(WebSocketError::Unknown(
                        "the WebSocket closed while connecting".into(),
                    ));
                }
            }
        }
    }
}

impl Drop for WasmSignaller {
    fn drop(&mut self) {
        // As `ws_stream_wasm` did: close (without a code, which cannot throw) and stop
        // listening.
        if matches!(
            self.ws.ready_state(),
            WebSocket::CONNECTING | WebSocket::OPEN
        ) {
            let _ = self.ws.close();
        }
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onerror(None);
        self.ws.set_onclose(None);
    }
}

#[derive(Debug, Default)]
pub(crate) struct WasmSignallerBuilder;

#[async_trait(?Send)]
impl SignallerBuilder for WasmSignallerBuilder {
    async fn new_signaller(
        &self,
        mut attempts: Option<u16>,
        room_url: String,
    ) -> Result<Box<dyn Signaller>, SignalingError> {
        let signaller = 'signaling: loop {
            // FERRY PATCH 10: was `WsMeta::connect`; the same retries.
            match WasmSignaller::connect(&room_url)
                .await
                .map_err(SignalingError::from)
            {
                Ok(signaller) => break signaller,
                Err(e) => {
                    if let Some(attempts) = attempts.as_mut() {
                        if *attempts <= 1 {
                            return Err(SignalingError::NegotiationFailed(Box::new(e)));
                        } else {
                            *attempts -= 1;
                            warn!(
                                "connection to signaling server failed, {attempts} attempt(s) remain"
                            );
                            warn!("waiting 3 seconds to re-try connection...");
                            Delay::new(Duration::from_secs(3)).await;
                            info!("retrying connection...");
                            continue 'signaling;
                        }
                    } else {
                        continue 'signaling;
                    }
                }
            };
        };
        Ok(Box::new(signaller))
    }
}

#[async_trait(?Send)]
impl Signaller for WasmSignaller {
    async fn send(&mut self, request: PeerRequest) -> Result<(), SignalingError> {
        let request = serde_json::to_string(&request).expect("serializing request");
        // FERRY PATCH 10: as `ws_stream_wasm`'s sink: only an open socket sends.
        if self.ws.ready_state() != WebSocket::OPEN {
            return Err(WebSocketError::ConnectionNotOpen.into());
        }
        self.ws
            .send_with_str(&request)
            .map_err(|_| WebSocketError::ConnectionNotOpen.into())
    }

    async fn next_message(&mut self) -> Result<PeerEvent, SignalingError> {
        let text = loop {
            match self.incoming.next().await {
                Some(WsIncoming::Text(text)) => break text,
                Some(WsIncoming::NotText) => return Err(SignalingError::UnknownFormat),
                Some(WsIncoming::Open) => {}
                Some(WsIncoming::Closed(_)) | None => return Err(SignalingError::StreamExhausted),
            }
        };
        // FERRY PATCH 10: the size is checked before the text is copied into wasm memory.
        // `length()` counts UTF-16 code units; each is at least one byte of UTF-8, so a text
        // over the limit in units is over it in bytes (for ASCII, such as JSON, the count is
        // exact). Only a text within the limit is copied: at most 3 bytes per unit.
        super::check_signal_size(text.length() as usize)?;
        // Never `None` for a string (the browser already checked the frame's UTF-8).
        let Some(message) = text.as_string() else {
            return Err(SignalingError::UnknownFormat);
        };
        drop(text);
        // FERRY PATCH 8: an oversized or unreadable message is ignored and reported.
        super::check_signal_size(message.len())?;
        let message = serde_json::from_str(&message).map_err(|e| {
            error!("failed to deserialize message: {e:?}");
            SignalingError::Malformed(format!("it sent a message that is not signaling ({e})"))
        })?;
        Ok(message)
    }
}

impl PeerDataSender for RtcDataChannel {
    fn send(&mut self, packet: Packet) -> Result<(), PacketSendError> {
        self.send_with_u8_array(&packet)
            .efix()
            .map_err(|source| PacketSendError { source })
    }
}

pub(crate) struct WasmMessenger;

#[async_trait(?Send)]
impl Messenger for WasmMessenger {
    type DataChannel = RtcDataChannel;
    /// The disconnect signal, the connection for its stats, the candidates the peer signaled,
    /// the signals still to come, and (FERRY PATCH 12) what an ICE restart needs: the
    /// signaling route, whether this end yields when both offer at once, and the trickle
    /// handler to release when the connection ends.
    type HandshakeMeta = (
        Receiver<()>,
        RtcPeerConnection,
        SignaledCandidates,
        UnboundedReceiver<PeerSignal>,
        Restarter,
    );

    async fn offer_handshake(
        signal_peer: SignalPeer,
        mut peer_signal_rx: UnboundedReceiver<PeerSignal>,
        messages_from_peers_tx: Vec<UnboundedSender<(PeerId, Packet)>>,
        ice_server_config: &RtcIceServerConfig,
        channel_configs: &[ChannelConfig],
    ) -> Option<HandshakeResult<Self::DataChannel, Self::HandshakeMeta>> {
        debug!("making offer");

        // FERRY PATCH 7: a connection the browser refuses (too many, bad ICE configuration)
        // skips this peer instead of panicking.
        let conn = or_abandon(
            create_rtc_peer_connection(ice_server_config),
            "the browser refused a new connection",
        )?;
        // FERRY PATCH 7: closes the connection unless the handshake completes.
        let guard = CloseUnlessConnected(Some(conn.clone()));

        let (data_channel_ready_txs, data_channels_ready_fut) =
            create_data_channels_ready_fut(channel_configs);

        let (peer_disconnected_tx, peer_disconnected_rx) = futures_channel::mpsc::channel(1);

        let data_channels = create_data_channels(
            conn.clone(),
            messages_from_peers_tx,
            signal_peer.id,
            peer_disconnected_tx,
            data_channel_ready_txs,
            channel_configs,
        );

        // Create offer
        // FERRY PATCH 7: a step the browser refuses abandons the handshake (were `unwrap`s).
        let offer = or_abandon(
            JsFuture::from(conn.create_offer()).await.efix(),
            "no offer could be created",
        )?;
        let offer_sdp = or_abandon(sdp_of(&offer), "the offer has no SDP")?;
        let rtc_session_desc_init_dict = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        rtc_session_desc_init_dict.set_sdp(&offer_sdp);
        or_abandon(
            JsFuture::from(conn.set_local_description(&rtc_session_desc_init_dict))
                .await
                .efix(),
            "the offer could not be set",
        )?;
        debug!("created offer for new peer");

        // todo: the point of implementing ice trickle is to avoid this wait...
        // however, for some reason removing this wait causes problems with NAT
        // punching in practice.
        // We should figure out why this is happening.
        wait_for_ice_gathering_complete(conn.clone()).await;

        let local = or_abandon(conn.local_description().ok_or(()), "no local description")?;
        signal_peer.send(PeerSignal::Offer(local.sdp()));

        let mut received_candidates = vec![];

        // Wait for answer
        let sdp = loop {
            // FERRY PATCH: signaling lost mid-handshake abandons the handshake (was `expect`).
            let signal = or_abandon(
                peer_signal_rx.next().await.ok_or("no more signals"),
                "signaling ended in the middle of a handshake",
            )?;

            match signal {
                PeerSignal::Answer(answer) => break answer,
                PeerSignal::IceCandidate(candidate) => {
                    debug!(
                        "offerer: received an ice candidate while waiting for answer: {candidate:?}"
                    );
                    received_candidates.push(candidate);
                }
                _ => {
                    warn!("ignoring unexpected signal: {signal:?}");
                }
            };
        };

        // Set remote description
        let remote_description = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
        remote_description.set_sdp(&sdp);
        debug!("setting remote description");
        // FERRY PATCH: a malformed answer abandons this handshake instead of panicking.
        or_abandon(
            JsFuture::from(conn.set_remote_description(&remote_description))
                .await
                .efix(),
            "the peer's answer was rejected",
        )?;

        let signaled = SignaledCandidates::default();
        let peer_signal_rx = complete_handshake(
            signal_peer.clone(),
            conn.clone(),
            received_candidates,
            data_channels_ready_fut,
            peer_signal_rx,
            signaled.clone(),
        )
        .await;

        guard.disarm();
        let restarter = Restarter {
            signal_peer: signal_peer.clone(),
            polite: false,
        };
        Some(HandshakeResult {
            peer_id: signal_peer.id,
            data_channels,
            metadata: (peer_disconnected_rx, conn, signaled, peer_signal_rx, restarter),
        })
    }

    async fn accept_handshake(
        signal_peer: SignalPeer,
        mut peer_signal_rx: UnboundedReceiver<PeerSignal>,
        messages_from_peers_tx: Vec<UnboundedSender<(PeerId, Packet)>>,
        ice_server_config: &RtcIceServerConfig,
        channel_configs: &[ChannelConfig],
    ) -> Option<HandshakeResult<Self::DataChannel, Self::HandshakeMeta>> {
        debug!("handshake_accept");

        // FERRY PATCH 7: see `offer_handshake`.
        let conn = or_abandon(
            create_rtc_peer_connection(ice_server_config),
            "the browser refused a new connection",
        )?;
        let guard = CloseUnlessConnected(Some(conn.clone()));

        let (data_channel_ready_txs, data_channels_ready_fut) =
            create_data_channels_ready_fut(channel_configs);

        let (peer_disconnected_tx, peer_disconnected_rx) = futures_channel::mpsc::channel(1);

        let data_channels = create_data_channels(
            conn.clone(),
            messages_from_peers_tx,
            signal_peer.id,
            peer_disconnected_tx,
            data_channel_ready_txs,
            channel_configs,
        );

        let mut received_candidates = vec![];

        let offer = loop {
            // FERRY PATCH: signaling lost mid-handshake abandons the handshake (was `expect`).
            let signal = or_abandon(
                peer_signal_rx.next().await.ok_or("no more signals"),
                "signaling ended in the middle of a handshake",
            )?;

            match signal {
                PeerSignal::Offer(o) => {
                    break o;
                }
                PeerSignal::IceCandidate(candidate) => {
                    debug!("received IceCandidate signal: {candidate:?}");
                    received_candidates.push(candidate);
                }
                _ => {
                    warn!("ignoring unexpected signal: {signal:?}");
                }
            }
        };
        debug!("received offer");

        // Set remote description
        {
            let remote_description = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
            let sdp = offer;
            remote_description.set_sdp(&sdp);
            // FERRY PATCH: a malformed offer abandons this handshake instead of panicking.
            or_abandon(
                JsFuture::from(conn.set_remote_description(&remote_description)).await,
                "the peer's offer was rejected",
            )?;
            debug!("set remote_description from offer");
        }

        let answer = or_abandon(
            JsFuture::from(conn.create_answer()).await,
            "no answer could be created for the peer's offer",
        )?;

        debug!("created answer");

        let session_desc_init = RtcSessionDescriptionInit::new(RtcSdpType::Answer);

        // FERRY PATCH 7: were `unwrap`s.
        let answer_sdp = or_abandon(sdp_of(&answer), "the answer has no SDP")?;

        session_desc_init.set_sdp(&answer_sdp);

        or_abandon(
            JsFuture::from(conn.set_local_description(&session_desc_init))
                .await
                .efix(),
            "the answer could not be set",
        )?;

        // todo: the point of implementing ice trickle is to avoid this wait...
        // however, for some reason removing this wait causes problems with NAT
        // punching in practice.
        // We should figure out why this is happening.
        wait_for_ice_gathering_complete(conn.clone()).await;

        let local = or_abandon(conn.local_description().ok_or(()), "no local description")?;
        let answer = PeerSignal::Answer(local.sdp());
        signal_peer.send(answer);

        let signaled = SignaledCandidates::default();
        let peer_signal_rx = complete_handshake(
            signal_peer.clone(),
            conn.clone(),
            received_candidates,
            data_channels_ready_fut,
            peer_signal_rx,
            signaled.clone(),
        )
        .await;

        guard.disarm();
        // FERRY PATCH 12: the answering end yields when both ends offer a restart at once.
        let restarter = Restarter {
            signal_peer: signal_peer.clone(),
            polite: true,
        };
        Some(HandshakeResult {
            peer_id: signal_peer.id,
            data_channels,
            metadata: (peer_disconnected_rx, conn, signaled, peer_signal_rx, restarter),
        })
    }

    async fn peer_loop(
        peer_uuid: PeerId,
        handshake_meta: Self::HandshakeMeta,
        candidate_pair_tx: UnboundedSender<(PeerId, CandidatePair)>,
        redial_tx: UnboundedSender<()>,
    ) -> PeerId {
        let (mut peer_loop_finished_rx, conn, signaled, mut peer_signal_rx, restarter) =
            handshake_meta;
        let (silence_tx, mut silence_rx) = futures_channel::mpsc::unbounded::<()>();
        let mut candidate_pairs = Box::pin(
            report_candidate_pairs(&conn, peer_uuid, candidate_pair_tx, signaled.clone(), silence_tx)
                .fuse(),
        );
        // FERRY PATCH 12: ICE state changes, silence and network changes drive restarts.
        let (state_tx, mut state_rx) = futures_channel::mpsc::unbounded::<()>();
        // JS owns the handler: if this loop is dropped (its socket closed) before it unhooks
        // it, a later event finds a closed channel instead of a dropped Rust closure.
        let on_state: JsValue = Closure::<dyn FnMut()>::new(move || {
            let _ = state_tx.unbounded_send(());
        })
        .into_js_value();
        let _ = conn.add_event_listener_with_callback(
            "iceconnectionstatechange",
            on_state.unchecked_ref(),
        );
        let mut nudges = super::socket::listen_for_nudges();
        let mut restart = RestartState::default();
        let mut tick = Delay::new(RESTART_TICK).fuse();
        loop {
            select! {
                _ = peer_loop_finished_rx.next() => break,
                _ = candidate_pairs => break,
                // Candidates keep trickling in after the channels opened
                signal = peer_signal_rx.next() => {
                    match signal {
                        Some(PeerSignal::IceCandidate(candidate)) => {
                            try_add_rtc_ice_candidate(&conn, &signaled, &candidate).await;
                        }
                        // FERRY PATCH 12: the peer restarts ICE on this connection.
                        Some(PeerSignal::Offer(sdp)) => {
                            restarter.answer(&conn, &sdp).await;
                        }
                        Some(PeerSignal::Answer(sdp)) => restarter.accept_answer(&conn, &sdp).await,
                        None => {}
                    }
                }
                _ = state_rx.next() => {
                    use web_sys::RtcIceConnectionState as S;
                    info!("ICE with {peer_uuid}: {:?}", conn.ice_connection_state());
                    match conn.ice_connection_state() {
                        // The tick decides whether that is "back" (see there), now.
                        S::Connected | S::Completed => tick = Delay::new(Duration::ZERO).fuse(),
                        // A brief `disconnected` often heals itself: the tick restarts if
                        // it lasts.
                        S::Disconnected => {
                            restart.trouble_since.get_or_insert_with(js_sys::Date::now);
                        }
                        S::Failed => {
                            restart.trouble_since.get_or_insert_with(js_sys::Date::now);
                            if restart.begin(peer_uuid, &redial_tx) {
                                restarter.offer(&conn).await;
                            }
                        }
                        _ => {}
                    }
                }
                _ = silence_rx.next() => {
                    restart.last_silence = Some(js_sys::Date::now());
                    if restart.trouble_since.is_none() {
                        // Already seconds of nothing: no grace, restart now.
                        info!("nothing arrived from {peer_uuid} for {SILENCE_MS} ms");
                        restart.trouble_since = Some(js_sys::Date::now());
                        if restart.begin(peer_uuid, &redial_tx) {
                            restarter.offer(&conn).await;
                        }
                    }
                }
                nudge = nudges.next() => {
                    let offer = match nudge {
                        Some(super::socket::Nudge::NetworkChanged) => {
                            restart.trouble_since.get_or_insert_with(js_sys::Date::now);
                            restart.begin(peer_uuid, &redial_tx)
                        }
                        // A restart under way offers again at once: its last offer may
                        // have gone to the dead connection.
                        Some(super::socket::Nudge::SignalingResumed) => {
                            restart.offered_at.is_some() && restart.begin(peer_uuid, &redial_tx)
                        }
                        None => false,
                    };
                    if offer {
                        restarter.offer(&conn).await;
                    }
                }
                _ = tick => {
                    tick = Delay::new(RESTART_TICK).fuse();
                    // A restart can succeed without ICE ever leaving `connected` (the browser
                    // had not noticed the old path was dead yet): answered, connected and
                    // hearing from the peer again is back.
                    let healthy = matches!(
                        conn.ice_connection_state(),
                        web_sys::RtcIceConnectionState::Connected | web_sys::RtcIceConnectionState::Completed
                    ) && conn.signaling_state() == web_sys::RtcSignalingState::Stable;
                    if healthy && !restart.silent_lately() {
                        if let Some(after_ms) = restart.recovered() {
                            info!("connection to {peer_uuid} is back after {after_ms} ms (ICE restart)");
                            nudge_retransmission(&conn);
                            super::socket::record_ice_recovery(crate::IceRecovery { peer: peer_uuid, after_ms });
                            super::socket::set_reconnecting(peer_uuid, false);
                            super::socket::wake();
                        }
                        continue;
                    }
                    match restart.on_tick() {
                        Tick::Nothing => {}
                        Tick::Offer => {
                            if restart.begin(peer_uuid, &redial_tx) {
                                restarter.offer(&conn).await;
                            }
                        }
                        Tick::GiveUp => {
                            warn!("ICE restart with {peer_uuid} did not reconnect within {RESTART_DEADLINE_MS} ms; closing the connection");
                            super::socket::record_failed_restart(peer_uuid);
                            break;
                        }
                    }
                }
            }
        }
        // FERRY PATCH 7: the peer is gone (a data channel closed): release the connection
        // rather than leave it to the browser, which keeps it until the page closes.
        let _ = conn.remove_event_listener_with_callback(
            "iceconnectionstatechange",
            on_state.unchecked_ref(),
        );
        conn.set_onicecandidate(None);
        super::socket::set_reconnecting(peer_uuid, false);
        conn.close();
        peer_uuid
    }
}

/// FERRY PATCH 12: makes SCTP retransmit at once what it sent into the dead path. Its
/// retransmission timer backed off while the path was dead (seconds), and nothing tells it
/// the path is back; a few packets that the peer acknowledges report the older ones missing,
/// and three such reports retransmit them (fast retransmit). The packets go on a channel the
/// peer does not have (negotiated id [`NUDGE_CHANNEL`], unordered, never retransmitted): its
/// SCTP acknowledges them and the browser drops them unread.
fn nudge_retransmission(conn: &RtcPeerConnection) {
    let init = RtcDataChannelInit::new();
    init.set_negotiated(true);
    init.set_id(NUDGE_CHANNEL);
    init.set_ordered(false);
    init.set_max_retransmits(0);
    let channel = conn.create_data_channel_with_data_channel_dict("ferry-nudge", &init);
    let on_open = Closure::<dyn FnMut(Event)>::new(move |event: Event| {
        let Some(channel) = event
            .target()
            .and_then(|t| t.dyn_into::<RtcDataChannel>().ok())
        else {
            return;
        };
        for _ in 0..4 {
            let _ = channel.send_with_u8_array(&[0]);
        }
        channel.close();
    })
    .into_js_value();
    channel.set_onopen(Some(on_open.unchecked_ref()));
}

/// FERRY PATCH 12: the stream of [`nudge_retransmission`] (Ferry's channels are 0 and 1).
const NUDGE_CHANNEL: u16 = 1023;

/// FERRY PATCH 12: how often a connection in trouble is looked at.
const RESTART_TICK: Duration = Duration::from_millis(500);
/// FERRY PATCH 12: how long ICE may stay `disconnected` before it is restarted (it often heals
/// by itself within a second: a busy CPU, a lost burst).
const DISCONNECTED_GRACE_MS: f64 = 1_000.0;
/// FERRY PATCH 12: a restart offer that got no answer is offered again after this (the peer's
/// signaling may only now have been re-dialed).
const REOFFER_MS: f64 = 2_000.0;
/// FERRY PATCH 12: how long a restart's offer or answer waits for candidates before it goes
/// out (host and relay candidates of a lab or LAN come within milliseconds; later ones are
/// trickled, and the peer loop applies a description before the candidates queued after it).
const RESTART_GATHERING: Duration = Duration::from_millis(250);
/// FERRY PATCH 12: restart offers closer together than this are one.
const OFFER_DEBOUNCE_MS: f64 = 500.0;
/// FERRY PATCH 12: a restart that has not reconnected after this gives up: the connection is
/// closed and the application connects anew (its reconnect loop), keeping what it queued.
const RESTART_DEADLINE_MS: f64 = 20_000.0;

/// FERRY PATCH 12: where a connection stands with ICE restarts.
#[derive(Default)]
struct RestartState {
    /// When trouble was first seen (ICE `disconnected`/`failed`, or a network change).
    trouble_since: Option<f64>,
    /// When the last restart offer went out (`None`: no restart under way).
    offered_at: Option<f64>,
    /// When the stats last said nothing arrives.
    last_silence: Option<f64>,
}

enum Tick {
    Nothing,
    Offer,
    GiveUp,
}

impl RestartState {
    /// A restart begins (or is offered again): the peer counts as reconnecting, and signaling
    /// is re-dialed in case its connection died with the old network. `false` when an offer
    /// went out less than [`OFFER_DEBOUNCE_MS`] ago (a network change fires several events).
    fn begin(&mut self, peer: PeerId, redial_tx: &UnboundedSender<()>) -> bool {
        let now = js_sys::Date::now();
        if self.offered_at.is_some_and(|at| now - at < OFFER_DEBOUNCE_MS) {
            return false;
        }
        self.offered_at = Some(now);
        super::socket::set_reconnecting(peer, true);
        super::socket::wake();
        let _ = redial_tx.unbounded_send(());
        true
    }

    fn on_tick(&self) -> Tick {
        let Some(since) = self.trouble_since else {
            return Tick::Nothing;
        };
        let now = js_sys::Date::now();
        match self.offered_at {
            _ if now - since > RESTART_DEADLINE_MS => Tick::GiveUp,
            None if now - since >= DISCONNECTED_GRACE_MS => Tick::Offer,
            Some(at) if now - at >= REOFFER_MS => Tick::Offer,
            _ => Tick::Nothing,
        }
    }

    /// Whether the stats said "silent" within the last two looks (they are read twice a second).
    fn silent_lately(&self) -> bool {
        self.last_silence
            .is_some_and(|at| js_sys::Date::now() - at < 1_000.0)
    }

    /// ICE connected again: how long it was down, if it was in trouble.
    fn recovered(&mut self) -> Option<u32> {
        let since = self.trouble_since.take()?;
        let restarted = self.offered_at.take().is_some();
        restarted.then(|| (js_sys::Date::now() - since).max(0.0) as u32)
    }
}

/// FERRY PATCH 12: restarts ICE on a live connection (`restartIce()` and a new offer through
/// signaling), and answers the peer's restarts. Either end may offer; when both do at once,
/// the end that answered the first handshake yields ("perfect negotiation": it rolls its own
/// offer back and answers), the other ignores the colliding offer.
pub(crate) struct Restarter {
    signal_peer: SignalPeer,
    polite: bool,
}

impl Restarter {
    async fn offer(&self, conn: &RtcPeerConnection) {
        // An offer still waiting for its answer is sent again as it is (it or its answer may
        // have gone down with the old network). A new one would make two answers in flight,
        // and the first to arrive would pair this end with credentials the peer dropped.
        if conn.signaling_state() == web_sys::RtcSignalingState::HaveLocalOffer
            && let Some(pending) = conn.local_description()
        {
            info!("sending the ICE restart offer again");
            self.signal_peer.send(PeerSignal::Offer(pending.sdp()));
            return;
        }
        if let Ok(restart) = Reflect::get(conn, &"restartIce".into())
            .and_then(|f| f.dyn_into::<Function>().map_err(JsValue::from))
        {
            let _ = restart.call0(conn);
        }
        let Some(offer) = JsFuture::from(conn.create_offer()).await.ok() else {
            warn!("no ICE restart offer could be created");
            return;
        };
        let Some(sdp) = sdp_of(&offer).ok() else { return };
        let description = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        description.set_sdp(&sdp);
        if let Err(e) = JsFuture::from(conn.set_local_description(&description)).await {
            warn!("the ICE restart offer could not be set: {e:?}");
            return;
        }
        wait_for_ice_gathering(conn.clone(), RESTART_GATHERING).await;
        if let Some(local) = conn.local_description() {
            info!("sending an ICE restart offer");
            self.signal_peer.send(PeerSignal::Offer(local.sdp()));
        }
    }

    async fn answer(&self, conn: &RtcPeerConnection, sdp: &str) {
        use web_sys::RtcSignalingState as S;
        if conn.signaling_state() != S::Stable {
            if !self.polite {
                info!("ignoring a colliding restart offer (the peer yields)");
                return;
            }
            let rollback = RtcSessionDescriptionInit::new(RtcSdpType::Rollback);
            if let Err(e) = JsFuture::from(conn.set_local_description(&rollback)).await {
                warn!("could not roll back our restart offer: {e:?}");
                return;
            }
        }
        let remote = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        remote.set_sdp(sdp);
        if let Err(e) = JsFuture::from(conn.set_remote_description(&remote)).await {
            warn!("ignoring a restart offer the browser rejected: {e:?}");
            return;
        }
        let Some(answer) = JsFuture::from(conn.create_answer()).await.ok() else {
            warn!("no answer to a restart offer could be created");
            return;
        };
        let Some(answer_sdp) = sdp_of(&answer).ok() else { return };
        let local = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
        local.set_sdp(&answer_sdp);
        if let Err(e) = JsFuture::from(conn.set_local_description(&local)).await {
            warn!("the restart answer could not be set: {e:?}");
            return;
        }
        wait_for_ice_gathering(conn.clone(), RESTART_GATHERING).await;
        if let Some(local) = conn.local_description() {
            info!("answering an ICE restart");
            self.signal_peer.send(PeerSignal::Answer(local.sdp()));
        }
    }

    async fn accept_answer(&self, conn: &RtcPeerConnection, sdp: &str) {
        if conn.signaling_state() != web_sys::RtcSignalingState::HaveLocalOffer {
            info!("ignoring an answer to no pending offer");
            return;
        }
        let remote = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
        remote.set_sdp(sdp);
        if let Err(e) = JsFuture::from(conn.set_remote_description(&remote)).await {
            warn!("ignoring a restart answer the browser rejected: {e:?}");
        }
    }
}

/// Reports the candidate pair the connection uses, and again whenever it changes.
/// FERRY PATCH 12: also tells `silence_tx` when nothing arrived on that pair for
/// [`SILENCE_MS`] (ICE itself says `disconnected` only after ~6 s).
async fn report_candidate_pairs(
    conn: &RtcPeerConnection,
    peer: PeerId,
    tx: UnboundedSender<(PeerId, CandidatePair)>,
    signaled: SignaledCandidates,
    silence_tx: UnboundedSender<()>,
) {
    let mut reported = None;
    loop {
        if let Some((pair, silent_ms)) = selected_candidate_pair(conn, &signaled).await {
            if reported != Some(pair) {
                reported = Some(pair);
                if tx.unbounded_send((peer, pair)).is_err() {
                    // socket dropped
                    return;
                }
            }
            if silent_ms.is_some_and(|ms| ms > SILENCE_MS) {
                let _ = silence_tx.unbounded_send(());
            }
        }
        // FERRY PATCH 12: twice a second (was once), so silence is seen within half a second.
        Delay::new(Duration::from_millis(500)).await;
    }
}

/// FERRY PATCH 12: a selected pair that received nothing (not even ICE's own checks, which
/// both ends send every 2.5 s) for this long is taken as a dead path.
const SILENCE_MS: f64 = 3_500.0;

/// Reads the selected candidate pair out of `getStats()`. Chrome names it on the transport
/// stats, Firefox flags the pair itself.
async fn selected_candidate_pair(
    conn: &RtcPeerConnection,
    signaled: &SignaledCandidates,
) -> Option<(CandidatePair, Option<f64>)> {
    let report: Map = JsFuture::from(conn.get_stats())
        .await
        .ok()?
        .unchecked_into();
    let string = |stats: &JsValue, key: &str| Reflect::get(stats, &key.into()).ok()?.as_string();
    let flag = |stats: &JsValue, key: &str| {
        Reflect::get(stats, &key.into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    };

    let mut selected_id = None;
    let mut pairs = vec![];
    let mut candidates = std::collections::HashMap::new();
    for stats in report.values().into_iter().flatten() {
        match string(&stats, "type").as_deref() {
            Some("transport") => {
                if let Some(id) = string(&stats, "selectedCandidatePairId") {
                    selected_id = Some(id);
                }
            }
            Some("candidate-pair") => pairs.push(stats),
            Some("local-candidate") | Some("remote-candidate") => {
                if let (Some(id), Some(typ)) =
                    (string(&stats, "id"), string(&stats, "candidateType"))
                {
                    // Older stats call the address `ip`
                    let address = string(&stats, "address").or_else(|| string(&stats, "ip"));
                    let port = Reflect::get(&stats, &"port".into())
                        .ok()
                        .and_then(|port| port.as_f64())
                        .map(|port| port as u16);
                    // FERRY PATCH: how a relay candidate reaches its TURN server.
                    let relay = string(&stats, "relayProtocol")
                        .as_deref()
                        .and_then(RelayProtocol::from_stats);
                    candidates.insert(id, (typ, address, port, relay));
                }
            }
            _ => {}
        }
    }

    let pair = pairs.iter().find(|pair| match &selected_id {
        Some(id) => string(pair, "id").as_deref() == Some(id),
        None => {
            flag(pair, "selected")
                || (flag(pair, "nominated")
                    && string(pair, "state").as_deref() == Some("succeeded"))
        }
    })?;
    let candidate_type = |key: &str| {
        let (typ, address, port, _) = candidates.get(&string(pair, key)?)?;
        match typ.as_str() {
            "host" => Some(CandidateType::Host),
            "srflx" => Some(CandidateType::ServerReflexive),
            "prflx" => match (address, port) {
                (Some(address), Some(port)) => {
                    signaled_type(signaled, address, *port).or(Some(CandidateType::PeerReflexive))
                }
                _ => Some(CandidateType::PeerReflexive),
            },
            "relay" => Some(CandidateType::Relay),
            _ => None,
        }
    };
    // FERRY PATCH: the round trip the browser measured on this pair (seconds in stats).
    let rtt_ms = Reflect::get(pair, &"currentRoundTripTime".into())
        .ok()
        .and_then(|v| v.as_f64())
        .map(|s| (s * 1000.0).round() as u32);
    let local = candidate_type("localCandidateId")?;
    let relay_protocol = (local == CandidateType::Relay)
        .then(|| candidates.get(&string(pair, "localCandidateId")?)?.3)
        .flatten();
    // FERRY PATCH 12: how long the pair has been silent (both times are the stats' clock).
    let number = |key: &str| Reflect::get(pair, &key.into()).ok()?.as_f64();
    let silent_ms = number("timestamp")
        .zip(number("lastPacketReceivedTimestamp"))
        .map(|(now, last)| now - last);
    Some((
        CandidatePair {
            local,
            remote: candidate_type("remoteCandidateId")?,
            rtt_ms,
            relay_protocol,
        },
        silent_ms,
    ))
}

async fn complete_handshake(
    signal_peer: SignalPeer,
    conn: RtcPeerConnection,
    received_candidates: Vec<String>,
    mut data_channels_ready_fut: Pin<Box<futures::future::Fuse<impl Future<Output = ()>>>>,
    mut peer_signal_rx: UnboundedReceiver<PeerSignal>,
    signaled: SignaledCandidates,
) -> UnboundedReceiver<PeerSignal> {
    let onicecandidate: Box<dyn FnMut(RtcPeerConnectionIceEvent)> = Box::new(
        move |event: RtcPeerConnectionIceEvent| {
            let candidate_json = match event.candidate() {
                // FERRY PATCH 7: was `expect`/`unwrap`.
                Some(candidate) => match js_sys::JSON::stringify(&candidate.to_json())
                    .ok()
                    .and_then(|json| json.as_string())
                {
                    Some(json) => json,
                    None => {
                        warn!("skipping an ICE candidate that does not serialize");
                        return;
                    }
                },
                None => {
                    debug!(
                        "Received RtcPeerConnectionIceEvent with no candidate. This means there are no further ice candidates for this session"
                    );
                    "null".to_string()
                }
            };

            debug!("sending IceCandidate signal: {candidate_json:?}");
            signal_peer.send(PeerSignal::IceCandidate(candidate_json));
        },
    );
    // FERRY PATCH 12: JS owns the handler (freed once `peer_loop` unsets it): candidates keep
    // going to the peer for the life of the connection.
    let onicecandidate = Closure::wrap(onicecandidate).into_js_value();
    conn.set_onicecandidate(Some(onicecandidate.unchecked_ref()));

    // handle pending ICE candidates
    for candidate in received_candidates {
        debug!("adding ice candidate {candidate:?}");
        try_add_rtc_ice_candidate(&conn, &signaled, &candidate).await;
    }

    // select for data channels ready or ice candidates
    debug!("waiting for data channels to open");
    loop {
        select! {
            _ = data_channels_ready_fut => {
                debug!("data channels ready");
                break;
            }
            msg = peer_signal_rx.next() => {
                if let Some(PeerSignal::IceCandidate(candidate)) = msg {
                    try_add_rtc_ice_candidate(&conn, &signaled, &candidate).await;
                }
            }
        };
    }

    // FERRY PATCH 12: candidates keep going to the peer after the channels opened (upstream
    // stopped listening here): an ICE restart gathers new ones on this connection.
    debug!(
        "handshake completed, ice gathering state: {:?}",
        conn.ice_gathering_state()
    );
    peer_signal_rx
}

async fn try_add_rtc_ice_candidate(
    connection: &RtcPeerConnection,
    signaled: &SignaledCandidates,
    candidate_string: &str,
) {
    let parsed_candidate = match js_sys::JSON::parse(candidate_string) {
        Ok(c) => c,
        Err(err) => {
            warn!("failed to parse ice candidate json, ignoring: {err:?}");
            return;
        }
    };

    let candidate_init = if parsed_candidate.is_null() {
        debug!("Received null ice candidate, this means there are no further ice candidates");
        None
    } else {
        if let Some(sdp) = Reflect::get(&parsed_candidate, &"candidate".into())
            .ok()
            .and_then(|sdp| sdp.as_string())
        {
            record_signaled_candidate(signaled, &sdp);
        }
        let candidate = RtcIceCandidateInit::from(parsed_candidate);
        debug!("ice candidate received: {candidate:?}");
        Some(candidate)
    };

    // FERRY PATCH: a candidate the browser rejects is skipped (was `expect`, a panic on input
    // from the network).
    if let Err(e) = JsFuture::from(
        connection.add_ice_candidate_with_opt_rtc_ice_candidate_init(candidate_init.as_ref()),
    )
    .await
    {
        warn!("ignoring an ICE candidate the browser rejected: {e:?}");
    }
}

/// FERRY PATCH 4, 7: a handshake step that fails on input from the network (a malformed
/// SDP, signaling gone mid-handshake) or that the browser refuses abandons that handshake
/// instead of panicking: the handshake returns `None` (use with `?`), its connection is
/// closed by [`CloseUnlessConnected`], that peer never connects and the application lives on.
fn or_abandon<T, E: std::fmt::Debug>(result: Result<T, E>, what: &str) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            warn!("abandoning a handshake: {what}: {e:?}");
            None
        }
    }
}

/// FERRY PATCH 7: closes a handshake's connection when the handshake ends without connecting
/// (abandoned, timed out, or cancelled because the peer left: its future is dropped).
/// Upstream left such connections open for the life of the page: anyone who knows a room id
/// could join and leave it until the browser refuses new connections.
struct CloseUnlessConnected(Option<RtcPeerConnection>);

impl CloseUnlessConnected {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CloseUnlessConnected {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            debug!("closing the connection of an unfinished handshake");
            conn.close();
        }
    }
}

/// The `sdp` of an offer or answer the browser created.
fn sdp_of(description: &JsValue) -> Result<String, JsValue> {
    Reflect::get(description, &JsValue::from_str("sdp"))?
        .as_string()
        .ok_or_else(|| JsValue::from_str("not a string"))
}

/// FERRY PATCH: connections that finished signaling only count as failed when they stay
/// unconnected this long. With nothing to try (say, relay-only without a TURN server) ICE
/// never reaches `failed` by itself.
const CONNECT_DEADLINE_MS: f64 = 25_000.0;

thread_local! {
    /// FERRY PATCH: connections not yet connected, with when they were created.
    static UNCONNECTED: std::cell::RefCell<Vec<(RtcPeerConnection, f64)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn candidate_types(conn: &RtcPeerConnection) -> crate::IceFailure {
    let types = |d: Option<web_sys::RtcSessionDescription>| {
        d.map(|d| crate::webrtc_socket::socket::sdp_candidate_types(&d.sdp()))
            .unwrap_or_default()
    };
    crate::IceFailure {
        local: types(conn.local_description()),
        remote: types(conn.remote_description()),
    }
}

/// FERRY PATCH: records connections whose signaling completed but that did not connect within
/// [`CONNECT_DEADLINE_MS`] (a handshake abandoned before that is not a reachability problem).
pub(crate) fn sweep_unconnected() {
    use web_sys::RtcIceConnectionState as S;
    let now = js_sys::Date::now();
    UNCONNECTED.with(|list| {
        list.borrow_mut().retain(|(conn, created)| {
            match conn.ice_connection_state() {
                S::Connected | S::Completed | S::Closed | S::Failed => false,
                _ if now - created < CONNECT_DEADLINE_MS => true,
                _ if conn.signaling_state() == web_sys::RtcSignalingState::Stable
                    && conn.remote_description().is_some() =>
                {
                    crate::webrtc_socket::socket::record_ice_failure(candidate_types(conn));
                    false
                }
                // Never finished signaling: an abandoned handshake, not a network problem.
                _ => false,
            }
        })
    });
}

fn create_rtc_peer_connection(
    ice_server_config: &RtcIceServerConfig,
) -> Result<RtcPeerConnection, JsValue> {
    #[derive(Serialize)]
    struct IceServerConfig {
        urls: Vec<String>,
        username: String,
        credential: String,
    }

    let peer_config = RtcConfiguration::new();
    // Browsers reject an ice server entry without urls
    let ice_servers: Vec<IceServerConfig> = if ice_server_config.urls.is_empty() {
        vec![]
    } else {
        vec![IceServerConfig {
            urls: ice_server_config.urls.clone(),
            username: ice_server_config.username.clone().unwrap_or_default(),
            credential: ice_server_config.credential.clone().unwrap_or_default(),
        }]
    };
    // FERRY PATCH 7: were `unwrap`s. The constructor throws on a bad ICE configuration and
    // once the browser has too many connections (Chromium: 500 per page).
    peer_config.set_ice_servers(&serde_wasm_bindgen::to_value(&ice_servers)?);
    let connection = RtcPeerConnection::new_with_configuration(&peer_config)?;

    let was_connected = std::cell::Cell::new(false);
    // FERRY PATCH 7: the handler finds its connection through the event rather than holding
    // it: the closure is leaked (`forget`), and a connection it held could never be freed.
    let oniceconnectionstatechange: Box<dyn FnMut(_)> = Box::new(move |event: Event| {
        let Some(connection_1) = event
            .target()
            .and_then(|t| t.dyn_into::<RtcPeerConnection>().ok())
        else {
            return;
        };
        let state = connection_1.ice_connection_state();
        debug!("ice connection state changed: {state:?}");
        // FERRY PATCH: report connections that never got through (with what each end had to
        // offer) instead of leaving the handshake hanging silently. A connection that worked
        // and later failed is a peer going away, not a reachability problem.
        if matches!(
            state,
            web_sys::RtcIceConnectionState::Connected | web_sys::RtcIceConnectionState::Completed
        ) {
            was_connected.set(true);
        }
        if state == web_sys::RtcIceConnectionState::Failed && !was_connected.get() {
            crate::webrtc_socket::socket::record_ice_failure(candidate_types(&connection_1));
        }
    });
    let oniceconnectionstatechange = Closure::wrap(oniceconnectionstatechange);
    // NOTE: Not attaching a handler on this event causes FF to disconnect after a couple of seconds
    // see: https://github.com/johanhelsing/matchbox/issues/36
    connection
        .set_oniceconnectionstatechange(Some(oniceconnectionstatechange.as_ref().unchecked_ref()));
    oniceconnectionstatechange.forget();
    UNCONNECTED.with(|list| {
        list.borrow_mut()
            .push((connection.clone(), js_sys::Date::now()))
    });

    Ok(connection)
}

async fn wait_for_ice_gathering_complete(conn: RtcPeerConnection) {
    wait_for_ice_gathering(conn, GATHERING_TIMEOUT).await
}

/// FERRY PATCH 12: [`wait_for_ice_gathering_complete`] with its own bound: a restart trickles
/// what comes later, so it waits less.
async fn wait_for_ice_gathering(conn: RtcPeerConnection, limit: Duration) {
    if conn.ice_gathering_state() == RtcIceGatheringState::Complete {
        debug!("Ice gathering already completed");
        return;
    }

    let (mut tx, mut rx) = futures_channel::mpsc::channel(1);

    let conn_clone = conn.clone();
    let onstatechange: Box<dyn FnMut(JsValue)> = Box::new(move |_| {
        if conn_clone.ice_gathering_state() == RtcIceGatheringState::Complete {
            // FERRY PATCH: was `.unwrap()`, which panics (and kills a panic=abort app) when the
            // state is reported complete twice.
            let _ = tx.try_send(());
        }
    });

    let onstatechange = Closure::wrap(onstatechange);

    conn.set_onicegatheringstatechange(Some(onstatechange.as_ref().unchecked_ref()));
    // FERRY PATCH 12: unhooks the handler however this wait ends, also when its future is
    // dropped mid-way (a restart inside a peer loop whose socket closed): the browser would
    // otherwise call the dropped closure ("closure invoked ... after being dropped").
    struct Unhook(RtcPeerConnection);
    impl Drop for Unhook {
        fn drop(&mut self) {
            self.0.set_onicegatheringstatechange(None);
        }
    }
    let _unhook = Unhook(conn.clone());

    // FERRY PATCH: bound the wait. An unreachable STUN/TURN server keeps gathering open for
    // ~40 s (forever for TURN/TCP to a host that drops packets), stalling every connection
    // even between devices on one network. Host candidates are gathered within milliseconds;
    // after GATHERING_TIMEOUT the offer/answer goes out with what was found, and candidates
    // found later still go out one by one through the trickle path of `complete_handshake`.
    let mut timeout = Delay::new(limit).fuse();
    select! {
        _ = rx.next() => debug!("Ice gathering completed"),
        _ = timeout => warn!("Ice gathering still running after {limit:?}; continuing"),
    }

    conn.set_onicegatheringstatechange(None);
}

/// FERRY PATCH: how long an offer or answer waits for ICE gathering to complete.
const GATHERING_TIMEOUT: Duration = Duration::from_millis(1000);

fn create_data_channels(
    connection: RtcPeerConnection,
    incoming_tx: Vec<futures_channel::mpsc::UnboundedSender<(PeerId, Packet)>>,
    peer_id: PeerId,
    peer_disconnected_tx: futures_channel::mpsc::Sender<()>,
    data_channel_ready_txs: Vec<futures_channel::mpsc::Sender<()>>,
    channel_config: &[ChannelConfig],
) -> Vec<RtcDataChannel> {
    // FERRY PATCH 7: zipped (were `unwrap`s on equally long lists).
    channel_config
        .iter()
        .zip(incoming_tx)
        .zip(data_channel_ready_txs)
        .enumerate()
        .map(|(i, ((channel, incoming_tx), ready_tx))| {
            create_data_channel(
                connection.clone(),
                incoming_tx,
                peer_id,
                peer_disconnected_tx.clone(),
                ready_tx,
                channel,
                i,
            )
        })
        .collect()
}

/// FERRY PATCH 9: the largest data channel message accepted. Chromium refuses to send more
/// than 256 KiB in one message and announces the same limit (`a=max-message-size:262144`) to
/// its peers, so only a tampered peer sends more; Ferry's own frames are at most 64 KiB
/// (`ferry_core::wire::MAX_PACKET`).
const MAX_RECEIVED_MESSAGE: usize = 256 * 1024;

fn create_data_channel(
    connection: RtcPeerConnection,
    incoming_tx: futures_channel::mpsc::UnboundedSender<(PeerId, Packet)>,
    peer_id: PeerId,
    peer_disconnected_tx: futures_channel::mpsc::Sender<()>,
    mut channel_open: futures_channel::mpsc::Sender<()>,
    channel_config: &ChannelConfig,
    channel_id: usize,
) -> RtcDataChannel {
    let data_channel_config = data_channel_config(channel_config);
    data_channel_config.set_id(channel_id as u16);

    let channel = connection.create_data_channel_with_data_channel_dict(
        &format!("matchbox_socket_{channel_id}"),
        &data_channel_config,
    );

    channel.set_binary_type(RtcDataChannelType::Arraybuffer);

    leaking_channel_event_handler(
        |f| channel.set_onopen(f),
        move |_: JsValue| {
            debug!("data channel open: {channel_id}");
            // FERRY PATCH 7: was `expect`; fails once the handshake is gone.
            if channel_open.try_send(()).is_err() {
                debug!("data channel {channel_id} opened after its handshake ended");
            }
            // FERRY PATCH 6
            super::socket::wake();
        },
    );

    leaking_channel_event_handler(
        |f| channel.set_onmessage(f),
        move |event: MessageEvent| {
            trace!("data channel message received {event:?}");
            if let Ok(arraybuf) = event.data().dyn_into::<js_sys::ArrayBuffer>() {
                // FERRY PATCH 9: look at the size before copying the message into wasm
                // memory; a peer could otherwise make us hold (and the app decode) any size.
                let len = arraybuf.byte_length() as usize;
                if len > MAX_RECEIVED_MESSAGE {
                    super::socket::record_oversized_message();
                    web_sys::console::warn_1(
                        &format!(
                            "dropped an oversized data channel message from {peer_id}: {len} bytes"
                        )
                        .into(),
                    );
                    return;
                }
                let uarray = js_sys::Uint8Array::new(&arraybuf);
                let body = uarray.to_vec();

                if let Err(e) = incoming_tx.unbounded_send((peer_id, body.into())) {
                    // should only happen if the socket is dropped, or we are out of memory
                    warn!("failed to notify about data channel message: {e:?}");
                }
                // FERRY PATCH 6
                super::socket::wake();
            }
        },
    );

    leaking_channel_event_handler(
        |f| channel.set_onerror(f),
        move |event: Event| {
            error!("error in data channel: {event:?}");
        },
    );

    leaking_channel_event_handler(
        |f| channel.set_onclose(f),
        move |event: Event| {
            warn!("data channel closed: {event:?}");
            if let Err(err) = peer_disconnected_tx.clone().try_send(()) {
                // should only happen if the socket is dropped, or we are out of memory
                warn!("failed to notify about data channel closing: {err:?}");
            }
            // FERRY PATCH 6
            super::socket::wake();
        },
    );

    channel
}

/// Note that this function leaks some memory because the rust closure is dropped but still needs to
/// be accessed by javascript of the browser
///
/// See also: https://rustwasm.github.io/wasm-bindgen/api/wasm_bindgen/closure/struct.Closure.html#method.into_js_value
fn leaking_channel_event_handler<T: FromWasmAbi + 'static>(
    mut setter: impl FnMut(Option<&Function>),
    handler: impl FnMut(T) + 'static,
) {
    let closure: Closure<dyn FnMut(T)> = Closure::wrap(Box::new(handler));

    setter(Some(closure.as_ref().unchecked_ref()));

    closure.forget();
}

fn data_channel_config(channel_config: &ChannelConfig) -> RtcDataChannelInit {
    let data_channel_config = RtcDataChannelInit::new();

    data_channel_config.set_ordered(channel_config.ordered);
    data_channel_config.set_negotiated(true);

    if let Some(n) = channel_config.max_retransmits {
        data_channel_config.set_max_retransmits(n);
    }

    data_channel_config
}
