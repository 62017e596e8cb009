//! What interrupts the screens: the "Join this space?" confirmation (a modal that takes focus),
//! the "Scan a code" camera view, and the error banner (an `alert`). Kept apart from chat and devices because either can
//! appear over both.

mod error_banner;
mod join;
mod scan;

pub(super) use error_banner::ErrorBanner;
pub(super) use join::JoinDialog;
pub(super) use scan::{ScanButton, ScanDialog, ScanState};
