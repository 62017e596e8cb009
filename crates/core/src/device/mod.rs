//! The device engine: what one Ferry device decides and remembers, independent of the
//! browser (the app, the host tests and a native peer run the same code).
//!
//! So far: this device's own state ([`local_state`]), what delivery marks may say
//! ([`delivery`]), which stored files may be freed ([`files`]), the parsing of the mailbox server's answers ([`mailbox`]), and reconnect
//! timing and socket retirement ([`presence`]). The presence, delivery, file and mailbox decisions still live in the
//! app's runtime and move here piece by piece (issue #16).

pub mod delivery;
pub mod files;
pub mod local_state;
pub mod mailbox;
pub mod presence;

pub use local_state::{
    IceServer, LOCAL_STATE_VERSION, LocalState, LocalStateError, MailboxEndpoint, MailboxState,
    Origin,
};
pub use mailbox::{FetchAnswer, FetchedEntry, Held};
pub use presence::{Backoff, Reconnect, Socket};
