//! The Leptos UI. Components render view state and send intents; they do no I/O.
//!
//! Accessibility is the contract the acceptance tests rely on: the history is a `log` named
//! "Messages", the composer a textbox "Message" and a button "Send", connection state a
//! `status`, errors an `alert`, and the pairing view a "Devices" toggle, a read-only textbox
//! "Pairing link", "Copy link" and a "Join" confirmation.

use crate::view::{Intent, ItemView, NetStatus, ViewState};
use futures::channel::mpsc::UnboundedSender;
use leptos::prelude::*;

/// Sends intents to the runtime. Cheap to clone; shared through context.
#[derive(Clone)]
pub struct Intents(pub UnboundedSender<Intent>);

impl Intents {
    /// Queues an intent (dropped only if the runtime is gone, i.e. the page is closing).
    pub fn send(&self, intent: Intent) {
        let _ = self.0.unbounded_send(intent);
        #[cfg(target_arch = "wasm32")]
        crate::wake::wake();
    }
}

/// The whole app.
#[component]
pub fn App(view: ViewState, intents: UnboundedSender<Intent>) -> impl IntoView {
    provide_context(view);
    provide_context(Intents(intents));
    let devices_open = RwSignal::new(false);
    start_clock(view);
    #[cfg(target_arch = "wasm32")]
    crate::pwa::receive_shared_files(view);
    // A confirmation ("Copied") disappears by itself after a few seconds.
    Effect::new(move |_| {
        if view.toast.with(Option::is_some) {
            set_timeout(
                move || view.toast.set(None),
                std::time::Duration::from_millis(3000),
            );
        }
    });
    view! {
        <div class="app">
            <header class="topbar">
                <div class="title">
                    <h1>"Ferry"</h1>
                    <p class="status" role="status" aria-live="polite"
                        data-state=move || format!("{:?}", view.status.get())>
                        {move || view.status.get().text()}
                    </p>
                    <Show when=move || !matches!(view.status.get(), NetStatus::Online { peers } if peers > 0)>
                        <p class="last-sync">
                            {move || match view.last_synced.get() {
                                Some(t) => format!("Last synced {t}"),
                                None => "Not synced with another device yet".into(),
                            }}
                        </p>
                    </Show>
                    <Show when=move || view.mailbox_status.with(Option::is_some)>
                        <p class="mailbox-status" aria-live="polite">
                            {move || view.mailbox_status.get()}
                        </p>
                    </Show>
                </div>
                <Show when=move || view.can_install.get()>
                    {
                        let intents = expect_context::<Intents>();
                        view! {
                            <button type="button" on:click=move |_| intents.send(Intent::Install)>"Install"</button>
                        }
                    }
                </Show>
                <input type="search" class="search" aria-label="Search messages" placeholder="Search"
                    prop:value=move || view.search.get()
                    on:input=move |ev| view.search.set(event_target_value(&ev))/>
                <button type="button" class="devices-toggle"
                    aria-expanded=move || devices_open.get().to_string()
                    aria-controls="devices-panel"
                    on:click=move |_| devices_open.update(|o| *o = !*o)>
                    "Devices"
                </button>
            </header>
            <main class="main">
                <Show when=move || view.update_ready.get()>
                    {
                        let intents = expect_context::<Intents>();
                        view! {
                            <div class="banner update" aria-live="polite">
                                <span>"Update available"</span>
                                <button type="button" class="primary"
                                    on:click=move |_| intents.send(Intent::ApplyUpdate)>"Reload"</button>
                            </div>
                        }
                    }
                </Show>
                <ErrorBanner/>
                <Show when=move || view.ios_hint.get()>
                    <div class="banner hint">
                        <span>"Install: tap Share "<span aria-hidden="true">"(□↑)"</span>", then Add to Home Screen"</span>
                        <button type="button" on:click=move |_| dismiss_ios_hint(view)>"Got it"</button>
                    </div>
                </Show>
                <p class="toast" aria-live="polite">{move || view.toast.get()}</p>
                <JoinDialog/>
                <Show when=move || devices_open.get()>
                    <DevicesPanel/>
                </Show>
                <History/>
                <Composer/>
            </main>
        </div>
    }
}

/// Keeps `now_ms` current to the minute, for relative ages ("5 min ago"): one update a minute
/// re-renders only the ages, never the list.
fn start_clock(view: ViewState) {
    #[cfg(target_arch = "wasm32")]
    {
        let tick = move || view.now_ms.set(js_sys::Date::now() as u64);
        tick();
        let _ = set_interval_with_handle(tick, std::time::Duration::from_secs(60));
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = view;
}

fn dismiss_ios_hint(view: ViewState) {
    #[cfg(target_arch = "wasm32")]
    crate::pwa::dismiss_ios_hint(view);
    #[cfg(not(target_arch = "wasm32"))]
    view.ios_hint.set(false);
}

/// Focuses an element that is already in the DOM, or will be after this render.
fn focus_later(selector: &'static str, within: Option<leptos::web_sys::Element>) {
    request_animation_frame(move || {
        use leptos::wasm_bindgen::JsCast;
        let found = match within {
            Some(root) => root.query_selector(selector).ok().flatten(),
            None => document().query_selector(selector).ok().flatten(),
        };
        if let Some(el) = found.and_then(|e| e.dyn_into::<leptos::web_sys::HtmlElement>().ok()) {
            let _ = el.focus();
        }
    });
}

/// The focused element, if it is an HTML element.
fn active_element() -> Option<leptos::web_sys::HtmlElement> {
    use leptos::wasm_bindgen::JsCast;
    document()
        .active_element()
        .and_then(|e| e.dyn_into::<leptos::web_sys::HtmlElement>().ok())
}

#[component]
fn ErrorBanner() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    move || {
        let intents = intents.clone();
        view.error.get().map(|msg| {
            view! {
                <div class="banner error" role="alert">
                    <span>{msg}</span>
                    <button type="button" on:click=move |_| intents.send(Intent::DismissError)>
                        "Dismiss"
                    </button>
                </div>
            }
        })
    }
}

#[component]
fn JoinDialog() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    // Focus moves into the dialog when it opens and back to where it was when it closes.
    let previous = std::rc::Rc::new(std::cell::RefCell::new(None));
    Effect::new(move |_| {
        if view.pending_join.with(Option::is_some) {
            if previous.borrow().is_none() {
                *previous.borrow_mut() = active_element();
            }
            focus_later(".dialog .actions button", None);
        } else if let Some(el) = previous.borrow_mut().take() {
            let _ = el.focus();
        }
    });
    move || {
        let (join, cancel) = (intents.clone(), intents.clone());
        let escape = intents.clone();
        let dialog = NodeRef::<leptos::html::Div>::new();
        view.pending_join.get().map(|offer| {
            view! {
                <div class="dialog-backdrop">
                    <div class="dialog" role="dialog" aria-modal="true" node_ref=dialog
                        aria-labelledby="join-title" aria-describedby="join-desc"
                        on:keydown=move |ev| {
                            if ev.key() == "Escape" {
                                ev.prevent_default();
                                escape.send(Intent::CancelJoin);
                            } else if ev.key() == "Tab" {
                                trap_tab(&ev, dialog.get_untracked());
                            }
                        }>
                        <h2 id="join-title">"Join this space?"</h2>
                        <p id="join-desc">
                            "This device will join the space "
                            <strong class="fingerprint">{offer.fingerprint}</strong>
                            " and share its whole history with your other devices. \
                             Everything already on this device is kept and merged."
                        </p>
                        <div class="actions">
                            <button type="button" class="primary"
                                on:click=move |_| join.send(Intent::Join)>"Join"</button>
                            <button type="button" on:click=move |_| cancel.send(Intent::CancelJoin)>
                                "Cancel"
                            </button>
                        </div>
                    </div>
                </div>
            }
        })
    }
}

/// Keeps Tab and Shift+Tab on the buttons of a modal dialog (its only focusable elements).
fn trap_tab(ev: &leptos::web_sys::KeyboardEvent, dialog: Option<leptos::web_sys::HtmlDivElement>) {
    use leptos::wasm_bindgen::JsCast;
    let Some(dialog) = dialog else { return };
    let Some(actions) = dialog.query_selector(".actions").ok().flatten() else {
        return;
    };
    let buttons = actions.children();
    let n = buttons.length();
    let (Some(first), Some(last)) = (
        buttons.item(0),
        n.checked_sub(1).and_then(|i| buttons.item(i)),
    ) else {
        return;
    };
    let active = document().active_element();
    let is = |el: &leptos::web_sys::Element| active.as_ref().is_some_and(|a| a == el);
    let target = if !active
        .as_ref()
        .is_some_and(|a| dialog.contains(Some(a.as_ref())))
    {
        Some(first)
    } else if ev.shift_key() && is(&first) {
        Some(last)
    } else if !ev.shift_key() && is(&last) {
        Some(first)
    } else {
        None
    };
    if let Some(el) = target.and_then(|e| e.dyn_into::<leptos::web_sys::HtmlElement>().ok()) {
        ev.prevent_default();
        let _ = el.focus();
    }
}

#[component]
fn DevicesPanel() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    let intents_share = intents.clone();
    view! {
        <section id="devices-panel" class="panel" aria-labelledby="devices-title">
            <h2 id="devices-title">"Devices"</h2>
            <p>
                "Open this link on your other device (another browser, your phone) to add it \
                 to this space "<strong class="fingerprint">{move || view.fingerprint.get()}</strong>
                ". Anyone with the link can join: share it only with yourself."
            </p>
            <label for="pairing-link">"Pairing link"</label>
            <div class="link-row">
                <input id="pairing-link" type="text" readonly
                    prop:value=move || view.pairing_link.get()
                    on:focus=move |ev| {
                        use leptos::wasm_bindgen::JsCast;
                        if let Some(input) = ev.target()
                            .and_then(|t| t.dyn_into::<leptos::web_sys::HtmlInputElement>().ok())
                        {
                            input.select();
                        }
                    }/>
                <button type="button" on:click=move |_| intents.send(Intent::CopyLink)>
                    "Copy link"
                </button>
            </div>
            <Show when=move || view.can_share.get()>
                {
                    let intents = intents_share.clone();
                    view! {
                        <button type="button" on:click=move |_| intents.send(Intent::Share)>"Share link"</button>
                    }
                }
            </Show>
            <p class="notice" aria-live="polite">{move || view.notice.get()}</p>
            <div class="qr" role="img" aria-label="QR code of the pairing link"
                inner_html=move || view.qr_svg.get()></div>
            <PasteLink/>
            <RenameDevice/>
            <h3>"In this space"</h3>
            <ul class="device-list" aria-label="Devices in this space">
                <For each=move || view.devices.get()
                    key=|d| (d.id.clone(), d.online, d.name.clone(), d.last_seen.clone(), d.path.clone())
                    let:d>
                    <li>
                        <span class="device-name">{d.name.clone()}</span>
                        {d.this.then_some(" (this device)")}
                        <span class="device-state">
                            {if d.online {
                                match &d.path {
                                    Some(path) if !d.this => format!("online · {path}"),
                                    _ => "online".to_string(),
                                }
                            } else {
                                d.last_seen.clone().map(|t| format!("last seen {t}")).unwrap_or_else(|| "not seen yet".into())
                            }}
                        </span>
                    </li>
                </For>
            </ul>
            <ConnectionSettings/>
            <MailboxSetting/>
            <h3>"Diagnostics"</h3>
            <Show when=move || view.connection_problem.with(Option::is_some)>
                <p class="problem" role="note" aria-label="Connection problem">
                    {move || view.connection_problem.get()}
                </p>
            </Show>
            <dl class="diagnostics" aria-label="Diagnostics">
                <dt>"Refused frames"</dt>
                <dd data-testid="refused-frames">{move || view.refused.get()}</dd>
                <dt>"Blocked connections"</dt>
                <dd data-testid="blocked-connections">{move || view.banned.get()}</dd>
                <dt>"File chunks requested"</dt>
                <dd data-testid="chunk-requests">{move || view.chunk_requests.get()}</dd>
                <dt>"File chunks received"</dt>
                <dd data-testid="chunks-verified">{move || view.chunks_verified.get()}</dd>
            </dl>
            <p class="storage">{move || view.storage.get().unwrap_or_else(|| "Storage used: unknown".into())}</p>
        </section>
    }
}

/// The encrypted mailbox: on by default; off means nothing of this device is uploaded.
#[component]
fn MailboxSetting() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    view! {
        <h3>"Mailbox"</h3>
        <label class="check">
            <input type="checkbox" prop:checked=move || view.mailbox_on.get()
                on:change=move |ev| intents.send(Intent::SetMailbox(event_target_checked(&ev)))/>
            " Use the encrypted mailbox on the signaling server when no other device is online"
        </label>
        <p class="hint">
            "Devices that are never online at the same time still sync: the server keeps sealed \
             entries it cannot read. History is compacted into one snapshot once your devices \
             have it; files stay until each of your other devices fetched them (at most 30 days)."
        </p>
        <Show when=move || view.mailbox_held.with(Option::is_some)>
            <p class="hint">{move || view.mailbox_held.get()}</p>
        </Show>
    }
}

#[component]
fn PasteLink() -> impl IntoView {
    let intents = expect_context::<Intents>();
    let draft = RwSignal::new(String::new());
    view! {
        <form class="rename" on:submit=move |ev| {
            ev.prevent_default();
            intents.send(Intent::UseLink(draft.get_untracked()));
            draft.set(String::new());
        }>
            <label for="paste-link">"Join another space with its link"</label>
            <div class="link-row">
                <input id="paste-link" type="url" placeholder="Paste a pairing link" required
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))/>
                <button type="submit">"Use link"</button>
            </div>
        </form>
    }
}

/// STUN/TURN servers for this device: behind CGNAT or a strict firewall, a TURN relay is
/// the only way devices reach each other.
#[component]
fn ConnectionSettings() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    let reset = intents.clone();
    let (url, user, cred) = (
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
    );
    view! {
        <h3>"Connection"</h3>
        {move || view.signal_warning.get().map(|w| view! {
            <p class="problem" role="note" aria-label="Unencrypted signaling">{w}</p>
        })}
        <p>
            {move || if view.ice_summary.with(|s| s.1) { "This device uses: " } else { "Using the server's defaults: " }}
            {move || {
                let lines = view.ice_summary.with(|s| s.0.clone());
                if lines.is_empty() { "no STUN/TURN server (same network only)".to_string() } else { lines.join(", ") }
            }}
        </p>
        <form class="ice" on:submit=move |ev| {
            ev.prevent_default();
            let u = url.get_untracked().trim().to_owned();
            let server = crate::config::IceServer {
                urls: vec![u],
                username: Some(user.get_untracked()).filter(|s| !s.is_empty()),
                credential: Some(cred.get_untracked()).filter(|s| !s.is_empty()),
            };
            intents.send(Intent::SetIce(vec![server]));
        }>
            <label for="ice-url">"STUN or TURN server"</label>
            <input id="ice-url" type="text" required placeholder="turn:turn.example.org:3478"
                prop:value=move || url.get() on:input=move |ev| url.set(event_target_value(&ev))/>
            <label for="ice-user">"Username (TURN)"</label>
            <input id="ice-user" type="text" autocomplete="username"
                prop:value=move || user.get() on:input=move |ev| user.set(event_target_value(&ev))/>
            <label for="ice-cred">"Credential (TURN)"</label>
            <input id="ice-cred" type="password" autocomplete="current-password"
                prop:value=move || cred.get() on:input=move |ev| cred.set(event_target_value(&ev))/>
            <div class="actions">
                <button type="submit">"Save connection settings"</button>
                <button type="button" on:click=move |_| reset.send(Intent::SetIce(vec![]))>"Use defaults"</button>
            </div>
        </form>
    }
}

#[component]
fn RenameDevice() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    let draft = RwSignal::new(view.device_name.get_untracked());
    view! {
        <form class="rename" on:submit=move |ev| {
            ev.prevent_default();
            intents.send(Intent::Rename(draft.get_untracked()));
        }>
            <label for="device-name">"This device's name"</label>
            <div class="link-row">
                <input id="device-name" type="text" maxlength="60" required
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))/>
                <button type="submit">"Rename"</button>
            </div>
        </form>
    }
}

#[component]
fn History() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let searching = move || !view.search.with(|q| q.trim().is_empty());
    // Only the newest `window` items are in the DOM (or the matches of a search): a long
    // history stays fast; "Show earlier messages" widens the window.
    let shown = Memo::new(move |_| {
        let query = view.search.get().trim().to_lowercase();
        view.items.with(|items| {
            if query.is_empty() {
                let w = view.window.get();
                items[items.len().saturating_sub(w)..].to_vec()
            } else {
                items
                    .iter()
                    .filter(|i| i.text.to_lowercase().contains(&query))
                    .cloned()
                    .collect()
            }
        })
    });
    let hidden = move || view.items.with(Vec::len).saturating_sub(view.window.get());
    let dragging = RwSignal::new(false);
    let drop_intents = expect_context::<Intents>();
    view! {
        <div class="history" role="log" aria-label="Messages" aria-live="polite" tabindex="0"
            data-count=move || view.items.with(Vec::len)
            class:dragging=move || dragging.get()
            on:dragover=move |ev| { ev.prevent_default(); dragging.set(true); }
            on:dragleave=move |_| dragging.set(false)
            on:drop=move |ev: leptos::web_sys::DragEvent| {
                ev.prevent_default();
                dragging.set(false);
                let files = ev.data_transfer().map(|d| files_of(d.files())).unwrap_or_default();
                if !files.is_empty() {
                    drop_intents.send(Intent::SendFiles(files));
                }
            }>
            <Show when=move || view.ready.get() && view.items.with(Vec::is_empty)>
                <p class="empty">"No messages yet. Write something to yourself: it will appear on all your devices."</p>
            </Show>
            <Show when=move || searching()>
                <p class="search-count" aria-live="polite">
                    {move || match shown.with(Vec::len) {
                        0 => "No messages match".to_string(),
                        1 => "1 message matches".to_string(),
                        n => format!("{n} messages match"),
                    }}
                </p>
            </Show>
            <ol class="items">
                <Show when=move || !searching() && hidden() != 0>
                    <li class="earlier" role="presentation">
                        <button type="button"
                            on:click=move |_| view.window.update(|w| *w += crate::view::RENDER_WINDOW)>
                            {move || format!("Show earlier messages ({})", hidden())}
                        </button>
                    </li>
                </Show>
                <For each=move || shown.get() key=|i| (i.id.clone(), i.text.clone(), i.pending, i.delivery.clone()) let:item>
                    <ItemRow item/>
                </For>
            </ol>
        </div>
    }
}

#[component]
fn MessageText(text: String) -> impl IntoView {
    let view = expect_context::<ViewState>();
    move || {
        let query = view.search.get();
        let marked = move |part: &str| {
            crate::view::highlight(part, &query)
                .into_iter()
                .map(|(t, hit)| {
                    if hit {
                        view! { <mark>{t}</mark> }.into_any()
                    } else {
                        t.into_any()
                    }
                })
                .collect_view()
        };
        crate::view::linkify(&text)
            .into_iter()
            .map(|seg| match seg {
                crate::view::Segment::Text(t) => marked(&t).into_any(),
                crate::view::Segment::Link(url) => view! {
                    <a href=url.clone() target="_blank" rel="noopener noreferrer">{marked(&url)}</a>
                }
                .into_any(),
            })
            .collect_view()
    }
}

/// Where the message menu opens: at the pointer (right-click, long press) or under the
/// message (keyboard).
#[derive(Clone, Copy, PartialEq)]
enum MenuAt {
    Pointer(i32, i32),
    Item,
}

/// What a message menu item does.
#[derive(Clone, Copy, PartialEq)]
enum MenuAction {
    Copy,
    Edit,
    SaveFile,
    Delete,
}

/// How long a touch or pen must rest on a message to open its menu.
const LONG_PRESS_MS: u64 = 500;
/// Moving further than this (px) is a scroll, not a long press.
const LONG_PRESS_SLOP: i32 = 10;

#[component]
fn ItemRow(item: ItemView) -> impl IntoView {
    use leptos::wasm_bindgen::JsCast;
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    let class = if item.mine { "item mine" } else { "item" };
    let is_text = item.file.is_none();
    let editing = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let draft = RwSignal::new(item.text.clone());
    let id = item.id.clone();
    let text = item.text.clone();
    let at_ms = item.at_ms;
    let (save, delete) = (intents.clone(), intents.clone());
    let (id_save, id_delete) = (id.clone(), id);
    let submit = move || {
        save.send(Intent::Edit(id_save.clone(), draft.get_untracked()));
        editing.set(false);
    };
    let submit_key = submit.clone();

    // The message menu (right-click, long press, ContextMenu key or Shift+F10).
    let menu = RwSignal::new(None::<MenuAt>);
    let row = NodeRef::<leptos::html::Li>::new();
    let menu_el = NodeRef::<leptos::html::Div>::new();
    let focus_entry = move |step: Option<i32>| {
        // `None`: the first entry; `Some(0)`: the last; `Some(±1)`: the next/previous one,
        // wrapping around.
        // Runs a frame later: the row may have been re-rendered (its delivery state changed)
        // and this one disposed by then.
        let Some(m) = menu_el.try_get_untracked().flatten() else {
            return;
        };
        let entries = m.children();
        let n = entries.length() as i32;
        if n == 0 {
            return;
        }
        let active = document().active_element();
        let current = (0..n).find(|&i| {
            entries
                .item(i as u32)
                .as_ref()
                .is_some_and(|e| active.as_ref() == Some(e))
        });
        let next = match (step, current) {
            (None, _) => 0,
            (Some(0), _) => n - 1,
            (Some(s), Some(c)) => (c + s).rem_euclid(n),
            (Some(s), None) => {
                if s < 0 {
                    n - 1
                } else {
                    0
                }
            }
        };
        if let Some(el) = entries
            .item(next as u32)
            .and_then(|e| e.dyn_into::<leptos::web_sys::HtmlElement>().ok())
        {
            let _ = el.focus();
        }
    };
    let open_menu = move |at: MenuAt| {
        menu.set(Some(at));
        request_animation_frame(move || focus_entry(None));
    };
    let close_menu = move |refocus: bool| {
        menu.set(None);
        if refocus && let Some(li) = row.get_untracked() {
            let _ = li.focus();
        }
    };
    let entries: Vec<(MenuAction, &'static str)> = [
        (!text.is_empty()).then_some((MenuAction::Copy, "Copy")),
        is_text.then_some((MenuAction::Edit, "Edit")),
        item.file
            .is_some()
            .then_some((MenuAction::SaveFile, "Save file")),
        Some((MenuAction::Delete, "Delete")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let run = {
        let (text, intents) = (text.clone(), intents.clone());
        let root = item.file.as_ref().map(|f| f.root.clone());
        move |action: MenuAction| match action {
            MenuAction::Copy => {
                close_menu(true);
                copy_text(view, text.clone());
            }
            MenuAction::Edit => {
                close_menu(false);
                editing.set(true);
                focus_later("textarea", row.get_untracked().map(Into::into));
            }
            MenuAction::SaveFile => {
                close_menu(true);
                if let Some(root) = root.clone() {
                    intents.send(Intent::SaveFile(root));
                }
            }
            MenuAction::Delete => {
                close_menu(false);
                confirming.set(true);
                focus_later("button.danger", row.get_untracked().map(Into::into));
            }
        }
    };
    // A long press opens the menu; the click that ends it must not close it again.
    let press = StoredValue::new(None::<(TimeoutHandle, i32, i32)>);
    let long_pressed = StoredValue::new(false);
    let cancel_press = move || {
        if let Some((handle, _, _)) = press.get_value() {
            handle.clear();
            press.set_value(None);
        }
    };

    view! {
        <li class=class node_ref=row tabindex="0"
            on:contextmenu=move |ev: leptos::web_sys::MouseEvent| {
                // Links, media and the edit box keep the browser's own menu.
                let native = ev.target()
                    .and_then(|t| t.dyn_into::<leptos::web_sys::Element>().ok())
                    .and_then(|e| e.closest("a, textarea, input, video, .ctx-menu").ok().flatten())
                    .is_some();
                if native || editing.get_untracked() {
                    return;
                }
                ev.prevent_default();
                let (w, h) = (
                    window().inner_width().ok().and_then(|v| v.as_f64()).unwrap_or(1e4) as i32,
                    window().inner_height().ok().and_then(|v| v.as_f64()).unwrap_or(1e4) as i32,
                );
                // Keep the menu (about 12rem by 11rem) on screen.
                let x = ev.client_x().min(w - 200).max(4);
                let y = ev.client_y().min(h - 190).max(4);
                open_menu(MenuAt::Pointer(x, y));
            }
            on:keydown=move |ev: leptos::web_sys::KeyboardEvent| {
                let key = ev.key();
                if (key == "ContextMenu" || (key == "F10" && ev.shift_key()))
                    && !editing.get_untracked() && menu.get_untracked().is_none()
                {
                    ev.prevent_default();
                    open_menu(MenuAt::Item);
                }
            }
            on:pointerdown=move |ev: leptos::web_sys::PointerEvent| {
                if ev.pointer_type() == "mouse" || editing.get_untracked() {
                    return;
                }
                cancel_press();
                let (x, y) = (ev.client_x(), ev.client_y());
                let handle = set_timeout_with_handle(
                    move || {
                        // The row may be gone by now (re-rendered): then there is no menu.
                        if press.try_set_value(None).is_some() {
                            return;
                        }
                        long_pressed.try_set_value(true);
                        open_menu(MenuAt::Pointer(x, y));
                    },
                    std::time::Duration::from_millis(LONG_PRESS_MS),
                );
                if let Ok(handle) = handle {
                    press.set_value(Some((handle, x, y)));
                }
            }
            on:pointermove=move |ev: leptos::web_sys::PointerEvent| {
                if let Some((_, x, y)) = press.get_value()
                    && ((ev.client_x() - x).abs() > LONG_PRESS_SLOP || (ev.client_y() - y).abs() > LONG_PRESS_SLOP)
                {
                    cancel_press();
                }
            }
            on:pointerup=move |_| {
                cancel_press();
                if long_pressed.get_value() {
                    // The click that follows this pointerup is part of the long press.
                    set_timeout(
                        move || {
                            long_pressed.try_set_value(false);
                        },
                        std::time::Duration::ZERO,
                    );
                }
            }
            on:pointercancel=move |_| cancel_press()>
            {item.day.clone().map(|d| {
                let label = d.clone();
                view! { <p class="day" role="separator" aria-label=label>{d}</p> }
            })}
            {item.file.clone().map(|f| view! { <FileCard file=f/> })}
            <Show when=move || editing.get()
                fallback={
                    let text = text.clone();
                    move || (!text.is_empty()).then(|| view! { <p class="text"><MessageText text=text.clone()/></p> })
                }>
                <form class="edit" on:submit={
                    let submit = submit.clone();
                    move |ev| { ev.prevent_default(); submit(); }
                }>
                    <textarea aria-label="Edit message" rows="2" autofocus
                        prop:value=move || draft.get()
                        on:input=move |ev| draft.set(event_target_value(&ev))
                        on:keydown={
                            let submit_key = submit_key.clone();
                            move |ev| {
                                if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                                    ev.prevent_default();
                                    submit_key();
                                } else if ev.key() == "Escape" {
                                    editing.set(false);
                                }
                            }
                        }></textarea>
                    <button type="submit">"Save"</button>
                    <button type="button" on:click=move |_| editing.set(false)>"Cancel"</button>
                </form>
            </Show>
            <p class="meta">
                <span class="author" class:me=item.mine
                    title={if item.mine { "Written on this device" } else { "Written on another device" }}>
                    {item.author}
                </span>
                " · "
                <time datetime=item.datetime.clone() title=item.datetime>{item.time}</time>
                {move || crate::view::relative_age(at_ms, view.now_ms.get())
                    .map(|age| view! { <span class="ago">" · "{age}</span> })}
                {item.edited.then_some(" · edited")}
                {item.pending.then(|| view! { <span class="pending">" · not yet on other devices"</span> })}
                {item.delivery.clone().map(|d| view! { <span class="delivery">" · "{d}</span> })}
            </p>
            <div class="item-actions">
                <Show when=move || !confirming.get()
                    fallback={
                        let delete = delete.clone();
                        let id_delete = id_delete.clone();
                        move || {
                            let (delete, id_delete) = (delete.clone(), id_delete.clone());
                            view! {
                                <button type="button" class="danger"
                                    on:click=move |_| delete.send(Intent::Delete(id_delete.clone()))>
                                    "Delete everywhere"
                                </button>
                                <button type="button" on:click=move |_| confirming.set(false)>"Keep"</button>
                            }
                        }
                    }>
                    {is_text.then(|| view! {
                        <button type="button" aria-label="Edit message"
                            on:click=move |_| editing.set(true)>"Edit"</button>
                    })}
                    <button type="button" aria-label="Delete message"
                        on:click=move |_| confirming.set(true)>"Delete"</button>
                </Show>
            </div>
            <Show when=move || menu.get().is_some()>
                <div class="menu-backdrop" aria-hidden="true"
                    on:click=move |_| {
                        if !long_pressed.get_value() {
                            close_menu(false);
                        }
                    }
                    on:contextmenu=move |ev| { ev.prevent_default(); close_menu(false); }></div>
                <div class="ctx-menu" role="menu" aria-label="Message actions" node_ref=menu_el
                    class:anchored=move || menu.get() == Some(MenuAt::Item)
                    style=move || match menu.get() {
                        Some(MenuAt::Pointer(x, y)) => format!("left: {x}px; top: {y}px"),
                        _ => String::new(),
                    }
                    on:keydown=move |ev: leptos::web_sys::KeyboardEvent| {
                        match ev.key().as_str() {
                            "ArrowDown" => { ev.prevent_default(); focus_entry(Some(1)); }
                            "ArrowUp" => { ev.prevent_default(); focus_entry(Some(-1)); }
                            "Home" => { ev.prevent_default(); focus_entry(None); }
                            "End" => { ev.prevent_default(); focus_entry(Some(0)); }
                            "Escape" => { ev.prevent_default(); ev.stop_propagation(); close_menu(true); }
                            "Tab" => { ev.prevent_default(); close_menu(true); }
                            _ => {}
                        }
                    }>
                    {entries.iter().map(|&(action, label)| {
                        let run = run.clone();
                        view! {
                            <button type="button" role="menuitem" tabindex="-1"
                                on:click=move |_| run(action)>{label}</button>
                        }
                    }).collect_view()}
                </div>
            </Show>
        </li>
    }
}

/// Copies a message's text to the clipboard (the runtime is not involved: nothing changes).
fn copy_text(view: ViewState, text: String) {
    #[cfg(target_arch = "wasm32")]
    crate::pwa::copy_text(view, text);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (view, text);
}

/// The files of a `FileList` (picker, drop, paste).
fn files_of(list: Option<leptos::web_sys::FileList>) -> Vec<leptos::web_sys::File> {
    list.map(|l| (0..l.length()).filter_map(|i| l.get(i)).collect())
        .unwrap_or_default()
}

/// A file in the history: name, size and type at once; progress, preview and save as its
/// bytes arrive.
#[component]
fn FileCard(file: crate::view::FileInfo) -> impl IntoView {
    use crate::view::{FileState, format_size, percent};
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    let root = file.root.clone();
    let state = Memo::new(move |_| {
        view.files
            .with(|f| f.get(&root).cloned().unwrap_or_default())
    });
    let name = file.name.clone();
    let size = file.size;
    let kind = if file.mime.is_empty() {
        "file".to_string()
    } else {
        file.mime.clone()
    };
    let is_image = file.mime.starts_with("image/");
    let is_video = file.mime.starts_with("video/");
    let label = format!("Transfer of {name}");
    let (cancel_label, retry_label, save_label) = (
        format!("Cancel download of {name}"),
        format!("Retry download of {name}"),
        format!("Save {name}"),
    );
    let preview_alt = format!("Preview of {name}");
    let name_s = name.clone();
    let (root_c, root_r, root_s) = (file.root.clone(), file.root.clone(), file.root.clone());
    let (i_c, i_r, i_s) = (intents.clone(), intents.clone(), intents);
    view! {
        <div class="file">
            {move || state.with(|s| s.preview.clone()).map(|url| {
                if is_video {
                    view! { <video class="preview" controls preload="metadata" src=url aria-label=preview_alt.clone()></video> }.into_any()
                } else if is_image {
                    view! { <img class="preview" src=url alt=preview_alt.clone()/> }.into_any()
                } else {
                    ().into_any()
                }
            })}
            <p class="file-head">
                <svg class="file-icon" aria-hidden="true" viewBox="0 0 24 24" width="18" height="18"
                    fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round">
                    <path d="M6 2h8l4 4v16H6z"/><path d="M14 2v4h4"/>
                </svg>
                <span class="file-name">{name.clone()}</span>
            </p>
            <p class="file-meta">{format_size(size)}" · "{kind}</p>
            {move || {
                let s = state.get();
                match s.state {
                    FileState::Stored => {
                        // The sending side: how much of the file went out to other devices
                        // this session (a second device fetching it counts again).
                        let sending = s.sent > 0 && s.sent_speed > 0.0;
                        let sent_pct = percent(s.sent, size);
                        let sent = (s.sent > 0).then(|| {
                            if sending {
                                format!("Sending {sent_pct}% · {}/s", format_size(s.sent_speed as u64))
                            } else {
                                format!("Sent {}", format_size(s.sent.min(size)))
                            }
                        });
                        let (root, intents, label) = (root_s.clone(), i_s.clone(), save_label.clone());
                        let sending_label = format!("Sending {}", name_s.clone());
                        view! {
                            {sending.then(|| view! {
                                <div class="file-progress">
                                    <div class="bar" role="progressbar" aria-label=sending_label
                                        aria-valuemin="0" aria-valuemax="100" aria-valuenow=sent_pct.to_string()>
                                        <div class="fill" style=format!("width: {sent_pct}%")></div>
                                    </div>
                                </div>
                            })}
                            <p class="file-actions">
                                <a href="#" class="save" aria-label=label on:click=move |ev| {
                                    ev.prevent_default();
                                    intents.send(Intent::SaveFile(root.clone()));
                                }>"Save"</a>
                                {sent.map(|t| view! { <span class="file-sent">{t}</span> })}
                            </p>
                        }.into_any()
                    }
                    FileState::Waiting | FileState::Downloading => {
                        let pct = percent(s.have, size);
                        let speed = if s.speed > 0.0 {
                            format!(" · {}/s", format_size(s.speed as u64))
                        } else if s.state == FileState::Waiting {
                            " · waiting for a device that has it".to_string()
                        } else {
                            String::new()
                        };
                        let (root, intents, cancel) = (root_c.clone(), i_c.clone(), cancel_label.clone());
                        view! {
                            <div class="file-progress">
                                <div class="bar" role="progressbar" aria-label=label.clone()
                                    aria-valuemin="0" aria-valuemax="100" aria-valuenow=pct.to_string()>
                                    <div class="fill" style=format!("width: {pct}%")></div>
                                </div>
                                <p class="file-status">{format!("{pct}%{speed}")}</p>
                                <button type="button" aria-label=cancel
                                    on:click=move |_| intents.send(Intent::CancelFile(root.clone()))>"Cancel"</button>
                            </div>
                        }.into_any()
                    }
                    FileState::Stopped | FileState::Failed(_) => {
                        let why = match &s.state {
                            FileState::Failed(reason) => reason.clone(),
                            _ => format!("Stopped at {}% on this device", percent(s.have, size)),
                        };
                        let (root, intents, retry) = (root_r.clone(), i_r.clone(), retry_label.clone());
                        view! {
                            <div class="file-progress">
                                <p class="file-status">{why}</p>
                                <button type="button" aria-label=retry
                                    on:click=move |_| intents.send(Intent::RetryFile(root.clone()))>"Retry"</button>
                            </div>
                        }.into_any()
                    }
                }
            }}
        </div>
    }
}

#[component]
fn Composer() -> impl IntoView {
    let intents = expect_context::<Intents>();
    let view = expect_context::<ViewState>();
    let text = RwSignal::new(String::new());
    let textarea = NodeRef::<leptos::html::Textarea>::new();
    // What another app shared becomes a draft: the person sees it, may edit it, and sends it.
    Effect::new(move |_| {
        if let Some(shared) = view.draft_text.get() {
            view.draft_text.set(None);
            text.update(|t| {
                if t.trim().is_empty() {
                    *t = shared;
                } else {
                    t.push('\n');
                    t.push_str(&shared);
                }
            });
            if let Some(el) = textarea.get() {
                let _ = el.focus();
            }
        }
    });
    // "name · size" of each shared file, in order.
    let draft_list = move || {
        view.draft_files.with(|files| {
            files
                .iter()
                .map(|f| {
                    format!(
                        "{} · {}",
                        f.name(),
                        crate::view::format_size(f.size() as u64)
                    )
                })
                .enumerate()
                .collect::<Vec<_>>()
        })
    };
    let send_intents = intents.clone();
    let send = move || {
        let body = text.get_untracked();
        if !body.trim().is_empty() {
            send_intents.send(Intent::Send(body));
            text.set(String::new());
        }
        let files = view.draft_files.get_untracked();
        if !files.is_empty() {
            view.draft_files.set(Vec::new());
            send_intents.send(Intent::SendFiles(files));
            #[cfg(target_arch = "wasm32")]
            crate::pwa::clear_share_inbox();
        }
    };
    let send_key = send.clone();
    let picker = NodeRef::<leptos::html::Input>::new();
    let intents_paste = expect_context::<Intents>();
    let intents_pick = intents_paste.clone();
    view! {
        <Show when=move || view.draft_files.with(|f| !f.is_empty())>
            <section class="draft-files" aria-labelledby="draft-files-heading">
                <h2 id="draft-files-heading" class="draft-files-heading">"Files to send"</h2>
                <ul>
                    <For each=draft_list key=|(i, name)| format!("{i}:{name}")
                        children=|(_, name)| view! { <li>{name}</li> }/>
                </ul>
                <p class="hint">"Shared from another app. They are sent when you press Send."</p>
                <button type="button" on:click=move |_| {
                    view.draft_files.set(Vec::new());
                    #[cfg(target_arch = "wasm32")]
                    crate::pwa::clear_share_inbox();
                }>"Don't send these files"</button>
            </section>
        </Show>
        <form class="composer" on:submit=move |ev| { ev.prevent_default(); send(); }>
            <textarea aria-label="Message" placeholder="Message" rows="1" node_ref=textarea
                prop:disabled=move || !view.ready.get()
                prop:value=move || text.get()
                on:input=move |ev| text.set(event_target_value(&ev))
                on:keydown=move |ev| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        send_key();
                    }
                }
                on:paste={
                    let intents = intents_paste.clone();
                    move |ev: leptos::web_sys::ClipboardEvent| {
                        // Pasted images (screenshots) become files; pasted text stays text.
                        let files = ev.clipboard_data().map(|d| files_of(d.files())).unwrap_or_default();
                        if !files.is_empty() {
                            ev.prevent_default();
                            intents.send(Intent::SendFiles(files));
                        }
                    }
                }></textarea>
            <input type="file" multiple class="visually-hidden" aria-label="Files to send"
                tabindex="-1" node_ref=picker
                on:change={
                    let intents = intents_pick.clone();
                    move |ev| {
                        use leptos::wasm_bindgen::JsCast;
                        if let Some(input) = ev.target()
                            .and_then(|t| t.dyn_into::<leptos::web_sys::HtmlInputElement>().ok())
                        {
                            let files = files_of(input.files());
                            input.set_value("");
                            if !files.is_empty() {
                                intents.send(Intent::SendFiles(files));
                            }
                        }
                    }
                }/>
            <button type="button" class="attach" aria-label="Attach files" title="Attach files"
                prop:disabled=move || !view.ready.get()
                on:click=move |_| {
                    if let Some(input) = picker.get() {
                        input.click();
                    }
                }>
                <svg aria-hidden="true" viewBox="0 0 24 24" width="20" height="20" fill="none"
                    stroke="currentColor" stroke-width="2" stroke-linecap="round">
                    <path d="M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9"/>
                </svg>
            </button>
            <button type="submit" class="primary">"Send"</button>
        </form>
    }
}
