//! The sans-IO file transfer engine: which chunk to ask whom for, when to give up on a peer,
//! and what to answer peers who ask us.
//!
//! The runtime feeds it peer events, [`BlobMessage`]s (from [`crate::Effect::Blob`]), storage
//! answers and clock ticks, and performs the returned [`BlobEffect`]s. Nothing here does I/O
//! or reads a clock, so a whole multi-device transfer runs in a unit test.
//!
//! Downloading is pull-based and bounded everywhere, because the browser silently drops
//! data-channel sends once its 16 MiB buffer is full: at most [`TransferConfig::window`]
//! chunks are in flight per file and [`TransferConfig::per_peer`] per peer, and a serving
//! device queues at most [`TransferConfig::serve_queue`] reads per peer. A chunk that does not
//! arrive in time is asked for again (preferably from another peer); a damaged chunk is
//! discarded and asked for from another peer, and a peer that sent
//! [`TransferConfig::max_bad_chunks`] damaged chunks is not asked again.

use super::{BlobId, BlobMessage, MAX_HAVE_RANGES, MAX_QUERY_ROOTS, MAX_WANT_BATCH, Manifest};
use crate::replica::PeerKey;
use std::collections::{BTreeMap, BTreeSet};

/// Missing chunks looked at per scheduling step (bounds work when sources hold only parts).
const MAX_SCAN: usize = 4096;

/// Tuning knobs; the defaults suit WebRTC data channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferConfig {
    /// Chunks in flight per file (8 × 256 KiB = 2 MiB).
    pub window: usize,
    /// Chunks in flight per peer, over all files.
    pub per_peer: usize,
    /// A chunk or manifest not answered within this many ms is asked for again.
    pub timeout_ms: u64,
    /// How often a stalled download asks every peer again who has the file.
    pub query_interval_ms: u64,
    /// Damaged chunks after which a peer is no longer asked.
    pub max_bad_chunks: u32,
    /// Storage reads queued per peer while serving; further requests are dropped (an honest
    /// peer never has more in flight, so only a misbehaving one loses anything).
    pub serve_queue: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            window: 8,
            per_peer: 6,
            timeout_ms: 15_000,
            query_interval_ms: 5_000,
            max_bad_chunks: 3,
            serve_queue: 16,
        }
    }
}

/// Which chunks of a file this device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Have {
    /// The whole file.
    All,
    /// These chunk indices (any order).
    Chunks(Vec<u32>),
}

/// Counters, for diagnostics and for tests proving that nothing is fetched twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferStats {
    /// Chunk requests sent (each index in a `Want` counts once).
    pub chunk_requests: u64,
    /// Manifest requests sent.
    pub manifest_requests: u64,
    /// Chunks received that verified.
    pub chunks_verified: u64,
    /// Chunks received that did not verify.
    pub chunks_rejected: u64,
    /// Chunks sent to peers.
    pub chunks_served: u64,
}

/// Something the runtime must do for the transfer engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobEffect {
    /// Send a message to an authenticated peer (`Replica::send_blob`).
    Send {
        /// Recipient.
        peer: PeerKey,
        /// The message.
        msg: BlobMessage,
    },
    /// Read chunk `index` of `root` from storage and report it with
    /// [`Transfers::chunk_read`] (for `peer`, who asked for it).
    ReadChunk {
        /// Who asked.
        peer: PeerKey,
        /// The file.
        root: BlobId,
        /// The chunk.
        index: u32,
    },
    /// Store a verified manifest at `manifest_key(root)`.
    StoreManifest {
        /// The file.
        root: BlobId,
        /// Canonical manifest bytes.
        bytes: Vec<u8>,
    },
    /// Store a verified chunk at `chunk_key(root, index)`, then call [`Transfers::stored`]
    /// (or [`Transfers::store_failed`]).
    StoreChunk {
        /// The file.
        root: BlobId,
        /// The chunk.
        index: u32,
        /// Its bytes (already checked against the manifest).
        data: Vec<u8>,
    },
    /// Download progress (bytes committed to storage).
    Progress {
        /// The file.
        root: BlobId,
        /// Bytes stored so far.
        have_bytes: u64,
        /// File size.
        total_bytes: u64,
    },
    /// Every chunk of the file is stored; this device now serves it.
    Complete {
        /// The file.
        root: BlobId,
    },
    /// A peer sent something damaged or malformed (it was discarded).
    Rejected {
        /// The peer.
        peer: PeerKey,
        /// Why.
        reason: String,
    },
    /// The download stopped and will not continue by itself.
    Failed {
        /// The file.
        root: BlobId,
        /// Why, for the person.
        reason: String,
    },
    /// Storage returned damaged bytes for a chunk: delete `chunk_key(root, index)`; the chunk
    /// is no longer served (and is fetched again if this file is being downloaded).
    Corrupt {
        /// The file.
        root: BlobId,
        /// The chunk.
        index: u32,
    },
}

#[derive(Debug, Default)]
struct PeerState {
    bad: u32,
    inflight: usize,
    reads: usize,
    /// Files this device serves that the peer said it holds whole (bounded by what is
    /// served here).
    holds: BTreeSet<BlobId>,
}

/// What a peer told us it holds: everything, or sorted half-open ranges.
#[derive(Debug, Clone)]
enum Source {
    All,
    Ranges(Vec<(u32, u32)>),
}

impl Source {
    fn has(&self, i: u32) -> bool {
        match self {
            Source::All => true,
            Source::Ranges(r) => {
                let pos = r.partition_point(|(s, _)| *s <= i);
                pos > 0 && i < r[pos - 1].1
            }
        }
    }
}

#[derive(Debug, Default)]
struct Download {
    manifest: Option<Manifest>,
    stored: Vec<bool>,
    stored_count: u32,
    stored_bytes: u64,
    missing: BTreeSet<u32>,
    inflight: BTreeMap<u32, (PeerKey, u64)>,
    verified: BTreeSet<u32>,
    /// Soft preference after a timeout: ask someone else first.
    avoid: BTreeMap<u32, PeerKey>,
    /// Peers never to ask for this chunk (sent it damaged, or said it is missing).
    exclude: BTreeMap<u32, BTreeSet<PeerKey>>,
    sources: BTreeMap<PeerKey, Source>,
    manifest_req: Option<(PeerKey, u64)>,
    manifest_bad: BTreeSet<PeerKey>,
    last_query: u64,
}

impl Download {
    fn install(&mut self, manifest: Manifest, have: &[u32]) {
        let n = manifest.chunk_count();
        self.stored = vec![false; n as usize];
        for &i in have {
            if let Some(len) = manifest.chunk_len(i)
                && !self.stored[i as usize]
            {
                self.stored[i as usize] = true;
                self.stored_count += 1;
                self.stored_bytes += len as u64;
            }
        }
        self.missing = (0..n).filter(|&i| !self.stored[i as usize]).collect();
        self.manifest = Some(manifest);
    }

    fn is_complete(&self) -> bool {
        self.manifest
            .as_ref()
            .is_some_and(|m| self.stored_count == m.chunk_count())
    }

    fn progress(&self, root: BlobId) -> Option<BlobEffect> {
        let m = self.manifest.as_ref()?;
        Some(BlobEffect::Progress {
            root,
            have_bytes: self.stored_bytes,
            total_bytes: m.size,
        })
    }
}

#[derive(Debug)]
struct Served {
    manifest: Manifest,
    /// `None`: every chunk.
    have: Option<Vec<bool>>,
}

/// The transfer engine of one device: its downloads, and the files it serves.
#[derive(Debug, Default)]
pub struct Transfers {
    config: TransferConfig,
    peers: BTreeMap<PeerKey, PeerState>,
    downloads: BTreeMap<BlobId, Download>,
    served: BTreeMap<BlobId, Served>,
    stats: TransferStats,
}

fn ranges_of(bits: impl Iterator<Item = bool>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (i, b) in bits.enumerate() {
        let i = i as u32;
        if !b {
            continue;
        }
        match out.last_mut() {
            Some((_, end)) if *end == i => *end = i + 1,
            _ => out.push((i, i + 1)),
        }
    }
    out.truncate(MAX_HAVE_RANGES);
    out
}

impl Transfers {
    /// An engine with the given tuning.
    pub fn new(config: TransferConfig) -> Self {
        Transfers {
            config,
            ..Default::default()
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> &TransferStats {
        &self.stats
    }

    /// Files being downloaded.
    pub fn downloading(&self) -> Vec<BlobId> {
        self.downloads.keys().copied().collect()
    }

    /// Whether this device holds (and serves) every chunk of `root`.
    pub fn is_complete(&self, root: &BlobId) -> bool {
        self.served.get(root).is_some_and(|s| s.have.is_none())
    }

    /// Files served here that `peer` said it holds whole (what a direct sync may mark as
    /// delivered, see [`crate::device::delivery::held_through`]).
    pub fn peer_holds(&self, peer: &PeerKey) -> Option<&BTreeSet<BlobId>> {
        self.peers.get(peer).map(|p| &p.holds)
    }

    /// Asks `peer` which of `roots` it holds (its answers fill [`Transfers::peer_holds`]).
    pub fn ask(&self, peer: &PeerKey, roots: &[BlobId]) -> Vec<BlobEffect> {
        let mut out = vec![];
        self.query(roots, std::slice::from_ref(peer), &mut out);
        out
    }

    /// Tells every connected peer this device now holds `root` (however it got here), so
    /// the file's author can say "on" this device.
    pub fn announce(&self, root: BlobId) -> Vec<BlobEffect> {
        let Some(msg) = self.have_message(root) else {
            return vec![];
        };
        self.active_peers()
            .into_iter()
            .map(|peer| BlobEffect::Send {
                peer,
                msg: msg.clone(),
            })
            .collect()
    }

    fn active_peers(&self) -> Vec<PeerKey> {
        self.peers.keys().cloned().collect()
    }

    fn query(&self, roots: &[BlobId], peers: &[PeerKey], out: &mut Vec<BlobEffect>) {
        for chunk in roots.chunks(MAX_QUERY_ROOTS) {
            for peer in peers {
                out.push(BlobEffect::Send {
                    peer: peer.clone(),
                    msg: BlobMessage::Query {
                        roots: chunk.to_vec(),
                    },
                });
            }
        }
    }

    /// Starts (or keeps) downloading a file whose manifest this device does not have: asks
    /// every peer who holds it. If the file is already here, answers `Complete` at once.
    pub fn want(&mut self, root: BlobId, now_ms: u64) -> Vec<BlobEffect> {
        if self.is_complete(&root) {
            return vec![BlobEffect::Complete { root }];
        }
        if self.downloads.contains_key(&root) {
            return vec![];
        }
        self.downloads.insert(
            root,
            Download {
                last_query: now_ms,
                ..Default::default()
            },
        );
        let mut out = vec![];
        self.query(&[root], &self.active_peers(), &mut out);
        out
    }

    /// Resumes a download from storage: the stored manifest bytes and the indices of chunks
    /// already stored (from listing `chunks_prefix(root)`). Stored chunks are never asked
    /// for again.
    pub fn resume(
        &mut self,
        root: BlobId,
        manifest_bytes: &[u8],
        have: &[u32],
        now_ms: u64,
    ) -> Result<Vec<BlobEffect>, super::BlobError> {
        let manifest = Manifest::decode(&root, manifest_bytes)?;
        self.served.remove(&root);
        self.cancel(root);
        let mut dl = Download {
            last_query: now_ms,
            ..Default::default()
        };
        dl.install(manifest, have);
        let mut out: Vec<BlobEffect> = dl.progress(root).into_iter().collect();
        self.downloads.insert(root, dl);
        if !self.finish_if_complete(root, &mut out) {
            self.query(&[root], &self.active_peers(), &mut out);
        }
        Ok(out)
    }

    /// Stops downloading `root` (late answers are ignored; stored chunks stay stored).
    pub fn cancel(&mut self, root: BlobId) {
        if let Some(dl) = self.downloads.remove(&root) {
            for (peer, _) in dl.inflight.values() {
                if let Some(p) = self.peers.get_mut(peer) {
                    p.inflight = p.inflight.saturating_sub(1);
                }
            }
        }
    }

    /// Stops downloading and serving `root` (the file was deleted).
    pub fn forget(&mut self, root: BlobId) {
        self.cancel(root);
        self.served.remove(&root);
    }

    /// Serves a file this device holds (call at startup for each stored file).
    pub fn serve(
        &mut self,
        root: BlobId,
        manifest_bytes: &[u8],
        have: Have,
    ) -> Result<(), super::BlobError> {
        let manifest = Manifest::decode(&root, manifest_bytes)?;
        let have = match have {
            Have::All => None,
            Have::Chunks(indices) => {
                let mut bits = vec![false; manifest.chunk_count() as usize];
                for i in indices {
                    if let Some(b) = bits.get_mut(i as usize) {
                        *b = true;
                    }
                }
                Some(bits)
            }
        };
        self.served.insert(root, Served { manifest, have });
        Ok(())
    }

    /// An authenticated peer connected: ask it about every file being downloaded.
    pub fn peer_up(&mut self, peer: &PeerKey) -> Vec<BlobEffect> {
        self.peers.entry(peer.clone()).or_default();
        let roots: Vec<BlobId> = self.downloads.keys().copied().collect();
        let mut out = vec![];
        self.query(&roots, std::slice::from_ref(peer), &mut out);
        out
    }

    /// A peer disconnected: what was asked of it is asked of others.
    pub fn peer_down(&mut self, peer: &PeerKey, now_ms: u64) -> Vec<BlobEffect> {
        self.peers.remove(peer);
        let mut out = vec![];
        let roots: Vec<BlobId> = self.downloads.keys().copied().collect();
        for root in roots {
            if let Some(dl) = self.downloads.get_mut(&root) {
                dl.sources.remove(peer);
                let lost: Vec<u32> = dl
                    .inflight
                    .iter()
                    .filter(|(_, (p, _))| p == peer)
                    .map(|(i, _)| *i)
                    .collect();
                for i in lost {
                    dl.inflight.remove(&i);
                    dl.missing.insert(i);
                }
                if dl.manifest_req.as_ref().is_some_and(|(p, _)| p == peer) {
                    dl.manifest_req = None;
                }
            }
            self.advance(root, now_ms, &mut out);
        }
        out
    }

    /// Timeouts: re-asks for chunks and manifests not answered in time, and asks peers again
    /// who has a stalled file.
    pub fn tick(&mut self, now_ms: u64) -> Vec<BlobEffect> {
        let mut out = vec![];
        let timeout = self.config.timeout_ms;
        let roots: Vec<BlobId> = self.downloads.keys().copied().collect();
        for root in roots {
            let Some(dl) = self.downloads.get_mut(&root) else {
                continue;
            };
            let late: Vec<(u32, PeerKey)> = dl
                .inflight
                .iter()
                .filter(|(_, (_, at))| now_ms >= at.saturating_add(timeout))
                .map(|(i, (p, _))| (*i, p.clone()))
                .collect();
            for (i, peer) in late {
                dl.inflight.remove(&i);
                dl.missing.insert(i);
                dl.avoid.insert(i, peer.clone());
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.inflight = p.inflight.saturating_sub(1);
                }
            }
            if dl
                .manifest_req
                .as_ref()
                .is_some_and(|(_, at)| now_ms >= at.saturating_add(timeout))
                && let Some((p, _)) = dl.manifest_req.take()
                && dl.sources.len() > 1
            {
                // Ask someone else next time; a lone source is asked again.
                dl.sources.remove(&p);
            }
            let stalled = dl.inflight.is_empty() && dl.manifest_req.is_none();
            if stalled && now_ms >= dl.last_query.saturating_add(self.config.query_interval_ms) {
                dl.last_query = now_ms;
                let peers = self.active_peers();
                self.query(&[root], &peers, &mut out);
            }
            self.advance(root, now_ms, &mut out);
        }
        out
    }

    /// Handles a message from an authenticated peer.
    pub fn on_message(&mut self, peer: &PeerKey, msg: BlobMessage, now_ms: u64) -> Vec<BlobEffect> {
        let mut out = vec![];
        if let Err(e) = msg.validate() {
            out.push(BlobEffect::Rejected {
                peer: peer.clone(),
                reason: e.to_string(),
            });
            return out;
        }
        self.peers.entry(peer.clone()).or_default();
        match msg {
            BlobMessage::Query { roots } => {
                for root in roots {
                    if let Some(have) = self.have_message(root) {
                        out.push(BlobEffect::Send {
                            peer: peer.clone(),
                            msg: have,
                        });
                    }
                }
            }
            BlobMessage::Have {
                root,
                complete,
                mut ranges,
            } => {
                if self.served.contains_key(&root)
                    && let Some(p) = self.peers.get_mut(peer)
                {
                    if complete {
                        p.holds.insert(root);
                    } else {
                        p.holds.remove(&root);
                    }
                }
                if let Some(dl) = self.downloads.get_mut(&root) {
                    ranges.sort_unstable();
                    let source = if complete {
                        Source::All
                    } else {
                        Source::Ranges(ranges)
                    };
                    dl.sources.insert(peer.clone(), source);
                    for set in dl.exclude.values_mut() {
                        set.remove(peer);
                    }
                    self.advance(root, now_ms, &mut out);
                }
            }
            BlobMessage::WantManifest { root } => {
                let msg = match self.manifest_of(&root) {
                    Some(m) => BlobMessage::Manifest {
                        root,
                        bytes: m.encode(),
                    },
                    None => BlobMessage::Missing { root, index: None },
                };
                out.push(BlobEffect::Send {
                    peer: peer.clone(),
                    msg,
                });
            }
            BlobMessage::Manifest { root, bytes } => {
                self.on_manifest(peer, root, &bytes, now_ms, &mut out)
            }
            BlobMessage::Want { root, indices } => {
                for index in indices.into_iter().take(MAX_WANT_BATCH) {
                    if !self.holds(&root, index) {
                        out.push(BlobEffect::Send {
                            peer: peer.clone(),
                            msg: BlobMessage::Missing {
                                root,
                                index: Some(index),
                            },
                        });
                        continue;
                    }
                    let Some(p) = self.peers.get_mut(peer) else {
                        break;
                    };
                    if p.reads >= self.config.serve_queue {
                        break;
                    }
                    p.reads += 1;
                    out.push(BlobEffect::ReadChunk {
                        peer: peer.clone(),
                        root,
                        index,
                    });
                }
            }
            BlobMessage::Chunk { root, index, data } => {
                self.on_chunk(peer, root, index, data, now_ms, &mut out)
            }
            BlobMessage::Missing { root, index } => {
                if let Some(dl) = self.downloads.get_mut(&root) {
                    match index {
                        None => {
                            dl.sources.remove(peer);
                            if dl.manifest_req.as_ref().is_some_and(|(p, _)| p == peer) {
                                dl.manifest_req = None;
                            }
                        }
                        Some(i) => {
                            dl.exclude.entry(i).or_default().insert(peer.clone());
                            if dl.inflight.get(&i).is_some_and(|(p, _)| p == peer) {
                                dl.inflight.remove(&i);
                                dl.missing.insert(i);
                                if let Some(p) = self.peers.get_mut(peer) {
                                    p.inflight = p.inflight.saturating_sub(1);
                                }
                            }
                        }
                    }
                    self.advance(root, now_ms, &mut out);
                }
            }
        }
        out
    }

    fn on_manifest(
        &mut self,
        peer: &PeerKey,
        root: BlobId,
        bytes: &[u8],
        now_ms: u64,
        out: &mut Vec<BlobEffect>,
    ) {
        let Some(dl) = self.downloads.get_mut(&root) else {
            return;
        };
        if dl.manifest.is_some() {
            return;
        }
        if dl.manifest_req.as_ref().is_some_and(|(p, _)| p == peer) {
            dl.manifest_req = None;
        }
        match Manifest::decode(&root, bytes) {
            Ok(m) => {
                dl.install(m, &[]);
                out.push(BlobEffect::StoreManifest {
                    root,
                    bytes: bytes.to_vec(),
                });
                out.extend(dl.progress(root));
                if !self.finish_if_complete(root, out) {
                    self.advance(root, now_ms, out);
                }
            }
            Err(e) => {
                dl.manifest_bad.insert(peer.clone());
                dl.sources.remove(peer);
                self.bad_peer(peer, format!("file description refused: {e}"), out);
                self.advance(root, now_ms, out);
            }
        }
    }

    fn on_chunk(
        &mut self,
        peer: &PeerKey,
        root: BlobId,
        index: u32,
        data: Vec<u8>,
        now_ms: u64,
        out: &mut Vec<BlobEffect>,
    ) {
        let Some(dl) = self.downloads.get_mut(&root) else {
            return;
        };
        let Some(manifest) = dl.manifest.as_ref() else {
            return;
        };
        // Late or unasked copies are still welcome if we lack the chunk: they are verified.
        let wanted = dl.missing.contains(&index) || dl.inflight.contains_key(&index);
        if !wanted {
            return;
        }
        let verdict = manifest.verify_chunk(index, &data);
        if let Some((asked, _)) = dl.inflight.remove(&index)
            && let Some(p) = self.peers.get_mut(&asked)
        {
            p.inflight = p.inflight.saturating_sub(1);
        }
        match verdict {
            Ok(()) => {
                self.stats.chunks_verified += 1;
                dl.missing.remove(&index);
                dl.verified.insert(index);
                out.push(BlobEffect::StoreChunk { root, index, data });
            }
            Err(e) => {
                self.stats.chunks_rejected += 1;
                dl.missing.insert(index);
                dl.exclude.entry(index).or_default().insert(peer.clone());
                self.bad_peer(peer, format!("damaged chunk discarded: {e}"), out);
            }
        }
        self.advance(root, now_ms, out);
    }

    fn bad_peer(&mut self, peer: &PeerKey, reason: String, out: &mut Vec<BlobEffect>) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.bad += 1;
        }
        out.push(BlobEffect::Rejected {
            peer: peer.clone(),
            reason,
        });
    }

    /// A chunk write asked for by [`BlobEffect::StoreChunk`] committed.
    pub fn stored(&mut self, root: BlobId, index: u32) -> Vec<BlobEffect> {
        let mut out = vec![];
        let Some(dl) = self.downloads.get_mut(&root) else {
            return out;
        };
        if !dl.verified.remove(&index) {
            return out;
        }
        if let Some(len) = dl.manifest.as_ref().and_then(|m| m.chunk_len(index))
            && let Some(bit) = dl.stored.get_mut(index as usize)
        {
            *bit = true;
            dl.stored_count += 1;
            dl.stored_bytes += len as u64;
        }
        out.extend(dl.progress(root));
        self.finish_if_complete(root, &mut out);
        out
    }

    /// A chunk write failed (storage full): the download stops with [`BlobEffect::Failed`].
    pub fn store_failed(&mut self, root: BlobId, reason: &str) -> Vec<BlobEffect> {
        if !self.downloads.contains_key(&root) {
            return vec![];
        }
        self.cancel(root);
        vec![BlobEffect::Failed {
            root,
            reason: reason.to_owned(),
        }]
    }

    /// Storage answered a [`BlobEffect::ReadChunk`] (`None`: not found). The bytes are checked
    /// before they go out, so a damaged store never spreads.
    pub fn chunk_read(
        &mut self,
        peer: &PeerKey,
        root: BlobId,
        index: u32,
        bytes: Option<Vec<u8>>,
    ) -> Vec<BlobEffect> {
        let mut out = vec![];
        let Some(p) = self.peers.get_mut(peer) else {
            return out;
        };
        p.reads = p.reads.saturating_sub(1);
        let verdict = match (self.manifest_of(&root), &bytes) {
            (Some(m), Some(b)) => m.verify_chunk(index, b).is_ok(),
            _ => false,
        };
        match bytes {
            Some(data) if verdict => {
                self.stats.chunks_served += 1;
                out.push(BlobEffect::Send {
                    peer: peer.clone(),
                    msg: BlobMessage::Chunk { root, index, data },
                });
            }
            found => {
                if found.is_some() {
                    out.push(BlobEffect::Corrupt { root, index });
                }
                self.unhold(root, index);
                out.push(BlobEffect::Send {
                    peer: peer.clone(),
                    msg: BlobMessage::Missing {
                        root,
                        index: Some(index),
                    },
                });
            }
        }
        out
    }

    fn unhold(&mut self, root: BlobId, index: u32) {
        if let Some(dl) = self.downloads.get_mut(&root)
            && let Some(bit) = dl.stored.get_mut(index as usize)
            && *bit
        {
            *bit = false;
            dl.stored_count -= 1;
            let len = dl.manifest.as_ref().and_then(|m| m.chunk_len(index));
            dl.stored_bytes -= len.unwrap_or(0) as u64;
            dl.missing.insert(index);
        }
        if let Some(s) = self.served.get_mut(&root) {
            let n = s.manifest.chunk_count() as usize;
            let bits = s.have.get_or_insert_with(|| vec![true; n]);
            if let Some(b) = bits.get_mut(index as usize) {
                *b = false;
            }
        }
    }

    fn manifest_of(&self, root: &BlobId) -> Option<&Manifest> {
        self.served
            .get(root)
            .map(|s| &s.manifest)
            .or_else(|| self.downloads.get(root)?.manifest.as_ref())
    }

    fn holds(&self, root: &BlobId, index: u32) -> bool {
        if let Some(s) = self.served.get(root) {
            return match &s.have {
                None => index < s.manifest.chunk_count(),
                Some(bits) => bits.get(index as usize).copied().unwrap_or(false),
            };
        }
        self.downloads
            .get(root)
            .and_then(|d| d.stored.get(index as usize).copied())
            .unwrap_or(false)
    }

    fn have_message(&self, root: BlobId) -> Option<BlobMessage> {
        if let Some(s) = self.served.get(&root) {
            return Some(match &s.have {
                None => BlobMessage::Have {
                    root,
                    complete: true,
                    ranges: vec![],
                },
                Some(bits) => BlobMessage::Have {
                    root,
                    complete: false,
                    ranges: ranges_of(bits.iter().copied()),
                },
            });
        }
        let dl = self.downloads.get(&root)?;
        dl.manifest.as_ref()?;
        Some(BlobMessage::Have {
            root,
            complete: false,
            ranges: ranges_of(dl.stored.iter().copied()),
        })
    }

    fn finish_if_complete(&mut self, root: BlobId, out: &mut Vec<BlobEffect>) -> bool {
        if !self.downloads.get(&root).is_some_and(Download::is_complete) {
            return false;
        }
        if let Some(dl) = self.downloads.remove(&root)
            && let Some(manifest) = dl.manifest
        {
            self.served.insert(
                root,
                Served {
                    manifest,
                    have: None,
                },
            );
            out.push(BlobEffect::Complete { root });
        }
        true
    }

    /// Asks for whatever can be asked for now: the manifest, then missing chunks, within the
    /// per-file window and the per-peer budget.
    fn advance(&mut self, root: BlobId, now_ms: u64, out: &mut Vec<BlobEffect>) {
        let Some(dl) = self.downloads.get_mut(&root) else {
            return;
        };
        let usable = |p: &PeerKey, peers: &BTreeMap<PeerKey, PeerState>| {
            peers
                .get(p)
                .is_some_and(|s| s.bad < self.config.max_bad_chunks)
        };
        if dl.manifest.is_none() {
            if dl.manifest_req.is_none()
                && let Some(peer) = dl
                    .sources
                    .keys()
                    .find(|p| !dl.manifest_bad.contains(*p) && usable(p, &self.peers))
                    .cloned()
            {
                self.stats.manifest_requests += 1;
                dl.manifest_req = Some((peer.clone(), now_ms));
                out.push(BlobEffect::Send {
                    peer,
                    msg: BlobMessage::WantManifest { root },
                });
            }
            return;
        }
        let mut batches: BTreeMap<PeerKey, Vec<u32>> = BTreeMap::new();
        let mut room = self.config.window.saturating_sub(dl.inflight.len());
        // Stop as soon as no source has budget left, so a long file's missing list is not
        // rescanned on every event.
        let mut budget: usize = dl
            .sources
            .keys()
            .filter(|p| usable(p, &self.peers))
            .filter_map(|p| self.peers.get(p))
            .map(|s| self.config.per_peer.saturating_sub(s.inflight))
            .sum();
        let candidates: Vec<u32> = dl.missing.iter().take(MAX_SCAN).copied().collect();
        for index in candidates {
            if room == 0 || budget == 0 {
                break;
            }
            let excluded = dl.exclude.get(&index);
            let avoid = dl.avoid.get(&index);
            let pick = dl
                .sources
                .iter()
                .filter(|(p, s)| {
                    s.has(index)
                        && usable(p, &self.peers)
                        && !excluded.is_some_and(|e| e.contains(*p))
                        && self.peers.get(*p).is_some_and(|st| {
                            st.inflight + batches.get(*p).map_or(0, Vec::len) < self.config.per_peer
                        })
                })
                .map(|(p, _)| p)
                .min_by_key(|p| {
                    let load = self.peers.get(*p).map_or(0, |s| s.inflight)
                        + batches.get(*p).map_or(0, Vec::len);
                    (avoid == Some(*p), load)
                })
                .cloned();
            let Some(peer) = pick else {
                continue;
            };
            room -= 1;
            budget -= 1;
            batches.entry(peer).or_default().push(index);
        }
        for (peer, indices) in batches {
            for &i in &indices {
                dl.missing.remove(&i);
                dl.inflight.insert(i, (peer.clone(), now_ms));
            }
            if let Some(p) = self.peers.get_mut(&peer) {
                p.inflight += indices.len();
            }
            self.stats.chunk_requests += indices.len() as u64;
            for batch in indices.chunks(MAX_WANT_BATCH) {
                out.push(BlobEffect::Send {
                    peer: peer.clone(),
                    msg: BlobMessage::Want {
                        root,
                        indices: batch.to_vec(),
                    },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::{CHUNK_SIZE, ManifestBuilder};

    fn file(chunks: usize) -> (Manifest, Vec<u8>) {
        let data: Vec<u8> = (0..chunks * CHUNK_SIZE).map(|i| (i % 251) as u8).collect();
        let mut b = ManifestBuilder::new();
        for c in data.chunks(CHUNK_SIZE) {
            b.push(c).unwrap();
        }
        (b.finish(), data)
    }

    fn wants(effects: &[BlobEffect]) -> usize {
        effects
            .iter()
            .map(|e| match e {
                BlobEffect::Send {
                    msg: BlobMessage::Want { indices, .. },
                    ..
                } => indices.len(),
                _ => 0,
            })
            .sum()
    }

    /// The author learns which of its files a peer holds whole: from the peer's answers to
    /// its questions, and from what the peer announces once a file is complete there.
    #[test]
    fn a_peer_that_completes_a_file_says_so_and_its_author_remembers() {
        let (m, data) = file(2);
        let root = m.root();
        let mut author = Transfers::new(TransferConfig::default());
        author.serve(root, &m.encode(), Have::All).unwrap();
        let phone: PeerKey = "phone".into();
        let laptop: PeerKey = "laptop".into();
        let _ = author.peer_up(&phone);
        let ask = author.ask(&phone, &[root]);
        assert!(
            matches!(&ask[..], [BlobEffect::Send { msg: BlobMessage::Query { roots }, .. }] if roots == &vec![root])
        );
        assert_eq!(author.peer_holds(&phone).map(BTreeSet::len), Some(0));

        // The phone downloads it; once complete it tells everyone connected.
        let mut other = Transfers::new(TransferConfig::default());
        let _ = other.peer_up(&laptop);
        let mut queue: Vec<BlobEffect> = other.want(root, 0);
        let mut told = vec![];
        for _ in 0..20 {
            let mut next = vec![];
            for e in queue.drain(..) {
                match e {
                    BlobEffect::Send { msg, .. } => {
                        let mut back = author.on_message(&phone, msg, 0);
                        while let Some(b) = back.pop() {
                            match b {
                                BlobEffect::Send { msg, .. } => {
                                    next.extend(other.on_message(&laptop, msg, 0))
                                }
                                BlobEffect::ReadChunk { peer, root, index } => {
                                    let at = index as usize * CHUNK_SIZE;
                                    let bytes = data[at..at + CHUNK_SIZE].to_vec();
                                    back.extend(author.chunk_read(&peer, root, index, Some(bytes)));
                                }
                                _ => {}
                            }
                        }
                    }
                    BlobEffect::StoreChunk { root, index, .. } => {
                        next.extend(other.stored(root, index))
                    }
                    BlobEffect::Complete { root } => told.extend(other.announce(root)),
                    _ => {}
                }
            }
            queue = next;
        }
        assert!(
            other.is_complete(&root),
            "downloaded ({} bytes)",
            data.len()
        );
        assert_eq!(told.len(), 1, "announced to the one peer it has");
        for e in told {
            if let BlobEffect::Send { peer, msg } = e {
                assert_eq!(peer, laptop);
                let _ = author.on_message(&phone, msg, 0);
            }
        }
        assert!(author.peer_holds(&phone).is_some_and(|h| h.contains(&root)));
        // A later answer that it no longer holds it all (freed, damaged) is believed too.
        let partial = BlobMessage::Have {
            root,
            complete: false,
            ranges: vec![(0, 1)],
        };
        let _ = author.on_message(&phone, partial, 0);
        assert!(author.peer_holds(&phone).is_some_and(|h| h.is_empty()));
        // Claims about files not served here are not kept (a peer cannot grow this).
        let stranger = BlobMessage::Have {
            root: BlobId([9; 32]),
            complete: true,
            ranges: vec![],
        };
        let _ = author.on_message(&phone, stranger, 0);
        assert!(author.peer_holds(&phone).is_some_and(|h| h.is_empty()));
        // Gone when the peer is.
        let _ = author.peer_down(&phone, 0);
        assert_eq!(author.peer_holds(&phone), None);
    }

    #[test]
    fn requests_stay_within_the_window_and_the_per_peer_budget() {
        let (m, _) = file(40);
        let root = m.root();
        let config = TransferConfig::default();
        let mut t = Transfers::new(config.clone());
        t.resume(root, &m.encode(), &[], 0).unwrap();
        let have = |peer: &PeerKey| {
            let msg = BlobMessage::Have {
                root,
                complete: true,
                ranges: vec![],
            };
            (peer.clone(), msg)
        };
        let (p, msg) = have(&"one".into());
        let first = wants(&t.on_message(&p, msg, 0));
        assert_eq!(first, config.per_peer, "one peer: its budget");
        let (p, msg) = have(&"two".into());
        let second = wants(&t.on_message(&p, msg, 0));
        assert_eq!(first + second, config.window, "two peers: the window");
        // Nothing more goes out until something comes back or times out.
        assert_eq!(wants(&t.tick(1)), 0);
        assert_eq!(wants(&t.tick(config.timeout_ms + 1)), config.window);
        assert_eq!(t.stats().chunk_requests, 2 * config.window as u64);
    }

    #[test]
    fn a_serving_device_queues_a_bounded_number_of_reads_per_peer() {
        let (m, _) = file(40);
        let root = m.root();
        let mut t = Transfers::default();
        t.serve(root, &m.encode(), Have::All).unwrap();
        let mut reads = 0;
        for round in 0..4u32 {
            let indices = (round * 10..round * 10 + 10).collect();
            let eff = t.on_message(&"greedy".into(), BlobMessage::Want { root, indices }, 0);
            reads += eff
                .iter()
                .filter(|e| matches!(e, BlobEffect::ReadChunk { .. }))
                .count();
        }
        assert_eq!(reads, TransferConfig::default().serve_queue);
        // A damaged stored chunk is not sent: the app is told to delete it.
        let eff = t.chunk_read(&"greedy".into(), root, 0, Some(vec![0; CHUNK_SIZE]));
        assert!(eff.contains(&BlobEffect::Corrupt { root, index: 0 }));
        assert!(!eff.iter().any(|e| matches!(
            e,
            BlobEffect::Send {
                msg: BlobMessage::Chunk { .. },
                ..
            }
        )));
        assert!(!t.is_complete(&root));
    }
}
