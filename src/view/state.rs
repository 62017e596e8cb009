//! The view state: what the UI shows, as plain signals the runtime writes and components read.
//!
//! [`ViewState`] is the whole screen; the row types (items, devices, files) are built by the
//! runtime with [`item_views`] and [`display_names`], already worded; items and files carry the
//! core's typed ids, so components render them and name them back in intents as they are.

use super::format_time;
use ferry_core::{BlobId, DeviceInfo, Item, ItemId};
use leptos::prelude::*;
use zeroize::Zeroizing;

/// How the device is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetStatus {
    /// Starting up or reconnecting to the signaling endpoint.
    #[default]
    Connecting,
    /// Reachable signaling; `peers` other devices connected.
    Online {
        /// Connected and identified devices.
        peers: usize,
    },
    /// No signaling and no peers.
    Offline,
}

/// The core's verdict, as the status line shows it.
impl From<ferry_core::device::Connectivity> for NetStatus {
    fn from(c: ferry_core::device::Connectivity) -> Self {
        use ferry_core::device::Connectivity;
        match c {
            Connectivity::Connecting => NetStatus::Connecting,
            Connectivity::Online { peers } => NetStatus::Online { peers },
            Connectivity::Offline => NetStatus::Offline,
        }
    }
}

impl NetStatus {
    /// The status line a person (or screen reader) reads.
    pub fn text(self) -> String {
        match self {
            NetStatus::Online { peers: 1 } => "1 device connected".into(),
            NetStatus::Online { peers: 0 } => "No other devices connected".into(),
            NetStatus::Online { peers } => format!("{peers} devices connected"),
            NetStatus::Connecting => "Connecting…".into(),
            NetStatus::Offline => "offline".into(),
        }
    }
}

/// One history entry, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemView {
    /// Stable key for the keyed list; the item that Edit and Delete name.
    pub id: ItemId,
    /// Text body; a file's caption.
    pub text: String,
    /// Which device wrote it.
    pub author: String,
    /// Whether the row names its author: only in a space of several devices, and only when
    /// the author differs from the row above (or a new day starts).
    pub show_author: bool,
    /// Written on this device.
    pub mine: bool,
    /// Local time, "HH:MM".
    pub time: String,
    /// Full local date and time for the tooltip / `datetime`.
    pub datetime: String,
    /// The text was edited after it was written.
    pub edited: bool,
    /// Written here and not yet known to be on another device.
    pub pending: bool,
    /// "Today", "Yesterday" or the date, on the first item of each day.
    pub day: Option<String>,
    /// The file this item carries (its bytes travel separately, see [`FileView`]).
    pub file: Option<FileInfo>,
    /// When it was written (ms since the epoch), for the relative age ("5 min ago").
    pub at_ms: u64,
    /// For items written here, which devices have them ("on Phone · not yet on Tablet").
    pub delivery: Option<String>,
    /// Pinned above the history (on every device).
    pub pinned: bool,
    /// A task, and whether it is done; `None` for anything else.
    pub task: Option<bool>,
    /// A note: [`ItemView::text`] is its title and this its body.
    pub note: bool,
    /// A note's body (empty for anything else).
    pub body: String,
    /// A kind this version does not know (a newer Ferry wrote it): shown as
    /// [`NEWER_VERSION`], never edited here (its content may not be its `text`), only deleted.
    pub newer: bool,
}

/// What an item of a kind this version does not know says instead of its content.
pub const NEWER_VERSION: &str = "Open Ferry's newer version to see this item";

impl ItemView {
    /// Whether a search for `query` (already lower-case) finds this entry: in its text (a
    /// file's caption) or a file's name.
    pub fn matches(&self, query: &str) -> bool {
        self.text.to_lowercase().contains(query)
            || self.body.to_lowercase().contains(query)
            || self
                .file
                .as_ref()
                .is_some_and(|f| f.name.to_lowercase().contains(query))
    }
}

/// The history's filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Everything (the newest window).
    All,
    /// Notes.
    Notes,
    /// Tasks.
    Tasks,
    /// Files.
    Files,
    /// Items with an http(s) link.
    Links,
}

impl Filter {
    /// Every filter, in the order shown.
    pub const ALL: [Filter; 5] = [
        Filter::All,
        Filter::Notes,
        Filter::Tasks,
        Filter::Files,
        Filter::Links,
    ];

    /// Its button's name.
    pub fn name(self) -> &'static str {
        match self {
            Filter::All => "All",
            Filter::Notes => "Notes",
            Filter::Tasks => "Tasks",
            Filter::Files => "Files",
            Filter::Links => "Links",
        }
    }

    /// Whether `item` is shown under this filter.
    pub fn keeps(self, item: &ItemView) -> bool {
        match self {
            Filter::All => true,
            Filter::Notes => item.note,
            Filter::Tasks => item.task.is_some(),
            Filter::Files => item.file.is_some(),
            Filter::Links => [&item.text, &item.body].into_iter().any(|t| {
                super::format::linkify(t)
                    .iter()
                    .any(|s| matches!(s, super::format::Segment::Link(_)))
            }),
        }
    }
}

/// A file item's metadata, from the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Root hash: the file's id (as hex, its key in [`ViewState::files`]).
    pub root: BlobId,
    /// Original file name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type ("" if unknown).
    pub mime: String,
}

/// Where a file's bytes are on this device.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum FileState {
    /// Not here yet; waiting for a device that has it.
    #[default]
    Waiting,
    /// Chunks are arriving.
    Downloading,
    /// Stopped by the person on this device.
    Stopped,
    /// Stopped by an error (storage full, ...).
    Failed(String),
    /// Every chunk is stored and verified here.
    Stored,
}

/// Live transfer state of one file, keyed by root in [`ViewState::files`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FileView {
    /// Where the bytes are.
    pub state: FileState,
    /// Bytes stored on this device.
    pub have: u64,
    /// Bytes per second over the last seconds of a download.
    pub speed: f64,
    /// Bytes sent to other devices this session (the sending side's progress).
    pub sent: u64,
    /// Bytes per second sent over the last seconds.
    pub sent_speed: f64,
    /// An object URL of the whole file for previews (small images and videos).
    pub preview: Option<String>,
}

/// One device of the space, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// Device id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// This device.
    pub this: bool,
    /// Currently connected.
    pub online: bool,
    /// When this device last saw it connected ("2026-11-24 14:52"), if ever.
    pub last_seen: Option<String>,
    /// How it is reached right now ("direct", "relayed via TURN"), when connected over WebRTC.
    pub path: Option<String>,
    /// It said its browser has not promised to keep Ferry's data (it may clear it).
    pub at_risk: bool,
}

/// What each end of a failed connection could offer, as ICE reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailedPath {
    /// This device gathered a relay (TURN) candidate: its TURN server answered.
    pub local_relay: bool,
    /// The other device offered a relay candidate.
    pub remote_relay: bool,
    /// This device has a TURN server configured.
    pub turn_configured: bool,
    /// This device learned its public address (a server-reflexive candidate): a STUN or TURN
    /// server answered it over UDP.
    pub local_reflexive: bool,
    /// This device has a STUN server or a TURN server over UDP configured (what a network
    /// that blocks UDP silences).
    pub udp_servers: bool,
    /// This device has a TURN server over TCP or TLS configured (`?transport=tcp`, `turns:`).
    pub tcp_relay: bool,
    /// Every TURN server this device has is reached over TLS (`turns:`).
    pub tls_relays_only: bool,
}

/// A pairing link waiting for confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOffer {
    /// Short fingerprint of the space to join.
    pub fingerprint: String,
}

/// Items shown at first; older ones come with "Show earlier messages" (keeps the page fast
/// with a very long history).
pub const RENDER_WINDOW: usize = 1000;

/// Everything the UI shows. `Copy`: signals are handles.
#[derive(Clone, Copy)]
pub struct ViewState {
    /// Finished loading local state.
    pub ready: RwSignal<bool>,
    /// History in display order.
    pub items: RwSignal<Vec<ItemView>>,
    /// Devices of the space.
    pub devices: RwSignal<Vec<DeviceView>>,
    /// Connection status.
    pub status: RwSignal<NetStatus>,
    /// Current error, shown as an alert.
    pub error: RwSignal<Option<String>>,
    /// Transient confirmation ("Link copied").
    pub notice: RwSignal<Option<String>>,
    /// This space's pairing link. It carries the space secret, so the copy kept here is
    /// wiped when replaced (the DOM's copy is JavaScript's and cannot be).
    pub pairing_link: RwSignal<Zeroizing<String>>,
    /// This space's fingerprint.
    pub fingerprint: RwSignal<String>,
    /// A pairing link awaiting "Join".
    pub pending_join: RwSignal<Option<JoinOffer>>,
    /// This device's name.
    pub device_name: RwSignal<String>,
    /// The pairing link as an SVG QR code (the secret again, so wiped when replaced).
    pub qr_svg: RwSignal<Zeroizing<String>>,
    /// The browser offers the Web Share API.
    pub can_share: RwSignal<bool>,
    /// Diagnostics: frames refused since start (forged, truncated, replayed, oversized).
    pub refused: RwSignal<u64>,
    /// Diagnostics: connections blocked for sending too many bad frames.
    pub banned: RwSignal<u64>,
    /// When another device last had everything this one has ("2026-11-24 14:52").
    pub last_synced: RwSignal<Option<String>>,
    /// The search query ("" = no search).
    pub search: RwSignal<String>,
    /// How many of the newest items are rendered.
    pub window: RwSignal<usize>,
    /// Which kinds of items the history shows (All: everything, in the window).
    pub filter: RwSignal<Filter>,
    /// What the backup export is doing or did ("Exporting the backup: file 2 of 5…", ending
    /// in "…" while it runs).
    pub backup_status: RwSignal<Option<String>>,
    /// This browser cleared Ferry's data: when Ferry was last here (local "YYYY-MM-DD
    /// HH:MM"), shown instead of the first-run card until the device is in a space again.
    pub cleared: RwSignal<Option<String>>,
    /// A backup of another space waiting for the person's yes: the file and that space's
    /// fingerprint.
    pub import_offer: RwSignal<Option<(leptos::web_sys::File, String)>, LocalStorage>,
    /// The STUN/TURN servers in use, as "url" or "url (user)" lines, and whether they come
    /// from this device's settings.
    pub ice_summary: RwSignal<(Vec<String>, bool)>,
    /// A new version of the app is installed and waiting.
    pub update_ready: RwSignal<bool>,
    /// The browser offers to install the app.
    pub can_install: RwSignal<bool>,
    /// The latest connection that failed, and why in plain words (cleared by a success).
    pub connection_problem: RwSignal<Option<String>>,
    /// Transfer state of files, by root hash.
    pub files: RwSignal<std::collections::BTreeMap<String, FileView>>,
    /// Diagnostics: file chunks requested from other devices since this page loaded.
    pub chunk_requests: RwSignal<u64>,
    /// Diagnostics: file chunks received and verified since this page loaded.
    pub chunks_verified: RwSignal<u64>,
    /// "Storage used: 12.0 MB of 2.1 GB", when the browser tells.
    pub storage: RwSignal<Option<String>>,
    /// Whether the browser promised to keep this site's storage (`navigator.storage.persisted()`),
    /// when it tells.
    pub persisted: RwSignal<Option<bool>>,
    /// The encrypted mailbox is on for this device.
    pub mailbox_on: RwSignal<bool>,
    /// What the mailbox holds for other devices ("3 items waiting in the mailbox ..."), or a
    /// problem with it.
    pub mailbox_status: RwSignal<Option<String>>,
    /// The mailbox refuses this space's key (someone registered the room first, or the key
    /// is wrong): said in Devices → Mailbox until a visit succeeds.
    pub mailbox_refused: RwSignal<Option<String>>,
    /// What the server holds for the space, as of the last visit ("The mailbox holds 3 sealed
    /// entries (12.0 KB) for this space").
    pub mailbox_held: RwSignal<Option<String>>,
    /// Show "Install: tap Share, then Add to Home Screen" (iOS Safari has no install prompt).
    pub ios_hint: RwSignal<bool>,
    /// A short confirmation shown over the chat ("Copied"), cleared after a few seconds.
    pub toast: RwSignal<Option<String>>,
    /// Text another app shared into Ferry: it goes into the composer as a draft (a web page
    /// elsewhere must never post into the history without the person pressing Send).
    pub draft_text: RwSignal<Option<String>>,
    /// This page, or the signaling server, is reached without TLS across a network (see
    /// [`plain_page_warning`](super::plain_page_warning) and
    /// [`plain_signaling_warning`](super::plain_signaling_warning)).
    pub signal_warning: RwSignal<Option<String>>,
    /// Files another app shared into Ferry, listed under "Files to send" until the person
    /// presses Send (or discards them).
    pub draft_files: RwSignal<Vec<leptos::web_sys::File>, LocalStorage>,
}

impl ViewState {
    /// Fresh, empty state (must be created inside a reactive owner).
    pub fn new() -> Self {
        ViewState {
            ready: RwSignal::new(false),
            items: RwSignal::new(vec![]),
            devices: RwSignal::new(vec![]),
            status: RwSignal::new(NetStatus::Connecting),
            error: RwSignal::new(None),
            notice: RwSignal::new(None),
            pairing_link: RwSignal::new(Zeroizing::default()),
            fingerprint: RwSignal::new(String::new()),
            pending_join: RwSignal::new(None),
            device_name: RwSignal::new(String::new()),
            qr_svg: RwSignal::new(Zeroizing::default()),
            can_share: RwSignal::new(false),
            refused: RwSignal::new(0),
            banned: RwSignal::new(0),
            last_synced: RwSignal::new(None),
            search: RwSignal::new(String::new()),
            window: RwSignal::new(RENDER_WINDOW),
            filter: RwSignal::new(Filter::All),
            backup_status: RwSignal::new(None),
            cleared: RwSignal::new(None),
            import_offer: RwSignal::new_local(None),
            ice_summary: RwSignal::new((vec![], false)),
            update_ready: RwSignal::new(false),
            can_install: RwSignal::new(false),
            connection_problem: RwSignal::new(None),
            files: RwSignal::new(Default::default()),
            chunk_requests: RwSignal::new(0),
            chunks_verified: RwSignal::new(0),
            storage: RwSignal::new(None),
            persisted: RwSignal::new(None),
            mailbox_on: RwSignal::new(true),
            mailbox_status: RwSignal::new(None),
            mailbox_held: RwSignal::new(None),
            mailbox_refused: RwSignal::new(None),
            ios_hint: RwSignal::new(false),
            toast: RwSignal::new(None),
            draft_text: RwSignal::new(None),
            signal_warning: RwSignal::new(None),
            draft_files: RwSignal::new_local(Vec::new()),
        }
    }
}

impl Default for ViewState {
    fn default() -> Self {
        Self::new()
    }
}

/// Display names for devices, distinct and human: the first device (by join order, which
/// every device agrees on) keeps a shared name such as "Chrome on Linux", later ones get the
/// next free number ("Chrome on Linux 2"), never one another device is already called. A
/// device without a name is "Device" plus its short id.
pub fn display_names(devices: &[DeviceInfo]) -> Vec<(ferry_core::DeviceId, String)> {
    let mut ordered: Vec<&DeviceInfo> = devices.iter().collect();
    ordered.sort_by_key(|d| (d.added_at, d.id));
    let mut taken: std::collections::BTreeSet<String> =
        devices.iter().map(|d| d.name.clone()).collect();
    let mut first_seen = std::collections::BTreeSet::new();
    let mut named = std::collections::BTreeMap::new();
    for d in ordered {
        let name = if d.name.is_empty() {
            format!("Device {}", d.id.short())
        } else if first_seen.insert(d.name.clone()) {
            d.name.clone()
        } else {
            let n = (2..)
                .map(|n| format!("{} {n}", d.name))
                .find(|candidate| !taken.contains(candidate))
                .unwrap_or_else(|| format!("{} ({})", d.name, d.id.short()));
            taken.insert(n.clone());
            n
        };
        named.insert(d.id, name);
    }
    devices
        .iter()
        .map(|d| (d.id, named.remove(&d.id).unwrap_or_default()))
        .collect()
}

/// Builds the rendered history from items and device names.
/// Items written here after `synced_ms` (the last moment another device had everything) are
/// shown as "not yet on other devices".
pub fn item_views<'a>(
    items: impl IntoIterator<Item = &'a Item>,
    names: &[(ferry_core::DeviceId, String)],
    me: ferry_core::DeviceId,
    offset_min: i64,
    synced_ms: u64,
    now_ms: u64,
) -> Vec<ItemView> {
    let today = format_time(now_ms, offset_min).1[..10].to_owned();
    let yesterday = format_time(now_ms.saturating_sub(86_400_000), offset_min).1[..10].to_owned();
    let mut last_day = String::new();
    let mut last_author = None;
    items
        .into_iter()
        .map(|i| {
            let author = names
                .iter()
                .find(|(id, _)| *id == i.author)
                .map(|(_, n)| n.clone())
                .unwrap_or_else(|| format!("Device {}", i.author.short()));
            let (time, datetime) = format_time(i.at.wall_ms, offset_min);
            let date = datetime[..10].to_owned();
            let day = (date != last_day).then(|| {
                if date == today {
                    "Today".to_owned()
                } else if date == yesterday {
                    "Yesterday".to_owned()
                } else {
                    date.clone()
                }
            });
            last_day = date;
            let show_author = names.len() > 1
                && (day.is_some() || last_author.replace(i.author) != Some(i.author));
            last_author = Some(i.author);
            let newer = matches!(i.kind, ferry_core::ItemKind::Other(_));
            ItemView {
                id: i.id,
                text: if newer {
                    NEWER_VERSION.to_owned()
                } else {
                    i.text.clone()
                },
                newer,
                pinned: i.pinned,
                task: (i.kind == ferry_core::ItemKind::Task).then_some(i.done),
                note: i.kind == ferry_core::ItemKind::Note,
                body: i.body.clone(),
                author,
                show_author,
                mine: i.author == me,
                time,
                datetime,
                edited: i.edited_at.is_some(),
                pending: i.author == me
                    && i.at.wall_ms.max(i.edited_at.map_or(0, |e| e.wall_ms)) > synced_ms,
                day,
                file: i.file.as_ref().map(|f| FileInfo {
                    root: f.root,
                    name: f.name.clone(),
                    size: f.size,
                    mime: f.mime.clone(),
                }),
                at_ms: i.at.wall_ms,
                delivery: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_counts_other_devices() {
        assert_eq!(NetStatus::Online { peers: 1 }.text(), "1 device connected");
        assert_eq!(NetStatus::Online { peers: 3 }.text(), "3 devices connected");
        assert_eq!(NetStatus::Offline.text(), "offline");
    }

    #[test]
    fn days_are_labelled_once() {
        let me = ferry_core::DeviceId::from_bytes([1; 16]);
        let day = 86_400_000u64;
        let now = 1_795_531_920_000; // 2026-11-24 14:52 UTC
        let at = |ms: u64| ferry_core::Item {
            id: ferry_core::ItemId::random(),
            kind: ferry_core::ItemKind::Text,
            author: me,
            at: ferry_core::Hlc {
                wall_ms: ms,
                counter: 0,
            },
            text: String::new(),
            edited_at: None,
            file: None,
            body: String::new(),
            pinned: false,
            done: false,
        };
        let items = [
            at(now - 3 * day),
            at(now - day),
            at(now - day + 1000),
            at(now),
        ];
        let days: Vec<Option<String>> = item_views(&items, &[], me, 0, now, now)
            .into_iter()
            .map(|v| v.day)
            .collect();
        assert_eq!(
            days,
            [
                Some("2026-11-21".into()),
                Some("Yesterday".into()),
                None,
                Some("Today".into())
            ]
        );
    }

    #[test]
    fn an_item_of_a_kind_this_version_does_not_know_says_so() {
        let me = ferry_core::DeviceId::from_bytes([1; 16]);
        let item = |kind: ferry_core::ItemKind| ferry_core::Item {
            id: ferry_core::ItemId::random(),
            kind,
            author: me,
            at: ferry_core::Hlc {
                wall_ms: 1_795_531_920_000,
                counter: 0,
            },
            text: "a title".into(),
            edited_at: None,
            file: None,
            body: String::new(),
            pinned: false,
            done: false,
        };
        let items = [
            item(ferry_core::ItemKind::Other("poll".into())),
            item(ferry_core::ItemKind::Text),
        ];
        let views = item_views(&items, &[], me, 0, 0, 1_795_531_920_000);
        assert!(views[0].newer);
        assert_eq!(views[0].text, NEWER_VERSION);
        assert!(!views[1].newer);
        assert_eq!(views[1].text, "a title");
    }

    #[test]
    fn a_search_finds_a_file_by_its_caption_or_its_name() {
        let me = ferry_core::DeviceId::from_bytes([1; 16]);
        let file = |caption: &str| ferry_core::Item {
            id: ferry_core::ItemId::random(),
            kind: ferry_core::ItemKind::File,
            author: me,
            at: ferry_core::Hlc {
                wall_ms: 1_795_531_920_000,
                counter: 0,
            },
            text: caption.into(),
            edited_at: None,
            file: Some(ferry_core::FileMeta {
                root: ferry_core::BlobId([3; 32]),
                name: "Holiday-Beach.JPG".into(),
                size: 10,
                mime: "image/jpeg".into(),
            }),
            body: String::new(),
            pinned: false,
            done: false,
        };
        let views = item_views(&[file("Sunset at the pier"), file("")], &[], me, 0, 0, 0);
        assert_eq!(views[0].text, "Sunset at the pier");
        assert!(views[0].matches("pier"));
        assert!(views[0].matches("beach.jpg"));
        assert!(views[1].matches("holiday"));
        assert!(!views[1].matches("pier"));
    }

    #[test]
    fn shared_device_names_are_distinguishable() {
        let a = ferry_core::DeviceId::from_bytes([0xab; 16]);
        let b = ferry_core::DeviceId::from_bytes([0xcd; 16]);
        let devs = [
            DeviceInfo {
                id: a,
                name: "Chrome on Linux".into(),
                added_at: 1,
            },
            DeviceInfo {
                id: b,
                name: "Chrome on Linux".into(),
                added_at: 2,
            },
        ];
        let names = display_names(&devs);
        assert_eq!(names[0].1, "Chrome on Linux");
        assert_eq!(names[1].1, "Chrome on Linux 2");
    }

    #[test]
    fn numbered_names_follow_join_order_and_skip_names_in_use() {
        let dev = |b: u8, name: &str, added_at: u64| DeviceInfo {
            id: ferry_core::DeviceId::from_bytes([b; 16]),
            name: name.into(),
            added_at,
        };
        // Listed out of join order; one device is really called "Chrome on Linux 2".
        let devs = [
            dev(3, "Chrome on Linux", 30),
            dev(1, "Chrome on Linux 2", 10),
            dev(2, "Chrome on Linux", 20),
            dev(4, "", 40),
        ];
        let names: Vec<String> = display_names(&devs).into_iter().map(|(_, n)| n).collect();
        assert_eq!(
            names,
            [
                "Chrome on Linux 3",
                "Chrome on Linux 2",
                "Chrome on Linux",
                "Device 0404"
            ]
        );
    }
}
