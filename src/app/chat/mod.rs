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
mod note_editor;
mod search;
mod viewer;

pub(super) use composer::Composer;
pub(super) use first_run::{AddYourPhone, DevicesOpen};
pub(super) use history::{Filters, History, Pinned, UndoBar};
pub(super) use note_editor::{NoteEditor, NoteEditorState};
pub(super) use search::{SearchBox, SearchJump, SearchNav};
pub(super) use viewer::{ImageViewer, Viewer};

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

/// The history is one Tab stop (roving tabindex): the row last focused, else the newest
/// shown, has `tabindex=0`; the arrow keys, Home and End move between rows.
#[derive(Clone, Copy)]
pub(super) struct TabStop {
    /// The row last focused.
    pub focused: RwSignal<Option<ItemId>>,
    /// The row that takes Tab now.
    pub row: Memo<Option<ItemId>>,
}

/// How long a deleted message can be brought back before the delete goes to every device.
const UNDO_MS: u64 = 5_000;

/// The one delete that can still be undone. The row leaves the history at once; the
/// tombstone is written (and synced) only after [`UNDO_MS`], when another delete starts, or
/// when the page is hidden (a phone put away). Decision: a tab killed inside those seconds
/// keeps the message, the safe way round for a person's only copy.
#[derive(Clone, Copy)]
pub(super) struct UndoDelete {
    /// The deleted item and the number of its delete (a late timer must not commit a newer
    /// one).
    pub pending: RwSignal<Option<(ItemId, u32)>>,
    next: StoredValue<u32>,
}

impl UndoDelete {
    pub(super) fn new() -> Self {
        UndoDelete {
            pending: RwSignal::new(None),
            next: StoredValue::new(0),
        }
    }

    /// Takes `id` out of the history, with Undo; commits the delete that waited before it.
    pub(super) fn delete(self, intents: &crate::view::Intents, id: ItemId) {
        self.commit(intents);
        let n = self.next.get_value().wrapping_add(1);
        self.next.set_value(n);
        self.pending.set(Some((id, n)));
        let intents = intents.clone();
        set_timeout(
            move || {
                if self.pending.get_untracked() == Some((id, n)) {
                    self.commit(&intents);
                }
            },
            std::time::Duration::from_millis(UNDO_MS),
        );
    }

    /// Writes the waiting delete now.
    pub(super) fn commit(self, intents: &crate::view::Intents) {
        if let Some((id, _)) = self.pending.get_untracked() {
            self.pending.set(None);
            intents.send(crate::view::Intent::Delete(id));
        }
    }

    /// Brings the deleted message back.
    pub(super) fn undo(self) {
        self.pending.set(None);
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
