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
    /// The disconnect signal, the connection for its stats, the candidates the peer signaled and
    /// the signals still to come
    type HandshakeMeta = (
        Receiver<()>,
        RtcPeerConnection,
        SignaledCandidates,
        UnboundedReceiver<PeerSignal>,
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
        Some(HandshakeResult {
            peer_id: signal_peer.id,
            data_channels,
            metadata: (peer_disconnected_rx, conn, signaled, peer_signal_rx),
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
        Some(HandshakeResult {
            peer_id: signal_peer.id,
            data_channels,
            metadata: (peer_disconnected_rx, conn, signaled, peer_signal_rx),
        })
    }

    async fn peer_loop(
        peer_uuid: PeerId,
        handshake_meta: Self::HandshakeMeta,
        candidate_pair_tx: UnboundedSender<(PeerId, CandidatePair)>,
    ) -> PeerId {
        let (mut peer_loop_finished_rx, conn, signaled, mut peer_signal_rx) = handshake_meta;
        let mut candidate_pairs = Box::pin(
            report_candidate_pairs(&conn, peer_uuid, candidate_pair_tx, signaled.clone()).fuse(),
        );
        loop {
            select! {
                _ = peer_loop_finished_rx.next() => break,
                _ = candidate_pairs => break,
                // Candidates keep trickling in after the channels opened
                signal = peer_signal_rx.next() => {
                    if let Some(PeerSignal::IceCandidate(candidate)) = signal {
                        try_add_rtc_ice_candidate(&conn, &signaled, &candidate).await;
                    }
                }
            }
        }
        // FERRY PATCH 7: the peer is gone (a data channel closed): release the connection
        // rather than leave it to the browser, which keeps it until the page closes.
        conn.close();
        peer_uuid
    }
}

/// Reports the candidate pair the connection uses, and again whenever it changes
async fn report_candidate_pairs(
    conn: &RtcPeerConnection,
    peer: PeerId,
    tx: UnboundedSender<(PeerId, CandidatePair)>,
    signaled: SignaledCandidates,
) {
    let mut reported = None;
    loop {
        if let Some(pair) = selected_candidate_pair(conn, &signaled).await
            && reported != Some(pair)
        {
            reported = Some(pair);
            if tx.unbounded_send((peer, pair)).is_err() {
                // socket dropped
                return;
            }
        }
        Delay::new(Duration::from_secs(1)).await;
    }
}

/// Reads the selected candidate pair out of `getStats()`. Chrome names it on the transport
/// stats, Firefox flags the pair itself.
async fn selected_candidate_pair(
    conn: &RtcPeerConnection,
    signaled: &SignaledCandidates,
) -> Option<CandidatePair> {
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
    Some(CandidatePair {
        local,
        remote: candidate_type("remoteCandidateId")?,
        rtt_ms,
        relay_protocol,
    })
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
    let onicecandidate = Closure::wrap(onicecandidate);
    conn.set_onicecandidate(Some(onicecandidate.as_ref().unchecked_ref()));
    // note: we can let rust keep ownership of this closure, since we replace
    // the event handler later in this method when ice is finished

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

    // stop listening for ICE candidates
    // TODO: we should support getting new ICE candidates even after connecting,
    //       since it's possible to return to the ice gathering state
    // See: <https://developer.mozilla.org/en-US/docs/Web/API/RTCPeerConnection/iceGatheringState>
    let onicecandidate: Box<dyn FnMut(RtcPeerConnectionIceEvent)> =
        Box::new(move |_event: RtcPeerConnectionIceEvent| {
            warn!("received ice candidate event after handshake completed, ignoring");
        });
    let onicecandidate = Closure::wrap(onicecandidate);
    conn.set_onicecandidate(Some(onicecandidate.as_ref().unchecked_ref()));
    onicecandidate.forget();

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

    // FERRY PATCH: bound the wait. An unreachable STUN/TURN server keeps gathering open for
    // ~40 s (forever for TURN/TCP to a host that drops packets), stalling every connection
    // even between devices on one network. Host candidates are gathered within milliseconds;
    // after GATHERING_TIMEOUT the offer/answer goes out with what was found, and candidates
    // found later still go out one by one through the trickle path of `complete_handshake`.
    let mut timeout = Delay::new(GATHERING_TIMEOUT).fuse();
    select! {
        _ = rx.next() => debug!("Ice gathering completed"),
        _ = timeout => warn!("Ice gathering still running after {GATHERING_TIMEOUT:?}; continuing"),
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
