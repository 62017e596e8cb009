//! Notes: the pure text logic of a note's body, which is an automerge text object.
//!
//! A textarea only ever says "the text is now this". Replacing the stored string with it
//! would make two offline edits of one note overwrite each other, so the edit is turned into
//! a *splice* (position, characters deleted, text inserted) and the splice is what goes into
//! automerge, which merges concurrent splices by character.
//!
//! The editor's text can lag the document by a change (a peer's edit merged while a keystroke
//! was on its way), so an edit names the text it was made on (`base`) and [`rebase`] moves it
//! onto the document's current text, keeping both sides' characters. [`map_caret`] does the
//! same for the caret when a peer's edit lands in an open editor.
//!
//! All positions count Unicode scalar values (automerge's text encoding here).
//!
//! A note may hold a checklist: lines written `- [ ] milk` / `- [x] milk` (Markdown's task
//! list). A line is checked when anything but spaces sits between its brackets, so two
//! devices that check the same line offline (each writing an `x`) still read it as checked.

/// One change of a text: at `pos`, delete `del` characters, then insert `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    /// Where, in characters.
    pub pos: usize,
    /// How many characters are deleted there.
    pub del: usize,
    /// What is inserted there.
    pub insert: String,
}

impl Splice {
    /// Applies the splice to `text` (positions past the end are clamped).
    pub fn apply(&self, text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let pos = self.pos.min(chars.len());
        let end = (pos + self.del).min(chars.len());
        let mut out: String = chars[..pos].iter().collect();
        out.push_str(&self.insert);
        out.extend(&chars[end..]);
        out
    }
}

/// The one splice that turns `old` into `new`: what lies between their common prefix and
/// their common suffix. `None` when they are equal.
pub fn diff(old: &str, new: &str) -> Option<Splice> {
    if old == new {
        return None;
    }
    let a: Vec<char> = old.chars().collect();
    let b: Vec<char> = new.chars().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_suffix = a.len().min(b.len()) - prefix;
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    Some(Splice {
        pos: prefix,
        del: a.len() - prefix - suffix,
        insert: b[prefix..b.len() - suffix].iter().collect(),
    })
}

/// The splices that bring the edit `base → new` onto `current` (what the document holds now,
/// which may have moved on from `base`), to be applied to `current` in order.
///
/// `base` and `current` are matched character by character (a Myers diff), so what the edit
/// deleted is deleted where it still is, what the other side deleted stays deleted, and both
/// sides' inserted text is kept; the edit's own text goes right after the last character
/// before it that both still have.
pub fn rebase(base: &str, new: &str, current: &str) -> Vec<Splice> {
    let Some(local) = diff(base, new) else {
        return Vec::new();
    };
    if base == current {
        return vec![local];
    }
    let a: Vec<char> = base.chars().collect();
    let b: Vec<char> = current.chars().collect();
    let Some(map) = matching(&a, &b) else {
        return rebase_coarse(local, base, current);
    };
    let (lp, ld) = (local.pos, local.del);
    let at = map[..lp].iter().rev().find_map(|j| *j).map_or(0, |j| j + 1);
    let gone: Vec<usize> = map[lp..lp + ld].iter().filter_map(|j| *j).collect();
    // Contiguous runs of what to delete, right to left so positions stay valid.
    let mut out = Vec::new();
    let mut end = gone.len();
    while end > 0 {
        let mut start = end - 1;
        while start > 0 && gone[start - 1] + 1 == gone[start] {
            start -= 1;
        }
        out.push(Splice {
            pos: gone[start],
            del: end - start,
            insert: String::new(),
        });
        end = start;
    }
    if !local.insert.is_empty() {
        // Every deleted character sits at or after `at`, so this position still holds.
        out.push(Splice {
            pos: at,
            del: 0,
            insert: local.insert,
        });
    }
    out
}

/// Most differences between what an editor showed and the document are a few keystrokes;
/// past this many inserted plus deleted characters, [`rebase_coarse`] takes over.
const MAX_MATCH_EDITS: usize = 512;

/// For each character of `a`, where it is in `b`, if it is still there: the common prefix and
/// suffix, then a Myers diff of the middle. `None` when the middle differs by more than
/// [`MAX_MATCH_EDITS`].
fn matching(a: &[char], b: &[char]) -> Option<Vec<Option<usize>>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let max_suffix = a.len().min(b.len()) - prefix;
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut map: Vec<Option<usize>> = vec![None; a.len()];
    for (i, slot) in map.iter_mut().enumerate().take(prefix) {
        *slot = Some(i);
    }
    for k in 0..suffix {
        map[a.len() - 1 - k] = Some(b.len() - 1 - k);
    }
    for (x, y) in myers(ma, mb, MAX_MATCH_EDITS)? {
        map[prefix + x] = Some(prefix + y);
    }
    Some(map)
}

/// The matched pairs `(index in a, index in b)` of a shortest edit script, or `None` when it
/// needs more than `max_d` edits. Memory is O(d²), time O((n + m)·d).
fn myers(a: &[char], b: &[char], max_d: usize) -> Option<Vec<(usize, usize)>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = max_d as isize;
    let offset = max + 1;
    let mut v = vec![0isize; 2 * max_d + 3];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let ix = |k: isize| (k + offset) as usize;
    let mut done = false;
    for d in 0..=max {
        trace.push(v.clone());
        let mut k = -d;
        while k <= d {
            let mut x = if k == -d || (k != d && v[ix(k - 1)] < v[ix(k + 1)]) {
                v[ix(k + 1)]
            } else {
                v[ix(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[ix(k)] = x;
            if x >= n && y >= m {
                done = true;
                break;
            }
            k += 2;
        }
        if done {
            break;
        }
    }
    if !done {
        return None;
    }
    let mut pairs = Vec::new();
    let (mut x, mut y) = (n, m);
    for (d, v) in trace.iter().enumerate().rev() {
        let d = d as isize;
        let k = x - y;
        let prev_k = if k == -d || (k != d && v[ix(k - 1)] < v[ix(k + 1)]) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = v[ix(prev_k)];
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            pairs.push((x as usize, y as usize));
        }
        x = prev_x;
        y = prev_y;
    }
    pairs.reverse();
    Some(pairs)
}

/// [`rebase`] when the two sides differ too much to match cheaply: the other side's change is
/// taken as one stretch (between common prefix and suffix), and the edit's deletions inside it
/// are left to it.
fn rebase_coarse(local: Splice, base: &str, current: &str) -> Vec<Splice> {
    let Some(remote) = diff(base, current) else {
        return vec![local];
    };
    let (lp, ld) = (local.pos, local.del);
    let (rp, rd) = (remote.pos, remote.del);
    let ri = remote.insert.chars().count();
    let mut out = Vec::new();
    // The local deletion after the remote's stretch (done first: it is further right).
    let tail_start = lp.max(rp + rd);
    if lp + ld > tail_start {
        out.push(Splice {
            pos: tail_start - rd + ri,
            del: lp + ld - tail_start,
            insert: String::new(),
        });
    }
    // The local deletion before the remote's stretch, and the local insertion.
    let head_del = if lp < rp { (lp + ld).min(rp) - lp } else { 0 };
    let at = if lp <= rp {
        lp
    } else if lp < rp + rd {
        rp + ri
    } else {
        lp - rd + ri
    };
    if head_del > 0 || !local.insert.is_empty() {
        out.push(Splice {
            pos: at,
            del: head_del,
            insert: local.insert,
        });
    }
    out
}

/// Where a caret at `caret` in `old` belongs once the text is `new` (a peer's edit landed):
/// before the change it stays, after it it moves with the text, inside a deleted stretch it
/// goes to the end of what replaced it.
pub fn map_caret(old: &str, new: &str, caret: usize) -> usize {
    let Some(s) = diff(old, new) else {
        return caret;
    };
    let inserted = s.insert.chars().count();
    if caret <= s.pos {
        caret
    } else if caret >= s.pos + s.del {
        caret - s.del + inserted
    } else {
        s.pos + inserted
    }
}

/// One line of a note's checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// Its text (after the brackets), what its checkbox is named by.
    pub text: String,
    /// Checked.
    pub done: bool,
    /// Which line of the body it is (0-based).
    pub line: usize,
}

/// A checklist line's parts: the character offset of what sits between its brackets within
/// the line, that content, and the text after them.
fn check_parts(line: &str) -> Option<(usize, &str, &str)> {
    let indent = line.len() - line.trim_start().len();
    let rest = &line[indent..];
    let rest = rest
        .strip_prefix("- [")
        .or_else(|| rest.strip_prefix("* ["))?;
    let close = rest.find(']')?;
    let mark = &rest[..close];
    // `[ ]`, `[x]`, and what two concurrent checks leave (`[xx]`), nothing longer.
    if mark.chars().count() > 3 {
        return None;
    }
    let text = rest[close + 1..].strip_prefix(' ')?;
    let start = line[..indent].chars().count() + 3;
    Some((start, mark, text))
}

/// The checklist lines of a body, in order.
pub fn checklist(body: &str) -> Vec<CheckLine> {
    body.split('\n')
        .enumerate()
        .filter_map(|(line, l)| {
            let (_, mark, text) = check_parts(l)?;
            Some(CheckLine {
                text: text.trim().to_owned(),
                done: !mark.trim().is_empty(),
                line,
            })
        })
        .collect()
}

/// The body with checklist line `line` checked (`x`) or unchecked; `None` when that line is
/// not a checklist line.
pub fn set_checked(body: &str, line: usize, done: bool) -> Option<String> {
    let lines: Vec<&str> = body.split('\n').collect();
    let l = lines.get(line)?;
    let (start, mark, _) = check_parts(l)?;
    let before: usize = lines[..line].iter().map(|l| l.chars().count() + 1).sum();
    let splice = Splice {
        pos: before + start,
        del: mark.chars().count(),
        insert: if done { "x" } else { " " }.into(),
    };
    Some(splice.apply(body))
}

/// Characters of a body shown under a note's title in the history.
pub const PREVIEW_CHARS: usize = 280;

/// The first lines of a body that are not checklist lines (those show as checkboxes), at
/// most `lines` of them and about [`PREVIEW_CHARS`] characters.
pub fn preview(body: &str, lines: usize) -> String {
    let kept: Vec<&str> = body
        .split('\n')
        .filter(|l| check_parts(l).is_none() && !l.trim().is_empty())
        .take(lines)
        .collect();
    let joined = kept.join("\n");
    if joined.chars().count() > PREVIEW_CHARS {
        let mut cut: String = joined.chars().take(PREVIEW_CHARS).collect();
        cut.push('…');
        cut
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn diff_finds_the_changed_stretch() {
        assert_eq!(diff("abc", "abc"), None);
        let s = diff("hello world", "hello brave world").unwrap();
        assert_eq!((s.pos, s.del, s.insert.as_str()), (6, 0, "brave "));
        let s = diff("héllo", "hllo").unwrap();
        assert_eq!((s.pos, s.del, s.insert.as_str()), (1, 1, ""));
        // Characters, not bytes.
        let s = diff("a😀b", "a😀xb").unwrap();
        assert_eq!((s.pos, s.del, s.insert.as_str()), (2, 0, "x"));
    }

    #[test]
    fn rebase_keeps_both_sides() {
        // Start and end edited concurrently.
        let base = "middle";
        let local = "middle end";
        let current = "start middle";
        let mut text = current.to_owned();
        for s in rebase(base, local, current) {
            text = s.apply(&text);
        }
        assert_eq!(text, "start middle end");
        // Two edits apart on the other side, a deletion between them here: deleted.
        let mut text = "Xabcdef!".to_owned();
        for s in rebase("abcdef", "abef", "Xabcdef!") {
            text = s.apply(&text);
        }
        assert_eq!(text, "Xabef!");
        // The coarse fallback keeps both sides too.
        let local = diff("abcd", "abQcd").unwrap();
        let mut text = "aXYd".to_owned();
        for s in rebase_coarse(local, "abcd", "aXYd") {
            text = s.apply(&text);
        }
        assert_eq!(text, "aXYQd");
        // Both delete: local "cde", remote "de"; what is left of local's stretch ("c") goes.
        let mut text = "abcf".to_owned();
        for s in rebase("abcdef", "abf", "abcf") {
            text = s.apply(&text);
        }
        assert_eq!(text, "abf");
    }

    #[test]
    fn caret_follows_the_text() {
        assert_eq!(map_caret("hello", "oh hello", 5), 8);
        assert_eq!(map_caret("hello", "hello!", 2), 2);
        assert_eq!(map_caret("hello world", "hello", 8), 5);
    }

    #[test]
    fn checklists_read_and_toggle() {
        let body = "Shopping\n- [ ] milk\n- [x] eggs\n  * [ ] bread \nnot - [ ] this\n- [xx] both";
        let list = checklist(body);
        let names: Vec<(&str, bool, usize)> = list
            .iter()
            .map(|c| (c.text.as_str(), c.done, c.line))
            .collect();
        assert_eq!(
            names,
            [
                ("milk", false, 1),
                ("eggs", true, 2),
                ("bread", false, 3),
                ("both", true, 5)
            ]
        );
        let checked = set_checked(body, 1, true).unwrap();
        assert!(checked.contains("- [x] milk"));
        let unchecked = set_checked(body, 5, false).unwrap();
        assert!(unchecked.ends_with("- [ ] both"));
        assert_eq!(set_checked(body, 0, true), None);
        assert_eq!(set_checked(body, 99, true), None);
        assert_eq!(preview(body, 3), "Shopping\nnot - [ ] this");
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('a'), Just('b'), Just('é'), Just('\n')],
            0..12,
        )
        .prop_map(|c| c.into_iter().collect())
    }

    proptest! {
        #[test]
        fn diff_applied_gives_the_new_text(old in text(), new in text()) {
            let out = diff(&old, &new).map_or(old.clone(), |s| s.apply(&old));
            prop_assert_eq!(out, new);
        }

        /// The matching pairs equal characters, in order, and as many as a longest common
        /// subsequence has.
        #[test]
        fn myers_matches_a_longest_common_subsequence(a in text(), b in text()) {
            let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            let pairs = myers(&a, &b, 64).unwrap();
            for w in pairs.windows(2) {
                prop_assert!(w[0].0 < w[1].0 && w[0].1 < w[1].1);
            }
            for &(x, y) in &pairs {
                prop_assert_eq!(a[x], b[y]);
            }
            let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
            for i in (0..a.len()).rev() {
                for j in (0..b.len()).rev() {
                    lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
                }
            }
            prop_assert_eq!(pairs.len(), lcs[0][0]);
        }

        /// Rebasing onto an unchanged text is the edit itself; otherwise the result holds
        /// exactly the characters either side kept or inserted (all characters unique here).
        #[test]
        fn rebase_keeps_what_either_side_kept_or_wrote(
            len in 0..10usize,
            edits in proptest::collection::vec((any::<usize>(), 0..4usize, 0..3usize), 1..4),
            local in (any::<usize>(), 0..4usize, 0..3usize),
        ) {
            let mut next = 0x1000u32;
            let mut fresh = |k: usize| -> String {
                (0..k).map(|_| { next += 1; char::from_u32(next).unwrap() }).collect()
            };
            let base = fresh(len);
            // Any number of edits on the other side, one here.
            let mut removed = std::collections::BTreeSet::new();
            let mut current = base.clone();
            let mut edit = |text: &str, (at, del, ins): (usize, usize, usize), removed: &mut std::collections::BTreeSet<char>| {
                let chars: Vec<char> = text.chars().collect();
                let pos = at % (chars.len() + 1);
                let del = del.min(chars.len() - pos);
                removed.extend(&chars[pos..pos + del]);
                Splice { pos, del, insert: fresh(ins) }.apply(text)
            };
            for e in edits {
                current = edit(&current, e, &mut removed);
            }
            let new = edit(&base, local, &mut removed);
            let mut out = current.clone();
            for s in rebase(&base, &new, &current) {
                out = s.apply(&out);
            }
            if base == current {
                prop_assert_eq!(&out, &new);
            }
            let all: std::collections::BTreeSet<char> =
                base.chars().chain(current.chars()).chain(new.chars()).collect();
            let expected: std::collections::BTreeSet<char> =
                all.difference(&removed).copied().collect();
            let got: Vec<char> = out.chars().collect();
            let got_set: std::collections::BTreeSet<char> = got.iter().copied().collect();
            prop_assert_eq!(got.len(), got_set.len());
            prop_assert_eq!(got_set, expected);
        }
    }
}
