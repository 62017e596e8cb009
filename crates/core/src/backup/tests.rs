use super::*;
use crate::blobs::BlobId;
use crate::doc::{FileMeta, SpaceDoc};
use crate::hlc::Hlc;
use crate::ids::{DeviceId, ItemId};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[test]
fn times_and_names() {
    assert_eq!(iso_utc(1_796_679_042_123), "2026-12-07T21:30:42.123Z");
    assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(file_name(1_796_679_042_123), "ferry-2026-12-07.ferry");
}

#[test]
fn records_name_authors_and_kinds() {
    let (me, gone) = (DeviceId::random(), DeviceId::random());
    let mut doc = SpaceDoc::new(me.as_bytes()).unwrap();
    let at = |ms| Hlc {
        wall_ms: ms,
        counter: 0,
    };
    doc.set_device(&DeviceInfo {
        id: me,
        name: "Laptop".into(),
        added_at: 1,
    })
    .unwrap();
    doc.add_text(ItemId::random(), "hello", me, at(1_000))
        .unwrap();
    let task = doc
        .add_task(ItemId::random(), "milk", gone, at(2_000))
        .unwrap();
    doc.set_done(task.id, true, at(2_500)).unwrap();
    doc.add_note(ItemId::random(), "Trip", "pack\nbook", me, at(3_000))
        .unwrap();
    let meta = FileMeta {
        root: BlobId([9; 32]),
        name: "a.pdf".into(),
        size: 3,
        mime: "application/pdf".into(),
    };
    doc.add_file(ItemId::random(), &meta, me, at(4_000))
        .unwrap();
    let records = message_records(&doc.items(), &doc.devices());
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["text", "task", "note", "file"]);
    assert_eq!(records[0].author, "Laptop");
    assert_eq!(records[1].author, format!("Device {}", gone.short()));
    assert_eq!(records[1].done, Some(true));
    assert_eq!(records[2].body.as_deref(), Some("pack\nbook"));
    assert_eq!(
        records[3].file.as_ref().unwrap().hash,
        BlobId([9; 32]).to_string()
    );
    assert_eq!(records[0].time, "1970-01-01T00:00:01.000Z");
    // What an older or newer reader sees: absent fields stay absent.
    let json = serde_json::to_value(&records[0]).unwrap();
    assert!(json.get("body").is_none() && json.get("file").is_none());
    let html = viewer_html(&records, "AB12-</script>");
    assert!(
        !html.contains("AB12-</script>"),
        "the space name is escaped"
    );
    assert_eq!(
        html.matches("</script>").count(),
        2,
        "the data cannot end its script"
    );
}

/// What Python's `zipfile` (an independent reader) finds in `bytes`: each entry's SHA-256,
/// after it checked every CRC.
fn python_reads(bytes: &[u8]) -> BTreeMap<String, String> {
    let dir = std::env::temp_dir().join(format!("ferry-zip-{}", ItemId::random()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("backup.ferry");
    std::fs::write(&path, bytes).unwrap();
    let script = r#"
import hashlib, json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    assert bad is None, bad
    print(json.dumps({i.filename: hashlib.sha256(z.read(i)).hexdigest() for i in z.infolist()}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, path.to_str().unwrap()])
        .output()
        .expect("python3 runs (the machine has it)");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "zipfile refused the archive: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_backup(mut w: BackupWriter) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let mut out = Vec::new();
    let mut contents = BTreeMap::new();
    let history = vec![7u8; 5_000];
    out.extend(w.entry("history.automerge", &history).unwrap());
    contents.insert("history.automerge".to_owned(), history);
    out.extend(w.entry("messages.json", b"[]").unwrap());
    contents.insert("messages.json".to_owned(), b"[]".to_vec());
    // A file streamed in pieces, and an empty one.
    let file: Vec<u8> = (0..300_000u32).map(|n| (n * 7 % 251) as u8).collect();
    out.extend(w.start("files/abc").unwrap());
    for piece in file.chunks(65_536) {
        w.data(piece).unwrap();
        out.extend_from_slice(piece);
    }
    out.extend(w.end().unwrap());
    contents.insert("files/abc".to_owned(), file);
    out.extend(w.entry("files/empty", b"").unwrap());
    contents.insert("files/empty".to_owned(), Vec::new());
    assert_eq!(w.written(), out.len() as u64);
    let manifest = Manifest {
        format: String::new(),
        version: 0,
        exported: iso_utc(1_796_679_042_000),
        space: "AB12".into(),
        devices: vec!["Laptop".into(), "Phone".into()],
        with_history: true,
        entries: vec![],
        missing_files: vec![MissingFile {
            hash: "def".into(),
            name: "gone.jpg".into(),
            size: 9,
        }],
    };
    out.extend(w.finish(manifest).unwrap());
    (out, contents)
}

fn check(bytes: &[u8], contents: &BTreeMap<String, Vec<u8>>) {
    let read = python_reads(bytes);
    for (path, data) in contents {
        assert_eq!(read.get(path), Some(&sha(data)), "{path}");
    }
    assert_eq!(read.len(), contents.len() + 1, "and manifest.json");
    // The manifest lists every other entry with its size and BLAKE3.
    let start = bytes
        .windows(15)
        .position(|w| w == b"manifest.json\x01\x00")
        .expect("the manifest's local header");
    let json_at = start + 15 + 18;
    let end = bytes[json_at..]
        .windows(4)
        .position(|w| w == [0x50, 0x4B, 0x07, 0x08])
        .unwrap();
    let manifest: Manifest = serde_json::from_slice(&bytes[json_at..json_at + end]).unwrap();
    assert_eq!(
        (manifest.format.as_str(), manifest.version),
        (FORMAT, VERSION)
    );
    assert_eq!(manifest.entries.len(), contents.len());
    for e in &manifest.entries {
        let data = &contents[&e.path];
        assert_eq!(e.size, data.len() as u64);
        assert_eq!(e.blake3, blake3::hash(data).to_hex().to_string());
    }
}

#[test]
fn a_backup_is_a_zip_that_python_reads() {
    let (bytes, contents) = write_backup(BackupWriter::new(1_796_679_042_000));
    check(&bytes, &contents);
    assert!(
        !bytes.windows(4).any(|w| w == [0x50, 0x4B, 0x06, 0x06]),
        "a small backup needs no ZIP64 end record"
    );
}

/// Sizes, offsets and counts past 32 bits take ZIP64 fields (the limit lowered so a test
/// can reach it without writing 4 GiB).
#[test]
fn zip64_fields_where_values_are_large() {
    let w = BackupWriter {
        zip: zip::ZipWriter::new(1_796_679_042_000).with_zip64_limit(4_096),
        entries: Vec::new(),
        open: None,
    };
    let (bytes, contents) = write_backup(w);
    assert!(bytes.windows(4).any(|w| w == [0x50, 0x4B, 0x06, 0x06]));
    check(&bytes, &contents);
}
