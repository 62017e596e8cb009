//! The history's rows, patched instead of rebuilt.
//!
//! Rebuilding every row after each message costs O(history) (a 100k-item history spent most
//! of a message's time there). The common change is a new item at the end: [`Rows::refresh`]
//! then builds one row and re-words only the rows whose delivery can have changed: those
//! written (or edited) after the *floor*, the moment every other device and the last sync
//! already covered. The next most common is an item changed where it is (an edit, a pin, a
//! check, each keystroke in an open note): only its row is built again. Everything else (a
//! delete, an item merged into the middle, a renamed device, a new day, a delivery mark that
//! went back) takes the full rebuild, which the tests compare against.

use super::format::{WAITING_IN_MAILBOX, delivery_text};
use super::state::{ItemView, item_views};
use ferry_core::{DeviceId, HistoryPatch, Item};
use std::collections::BTreeMap;

/// What a row's wording depends on besides its item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowInputs {
    /// Display names of the space's devices.
    pub names: Vec<(DeviceId, String)>,
    /// This device.
    pub me: DeviceId,
    /// Local time zone offset (minutes).
    pub offset_min: i64,
    /// The last moment another device had everything (direct sync).
    pub synced_ms: u64,
    /// Per other device, the last moment it had everything written here.
    pub delivered: BTreeMap<DeviceId, u64>,
    /// Written here up to this moment and carried by the mailbox.
    pub carried_ms: u64,
}

impl RowInputs {
    fn others(&self) -> Vec<(String, u64)> {
        self.names
            .iter()
            .filter(|(id, _)| *id != self.me)
            .map(|(id, n)| (n.clone(), self.delivered.get(id).copied().unwrap_or(0)))
            .collect()
    }

    /// Rows written or edited at or before this moment read the same under every later input
    /// whose marks did not go back: on every other device, and synced.
    fn floor(&self) -> u64 {
        self.names
            .iter()
            .filter(|(id, _)| *id != self.me)
            .map(|(id, _)| self.delivered.get(id).copied().unwrap_or(0))
            .chain([self.synced_ms])
            .min()
            .unwrap_or(0)
    }

    /// Whether `self` can follow `before` by re-wording only rows above the old floor: the
    /// same devices, and no delivery mark went back.
    fn extends(&self, before: &RowInputs) -> bool {
        self.names == before.names
            && self.me == before.me
            && self.offset_min == before.offset_min
            && self.synced_ms >= before.synced_ms
            && self.carried_ms >= before.carried_ms
            && before
                .delivered
                .iter()
                .all(|(d, at)| self.delivered.get(d).is_some_and(|now| now >= at))
    }
}

/// When a row's delivery wording compares: written, or last edited.
fn effective_ms(i: &Item) -> u64 {
    i.at.wall_ms.max(i.edited_at.map_or(0, |e| e.wall_ms))
}

/// Counts the last refresh found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowCounts {
    /// Rows written here and on no other device yet.
    pub pending: usize,
    /// Rows written here that only the mailbox carries so far.
    pub waiting: usize,
}

/// What the rows were last built from.
#[derive(Debug, Default)]
pub struct Rows {
    inputs: Option<RowInputs>,
    today: String,
    /// Per row: [`effective_ms`] (rows are in display order, so `at` ascends; `eff` need not).
    eff: Vec<u64>,
    /// Rows edited after they were written (their `eff` may be above the floor while their
    /// position is below it).
    edited: Vec<usize>,
    counts: RowCounts,
    /// Full rebuilds so far (tests check the patched path really runs).
    rebuilds: u32,
}

impl Rows {
    /// Brings `rows` up to date with `history` after `patches`. `rows` must be what the
    /// previous call left (the view's list); the first call builds it.
    pub fn refresh<'a>(
        &mut self,
        rows: &mut Vec<ItemView>,
        history: impl DoubleEndedIterator<Item = &'a Item> + ExactSizeIterator + Clone,
        patches: &[HistoryPatch],
        inputs: RowInputs,
        now_ms: u64,
    ) -> RowCounts {
        let today = super::format::format_time(now_ms, inputs.offset_min).1[..10].to_owned();
        let appended = patches
            .iter()
            .all(|p| matches!(p, HistoryPatch::Added(_)))
            .then_some(patches.len())
            .filter(|n| rows.len() + n == history.len());
        // Items changed in place (an edit, a pin, a check, a note's keystroke) under the same
        // inputs: only their rows are built again.
        if !patches.is_empty()
            && patches
                .iter()
                .all(|p| matches!(p, HistoryPatch::Changed(_)))
            && self.inputs.as_ref() == Some(&inputs)
            && self.today == today
            && rows.len() == history.len()
            && rows.len() == self.eff.len()
            && let Some(counts) = self.change_in_place(rows, history.clone(), patches, now_ms)
        {
            return counts;
        }
        let prev_floor = self.inputs.as_ref().map(RowInputs::floor);
        let patchable = match (&self.inputs, appended) {
            (Some(before), Some(_)) => {
                inputs.extends(before) && self.today == today && rows.len() == self.eff.len()
            }
            _ => false,
        };
        if !patchable {
            return self.rebuild(rows, history, inputs, today, now_ms);
        }
        let added = appended.unwrap_or(0);
        let old_len = rows.len();
        // From the end: walking a long history from its start would be O(history) again.
        let mut new_items: Vec<&Item> = history.clone().rev().take(added).collect();
        new_items.reverse();
        // The appended items must be the ones patched, in order after the existing rows.
        let ids_match = new_items.len() == added
            && new_items.iter().all(|i| {
                patches
                    .iter()
                    .any(|p| matches!(p, HistoryPatch::Added(id) if *id == i.id))
            });
        if !ids_match {
            return self.rebuild(rows, history, inputs, today, now_ms);
        }
        let mut fresh = item_views(
            new_items.iter().copied(),
            &inputs.names,
            inputs.me,
            inputs.offset_min,
            inputs.synced_ms,
            now_ms,
        );
        if let (Some(first), Some(last)) = (fresh.first_mut(), rows.last())
            && first.datetime.get(..10) == last.datetime.get(..10)
        {
            first.day = None;
            // The same author as the row above, on the same day: not named again.
            first.show_author &= first.author != last.author;
        }
        for i in &new_items {
            if i.edited_at.is_some_and(|e| e > i.at) {
                self.edited.push(self.eff.len());
            }
            self.eff.push(effective_ms(i));
        }
        rows.extend(fresh);
        let others = inputs.others();
        // Nothing a wording depends on moved (a device alone writing, say, whose every row
        // is above a floor of 0): the old rows read as before, only the new ones are worded.
        // Walking every row above the floor there was O(history) per message.
        if self.inputs.as_ref() == Some(&inputs) {
            let mut counts = self.counts;
            for (row, &eff) in rows[old_len..].iter_mut().zip(&self.eff[old_len..]) {
                word(row, eff, &inputs, &others);
                counts.pending += usize::from(row.pending);
                counts.waiting += usize::from(row.delivery.as_deref() == Some(WAITING_IN_MAILBOX));
            }
            self.counts = counts;
            return counts;
        }
        // Re-word what can have changed: rows above the old floor.
        let floor = prev_floor.unwrap_or(0);
        // New rows are always worded, even one that sorts last with an old timestamp.
        let start = rows.partition_point(|r| r.at_ms <= floor).min(old_len);
        let edited = std::mem::take(&mut self.edited);
        for &i in edited.iter().filter(|&&i| i < start && self.eff[i] > floor) {
            word(&mut rows[i], self.eff[i], &inputs, &others);
        }
        for (row, &eff) in rows[start..].iter_mut().zip(&self.eff[start..]) {
            word(row, eff, &inputs, &others);
        }
        self.edited = edited;
        // Pending and waiting rows are all above the floor (they are later than the last sync).
        let mut counts = RowCounts::default();
        let above = self
            .edited
            .iter()
            .copied()
            .filter(|&i| i < start)
            .chain(start..rows.len());
        for i in above {
            counts.pending += usize::from(rows[i].pending);
            counts.waiting += usize::from(rows[i].delivery.as_deref() == Some(WAITING_IN_MAILBOX));
        }
        self.counts = counts;
        self.inputs = Some(inputs);
        counts
    }

    /// Rebuilds the rows of `patches` (all [`HistoryPatch::Changed`]) where they are, keeping
    /// their day and author lines (an item's time and author never change). `None` when an
    /// item is not where its row is (then the caller rebuilds everything).
    fn change_in_place<'a>(
        &mut self,
        rows: &mut [ItemView],
        history: impl DoubleEndedIterator<Item = &'a Item> + ExactSizeIterator,
        patches: &[HistoryPatch],
        now_ms: u64,
    ) -> Option<RowCounts> {
        let inputs = self.inputs.clone()?;
        let last = rows.len().checked_sub(1)?;
        // From the end: the item changed is usually recent, and a history is walked, not
        // indexed.
        let from_end: Vec<&Item> = {
            let deepest = patches
                .iter()
                .filter_map(|p| match p {
                    HistoryPatch::Changed(id) => rows.iter().rposition(|r| r.id == *id),
                    _ => None,
                })
                .min()?;
            history.rev().take(rows.len() - deepest).collect()
        };
        let mut found = Vec::new();
        for p in patches {
            let HistoryPatch::Changed(id) = p else {
                return None;
            };
            let at = rows.iter().rposition(|r| r.id == *id)?;
            let item = *from_end.get(last - at)?;
            if item.id != *id || item.at.wall_ms != rows[at].at_ms {
                return None;
            }
            found.push((at, item));
        }
        let others = inputs.others();
        let mut counts = self.counts;
        for (at, item) in found {
            let mut fresh = item_views(
                [item],
                &inputs.names,
                inputs.me,
                inputs.offset_min,
                inputs.synced_ms,
                now_ms,
            )
            .pop()?;
            let old = &rows[at];
            counts.pending = counts.pending.saturating_sub(usize::from(old.pending));
            counts.waiting = counts.waiting.saturating_sub(usize::from(
                old.delivery.as_deref() == Some(WAITING_IN_MAILBOX),
            ));
            fresh.day = old.day.clone();
            fresh.show_author = old.show_author;
            let eff = effective_ms(item);
            self.eff[at] = eff;
            if item.edited_at.is_some_and(|e| e > item.at) && !self.edited.contains(&at) {
                self.edited.push(at);
            }
            word(&mut fresh, eff, &inputs, &others);
            counts.pending += usize::from(fresh.pending);
            counts.waiting += usize::from(fresh.delivery.as_deref() == Some(WAITING_IN_MAILBOX));
            rows[at] = fresh;
        }
        self.counts = counts;
        Some(counts)
    }

    fn rebuild<'a>(
        &mut self,
        rows: &mut Vec<ItemView>,
        history: impl Iterator<Item = &'a Item> + Clone,
        inputs: RowInputs,
        today: String,
        now_ms: u64,
    ) -> RowCounts {
        self.rebuilds += 1;
        *rows = item_views(
            history.clone(),
            &inputs.names,
            inputs.me,
            inputs.offset_min,
            inputs.synced_ms,
            now_ms,
        );
        self.eff.clear();
        self.edited.clear();
        for (n, i) in history.enumerate() {
            if i.edited_at.is_some_and(|e| e > i.at) {
                self.edited.push(n);
            }
            self.eff.push(effective_ms(i));
        }
        let others = inputs.others();
        let mut counts = RowCounts::default();
        for (row, &eff) in rows.iter_mut().zip(&self.eff) {
            word(row, eff, &inputs, &others);
            counts.pending += usize::from(row.pending);
            counts.waiting += usize::from(row.delivery.as_deref() == Some(WAITING_IN_MAILBOX));
        }
        self.counts = counts;
        self.inputs = Some(inputs);
        self.today = today;
        counts
    }
}

/// A row's delivery wording: which devices have it, or that only the mailbox does.
fn word(row: &mut ItemView, eff: u64, inputs: &RowInputs, others: &[(String, u64)]) {
    if !row.mine {
        return;
    }
    row.pending = eff > inputs.synced_ms;
    row.delivery = delivery_text(eff, others);
    // On some device already (e.g. through the mailbox, while "last synced" speaks of
    // direct sync): no longer "not yet on other devices".
    row.pending &= row.delivery.is_none();
    if row.pending && eff <= inputs.carried_ms {
        // Only the mailbox has it: on its way, not on a device yet.
        row.pending = false;
        row.delivery = Some(WAITING_IN_MAILBOX.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{Hlc, ItemId, ItemKind};

    fn item(author: DeviceId, ms: u64) -> Item {
        Item {
            id: ItemId::random(),
            kind: ItemKind::Text,
            author,
            at: Hlc {
                wall_ms: ms,
                counter: 0,
            },
            text: format!("at {ms}"),
            edited_at: None,
            file: None,
            body: String::new(),
            pinned: false,
            done: false,
        }
    }

    /// Patched rows always equal a full rebuild under the same inputs.
    #[test]
    fn appending_equals_rebuilding() {
        let me = DeviceId::from_bytes([1; 16]);
        let phone = DeviceId::from_bytes([2; 16]);
        let day = 86_400_000;
        let t0 = 1_795_531_920_000 - 2 * day;
        let mut history: Vec<Item> = (0..50).map(|n| item(me, t0 + n * 3_600_000)).collect();
        history[10].edited_at = Some(Hlc {
            wall_ms: t0 + 10 * day,
            counter: 0,
        });
        let inputs = |synced, delivered: u64, carried| RowInputs {
            names: vec![(me, "Laptop".into()), (phone, "Phone".into())],
            me,
            offset_min: 0,
            synced_ms: synced,
            delivered: [(phone, delivered)].into(),
            carried_ms: carried,
        };
        let now = t0 + 3 * day;
        let mut rows = Vec::new();
        let mut patched = Rows::default();
        patched.refresh(&mut rows, history.iter(), &[], inputs(0, 0, 0), now);
        let steps = [
            (t0 + 3_600_000 * 20, t0 + 3_600_000 * 10, 0),
            (
                t0 + 3_600_000 * 30,
                t0 + 3_600_000 * 40,
                t0 + 3_600_000 * 60,
            ),
            (
                t0 + 3_600_000 * 60,
                t0 + 3_600_000 * 60,
                t0 + 3_600_000 * 70,
            ),
        ];
        for (n, (synced, delivered, carried)) in steps.into_iter().enumerate() {
            let new = [
                item(me, t0 + 3_600_000 * (50 + 3 * n as u64)),
                item(phone, t0 + 3_600_000 * (51 + 3 * n as u64)),
            ];
            let patches: Vec<HistoryPatch> =
                new.iter().map(|i| HistoryPatch::Added(i.id)).collect();
            history.extend(new);
            let counts = patched.refresh(
                &mut rows,
                history.iter(),
                &patches,
                inputs(synced, delivered, carried),
                now,
            );
            let mut full = Vec::new();
            let want = Rows::default().refresh(
                &mut full,
                history.iter(),
                &[],
                inputs(synced, delivered, carried),
                now,
            );
            assert_eq!(rows, full, "step {n}");
            assert_eq!(counts, want, "step {n}");
        }
        assert_eq!(
            patched.rebuilds, 1,
            "every step after the first was patched"
        );
        // Nothing moved between messages (the common case): only the new rows are worded.
        let same = inputs(
            t0 + 3_600_000 * 60,
            t0 + 3_600_000 * 60,
            t0 + 3_600_000 * 70,
        );
        for n in 0..3u64 {
            let new = item(me, t0 + 3_600_000 * (70 + n));
            history.push(new.clone());
            let patches = [HistoryPatch::Added(new.id)];
            let counts = patched.refresh(&mut rows, history.iter(), &patches, same.clone(), now);
            let mut full = Vec::new();
            let want = Rows::default().refresh(&mut full, history.iter(), &[], same.clone(), now);
            assert_eq!(rows, full, "unchanged inputs, message {n}");
            assert_eq!(counts, want, "unchanged inputs, message {n}");
        }
        assert_eq!(patched.rebuilds, 1, "still patched");
        // A mark going back, or an item merged into the middle: rebuilt, still equal.
        let old = item(phone, t0 + 5);
        history.insert(0, old.clone());
        let inputs_back = inputs(0, 0, 0);
        patched.refresh(
            &mut rows,
            history.iter(),
            &[HistoryPatch::Added(old.id)],
            inputs_back.clone(),
            now,
        );
        let mut full = Vec::new();
        Rows::default().refresh(&mut full, history.iter(), &[], inputs_back, now);
        assert_eq!(rows, full);
        assert_eq!(patched.rebuilds, 2);
    }

    /// Edits, pins, checks and note keystrokes rebuild only their own rows, and the rows
    /// equal a full rebuild.
    #[test]
    fn changing_in_place_equals_rebuilding() {
        let me = DeviceId::from_bytes([1; 16]);
        let phone = DeviceId::from_bytes([2; 16]);
        let t0 = 1_795_531_920_000;
        let inputs = RowInputs {
            names: vec![(me, "Laptop".into()), (phone, "Phone".into())],
            me,
            offset_min: 0,
            synced_ms: t0 + 30,
            delivered: [(phone, t0 + 20)].into(),
            carried_ms: t0 + 40,
        };
        let mut history: Vec<Item> = (0..50)
            .map(|n| item(if n % 3 == 0 { phone } else { me }, t0 + n))
            .collect();
        let now = t0 + 1_000;
        let (mut rows, mut patched) = (Vec::new(), Rows::default());
        patched.refresh(&mut rows, history.iter(), &[], inputs.clone(), now);
        for (n, at) in [5usize, 48, 25, 5].into_iter().enumerate() {
            let changed = &mut history[at];
            changed.text = format!("edited {n}");
            changed.edited_at = Some(Hlc {
                wall_ms: t0 + 60 + n as u64,
                counter: 0,
            });
            changed.pinned = n % 2 == 0;
            let patches = [HistoryPatch::Changed(changed.id)];
            let counts = patched.refresh(&mut rows, history.iter(), &patches, inputs.clone(), now);
            let mut full = Vec::new();
            let want = Rows::default().refresh(&mut full, history.iter(), &[], inputs.clone(), now);
            assert_eq!(rows, full, "change {n}");
            assert_eq!(counts, want, "change {n}");
        }
        assert_eq!(patched.rebuilds, 1, "every change was patched in place");
        // Then a mark moves: the rows edited above stay right.
        let later = RowInputs {
            synced_ms: t0 + 100,
            delivered: [(phone, t0 + 100)].into(),
            ..inputs
        };
        let new = item(me, t0 + 200);
        history.push(new.clone());
        patched.refresh(
            &mut rows,
            history.iter(),
            &[HistoryPatch::Added(new.id)],
            later.clone(),
            now,
        );
        let mut full = Vec::new();
        Rows::default().refresh(&mut full, history.iter(), &[], later, now);
        assert_eq!(rows, full);
    }

    #[test]
    fn a_device_alone_words_only_its_new_rows() {
        let me = DeviceId::from_bytes([1; 16]);
        let t0 = 1_795_531_920_000;
        let alone = RowInputs {
            names: vec![(me, "Laptop".into())],
            me,
            offset_min: 0,
            synced_ms: 0,
            delivered: BTreeMap::new(),
            carried_ms: 0,
        };
        let mut history: Vec<Item> = (0..20).map(|n| item(me, t0 + n)).collect();
        let (mut rows, mut patched) = (Vec::new(), Rows::default());
        let first = patched.refresh(&mut rows, history.iter(), &[], alone.clone(), t0 + 100);
        assert_eq!(first.pending, 20, "nothing is on another device yet");
        for n in 0..5 {
            let new = item(me, t0 + 20 + n);
            history.push(new.clone());
            let patches = [HistoryPatch::Added(new.id)];
            let counts =
                patched.refresh(&mut rows, history.iter(), &patches, alone.clone(), t0 + 100);
            assert_eq!(counts.pending, 21 + n as usize);
            let mut full = Vec::new();
            Rows::default().refresh(&mut full, history.iter(), &[], alone.clone(), t0 + 100);
            assert_eq!(rows, full);
        }
        assert_eq!(patched.rebuilds, 1);
    }
}
