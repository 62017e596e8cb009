//! The Devices screen, opened with the "Devices" toggle: the space and this device's place in it.
//!
//! One module per section: `list` (the devices of the space, this device's name), `pairing`
//! (the link, its QR code, joining another space), and under "Advanced" `connection`
//! (STUN/TURN, the plain-signaling warning), `mailbox`, `storage`, `diagnostics`.

mod connection;
mod diagnostics;
mod list;
mod mailbox;
mod pairing;
mod storage;

pub(super) use pairing::QrCode;

use connection::ConnectionSettings;
use diagnostics::Diagnostics;
use leptos::prelude::*;
use list::{DeviceList, RenameDevice};
use mailbox::MailboxSetting;
use pairing::{PairingLink, PasteLink};
use storage::{BackupSection, StorageSection};

/// The Devices screen: full screen on a phone, a side panel beside the chat on a wide
/// screen. "Back to chat" and Escape close it, and the focus goes back to the "Devices"
/// toggle. The space comes first (its devices, this device's name, adding a device); the
/// settings a person rarely needs sit under "Advanced", which opens by itself while one of
/// them reports a problem.
#[component]
pub(super) fn DevicesPanel() -> impl IntoView {
    let open = expect_context::<super::chat::DevicesOpen>().0;
    let view = expect_context::<crate::view::ViewState>();
    let close = move || {
        open.set(false);
        super::focus_later("button.devices-toggle", None);
    };
    let heading = NodeRef::<leptos::html::H2>::new();
    // Opened: the focus moves to the screen (its heading), so a screen reader starts there.
    Effect::new(move |_| {
        if let Some(h) = heading.get() {
            let _ = h.focus();
        }
    });
    let problem = move || {
        view.connection_problem.with(Option::is_some)
            || view.signal_warning.with(Option::is_some)
            || view.mailbox_refused.with(Option::is_some)
    };
    // A problem opens "Advanced" (never closes what the person opened).
    let advanced = NodeRef::<leptos::html::Details>::new();
    Effect::new(move |_| {
        if problem()
            && let Some(d) = advanced.get()
        {
            d.set_open(true);
        }
    });
    view! {
        <section id="devices-panel" class="panel devices" aria-labelledby="devices-title"
            on:keydown=move |ev: leptos::web_sys::KeyboardEvent| {
                if ev.key() == "Escape" && !ev.default_prevented() {
                    ev.prevent_default();
                    close();
                }
            }>
            <div class="panel-head">
                <button type="button" class="back" on:click=move |_| close()>
                    <span aria-hidden="true">"← "</span>"Back to chat"
                </button>
                <h2 id="devices-title" tabindex="-1" node_ref=heading>"Devices"</h2>
            </div>
            <DeviceList/>
            <RenameDevice/>
            <PairingLink/>
            <PasteLink/>
            <BackupSection/>
            <details class="advanced" node_ref=advanced>
                <summary>"Advanced"</summary>
                <ConnectionSettings/>
                <MailboxSetting/>
                <StorageSection/>
                <Diagnostics/>
            </details>
        </section>
    }
}
