//! The mailbox against a real `ferry-signal` process on 127.0.0.1 with a temporary data
//! directory, spoken to in plain HTTP/1.1: two devices that are never online together hand
//! over sealed blobs, and the server keeps them across restarts without being able to read
//! them or let strangers in.

mod common;

use common::Server;
use serde_json::json;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn server(data: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<&OsStr> = vec![OsStr::new("--data-dir"), data.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    common::spawn(args, false)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-mailbox-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("JSON body: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request; `key` goes in `Authorization: Bearer`.
fn http(s: &Server, method: &str, path: &str, key: Option<&str>, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(&s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nOrigin: http://127.0.0.1:8080\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        s.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response");
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 4 + size..];
    }
}

const ROOM: &str = "0123456789abcdef0123456789abcdef";
const OTHER_ROOM: &str = "fedcba9876543210fedcba9876543210";

/// The mailbox key K as a device derives it (here: any 32 bytes), in hex.
fn key(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

/// What a client does before upload: pad to a multiple of 256 bytes, then seal. The "seal"
/// here is a BLAKE3 keystream, standing in for XChaCha20-Poly1305 under the content key.
fn seal(plaintext: &[u8]) -> Vec<u8> {
    let mut padded = plaintext.to_vec();
    padded.resize(plaintext.len().div_ceil(256).max(1) * 256, 0);
    let mut stream = vec![0; padded.len()];
    blake3::Hasher::new_keyed(&[42; 32])
        .update(b"content key")
        .finalize_xof()
        .fill(&mut stream);
    padded.iter().zip(stream).map(|(p, k)| p ^ k).collect()
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn mailbox(room: &str) -> String {
    format!("/mailbox/{room}")
}

fn registered(s: &Server, room: &str, k: &str) {
    let r = http(s, "PUT", &mailbox(room), Some(k), b"");
    assert!(r.status == 201 || r.status == 200, "{}", r.headers);
}

#[test]
fn devices_hand_over_sealed_blobs_by_cursor_and_ack() {
    let dir = temp_dir("cursor");
    let s = server(&dir, &[]);
    let k = key(1);
    // 1. The space is created: its devices register the verifier.
    let r = http(&s, "PUT", &mailbox(ROOM), Some(&k), b"");
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["created"], true);
    assert_eq!(http(&s, "PUT", &mailbox(ROOM), Some(&k), b"").status, 200);
    // 2. Both devices register their cursors.
    for device in ["phone", "laptop"] {
        let body = format!(r#"{{"device":"{device}","seq":0}}"#);
        assert_eq!(
            http(
                &s,
                "POST",
                &format!("/mailbox/{ROOM}/ack"),
                Some(&k),
                body.as_bytes()
            )
            .status,
            200
        );
    }
    // 3. The phone, alone, leaves three sealed changes.
    let blobs: Vec<Vec<u8>> = (0..3)
        .map(|i| seal(format!("change {i}").as_bytes()))
        .collect();
    for (i, blob) in blobs.iter().enumerate() {
        let r = http(&s, "POST", &mailbox(ROOM), Some(&k), blob);
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["seq"], i as u64 + 1);
        assert!(
            r.headers
                .to_ascii_lowercase()
                .contains("access-control-allow-origin: *")
        );
    }
    // 4. The laptop, later, fetches by cursor: two, then the rest.
    let r = http(
        &s,
        "GET",
        &format!("/mailbox/{ROOM}?after=0&limit=2"),
        Some(&k),
        b"",
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["more"], true);
    assert_eq!(v["last_seq"], 3);
    assert_eq!(b64(v["entries"][0]["blob"].as_str().unwrap()), blobs[0]);
    assert_eq!(v["entries"][1]["seq"], 2);
    let v = http(
        &s,
        "GET",
        &format!("/mailbox/{ROOM}?after=2"),
        Some(&k),
        b"",
    )
    .json();
    assert_eq!(v["more"], false);
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    assert_eq!(b64(v["entries"][0]["blob"].as_str().unwrap()), blobs[2]);
    // 5. Acknowledged by every registered device, history still stays: a device that joins
    //    later, alone, needs it, until a base (a compacted snapshot) covers it.
    let ack = |device: &str, seq: u64| {
        let body = format!(r#"{{"device":"{device}","seq":{seq}}}"#);
        http(
            &s,
            "POST",
            &format!("/mailbox/{ROOM}/ack"),
            Some(&k),
            body.as_bytes(),
        )
        .json()
    };
    assert_eq!(ack("laptop", 3)["deleted"], 0);
    assert_eq!(ack("phone", 2)["deleted"], 0);
    let post = |path: &str, body: &[u8]| http(&s, "POST", path, Some(&k), body);
    // The laptop uploads a snapshot of everything up to 3 (entry 4) and declares it.
    let r = post(
        &format!("{}?device=laptop", mailbox(ROOM)),
        &seal(b"snapshot"),
    );
    assert_eq!(r.json()["seq"], 4);
    let base = format!("/mailbox/{ROOM}/base");
    for bad in [
        &br#"{"from":4,"to":4,"covers":4}"#[..],
        br#"{"from":4,"to":9,"covers":3}"#,
        br#"{"from":4}"#,
        b"nope",
    ] {
        let r = post(&base, bad);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
        assert!(r.json()["error"].as_str().unwrap().contains("from"));
    }
    let r = post(&base, br#"{"from":4,"to":4,"covers":3}"#);
    assert_eq!(r.status, 200);
    // Entries 1 and 2: covered and acknowledged by both. Entry 3: the phone is at 2.
    assert_eq!(r.json()["deleted"], 2);
    let v = http(&s, "GET", &mailbox(ROOM), Some(&k), b"").json();
    assert_eq!(v["entries"][0]["seq"], 3);
    assert_eq!(v["base"], json!({"from": 4, "to": 4, "covers": 3}));
    assert_eq!(v["cursors"], json!({"laptop": 3, "phone": 2}));
    assert_eq!(v["stored"]["entries"], 2);
    // Acknowledging the future is refused; so is a malformed ack.
    let r = http(
        &s,
        "POST",
        &format!("/mailbox/{ROOM}/ack"),
        Some(&k),
        br#"{"device":"phone","seq":99}"#,
    );
    assert_eq!(r.status, 400);
    let r = http(&s, "POST", &format!("/mailbox/{ROOM}/ack"), Some(&k), b"{}");
    assert_eq!(r.status, 400);
    // 6. A removed device no longer holds entries back.
    let r = http(
        &s,
        "DELETE",
        &format!("/mailbox/{ROOM}/devices/phone"),
        Some(&k),
        b"",
    );
    assert_eq!(r.json()["deleted"], 1);
    // 6b. File chunks are held for the other devices, whatever the base says: the laptop's
    //     chunk leaves only once a device other than the laptop has it.
    let r = post(
        &format!("{}?device=laptop&hold=1", mailbox(ROOM)),
        &seal(b"chunk"),
    );
    assert_eq!(r.json()["seq"], 5);
    assert_eq!(
        post(&format!("{}?hold=1", mailbox(ROOM)), &seal(b"x")).status,
        400
    );
    assert_eq!(
        post(&format!("{}?device=a%20b", mailbox(ROOM)), &seal(b"x")).status,
        400
    );
    assert_eq!(ack("laptop", 5)["deleted"], 0);
    assert_eq!(ack("tablet", 5)["deleted"], 1);
    // 7. Wiping the space's mailbox removes the verifier too.
    assert_eq!(
        http(&s, "DELETE", &mailbox(ROOM), Some(&k), b"").status,
        200
    );
    assert_eq!(http(&s, "GET", &mailbox(ROOM), Some(&k), b"").status, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn strangers_and_wrong_keys_are_refused() {
    let dir = temp_dir("auth");
    let s = server(&dir, &[]);
    let k = key(1);
    registered(&s, ROOM, &k);
    assert_eq!(
        http(&s, "POST", &mailbox(ROOM), Some(&k), &seal(b"mine")).status,
        201
    );
    let wrong = key(2);
    for (method, path, body) in [
        ("POST", mailbox(ROOM), seal(b"spam")),
        ("GET", mailbox(ROOM), vec![]),
        (
            "POST",
            format!("/mailbox/{ROOM}/ack"),
            br#"{"device":"x","seq":1}"#.to_vec(),
        ),
        (
            "POST",
            format!("/mailbox/{ROOM}/base"),
            br#"{"from":1,"to":1,"covers":0}"#.to_vec(),
        ),
        ("DELETE", format!("/mailbox/{ROOM}/devices/x"), vec![]),
        ("DELETE", mailbox(ROOM), vec![]),
        ("PUT", mailbox(ROOM), vec![]),
    ] {
        for auth in [Some(wrong.as_str()), None, Some("not-hex")] {
            let r = http(&s, method, &path, auth, &body);
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}");
            assert!(r.json()["error"].as_str().unwrap().len() > 10);
            assert!(
                r.headers
                    .to_ascii_lowercase()
                    .contains("www-authenticate: bearer")
            );
        }
    }
    // The stranger's own room is separate: registering it shows nothing of ours.
    registered(&s, OTHER_ROOM, &wrong);
    let v = http(&s, "GET", &mailbox(OTHER_ROOM), Some(&wrong), b"").json();
    assert_eq!(v["entries"].as_array().unwrap().len(), 0);
    assert_eq!(v["last_seq"], 0);
    // Our entry is intact.
    let v = http(&s, "GET", &mailbox(ROOM), Some(&k), b"").json();
    assert_eq!(
        b64(v["entries"][0]["blob"].as_str().unwrap()),
        seal(b"mine")
    );
    // Bad room ids are 400, unregistered rooms 404.
    for bad in ["short", "0123456789ABCDEF0123456789ABCDEF", &"0".repeat(33)] {
        assert_eq!(
            http(&s, "GET", &mailbox(bad), Some(&k), b"").status,
            400,
            "{bad}"
        );
    }
    let unknown = "00000000000000000000000000000000";
    let r = http(&s, "POST", &mailbox(unknown), Some(&k), &seal(b"x"));
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (404, Some("not_registered"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sizes_padding_and_quotas_have_clear_errors() {
    let dir = temp_dir("quota");
    let s = server(
        &dir,
        &[
            "--mailbox-quota-bytes",
            "2048",
            "--mailbox-quota-entries",
            "5",
        ],
    );
    let k = key(1);
    registered(&s, ROOM, &k);
    let r = http(&s, "POST", &mailbox(ROOM), Some(&k), &[0; 100]);
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("bad_padding"))
    );
    assert_eq!(http(&s, "POST", &mailbox(ROOM), Some(&k), b"").status, 400);
    let r = http(
        &s,
        "POST",
        &mailbox(ROOM),
        Some(&k),
        &vec![0; 64 * 1024 + 256],
    );
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (413, Some("too_large"))
    );
    // 2048 bytes: 1024 + 1024 fit, the next 256 does not. (Each blob differs: the same
    // bytes twice are one entry.)
    for i in 0..2 {
        assert_eq!(
            http(&s, "POST", &mailbox(ROOM), Some(&k), &[10 + i; 1024]).status,
            201
        );
    }
    let r = http(&s, "POST", &mailbox(ROOM), Some(&k), &[7; 256]);
    assert_eq!(r.status, 507);
    assert!(
        r.json()["error"].as_str().unwrap().contains("quota"),
        "{}",
        r.json()
    );
    // Entry quota in another room.
    registered(&s, OTHER_ROOM, &k);
    for i in 0..5 {
        assert_eq!(
            http(&s, "POST", &mailbox(OTHER_ROOM), Some(&k), &[i; 256]).status,
            201
        );
    }
    assert_eq!(
        http(&s, "POST", &mailbox(OTHER_ROOM), Some(&k), &[9; 256]).status,
        507
    );
    // Held entries (file chunks) get three quarters of the byte quota: 1536 of 2048.
    let third = "00112233445566778899aabbccddeeff";
    registered(&s, third, &k);
    let held = format!("{}?device=phone&hold=1", mailbox(third));
    for i in 0..3 {
        let r = http(&s, "POST", &held, Some(&k), &[20 + i; 512]);
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = http(&s, "POST", &held, Some(&k), &[2; 256]);
    assert_eq!(r.status, 507);
    assert!(r.json()["error"].as_str().unwrap().contains("for files"));
    // History still fits in the rest.
    assert_eq!(
        http(&s, "POST", &mailbox(third), Some(&k), &[3; 512]).status,
        201
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_same_sealed_entry_posted_twice_is_stored_once() {
    let dir = temp_dir("dedup");
    let s = server(&dir, &[]);
    let k = key(1);
    registered(&s, ROOM, &k);
    let ack = |device: &str, seq: u64| {
        let body = format!(r#"{{"device":"{device}","seq":{seq}}}"#);
        let r = http(
            &s,
            "POST",
            &format!("{}/ack", mailbox(ROOM)),
            Some(&k),
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    };
    ack("phone", 0);
    let outbox = format!("{}?device=phone", mailbox(ROOM));
    let change = seal(b"one change, uploaded by the page and by its service worker");
    // 1. The first upload creates the entry.
    let r = http(&s, "POST", &outbox, Some(&k), &change);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), json!({"seq": 1, "duplicate": false}));
    // 2. The same bytes again (a retry, a racing worker, even as a held chunk): same seq.
    for path in [&outbox, &format!("{outbox}&hold=1")] {
        let r = http(&s, "POST", path, Some(&k), &change);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json(), json!({"seq": 1, "duplicate": true}));
    }
    // 3. Another device fetching sees one entry.
    let v = http(&s, "GET", &mailbox(ROOM), Some(&k), b"").json();
    assert_eq!(v["entries"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["last_seq"], 1);
    assert_eq!(b64(v["entries"][0]["blob"].as_str().unwrap()), change);
    // 4. Once the entry has left (acknowledged, covered by a base), the bytes append anew.
    let snapshot = seal(b"snapshot");
    assert_eq!(
        http(&s, "POST", &outbox, Some(&k), &snapshot).json()["seq"],
        2
    );
    ack("phone", 2);
    let r = http(
        &s,
        "POST",
        &format!("{}/base", mailbox(ROOM)),
        Some(&k),
        br#"{"from":2,"to":2,"covers":1}"#,
    );
    assert_eq!(r.json()["deleted"], 1);
    let r = http(&s, "POST", &outbox, Some(&k), &change);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), json!({"seq": 3, "duplicate": false}));
    let v = http(&s, "GET", &mailbox(ROOM), Some(&k), b"").json();
    let seqs: Vec<_> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(2), json!(3)]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn entries_expire_after_the_ttl() {
    let dir = temp_dir("ttl");
    let s = server(&dir, &["--mailbox-ttl-secs", "1"]);
    let k = key(1);
    registered(&s, ROOM, &k);
    assert_eq!(
        http(&s, "POST", &mailbox(ROOM), Some(&k), &seal(b"soon gone")).status,
        201
    );
    let v = http(&s, "GET", &mailbox(ROOM), Some(&k), b"").json();
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    std::thread::sleep(Duration::from_millis(1300));
    let v = http(&s, "GET", &mailbox(ROOM), Some(&k), b"").json();
    assert_eq!(v["entries"].as_array().unwrap().len(), 0, "{v}");
    // Sequence numbers never go back.
    assert_eq!(
        http(&s, "POST", &mailbox(ROOM), Some(&k), &seal(b"next")).json()["seq"],
        2
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_restart_loses_nothing_and_the_file_holds_no_plaintext_or_key() {
    let dir = temp_dir("restart");
    let k = key(0x5a);
    let secret = b"meet me at the lighthouse at nine";
    let sealed = seal(secret);
    {
        let s = server(&dir, &[]);
        registered(&s, ROOM, &k);
        assert_eq!(
            http(&s, "POST", &mailbox(ROOM), Some(&k), &sealed).status,
            201
        );
        // Dropping kills the process (SIGKILL): no graceful shutdown to rely on.
    }
    let s = server(&dir, &[]);
    let v = http(&s, "GET", &mailbox(ROOM), Some(&k), b"").json();
    assert_eq!(b64(v["entries"][0]["blob"].as_str().unwrap()), sealed);
    assert_eq!(
        http(&s, "POST", &mailbox(ROOM), Some(&k), &seal(b"more")).json()["seq"],
        2
    );
    drop(s);
    let file = std::fs::read(dir.join("mailbox.redb")).unwrap();
    let contains = |needle: &[u8]| file.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&sealed), "the blob is stored exactly as sent");
    assert!(!contains(secret), "no plaintext in the database");
    assert!(
        !contains(&[0x5a; 32]) && !contains(k.as_bytes()),
        "the key itself is never stored"
    );
    assert!(
        contains(blake3::hash(&[0x5a; 32]).as_bytes()),
        "only its verifier"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_app_origin_may_call_it_and_no_mailbox_means_404() {
    let dir = temp_dir("cors");
    let s = server(&dir, &[]);
    let mut stream = TcpStream::connect(&s.addr).unwrap();
    write!(
        stream,
        "OPTIONS /mailbox/{ROOM} HTTP/1.1\r\nHost: x\r\nOrigin: http://127.0.0.1:8080\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = String::new();
    let _ = stream.read_to_string(&mut head);
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("access-control-allow-headers: authorization"),
        "{head}"
    );
    drop(s);
    let s = server(&dir, &["--no-mailbox"]);
    let r = http(&s, "PUT", &mailbox(ROOM), Some(&key(1)), b"");
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (404, Some("disabled"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn registrations_and_uploads_are_rate_limited_per_address() {
    let dir = temp_dir("rate");
    let s = server(
        &dir,
        &[
            "--mailbox-register-rate",
            "1/3600",
            "--mailbox-register-burst",
            "2",
            "--mailbox-post-rate",
            "1/3600",
            "--mailbox-post-burst",
            "3",
        ],
    );
    let k = key(1);
    // 1. A squatter registers room after room: the third, within the hour, is refused.
    registered(&s, ROOM, &k);
    registered(&s, OTHER_ROOM, &k);
    let r = http(
        &s,
        "PUT",
        &mailbox("00112233445566778899aabbccddeeff"),
        Some(&k),
        b"",
    );
    assert_eq!((r.status, r.json()["code"].as_str()), (429, Some("rate")));
    assert!(
        r.headers.to_ascii_lowercase().contains("retry-after:"),
        "{}",
        r.headers
    );
    assert!(r.json()["error"].as_str().unwrap().contains("try again in"));
    // 2. Uploads: three, then 429; reading is not limited.
    for i in 0..3 {
        assert_eq!(
            http(&s, "POST", &mailbox(ROOM), Some(&k), &[i; 256]).status,
            201
        );
    }
    let r = http(&s, "POST", &mailbox(ROOM), Some(&k), &[9; 256]);
    assert_eq!((r.status, r.json()["code"].as_str()), (429, Some("rate")));
    for _ in 0..5 {
        assert_eq!(http(&s, "GET", &mailbox(ROOM), Some(&k), b"").status, 200);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_server_wide_byte_cap_is_a_clear_507() {
    let dir = temp_dir("total");
    let s = server(&dir, &["--mailbox-max-bytes", "1024"]);
    let k = key(1);
    registered(&s, ROOM, &k);
    registered(&s, OTHER_ROOM, &k);
    assert_eq!(
        http(&s, "POST", &mailbox(ROOM), Some(&k), &[1; 512]).status,
        201
    );
    assert_eq!(
        http(&s, "POST", &mailbox(OTHER_ROOM), Some(&k), &[2; 512]).status,
        201
    );
    // Each room is far below its 64 MiB quota; the server is not.
    let r = http(&s, "POST", &mailbox(OTHER_ROOM), Some(&k), &[3; 256]);
    assert_eq!((r.status, r.json()["code"].as_str()), (507, Some("quota")));
    let message = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        message.contains("server's mailbox storage is full"),
        "{message}"
    );
    assert!(message.contains("try again later"), "{message}");
    // Wiping a room frees its bytes for everyone.
    assert_eq!(
        http(&s, "DELETE", &mailbox(ROOM), Some(&k), b"").status,
        200
    );
    assert_eq!(
        http(&s, "POST", &mailbox(OTHER_ROOM), Some(&k), &[3; 256]).status,
        201
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_squatted_empty_room_expires_and_its_owner_can_register_it() {
    let dir = temp_dir("squat");
    let s = server(&dir, &["--mailbox-room-ttl-secs", "1"]);
    // 1. A stranger who learned the room id registers it first, and never comes back.
    registered(&s, ROOM, &key(2));
    assert_eq!(
        http(&s, "PUT", &mailbox(ROOM), Some(&key(1)), b"").status,
        401
    );
    // A room in use stays: it is fetched now and then.
    registered(&s, OTHER_ROOM, &key(1));
    // 2. A room TTL later (the sweep runs every second here) the id is free again.
    let start = std::time::Instant::now();
    let r = loop {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            http(&s, "GET", &mailbox(OTHER_ROOM), Some(&key(1)), b"").status,
            200
        );
        let r = http(&s, "PUT", &mailbox(ROOM), Some(&key(1)), b"");
        if r.status != 401 || start.elapsed() > Duration::from_secs(6) {
            break r;
        }
    };
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        http(&s, "GET", &mailbox(OTHER_ROOM), Some(&key(1)), b"").status,
        200
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn room_ids_never_reach_the_info_log() {
    let dir = temp_dir("log");
    let text = {
        let s = common::spawn_with(
            [OsStr::new("--data-dir"), dir.as_os_str()],
            "info",
            std::process::Stdio::inherit(),
        );
        registered(&s, ROOM, &key(1));
        assert_eq!(
            http(&s, "POST", &mailbox(ROOM), Some(&key(1)), &seal(b"x")).status,
            201
        );
        assert_eq!(
            http(&s, "GET", &mailbox(ROOM), Some(&key(1)), b"").status,
            200
        );
        // A WebSocket join and leave in the same room, by hand (no client library here).
        let mut ws = TcpStream::connect(&s.addr).unwrap();
        write!(
            ws,
            "GET /{ROOM} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        ws.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0; 512];
        let n = ws.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        drop(ws);
        std::thread::sleep(Duration::from_millis(300));
        let log = s.stdout.lock().unwrap().clone();
        drop(s);
        log
    };
    assert!(text.contains("joined"), "the log is written: {text}");
    assert!(!text.contains(ROOM), "a room id in the log: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A device that registered with the first version's tag and then upgraded: the old
/// registration held every file chunk back (its cursor never moves again) until the upgraded
/// device's own request, decided by the core, unregistered it; then it is never asked again.
#[test]
fn an_upgraded_device_unregisters_its_first_version_tag() {
    use ferry_core::device::local_state::MailboxState;
    use ferry_core::device::mailbox::{legacy_unregistration, note_legacy_unregistration};
    use ferry_core::{DeviceId, MailboxKeys, SpaceSecret};

    let dir = temp_dir("legacy-tag");
    let s = server(&dir, &[]);
    let secret = SpaceSecret::from_bytes([7; 32]);
    let keys = MailboxKeys::derive(&secret);
    let token = keys.auth_token();
    let room = mailbox(secret.room_id().as_str());
    let (laptop, phone) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
    registered(&s, secret.room_id().as_str(), &token);
    let ack = |tag: &str, seq: u64| {
        let body = format!(r#"{{"device":"{tag}","seq":{seq}}}"#);
        let r = http(
            &s,
            "POST",
            &format!("{room}/ack"),
            Some(&token),
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    };
    // The laptop's first version registered under the old tag, as that build did.
    ack(&keys.legacy_device_tag(laptop), 0);
    // The phone leaves a file chunk, held for every other registered device.
    let phone_tag = keys.device_tag(phone);
    let r = http(
        &s,
        "POST",
        &format!("{room}?device={phone_tag}&hold=1"),
        Some(&token),
        &seal(b"chunk"),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let seq = r.json()["seq"].as_u64().unwrap();
    // The upgraded laptop reads it under its new tag: the old registration still holds it.
    assert_eq!(ack(&keys.device_tag(laptop), seq)["deleted"], 0);
    let mut state = MailboxState::default();
    let path = legacy_unregistration(&keys, laptop, &state).expect("asked while registered");
    let r = http(&s, "DELETE", &format!("{room}/{path}"), Some(&token), b"");
    assert_eq!(r.json()["removed"], true);
    assert_eq!(
        r.json()["deleted"],
        1,
        "the held chunk leaves with the old tag"
    );
    note_legacy_unregistration(&mut state, r.status);
    assert_eq!(legacy_unregistration(&keys, laptop, &state), None);
    // A refused or failed request is asked again at the next visit.
    let mut state = MailboxState::default();
    note_legacy_unregistration(&mut state, 429);
    assert!(legacy_unregistration(&keys, laptop, &state).is_some());
}
