//! The device engine: what one Ferry device decides and remembers, independent of the
//! browser (the app, the host tests and a native peer run the same code).
//!
//! So far: this device's own state ([`local_state`]), what delivery marks may say
//! ([`delivery`]), which stored files may be freed ([`files`]), sending a file
//! ([`send`]: the hash pass, the item, the store pass, serving early), reading the mailbox
//! ([`mailbox`]: the server's answers, what counts as read and may be acknowledged), putting
//! things in it ([`upload`]: deltas, bases, file chunks, echo avoidance), the mailbox client
//! that sequences both against the server ([`mailbox_client`]: when to visit, and each
//! visit's requests, through the `MailboxHost` port), and reconnect timing
//! and socket retirement ([`presence`]), the link port and its router (current and retired
//! sockets, an in-memory network for tests: [`link`]). The rest (one
//! `Device` owning the replica) still lives in the app's runtime and moves here piece by
//! piece (issue #16).

pub mod delivery;
pub mod files;
pub mod link;
pub mod local_state;
pub mod mailbox;
pub mod mailbox_client;
pub mod presence;
pub mod send;
pub mod upload;

pub use link::{Link, LinkEvent, MemoryLink, MemoryNet, RouteError, Router};
pub use local_state::{
    IceServer, LOCAL_STATE_VERSION, LocalState, LocalStateError, MailboxEndpoint, MailboxState,
    Origin,
};
pub use mailbox::{FetchAnswer, FetchedEntry, Held};
pub use presence::{Backoff, Reconnect, Socket};
pub use send::{SendError, SendJob, SendStep};
pub use upload::{BaseDeclaration, FileStep, RoomView, Uploader};
