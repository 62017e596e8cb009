//! The first-run card: while this device is alone in its space, the chat offers to add the
//! person's phone, with the pairing link's QR code large enough to scan from across a desk.
//! It also offers "Scan a code" where this device has a camera: the card is what a new phone
//! shows too, and from it the phone reads the laptop's code. (Short codes: issue #20.)

use crate::app::devices::QrCode;
use crate::app::dialogs::ScanButton;
use crate::view::{Intent, Intents, ViewState};
use leptos::prelude::*;

/// Whether the Devices panel is open (the card then steps aside: the panel shows the same
/// link and code, and one of each on screen is enough).
#[derive(Clone, Copy)]
pub(in crate::app) struct DevicesOpen(pub RwSignal<bool>);

/// "Add your phone": the QR code, Copy and Share, and "Not now".
#[component]
pub(in crate::app) fn AddYourPhone() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let open = expect_context::<DevicesOpen>().0;
    // Dismissed for this page: the Devices panel keeps the same link.
    let dismissed = RwSignal::new(false);
    let alone = move || view.devices.with(|d| d.len() <= 1);
    let shown = move || {
        view.ready.get()
            && alone()
            && !open.get()
            && !dismissed.get()
            // A search wants the room for its matches.
            && view.search.with(|q| q.trim().is_empty())
            && !view.pairing_link.with(|l| l.is_empty())
    };
    view! {
        <Show when=shown>
            {move || if view.cleared.with(Option::is_some) {
                view! { <Cleared/> }.into_any()
            } else {
                view! { <Card dismissed/> }.into_any()
            }}
        </Show>
    }
}

/// Instead of the first-run card when the browser cleared Ferry's data: what happened, and
/// how to get everything back (the other devices still have it).
#[component]
fn Cleared() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let open = expect_context::<DevicesOpen>().0;
    view! {
        <section class="first-run cleared" aria-labelledby="cleared-title">
            <h2 id="cleared-title">"This browser cleared Ferry's data"</h2>
            <p>
                {move || format!(
                    "Ferry was last here with your history on {}. Browsers clear a site's data                      when space runs low, or after days unused. Your other devices still have                      everything: open a pairing link from one of them (its Devices), or scan its                      code, and it all comes back here. A backup file can be imported too.",
                    view.cleared.get().unwrap_or_default()
                )}
            </p>
            <div class="first-run-actions">
                <ScanButton/>
                <button type="button" on:click=move |_| open.set(true)>"Import a backup"</button>
            </div>
        </section>
    }
}

#[component]
fn Card(dismissed: RwSignal<bool>) -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    let share = intents.clone();
    view! {
        <section class="first-run" aria-labelledby="first-run-title">
            <h2 id="first-run-title">"Add your phone"</h2>
            <p>
                "Scan this code with your phone's camera (or open the link on any other \
                 device). What you write then appears on both, even when they are not online \
                 at the same time. On the phone, open Ferry and choose \"Scan a code\" if its \
                 camera app does not open links."
            </p>
            <QrCode label="QR code to add your phone"/>
            <div class="first-run-actions">
                <button type="button" class="primary"
                    on:click=move |_| intents.send(Intent::CopyLink)>"Copy link"</button>
                <Show when=move || view.can_share.get()>
                    {
                        let share = share.clone();
                        view! {
                            <button type="button" on:click=move |_| share.send(Intent::Share)>
                                "Share link"
                            </button>
                        }
                    }
                </Show>
                <ScanButton/>
                <button type="button" on:click=move |_| dismissed.set(true)>"Not now"</button>
            </div>
            <p class="notice" aria-live="polite">{move || view.notice.get()}</p>
        </section>
    }
}
