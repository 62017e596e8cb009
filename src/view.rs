//! View state: what the UI shows, as plain signals the runtime writes and components read.
//!
//! Components never do I/O; they read this state through context and send [`Intent`]s back
//! to the runtime. The helpers below are pure so they are tested on the host.

use ferry_core::{DeviceInfo, Item};
use leptos::prelude::*;

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
    /// Dismiss the current error.
    DismissError,
    /// The URL fragment changed (a pairing link pasted into the address bar).
    CheckLocation,
    /// Replace the text of an item.
    Edit(String, String),
    /// Delete an item on every device.
    Delete(String),
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
    /// Send these files (attach button, drop, paste).
    SendFiles(Vec<leptos::web_sys::File>),
    /// Stop downloading a file on this device (by root hash).
    CancelFile(String),
    /// Download a stopped or failed file again.
    RetryFile(String),
    /// Save a stored file with its original name.
    SaveFile(String),
    /// Use (or stop using) the encrypted mailbox on the signaling server.
    SetMailbox(bool),
}

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
    /// Stable key for the keyed list.
    pub id: String,
    /// Text body.
    pub text: String,
    /// Which device wrote it.
    pub author: String,
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
}

/// What to tell the person when the signaling server (and so the mailbox and its access key) is
/// reached without TLS over a network: `ws://` to anything but this machine. The content stays
/// sealed end to end; the room id and the mailbox key do not.
pub fn plain_signaling_warning(signal: &str) -> Option<String> {
    let rest = signal.strip_prefix("ws://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    let local = host == "localhost" || host == "::1" || host.starts_with("127.");
    (!local).then(|| {
        format!(
            "The signaling server {host} is reached without encryption (ws://): others on this \
             network can see which room your devices meet in and the mailbox access key. Your \
             messages stay sealed. Serve it over https (wss://), see the README."
        )
    })
}

/// The delivery state of an item only the mailbox holds so far.
pub const WAITING_IN_MAILBOX: &str = "waiting in the mailbox";

/// Which other devices have an item written (or last edited) at `item_ms`: each device's
/// entry is `(name, last moment it had everything)`. `None` when there is no other device, or
/// none has it yet (the item then says "not yet on other devices").
pub fn delivery_text(item_ms: u64, others: &[(String, u64)]) -> Option<String> {
    let (on, not): (Vec<_>, Vec<_>) = others.iter().partition(|(_, at)| *at >= item_ms);
    if on.is_empty() {
        return None;
    }
    let names = |v: &[&(String, u64)]| {
        v.iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(if not.is_empty() {
        format!("on {}", names(&on))
    } else {
        format!("on {} · not yet on {}", names(&on), names(&not))
    })
}

/// A file item's metadata, from the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Root hash (hex): the file's id.
    pub root: String,
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

/// "1.5 MB": sizes as messengers show them (1 KB = 1024 bytes, like Telegram and Windows).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Percent of `total` in `have`, 0–100 (a zero-byte file is complete at once).
pub fn percent(have: u64, total: u64) -> u32 {
    if total == 0 {
        100
    } else {
        ((have.min(total) as f64 / total as f64) * 100.0).floor() as u32
    }
}

/// A piece of a message: plain text or a link to make clickable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Plain text.
    Text(String),
    /// An http(s) URL.
    Link(String),
}

/// Splits a text into plain parts and http(s) links (trailing punctuation stays text).
pub fn linkify(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = ["https://", "http://"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        let end = rest[start..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |e| start + e);
        let mut url = &rest[start..end];
        url = url.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '"', '\'']);
        if url.len() <= "https://".len() {
            out.push(Segment::Text(rest[..end].to_owned()));
            rest = &rest[end..];
            continue;
        }
        if start > 0 {
            out.push(Segment::Text(rest[..start].to_owned()));
        }
        out.push(Segment::Link(url.to_owned()));
        rest = &rest[start + url.len()..];
    }
    if !rest.is_empty() {
        out.push(Segment::Text(rest.to_owned()));
    }
    out
}

/// Splits `text` around case-insensitive matches of `query`: `(part, is_match)`.
pub fn highlight(text: &str, query: &str) -> Vec<(String, bool)> {
    let q = query.trim().to_lowercase();
    if q.is_empty() {
        return vec![(text.to_owned(), false)];
    }
    let lower = text.to_lowercase();
    // Lowercasing can change byte lengths outside ASCII; fall back to no highlight then.
    if lower.len() != text.len() {
        return vec![(text.to_owned(), lower.contains(&q))];
    }
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find(&q) {
        let (s, e) = (at + i, at + i + q.len());
        if s > at {
            out.push((text[at..s].to_owned(), false));
        }
        out.push((text[s..e].to_owned(), true));
        at = e;
    }
    if at < text.len() {
        out.push((text[at..].to_owned(), false));
    }
    out
}

/// Items shown at first; older ones come with "Show earlier messages" (keeps the page fast
/// with a very long history).
pub const RENDER_WINDOW: usize = 1000;

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
}

/// Why two devices could not connect, in words a person can act on.
pub fn failure_reason(f: FailedPath) -> String {
    match f {
        FailedPath {
            turn_configured: false,
            ..
        } => "A device could not connect: your networks can't reach each other directly and no \
              relay is configured — add a TURN server under Connection."
            .into(),
        FailedPath {
            local_relay: false, ..
        } => "A device could not connect: the TURN server did not answer or refused the \
              username and credential, and your networks can't reach each other directly — \
              check the TURN server settings."
            .into(),
        FailedPath {
            remote_relay: false,
            ..
        } => "A device could not connect: the other device has no working relay — set the same \
              TURN server there (a pairing link made here carries it)."
            .into(),
        _ => "A device could not connect even through the TURN relay: the relay may not allow \
              traffic between your devices."
            .into(),
    }
}

/// A connected device's path for the device list: "direct · 3 ms".
pub fn path_text(path: &str, rtt_ms: Option<u32>) -> String {
    match rtt_ms {
        Some(ms) => format!("{path} · {ms} ms round trip"),
        None => path.to_owned(),
    }
}

/// A pairing link waiting for confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOffer {
    /// Short fingerprint of the space to join.
    pub fingerprint: String,
}

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
    /// This space's pairing link.
    pub pairing_link: RwSignal<String>,
    /// This space's fingerprint.
    pub fingerprint: RwSignal<String>,
    /// A pairing link awaiting "Join".
    pub pending_join: RwSignal<Option<JoinOffer>>,
    /// This device's name.
    pub device_name: RwSignal<String>,
    /// The pairing link as an SVG QR code.
    pub qr_svg: RwSignal<String>,
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
    /// The encrypted mailbox is on for this device.
    pub mailbox_on: RwSignal<bool>,
    /// What the mailbox holds for other devices ("3 items waiting in the mailbox ..."), or a
    /// problem with it.
    pub mailbox_status: RwSignal<Option<String>>,
    /// What the server holds for the space, as of the last visit ("The mailbox holds 3 sealed
    /// entries (12.0 KB) for this space").
    pub mailbox_held: RwSignal<Option<String>>,
    /// The current time (ms since the epoch), refreshed once a minute for relative ages;
    /// 0 until the UI starts its clock.
    pub now_ms: RwSignal<u64>,
    /// Show "Install: tap Share, then Add to Home Screen" (iOS Safari has no install prompt).
    pub ios_hint: RwSignal<bool>,
    /// A short confirmation shown over the chat ("Copied"), cleared after a few seconds.
    pub toast: RwSignal<Option<String>>,
    /// Text another app shared into Ferry: it goes into the composer as a draft (a web page
    /// elsewhere must never post into the history without the person pressing Send).
    pub draft_text: RwSignal<Option<String>>,
    /// The signaling server is reached over plain `ws://` across a network (see
    /// [`plain_signaling_warning`]).
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
            pairing_link: RwSignal::new(String::new()),
            fingerprint: RwSignal::new(String::new()),
            pending_join: RwSignal::new(None),
            device_name: RwSignal::new(String::new()),
            qr_svg: RwSignal::new(String::new()),
            can_share: RwSignal::new(false),
            refused: RwSignal::new(0),
            banned: RwSignal::new(0),
            last_synced: RwSignal::new(None),
            search: RwSignal::new(String::new()),
            window: RwSignal::new(RENDER_WINDOW),
            ice_summary: RwSignal::new((vec![], false)),
            update_ready: RwSignal::new(false),
            can_install: RwSignal::new(false),
            connection_problem: RwSignal::new(None),
            files: RwSignal::new(Default::default()),
            chunk_requests: RwSignal::new(0),
            chunks_verified: RwSignal::new(0),
            storage: RwSignal::new(None),
            mailbox_on: RwSignal::new(true),
            mailbox_status: RwSignal::new(None),
            mailbox_held: RwSignal::new(None),
            now_ms: RwSignal::new(0),
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

/// How long ago `at_ms` was, for recent items: "just now" (under a minute, or a clock a bit
/// ahead), "5 min ago", "2 h ago"; `None` from a day on (the date separators say it) or
/// while the clock is unknown (`now_ms == 0`).
pub fn relative_age(at_ms: u64, now_ms: u64) -> Option<String> {
    if now_ms == 0 {
        return None;
    }
    let age = now_ms.saturating_sub(at_ms);
    match age / 60_000 {
        0 => Some("just now".into()),
        m @ 1..60 => Some(format!("{m} min ago")),
        m @ 60..1440 => Some(format!("{} h ago", m / 60)),
        _ => None,
    }
}

/// Whether to show the "Add to Home Screen" hint: Safari on iPhone, iPod or iPad (iPadOS
/// says "Macintosh" but has touch points), not already running installed (`standalone`).
/// Chrome, Firefox and Edge on iOS name themselves (CriOS, FxiOS, EdgiOS) and are left out:
/// their share menus differ.
pub fn ios_install_hint(user_agent: &str, max_touch_points: i32, standalone: bool) -> bool {
    let ua = user_agent;
    let apple_mobile = ua.contains("iPhone")
        || ua.contains("iPad")
        || ua.contains("iPod")
        || (ua.contains("Macintosh") && max_touch_points > 1);
    let other_browser = ["CriOS", "FxiOS", "EdgiOS", "OPiOS", "mercury"]
        .iter()
        .any(|b| ua.contains(b));
    apple_mobile && ua.contains("Safari") && !other_browser && !standalone
}

/// Formats `ms` since the epoch as local `(HH:MM, YYYY-MM-DD HH:MM)`, given the local offset
/// from UTC in minutes (east positive).
pub fn format_time(ms: u64, offset_min: i64) -> (String, String) {
    let local_min = (ms / 60_000) as i64 + offset_min;
    let days = local_min.div_euclid(1440);
    let min_of_day = local_min.rem_euclid(1440);
    let (h, m) = (min_of_day / 60, min_of_day % 60);
    // Civil-from-days (Howard Hinnant), for the full date.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    (
        format!("{h:02}:{m:02}"),
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}"),
    )
}

/// A readable device name from a user-agent string, e.g. "Chrome on Linux".
pub fn device_name(user_agent: &str) -> String {
    let ua = user_agent;
    let browser = if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else {
        "Browser"
    };
    let os = if ua.contains("Android") {
        "Android"
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        "iOS"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        "macOS"
    } else if ua.contains("CrOS") {
        "ChromeOS"
    } else if ua.contains("Linux") {
        "Linux"
    } else {
        "this device"
    };
    format!("{browser} on {os}")
}

/// Display names for devices: a name shared by several devices gets its short id appended,
/// so "Chrome on Linux" on two laptops stays distinguishable.
pub fn display_names(devices: &[DeviceInfo]) -> Vec<(ferry_core::DeviceId, String)> {
    devices
        .iter()
        .map(|d| {
            let shared = devices.iter().filter(|o| o.name == d.name).count() > 1;
            let name = if d.name.is_empty() {
                format!("Device {}", d.id.short())
            } else if shared {
                format!("{} ({})", d.name, d.id.short())
            } else {
                d.name.clone()
            };
            (d.id, name)
        })
        .collect()
}

/// Builds the rendered history from items and device names.
/// Items written here after `synced_ms` (the last moment another device had everything) are
/// shown as "not yet on other devices".
pub fn item_views(
    items: &[Item],
    names: &[(ferry_core::DeviceId, String)],
    me: ferry_core::DeviceId,
    offset_min: i64,
    synced_ms: u64,
    now_ms: u64,
) -> Vec<ItemView> {
    let today = format_time(now_ms, offset_min).1[..10].to_owned();
    let yesterday = format_time(now_ms.saturating_sub(86_400_000), offset_min).1[..10].to_owned();
    let mut last_day = String::new();
    items
        .iter()
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
            ItemView {
                id: i.id.to_string(),
                text: i.text.clone(),
                author,
                mine: i.author == me,
                time,
                datetime,
                edited: i.edited_at.is_some(),
                pending: i.author == me
                    && i.at.wall_ms.max(i.edited_at.map_or(0, |e| e.wall_ms)) > synced_ms,
                day,
                file: i.file.as_ref().map(|f| FileInfo {
                    root: f.root.to_string(),
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

/// The pairing link as a QR code in SVG (rendered inline; no network, no canvas).
pub fn qr_svg(link: &str) -> String {
    match qrcode::QrCode::with_error_correction_level(link.as_bytes(), qrcode::EcLevel::M) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(220, 220)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn plain_signaling_across_a_network_is_named() {
        use super::plain_signaling_warning as warn;
        assert!(warn("ws://192.168.1.20:3536").is_some_and(|w| w.contains("192.168.1.20")));
        assert!(warn("ws://ferry.example/").is_some());
        for quiet in [
            "wss://ferry.example",
            "ws://127.0.0.1:3536",
            "ws://localhost:3536",
            "ws://[::1]:3536",
        ] {
            assert_eq!(warn(quiet), None, "{quiet}");
        }
    }

    #[test]
    fn failure_reasons_name_what_to_do() {
        let f = |local_relay, remote_relay, turn_configured| {
            failure_reason(FailedPath {
                local_relay,
                remote_relay,
                turn_configured,
            })
        };
        assert!(f(false, false, false).contains("no relay is configured"));
        assert!(f(false, true, true).contains("check the TURN server settings"));
        assert!(f(true, false, true).contains("the other device has no working relay"));
        assert!(f(true, true, true).contains("even through the TURN relay"));
        assert_eq!(path_text("direct", Some(3)), "direct · 3 ms round trip");
        assert_eq!(path_text("direct", None), "direct");
    }

    #[test]
    fn delivery_names_who_has_an_item() {
        let others = [("Phone".to_string(), 100), ("Tablet".to_string(), 50)];
        assert_eq!(
            delivery_text(40, &others).as_deref(),
            Some("on Phone, Tablet")
        );
        assert_eq!(
            delivery_text(80, &others).as_deref(),
            Some("on Phone · not yet on Tablet")
        );
        assert_eq!(delivery_text(200, &others), None);
        assert_eq!(delivery_text(1, &[]), None);
    }

    #[test]
    fn sizes_and_percentages_read_naturally() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(52_428_800), "50.0 MB");
        assert_eq!(format_size(1_610_612_736), "1.5 GB");
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(5, 3), 100);
    }

    use super::*;

    #[test]
    fn relative_ages_for_recent_items_only() {
        let t = 1_800_000_000_000;
        assert_eq!(relative_age(t, 0), None);
        assert_eq!(relative_age(t, t).as_deref(), Some("just now"));
        assert_eq!(relative_age(t, t + 59_999).as_deref(), Some("just now"));
        assert_eq!(relative_age(t + 30_000, t).as_deref(), Some("just now"));
        assert_eq!(
            relative_age(t, t + 5 * 60_000 + 10).as_deref(),
            Some("5 min ago")
        );
        assert_eq!(
            relative_age(t, t + 59 * 60_000).as_deref(),
            Some("59 min ago")
        );
        assert_eq!(
            relative_age(t, t + 2 * 3_600_000 + 1).as_deref(),
            Some("2 h ago")
        );
        assert_eq!(
            relative_age(t, t + 23 * 3_600_000 + 3_599_999).as_deref(),
            Some("23 h ago")
        );
        assert_eq!(relative_age(t, t + 86_400_000), None);
    }

    #[test]
    fn install_hint_only_on_ios_safari_not_installed() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
        let ipad_os = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15";
        let crios = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/122.0 Mobile/15E148 Safari/604.1";
        let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Mobile Safari/537.36";
        assert!(ios_install_hint(iphone, 5, false));
        assert!(!ios_install_hint(iphone, 5, true), "already installed");
        assert!(
            ios_install_hint(ipad_os, 5, false),
            "iPadOS reports a Mac with touch"
        );
        assert!(!ios_install_hint(ipad_os, 0, false), "a real Mac");
        assert!(!ios_install_hint(crios, 5, false));
        assert!(!ios_install_hint(android, 5, false));
    }

    #[test]
    fn links_become_clickable_without_their_trailing_punctuation() {
        use Segment::*;
        assert_eq!(
            linkify("see https://example.org/a?b=1. and (http://x.io/p), ok"),
            vec![
                Text("see ".into()),
                Link("https://example.org/a?b=1".into()),
                Text(". and (".into()),
                Link("http://x.io/p".into()),
                Text("), ok".into()),
            ]
        );
        assert_eq!(linkify("no links"), vec![Text("no links".into())]);
        assert_eq!(
            linkify("bare https:// only"),
            vec![Text("bare https://".into()), Text(" only".into())]
        );
    }

    #[test]
    fn search_highlights_every_match_case_insensitively() {
        assert_eq!(
            highlight("Milk and milk", "MILK"),
            vec![
                ("Milk".into(), true),
                (" and ".into(), false),
                ("milk".into(), true)
            ]
        );
        assert_eq!(highlight("abc", ""), vec![("abc".into(), false)]);
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
    fn qr_code_is_an_svg_of_the_link() {
        let svg = qr_svg("http://127.0.0.1:8080/#pair=AAAA");
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
        assert_ne!(svg, qr_svg("http://127.0.0.1:8080/#pair=BBBB"));
    }

    #[test]
    fn status_text_counts_other_devices() {
        assert_eq!(NetStatus::Online { peers: 1 }.text(), "1 device connected");
        assert_eq!(NetStatus::Online { peers: 3 }.text(), "3 devices connected");
        assert_eq!(NetStatus::Offline.text(), "offline");
    }

    #[test]
    fn times_format_in_local_time() {
        // 2026-11-24 14:52 UTC
        let ms = 1_795_531_920_000;
        assert_eq!(format_time(ms, 0).1, "2026-11-24 14:52");
        assert_eq!(format_time(ms, 60).0, "15:52");
        assert_eq!(format_time(ms, -15 * 60).1, "2026-11-23 23:52");
    }

    #[test]
    fn device_names_are_readable_and_distinguishable() {
        let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
        assert_eq!(device_name(ua), "Chrome on Linux");
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
        assert_eq!(names[0].1, "Chrome on Linux (abab)");
        assert_eq!(names[1].1, "Chrome on Linux (cdcd)");
    }
}
