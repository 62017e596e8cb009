//! Each device tells the space whether its browser promised to keep Ferry's data, and how
//! much it uses, so the others can warn; it writes that only when it matters (kept changed,
//! usage moved by a quarter, at most hourly, or a day passed), so the history does not grow
//! with every byte.

use ferry_core::testing::SimNet;

#[test]
fn devices_publish_their_storage_state_sparingly() {
    let mut net = SimNet::new(2);
    let t0 = 1_800_000_000_000;
    let me = net.devices[0].id;
    let r = net.devices[0].replica_mut();
    // Before this device is in its own roster, there is nothing to say it on.
    assert!(r.publish_storage(false, 10 << 20, t0).unwrap().is_empty());
    r.register_self(t0).unwrap();
    assert!(!r.publish_storage(false, 10 << 20, t0).unwrap().is_empty());
    let quiet = |r: &mut ferry_core::Replica, used: u64, at: u64| {
        r.publish_storage(false, used, at).unwrap().is_empty()
    };
    // Nothing worth saying: nothing written.
    assert!(quiet(r, 11 << 20, t0 + 1_000));
    // Usage doubled: said, but at most hourly.
    assert!(quiet(r, 20 << 20, t0 + 2_000));
    assert!(!quiet(r, 20 << 20, t0 + 3_600_001));
    assert!(quiet(r, 20 << 20, t0 + 3_700_000));
    // A day later: said again.
    assert!(!quiet(r, 20 << 20, t0 + 3_600_001 + 86_400_001));
    net.connect(0, 1);
    net.run_until_quiescent();
    let seen = net.devices[1].replica().device_storage();
    let s = seen.get(&me).copied().expect("the other device knows");
    assert!(!s.kept);
    assert_eq!(s.used, 20 << 20);
    // The browser promised to keep it: said at once, and heard.
    let r = net.devices[0].replica_mut();
    assert!(
        !r.publish_storage(true, 20 << 20, t0 + 90_000_000)
            .unwrap()
            .is_empty()
    );
    // (Called on the replica directly, its effects are not run: the next meeting carries it.)
    net.heal();
    assert!(net.devices[1].replica().device_storage()[&me].kept);
    // A device that never said is absent (not "at risk").
    let other = net.devices[1].id;
    assert!(
        !net.devices[0]
            .replica()
            .device_storage()
            .contains_key(&other)
    );
}
