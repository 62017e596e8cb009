//! Every decoder that takes bytes from outside (a peer, a link, the mailbox server, storage)
//! gets random bytes and mutated valid inputs: it must never panic, and nothing forged or
//! altered may be accepted as authentic (issue #15).
//!
//! The case count is kept small so `cargo test` stays fast. A soak run:
//!
//! ```text
//! PROPTEST_CASES=10000 cargo test -p ferry-core --release --test hostile_input
//! ```

use ferry_core::blobs::{
    BlobId, BlobMessage, Manifest, ManifestBuilder, TransferConfig, Transfers,
};
use ferry_core::ids::DeviceId;
use ferry_core::mailbox::{MailboxKeys, MailboxPayload, MailboxReader, seal_payload};
use ferry_core::pairing::{PairingLink, SpaceSecret};
use ferry_core::replica::{Effect, Input, Replica};
use ferry_core::seal::{Binding, FrameKey, Lane};
use ferry_core::wire::{Message, Reassembler};
use proptest::prelude::*;

/// `PROPTEST_CASES` when set (the soak setting is 10 000), else a quick 64.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// A change to valid bytes: flip one bit, cut the tail, or append garbage.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        proptest::collection::vec(any::<u8>(), 1..300).prop_map(Mutation::Append),
    ]
}

/// Applies `m`; always changes the bytes (an empty input only grows).
fn mutate(mut v: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::Flip(i, b) if !v.is_empty() => {
            let i = i % v.len();
            v[i] ^= 1 << b;
        }
        Mutation::Cut(n) if !v.is_empty() => v.truncate(n % v.len()),
        Mutation::Append(extra) => v.extend_from_slice(extra),
        _ => v.push(0),
    }
    v
}

fn binding() -> impl Strategy<Value = Binding> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<bool>(),
    )
        .prop_map(|(sender, challenge, sender_challenge, bulk)| Binding {
            sender,
            challenge,
            sender_challenge,
            lane: if bulk { Lane::Bulk } else { Lane::Main },
        })
}

fn space() -> (SpaceSecret, MailboxKeys) {
    let secret = SpaceSecret::from_bytes([42; 32]);
    let keys = MailboxKeys::derive(&secret);
    (secret, keys)
}

/// A one-packet wire frame around `data` (header of [`ferry_core::wire`] version 1).
fn packet(data: &[u8]) -> Vec<u8> {
    let mut p = vec![ferry_core::wire::VERSION, 1, 0, 0, 0, 0, 0, 1, 0];
    p.extend_from_slice(data);
    p
}

proptest! {
    #![proptest_config(config())]

    // --- wire packets -------------------------------------------------------------------

    #[test]
    fn wire_packets_of_random_bytes_never_panic(
        packets in proptest::collection::vec(bytes(400), 1..8)
    ) {
        let mut r = Reassembler::default();
        for p in &packets {
            let _ = r.push(p);
            let _ = r.push(&packet(p));
        }
    }

    #[test]
    fn mutated_wire_packets_never_panic(
        text in bytes(90_000), m in mutation(), which in any::<usize>()
    ) {
        // Big enough to span two packets, so reassembly is exercised too.
        let mut packets = Message::Sync(text).to_packets(7).unwrap();
        let i = which % packets.len();
        packets[i] = mutate(packets[i].clone(), &m);
        let mut r = Reassembler::default();
        for p in &packets {
            let _ = r.push(p);
        }
    }

    // --- sealed frames ------------------------------------------------------------------

    #[test]
    fn random_bytes_never_open_as_a_sealed_frame(frame in bytes(400), b in binding()) {
        let key = FrameKey::derive(&space().0);
        prop_assert!(key.open(&frame, &b, 0).is_err());
        let _ = FrameKey::peek_seq(&frame);
    }

    #[test]
    fn an_altered_sealed_frame_never_opens(
        packet in bytes(300), b in binding(), m in mutation(), seq in 1u64..u64::MAX
    ) {
        let key = FrameKey::derive(&space().0);
        let sealed = key.seal(seq, &b, &packet);
        prop_assert_eq!(key.open(&sealed, &b, seq - 1).unwrap(), (seq, packet));
        prop_assert!(key.open(&mutate(sealed, &m), &b, seq - 1).is_err());
    }

    #[test]
    fn a_sealed_frame_opens_under_no_other_binding(
        packet in bytes(100), b in binding(), other in binding()
    ) {
        prop_assume!(b != other);
        let key = FrameKey::derive(&space().0);
        let sealed = key.seal(1, &b, &packet);
        prop_assert!(key.open(&sealed, &other, 0).is_err());
        let stranger = FrameKey::derive(&SpaceSecret::from_bytes([7; 32]));
        prop_assert!(stranger.open(&sealed, &b, 0).is_err());
    }

    // --- a replica fed garbage ------------------------------------------------------------

    #[test]
    fn a_replica_fed_garbage_never_panics_nor_accepts_anything(
        frames in proptest::collection::vec((bytes(300), any::<bool>()), 1..20)
    ) {
        let (secret, _) = space();
        let mut r = Replica::new(DeviceId::random(), "target", &secret).unwrap();
        r.handle(Input::PeerUp("stranger".into()));
        for (frame, bulk) in frames {
            let peer = "stranger".to_string();
            let input = if bulk {
                Input::BulkFrame { peer: peer.into(), frame }
            } else {
                Input::Frame { peer: peer.into(), frame }
            };
            for e in r.handle(input) {
                let accepted = matches!(
                    e,
                    Effect::DocChanged | Effect::PeerIdentified { .. } | Effect::Blob { .. }
                );
                prop_assert!(!accepted, "accepted from garbage: {:?}", e);
            }
        }
        prop_assert!(!r.is_authenticated(&"stranger".into()));
    }

    // --- mailbox entries ----------------------------------------------------------------

    #[test]
    fn random_mailbox_entries_never_open(
        mut entry in bytes(1024), pad in 0usize..4, hint in any::<bool>()
    ) {
        let (secret, keys) = space();
        let room = secret.room_id();
        // Often shaped enough to reach the decryption: a valid length, version and room hint.
        if pad > 0 {
            entry.resize(256 * pad, 0);
            entry[0] = ferry_core::mailbox::MAILBOX_VERSION;
            entry[1] = ferry_core::mailbox::MAILBOX_EPOCH;
            if hint {
                let hex = room.as_str();
                for (i, b) in entry[2..10].iter_mut().enumerate() {
                    *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
                }
            }
        }
        let mut reader = MailboxReader::new(keys, &room).unwrap();
        prop_assert!(reader.open(&entry).is_err());
    }

    #[test]
    fn an_altered_mailbox_entry_never_opens(
        data in bytes(70_000), m in mutation(), which in any::<usize>()
    ) {
        let (secret, keys) = space();
        let room = secret.room_id();
        let from = DeviceId::from_bytes([5; 16]);
        let payload = MailboxPayload::Changes { bytes: data };
        let entries = seal_payload(&keys, &room, from, 9, &payload).unwrap();
        let i = which % entries.len();
        let altered = mutate(entries[i].clone(), &m);
        let mut reader = MailboxReader::new(keys.clone(), &room).unwrap();
        prop_assert!(reader.open(&altered).is_err());
        // The untouched entries still deliver the message, once.
        let mut reader = MailboxReader::new(keys, &room).unwrap();
        let mut got = vec![];
        for e in entries.iter().chain(&entries) {
            if let Some(done) = reader.open(e).unwrap() {
                got.push(done);
            }
        }
        prop_assert_eq!(got, vec![(from, payload)]);
    }

    #[test]
    fn a_mailbox_entry_of_another_space_never_opens(data in bytes(500)) {
        let (secret, keys) = space();
        let other = SpaceSecret::from_bytes([43; 32]);
        let payload = MailboxPayload::Changes { bytes: data };
        let theirs = MailboxKeys::derive(&other);
        let from = DeviceId::from_bytes([5; 16]);
        let mut reader = MailboxReader::new(keys, &secret.room_id()).unwrap();
        for e in seal_payload(&theirs, &other.room_id(), from, 1, &payload).unwrap() {
            prop_assert!(reader.open(&e).is_err());
        }
        // Their key under our room id: the room hint matches, authentication does not.
        for e in seal_payload(&theirs, &secret.room_id(), from, 2, &payload).unwrap() {
            prop_assert!(reader.open(&e).is_err());
        }
    }

    // --- pairing links --------------------------------------------------------------------

    #[test]
    fn random_pairing_links_never_panic(text in ".{0,300}", fragment in "[a-z=&%#0-9A-F_-]{0,200}") {
        let _ = PairingLink::parse(&text);
        let _ = PairingLink::parse(&format!("https://x/#{fragment}"));
        let _ = PairingLink::parse(&format!("#pair={fragment}"));
    }

    #[test]
    fn mutated_pairing_links_never_panic_and_keep_a_whole_secret(
        at in any::<usize>(), c in any::<char>(), cut in any::<usize>()
    ) {
        let link = PairingLink {
            secret: SpaceSecret::from_bytes([9; 32]),
            signal: Some("wss://signal.example/ws".into()),
            ice: Some(r#"[{"urls":["stun:s.example:3478"]}]"#.into()),
        }
        .to_url("https://ferry.example/");
        let mut chars: Vec<char> = link.chars().collect();
        let i = at % chars.len();
        chars[i] = c;
        let changed: String = chars.iter().collect();
        if let Ok(parsed) = PairingLink::parse(&changed) {
            prop_assert_eq!(parsed.secret.expose().len(), 32);
        }
        let cut: String = link.chars().take(cut % link.len()).collect();
        let _ = PairingLink::parse(&cut);
    }

    // --- file manifests and blob messages -------------------------------------------------

    #[test]
    fn random_manifests_never_panic(body in bytes(600), header in any::<bool>(), size in any::<u64>()) {
        let mut bytes = body;
        if header {
            // A plausible header, so decoding gets past the version and chunk size.
            let mut h = vec![1];
            h.extend_from_slice(&size.to_le_bytes());
            h.extend_from_slice(&(ferry_core::blobs::CHUNK_SIZE as u32).to_le_bytes());
            h.extend_from_slice(&bytes);
            bytes = h;
        }
        // Under its own hash, so the checks after the root comparison run too.
        let root = BlobId(*blake3::hash(&bytes).as_bytes());
        let _ = Manifest::decode(&root, &bytes);
        prop_assert!(Manifest::decode(&BlobId([0; 32]), &bytes).is_err());
    }

    #[test]
    fn an_altered_manifest_is_never_accepted_for_its_root(
        full in 0u8..3, tail in bytes(64), m in mutation()
    ) {
        // Only the last chunk may be short.
        let mut b = ManifestBuilder::new();
        for i in 0..full {
            b.push(&vec![i; ferry_core::blobs::CHUNK_SIZE]).unwrap();
        }
        if !tail.is_empty() || full == 0 {
            b.push(if tail.is_empty() { b"x" } else { &tail }).unwrap();
        }
        let manifest = b.finish();
        let root = manifest.root();
        prop_assert_eq!(Manifest::decode(&root, &manifest.encode()).unwrap(), manifest.clone());
        prop_assert!(Manifest::decode(&root, &mutate(manifest.encode(), &m)).is_err());
    }

    #[test]
    fn random_blob_messages_never_panic_the_transfers(
        bodies in proptest::collection::vec(bytes(200), 1..12), now in 0u64..1_000_000
    ) {
        // Variant 3 is `Message::Blob`: random bodies after it decode to all sorts of
        // structurally valid, hostile file messages.
        let root = BlobId([1; 32]);
        let mut t = Transfers::new(TransferConfig::default());
        let _ = t.want(root, 0);
        let _ = t.peer_up(&"peer".into());
        let mut r = Reassembler::default();
        for body in bodies {
            let mut data = vec![3];
            data.extend_from_slice(&body);
            if let Ok(Some(Message::Blob(msg))) = r.push(&packet(&data))
                && msg.validate().is_ok()
            {
                let _ = t.on_message(&"peer".into(), msg, now);
            }
        }
        let _ = t.tick(now + 60_000);
    }

    #[test]
    fn hostile_blob_answers_never_complete_a_download(
        index in any::<u32>(), data in bytes(300), ranges in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..8)
    ) {
        let mut b = ManifestBuilder::new();
        b.push(b"the real chunk").unwrap();
        let manifest = b.finish();
        let root = manifest.root();
        let mut t = Transfers::new(TransferConfig::default());
        let _ = t.want(root, 0);
        let _ = t.peer_up(&"peer".into());
        let msgs = [
            BlobMessage::Have { root, complete: false, ranges: ranges.into_iter().filter(|(s, e)| s < e).collect() },
            BlobMessage::Have { root, complete: true, ranges: vec![] },
            BlobMessage::Manifest { root, bytes: data.clone() },
            BlobMessage::Manifest { root, bytes: manifest.encode() },
            BlobMessage::Chunk { root, index, data: data.clone() },
            BlobMessage::Chunk { root, index: 0, data },
            BlobMessage::Missing { root, index: Some(index) },
        ];
        for msg in msgs {
            prop_assume!(msg.validate().is_ok());
            let _ = t.on_message(&"peer".into(), msg, 1);
        }
        prop_assert!(!t.is_complete(&root));
    }
}
