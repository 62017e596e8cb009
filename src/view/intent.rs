//! What the person asked for, as [`Intent`]s, and [`Intents`], the sender components use.
//!
//! This is the only way out of the UI: components do no I/O themselves, so every side effect
//! (storage, network, clipboard, share sheet) starts from an intent. Page-local ones (the
//! clipboard, the iOS hint, the share inbox) are handled at once, inside the gesture that sent
//! them (`pwa::handle_now`); the runtime handles the rest. Ids are
//! the core's typed ids, carried from the document through the view state as they are, so no
//! handler parses text back into an id.

use ferry_core::{BlobId, ItemId};
use futures::channel::mpsc::UnboundedSender;

/// Something the person asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Send a text.
    Send(String),
    /// Accept the pending pairing link.
    Join,
    /// Decline the pending pairing link.
    CancelJoin,
    /// Copy the pairing link to the clipboard.
    CopyLink,
    /// Copy a message's text to the clipboard (the toast says "Copied", or why not).
    CopyText(String),
    /// Dismiss the current error.
    DismissError,
    /// The URL fragment changed (a pairing link pasted into the address bar).
    CheckLocation,
    /// Replace the text of an item.
    Edit(ItemId, String),
    /// Delete an item on every device.
    Delete(ItemId),
    /// Pin an item above the history (`true`) or unpin it, on every device.
    Pin(ItemId, bool),
    /// Write a task.
    AddTask(String),
    /// Send what the clipboard holds (a text, or an image or file) as one item.
    PasteAsMessage,
    /// Check (`true`) or uncheck a task, on every device.
    Check(ItemId, bool),
    /// Export a backup file (with the whole history, or only the current state).
    ExportBackup {
        /// Include the automerge history.
        with_history: bool,
    },
    /// Merge a backup file into this space (`true`: the person agreed to merge a backup of
    /// another space).
    ImportBackup(leptos::web_sys::File, bool),
    /// Write a note under an id the editor chose (its edits name it).
    AddNote {
        /// The note's id.
        id: ItemId,
        /// Its title.
        title: String,
        /// Its body.
        body: String,
    },
    /// Edit a note as its editor shows it: `base` is the body the change was made on (the
    /// core moves the change onto the body as it is now, keeping a peer's edits).
    EditNote {
        /// The note.
        id: ItemId,
        /// Its title now.
        title: String,
        /// The body the change was made on.
        base: String,
        /// The body now.
        body: String,
    },
    /// Join with a pairing link pasted into the app.
    UseLink(String),
    /// Rename this device.
    Rename(String),
    /// Share the pairing link through the system share sheet.
    Share,
    /// Use these STUN/TURN servers (empty list = back to the configured defaults).
    SetIce(Vec<crate::config::IceServer>),
    /// Activate the waiting new version and reload.
    ApplyUpdate,
    /// Show the browser's install dialog.
    Install,
    /// Hide the iOS "Add to Home Screen" hint for good on this browser.
    DismissIosHint,
    /// Send these files (attach button, drop, paste).
    SendFiles(Vec<leptos::web_sys::File>),
    /// The files shared from another app were sent or discarded: empty the share inbox.
    ClearShareInbox,
    /// Stop downloading a file on this device.
    CancelFile(BlobId),
    /// Download a stopped or failed file again.
    RetryFile(BlobId),
    /// Save a stored file with its original name.
    SaveFile(BlobId),
    /// Use (or stop using) the encrypted mailbox on the signaling server.
    SetMailbox(bool),
    /// Ask the browser again to keep Ferry's storage (persistent storage).
    KeepStorage,
}

/// Sends intents to the runtime. Cheap to clone; shared through context.
#[derive(Clone)]
pub struct Intents {
    tx: UnboundedSender<Intent>,
    /// For the page-local intents handled at once (their confirmations show in the view).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    view: super::ViewState,
}

impl Intents {
    /// A sender to the runtime behind `tx`.
    pub fn new(tx: UnboundedSender<Intent>, view: super::ViewState) -> Self {
        Intents { tx, view }
    }

    /// Handles a page-local intent now, or queues it for the runtime (dropped only if the
    /// runtime is gone, i.e. the page is closing). Queued behind the runtime's network work, a
    /// page-local one could come too late: the clipboard wants the user's gesture, and a reload
    /// right after "Got it" would bring the iOS hint back.
    pub fn send(&self, intent: Intent) {
        #[cfg(target_arch = "wasm32")]
        let Some(intent) = crate::pwa::handle_now(self.view, intent) else {
            return;
        };
        let _ = self.tx.unbounded_send(intent);
        #[cfg(target_arch = "wasm32")]
        crate::wake::wake();
    }
}
