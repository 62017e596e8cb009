//! Storage, in plain words: how much this device holds, and whether the browser has promised
//! to keep it. Browsers clear the storage of a site that is not "persistent" when space runs
//! low (Safari after a week unused), and on this device Ferry's storage may be the person's
//! only copy of their history.

use crate::view::{Intent, Intents, ViewState};
use leptos::prelude::*;

/// Devices → Backup: **Export backup** (everything, with the history) and **Export without
/// history** (the current state only), and what the last export did.
#[component]
pub(super) fn BackupSection() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    let busy = move || {
        view.backup_status
            .with(|s| s.as_deref().is_some_and(|s| s.ends_with('…')))
    };
    let (all, current) = (intents.clone(), intents.clone());
    let (import_pick, import_yes) = (intents.clone(), intents);
    let picker = NodeRef::<leptos::html::Input>::new();
    view! {
        <section class="backup-section" aria-labelledby="backup-title">
            <h3 id="backup-title">"Backup"</h3>
            <p>"One file with every message, note, task and the files this device holds, that you can keep and open without Ferry."</p>
            <div class="actions">
                <button type="button" prop:disabled=busy
                    on:click=move |_| all.send(Intent::ExportBackup { with_history: true })>"Export backup"</button>
                <button type="button" prop:disabled=busy
                    on:click=move |_| current.send(Intent::ExportBackup { with_history: false })>"Export without history"</button>
                <button type="button" prop:disabled=busy
                    on:click=move |_| {
                        if let Some(input) = picker.get() {
                            input.click();
                        }
                    }>"Import backup"</button>
            </div>
            // Opened by "Import backup"; tests find it by its label.
            <input type="file" accept=".ferry,application/zip" class="visually-hidden"
                aria-label="Backup file to import" aria-hidden="true" tabindex="-1" node_ref=picker
                on:change={
                    let import = import_pick.clone();
                    move |ev| {
                        use leptos::wasm_bindgen::JsCast;
                        if let Some(input) = ev.target()
                            .and_then(|t| t.dyn_into::<leptos::web_sys::HtmlInputElement>().ok())
                        {
                            let file = input.files().and_then(|l| l.get(0));
                            input.set_value("");
                            if let Some(file) = file {
                                import.send(Intent::ImportBackup(file, false));
                            }
                        }
                    }
                }/>
            <p class="backup-status" aria-live="polite">{move || view.backup_status.get()}</p>
            <Show when=move || view.import_offer.with(Option::is_some)>
                {
                    let merge = import_yes.clone();
                    view! {
                        <div class="import-offer" role="alertdialog" aria-labelledby="import-offer-text">
                            <p id="import-offer-text">
                                {move || view.import_offer.with(|o| o.as_ref().map(|(_, space)| format!(
                                    "This backup is of another space ({space}). Merge its items into this space?                                      To join that space instead, use a pairing link from one of its devices."
                                )))}
                            </p>
                            <button type="button" class="primary" on:click={
                                let merge = merge.clone();
                                move |_| {
                                    if let Some((file, _)) = view.import_offer.get_untracked() {
                                        merge.send(Intent::ImportBackup(file, true));
                                    }
                                }
                            }>"Merge into this space"</button>
                            <button type="button" on:click=move |_| view.import_offer.set(None)>"Cancel"</button>
                        </div>
                    }
                }
            </Show>
        </section>
    }
}

/// Usage, persistence, and a way to ask for it again.
#[component]
pub(super) fn StorageSection() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    view! {
        <section class="storage-section" aria-labelledby="storage-title">
            <h3 id="storage-title">"Storage"</h3>
            <p class="storage">
                {move || view.storage.get().unwrap_or_else(|| "Storage used: unknown".into())}
            </p>
            <p class="persistence" data-testid="persistence">
                {move || match view.persisted.get() {
                    Some(true) => "Kept: this browser will not clear Ferry's data to free space.",
                    Some(false) => "Not kept yet: this browser may clear Ferry's data when space \
                         runs low. Installing Ferry, or using it often, usually makes it keep \
                         the data. Your other devices keep their own copy.",
                    None => "This browser does not say whether it keeps Ferry's data.",
                }}
            </p>
            <Show when=move || view.persisted.get() == Some(false)>
                {
                    let intents = intents.clone();
                    view! {
                        <button type="button" on:click=move |_| intents.send(Intent::KeepStorage)>
                            "Ask to keep data"
                        </button>
                    }
                }
            </Show>
        </section>
    }
}
