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
//! and socket retirement ([`presence`]), the sibling tabs' presence protocol ([`tabs`]), the link port and its router (current and retired
//! sockets, an in-memory network for tests: [`link`]). [`Device`] ([`engine`]) is the
//! device itself: it owns the replica, the local state, the peer→device map, delivery
//! marks and "last synced", reconnect timing and the file set, takes [`Input`]s and returns
//! [`Effect`]s (sends on a lane, storage writes, view patches). The mailbox visits and the
//! file chunk I/O still run in the executor around it (issue #16 goes on).

pub mod delivery;
pub mod engine;
pub mod files;
pub mod link;
pub mod local_state;
pub mod mailbox;
pub mod mailbox_client;
pub mod presence;
pub mod send;
pub mod tabs;
pub mod upload;

pub use engine::{Device, DeviceError, Effect, Input, Intent, LocalChange, ViewPatch, coalesce};
pub use link::{Link, LinkEvent, MemoryLink, MemoryNet, RouteError, Router};
pub use local_state::{
    IceServer, LOCAL_STATE_VERSION, LocalState, LocalStateError, MailboxEndpoint, MailboxState,
    Origin,
};
pub use mailbox::{FetchAnswer, FetchedEntry, Held};
pub use presence::{Backoff, Connectivity, Reconnect, Socket, SocketSeen};
pub use send::{SendError, SendJob, SendStep};
pub use upload::{BaseDeclaration, FileStep, RoomView, Uploader};
