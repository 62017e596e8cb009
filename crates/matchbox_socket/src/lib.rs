#![warn(missing_docs)]
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
#[cfg(feature = "ggrs")]
mod ggrs_socket;
mod webrtc_socket;

pub use async_trait;
pub use error::{Error, SignalingError};
pub use matchbox_protocol::PeerId;
// FERRY PATCH 10: the payload of `SignalingError::WebSocket` in the browser.
#[cfg(target_arch = "wasm32")]
pub use webrtc_socket::error::WebSocketError;
pub use webrtc_socket::{
    CandidatePair, CandidateType, ChannelConfig, IceFailure, IceRecovery, MessageLoopFuture, Packet,
    PeerEvent, PeerRequest, PeerSignal, PeerState, RelayProtocol, RtcIceServerConfig, Signaller,
    SignallerBuilder, WebRtcChannel, WebRtcSocket, WebRtcSocketBuilder, error::ChannelError,
    oversized_messages, reconnecting_peers, restart_failed, restart_ice_all, set_wake_hook,
    take_ice_failures,
    take_ice_recoveries,
};
