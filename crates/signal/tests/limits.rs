//! Drives a real `ferry-signal` process on 127.0.0.1 with raw WebSocket clients: routing stays
//! inside a room, and every limit closes the offending connection with its code.

mod common;
mod ws;

use futures::SinkExt;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use ws::{Ws, join, next, next_json, server, signal};

async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match next(ws, Duration::from_secs(5)).await? {
            Message::Close(frame) => return frame.map(|f| f.code),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn health_answers_ok() {
    let s = server(&[]);
    let mut stream = TcpStream::connect(&s.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    assert!(
        body.starts_with("HTTP/1.1 200") && body.ends_with("ok"),
        "{body}"
    );
}

#[tokio::test]
async fn signals_never_cross_rooms() {
    let s = server(&[]);
    let (mut a1, a1_id) = join(&s, "roomA").await;
    let (mut a2, a2_id) = join(&s, "roomA").await;
    assert_eq!(next_json(&mut a1).await.unwrap()["NewPeer"], a2_id.as_str());
    let (mut b1, _) = join(&s, "roomB").await;
    // b1 knows a1's peer id (say, a leaky log) and signals it from another room.
    b1.send(signal(&a1_id, "from another room")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a2.send(signal(&a1_id, "from my room")).await.unwrap();
    let got = next_json(&mut a1).await.unwrap();
    assert_eq!(got["Signal"]["sender"], a2_id.as_str());
    assert_eq!(got["Signal"]["data"]["Offer"], "from my room");
    assert!(next(&mut a1, Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn a_full_room_refuses_the_next_peer() {
    let s = server(&["--max-peers-per-room", "2"]);
    let (_a, _) = join(&s, "r").await;
    let (_b, _) = join(&s, "r").await;
    let (mut c, _) = join(&s, "r").await;
    assert_eq!(close_code(&mut c).await, Some(CloseCode::from(4001)));
    // Another room is unaffected.
    let (mut d, _) = join(&s, "other").await;
    d.send(signal("00000000-0000-0000-0000-000000000000", "x"))
        .await
        .unwrap();
    assert!(next(&mut d, Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn an_oversized_message_closes_the_connection() {
    let s = server(&["--max-message-bytes", "1000"]);
    let (mut a, _) = join(&s, "r").await;
    a.send(signal(
        "00000000-0000-0000-0000-000000000000",
        &"x".repeat(2000),
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut a).await, Some(CloseCode::Size));
}

#[tokio::test]
async fn a_flood_is_rate_limited() {
    let s = server(&["--rate", "1", "--burst", "5"]);
    let (mut a, _) = join(&s, "r").await;
    for _ in 0..20 {
        if a.send(Message::Text("\"KeepAlive\"".into())).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut a).await, Some(CloseCode::Policy));
}

#[tokio::test]
async fn binary_messages_and_bad_room_names_are_refused() {
    let s = server(&[]);
    let (mut a, _) = join(&s, "r").await;
    a.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(close_code(&mut a).await, Some(CloseCode::Policy));
    let (mut b, _) = join(&s, &"x".repeat(200)).await;
    assert_eq!(close_code(&mut b).await, Some(CloseCode::Policy));
}

#[tokio::test]
async fn idle_connections_are_closed_and_keepalives_prevent_it() {
    let s = server(&["--idle-timeout", "1"]);
    let (mut idle, _) = join(&s, "r").await;
    let (mut alive, _) = join(&s, "r").await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        alive
            .send(Message::Text("\"KeepAlive\"".into()))
            .await
            .unwrap();
    }
    assert_eq!(close_code(&mut idle).await, Some(CloseCode::from(4008)));
    // `alive` is still in the room: it saw `idle` leave.
    let left = loop {
        let v = next_json(&mut alive).await.expect("an event");
        if v.get("PeerLeft").is_some() {
            break v;
        }
    };
    assert!(left["PeerLeft"].is_string());
}

#[tokio::test]
async fn joins_past_the_per_address_rate_are_refused_before_the_upgrade() {
    // 2 joins a second, a burst of 3 (the default, 10/10 s with a burst of 20, never limits
    // a few tabs reconnecting).
    let s = server(&["--join-rate", "2/1", "--join-burst", "3"]);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(join(&s, "r").await.0);
    }
    while next(&mut open[0], Duration::from_millis(200))
        .await
        .is_some()
    {}
    // 1. A stranger who knows the room id joins again and again: 429, and nobody in the
    //    room hears of it (no NewPeer, so no WebRTC connection is started for it).
    match connect_async(format!("ws://{}/r", s.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 429);
            assert!(r.headers().contains_key("retry-after"));
        }
        other => panic!("expected 429, got {:?}", other.map(|(_, r)| r.status())),
    }
    assert!(
        next(&mut open[0], Duration::from_millis(200))
            .await
            .iter()
            .all(|m| { !m.to_text().unwrap_or_default().contains("NewPeer") })
    );
    // 2. Half a second later a token is back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    open.push(join(&s, "r").await.0);
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_count_the_forwarded_client() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = server(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--max-connections-per-ip",
        "2",
        "--join-rate",
        "1/3600",
        "--join-burst",
        "1",
    ]);
    let via_proxy = |client: &'static str| {
        let mut request = format!("ws://{}/r", s.addr).into_client_request().unwrap();
        let forwarded = format!("203.0.113.1, {client}").parse().unwrap();
        request.headers_mut().insert("x-forwarded-for", forwarded);
        connect_async(request)
    };
    // Every client arrives from the proxy's address: more than 2 connections are fine, and
    // each client has its own join bucket (the first X-Forwarded-For entry is the client's
    // own claim, so only the last counts).
    let mut open = Vec::new();
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        open.push(via_proxy(client).await.expect("joins through the proxy").0);
    }
    match via_proxy("198.51.100.1").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|(_, r)| r.status())),
    }
}
