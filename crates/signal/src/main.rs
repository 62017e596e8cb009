//! `ferry-signal`: Ferry's tiny, optional, self-hostable signaling endpoint.
//!
//! It introduces devices of the same room to each other (WebRTC offers, answers and ICE
//! candidates over a WebSocket at `/<room id>`, matchbox full-mesh protocol) and sees nothing
//! else: room ids are derived from the space secret, which never reaches it. `/health`
//! answers `ok` for load balancers and test harnesses.
//!
//! With `--app-dir DIR` it also serves the built PWA on `--app-port`, plus a `config.json`
//! computed per request so that a phone opening `http://<LAN address>:8080` is told to signal
//! at `ws://<LAN address>:3536` without any rebuild.
//!
//! On the same port it offers the end-to-end encrypted mailbox (`/mailbox/<room>`, see
//! `mailbox.rs`): sealed blobs kept in `--data-dir` for devices that are never online
//! together; `--no-mailbox` turns it off.
//!
//! ```text
//! ferry-signal [--host 127.0.0.1] [--port 3536] [--app-dir dist --app-port 8080]
//!              [--ice URL[|USERNAME|CREDENTIAL]]... | [--ice none]
//! ```
#![forbid(unsafe_code)]

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use mesh::{Limits, MeshState};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tower_http::cors::CorsLayer;
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;
use tracing::{info, warn};

mod intake;
mod mailbox;
mod mesh;

const USAGE: &str = "usage: ferry-signal [--host ADDR] [--port N] [--app-dir DIR] [--app-port N] [--ice URL[|USER|CREDENTIAL] | --ice none]...
                    [--max-peers-per-room N] [--max-message-bytes N] [--rate MSGS_PER_SEC] [--burst N] [--idle-timeout SECS]
                    [--peer-queue-bytes N] [--max-connections-per-ip N] [--max-connections N]
                    [--header-timeout SECS] [--request-timeout SECS] [--trusted-proxy IP]... [--join-rate N/SECS|off] [--join-burst N]
                    [--data-dir DIR] [--no-mailbox] [--mailbox-ttl DAYS | --mailbox-ttl-secs SECS]
                    [--mailbox-quota-bytes N] [--mailbox-quota-entries N] [--mailbox-max-rooms N]
                    [--mailbox-max-bytes N] [--mailbox-room-ttl DAYS | --mailbox-room-ttl-secs SECS]
                    [--mailbox-register-rate N/SECS|off] [--mailbox-register-burst N]
                    [--mailbox-post-rate N/SECS|off] [--mailbox-post-burst N]
  env: FERRY_HOST, FERRY_SIGNAL_PORT, FERRY_APP_PORT, FERRY_APP_DIR, FERRY_ICE (comma-separated), FERRY_DATA_DIR,
       FERRY_JOIN_RATE (as --join-rate)
  WebSocket joins per address (IPv4, or IPv6 /64; loopback too): --join-rate 10/10 --join-burst 20
  by default, 429 past it; `--join-rate off` for test harnesses that join in a loop.
  Behind a reverse proxy, name it with --trusted-proxy: its X-Forwarded-For (last entry)
  is the client address the per-address limits count, and its connections are not capped.
  The mailbox (store-and-forward of sealed blobs, HTTP on the signaling port) keeps its
  database in --data-dir (default ./ferry-data).
  Per address: --mailbox-register-rate 60/3600 (burst 60), --mailbox-post-rate 50/1 (burst 500).
  --mailbox-max-bytes (4 GiB) caps blob bytes in all rooms; empty rooms unused for
  --mailbox-room-ttl (30 days) are forgotten.
  --port 0 picks a free port (printed on stdout).";

/// Default ICE server handed to browsers: a public STUN server.
const DEFAULT_STUN: &str = "stun:stun.l.google.com:19302";

#[derive(Debug)]
struct Args {
    host: IpAddr,
    port: u16,
    app_dir: Option<String>,
    app_port: u16,
    ice: Vec<String>,
    limits: Limits,
    join_rate: Option<intake::Rate>,
    intake: intake::IntakeLimits,
    /// Whole-request deadline for plain HTTP (a mailbox body trickled in slowly).
    request_timeout: std::time::Duration,
    data_dir: std::path::PathBuf,
    mailbox: Option<mailbox::MailboxLimits>,
    mailbox_rates: mailbox::http::MailboxRates,
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{flag}: not a number: {v}"))
}

fn parse_args() -> Result<Args, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut host = env("FERRY_HOST").unwrap_or_else(|| "127.0.0.1".into());
    let mut port = env("FERRY_SIGNAL_PORT").unwrap_or_else(|| "3536".into());
    let mut app_port = env("FERRY_APP_PORT").unwrap_or_else(|| "8080".into());
    let mut app_dir = env("FERRY_APP_DIR");
    let mut ice: Option<Vec<String>> =
        env("FERRY_ICE").map(|v| v.split(',').map(str::to_owned).collect());
    let mut limits = Limits::default();
    let mut intake = intake::IntakeLimits::default();
    let mut join_rate = env("FERRY_JOIN_RATE").unwrap_or_else(|| "10/10".into());
    let mut join_burst = 20.0;
    let mut request_timeout = std::time::Duration::from_secs(30);
    let mut data_dir = env("FERRY_DATA_DIR").unwrap_or_else(|| "ferry-data".into());
    let mut mailbox = Some(mailbox::MailboxLimits::default());
    let mut register_rate = "60/3600".to_owned();
    let mut register_burst = 60.0;
    let mut post_rate = "50/1".to_owned();
    let mut post_burst = 500.0;
    let secs = |flag: &str, v: &str, scale: f64| -> Result<std::time::Duration, String> {
        let n: f64 = num(flag, v)?;
        std::time::Duration::try_from_secs_f64(n * scale)
            .map_err(|_| format!("{flag}: not a duration: {v}"))
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--host" => host = value()?,
            "--port" => port = value()?,
            "--app-dir" => app_dir = Some(value()?),
            "--app-port" => app_port = value()?,
            "--ice" => ice.get_or_insert_with(Vec::new).push(value()?),
            "--max-peers-per-room" => limits.max_peers_per_room = num(&flag, &value()?)?,
            "--max-message-bytes" => limits.max_message_bytes = num(&flag, &value()?)?,
            "--rate" => limits.messages_per_second = num(&flag, &value()?)?,
            "--burst" => limits.burst = num(&flag, &value()?)?,
            "--idle-timeout" => limits.idle_timeout = secs(&flag, &value()?, 1.0)?,
            "--join-rate" => join_rate = value()?,
            "--join-burst" => join_burst = num(&flag, &value()?)?,
            "--peer-queue-bytes" => limits.max_queued_bytes = num(&flag, &value()?)?,
            "--max-connections-per-ip" => intake.per_address = num(&flag, &value()?)?,
            "--max-connections" => intake.total = num(&flag, &value()?)?,
            "--trusted-proxy" => {
                let v = value()?;
                let ip: IpAddr = v
                    .parse()
                    .map_err(|_| format!("--trusted-proxy: not an IP address: {v}"))?;
                intake.trusted_proxies = [&intake.trusted_proxies[..], &[ip]].concat().into();
            }
            "--header-timeout" => intake.header_timeout = secs(&flag, &value()?, 1.0)?,
            "--request-timeout" => request_timeout = secs(&flag, &value()?, 1.0)?,
            "--data-dir" => data_dir = value()?,
            "--no-mailbox" => mailbox = None,
            "--mailbox-ttl"
            | "--mailbox-ttl-secs"
            | "--mailbox-quota-bytes"
            | "--mailbox-quota-entries"
            | "--mailbox-max-rooms"
            | "--mailbox-max-bytes"
            | "--mailbox-room-ttl"
            | "--mailbox-room-ttl-secs"
            | "--mailbox-register-rate"
            | "--mailbox-post-rate"
            | "--mailbox-register-burst"
            | "--mailbox-post-burst" => {
                let v = value()?;
                let Some(m) = mailbox.as_mut() else {
                    return Err(format!("{flag} given with --no-mailbox"));
                };
                match flag.as_str() {
                    "--mailbox-ttl" => m.ttl = secs(&flag, &v, 86_400.0)?,
                    "--mailbox-ttl-secs" => m.ttl = secs(&flag, &v, 1.0)?,
                    "--mailbox-quota-bytes" => m.quota_bytes = num(&flag, &v)?,
                    "--mailbox-quota-entries" => m.quota_entries = num(&flag, &v)?,
                    "--mailbox-max-bytes" => m.max_total_bytes = num(&flag, &v)?,
                    "--mailbox-room-ttl" => m.room_ttl = secs(&flag, &v, 86_400.0)?,
                    "--mailbox-room-ttl-secs" => m.room_ttl = secs(&flag, &v, 1.0)?,
                    "--mailbox-register-rate" => register_rate = v,
                    "--mailbox-post-rate" => post_rate = v,
                    "--mailbox-register-burst" => register_burst = num(&flag, &v)?,
                    "--mailbox-post-burst" => post_burst = num(&flag, &v)?,
                    _ => m.max_rooms = num(&flag, &v)?,
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let ice = ice.unwrap_or_else(|| vec![DEFAULT_STUN.into()]);
    // The same check as the app's: a server the browser would refuse is refused here, at
    // start, with the reason (not silently served to every device).
    for entry in ice.iter().filter(|e| e.as_str() != "none" && !e.is_empty()) {
        let mut parts = entry.splitn(3, '|');
        let url = parts.next().unwrap_or_default();
        let credentials = matches!((parts.next(), parts.next()), (Some(u), Some(c)) if !u.is_empty() && !c.is_empty());
        ferry_core::check_ice_url(url, credentials).map_err(|e| format!("--ice: {e}"))?;
    }
    Ok(Args {
        host: host
            .parse()
            .map_err(|_| format!("--host: not an IP address: {host}"))?,
        port: port
            .parse()
            .map_err(|_| format!("--port: not a port: {port}"))?,
        app_dir,
        app_port: app_port
            .parse()
            .map_err(|_| format!("--app-port: not a port: {app_port}"))?,
        ice: ice
            .into_iter()
            .filter(|s| s != "none" && !s.is_empty())
            .collect(),
        limits,
        join_rate: intake::Rate::parse(&join_rate, join_burst)
            .map_err(|e| format!("--join-rate: {e}"))?,
        intake,
        request_timeout,
        data_dir: data_dir.into(),
        mailbox,
        mailbox_rates: mailbox::http::MailboxRates {
            // Bursts as large as an hour's (or ten seconds') worth: a device registers once
            // per run, and uploads a file's chunks back to back.
            register: intake::Rate::parse(&register_rate, register_burst)
                .map_err(|e| format!("--mailbox-register-rate: {e}"))?,
            append: intake::Rate::parse(&post_rate, post_burst)
                .map_err(|e| format!("--mailbox-post-rate: {e}"))?,
        },
    })
}

/// The `ice_servers` entries of config.json, in the shape of `RTCIceServer`.
fn ice_json(ice: &[String]) -> serde_json::Value {
    ice.iter()
        .map(|entry| {
            let mut parts = entry.splitn(3, '|');
            let url = parts.next().unwrap_or_default();
            let mut server = serde_json::json!({ "urls": [url] });
            if let (Some(user), Some(cred)) = (parts.next(), parts.next()) {
                server["username"] = user.into();
                server["credential"] = cred.into();
            }
            server
        })
        .collect()
}

struct AppState {
    signal_port: u16,
    ice: serde_json::Value,
}

/// `config.json`: the signaling URL on the same host name the page was loaded from.
async fn config(State(state): State<Arc<AppState>>, headers: HeaderMap) -> impl IntoResponse {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    // Strip the port, keeping IPv6 brackets intact.
    let hostname = match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.is_empty() => h,
        _ => host,
    };
    let body = serde_json::json!({
        "signal": format!("ws://{hostname}:{}", state.signal_port),
        "ice_servers": state.ice,
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body.to_string(),
    )
}

/// Deletes expired mailbox entries now and then (reads also skip and delete them).
async fn sweep(mailbox: Arc<mailbox::Mailbox>) {
    let limits = mailbox.limits();
    let every = (limits.ttl.min(limits.room_ttl) / 2).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(600),
    );
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let m = mailbox.clone();
        match tokio::task::spawn_blocking(move || m.sweep(mailbox::now_ms())).await {
            Ok(Ok(mailbox::Swept {
                entries: 0,
                rooms: 0,
            })) => {}
            Ok(Ok(mailbox::Swept { entries, rooms })) => {
                info!(
                    entries,
                    rooms, "mailbox: expired entries and unused rooms deleted"
                )
            }
            Ok(Err(e)) => warn!("mailbox sweep failed: {e}"),
            Err(e) => warn!("mailbox sweep panicked: {e}"),
        }
    }
}

async fn health() -> &'static str {
    "ok"
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };

    // Each peer holds a socket: the common soft limit of 1,024 open files would cap a server
    // at about a thousand peers, so lift it to the hard limit the system allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(limit, "open-file limit"),
        Err(e) => warn!("cannot raise the open-file limit: {e}"),
    }

    let mailbox = match args.mailbox {
        None => None,
        Some(limits) => match mailbox::Mailbox::open(&args.data_dir, limits) {
            Ok(m) => {
                let stored_bytes = m.total_bytes().unwrap_or_default();
                info!(dir = %args.data_dir.display(), ?limits, stored_bytes, "mailbox open");
                let m = Arc::new(m);
                tokio::spawn(sweep(m.clone()));
                Some(m)
            }
            Err(e) => {
                eprintln!(
                    "cannot open the mailbox in {} (another ferry-signal using it? --no-mailbox to run without): {e}",
                    args.data_dir.display()
                );
                std::process::exit(1);
            }
        },
    };
    let signal = Router::new()
        .route("/", get(mesh::upgrade_world))
        .route("/health", get(health))
        .route("/{room}", get(mesh::upgrade_room))
        .with_state(MeshState::new(args.limits, args.join_rate))
        .merge(mailbox::http::router(mailbox, args.mailbox_rates))
        // Slowloris on bodies: a request (a mailbox upload, say) must be read and answered
        // within this. WebSocket upgrades answer at once, so the sockets are not limited.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            args.request_timeout,
        ))
        // The app runs on another origin (port 8080): let its pages call the mailbox. `*`
        // never covers `Authorization`, so the headers are listed.
        .layer(
            CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .max_age(std::time::Duration::from_secs(86_400)),
        );
    let signal_listener =
        match tokio::net::TcpListener::bind(SocketAddr::new(args.host, args.port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "cannot listen for signaling on {}:{}: {e}",
                    args.host, args.port
                );
                std::process::exit(1);
            }
        };
    let signal_addr = match signal_listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cannot read the signaling address: {e}");
            std::process::exit(1);
        }
    };

    if let Some(dir) = args.app_dir.clone() {
        let state = Arc::new(AppState {
            signal_port: signal_addr.port(),
            ice: ice_json(&args.ice),
        });
        let app = Router::new()
            .route("/config.json", get(config))
            .route("/health", get(health))
            .with_state(state)
            .fallback_service(ServeDir::new(&dir).append_index_html_on_directories(true));
        let app_addr = SocketAddr::new(args.host, args.app_port);
        let listener = match tokio::net::TcpListener::bind(app_addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {app_addr}: {e}");
                std::process::exit(1);
            }
        };
        info!(%app_addr, %dir, "serving the app");
        println!("Ferry app:       http://{app_addr}/");
        tokio::spawn(intake::serve(listener, app, args.intake.clone()));
    }
    println!("Ferry signaling: ws://{signal_addr}/ (health: http://{signal_addr}/health)");
    // Flush now: test harnesses and scripts read the address from a pipe.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    intake::serve(signal_listener, signal, args.intake).await;
}
