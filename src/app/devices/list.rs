//! This device's name and the devices of the space, with whether and how each is connected.

use crate::view::{Intent, Intents, ViewState};
use leptos::prelude::*;

/// This device's name, as the other devices show it.
#[component]
pub(super) fn RenameDevice() -> impl IntoView {
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

/// What is said of a device whose browser has not promised to keep Ferry's data.
const AT_RISK: &str = "the browser may clear Ferry's data there. Installing Ferry on it (on an iPhone: Share, then Add to Home Screen) usually makes the browser keep it.";

/// Every device of the space: online (and by which path) or when it was last seen.
#[component]
pub(super) fn DeviceList() -> impl IntoView {
    let view = expect_context::<ViewState>();
    // Other devices whose browser may clear Ferry's data: said once, above the list.
    let at_risk = move || {
        view.devices.with(|d| {
            d.iter()
                .filter(|d| d.at_risk && !d.this)
                .map(|d| d.name.clone())
                .collect::<Vec<_>>()
        })
    };
    view! {
        <h3>"In this space"</h3>
        {move || at_risk().into_iter().map(|name| view! {
            <p class="storage-warning">
                {format!("{name}: {AT_RISK}")}
            </p>
        }).collect_view()}
        <ul class="device-list" aria-label="Devices in this space">
            <For each=move || view.devices.get()
                key=|d| (d.id.clone(), d.online, d.name.clone(), d.last_seen.clone(), d.path.clone(), d.at_risk)
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
    }
}
