//! Scenario: someone learns the room id (a hostile signaling server does) but not the space
//! secret. They connect to a real device, record and replay frames, and send garbage.
//! They learn nothing, change nothing, and get banned; the real devices keep syncing.

use ferry_core::{DeviceId, Effect, Input, MAX_BAD_FRAMES, Replica, SpaceSecret};

fn sends(effects: &[Effect]) -> Vec<Vec<u8>> {
    effects
        .iter()
        .filter_map(|e| e.main_frame().map(<[u8]>::to_vec))
        .collect()
}

/// Delivers frames back and forth until quiet; returns every frame each side sent.
fn converse(
    a: &mut Replica,
    b: &mut Replica,
    a_name: &str,
    b_name: &str,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut to_b = sends(&a.handle(Input::PeerUp(b_name.into())));
    let mut to_a = sends(&b.handle(Input::PeerUp(a_name.into())));
    let (mut all_a, mut all_b) = (to_b.clone(), to_a.clone());
    while !to_a.is_empty() || !to_b.is_empty() {
        let mut next_b = vec![];
        for frame in to_b.drain(..) {
            next_b.extend(sends(&b.handle(Input::Frame {
                peer: a_name.into(),
                frame,
            })));
        }
        let mut next_a = vec![];
        for frame in to_a.drain(..) {
            next_a.extend(sends(&a.handle(Input::Frame {
                peer: b_name.into(),
                frame,
            })));
        }
        all_b.extend(next_b.iter().cloned());
        all_a.extend(next_a.iter().cloned());
        to_a = next_b;
        to_b = next_a;
    }
    (all_a, all_b)
}

#[test]
fn a_stranger_without_the_secret_learns_and_changes_nothing() {
    // 1. Alice's space has a secret; the stranger has a different one.
    let space = SpaceSecret::random();
    let mut alice = Replica::new(DeviceId::random(), "Alice laptop", &space).unwrap();
    alice.add_text("the launch code is 1234", 1).unwrap();
    let mut stranger = Replica::new(DeviceId::random(), "Mallory", &SpaceSecret::random()).unwrap();
    stranger.add_text("injected by mallory", 2).unwrap();

    // 2. They connect and talk as the protocol says.
    let (from_alice, _) = converse(&mut alice, &mut stranger, "alice", "mallory");

    // 3. Nothing readable went out; nobody is identified; nothing merged either way.
    assert!(!from_alice.is_empty());
    for frame in &from_alice {
        let text = String::from_utf8_lossy(frame);
        assert!(!text.contains("launch code") && !text.contains("Alice laptop"));
    }
    assert_eq!(alice.peer_count(), 0);
    assert_eq!(stranger.peer_count(), 0);
    assert_eq!(alice.items().len(), 1);
    assert_eq!(stranger.items().len(), 1);
}

#[test]
fn replayed_frames_from_an_earlier_connection_are_refused() {
    let space = SpaceSecret::random();
    let mut alice = Replica::new(DeviceId::random(), "a", &space).unwrap();
    let mut bob = Replica::new(DeviceId::random(), "b", &space).unwrap();
    alice.add_text("first", 1).unwrap();
    // 1. A normal connection, recorded by a man in the middle.
    let (recorded, _) = converse(&mut alice, &mut bob, "alice", "bob");
    assert_eq!(bob.items().len(), 1);
    bob.handle(Input::PeerDown("alice".into()));
    // 2. A new connection from the attacker, replaying Alice's old frames to Bob.
    let mut effects = bob.handle(Input::PeerUp("mitm".into()));
    for frame in recorded {
        effects.extend(bob.handle(Input::Frame {
            peer: "mitm".into(),
            frame,
        }));
    }
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::PeerIdentified { .. }))
    );
    assert!(!effects.iter().any(|e| matches!(e, Effect::DocChanged)));
    assert_eq!(bob.peer_count(), 0);
}

#[test]
fn a_peer_sending_garbage_is_banned_and_real_peers_keep_syncing() {
    let space = SpaceSecret::random();
    let mut alice = Replica::new(DeviceId::random(), "a", &space).unwrap();
    let mut bob = Replica::new(DeviceId::random(), "b", &space).unwrap();
    alice.handle(Input::PeerUp("junk".into()));
    let mut banned = false;
    for i in 0..MAX_BAD_FRAMES + 5 {
        let garbage = [2, 0, i as u8, 7, 7, 7].repeat(20);
        for e in alice.handle(Input::Frame {
            peer: "junk".into(),
            frame: garbage,
        }) {
            banned |= matches!(e, Effect::PeerBanned { .. });
        }
    }
    assert!(banned);
    alice.add_text("still syncing", 1).unwrap();
    converse(&mut alice, &mut bob, "alice", "bob");
    assert_eq!(bob.items()[0].text, "still syncing");
    assert_eq!(alice.peer_count(), 1);
}
