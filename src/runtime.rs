//! The runtime: owns the replica, storage and network link, performs the core's effects and
//! feeds the view state. One task does all of it, so no state is ever borrowed across an
//! `await` by two tasks at once.

use crate::config::Config;
use crate::net::rtc::RtcLink;
use crate::net::tabs::TabLink;
use crate::store::idb::IdbStore;
use crate::view::{self, DeviceView, Intent, JoinOffer, NetStatus, ViewState};
use ferry_core::device::{
    self, Device, Link, LinkEvent, LocalChange, LocalState, LocalStateError, Origin, RouteError,
    Router, Socket, SocketSeen, coalesce,
};
use ferry_core::persist::DocStore;
use ferry_core::{
    DeviceId, Effect, Lane, PairingLink, PeerKey, Replica, SpaceSecret, Store, StoreError, StoreKey,
};
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use leptos::prelude::*;
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use wasm_bindgen_futures::JsFuture;

/// Name of the IndexedDB database.
pub const DB_NAME: &str = "ferry";
/// How often the loop turns while busy (ms): after an event (data-channel messages, sibling
/// tabs and the person's actions wake it at once, see `crate::wake`), so follow-ups that
/// matchbox reports only when polled (a peer becoming connected) and file work are prompt.
const TICK_MS: u32 = 10;
/// How long the loop stays busy after the last event (ms).
const BUSY_MS: f64 = 1_500.0;
/// How often the loop turns when nothing happens (ms): timers (handshake timeouts, the
/// mailbox, "last seen") need no more.
const IDLE_TICK_MS: u32 = 250;
fn key(segments: &[&str]) -> StoreKey {
    // Only called with the constant, slash-free segments below.
    StoreKey::new(segments).expect("constant storage key")
}

/// Why a pairing link cannot be used (shown after "This pairing link cannot be used: ").
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error(transparent)]
    Link(#[from] ferry_core::PairingError),
    #[error("its connection settings are not usable: {0}")]
    Ice(#[from] crate::config::ConfigError),
}

/// The connection settings a pairing link carries, checked like Settings input.
fn link_ice(link: &PairingLink) -> Result<Option<Vec<crate::config::IceServer>>, LinkError> {
    let Some(json) = &link.ice else {
        return Ok(None);
    };
    let servers: Vec<crate::config::IceServer> =
        serde_json::from_str(json).map_err(|_| ferry_core::PairingError::BadIce)?;
    Config {
        signal: None,
        ice_servers: servers.clone(),
    }
    .validate()?;
    Ok(Some(servers))
}

/// Why Ferry cannot start in this browser (shown whole to the person).
#[derive(Debug, thiserror::Error)]
enum BootError {
    #[error("Ferry cannot use this browser's storage: {0}")]
    Storage(#[from] StoreError),
    #[error(transparent)]
    LocalState(LocalStateError),
    #[error("the stored space secret is damaged")]
    Secret,
    #[error("Ferry could not load your history: {0}")]
    History(#[from] ferry_core::persist::PersistError),
}

impl From<LocalStateError> for BootError {
    fn from(e: LocalStateError) -> Self {
        match e {
            LocalStateError::Store(e) => BootError::Storage(e),
            e => BootError::LocalState(e),
        }
    }
}

/// Why `config.json` (the server's signaling and ICE defaults) could not be read; the app
/// then uses its own defaults.
#[derive(Debug, thiserror::Error)]
enum ConfigFetchError {
    #[error("no window")]
    NoWindow,
    #[error("the request failed ({0})")]
    Fetch(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error(transparent)]
    Parse(#[from] crate::config::ConfigError),
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn offset_min() -> i64 {
    -(js_sys::Date::new_0().get_timezone_offset() as i64)
}

/// Starts the runtime on the local executor.
pub fn spawn(view: ViewState, intents: UnboundedReceiver<Intent>, tx: UnboundedSender<Intent>) {
    wasm_bindgen_futures::spawn_local(async move {
        match Runtime::boot(view).await {
            Ok(rt) => rt.run(intents, tx).await,
            Err(e) => view.error.set(Some(e.to_string())),
        }
    });
}

mod backup;
mod cleared;
mod files;
mod mailbox;

struct Runtime {
    view: ViewState,
    /// Files: sending jobs, the transfer engine, per-file view state.
    files: files::Files,
    /// The encrypted mailbox for devices that are never online together.
    mailbox: mailbox::Mailbox,
    store: IdbStore,
    docstore: DocStore,
    /// The device engine (core `device::Device`): the replica, local state, peers, delivery,
    /// reconnect timing and the file set. This runtime performs what it decides.
    engine: Device,
    device: DeviceId,
    secret: SpaceSecret,
    config: Config,
    /// When the device list (and its connection paths) was last refreshed.
    space_refreshed: f64,
    /// The WebRTC socket and those whose signaling ended but whose peers are still
    /// connected (kept for those peers until the current socket reaches the same devices).
    links: Router<RtcLink>,
    /// Sibling tabs of this browser (BroadcastChannel).
    tabs: Option<TabLink>,
    /// This tab holds the browser-wide Web Lock that owns the WebRTC connection.
    rtc_owner: Rc<Cell<bool>>,
    pending: Option<PairingLink>,
    /// Items shown as "not yet on other devices" by the last render.
    pending_items: usize,
    /// Items written here that only the mailbox holds so far ("waiting in the mailbox").
    waiting_items: usize,
    /// The last document save failed (storage full?): what is in memory is not stored yet.
    unsaved: bool,
    /// The history loaded at start skipped damaged chunks: no stored file is freed, since the
    /// item that references it may be in what was skipped.
    load_skipped_chunks: bool,
    /// What the history's rows were built from (they are patched, not rebuilt).
    rows: view::Rows,
}

fn can_share() -> bool {
    web_sys::window()
        .map(|w| js_sys::Reflect::has(&w.navigator(), &"share".into()).unwrap_or(false))
        .unwrap_or(false)
}

async fn get_or_init(
    store: &IdbStore,
    k: &StoreKey,
    init: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    if let Some(v) = store.get(k).await? {
        return Ok(v);
    }
    let v = init();
    store.put(k, &v).await?;
    Ok(v)
}

async fn fetch_config() -> Result<Config, ConfigFetchError> {
    let js = |e: wasm_bindgen::JsValue| ConfigFetchError::Fetch(format!("{e:?}"));
    let window = web_sys::window().ok_or(ConfigFetchError::NoWindow)?;
    let resp = JsFuture::from(window.fetch_with_str("config.json"))
        .await
        .map_err(js)?;
    let resp: web_sys::Response = resp.dyn_into().map_err(js)?;
    if !resp.ok() {
        return Err(ConfigFetchError::Status(resp.status()));
    }
    let text = JsFuture::from(resp.text().map_err(js)?).await.map_err(js)?;
    Ok(Config::parse(&text.as_string().unwrap_or_default())?)
}

fn location() -> Option<web_sys::Location> {
    web_sys::window().map(|w| w.location())
}

/// The app's own URL without fragment: the base of pairing links.
fn app_base() -> String {
    location()
        .and_then(|l| Some(format!("{}{}", l.origin().ok()?, l.pathname().ok()?)))
        .unwrap_or_default()
}

fn clear_fragment() {
    if let Some(w) = web_sys::window()
        && let Ok(history) = w.history()
    {
        let url = location()
            .and_then(|l| Some(format!("{}{}", l.pathname().ok()?, l.search().ok()?)))
            .unwrap_or_else(|| "/".into());
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
    }
}

impl Runtime {
    async fn boot(view: ViewState) -> Result<Self, BootError> {
        let store = IdbStore::open(DB_NAME).await?;
        let ua = web_sys::window()
            .and_then(|w| w.navigator().user_agent().ok())
            .unwrap_or_default();
        let (local, origin) =
            LocalState::load(&store, || (DeviceId::random(), view::device_name(&ua))).await?;
        if let Origin::Migrated(keys) = origin {
            web_sys::console::info_1(
                &format!("this device's settings moved into one record ({keys} keys)").into(),
            );
        }
        let device = local.device;
        // No space here, yet the cookie says Ferry had data in this browser: the browser
        // cleared it (storage pressure, or Safari's 7 days), which the person must hear about.
        let fresh = store.get(&key(&["space", "secret"])).await?.is_none();
        // (A mark from the last minute is a sibling tab starting fresh at the same moment.)
        if fresh && let Some(last) = cleared::last_here().filter(|t| t + 60_000 < now_ms()) {
            view.cleared
                .set(Some(view::format_time(last, offset_min()).1));
        }
        let secret_bytes = get_or_init(&store, &key(&["space", "secret"]), || {
            SpaceSecret::random().expose().to_vec()
        })
        .await?;
        let secret = SpaceSecret::from_slice(&secret_bytes).map_err(|_| BootError::Secret)?;
        cleared::mark_here(now_ms());
        let loaded = DocStore::load(&store, &Replica::actor_for(device)).await?;
        let load_skipped_chunks = !loaded.corrupt.is_empty();
        if load_skipped_chunks {
            view.error.set(Some(format!(
                "{} damaged record(s) in local storage were skipped; everything else loaded.",
                loaded.corrupt.len()
            )));
        }
        let mut replica = Replica::from_doc(device, &local.name, loaded.doc, &secret);
        if let Ok(states) = store.list(&key(&["sync"])).await {
            replica.restore_sync_states(
                states
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.last().parse().ok()?, v))),
            );
        }
        let config = match fetch_config().await {
            Ok(c) => c,
            Err(e) => {
                let l = location();
                let host = l
                    .as_ref()
                    .and_then(|l| l.hostname().ok())
                    .unwrap_or_default();
                let https = l.and_then(|l| l.protocol().ok()).as_deref() == Some("https:");
                web_sys::console::warn_1(
                    &format!("config.json unavailable ({e}); using defaults").into(),
                );
                Config::fallback(&host, https)
            }
        };

        let mut rt = Runtime {
            view,
            files: files::Files::new(),
            mailbox: mailbox::Mailbox::new(&secret, device),
            store,
            docstore: loaded.store,
            engine: Device::new(replica, local),
            device,
            secret,
            config,
            space_refreshed: 0.0,
            links: Router::default(),
            tabs: None,
            rtc_owner: Rc::new(Cell::new(false)),
            pending: None,
            pending_items: 0,
            waiting_items: 0,
            unsaved: false,
            load_skipped_chunks,
            rows: view::Rows::default(),
        };
        view.device_name.set(rt.engine.replica().name().to_owned());
        rt.refresh_ice_summary();
        view.can_share.set(can_share());
        let effects = rt
            .engine
            .replica_mut()
            .register_self(now_ms())
            .unwrap_or_default();
        rt.apply(effects).await;
        rt.refresh_space();
        rt.refresh_items();
        rt.boot_files().await;
        rt.boot_mailbox(false).await;
        view.ready.set(true);
        request_persistence(view);
        Ok(rt)
    }

    fn ice(&self) -> &[crate::config::IceServer] {
        self.engine
            .local()
            .ice
            .as_deref()
            .unwrap_or(&self.config.ice_servers)
    }

    fn refresh_ice_summary(&self) {
        let lines = self
            .ice()
            .iter()
            .flat_map(|s| {
                s.urls.iter().map(move |u| match &s.username {
                    Some(user) => format!("{u} (user {user})"),
                    None => u.clone(),
                })
            })
            .collect();
        self.view
            .ice_summary
            .set((lines, self.engine.local().ice.is_some()));
    }

    async fn set_ice(&mut self, servers: Vec<crate::config::IceServer>) {
        let candidate = Config {
            signal: None,
            ice_servers: servers.clone(),
        };
        if let Err(e) = candidate.validate() {
            self.view
                .error
                .set(Some(format!("Connection settings not saved: {e}")));
            return;
        }
        let ice = (!servers.is_empty()).then_some(servers);
        if let Err(e) = self.save_local(move |s| s.ice = ice.clone()).await {
            self.view
                .error
                .set(Some(format!("Connection settings not saved: {e}")));
            return;
        }
        self.refresh_ice_summary();
        // The pairing link carries these settings: show the updated link at once.
        self.refresh_space();
        // Reconnect with the new servers (peers come back through the new configuration).
        if self.rtc_owner.get() {
            self.disconnect().await;
            self.engine.reset_reconnect();
            self.connect();
        }
        self.view
            .notice
            .set(Some("Connection settings saved.".into()));
    }

    fn signal_url(&self) -> Option<String> {
        self.engine
            .local()
            .signal
            .clone()
            .or_else(|| self.config.signal.clone())
    }

    async fn run(mut self, mut intents: UnboundedReceiver<Intent>, tx: UnboundedSender<Intent>) {
        listen_hashchange(tx);
        self.check_location();
        self.check_share().await;
        self.open_tabs();
        if !request_rtc_lock(self.rtc_owner.clone()) {
            // No Web Locks: every tab connects on its own (still correct, just more sockets).
            self.rtc_owner.set(true);
        }
        matchbox_socket::set_wake_hook(crate::wake::wake);
        let mut last_event = js_sys::Date::now();
        loop {
            if self.rtc_owner.get() && self.engine.wants_socket(self.links.is_connected()) {
                self.connect();
            }
            // Texts queued in one tick become one storage write and one render (a paste of
            // many lines, or a fast typist, never costs one IndexedDB transaction each).
            let mut batch = Vec::new();
            while let Ok(intent) = intents.try_recv() {
                match intent {
                    Intent::Send(text) => {
                        let write = device::Input::Intent {
                            intent: device::Intent::Write(text),
                            now: now_ms(),
                        };
                        match self.engine.handle(write) {
                            Ok(effects) => batch.extend(effects),
                            Err(e) => self.view.error.set(Some(e.to_string())),
                        }
                    }
                    other => {
                        self.perform(coalesce(std::mem::take(&mut batch))).await;
                        self.on_intent(other).await;
                    }
                }
            }
            self.perform(coalesce(batch)).await;
            self.poll_link().await;
            self.pump_files().await;
            self.pump_mailbox().await;
            let now = js_sys::Date::now();
            let busy = now - last_event < BUSY_MS || self.files_busy();
            if !busy && self.docstore.should_compact() {
                self.compact().await;
            }
            if crate::wake::sleep(if busy { TICK_MS } else { IDLE_TICK_MS }).await {
                last_event = js_sys::Date::now();
            }
        }
    }

    fn connect(&mut self) {
        if let Some(signal) = self.signal_url() {
            let l = location();
            let page = view::plain_page_warning(
                &l.as_ref()
                    .and_then(|l| l.protocol().ok())
                    .unwrap_or_default(),
                &l.and_then(|l| l.hostname().ok()).unwrap_or_default(),
            );
            let warning = [page, view::plain_signaling_warning(&signal)]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
            self.view
                .signal_warning
                .set((!warning.is_empty()).then(|| warning.join(" ")));
            let room = self.secret.room_id();
            self.links
                .connect(RtcLink::connect(&signal, room.as_str(), self.ice()));
        }
        self.refresh_status();
    }

    async fn disconnect(&mut self) {
        let down = self.links.close_all();
        self.handle_events(down.into_iter().map(LinkEvent::Down).collect())
            .await;
    }

    fn open_tabs(&mut self) {
        self.tabs = TabLink::open(self.secret.room_id().as_str());
        if let Some(tabs) = &self.tabs {
            tabs.say_goodbye_on_pagehide();
        }
    }

    /// Other devices this tab is connected to over WebRTC (sibling tabs share the device id).
    fn remote_devices(&self) -> usize {
        self.engine.remote_devices()
    }

    async fn handle_events(&mut self, events: Vec<LinkEvent>) {
        for event in events {
            let input = device::Input::Link {
                event,
                now: now_ms(),
            };
            match self.engine.handle(input) {
                Ok(effects) => self.perform(effects).await,
                Err(e) => web_sys::console::warn_1(&e.to_string().into()),
            }
        }
    }

    async fn poll_link(&mut self) {
        let now = js_sys::Date::now();
        let remote = u16::try_from(self.remote_devices()).unwrap_or(u16::MAX);
        let synced = self.engine.last_synced();
        if let Some((events, news)) = self.tabs.as_mut().map(|t| t.poll(now, remote, synced)) {
            if news.space_changed {
                // Another tab joined another space: start over from storage like it did.
                if let Some(l) = location() {
                    let _ = l.reload();
                }
            }
            self.handle_events(events).await;
        }
        if now - self.space_refreshed > 1_000.0 {
            // Connection paths change as ICE settles; the list is small.
            self.space_refreshed = now;
            self.refresh_space();
        }
        if let Some(failure) = RtcLink::take_failures(self.ice()).pop() {
            let (time, _) = view::format_time(now as u64, offset_min());
            self.view
                .connection_problem
                .set(Some(format!("{time}: {}", view::failure_reason(failure))));
        }
        if let Some(problem) = self
            .links
            .current()
            .and_then(|l| l.take_signaling_problems().pop())
        {
            let (time, _) = view::format_time(now as u64, offset_min());
            self.view.connection_problem.set(Some(format!(
                "{time}: The signaling server misbehaves ({problem}); Ferry ignored what it sent."
            )));
        }
        // The retired sockets and the current one; then a retired socket closes once the
        // current one reaches all of its devices again (or drops when its peers are gone).
        let events = self.links.poll();
        self.handle_events(events).await;
        if self.links.retired() > 0 {
            let peers = self.engine.peers();
            let down = self.links.close_retired(|k| peers.get(k).copied());
            self.handle_events(down.into_iter().map(LinkEvent::Down).collect())
                .await;
        }
        self.update_synced(now as u64).await;
        let Some(link) = self.links.current_mut() else {
            self.refresh_status();
            return;
        };
        let closed = Link::is_closed(link);
        let socket = if closed || link.is_signaling_lost() {
            Socket::Lost
        } else if link.is_signaling() {
            Socket::Signaling
        } else {
            Socket::Connecting
        };
        let input = device::Input::Socket {
            state: socket,
            now: now as u64,
            random: js_sys::Math::random(),
        };
        if let Ok(effects) = self.engine.handle(input) {
            self.perform(effects).await;
        }
        self.refresh_status();
    }

    /// Sends on the WebRTC socket that reaches `peer`. A peer no socket reaches any more is
    /// not an error: its `Down` is on its way, and the sync state picks up from there.
    fn send_rtc(&mut self, peer: &PeerKey, lane: Lane, frame: Vec<u8>) {
        match self.links.send(peer, lane, frame) {
            Ok(()) | Err(RouteError::NotConnected(_)) => {}
            Err(e) => web_sys::console::warn_1(&e.to_string().into()),
        }
    }

    /// Replica effects from outside the engine's own inputs (boot, files, the mailbox):
    /// translated by the engine like its own (peers, saves, view patches), then performed.
    /// `remote`: the change is stored elsewhere already, so it is shown before it is saved.
    async fn apply_remote(&mut self, effects: Vec<Effect>) {
        let effects = self.engine.absorb(effects, now_ms(), true);
        self.perform(effects).await;
    }

    async fn apply(&mut self, effects: Vec<Effect>) {
        let effects = self.engine.absorb(effects, now_ms(), false);
        self.perform(effects).await;
    }

    /// Performs the engine's effects, in the order it gave them (a local change is saved
    /// and sealed into the outbox before it is shown: a tab closed then strands nothing).
    async fn perform(&mut self, effects: Vec<device::Effect>) {
        use device::{Effect as E, ViewPatch};
        let mut changed = false;
        for e in effects {
            match e {
                // Sibling tabs share this device's storage: only the main lane goes to them.
                E::Send {
                    peer,
                    lane: Lane::Main,
                    frame,
                } if peer.is_tab() => {
                    if let Some(tabs) = &self.tabs {
                        tabs.send(&peer, &frame);
                    }
                }
                E::Send { peer, .. } if peer.is_tab() => {}
                E::Send { peer, lane, frame } => self.send_rtc(&peer, lane, frame),
                E::SaveDoc => {
                    changed = true;
                    self.persist().await;
                    self.after_change().await;
                }
                E::SaveLocal(change) => {
                    let stored = LocalState::store_change(&self.store, self.engine.local(), |s| {
                        change.apply(s)
                    })
                    .await;
                    match (stored, &change) {
                        (Err(e), LocalChange::Name(_)) => self
                            .view
                            .error
                            .set(Some(format!("The new name was not saved: {e}"))),
                        (Err(e), _) => {
                            web_sys::console::warn_1(&format!("local state not saved: {e}").into())
                        }
                        (Ok(()), _) => {}
                    }
                }
                E::SaveSyncState { device, state } => {
                    // Best effort: without it the next connection just exchanges more.
                    let _ = self
                        .store
                        .put(&key(&["sync", &device.to_string()]), &state)
                        .await;
                }
                E::View(ViewPatch::Items(patches)) => self.refresh_items_with(&patches),
                E::View(ViewPatch::Devices) => self.refresh_space(),
                E::View(ViewPatch::Delivery) => self.refresh_items(),
                E::View(ViewPatch::Synced { at }) => self.show_synced(at),
                E::Blob { peer, msg } => self.files.receive(peer, msg),
                E::PeerReady { peer, .. } => {
                    if !peer.is_tab() {
                        // A device got through: an older failure is no longer the story.
                        self.view.connection_problem.set(None);
                        self.file_peer_up(&peer).await;
                    }
                }
                E::PeerGone { peer } => self.file_peer_down(&peer).await,
                E::Refused { peer, reason } => {
                    self.view.refused.update(|n| *n += 1);
                    web_sys::console::warn_1(
                        &format!("frame from {peer} refused: {reason}").into(),
                    );
                }
                E::Banned { peer } => {
                    self.view.banned.update(|n| *n += 1);
                    web_sys::console::warn_1(
                        &format!("peer {peer} blocked: too many bad frames").into(),
                    );
                }
                E::SendFailed { peer, error } => {
                    web_sys::console::warn_1(&format!("nothing sent to {peer}: {error}").into());
                    self.view.error.set(Some(format!(
                        "A change could not be sent to another device: {error}"
                    )));
                }
                E::ReplaceSocket => {
                    // Signaling is gone but peers may live on: keep their socket, meet the
                    // world again through a new one.
                    self.links.retire();
                    self.connect();
                }
            }
        }
        if changed {
            self.refresh_space();
            self.files_changed().await;
        }
    }

    /// Writes pending changes; only after this does the UI show them.
    async fn persist(&mut self) {
        let doc = self.engine.replica_mut().doc_mut();
        let saved = self.docstore.save(&self.store, doc).await;
        self.unsaved = saved.is_err();
        match saved {
            // Compaction waits for an idle turn of the loop (`compact_when_idle`), unless
            // far too many chunks piled up.
            Ok(_) if self.docstore.must_compact() => self.compact().await,
            Ok(_) => {}
            Err(e) => self.view.error.set(Some(format!(
                "Not saved on this device yet: {e}. Ferry keeps it in memory and retries with the next change."
            ))),
        }
    }

    async fn compact(&mut self) {
        let doc = self.engine.replica_mut().doc_mut();
        if let Err(e) = self.docstore.compact(&self.store, doc).await {
            web_sys::console::warn_1(&format!("compaction postponed: {e}").into());
        }
    }

    /// The engine's delivery bookkeeping: when another device (directly, or through a
    /// sibling tab or the mailbox) had everything this one has.
    async fn update_synced(&mut self, now: u64) {
        let elsewhere = self
            .tabs
            .as_ref()
            .map_or(0, TabLink::last_synced_via_tabs)
            .max(self.mailbox.client.synced_ms);
        let tick = device::Input::Tick {
            now,
            synced_elsewhere: elsewhere,
        };
        if let Ok(effects) = self.engine.handle(tick) {
            self.perform(effects).await;
        }
        // Rows still say "not yet on other devices": what lifts that must survive a reload.
        if self.pending_items > 0
            && let Some(save) = self.engine.flush_last_synced()
        {
            self.perform(vec![save]).await;
        }
    }

    /// "Last synced" moved to `at`: rows that said "not yet" are re-worded, and the header.
    fn show_synced(&mut self, at: u64) {
        if self.pending_items > 0 {
            self.refresh_items();
        }
        let (_, text) = view::format_time(at, offset_min());
        if self.view.last_synced.get_untracked().as_deref() != Some(text.as_str()) {
            self.view.last_synced.set(Some(text));
        }
    }

    async fn save_local(&mut self, change: impl Fn(&mut LocalState)) -> Result<(), StoreError> {
        self.engine.local_mut().update(&self.store, change).await
    }

    /// Re-words the rows (delivery marks moved) with no new patches.
    fn refresh_items(&mut self) {
        self.refresh_items_with(&[]);
    }

    /// Applies the engine's row patches to the history's rows (never a re-read of every
    /// item; a new message at the end builds one row).
    fn refresh_items_with(&mut self, patches: &[ferry_core::HistoryPatch]) {
        // Changes made straight on the replica (none should be left) are not lost.
        let stray = self.engine.replica_mut().take_changes().patches;
        let patches: Vec<_> = patches.iter().copied().chain(stray).collect();
        let local = self.engine.local();
        let inputs = view::RowInputs {
            names: view::display_names(&self.engine.replica().devices()),
            me: self.device,
            offset_min: offset_min(),
            synced_ms: self.engine.last_synced(),
            delivered: local.delivered.clone(),
            carried_ms: self.mailbox.carried_ms,
        };
        let history = self.engine.replica().history();
        let rows = &mut self.rows;
        let mut counts = view::RowCounts::default();
        self.view.items.update(|items| {
            counts = rows.refresh(items, history.items(), &patches, inputs, now_ms());
        });
        self.waiting_items = counts.waiting;
        self.pending_items = counts.pending;
    }

    fn refresh_space(&self) {
        let storage = self.engine.replica().device_storage();
        let online: Vec<DeviceId> = self.engine.peers().values().copied().collect();
        let devices = view::display_names(&self.engine.replica().devices())
            .into_iter()
            .map(|(id, name)| DeviceView {
                id: id.to_string(),
                name,
                this: id == self.device,
                online: id == self.device || online.contains(&id),
                last_seen: self
                    .engine
                    .local()
                    .seen
                    .get(&id)
                    .map(|ms| view::format_time(*ms, offset_min()).1),
                at_risk: storage.get(&id).is_some_and(|s| !s.kept),
                path: self
                    .engine
                    .peers()
                    .iter()
                    .filter(|(k, d)| **d == id && !k.is_tab())
                    .find_map(|(k, _)| self.links.link_of(k)?.path(k)),
            })
            .collect::<Vec<_>>();
        if self.view.devices.with_untracked(|d| *d != devices) {
            self.view.devices.set(devices);
        }
        let link = PairingLink {
            secret: self.secret.clone(),
            signal: self.signal_url(),
            ice: self
                .engine
                .local()
                .ice
                .as_ref()
                .and_then(|ice| serde_json::to_string(ice).ok()),
        };
        let url = link.to_url(&app_base());
        if self.view.pairing_link.with_untracked(|l| *l != url) {
            self.view.qr_svg.set(view::qr_svg(&url));
            self.view.pairing_link.set(url);
        }
        self.view.fingerprint.set(self.secret.fingerprint());
        self.refresh_status();
    }

    fn refresh_status(&self) {
        let socket = self.links.current().map(|l| SocketSeen {
            closed: Link::is_closed(l),
            signaling: self.signaling_up(),
        });
        let via_tabs = (!self.rtc_owner.get())
            .then_some(self.tabs.as_ref())
            .flatten()
            .map(TabLink::remote_devices_via_tabs);
        let status = NetStatus::from(device::presence::connectivity(
            self.remote_devices(),
            socket,
            via_tabs,
        ));
        if self.view.status.get_untracked() != status {
            self.view.status.set(status);
        }
    }

    fn signaling_up(&self) -> bool {
        // `id()` needs `&mut`; the status is refreshed right after polls, where the link's
        // closed flag is current, so "not closed and polled" is what we can tell here.
        self.links
            .current()
            .is_some_and(|l| !Link::is_closed(l) && l.has_id())
    }

    /// "Share → Ferry" from another app (manifest `share_target`, GET): the shared title,
    /// text and URL become one draft in the composer, and the query is removed so a reload
    /// does not repeat it. Never an item by itself: any web page can navigate here with a
    /// query, and only the person decides what enters their history.
    async fn check_share(&mut self) {
        let Some(search) = location().and_then(|l| l.search().ok()) else {
            return;
        };
        let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else {
            return;
        };
        let parts: Vec<String> = ["share_title", "share_text", "share_url"]
            .iter()
            .filter_map(|k| params.get(k))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if parts.is_empty() {
            return;
        }
        let mut text = parts.join("\n");
        // Android puts the URL into `text` as well; do not repeat it.
        if parts.len() == 2 && parts[0].contains(&parts[1]) {
            text = parts[0].clone();
        }
        if let Some(w) = web_sys::window()
            && let Ok(history) = w.history()
        {
            let path = location()
                .and_then(|l| l.pathname().ok())
                .unwrap_or_else(|| "/".into());
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&path));
        }
        self.view.draft_text.set(Some(text));
    }

    fn check_location(&mut self) {
        let Some(hash) = location().and_then(|l| l.hash().ok()) else {
            return;
        };
        if !hash.contains("pair=") {
            return;
        }
        self.offer_link(&hash);
    }

    /// Asks to join the space of `text` (a link or its fragment), or says why it cannot.
    fn offer_link(&mut self, text: &str) {
        // The secret leaves the address bar (and the session history) as soon as it is read,
        // whether the link is good, bad, or waits in the join dialog: the link itself stays
        // in `self.pending` until the person decides.
        if location()
            .and_then(|l| l.hash().ok())
            .is_some_and(|h| h.contains("pair="))
        {
            clear_fragment();
        }
        let parsed = PairingLink::parse(text)
            .map_err(LinkError::from)
            .and_then(|link| {
                link_ice(&link)?;
                Ok(link)
            });
        match parsed {
            Ok(link) if link.secret == self.secret => {
                clear_fragment();
                self.view
                    .notice
                    .set(Some("This device is already in that space.".into()));
            }
            Ok(link) => {
                self.view.pending_join.set(Some(JoinOffer {
                    fingerprint: link.secret.fingerprint(),
                }));
                self.pending = Some(link);
            }
            Err(e) => self
                .view
                .error
                .set(Some(format!("This pairing link cannot be used: {e}"))),
        }
    }

    async fn on_intent(&mut self, intent: Intent) {
        // Page-local intents never queue here (`Intents::send` handles them at once); should
        // one arrive anyway, it is handled the same way.
        let Some(intent) = crate::pwa::handle_now(self.view, intent) else {
            return;
        };
        match intent {
            Intent::CopyText(_) | Intent::DismissIosHint | Intent::ClearShareInbox => {}
            Intent::Send(text) => {
                self.intend(device::Intent::Write(text), "Cannot send")
                    .await;
            }
            Intent::Edit(id, text) => {
                self.intend(device::Intent::Edit(id, text), "Cannot edit")
                    .await;
            }
            Intent::Delete(id) => {
                self.intend(device::Intent::Delete(id), "Cannot delete")
                    .await;
            }
            Intent::AddTask(text) => {
                self.intend(device::Intent::Task(text), "Cannot add the task")
                    .await;
            }
            Intent::Check(id, done) => {
                self.intend(device::Intent::Check(id, done), "Cannot check the task")
                    .await;
            }
            Intent::AddNote { id, title, body } => {
                let note = device::Intent::Note { id, title, body };
                self.intend(note, "Cannot save the note").await;
            }
            Intent::EditNote {
                id,
                title,
                base,
                body,
            } => {
                let edit = device::Intent::EditNote {
                    id,
                    title,
                    base,
                    body,
                };
                self.intend(edit, "Cannot save the note").await;
            }
            Intent::Pin(id, pinned) => {
                let what = if pinned { "Cannot pin" } else { "Cannot unpin" };
                self.intend(device::Intent::Pin(id, pinned), what).await;
            }
            Intent::Join => self.join().await,
            Intent::CancelJoin => {
                self.pending = None;
                self.view.pending_join.set(None);
                clear_fragment();
            }
            Intent::CopyLink => {
                let link = self.view.pairing_link.get_untracked();
                let ok = match web_sys::window().map(|w| w.navigator().clipboard()) {
                    Some(cb) => JsFuture::from(cb.write_text(&link)).await.is_ok(),
                    None => false,
                };
                self.view.notice.set(Some(if ok {
                    "Link copied.".into()
                } else {
                    "Copying is not allowed here: select the link and copy it yourself.".into()
                }));
            }
            Intent::DismissError => self.view.error.set(None),
            Intent::Rename(name) => {
                if self
                    .intend(device::Intent::Rename(name), "Cannot rename")
                    .await
                {
                    let name = self.engine.replica().name().to_owned();
                    self.view.device_name.set(name);
                    self.view.notice.set(Some("Device renamed.".into()));
                }
            }
            Intent::Share => share(&self.view.pairing_link.get_untracked()).await,
            Intent::ApplyUpdate => crate::pwa::apply_update(),
            Intent::SetIce(servers) => self.set_ice(servers).await,
            Intent::Install => crate::pwa::install(self.view),
            Intent::CheckLocation => self.check_location(),
            Intent::UseLink(text) => self.offer_link(&zeroize::Zeroizing::new(text)),
            Intent::SendFiles(files) => self.send_files(files).await,
            Intent::PasteAsMessage => match crate::pwa::read_clipboard().await {
                Ok(crate::pwa::Pasted::Text(text)) => {
                    self.intend(device::Intent::Write(text), "Cannot send")
                        .await;
                }
                Ok(crate::pwa::Pasted::File(file)) => self.send_files(vec![file]).await,
                Err(why) => self.view.toast.set(Some(why)),
            },
            Intent::CancelFile(root) => self.cancel_file(&root.to_string()).await,
            Intent::RetryFile(root) => self.retry_file(&root.to_string()).await,
            Intent::ExportBackup { with_history } => self.export_backup(with_history).await,
            Intent::ImportBackup(file, confirmed) => self.import_backup(file, confirmed).await,
            Intent::SaveFile(root) => self.save_file(&root.to_string()).await,
            Intent::SetMailbox(on) => self.set_mailbox(on).await,
            Intent::KeepStorage => request_persistence(self.view),
        }
    }

    /// Hands a person's intent to the engine and performs what it decides; `what` opens the
    /// alert when it cannot be done. True when it was.
    async fn intend(&mut self, intent: device::Intent, what: &str) -> bool {
        let input = device::Input::Intent {
            intent,
            now: now_ms(),
        };
        match self.engine.handle(input) {
            Ok(effects) => {
                self.perform(effects).await;
                true
            }
            Err(e) => {
                self.view.error.set(Some(format!("{what}: {e}")));
                false
            }
        }
    }

    async fn join(&mut self) {
        let Some(link) = self.pending.take() else {
            return;
        };
        self.view.pending_join.set(None);
        let saved = match self
            .store
            .put(&key(&["space", "secret"]), link.secret.expose())
            .await
        {
            Ok(()) => match link.signal.clone() {
                Some(signal) => {
                    self.save_local(move |s| s.signal = Some(signal.clone()))
                        .await
                }
                None => Ok(()),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = saved {
            self.view
                .error
                .set(Some(format!("Could not join: {e}. Nothing was changed.")));
            return;
        }
        clear_fragment();
        // The inviting device's STUN/TURN servers come along (validated when offered).
        if let Ok(Some(ice)) = link_ice(&link)
            && self.engine.local().ice.as_ref() != Some(&ice)
            && self
                .save_local(move |s| s.ice = Some(ice.clone()))
                .await
                .is_ok()
        {
            self.refresh_ice_summary();
        }
        self.disconnect().await;
        if let Some(tabs) = self.tabs.take() {
            tabs.announce_space_change();
            tabs.close();
        }
        // The sibling tabs' channel is closed: they never say goodbye to this space.
        self.engine.forget_peers();
        self.engine.replica_mut().set_secret(&link.secret);
        self.secret = link.secret;
        // Another space, another mailbox: start its cursors from scratch.
        self.boot_mailbox(true).await;
        self.engine.reset_reconnect();
        self.open_tabs();
        if self.rtc_owner.get() {
            self.connect();
        }
        self.refresh_space();
        self.view.notice.set(Some(format!(
            "Joined space {}. Your history is merged with your other devices.",
            self.secret.fingerprint()
        )));
    }
}

/// Asks for the browser-wide lock that makes one tab the owner of the WebRTC connection;
/// `owner` turns true when granted (at once, or when the owning tab closes). The lock is held
/// by a promise that never settles, i.e. for the life of the page. False without Web Locks.
fn request_rtc_lock(owner: Rc<Cell<bool>>) -> bool {
    let Some((locks, request)) = files::lock_request() else {
        return false;
    };
    let granted = Closure::once_into_js(
        move |_lock: wasm_bindgen::JsValue| -> wasm_bindgen::JsValue {
            owner.set(true);
            js_sys::Promise::new(&mut |_, _| {}).into()
        },
    );
    request
        .call2(&locks, &"ferry-webrtc".into(), &granted)
        .is_ok()
}

/// Opens the system share sheet with the link (a user gesture started this).
async fn share(link: &str) {
    let Some(nav) = web_sys::window().map(|w| w.navigator()) else {
        return;
    };
    let data = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&data, &"title".into(), &"Ferry pairing link".into());
    let _ = js_sys::Reflect::set(&data, &"url".into(), &link.into());
    if let Ok(f) = js_sys::Reflect::get(&nav, &"share".into())
        && let Ok(f) = f.dyn_into::<js_sys::Function>()
        && let Ok(p) = f.call1(&nav, &data)
        && let Ok(p) = p.dyn_into::<js_sys::Promise>()
    {
        // Cancelling the share sheet rejects; that is the person's choice, not an error.
        let _ = JsFuture::from(p).await;
    }
}

fn listen_hashchange(tx: UnboundedSender<Intent>) {
    if let Some(w) = web_sys::window() {
        let cb = Closure::<dyn FnMut()>::new(move || {
            let _ = tx.unbounded_send(Intent::CheckLocation);
        });
        let _ = w.add_event_listener_with_callback("hashchange", cb.as_ref().unchecked_ref());
        cb.forget();
    }
}

/// Asks the browser not to evict Ferry's storage under pressure, and shows what it answered
/// (Advanced → Storage).
fn request_persistence(view: ViewState) {
    let Some(storage) = web_sys::window().map(|w| w.navigator().storage()) else {
        return;
    };
    wasm_bindgen_futures::spawn_local(async move {
        let already = match storage.persisted() {
            Ok(p) => JsFuture::from(p).await.ok().and_then(|v| v.as_bool()),
            Err(_) => None,
        };
        let kept = if already == Some(true) {
            already
        } else {
            match storage.persist() {
                Ok(p) => JsFuture::from(p).await.ok().and_then(|v| v.as_bool()),
                Err(_) => already,
            }
        };
        view.persisted.set(kept);
    });
}
