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
use ferry_core::device::mailbox_client::{
    HttpError, MailboxClient, MailboxHost, News, Request, Visited,
};
use ferry_core::device::{Held, LocalState};
use ferry_core::{BlobId, DeviceId, Effect, Replica, Store, StoreError, random_msg_id};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

mod outbox;

/// The largest answer read from the mailbox: a page of 64 KiB entries in base64 is about
/// 5.5 MiB.
const MAX_RESPONSE_BYTES: usize = ferry_core::device::mailbox::MAX_FETCH_BYTES;

/// The runtime's mailbox state: the core's client, and the outbox it shares the server with.
pub(super) struct Mailbox {
    /// When to visit, and each visit (core `device::mailbox_client`).
    pub(super) client: MailboxClient,
    /// History sealed for the mailbox and not yet posted (durable, in IndexedDB).
    pub(super) outbox: outbox::OutboxState,
    /// How far this device's uploads reach ([`ferry_core::device::Uploader::carried_ms`]),
    /// as of the last time the client was here (rows read it; during a visit the client is
    /// lent to the visit).
    pub(super) carried_ms: u64,
}

impl Mailbox {
    pub(super) fn new(secret: &ferry_core::SpaceSecret, me: DeviceId) -> Self {
        Mailbox {
            client: MailboxClient::new(secret, me, now_ms()),
            outbox: outbox::OutboxState::default(),
            carried_ms: 0,
        }
    }
}

/// `ws://host:port` → `http://host:port` (the mailbox shares the signaling port).
fn http_base(signal: &str) -> Option<String> {
    let rest = signal
        .strip_prefix("wss://")
        .map(|r| ("https://", r))
        .or_else(|| signal.strip_prefix("ws://").map(|r| ("http://", r)))?;
    Some(format!("{}{}", rest.0, rest.1.trim_end_matches('/')))
}

fn js(e: wasm_bindgen::JsValue) -> String {
    format!("{e:?}")
}

/// One HTTP request with the bearer key; `(status, body)`.
async fn request(req: Request) -> Result<(u16, Vec<u8>), HttpError> {
    let init = web_sys::RequestInit::new();
    init.set_method(req.method.as_str());
    let headers = web_sys::Headers::new().map_err(|e| HttpError::Request(js(e)))?;
    headers
        .set(
            "Authorization",
            &zeroize::Zeroizing::new(format!("Bearer {}", req.token.as_str())),
        )
        .map_err(|e| HttpError::Request(js(e)))?;
    if req.json {
        headers
            .set("Content-Type", "application/json")
            .map_err(|e| HttpError::Request(js(e)))?;
    }
    init.set_headers(&headers);
    if let Some(body) = &req.body {
        init.set_body(&js_sys::Uint8Array::from(body.as_slice()).into());
    }
    let req = web_sys::Request::new_with_str_and_init(&req.url, &init)
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

/// The browser as the mailbox client's host: fetch, IndexedDB, the replica, the view.
pub(super) struct BrowserHost<'a> {
    rt: &'a mut Runtime,
}

impl MailboxHost for BrowserHost<'_> {
    type Store = crate::store::idb::IdbStore;

    fn store(&self) -> &Self::Store {
        &self.rt.store
    }

    fn replica(&mut self) -> &mut Replica {
        self.rt.engine.replica_mut()
    }

    fn split(&mut self) -> (&Self::Store, &mut Replica) {
        (&self.rt.store, self.rt.engine.replica_mut())
    }

    fn local(&mut self) -> &mut LocalState {
        self.rt.engine.local_mut()
    }

    async fn save_local(&mut self, change: impl Fn(&mut LocalState)) -> Result<(), StoreError> {
        self.rt.save_local(change).await
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn msg_id(&mut self) -> u64 {
        random_msg_id()
    }

    async fn request(&mut self, req: Request) -> Result<(u16, Vec<u8>), HttpError> {
        request(req).await
    }

    async fn apply(&mut self, effects: Vec<Effect>) -> bool {
        // What arrives from the mailbox is there already: not for the outbox.
        self.rt.mailbox.outbox.fetching = true;
        self.rt.apply_remote(effects).await;
        self.rt.mailbox.outbox.fetching = false;
        !self.rt.unsaved
    }

    fn stored_through(&mut self) -> Vec<(DeviceId, u64)> {
        self.rt.stored_through()
    }

    fn files_stored(&mut self) -> Vec<BlobId> {
        self.rt.files_stored()
    }

    fn outbox_pending(&self) -> bool {
        !self.rt.mailbox.outbox.is_empty()
    }

    fn unsaved(&self) -> bool {
        self.rt.unsaved
    }

    async fn take_prefetched(&mut self, read: u64) -> Option<Vec<u8>> {
        self.rt.take_prefetched(read).await
    }

    async fn has_prefetched(&mut self) -> bool {
        self.rt.has_prefetched().await
    }

    fn news(&mut self, news: News) {
        let view = self.rt.view;
        match news {
            News::KeyRefused {
                why,
                registering: true,
            } => {
                view.mailbox_refused.set(Some(refused_text(&why)));
                view.mailbox_status.set(Some(
                    "The mailbox on this signaling server refuses this space's key, so nothing \
                     is left there for your other devices. Devices still sync when they are \
                     online together."
                        .into(),
                ));
            }
            News::KeyRefused { why, .. } => {
                // Someone else registered this room first, or the key is wrong: say so.
                view.mailbox_status.set(Some(format!(
                    "The mailbox refuses this device's key ({why}). Nothing is uploaded; your \
                     devices still sync directly."
                )));
                view.mailbox_refused.set(Some(refused_text(&why)));
            }
            News::KeyAccepted => {
                if view.mailbox_refused.with_untracked(Option::is_some) {
                    view.mailbox_refused.set(None);
                }
            }
            News::UploadRefused(why) => view.mailbox_status.set(Some(format!(
                "The mailbox refused an upload: {why}. Ferry tries again later."
            ))),
            News::Held(held) => view.mailbox_held.set(Some(held_text(held))),
            News::EntryRefused(e) => {
                view.refused.update(|n| *n += 1);
                web_sys::console::warn_1(&format!("mailbox entry refused: {e}").into());
            }
            News::NotStored(e) => view.error.set(Some(format!(
                "Could not store what arrived from the mailbox: {e}"
            ))),
            News::Delivered => self.rt.refresh_items(),
        }
    }
}

impl Runtime {
    /// Lends the mailbox client to `f` with this runtime as its host. (The client's requests
    /// need the runtime, which holds the client: it steps out for the call, and a fresh one
    /// stands in, never used.)
    pub(super) async fn with_client<R>(
        &mut self,
        f: impl AsyncFnOnce(&mut MailboxClient, &mut BrowserHost<'_>) -> R,
    ) -> R {
        let stand_in = MailboxClient::new(&self.secret, self.device, now_ms());
        let mut client = std::mem::replace(&mut self.mailbox.client, stand_in);
        let result = f(&mut client, &mut BrowserHost { rt: self }).await;
        self.mailbox.carried_ms = client.upload.carried_ms();
        self.mailbox.client = client;
        result
    }

    /// Restores cursors and the on/off setting; `fresh` (after joining another space) forgets
    /// the old space's cursors first.
    pub(super) async fn boot_mailbox(&mut self, fresh: bool) {
        if fresh {
            let _ = self.save_local(|s| s.mailbox.forget_server()).await;
            self.clear_outbox().await;
        }
        self.mailbox.client = MailboxClient::resume(
            &self.secret,
            self.device,
            &self.engine.local().mailbox,
            now_ms(),
        );
        self.mailbox.carried_ms = self.mailbox.client.upload.carried_ms();
        let disabled = self.mailbox.client.disabled;
        self.view.mailbox_on.set(!disabled);
        if disabled {
            let _ = self.save_local(|s| s.mailbox.endpoint = None).await;
        } else {
            self.save_endpoint().await;
        }
        // What an earlier run (killed, or closed while offline) left in the outbox goes now.
        self.mailbox.outbox.schedule.flush_soon();
    }

    /// This space's mailbox on the configured signaling server.
    fn mailbox_url(&self) -> Option<String> {
        let base = self.signal_url().as_deref().and_then(http_base)?;
        Some(format!("{base}/mailbox/{}", self.secret.room_id().as_str()))
    }

    /// Turns the mailbox on or off on this device (off: nothing is uploaded or fetched, and
    /// the server forgets this device's cursor so it holds nothing back for it).
    pub(super) async fn set_mailbox(&mut self, on: bool) {
        self.mailbox.client.disabled = !on;
        if !on && let Some(url) = self.mailbox_url() {
            let gone = self
                .with_client(async |c, host| c.unregister(host, &url).await)
                .await;
            if let Err(e) = gone {
                web_sys::console::warn_1(&format!("mailbox: could not unregister: {e}").into());
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

    /// Posts the outbox when due, and visits the mailbox when the client says so (configured,
    /// on, this tab owns the network, and no other device is connected).
    pub(super) async fn pump_mailbox(&mut self) {
        self.pump_outbox().await;
        let connected = self.remote_devices() > 0;
        if connected && self.view.mailbox_status.with_untracked(Option::is_some) {
            // A device is connected: sync takes over from the mailbox.
            self.view.mailbox_status.set(None);
        }
        let may_visit = self.rtc_owner.get();
        if !self.mailbox.client.due(now_ms(), connected, may_visit) {
            return;
        }
        let Some(url) = self.mailbox_url() else {
            return;
        };
        match self
            .with_client(async |c, host| c.visit(host, &url).await)
            .await
        {
            Ok(Visited { forgot: true }) => {
                web_sys::console::warn_1(&"mailbox: the server lost it; uploading again".into());
                // Records already staged are posted as they are (the server deduplicates
                // nothing it lost); what they lack is staged next turn.
                self.mailbox.outbox.schedule.flush_soon();
                self.refresh_items();
            }
            Ok(Visited { forgot: false }) => self.show_waiting(),
            Err(e) => web_sys::console::warn_1(&format!("mailbox: {e}").into()),
        }
    }

    /// "3 items waiting in the mailbox for your other devices" (only the mailbox has them).
    fn show_waiting(&mut self) {
        self.refresh_items();
        let waiting = self.waiting_items;
        self.view.mailbox_status.set((waiting > 0).then(|| {
            if waiting == 1 {
                "1 item waiting in the mailbox for your other devices".to_string()
            } else {
                format!("{waiting} items waiting in the mailbox for your other devices")
            }
        }));
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
        let endpoint = self.mailbox.client.endpoint(url);
        if self.engine.local().mailbox.endpoint.as_ref() != Some(&endpoint) {
            let _ = self
                .save_local(move |s| s.mailbox.endpoint = Some(endpoint.clone()))
                .await;
        }
    }
}

/// Devices → Mailbox, when the server refuses this space's key.
fn refused_text(why: &str) -> String {
    format!(
        "The mailbox on this signaling server refuses this space's key ({why}): nothing is left \
         there for your other devices, and nothing is fetched. Someone may have registered this \
         space's mailbox first. Your devices still sync when they are online together; another \
         signaling server (Devices → Advanced → Connection, or a pairing link) gives the space a new mailbox."
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
