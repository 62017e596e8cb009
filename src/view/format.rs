//! Pure formatting: sizes, times, links, search marks and the sentences the UI shows.
//!
//! Kept free of signals and browser APIs so every word a person reads is unit-tested on the
//! host; the runtime and the components both call these.

use super::FailedPath;

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

/// Formats `ms` since the epoch as local `(HH:MM, YYYY-MM-DD HH:MM)`, given the local offset
/// from UTC in minutes (east positive).
pub fn format_time(ms: u64, offset_min: i64) -> (String, String) {
    let local_min = (ms / 60_000) as i64 + offset_min;
    let days = local_min.div_euclid(1440);
    let min_of_day = local_min.rem_euclid(1440);
    let (h, m) = (min_of_day / 60, min_of_day % 60);
    let (y, mo, d) = ferry_core::hlc::civil_date(days);
    (
        format!("{h:02}:{m:02}"),
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}"),
    )
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
        format!("on {}{NOT_YET_ON}{}", names(&on), names(&not))
    })
}

/// The small icon a row written here carries: a clock while only this device (or only the
/// mailbox) has it, one tick once another device has it, two ticks once every other device
/// has it. The words ([`Tick::words`]) are its text alternative and the hover/focus detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// Only on this device.
    Here,
    /// Only this device and the sealed mailbox have it.
    Mailbox,
    /// On some other devices, not all yet ("on Phone · not yet on Tablet").
    Some(String),
    /// On every other device ("on Phone, Tablet").
    All(String),
}

impl Tick {
    /// The state of a row written here, from its wording. No wording means no other device
    /// has it (alone, synced only with a sibling tab, or a file whose bytes no device
    /// stored yet): the clock.
    pub fn of(pending: bool, delivery: Option<&str>) -> Tick {
        match delivery {
            _ if pending => Tick::Here,
            Some(WAITING_IN_MAILBOX) => Tick::Mailbox,
            Some(d) if d.contains(NOT_YET_ON) => Tick::Some(d.to_owned()),
            Some(d) => Tick::All(d.to_owned()),
            None => Tick::Here,
        }
    }

    /// What the icon says, in words.
    pub fn words(&self) -> &str {
        match self {
            Tick::Here => "not yet on other devices",
            Tick::Mailbox => WAITING_IN_MAILBOX,
            Tick::Some(d) | Tick::All(d) => d,
        }
    }

    /// A stable name for styling and tests (`data-tick`).
    pub fn name(&self) -> &'static str {
        match self {
            Tick::Here => "here",
            Tick::Mailbox => "mailbox",
            Tick::Some(_) => "some",
            Tick::All(_) => "all",
        }
    }
}

/// How [`delivery_text`] names the devices that lack an item.
const NOT_YET_ON: &str = " · not yet on ";

/// Why two devices could not connect, in words a person can act on.
pub fn failure_reason(f: FailedPath) -> String {
    match f {
        // Servers that speak UDP were configured and none answered (no public address, no
        // relay): the network drops UDP, and only TURN over TCP or TLS gets through.
        FailedPath {
            local_relay: false,
            local_reflexive: false,
            udp_servers: true,
            tcp_relay: false,
            ..
        } => "A device could not connect: UDP is blocked on this network and no TCP/TLS relay is \
              configured (no STUN or TURN server answered over UDP) — add a TURN server over TCP \
              or TLS (turn:host:3478?transport=tcp, or turns:host:443) under Advanced → \
              Connection."
            .into(),
        FailedPath {
            turn_configured: false,
            ..
        } => "A device could not connect: your networks can't reach each other directly and no \
              relay is configured — add a TURN server under Advanced → Connection."
            .into(),
        FailedPath {
            local_relay: false,
            tls_relays_only: true,
            ..
        } => "A device could not connect: the TURN server refused TLS (its certificate is not \
              valid for its host name, or has expired) or did not answer, and your networks can't \
              reach each other directly — check the turns: server and its certificate."
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

/// What to tell the person when this page itself came without TLS over a network (`http://`
/// to anything but this machine): whoever sits on that network can change the app it runs,
/// and the app holds the space secret.
pub fn plain_page_warning(protocol: &str, host: &str) -> Option<String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host == "localhost" || host == "::1" || host.starts_with("127.");
    (protocol == "http:" && !local).then(|| {
        format!(
            "This page comes from {host} without encryption (http://): someone on this network              could change the app and read your history. Open Ferry over https, see the README."
        )
    })
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

/// The pairing link as a QR code in SVG (rendered inline; no network, no canvas).
/// It encodes the secret, so it is wiped when dropped.
pub fn qr_svg(link: &str) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(
        match qrcode::QrCode::with_error_correction_level(link.as_bytes(), qrcode::EcLevel::M) {
            Ok(code) => code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(220, 220)
                .quiet_zone(true)
                .build(),
            Err(_) => String::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn times_format_in_local_time() {
        // 2026-11-24 14:52 UTC
        let ms = 1_795_531_920_000;
        assert_eq!(format_time(ms, 0).1, "2026-11-24 14:52");
        assert_eq!(format_time(ms, 60).0, "15:52");
        assert_eq!(format_time(ms, -15 * 60).1, "2026-11-23 23:52");
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
        let some = delivery_text(80, &others);
        assert_eq!(Tick::of(false, some.as_deref()).name(), "some");
        let all = delivery_text(40, &others);
        assert_eq!(Tick::of(false, all.as_deref()).name(), "all");
        assert_eq!(Tick::of(true, None), Tick::Here);
        assert_eq!(Tick::of(false, Some(WAITING_IN_MAILBOX)), Tick::Mailbox);
        assert_eq!(Tick::of(false, None), Tick::Here);
    }

    #[test]
    fn failure_reasons_name_what_to_do() {
        let f = |local_relay, remote_relay, turn_configured| {
            failure_reason(FailedPath {
                local_relay,
                remote_relay,
                turn_configured,
                local_reflexive: true,
                udp_servers: turn_configured,
                tcp_relay: false,
                tls_relays_only: false,
            })
        };
        assert!(f(false, false, false).contains("no relay is configured"));
        // Nothing answered over UDP and no TCP/TLS relay: UDP is blocked.
        let blocked = |udp_servers, tcp_relay, local_reflexive| {
            failure_reason(FailedPath {
                local_relay: false,
                remote_relay: false,
                turn_configured: true,
                local_reflexive,
                udp_servers,
                tcp_relay,
                tls_relays_only: false,
            })
        };
        assert!(
            blocked(true, false, false)
                .contains("UDP is blocked on this network and no TCP/TLS relay is configured")
        );
        assert!(
            !blocked(true, true, false).contains("UDP is blocked"),
            "a TCP relay is configured"
        );
        assert!(
            !blocked(true, false, true).contains("UDP is blocked"),
            "UDP answered"
        );
        assert!(
            !blocked(false, false, false).contains("UDP is blocked"),
            "no UDP server to ask"
        );
        // Only turns: servers and no relay came: TLS (the certificate) is the suspect.
        let tls = FailedPath {
            turn_configured: true,
            tcp_relay: true,
            tls_relays_only: true,
            ..FailedPath::default()
        };
        assert!(failure_reason(tls).contains("the TURN server refused TLS"));
        let answered = FailedPath {
            local_relay: true,
            ..tls
        };
        assert!(!failure_reason(answered).contains("refused TLS"));
        assert!(f(false, true, true).contains("check the TURN server settings"));
        assert!(f(true, false, true).contains("the other device has no working relay"));
        assert!(f(true, true, true).contains("even through the TURN relay"));
        assert_eq!(path_text("direct", Some(3)), "direct · 3 ms round trip");
        assert_eq!(path_text("direct", None), "direct");
    }

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
    fn a_plain_page_across_a_network_is_named() {
        use super::plain_page_warning as warn;
        assert!(warn("http:", "192.168.1.20").is_some_and(|w| w.contains("192.168.1.20")));
        for (protocol, host) in [
            ("https:", "ferry.example"),
            ("http:", "127.0.0.1"),
            ("http:", "localhost"),
            ("http:", "[::1]"),
            ("file:", ""),
        ] {
            assert_eq!(warn(protocol, host), None, "{protocol}//{host}");
        }
    }

    #[test]
    fn device_names_are_readable() {
        let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
        assert_eq!(device_name(ua), "Chrome on Linux");
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
    fn qr_code_is_an_svg_of_the_link() {
        let svg = qr_svg("http://127.0.0.1:8080/#pair=AAAA");
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
        assert_ne!(*svg, *qr_svg("http://127.0.0.1:8080/#pair=BBBB"));
    }
}
