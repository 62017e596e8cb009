//! Backups: one `.ferry` file (a ZIP) a person can keep, read without the app, and import
//! into any device of the space (see `docs/backup-format.md`).
//!
//! This module is the pure part: the ZIP stream ([`zip`]), the records written into it
//! (`manifest.json`, `messages.json`), the offline viewer (`index.html`), and
//! [`BackupWriter`], which hashes each entry as it streams and writes the manifest last.
//! Reading the files' bytes from storage and handing the stream to the browser's download
//! manager are the app's.

pub mod zip;

use crate::doc::{DeviceInfo, Item, ItemKind};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What went wrong writing a backup.
#[derive(Debug, Error)]
pub enum BackupError {
    /// The ZIP stream was misused (a bug here, never the person's data).
    #[error("the backup file could not be written: {0}")]
    Zip(&'static str),
    /// A backup being read is not one, or is damaged.
    #[error("{0}")]
    Damaged(&'static str),
}

/// The format's name in `manifest.json`.
pub const FORMAT: &str = "ferry-backup";
/// The format's version; a reader refuses a newer one.
pub const VERSION: u32 = 1;

/// `(year, month, day, hour, minute, second)` in UTC of `ms` since the epoch.
pub(crate) fn civil(ms: u64) -> (u32, u32, u32, u32, u32, u32) {
    let secs = ms / 1000;
    let rem = secs % 86_400;
    let (y, m, d) = crate::hlc::civil_date((secs / 86_400) as i64);
    (
        y as u32,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// ISO 8601 in UTC with milliseconds, e.g. `2026-12-07T21:30:42.000Z`.
pub fn iso_utc(ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        ms % 1000
    )
}

/// The backup's file name for an export at `ms`: `ferry-<date>.ferry`.
pub fn file_name(ms: u64) -> String {
    let (y, mo, d, ..) = civil(ms);
    format!("ferry-{y:04}-{mo:02}-{d:02}.ferry")
}

/// One file of a file item, as `messages.json` sums it up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its MIME type (may be empty).
    pub mime: String,
    /// Its content id (BLAKE3 tree root, hex): the bytes are `files/<hash>` when present.
    pub hash: String,
}

/// One live item in `messages.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The item's id.
    pub id: String,
    /// When it was written (ISO 8601, UTC).
    pub time: String,
    /// The name of the device that wrote it.
    pub author: String,
    /// `text`, `file`, `task`, `note`, or a newer kind.
    pub kind: String,
    /// Its text: a message, a file's caption, a task, a note's title.
    pub text: String,
    /// A note's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A task: done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
    /// Pinned above the history.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// When the text was last edited (ISO 8601, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<String>,
    /// A file item's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSummary>,
}

/// The records of `messages.json` for `items` (in display order), naming authors by the
/// space's device names.
pub fn message_records(items: &[Item], devices: &[DeviceInfo]) -> Vec<MessageRecord> {
    items
        .iter()
        .map(|i| MessageRecord {
            id: i.id.to_string(),
            time: iso_utc(i.at.wall_ms),
            author: devices
                .iter()
                .find(|d| d.id == i.author)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| format!("Device {}", i.author.short())),
            kind: match &i.kind {
                ItemKind::Text => "text".into(),
                ItemKind::File => "file".into(),
                ItemKind::Task => "task".into(),
                ItemKind::Note => "note".into(),
                ItemKind::Other(k) => k.clone(),
            },
            text: i.text.clone(),
            body: (i.kind == ItemKind::Note).then(|| i.body.clone()),
            done: (i.kind == ItemKind::Task).then_some(i.done),
            pinned: i.pinned,
            edited: i.edited_at.map(|e| iso_utc(e.wall_ms)),
            file: i.file.as_ref().map(|f| FileSummary {
                name: f.name.clone(),
                size: f.size,
                mime: f.mime.clone(),
                hash: f.root.to_string(),
            }),
        })
        .collect()
}

/// One entry of the archive, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Its path in the archive.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of its bytes (hex).
    pub blake3: String,
}

/// A file an item names whose bytes this device does not hold (not in the archive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingFile {
    /// Its content id (hex).
    pub hash: String,
    /// Its name.
    pub name: String,
    /// Its size.
    pub size: u64,
}

/// `manifest.json`: what the archive is and holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// When it was exported (ISO 8601, UTC).
    pub exported: String,
    /// The space's fingerprint (what Devices shows), so an import can tell another space's
    /// backup; never its secret.
    pub space: String,
    /// The space's device names, oldest first.
    pub devices: Vec<String>,
    /// Whether the history (`history.automerge`) is in it; `false` for "Export without
    /// history".
    pub with_history: bool,
    /// Every other entry of the archive.
    pub entries: Vec<ManifestEntry>,
    /// Files named by items whose bytes were not on the exporting device.
    pub missing_files: Vec<MissingFile>,
}

/// Writes a backup as a stream: each call returns the bytes to emit next. Every entry is
/// hashed as it goes; [`BackupWriter::finish`] adds `manifest.json` and ends the archive.
#[derive(Debug)]
pub struct BackupWriter {
    zip: zip::ZipWriter,
    entries: Vec<ManifestEntry>,
    open: Option<(String, blake3::Hasher, u64)>,
}

impl BackupWriter {
    /// A backup exported at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        BackupWriter {
            zip: zip::ZipWriter::new(now_ms),
            entries: Vec::new(),
            open: None,
        }
    }

    /// Starts the entry `path`; returns the bytes to emit.
    pub fn start(&mut self, path: &str) -> Result<Vec<u8>, BackupError> {
        if path == "manifest.json" {
            return Err(BackupError::Zip("manifest.json is written last"));
        }
        let header = self.zip.start(path)?;
        self.open = Some((path.to_owned(), blake3::Hasher::new(), 0));
        Ok(header)
    }

    /// Counts and hashes the next bytes of the open entry (the caller emits them).
    pub fn data(&mut self, data: &[u8]) -> Result<(), BackupError> {
        self.zip.data(data)?;
        if let Some((_, hasher, size)) = self.open.as_mut() {
            hasher.update(data);
            *size += data.len() as u64;
        }
        Ok(())
    }

    /// Ends the open entry; returns the bytes to emit.
    pub fn end(&mut self) -> Result<Vec<u8>, BackupError> {
        let tail = self.zip.end()?;
        if let Some((path, hasher, size)) = self.open.take() {
            self.entries.push(ManifestEntry {
                path,
                size,
                blake3: hasher.finalize().to_hex().to_string(),
            });
        }
        Ok(tail)
    }

    /// A whole entry held in memory; returns the bytes to emit.
    pub fn entry(&mut self, path: &str, data: &[u8]) -> Result<Vec<u8>, BackupError> {
        let mut out = self.start(path)?;
        self.data(data)?;
        out.extend_from_slice(data);
        out.extend(self.end()?);
        Ok(out)
    }

    /// Bytes emitted so far (for progress).
    pub fn written(&self) -> u64 {
        self.zip.written()
    }

    /// Writes `manifest.json` (with every entry written so far) and ends the archive;
    /// returns the bytes to emit.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<Vec<u8>, BackupError> {
        manifest.format = FORMAT.into();
        manifest.version = VERSION;
        manifest.entries = std::mem::take(&mut self.entries);
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|_| BackupError::Zip("the manifest could not be written"))?;
        let mut out = self.zip.entry("manifest.json", &json)?;
        out.extend(self.zip.finish()?);
        Ok(out)
    }
}

/// `index.html`: an offline viewer of the backup's messages, which works when opened from
/// the unzipped folder (browsers refuse to `fetch` a file next to a `file://` page, so the
/// messages are inside it, as JSON that cannot close its script element).
pub fn viewer_html(records: &[MessageRecord], space: &str) -> String {
    let json = serde_json::to_string(records)
        .unwrap_or_else(|_| "[]".into())
        .replace('<', "\\u003c");
    let space = space
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ferry backup {space}</title>
<style>
body {{ font: 16px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 46rem; padding: 1rem; color: #14202a; background: #eef2f4; }}
h1 {{ font-size: 1.3rem; }}
ol {{ list-style: none; padding: 0; display: flex; flex-direction: column; gap: .5rem; }}
li {{ background: #fff; border-radius: .6rem; padding: .5rem .8rem; white-space: pre-wrap; overflow-wrap: anywhere; }}
.meta {{ color: #5b6b78; font-size: .8rem; }}
a {{ color: #0f6e8c; }}
</style>
</head>
<body>
<h1>Ferry backup {space}</h1>
<p><label>Search <input id="q" type="search"></label></p>
<ol id="list" aria-label="Messages"></ol>
<script type="application/json" id="messages">{json}</script>
<script>
const all = JSON.parse(document.getElementById('messages').textContent);
const list = document.getElementById('list');
function show(q) {{
  list.replaceChildren(...all.filter((m) => !q || (m.text + ' ' + (m.body || '') + ' ' + ((m.file && m.file.name) || '')).toLowerCase().includes(q)).map((m) => {{
    const li = document.createElement('li');
    const meta = document.createElement('div');
    meta.className = 'meta';
    meta.textContent = m.time.replace('T', ' ').slice(0, 16) + ' · ' + m.author + (m.kind === 'text' ? '' : ' · ' + m.kind);
    li.append(meta);
    if (m.kind === 'task') li.append((m.done ? '☑ ' : '☐ ') + m.text);
    else if (m.text) li.append(m.text);
    if (m.body) li.append('\n' + m.body);
    if (m.file) {{
      const a = document.createElement('a');
      a.href = 'files/' + m.file.hash;
      a.download = m.file.name;
      a.textContent = (m.text ? '\n' : '') + m.file.name + ' (' + m.file.size + ' bytes)';
      li.append(a);
    }}
    return li;
  }}));
}}
document.getElementById('q').addEventListener('input', (e) => show(e.target.value.toLowerCase()));
show('');
</script>
</body>
</html>
"#
    )
}

#[cfg(test)]
mod tests;
