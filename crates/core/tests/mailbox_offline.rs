//! Scenario (issue #9): two devices that are never online together converge through the
//! mailbox. The "server" is a Vec of sealed entries; it never sees plaintext.

use ferry_core::{
    DeviceId, MailboxKeys, MailboxPayload, MailboxReader, Replica, SpaceSecret, plan_upload,
    random_msg_id, seal_payload,
};

struct Device {
    replica: Replica,
    reader: MailboxReader,
    keys: MailboxKeys,
    uploaded: Vec<automerge::ChangeHash>,
    cursor: usize,
}

impl Device {
    fn new(space: &SpaceSecret, name: &str) -> Self {
        let id = DeviceId::random();
        let keys = MailboxKeys::derive(space);
        Device {
            replica: Replica::new(id, name, space).unwrap(),
            reader: MailboxReader::new(keys.clone(), &space.room_id())
                .unwrap()
                .skip_from(id),
            keys,
            uploaded: vec![],
            cursor: 0,
        }
    }

    fn upload(&mut self, space: &SpaceSecret, server: &mut Vec<Vec<u8>>) {
        let Some(plan) = plan_upload(self.replica.doc_mut(), &self.uploaded) else {
            return;
        };
        let payload = MailboxPayload::Changes {
            bytes: plan.changes,
        };
        let entries = seal_payload(
            &self.keys,
            &space.room_id(),
            self.replica.device(),
            random_msg_id(),
            &payload,
        )
        .unwrap();
        server.extend(entries);
        self.uploaded = plan.heads;
    }

    fn download(&mut self, server: &[Vec<u8>]) {
        for entry in &server[self.cursor..] {
            if let Some((_, MailboxPayload::Changes { bytes })) = self.reader.open(entry).unwrap() {
                self.replica.apply_mailbox_changes(&bytes).unwrap();
            }
        }
        self.cursor = server.len();
    }

    fn texts(&self) -> Vec<String> {
        let mut t: Vec<String> = self.replica.items().into_iter().map(|i| i.text).collect();
        t.sort();
        t
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn devices_never_online_together_converge_through_the_mailbox() {
    let space = SpaceSecret::random();
    let mut server: Vec<Vec<u8>> = vec![];
    let mut a = Device::new(&space, "A");
    let mut b = Device::new(&space, "B");

    let a_texts = [
        "alpha-plaintext-one",
        "alpha-plaintext-two",
        "alpha-plaintext-three",
    ];
    for (i, t) in a_texts.iter().enumerate() {
        a.replica.add_text(t, 1_000 + i as u64).unwrap();
        a.upload(&space, &mut server);
    }
    a.upload(&space, &mut server); // nothing new: no entry
    assert_eq!(server.len(), 3);

    b.download(&server);
    assert_eq!(b.texts(), a.texts());
    assert_eq!(b.replica.heads(), a.replica.heads());

    // ~100 KB of incompressible text: a multi-entry message.
    let mut x = 0x9e37_79b9_u32;
    let noise: String = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let big = format!("bravo-plaintext-big {noise}");
    b.replica.add_text("bravo-plaintext-reply", 5_000).unwrap();
    b.replica.add_text(&big, 5_001).unwrap();
    b.upload(&space, &mut server);
    assert!(server.len() > 4, "the big text spans several entries");

    a.download(&server);
    assert_eq!(a.texts(), b.texts());
    assert_eq!(a.texts().len(), 5);
    assert_eq!(a.replica.heads(), b.replica.heads());

    for e in &server {
        assert_eq!(e.len() % 256, 0);
        assert!(e.len() <= 65536);
        for t in a_texts.iter().copied().chain(["bravo-plaintext"]) {
            assert!(!contains(e, t.as_bytes()), "{t} visible in a sealed entry");
        }
    }
    // Another space's device reading the same box learns nothing and applies nothing.
    let mut stranger = Device::new(&SpaceSecret::random(), "C");
    for e in &server {
        assert!(stranger.reader.open(e).is_err());
    }
    stranger.cursor = server.len();
    assert!(stranger.texts().is_empty());
}
