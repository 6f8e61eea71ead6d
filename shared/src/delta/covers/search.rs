//! The cover search: which runs of the new chunk to take from the reference, and where.
//!
//! A port of HDiffPatch's matcher (`diff.cpp`, MIT). A suffix array of the reference finds,
//! at each position of the new bytes, the longest exact match; matches on the same diagonal
//! (old − new offset) are linked across short gaps, and a match is bent onto the previous
//! cover's diagonal when the bytes there differ by less than a new control record costs.
//! Covers are then grown approximately in both directions while enough bytes agree (the
//! difference bytes under a cover are mostly zero, so mismatches cost little), and a cover
//! is kept only where the estimated cost of its difference bytes plus its control record is
//! under the cost of sending its bytes as literals. bsdiff differs in the last two steps: it
//! keeps every match and extends by a fixed rule, which costs control records and literal
//! bytes on recompiled code, where addresses shift by small amounts everywhere.

use super::cost::{Detector, int_cost, region_rle_cost, uint_cost};

/// Shortest exact match the search considers.
const MIN_MATCH: usize = 5;
/// A match must beat its control record by this many bytes to be considered.
const MIN_MATCH_SCORE: isize = 2;
/// Longest gap (old bytes) two covers on one diagonal are linked across.
const MAX_LINK_SPACE: isize = (1 << 9) - 1;
/// A lone cover must save this many (estimated) bytes to be kept; HDiffPatch's default.
const MIN_SINGLE_SCORE: isize = 6;
/// Fixed-point base of the match ratio a cover is extended by.
const RATIO_BASE: usize = 1024;

/// `new[new..new + len]` is taken from `old[old..old + len]` plus a difference byte each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cover {
    pub(crate) old: usize,
    pub(crate) new: usize,
    pub(crate) len: usize,
}

impl Cover {
    fn diagonal(&self) -> isize {
        self.old as isize - self.new as isize
    }

    fn collinear(&self, next: &Cover) -> bool {
        self.diagonal() == next.diagonal()
    }

    fn link_space(&self, next: &Cover) -> isize {
        next.old as isize - (self.old + self.len) as isize
    }

    fn can_link(&self, next: &Cover) -> bool {
        self.collinear(next) && self.link_space(next) <= MAX_LINK_SPACE
    }

    /// Extends over `next`, which lies on the same diagonal after it.
    fn link(&mut self, next: &Cover) {
        self.len = (next.old + next.len).max(self.old + self.len) - self.old;
    }

    /// What its control record costs after `last`.
    fn control_cost(&self, last: &Cover) -> isize {
        (int_cost(self.old as i64 - last.old as i64)
            + uint_cost(self.len as u64)
            + uint_cost(self.new.saturating_sub(last.new) as u64)) as isize
    }
}

/// The suffix array of a reference window: the costly part of a covers search, built once
/// and shared by every chunk encoded against the same window.
pub struct SuffixIndex {
    sa: Vec<i32>,
    /// For each two-byte prefix, where its suffixes start in `sa` (and, one past the last
    /// prefix, the end): a search starts inside its prefix's range.
    buckets: Vec<u32>,
}

impl SuffixIndex {
    /// Sorts the suffixes of `window`. A window over `MAX_INDEXED` bytes (windows are at
    /// most 64 MiB) gets an empty index, which indexes nothing: covers are not searched there.
    pub fn build(window: &[u8]) -> Self {
        let window = if window.len() > MAX_INDEXED {
            &[][..]
        } else {
            window
        };
        let mut sa = vec![0i32; window.len()];
        if !window.is_empty() {
            divsufsort::sort_in_place(window, &mut sa);
        }
        let buckets = buckets(window);
        Self { sa, buckets }
    }

    /// True when this is an index of a window of `len` bytes (the caller's key says which
    /// window; an index of other bytes would find fewer matches, never wrong ones, since
    /// every match is measured on the window itself).
    pub(crate) fn indexes(&self, len: usize) -> bool {
        self.sa.len() == len
    }

    /// Bytes of memory it holds.
    pub fn heap_bytes(&self) -> usize {
        (self.sa.len() + self.buckets.len()) * std::mem::size_of::<u32>()
    }
}

/// Where each two-byte prefix's suffixes start in the sorted suffixes of `window` (and, last,
/// their count). Suffixes are sorted, so their prefixes never decrease, and a prefix's
/// suffixes start after all those with a smaller one: counting the prefixes in one pass over
/// the window gives the starts, without visiting each sorted suffix's bytes (random reads,
/// which took a fifth of the encode on the numpy pair). A one-byte suffix sorts first among
/// those starting with its byte, as prefix (byte, 0) does.
fn buckets(window: &[u8]) -> Vec<u32> {
    let mut counts = vec![0u32; BUCKETS + 1];
    for at in 0..window.len() {
        counts[prefix(&window[at..]) + 1] += 1;
    }
    let mut start = 0u32;
    for slot in &mut counts {
        start += *slot;
        *slot = start;
    }
    counts
}

/// The longest window a suffix index covers: its offsets are `i32`.
const MAX_INDEXED: usize = i32::MAX as usize;

/// Two-byte prefixes index the buckets.
const BUCKETS: usize = 1 << 16;

/// The bucket of a suffix or needle (at least one byte long).
fn prefix(bytes: &[u8]) -> usize {
    match bytes {
        [a, b, ..] => usize::from(*a) << 8 | usize::from(*b),
        [a] => usize::from(*a) << 8,
        [] => 0,
    }
}

/// A window and its suffix index: the matcher.
struct Suffixes<'a> {
    old: &'a [u8],
    sa: &'a [i32],
    buckets: &'a [u32],
}

impl<'a> Suffixes<'a> {
    fn suffix(&self, i: usize) -> usize {
        // divsufsort writes offsets in 0..old.len(), all non-negative.
        self.sa[i] as usize
    }

    /// The longest match of `needle`'s prefix in the reference: (offset, length).
    fn best_match(&self, needle: &[u8]) -> (usize, usize) {
        // The first suffix not below the needle; the longest common prefix is with it or with
        // the suffix before it.
        let key = prefix(needle);
        let (from, to) = (self.buckets[key] as usize, self.buckets[key + 1] as usize);
        let lower = from + self.sa[from..to].partition_point(|&s| &self.old[s as usize..] < needle);
        let mut best = (0, 0);
        for i in [lower, lower.wrapping_sub(1)] {
            if i < self.sa.len() {
                let at = self.suffix(i);
                let len = equal_len(needle, &self.old[at..]);
                if len > best.1 {
                    best = (at, len);
                }
            }
        }
        best
    }
}

/// The length of the common prefix of `a` and `b`, eight bytes at a time.
fn equal_len(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut done = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let word = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
        let diff = word(x) ^ word(y);
        if diff != 0 {
            return done + (diff.trailing_zeros() / 8) as usize;
        }
        done += 8;
    }
    done + a[done..]
        .iter()
        .zip(&b[done..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// The covers of `new` against `old`, in order, non-overlapping, inside both; `index` is
/// `old`'s suffix index if the caller has one (it is built otherwise).
pub(crate) fn covers(new: &[u8], old: &[u8], index: Option<&SuffixIndex>) -> Vec<Cover> {
    if new.len() <= MIN_MATCH || old.is_empty() || old.len() > MAX_INDEXED {
        return Vec::new();
    }
    let built;
    let index = match index.filter(|i| i.indexes(old.len())) {
        Some(index) => index,
        None => {
            built = SuffixIndex::build(old);
            &built
        }
    };
    let suffixes = Suffixes {
        old,
        sa: &index.sa,
        buckets: &index.buckets,
    };
    let mut found = search(new, &suffixes);
    let ratio = (MIN_SINGLE_SCORE as usize * 36 + 254).clamp(200, 800);
    extend(&mut found, new, old, ratio);
    select(&mut found, new, old);
    extend(&mut found, new, old, ratio);
    found
}

fn search(new: &[u8], suffixes: &Suffixes<'_>) -> Vec<Cover> {
    let old = suffixes.old;
    let mut covers: Vec<Cover> = Vec::new();
    let mut last = Cover {
        old: 0,
        new: 0,
        len: 0,
    };
    let mut pos = 0;
    while pos + MIN_MATCH <= new.len() {
        let (at, len) = suffixes.best_match(&new[pos..]);
        if len < MIN_MATCH {
            pos += 1;
            continue;
        }
        let found = Cover {
            old: at,
            new: pos,
            len,
        };
        if len as isize - found.control_cost(&last) < MIN_MATCH_SCORE {
            pos += 1;
            continue;
        }
        if link_extend(&mut last, &found, new, old) {
            match covers.last_mut() {
                Some(back) => *back = last,
                None => covers.push(last),
            }
        } else {
            if let Some(back) = covers.last_mut() {
                bend_onto(back, &found, new, old);
            }
            covers.push(found);
        }
        last = covers[covers.len() - 1];
        pos = (pos + 1).max(last.new + last.len);
    }
    covers
}

/// Tries to grow `last` over `found` along `last`'s diagonal, when `found` is near and the
/// bytes there differ by less than a new control record would cost.
fn link_extend(last: &mut Cover, found: &Cover, new: &[u8], old: &[u8]) -> bool {
    if last.len == 0 {
        return false;
    }
    let space = found.new as isize - (last.new + last.len) as isize;
    if !(0..=MAX_LINK_SPACE).contains(&space) {
        return false;
    }
    let space = space as usize;
    let link_old = last.old + last.len + space;
    if link_old + found.len > old.len() {
        return false;
    }
    if last.collinear(found) {
        last.link(found);
        return true;
    }
    let linked_cost = region_rle_cost(
        &new[found.new..found.new + found.len],
        &old[link_old..link_old + found.len],
    ) as isize;
    if linked_cost > found.control_cost(last) {
        return false;
    }
    // Most of it; extension grows the rest where it pays.
    let mut len = last.len + space + found.len * 2 / 3;
    len += equal_len(&new[last.new + len..], &old[last.old + len..]);
    while len > 0 && new[last.new + len - 1] != old[last.old + len - 1] {
        len -= 1;
    }
    last.len = len;
    true
}

/// Moves `back` onto `found`'s diagonal when its bytes differ less there.
fn bend_onto(back: &mut Cover, found: &Cover, new: &[u8], old: &[u8]) {
    if back.len == 0 || back.collinear(found) {
        return;
    }
    let Some(link_old) = found.old.checked_sub(found.new - back.new) else {
        return;
    };
    if link_old + back.len > old.len() {
        return;
    }
    let span = &new[back.new..back.new + back.len];
    let cost_here = region_rle_cost(span, &old[back.old..back.old + back.len]);
    let cost_there = region_rle_cost(span, &old[link_old..link_old + back.len]);
    if cost_here >= cost_there {
        back.old = link_old;
    }
}

/// Grows each cover backwards and forwards into the gaps around it while the share of equal
/// bytes stays over `ratio` / 1024.
fn extend(covers: &mut [Cover], new: &[u8], old: &[u8], ratio: usize) {
    let mut last_end = 0;
    for i in 0..covers.len() {
        let next_start = covers.get(i + 1).map_or(new.len(), |c| c.new);
        let c = &mut covers[i];
        let back = extendable(
            new[last_end..c.new].iter().rev(),
            old[..c.old].iter().rev(),
            ratio,
        );
        c.old -= back;
        c.new -= back;
        c.len += back;
        let forward = extendable(
            new[c.new + c.len..next_start.max(c.new + c.len)].iter(),
            old[(c.old + c.len).min(old.len())..].iter(),
            ratio,
        );
        c.len += forward;
        last_end = c.new + c.len;
    }
}

/// How far to extend along paired bytes: the length with the best smoothed share of equal
/// bytes, if that share reaches `ratio`.
fn extendable<'a>(
    new: impl Iterator<Item = &'a u8>,
    old: impl Iterator<Item = &'a u8>,
    ratio: usize,
) -> usize {
    const SMOOTH: usize = 4;
    let (mut best_ratio, mut best_len, mut same) = (0, 0, 0);
    for (length, (a, b)) in (1..).zip(new.zip(old)) {
        if a == b {
            same += 1;
            let r = same * RATIO_BASE / (length + SMOOTH);
            if r >= best_ratio {
                best_ratio = r;
                best_len = length;
            }
        }
    }
    if best_ratio < ratio || best_len <= 2 {
        0
    } else {
        best_len
    }
}

/// Links covers on one diagonal and drops those that cost more than their bytes as literals.
fn select(covers: &mut Vec<Cover>, new: &[u8], old: &[u8]) {
    let mut literal = Detector::new();
    let mut differences = Detector::new();
    let mut last = Cover {
        old: 0,
        new: 0,
        len: 0,
    };
    let mut kept = 0;
    for i in 0..covers.len() {
        if covers[i].len == 0 {
            continue;
        }
        let mut save = false;
        let mut link = false;
        if kept > 0 && covers[kept - 1].can_link(&covers[i]) {
            link = true;
            save = true;
        }
        for j in i + 1..covers.len() {
            if !covers[i].can_link(&covers[j]) {
                break;
            }
            let next = covers[j];
            covers[i].link(&next);
            covers[j].len = 0;
        }
        let c = covers[i];
        if !save {
            let span = &new[c.new..c.new + c.len];
            let as_literals = literal.cost(span, None) as isize;
            let as_cover = differences.cost(span, Some(&old[c.old..c.old + c.len])) as isize;
            save = as_literals - as_cover - c.control_cost(&last) >= MIN_SINGLE_SCORE;
        }
        if !save {
            continue;
        }
        let last_end = last.new + last.len;
        if link {
            let before = covers[kept - 1];
            covers[kept - 1].link(&c);
            let grown = covers[kept - 1];
            let from = before.len;
            differences.add(
                &new[grown.new + from..grown.new + grown.len],
                Some(&old[grown.old + from..grown.old + grown.len]),
            );
        } else {
            covers[kept] = c;
            kept += 1;
            literal.add(&new[last_end.min(c.new)..c.new], None);
            differences.add(&new[c.new..c.new + c.len], Some(&old[c.old..c.old + c.len]));
        }
        last = covers[kept - 1];
    }
    covers.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;

    fn check_valid(covers: &[Cover], new: &[u8], old: &[u8]) {
        let mut end = 0;
        for c in covers {
            assert!(c.len > 0 && c.new >= end, "{covers:?}");
            assert!(c.new + c.len <= new.len() && c.old + c.len <= old.len());
            end = c.new + c.len;
        }
    }

    /// Bucket starts counted from the window are where the sorted suffixes' prefixes change.
    #[test]
    fn buckets_start_where_the_sorted_suffixes_prefix_changes() {
        let few: Vec<u8> = noise(5, 5000).iter().map(|b| b % 3).collect();
        for window in [
            &[][..],
            &[7][..],
            &[0, 0, 0][..],
            &few[..],
            &noise(6, 70_000)[..],
            b"banana bandana",
        ] {
            let index = SuffixIndex::build(window);
            // Walking the sorted suffixes: bucket `key` starts at the first suffix whose
            // prefix is at least `key`.
            let mut expected = vec![0u32; BUCKETS + 1];
            let mut next = 0;
            for (i, &at) in index.sa.iter().enumerate() {
                let key = prefix(&window[at as usize..]);
                while next <= key {
                    expected[next] = i as u32;
                    next += 1;
                }
            }
            for slot in &mut expected[next..] {
                *slot = index.sa.len() as u32;
            }
            assert!(index.buckets == expected, "{window:?}");
        }
    }

    #[test]
    fn the_bucketed_search_finds_the_longest_match() {
        // Few distinct bytes, so prefixes repeat and buckets are crowded; zeros at the end
        // put a one-byte suffix in bucket (0, 0).
        let mut old: Vec<u8> = noise(4, 3000).iter().map(|b| b % 3).collect();
        old.extend_from_slice(&[0, 0]);
        let index = SuffixIndex::build(&old);
        let suffixes = Suffixes {
            old: &old,
            sa: &index.sa,
            buckets: &index.buckets,
        };
        let needles: Vec<u8> = noise(8, 500).iter().map(|b| b % 4).collect();
        for start in 0..needles.len() - 1 {
            let needle = &needles[start..];
            let longest = (0..old.len())
                .map(|at| equal_len(needle, &old[at..]))
                .max()
                .unwrap_or(0);
            let (at, len) = suffixes.best_match(needle);
            assert_eq!(len, longest, "needle at {start}");
            assert_eq!(equal_len(needle, &old[at..]), len);
        }
    }

    #[test]
    fn equal_len_counts_across_words() {
        let a = b"0123456789abcdefXYZ";
        for cut in 0..a.len() {
            let mut b = *a;
            b[cut] = b'!';
            assert_eq!(equal_len(a, &b), cut);
            assert_eq!(equal_len(&a[..cut], a), cut);
        }
    }

    #[test]
    fn a_copy_is_one_cover() {
        let old = noise(7, 10_000);
        let covers = covers(&old[1000..9000], &old, None);
        check_valid(&covers, &old[1000..9000], &old);
        assert_eq!(
            covers,
            [Cover {
                old: 1000,
                new: 0,
                len: 8000
            }]
        );
    }

    #[test]
    fn scattered_byte_changes_stay_on_one_diagonal() {
        // Recompiled code: the same bytes, with a few bytes changed every 64 (addresses).
        let old = noise(3, 50_000);
        let mut new = old[10..].to_vec();
        for i in (0..new.len()).step_by(64) {
            new[i] = new[i].wrapping_add(4);
        }
        let covers = covers(&new, &old, None);
        check_valid(&covers, &new, &old);
        let covered: usize = covers.iter().map(|c| c.len).sum();
        assert!(
            covered * 100 >= new.len() * 99,
            "{covered} of {}",
            new.len()
        );
        assert!(covers.len() < 10, "{} covers", covers.len());
    }

    #[test]
    fn unrelated_bytes_get_no_covers() {
        let covers = covers(&noise(5, 20_000), &noise(9, 20_000), None);
        assert!(covers.len() <= 2, "{covers:?}");
    }
}
