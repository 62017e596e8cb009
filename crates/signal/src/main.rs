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
//! ```text
//! ferry-signal [--host 127.0.0.1] [--port 3536] [--app-dir dist --app-port 8080]
//!              [--ice URL[|USERNAME|CREDENTIAL]]... | [--ice none]
//! ```
#![forbid(unsafe_code)]

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use matchbox_signaling::SignalingServer;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tower_http::services::ServeDir;
use tracing::info;

const USAGE: &str = "usage: ferry-signal [--host ADDR] [--port N] [--app-dir DIR] [--app-port N] [--ice URL[|USER|CREDENTIAL] | --ice none]...
  env: FERRY_HOST, FERRY_SIGNAL_PORT, FERRY_APP_PORT, FERRY_APP_DIR, FERRY_ICE (comma-separated)";

/// Default ICE server handed to browsers: a public STUN server.
const DEFAULT_STUN: &str = "stun:stun.l.google.com:19302";

#[derive(Debug)]
struct Args {
    host: IpAddr,
    port: u16,
    app_dir: Option<String>,
    app_port: u16,
    ice: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut host = env("FERRY_HOST").unwrap_or_else(|| "127.0.0.1".into());
    let mut port = env("FERRY_SIGNAL_PORT").unwrap_or_else(|| "3536".into());
    let mut app_port = env("FERRY_APP_PORT").unwrap_or_else(|| "8080".into());
    let mut app_dir = env("FERRY_APP_DIR");
    let mut ice: Option<Vec<String>> =
        env("FERRY_ICE").map(|v| v.split(',').map(str::to_owned).collect());
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--host" => host = value()?,
            "--port" => port = value()?,
            "--app-dir" => app_dir = Some(value()?),
            "--app-port" => app_port = value()?,
            "--ice" => ice.get_or_insert_with(Vec::new).push(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let ice = ice.unwrap_or_else(|| vec![DEFAULT_STUN.into()]);
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

    let signal_addr = SocketAddr::new(args.host, args.port);
    let server = SignalingServer::full_mesh_builder(signal_addr)
        .mutate_router(|r| r.route("/health", get(health)))
        .on_peer_connected(|id| info!(peer = %id, "peer connected"))
        .on_peer_disconnected(|id| info!(peer = %id, "peer disconnected"))
        .cors()
        .build();

    if let Some(dir) = args.app_dir.clone() {
        let state = Arc::new(AppState {
            signal_port: args.port,
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
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("app server failed: {e}");
                std::process::exit(1);
            }
        });
    }
    println!("Ferry signaling: ws://{signal_addr}/ (health: http://{signal_addr}/health)");
    if let Err(e) = server.serve().await {
        eprintln!("signaling server failed: {e}");
        std::process::exit(1);
    }
}
