//! The durable outbox in the app (see `ferry_core::outbox` for its rules): history written
//! while no other device takes it directly is sealed into IndexedDB *before* it is shown,
//! posted within `FLUSH_DELAY_MS`, sent with `keepalive` as the page goes away, and handed to
//! the service worker's Background Sync for when the app is closed.

use super::super::{Runtime, now_ms};
use ferry_core::outbox::{self, Destination, OutboxRecord, Schedule, StageContext, StageError};
use ferry_core::random_msg_id;
use leptos::prelude::Set;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

/// What the page-hide handler needs without the runtime (it runs synchronously while the
/// page goes away; the runtime's task will not get another turn).
#[derive(Default)]
pub(in crate::runtime) struct Pending {
    records: Vec<OutboxRecord>,
    /// Entries the server already answered for: `(stamp, index)`.
    posted: BTreeSet<(u64, usize)>,
    /// Entries already sent with keepalive since the page was last visible.
    sent_on_hide: BTreeSet<(u64, usize)>,
}

/// The outbox part of the mailbox state.
#[derive(Default)]
pub(in crate::runtime) struct OutboxState {
    pending: Rc<RefCell<Pending>>,
    /// Sequence numbers of entries posted in this run, by record.
    seqs: BTreeMap<u64, Vec<Option<u64>>>,
    /// When to stage and when to post (core `outbox::Schedule`).
    pub(super) schedule: Schedule,
    /// A mailbox fetch is applying changes that are in the mailbox already (no echo).
    pub(super) fetching: bool,
    listening: bool,
}

impl OutboxState {
    /// Forgets every record (keeps the page-hide handler's view of them in step).
    fn clear(&mut self) {
        let mut p = self.pending.borrow_mut();
        p.records.clear();
        p.posted.clear();
        drop(p);
        self.seqs.clear();
        self.schedule.clear();
    }

    /// Nothing waits to be posted.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.borrow().records.is_empty()
    }

    /// The heads the mailbox has once the outbox is posted.
    pub(super) fn target(&self, confirmed: &[[u8; 32]]) -> Vec<[u8; 32]> {
        outbox::target_heads(&self.pending.borrow().records, confirmed).to_vec()
    }
}

impl Runtime {
    fn mailbox_destination(&self) -> Option<Destination> {
        Some(Destination {
            url: self.mailbox_url()?,
            token: self.mailbox.client.auth_token(),
            tag: self.mailbox.client.tag(),
        })
    }

    /// Whether this tab is the one that talks to the mailbox.
    fn mailbox_active(&self) -> bool {
        !self.mailbox.client.disabled
            && !self.mailbox.client.unavailable
            && self.rtc_owner.get()
            && self.mailbox_url().is_some()
    }

    /// Deletes every record (the mailbox was turned off, or this device joined another space).
    pub(in crate::runtime) async fn clear_outbox(&mut self) {
        if let Ok(loaded) = outbox::load(&self.store).await {
            for stamp in loaded
                .records
                .iter()
                .map(|r| r.stamp)
                .chain(loaded.done.keys().copied())
                .chain(loaded.damaged)
            {
                let _ = outbox::remove(&self.store, stamp).await;
            }
        }
        self.mailbox.outbox.clear();
    }

    /// Called after every stored document change: seals what no device takes directly into
    /// the outbox, before the change is shown. With another device connected the change goes
    /// to it; `pump_outbox` stages it later if that device never confirms it.
    pub(in crate::runtime) async fn after_change(&mut self) {
        if self.mailbox.outbox.fetching || !self.mailbox_active() {
            return;
        }
        let alone = self.remote_devices() == 0;
        if self.mailbox.outbox.schedule.changed(now_ms(), alone) {
            self.stage_outbox().await;
        }
    }

    /// Reads the outbox from storage (other tabs and the service worker write there too),
    /// finishing records the service worker posted.
    async fn reload_outbox(&mut self) -> Result<(), ferry_core::StoreError> {
        let loaded = outbox::load(&self.store).await?;
        for stamp in loaded.damaged {
            let _ = outbox::remove(&self.store, stamp).await;
        }
        let mut records = Vec::new();
        for record in loaded.records {
            match loaded.done.get(&record.stamp) {
                Some(seqs) if seqs.len() == record.entries.len() => {
                    self.finish_record(&record, seqs).await;
                }
                _ => records.push(record),
            }
        }
        let mut p = self.mailbox.outbox.pending.borrow_mut();
        let stamps: BTreeSet<u64> = records.iter().map(|r| r.stamp).collect();
        p.posted.retain(|(s, _)| stamps.contains(s));
        p.records = records;
        drop(p);
        self.mailbox.outbox.seqs.retain(|s, _| stamps.contains(s));
        Ok(())
    }

    /// Seals everything the outbox does not carry yet into a new record.
    async fn stage_outbox(&mut self) {
        let Some(to) = self.mailbox_destination() else {
            return;
        };
        self.listen_for_page_hide();
        if let Err(e) = self.reload_outbox().await {
            web_sys::console::warn_1(&format!("outbox: {e}").into());
        }
        let records = self.mailbox.outbox.pending.borrow().records.clone();
        let started: BTreeSet<u64> = self.mailbox.outbox.seqs.keys().copied().collect();
        let room = self.secret.room_id();
        let confirmed = self.mailbox.client.upload.heads().to_vec();
        let cx = StageContext {
            keys: self.mailbox.client.keys(),
            room: &room,
            device: self.device,
            to,
            confirmed: &confirmed,
            now_ms: now_ms(),
            carried_ms: self.engine.replica().latest_ms().max(now_ms()),
            msg_id: random_msg_id(),
        };
        let staged = match outbox::stage(
            &records,
            |s| started.contains(&s),
            self.engine.replica_mut().doc_mut(),
            cx,
        ) {
            Ok(staged) => staged,
            Err(StageError::NothingNew) => {
                self.mailbox.outbox.schedule.nothing_new();
                return;
            }
            Err(e) => {
                // Larger than one mailbox message: direct sync (and the next base) carry it.
                web_sys::console::warn_1(&format!("outbox: {e}").into());
                let heads = self.raw_heads();
                self.mailbox.outbox.schedule.too_large(heads);
                return;
            }
        };
        if let Err(e) = outbox::save_staged(&self.store, &staged).await {
            self.view.error.set(Some(format!(
                "Not queued for your other devices yet: {e}. Ferry tries again with the next change."
            )));
            return;
        }
        {
            let mut p = self.mailbox.outbox.pending.borrow_mut();
            if let Some(old) = staged.replaces {
                p.records.retain(|r| r.stamp != old);
            }
            p.records.push(staged.record);
        }
        self.mailbox.outbox.schedule.staged(now_ms());
        crate::pwa::request_background_sync(crate::pwa::OUTBOX_SYNC_TAG);
    }

    /// The document's heads as the outbox records them.
    fn raw_heads(&mut self) -> Vec<[u8; 32]> {
        let doc = self.engine.replica_mut().doc_mut();
        doc.heads().iter().map(|h| h.0).collect()
    }

    /// Each loop turn: stage what a connected device never confirmed, post when due.
    pub(in crate::runtime) async fn pump_outbox(&mut self) {
        if !self.mailbox_active() {
            return;
        }
        let now = now_ms();
        let alone = self.remote_devices() == 0;
        let heads = self.raw_heads();
        let target = self
            .mailbox
            .outbox
            .target(self.mailbox.client.upload.heads());
        let confirmed = !self.engine.replica_mut().synced_devices().is_empty();
        let turn = self
            .mailbox
            .outbox
            .schedule
            .turn(now, &heads, &target, alone, confirmed);
        if turn.stage {
            self.stage_outbox().await;
        }
        if turn.flush {
            let emptied = self.flush_outbox().await;
            self.mailbox.outbox.schedule.flushed(emptied, now_ms());
        }
    }

    /// Posts every record, oldest first. `true` once the outbox is empty.
    pub(in crate::runtime) async fn flush_outbox(&mut self) -> bool {
        if let Err(e) = self.reload_outbox().await {
            web_sys::console::warn_1(&format!("outbox: {e}").into());
            return false;
        }
        let records = self.mailbox.outbox.pending.borrow().records.clone();
        if records.is_empty() {
            return true;
        }
        if let Some(url) = self.mailbox_url() {
            let registered = self
                .with_client(async |c, host| c.register(host, &url).await)
                .await;
            if let Err(e) = registered {
                web_sys::console::warn_1(&format!("outbox: {e}").into());
                return false;
            }
        }
        for record in records {
            let n = record.entries.len();
            let mut seqs = self
                .mailbox
                .outbox
                .seqs
                .remove(&record.stamp)
                .unwrap_or_else(|| vec![None; n]);
            seqs.resize(n, None);
            for (i, entry) in record.entries.iter().enumerate() {
                if seqs[i].is_some() {
                    continue;
                }
                let (url, token) = (&record.to.url, &record.to.token);
                match self
                    .with_client(async |c, host| c.post_entry(host, url, token, entry, false).await)
                    .await
                {
                    Some(seq) => {
                        seqs[i] = Some(seq);
                        self.mailbox
                            .outbox
                            .pending
                            .borrow_mut()
                            .posted
                            .insert((record.stamp, i));
                    }
                    None => {
                        self.mailbox.outbox.seqs.insert(record.stamp, seqs);
                        return false;
                    }
                }
            }
            let seqs: Vec<u64> = seqs.into_iter().flatten().collect();
            self.finish_record(&record, &seqs).await;
            self.mailbox
                .outbox
                .pending
                .borrow_mut()
                .records
                .retain(|r| r.stamp != record.stamp);
        }
        self.with_client(async |c, host| c.save_last_post(host).await)
            .await;
        self.refresh_items();
        true
    }

    /// A record is in the mailbox: its heads are, its upload counts for delivery, and it
    /// leaves the outbox.
    async fn finish_record(&mut self, record: &OutboxRecord, seqs: &[u64]) {
        let (seq, carried, heads) = (
            seqs.iter().max().copied(),
            record.carried_ms,
            record.heads.clone(),
        );
        self.with_client(async |c, host| {
            c.upload.uploaded(seq, carried, heads);
            c.save_uploads(host).await
        })
        .await;
        if let Err(e) = outbox::remove(&self.store, record.stamp).await {
            web_sys::console::warn_1(&format!("outbox: {e}").into());
        }
        self.mailbox.outbox.seqs.remove(&record.stamp);
    }

    /// On `visibilitychange` → hidden and `pagehide`: sends what fits the keepalive budget
    /// (the rest follows with Background Sync or the next start; the server deduplicates
    /// whatever arrives twice).
    fn listen_for_page_hide(&mut self) {
        if self.mailbox.outbox.listening {
            return;
        }
        let Some(window) = web_sys::window() else {
            return;
        };
        self.mailbox.outbox.listening = true;
        let pending = self.mailbox.outbox.pending.clone();
        let on_hide = Closure::<dyn FnMut(web_sys::Event)>::new(move |ev: web_sys::Event| {
            let hidden = ev.type_() == "pagehide"
                || web_sys::window()
                    .and_then(|w| w.document())
                    .is_some_and(|d| d.visibility_state() == web_sys::VisibilityState::Hidden);
            let mut p = pending.borrow_mut();
            if !hidden {
                p.sent_on_hide.clear();
                return;
            }
            send_on_hide(&mut p);
        });
        let f = on_hide.as_ref().unchecked_ref();
        let _ = window.add_event_listener_with_callback("pagehide", f);
        if let Some(doc) = window.document() {
            let _ = doc.add_event_listener_with_callback("visibilitychange", f);
        }
        on_hide.forget();
    }
}

/// Fires keepalive POSTs for the entries that fit, oldest record first.
fn send_on_hide(p: &mut Pending) {
    let skip: BTreeSet<(u64, usize)> = p.posted.union(&p.sent_on_hide).copied().collect();
    let plan = outbox::keepalive_plan(
        &p.records,
        |s, i| skip.contains(&(s, i)),
        outbox::KEEPALIVE_BUDGET,
    );
    let Some(window) = web_sys::window() else {
        return;
    };
    for (r, i) in plan {
        let record = &p.records[r];
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        // `keepalive` is not in this web-sys version's RequestInit bindings.
        let _ = js_sys::Reflect::set(&init, &"keepalive".into(), &true.into());
        let Ok(headers) = web_sys::Headers::new() else {
            return;
        };
        let bearer = zeroize::Zeroizing::new(format!("Bearer {}", record.to.token.as_str()));
        let _ = headers.set("Authorization", &bearer);
        init.set_headers(&headers);
        init.set_body(&js_sys::Uint8Array::from(record.entries[i].as_slice()).into());
        let url = format!("{}?device={}", record.to.url, record.to.tag);
        if let Ok(req) = web_sys::Request::new_with_str_and_init(&url, &init) {
            // Not awaited: the page is going away. A rejected promise only means the entry
            // follows later.
            let _ = window.fetch_with_request(&req);
            let stamp = record.stamp;
            p.sent_on_hide.insert((stamp, i));
        }
    }
}
