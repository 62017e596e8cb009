//! View state: what the UI shows, as plain signals the runtime writes and components read.
//!
//! Components never do I/O; they read this state through context and send [`Intent`]s back
//! to the runtime. Split by role: `state` is what is on screen, `intent` what the person asked
//! for, `format` the pure wording helpers (tested on the host). Everything is re-exported
//! here, so `crate::view::X` stays the one path to use.

mod format;
mod intent;
mod rows;
mod state;

pub use format::*;
pub use intent::*;
pub use rows::*;
pub use state::*;
