//! The Leptos UI. Components render view state and send intents; they do no I/O.
//!
//! Accessibility is the contract the acceptance tests rely on: the history is a `log` named
//! "Messages", the composer a textbox "Message" and a button "Send", connection state a
//! `status`, errors an `alert`, and the pairing view a "Devices" toggle, a read-only textbox
//! "Pairing link", "Copy link" and a "Join" confirmation.
//!
//! Split by screen: `chat` is the history and the composer, `devices` the Devices panel, and
//! `dialogs` what interrupts both (the join confirmation, the camera scanner, the error banner). This module is
//! the top-level layout and the focus helpers the screens share.

mod chat;
mod devices;
mod dialogs;

use crate::view::{Intent, Intents, NetStatus, ViewState};
use chat::{
    AddYourPhone, Composer, DevicesOpen, Filters, History, ImageViewer, NoteEditor,
    NoteEditorState, Pinned, SearchBox, SearchJump, SearchNav, UndoBar, Viewer,
};
use devices::DevicesPanel;
use dialogs::{ErrorBanner, JoinDialog, ScanDialog, ScanState};
use futures::channel::mpsc::UnboundedSender;
use leptos::prelude::*;

/// The whole app.
#[component]
pub fn App(view: ViewState, intents: UnboundedSender<Intent>) -> impl IntoView {
    provide_context(view);
    provide_context(Intents::new(intents, view));
    provide_context(chat::EditState::new());
    provide_context(chat::UndoDelete::new());
    provide_context(SearchJump::new(view));
    provide_context(Viewer::new());
    provide_context(NoteEditorState::new());
    provide_context(ScanState::new());
    let devices_open = RwSignal::new(false);
    provide_context(DevicesOpen(devices_open));
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
        <div class="app" class:with-devices=move || devices_open.get()>
            <header class="topbar">
                <div class="title">
                    <h1>"Ferry"</h1>
                    // One line: the connection, then (when no device is connected) when this
                    // one last synced and what waits in the mailbox, each after a dot, cut
                    // short with an ellipsis on a narrow screen (screen readers get it whole).
                    <div class="status-line">
                    <p class="status" role="status" aria-live="polite"
                        data-state=move || format!("{:?}", view.status.get())>
                        {move || view.status.get().text()}
                    </p>
                    // "Last synced" only means something once there is another device: alone,
                    // the first-run card says what to do instead of a negative line.
                    <Show when=move || {
                        view.devices.with(|d| d.len() > 1)
                            && !matches!(view.status.get(), NetStatus::Online { peers } if peers > 0)
                    }>
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
                </div>
                <Show when=move || view.can_install.get()>
                    {
                        let intents = expect_context::<Intents>();
                        view! {
                            <button type="button" on:click=move |_| intents.send(Intent::Install)>"Install"</button>
                        }
                    }
                </Show>
                <SearchBox/>
                <button type="button" class="devices-toggle"
                    aria-expanded=move || devices_open.get().to_string()
                    aria-controls="devices-panel"
                    on:click=move |_| devices_open.update(|o| *o = !*o)>
                    "Devices"
                </button>
            </header>
            <main class="main">
                <div class="chat-column">
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
                    {
                        let intents = expect_context::<Intents>();
                        view! {
                            <div class="banner hint">
                                <span>"Install: tap Share "<span aria-hidden="true">"(□↑)"</span>", then Add to Home Screen"</span>
                                <button type="button" on:click=move |_| dismiss_ios_hint(view, &intents)>"Got it"</button>
                            </div>
                        }
                    }
                </Show>
                <p class="toast" aria-live="polite">{move || view.toast.get()}</p>
                <JoinDialog/>
                <ScanDialog/>
                <ImageViewer/>
                <NoteEditor/>
                    <AddYourPhone/>
                    <SearchNav/>
                    <Pinned/>
                    <Filters/>
                    <History/>
                    <UndoBar/>
                    <Composer/>
                </div>
                <Show when=move || devices_open.get()>
                    <DevicesPanel/>
                </Show>
            </main>
        </div>
    }
}

/// Hides the iOS install hint at once; the runtime remembers the choice for this browser.
fn dismiss_ios_hint(view: ViewState, intents: &Intents) {
    view.ios_hint.set(false);
    intents.send(Intent::DismissIosHint);
}

/// Focuses an element that is already in the DOM, or will be after this render.
fn focus_later(selector: impl Into<String>, within: Option<leptos::web_sys::Element>) {
    let selector: String = selector.into();
    request_animation_frame(move || {
        use leptos::wasm_bindgen::JsCast;
        let found = match within {
            Some(root) => root.query_selector(&selector).ok().flatten(),
            None => document().query_selector(&selector).ok().flatten(),
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
