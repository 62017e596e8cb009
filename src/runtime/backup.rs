//! Devices → **Export backup** / **Export without history**: one `.ferry` file (see
//! `docs/backup-format.md`, written by `ferry_core::backup`).
//!
//! Decision: the archive is composed as a `Blob` from its parts (headers, JSON, and each
//! stored chunk as IndexedDB returns it), folded into one `Blob` every 64 parts, the way
//! "Save file" composes a file: the browser keeps blob data outside the page's heap and pages
//! it to disk when large, so the page never holds the backup, and the download works the same
//! on Android (a service-worker stream would not work before the worker controls the page).
//! Each chunk's bytes pass through wasm only to be checksummed (CRC-32, BLAKE3).

use super::{Runtime, now_ms};
use ferry_core::backup::{self, BackupWriter, Manifest, MissingFile};
use ferry_core::blobs::{Manifest as FileManifest, chunk_key, chunks_prefix, manifest_key};
use ferry_core::{BlobId, Store};
use leptos::prelude::*;
use std::collections::BTreeSet;

/// The parts of a Blob being composed, folded every 64 parts.
struct Parts {
    parts: js_sys::Array,
    composed: Option<web_sys::Blob>,
}

impl Parts {
    fn new() -> Self {
        Parts {
            parts: js_sys::Array::new(),
            composed: None,
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.push(&js_sys::Uint8Array::from(bytes));
        }
    }

    fn push(&mut self, part: &wasm_bindgen::JsValue) {
        self.parts.push(part);
        if self.parts.length() >= 64 {
            self.fold();
        }
    }

    fn fold(&mut self) {
        if let Some(b) = self.composed.take() {
            self.parts.unshift(&b);
        }
        self.composed = web_sys::Blob::new_with_u8_array_sequence(&self.parts).ok();
        self.parts = js_sys::Array::new();
    }

    fn into_url(mut self) -> Option<String> {
        self.fold();
        let blob = self.composed?;
        let bag = web_sys::BlobPropertyBag::new();
        bag.set_type("application/zip");
        let typed =
            web_sys::Blob::new_with_blob_sequence_and_options(&js_sys::Array::of1(&blob), &bag)
                .ok()?;
        web_sys::Url::create_object_url_with_blob(&typed).ok()
    }
}

impl Runtime {
    /// Writes the backup and hands it to the browser's downloads.
    pub(super) async fn export_backup(&mut self, with_history: bool) {
        self.view
            .backup_status
            .set(Some("Preparing the backup…".into()));
        match self.write_backup(with_history).await {
            Ok((url, name, summary)) => {
                super::files::download(url, &name);
                self.view.backup_status.set(Some(summary));
            }
            Err(e) => {
                self.view.backup_status.set(None);
                self.view
                    .error
                    .set(Some(format!("Cannot export a backup: {e}")));
            }
        }
    }

    async fn write_backup(
        &mut self,
        with_history: bool,
    ) -> Result<(String, String, String), String> {
        let now = now_ms();
        let mut w = BackupWriter::new(now);
        let mut out = Parts::new();
        let items: Vec<ferry_core::Item> =
            self.engine.replica().history().items().cloned().collect();
        let devices = self.engine.replica().devices();
        let records = backup::message_records(&items, &devices);
        let err = |e: backup::BackupError| e.to_string();
        let json = serde_json::to_vec_pretty(&records).map_err(|e| e.to_string())?;
        out.bytes(&w.entry("messages.json", &json).map_err(err)?);
        if with_history {
            let history = self.engine.replica_mut().doc_mut().save();
            out.bytes(&w.entry("history.automerge", &history).map_err(err)?);
        }
        let fingerprint = self.secret.fingerprint();
        let html = backup::viewer_html(&records, &fingerprint);
        out.bytes(&w.entry("index.html", html.as_bytes()).map_err(err)?);
        // Each file once (two items may share one), oldest first.
        let mut seen = BTreeSet::new();
        let files: Vec<(BlobId, String, u64)> = items
            .iter()
            .filter_map(|i| i.file.as_ref())
            .filter(|f| seen.insert(f.root))
            .map(|f| (f.root, f.name.clone(), f.size))
            .collect();
        let mut missing = Vec::new();
        let total = files.len();
        for (n, (root, name, size)) in files.into_iter().enumerate() {
            self.view.backup_status.set(Some(format!(
                "Exporting the backup: file {} of {total}…",
                n + 1
            )));
            let manifest = match self.store.get(&manifest_key(&root)).await {
                Ok(Some(bytes)) => FileManifest::decode(&root, &bytes).ok(),
                _ => None,
            };
            let have = self
                .store
                .keys(&chunks_prefix(&root))
                .await
                .map(|k| k.len())
                .unwrap_or(0);
            let Some(manifest) = manifest.filter(|m| have == m.chunk_count() as usize) else {
                missing.push(MissingFile {
                    hash: root.to_string(),
                    name,
                    size,
                });
                continue;
            };
            out.bytes(&w.start(&format!("files/{root}")).map_err(err)?);
            for i in 0..manifest.chunk_count() {
                let chunk = self
                    .store
                    .get_js(&chunk_key(&root, i))
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("a part of {name} vanished during the export"))?;
                let array = js_sys::Uint8Array::new(&chunk);
                w.data(&array.to_vec()).map_err(err)?;
                out.push(&chunk);
            }
            out.bytes(&w.end().map_err(err)?);
        }
        let manifest = Manifest {
            format: String::new(),
            version: 0,
            exported: backup::iso_utc(now),
            space: fingerprint,
            devices: devices.iter().map(|d| d.name.clone()).collect(),
            with_history,
            entries: Vec::new(),
            missing_files: missing.clone(),
        };
        out.bytes(&w.finish(manifest).map_err(err)?);
        let name = backup::file_name(now);
        let url = out
            .into_url()
            .ok_or_else(|| "the browser could not hold the file".to_owned())?;
        let mut summary = format!(
            "Exported {name}: {} items, {} files",
            items.len(),
            total - missing.len()
        );
        if !missing.is_empty() {
            summary.push_str(&format!(
                " ({} not on this device, listed as missing)",
                missing.len()
            ));
        }
        Ok((url, name, summary))
    }
}

/// What an import read from a backup before changing anything.
struct ReadBackup {
    manifest: Manifest,
    history: Option<Vec<u8>>,
    /// `(root, offset of its data, size)` of each `files/<hash>` entry.
    files: Vec<(BlobId, u64, u64)>,
}

/// The tail read to find a backup's directory: its end record with the longest comment, and
/// the ZIP64 records before it.
const TAIL: u64 = 66_000;

impl Runtime {
    /// Devices → **Import backup**: merges a backup into this space, never replacing anything
    /// (automerge merges; files are kept by their hash). A backup of another space asks first
    /// (`confirmed` is the person's yes).
    pub(super) async fn import_backup(&mut self, file: web_sys::File, confirmed: bool) {
        self.view.import_offer.set(None);
        self.view
            .backup_status
            .set(Some("Reading the backup…".into()));
        let read = match self.read_backup(&file).await {
            Ok(read) => read,
            Err(e) => {
                self.view.backup_status.set(None);
                self.view.error.set(Some(format!(
                    "Cannot import {}: {e}. Nothing was changed.",
                    file.name()
                )));
                return;
            }
        };
        let here = self.secret.fingerprint();
        if read.manifest.space != here && !confirmed {
            self.view.backup_status.set(None);
            self.view
                .import_offer
                .set(Some((file, read.manifest.space.clone())));
            return;
        }
        let Some(history) = read.history else {
            self.view.backup_status.set(None);
            self.view.error.set(Some(format!(
                "{} was exported without history: it can be read (open its index.html) but \
                 not imported. Export with history to import it.",
                file.name()
            )));
            return;
        };
        let before = self.engine.replica().history().len();
        match self.engine.replica_mut().apply_mailbox_changes(&history) {
            Ok(effects) => self.apply(effects).await,
            Err(e) => {
                self.view.backup_status.set(None);
                self.view.error.set(Some(format!(
                    "Cannot import {}: its history could not be read ({e}). Nothing was changed.",
                    file.name()
                )));
                return;
            }
        }
        let added = self.engine.replica().history().len().saturating_sub(before);
        let mut queued = 0;
        for (root, start, size) in read.files {
            if self.files_stored().contains(&root) {
                continue;
            }
            let Some(slice) = file
                .slice_with_f64_and_f64(start as f64, (start + size) as f64)
                .ok()
                .and_then(|b| {
                    web_sys::File::new_with_blob_sequence(
                        &js_sys::Array::of1(&b),
                        &root.to_string(),
                    )
                    .ok()
                })
            else {
                continue;
            };
            if self.import_file(slice, root).is_ok() {
                queued += 1;
            }
        }
        self.view.backup_status.set(Some(format!(
            "Imported {}: {added} new items, {queued} files to store",
            file.name()
        )));
    }

    async fn read_backup(&mut self, file: &web_sys::File) -> Result<ReadBackup, String> {
        use super::files::read_slice;
        use ferry_core::backup::zip::{Crc32, data_start, find_central, read_central};
        let len = file.size() as u64;
        let io = |e: super::files::FileError| e.to_string();
        let tail = read_slice(file, len.saturating_sub(TAIL), len)
            .await
            .map_err(io)?;
        let (offset, size, count) = find_central(&tail, len).map_err(|e| e.to_string())?;
        if offset.checked_add(size).is_none_or(|end| end > len) || size > 64 << 20 {
            return Err("the backup's directory is damaged".into());
        }
        let dir = read_slice(file, offset, offset + size).await.map_err(io)?;
        let entries = read_central(&dir, count).map_err(|e| e.to_string())?;
        // Reads a (small) entry whole and checks its CRC-32.
        let mut starts = Vec::new();
        for e in &entries {
            let local = read_slice(file, e.header, (e.header + 30).min(len))
                .await
                .map_err(io)?;
            let start = data_start(e, &local).map_err(|e| e.to_string())?;
            if start.checked_add(e.size).is_none_or(|end| end > len) {
                return Err(format!("{} is cut off", e.name));
            }
            starts.push(start);
        }
        let whole = async |name: &str| -> Result<Option<Vec<u8>>, String> {
            let Some(k) = entries.iter().position(|e| e.name == name) else {
                return Ok(None);
            };
            let e = &entries[k];
            if e.size > 512 << 20 {
                return Err(format!("{name} is too large"));
            }
            let data = read_slice(file, starts[k], starts[k] + e.size)
                .await
                .map_err(io)?;
            let mut crc = Crc32::default();
            crc.update(&data);
            if crc.value() != e.crc {
                return Err(format!("{name} is damaged"));
            }
            Ok(Some(data))
        };
        let manifest: Manifest = whole("manifest.json")
            .await?
            .and_then(|m| serde_json::from_slice(&m).ok())
            .ok_or("this is not a Ferry backup (no manifest.json)")?;
        if manifest.format != backup::FORMAT {
            return Err("this is not a Ferry backup".into());
        }
        if manifest.version > backup::VERSION {
            return Err("it was made by a newer Ferry; update this device first".into());
        }
        let history = whole("history.automerge").await?;
        if let (Some(h), Some(listed)) = (
            &history,
            manifest
                .entries
                .iter()
                .find(|e| e.path == "history.automerge"),
        ) && blake3::hash(h).to_hex().as_str() != listed.blake3
        {
            return Err("its history is damaged".into());
        }
        let files = entries
            .iter()
            .zip(&starts)
            .filter_map(|(e, &start)| {
                let root: BlobId = e.name.strip_prefix("files/")?.parse().ok()?;
                Some((root, start, e.size))
            })
            .collect();
        Ok(ReadBackup {
            manifest,
            history,
            files,
        })
    }
}
