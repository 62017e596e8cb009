//! The encrypted mailbox setting: devices never online together still sync through sealed
//! entries on the signaling server; turning it off keeps everything of this device local.

use crate::view::{Intent, Intents, ViewState};
use leptos::prelude::*;

/// The encrypted mailbox: on by default; off means nothing of this device is uploaded.
#[component]
pub(super) fn MailboxSetting() -> impl IntoView {
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
        <Show when=move || view.mailbox_refused.with(Option::is_some)>
            <p class="problem" role="note" aria-label="Mailbox problem">
                {move || view.mailbox_refused.get()}
            </p>
        </Show>
        <Show when=move || view.mailbox_held.with(Option::is_some)>
            <p class="hint">{move || view.mailbox_held.get()}</p>
        </Show>
    }
}
