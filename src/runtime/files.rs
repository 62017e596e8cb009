//! Files in the runtime: reading a picked file in 256 KiB slices, the core's transfer engine
//! over the bulk data channel, IndexedDB chunks, saving and previews.
//!
//! Sending is a small job the main loop advances a few chunks per tick (a large file never
//! blocks sync, and is never held whole in memory): pass 1 hashes every slice into the
//! manifest (the root hash is the file's id), then the item goes into the history at once,
//! then pass 2 stores manifest and chunks and the file is served. Receiving is pull-based
//! (`ferry_core::Transfers`): every verified chunk is stored as it arrives; the stored chunk
//! keys are the have-set, so a reload or browser restart resumes where it stopped.

use super::{Runtime, now_ms};
use crate::view::{self, FileState, FileView};
use ferry_core::blobs::{blob_prefix, blobs_prefix, chunk_key, have_from_keys, manifest_key};
use ferry_core::device::{SendError, SendJob, SendStep};
use ferry_core::{
    BlobEffect, BlobId, BlobMessage, DeviceId, Effect, FileMeta, Have, Manifest, PeerKey, Store,
};
use leptos::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Files up to this size get an in-page preview (images, videos).
const PREVIEW_MAX: u64 = 16 * 1024 * 1024;
/// How often the engine's timers run and the view is refreshed (ms).
const FILE_TICK_MS: f64 = 250.0;

/// A file being sent from this device: the core's job (what to read, hash, store and serve
/// when), the picked file it reads from, and the lock it holds.
struct Sending {
    file: web_sys::File,
    job: SendJob,
    /// Releases the Web Lock that tells sibling tabs this file is being sent (pass 2).
    lock: Option<js_sys::Function>,
    /// A file from a backup being imported: its item is already in the history (merged from
    /// the backup), so none is written, and its bytes must hash to this root.
    import: Option<BlobId>,
}

/// The Web Lock a tab holds while it stores a file it sends.
fn send_lock_name(root: &BlobId) -> String {
    format!("ferry-send/{root}")
}

/// Holds the lock `name` until the returned function is called (or the tab goes away).
fn hold_lock(name: &str) -> Option<js_sys::Function> {
    let (locks, request) = lock_request()?;
    // `Some(resolve)` once granted; `released` when the holder let go before the grant came.
    let state = std::rc::Rc::new(std::cell::RefCell::new((None::<js_sys::Function>, false)));
    let keep = state.clone();
    let granted = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
        js_sys::Promise::new(&mut |resolve, _| {
            let mut s = keep.borrow_mut();
            if s.1 {
                let _ = resolve.call0(&JsValue::NULL);
            } else {
                s.0 = Some(resolve);
            }
        })
        .into()
    });
    request.call2(&locks, &name.into(), &granted).ok()?;
    let release = Closure::once_into_js(move || {
        let mut s = state.borrow_mut();
        s.1 = true;
        if let Some(resolve) = s.0.take() {
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    release.dyn_into::<js_sys::Function>().ok()
}

/// Whether no tab of this browser holds the lock `name`; `false` without Web Locks (then
/// nothing is assumed abandoned).
async fn lock_free(name: &str) -> bool {
    let Some((locks, request)) = lock_request() else {
        return false;
    };
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE);
    let probe =
        Closure::once_into_js(|lock: JsValue| -> JsValue { JsValue::from_bool(!lock.is_null()) });
    let Ok(promise) = request.call3(&locks, &name.into(), &options, &probe) else {
        return false;
    };
    let Ok(promise) = promise.dyn_into::<js_sys::Promise>() else {
        return false;
    };
    JsFuture::from(promise)
        .await
        .is_ok_and(|v| v.as_bool() == Some(true))
}

/// `navigator.locks` and its `request` method (Web Locks: shared by this browser's tabs);
/// `None` where the browser has none.
pub(super) fn lock_request() -> Option<(JsValue, js_sys::Function)> {
    let nav = web_sys::window()?.navigator();
    let locks = js_sys::Reflect::get(&nav, &"locks".into())
        .ok()
        .filter(|l| !l.is_undefined())?;
    let request = js_sys::Reflect::get(&locks, &"request".into())
        .ok()?
        .dyn_into::<js_sys::Function>()
        .ok()?;
    Some((locks, request))
}

/// What went wrong sending, storing or saving a file here (shown to the person).
#[derive(Debug, thiserror::Error)]
pub(super) enum FileError {
    /// The browser could not read the picked file (moved, deleted, permission gone).
    #[error("the file could not be read ({0})")]
    Read(String),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Storage(#[from] ferry_core::StoreError),
    #[error(transparent)]
    History(#[from] ferry_core::ReplicaError),
    #[error(transparent)]
    Manifest(#[from] ferry_core::BlobError),
    #[error("this file is not on this device")]
    NotHere,
    #[error("a part of this file is missing on this device")]
    PartMissing,
    #[error("the browser could not build the file")]
    Assemble,
}

/// Chunk storage finished beside the loop (see `run_blob_effects`).
enum IoDone {
    Stored(Vec<(BlobId, u32)>, Result<(), ferry_core::StoreError>),
    Read(Vec<(PeerKey, BlobId, u32)>, Vec<Option<Vec<u8>>>),
}

/// The runtime's file state.
pub(super) struct Files {
    /// Chunk reads and writes run as their own tasks, so the loop keeps receiving, opening
    /// and verifying while IndexedDB works; they report here (and wake the loop).
    io_tx: futures::channel::mpsc::UnboundedSender<IoDone>,
    io_rx: futures::channel::mpsc::UnboundedReceiver<IoDone>,
    /// Chunk reads and writes in flight.
    io_pending: usize,
    jobs: VecDeque<Sending>,
    /// Blob messages received since the last pump.
    inbox: Vec<(PeerKey, BlobMessage)>,
    /// Per-root view state; pushed to the view when dirty, at most every tick.
    views: BTreeMap<BlobId, FileView>,
    /// Last progress sample per root, for the speed: (time ms, bytes).
    samples: BTreeMap<BlobId, (f64, u64)>,
    /// The same for bytes sent.
    sent_samples: BTreeMap<BlobId, (f64, u64)>,
    dirty: bool,
    last_tick: f64,
    last_check: f64,
}

impl Files {
    pub(super) fn new() -> Self {
        let (io_tx, io_rx) = futures::channel::mpsc::unbounded();
        Files {
            io_tx,
            io_rx,
            io_pending: 0,
            jobs: VecDeque::new(),
            inbox: Vec::new(),
            views: BTreeMap::new(),
            samples: BTreeMap::new(),
            sent_samples: BTreeMap::new(),
            dirty: false,
            last_tick: 0.0,
            last_check: 0.0,
        }
    }

    /// A blob message from an authenticated peer (from `Effect::Blob`).
    pub(super) fn receive(&mut self, peer: PeerKey, msg: BlobMessage) {
        self.inbox.push((peer, msg));
    }

    fn view_mut(&mut self, root: BlobId) -> &mut FileView {
        self.dirty = true;
        self.views.entry(root).or_default()
    }
}

pub(super) async fn read_slice(
    file: &web_sys::File,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, FileError> {
    let blob = file
        .slice_with_f64_and_f64(start as f64, end as f64)
        .map_err(|e| FileError::Read(format!("{e:?}")))?;
    let buf = JsFuture::from(blob.array_buffer())
        .await
        .map_err(|e| FileError::Read(format!("{e:?}")))?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// Free space the browser grants this origin, if it says.
async fn free_bytes() -> Option<(f64, f64)> {
    let storage = web_sys::window()?.navigator().storage();
    let est: web_sys::StorageEstimate = JsFuture::from(storage.estimate().ok()?)
        .await
        .ok()?
        .unchecked_into();
    Some((est.get_usage()?, est.get_quota()?))
}

/// Hands an object URL to the browser's downloads as `name`, and releases the URL a while
/// after (the download reads it from the start).
pub(super) fn download(url: String, name: &str) {
    let anchor = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.create_element("a").ok())
        .and_then(|a| a.dyn_into::<web_sys::HtmlAnchorElement>().ok());
    if let Some(a) = anchor {
        a.set_href(&url);
        a.set_download(name);
        a.click();
    }
    wasm_bindgen_futures::spawn_local(async move {
        gloo_timers::future::TimeoutFuture::new(120_000).await;
        let _ = web_sys::Url::revoke_object_url(&url);
    });
}

fn object_url(parts: &js_sys::Array, mime: &str) -> Option<String> {
    let bag = web_sys::BlobPropertyBag::new();
    bag.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(parts, &bag).ok()?;
    web_sys::Url::create_object_url_with_blob(&blob).ok()
}

impl Runtime {
    /// At start: serve what is stored, resume what is partial, fetch what is missing, and
    /// free files whose items were deleted while this device was away.
    pub(super) async fn boot_files(&mut self) {
        self.engine.reset_files();
        let keys = self.store.keys(&blobs_prefix()).await.unwrap_or_default();
        let roots: BTreeSet<BlobId> = keys
            .iter()
            .filter_map(ferry_core::blobs::parse_blob_key)
            .collect();
        let live = self.engine.replica().history().live_blobs();
        self.engine.files_mut().history_changed(live);
        // Only files whose items were deleted are freed: bytes no item mentions are kept (the
        // item may be in a change that did not load, or not be saved yet by a sibling tab),
        // and after a load that skipped damaged chunks nothing is freed at all.
        let deleted = self.engine.replica_mut().doc_mut().deleted_blobs();
        for root in ferry_core::device::files::to_free(&roots, &deleted, self.load_skipped_chunks) {
            let _ = self.store.delete_prefix(&blob_prefix(&root)).await;
        }
        for root in self.engine.files_mut().live().clone() {
            self.start_file(root, &keys).await;
        }
        self.withdraw_interrupted_sends().await;
        self.refresh_storage().await;
    }

    /// Serves a stored file, or resumes / starts its download unless stopped here.
    async fn start_file(&mut self, root: BlobId, keys: &[ferry_core::StoreKey]) {
        let manifest = match self.store.get(&manifest_key(&root)).await {
            Ok(Some(bytes)) => Manifest::decode(&root, &bytes).ok().map(|m| (m, bytes)),
            _ => None,
        };
        let Some((manifest, bytes)) = manifest else {
            if !self.engine.files_mut().is_stopped(&root) {
                self.files.view_mut(root).state = FileState::Waiting;
                let eff = self.engine.files_mut().engine.want(root, now_ms());
                self.run_blob_effects(eff).await;
            } else {
                self.files.view_mut(root).state = FileState::Stopped;
            }
            return;
        };
        let have = have_from_keys(&root, keys);
        let have_bytes: u64 = have
            .iter()
            .filter_map(|i| manifest.chunk_len(*i))
            .map(|n| n as u64)
            .sum();
        if have.len() as u32 == manifest.chunk_count() {
            self.serve(root, &bytes, Have::All);
            self.file_stored(root, manifest.size).await;
            return;
        }
        self.serve(root, &bytes, Have::Chunks(have.clone()));
        let stopped = self.engine.files_mut().is_stopped(&root);
        let v = self.files.view_mut(root);
        v.have = have_bytes;
        if stopped {
            v.state = FileState::Stopped;
            return;
        }
        v.state = FileState::Waiting;
        if let Some(reason) = self.quota_problem(manifest.size - have_bytes).await {
            self.files.view_mut(root).state = FileState::Failed(reason);
            return;
        }
        match self
            .engine
            .files_mut()
            .engine
            .resume(root, &bytes, &have, now_ms())
        {
            Ok(eff) => self.run_blob_effects(eff).await,
            Err(e) => self.files.view_mut(root).state = FileState::Failed(e.to_string()),
        }
    }

    /// Files stored whole on this device and still in the history.
    pub(super) fn files_stored(&self) -> Vec<BlobId> {
        self.engine.files().stored_files()
    }

    /// Offers a (partly) stored file to other devices.
    fn serve(&mut self, root: BlobId, manifest: &[u8], have: Have) {
        if let Err(e) = self.engine.files_mut().engine.serve(root, manifest, have) {
            web_sys::console::warn_1(&format!("cannot serve {root}: {e}").into());
        }
    }

    /// The history's metadata of a file (name, size, type).
    fn file_meta(&self, root: BlobId) -> Option<FileMeta> {
        self.engine
            .replica()
            .history()
            .file_items()
            .filter_map(|i| i.file.as_ref())
            .find(|f| f.root == root)
            .cloned()
    }

    /// Every chunk is here: say so, and make a preview of small images and videos.
    async fn file_stored(&mut self, root: BlobId, size: u64) {
        self.engine.files_mut().whole(root);
        let mime = self.file_meta(root).map(|f| f.mime).unwrap_or_default();
        let previewable = (mime.starts_with("image/") || mime.starts_with("video/"))
            && size <= PREVIEW_MAX
            && self
                .files
                .views
                .get(&root)
                .is_none_or(|v| v.preview.is_none());
        let preview = if previewable {
            self.assemble(root, &mime).await.ok()
        } else {
            None
        };
        let v = self.files.view_mut(root);
        v.state = FileState::Stored;
        v.have = size;
        v.speed = 0.0;
        if preview.is_some() {
            v.preview = preview;
        }
    }

    /// A `blob:` URL of a stored file, composed chunk by chunk from storage (the browser keeps
    /// blob data outside the page's heap and pages it to disk when large).
    async fn assemble(&mut self, root: BlobId, mime: &str) -> Result<String, FileError> {
        let bytes = self
            .store
            .get(&manifest_key(&root))
            .await?
            .ok_or(FileError::NotHere)?;
        let manifest = Manifest::decode(&root, &bytes)?;
        let mut parts = js_sys::Array::new();
        let mut composed: Option<web_sys::Blob> = None;
        for i in 0..manifest.chunk_count() {
            let chunk = self
                .store
                .get_js(&chunk_key(&root, i))
                .await?
                .ok_or(FileError::PartMissing)?;
            parts.push(&chunk);
            // Fold every 64 chunks (16 MiB) into one Blob so the page never holds the
            // whole file as arrays.
            if parts.length() >= 64 {
                if let Some(b) = composed.take() {
                    parts.unshift(&b);
                }
                composed = web_sys::Blob::new_with_u8_array_sequence(&parts).ok();
                parts = js_sys::Array::new();
            }
        }
        if let Some(b) = composed {
            parts.unshift(&b);
        }
        object_url(&parts, mime).ok_or(FileError::Assemble)
    }

    /// Saves a stored file with its original name (a download the browser asks about).
    pub(super) async fn save_file(&mut self, root_hex: &str) {
        let Ok(root) = root_hex.parse::<BlobId>() else {
            return;
        };
        let Some(meta) = self.file_meta(root) else {
            return;
        };
        let url = match self.assemble(root, &meta.mime).await {
            Ok(url) => url,
            Err(e) => {
                self.view
                    .error
                    .set(Some(format!("Cannot save {}: {e}", meta.name)));
                return;
            }
        };
        download(url, &meta.name);
    }

    /// A clear reason if `needed` bytes would not fit in this origin's storage quota.
    async fn quota_problem(&self, needed: u64) -> Option<String> {
        let (usage, quota) = free_bytes().await?;
        let free = (quota - usage).max(0.0) as u64;
        (needed > free).then(|| {
            format!(
                "Not enough storage on this device: {} needed, {} free. Free some space and \
                 try again.",
                view::format_size(needed),
                view::format_size(free)
            )
        })
    }

    /// Queues files picked, dropped or pasted for sending.
    pub(super) async fn send_files(&mut self, files: Vec<web_sys::File>) {
        for file in files {
            let size = file.size() as u64;
            let job = match SendJob::new(size) {
                Ok(job) => job,
                Err(SendError::TooLarge { max }) => {
                    self.view.error.set(Some(format!(
                        "{} is too large: Ferry sends files up to {}.",
                        file.name(),
                        view::format_size(max)
                    )));
                    continue;
                }
                Err(e) => {
                    self.view
                        .error
                        .set(Some(format!("{} was not sent: {e}", file.name())));
                    continue;
                }
            };
            if let Some(reason) = self.quota_problem(size).await {
                self.view
                    .error
                    .set(Some(format!("{} was not sent. {reason}", file.name())));
                continue;
            }
            self.files.jobs.push_back(Sending {
                file,
                job,
                lock: None,
                import: None,
            });
        }
    }

    /// Stores the bytes of a file an imported backup holds (`file` is a slice of the backup),
    /// which must hash to `root`; its item came with the backup's history.
    pub(super) fn import_file(&mut self, file: web_sys::File, root: BlobId) -> Result<(), String> {
        let job = SendJob::new(file.size() as u64).map_err(|e| e.to_string())?;
        self.files.jobs.push_back(Sending {
            file,
            job,
            lock: None,
            import: Some(root),
        });
        Ok(())
    }

    /// Advances the current sending job by a few chunks.
    async fn advance_send(&mut self) {
        let Some(mut job) = self.files.jobs.pop_front() else {
            return;
        };
        let done = match self.step_send(&mut job).await {
            Ok(()) => job.job.is_done(),
            Err(e) if job.import.is_some() => {
                // An imported file's item came from elsewhere: it stays (another device, or
                // a sound backup, can still bring the bytes).
                self.view
                    .error
                    .set(Some(format!("{} was not imported: {e}", job.file.name())));
                true
            }
            Err(e) => {
                // The item may be in the history already (it appears before the bytes are
                // stored): without its bytes every device would wait for it for ever, so it
                // goes, and the person is told.
                let removed = match job.job.root() {
                    Some(root) => {
                        let removed = self.withdraw_file(root).await;
                        self.end_send(&mut job, root).await;
                        removed
                    }
                    None => false,
                };
                self.view.error.set(Some(if removed {
                    format!(
                        "{} was not sent: {e}. It was taken out of your history; try again.",
                        job.file.name()
                    )
                } else {
                    format!("{} was not sent: {e}", job.file.name())
                }));
                true
            }
        };
        if !done {
            self.files.jobs.push_front(job);
        }
    }

    /// Per author, the latest moment up to which this device holds every item it wrote, with
    /// its file's bytes (files the person stopped here do not hold it back): what this device's
    /// mailbox receipt says.
    pub(super) fn stored_through(&self) -> Vec<(DeviceId, u64)> {
        self.engine
            .files()
            .stored_through(self.engine.replica().history().items(), self.device)
    }

    /// Deletes this device's items of a file whose bytes could not be stored here (they exist
    /// nowhere else). `true` if an item was deleted.
    async fn withdraw_file(&mut self, root: BlobId) -> bool {
        let ids: Vec<_> = self
            .engine
            .replica()
            .items()
            .into_iter()
            .filter(|i| i.author == self.device && i.file.as_ref().is_some_and(|f| f.root == root))
            .map(|i| i.id)
            .collect();
        let mut removed = false;
        for id in ids {
            if let Ok(effects) = self.engine.replica_mut().delete_item(id, now_ms()) {
                self.apply(effects).await;
                removed = true;
            }
        }
        removed
    }

    /// One turn of a send: read the slices the job asks for and do what it says.
    async fn step_send(&mut self, s: &mut Sending) -> Result<(), FileError> {
        let mut slices = Vec::new();
        for range in s.job.next_reads() {
            slices.push(read_slice(&s.file, range.start, range.end).await?);
        }
        match s.job.read(slices)? {
            SendStep::Hashing => {}
            SendStep::Hashed(manifest) if s.import.is_some() => {
                let root = manifest.root();
                if s.import != Some(root) {
                    return Err(FileError::Read(format!(
                        "{} in the backup is damaged (its bytes do not match its name)",
                        s.file.name()
                    )));
                }
                // Nothing noted for withdrawal: an import cut short must never take away an
                // item that came from elsewhere; the next import (or a peer) completes it.
                self.store
                    .put(&manifest_key(&root), &manifest.encode())
                    .await?;
                self.engine.files_mut().writing(root);
                self.files.view_mut(root).state = FileState::Downloading;
            }
            SendStep::Hashed(manifest) => {
                let root = manifest.root();
                // The manifest is stored before the item exists (no item may wait for a
                // manifest that failed to store), and the send is noted with a lock held for
                // it: a send the tab never finishes (closed, killed) is found at the next
                // start.
                self.store
                    .put(&manifest_key(&root), &manifest.encode())
                    .await?;
                self.save_local(move |s| {
                    s.sending.insert(root);
                })
                .await?;
                s.lock = hold_lock(&send_lock_name(&root));
                // The item goes into the history at once; the bytes follow.
                let meta = FileMeta {
                    root,
                    name: s.file.name(),
                    size: s.job.size(),
                    mime: s.file.type_(),
                };
                let (_, effects) = self.engine.replica_mut().add_file(&meta, now_ms())?;
                self.engine.files_mut().writing(root);
                self.files.view_mut(root).state = FileState::Downloading;
                self.apply(effects).await;
            }
            SendStep::Store(entries) => {
                let Some(manifest) = s.job.manifest().cloned() else {
                    return Ok(());
                };
                let root = manifest.root();
                // One transaction per turn's chunks.
                if !entries.is_empty() {
                    self.store.put_many(&entries).await?;
                }
                let stored: u64 = entries.iter().map(|(_, d)| d.len() as u64).sum();
                self.files.view_mut(root).have += stored;
                match s.job.stored() {
                    Some(Have::All) => {
                        self.serve(root, &manifest.encode(), Have::All);
                        self.file_stored(root, s.job.size()).await;
                        self.end_send(s, root).await;
                    }
                    // Other devices start on what is stored while the rest is being stored.
                    Some(part) => self.serve(root, &manifest.encode(), part),
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// A send is over (stored whole, or withdrawn): no longer noted, its lock released.
    async fn end_send(&mut self, job: &mut Sending, root: BlobId) {
        let _ = self
            .save_local(move |s| {
                s.sending.remove(&root);
            })
            .await;
        if let Some(release) = job.lock.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }

    /// Sends this device began and no tab finished (the tab was closed or killed while
    /// storing the bytes): the item waits on every device for bytes that exist nowhere, so it
    /// goes, and the person is told to send the file again.
    async fn withdraw_interrupted_sends(&mut self) {
        for root in self.engine.local().sending.clone() {
            if self.engine.files_mut().is_stored(&root) {
                let _ = self
                    .save_local(move |s| {
                        s.sending.remove(&root);
                    })
                    .await;
                continue;
            }
            if !lock_free(&send_lock_name(&root)).await {
                continue; // A sibling tab is still sending it.
            }
            let name = self.file_meta(root).map(|f| f.name);
            self.withdraw_file(root).await;
            let _ = self
                .save_local(move |s| {
                    s.sending.remove(&root);
                })
                .await;
            if let Some(name) = name {
                self.view.error.set(Some(format!(
                    "{name} was not sent completely: Ferry was closed while storing it. It was \
                     taken out of your history; send it again."
                )));
            }
        }
    }

    /// Local file work is queued (hashing or storing a file being sent): keep the loop turning.
    /// Transfers need no such flag: their messages wake the loop.
    pub(super) fn files_busy(&self) -> bool {
        !self.files.jobs.is_empty() || !self.files.inbox.is_empty() || self.files.io_pending > 0
    }

    /// One turn of file work: send jobs, received messages, timers, view.
    pub(super) async fn pump_files(&mut self) {
        self.advance_send().await;
        // All at once, so the chunks that arrived together are stored (or read) together.
        let inbox = std::mem::take(&mut self.files.inbox);
        let mut effects = Vec::new();
        effects.extend(self.engine.files_mut().announcements());
        for (peer, msg) in inbox {
            effects.extend(
                self.engine
                    .files_mut()
                    .engine
                    .on_message(&peer, msg, now_ms()),
            );
        }
        while let Ok(done) = self.files.io_rx.try_recv() {
            self.files.io_pending = self.files.io_pending.saturating_sub(1);
            match done {
                IoDone::Stored(ids, Ok(())) => {
                    for (root, index) in ids {
                        effects.extend(self.engine.files_mut().engine.stored(root, index));
                    }
                }
                IoDone::Stored(ids, Err(e)) => {
                    let roots: BTreeSet<BlobId> = ids.iter().map(|(r, _)| *r).collect();
                    for root in roots {
                        effects.extend(
                            self.engine
                                .files_mut()
                                .engine
                                .store_failed(root, &e.to_string()),
                        );
                    }
                }
                IoDone::Read(wanted, read) => {
                    for ((peer, root, index), bytes) in wanted.into_iter().zip(read) {
                        effects.extend(
                            self.engine
                                .files_mut()
                                .engine
                                .chunk_read(&peer, root, index, bytes),
                        );
                    }
                }
            }
        }
        self.run_blob_effects(effects).await;
        let now = js_sys::Date::now();
        if now - self.files.last_tick >= FILE_TICK_MS {
            self.files.last_tick = now;
            let eff = self.engine.files_mut().engine.tick(now as u64);
            self.run_blob_effects(eff).await;
            self.push_file_views(now);
        }
        // Another tab of this browser may own the WebRTC connection (or be storing a file it
        // sends): notice files that became complete in shared storage.
        if now - self.files.last_check >= 2_000.0 {
            self.files.last_check = now;
            self.recheck_files().await;
            self.refresh_storage().await;
        }
    }

    async fn recheck_files(&mut self) {
        for root in self.engine.files_mut().incomplete() {
            let keys = self
                .store
                .keys(&blob_prefix(&root))
                .await
                .unwrap_or_default();
            let Ok(Some(bytes)) = self.store.get(&manifest_key(&root)).await else {
                continue;
            };
            let Ok(m) = Manifest::decode(&root, &bytes) else {
                continue;
            };
            if have_from_keys(&root, &keys).len() as u32 == m.chunk_count()
                && !self.files.jobs.iter().any(|j| j.job.root() == Some(root))
            {
                self.engine.files_mut().engine.cancel(root);
                self.serve(root, &bytes, Have::All);
                self.file_stored(root, m.size).await;
            }
        }
    }

    async fn refresh_storage(&mut self) {
        if let Some((usage, quota)) = free_bytes().await {
            // The other devices warn when this one's browser may clear the data.
            if let Some(kept) = self.view.persisted.get_untracked() {
                match self
                    .engine
                    .replica_mut()
                    .publish_storage(kept, usage as u64, now_ms())
                {
                    Ok(effects) if !effects.is_empty() => self.apply(effects).await,
                    _ => {}
                }
            }
            let text = format!(
                "Storage used: {} of {}",
                view::format_size(usage as u64),
                view::format_size(quota as u64)
            );
            if self.view.storage.get_untracked().as_deref() != Some(&text) {
                self.view.storage.set(Some(text));
            }
        }
    }

    fn push_file_views(&mut self, now: f64) {
        for (root, v) in &mut self.files.views {
            let (t0, s0) = *self
                .files
                .sent_samples
                .entry(*root)
                .or_insert((now, v.sent));
            if now - t0 >= 1_000.0 {
                let speed = (v.sent.saturating_sub(s0)) as f64 * 1000.0 / (now - t0);
                if speed != v.sent_speed {
                    v.sent_speed = speed;
                    self.files.dirty = true;
                }
                self.files.sent_samples.insert(*root, (now, v.sent));
            }
            if v.state == FileState::Downloading {
                let (t0, b0) = *self.files.samples.entry(*root).or_insert((now, v.have));
                if now - t0 >= 1_000.0 {
                    v.speed = (v.have.saturating_sub(b0)) as f64 * 1000.0 / (now - t0);
                    self.files.samples.insert(*root, (now, v.have));
                    self.files.dirty = true;
                }
            }
        }
        let stats = self.engine.files_mut().engine.stats().clone();
        if self.view.chunk_requests.get_untracked() != stats.chunk_requests {
            self.view.chunk_requests.set(stats.chunk_requests);
        }
        if self.view.chunks_verified.get_untracked() != stats.chunks_verified {
            self.view.chunks_verified.set(stats.chunks_verified);
        }
        if std::mem::take(&mut self.files.dirty) {
            self.view.files.set(
                self.files
                    .views
                    .iter()
                    .map(|(r, v)| (r.to_string(), v.clone()))
                    .collect(),
            );
        }
    }

    /// Performs the engine's effects (and those they lead to).
    pub(super) async fn run_blob_effects(&mut self, effects: Vec<BlobEffect>) {
        let mut queue: VecDeque<BlobEffect> = effects.into();
        while let Some(e) = queue.pop_front() {
            match e {
                BlobEffect::Send { peer, msg } => {
                    if let ChunkOut::Chunk(root, n) = chunk_out(&msg) {
                        self.files.view_mut(root).sent += n;
                    }
                    match self.engine.replica_mut().send_blob(&peer, &msg) {
                        Ok(effects) => {
                            for e in effects {
                                if let Effect::SendBulk { peer, frame } = e {
                                    self.send_bulk(&peer, frame);
                                }
                            }
                        }
                        Err(err) => web_sys::console::warn_1(&err.to_string().into()),
                    }
                }
                BlobEffect::ReadChunk { peer, root, index } => {
                    // Reads queued together share one transaction, beside the loop.
                    let mut wanted = vec![(peer, root, index)];
                    while let Some(BlobEffect::ReadChunk { .. }) = queue.front() {
                        if let Some(BlobEffect::ReadChunk { peer, root, index }) = queue.pop_front()
                        {
                            wanted.push((peer, root, index));
                        }
                    }
                    let keys: Vec<_> = wanted.iter().map(|(_, r, i)| chunk_key(r, *i)).collect();
                    let (store, tx) = (self.store.clone(), self.files.io_tx.clone());
                    self.files.io_pending += 1;
                    wasm_bindgen_futures::spawn_local(async move {
                        let mut read = store.get_many(&keys).await.unwrap_or_default();
                        read.resize(wanted.len(), None);
                        let _ = tx.unbounded_send(IoDone::Read(wanted, read));
                        crate::wake::wake();
                    });
                }
                BlobEffect::StoreManifest { root, bytes } => {
                    if let Err(e) = self.store.put(&manifest_key(&root), &bytes).await {
                        queue.extend(
                            self.engine
                                .files_mut()
                                .engine
                                .store_failed(root, &e.to_string()),
                        );
                    } else if let Ok(m) = Manifest::decode(&root, &bytes)
                        && let Some(reason) = self.quota_problem(m.size).await
                    {
                        queue.extend(self.engine.files_mut().engine.store_failed(root, &reason));
                    }
                }
                BlobEffect::StoreChunk { root, index, data } => {
                    // Chunks that arrived together are written in one transaction, beside the
                    // loop; the engine hears "stored" only once it committed.
                    let mut ids = vec![(root, index)];
                    let mut entries = vec![(chunk_key(&root, index), data)];
                    while let Some(BlobEffect::StoreChunk { .. }) = queue.front() {
                        if let Some(BlobEffect::StoreChunk { root, index, data }) =
                            queue.pop_front()
                        {
                            ids.push((root, index));
                            entries.push((chunk_key(&root, index), data));
                        }
                    }
                    let (store, tx) = (self.store.clone(), self.files.io_tx.clone());
                    self.files.io_pending += 1;
                    wasm_bindgen_futures::spawn_local(async move {
                        let result = store.put_many(&entries).await;
                        let _ = tx.unbounded_send(IoDone::Stored(ids, result));
                        crate::wake::wake();
                    });
                }
                BlobEffect::Progress {
                    root, have_bytes, ..
                } => {
                    let v = self.files.view_mut(root);
                    v.have = have_bytes;
                    if v.state != FileState::Stored {
                        v.state = FileState::Downloading;
                    }
                }
                BlobEffect::Complete { root } => {
                    let have = self.files.views.get(&root).map_or(0, |v| v.have);
                    let size = self.file_meta(root).map_or(have, |f| f.size);
                    self.file_stored(root, size).await;
                }
                BlobEffect::Rejected { peer, reason } => {
                    self.view.refused.update(|n| *n += 1);
                    web_sys::console::warn_1(
                        &format!("file data from {peer} refused: {reason}").into(),
                    );
                }
                BlobEffect::Failed { root, reason } => {
                    self.files.view_mut(root).state = FileState::Failed(reason);
                }
                BlobEffect::Corrupt { root, index } => {
                    let _ = self.store.delete(&chunk_key(&root, index)).await;
                }
            }
        }
    }

    pub(super) fn send_bulk(&mut self, peer: &PeerKey, frame: Vec<u8>) {
        self.send_rtc(peer, ferry_core::Lane::Bulk, frame);
    }

    /// A device proved membership over WebRTC: it may hold or want files.
    pub(super) async fn file_peer_up(&mut self, peer: &PeerKey) {
        // Which of the files written here it holds: what "on" it may say of them.
        let mine: Vec<BlobId> = self
            .engine
            .replica()
            .history()
            .files_by(self.device)
            .into_iter()
            .collect();
        let eff = self.engine.files_mut().peer_up(peer, &mine);
        self.run_blob_effects(eff).await;
    }

    /// A device went away: its requests go to others.
    pub(super) async fn file_peer_down(&mut self, peer: &PeerKey) {
        let eff = self.engine.files_mut().peer_down(peer, now_ms());
        self.run_blob_effects(eff).await;
    }

    /// The history changed: fetch new files, free the chunks of deleted ones.
    pub(super) async fn files_changed(&mut self) {
        let live = self.engine.replica().history().live_blobs();
        let change = self.engine.files_mut().history_changed(live);
        for root in change.gone {
            if let Some(url) = self.files.views.remove(&root).and_then(|v| v.preview) {
                let _ = web_sys::Url::revoke_object_url(&url);
            }
            self.files.dirty = true;
            let _ = self.store.delete_prefix(&blob_prefix(&root)).await;
        }
        let sending: Vec<BlobId> = self
            .files
            .jobs
            .iter()
            .filter_map(|j| j.job.root())
            .collect();
        for root in change.new {
            if sending.contains(&root) {
                continue;
            }
            self.start_stored_file(root).await;
        }
    }

    async fn save_stopped(&mut self) {
        let stopped = self.engine.files_mut().stopped().clone();
        let _ = self
            .save_local(move |s| s.files_stopped = stopped.clone())
            .await;
    }

    /// Stops downloading a file on this device (stored chunks stay for a later retry).
    pub(super) async fn cancel_file(&mut self, root_hex: &str) {
        let Ok(root) = root_hex.parse::<BlobId>() else {
            return;
        };
        self.engine.files_mut().stop(root);
        self.files.view_mut(root).state = FileState::Stopped;
        self.save_stopped().await;
    }

    /// Downloads a stopped or failed file again, from where it stopped.
    pub(super) async fn retry_file(&mut self, root_hex: &str) {
        let Ok(root) = root_hex.parse::<BlobId>() else {
            return;
        };
        self.engine.files_mut().unstop(root);
        self.save_stopped().await;
        self.start_stored_file(root).await;
    }

    /// [`Runtime::start_file`] with the file's stored keys read first.
    async fn start_stored_file(&mut self, root: BlobId) {
        let keys = self
            .store
            .keys(&blob_prefix(&root))
            .await
            .unwrap_or_default();
        self.start_file(root, &keys).await;
    }
}

enum ChunkOut {
    Chunk(BlobId, u64),
    Other,
}

fn chunk_out(msg: &BlobMessage) -> ChunkOut {
    match msg {
        BlobMessage::Chunk { root, data, .. } => ChunkOut::Chunk(*root, data.len() as u64),
        _ => ChunkOut::Other,
    }
}
