//! Delivery: what "on Laptop" may say. A mark moves only on evidence that the other device
//! *stored* the items: a direct sync that left both with the same heads, or a sealed receipt
//! it posted through the mailbox after storing what it fetched. Server cursors are never
//! evidence (anyone with the access key can move one).

use crate::blobs::BlobId;
use crate::doc::Item;
use crate::ids::DeviceId;
use std::collections::{BTreeMap, BTreeSet};

/// Per author other than `me`: the latest moment up to which this device holds every item the
/// author wrote, with its file's bytes (`stored`), except files the person stopped here
/// (`stopped`), which hold nothing back. What this device's receipt says.
pub fn stored_through<'a>(
    items: impl IntoIterator<Item = &'a Item>,
    stored: &BTreeSet<BlobId>,
    stopped: &BTreeSet<BlobId>,
    me: DeviceId,
) -> Vec<(DeviceId, u64)> {
    let mut latest: BTreeMap<DeviceId, u64> = BTreeMap::new();
    let mut first_missing: BTreeMap<DeviceId, u64> = BTreeMap::new();
    for i in items {
        let at = i.at.wall_ms.max(i.edited_at.map_or(0, |e| e.wall_ms));
        let l = latest.entry(i.author).or_insert(0);
        *l = (*l).max(at);
        if i.file
            .as_ref()
            .is_some_and(|f| !stored.contains(&f.root) && !stopped.contains(&f.root))
        {
            let m = first_missing.entry(i.author).or_insert(u64::MAX);
            *m = (*m).min(i.at.wall_ms);
        }
    }
    latest
        .into_iter()
        .filter(|(author, _)| *author != me)
        .map(|(author, l)| {
            let cap = first_missing
                .get(&author)
                .map_or(u64::MAX, |m| m.saturating_sub(1));
            (author, l.min(cap))
        })
        .collect()
}

/// A digest of a receipt's contents: a receipt is posted again only when it changed (each is
/// one more entry in the mailbox).
pub fn receipt_digest(stored: &[(DeviceId, u64)]) -> u64 {
    stored
        .iter()
        .fold(0u64, |a, (_, ms)| a.wrapping_mul(31).wrapping_add(*ms))
}

/// Applies `from`'s receipt to this device's delivery marks: `from` stored `me`'s items up to
/// the moment it names. `true` when the mark moved. Receipts of this device's own (another
/// tab's, echoed) and of other authors change nothing.
pub fn note_receipt(
    delivered: &mut BTreeMap<DeviceId, u64>,
    me: DeviceId,
    from: DeviceId,
    stored: &[(DeviceId, u64)],
) -> bool {
    if from == me {
        return false;
    }
    let Some(ms) = stored
        .iter()
        .filter(|(author, _)| *author == me)
        .map(|(_, ms)| *ms)
        .max()
    else {
        return false;
    };
    let at = delivered.entry(from).or_insert(0);
    if *at < ms {
        *at = ms;
        return true;
    }
    false
}

/// How far a direct sync may mark another device, given the files this device wrote that it
/// told us it holds whole (`holds`, from its `Have` answers): just before the first such file
/// it does not hold, else everywhere. A direct sync proves the other device's heads (every
/// item), not that it fetched a file's bytes, and "on Laptop" must mean both.
pub fn held_through<'a>(
    items: impl IntoIterator<Item = &'a Item>,
    me: DeviceId,
    holds: &BTreeSet<BlobId>,
) -> u64 {
    items
        .into_iter()
        .filter(|i| i.author == me)
        .filter(|i| i.file.as_ref().is_some_and(|f| !holds.contains(&f.root)))
        .map(|i| i.at.wall_ms.saturating_sub(1))
        .min()
        .unwrap_or(u64::MAX)
}

/// After a direct sync: each device in `synced` has every item up to `latest` (the newest item
/// here), as of `at`, and, with its cap from [`held_through`], the files written here up to
/// its cap. Marks move only when they change what an item shows (once per change, not per
/// loop turn). `true` when one moved.
pub fn note_synced(
    delivered: &mut BTreeMap<DeviceId, u64>,
    synced: &[(DeviceId, u64)],
    latest: u64,
    at: u64,
) -> bool {
    let mut moved = false;
    for (d, cap) in synced {
        let mark = delivered.entry(*d).or_insert(0);
        let to = if *cap >= latest { at } else { *cap };
        if *mark < latest.min(*cap) && to > *mark {
            *mark = to;
            moved = true;
        }
    }
    moved
}

/// One look at direct sync: each device in `synced` has this device's heads (so every item,
/// up to the newest, `latest`), and the files written here up to its `held_through` cap.
/// Moves the marks ([`note_synced`]; only devices whose mark is behind are asked for a cap,
/// so an idle loop does no work per file). Returns the moment this device last counted as
/// synced (`now` when some device is synced, else `before`: through tabs or the mailbox)
/// and whether a mark moved.
pub fn note_direct_sync(
    delivered: &mut BTreeMap<DeviceId, u64>,
    synced: Vec<DeviceId>,
    latest: u64,
    now: u64,
    before: u64,
    held_through: impl Fn(DeviceId) -> u64,
) -> (u64, bool) {
    if synced.is_empty() {
        return (before, false);
    }
    let at = before.max(now.max(latest));
    let behind: Vec<(DeviceId, u64)> = synced
        .into_iter()
        .filter(|d| delivered.get(d).is_none_or(|m| *m < latest))
        .map(|d| (d, held_through(d)))
        .collect();
    let moved = note_synced(delivered, &behind, latest, at);
    (at, moved)
}

/// Through the mailbox alone, this device counts as synced ("Last synced …", as direct sync
/// would make it) once everything it has is uploaded (`all_uploaded`) and every other device
/// of the space (`others`) posted a receipt covering the newest item `me` wrote. With no
/// other device there is no one to be synced with.
pub fn delivered_everywhere<'a>(
    items: impl IntoIterator<Item = &'a Item>,
    me: DeviceId,
    others: &[DeviceId],
    delivered: &BTreeMap<DeviceId, u64>,
    all_uploaded: bool,
) -> bool {
    let latest = items
        .into_iter()
        .filter(|i| i.author == me)
        .map(|i| i.at.wall_ms.max(i.edited_at.map_or(0, |e| e.wall_ms)))
        .max()
        .unwrap_or(0);
    all_uploaded
        && !others.is_empty()
        && others
            .iter()
            .all(|d| delivered.get(d).is_some_and(|at| *at >= latest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{FileMeta, ItemKind};
    use crate::hlc::Hlc;
    use crate::ids::ItemId;

    fn item(author: DeviceId, ms: u64, file: Option<BlobId>) -> Item {
        Item {
            id: ItemId::random(),
            kind: if file.is_some() {
                ItemKind::File
            } else {
                ItemKind::Text
            },
            author,
            at: Hlc {
                wall_ms: ms,
                counter: 0,
            },
            text: String::new(),
            edited_at: None,
            file: file.map(|root| FileMeta {
                root,
                name: "f".into(),
                size: 1,
                mime: String::new(),
            }),
            body: String::new(),
            pinned: false,
            done: false,
        }
    }

    #[test]
    fn a_receipt_stops_before_the_first_file_not_stored_here() {
        let (me, laptop, phone) = (
            DeviceId::from_bytes([1; 16]),
            DeviceId::from_bytes([2; 16]),
            DeviceId::from_bytes([3; 16]),
        );
        let (a, b) = (BlobId([1; 32]), BlobId([2; 32]));
        let items = [
            item(laptop, 10, None),
            item(laptop, 20, Some(a)),
            item(laptop, 30, None),
            item(phone, 15, Some(b)),
            item(me, 40, None),
        ];
        let none = BTreeSet::new();
        let got = stored_through(&items, &BTreeSet::from([b]), &none, me);
        assert_eq!(
            got,
            vec![(laptop, 19), (phone, 15)],
            "not the file at 20, nor after"
        );
        // Stopped here on purpose: it holds nothing back.
        let got = stored_through(&items, &BTreeSet::from([b]), &BTreeSet::from([a]), me);
        assert_eq!(got, vec![(laptop, 30), (phone, 15)]);
        assert_ne!(
            receipt_digest(&got),
            receipt_digest(&[(laptop, 19), (phone, 15)])
        );
    }

    #[test]
    fn only_a_receipt_about_this_device_moves_its_mark() {
        let (me, phone, tablet) = (
            DeviceId::from_bytes([1; 16]),
            DeviceId::from_bytes([3; 16]),
            DeviceId::from_bytes([4; 16]),
        );
        let mut d = BTreeMap::new();
        assert!(!note_receipt(&mut d, me, me, &[(tablet, 9)]), "our own");
        assert!(
            !note_receipt(&mut d, me, phone, &[(tablet, 9)]),
            "another author"
        );
        assert!(note_receipt(&mut d, me, phone, &[(me, 50), (tablet, 9)]));
        assert_eq!(d.get(&phone), Some(&50));
        assert!(!note_receipt(&mut d, me, phone, &[(me, 40)]), "never back");
        assert_eq!(d.get(&phone), Some(&50));
    }

    #[test]
    fn a_sync_moves_marks_once_per_change() {
        let phone = DeviceId::from_bytes([3; 16]);
        let mut d = BTreeMap::new();
        let all = (phone, u64::MAX);
        assert!(note_synced(&mut d, &[all], 100, 120));
        assert!(
            !note_synced(&mut d, &[all], 100, 130),
            "nothing new to show"
        );
        assert_eq!(d.get(&phone), Some(&120));
        assert!(note_synced(&mut d, &[all], 125, 140));
        assert!(!note_synced(&mut d, &[], 200, 200));
    }

    #[test]
    fn a_direct_sync_marks_a_file_only_once_the_other_device_holds_it() {
        let (me, phone) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
        let f = BlobId([7; 32]);
        let items = [
            item(me, 100, None),
            item(me, 200, Some(f)),
            item(me, 300, None),
            item(phone, 50, Some(BlobId([8; 32]))),
        ];
        // The phone has every item but not the file's bytes: marked just before the file.
        let cap = held_through(&items, me, &BTreeSet::new());
        assert_eq!(cap, 199, "the phone's own file does not hold it back");
        let mut d = BTreeMap::new();
        assert!(note_synced(&mut d, &[(phone, cap)], 300, 400));
        assert_eq!(d[&phone], 199);
        // Turns while the bytes are on their way change nothing (nothing to save).
        assert!(!note_synced(&mut d, &[(phone, cap)], 300, 500));
        // It tells us it holds the file: every item is on it now.
        let cap = held_through(&items, me, &BTreeSet::from([f]));
        assert_eq!(cap, u64::MAX);
        assert!(note_synced(&mut d, &[(phone, cap)], 300, 600));
        assert_eq!(d[&phone], 600);
    }

    #[test]
    fn synced_through_the_mailbox_needs_every_device_and_every_upload() {
        let (me, laptop, tablet) = (
            DeviceId::from_bytes([1; 16]),
            DeviceId::from_bytes([2; 16]),
            DeviceId::from_bytes([3; 16]),
        );
        let mut edited = item(me, 100, None);
        edited.edited_at = Some(Hlc {
            wall_ms: 300,
            counter: 0,
        });
        let items = [edited, item(me, 200, None), item(laptop, 900, None)];
        let both = [laptop, tablet];
        let marks = |l, t| BTreeMap::from([(laptop, l), (tablet, t)]);
        assert!(delivered_everywhere(
            &items,
            me,
            &both,
            &marks(300, 300),
            true
        ));
        // The edit (at 300) is what the receipts must cover, not the item's first write.
        assert!(!delivered_everywhere(
            &items,
            me,
            &both,
            &marks(300, 299),
            true
        ));
        // A device without any receipt.
        let only_laptop = BTreeMap::from([(laptop, 300)]);
        assert!(!delivered_everywhere(&items, me, &both, &only_laptop, true));
        // Something still to upload.
        assert!(!delivered_everywhere(
            &items,
            me,
            &both,
            &marks(300, 300),
            false
        ));
        // Alone in the space: nobody to be synced with.
        assert!(!delivered_everywhere(
            &items,
            me,
            &[],
            &marks(300, 300),
            true
        ));
    }

    #[test]
    fn a_direct_sync_counts_only_with_a_synced_device_and_asks_caps_only_when_behind() {
        let (a, b) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
        let mut delivered = BTreeMap::new();
        let none = note_direct_sync(&mut delivered, vec![], 50, 100, 7, |_| u64::MAX);
        assert_eq!(none, (7, false), "nobody synced: the earlier moment stands");
        let asked = std::cell::Cell::new(0);
        let cap = |_| {
            asked.set(asked.get() + 1);
            u64::MAX
        };
        assert_eq!(
            note_direct_sync(&mut delivered, vec![a], 50, 100, 7, cap),
            (100, true)
        );
        assert_eq!(delivered.get(&a), Some(&100));
        assert_eq!(
            note_direct_sync(&mut delivered, vec![a], 50, 200, 7, cap),
            (200, false)
        );
        assert_eq!(asked.get(), 1, "a mark that is not behind asks for no cap");
        // A device that lacks a file of ours is marked only up to the cap.
        let (_, moved) = note_direct_sync(&mut delivered, vec![b], 50, 300, 0, |_| 20);
        assert!(moved);
        assert_eq!(delivered.get(&b), Some(&20));
    }
}
