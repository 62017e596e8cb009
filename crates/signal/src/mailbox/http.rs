//! The mailbox's HTTP API, on the signaling port. Every answer is JSON; errors are
//! `{"error": "<what happened and what to do>", "code": "<short name>"}`.
//!
//! ```text
//! PUT    /mailbox/<room>                  register V = BLAKE3(K) of the bearer K (trust on
//!                                         first use)
//! POST   /mailbox/<room>[?device=D[&hold=1]] append a sealed blob (body: raw bytes); `hold`
//!                                         keeps it until every other device acknowledged it;
//!                                         the same bytes as a stored entry answer 200 with
//!                                         its seq and `"duplicate": true` (new: 201)
//! GET    /mailbox/<room>?after=S&limit=N  entries after cursor S, the base, the cursors
//! POST   /mailbox/<room>/ack              {"device": "...", "seq": S}
//! POST   /mailbox/<room>/base             {"from": F, "to": T, "covers": C}: entries F..=T
//!                                         are a snapshot of everything up to C
//! DELETE /mailbox/<room>/devices/<device> forget a device's cursor
//! DELETE /mailbox/<room>                  wipe the room's mailbox
//! ```
//! All carry `Authorization: Bearer <K as 64 hex chars>`. Registrations and appends are also
//! rate-limited per address (429 with `Retry-After`); a full server answers 507 like a full
//! room.

// Handlers short-circuit with a ready `Response` as their error: it is built once per refused
// request, so its size does not matter.
#![allow(clippy::result_large_err)]

use super::{Base, Fetched, MAX_FETCH, Mailbox, MailboxError, now_ms, verifier_of};
use crate::intake::{PerAddress, Rate};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Per-address rates of the requests that take server resources a stranger could claim:
/// registrations (a room slot each) and uploads (disk). `None`: unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailboxRates {
    /// `PUT /mailbox/<room>`.
    pub register: Option<Rate>,
    /// `POST /mailbox/<room>`.
    pub append: Option<Rate>,
}

/// The mailbox routes, or (when disabled) routes that say so.
pub fn router(mailbox: Option<Arc<Mailbox>>, rates: MailboxRates) -> Router {
    let Some(mailbox) = mailbox else {
        return Router::new().route("/mailbox/{*rest}", axum::routing::any(disabled));
    };
    let limit = |rate: Option<Rate>| {
        middleware::from_fn_with_state(rate.map(|r| Arc::new(PerAddress::new(r))), rate_limited)
    };
    Router::new()
        .route(
            "/mailbox/{room}",
            put(register.layer(limit(rates.register)))
                .post(append.layer(limit(rates.append)))
                .get(fetch)
                .delete(wipe),
        )
        .route("/mailbox/{room}/ack", post(ack))
        .route("/mailbox/{room}/base", post(declare_base))
        .route("/mailbox/{room}/devices/{device}", delete(remove_device))
        .with_state(mailbox)
}

/// Refuses a request over its address's rate with 429 and `Retry-After`.
async fn rate_limited(
    State(limit): State<Option<Arc<PerAddress>>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let (Some(limit), Some(ip)) = (&limit, peer)
        && let Err(retry) = limit.allow(ip)
    {
        let secs = retry.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate",
            &format!("too many mailbox requests from your address; try again in {secs} s"),
        );
        if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    next.run(request).await
}

async fn disabled() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "disabled",
        "the mailbox is disabled on this server (--no-mailbox)",
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "error": message, "code": code })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"ferry-mailbox\""),
        );
    }
    response
}

impl IntoResponse for MailboxError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let (status, code) = match &self {
            MailboxError::NotRegistered => (StatusCode::NOT_FOUND, "not_registered"),
            MailboxError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            MailboxError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            MailboxError::BadPadding(_) => (StatusCode::BAD_REQUEST, "bad_padding"),
            MailboxError::Quota(_) => (StatusCode::INSUFFICIENT_STORAGE, "quota"),
            MailboxError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            MailboxError::Storage(e) => {
                tracing::error!("mailbox storage: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, "storage")
            }
        };
        error(status, code, &message)
    }
}

/// Ferry room ids: 16 bytes from HKDF as 32 lowercase hex characters.
fn check_room(room: &str) -> Result<(), Response> {
    if room.len() == 32 && room.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(error(
            StatusCode::BAD_REQUEST,
            "bad_room",
            "room ids are 32 lowercase hex characters",
        ))
    }
}

fn check_device(device: &str) -> Result<(), Response> {
    if (1..=64).contains(&device.len())
        && device
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(error(
            StatusCode::BAD_REQUEST,
            "bad_device",
            "device ids are 1 to 64 characters of [A-Za-z0-9_-]",
        ))
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// The request's key, hashed: only the hash is compared and stored.
fn key_hash(headers: &HeaderMap) -> Result<blake3::Hash, Response> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|k| hex32(k.trim()))
        .map(|k| verifier_of(&k))
        .ok_or_else(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or malformed Authorization header: expected `Bearer <mailbox key as 64 hex characters>`",
            )
        })
}

/// Runs a store operation off the async threads (redb commits fsync).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MailboxError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(IntoResponse::into_response),
        Err(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the mailbox operation failed",
        )),
    }
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn register(
    State(mb): State<Arc<Mailbox>>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        check_room(&room)?;
        let hash = key_hash(&headers)?;
        let r = room.clone();
        let created = blocking(move || mb.register(&r, hash)).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok::<_, Response>(ok(status, json!({ "room": room, "created": created })))
    };
    run.await.unwrap_or_else(|e| e)
}

async fn append(
    State(mb): State<Arc<Mailbox>>,
    Path(room): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let run = async {
        check_room(&room)?;
        let hash = key_hash(&headers)?;
        let uploader = query.get("device").cloned();
        if let Some(d) = &uploader {
            check_device(d)?;
        }
        let hold = match query.get("hold").map(String::as_str) {
            None | Some("0") => false,
            Some("1") => true,
            Some(_) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "`hold` must be 0 or 1",
                ));
            }
        };
        let max = mb.limits().max_entry_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(n) = declared.filter(|n| *n > max) {
            return Err(MailboxError::TooLarge(n).into_response());
        }
        let blob = axum::body::to_bytes(body, max)
            .await
            .map_err(|_| MailboxError::TooLarge(max + 1).into_response())?;
        let appended =
            blocking(move || mb.append(&room, &hash, &blob, uploader.as_deref(), hold, now_ms()))
                .await?;
        // A repeat of a stored entry is 200, not 201: nothing was created.
        let status = if appended.duplicate {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok::<_, Response>(ok(
            status,
            json!({ "seq": appended.seq, "duplicate": appended.duplicate }),
        ))
    };
    run.await.unwrap_or_else(|e| e)
}

async fn fetch(
    State(mb): State<Arc<Mailbox>>,
    Path(room): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        check_room(&room)?;
        let number = |name: &str, default: u64| -> Result<u64, Response> {
            query.get(name).map_or(Ok(default), |v| {
                v.parse().map_err(|_| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        &format!("`{name}` must be a non-negative integer"),
                    )
                })
            })
        };
        let after = number("after", 0)?;
        let limit = number("limit", 64)?.min(MAX_FETCH as u64) as usize;
        let hash = key_hash(&headers)?;
        let Fetched {
            entries,
            more,
            last_seq,
            base,
            cursors,
            stored,
        } = blocking(move || mb.fetch(&room, &hash, after, limit, now_ms())).await?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let entries: Vec<Value> = entries
            .iter()
            .map(|e| json!({ "seq": e.seq, "at": e.at_ms, "blob": b64.encode(&e.blob) }))
            .collect();
        Ok::<_, Response>(ok(
            StatusCode::OK,
            json!({
                "entries": entries,
                "more": more,
                "last_seq": last_seq,
                "base": base.map(|b| json!({ "from": b.from, "to": b.to, "covers": b.covers })),
                "cursors": cursors
                    .into_iter()
                    .map(|(d, seq)| (d, json!(seq)))
                    .collect::<serde_json::Map<String, Value>>(),
                "stored": { "entries": stored.0, "bytes": stored.1 },
            }),
        ))
    };
    run.await.unwrap_or_else(|e| e)
}

fn bad_json(expected: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        &format!("expected JSON {expected}"),
    )
}

async fn ack(
    State(mb): State<Arc<Mailbox>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        check_room(&room)?;
        let hash = key_hash(&headers)?;
        let bad = || bad_json(r#"{"device": "<device id>", "seq": <number>}"#);
        let v: Value = serde_json::from_slice(&body).map_err(|_| bad())?;
        let device = v["device"].as_str().ok_or_else(bad)?.to_owned();
        let seq = v["seq"].as_u64().ok_or_else(bad)?;
        check_device(&device)?;
        let d = device.clone();
        let (cursor, deleted) = blocking(move || mb.ack(&room, &hash, &d, seq, now_ms())).await?;
        Ok::<_, Response>(ok(
            StatusCode::OK,
            json!({ "device": device, "cursor": cursor, "deleted": deleted }),
        ))
    };
    run.await.unwrap_or_else(|e| e)
}

async fn declare_base(
    State(mb): State<Arc<Mailbox>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        check_room(&room)?;
        let hash = key_hash(&headers)?;
        let bad = || bad_json(r#"{"from": <seq>, "to": <seq>, "covers": <seq>}"#);
        let v: Value = serde_json::from_slice(&body).map_err(|_| bad())?;
        let field = |name: &str| v[name].as_u64().ok_or_else(bad);
        let base = Base {
            from: field("from")?,
            to: field("to")?,
            covers: field("covers")?,
        };
        let (current, deleted) =
            blocking(move || mb.declare_base(&room, &hash, base, now_ms())).await?;
        Ok::<_, Response>(ok(
            StatusCode::OK,
            json!({ "current": current, "deleted": deleted }),
        ))
    };
    run.await.unwrap_or_else(|e| e)
}

async fn remove_device(
    State(mb): State<Arc<Mailbox>>,
    Path((room, device)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        check_room(&room)?;
        check_device(&device)?;
        let hash = key_hash(&headers)?;
        let (existed, deleted) =
            blocking(move || mb.remove_device(&room, &hash, &device, now_ms())).await?;
        Ok::<_, Response>(ok(
            StatusCode::OK,
            json!({ "removed": existed, "deleted": deleted }),
        ))
    };
    run.await.unwrap_or_else(|e| e)
}

async fn wipe(
    State(mb): State<Arc<Mailbox>>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        check_room(&room)?;
        let hash = key_hash(&headers)?;
        let deleted = blocking(move || mb.wipe(&room, &hash)).await?;
        Ok::<_, Response>(ok(StatusCode::OK, json!({ "deleted": deleted })))
    };
    run.await.unwrap_or_else(|e| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_parse_strictly() {
        assert_eq!(hex32(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(hex32(&"AB".repeat(32)), Some([0xab; 32]));
        assert_eq!(hex32(&"ab".repeat(31)), None);
        assert_eq!(hex32(&"zz".repeat(32)), None);
    }
}
