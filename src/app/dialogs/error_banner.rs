//! The error banner: the runtime's current error as an `alert`, with "Dismiss".

use crate::view::{Intent, Intents, ViewState};
use leptos::prelude::*;

/// The current error, if any, with "Dismiss".
#[component]
pub(in crate::app) fn ErrorBanner() -> impl IntoView {
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
