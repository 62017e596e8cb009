//! "Scan a code": a live camera view that reads the pairing QR code another device shows and
//! hands the link to the same "Join this space?" confirmation a pasted link gets.
//!
//! The button appears only where the device has a camera. The dialog is modal like the join
//! dialog (focus inside, Escape and Cancel close it, focus goes back), and closing it stops the
//! camera. A QR code that is not a Ferry pairing link says so and scanning goes on.

use crate::view::Intents;
use leptos::prelude::*;

/// Whether the scanner is open, and whether this device has a camera to offer it for.
#[derive(Clone, Copy)]
pub(in crate::app) struct ScanState {
    pub open: RwSignal<bool>,
    pub available: RwSignal<bool>,
}

impl ScanState {
    /// Closed; `available` turns true once the browser lists a camera.
    pub(in crate::app) fn new() -> Self {
        let state = ScanState {
            open: RwSignal::new(false),
            available: RwSignal::new(false),
        };
        #[cfg(target_arch = "wasm32")]
        leptos::task::spawn_local(async move {
            if crate::scan::camera::available().await {
                state.available.set(true);
            }
        });
        state
    }
}

/// The "Scan a code" button, shown only on a device with a camera.
#[component]
pub(in crate::app) fn ScanButton() -> impl IntoView {
    let scan = expect_context::<ScanState>();
    view! {
        <Show when=move || scan.available.get()>
            <button type="button" class="scan-button" on:click=move |_| scan.open.set(true)>
                "Scan a code"
            </button>
        </Show>
    }
}

/// The scanner dialog while it is open.
#[component]
pub(in crate::app) fn ScanDialog() -> impl IntoView {
    let scan = expect_context::<ScanState>();
    // The focus goes back to where it was (the "Scan a code" button) when the dialog closes.
    let previous = std::rc::Rc::new(std::cell::RefCell::new(None));
    Effect::new(move |_| {
        if scan.open.get() {
            if previous.borrow().is_none() {
                *previous.borrow_mut() = super::super::active_element();
            }
        } else if let Some(el) = previous.borrow_mut().take() {
            let _ = el.focus();
        }
    });
    view! {
        <Show when=move || scan.open.get()>
            <Scanner/>
        </Show>
    }
}

#[component]
fn Scanner() -> impl IntoView {
    let scan = expect_context::<ScanState>();
    let intents = expect_context::<Intents>();
    let video = NodeRef::<leptos::html::Video>::new();
    // Why the camera cannot be used (an alert), or what the last code read was not (a note).
    let problem = RwSignal::new(None::<String>);
    let note = RwSignal::new(None::<String>);
    let close = move || scan.open.set(false);
    super::super::focus_later(".dialog.scan .actions button", None);
    // Runs while the dialog is mounted: the camera stops when the loop ends (dropped).
    #[cfg(target_arch = "wasm32")]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        let alive = std::sync::Arc::new(AtomicBool::new(true));
        let running = alive.clone();
        on_cleanup(move || alive.store(false, Ordering::Relaxed));
        let running = move || running.load(Ordering::Relaxed);
        let intents = intents.clone();
        request_animation_frame(move || {
            leptos::task::spawn_local(async move {
                let Some(el) = video.get_untracked() else {
                    return;
                };
                let camera = match crate::scan::camera::Camera::open(&el).await {
                    Ok(camera) => camera,
                    Err(e) => {
                        if running() {
                            problem.set(Some(e.to_string()));
                        }
                        return;
                    }
                };
                let mut last_wrong = None::<String>;
                while running() {
                    gloo_timers::future::TimeoutFuture::new(150).await;
                    if !running() {
                        break;
                    }
                    let Some(text) = camera.read(&el).await else {
                        continue;
                    };
                    let text = zeroize::Zeroizing::new(text);
                    if ferry_core::PairingLink::parse(&text).is_ok() {
                        scan.open.set(false);
                        intents.send(crate::view::Intent::UseLink(text.to_string()));
                        break;
                    }
                    if last_wrong.as_deref() != Some(text.as_str()) {
                        last_wrong = Some(text.to_string());
                        note.set(Some(
                            "That QR code is not a Ferry pairing link. Point the camera at the \
                             code on your other device's Devices screen or \"Add your phone\" card."
                                .into(),
                        ));
                    }
                }
                drop(camera);
            });
        });
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (intents, video, note);
    view! {
        <div class="dialog-backdrop">
            <div class="dialog scan" role="dialog" aria-modal="true"
                aria-labelledby="scan-title" aria-describedby="scan-desc"
                on:keydown=move |ev: leptos::web_sys::KeyboardEvent| {
                    if ev.key() == "Escape" {
                        ev.prevent_default();
                        close();
                    }
                }>
                <h2 id="scan-title">"Scan a code"</h2>
                <p id="scan-desc">
                    "Point the camera at the QR code on your other device: its \"Add your \
                     phone\" card, or Devices there. This device then asks before it joins."
                </p>
                <video class="scan-video" aria-label="Camera" node_ref=video
                    autoplay=true muted=true playsinline=true></video>
                <Show when=move || problem.with(Option::is_some)>
                    <p class="problem" role="alert">{move || problem.get()}</p>
                </Show>
                <p class="notice" aria-live="polite">{move || note.get()}</p>
                <div class="actions">
                    <button type="button" on:click=move |_| close()>"Cancel"</button>
                </div>
            </div>
        </div>
    }
}
