//! Pairing: this space's link (copy, share, QR code) to add another device, and the form that
//! joins another space with its link (the "Join this space?" dialog then confirms).

use crate::app::dialogs::ScanButton;
use crate::view::{Intent, Intents, ViewState};
use leptos::prelude::*;
use leptos::wasm_bindgen::JsValue;

/// The pairing link with Copy and Share, the panel's confirmation line ("Link copied.",
/// "Device renamed.") and the link's QR code.
#[component]
pub(super) fn PairingLink() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    let intents_share = intents.clone();
    view! {
        <p>
            "Open this link on your other device (another browser, your phone) to add it \
             to this space "<strong class="fingerprint">{move || view.fingerprint.get()}</strong>
            ". Anyone with the link can join: share it only with yourself."
        </p>
        <label for="pairing-link">"Pairing link"</label>
        <div class="link-row">
            <input id="pairing-link" type="text" readonly
                prop:value=move || view.pairing_link.with(|l| JsValue::from_str(l))
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
        <QrCode label="QR code of the pairing link"/>
    }
}

/// The pairing link's QR code, an image named `label`. The code carries the space secret: it
/// goes to the DOM straight from the wiped copy in the view state, so the renderer keeps no
/// Rust copy of its own.
#[component]
pub(in crate::app) fn QrCode(label: &'static str) -> impl IntoView {
    let view = expect_context::<ViewState>();
    let qr = NodeRef::<leptos::html::Div>::new();
    Effect::new(move || {
        view.qr_svg.with(|svg| {
            if let Some(el) = qr.get() {
                el.set_inner_html(svg);
            }
        })
    });
    view! { <div class="qr" role="img" aria-label=label node_ref=qr></div> }
}

/// Joins another space with a pasted pairing link (the join dialog then asks first).
#[component]
pub(super) fn PasteLink() -> impl IntoView {
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
            <ScanButton/>
        </form>
    }
}
