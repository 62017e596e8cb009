//! The end-to-end encrypted mailbox on the signaling endpoint, for devices that are never
//! online together (a phone used on the bus, a laptop used at night).
//!
//! When no other device is connected, the tab that owns the network uploads what the
//! other devices may not have yet (history changes since the last upload, and the files it
//! holds) as sealed, padded entries, and fetches what others left, by cursor. The server
//! stores opaque blobs: it can check our bearer key's hash but cannot read anything.
//! Failures are quiet retries (the mailbox is a fallback, never a reason for an alert).
//!
//! After applying, the device acknowledges its cursor (only up to the oldest message still
//! incomplete here, see `MailboxCursor`). The server lets history entries go once every
//! registered device has them *and* a base covers them: every so often (`base_due`) a device
//! uploads a compacted snapshot of the whole history instead of a delta and declares it, so a
//! device that joins later, alone, reads the snapshot instead of the deleted entries. File
//! chunks are uploaded "held": they stay until every other registered device has them.
//! Which device has which of our uploads comes from the sealed *receipts* devices post (what
//! each stored, per author), never from the server's cursors: anyone holding the access key
//! can move a cursor. That is the per-item "on Laptop" for devices reached only through the
//! mailbox.

use super::{Runtime, now_ms};
use ferry_core::blobs::{chunk_key, manifest_key};
use ferry_core::device::mailbox::{Inbox, Opened, Outcome, Stored};
use ferry_core::device::upload::{BaseDeclaration, FileStep, HISTORY_ENTRIES_PER_VISIT};
use ferry_core::device::{
    FetchAnswer, Held, MailboxEndpoint, MailboxState, RoomView, Uploader, delivery,
};
use ferry_core::{DeviceId, Effect, Manifest, Store, StoreError};
use ferry_core::{
    MailboxCursor, MailboxKeys, MailboxPayload, MailboxReader, random_msg_id, seal_payload,
};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

mod outbox;

/// How often the mailbox is visited while no other device is connected (ms).
const INTERVAL_MS: f64 = 5_000.0;
/// How long no other device must have been connected before file chunks go to the mailbox
/// (ms): a reload or a brief network blip on the other side is not a reason to upload a big
/// file. History never waits for it (see `outbox`).
const GRACE_MS: f64 = 10_000.0;
/// Entries fetched per request.
const FETCH_LIMIT: u32 = 64;
/// The largest answer read from the mailbox: a page of `FETCH_LIMIT` 64 KiB entries in base64
/// is about 5.5 MiB.
const MAX_RESPONSE_BYTES: usize = ferry_core::device::mailbox::MAX_FETCH_BYTES;

/// The runtime's mailbox state.
pub(super) struct Mailbox {
    /// The person turned it off in Settings.
    pub(super) disabled: bool,
    keys: MailboxKeys,
    /// Reading: the cursor and the reassembling reader (core `device::mailbox::Inbox`).
    /// `None` if the room id could not make a reader (never for ids Ferry derives).
    inbox: Option<Inbox>,
    registered: bool,
    /// This device's name on the server (an opaque tag).
    tag: String,
    /// The cursor last acknowledged to the server (`None`: not registered there yet).
    acked: Option<u64>,
    /// Writing: what the mailbox has from here and the upload in progress (core
    /// `device::upload`: deltas, bases, file chunks, echo avoidance).
    pub(super) upload: Uploader,
    last_visit: f64,
    /// When another device was last connected (or this mailbox state was created).
    last_peer: f64,
    /// When the server last showed every other device holding everything this one has.
    pub(super) synced_ms: u64,
    /// A digest of the last receipt this device sent, to send one only when something moved.
    receipt_ms: u64,
    /// History sealed for the mailbox and not yet posted (durable, in IndexedDB).
    pub(super) outbox: outbox::OutboxState,
    /// A post was answered with a sequence number already read here.
    server_forgot: bool,
    /// The signaling server has no mailbox (upstream `matchbox_server`): nothing is staged.
    pub(super) unavailable: bool,
}

/// `ws://host:port` → `http://host:port` (the mailbox shares the signaling port).
fn http_base(signal: &str) -> Option<String> {
    let rest = signal
        .strip_prefix("wss://")
        .map(|r| ("https://", r))
        .or_else(|| signal.strip_prefix("ws://").map(|r| ("http://", r)))?;
    Some(format!("{}{}", rest.0, rest.1.trim_end_matches('/')))
}

/// Why a request to the mailbox got no answer worth reading.
#[derive(Debug, thiserror::Error)]
pub(super) enum HttpError {
    /// The browser would not build the request (never for URLs Ferry makes).
    #[error("the browser refused the request: {0}")]
    Request(String),
    /// Offline, refused, or blocked.
    #[error("cannot reach the mailbox ({0})")]
    Unreachable(String),
    /// More than any honest answer (refused before it is read or copied into wasm).
    #[error("the mailbox answered with {0} bytes")]
    TooLarge(u64),
    /// The body could not be read.
    #[error("the mailbox's answer could not be read ({0})")]
    Body(String),
    /// An answer other than the one asked for.
    #[error("the mailbox answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The server's words (lossy UTF-8).
        body: String,
    },
}

fn js(e: wasm_bindgen::JsValue) -> String {
    format!("{e:?}")
}

/// One HTTP request with the bearer key; `(status, body)`.
async fn request(
    method: &str,
    url: &str,
    token: &str,
    body: Option<&[u8]>,
    json: bool,
) -> Result<(u16, Vec<u8>), HttpError> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(|e| HttpError::Request(js(e)))?;
    headers
        .set(
            "Authorization",
            &zeroize::Zeroizing::new(format!("Bearer {token}")),
        )
        .map_err(|e| HttpError::Request(js(e)))?;
    if json {
        headers
            .set("Content-Type", "application/json")
            .map_err(|e| HttpError::Request(js(e)))?;
    }
    init.set_headers(&headers);
    if let Some(body) = body {
        init.set_body(&js_sys::Uint8Array::from(body).into());
    }
    let req = web_sys::Request::new_with_str_and_init(url, &init)
        .map_err(|e| HttpError::Request(js(e)))?;
    let window = web_sys::window().ok_or_else(|| HttpError::Request("no window".into()))?;
    let resp: web_sys::Response = JsFuture::from(window.fetch_with_request(&req))
        .await
        .map_err(|e| HttpError::Unreachable(js(e)))?
        .unchecked_into();
    // A hostile server could answer with anything: refuse what no honest answer needs
    // before it is read (when the length is declared) and before it is copied into wasm.
    let declared = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > MAX_RESPONSE_BYTES as u64) {
        return Err(HttpError::TooLarge(n));
    }
    let buf = JsFuture::from(resp.array_buffer().map_err(|e| HttpError::Body(js(e)))?)
        .await
        .map_err(|e| HttpError::Body(js(e)))?;
    let bytes = js_sys::Uint8Array::new(&buf);
    if bytes.length() as usize > MAX_RESPONSE_BYTES {
        return Err(HttpError::TooLarge(u64::from(bytes.length())));
    }
    Ok((resp.status(), bytes.to_vec()))
}

/// A JSON request that must answer 200.
async fn post_json(url: &str, token: &str, body: &serde_json::Value) -> Result<(), HttpError> {
    let (status, answer) =
        request("POST", url, token, Some(body.to_string().as_bytes()), true).await?;
    if status == 200 {
        Ok(())
    } else {
        Err(HttpError::Status {
            status,
            body: String::from_utf8_lossy(&answer).into_owned(),
        })
    }
}

/// Why a fetch did not complete.
#[derive(Debug, thiserror::Error)]
enum Fetch {
    /// The server no longer knows what this device read (restored or new): start over.
    #[error("{0}")]
    Forgotten(String),
    /// The server refuses this space's key.
    #[error("the mailbox refuses this space's key ({0})")]
    Refused(String),
    /// No answer worth reading: try again next visit.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Anything else (a bad answer, storage): try again next visit.
    #[error("{0}")]
    Failed(String),
}

/// Why a mailbox visit ended early (it is tried again at the next one; never an alert).
#[derive(Debug, thiserror::Error)]
enum VisitError {
    /// A request failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Fetching what waits failed.
    #[error(transparent)]
    Fetch(#[from] Fetch),
    /// The server refused to register this space's mailbox.
    #[error("registering failed ({status}): {body}")]
    Register {
        /// HTTP status.
        status: u16,
        /// The server's words.
        body: String,
    },
}

/// What the last fetch said about the room.
struct Room {
    last_seq: u64,
    base_to: Option<u64>,
}

impl Mailbox {
    /// Where reading stands (what acknowledgements, bases and duplicates are judged by).
    fn cursor(&self) -> MailboxCursor {
        self.inbox.as_ref().map(|i| *i.cursor()).unwrap_or_default()
    }

    pub(super) fn new(secret: &ferry_core::SpaceSecret, me: DeviceId) -> Self {
        let keys = MailboxKeys::derive(secret);
        let inbox = MailboxReader::new(MailboxKeys::derive(secret), &secret.room_id())
            .ok()
            .map(|r| Inbox::resume(r.skip_from(me), 0, None, None, keys.device_tag(me), None));
        Mailbox {
            disabled: false,
            tag: keys.device_tag(me),
            keys,
            inbox,
            registered: false,
            acked: None,
            upload: Uploader::default(),
            synced_ms: 0,
            receipt_ms: 0,
            outbox: outbox::OutboxState::default(),
            server_forgot: false,
            unavailable: false,
            last_visit: 0.0,
            last_peer: js_sys::Date::now(),
        }
    }
}

impl Runtime {
    /// Restores cursors and the on/off setting; `fresh` (after joining another space) forgets
    /// the old space's cursors first.
    pub(super) async fn boot_mailbox(&mut self, fresh: bool) {
        self.mailbox = Mailbox::new(&self.secret, self.device);
        if fresh {
            let _ = self.save_local(|s| s.mailbox.forget_server()).await;
            self.clear_outbox().await;
        }
        let saved = &self.local.mailbox;
        self.mailbox.disabled = saved.off;
        let (cursor, unapplied, hash) = (saved.cursor, saved.unapplied, saved.cursor_hash);
        let (tag, last_post) = (self.mailbox.tag.clone(), saved.last_post);
        self.mailbox.upload = Uploader::resume(saved);
        self.mailbox.inbox =
            MailboxReader::new(MailboxKeys::derive(&self.secret), &self.secret.room_id())
                .ok()
                .map(|r| {
                    let reader = r.skip_from(self.device);
                    Inbox::resume(reader, cursor, unapplied, hash, tag, last_post)
                });
        self.mailbox.receipt_ms = saved.receipt;
        self.view.mailbox_on.set(!self.mailbox.disabled);
        if self.mailbox.disabled {
            let _ = self.save_local(|s| s.mailbox.endpoint = None).await;
        } else {
            self.save_endpoint().await;
        }
        // What an earlier run (killed, or closed while offline) left in the outbox goes now.
        self.mailbox.outbox.flush_at = Some(0.0);
    }

    /// This space's mailbox on the configured signaling server.
    fn mailbox_url(&self) -> Option<String> {
        let base = self.signal_url().as_deref().and_then(http_base)?;
        Some(format!("{base}/mailbox/{}", self.secret.room_id().as_str()))
    }

    /// Turns the mailbox on or off on this device (off: nothing is uploaded or fetched, and
    /// the server forgets this device's cursor so it holds nothing back for it).
    pub(super) async fn set_mailbox(&mut self, on: bool) {
        self.mailbox.disabled = !on;
        if !on && let Some(url) = self.mailbox_url() {
            let url = format!("{url}/devices/{}", self.mailbox.tag);
            let token = self.mailbox.keys.auth_token();
            match request("DELETE", &url, &token, None, false).await {
                Ok((200, _)) => self.mailbox.acked = None,
                other => web_sys::console::warn_1(
                    &format!("mailbox: could not unregister: {other:?}").into(),
                ),
            }
        }
        if on {
            self.save_endpoint().await;
        } else {
            // Off means nothing is uploaded, also not later by the service worker.
            self.clear_outbox().await;
        }
        let _ = self
            .save_local(move |s| {
                s.mailbox.off = !on;
                if !on {
                    s.mailbox.endpoint = None;
                }
            })
            .await;
        self.view.mailbox_on.set(on);
        self.view.mailbox_status.set(None);
    }

    /// Posts the outbox when due, and visits the mailbox when it is configured, on, and no
    /// other device is connected.
    pub(super) async fn pump_mailbox(&mut self) {
        self.pump_outbox().await;
        let now = js_sys::Date::now();
        if self.remote_devices() > 0 {
            self.mailbox.last_peer = now;
            if self.view.mailbox_status.with_untracked(Option::is_some) {
                // A device is connected: sync takes over from the mailbox.
                self.view.mailbox_status.set(None);
            }
            return;
        }
        if self.mailbox.disabled
            || !self.rtc_owner.get()
            || now - self.mailbox.last_visit < INTERVAL_MS
        {
            return;
        }
        self.mailbox.last_visit = now;
        let Some(url) = self.mailbox_url() else {
            return;
        };
        if let Err(e) = self.visit_mailbox(&url).await {
            web_sys::console::warn_1(&format!("mailbox: {e}").into());
        }
    }

    async fn visit_mailbox(&mut self, url: &str) -> Result<(), VisitError> {
        let token = self.mailbox.keys.auth_token();
        if self.mailbox.server_forgot {
            self.forget_mailbox_state().await;
        }
        if let Err(e) = self.ensure_registered(url, &token).await {
            // Offline, but the service worker fetched ahead: show what it brought.
            if !self.has_prefetched().await {
                return Err(e);
            }
        }
        if let Some(path) = ferry_core::device::mailbox::legacy_unregistration(
            &self.mailbox.keys,
            self.device,
            &self.local.mailbox,
        ) && let Ok((status, _)) =
            request("DELETE", &format!("{url}/{path}"), &token, None, false).await
        {
            let _ = self
                .save_local(move |s| {
                    ferry_core::device::mailbox::note_legacy_unregistration(&mut s.mailbox, status)
                })
                .await;
        }
        let room = match self.fetch_mailbox(url, &token).await {
            Err(Fetch::Forgotten(why)) => {
                // The server lost this mailbox (a restored backup, a new server, a wiped data
                // dir): start over there as a new device would, and upload everything again.
                web_sys::console::warn_1(&format!("mailbox: {why}; uploading again").into());
                self.forget_mailbox_state().await;
                return Ok(());
            }
            Err(Fetch::Refused(why)) => {
                // Someone else registered this room first, or the key is wrong: say so.
                self.view.mailbox_status.set(Some(format!(
                    "The mailbox refuses this device's key ({why}). Nothing is uploaded; your \
                     devices still sync directly."
                )));
                self.view.mailbox_refused.set(Some(refused_text(&why)));
                return Err(Fetch::Refused(why).into());
            }
            Err(e) => return Err(e.into()),
            Ok(room) => {
                if self.view.mailbox_refused.with_untracked(Option::is_some) {
                    self.view.mailbox_refused.set(None);
                }
                room
            }
        };
        self.send_receipt(url, &token).await;
        // A failed acknowledgement never blocks uploads: it is tried again next visit.
        if let Err(e) = self.acknowledge(url, &token).await {
            web_sys::console::warn_1(&format!("mailbox: {e}").into());
        }
        self.note_mailbox_delivery();
        let result = self.upload_mailbox(url, &token, &room).await;
        self.save_last_post().await;
        result
    }

    /// Saves this device's newest upload not read back yet (core `PostedEntry`): after a
    /// restart it still shows a server restored from an earlier copy.
    pub(super) async fn save_last_post(&mut self) {
        let post = self.mailbox.inbox.as_ref().and_then(Inbox::last_post);
        if self.local.mailbox.last_post != post {
            let _ = self.save_local(move |s| s.mailbox.last_post = post).await;
        }
    }

    /// Registers this space's mailbox (the server keeps only the key's hash) once per run.
    async fn ensure_registered(&mut self, url: &str, token: &str) -> Result<(), VisitError> {
        if self.mailbox.registered {
            return Ok(());
        }
        let (status, body) = request("PUT", url, token, None, false).await?;
        // 404/405 with no JSON error: a signaling server without a mailbox.
        self.mailbox.unavailable = matches!(status, 404 | 405 | 501);
        if status == 401 {
            // Someone registered this room first (or this key is not the space's): the person
            // should know the mailbox does nothing for them, not find out from missing messages.
            self.view
                .mailbox_refused
                .set(Some(refused_text("registration refused, HTTP 401")));
            self.view.mailbox_status.set(Some(
                "The mailbox on this signaling server refuses this space's key, so nothing is \
                 left there for your other devices. Devices still sync when they are online \
                 together."
                    .into(),
            ));
        }
        if status != 200 && status != 201 {
            return Err(VisitError::Register {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        self.mailbox.registered = true;
        Ok(())
    }

    /// Forgets everything this device believed the server holds (cursor, acknowledgements,
    /// uploaded heads and files, upload log): the next visit registers again, reads from the
    /// start, and the outbox stages the whole history.
    async fn forget_mailbox_state(&mut self) {
        let _ = self.save_local(|s| s.mailbox.forget_server()).await;
        let disabled = self.mailbox.disabled;
        let outbox = std::mem::take(&mut self.mailbox.outbox);
        self.mailbox = Mailbox::new(&self.secret, self.device);
        self.mailbox.disabled = disabled;
        self.mailbox.outbox = outbox;
        // Records already staged are posted as they are (the server deduplicates nothing
        // it lost); what they lack is staged next turn.
        self.mailbox.outbox.flush_at = Some(0.0);
        self.mailbox.last_visit = 0.0;
        self.refresh_items();
    }

    /// The history here is all in the mailbox (as of the last complete upload) and nothing
    /// waits in the outbox.
    fn heads_uploaded(&mut self) -> bool {
        self.mailbox.outbox.is_empty() && self.mailbox.upload.has_all_of(self.replica.doc_mut())
    }

    /// Tells the server what this device has (the first time, this registers the device, so
    /// held file chunks wait for it too).
    async fn acknowledge(&mut self, url: &str, token: &str) -> Result<(), HttpError> {
        let safe = self.mailbox.cursor().safe();
        if self.mailbox.acked == Some(safe) {
            return Ok(());
        }
        post_json(
            &format!("{url}/ack"),
            token,
            &serde_json::json!({ "device": self.mailbox.tag, "seq": safe }),
        )
        .await?;
        self.mailbox.acked = Some(safe);
        Ok(())
    }

    /// "Last synced" through the mailbox: everything here is uploaded and every other device's
    /// sealed receipt covers what this device wrote (core `delivery::delivered_everywhere`).
    /// Server cursors are never evidence: anyone with the access key can move one, and a
    /// cursor also passes entries a device failed to store.
    fn note_mailbox_delivery(&mut self) {
        let others: Vec<DeviceId> = self
            .replica
            .devices()
            .into_iter()
            .map(|d| d.id)
            .filter(|d| *d != self.device)
            .collect();
        let uploaded = !self.mailbox.upload.uploading_history() && self.heads_uploaded();
        if delivery::delivered_everywhere(
            self.replica.history().items(),
            self.device,
            &others,
            &self.local.delivered,
            uploaded,
        ) {
            self.mailbox.synced_ms = now_ms();
        }
    }

    async fn fetch_mailbox(&mut self, url: &str, token: &str) -> Result<Room, Fetch> {
        // Every decision about what counts as read, what may be acknowledged and what is read
        // again is the core's `Inbox`; this fetches pages, applies and stores what it is handed.
        let Some(mut inbox) = self.mailbox.inbox.take() else {
            return Err(Fetch::Failed("no mailbox reader for this space".into()));
        };
        let result = self.read_mailbox(&mut inbox, url, token).await;
        self.mailbox.inbox = Some(inbox);
        result
    }

    async fn read_mailbox(
        &mut self,
        inbox: &mut Inbox,
        url: &str,
        token: &str,
    ) -> Result<Room, Fetch> {
        let mut effect_batch: Vec<Effect> = Vec::new();
        // Nothing of ours waits to be uploaded: what arrives now is in the mailbox already,
        // so it must not count as ours to upload (every device would echo every change).
        let clean = self.heads_uploaded();
        inbox.begin();
        let room = loop {
            let prefetched = self.take_prefetched(inbox.cursor().read()).await;
            if prefetched.is_some() {
                inbox.prefetched();
            }
            let (status, body) = match prefetched {
                Some(body) => (200, body),
                None => {
                    request(
                        "GET",
                        &format!("{url}?after={}&limit={FETCH_LIMIT}", inbox.after()),
                        token,
                        None,
                        false,
                    )
                    .await?
                }
            };
            match status {
                200 => {}
                404 => {
                    return Err(Fetch::Forgotten(
                        "the server has no mailbox for this space".into(),
                    ));
                }
                401 => return Err(Fetch::Refused("HTTP 401".into())),
                _ => return Err(Fetch::Failed(format!("fetch failed ({status})"))),
            }
            let page = FetchAnswer::parse(&body).map_err(|e| Fetch::Failed(e.to_string()))?;
            inbox.start_page(&page).map_err(|e| Fetch::Forgotten(e.0))?;
            for entry in &page.entries {
                match inbox.open(entry).map_err(|e| Fetch::Forgotten(e.0))? {
                    Opened::Message { from, payload } => {
                        let outcome = match self.apply_mail(from, payload).await {
                            Ok(Some(effects)) => {
                                effect_batch.extend(effects);
                                Outcome::Applied
                            }
                            Ok(None) => Outcome::Unapplied,
                            Err(e) => {
                                self.view.error.set(Some(format!(
                                    "Could not store what arrived from the mailbox: {e}"
                                )));
                                Outcome::Unstored
                            }
                        };
                        inbox.record(outcome);
                    }
                    Opened::Nothing => {}
                    Opened::Refused(e) => {
                        self.view.refused.update(|n| *n += 1);
                        web_sys::console::warn_1(&format!("mailbox entry refused: {e}").into());
                    }
                }
            }
            inbox.end_page(&page).map_err(|e| Fetch::Forgotten(e.0))?;
            self.view.mailbox_held.set(Some(held_text(page.held)));
            let done = !page.more || page.entries.is_empty();
            let room = Room {
                last_seq: page.last_seq,
                base_to: page.base_to,
            };
            if done {
                break room;
            }
        };
        if !effect_batch.is_empty() {
            // What arrives from the mailbox is there already: not for the outbox.
            self.mailbox.outbox.fetching = true;
            self.apply_remote(effect_batch).await;
            self.mailbox.outbox.fetching = false;
            if self.unsaved {
                // The document did not reach storage: this fetch counts for nothing.
                inbox.finish(false);
                return Err(Fetch::Failed(
                    "history from the mailbox not stored yet".into(),
                ));
            }
        }
        if self
            .mailbox
            .upload
            .after_read(clean, self.replica.doc_mut())
        {
            self.save_uploads().await;
        }
        if let Some(saved) = inbox.finish(true) {
            // After applying (and saving) what was read, and only what survives a reload.
            let _ = self
                .save_local(move |s| {
                    s.mailbox.cursor = saved.cursor;
                    s.mailbox.cursor_hash = saved.hash;
                    s.mailbox.unapplied = saved.unapplied;
                })
                .await;
        }
        Ok(room)
    }

    /// Another device's sealed receipt: it stored every item this device wrote up to a
    /// moment ("on Laptop"); what it says of other authors is theirs to read.
    async fn note_receipt(&mut self, from: DeviceId, stored: &[(DeviceId, u64)]) {
        if delivery::note_receipt(&mut self.local.delivered, self.device, from, stored) {
            self.save_delivered().await;
            self.refresh_items();
        }
    }

    /// After a fetch whose contents are stored: tells the other devices, sealed, up to which
    /// moment this one holds each author's items (and their files' bytes), when that moved.
    async fn send_receipt(&mut self, url: &str, token: &str) {
        if self.unsaved {
            return;
        }
        let stored = self.stored_through();
        // Only when something moved: a receipt is one more entry in the mailbox.
        let digest = delivery::receipt_digest(&stored);
        if stored.is_empty() || digest == self.mailbox.receipt_ms {
            return;
        }
        let receipt = MailboxPayload::Receipt { stored };
        if self
            .post_entries(url, token, &receipt, false)
            .await
            .is_some()
        {
            self.mailbox.receipt_ms = digest;
            let _ = self.save_local(move |s| s.mailbox.receipt = digest).await;
        }
    }

    /// An answer the service worker fetched ahead (Periodic Background Sync) for the current
    /// cursor; older ones are dropped.
    async fn take_prefetched(&mut self, read: u64) -> Option<Vec<u8>> {
        let prefix = ferry_core::StoreKey::from_stored("mailbox-prefetch".into());
        let found = self.store.list(&prefix).await.ok()?;
        if found.is_empty() {
            return None;
        }
        let want = format!("mailbox-prefetch/{read:020}");
        let mut body = None;
        for (key, bytes) in found {
            if key.as_str() == want {
                body = Some(bytes);
            }
            let _ = self.store.delete(&key).await;
        }
        body
    }

    /// An answer fetched ahead by the service worker waits in storage.
    async fn has_prefetched(&self) -> bool {
        let prefix = ferry_core::StoreKey::from_stored("mailbox-prefetch".into());
        self.store
            .keys(&prefix)
            .await
            .is_ok_and(|keys| !keys.is_empty())
    }

    /// Tells the service worker where this space's mailbox is (for fetching ahead).
    async fn save_endpoint(&mut self) {
        let Some(url) = self.mailbox_url() else {
            return;
        };
        let endpoint = MailboxEndpoint {
            url,
            token: self.mailbox.keys.auth_token(),
        };
        if self.local.mailbox.endpoint.as_ref() != Some(&endpoint) {
            let _ = self
                .save_local(move |s| s.mailbox.endpoint = Some(endpoint.clone()))
                .await;
        }
    }

    /// Applies one payload (core `store_payload`); the effects of a history change, or a
    /// storage error (then the entry must not count as read).
    async fn apply_mail(
        &mut self,
        from: DeviceId,
        payload: MailboxPayload,
    ) -> Result<Option<Vec<Effect>>, StoreError> {
        Ok(
            match ferry_core::device::mailbox::store_payload(
                &self.store,
                &mut self.replica,
                payload,
            )
            .await?
            {
                Stored::Applied(effects) => Some(effects),
                Stored::Unapplied => None,
                Stored::Receipt(stored) => {
                    self.note_receipt(from, &stored).await;
                    Some(Vec::new())
                }
            },
        )
    }

    fn seal(&self, payload: &MailboxPayload) -> Option<Vec<Vec<u8>>> {
        seal_for(
            &self.mailbox.keys,
            &self.secret.room_id(),
            self.device,
            payload,
        )
    }

    /// Seals and posts one message; the server's sequence numbers of its entries, or `None`
    /// if any entry was refused (the caller tries again at a later visit).
    async fn post_entries(
        &mut self,
        url: &str,
        token: &str,
        payload: &MailboxPayload,
        hold: bool,
    ) -> Option<Vec<u64>> {
        let entries = self.seal(payload)?;
        let mut seqs = Vec::with_capacity(entries.len());
        for entry in entries {
            seqs.push(self.post_entry(url, token, &entry, hold).await?);
        }
        Some(seqs)
    }

    /// Posts one sealed entry; its sequence number, or `None` if refused (said in the status).
    async fn post_entry(
        &mut self,
        url: &str,
        token: &str,
        entry: &[u8],
        hold: bool,
    ) -> Option<u64> {
        let url = format!(
            "{url}?device={}{}",
            self.mailbox.tag,
            if hold { "&hold=1" } else { "" }
        );
        match request("POST", &url, token, Some(entry), false).await {
            Ok((201, body)) | Ok((200, body)) => {
                let answer = serde_json::from_slice::<serde_json::Value>(&body).ok()?;
                let seq = answer["seq"].as_u64()?;
                // A repeated entry (the service worker or a keepalive posted it first) keeps
                // its old number; only a *new* entry numbered like one read before is news.
                let duplicate = answer["duplicate"].as_bool().unwrap_or(false);
                if !duplicate && seq <= self.mailbox.cursor().read() {
                    // A new entry numbered like one read before: the server lost entries
                    // (restored from an older copy). Start over at the next visit.
                    self.mailbox.server_forgot = true;
                }
                if let Some(inbox) = self.mailbox.inbox.as_mut() {
                    inbox.posted(seq, entry, hold);
                }
                Some(seq)
            }
            Ok((status, body)) => {
                // The server words its errors for people ("the room's mailbox is full…").
                let why = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("HTTP {status}"));
                self.view.mailbox_status.set(Some(format!(
                    "The mailbox refused an upload: {why}. Ferry tries again later."
                )));
                None
            }
            Err(_) => None,
        }
    }

    /// Plans the next history upload (core `Uploader`: a delta, or a snapshot when one is
    /// due) unless one is in progress, then posts a few of its entries. `true` once nothing is
    /// left to post.
    async fn upload_history(&mut self, url: &str, token: &str, room: &Room) -> bool {
        if !self.mailbox.upload.uploading_history() && !self.mailbox.outbox.is_empty() {
            // The outbox posts new history at once (`pump_outbox`); a snapshot and file
            // chunks wait until it is empty.
            return false;
        }
        let view = RoomView {
            last_seq: room.last_seq,
            base_to: room.base_to,
        };
        let covers = self.mailbox.cursor().base_covers();
        let carried = self.replica.latest_ms().max(now_ms());
        let (room_id, me, keys) = (self.secret.room_id(), self.device, &self.mailbox.keys);
        let seal = |p: &MailboxPayload| seal_for(keys, &room_id, me, p);
        if !self
            .mailbox
            .upload
            .plan_history(self.replica.doc_mut(), view, covers, carried, seal)
        {
            return true;
        }
        for _ in 0..HISTORY_ENTRIES_PER_VISIT {
            let Some(entry) = self.mailbox.upload.next_history_entry() else {
                break;
            };
            match self.post_entry(url, token, &entry, false).await {
                Some(seq) => self.mailbox.upload.posted(seq),
                None => {
                    self.mailbox.upload.not_posted(entry);
                    return false;
                }
            }
        }
        let Some(done) = self.mailbox.upload.finish_history() else {
            // More to post: come back soon rather than after the usual interval.
            self.mailbox.last_visit -= INTERVAL_MS - 100.0;
            return false;
        };
        if let Some(BaseDeclaration { from, to, covers }) = done.base {
            let base = serde_json::json!({ "from": from, "to": to, "covers": covers });
            if let Err(e) = post_json(&format!("{url}/base"), token, &base).await {
                web_sys::console::warn_1(&format!("mailbox base refused: {e}").into());
            }
        }
        self.save_uploads().await;
        true
    }

    /// Saves what the mailbox has from here (heads, uploads for delivery, files).
    pub(super) async fn save_uploads(&mut self) {
        let mut saved = MailboxState::default();
        self.mailbox.upload.save_into(&mut saved);
        let _ = self
            .save_local(move |s| {
                s.mailbox.heads = saved.heads.clone();
                s.mailbox.uploads = saved.uploads.clone();
                s.mailbox.files = saved.files.clone();
                s.mailbox.carried = saved.carried;
            })
            .await;
    }

    async fn upload_mailbox(
        &mut self,
        url: &str,
        token: &str,
        room: &Room,
    ) -> Result<(), VisitError> {
        let history_done = self.upload_history(url, token, room).await;
        // File chunks only after the quiet period: a reload elsewhere is no reason to upload
        // a big file (history never waits).
        if history_done && js_sys::Date::now() - self.mailbox.last_peer >= GRACE_MS {
            self.upload_files(url, token).await;
        }
        self.refresh_items();
        let waiting = self.waiting_items;
        self.view.mailbox_status.set((waiting > 0).then(|| {
            if waiting == 1 {
                "1 item waiting in the mailbox for your other devices".to_string()
            } else {
                format!("{waiting} items waiting in the mailbox for your other devices")
            }
        }));
        Ok(())
    }

    /// Uploads a few chunks of the files written here that the mailbox lacks (core
    /// `Uploader` decides which and how far; this reads them from storage and posts them).
    async fn upload_files(&mut self, url: &str, token: &str) {
        let mine = self.replica.history().files_by(self.device);
        let todo = self
            .mailbox
            .upload
            .files_to_upload(&mine, self.files_stored());
        for root in todo {
            let Ok(Some(bytes)) = self.store.get(&manifest_key(&root)).await else {
                continue;
            };
            let Ok(manifest) = Manifest::decode(&root, &bytes) else {
                continue;
            };
            let chunks = manifest.chunk_count();
            loop {
                let step = self.mailbox.upload.file_step(root, chunks);
                let payload = match step {
                    FileStep::Done => break,
                    FileStep::Later => {
                        // More to do: come back soon rather than after the usual interval.
                        self.mailbox.last_visit -= INTERVAL_MS - 100.0;
                        return;
                    }
                    FileStep::Manifest(root) => MailboxPayload::Manifest {
                        root,
                        bytes: bytes.clone(),
                    },
                    FileStep::Chunk(root, index) => {
                        let Ok(Some(data)) = self.store.get(&chunk_key(&root, index)).await else {
                            return;
                        };
                        MailboxPayload::Chunk { root, index, data }
                    }
                };
                if self
                    .post_entries(url, token, &payload, true)
                    .await
                    .is_none()
                {
                    return;
                }
                if self.mailbox.upload.file_posted(step, chunks) {
                    self.save_uploads().await;
                    break;
                }
            }
        }
    }
}

/// One message sealed into mailbox entries under a fresh message id (`None`: larger than
/// one message may be).
fn seal_for(
    keys: &MailboxKeys,
    room: &ferry_core::RoomId,
    me: DeviceId,
    payload: &MailboxPayload,
) -> Option<Vec<Vec<u8>>> {
    seal_payload(keys, room, me, random_msg_id(), payload).ok()
}

/// Devices → Mailbox, when the server refuses this space's key.
fn refused_text(why: &str) -> String {
    format!(
        "The mailbox on this signaling server refuses this space's key ({why}): nothing is left \
         there for your other devices, and nothing is fetched. Someone may have registered this \
         space's mailbox first. Your devices still sync when they are online together; another \
         signaling server (Devices → Connection, or a pairing link) gives the space a new mailbox."
    )
}

/// "The mailbox holds 3 sealed entries (12.0 KB) for this space."
fn held_text(stored: Held) -> String {
    match stored.entries {
        0 => "The mailbox holds nothing for this space.".to_string(),
        1 => format!(
            "The mailbox holds 1 sealed entry ({}) for this space.",
            crate::view::format_size(stored.bytes)
        ),
        n => format!(
            "The mailbox holds {n} sealed entries ({}) for this space.",
            crate::view::format_size(stored.bytes)
        ),
    }
}
