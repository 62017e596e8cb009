//! How connections come in: the HTTP/1.1 server loop with per-address and global connection
//! caps and read timeouts (security finding 7), shared by the signaling and the app port.
//!
//! `axum::serve` sets no timer, so hyper's header read timeout never fires there and a client
//! trickling a request head one byte a minute (slowloris) holds its connection forever. This
//! loop sets hyper's timer, counts every TCP connection (HTTP and WebSocket: the count rides
//! with the socket through an upgrade) against its address and the server, and refuses a
//! connection over a cap with a short 429 (its address) or 503 (the server) before
//! reading anything.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tracing::{debug, warn};

/// Caps and timeouts of the server loop.
#[derive(Debug, Clone)]
pub struct IntakeLimits {
    /// Reverse proxies whose `X-Forwarded-For` is believed: their connections are not
    /// capped per address (every client comes through them), and each request counts
    /// against the client address the proxy appended instead.
    pub trusted_proxies: Arc<[IpAddr]>,
    /// Open connections allowed from one address (IPv4, or an IPv6 /64).
    pub per_address: usize,
    /// Open connections allowed in all.
    pub total: usize,
    /// A request head must arrive whole within this (hyper's `header_read_timeout`; it also
    /// closes keep-alive connections that stay silent this long).
    pub header_timeout: Duration,
}

impl Default for IntakeLimits {
    fn default() -> Self {
        IntakeLimits {
            trusted_proxies: Arc::new([]),
            per_address: 64,
            total: 10_000,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// The address a cap or rate limit is counted against: an IPv4 address, or the /64 of an
/// IPv6 one (a single subscriber usually gets a whole /64, so counting single IPv6 addresses
/// would cap nothing).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Default)]
struct Counts {
    by_address: HashMap<IpAddr, usize>,
    total: usize,
}

/// Open connections, by address and in all.
#[derive(Clone)]
pub struct Connections {
    counts: Arc<Mutex<Counts>>,
    limits: IntakeLimits,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address already holds `per_address` connections.
    #[error("too many connections from your address; close some and try again")]
    PerAddress,
    /// The server holds `total` connections.
    #[error("the server is at its connection limit; try again later")]
    Total,
}

/// One counted connection; dropping it (with its socket) gives the slot back.
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_address.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_address.remove(&self.key);
            }
        }
    }
}

impl Connections {
    /// Counts enforcing `limits`.
    pub fn new(limits: IntakeLimits) -> Self {
        Connections {
            counts: Arc::default(),
            limits,
        }
    }

    /// A slot for a new connection from `ip`, unless a cap is reached.
    pub fn admit(&self, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = client_key(ip);
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.limits.total {
            return Err(Refusal::Total);
        }
        let n = c.by_address.entry(key).or_default();
        if *n >= self.limits.per_address && !self.limits.trusted_proxies.contains(&ip) {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        c.total += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            key,
        })
    }
}

/// A socket that holds its connection slot until it is dropped (also after an upgrade to a
/// WebSocket, which takes the socket over from hyper).
struct Counted {
    io: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The client address a trusted proxy appended to `X-Forwarded-For` (the last entry: the
/// ones before it are whatever the client claimed).
fn forwarded_for(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    last.to_str().ok()?.rsplit(',').next()?.trim().parse().ok()
}

/// Answers a refused connection with a short 429 or 503 and closes it, without reading its request.
async fn refuse(mut stream: TcpStream, why: Refusal) {
    let body =
        serde_json::json!({ "error": why.to_string(), "code": "too_many_connections" }).to_string();
    let status = match why {
        Refusal::PerAddress => "429 Too Many Requests",
        Refusal::Total => "503 Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 10\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}

/// Serves `app` on `listener` until the process ends: HTTP/1.1 with upgrades, each request
/// carrying `ConnectInfo<SocketAddr>` of its peer.
pub async fn serve(listener: TcpListener, app: Router, limits: IntakeLimits) {
    let connections = Connections::new(limits.clone());
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match connections.admit(addr.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                debug!(%why, "connection refused");
                tokio::spawn(refuse(stream, why));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let proxied = limits.trusted_proxies.contains(&addr.ip());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let client = match proxied.then(|| forwarded_for(request.headers())).flatten() {
                Some(ip) => std::net::SocketAddr::new(ip, 0),
                None => addr,
            };
            request.extensions_mut().insert(ConnectInfo(client));
            app.clone().oneshot(request.map(Body::new))
        });
        let io = TokioIo::new(Counted {
            io: stream,
            _slot: slot,
        });
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(io, service)
                .with_upgrades();
            if let Err(e) = connection.await {
                debug!("connection ended: {e}");
            }
        });
    }
}

/// A sustained rate with a burst: `per_sec` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Most tokens saved up (what a fresh address may spend at once).
    pub burst: f64,
}

impl Rate {
    /// `N/SECS` (N events per SECS seconds) with `burst`; `off` is no limit (`None`).
    pub fn parse(spec: &str, burst: f64) -> Result<Option<Rate>, String> {
        if spec == "off" {
            return Ok(None);
        }
        let (n, secs) = spec.split_once('/').unwrap_or((spec, "1"));
        let n: f64 = n
            .trim()
            .parse()
            .map_err(|_| format!("not a rate: {spec} (N/SECS or off)"))?;
        let secs: f64 = secs
            .trim()
            .parse()
            .map_err(|_| format!("not a rate: {spec} (N/SECS or off)"))?;
        if !(n > 0.0 && secs > 0.0 && burst >= 1.0 && n.is_finite() && secs.is_finite()) {
            return Err(format!(
                "not a rate: {spec} with burst {burst} (N, SECS > 0, burst >= 1)"
            ));
        }
        Ok(Some(Rate {
            per_sec: n / secs,
            burst,
        }))
    }
}

/// Addresses tracked before idle (full) buckets are pruned; past it, new addresses are not
/// tracked (fail open: an attacker with that many addresses is not stopped by a per-address
/// limit anyway, and the map must not grow without bound).
const MAX_TRACKED: usize = 65_536;

/// Token buckets per address ([`client_key`]): joins, mailbox registrations, uploads.
pub struct PerAddress {
    rate: Rate,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl PerAddress {
    /// Buckets refilling at `rate`.
    pub fn new(rate: Rate) -> Self {
        PerAddress {
            rate,
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for `ip`, or says how long until one is there.
    pub fn allow(&self, ip: IpAddr) -> Result<(), Duration> {
        self.allow_at(ip, Instant::now())
    }

    fn allow_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let rate = self.rate;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let level = |(tokens, last): (f64, Instant)| {
            (tokens + now.saturating_duration_since(last).as_secs_f64() * rate.per_sec)
                .min(rate.burst)
        };
        let key = client_key(ip);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, b| level(*b) < rate.burst);
            if buckets.len() >= MAX_TRACKED {
                return Ok(());
            }
        }
        let bucket = buckets.entry(key).or_insert((rate.burst, now));
        let tokens = level(*bucket);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now);
            Ok(())
        } else {
            *bucket = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / rate.per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_address_and_in_all() {
        let c = Connections::new(IntakeLimits {
            per_address: 2,
            total: 3,
            ..IntakeLimits::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = c.admit(a).unwrap();
        let _s2 = c.admit(a).unwrap();
        assert_eq!(c.admit(a).err(), Some(Refusal::PerAddress));
        let _s3 = c.admit(b).unwrap();
        assert_eq!(c.admit(b).err(), Some(Refusal::Total));
        drop(s1);
        assert!(c.admit(a).is_ok());
    }

    #[test]
    fn a_trusted_proxy_is_not_capped_and_names_the_client() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let c = Connections::new(IntakeLimits {
            per_address: 1,
            trusted_proxies: Arc::new([proxy]),
            ..IntakeLimits::default()
        });
        let _slots: Vec<_> = (0..5).map(|_| c.admit(proxy).unwrap()).collect();
        let mut headers = axum::http::HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().unwrap(),
        );
        assert_eq!(forwarded_for(&headers), "198.51.100.7".parse().ok());
        headers.insert("x-forwarded-for", "nonsense".parse().unwrap());
        assert_eq!(forwarded_for(&headers), None);
    }

    #[test]
    fn ipv6_counts_by_slash_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(one), client_key(two));
        assert_ne!(client_key(one), client_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn per_address_rates_refill_and_parse() {
        let rate = Rate::parse("10/10", 2.0).unwrap().unwrap();
        assert_eq!(
            rate,
            Rate {
                per_sec: 1.0,
                burst: 2.0
            }
        );
        assert_eq!(Rate::parse("off", 2.0), Ok(None));
        assert!(Rate::parse("x/1", 2.0).is_err() && Rate::parse("1/0", 2.0).is_err());
        let limits = PerAddress::new(rate);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = Instant::now();
        assert!(limits.allow_at(a, t).is_ok() && limits.allow_at(a, t).is_ok());
        let wait = limits.allow_at(a, t).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 0.01, "{wait:?}");
        assert!(
            limits.allow_at(b, t).is_ok(),
            "another address has its own bucket"
        );
        assert!(limits.allow_at(a, t + Duration::from_millis(1001)).is_ok());
    }
}
