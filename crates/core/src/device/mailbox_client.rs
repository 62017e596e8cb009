//! The mailbox client: when to visit the encrypted mailbox, and one visit in order (register,
//! unregister the first version's tag, read what waits, post a receipt, acknowledge, note
//! delivery, upload history, declare a base, upload file chunks).
//!
//! The decisions are [`Inbox`] (what counts as read), [`Uploader`] (what to post) and
//! [`delivery`] (what "on Laptop" may say); this module sequences them against the server.
//! It reaches the world through one port, [`MailboxHost`]: HTTP, this device's storage,
//! replica and local state, and "show this". The app's host is the browser runtime (fetch,
//! IndexedDB, signals); the host tests' host answers from an in-memory ferry-signal. A visit
//! is a dozen requests, each depending on the answer before, so the port is async (like
//! [`crate::Store`]) rather than a list of effects; time and message ids come from the host,
//! so every test is deterministic.

use super::delivery;
use super::local_state::{LocalState, MailboxEndpoint, MailboxState};
use super::mailbox::{
    FetchAnswer, Held, Inbox, Opened, Outcome, Stored, legacy_unregistration,
    note_legacy_unregistration, store_payload,
};
use super::upload::{BaseDeclaration, FileStep, HISTORY_ENTRIES_PER_VISIT, RoomView, Uploader};
use crate::blobs::{BlobId, chunk_key, manifest_key};
use crate::{
    DeviceId, Effect, MailboxCursor, MailboxKeys, MailboxPayload, MailboxReader, Manifest, Replica,
    RoomId, SpaceSecret, Store, StoreError, seal_payload,
};
use std::fmt;
use zeroize::Zeroizing;

/// How often the mailbox is visited while no other device is connected (ms).
pub const INTERVAL_MS: u64 = 5_000;
/// How long no other device must have been connected before file chunks go to the mailbox
/// (ms): a reload or a brief network blip on the other side is not a reason to upload a big
/// file. History never waits for it (the outbox posts it at once).
pub const GRACE_MS: u64 = 10_000;
/// Entries asked for per fetch.
pub const FETCH_LIMIT: u32 = 64;

/// An HTTP method the mailbox protocol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Fetch entries.
    Get,
    /// Register the room's key.
    Put,
    /// Post an entry, an acknowledgement or a base.
    Post,
    /// Unregister a device.
    Delete,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One request to the mailbox, with the room's bearer key.
pub struct Request {
    /// Its method.
    pub method: Method,
    /// The whole URL (the room's mailbox URL and what follows it).
    pub url: String,
    /// The bearer key (`Authorization: Bearer …`).
    pub token: Zeroizing<String>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// The body is JSON (`Content-Type: application/json`).
    pub json: bool,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("body", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

/// Why a request to the mailbox got no answer worth reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The platform would not build the request (never for URLs Ferry makes).
    #[error("the request could not be made: {0}")]
    Request(String),
    /// Offline, refused, or blocked.
    #[error("cannot reach the mailbox ({0})")]
    Unreachable(String),
    /// More than any honest answer (refused before it is read).
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

/// Why a fetch did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The server no longer knows what this device read (restored or new): start over.
    #[error("{0}")]
    Forgotten(String),
    /// The server refuses this space's key.
    #[error("the mailbox refuses this space's key ({0})")]
    Refused(String),
    /// No answer worth reading: try again next visit.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A bad answer, or what was read is not stored yet: try again next visit.
    #[error("{0}")]
    Failed(String),
}

/// Why a mailbox visit ended early (it is tried again at the next one; never an alert).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VisitError {
    /// A request failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Fetching what waits failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The server refused to register this space's mailbox.
    #[error("registering failed ({status}): {body}")]
    Register {
        /// HTTP status.
        status: u16,
        /// The server's words.
        body: String,
    },
}

/// What the person should see of the mailbox (the host words and shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    /// The server refuses this space's key (`why`), when registering or when fetching: nothing
    /// is left there for the other devices.
    KeyRefused {
        /// The server's words, or the status.
        why: String,
        /// Refused at registration (the room is someone else's) rather than at a fetch.
        registering: bool,
    },
    /// A fetch was answered: the key is accepted.
    KeyAccepted,
    /// An upload was refused, in the server's words (tried again later).
    UploadRefused(String),
    /// What the server holds for the room.
    Held(Held),
    /// An entry that did not open (forged, damaged, another room's) was skipped.
    EntryRefused(String),
    /// What arrived could not be stored here (read again next visit).
    NotStored(StoreError),
    /// Delivery marks moved (a receipt arrived): what items say changed.
    Delivered,
}

/// What a finished visit asks of the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Visited {
    /// The server lost this mailbox: everything this device believed it holds is forgotten,
    /// so the outbox should post (and stage) again at once.
    pub forgot: bool,
}

/// The rest of the device, as the mailbox client needs it.
#[allow(async_fn_in_trait)]
pub trait MailboxHost {
    /// This device's storage.
    type Store: Store;
    /// This device's storage.
    fn store(&self) -> &Self::Store;
    /// The space's history.
    fn replica(&mut self) -> &mut Replica;
    /// Storage and history at once (what arrives is stored into both).
    fn split(&mut self) -> (&Self::Store, &mut Replica);
    /// This device's state as last saved.
    fn local(&mut self) -> &mut LocalState;
    /// Changes this device's state here and in storage (best effort for the client: a
    /// failure means it is done again after a restart).
    async fn save_local(&mut self, change: impl Fn(&mut LocalState)) -> Result<(), StoreError>;
    /// Now (ms since the epoch).
    fn now_ms(&self) -> u64;
    /// A fresh message id (random in the app).
    fn msg_id(&mut self) -> u64;
    /// Performs one request: `(status, body)`.
    async fn request(&mut self, request: Request) -> Result<(u16, Vec<u8>), HttpError>;
    /// Performs the effects of history read from the mailbox (stores and shows it; it is
    /// in the mailbox already, so not for the outbox). `false` if it did not reach storage.
    async fn apply(&mut self, effects: Vec<Effect>) -> bool;
    /// Per author, up to when this device holds every item with its file's bytes (what its
    /// receipt says, see [`delivery::stored_through`]).
    fn stored_through(&mut self) -> Vec<(DeviceId, u64)>;
    /// Files held whole here and still in the history.
    fn files_stored(&mut self) -> Vec<BlobId>;
    /// History sealed for the mailbox waits to be posted (the app's outbox).
    fn outbox_pending(&self) -> bool {
        false
    }
    /// The last document save failed: what is in memory is not stored yet.
    fn unsaved(&self) -> bool {
        false
    }
    /// An answer fetched ahead (the app's service worker) for the cursor `read`.
    async fn take_prefetched(&mut self, _read: u64) -> Option<Vec<u8>> {
        None
    }
    /// Some answer fetched ahead waits.
    async fn has_prefetched(&mut self) -> bool {
        false
    }
    /// Something to show.
    fn news(&mut self, news: News);
}

/// The mailbox client of one device for one space.
pub struct MailboxClient {
    keys: MailboxKeys,
    room: RoomId,
    me: DeviceId,
    /// The person turned it off in Settings.
    pub disabled: bool,
    /// Reading: the cursor and the reassembling reader. `None` if the room id could not make
    /// a reader (never for ids Ferry derives).
    inbox: Option<Inbox>,
    registered: bool,
    /// The cursor last acknowledged to the server (`None`: not in this run).
    acked: Option<u64>,
    /// Writing: what the mailbox has from here and the upload in progress.
    pub upload: Uploader,
    last_visit: u64,
    /// When another device was last connected (or this client was made).
    last_peer: u64,
    /// When the server last showed every other device holding everything this one has.
    pub synced_ms: u64,
    /// A digest of the last receipt this device sent, to send one only when something moved.
    receipt: u64,
    /// A post was answered with a sequence number already read here.
    server_forgot: bool,
    /// The signaling server has no mailbox (upstream `matchbox_server`).
    pub unavailable: bool,
}

impl MailboxClient {
    /// A client with nothing read or uploaded, made at `now`.
    pub fn new(secret: &SpaceSecret, me: DeviceId, now: u64) -> Self {
        Self::resume(secret, me, &MailboxState::default(), now)
    }

    /// A client that goes on from what was saved.
    pub fn resume(secret: &SpaceSecret, me: DeviceId, saved: &MailboxState, now: u64) -> Self {
        Self::resume_keys(
            MailboxKeys::derive(secret),
            secret.room_id(),
            me,
            saved,
            now,
        )
    }

    /// This device's name on the server (an opaque tag).
    pub fn tag(&self) -> String {
        self.keys.device_tag(self.me)
    }

    /// The room's bearer key.
    pub fn auth_token(&self) -> Zeroizing<String> {
        self.keys.auth_token()
    }

    /// The keys (for sealing the outbox).
    pub fn keys(&self) -> &MailboxKeys {
        &self.keys
    }

    /// What the service worker needs to fetch ahead from `url`.
    pub fn endpoint(&self, url: String) -> MailboxEndpoint {
        MailboxEndpoint {
            url,
            token: self.auth_token(),
        }
    }

    /// Where reading stands.
    pub fn cursor(&self) -> MailboxCursor {
        self.inbox.as_ref().map(|i| *i.cursor()).unwrap_or_default()
    }

    /// Whether to visit now: not while another device is connected (`connected`: sync takes
    /// over; that also starts the grace period for files), nor when off, nor when this host
    /// may not (`may_visit`: another tab talks to the mailbox), nor more often than
    /// [`INTERVAL_MS`] (sooner when the last visit left more to post).
    pub fn due(&mut self, now: u64, connected: bool, may_visit: bool) -> bool {
        if connected {
            self.last_peer = now;
            return false;
        }
        if self.disabled || !may_visit || now.saturating_sub(self.last_visit) < INTERVAL_MS {
            return false;
        }
        self.last_visit = now;
        true
    }

    /// More waits to be posted: the next visit comes soon rather than after the interval.
    fn come_back_soon(&mut self) {
        self.last_visit = self.last_visit.saturating_sub(INTERVAL_MS - 100);
    }

    /// One visit to the room's mailbox at `url`.
    pub async fn visit<H: MailboxHost>(
        &mut self,
        host: &mut H,
        url: &str,
    ) -> Result<Visited, VisitError> {
        let mut visited = Visited::default();
        if self.server_forgot {
            self.forget(host).await;
            visited.forgot = true;
        }
        if let Err(e) = self.register(host, url).await {
            // Offline, but an answer fetched ahead waits: show what it brought.
            if !host.has_prefetched().await {
                return Err(e);
            }
        }
        let token = self.auth_token();
        if let Some(path) = legacy_unregistration(&self.keys, self.me, &host.local().mailbox)
            && let Ok((status, _)) = host
                .request(Request {
                    method: Method::Delete,
                    url: format!("{url}/{path}"),
                    token: token.clone(),
                    body: None,
                    json: false,
                })
                .await
        {
            let _ = host
                .save_local(move |s| note_legacy_unregistration(&mut s.mailbox, status))
                .await;
        }
        let room = match self.fetch(host, url).await {
            Err(FetchError::Forgotten(_)) => {
                // The server lost this mailbox (a restored backup, a new server, a wiped data
                // dir): start over there as a new device would, and upload everything again.
                self.forget(host).await;
                return Ok(Visited { forgot: true });
            }
            Err(FetchError::Refused(why)) => {
                host.news(News::KeyRefused {
                    why: why.clone(),
                    registering: false,
                });
                return Err(FetchError::Refused(why).into());
            }
            Err(e) => return Err(e.into()),
            Ok(room) => {
                host.news(News::KeyAccepted);
                room
            }
        };
        self.send_receipt(host, url).await;
        // A failed acknowledgement never blocks uploads: it is tried again next visit.
        let _ = self.acknowledge(host, url).await;
        self.note_delivery(host);
        self.upload_history(host, url, room).await;
        self.save_last_post(host).await;
        Ok(visited)
    }

    /// Registers this space's mailbox (the server keeps only the key's hash) once per run.
    pub async fn register<H: MailboxHost>(
        &mut self,
        host: &mut H,
        url: &str,
    ) -> Result<(), VisitError> {
        if self.registered {
            return Ok(());
        }
        let (status, body) = host
            .request(Request {
                method: Method::Put,
                url: url.to_owned(),
                token: self.auth_token(),
                body: None,
                json: false,
            })
            .await?;
        // 404/405 with no JSON error: a signaling server without a mailbox.
        self.unavailable = matches!(status, 404 | 405 | 501);
        if status == 401 {
            // Someone registered this room first (or this key is not the space's): the person
            // should know the mailbox does nothing for them, not find out from missing messages.
            host.news(News::KeyRefused {
                why: "registration refused, HTTP 401".into(),
                registering: true,
            });
        }
        if status != 200 && status != 201 {
            return Err(VisitError::Register {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        self.registered = true;
        Ok(())
    }

    /// Unregisters this device (the mailbox was turned off): the server forgets its cursor, so
    /// it holds nothing back for it.
    pub async fn unregister<H: MailboxHost>(
        &mut self,
        host: &mut H,
        url: &str,
    ) -> Result<(), HttpError> {
        let (status, body) = host
            .request(Request {
                method: Method::Delete,
                url: format!("{url}/devices/{}", self.tag()),
                token: self.auth_token(),
                body: None,
                json: false,
            })
            .await?;
        if status != 200 {
            return Err(HttpError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        self.acked = None;
        Ok(())
    }

    /// Forgets everything this device believed the server holds (cursor, acknowledgements,
    /// uploaded heads and files, upload log): the next visit registers again, reads from the
    /// start, and uploads the whole history. The person's on/off choice stays.
    pub async fn forget<H: MailboxHost>(&mut self, host: &mut H) {
        let _ = host.save_local(|s| s.mailbox.forget_server()).await;
        let disabled = self.disabled;
        let now = host.now_ms();
        *self = Self::resume_keys(
            self.keys.clone(),
            self.room.clone(),
            self.me,
            &MailboxState::default(),
            now,
        );
        self.disabled = disabled;
    }

    fn resume_keys(
        keys: MailboxKeys,
        room: RoomId,
        me: DeviceId,
        saved: &MailboxState,
        now: u64,
    ) -> Self {
        let tag = keys.device_tag(me);
        let inbox = MailboxReader::new(keys.clone(), &room).ok().map(|r| {
            Inbox::resume(
                r.skip_from(me),
                saved.cursor,
                saved.unapplied,
                saved.cursor_hash,
                tag,
                saved.last_post,
            )
        });
        MailboxClient {
            keys,
            room,
            me,
            disabled: saved.off,
            inbox,
            registered: false,
            acked: None,
            upload: Uploader::resume(saved),
            last_visit: 0,
            last_peer: now,
            synced_ms: 0,
            receipt: saved.receipt,
            server_forgot: false,
            unavailable: false,
        }
    }

    /// The history here is all in the mailbox (as of the last complete upload) and nothing
    /// waits in the outbox.
    fn heads_uploaded<H: MailboxHost>(&mut self, host: &mut H) -> bool {
        !host.outbox_pending() && self.upload.has_all_of(host.replica().doc_mut())
    }

    /// Tells the server what this device has (the first time, this registers the device, so
    /// held file chunks wait for it too).
    async fn acknowledge<H: MailboxHost>(
        &mut self,
        host: &mut H,
        url: &str,
    ) -> Result<(), HttpError> {
        let safe = self.cursor().safe();
        if self.acked == Some(safe) {
            return Ok(());
        }
        let body = serde_json::json!({ "device": self.tag(), "seq": safe });
        self.post_json(host, &format!("{url}/ack"), &body).await?;
        self.acked = Some(safe);
        Ok(())
    }

    /// A JSON request that must answer 200.
    async fn post_json<H: MailboxHost>(
        &self,
        host: &mut H,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<(), HttpError> {
        let (status, answer) = host
            .request(Request {
                method: Method::Post,
                url: url.to_owned(),
                token: self.auth_token(),
                body: Some(body.to_string().into_bytes()),
                json: true,
            })
            .await?;
        if status == 200 {
            Ok(())
        } else {
            Err(HttpError::Status {
                status,
                body: String::from_utf8_lossy(&answer).into_owned(),
            })
        }
    }

    /// "Last synced" through the mailbox: everything here is uploaded and every other device's
    /// sealed receipt covers what this device wrote (`delivery::delivered_everywhere`).
    /// Server cursors are never evidence: anyone with the access key can move one, and a
    /// cursor also passes entries a device failed to store.
    fn note_delivery<H: MailboxHost>(&mut self, host: &mut H) {
        let me = self.me;
        let uploaded = !self.upload.uploading_history() && self.heads_uploaded(host);
        let others: Vec<DeviceId> = host
            .replica()
            .devices()
            .into_iter()
            .map(|d| d.id)
            .filter(|d| *d != me)
            .collect();
        let delivered = host.local().delivered.clone();
        if delivery::delivered_everywhere(
            host.replica().history().items(),
            me,
            &others,
            &delivered,
            uploaded,
        ) {
            self.synced_ms = host.now_ms();
        }
    }

    /// Reads everything that waits (every decision about what counts as read, what may be
    /// acknowledged and what is read again is the [`Inbox`]'s), stores it, and saves the
    /// cursor once what was read is stored.
    async fn fetch<H: MailboxHost>(
        &mut self,
        host: &mut H,
        url: &str,
    ) -> Result<RoomView, FetchError> {
        let Some(mut inbox) = self.inbox.take() else {
            return Err(FetchError::Failed(
                "no mailbox reader for this space".into(),
            ));
        };
        let result = self.read(host, &mut inbox, url).await;
        self.inbox = Some(inbox);
        result
    }

    async fn read<H: MailboxHost>(
        &mut self,
        host: &mut H,
        inbox: &mut Inbox,
        url: &str,
    ) -> Result<RoomView, FetchError> {
        let mut effects: Vec<Effect> = Vec::new();
        // Nothing of ours waits to be uploaded: what arrives now is in the mailbox already,
        // so it must not count as ours to upload (every device would echo every change).
        let clean = self.heads_uploaded(host);
        inbox.begin();
        let room = loop {
            let prefetched = host.take_prefetched(inbox.cursor().read()).await;
            if prefetched.is_some() {
                inbox.prefetched();
            }
            let (status, body) = match prefetched {
                Some(body) => (200, body),
                None => {
                    host.request(Request {
                        method: Method::Get,
                        url: format!("{url}?after={}&limit={FETCH_LIMIT}", inbox.after()),
                        token: self.auth_token(),
                        body: None,
                        json: false,
                    })
                    .await?
                }
            };
            match status {
                200 => {}
                404 => {
                    return Err(FetchError::Forgotten(
                        "the server has no mailbox for this space".into(),
                    ));
                }
                401 => return Err(FetchError::Refused("HTTP 401".into())),
                _ => return Err(FetchError::Failed(format!("fetch failed ({status})"))),
            }
            let page = FetchAnswer::parse(&body).map_err(|e| FetchError::Failed(e.to_string()))?;
            inbox
                .start_page(&page)
                .map_err(|e| FetchError::Forgotten(e.0))?;
            for entry in &page.entries {
                match inbox.open(entry).map_err(|e| FetchError::Forgotten(e.0))? {
                    Opened::Message { from, payload } => {
                        let outcome = match self.store_message(host, from, payload).await {
                            Ok(Some(more)) => {
                                effects.extend(more);
                                Outcome::Applied
                            }
                            Ok(None) => Outcome::Unapplied,
                            Err(e) => {
                                host.news(News::NotStored(e));
                                Outcome::Unstored
                            }
                        };
                        inbox.record(outcome);
                    }
                    Opened::Nothing => {}
                    Opened::Refused(e) => host.news(News::EntryRefused(e.to_string())),
                }
            }
            inbox
                .end_page(&page)
                .map_err(|e| FetchError::Forgotten(e.0))?;
            host.news(News::Held(page.held));
            if !page.more || page.entries.is_empty() {
                break RoomView {
                    last_seq: page.last_seq,
                    base_to: page.base_to,
                };
            }
        };
        if !effects.is_empty() && !host.apply(effects).await {
            // The document did not reach storage: this fetch counts for nothing.
            inbox.finish(false);
            return Err(FetchError::Failed(
                "history from the mailbox not stored yet".into(),
            ));
        }
        if self.upload.after_read(clean, host.replica().doc_mut()) {
            self.save_uploads(host).await;
        }
        if let Some(saved) = inbox.finish(true) {
            // After applying (and saving) what was read, and only what survives a reload.
            let _ = host
                .save_local(move |s| {
                    s.mailbox.cursor = saved.cursor;
                    s.mailbox.cursor_hash = saved.hash;
                    s.mailbox.unapplied = saved.unapplied;
                })
                .await;
        }
        Ok(room)
    }

    /// Stores one message (`store_payload`); the effects of a history change, `None` when
    /// it was refused, or a storage error (then it must not count as read).
    async fn store_message<H: MailboxHost>(
        &mut self,
        host: &mut H,
        from: DeviceId,
        payload: MailboxPayload,
    ) -> Result<Option<Vec<Effect>>, StoreError> {
        let (store, replica) = host.split();
        Ok(match store_payload(store, replica, payload).await? {
            Stored::Applied(effects) => Some(effects),
            Stored::Unapplied => None,
            Stored::Receipt(stored) => {
                // Another device's sealed receipt: it stored every item this device wrote up
                // to a moment ("on Laptop"); what it says of other authors is theirs to read.
                if delivery::note_receipt(&mut host.local().delivered, self.me, from, &stored) {
                    save_delivered(host).await;
                    host.news(News::Delivered);
                }
                Some(Vec::new())
            }
        })
    }

    /// After a fetch whose contents are stored: tells the other devices, sealed, up to which
    /// moment this one holds each author's items (and their files' bytes), when that moved.
    async fn send_receipt<H: MailboxHost>(&mut self, host: &mut H, url: &str) {
        if host.unsaved() {
            return;
        }
        let stored = host.stored_through();
        // Only when something moved: a receipt is one more entry in the mailbox.
        let digest = delivery::receipt_digest(&stored);
        if stored.is_empty() || digest == self.receipt {
            return;
        }
        let token = self.auth_token();
        let receipt = MailboxPayload::Receipt { stored };
        if self
            .post_message(host, url, &token, &receipt, false)
            .await
            .is_some()
        {
            self.receipt = digest;
            let _ = host.save_local(move |s| s.mailbox.receipt = digest).await;
        }
    }

    /// Saves this device's newest upload not read back yet: after a restart it still shows a
    /// server restored from an earlier copy.
    pub async fn save_last_post<H: MailboxHost>(&mut self, host: &mut H) {
        let post = self.inbox.as_ref().and_then(Inbox::last_post);
        if host.local().mailbox.last_post != post {
            let _ = host.save_local(move |s| s.mailbox.last_post = post).await;
        }
    }

    /// Saves what the mailbox has from here (heads, uploads for delivery, files).
    pub async fn save_uploads<H: MailboxHost>(&mut self, host: &mut H) {
        let mut saved = MailboxState::default();
        self.upload.save_into(&mut saved);
        let _ = host
            .save_local(move |s| {
                s.mailbox.heads = saved.heads.clone();
                s.mailbox.uploads = saved.uploads.clone();
                s.mailbox.files = saved.files.clone();
                s.mailbox.carried = saved.carried;
            })
            .await;
    }

    /// Seals one message into entries under a fresh message id (`None`: larger than one
    /// message may be).
    fn seal<H: MailboxHost>(&self, host: &mut H, payload: &MailboxPayload) -> Option<Vec<Vec<u8>>> {
        seal_payload(&self.keys, &self.room, self.me, host.msg_id(), payload).ok()
    }

    /// Seals and posts one message; the server's numbers for its entries, or `None` if any
    /// entry was refused (the caller tries again at a later visit).
    async fn post_message<H: MailboxHost>(
        &mut self,
        host: &mut H,
        url: &str,
        token: &str,
        payload: &MailboxPayload,
        hold: bool,
    ) -> Option<Vec<u64>> {
        let entries = self.seal(host, payload)?;
        let mut seqs = Vec::with_capacity(entries.len());
        for entry in entries {
            seqs.push(self.post_entry(host, url, token, &entry, hold).await?);
        }
        Some(seqs)
    }

    /// Posts one sealed entry to the mailbox at `url` with the bearer key `token` (the
    /// outbox's records name theirs); its number, or `None` if it did not get there (a
    /// refusal is news).
    pub async fn post_entry<H: MailboxHost>(
        &mut self,
        host: &mut H,
        url: &str,
        token: &str,
        entry: &[u8],
        hold: bool,
    ) -> Option<u64> {
        let url = format!(
            "{url}?device={}{}",
            self.tag(),
            if hold { "&hold=1" } else { "" }
        );
        let answer = host
            .request(Request {
                method: Method::Post,
                url,
                token: Zeroizing::new(token.to_owned()),
                body: Some(entry.to_vec()),
                json: false,
            })
            .await;
        match answer {
            Ok((200 | 201, body)) => {
                let answer = serde_json::from_slice::<serde_json::Value>(&body).ok()?;
                let seq = answer["seq"].as_u64()?;
                // A repeated entry (the service worker or a keepalive posted it first) keeps
                // its old number; only a *new* entry numbered like one read before is news.
                let duplicate = answer["duplicate"].as_bool().unwrap_or(false);
                if !duplicate && seq <= self.cursor().read() {
                    // The server lost entries (restored from an older copy): start over at the
                    // next visit.
                    self.server_forgot = true;
                }
                if let Some(inbox) = self.inbox.as_mut() {
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
                host.news(News::UploadRefused(why));
                None
            }
            Err(_) => None,
        }
    }

    /// Plans the next history upload (a delta, or a snapshot when one is due) unless one is
    /// in progress, posts a few of its entries, declares its base; then file chunks, after the
    /// grace period.
    async fn upload_history<H: MailboxHost>(&mut self, host: &mut H, url: &str, room: RoomView) {
        if !self.upload.uploading_history() && host.outbox_pending() {
            // The outbox posts new history at once; a snapshot and file chunks wait until
            // it is empty.
            return;
        }
        let covers = self.cursor().base_covers();
        let carried = host.replica().latest_ms().max(host.now_ms());
        let msg_id = host.msg_id();
        let (keys, room_id, me) = (&self.keys, &self.room, self.me);
        let seal = |p: &MailboxPayload| seal_payload(keys, room_id, me, msg_id, p).ok();
        let planned =
            self.upload
                .plan_history(host.replica().doc_mut(), room, covers, carried, seal);
        if planned {
            let token = self.auth_token();
            for _ in 0..HISTORY_ENTRIES_PER_VISIT {
                let Some(entry) = self.upload.next_history_entry() else {
                    break;
                };
                match self.post_entry(host, url, &token, &entry, false).await {
                    Some(seq) => self.upload.posted(seq),
                    None => {
                        self.upload.not_posted(entry);
                        return;
                    }
                }
            }
            let Some(done) = self.upload.finish_history() else {
                self.come_back_soon();
                return;
            };
            if let Some(BaseDeclaration { from, to, covers }) = done.base {
                let base = serde_json::json!({ "from": from, "to": to, "covers": covers });
                // A refused base only means the entries stay until a later one is accepted.
                let _ = self.post_json(host, &format!("{url}/base"), &base).await;
            }
            self.save_uploads(host).await;
        }
        // File chunks only after the quiet period: a reload elsewhere is no reason to upload
        // a big file (history never waits).
        if host.now_ms().saturating_sub(self.last_peer) >= GRACE_MS {
            self.upload_files(host, url).await;
        }
    }

    /// Uploads a few chunks of the files written here that the mailbox lacks (the
    /// [`Uploader`] decides which and how far).
    async fn upload_files<H: MailboxHost>(&mut self, host: &mut H, url: &str) {
        let mine = host.replica().history().files_by(self.me);
        let stored = host.files_stored();
        let todo = self.upload.files_to_upload(&mine, stored);
        let token = self.auth_token();
        for root in todo {
            let Ok(Some(bytes)) = host.store().get(&manifest_key(&root)).await else {
                continue;
            };
            let Ok(manifest) = Manifest::decode(&root, &bytes) else {
                continue;
            };
            let chunks = manifest.chunk_count();
            loop {
                let step = self.upload.file_step(root, chunks);
                let payload = match step {
                    FileStep::Done => break,
                    FileStep::Later => {
                        self.come_back_soon();
                        return;
                    }
                    FileStep::Manifest(root) => MailboxPayload::Manifest {
                        root,
                        bytes: bytes.clone(),
                    },
                    FileStep::Chunk(root, index) => {
                        let Ok(Some(data)) = host.store().get(&chunk_key(&root, index)).await
                        else {
                            return;
                        };
                        MailboxPayload::Chunk { root, index, data }
                    }
                };
                if self
                    .post_message(host, url, &token, &payload, true)
                    .await
                    .is_none()
                {
                    return;
                }
                if self.upload.file_posted(step, chunks) {
                    self.save_uploads(host).await;
                    break;
                }
            }
        }
    }
}

/// Saves the delivery marks in memory, merged into what is stored (best effort, like "last
/// seen": a lost mark is proved again by the next receipt or sync).
pub async fn save_delivered<H: MailboxHost>(host: &mut H) {
    let delivered = host.local().delivered.clone();
    let _ = host
        .save_local(move |s| {
            for (d, at) in &delivered {
                let to = s.delivered.entry(*d).or_insert(0);
                *to = (*to).max(*at);
            }
        })
        .await;
}
