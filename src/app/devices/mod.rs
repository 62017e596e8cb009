//! The Devices panel, opened with the "Devices" toggle: the space and this device's place in it.
//!
//! One module per section, in the order they appear: `pairing` (the link, its QR code, joining
//! another space), `list` (this device's name, the devices of the space), `connection`
//! (STUN/TURN, the plain-signaling warning), `mailbox`, `diagnostics`.

mod connection;
mod diagnostics;
mod list;
mod mailbox;
mod pairing;

pub(super) use pairing::QrCode;

use connection::ConnectionSettings;
use diagnostics::Diagnostics;
use leptos::prelude::*;
use list::{DeviceList, RenameDevice};
use mailbox::MailboxSetting;
use pairing::{PairingLink, PasteLink};

#[component]
pub(super) fn DevicesPanel() -> impl IntoView {
    view! {
        <section id="devices-panel" class="panel" aria-labelledby="devices-title">
            <h2 id="devices-title">"Devices"</h2>
            <PairingLink/>
            <PasteLink/>
            <RenameDevice/>
            <DeviceList/>
            <ConnectionSettings/>
            <MailboxSetting/>
            <Diagnostics/>
        </section>
    }
}
