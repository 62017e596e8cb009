//! Connection settings: the STUN/TURN servers this device uses, and the warning when the
//! signaling server is reached without TLS across a network.

use crate::view::{Intent, Intents, ViewState};
use leptos::prelude::*;

/// STUN/TURN servers for this device: behind CGNAT or a strict firewall, a TURN relay is
/// the only way devices reach each other.
#[component]
pub(super) fn ConnectionSettings() -> impl IntoView {
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
