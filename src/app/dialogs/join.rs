//! The "Join this space?" dialog for a pairing link: modal, so it takes focus, keeps Tab on its
//! buttons, closes with Escape, and gives focus back to where it was.

use crate::app::{active_element, focus_later};
use crate::view::{Intent, Intents, ViewState};
use leptos::prelude::*;

/// "Join this space?" while a pairing link waits for confirmation.
#[component]
pub(in crate::app) fn JoinDialog() -> impl IntoView {
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
