//! What a hostile client can make a real `ferry-signal` process on 127.0.0.1 hold (security
//! finding 7): memory for a peer that never reads, connections from one address, and sockets
//! of clients that send a request slowly or not at all.

mod common;

use common::Server;
use futures::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn server(extra: &[&str]) -> Server {
    common::spawn(["--no-mailbox"].iter().chain(extra), false)
}

async fn join(s: &Server, room: &str) -> (Ws, String) {
    let (mut ws, _) = connect_async(format!("ws://{}/{room}", s.addr))
        .await
        .expect("connect");
    let id = match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            v["IdAssigned"].as_str().expect("IdAssigned").to_owned()
        }
        other => panic!("no IdAssigned: {other:?}"),
    };
    (ws, id)
}

/// Resident memory of the server process, from /proc.
fn rss_kib(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn a_peer_that_never_reads_is_dropped_and_memory_stays_bounded() {
    let s = server(&[]);
    // 1. A slow peer joins and then never reads (it keeps itself alive by writing).
    let (slow, slow_id) = join(&s, "r").await;
    let (mut slow_tx, slow_rx) = slow.split();
    let keepalive = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if slow_tx
                .send(Message::Text("\"KeepAlive\"".into()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // 2. A flooder joins the room and watches for the slow peer to leave.
    let (flooder, _) = join(&s, "r").await;
    let (mut tx, mut rx) = flooder.split();
    let left_id = slow_id.clone();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            if let Message::Text(t) = m
                && serde_json::from_str::<serde_json::Value>(&t).unwrap()["PeerLeft"] == *left_id
            {
                return true;
            }
        }
        false
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = rss_kib(&s);
    // 3. For 60 s it sends the slow peer 64 KiB signals as fast as the rate limit allows
    //    (defaults: a burst of 100, then 20 a second; it stays just under).
    let payload = "x".repeat(64 * 1024 - 120);
    let text =
        serde_json::json!({ "Signal": { "receiver": slow_id, "data": { "Offer": payload } } })
            .to_string();
    assert!(text.len() <= 64 * 1024);
    let start = Instant::now();
    let mut peak = baseline;
    let mut sent = 0u32;
    while start.elapsed() < Duration::from_secs(60) {
        let due = 90 + (start.elapsed().as_secs_f64() * 19.0) as u32;
        while sent < due {
            tx.send(Message::Text(text.clone().into()))
                .await
                .expect("flooder stays connected");
            sent += 1;
        }
        peak = peak.max(rss_kib(&s));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 4. The server dropped the slow peer and never held the flood.
    let growth_mib = (peak.saturating_sub(baseline)) as f64 / 1024.0;
    eprintln!("sent {sent} signals of 64 KiB; RSS {baseline} KiB -> peak {peak} KiB");
    assert!(growth_mib < 10.0, "server RSS grew by {growth_mib:.1} MiB");
    let saw_left = tokio::time::timeout(Duration::from_secs(5), watcher).await;
    assert!(
        matches!(saw_left, Ok(Ok(true))),
        "the slow peer was not dropped"
    );
    keepalive.abort();
    drop(slow_rx);
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_refused() {
    let s = server(&["--max-connections-per-ip", "8"]);
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(join(&s, "r").await.0);
    }
    // 1. Past the cap: the handshake is answered 429, for WebSockets and plain HTTP alike.
    for _ in 0..4 {
        match connect_async(format!("ws://{}/r", s.addr)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 429)
            }
            other => panic!("expected 429, got {:?}", other.map(|(_, r)| r.status())),
        }
    }
    let mut stream = TcpStream::connect(&s.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply).await;
    assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
    // 2. A closed connection gives its slot back.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    open.push(join(&s, "r").await.0);
}

/// Reads until the server closes the connection; how long that took, or `None` after `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<(Duration, String)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok()?;
    Some((start.elapsed(), String::from_utf8_lossy(&got).into_owned()))
}

#[tokio::test]
async fn slow_request_heads_and_silent_connections_are_closed() {
    let s = server(&["--header-timeout", "1"]);
    // A slowloris client: half a request head, then nothing.
    let mut slow = TcpStream::connect(&s.addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A client that connects and says nothing at all.
    let mut silent = TcpStream::connect(&s.addr).await.unwrap();
    for stream in [&mut slow, &mut silent] {
        let closed = closed_within(stream, Duration::from_secs(5)).await;
        let (after, _) = closed.expect("the server closed the connection");
        assert!(after < Duration::from_secs(3), "{after:?}");
    }
    // WebSockets are not subject to it once upgraded.
    let (mut ws, _) = join(&s, "r").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ws.send(Message::Text("\"KeepAlive\"".into()))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), ws.next())
            .await
            .is_err(),
        "the WebSocket stays open and quiet"
    );
}

#[tokio::test]
async fn a_slow_request_body_is_answered_408() {
    let dir = std::env::temp_dir().join(format!("ferry-resources-body-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = common::spawn(
        [
            "--data-dir",
            dir.to_str().unwrap(),
            "--request-timeout",
            "1",
        ],
        false,
    );
    let mut stream = TcpStream::connect(&s.addr).await.unwrap();
    let room = "0123456789abcdef0123456789abcdef";
    let head = format!(
        "POST /mailbox/{room} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1024\r\n\r\n",
        "11".repeat(32)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0; 256]).await.unwrap();
    let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
    let (after, reply) = closed.expect("the server answered");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(after < Duration::from_secs(3), "{after:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn pings_count_against_the_rate_limit() {
    let s = server(&["--rate", "1", "--burst", "5"]);
    let (mut a, _) = join(&s, "r").await;
    for _ in 0..20 {
        if a.send(Message::Ping(vec![1].into())).await.is_err() {
            break;
        }
    }
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), a.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => break f.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Policy));
}
