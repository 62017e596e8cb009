//! The end-to-end encrypted mailbox on the signaling endpoint, for devices that are never
//! online together (a phone used on the bus, a laptop used at night).
//!
//! When no other device is connected, the tab that owns the network uploads what the
//! other devices may not have yet (history changes since the last upload, and the files it
//! holds) as sealed, padded entries, and fetches what others left, by cursor. The server
//! stores opaque blobs: it can check our bearer key's hash but cannot read anything.
//! Failures are quiet retries (the mailbox is a fallback, never a reason for an alert).
//!
//! Nothing is acknowledged (see `fetch_mailbox`): entries stay until the server's TTL, so a
//! device that joins months later from a pairing link, alone, still gets the whole history
//! while it is within the TTL. Compacted snapshot uploads would let old entries go sooner.

use super::{Runtime, key};
use ferry_core::blobs::{chunk_key, manifest_key};
use ferry_core::{BlobId, DeviceId, Effect, Manifest, Store};
use ferry_core::{
    MailboxKeys, MailboxPayload, MailboxReader, plan_upload, random_msg_id, seal_payload,
};
use leptos::prelude::*;
use std::collections::BTreeSet;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// How often the mailbox is visited while no other device is connected (ms).
const INTERVAL_MS: f64 = 5_000.0;
/// How long no other device must have been connected before the mailbox is used (ms): a
/// reload or a brief network blip on the other side is not a reason to upload a file.
const GRACE_MS: f64 = 10_000.0;
/// Entries fetched per request.
const FETCH_LIMIT: u32 = 64;
/// File chunks uploaded per visit (1 MiB): the main loop waits for each request.
const CHUNKS_PER_VISIT: u32 = 4;

/// The runtime's mailbox state.
pub(super) struct Mailbox {
    /// The person turned it off in Settings.
    pub(super) disabled: bool,
    keys: MailboxKeys,
    /// `None` if the room id could not make a reader (never for ids Ferry derives).
    reader: Option<MailboxReader>,
    registered: bool,
    /// Last entry applied here (server sequence number).
    cursor: u64,
    /// Heads of the history as of the last complete upload (automerge change hashes).
    uploaded_heads: Vec<[u8; 32]>,
    /// Files whose bytes were uploaded.
    uploaded_files: BTreeSet<BlobId>,
    /// The file being uploaded and its next chunk (a visit uploads a few chunks).
    file_progress: Option<(BlobId, u32)>,
    last_visit: f64,
    /// When another device was last connected (or this mailbox state was created).
    last_peer: f64,
}

fn settings(name: &str) -> ferry_core::StoreKey {
    key(&["settings", name])
}

/// `ws://host:port` → `http://host:port` (the mailbox shares the signaling port).
fn http_base(signal: &str) -> Option<String> {
    let rest = signal
        .strip_prefix("wss://")
        .map(|r| ("https://", r))
        .or_else(|| signal.strip_prefix("ws://").map(|r| ("http://", r)))?;
    Some(format!("{}{}", rest.0, rest.1.trim_end_matches('/')))
}

/// One HTTP request with the bearer key; `(status, body)`.
async fn request(
    method: &str,
    url: &str,
    token: &str,
    body: Option<&[u8]>,
    json: bool,
) -> Result<(u16, Vec<u8>), String> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(|e| format!("{e:?}"))?;
    headers
        .set("Authorization", &format!("Bearer {token}"))
        .map_err(|e| format!("{e:?}"))?;
    if json {
        headers
            .set("Content-Type", "application/json")
            .map_err(|e| format!("{e:?}"))?;
    }
    init.set_headers(&headers);
    if let Some(body) = body {
        init.set_body(&js_sys::Uint8Array::from(body).into());
    }
    let req = web_sys::Request::new_with_str_and_init(url, &init).map_err(|e| format!("{e:?}"))?;
    let window = web_sys::window().ok_or("no window")?;
    let resp: web_sys::Response = JsFuture::from(window.fetch_with_request(&req))
        .await
        .map_err(|e| format!("the mailbox is unreachable ({e:?})"))?
        .unchecked_into();
    let buf = JsFuture::from(resp.array_buffer().map_err(|e| format!("{e:?}"))?)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok((resp.status(), js_sys::Uint8Array::new(&buf).to_vec()))
}

#[derive(serde::Deserialize)]
struct Entry {
    seq: u64,
    blob: String,
}

#[derive(serde::Deserialize)]
struct Fetched {
    entries: Vec<Entry>,
    #[serde(default)]
    more: bool,
}

impl Mailbox {
    pub(super) fn new(secret: &ferry_core::SpaceSecret, me: DeviceId) -> Self {
        let keys = MailboxKeys::derive(secret);
        let reader = MailboxReader::new(MailboxKeys::derive(secret), &secret.room_id())
            .ok()
            .map(|r| r.skip_from(me));
        Mailbox {
            disabled: false,
            keys,
            reader,
            registered: false,
            cursor: 0,
            uploaded_heads: Vec::new(),
            uploaded_files: BTreeSet::new(),
            file_progress: None,
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
            for name in ["mailbox-cursor", "mailbox-heads", "mailbox-files"] {
                let _ = self.store.delete(&settings(name)).await;
            }
        }
        let get = |name: &'static str| {
            let store = &self.store;
            async move { store.get(&settings(name)).await.ok().flatten() }
        };
        self.mailbox.disabled = get("mailbox-off").await.is_some_and(|b| b == b"1");
        self.mailbox.cursor = get("mailbox-cursor")
            .await
            .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
            .unwrap_or(0);
        self.mailbox.uploaded_heads = get("mailbox-heads")
            .await
            .map(|b| {
                b.chunks_exact(32)
                    .filter_map(|c| c.try_into().ok())
                    .collect()
            })
            .unwrap_or_default();
        self.mailbox.uploaded_files = get("mailbox-files")
            .await
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .filter_map(|l| l.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        self.view.mailbox_on.set(!self.mailbox.disabled);
    }

    /// Turns the mailbox on or off on this device (off: nothing is uploaded or fetched).
    pub(super) async fn set_mailbox(&mut self, on: bool) {
        self.mailbox.disabled = !on;
        let _ = self
            .store
            .put(&settings("mailbox-off"), if on { b"0" } else { b"1" })
            .await;
        self.view.mailbox_on.set(on);
        self.view.mailbox_status.set(None);
    }

    /// Visits the mailbox when it is configured, on, and no other device is connected.
    pub(super) async fn pump_mailbox(&mut self) {
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
            || now - self.mailbox.last_peer < GRACE_MS
            || now - self.mailbox.last_visit < INTERVAL_MS
        {
            return;
        }
        self.mailbox.last_visit = now;
        let Some(base) = self.signal_url().as_deref().and_then(http_base) else {
            return;
        };
        let url = format!("{base}/mailbox/{}", self.secret.room_id().as_str());
        if let Err(e) = self.visit_mailbox(&url).await {
            web_sys::console::warn_1(&format!("mailbox: {e}").into());
        }
    }

    async fn visit_mailbox(&mut self, url: &str) -> Result<(), String> {
        let token = self.mailbox.keys.auth_token();
        if !self.mailbox.registered {
            let (status, body) = request("PUT", url, &token, None, false).await?;
            if status != 200 && status != 201 {
                return Err(format!(
                    "registering failed ({status}): {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            self.mailbox.registered = true;
        }
        self.fetch_mailbox(url, &token).await?;
        self.upload_mailbox(url, &token).await
    }

    async fn fetch_mailbox(&mut self, url: &str, token: &str) -> Result<(), String> {
        use base64::Engine;
        let mut effect_batch: Vec<Effect> = Vec::new();
        loop {
            let (status, body) = request(
                "GET",
                &format!("{url}?after={}&limit={FETCH_LIMIT}", self.mailbox.cursor),
                token,
                None,
                false,
            )
            .await?;
            if status != 200 {
                return Err(format!("fetch failed ({status})"));
            }
            let fetched: Fetched =
                serde_json::from_slice(&body).map_err(|e| format!("bad answer: {e}"))?;
            for entry in &fetched.entries {
                let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(&entry.blob) else {
                    continue;
                };
                let Some(reader) = self.mailbox.reader.as_mut() else {
                    return Err("no mailbox reader for this space".into());
                };
                match reader.open(&blob) {
                    Ok(Some((_, payload))) => {
                        let effects = self.apply_mail(payload).await;
                        effect_batch.extend(effects);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.view.refused.update(|n| *n += 1);
                        web_sys::console::warn_1(&format!("mailbox entry refused: {e}").into());
                    }
                }
                self.mailbox.cursor = self.mailbox.cursor.max(entry.seq);
            }
            if !fetched.entries.is_empty() {
                let _ = self
                    .store
                    .put(
                        &settings("mailbox-cursor"),
                        self.mailbox.cursor.to_string().as_bytes(),
                    )
                    .await;
                // No acknowledgement is sent: the server deletes what every *registered*
                // device acknowledged, but a device that joins later (and may never meet
                // another online) needs the whole history, and nobody can register it in
                // advance. Entries live until the server's TTL or quota instead.
            }
            if !fetched.more || fetched.entries.is_empty() {
                break;
            }
        }
        if !effect_batch.is_empty() {
            self.apply_remote(effect_batch).await;
        }
        Ok(())
    }

    /// Applies one payload; the effects of a history change.
    async fn apply_mail(&mut self, payload: MailboxPayload) -> Vec<Effect> {
        match payload {
            MailboxPayload::Changes { bytes } => match self.replica.apply_mailbox_changes(&bytes) {
                Ok(effects) => effects,
                Err(e) => {
                    web_sys::console::warn_1(&format!("mailbox changes refused: {e}").into());
                    vec![]
                }
            },
            MailboxPayload::Manifest { root, bytes } => {
                if Manifest::decode(&root, &bytes).is_ok() {
                    let _ = self.store.put(&manifest_key(&root), &bytes).await;
                }
                vec![]
            }
            MailboxPayload::Chunk { root, index, data } => {
                let verified = match self.store.get(&manifest_key(&root)).await {
                    Ok(Some(m)) => Manifest::decode(&root, &m)
                        .is_ok_and(|m| m.verify_chunk(index, &data).is_ok()),
                    _ => false,
                };
                if verified {
                    let _ = self.store.put(&chunk_key(&root, index), &data).await;
                }
                vec![]
            }
        }
    }

    async fn post_entries(&mut self, url: &str, token: &str, payload: &MailboxPayload) -> bool {
        let Ok(entries) = seal_payload(
            &self.mailbox.keys,
            &self.secret.room_id(),
            self.device,
            random_msg_id(),
            payload,
        ) else {
            return false;
        };
        for entry in entries {
            match request("POST", url, token, Some(&entry), false).await {
                Ok((201, _)) | Ok((200, _)) => {}
                Ok((status, body)) => {
                    self.view.mailbox_status.set(Some(format!(
                        "The mailbox refused an upload ({status}): {}",
                        String::from_utf8_lossy(&body)
                    )));
                    return false;
                }
                Err(_) => return false,
            }
        }
        true
    }

    async fn upload_mailbox(&mut self, url: &str, token: &str) -> Result<(), String> {
        let heads: Vec<automerge::ChangeHash> = self
            .mailbox
            .uploaded_heads
            .iter()
            .map(|h| automerge::ChangeHash(*h))
            .collect();
        if let Some(plan) = plan_upload(self.replica.doc_mut(), &heads) {
            if !self
                .post_entries(
                    url,
                    token,
                    &MailboxPayload::Changes {
                        bytes: plan.changes,
                    },
                )
                .await
            {
                return Ok(());
            }
            self.mailbox.uploaded_heads = plan.heads.iter().map(|h| h.0).collect();
            let _ = self
                .store
                .put(
                    &settings("mailbox-heads"),
                    &self.mailbox.uploaded_heads.concat(),
                )
                .await;
        }
        // Files written here and held whole, not yet in the mailbox: a few chunks per visit
        // (the main loop waits for each request), resumed at the next visit.
        let mine: BTreeSet<BlobId> = self
            .replica
            .items()
            .into_iter()
            .filter(|i| i.author == self.device)
            .filter_map(|i| i.file.map(|f| f.root))
            .collect();
        let todo: Vec<BlobId> = self
            .files_stored()
            .into_iter()
            .filter(|r| mine.contains(r) && !self.mailbox.uploaded_files.contains(r))
            .collect();
        let mut budget = CHUNKS_PER_VISIT;
        for root in todo {
            let Ok(Some(bytes)) = self.store.get(&manifest_key(&root)).await else {
                continue;
            };
            let Ok(manifest) = Manifest::decode(&root, &bytes) else {
                continue;
            };
            let start = match self.mailbox.file_progress {
                Some((r, next)) if r == root => next,
                _ => {
                    if !self
                        .post_entries(url, token, &MailboxPayload::Manifest { root, bytes })
                        .await
                    {
                        return Ok(());
                    }
                    0
                }
            };
            for index in start..manifest.chunk_count() {
                if budget == 0 {
                    self.mailbox.file_progress = Some((root, index));
                    // More to do: come back soon rather than after the usual interval.
                    self.mailbox.last_visit -= INTERVAL_MS - 100.0;
                    return Ok(());
                }
                budget -= 1;
                let Ok(Some(data)) = self.store.get(&chunk_key(&root, index)).await else {
                    return Ok(());
                };
                if !self
                    .post_entries(url, token, &MailboxPayload::Chunk { root, index, data })
                    .await
                {
                    self.mailbox.file_progress = Some((root, index));
                    return Ok(());
                }
            }
            self.mailbox.file_progress = None;
            self.mailbox.uploaded_files.insert(root);
            let text: String = self
                .mailbox
                .uploaded_files
                .iter()
                .map(|r| format!("{r}\n"))
                .collect();
            let _ = self
                .store
                .put(&settings("mailbox-files"), text.as_bytes())
                .await;
        }
        let waiting = self.pending_items;
        self.view.mailbox_status.set((waiting > 0).then(|| {
            if waiting == 1 {
                "1 item waiting in the mailbox for your other devices".to_string()
            } else {
                format!("{waiting} items waiting in the mailbox for your other devices")
            }
        }));
        Ok(())
    }
}
