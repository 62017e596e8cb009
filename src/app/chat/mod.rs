//! The chat screen: the history of messages and files, and the composer under it.
//!
//! `history` is the scrolling log (search, "Show earlier messages", dropped files); each entry
//! is an `item_row`, whose `message_menu` and `file_card` are split out because each is a
//! small state machine of its own; `composer` writes, attaches and sends.

mod composer;
mod file_card;
mod history;
mod item_row;
mod message_menu;

pub(super) use composer::Composer;
pub(super) use history::History;

/// The files of a `FileList` (picker, drop, paste).
fn files_of(list: Option<leptos::web_sys::FileList>) -> Vec<leptos::web_sys::File> {
    list.map(|l| (0..l.length()).filter_map(|i| l.get(i)).collect())
        .unwrap_or_default()
}
