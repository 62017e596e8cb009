//! A client takes its peer id back after a network change (`?resume=<id>&key=<k>`, see the
//! mesh module docs), against a real `ferry-signal` process with raw WebSocket clients.

mod common;
mod ws;

use common::Server;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use ws::{Ws, connect, join, next, next_json, server, signal};

const CANNOT_RESUME: u16 = 4004;

/// A fresh 64-hex-digit key.
fn key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The first message must be a close frame: its code (no `IdAssigned` before it).
async fn first_is_close(ws: &mut Ws) -> Option<CloseCode> {
    match next(ws, Duration::from_secs(5)).await? {
        Message::Close(frame) => frame.map(|f| f.code),
        other => panic!("expected a close frame first, got {other:?}"),
    }
}

/// Whether the server ended the connection (a close frame, EOF or a reset) within 5 s, with
/// nothing else received before.
async fn ended(ws: &mut Ws) -> bool {
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => true,
        Ok(Some(Ok(m))) => panic!("expected the end, got {m:?}"),
        Err(_) => false,
    }
}

async fn expect_signal(ws: &mut Ws, sender: &str, payload: &str) {
    let got = next_json(ws).await.expect("a signal");
    assert_eq!(got["Signal"]["sender"], sender, "{got}");
    assert_eq!(got["Signal"]["data"]["Offer"], payload, "{got}");
}

/// A (with key `k`) and B in room `r`, B's `NewPeer` read by A.
async fn pair(s: &Server, k: &str) -> ((Ws, String), (Ws, String)) {
    let (mut a, a_id) = join(s, &format!("r?key={k}")).await;
    let (b, b_id) = join(s, "r").await;
    assert_eq!(next_json(&mut a).await.unwrap()["NewPeer"], b_id.as_str());
    ((a, a_id), (b, b_id))
}

#[tokio::test]
async fn a_resume_moves_the_id_to_the_new_connection_silently() {
    let s = server(&[]);
    let k = key();
    let ((mut a_old, a_id), (mut b, b_id)) = pair(&s, &k).await;
    let (mut a, resumed) = join(&s, &format!("r?resume={a_id}&key={k}")).await;
    assert_eq!(resumed, a_id);
    // The room hears nothing: no PeerLeft, no NewPeer.
    assert!(next(&mut b, Duration::from_secs(1)).await.is_none());
    // The old connection was dropped by the server.
    assert!(ended(&mut a_old).await);
    // Signals to A reach the new connection, and A's signals still come from A.
    b.send(signal(&a_id, "restart offer")).await.unwrap();
    expect_signal(&mut a, &b_id, "restart offer").await;
    a.send(signal(&b_id, "restart answer")).await.unwrap();
    expect_signal(&mut b, &a_id, "restart answer").await;
    // A second network change: the new connection can be resumed in turn.
    let (mut a2, again) = join(&s, &format!("r?key={k}&resume={a_id}")).await;
    assert_eq!(again, a_id);
    assert!(ended(&mut a).await);
    b.send(signal(&a_id, "again")).await.unwrap();
    expect_signal(&mut a2, &b_id, "again").await;
    assert!(next(&mut b, Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn the_world_room_resumes_too() {
    let s = server(&[]);
    let k = key();
    let (_a_old, a_id) = join(&s, &format!("?key={k}")).await;
    let (mut b, b_id) = join(&s, "").await;
    let (mut a, resumed) = join(&s, &format!("?resume={a_id}&key={k}")).await;
    assert_eq!(resumed, a_id);
    b.send(signal(&a_id, "hi")).await.unwrap();
    // The first thing the new connection hears is B's signal, not B's NewPeer (it went to
    // the old one).
    expect_signal(&mut a, &b_id, "hi").await;
}

#[tokio::test]
async fn a_wrong_key_cannot_resume_and_leaves_the_peer_alone() {
    let s = server(&[]);
    let k = key();
    let ((mut a, a_id), (mut b, b_id)) = pair(&s, &k).await;
    let wrong = key();
    for query in [
        format!("r?resume={a_id}&key={wrong}"),
        // Valid-looking but not hex, or too short: no key at all.
        format!("r?resume={a_id}&key={}", "z".repeat(64)),
        format!("r?resume={a_id}&key={}", &k[..31]),
    ] {
        let mut thief = connect(&s, &query).await;
        assert_eq!(
            first_is_close(&mut thief).await,
            Some(CloseCode::from(CANNOT_RESUME)),
            "{query}"
        );
    }
    // A's connection still works and B heard nothing.
    assert!(next(&mut b, Duration::from_millis(300)).await.is_none());
    b.send(signal(&a_id, "still here?")).await.unwrap();
    expect_signal(&mut a, &b_id, "still here?").await;
}

#[tokio::test]
async fn unknown_ids_and_missing_keys_cannot_resume() {
    let s = server(&[]);
    let k = key();
    let ((_a, a_id), (mut b, b_id)) = pair(&s, &k).await;
    let (_c, _) = join(&s, &format!("other?key={k}")).await;
    for query in [
        // Nobody has this id.
        format!("r?resume={}&key={k}", uuid::Uuid::new_v4()),
        // No key.
        format!("r?resume={a_id}"),
        // A's id and key, but another room.
        format!("other?resume={a_id}&key={k}"),
        // B joined without a key: never resumable.
        format!("r?resume={b_id}&key={k}"),
        // Not a uuid.
        format!("r?resume=nope&key={k}"),
        format!("r?resume=&key={k}"),
    ] {
        let mut ws = connect(&s, &query).await;
        assert_eq!(
            first_is_close(&mut ws).await,
            Some(CloseCode::from(CANNOT_RESUME)),
            "{query}"
        );
    }
    assert!(next(&mut b, Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn closing_the_resumed_connection_tells_the_room_once() {
    let s = server(&[]);
    let k = key();
    let ((mut a_old, a_id), (mut b, _)) = pair(&s, &k).await;
    let (mut a, _) = join(&s, &format!("r?resume={a_id}&key={k}")).await;
    assert!(ended(&mut a_old).await);
    drop(a_old);
    assert!(next(&mut b, Duration::from_millis(500)).await.is_none());
    a.close(None).await.unwrap();
    let mut left = 0;
    while let Some(m) = next(&mut b, Duration::from_secs(1)).await {
        let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        assert_eq!(v["PeerLeft"], a_id.as_str(), "{v}");
        left += 1;
    }
    assert_eq!(left, 1);
}

#[tokio::test]
async fn joins_without_a_valid_key_work_as_before_but_cannot_be_resumed() {
    let s = server(&[]);
    let (mut a, a_id) = join(&s, "r").await;
    let (mut b, b_id) = join(&s, "r?key=not-hex").await;
    assert_eq!(next_json(&mut a).await.unwrap()["NewPeer"], b_id.as_str());
    b.send(signal(&a_id, "hello")).await.unwrap();
    expect_signal(&mut a, &b_id, "hello").await;
    let mut ws = connect(&s, &format!("r?resume={b_id}&key=not-hex")).await;
    assert_eq!(
        first_is_close(&mut ws).await,
        Some(CloseCode::from(CANNOT_RESUME))
    );
}

#[tokio::test]
async fn a_full_room_still_lets_its_peers_resume() {
    let s = server(&["--max-peers-per-room", "2"]);
    let k = key();
    let ((_a_old, a_id), (mut b, b_id)) = pair(&s, &k).await;
    let (mut a, resumed) = join(&s, &format!("r?resume={a_id}&key={k}")).await;
    assert_eq!(resumed, a_id);
    a.send(signal(&b_id, "x")).await.unwrap();
    expect_signal(&mut b, &a_id, "x").await;
    // A third peer is still refused.
    let (mut c, _) = join(&s, "r").await;
    assert_eq!(
        next(&mut c, Duration::from_secs(5)).await,
        Some(Message::Close(Some(
            tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::from(4001),
                reason: "room full".into(),
            }
        )))
    );
}

#[tokio::test]
async fn a_resume_counts_against_the_join_rate() {
    let s = server(&["--join-rate", "1/3600", "--join-burst", "2"]);
    let k = key();
    let (_a_old, a_id) = join(&s, &format!("r?key={k}")).await;
    let (_a, _) = join(&s, &format!("r?resume={a_id}&key={k}")).await;
    match connect_async(format!("ws://{}/r?resume={a_id}&key={k}", s.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|(_, r)| r.status())),
    }
}
