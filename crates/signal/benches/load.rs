//! Signaling under load (issue #7): the real release `ferry-signal` on 127.0.0.1 holds 1,000
//! peers in 100 rooms, they introduce themselves (every pair in a room exchanges an offer and
//! an answer), then all leave; the server's memory is read from `/proc/<pid>/status` at each
//! step. Several rounds show whether memory stays bounded (a leak grows round after round).
//!
//! ```text
//! cargo bench -p ferry-signal --bench load
//! FERRY_BENCH_PEERS=1000 FERRY_BENCH_ROOMS=100 FERRY_BENCH_ROUNDS=3 FERRY_BENCH_OUT=target/bench
//! ```
//! Writes `$FERRY_BENCH_OUT/signal_load.json` (default `target/bench`; a relative path is taken
//! from the workspace root).

#[path = "../tests/common/mod.rs"]
mod common;

use common::Server;
use futures::{SinkExt, StreamExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// A fake SDP of realistic size (an offer with a few ICE candidates is 1–3 KiB).
fn sdp(kind: &str) -> String {
    format!(
        "v=0 {kind} {}",
        "a=candidate:1 1 udp 2122260223 198.51.100.2 50000 typ host ".repeat(20)
    )
}

fn start_server() -> Server {
    // One address opens every connection: lift the per-address caps.
    common::spawn(
        [
            "--no-mailbox",
            "--join-rate",
            "off",
            "--max-connections-per-ip",
            "100000",
        ],
        true,
    )
}

/// (VmRSS, VmHWM) in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Soft "Max open files" of a process, and how many it has open.
fn files(pid: u32) -> (String, usize) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or("?")
        .to_owned();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (soft, open)
}

#[derive(Default)]
struct Stats {
    connected: AtomicUsize,
    offers: AtomicUsize,
    answers: AtomicUsize,
    closed_by_server: AtomicUsize,
    failed: AtomicUsize,
}

/// One device: joins `room`, offers to every newcomer, answers every offer, keeps alive, and
/// leaves cleanly when told to.
async fn peer(
    addr: String,
    room: String,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    // The permit bounds concurrent handshakes; it is released once the server assigned an id.
    let mut permit = Some(permit);
    let Ok((mut ws, _)) = connect_async(format!("ws://{addr}/{room}")).await else {
        stats.failed.fetch_add(1, Relaxed);
        return;
    };
    let mut keepalive = tokio::time::interval(Duration::from_secs(10));
    keepalive.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = keepalive.tick() => {
                let _ = ws.send(Message::Text("\"KeepAlive\"".into())).await;
            }
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        stats.closed_by_server.fetch_add(1, Relaxed);
                        return;
                    }
                    Some(Ok(_)) => continue,
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                let reply = |to: &serde_json::Value, kind: &str| {
                    let data = serde_json::json!({ kind: sdp(kind) });
                    let req = serde_json::json!({ "Signal": { "receiver": to, "data": data } });
                    Message::Text(req.to_string().into())
                };
                if v.get("IdAssigned").is_some() {
                    stats.connected.fetch_add(1, Relaxed);
                    permit.take();
                } else if let Some(newcomer) = v.get("NewPeer") {
                    let _ = ws.send(reply(newcomer, "Offer")).await;
                } else if let Some(signal) = v.get("Signal") {
                    if signal["data"].get("Offer").is_some() {
                        stats.offers.fetch_add(1, Relaxed);
                        let _ = ws.send(reply(&signal["sender"], "Answer")).await;
                    } else if signal["data"].get("Answer").is_some() {
                        stats.answers.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }
    let _ = ws.close(None).await;
    // Wait for the server's close reply so the server has really let go of the peer.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

async fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Row {
    step: String,
    rss: u64,
    hwm: u64,
    open_fds: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // cargo bench passes `--bench`; no other flags are meaningful here.
    let peers = env_num("FERRY_BENCH_PEERS", 1000);
    let rooms = env_num("FERRY_BENCH_ROOMS", 100).max(1);
    let rounds = env_num("FERRY_BENCH_ROUNDS", 3).max(1);
    let per_room = peers.div_ceil(rooms);
    assert!(
        per_room <= 16,
        "{per_room} peers per room exceeds the server's default cap of 16"
    );
    // Both ends need a descriptor per connection; the child inherits this raised soft limit
    // (and ferry-signal raises its own at startup too).
    let own_limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    assert!(
        own_limit as usize > peers + 64,
        "open-file limit {own_limit} is too low for {peers} peers: raise `ulimit -n`"
    );

    let server = start_server();
    let pid = server.child.id();
    let (fd_limit, _) = files(pid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut rows = Vec::new();
    let mut row = |step: String| {
        let (rss, hwm) = memory(pid);
        let (_, open_fds) = files(pid);
        rows.push(Row {
            step,
            rss,
            hwm,
            open_fds,
        });
    };
    row("idle (started)".into());

    // Pairs per room: each existing peer offers to each newcomer, which answers.
    let pairs: usize = (0..rooms)
        .map(|r| {
            let n = (peers * (r + 1) / rooms) - (peers * r / rooms);
            n * n.saturating_sub(1) / 2
        })
        .sum();
    let mut timings = Vec::new();
    for round in 1..=rounds {
        let stats = Arc::new(Stats::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(64));
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(peers);
        for i in 0..peers {
            // Room ids as Ferry makes them: 32 hex chars; the round changes them so every
            // round creates fresh rooms.
            let room = format!("{:016x}{:016x}", round, i * rooms / peers);
            let permit = gate.clone().acquire_owned().await.expect("semaphore");
            let (addr, stats, stop) = (server.addr.clone(), stats.clone(), stop_rx.clone());
            tasks.push(tokio::spawn(peer(addr, room, stats, stop, permit)));
        }
        let s = stats.clone();
        wait_for("all peers connected", Duration::from_secs(60), || {
            s.connected.load(Relaxed) + s.failed.load(Relaxed) >= peers
        })
        .await;
        let connect = start.elapsed();
        let s = stats.clone();
        wait_for("all offers answered", Duration::from_secs(60), || {
            s.answers.load(Relaxed) >= pairs
        })
        .await;
        let signalled = start.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        row(format!(
            "round {round}: {peers} peers in {rooms} rooms connected"
        ));
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        // The server handles each close asynchronously: give it a moment.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        row(format!("round {round}: all disconnected"));
        let failed = stats.failed.load(Relaxed) + stats.closed_by_server.load(Relaxed);
        assert_eq!(
            failed, 0,
            "round {round}: {failed} peers failed or were closed"
        );
        assert_eq!(
            stats.offers.load(Relaxed),
            pairs,
            "every offer arrived once"
        );
        timings.push((connect, signalled, pairs * 2));
    }

    let idle = rows[0].rss as f64;
    let connected = rows[1].rss as f64;
    let last_connected = rows[rows.len() - 2].rss as f64;
    let per_peer = (connected - idle) / peers as f64;
    println!();
    println!(
        "ferry-signal under load: {peers} peers, {rooms} rooms ({per_room}/room), {rounds} rounds, {pairs} offer/answer pairs per round; server open-file limit {fd_limit}"
    );
    println!("| step | VmRSS (KiB) | VmHWM (KiB) | server fds |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} | {} |", r.step, r.rss, r.hwm, r.open_fds);
    }
    for (i, (connect, signalled, signals)) in timings.iter().enumerate() {
        println!(
            "round {}: {peers} connected in {:.0} ms; {signals} signals relayed, all done after {:.0} ms",
            i + 1,
            connect.as_secs_f64() * 1e3,
            signalled.as_secs_f64() * 1e3
        );
    }
    println!(
        "RSS per connected peer: {:.1} KiB; RSS at {peers} peers / idle RSS: {:.2}×; last round / first round connected: {:.2}×",
        per_peer,
        connected / idle,
        last_connected / connected
    );

    let json = serde_json::json!({
        "bench": "signal_load",
        "peers": peers,
        "rooms": rooms,
        "rounds": rounds,
        "pairs_per_round": pairs,
        "server_open_file_limit": fd_limit,
        "steps": rows.iter().map(|r| serde_json::json!({
            "step": r.step, "vm_rss_kib": r.rss, "vm_hwm_kib": r.hwm, "open_fds": r.open_fds,
        })).collect::<Vec<_>>(),
        "rounds_timing_ms": timings.iter().map(|(c, s, n)| serde_json::json!({
            "connect_all": c.as_secs_f64() * 1e3, "signalling_done": s.as_secs_f64() * 1e3, "signals": n,
        })).collect::<Vec<_>>(),
        "rss_idle_kib": rows[0].rss,
        "rss_connected_kib": rows[1].rss,
        "rss_per_peer_kib": per_peer,
        "rss_connected_over_idle": connected / idle,
        "rss_last_round_over_first_round": last_connected / connected,
    });
    // cargo runs benches in the package directory: resolve from the workspace root instead.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let dir =
        root.join(std::env::var_os("FERRY_BENCH_OUT").unwrap_or_else(|| "target/bench".into()));
    std::fs::create_dir_all(&dir).expect("create the output directory");
    let path = dir.join("signal_load.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json")).expect("write");
    println!("wrote {}", path.display());
}
