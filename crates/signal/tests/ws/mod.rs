//! Raw WebSocket clients of a signaling-only `ferry-signal`, shared by the signaling tests
//! (limits, resume).

use super::common::{self, Server};
use futures::StreamExt;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// One client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts the binary on a free port (signaling only).
pub fn server(extra: &[&str]) -> Server {
    common::spawn(["--no-mailbox"].iter().chain(extra), false)
}

/// Opens `ws://<server>/<path_and_query>`.
pub async fn connect(s: &Server, path_and_query: &str) -> Ws {
    connect_async(format!("ws://{}/{path_and_query}", s.addr))
        .await
        .expect("connect")
        .0
}

/// Connects and reads the `IdAssigned` that must come first.
pub async fn join(s: &Server, path_and_query: &str) -> (Ws, String) {
    let mut ws = connect(s, path_and_query).await;
    let id = match next_json(&mut ws).await {
        Some(v) => v["IdAssigned"]
            .as_str()
            .expect("IdAssigned first")
            .to_owned(),
        None => panic!("no IdAssigned"),
    };
    (ws, id)
}

/// The next message within `wait`, if any.
pub async fn next(ws: &mut Ws, wait: Duration) -> Option<Message> {
    match tokio::time::timeout(wait, ws.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        _ => None,
    }
}

/// The next message within 5 s, as JSON.
pub async fn next_json(ws: &mut Ws) -> Option<serde_json::Value> {
    match next(ws, Duration::from_secs(5)).await? {
        Message::Text(t) => serde_json::from_str(&t).ok(),
        _ => None,
    }
}

/// A signal (an offer carrying `payload`) to peer `to`.
pub fn signal(to: &str, payload: &str) -> Message {
    Message::Text(
        serde_json::json!({ "Signal": { "receiver": to, "data": { "Offer": payload } } })
            .to_string()
            .into(),
    )
}
