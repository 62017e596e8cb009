//! What interrupts the screens: the "Join this space?" confirmation (a modal that takes focus)
//! and the error banner (an `alert`). Kept apart from chat and devices because either can
//! appear over both.

mod error_banner;
mod join;

pub(super) use error_banner::ErrorBanner;
pub(super) use join::JoinDialog;
