//! The chat screen: the history of messages and files, and the composer under it.
//!
//! `history` is the scrolling log (search, "Show earlier messages", dropped files); each entry
//! is an `item_row`, whose `message_menu` and `file_card` are split out because each is a
//! small state machine of its own; `composer` writes, attaches and sends.

mod composer;
mod file_card;
mod first_run;
mod history;
mod item_row;
mod message_menu;

pub(super) use composer::Composer;
pub(super) use first_run::{AddYourPhone, DevicesOpen};
pub(super) use history::History;

use ferry_core::ItemId;
use leptos::prelude::*;

/// The composer's message box.
const COMPOSER: &str = "textarea[aria-label='Message']";

/// Focus goes back to the composer after an edit is saved or cancelled and after a delete:
/// the person was writing, and goes on writing.
fn focus_composer() {
    crate::app::focus_later(COMPOSER, None);
}

/// The one message being edited and what its edit box holds. Kept outside the rows: a row is
/// rebuilt when its delivery wording changes, and an edit in progress must survive that (it
/// did not: the box closed and what was typed was lost). The composer opens an edit here too
/// (↑ in the empty box).
#[derive(Clone, Copy)]
pub(super) struct EditState {
    pub id: RwSignal<Option<ItemId>>,
    pub draft: RwSignal<String>,
}

impl EditState {
    pub(super) fn new() -> Self {
        EditState {
            id: RwSignal::new(None),
            draft: RwSignal::new(String::new()),
        }
    }
}

/// Per shown message, its delivery wording ("not yet on other devices", "on Laptop"): read by
/// each row instead of being part of its key, so a mark that moves re-words the row without
/// rebuilding it (a rebuilt row would take the focus and keys typed into its edit box).
#[derive(Clone, Copy)]
pub(super) struct Wording(pub Memo<std::collections::BTreeMap<ItemId, (bool, Option<String>)>>);

/// A touch screen without a mouse or trackpad: Enter there is a new line (a soft keyboard
/// has no Shift), and the Send button sends.
fn touch_only() -> bool {
    let Some(w) = leptos::web_sys::window() else {
        return false;
    };
    let fine = w
        .match_media("(any-pointer: fine)")
        .ok()
        .flatten()
        .is_some_and(|m| m.matches());
    w.navigator().max_touch_points() > 0 && !fine
}

/// The files of a `FileList` (picker, drop, paste).
fn files_of(list: Option<leptos::web_sys::FileList>) -> Vec<leptos::web_sys::File> {
    list.map(|l| (0..l.length()).filter_map(|i| l.get(i)).collect())
        .unwrap_or_default()
}
